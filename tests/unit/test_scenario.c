/*  test_scenario.c - the load harness's templates, reply captures and
 *  scenario files (tools/harness/template.h, scenario.h).
 *
 *  Templates are filled and the msgpack they pack is decoded and compared
 *  field by field: each built-in placeholder, the rule that a lone
 *  placeholder keeps its type, text interpolation, lines of a file, and a
 *  variable that is not set. Captures: paths into maps and arrays, and a
 *  captured value filled back with its type. Scenarios: a whole file with
 *  setup, flows, captures and files; the flows drawn in proportion to
 *  their weights; and the mistakes a scenario author makes, each refused
 *  with a message that names it.
 */
#include "tests/testutil.h"
#include "tools/harness/scenario.h"
#include "tools/harness/template.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"

/* Names for templates compiled alone: vars a, b, c; file ids. */
static int s_var(void *arg, const char *name)
{
    (void)arg;
    if (strcmp(name, "a") == 0)
        return 0;
    if (strcmp(name, "b") == 0)
        return 1;
    if (strcmp(name, "c") == 0)
        return 2;
    return -1;
}

static int s_file(void *arg, const char *name)
{
    (void)arg;
    return strcmp(name, "ids") == 0 ? 0 : -1;
}

static const template_names_t s_names = {s_var, s_file, NULL};

typedef struct {
    msgpack_sbuffer out;
    msgpack_unpacked value;
    template_ctx_t ctx;
    template_value_t vars[3];
    msgpack_sbuffer var_bufs[3];
    template_file_t files[1];
    char *lines[3];
    uint64_t unique, rng;
} fill_t;

static void s_fill_init(fill_t *f)
{
    memset(f, 0, sizeof *f);
    msgpack_sbuffer_init(&f->out);
    msgpack_unpacked_init(&f->value);
    for (int i = 0; i < 3; i++)
        msgpack_sbuffer_init(&f->var_bufs[i]);
    f->lines[0] = "p1";
    f->lines[1] = "p2";
    f->lines[2] = "p3";
    f->files[0] = (template_file_t){f->lines, 3};
    f->rng = 12345;
    f->ctx = (template_ctx_t){.seq = 41,
                              .vu = 7,
                              .iter = 3,
                              .run = "R",
                              .unique = &f->unique,
                              .rng = &f->rng,
                              .vars = f->vars,
                              .files = f->files};
}

static void s_fill_fini(fill_t *f)
{
    msgpack_sbuffer_destroy(&f->out);
    msgpack_unpacked_destroy(&f->value);
    for (int i = 0; i < 3; i++)
        msgpack_sbuffer_destroy(&f->var_bufs[i]);
}

/* Sets var i to the msgpack of the JSON text. */
static void s_set_var(fill_t *f, int i, const char *json)
{
    char err[128];
    msgpack_sbuffer_clear(&f->var_bufs[i]);
    assert_int_equal(jsonpack_from_json(json, strlen(json), &f->var_bufs[i], JSONPACK_DEPTH_LIMIT,
                                        err, sizeof err),
                     0);
    f->vars[i] = (template_value_t){f->var_bufs[i].data, f->var_bufs[i].size};
}

/* Compiles the JSON text and fills it; returns the fill's status and
 * leaves the value in f->value. */
static int s_fill_json(fill_t *f, const char *json, int *missing)
{
    json_error_t jerr;
    json_t *doc = json_loads(json, JSON_DECODE_ANY, &jerr);
    assert_non_null(doc);
    char err[256] = "";
    template_t *t = template_compile(doc, &s_names, err, sizeof err);
    json_decref(doc);
    if (!t)
        fail_msg("compile %s: %s", json, err);
    msgpack_sbuffer_clear(&f->out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->out, msgpack_sbuffer_write);
    const char *why;
    int m;
    int rc = template_fill(t, &f->ctx, &pk, &m, &why);
    if (missing)
        *missing = m;
    template_destroy(&t);
    if (rc == 0)
        assert_int_equal(msgpack_unpack_next(&f->value, f->out.data, f->out.size, NULL),
                         MSGPACK_UNPACK_SUCCESS);
    return rc;
}

static const msgpack_object *s_get(fill_t *f, const char *key)
{
    const msgpack_object *o = mp_map_get(&f->value.data, key);
    if (!o)
        fail_msg("no %s in the filled map", key);
    return o;
}

static void s_assert_str(const msgpack_object *o, const char *want)
{
    assert_int_equal(o->type, MSGPACK_OBJECT_STR);
    if (o->via.str.size != strlen(want) || memcmp(o->via.str.ptr, want, o->via.str.size) != 0)
        fail_msg("got '%.*s', want '%s'", (int)o->via.str.size, o->via.str.ptr, want);
}

static void test_builtins_and_types(void **state)
{
    (void)state;
    fill_t f;
    s_fill_init(&f);
    assert_int_equal(
        s_fill_json(&f,
                    "{\"seq\": \"{{seq}}\", \"vu\": \"{{ vu }}\", \"iter\": \"{{iter}}\","
                    " \"text\": \"n{{seq}}-v{{vu}}\", \"run\": \"{{run}}\","
                    " \"u1\": \"{{unique}}\", \"u2\": \"{{unique}}\","
                    " \"fixed\": {\"x\": [1, 2, \"three\"]}, \"lit\": \"a{{{{b\"}",
                    NULL),
        0);
    assert_int_equal(s_get(&f, "seq")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(s_get(&f, "seq")->via.u64, 41);
    assert_int_equal(s_get(&f, "vu")->via.u64, 7);
    assert_int_equal(s_get(&f, "iter")->via.u64, 3);
    s_assert_str(s_get(&f, "text"), "n41-v7");
    s_assert_str(s_get(&f, "run"), "R");
    /* unique: the run, the user and a counter that never repeats */
    s_assert_str(s_get(&f, "u1"), "R-7-0");
    s_assert_str(s_get(&f, "u2"), "R-7-1");
    const msgpack_object *fixed = s_get(&f, "fixed");
    assert_int_equal(fixed->type, MSGPACK_OBJECT_MAP);
    const msgpack_object *x = mp_map_get(fixed, "x");
    assert_non_null(x);
    assert_int_equal(x->via.array.size, 3);
    s_assert_str(&x->via.array.ptr[2], "three");
    s_assert_str(s_get(&f, "lit"), "a{{b");
    s_fill_fini(&f);
}

static void test_random_pick_line(void **state)
{
    (void)state;
    fill_t f;
    s_fill_init(&f);
    int seen_r[4] = {0}, seen_p[3] = {0}, seen_l[3] = {0};
    for (int i = 0; i < 600; i++) {
        assert_int_equal(s_fill_json(&f,
                                     "{\"r\": \"{{random -1 2}}\", \"p\": \"{{pick x y z}}\","
                                     " \"l\": \"{{line ids}}\", \"t\": \"q={{random 5 5}}\"}",
                                     NULL),
                         0);
        const msgpack_object *r = s_get(&f, "r");
        int64_t v = r->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ? r->via.i64 : (int64_t)r->via.u64;
        assert_true(v >= -1 && v <= 2);
        seen_r[v + 1]++;
        const msgpack_object *p = s_get(&f, "p");
        assert_int_equal(p->via.str.size, 1);
        seen_p[p->via.str.ptr[0] - 'x']++;
        const msgpack_object *l = s_get(&f, "l");
        assert_int_equal(l->via.str.size, 2);
        seen_l[l->via.str.ptr[1] - '1']++;
        s_assert_str(s_get(&f, "t"), "q=5");
    }
    /* every value of each draw comes up, none far from its share */
    for (int i = 0; i < 4; i++)
        assert_true(seen_r[i] > 100);
    for (int i = 0; i < 3; i++)
        assert_true(seen_p[i] > 130 && seen_l[i] > 130);
    s_fill_fini(&f);
}

static void test_vars_keep_their_type(void **state)
{
    (void)state;
    fill_t f;
    s_fill_init(&f);
    s_set_var(&f, 0, "{\"card_number\": \"4242\", \"exp_month\": 12}");
    s_set_var(&f, 1, "42");
    s_set_var(&f, 2, "\"tok\"");
    assert_int_equal(s_fill_json(&f,
                                 "{\"map\": \"{{a}}\", \"int\": \"{{b}}\", \"str\": \"{{c}}\","
                                 " \"mixed\": \"Bearer {{c}} #{{b}}\"}",
                                 NULL),
                     0);
    const msgpack_object *map = s_get(&f, "map");
    assert_int_equal(map->type, MSGPACK_OBJECT_MAP);
    s_assert_str(mp_map_get(map, "card_number"), "4242");
    assert_int_equal(mp_map_get(map, "exp_month")->via.u64, 12);
    assert_int_equal(s_get(&f, "int")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(s_get(&f, "int")->via.u64, 42);
    s_assert_str(s_get(&f, "str"), "tok");
    s_assert_str(s_get(&f, "mixed"), "Bearer tok #42");

    /* a map cannot go inside text */
    assert_int_equal(s_fill_json(&f, "{\"bad\": \"x{{a}}\"}", NULL), -1);
    /* a variable not captured yet: the fill names it */
    f.vars[1] = (template_value_t){NULL, 0};
    int missing = -1;
    assert_int_equal(s_fill_json(&f, "{\"n\": \"{{b}}\"}", &missing), -1);
    assert_int_equal(missing, 1);
    s_fill_fini(&f);
}

static void test_compile_errors(void **state)
{
    (void)state;
    const char *bad[] = {"\"{{nope}}\"", "\"{{random 3 1}}\"", "\"{{random x 1}}\"",
                         "\"{{pick}}\"", "\"{{line other}}\"", "\"{{seq\"",
                         "\"{{}}\"",     "\"{{seq extra}}\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *doc = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(doc);
        char err[256] = "";
        template_t *t = template_compile(doc, &s_names, err, sizeof err);
        json_decref(doc);
        if (t)
            fail_msg("%s compiled", bad[i]);
        assert_true(strlen(err) > 0);
    }
}

/* Captures: paths into the reply's data, filled back with their type. */
static void test_capture_paths(void **state)
{
    (void)state;
    const char *reply = "{\"order\": {\"id\": \"o1\", \"total\": 990,"
                        " \"items\": [{\"id\": \"a\"}, {\"id\": \"b\"}]}}";
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    char err[128];
    assert_int_equal(jsonpack_from_json(reply, strlen(reply), &buf, 8, err, sizeof err), 0);
    msgpack_unpacked data;
    msgpack_unpacked_init(&data);
    assert_int_equal(msgpack_unpack_next(&data, buf.data, buf.size, NULL), MSGPACK_UNPACK_SUCCESS);

    struct {
        const char *path;
        const char *want_str; /* NULL: not found */
    } cases[] = {{"order.id", "o1"},      {"order.items.1.id", "b"}, {"order.items.2.id", NULL},
                 {"order.nothing", NULL}, {"order.id.deeper", NULL}, {"order.items.x", NULL}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        template_path_t *p = template_path_compile(cases[i].path, err, sizeof err);
        assert_non_null(p);
        const msgpack_object *o = template_path_find(p, &data.data);
        if (cases[i].want_str) {
            assert_non_null(o);
            s_assert_str(o, cases[i].want_str);
        } else if (o)
            fail_msg("%s found something", cases[i].path);
        template_path_destroy(&p);
    }
    template_path_t *whole = template_path_compile("", err, sizeof err);
    assert_ptr_equal(template_path_find(whole, &data.data), &data.data);
    template_path_destroy(&whole);
    assert_null(template_path_compile("a..b", err, sizeof err));

    /* a captured integer goes back as an integer */
    template_path_t *total = template_path_compile("order.total", err, sizeof err);
    const msgpack_object *o = template_path_find(total, &data.data);
    fill_t f;
    s_fill_init(&f);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f.var_bufs[1], msgpack_sbuffer_write);
    assert_int_equal(msgpack_pack_object(&pk, *o), 0);
    f.vars[1] = (template_value_t){f.var_bufs[1].data, f.var_bufs[1].size};
    assert_int_equal(s_fill_json(&f, "{\"amount_cents\": \"{{b}}\"}", NULL), 0);
    assert_int_equal(s_get(&f, "amount_cents")->via.u64, 990);
    s_fill_fini(&f);
    template_path_destroy(&total);
    msgpack_unpacked_destroy(&data);
    msgpack_sbuffer_destroy(&buf);
}

static const char *s_scenario_json =
    "{\"name\": \"t\", \"vars\": {\"password\": \"pw-123456\"},"
    " \"files\": {\"ids\": \"{{data_dir}}/ids.txt\"},"
    " \"setup\": [{\"name\": \"login\", \"service\": \"users\", \"op\": \"auth.login\","
    "   \"args\": {\"email\": \"u{{vu}}@x.test\", \"password\": \"{{password}}\"},"
    "   \"capture\": {\"token\": \"access_token\"}}],"
    " \"flows\": ["
    "  {\"name\": \"often\", \"weight\": 3, \"steps\": [{\"service\": \"catalog\","
    "    \"op\": \"product.get\", \"args\": {\"id\": \"{{line ids}}\"}, \"repeat\": [1, 3]}]},"
    "  {\"name\": \"rare\", \"weight\": 1, \"steps\": [{\"name\": \"buy\", \"service\": \"orders\","
    "    \"op\": \"cart.checkout\", \"token\": \"{{token}}\", \"accept\": [\"out_of_stock\"],"
    "    \"chance\": 0.5}]},"
    "  {\"name\": \"never\", \"weight\": 0, \"steps\": [{\"name\": \"n\", \"service\": \"sys\","
    "    \"op\": \"ping\"}]}]}";

static void test_scenario_file(void **state)
{
    (void)state;
    char *dir = tu_tempdir("scenario");
    char path[512];
    snprintf(path, sizeof path, "%s/ids.txt", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("id-1\r\nid-2\n\nid-3", f); /* CRLF, an empty line, no final newline */
    fclose(f);

    char err[512] = "";
    scenario_t *sc = scenario_parse(s_scenario_json, dir, NULL, 0, err, sizeof err);
    if (!sc)
        fail_msg("%s", err);
    assert_string_equal(scenario_name(sc), "t");
    assert_int_equal(scenario_setup(sc)->count, 1);
    assert_int_equal(scenario_flow_count(sc), 3);
    assert_int_equal(scenario_step_count(sc), 4);
    const scenario_step_t *get = scenario_step(sc, 1);
    assert_string_equal(get->name, "product.get"); /* named after its op */
    assert_int_equal(get->repeat_min, 1);
    assert_int_equal(get->repeat_max, 3);
    const scenario_step_t *buy = scenario_step(sc, 2);
    assert_true(buy->accept[ERR_OUT_OF_STOCK]);
    assert_false(buy->accept[ERR_CONFLICT]);
    assert_true(buy->chance == 0.5);
    assert_non_null(buy->token);
    const template_file_t *files = scenario_files(sc);
    assert_int_equal(files[0].count, 3);
    assert_string_equal(files[0].lines[0], "id-1");
    assert_string_equal(files[0].lines[2], "id-3");
    assert_int_equal(scenario_var_count(sc), 2);
    assert_string_equal(scenario_var_name(sc, 0), "password");
    assert_non_null(scenario_constants(sc)[0].data);
    assert_null(scenario_constants(sc)[1].data); /* token: captured, not set */

    /* flows come in proportion to their weights; weight 0 never */
    uint64_t rng = 99;
    int count[3] = {0};
    for (int i = 0; i < 40000; i++)
        count[scenario_pick_flow(sc, &rng)]++;
    assert_int_equal(count[2], 0);
    double share = (double)count[0] / 40000;
    assert_true(share > 0.72 && share < 0.78);
    scenario_destroy(&sc);
    assert_null(sc);

    /* --file replaces a file's path */
    char other[512];
    snprintf(other, sizeof other, "%s/other.txt", dir);
    f = fopen(other, "w");
    assert_non_null(f);
    fputs("only\n", f);
    fclose(f);
    scenario_file_override_t o = {"ids", other};
    sc = scenario_parse(s_scenario_json, "/nonexistent", &o, 1, err, sizeof err);
    if (!sc)
        fail_msg("%s", err);
    assert_int_equal(scenario_files(sc)[0].count, 1);
    scenario_destroy(&sc);
    scenario_file_override_t unknown = {"nope", other};
    assert_null(scenario_parse(s_scenario_json, dir, &unknown, 1, err, sizeof err));
    assert_non_null(strstr(err, "nope"));
    tu_rmtree(dir);
    free(dir);
}

static void test_scenario_mistakes(void **state)
{
    (void)state;
    struct {
        const char *json, *message;
    } cases[] = {
        {"{\"name\": \"t\", \"flows\": []}", "flows"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"op\": \"x\"}]}]}",
         "service"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"args\": {\"a\": \"{{typo}}\"}}]}]}",
         "typo"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\"}, {\"service\": \"s\", \"op\": \"x\"}]}]}",
         "two steps"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"accept\": [\"no_such_code\"]}]}]}",
         "no_such_code"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"retries\": 3}]}]}",
         "retries"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"weight\": 0, \"steps\": [{\"service\": "
         "\"s\", \"op\": \"x\"}]}]}",
         "weight 0"},
        {"{\"name\": \"t\", \"files\": {\"ids\": \"/nonexistent/ids\"}, \"flows\": [{\"name\": "
         "\"f\", \"steps\": [{\"service\": \"s\", \"op\": \"x\"}]}]}",
         "/nonexistent/ids"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"capture\": {\"seq\": \"id\"}}]}]}",
         "built-in"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"repeat\": [3, 1]}]}]}",
         "repeat"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char err[512] = "";
        scenario_t *sc = scenario_parse(cases[i].json, "/tmp", NULL, 0, err, sizeof err);
        if (sc)
            fail_msg("case %zu was accepted", i);
        if (!strstr(err, cases[i].message))
            fail_msg("case %zu: '%s' does not name '%s'", i, err, cases[i].message);
    }
}

/* {{NAME.a.b}}: a field of a variable, with its type alone, as text
 * inside a string; a field that is not there is a variable not set. */
static void test_var_fields(void **state)
{
    (void)state;
    fill_t f;
    s_fill_init(&f);
    s_set_var(&f, 0, "{\"email\": \"a@x.test\", \"n\": {\"k\": [1, 22]}, \"pw\": \"s3cret\"}");
    assert_int_equal(s_fill_json(&f,
                                 "{\"email\": \"{{a.email}}\", \"text\": \"to {{a.email}}\","
                                 " \"deep\": \"{{a.n.k.1}}\", \"map\": \"{{a.n}}\","
                                 " \"num\": \"#{{a.n.k.0}}\"}",
                                 NULL),
                     0);
    s_assert_str(s_get(&f, "email"), "a@x.test");
    s_assert_str(s_get(&f, "text"), "to a@x.test");
    assert_int_equal(s_get(&f, "deep")->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(s_get(&f, "deep")->via.u64, 22);
    assert_int_equal(s_get(&f, "map")->type, MSGPACK_OBJECT_MAP);
    s_assert_str(s_get(&f, "num"), "#1");
    int missing = -1;
    assert_int_equal(s_fill_json(&f, "{\"x\": \"{{a.nope}}\"}", &missing), -1);
    assert_int_equal(missing, 0);
    assert_int_equal(s_fill_json(&f, "{\"x\": \"in {{a.n.k.5}}\"}", &missing), -1);
    /* a field of a variable not set yet: the variable is missing */
    f.vars[0] = (template_value_t){NULL, 0};
    assert_int_equal(s_fill_json(&f, "{\"x\": \"{{a.email}}\"}", &missing), -1);
    assert_int_equal(missing, 0);

    const char *bad[] = {"\"{{a.}}\"", "\"{{a..b}}\"", "\"{{nope.x}}\""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *doc = json_loads(bad[i], JSON_DECODE_ANY, NULL);
        assert_non_null(doc);
        char err[256] = "";
        template_t *t = template_compile(doc, &s_names, err, sizeof err);
        json_decref(doc);
        if (t)
            fail_msg("%s compiled", bad[i]);
        assert_true(strlen(err) > 0);
    }
    s_fill_fini(&f);
}

/* "let" and "json_files": a step's lets compile against every name, a
 * JSON file becomes a constant (its path replaced by --file), and the
 * mistakes are refused without quoting the file. */
static void test_let_and_json_files(void **state)
{
    (void)state;
    char *dir = tu_tempdir("scenario");
    char creds[512], other[512], broken[512];
    snprintf(creds, sizeof creds, "%s/creds.json", dir);
    snprintf(other, sizeof other, "%s/other.json", dir);
    snprintf(broken, sizeof broken, "%s/broken.json", dir);
    FILE *f = fopen(creds, "w");
    assert_non_null(f);
    fputs("{\"email\": \"admin@x.test\", \"password\": \"hunter2-secret\"}\n", f);
    fclose(f);
    f = fopen(other, "w");
    assert_non_null(f);
    fputs("{\"email\": \"other@x.test\", \"password\": \"p\"}", f);
    fclose(f);
    f = fopen(broken, "w");
    assert_non_null(f);
    fputs("{\"password\": \"hunter2-secret\"", f); /* cut short */
    fclose(f);
    const char *json =
        "{\"name\": \"t\", \"json_files\": {\"admin\": \"{{data_dir}}/creds.json\"},"
        " \"setup\": [{\"name\": \"login\", \"service\": \"users\", \"op\": \"auth.login\","
        "   \"args\": {\"email\": \"{{admin.email}}\", \"password\": \"{{admin.password}}\"}}],"
        " \"flows\": [{\"name\": \"f\", \"steps\": ["
        "   {\"name\": \"pay\", \"service\": \"orders\", \"op\": \"cart.checkout\","
        "    \"let\": {\"key\": \"k-{{unique}}\"}, \"args\": {\"idempotency_key\": \"{{key}}\"}},"
        "   {\"name\": \"again\", \"service\": \"orders\", \"op\": \"cart.checkout\","
        "    \"args\": {\"idempotency_key\": \"{{key}}\"}}]}]}";
    char err[512] = "";
    scenario_t *sc = scenario_parse(json, dir, NULL, 0, err, sizeof err);
    if (!sc)
        fail_msg("%s", err);
    assert_int_equal(scenario_var_count(sc), 2);
    assert_string_equal(scenario_var_name(sc, 0), "admin");
    assert_string_equal(scenario_var_name(sc, 1), "key");
    const template_value_t *admin = &scenario_constants(sc)[0];
    assert_non_null(admin->data);
    msgpack_unpacked one;
    msgpack_unpacked_init(&one);
    assert_int_equal(msgpack_unpack_next(&one, admin->data, admin->len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    s_assert_str(mp_map_get(&one.data, "email"), "admin@x.test");
    msgpack_unpacked_destroy(&one);
    assert_null(scenario_constants(sc)[1].data); /* key: set by the let */
    const scenario_step_t *pay = scenario_step(sc, 1);
    assert_int_equal(pay->nlets, 1);
    assert_int_equal(pay->lets[0].var, 1);
    assert_int_equal(scenario_step(sc, 2)->nlets, 0);
    scenario_destroy(&sc);

    /* --file names a JSON file too */
    scenario_file_override_t o = {"admin", other};
    sc = scenario_parse(json, "/nonexistent", &o, 1, err, sizeof err);
    if (!sc)
        fail_msg("%s", err);
    msgpack_unpacked_init(&one);
    admin = &scenario_constants(sc)[0];
    assert_int_equal(msgpack_unpack_next(&one, admin->data, admin->len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    s_assert_str(mp_map_get(&one.data, "email"), "other@x.test");
    msgpack_unpacked_destroy(&one);
    scenario_destroy(&sc);

    /* a file that is not JSON: its path is named, its content never */
    o = (scenario_file_override_t){"admin", broken};
    assert_null(scenario_parse(json, dir, &o, 1, err, sizeof err));
    assert_non_null(strstr(err, "broken.json"));
    assert_null(strstr(err, "hunter2"));
    o = (scenario_file_override_t){"admin", "/nonexistent/creds.json"};
    assert_null(scenario_parse(json, dir, &o, 1, err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent/creds.json"));
    struct {
        const char *json, *message;
    } cases[] = {
        {"{\"name\": \"t\", \"vars\": {\"admin\": 1}, \"json_files\": {\"admin\": \"/x\"},"
         " \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": \"x\"}]}]}",
         "vars has that name"},
        {"{\"name\": \"t\", \"json_files\": [\"x\"], \"flows\": [{\"name\": \"f\", \"steps\":"
         " [{\"service\": \"s\", \"op\": \"x\"}]}]}",
         "json_files"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"let\": {\"k\": \"{{typo}}\"}}]}]}",
         "let k"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"let\": [\"k\"]}]}]}",
         "let"},
        {"{\"name\": \"t\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"service\": \"s\", \"op\": "
         "\"x\", \"let\": {\"unique\": \"1\"}}]}]}",
         "built-in"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        err[0] = '\0';
        sc = scenario_parse(cases[i].json, dir, NULL, 0, err, sizeof err);
        if (sc)
            fail_msg("case %zu was accepted", i);
        if (!strstr(err, cases[i].message))
            fail_msg("case %zu: '%s' does not name '%s'", i, err, cases[i].message);
    }
    tu_rmtree(dir);
    free(dir);
}

/* The shipped scenarios compile (their ids file replaced by a small one). */
static void test_shipped_scenarios(void **state)
{
    (void)state;
    char *dir = tu_tempdir("scenario");
    char ids[512];
    snprintf(ids, sizeof ids, "%s/ids.txt", dir);
    FILE *f = fopen(ids, "w");
    assert_non_null(f);
    fputs("p0\np1\n", f);
    fclose(f);
    char creds[512];
    snprintf(creds, sizeof creds, "%s/admin-credentials.json", dir);
    f = fopen(creds, "w");
    assert_non_null(f);
    fputs("{\"email\": \"admin@x.test\", \"password\": \"p\"}\n", f);
    fclose(f);
    const char *names[] = {"browse", "shop", "mixed"};
    for (size_t i = 0; i < 3; i++) {
        char path[512], err[512] = "";
        snprintf(path, sizeof path, "tools/scenarios/%s.json", names[i]);
        /* mixed reads {{data_dir}}/admin-credentials.json: dir's */
        scenario_file_override_t o = {"products", ids};
        scenario_t *sc = scenario_load(path, dir, &o, 1, err, sizeof err);
        if (!sc)
            fail_msg("%s", err);
        assert_string_equal(scenario_name(sc), names[i]);
        scenario_destroy(&sc);
    }
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtins_and_types),   cmocka_unit_test(test_random_pick_line),
        cmocka_unit_test(test_vars_keep_their_type), cmocka_unit_test(test_compile_errors),
        cmocka_unit_test(test_capture_paths),        cmocka_unit_test(test_scenario_file),
        cmocka_unit_test(test_scenario_mistakes),    cmocka_unit_test(test_shipped_scenarios),
        cmocka_unit_test(test_var_fields),           cmocka_unit_test(test_let_and_json_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*  test_check_record.c - the checks `retailctl check-record` makes for the
 *  crash loop (tools/retailctl_record.h), each shown to fail when the
 *  thing it checks is wrong.
 *
 *  One retaild (tests/fixture.h) on a catalog seeded by retail-seed, its
 *  admin's credentials in a 0600 file as tools/run.sh writes them; the
 *  stock ledger taken (`retailctl stock-ledger`), then loadgen runs
 *  tools/scenarios/mixed.json with --record. Then:
 *
 *  - the record holds every kind of write the mix makes (products
 *    created, renamed, restocked; refunds; a checkout asked again with its
 *    key naming the same order), and check-record --stock finds nothing
 *    wrong;
 *  - one key answering two orders (a record where two acknowledged
 *    checkouts of a user share a key) is reported by key;
 *  - a second capture at the simulated gateway for a paid order (a copy
 *    of its authorization under another id in DIR/gateway-sim) is
 *    reported as a capture twice and as a gateway that took more than the
 *    payment's log says (and nothing once it is gone again: each damage
 *    done with raw LMDB, retaild stopped, is undone the same way);
 *  - a paid order's reservation lost (deleted from the catalog) is
 *    reported by order, and its units as vanished from the ledger;
 *  - stock set behind the record's back (an admin's set_stock of a
 *    seeded product) is reported as units that appeared; a ledger that
 *    is not one is a usage error;
 *  - a created product gone (deleted behind the record's back) is
 *    reported;
 *  - an order the record cannot explain (the user's token used for one
 *    more order) is reported as an order made twice;
 *  and last retaild stops with status 0.
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "actors/payments/gateway_record.h"
#include "storage/record.h"

#define RUN_TIMEOUT_MS 90000
#define MIXED_PASSWORD "load-test-password" /* tools/scenarios/mixed.json's */

typedef struct {
    fixture_t *fx;
    char ids[FIXTURE_PATH_MAX + 16];
    char creds[FIXTURE_PATH_MAX + 32];
    char ledger[FIXTURE_PATH_MAX + 16];
    char record[FIXTURE_PATH_MAX + 16];
    char out[FIXTURE_PATH_MAX + 16];
    char env_data[FIXTURE_PATH_MAX + 32];
    char env_broker[128];
} group_t;

/* Runs $build/TOOL with args, stdout to out_path; its exit code (-1 when
 * it did not exit normally). */
static int s_run(group_t *g, const char *tool, const char *const *args, const char *out_path)
{
    const char *env[] = {g->env_data, g->env_broker, NULL};
    char err_path[FIXTURE_PATH_MAX + 32];
    snprintf(err_path, sizeof err_path, "%s.err", out_path);
    tu_spawn_t how = {.program = tool,
                      .argv = args,
                      .env = env,
                      .clean = true,
                      .out_path = out_path,
                      .err_path = err_path};
    unlink(out_path);
    pid_t pid = tu_spawn(&how);
    assert_true(pid > 0);
    int status = tu_wait(pid, RUN_TIMEOUT_MS);
    if (status == -1 || !WIFEXITED(status)) {
        char *err = tu_slurp(err_path, NULL);
        print_error("%s did not exit: %s\n", tool, err ? err : "");
        free(err);
        return -1;
    }
    return WEXITSTATUS(status);
}

/* check-record --stock LEDGER over path; its output in *said (the
 * caller frees it); its exit code. */
static int s_check(group_t *g, const char *path, char **said)
{
    const char *args[] = {"check-record", "--stock", g->ledger, path, NULL};
    int rc = s_run(g, "retailctl", args, g->out);
    *said = tu_slurp(g->out, NULL);
    assert_non_null(*said);
    return rc;
}

static void s_expect_clean(group_t *g)
{
    char *said;
    int rc = s_check(g, g->record, &said);
    if (rc != 0 || !strstr(said, "; 0 problems"))
        fail_msg("check-record exited %d:\n%s", rc, said);
    free(said);
}

static void s_expect_problem(group_t *g, const char *path, const char *want)
{
    char *said;
    int rc = s_check(g, path, &said);
    if (rc != 1 || !strstr(said, want))
        fail_msg("check-record exited %d without '%s':\n%s", rc, want, said);
    free(said);
}

/* The record's lines, parsed (header first). */
static json_t *s_lines(const char *path)
{
    char *text = tu_slurp(path, NULL);
    assert_non_null(text);
    json_t *lines = json_array();
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        json_t *l = json_loads(line, 0, NULL);
        assert_non_null(l);
        json_array_append_new(lines, l);
    }
    free(text);
    return lines;
}

static void s_write_lines(const char *path, json_t *lines)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        char *text = json_dumps(l, JSON_COMPACT);
        fprintf(f, "%s\n", text);
        free(text);
    }
    fclose(f);
}

static const char *s_get(json_t *l, const char *obj, const char *key)
{
    json_t *o = obj ? json_object_get(l, obj) : l;
    return json_string_value(json_object_get(o, key));
}

static bool s_is(json_t *l, const char *field, const char *want)
{
    const char *v = s_get(l, NULL, field);
    return v && strcmp(v, want) == 0;
}

/* The first acknowledged line of op (of that step, when step is not
 * NULL); the test fails without one. */
static json_t *s_first(json_t *lines, const char *op, const char *step)
{
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        if (json_is_true(json_object_get(l, "ack")) && s_is(l, "op", op) &&
            (!step || s_is(l, "step", step)))
            return l;
    }
    fail_msg("no acknowledged %s in the record", op);
    return NULL;
}

/* ---- raw LMDB, retaild stopped ---- */

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
} s_db_t;

static void s_db_open(group_t *g, const char *env_name, const char *db, s_db_t *d)
{
    char path[FIXTURE_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/%s", g->fx->dir, env_name);
    assert_int_equal(mdb_env_create(&d->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(d->env, 32), 0);
    assert_int_equal(mdb_env_set_mapsize(d->env, 1ULL << 30), 0);
    assert_int_equal(mdb_env_open(d->env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(d->env, NULL, 0, &d->txn), 0);
    assert_int_equal(mdb_dbi_open(d->txn, db, 0, &d->dbi), 0);
}

static void s_db_close(s_db_t *d)
{
    assert_int_equal(mdb_txn_commit(d->txn), 0);
    mdb_env_close(d->env);
}

/* Deletes key from env_name/db and returns its value (the caller frees
 * it), retaild stopped and started again around it. */
static void *s_take(group_t *g, const char *env_name, const char *db, const char *key, size_t *len)
{
    assert_int_equal(fixture_kill(g->fx, g->fx->pid, SIGTERM), 0);
    s_db_t d;
    s_db_open(g, env_name, db, &d);
    MDB_val k = {strlen(key), (void *)key}, v;
    assert_int_equal(mdb_get(d.txn, d.dbi, &k, &v), 0);
    void *copy = malloc(v.mv_size);
    assert_non_null(copy);
    memcpy(copy, v.mv_data, v.mv_size);
    *len = v.mv_size;
    assert_int_equal(mdb_del(d.txn, d.dbi, &k, NULL), 0);
    s_db_close(&d);
    assert_int_equal(fixture_restart(g->fx), 0);
    return copy;
}

/* Puts key = value (NULL: deletes key), retaild stopped and started again. */
static void s_put(group_t *g, const char *env_name, const char *db, const char *key,
                  const void *value, size_t len)
{
    assert_int_equal(fixture_kill(g->fx, g->fx->pid, SIGTERM), 0);
    s_db_t d;
    s_db_open(g, env_name, db, &d);
    MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)value};
    assert_int_equal(value ? mdb_put(d.txn, d.dbi, &k, &v, 0) : mdb_del(d.txn, d.dbi, &k, NULL), 0);
    s_db_close(&d);
    assert_int_equal(fixture_restart(g->fx), 0);
}

/* ---- the group ---- */

static int s_setup(void **state)
{
    group_t *g = calloc(1, sizeof *g);
    assert_non_null(g);
    fixture_opts_t opts = {.name = "retail-check-record", .logs = true, .accounts = true};
    g->fx = fixture_new(&opts);
    assert_non_null(g->fx);
    assert_int_equal(fixture_kill(g->fx, g->fx->pid, SIGTERM), 0);
    snprintf(g->env_data, sizeof g->env_data, "RETAIL_DATA_DIR=%s", g->fx->dir);
    snprintf(g->env_broker, sizeof g->env_broker, "RETAIL_BROKER_ENDPOINT=%s",
             g->fx->broker_endpoint);
    snprintf(g->ids, sizeof g->ids, "%s/ids.txt", g->fx->dir);
    snprintf(g->creds, sizeof g->creds, "%s/admin-credentials.json", g->fx->dir);
    snprintf(g->ledger, sizeof g->ledger, "%s/ledger.json", g->fx->dir);
    snprintf(g->record, sizeof g->record, "%s/mixed.ndjson", g->fx->dir);
    snprintf(g->out, sizeof g->out, "%s/tool.out", g->fx->dir);
    const char *seed[] = {"--data-dir", g->fx->dir, "-n", "200", "--ids", g->ids, "-q", NULL};
    assert_int_equal(s_run(g, "retail-seed", seed, g->out), 0);
    /* the admin's credentials as tools/run.sh keeps them: a login's body, 0600 */
    FILE *f = fopen(g->creds, "w");
    assert_non_null(f);
    assert_int_equal(fchmod(fileno(f), 0600), 0);
    fprintf(f, "{\"email\": \"%s\", \"password\": \"%s\"}\n", FIXTURE_ADMIN_EMAIL,
            FIXTURE_ADMIN_PASSWORD);
    fclose(f);
    assert_int_equal(fixture_restart(g->fx), 0);

    const char *ledger[] = {"stock-ledger", NULL};
    assert_int_equal(s_run(g, "retailctl", ledger, g->ledger), 0);
    char products[FIXTURE_PATH_MAX + 32], admin[FIXTURE_PATH_MAX + 64];
    snprintf(products, sizeof products, "products=%s", g->ids);
    snprintf(admin, sizeof admin, "admin=%s", g->creds);
    const char *load[] = {"--scenario", "tools/scenarios/mixed.json",
                          "--file",     products,
                          "--file",     admin,
                          "-c",         "4",
                          "--rate",     "150",
                          "-d",         "4",
                          "--warmup",   "0",
                          "--timeout",  "10000",
                          "--seed",     "11",
                          "--record",   g->record,
                          "-q",         NULL};
    assert_int_equal(s_run(g, "loadgen", load, g->out), 0);
    *state = g;
    return 0;
}

static int s_teardown(void **state)
{
    group_t *g = *state;
    fixture_destroy(&g->fx);
    free(g);
    return 0;
}

static void test_mixed_recorded_and_checked(void **state)
{
    group_t *g = *state;
    json_t *lines = s_lines(g->record);
    s_first(lines, "product.create", NULL);
    s_first(lines, "product.update", NULL);
    s_first(lines, "product.set_stock", NULL);
    s_first(lines, "payment.refund", NULL);
    /* a checkout asked again with its key: the same order */
    size_t i;
    json_t *l;
    int pairs = 0;
    json_t *before = NULL;
    json_array_foreach(lines, i, l)
    {
        if (!json_is_true(json_object_get(l, "ack")) || !s_is(l, "op", "cart.checkout"))
            continue;
        if (s_is(l, "step", "checkout"))
            before = l;
        else if (s_is(l, "step", "checkout_again") && before &&
                 json_integer_value(json_object_get(l, "vu")) ==
                     json_integer_value(json_object_get(before, "vu"))) {
            assert_string_equal(s_get(l, "keys", "idempotency_key"),
                                s_get(before, "keys", "idempotency_key"));
            assert_string_equal(s_get(l, "ids", "order_id"), s_get(before, "ids", "order_id"));
            pairs++;
        }
    }
    json_decref(lines);
    assert_true(pairs > 0);
    char *said;
    assert_int_equal(s_check(g, g->record, &said), 0);
    assert_non_null(strstr(said, "the gateway's charges"));
    assert_non_null(strstr(said, "the stock of 200 products"));
    assert_non_null(strstr(said, "; 0 problems"));
    free(said);
}

static void test_key_naming_two_orders(void **state)
{
    group_t *g = *state;
    json_t *lines = s_lines(g->record);
    /* a user's two acknowledged checkouts of two orders, given one key */
    json_t *first = NULL, *second = NULL;
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        if (!json_is_true(json_object_get(l, "ack")) || !s_is(l, "step", "checkout"))
            continue;
        if (!first)
            first = l;
        else if (s_is(l, "user_id", s_get(first, NULL, "user_id")) &&
                 strcmp(s_get(l, "ids", "order_id"), s_get(first, "ids", "order_id")) != 0) {
            second = l;
            break;
        }
    }
    if (!second)
        fail_msg("no user with two acknowledged checkouts in the record");
    const char *key = s_get(first, "keys", "idempotency_key");
    json_object_set_new(json_object_get(second, "keys"), "idempotency_key", json_string(key));
    char crafted[FIXTURE_PATH_MAX + 32], want[512];
    snprintf(crafted, sizeof crafted, "%s/two-orders.ndjson", g->fx->dir);
    s_write_lines(crafted, lines);
    snprintf(want, sizeof want, "idempotency_key %s: of user %s answered order %s", key,
             s_get(first, NULL, "user_id"), s_get(first, "ids", "order_id"));
    s_expect_problem(g, crafted, want);
    json_decref(lines);
}

/* Deleted behind the record's back (as a lost write would leave it):
 * nothing brings it back, so this runs near the end. */
static void test_product_lost(void **state)
{
    group_t *g = *state;
    json_t *lines = s_lines(g->record);
    /* a created product no line of the record deletes */
    const char *id = NULL;
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        if (!json_is_true(json_object_get(l, "ack")) || !s_is(l, "op", "product.create"))
            continue;
        const char *made = s_get(l, "ids", "product_id");
        bool deleted = false;
        size_t k;
        json_t *m;
        json_array_foreach(lines, k, m)
        {
            deleted |= s_is(m, "op", "product.delete") &&
                       s_is(json_object_get(m, "keys"), "product_id", made);
        }
        if (!deleted) {
            id = made;
            break;
        }
    }
    if (!id)
        fail_msg("every product the record created was deleted");
    char path[160], want[256];
    snprintf(path, sizeof path, "/v1/products/%s", id);
    hc_response_t r = hc_request(g->fx->base, "DELETE", path, g->fx->admin_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE product");
    hc_response_free(&r);
    snprintf(want, sizeof want, "product %s: created (", id);
    s_expect_problem(g, g->record, want);
    json_decref(lines);
}

/* The gateway's authorization of order_id that captured, under *auth_id
 * (the caller frees both). */
static void *s_captured_auth(group_t *g, const char *order_id, char **auth_id, size_t *len)
{
    assert_int_equal(fixture_kill(g->fx, g->fx->pid, SIGTERM), 0);
    s_db_t d;
    s_db_open(g, "gateway-sim", "auths", &d);
    MDB_cursor *c;
    assert_int_equal(mdb_cursor_open(d.txn, d.dbi, &c), 0);
    MDB_val k, v;
    void *found = NULL;
    for (int rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0 && !found;
         rc = mdb_cursor_get(c, &k, &v, MDB_NEXT)) {
        gateway_auth_record_t auth;
        memset(&auth, 0, sizeof auth);
        assert_int_equal(record_decode(&gateway_auth_table, v.mv_data, v.mv_size, &auth),
                         RECORD_OK);
        if (auth.status != GATEWAY_AUTH_CAPTURED ||
            strncmp(auth.key, order_id, strlen(order_id)) != 0 || auth.key[strlen(order_id)] != ':')
            continue;
        found = malloc(v.mv_size);
        assert_non_null(found);
        memcpy(found, v.mv_data, v.mv_size);
        *len = v.mv_size;
        *auth_id = strndup(k.mv_data, k.mv_size);
    }
    mdb_cursor_close(c);
    s_db_close(&d);
    assert_int_equal(fixture_restart(g->fx), 0);
    if (!found)
        fail_msg("no captured authorization of %s at the gateway", order_id);
    return found;
}

static void test_charged_twice(void **state)
{
    group_t *g = *state;
    json_t *lines = s_lines(g->record);
    json_t *paid = s_first(lines, "cart.checkout", "checkout");
    char order[128];
    snprintf(order, sizeof order, "%s", s_get(paid, "ids", "order_id"));
    json_decref(lines);
    char *auth_id = NULL;
    size_t len = 0;
    void *auth = s_captured_auth(g, order, &auth_id, &len);
    /* the same authorization again under another id: captured twice */
    s_put(g, "gateway-sim", "auths", "auth_test_second_capture", auth, len);
    char want[256];
    snprintf(want, sizeof want, "order %s: captured 2 times at the gateway", order);
    s_expect_problem(g, g->record, want);
    s_expect_problem(g, g->record, "at the gateway, ");
    s_put(g, "gateway-sim", "auths", "auth_test_second_capture", NULL, 0);
    s_expect_clean(g);
    free(auth);
    free(auth_id);
}

static void test_reservation_lost(void **state)
{
    group_t *g = *state;
    json_t *lines = s_lines(g->record);
    /* a paid order no later line cancels or refunds in full */
    const char *order = NULL;
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        if (json_is_true(json_object_get(l, "ack")) && s_is(l, "step", "checkout") &&
            s_is(json_object_get(l, "ids"), "status", "paid")) {
            order = s_get(l, "ids", "order_id");
            break;
        }
    }
    assert_non_null(order);
    size_t len;
    void *saved = s_take(g, "catalog", "reservations", order, &len);
    char want[256];
    snprintf(want, sizeof want, "order %s: is paid, its reservation none", order);
    s_expect_problem(g, g->record, want);
    s_expect_problem(g, g->record, "units vanished");
    s_put(g, "catalog", "reservations", order, saved, len);
    free(saved);
    s_expect_clean(g);
    json_decref(lines);
}

static void test_stock_set_behind_the_record(void **state)
{
    group_t *g = *state;
    char *ids = tu_slurp(g->ids, NULL);
    assert_non_null(ids);
    char id[64];
    snprintf(id, sizeof id, "%.*s", (int)strcspn(ids, "\n"), ids);
    free(ids);
    char path[160];
    snprintf(path, sizeof path, "/v1/products/%s", id);
    hc_response_t r = hc_request(g->fx->base, "GET", path, NULL, NULL, NULL);
    hc_expect(&r, 200, "GET product");
    json_int_t stock = hc_int(json_object_get(r.body, "product"), "stock");
    hc_response_free(&r);
    snprintf(path, sizeof path, "/v1/products/%s/stock", id);
    char body[64];
    snprintf(body, sizeof body, "{\"stock\": %lld}", (long long)stock + 5);
    r = hc_request(g->fx->base, "PUT", path, g->fx->admin_token, body, NULL);
    hc_expect(&r, 200, "PUT stock");
    hc_response_free(&r);
    char want[256];
    snprintf(want, sizeof want, "stock %s: ", id);
    s_expect_problem(g, g->record, want);
    s_expect_problem(g, g->record, "units appeared");
    snprintf(body, sizeof body, "{\"stock\": %lld}", (long long)stock);
    r = hc_request(g->fx->base, "PUT", path, g->fx->admin_token, body, NULL);
    hc_expect(&r, 200, "PUT stock back");
    hc_response_free(&r);
    s_expect_clean(g);

    /* a ledger that is not one: a usage error */
    const char *args[] = {"check-record", "--stock", g->record, g->record, NULL};
    assert_int_equal(s_run(g, "retailctl", args, g->out), 2);
}

/* A seeded product with stock left. */
static void s_in_stock(group_t *g, char id[64])
{
    char *ids = tu_slurp(g->ids, NULL);
    assert_non_null(ids);
    for (char *save = NULL, *line = strtok_r(ids, "\n", &save); line && !id[0];
         line = strtok_r(NULL, "\n", &save)) {
        char path[160];
        snprintf(path, sizeof path, "/v1/products/%s", line);
        hc_response_t r = hc_request(g->fx->base, "GET", path, NULL, NULL, NULL);
        hc_expect(&r, 200, "GET product");
        if (hc_int(json_object_get(r.body, "product"), "stock") > 0)
            snprintf(id, 64, "%s", line);
        hc_response_free(&r);
    }
    free(ids);
    if (!id[0])
        fail_msg("no seeded product has stock left");
}

static void test_order_made_twice(void **state)
{
    group_t *g = *state;
    json_t *lines = s_lines(g->record);
    json_t *paid = s_first(lines, "cart.checkout", "checkout");
    const char *user = s_get(paid, NULL, "user_id"), *email = s_get(paid, NULL, "email");
    assert_non_null(email);
    /* none of this user's checkouts has an unknown outcome */
    size_t i;
    json_t *l;
    json_array_foreach(lines, i, l)
    {
        if (s_is(l, "op", "cart.checkout") && s_is(l, "user_id", user))
            assert_true(json_is_true(json_object_get(l, "ack")));
    }
    json_t *login = fixture_login(g->fx, email, MIXED_PASSWORD);
    const char *token = json_string_value(json_object_get(login, "access_token"));
    assert_non_null(token);
    char product[64] = "", body[512];
    s_in_stock(g, product);
    snprintf(body, sizeof body,
             "{\"items\": [{\"product_id\": \"%s\", \"qty\": 1}], \"payment\": {\"card_number\": "
             "\"4242424242424242\", \"exp_month\": 12, \"exp_year\": 2099, \"cvc\": \"123\"}, "
             "\"shipping_address\": {\"name\": \"T\", \"line1\": \"1 St\", \"city\": \"C\", "
             "\"postal_code\": \"1\", \"country\": \"DE\"}}",
             product);
    hc_response_t r = hc_request(g->fx->base, "POST", "/v1/orders", token, body, NULL);
    hc_expect(&r, 201, "one more order");
    hc_response_free(&r);
    json_decref(login);
    char want[256];
    snprintf(want, sizeof want, "buyer %s: has 1 orders no acknowledged checkout names", user);
    s_expect_problem(g, g->record, want);
    json_decref(lines);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mixed_recorded_and_checked),
        cmocka_unit_test(test_key_naming_two_orders),
        cmocka_unit_test(test_charged_twice),
        cmocka_unit_test(test_reservation_lost),
        cmocka_unit_test(test_stock_set_behind_the_record),
        cmocka_unit_test(test_product_lost),
        cmocka_unit_test(test_order_made_twice),
        cmocka_unit_test(fixture_test_stop),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}

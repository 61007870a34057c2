/*  test_loadgen.c - the shipped scenarios against a real retaild, as a
 *  user runs them.
 *
 *  One retaild (tests/fixture.h) on a catalog seeded by retail-seed
 *  (stopped, seeded with --ids, restarted on the same directory, as
 *  README says). Then build/loadgen runs, a process of its own configured
 *  through RETAIL_DATA_DIR and RETAIL_BROKER_ENDPOINT:
 *
 *  - browse, closed loop: every step answered ok, none lost, per-step
 *    figures in the JSON result;
 *  - shop, open loop, recorded: users register and log in (setup), fill
 *    carts and check out with the test card; the record has its header,
 *    acknowledged registrations, cart changes and paid orders, each order
 *    readable by the operator; and `retailctl check-record` finds every
 *    acknowledged change there;
 *  - then the check is shown to see what is missing: an order deleted
 *    from the orders store behind the system's back (retaild stopped) is
 *    reported by id; a cart line the record acknowledges and the cart
 *    does not hold is reported, one whose outcome is unknown is not; a
 *    line that is not a record line is a usage error naming its number;
 *  - cart.get {user_id}, which the check reads carts with, is the
 *    operator's and an admin's: a customer naming another user is
 *    forbidden.
 */
#include "tests/fixture.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 60000

typedef struct {
    fixture_t *fx;
    char ids[FIXTURE_PATH_MAX];
    char env_data[FIXTURE_PATH_MAX + 32];
    char env_broker[128];
} group_t;

/* Runs $build/TOOL with args, stdout to out_path; returns its exit code
 * (-1 when it did not exit normally). */
static int s_run(group_t *g, const char *tool, const char *const *args, const char *out_path)
{
    const char *env[] = {g->env_data, g->env_broker, NULL};
    char err_path[FIXTURE_PATH_MAX + 16];
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
    if (WEXITSTATUS(status) != 0) {
        char *err = tu_slurp(err_path, NULL);
        char *out = tu_slurp(out_path, NULL);
        print_message("%s exited %d\nstdout: %s\nstderr: %s\n", tool, WEXITSTATUS(status),
                      out ? out : "", err ? err : "");
        free(err);
        free(out);
    }
    return WEXITSTATUS(status);
}

/* The last line of the file, parsed. */
static json_t *s_last_json(const char *path)
{
    char *text = tu_slurp(path, NULL);
    assert_non_null(text);
    size_t len = strlen(text);
    while (len && text[len - 1] == '\n')
        text[--len] = '\0';
    char *last = strrchr(text, '\n');
    json_t *doc = json_loads(last ? last + 1 : text, 0, NULL);
    free(text);
    assert_non_null(doc);
    return doc;
}

static json_t *s_step(json_t *result, const char *name)
{
    size_t i;
    json_t *step;
    json_array_foreach(json_object_get(result, "steps"), i, step)
    {
        if (strcmp(json_string_value(json_object_get(step, "name")), name) == 0)
            return step;
    }
    fail_msg("no step %s in the result", name);
    return NULL;
}

static bool s_str_eq(json_t *o, const char *key, const char *want)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v && strcmp(v, want) == 0;
}

static json_int_t s_int(json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static int s_setup(void **state)
{
    group_t *g = calloc(1, sizeof *g);
    assert_non_null(g);
    fixture_opts_t opts = {.name = "retail-loadgen", .logs = true, .accounts = true};
    g->fx = fixture_new(&opts);
    assert_non_null(g->fx);
    /* retail-seed writes while retaild is stopped, then retaild comes back */
    assert_int_equal(fixture_kill(g->fx, g->fx->pid, SIGTERM), 0);
    snprintf(g->ids, sizeof g->ids, "%s/ids.txt", g->fx->dir);
    const char *seed[] = {"--data-dir", g->fx->dir, "-n", "200", "--ids", g->ids, "-q", NULL};
    snprintf(g->env_data, sizeof g->env_data, "RETAIL_DATA_DIR=%s", g->fx->dir);
    snprintf(g->env_broker, sizeof g->env_broker, "RETAIL_BROKER_ENDPOINT=%s",
             g->fx->broker_endpoint);
    char out[FIXTURE_PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/seed.out", g->fx->dir);
    assert_int_equal(s_run(g, "retail-seed", seed, out), 0);
    assert_int_equal(fixture_restart(g->fx), 0);
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

static void test_browse_closed_loop(void **state)
{
    group_t *g = *state;
    char file[FIXTURE_PATH_MAX + 32], out[FIXTURE_PATH_MAX + 16];
    snprintf(file, sizeof file, "products=%s", g->ids);
    snprintf(out, sizeof out, "%s/browse.out", g->fx->dir);
    const char *args[] = {"--scenario", "tools/scenarios/browse.json",
                          "--file",     file,
                          "-c",         "4",
                          "-d",         "1.5",
                          "--warmup",   "0.2",
                          "--json",     "-q",
                          NULL};
    assert_int_equal(s_run(g, "loadgen", args, out), 0);
    json_t *r = s_last_json(out);
    assert_string_equal(json_string_value(json_object_get(r, "scenario")), "browse");
    assert_string_equal(json_string_value(json_object_get(r, "model")), "closed");
    assert_true(s_int(r, "replies") > 50);
    assert_int_equal(s_int(r, "errors"), 0);
    assert_int_equal(s_int(r, "lost"), 0);
    assert_int_equal(s_int(r, "malformed"), 0);
    json_t *product = s_step(r, "product");
    assert_true(s_int(product, "ok") > 0);
    assert_string_equal(json_string_value(json_object_get(product, "op")), "product.get");
    assert_true(json_real_value(json_object_get(product, "p99_us")) >=
                json_real_value(json_object_get(product, "p50_us")));
    assert_true(s_int(s_step(r, "search"), "ok") > 0);
    json_decref(r);
}

static void test_shop_open_loop_recorded_and_checked(void **state)
{
    group_t *g = *state;
    char file[FIXTURE_PATH_MAX + 32], out[FIXTURE_PATH_MAX + 16], record[FIXTURE_PATH_MAX + 16];
    snprintf(file, sizeof file, "products=%s", g->ids);
    snprintf(out, sizeof out, "%s/shop.out", g->fx->dir);
    snprintf(record, sizeof record, "%s/shop.ndjson", g->fx->dir);
    const char *args[] = {"--scenario", "tools/scenarios/shop.json",
                          "--file",     file,
                          "-c",         "6",
                          "--rate",     "150",
                          "-d",         "4",
                          "--warmup",   "0",
                          "--seed",     "5",
                          "--record",   record,
                          "--json",     "-q",
                          NULL};
    assert_int_equal(s_run(g, "loadgen", args, out), 0);
    json_t *r = s_last_json(out);
    assert_string_equal(json_string_value(json_object_get(r, "model")), "open");
    assert_int_equal(s_int(r, "lost"), 0);
    assert_int_equal(s_int(r, "malformed"), 0);
    /* every user registered and logged in once (a busy hasher only delays it) */
    assert_int_equal(s_int(s_step(r, "register"), "ok"), 6);
    assert_int_equal(s_int(s_step(r, "login"), "ok"), 6);
    json_t *checkout = s_step(r, "checkout");
    assert_true(s_int(checkout, "ok") > 0);
    /* the only errors a healthy shop gives this scenario: a busy hasher */
    json_t *by_code = json_object_get(r, "errors_by_code");
    const char *code;
    json_t *count;
    json_object_foreach(by_code, code, count)
    {
        if (strcmp(code, "unavailable") != 0)
            fail_msg("error %s x%lld", code, (long long)json_integer_value(count));
    }
    json_decref(r);

    /* the record: a header, then acknowledged changes */
    char *text = tu_slurp(record, NULL);
    assert_non_null(text);
    int lines = 0, registers = 0, sets = 0, orders = 0;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save), lines++) {
        json_t *l = json_loads(line, 0, NULL);
        assert_non_null(l);
        if (lines == 0) {
            assert_string_equal(json_string_value(json_object_get(l, "record")), "loadgen");
            assert_string_equal(json_string_value(json_object_get(l, "scenario")), "shop");
            json_decref(l);
            continue;
        }
        const char *op = json_string_value(json_object_get(l, "op"));
        bool ack = json_is_true(json_object_get(l, "ack"));
        json_t *ids = json_object_get(l, "ids");
        if (ack && strcmp(op, "auth.register") == 0) {
            registers++;
            assert_non_null(json_string_value(json_object_get(ids, "user_id")));
        } else if (ack && strcmp(op, "cart.set_item") == 0) {
            sets++;
            assert_non_null(json_string_value(json_object_get(l, "user_id")));
        } else if (ack && strcmp(op, "cart.checkout") == 0) {
            orders++;
            assert_string_equal(json_string_value(json_object_get(ids, "status")), "paid");
            assert_non_null(json_string_value(json_object_get(ids, "order_id")));
            assert_true(json_integer_value(json_object_get(ids, "total_cents")) > 0);
        }
        json_decref(l);
    }
    free(text);
    assert_int_equal(registers, 6);
    assert_true(sets > 0);
    assert_true(orders > 0);

    /* and the system has every acknowledged change */
    char check_out[FIXTURE_PATH_MAX + 16];
    snprintf(check_out, sizeof check_out, "%s/check.out", g->fx->dir);
    const char *check[] = {"check-record", record, NULL};
    assert_int_equal(s_run(g, "retailctl", check, check_out), 0);
    char *said = tu_slurp(check_out, NULL);
    assert_non_null(strstr(said, "0 problems"));
    free(said);
}

/* The first acknowledged line of the step in the record, parsed. */
static json_t *s_record_line(const char *record, const char *step)
{
    char *text = tu_slurp(record, NULL);
    assert_non_null(text);
    json_t *found = NULL;
    for (char *save = NULL, *line = strtok_r(text, "\n", &save); line && !found;
         line = strtok_r(NULL, "\n", &save)) {
        json_t *l = json_loads(line, 0, NULL);
        if (l && json_is_true(json_object_get(l, "ack")) && s_str_eq(l, "step", step))
            found = l;
        else
            json_decref(l);
    }
    free(text);
    if (!found)
        fail_msg("no acknowledged %s in %s", step, record);
    return found;
}

/* Deletes the order from the orders store's LMDB environment, with
 * retaild stopped: what a lost write would look like. */
static void s_delete_order(group_t *g, const char *order_id)
{
    char path[FIXTURE_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/orders", g->fx->dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, 32), 0);
    assert_int_equal(mdb_env_set_mapsize(env, 1ULL << 30), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, "orders", 0, &dbi), 0);
    MDB_val key = {strlen(order_id), (void *)order_id};
    assert_int_equal(mdb_del(txn, dbi, &key, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_check_finds_what_is_missing(void **state)
{
    group_t *g = *state;
    char record[FIXTURE_PATH_MAX + 16], out[FIXTURE_PATH_MAX + 16], crafted[FIXTURE_PATH_MAX + 16];
    snprintf(record, sizeof record, "%s/shop.ndjson", g->fx->dir);
    snprintf(out, sizeof out, "%s/check2.out", g->fx->dir);
    snprintf(crafted, sizeof crafted, "%s/crafted.ndjson", g->fx->dir);
    json_t *order = s_record_line(record, "checkout"); /* not one cancelled after */
    const char *order_id =
        json_string_value(json_object_get(json_object_get(order, "ids"), "order_id"));
    assert_non_null(order_id);

    assert_int_equal(fixture_kill(g->fx, g->fx->pid, SIGTERM), 0);
    s_delete_order(g, order_id);
    assert_int_equal(fixture_restart(g->fx), 0);
    const char *check[] = {"check-record", record, NULL};
    assert_int_equal(s_run(g, "retailctl", check, out), 1);
    char *said = tu_slurp(out, NULL);
    char want[256];
    snprintf(want, sizeof want, "order %s: acknowledged", order_id);
    if (!strstr(said, want))
        fail_msg("the deleted order %s is not reported:\n%s", order_id, said);
    assert_non_null(strstr(said, "1 problems"));
    free(said);

    /* A crafted record of one user's cart: an unknown outcome is not held
     * to anything, an acknowledged line the cart lacks is reported. */
    const char *user = json_string_value(json_object_get(order, "user_id"));
    FILE *f = fopen(crafted, "w");
    assert_non_null(f);
    fprintf(f, "{\"record\":\"loadgen\",\"version\":1,\"run\":\"x\",\"scenario\":\"x\","
               "\"started\":\"2026-01-01T00:00:00Z\"}\n");
    fprintf(f,
            "{\"vu\":0,\"step\":\"a\",\"service\":\"orders\",\"op\":\"cart.set_item\","
            "\"ack\":false,\"code\":\"no_reply\",\"user_id\":\"%s\",\"keys\":"
            "{\"product_id\":\"p-unknown\",\"qty\":1}}\n",
            user);
    fprintf(f,
            "{\"vu\":0,\"step\":\"a\",\"service\":\"orders\",\"op\":\"cart.set_item\","
            "\"ack\":true,\"user_id\":\"%s\",\"keys\":{\"product_id\":\"p-acked\","
            "\"qty\":2},\"ids\":{}}\n",
            user);
    fclose(f);
    const char *check2[] = {"check-record", crafted, NULL};
    assert_int_equal(s_run(g, "retailctl", check2, out), 1);
    said = tu_slurp(out, NULL);
    assert_non_null(strstr(said, "lost p-acked x2"));
    assert_null(strstr(said, "p-unknown"));
    free(said);

    f = fopen(crafted, "a");
    assert_non_null(f);
    fprintf(f, "{\"vu\":0,\"op\":\"cart.set_item\"}\n");
    fclose(f);
    char err_path[FIXTURE_PATH_MAX + 32];
    assert_int_equal(s_run(g, "retailctl", check2, out), 2);
    snprintf(err_path, sizeof err_path, "%s.err", out);
    said = tu_slurp(err_path, NULL);
    assert_non_null(strstr(said, "crafted.ndjson:4:"));
    free(said);
    json_decref(order);
}

static void test_cart_of_another_user(void **state)
{
    group_t *g = *state;
    char out[FIXTURE_PATH_MAX + 16];
    snprintf(out, sizeof out, "%s/cart.out", g->fx->dir);
    const char *customer[] = {"call",   "--token",  g->fx->customer_token,
                              "orders", "cart.get", "{\"user_id\": \"u-someone-else\"}",
                              NULL};
    assert_int_equal(s_run(g, "retailctl", customer, out), 1);
    char *said = tu_slurp(out, NULL);
    assert_non_null(strstr(said, "forbidden"));
    free(said);
    const char *admin[] = {"call",   "--token",  g->fx->admin_token,
                           "orders", "cart.get", "{\"user_id\": \"u-someone-else\"}",
                           NULL};
    assert_int_equal(s_run(g, "retailctl", admin, out), 0);
    const char *operator[] = {"call", "orders", "cart.get", "{\"user_id\": \"u-someone-else\"}",
                              NULL};
    assert_int_equal(s_run(g, "retailctl", operator, out), 0);
    said = tu_slurp(out, NULL);
    assert_non_null(strstr(said, "\"items\""));
    free(said);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_browse_closed_loop),
        cmocka_unit_test(test_shop_open_loop_recorded_and_checked),
        cmocka_unit_test(test_check_finds_what_is_missing),
        cmocka_unit_test(test_cart_of_another_user),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}

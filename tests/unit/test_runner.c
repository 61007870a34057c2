/*  test_runner.c - the load harness's engine (tools/harness/runner.h)
 *  against a small MDP server in this process.
 *
 *  The server is an actor with a ROUTER on an inproc endpoint that speaks
 *  the client side of MDP like the broker and answers by op:
 *
 *      auth.login     {access_token: "T" + email, user: {id: "u-" + email, email}}
 *      use            ok when the envelope's token is "T" + args.email
 *      cart.set_item  ok, {cart: {}}
 *      drop           never answered
 *      anything else  ok, its args back; the first request that comes
 *                     300 ms or more after the first one stalls the server
 *                     for 200 ms when the server was made to stall
 *
 *  Tests: the open loop's schedule shows a 200 ms stall in its p99 (the
 *  requests due during the stall count from when they were due) and keeps
 *  its rate; the closed loop sends the next request at once and each user
 *  runs its setup once, its captured token filled into later requests;
 *  the record gets a header and a line per recorded op with the user from
 *  the login; a request with no reply is given up after the timeout and
 *  recorded as an unknown outcome; a key a step's let made goes out in
 *  that step and in the retry after it, a new one in the next flow; the
 *  catalog's writes and a refund make their record lines.
 */
#include "tests/testutil.h"
#include "tools/harness/record.h"
#include "tools/harness/runner.h"
#include "tools/harness/scenario.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "protocol/mdp.h"

typedef struct {
    const char *endpoint;
    bool stall;
} server_args_t;

static void s_pack_strf(msgpack_packer *pk, const char *prefix, const msgpack_object *o)
{
    char buf[256];
    int n = snprintf(buf, sizeof buf, "%s%.*s", prefix, o ? (int)o->via.str.size : 0,
                     o ? o->via.str.ptr : "");
    mp_pack_strn(pk, buf, (size_t)n);
}

static bool s_str_is(const char *s, size_t len, const char *want)
{
    return len == strlen(want) && memcmp(s, want, len) == 0;
}

static void s_server(zsock_t *pipe, void *arg)
{
    server_args_t *args = arg;
    zsock_t *router = zsock_new_router(args->endpoint);
    assert_non_null(router);
    zpoller_t *poller = zpoller_new(pipe, router, NULL);
    zsock_signal(pipe, 0);
    int64_t first = 0;
    bool stalled = false;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 4096);
    while (true) {
        void *which = zpoller_wait(poller, -1);
        if (which == pipe || !which)
            break;
        zmsg_t *msg = zmsg_recv(router);
        if (!msg)
            break;
        zframe_t *identity = zmsg_pop(msg);
        zframe_t *empty = zmsg_pop(msg);
        zframe_t *header = zmsg_pop(msg);
        zframe_t *service = zmsg_pop(msg);
        zframe_t *body = zmsg_pop(msg);
        envelope_request_t req;
        const char *why;
        bool decoded = body && envelope_decode_request(zframe_data(body), zframe_size(body), &zone,
                                                       &req, &why);
        assert_true(decoded);
        int64_t now = zclock_mono();
        if (!first)
            first = now;
        if (args->stall && !stalled && now - first >= 300) {
            zclock_sleep(200); /* the stall being simulated, not a wait */
            stalled = true;
        }
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        const msgpack_object *email = mp_map_get(&req.args, "email");
        bool answer = true;
        if (s_str_is(req.op, req.op_len, "auth.login")) {
            envelope_reply_ok_begin(&pk, &req.id);
            msgpack_pack_map(&pk, 2);
            mp_pack_str(&pk, "access_token");
            s_pack_strf(&pk, "T", email);
            mp_pack_str(&pk, "user");
            msgpack_pack_map(&pk, 2);
            mp_pack_str(&pk, "id");
            s_pack_strf(&pk, "u-", email);
            mp_pack_str(&pk, "email");
            s_pack_strf(&pk, "", email);
        } else if (s_str_is(req.op, req.op_len, "use")) {
            char want[256];
            snprintf(want, sizeof want, "T%.*s", email ? (int)email->via.str.size : 0,
                     email ? email->via.str.ptr : "");
            if (req.token && s_str_is(req.token, req.token_len, want)) {
                envelope_reply_ok_begin(&pk, &req.id);
                msgpack_pack_nil(&pk);
            } else
                envelope_reply_error(&out, &req.id, ERR_UNAUTHENTICATED, "wrong token", NULL, 0);
        } else if (s_str_is(req.op, req.op_len, "cart.set_item")) {
            envelope_reply_ok_begin(&pk, &req.id);
            msgpack_pack_map(&pk, 1);
            mp_pack_str(&pk, "cart");
            msgpack_pack_map(&pk, 0);
        } else if (s_str_is(req.op, req.op_len, "drop"))
            answer = false;
        else {
            envelope_reply_ok_begin(&pk, &req.id);
            msgpack_pack_object(&pk, req.args);
        }
        if (answer) {
            zmsg_t *reply = zmsg_new();
            zmsg_append(reply, &identity);
            zmsg_addmem(reply, "", 0);
            zmsg_addstr(reply, MDP_CLIENT);
            zmsg_append(reply, &service);
            zmsg_addmem(reply, out.data, out.size);
            zmsg_send(&reply, router);
        }
        msgpack_sbuffer_destroy(&out);
        msgpack_zone_clear(&zone);
        zframe_destroy(&identity);
        zframe_destroy(&empty);
        zframe_destroy(&header);
        zframe_destroy(&service);
        zframe_destroy(&body);
        zmsg_destroy(&msg);
    }
    msgpack_zone_destroy(&zone);
    zpoller_destroy(&poller);
    zsock_destroy(&router);
}

static char *s_endpoint(const char *test)
{
    return zsys_sprintf("inproc://test-runner-%s", test);
}

static runner_t *s_runner(const runner_options_t *o, const scenario_t *sc)
{
    char err[256];
    runner_t *r = runner_new(o, sc, err, sizeof err);
    if (!r)
        fail_msg("%s", err);
    return r;
}

static void test_open_loop_shows_a_stall(void **state)
{
    (void)state;
    char *endpoint = s_endpoint("stall");
    server_args_t sa = {endpoint, true};
    zactor_t *server = zactor_new(s_server, &sa);
    char err[256];
    scenario_t *sc = scenario_single("sys", "echo", 8, err, sizeof err);
    assert_non_null(sc);
    runner_options_t o = {.endpoint = endpoint,
                          .vus = 64,
                          .sockets = 2,
                          .seconds = 1.5,
                          .warmup = 0,
                          .rate = 400,
                          .timeout_ms = 5000,
                          .seed = 1};
    runner_t *r = s_runner(&o, sc);
    assert_int_equal(runner_run(r), 0);
    const runner_result_t *res = runner_result(r);
    uint64_t p99 = histogram_percentile(res->total.latency, 99);
    uint64_t max = histogram_percentile(res->total.latency, 100);
    /* 80 of the 600 requests were due during the stall and waited up to
     * 200 ms: the slowest 1% waited at least 185 ms from their due time. */
    if (p99 < 150 * 1000000ULL)
        fail_msg("open loop p99 %.1f ms does not show the 200 ms stall", (double)p99 / 1e6);
    assert_true(max >= 190 * 1000000ULL);
    /* the schedule held: every due request was sent and answered */
    assert_true(res->total.requests >= 540 && res->total.requests <= 601);
    assert_int_equal(res->total.ok, res->total.replies);
    assert_int_equal(runner_stats_errors(&res->total), 0);
    assert_true(res->due_late_max >= 10); /* the stall held up the schedule */
    runner_destroy(&r);
    assert_null(r);
    scenario_destroy(&sc);
    zactor_destroy(&server);
    zstr_free(&endpoint);
}

static const char *s_flow_json =
    "{\"name\": \"t\","
    " \"setup\": [{\"name\": \"login\", \"service\": \"users\", \"op\": \"auth.login\","
    "   \"args\": {\"email\": \"u{{vu}}@x.test\"}, \"capture\": {\"token\": \"access_token\"}}],"
    " \"flows\": [{\"name\": \"f\", \"steps\": ["
    "   {\"name\": \"use\", \"service\": \"users\", \"op\": \"use\", \"token\": \"{{token}}\","
    "    \"args\": {\"email\": \"u{{vu}}@x.test\"}},"
    "   {\"name\": \"add\", \"service\": \"orders\", \"op\": \"cart.set_item\", \"token\": "
    "\"{{token}}\","
    "    \"args\": {\"product_id\": \"p{{random 1 3}}\", \"qty\": \"{{random 1 2}}\"}}]}]}";

static void test_closed_loop_setup_captures_record(void **state)
{
    (void)state;
    char *endpoint = s_endpoint("flow");
    server_args_t sa = {endpoint, false};
    zactor_t *server = zactor_new(s_server, &sa);
    char err[256] = "";
    scenario_t *sc = scenario_parse(s_flow_json, NULL, NULL, 0, err, sizeof err);
    if (!sc)
        fail_msg("%s", err);
    char *dir = tu_tempdir("runner");
    char path[512];
    snprintf(path, sizeof path, "%s/record.ndjson", dir);
    runner_options_t o = {.endpoint = endpoint,
                          .vus = 4,
                          .sockets = 1,
                          .seconds = 0.5,
                          .warmup = 0,
                          .timeout_ms = 5000,
                          .seed = 7,
                          .run_id = "RUN"};
    runner_t *r = s_runner(&o, sc);
    record_t *rec = record_new(path, "RUN", "t", err, sizeof err);
    assert_non_null(rec);
    runner_set_record(r, rec);
    assert_int_equal(runner_run(r), 0);
    const runner_result_t *res = runner_result(r);
    /* each user logged in once; every later request carried its token */
    assert_int_equal(res->steps[0].ok, 4);
    assert_true(res->steps[1].ok > 20);
    assert_int_equal(runner_stats_errors(&res->total), 0);
    assert_true(res->steps[2].ok >= res->steps[1].ok - 4);
    assert_int_equal(record_close(&rec, err, sizeof err), 0);

    /* the record: a header, then one line per ok cart.set_item */
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[2048];
    assert_non_null(fgets(line, sizeof line, f));
    json_t *header = json_loads(line, 0, NULL);
    assert_non_null(header);
    assert_string_equal(json_string_value(json_object_get(header, "record")), "loadgen");
    assert_int_equal(json_integer_value(json_object_get(header, "version")), RECORD_VERSION);
    assert_string_equal(json_string_value(json_object_get(header, "run")), "RUN");
    json_decref(header);
    uint64_t lines = 0, logins = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *l = json_loads(line, 0, NULL);
        assert_non_null(l);
        assert_true(json_is_true(json_object_get(l, "ack")));
        const char *op = json_string_value(json_object_get(l, "op"));
        if (strcmp(op, "auth.login") == 0) {
            logins++;
            json_decref(l);
            continue;
        }
        assert_string_equal(op, "cart.set_item");
        json_int_t vu = json_integer_value(json_object_get(l, "vu"));
        char want[64];
        snprintf(want, sizeof want, "u-u%d@x.test", (int)vu);
        assert_string_equal(json_string_value(json_object_get(l, "user_id")), want);
        json_t *keys = json_object_get(l, "keys");
        const char *product = json_string_value(json_object_get(keys, "product_id"));
        assert_non_null(product);
        assert_true(product[0] == 'p' && product[1] >= '1' && product[1] <= '3');
        json_int_t qty = json_integer_value(json_object_get(keys, "qty"));
        assert_true(qty == 1 || qty == 2);
        json_decref(l);
        lines++;
    }
    fclose(f);
    assert_int_equal(lines, res->steps[2].ok);
    assert_int_equal(logins, 4);
    runner_destroy(&r);
    scenario_destroy(&sc);
    zactor_destroy(&server);
    tu_rmtree(dir);
    free(dir);
    zstr_free(&endpoint);
}

static void test_no_reply_is_given_up(void **state)
{
    (void)state;
    char *endpoint = s_endpoint("drop");
    server_args_t sa = {endpoint, false};
    zactor_t *server = zactor_new(s_server, &sa);
    char err[256] = "";
    scenario_t *sc = scenario_parse(
        "{\"name\": \"d\", \"flows\": [{\"name\": \"f\", \"steps\": [{\"name\": \"drop\", "
        "\"service\": \"orders\", \"op\": \"drop\"}, {\"name\": \"clear\", \"service\": "
        "\"orders\", \"op\": \"cart.clear\"}]}]}",
        NULL, NULL, 0, err, sizeof err);
    if (!sc)
        fail_msg("%s", err);
    runner_options_t o = {.endpoint = endpoint,
                          .vus = 2,
                          .sockets = 1,
                          .seconds = 0.7,
                          .warmup = 0,
                          .timeout_ms = 200,
                          .seed = 3};
    runner_t *r = s_runner(&o, sc);
    assert_int_equal(runner_run(r), 0);
    const runner_result_t *res = runner_result(r);
    /* each user's drop waited 200 ms, then its flow ended: the clear
     * step never ran */
    assert_true(res->steps[0].no_reply >= 4);
    assert_int_equal(res->steps[1].requests, 0);
    assert_int_equal(res->total.ok, 0);
    assert_int_equal(res->unmatched, 0);
    runner_destroy(&r);
    scenario_destroy(&sc);
    zactor_destroy(&server);
    zstr_free(&endpoint);
}

/* A key made by a step's let goes out twice, in that step and in the
 * retry after it, and a new one in the next flow: the record shows it. */
static void test_let_sends_one_key_twice(void **state)
{
    (void)state;
    char *endpoint = s_endpoint("let");
    server_args_t sa = {endpoint, false};
    zactor_t *server = zactor_new(s_server, &sa);
    char err[256] = "";
    scenario_t *sc = scenario_parse(
        "{\"name\": \"k\", \"flows\": [{\"name\": \"f\", \"steps\": ["
        " {\"name\": \"pay\", \"service\": \"orders\", \"op\": \"cart.checkout\","
        "  \"let\": {\"key\": \"{{unique}}\"}, \"args\": {\"idempotency_key\": \"{{key}}\"}},"
        " {\"name\": \"again\", \"service\": \"orders\", \"op\": \"cart.checkout\","
        "  \"args\": {\"idempotency_key\": \"{{key}}\"}}]}]}",
        NULL, NULL, 0, err, sizeof err);
    if (!sc)
        fail_msg("%s", err);
    char *dir = tu_tempdir("runner");
    char path[512];
    snprintf(path, sizeof path, "%s/record.ndjson", dir);
    runner_options_t o = {.endpoint = endpoint,
                          .vus = 1,
                          .sockets = 1,
                          .seconds = 0.3,
                          .warmup = 0,
                          .timeout_ms = 5000,
                          .seed = 9,
                          .run_id = "RUN"};
    runner_t *r = s_runner(&o, sc);
    record_t *rec = record_new(path, "RUN", "k", err, sizeof err);
    assert_non_null(rec);
    runner_set_record(r, rec);
    assert_int_equal(runner_run(r), 0);
    assert_int_equal(runner_stats_errors(&runner_result(r)->total), 0);
    assert_int_equal(record_close(&rec, err, sizeof err), 0);

    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[2048], first[256] = "";
    assert_non_null(fgets(line, sizeof line, f)); /* the header */
    int pairs = 0;
    while (fgets(line, sizeof line, f)) {
        json_t *l = json_loads(line, 0, NULL);
        assert_non_null(l);
        const char *step = json_string_value(json_object_get(l, "step"));
        const char *key =
            json_string_value(json_object_get(json_object_get(l, "keys"), "idempotency_key"));
        assert_non_null(key);
        if (strcmp(step, "pay") == 0) {
            /* a new key each flow: the user's unique counter moved on */
            char want[64];
            snprintf(want, sizeof want, "RUN-0-%d", pairs);
            assert_string_equal(key, want);
            snprintf(first, sizeof first, "%s", key);
        } else {
            assert_string_equal(step, "again");
            assert_string_equal(key, first);
            pairs++;
        }
        json_decref(l);
    }
    fclose(f);
    assert_true(pairs > 10);
    runner_destroy(&r);
    scenario_destroy(&sc);
    zactor_destroy(&server);
    tu_rmtree(dir);
    free(dir);
    zstr_free(&endpoint);
}

/* The record's lines of the catalog's writes and of a refund: keys from
 * the args, ids from the reply (tools/harness/record.h). */
static void test_record_catalog_writes(void **state)
{
    (void)state;
    char *dir = tu_tempdir("runner");
    char path[512], err[256];
    snprintf(path, sizeof path, "%s/record.ndjson", dir);
    record_t *rec = record_new(path, "RUN", "t", err, sizeof err);
    assert_non_null(rec);
    struct {
        const char *service, *op, *args, *data;
        bool ack;
    } cases[] = {
        {"catalog", "product.create",
         "{\"sku\": \"S1\", \"name\": \"N\", \"price_cents\": 120, \"stock\": 4, \"currency\": "
         "\"EUR\"}",
         "{\"product\": {\"id\": \"p1\", \"version\": 1, \"stock\": 4}}", true},
        {"catalog", "product.update", "{\"id\": \"p1\", \"name\": \"M\"}",
         "{\"product\": {\"id\": \"p1\", \"version\": 2}}", true},
        {"catalog", "product.set_stock", "{\"id\": \"p1\", \"stock\": 9}", NULL, false},
        {"catalog", "product.delete", "{\"id\": \"p1\"}", "null", true},
        {"payments", "payment.refund",
         "{\"id\": \"pay1\", \"amount_cents\": 50, "
         "\"idempotency_key\": \"k\"}",
         "{\"payment\": {\"refunded_cents\": 50, \"status\": \"partially_refunded\"}}", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        assert_true(record_wants(cases[i].service, cases[i].op));
        msgpack_sbuffer args, data;
        msgpack_sbuffer_init(&args);
        msgpack_sbuffer_init(&data);
        assert_int_equal(
            jsonpack_from_json(cases[i].args, strlen(cases[i].args), &args, 8, err, sizeof err), 0);
        msgpack_unpacked a, d;
        msgpack_unpacked_init(&a);
        msgpack_unpacked_init(&d);
        assert_int_equal(msgpack_unpack_next(&a, args.data, args.size, NULL),
                         MSGPACK_UNPACK_SUCCESS);
        if (cases[i].data) {
            assert_int_equal(
                jsonpack_from_json(cases[i].data, strlen(cases[i].data), &data, 8, err, sizeof err),
                0);
            assert_int_equal(msgpack_unpack_next(&d, data.data, data.size, NULL),
                             MSGPACK_UNPACK_SUCCESS);
        }
        record_entry_t e = {.vu = 1,
                            .step = cases[i].op,
                            .service = cases[i].service,
                            .op = cases[i].op,
                            .ack = cases[i].ack,
                            .code = cases[i].ack ? NULL : "no_reply",
                            .args = &a.data,
                            .data = cases[i].data ? &d.data : NULL};
        assert_int_equal(record_write(rec, &e), 0);
        msgpack_unpacked_destroy(&a);
        msgpack_unpacked_destroy(&d);
        msgpack_sbuffer_destroy(&args);
        msgpack_sbuffer_destroy(&data);
    }
    assert_false(record_wants("catalog", "product.get"));
    assert_int_equal(record_close(&rec, err, sizeof err), 0);
    char *text = tu_slurp(path, NULL);
    assert_non_null(text);
    const char *want[] = {
        "\"keys\":{\"sku\":\"S1\",\"name\":\"N\",\"price_cents\":120,\"stock\":4},"
        "\"ids\":{\"product_id\":\"p1\",\"version\":1}",
        "\"keys\":{\"product_id\":\"p1\",\"name\":\"M\"},\"ids\":{\"version\":2}",
        "\"code\":\"no_reply\",\"keys\":{\"product_id\":\"p1\",\"stock\":9}}",
        "\"op\":\"product.delete\",\"ack\":true,\"keys\":{\"product_id\":\"p1\"},\"ids\":{}",
        "\"keys\":{\"payment_id\":\"pay1\",\"idempotency_key\":\"k\",\"amount_cents\":50},"
        "\"ids\":{\"refunded_cents\":50,\"status\":\"partially_refunded\"}",
    };
    for (size_t i = 0; i < sizeof want / sizeof *want; i++)
        if (!strstr(text, want[i]))
            fail_msg("the record lacks %s:\n%s", want[i], text);
    free(text);
    tu_rmtree(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_loop_shows_a_stall),
        cmocka_unit_test(test_closed_loop_setup_captures_record),
        cmocka_unit_test(test_no_reply_is_given_up),
        cmocka_unit_test(test_let_sends_one_key_twice),
        cmocka_unit_test(test_record_catalog_writes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

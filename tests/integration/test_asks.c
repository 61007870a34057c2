/*  test_asks.c - replies that wait, in a whole system over CURVE TCP.
 *
 *  One retaild runs the broker and the bridge; a second runs the sys pool
 *  alone, connected over TCP with CurveZMQ (2 workers holding up to 64
 *  requests each), with the test ops on: sys.ask asks another service as
 *  `sys` and answers what it answered. The other service is this test: a
 *  hand-made MDP worker for "slow" over CURVE TCP that holds what it gets
 *  and answers when the test says, out of order, with tags.
 *
 *  Covered: asks go out over CURVE TCP as the pool's service (the slow
 *  worker sees caller "sys"), answers in any order reach the right
 *  clients; a pool killed (SIGKILL) while it holds requests waiting on
 *  asks: each request is answered unavailable exactly once (held or still
 *  queued), the late answers to its asks go nowhere; /metrics shows the
 *  broker's counts, also from a bridge in another process.
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include "protocol/envelope.h"
#include "protocol/mdp.h"

#include <signal.h>

#define CAPACITY 64 /* per sys worker */
#define KILLED 200  /* requests in flight when the pool is killed */

static const char *const s_env[] = {"RETAIL_TEST_OPS=1", "RETAIL_HEARTBEAT_MS=100",
                                    "RETAIL_WORKER_CAPACITY=64", "RETAIL_REQUEST_TIMEOUT_MS=30000",
                                    NULL};

typedef struct {
    fixture_t *f;
    pid_t pool;
    mdpcli_t *client;
    zsock_t *slow; /* the hand-made "slow" worker */
} system_t;

static int s_setup(void **state)
{
    system_t *s = calloc(1, sizeof *s);
    const char *const roles[] = {"broker", "bridge", NULL};
    fixture_opts_t opts = {
        .name = "retail-asks", .roles = roles, .env = s_env, .ready_path = "/healthz"};
    s->f = fixture_new(&opts);
    assert_non_null(s->f);
    const char *const pool[] = {"sys", NULL};
    s->pool = fixture_spawn(s->f, pool);
    assert_true(s->pool > 0);
    s->client = fixture_client(s->f, "tester");
    assert_true(fixture_wait_workers(s->client, "sys", 2, 20000) >= 0);

    /* The slow worker: a CURVE client with an allowed certificate named
     * after its service, which the broker requires of a worker over TCP. */
    zcert_t *cert = keys_ensure(s->f->keys, "slow");
    assert_non_null(cert);
    assert_int_equal(keys_allow(s->f->keys, cert, "slow"), 0);
    s->slow = zsock_new(ZMQ_DEALER);
    assert_non_null(s->slow);
    zsock_set_linger(s->slow, 0);
    keys_apply_client(s->slow, cert, s->f->broker_key);
    zcert_destroy(&cert);
    assert_int_equal(zsock_connect(s->slow, "%s", s->f->broker_endpoint), 0);
    assert_int_equal(zstr_sendx(s->slow, "", MDP_WORKER, "\x01", "slow", "1024", NULL), 0);
    assert_true(fixture_wait_workers(s->client, "slow", 1, 20000) >= 0);
    *state = s;
    return 0;
}

static int s_teardown(void **state)
{
    system_t *s = *state;
    zsock_destroy(&s->slow);
    mdpcli_destroy(&s->client);
    fixture_destroy(&s->f);
    free(s);
    return 0;
}

/* Sends sys.ask {service: "slow", op: "get", args: {n}} with id n. */
static void s_ask(system_t *s, int n)
{
    msgpack_sbuffer args, body;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_str(&pk, "service");
    mp_pack_str(&pk, "slow");
    mp_pack_str(&pk, "op");
    mp_pack_str(&pk, "get");
    mp_pack_str(&pk, "timeout_ms");
    msgpack_pack_int(&pk, 25000);
    mp_pack_str(&pk, "args");
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "n");
    msgpack_pack_int(&pk, n);
    assert_int_equal(envelope_pack_request(&body, (uint64_t)n, "ask", NULL, args.data, args.size),
                     0);
    assert_int_equal(mdpcli_send(s->client, "sys", body.data, body.size), 0);
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&body);
}

/* A request the slow worker holds: its client frame, tag, caller, and
 * the ask's id (a ticket of the asking worker) and n. */
typedef struct {
    zframe_t *client, *tag;
    char caller[72];
    uint64_t ticket;
    int64_t n;
} held_t;

/* The next REQUEST to the slow worker (heartbeats answered), or false
 * after timeout_ms. */
static bool s_slow_next(system_t *s, held_t *out, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(s->slow, NULL);
    int64_t end = zclock_mono() + timeout_ms;
    bool found = false;
    while (!found && zclock_mono() < end) {
        if (!zpoller_wait(poller, 100)) {
            zstr_sendx(s->slow, "", MDP_WORKER, "\x04", NULL); /* we are alive */
            continue;
        }
        zmsg_t *msg = zmsg_recv(s->slow);
        assert_non_null(msg);
        /* [empty][MDPW01][REQUEST][client][empty][body][caller][tag] */
        zframe_t *command = NULL;
        if (zmsg_size(msg) >= 3) {
            zmsg_first(msg);
            zmsg_next(msg);
            command = zmsg_next(msg);
        }
        if (command && zframe_size(command) == 1 && zframe_data(command)[0] == MDP_HEARTBEAT)
            zstr_sendx(s->slow, "", MDP_WORKER, "\x04", NULL);
        if (command && zframe_size(command) == 1 && zframe_data(command)[0] == MDP_REQUEST) {
            assert_int_equal(zmsg_size(msg), 8);
            out->client = zframe_dup(zmsg_next(msg));
            zmsg_next(msg);
            zframe_t *body = zmsg_next(msg);
            zframe_t *caller = zmsg_next(msg);
            snprintf(out->caller, sizeof out->caller, "%.*s", (int)zframe_size(caller),
                     (const char *)zframe_data(caller));
            out->tag = zframe_dup(zmsg_next(msg));
            msgpack_zone zone;
            msgpack_zone_init(&zone, 512);
            envelope_request_t request;
            const char *why;
            assert_true(envelope_decode_request(zframe_data(body), zframe_size(body), &zone,
                                                &request, &why));
            out->ticket = request.id.via.u64;
            out->n = mp_map_get(&request.args, "n")->via.i64;
            msgpack_zone_destroy(&zone);
            found = true;
        }
        zmsg_destroy(&msg);
    }
    zpoller_destroy(&poller);
    return found;
}

/* Answers a held request with {"n": n}, tagged. */
static void s_slow_answer(system_t *s, held_t *h)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = h->ticket};
    envelope_reply_ok_begin(&pk, &id);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "n");
    msgpack_pack_int64(&pk, h->n);
    zmsg_t *reply = zmsg_new();
    zmsg_addmem(reply, "", 0);
    zmsg_addstr(reply, MDP_WORKER);
    zmsg_addmem(reply, "\x03", 1);
    zmsg_append(reply, &h->client);
    zmsg_addmem(reply, "", 0);
    zmsg_addmem(reply, buf.data, buf.size);
    zmsg_append(reply, &h->tag);
    assert_int_equal(zmsg_send(&reply, s->slow), 0);
    msgpack_sbuffer_destroy(&buf);
}

/* A reply to the test's client: its id, whether ok, and answer.n (or -1);
 * false after timeout_ms. */
static bool s_reply(system_t *s, int timeout_ms, uint64_t *id, err_code_t *code, int64_t *n)
{
    zframe_t *frame = mdpcli_recv(s->client, timeout_ms, NULL);
    if (!frame)
        return false;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 512);
    envelope_reply_t reply;
    const char *why;
    assert_true(envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why));
    *id = reply.id.via.u64;
    *code = reply.ok ? ERR_NONE : reply.code;
    *n = -1;
    if (reply.ok) {
        const msgpack_object *answer = mp_map_get(&reply.data, "answer");
        assert_non_null(answer);
        *n = mp_map_get(answer, "n")->via.i64;
    }
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return true;
}

/* The value of the first line of text that starts with series, or -1. */
static double s_series(const char *text, const char *series)
{
    for (const char *p = text; (p = strstr(p, series)); p++)
        if ((p == text || p[-1] == '\n') && p[strlen(series)] == ' ')
            return atof(p + strlen(series) + 1);
    return -1;
}

static void test_asks_over_curve_answer_out_of_order(void **state)
{
    system_t *s = *state;
    enum { N = 20 };
    for (int i = 0; i < N; i++)
        s_ask(s, i);
    held_t held[N];
    for (int i = 0; i < N; i++) {
        assert_true(s_slow_next(s, &held[i], 10000));
        assert_string_equal(held[i].caller, "sys"); /* the pool's certificate */
    }
    for (int i = N - 1; i >= 0; i--) /* the last asked answered first */
        s_slow_answer(s, &held[i]);
    bool seen[N] = {false};
    for (int i = 0; i < N; i++) {
        uint64_t id;
        err_code_t code;
        int64_t n;
        assert_true(s_reply(s, 10000, &id, &code, &n));
        assert_int_equal(code, ERR_NONE);
        assert_true(id < N);
        assert_false(seen[id]);
        seen[id] = true;
        assert_int_equal(n, (int64_t)id); /* its own answer */
    }
    assert_int_equal(fixture_stop(s->f), 0); /* both processes: SIGTERM, and exit 0 */
}

static void test_killed_pool_answers_each_request_once(void **state)
{
    system_t *s = *state;
    for (int i = 0; i < KILLED; i++)
        s_ask(s, i);
    /* Both workers full: 2 x CAPACITY held, waiting on slow; the rest
     * queued at the broker. */
    held_t held[2 * CAPACITY];
    for (int i = 0; i < 2 * CAPACITY; i++)
        assert_true(s_slow_next(s, &held[i], 10000));
    assert_true(fixture_kill(s->f, s->pool, SIGKILL) >= 0);
    s->pool = 0;

    int answered[KILLED] = {0};
    for (int i = 0; i < KILLED; i++) {
        uint64_t id;
        err_code_t code;
        int64_t n;
        assert_true(s_reply(s, 10000, &id, &code, &n));
        assert_int_equal(code, ERR_UNAVAILABLE);
        assert_true(id < KILLED);
        answered[id]++;
    }
    for (int i = 0; i < KILLED; i++)
        assert_int_equal(answered[i], 1);
    /* The asks' late answers go to a client that is gone: nothing more
     * reaches ours (a second answer would come now, not later). */
    for (int i = 0; i < 2 * CAPACITY; i++)
        s_slow_answer(s, &held[i]);
    uint64_t id;
    err_code_t code;
    int64_t n;
    assert_false(s_reply(s, 500, &id, &code, &n));

    /* The broker's counts in /metrics, here and from a bridge elsewhere. */
    hc_response_t r = hc_request(s->f->base, "GET", "/metrics", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_true(s_series(r.text, "retail_broker_up") == 1);
    assert_true(
        s_series(r.text, "retail_broker_requests_total{service=\"sys\",outcome=\"unavailable\"}") >=
        KILLED);
    assert_true(s_series(r.text, "retail_broker_workers_lost_total{service=\"sys\"}") >= 2);
    assert_true(s_series(r.text, "retail_broker_workers{service=\"sys\"}") == 0);
    hc_response_free(&r);

    char port_env[48], dir_env[FIXTURE_PATH_MAX + 32], endpoint_env[96];
    int port = tu_free_port();
    snprintf(port_env, sizeof port_env, "RETAIL_HTTP_PORT=%d", port);
    snprintf(dir_env, sizeof dir_env, "RETAIL_DATA_DIR=%s", s->f->dir);
    snprintf(endpoint_env, sizeof endpoint_env, "RETAIL_BROKER_ENDPOINT=%s", s->f->broker_endpoint);
    const char *const argv[] = {"bridge", NULL};
    const char *const env[] = {port_env, dir_env, endpoint_env, "RETAIL_ACCESS_LOG=0", NULL};
    tu_spawn_t how = {.program = "retaild", .argv = argv, .env = env, .clean = true};
    pid_t bridge = tu_spawn(&how);
    assert_true(bridge > 0);
    char base[64];
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    double up = -1;
    for (int64_t end = zclock_mono() + 20000; up != 1 && zclock_mono() < end;) {
        hc_request_t q = {.url = base, .path = "/metrics", .timeout_ms = 2000};
        r = hc_try(&q);
        if (r.status == 200)
            up = s_series(r.text, "retail_broker_up");
        if (up == 1)
            assert_true(s_series(r.text, "retail_broker_requests_total{service=\"sys\","
                                         "outcome=\"ok\"}") >= 0);
        hc_response_free(&r);
        if (up != 1)
            zclock_sleep(50);
    }
    assert_true(up == 1); /* the broker's series, from another process */
    assert_int_equal(tu_stop(bridge, SIGTERM, 10000), 0);
    assert_int_equal(fixture_stop(s->f), 0); /* SIGTERM, and exit 0 */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_asks_over_curve_answer_out_of_order, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_killed_pool_answers_each_request_once, s_setup,
                                        s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

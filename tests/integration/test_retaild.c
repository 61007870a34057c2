/*  test_retaild.c - the real daemon over TCP with CurveZMQ.
 *
 *  Starts build/retaild processes (tests/fixture.h) on private ports and
 *  data directories and talks to them as an outside tool would: certificates on disk, a
 *  CURVE client, MDP frames. Covers: sys echo end to end, the caller's
 *  authenticated name, strangers refused, the allow-list re-read without a
 *  restart, a pool killed with SIGKILL noticed within three heartbeats
 *  while a second pool takes over, a restarted broker getting its workers
 *  back, SIGTERM draining the requests in flight and queued, and the drain
 *  deadline.
 */
#include "tests/fixture.h"
#include "tests/testutil.h"

#include "protocol/envelope.h"
#include "protocol/keys.h"
#include "protocol/mdpcli.h"

#include <czmq.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define HB 100 /* ms */

/* The environment of every test: fast heartbeats, two workers, the sys
 * test ops (sleep, whoami). */
#define ENV "RETAIL_HEARTBEAT_MS=100", "RETAIL_WORKERS=2", "RETAIL_TEST_OPS=1"

/* Starts the test's system (roles NULL: all of them, and then ready when
 * GET /readyz says so; a broker alone is ready once it answers MDP). */
static fixture_t *s_start(void **state, const char *const *roles, const char *const *env)
{
    fixture_opts_t opts = {.name = "retaild-it", .roles = roles, .env = env};
    fixture_t *f = fixture_new(&opts);
    assert_non_null(f);
    *state = f;
    return f;
}

/* Calls sys OP with args_json-free args (packed map or NULL); returns the
 * raw reply frame, or NULL after timeout_ms or when it could not be sent. */
static zframe_t *s_call(mdpcli_t *c, const char *op, const void *args, size_t args_len, uint64_t id,
                        int timeout_ms)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    envelope_pack_request(&buf, id, op, NULL, args, args_len);
    /* a refused client may have no connection to send on: no reply */
    int sent = mdpcli_send(c, "sys", buf.data, buf.size);
    msgpack_sbuffer_destroy(&buf);
    return sent == 0 ? mdpcli_recv(c, timeout_ms, NULL) : NULL;
}

static bool s_reply_ok(zframe_t *frame, uint64_t id, const char *caller_expected)
{
    if (!frame)
        return false;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 512);
    envelope_reply_t reply;
    const char *why;
    bool ok = envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why) &&
              reply.ok && reply.id.via.u64 == id;
    if (ok && caller_expected)
        ok = mp_str_eq(mp_map_get(&reply.data, "caller"), caller_expected);
    msgpack_zone_destroy(&zone);
    return ok;
}

/* ---- tests ---- */

static void test_echo_over_curve(void **state)
{
    const char *const env[] = {ENV, NULL};
    fixture_t *f = s_start(state, NULL, env);
    mdpcli_t *c = fixture_client(f, "tester");
    assert_true(fixture_wait_workers(c, "sys", 2, 5000) >= 0);

    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "word");
    mp_pack_str(&pk, "héllo");
    mp_pack_str(&pk, "n");
    msgpack_pack_int64(&pk, -42);
    zframe_t *frame = s_call(c, "echo", args.data, args.size, 1, 2000);
    assert_non_null(frame);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 512);
    envelope_reply_t reply;
    const char *why;
    assert_true(envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why));
    assert_true(reply.ok);
    assert_int_equal(reply.id.via.u64, 1);
    assert_true(mp_str_eq(mp_map_get(&reply.data, "word"), "héllo"));
    assert_int_equal(mp_map_get(&reply.data, "n")->via.i64, -42);
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    msgpack_sbuffer_destroy(&args);

    /* the worker learns who called, from the certificate ZAP accepted */
    frame = s_call(c, "whoami", NULL, 0, 2, 2000);
    assert_true(s_reply_ok(frame, 2, "tester"));
    zframe_destroy(&frame);

    mdpcli_destroy(&c);
    assert_int_equal(fixture_stop(f), 0);
}

static void test_stranger_is_refused_until_allowed(void **state)
{
    const char *const env[] = {ENV, NULL};
    fixture_t *f = s_start(state, NULL, env);
    mdpcli_t *friend = fixture_client(f, "friend");
    assert_true(fixture_wait_workers(friend, "sys", 2, 5000) >= 0);

    /* a certificate the broker has never seen: the handshake fails and
     * the request gets nothing at all */
    char *elsewhere = tu_tempdir("stranger-keys");
    zcert_t *cert = keys_ensure(elsewhere, "stranger");
    assert_non_null(cert);
    mdpcli_t *stranger = fixture_client_with(f, cert);
    zframe_t *frame = s_call(stranger, "ping", NULL, 0, 1, 1000);
    assert_null(frame);
    mdpcli_destroy(&stranger);

    /* allow-listed while the broker runs: admitted without a restart */
    assert_int_equal(keys_allow(f->keys, cert, "stranger"), 0);
    bool admitted = false;
    for (int attempt = 0; attempt < 10 && !admitted; attempt++) {
        stranger = fixture_client_with(f, cert);
        frame = s_call(stranger, "whoami", NULL, 0, 2, 500);
        admitted = s_reply_ok(frame, 2, "stranger");
        zframe_destroy(&frame);
        mdpcli_destroy(&stranger);
    }
    assert_true(admitted);

    zcert_destroy(&cert);
    mdpcli_destroy(&friend);
    tu_rmtree(elsewhere);
    free(elsewhere);
    assert_int_equal(fixture_stop(f), 0);
}

static void test_killed_pool_and_restarted_broker(void **state)
{
    const char *const env[] = {ENV, NULL};
    const char *const broker_role[] = {"broker", NULL};
    const char *const pool_role[] = {"sys", NULL};
    fixture_t *f = s_start(state, broker_role, env);
    mdpcli_t *c = fixture_client(f, "tester");
    pid_t pools[2];
    for (int i = 0; i < 2; i++)
        assert_true((pools[i] = fixture_spawn(f, pool_role)) > 0);
    assert_true(fixture_wait_workers(c, "sys", 4, 10000) >= 0);

    /* SIGKILL one pool: its workers are gone within three heartbeats */
    int status = fixture_kill(f, pools[0], SIGKILL);
    assert_true(status != -1 && WIFSIGNALED(status));
    int64_t noticed = fixture_wait_workers(c, "sys", 2, 3000);
    print_message("      killed pool noticed after %lld ms (heartbeat %d ms)\n", (long long)noticed,
                  HB);
    assert_true(noticed >= 0 && noticed <= 3 * HB + 100);
    for (uint64_t id = 1; id <= 20; id++) {
        zframe_t *frame = s_call(c, "ping", NULL, 0, id, 2000);
        assert_true(s_reply_ok(frame, id, NULL));
        zframe_destroy(&frame);
    }

    /* restart the broker: the surviving pool comes back by itself */
    status = fixture_kill(f, f->pid, SIGKILL);
    assert_true(status != -1 && WIFSIGNALED(status));
    int64_t restarted = zclock_mono();
    assert_int_equal(fixture_restart(f), 0);
    mdpcli_destroy(&c);
    c = fixture_client(f, "tester");
    assert_true(fixture_wait_workers(c, "sys", 2, 10000) >= 0);
    print_message("      workers back %lld ms after the broker restarted\n",
                  (long long)(zclock_mono() - restarted));
    assert_int_equal(kill(pools[1], 0), 0); /* the same pool process */
    zframe_t *frame = s_call(c, "ping", NULL, 0, 99, 2000);
    assert_true(s_reply_ok(frame, 99, NULL));
    zframe_destroy(&frame);

    mdpcli_destroy(&c);
    assert_int_equal(fixture_stop(f), 0);
}

/* The replies of one batch of sys sleeps, ids 1..count. */
typedef struct {
    bool seen[64]; /* by id: no id may be answered twice */
    int answered, ok, unavailable;
} sleeps_t;

/* Receives one reply; a sleep's is counted into t (ok or unavailable),
 * and no id may be answered twice. Returns the service that answered
 * (the caller's to zstr_free), NULL after timeout_ms. */
static char *s_recv_sleep(mdpcli_t *c, int count, sleeps_t *t, int timeout_ms)
{
    char *service = NULL;
    zframe_t *frame = mdpcli_recv(c, timeout_ms, &service);
    if (!frame || strcmp(service, "sys") != 0) {
        zframe_destroy(&frame);
        return service;
    }
    msgpack_zone zone;
    msgpack_zone_init(&zone, 512);
    envelope_reply_t reply;
    const char *why;
    assert_true(envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why));
    uint64_t id = reply.id.via.u64;
    assert_true(id >= 1 && id <= (uint64_t)count && !t->seen[id]);
    t->seen[id] = true;
    t->answered++;
    if (reply.ok)
        t->ok++;
    else if (reply.code == ERR_UNAVAILABLE)
        t->unavailable++;
    else {
        const msgpack_object *m = mp_map_get(&reply.error, "message");
        print_error("reply %llu: %s: %.*s\n", (unsigned long long)id, err_code_name(reply.code),
                    m && m->type == MSGPACK_OBJECT_STR ? (int)m->via.str.size : 0,
                    m && m->type == MSGPACK_OBJECT_STR ? m->via.str.ptr : "");
    }
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return service;
}

/* Sends `count` sys sleep requests of ms each, ids 1..count, then an
 * mmi.services on the same connection and waits for its answer: the
 * broker reads one connection's messages in order, so once it answers it
 * holds every sleep (at a worker or queued), which is what a stop signal
 * must find. Replies that overtake the answer are counted into t. */
static void s_send_sleeps(mdpcli_t *c, int count, int ms, sleeps_t *t)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "ms");
    msgpack_pack_int(&pk, ms);
    for (int id = 1; id <= count; id++) {
        msgpack_sbuffer request;
        msgpack_sbuffer_init(&request);
        envelope_pack_request(&request, (uint64_t)id, "sleep", NULL, args.data, args.size);
        assert_int_equal(mdpcli_send(c, "sys", request.data, request.size), 0);
        msgpack_sbuffer_destroy(&request);
    }
    msgpack_sbuffer_destroy(&args);
    assert_int_equal(mdpcli_send(c, "mmi.services", "", 0), 0);
    *t = (sleeps_t){0};
    for (bool broker_has_them = false; !broker_has_them;) {
        char *service = s_recv_sleep(c, count, t, 5000);
        assert_non_null(service);
        broker_has_them = strcmp(service, "mmi.services") == 0;
        zstr_free(&service);
    }
}

/* Receives the replies still due of `count` sleeps, then checks that
 * nothing more comes. */
static void s_recv_sleeps(mdpcli_t *c, int count, sleeps_t *t)
{
    while (t->answered < count) {
        char *service = s_recv_sleep(c, count, t, 10000);
        assert_non_null(service);
        zstr_free(&service);
    }
    zframe_t *extra = mdpcli_recv(c, 200, NULL);
    assert_null(extra);
}

/* SIGTERM drains (API.md section 4): 2 workers holding 4 requests each
 * and 4 more queued, each a 250 ms sleep (over two heartbeats, so a worker
 * cannot beat while it sleeps): every one is answered by its worker, none
 * "unavailable", and the process exits 0. */
static void test_sigterm_answers_request_in_flight(void **state)
{
    const char *const env[] = {ENV, "RETAIL_WORKER_CAPACITY=4", NULL};
    fixture_t *f = s_start(state, NULL, env);
    mdpcli_t *c = fixture_client(f, "tester");
    assert_true(fixture_wait_workers(c, "sys", 2, 5000) >= 0);
    sleeps_t t;
    s_send_sleeps(c, 12, 250, &t);
    assert_int_equal(kill(f->pid, SIGTERM), 0);
    s_recv_sleeps(c, 12, &t);
    assert_int_equal(t.ok, 12);
    assert_int_equal(t.unavailable, 0);
    assert_int_equal(fixture_stop(f), 0);
    mdpcli_destroy(&c);
}

/* Past the drain deadline, and only then, what is left is answered
 * unavailable, once each: 2 workers, 6 sleeps of 400 ms, 500 ms to drain.
 * The two being handled finish; the others are answered unavailable at
 * the deadline (the ones a worker started meanwhile may still finish). */
static void test_drain_deadline(void **state)
{
    const char *const env[] = {ENV, "RETAIL_DRAIN_MS=500", NULL};
    fixture_t *f = s_start(state, NULL, env);
    mdpcli_t *c = fixture_client(f, "tester");
    assert_true(fixture_wait_workers(c, "sys", 2, 5000) >= 0);
    sleeps_t t;
    s_send_sleeps(c, 6, 400, &t);
    int64_t start = zclock_mono();
    assert_int_equal(kill(f->pid, SIGTERM), 0);
    s_recv_sleeps(c, 6, &t);
    assert_true(t.ok >= 2);
    assert_int_equal(t.ok + t.unavailable, 6);
    assert_true(t.unavailable >= 2);
    assert_int_equal(fixture_stop(f), 0);
    print_message("      drain of 500 ms: %d answered, %d unavailable, exit after %lld ms\n", t.ok,
                  t.unavailable, (long long)(zclock_mono() - start));
    mdpcli_destroy(&c);
}

/* Every test starts its own fixture (a directory and ports of its own);
 * teardown stops whatever the test left running, even after a failed
 * assertion. */
static int s_teardown(void **state)
{
    fixture_destroy((fixture_t **)state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_echo_over_curve, s_teardown),
        cmocka_unit_test_teardown(test_stranger_is_refused_until_allowed, s_teardown),
        cmocka_unit_test_teardown(test_killed_pool_and_restarted_broker, s_teardown),
        cmocka_unit_test_teardown(test_sigterm_answers_request_in_flight, s_teardown),
        cmocka_unit_test_teardown(test_drain_deadline, s_teardown),
    };
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("retaild", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

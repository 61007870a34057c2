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
#include "tests/httpc.h"
#include "tests/testutil.h"

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

/* Calls sys OP with the JSON object args_json (NULL: none) as request
 * id; the reply, answered false after timeout_ms or when the request could
 * not be sent (a refused client may have no connection to send on). The
 * caller frees it with fixture_reply_free. */
static fixture_reply_t s_call(mdpcli_t *c, const char *op, const char *args_json, uint64_t id,
                              int timeout_ms)
{
    if (fixture_send(c, "sys", id, op, NULL, args_json) != 0)
        return (fixture_reply_t){.answered = false};
    return fixture_recv(c, timeout_ms);
}

/* Did sys answer request id ok (and, caller_expected set, say that is who
 * called)? */
static bool s_call_ok(mdpcli_t *c, const char *op, uint64_t id, int timeout_ms,
                      const char *caller_expected)
{
    fixture_reply_t r = s_call(c, op, NULL, id, timeout_ms);
    const char *caller = hc_str(r.data, "caller");
    bool ok = r.answered && r.ok && r.id == id &&
              (!caller_expected || (caller && strcmp(caller, caller_expected) == 0));
    fixture_reply_free(&r);
    return ok;
}

/* ---- tests ---- */

static void test_echo_over_curve(void **state)
{
    const char *const env[] = {ENV, NULL};
    fixture_t *f = s_start(state, NULL, env);
    mdpcli_t *c = fixture_client(f, "tester");
    assert_true(fixture_wait_workers(c, "sys", 2, 5000) >= 0);

    fixture_reply_t r = s_call(c, "echo", "{\"word\":\"héllo\",\"n\":-42}", 1, 2000);
    assert_true(r.answered);
    assert_true(r.ok);
    assert_int_equal(r.id, 1);
    assert_string_equal(hc_str(r.data, "word"), "héllo");
    assert_int_equal(json_integer_value(json_object_get(r.data, "n")), -42);
    fixture_reply_free(&r);

    /* the worker learns who called, from the certificate ZAP accepted */
    assert_true(s_call_ok(c, "whoami", 2, 2000, "tester"));

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
    fixture_reply_t r = s_call(stranger, "ping", NULL, 1, 1000);
    assert_false(r.answered);
    assert_string_equal(r.service, "");
    mdpcli_destroy(&stranger);

    /* allow-listed while the broker runs: admitted without a restart */
    assert_int_equal(keys_allow(f->keys, cert, "stranger"), 0);
    bool admitted = false;
    for (int attempt = 0; attempt < 10 && !admitted; attempt++) {
        stranger = fixture_client_with(f, cert);
        admitted = s_call_ok(stranger, "whoami", 2, 500, "stranger");
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
    for (uint64_t id = 1; id <= 20; id++)
        assert_true(s_call_ok(c, "ping", id, 2000, NULL));

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
    assert_true(s_call_ok(c, "ping", 99, 2000, NULL));

    mdpcli_destroy(&c);
    assert_int_equal(fixture_stop(f), 0);
}

/* The replies of one batch of sys sleeps, ids 1..count. */
typedef struct {
    bool seen[64]; /* by id: no id may be answered twice */
    int answered, ok, unavailable;
} sleeps_t;

/* Receives one reply; a sleep's is counted into t (ok or unavailable),
 * and no id may be answered twice. Returns true when it was the answer to
 * mmi.services; asserts that something came within timeout_ms. */
static bool s_recv_sleep(mdpcli_t *c, int count, sleeps_t *t, int timeout_ms)
{
    fixture_reply_t r = fixture_recv(c, timeout_ms);
    assert_string_not_equal(r.service, ""); /* no reply at all */
    bool mmi = strcmp(r.service, "mmi.services") == 0;
    if (!mmi) {
        assert_string_equal(r.service, "sys");
        assert_true(r.answered);
        assert_true(r.id >= 1 && r.id <= (uint64_t)count && !t->seen[r.id]);
        t->seen[r.id] = true;
        t->answered++;
        if (r.ok)
            t->ok++;
        else if (strcmp(r.code, "unavailable") == 0)
            t->unavailable++;
        else {
            char *error = json_dumps(r.error, JSON_COMPACT);
            print_error("reply %llu: %s\n", (unsigned long long)r.id, error ? error : r.code);
            free(error);
        }
    }
    fixture_reply_free(&r);
    return mmi;
}

/* Sends `count` sys sleep requests of ms each, ids 1..count, then an
 * mmi.services on the same connection and waits for its answer: the
 * broker reads one connection's messages in order, so once it answers it
 * holds every sleep (at a worker or queued), which is what a stop signal
 * must find. Replies that overtake the answer are counted into t. */
static void s_send_sleeps(mdpcli_t *c, int count, int ms, sleeps_t *t)
{
    char args[32];
    snprintf(args, sizeof args, "{\"ms\":%d}", ms);
    for (int id = 1; id <= count; id++)
        assert_int_equal(fixture_send(c, "sys", (uint64_t)id, "sleep", NULL, args), 0);
    assert_int_equal(mdpcli_send(c, "mmi.services", "", 0), 0);
    *t = (sleeps_t){0};
    while (!s_recv_sleep(c, count, t, 5000))
        ;
}

/* Receives the replies still due of `count` sleeps, then checks that
 * nothing more comes. */
static void s_recv_sleeps(mdpcli_t *c, int count, sleeps_t *t)
{
    while (t->answered < count)
        assert_false(s_recv_sleep(c, count, t, 10000));
    zframe_t *extra = mdpcli_recv(c, 200, NULL);
    assert_null(extra);
}

/* Starts a system with env, sends `count` sleeps of ms each to its two
 * sys workers, sends SIGTERM once the broker holds them all, collects
 * every reply into t and asserts the exit 0. The ms from the SIGTERM to
 * the exit. */
static int64_t s_sleeps_through_sigterm(void **state, const char *const *env, int count, int ms,
                                        sleeps_t *t)
{
    fixture_t *f = s_start(state, NULL, env);
    mdpcli_t *c = fixture_client(f, "tester");
    assert_true(fixture_wait_workers(c, "sys", 2, 5000) >= 0);
    s_send_sleeps(c, count, ms, t);
    int64_t start = zclock_mono();
    assert_int_equal(kill(f->pid, SIGTERM), 0);
    s_recv_sleeps(c, count, t);
    assert_int_equal(fixture_stop(f), 0);
    mdpcli_destroy(&c);
    return zclock_mono() - start;
}

/* SIGTERM drains (API.md section 4): 2 workers holding 4 requests each
 * and 4 more queued, each a 250 ms sleep (over two heartbeats, so a worker
 * cannot beat while it sleeps): every one is answered by its worker, none
 * "unavailable", and the process exits 0. */
static void test_sigterm_answers_request_in_flight(void **state)
{
    const char *const env[] = {ENV, "RETAIL_WORKER_CAPACITY=4", NULL};
    sleeps_t t;
    s_sleeps_through_sigterm(state, env, 12, 250, &t);
    assert_int_equal(t.ok, 12);
    assert_int_equal(t.unavailable, 0);
}

/* Past the drain deadline, and only then, what is left is answered
 * unavailable, once each: 2 workers, 6 sleeps of 400 ms, 500 ms to drain.
 * The two being handled finish; the others are answered unavailable at
 * the deadline (the ones a worker started meanwhile may still finish). */
static void test_drain_deadline(void **state)
{
    const char *const env[] = {ENV, "RETAIL_DRAIN_MS=500", NULL};
    sleeps_t t;
    int64_t took = s_sleeps_through_sigterm(state, env, 6, 400, &t);
    assert_true(t.ok >= 2);
    assert_int_equal(t.ok + t.unavailable, 6);
    assert_true(t.unavailable >= 2);
    print_message("      drain of 500 ms: %d answered, %d unavailable, exit after %lld ms\n", t.ok,
                  t.unavailable, (long long)took);
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

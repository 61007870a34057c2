/*  test_retaild.c - the real daemon over TCP with CurveZMQ.
 *
 *  Starts build/retaild processes on private ports and data directories
 *  and talks to them as an outside tool would: certificates on disk, a
 *  CURVE client, MDP frames. Covers: sys echo end to end, the caller's
 *  authenticated name, strangers refused, the allow-list re-read without a
 *  restart, a pool killed with SIGKILL noticed within three heartbeats
 *  while a second pool takes over, a restarted broker getting its workers
 *  back, SIGTERM draining the requests in flight and queued, and the drain
 *  deadline.
 */
#include "tests/testutil.h"

#include "protocol/envelope.h"
#include "protocol/keys.h"
#include "protocol/mdpcli.h"

#include <czmq.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define HB 100 /* ms */

typedef struct {
    char *dir;
    char keys[1100];
    char endpoint[64];
    char env_dir[1100], env_endpoint[96], env_http[48];
    pid_t pids[4];
} system_t;

static void s_system_init(system_t *s, const char *name)
{
    memset(s, 0, sizeof *s);
    s->dir = tu_tempdir(name);
    snprintf(s->keys, sizeof s->keys, "%s/keys", s->dir);
    snprintf(s->endpoint, sizeof s->endpoint, "tcp://127.0.0.1:%d", tu_free_port());
    snprintf(s->env_dir, sizeof s->env_dir, "RETAIL_DATA_DIR=%s", s->dir);
    snprintf(s->env_endpoint, sizeof s->env_endpoint, "RETAIL_BROKER_ENDPOINT=%s", s->endpoint);
    snprintf(s->env_http, sizeof s->env_http, "RETAIL_HTTP_PORT=%d", tu_free_port());
}

static pid_t s_start(system_t *s, const char *const *roles)
{
    /* every port private: a bridge on the default 8080 would meet another
     * test's, or a developer's own retaild */
    const char *env[] = {
        s->env_dir,         s->env_endpoint,     s->env_http, "RETAIL_HEARTBEAT_MS=100",
        "RETAIL_WORKERS=2", "RETAIL_TEST_OPS=1", NULL};
    return tu_spawn_retaild(roles, env);
}

static void s_system_down(system_t *s)
{
    for (int i = 0; i < 4; i++)
        if (s->pids[i] > 0)
            tu_stop(s->pids[i], SIGKILL, 2000);
    tu_rmtree(s->dir);
    free(s->dir);
}

/* A CURVE client with certificate `name` from keys_dir. */
static mdpcli_t *s_client(system_t *s, const char *keys_dir, const char *name)
{
    char broker_key[KEYS_Z85_LEN + 1];
    for (int i = 0; i < 100 && keys_broker_public(s->keys, broker_key) != 0; i++)
        zclock_sleep(50);
    assert_int_equal(keys_broker_public(s->keys, broker_key), 0);
    zcert_t *cert = keys_ensure(keys_dir, name);
    assert_non_null(cert);
    mdpcli_t *client = mdpcli_new(s->endpoint, cert, broker_key);
    zcert_destroy(&cert);
    assert_non_null(client);
    return client;
}

static mdpcli_t *s_allowed_client(system_t *s, const char *name)
{
    zcert_t *cert = keys_ensure(s->keys, name);
    assert_int_equal(keys_allow(s->keys, cert, name), 0);
    zcert_destroy(&cert);
    return s_client(s, s->keys, name);
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

/* Number of live workers the broker has for sys; -1 if it did not answer. */
static int s_sys_workers(mdpcli_t *c)
{
    if (mdpcli_send(c, "mmi.services", "", 0) != 0)
        return -1;
    zframe_t *frame = mdpcli_recv(c, 500, NULL);
    if (!frame)
        return -1;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    msgpack_object list;
    size_t off = 0;
    int workers = 0;
    if (msgpack_unpack((char *)zframe_data(frame), zframe_size(frame), &off, &zone, &list) ==
        MSGPACK_UNPACK_SUCCESS)
        for (uint32_t i = 0; i < list.via.array.size; i++)
            if (mp_str_eq(mp_map_get(&list.via.array.ptr[i], "name"), "sys"))
                workers = (int)mp_map_get(&list.via.array.ptr[i], "workers")->via.u64;
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return workers;
}

/* Polls until sys has `want` workers; returns the ms it took, or -1. */
static int64_t s_wait_workers(mdpcli_t *c, int want, int timeout_ms)
{
    int64_t start = zclock_mono();
    int seen = -1;
    while (zclock_mono() - start < timeout_ms) {
        if ((seen = s_sys_workers(c)) == want)
            return zclock_mono() - start;
        zclock_sleep(10);
    }
    print_error("waited %d ms for %d sys workers; the broker last said %d\n", timeout_ms, want,
                seen);
    return -1;
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
    system_t *sys = *state;
    sys->pids[0] = s_start(sys, NULL);
    mdpcli_t *c = s_allowed_client(sys, "tester");
    assert_true(s_wait_workers(c, 2, 5000) >= 0);

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
    int status = tu_stop(sys->pids[0], SIGTERM, 5000);
    sys->pids[0] = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_stranger_is_refused_until_allowed(void **state)
{
    system_t *sys = *state;
    sys->pids[0] = s_start(sys, NULL);
    mdpcli_t *friend = s_allowed_client(sys, "friend");
    assert_true(s_wait_workers(friend, 2, 5000) >= 0);

    /* a certificate the broker has never seen: the handshake fails and
     * the request gets nothing at all */
    char *elsewhere = tu_tempdir("stranger-keys");
    mdpcli_t *stranger = s_client(sys, elsewhere, "stranger");
    zframe_t *frame = s_call(stranger, "ping", NULL, 0, 1, 1000);
    assert_null(frame);
    mdpcli_destroy(&stranger);

    /* allow-listed while the broker runs: admitted without a restart */
    zcert_t *cert = keys_load(elsewhere, "stranger");
    assert_non_null(cert);
    assert_int_equal(keys_allow(sys->keys, cert, "stranger"), 0);
    zcert_destroy(&cert);
    bool admitted = false;
    for (int attempt = 0; attempt < 10 && !admitted; attempt++) {
        stranger = s_client(sys, elsewhere, "stranger");
        frame = s_call(stranger, "whoami", NULL, 0, 2, 500);
        admitted = s_reply_ok(frame, 2, "stranger");
        zframe_destroy(&frame);
        mdpcli_destroy(&stranger);
    }
    assert_true(admitted);

    mdpcli_destroy(&friend);
    tu_rmtree(elsewhere);
    free(elsewhere);
}

static void test_killed_pool_and_restarted_broker(void **state)
{
    system_t *sys = *state;
    const char *broker_role[] = {"broker", NULL};
    const char *pool_role[] = {"sys", NULL};
    sys->pids[0] = s_start(sys, broker_role);
    mdpcli_t *c = s_allowed_client(sys, "tester");
    sys->pids[1] = s_start(sys, pool_role);
    sys->pids[2] = s_start(sys, pool_role);
    assert_true(s_wait_workers(c, 4, 10000) >= 0);

    /* SIGKILL one pool: its workers are gone within three heartbeats */
    kill(sys->pids[1], SIGKILL);
    waitpid(sys->pids[1], NULL, 0);
    sys->pids[1] = 0;
    int64_t noticed = s_wait_workers(c, 2, 3000);
    print_message("      killed pool noticed after %lld ms (heartbeat %d ms)\n", (long long)noticed,
                  HB);
    assert_true(noticed >= 0 && noticed <= 3 * HB + 100);
    for (uint64_t id = 1; id <= 20; id++) {
        zframe_t *frame = s_call(c, "ping", NULL, 0, id, 2000);
        assert_true(s_reply_ok(frame, id, NULL));
        zframe_destroy(&frame);
    }

    /* restart the broker: the surviving pool comes back by itself */
    kill(sys->pids[0], SIGKILL);
    waitpid(sys->pids[0], NULL, 0);
    sys->pids[0] = s_start(sys, broker_role);
    mdpcli_destroy(&c);
    c = s_client(sys, sys->keys, "tester");
    int64_t back = s_wait_workers(c, 2, 10000);
    print_message("      workers back %lld ms after the broker restarted\n", (long long)back);
    assert_true(back >= 0);
    assert_int_equal(kill(sys->pids[2], 0), 0); /* the same pool process */
    zframe_t *frame = s_call(c, "ping", NULL, 0, 99, 2000);
    assert_true(s_reply_ok(frame, 99, NULL));
    zframe_destroy(&frame);

    mdpcli_destroy(&c);
}

/* Sends `count` sys sleep requests of ms each, ids 1..count. */
static void s_send_sleeps(mdpcli_t *c, int count, int ms)
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
}

/* Receives `count` replies; counts the ok ones and the unavailable ones,
 * and checks that no id is answered twice. */
static void s_recv_sleeps(mdpcli_t *c, int count, int *ok, int *unavailable)
{
    bool seen[64] = {false};
    *ok = *unavailable = 0;
    for (int i = 0; i < count; i++) {
        zframe_t *frame = mdpcli_recv(c, 10000, NULL);
        assert_non_null(frame);
        msgpack_zone zone;
        msgpack_zone_init(&zone, 512);
        envelope_reply_t reply;
        const char *why;
        assert_true(
            envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why));
        uint64_t id = reply.id.via.u64;
        assert_true(id >= 1 && id <= (uint64_t)count && !seen[id]);
        seen[id] = true;
        if (reply.ok)
            (*ok)++;
        else if (reply.code == ERR_UNAVAILABLE)
            (*unavailable)++;
        else {
            const msgpack_object *m = mp_map_get(&reply.error, "message");
            print_error("reply %llu: %s: %.*s\n", (unsigned long long)id, err_code_name(reply.code),
                        m && m->type == MSGPACK_OBJECT_STR ? (int)m->via.str.size : 0,
                        m && m->type == MSGPACK_OBJECT_STR ? m->via.str.ptr : "");
        }
        msgpack_zone_destroy(&zone);
        zframe_destroy(&frame);
    }
    /* and nothing more */
    zframe_t *extra = mdpcli_recv(c, 200, NULL);
    assert_null(extra);
}

/* SIGTERM drains (API.md section 4): 2 workers holding 4 requests each
 * and 4 more queued, each a 250 ms sleep (over two heartbeats, so a worker
 * cannot beat while it sleeps): every one is answered by its worker, none
 * "unavailable", and the process exits 0. */
static void test_sigterm_answers_request_in_flight(void **state)
{
    system_t *sys = *state;
    sys->pids[0] = s_start(sys, NULL);
    mdpcli_t *c = s_allowed_client(sys, "tester");
    assert_true(s_wait_workers(c, 2, 5000) >= 0);
    s_send_sleeps(c, 12, 250);
    zclock_sleep(100); /* the first two are asleep in their handlers */
    kill(sys->pids[0], SIGTERM);
    int ok, unavailable;
    s_recv_sleeps(c, 12, &ok, &unavailable);
    assert_int_equal(ok, 12);
    assert_int_equal(unavailable, 0);
    int status = tu_stop(sys->pids[0], SIGTERM, 5000);
    sys->pids[0] = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    mdpcli_destroy(&c);
}

/* Past the drain deadline, and only then, what is left is answered
 * unavailable, once each: 2 workers, 6 sleeps of 400 ms, 500 ms to drain.
 * The two being handled finish; the others are answered unavailable at
 * the deadline (the ones a worker started meanwhile may still finish). */
static void test_drain_deadline(void **state)
{
    system_t *sys = *state;
    const char *env[] = {
        sys->env_dir,       sys->env_endpoint,   sys->env_http,         "RETAIL_HEARTBEAT_MS=100",
        "RETAIL_WORKERS=2", "RETAIL_TEST_OPS=1", "RETAIL_DRAIN_MS=500", NULL};
    sys->pids[0] = tu_spawn_retaild(NULL, env);
    mdpcli_t *c = s_allowed_client(sys, "tester");
    assert_true(s_wait_workers(c, 2, 5000) >= 0);
    s_send_sleeps(c, 6, 400);
    zclock_sleep(100);
    int64_t start = zclock_mono();
    kill(sys->pids[0], SIGTERM);
    int ok, unavailable;
    s_recv_sleeps(c, 6, &ok, &unavailable);
    assert_true(ok >= 2);
    assert_int_equal(ok + unavailable, 6);
    assert_true(unavailable >= 2);
    int status = tu_stop(sys->pids[0], SIGTERM, 5000);
    sys->pids[0] = 0;
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    print_message("      drain of 500 ms: %d answered, %d unavailable, exit after %lld ms\n", ok,
                  unavailable, (long long)(zclock_mono() - start));
    mdpcli_destroy(&c);
}

/* Every test gets its own directory and port; teardown kills whatever
 * the test left running, even after a failed assertion. */
static int s_setup(void **state)
{
    system_t *sys = malloc(sizeof *sys);
    s_system_init(sys, "retaild-it");
    *state = sys;
    return 0;
}

static int s_teardown(void **state)
{
    system_t *sys = *state;
    s_system_down(sys);
    free(sys);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_over_curve, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stranger_is_refused_until_allowed, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_killed_pool_and_restarted_broker, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sigterm_answers_request_in_flight, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_drain_deadline, s_setup, s_teardown),
    };
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("retaild", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

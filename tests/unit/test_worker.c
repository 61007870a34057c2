/*  test_worker.c - workers and pools: start failures, restarts, draining.
 *
 *  A real broker on a private inproc endpoint and real workers (pool.c,
 *  worker.c) with a small test service whose per-worker state counts how
 *  often it was made, so a test sees a restart as new state.
 */
#include "tests/testutil.h"

#include "actors/pool.h"
#include "protocol/envelope.h"
#include "protocol/mdpcli.h"
#include "router/broker.h"

#include <czmq.h>

typedef struct {
    atomic_int made;      /* states made */
    atomic_int fail_from; /* state_new fails from this many made on; 0: never */
} shared_t;

typedef struct {
    int serial; /* which state this is, counting from 1 */
} state_t;

static void *s_state_new(void *arg)
{
    shared_t *shared = arg;
    int serial = atomic_fetch_add(&shared->made, 1) + 1;
    int fail_from = atomic_load(&shared->fail_from);
    if (fail_from && serial >= fail_from)
        return NULL;
    state_t *state = calloc(1, sizeof *state);
    if (state)
        state->serial = serial;
    return state;
}

static void s_state_destroy(void **state)
{
    free(*state);
    *state = NULL;
}

static void s_serial(call_t *call, void *state)
{
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_int(pk, ((state_t *)state)->serial);
}

/* Answers, then says the state is broken: the worker starts over. */
static void s_break(call_t *call, void *state)
{
    (void)state;
    call_state_broken(call);
    call_fail(call, ERR_UNAVAILABLE, "the state broke");
}

static void s_sleep(call_t *call, void *state)
{
    (void)state;
    zclock_sleep(300);
    msgpack_pack_true(call_reply(call));
}

static const worker_op_t s_ops[] = {
    {"serial", s_serial}, {"break", s_break}, {"sleep", s_sleep}, {NULL, NULL}};

typedef struct {
    char endpoint[64];
    zactor_t *broker;
    mdpcli_t *client;
    shared_t shared;
    worker_config_t config;
} fixture_t;

static int s_setup(void **state)
{
    static int counter = 0;
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->endpoint, sizeof f->endpoint, "inproc://test-worker-%d", ++counter);
    broker_config_t bc = {.inproc_endpoint = f->endpoint, .heartbeat_ms = 100};
    f->broker = broker_new(&bc);
    assert_non_null(f->broker);
    f->client = mdpcli_new_inproc(f->endpoint, "tester");
    assert_non_null(f->client);
    f->config = (worker_config_t){.service = "t",
                                  .ops = s_ops,
                                  .endpoint = f->endpoint,
                                  .heartbeat_ms = 100,
                                  .capacity = 1,
                                  .state_new = s_state_new,
                                  .state_destroy = s_state_destroy,
                                  .shared = &f->shared};
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    mdpcli_destroy(&f->client);
    broker_destroy(&f->broker);
    free(f);
    return 0;
}

/* Calls op; returns the reply's int data, -1 for an error reply, -2 for
 * no reply within timeout_ms. */
static int s_call(fixture_t *f, const char *op, uint64_t id, int timeout_ms)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    envelope_pack_request(&buf, id, op, NULL, NULL, 0);
    assert_int_equal(mdpcli_send(f->client, "t", buf.data, buf.size), 0);
    msgpack_sbuffer_destroy(&buf);
    zframe_t *frame = mdpcli_recv(f->client, timeout_ms, NULL);
    if (!frame)
        return -2;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_reply_t reply;
    const char *why;
    assert_true(envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why));
    assert_int_equal(reply.id.via.u64, id);
    int value = !reply.ok                                   ? -1
                : reply.data.type == MSGPACK_OBJECT_BOOLEAN ? 1
                                                            : (int)reply.data.via.i64;
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return value;
}

/* Calls until a worker answers (the pool registers asynchronously). */
static int s_call_ready(fixture_t *f, const char *op, uint64_t id)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        int value = s_call(f, op, id, 1000);
        if (value != -1)
            return value;
        zclock_sleep(20); /* "unavailable" before READY: try again */
    }
    return -3;
}

static void test_start_failure_reaches_pool_new(void **state)
{
    fixture_t *f = *state;
    atomic_store(&f->shared.fail_from, 2); /* the second worker cannot start */
    pool_t *pool = pool_new(&f->config, 3);
    assert_null(pool);
    /* no worker is left behind: nobody answers */
    assert_int_equal(s_call(f, "serial", 1, 300), -1);
}

static void test_broken_state_restarts_the_worker(void **state)
{
    fixture_t *f = *state;
    pool_t *pool = pool_new(&f->config, 1);
    assert_non_null(pool);
    assert_int_equal(s_call_ready(f, "serial", 1), 1);
    assert_int_equal(pool_restarts(pool), 0);
    assert_int_equal(s_call(f, "break", 2, 1000), -1); /* answered before it starts over */
    /* back with new state after its backoff */
    assert_int_equal(s_call_ready(f, "serial", 3), 2);
    assert_int_equal(pool_restarts(pool), 1);
    pool_destroy(&pool);
    assert_null(pool);
}

static void test_failed_restart_is_retried(void **state)
{
    fixture_t *f = *state;
    pool_t *pool = pool_new(&f->config, 1);
    assert_non_null(pool);
    assert_int_equal(s_call_ready(f, "serial", 1), 1);
    atomic_store(&f->shared.fail_from, 2); /* the first restart fails */
    assert_int_equal(s_call(f, "break", 2, 1000), -1);
    zclock_sleep(150);
    atomic_store(&f->shared.fail_from, 0);
    assert_int_equal(s_call_ready(f, "serial", 3), 3); /* state 2 failed, 3 serves */
    assert_int_equal(pool_restarts(pool), 1);
    pool_destroy(&pool);
}

/* A handler longer than three heartbeats (300 ms at 100 ms) is answered,
 * not declared dead, and so is a request that waits behind it. */
static void test_long_handler_is_answered(void **state)
{
    fixture_t *f = *state;
    f->config.capacity = 2;
    pool_t *pool = pool_new(&f->config, 1);
    assert_non_null(pool);
    assert_int_equal(s_call_ready(f, "serial", 1), 1);
    for (uint64_t id = 2; id < 6; id++)
        assert_int_equal(s_call(f, "sleep", id, 2000), 1);
    pool_destroy(&pool);
}

/* mdpcli_recv with no time to wait takes a reply that has come (an
 * event loop polls the socket, then reads without waiting: the orders
 * recovery does). */
static void test_recv_without_waiting(void **state)
{
    fixture_t *f = *state;
    pool_t *pool = pool_new(&f->config, 1);
    assert_non_null(pool);
    assert_int_equal(s_call_ready(f, "serial", 1), 1);
    assert_null(mdpcli_recv(f->client, 0, NULL)); /* nothing has come */
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    envelope_pack_request(&buf, 2, "serial", NULL, NULL, 0);
    assert_int_equal(mdpcli_send(f->client, "t", buf.data, buf.size), 0);
    msgpack_sbuffer_destroy(&buf);
    zpoller_t *poller = zpoller_new(mdpcli_sock(f->client), NULL);
    assert_non_null(zpoller_wait(poller, 5000));
    zpoller_destroy(&poller);
    zframe_t *frame = mdpcli_recv(f->client, 0, NULL);
    assert_non_null(frame);
    zframe_destroy(&frame);
    pool_destroy(&pool);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_failure_reaches_pool_new, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_broken_state_restarts_the_worker, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failed_restart_is_retried, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_long_handler_is_answered, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_recv_without_waiting, s_setup, s_teardown),
    };
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("worker", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

/*  test_broker.c - the broker's dispatch, queue bound, deadline, expiry,
 *  drain, and the names of in-process callers.
 *
 *  Each test starts a broker on its own inproc endpoint and drives it with
 *  hand-made MDP workers (raw DEALER sockets), so the test decides exactly
 *  when a worker is ready, replies, beats or falls silent.
 */
#include "tests/testutil.h"

#include "protocol/envelope.h"
#include "protocol/mdp.h"
#include "protocol/mdpcli.h"
#include "router/broker.h"

#include <czmq.h>

#define HB 50 /* ms: heartbeat in these tests */

typedef struct {
    zactor_t *broker;
    char endpoint[64];
    mdpcli_t *client;
} fixture_t;

static int s_fixture_up(void **state, int timeout_ms, int queue_limit)
{
    static int counter = 0;
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->endpoint, sizeof f->endpoint, "inproc://test-broker-%d", ++counter);
    broker_config_t config = {.inproc_endpoint = f->endpoint,
                              .heartbeat_ms = HB,
                              .request_timeout_ms = timeout_ms,
                              .queue_limit = queue_limit};
    f->broker = broker_new(&config);
    assert_non_null(f->broker);
    f->client = mdpcli_new(f->endpoint, NULL, NULL);
    assert_non_null(f->client);
    *state = f;
    return 0;
}

static int s_setup(void **state)
{
    return s_fixture_up(state, 5000, 2);
}

static int s_setup_short_deadline(void **state)
{
    return s_fixture_up(state, 300, 10);
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    mdpcli_destroy(&f->client);
    broker_destroy(&f->broker);
    free(f);
    return 0;
}

/* ---- hand-made workers ---- */

static zsock_t *fw_new(fixture_t *f, const char *service)
{
    zsock_t *w = zsock_new_dealer(f->endpoint);
    assert_non_null(w);
    zsock_set_linger(w, 0);
    zsock_set_rcvtimeo(w, 2000);
    zstr_sendx(w, "", MDP_WORKER, "\x01", service, NULL);
    zclock_sleep(20); /* the broker registers workers in arrival order */
    return w;
}

static void fw_beat(zsock_t *w)
{
    zstr_sendx(w, "", MDP_WORKER, "\x04", NULL);
}

/* Next REQUEST, skipping heartbeats; NULL after timeout_ms. */
static zmsg_t *fw_request(zsock_t *w, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(w, NULL);
    int64_t end = zclock_mono() + timeout_ms;
    zmsg_t *found = NULL;
    while (!found && zclock_mono() < end) {
        if (!zpoller_wait(poller, (int)(end - zclock_mono())))
            break;
        zmsg_t *msg = zmsg_recv(w);
        zframe_t *cmd = NULL;
        if (zmsg_size(msg) >= 3) {
            zmsg_first(msg);
            zmsg_next(msg);
            cmd = zmsg_next(msg);
        }
        if (cmd && zframe_size(cmd) == 1 && zframe_data(cmd)[0] == MDP_REQUEST)
            found = msg;
        else
            zmsg_destroy(&msg);
    }
    zpoller_destroy(&poller);
    return found;
}

static uint64_t fw_request_id(zmsg_t *req);

/* The caller frame of a REQUEST: [empty][MDPW01][REQUEST][client][empty]
 * [body][caller][tag]. Returns a string the caller frees. */
static char *fw_caller(zmsg_t *req)
{
    zframe_t *frame = zmsg_first(req);
    for (int i = 0; i < 6 && frame; i++)
        frame = zmsg_next(req);
    assert_non_null(frame);
    return zframe_strdup(frame);
}

typedef enum { TAG_NONE, TAG_OWN, TAG_GIVEN } fw_tag_t;

/* Answers a REQUEST with {"id": <its id>, "ok": true, "data": nil}: as a
 * plain MDP worker (no tag: the broker takes it for the oldest), with the
 * REQUEST's own tag (its last frame: a worker answering out of order), or
 * with the tag given (a wrong one). */
static void fw_answer(zsock_t *w, zmsg_t **request_p, fw_tag_t how, const uint8_t *tag)
{
    zmsg_t *req = *request_p;
    uint64_t id = fw_request_id(req);
    zframe_t *frame = zmsg_first(req);
    for (int i = 0; i < 3; i++)
        frame = zmsg_next(req);
    zframe_t *client = zframe_dup(frame);
    zframe_t *own_tag = zframe_dup(zmsg_last(req));
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_object oid = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = id};
    envelope_reply_ok_begin(&pk, &oid);
    msgpack_pack_nil(&pk);
    zmsg_t *reply = zmsg_new();
    zmsg_addmem(reply, "", 0);
    zmsg_addstr(reply, MDP_WORKER);
    zmsg_addmem(reply, "\x03", 1);
    zmsg_append(reply, &client);
    zmsg_addmem(reply, "", 0);
    zmsg_addmem(reply, buf.data, buf.size);
    if (how == TAG_GIVEN)
        zmsg_addmem(reply, tag, MDP_TAG_LEN);
    else if (how == TAG_OWN)
        zmsg_append(reply, &own_tag);
    zframe_destroy(&own_tag);
    zmsg_send(&reply, w);
    msgpack_sbuffer_destroy(&buf);
    zmsg_destroy(request_p);
}

static void fw_reply(zsock_t *w, zmsg_t **request_p)
{
    fw_answer(w, request_p, TAG_NONE, NULL);
}

/* The request id carried by a REQUEST message's body. */
static uint64_t fw_request_id(zmsg_t *req)
{
    zframe_t *body = zmsg_first(req);
    for (int i = 0; i < 5; i++)
        body = zmsg_next(req);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_request_t rq;
    const char *why;
    assert_true(envelope_decode_request(zframe_data(body), zframe_size(body), &zone, &rq, &why));
    uint64_t id = rq.id.via.u64;
    msgpack_zone_destroy(&zone);
    return id;
}

/* ---- client side ---- */

static void s_send(fixture_t *f, const char *service, uint64_t id)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    envelope_pack_request(&buf, id, "echo", NULL, NULL, 0);
    assert_int_equal(mdpcli_send(f->client, service, buf.data, buf.size), 0);
    msgpack_sbuffer_destroy(&buf);
}

/* Waits for a reply; returns its error code (ERR_NONE when ok) and id. */
static err_code_t s_reply(fixture_t *f, int timeout_ms, uint64_t *id)
{
    zframe_t *frame = mdpcli_recv(f->client, timeout_ms, NULL);
    if (!frame)
        return ERR__COUNT; /* nothing */
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_reply_t reply;
    const char *why;
    assert_true(envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why));
    if (id)
        *id = reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER ? reply.id.via.u64 : 0;
    err_code_t code = reply.ok ? ERR_NONE : reply.code;
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return code;
}

static int s_workers_of(fixture_t *f, const char *service)
{
    mdpcli_send(f->client, "mmi.services", "", 0);
    zframe_t *frame = mdpcli_recv(f->client, 1000, NULL);
    assert_non_null(frame);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    msgpack_object list;
    size_t off = 0;
    assert_int_equal(
        msgpack_unpack((char *)zframe_data(frame), zframe_size(frame), &off, &zone, &list),
        MSGPACK_UNPACK_SUCCESS);
    int workers = -1;
    for (uint32_t i = 0; i < list.via.array.size; i++)
        if (mp_str_eq(mp_map_get(&list.via.array.ptr[i], "name"), service))
            workers = (int)mp_map_get(&list.via.array.ptr[i], "workers")->via.u64;
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return workers;
}

/* Waits (up to 2 s) until the broker counts n workers of service: a
 * READY and an mmi request travel on different sockets. */
static int s_wait_workers(fixture_t *f, const char *service, int n)
{
    int64_t end = zclock_mono() + 2000;
    int workers;
    while ((workers = s_workers_of(f, service)) != n && zclock_mono() < end)
        zclock_sleep(5);
    return workers;
}

/* ---- tests ---- */

static void test_dispatch_longest_idle_first(void **state)
{
    fixture_t *f = *state;
    zsock_t *w[3] = {fw_new(f, "t"), fw_new(f, "t"), fw_new(f, "t")};
    /* Ready order w0 w1 w2; each served worker goes to the back. */
    int expected[] = {0, 1, 2, 0, 1};
    for (int i = 0; i < 5; i++) {
        s_send(f, "t", 100 + i);
        int who = expected[i];
        zmsg_t *req = fw_request(w[who], 1000);
        assert_non_null(req);
        assert_int_equal(fw_request_id(req), 100 + i);
        char *caller = fw_caller(req);
        assert_string_equal(caller, MDP_CALLER_UNNAMED); /* an in-process client without a name */
        zstr_free(&caller);
        fw_reply(w[who], &req);
        uint64_t id;
        assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
        assert_int_equal(id, 100 + i);
    }
    for (int i = 0; i < 3; i++)
        zsock_destroy(&w[i]);
}

static void test_unknown_service_is_unavailable(void **state)
{
    fixture_t *f = *state;
    s_send(f, "nobody", 7);
    uint64_t id;
    assert_int_equal(s_reply(f, 1000, &id), ERR_UNAVAILABLE);
    assert_int_equal(id, 7);
}

static void test_queue_bound(void **state)
{
    fixture_t *f = *state; /* queue_limit 2 */
    zsock_t *w = fw_new(f, "t");
    for (uint64_t i = 1; i <= 3; i++)
        s_send(f, "t", i); /* 1 in flight, 2 and 3 queued */
    s_send(f, "t", 4);
    uint64_t id;
    assert_int_equal(s_reply(f, 1000, &id), ERR_UNAVAILABLE); /* at once */
    assert_int_equal(id, 4);
    for (uint64_t i = 1; i <= 3; i++) {
        zmsg_t *req = fw_request(w, 1000);
        assert_non_null(req);
        assert_int_equal(fw_request_id(req), i); /* FIFO */
        fw_reply(w, &req);
        assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
        assert_int_equal(id, i);
    }
    zsock_destroy(&w);
}

/* Waits for a reply while worker w keeps beating (so it stays alive). */
static err_code_t s_reply_beating(fixture_t *f, zsock_t *w, int timeout_ms, uint64_t *id)
{
    int64_t end = zclock_mono() + timeout_ms;
    err_code_t code = ERR__COUNT;
    while (code == ERR__COUNT && zclock_mono() < end) {
        fw_beat(w);
        code = s_reply(f, HB / 2, id);
    }
    return code;
}

static void test_deadline(void **state)
{
    fixture_t *f = *state; /* timeout 300 ms */
    zsock_t *w = fw_new(f, "t");
    s_send(f, "t", 1); /* in flight, never answered in time */
    s_send(f, "t", 2); /* queued behind it */
    zmsg_t *req = fw_request(w, 1000);
    assert_non_null(req);
    int64_t start = zclock_mono();
    uint64_t id, id2;
    assert_int_equal(s_reply_beating(f, w, 2000, &id), ERR_TIMEOUT);
    assert_int_equal(s_reply_beating(f, w, 1000, &id2), ERR_TIMEOUT);
    assert_true((id == 1 && id2 == 2) || (id == 2 && id2 == 1));
    assert_in_range(zclock_mono() - start, 200, 1000);
    /* the late reply is dropped, and the worker serves again */
    fw_reply(w, &req);
    assert_int_equal(s_reply_beating(f, w, 200, NULL), ERR__COUNT);
    s_send(f, "t", 3);
    req = fw_request(w, 1000);
    assert_non_null(req);
    fw_reply(w, &req);
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 3);
    zsock_destroy(&w);
}

static void test_silent_worker_expires(void **state)
{
    fixture_t *f = *state;
    zsock_t *silent = fw_new(f, "t");
    zsock_t *alive = fw_new(f, "t");
    assert_int_equal(s_workers_of(f, "t"), 2);
    /* an idle worker that says nothing for three beats is gone */
    int64_t start = zclock_mono();
    while (s_workers_of(f, "t") != 1 && zclock_mono() - start < 2000) {
        fw_beat(alive);
        zclock_sleep(HB / 2);
    }
    int64_t noticed = zclock_mono() - start;
    assert_int_equal(s_workers_of(f, "t"), 1);
    assert_true(noticed <= MDP_LIVENESS * HB + 2 * HB);
    /* requests go to the live worker */
    s_send(f, "t", 2);
    zmsg_t *r2 = fw_request(alive, 1000);
    assert_non_null(r2);
    fw_reply(alive, &r2);
    uint64_t id = 0;
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 2);
    zsock_destroy(&silent);
    zsock_destroy(&alive);
}

/* A handler that runs longer than three beats cannot beat meanwhile: its
 * worker is kept while the request is within its deadline, and the answer
 * reaches the client (before, it was "unavailable" for a request that went
 * on to run: a write reported as not done). */
static void test_busy_worker_outlives_beats(void **state)
{
    fixture_t *f = *state; /* deadline 5 s */
    zsock_t *busy = fw_new(f, "t");
    s_send(f, "t", 1);
    zmsg_t *r1 = fw_request(busy, 1000);
    assert_non_null(r1);
    uint64_t id = 0;
    assert_int_equal(s_reply(f, 2 * MDP_LIVENESS * HB, &id), ERR__COUNT); /* silent 6 beats */
    assert_int_equal(s_workers_of(f, "t"), 1);
    fw_reply(busy, &r1);
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 1);
    zsock_destroy(&busy);
}

/* Past its request's deadline a silent worker is presumed stuck: the
 * client has its timeout, the worker is expired, and the request queued
 * behind it goes to a live worker. */
static void test_stuck_worker_expires_after_deadline(void **state)
{
    fixture_t *f = *state; /* deadline 300 ms */
    zsock_t *stuck = fw_new(f, "t");
    s_send(f, "t", 1);
    zmsg_t *r1 = fw_request(stuck, 1000);
    assert_non_null(r1);
    uint64_t id = 0;
    assert_int_equal(s_reply(f, 2000, &id), ERR_TIMEOUT);
    assert_int_equal(id, 1);
    int64_t start = zclock_mono();
    while (s_workers_of(f, "t") != 0 && zclock_mono() - start < 2000)
        zclock_sleep(HB / 2);
    assert_int_equal(s_workers_of(f, "t"), 0);
    zmsg_destroy(&r1);
    zsock_destroy(&stuck);
}

/* broker_drain: held and queued requests are still served by their
 * workers, and the drain reports once nothing is left. */
static void test_drain_waits_for_requests(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = fw_new(f, "t");
    s_send(f, "t", 1); /* held */
    s_send(f, "t", 2); /* queued */
    zmsg_t *r1 = fw_request(w, 1000);
    assert_non_null(r1);
    /* the drain runs in the broker; answer both meanwhile from here */
    zstr_sendx(f->broker, "DRAIN", "3000", NULL);
    fw_reply(w, &r1);
    zmsg_t *r2 = fw_request(w, 1000);
    assert_non_null(r2);
    fw_reply(w, &r2);
    int left = -1;
    assert_int_equal(zsock_recv(f->broker, "i", &left), 0);
    assert_int_equal(left, 0);
    uint64_t a = 0, b = 0;
    assert_int_equal(s_reply(f, 1000, &a), ERR_NONE);
    assert_int_equal(s_reply(f, 1000, &b), ERR_NONE);
    assert_int_equal(a + b, 3);
    /* nothing in flight: an immediate answer */
    assert_int_equal(broker_drain(f->broker, 3000), 0);
    zsock_destroy(&w);
}

/* At the drain deadline what is left is answered unavailable, once. */
static void test_drain_deadline_answers_the_rest(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = fw_new(f, "t");
    s_send(f, "t", 1);
    zmsg_t *r1 = fw_request(w, 1000);
    assert_non_null(r1);
    int64_t start = zclock_mono();
    assert_int_equal(broker_drain(f->broker, 200), 1);
    assert_true(zclock_mono() - start >= 190);
    uint64_t id = 0;
    assert_int_equal(s_reply(f, 1000, &id), ERR_UNAVAILABLE);
    assert_int_equal(id, 1);
    fw_reply(w, &r1); /* late: dropped, not a second answer */
    assert_int_equal(s_reply(f, 300, &id), ERR__COUNT);
    zsock_destroy(&w);
}

/* An in-process client is the caller it was named, and a name-less one
 * is nobody in particular: no shared default such as "inproc". */
static void test_inproc_caller_names(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = fw_new(f, "t");
    const char *names[] = {"bridge", "orders"};
    for (int i = 0; i < 2; i++) {
        mdpcli_t *c = mdpcli_new_inproc(f->endpoint, names[i]);
        assert_non_null(c);
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        envelope_pack_request(&buf, 40 + i, "echo", NULL, NULL, 0);
        assert_int_equal(mdpcli_send(c, "t", buf.data, buf.size), 0);
        msgpack_sbuffer_destroy(&buf);
        zmsg_t *req = fw_request(w, 1000);
        assert_non_null(req);
        char *caller = fw_caller(req);
        assert_string_equal(caller, names[i]);
        zstr_free(&caller);
        fw_reply(w, &req);
        zframe_t *reply = mdpcli_recv(c, 1000, NULL);
        assert_non_null(reply);
        zframe_destroy(&reply);
        mdpcli_destroy(&c);
    }
    assert_null(mdpcli_new_inproc(f->endpoint, "not a name"));
    /* a routing id that only looks like a name is no name */
    zsock_t *raw = zsock_new(ZMQ_DEALER);
    zsock_set_identity(raw, "orders#123");
    assert_int_equal(zsock_connect(raw, "%s", f->endpoint), 0);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    envelope_pack_request(&buf, 50, "echo", NULL, NULL, 0);
    zmsg_t *msg = zmsg_new();
    zmsg_addmem(msg, "", 0);
    zmsg_addstr(msg, MDP_CLIENT);
    zmsg_addstr(msg, "t");
    zmsg_addmem(msg, buf.data, buf.size);
    zmsg_send(&msg, raw);
    msgpack_sbuffer_destroy(&buf);
    zmsg_t *req = fw_request(w, 1000);
    assert_non_null(req);
    char *caller = fw_caller(req);
    assert_string_equal(caller, MDP_CALLER_UNNAMED);
    zstr_free(&caller);
    zmsg_destroy(&req);
    zsock_destroy(&raw);
    zsock_destroy(&w);
}

static void test_closed_worker_is_skipped(void **state)
{
    fixture_t *f = *state;
    zsock_t *gone = fw_new(f, "t");
    zsock_t *alive = fw_new(f, "t");
    zsock_destroy(&gone); /* first in line, but its connection is closed */
    zclock_sleep(20);
    s_send(f, "t", 9);
    zmsg_t *req = fw_request(alive, 1000);
    assert_non_null(req);
    fw_reply(alive, &req);
    uint64_t id;
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 9);
    assert_int_equal(s_workers_of(f, "t"), 1);
    zsock_destroy(&alive);
}

static void test_worker_capacity(void **state)
{
    fixture_t *f = *state;
    /* READY with a capacity of 2: the broker sends a second request before
     * the first is answered, and matches replies in order. */
    zsock_t *w = zsock_new_dealer(f->endpoint);
    zsock_set_linger(w, 0);
    zstr_sendx(w, "", MDP_WORKER, "\x01", "t", "2", NULL);
    zclock_sleep(20);
    s_send(f, "t", 1);
    s_send(f, "t", 2);
    s_send(f, "t", 3); /* queued: the worker is full */
    zmsg_t *r1 = fw_request(w, 1000);
    zmsg_t *r2 = fw_request(w, 1000);
    assert_non_null(r1);
    assert_non_null(r2);
    assert_int_equal(fw_request_id(r1), 1);
    assert_int_equal(fw_request_id(r2), 2);
    assert_null(fw_request(w, 100));
    uint64_t id;
    fw_reply(w, &r1);
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 1);
    zmsg_t *r3 = fw_request(w, 1000); /* a slot opened */
    assert_non_null(r3);
    assert_int_equal(fw_request_id(r3), 3);
    fw_reply(w, &r2);
    fw_reply(w, &r3);
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 2);
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 3);
    zsock_destroy(&w);
}

/* A worker that holds several requests answers them in any order, each
 * naming its own by the tag: every client gets its own reply, and each
 * answer frees one unit of credit. */
static void test_tagged_replies_out_of_order(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = zsock_new_dealer(f->endpoint);
    zsock_set_linger(w, 0);
    zstr_sendx(w, "", MDP_WORKER, "\x01", "t", "3", NULL);
    assert_int_equal(s_wait_workers(f, "t", 1), 1);
    for (uint64_t id = 1; id <= 4; id++)
        s_send(f, "t", id);
    zmsg_t *held[5] = {NULL};
    for (uint64_t id = 1; id <= 3; id++) {
        held[id] = fw_request(w, 1000);
        assert_non_null(held[id]);
        assert_int_equal(fw_request_id(held[id]), id);
        assert_int_equal(zmsg_size(held[id]), 8); /* ... [caller] [tag] */
        assert_int_equal(zframe_size(zmsg_last(held[id])), MDP_TAG_LEN);
    }
    assert_null(fw_request(w, 100)); /* 4 waits for credit */
    uint64_t id;
    fw_answer(w, &held[3], TAG_OWN, NULL);
    assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
    assert_int_equal(id, 3);
    held[4] = fw_request(w, 1000); /* the credit came back */
    assert_non_null(held[4]);
    assert_int_equal(fw_request_id(held[4]), 4);
    const uint64_t order[] = {1, 4, 2};
    for (int i = 0; i < 3; i++) {
        fw_answer(w, &held[order[i]], TAG_OWN, NULL);
        assert_int_equal(s_reply(f, 1000, &id), ERR_NONE);
        assert_int_equal(id, order[i]);
    }
    assert_int_equal(s_workers_of(f, "t"), 1); /* no protocol error on the way */
    zsock_destroy(&w);
}

/* A tag the worker was never given is a protocol error: the worker is
 * dropped and what it held is answered unavailable. */
static void test_unknown_tag_drops_the_worker(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = zsock_new_dealer(f->endpoint);
    zsock_set_linger(w, 0);
    zstr_sendx(w, "", MDP_WORKER, "\x01", "t", "2", NULL);
    assert_int_equal(s_wait_workers(f, "t", 1), 1);
    s_send(f, "t", 1);
    zmsg_t *req = fw_request(w, 1000);
    assert_non_null(req);
    const uint8_t wrong[MDP_TAG_LEN] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    fw_answer(w, &req, TAG_GIVEN, wrong);
    uint64_t id;
    assert_int_equal(s_reply(f, 1000, &id), ERR_UNAVAILABLE);
    assert_int_equal(id, 1);
    assert_int_equal(s_wait_workers(f, "t", 0), 0);
    zsock_destroy(&w);
}

/* A worker that vanishes while it holds requests: each is answered
 * unavailable exactly once, and nothing else arrives. */
static void test_vanished_worker_answers_each_held_once(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = zsock_new_dealer(f->endpoint);
    zsock_set_linger(w, 0);
    zstr_sendx(w, "", MDP_WORKER, "\x01", "t", "16", NULL);
    assert_int_equal(s_wait_workers(f, "t", 1), 1);
    for (uint64_t id = 1; id <= 16; id++)
        s_send(f, "t", id);
    for (int i = 0; i < 16; i++) {
        zmsg_t *req = fw_request(w, 1000);
        assert_non_null(req);
        zmsg_destroy(&req);
    }
    zsock_destroy(&w); /* found at the next beat: the send to it fails */
    int answered[17] = {0};
    for (int i = 0; i < 16; i++) {
        uint64_t id = 0;
        assert_int_equal(s_reply(f, 2000, &id), ERR_UNAVAILABLE);
        assert_true(id >= 1 && id <= 16);
        answered[id]++;
    }
    for (int id = 1; id <= 16; id++)
        assert_int_equal(answered[id], 1);
    assert_int_equal(s_reply(f, 3 * HB, NULL), ERR__COUNT); /* no second answer */
}

static void test_mmi_service(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = fw_new(f, "t");
    const char *names[] = {"t", "nobody"};
    const char *answers[] = {"200", "404"};
    for (int i = 0; i < 2; i++) {
        mdpcli_send(f->client, "mmi.service", names[i], strlen(names[i]));
        char *service = NULL;
        zframe_t *frame = mdpcli_recv(f->client, 1000, &service);
        assert_non_null(frame);
        assert_string_equal(service, "mmi.service");
        assert_true(zframe_streq(frame, answers[i]));
        zstr_free(&service);
        zframe_destroy(&frame);
    }
    zsock_destroy(&w);
}

static void test_unknown_worker_is_told_to_reconnect(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = zsock_new_dealer(f->endpoint);
    fw_beat(w); /* never said READY */
    zmsg_t *msg = zmsg_recv(w);
    assert_non_null(msg);
    assert_int_equal(zmsg_size(msg), 3);
    zframe_t *cmd = zmsg_last(msg);
    assert_int_equal(zframe_data(cmd)[0], MDP_DISCONNECT);
    zmsg_destroy(&msg);
    zsock_destroy(&w);
}

static void test_bad_client_frames(void **state)
{
    fixture_t *f = *state;
    zsock_t *w = fw_new(f, "t");
    /* Too many frames: dropped without an answer. */
    zstr_sendx(mdpcli_sock(f->client), "", MDP_CLIENT, "t", "a", "b", NULL);
    assert_int_equal(s_reply(f, 200, NULL), ERR__COUNT);
    /* An oversized body: payload_too_large, and nothing reaches the worker. */
    size_t big = ENVELOPE_MAX_BYTES + 1;
    char *body = calloc(1, big);
    assert_int_equal(mdpcli_send(f->client, "t", body, big), 0);
    free(body);
    assert_int_equal(s_reply(f, 1000, NULL), ERR_PAYLOAD_TOO_LARGE);
    assert_null(fw_request(w, 100));
    /* A service name with a NUL in it is not "t" cut short: dropped,
     * and the worker of "t" gets nothing (tests/fuzz/fuzz_broker.c). */
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, "");
    zmsg_addstr(msg, MDP_CLIENT);
    zmsg_addmem(msg, "t\0x", 3);
    zmsg_addstr(msg, "body");
    assert_int_equal(zmsg_send(&msg, mdpcli_sock(f->client)), 0);
    assert_int_equal(s_reply(f, 200, NULL), ERR__COUNT);
    assert_null(fw_request(w, 100));
    zsock_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_dispatch_longest_idle_first, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_service_is_unavailable, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_queue_bound, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_deadline, s_setup_short_deadline, s_teardown),
        cmocka_unit_test_setup_teardown(test_silent_worker_expires, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_busy_worker_outlives_beats, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_stuck_worker_expires_after_deadline,
                                        s_setup_short_deadline, s_teardown),
        cmocka_unit_test_setup_teardown(test_drain_waits_for_requests, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_drain_deadline_answers_the_rest, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_inproc_caller_names, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_closed_worker_is_skipped, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_worker_capacity, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_mmi_service, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tagged_replies_out_of_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_tag_drops_the_worker, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_vanished_worker_answers_each_held_once, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_worker_is_told_to_reconnect, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_client_frames, s_setup, s_teardown),
    };
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("broker", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

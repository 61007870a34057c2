/*  test_held.c - a worker holding requests that wait on other services.
 *
 *  The worker (actors/worker.c) is real; the broker is the test: a ROUTER
 *  on a private inproc endpoint that speaks the frames of protocol/SPEC.md
 *  by hand, so the test sees exactly what the worker sends (its asks on
 *  its client socket, its heartbeats and its tagged replies) and decides
 *  when and in which order the asks are answered.
 *
 *  Writes (call_write) go to a real LMDB environment, the worker's state:
 *  the first write holds its transaction open until the worker has
 *  queued the others behind it, which it can only do if it kept serving
 *  while its write was out, and then the eight writes of one worker
 *  thread take exactly two commits.
 */
#include "tests/testutil.h"

#include "actors/worker.h"
#include "protocol/envelope.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"

#include <czmq.h>
#include <stdatomic.h>

#define HELD 256
#define WRITES 8        /* requests of the write test */
#define WRITE_REFUSER 3 /* the one whose write refuses */
#define WRITE_REFUSAL 5 /* with this */
#define WRITE_WAIT_MS 5000

/* ---- the service under test ---- */

static void s_relayed(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    int64_t n = 0;
    call_arg_int(call, "n", ARG_REQUIRED, 0, 1 << 30, &n);
    if (!answer->ok) {
        call_fail(call, answer->code, answer->message);
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "n");
    msgpack_pack_int64(pk, n);
    mp_pack_str(pk, "slow");
    msgpack_pack_object(pk, *answer->data);
}

/* Asks "slow" for n, with the timeout the request gives. */
static void s_relay(call_t *call, void *state)
{
    (void)state;
    int64_t n = 0, timeout_ms = 10000;
    call_arg_int(call, "n", ARG_REQUIRED, 0, 1 << 30, &n);
    call_arg_int(call, "timeout_ms", ARG_OPTIONAL, 1, 60000, &timeout_ms);
    if (!call_args_ok(call))
        return;
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "n");
    msgpack_pack_int64(pk, n);
    call_ask(call, "slow", "get", (int)timeout_ms, s_relayed);
}

static void s_paused(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    msgpack_pack_int(call_reply(call), answer->ok ? 1 : 0);
}

static void s_pause(call_t *call, void *state)
{
    (void)state;
    call_after(call, 30, s_paused);
}

/* Asks the endpoint in the args (an outside system, not a service). */
static void s_outside(call_t *call, void *state)
{
    (void)state;
    char endpoint[CALL_ENDPOINT_MAX + 1];
    int64_t n = 0;
    call_arg_text(call, "endpoint", ARG_REQUIRED, CALL_ENDPOINT_MAX, endpoint, sizeof endpoint);
    call_arg_int(call, "n", ARG_REQUIRED, 0, 1 << 30, &n);
    if (!call_args_ok(call))
        return;
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "n");
    msgpack_pack_int64(pk, n);
    call_ask_at(call, endpoint, "charge", 5000, s_relayed);
}

/* The worker's state for writes (the fixture's): the environment, and
 * whether the first write is running. */
typedef struct {
    kv_t *kv;
    atomic_bool first_running;
} s_writes_t;

/* A write of key "k<n>"; the first (n 0) holds its transaction until
 * the others are queued. Lives in the call's context until the resume. */
typedef struct {
    s_writes_t *writes;
    int64_t n;
} s_write_t;

static int s_write_fn(MDB_txn *txn, void *arg)
{
    s_write_t *w = arg;
    char key[16];
    snprintf(key, sizeof key, "k%d", (int)w->n);
    kv_t *kv = w->writes->kv;
    MDB_val k = {strlen(key), key}, v = k;
    int rc = mdb_put(txn, kv_dbi(kv, 0), &k, &v, 0);
    if (rc != 0)
        return rc;
    if (w->n == 0)
        atomic_store(&w->writes->first_running, true);
    int64_t deadline = zclock_mono() + WRITE_WAIT_MS;
    while (w->n == 0 && kv_write_pending(kv) < WRITES - 1 && zclock_mono() < deadline)
        zclock_sleep(1);
    return w->n == WRITE_REFUSER ? WRITE_REFUSAL : 0;
}

static void s_written(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    s_write_t *w = call_context(call, sizeof *w);
    if (!answer->ok) {
        call_fail(call, answer->code, answer->message);
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "n");
    msgpack_pack_int64(pk, w->n);
    mp_pack_str(pk, "result");
    msgpack_pack_int(pk, answer->result);
}

static void s_write(call_t *call, void *state)
{
    s_write_t *w = call_context(call, sizeof *w);
    if (!w) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    w->writes = state;
    call_arg_int(call, "n", ARG_REQUIRED, 0, 1 << 30, &w->n);
    if (!call_args_ok(call))
        return;
    call_write(call, w->writes->kv, s_write_fn, w, s_written);
}

static void *s_state_new(void *shared)
{
    return shared;
}

static const worker_op_t s_ops[] = {{"relay", s_relay},
                                    {"pause", s_pause},
                                    {"outside", s_outside},
                                    {"write", s_write},
                                    {NULL, NULL}};

/* ---- the hand-made broker ---- */

typedef struct {
    char endpoint[64];
    zsock_t *router;
    zactor_t *worker;
    zframe_t *worker_id; /* the worker's DEALER */
    int heartbeats;      /* HEARTBEATs seen from it */
    int64_t beat_at;     /* when to beat the worker next */
    char *dir;           /* of writes.kv */
    s_writes_t writes;   /* the worker's state */
} fixture_t;

static int s_setup(void **state)
{
    static int counter = 0; /* test-local */
    fixture_t *f = calloc(1, sizeof *f);
    snprintf(f->endpoint, sizeof f->endpoint, "inproc://test-held-%d", ++counter);
    f->router = zsock_new_router(f->endpoint);
    assert_non_null(f->router);
    zsock_set_rcvtimeo(f->router, 5000);
    f->dir = tu_tempdir("test-held");
    assert_non_null(f->dir);
    const char *names[] = {"w"};
    char err[256];
    f->writes.kv = kv_open(f->dir, 1 << 20, names, NULL, 1, err, sizeof err);
    assert_non_null(f->writes.kv);
    worker_config_t config = {.service = "a",
                              .ops = s_ops,
                              .endpoint = f->endpoint,
                              .heartbeat_ms = 50,
                              .capacity = HELD,
                              .state_new = s_state_new,
                              .shared = &f->writes};
    f->worker = worker_new(&config);
    assert_non_null(f->worker);
    /* READY [service] [capacity] */
    zmsg_t *ready = zmsg_recv(f->router);
    assert_non_null(ready);
    assert_int_equal(zmsg_size(ready), 6);
    f->worker_id = zmsg_pop(ready);
    zframe_t *frame = zmsg_first(ready);
    frame = zmsg_next(ready);
    frame = zmsg_next(ready);
    assert_int_equal(zframe_data(frame)[0], MDP_READY);
    char *capacity = zframe_strdup(zmsg_last(ready));
    assert_string_equal(capacity, "256");
    zstr_free(&capacity);
    zmsg_destroy(&ready);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    worker_destroy(&f->worker);
    kv_close(&f->writes.kv);
    tu_rmtree(f->dir);
    free(f->dir);
    zframe_destroy(&f->worker_id);
    zsock_destroy(&f->router);
    free(f);
    return 0;
}

/* Gives the worker a REQUEST with id n for op with the packed args,
 * tagged n + 1000. */
static void s_give(fixture_t *f, const char *op, int n, const msgpack_sbuffer *args)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    assert_int_equal(envelope_pack_request(&body, (uint64_t)n, op, NULL, args->data, args->size),
                     0);
    uint8_t tag[MDP_TAG_LEN] = {0};
    uint64_t value = (uint64_t)n + 1000;
    for (int i = 0; i < MDP_TAG_LEN; i++)
        tag[i] = (uint8_t)(value >> (8 * i));
    uint8_t command = MDP_REQUEST;
    zmsg_t *msg = zmsg_new();
    zmsg_append(msg, &(zframe_t *){zframe_dup(f->worker_id)});
    zmsg_addmem(msg, "", 0);
    zmsg_addstr(msg, MDP_WORKER);
    zmsg_addmem(msg, &command, 1);
    zmsg_addstr(msg, "client-1");
    zmsg_addmem(msg, "", 0);
    zmsg_addmem(msg, body.data, body.size);
    zmsg_addstr(msg, "tester");
    zmsg_addmem(msg, tag, sizeof tag);
    assert_int_equal(zmsg_send(&msg, f->router), 0);
    msgpack_sbuffer_destroy(&body);
}

/* Gives the worker a REQUEST for op with {n, timeout_ms?}. */
static void s_request(fixture_t *f, const char *op, int n, int timeout_ms)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, timeout_ms ? 2 : 1);
    mp_pack_str(&pk, "n");
    msgpack_pack_int(&pk, n);
    if (timeout_ms) {
        mp_pack_str(&pk, "timeout_ms");
        msgpack_pack_int(&pk, timeout_ms);
    }
    s_give(f, op, n, &args);
    msgpack_sbuffer_destroy(&args);
}

typedef enum { MSG_NONE, MSG_ASK, MSG_REPLY, MSG_HEARTBEAT, MSG_OTHER } msg_kind_t;

/* One message from the worker or its client: an ask ([client id][empty]
 * [MDPC01][service][body]), a REPLY or a HEARTBEAT. The message is kept
 * in *out (the caller destroys it), without its routing frame for the
 * worker's own commands. */
static msg_kind_t s_next(fixture_t *f, int timeout_ms, zmsg_t **out)
{
    /* Beat as a broker does (every 50 ms), or the worker takes us for
     * gone after three silent beats and reconnects. */
    zpoller_t *poller = zpoller_new(f->router, NULL);
    int64_t end = zclock_mono() + timeout_ms;
    void *ready = NULL;
    while (!ready && zclock_mono() < end) {
        if (zclock_mono() >= f->beat_at) {
            uint8_t command = MDP_HEARTBEAT;
            zmsg_t *beat = zmsg_new();
            zmsg_append(beat, &(zframe_t *){zframe_dup(f->worker_id)});
            zmsg_addmem(beat, "", 0);
            zmsg_addstr(beat, MDP_WORKER);
            zmsg_addmem(beat, &command, 1);
            assert_int_equal(zmsg_send(&beat, f->router), 0);
            f->beat_at = zclock_mono() + 50;
        }
        int64_t wait = f->beat_at - zclock_mono();
        ready = zpoller_wait(poller, wait > 0 ? (int)wait : 0);
    }
    zpoller_destroy(&poller);
    if (!ready)
        return MSG_NONE;
    zmsg_t *msg = zmsg_recv(f->router);
    assert_non_null(msg);
    zframe_t *id = zmsg_first(msg);
    zmsg_next(msg);
    zframe_t *header = zmsg_next(msg);
    msg_kind_t kind = MSG_OTHER;
    if (header && zframe_streq(header, MDP_CLIENT))
        kind = MSG_ASK;
    else if (header && zframe_streq(header, MDP_WORKER) && zframe_eq(id, f->worker_id)) {
        zframe_t *command = zmsg_next(msg);
        if (command && zframe_data(command)[0] == MDP_HEARTBEAT)
            kind = MSG_HEARTBEAT;
        else if (command && zframe_data(command)[0] == MDP_REPLY)
            kind = MSG_REPLY;
    }
    if (kind == MSG_HEARTBEAT)
        f->heartbeats++;
    *out = msg;
    return kind;
}

/* The envelope in frame: its uint id, and its args' or data's "n" (or -1). */
static void s_decode(zframe_t *frame, bool reply, uint64_t *id, int64_t *n, int64_t *slow_n,
                     char *code, size_t code_size)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    const char *why;
    *n = *slow_n = -1;
    if (code_size)
        code[0] = '\0';
    if (!reply) {
        envelope_request_t request;
        assert_true(
            envelope_decode_request(zframe_data(frame), zframe_size(frame), &zone, &request, &why));
        *id = request.id.via.u64;
        const msgpack_object *v = mp_map_get(&request.args, "n");
        assert_non_null(v);
        *n = v->via.i64;
    } else {
        envelope_reply_t r;
        assert_true(envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &r, &why));
        *id = r.id.via.u64;
        if (r.ok && r.data.type == MSGPACK_OBJECT_MAP) {
            *n = mp_map_get(&r.data, "n")->via.i64;
            const msgpack_object *slow = mp_map_get(&r.data, "slow");
            if (slow && slow->type == MSGPACK_OBJECT_MAP)
                *slow_n = mp_map_get(slow, "n")->via.i64;
        } else if (!r.ok) {
            const msgpack_object *c = mp_map_get(&r.error, "code");
            snprintf(code, code_size, "%.*s", (int)c->via.str.size, c->via.str.ptr);
        }
    }
    msgpack_zone_destroy(&zone);
}

/* Answers an ask: {"id": ticket, "ok": true, "data": {"n": n * 2}}. */
static void s_answer(fixture_t *f, zframe_t *client, uint64_t ticket, int64_t n)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = ticket};
    envelope_reply_ok_begin(&pk, &id);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "n");
    msgpack_pack_int64(&pk, n * 2);
    zmsg_t *msg = zmsg_new();
    zmsg_append(msg, &(zframe_t *){zframe_dup(client)});
    zmsg_addmem(msg, "", 0);
    zmsg_addstr(msg, MDP_CLIENT);
    zmsg_addstr(msg, "slow");
    zmsg_addmem(msg, buf.data, buf.size);
    assert_int_equal(zmsg_send(&msg, f->router), 0);
    msgpack_sbuffer_destroy(&buf);
}

/* The tag frame of a REPLY (after the body) as a number. */
static uint64_t s_tag(zmsg_t *reply)
{
    zframe_t *tag = zmsg_last(reply);
    assert_int_equal(zframe_size(tag), MDP_TAG_LEN);
    uint64_t value = 0;
    for (int i = 0; i < MDP_TAG_LEN; i++)
        value |= (uint64_t)zframe_data(tag)[i] << (8 * i);
    return value;
}

/* The body of a REPLY as s_next keeps it: [worker][empty][MDPW01][REPLY]
 * [client][empty][body][tag]. */
static zframe_t *s_reply_body(zmsg_t *msg)
{
    zframe_t *frame = zmsg_first(msg);
    for (int k = 0; k < 6; k++)
        frame = zmsg_next(msg);
    return frame;
}

/* 256 requests wait on "slow" at once; the worker beats meanwhile and
 * answers each, tagged, in the order the answers come (the reverse). */
static void test_holds_many_and_answers_out_of_order(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < HELD; i++)
        s_request(f, "relay", i, 0);

    uint64_t ticket[HELD];
    zframe_t *client = NULL;
    int asks = 0, replies_early = 0;
    int64_t end = zclock_mono() + 20000;
    /* Every ask, and beats while they all wait (50 ms apart). */
    f->heartbeats = 0;
    while ((asks < HELD || f->heartbeats < 4) && zclock_mono() < end) {
        zmsg_t *msg = NULL;
        msg_kind_t kind = s_next(f, 1000, &msg);
        if (kind == MSG_ASK) {
            zframe_t *id = zmsg_first(msg);
            char name[KEYS_NAME_MAX + 1];
            assert_true(keys_inproc_caller(zframe_data(id), zframe_size(id), name));
            assert_string_equal(name, "a"); /* asks go out as the service */
            if (!client)
                client = zframe_dup(id);
            assert_true(zframe_eq(id, client)); /* one client socket */
            zmsg_next(msg);
            zmsg_next(msg);
            assert_true(zframe_streq(zmsg_next(msg), "slow"));
            uint64_t t;
            int64_t n, unused;
            s_decode(zmsg_last(msg), false, &t, &n, &unused, NULL, 0);
            assert_true(n >= 0 && n < HELD);
            ticket[n] = t;
            asks++;
        } else if (kind == MSG_REPLY)
            replies_early++;
        zmsg_destroy(&msg);
    }
    assert_int_equal(asks, HELD);
    assert_true(f->heartbeats >= 4);
    assert_int_equal(replies_early, 0);

    for (int i = HELD - 1; i >= 0; i--)
        s_answer(f, client, ticket[i], i);

    bool seen[HELD] = {false};
    int replies = 0, first = -1;
    while (replies < HELD) {
        zmsg_t *msg = NULL;
        msg_kind_t kind = s_next(f, 5000, &msg);
        assert_int_not_equal(kind, MSG_NONE);
        if (kind == MSG_REPLY) {
            /* [empty][MDPW01][REPLY][client][empty][body][tag] */
            assert_int_equal(zmsg_size(msg), 8);
            zmsg_first(msg);
            for (int k = 0; k < 3; k++)
                zmsg_next(msg);
            assert_true(zframe_streq(zmsg_next(msg), "client-1"));
            uint64_t id;
            int64_t n, slow_n;
            s_decode(s_reply_body(msg), true, &id, &n, &slow_n, NULL, 0);
            assert_true(id < HELD);
            assert_false(seen[id]);
            seen[id] = true;
            assert_int_equal(n, (int64_t)id);
            assert_int_equal(slow_n, 2 * (int64_t)id);
            assert_int_equal(s_tag(msg), id + 1000); /* names its own request */
            if (first < 0)
                first = (int)id;
            replies++;
        }
        zmsg_destroy(&msg);
    }
    assert_int_equal(first, HELD - 1); /* the last asked, answered first */
    zframe_destroy(&client);
}

/* An ask whose deadline passes resumes once with timeout; its late answer
 * is dropped, and the worker goes on serving. */
static void test_ask_timeout_resumes_once(void **state)
{
    fixture_t *f = *state;
    s_request(f, "relay", 7, 100);
    zmsg_t *msg = NULL;
    zframe_t *client = NULL;
    uint64_t late_ticket = 0, id = 0;
    int64_t n, unused;
    while (!client) {
        msg_kind_t kind = s_next(f, 5000, &msg);
        assert_int_not_equal(kind, MSG_NONE);
        if (kind == MSG_ASK) {
            client = zframe_dup(zmsg_first(msg));
            s_decode(zmsg_last(msg), false, &late_ticket, &n, &unused, NULL, 0);
        }
        zmsg_destroy(&msg);
    }
    char code[32] = "";
    while (!code[0]) {
        msg_kind_t kind = s_next(f, 5000, &msg);
        assert_int_not_equal(kind, MSG_NONE);
        if (kind == MSG_REPLY) {
            s_decode(s_reply_body(msg), true, &id, &n, &unused, code, sizeof code);
            assert_int_equal(id, 7);
        }
        zmsg_destroy(&msg);
    }
    assert_string_equal(code, "timeout");

    /* The late answer, then a 30 ms pause: a reply to the late answer
     * would leave before the pause's. */
    s_answer(f, client, late_ticket, 7);
    s_request(f, "pause", 8, 0);
    int replies = 0;
    while (replies == 0) {
        msg_kind_t kind = s_next(f, 5000, &msg);
        assert_int_not_equal(kind, MSG_NONE);
        if (kind == MSG_REPLY) {
            s_decode(s_reply_body(msg), true, &id, &n, &unused, code, sizeof code);
            assert_int_equal(id, 8);
            replies++;
        }
        zmsg_destroy(&msg);
    }
    zframe_destroy(&client);
}

/* call_ask_at: asks leave for an endpoint as [empty][envelope] on a
 * DEALER named after the service, and its answers, in any order, resume
 * the right requests. */
static void test_asks_at_an_endpoint(void **state)
{
    fixture_t *f = *state;
    char endpoint[80];
    snprintf(endpoint, sizeof endpoint, "%s-outside", f->endpoint);
    zsock_t *outside = zsock_new_router(endpoint);
    assert_non_null(outside);
    for (int i = 0; i < 3; i++) {
        msgpack_sbuffer args;
        msgpack_sbuffer_init(&args);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 2);
        mp_pack_str(&pk, "endpoint");
        mp_pack_str(&pk, endpoint);
        mp_pack_str(&pk, "n");
        msgpack_pack_int(&pk, i);
        s_give(f, "outside", i, &args);
        msgpack_sbuffer_destroy(&args);
    }
    zframe_t *peer = NULL;
    uint64_t tickets[3];
    zsock_set_rcvtimeo(outside, 5000);
    for (int i = 0; i < 3; i++) {
        zmsg_t *msg = zmsg_recv(outside); /* [peer][empty][envelope] */
        assert_non_null(msg);
        assert_int_equal(zmsg_size(msg), 3);
        zframe_t *id = zmsg_first(msg);
        char name[KEYS_NAME_MAX + 1];
        assert_true(keys_inproc_caller(zframe_data(id), zframe_size(id), name));
        assert_string_equal(name, "a");
        if (!peer)
            peer = zframe_dup(id);
        assert_int_equal(zframe_size(zmsg_next(msg)), 0);
        uint64_t ticket;
        int64_t n, unused;
        s_decode(zmsg_next(msg), false, &ticket, &n, &unused, NULL, 0);
        tickets[n] = ticket;
        zmsg_destroy(&msg);
    }
    for (int i = 2; i >= 0; i--) { /* out of order */
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
        msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = tickets[i]};
        envelope_reply_ok_begin(&pk, &id);
        msgpack_pack_map(&pk, 1);
        mp_pack_str(&pk, "n");
        msgpack_pack_int(&pk, i * 2);
        zmsg_t *reply = zmsg_new();
        zmsg_append(reply, &(zframe_t *){zframe_dup(peer)});
        zmsg_addmem(reply, "", 0);
        zmsg_addmem(reply, buf.data, buf.size);
        assert_int_equal(zmsg_send(&reply, outside), 0);
        msgpack_sbuffer_destroy(&buf);
    }
    int replies = 0;
    while (replies < 3) {
        zmsg_t *msg = NULL;
        msg_kind_t kind = s_next(f, 5000, &msg);
        assert_int_not_equal(kind, MSG_NONE);
        if (kind == MSG_REPLY) {
            uint64_t id;
            int64_t n, slow_n;
            s_decode(s_reply_body(msg), true, &id, &n, &slow_n, NULL, 0);
            assert_int_equal(n, (int64_t)id);
            assert_int_equal(slow_n, 2 * (int64_t)id);
            assert_int_equal(id, (uint64_t)(2 - replies)); /* in the answers' order */
            replies++;
        }
        zmsg_destroy(&msg);
    }
    zframe_destroy(&peer);
    zsock_destroy(&outside);
}

/* call_after: paused requests are held together and each ends ok. */
static void test_pauses_are_held_together(void **state)
{
    fixture_t *f = *state;
    for (int i = 0; i < 64; i++)
        s_request(f, "pause", i, 0);
    int replies = 0;
    while (replies < 64) {
        zmsg_t *msg = NULL;
        msg_kind_t kind = s_next(f, 5000, &msg);
        assert_int_not_equal(kind, MSG_NONE);
        replies += kind == MSG_REPLY;
        zmsg_destroy(&msg);
    }
}

/* Writes: one worker thread keeps serving while its writes are out, so
 * the seven that come while the first is being committed share the next
 * commit; a refused write is answered with its result and left out. */
static void test_writes_share_a_commit(void **state)
{
    fixture_t *f = *state;
    /* The first alone, until its write runs (beating meanwhile), so that
     * it cannot share its batch with the others. */
    s_request(f, "write", 0, 0);
    int64_t deadline = zclock_mono() + WRITE_WAIT_MS;
    while (!atomic_load(&f->writes.first_running) && zclock_mono() < deadline) {
        zmsg_t *msg = NULL;
        assert_int_not_equal(s_next(f, 5, &msg), MSG_REPLY);
        zmsg_destroy(&msg);
    }
    assert_true(atomic_load(&f->writes.first_running));
    for (int i = 1; i < WRITES; i++)
        s_request(f, "write", i, 0);
    bool seen[WRITES] = {false};
    int replies = 0;
    while (replies < WRITES) {
        zmsg_t *msg = NULL;
        msg_kind_t kind = s_next(f, WRITE_WAIT_MS * 2, &msg);
        assert_int_not_equal(kind, MSG_NONE);
        if (kind == MSG_REPLY) {
            msgpack_zone zone;
            msgpack_zone_init(&zone, 1024);
            envelope_reply_t r;
            const char *why;
            zframe_t *body = s_reply_body(msg);
            assert_true(
                envelope_decode_reply(zframe_data(body), zframe_size(body), &zone, &r, &why));
            assert_true(r.ok);
            int64_t n = mp_map_get(&r.data, "n")->via.i64;
            int64_t result = mp_map_get(&r.data, "result")->via.i64;
            if (n < 0 || n >= WRITES) {
                fail_msg("a reply for a write never asked: %d", (int)n);
                return;
            }
            assert_false(seen[n]);
            seen[n] = true;
            assert_int_equal(result, n == WRITE_REFUSER ? WRITE_REFUSAL : 0);
            msgpack_zone_destroy(&zone);
            replies++;
        }
        zmsg_destroy(&msg);
    }
    unsigned long writes, commits;
    kv_write_stats(f->writes.kv, &writes, &commits);
    assert_int_equal(writes, WRITES);
    assert_int_equal(commits, 2);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(f->writes.kv), NULL, MDB_RDONLY, &txn), 0);
    for (int i = 0; i < WRITES; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i);
        MDB_val k = {strlen(key), key}, v;
        assert_int_equal(mdb_get(txn, kv_dbi(f->writes.kv, 0), &k, &v),
                         i == WRITE_REFUSER ? MDB_NOTFOUND : 0);
    }
    mdb_txn_abort(txn);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_holds_many_and_answers_out_of_order, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_ask_timeout_resumes_once, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_pauses_are_held_together, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_asks_at_an_endpoint, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_writes_share_a_commit, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

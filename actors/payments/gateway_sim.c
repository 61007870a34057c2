/*  gateway_sim.c - the simulated payment gateway (kind "sim", gateway.h):
 *  an actor that behaves like a payment provider, with its own durable
 *  record of what it authorized, captured and refunded.
 *
 *  The loop. One zpoller over the actor pipe ($TERM ends it) and a ROUTER
 *  bound to config.endpoint. Its timeout is the due time of the oldest
 *  answer not yet sent, or forever when there is none: the loop sleeps
 *  until a request, a command or an answer's time comes, never spins.
 *
 *  Group commit. Each time the ROUTER is readable, every request waiting
 *  is read, up to SIM_BATCH_MAX, as [peer][empty][envelope]. The whole
 *  batch then runs in ONE write transaction (kv_write with s_apply_batch),
 *  in arrival order, each request in a nested transaction of its own so
 *  that one that fails halfway leaves nothing behind, and the transaction
 *  is committed (on disk) before any of its answers leaves. With 256
 *  charges in flight that is one disk flush per batch rather than per
 *  request. A request later in a batch sees what earlier ones wrote: two
 *  requests with one key in one batch are done once, the second a replay.
 *  If the commit fails, every answer of an operation that ran becomes
 *  gateway_error (nothing was done); answers given without running one
 *  (a malformed envelope, an unknown operation, a simulated failure)
 *  stand.
 *
 *  Latency. Every answer is due latency_ms after its request was read; as
 *  the latency is the same for all, answers fall due in the order they
 *  were made, so a FIFO (head, tail) is the whole timer queue. A slow
 *  gateway costs the actor nothing: many requests wait together.
 *
 *  Faults, drawn per request from a PRNG of the actor's own (splitmix64,
 *  seeded by config.sim.seed, or by the clock when 0): with fail_percent
 *  a request is answered gateway_error without being looked at; with
 *  drop_percent it is done and recorded, but its answer is thrown away,
 *  as a lost reply would be. Only the operations that change something
 *  (authorize, capture, void, refund) are subject to them: lookup is how
 *  a caller learns the truth after a fault, and always answers.
 *
 *  The operations themselves (the card checks, the money rules, the
 *  idempotency keys) are gateway_sim_ops.c; the record, gateway_record.h.
 *  Nothing here reads a request's arguments, so no card data passes
 *  through this file but as opaque bytes, and nothing here logs them.
 */
#include "actors/payments/gateway_impl.h"
#include "actors/payments/gateway_record.h"
#include "actors/payments/gateway_sim_ops.h"
#include "protocol/call.h"
#include "protocol/envelope.h"
#include "protocol/frames.h"
#include "storage/kv.h"

#include <limits.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#define SIM_BATCH_MAX 256
#define SIM_MAP_SIZE ((size_t)1 << 30) /* address space, not disk */
#define SIM_PATH_MAX 4096
#define SIM_LATENCY_MAX_MS 600000

/* One answer waiting for its time. */
typedef struct answer_t {
    struct answer_t *next;
    int64_t due; /* zclock_mono ms */
    zmq_msg_t peer;
    size_t len;
    char bytes[];
} answer_t;

/* One request of the batch being applied. */
typedef struct {
    zmq_msg_t peer, body;
    int64_t arrived;
    answer_t *answer;     /* NULL: none (dropped, or no memory for it) */
    bool rests_on_commit; /* its answer is true only if the batch commits */
} request_t;

typedef struct {
    char endpoint[CALL_ENDPOINT_MAX + 1];
    char path[SIM_PATH_MAX];
    int latency_ms, fail_percent, drop_percent;
    uint64_t prng;
    zsock_t *pipe;
    zsock_t *router;
    zpoller_t *poller; /* pipe first, so $TERM is seen under load */
    kv_t *kv;
    gateway_sim_ops_t *ops;
    call_t *call;      /* reads one request's args, builds its reply */
    msgpack_zone zone; /* the request being applied */
    bool zone_ready;
    msgpack_sbuffer raw; /* replies built without a call */
    request_t batch[SIM_BATCH_MAX];
    int n_batch;
    answer_t *head, *tail; /* in due order */
} sim_t;

/* ---- faults ---- */

static uint64_t s_random(sim_t *self)
{
    uint64_t z = (self->prng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* True with the given chance in percent. */
static bool s_draw(sim_t *self, int percent)
{
    if (percent <= 0)
        return false;
    if (percent >= 100)
        return true;
    return s_random(self) % 100 < (uint64_t)percent;
}

/* ---- the batch ---- */

static answer_t *s_answer_new(const void *bytes, size_t len)
{
    answer_t *answer = malloc(sizeof *answer + len);
    if (!answer) {
        zsys_error("gateway(sim): out of memory for an answer; the caller will time out");
        return NULL;
    }
    answer->next = NULL;
    answer->due = 0;
    zmq_msg_init(&answer->peer);
    answer->len = len;
    memcpy(answer->bytes, bytes, len);
    return answer;
}

static void s_answer_destroy(answer_t **answer_p)
{
    if (!*answer_p)
        return;
    zmq_msg_close(&(*answer_p)->peer);
    free(*answer_p);
    *answer_p = NULL;
}

/* Answers an envelope that did not decode, with a nil id. */
static void s_answer_malformed(sim_t *self, request_t *req, const char *why)
{
    msgpack_sbuffer_clear(&self->raw);
    size_t len;
    const char *bytes;
    if (envelope_reply_error(&self->raw, NULL, ERR_MALFORMED_BODY, why, NULL, 0) == 0) {
        bytes = self->raw.data;
        len = self->raw.size;
    } else
        bytes = envelope_reply_fixed(ENVELOPE_FIXED_OUT_OF_MEMORY, &len);
    req->answer = s_answer_new(bytes, len);
}

/* Runs one request in its own nested transaction of txn and makes its
 * answer (none when a fault drops it). */
static void s_apply_one(sim_t *self, MDB_txn *txn, request_t *req)
{
    envelope_request_t request;
    const char *why;
    msgpack_zone_clear(&self->zone);
    if (!envelope_decode_request(zmq_msg_data(&req->body), zmq_msg_size(&req->body), &self->zone,
                                 &request, &why)) {
        s_answer_malformed(self, req, why);
        return;
    }
    call_t *call = self->call;
    call_start(call, &request, NULL);
    int op = gateway_sim_op_find(request.op, request.op_len);
    bool faulty = gateway_sim_op_changes(op);
    bool drop = false;
    if (op < 0) {
        char message[ENVELOPE_MAX_OP + 48];
        snprintf(message, sizeof message, "the gateway has no operation '%.*s'",
                 (int)request.op_len, request.op);
        call_fail(call, ERR_NOT_FOUND, message);
    } else if (faulty && s_draw(self, self->fail_percent)) {
        call_fail(call, ERR_GATEWAY_ERROR, "the gateway failed (simulated); nothing was done");
    } else {
        MDB_txn *child = NULL;
        int rc = mdb_txn_begin(mdb_txn_env(txn), txn, 0, &child);
        if (rc != 0)
            gateway_sim_store_failed(call, "beginning a nested transaction", rc);
        else if (gateway_sim_ops_run(self->ops, op, child, call)) {
            rc = mdb_txn_commit(child);
            if (rc != 0)
                gateway_sim_store_failed(call, "committing a nested transaction", rc);
        } else
            mdb_txn_abort(child);
        req->rests_on_commit = true;
        drop = faulty && s_draw(self, self->drop_percent);
    }
    size_t len;
    const char *bytes = call_reply_bytes(call, &len);
    if (!drop)
        req->answer = s_answer_new(bytes, len);
}

/* kv_write's function: the whole batch in one transaction. */
static int s_apply_batch(MDB_txn *txn, void *arg)
{
    sim_t *self = arg;
    for (int i = 0; i < self->n_batch; i++)
        s_apply_one(self, txn, &self->batch[i]);
    return 0;
}

/* The batch's commit failed: nothing of it was done, so every answer
 * that said otherwise becomes gateway_error (with the request's id). */
static void s_batch_undone(sim_t *self)
{
    for (int i = 0; i < self->n_batch; i++) {
        request_t *req = &self->batch[i];
        if (!req->rests_on_commit || !req->answer)
            continue;
        s_answer_destroy(&req->answer);
        msgpack_sbuffer_clear(&self->raw);
        if (envelope_error_for(&self->raw, zmq_msg_data(&req->body), zmq_msg_size(&req->body),
                               ERR_GATEWAY_ERROR,
                               "the gateway could not keep its record; nothing was done") == 0)
            req->answer = s_answer_new(self->raw.data, self->raw.size);
    }
}

static void s_enqueue(sim_t *self, answer_t *answer)
{
    if (self->tail)
        self->tail->next = answer;
    else
        self->head = answer;
    self->tail = answer;
}

/* Reads every request waiting (up to SIM_BATCH_MAX), applies them in one
 * transaction, and queues their answers. */
static void s_on_router(sim_t *self)
{
    void *raw = zsock_resolve(self->router);
    int64_t now = zclock_mono();
    self->n_batch = 0;
    while (self->n_batch < SIM_BATCH_MAX) {
        zmq_msg_t frames[3];
        int count = frames_recv(raw, frames, 3, ZMQ_DONTWAIT);
        if (count == 0)
            break; /* none left */
        if (count < 0)
            continue; /* more frames than a request has: swallowed whole */
        if (count == 3 && zmq_msg_size(&frames[1]) == 0) {
            request_t *req = &self->batch[self->n_batch++];
            *req = (request_t){.arrived = now};
            zmq_msg_init(&req->peer);
            zmq_msg_init(&req->body);
            zmq_msg_move(&req->peer, &frames[0]);
            zmq_msg_move(&req->body, &frames[2]);
        }
        frames_close(frames, count);
    }
    if (self->n_batch == 0)
        return;

    int refused = 0;
    int rc = kv_write(self->kv, s_apply_batch, self, &refused);
    if (rc != 0)
        s_batch_undone(self);
    for (int i = 0; i < self->n_batch; i++) {
        request_t *req = &self->batch[i];
        if (req->answer) {
            zmq_msg_move(&req->answer->peer, &req->peer);
            req->answer->due = req->arrived + self->latency_ms;
            s_enqueue(self, req->answer);
            req->answer = NULL;
        }
        zmq_msg_close(&req->peer);
        zmq_msg_close(&req->body);
    }
    self->n_batch = 0;
}

/* Sends every answer whose time has come. */
static void s_send_due(sim_t *self, int64_t now)
{
    void *raw = zsock_resolve(self->router);
    while (self->head && self->head->due <= now) {
        answer_t *answer = self->head;
        self->head = answer->next;
        if (!self->head)
            self->tail = NULL;
        /* A peer that went away is dropped by the ROUTER: its caller
         * timed out or stopped, and looks up when it cares. */
        if (zmq_msg_send(&answer->peer, raw, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(raw, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0 ||
            zmq_send(raw, answer->bytes, answer->len, ZMQ_DONTWAIT) < 0)
            zsys_warning("gateway(sim): an answer could not be sent: %s",
                         zmq_strerror(zmq_errno()));
        s_answer_destroy(&answer);
    }
}

/* ---- the actor ---- */

static int s_setup(sim_t *self, const gateway_config_t *config, char *err, size_t errlen)
{
    const gateway_sim_config_t *sim = &config->sim;
    if (!config->endpoint || !config->endpoint[0] || strlen(config->endpoint) > CALL_ENDPOINT_MAX) {
        snprintf(err, errlen, "gateway(sim): an endpoint of 1 to %d bytes is needed",
                 CALL_ENDPOINT_MAX);
        return -1;
    }
    if (!config->data_dir || !config->data_dir[0]) {
        snprintf(err, errlen, "gateway(sim): no data directory given");
        return -1;
    }
    if (sim->latency_ms < 0 || sim->latency_ms > SIM_LATENCY_MAX_MS) {
        snprintf(err, errlen, "gateway(sim): latency_ms must be 0..%d", SIM_LATENCY_MAX_MS);
        return -1;
    }
    if (sim->fail_percent < 0 || sim->fail_percent > 100 || sim->drop_percent < 0 ||
        sim->drop_percent > 100) {
        snprintf(err, errlen, "gateway(sim): fail_percent and drop_percent must be 0..100");
        return -1;
    }
    snprintf(self->endpoint, sizeof self->endpoint, "%s", config->endpoint);
    int n = snprintf(self->path, sizeof self->path, "%s/gateway-sim", config->data_dir);
    if (n < 0 || (size_t)n >= sizeof self->path) {
        snprintf(err, errlen, "gateway(sim): the data directory's path is too long");
        return -1;
    }
    self->latency_ms = sim->latency_ms;
    self->fail_percent = sim->fail_percent;
    self->drop_percent = sim->drop_percent;
    self->prng = sim->seed ? sim->seed : (uint64_t)zclock_usecs() ^ ((uint64_t)getpid() << 32);
    if (sodium_init() < 0) {
        snprintf(err, errlen, "gateway(sim): libsodium cannot start");
        return -1;
    }

    /* The socket before the record: a gateway started again on a taken
     * endpoint (the same one twice) fails here, before it opens an LMDB
     * environment that the first has open, which LMDB forbids within
     * one process. */
    self->router = zsock_new(ZMQ_ROUTER);
    if (!self->router) {
        snprintf(err, errlen, "gateway(sim): cannot make a socket");
        return -1;
    }
    /* Answers are never dropped for a full queue (callers bound what
     * they have in flight), and a stop drops what is held at once. */
    zsock_set_linger(self->router, 0);
    zsock_set_sndhwm(self->router, 0);
    if (zsock_bind(self->router, "%s", self->endpoint) == -1) {
        snprintf(err, errlen, "gateway(sim): cannot bind %s: %s", self->endpoint,
                 zmq_strerror(zmq_errno()));
        return -1;
    }
    self->kv = kv_open(self->path, SIM_MAP_SIZE, gateway_db_names, NULL, GATEWAY_DBS, err, errlen);
    if (!self->kv)
        return -1;
    self->ops = gateway_sim_ops_new(self->kv);
    self->call = call_new();
    self->zone_ready = msgpack_zone_init(&self->zone, 4096);
    if (!self->ops || !self->call || !self->zone_ready) {
        snprintf(err, errlen, "gateway(sim): out of memory");
        return -1;
    }
    self->poller = zpoller_new(self->pipe, self->router, NULL);
    if (!self->poller) {
        snprintf(err, errlen, "gateway(sim): out of memory");
        return -1;
    }
    /* Only $TERM stops it, not a signal: retaild stops its parts in
     * order. */
    zpoller_set_nonstop(self->poller, true);
    return 0;
}

static void s_teardown(sim_t *self)
{
    while (self->head) {
        answer_t *answer = self->head;
        self->head = answer->next;
        s_answer_destroy(&answer);
    }
    zpoller_destroy(&self->poller);
    zsock_destroy(&self->router);
    call_destroy(&self->call);
    if (self->zone_ready)
        msgpack_zone_destroy(&self->zone);
    gateway_sim_ops_destroy(&self->ops);
    kv_close(&self->kv);
    msgpack_sbuffer_destroy(&self->raw);
}

static void s_sim_actor(zsock_t *pipe, void *args)
{
    const gateway_config_t *config = args;
    zsock_signal(pipe, 0); /* zactor_new returns; config lives until the reply below */
    char err[512] = "";
    sim_t *self = calloc(1, sizeof *self);
    int rc = -1;
    if (self) {
        self->pipe = pipe;
        msgpack_sbuffer_init(&self->raw);
        rc = s_setup(self, config, err, sizeof err);
    } else
        snprintf(err, sizeof err, "gateway(sim): out of memory");
    zsock_send(pipe, "is", rc, err);
    while (rc == 0) {
        s_send_due(self, zclock_mono());
        int timeout = -1;
        if (self->head) {
            int64_t wait = self->head->due - zclock_mono();
            timeout = wait < 0 ? 0 : wait > INT_MAX ? INT_MAX : (int)wait;
        }
        void *ready = zpoller_wait(self->poller, timeout);
        if (ready == pipe) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                break;
        } else if (ready == self->router)
            s_on_router(self);
        else if (!zpoller_expired(self->poller))
            break; /* the context is ending */
    }
    if (self) {
        s_teardown(self);
        free(self);
    }
}

zactor_t *gateway_sim_start(const gateway_config_t *config, char *err, size_t errlen)
{
    zactor_t *actor = zactor_new(s_sim_actor, (void *)config);
    if (!actor) {
        snprintf(err, errlen, "gateway(sim): cannot start its thread");
        return NULL;
    }
    int status = -1;
    char *message = NULL;
    if (zsock_recv(actor, "is", &status, &message) != 0) {
        snprintf(err, errlen, "gateway(sim): no answer from its thread");
        status = -1;
    } else if (status != 0)
        snprintf(err, errlen, "%s", message ? message : "gateway(sim): cannot start");
    zstr_free(&message);
    if (status != 0)
        zactor_destroy(&actor);
    return actor;
}

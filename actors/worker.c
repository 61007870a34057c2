/*  worker.c - the MDP worker loop shared by every service.
 *
 *  The loop polls two sockets: the actor pipe (commands, $TERM) and the
 *  DEALER to the broker. Frames are read as raw zmq_msg_t, and the reply
 *  reuses the client-address frame it received, so a request costs one
 *  envelope decode, the handler, and one encode.
 *
 *  Liveness: every message from the broker restores `liveness` to
 *  MDP_LIVENESS; every heartbeat interval without one takes one away. At
 *  zero the broker is presumed gone: close the socket (linger 0, nothing
 *  to save: the broker answers or times out our in-flight client itself),
 *  wait `backoff`, open a new one and send READY again.
 *
 *  Start and restart. The actor signals twice: once when it has copied its
 *  config (zactor_new returns), then with the outcome of its start (state
 *  made, socket connected), which worker_new turns into NULL on failure.
 *  After a good start the worker never ends on its own: when its session
 *  fails (the poll fails, a reconnect fails, or a handler says its state
 *  is broken with call_state_broken) it says DISCONNECT (so the broker
 *  answers what it held at once), logs why, counts a restart in
 *  config.restarts, drops its state, waits a doubling backoff (cut short by
 *  $TERM) and starts again with new state; a failing start is retried the
 *  same way. The backoff starts over once a session has served a request.
 *
 *  Held requests (protocol/call.h, "Waiting on another service"). Each
 *  request the broker gives the worker takes a slot: its frames (client
 *  address, body, tag), its decoded envelope and its call_t. A handler
 *  that answers frees the slot at once; one that asks keeps it waiting,
 *  and the worker sends the ask on its own client socket: a DEALER to the
 *  broker speaking MDPC01 (named after the service, so the callee sees who
 *  calls), or a DEALER per outside endpoint. The ask's envelope id is a
 *  ticket, the slot's index and a generation, so an answer finds its slot
 *  in one step, and a late answer (after the ask timed out and the slot
 *  moved on) matches nothing and is dropped. Deadlines of asks are kept as
 *  one earliest time; only when it passes are the slots scanned. The loop
 *  never blocks on an ask, so it beats while it waits; replies carry the
 *  broker's tag, so they may leave in any order.
 *
 *  Writes (call_write). A slot's write is a kv job embedded in the slot,
 *  handed to its environment's committer (kv_submit) with the worker's
 *  inbox, whose eventfd the loop polls with its sockets; a finished job
 *  names its slot (the cookie), which resumes. A write has no deadline
 *  (it always ends with its commit), so a session that ends first waits
 *  for its writes to come back before it drops the slots they point into
 *  (s_writes_drain), and never resumes them.
 *
 *  Stopping. On $TERM the worker (which has finished the handler it was
 *  in: it is single-threaded) says DISCONNECT, and the broker answers
 *  `unavailable` whatever it had given it beyond that: those requests
 *  never run, so "unavailable" stays true; so do the requests it held
 *  waiting on an ask, whose resumes then never run (a session's end drops
 *  its slots and sockets before its state). Requests are not lost this way
 *  in a whole retaild: it drains the broker before it stops its pools
 *  (router/retaild.c), so at $TERM a worker holds nothing the broker has
 *  not already answered.
 *
 *  A submitted write whose transaction failed resumes with ok false and,
 *  in the answer's result, the transaction's error (kv.h), so that the
 *  store's *_write_end can tell a full disk or map (kv_no_space) from a
 *  failure.
 */
#include "actors/worker.h"
#include "protocol/frames.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"

#include <zmq.h>

#define MAX_FRAMES 8
#define BACKOFF_MAX_MS 4000
#define RESTART_BACKOFF_MS 100 /* the first wait before a restart */
#define CALLER_MAX 64
#define SLOT_BITS 16 /* a ticket is generation << SLOT_BITS | slot index */

/* One request the worker holds. */
typedef struct {
    call_t *call;
    msgpack_zone zone; /* the decoded request */
    envelope_request_t request;
    zmq_msg_t client, body, tag;
    bool tagged;
    bool in_use;
    char caller[CALLER_MAX + 1];
    uint32_t generation;               /* moves on with every ask and release */
    bool waiting;                      /* on an ask */
    bool pausing;                      /* the ask is a pause (call_after): no answer comes */
    uint64_t ticket;                   /* of that ask */
    int64_t deadline;                  /* of that ask */
    char asked[CALL_ENDPOINT_MAX + 1]; /* whom, for the timeout message */
    bool writing;                      /* on a write (call_write): job is out */
    kv_job_t job;
} slot_t;

/* A DEALER to an outside endpoint (call_ask_at). */
typedef struct {
    char endpoint[CALL_ENDPOINT_MAX + 1];
    zsock_t *sock;
} outlet_t;

typedef struct {
    worker_config_t config;
    char service[MDP_SERVICE_MAX + 1];
    char endpoint[256];
    char server_key[KEYS_Z85_LEN + 1];
    zcert_t *cert;
    zsock_t *pipe;
    zsock_t *dealer;
    void *state;
    slot_t *slots;   /* config.capacity of them */
    int *free_slots; /* a stack of indices */
    int n_free;
    zsock_t *client; /* asks through the broker; made on the first one */
    outlet_t outlets[WORKER_ENDPOINTS_MAX];
    int n_outlets;
    int waiting;               /* slots waiting on an ask */
    kv_inbox_t *inbox;         /* where finished writes come back */
    int writing;               /* slots whose write is out */
    int64_t next_ask_deadline; /* the earliest, or INT64_MAX */
    msgpack_zone answer_zone;
    msgpack_sbuffer scratch;
    int liveness;
    int backoff_ms;
    int64_t heartbeat_at;
    bool served;       /* this session answered a request */
    bool state_broken; /* a handler said call_state_broken */
} worker_t;

static void s_send_command(worker_t *self, uint8_t command, const char *arg, bool more_follows)
{
    void *sock = zsock_resolve(self->dealer);
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, MDP_WORKER, 6, ZMQ_SNDMORE);
    zmq_send(sock, &command, 1, (arg || more_follows) ? ZMQ_SNDMORE : 0);
    if (arg)
        zmq_send(sock, arg, strlen(arg), more_follows ? ZMQ_SNDMORE : 0);
}

/* A DEALER that never drops or blocks on its queues (a worker's sockets
 * carry only what its capacity allows) and closes at once. */
static zsock_t *s_dealer_new(void)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    if (sock) {
        zsock_set_linger(sock, 0);
        zsock_set_rcvhwm(sock, 0);
        zsock_set_sndhwm(sock, 0);
    }
    return sock;
}

static int s_connect(worker_t *self)
{
    zsock_destroy(&self->dealer);
    self->dealer = s_dealer_new();
    if (!self->dealer)
        return -1;
    if (self->cert)
        keys_apply_client(self->dealer, self->cert, self->server_key);
    if (zsock_connect(self->dealer, "%s", self->endpoint) != 0) {
        zsys_error("worker %s: cannot connect to %s", self->service, self->endpoint);
        return -1;
    }
    /* READY [service] [capacity]: with a credit above 1 the broker sends
     * the next request while this one runs (or waits), saving a round
     * trip. */
    char capacity[8];
    snprintf(capacity, sizeof capacity, "%d", self->config.capacity);
    s_send_command(self, MDP_READY, self->service, true);
    zmq_send(zsock_resolve(self->dealer), capacity, strlen(capacity), 0);
    self->liveness = MDP_LIVENESS;
    self->heartbeat_at = zclock_mono() + self->config.heartbeat_ms;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Slots                                                               */

static int s_slots_new(worker_t *self)
{
    int n = self->config.capacity;
    self->slots = calloc((size_t)n, sizeof *self->slots);
    self->free_slots = calloc((size_t)n, sizeof *self->free_slots);
    if (!self->slots || !self->free_slots)
        return -1;
    for (int i = 0; i < n; i++) {
        slot_t *slot = &self->slots[i];
        msgpack_zone_init(&slot->zone, 4096);
        zmq_msg_init(&slot->client);
        zmq_msg_init(&slot->body);
        zmq_msg_init(&slot->tag);
        slot->call = call_new();
        if (!slot->call)
            return -1;
        self->free_slots[n - 1 - i] = i; /* slot 0 on top: the hot one */
    }
    self->n_free = n;
    self->next_ask_deadline = INT64_MAX;
    return 0;
}

static void s_slots_destroy(worker_t *self)
{
    for (int i = 0; self->slots && i < self->config.capacity; i++) {
        slot_t *slot = &self->slots[i];
        call_destroy(&slot->call);
        msgpack_zone_destroy(&slot->zone);
        zmq_msg_close(&slot->client);
        zmq_msg_close(&slot->body);
        zmq_msg_close(&slot->tag);
    }
    free(self->slots);
    free(self->free_slots);
    self->slots = NULL;
    self->free_slots = NULL;
}

/* Gives a slot back; a late answer to its last ask will match nothing. */
static void s_slot_release(worker_t *self, slot_t *slot)
{
    assert(!slot->writing); /* its job still belongs to the environment */
    if (slot->waiting)
        self->waiting--;
    slot->waiting = false;
    slot->in_use = false;
    slot->generation++;
    zmq_msg_close(&slot->client);
    zmq_msg_close(&slot->body);
    zmq_msg_close(&slot->tag);
    zmq_msg_init(&slot->client);
    zmq_msg_init(&slot->body);
    zmq_msg_init(&slot->tag);
    self->free_slots[self->n_free++] = (int)(slot - self->slots);
}

/* Drops every held request without answering (the session is ending: the
 * broker answers them once it learns the worker is gone). */
static void s_slots_drop_all(worker_t *self)
{
    for (int i = 0; self->slots && i < self->config.capacity; i++) {
        if (self->slots[i].in_use)
            s_slot_release(self, &self->slots[i]);
    }
    self->waiting = 0;
    self->next_ask_deadline = INT64_MAX;
}

/* ------------------------------------------------------------------ */
/* Answering                                                           */

/* [empty][MDPW01][REPLY][client][empty][body][tag] */
static void s_send_reply(worker_t *self, slot_t *slot, const char *reply, size_t len)
{
    void *sock = zsock_resolve(self->dealer);
    uint8_t command = MDP_REPLY;
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, MDP_WORKER, 6, ZMQ_SNDMORE);
    zmq_send(sock, &command, 1, ZMQ_SNDMORE);
    zmq_msg_send(&slot->client, sock, ZMQ_SNDMORE); /* moved; init again on release */
    zmq_send(sock, "", 0, slot->tagged ? ZMQ_SNDMORE : 0);
    if (!slot->tagged)
        zmq_send(sock, reply, len, 0);
    else {
        zmq_send(sock, reply, len, ZMQ_SNDMORE);
        zmq_msg_send(&slot->tag, sock, 0);
    }
    self->served = true;
}

/* The broker client, made on the first ask: a DEALER speaking MDPC01 as
 * this service (its routing id in process, its certificate over TCP). */
static zsock_t *s_client(worker_t *self)
{
    if (self->client)
        return self->client;
    zsock_t *sock = s_dealer_new();
    if (!sock)
        return NULL;
    int rc = 0;
    if (self->cert)
        keys_apply_client(sock, self->cert, self->server_key);
    else
        rc = keys_name_inproc(sock, self->service);
    if (rc != 0 || zsock_connect(sock, "%s", self->endpoint) != 0) {
        zsys_error("worker %s: cannot connect its client to %s", self->service, self->endpoint);
        zsock_destroy(&sock);
        return NULL;
    }
    self->client = sock;
    return sock;
}

/* The DEALER for an endpoint, made on its first ask; NULL when it cannot
 * be made or there are WORKER_ENDPOINTS_MAX already. */
static zsock_t *s_outlet(worker_t *self, const char *endpoint)
{
    for (int i = 0; i < self->n_outlets; i++)
        if (streq(self->outlets[i].endpoint, endpoint))
            return self->outlets[i].sock;
    if (self->n_outlets == WORKER_ENDPOINTS_MAX)
        return NULL;
    zsock_t *sock = s_dealer_new();
    if (!sock)
        return NULL;
    if (keys_name_inproc(sock, self->service) != 0 || zsock_connect(sock, "%s", endpoint) != 0) {
        zsock_destroy(&sock);
        return NULL;
    }
    outlet_t *outlet = &self->outlets[self->n_outlets++];
    snprintf(outlet->endpoint, sizeof outlet->endpoint, "%s", endpoint);
    outlet->sock = sock;
    return sock;
}

/* Makes the slot wait until ms from now. */
static void s_slot_wait(worker_t *self, slot_t *slot, int ms)
{
    slot->deadline = zclock_mono() + ms;
    if (!slot->waiting)
        self->waiting++;
    slot->waiting = true;
    if (slot->deadline < self->next_ask_deadline)
        self->next_ask_deadline = slot->deadline;
}

/* Sends the slot's pending ask (or starts its pause); 0, or -1 with why
 * set. */
static int s_ask_send(worker_t *self, slot_t *slot, const call_ask_t *ask, const char **why)
{
    if (ask->kv) {
        if (!self->inbox)
            self->inbox = kv_inbox_new();
        if (!self->inbox) {
            *why = "no inbox for its writes could be made";
            return -1;
        }
        slot->job = (kv_job_t){.fn = ask->write_fn, .arg = ask->write_arg, .cookie = slot};
        slot->writing = true;
        self->writing++;
        kv_submit(ask->kv, &slot->job, self->inbox);
        return 0;
    }
    if (!ask->service && !ask->endpoint) {
        slot->generation++;
        slot->ticket = 0; /* matches no answer */
        slot->pausing = true;
        s_slot_wait(self, slot, ask->timeout_ms);
        return 0;
    }
    if (ask->args_failed) {
        *why = "its arguments could not be packed";
        return -1;
    }
    slot->pausing = false;
    zsock_t *sock = ask->service ? s_client(self) : s_outlet(self, ask->endpoint);
    if (!sock) {
        *why = ask->service ? "the broker cannot be reached" : "the endpoint cannot be reached";
        return -1;
    }
    slot->generation++;
    uint64_t index = (uint64_t)(slot - self->slots);
    uint64_t ticket = ((uint64_t)slot->generation << SLOT_BITS) | index;
    msgpack_sbuffer_clear(&self->scratch);
    if (envelope_pack_request(&self->scratch, ticket, ask->op, NULL, ask->args, ask->args_len) !=
        0) {
        *why = "out of memory";
        return -1;
    }
    void *raw = zsock_resolve(sock);
    int rc = zmq_send(raw, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT);
    if (rc >= 0 && ask->service) {
        zmq_send(raw, MDP_CLIENT, 6, ZMQ_SNDMORE);
        zmq_send(raw, ask->service, strlen(ask->service), ZMQ_SNDMORE);
    }
    if (rc >= 0)
        rc = zmq_send(raw, self->scratch.data, self->scratch.size, 0);
    if (rc < 0) {
        *why = "the request could not be queued";
        return -1;
    }
    slot->ticket = ticket;
    snprintf(slot->asked, sizeof slot->asked, "%s", ask->service ? ask->service : ask->endpoint);
    s_slot_wait(self, slot, ask->timeout_ms);
    return 0;
}

/* After a handler or a resume returned: sends its ask, or its answer.
 * An ask that cannot be sent resumes at once, so this loops until the
 * call waits or is answered. */
static void s_after_step(worker_t *self, slot_t *slot)
{
    call_ask_t ask;
    while (call_asking(slot->call, &ask)) {
        const char *why = "";
        if (s_ask_send(self, slot, &ask, &why) == 0)
            return;
        if (slot->waiting)
            self->waiting--;
        slot->waiting = false;
        char message[CALL_ENDPOINT_MAX + 96];
        snprintf(message, sizeof message, "%s: %s",
                 ask.kv        ? "the store"
                 : ask.service ? ask.service
                               : ask.endpoint,
                 why);
        call_answer_t answer = {.code = ERR_UNAVAILABLE, .message = message};
        call_resume(slot->call, self->state, &answer);
        self->state_broken = self->state_broken || call_is_state_broken(slot->call);
    }
    size_t len;
    const char *reply = call_reply_bytes(slot->call, &len);
    s_send_reply(self, slot, reply, len);
    s_slot_release(self, slot);
}

/* Finds the handler for op; NULL if the service has no such op. */
static worker_handler_fn *s_lookup(worker_t *self, const char *op, size_t len)
{
    for (const worker_op_t *o = self->config.ops; o->op; o++)
        if (strlen(o->op) == len && memcmp(o->op, op, len) == 0)
            return o->handler;
    return NULL;
}

/* [empty][MDPW01][REQUEST][client][empty][body][caller][tag] ([tag]
 * absent from an older broker). */
static void s_on_request(worker_t *self, zmq_msg_t *frames, int count)
{
    if ((count != 7 && count != 8) || zmq_msg_size(&frames[4]) != 0)
        return;
    if (self->n_free == 0) {
        /* The broker gave more than the credit: a broker fault. Say so
         * rather than hold it without a slot. */
        zsys_error("worker %s: a request beyond its capacity of %d", self->service,
                   self->config.capacity);
        return;
    }
    slot_t *slot = &self->slots[self->free_slots[--self->n_free]];
    slot->in_use = true;
    size_t n = zmq_msg_size(&frames[6]) < CALLER_MAX ? zmq_msg_size(&frames[6]) : CALLER_MAX;
    memcpy(slot->caller, zmq_msg_data(&frames[6]), n);
    slot->caller[n] = '\0';
    zmq_msg_move(&slot->client, &frames[3]);
    zmq_msg_move(&slot->body, &frames[5]);
    slot->tagged = count == 8;
    if (slot->tagged)
        zmq_msg_move(&slot->tag, &frames[7]);

    const char *why;
    msgpack_zone_clear(&slot->zone);
    if (!envelope_decode_request(zmq_msg_data(&slot->body), zmq_msg_size(&slot->body), &slot->zone,
                                 &slot->request, &why)) {
        msgpack_sbuffer_clear(&self->scratch);
        size_t len;
        const char *reply;
        if (envelope_reply_error(&self->scratch, NULL, ERR_MALFORMED_BODY, why, NULL, 0) != 0)
            reply = envelope_reply_fixed(ENVELOPE_FIXED_OUT_OF_MEMORY, &len);
        else {
            reply = self->scratch.data;
            len = self->scratch.size;
        }
        s_send_reply(self, slot, reply, len);
        s_slot_release(self, slot);
        return;
    }
    call_start(slot->call, &slot->request, slot->caller);
    worker_handler_fn *handler = s_lookup(self, slot->request.op, slot->request.op_len);
    if (handler) {
        handler(slot->call, self->state);
        self->state_broken = self->state_broken || call_is_state_broken(slot->call);
    } else {
        char message[160];
        snprintf(message, sizeof message, "the %s service has no operation '%.*s'", self->service,
                 (int)slot->request.op_len, slot->request.op);
        call_fail(slot->call, ERR_NOT_FOUND, message);
    }
    s_after_step(self, slot);
}

/* Resumes the slot an answer is for: an envelope whose id is a ticket of
 * a waiting slot. Anything else (a late answer, a stranger's) is dropped. */
static void s_on_answer(worker_t *self, const void *body, size_t len)
{
    envelope_reply_t reply;
    const char *why;
    msgpack_zone_clear(&self->answer_zone);
    if (!envelope_decode_reply(body, len, &self->answer_zone, &reply, &why) ||
        reply.id.type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return;
    uint64_t ticket = reply.id.via.u64;
    uint64_t index = ticket & ((1u << SLOT_BITS) - 1);
    if (index >= (uint64_t)self->config.capacity)
        return;
    slot_t *slot = &self->slots[index];
    if (!slot->waiting || slot->pausing || slot->ticket != ticket)
        return;
    slot->waiting = false;
    self->waiting--;
    call_answer_t answer = {.ok = reply.ok, .code = reply.ok ? ERR_NONE : reply.code};
    char message[256] = "";
    if (reply.ok)
        answer.data = &reply.data;
    else {
        answer.error = &reply.error;
        const msgpack_object *m = mp_map_get(&reply.error, "message");
        if (m && m->type == MSGPACK_OBJECT_STR)
            call_copy_text(message, sizeof message, m->via.str.ptr, m->via.str.size);
        answer.message = message;
    }
    call_resume(slot->call, self->state, &answer);
    self->state_broken = self->state_broken || call_is_state_broken(slot->call);
    s_after_step(self, slot);
}

/* Reads one message from the broker client: [empty][MDPC01][service][body]. */
static void s_on_client(worker_t *self)
{
    zmq_msg_t frames[MAX_FRAMES];
    int count = frames_recv(zsock_resolve(self->client), frames, MAX_FRAMES, 0);
    if (count == 4 && zmq_msg_size(&frames[0]) == 0 && frames_is(&frames[1], MDP_CLIENT))
        s_on_answer(self, zmq_msg_data(&frames[3]), zmq_msg_size(&frames[3]));
    if (count > 0)
        frames_close(frames, count);
}

/* Reads one message from an endpoint: [empty][body]. */
static void s_on_outlet(worker_t *self, outlet_t *outlet)
{
    zmq_msg_t frames[MAX_FRAMES];
    int count = frames_recv(zsock_resolve(outlet->sock), frames, MAX_FRAMES, 0);
    if (count == 2 && zmq_msg_size(&frames[0]) == 0)
        s_on_answer(self, zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]));
    if (count > 0)
        frames_close(frames, count);
}

/* Resumes the slots whose writes have committed (or failed). */
static void s_on_inbox(worker_t *self)
{
    kv_job_t *jobs = kv_inbox_take(self->inbox);
    while (jobs) {
        kv_job_t *job = jobs;
        jobs = job->next;
        slot_t *slot = job->cookie;
        slot->writing = false;
        self->writing--;
        char message[160] = "";
        /* Not committed: result is why (kv.h), so the store can tell a
         * full disk (kv_no_space) from a failure. */
        call_answer_t answer = {.ok = job->rc == 0, .result = job->rc == 0 ? job->result : job->rc};
        if (job->rc != 0) {
            snprintf(message, sizeof message, "the store could not write: %s",
                     mdb_strerror(job->rc));
            answer.code = ERR_UNAVAILABLE;
            answer.message = message;
        }
        call_resume(slot->call, self->state, &answer);
        self->state_broken = self->state_broken || call_is_state_broken(slot->call);
        s_after_step(self, slot);
    }
}

/* Waits for every write still out (a session ends: its slots and state
 * go, and a write's arguments live there); they are not resumed. A write
 * always ends with its commit, so this is short. */
static void s_writes_drain(worker_t *self)
{
    while (self->writing > 0) {
        zmq_pollitem_t item = {NULL, kv_inbox_fd(self->inbox), ZMQ_POLLIN, 0};
        if (zmq_poll(&item, 1, 1000) < 0 && zmq_errno() != EINTR)
            break;
        for (kv_job_t *job = kv_inbox_take(self->inbox); job; job = job->next) {
            ((slot_t *)job->cookie)->writing = false;
            self->writing--;
        }
    }
}

/* Resumes every ask whose deadline has passed with ERR_TIMEOUT. */
static void s_check_asks(worker_t *self, int64_t now)
{
    if (now < self->next_ask_deadline)
        return;
    self->next_ask_deadline = INT64_MAX;
    for (int i = 0; i < self->config.capacity && self->waiting > 0; i++) {
        slot_t *slot = &self->slots[i];
        if (!slot->waiting)
            continue;
        if (slot->deadline > now) {
            if (slot->deadline < self->next_ask_deadline)
                self->next_ask_deadline = slot->deadline;
            continue;
        }
        slot->waiting = false;
        self->waiting--;
        char message[CALL_ENDPOINT_MAX + 64];
        snprintf(message, sizeof message, "%s did not answer in time", slot->asked);
        call_answer_t answer = {.code = ERR_TIMEOUT, .message = message};
        if (slot->pausing)
            answer = (call_answer_t){.ok = true, .code = ERR_NONE};
        call_resume(slot->call, self->state, &answer);
        self->state_broken = self->state_broken || call_is_state_broken(slot->call);
        s_after_step(self, slot);
        /* a new ask of that slot may be due earlier than the rest */
        if (slot->waiting && slot->deadline < self->next_ask_deadline)
            self->next_ask_deadline = slot->deadline;
    }
}

/* Reads and acts on one message from the broker. Returns false when the
 * broker asked us to reconnect. */
static bool s_on_broker(worker_t *self)
{
    zmq_msg_t frames[MAX_FRAMES];
    int count = frames_recv(zsock_resolve(self->dealer), frames, MAX_FRAMES, 0);
    bool keep = true;
    self->liveness = MDP_LIVENESS;
    self->backoff_ms = self->config.heartbeat_ms;
    if (count >= 3 && zmq_msg_size(&frames[0]) == 0 && zmq_msg_size(&frames[1]) == 6 &&
        memcmp(zmq_msg_data(&frames[1]), MDP_WORKER, 6) == 0 && zmq_msg_size(&frames[2]) == 1) {
        uint8_t command = *(uint8_t *)zmq_msg_data(&frames[2]);
        if (command == MDP_REQUEST)
            s_on_request(self, frames, count);
        else if (command == MDP_DISCONNECT)
            keep = false;
    }
    if (count > 0)
        frames_close(frames, count);
    return keep;
}

/* Waits ms on the pipe alone; true if $TERM came meanwhile. */
static bool s_sleep(worker_t *self, int ms)
{
    zpoller_t *poller = zpoller_new(self->pipe, NULL);
    bool term = false;
    if (zpoller_wait(poller, ms)) {
        char *command = zstr_recv(self->pipe);
        term = !command || streq(command, "$TERM");
        zstr_free(&command);
    }
    zpoller_destroy(&poller);
    return term || zsys_interrupted;
}

/* The next wait of a doubling backoff. */
static int s_doubled(int ms)
{
    return ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : ms * 2;
}

/* Makes the session's state and connection; 0, or -1 (logged). */
static int s_session_start(worker_t *self)
{
    self->state_broken = false;
    self->served = false;
    if (self->config.state_new) {
        self->state = self->config.state_new(self->config.shared);
        if (!self->state) {
            zsys_error("worker %s: its state could not be made", self->service);
            return -1;
        }
    }
    self->backoff_ms = self->config.heartbeat_ms;
    return s_connect(self);
}

/* Drops the held requests and the sockets that asks went out on, once
 * their writes are back. */
static void s_asks_end(worker_t *self)
{
    s_writes_drain(self);
    s_slots_drop_all(self);
    zsock_destroy(&self->client);
    for (int i = 0; i < self->n_outlets; i++)
        zsock_destroy(&self->outlets[i].sock);
    self->n_outlets = 0;
}

/* Says DISCONNECT (when connected) and drops the sockets, the held
 * requests and the state (in that order: no resume runs after). */
static void s_session_end(worker_t *self)
{
    s_asks_end(self);
    if (self->dealer) {
        s_send_command(self, MDP_DISCONNECT, NULL, false);
        /* Let DISCONNECT leave before the socket closes. */
        zsock_set_linger(self->dealer, 200);
        zsock_destroy(&self->dealer);
    }
    if (self->config.state_destroy && self->state)
        self->config.state_destroy(&self->state);
    self->state = NULL;
}

typedef enum { SESSION_TERM, SESSION_FAILED } session_end_t;

/* Serves until $TERM or a failure; *why names the failure. */
static session_end_t s_serve(worker_t *self, const char **why)
{
    while (true) {
        zmq_pollitem_t items[4 + WORKER_ENDPOINTS_MAX] = {
            {zsock_resolve(self->pipe), 0, ZMQ_POLLIN, 0},
            {zsock_resolve(self->dealer), 0, ZMQ_POLLIN, 0}};
        int n_items = 2;
        if (self->client)
            items[n_items++] = (zmq_pollitem_t){zsock_resolve(self->client), 0, ZMQ_POLLIN, 0};
        int first_outlet = n_items;
        for (int i = 0; i < self->n_outlets; i++)
            items[n_items++] =
                (zmq_pollitem_t){zsock_resolve(self->outlets[i].sock), 0, ZMQ_POLLIN, 0};
        int inbox_item = n_items;
        if (self->inbox)
            items[n_items++] = (zmq_pollitem_t){NULL, kv_inbox_fd(self->inbox), ZMQ_POLLIN, 0};
        int64_t wake = self->heartbeat_at < self->next_ask_deadline ? self->heartbeat_at
                                                                    : self->next_ask_deadline;
        int64_t wait = wake - zclock_mono();
        if (zmq_poll(items, n_items, wait > 0 ? (long)wait : 0) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            *why = zmq_strerror(zmq_errno());
            return SESSION_FAILED;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(self->pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                return SESSION_TERM;
        }
        bool reconnect = false;
        if (items[1].revents & ZMQ_POLLIN)
            reconnect = !s_on_broker(self);
        /* Answers are read before the broker's next message, and one at
         * a time per socket, so no source starves the others. */
        if (self->client && (items[2].revents & ZMQ_POLLIN))
            s_on_client(self);
        for (int i = 0; i < self->n_outlets; i++)
            if (items[first_outlet + i].revents & ZMQ_POLLIN)
                s_on_outlet(self, &self->outlets[i]);
        if (self->inbox && (items[inbox_item].revents & ZMQ_POLLIN))
            s_on_inbox(self);
        s_check_asks(self, zclock_mono());
        if (self->state_broken) {
            *why = "a handler found its state broken";
            return SESSION_FAILED;
        }
        int64_t now = zclock_mono();
        if (now >= self->heartbeat_at) {
            if (--self->liveness <= 0)
                reconnect = true;
            else {
                s_send_command(self, MDP_HEARTBEAT, NULL, false);
                self->heartbeat_at = now + self->config.heartbeat_ms;
            }
        }
        if (reconnect) {
            if (self->config.verbose)
                zsys_info("worker %s: broker lost, reconnecting in %d ms", self->service,
                          self->backoff_ms);
            /* The broker answers what we held (or is gone with it). */
            s_asks_end(self);
            zsock_destroy(&self->dealer);
            if (s_sleep(self, self->backoff_ms))
                return SESSION_TERM;
            self->backoff_ms = s_doubled(self->backoff_ms);
            if (s_connect(self) != 0) {
                *why = "it could not reconnect";
                return SESSION_FAILED;
            }
        }
    }
}

static void s_worker_actor(zsock_t *pipe, void *args)
{
    worker_t self_storage = {.config = *(worker_config_t *)args, .pipe = pipe};
    worker_t *self = &self_storage;
    snprintf(self->service, sizeof self->service, "%s", self->config.service);
    snprintf(self->endpoint, sizeof self->endpoint, "%s", self->config.endpoint);
    if (self->config.cert) {
        self->cert = zcert_dup(self->config.cert);
        snprintf(self->server_key, sizeof self->server_key, "%s", self->config.server_key);
    }
    zsock_signal(pipe, 0); /* zactor_new returns: the config is copied */

    msgpack_zone_init(&self->answer_zone, 4096);
    msgpack_sbuffer_init(&self->scratch);
    bool started =
        s_slots_new(self) == 0 && (!self->config.cert || self->cert) && s_session_start(self) == 0;
    zsock_signal(pipe, started ? 0 : 1); /* worker_new learns the outcome */

    int restart_backoff = RESTART_BACKOFF_MS;
    while (started) {
        const char *why = "";
        if (s_serve(self, &why) == SESSION_TERM)
            break;
        if (self->served)
            restart_backoff = RESTART_BACKOFF_MS;
        if (self->config.restarts)
            atomic_fetch_add(self->config.restarts, 1);
        zsys_error("worker %s: stopped unexpectedly (%s); restarting in %d ms", self->service, why,
                   restart_backoff);
        s_session_end(self);
        bool term = s_sleep(self, restart_backoff);
        while (!term && s_session_start(self) != 0) {
            s_session_end(self);
            restart_backoff = s_doubled(restart_backoff);
            zsys_error("worker %s: restart failed; next try in %d ms", self->service,
                       restart_backoff);
            term = s_sleep(self, restart_backoff);
        }
        if (term)
            break;
        restart_backoff = s_doubled(restart_backoff);
    }
    s_session_end(self);
    s_slots_destroy(self);
    kv_inbox_destroy(&self->inbox);
    msgpack_sbuffer_destroy(&self->scratch);
    msgpack_zone_destroy(&self->answer_zone);
    zcert_destroy(&self->cert);
}

zactor_t *worker_new(const worker_config_t *config)
{
    worker_config_t c = *config;
    if (c.heartbeat_ms <= 0)
        c.heartbeat_ms = MDP_HEARTBEAT_MS_DEFAULT;
    if (c.capacity <= 0 || c.capacity > MDP_CAPACITY_MAX)
        c.capacity = 1;
    /* The actor copies c before its first signal, so a stack copy is safe. */
    zactor_t *actor = zactor_new(s_worker_actor, &c);
    if (actor && zsock_wait(actor) != 0)
        zactor_destroy(&actor); /* the actor has ended: this only joins it */
    return actor;
}

void worker_destroy(zactor_t **self_p)
{
    zactor_destroy(self_p);
}

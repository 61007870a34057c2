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
 *  Stopping. On $TERM the worker (which has finished the handler it was
 *  in: it is single-threaded) says DISCONNECT, and the broker answers
 *  `unavailable` whatever it had given it beyond that: those requests
 *  never run, so "unavailable" stays true. Requests are not lost this way
 *  in a whole retaild: it drains the broker before it stops its pools
 *  (router/retaild.c), so at $TERM a worker holds nothing the broker has
 *  not already answered.
 */
#include "actors/worker.h"
#include "protocol/frames.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"

#include <zmq.h>

#define MAX_FRAMES 8
#define BACKOFF_MAX_MS 4000
#define RESTART_BACKOFF_MS 100 /* the first wait before a restart */

typedef struct {
    worker_config_t config;
    char service[MDP_SERVICE_MAX + 1];
    char endpoint[256];
    char server_key[KEYS_Z85_LEN + 1];
    zcert_t *cert;
    zsock_t *pipe;
    zsock_t *dealer;
    void *state;
    call_t *call;
    msgpack_zone zone;
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

static int s_connect(worker_t *self)
{
    zsock_destroy(&self->dealer);
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer)
        return -1;
    zsock_set_linger(self->dealer, 0);
    zsock_set_rcvhwm(self->dealer, 0);
    zsock_set_sndhwm(self->dealer, 0);
    if (self->cert)
        keys_apply_client(self->dealer, self->cert, self->server_key);
    if (zsock_connect(self->dealer, "%s", self->endpoint) != 0) {
        zsys_error("worker %s: cannot connect to %s", self->service, self->endpoint);
        return -1;
    }
    /* READY [service] [capacity]: with a credit above 1 the broker sends
     * the next request while this one runs, saving a round trip. */
    char capacity[8];
    snprintf(capacity, sizeof capacity, "%d", self->config.capacity);
    s_send_command(self, MDP_READY, self->service, true);
    zmq_send(zsock_resolve(self->dealer), capacity, strlen(capacity), 0);
    self->liveness = MDP_LIVENESS;
    self->heartbeat_at = zclock_mono() + self->config.heartbeat_ms;
    return 0;
}

/* Finds the handler for op; NULL if the service has no such op. */
static worker_handler_fn *s_lookup(worker_t *self, const char *op, size_t len)
{
    for (const worker_op_t *o = self->config.ops; o->op; o++)
        if (strlen(o->op) == len && memcmp(o->op, op, len) == 0)
            return o->handler;
    return NULL;
}

/* Runs one request and returns the reply bytes (owned by self). */
static const char *s_handle(worker_t *self, zmq_msg_t *body, const char *caller, size_t *len)
{
    envelope_request_t request;
    const char *why;
    msgpack_zone_clear(&self->zone);
    if (!envelope_decode_request(zmq_msg_data(body), zmq_msg_size(body), &self->zone, &request,
                                 &why)) {
        msgpack_sbuffer_clear(&self->scratch);
        if (envelope_reply_error(&self->scratch, NULL, ERR_MALFORMED_BODY, why, NULL, 0) != 0)
            return envelope_reply_fixed(ENVELOPE_FIXED_OUT_OF_MEMORY, len);
        *len = self->scratch.size;
        return self->scratch.data;
    }
    call_start(self->call, &request, caller);
    worker_handler_fn *handler = s_lookup(self, request.op, request.op_len);
    if (handler) {
        handler(self->call, self->state);
        self->state_broken = self->state_broken || call_is_state_broken(self->call);
    } else {
        char message[160];
        snprintf(message, sizeof message, "the %s service has no operation '%.*s'", self->service,
                 (int)request.op_len, request.op);
        call_fail(self->call, ERR_NOT_FOUND, message);
    }
    return call_reply_bytes(self->call, len);
}

/* [empty][MDPW01][REQUEST][client][empty][body][caller] */
static void s_on_request(worker_t *self, zmq_msg_t *frames, int count)
{
    if (count != 7 || zmq_msg_size(&frames[4]) != 0)
        return;
    char caller[65];
    size_t n = zmq_msg_size(&frames[6]) < 64 ? zmq_msg_size(&frames[6]) : 64;
    memcpy(caller, zmq_msg_data(&frames[6]), n);
    caller[n] = '\0';

    size_t len;
    const char *reply = s_handle(self, &frames[5], caller, &len);

    void *sock = zsock_resolve(self->dealer);
    uint8_t command = MDP_REPLY;
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, MDP_WORKER, 6, ZMQ_SNDMORE);
    zmq_send(sock, &command, 1, ZMQ_SNDMORE);
    zmq_msg_send(&frames[3], sock, ZMQ_SNDMORE); /* the client address, moved */
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, reply, len, 0);
    self->served = true;
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

/* Says DISCONNECT (when connected) and drops the socket and the state. */
static void s_session_end(worker_t *self)
{
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
        zmq_pollitem_t items[] = {{zsock_resolve(self->pipe), 0, ZMQ_POLLIN, 0},
                                  {zsock_resolve(self->dealer), 0, ZMQ_POLLIN, 0}};
        int64_t wait = self->heartbeat_at - zclock_mono();
        if (zmq_poll(items, 2, wait > 0 ? (long)wait : 0) < 0) {
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

    msgpack_zone_init(&self->zone, 4096);
    msgpack_sbuffer_init(&self->scratch);
    self->call = call_new();
    bool started = self->call && (!self->config.cert || self->cert) && s_session_start(self) == 0;
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
    call_destroy(&self->call);
    msgpack_sbuffer_destroy(&self->scratch);
    msgpack_zone_destroy(&self->zone);
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

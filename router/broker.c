/*  broker.c - the 7/MDP broker's actor: its ROUTER socket, CURVE, timers.
 *
 *  The broker's logic (registry, dispatch, queues, deadlines, heartbeats)
 *  is router/broker_core.c, which never touches a socket; this file gives
 *  it one. One thread owns one ROUTER socket, bound to an inproc endpoint
 *  and optionally to a TCP endpoint with CURVE (zauth checks callers'
 *  certificates against keys_dir/clients). The loop reads messages as raw
 *  frames, up to BATCH_MAX between two looks at the clock, hands each to
 *  the core, and ticks the core every quarter heartbeat (at most 50 ms)
 *  for deadlines and heartbeats.
 *
 *  Draining (broker_drain, at shutdown). The broker keeps serving as usual
 *  (services call each other while their own callers wait) and reports
 *  back as soon as nothing is queued or held by a worker; at the deadline
 *  whatever is left is answered unavailable, and late replies are dropped.
 */
#include "router/broker.h"
#include "protocol/frames.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "router/broker_core.h"

#include <zmq.h>

#define MAX_FRAMES 8
#define BATCH_MAX 256 /* messages handled between two timer checks */

typedef struct {
    broker_config_t config;
    char inproc_endpoint[256], tcp_endpoint[256], keys_dir[1024]; /* config's strings */
    zsock_t *pipe;
    void *router; /* raw libzmq socket of the zsock */
    zsock_t *router_sock;
    zactor_t *auth;
    broker_core_t *core;
    bool draining; /* a DRAIN command waits for an answer */
    int64_t drain_deadline;
    bool terminated;
} broker_t;

/* The core's wire: the ROUTER socket. */
static int s_wire_send(void *ctx, const void *data, size_t len, int flags)
{
    return zmq_send(ctx, data, len, flags);
}

static int s_wire_send_msg(void *ctx, zmq_msg_t *msg, int flags)
{
    return zmq_msg_send(msg, ctx, flags);
}

static void s_handle_router(broker_t *self)
{
    zmq_msg_t frames[MAX_FRAMES];
    int64_t now = zclock_mono();
    for (int batch = 0; batch < BATCH_MAX; batch++) {
        int count = frames_recv(self->router, frames, MAX_FRAMES, ZMQ_DONTWAIT);
        if (count == 0)
            return;
        if (count < 0)
            continue;
        broker_core_message(self->core, frames, count, now);
        frames_close(frames, count);
    }
}

/* While draining: reports to the pipe once nothing is pending, or at the
 * drain deadline after answering what is left unavailable. */
static void s_drain_check(broker_t *self, int64_t now)
{
    size_t left = broker_core_pending(self->core);
    if (left > 0 && now < self->drain_deadline)
        return;
    if (left > 0) {
        broker_core_abandon(self->core, "the broker is stopping");
        zsys_warning("broker: drain deadline passed; %zu requests answered unavailable", left);
    }
    self->draining = false;
    zsock_send(self->pipe, "i", (int)left);
}

static int s_setup(broker_t *self)
{
    const broker_config_t *c = &self->config;
    self->router_sock = zsock_new(ZMQ_ROUTER);
    if (!self->router_sock)
        return -1;
    self->router = zsock_resolve(self->router_sock);
    zsock_set_rcvhwm(self->router_sock, 100000);
    zsock_set_sndhwm(self->router_sock, 100000);
    /* Replies still queued when we stop get a second to leave. */
    zsock_set_linger(self->router_sock, 1000);
    zsock_set_router_mandatory(self->router_sock, 1);
    /* ZMTP heartbeats, answered by libzmq's I/O threads: a TCP peer that
     * stops answering is disconnected even while its own thread is busy
     * in a handler (see Timing above). They are for silent network
     * failures (a closed connection is seen at once anyway), so the
     * timeout is never under 3 s: a loaded machine must not cut healthy
     * connections when a test runs with 100 ms heartbeats. */
    int zmtp_timeout = c->heartbeat_ms * MDP_LIVENESS;
    zsock_set_heartbeat_ivl(self->router_sock, c->heartbeat_ms);
    zsock_set_heartbeat_timeout(self->router_sock, zmtp_timeout > 3000 ? zmtp_timeout : 3000);

    if (c->tcp_endpoint) {
        zcert_t *cert = keys_ensure(c->keys_dir, "broker");
        if (!cert) {
            zsys_error("broker: cannot load or create %s/broker.cert", c->keys_dir);
            return -1;
        }
        char *clients = zsys_sprintf("%s/clients", c->keys_dir);
        zsys_dir_create("%s", clients);
        self->auth = zactor_new(zauth, NULL);
        if (self->auth) {
            zstr_sendx(self->auth, "CURVE", clients, NULL);
            zsock_wait(self->auth);
        }
        zstr_free(&clients);
        zcert_apply(cert, self->router_sock);
        zcert_destroy(&cert);
        if (!self->auth)
            return -1;
        zsock_set_maxmsgsize(self->router_sock, BROKER_MAX_FRAME_BYTES);
        zsock_set_curve_server(self->router_sock, 1);
        zsock_set_zap_domain(self->router_sock, "retail");
        if (zsock_bind(self->router_sock, "%s", c->tcp_endpoint) < 0) {
            zsys_error("broker: cannot bind %s: %s", c->tcp_endpoint, zmq_strerror(zmq_errno()));
            return -1;
        }
    }
    if (zsock_bind(self->router_sock, "%s", c->inproc_endpoint) < 0) {
        zsys_error("broker: cannot bind %s: %s", c->inproc_endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* The core answers what is still in flight before the socket goes, so
 * those replies are queued on it and get the socket's linger to leave. */
static void s_teardown(broker_t *self)
{
    broker_core_destroy(&self->core);
    zsock_destroy(&self->router_sock);
    zactor_destroy(&self->auth);
}

static void s_broker_actor(zsock_t *pipe, void *args)
{
    broker_t self_storage = {.config = *(broker_config_t *)args, .pipe = pipe};
    broker_t *self = &self_storage;
    snprintf(self->inproc_endpoint, sizeof self->inproc_endpoint, "%s",
             self->config.inproc_endpoint);
    self->config.inproc_endpoint = self->inproc_endpoint;
    if (self->config.tcp_endpoint) {
        snprintf(self->tcp_endpoint, sizeof self->tcp_endpoint, "%s", self->config.tcp_endpoint);
        self->config.tcp_endpoint = self->tcp_endpoint;
        snprintf(self->keys_dir, sizeof self->keys_dir, "%s",
                 self->config.keys_dir ? self->config.keys_dir : "./var/keys");
        self->config.keys_dir = self->keys_dir;
    }
    zsock_signal(pipe, 0); /* zactor_new returns */

    int rc = s_setup(self);
    if (rc == 0) {
        broker_wire_t wire = {
            .ctx = self->router, .send = s_wire_send, .send_msg = s_wire_send_msg};
        self->core = broker_core_new(&self->config, &wire);
        if (!self->core)
            rc = -1;
    }
    zsock_signal(pipe, rc == 0 ? 0 : 1); /* broker_new learns the outcome */
    if (rc != 0) {
        s_teardown(self);
        return;
    }

    const int heartbeat = self->config.heartbeat_ms;
    const int tick = heartbeat / 4 < 50 ? (heartbeat / 4 > 5 ? heartbeat / 4 : 5) : 50;
    broker_core_tick(self->core, zclock_mono()); /* starts the heartbeat count */
    int64_t next_check = zclock_mono() + tick;
    zmq_pollitem_t items[] = {{zsock_resolve(pipe), 0, ZMQ_POLLIN, 0},
                              {self->router, 0, ZMQ_POLLIN, 0}};

    while (!self->terminated) {
        int64_t now = zclock_mono();
        long wait = next_check > now ? (long)(next_check - now) : 0;
        if (zmq_poll(items, 2, wait) < 0)
            break; /* context terminated */
        if (items[0].revents & ZMQ_POLLIN) {
            /* $TERM, or DRAIN with its timeout (broker_drain) */
            zmsg_t *msg = zmsg_recv(pipe);
            char *command = msg ? zmsg_popstr(msg) : NULL;
            char *drain_ms = msg ? zmsg_popstr(msg) : NULL;
            if (!command || streq(command, "$TERM"))
                self->terminated = true;
            else if (streq(command, "DRAIN") && drain_ms) {
                self->draining = true;
                self->drain_deadline = zclock_mono() + atoi(drain_ms);
            }
            zstr_free(&command);
            zstr_free(&drain_ms);
            zmsg_destroy(&msg);
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_handle_router(self);
        now = zclock_mono();
        if (self->draining)
            s_drain_check(self, now);
        if (now >= next_check) {
            broker_core_tick(self->core, now);
            next_check = now + tick;
        }
    }
    s_teardown(self);
}

zactor_t *broker_new(const broker_config_t *config)
{
    broker_config_t *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = *config;
    if (!c->inproc_endpoint)
        c->inproc_endpoint = MDP_INPROC_ENDPOINT;
    if (c->heartbeat_ms <= 0)
        c->heartbeat_ms = MDP_HEARTBEAT_MS_DEFAULT;
    if (c->request_timeout_ms <= 0)
        c->request_timeout_ms = 5000;
    if (c->queue_limit <= 0)
        c->queue_limit = 1024;
    zactor_t *actor = zactor_new(s_broker_actor, c);
    int status = actor ? zsock_wait(actor) : -1;
    free(c); /* the actor copied it before its first signal */
    if (status != 0)
        zactor_destroy(&actor);
    return actor;
}

int broker_drain(zactor_t *self, int timeout_ms)
{
    int left = -1;
    char ms[16];
    snprintf(ms, sizeof ms, "%d", timeout_ms < 0 ? 0 : timeout_ms);
    if (zstr_sendx(self, "DRAIN", ms, NULL) != 0 || zsock_recv(self, "i", &left) != 0)
        return -1;
    return left;
}

void broker_destroy(zactor_t **self_p)
{
    zactor_destroy(self_p);
}

/*  relay.c - a bare DEALER-ROUTER-ROUTER-DEALER relay: the floor under the
 *  broker in the "backbone" benchmark (tools/bench/broker.sh).
 *
 *      relay --endpoint tcp://127.0.0.1:PORT [--data-dir DIR] [-w N]
 *
 *  It pays what any broker must pay and nothing else: a CURVE server
 *  ROUTER on TCP whose clients are authenticated by zauth against the same
 *  allow-list directory the broker uses (keys_dir/clients), one forwarding
 *  thread, and N echo workers in the same process over inproc. There is no
 *  service lookup, no heartbeating, no queueing and no MDP worker protocol;
 *  the difference between the broker and this relay, measured in one run
 *  with the same load harness, is what the broker's own logic costs.
 *
 *  Forwarding (main thread, raw zmq_msg_t only, no copies of bodies):
 *      frontend [client-id][...rest]  ->  backend [worker-id][client-id][...rest]
 *      backend  [worker-id][client-id][...rest]  ->  frontend [client-id][...rest]
 *  Workers are chosen round-robin. Each announces itself with one "READY"
 *  message when it starts; the relay binds its frontend only after all of
 *  them did, so no request can arrive before there is somewhere to send it.
 *
 *  An echo worker receives [client-id][empty][MDPC01][service][body] and
 *  answers what the real `sys echo` answers, {"id": <id>, "ok": true,
 *  "data": <args>}, as [client-id][empty][MDPC01][service][reply]. Bodies
 *  that are not a valid envelope get a malformed_body error reply.
 *
 *  The certificate is keys_dir/relay.cert (made on first use); a load
 *  harness finds its public key with `loadgen --server-cert relay`.
 *  SIGINT or SIGTERM stops it cleanly.
 */
#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/frames.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/settings.h"

#define BACKEND "inproc://relay-backend"
#define READY "READY"
#define WORKERS_MAX 256
/* [client-id][empty][MDPC01][service][body] */
#define REQUEST_FRAMES 5
/* Messages taken from one socket per wake-up, so neither side starves. */
#define BATCH 256
/* How long the main loop sleeps at most: a signal may be delivered to
 * another thread, and then only zsys_interrupted tells us about it. */
#define TICK_MS 250
#define READY_TIMEOUT_MS 5000

/* ---------------------------------------------------------------------
 * The echo worker (one zactor each)
 */

/* Receives one request and sends its reply. 1 when a message was handled,
 * 0 when none was waiting, -1 on a socket error. */
static int s_echo_one(void *dealer, msgpack_zone *zone, msgpack_sbuffer *reply)
{
    zmq_msg_t part[REQUEST_FRAMES];
    int n = frames_recv(dealer, part, REQUEST_FRAMES, ZMQ_DONTWAIT);
    if (n == 0 && zmq_errno() == EAGAIN)
        return 0;
    int rc = n == 0 ? -1 : 1;
    /* Anything that is not an MDP client request is dropped, as a broker
     * would drop it (one with more frames than that frames_recv has
     * dropped already: -1). */
    if (n != REQUEST_FRAMES || zmq_msg_size(&part[1]) != 0 || !frames_is(&part[2], MDP_CLIENT))
        goto done;

    const void *body = zmq_msg_data(&part[4]);
    size_t len = zmq_msg_size(&part[4]);
    envelope_request_t request;
    const char *why;
    msgpack_sbuffer_clear(reply);
    bool packed;
    if (envelope_decode_request(body, len, zone, &request, &why)) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, reply, msgpack_sbuffer_write);
        packed = envelope_reply_ok_begin(&pk, &request.id) == 0 &&
                 msgpack_pack_object(&pk, request.args) == 0;
    } else
        packed = envelope_error_for(reply, body, len, ERR_MALFORMED_BODY, why) == 0;
    msgpack_zone_clear(zone);
    /* Half a reply must not go out; the fixed one says why, with a nil id
     * (the client times that request out, as it would with no answer). */
    const char *reply_data = reply->data;
    size_t reply_size = reply->size;
    if (!packed)
        reply_data = envelope_reply_fixed(ENVELOPE_FIXED_OUT_OF_MEMORY, &reply_size);

    /* The routing frames go back as they came; zmq_msg_send moves them. */
    for (size_t k = 0; k < REQUEST_FRAMES - 1; k++)
        if (zmq_msg_send(&part[k], dealer, ZMQ_SNDMORE) == -1) {
            rc = -1;
            goto done;
        }
    if (zmq_send(dealer, reply_data, reply_size, 0) == -1)
        rc = -1;
done:
    if (rc < 0)
        zsys_error("relay: echo worker: %s", zmq_strerror(zmq_errno()));
    if (n > 0)
        frames_close(part, n);
    return rc;
}

static void s_echo_worker(zsock_t *pipe, void *args)
{
    (void)args;
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    msgpack_zone zone;
    bool zone_ok = msgpack_zone_init(&zone, 4096);
    msgpack_sbuffer reply;
    msgpack_sbuffer_init(&reply);
    zpoller_t *poller = NULL;
    if (!dealer || !zone_ok)
        goto done;
    zsock_set_linger(dealer, 0);
    zsock_set_sndhwm(dealer, 0);
    zsock_set_rcvhwm(dealer, 0);
    if (zsock_connect(dealer, "%s", BACKEND) != 0 || zstr_send(dealer, READY) != 0)
        goto done;
    poller = zpoller_new(pipe, dealer, NULL);
    if (!poller)
        goto done;
    zsock_signal(pipe, 0);

    void *raw = zsock_resolve(dealer);
    while (true) {
        void *which = zpoller_wait(poller, -1);
        if (which == pipe) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                break;
        } else if (which == dealer) {
            for (int k = 0; k < BATCH; k++) {
                int rc = s_echo_one(raw, &zone, &reply);
                if (rc <= 0)
                    break;
            }
        }
        /* NULL: a signal landed on this thread. The main thread decides
         * when to stop and will send $TERM. */
    }
done:
    zpoller_destroy(&poller);
    zsock_destroy(&dealer);
    msgpack_sbuffer_destroy(&reply);
    if (zone_ok)
        msgpack_zone_destroy(&zone);
    /* No final signal here: CZMQ's thread shim sends it when we return,
     * which also answers zactor_new for a worker that failed to start (the
     * relay then notices the missing READY). */
}

/* ---------------------------------------------------------------------
 * The relay (main thread)
 */

typedef struct {
    unsigned char id[256];
    size_t len;
} worker_id_t;

typedef struct {
    void *frontend;
    void *backend;
    worker_id_t workers[WORKERS_MAX];
    size_t nworkers;
    size_t next; /* round-robin cursor */
} relay_t;

/* Sends part and the rest of its message from `from` to `to`. part holds
 * the first frame, already received; it is closed on return. A failed send
 * still consumes the rest, so the next receive starts a new message. */
static int s_move_rest(void *from, void *to, zmq_msg_t *part)
{
    int rc = 0;
    while (true) {
        int more = zmq_msg_more(part);
        if (rc == 0 && zmq_msg_send(part, to, more ? ZMQ_SNDMORE : 0) == -1)
            rc = -1;
        zmq_msg_close(part);
        if (!more)
            break;
        zmq_msg_init(part);
        if (zmq_msg_recv(part, from, 0) == -1) {
            zmq_msg_close(part);
            return -1;
        }
    }
    return rc;
}

/* Consumes and drops the rest of a message whose first part is `part`. */
static void s_drop_rest(void *from, zmq_msg_t *part)
{
    while (zmq_msg_more(part)) {
        zmq_msg_close(part);
        zmq_msg_init(part);
        if (zmq_msg_recv(part, from, 0) == -1)
            break;
    }
    zmq_msg_close(part);
}

/* One client message to the next worker. 1 handled, 0 none waiting, -1 error. */
static int s_from_frontend(relay_t *self)
{
    zmq_msg_t part;
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, self->frontend, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close(&part);
        return zmq_errno() == EAGAIN ? 0 : -1;
    }
    if (self->nworkers == 0 || !zmq_msg_more(&part)) {
        s_drop_rest(self->frontend, &part);
        return 1;
    }
    worker_id_t *w = &self->workers[self->next++ % self->nworkers];
    if (zmq_send(self->backend, w->id, w->len, ZMQ_SNDMORE) == -1) {
        s_drop_rest(self->frontend, &part);
        return -1;
    }
    return s_move_rest(self->frontend, self->backend, &part) == 0 ? 1 : -1;
}

static void s_add_worker(relay_t *self, const zmq_msg_t *id)
{
    size_t len = zmq_msg_size(id);
    if (len == 0 || len > sizeof self->workers[0].id || self->nworkers == WORKERS_MAX)
        return;
    for (size_t i = 0; i < self->nworkers; i++)
        if (self->workers[i].len == len &&
            memcmp(self->workers[i].id, zmq_msg_data((zmq_msg_t *)id), len) == 0)
            return;
    worker_id_t *w = &self->workers[self->nworkers++];
    memcpy(w->id, zmq_msg_data((zmq_msg_t *)id), len);
    w->len = len;
}

/* One worker message: a READY, or a reply to pass to its client. */
static int s_from_backend(relay_t *self)
{
    zmq_msg_t id, part;
    zmq_msg_init(&id);
    if (zmq_msg_recv(&id, self->backend, ZMQ_DONTWAIT) == -1) {
        zmq_msg_close(&id);
        return zmq_errno() == EAGAIN ? 0 : -1;
    }
    if (!zmq_msg_more(&id)) {
        zmq_msg_close(&id);
        return 1;
    }
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, self->backend, 0) == -1) {
        zmq_msg_close(&part);
        zmq_msg_close(&id);
        return -1;
    }
    int rc = 1;
    if (!zmq_msg_more(&part) && zmq_msg_size(&part) == strlen(READY) &&
        memcmp(zmq_msg_data(&part), READY, strlen(READY)) == 0) {
        s_add_worker(self, &id);
        zmq_msg_close(&part);
    } else if (s_move_rest(self->backend, self->frontend, &part) != 0)
        rc = -1;
    zmq_msg_close(&id);
    return rc;
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: relay --endpoint tcp://127.0.0.1:PORT [--data-dir DIR] [-w N]\n"
                 "  a bare CURVE relay to N in-process echo workers, for benchmarks\n");
}

int main(int argc, char **argv)
{
    const char *endpoint = NULL;
    const char *data_dir = NULL;
    long nworkers = 1;
    static const struct option longopts[] = {{"endpoint", required_argument, NULL, 'e'},
                                             {"data-dir", required_argument, NULL, 'D'},
                                             {"workers", required_argument, NULL, 'w'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "w:h", longopts, NULL)) != -1) {
        char *end;
        switch (c) {
        case 'e':
            endpoint = optarg;
            break;
        case 'D':
            data_dir = optarg;
            break;
        case 'w':
            errno = 0;
            nworkers = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || nworkers < 1 || nworkers > WORKERS_MAX) {
                fprintf(stderr, "relay: -w must be 1..%d\n", WORKERS_MAX);
                return 2;
            }
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (!endpoint || optind != argc) {
        s_usage(stderr);
        return 2;
    }

    settings_t settings;
    char err[256];
    if (settings_load(&settings, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "relay: %s\n", err);
        return 2;
    }
    if (data_dir) {
        if (strlen(data_dir) >= sizeof settings.data_dir) {
            fprintf(stderr, "relay: --data-dir is too long\n");
            return 2;
        }
        snprintf(settings.data_dir, sizeof settings.data_dir, "%s", data_dir);
        settings_derive(&settings);
    }

    int status = 1;
    zactor_t *auth = NULL;
    zactor_t *workers[WORKERS_MAX] = {NULL};
    zsock_t *frontend = NULL, *backend = NULL;
    zpoller_t *poller = NULL;
    relay_t relay = {0};
    char *clients_dir = zsys_sprintf("%s/clients", settings.keys_dir);
    zcert_t *cert = keys_ensure(settings.keys_dir, "relay");
    if (!cert || !clients_dir || zsys_dir_create("%s", clients_dir) != 0) {
        fprintf(stderr, "relay: cannot prepare keys in %s\n", settings.keys_dir);
        goto done;
    }
    /* The same admission check the broker makes, so the handshake costs
     * the same: only allow-listed certificates get in. */
    auth = zactor_new(zauth, NULL);
    if (!auth || zstr_sendx(auth, "CURVE", clients_dir, NULL) != 0 || zsock_wait(auth) != 0) {
        fprintf(stderr, "relay: cannot start authentication\n");
        goto done;
    }

    backend = zsock_new(ZMQ_ROUTER);
    frontend = zsock_new(ZMQ_ROUTER);
    if (!backend || !frontend)
        goto done;
    zsock_set_sndhwm(backend, 0);
    zsock_set_rcvhwm(backend, 0);
    zsock_set_sndhwm(frontend, 0);
    zsock_set_rcvhwm(frontend, 0);
    zsock_set_linger(frontend, 0);
    if (zsock_bind(backend, "%s", BACKEND) != 0) {
        fprintf(stderr, "relay: cannot bind %s\n", BACKEND);
        goto done;
    }
    relay.backend = zsock_resolve(backend);
    relay.frontend = zsock_resolve(frontend);

    for (long i = 0; i < nworkers; i++) {
        workers[i] = zactor_new(s_echo_worker, NULL);
        if (!workers[i]) {
            fprintf(stderr, "relay: cannot start echo worker %ld\n", i);
            goto done;
        }
    }
    poller = zpoller_new(backend, NULL);
    if (!poller)
        goto done;
    int64_t ready_by = zclock_mono() + READY_TIMEOUT_MS;
    while (relay.nworkers < (size_t)nworkers && !zsys_interrupted && zclock_mono() < ready_by) {
        if (zpoller_wait(poller, TICK_MS) == backend && s_from_backend(&relay) < 0)
            goto done;
    }
    if (relay.nworkers < (size_t)nworkers) {
        fprintf(stderr, "relay: only %zu of %ld workers reported ready\n", relay.nworkers,
                nworkers);
        goto done;
    }

    zcert_apply(cert, frontend);
    zsock_set_curve_server(frontend, 1);
    if (zsock_bind(frontend, "%s", endpoint) < 0) {
        fprintf(stderr, "relay: cannot bind %s\n", endpoint);
        goto done;
    }
    if (zpoller_add(poller, frontend) != 0)
        goto done;
    fprintf(stderr, "relay: %s (CURVE, allow-list %s) -> %ld echo worker%s\n", endpoint,
            clients_dir, nworkers, nworkers == 1 ? "" : "s");

    status = 0;
    while (!zsys_interrupted) {
        if (!zpoller_wait(poller, TICK_MS))
            continue; /* timeout or a signal: the loop test decides */
        /* Both sides every wake-up, in batches: whichever socket woke us,
         * the other has usually got work too. */
        for (int k = 0; k < BATCH; k++) {
            int rc = s_from_frontend(&relay);
            if (rc < 0)
                zsys_error("relay: frontend: %s", zmq_strerror(zmq_errno()));
            if (rc <= 0)
                break;
        }
        for (int k = 0; k < BATCH; k++) {
            int rc = s_from_backend(&relay);
            if (rc < 0)
                zsys_error("relay: backend: %s", zmq_strerror(zmq_errno()));
            if (rc <= 0)
                break;
        }
    }
    fprintf(stderr, "relay: stopping\n");

done:
    zpoller_destroy(&poller);
    for (long i = 0; i < nworkers; i++)
        zactor_destroy(&workers[i]);
    zsock_destroy(&frontend);
    zsock_destroy(&backend);
    zactor_destroy(&auth);
    zcert_destroy(&cert);
    zstr_free(&clients_dir);
    return status;
}

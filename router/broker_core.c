/*  broker_core.c - the 7/MDP broker's logic: registry, dispatch, queues,
 *  deadlines. Its socket and thread are router/broker.c's.
 *
 *  How it works. The broker's thread owns one ROUTER socket on which both
 *  clients (MDPC01) and workers (MDPW01) talk; the header frame tells them
 *  apart. Every message it reads comes here (broker_core_message), and
 *  every frame sent goes out through the wire the core was given, so the
 *  same code runs behind the socket and under a fuzzer, in process, with
 *  no socket at all (tests/fuzz/fuzz_broker.c). The forwarding path works
 *  on raw zmq_msg_t frames, moving bodies from socket to socket without
 *  copying or decoding them: the broker never parses msgpack except to
 *  echo a request's id in an error it makes up itself (timeout,
 *  unavailable), which is the rare path.
 *
 *  State:
 *    - services: name -> service_t, each with its workers that can take a
 *      request, least recently served first (with plain MDP workers this is
 *      longest idle first, so dispatch is fair), and a FIFO of waiting
 *      requests, bounded by queue_limit (a full queue answers unavailable
 *      at once);
 *    - workers: routing id -> worker_t, with the requests it holds. A plain
 *      MDP worker holds one; ours announce a capacity in READY (see mdp.h)
 *      and get the next request while they work on the current one, which
 *      saves a broker-worker round trip per request (1.75x the throughput
 *      of one worker, measured in docs/BENCHMARKS.md).
 *  A request whose service has no live worker is answered unavailable at
 *  once rather than left to time out: the bridge maps it to 503.
 *
 *  Timing. Every request gets a deadline when it arrives. Queued requests
 *  share one timeout, so each queue is ordered by deadline and only its
 *  head is checked. A request in flight that passes its deadline is
 *  answered timeout and marked abandoned; the worker's late reply is
 *  dropped. Workers are sent a heartbeat every heartbeat_ms and expire
 *  after MDP_LIVENESS intervals without hearing from them. A worker that
 *  holds a request still within its deadline is not expired for silence:
 *  a handler that runs longer than three beats (an Argon2id hash under a
 *  short heartbeat, a slow disk flush) cannot beat meanwhile, and the
 *  request's own deadline already bounds what its client waits. Its death
 *  is still found at once: the ROUTER is in mandatory mode (a send to a
 *  closed connection fails, and every beat is a send), and TCP peers get
 *  ZMTP heartbeats from libzmq's I/O thread, which close a connection that
 *  stops answering even while the worker's own thread is busy. An expired
 *  or vanished worker's requests are answered unavailable: each may or may
 *  not have run, and replaying it on another worker could do it twice, so
 *  the client decides.
 *
 *  Time. The caller says what time it is (zclock_mono() milliseconds) with
 *  each message and tick; the core never reads a clock, so a fuzzer can
 *  move time as it likes and every run is repeatable.
 *
 *  Identity. Each REQUEST carries one extra frame after the body: the
 *  caller's name. For a peer on the network it is the "name" metadata of
 *  the certificate ZAP accepted, whatever routing id the peer chose; for a
 *  peer in this process (no network address, no handshake) it is the name
 *  in its routing id (keys_name_inproc), since only our own code runs
 *  here. Neither: MDP_CALLER_UNNAMED. No default is shared by everyone in
 *  the process: the bridge is "bridge", a pool calling out is its service.
 *  The same name bounds who may be a worker: a READY over the network is
 *  taken only for the service its certificate is named after (retaild's
 *  remote pools use their service's certificate), so an allowed client
 *  cannot pose as a service's worker; in process, any READY is ours.
 */
#include "router/broker_core.h"
#include "protocol/envelope.h"
#include "protocol/frames.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"

#include <zmq.h>

#define MAX_FRAMES 8
#define ROUTING_ID_MAX 255
#define CALLER_MAX (KEYS_NAME_MAX + 1)

typedef struct service_t service_t;

typedef struct request_t {
    uint8_t client[ROUTING_ID_MAX];
    size_t client_len;
    zmq_msg_t body;
    char caller[CALLER_MAX];
    int64_t deadline;
    uint64_t tag;   /* names it to the worker that holds it (REQUEST's tag) */
    bool abandoned; /* answered timeout; the worker's reply is dropped */
    struct request_t *next;
    struct request_t *prev; /* in a worker's held list */
} request_t;

typedef struct {
    uint8_t id[ROUTING_ID_MAX];
    size_t id_len;
    char key[2 * ROUTING_ID_MAX + 1]; /* hex of id: the hash key */
    service_t *service;
    int64_t expiry;
    int capacity;        /* requests it may hold at once (READY's credit) */
    int inflight;        /* requests it holds now */
    request_t *oldest;   /* the requests it holds, oldest first; a tagged */
    request_t *youngest; /* REPLY names its own, an untagged one is `oldest` */
    void *idle_handle;   /* in service->idle while inflight < capacity */
} worker_t;

/* What became of a service's requests (mmi.services, /metrics). */
typedef struct {
    uint64_t ok;           /* answered by a worker, whatever it said */
    uint64_t unavailable;  /* no worker, a full queue, a lost worker, a stop */
    uint64_t timeout;      /* the deadline passed first */
    uint64_t workers_lost; /* workers that expired, vanished or disconnected */
} service_counts_t;

struct service_t {
    char name[MDP_SERVICE_MAX + 1];
    zlistx_t *idle; /* worker_t * with spare capacity, least recently served first */
    request_t *head, *tail;
    size_t queued;
    size_t workers;
    size_t held; /* requests its workers hold, answered or not */
    service_counts_t counts;
};

struct broker_core_t {
    broker_config_t config; /* its strings are not used here */
    broker_wire_t wire;
    zhashx_t *services;
    zhashx_t *workers;
    request_t *free_requests;
    uint64_t next_tag;
    int64_t now;             /* the caller's, at the last message or tick */
    int64_t next_heartbeat;  /* 0 until the first tick */
    msgpack_sbuffer scratch; /* error replies */
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static void s_hex(const uint8_t *id, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[id[i] >> 4];
        out[2 * i + 1] = digits[id[i] & 15];
    }
    out[2 * len] = '\0';
}

static request_t *s_request_new(broker_core_t *self)
{
    request_t *r = self->free_requests;
    if (r)
        self->free_requests = r->next;
    else {
        r = malloc(sizeof *r);
        if (!r)
            return NULL;
    }
    memset(r, 0, offsetof(request_t, body));
    zmq_msg_init(&r->body);
    r->abandoned = false;
    r->next = NULL;
    r->prev = NULL;
    return r;
}

static void s_request_free(broker_core_t *self, request_t *r)
{
    zmq_msg_close(&r->body);
    r->next = self->free_requests;
    self->free_requests = r;
}

static void s_request_destroy_fn(void **item)
{
    free(*item);
    *item = NULL;
}

static service_t *s_service_require(broker_core_t *self, const char *name)
{
    service_t *service = zhashx_lookup(self->services, name);
    if (service)
        return service;
    service = calloc(1, sizeof *service);
    if (!service)
        return NULL;
    snprintf(service->name, sizeof service->name, "%s", name);
    service->idle = zlistx_new();
    if (!service->idle || zhashx_insert(self->services, name, service) != 0) {
        zlistx_destroy(&service->idle);
        free(service);
        return NULL;
    }
    return service;
}

static void s_service_destroy_fn(void **item)
{
    service_t *service = *item;
    zlistx_destroy(&service->idle);
    /* queued requests are freed by the broker before the table goes */
    free(service);
    *item = NULL;
}

/* ------------------------------------------------------------------ */
/* Sending                                                             */
/*
 * The ROUTER is in mandatory mode: sending to a peer that has gone (a
 * killed worker whose TCP connection closed) fails at once instead of
 * being dropped silently, so a dead idle worker is found on the first
 * dispatch or heartbeat, long before its heartbeats are missed, and the
 * request it could not get goes to another worker: it was never
 * delivered, so nothing runs twice.
 */

/* Sends the routing frame of a message; false if the peer is gone or
 * its queue is full, and then nothing was sent. */
static bool s_send_to(broker_core_t *self, const uint8_t *id, size_t len)
{
    return self->wire.send(self->wire.ctx, id, len, ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
}

static void s_send_more(broker_core_t *self, const void *data, size_t len)
{
    self->wire.send(self->wire.ctx, data, len, ZMQ_SNDMORE);
}

/* Replies to a client: [client][empty][MDPC01][service][body]; the body
 * message is consumed. A client that has gone is ignored. */
static void s_reply_client(broker_core_t *self, const uint8_t *client, size_t client_len,
                           const char *service, zmq_msg_t *body)
{
    if (!s_send_to(self, client, client_len)) {
        zmq_msg_close(body);
        return;
    }
    s_send_more(self, "", 0);
    s_send_more(self, MDP_CLIENT, 6);
    s_send_more(self, service, strlen(service));
    if (self->wire.send_msg(self->wire.ctx, body, 0) < 0)
        zmq_msg_close(body);
}

static void s_reply_client_bytes(broker_core_t *self, const uint8_t *client, size_t client_len,
                                 const char *service, const void *data, size_t len)
{
    if (!s_send_to(self, client, client_len))
        return;
    s_send_more(self, "", 0);
    s_send_more(self, MDP_CLIENT, 6);
    s_send_more(self, service, strlen(service));
    self->wire.send(self->wire.ctx, data, len, 0);
}

/* Answers a request with an error the broker makes up. */
static void s_reply_error(broker_core_t *self, const uint8_t *client, size_t client_len,
                          const char *service, zmq_msg_t *request_body, err_code_t code,
                          const char *message)
{
    service_t *counted = zhashx_lookup(self->services, service);
    if (counted && code == ERR_TIMEOUT)
        counted->counts.timeout++;
    else if (counted && code == ERR_UNAVAILABLE)
        counted->counts.unavailable++;
    msgpack_sbuffer_clear(&self->scratch);
    if (envelope_error_for(&self->scratch, request_body ? zmq_msg_data(request_body) : NULL,
                           request_body ? zmq_msg_size(request_body) : 0, code, message) != 0) {
        /* out of memory: a whole error without the id beats a cut one */
        size_t len;
        const char *fixed = envelope_reply_fixed(ENVELOPE_FIXED_OUT_OF_MEMORY, &len);
        s_reply_client_bytes(self, client, client_len, service, fixed, len);
        return;
    }
    s_reply_client_bytes(self, client, client_len, service, self->scratch.data, self->scratch.size);
}

static bool s_send_worker_command(broker_core_t *self, const uint8_t *id, size_t id_len,
                                  uint8_t command)
{
    if (!s_send_to(self, id, id_len))
        return false;
    s_send_more(self, "", 0);
    s_send_more(self, MDP_WORKER, 6);
    self->wire.send(self->wire.ctx, &command, 1, 0);
    return true;
}

/* ------------------------------------------------------------------ */
/* Dispatch                                                            */

static void s_worker_delete(broker_core_t *self, worker_t *worker, bool send_disconnect,
                            const char *why);

/* Sends a request to a worker: [worker][empty][MDPW01][REQUEST][client]
 * [empty][body][caller][tag]. The request's body is kept (a shared copy)
 * so that a timeout can still echo its id. False if the worker is gone. */
static bool s_worker_take(broker_core_t *self, worker_t *worker, request_t *request)
{
    if (!s_send_to(self, worker->id, worker->id_len))
        return false;
    uint8_t command = MDP_REQUEST;
    s_send_more(self, "", 0);
    s_send_more(self, MDP_WORKER, 6);
    s_send_more(self, &command, 1);
    s_send_more(self, request->client, request->client_len);
    s_send_more(self, "", 0);
    zmq_msg_t body;
    zmq_msg_init(&body);
    zmq_msg_copy(&body, &request->body);
    if (self->wire.send_msg(self->wire.ctx, &body, ZMQ_SNDMORE) < 0)
        zmq_msg_close(&body);
    self->wire.send(self->wire.ctx, request->caller, strlen(request->caller), ZMQ_SNDMORE);
    request->tag = ++self->next_tag;
    uint8_t tag[MDP_TAG_LEN];
    for (int i = 0; i < MDP_TAG_LEN; i++)
        tag[i] = (uint8_t)(request->tag >> (8 * i));
    self->wire.send(self->wire.ctx, tag, sizeof tag, 0);

    request->next = NULL;
    request->prev = worker->youngest;
    if (worker->youngest)
        worker->youngest->next = request;
    else
        worker->oldest = request;
    worker->youngest = request;
    worker->inflight++;
    worker->service->held++;
    /* Served workers go to the back of the line, or leave it when full. */
    zlistx_delete(worker->service->idle, worker->idle_handle);
    worker->idle_handle =
        worker->inflight < worker->capacity ? zlistx_add_end(worker->service->idle, worker) : NULL;
    return true;
}

/* Gives a request to the longest-idle worker still connected, dropping
 * the ones found gone. False when no idle worker is left. */
static bool s_dispatch_one(broker_core_t *self, service_t *service, request_t *request)
{
    worker_t *worker;
    while ((worker = zlistx_first(service->idle))) {
        if (s_worker_take(self, worker, request))
            return true;
        s_worker_delete(self, worker, false, "unreachable");
    }
    return false;
}

/* Hands queued requests to idle workers while both exist. */
static void s_service_dispatch(broker_core_t *self, service_t *service)
{
    while (service->head && zlistx_first(service->idle)) {
        request_t *request = service->head;
        service->head = request->next;
        if (!service->head)
            service->tail = NULL;
        service->queued--;
        request->next = NULL;
        if (s_dispatch_one(self, service, request))
            continue;
        if (service->workers == 0) {
            s_reply_error(self, request->client, request->client_len, service->name, &request->body,
                          ERR_UNAVAILABLE, "no live worker for the service");
            s_request_free(self, request);
        } else {
            request->next = service->head;
            service->head = request;
            if (!service->tail)
                service->tail = request;
            service->queued++;
        }
        break;
    }
}

/* A worker answered one of its requests: it has capacity again. */
static void s_worker_done(broker_core_t *self, worker_t *worker, request_t *request)
{
    if (request->prev)
        request->prev->next = request->next;
    else
        worker->oldest = request->next;
    if (request->next)
        request->next->prev = request->prev;
    else
        worker->youngest = request->prev;
    worker->inflight--;
    worker->service->held--;
    s_request_free(self, request);
    if (!worker->idle_handle)
        worker->idle_handle = zlistx_add_end(worker->service->idle, worker);
    s_service_dispatch(self, worker->service);
}

/* Answers every request a worker holds that is not answered yet. */
static void s_worker_abandon_all(broker_core_t *self, worker_t *worker, const char *why)
{
    while (worker->oldest) {
        request_t *request = worker->oldest;
        worker->oldest = request->next;
        if (!request->abandoned)
            s_reply_error(self, request->client, request->client_len, worker->service->name,
                          &request->body, ERR_UNAVAILABLE, why);
        s_request_free(self, request);
        worker->service->held--;
    }
    worker->youngest = NULL;
    worker->inflight = 0;
}

/* Answers every queued request of a service that has lost its last
 * worker: nobody will serve them before their deadline. */
static void s_service_flush(broker_core_t *self, service_t *service, const char *why)
{
    while (service->head) {
        request_t *request = service->head;
        service->head = request->next;
        s_reply_error(self, request->client, request->client_len, service->name, &request->body,
                      ERR_UNAVAILABLE, why);
        s_request_free(self, request);
    }
    service->tail = NULL;
    service->queued = 0;
}

/* Removes a worker; tells it to go away when it is still connected. */
static void s_worker_delete(broker_core_t *self, worker_t *worker, bool send_disconnect,
                            const char *why)
{
    if (send_disconnect)
        s_send_worker_command(self, worker->id, worker->id_len, MDP_DISCONNECT);
    service_t *service = worker->service;
    s_worker_abandon_all(self, worker, why);
    if (service) {
        if (worker->idle_handle)
            zlistx_delete(service->idle, worker->idle_handle);
        service->workers--;
        service->counts.workers_lost++;
        if (service->workers == 0)
            s_service_flush(self, service, "no live worker for the service");
    }
    if (self->config.verbose)
        zsys_info("broker: worker %s of %s gone (%s)", worker->key, service ? service->name : "-",
                  why);
    zhashx_delete(self->workers, worker->key); /* frees worker */
}

/* ------------------------------------------------------------------ */
/* Messages from clients                                               */

/* A service name from a frame into out: 1..MDP_SERVICE_MAX bytes and no
 * NUL, which would cut the name short ("orders\0x" must not reach
 * orders, and a reply must name the service that was asked for). */
static bool s_service_name(const zmq_msg_t *frame, char out[MDP_SERVICE_MAX + 1])
{
    size_t n = zmq_msg_size((zmq_msg_t *)frame);
    const void *data = zmq_msg_data((zmq_msg_t *)frame);
    if (n == 0 || n > MDP_SERVICE_MAX || memchr(data, '\0', n))
        return false;
    memcpy(out, data, n);
    out[n] = '\0';
    return true;
}

/* The caller's authenticated name (see Identity above). Only frames that
 * came off the wire carry the connection's metadata, not the ROUTER's
 * routing frame, so `frame` is a later one. */
static void s_caller_name(const zmq_msg_t *routing_id, zmq_msg_t *frame, char *out)
{
    const char *name = zmq_msg_gets(frame, "name");
    if (zmq_msg_gets(frame, "Peer-Address")) {
        bool named = name && keys_name_valid(name, strlen(name));
        snprintf(out, CALLER_MAX, "%s", named ? name : MDP_CALLER_UNNAMED);
    } else if (!keys_inproc_caller(zmq_msg_data((zmq_msg_t *)routing_id), zmq_msg_size(routing_id),
                                   out))
        snprintf(out, CALLER_MAX, "%s", MDP_CALLER_UNNAMED);
}

static void s_mmi(broker_core_t *self, zmq_msg_t *frames, const char *service_name)
{
    zmq_msg_t *client = &frames[0], *body = &frames[4];
    const uint8_t *cid = zmq_msg_data(client);
    size_t cid_len = zmq_msg_size(client);
    if (streq(service_name, "mmi.service")) {
        char name[MDP_SERVICE_MAX + 1];
        size_t n = zmq_msg_size(body);
        const char *answer = "404";
        if (n > 0 && n <= MDP_SERVICE_MAX) {
            memcpy(name, zmq_msg_data(body), n);
            name[n] = '\0';
            service_t *service = zhashx_lookup(self->services, name);
            if (service && service->workers > 0)
                answer = "200";
        }
        s_reply_client_bytes(self, cid, cid_len, service_name, answer, 3);
    } else if (streq(service_name, "mmi.services")) {
        /* An extension: every known service with its worker counts. A
         * failed write stops the packing; the answer is then "503". */
        msgpack_sbuffer_clear(&self->scratch);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &self->scratch, msgpack_sbuffer_write);
        int rc = msgpack_pack_array(&pk, zhashx_size(self->services));
        for (service_t *s = zhashx_first(self->services); s && rc == 0;
             s = zhashx_next(self->services))
            rc = msgpack_pack_map(&pk, 9) || mp_pack_str(&pk, "name") ||
                 mp_pack_str(&pk, s->name) || mp_pack_str(&pk, "workers") ||
                 msgpack_pack_uint64(&pk, s->workers) || mp_pack_str(&pk, "idle") ||
                 msgpack_pack_uint64(&pk, zlistx_size(s->idle)) || mp_pack_str(&pk, "queued") ||
                 msgpack_pack_uint64(&pk, s->queued) || mp_pack_str(&pk, "held") ||
                 msgpack_pack_uint64(&pk, s->held) || mp_pack_str(&pk, "ok") ||
                 msgpack_pack_uint64(&pk, s->counts.ok) || mp_pack_str(&pk, "unavailable") ||
                 msgpack_pack_uint64(&pk, s->counts.unavailable) || mp_pack_str(&pk, "timeout") ||
                 msgpack_pack_uint64(&pk, s->counts.timeout) || mp_pack_str(&pk, "workers_lost") ||
                 msgpack_pack_uint64(&pk, s->counts.workers_lost);
        if (rc == 0)
            s_reply_client_bytes(self, cid, cid_len, service_name, self->scratch.data,
                                 self->scratch.size);
        else
            s_reply_client_bytes(self, cid, cid_len, service_name, "503", 3);
    } else
        s_reply_client_bytes(self, cid, cid_len, service_name, "501", 3);
}

/* [client][empty][MDPC01][service][body] */
static void s_client_message(broker_core_t *self, zmq_msg_t *frames, int count)
{
    zmq_msg_t *client = &frames[0];
    char name[MDP_SERVICE_MAX + 1];
    if (count != 5 || !s_service_name(&frames[3], name) || zmq_msg_size(client) > ROUTING_ID_MAX)
        return; /* not an MDP client request we can answer: drop */
    const uint8_t *cid = zmq_msg_data(client);
    size_t cid_len = zmq_msg_size(client);

    if (strncmp(name, "mmi.", 4) == 0) {
        s_mmi(self, frames, name);
        return;
    }
    if (zmq_msg_size(&frames[4]) > ENVELOPE_MAX_BYTES) {
        s_reply_error(self, cid, cid_len, name, NULL, ERR_PAYLOAD_TOO_LARGE,
                      "request body over the size limit");
        return;
    }
    service_t *service = zhashx_lookup(self->services, name);
    if (!service || service->workers == 0) {
        s_reply_error(self, cid, cid_len, name, &frames[4], ERR_UNAVAILABLE,
                      "no live worker for the service");
        return;
    }
    request_t *request = s_request_new(self);
    if (!request) {
        s_reply_error(self, cid, cid_len, name, &frames[4], ERR_UNAVAILABLE, "out of memory");
        return;
    }
    memcpy(request->client, cid, cid_len);
    request->client_len = cid_len;
    zmq_msg_move(&request->body, &frames[4]);
    s_caller_name(&frames[0], &frames[2], request->caller); /* wire frames carry metadata */
    request->deadline = self->now + self->config.request_timeout_ms;

    if (s_dispatch_one(self, service, request))
        return;
    const char *refusal = NULL;
    if (service->workers == 0)
        refusal = "no live worker for the service";
    else if (service->queued >= (size_t)self->config.queue_limit)
        refusal = "the service's queue is full";
    if (refusal) {
        s_reply_error(self, cid, cid_len, name, &request->body, ERR_UNAVAILABLE, refusal);
        s_request_free(self, request);
        return;
    }
    if (service->tail)
        service->tail->next = request;
    else
        service->head = request;
    service->tail = request;
    service->queued++;
}

/* ------------------------------------------------------------------ */
/* Messages from workers                                               */

/* The request a worker holds under the tag in frame, or NULL. Replies
 * mostly come in order, so the search from the oldest is short. */
static request_t *s_held_by_tag(worker_t *worker, const zmq_msg_t *frame)
{
    if (zmq_msg_size(frame) != MDP_TAG_LEN)
        return NULL;
    const uint8_t *bytes = zmq_msg_data((zmq_msg_t *)frame);
    uint64_t tag = 0;
    for (int i = 0; i < MDP_TAG_LEN; i++)
        tag |= (uint64_t)bytes[i] << (8 * i);
    for (request_t *r = worker->oldest; r; r = r->next)
        if (r->tag == tag)
            return r;
    return NULL;
}

/* Whether the peer that sent frame may be a worker of service `name`.
 * Over the network only a certificate named after the service may serve
 * it (see Identity above): any allowed client could otherwise register as
 * "users", be handed other clients' logins and tokens, and leave their
 * requests to time out. In this process only our own code runs. */
static bool s_may_serve(zmq_msg_t *frame, const char *name)
{
    if (!zmq_msg_gets(frame, "Peer-Address"))
        return true;
    const char *cert_name = zmq_msg_gets(frame, "name");
    return cert_name && strcmp(cert_name, name) == 0;
}

/* [worker][empty][MDPW01][command]... */
static void s_worker_message(broker_core_t *self, zmq_msg_t *frames, int count)
{
    if (count < 4 || zmq_msg_size(&frames[3]) != 1 || zmq_msg_size(&frames[0]) > ROUTING_ID_MAX)
        return;
    uint8_t command = *(uint8_t *)zmq_msg_data(&frames[3]);
    char key[2 * ROUTING_ID_MAX + 1];
    s_hex(zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]), key);
    worker_t *worker = zhashx_lookup(self->workers, key);

    if (command == MDP_READY) {
        if (worker) {
            /* READY twice is a protocol error: start it over. */
            s_worker_delete(self, worker, true, "sent READY twice");
            return;
        }
        char name[MDP_SERVICE_MAX + 1];
        if ((count != 5 && count != 6) || !s_service_name(&frames[4], name) ||
            strncmp(name, "mmi.", 4) == 0)
            return;
        if (!s_may_serve(&frames[4], name)) {
            if (self->config.verbose)
                zsys_info("broker: READY for %s refused: the peer's certificate is not named so",
                          name);
            return;
        }
        worker = calloc(1, sizeof *worker);
        service_t *service = s_service_require(self, name);
        if (!worker || !service) {
            free(worker);
            return;
        }
        memcpy(worker->id, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]));
        worker->id_len = zmq_msg_size(&frames[0]);
        memcpy(worker->key, key, sizeof key);
        worker->service = service;
        worker->capacity = 1;
        if (count == 6) { /* our extension: READY [service] [capacity] */
            char text[8] = "";
            size_t len = zmq_msg_size(&frames[5]);
            if (len > 0 && len < sizeof text)
                memcpy(text, zmq_msg_data(&frames[5]), len);
            int capacity = atoi(text);
            if (capacity >= 1 && capacity <= MDP_CAPACITY_MAX)
                worker->capacity = capacity;
        }
        worker->expiry = self->now + (int64_t)self->config.heartbeat_ms * MDP_LIVENESS;
        if (zhashx_insert(self->workers, key, worker) != 0) {
            free(worker); /* unknown to us: its next message makes it start over */
            return;
        }
        service->workers++;
        if (self->config.verbose)
            zsys_info("broker: worker %s ready for %s", key, name);
        worker->idle_handle = zlistx_add_end(service->idle, worker);
        s_service_dispatch(self, service);
        return;
    }
    if (!worker) {
        /* A worker we do not know (we restarted, or it expired): make it
         * reconnect and register again. */
        if (command != MDP_DISCONNECT) {
            s_send_worker_command(self, zmq_msg_data(&frames[0]), zmq_msg_size(&frames[0]),
                                  MDP_DISCONNECT);
        }
        return;
    }
    worker->expiry = self->now + (int64_t)self->config.heartbeat_ms * MDP_LIVENESS;

    switch (command) {
    case MDP_REPLY: {
        /* [client][empty][body] and, from a worker that answers out of
         * order, [tag]: the REQUEST's, naming the request it answers.
         * Without one, the reply is for the oldest (plain MDP). */
        request_t *request = count == 7 || count == 8 ? worker->oldest : NULL;
        if (count == 8)
            request = s_held_by_tag(worker, &frames[7]);
        if (!request || zmq_msg_size(&frames[5]) != 0 ||
            zmq_msg_size(&frames[4]) != request->client_len ||
            memcmp(zmq_msg_data(&frames[4]), request->client, request->client_len) != 0) {
            s_worker_delete(self, worker, true, "reply without a matching request");
            return;
        }
        if (!request->abandoned) {
            s_reply_client(self, request->client, request->client_len, worker->service->name,
                           &frames[6]);
            worker->service->counts.ok++;
        }
        s_worker_done(self, worker, request);
        break;
    }
    case MDP_HEARTBEAT:
        break;
    case MDP_DISCONNECT:
        s_worker_delete(self, worker, false, "disconnected");
        break;
    default:
        s_worker_delete(self, worker, true, "unknown command");
    }
}

/* ------------------------------------------------------------------ */
/* Timers                                                              */

/* True while the worker holds a request that is still within its
 * deadline (see Timing above). */
static bool s_worker_busy(const worker_t *worker)
{
    for (const request_t *request = worker->oldest; request; request = request->next)
        if (!request->abandoned)
            return true;
    return false;
}

static void s_check_deadlines(broker_core_t *self, int64_t now)
{
    for (service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services)) {
        while (s->head && s->head->deadline <= now) {
            request_t *request = s->head;
            s->head = request->next;
            if (!s->head)
                s->tail = NULL;
            s->queued--;
            s_reply_error(self, request->client, request->client_len, s->name, &request->body,
                          ERR_TIMEOUT, "the service did not answer within the deadline");
            s_request_free(self, request);
        }
    }
    /* Deleting while iterating a zhashx is not allowed: collect first.
     * Without memory for the list, expiry waits for the next tick. */
    zlistx_t *expired = zlistx_new();
    for (worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers)) {
        for (request_t *request = w->oldest; request; request = request->next) {
            if (!request->abandoned && request->deadline <= now) {
                s_reply_error(self, request->client, request->client_len, w->service->name,
                              &request->body, ERR_TIMEOUT,
                              "the service did not answer within the deadline");
                request->abandoned = true;
            }
        }
        if (expired && w->expiry <= now && !s_worker_busy(w))
            zlistx_add_end(expired, w);
    }
    if (!expired)
        return;
    for (worker_t *w = zlistx_first(expired); w; w = zlistx_next(expired))
        s_worker_delete(self, w, false, "expired: missed heartbeats");
    zlistx_destroy(&expired);
}

size_t broker_core_pending(broker_core_t *self)
{
    size_t left = 0;
    for (service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services))
        left += s->queued;
    for (worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
        for (request_t *r = w->oldest; r; r = r->next)
            left += !r->abandoned;
    return left;
}

/* Held requests are marked abandoned rather than freed, so the workers'
 * late replies are dropped, not taken for protocol errors. */
void broker_core_abandon(broker_core_t *self, const char *why)
{
    for (worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
        for (request_t *r = w->oldest; r; r = r->next)
            if (!r->abandoned) {
                s_reply_error(self, r->client, r->client_len, w->service->name, &r->body,
                              ERR_UNAVAILABLE, why);
                r->abandoned = true;
            }
    for (service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services))
        s_service_flush(self, s, why);
}

/* Beats every worker; one whose connection is gone is removed now. */
static void s_send_heartbeats(broker_core_t *self)
{
    zlistx_t *gone = zlistx_new();
    if (!gone)
        return; /* beaten at the next interval */
    for (worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
        if (!s_send_worker_command(self, w->id, w->id_len, MDP_HEARTBEAT))
            zlistx_add_end(gone, w);
    for (worker_t *w = zlistx_first(gone); w; w = zlistx_next(gone))
        s_worker_delete(self, w, false, "connection closed");
    zlistx_destroy(&gone);
}

/* ------------------------------------------------------------------ */
/* The core's life and its inputs                                      */

static void s_worker_free_fn(void **item)
{
    free(*item);
    *item = NULL;
}

broker_core_t *broker_core_new(const broker_config_t *config, const broker_wire_t *wire)
{
    broker_core_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->config = *config;
    self->config.inproc_endpoint = self->config.tcp_endpoint = self->config.keys_dir = NULL;
    self->wire = *wire;
    msgpack_sbuffer_init(&self->scratch);
    self->services = zhashx_new();
    self->workers = zhashx_new();
    if (!self->services || !self->workers) {
        broker_core_destroy(&self);
        return NULL;
    }
    zhashx_set_destructor(self->services, s_service_destroy_fn);
    zhashx_set_destructor(self->workers, s_worker_free_fn);
    return self;
}

void broker_core_destroy(broker_core_t **self_p)
{
    broker_core_t *self = *self_p;
    if (!self)
        return;
    if (self->workers) {
        /* Answer what is still in flight: nobody will. */
        for (worker_t *w = zhashx_first(self->workers); w; w = zhashx_next(self->workers))
            s_worker_abandon_all(self, w, "the broker is stopping");
    }
    if (self->services)
        for (service_t *s = zhashx_first(self->services); s; s = zhashx_next(self->services))
            s_service_flush(self, s, "the broker is stopping");
    zhashx_destroy(&self->workers);
    zhashx_destroy(&self->services);
    while (self->free_requests) {
        request_t *r = self->free_requests;
        self->free_requests = r->next;
        void *item = r;
        s_request_destroy_fn(&item);
    }
    msgpack_sbuffer_destroy(&self->scratch);
    free(self);
    *self_p = NULL;
}

void broker_core_message(broker_core_t *self, zmq_msg_t *frames, int count, int64_t now)
{
    self->now = now;
    if (count >= 3 && zmq_msg_size(&frames[1]) == 0) {
        if (frames_is(&frames[2], MDP_CLIENT))
            s_client_message(self, frames, count);
        else if (frames_is(&frames[2], MDP_WORKER))
            s_worker_message(self, frames, count);
    }
}

void broker_core_tick(broker_core_t *self, int64_t now)
{
    self->now = now;
    s_check_deadlines(self, now);
    if (self->next_heartbeat == 0)
        self->next_heartbeat = now + self->config.heartbeat_ms;
    else if (now >= self->next_heartbeat) {
        s_send_heartbeats(self);
        self->next_heartbeat = now + self->config.heartbeat_ms;
    }
}

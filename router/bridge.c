/*  bridge.c - HTTP in, MDP out, and back, on one thread.
 *
 *  How it works. libmicrohttpd runs in external-epoll mode: it owns an
 *  epoll descriptor, and this actor polls that descriptor together with
 *  the actor pipe and two DEALER sockets (requests; readiness checks) in
 *  one zmq_poll, calling MHD_run() when HTTP has work. So the access
 *  handler runs on this thread and may use the DEALER directly: no locks,
 *  no hand-off queues.
 *
 *  A request's life (request_t, MHD's per-request context):
 *    1. first handler call: match the route, check Content-Type and the
 *       announced length; answer nothing yet (libmicrohttpd closes the
 *       connection when a response is queued on the first call, and that
 *       costs 5x in throughput);
 *    2. body calls: append up to BODY_MAX bytes (413 past it);
 *    3. last call: build the envelope {"id": [seq, request_id], "op",
 *       "token", "args"} from path, query, headers and body, send it to
 *       the broker, suspend the connection, and file it under `seq`;
 *    4. the reply (or the deadline) prepares the response and resumes the
 *       connection; the handler's next call queues it.
 *  Local routes (/healthz, /metrics, /openapi.json) answer at step 3;
 *  /readyz asks the broker with mmi.services on its own socket, whose
 *  replies come back in order.
 *
 *  Errors take the shape of API.md section 3 and their status from the
 *  table in protocol/errors.c, shared with the services.
 */
#include "router/bridge.h"
#include "protocol/envelope.h"
#include "protocol/errors.h"
#include "protocol/files.h"
#include "protocol/frames.h"
#include "protocol/jsonpack.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/mpcheck.h"
#include "router/metrics.h"
#include "router/openapi.h"
#include "router/routes.h"

#include <microhttpd.h>
#include <sodium.h>
#include <time.h>
#include <zmq.h>

#define BODY_MAX (1024 * 1024)
#define JSON_MAX_DEPTH 20
#define REQUEST_ID_MAX 64
#define READYZ_TIMEOUT_MS 1000
#define DRAIN_MS 2000

typedef enum { REQ_READING, REQ_WAITING, REQ_READY, REQ_SENT } req_state_t;

typedef struct bridge_s bridge_t;

typedef struct request_s {
    bridge_t *bridge;
    struct MHD_Connection *conn;
    const char *method; /* libmicrohttpd's, valid for the request's life */
    req_state_t state;
    int route; /* index in the route table, -1 if none */
    route_match_t match;
    int64_t start_us;
    char request_id[REQUEST_ID_MAX + 1];
    bool accept_msgpack;
    bool body_msgpack;
    err_code_t early_error; /* found before the body was read */
    const char *early_message;
    char *body;
    size_t body_len, body_cap;
    /* waiting for the broker */
    uint64_t seq;
    int64_t deadline;
    struct request_s *prev, *next; /* the deadline list */
    bool filed;                    /* in pending + deadline list */
    bool suspended;
    /* the response */
    int status;
    char *response;
    size_t response_len;
    bool response_msgpack;
    int retry_after;          /* seconds; 0: no header */
    const char *error_code;   /* of an error response, for metrics */
    uint64_t mmi_ticket;      /* /readyz: which mmi reply is ours */
    char client_ip[64];       /* for "@client_ip" arguments */
    const char *content_type; /* of a raw response; NULL: JSON or msgpack */
    char allow[64];           /* the Allow header of a 405 */
} request_t;

struct bridge_s {
    bridge_config_t config;
    char broker_endpoint[256];
    char server_key[KEYS_Z85_LEN + 1];
    char *tls_cert, *tls_key; /* file contents */
    zsock_t *pipe;
    zsock_t *dealer;
    zsock_t *mmi;
    zlistx_t *readyz_waiting; /* request_t * waiting for mmi replies, in order */
    uint64_t mmi_sent, mmi_received;
    struct MHD_Daemon *daemon;
    int port;
    zhashx_t *pending; /* seq (hex) -> request_t */
    request_t *oldest, *youngest;
    uint64_t next_seq;
    char id_prefix[17];
    metrics_t *metrics;
    const route_t *routes;
    size_t n_routes;
    msgpack_sbuffer scratch;
    msgpack_zone zone;
    bool stopping;
};

static int64_t s_now_us(void)
{
    return zclock_usecs();
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */

/* Turns a msgpack body into the response, as msgpack or JSON. */
static void s_set_body(request_t *req, int status, const char *mp, size_t len)
{
    req->status = status;
    free(req->response);
    req->response = NULL;
    req->response_len = 0;
    req->response_msgpack = req->accept_msgpack;
    if (status == 204 || len == 0)
        return;
    if (req->accept_msgpack) {
        req->response = malloc(len);
        if (req->response) {
            memcpy(req->response, mp, len);
            req->response_len = len;
        }
        return;
    }
    char err[128];
    req->response = jsonpack_bytes_to_json_text(mp, len, 0, err, sizeof err);
    if (req->response)
        req->response_len = strlen(req->response);
    else {
        zsys_error("bridge: %s: reply not convertible to JSON: %s", req->request_id, err);
        req->status = 500;
        const char *fallback = "{\"error\":{\"code\":\"internal\",\"message\":\"the reply could "
                               "not be written as JSON\"}}";
        req->response = strdup(fallback);
        req->response_len = req->response ? strlen(fallback) : 0;
    }
}

static void s_set_error(request_t *req, err_code_t code, const char *message, const void *details,
                        size_t details_len);

/* Prepares a successful response from a reply's data. */
static void s_set_data(request_t *req, int status, const msgpack_object *data)
{
    if (status == 204 || !req->accept_msgpack) {
        req->status = status;
        free(req->response);
        req->response = NULL;
        req->response_len = 0;
        req->response_msgpack = false;
        if (status == 204)
            return;
        char err[128];
        req->response = jsonpack_to_json_text(data, 0, err, sizeof err);
        if (req->response) {
            req->response_len = strlen(req->response);
            return;
        }
        zsys_error("bridge: %s: reply not convertible to JSON: %s", req->request_id, err);
        s_set_error(req, ERR_INTERNAL, "the reply could not be written as JSON", NULL, 0);
        return;
    }
    msgpack_sbuffer *buf = &req->bridge->scratch;
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_object(&pk, *data);
    s_set_body(req, status, buf->data, buf->size);
}

/* Prepares an error response: {"error": {code, message, request_id, details?}}.
 * details is one packed msgpack value or NULL. */
static void s_set_error(request_t *req, err_code_t code, const char *message, const void *details,
                        size_t details_len)
{
    req->error_code = err_code_name(code);
    msgpack_sbuffer *buf = &req->bridge->scratch;
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "error");
    msgpack_pack_map(&pk, details ? 4 : 3);
    mp_pack_str(&pk, "code");
    mp_pack_str(&pk, err_code_name(code));
    mp_pack_str(&pk, "message");
    mp_pack_str(&pk, message ? message : err_code_name(code));
    mp_pack_str(&pk, "request_id");
    mp_pack_str(&pk, req->request_id);
    if (details) {
        mp_pack_str(&pk, "details");
        msgpack_sbuffer_write(buf, details, details_len);
    }
    s_set_body(req, err_http_status(code), buf->data, buf->size);
}

/* Removes a request from the pending table and deadline list. */
static void s_unfile(bridge_t *self, request_t *req)
{
    if (!req->filed)
        return;
    char key[17];
    snprintf(key, sizeof key, "%016" PRIx64, req->seq);
    zhashx_delete(self->pending, key);
    if (req->prev)
        req->prev->next = req->next;
    else
        self->oldest = req->next;
    if (req->next)
        req->next->prev = req->prev;
    else
        self->youngest = req->prev;
    req->prev = req->next = NULL;
    req->filed = false;
}

/* The response is prepared: let libmicrohttpd call the handler again. */
static void s_ready(bridge_t *self, request_t *req)
{
    s_unfile(self, req);
    req->state = REQ_READY;
    if (req->suspended) {
        req->suspended = false;
        MHD_resume_connection(req->conn);
    }
}

/* A method as sent by a client may hold anything: log it only when it is
 * a plain token. */
static const char *s_loggable(const char *method)
{
    size_t n = strspn(method, "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
    return n > 0 && n < 16 && method[n] == '\0' ? method : "other";
}

static void s_access_log(request_t *req, size_t bytes, int64_t duration_us)
{
    if (!req->bridge->config.access_log)
        return;
    char when[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    const char *route = req->route >= 0 ? req->bridge->routes[req->route].path : "unmatched";
    /* request ids are [A-Za-z0-9._-] only (see s_request_id), routes are
     * ours: neither needs JSON escaping. */
    printf("{\"time\":\"%s\",\"request_id\":\"%s\",\"method\":\"%s\",\"route\":\"%s\","
           "\"status\":%d,\"duration_us\":%lld,\"bytes\":%zu}\n",
           when, req->request_id, s_loggable(req->method), route, req->status,
           (long long)duration_us, bytes);
}

/* Queues the prepared response. Called from the handler only (never on its
 * first call). */
static enum MHD_Result s_queue(request_t *req)
{
    /* An empty body (204) is a static "": it must not be handed over to
     * libmicrohttpd to free. */
    struct MHD_Response *response =
        req->response ? MHD_create_response_from_buffer(req->response_len, req->response,
                                                        MHD_RESPMEM_MUST_FREE)
                      : MHD_create_response_from_buffer(0, (char *)"", MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    size_t bytes = req->response_len;
    req->response = NULL; /* libmicrohttpd frees it */
    req->response_len = 0;
    if (req->status != 204)
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                                req->content_type       ? req->content_type
                                : req->response_msgpack ? "application/msgpack"
                                                        : "application/json");
    if (req->allow[0])
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, req->allow);
    MHD_add_response_header(response, "X-Request-Id", req->request_id);
    if (req->retry_after > 0) {
        char seconds[16];
        snprintf(seconds, sizeof seconds, "%d", req->retry_after);
        MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, seconds);
    }
    enum MHD_Result rc = MHD_queue_response(req->conn, (unsigned)req->status, response);
    MHD_destroy_response(response);
    req->state = REQ_SENT;
    int64_t duration = s_now_us() - req->start_us;
    metrics_request_end(req->bridge->metrics, req->route, req->status, req->error_code, duration);
    s_access_log(req, bytes, duration);
    return rc;
}

/* ------------------------------------------------------------------ */
/* Requests to the broker                                              */

/* A request id is the client's X-Request-Id when it is 1..64 characters of
 * [A-Za-z0-9._-]; otherwise one is made (prefix random per process). */
static void s_request_id(bridge_t *self, request_t *req)
{
    const char *given = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "X-Request-Id");
    size_t n = given ? strlen(given) : 0;
    bool valid = n > 0 && n <= REQUEST_ID_MAX;
    for (size_t i = 0; valid && i < n; i++) {
        char c = given[i];
        valid = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                c == '.' || c == '_' || c == '-';
    }
    if (valid)
        memcpy(req->request_id, given, n + 1);
    else
        snprintf(req->request_id, sizeof req->request_id, "%s-%" PRIu64, self->id_prefix,
                 self->next_seq);
}

/* An argument from the query string or a header, typed by the route. */
typedef struct {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
    char type; /* 's', 'i', 'b' */
} arg_t;

/* "@client_ip": the peer's address as text, kept in the request. */
static const char *s_connection_value(request_t *req, const char *source)
{
    if (strcmp(source, "@client_ip") != 0)
        return NULL;
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!info || !info->client_addr)
        return NULL;
    const struct sockaddr *sa = info->client_addr;
    const void *addr = sa->sa_family == AF_INET6
                           ? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
                           : (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
    if (!inet_ntop(sa->sa_family, addr, req->client_ip, sizeof req->client_ip))
        return NULL;
    return req->client_ip;
}

/* Collects the arguments a route takes from the query string or headers.
 * spec is "source>name:type,..." ('>' part optional: source = name; type
 * s, i or b, 's' when omitted). Names point into the static spec. */
static void s_spec_args(request_t *req, const char *spec, enum MHD_ValueKind kind, arg_t *args,
                        int *n_args, int max_args)
{
    for (const char *p = spec; p && *p && *n_args < max_args;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *arrow = memchr(p, '>', (size_t)(end - p));
        const char *name = arrow ? arrow + 1 : p;
        const char *colon = memchr(name, ':', (size_t)(end - name));
        const char *source_end = arrow ? arrow : (colon ? colon : end);
        char source[64];
        size_t source_len = (size_t)(source_end - p);
        if (source_len > 0 && source_len < sizeof source) {
            memcpy(source, p, source_len);
            source[source_len] = '\0';
            const char *value = source[0] == '@'
                                    ? s_connection_value(req, source)
                                    : MHD_lookup_connection_value(req->conn, kind, source);
            if (value) {
                arg_t *a = &args[(*n_args)++];
                a->name = name;
                a->name_len = (size_t)((colon ? colon : end) - name);
                a->value = value;
                a->value_len = strlen(value);
                a->type = colon && colon + 1 < end ? colon[1] : 's';
            }
        }
        p = *end ? end + 1 : end;
    }
}

/* Packs one typed argument; false when the text does not parse. */
static bool s_pack_arg(msgpack_packer *pk, const arg_t *a)
{
    mp_pack_strn(pk, a->name, a->name_len);
    if (a->type == 'i') {
        char *end;
        errno = 0;
        long long v = strtoll(a->value, &end, 10);
        if (errno || end == a->value || *end)
            return false;
        msgpack_pack_int64(pk, v);
    } else if (a->type == 'b') {
        if (streq(a->value, "true") || streq(a->value, "1"))
            msgpack_pack_true(pk);
        else if (streq(a->value, "false") || streq(a->value, "0"))
            msgpack_pack_false(pk);
        else
            return false;
    } else {
        if (!utf8_valid((const uint8_t *)a->value, a->value_len))
            return false;
        mp_pack_strn(pk, a->value, a->value_len);
    }
    return true;
}

static bool s_arg_named(const arg_t *args, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (args[i].name_len == len && memcmp(args[i].name, name, len) == 0)
            return true;
    return false;
}

/* Builds the envelope for req into self->scratch. False (with the error
 * response prepared) when the request is not acceptable. */
static bool s_build_envelope(bridge_t *self, request_t *req)
{
    const route_t *route = &self->routes[req->route];
    arg_t args[16];
    int n = 0;
    for (int i = 0; i < req->match.n_params; i++) {
        arg_t *a = &args[n++];
        a->name = req->match.param_name[i];
        a->name_len = req->match.param_name_len[i];
        a->value = req->match.param_value[i];
        a->value_len = req->match.param_value_len[i];
        a->type = 's';
    }
    s_spec_args(req, route->query, MHD_GET_ARGUMENT_KIND, args, &n, 16);
    s_spec_args(req, route->headers, MHD_HEADER_KIND, args, &n, 16);
    for (int i = 0; i < n; i++)
        if (args[i].value_len > BODY_MAX) /* headers and queries are bounded by MHD anyway */
            n = i;

    /* The body, as a msgpack map. */
    msgpack_object body = {.type = MSGPACK_OBJECT_MAP};
    msgpack_sbuffer converted;
    msgpack_sbuffer_init(&converted);
    msgpack_zone_clear(&self->zone);
    bool ok = true;
    char err[160] = "";
    if (route->body && req->body_len > 0) {
        const char *mp = req->body;
        size_t mp_len = req->body_len;
        if (!req->body_msgpack) {
            if (jsonpack_from_json(req->body, req->body_len, &converted, JSON_MAX_DEPTH, err,
                                   sizeof err) != 0)
                ok = false;
            mp = converted.data;
            mp_len = converted.size;
        } else {
            mp_status_t st = mpcheck((const uint8_t *)mp, mp_len, BODY_MAX, JSON_MAX_DEPTH);
            if (st != MP_OK) {
                snprintf(err, sizeof err, "%s", mpcheck_strerror(st));
                ok = false;
            } else {
                /* The API is JSON-shaped for every client: refuse values
                 * JSON cannot hold (bin, NaN, uint64 over int64). */
                char why[96];
                char *json = jsonpack_bytes_to_json_text(mp, mp_len, 0, why, sizeof why);
                if (!json) {
                    snprintf(err, sizeof err, "the body holds a value JSON cannot: %s", why);
                    ok = false;
                }
                free(json);
            }
        }
        size_t off = 0;
        if (ok && (msgpack_unpack(mp, mp_len, &off, &self->zone, &body) != MSGPACK_UNPACK_SUCCESS ||
                   body.type != MSGPACK_OBJECT_MAP)) {
            snprintf(err, sizeof err, "the body must be an object");
            ok = false;
        }
    }
    if (!ok) {
        s_set_error(req, ERR_MALFORMED_BODY, err, NULL, 0);
        msgpack_sbuffer_destroy(&converted);
        return false;
    }

    const char *auth =
        MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *token = NULL;
    if (auth && strncasecmp(auth, "Bearer ", 7) == 0 && auth[7])
        token = auth + 7;
    if (token && strlen(token) > ENVELOPE_MAX_TOKEN)
        token = NULL; /* the service answers unauthenticated */

    msgpack_sbuffer *buf = &self->scratch;
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, token ? 4 : 3);
    mp_pack_str(&pk, "id");
    msgpack_pack_array(&pk, 2);
    msgpack_pack_uint64(&pk, req->seq);
    mp_pack_str(&pk, req->request_id);
    mp_pack_str(&pk, "op");
    mp_pack_str(&pk, route->op);
    if (token) {
        mp_pack_str(&pk, "token");
        mp_pack_str(&pk, token);
    }
    mp_pack_str(&pk, "args");
    uint32_t from_body = 0;
    for (uint32_t i = 0; i < body.via.map.size; i++) {
        const msgpack_object *k = &body.via.map.ptr[i].key;
        if (!s_arg_named(args, n, k->via.str.ptr, k->via.str.size))
            from_body++;
    }
    msgpack_pack_map(&pk, (size_t)n + from_body);
    const arg_t *bad = NULL;
    for (int i = 0; i < n; i++)
        if (!s_pack_arg(&pk, &args[i]) && !bad)
            bad = &args[i];
    for (uint32_t i = 0; i < body.via.map.size; i++) {
        const msgpack_object *k = &body.via.map.ptr[i].key;
        if (s_arg_named(args, n, k->via.str.ptr, k->via.str.size))
            continue;
        msgpack_pack_object(&pk, *k);
        msgpack_pack_object(&pk, body.via.map.ptr[i].val);
    }
    msgpack_sbuffer_destroy(&converted);
    if (bad) {
        msgpack_sbuffer details;
        msgpack_sbuffer_init(&details);
        msgpack_packer dp;
        msgpack_packer_init(&dp, &details, msgpack_sbuffer_write);
        msgpack_pack_map(&dp, 1);
        mp_pack_str(&dp, "fields");
        msgpack_pack_array(&dp, 1);
        msgpack_pack_map(&dp, 2);
        const char *problem = bad->type == 'i'   ? "must be an integer"
                              : bad->type == 'b' ? "must be true or false"
                                                 : "must be valid UTF-8";
        mp_pack_str(&dp, "field");
        mp_pack_strn(&dp, bad->name, bad->name_len);
        mp_pack_str(&dp, "problem");
        mp_pack_str(&dp, problem);
        char message[160];
        snprintf(message, sizeof message, "invalid argument: %.*s %s", (int)bad->name_len,
                 bad->name, problem);
        s_set_error(req, ERR_INVALID_ARGUMENT, message, details.data, details.size);
        msgpack_sbuffer_destroy(&details);
        return false;
    }
    return true;
}

/* Sends req to its service and files it to wait for the reply. */
static void s_forward(bridge_t *self, request_t *req)
{
    if (!s_build_envelope(self, req)) {
        req->state = REQ_READY;
        return;
    }
    const char *service = self->routes[req->route].service;
    void *sock = zsock_resolve(self->dealer);
    zmq_send(sock, "", 0, ZMQ_SNDMORE);
    zmq_send(sock, MDP_CLIENT, 6, ZMQ_SNDMORE);
    zmq_send(sock, service, strlen(service), ZMQ_SNDMORE);
    if (zmq_send(sock, self->scratch.data, self->scratch.size, ZMQ_DONTWAIT) < 0) {
        s_set_error(req, ERR_UNAVAILABLE, "the broker is not reachable", NULL, 0);
        req->state = REQ_READY;
        return;
    }
    char key[17];
    snprintf(key, sizeof key, "%016" PRIx64, req->seq);
    zhashx_insert(self->pending, key, req);
    req->deadline = zclock_mono() + self->config.timeout_ms;
    req->prev = self->youngest;
    req->next = NULL;
    if (self->youngest)
        self->youngest->next = req;
    else
        self->oldest = req;
    self->youngest = req;
    req->filed = true;
    req->state = REQ_WAITING;
}

/* A reply from the broker: [empty][MDPC01][service][body]. */
static void s_on_reply(bridge_t *self, zmq_msg_t *frames, int count)
{
    if (count != 4)
        return;
    const char *why;
    envelope_reply_t reply;
    msgpack_zone_clear(&self->zone);
    if (!envelope_decode_reply(zmq_msg_data(&frames[3]), zmq_msg_size(&frames[3]), &self->zone,
                               &reply, &why))
        return;
    if (reply.id.type != MSGPACK_OBJECT_ARRAY || reply.id.via.array.size != 2 ||
        reply.id.via.array.ptr[0].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return;
    char key[17];
    snprintf(key, sizeof key, "%016" PRIx64, reply.id.via.array.ptr[0].via.u64);
    request_t *req = zhashx_lookup(self->pending, key);
    if (!req)
        return; /* timed out already */

    if (reply.ok)
        s_set_data(req, self->routes[req->route].ok_status, &reply.data);
    else {
        const msgpack_object *message = mp_map_get(&reply.error, "message");
        const msgpack_object *details = mp_map_get(&reply.error, "details");
        char text[256] = "";
        if (message && message->type == MSGPACK_OBJECT_STR)
            snprintf(text, sizeof text, "%.*s", (int)message->via.str.size, message->via.str.ptr);
        /* s_set_error writes into scratch: give it the details packed apart */
        msgpack_sbuffer packed;
        msgpack_sbuffer_init(&packed);
        if (details) {
            const msgpack_object *retry = mp_map_get(details, "retry_after");
            if (retry && retry->type == MSGPACK_OBJECT_POSITIVE_INTEGER && retry->via.u64 < 86400)
                req->retry_after = (int)retry->via.u64;
            msgpack_packer pk;
            msgpack_packer_init(&pk, &packed, msgpack_sbuffer_write);
            msgpack_pack_object(&pk, *details);
        }
        s_set_error(req, reply.code, text[0] ? text : NULL, details ? packed.data : NULL,
                    packed.size);
        msgpack_sbuffer_destroy(&packed);
    }
    s_ready(self, req);
}

/* ------------------------------------------------------------------ */
/* Local routes                                                        */

static void s_set_json_text(request_t *req, int status, const char *json)
{
    /* Local answers are written as JSON; msgpack clients get them packed. */
    msgpack_sbuffer *buf = &req->bridge->scratch;
    msgpack_sbuffer_clear(buf);
    char err[64];
    if (jsonpack_from_json(json, strlen(json), buf, 8, err, sizeof err) == 0)
        s_set_body(req, status, buf->data, buf->size);
    else
        s_set_error(req, ERR_INTERNAL, "could not write the answer", NULL, 0);
}

static void s_set_raw(request_t *req, int status, char *text, size_t len, const char *content_type)
{
    req->content_type = content_type;
    req->status = status;
    free(req->response);
    req->response = text;
    req->response_len = len;
    req->response_msgpack = false;
}

/* /readyz: one mmi.services request on the mmi socket. The broker answers
 * mmi requests at once and in order, so the k-th reply is for ticket k. */
static void s_readyz_ask(bridge_t *self, request_t *req)
{
    if (zstr_sendx(self->mmi, "", MDP_CLIENT, "mmi.services", "", NULL) != 0) {
        s_set_json_text(req, 503, "{\"status\":\"unavailable\",\"missing\":[\"broker\"]}");
        req->state = REQ_READY;
        return;
    }
    req->mmi_ticket = ++self->mmi_sent;
    zlistx_add_end(self->readyz_waiting, req);
    req->deadline = zclock_mono() + READYZ_TIMEOUT_MS;
    req->state = REQ_WAITING;
}

/* Answers a readyz: list is the broker's mmi.services array, or NULL when
 * the broker did not answer. */
static void s_readyz_answer(bridge_t *self, request_t *req, const msgpack_object *list)
{
    const char *services[32];
    size_t n = routes_services(services, 32);
    char json[640];
    size_t used = (size_t)snprintf(json, sizeof json, "{\"status\":\"unavailable\",\"missing\":[");
    size_t missing = 0;
    if (!list) {
        used += (size_t)snprintf(json + used, sizeof json - used, "\"broker\"");
        missing = 1;
    }
    for (size_t i = 0; list && i < n && used < sizeof json - 80; i++) {
        bool live = false;
        for (uint32_t k = 0; k < list->via.array.size; k++) {
            const msgpack_object *s = &list->via.array.ptr[k];
            const msgpack_object *workers = mp_map_get(s, "workers");
            if (mp_str_eq(mp_map_get(s, "name"), services[i]) && workers &&
                workers->type == MSGPACK_OBJECT_POSITIVE_INTEGER && workers->via.u64 > 0)
                live = true;
        }
        if (!live)
            used += (size_t)snprintf(json + used, sizeof json - used, "%s\"%s\"",
                                     missing++ ? "," : "", services[i]);
    }
    snprintf(json + used, sizeof json - used, "]}");
    if (missing)
        s_set_json_text(req, 503, json);
    else
        s_set_json_text(req, 200, "{\"status\":\"ready\"}");
    zlistx_delete(self->readyz_waiting, zlistx_find(self->readyz_waiting, req));
    s_ready(self, req);
}

static void s_on_mmi(bridge_t *self)
{
    zmsg_t *msg = zmsg_recv(self->mmi);
    if (!msg)
        return;
    uint64_t ticket = ++self->mmi_received;
    request_t *req = zlistx_first(self->readyz_waiting);
    if (req && req->mmi_ticket == ticket) {
        zframe_t *body = zmsg_last(msg);
        msgpack_zone_clear(&self->zone);
        msgpack_object list;
        size_t off = 0;
        bool valid = body && mpcheck(zframe_data(body), zframe_size(body), 1 << 20, 4) == MP_OK &&
                     msgpack_unpack((const char *)zframe_data(body), zframe_size(body), &off,
                                    &self->zone, &list) == MSGPACK_UNPACK_SUCCESS &&
                     list.type == MSGPACK_OBJECT_ARRAY;
        s_readyz_answer(self, req, valid ? &list : NULL);
    }
    zmsg_destroy(&msg); /* else a reply for a readyz that gave up */
}

static void s_answer_local(bridge_t *self, request_t *req)
{
    switch (self->routes[req->route].local) {
    case LOCAL_HEALTHZ:
        s_set_json_text(req, 200, "{\"status\":\"ok\"}");
        break;
    case LOCAL_METRICS: {
        size_t len = 0;
        char *text = metrics_render(self->metrics, &len);
        if (text)
            s_set_raw(req, 200, text, len, "text/plain; version=0.0.4; charset=utf-8");
        else
            s_set_error(req, ERR_INTERNAL, "out of memory", NULL, 0);
        break;
    }
    case LOCAL_OPENAPI: {
        char *copy = malloc(openapi_json_len);
        if (copy) {
            memcpy(copy, openapi_json, openapi_json_len);
            s_set_raw(req, 200, copy, openapi_json_len, "application/json");
        } else
            s_set_error(req, ERR_INTERNAL, "out of memory", NULL, 0);
        break;
    }
    case LOCAL_READYZ:
        s_readyz_ask(self, req);
        return;
    case LOCAL_NONE:
        break;
    }
    req->state = REQ_READY;
}

/* ------------------------------------------------------------------ */
/* libmicrohttpd callbacks                                             */

static bool s_content_type_ok(const char *type, bool *msgpack)
{
    *msgpack = false;
    if (!type)
        return true;
    size_t n = strcspn(type, ";");
    while (n > 0 && type[n - 1] == ' ')
        n--;
    if (n == 16 && strncasecmp(type, "application/json", 16) == 0)
        return true;
    if (n == 19 && strncasecmp(type, "application/msgpack", 19) == 0) {
        *msgpack = true;
        return true;
    }
    return false;
}

static request_t *s_request_new(bridge_t *self, struct MHD_Connection *conn, const char *method,
                                const char *url)
{
    request_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->bridge = self;
    req->conn = conn;
    req->method = method;
    req->start_us = s_now_us();
    req->seq = ++self->next_seq;
    req->route = -1;
    s_request_id(self, req);
    metrics_request_start(self->metrics);

    const char *accept = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Accept");
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    if (accept && strstr(accept, "application/msgpack"))
        req->accept_msgpack = true;

    route_result_t found = routes_match(method, url, &req->match);
    if (found == ROUTE_FOUND)
        req->route = req->match.index;
    else if (found == ROUTE_NO_METHOD) {
        routes_allowed(url, req->allow, sizeof req->allow);
        req->early_error = ERR_METHOD_NOT_ALLOWED;
        req->early_message = "the path exists, but not with this method";
    } else {
        req->early_error = ERR_NOT_FOUND;
        req->early_message = "no such route";
    }
    bool body_msgpack = false;
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    bool has_body = (length && strcmp(length, "0") != 0) ||
                    MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    if (!req->early_error && has_body && !s_content_type_ok(type, &body_msgpack)) {
        req->early_error = ERR_UNSUPPORTED_MEDIA_TYPE;
        req->early_message = "send application/json or application/msgpack";
    }
    req->body_msgpack = body_msgpack;
    if (!req->early_error && length && strtoull(length, NULL, 10) > BODY_MAX) {
        req->early_error = ERR_PAYLOAD_TOO_LARGE;
        req->early_message = "the body is over 1 MiB";
    }
    return req;
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    bridge_t *self = cls;
    request_t *req = *con_cls;
    if (!req) {
        req = s_request_new(self, conn, method, url);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        if (req->early_error == ERR_PAYLOAD_TOO_LARGE) {
            /* Answering now makes libmicrohttpd close the connection
             * instead of reading a body we would throw away: right here. */
            s_set_error(req, req->early_error, req->early_message, NULL, 0);
            return s_queue(req);
        }
        return MHD_YES; /* never answer on the first call: it costs keep-alive */
    }
    if (req->state == REQ_READING && *upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->early_error)
            return MHD_YES; /* read and drop */
        if (req->body_len + n > BODY_MAX) {
            req->early_error = ERR_PAYLOAD_TOO_LARGE;
            req->early_message = "the body is over 1 MiB";
            free(req->body);
            req->body = NULL;
            req->body_len = req->body_cap = 0;
            return MHD_YES;
        }
        if (req->body_len + n > req->body_cap) {
            size_t cap = req->body_cap ? req->body_cap : 1024;
            while (cap < req->body_len + n)
                cap *= 2;
            char *grown = realloc(req->body, cap);
            if (!grown)
                return MHD_NO;
            req->body = grown;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        return MHD_YES;
    }
    if (req->state == REQ_READING) {
        if (req->early_error) {
            s_set_error(req, req->early_error, req->early_message, NULL, 0);
            req->state = REQ_READY;
        } else if (self->stopping) {
            s_set_error(req, ERR_UNAVAILABLE, "the server is stopping", NULL, 0);
            req->retry_after = 1;
            req->state = REQ_READY;
        } else if (!self->routes[req->route].service)
            s_answer_local(self, req);
        else
            s_forward(self, req);
    }
    if (req->state == REQ_READY)
        return s_queue(req);
    if (req->state == REQ_WAITING && !req->suspended) {
        req->suspended = true;
        MHD_suspend_connection(conn);
    }
    return MHD_YES;
}

static void s_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                        enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    (void)toe;
    bridge_t *self = cls;
    request_t *req = *con_cls;
    if (!req)
        return;
    if (req->state != REQ_SENT) /* the client went away first */
        metrics_request_end(self->metrics, req->route, 499, NULL, s_now_us() - req->start_us);
    s_unfile(self, req);
    void *handle = zlistx_find(self->readyz_waiting, req);
    if (handle)
        zlistx_delete(self->readyz_waiting, handle);
    free(req->body);
    free(req->response);
    free(req);
    *con_cls = NULL;
}

/* ------------------------------------------------------------------ */
/* The actor                                                           */

/* Answers what passed its deadline: 504 for services, 503 for readyz. */
static void s_check_deadlines(bridge_t *self)
{
    int64_t now = zclock_mono();
    while (self->oldest && self->oldest->deadline <= now) {
        request_t *req = self->oldest;
        s_set_error(req, ERR_TIMEOUT, "the service did not answer within the deadline", NULL, 0);
        s_ready(self, req);
    }
    request_t *req = zlistx_first(self->readyz_waiting);
    while (req && req->deadline <= now) {
        s_readyz_answer(self, req, NULL);
        req = zlistx_first(self->readyz_waiting);
    }
}

static void s_on_dealer(bridge_t *self)
{
    zmq_msg_t frames[6];
    for (int batch = 0; batch < 256; batch++) {
        int count = frames_recv(zsock_resolve(self->dealer), frames, 6, ZMQ_DONTWAIT);
        if (count == 0)
            return;
        if (count < 0)
            continue;
        s_on_reply(self, frames, count);
        frames_close(frames, count);
    }
}

static zsock_t *s_broker_socket(bridge_t *self)
{
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    if (!sock)
        return NULL;
    zsock_set_linger(sock, 0);
    zsock_set_sndhwm(sock, 0);
    zsock_set_rcvhwm(sock, 0);
    if (self->config.cert)
        keys_apply_client(sock, self->config.cert, self->server_key);
    if (zsock_connect(sock, "%s", self->broker_endpoint) != 0)
        zsock_destroy(&sock);
    return sock;
}

static int s_setup(bridge_t *self)
{
    const bridge_config_t *c = &self->config;
    self->pending = zhashx_new();
    self->readyz_waiting = zlistx_new();
    self->routes = routes_table(&self->n_routes);
    const char *labels[64];
    char label_text[64][96];
    size_t n = self->n_routes < 64 ? self->n_routes : 64;
    for (size_t i = 0; i < n; i++) {
        snprintf(label_text[i], sizeof label_text[i], "%s %s", self->routes[i].method,
                 self->routes[i].path);
        labels[i] = label_text[i];
    }
    self->metrics = metrics_new(labels, n);
    self->dealer = s_broker_socket(self);
    self->mmi = s_broker_socket(self);
    if (!self->pending || !self->readyz_waiting || !self->metrics || !self->dealer || !self->mmi)
        return -1;

    unsigned char random[8];
    randombytes_buf(random, sizeof random);
    for (int i = 0; i < 8; i++)
        snprintf(self->id_prefix + 2 * i, 3, "%02x", random[i]);

    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO;
    if (c->tls_cert_file && c->tls_key_file) {
        size_t len;
        self->tls_cert = files_read(c->tls_cert_file, 1 << 20, &len);
        self->tls_key = files_read(c->tls_key_file, 1 << 20, &len);
        if (!self->tls_cert || !self->tls_key) {
            zsys_error("bridge: cannot read %s or %s", c->tls_cert_file, c->tls_key_file);
            return -1;
        }
        flags |= MHD_USE_TLS;
    }
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)c->port)};
    if (inet_pton(AF_INET, c->bind_address ? c->bind_address : "127.0.0.1", &address.sin_addr) !=
        1) {
        zsys_error("bridge: bad bind address %s", c->bind_address);
        return -1;
    }
    struct MHD_OptionItem tls[] = {
        {MHD_OPTION_HTTPS_MEM_CERT, 0, self->tls_cert},
        {MHD_OPTION_HTTPS_MEM_KEY, 0, self->tls_key},
        {MHD_OPTION_END, 0, NULL},
    };
    self->daemon = MHD_start_daemon(
        flags, (uint16_t)c->port, NULL, NULL, s_handler, self, MHD_OPTION_SOCK_ADDR, &address,
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, self, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)60, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)10000, MHD_OPTION_ARRAY,
        self->tls_cert ? tls : tls + 2, MHD_OPTION_END);
    if (!self->daemon) {
        zsys_error("bridge: cannot listen on %s:%d",
                   c->bind_address ? c->bind_address : "127.0.0.1", c->port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    self->port = info ? info->port : c->port;
    return 0;
}

/* Answers every request still waiting (the bridge is going away). */
static void s_answer_all(bridge_t *self, err_code_t code, const char *message)
{
    while (self->oldest) {
        request_t *req = self->oldest;
        s_set_error(req, code, message, NULL, 0);
        s_ready(self, req);
    }
    request_t *req;
    while ((req = zlistx_first(self->readyz_waiting)))
        s_readyz_answer(self, req, NULL);
}

static void s_teardown(bridge_t *self)
{
    if (self->daemon) {
        s_answer_all(self, ERR_UNAVAILABLE, "the server is stopping");
        /* Let the last responses go out before the sockets close. */
        int64_t end = zclock_mono() + 200;
        while (zclock_mono() < end &&
               MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS)
                       ->num_connections > 0) {
            MHD_run(self->daemon);
            zclock_sleep(5);
        }
        MHD_stop_daemon(self->daemon);
    }
    metrics_destroy(&self->metrics);
    zhashx_destroy(&self->pending);
    zlistx_destroy(&self->readyz_waiting);
    zsock_destroy(&self->dealer);
    zsock_destroy(&self->mmi);
    free(self->tls_cert);
    if (self->tls_key)
        sodium_memzero(self->tls_key, strlen(self->tls_key)); /* a private key */
    free(self->tls_key);
    msgpack_sbuffer_destroy(&self->scratch);
    msgpack_zone_destroy(&self->zone);
    zcert_destroy(&self->config.cert);
}

static void s_bridge_actor(zsock_t *pipe, void *args)
{
    bridge_t self_storage = {.config = *(bridge_config_t *)args, .pipe = pipe};
    bridge_t *self = &self_storage;
    snprintf(self->broker_endpoint, sizeof self->broker_endpoint, "%s",
             self->config.broker_endpoint);
    if (self->config.cert) {
        self->config.cert = zcert_dup(self->config.cert);
        snprintf(self->server_key, sizeof self->server_key, "%s", self->config.server_key);
    }
    /* the TLS paths are read in s_setup, before the first signal returns */
    msgpack_sbuffer_init(&self->scratch);
    msgpack_zone_init(&self->zone, 4096);
    int rc = s_setup(self);
    self->config.tls_cert_file = self->config.tls_key_file = NULL;
    self->config.bind_address = NULL;
    zsock_signal(pipe, 0);
    zsock_signal(pipe, rc == 0 ? 0 : 1);
    if (rc != 0) {
        s_teardown(self);
        return;
    }
    int epoll_fd = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_EPOLL_FD)->epoll_fd;
    int64_t drain_until = 0;
    while (true) {
        zmq_pollitem_t items[] = {{zsock_resolve(pipe), 0, ZMQ_POLLIN, 0},
                                  {zsock_resolve(self->dealer), 0, ZMQ_POLLIN, 0},
                                  {zsock_resolve(self->mmi), 0, ZMQ_POLLIN, 0},
                                  {NULL, epoll_fd, ZMQ_POLLIN, 0}};
        MHD_UNSIGNED_LONG_LONG mhd_timeout = 0;
        long wait = 50; /* deadlines are checked at this granularity */
        if (MHD_get_timeout(self->daemon, &mhd_timeout) == MHD_YES && mhd_timeout < (unsigned)wait)
            wait = (long)mhd_timeout;
        if (zmq_poll(items, 4, wait) < 0)
            break;
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            if (command && streq(command, "PORT"))
                zsock_send(pipe, "i", self->port);
            zstr_free(&command);
            if (term && !self->stopping) {
                /* stop accepting; give requests in flight time to finish */
                self->stopping = true;
                MHD_quiesce_daemon(self->daemon);
                drain_until = zclock_mono() + DRAIN_MS;
            }
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_on_dealer(self);
        if (items[2].revents & ZMQ_POLLIN)
            s_on_mmi(self);
        s_check_deadlines(self);
        MHD_run(self->daemon);
        if (self->stopping && (zhashx_size(self->pending) == 0 || zclock_mono() > drain_until))
            break;
    }
    s_teardown(self);
}

zactor_t *bridge_new(const bridge_config_t *config)
{
    bridge_config_t c = *config;
    if (c.timeout_ms <= 0)
        c.timeout_ms = 5000;
    zactor_t *actor = zactor_new(s_bridge_actor, &c);
    if (actor && zsock_wait(actor) != 0)
        zactor_destroy(&actor);
    return actor;
}

int bridge_port(zactor_t *self)
{
    int port = 0;
    zstr_send(self, "PORT");
    zsock_recv(self, "i", &port);
    return port;
}

void bridge_destroy(zactor_t **self_p)
{
    zactor_destroy(self_p);
}

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
 *    0. the request line (MHD's URI log callback): the request_t is made,
 *       so that every request MHD goes on to refuse by itself is still
 *       counted and logged, and the target is held to URL_MAX and
 *       QUERY_ARGS_MAX before MHD files the query's arguments;
 *    1. first handler call: check the head (HEADERS_MAX, HEAD_MAX, how
 *       the body is framed), match the route, check Content-Type and the
 *       announced length; answer nothing yet unless the request cannot be
 *       read on (libmicrohttpd closes the connection when a response is
 *       queued on the first call, which costs 5x in throughput, and is
 *       right only for those);
 *    2. body calls: append up to BODY_MAX bytes (413 past it);
 *    3. last call: build the envelope {"id": [seq, request_id], "op",
 *       "token", "args"} from path, query, headers and body, send it to
 *       the broker, suspend the connection, and file it under `seq`;
 *    4. the reply (or the deadline) prepares the response and resumes the
 *       connection; the handler's next call queues it.
 *  Local routes (/healthz, /openapi.json) answer at step 3; /readyz and
 *  /metrics ask the broker with mmi.services on the bridge's own socket,
 *  whose replies come back in order (readiness needs the broker's live
 *  workers, and the metrics carry the broker's series, wherever the broker
 *  runs).
 *
 *  Errors take the shape of API.md section 3 and their status from the
 *  table in protocol/errors.c, shared with the services; a client that
 *  sends msgpack or accepts it gets them, like every answer, in msgpack.
 *  Nothing is packed unchecked: bodies go through a checked output
 *  (protocol/mpout.h), and running out of memory is answered 503 from a
 *  buffer inside the request, never with a message cut short.
 *
 *  What libmicrohttpd answers by itself. It refuses some requests before
 *  any handler runs: a head that does not fit its per-connection pool
 *  (POOL_BYTES) gets its own HTML 414 or 431, and a Content-Length that
 *  is not a number, or too large for 64 bits, gets a 400 or 413 whose
 *  header block 0.9.75 writes twice (its parse_connection_headers queues
 *  the error, then the caller overwrites the connection's state and the
 *  reply is built again). The limits above keep the first case to heads
 *  past any the bridge accepts; for the second, s_mhd_log finds the
 *  connection when MHD logs the error and sends the contract's answer
 *  itself (see there). protocol/SPEC.md, "The HTTP edge", lists what is
 *  left.
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
#include "protocol/mpout.h"
#include "actors/services.h"
#include "router/api.h"
#include "router/metrics.h"
#include "router/route_args.h"
#include "router/routes.h"

#include <microhttpd.h>
#include <sodium.h>
#include <sys/socket.h>
#include <time.h>
#include <zmq.h>

#define BODY_MAX (1024 * 1024)
#define JSON_MAX_DEPTH 20
#define REQUEST_ID_MAX 64
#define READYZ_TIMEOUT_MS 1000

/* The request head. libmicrohttpd keeps a request's line, its headers and
 * a record per header and query argument (56 bytes each) in one pool per
 * connection; a head that outgrows it is refused by MHD itself (its HTML
 * 414/431, no request id) or, near the edge, closed without an answer
 * when no room is left for the reply. So the bridge's own limits sit well
 * inside the pool: the largest head it accepts (HEAD_MAX, plus the
 * records of HEADERS_MAX headers and QUERY_ARGS_MAX arguments) is about
 * 25 KiB, and anything past a limit but inside the pool is refused in the
 * contract's shape. The pool is not made larger to reach absurd heads:
 * MHD 0.9.75 zeroes the whole pool after every request on a keep-alive
 * connection, and keeps it for as long as the connection lives. */
#define POOL_BYTES (32 * 1024)
#define URL_MAX 8192         /* the request target, path and query, as sent: 414 */
#define QUERY_ARGS_MAX 64    /* 400, naming the query */
#define HEADERS_MAX 100      /* header fields: 431 */
#define HEAD_MAX (16 * 1024) /* request line and header fields: 431 */

/* The 503 for running out of memory, packed inside the request. */
#define OOM_BODY_MAX 192

/* Every error code the bridge counts gets its own series. */
_Static_assert(ERR__COUNT <= METRICS_MAX_ERROR_CODES, "error codes past the metrics' table");

typedef enum { REQ_READING, REQ_WAITING, REQ_READY, REQ_SENT } req_state_t;

typedef struct bridge_s bridge_t;

typedef struct request_s {
    bridge_t *bridge;
    struct MHD_Connection *conn;
    const char *method; /* libmicrohttpd's, valid for the request's life; NULL
                           until the first handler call */
    req_state_t state;
    bool begun;                      /* the handler has seen it */
    struct request_s *hprev, *hnext; /* the heads list, until begun */
    bool in_heads;
    bool url_too_long;  /* found at the request line */
    bool too_many_args; /* found at the request line */
    bool answer_now;    /* the request cannot be read on: answer on the first call */
    bool out_of_memory; /* while reading it: answer 503 once it is read */
    int early_status;   /* of early_error when not its code's own (414, 431); 0: its own */
    int route;          /* index in the route table, -1 if none */
    route_match_t match;
    int64_t start_us;
    char request_id[REQUEST_ID_MAX + 1];
    bool accept_msgpack;
    bool body_msgpack;
    err_code_t early_error; /* found before the body was read */
    const char *early_message;
    const char *early_field; /* invalid_argument: the field to name in details */
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
    int retry_after;             /* seconds; 0: no header */
    bool replayed;               /* Idempotent-Replayed: true */
    const char *error_code;      /* of an error response, for metrics */
    uint64_t mmi_ticket;         /* /readyz: which mmi reply is ours */
    char client_ip[64];          /* for "@client_ip" arguments */
    const char *content_type;    /* of a raw response; NULL: JSON or msgpack */
    char *allow;                 /* the Allow header of a 405; malloc'd */
    char oom_body[OOM_BODY_MAX]; /* the response when memory ran out */
    const char *sent_body;       /* what s_queue handed to MHD, while MHD holds it */
    size_t sent_len;
} request_t;

struct bridge_s {
    bridge_config_t config;
    char broker_endpoint[256];
    char server_key[KEYS_Z85_LEN + 1];
    char *tls_cert, *tls_key; /* file contents */
    zsock_t *pipe;
    zsock_t *dealer;
    zsock_t *mmi;
    zlistx_t *mmi_waiting; /* request_t * waiting for mmi replies, in order */
    uint64_t mmi_sent, mmi_received;
    struct MHD_Daemon *daemon;
    int port;
    int epoll_fd;
    zhashx_t *pending; /* seq (hex) -> request_t */
    request_t *oldest, *youngest;
    request_t *heads;       /* requests whose head MHD is still reading or checking */
    request_t *last_queued; /* the last response handed to MHD, for s_mhd_log */
    uint64_t next_seq;
    char id_prefix[17];
    metrics_t *metrics;
    api_t *api; /* made when the config lacks routes or a document */
    const route_t *routes;
    size_t n_routes;
    const char *openapi; /* served at /openapi.json */
    size_t openapi_len;
    const char **services; /* what /readyz checks: every service of the table */
    size_t n_services;
    route_arg_t *args; /* room for the most arguments a route takes */
    size_t max_args;
    mpout_t scratch;
    msgpack_zone zone;
    bool stopping;
};

static int64_t s_now_us(void)
{
    return zclock_usecs();
}

/* ------------------------------------------------------------------ */
/* Responses                                                           */

/* Drops the prepared response (the OOM buffer is the request's own). */
static void s_response_clear(request_t *req)
{
    if (req->response != req->oom_body)
        free(req->response);
    req->response = NULL;
    req->response_len = 0;
}

/* A msgpack_packer output over a fixed buffer: never allocates. */
typedef struct {
    char *data;
    size_t size, cap;
    bool failed;
} fixed_out_t;

static int s_fixed_write(void *data, const char *buf, size_t len)
{
    fixed_out_t *out = data;
    if (out->failed || len > out->cap - out->size) {
        out->failed = true;
        return -1;
    }
    memcpy(out->data + out->size, buf, len);
    out->size += len;
    return 0;
}

/* Memory ran out while preparing an answer: 503 unavailable, written into
 * the request's own buffer so that it needs no allocation and is whole. */
static void s_set_oom(request_t *req)
{
    s_response_clear(req);
    req->status = 503;
    req->retry_after = 1;
    req->error_code = err_code_name(ERR_UNAVAILABLE);
    req->content_type = NULL;
    req->response_msgpack = req->accept_msgpack;
    static const char message[] = "the server is out of memory";
    size_t len = 0;
    if (req->accept_msgpack) {
        fixed_out_t out = {.data = req->oom_body, .cap = sizeof req->oom_body};
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, s_fixed_write);
        msgpack_pack_map(&pk, 1);
        mp_pack_str(&pk, "error");
        msgpack_pack_map(&pk, 3);
        mp_pack_str(&pk, "code");
        mp_pack_str(&pk, req->error_code);
        mp_pack_str(&pk, "message");
        mp_pack_str(&pk, message);
        mp_pack_str(&pk, "request_id");
        mp_pack_str(&pk, req->request_id);
        len = out.failed ? 0 : out.size; /* cannot fail: 64-byte ids fit */
    } else {
        /* request ids are [A-Za-z0-9._-] only: no escaping needed */
        int n = snprintf(req->oom_body, sizeof req->oom_body,
                         "{\"error\":{\"code\":\"%s\",\"message\":\"%s\",\"request_id\":\"%s\"}}",
                         req->error_code, message, req->request_id);
        len = n > 0 && (size_t)n < sizeof req->oom_body ? (size_t)n : 0;
    }
    req->response = req->oom_body;
    req->response_len = len;
}

/* jsonpack reports running out of memory only in its message. */
static bool s_is_oom(const char *err)
{
    return strncmp(err, "out of memory", 13) == 0;
}

/* Turns a msgpack body into the response, as msgpack or JSON. */
static void s_set_body(request_t *req, int status, const char *mp, size_t len)
{
    req->status = status;
    s_response_clear(req);
    req->response_msgpack = req->accept_msgpack;
    if (status == 204 || len == 0)
        return;
    if (req->accept_msgpack) {
        req->response = malloc(len);
        if (!req->response) {
            s_set_oom(req);
            return;
        }
        memcpy(req->response, mp, len);
        req->response_len = len;
        return;
    }
    char err[128];
    req->response = jsonpack_bytes_to_json_text(mp, len, 0, err, sizeof err);
    if (req->response)
        req->response_len = strlen(req->response);
    else if (s_is_oom(err))
        s_set_oom(req);
    else {
        zsys_error("bridge: %s: reply not convertible to JSON: %s", req->request_id, err);
        req->status = 500;
        req->error_code = err_code_name(ERR_INTERNAL);
        /* written by hand: the error packer would come back here */
        size_t cap = 160 + sizeof req->request_id;
        req->response = malloc(cap);
        if (!req->response) {
            s_set_oom(req);
            return;
        }
        int n = snprintf(req->response, cap,
                         "{\"error\":{\"code\":\"internal\",\"message\":\"the reply could not be "
                         "written as JSON\",\"request_id\":\"%s\"}}",
                         req->request_id);
        req->response_len = n > 0 && (size_t)n < cap ? (size_t)n : 0;
    }
}

static void s_set_error_status(request_t *req, int status, err_code_t code, const char *message,
                               const void *details, size_t details_len);

static void s_set_error(request_t *req, err_code_t code, const char *message, const void *details,
                        size_t details_len)
{
    s_set_error_status(req, 0, code, message, details, details_len);
}

/* Prepares a successful response from a reply's data. */
static void s_set_data(request_t *req, int status, const msgpack_object *data)
{
    if (status == 204 || !req->accept_msgpack) {
        req->status = status;
        s_response_clear(req);
        req->response_msgpack = false;
        if (status == 204)
            return;
        char err[128];
        req->response = jsonpack_to_json_text(data, 0, err, sizeof err);
        if (req->response) {
            req->response_len = strlen(req->response);
            return;
        }
        if (s_is_oom(err)) {
            s_set_oom(req);
            return;
        }
        zsys_error("bridge: %s: reply not convertible to JSON: %s", req->request_id, err);
        s_set_error(req, ERR_INTERNAL, "the reply could not be written as JSON", NULL, 0);
        return;
    }
    mpout_t *out = &req->bridge->scratch;
    mpout_clear(out);
    msgpack_packer pk;
    mpout_packer(out, &pk);
    msgpack_pack_object(&pk, *data);
    if (out->failed)
        s_set_oom(req);
    else
        s_set_body(req, status, out->buf.data, out->buf.size);
}

/* Prepares an error response: {"error": {code, message, request_id,
 * details?}}, with the code's status unless status is not 0 (414 and 431
 * share payload_too_large with 413). details is one packed msgpack value
 * or NULL. */
static void s_set_error_status(request_t *req, int status, err_code_t code, const char *message,
                               const void *details, size_t details_len)
{
    req->error_code = err_code_name(code);
    mpout_t *out = &req->bridge->scratch;
    mpout_clear(out);
    msgpack_packer pk;
    mpout_packer(out, &pk);
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
        mp_pack_raw(&pk, details, details_len);
    }
    if (out->failed)
        s_set_oom(req);
    else
        s_set_body(req, status ? status : err_http_status(code), out->buf.data, out->buf.size);
}

/* invalid_argument naming one field: details {"fields": [{field, problem}]}. */
static void s_set_invalid(request_t *req, const char *field, size_t field_len, const char *problem)
{
    mpout_t details;
    mpout_init(&details, 0);
    msgpack_packer dp;
    mpout_packer(&details, &dp);
    msgpack_pack_map(&dp, 1);
    mp_pack_str(&dp, "fields");
    msgpack_pack_array(&dp, 1);
    msgpack_pack_map(&dp, 2);
    mp_pack_str(&dp, "field");
    mp_pack_strn(&dp, field, field_len);
    mp_pack_str(&dp, "problem");
    mp_pack_str(&dp, problem);
    char message[160];
    snprintf(message, sizeof message, "invalid argument: %.*s %s", (int)field_len, field, problem);
    if (details.failed)
        s_set_oom(req);
    else
        s_set_error(req, ERR_INVALID_ARGUMENT, message, details.buf.data, details.buf.size);
    mpout_destroy(&details);
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
    if (!method)
        return "-"; /* refused before the handler saw it */
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

/* The answer has left (queued, or written by s_mhd_log): count and log it. */
static void s_account(request_t *req, size_t bytes)
{
    req->state = REQ_SENT;
    int64_t duration = s_now_us() - req->start_us;
    metrics_request_end(req->bridge->metrics, req->route, req->status, req->error_code, duration);
    s_access_log(req, bytes, duration);
}

/* Queues the prepared response. Called from the handler only, and on its
 * first call only for requests that cannot be read on. */
static enum MHD_Result s_queue(request_t *req)
{
    /* An empty body (204) is a static "", and the OOM body the request's
     * own: neither may be handed over to libmicrohttpd to free. */
    bool own = req->response && req->response != req->oom_body;
    char *body = req->response ? req->response : (char *)"";
    struct MHD_Response *response = MHD_create_response_from_buffer(
        req->response_len, body, own ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO; /* libmicrohttpd closes the connection */
    size_t bytes = req->response_len;
    if (own)
        req->response = NULL; /* libmicrohttpd frees it */
    char seconds[16];
    snprintf(seconds, sizeof seconds, "%d", req->retry_after);
    bool added =
        (req->status == 204 ||
         MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE,
                                 req->content_type       ? req->content_type
                                 : req->response_msgpack ? "application/msgpack"
                                                         : "application/json") == MHD_YES) &&
        (!req->allow ||
         MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, req->allow) == MHD_YES) &&
        MHD_add_response_header(response, "X-Request-Id", req->request_id) == MHD_YES &&
        (req->retry_after <= 0 ||
         MHD_add_response_header(response, MHD_HTTP_HEADER_RETRY_AFTER, seconds) == MHD_YES) &&
        (!req->replayed ||
         MHD_add_response_header(response, "Idempotent-Replayed", "true") == MHD_YES);
    if (!added) {
        /* out of memory: better no answer than one without its headers */
        MHD_destroy_response(response);
        return MHD_NO;
    }
    /* for s_mhd_log, should MHD find no room to build the header block */
    req->bridge->last_queued = req;
    req->sent_body = body;
    req->sent_len = bytes;
    enum MHD_Result rc = MHD_queue_response(req->conn, (unsigned)req->status, response);
    MHD_destroy_response(response);
    s_account(req, bytes);
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
        snprintf(req->request_id, sizeof req->request_id, "%s-%" PRIu64, self->id_prefix, req->seq);
}

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

/* route_args' lookup: libmicrohttpd's split and decoded query and
 * headers, and the connection's properties. */
static const char *s_lookup(void *ctx, route_from_t from, const char *source)
{
    request_t *req = ctx;
    if (source[0] == '@')
        return s_connection_value(req, source);
    return MHD_lookup_connection_value(
        req->conn, from == ROUTE_FROM_QUERY ? MHD_GET_ARGUMENT_KIND : MHD_HEADER_KIND, source);
}

/* Builds the envelope for req into self->scratch. False (with the error
 * response prepared) when the request is not acceptable. */
static bool s_build_envelope(bridge_t *self, request_t *req)
{
    const route_t *route = &self->routes[req->route];
    route_arg_t *args = self->args;
    int n = route_args_collect(route, &req->match, s_lookup, req, args, (int)self->max_args);

    /* The body, as a msgpack map. */
    msgpack_object body = {.type = MSGPACK_OBJECT_MAP};
    msgpack_sbuffer converted;
    msgpack_sbuffer_init(&converted);
    msgpack_zone_clear(&self->zone);
    char err[160] = "";
    jsonpack_body_t accepted = JSONPACK_BODY_OK;
    if (route->body && req->body_len > 0)
        accepted =
            jsonpack_body_map(req->body, req->body_len, req->body_msgpack, BODY_MAX, JSON_MAX_DEPTH,
                              &converted, &self->zone, &body, err, sizeof err);
    if (accepted != JSONPACK_BODY_OK) {
        if (accepted == JSONPACK_BODY_OUT_OF_MEMORY)
            s_set_oom(req);
        else
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

    mpout_t *out = &self->scratch;
    mpout_clear(out);
    msgpack_packer pk;
    mpout_packer(out, &pk);
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
        if (!route_args_named(args, n, k->via.str.ptr, k->via.str.size))
            from_body++;
    }
    msgpack_pack_map(&pk, (size_t)n + from_body);
    const route_arg_t *bad = NULL;
    for (int i = 0; i < n; i++)
        if (!route_arg_pack(&pk, &args[i]) && !bad)
            bad = &args[i];
    for (uint32_t i = 0; i < body.via.map.size; i++) {
        const msgpack_object *k = &body.via.map.ptr[i].key;
        if (route_args_named(args, n, k->via.str.ptr, k->via.str.size))
            continue;
        msgpack_pack_object(&pk, *k);
        msgpack_pack_object(&pk, body.via.map.ptr[i].val);
    }
    msgpack_sbuffer_destroy(&converted);
    if (bad) {
        const char *problem = bad->type == 'i'   ? "must be an integer"
                              : bad->type == 'b' ? "must be true or false"
                                                 : "must be valid UTF-8";
        s_set_invalid(req, bad->name, bad->name_len, problem);
        return false;
    }
    if (out->failed) {
        s_set_oom(req);
        return false;
    }
    /* A body under 1 MiB of JSON can grow past the envelope's limit as
     * msgpack (a real takes 9 bytes, "1.5" 3): the broker would refuse it
     * without an id to answer by, so it is refused here, at once. */
    if (out->buf.size > ENVELOPE_MAX_BYTES) {
        s_set_error(req, ERR_PAYLOAD_TOO_LARGE, "the request is over the size limit as msgpack",
                    NULL, 0);
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
    /* Filed before it is sent: a reply whose request could not be filed
     * would be dropped, and the client answered a false 504. */
    char key[17];
    snprintf(key, sizeof key, "%016" PRIx64, req->seq);
    if (zhashx_insert(self->pending, key, req) != 0) {
        s_set_oom(req);
        req->state = REQ_READY;
        return;
    }
    const char *service = self->routes[req->route].service;
    void *sock = zsock_resolve(self->dealer);
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE) < 0 || zmq_send(sock, MDP_CLIENT, 6, ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, service, strlen(service), ZMQ_SNDMORE) < 0 ||
        zmq_send(sock, self->scratch.buf.data, self->scratch.buf.size, ZMQ_DONTWAIT) < 0) {
        zhashx_delete(self->pending, key);
        s_set_error(req, ERR_UNAVAILABLE, "the broker is not reachable", NULL, 0);
        req->state = REQ_READY;
        return;
    }
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

    if (reply.ok) {
        s_set_data(req, self->routes[req->route].ok_status, &reply.data);
        req->replayed = reply.replayed;
    } else {
        const msgpack_object *message = mp_map_get(&reply.error, "message");
        const msgpack_object *details = mp_map_get(&reply.error, "details");
        char text[256] = "";
        if (message && message->type == MSGPACK_OBJECT_STR)
            snprintf(text, sizeof text, "%.*s", (int)message->via.str.size, message->via.str.ptr);
        /* s_set_error writes into scratch: give it the details packed apart */
        mpout_t packed;
        mpout_init(&packed, 0);
        if (details) {
            const msgpack_object *retry = mp_map_get(details, "retry_after");
            if (retry && retry->type == MSGPACK_OBJECT_POSITIVE_INTEGER && retry->via.u64 < 86400)
                req->retry_after = (int)retry->via.u64;
            msgpack_packer pk;
            mpout_packer(&packed, &pk);
            msgpack_pack_object(&pk, *details);
        }
        if (packed.failed)
            s_set_oom(req);
        else
            s_set_error(req, reply.code, text[0] ? text : NULL, details ? packed.buf.data : NULL,
                        packed.buf.size);
        mpout_destroy(&packed);
        req->replayed = reply.replayed;
    }
    s_ready(self, req);
}

/* ------------------------------------------------------------------ */
/* Local routes                                                        */

static void s_set_json_text(request_t *req, int status, const char *json)
{
    /* Local answers are written as JSON; msgpack clients get them packed. */
    mpout_t *out = &req->bridge->scratch;
    mpout_clear(out);
    char err[64];
    if (jsonpack_from_json(json, strlen(json), &out->buf, 8, err, sizeof err) == 0)
        s_set_body(req, status, out->buf.data, out->buf.size);
    else if (s_is_oom(err))
        s_set_oom(req);
    else
        s_set_error(req, ERR_INTERNAL, "could not write the answer", NULL, 0);
}

static void s_set_raw(request_t *req, int status, char *text, size_t len, const char *content_type)
{
    req->content_type = content_type;
    req->status = status;
    s_response_clear(req);
    req->response = text;
    req->response_len = len;
    req->response_msgpack = false;
}

static void s_mmi_answer(bridge_t *self, request_t *req, const msgpack_object *list);

/* /readyz and /metrics: one mmi.services request on the mmi socket. The
 * broker answers mmi requests at once and in order, so the k-th reply is
 * for ticket k. */
static void s_mmi_ask(bridge_t *self, request_t *req)
{
    if (zstr_sendx(self->mmi, "", MDP_CLIENT, "mmi.services", "", NULL) != 0) {
        s_mmi_answer(self, req, NULL);
        return;
    }
    req->mmi_ticket = ++self->mmi_sent;
    if (!zlistx_add_end(self->mmi_waiting, req)) {
        /* its reply will come and find no one: skip its ticket then */
        s_set_oom(req);
        req->state = REQ_READY;
        return;
    }
    req->deadline = zclock_mono() + READYZ_TIMEOUT_MS;
    req->state = REQ_WAITING;
}

/* Does the broker's mmi.services list show a live worker for service? */
static bool s_service_live(const msgpack_object *list, const char *service)
{
    for (uint32_t k = 0; k < list->via.array.size; k++) {
        const msgpack_object *s = &list->via.array.ptr[k];
        const msgpack_object *workers = mp_map_get(s, "workers");
        if (mp_str_eq(mp_map_get(s, "name"), service) && workers &&
            workers->type == MSGPACK_OBJECT_POSITIVE_INTEGER && workers->via.u64 > 0)
            return true;
    }
    return false;
}

/* Answers a readyz: list is the broker's mmi.services array, or NULL when
 * the broker did not answer. Every service of the route table is checked
 * and every missing one named. */
static void s_readyz_answer(bridge_t *self, request_t *req, const msgpack_object *list)
{
    size_t missing = list ? 0 : 1; /* "broker" */
    for (size_t i = 0; list && i < self->n_services; i++)
        missing += !s_service_live(list, self->services[i]);
    mpout_t *out = &self->scratch;
    mpout_clear(out);
    msgpack_packer pk;
    mpout_packer(out, &pk);
    msgpack_pack_map(&pk, missing ? 2 : 1);
    mp_pack_str(&pk, "status");
    mp_pack_str(&pk, missing ? "unavailable" : "ready");
    if (missing) {
        mp_pack_str(&pk, "missing");
        msgpack_pack_array(&pk, missing);
        if (!list)
            mp_pack_str(&pk, "broker");
        for (size_t i = 0; list && i < self->n_services; i++)
            if (!s_service_live(list, self->services[i]))
                mp_pack_str(&pk, self->services[i]);
    }
    if (out->failed)
        s_set_oom(req);
    else
        s_set_body(req, missing ? 503 : 200, out->buf.data, out->buf.size);
}

/* Answers a /metrics: the bridge's series, the broker's (from list, the
 * mmi.services array, or NULL when the broker did not answer), then the
 * process's own (worker restarts). */
static void s_metrics_answer(bridge_t *self, request_t *req, const msgpack_object *list)
{
    size_t len = 0, broker_len = 0;
    char *text = metrics_render(self->metrics, &len);
    char *broker = metrics_render_broker(list, &broker_len);
    char *extra = self->config.metrics_extra
                      ? self->config.metrics_extra(self->config.metrics_extra_arg)
                      : NULL;
    size_t extra_len = extra ? strlen(extra) : 0;
    char *whole = NULL;
    bool complete = text && broker && (extra || !self->config.metrics_extra);
    if (complete)
        whole = realloc(text, len + broker_len + extra_len + 1);
    if (whole) {
        memcpy(whole + len, broker, broker_len);
        if (extra)
            memcpy(whole + len + broker_len, extra, extra_len);
        len += broker_len + extra_len;
        whole[len] = '\0';
        s_set_raw(req, 200, whole, len, "text/plain; version=0.0.4; charset=utf-8");
    } else {
        free(text);
        s_set_oom(req);
    }
    free(broker);
    free(extra);
}

/* Answers a request waiting on mmi.services (list NULL: no answer). */
static void s_mmi_answer(bridge_t *self, request_t *req, const msgpack_object *list)
{
    if (self->routes[req->route].local == LOCAL_METRICS)
        s_metrics_answer(self, req, list);
    else
        s_readyz_answer(self, req, list);
    void *handle = zlistx_find(self->mmi_waiting, req);
    if (handle)
        zlistx_delete(self->mmi_waiting, handle);
    s_ready(self, req);
}

static void s_on_mmi(bridge_t *self)
{
    zmsg_t *msg = zmsg_recv(self->mmi);
    if (!msg)
        return;
    uint64_t ticket = ++self->mmi_received;
    request_t *req = zlistx_first(self->mmi_waiting);
    if (req && req->mmi_ticket == ticket) {
        zframe_t *body = zmsg_last(msg);
        msgpack_zone_clear(&self->zone);
        msgpack_object list;
        size_t off = 0;
        bool valid = body && mpcheck(zframe_data(body), zframe_size(body), 1 << 20, 4) == MP_OK &&
                     msgpack_unpack((const char *)zframe_data(body), zframe_size(body), &off,
                                    &self->zone, &list) == MSGPACK_UNPACK_SUCCESS &&
                     list.type == MSGPACK_OBJECT_ARRAY;
        s_mmi_answer(self, req, valid ? &list : NULL);
    }
    zmsg_destroy(&msg); /* else a reply for a request that gave up */
}

static void s_answer_local(bridge_t *self, request_t *req)
{
    switch (self->routes[req->route].local) {
    case LOCAL_HEALTHZ:
        s_set_json_text(req, 200, "{\"status\":\"ok\"}");
        break;
    case LOCAL_OPENAPI: {
        char *copy = malloc(self->openapi_len);
        if (copy) {
            memcpy(copy, self->openapi, self->openapi_len);
            s_set_raw(req, 200, copy, self->openapi_len, "application/json");
        } else
            s_set_oom(req);
        break;
    }
    case LOCAL_READYZ:
    case LOCAL_METRICS:
        s_mmi_ask(self, req);
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

/* The heads list: requests made at their request line and not yet seen by
 * the handler, which s_mhd_log searches. */
static void s_heads_add(bridge_t *self, request_t *req)
{
    req->hprev = NULL;
    req->hnext = self->heads;
    if (self->heads)
        self->heads->hprev = req;
    self->heads = req;
    req->in_heads = true;
}

static void s_heads_remove(bridge_t *self, request_t *req)
{
    if (!req->in_heads)
        return;
    if (req->hprev)
        req->hprev->hnext = req->hnext;
    else
        self->heads = req->hnext;
    if (req->hnext)
        req->hnext->hprev = req->hprev;
    req->hprev = req->hnext = NULL;
    req->in_heads = false;
}

static request_t *s_request_new(bridge_t *self, struct MHD_Connection *conn)
{
    request_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->bridge = self;
    req->conn = conn;
    req->start_us = s_now_us();
    req->seq = ++self->next_seq;
    req->route = -1;
    s_request_id(self, req); /* one made up: no header is known yet */
    metrics_request_start(self->metrics);
    s_heads_add(self, req);
    return req;
}

/* msgpack for a client that accepts it, or that sends it and does not
 * ask for JSON (API.md section 2: "sends and/or accepts"). */
static void s_negotiate(request_t *req)
{
    const char *accept = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Accept");
    const char *type = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Content-Type");
    bool sends_msgpack = false;
    (void)s_content_type_ok(type, &sends_msgpack);
    req->accept_msgpack = (accept && strcasestr(accept, "application/msgpack")) ||
                          (sends_msgpack && !(accept && strcasestr(accept, "application/json")));
}

/* MHD_OPTION_URI_LOG_CALLBACK: the request line has been read, its
 * arguments not yet filed. uri is the target as sent (path and query).
 * libmicrohttpd files a 56-byte record per query argument in the
 * connection's pool, and 0.9.75 closes the connection without a word when
 * they do not fit (the error it queues is lost when the caller overwrites
 * the connection's state); 500 arguments in a 1 KiB URL are enough. So a
 * target over URL_MAX, or with more than QUERY_ARGS_MAX arguments, is
 * marked here to be refused, and its query cut off at the '?' so that MHD
 * files none of it: MHD finds the '?' before this call and parses what
 * follows it after, in its own read buffer, which is what uri points
 * into. Only requests refused anyway are touched. */
static void *s_uri_logged(void *cls, const char *uri, struct MHD_Connection *conn)
{
    bridge_t *self = cls;
    request_t *req = s_request_new(self, conn);
    if (!req)
        return NULL; /* the handler makes one, or closes the connection */
    size_t len = strlen(uri);
    char *query = memchr(uri, '?', len);
    size_t args = 0;
    for (const char *p = query; p && args <= QUERY_ARGS_MAX; p = strchr(p + 1, '&'))
        args++;
    req->url_too_long = len > URL_MAX;
    req->too_many_args = args > QUERY_ARGS_MAX;
    if (query && (req->url_too_long || req->too_many_args))
        query[1] = '\0';
    return req;
}

/* Counts the header fields of a request, and those that frame its body. */
typedef struct {
    size_t fields;
    size_t lengths;   /* Content-Length */
    size_t encodings; /* Transfer-Encoding */
} head_scan_t;

static enum MHD_Result s_scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                     const char *value)
{
    (void)kind;
    (void)value;
    head_scan_t *scan = cls;
    scan->fields++;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        scan->lengths++;
    else if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0)
        scan->encodings++;
    return MHD_YES;
}

/* A Transfer-Encoding value: 0 for "chunked" alone, 1 for chunked after
 * other codings, 2 when chunked is not the last coding. */
static int s_transfer_coding(const char *value)
{
    const char *last = strrchr(value, ',');
    const char *p = last ? last + 1 : value;
    while (*p == ' ' || *p == '\t')
        p++;
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    if (n != 7 || strncasecmp(p, "chunked", 7) != 0)
        return 2;
    return last ? 1 : 0;
}

/* Marks a request to be refused once the handler may answer (at once
 * when now: the request cannot be read on). status 0: the code's own. */
static void s_early(request_t *req, err_code_t code, int status, const char *message, bool now)
{
    if (req->early_error)
        return; /* the first problem found is the one told */
    req->early_error = code;
    req->early_status = status;
    req->early_message = message;
    req->answer_now = now;
}

/* The first handler call: the head is complete. Checks it in the order a
 * client can act on: the head's size, how its body is framed, the route,
 * what the body is. */
static void s_request_begin(bridge_t *self, request_t *req, const char *method, const char *url)
{
    s_heads_remove(self, req);
    req->begun = true;
    req->method = method;
    struct MHD_Connection *conn = req->conn;
    s_request_id(self, req);
    s_negotiate(req);

    if (req->url_too_long)
        s_early(req, ERR_PAYLOAD_TOO_LARGE, 414, "the URL is over 8192 bytes", true);
    head_scan_t scan = {0};
    (void)MHD_get_connection_values(conn, MHD_HEADER_KIND, s_scan_header, &scan);
    const union MHD_ConnectionInfo *head =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (scan.fields > HEADERS_MAX)
        s_early(req, ERR_PAYLOAD_TOO_LARGE, 431, "more than 100 header fields", true);
    if (head && head->header_size > HEAD_MAX)
        s_early(req, ERR_PAYLOAD_TOO_LARGE, 431, "the request line and headers are over 16 KiB",
                true);
    /* How long the body is must be beyond doubt (RFC 9112 section 6): a
     * request MHD would frame one way and a proxy another is refused, and
     * the connection closed, since where the next request starts is not
     * known. */
    const char *te =
        MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_TRANSFER_ENCODING);
    if (scan.lengths > 1 || scan.encodings > 1)
        s_early(req, ERR_MALFORMED_BODY, 0,
                "Content-Length or Transfer-Encoding is given more than once", true);
    else if (te && scan.lengths)
        s_early(req, ERR_MALFORMED_BODY, 0, "both Content-Length and Transfer-Encoding are given",
                true);
    else if (te && s_transfer_coding(te) == 2)
        s_early(req, ERR_MALFORMED_BODY, 0,
                "the body's length is unknown: Transfer-Encoding must end with chunked", true);
    else if (te && s_transfer_coding(te) == 1)
        s_early(req, ERR_UNSUPPORTED_MEDIA_TYPE, 0, "only Transfer-Encoding: chunked is supported",
                true);
    if (req->too_many_args) {
        s_early(req, ERR_INVALID_ARGUMENT, 0, "has more than 64 parameters", false);
        req->early_field = "query";
    }

    route_result_t found = routes_match(self->routes, self->n_routes, method, url, &req->match);
    if (found == ROUTE_FOUND)
        req->route = req->match.index;
    else if (found == ROUTE_NO_METHOD) {
        size_t need = routes_allowed(self->routes, self->n_routes, url, NULL, 0) + 1;
        req->allow = malloc(need);
        if (req->allow)
            routes_allowed(self->routes, self->n_routes, url, req->allow, need);
        else
            req->out_of_memory = true;
        s_early(req, ERR_METHOD_NOT_ALLOWED, 0, "the path exists, but not with this method", false);
    } else
        s_early(req, ERR_NOT_FOUND, 0, "no such route", false);
    bool body_msgpack = false;
    const char *type = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type");
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    bool has_body = (length && strcmp(length, "0") != 0) || te;
    if (has_body && !s_content_type_ok(type, &body_msgpack))
        s_early(req, ERR_UNSUPPORTED_MEDIA_TYPE, 0, "send application/json or application/msgpack",
                false);
    req->body_msgpack = body_msgpack;
    /* answered before the body is read: it would be thrown away */
    if (length && strtoull(length, NULL, 10) > BODY_MAX)
        s_early(req, ERR_PAYLOAD_TOO_LARGE, 0, "the body is over 1 MiB", true);
}

/* Prepares the answer to a request refused before its body was read. */
static void s_set_early(request_t *req)
{
    if (req->out_of_memory)
        s_set_oom(req);
    else if (req->early_field)
        s_set_invalid(req, req->early_field, strlen(req->early_field), req->early_message);
    else
        s_set_error_status(req, req->early_status, req->early_error, req->early_message, NULL, 0);
}

static enum MHD_Result s_handler(void *cls, struct MHD_Connection *conn, const char *url,
                                 const char *method, const char *version, const char *upload_data,
                                 size_t *upload_data_size, void **con_cls)
{
    (void)version;
    bridge_t *self = cls;
    request_t *req = *con_cls;
    if (!req) { /* s_uri_logged ran out of memory */
        req = s_request_new(self, conn);
        if (!req)
            return MHD_NO;
        *con_cls = req;
    }
    if (!req->begun) {
        s_request_begin(self, req, method, url);
        if (req->answer_now) {
            /* Answering now makes libmicrohttpd close the connection
             * instead of reading a body we would throw away (or, with its
             * length unknown, waiting for one): right here. */
            s_set_early(req);
            return s_queue(req);
        }
        return MHD_YES; /* never answer on the first call: it costs keep-alive */
    }
    if (req->state == REQ_READING && *upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->early_error || req->out_of_memory)
            return MHD_YES; /* read and drop */
        if (req->body_len + n > BODY_MAX) {
            s_early(req, ERR_PAYLOAD_TOO_LARGE, 0, "the body is over 1 MiB", false);
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
            if (!grown) {
                /* read the rest and drop it, then answer 503 */
                req->out_of_memory = true;
                free(req->body);
                req->body = NULL;
                req->body_len = req->body_cap = 0;
                return MHD_YES;
            }
            req->body = grown;
            req->body_cap = cap;
        }
        memcpy(req->body + req->body_len, upload_data, n);
        req->body_len += n;
        return MHD_YES;
    }
    if (req->state == REQ_READING) {
        if (req->early_error || req->out_of_memory) {
            s_set_early(req);
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
    (void)toe;
    bridge_t *self = cls;
    request_t *req = *con_cls;
    if (!req)
        return;
    s_heads_remove(self, req);
    if (self->last_queued == req)
        self->last_queued = NULL;
    if (req->state != REQ_SENT) {
        /* Not answered by the bridge: refused by libmicrohttpd itself (its
         * status is still known here), or the client went away first. */
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_HTTP_STATUS);
        req->status = info ? (int)info->http_status : 499;
        int64_t duration = s_now_us() - req->start_us;
        metrics_request_end(self->metrics, req->route, req->status, NULL, duration);
        s_access_log(req, 0, duration);
    }
    s_unfile(self, req);
    void *handle = zlistx_find(self->mmi_waiting, req);
    if (handle)
        zlistx_delete(self->mmi_waiting, handle);
    free(req->body);
    s_response_clear(req);
    free(req->allow);
    free(req);
    *con_cls = NULL;
}

/* Writes req's answer (status, the headers s_queue would add, body) to
 * its socket past libmicrohttpd, then shuts the socket's sending side so
 * that what MHD writes after fails and it closes the connection. Only for
 * s_mhd_log's two cases, where MHD would otherwise send something broken
 * or nothing; never over TLS (the socket carries records, not text). An
 * error answer is a few hundred bytes on a connection whose last reply has
 * left, so the socket buffer takes it whole; a large reply at the pool's
 * edge may not fit, and then the client sees it cut short (its
 * Content-Length tells) where MHD would have sent nothing. False when
 * nothing could be written (then MHD's own course stands). */
static bool s_send_past_mhd(request_t *req, const char *body, size_t len)
{
    const union MHD_ConnectionInfo *fd =
        MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!fd)
        return false;
    char date[40];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    const char *type = req->content_type       ? req->content_type
                       : req->response_msgpack ? "application/msgpack"
                                               : "application/json";
    char head[1024];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nConnection: close\r\n%s%s%s"
                     "X-Request-Id: %s\r\nContent-Length: %zu\r\n%s%s%s%s\r\n",
                     req->status, MHD_get_reason_phrase_for((unsigned)req->status), date,
                     req->status == 204 ? "" : "Content-Type: ", req->status == 204 ? "" : type,
                     req->status == 204 ? "" : "\r\n", req->request_id, len,
                     req->allow ? "Allow: " : "", req->allow ? req->allow : "",
                     req->allow ? "\r\n" : "", req->retry_after > 0 ? "Retry-After: 1\r\n" : "");
    if (n <= 0 || (size_t)n >= sizeof head)
        return false;
    /* a HEAD answer has the GET answer's headers and no body */
    bool no_body = len == 0 || (req->method && strcmp(req->method, "HEAD") == 0);
    struct iovec iov[2] = {{head, (size_t)n}, {(void *)body, len}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = no_body ? 1 : 2};
    if (sendmsg(fd->connect_fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT) <= 0)
        return false;
    if (shutdown(fd->connect_fd, SHUT_WR) != 0)
        zsys_warning("bridge: %s: shutdown past libmicrohttpd: %s", req->request_id,
                     strerror(errno));
    return true;
}

/* A head refused in libmicrohttpd's parse_connection_headers (see
 * s_mhd_log): answer it in the contract's shape. */
static void s_mend_refused_head(bridge_t *self, int status, err_code_t code, const char *message)
{
    /* MHD logs the problem just before it queues its error, and then the
     * connection is the only one of the heads list whose head is complete
     * (its header size is known) without a response: every other complete
     * head has reached the handler (and left the list) or has MHD's own
     * answer. */
    request_t *found = NULL;
    int candidates = 0;
    for (request_t *r = self->heads; r; r = r->hnext)
        if (r->state != REQ_SENT &&
            MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE) &&
            !MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_HTTP_STATUS)) {
            found = r;
            candidates++;
        }
    if (candidates != 1)
        return; /* cannot happen (see above); if it did, MHD's answer stands */
    /* The headers are parsed: the client's request id and format apply. */
    s_request_id(self, found);
    s_negotiate(found);
    s_set_error_status(found, status, code, message, NULL, 0);
    if (s_send_past_mhd(found, found->response, found->response_len))
        s_account(found, found->response_len);
    s_response_clear(found);
}

/* MHD_OPTION_EXTERNAL_LOGGER, for two flaws of libmicrohttpd 0.9.75 that
 * no option avoids; every other message is ignored, as MHD's default
 * logger would without MHD_USE_ERROR_LOG (some of them name URLs).
 *
 * 1. When parse_connection_headers finds a Content-Length that is not a
 *    number, or does not fit 64 bits (or no room in the pool to parse the
 *    cookies), it queues its error, and its caller then overwrites the
 *    connection's state: the handler is never called, and the header
 *    block is built a second time, so the client gets two status lines
 *    (fixed upstream in 1.0.0, commit f1bfbe71). MHD logs the problem
 *    first; s_mend_refused_head answers instead.
 * 2. When a head fills the pool to within a few hundred bytes, no room is
 *    left to build the reply's header block, and MHD closes the
 *    connection without a word. The reply is the one s_queue has just
 *    handed over (MHD builds the header block right after the handler
 *    returns, with no other connection's work in between), and its body
 *    lives until MHD destroys it, after this message: it is sent here. */
static void s_mhd_log(void *cls, const char *fmt, va_list ap)
{
    bridge_t *self = cls;
    static const struct {
        const char *prefix;
        int status;
        err_code_t code;
        const char *message;
    } refused[] = {
        {"Failed to parse `Content-Length' header", 400, ERR_MALFORMED_BODY,
         "Content-Length is not a decimal number"},
        {"Too large value of 'Content-Length' header", 413, ERR_PAYLOAD_TOO_LARGE,
         "the body is over 1 MiB"},
        {"Not enough memory in pool to parse cookies", 431, ERR_PAYLOAD_TOO_LARGE,
         "the headers are too large"},
    };
    static const char lost[] = "Closing connection (failed to create response header)";
    if (self->tls_cert)
        return;
    for (size_t k = 0; k < sizeof refused / sizeof refused[0]; k++)
        if (strncmp(fmt, refused[k].prefix, strlen(refused[k].prefix)) == 0) {
            s_mend_refused_head(self, refused[k].status, refused[k].code, refused[k].message);
            return;
        }
    if (strcmp(fmt, "%s\n") != 0 || !self->last_queued)
        return;
    va_list args;
    va_copy(args, ap);
    const char *text = va_arg(args, const char *);
    va_end(args);
    if (text && strncmp(text, lost, sizeof lost - 1) == 0) {
        request_t *req = self->last_queued;
        self->last_queued = NULL;
        (void)s_send_past_mhd(req, req->sent_body, req->sent_len);
    }
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
    request_t *req = zlistx_first(self->mmi_waiting);
    while (req && req->deadline <= now) {
        s_mmi_answer(self, req, NULL);
        req = zlistx_first(self->mmi_waiting);
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
    /* The bridge is its own caller: "bridge", by its certificate over TCP
     * or by name in this process, never a default it shares. */
    if (self->config.cert)
        keys_apply_client(sock, self->config.cert, self->server_key);
    else if (keys_name_inproc(sock, "bridge") != 0)
        zsock_destroy(&sock);
    if (sock && zsock_connect(sock, "%s", self->broker_endpoint) != 0)
        zsock_destroy(&sock);
    return sock;
}

static int s_setup(bridge_t *self)
{
    const bridge_config_t *c = &self->config;
    self->pending = zhashx_new();
    self->mmi_waiting = zlistx_new();
    char why[256];
    if (!c->routes || !c->openapi) {
        size_t n;
        const service_def_t *const *all = services_all(&n);
        self->api = api_new(all, n, why, sizeof why);
        if (!self->api) {
            zsys_error("bridge: the API cannot be assembled: %s", why);
            return -1;
        }
    }
    if (c->routes) {
        self->routes = c->routes;
        self->n_routes = c->n_routes;
    } else
        self->routes = api_routes(self->api, &self->n_routes);
    if (c->openapi) {
        self->openapi = c->openapi;
        self->openapi_len = strlen(c->openapi);
    } else
        self->openapi = api_openapi(self->api, &self->openapi_len);
    /* Whatever the table holds, the bridge is sized for all of it, or
     * refuses to start: nothing is served in part. */
    if (routes_check(self->routes, self->n_routes, why, sizeof why) != 0) {
        zsys_error("bridge: the route table cannot be served: %s", why);
        return -1;
    }
    self->max_args = routes_max_args(self->routes, self->n_routes);
    self->args = calloc(self->max_args ? self->max_args : 1, sizeof *self->args);
    self->n_services = routes_services(self->routes, self->n_routes, NULL, 0);
    self->services = calloc(self->n_services ? self->n_services : 1, sizeof *self->services);
    if (self->services)
        routes_services(self->routes, self->n_routes, self->services, self->n_services);
    self->metrics = metrics_new_for_routes(self->routes, self->n_routes);
    self->dealer = s_broker_socket(self);
    self->mmi = s_broker_socket(self);
    if (!self->pending || !self->mmi_waiting || !self->args || !self->services || !self->metrics ||
        !self->dealer || !self->mmi)
        return -1;

    unsigned char random[8];
    randombytes_buf(random, sizeof random);
    for (int i = 0; i < 8; i++)
        snprintf(self->id_prefix + 2 * i, 3, "%02x", random[i]);

    /* MHD_USE_ERROR_LOG only for s_mhd_log's one workaround. */
    unsigned int flags =
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_TURBO | MHD_USE_ERROR_LOG;
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
    /* MHD_OPTION_STRICT_FOR_CLIENT stays 0: at 1, 0.9.75 also refuses an
     * HTTP/1.1 request without Host through the broken path s_mhd_log
     * mends, and closes on a space in the URL without any answer.
     * Connections: one closes after 60 s without a byte (a request sent
     * half way too), so a client that stalls holds one that long; up to
     * 10,000 are open at once, past which new ones wait in the accept
     * queue; no limit per address, since behind a proxy every client is
     * one. docs/RELIABILITY.md section 5: 500 stalled connections do not
     * slow anyone else. */
    self->daemon = MHD_start_daemon(
        flags, (uint16_t)c->port, NULL, NULL, s_handler, self, MHD_OPTION_SOCK_ADDR, &address,
        MHD_OPTION_NOTIFY_COMPLETED, s_completed, self, MHD_OPTION_URI_LOG_CALLBACK, s_uri_logged,
        self, MHD_OPTION_EXTERNAL_LOGGER, s_mhd_log, self, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
        (size_t)POOL_BYTES, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)60,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned int)10000, MHD_OPTION_ARRAY,
        self->tls_cert ? tls : tls + 2, MHD_OPTION_END);
    if (!self->daemon) {
        zsys_error("bridge: cannot listen on %s:%d",
                   c->bind_address ? c->bind_address : "127.0.0.1", c->port);
        return -1;
    }
    const union MHD_DaemonInfo *port = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_BIND_PORT);
    const union MHD_DaemonInfo *epoll = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!port || !epoll) {
        zsys_error("bridge: libmicrohttpd tells neither its port nor its epoll descriptor");
        return -1;
    }
    self->port = port->port;
    self->epoll_fd = epoll->epoll_fd;
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
    while ((req = zlistx_first(self->mmi_waiting)))
        s_mmi_answer(self, req, NULL);
}

static void s_teardown(bridge_t *self)
{
    if (self->daemon) {
        s_answer_all(self, ERR_UNAVAILABLE, "the server is stopping");
        /* Let the last responses go out before the sockets close. */
        int64_t end = zclock_mono() + 200;
        while (zclock_mono() < end) {
            const union MHD_DaemonInfo *open =
                MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
            if (!open || open->num_connections == 0)
                break;
            MHD_run(self->daemon);
            zclock_sleep(5);
        }
        MHD_stop_daemon(self->daemon);
    }
    metrics_destroy(&self->metrics);
    zhashx_destroy(&self->pending);
    zlistx_destroy(&self->mmi_waiting);
    zsock_destroy(&self->dealer);
    zsock_destroy(&self->mmi);
    free(self->tls_cert);
    if (self->tls_key)
        sodium_memzero(self->tls_key, strlen(self->tls_key)); /* a private key */
    free(self->tls_key);
    free(self->args);
    free(self->services);
    api_destroy(&self->api);
    mpout_destroy(&self->scratch);
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
    mpout_init(&self->scratch, 0);
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
    int epoll_fd = self->epoll_fd;
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
                drain_until = zclock_mono() + self->config.drain_ms;
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
    if (c.drain_ms == 0)
        c.drain_ms = 2000;
    else if (c.drain_ms < 0)
        c.drain_ms = 0;
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

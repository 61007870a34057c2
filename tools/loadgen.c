/*  loadgen.c - the load harness: keeps K MDP requests in flight against one
 *  service operation for D seconds and reports throughput and latency.
 *
 *      loadgen [--endpoint E] [--service S] [--op O] [--size N] [-c K] [-d SECONDS]
 *              [--warmup SECONDS] [--sockets N] [--data-dir DIR] [--server-cert NAME]
 *              [--json] [-q]
 *
 *  How it works. One thread, N DEALER sockets, K request slots. Slot s is
 *  always served by socket s % N and always has exactly one request in
 *  flight; its ids are s, s + K, s + 2K, ... so id % K finds the slot of any
 *  reply without a hash map, even when replies come back out of order. When
 *  a reply arrives its latency is taken from the slot's send time and the
 *  slot immediately sends its next request, which is what keeps K in flight.
 *
 *  Requests are the real thing: [empty]["MDPC01"][service][body] with a
 *  msgpack envelope whose args are {"pad": "<N bytes>"} (about 64 bytes in
 *  all by default), over CurveZMQ for any endpoint that leaves the process.
 *  The client certificate is keys_dir/loadgen.cert, made and allow-listed on
 *  first use (only then, so removing it from clients/ revokes it); the
 *  server's public key comes from keys_dir/NAME.cert (--server-cert,
 *  "broker" by default; the bare relay uses "relay").
 *
 *  The hot path is raw libzmq (zmq_send, and zmq_msg_recv through
 *  frames_recv): CZMQ's zmsg costs allocations per frame, and the harness
 *  must be cheaper than what it measures. Replies are decoded with one reused msgpack_zone, only
 * far enough to check the id and ok and to count errors by code.
 *
 *  Timeline: a warmup (default 1 s, not counted: CURVE handshakes, worker
 *  start-up), the measured window of D seconds, then a drain of at most 2 s
 *  for the replies still outstanding. Throughput counts replies received
 *  inside the window; latencies are recorded for every reply received from
 *  the start of the window on (the drained ones included, since leaving
 *  them out would hide the slowest requests). Exit status 0 when at least
 *  one reply said ok, 1 otherwise, so scripts can tell a dead server.
 */
#include "tools/harness/histogram.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "protocol/envelope.h"
#include "protocol/errors.h"
#include "protocol/frames.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/settings.h"

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define DRAIN_NS (2 * NS_PER_S)
/* A reply is [empty][MDPC01][service][body]; anything longer is dropped. */
#define REPLY_FRAMES 4
/* Upper bounds that keep a typo from allocating the machine away. */
#define INFLIGHT_MAX 100000
#define SOCKETS_MAX 1024
#define PAD_MAX (1024 * 1024)

typedef struct {
    const char *endpoint;
    const char *service;
    const char *op;
    size_t pad;
    size_t inflight;
    size_t sockets;
    double seconds;
    double warmup;
    const char *data_dir; /* NULL: from settings */
    const char *server_cert;
    bool json;
    bool quiet;
} options_t;

typedef struct {
    uint64_t id; /* the request in flight; id % inflight is this slot's index */
    int64_t sent_ns;
    bool busy;
} slot_t;

typedef struct {
    const options_t *opt;
    bool curve;
    zsock_t **socks;
    void **raw; /* the libzmq handles of socks, for the hot path */
    zpoller_t *poller;
    slot_t *slots;
    size_t outstanding;
    msgpack_sbuffer args; /* {"pad": "..."} packed once */
    msgpack_sbuffer body; /* the request being sent; reused */
    msgpack_zone zone;    /* for decoding one reply; cleared after each */
    size_t body_bytes;    /* size of the latest request, for the report */

    histogram_t *lat; /* latencies in ns (tools/harness/histogram.h: within 0.78%) */
    size_t nlat;

    int64_t window_from, window_to; /* the measured window (monotonic ns) */
    int64_t stopped_at;             /* end of the window actually run */
    uint64_t replies;               /* every reply, warmup included */
    uint64_t in_window;             /* replies received inside the window */
    uint64_t ok;
    uint64_t errors[ERR__COUNT];
    uint64_t malformed; /* bad frames or an undecodable body */
    uint64_t unmatched; /* an id with no request in flight */
    bool interrupted;
    bool failed; /* out of memory, or a socket refused a send */
} loadgen_t;

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* Reads NAME.cert's public key (Z85) from the keys directory. */
static int s_server_public(const char *keys_dir, const char *name, char out[KEYS_Z85_LEN + 1])
{
    char *path = zsys_sprintf("%s/%s.cert", keys_dir, name);
    if (!path)
        return -1;
    zcert_t *cert = zcert_load(path);
    zstr_free(&path);
    if (!cert)
        return -1;
    snprintf(out, KEYS_Z85_LEN + 1, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

static void loadgen_destroy(loadgen_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    loadgen_t *self = *self_p;
    zpoller_destroy(&self->poller);
    if (self->socks)
        for (size_t i = 0; i < self->opt->sockets; i++)
            zsock_destroy(&self->socks[i]);
    free(self->socks);
    free(self->raw);
    free(self->slots);
    histogram_destroy(&self->lat);
    msgpack_sbuffer_destroy(&self->args);
    msgpack_sbuffer_destroy(&self->body);
    msgpack_zone_destroy(&self->zone);
    free(self);
    *self_p = NULL;
}

/* cert and server_public are NULL for a plain (non-CURVE) endpoint. */
static loadgen_t *loadgen_new(const options_t *opt, zcert_t *cert, const char *server_public)
{
    loadgen_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->opt = opt;
    self->curve = cert != NULL;
    msgpack_sbuffer_init(&self->args);
    msgpack_sbuffer_init(&self->body);
    if (!msgpack_zone_init(&self->zone, 4096))
        goto fail;
    self->socks = calloc(opt->sockets, sizeof *self->socks);
    self->raw = calloc(opt->sockets, sizeof *self->raw);
    self->slots = calloc(opt->inflight, sizeof *self->slots);
    self->lat = histogram_new();
    if (!self->socks || !self->raw || !self->slots || !self->lat)
        goto fail;

    /* The args map never changes, so it is packed once and spliced into
     * every request by envelope_pack_request. */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->args, msgpack_sbuffer_write);
    char *pad = malloc(opt->pad + 1);
    if (!pad)
        goto fail;
    memset(pad, 'x', opt->pad);
    bool packed = msgpack_pack_map(&pk, 1) == 0 && mp_pack_str(&pk, "pad") == 0 &&
                  mp_pack_strn(&pk, pad, opt->pad) == 0;
    free(pad);
    if (!packed) {
        zsys_error("loadgen: out of memory packing the arguments");
        goto fail;
    }

    for (size_t i = 0; i < opt->sockets; i++) {
        zsock_t *sock = zsock_new(ZMQ_DEALER);
        if (!sock)
            goto fail;
        self->socks[i] = sock;
        self->raw[i] = zsock_resolve(sock);
        zsock_set_linger(sock, 0);
        /* No high-water mark: the harness bounds what is in flight itself,
         * and a send must never block or drop. */
        zsock_set_sndhwm(sock, 0);
        zsock_set_rcvhwm(sock, 0);
        if (cert)
            keys_apply_client(sock, cert, server_public);
        if (zsock_connect(sock, "%s", opt->endpoint) != 0) {
            zsys_error("loadgen: cannot connect to %s", opt->endpoint);
            goto fail;
        }
        if (i == 0)
            self->poller = zpoller_new(sock, NULL);
        else if (zpoller_add(self->poller, sock) != 0)
            goto fail;
        if (!self->poller)
            goto fail;
    }
    return self;
fail:
    loadgen_destroy(&self);
    return NULL;
}

/* Sends slot's current request. 0, or -1 when the socket refuses it. */
static int s_send(loadgen_t *self, size_t slot_index, int64_t now)
{
    slot_t *slot = &self->slots[slot_index];
    void *sock = self->raw[slot_index % self->opt->sockets];
    const char *service = self->opt->service;
    msgpack_sbuffer_clear(&self->body);
    if (envelope_pack_request(&self->body, slot->id, self->opt->op, NULL, self->args.data,
                              self->args.size) != 0) {
        zsys_error("loadgen: out of memory packing a request");
        self->failed = true;
        return -1;
    }
    self->body_bytes = self->body.size; /* grows with the id's msgpack width */
    /* Nothing can block here (no HWM, and a connected DEALER always has a
     * pipe), so a failure is a real error rather than back-pressure. */
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send(sock, MDP_CLIENT, strlen(MDP_CLIENT), ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send(sock, service, strlen(service), ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send(sock, self->body.data, self->body.size, ZMQ_DONTWAIT) == -1) {
        zsys_error("loadgen: send failed: %s", zmq_strerror(zmq_errno()));
        self->failed = true;
        return -1;
    }
    slot->sent_ns = now;
    slot->busy = true;
    self->outstanding++;
    return 0;
}

static int s_record(loadgen_t *self, int64_t ns)
{
    histogram_record(self->lat, ns > 0 ? (uint64_t)ns : 0);
    self->nlat++;
    return 0;
}

/* Handles one reply body: matches it to its slot, records it, and if
 * resend, puts the slot's next request in flight. 0, or -1 on a fatal
 * error (then self->failed is set). */
static int s_on_reply(loadgen_t *self, const void *body, size_t len, int64_t now, bool resend)
{
    envelope_reply_t reply;
    const char *why;
    bool decoded = envelope_decode_reply(body, len, &self->zone, &reply, &why);
    uint64_t id = 0;
    bool have_id = decoded && reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (have_id)
        id = reply.id.via.u64;
    bool ok = decoded && reply.ok;
    err_code_t code = decoded && !reply.ok ? reply.code : ERR_NONE;
    msgpack_zone_clear(&self->zone);

    if (!decoded) {
        /* Without an id the slot cannot be found; it stays stuck and shows
         * up as lost at the end. */
        self->malformed++;
        return 0;
    }
    size_t index = have_id ? (size_t)(id % self->opt->inflight) : 0;
    slot_t *slot = have_id ? &self->slots[index] : NULL;
    if (!slot || !slot->busy || slot->id != id) {
        self->unmatched++;
        return 0;
    }
    slot->busy = false;
    self->outstanding--;
    self->replies++;
    if (now >= self->window_from) {
        if (now < self->window_to)
            self->in_window++;
        if (ok)
            self->ok++;
        else
            self->errors[code]++;
        if (s_record(self, now - slot->sent_ns) != 0)
            return -1;
    }
    if (!resend)
        return 0;
    slot->id += self->opt->inflight;
    return s_send(self, index, now);
}

/* Receives one message from socket i without waiting. 1 when a message
 * was handled, 0 when there was none, -1 on a socket error. */
static int s_recv_one(loadgen_t *self, size_t i, bool resend)
{
    zmq_msg_t part[REPLY_FRAMES];
    int n = frames_recv(self->raw[i], part, REPLY_FRAMES, ZMQ_DONTWAIT);
    if (n == 0) {
        int err = zmq_errno();
        /* Later frames of a message are always there once the first is,
         * so EAGAIN can only mean "no message". */
        if (err == EAGAIN)
            return 0;
        zsys_error("loadgen: receive failed: %s", zmq_strerror(err));
        self->failed = true;
        return -1;
    }
    int64_t now = s_now_ns();
    int rc = 1;
    /* one with more frames than a reply (-1, dropped already) is malformed too */
    if (n != REPLY_FRAMES || zmq_msg_size(&part[0]) != 0 || !frames_is(&part[1], MDP_CLIENT))
        self->malformed++;
    else if (s_on_reply(self, zmq_msg_data(&part[3]), zmq_msg_size(&part[3]), now, resend) != 0)
        rc = -1;
    if (n > 0)
        frames_close(part, n);
    return rc;
}

/* Reads what every socket has ready. Each socket gives at most inflight
 * messages per sweep so that a busy one cannot starve the others or the
 * clock checks of the main loop. */
static int s_sweep(loadgen_t *self, bool resend)
{
    for (size_t i = 0; i < self->opt->sockets; i++) {
        for (size_t k = 0; k < self->opt->inflight; k++) {
            int rc = s_recv_one(self, i, resend);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
        }
    }
    return 0;
}

/* Waits until the next deadline or a reply; false when interrupted. */
static bool s_wait(loadgen_t *self, int64_t deadline)
{
    int64_t left = deadline - s_now_ns();
    int ms = left <= 0 ? 0 : (int)((left + NS_PER_MS - 1) / NS_PER_MS);
    void *which = zpoller_wait(self->poller, ms);
    if (!which && zpoller_terminated(self->poller)) {
        self->interrupted = true;
        return false;
    }
    return true;
}

static void s_progress(loadgen_t *self, int64_t start, int64_t now, uint64_t *last_replies,
                       int64_t *last_ns)
{
    double elapsed = (double)(now - start) / NS_PER_S;
    double rate = (double)(self->replies - *last_replies) * NS_PER_S / (double)(now - *last_ns);
    const char *phase = now < self->window_from ? "warmup" : "run";
    fprintf(stderr, "\r%-6s %6.1f s  %9.0f req/s  %6zu in flight   ", phase, elapsed, rate,
            self->outstanding);
    fflush(stderr);
    *last_replies = self->replies;
    *last_ns = now;
}

static int loadgen_run(loadgen_t *self)
{
    const options_t *opt = self->opt;
    int64_t start = s_now_ns();
    self->window_from = start + (int64_t)(opt->warmup * NS_PER_S);
    self->window_to = self->window_from + (int64_t)(opt->seconds * NS_PER_S);
    self->stopped_at = self->window_from;

    for (size_t s = 0; s < opt->inflight; s++) {
        self->slots[s].id = s;
        if (s_send(self, s, s_now_ns()) != 0)
            return -1;
    }

    int64_t next_tick = start + NS_PER_S;
    uint64_t last_replies = 0;
    int64_t last_ns = start;
    int64_t now = start;
    while (now < self->window_to && !self->failed) {
        int64_t deadline = next_tick < self->window_to ? next_tick : self->window_to;
        if (!s_wait(self, deadline) || s_sweep(self, true) != 0)
            break;
        now = s_now_ns();
        if (now >= next_tick) {
            if (!opt->quiet)
                s_progress(self, start, now, &last_replies, &last_ns);
            next_tick += NS_PER_S;
        }
    }
    self->stopped_at = now < self->window_to ? now : self->window_to;
    if (self->stopped_at < self->window_from)
        self->stopped_at = self->window_from; /* interrupted during the warmup */

    /* Drain: no new requests; collect what is still in flight. */
    int64_t drain_to = s_now_ns() + DRAIN_NS;
    while (self->outstanding > 0 && !self->interrupted && !self->failed && s_now_ns() < drain_to) {
        if (!s_wait(self, drain_to) || s_sweep(self, false) != 0)
            break;
    }
    if (!opt->quiet)
        fprintf(stderr, "\n");
    return self->failed ? -1 : 0;
}

/* Nearest-rank percentile, in microseconds. */
static double s_pct_us(const histogram_t *h, double p)
{
    return (double)histogram_percentile(h, p) / 1000.0;
}

static void loadgen_report(loadgen_t *self)
{
    const options_t *opt = self->opt;
    double window = (double)(self->stopped_at - self->window_from) / NS_PER_S;
    double rps = window > 0 ? (double)self->in_window / window : 0;
    double p50 = s_pct_us(self->lat, 50);
    double p90 = s_pct_us(self->lat, 90);
    double p99 = s_pct_us(self->lat, 99);
    double p999 = s_pct_us(self->lat, 99.9);
    double max = s_pct_us(self->lat, 100);
    uint64_t errors = 0;
    for (int c = 0; c < ERR__COUNT; c++)
        errors += self->errors[c];

    printf("%s.%s via %s%s, %zu in flight over %zu socket%s, %zu-byte requests\n", opt->service,
           opt->op, opt->endpoint, self->curve ? " (CURVE)" : "", opt->inflight, opt->sockets,
           opt->sockets == 1 ? "" : "s", self->body_bytes);
    printf("window      %.2f s after %.1f s warmup%s\n", window, opt->warmup,
           self->interrupted ? " (interrupted)" : "");
    printf("requests/s  %.0f\n", rps);
    printf("latency us  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", p50, p90, p99, p999,
           max);
    printf("total       %zu replies, %" PRIu64 " ok, %" PRIu64 " errors, %zu lost\n", self->nlat,
           self->ok, errors, self->outstanding);
    for (int c = 0; c < ERR__COUNT; c++)
        if (self->errors[c])
            printf("  error %-24s %" PRIu64 "\n", err_code_name((err_code_t)c), self->errors[c]);
    if (self->malformed)
        printf("  malformed replies      %" PRIu64 "\n", self->malformed);
    if (self->unmatched)
        printf("  unmatched replies      %" PRIu64 "\n", self->unmatched);

    if (!opt->json)
        return;
    json_t *by_code = json_object();
    for (int c = 0; c < ERR__COUNT; c++)
        if (self->errors[c])
            json_object_set_new(by_code, err_code_name((err_code_t)c),
                                json_integer((json_int_t)self->errors[c]));
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:b, s:I, s:I, s:I, s:f, s:f, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:I, "
        "s:I, "
        "s:o, s:I, s:I, s:I, s:b}",
        "endpoint", opt->endpoint, "service", opt->service, "op", opt->op, "curve", self->curve,
        "concurrency", (json_int_t)opt->inflight, "sockets", (json_int_t)opt->sockets,
        "request_bytes", (json_int_t)self->body_bytes, "seconds", window, "warmup", opt->warmup,
        "requests", (json_int_t)self->in_window, "rps", rps, "p50_us", p50, "p90_us", p90, "p99_us",
        p99, "p999_us", p999, "max_us", max, "replies", (json_int_t)self->nlat, "errors",
        (json_int_t)errors, "errors_by_code", by_code, "malformed", (json_int_t)self->malformed,
        "unmatched", (json_int_t)self->unmatched, "lost", (json_int_t)self->outstanding,
        "interrupted", self->interrupted);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (text)
        printf("%s\n", text);
    else
        zsys_error("loadgen: cannot build the JSON result");
    free(text);
    json_decref(doc);
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: loadgen [options]\n"
            "  --endpoint E       broker endpoint (default: settings broker_endpoint)\n"
            "  --service S        service name (default sys)\n"
            "  --op O             operation (default echo)\n"
            "  --size N           args are {\"pad\": \"<N bytes>\"} (default 35: ~64-byte body)\n"
            "  -c, --concurrency K  requests in flight (default 64)\n"
            "  -d, --duration S   measured seconds (default 10)\n"
            "  --warmup S         seconds before measuring (default 1)\n"
            "  --sockets N        DEALER sockets sharing the in-flight requests (default 1)\n"
            "  --data-dir DIR     data directory; keys are in DIR/keys\n"
            "  --server-cert NAME server certificate NAME.cert in the keys dir (default broker)\n"
            "  --json             also print the result as one JSON line\n"
            "  -q, --quiet        no progress line\n");
}

static int s_parse_size(const char *text, size_t min, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < min || v > max)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int s_parse_seconds(const char *text, double min, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < min || v > 86400)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    options_t opt = {.service = "sys",
                     .op = "echo",
                     .pad = 35,
                     .inflight = 64,
                     .sockets = 1,
                     .seconds = 10,
                     .warmup = 1,
                     .server_cert = "broker"};
    enum {
        OPT_ENDPOINT = 256,
        OPT_SERVICE,
        OPT_OP,
        OPT_SIZE,
        OPT_WARMUP,
        OPT_SOCKETS,
        OPT_DATA_DIR,
        OPT_SERVER_CERT,
        OPT_JSON
    };
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, OPT_ENDPOINT},
        {"service", required_argument, NULL, OPT_SERVICE},
        {"op", required_argument, NULL, OPT_OP},
        {"size", required_argument, NULL, OPT_SIZE},
        {"concurrency", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"sockets", required_argument, NULL, OPT_SOCKETS},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"server-cert", required_argument, NULL, OPT_SERVER_CERT},
        {"json", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:d:qh", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case OPT_ENDPOINT:
            opt.endpoint = optarg;
            break;
        case OPT_SERVICE:
            opt.service = optarg;
            bad = strlen(optarg) == 0 || strlen(optarg) > MDP_SERVICE_MAX;
            break;
        case OPT_OP:
            opt.op = optarg;
            bad = strlen(optarg) == 0 || strlen(optarg) > ENVELOPE_MAX_OP;
            break;
        case OPT_SIZE:
            bad = s_parse_size(optarg, 0, PAD_MAX, &opt.pad);
            break;
        case 'c':
            bad = s_parse_size(optarg, 1, INFLIGHT_MAX, &opt.inflight);
            break;
        case 'd':
            bad = s_parse_seconds(optarg, 0.001, &opt.seconds);
            break;
        case OPT_WARMUP:
            bad = s_parse_seconds(optarg, 0, &opt.warmup);
            break;
        case OPT_SOCKETS:
            bad = s_parse_size(optarg, 1, SOCKETS_MAX, &opt.sockets);
            break;
        case OPT_DATA_DIR:
            opt.data_dir = optarg;
            break;
        case OPT_SERVER_CERT:
            opt.server_cert = optarg;
            break;
        case OPT_JSON:
            opt.json = true;
            break;
        case 'q':
            opt.quiet = true;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "loadgen: bad value '%s' for an option\n", optarg);
            return 2;
        }
    }
    if (optind != argc) {
        s_usage(stderr);
        return 2;
    }
    if (opt.sockets > opt.inflight) {
        fprintf(stderr, "loadgen: --sockets must not exceed -c\n");
        return 2;
    }

    settings_t settings;
    char err[256];
    if (settings_load(&settings, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 2;
    }
    if (opt.data_dir) {
        /* keys_dir is data_dir + "/keys" and must fit too. */
        if (!*opt.data_dir || strlen(opt.data_dir) + 6 >= sizeof settings.data_dir) {
            fprintf(stderr, "loadgen: --data-dir is empty or too long\n");
            return 2;
        }
        snprintf(settings.data_dir, sizeof settings.data_dir, "%s", opt.data_dir);
        settings_derive(&settings);
    }
    if (!opt.endpoint)
        opt.endpoint = settings.broker_endpoint;

    zcert_t *cert = NULL;
    char server_public[KEYS_Z85_LEN + 1] = "";
    if (keys_endpoint_needs_curve(opt.endpoint)) {
        /* Allow-listed only when made here: an operator who removed
         * clients/loadgen.cert has revoked it, and that must stand. */
        cert = keys_load(settings.keys_dir, "loadgen");
        bool made = false;
        if (!cert) {
            cert = keys_ensure(settings.keys_dir, "loadgen");
            made = cert != NULL;
        }
        if (!cert || (made && keys_allow(settings.keys_dir, cert, "loadgen") != 0)) {
            fprintf(stderr, "loadgen: cannot create or allow-list %s/loadgen.cert\n",
                    settings.keys_dir);
            zcert_destroy(&cert);
            return 2;
        }
        if (s_server_public(settings.keys_dir, opt.server_cert, server_public) != 0) {
            fprintf(stderr, "loadgen: cannot read %s/%s.cert\n", settings.keys_dir,
                    opt.server_cert);
            zcert_destroy(&cert);
            return 2;
        }
    }

    loadgen_t *lg = loadgen_new(&opt, cert, cert ? server_public : NULL);
    zcert_destroy(&cert);
    if (!lg) {
        fprintf(stderr, "loadgen: cannot set up sockets\n");
        return 2;
    }
    int rc = loadgen_run(lg);
    loadgen_report(lg);
    int status = rc == 0 && lg->ok > 0 ? 0 : 1;
    loadgen_destroy(&lg);
    return status;
}

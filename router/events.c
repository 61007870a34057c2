/*  events.c - the event stream's proxy (router/events.h).
 *
 *  How it works. One thread owns four sockets and one zmq_poll loop:
 *      in    XSUB bound to EVENTS_INPROC_PUBLISH: relays in this process,
 *            trusted, forwarded as they come;
 *      tcp   XSUB bound to publish_tcp (CURVE server): relays elsewhere,
 *            each message checked before it is forwarded;
 *      out   XPUB bound to EVENTS_INPROC_SUBSCRIBE and subscribe_tcp
 *            (CURVE server on the TCP side; inproc has no handshake);
 *      pipe  the actor's: $TERM, COUNTS.
 *  It is not zproxy because zproxy forwards blindly: a certificate on the
 *  allow-list (any operator's or partner's) could publish events in a
 *  service's name. Here a message from tcp is forwarded only when it has
 *  exactly two frames, the certificate's name (the ZAP metadata "name"
 *  that zauth attached to the connection, as the broker reads a caller's)
 *  is one publisher_allowed accepts, and the event's `source` equals that
 *  name. The check reads only the top level of the msgpack map, in one
 *  pass without recursion or allocation (s_source_is), so garbage of any
 *  shape costs time linear in its size and is dropped and counted.
 *
 *  Subscriptions. Each XSUB sends "\x01" (subscribe to everything) once
 *  at start; an XSUB keeps its subscriptions and replays them to every
 *  publisher that connects later, so relays always have a subscriber and
 *  send everything (a relay's XPUB sends nothing before one arrives). The
 *  subscriptions that come up from the XPUB are forwarded to both XSUBs
 *  too, as a ZeroMQ proxy does; with the catch-all in place they change
 *  what relays send in no way, and an XSUB counts subscriptions, so a
 *  subscriber's unsubscribe of "" never cancels the proxy's own. Only
 *  (un)subscribe frames go up: a raw XSUB subscriber could send anything
 *  else, and nothing of a subscriber's may reach a publisher.
 *
 *  Slow subscribers. The XPUB drops what a subscriber's pipe cannot take
 *  (high-water mark EVENTS_HWM), so one slow subscriber never holds up
 *  the others or the relays; it sees a gap in `seq` and fills it from the
 *  source's events.since.
 *
 *  Counts. forwarded counts messages handed to the XPUB (from either
 *  side), refused the ones dropped by the checks (and messages of more
 *  frames than a message can have, from either side).
 */
#include "router/events.h"
#include "protocol/frames.h"
#include "protocol/keys.h"

#include <errno.h>
#include <zmq.h>

#define EVENTS_HWM 100000
#define MAX_FRAMES 8  /* a trusted message with more is dropped whole */
#define BATCH_MAX 256 /* messages taken from one socket per turn, for fairness */
#define COUNTS_TIMEOUT_MS 5000

typedef struct {
    events_config_t config;
    char publish_tcp[256], subscribe_tcp[256], keys_dir[1024]; /* config's strings */
    zsock_t *pipe;
    zsock_t *out;   /* XPUB */
    zsock_t *in;    /* XSUB, inproc */
    zsock_t *tcp;   /* XSUB, tcp; NULL without publish_tcp */
    zactor_t *auth; /* with start_auth */
    uint64_t forwarded;
    uint64_t refused;
    bool terminated;
} events_t;

/* ------------------------------------------------------------------ */
/* The source check: the top level of a msgpack map, read once.        */

typedef struct {
    const uint8_t *p, *end;
} reader_t;

typedef enum { V_SCALAR, V_STR, V_MAP, V_ARRAY } value_kind_t;

static bool s_be(reader_t *r, int bytes, uint64_t *out)
{
    if (r->end - r->p < bytes)
        return false;
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = (v << 8) | r->p[i];
    r->p += bytes;
    *out = v;
    return true;
}

static bool s_skip_bytes(reader_t *r, uint64_t n)
{
    if ((uint64_t)(r->end - r->p) < n)
        return false;
    r->p += n;
    return true;
}

/* Reads one value's head at r->p: its kind, the values it contains (an
 * array's n, a map's 2n: they follow it) and, for a str, its bytes. Every
 * payload that is not a value (str, bin, ext, numbers) is passed over.
 * false when the bytes end first or the head is 0xc1 (never used). */
static bool s_head(reader_t *r, value_kind_t *kind, uint64_t *children, const uint8_t **str,
                   uint64_t *str_len)
{
    if (r->p >= r->end)
        return false;
    uint8_t b = *r->p++;
    uint64_t n = 0;
    *kind = V_SCALAR;
    *children = 0;
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return true; /* fixints, nil, bools */
    if ((b & 0xf0) == 0x80) {
        *kind = V_MAP;
        *children = 2 * (uint64_t)(b & 0x0f);
        return true;
    }
    if ((b & 0xf0) == 0x90) {
        *kind = V_ARRAY;
        *children = b & 0x0f;
        return true;
    }
    if ((b & 0xe0) == 0xa0 || (b >= 0xd9 && b <= 0xdb)) {
        if ((b & 0xe0) == 0xa0)
            n = b & 0x1f;
        else if (!s_be(r, 1 << (b - 0xd9), &n))
            return false;
        *kind = V_STR;
        *str = r->p;
        *str_len = n;
        return s_skip_bytes(r, n);
    }
    switch (b) {
    case 0xc4: /* bin 8, 16, 32 */
    case 0xc5:
    case 0xc6:
        return s_be(r, 1 << (b - 0xc4), &n) && s_skip_bytes(r, n);
    case 0xc7: /* ext 8, 16, 32: a length, a type byte, the data */
    case 0xc8:
    case 0xc9:
        return s_be(r, 1 << (b - 0xc7), &n) && s_skip_bytes(r, n + 1);
    case 0xca: /* float 32, 64 */
        return s_skip_bytes(r, 4);
    case 0xcb:
        return s_skip_bytes(r, 8);
    case 0xcc: /* uint, int 8..64 */
    case 0xcd:
    case 0xce:
    case 0xcf:
        return s_skip_bytes(r, 1u << (b - 0xcc));
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
        return s_skip_bytes(r, 1u << (b - 0xd0));
    case 0xd4: /* fixext 1..16: a type byte, the data */
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
        return s_skip_bytes(r, 1 + (1u << (b - 0xd4)));
    case 0xdc: /* array 16, 32 */
    case 0xdd:
        *kind = V_ARRAY;
        return s_be(r, 2 << (b - 0xdc), children);
    case 0xde: /* map 16, 32 */
    case 0xdf:
        *kind = V_MAP;
        if (!s_be(r, 2 << (b - 0xde), &n))
            return false;
        *children = 2 * n;
        return true;
    default:
        return false; /* 0xc1 */
    }
}

/* Passes over one whole value, containers included, with a count of the
 * values still to read instead of recursion. Each value takes at least one
 * byte, so a count above the bytes left is a lie found at once, and the
 * loop runs at most once per byte. */
static bool s_skip_value(reader_t *r)
{
    uint64_t pending = 1;
    while (pending > 0) {
        if (pending > (uint64_t)(r->end - r->p))
            return false;
        value_kind_t kind;
        uint64_t children;
        const uint8_t *str;
        uint64_t len;
        if (!s_head(r, &kind, &children, &str, &len))
            return false;
        pending = pending - 1 + children;
    }
    return true;
}

/* True when data[0..len) is exactly one msgpack map with str keys at its
 * top level, one `source` key among them, whose value is the str name. */
static bool s_source_is(const uint8_t *data, size_t len, const char *name)
{
    reader_t r = {data, data + len};
    value_kind_t kind;
    uint64_t children, str_len;
    const uint8_t *str;
    if (!s_head(&r, &kind, &children, &str, &str_len) || kind != V_MAP ||
        children > (uint64_t)(r.end - r.p))
        return false;
    const uint64_t entries = children / 2;
    size_t name_len = strlen(name);
    bool found = false, match = false;
    for (uint64_t i = 0; i < entries; i++) {
        if (!s_head(&r, &kind, &children, &str, &str_len) || kind != V_STR)
            return false;
        if (str_len == 6 && memcmp(str, "source", 6) == 0) {
            if (found || !s_head(&r, &kind, &children, &str, &str_len))
                return false;
            found = true;
            match = kind == V_STR && str_len == name_len && memcmp(str, name, name_len) == 0;
        } else if (!s_skip_value(&r))
            return false;
    }
    return found && match && r.p == r.end;
}

/* ------------------------------------------------------------------ */
/* Forwarding                                                          */

static void s_send_frames(events_t *self, zmq_msg_t *frames, int count)
{
    void *out = zsock_resolve(self->out);
    for (int i = 0; i < count; i++)
        if (zmq_msg_send(&frames[i], out, i + 1 < count ? ZMQ_SNDMORE : 0) < 0)
            return; /* an XPUB does not refuse; closed below if it did */
    self->forwarded++;
}

/* Why a message from tcp is refused, or NULL when it may pass. */
static const char *s_check(events_t *self, zmq_msg_t *frames, int count, const char **who)
{
    const char *name = zmq_msg_gets(&frames[0], "name");
    if (!name || !keys_name_valid(name, strlen(name)))
        return "a certificate without a valid name";
    *who = name;
    if (count != 2)
        return "not two frames";
    if (!self->config.publisher_allowed || !self->config.publisher_allowed(name))
        return "a certificate that may not publish";
    if (!s_source_is(zmq_msg_data(&frames[1]), zmq_msg_size(&frames[1]), name))
        return "an event whose source is not the certificate's name, or unreadable";
    return NULL;
}

/* Forwards what came on a publisher's socket, at most BATCH_MAX messages. */
static void s_publishers(events_t *self, zsock_t *from, bool checked)
{
    void *sock = zsock_resolve(from);
    for (int k = 0; k < BATCH_MAX; k++) {
        zmq_msg_t frames[MAX_FRAMES];
        int count = frames_recv(sock, frames, MAX_FRAMES, ZMQ_DONTWAIT);
        if (count == 0)
            return;
        if (count < 0) {
            self->refused++;
            continue;
        }
        const char *who = "-";
        const char *why = checked ? s_check(self, frames, count, &who) : NULL;
        if (why) {
            self->refused++;
            if (self->config.verbose)
                zsys_info("events: dropped a message from %s: %s", who, why);
        } else
            s_send_frames(self, frames, count);
        frames_close(frames, count);
    }
}

/* Passes subscriptions from the XPUB up to both XSUBs. */
static void s_subscriptions(events_t *self)
{
    void *out = zsock_resolve(self->out);
    for (int k = 0; k < BATCH_MAX; k++) {
        zmq_msg_t frames[1];
        int count = frames_recv(out, frames, 1, ZMQ_DONTWAIT);
        if (count == 0)
            return;
        if (count < 0)
            continue;
        size_t size = zmq_msg_size(&frames[0]);
        const uint8_t *data = zmq_msg_data(&frames[0]);
        if (size >= 1 && (data[0] == 0 || data[0] == 1)) {
            zsock_t *ups[2] = {self->in, self->tcp};
            for (int i = 0; i < 2; i++) {
                if (!ups[i])
                    continue;
                zmq_msg_t copy;
                zmq_msg_init(&copy);
                if (zmq_msg_copy(&copy, &frames[0]) == 0 &&
                    zmq_msg_send(&copy, zsock_resolve(ups[i]), ZMQ_DONTWAIT) >= 0)
                    continue;
                zmq_msg_close(&copy);
            }
        }
        frames_close(frames, count);
    }
}

/* ------------------------------------------------------------------ */
/* Set-up                                                              */

static zsock_t *s_socket(int type, int linger)
{
    zsock_t *sock = zsock_new(type);
    if (!sock)
        return NULL;
    zsock_set_sndhwm(sock, EVENTS_HWM);
    zsock_set_rcvhwm(sock, EVENTS_HWM);
    zsock_set_linger(sock, linger);
    return sock;
}

/* A CURVE server with the broker's certificate, ZAP domain "retail"
 * (whose handler checks keys_dir/clients), with ZMTP heartbeats so that a
 * peer that vanished without closing is let go. */
static int s_bind_curve(zsock_t *sock, zcert_t *cert, const char *endpoint)
{
    zcert_apply(cert, sock);
    zsock_set_curve_server(sock, 1);
    zsock_set_zap_domain(sock, "retail");
    zsock_set_heartbeat_ivl(sock, 1000);
    zsock_set_heartbeat_timeout(sock, 5000);
    if (zsock_bind(sock, "%s", endpoint) < 0) {
        zsys_error("events: cannot bind %s: %s", endpoint, zmq_strerror(zmq_errno()));
        return -1;
    }
    return 0;
}

/* Subscribes an XSUB to everything (see Subscriptions above). */
static int s_subscribe_all(zsock_t *xsub)
{
    const uint8_t all = 1;
    return zmq_send(zsock_resolve(xsub), &all, 1, 0) == 1 ? 0 : -1;
}

static int s_setup(events_t *self)
{
    const events_config_t *c = &self->config;
    /* The XPUB lingers a second so that events in flight at a stop still
     * reach live subscribers; what comes into the XSUBs after the stop is
     * nobody's to forward. */
    self->out = s_socket(ZMQ_XPUB, 1000);
    self->in = s_socket(ZMQ_XSUB, 0);
    if (!self->out || !self->in)
        return -1;
    if (c->publish_tcp) {
        self->tcp = s_socket(ZMQ_XSUB, 0);
        if (!self->tcp)
            return -1;
    }
    zcert_t *cert = NULL;
    if (c->publish_tcp || c->subscribe_tcp) {
        cert = keys_ensure(c->keys_dir, "broker");
        if (!cert) {
            zsys_error("events: cannot load or create %s/broker.cert", c->keys_dir);
            return -1;
        }
        if (c->start_auth) {
            /* Before any bind: a CURVE server without a ZAP handler would
             * let every client in. */
            char *clients = zsys_sprintf("%s/clients", c->keys_dir);
            if (clients)
                zsys_dir_create("%s", clients);
            self->auth = clients ? zactor_new(zauth, NULL) : NULL;
            if (self->auth && (zstr_sendx(self->auth, "CURVE", clients, NULL) != 0 ||
                               zsock_wait(self->auth) != 0))
                zactor_destroy(&self->auth);
            zstr_free(&clients);
            if (!self->auth) {
                zsys_error("events: cannot start the authentication handler");
                zcert_destroy(&cert);
                return -1;
            }
        }
    }
    int rc = 0;
    if (c->subscribe_tcp)
        rc = s_bind_curve(self->out, cert, c->subscribe_tcp);
    if (rc == 0 && c->publish_tcp)
        rc = s_bind_curve(self->tcp, cert, c->publish_tcp);
    zcert_destroy(&cert);
    if (rc != 0)
        return -1;
    if (zsock_bind(self->out, "%s", EVENTS_INPROC_SUBSCRIBE) < 0 ||
        zsock_bind(self->in, "%s", EVENTS_INPROC_PUBLISH) < 0) {
        zsys_error("events: cannot bind the inproc endpoints: %s", zmq_strerror(zmq_errno()));
        return -1;
    }
    if (s_subscribe_all(self->in) != 0 || (self->tcp && s_subscribe_all(self->tcp) != 0))
        return -1;
    return 0;
}

static void s_teardown(events_t *self)
{
    zsock_destroy(&self->tcp);
    zsock_destroy(&self->in);
    zsock_destroy(&self->out);
    zactor_destroy(&self->auth); /* after the sockets it authenticates for */
}

/* $TERM, or COUNTS (answered "88": forwarded, refused). */
static void s_command(events_t *self)
{
    char *command = zstr_recv(self->pipe);
    if (!command || streq(command, "$TERM"))
        self->terminated = true;
    else if (streq(command, "COUNTS"))
        zsock_send(self->pipe, "88", self->forwarded, self->refused);
    zstr_free(&command);
}

static void s_events_actor(zsock_t *pipe, void *args)
{
    events_t self_storage = {.config = *(events_config_t *)args, .pipe = pipe};
    events_t *self = &self_storage;
    events_config_t *c = &self->config;
    if (c->publish_tcp) {
        snprintf(self->publish_tcp, sizeof self->publish_tcp, "%s", c->publish_tcp);
        c->publish_tcp = self->publish_tcp;
    }
    if (c->subscribe_tcp) {
        snprintf(self->subscribe_tcp, sizeof self->subscribe_tcp, "%s", c->subscribe_tcp);
        c->subscribe_tcp = self->subscribe_tcp;
    }
    snprintf(self->keys_dir, sizeof self->keys_dir, "%s", c->keys_dir ? c->keys_dir : "./var/keys");
    c->keys_dir = self->keys_dir;
    zsock_signal(pipe, 0); /* zactor_new returns */

    int rc = s_setup(self);
    zsock_signal(pipe, rc == 0 ? 0 : 1); /* events_new learns the outcome */
    if (rc != 0) {
        s_teardown(self);
        return;
    }
    zmq_pollitem_t items[] = {{zsock_resolve(pipe), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve(self->out), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve(self->in), 0, ZMQ_POLLIN, 0},
                              {self->tcp ? zsock_resolve(self->tcp) : NULL, 0, ZMQ_POLLIN, 0}};
    int n_items = self->tcp ? 4 : 3;
    while (!self->terminated) {
        if (zmq_poll(items, n_items, -1) < 0) {
            if (errno == EINTR)
                continue;
            break; /* the context is terminating */
        }
        if (items[0].revents & ZMQ_POLLIN)
            s_command(self);
        if (items[1].revents & ZMQ_POLLIN)
            s_subscriptions(self);
        if (items[2].revents & ZMQ_POLLIN)
            s_publishers(self, self->in, false);
        if (n_items > 3 && (items[3].revents & ZMQ_POLLIN))
            s_publishers(self, self->tcp, true);
    }
    s_teardown(self);
}

/* ------------------------------------------------------------------ */
/* The API                                                             */

zactor_t *events_new(const events_config_t *config)
{
    if ((config->publish_tcp || config->subscribe_tcp) && !config->keys_dir) {
        zsys_error("events: a TCP endpoint needs a keys directory");
        return NULL;
    }
    events_config_t *c = malloc(sizeof *c);
    if (!c)
        return NULL;
    *c = *config;
    zactor_t *actor = zactor_new(s_events_actor, c);
    int status = actor ? zsock_wait(actor) : -1;
    free(c); /* the actor copied it before its first signal */
    if (status != 0)
        zactor_destroy(&actor);
    return actor;
}

int events_counts(zactor_t *self, uint64_t *forwarded, uint64_t *refused)
{
    if (!self || zstr_send(self, "COUNTS") != 0)
        return -1;
    zpoller_t *poller = zpoller_new(self, NULL);
    bool ready = poller && zpoller_wait(poller, COUNTS_TIMEOUT_MS) == self;
    zpoller_destroy(&poller);
    uint64_t f = 0, r = 0;
    if (!ready || zsock_recv(self, "88", &f, &r) != 0)
        return -1;
    if (forwarded)
        *forwarded = f;
    if (refused)
        *refused = r;
    return 0;
}

void events_destroy(zactor_t **self_p)
{
    zactor_destroy(self_p);
}

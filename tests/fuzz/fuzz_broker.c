/*  fuzz_broker.c - the broker's handling of MDP frame sequences, in
 *  process and without a socket: router/broker_core.h driven by a script
 *  of messages from four peers, with time moved by the script too.
 *
 *  Each step of the input is one byte, then what that step needs:
 *      kind = b & 3, peer = (b >> 2) & 3, shape = b >> 4
 *      0  a client request [id][][MDPC01][service][body]: the service
 *         from a small list (real, unknown, mmi.*) by shape, the body
 *         length-prefixed from the input;
 *      1  a worker message [id][][MDPW01][command]...: READY (with or
 *         without a capacity), REPLY to the request this peer last got
 *         (with or without its tag, or a stranger's), HEARTBEAT,
 *         DISCONNECT, or a command byte from the input;
 *      2  any frames at all: a count, then length-prefixed frames;
 *      3  time moves on by a byte's worth of 20 ms and the core ticks;
 *         shape 15 instead marks the peer gone (its sends fail, as with
 *         a closed connection in the ROUTER's mandatory mode) or back.
 *  The wire checks every message the core sends: it goes to one of the
 *  four peers, has an MDP header, frame counts and commands as SPEC.md
 *  says, and a client gets no reply it did not ask for. When the core is
 *  destroyed every request is answered, so at the end each client that
 *  was never gone has had exactly one reply per well-formed request.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "protocol/mdp.h"
#include "router/broker_core.h"

#define PEERS 4
#define FRAMES_MAX 12
#define KEEP 64 /* bytes of each sent frame kept for the checks */

static const char *const s_ids[PEERS] = {"bridge#00112233445566ff", "c1", "w0", "orders#w1"};

typedef struct {
    bool gone[PEERS];
    bool ever_gone[PEERS];
    long requests[PEERS]; /* well-formed client requests sent */
    long replies[PEERS];  /* replies the core sent back */
    /* the REQUEST a peer last got: its client frame and tag */
    uint8_t last_client[PEERS][256];
    size_t last_client_len[PEERS];
    uint8_t last_tag[PEERS][MDP_TAG_LEN];
    bool has_last[PEERS];
    /* the message being sent */
    int peer;
    int count;
    bool in_message;
    uint8_t frame[FRAMES_MAX][KEEP];
    size_t size[FRAMES_MAX];
} wire_state_t;

static int s_peer_of(const void *id, size_t len)
{
    for (int i = 0; i < PEERS; i++)
        if (strlen(s_ids[i]) == len && memcmp(s_ids[i], id, len) == 0)
            return i;
    return -1;
}

static bool s_is(const wire_state_t *w, int i, const char *text)
{
    size_t n = strlen(text);
    return w->size[i] == n && memcmp(w->frame[i], text, n) == 0;
}

/* A whole message was sent: is it one SPEC.md allows? */
static void s_check_message(wire_state_t *w)
{
    if (w->count < 4 || w->size[1] != 0)
        abort();
    if (s_is(w, 2, MDP_CLIENT)) {
        if (w->count != 5 || w->size[3] == 0 || w->size[3] > MDP_SERVICE_MAX)
            abort();
        if (++w->replies[w->peer] > w->requests[w->peer])
            abort(); /* a reply nobody asked for */
    } else if (s_is(w, 2, MDP_WORKER)) {
        if (w->size[3] != 1)
            abort();
        uint8_t command = w->frame[3][0];
        if (command == MDP_REQUEST) {
            /* [id][][MDPW01][REQUEST][client][][body][caller][tag] */
            if (w->count != 9 || w->size[5] != 0 || w->size[7] == 0 || w->size[8] != MDP_TAG_LEN ||
                w->size[4] > KEEP)
                abort();
            memcpy(w->last_client[w->peer], w->frame[4], w->size[4]);
            w->last_client_len[w->peer] = w->size[4];
            memcpy(w->last_tag[w->peer], w->frame[8], MDP_TAG_LEN);
            w->has_last[w->peer] = true;
        } else if (command == MDP_HEARTBEAT || command == MDP_DISCONNECT) {
            if (w->count != 4)
                abort();
        } else
            abort(); /* the broker never sends READY or REPLY */
    } else
        abort();
}

static int s_frame(wire_state_t *w, const void *data, size_t len, int flags)
{
    if (!w->in_message) {
        int peer = s_peer_of(data, len);
        if (peer < 0)
            abort(); /* sent to someone who never spoke */
        if (!(flags & ZMQ_DONTWAIT) || !(flags & ZMQ_SNDMORE))
            abort(); /* a routing frame alone, or one that may block */
        if (w->gone[peer]) {
            errno = EHOSTUNREACH;
            return -1;
        }
        w->peer = peer;
        w->count = 0;
        w->in_message = true;
    }
    if (w->count >= FRAMES_MAX)
        abort();
    memcpy(w->frame[w->count], data, len < KEEP ? len : KEEP);
    w->size[w->count++] = len;
    if (!(flags & ZMQ_SNDMORE)) {
        w->in_message = false;
        s_check_message(w);
    }
    return (int)len;
}

static int s_send(void *ctx, const void *data, size_t len, int flags)
{
    return s_frame(ctx, data, len, flags);
}

static int s_send_msg(void *ctx, zmq_msg_t *msg, int flags)
{
    int rc = s_frame(ctx, zmq_msg_data(msg), zmq_msg_size(msg), flags);
    if (rc >= 0)
        zmq_msg_close(msg); /* taken, as zmq_msg_send takes it */
    return rc;
}

/* The script's reader: every read is bounded by the input. */
typedef struct {
    const uint8_t *p, *end;
} input_t;

static int s_byte(input_t *in)
{
    return in->p < in->end ? *in->p++ : -1;
}

/* A length-prefixed piece: one byte of length (255: two more bytes). */
static size_t s_piece(input_t *in, const uint8_t **out)
{
    int n = s_byte(in);
    size_t len = n < 0 ? 0 : (size_t)n;
    if (n == 255) {
        int hi = s_byte(in), lo = s_byte(in);
        len = hi < 0 || lo < 0 ? 0 : (size_t)(hi << 8 | lo);
    }
    if (len > (size_t)(in->end - in->p))
        len = (size_t)(in->end - in->p);
    *out = in->p;
    in->p += len;
    return len;
}

static void s_init(zmq_msg_t *frame, const void *data, size_t len)
{
    zmq_msg_init_size(frame, len);
    if (len)
        memcpy(zmq_msg_data(frame), data, len);
}

/* Is this message a client request the broker must answer exactly once? */
static bool s_well_formed_request(zmq_msg_t *frames, int count)
{
    return count == 5 && zmq_msg_size(&frames[1]) == 0 && zmq_msg_size(&frames[2]) == 6 &&
           memcmp(zmq_msg_data(&frames[2]), MDP_CLIENT, 6) == 0 && zmq_msg_size(&frames[3]) > 0 &&
           zmq_msg_size(&frames[3]) <= MDP_SERVICE_MAX &&
           !memchr(zmq_msg_data(&frames[3]), '\0', zmq_msg_size(&frames[3]));
}

static void s_deliver(broker_core_t *core, wire_state_t *w, int peer, zmq_msg_t *frames, int count,
                      int64_t now)
{
    if (s_well_formed_request(frames, count))
        w->requests[peer]++;
    broker_core_message(core, frames, count, now);
    for (int i = 0; i < count; i++)
        zmq_msg_close(&frames[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const services[] = {"orders",       "catalog", "mmi.service",
                                           "mmi.services", "mmi.x",   "nosuch"};
    wire_state_t wire = {.peer = -1};
    broker_config_t config = {.heartbeat_ms = 100, .request_timeout_ms = 500, .queue_limit = 4};
    broker_wire_t out = {.ctx = &wire, .send = s_send, .send_msg = s_send_msg};
    broker_core_t *core = broker_core_new(&config, &out);
    if (!core)
        return 0;
    int64_t now = 1000000;
    broker_core_tick(core, now);
    input_t in = {data, data + size};
    int steps = 0;
    for (int b; (b = s_byte(&in)) >= 0 && steps < 512; steps++) {
        int kind = b & 3, peer = (b >> 2) & 3, shape = b >> 4;
        const char *id = s_ids[peer];
        zmq_msg_t frames[FRAMES_MAX];
        int count = 0;
        const uint8_t *piece;
        size_t len;
        if (kind == 0) {
            const char *service = services[shape % (sizeof services / sizeof *services)];
            s_init(&frames[count++], id, strlen(id));
            s_init(&frames[count++], "", 0);
            s_init(&frames[count++], MDP_CLIENT, 6);
            s_init(&frames[count++], service, strlen(service));
            len = s_piece(&in, &piece);
            s_init(&frames[count++], piece, len);
        } else if (kind == 1) {
            s_init(&frames[count++], id, strlen(id));
            s_init(&frames[count++], "", 0);
            s_init(&frames[count++], MDP_WORKER, 6);
            uint8_t command;
            switch (shape & 7) {
            case 0: /* READY service */
            case 1: /* READY service capacity */
                command = MDP_READY;
                s_init(&frames[count++], &command, 1);
                s_init(&frames[count++], services[shape & 1], strlen(services[shape & 1]));
                if ((shape & 7) == 1) {
                    char capacity[8];
                    int c = s_byte(&in);
                    int n = snprintf(capacity, sizeof capacity, "%d", c < 0 ? 2 : c * 8 - 4);
                    s_init(&frames[count++], capacity, (size_t)n);
                }
                break;
            case 2: /* REPLY to the last request, with its tag */
            case 3: /* REPLY to the last request, untagged (plain MDP) */
            case 4: /* REPLY with a wrong tag */
                command = MDP_REPLY;
                s_init(&frames[count++], &command, 1);
                s_init(&frames[count++], wire.last_client[peer], wire.last_client_len[peer]);
                s_init(&frames[count++], "", 0);
                len = s_piece(&in, &piece);
                s_init(&frames[count++], piece, len);
                if ((shape & 7) == 2)
                    s_init(&frames[count++], wire.last_tag[peer], MDP_TAG_LEN);
                else if ((shape & 7) == 4)
                    s_init(&frames[count++], "87654321", MDP_TAG_LEN);
                break;
            case 5:
                command = MDP_HEARTBEAT;
                s_init(&frames[count++], &command, 1);
                break;
            case 6:
                command = MDP_DISCONNECT;
                s_init(&frames[count++], &command, 1);
                break;
            default: { /* any command byte, any frames after it */
                int c = s_byte(&in);
                command = (uint8_t)(c < 0 ? 0 : c);
                s_init(&frames[count++], &command, 1);
                int more = s_byte(&in);
                for (int i = 0; i < (more < 0 ? 0 : more % 5); i++) {
                    len = s_piece(&in, &piece);
                    s_init(&frames[count++], piece, len);
                }
            }
            }
        } else if (kind == 2) {
            /* The ROUTER always puts the peer's id first; the rest is anything. */
            s_init(&frames[count++], id, strlen(id));
            int more = s_byte(&in);
            for (int i = 0; i < (more < 0 ? 0 : more % 8); i++) {
                len = s_piece(&in, &piece);
                s_init(&frames[count++], piece, len);
            }
        } else {
            if (shape == 15) {
                wire.gone[peer] = !wire.gone[peer];
                wire.ever_gone[peer] = true;
            } else {
                int t = s_byte(&in);
                now += (t < 0 ? 1 : t) * 20;
                broker_core_tick(core, now);
            }
            continue;
        }
        s_deliver(core, &wire, peer, frames, count, now);
    }
    /* Whatever is pending is answered now. */
    broker_core_destroy(&core);
    for (int i = 0; i < PEERS; i++)
        if (!wire.ever_gone[i] && wire.replies[i] != wire.requests[i])
            abort(); /* a request answered twice, or never */
    return 0;
}

/*  retailctl_watch.c - `retailctl watch` (retailctl_watch.h).
 *
 *  One thread, one loop: a poll on the SUB socket whose timeout is the
 *  nearer of the idle check (1 s after the last live message) and the
 *  --idle-exit deadline. Every event, live or replayed, goes through
 *  s_emit, which skips duplicates, advances the source's position and
 *  prints what the prefix selects; a live one first goes through
 *  s_catch_up when it shows a gap. events.since is asked one request at a
 *  time on the broker client, each reply matched by its id and decoded
 *  into a zone of its own (the live event being handled lives in another),
 *  so a replay in the middle of a live event leaves that event intact.
 *
 *  Sources are a small table (WATCH_SOURCES of them); events of sources
 *  beyond it are printed without duplicate checks rather than dropped.
 *  Events that are not a well-formed {type, seq, at, source, data} map are
 *  skipped with a line on stderr.
 */
#include "tools/retailctl_watch.h"
#include "protocol/envelope.h"
#include "protocol/frames.h"
#include "protocol/jsonpack.h"
#include "protocol/keys.h"
#include "protocol/mpcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

#define WATCH_SOURCES 32
#define SOURCE_MAX 31
#define IDLE_CHECK_MS 1000
#define CONTINUE -1 /* not an exit status: go on */

/* The services whose events can be asked again (they keep an outbox). */
static const char *const s_outbox_sources[] = {"orders", "payments", "catalog", NULL};

typedef struct {
    char name[SOURCE_MAX + 1];
    uint64_t last; /* the last seq handled (printed or passed by the prefix) */
    bool known;    /* last means something */
    bool replayable;
} position_t;

/* One event's fields, pointing into a zone. */
typedef struct {
    const msgpack_object *map;
    char type[64];
    char source[SOURCE_MAX + 1];
    uint64_t seq;
} event_t;

typedef struct {
    const watch_config_t *c;
    const char *since_source; /* replayable too */
    position_t positions[WATCH_SOURCES];
    int n_positions;
    long printed;
    int64_t last_printed; /* mono ms: --idle-exit counts from here */
    uint64_t next_id;
    msgpack_zone reply_zone;
    zframe_t *reply_frame;
    envelope_reply_t reply;
} watch_t;

/* ------------------------------------------------------------------ */
/* Events                                                              */

static bool s_copy_str(const msgpack_object *o, char *out, size_t size)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size == 0 || o->via.str.size >= size)
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

/* Reads an event map's fields into ev; false when it is not one. */
static bool s_event_read(const msgpack_object *map, event_t *ev)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return false;
    ev->map = map;
    const msgpack_object *seq = mp_map_get(map, "seq");
    if (!s_copy_str(mp_map_get(map, "type"), ev->type, sizeof ev->type) ||
        !s_copy_str(mp_map_get(map, "source"), ev->source, sizeof ev->source) || !seq ||
        seq->type != MSGPACK_OBJECT_POSITIVE_INTEGER || seq->via.u64 == 0)
        return false;
    ev->seq = seq->via.u64;
    return true;
}

static bool s_replayable(const watch_t *self, const char *source)
{
    for (const char *const *r = s_outbox_sources; *r; r++)
        if (streq(*r, source))
            return true;
    return self->since_source && streq(self->since_source, source);
}

/* The source's position, made (not known yet) on first sight; NULL when
 * the table is full. */
static position_t *s_position(watch_t *self, const char *source)
{
    for (int i = 0; i < self->n_positions; i++)
        if (streq(self->positions[i].name, source))
            return &self->positions[i];
    if (self->n_positions == WATCH_SOURCES)
        return NULL;
    position_t *p = &self->positions[self->n_positions++];
    snprintf(p->name, sizeof p->name, "%s", source);
    p->last = 0;
    p->known = false;
    p->replayable = s_replayable(self, source);
    return p;
}

/* Prints ev as {"type","seq","at","source","data"}, in that order. 0, or
 * WATCH_EXIT_UNREACHABLE when stdout fails; an event that JSON cannot
 * carry is skipped with a message. */
static int s_print(const event_t *ev)
{
    static const char *const keys[] = {"type", "seq", "at", "source", "data"};
    json_t *object = json_object();
    char err[128] = "";
    bool ok = object != NULL;
    for (size_t i = 0; ok && i < sizeof keys / sizeof keys[0]; i++) {
        const msgpack_object *v = mp_map_get(ev->map, keys[i]);
        json_t *j = NULL;
        if (!v)
            j = json_null();
        else if (jsonpack_to_json(v, &j, err, sizeof err) != 0)
            ok = false;
        if (ok && json_object_set_new(object, keys[i], j) != 0)
            ok = false;
    }
    char *text = ok ? json_dumps(object, JSON_COMPACT) : NULL;
    json_decref(object);
    if (!text) {
        fprintf(stderr, "retailctl watch: skipped %s %" PRIu64 " of %s: %s\n", ev->type, ev->seq,
                ev->source, err[0] ? err : "out of memory");
        return 0;
    }
    int rc = printf("%s\n", text) < 0 || fflush(stdout) != 0 ? -1 : 0;
    free(text);
    if (rc != 0) {
        fprintf(stderr, "retailctl watch: cannot write output: %s\n", strerror(errno));
        return WATCH_EXIT_UNREACHABLE;
    }
    return 0;
}

/* Handles one event in its source's order: a duplicate is skipped, the
 * position advances, the prefix decides whether it is printed. CONTINUE,
 * or the exit status (--count reached, stdout failed). */
static int s_emit(watch_t *self, const event_t *ev)
{
    position_t *p = s_position(self, ev->source);
    if (p && p->known && ev->seq <= p->last)
        return CONTINUE;
    if (p) {
        p->known = true;
        p->last = ev->seq;
    }
    const char *prefix = self->c->prefix ? self->c->prefix : "";
    if (strncmp(ev->type, prefix, strlen(prefix)) != 0)
        return CONTINUE;
    int rc = s_print(ev);
    if (rc != 0)
        return rc;
    self->printed++;
    self->last_printed = zclock_mono();
    if (self->c->count > 0 && self->printed >= self->c->count)
        return WATCH_EXIT_OK;
    return CONTINUE;
}

/* ------------------------------------------------------------------ */
/* events.since                                                        */

static const char *s_error_text(const envelope_reply_t *r, char *out, size_t size)
{
    const msgpack_object *m = mp_map_get(&r->error, "message");
    if (m && m->type == MSGPACK_OBJECT_STR)
        snprintf(out, size, "%.*s", (int)m->via.str.size, m->via.str.ptr);
    else
        snprintf(out, size, "no message");
    return out;
}

/* Asks source's events.since {since, limit: WATCH_PAGE} into self->reply.
 * CONTINUE with an ok reply, WATCH_EXIT_OK when interrupted, else
 * WATCH_EXIT_UNREACHABLE (said why). */
static int s_since(watch_t *self, const char *source, uint64_t since)
{
    zframe_destroy(&self->reply_frame);
    msgpack_zone_clear(&self->reply_zone);
    msgpack_sbuffer args, request;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&request);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    uint64_t id = ++self->next_id;
    bool sent = msgpack_pack_map(&pk, 2) == 0 && mp_pack_str(&pk, "since") == 0 &&
                msgpack_pack_uint64(&pk, since) == 0 && mp_pack_str(&pk, "limit") == 0 &&
                msgpack_pack_int(&pk, WATCH_PAGE) == 0 &&
                envelope_pack_request(&request, id, "events.since", self->c->token, args.data,
                                      args.size) == 0 &&
                mdpcli_send(self->c->client, source, request.data, request.size) == 0;
    msgpack_sbuffer_destroy(&request);
    msgpack_sbuffer_destroy(&args);
    int64_t deadline = zclock_mono() + self->c->timeout_ms;
    while (sent) {
        int64_t left = deadline - zclock_mono();
        char *from = NULL;
        self->reply_frame = left > 0 ? mdpcli_recv(self->c->client, (int)left, &from) : NULL;
        bool theirs = from && streq(from, source);
        zstr_free(&from);
        if (!self->reply_frame)
            break;
        const char *why = NULL;
        if (theirs &&
            envelope_decode_reply(zframe_data(self->reply_frame), zframe_size(self->reply_frame),
                                  &self->reply_zone, &self->reply, &why) &&
            self->reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER &&
            self->reply.id.via.u64 == id) {
            if (self->reply.ok)
                return CONTINUE;
            char text[200];
            fprintf(stderr, "retailctl watch: %s events.since answered %s: %s\n", source,
                    err_code_name(self->reply.code), s_error_text(&self->reply, text, sizeof text));
            return WATCH_EXIT_UNREACHABLE;
        }
        zframe_destroy(&self->reply_frame);
    }
    if (zsys_interrupted)
        return WATCH_EXIT_OK;
    fprintf(stderr,
            "retailctl watch: no answer from %s to events.since within %d ms (is it running, "
            "and does the broker accept this certificate?)\n",
            source, self->c->timeout_ms);
    return WATCH_EXIT_UNREACHABLE;
}

static uint64_t s_uint_field(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = mp_map_get(map, key);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

static int s_trimmed(const position_t *p, uint64_t wanted, uint64_t first)
{
    fprintf(stderr,
            "retailctl watch: %s's events from seq %" PRIu64 " on were trimmed (the oldest it "
            "keeps is %" PRIu64 "); start again with --since %s:%" PRIu64 "\n",
            p->name, wanted, first, p->name, first ? first : wanted);
    return WATCH_EXIT_TRIMMED;
}

/* Replays p's source from p->last + 1 until p->last reaches upto or the
 * source has nothing more (an empty page, or last + 1 == next). CONTINUE,
 * or the exit status. */
static int s_catch_up(watch_t *self, position_t *p, uint64_t upto)
{
    while (p->last < upto) {
        uint64_t from = p->last + 1;
        int rc = s_since(self, p->name, from);
        if (rc != CONTINUE)
            return rc;
        const msgpack_object *data = &self->reply.data;
        const msgpack_object *events = mp_map_get(data, "events");
        uint64_t first = s_uint_field(data, "first");
        uint64_t next = s_uint_field(data, "next");
        if (!events || events->type != MSGPACK_OBJECT_ARRAY) {
            fprintf(stderr, "retailctl watch: %s events.since answered without events\n", p->name);
            return WATCH_EXIT_UNREACHABLE;
        }
        uint32_t n = events->via.array.size;
        /* What it keeps starts after what we need: those are gone. */
        if ((first > from) || (n == 0 && next > from))
            return s_trimmed(p, from, first);
        if (n == 0)
            return CONTINUE; /* caught up */
        uint64_t before = p->last;
        for (uint32_t i = 0; i < n; i++) {
            event_t ev;
            if (!s_event_read(&events->via.array.ptr[i], &ev) || !streq(ev.source, p->name)) {
                fprintf(stderr, "retailctl watch: skipped a malformed event from %s\n", p->name);
                continue;
            }
            if (ev.seq > p->last + 1)
                return s_trimmed(p, p->last + 1, ev.seq);
            if ((rc = s_emit(self, &ev)) != CONTINUE)
                return rc;
        }
        if (next > 0 && p->last + 1 >= next)
            return CONTINUE;
        if (p->last == before)
            return CONTINUE; /* no progress: nothing more to learn here now */
    }
    return CONTINUE;
}

/* The idle check: every replayable source with a position, caught up. */
static int s_idle_check(watch_t *self)
{
    for (int i = 0; i < self->n_positions; i++) {
        position_t *p = &self->positions[i];
        if (!p->known || !p->replayable)
            continue;
        int rc = s_catch_up(self, p, UINT64_MAX);
        if (rc != CONTINUE)
            return rc;
    }
    return CONTINUE;
}

/* ------------------------------------------------------------------ */
/* Live events                                                         */

/* One message from the stream: an event is two frames, the topic and
 * the msgpack map; anything else is dropped (frames_recv swallows a
 * longer message whole). */
static int s_live(watch_t *self, zsock_t *sub, msgpack_zone *zone)
{
    zmq_msg_t frames[2];
    int count = frames_recv(zsock_resolve(sub), frames, 2, ZMQ_DONTWAIT);
    if (count == 0)
        return CONTINUE;
    int rc = CONTINUE;
    msgpack_object map;
    event_t ev;
    size_t off = 0;
    msgpack_zone_clear(zone);
    const uint8_t *body = count == 2 ? zmq_msg_data(&frames[1]) : NULL;
    size_t len = count == 2 ? zmq_msg_size(&frames[1]) : 0;
    if (!body || mpcheck(body, len, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH) != MP_OK ||
        msgpack_unpack((const char *)body, len, &off, zone, &map) != MSGPACK_UNPACK_SUCCESS ||
        !s_event_read(&map, &ev))
        fprintf(stderr, "retailctl watch: skipped a malformed event\n");
    else {
        position_t *p = s_position(self, ev.source);
        if (p && p->known && p->replayable && ev.seq > p->last + 1)
            rc = s_catch_up(self, p, ev.seq - 1);
        if (rc == CONTINUE)
            rc = s_emit(self, &ev);
    }
    if (count > 0)
        frames_close(frames, count);
    return rc;
}

int retailctl_watch(const watch_config_t *c)
{
    watch_t self_storage = {.c = c, .since_source = c->since_source};
    watch_t *self = &self_storage;
    msgpack_zone live_zone;
    if (!msgpack_zone_init(&self->reply_zone, 4096)) {
        fprintf(stderr, "retailctl watch: out of memory\n");
        return WATCH_EXIT_UNREACHABLE;
    }
    if (!msgpack_zone_init(&live_zone, 4096)) {
        msgpack_zone_destroy(&self->reply_zone);
        fprintf(stderr, "retailctl watch: out of memory\n");
        return WATCH_EXIT_UNREACHABLE;
    }
    int status = CONTINUE;
    /* Subscribe before any replay, so that nothing published meanwhile is
     * missed: it waits in the socket, and duplicates are skipped. */
    zsock_t *sub = zsock_new(ZMQ_SUB);
    if (!sub) {
        fprintf(stderr, "retailctl watch: cannot make a socket\n");
        status = WATCH_EXIT_UNREACHABLE;
        goto cleanup;
    }
    zsock_set_rcvhwm(sub, 100000);
    zsock_set_linger(sub, 0);
    keys_apply_client(sub, c->cert, c->server_key);
    zsock_set_subscribe(sub, "");
    if (zsock_connect(sub, "%s", c->events_endpoint) != 0) {
        fprintf(stderr, "retailctl watch: cannot connect to %s\n", c->events_endpoint);
        status = WATCH_EXIT_UNREACHABLE;
        goto cleanup;
    }
    self->last_printed = zclock_mono();
    if (c->since_source) {
        position_t *p = s_position(self, c->since_source);
        p->known = true;
        p->last = c->since_seq - 1;
        status = s_catch_up(self, p, UINT64_MAX);
    }
    int64_t last_live = zclock_mono();
    while (status == CONTINUE) {
        if (zsys_interrupted) {
            status = WATCH_EXIT_OK;
            break;
        }
        int64_t now = zclock_mono();
        int64_t wake = last_live + IDLE_CHECK_MS;
        int64_t idle_end = self->last_printed + (int64_t)c->idle_exit_s * 1000;
        if (c->idle_exit_s > 0 && idle_end < wake)
            wake = idle_end;
        zmq_pollitem_t item = {zsock_resolve(sub), 0, ZMQ_POLLIN, 0};
        int ready = zmq_poll(&item, 1, wake > now ? (long)(wake - now) : 0);
        if (ready < 0 && errno != EINTR) {
            status = WATCH_EXIT_UNREACHABLE;
            break;
        }
        if (ready > 0) {
            /* A batch at a time, so that a busy stream still lets the
             * deadlines below be looked at. */
            for (int k = 0; k < 256 && status == CONTINUE && (zsock_events(sub) & ZMQ_POLLIN); k++)
                status = s_live(self, sub, &live_zone);
            last_live = zclock_mono();
        } else if (ready == 0 && zclock_mono() >= last_live + IDLE_CHECK_MS) {
            status = s_idle_check(self);
            last_live = zclock_mono();
        }
        if (status == CONTINUE && c->idle_exit_s > 0 &&
            zclock_mono() >= self->last_printed + (int64_t)c->idle_exit_s * 1000)
            status = WATCH_EXIT_IDLE;
    }

cleanup:
    zsock_destroy(&sub);
    zframe_destroy(&self->reply_frame);
    msgpack_zone_destroy(&self->reply_zone);
    msgpack_zone_destroy(&live_zone);
    return status == CONTINUE ? WATCH_EXIT_OK : status;
}

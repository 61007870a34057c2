/*  events.c - see events.h. */
#include "tests/events.h"
#include "tests/testutil.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>

#define S_MAX 100000

static bool s_str_is(const msgpack_object *o, const char *want)
{
    size_t len = strlen(want);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == len &&
           memcmp(o->via.str.ptr, want, len) == 0;
}

static const msgpack_object *s_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++)
        if (s_str_is(&map->via.map.ptr[i].key, key))
            return &map->via.map.ptr[i].val;
    return NULL;
}

static void s_copy_str(const msgpack_object *o, char *out, size_t size)
{
    out[0] = '\0';
    if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < size) {
        memcpy(out, o->via.str.ptr, o->via.str.size);
        out[o->via.str.size] = '\0';
    }
}

static int s_take(const outbox_event_t *event, void *arg)
{
    te_events_t *self = arg;
    if (self->n == S_MAX)
        return 1;
    if (self->n == self->cap) {
        int cap = self->cap ? self->cap * 2 : 64;
        te_event_t *items = realloc(self->items, (size_t)cap * sizeof *items);
        if (!items)
            return -1;
        self->items = items;
        self->cap = cap;
    }
    te_event_t *e = &self->items[self->n++];
    memset(e, 0, sizeof *e);
    e->seq = event->seq;
    e->bytes = malloc(event->message_len ? event->message_len : 1);
    if (!e->bytes)
        return -1;
    memcpy(e->bytes, event->message, event->message_len);
    e->bytes_len = event->message_len;
    msgpack_unpacked_init(&e->unpacked);
    size_t offset = 0;
    if (msgpack_unpack_next(&e->unpacked, e->bytes, e->bytes_len, &offset) !=
            MSGPACK_UNPACK_SUCCESS ||
        offset != e->bytes_len || e->unpacked.data.type != MSGPACK_OBJECT_MAP ||
        e->unpacked.data.via.map.size != 5)
        return 0; /* e->ok stays false */
    const msgpack_object *m = &e->unpacked.data;
    const msgpack_object *type = s_get(m, "type"), *seq = s_get(m, "seq"), *at = s_get(m, "at"),
                         *source = s_get(m, "source"), *data = s_get(m, "data");
    s_copy_str(type, e->type, sizeof e->type);
    s_copy_str(source, e->source, sizeof e->source);
    if (at && (at->type == MSGPACK_OBJECT_POSITIVE_INTEGER))
        e->at_ms = (int64_t)at->via.u64;
    e->ok = type && source && data && at && e->at_ms > 0 && seq &&
            seq->type == MSGPACK_OBJECT_POSITIVE_INTEGER && seq->via.u64 == event->seq &&
            strlen(e->type) == event->type_len &&
            memcmp(e->type, event->type, event->type_len) == 0 && e->at_ms == event->at_ms;
    e->data = e->ok ? data : NULL;
    return 0;
}

te_events_t *te_events_read(outbox_t *outbox, uint64_t from)
{
    te_events_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->rc = outbox_read(outbox, from, S_MAX, s_take, self);
    return self;
}

void te_events_destroy(te_events_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    te_events_t *self = *self_p;
    for (int i = 0; i < self->n; i++) {
        msgpack_unpacked_destroy(&self->items[i].unpacked);
        free(self->items[i].bytes);
    }
    free(self->items);
    free(self);
    *self_p = NULL;
}

int te_events_count(const te_events_t *self, const char *type)
{
    int n = 0;
    for (int i = 0; i < self->n; i++)
        n += strcmp(self->items[i].type, type) == 0;
    return n;
}

const te_event_t *te_events_find(const te_events_t *self, const char *type, int nth)
{
    for (int i = 0; i < self->n; i++)
        if (strcmp(self->items[i].type, type) == 0 && nth-- == 0)
            return &self->items[i];
    return NULL;
}

const msgpack_object *te_event_field(const te_event_t *event, const char *key)
{
    return event ? s_get(event->data, key) : NULL;
}

int te_event_fields(const te_event_t *event)
{
    if (!event || !event->data || event->data->type != MSGPACK_OBJECT_MAP)
        return -1;
    return (int)event->data->via.map.size;
}

bool te_event_str_is(const te_event_t *event, const char *key, const char *want)
{
    return s_str_is(te_event_field(event, key), want);
}

int64_t te_event_int(const te_event_t *event, const char *key)
{
    const msgpack_object *o = te_event_field(event, key);
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        return (int64_t)o->via.u64;
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return o->via.i64;
    return INT64_MIN;
}

bool te_event_mentions(const te_event_t *event, const char *needle)
{
    size_t len = strlen(needle);
    for (size_t i = 0; event && len && i + len <= event->bytes_len; i++)
        if (memcmp(event->bytes + i, needle, len) == 0)
            return true;
    return false;
}

/* ---- a broken outbox ---- */

typedef struct {
    MDB_dbi meta;
    bool broken;
} s_break_t;

/* The counter ("next") is 8 bytes; broken, it is 3, and "next-saved"
 * holds the real one (none when there was none) until it is mended. */
static int s_break_txn(MDB_txn *txn, void *arg)
{
    s_break_t *b = arg;
    MDB_val next = {4, "next"}, saved = {10, "next-saved"}, v;
    int rc;
    if (b->broken) {
        rc = mdb_get(txn, b->meta, &next, &v);
        if (rc == 0 && (rc = mdb_put(txn, b->meta, &saved, &v, 0)) != 0)
            return rc;
        if (rc != 0 && rc != MDB_NOTFOUND)
            return rc;
        MDB_val bad = {3, "bad"};
        return mdb_put(txn, b->meta, &next, &bad, 0);
    }
    rc = mdb_get(txn, b->meta, &saved, &v);
    if (rc == MDB_NOTFOUND) {
        rc = mdb_del(txn, b->meta, &next, NULL);
        return rc == MDB_NOTFOUND ? 0 : rc;
    }
    if (rc != 0)
        return rc;
    uint8_t value[8];
    if (v.mv_size != sizeof value)
        return MDB_CORRUPTED;
    memcpy(value, v.mv_data, sizeof value);
    MDB_val good = {sizeof value, value};
    if ((rc = mdb_put(txn, b->meta, &next, &good, 0)) != 0)
        return rc;
    return mdb_del(txn, b->meta, &saved, NULL);
}

int te_outbox_break(kv_t *kv, int meta_db, bool broken)
{
    s_break_t b = {kv_dbi(kv, meta_db), broken};
    int result = 0;
    int rc = kv_write(kv, s_break_txn, &b, &result);
    return rc != 0 ? rc : result;
}

/* ---- the gate ---- */

static int s_gate_txn(MDB_txn *txn, void *arg)
{
    (void)txn;
    te_gate_t *gate = arg;
    pthread_mutex_lock(&gate->lock);
    gate->running = true;
    pthread_cond_broadcast(&gate->changed);
    while (!gate->released)
        pthread_cond_wait(&gate->changed, &gate->lock);
    pthread_mutex_unlock(&gate->lock);
    return 0;
}

void te_gate_hold(te_gate_t *gate, kv_t *kv, kv_inbox_t *inbox)
{
    memset(gate, 0, sizeof *gate);
    pthread_mutex_init(&gate->lock, NULL);
    pthread_cond_init(&gate->changed, NULL);
    gate->job = (kv_job_t){.fn = s_gate_txn, .arg = gate};
    kv_submit(kv, &gate->job, inbox);
    pthread_mutex_lock(&gate->lock);
    while (!gate->running)
        pthread_cond_wait(&gate->changed, &gate->lock);
    pthread_mutex_unlock(&gate->lock);
}

void te_gate_release(te_gate_t *gate)
{
    pthread_mutex_lock(&gate->lock);
    gate->released = true;
    pthread_cond_broadcast(&gate->changed);
    pthread_mutex_unlock(&gate->lock);
}

void te_gate_destroy(te_gate_t *gate)
{
    pthread_cond_destroy(&gate->changed);
    pthread_mutex_destroy(&gate->lock);
}

bool te_inbox_wait(kv_inbox_t *inbox, int n)
{
    int back = 0;
    while (back < n) {
        struct pollfd item = {.fd = kv_inbox_fd(inbox), .events = POLLIN};
        if (poll(&item, 1, 10000) <= 0) /* a bound on a hang, not a wait for luck */
            return false;
        for (kv_job_t *job = kv_inbox_take(inbox); job; job = job->next)
            back++;
    }
    return back == n;
}

te_events_t *te_events_expect(outbox_t *outbox, int n, const char *source, const char *const *never)
{
    te_events_t *es = te_events_read(outbox, 1);
    assert_non_null(es);
    assert_int_equal(es->rc, 0);
    assert_int_equal(es->n, n);
    for (int i = 0; i < n; i++) {
        assert_true(es->items[i].ok);
        assert_int_equal(es->items[i].seq, (uint64_t)i + 1);
        assert_string_equal(es->items[i].source, source);
        for (int k = 0; never && never[k]; k++)
            assert_false(te_event_mentions(&es->items[i], never[k]));
    }
    return es;
}

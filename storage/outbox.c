/*  outbox.c - the transactional outbox (outbox.h says what and why).
 *
 *  Stored value of an event: at_ms (8 bytes, big-endian), the type's
 *  length (1 byte), the type, then the message exactly as it is published
 *  (the msgpack map {type, seq, at, source, data}). The prefix lets a
 *  reader (the relay, events.since, the trimmer) find the type and the
 *  time without decoding msgpack, and the message goes to the socket as
 *  it is stored.
 *
 *  An event is packed in two steps because its seq is known only inside
 *  the transaction: outbox_event packs the caller's data into `data`,
 *  outbox_event_put reads the counter, then packs the whole value into
 *  `value` around the data. Both buffers belong to the environment's
 *  committer thread (the only one that runs write functions).
 *
 *  Reads that run on other threads (outbox_read, outbox_state) each open
 *  a read-only transaction of their own: the environment is MDB_NOTLS, so
 *  that is allowed on any thread, and a relay or an events.since call
 *  reads many events per transaction anyway.
 *
 *  The published mark and the trim are freeing writes (kv_write_freeing):
 *  with the map at its limit they still run, so the outbox, which grows
 *  with every change, can be trimmed and give room back.
 */
#include "storage/outbox.h"
#include "protocol/clock.h"

#include <czmq.h>

struct outbox_t {
    kv_t *kv;
    MDB_dbi events, meta;
    char source[OUTBOX_SOURCE_MAX + 1];
    outbox_config_t config; /* source points into self->source */
    /* the committer's, between outbox_event and outbox_event_put */
    msgpack_sbuffer data;
    msgpack_packer data_pk;
    char type[OUTBOX_TYPE_MAX + 1];
    bool started;
    msgpack_sbuffer value;
};

#define S_PREFIX_MIN 9 /* at_ms and the type's length */

static void s_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t s_get_be64(const uint8_t *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

outbox_t *outbox_new(kv_t *kv, int events_db, int meta_db, const outbox_config_t *config, char *err,
                     size_t errlen)
{
    if (!kv || !config || !config->source || !config->source[0] ||
        strlen(config->source) > OUTBOX_SOURCE_MAX) {
        snprintf(err, errlen, "outbox: a source name of 1 to %d characters is needed",
                 OUTBOX_SOURCE_MAX);
        return NULL;
    }
    outbox_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "outbox: out of memory");
        return NULL;
    }
    self->kv = kv;
    self->events = kv_dbi(kv, events_db);
    self->meta = kv_dbi(kv, meta_db);
    snprintf(self->source, sizeof self->source, "%s", config->source);
    self->config = *config;
    self->config.source = self->source;
    msgpack_sbuffer_init(&self->data);
    msgpack_sbuffer_init(&self->value);
    msgpack_packer_init(&self->data_pk, &self->data, msgpack_sbuffer_write);
    return self;
}

void outbox_destroy(outbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    outbox_t *self = *self_p;
    msgpack_sbuffer_destroy(&self->data);
    msgpack_sbuffer_destroy(&self->value);
    free(self);
    *self_p = NULL;
}

const char *outbox_source(const outbox_t *self)
{
    return self->source;
}

kv_t *outbox_kv(outbox_t *self)
{
    return self->kv;
}

/* ---- appending ---- */

msgpack_packer *outbox_event(outbox_t *self, const char *type)
{
    if (!self)
        return NULL;
    self->started = false;
    if (self->config.off || !type || !type[0] || strlen(type) > OUTBOX_TYPE_MAX)
        return NULL;
    msgpack_sbuffer_clear(&self->data);
    snprintf(self->type, sizeof self->type, "%s", type);
    self->started = true;
    return &self->data_pk;
}

static int s_meta_get(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t *out)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0; /* *out keeps its default */
    if (rc != 0)
        return rc;
    if (v.mv_size != 8)
        return MDB_CORRUPTED;
    *out = s_get_be64(v.mv_data);
    return 0;
}

static int s_meta_put(MDB_txn *txn, MDB_dbi meta, const char *name, uint64_t value)
{
    uint8_t buf[8];
    s_be64(buf, value);
    MDB_val k = {strlen(name), (void *)name}, v = {8, buf};
    return mdb_put(txn, meta, &k, &v, 0);
}

static void s_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

int outbox_event_put(outbox_t *self, MDB_txn *txn)
{
    if (!self->started)
        return -1;
    self->started = false;
    if (self->data.size == 0 || self->data.size > OUTBOX_DATA_MAX)
        return -1;
    uint64_t seq = 1;
    int rc = s_meta_get(txn, self->meta, "next", &seq);
    if (rc != 0)
        return rc;
    int64_t at = clock_now_ms();
    size_t type_len = strlen(self->type);

    msgpack_sbuffer_clear(&self->value);
    uint8_t prefix[S_PREFIX_MIN];
    s_be64(prefix, (uint64_t)at);
    prefix[8] = (uint8_t)type_len;
    msgpack_sbuffer_write(&self->value, (const char *)prefix, sizeof prefix);
    msgpack_sbuffer_write(&self->value, self->type, type_len);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &self->value, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    s_pack_str(&pk, "type", 4);
    s_pack_str(&pk, self->type, type_len);
    s_pack_str(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, seq);
    s_pack_str(&pk, "at", 2);
    msgpack_pack_int64(&pk, at);
    s_pack_str(&pk, "source", 6);
    s_pack_str(&pk, self->source, strlen(self->source));
    s_pack_str(&pk, "data", 4);
    msgpack_sbuffer_write(&self->value, self->data.data, self->data.size);
    if (!self->value.data)
        return -1; /* the buffer could not grow */

    uint8_t key[8];
    s_be64(key, seq);
    MDB_val k = {8, key}, v = {self->value.size, self->value.data};
    if ((rc = mdb_put(txn, self->events, &k, &v, MDB_APPEND)) != 0)
        return rc;
    return s_meta_put(txn, self->meta, "next", seq + 1);
}

void outbox_pack_str(msgpack_packer *pk, const char *key, const char *value)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_str_with_body(pk, value, strlen(value));
}

void outbox_pack_int(msgpack_packer *pk, const char *key, int64_t value)
{
    msgpack_pack_str_with_body(pk, key, strlen(key));
    msgpack_pack_int64(pk, value);
}

/* ---- reading ---- */

static bool s_decode(const MDB_val *k, const MDB_val *v, outbox_event_t *out)
{
    if (k->mv_size != 8 || v->mv_size < S_PREFIX_MIN)
        return false;
    const uint8_t *p = v->mv_data;
    size_t type_len = p[8];
    if (v->mv_size < S_PREFIX_MIN + type_len + 1)
        return false;
    out->seq = s_get_be64(k->mv_data);
    out->at_ms = (int64_t)s_get_be64(p);
    out->type = (const char *)p + S_PREFIX_MIN;
    out->type_len = type_len;
    out->message = p + S_PREFIX_MIN + type_len;
    out->message_len = v->mv_size - S_PREFIX_MIN - type_len;
    return true;
}

int outbox_read(outbox_t *self, uint64_t from, int max, outbox_each_fn *fn, void *arg)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    int rc = mdb_txn_begin(kv_mdb(self->kv), NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    if ((rc = mdb_cursor_open(txn, self->events, &cursor)) != 0)
        goto cleanup;
    uint8_t key[8];
    s_be64(key, from);
    MDB_val k = {8, key}, v;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_RANGE);
    for (int n = 0; rc == 0 && n < max; n++) {
        outbox_event_t event;
        if (!s_decode(&k, &v, &event)) {
            zsys_error("outbox %s: a stored event does not decode", self->source);
            rc = MDB_CORRUPTED;
            goto cleanup;
        }
        int stop = fn(&event, arg);
        if (stop != 0) {
            rc = stop;
            goto cleanup;
        }
        rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
cleanup:
    if (cursor)
        mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    return rc;
}

int outbox_state(outbox_t *self, outbox_state_t *out)
{
    *out = (outbox_state_t){.next = 1};
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    int rc = mdb_txn_begin(kv_mdb(self->kv), NULL, MDB_RDONLY, &txn);
    if (rc != 0)
        return rc;
    if ((rc = s_meta_get(txn, self->meta, "next", &out->next)) != 0 ||
        (rc = s_meta_get(txn, self->meta, "published", &out->published)) != 0 ||
        (rc = mdb_cursor_open(txn, self->events, &cursor)) != 0)
        goto cleanup;
    MDB_val k, v;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
    if (rc == 0 && k.mv_size == 8)
        out->first = s_get_be64(k.mv_data);
    else if (rc != MDB_NOTFOUND && rc != 0)
        goto cleanup;
    rc = 0;
    if (out->published + 1 < out->next) {
        uint8_t key[8];
        s_be64(key, out->published + 1);
        k = (MDB_val){8, key};
        outbox_event_t event;
        rc = mdb_get(txn, self->events, &k, &v);
        if (rc == 0 && s_decode(&k, &v, &event))
            out->oldest_unpublished_ms = event.at_ms;
        if (rc == MDB_NOTFOUND)
            rc = 0; /* trimmed while unpublished cannot happen; mark is older */
    }
cleanup:
    if (cursor)
        mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    return rc;
}

/* ---- the relay's writes ---- */

typedef struct {
    outbox_t *self;
    uint64_t seq;
} s_mark_t;

static int s_mark_txn(MDB_txn *txn, void *arg)
{
    s_mark_t *m = arg;
    uint64_t published = 0;
    int rc = s_meta_get(txn, m->self->meta, "published", &published);
    if (rc != 0 || m->seq <= published)
        return rc;
    return s_meta_put(txn, m->self->meta, "published", m->seq);
}

int outbox_mark_published(outbox_t *self, uint64_t seq)
{
    s_mark_t m = {self, seq};
    int result = 0;
    /* Freeing (kv.h): trims wait for this mark, so it must go on when
     * the map is at its limit. */
    int rc = kv_write_freeing(self->kv, s_mark_txn, &m, &result);
    return rc != 0 ? rc : result;
}

typedef struct {
    outbox_t *self;
    int64_t now_ms;
    int max;
    int trimmed;
} s_trim_t;

static int s_trim_txn(MDB_txn *txn, void *arg)
{
    s_trim_t *t = arg;
    outbox_t *self = t->self;
    t->trimmed = 0;
    uint64_t published = 0, next = 1;
    int rc = s_meta_get(txn, self->meta, "published", &published);
    if (rc == 0)
        rc = s_meta_get(txn, self->meta, "next", &next);
    if (rc != 0)
        return rc;
    MDB_cursor *cursor = NULL;
    if ((rc = mdb_cursor_open(txn, self->events, &cursor)) != 0)
        return rc;
    MDB_val k, v;
    rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST);
    while (rc == 0 && t->trimmed < t->max) {
        outbox_event_t event;
        if (!s_decode(&k, &v, &event)) {
            rc = MDB_CORRUPTED;
            break;
        }
        if (event.seq > published)
            break; /* never an event the stream has not had */
        bool too_many =
            self->config.keep_count > 0 && next - event.seq > (uint64_t)self->config.keep_count;
        bool too_old = self->config.keep_ms > 0 && event.at_ms < t->now_ms - self->config.keep_ms;
        if (!too_many && !too_old)
            break; /* what follows is newer */
        if ((rc = mdb_cursor_del(cursor, 0)) != 0)
            break;
        t->trimmed++;
        rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cursor);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

int outbox_trim(outbox_t *self, int64_t now_ms, int max, int *trimmed)
{
    s_trim_t t = {self, now_ms, max, 0};
    int result = 0;
    int rc = kv_write_freeing(self->kv, s_trim_txn, &t, &result);
    if (trimmed)
        *trimmed = rc == 0 && result == 0 ? t.trimmed : 0;
    return rc != 0 ? rc : result;
}

/*  order_store.c - orders and idempotency keys in LMDB (order_store.h).
 *
 *  Writes are kv_write functions that read what decides them inside
 *  their transaction: create looks the key up and refuses a second order
 *  under it there; a change reads the order, lets the caller's function
 *  decide on what it read, then writes the record, its indexes and (when
 *  asked) the key's response. A decoded order is a ~40 KB struct and a
 *  key's record more, so the write functions work in buffers of the
 *  shared struct (an order, a scratch for its old state, a key) rather
 *  than the stack: every write of the environment runs on its committer
 *  thread, one at a time (storage/kv.h), so those buffers are never used
 *  twice at once, whichever handle or thread asked for the write. What a
 *  caller gets back is copied into its own memory inside the write.
 *
 *  order_store_create and order_store_change wait for their commit; the
 *  same writes prepared in an order_write_t (order_write_create,
 *  order_write_change) run through kv_submit or call_write, and
 *  order_write_end reads their outcome: the waiting forms are that and a
 *  kv_write, so there is one path.
 *
 *  Events (order_store.h): the write that creates an order, gives it a
 *  new status or removes it appends its event to the outbox last, once
 *  everything else of the write is in its transaction: an event is only
 *  ever appended for a change that stands, and a failed append fails the
 *  write, so the change is undone with it. The events are packed from the
 *  order as written (and the status it had as read, `from`).
 *
 *  The lists of items, statuses and steps are RECORD_CUSTOM fields whose
 *  hooks check every entry (lengths, ranges, counts), so a damaged record
 *  is refused, never half used.
 *
 *  A write that finds no room (the disk or the map full, storage/kv.h)
 *  is ORDER_NO_SPACE, whether a put inside it or its commit found none,
 *  and is not logged here (the environment logs running out of room
 *  once); other failed commits stay ORDER_UNAVAILABLE. Nothing of such a
 *  write is stored, and it succeeds once space is freed. The sweep of
 *  expired idempotency keys is a freeing write (kv_write_freeing): it
 *  runs with the map at its limit.
 */
#include "storage/orders/order_store.h"
#include "protocol/clock.h"
#include "protocol/envelope.h"
#include "storage/ids.h"
#include "storage/orders/orders_env.h"
#include "storage/reader.h"
#include "storage/record.h"

#include <czmq.h>
#include <sodium.h>
#include <string.h>

#define S_RECORD_MAX                                                                               \
    (ORDER_ITEMS_MAX * (ORDER_ID_MAX + ORDER_SKU_MAX + ORDER_NAME_MAX + 64) + ORDER_ADDRESS_MAX +  \
     4096)
#define S_KEY_RECORD_MAX (ORDER_RESPONSE_MAX + 512)

struct order_store_shared_t {
    kv_t *kv;
    MDB_dbi orders, by_user, todo, idem, idem_by_time, meta;
    uint8_t fingerprint_key[32];
    outbox_t *outbox; /* borrowed; NULL: no events */
    /* the write functions' buffers (the committer's alone, above) */
    order_t *order;   /* a change's order */
    order_t *before;  /* ... as it was read */
    order_key_t *key; /* a create's or change's key record */
    mpout_t out;
};

struct order_store_t {
    order_store_shared_t *shared;
    store_reader_t reader;
    order_t *order;   /* a read's order (list, check) */
    order_key_t *key; /* check's key record */
};

static const char *const s_status_names[ORDER_STATUS_COUNT] = {
    "pending", "paid", "payment_failed", "shipped", "delivered", "cancelled", "refunded"};

static const char *const s_step_names[STEP_COUNT] = {
    "created",   "reserved",      "charged",     "committed",    "released",
    "abandoned", "held_too_long", "compensated", "cancel_asked", "refunded"};

const char *order_status_name(int status)
{
    return status >= 0 && status < ORDER_STATUS_COUNT ? s_status_names[status] : "?";
}

int order_status_parse(const char *name)
{
    for (int i = 0; name && i < ORDER_STATUS_COUNT; i++)
        if (streq(name, s_status_names[i]))
            return i;
    return -1;
}

const char *order_step_name(int step)
{
    return step >= 0 && step < STEP_COUNT ? s_step_names[step] : "?";
}

bool order_has_step(const order_t *order, int step)
{
    for (int i = 0; i < order->n_journal; i++)
        if (order->journal[i].step == step)
            return true;
    return false;
}

void order_add_step(order_t *order, int step, int64_t at_ms)
{
    if (order->n_journal == ORDER_JOURNAL_MAX) {
        memmove(&order->journal[1], &order->journal[2],
                sizeof order->journal[0] * (ORDER_JOURNAL_MAX - 2));
        order->n_journal--;
    }
    order->journal[order->n_journal++] = (order_journal_t){step, at_ms};
}

/* ---- the record ---- */

static bool s_text(record_reader_t *r, char *out, size_t size, bool nonempty)
{
    const char *s;
    size_t len;
    if (!record_read_str(r, &s, &len) || len >= size || (nonempty && len == 0) ||
        memchr(s, '\0', len))
        return false;
    memcpy(out, s, len);
    out[len] = '\0';
    return true;
}

static bool s_key_is(const char *key, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(key, want, len) == 0;
}

/* "items": [{product_id, sku, name, unit_price_cents, qty}, ...] */
static bool s_items_decode(record_reader_t *r, void *record)
{
    order_t *order = record;
    uint32_t count;
    if (!record_read_array(r, &count) || count == 0 || count > ORDER_ITEMS_MAX)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        order_item_t *item = &order->items[i];
        memset(item, 0, sizeof *item);
        uint32_t pairs;
        if (!record_read_map(r, &pairs))
            return false;
        int64_t qty = 0, price = -1;
        for (uint32_t k = 0; k < pairs; k++) {
            const char *key;
            size_t key_len;
            if (!record_read_str(r, &key, &key_len))
                return false;
            bool ok;
            if (s_key_is(key, key_len, "product_id"))
                ok = s_text(r, item->product_id, sizeof item->product_id, true);
            else if (s_key_is(key, key_len, "sku"))
                ok = s_text(r, item->sku, sizeof item->sku, false);
            else if (s_key_is(key, key_len, "name"))
                ok = s_text(r, item->name, sizeof item->name, false);
            else if (s_key_is(key, key_len, "unit_price_cents"))
                ok = record_read_int64(r, &price);
            else if (s_key_is(key, key_len, "qty"))
                ok = record_read_int64(r, &qty);
            else
                ok = record_skip(r);
            if (!ok)
                return false;
        }
        if (!item->product_id[0] || qty < 1 || qty > ORDER_QTY_MAX || price < 0)
            return false;
        item->qty = (int)qty;
        item->unit_price_cents = price;
    }
    order->n_items = (int)count;
    return true;
}

static int s_items_encode(msgpack_packer *pk, const void *record)
{
    const order_t *order = record;
    if (order->n_items < 1 || order->n_items > ORDER_ITEMS_MAX ||
        msgpack_pack_array(pk, (size_t)order->n_items) != 0)
        return -1;
    for (int i = 0; i < order->n_items; i++) {
        const order_item_t *item = &order->items[i];
        if (msgpack_pack_map(pk, 5) != 0 || mp_pack_str(pk, "product_id") != 0 ||
            mp_pack_str(pk, item->product_id) != 0 || mp_pack_str(pk, "sku") != 0 ||
            mp_pack_str(pk, item->sku) != 0 || mp_pack_str(pk, "name") != 0 ||
            mp_pack_str(pk, item->name) != 0 || mp_pack_str(pk, "unit_price_cents") != 0 ||
            msgpack_pack_int64(pk, item->unit_price_cents) != 0 || mp_pack_str(pk, "qty") != 0 ||
            msgpack_pack_int64(pk, item->qty) != 0)
            return -1;
    }
    return 0;
}

/* [[code, at], ...] for the history (codes: order_status_t) and the
 * journal (order_step_t): both are arrays of pairs of ints. */
static bool s_pairs_decode(record_reader_t *r, int *n, int max, int limit, int *codes, int64_t *ats,
                           size_t stride)
{
    uint32_t count;
    if (!record_read_array(r, &count) || count > (uint32_t)max)
        return false;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t two;
        int64_t code, at;
        if (!record_read_array(r, &two) || two != 2 || !record_read_int64(r, &code) ||
            !record_read_int64(r, &at) || code < 0 || code >= limit)
            return false;
        *(int *)((char *)codes + i * stride) = (int)code;
        *(int64_t *)((char *)ats + i * stride) = at;
    }
    *n = (int)count;
    return true;
}

static int s_pairs_encode(msgpack_packer *pk, int n, const int *codes, const int64_t *ats,
                          size_t stride)
{
    if (msgpack_pack_array(pk, (size_t)n) != 0)
        return -1;
    for (int i = 0; i < n; i++)
        if (msgpack_pack_array(pk, 2) != 0 ||
            msgpack_pack_int64(pk, *(const int *)((const char *)codes + i * stride)) != 0 ||
            msgpack_pack_int64(pk, *(const int64_t *)((const char *)ats + i * stride)) != 0)
            return -1;
    return 0;
}

static bool s_history_decode(record_reader_t *r, void *record)
{
    order_t *o = record;
    return s_pairs_decode(r, &o->n_history, ORDER_HISTORY_MAX, ORDER_STATUS_COUNT,
                          &o->history[0].status, &o->history[0].at_ms, sizeof o->history[0]);
}

static int s_history_encode(msgpack_packer *pk, const void *record)
{
    const order_t *o = record;
    return s_pairs_encode(pk, o->n_history, &o->history[0].status, &o->history[0].at_ms,
                          sizeof o->history[0]);
}

static bool s_journal_decode(record_reader_t *r, void *record)
{
    order_t *o = record;
    return s_pairs_decode(r, &o->n_journal, ORDER_JOURNAL_MAX, STEP_COUNT, &o->journal[0].step,
                          &o->journal[0].at_ms, sizeof o->journal[0]);
}

static int s_journal_encode(msgpack_packer *pk, const void *record)
{
    const order_t *o = record;
    return s_pairs_encode(pk, o->n_journal, &o->journal[0].step, &o->journal[0].at_ms,
                          sizeof o->journal[0]);
}

static const record_field_t s_fields[] = {
    RECORD_STR_FIELD(order_t, user_id, "user_id", RECORD_REQUIRED),
    RECORD_CUSTOM_FIELD("items", s_items_decode, s_items_encode, RECORD_REQUIRED),
    RECORD_INT64_FIELD(order_t, total_cents, "total_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(order_t, currency, "currency", RECORD_REQUIRED),
    RECORD_ENUM_FIELD(order_t, status, "status", s_status_names, ORDER_STATUS_COUNT,
                      RECORD_REQUIRED),
    RECORD_CUSTOM_FIELD("history", s_history_decode, s_history_encode, RECORD_REQUIRED),
    RECORD_STR_FIELD(order_t, payment_id, "payment_id", 0),
    RECORD_STR_FIELD(order_t, payment_status, "payment_status", 0),
    RECORD_STR_FIELD(order_t, brand, "brand", 0),
    RECORD_STR_FIELD(order_t, last4, "last4", 0),
    RECORD_STR_FIELD(order_t, failure_code, "failure_code", 0),
    RECORD_STR_FIELD(order_t, failure_reason, "failure_reason", 0),
    RECORD_BIN_FIELD(order_t, address, address_len, "address", RECORD_REQUIRED),
    RECORD_CUSTOM_FIELD("journal", s_journal_decode, s_journal_encode, RECORD_REQUIRED),
    RECORD_STR_FIELD(order_t, lease, "lease", 0),
    RECORD_INT64_FIELD(order_t, lease_until_ms, "lease_until", 0),
    RECORD_BOOL_FIELD(order_t, compensate, "compensate", 0),
    RECORD_STR_FIELD(order_t, key_hash, "key_hash", 0),
    RECORD_INT64_FIELD(order_t, created_at_ms, "created_at", RECORD_REQUIRED),
    RECORD_INT64_FIELD(order_t, updated_at_ms, "updated_at", RECORD_REQUIRED),
};
static const record_table_t s_table = RECORD_TABLE(s_fields);

/* Only the status and the user, for filters that must not decode items. */
static const record_field_t s_brief_fields[] = {
    RECORD_STR_FIELD(order_t, user_id, "user_id", RECORD_REQUIRED),
    RECORD_ENUM_FIELD(order_t, status, "status", s_status_names, ORDER_STATUS_COUNT,
                      RECORD_REQUIRED),
};
static const record_table_t s_brief_table = RECORD_TABLE(s_brief_fields);

/* The key record as stored: order_key_t with the fingerprint's length
 * member that the codec's BIN needs. */
typedef struct {
    uint8_t fingerprint[32];
    size_t fingerprint_len;
    char order_id[ORDER_ID_MAX + 1];
    bool running;
    char code[32];
    char message[160];
    uint8_t body[ORDER_RESPONSE_MAX];
    size_t body_len;
    int64_t created_at_ms;
} s_key_record_t;
static const record_field_t s_key_record_fields[] = {
    RECORD_BIN_FIELD(s_key_record_t, fingerprint, fingerprint_len, "fingerprint", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_key_record_t, order_id, "order_id", RECORD_REQUIRED),
    RECORD_BOOL_FIELD(s_key_record_t, running, "running", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_key_record_t, code, "code", 0),
    RECORD_STR_FIELD(s_key_record_t, message, "message", 0),
    RECORD_BIN_FIELD(s_key_record_t, body, body_len, "body", 0),
    RECORD_INT64_FIELD(s_key_record_t, created_at_ms, "created_at", RECORD_REQUIRED),
};
static const record_table_t s_key_table = RECORD_TABLE(s_key_record_fields);

/* A failed LMDB call or write as a status: ORDER_NO_SPACE when it found
 * no room (not logged: the environment logs running out of room), else
 * ORDER_ERROR, logged. */
static order_store_status_t s_fail(const char *what, int rc)
{
    if (kv_no_space(rc))
        return ORDER_NO_SPACE;
    zsys_error("order_store: %s: %s", what, mdb_strerror(rc));
    return ORDER_ERROR;
}

static MDB_val s_val(const void *p, size_t n)
{
    return (MDB_val){.mv_size = n, .mv_data = (void *)p};
}

static bool s_needs_work(const order_t *o)
{
    return o->status == ORDER_PENDING || o->compensate ||
           (o->status == ORDER_PAID && order_has_step(o, STEP_CANCEL_ASKED));
}

/* user \0 id into buf; its length. */
static size_t s_user_key(char *buf, const char *user, const char *id)
{
    size_t ul = strlen(user), il = strlen(id);
    memcpy(buf, user, ul);
    buf[ul] = '\0';
    memcpy(buf + ul + 1, id, il);
    return ul + 1 + il;
}

static void s_hex_to_bin(const char *hex, uint8_t out[32])
{
    size_t len = 0;
    if (sodium_hex2bin(out, 32, hex, strlen(hex), NULL, &len, NULL) != 0 || len != 32)
        memset(out, 0, 32);
}

static void s_key_hash(const char *user, const char *key, uint8_t out[32])
{
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, 32);
    crypto_generichash_update(&st, (const uint8_t *)user, strlen(user) + 1);
    crypto_generichash_update(&st, (const uint8_t *)key, strlen(key));
    crypto_generichash_final(&st, out, 32);
}

static order_store_status_t s_read_key(MDB_txn *txn, MDB_dbi dbi, const uint8_t hash[32],
                                       order_key_t *out, bool *found)
{
    *found = false;
    MDB_val k = s_val(hash, 32), v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return ORDER_OK;
    if (rc != 0)
        return s_fail("mdb_get idem", rc);
    /* order_key_t and s_key_record_t differ only by the fingerprint's
     * length member; decode into the record type on the heap. */
    s_key_record_t *rec = calloc(1, sizeof *rec);
    if (!rec)
        return ORDER_UNAVAILABLE;
    record_status_t d = record_decode(&s_key_table, v.mv_data, v.mv_size, rec);
    order_store_status_t status = ORDER_OK;
    if (d != RECORD_OK || rec->fingerprint_len != 32) {
        zsys_error("order_store: malformed idempotency key: %s", record_strerror(d));
        status = ORDER_ERROR;
    } else if (out) {
        memcpy(out->fingerprint, rec->fingerprint, 32);
        snprintf(out->order_id, sizeof out->order_id, "%s", rec->order_id);
        out->running = rec->running;
        snprintf(out->code, sizeof out->code, "%s", rec->code);
        snprintf(out->message, sizeof out->message, "%s", rec->message);
        memcpy(out->body, rec->body, rec->body_len);
        out->body_len = rec->body_len;
        out->created_at_ms = rec->created_at_ms;
    }
    free(rec);
    *found = status == ORDER_OK;
    return status;
}

static order_store_status_t s_put_key(MDB_txn *txn, order_store_shared_t *self,
                                      const uint8_t hash[32], const order_key_t *key)
{
    s_key_record_t *rec = calloc(1, sizeof *rec);
    if (!rec)
        return ORDER_UNAVAILABLE;
    memcpy(rec->fingerprint, key->fingerprint, 32);
    rec->fingerprint_len = 32;
    snprintf(rec->order_id, sizeof rec->order_id, "%s", key->order_id);
    rec->running = key->running;
    snprintf(rec->code, sizeof rec->code, "%s", key->code);
    snprintf(rec->message, sizeof rec->message, "%s", key->message);
    memcpy(rec->body, key->body, key->body_len);
    rec->body_len = key->body_len;
    rec->created_at_ms = key->created_at_ms;
    mpout_init(&self->out, S_KEY_RECORD_MAX);
    order_store_status_t status = ORDER_OK;
    if (record_pack(&s_key_table, rec, &self->out) != 0) {
        zsys_error("order_store: an idempotency key does not encode");
        status = ORDER_ERROR;
    } else {
        MDB_val k = s_val(hash, 32), v = s_val(self->out.buf.data, self->out.buf.size);
        int rc = mdb_put(txn, self->idem, &k, &v, 0);
        if (rc != 0)
            status = s_fail("mdb_put idem", rc);
    }
    mpout_destroy(&self->out);
    free(rec);
    return status;
}

static order_store_status_t s_put_order(MDB_txn *txn, order_store_shared_t *self, const order_t *o,
                                        unsigned flags)
{
    mpout_init(&self->out, S_RECORD_MAX);
    order_store_status_t status = ORDER_OK;
    if (record_pack(&s_table, o, &self->out) != 0) {
        zsys_error("order_store: order %s does not encode", o->id);
        status = ORDER_ERROR;
    } else {
        MDB_val k = s_val(o->id, strlen(o->id)), v = s_val(self->out.buf.data, self->out.buf.size);
        int rc = mdb_put(txn, self->orders, &k, &v, flags);
        if (rc == MDB_KEYEXIST)
            status = ORDER_ERROR;
        else if (rc != 0)
            status = s_fail("mdb_put orders", rc);
    }
    mpout_destroy(&self->out);
    return status;
}

/* A todo entry's value: the lease's end (8 bytes, BE) and the lease, so
 * that recovery passes over the orders a live saga holds without reading
 * them. */
static order_store_status_t s_set_todo(MDB_txn *txn, order_store_shared_t *self, const order_t *o,
                                       bool on)
{
    uint8_t value[8 + ORDER_LEASE_MAX];
    size_t lease_len = strlen(o->lease);
    for (int i = 0; i < 8; i++)
        value[i] = (uint8_t)((uint64_t)o->lease_until_ms >> (56 - 8 * i));
    memcpy(value + 8, o->lease, lease_len);
    MDB_val k = s_val(o->id, strlen(o->id)), v = s_val(value, 8 + lease_len);
    int rc = on ? mdb_put(txn, self->todo, &k, &v, 0) : mdb_del(txn, self->todo, &k, NULL);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    return rc == 0 ? ORDER_OK : s_fail("todo", rc);
}

static order_store_status_t s_read_order(MDB_txn *txn, MDB_dbi dbi, const char *id, order_t *out)
{
    MDB_val k = s_val(id, strlen(id)), v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc == MDB_NOTFOUND)
        return ORDER_NOT_FOUND;
    if (rc != 0)
        return s_fail("mdb_get orders", rc);
    memset(out, 0, sizeof *out);
    record_status_t d = record_decode(&s_table, v.mv_data, v.mv_size, out);
    if (d != RECORD_OK) {
        zsys_error("order_store: malformed order %s: %s", id, record_strerror(d));
        return ORDER_ERROR;
    }
    snprintf(out->id, sizeof out->id, "%s", id);
    return ORDER_OK;
}

/* ---- events ---- */

/* Stores the event begun in the outbox; an error status when it cannot
 * be (the write must fail with it). */
static order_store_status_t s_event_put(order_store_shared_t *self, MDB_txn *txn, const order_t *o)
{
    int rc = outbox_event_put(self->outbox, txn);
    if (rc == 0)
        return ORDER_OK;
    if (rc != -1) /* an LMDB error; -1 is the outbox's own: the data does not fit */
        return s_fail("outbox", rc);
    zsys_error("order_store: the event of order %s does not fit the outbox", o->id);
    return ORDER_ERROR;
}

/* order.created: {order_id, user_id, status, total_cents, currency,
 * items: [{product_id, sku, qty, unit_price_cents}]} */
static order_store_status_t s_event_created(order_store_shared_t *self, MDB_txn *txn,
                                            const order_t *o)
{
    msgpack_packer *pk = outbox_event(self->outbox, "order.created");
    if (!pk)
        return ORDER_OK; /* no outbox, or it is off */
    msgpack_pack_map(pk, 6);
    outbox_pack_str(pk, "order_id", o->id);
    outbox_pack_str(pk, "user_id", o->user_id);
    outbox_pack_str(pk, "status", order_status_name(o->status));
    outbox_pack_int(pk, "total_cents", o->total_cents);
    outbox_pack_str(pk, "currency", o->currency);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, (size_t)o->n_items);
    for (int i = 0; i < o->n_items; i++) {
        const order_item_t *item = &o->items[i];
        msgpack_pack_map(pk, 4);
        outbox_pack_str(pk, "product_id", item->product_id);
        outbox_pack_str(pk, "sku", item->sku);
        outbox_pack_int(pk, "qty", item->qty);
        outbox_pack_int(pk, "unit_price_cents", item->unit_price_cents);
    }
    return s_event_put(self, txn, o);
}

/* order.<status> of a change from status `from`: {order_id, user_id,
 * status, from, total_cents, currency, payment_id?}. A change back to
 * pending has no event type (and no transition makes one). */
static order_store_status_t s_event_status(order_store_shared_t *self, MDB_txn *txn,
                                           const order_t *o, int from)
{
    if (o->status == from || o->status == ORDER_PENDING)
        return ORDER_OK;
    char type[OUTBOX_TYPE_MAX + 1];
    snprintf(type, sizeof type, "order.%s", order_status_name(o->status));
    msgpack_packer *pk = outbox_event(self->outbox, type);
    if (!pk)
        return ORDER_OK;
    bool paid = o->payment_id[0] != '\0';
    msgpack_pack_map(pk, paid ? 7 : 6);
    outbox_pack_str(pk, "order_id", o->id);
    outbox_pack_str(pk, "user_id", o->user_id);
    outbox_pack_str(pk, "status", order_status_name(o->status));
    outbox_pack_str(pk, "from", order_status_name(from));
    outbox_pack_int(pk, "total_cents", o->total_cents);
    outbox_pack_str(pk, "currency", o->currency);
    if (paid)
        outbox_pack_str(pk, "payment_id", o->payment_id);
    return s_event_put(self, txn, o);
}

/* order.cancelled of a pending order removed (its stock was not there,
 * or a product was gone): it was announced by order.created, so its end
 * is announced too. reason: the error code the removal keeps under the
 * order's key ("out_of_stock", "not_found"). */
static order_store_status_t s_event_removed(order_store_shared_t *self, MDB_txn *txn,
                                            const order_t *before, const char *code)
{
    msgpack_packer *pk = outbox_event(self->outbox, "order.cancelled");
    if (!pk)
        return ORDER_OK;
    msgpack_pack_map(pk, 8);
    outbox_pack_str(pk, "order_id", before->id);
    outbox_pack_str(pk, "user_id", before->user_id);
    outbox_pack_str(pk, "status", "cancelled");
    outbox_pack_str(pk, "from", order_status_name(before->status));
    outbox_pack_str(pk, "reason", code && code[0] ? code : "out_of_stock");
    mp_pack_str(pk, "removed");
    msgpack_pack_true(pk);
    outbox_pack_int(pk, "total_cents", before->total_cents);
    outbox_pack_str(pk, "currency", before->currency);
    return s_event_put(self, txn, before);
}

/* ---- handles ---- */

typedef struct {
    MDB_dbi meta;
    uint8_t key[32];
} s_meta_arg_t;

static int s_meta_txn(MDB_txn *txn, void *arg_p)
{
    s_meta_arg_t *arg = arg_p;
    MDB_val k = s_val("fingerprint-key", 15), v;
    int rc = mdb_get(txn, arg->meta, &k, &v);
    if (rc == 0 && v.mv_size == 32) {
        memcpy(arg->key, v.mv_data, 32);
        return 0;
    }
    if (rc != MDB_NOTFOUND && rc != 0)
        return rc;
    randombytes_buf(arg->key, 32);
    v = s_val(arg->key, 32);
    return mdb_put(txn, arg->meta, &k, &v, 0);
}

order_store_shared_t *order_store_shared_new(kv_t *env, char *err, size_t errlen)
{
    if (!env || sodium_init() < 0) {
        snprintf(err, errlen, "order_store: no environment, or libsodium did not start");
        return NULL;
    }
    order_store_shared_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->kv = env;
    self->orders = kv_dbi(env, ORDERS_DB_ORDERS);
    self->by_user = kv_dbi(env, ORDERS_DB_BY_USER);
    self->todo = kv_dbi(env, ORDERS_DB_TODO);
    self->idem = kv_dbi(env, ORDERS_DB_IDEM);
    self->idem_by_time = kv_dbi(env, ORDERS_DB_IDEM_BY_TIME);
    self->meta = kv_dbi(env, ORDERS_DB_META);
    s_meta_arg_t arg = {.meta = self->meta};
    int result = 0;
    int rc = kv_write(env, s_meta_txn, &arg, &result);
    if (rc != 0 || result != 0) {
        snprintf(err, errlen, "order_store: cannot read the fingerprint key: %s",
                 mdb_strerror(rc ? rc : result));
        free(self);
        return NULL;
    }
    memcpy(self->fingerprint_key, arg.key, 32);
    sodium_memzero(arg.key, sizeof arg.key);
    self->order = calloc(1, sizeof *self->order);
    self->before = calloc(1, sizeof *self->before);
    self->key = calloc(1, sizeof *self->key);
    if (!self->order || !self->before || !self->key) {
        snprintf(err, errlen, "out of memory");
        order_store_shared_destroy(&self);
        return NULL;
    }
    return self;
}

void order_store_shared_set_outbox(order_store_shared_t *self, outbox_t *outbox)
{
    self->outbox = outbox;
}

void order_store_shared_destroy(order_store_shared_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    order_store_shared_t *self = *self_p;
    sodium_memzero(self->fingerprint_key, 32);
    free(self->order);
    free(self->before);
    free(self->key);
    free(self);
    *self_p = NULL;
}

order_store_t *order_store_open(order_store_shared_t *shared)
{
    order_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = shared;
    self->order = calloc(1, sizeof *self->order);
    self->key = calloc(1, sizeof *self->key);
    if (!self->order || !self->key ||
        !store_reader_open(&self->reader, shared->kv, "order_store")) {
        order_store_close(&self);
        return NULL;
    }
    return self;
}

void order_store_close(order_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    order_store_t *self = *self_p;
    store_reader_close(&self->reader);
    free(self->order);
    free(self->key);
    free(self);
    *self_p = NULL;
}

void order_store_fingerprint(order_store_t *self, const void *request, size_t len, uint8_t out[32])
{
    crypto_generichash(out, 32, request, len, self->shared->fingerprint_key, 32);
}

/* ---- create and change ---- */

enum { S_WRITE_CREATE = 1, S_WRITE_CHANGE };

static int s_create_txn(MDB_txn *txn, order_write_t *w)
{
    order_store_shared_t *self = w->shared;
    order_t *o = w->order;
    uint8_t hash[32];
    if (w->has_key) {
        s_key_hash(o->user_id, w->key, hash);
        bool found;
        order_store_status_t status = s_read_key(txn, self->idem, hash, self->key, &found);
        if (status != ORDER_OK)
            return status;
        if (found) {
            if (sodium_memcmp(self->key->fingerprint, w->fingerprint, 32) != 0)
                return ORDER_KEY_REUSED;
            if (self->key->running)
                return ORDER_KEY_RUNNING;
            if (w->key_out)
                memcpy(w->key_out, self->key, sizeof *w->key_out);
            return ORDER_KEY_DONE;
        }
        sodium_bin2hex(o->key_hash, sizeof o->key_hash, hash, 32);
    }
    order_store_status_t status = s_put_order(txn, self, o, MDB_NOOVERWRITE);
    if (status != ORDER_OK)
        return status;
    char buf[ORDER_USER_MAX + ORDER_ID_MAX + 2];
    MDB_val k = s_val(buf, s_user_key(buf, o->user_id, o->id)), v = s_val("", 0);
    int rc = mdb_put(txn, self->by_user, &k, &v, 0);
    if (rc != 0)
        return s_fail("mdb_put by_user", rc);
    if ((status = s_set_todo(txn, self, o, s_needs_work(o))) != ORDER_OK)
        return status;
    if (w->has_key) {
        memset(self->key, 0, sizeof *self->key);
        memcpy(self->key->fingerprint, w->fingerprint, 32);
        snprintf(self->key->order_id, sizeof self->key->order_id, "%s", o->id);
        self->key->running = true;
        self->key->created_at_ms = o->created_at_ms;
        if ((status = s_put_key(txn, self, hash, self->key)) != ORDER_OK)
            return status;
        uint8_t tkey[40];
        for (int i = 0; i < 8; i++)
            tkey[i] = (uint8_t)((uint64_t)o->created_at_ms >> (56 - 8 * i));
        memcpy(tkey + 8, hash, 32);
        k = s_val(tkey, sizeof tkey);
        if ((rc = mdb_put(txn, self->idem_by_time, &k, &v, 0)) != 0)
            return s_fail("mdb_put idem_by_time", rc);
    }
    return s_event_created(self, txn, o);
}

bool order_write_create(order_write_t *w, order_store_t *self, order_t *order, const char *key,
                        const uint8_t fingerprint[32], order_key_t *key_out)
{
    if (!order->user_id[0] || order->n_items < 1 ||
        (key && (!key[0] || strlen(key) > ORDER_KEY_MAX || !fingerprint)))
        return false;
    if (!order->id[0])
        store_new_id('o', order->id);
    int64_t now = clock_now_ms();
    order->status = ORDER_PENDING;
    order->created_at_ms = order->updated_at_ms = now;
    order->n_history = 1;
    order->history[0] = (order_history_t){ORDER_PENDING, now};
    order->n_journal = 0;
    order_add_step(order, STEP_CREATED, now);
    order->key_hash[0] = '\0';
    *w = (order_write_t){.shared = self->shared,
                         .kind = S_WRITE_CREATE,
                         .order = order,
                         .has_key = key != NULL,
                         .key_out = key_out};
    if (key) {
        snprintf(w->key, sizeof w->key, "%s", key);
        memcpy(w->fingerprint, fingerprint, 32);
    }
    return true;
}

order_store_status_t order_store_create(order_store_t *self, order_t *order, const char *key,
                                        const uint8_t fingerprint[32], order_key_t *key_out)
{
    order_write_t w;
    if (!order_write_create(&w, self, order, key, fingerprint, key_out))
        return ORDER_ERROR;
    int result = 0;
    int rc = kv_write(self->shared->kv, order_write_txn, &w, &result);
    return order_write_end(&w, rc == 0, rc == 0 ? result : rc, NULL);
}

order_store_status_t order_store_key(order_store_t *self, const char *user_id, const char *key,
                                     const uint8_t fingerprint[32], order_key_t *key_out)
{
    uint8_t hash[32];
    s_key_hash(user_id, key, hash);
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return ORDER_UNAVAILABLE;
    bool found = false;
    order_store_status_t status = s_read_key(txn, self->shared->idem, hash, key_out, &found);
    store_reader_end(&self->reader);
    if (status != ORDER_OK)
        return status;
    if (!found)
        return ORDER_NOT_FOUND;
    if (sodium_memcmp(key_out->fingerprint, fingerprint, 32) != 0)
        return ORDER_KEY_REUSED;
    return key_out->running ? ORDER_KEY_RUNNING : ORDER_KEY_DONE;
}

static int s_change_txn(MDB_txn *txn, order_write_t *w)
{
    order_store_shared_t *self = w->shared;
    order_t *o = self->order;
    order_store_status_t status = s_read_order(txn, self->orders, w->id, o);
    if (status != ORDER_OK)
        return status;
    memcpy(self->before, o, sizeof *o);
    order_change_t change = {0};
    int refusal = w->fn(o, &change, w->fn_arg);
    if (refusal != 0) {
        w->refusal = refusal;
        return ORDER_REFUSED;
    }
    int64_t now = clock_now_ms();
    snprintf(o->id, sizeof o->id, "%s", self->before->id);
    snprintf(o->user_id, sizeof o->user_id, "%s", self->before->user_id);
    if (change.remove) {
        MDB_val k = s_val(o->id, strlen(o->id));
        int rc = mdb_del(txn, self->orders, &k, NULL);
        if (rc != 0)
            return s_fail("mdb_del orders", rc);
        char buf[ORDER_USER_MAX + ORDER_ID_MAX + 2];
        k = s_val(buf, s_user_key(buf, o->user_id, o->id));
        if ((rc = mdb_del(txn, self->by_user, &k, NULL)) != 0 && rc != MDB_NOTFOUND)
            return s_fail("mdb_del by_user", rc);
        if ((status = s_set_todo(txn, self, o, false)) != ORDER_OK)
            return status;
    } else {
        if (o->status != self->before->status) {
            if (o->n_history == ORDER_HISTORY_MAX) {
                memmove(&o->history[1], &o->history[2],
                        sizeof o->history[0] * (ORDER_HISTORY_MAX - 2));
                o->n_history--;
            }
            o->history[o->n_history++] = (order_history_t){o->status, now};
        }
        o->updated_at_ms = now;
        if ((status = s_put_order(txn, self, o, 0)) != ORDER_OK)
            return status;
        if ((s_needs_work(o) != s_needs_work(self->before) ||
             (s_needs_work(o) && (!streq(o->lease, self->before->lease) ||
                                  o->lease_until_ms != self->before->lease_until_ms))) &&
            (status = s_set_todo(txn, self, o, s_needs_work(o))) != ORDER_OK)
            return status;
    }
    if (change.finish_key && o->key_hash[0]) {
        uint8_t hash[32];
        s_hex_to_bin(o->key_hash, hash);
        bool found;
        if ((status = s_read_key(txn, self->idem, hash, self->key, &found)) != ORDER_OK)
            return status;
        if (found && self->key->running) {
            self->key->running = false;
            snprintf(self->key->code, sizeof self->key->code, "%s", change.code ? change.code : "");
            snprintf(self->key->message, sizeof self->key->message, "%s",
                     change.message ? change.message : "");
            const void *body = change.body;
            size_t body_len = change.body_len;
            if (change.body_of) {
                mpout_init(&self->out, ORDER_RESPONSE_MAX);
                if (change.body_of(o, &self->out) != 0) {
                    mpout_destroy(&self->out);
                    return ORDER_ERROR;
                }
                body = self->out.buf.data;
                body_len = self->out.buf.size;
            }
            if (body_len > ORDER_RESPONSE_MAX) {
                if (change.body_of)
                    mpout_destroy(&self->out);
                return ORDER_ERROR;
            }
            if (body_len)
                memcpy(self->key->body, body, body_len);
            self->key->body_len = body_len;
            if (change.body_of)
                mpout_destroy(&self->out);
            if ((status = s_put_key(txn, self, hash, self->key)) != ORDER_OK)
                return status;
        }
    }
    status = change.remove ? s_event_removed(self, txn, self->before, change.code)
                           : s_event_status(self, txn, o, self->before->status);
    if (status != ORDER_OK)
        return status;
    if (w->order)
        memcpy(w->order, o, sizeof *o);
    return ORDER_OK;
}

bool order_write_change(order_write_t *w, order_store_t *self, const char *id, order_change_fn *fn,
                        void *arg, order_t *out)
{
    if (!id || !id[0] || strlen(id) > ORDER_ID_MAX)
        return false;
    *w = (order_write_t){
        .shared = self->shared, .kind = S_WRITE_CHANGE, .fn = fn, .fn_arg = arg, .order = out};
    snprintf(w->id, sizeof w->id, "%s", id);
    return true;
}

order_store_status_t order_store_change(order_store_t *self, const char *id, order_change_fn *fn,
                                        void *arg, order_t *out, int *refusal)
{
    order_write_t w;
    if (!order_write_change(&w, self, id, fn, arg, out))
        return ORDER_NOT_FOUND;
    int result = 0;
    int rc = kv_write(self->shared->kv, order_write_txn, &w, &result);
    return order_write_end(&w, rc == 0, rc == 0 ? result : rc, refusal);
}

int order_write_txn(MDB_txn *txn, void *arg)
{
    order_write_t *w = arg;
    switch (w->kind) {
    case S_WRITE_CREATE:
        return s_create_txn(txn, w);
    case S_WRITE_CHANGE:
        return s_change_txn(txn, w);
    default:
        return ORDER_ERROR;
    }
}

order_store_status_t order_write_end(const order_write_t *w, bool committed, int result,
                                     int *refusal)
{
    if (!committed) /* the environment logged why; result is its error */
        return kv_no_space(result) ? ORDER_NO_SPACE : ORDER_UNAVAILABLE;
    if (refusal)
        *refusal = w->refusal;
    return (order_store_status_t)result;
}

kv_t *order_store_kv(order_store_t *self)
{
    return self->shared->kv;
}

/* ---- reads ---- */

order_store_status_t order_store_get(order_store_t *self, const char *id, order_t *out)
{
    if (!id || !id[0] || strlen(id) > ORDER_ID_MAX)
        return ORDER_NOT_FOUND;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return ORDER_UNAVAILABLE;
    order_store_status_t status = s_read_order(txn, self->shared->orders, id, out);
    store_reader_end(&self->reader);
    return status;
}

/* Puts cursor on the last key below `below` (below_len 0: the last key
 * of the database). */
static int s_last_below(MDB_cursor *cur, const void *below, size_t below_len, MDB_val *k,
                        MDB_val *v)
{
    if (below_len == 0)
        return mdb_cursor_get(cur, k, v, MDB_LAST);
    *k = s_val(below, below_len);
    int rc = mdb_cursor_get(cur, k, v, MDB_SET_RANGE);
    if (rc == MDB_NOTFOUND)
        return mdb_cursor_get(cur, k, v, MDB_LAST);
    if (rc != 0)
        return rc;
    return mdb_cursor_get(cur, k, v, MDB_PREV);
}

order_store_status_t order_store_list(order_store_t *self, const char *user_id, int status,
                                      const char *cursor, int limit, char ids[][ORDER_ID_MAX + 1],
                                      int *count, bool *more)
{
    *count = 0;
    *more = false;
    if (limit < 1 || strlen(cursor) > ORDER_ID_MAX || strlen(user_id) > ORDER_USER_MAX)
        return ORDER_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return ORDER_UNAVAILABLE;
    bool by_user = user_id[0] != '\0';
    MDB_cursor *cur = NULL;
    order_store_status_t result = ORDER_OK;
    int rc = mdb_cursor_open(txn, by_user ? self->shared->by_user : self->shared->orders, &cur);
    if (rc != 0) {
        result = s_fail("mdb_cursor_open", rc);
        goto cleanup;
    }
    char below[ORDER_USER_MAX + ORDER_ID_MAX + 2];
    size_t below_len, ul = strlen(user_id);
    if (by_user) {
        below_len = s_user_key(below, user_id, cursor);
        if (!cursor[0])
            below[ul] = '\x01'; /* just past every key of the user */
    } else {
        below_len = strlen(cursor);
        memcpy(below, cursor, below_len);
    }
    MDB_val k, v;
    for (rc = s_last_below(cur, below, below_len, &k, &v); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_PREV)) {
        const char *id = k.mv_data;
        size_t id_len = k.mv_size;
        if (by_user) {
            if (k.mv_size <= ul + 1 || memcmp(k.mv_data, user_id, ul) != 0 ||
                ((const char *)k.mv_data)[ul] != '\0')
                break;
            id += ul + 1;
            id_len -= ul + 1;
        }
        if (id_len == 0 || id_len > ORDER_ID_MAX)
            continue;
        if (status >= 0) {
            MDB_val ok = s_val(id, id_len), ov;
            order_t *brief = self->order;
            if (by_user && mdb_get(txn, self->shared->orders, &ok, &ov) != 0)
                continue;
            if (!by_user)
                ov = v;
            brief->status = -1;
            if (record_decode(&s_brief_table, ov.mv_data, ov.mv_size, brief) != RECORD_OK ||
                brief->status != status)
                continue;
        }
        if (*count == limit) {
            *more = true;
            break;
        }
        memcpy(ids[*count], id, id_len);
        ids[*count][id_len] = '\0';
        (*count)++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        result = s_fail("list", rc);
cleanup:
    if (cur)
        mdb_cursor_close(cur);
    store_reader_end(&self->reader);
    if (result != ORDER_OK)
        *count = 0;
    return result;
}

order_store_status_t order_store_todo(order_store_t *self, const char *after, int max,
                                      const char *instance, int64_t now_ms,
                                      char ids[][ORDER_ID_MAX + 1], int *count, bool *end)
{
    *count = 0;
    *end = true;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return ORDER_UNAVAILABLE;
    MDB_cursor *cur = NULL;
    order_store_status_t result = ORDER_OK;
    size_t inst_len = strlen(instance);
    int rc = mdb_cursor_open(txn, self->shared->todo, &cur);
    if (rc != 0) {
        result = s_fail("mdb_cursor_open todo", rc);
        goto cleanup;
    }
    MDB_val k, v;
    for (rc = kv_cursor_after(cur, after, ORDER_ID_MAX, &k, &v); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size == 0 || k.mv_size > ORDER_ID_MAX)
            continue;
        if (*count == max) {
            *end = false;
            break;
        }
        if (v.mv_size >= 8) {
            const uint8_t *b = v.mv_data;
            uint64_t until = 0;
            for (int i = 0; i < 8; i++)
                until = until << 8 | b[i];
            const char *lease = (const char *)b + 8;
            size_t lease_len = v.mv_size - 8;
            bool ours = lease_len > inst_len && memcmp(lease, instance, inst_len) == 0 &&
                        lease[inst_len] == '-';
            if (ours && (int64_t)until > now_ms)
                continue; /* a live saga of this process holds it */
        }
        memcpy(ids[*count], k.mv_data, k.mv_size);
        ids[*count][k.mv_size] = '\0';
        (*count)++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        result = s_fail("todo", rc);
cleanup:
    if (cur)
        mdb_cursor_close(cur);
    store_reader_end(&self->reader);
    return result;
}

typedef struct {
    order_store_t *self;
    int64_t before_ms;
    int max;
    int deleted;
} s_sweep_t;

static int s_sweep_txn(MDB_txn *txn, void *arg_p)
{
    s_sweep_t *arg = arg_p;
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, arg->self->shared->idem_by_time, &cur);
    if (rc != 0)
        return s_fail("mdb_cursor_open idem_by_time", rc);
    MDB_val k, v;
    arg->deleted = 0;
    while (arg->deleted < arg->max && (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST)) == 0) {
        if (k.mv_size != 40)
            break;
        const uint8_t *b = k.mv_data;
        uint64_t at = 0;
        for (int i = 0; i < 8; i++)
            at = at << 8 | b[i];
        if ((int64_t)at >= arg->before_ms)
            break;
        MDB_val hk = s_val(b + 8, 32);
        if ((rc = mdb_del(txn, arg->self->shared->idem, &hk, NULL)) != 0 && rc != MDB_NOTFOUND)
            break;
        if ((rc = mdb_cursor_del(cur, 0)) != 0)
            break;
        arg->deleted++;
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? 0 : s_fail("sweep", rc);
}

order_store_status_t order_store_sweep_keys(order_store_t *self, int64_t now_ms, int max,
                                            int *deleted)
{
    s_sweep_t arg = {self, now_ms - ORDER_KEY_TTL_MS, max, 0};
    int result = 0;
    int rc = kv_write_freeing(self->shared->kv, s_sweep_txn, &arg, &result); /* deletes only */
    *deleted = rc == 0 && result == 0 ? arg.deleted : 0;
    if (rc != 0)
        return s_fail("sweep", rc);
    return (order_store_status_t)result;
}

/* ---- the books ---- */

order_store_status_t order_store_check(order_store_t *self, order_problem_fn *fn, void *arg,
                                       long counts[ORDER_STATUS_COUNT], long *keys)
{
    memset(counts, 0, sizeof(long) * ORDER_STATUS_COUNT);
    *keys = 0;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return ORDER_UNAVAILABLE;
    order_t *o = self->order;
    MDB_cursor *cur = NULL;
    order_store_status_t result = ORDER_OK;
    char msg[160], id[ORDER_ID_MAX + 1];
    int64_t now = clock_now_ms();
    MDB_val k, v;
    int rc = mdb_cursor_open(txn, self->shared->orders, &cur);
    if (rc != 0) {
        result = s_fail("check", rc);
        goto cleanup;
    }
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        snprintf(id, sizeof id, "%.*s", (int)(k.mv_size > ORDER_ID_MAX ? ORDER_ID_MAX : k.mv_size),
                 (const char *)k.mv_data);
        memset(o, 0, sizeof *o);
        record_status_t d = record_decode(&s_table, v.mv_data, v.mv_size, o);
        if (d != RECORD_OK) {
            fn("order_record", id, record_strerror(d), arg);
            continue;
        }
        snprintf(o->id, sizeof o->id, "%s", id);
        counts[o->status]++;
        int64_t sum = 0;
        for (int i = 0; i < o->n_items; i++)
            sum += o->items[i].unit_price_cents * o->items[i].qty;
        if (sum != o->total_cents) {
            snprintf(msg, sizeof msg, "total %lld is not the sum of its items, %lld",
                     (long long)o->total_cents, (long long)sum);
            fn("order_total", id, msg, arg);
        }
        char buf[ORDER_USER_MAX + ORDER_ID_MAX + 2];
        MDB_val uk = s_val(buf, s_user_key(buf, o->user_id, o->id)), uv;
        if (mdb_get(txn, self->shared->by_user, &uk, &uv) != 0)
            fn("by_user", id, "the order is missing from its user's index", arg);
        MDB_val tk = s_val(o->id, strlen(o->id)), tv;
        bool in_todo = mdb_get(txn, self->shared->todo, &tk, &tv) == 0;
        if (in_todo != s_needs_work(o))
            fn("todo", id, in_todo ? "in todo with nothing to do" : "needs recovery, not in todo",
               arg);
        if ((o->status == ORDER_PAID || o->status == ORDER_SHIPPED ||
             o->status == ORDER_DELIVERED) &&
            !o->payment_id[0])
            fn("order_payment", id, "paid without a payment", arg);
        if (o->key_hash[0] && o->created_at_ms > now - ORDER_KEY_TTL_MS + 60000) {
            uint8_t hash[32];
            s_hex_to_bin(o->key_hash, hash);
            bool found;
            if (s_read_key(txn, self->shared->idem, hash, self->key, &found) != ORDER_OK ||
                !found || !streq(self->key->order_id, o->id))
                fn("order_key", id, "its idempotency key is missing or names another order", arg);
            else if (self->key->running != (o->status == ORDER_PENDING))
                fn("order_key", id,
                   self->key->running ? "finished, but its key still runs"
                                      : "pending, but its key has a response",
                   arg);
        }
    }
    if (rc != MDB_NOTFOUND) {
        result = s_fail("check orders", rc);
        goto cleanup;
    }
    mdb_cursor_close(cur);
    cur = NULL;
    /* The indexes back: every entry names an order that agrees. */
    MDB_dbi dbis[2] = {self->shared->by_user, self->shared->todo};
    for (int d = 0; d < 2; d++) {
        if ((rc = mdb_cursor_open(txn, dbis[d], &cur)) != 0) {
            result = s_fail("check", rc);
            goto cleanup;
        }
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
            const char *key = k.mv_data;
            size_t off = 0;
            if (d == 0) {
                const char *nul = memchr(key, '\0', k.mv_size);
                off = nul ? (size_t)(nul - key) + 1 : k.mv_size;
            }
            size_t len = k.mv_size - off;
            snprintf(id, sizeof id, "%.*s", (int)(len > ORDER_ID_MAX ? ORDER_ID_MAX : len),
                     key + off);
            MDB_val ok = s_val(key + off, len), ov;
            if (len == 0 || mdb_get(txn, self->shared->orders, &ok, &ov) != 0)
                fn(d == 0 ? "by_user" : "todo", id, "names an order that does not exist", arg);
            else if (d == 0 &&
                     (record_decode(&s_brief_table, ov.mv_data, ov.mv_size, o) != RECORD_OK ||
                      strlen(o->user_id) != off - 1 || memcmp(o->user_id, key, off - 1) != 0))
                fn("by_user", id, "the order belongs to another user", arg);
        }
        if (rc != MDB_NOTFOUND) {
            result = s_fail("check index", rc);
            goto cleanup;
        }
        mdb_cursor_close(cur);
        cur = NULL;
    }
    MDB_stat st;
    if (mdb_stat(txn, self->shared->idem, &st) == 0)
        *keys = (long)st.ms_entries;
cleanup:
    if (cur)
        mdb_cursor_close(cur);
    store_reader_end(&self->reader);
    return result;
}

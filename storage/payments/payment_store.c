/*  payment_store.c - the payment store's handles, its payment and refund
 *  records, the writes that change them and the reads (payment_store.h).
 *  The log is in payment_log.c, the keys in payment_keys.c; the layout of
 *  the databases and records is in payment_store_impl.h.
 *
 *  Writes: each is prepared in a payment_write_t (payment_write_*: the
 *  arguments checked and copied in, the caller's out structs pointed at),
 *  and payment_write_txn runs it on the environment's committer thread,
 *  in a nested transaction of a batch committed together (group commit,
 *  kv.h). The waiting forms (payment_store_begin, ...) are that prepare,
 *  kv_write and payment_write_end; a worker submits the same write with
 *  call_write and ends it in its resume. A write function touches only
 *  the transaction, its payment_write_t with the outs it points at, and
 *  the shared handle's dbis and keys (read-only after open); its scratch
 *  (records, details) is on its own stack, and never the handle's, so
 *  any number of one handle's writes may be out at once. What the caller
 *  gets back is written into its outs inside the write; payment_write_end
 *  clears *created when the write did not stand (refused, or its commit
 *  failed). Everything that decides the write is read there: the order's
 *  payment (so of twenty concurrent charges of one order exactly one
 *  creates it: LMDB runs the writes one after another, even within a
 *  batch), the status a transition starts from, and the sums a capture or
 *  a refund must keep (captured <= authorized, refunded + refunding <=
 *  captured). A refusal returns STORE_CONFLICT, which undoes everything of
 *  that write alone: no state, no log entry. A change of state writes its
 *  log entry (payment_log_append) in the same transaction, so the payment
 *  and its log can only be committed together.
 *
 *  Events (payment_store.h): a capture, a failure and a refund done
 *  append their event to the outbox at the end of the write that makes
 *  them, after the payment and its log entry, from the payment as
 *  written; a refused write returns before, so it appends nothing, and a
 *  failed append fails the write.
 *
 *  Reads use the handle's read transaction (storage/reader.h). Lists walk
 *  ids backwards: payments for any status, by_status (status byte + id)
 *  for one; ids carry their creation time (payment_store_impl.h), so a
 *  time range is a range of keys, and every key inside the range matches:
 *  a page never scans past what it returns, plus one key to tell whether
 *  more follow.
 *
 *  A write that finds no room (the disk or the map full, storage/kv.h)
 *  is STORE_NO_SPACE (payment_fail: not logged, the environment logs
 *  running out of room once). The log's entries are in the payment's own
 *  write, so such a write leaves no entry and no half of one: the log
 *  verifies whatever step found no room.
 */
#include "storage/payments/payment_store_impl.h"
#include "protocol/clock.h"
#include "storage/ids.h"
#include "storage/record.h"

#include <czmq.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>

const char *const payment_store_names[PAYMENT_STORE_DBS] = {
    "payments",     "by_order",       "by_status",      "refunds",
    "log",          "log_by_payment", "anchors",        OUTBOX_DB_EVENTS,
    OUTBOX_DB_META, "to_tell",        "refunds_pending"};
_Static_assert(PAYMENT_DB_OUTBOX == PAYMENT_STORE_DB_OUTBOX &&
                   PAYMENT_DB_OUTBOX_META == PAYMENT_STORE_DB_OUTBOX_META &&
                   PAYMENT_DB_REFUNDS_PENDING + 1 == PAYMENT_STORE_DBS,
               "payment_store.h's outbox indexes are the environment's");

#define S_MAP_SIZE ((size_t)16 << 30) /* address space, not disk: the log only grows */
#define S_RECORD_MAX 2048             /* a payment or refund record, every field at its longest */
#define S_DETAILS_MAX 512             /* an entry's details map */

static const char *const s_status_names[] = {
    "pending", "authorized", "captured", "partially_refunded", "refunded", "failed", "voided"};
#define S_STATUSES 7

static const char *const s_refund_state_names[] = {"pending", "done", "failed"};

const char *payment_status_name(payment_status_t status)
{
    return (unsigned)status < S_STATUSES ? s_status_names[status] : NULL;
}

bool payment_status_parse(const char *name, size_t len, payment_status_t *out)
{
    for (int i = 0; name && i < S_STATUSES; i++)
        if (strlen(s_status_names[i]) == len && memcmp(s_status_names[i], name, len) == 0) {
            *out = (payment_status_t)i;
            return true;
        }
    return false;
}

/* ---- helpers shared through payment_store_impl.h ---- */

store_status_t payment_fail(const char *what, int rc)
{
    if (kv_no_space(rc))
        return STORE_NO_SPACE; /* expected while full; the environment logs it */
    zsys_error("payment_store: %s: %s", what, mdb_strerror(rc));
    return STORE_ERROR;
}

void payment_be64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t payment_be64_get(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

static MDB_val s_val(const char *s)
{
    return (MDB_val){.mv_size = strlen(s), .mv_data = (void *)s};
}

/* s is non-empty and terminated within s[max + 1]. */
static bool s_fits(const char *s, size_t max)
{
    return s && s[0] && memchr(s, '\0', max + 1);
}

/* ---- records ---- */

/* A payment as stored: payment_t with int64 members (the codec's ints)
 * and without its id (the key). */
typedef struct {
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
    int status;
    int64_t amount, authorized, captured, refunded, refunding;
    char currency[PAYMENT_CURRENCY_MAX + 1];
    char brand[PAYMENT_BRAND_MAX + 1];
    char last4[5];
    int64_t exp_month, exp_year;
    char fingerprint[PAYMENT_HASH_HEX + 1];
    char auth_id[PAYMENT_GATEWAY_ID_MAX + 1];
    char capture_id[PAYMENT_GATEWAY_ID_MAX + 1];
    char failure[PAYMENT_REASON_MAX + 1];
    int64_t attempt;
    int64_t created_at, updated_at;
} s_payment_rec_t;

static const record_field_t s_payment_fields[] = {
    RECORD_STR_FIELD(s_payment_rec_t, order_id, "order_id", RECORD_REQUIRED),
    RECORD_ENUM_FIELD(s_payment_rec_t, status, "status", s_status_names, S_STATUSES,
                      RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, amount, "amount_cents", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, authorized, "authorized_cents", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, captured, "captured_cents", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, refunded, "refunded_cents", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, refunding, "refunding_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_payment_rec_t, currency, "currency", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_payment_rec_t, brand, "brand", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_payment_rec_t, last4, "last4", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, exp_month, "exp_month", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, exp_year, "exp_year", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_payment_rec_t, fingerprint, "fingerprint", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_payment_rec_t, auth_id, "auth_id", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_payment_rec_t, capture_id, "capture_id", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_payment_rec_t, failure, "failure", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, attempt, "attempt", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, created_at, "created_at", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_payment_rec_t, updated_at, "updated_at", RECORD_REQUIRED),
};
static const record_table_t s_payment_table = RECORD_TABLE(s_payment_fields);

#define S_COPY(dst, src) snprintf((dst), sizeof(dst), "%s", (src))

static void s_to_record(const payment_t *p, s_payment_rec_t *r)
{
    memset(r, 0, sizeof *r);
    S_COPY(r->order_id, p->order_id);
    r->status = (int)p->status;
    r->amount = p->amount_cents;
    r->authorized = p->authorized_cents;
    r->captured = p->captured_cents;
    r->refunded = p->refunded_cents;
    r->refunding = p->refunding_cents;
    S_COPY(r->currency, p->currency);
    S_COPY(r->brand, p->brand);
    S_COPY(r->last4, p->last4);
    r->exp_month = p->exp_month;
    r->exp_year = p->exp_year;
    S_COPY(r->fingerprint, p->fingerprint);
    S_COPY(r->auth_id, p->auth_id);
    S_COPY(r->capture_id, p->capture_id);
    S_COPY(r->failure, p->failure);
    r->attempt = p->attempt;
    r->created_at = p->created_at_ms;
    r->updated_at = p->updated_at_ms;
}

/* false for a record whose ints do not fit payment_t (damage). */
static bool s_from_record(const s_payment_rec_t *r, payment_t *p)
{
    if (r->exp_month < 0 || r->exp_month > 12 || r->exp_year < 0 || r->exp_year > 9999 ||
        r->attempt < 0 || r->attempt > INT_MAX)
        return false;
    S_COPY(p->order_id, r->order_id);
    p->status = (payment_status_t)r->status;
    p->amount_cents = r->amount;
    p->authorized_cents = r->authorized;
    p->captured_cents = r->captured;
    p->refunded_cents = r->refunded;
    p->refunding_cents = r->refunding;
    S_COPY(p->currency, r->currency);
    S_COPY(p->brand, r->brand);
    S_COPY(p->last4, r->last4);
    p->exp_month = (int)r->exp_month;
    p->exp_year = (int)r->exp_year;
    S_COPY(p->fingerprint, r->fingerprint);
    S_COPY(p->auth_id, r->auth_id);
    S_COPY(p->capture_id, r->capture_id);
    S_COPY(p->failure, r->failure);
    p->attempt = (int)r->attempt;
    p->created_at_ms = r->created_at;
    p->updated_at_ms = r->updated_at;
    return true;
}

/* Decodes the record val of payment id (id_len bytes) into out. */
static store_status_t s_payment_decode(const char *id, size_t id_len, const MDB_val *val,
                                       payment_t *out)
{
    s_payment_rec_t r;
    memset(out, 0, sizeof *out);
    if (id_len == 0 || id_len > PAYMENT_ID_MAX)
        return STORE_ERROR;
    memcpy(out->id, id, id_len);
    out->id[id_len] = '\0';
    record_status_t decoded = record_decode(&s_payment_table, val->mv_data, val->mv_size, &r);
    if (decoded != RECORD_OK || !s_from_record(&r, out)) {
        zsys_error("payment_store: malformed payment %s: %s", out->id,
                   decoded != RECORD_OK ? record_strerror(decoded) : "a value out of range");
        return STORE_ERROR;
    }
    return STORE_OK;
}

store_status_t payment_read(const payment_store_shared_t *shared, MDB_txn *txn, const char *id,
                            payment_t *out)
{
    if (!s_fits(id, PAYMENT_ID_MAX))
        return STORE_NOT_FOUND;
    char copy[PAYMENT_ID_MAX + 1]; /* id may be out->id, which decoding clears */
    S_COPY(copy, id);
    MDB_val key = s_val(copy), val;
    int rc = mdb_get(txn, shared->dbi[PAYMENT_DB_PAYMENTS], &key, &val);
    if (rc == MDB_NOTFOUND)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return payment_fail("mdb_get payments", rc);
    return s_payment_decode(copy, key.mv_size, &val, out);
}

/* Puts p's record (flags: MDB_NOOVERWRITE for a new one: an id taken is
 * STORE_EXISTS). */
static store_status_t s_payment_put(const payment_store_shared_t *shared, MDB_txn *txn,
                                    const payment_t *p, unsigned flags)
{
    s_payment_rec_t r;
    s_to_record(p, &r);
    mpout_t out;
    mpout_init(&out, S_RECORD_MAX);
    store_status_t status = STORE_OK;
    if (record_pack(&s_payment_table, &r, &out) != 0) {
        zsys_error("payment_store: payment %s does not encode", p->id);
        status = STORE_ERROR;
    } else {
        MDB_val key = s_val(p->id);
        MDB_val val = {.mv_size = out.buf.size, .mv_data = out.buf.data};
        int rc = mdb_put(txn, shared->dbi[PAYMENT_DB_PAYMENTS], &key, &val, flags);
        status = rc == MDB_KEYEXIST ? STORE_EXISTS
                 : rc != 0          ? payment_fail("mdb_put payments", rc)
                                    : STORE_OK;
    }
    mpout_destroy(&out);
    return status;
}

/* The by_status key of (status, id) into key; its length. */
static size_t s_status_key(payment_status_t status, const char *id, uint8_t key[1 + PAYMENT_ID_MAX])
{
    size_t len = strlen(id);
    key[0] = (uint8_t)status;
    memcpy(key + 1, id, len);
    return 1 + len;
}

/* Moves p's by_status entry from `from` (or none, from < 0) to p->status. */
static store_status_t s_status_index(const payment_store_shared_t *shared, MDB_txn *txn,
                                     const payment_t *p, int from)
{
    if (from == (int)p->status)
        return STORE_OK;
    uint8_t buf[1 + PAYMENT_ID_MAX];
    MDB_val empty = {0, NULL};
    int rc = 0;
    if (from >= 0) {
        MDB_val key = {s_status_key((payment_status_t)from, p->id, buf), buf};
        rc = mdb_del(txn, shared->dbi[PAYMENT_DB_BY_STATUS], &key, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return payment_fail("mdb_del by_status", rc);
    }
    MDB_val key = {s_status_key(p->status, p->id, buf), buf};
    rc = mdb_put(txn, shared->dbi[PAYMENT_DB_BY_STATUS], &key, &empty, 0);
    return rc == 0 ? STORE_OK : payment_fail("mdb_put by_status", rc);
}

/* Writes p back after a change from status `from`, with its log entry
 * when type >= 0. */
static store_status_t s_payment_save(const payment_store_shared_t *shared, MDB_txn *txn,
                                     const payment_t *p, int from, int type, int64_t amount,
                                     const mpout_t *details)
{
    store_status_t status = s_payment_put(shared, txn, p, 0);
    if (status == STORE_OK)
        status = s_status_index(shared, txn, p, from);
    if (status == STORE_OK && type >= 0)
        status = payment_log_append(shared, txn, (log_type_t)type, p, amount,
                                    (const uint8_t *)details->buf.data, details->buf.size);
    return status;
}

/* An entry's details: a map of the pairs whose key is not NULL (values
 * NULL are written ""). */
static int s_details(mpout_t *out, const char *k1, const char *v1, const char *k2, const char *v2)
{
    const char *keys[2] = {k1, k2}, *values[2] = {v1, v2};
    msgpack_packer pk;
    mpout_clear(out);
    mpout_packer(out, &pk);
    msgpack_pack_map(&pk, (size_t)(k1 != NULL) + (k2 != NULL));
    for (int i = 0; i < 2; i++) {
        if (!keys[i])
            continue;
        const char *v = values[i] ? values[i] : "";
        msgpack_pack_str_with_body(&pk, keys[i], strlen(keys[i]));
        msgpack_pack_str_with_body(&pk, v, strlen(v));
    }
    return out->failed ? -1 : 0;
}

/* ---- events ---- */

/* Stores the event begun; STORE_ERROR (logged) when it cannot be. */
static store_status_t s_event_put(const payment_store_shared_t *shared, MDB_txn *txn,
                                  const payment_t *p)
{
    int rc = outbox_event_put(shared->outbox, txn);
    if (rc == 0)
        return STORE_OK;
    if (rc != -1) /* an LMDB error; -1 is the outbox's own: the data does not fit */
        return payment_fail("outbox", rc);
    zsys_error("payment_store: the event of payment %s does not fit the outbox", p->id);
    return STORE_ERROR;
}

/* The event of a change that stands, made of p as written: for a
 * capture, amount is what it captured; for a refund, what it refunded;
 * reason for a failure. Other changes have none. */
static store_status_t s_event(const payment_store_shared_t *shared, MDB_txn *txn,
                              const payment_t *p, int log_type, int64_t amount)
{
    const char *type = log_type == LOG_CAPTURE  ? "payment.captured"
                       : log_type == LOG_REFUND ? "payment.refunded"
                       : log_type == LOG_FAIL   ? "payment.failed"
                                                : NULL;
    msgpack_packer *pk = type ? outbox_event(shared->outbox, type) : NULL;
    if (!pk)
        return STORE_OK; /* no event type, no outbox, or it is off */
    switch (log_type) {
    case LOG_CAPTURE:
        msgpack_pack_map(pk, 7);
        outbox_pack_str(pk, "payment_id", p->id);
        outbox_pack_str(pk, "order_id", p->order_id);
        outbox_pack_int(pk, "amount_cents", amount);
        outbox_pack_int(pk, "captured_cents", p->captured_cents);
        outbox_pack_str(pk, "currency", p->currency);
        outbox_pack_str(pk, "brand", p->brand);
        outbox_pack_str(pk, "last4", p->last4);
        break;
    case LOG_REFUND:
        msgpack_pack_map(pk, 6);
        outbox_pack_str(pk, "payment_id", p->id);
        outbox_pack_str(pk, "order_id", p->order_id);
        outbox_pack_int(pk, "amount_cents", amount);
        outbox_pack_int(pk, "refunded_cents", p->refunded_cents);
        outbox_pack_str(pk, "status", payment_status_name(p->status));
        outbox_pack_str(pk, "currency", p->currency);
        break;
    default: /* LOG_FAIL */
        msgpack_pack_map(pk, 5);
        outbox_pack_str(pk, "payment_id", p->id);
        outbox_pack_str(pk, "order_id", p->order_id);
        outbox_pack_int(pk, "amount_cents", amount);
        outbox_pack_str(pk, "currency", p->currency);
        outbox_pack_str(pk, "reason", p->failure[0] ? p->failure : "gateway_error");
        break;
    }
    return s_event_put(shared, txn, p);
}

/* ---- refund records ---- */

typedef struct {
    char payment_id[PAYMENT_ID_MAX + 1];
    int64_t amount;
    int state;
    char refund_id[PAYMENT_GATEWAY_ID_MAX + 1];
    int64_t created_at;
    int status_after; /* the payment after the refund ended (done only) */
    int64_t captured_after, refunded_after, updated_after;
} s_refund_rec_t;

static const record_field_t s_refund_fields[] = {
    RECORD_STR_FIELD(s_refund_rec_t, payment_id, "payment_id", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_refund_rec_t, amount, "amount_cents", RECORD_REQUIRED),
    RECORD_ENUM_FIELD(s_refund_rec_t, state, "state", s_refund_state_names, 3, RECORD_REQUIRED),
    RECORD_STR_FIELD(s_refund_rec_t, refund_id, "refund_id", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_refund_rec_t, created_at, "created_at", RECORD_REQUIRED),
    /* optional: refunds stored before they existed still load */
    RECORD_ENUM_FIELD(s_refund_rec_t, status_after, "status_after", s_status_names, S_STATUSES, 0),
    RECORD_INT64_FIELD(s_refund_rec_t, captured_after, "captured_after_cents", 0),
    RECORD_INT64_FIELD(s_refund_rec_t, refunded_after, "refunded_after_cents", 0),
    RECORD_INT64_FIELD(s_refund_rec_t, updated_after, "updated_after", 0),
};
static const record_table_t s_refund_table = RECORD_TABLE(s_refund_fields);

static store_status_t s_refund_read(const payment_store_shared_t *shared, MDB_txn *txn,
                                    const char *key, refund_t *out)
{
    MDB_val k = s_val(key), val;
    int rc = mdb_get(txn, shared->dbi[PAYMENT_DB_REFUNDS], &k, &val);
    if (rc == MDB_NOTFOUND)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return payment_fail("mdb_get refunds", rc);
    s_refund_rec_t r;
    record_status_t decoded = record_decode(&s_refund_table, val.mv_data, val.mv_size, &r);
    if (decoded != RECORD_OK) {
        zsys_error("payment_store: malformed refund %s: %s", key, record_strerror(decoded));
        return STORE_ERROR;
    }
    memset(out, 0, sizeof *out);
    S_COPY(out->key, key);
    S_COPY(out->payment_id, r.payment_id);
    out->amount_cents = r.amount;
    out->state = (refund_state_t)r.state;
    S_COPY(out->refund_id, r.refund_id);
    out->created_at_ms = r.created_at;
    out->status_after = (payment_status_t)r.status_after;
    out->captured_after_cents = r.captured_after;
    out->refunded_after_cents = r.refunded_after;
    out->updated_after_ms = r.updated_after;
    return STORE_OK;
}

static store_status_t s_refund_put(const payment_store_shared_t *shared, MDB_txn *txn,
                                   const refund_t *refund)
{
    s_refund_rec_t r = {.amount = refund->amount_cents,
                        .state = (int)refund->state,
                        .created_at = refund->created_at_ms,
                        .status_after = (int)refund->status_after,
                        .captured_after = refund->captured_after_cents,
                        .refunded_after = refund->refunded_after_cents,
                        .updated_after = refund->updated_after_ms};
    S_COPY(r.payment_id, refund->payment_id);
    S_COPY(r.refund_id, refund->refund_id);
    mpout_t out;
    mpout_init(&out, S_RECORD_MAX);
    store_status_t status = STORE_OK;
    if (record_pack(&s_refund_table, &r, &out) != 0) {
        zsys_error("payment_store: refund %s does not encode", refund->key);
        status = STORE_ERROR;
    } else {
        MDB_val key = s_val(refund->key);
        MDB_val val = {.mv_size = out.buf.size, .mv_data = out.buf.data};
        int rc = mdb_put(txn, shared->dbi[PAYMENT_DB_REFUNDS], &key, &val, 0);
        if (rc != 0)
            status = payment_fail("mdb_put refunds", rc);
    }
    mpout_destroy(&out);
    return status;
}

/* ---- handles ---- */

payment_store_shared_t *payment_store_shared_new(const char *data_dir, const char *keys_dir,
                                                 char *err, size_t errlen)
{
    if (!data_dir || !*data_dir) {
        snprintf(err, errlen, "payment_store: no data directory");
        return NULL;
    }
    if (sodium_init() < 0) {
        snprintf(err, errlen, "payment_store: sodium_init failed");
        return NULL;
    }
    payment_store_shared_t *self = calloc(1, sizeof *self);
    char *path = zsys_sprintf("%s/payments", data_dir);
    if (!self || !path) {
        snprintf(err, errlen, "out of memory");
        goto failed;
    }
    if (payment_keys_load(keys_dir, &self->keys, err, errlen) != 0)
        goto failed;
    self->kv = kv_open(path, S_MAP_SIZE, payment_store_names, NULL, PAYMENT_STORE_DBS, err, errlen);
    if (!self->kv)
        goto failed;
    for (int i = 0; i < PAYMENT_STORE_DBS; i++)
        self->dbi[i] = kv_dbi(self->kv, i);
    zstr_free(&path);
    return self;
failed:
    zstr_free(&path);
    if (self)
        sodium_memzero(&self->keys, sizeof self->keys);
    free(self);
    return NULL;
}

kv_t *payment_store_shared_kv(payment_store_shared_t *self)
{
    return self->kv;
}

void payment_store_shared_set_outbox(payment_store_shared_t *self, outbox_t *outbox)
{
    self->outbox = outbox;
}

static int s_anchor_txn(MDB_txn *txn, void *arg)
{
    return payment_log_anchor_txn(arg, txn);
}

static store_status_t s_write(payment_store_shared_t *shared, kv_write_fn *fn, void *arg)
{
    int result = STORE_ERROR;
    int rc = kv_write(shared->kv, fn, arg, &result);
    return rc == 0 ? (store_status_t)result : payment_fail("write transaction", rc);
}

void payment_store_shared_destroy(payment_store_shared_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    payment_store_shared_t *self = *self_p;
    /* The head at stop is signed, so that a tail cut while the service
     * is down no longer reaches it. */
    if (s_write(self, s_anchor_txn, self) != STORE_OK)
        zsys_error("payment_store: the log's head could not be signed at stop");
    kv_close(&self->kv);
    sodium_memzero(&self->keys, sizeof self->keys);
    free(self);
    *self_p = NULL;
}

payment_store_t *payment_store_open(payment_store_shared_t *shared)
{
    if (!shared)
        return NULL;
    payment_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = shared;
    if (!store_reader_open(&self->reader, shared->kv, "payment_store")) {
        free(self);
        return NULL;
    }
    return self;
}

void payment_store_close(payment_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_reader_close(&(*self_p)->reader);
    free(*self_p);
    *self_p = NULL;
}

store_status_t payment_store_anchor(payment_store_t *self)
{
    if (!self)
        return STORE_ERROR;
    return s_write(self->shared, s_anchor_txn, self->shared);
}

/* ---- charges ---- */

/* An id of store_new_id('p'): "p" and 20 lower-case hex digits; its
 * creation time in ms into *ms. */
static bool s_id_parse(const char *id, int64_t *ms)
{
    if (strnlen(id, STORE_ID_LEN + 1) != STORE_ID_LEN || id[0] != 'p')
        return false;
    int64_t v = 0;
    for (int i = 1; i < STORE_ID_LEN; i++) {
        char c = id[i];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0)
            return false;
        if (i <= 12)
            v = v << 4 | d;
    }
    *ms = v;
    return true;
}

/* Whether each byte of s[0..len) is in chars. */
static bool s_only(const char *s, size_t len, const char *chars)
{
    return strspn(s, chars) >= len;
}

/* The card and charge fields begin stores, checked. No field that could
 * hold a card number takes digits beyond what it is for: brand none,
 * last4 four, the fingerprint only as 64 hex digits. */
static bool s_payment_ok(const payment_t *p)
{
    size_t brand = strnlen(p->brand, sizeof p->brand);
    size_t fingerprint = strnlen(p->fingerprint, sizeof p->fingerprint);
    if (brand == sizeof p->brand || !s_only(p->brand, brand, "abcdefghijklmnopqrstuvwxyz_-") ||
        (fingerprint != 0 && fingerprint != PAYMENT_HASH_HEX) ||
        !s_only(p->fingerprint, fingerprint, "0123456789abcdef"))
        return false;
    bool currency = strnlen(p->currency, sizeof p->currency) == PAYMENT_CURRENCY_MAX;
    for (int i = 0; currency && i < PAYMENT_CURRENCY_MAX; i++)
        currency = p->currency[i] >= 'A' && p->currency[i] <= 'Z';
    size_t last4 = strnlen(p->last4, sizeof p->last4);
    bool digits = last4 <= 4;
    for (size_t i = 0; digits && i < last4; i++)
        digits = p->last4[i] >= '0' && p->last4[i] <= '9';
    return s_fits(p->order_id, PAYMENT_ORDER_ID_MAX) && p->amount_cents > 0 && currency && digits &&
           p->exp_month >= 0 && p->exp_month <= 12 && p->exp_year >= 0 && p->exp_year <= 9999;
}

/* The prepared writes' kinds (payment_write_t.kind). */
enum {
    S_WRITE_BEGIN = 1,
    S_WRITE_APPLY,
    S_WRITE_NEXT_ATTEMPT,
    S_WRITE_REFUND_BEGIN,
    S_WRITE_REFUND_END,
};

/* The waiting forms: a prepared write, run and waited for. */
static store_status_t s_write_wait(payment_write_t *w)
{
    int result = STORE_ERROR;
    int rc = kv_write(w->shared->kv, payment_write_txn, w, &result);
    return payment_write_end(w, rc == 0, rc == 0 ? result : rc);
}

static int s_begin_txn(MDB_txn *txn, payment_write_t *w)
{
    const payment_store_shared_t *shared = w->shared;
    const payment_t *want = &w->want;
    MDB_val key = s_val(want->order_id), val;
    int rc = mdb_get(txn, shared->dbi[PAYMENT_DB_BY_ORDER], &key, &val);
    if (rc == 0) {
        /* The order's first charge: it is the answer, whatever became of it. */
        char id[PAYMENT_ID_MAX + 1];
        if (val.mv_size == 0 || val.mv_size > PAYMENT_ID_MAX) {
            zsys_error("payment_store: malformed by_order entry of %s", want->order_id);
            return STORE_ERROR;
        }
        memcpy(id, val.mv_data, val.mv_size);
        id[val.mv_size] = '\0';
        store_status_t status = payment_read(shared, txn, id, w->out);
        return status == STORE_NOT_FOUND ? STORE_ERROR : status;
    }
    if (rc != MDB_NOTFOUND)
        return payment_fail("mdb_get by_order", rc);
    store_status_t status = s_payment_put(shared, txn, want, MDB_NOOVERWRITE);
    if (status != STORE_OK)
        return status;
    MDB_val id = s_val(want->id);
    rc = mdb_put(txn, shared->dbi[PAYMENT_DB_BY_ORDER], &key, &id, 0);
    if (rc != 0)
        return payment_fail("mdb_put by_order", rc);
    status = s_status_index(shared, txn, want, -1);
    if (status == STORE_OK) {
        *w->out = *want;
        if (w->created)
            *w->created = true;
    }
    return status;
}

bool payment_write_begin(payment_write_t *w, payment_store_t *self, const payment_t *payment,
                         payment_t *out, bool *created)
{
    if (created)
        *created = false;
    if (!w || !self || !payment || !out || !s_payment_ok(payment))
        return false;
    payment_write_t next = {.shared = self->shared,
                            .kind = S_WRITE_BEGIN,
                            .want = *payment,
                            .out = out,
                            .created = created};
    payment_t *want = &next.want;
    if (!want->id[0])
        store_new_id('p', want->id);
    if (!s_id_parse(want->id, &want->created_at_ms))
        return false;
    want->status = PAYMENT_PENDING;
    want->authorized_cents = want->captured_cents = 0;
    want->refunded_cents = want->refunding_cents = 0;
    want->auth_id[0] = want->capture_id[0] = want->failure[0] = '\0';
    want->attempt = 1;
    want->updated_at_ms = clock_now_ms();
    *w = next;
    return true;
}

store_status_t payment_store_begin(payment_store_t *self, const payment_t *payment, payment_t *out,
                                   bool *created)
{
    payment_write_t w;
    if (!payment_write_begin(&w, self, payment, out, created))
        return STORE_ERROR;
    return s_write_wait(&w);
}

/* One event: reads the payment (as this transaction has it), checks the
 * transition, saves it with its log entry. */
static int s_apply_one(MDB_txn *txn, payment_write_t *w, payment_event_type_t event,
                       int64_t amount_cents, const char *gateway_id, const char *reason)
{
    payment_t *p = w->out; /* the payment read, then as written */
    store_status_t status = payment_read(w->shared, txn, w->id, p);
    if (status != STORE_OK)
        return status;
    int from = (int)p->status;
    mpout_t details;
    mpout_init(&details, S_DETAILS_MAX);
    int type = -1;
    int64_t amount = 0;
    status = STORE_CONFLICT;
    switch (event) {
    case PAYMENT_EVENT_AUTHORIZE:
        if (p->status != PAYMENT_PENDING || amount_cents <= 0 || amount_cents > p->amount_cents)
            goto cleanup;
        p->status = PAYMENT_AUTHORIZED;
        p->authorized_cents = amount = amount_cents;
        S_COPY(p->auth_id, gateway_id);
        type = LOG_AUTHORIZE;
        if (s_details(&details, "auth_id", gateway_id, NULL, NULL) != 0)
            goto failed;
        break;
    case PAYMENT_EVENT_CAPTURE:
        if (p->status != PAYMENT_AUTHORIZED || amount_cents <= 0 ||
            amount_cents > p->authorized_cents)
            goto cleanup;
        p->status = PAYMENT_CAPTURED;
        p->captured_cents = amount = amount_cents;
        S_COPY(p->capture_id, gateway_id);
        type = LOG_CAPTURE;
        if (s_details(&details, "capture_id", gateway_id, NULL, NULL) != 0)
            goto failed;
        break;
    case PAYMENT_EVENT_VOID:
        if (p->status != PAYMENT_AUTHORIZED)
            goto cleanup;
        p->status = PAYMENT_VOIDED;
        amount = p->authorized_cents; /* what is released */
        type = LOG_VOID;
        if (s_details(&details, "auth_id", p->auth_id, NULL, NULL) != 0)
            goto failed;
        break;
    case PAYMENT_EVENT_FAIL:
        if (p->status != PAYMENT_PENDING && p->status != PAYMENT_AUTHORIZED)
            goto cleanup;
        p->status = PAYMENT_FAILED;
        S_COPY(p->failure, reason);
        amount = p->amount_cents; /* what was asked and not charged */
        type = LOG_FAIL;
        if (s_details(&details, "reason", reason, NULL, NULL) != 0)
            goto failed;
        break;
    default:
        goto failed;
    }
    p->updated_at_ms = clock_now_ms();
    status = s_payment_save(w->shared, txn, p, from, type, amount, &details);
    if (status == STORE_OK)
        status = s_event(w->shared, txn, p, type, amount);
    goto cleanup;
failed:
    status = STORE_ERROR;
cleanup:
    mpout_destroy(&details);
    return status;
}

static int s_apply_txn(MDB_txn *txn, payment_write_t *w)
{
    int status = s_apply_one(txn, w, w->event, w->amount_cents, w->gateway_id, w->reason);
    if (status == STORE_OK && w->has_then)
        status = s_apply_one(txn, w, w->then_event, w->then_amount_cents, w->then_gateway_id,
                             w->then_reason);
    return status;
}

/* Whether the event can be copied into a write. */
static bool s_event_fits(const payment_event_t *event)
{
    if (!event ||
        (event->gateway_id && !memchr(event->gateway_id, '\0', PAYMENT_GATEWAY_ID_MAX + 1)))
        return false;
    return event->type != PAYMENT_EVENT_FAIL || s_fits(event->reason, PAYMENT_REASON_MAX);
}

bool payment_write_apply(payment_write_t *w, payment_store_t *self, const char *id,
                         const payment_event_t *event, payment_t *out)
{
    return payment_write_apply_two(w, self, id, event, NULL, out);
}

bool payment_write_apply_two(payment_write_t *w, payment_store_t *self, const char *id,
                             const payment_event_t *event, const payment_event_t *then,
                             payment_t *out)
{
    if (!w || !self || !s_fits(id, PAYMENT_ID_MAX) || !s_event_fits(event) || !out ||
        (then && !s_event_fits(then)))
        return false;
    /* Copied: id may be out->id, which the read overwrites; the events'
     * strings may be gone before the write runs. */
    payment_write_t next = {.shared = self->shared,
                            .kind = S_WRITE_APPLY,
                            .event = event->type,
                            .amount_cents = event->amount_cents,
                            .out = out};
    S_COPY(next.id, id);
    S_COPY(next.gateway_id, event->gateway_id ? event->gateway_id : "");
    if (event->type == PAYMENT_EVENT_FAIL)
        S_COPY(next.reason, event->reason);
    if (then) {
        next.has_then = true;
        next.then_event = then->type;
        next.then_amount_cents = then->amount_cents;
        S_COPY(next.then_gateway_id, then->gateway_id ? then->gateway_id : "");
        if (then->type == PAYMENT_EVENT_FAIL)
            S_COPY(next.then_reason, then->reason);
    }
    *w = next;
    return true;
}

store_status_t payment_store_apply(payment_store_t *self, const char *id,
                                   const payment_event_t *event, payment_t *out)
{
    payment_write_t w;
    if (!payment_write_apply(&w, self, id, event, out))
        return STORE_ERROR;
    return s_write_wait(&w);
}

static int s_next_attempt_txn(MDB_txn *txn, payment_write_t *w)
{
    store_status_t status = payment_read(w->shared, txn, w->id, w->out);
    if (status != STORE_OK)
        return status;
    if (w->out->attempt == INT_MAX)
        return STORE_CONFLICT;
    w->out->attempt++;
    w->out->updated_at_ms = clock_now_ms();
    return s_payment_put(w->shared, txn, w->out, 0);
}

store_status_t payment_store_next_attempt(payment_store_t *self, const char *id, payment_t *out)
{
    if (!self || !s_fits(id, PAYMENT_ID_MAX) || !out)
        return STORE_ERROR;
    payment_write_t w = {.shared = self->shared, .kind = S_WRITE_NEXT_ATTEMPT, .out = out};
    S_COPY(w.id, id); /* as in payment_write_apply */
    return s_write_wait(&w);
}

/* ---- refunds ---- */

static int s_refund_begin_txn(MDB_txn *txn, payment_write_t *w)
{
    store_status_t status = s_refund_read(w->shared, txn, w->key, w->refund_out);
    if (status == STORE_OK) {
        /* A key is one refund: asked again, it is answered as it is; asked
         * for something else, refused. Amount 0 repeats "the rest". */
        if (strcmp(w->refund_out->payment_id, w->id) != 0 ||
            (w->amount_cents != 0 && w->amount_cents != w->refund_out->amount_cents))
            return STORE_EXISTS;
        status = payment_read(w->shared, txn, w->id, w->out);
        return status == STORE_NOT_FOUND ? STORE_ERROR : status;
    }
    if (status != STORE_NOT_FOUND)
        return status;
    payment_t *p = w->out;
    status = payment_read(w->shared, txn, w->id, p);
    if (status != STORE_OK)
        return status;
    if (p->status != PAYMENT_CAPTURED && p->status != PAYMENT_PARTIALLY_REFUNDED)
        return STORE_CONFLICT;
    int64_t left = p->captured_cents - p->refunded_cents - p->refunding_cents;
    int64_t amount = w->amount_cents ? w->amount_cents : left;
    if (amount <= 0 || amount > left)
        return STORE_CONFLICT;
    p->refunding_cents += amount;
    p->updated_at_ms = clock_now_ms();
    refund_t *r = w->refund_out;
    memset(r, 0, sizeof *r);
    S_COPY(r->key, w->key);
    S_COPY(r->payment_id, p->id);
    r->amount_cents = amount;
    r->state = REFUND_PENDING;
    r->created_at_ms = p->updated_at_ms;
    status = s_payment_put(w->shared, txn, p, 0);
    if (status == STORE_OK)
        status = s_refund_put(w->shared, txn, r);
    /* pending until its end: what a crash leaves pending is found here */
    if (status == STORE_OK) {
        MDB_val k = s_val(r->key), v = {.mv_size = 0, .mv_data = ""};
        int rc = mdb_put(txn, w->shared->dbi[PAYMENT_DB_REFUNDS_PENDING], &k, &v, 0);
        if (rc != 0)
            status = payment_fail("put refunds_pending", rc);
    }
    if (status == STORE_OK && w->created)
        *w->created = true;
    return status;
}

bool payment_write_refund_begin(payment_write_t *w, payment_store_t *self, const char *payment_id,
                                const char *key, int64_t amount_cents, refund_t *out,
                                payment_t *payment_out, bool *created)
{
    if (created)
        *created = false;
    if (!w || !self || !s_fits(payment_id, PAYMENT_ID_MAX) || !s_fits(key, PAYMENT_KEY_MAX) ||
        amount_cents < 0 || !out || !payment_out)
        return false;
    /* Copied: either may point into an out struct, which the reads
     * overwrite. */
    payment_write_t next = {.shared = self->shared,
                            .kind = S_WRITE_REFUND_BEGIN,
                            .amount_cents = amount_cents,
                            .out = payment_out,
                            .refund_out = out,
                            .created = created};
    S_COPY(next.id, payment_id);
    S_COPY(next.key, key);
    *w = next;
    return true;
}

store_status_t payment_store_refund_begin(payment_store_t *self, const char *payment_id,
                                          const char *key, int64_t amount_cents, refund_t *out,
                                          payment_t *payment_out, bool *created)
{
    payment_write_t w;
    if (!payment_write_refund_begin(&w, self, payment_id, key, amount_cents, out, payment_out,
                                    created))
        return STORE_ERROR;
    return s_write_wait(&w);
}

static int s_refund_end_txn(MDB_txn *txn, payment_write_t *w)
{
    refund_t *r = w->refund_out;
    payment_t *p = w->out;
    store_status_t status = s_refund_read(w->shared, txn, w->key, r);
    if (status == STORE_OK) {
        status = payment_read(w->shared, txn, r->payment_id, p);
        if (status == STORE_NOT_FOUND)
            status = STORE_ERROR; /* a refund of no payment: damage */
    }
    if (status != STORE_OK || r->state != REFUND_PENDING)
        return status; /* unknown, failed, or ended already: no change */
    if (p->refunding_cents < r->amount_cents) {
        zsys_error("payment_store: refund %s is not among payment %s's refunds in progress", r->key,
                   p->id);
        return STORE_ERROR;
    }
    int from = (int)p->status;
    p->refunding_cents -= r->amount_cents;
    int type;
    mpout_t details;
    mpout_init(&details, S_DETAILS_MAX);
    int packed;
    if (w->done) {
        p->refunded_cents += r->amount_cents;
        p->status =
            p->refunded_cents == p->captured_cents ? PAYMENT_REFUNDED : PAYMENT_PARTIALLY_REFUNDED;
        r->state = REFUND_DONE;
        S_COPY(r->refund_id, w->gateway_id);
        type = LOG_REFUND;
        packed = s_details(&details, "refund", r->key, "refund_id", r->refund_id);
    } else {
        r->state = REFUND_FAILED;
        type = LOG_FAIL;
        packed = s_details(&details, "refund", r->key, NULL, NULL);
    }
    p->updated_at_ms = clock_now_ms();
    r->status_after = p->status;
    r->captured_after_cents = p->captured_cents;
    r->refunded_after_cents = p->refunded_cents;
    r->updated_after_ms = p->updated_at_ms;
    status = packed != 0 ? STORE_ERROR : s_refund_put(w->shared, txn, r);
    if (status == STORE_OK)
        status = s_payment_save(w->shared, txn, p, from, type, r->amount_cents, &details);
    /* a refund that failed changed no status the payment shows: no event
     * (payment.failed is a charge's) */
    if (status == STORE_OK && w->done)
        status = s_event(w->shared, txn, p, LOG_REFUND, r->amount_cents);
    if (status == STORE_OK) {
        MDB_val k = s_val(r->key);
        int rc = mdb_del(txn, w->shared->dbi[PAYMENT_DB_REFUNDS_PENDING], &k, NULL);
        /* a refund begun before the index existed is not in it */
        if (rc != 0 && rc != MDB_NOTFOUND)
            status = payment_fail("del refunds_pending", rc);
    }
    /* Refunded in full: its order must hear of it (an admin's refund makes
     * a paid order refunded). Kept in the same write, so that a crash
     * right after it still leaves the telling to do. */
    if (status == STORE_OK && w->done && p->status == PAYMENT_REFUNDED) {
        MDB_val k = {.mv_size = strlen(p->id), .mv_data = p->id};
        MDB_val v = {.mv_size = strlen(p->order_id), .mv_data = p->order_id};
        int rc = mdb_put(txn, w->shared->dbi[PAYMENT_DB_TO_TELL], &k, &v, 0);
        if (rc != 0)
            status = payment_fail("put to_tell", rc);
    }
    mpout_destroy(&details);
    return status;
}

bool payment_write_refund_end(payment_write_t *w, payment_store_t *self, const char *key, bool done,
                              const char *refund_id, refund_t *out, payment_t *payment_out)
{
    if (!w || !self || !s_fits(key, PAYMENT_KEY_MAX) || !out || !payment_out ||
        (done && (!refund_id || !memchr(refund_id, '\0', PAYMENT_GATEWAY_ID_MAX + 1))))
        return false;
    /* Copied: either may point into out, which the read overwrites. */
    payment_write_t next = {.shared = self->shared,
                            .kind = S_WRITE_REFUND_END,
                            .done = done,
                            .out = payment_out,
                            .refund_out = out};
    S_COPY(next.key, key);
    S_COPY(next.gateway_id, refund_id ? refund_id : "");
    *w = next;
    return true;
}

store_status_t payment_store_refund_end(payment_store_t *self, const char *key, bool done,
                                        const char *refund_id, refund_t *out,
                                        payment_t *payment_out)
{
    payment_write_t w;
    if (!payment_write_refund_end(&w, self, key, done, refund_id, out, payment_out))
        return STORE_ERROR;
    return s_write_wait(&w);
}

/* ---- prepared writes ---- */

int payment_write_txn(MDB_txn *txn, void *arg)
{
    payment_write_t *w = arg;
    switch (w->kind) {
    case S_WRITE_BEGIN:
        return s_begin_txn(txn, w);
    case S_WRITE_APPLY:
        return s_apply_txn(txn, w);
    case S_WRITE_NEXT_ATTEMPT:
        return s_next_attempt_txn(txn, w);
    case S_WRITE_REFUND_BEGIN:
        return s_refund_begin_txn(txn, w);
    case S_WRITE_REFUND_END:
        return s_refund_end_txn(txn, w);
    default:
        zsys_error("payment_store: a write that was never prepared");
        return STORE_ERROR;
    }
}

store_status_t payment_write_end(const payment_write_t *w, bool committed, int result)
{
    store_status_t status = (store_status_t)result;
    if (!committed) {
        /* Nothing of it is stored, whatever it answered; kv logged why,
         * and result is its error. */
        status = kv_status(result);
        if (status != STORE_NO_SPACE) {
            zsys_error("payment_store: a write transaction did not commit");
            status = STORE_ERROR;
        }
    }
    if (status != STORE_OK && w->created)
        *w->created = false; /* it may have been set before the commit failed */
    return status;
}

kv_t *payment_store_kv(payment_store_t *self)
{
    return self->shared->kv;
}

/* ---- reads ---- */

store_status_t payment_store_get(payment_store_t *self, const char *id, payment_t *out)
{
    if (!self || !out)
        return STORE_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    store_status_t status = payment_read(self->shared, txn, id, out);
    store_reader_end(&self->reader);
    return status;
}

/* The payment of order_id within txn. */
static store_status_t s_by_order(const payment_store_shared_t *shared, MDB_txn *txn,
                                 const char *order_id, payment_t *out)
{
    if (!s_fits(order_id, PAYMENT_ORDER_ID_MAX))
        return STORE_NOT_FOUND;
    MDB_val key = s_val(order_id), val;
    int rc = mdb_get(txn, shared->dbi[PAYMENT_DB_BY_ORDER], &key, &val);
    if (rc == MDB_NOTFOUND)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return payment_fail("mdb_get by_order", rc);
    char id[PAYMENT_ID_MAX + 1];
    if (val.mv_size == 0 || val.mv_size > PAYMENT_ID_MAX)
        return STORE_ERROR;
    memcpy(id, val.mv_data, val.mv_size);
    id[val.mv_size] = '\0';
    store_status_t status = payment_read(shared, txn, id, out);
    return status == STORE_NOT_FOUND ? STORE_ERROR : status;
}

store_status_t payment_store_by_order(payment_store_t *self, const char *order_id, payment_t *out)
{
    if (!self || !out)
        return STORE_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    store_status_t status = s_by_order(self->shared, txn, order_id, out);
    store_reader_end(&self->reader);
    return status;
}

/* The id bound of a time: "p" and 12 hex digits of ms (ids of that ms and
 * later sort after it, earlier ones before). */
static void s_time_bound(int64_t ms, char out[14])
{
    if (ms > 0xffffffffffffLL)
        ms = 0xffffffffffffLL;
    snprintf(out, 14, "p%012" PRIx64, (uint64_t)ms);
}

/* A walk backwards from the last key before `before` (NULL: from the
 * last key) while keys start with prefix[0..prefix_len). */
typedef struct {
    MDB_cursor *cursor;
    const uint8_t *prefix;
    size_t prefix_len;
    MDB_val key, val;
    int rc;
} s_walk_t;

static int s_walk_start(s_walk_t *w, const uint8_t *before, size_t before_len)
{
    if (before) {
        w->key = (MDB_val){.mv_size = before_len, .mv_data = (void *)before};
        w->rc = mdb_cursor_get(w->cursor, &w->key, &w->val, MDB_SET_RANGE);
        if (w->rc == 0)
            w->rc = mdb_cursor_get(w->cursor, &w->key, &w->val, MDB_PREV);
        else if (w->rc == MDB_NOTFOUND)
            w->rc = mdb_cursor_get(w->cursor, &w->key, &w->val, MDB_LAST);
    } else
        w->rc = mdb_cursor_get(w->cursor, &w->key, &w->val, MDB_LAST);
    return w->rc;
}

/* Whether the walk is on a key of its prefix (an LMDB failure is kept in rc). */
static bool s_walk_on(const s_walk_t *w)
{
    return w->rc == 0 && w->key.mv_size > w->prefix_len &&
           memcmp(w->key.mv_data, w->prefix, w->prefix_len) == 0;
}

typedef struct {
    const payment_filter_t *filter;
    const char *cursor;
    char lower[14], upper[14]; /* "" when unbounded */
} s_range_t;

static bool s_in_range(const s_range_t *range, const payment_t *p)
{
    const payment_filter_t *f = range->filter;
    return (!f->order_id || strcmp(p->order_id, f->order_id) == 0) &&
           (!f->has_status || p->status == f->status) &&
           (!range->lower[0] || strcmp(p->id, range->lower) >= 0) &&
           (!range->upper[0] || strcmp(p->id, range->upper) < 0) &&
           (!range->cursor[0] || strcmp(p->id, range->cursor) < 0);
}

/* The page of a list without an order filter (see the top). */
static store_status_t s_list_walk(payment_store_t *self, MDB_txn *txn, const s_range_t *range,
                                  int limit, payment_t *out, int *n,
                                  char next_cursor[PAYMENT_ID_MAX + 1])
{
    const payment_filter_t *f = range->filter;
    const payment_store_shared_t *shared = self->shared;
    uint8_t prefix = (uint8_t)f->status;
    s_walk_t w = {.prefix = &prefix, .prefix_len = f->has_status ? 1 : 0};
    MDB_dbi dbi = shared->dbi[f->has_status ? PAYMENT_DB_BY_STATUS : PAYMENT_DB_PAYMENTS];
    int rc = mdb_cursor_open(txn, dbi, &w.cursor);
    if (rc != 0)
        return payment_fail("mdb_cursor_open list", rc);
    /* Start before the smaller of the cursor and the upper bound; or,
     * unbounded, before the next status's keys. */
    const char *bound = range->upper[0] ? range->upper : NULL;
    if (range->cursor[0] && (!bound || strcmp(range->cursor, bound) < 0))
        bound = range->cursor;
    uint8_t start[1 + PAYMENT_ID_MAX];
    size_t start_len = 0;
    if (bound) {
        memcpy(start, &prefix, w.prefix_len);
        memcpy(start + w.prefix_len, bound, strlen(bound));
        start_len = w.prefix_len + strlen(bound);
    } else if (f->has_status) {
        start[0] = (uint8_t)(prefix + 1);
        start_len = 1;
    }
    s_walk_start(&w, start_len ? start : NULL, start_len);
    store_status_t status = STORE_OK;
    for (; s_walk_on(&w); w.rc = mdb_cursor_get(w.cursor, &w.key, &w.val, MDB_PREV)) {
        const char *id = (const char *)w.key.mv_data + w.prefix_len;
        size_t id_len = w.key.mv_size - w.prefix_len;
        if (range->lower[0] && (id_len < 13 ? memcmp(id, range->lower, id_len) <= 0
                                            : memcmp(id, range->lower, 13) < 0))
            break; /* older than the range */
        if (*n == limit) {
            snprintf(next_cursor, PAYMENT_ID_MAX + 1, "%s", out[limit - 1].id);
            break;
        }
        payment_t *p = &out[*n];
        if (f->has_status) {
            char copy[PAYMENT_ID_MAX + 1];
            if (id_len > PAYMENT_ID_MAX) {
                status = STORE_ERROR;
                break;
            }
            memcpy(copy, id, id_len);
            copy[id_len] = '\0';
            status = payment_read(shared, txn, copy, p);
        } else
            status = s_payment_decode(id, id_len, &w.val, p);
        if (status != STORE_OK) {
            status = STORE_ERROR; /* an index entry of no payment is damage too */
            break;
        }
        (*n)++;
    }
    if (status == STORE_OK && w.rc != 0 && w.rc != MDB_NOTFOUND)
        status = payment_fail("list", w.rc);
    mdb_cursor_close(w.cursor);
    return status;
}

store_status_t payment_store_list(payment_store_t *self, const payment_filter_t *filter,
                                  const char *cursor, int limit, payment_t *out, int *n,
                                  char next_cursor[PAYMENT_ID_MAX + 1])
{
    if (n)
        *n = 0;
    if (next_cursor)
        next_cursor[0] = '\0';
    if (!self || !filter || !out || !n || !next_cursor || limit < 1 || limit > 100 ||
        (cursor && !memchr(cursor, '\0', PAYMENT_ID_MAX + 1)) ||
        (filter->has_status && !payment_status_name(filter->status)))
        return STORE_ERROR;
    s_range_t range = {.filter = filter, .cursor = cursor ? cursor : ""};
    if (filter->from_ms > 0)
        s_time_bound(filter->from_ms, range.lower);
    if (filter->to_ms > 0)
        s_time_bound(filter->to_ms, range.upper);
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    store_status_t status;
    if (filter->order_id) {
        /* One payment per order: the page is it or nothing. */
        status = s_by_order(self->shared, txn, filter->order_id, out);
        if (status == STORE_OK && s_in_range(&range, out))
            *n = 1;
        if (status == STORE_NOT_FOUND)
            status = STORE_OK;
    } else
        status = s_list_walk(self, txn, &range, limit, out, n, next_cursor);
    store_reader_end(&self->reader);
    if (status != STORE_OK) {
        *n = 0;
        next_cursor[0] = '\0';
    }
    return status;
}

store_status_t payment_store_pending(payment_store_t *self, payment_t *out, int max, int *n)
{
    if (n)
        *n = 0;
    if (!self || !out || !n || max < 0)
        return STORE_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    MDB_cursor *cursor = NULL;
    store_status_t status = STORE_OK;
    int rc = mdb_cursor_open(txn, self->shared->dbi[PAYMENT_DB_BY_STATUS], &cursor);
    uint8_t prefix = PAYMENT_PENDING;
    MDB_val key = {.mv_size = 1, .mv_data = &prefix}, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    while (rc == 0 && *n < max && key.mv_size > 1 && ((uint8_t *)key.mv_data)[0] == prefix) {
        char id[PAYMENT_ID_MAX + 1];
        if (key.mv_size - 1 > PAYMENT_ID_MAX) {
            status = STORE_ERROR;
            break;
        }
        memcpy(id, (char *)key.mv_data + 1, key.mv_size - 1);
        id[key.mv_size - 1] = '\0';
        status = payment_read(self->shared, txn, id, &out[*n]);
        if (status != STORE_OK) {
            status = STORE_ERROR;
            break;
        }
        (*n)++;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    }
    if (status == STORE_OK && rc != 0 && rc != MDB_NOTFOUND)
        status = payment_fail("pending", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    store_reader_end(&self->reader);
    if (status != STORE_OK)
        *n = 0;
    return status;
}

/* ---- refunds in full whose order has not heard ---- */

store_status_t payment_store_to_tell(payment_store_t *self, const char *after, int max,
                                     payment_to_tell_t *out, int *n)
{
    if (n)
        *n = 0;
    if (!self || !after || !out || !n || max < 0)
        return STORE_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    MDB_cursor *cursor = NULL;
    store_status_t status = STORE_OK;
    int rc = mdb_cursor_open(txn, self->shared->dbi[PAYMENT_DB_TO_TELL], &cursor);
    MDB_val key = {.mv_size = strlen(after), .mv_data = (void *)after}, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, after[0] ? MDB_SET_RANGE : MDB_FIRST);
    /* strictly after `after`: the range starts at it when it is still there */
    if (rc == 0 && after[0] && key.mv_size == strlen(after) &&
        memcmp(key.mv_data, after, key.mv_size) == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    while (rc == 0 && *n < max) {
        if (key.mv_size > PAYMENT_ID_MAX || val.mv_size > PAYMENT_ORDER_ID_MAX) {
            status = payment_fail("to_tell entry too long", MDB_CORRUPTED);
            break;
        }
        payment_to_tell_t *t = &out[*n];
        memcpy(t->payment_id, key.mv_data, key.mv_size);
        t->payment_id[key.mv_size] = '\0';
        memcpy(t->order_id, val.mv_data, val.mv_size);
        t->order_id[val.mv_size] = '\0';
        (*n)++;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    }
    if (status == STORE_OK && rc != 0 && rc != MDB_NOTFOUND)
        status = payment_fail("to_tell", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    store_reader_end(&self->reader);
    if (status != STORE_OK)
        *n = 0;
    return status;
}

typedef struct {
    payment_store_shared_t *shared;
    const char *payment_id;
} s_told_t;

static int s_told_txn(MDB_txn *txn, void *arg)
{
    const s_told_t *t = arg;
    MDB_val k = {.mv_size = strlen(t->payment_id), .mv_data = (void *)t->payment_id};
    int rc = mdb_del(txn, t->shared->dbi[PAYMENT_DB_TO_TELL], &k, NULL);
    return rc == 0 || rc == MDB_NOTFOUND ? STORE_OK : payment_fail("del to_tell", rc);
}

store_status_t payment_store_told(payment_store_t *self, const char *payment_id)
{
    if (!self || !s_fits(payment_id, PAYMENT_ID_MAX))
        return STORE_ERROR;
    s_told_t t = {.shared = self->shared, .payment_id = payment_id};
    return s_write(self->shared, s_told_txn, &t);
}

/* ---- refunds left pending ---- */

store_status_t payment_store_refund_get(payment_store_t *self, const char *key, refund_t *out)
{
    if (!self || !s_fits(key, PAYMENT_KEY_MAX) || !out)
        return STORE_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    store_status_t status = s_refund_read(self->shared, txn, key, out);
    store_reader_end(&self->reader);
    return status;
}

store_status_t payment_store_refunds_pending(payment_store_t *self, const char *after, int max,
                                             refund_t *out, int *n)
{
    if (n)
        *n = 0;
    if (!self || !after || !out || !n || max < 0)
        return STORE_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    MDB_cursor *cursor = NULL;
    store_status_t status = STORE_OK;
    int rc = mdb_cursor_open(txn, self->shared->dbi[PAYMENT_DB_REFUNDS_PENDING], &cursor);
    MDB_val key = {.mv_size = strlen(after), .mv_data = (void *)after}, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, after[0] ? MDB_SET_RANGE : MDB_FIRST);
    if (rc == 0 && after[0] && key.mv_size == strlen(after) &&
        memcmp(key.mv_data, after, key.mv_size) == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    while (rc == 0 && *n < max) {
        char k[PAYMENT_KEY_MAX + 1];
        if (key.mv_size > PAYMENT_KEY_MAX) {
            status = payment_fail("refunds_pending key too long", MDB_CORRUPTED);
            break;
        }
        memcpy(k, key.mv_data, key.mv_size);
        k[key.mv_size] = '\0';
        status = s_refund_read(self->shared, txn, k, &out[*n]);
        if (status != STORE_OK) {
            status = STORE_ERROR; /* an index entry of no refund: damage */
            break;
        }
        (*n)++;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    }
    if (status == STORE_OK && rc != 0 && rc != MDB_NOTFOUND)
        status = payment_fail("refunds_pending", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    store_reader_end(&self->reader);
    if (status != STORE_OK)
        *n = 0;
    return status;
}

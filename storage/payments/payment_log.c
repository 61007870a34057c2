/*  payment_log.c - the transaction log of the payment store: appending in
 *  the payment's own write, the signed heads (anchors), reading and
 *  verifying (payment_store.h; the layout is in payment_store_impl.h).
 *
 *  Appending (payment_log_append, inside the write of the payment's new
 *  state): the head is the log's last key, read in that same transaction,
 *  so the next seq and the prev_hash come from what is committed before
 *  this write, also within a group-commit batch (a nested transaction
 *  sees the entries of those before it). The new entry gets seq + 1 and
 *  the BLAKE2b-256 of prev_hash and its content (payment_log_hash), its
 *  index key payment_id \0 seq, and, every PAYMENT_LOG_ANCHOR_EVERY
 *  entries, an anchor: the head (seq, hash) signed with Ed25519. A write
 *  that is refused or fails takes its entry with it, so seqs have no gaps.
 *
 *  Verifying (payment_log_verify) reads one snapshot (the handle's read
 *  transaction) in four passes, each stopping at its first problem:
 *    1. the chain, in seq order: every seq from 1 with none missing,
 *       each entry decodes, its prev_hash is the entry before's hash, its
 *       hash is that of its content, its payment exists and has it in its
 *       index;
 *    2. the anchors: each signature good, none beyond the log's end (a
 *       cut tail), each one's entry holding the hash signed, and one at
 *       every multiple of PAYMENT_LOG_ANCHOR_EVERY up to the end (they are
 *       written in the write of that entry, so a missing one was removed);
 *    3. expected_head, when given, is the hash of an entry of the chain;
 *    4. per stored payment, its entries (through its index) replayed from
 *       "pending": each transition allowed from the status before, the
 *       sums kept (captured <= authorized, refunded <= captured), and the
 *       payment as stored equal to the replay's end (status, authorized,
 *       captured, refunded, and refunded + refunding <= captured). Of the
 *       problems found here, the one at the lowest seq is reported.
 *  The chain comes first because nothing after a broken link can be
 *  trusted; the anchors before the sums because a cut tail also leaves
 *  payments ahead of their entries, and "cut off" is the better answer.
 *  Pass 4 walks each payment's index instead of keeping every payment's
 *  sums in memory: a verify costs no memory whatever the log's size, and
 *  pass 1 has shown that every entry is in its payment's index.
 */
#include "storage/payments/payment_store_impl.h"
#include "protocol/clock.h"
#include "storage/record.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

static const char *const s_type_names[] = {"authorize", "capture", "refund", "void", "fail"};
#define S_TYPES 5

/* An entry record's largest size: the strs at their longest, the details
 * map, the two hashes and the keys. */
#define S_ENTRY_MAX 1024
#define S_ANCHOR_MAX 256

const char *payment_log_type_name(log_type_t type)
{
    return (unsigned)type < S_TYPES ? s_type_names[type] : NULL;
}

/* ---- records ---- */

typedef struct {
    int type;
    char payment_id[PAYMENT_ID_MAX + 1];
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
    int64_t amount;
    char currency[PAYMENT_CURRENCY_MAX + 1];
    int64_t at;
    record_view_t details;
    uint8_t prev_hash[PAYMENT_HASH_BYTES];
    size_t prev_hash_len;
    uint8_t hash[PAYMENT_HASH_BYTES];
    size_t hash_len;
} s_entry_rec_t;

static const record_field_t s_entry_fields[] = {
    RECORD_ENUM_FIELD(s_entry_rec_t, type, "type", s_type_names, S_TYPES, RECORD_REQUIRED),
    RECORD_STR_FIELD(s_entry_rec_t, payment_id, "payment_id", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_entry_rec_t, order_id, "order_id", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_entry_rec_t, amount, "amount_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(s_entry_rec_t, currency, "currency", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_entry_rec_t, at, "at", RECORD_REQUIRED),
    RECORD_RAW_FIELD(s_entry_rec_t, details, "details", RECORD_REQUIRED),
    RECORD_BIN_FIELD(s_entry_rec_t, prev_hash, prev_hash_len, "prev_hash", RECORD_REQUIRED),
    RECORD_BIN_FIELD(s_entry_rec_t, hash, hash_len, "hash", RECORD_REQUIRED),
};
static const record_table_t s_entry_table = RECORD_TABLE(s_entry_fields);

typedef struct {
    uint8_t hash[PAYMENT_HASH_BYTES];
    size_t hash_len;
    uint8_t sig[crypto_sign_BYTES];
    size_t sig_len;
    int64_t at;
} s_anchor_rec_t;

static const record_field_t s_anchor_fields[] = {
    RECORD_BIN_FIELD(s_anchor_rec_t, hash, hash_len, "hash", RECORD_REQUIRED),
    RECORD_BIN_FIELD(s_anchor_rec_t, sig, sig_len, "sig", RECORD_REQUIRED),
    RECORD_INT64_FIELD(s_anchor_rec_t, at, "at", RECORD_REQUIRED),
};
static const record_table_t s_anchor_table = RECORD_TABLE(s_anchor_fields);

/* The details of a "fail" entry that ended a refund carry its key. */
typedef struct {
    record_view_t refund;
} s_details_t;

static const record_field_t s_details_fields[] = {
    RECORD_STR_VIEW_FIELD(s_details_t, refund, "refund", PAYMENT_KEY_MAX, 0),
};
static const record_table_t s_details_table = RECORD_TABLE(s_details_fields);

/* Decodes an entry record; false when it is not one (the hashes must be
 * whole and the details a map). */
static bool s_entry_decode(const MDB_val *val, s_entry_rec_t *out)
{
    memset(out, 0, sizeof *out);
    if (record_decode(&s_entry_table, val->mv_data, val->mv_size, out) != RECORD_OK ||
        out->prev_hash_len != PAYMENT_HASH_BYTES || out->hash_len != PAYMENT_HASH_BYTES)
        return false;
    s_details_t d = {{0}};
    return record_decode(&s_details_table, out->details.ptr, out->details.len, &d) == RECORD_OK;
}

static bool s_anchor_decode(const MDB_val *val, s_anchor_rec_t *out)
{
    memset(out, 0, sizeof *out);
    return record_decode(&s_anchor_table, val->mv_data, val->mv_size, out) == RECORD_OK &&
           out->hash_len == PAYMENT_HASH_BYTES && out->sig_len == crypto_sign_BYTES;
}

/* ---- hashing ---- */

int payment_log_hash(uint64_t seq, log_type_t type, const char *payment_id, const char *order_id,
                     int64_t amount_cents, const char *currency, int64_t at_ms,
                     const uint8_t *details, size_t details_len,
                     const uint8_t prev[PAYMENT_HASH_BYTES], uint8_t out[PAYMENT_HASH_BYTES])
{
    const char *name = payment_log_type_name(type);
    if (!name)
        return -1;
    mpout_t buf;
    mpout_init(&buf, 0);
    msgpack_packer pk;
    mpout_packer(&buf, &pk);
    msgpack_pack_array(&pk, 8);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_str_with_body(&pk, name, strlen(name));
    msgpack_pack_str_with_body(&pk, payment_id, strlen(payment_id));
    msgpack_pack_str_with_body(&pk, order_id, strlen(order_id));
    msgpack_pack_int64(&pk, amount_cents);
    msgpack_pack_str_with_body(&pk, currency, strlen(currency));
    msgpack_pack_int64(&pk, at_ms);
    mpout_write(&buf, (const char *)details, details_len); /* the map's bytes as stored */
    int rc = -1;
    crypto_generichash_state state;
    if (!buf.failed && crypto_generichash_init(&state, NULL, 0, PAYMENT_HASH_BYTES) == 0 &&
        crypto_generichash_update(&state, prev, PAYMENT_HASH_BYTES) == 0 &&
        crypto_generichash_update(&state, (const unsigned char *)buf.buf.data, buf.buf.size) == 0 &&
        crypto_generichash_final(&state, out, PAYMENT_HASH_BYTES) == 0)
        rc = 0;
    mpout_destroy(&buf);
    return rc;
}

static int s_entry_hash(uint64_t seq, const s_entry_rec_t *e, uint8_t out[PAYMENT_HASH_BYTES])
{
    return payment_log_hash(seq, (log_type_t)e->type, e->payment_id, e->order_id, e->amount,
                            e->currency, e->at, e->details.ptr, e->details.len, e->prev_hash, out);
}

/* ---- appending ---- */

/* The head within txn: its seq (0 for an empty log) and hash (zeros). */
static store_status_t s_head(const payment_store_shared_t *shared, MDB_txn *txn, uint64_t *seq,
                             uint8_t hash[PAYMENT_HASH_BYTES])
{
    *seq = 0;
    memset(hash, 0, PAYMENT_HASH_BYTES);
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn, shared->dbi[PAYMENT_DB_LOG], &cursor);
    if (rc != 0)
        return payment_fail("mdb_cursor_open log", rc);
    MDB_val key, val;
    store_status_t status = STORE_OK;
    rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
    if (rc == 0) {
        s_entry_rec_t e;
        if (key.mv_size != 8 || !s_entry_decode(&val, &e)) {
            zsys_error("payment_store: the log's last entry is malformed");
            status = STORE_ERROR;
        } else {
            *seq = payment_be64_get(key.mv_data);
            memcpy(hash, e.hash, PAYMENT_HASH_BYTES);
        }
    } else if (rc != MDB_NOTFOUND)
        status = payment_fail("mdb_cursor_get log", rc);
    mdb_cursor_close(cursor);
    return status;
}

static store_status_t s_anchor_put(const payment_store_shared_t *shared, MDB_txn *txn, uint64_t seq,
                                   const uint8_t hash[PAYMENT_HASH_BYTES])
{
    s_anchor_rec_t a = {
        .hash_len = PAYMENT_HASH_BYTES, .sig_len = crypto_sign_BYTES, .at = clock_now_ms()};
    memcpy(a.hash, hash, PAYMENT_HASH_BYTES);
    if (payment_keys_sign_head(&shared->keys, seq, hash, a.sig) != 0) {
        zsys_error("payment_store: the head at entry %" PRIu64 " cannot be signed", seq);
        return STORE_ERROR;
    }
    mpout_t out;
    mpout_init(&out, S_ANCHOR_MAX);
    store_status_t status = STORE_OK;
    if (record_pack(&s_anchor_table, &a, &out) != 0)
        status = STORE_ERROR;
    else {
        uint8_t k[8];
        payment_be64_put(k, seq);
        MDB_val key = {8, k}, val = {out.buf.size, out.buf.data};
        int rc = mdb_put(txn, shared->dbi[PAYMENT_DB_ANCHORS], &key, &val, 0);
        if (rc != 0)
            status = payment_fail("mdb_put anchors", rc);
    }
    mpout_destroy(&out);
    return status;
}

static size_t s_index_key(const char *payment_id, uint64_t seq, uint8_t out[PAYMENT_INDEX_KEY_MAX])
{
    size_t len = strlen(payment_id);
    memcpy(out, payment_id, len);
    out[len] = '\0';
    payment_be64_put(out + len + 1, seq);
    return len + 1 + 8;
}

store_status_t payment_log_append(const payment_store_shared_t *shared, MDB_txn *txn,
                                  log_type_t type, const payment_t *p, int64_t amount_cents,
                                  const uint8_t *details, size_t details_len)
{
    s_entry_rec_t e = {.type = (int)type,
                       .amount = amount_cents,
                       .at = clock_now_ms(),
                       .details = {details, details_len},
                       .prev_hash_len = PAYMENT_HASH_BYTES,
                       .hash_len = PAYMENT_HASH_BYTES};
    snprintf(e.payment_id, sizeof e.payment_id, "%s", p->id);
    snprintf(e.order_id, sizeof e.order_id, "%s", p->order_id);
    snprintf(e.currency, sizeof e.currency, "%s", p->currency);
    uint64_t seq;
    store_status_t status = s_head(shared, txn, &seq, e.prev_hash);
    if (status != STORE_OK)
        return status;
    seq++;
    if (s_entry_hash(seq, &e, e.hash) != 0)
        return STORE_ERROR;
    mpout_t out;
    mpout_init(&out, S_ENTRY_MAX);
    if (record_pack(&s_entry_table, &e, &out) != 0) {
        zsys_error("payment_store: log entry %" PRIu64 " does not encode", seq);
        status = STORE_ERROR;
        goto cleanup;
    }
    uint8_t k[8];
    payment_be64_put(k, seq);
    MDB_val key = {8, k}, val = {out.buf.size, out.buf.data};
    /* The head is the last key: MDB_APPEND states it, and LMDB refuses
     * the put otherwise. */
    int rc = mdb_put(txn, shared->dbi[PAYMENT_DB_LOG], &key, &val, MDB_APPEND);
    if (rc != 0) {
        status = payment_fail("mdb_put log", rc);
        goto cleanup;
    }
    uint8_t ik[PAYMENT_INDEX_KEY_MAX];
    MDB_val index = {s_index_key(p->id, seq, ik), ik}, empty = {0, NULL};
    rc = mdb_put(txn, shared->dbi[PAYMENT_DB_LOG_BY_PAYMENT], &index, &empty, 0);
    if (rc != 0) {
        status = payment_fail("mdb_put log_by_payment", rc);
        goto cleanup;
    }
    if (seq % PAYMENT_LOG_ANCHOR_EVERY == 0)
        status = s_anchor_put(shared, txn, seq, e.hash);
cleanup:
    mpout_destroy(&out);
    return status;
}

store_status_t payment_log_anchor_txn(const payment_store_shared_t *shared, MDB_txn *txn)
{
    uint64_t seq;
    uint8_t hash[PAYMENT_HASH_BYTES];
    store_status_t status = s_head(shared, txn, &seq, hash);
    if (status != STORE_OK || seq == 0)
        return status;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn, shared->dbi[PAYMENT_DB_ANCHORS], &cursor);
    if (rc != 0)
        return payment_fail("mdb_cursor_open anchors", rc);
    MDB_val key, val;
    rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
    bool signed_already = rc == 0 && key.mv_size == 8 && payment_be64_get(key.mv_data) == seq;
    mdb_cursor_close(cursor);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return payment_fail("mdb_cursor_get anchors", rc);
    return signed_already ? STORE_OK : s_anchor_put(shared, txn, seq, hash);
}

/* ---- reading ---- */

static void s_entry_out(uint64_t seq, const s_entry_rec_t *e, log_entry_t *out)
{
    memset(out, 0, sizeof *out);
    out->seq = seq;
    out->type = (log_type_t)e->type;
    snprintf(out->payment_id, sizeof out->payment_id, "%s", e->payment_id);
    snprintf(out->order_id, sizeof out->order_id, "%s", e->order_id);
    out->amount_cents = e->amount;
    snprintf(out->currency, sizeof out->currency, "%s", e->currency);
    out->at_ms = e->at;
    out->details = e->details.ptr;
    out->details_len = e->details.len;
    sodium_bin2hex(out->prev_hash, sizeof out->prev_hash, e->prev_hash, PAYMENT_HASH_BYTES);
    sodium_bin2hex(out->hash, sizeof out->hash, e->hash, PAYMENT_HASH_BYTES);
}

/* Reads entry seq within txn (NOT_FOUND, or ERROR for one that does not
 * decode). */
static store_status_t s_entry_get(const payment_store_shared_t *shared, MDB_txn *txn, uint64_t seq,
                                  s_entry_rec_t *out)
{
    uint8_t k[8];
    payment_be64_put(k, seq);
    MDB_val key = {8, k}, val;
    int rc = mdb_get(txn, shared->dbi[PAYMENT_DB_LOG], &key, &val);
    if (rc == MDB_NOTFOUND)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return payment_fail("mdb_get log", rc);
    return s_entry_decode(&val, out) ? STORE_OK : STORE_ERROR;
}

/* Calls fn for the entries of payment_id from seq `from`, oldest first. */
static store_status_t s_each_of_payment(const payment_store_shared_t *shared, MDB_txn *txn,
                                        uint64_t from, const char *payment_id, log_entry_fn *fn,
                                        void *arg)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn, shared->dbi[PAYMENT_DB_LOG_BY_PAYMENT], &cursor);
    if (rc != 0)
        return payment_fail("mdb_cursor_open log_by_payment", rc);
    uint8_t k[PAYMENT_INDEX_KEY_MAX];
    size_t prefix = strlen(payment_id) + 1;
    MDB_val key = {s_index_key(payment_id, from, k), k}, val;
    store_status_t status = STORE_OK;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
         rc == 0 && key.mv_size == prefix + 8 && memcmp(key.mv_data, k, prefix) == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        uint64_t seq = payment_be64_get((const uint8_t *)key.mv_data + prefix);
        s_entry_rec_t e;
        status = s_entry_get(shared, txn, seq, &e);
        if (status != STORE_OK) {
            zsys_error("payment_store: entry %" PRIu64 " of payment %s cannot be read", seq,
                       payment_id);
            status = STORE_ERROR;
            break;
        }
        log_entry_t entry;
        s_entry_out(seq, &e, &entry);
        if (fn(&entry, arg) != 0)
            break;
    }
    if (status == STORE_OK && rc != 0 && rc != MDB_NOTFOUND)
        status = payment_fail("log_by_payment", rc);
    mdb_cursor_close(cursor);
    return status;
}

/* Calls fn for every entry from seq `from`, in order. */
static store_status_t s_each(const payment_store_shared_t *shared, MDB_txn *txn, uint64_t from,
                             log_entry_fn *fn, void *arg)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(txn, shared->dbi[PAYMENT_DB_LOG], &cursor);
    if (rc != 0)
        return payment_fail("mdb_cursor_open log", rc);
    uint8_t k[8];
    payment_be64_put(k, from);
    MDB_val key = {8, k}, val;
    store_status_t status = STORE_OK;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        s_entry_rec_t e;
        if (key.mv_size != 8 || !s_entry_decode(&val, &e)) {
            zsys_error("payment_store: a log entry is malformed");
            status = STORE_ERROR;
            break;
        }
        log_entry_t entry;
        s_entry_out(payment_be64_get(key.mv_data), &e, &entry);
        if (fn(&entry, arg) != 0)
            break;
    }
    if (status == STORE_OK && rc != 0 && rc != MDB_NOTFOUND)
        status = payment_fail("log", rc);
    mdb_cursor_close(cursor);
    return status;
}

store_status_t payment_log_each_txn(const payment_store_shared_t *shared, MDB_txn *txn,
                                    const char *payment_id, log_entry_fn *fn, void *arg)
{
    return s_each_of_payment(shared, txn, 1, payment_id, fn, arg);
}

store_status_t payment_log_each(payment_store_t *self, uint64_t from, const char *payment_id,
                                log_entry_fn *fn, void *arg)
{
    if (!self || !fn || (payment_id && !memchr(payment_id, '\0', PAYMENT_ID_MAX + 1)))
        return STORE_ERROR;
    if (from == 0)
        from = 1;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    store_status_t status = payment_id
                                ? s_each_of_payment(self->shared, txn, from, payment_id, fn, arg)
                                : s_each(self->shared, txn, from, fn, arg);
    store_reader_end(&self->reader);
    return status;
}

/* ---- verifying ---- */

typedef struct {
    const payment_store_shared_t *shared;
    MDB_txn *txn;
    log_verify_t *out;
    uint64_t last; /* the chain's last seq */
} s_verify_t;

/* Records a problem at seq (the first one reported wins, unless lower:
 * pass 4 reports the lowest seq it finds; 0 names no entry and loses to
 * any). Returns -1, for the caller to stop on. */
static int s_bad(log_verify_t *out, uint64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int s_bad(log_verify_t *out, uint64_t seq, const char *fmt, ...)
{
    if (!out->ok && (seq == 0 || (out->bad_seq != 0 && out->bad_seq <= seq)))
        return -1;
    out->ok = false;
    out->bad_seq = seq;
    va_list args;
    va_start(args, fmt);
    vsnprintf(out->problem, sizeof out->problem, fmt, args);
    va_end(args);
    return -1;
}

/* Pass 1: the chain. 0, 1 when it is broken (reported), -1 when it
 * cannot be read. expected found (or NULL) sets *found. */
static int s_verify_chain(s_verify_t *v, const uint8_t *expected, bool *found)
{
    const payment_store_shared_t *shared = v->shared;
    log_verify_t *out = v->out;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(v->txn, shared->dbi[PAYMENT_DB_LOG], &cursor);
    if (rc != 0) {
        payment_fail("verify: mdb_cursor_open log", rc);
        return -1;
    }
    uint8_t prev[PAYMENT_HASH_BYTES] = {0}, hash[PAYMENT_HASH_BYTES];
    uint64_t expect = 1;
    int result = 0;
    MDB_val key, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT), expect++) {
        s_entry_rec_t e;
        uint64_t seq = key.mv_size == 8 ? payment_be64_get(key.mv_data) : 0;
        if (key.mv_size != 8) {
            s_bad(out, expect, "a log key after entry %" PRIu64 " is not a sequence number",
                  expect - 1);
        } else if (seq != expect) {
            s_bad(out, expect, "entry %" PRIu64 " is missing (the log goes on at %" PRIu64 ")",
                  expect, seq);
        } else if (!s_entry_decode(&val, &e)) {
            s_bad(out, seq, "entry %" PRIu64 " is not a log entry (it does not decode)", seq);
        } else if (memcmp(e.prev_hash, prev, sizeof prev) != 0) {
            s_bad(out, seq,
                  "entry %" PRIu64 " does not follow entry %" PRIu64
                  ": its prev_hash is not that entry's hash",
                  seq, seq - 1);
        } else if (s_entry_hash(seq, &e, hash) != 0) {
            result = -1;
            break;
        } else if (memcmp(hash, e.hash, sizeof hash) != 0) {
            s_bad(out, seq, "entry %" PRIu64 "'s hash does not match its content", seq);
        } else {
            uint8_t ik[PAYMENT_INDEX_KEY_MAX];
            MDB_val index = {s_index_key(e.payment_id, seq, ik), ik}, none;
            MDB_val pid = {strlen(e.payment_id), e.payment_id};
            int in_index = mdb_get(v->txn, shared->dbi[PAYMENT_DB_LOG_BY_PAYMENT], &index, &none);
            int stored = mdb_get(v->txn, shared->dbi[PAYMENT_DB_PAYMENTS], &pid, &none);
            if ((in_index != 0 && in_index != MDB_NOTFOUND) ||
                (stored != 0 && stored != MDB_NOTFOUND)) {
                payment_fail("verify: mdb_get", in_index ? in_index : stored);
                result = -1;
                break;
            }
            if (stored == MDB_NOTFOUND)
                s_bad(out, seq, "entry %" PRIu64 " is of payment %s, which is not stored", seq,
                      e.payment_id);
            else if (in_index == MDB_NOTFOUND)
                s_bad(out, seq, "entry %" PRIu64 " is not in the index of payment %s", seq,
                      e.payment_id);
        }
        if (!out->ok) {
            result = 1;
            break;
        }
        if (expected && memcmp(hash, expected, sizeof hash) == 0)
            *found = true;
        memcpy(prev, hash, sizeof prev);
        out->entries = seq;
        v->last = seq;
    }
    if (result == 0 && rc != MDB_NOTFOUND) {
        payment_fail("verify: log", rc);
        result = -1;
    }
    mdb_cursor_close(cursor);
    if (result == 0 && v->last > 0)
        sodium_bin2hex(out->head, sizeof out->head, prev, sizeof prev);
    return result;
}

/* Pass 2: the anchors (the chain is whole up to v->last). */
static int s_verify_anchors(s_verify_t *v)
{
    const payment_store_shared_t *shared = v->shared;
    log_verify_t *out = v->out;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(v->txn, shared->dbi[PAYMENT_DB_ANCHORS], &cursor);
    if (rc != 0) {
        payment_fail("verify: mdb_cursor_open anchors", rc);
        return -1;
    }
    int result = 0;
    MDB_val key, val;
    rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
    if (rc == 0 && key.mv_size == 8)
        out->anchored_seq = payment_be64_get(key.mv_data);
    /* The next periodic anchor that must exist. */
    uint64_t periodic = PAYMENT_LOG_ANCHOR_EVERY;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        s_anchor_rec_t a;
        s_entry_rec_t e;
        if (key.mv_size != 8 || !s_anchor_decode(&val, &a)) {
            s_bad(out, 0, "a signed head is malformed");
            break;
        }
        uint64_t seq = payment_be64_get(key.mv_data);
        if (periodic < seq && periodic <= v->last) {
            s_bad(out, periodic, "the signed head at entry %" PRIu64 " is missing", periodic);
            break;
        }
        if (!payment_keys_head_ok(&shared->keys, seq, a.hash, a.sig)) {
            s_bad(out, seq, "the signed head at entry %" PRIu64 " has a bad signature", seq);
            break;
        }
        if (seq > v->last) {
            s_bad(out, seq,
                  "the signed head at entry %" PRIu64 " is beyond the log's end (entry %" PRIu64
                  "): entries were cut off",
                  seq, v->last);
            break;
        }
        store_status_t status = s_entry_get(shared, v->txn, seq, &e);
        if (status != STORE_OK) {
            result = -1; /* pass 1 read it whole */
            break;
        }
        if (memcmp(e.hash, a.hash, sizeof a.hash) != 0) {
            s_bad(out, seq, "entry %" PRIu64 "'s hash is not the one signed for it", seq);
            break;
        }
        if (seq == periodic)
            periodic += PAYMENT_LOG_ANCHOR_EVERY;
    }
    if (out->ok && result == 0 && rc != MDB_NOTFOUND) {
        payment_fail("verify: anchors", rc);
        result = -1;
    }
    if (out->ok && result == 0 && periodic <= v->last)
        s_bad(out, periodic, "the signed head at entry %" PRIu64 " is missing", periodic);
    mdb_cursor_close(cursor);
    return result < 0 ? -1 : out->ok ? 0 : 1;
}

/* A payment as its entries make it. */
typedef struct {
    payment_status_t status;
    int64_t authorized, captured, refunded;
    uint64_t last_seq;
} s_replay_t;

/* Applies entry seq to r; false (reported) when it is not allowed. */
static bool s_replay(log_verify_t *out, const payment_t *p, uint64_t seq, const s_entry_rec_t *e,
                     s_replay_t *r)
{
    const char *type = s_type_names[e->type];
    const char *from = payment_status_name(r->status);
    bool allowed = false;
    switch ((log_type_t)e->type) {
    case LOG_AUTHORIZE:
        allowed = r->status == PAYMENT_PENDING;
        break;
    case LOG_CAPTURE:
    case LOG_VOID:
        allowed = r->status == PAYMENT_AUTHORIZED;
        break;
    case LOG_REFUND:
        allowed = r->status == PAYMENT_CAPTURED || r->status == PAYMENT_PARTIALLY_REFUNDED;
        break;
    case LOG_FAIL: {
        s_details_t d = {{0}};
        bool of_refund =
            record_decode(&s_details_table, e->details.ptr, e->details.len, &d) == RECORD_OK &&
            d.refund.len > 0;
        allowed = of_refund
                      ? r->status == PAYMENT_CAPTURED || r->status == PAYMENT_PARTIALLY_REFUNDED
                      : r->status == PAYMENT_PENDING || r->status == PAYMENT_AUTHORIZED;
        if (allowed && !of_refund)
            r->status = PAYMENT_FAILED;
        r->last_seq = seq;
        if (!allowed)
            s_bad(out, seq, "entry %" PRIu64 " (%s) of payment %s cannot follow status %s", seq,
                  of_refund ? "a failed refund" : type, p->id, from);
        return allowed;
    }
    }
    if (!allowed) {
        s_bad(out, seq, "entry %" PRIu64 " (%s) of payment %s cannot follow status %s", seq, type,
              p->id, from);
        return false;
    }
    if ((e->type == LOG_AUTHORIZE || e->type == LOG_CAPTURE || e->type == LOG_REFUND) &&
        e->amount <= 0) {
        s_bad(out, seq, "entry %" PRIu64 " (%s) has amount %" PRId64, seq, type, e->amount);
        return false;
    }
    switch ((log_type_t)e->type) {
    case LOG_AUTHORIZE:
        r->authorized = e->amount;
        r->status = PAYMENT_AUTHORIZED;
        break;
    case LOG_CAPTURE:
        if (e->amount > r->authorized) {
            s_bad(out, seq,
                  "entry %" PRIu64 " captures %" PRId64 " of payment %s, above the %" PRId64
                  " authorized",
                  seq, e->amount, p->id, r->authorized);
            return false;
        }
        r->captured = e->amount;
        r->status = PAYMENT_CAPTURED;
        break;
    case LOG_VOID:
        r->status = PAYMENT_VOIDED;
        break;
    case LOG_REFUND:
        if (e->amount > r->captured - r->refunded) {
            s_bad(out, seq,
                  "entry %" PRIu64 " refunds %" PRId64 " of payment %s: refunded %" PRId64
                  " would pass the %" PRId64 " captured",
                  seq, e->amount, p->id, r->refunded + e->amount, r->captured);
            return false;
        }
        r->refunded += e->amount;
        r->status = r->refunded == r->captured ? PAYMENT_REFUNDED : PAYMENT_PARTIALLY_REFUNDED;
        break;
    case LOG_FAIL:
        break;
    }
    r->last_seq = seq;
    return true;
}

/* Pass 4 for one payment: its entries through its index, replayed, and
 * the stored payment against the replay. 0, or -1 when it cannot be read
 * (a problem found is reported in out and returns 0). */
static int s_verify_payment(s_verify_t *v, const payment_t *p)
{
    const payment_store_shared_t *shared = v->shared;
    log_verify_t *out = v->out;
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(v->txn, shared->dbi[PAYMENT_DB_LOG_BY_PAYMENT], &cursor);
    if (rc != 0) {
        payment_fail("verify: mdb_cursor_open log_by_payment", rc);
        return -1;
    }
    uint8_t k[PAYMENT_INDEX_KEY_MAX];
    size_t prefix = strlen(p->id) + 1;
    MDB_val key = {s_index_key(p->id, 0, k), k}, val;
    s_replay_t r = {.status = PAYMENT_PENDING};
    bool good = true;
    int result = 0;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
         rc == 0 && key.mv_size == prefix + 8 && memcmp(key.mv_data, k, prefix) == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        uint64_t seq = payment_be64_get((const uint8_t *)key.mv_data + prefix);
        s_entry_rec_t e;
        store_status_t status = s_entry_get(shared, v->txn, seq, &e);
        if (status == STORE_NOT_FOUND) {
            good = s_bad(out, seq,
                         "the index of payment %s names entry %" PRIu64 ", which is not in the log",
                         p->id, seq) == 0;
            break;
        }
        if (status != STORE_OK) {
            result = -1;
            break;
        }
        if (strcmp(e.payment_id, p->id) != 0 || strcmp(e.order_id, p->order_id) != 0 ||
            strcmp(e.currency, p->currency) != 0) {
            good = s_bad(out, seq,
                         "entry %" PRIu64 " is indexed under payment %s but is not of its order "
                         "and currency",
                         seq, p->id) == 0;
            break;
        }
        if (!(good = s_replay(out, p, seq, &e, &r)))
            break;
    }
    if (result == 0 && rc != 0 && rc != MDB_NOTFOUND) {
        payment_fail("verify: log_by_payment", rc);
        result = -1;
    }
    mdb_cursor_close(cursor);
    if (result != 0 || !good)
        return result;
    if (p->status != r.status || p->authorized_cents != r.authorized ||
        p->captured_cents != r.captured || p->refunded_cents != r.refunded)
        s_bad(out, r.last_seq,
              "payment %s stores %s, authorized %" PRId64 ", captured %" PRId64
              ", refunded %" PRId64 "; its entries make %s, %" PRId64 ", %" PRId64 ", %" PRId64,
              p->id, payment_status_name(p->status), p->authorized_cents, p->captured_cents,
              p->refunded_cents, payment_status_name(r.status), r.authorized, r.captured,
              r.refunded);
    else if (p->refunding_cents < 0 || p->refunded_cents + p->refunding_cents > p->captured_cents)
        s_bad(out, r.last_seq,
              "payment %s has %" PRId64 " refunded and %" PRId64
              " being refunded, above the %" PRId64 " captured",
              p->id, p->refunded_cents, p->refunding_cents, p->captured_cents);
    return 0;
}

/* Pass 4: every stored payment. */
static int s_verify_payments(s_verify_t *v, payment_t *p)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(v->txn, v->shared->dbi[PAYMENT_DB_PAYMENTS], &cursor);
    if (rc != 0) {
        payment_fail("verify: mdb_cursor_open payments", rc);
        return -1;
    }
    int result = 0;
    MDB_val key, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0 && result == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        char id[PAYMENT_ID_MAX + 1];
        size_t len = key.mv_size <= PAYMENT_ID_MAX ? key.mv_size : PAYMENT_ID_MAX;
        memcpy(id, key.mv_data, len);
        id[len] = '\0';
        if (key.mv_size > PAYMENT_ID_MAX || memchr(id, '\0', len) ||
            payment_read(v->shared, v->txn, id, p) != STORE_OK) {
            s_bad(v->out, 0, "payment %s is not a payment record", id);
            continue;
        }
        result = s_verify_payment(v, p);
    }
    if (result == 0 && rc != MDB_NOTFOUND) {
        payment_fail("verify: payments", rc);
        result = -1;
    }
    mdb_cursor_close(cursor);
    return result;
}

store_status_t payment_log_verify_txn(const payment_store_shared_t *shared, MDB_txn *txn,
                                      const char *expected_head, log_verify_t *out)
{
    memset(out, 0, sizeof *out);
    out->ok = true;
    uint8_t expected[PAYMENT_HASH_BYTES];
    if (expected_head) {
        size_t len = 0;
        const char *end = NULL;
        if (strnlen(expected_head, PAYMENT_HASH_HEX + 1) != PAYMENT_HASH_HEX ||
            sodium_hex2bin(expected, sizeof expected, expected_head, PAYMENT_HASH_HEX, NULL, &len,
                           &end) != 0 ||
            len != sizeof expected || end != expected_head + PAYMENT_HASH_HEX) {
            s_bad(out, 0, "the expected head is not 64 hex digits");
            return STORE_OK;
        }
    }
    payment_t *p = malloc(sizeof *p);
    if (!p)
        return STORE_ERROR;
    s_verify_t v = {.shared = shared, .txn = txn, .out = out};
    bool found = false;
    int rc = s_verify_chain(&v, expected_head ? expected : NULL, &found);
    if (rc == 0)
        rc = s_verify_anchors(&v);
    if (rc == 0 && expected_head && !found) {
        s_bad(out, v.last + 1,
              "the expected head is the hash of no entry (the log ends at entry %" PRIu64 ")",
              v.last);
        rc = 1;
    }
    if (rc == 0)
        rc = s_verify_payments(&v, p);
    free(p);
    if (rc < 0) {
        memset(out, 0, sizeof *out);
        return STORE_ERROR;
    }
    return STORE_OK;
}

store_status_t payment_log_verify(payment_store_t *self, const char *expected_head,
                                  log_verify_t *out)
{
    if (!self || !out)
        return STORE_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn) {
        memset(out, 0, sizeof *out);
        return STORE_ERROR;
    }
    store_status_t status = payment_log_verify_txn(self->shared, txn, expected_head, out);
    store_reader_end(&self->reader);
    return status;
}

/*  payment_store_impl.h - what the files of the payment store share
 *  (payment_store.c: the handles, the payment and refund records, their
 *  writes and reads; payment_log.c: the transaction log, its anchors and
 *  its verification; payment_keys.c: the key files, signing and card
 *  fingerprints; payment_check.c: the check of the books). Not for
 *  callers outside storage/payments/ (the tests read it for the layout
 *  they tamper with).
 *
 *  The environment data_dir/payments holds these databases (names in
 *  payment_store_names, in this order):
 *    payments        id -> payment record (below)
 *    by_order        order_id -> id                     (one payment per order)
 *    by_status       status(1 byte) id -> ""            (lists by status, pending)
 *    refunds         key -> refund record
 *    log             seq(8, big-endian) -> entry record
 *    log_by_payment  payment_id \0 seq(8, big-endian) -> ""
 *    anchors         seq(8, big-endian) -> anchor record
 *    outbox          the service's events (storage/outbox.h)
 *    outbox_meta     their counter and the relay's mark
 *    to_tell         payment id -> order id: refunded in full, its order not
 *                    told yet (payment_store_to_tell)
 *    refunds_pending refund key -> "": begun and not ended
 *                    (payment_store_refunds_pending)
 *  Big-endian numbers sort bytewise in numeric order, so the log's last key
 *  is its head and an index walk is oldest first.
 *
 *  Records are msgpack maps written and read by the record codec
 *  (storage/record.h); the LMDB key is not repeated in them:
 *    payment: "order_id", "status" (a name), "amount_cents",
 *             "authorized_cents", "captured_cents", "refunded_cents",
 *             "refunding_cents", "currency", "brand", "last4", "exp_month",
 *             "exp_year", "fingerprint", "auth_id", "capture_id",
 *             "failure", "attempt", "created_at", "updated_at"
 *    refund:  "payment_id", "amount_cents", "state" ("pending", "done",
 *             "failed"), "refund_id", "created_at"
 *    entry:   "type" (a name), "payment_id", "order_id", "amount_cents",
 *             "currency", "at", "details" (a map, kept verbatim),
 *             "prev_hash", "hash" (bin, 32 bytes each)
 *    anchor:  "hash" (bin 32), "sig" (bin 64: Ed25519 over seq(8,
 *             big-endian) followed by hash), "at"
 *
 *  Ids: a payment id is store_new_id('p') (storage/ids.h): "p", 12 hex
 *  digits of its creation time in ms, 8 more; created_at is that time, so
 *  a time range is a range of ids and a list walks the ids backwards.
 */
#ifndef RETAIL_PAYMENT_STORE_IMPL_H
#define RETAIL_PAYMENT_STORE_IMPL_H

#include "storage/kv.h"
#include "storage/payments/payment_store.h"
#include "storage/reader.h"

#include <lmdb.h>
#include <sodium.h>

#define PAYMENT_STORE_DBS 11
extern const char *const payment_store_names[PAYMENT_STORE_DBS];

enum {
    PAYMENT_DB_PAYMENTS,
    PAYMENT_DB_BY_ORDER,
    PAYMENT_DB_BY_STATUS,
    PAYMENT_DB_REFUNDS,
    PAYMENT_DB_LOG,
    PAYMENT_DB_LOG_BY_PAYMENT,
    PAYMENT_DB_ANCHORS,
    PAYMENT_DB_OUTBOX,
    PAYMENT_DB_OUTBOX_META,
    PAYMENT_DB_TO_TELL,
    PAYMENT_DB_REFUNDS_PENDING,
};

#define PAYMENT_HASH_BYTES 32
/* log_by_payment keys: payment_id \0 seq. */
#define PAYMENT_INDEX_KEY_MAX (PAYMENT_ID_MAX + 1 + 8)

/* The keys of payment_keys.c, loaded once at open and only read after. */
typedef struct {
    uint8_t sign_pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sign_sk[crypto_sign_SECRETKEYBYTES];
    uint8_t card_key[crypto_generichash_KEYBYTES];
} payment_keys_t;

struct payment_store_shared_t {
    kv_t *kv;
    MDB_dbi dbi[PAYMENT_STORE_DBS];
    payment_keys_t keys;
    outbox_t *outbox; /* borrowed (payment_store_shared_set_outbox); NULL: no events */
};

struct payment_store_t {
    payment_store_shared_t *shared;
    store_reader_t reader; /* reset between calls, renewed at the start of one */
};

/* ---- payment_keys.c ---- */

/* Loads the keys of keys_dir into keys, making the files that are missing
 * (0600); 0, or -1 with a reason in err. */
int payment_keys_load(const char *keys_dir, payment_keys_t *keys, char *err, size_t errlen);
/* The Ed25519 signature of a head: over seq (8 bytes, big-endian) and
 * hash. 0, or -1. */
int payment_keys_sign_head(const payment_keys_t *keys, uint64_t seq,
                           const uint8_t hash[PAYMENT_HASH_BYTES], uint8_t sig[crypto_sign_BYTES]);
bool payment_keys_head_ok(const payment_keys_t *keys, uint64_t seq,
                          const uint8_t hash[PAYMENT_HASH_BYTES],
                          const uint8_t sig[crypto_sign_BYTES]);

/* ---- payment_store.c, for payment_log.c ---- */

/* Logs what failed with LMDB's message; returns STORE_ERROR, or
 * STORE_NO_SPACE (not logged) when rc says there was no room. */
store_status_t payment_fail(const char *what, int rc);
void payment_be64_put(uint8_t out[8], uint64_t v);
uint64_t payment_be64_get(const uint8_t in[8]);
/* Reads and decodes payment id within txn (NOT_FOUND, or ERROR logged). */
store_status_t payment_read(const payment_store_shared_t *shared, MDB_txn *txn, const char *id,
                            payment_t *out);

/* ---- payment_log.c, for payment_store.c ---- */

/* Appends the entry of `type` for payment p (its id, order and currency)
 * within txn: the next seq and prev_hash read here, the hash computed,
 * the payment's index key put, and an anchor signed when seq is a
 * multiple of PAYMENT_LOG_ANCHOR_EVERY. details: one msgpack map. */
store_status_t payment_log_append(const payment_store_shared_t *shared, MDB_txn *txn,
                                  log_type_t type, const payment_t *p, int64_t amount_cents,
                                  const uint8_t *details, size_t details_len);

/* payment_log_verify within txn (a snapshot the caller holds). */
store_status_t payment_log_verify_txn(const payment_store_shared_t *shared, MDB_txn *txn,
                                      const char *expected_head, log_verify_t *out);

/* payment_log_each of one payment's entries (oldest first) within txn. */
store_status_t payment_log_each_txn(const payment_store_shared_t *shared, MDB_txn *txn,
                                    const char *payment_id, log_entry_fn *fn, void *arg);

/* Signs the head within txn unless the newest anchor already holds it
 * (or the log is empty). */
store_status_t payment_log_anchor_txn(const payment_store_shared_t *shared, MDB_txn *txn);

/* The hash of an entry as payment_store.h defines it. -1 when out of
 * memory. */
int payment_log_hash(uint64_t seq, log_type_t type, const char *payment_id, const char *order_id,
                     int64_t amount_cents, const char *currency, int64_t at_ms,
                     const uint8_t *details, size_t details_len,
                     const uint8_t prev[PAYMENT_HASH_BYTES], uint8_t out[PAYMENT_HASH_BYTES]);

#endif

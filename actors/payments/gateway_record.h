/*  gateway_record.h - the simulated gateway's own durable record: what it
 *  did under each idempotency key, and the money of each authorization,
 *  capture and refund, in its own LMDB environment (data_dir/gateway-sim),
 *  apart from the payments service's data.
 *
 *  Four databases, each keyed by a string without its terminator:
 *
 *    "keys"      idempotency key -> gateway_key_record_t: the operation,
 *                the arguments that must match on a replay (amounts and
 *                ids, never card data) and the result answered
 *    "auths"     auth_id    -> gateway_auth_record_t
 *    "captures"  capture_id -> gateway_capture_record_t
 *    "refunds"   refund_id  -> gateway_refund_record_t
 *
 *  The money records are what the gateway's rules are checked against
 *  (capture at most what was authorized and only once, refunds at most
 *  what was captured), so those rules hold across restarts, and what a
 *  test reconciles with the payments service's log after a crash.
 *
 *  Every value is a msgpack map read and written by the record codec
 *  (storage/record.h) through the tables below. A card appears only as
 *  its brand and last four digits: never its number, never its CVC.
 *
 *  Ownership: records are values the caller places; a RAW view (the key
 *  record's result) points into the bytes it was decoded from, for a
 *  record read from LMDB valid while that transaction is open.
 */
#ifndef RETAIL_GATEWAY_RECORD_H
#define RETAIL_GATEWAY_RECORD_H

#include "actors/payments/gateway.h"
#include "protocol/mpout.h"
#include "storage/record.h"

#include <lmdb.h>
#include <stdint.h>

/* The databases, in the order given to kv_open. */
enum { GATEWAY_DB_KEYS, GATEWAY_DB_AUTHS, GATEWAY_DB_CAPTURES, GATEWAY_DB_REFUNDS, GATEWAY_DBS };
extern const char *const gateway_db_names[GATEWAY_DBS];

/* The operations that change something, as their wire names. */
typedef enum {
    GATEWAY_OP_AUTHORIZE,
    GATEWAY_OP_CAPTURE,
    GATEWAY_OP_VOID,
    GATEWAY_OP_REFUND,
    GATEWAY_OPS
} gateway_op_t;
extern const char *const gateway_op_names[GATEWAY_OPS];

typedef enum { GATEWAY_AUTH_AUTHORIZED, GATEWAY_AUTH_CAPTURED, GATEWAY_AUTH_VOIDED } gateway_auth_t;

#define GATEWAY_CURRENCY_MAX 3 /* ISO 4217 */
#define GATEWAY_BRAND_MAX 16   /* "visa", "mastercard", "amex", "card" */

/* What was done under one key. The arguments that must be the same on a
 * replay: op, amount_cents (authorize, capture, refund; 0 for void),
 * currency (authorize; "" otherwise) and ref (the auth_id of a capture or
 * void, the capture_id of a refund; "" for authorize). */
typedef struct {
    int op; /* gateway_op_t */
    int64_t amount_cents;
    char currency[GATEWAY_CURRENCY_MAX + 1];
    char ref[GATEWAY_ID_MAX + 1];
    record_view_t result; /* the data answered, one msgpack map */
    int64_t at_ms;        /* when it was done (unix ms) */
} gateway_key_record_t;

typedef struct {
    int status; /* gateway_auth_t */
    int64_t amount_cents;
    char currency[GATEWAY_CURRENCY_MAX + 1];
    int64_t captured_cents;
    char capture_id[GATEWAY_ID_MAX + 1]; /* "" until captured */
    char brand[GATEWAY_BRAND_MAX + 1];
    char last4[5];
    char key[GATEWAY_KEY_MAX + 1]; /* the authorize's */
    int64_t created_ms, updated_ms;
} gateway_auth_record_t;

typedef struct {
    char auth_id[GATEWAY_ID_MAX + 1];
    int64_t amount_cents;
    int64_t refunded_cents;
    char currency[GATEWAY_CURRENCY_MAX + 1];
    int64_t created_ms, updated_ms;
} gateway_capture_record_t;

typedef struct {
    char capture_id[GATEWAY_ID_MAX + 1];
    int64_t amount_cents;
    char currency[GATEWAY_CURRENCY_MAX + 1];
    int64_t created_ms;
} gateway_refund_record_t;

extern const record_table_t gateway_key_table;
extern const record_table_t gateway_auth_table;
extern const record_table_t gateway_capture_table;
extern const record_table_t gateway_refund_table;

/* Reads the record stored under key in dbi into *out (table says which
 * kind; *out is zeroed first): 0, MDB_NOTFOUND, or another LMDB error
 * (MDB_CORRUPTED for a value that does not decode, logged with why).
 * Only 0 leaves *out meaningful. */
int gateway_record_get(MDB_txn *txn, MDB_dbi dbi, const char *key, const record_table_t *table,
                       void *out, size_t out_size);

/* Encodes record through table into scratch (cleared first) and puts it
 * under key with flags (MDB_NOOVERWRITE for a new id): 0, or the LMDB
 * error (MDB_KEYEXIST when flags refused it; ENOMEM when it cannot be
 * encoded). */
int gateway_record_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const record_table_t *table,
                       const void *record, unsigned flags, mpout_t *scratch);

#endif

/*  gateway_record.c - the simulated gateway's records and their tables
 *  (gateway_record.h).
 *
 *  Every field is required: each record ever written has all of them, and
 *  a value that lacks one is damage, not an older version. A field added
 *  later would be optional, so that older directories still load.
 */
#include "actors/payments/gateway_record.h"

#include <czmq.h>
#include <errno.h>
#include <string.h>

const char *const gateway_db_names[GATEWAY_DBS] = {"keys", "auths", "captures", "refunds"};

const char *const gateway_op_names[GATEWAY_OPS] = {"authorize", "capture", "void", "refund"};

static const char *const s_auth_status_names[] = {"authorized", "captured", "voided"};

static const record_field_t s_key_fields[] = {
    RECORD_ENUM_FIELD(gateway_key_record_t, op, "op", gateway_op_names, GATEWAY_OPS,
                      RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_key_record_t, amount_cents, "amount_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_key_record_t, currency, "currency", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_key_record_t, ref, "ref", RECORD_REQUIRED),
    RECORD_RAW_FIELD(gateway_key_record_t, result, "result", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_key_record_t, at_ms, "at", RECORD_REQUIRED),
};
const record_table_t gateway_key_table = RECORD_TABLE(s_key_fields);

static const record_field_t s_auth_fields[] = {
    RECORD_ENUM_FIELD(gateway_auth_record_t, status, "status", s_auth_status_names, 3,
                      RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_auth_record_t, amount_cents, "amount_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_auth_record_t, currency, "currency", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_auth_record_t, captured_cents, "captured_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_auth_record_t, capture_id, "capture_id", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_auth_record_t, brand, "brand", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_auth_record_t, last4, "last4", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_auth_record_t, key, "key", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_auth_record_t, created_ms, "created_at", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_auth_record_t, updated_ms, "updated_at", RECORD_REQUIRED),
};
const record_table_t gateway_auth_table = RECORD_TABLE(s_auth_fields);

static const record_field_t s_capture_fields[] = {
    RECORD_STR_FIELD(gateway_capture_record_t, auth_id, "auth_id", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_capture_record_t, amount_cents, "amount_cents", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_capture_record_t, refunded_cents, "refunded_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_capture_record_t, currency, "currency", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_capture_record_t, created_ms, "created_at", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_capture_record_t, updated_ms, "updated_at", RECORD_REQUIRED),
};
const record_table_t gateway_capture_table = RECORD_TABLE(s_capture_fields);

static const record_field_t s_refund_fields[] = {
    RECORD_STR_FIELD(gateway_refund_record_t, capture_id, "capture_id", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_refund_record_t, amount_cents, "amount_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(gateway_refund_record_t, currency, "currency", RECORD_REQUIRED),
    RECORD_INT64_FIELD(gateway_refund_record_t, created_ms, "created_at", RECORD_REQUIRED),
};
const record_table_t gateway_refund_table = RECORD_TABLE(s_refund_fields);

static MDB_val s_val(const char *s)
{
    return (MDB_val){.mv_size = strlen(s), .mv_data = (void *)s};
}

int gateway_record_get(MDB_txn *txn, MDB_dbi dbi, const char *key, const record_table_t *table,
                       void *out, size_t out_size)
{
    memset(out, 0, out_size);
    MDB_val k = s_val(key), v;
    int rc = mdb_get(txn, dbi, &k, &v);
    if (rc != 0)
        return rc;
    record_status_t status = record_decode(table, v.mv_data, v.mv_size, out);
    if (status != RECORD_OK) {
        /* The key is an id or an idempotency key: no card data to keep
         * out of the log. */
        zsys_error("gateway: the record of %s does not decode: %s", key, record_strerror(status));
        return MDB_CORRUPTED;
    }
    return 0;
}

int gateway_record_put(MDB_txn *txn, MDB_dbi dbi, const char *key, const record_table_t *table,
                       const void *record, unsigned flags, mpout_t *scratch)
{
    if (record_pack(table, record, scratch) != 0)
        return ENOMEM;
    MDB_val k = s_val(key);
    MDB_val v = {.mv_size = scratch->buf.size, .mv_data = scratch->buf.data};
    return mdb_put(txn, dbi, &k, &v, flags);
}

/*  payment_check.c - the check of the payment store's books
 *  (payment_store_check, payment_store.h), for the service's ops.check
 *  and `retailctl check`.
 *
 *  Why a check beside log.verify: verify stops at the first problem and
 *  names an entry; an operator looking at damage wants every payment that
 *  is wrong, by id and by kind ("status", "log_sums"...), and the totals
 *  to reconcile with the orders service's. So this walks every payment
 *  and reports each problem through a callback, and runs the log's own
 *  verification too, all in ONE read transaction: the handle's reader,
 *  one snapshot, so a payment written halfway through the walk cannot
 *  make a payment and its entries disagree, and the check writes nothing.
 *
 *  Per payment (its record decoded; one that does not decode is a
 *  "record" problem and is not looked at further):
 *    amounts   0 <= refunded <= captured <= amount, authorized <= amount
 *    status    the status agrees with the amounts (payment_store.h)
 *    log_sums  authorized, captured and refunded equal the sums of its
 *              authorize, capture and refund entries (through its index)
 *    index     by_order maps its order to it; by_status holds it under
 *              its status
 *  and then "log": payment_log_verify_txn in the same snapshot.
 *
 *  Cost: one pass over the payments, one index walk per payment (its few
 *  entries), one verify: linear in the store, constant in memory.
 */
#include "storage/payments/payment_store_impl.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

typedef struct {
    const payment_store_shared_t *shared;
    MDB_txn *txn;
    payment_problem_fn *fn;
    void *arg;
    payment_counts_t *counts;
} s_check_t;

static void s_problem(s_check_t *c, const char *check, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void s_problem(s_check_t *c, const char *check, const char *id, const char *fmt, ...)
{
    char message[256];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    c->counts->problems++;
    c->fn(check, id, message, c->arg);
}

/* The sums of one payment's entries. */
typedef struct {
    int64_t authorized, captured, refunded;
} s_sums_t;

static int s_sum_entry(const log_entry_t *e, void *arg)
{
    s_sums_t *sums = arg;
    switch (e->type) {
    case LOG_AUTHORIZE:
        sums->authorized += e->amount_cents;
        break;
    case LOG_CAPTURE:
        sums->captured += e->amount_cents;
        break;
    case LOG_REFUND:
        sums->refunded += e->amount_cents;
        break;
    case LOG_VOID:
    case LOG_FAIL: /* a failed refund moved nothing */
        break;
    }
    return 0;
}

/* The status agrees with the amounts: NULL, or what is wrong. */
static const char *s_status_problem(const payment_t *p)
{
    switch (p->status) {
    case PAYMENT_PENDING:
        return p->authorized_cents || p->captured_cents || p->refunded_cents
                   ? "is pending but has money authorized, captured or refunded"
                   : NULL;
    case PAYMENT_AUTHORIZED:
        return p->authorized_cents <= 0 || p->captured_cents || p->refunded_cents
                   ? "is authorized but has nothing authorized, or money captured"
                   : NULL;
    case PAYMENT_CAPTURED:
        return p->captured_cents != p->amount_cents || p->refunded_cents
                   ? "is captured but did not capture its amount, or has refunds"
                   : NULL;
    case PAYMENT_PARTIALLY_REFUNDED:
        return p->captured_cents != p->amount_cents || p->refunded_cents <= 0 ||
                       p->refunded_cents >= p->captured_cents
                   ? "is partially refunded but its refunds are none or all of the capture"
                   : NULL;
    case PAYMENT_REFUNDED:
        return p->captured_cents != p->amount_cents || p->refunded_cents != p->captured_cents
                   ? "is refunded but its refunds are not all of the capture"
                   : NULL;
    case PAYMENT_FAILED:
    case PAYMENT_VOIDED:
        return p->captured_cents || p->refunded_cents ? "ended without money but has some captured"
                                                      : NULL;
    }
    return "has an unknown status";
}

/* by_order and by_status of p. -1 when LMDB fails. */
static int s_check_index(s_check_t *c, const payment_t *p)
{
    MDB_val key = {strlen(p->order_id), (void *)p->order_id}, val;
    int rc = mdb_get(c->txn, c->shared->dbi[PAYMENT_DB_BY_ORDER], &key, &val);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        payment_fail("check: mdb_get by_order", rc);
        return -1;
    }
    if (rc == MDB_NOTFOUND)
        s_problem(c, "index", p->id, "its order %s has no payment in by_order", p->order_id);
    else if (val.mv_size != strlen(p->id) || memcmp(val.mv_data, p->id, val.mv_size) != 0)
        s_problem(c, "index", p->id, "by_order maps its order %s to another payment", p->order_id);
    uint8_t status_key[1 + PAYMENT_ID_MAX];
    size_t id_len = strlen(p->id);
    status_key[0] = (uint8_t)p->status;
    memcpy(status_key + 1, p->id, id_len);
    key = (MDB_val){1 + id_len, status_key};
    rc = mdb_get(c->txn, c->shared->dbi[PAYMENT_DB_BY_STATUS], &key, &val);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        payment_fail("check: mdb_get by_status", rc);
        return -1;
    }
    if (rc == MDB_NOTFOUND)
        s_problem(c, "index", p->id, "by_status does not list it as %s",
                  payment_status_name(p->status));
    return 0;
}

/* Every check of one payment. -1 when the store cannot be read. */
static int s_check_payment(s_check_t *c, const payment_t *p)
{
    payment_counts_t *counts = c->counts;
    counts->payments++;
    if ((unsigned)p->status < PAYMENT_STATUS_COUNT)
        counts->by_status[p->status]++;
    counts->captured_cents += p->captured_cents;
    counts->refunded_cents += p->refunded_cents;
    if (p->refunded_cents < 0 || p->captured_cents < p->refunded_cents ||
        p->amount_cents < p->captured_cents || p->authorized_cents < 0 ||
        p->authorized_cents > p->amount_cents)
        s_problem(c, "amounts", p->id,
                  "amount %" PRId64 ", authorized %" PRId64 ", captured %" PRId64
                  ", refunded %" PRId64 ": not 0 <= refunded <= captured <= amount",
                  p->amount_cents, p->authorized_cents, p->captured_cents, p->refunded_cents);
    const char *wrong = s_status_problem(p);
    if (wrong)
        s_problem(c, "status", p->id,
                  "%s %s (amount %" PRId64 ", captured %" PRId64 ", refunded %" PRId64 ")",
                  payment_status_name(p->status), wrong, p->amount_cents, p->captured_cents,
                  p->refunded_cents);
    s_sums_t sums = {0};
    if (payment_log_each_txn(c->shared, c->txn, p->id, s_sum_entry, &sums) != STORE_OK)
        s_problem(c, "log_sums", p->id, "its log entries cannot be read");
    else if (sums.authorized != p->authorized_cents || sums.captured != p->captured_cents ||
             sums.refunded != p->refunded_cents)
        s_problem(c, "log_sums", p->id,
                  "stores authorized %" PRId64 ", captured %" PRId64 ", refunded %" PRId64
                  "; its log entries sum to %" PRId64 ", %" PRId64 ", %" PRId64,
                  p->authorized_cents, p->captured_cents, p->refunded_cents, sums.authorized,
                  sums.captured, sums.refunded);
    return s_check_index(c, p);
}

/* Every payment, in id order. -1 when the store cannot be read. */
static int s_check_payments(s_check_t *c, payment_t *p)
{
    MDB_cursor *cursor;
    int rc = mdb_cursor_open(c->txn, c->shared->dbi[PAYMENT_DB_PAYMENTS], &cursor);
    if (rc != 0) {
        payment_fail("check: mdb_cursor_open payments", rc);
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
            payment_read(c->shared, c->txn, id, p) != STORE_OK) {
            c->counts->payments++;
            s_problem(c, "record", id, "the stored payment does not decode");
            continue;
        }
        result = s_check_payment(c, p);
    }
    if (result == 0 && rc != MDB_NOTFOUND) {
        payment_fail("check: payments", rc);
        result = -1;
    }
    mdb_cursor_close(cursor);
    return result;
}

store_status_t payment_store_check(payment_store_t *self, payment_problem_fn *fn, void *arg,
                                   payment_counts_t *counts)
{
    if (!self || !fn || !counts)
        return STORE_ERROR;
    memset(counts, 0, sizeof *counts);
    payment_t *p = malloc(sizeof *p);
    log_verify_t *v = malloc(sizeof *v);
    store_status_t status = STORE_ERROR;
    s_check_t c = {.shared = self->shared, .fn = fn, .arg = arg, .counts = counts};
    MDB_txn *txn = NULL;
    if (!p || !v)
        goto cleanup;
    txn = store_reader_begin(&self->reader);
    if (!txn)
        goto cleanup;
    c.txn = txn;
    if (s_check_payments(&c, p) != 0)
        goto cleanup;
    if (payment_log_verify_txn(self->shared, txn, NULL, v) != STORE_OK)
        goto cleanup;
    counts->log_entries = v->entries;
    if (!v->ok)
        s_problem(&c, "log", "", "%s", v->problem);
    MDB_stat st;
    if (mdb_stat(txn, self->shared->dbi[PAYMENT_DB_REFUNDS_PENDING], &st) != 0)
        goto cleanup;
    counts->refunds_pending = (int64_t)st.ms_entries;
    if (mdb_stat(txn, self->shared->dbi[PAYMENT_DB_TO_TELL], &st) != 0)
        goto cleanup;
    counts->to_tell = (int64_t)st.ms_entries;
    status = STORE_OK;
cleanup:
    if (txn)
        store_reader_end(&self->reader);
    free(v);
    free(p);
    if (status != STORE_OK) {
        int64_t problems = counts->problems;
        memset(counts, 0, sizeof *counts);
        counts->problems = problems;
    }
    return status;
}

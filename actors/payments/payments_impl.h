/*  payments_impl.h - what the payments service's files share (payments.c,
 *  charge.c, refund.c, service.c). Not for use outside actors/payments/.
 */
#ifndef RETAIL_PAYMENTS_IMPL_H
#define RETAIL_PAYMENTS_IMPL_H

#include "actors/payments/gateway.h"
#include "actors/payments/settings.h"
#include "actors/worker.h"
#include "protocol/auth.h"
#include "storage/payments/payment_store.h"

#include <pthread.h>

/* Made once per process (service.c): the store's environment and keys,
 * where the gateway listens, and the settings. */
typedef struct {
    payment_store_shared_t *store;
    outbox_t *outbox; /* the service's events, in the store's environment */
    char gateway_endpoint[CALL_ENDPOINT_MAX + 1];
    char public_pem[1100]; /* the users service's token key */
    payments_settings_t settings;
    /* The orders whose charge (or settle) runs in this process, and until
     * when its budget lasts (payments_running_begin); every worker's. */
    pthread_mutex_t running_lock;
    zhashx_t *running; /* order id -> payments_running_t */
} payments_shared_t;

typedef struct {
    int count;        /* requests of the order running now */
    int64_t until_ms; /* zclock_mono: the latest end of their budgets */
} payments_running_t;

/* One per worker. */
typedef struct {
    payments_shared_t *shared;
    payment_store_t *store;
    auth_verifier_t *verifier;
    payment_t page[100];
} payments_state_t;

/* True when the caller may move money or read payments: the orders
 * service, or a valid admin token; otherwise answers forbidden (or what
 * the token's check said) and returns false. */
bool payments_caller_allowed(payments_state_t *self, call_t *call);
/* The same, and scope gets who it is: "orders", or "user:<id>" for an
 * admin (an idempotency key is the caller's own). */
bool payments_caller_allowed_as(payments_state_t *self, call_t *call, char *scope,
                                size_t scope_size);

/* The operator's tool: the caller `retailctl` (its certificate) without
 * a token reads as an admin (payment.list, payment.by_order, log.verify,
 * ops.check); with a token, the token decides. Otherwise as
 * payments_caller_allowed. */
bool payments_reader_allowed(payments_state_t *self, call_t *call);

/* Notes that a request of order_id runs in this process until until_ms
 * (zclock_mono). exclusive: only if no other runs now. 0 noted (end it
 * with payments_running_end), 1 another runs (exclusive only), -1 out of
 * memory. A request that is never ended stops counting at until_ms. */
int payments_running_begin(payments_shared_t *shared, const char *order_id, int64_t until_ms,
                           bool exclusive);
void payments_running_end(payments_shared_t *shared, const char *order_id);

/* Packs the contract's payment object. */
void payments_pack_payment(msgpack_packer *pk, const payment_t *p);

/* Answers an error for a store status that is not STORE_OK, with what as
 * the thing's name in not-found messages. */
void payments_fail_store(call_t *call, store_status_t status, const char *what);

/* How long is left of a request that started at started_ms within the
 * service's budget; never under 1. */
int payments_budget_left(const payments_state_t *self, int64_t started_ms);

/* The ask timeout of one gateway call, within what is left. */
int payments_ask_timeout(const payments_state_t *self, int64_t started_ms);

void *payments_state_new(void *shared);
void payments_state_destroy(void **state);
const worker_op_t *payments_ops(bool with_test_ops);

void payments_charge(call_t *call, void *state);
void payments_void(call_t *call, void *state);
void payments_refund(call_t *call, void *state);
/* refund.recover {key} (the caller payments: its follow-up): a refund a
 * gone request left pending, past its budget, taken over as its key
 * asked again would (refund.c). */
void payments_refund_recover(call_t *call, void *state);
void payments_settle(call_t *call, void *state);

#endif

/*  orders_impl.h - what the orders service's files share (service.c: the
 *  definition, its state and dispatch table; cart.c: the cart ops;
 *  checkout.c: the saga; saga.c: its steps, shared by checkout and
 *  recovery; order_ops.c: history, cancel, status, check; order_view.c:
 *  an order as the API shows it; recovery.c: the background actor).
 *  Not for use outside actors/orders/.
 */
#ifndef RETAIL_ORDERS_IMPL_H
#define RETAIL_ORDERS_IMPL_H

#include "actors/orders/settings.h"
#include "actors/worker.h"
#include "protocol/auth.h"
#include "storage/orders/cart_store.h"
#include "storage/orders/order_store.h"

/* How long a read of the catalog may take before the op answers
 * unavailable. */
#define ORDERS_CATALOG_TIMEOUT_MS 2000
/* How long one stock op may take (reserve, release, commit). */
#define ORDERS_STOCK_TIMEOUT_MS 2000
/* How long a charge may take: the payments budget (4000) and a margin. */
#define ORDERS_CHARGE_TIMEOUT_MS 6000

/* Made once per process (service.c): the environment and its stores,
 * the settings, where the token key is, and this process's instance (a
 * random prefix of every lease it gives, so that recovery knows a lease
 * of a process that is gone). */
typedef struct {
    kv_t *env;
    cart_store_shared_t *carts;
    order_store_shared_t *orders;
    outbox_t *outbox; /* the service's events, in env (storage/outbox.h) */
    orders_settings_t settings;
    char public_pem[1100];
    char instance[9];
    int crash_at;            /* an order_step_t (STEP_COUNT: after paid), or -1 */
    char crash_marker[1100]; /* made when the crash hook fires, so it fires once */
    bool test_ops;
} orders_shared_t;

/* One per worker. */
typedef struct {
    orders_shared_t *shared;
    cart_store_t *carts;
    order_store_t *orders;
    auth_verifier_t *verifier;
    order_t *scratch; /* a read's order (heap: ~40 KB) */
} orders_state_t;

void orders_cart_get(call_t *call, void *state);
void orders_cart_set_item(call_t *call, void *state);
void orders_cart_remove_item(call_t *call, void *state);
void orders_cart_clear(call_t *call, void *state);

void orders_order_create(call_t *call, void *state);
void orders_cart_checkout(call_t *call, void *state);
void orders_order_recover(call_t *call, void *state);
void orders_order_get(call_t *call, void *state);
void orders_order_list(call_t *call, void *state);
void orders_order_cancel(call_t *call, void *state);
void orders_order_set_status(call_t *call, void *state);
void orders_order_payment_refunded(call_t *call, void *state);
void orders_ops_check(call_t *call, void *state);

/* ---- the saga (saga.c) ---- */

/* What lives from a saga's first handler to its last resume. */
typedef struct {
    order_t order;       /* as last written */
    order_write_t write; /* the write out now (call_write) */
    char lease[ORDER_LEASE_MAX + 1];
    bool recovering; /* driven by recovery, not by the client's request */
    bool from_cart;  /* cart.checkout: empty the cart when paid */
    bool has_card;
    int tries;
    char user[AUTH_SUB_MAX + 1];
    bool admin;
} saga_t;

/* Makes a new lease (instance + random) into out. */
void saga_new_lease(const orders_shared_t *shared, char out[ORDER_LEASE_MAX + 1]);
/* True when lease belongs to this process's instance. */
bool saga_lease_is_ours(const orders_shared_t *shared, const char *lease);

/* Starts the saga at the step its order's journal says is next (checkout
 * after writing the order: reserve; recovery: wherever it stopped). It
 * answers the call in the end, the final write made. */
void saga_drive(call_t *call, orders_state_t *self, saga_t *saga);

/* Honours the crash hook: SIGKILLs the process when step is crash_at,
 * the first time in a data directory (RETAIL_TEST_OPS=1 only). */
void saga_crash_point(const orders_shared_t *shared, int step);

/* ---- the order as the API shows it (order_view.c) ---- */

/* Packs {id, user_id, items, total_cents, currency, status,
 * status_history, payment, shipping_address, created_at, updated_at}. */
int order_view_pack(msgpack_packer *pk, const order_t *order);
/* Answers the call {order} (API.md's `{order}`). */
void order_view_reply(call_t *call, const order_t *order);
/* The same answer's data into out (cleared first): the body stored with
 * a key, replayed as it is. */
int order_view_bytes(const order_t *order, mpout_t *out);

/* The caller's token: its user and whether it is an admin; false after
 * answering unauthenticated. */
bool orders_caller(call_t *call, orders_state_t *self, char user[AUTH_SUB_MAX + 1], bool *admin);
/* Answers a store failure. */
void orders_fail_store(call_t *call, order_store_status_t status);

#endif

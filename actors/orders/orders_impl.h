/*  orders_impl.h - what the orders service's files share (service.c:
 *  the definition, its state and dispatch table; cart.c: the cart ops).
 *  Not for use outside actors/orders/.
 */
#ifndef RETAIL_ORDERS_IMPL_H
#define RETAIL_ORDERS_IMPL_H

#include "actors/worker.h"
#include "protocol/auth.h"
#include "storage/orders/cart_store.h"

/* How long a read of the catalog may take before the cart op answers
 * unavailable. */
#define ORDERS_CATALOG_TIMEOUT_MS 2000

/* Made once per process (service.c): the store's environment and where
 * the users service's token key is. */
typedef struct {
    cart_store_shared_t *carts;
    char public_pem[1100];
} orders_shared_t;

/* One per worker. */
typedef struct {
    orders_shared_t *shared;
    cart_store_t *carts;
    auth_verifier_t *verifier;
} orders_state_t;

void orders_cart_get(call_t *call, void *state);
void orders_cart_set_item(call_t *call, void *state);
void orders_cart_remove_item(call_t *call, void *state);
void orders_cart_clear(call_t *call, void *state);

#endif

/*  orders.h - the `orders` service: each user's cart now; checkout and
 *  orders come next (issue 12: the checkout saga, its recovery,
 *  idempotency keys, history), in this service, beside the cart they
 *  start from.
 *
 *  Ops (protocol/SPEC.md, section 7, `orders`, has arguments and results):
 *    cart.get cart.set_item cart.remove_item cart.clear
 *  Each acts on the caller's own cart: the user of the access token
 *  (a customer's or an admin's), never one named in the arguments.
 *
 *  A cart is shown with the catalog's current names and prices, read in
 *  one product.get_many per cart (never one call per line), asked without
 *  blocking the worker (call_ask): a slow catalog costs held requests, not
 *  workers. A product the catalog no longer has is dropped from the cart
 *  as it is shown. The store (storage/orders/cart_store.h) keeps the lines
 *  and their currency in the service's own LMDB environment.
 */
#ifndef RETAIL_ORDERS_H
#define RETAIL_ORDERS_H

#include "actors/service.h"

extern const service_def_t orders_service;

#endif

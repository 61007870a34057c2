/*  orders_env.h - the orders service's one LMDB environment
 *  (data_dir/orders) and the names of its databases.
 *
 *  The cart store and the order store keep their records side by side in
 *  this one environment, so that a checkout can write an order, its
 *  idempotency key and (later) the emptied cart in one transaction. Each
 *  store is handed the kv_t and takes the databases it knows by the
 *  indexes below; neither owns the environment: whoever opened it closes
 *  it after both.
 *
 *  Databases:
 *    carts         user_id -> cart record (cart_store.h)
 *    orders        order id -> order record (order_store.h)
 *    by_user       user_id \0 order id -> ""   (a user's orders)
 *    todo          order id -> ""   (orders that recovery must drive on)
 *    idem          key hash (32 bytes) -> idempotency record
 *    idem_by_time  created (8, BE) key hash -> ""   (for the 24-hour sweep)
 *    meta          "fingerprint-key" -> 32 random bytes
 *    outbox        the service's events (storage/outbox.h: OUTBOX_DB_EVENTS)
 *    outbox_meta   their counter and the relay's mark (OUTBOX_DB_META)
 *  Databases are opened by name, so an environment made before the
 *  outbox opens with the two created empty.
 */
#ifndef RETAIL_ORDERS_ENV_H
#define RETAIL_ORDERS_ENV_H

#include "storage/kv.h"
#include "storage/outbox.h"

enum {
    ORDERS_DB_CARTS,
    ORDERS_DB_ORDERS,
    ORDERS_DB_BY_USER,
    ORDERS_DB_TODO,
    ORDERS_DB_IDEM,
    ORDERS_DB_IDEM_BY_TIME,
    ORDERS_DB_META,
    ORDERS_DB_OUTBOX,
    ORDERS_DB_OUTBOX_META,
    ORDERS_DB_COUNT
};

/* Opens (creating) data_dir/orders with every database above. NULL with
 * a reason in err. The caller closes it with kv_close. */
kv_t *orders_env_open(const char *data_dir, char *err, size_t errlen);

#endif

/*  orders_env.c - opens the orders environment (orders_env.h).
 *
 *  The map is address space, not disk: 4 GiB holds a few million orders
 *  of a few lines each.
 */
#include "storage/orders/orders_env.h"

#include <czmq.h>

#define S_MAP_SIZE ((size_t)4 << 30)

static const char *const s_names[ORDERS_DB_COUNT] = {
    [ORDERS_DB_CARTS] = "carts",
    [ORDERS_DB_ORDERS] = "orders",
    [ORDERS_DB_BY_USER] = "by_user",
    [ORDERS_DB_TODO] = "todo",
    [ORDERS_DB_IDEM] = "idem",
    [ORDERS_DB_IDEM_BY_TIME] = "idem_by_time",
    [ORDERS_DB_META] = "meta",
    [ORDERS_DB_OUTBOX] = OUTBOX_DB_EVENTS,
    [ORDERS_DB_OUTBOX_META] = OUTBOX_DB_META,
};

kv_t *orders_env_open(const char *data_dir, char *err, size_t errlen)
{
    if (!data_dir || !*data_dir) {
        snprintf(err, errlen, "orders: no data directory");
        return NULL;
    }
    char *path = zsys_sprintf("%s/orders", data_dir);
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    kv_t *kv = kv_open(path, S_MAP_SIZE, s_names, NULL, ORDERS_DB_COUNT, err, errlen);
    zstr_free(&path);
    return kv;
}

/*  catalog.h - the `catalog` service: products, categories, inventory,
 *  search.
 *
 *  Ops (protocol/SPEC.md has arguments and results):
 *    category.list category.create category.update category.delete
 *    product.get product.get_many product.search product.create product.update
 *    product.delete product.set_stock
 *    stock.reserve stock.release stock.commit   (MDP only: for orders)
 *    stock.reservations ops.check               (MDP only: for checkers)
 *    events.since                               (MDP only: actors/events_since.h)
 *
 *  Reads are open to anyone; writes to categories and products need an
 *  admin access token; the stock ops accept only the orders service (or
 *  callers inside this process). stock.reservations and ops.check (the
 *  books, for `retailctl check` and the orders service's cross-checks)
 *  accept the callers orders and retailctl, or an admin's token. The store
 * (storage/catalog/catalog_store.h) does the indexing; this file checks arguments and maps results
 * to errors.
 */
#ifndef RETAIL_CATALOG_H
#define RETAIL_CATALOG_H

#include "actors/catalog/settings.h"
#include "actors/service.h"
#include "actors/worker.h"

typedef struct catalog_shared_t catalog_shared_t;

/* Workers catalog_service adds to its pool beyond RETAIL_WORKERS: a
 * product or category write waits for the disk in its worker, and those
 * waiting together share one commit. (The stock ops need none of them:
 * they wait without blocking, call_write, up to CATALOG_CAPACITY held
 * by each worker.) */
#define CATALOG_WRITE_WORKERS 4

/* Requests a worker holds at once: the stock ops of orders' checkouts
 * are held while their writes wait for the disk, and every write one
 * worker holds may join one commit. */
#define CATALOG_CAPACITY 64

/* Opens the catalog environment under the process's data_dir/catalog,
 * with the service's outbox in it (service_outbox_new), which every
 * worker's store handle is given with settings->stock_low. NULL on error,
 * with a reason in err. */
catalog_shared_t *catalog_shared_new(const service_env_t *env, const catalog_settings_t *settings,
                                     char *err, size_t errlen);
void catalog_shared_destroy(catalog_shared_t **self_p);
/* The outbox (the service definition's `outbox` hook). */
outbox_t *catalog_shared_outbox(void *shared);

void *catalog_state_new(void *shared);
void catalog_state_destroy(void **state);

const worker_op_t *catalog_ops(bool with_test_ops);

/* The service's definition (service.c): what retaild runs and the bridge
 * routes. */
extern const service_def_t catalog_service;

#endif

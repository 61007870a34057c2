/*  recovery.h - the orders service's background actor: it finds the
 *  orders left mid-saga and has the service's workers drive them on
 *  (orders.h, "Recovery"), and sweeps idempotency keys older than 24
 *  hours.
 */
#ifndef RETAIL_ORDERS_RECOVERY_H
#define RETAIL_ORDERS_RECOVERY_H

#include "actors/service.h"

/* Starts it beside the pool; shared is the service's orders_shared_t.
 * NULL with a reason in err. Stopped with zactor_destroy ($TERM). */
zactor_t *recovery_new(const service_env_t *env, void *shared, char *err, size_t errlen);

#endif

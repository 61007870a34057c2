/*  pool.h - N workers of one service, started and stopped together.
 *
 *  A pool does not know whether its broker is in the same process: the
 *  worker config says where to connect (inproc, or TCP with CURVE).
 */
#ifndef RETAIL_POOL_H
#define RETAIL_POOL_H

#include "actors/worker.h"

typedef struct pool_t pool_t;

/* Starts size workers with the same config. NULL if any fails to start
 * (those started are stopped). */
pool_t *pool_new(const worker_config_t *config, int size);

/* Stops every worker: each finishes its request and says DISCONNECT. */
void pool_destroy(pool_t **self_p);

int pool_size(const pool_t *self);

/* How many times a worker of this pool was restarted (actors/worker.h);
 * safe from any thread. */
uint64_t pool_restarts(const pool_t *self);

#endif

/*  worker.h - an MDP worker as a CZMQ actor, and the dispatch table type.
 *
 *  A worker is one thread with its own DEALER socket to the broker. It
 *  announces its service (READY), answers REQUESTs by calling the handler
 *  for the envelope's op, exchanges heartbeats with the broker, and when
 *  the broker falls silent for MDP_LIVENESS beats it drops the socket and
 *  reconnects with a doubling backoff, so a restarted broker gets its
 *  workers back without restarting them. On $TERM it finishes the request
 *  it is handling (it is single-threaded, so it always has), says
 *  DISCONNECT and stops.
 *
 *  Handlers get a call_t (protocol/call.h) and the worker's own state,
 *  made by state_new in the worker's thread, so no state is shared
 *  between the workers of a pool unless the service shares it on purpose.
 */
#ifndef RETAIL_WORKER_H
#define RETAIL_WORKER_H

#include <czmq.h>

#include "protocol/call.h"

typedef void(worker_handler_fn)(call_t *call, void *state);

typedef struct {
    const char *op;
    worker_handler_fn *handler;
} worker_op_t;

typedef struct {
    const char *service;    /* e.g. "catalog" */
    const worker_op_t *ops; /* ends with {NULL, NULL}; must outlive the worker */
    const char *endpoint;   /* the broker */
    zcert_t *cert;          /* CURVE client cert, or NULL for inproc */
    const char *server_key; /* the broker's public key (Z85) with cert */
    int heartbeat_ms;       /* 0: MDP_HEARTBEAT_MS_DEFAULT */
    int capacity;           /* requests the broker may queue here; 0: 1. Above 1
                               saves a round trip per request, but a slow
                               request delays the ones queued behind it */
    /* Per-worker state, made and destroyed in the worker's thread. */
    void *(*state_new)(void *shared);
    void (*state_destroy)(void **state);
    void *shared; /* passed to state_new; owned by the caller */
    bool verbose;
} worker_config_t;

/* Starts one worker; the config is copied (strings and cert included). */
zactor_t *worker_new(const worker_config_t *config);
void worker_destroy(zactor_t **self_p);

#endif

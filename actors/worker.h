/*  worker.h - an MDP worker as a CZMQ actor, and the dispatch table type.
 *
 *  A worker is one thread with its own DEALER socket to the broker. It
 *  announces its service (READY), answers REQUESTs by calling the handler
 *  for the envelope's op, exchanges heartbeats with the broker, and when
 *  the broker falls silent for MDP_LIVENESS beats it drops the socket and
 *  reconnects with a doubling backoff, so a restarted broker gets its
 *  workers back without restarting them. On $TERM (after the handler it is
 *  in) it says DISCONNECT and stops; see worker.c for what becomes of the
 *  requests it was given but has not started.
 *
 *  A worker that cannot start (its state or its socket) makes worker_new
 *  return NULL. One whose session fails later (see worker.c) is restarted
 *  in place with new state, after a backoff, logged and counted in
 *  config.restarts.
 *
 *  Handlers get a call_t (protocol/call.h) and the worker's own state,
 *  made by state_new in the worker's thread, so no state is shared
 *  between the workers of a pool unless the service shares it on purpose.
 *
 *  Replies that wait. A handler may ask another service (through the
 *  broker) or an outside endpoint for something and return unanswered
 *  (call_ask, call_ask_at in protocol/call.h): the worker holds the
 *  request, serves others meanwhile and keeps beating, and runs the
 *  handler's resume when the answer or the ask's deadline comes, all in
 *  its own thread, so handlers and resumes never need a lock for the
 *  worker's state. Up to `capacity` requests are held at once, and the
 *  broker gives no more (READY's credit); their replies leave in whatever
 *  order they finish, each tagged with the request it answers
 *  (protocol/SPEC.md, "Held requests"). A worker that waits should have a
 *  capacity of the requests it may wait on together (hundreds are fine:
 *  a held request costs its body, a decoded envelope and a call_t); a
 *  worker that never waits gains little above a few, since its requests
 *  then wait for the disk or the CPU behind each other. A durable write
 *  is such a wait too (call_write): the worker serves others while the
 *  environment's committer puts the write on disk, so the writes of all
 *  the requests it holds can share one commit.
 */
#ifndef RETAIL_WORKER_H
#define RETAIL_WORKER_H

#include <czmq.h>
#include <stdatomic.h>

#include "protocol/call.h"

typedef void(worker_handler_fn)(call_t *call, void *state);

/* Distinct outside endpoints one worker may ask (call_ask_at). */
#define WORKER_ENDPOINTS_MAX 4

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
    int capacity;           /* requests the worker may hold at once (waiting on
                               asks, or queued behind the one it runs);
                               0: 1; at most MDP_CAPACITY_MAX. Above 1 saves
                               a round trip per request, but a slow request
                               delays the ones queued behind it */
    /* Per-worker state, made and destroyed in the worker's thread. */
    void *(*state_new)(void *shared);
    void (*state_destroy)(void **state);
    void *shared; /* passed to state_new; owned by the caller */
    /* Counts restarts (optional); owned by the caller, who keeps it alive
     * as long as the worker, and may read it from any thread. */
    atomic_uint_fast64_t *restarts;
    bool verbose;
} worker_config_t;

/* Starts one worker; the config is copied (strings and cert included).
 * NULL when it could not start (the reason is logged). */
zactor_t *worker_new(const worker_config_t *config);
void worker_destroy(zactor_t **self_p);

#endif

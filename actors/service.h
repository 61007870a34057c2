/*  service.h - what a service is: one definition, and how it is run.
 *
 *  A service lives in one folder, actors/<name>/, and exports one
 *  definition:
 *
 *      extern const service_def_t users_service;     // actors/users/users.h
 *
 *  that says everything a process needs to run it or route to it: its
 *  name and operations, its routes and its part of the OpenAPI document
 *  (router/api.h assembles those into the bridge's table and
 *  /openapi.json), its own settings, and the hooks that make its state.
 *  actors/services.h lists every definition; nothing else names a service.
 *
 *  service_start() runs one, in this order, and service_stop() undoes it
 *  in the reverse order:
 *      1. its settings: a zeroed struct of settings_size bytes, given the
 *         defaults by settings_defaults, then read from its own ZPL
 *         section retail/<name>/... and RETAIL_<NAME>_* variables by the
 *         rows of `settings` (protocol/settings.h);
 *      2. its shared state (shared_new), made once per process;
 *      3. its relay (actors/relay.h), when it has an outbox: the events
 *         it commits reach the stream from then on;
 *      4. its background actor (background_new), if it has one: timers,
 *         recovery, relays; it runs beside the pool, so it is there before
 *         the first request and outlives the last one;
 *      5. its pool of workers: the configured count plus extra_workers,
 *         each with its own state (state_new, in the worker's thread).
 *  Every hook may be NULL (the service has no such thing).
 *
 *  Usage:
 *      service_env_t env = {.common = &settings, .source = source, ...};
 *      service_t *svc = service_start(&users_service, &env, err, sizeof err);
 *      ...
 *      service_stop(&svc);
 */
#ifndef RETAIL_SERVICE_H
#define RETAIL_SERVICE_H

#include "actors/pool.h"
#include "actors/relay.h"
#include "protocol/settings.h"
#include "router/routes.h"
#include "storage/outbox.h"

/* Where and how a service runs, given to each of its hooks at start. */
typedef struct {
    const settings_t *common;        /* this process's settings */
    const settings_source_t *source; /* where the service's own settings are read */
    const char *broker_endpoint;     /* how this process reaches the broker */
    zcert_t *cert;                   /* CURVE client certificate over TCP; NULL inproc */
    const char *server_key;          /* the broker's public key (Z85) with cert */
    /* Where this process's relays publish (router/events.h, actors/relay.h):
     * EVENTS_INPROC_PUBLISH when the events role runs in this process, else
     * the proxy's publish_tcp, with CURVE: events_cert (the service's own
     * certificate, whose name the proxy checks against each event's source)
     * and the proxy's public key (the broker's, Z85). Both NULL inproc.
     * events_endpoint NULL: no relay (the outbox keeps the events). */
    const char *events_endpoint;
    zcert_t *events_cert;
    const char *events_server_key;
    bool test_ops; /* RETAIL_TEST_OPS=1: the test-only operations too */
    bool verbose;
} service_env_t;

typedef struct {
    const char *name; /* the MDP service name, role name and settings section */
    /* The dispatch table (ends with {NULL, NULL}); static, never freed. */
    const worker_op_t *(*ops)(bool with_test_ops);
    /* Requests a worker may hold at once; 0: the configured worker_capacity. */
    int capacity;

    /* Its HTTP routes (every one to this service), and its part of the
     * OpenAPI document: a JSON object with "paths" and, optionally,
     * "components" that only it uses (router/api.h). */
    const route_t *routes;
    size_t n_routes;
    const char *openapi; /* NUL-terminated JSON text */

    /* Its own settings: rows that fill a struct of settings_size bytes,
     * after settings_defaults (optional) set what an unset row leaves. */
    const setting_t *settings;
    size_t n_settings;
    size_t settings_size;
    void (*settings_defaults)(void *settings);

    /* Process-wide state; settings is the struct above (NULL when the
     * service has none). NULL with a reason in err when it cannot start. */
    void *(*shared_new)(const service_env_t *env, const void *settings, char *err, size_t errlen);
    void (*shared_destroy)(void **shared);
    /* Per-worker state, for worker_config_t (actors/worker.h). */
    void *(*state_new)(void *shared);
    void (*state_destroy)(void **state);
    /* Workers to add to the configured count. */
    int (*extra_workers)(void *shared);
    /* A background actor, started after the shared state and before the
     * pool, stopped after the pool. NULL with a reason in err when it
     * cannot start. background_destroy NULL: zactor_destroy ($TERM, then
     * wait for the actor to end). */
    zactor_t *(*background_new)(const service_env_t *env, const void *settings, void *shared,
                                char *err, size_t errlen);
    void (*background_destroy)(zactor_t **background);
    /* Its outbox (storage/outbox.h), made by shared_new with
     * service_outbox_new and destroyed by shared_destroy; NULL hook or
     * NULL outbox: the service publishes no events. service_start runs a
     * relay (actors/relay.h) for it after the shared state. */
    outbox_t *(*outbox)(void *shared);
} service_def_t;

/* An outbox for a service's environment kv, in its databases at events_db
 * and meta_db (OUTBOX_DB_EVENTS and OUTBOX_DB_META among its kv_open
 * names), with the process's settings for keeping events. For shared_new.
 * NULL with a reason in err. */
outbox_t *service_outbox_new(const service_env_t *env, const char *name, kv_t *kv, int events_db,
                             int meta_db, char *err, size_t errlen);

/* A running service. */
typedef struct service_t service_t;

/* Starts def as above. NULL when a step fails, with the reason (naming
 * the service) in err; what the steps before it made is undone. env is
 * read during the start only (the pool copies what it keeps): a hook that
 * needs a part of it later keeps its own copy. */
service_t *service_start(const service_def_t *def, const service_env_t *env, char *err,
                         size_t errlen);

/* Stops the pool (each worker answers what it holds and says
 * DISCONNECT), then the background actor, then frees the shared state
 * and the settings (zeroed first: they may hold secrets). */
void service_stop(service_t **self_p);

const service_def_t *service_def(const service_t *self);

/* Its outbox and the counts of what its relay published (NULL when it
 * has no outbox, or no relay runs); for /metrics. */
outbox_t *service_outbox(const service_t *self);
relay_stats_t *service_relay_stats(const service_t *self);

/* Its pool (for pool_restarts) and the workers in it. */
const pool_t *service_pool(const service_t *self);
int service_workers(const service_t *self);

#endif

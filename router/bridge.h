/*  bridge.h - the HTTP bridge: REST (API.md section 2) to MDP and back.
 *
 *  One actor owns a libmicrohttpd daemon in external-epoll mode and a
 *  DEALER socket to the broker, and polls both from one zmq_poll loop. A
 *  request is read, turned into a msgpack envelope by the route table
 *  (routes.h), sent to the broker, and its connection suspended; the reply
 *  (matched by the envelope id) resumes it. No thread ever waits on a
 *  service, and thousands of requests in flight cost memory, not threads.
 *
 *  Usage:
 *      bridge_config_t config = {.port = 8080, .broker_endpoint = ..., ...};
 *      zactor_t *bridge = bridge_new(&config);   // NULL: could not listen
 *      ...
 *      bridge_destroy(&bridge);   // stops accepting, lets requests in flight
 *                                 // finish (up to drain_ms), answers the rest 503
 */
#ifndef RETAIL_BRIDGE_H
#define RETAIL_BRIDGE_H

#include <czmq.h>

#include "router/routes.h"

typedef struct {
    const char *bind_address;    /* NULL: 127.0.0.1 */
    int port;                    /* 0: any free port (see bridge_port) */
    const char *broker_endpoint; /* inproc://... or tcp://... */
    zcert_t *cert;               /* CURVE client cert for tcp; NULL for inproc */
    const char *server_key;      /* the broker's public key (Z85) with cert */
    int timeout_ms;              /* per request; 0: 5000 */
    const char *tls_cert_file;   /* PEM; with tls_key_file turns on HTTPS */
    const char *tls_key_file;
    bool access_log; /* one JSON line per request on stdout */
    int drain_ms;    /* at destroy, time left to requests in flight; 0: 2000, <0: none */
    /* More Prometheus text for /metrics (optional): called in the bridge's
     * thread at each scrape with metrics_extra_arg, returns malloc'd text
     * (whole lines) that the bridge frees, or NULL when out of memory. The
     * arg must outlive the bridge. */
    char *(*metrics_extra)(void *arg);
    void *metrics_extra_arg;
    /* The route table; NULL: the API's (api_routes of every service in
     * actors/services.h). Not copied: it must outlive the bridge. Its size
     * decides the bridge's (argument slots, metrics labels, the services
     * /readyz checks): nothing is capped. */
    const route_t *routes;
    size_t n_routes;
    /* The document served at /openapi.json, NUL-terminated; NULL: the
     * API's (api_openapi). Not copied either. */
    const char *openapi;
} bridge_config_t;

/* Starts the bridge; NULL (reason logged) if it cannot listen, read its
 * TLS files, assemble the API (when it serves the API's table or
 * document), or serve every route of its table whole (routes_check). The
 * config and what it points to are copied, but for the route table and
 * the document. */
zactor_t *bridge_new(const bridge_config_t *config);

/* The TCP port the bridge listens on. */
int bridge_port(zactor_t *self);

void bridge_destroy(zactor_t **self_p);

#endif

/*  api.h - the HTTP API assembled: one route table, one OpenAPI document.
 *
 *  Each service brings its routes and its part of the OpenAPI document
 *  (actors/service.h); the bridge brings its own routes (routes_bridge:
 *  /healthz, /readyz, /metrics, /openapi.json) and the base document
 *  (router/openapi.json: info, servers, license, security schemes, the
 *  components that more than one part uses, and the bridge's paths). At
 *  start, api_new() puts them together:
 *    - the table is the bridge's routes, then each service's in the order
 *      given; every route of a service must name that service;
 *    - the document is the base with each part's paths and components
 *      added; a path or a component name that two parts both define is
 *      refused (a part shares what another part defines by "$ref" into
 *      the assembled document, e.g. "#/components/responses/NotFound");
 *      a part may hold nothing but "paths" and "components";
 *    - the base's "x-bridge-responses" lists what the bridge answers
 *      whatever the route (a URL over 8 KiB is 414 on any path): its
 *      "every" responses are added to each operation, its "routed" ones
 *      to each operation of a service, where the operation does not list
 *      that status itself; the key is then dropped.
 *  The bridge serves exactly this text at /openapi.json, and
 *  tests/unit/test_openapi.c checks it against exactly this table.
 *
 *  Usage:
 *      size_t n;
 *      const service_def_t *const *all = services_all(&n);
 *      api_t *api = api_new(all, n, err, sizeof err);   // NULL: err says why
 *      size_t routes; const route_t *table = api_routes(api, &routes);
 *      const char *doc = api_openapi(api, &len);
 *      api_destroy(&api);
 */
#ifndef RETAIL_API_H
#define RETAIL_API_H

#include "actors/service.h"
#include "router/routes.h"

typedef struct api_t api_t;

/* Assembles the bridge's part and services[0..n) (the definitions must
 * outlive the api: the table points into theirs). NULL with the reason in
 * err when a part is not valid JSON, holds more than paths and components,
 * defines what another part defines, or routes to another service. */
api_t *api_new(const service_def_t *const *services, size_t n, char *err, size_t errlen);
void api_destroy(api_t **self_p);

/* The route table; count receives its size. Owned by the api. */
const route_t *api_routes(const api_t *self, size_t *count);

/* The OpenAPI document, JSON text (NUL-terminated); len receives its
 * length. Owned by the api. */
const char *api_openapi(const api_t *self, size_t *len);

#endif

/*  routes.h - the HTTP route table: (method, path template) -> (service, op).
 *
 *  The table is data: each service lists its own routes beside its code
 *  (actors/<service>/service.c), the bridge its own (routes.c), and
 *  router/api.h puts them together; adding a route is one line. Each route
 *  says where the operation's arguments come from:
 *    - path parameters: "{name}" segments of the template, strings;
 *    - query parameters: a list "name:type,..." (type str, int or bool;
 *      str when omitted); unknown query parameters are ignored;
 *    - headers: a list "Header-Name>arg:type,..."; the source "@client_ip"
 *      is the client's network address (for login rate limits);
 *    - the body: when `body` is set, a JSON (or msgpack) object whose
 *      fields become arguments too (path, query and header arguments win).
 *  Routes whose service is NULL are answered by the bridge itself.
 *
 *  Every function takes the table it works on, so that a bridge can be
 *  given another one (tests give it more routes and services than the
 *  API has); routes_check() refuses, at start, a table the matcher or the
 *  bridge could only serve in part, instead of dropping what does not fit.
 */
#ifndef RETAIL_ROUTES_H
#define RETAIL_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#define ROUTE_MAX_PARAMS 4
/* Longest argument source (a header name) in a query or headers list. */
#define ROUTE_SOURCE_MAX 63

typedef enum {
    LOCAL_NONE = 0,
    LOCAL_HEALTHZ,
    LOCAL_READYZ,
    LOCAL_METRICS,
    LOCAL_OPENAPI,
} route_local_t;

typedef struct {
    const char *method;  /* "GET", "POST", ... */
    const char *path;    /* template: "/v1/products/{id}" */
    const char *service; /* NULL: answered by the bridge (see local) */
    const char *op;
    int ok_status;       /* status of a successful reply: 200, 201, 204 */
    const char *query;   /* "q,min_price:int,in_stock:bool" or NULL */
    const char *headers; /* "Idempotency-Key>idempotency_key,If-Match>if_match:int" or NULL */
    bool body;           /* a JSON object body is read into args */
    route_local_t local;
} route_t;

/* A matched route and the path parameters it captured. */
typedef struct {
    int index; /* into the table */
    int n_params;
    const char *param_name[ROUTE_MAX_PARAMS]; /* points into the template */
    size_t param_name_len[ROUTE_MAX_PARAMS];
    const char *param_value[ROUTE_MAX_PARAMS]; /* points into the path */
    size_t param_value_len[ROUTE_MAX_PARAMS];
} route_match_t;

typedef enum { ROUTE_FOUND, ROUTE_NO_PATH, ROUTE_NO_METHOD } route_result_t;

/* The routes the bridge answers itself (/healthz, /readyz, /metrics,
 * /openapi.json), and how many; the API's whole table is api_routes()
 * (router/api.h). */
const route_t *routes_bridge(size_t *count);

/* 0 when the bridge can serve every route of table[0..n) whole: each
 * template starts with '/', has no empty segment and at most
 * ROUTE_MAX_PARAMS "{name}" segments (names not empty); each query and
 * headers entry has a source of 1..ROUTE_SOURCE_MAX characters, a name,
 * and a type of str, int or bool, or none; each route has a method, an op
 * when it has a service, and a local answer when it has none; no method
 * and template come twice. Otherwise -1, with the first problem written
 * into why. */
int routes_check(const route_t *table, size_t n, char *why, size_t why_size);

/* The most arguments one route of the table takes from its path, query
 * and headers together (each entry yields at most one), so that a caller
 * can size its argument array once. */
size_t routes_max_args(const route_t *table, size_t n);

/* Finds the route for method and path (no query string). */
route_result_t routes_match(const route_t *table, size_t n, const char *method, const char *path,
                            route_match_t *match);

/* Writes the methods that path has routes for, as an Allow header value
 * ("GET, HEAD, PATCH"), into out (size bytes, may be 0 with out NULL);
 * returns the length of the whole value, as snprintf does, so a result
 * >= size means out holds only part of it. */
size_t routes_allowed(const route_t *table, size_t n, const char *path, char *out, size_t size);

/* Writes the services the table routes to, each once, into out (at most
 * max; the strings are the table's); returns how many there are in all,
 * which may be more than max. */
size_t routes_services(const route_t *table, size_t n, const char **out, size_t max);

#endif

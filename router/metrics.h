/*  metrics.h - the HTTP bridge's Prometheus metrics (text format 0.0.4).
 *
 *  The bridge calls metrics_request_start() when it accepts a request and
 *  metrics_request_end() when the response has been queued, and serves
 *  metrics_render() on GET /metrics. Exposed:
 *
 *      retail_http_requests_total{route,status}         counter
 *      retail_http_request_duration_seconds{route,le}   histogram
 *      retail_http_requests_in_flight                   gauge
 *      retail_http_errors_total{code}                   counter
 *      retail_process_start_time_seconds                gauge
 *
 *  Then the broker's, from its mmi.services answer at each scrape (so they
 *  are the broker's whether or not it runs in the bridge's process):
 *
 *      retail_broker_up                                 gauge (0: no answer)
 *      retail_broker_workers{service}                   gauge
 *      retail_broker_queue_depth{service}               gauge
 *      retail_broker_held{service}                      gauge
 *      retail_broker_requests_total{service,outcome}    counter (ok,
 *                                                       unavailable, timeout)
 *      retail_broker_workers_lost_total{service}        counter
 *
 *  retaild appends the series of its own pools after these through the
 *  bridge's metrics_extra hook (bridge.h):
 *
 *      retail_worker_restarts_total{service}            counter
 *
 *  Every route of the table gets its own label, however many there are
 *  (metrics_new_for_routes sizes itself from the table); only a request
 *  that matched none counts as route="unmatched".
 *
 *  Only series that have been observed are written (in_flight and
 *  start_time always are), so a scrape stays small. Memory is bounded:
 *  statuses are 100..599 per route, and at most METRICS_MAX_ERROR_CODES
 *  distinct error codes are kept, the rest counted as code="other" (the
 *  bridge only ever passes the names of protocol/errors.h, fewer than
 *  that: bridge.c asserts it at compile time).
 *
 *  Not thread-safe: one thread (the bridge actor) owns a metrics_t.
 *
 *  Usage:
 *      static const char *const routes[] = {"GET /healthz", "GET /metrics"};
 *      metrics_t *m = metrics_new(routes, 2);       // NULL: out of memory
 *      // or, one label "METHOD /path" per route of a table:
 *      // metrics_t *m = metrics_new_for_routes(table, n);
 *      metrics_request_start(m);
 *      ...
 *      metrics_request_end(m, 0, 200, NULL, 153);
 *      size_t len;
 *      char *text = metrics_render(m, &len);        // caller frees
 *      free(text);
 *      metrics_destroy(&m);
 */
#ifndef RETAIL_METRICS_H
#define RETAIL_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include <msgpack.h>

#include "router/routes.h"

/* Distinct error codes counted by name; later new codes go to "other". */
#define METRICS_MAX_ERROR_CODES 64

typedef struct metrics_t metrics_t;

/* route_labels[i] is the label of route i, e.g. "GET /v1/products/{id}";
 * the strings are copied (the caller keeps ownership of its array). Labels
 * should be distinct and not "unmatched", or the output would hold the
 * same series twice. NULL on allocation failure or a NULL label;
 * route_labels may be NULL when n_routes is 0. */
metrics_t *metrics_new(const char *const *route_labels, size_t n_routes);

/* The same with one label per route of table[0..n_routes): its method,
 * a space and its path template ("GET /v1/products/{id}"), so route
 * index i of the table is label i. NULL on allocation failure. */
metrics_t *metrics_new_for_routes(const route_t *table, size_t n_routes);

/* Frees everything and sets *self_p to NULL; harmless on NULL. */
void metrics_destroy(metrics_t **self_p);

/* A request was accepted (in flight +1). */
void metrics_request_start(metrics_t *self);

/* A request finished (in flight -1): route index or -1 when no route
 * matched (label "unmatched"; any other out-of-range index counts there
 * too), the HTTP status sent (outside 100..599 it is counted as
 * status="other"), the error code string of the error body or NULL (not
 * retained: copied when first seen), and its duration in microseconds
 * (negative counts as 0). If memory runs out, the request still counts in
 * the histogram and its error code as "other"; only a status never seen
 * before on that route may be dropped from requests_total. */
void metrics_request_end(metrics_t *self, int route, int status, const char *error_code,
                         int64_t duration_us);

/* The whole exposition text; malloc'd, NUL-terminated, caller frees; *len
 * set (excluding the NUL) when len is non-NULL. NULL on allocation
 * failure. */
char *metrics_render(const metrics_t *self, size_t *len);

/* The broker's series from services, the msgpack array of an mmi.services
 * answer (protocol/SPEC.md), or NULL when the broker did not answer (then
 * only retail_broker_up 0). Entries that are not maps with a string name
 * are skipped; a missing count is 0. Same ownership as metrics_render. */
char *metrics_render_broker(const msgpack_object *services, size_t *len);

#endif

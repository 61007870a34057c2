/*  events_metrics.h - the event stream's part of /metrics (Prometheus
 *  text), for the services running in this process:
 *
 *      retail_events_published_total{service,type}   counter: handed to the stream
 *      retail_outbox_depth{service}                  gauge: committed, not yet handed
 *      retail_outbox_oldest_unpublished_seconds{service}
 *                                                    gauge: the age of the oldest of
 *                                                    those (0 when none waits)
 *      retail_outbox_kept{service}                   gauge: events kept for events.since
 *
 *  Ownership: the text is the caller's to free; NULL when out of memory.
 */
#ifndef RETAIL_EVENTS_METRICS_H
#define RETAIL_EVENTS_METRICS_H

#include "actors/service.h"

/* running[i] may be NULL (a service not run here). */
char *events_metrics(service_t *const *running, size_t n);

#endif

/*  relay.h - publishes a service's committed events (storage/outbox.h)
 *  to the event stream (router/events.h), in order, as a CZMQ actor.
 *
 *  How it works. The relay keeps `next`: the first seq it has not yet
 *  handed to the stream, read from the outbox's published mark at start
 *  (mark + 1), so after a crash it publishes again what it may have sent
 *  after its last mark, never less: a subscriber may see an event twice,
 *  never miss one, and tells the two apart by seq. It wakes when the
 *  environment commits (kv_notify: an eventfd that the committer signals
 *  after each commit) and on a timer, reads what has committed from
 *  `next` on and sends it on an XPUB socket connected to the proxy's
 *  publish side. XPUB rather than PUB so that the relay sees the proxy's
 *  subscription arrive and sends nothing before it (a PUB drops what it
 *  sends before a subscription reaches it), and with ZMQ_XPUB_NODROP, so
 *  a full pipe makes the send wait for the next turn instead of dropping
 *  the event. The published mark is written at most every mark_every_ms
 *  (one small write shared with the service's commits), and outbox_trim
 *  runs every trim_every_ms.
 *
 *  Test hook: with crash_marker set, the process SIGKILLs itself the first
 *  time an event is about to be sent, after its change committed (the
 *  crash the outbox is for), once per data directory: the marker file,
 *  made first, stops the restarted process from dying again.
 *
 *  Ownership: the outbox (and its environment) are the caller's and must
 *  outlive the relay; stats are the caller's too, written by the relay
 *  and readable from any thread.
 */
#ifndef RETAIL_RELAY_H
#define RETAIL_RELAY_H

#include <czmq.h>
#include <pthread.h>

#include "storage/outbox.h"

/* Events published, by type: the relay adds, /metrics reads. */
#define RELAY_TYPES_MAX 32
typedef struct relay_stats_t relay_stats_t;
relay_stats_t *relay_stats_new(void);
void relay_stats_destroy(relay_stats_t **self_p);
/* The highest seq handed to the stream so far (the published mark may lag
 * it by mark_every_ms); 0 before the first. */
uint64_t relay_stats_sent(relay_stats_t *self);
/* Calls fn for each type published so far, with its count. */
void relay_stats_each(relay_stats_t *self, void (*fn)(const char *type, uint64_t count, void *arg),
                      void *arg);

typedef struct {
    outbox_t *outbox;
    const char *endpoint;     /* the proxy's publish side: EVENTS_INPROC_PUBLISH or tcp:// */
    zcert_t *cert;            /* CURVE client certificate with tcp; NULL inproc */
    const char *server_key;   /* the proxy's (the broker's) public key, Z85, with cert */
    int mark_every_ms;        /* 0: 100 */
    int trim_every_ms;        /* 0: 1000 */
    const char *crash_marker; /* the test hook's file; NULL: no hook */
    relay_stats_t *stats;     /* may be NULL */
    bool verbose;
} relay_config_t;

/* NULL when it cannot start (logged). config is copied (cert included). */
zactor_t *relay_new(const relay_config_t *config);
void relay_destroy(zactor_t **self_p);

#endif

/*  events.h - the event stream's proxy (retaild's `events` role), as a
 *  CZMQ actor.
 *
 *  Services publish what they committed (storage/outbox.h, published by
 *  actors/relay.h); this actor forwards it to whoever subscribed, the
 *  ZeroMQ way: XSUB sockets face the publishers, an XPUB socket faces the
 *  subscribers, and subscriptions travel upstream. A message is two
 *  frames: the topic (the event's type) and the msgpack event
 *  {type, seq, at, source, data} (API.md, "Events").
 *
 *  Sides:
 *    publishers   EVENTS_INPROC_PUBLISH (relays in this process, trusted:
 *                 only our code runs here), and publish_tcp for relays in
 *                 other processes: CURVE with the broker's certificate and
 *                 allow-list, and a message is forwarded only when the
 *                 certificate's name is one publisher_allowed accepts and
 *                 equals the event's `source` (a subscriber's certificate
 *                 cannot inject events); others are dropped and counted.
 *    subscribers  EVENTS_INPROC_SUBSCRIBE (this process), and
 *                 subscribe_tcp: CURVE, the same allow-list; a stranger's
 *                 handshake fails and it receives nothing.
 *  The XSUB sides subscribe to everything themselves, so relays forward
 *  every event to the proxy, and the proxy's XPUB filters by prefix.
 *
 *  What the stream does not promise: a subscriber that is not connected,
 *  or too slow for its high-water mark, misses events; it sees a gap in
 *  `seq` and fills it from the source's `events.since` (retailctl watch
 *  does). The outbox, not the stream, is what keeps every event.
 *
 *  Auth: CURVE servers in one process share one ZAP handler (zauth binds
 *  a fixed inproc endpoint); the broker starts one, so start_auth is true
 *  only when no broker runs in this process.
 *
 *  Usage:
 *      events_config_t c = {.subscribe_tcp = "tcp://127.0.0.1:5556", ...};
 *      zactor_t *events = events_new(&c);   // NULL: could not bind (logged)
 *      ...
 *      events_destroy(&events);
 */
#ifndef RETAIL_EVENTS_H
#define RETAIL_EVENTS_H

#include <czmq.h>

#define EVENTS_INPROC_PUBLISH "inproc://retail-events-publish"
#define EVENTS_INPROC_SUBSCRIBE "inproc://retail-events"

typedef struct {
    const char *publish_tcp;   /* NULL: no publishers from other processes */
    const char *subscribe_tcp; /* NULL: in-process subscribers only */
    const char *keys_dir;      /* broker.cert and clients/; needed with tcp */
    bool start_auth;           /* start a zauth of its own (see Auth) */
    /* Whether a certificate name may publish (a service's); NULL: none may
     * over TCP. */
    bool (*publisher_allowed)(const char *name);
    bool verbose;
} events_config_t;

/* NULL if it could not bind or load its keys (logged). config is copied. */
zactor_t *events_new(const events_config_t *config);

/* Messages forwarded, and dropped from publishers that may not publish
 * them (or malformed), since start (for /metrics and tests); either
 * pointer may be NULL. 0, or -1 when the actor does not answer within 5 s.
 * It talks over the actor's pipe: from one thread at a time. */
int events_counts(zactor_t *self, uint64_t *forwarded, uint64_t *refused);

void events_destroy(zactor_t **self_p);

#endif

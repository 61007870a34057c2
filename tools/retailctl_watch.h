/*  retailctl_watch.h - `retailctl watch`: the event stream as JSON lines,
 *  with no event missing (issue 13, API.md "Events").
 *
 *  What it does. A SUB socket connects to the stream's subscriber side
 *  (RETAIL_EVENTS_ENDPOINT, CURVE as retailctl's certificate) and
 *  subscribes to everything; the PREFIX is applied here, so every event
 *  of a source is seen and a gap in its `seq` stays visible. Each event
 *  printed is one line {"type","seq","at","source","data"}, flushed.
 *
 *  No gaps. For each source it has seen it keeps the last seq; an event at
 *  or below it is a duplicate (a relay publishes again after a crash) and
 *  is skipped. For a source with an outbox ("orders", "payments",
 *  "catalog", and the --since source) a seq beyond last + 1 is a gap: it
 *  is filled first from that service's MDP op `events.since` {since,
 *  limit: 500} through the broker, page by page (reply {events, first,
 *  next}), then the live event follows. When no event has come for 1 s it
 *  asks events.since of every such source it has a position for, from
 *  last + 1: an event whose live copy was lost (a subscriber reconnecting
 *  after the proxy restarted, a full pipe) still shows up.
 *
 *  --since SOURCE:SEQ subscribes first, then replays SOURCE from SEQ until
 *  caught up (an empty page, or the last seq + 1 == next), then goes on
 *  with what the subscription buffered meanwhile, duplicates skipped.
 *
 *  Exit status (WATCH_EXIT_*): 0 on SIGINT/SIGTERM or after --count
 *  events; 1 after --idle-exit seconds without an event printed; 2 usage
 *  (the caller's); 3 the broker or a source did not answer events.since
 *  (unavailable, timeout, no answer, an error) or stdout failed; 4 events
 *  it needed were trimmed from the source's outbox (`first` beyond them).
 */
#ifndef RETAIL_RETAILCTL_WATCH_H
#define RETAIL_RETAILCTL_WATCH_H

#include "protocol/mdpcli.h"

#include <czmq.h>
#include <stdint.h>

enum {
    WATCH_EXIT_OK = 0,
    WATCH_EXIT_IDLE = 1,
    WATCH_EXIT_USAGE = 2,
    WATCH_EXIT_UNREACHABLE = 3,
    WATCH_EXIT_TRIMMED = 4,
};

/* Events asked of events.since at a time. */
#define WATCH_PAGE 500

typedef struct {
    const char *events_endpoint; /* the stream's subscriber side (tcp://) */
    zcert_t *cert;               /* the client certificate (the caller keeps it) */
    const char *server_key;      /* the proxy's (the broker's) public key, Z85 */
    mdpcli_t *client;            /* a client of the broker, for events.since */
    const char *token;           /* for events.since; NULL: none */
    int timeout_ms;              /* per events.since */
    const char *prefix;          /* of the types printed; "" or NULL: all */
    const char *since_source;    /* replay this source first; NULL: none */
    uint64_t since_seq;          /* from this seq (1..) */
    long count;                  /* stop after this many printed; 0: never */
    int idle_exit_s;             /* stop after this long without one; 0: never */
} watch_config_t;

/* Runs until one of the exit statuses above; returns it. */
int retailctl_watch(const watch_config_t *config);

#endif

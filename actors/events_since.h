/*  events_since.h - the `events.since` operation every service with an
 *  outbox answers (storage/outbox.h; protocol/SPEC.md, "Events").
 *
 *      events.since {since, limit?} -> {events, first, next}
 *
 *  events: the committed events from seq `since` on, oldest first, at most
 *  `limit` (default 100, at most 1000) and at most about 512 KiB of them,
 *  each the map the stream carries ({type, seq, at, source, data});
 *  first: the oldest event the outbox still keeps (0 when it keeps none),
 *  so a caller who asked for less than first knows that what lies between
 *  was trimmed; next: the seq the next event will get, so a caller whose
 *  last event is next - 1 has caught up.
 *
 *  Who may ask: the holders of an allowed certificate, the same as may
 *  subscribe to the stream (any named caller but the HTTP bridge, which
 *  has no route to it, and never an unnamed one).
 *
 *  A service adds it to its table with a wrapper that finds its outbox:
 *      static void s_events_since(call_t *call, void *state)
 *      { events_since_reply(call, ((my_state_t *)state)->shared->outbox); }
 */
#ifndef RETAIL_EVENTS_SINCE_H
#define RETAIL_EVENTS_SINCE_H

#include "protocol/call.h"
#include "storage/outbox.h"

/* Answers call (events.since) from outbox; NULL outbox: unavailable. */
void events_since_reply(call_t *call, outbox_t *outbox);

#endif

/*  retailctl_ask.h - one request, one reply: how retailctl's checks ask a
 *  service (retailctl check, retailctl check-record).
 *
 *  Sends op with args to service under id and waits for the reply that
 *  echoes id (others, late replies to earlier asks, are dropped), until
 *  timeout_ms. Ownership: on true, *frame holds the reply's bytes (the
 *  caller destroys it, before the next ask at the latest) and *reply
 *  points into it and into the caller's zone.
 */
#ifndef RETAIL_RETAILCTL_ASK_H
#define RETAIL_RETAILCTL_ASK_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "protocol/envelope.h"
#include "protocol/mdpcli.h"

/* args: msgpack bytes of a map, or NULL for none. False when no reply
 * came (said on stderr, prefixed by who). */
bool retailctl_ask(mdpcli_t *client, int timeout_ms, uint64_t id, const char *service,
                   const char *op, const void *args, size_t args_len, msgpack_zone *zone,
                   zframe_t **frame, envelope_reply_t *reply, const char *who);

#endif

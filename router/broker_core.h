/*  broker_core.h - the 7/MDP broker's logic, without its socket or thread.
 *
 *  router/broker.c runs it behind a ROUTER socket in an actor; the fuzzer
 *  (tests/fuzz/fuzz_broker.c) runs it in process with no socket at all,
 *  feeding it frame sequences as an allowed peer could send them. What
 *  it does is protocol/SPEC.md's broker and broker_core.c's top comment.
 *
 *  The wire is how the core sends: every message it writes is a run of
 *  send/send_msg calls with ZMQ_SNDMORE on all frames but the last, the
 *  first frame being the peer's routing id, sent with ZMQ_DONTWAIT; the
 *  contract of each call is zmq_send's and zmq_msg_send's (0 or more on
 *  success, -1 on failure). A failure on the routing frame means the peer
 *  is gone (the ROUTER is in mandatory mode) and nothing else of that
 *  message is sent. send_msg takes the message on success; on failure it
 *  is still the caller's, as with zmq_msg_send.
 *
 *  Time is the caller's: zclock_mono() milliseconds, given with each
 *  message and tick. One thread uses a core: no locks.
 */
#ifndef RETAIL_BROKER_CORE_H
#define RETAIL_BROKER_CORE_H
#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

#include "router/broker.h"

typedef struct {
    void *ctx;
    int (*send)(void *ctx, const void *data, size_t len, int flags);
    int (*send_msg)(void *ctx, zmq_msg_t *msg, int flags);
} broker_wire_t;

typedef struct broker_core_t broker_core_t;

/* A core with config's heartbeat_ms, request_timeout_ms, queue_limit and
 * verbose (all must be set: broker_new applies the defaults) sending
 * through wire (copied). NULL when out of memory. */
broker_core_t *broker_core_new(const broker_config_t *config, const broker_wire_t *wire);
/* Answers every request still queued or held "the broker is stopping"
 * through the wire, then frees everything and nulls *self_p. */
void broker_core_destroy(broker_core_t **self_p);
/* Handles one message read off the ROUTER: frames[0] is the peer's
 * routing id. The frames stay the caller's to close; a request's body is
 * moved out of its frame (leaving it empty). */
void broker_core_message(broker_core_t *self, zmq_msg_t *frames, int count, int64_t now);
/* Answers requests past their deadline, expires silent workers, and
 * beats every worker once a heartbeat interval has passed since the last
 * beat (the first tick only starts that count). */
void broker_core_tick(broker_core_t *self, int64_t now);
/* Requests queued, or held by a worker and not yet answered. */
size_t broker_core_pending(broker_core_t *self);
/* Answers every pending request unavailable with why; late replies from
 * workers are then dropped. */
void broker_core_abandon(broker_core_t *self, const char *why);
#endif

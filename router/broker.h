/*  broker.h - the 7/MDP broker, as a CZMQ actor.
 *
 *  One ROUTER socket that clients and workers share, bound to an inproc
 *  endpoint (MDP_INPROC_ENDPOINT, for pools and bridges in this process)
 *  and optionally to a TCP endpoint with CURVE, whose callers must hold a
 *  certificate from keys_dir/clients (checked by zauth, re-read when the
 *  directory changes). protocol/SPEC.md describes the behaviour: dispatch
 *  to the longest-idle worker, a bounded queue per service, a deadline per
 *  request, heartbeats, expiry of silent workers, mmi.service.
 *
 *  Usage:
 *      broker_config_t config = {.tcp_endpoint = "tcp://127.0.0.1:5555", ...};
 *      zactor_t *broker = broker_new(&config);   // NULL: could not bind
 *      ...
 *      broker_drain(broker, 3000);               // lets requests finish
 *      broker_destroy(&broker);                  // flushes replies, stops
 */
#ifndef RETAIL_BROKER_H
#define RETAIL_BROKER_H

#include <czmq.h>

#include "protocol/envelope.h"

/* The largest frame the broker takes over TCP (ZMQ_MAXMSGSIZE): a peer
 * that sends a longer one is disconnected by libzmq before the frame is
 * buffered whole, so an allowed client cannot make the broker hold a
 * gigabyte. Every legitimate frame is far under it: request and reply
 * bodies are at most ENVELOPE_MAX_BYTES (call.h never sends more), the
 * other MDP frames are a few bytes. Inproc peers are in this process and
 * not limited. */
#define BROKER_MAX_FRAME_BYTES (4 * 1024 * 1024)
_Static_assert(BROKER_MAX_FRAME_BYTES > 2 * ENVELOPE_MAX_BYTES, "room for every real body");

typedef struct {
    const char *inproc_endpoint; /* NULL: MDP_INPROC_ENDPOINT */
    const char *tcp_endpoint;    /* NULL: inproc only, no CURVE */
    const char *keys_dir;        /* broker.cert and clients/; needed with tcp */
    int heartbeat_ms;            /* 0: MDP_HEARTBEAT_MS_DEFAULT */
    int request_timeout_ms;      /* 0: 5000 */
    int queue_limit;             /* per service; 0: 1024 */
    bool verbose;
} broker_config_t;

/* Starts a broker; NULL if it could not bind or load its keys (the reason
 * is logged). The config is copied. */
zactor_t *broker_new(const broker_config_t *config);

/* Lets the requests queued and held by workers finish, serving as usual
 * (new ones included) until none is left or timeout_ms has passed; then
 * answers what is left unavailable. Returns how many that was (0: all
 * were answered by their workers), or -1 if the broker did not answer. */
int broker_drain(zactor_t *self, int timeout_ms);

/* Stops the broker, sending replies still queued on its socket first. */
void broker_destroy(zactor_t **self_p);

#endif

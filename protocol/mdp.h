/*  mdp.h - the frames of 7/MDP v0.1 (Majordomo), client and worker side.
 *
 *  Client to broker:  [empty] ["MDPC01"] [service] [body]
 *  Broker to client:  [empty] ["MDPC01"] [service] [body]
 *  Worker to broker:  [empty] ["MDPW01"] [command] ...
 *    READY      0x01  [service] [capacity]   (capacity: optional, see below)
 *    REQUEST    0x02  [client address] [empty] [body] [caller] [tag]  (broker to worker)
 *    REPLY      0x03  [client address] [empty] [body] [tag]     (worker to broker;
 *                                                                [tag] optional)
 *    HEARTBEAT  0x04
 *    DISCONNECT 0x05
 *
 *  [capacity] is this project's extension to READY: how many requests the
 *  worker accepts at once (decimal, 1..MDP_CAPACITY_MAX; absent means 1,
 *  plain MDP). [tag] is the other half: the broker names each request it
 *  gives a worker, and a worker that answers out of order (it holds
 *  requests waiting on other services) echoes the tag after its reply's
 *  body. A REPLY without one is for the oldest request the worker holds,
 *  which is what a plain MDP worker, answering one at a time, means.
 *
 *  The [caller] frame after a REQUEST's body is this project's extension:
 *  the name the broker authenticated the client as: its certificate's
 *  "name" metadata via ZAP over TCP, or for a peer inside the broker's
 *  process the name it was given (keys_name_inproc). A peer with neither
 *  is MDP_CALLER_UNNAMED, which no service trusts with anything.
 *  protocol/SPEC.md has the rest: timing, mmi.*.
 */
#ifndef RETAIL_MDP_H
#define RETAIL_MDP_H

#define MDP_CLIENT "MDPC01"
#define MDP_WORKER "MDPW01"

#define MDP_READY 0x01
#define MDP_REQUEST 0x02
#define MDP_REPLY 0x03
#define MDP_HEARTBEAT 0x04
#define MDP_DISCONNECT 0x05

/* Liveness: a peer is dead after this many heartbeat intervals of silence. */
#define MDP_LIVENESS 3
#define MDP_HEARTBEAT_MS_DEFAULT 1000

/* The most requests a worker may hold at once (READY's capacity). */
#define MDP_CAPACITY_MAX 1024

/* The [tag] frame after a REQUEST's caller: 8 bytes, opaque to workers. */
#define MDP_TAG_LEN 8

/* The longest service name the broker accepts. */
#define MDP_SERVICE_MAX 64
/* The caller name of a peer that carries no name (see above). */
#define MDP_CALLER_UNNAMED "unnamed"
/* The in-process endpoint every broker also binds. */
#define MDP_INPROC_ENDPOINT "inproc://retail-broker"

#endif

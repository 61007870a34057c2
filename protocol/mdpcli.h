/*  mdpcli.h - an MDP client: send requests to a service, receive replies.
 *
 *  A DEALER socket, so many requests may be in flight; replies come back
 *  in any order and are matched by the envelope's id, which is the
 *  caller's business. Used by retailctl, the tests, and services that
 *  call other services.
 *
 *  Ownership: mdpcli_recv() returns a frame the caller destroys.
 */
#ifndef RETAIL_MDPCLI_H
#define RETAIL_MDPCLI_H

#include <czmq.h>

typedef struct mdpcli_t mdpcli_t;

/* Connects to a broker. For an endpoint outside the process, cert and
 * server_public (Z85) turn on CURVE; both NULL means plain (inproc). */
mdpcli_t *mdpcli_new(const char *endpoint, zcert_t *cert, const char *server_public);
/* Connects to a broker in this process as the caller `name` (see
 * keys_name_inproc); NULL for an invalid name. */
mdpcli_t *mdpcli_new_inproc(const char *endpoint, const char *name);
void mdpcli_destroy(mdpcli_t **self_p);

/* How long a send may wait for a connection to the broker. */
#define MDPCLI_SEND_TIMEOUT_MS 2000

/* Queues one request. 0, or -1 when the socket refuses it or has had no
 * connection to send on for MDPCLI_SEND_TIMEOUT_MS (the broker refused
 * the handshake, or is not there). */
int mdpcli_send(mdpcli_t *self, const char *service, const void *body, size_t len);

/* Waits up to timeout_ms (-1: forever; 0: takes only a reply that has
 * come) for the next reply body. NULL on timeout or interruption. If
 * service is non-NULL it receives the replying service's name (freed by
 * the caller with zstr_free). Frames that are not a well-formed MDP
 * client reply are dropped. */
zframe_t *mdpcli_recv(mdpcli_t *self, int timeout_ms, char **service);

/* The socket, for a caller's own poller. */
zsock_t *mdpcli_sock(mdpcli_t *self);

#endif

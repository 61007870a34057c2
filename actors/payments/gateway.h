/*  gateway.h - what the payments service asks of a payment gateway, and
 *  how an implementation plugs in.
 *
 *  A gateway is an actor that answers envelopes (protocol/SPEC.md section
 *  3) on a ROUTER bound to an in-process endpoint: each request arrives as
 *  [peer][empty][envelope] and is answered [peer][empty][reply envelope],
 *  in any order, echoing the request's id. The payments service reaches it
 *  with call_ask_at (protocol/call.h), so no worker ever blocks on it: a
 *  gateway that answers after 20 ms costs a worker nothing meanwhile. An
 *  implementation that talks to a real provider over HTTPS does the same
 *  from its own actor (a curl multi handle in its loop); the service's
 *  logic does not change, only the factory below picks another `kind`.
 *
 *  Operations (args -> data). Every one carries `key`, an idempotency key
 *  the service derives from the order, the attempt and the operation
 *  ("<order_id>:<attempt>:authorize"), at most GATEWAY_KEY_MAX bytes. A
 *  gateway keeps, durably and before it answers, what it did under each
 *  key; the same key again returns the first result and does nothing
 *  more, so a retry after a timeout never charges twice.
 *
 *    authorize {key, amount_cents, currency, card: {number, exp_month,
 *               exp_year, cvc}}
 *        -> {outcome: "approved", auth_id}
 *         | {outcome: "declined", reason: "card_declined"|"insufficient_funds"
 *                                         |"invalid_card"|"expired_card"}
 *    capture   {key, auth_id, amount_cents}      -> {outcome: "captured", capture_id}
 *    void      {key, auth_id}                    -> {outcome: "voided"}
 *    refund    {key, capture_id, amount_cents}   -> {outcome: "refunded", refund_id}
 *    lookup    {key}
 *        -> {found: false}
 *         | {found: true, op: "authorize"|..., result: <the data that key's
 *            operation answered, as above>}
 *
 *  Errors: `gateway_error` (protocol/errors.h) when the provider failed and
 *  did nothing under that key (a retry with the same key may succeed);
 *  `invalid_argument` for a request that can never succeed; `conflict`
 *  when a key comes again with other arguments (another amount). A request
 *  that gets no answer may or may not have been done: the caller asks
 *  `lookup` with the same key before it decides (crash recovery does too).
 *
 *  The card's number and CVC reach the gateway only in the authorize
 *  request, in process; a gateway never stores them, never logs them and
 *  never sends them back.
 */
#ifndef RETAIL_GATEWAY_H
#define RETAIL_GATEWAY_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>

#define GATEWAY_KEY_MAX 128
#define GATEWAY_ID_MAX 64 /* auth_id, capture_id, refund_id */

/* How the simulated gateway behaves (RETAIL_PAYMENTS_GATEWAY_*). The
 * faults strike authorize, capture, void and refund; lookup always
 * answers, since it is how a caller learns what a fault left behind. */
typedef struct {
    int latency_ms;   /* every answer waits this long (0: at once) */
    int fail_percent; /* 0..100: answered gateway_error, nothing done */
    int drop_percent; /* 0..100: done and recorded, but never answered
                         (a timeout as the caller sees it) */
    unsigned seed;    /* for fail/drop draws; 0: from the clock */
} gateway_sim_config_t;

typedef struct {
    const char *kind;     /* "sim" (the only one yet) */
    const char *data_dir; /* the gateway keeps its own record under
                             data_dir/gateway-<kind>, apart from payments */
    const char *endpoint; /* where to bind, e.g. "inproc://retail-gateway";
                             unique per process */
    gateway_sim_config_t sim;
} gateway_config_t;

/* Starts the gateway actor of config.kind bound to config.endpoint; NULL
 * with a reason in err for an unknown kind or when its record or socket
 * cannot be opened. The config is copied. */
zactor_t *gateway_new(const gateway_config_t *config, char *err, size_t errlen);

/* Stops it: requests it holds are dropped unanswered (their callers time
 * out and look up). */
void gateway_destroy(zactor_t **self_p);

/* True for a card number that passes the Luhn check (digits only, 12..19). */
bool gateway_luhn_valid(const char *number, size_t len);

#endif

/*  followup.h - the payments service's background actor: it runs the
 *  gateway (gateway.h) and finishes what a crash leaves of a refund: a
 *  refund begun and never ended, and an order not told of its refund in
 *  full.
 *
 *  Why: an admin's refund that brings a payment to refunded makes its
 *  paid order refunded (order.payment_refunded, asked of orders before
 *  the refund answers: refund.c). A crash after the refund's end write and
 *  before orders heard, or orders not answering then, left a paid order
 *  whose payment is refunded for ever, unless the admin happened to ask
 *  again with the same key: the crash loop found it (docs/RELIABILITY.md,
 *  section 2). Now the refund end that brings a payment to refunded also
 *  records "to tell" in its own write (payment_store_to_tell), and this
 *  actor tells every such order and forgets the record once orders has
 *  answered for good.
 *
 *  The same crash, or one a little earlier, can leave the refund itself
 *  pending: its amount reserved in the store, the gateway asked or not.
 *  The gateway may have refunded (the customer has the money) while the
 *  payments log never says so: the crash loop found that too. Every
 *  refund begun is in an index until it ends
 *  (payment_store_refunds_pending), and this actor sends `refund.recover
 *  {key}` to the service (as the caller `payments`) for each one whose
 *  budget is over, so that its own request can no longer be running: a
 *  worker takes it over exactly as the same key asked again would
 *  (refund.c: the gateway asked first, its answer kept, else the refund
 *  made), and ends it.
 *
 *  How: every S_EVERY_MS (and at once on start, so what a crash left is
 *  told as soon as the service is back) it reads up to a batch of them
 *  and sends `order.payment_refunded {order_id}` through the broker as
 *  the caller `payments` (its routing id in process, the pool's
 *  certificate over TCP), as a refund's worker does. An answer that
 *  settles it (the order, or invalid_transition / not_found: an order that
 *  is not paid has its own way and nothing to hear) forgets it; no answer,
 *  or unavailable, leaves it for the next pass. order.payment_refunded is
 *  idempotent (a refunded, cancelled or being cancelled order is left as
 *  it is), so a record told twice, by the refund's worker and by this
 *  actor, is harmless; a cancel's refund is told too, and left as it is.
 *
 *  Ownership: the actor owns the gateway and its own store handle and
 *  client; the shared state is borrowed and must outlive it.
 */
#ifndef RETAIL_PAYMENTS_FOLLOWUP_H
#define RETAIL_PAYMENTS_FOLLOWUP_H

#include "actors/payments/gateway.h"
#include "actors/payments/payments_impl.h"
#include "actors/service.h"

#include <czmq.h>

/* Starts the gateway of gw (copied) and the follow-up; NULL with a
 * reason in err when either cannot start. */
zactor_t *followup_new(const service_env_t *env, const gateway_config_t *gw,
                       payments_shared_t *shared, char *err, size_t errlen);
/* Stops the follow-up, then the gateway. */
void followup_destroy(zactor_t **self_p);

#endif

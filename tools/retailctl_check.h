/*  retailctl_check.h - `retailctl check`: the books of every service, and
 *  the invariants that span services (issue 12, API.md "Operations").
 *
 *  Asks each service's `ops.check` (catalog, payments, orders: each
 *  verifies its own books in one read transaction and lists what is
 *  wrong), then checks across them, through the running services as the
 *  operator's certificate (`retailctl`):
 *    - every live reservation (catalog stock.reservations, state
 *      reserved) belongs to a pending order;
 *    - every paid, shipped or delivered order has a payment captured for
 *      its total (payments payment.by_order);
 *    - every captured payment has a paid, shipped or delivered order.
 *  A live system moves while it is read: what looks wrong across services
 *  is read again after a second (a checkout in flight finishes in
 *  milliseconds) and reported only if it still is.
 *
 *  Prints one line per problem ("service check id: message"), then a
 *  summary; exit 0 when nothing is wrong, 1 when something is, 3 when a
 *  service did not answer.
 */
#ifndef RETAIL_RETAILCTL_CHECK_H
#define RETAIL_RETAILCTL_CHECK_H

#include "protocol/mdpcli.h"

int retailctl_check(mdpcli_t *client, int timeout_ms);

#endif

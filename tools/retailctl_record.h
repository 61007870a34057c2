/*  retailctl_record.h - `retailctl check-record FILE...`: is everything a
 *  load run got acknowledged still there, and did nothing happen twice?
 *  (issues 14 and 15; the record's format and what is held to it:
 *  tools/harness/record.h)
 *
 *  Reads every record first (a line that is not a record line is a usage
 *  error naming its file and number), in the order given: a crash loop
 *  passes the records of all its cycles, so a later cycle is held to what
 *  an earlier one acknowledged. Then asks the running system, as the
 *  operator's certificate (`retailctl`):
 *    - registrations: the account of that email has that id, read
 *      straight from the account store (users_find_by_email), as `user
 *      create` writes it;
 *    - orders: `order.get` answers it, with its total and a status it can
 *      have reached from the acknowledged one; a cancel's order is
 *      cancelled or refunded;
 *    - refunds: `payment.get` shows at least that much refunded;
 *    - carts: `cart.get {user_id}` of each user holds what the user's
 *      acknowledged cart changes, replayed in order, leave. A line whose
 *      outcome is unknown ("ack": false) makes the products it may have
 *      touched unknown for the rest of the records (a request given up on
 *      may still be applied later, after newer ones), so those are not
 *      held to anything;
 *    - products created: `product.get` shows the sku, and the name, price
 *      and stock the acknowledged writes left, and the version of the
 *      last one (at least that, after an unknown outcome); gone after an
 *      acknowledged delete. Only the virtual user that created a product
 *      writes it in the shipped scenarios, so its writes are in order;
 *    - nothing twice (retailctl_record_effects.c): the acknowledged replies
 *      to one idempotency key name one order; each user that checked out
 *      has no more orders (`order.list {user_id}`) than its acknowledged
 *      checkouts plus those of unknown outcome (one per key) explain; each
 *      of those orders has at most one payment (`payment.list
 *      {order_id}`), captured at most once in its log (`payment.get`) and,
 *      when the simulated gateway's record is in the data directory
 *      (DIR/gateway-sim, read-only), at most once there too, with the
 *      same captured and refunded amounts; across the whole gateway no
 *      order is captured twice; and its reservation is what its status
 *      says (paid, shipped, delivered, refunded: committed, the order's
 *      items; cancelled: released; payment_failed: released or none);
 *    - with --stock LEDGER (a file `retailctl stock-ledger` wrote before
 *      the load): each product of the ledger has the same units (stock +
 *      reserved + committed, retailctl_stock.h) unless a record line may
 *      have set its stock. A difference is looked at again after a second
 *      (recovery may still be moving a reservation) before it counts.
 *
 *  Prints one line per problem ("kind id: message"), then a summary; exit
 *  0 when everything is there, 1 when something is missing or doubled, 2
 *  for a bad record or ledger, 3 when a service did not answer.
 */
#ifndef RETAIL_RETAILCTL_RECORD_H
#define RETAIL_RETAILCTL_RECORD_H

#include <stddef.h>

#include "actors/users/users.h"
#include "protocol/mdpcli.h"

typedef struct {
    int timeout_ms;
    users_shared_t *users;      /* NULL: registrations are not checked (said so) */
    const char *gateway_dir;    /* the simulated gateway's environment; NULL or absent: not read */
    const char *stock_ledger;   /* NULL: no ledger */
    const char *const *records; /* the record files, in order */
    size_t nrecords;
} record_check_opts_t;

int retailctl_check_record(mdpcli_t *client, const record_check_opts_t *opts);

#endif

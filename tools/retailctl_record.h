/*  retailctl_record.h - `retailctl check-record FILE`: is everything a load
 *  run got acknowledged still there? (issue 14; the record's format and
 *  what is held to it: tools/harness/record.h)
 *
 *  Reads the whole record first (a line that is not a record line is a
 *  usage error naming its number), then asks the running system, as the
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
 *      touched unknown for the rest of the record (a request given up on
 *      may still be applied later, after newer ones), so those are not
 *      held to anything.
 *
 *  Prints one line per problem ("kind id: message"), then a summary; exit
 *  0 when everything is there, 1 when something is missing, 2 for a bad
 *  record, 3 when a service did not answer.
 */
#ifndef RETAIL_RETAILCTL_RECORD_H
#define RETAIL_RETAILCTL_RECORD_H

#include "actors/users/users.h"
#include "protocol/mdpcli.h"

/* users may be NULL: registrations are then not checked (said so). */
int retailctl_check_record(mdpcli_t *client, int timeout_ms, users_shared_t *users,
                           const char *path);

#endif

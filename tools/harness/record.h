/*  record.h - the record of what a load run got acknowledged (`loadgen
 *  --record FILE`), and the format `retailctl check-record FILE` reads back.
 *
 *  Why: a load run, or the reliability suite's crash loop around one, must
 *  be able to prove afterwards that nothing acknowledged was lost. So the
 *  harness writes one NDJSON line per reply that changed (or may have
 *  changed) shared state, and the check asks the running system whether
 *  each acknowledged change is there.
 *
 *  The format (version 1). The first line is the header:
 *
 *      {"record": "loadgen", "version": 1, "run": "<run id>",
 *       "scenario": "<name>", "started": "<RFC 3339 UTC>"}
 *
 *  then one line per recorded reply, in the order the replies arrived
 *  (one virtual user has one request in flight at a time, so a user's
 *  lines are in the order of its requests):
 *
 *      {"vu": 3, "step": "add_to_cart", "service": "orders",
 *       "op": "cart.set_item", "ack": true,
 *       "user_id": "...", "email": "...",        (the virtual user's user)
 *       "keys": {...}, "ids": {...}}
 *
 *  - "ack": true is an ok reply. "ack": false is a request whose outcome is
 *    not known: no reply before the run ended, or an error whose code does
 *    not say that nothing changed (`unavailable`, `timeout`,
 *    `gateway_error`, `internal`); then "code" holds that code, or
 *    "no_reply". Any other error code is not recorded: by the contract it
 *    changed nothing.
 *  - "user_id" and "email" are the user of the virtual user's latest ok
 *    `auth.register` or `auth.login` (the reply's data.user); absent before
 *    it has one.
 *  - keys (what was asked) and ids (what the reply named), per op; other
 *    ops (reads) are not recorded:
 *
 *      users    auth.register    keys {email}               ids {user_id}
 *      users    auth.login       keys {email}               ids {user_id}
 *      orders   cart.set_item    keys {product_id, qty}
 *      orders   cart.remove_item keys {product_id}
 *      orders   cart.clear       keys {}
 *      orders   cart.checkout    keys {idempotency_key?}    ids {order_id, status,
 *      orders   order.create     keys {idempotency_key?}         total_cents, payment_id?}
 *      orders   order.cancel     keys {order_id}            ids {status}
 *      payments payment.refund   keys {payment_id,          ids {refunded_cents, status}
 *                                      idempotency_key?}
 *
 *    ids are present only when "ack" is true.
 *
 *  What the check holds the system to, for acknowledged lines: a
 *  registered user exists with that id; an order exists with its total and
 *  a status it can have reached from the acknowledged one; a cancelled
 *  order is cancelled (or refunded); a refunded payment has refunded at
 *  least that much; and each user's cart is what the user's acknowledged
 *  cart changes, replayed in order, leave (a checkout empties it), except
 *  for the lines an unknown outcome may have touched.
 *
 *  Ownership: the writer owns its FILE and the lines' buffers; callers
 *  pass borrowed strings and msgpack objects that only need to live for
 *  the call.
 */
#ifndef RETAIL_HARNESS_RECORD_H
#define RETAIL_HARNESS_RECORD_H

#define RECORD_VERSION 1

#endif

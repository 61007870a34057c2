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
 *                                      idempotency_key?,
 *                                      amount_cents?}
 *      catalog  product.create   keys {sku, name?,          ids {product_id, version}
 *                                      price_cents?, stock?}
 *      catalog  product.update   keys {product_id, name?,   ids {version}
 *                                      price_cents?, stock?}
 *      catalog  product.set_stock keys {product_id, stock}  ids {version}
 *      catalog  product.delete   keys {product_id}          ids {}
 *
 *    ids are present only when "ack" is true. A key the request did not
 *    carry is absent (an update that leaves the price alone has no
 *    price_cents).
 *
 *  What the check holds the system to, for acknowledged lines: a
 *  registered user exists with that id; an order exists with its total and
 *  a status it can have reached from the acknowledged one; a cancelled
 *  order is cancelled (or refunded); a refunded payment has refunded at
 *  least that much; and each user's cart is what the user's acknowledged
 *  cart changes, replayed in order, leave (a checkout empties it), except
 *  for the products an unknown outcome may have touched, which stay
 *  unknown to the end of the record (a request given up on may still be
 *  applied after newer ones). A product created is there with what its
 *  acknowledged writes left (the same rule for unknown ones), or gone
 *  after an acknowledged delete. And nothing happened twice: every
 *  acknowledged reply to one idempotency key names one order, and a
 *  user has no more orders than its checkouts can explain.
 *  `retailctl check-record` (tools/retailctl_record.h) does the checking.
 *
 *  Ownership: the writer owns its FILE and the lines' buffers; callers
 *  pass borrowed strings and msgpack objects that only need to live for
 *  the call.
 */
#ifndef RETAIL_HARNESS_RECORD_H
#define RETAIL_HARNESS_RECORD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#define RECORD_VERSION 1

typedef struct record_t record_t;

/* One reply to record. Strings and objects are borrowed for the call. */
typedef struct {
    uint64_t vu;
    const char *step, *service, *op;
    bool ack;
    const char *code;            /* !ack: the error code, or "no_reply" */
    const char *user_id, *email; /* NULL: the virtual user has none yet */
    const msgpack_object *args;  /* the request's args (a map), or NULL */
    const msgpack_object *data;  /* ack: the reply's data */
} record_entry_t;

/* Creates path (truncating it) and writes the header. NULL with err. */
record_t *record_new(const char *path, const char *run, const char *scenario, char *err,
                     size_t errlen);
/* Flushes and closes; -1 if anything written was not (then err says). */
int record_close(record_t **self_p, char *err, size_t errlen);
void record_destroy(record_t **self_p);

/* True when replies of service.op are recorded (the table above). */
bool record_wants(const char *service, const char *op);
/* True when an error with this code leaves the outcome unknown. */
bool record_code_unknown(const char *code);
/* Writes entry's line. 0, or -1 when the write failed (sticky: the
 * record is then incomplete and record_close says so). */
int record_write(record_t *self, const record_entry_t *entry);

#endif

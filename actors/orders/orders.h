/*  orders.h - the `orders` service: carts, checkout, orders, and the
 *  recovery that finishes every checkout a crash interrupted.
 *
 *  Ops (protocol/SPEC.md, section 7, `orders`, has arguments and results):
 *    cart.get cart.set_item cart.remove_item cart.clear cart.checkout
 *    order.create order.get order.list order.cancel order.set_status
 *    order.recover (the service's own recovery) order.payment_refunded
 *    (payments', after an admin's refund in full) ops.check
 *  A cart is the token's user's; an order is its owner's, or any admin's.
 *
 *  ==== The checkout saga ====
 *
 *  What must never happen: two orders sold one unit; a card charged twice
 *  for one order; an acknowledged order lost, or one acknowledged that is
 *  not durable; stock reserved for ever by an order nobody finishes; a
 *  captured payment with no paid order, or a paid order without a
 *  captured payment of its total.
 *
 *  Who owns what. orders (LMDB data_dir/orders, storage/orders/): the
 *  order with its status, history and journal (the steps done), its
 *  lease (who drives it, until when), and the idempotency keys, written
 *  in the same transaction as the order. catalog: reservations keyed by
 *  the order id (stock.reserve / release / commit, each idempotent; the
 *  reserving write checks the stock, so two orders cannot take one unit).
 *  payments: one payment per order id (payment.charge is idempotent on
 *  it, its gateway steps keyed), payment.settle to finish one without the
 *  card. Every call to another service is an ask with a deadline
 *  (call_ask): the saga never blocks a worker.
 *
 *    #  step                                           durable after it
 *    0  check the request; product.get_many (one ask)  nothing
 *    1  WRITE order pending + journal created + key    order pending
 *       running, one transaction; lease = this saga
 *    2  stock.reserve                                  the reservation (catalog);
 *                                                      on out_of_stock the order
 *                                                      removed, the key done 409
 *    3  payment.charge (card from the request)         the payment (payments)
 *    3b on a decline / gateway_error: stock.release,   order payment_failed,
 *       WRITE payment_failed                           key done 402 / 502
 *    4  stock.commit                                   the stock sold (catalog)
 *    5  WRITE paid, journal reserved, charged and      order paid
 *       committed (each with its time), key done 201
 *  The client is answered after the write of its step, never before: an
 *  acknowledged order is durable. Each write reads the order first and
 *  refuses unless the saga still holds its lease and the order is still
 *  pending, so a saga that recovery took over writes nothing.
 *
 *  Why the order is written only at 1 and 5: each step between is made
 *  durable by the service that does it, keyed by the order id, before it
 *  answers; a journal write of its own after each would add a disk flush
 *  to every checkout's path (two more: reserved and charged)
 *  and tell recovery nothing it may trust, since a crash can fall between
 *  a step and its record. So recovery asks the services instead. The
 *  writes are group-committed, and a worker never waits for one
 *  (call_write): it serves other checkouts while its writes are on their
 *  way to disk.
 *
 *  ==== Recovery ====
 *
 *  The background actor (recovery.c) walks the todo index (every pending
 *  order, every one marked to compensate or being cancelled) every
 *  RETAIL_ORDERS_RECOVER_EVERY_MS, passing over orders whose lease a live
 *  saga of this process holds (a lease names the process instance that
 *  gave it: after a restart every old lease is foreign and taken at
 *  once; a lease also ends after RETAIL_ORDERS_LEASE_MS, longer than all
 *  of a saga's deadlines). For each it sends order.recover to the service;
 *  a worker claims the lease in a write and continues from the journal
 *  (saga.c), asking before it acts:
 *
 *    crash after   what is true                     recovery does
 *    0             nothing written                  nothing; the retry starts over
 *    1 created     pending; a reservation may be    payment.settle: none -> stock.release
 *                  there (reserve in flight)        (not_found is fine), payment_failed
 *                                                   (502, "abandoned")
 *    2 reserved    a charge may be in flight, or    payment.settle: captured -> commit,
 *                  done, or never sent              paid (201); failed or none ->
 *                                                   release, payment_failed (502);
 *                                                   payments silent -> again later
 *    3 charged     captured                         settle answers captured: stock.commit,
 *                                                   paid
 *    3b (mid)      decline known, release unsure    settle answers failed: stock.release,
 *                                                   payment_failed
 *    4 committed   stock final, order pending       settle, stock.commit again
 *                                                   (idempotent), paid
 *    5 paid        final                            nothing (the key answers 201)
 *  Rows 1 to 4 look the same in the journal (created), and recovery does
 *  the same for all: it asks payments, then the catalog.
 *  The key's response is written by the final write, so a client that
 *  asks again after a crash hears the order's true end (201 with the
 *  order, or the 402 / 502), never a second order; until then the key is
 *  running and the retry is 409 idempotency_key_in_use (Retry-After: 1).
 *  tests/integration/test_orders_crash.c kills the process after each of
 *  these steps (RETAIL_ORDERS_CRASH_AT) and in the middle of 200 checkouts.
 *
 *  Payments down: recovery asks again on each pass. An order still
 *  pending after RETAIL_ORDERS_HOLD_MS is ended without payments: its
 *  stock released, payment_failed ("held_too_long"), marked compensate.
 *  When payments answers again, recovery settles the payment of every
 *  order marked compensate and refunds a captured one in full (keyed
 *  `compensate-<order>`, so once). So no stock stays reserved for ever and
 *  no captured payment stays without a paid order. A commit refused after
 *  a capture (the reservation gone) ends the same way.
 *
 *  Cancel: a payment_failed order becomes cancelled in one write. A paid
 *  one gets `cancel_asked` in its journal and a lease in one write (so it
 *  can no longer ship), then payment.refund of the whole capture (keyed
 *  `cancel-<order>`), stock.release, and cancelled; recovery finishes a
 *  cancel a crash interrupted.
 *
 *  Idempotency-Key (1..255 visible ASCII, scoped to the user): stored as
 *  BLAKE2b(user, key) with a keyed fingerprint of the request (op and
 *  arguments without the key), the order and, once finished, the first
 *  response (storage/orders/order_store.h). Same key, same request: the
 *  first response, with "replayed" (Idempotent-Replayed: true); another
 *  request: 409 idempotency_key_reused; still running: 409
 *  idempotency_key_in_use. Keys expire after 24 hours: an index by
 *  creation time that recovery sweeps, never a scan per request.
 *
 *  Invariants, checked at any time: ops.check here (the store's own
 *  books: indexes both ways, totals, keys and orders naming each other),
 *  the catalog's and payments' own, and `retailctl check` across them.
 */
#ifndef RETAIL_ORDERS_H
#define RETAIL_ORDERS_H

#include "actors/service.h"

extern const service_def_t orders_service;

#endif

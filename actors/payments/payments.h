/*  payments.h - the `payments` service: charges, refunds, voids, and a
 *  transaction log that shows any tampering.
 *
 *  Ops (protocol/SPEC.md, section 7, has arguments and results):
 *    payment.charge payment.refund payment.void payment.settle payment.get
 *                                                     (orders, or an admin token)
 *    payment.list payment.by_order log.verify log.entries
 *                                                     (orders, an admin token, or
 *                                                      the operator: retailctl)
 *    ops.check                                        (an admin token, or retailctl)
 *
 *  Nobody else may call them: not a customer's token, not the bridge on a
 *  customer's behalf. The operator is the caller `retailctl` (its CURVE
 *  certificate) without a token: it reads, it never moves money. The gateway (gateway.h) runs as
 * the service's background actor; workers ask it without blocking (call_ask_at), so a slow gateway
 * costs held requests, not workers. The store (storage/payments/payment_store.h) keeps payments,
 * refunds and the hash-chained log.
 */
#ifndef RETAIL_PAYMENTS_H
#define RETAIL_PAYMENTS_H

#include "actors/service.h"

extern const service_def_t payments_service;

#endif

/*  gateway_sim_ops.h - the operations of the simulated gateway (gateway.h):
 *  authorize, capture, void, refund and lookup, each run on the gateway's
 *  record (gateway_record.h) inside a write transaction it is given.
 *
 *  The actor (gateway_sim.c) owns the sockets, the batch, the faults and
 *  the timing; these functions own the rules: argument checks, the card
 *  checks and test cards, the money rules, and idempotency by key. An
 *  operation answers through its call_t (call_reply or call_fail, always
 *  one of them) and says whether what it wrote is to be kept; the caller
 *  runs it in a nested transaction and aborts that when told not to keep.
 *
 *  Ownership: gateway_sim_ops_t holds scratch buffers and borrows the kv
 *  environment, which must outlive it. Single-threaded, like its actor.
 */
#ifndef RETAIL_GATEWAY_SIM_OPS_H
#define RETAIL_GATEWAY_SIM_OPS_H

#include "protocol/call.h"
#include "storage/kv.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct gateway_sim_ops_t gateway_sim_ops_t;

/* NULL when out of memory. kv is an environment opened with
 * gateway_db_names (gateway_record.h). */
gateway_sim_ops_t *gateway_sim_ops_new(kv_t *kv);
void gateway_sim_ops_destroy(gateway_sim_ops_t **self_p);

/* The operation named op[0..len): an index for gateway_sim_ops_run, or
 * -1 when the gateway has none of that name. */
int gateway_sim_op_find(const char *op, size_t len);

/* Whether the operation changes something (authorize, capture, void,
 * refund): those are the ones a simulated fault may fail or drop. */
bool gateway_sim_op_changes(int op);

/* Runs operation op (from gateway_sim_op_find) with call's request in
 * txn, answering through call. True when what it wrote is to be kept;
 * false when it wrote nothing or its writes must be undone (an error
 * answered). */
bool gateway_sim_ops_run(gateway_sim_ops_t *self, int op, MDB_txn *txn, call_t *call);

/* Answers gateway_error "could not keep its record" after logging what
 * failed (an LMDB error): for a transaction the caller could not begin
 * or commit. Returns false, so that it may end an operation. */
bool gateway_sim_store_failed(call_t *call, const char *what, int rc);

#endif

/*  retailctl_payments.h - `retailctl payments verify|export`: the payments
 *  transaction log, read straight from the data directory.
 *
 *  Like `user create`, these open the store itself rather than asking the
 *  running service: an auditor checks the log with the service down, and
 *  no token is needed beyond the right to read the data directory (LMDB
 *  lets a reader in beside a running writer).
 *
 *      payments verify [--head HASH]
 *          re-checks the chain, the sums and the newest signed head
 *          (payment_log_verify); with --head, also that HASH (a head kept
 *          elsewhere, 64 hex) is an entry's hash. Prints the verdict as
 *          JSON; exit 0 when the log verifies, 1 when it does not.
 *      payments export [--from SEQ]
 *          writes the log from SEQ (1) as NDJSON in the Elasticsearch bulk
 *          format: an action line {"index":{"_index":"retail-payments-log",
 *          "_id":"<seq>"}} then the entry, per entry, in order.
 */
#ifndef RETAIL_RETAILCTL_PAYMENTS_H
#define RETAIL_RETAILCTL_PAYMENTS_H

#include "protocol/settings.h"

/* Runs `payments ...` from argv[first] on (the word after "payments");
 * returns the exit status (0 ok, 1 the log does not verify or a store
 * error, 2 usage). */
int retailctl_payments(int argc, char **argv, int first, const settings_t *settings);

#endif

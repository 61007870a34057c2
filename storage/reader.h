/*  reader.h - the read side every LMDB store shares: a read transaction
 *  that a store handle keeps between calls, and keyset pages.
 *
 *  A store handle (one thread at a time) keeps one read-only transaction,
 *  reset between calls and renewed at the start of the next: cheaper than
 *  a begin and an abort per call, since the reader slot is kept. This
 *  needs the environment's MDB_NOTLS (kv.h), which kv_open sets.
 *
 *      store_reader_t reader;
 *      if (!store_reader_open(&reader, env, "catalog_store")) ...
 *      MDB_txn *txn = store_reader_begin(&reader);   per call
 *      if (!txn) ... (logged)
 *      ... mdb_get(txn, ...) ...
 *      store_reader_end(&reader);                     before returning
 *      store_reader_close(&reader);                   with the handle
 *
 *  Ownership: a store_reader_t is a value inside its handle; the
 *  transaction is its own, and what mdb_get hands out of it is valid only
 *  until store_reader_end.
 */
#ifndef RETAIL_STORE_READER_H
#define RETAIL_STORE_READER_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>

#include "storage/kv.h"

typedef struct {
    MDB_txn *txn;      /* reset between calls; NULL when not open */
    const char *owner; /* names the store in log lines ("user_store(lmdb)") */
} store_reader_t;

/* Begins the transaction and resets it; false (logged: MDB_READERS_FULL
 * means more handles than reader slots) on failure. owner must outlive
 * the reader (a string literal). */
bool store_reader_open(store_reader_t *self, kv_t *env, const char *owner);
/* Renews it for one call: the transaction, or NULL (logged). */
MDB_txn *store_reader_begin(store_reader_t *self);
/* Resets it at the end of the call. */
void store_reader_end(store_reader_t *self);
/* Aborts it; the reader may be closed twice, or without being open. */
void store_reader_close(store_reader_t *self);

/* One entry of a page: 0 to go on, anything else to stop the page as
 * failed (the callback logs why). index counts from 0. */
typedef int store_page_fn(const MDB_val *key, const MDB_val *val, int index, void *arg);

/* A keyset page of dbi within txn: fn for each of the first `limit`
 * entries whose key is after `after` (kv_cursor_after: "" is from the
 * first; keys at most max_key bytes), in key order. *count gets how many
 * fn took; *more (may be NULL: then the cursor does not look past the
 * last one) whether another entry follows. 0, or -1 when fn refused an
 * entry or LMDB failed (logged as owner: what: ...), with *count 0. */
int store_page(MDB_txn *txn, MDB_dbi dbi, const char *after, size_t max_key, int limit,
               store_page_fn *fn, void *arg, int *count, bool *more, const char *owner,
               const char *what);

#endif

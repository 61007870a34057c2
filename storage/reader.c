/*  reader.c - a kept read transaction and keyset pages (reader.h).
 *
 *  store_page is the walk that user and category pages used to each
 *  write out: a cursor put after `after` by kv_cursor_after, one step per
 *  entry, and the end told from an LMDB failure (MDB_NOTFOUND is the end,
 *  anything else fails the page).
 */
#include "storage/reader.h"

#include <czmq.h>

static void s_fail(const char *owner, const char *what, int rc)
{
    zsys_error("%s: %s: %s", owner, what, mdb_strerror(rc));
}

bool store_reader_open(store_reader_t *self, kv_t *env, const char *owner)
{
    self->owner = owner;
    self->txn = NULL;
    int rc = mdb_txn_begin(kv_mdb(env), NULL, MDB_RDONLY, &self->txn);
    if (rc != 0) {
        s_fail(owner, "mdb_txn_begin read", rc);
        self->txn = NULL;
        return false;
    }
    mdb_txn_reset(self->txn);
    return true;
}

MDB_txn *store_reader_begin(store_reader_t *self)
{
    int rc = mdb_txn_renew(self->txn);
    if (rc != 0) {
        s_fail(self->owner, "mdb_txn_renew", rc);
        return NULL;
    }
    return self->txn;
}

void store_reader_end(store_reader_t *self)
{
    mdb_txn_reset(self->txn);
}

void store_reader_close(store_reader_t *self)
{
    if (self->txn)
        mdb_txn_abort(self->txn);
    self->txn = NULL;
}

int store_page(MDB_txn *txn, MDB_dbi dbi, const char *after, size_t max_key, int limit,
               store_page_fn *fn, void *arg, int *count, bool *more, const char *owner,
               const char *what)
{
    *count = 0;
    if (more)
        *more = false;
    MDB_cursor *cursor = NULL;
    int result = -1;
    int rc = mdb_cursor_open(txn, dbi, &cursor);
    if (rc != 0) {
        s_fail(owner, what, rc);
        goto cleanup;
    }
    MDB_val key = {0}, val = {0};
    rc = kv_cursor_after(cursor, after, max_key, &key, &val);
    int n = 0;
    while (rc == 0 && n < limit) {
        if (fn(&key, &val, n, arg) != 0)
            goto cleanup;
        n++;
        /* With more, the step past the last entry tells whether one
         * follows; without, it is not taken. */
        if (n < limit || more)
            rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        s_fail(owner, what, rc);
        goto cleanup;
    }
    *count = n;
    if (more)
        *more = rc == 0;
    result = 0;
cleanup:
    if (cursor)
        mdb_cursor_close(cursor);
    return result;
}

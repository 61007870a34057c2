/*  kv.h - a thin layer over one LMDB environment (one per domain).
 *
 *  An environment holds named databases (a database per service); the
 *  handles are opened once, at kv_open, in one write transaction, which
 *  LMDB requires before threads may use them. After that every thread
 *  opens its own transactions on kv_mdb(env) with kv_dbi(env, i), i being
 *  the index of the name in the list given to kv_open.
 *
 *  The environment is opened with MDB_NOTLS: a read transaction belongs to
 *  its MDB_txn, not to the thread, so a store handle may keep one and
 *  reset/renew it, several handles may do so on one thread, and a handle
 *  may move between threads (one at a time).
 *
 *  Durability: the environment is opened without MDB_NOSYNC, so a commit
 *  returns after the data is on disk; write ops are acknowledged only
 *  after their commit.
 *
 *  Ownership: kv_t is shared by all the workers of a domain and closed by
 *  whoever opened it, after they have stopped.
 */
#ifndef RETAIL_KV_H
#define RETAIL_KV_H

#include <lmdb.h>
#include <stddef.h>

typedef struct kv_t kv_t;

#define KV_MAX_DBS 16

/* Opens (creating) the environment in directory path (made if missing),
 * with a map of map_size bytes and the named databases, all created if
 * missing (flags[i] are extra mdb_dbi_open flags such as MDB_DUPSORT, or
 * NULL for none). NULL on failure with a message in err. */
kv_t *kv_open(const char *path, size_t map_size, const char *const *names, const unsigned *flags,
              int count, char *err, size_t errlen);
void kv_close(kv_t **self_p);

MDB_env *kv_mdb(kv_t *self);
MDB_dbi kv_dbi(kv_t *self, int index);

#endif

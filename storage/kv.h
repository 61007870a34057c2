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
 *  Group commit: LMDB runs one write transaction at a time and a durable
 *  commit costs two disk flushes, so every write goes to a queue that one
 *  thread of the environment (its committer) drains: it takes every write
 *  queued while its last commit was under way into one transaction, each
 *  write in a nested transaction of its own (a write that fails is undone
 *  alone), then commits once for all. A write is done only once the
 *  commit holding it is on disk. A lone write pays nothing extra but a
 *  thread hand-off: a batch of one runs in the top transaction itself.
 *
 *  Two ways to write: kv_write waits for its commit (a caller that may
 *  block); kv_submit returns at once and hands the finished job to an
 *  inbox (kv_inbox_t), whose descriptor becomes readable, so an event
 *  loop (actors/worker.c) keeps serving while its writes wait for the
 *  disk, and a batch can hold more writes than there are threads.
 *
 *  No room (kv_no_space): a write that finds the map at its size or the
 *  filesystem full fails whole, changes nothing, and leaves the
 *  environment usable: reads go on, and the same write succeeds once
 *  space is freed, without a reopen. Stores answer STORE_NO_SPACE for it
 *  (kv_status), services 503 unavailable "storage is full".
 *
 *  The map's size is a limit kept by kv, with headroom behind it: LMDB's
 *  own map is larger (KV_HEADROOM), and once the pages in use reach the
 *  limit an ordinary write is refused before it runs, while a freeing
 *  write (kv_write_freeing: deletes, an outbox's trim) still runs in the
 *  headroom. Without it a delete, which needs new pages for its
 *  copy-on-write before it frees the old, could be refused like the
 *  creates, and nothing could make room short of a bigger map.
 *
 *  Ownership: kv_t is shared by all the workers of a domain and closed by
 *  whoever opened it, after they have stopped (kv_close finishes the
 *  writes still queued, then stops the committer).
 */
#ifndef RETAIL_KV_H
#define RETAIL_KV_H

#include "storage/status.h"

#include <lmdb.h>
#include <stdbool.h>
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

/* A write: runs in txn and returns 0 to keep what it did, anything else
 * to have it undone (and that value handed back to its caller). It runs
 * on the committer's thread, so it must use only txn and arg, and must
 * not call kv_write or kv_submit itself nor end txn. */
typedef int kv_write_fn(MDB_txn *txn, void *arg);

/* Runs fn(txn, arg) in a write transaction, possibly shared with other
 * writes (group commit, above), and returns once that transaction is on
 * disk. *result gets fn's return value. The function returns 0 when the
 * transaction committed (a write that fn refused changed nothing either
 * way), or the LMDB error that stopped it (begin or commit): then nothing
 * of fn is stored and *result must be ignored. Safe from any number of
 * threads. */
int kv_write(kv_t *self, kv_write_fn *fn, void *arg, int *result);

/* The same for a write that frees space (it deletes, or marks so that a
 * trim may delete): it runs even when the pages in use have reached the
 * map's limit, in the headroom kept for it (above). A write that mostly
 * adds must not be one: the headroom is a bounded reserve. */
int kv_write_freeing(kv_t *self, kv_write_fn *fn, void *arg, int *result);

/* A write that does not wait (kv_submit). The submitter sets fn and arg
 * (and may use cookie to find its own context again), and owns the job:
 * it must keep the job and whatever arg points to alive and untouched
 * until an inbox hands the job back; then result and rc are as
 * kv_write's *result and return value. */
typedef struct kv_job_t kv_job_t;
typedef struct kv_inbox_t kv_inbox_t;
struct kv_job_t {
    kv_write_fn *fn;
    void *arg;
    void *cookie;
    bool freeing; /* kv_write_freeing's kind of write; false: an ordinary one */
    int result;   /* fn's */
    int rc;       /* LMDB's for the transaction */
    /* the environment's, while the job is out */
    bool done;
    kv_inbox_t *inbox;
    kv_job_t *next;
};

/* Queues job (fn, arg set) for the next batch and returns at once; when
 * its transaction has committed (or failed) the job goes to inbox. */
void kv_submit(kv_t *self, kv_job_t *job, kv_inbox_t *inbox);

/* Where finished jobs wait for their submitter: a list and a descriptor
 * (an eventfd) that is readable while the list may hold jobs. One
 * consumer thread; any number of environments may deliver to one inbox.
 * NULL when it cannot be made. */
kv_inbox_t *kv_inbox_new(void);
/* Only once no job given to the inbox is still out. */
void kv_inbox_destroy(kv_inbox_t **self_p);
int kv_inbox_fd(kv_inbox_t *self);
/* The finished jobs, oldest first, linked by next (NULL for none), and
 * the descriptor is drained. The jobs are the caller's again. */
kv_job_t *kv_inbox_take(kv_inbox_t *self);

/* Counters since kv_open, for benchmarks and tests: calls of kv_write
 * that ran (writes) and write transactions committed for them (commits;
 * LMDB skips the disk flush of one that changed nothing). */
void kv_write_stats(kv_t *self, unsigned long *writes, unsigned long *commits);

/* Writes queued for the next transaction now (not counting a batch being
 * written); for tests that need a batch of a known size. */
int kv_write_pending(kv_t *self);

/* Off: every kv_write is a transaction of its own, as without group
 * commit; for benchmarks that compare the two. On at kv_open, unless the
 * environment has RETAIL_KV_GROUP_COMMIT=0 (for a whole process, through
 * HTTP: tools/bench/checkout.sh). */
void kv_set_group_commit(kv_t *self, bool on);

/* The map's limit, in bytes (kv_open's map_size): from now on ordinary
 * writes stop when the pages in use reach it. At most the size kv_open
 * gave, rounded down to pages (LMDB's map stays as it was opened, with
 * its headroom); for tests, and for raising a limit lowered before. */
void kv_set_limit(kv_t *self, size_t bytes);

/* The pages in use as the committer last counted them (the data file's
 * pages less those on LMDB's free list; counted only near the limit, the
 * file's pages otherwise) and the limit in pages; for tests. */
void kv_room(kv_t *self, size_t *used_pages, size_t *limit_pages);

/* After each commit that stored something, the committer adds 1 to the
 * eventfd fd (a relay waits on it: actors/relay.h); -1 stops that, and
 * once kv_notify returns the old descriptor is not written again. One
 * descriptor per environment; the caller owns it. */
void kv_notify(kv_t *self, int fd);

/* Keyset pagination: puts cursor on the first key after `after` (after
 * "" : the first key), where keys are at most max_key bytes, and returns
 * mdb_cursor_get's status (MDB_NOTFOUND past the end) with key and val
 * set. "key > after" equals "key > after's first max_key bytes" (a key
 * equal to that prefix is shorter than after, so smaller, and is skipped
 * like an equal one), and the cut keeps the key within LMDB's limit. */
int kv_cursor_after(MDB_cursor *cursor, const char *after, size_t max_key, MDB_val *key,
                    MDB_val *val);

/* Whether rc, an error of kv_write (or a kv_submit job's rc), or of an
 * LMDB call inside a write function, means the write found no room: the
 * map is at its size (MDB_MAP_FULL) or the filesystem is full (ENOSPC,
 * EDQUOT; a commit's short write, which LMDB reports as EIO, is handed
 * back as ENOSPC when the filesystem has under KV_NO_SPACE_SLACK bytes
 * left). Nothing of such a write is stored and the environment stays
 * usable. */
bool kv_no_space(int rc);
#define KV_NO_SPACE_SLACK ((unsigned long long)1 << 20)

/* LMDB's map is the limit plus this much (an eighth, at least 4 MiB):
 * room for freeing writes, and for the ordinary ones admitted just below
 * the limit. Within KV_NEAR of it (a sixteenth, at least 1 MiB, at most
 * half the limit) writes run one at a time, each admitted on a fresh
 * count, so none overshoots by more than its own size; further away a
 * batch would have to grow by more than KV_NEAR + KV_HEADROOM to reach
 * LMDB's own limit. */
#define KV_HEADROOM(limit) ((limit) / 8 > ((size_t)4 << 20) ? (limit) / 8 : ((size_t)4 << 20))
#define KV_NEAR(limit)                                                                             \
    ((limit) / 16 > ((size_t)1 << 20)  ? (limit) / 16                                              \
     : (limit) / 2 < ((size_t)1 << 20) ? (limit) / 2                                               \
                                       : ((size_t)1 << 20))

/* A store's status for rc: STORE_OK for 0, STORE_NO_SPACE when
 * kv_no_space(rc), else STORE_ERROR. */
store_status_t kv_status(int rc);

#endif

/*  kv.c - one LMDB environment and its named databases (see kv.h).
 *
 *  kv_open creates the directory (0700: the stores hold password hashes
 *  and tokens), then the environment (files 0600), and opens every named
 *  database in a single write transaction that it commits before anyone
 *  else sees the handle, so the dbi numbers are valid in every later
 *  transaction of every thread.
 *
 *  The environment is opened with MDB_NOTLS. Without it LMDB ties a read
 *  transaction's reader slot to the thread, so two handles that each keep
 *  a reset read transaction for renewal (user_store's LMDB handles, and
 *  other stores of the same domain in the same actor) would share one
 *  slot when they live on one thread. With MDB_NOTLS the slot belongs to
 *  the MDB_txn, and a store handle may also move between threads.
 *
 *  No MDB_NOSYNC or MDB_NOMETASYNC: a commit is on disk when it returns.
 *
 *  Group commit: kv_write and kv_submit put a job on a queue under a
 *  mutex, and wake the committer, a thread started by kv_open. It takes
 *  the whole queue (at most KV_WRITE_BATCH_MAX jobs), runs each job in a
 *  nested transaction of one write transaction (child committed when the
 *  job returns 0, aborted otherwise), commits once, and then hands each
 *  job back: a kv_write's is marked done and its waiter woken, a
 *  kv_submit's goes to its inbox. Jobs that queue meanwhile make the next
 *  batch, so the batch grows with the load and a commit never waits for
 *  company. A batch of one runs in the top transaction (no nested
 *  transaction to pay for). If the commit fails, every job of the batch
 *  gets the error, including those that refused: their answer may have
 *  rested on a write of the batch that is now gone. The batch bound keeps
 *  a commit's latency and dirty pages in check. A kv_write's job lives on
 *  its caller's stack, safe because the caller waits until it is done;
 *  a kv_submit's belongs to its submitter (kv.h).
 *
 *  An inbox is a list under its own mutex and an eventfd: the committer
 *  appends and adds 1; the consumer reads the count to zero and takes the
 *  list. Adding after appending means a consumer woken by the descriptor
 *  always finds what woke it (or took it on an earlier wake).
 *
 *  Nested transactions rule out MDB_WRITEMAP: never add it to kv_open.
 *  Without it LMDB maps the data file read-only and writes it with
 *  pwrite, so a full filesystem is an error of the commit (ENOSPC, or
 *  EIO for a short write: see below), never a SIGBUS. The lock file, the
 *  readers' table, is the one file written through a shared map: a
 *  reader slot on a page first touched while the filesystem is full would
 *  be SIGBUS on a filesystem that allocates on first write (tmpfs, a
 *  sparse file on ext4), so kv_open allocates the whole file's blocks
 *  (fallocate; a warning where the filesystem cannot).
 *
 *  No room (kv_no_space). A write function whose put finds the map full
 *  gets MDB_MAP_FULL and refuses (its nested transaction is aborted, the
 *  rest of the batch goes on: LMDB marks only the child as failed and
 *  gives the parent back its free-page state). A commit that finds the
 *  map or the filesystem full fails whole and LMDB aborts it: the meta
 *  page, the only page a commit overwrites in place, is written last and
 *  only after every new page is, so the environment stays at the last
 *  commit, and the next transaction starts from there (no reopen, the
 *  committer goes on). LMDB answers a short write with EIO (it cannot
 *  tell why); when the filesystem then has under KV_NO_SPACE_SLACK bytes
 *  left, the committer hands back ENOSPC instead, so that a full disk is
 *  told from a failing one. It logs the first failure for want of room
 *  and the first commit after it, not every batch between.
 *
 *  The map's limit (kv.h): kv_open gives LMDB a map of map_size plus
 *  KV_HEADROOM and keeps map_size as the limit. After each commit that
 *  stored something the committer counts the pages in use: the data
 *  file's (the last page of the committed meta + 1), less, when that is
 *  within KV_NEAR of the limit, the pages on LMDB's free list (database 0,
 *  whose values are lists of page numbers, each led by its count; what
 *  mdb_stat -f adds up). Far from the limit batches are as above; near it
 *  every write is a batch of its own, and once the count reaches the
 *  limit an ordinary write is refused before it runs (MDB_MAP_FULL,
 *  nothing run, logged like a commit without room) while a freeing one
 *  runs. So an admin's deletes, and an outbox's trim, always find room,
 *  and the ordinary writes come back once they have brought the count
 *  below the limit. Pages freed but still held by an old reader count as
 *  free: the headroom covers that.
 *
 *  Not covered: a filesystem where overwriting an allocated block can
 *  fail for space (copy-on-write ones: btrfs, ZFS). There the meta page's
 *  write may fail, LMDB then marks the environment broken (MDB_PANIC for
 *  every later transaction) and only a restart of the process helps.
 */
#include "storage/kv.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#define KV_WRITE_BATCH_MAX 128

struct kv_inbox_t {
    pthread_mutex_t lock;
    kv_job_t *head, *tail;
    int fd;
};

struct kv_t {
    MDB_env *env;
    int lock_fd;   /* lock.mdb, kept open while env is (s_lock_file_allocate) */
    char *path;    /* the environment's directory: its filesystem's free space */
    bool no_space; /* the committer's: its last failure was for want of room */
    /* the map's limit (kv.h), in pages of psize; under lock but psize */
    size_t psize, limit_pages, max_limit_pages, near_pages, used_pages;
    bool recount; /* kv_set_limit: count again before the next batch */
    MDB_dbi dbis[KV_MAX_DBS];
    int count;
    /* group commit: the queue and its committer */
    pthread_mutex_t lock;
    pthread_cond_t work;   /* the committer waits for jobs */
    pthread_cond_t served; /* kv_write callers wait for theirs */
    kv_job_t *head, *tail;
    int pending;
    bool group;
    bool stopping;
    bool committer_started;
    pthread_t committer;
    unsigned long writes, commits;
    int notify_fd; /* signalled after each commit (kv_notify); -1: none */
};

static void *s_committer_run(void *arg);
static size_t s_count_used(kv_t *self, size_t limit);

/* mkdir -p with mode 0700 for what it creates; existing levels are left
 * as they are (their owner chose their mode). */
static int s_mkdirs(const char *path, char *err, size_t errlen)
{
    char *copy = strdup(path);
    if (!copy) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = 0;
    /* Each '/' after the first character ends a parent level; the loop
     * body runs once more for the whole path. */
    for (char *p = copy + 1;; p++) {
        bool last = *p == '\0';
        if (*p != '/' && !last)
            continue;
        *p = '\0';
        if (mkdir(copy, 0700) != 0 && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", copy, strerror(errno));
            rc = -1;
            break;
        }
        if (last)
            break;
        *p = '/';
    }
    free(copy);
    if (rc == 0) {
        struct stat st;
        if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
            snprintf(err, errlen, "%s is not a directory", path);
            rc = -1;
        }
    }
    return rc;
}

/* Allocates every block of path/lock.mdb (kv.c's top comment: a reader
 * slot written through the map must never meet a full filesystem). Its
 * size is LMDB's, set by mdb_env_open; mode 0 neither changes the size
 * nor the bytes, so it is safe while other processes use the file.
 * Returns the descriptor, which the caller keeps open until after
 * mdb_env_close (-1 when the file could not be opened): LMDB holds POSIX
 * record locks on this file, and closing any descriptor of it releases
 * every such lock the process holds, after which another process opening
 * the environment believes it alone and resets the readers' table under
 * our feet (found when retailctl check-record read the users store of a
 * running retaild: its logins then failed). */
static int s_lock_file_allocate(const char *path)
{
    char *lock = zsys_sprintf("%s/lock.mdb", path);
    int fd = lock ? open(lock, O_RDWR | O_CLOEXEC) : -1;
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0)
        zsys_warning("kv: %s: cannot open: %s", lock ? lock : path, strerror(errno));
    else if (st.st_size > 0 && fallocate(fd, 0, 0, st.st_size) != 0)
        zsys_warning("kv: %s: cannot allocate its blocks (%s): a reader that starts while the "
                     "disk is full may crash the process",
                     lock, strerror(errno));
    zstr_free(&lock);
    return fd;
}

kv_t *kv_open(const char *path, size_t map_size, const char *const *names, const unsigned *flags,
              int count, char *err, size_t errlen)
{
    if (!path || !*path || count < 0 || count > KV_MAX_DBS || (count > 0 && !names)) {
        snprintf(err, errlen, "kv_open: bad arguments (at most %d databases)", KV_MAX_DBS);
        return NULL;
    }
    if (s_mkdirs(path, err, errlen) != 0)
        return NULL;

    kv_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->count = count;
    self->lock_fd = -1;
    self->path = strdup(path);
    if (!self->path) {
        snprintf(err, errlen, "out of memory");
        free(self);
        return NULL;
    }
    /* A benchmark's switch (tools/bench/checkout.sh): RETAIL_KV_GROUP_COMMIT=0
     * makes every store of the process commit each write alone. */
    const char *group = getenv("RETAIL_KV_GROUP_COMMIT");
    self->notify_fd = -1;
    self->group = !(group && strcmp(group, "0") == 0);
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->work, NULL);
    pthread_cond_init(&self->served, NULL);
    MDB_txn *txn = NULL;
    const char *step = "mdb_env_create";
    int rc = mdb_env_create(&self->env);
    if (rc != 0)
        goto cleanup;
    step = "mdb_env_set_maxdbs";
    /* At least one, so that an environment opened with no names can still
     * be given databases by a later version of kv_open. */
    rc = mdb_env_set_maxdbs(self->env, count > 0 ? (MDB_dbi)count : 1);
    if (rc != 0)
        goto cleanup;
    step = "mdb_env_set_mapsize";
    rc = mdb_env_set_mapsize(self->env, map_size + KV_HEADROOM(map_size));
    if (rc != 0)
        goto cleanup;
    step = "mdb_env_open";
    rc = mdb_env_open(self->env, path, MDB_NOTLS, 0600);
    if (rc != 0)
        goto cleanup;
    self->lock_fd = s_lock_file_allocate(path);
    MDB_stat st;
    step = "mdb_env_stat";
    rc = mdb_env_stat(self->env, &st);
    if (rc != 0)
        goto cleanup;
    self->psize = st.ms_psize;
    self->limit_pages = self->max_limit_pages = map_size / self->psize;
    self->near_pages = KV_NEAR(map_size) / self->psize;
    /* Reader slots of processes that died (kill -9, crash) would pin old
     * pages forever and grow the file; clear them while we are alone. */
    int dead = 0;
    step = "mdb_reader_check";
    rc = mdb_reader_check(self->env, &dead);
    if (rc != 0)
        goto cleanup;
    step = "mdb_txn_begin";
    rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc != 0)
        goto cleanup;
    for (int i = 0; i < count; i++) {
        step = names[i];
        unsigned extra = flags ? flags[i] : 0;
        rc = mdb_dbi_open(txn, names[i], MDB_CREATE | extra, &self->dbis[i]);
        if (rc != 0)
            goto cleanup;
    }
    step = "mdb_txn_commit";
    rc = mdb_txn_commit(txn);
    txn = NULL; /* a commit frees the transaction even when it fails */
    if (rc != 0)
        goto cleanup;
    self->used_pages = s_count_used(self, self->limit_pages);
    step = "pthread_create";
    rc = pthread_create(&self->committer, NULL, s_committer_run, self);
    if (rc != 0) {
        snprintf(err, errlen, "%s: cannot start its committer: %s", path, strerror(rc));
        rc = 0;
        goto cleanup;
    }
    self->committer_started = true;
    return self;

cleanup:
    if (rc != 0)
        snprintf(err, errlen, "%s: %s: %s", path, step, mdb_strerror(rc));
    if (txn)
        mdb_txn_abort(txn);
    if (self->env)
        mdb_env_close(self->env);
    if (self->lock_fd >= 0)
        close(self->lock_fd);
    pthread_cond_destroy(&self->work);
    pthread_cond_destroy(&self->served);
    pthread_mutex_destroy(&self->lock);
    free(self->path);
    free(self);
    return NULL;
}

void kv_close(kv_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kv_t *self = *self_p;
    /* The committer writes what is still queued, then ends. */
    pthread_mutex_lock(&self->lock);
    self->stopping = true;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->lock);
    if (self->committer_started)
        pthread_join(self->committer, NULL);
    /* Closing the environment closes the dbi handles too; every
     * transaction must have ended (the owner closes after its workers). */
    mdb_env_close(self->env);
    if (self->lock_fd >= 0)
        close(self->lock_fd);
    pthread_cond_destroy(&self->work);
    pthread_cond_destroy(&self->served);
    pthread_mutex_destroy(&self->lock);
    free(self->path);
    free(self);
    *self_p = NULL;
}

MDB_env *kv_mdb(kv_t *self)
{
    assert(self);
    return self->env;
}

MDB_dbi kv_dbi(kv_t *self, int index)
{
    assert(self && index >= 0 && index < self->count);
    return self->dbis[index];
}

/* ---- group commit ---- */

/* Whether the environment's filesystem has under KV_NO_SPACE_SLACK
 * bytes left for this process (f_bavail: what an unprivileged writer may
 * use; root may have more, but not much). */
static bool s_filesystem_full(const kv_t *self)
{
    struct statvfs fs;
    if (statvfs(self->path, &fs) != 0)
        return false;
    return (unsigned long long)fs.f_bavail * fs.f_frsize < KV_NO_SPACE_SLACK;
}

/* A batch's outcome, rc (0 committed, or why not), as handed back: a
 * short write (EIO) on a full filesystem becomes ENOSPC. Logs a failure,
 * one for want of room only when the previous batch did not fail so;
 * stored: whether some job of the batch kept its changes. */
static int s_classify(kv_t *self, int rc, bool stored)
{
    if (rc == EIO && s_filesystem_full(self))
        rc = ENOSPC;
    if (rc == 0) {
        if (self->no_space && stored) {
            zsys_info("kv: %s: writes commit again", self->path);
            self->no_space = false;
        }
    } else if (kv_no_space(rc)) {
        if (!self->no_space)
            zsys_error("kv: %s: a write found no room (%s); writes fail until space is freed",
                       self->path, mdb_strerror(rc));
        self->no_space = true;
    } else {
        zsys_error("kv: %s: write transaction failed: %s", self->path, mdb_strerror(rc));
        self->no_space = false;
    }
    return rc;
}

/* The pages in use (kv.c's top comment): the data file's, less those on
 * LMDB's free list when the file is within near_pages of limit. */
static size_t s_count_used(kv_t *self, size_t limit)
{
    MDB_envinfo info;
    if (mdb_env_info(self->env, &info) != 0)
        return 0;
    size_t file_pages = info.me_last_pgno + 1;
    if (file_pages + self->near_pages <= limit)
        return file_pages;
    size_t free_pages = 0;
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    int rc = mdb_txn_begin(self->env, NULL, MDB_RDONLY, &txn);
    if (rc == 0)
        rc = mdb_cursor_open(txn, 0 /* LMDB's free list */, &cursor);
    MDB_val k, v;
    for (rc = rc == 0 ? mdb_cursor_get(cursor, &k, &v, MDB_FIRST) : rc; rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        size_t count = 0; /* each value: its count of page numbers, then them */
        if (v.mv_size >= sizeof count)
            memcpy(&count, v.mv_data, sizeof count);
        free_pages += count;
    }
    if (rc != MDB_NOTFOUND)
        zsys_warning("kv: %s: cannot count the free pages: %s", self->path, mdb_strerror(rc));
    if (cursor)
        mdb_cursor_close(cursor);
    if (txn)
        mdb_txn_abort(txn);
    return free_pages < file_pages ? file_pages - free_pages : 0;
}

/* Runs the n jobs from first in one transaction and commits it; sets
 * each job's result and rc (not done: the caller marks that). Whether a
 * commit was made. */
static bool s_write_batch(kv_t *self, kv_job_t *first, int n, bool at_limit)
{
    if (at_limit && n == 1 && !first->freeing) {
        /* refused before it runs: the pages in use are at the limit */
        first->result = 0;
        first->rc = s_classify(self, MDB_MAP_FULL, false);
        return false;
    }
    MDB_txn *txn = NULL;
    bool stored = false;
    int rc = mdb_txn_begin(self->env, NULL, 0, &txn);
    if (rc == 0 && n == 1) {
        first->result = first->fn(txn, first->arg);
        if (first->result != 0) {
            mdb_txn_abort(txn); /* refused: nothing to write */
            first->rc = 0;
            return false;
        }
        stored = true;
        rc = mdb_txn_commit(txn);
    } else if (rc == 0) {
        kv_job_t *job = first;
        for (int i = 0; i < n && rc == 0; i++, job = job->next) {
            MDB_txn *child = NULL;
            rc = mdb_txn_begin(self->env, txn, 0, &child);
            if (rc != 0)
                break;
            job->result = job->fn(child, job->arg);
            if (job->result == 0) {
                rc = mdb_txn_commit(child);
                stored = true;
            } else
                mdb_txn_abort(child);
        }
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        else
            mdb_txn_abort(txn);
    }
    rc = s_classify(self, rc, stored);
    kv_job_t *job = first;
    for (int i = 0; i < n; i++, job = job->next)
        job->rc = rc;
    return rc == 0;
}

/* Hands a finished job of kv_submit to its inbox. */
static void s_deliver(kv_inbox_t *inbox, kv_job_t *job)
{
    job->next = NULL;
    pthread_mutex_lock(&inbox->lock);
    if (inbox->tail)
        inbox->tail->next = job;
    else
        inbox->head = job;
    inbox->tail = job;
    pthread_mutex_unlock(&inbox->lock);
    uint64_t one = 1;
    /* Only fails when the counter would overflow, far beyond any queue. */
    if (write(inbox->fd, &one, sizeof one) != sizeof one)
        zsys_error("kv: cannot signal an inbox: %s", strerror(errno));
}

static void *s_committer_run(void *arg)
{
    kv_t *self = arg;
    pthread_mutex_lock(&self->lock);
    for (;;) {
        while (!self->head && !self->stopping)
            pthread_cond_wait(&self->work, &self->lock);
        if (!self->head)
            break; /* stopping, and nothing left */
        if (self->recount) {
            self->recount = false;
            size_t limit = self->limit_pages;
            pthread_mutex_unlock(&self->lock);
            size_t used = s_count_used(self, limit);
            pthread_mutex_lock(&self->lock);
            self->used_pages = used;
        }
        /* Near the limit, one write at a time, each on a fresh count. */
        bool near = self->used_pages + self->near_pages > self->limit_pages;
        bool at_limit = self->used_pages >= self->limit_pages;
        size_t limit = self->limit_pages;
        kv_job_t *first = self->head;
        int n = !self->group || near || at_limit     ? 1
                : self->pending < KV_WRITE_BATCH_MAX ? self->pending
                                                     : KV_WRITE_BATCH_MAX;
        kv_job_t *last = first;
        for (int i = 1; i < n; i++)
            last = last->next;
        self->head = last->next;
        if (!self->head)
            self->tail = NULL;
        last->next = NULL;
        self->pending -= n;
        pthread_mutex_unlock(&self->lock);

        bool committed = s_write_batch(self, first, n, at_limit);
        size_t used = committed ? s_count_used(self, limit) : 0;
        /* Counted before any job is handed back, so whoever learns of a
         * finished write also sees it counted. */
        pthread_mutex_lock(&self->lock);
        if (committed)
            self->used_pages = used;
        self->writes += (unsigned long)n;
        self->commits += committed;
        /* Under the lock, so that once kv_notify(-1) returns nothing
         * writes to the old descriptor. */
        uint64_t one = 1;
        if (committed && self->notify_fd >= 0 &&
            write(self->notify_fd, &one, sizeof one) != sizeof one && errno != EAGAIN)
            zsys_error("kv: cannot signal a commit: %s", strerror(errno));
        pthread_mutex_unlock(&self->lock);

        /* Submitted jobs go to their inboxes (from then on they are their
         * owners', so next is read first); the waiting ones are gathered
         * to be marked done under the lock. */
        kv_job_t *waiting = NULL;
        for (kv_job_t *j = first, *next; j; j = next) {
            next = j->next;
            if (j->inbox)
                s_deliver(j->inbox, j);
            else {
                j->next = waiting;
                waiting = j;
            }
        }
        pthread_mutex_lock(&self->lock);
        for (kv_job_t *j = waiting, *next; j; j = next) {
            next = j->next; /* a job marked done may leave its caller's stack */
            j->done = true;
        }
        if (waiting)
            pthread_cond_broadcast(&self->served);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

/* Puts job on the queue; the lock is held. */
static void s_enqueue(kv_t *self, kv_job_t *job)
{
    job->next = NULL;
    job->done = false;
    if (self->tail)
        self->tail->next = job;
    else
        self->head = job;
    self->tail = job;
    self->pending++;
    pthread_cond_signal(&self->work);
}

/* kv_write and kv_write_freeing. */
static int s_write_wait(kv_t *self, kv_write_fn *fn, void *arg, int *result, bool freeing)
{
    assert(self && fn && result);
    kv_job_t job = {.fn = fn, .arg = arg, .freeing = freeing};
    pthread_mutex_lock(&self->lock);
    s_enqueue(self, &job);
    while (!job.done)
        pthread_cond_wait(&self->served, &self->lock);
    pthread_mutex_unlock(&self->lock);
    *result = job.result;
    return job.rc;
}

int kv_write(kv_t *self, kv_write_fn *fn, void *arg, int *result)
{
    return s_write_wait(self, fn, arg, result, false);
}

int kv_write_freeing(kv_t *self, kv_write_fn *fn, void *arg, int *result)
{
    return s_write_wait(self, fn, arg, result, true);
}

void kv_submit(kv_t *self, kv_job_t *job, kv_inbox_t *inbox)
{
    assert(self && job && job->fn && inbox);
    job->inbox = inbox;
    pthread_mutex_lock(&self->lock);
    s_enqueue(self, job);
    pthread_mutex_unlock(&self->lock);
}

kv_inbox_t *kv_inbox_new(void)
{
    kv_inbox_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->fd < 0) {
        free(self);
        return NULL;
    }
    pthread_mutex_init(&self->lock, NULL);
    return self;
}

void kv_inbox_destroy(kv_inbox_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    kv_inbox_t *self = *self_p;
    close(self->fd);
    pthread_mutex_destroy(&self->lock);
    free(self);
    *self_p = NULL;
}

int kv_inbox_fd(kv_inbox_t *self)
{
    assert(self);
    return self->fd;
}

kv_job_t *kv_inbox_take(kv_inbox_t *self)
{
    assert(self);
    uint64_t count;
    /* EAGAIN: nothing was added since the last take; the list may still
     * hold what an earlier wake did not take. */
    if (read(self->fd, &count, sizeof count) < 0 && errno != EAGAIN)
        zsys_error("kv: cannot read an inbox: %s", strerror(errno));
    pthread_mutex_lock(&self->lock);
    kv_job_t *jobs = self->head;
    self->head = self->tail = NULL;
    pthread_mutex_unlock(&self->lock);
    return jobs;
}

void kv_write_stats(kv_t *self, unsigned long *writes, unsigned long *commits)
{
    assert(self);
    pthread_mutex_lock(&self->lock);
    if (writes)
        *writes = self->writes;
    if (commits)
        *commits = self->commits;
    pthread_mutex_unlock(&self->lock);
}

int kv_write_pending(kv_t *self)
{
    assert(self);
    pthread_mutex_lock(&self->lock);
    int n = self->pending;
    pthread_mutex_unlock(&self->lock);
    return n;
}

void kv_set_group_commit(kv_t *self, bool on)
{
    assert(self);
    pthread_mutex_lock(&self->lock);
    self->group = on;
    pthread_mutex_unlock(&self->lock);
}

void kv_set_limit(kv_t *self, size_t bytes)
{
    assert(self);
    size_t pages = bytes / self->psize;
    pthread_mutex_lock(&self->lock);
    self->limit_pages = pages < self->max_limit_pages ? pages : self->max_limit_pages;
    self->recount = true;
    pthread_mutex_unlock(&self->lock);
}

void kv_room(kv_t *self, size_t *used_pages, size_t *limit_pages)
{
    assert(self);
    pthread_mutex_lock(&self->lock);
    if (used_pages)
        *used_pages = self->used_pages;
    if (limit_pages)
        *limit_pages = self->limit_pages;
    pthread_mutex_unlock(&self->lock);
}

int kv_cursor_after(MDB_cursor *cursor, const char *after, size_t max_key, MDB_val *key,
                    MDB_val *val)
{
    if (!after[0])
        return mdb_cursor_get(cursor, key, val, MDB_FIRST);
    MDB_val from = {.mv_size = strnlen(after, max_key), .mv_data = (void *)after};
    *key = from;
    int rc = mdb_cursor_get(cursor, key, val, MDB_SET_RANGE);
    if (rc == 0 && key->mv_size == from.mv_size &&
        memcmp(key->mv_data, from.mv_data, from.mv_size) == 0)
        rc = mdb_cursor_get(cursor, key, val, MDB_NEXT);
    return rc;
}

void kv_notify(kv_t *self, int fd)
{
    pthread_mutex_lock(&self->lock);
    self->notify_fd = fd;
    pthread_mutex_unlock(&self->lock);
}

bool kv_no_space(int rc)
{
    return rc == MDB_MAP_FULL || rc == ENOSPC || rc == EDQUOT;
}

store_status_t kv_status(int rc)
{
    return rc == 0 ? STORE_OK : kv_no_space(rc) ? STORE_NO_SPACE : STORE_ERROR;
}

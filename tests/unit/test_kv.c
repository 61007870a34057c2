/*  test_kv.c - the LMDB environment layer (storage/kv.h).
 *
 *  Every domain's state sits in one of these environments, so the tests
 *  check what would be costly to find out later: files that others can
 *  read (the users environment holds password hashes), a directory that is
 *  not created, database handles that do not survive a reopen (committed
 *  data must be there), extra flags such as MDB_DUPSORT being dropped, and
 *  bad arguments or unusable paths answered with a message rather than a
 *  crash.
 *
 *  Group commit (kv_write) is where a bug loses or leaks data silently,
 *  so its tests look at what is stored, not only at return values: a
 *  refused write leaves nothing, including inside a batch where its
 *  neighbours are kept; a batch is made of exactly the writes that queued
 *  while the previous one was being written (the first write holds its
 *  transaction open until kv_write_pending shows the others queued, so
 *  the number of commits is known in advance); with group commit off
 *  every accepted write is a commit of its own; and concurrent
 *  read-modify-writes across many batches lose no update.
 *
 *  cmocka's assertions jump out of the calling function, so the writer
 *  threads only record what they saw and the test thread asserts.
 */
#include "storage/kv.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int s_setup(void **state)
{
    *state = tu_tempdir("test-kv");
    return 0;
}

static int s_teardown(void **state)
{
    char *root = *state;
    tu_rmtree(root);
    zstr_free(&root);
    return 0;
}

static int s_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

static void s_put(kv_t *kv, int index, const char *key, const char *value)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(kv), NULL, 0, &txn), 0);
    MDB_val k = {strlen(key), (void *)key}, v = {strlen(value), (void *)value};
    assert_int_equal(mdb_put(txn, kv_dbi(kv, index), &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* The values under key, comma-joined, into out. */
static void s_get_all(kv_t *kv, int index, const char *key, char *out, size_t outlen)
{
    out[0] = '\0';
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(kv), NULL, MDB_RDONLY, &txn), 0);
    MDB_cursor *cursor;
    assert_int_equal(mdb_cursor_open(txn, kv_dbi(kv, index), &cursor), 0);
    MDB_val k = {strlen(key), (void *)key}, v;
    int rc = mdb_cursor_get(cursor, &k, &v, MDB_SET_KEY);
    size_t n = 0;
    while (rc == 0 && k.mv_size == strlen(key) && memcmp(k.mv_data, key, k.mv_size) == 0) {
        n += (size_t)snprintf(out + n, outlen - n, "%s%.*s", n ? "," : "", (int)v.mv_size,
                              (const char *)v.mv_data);
        rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
}

static void test_open_creates_private(void **state)
{
    const char *root = *state;
    char *path = zsys_sprintf("%s/var/users", root); /* two levels missing */
    const char *names[] = {"a", "b"};
    char err[256] = "";
    kv_t *kv = kv_open(path, 1 << 20, names, NULL, 2, err, sizeof err);
    assert_non_null(kv);
    assert_string_equal(err, "");
    assert_int_equal(s_mode(path), 0700);
    char *file = zsys_sprintf("%s/data.mdb", path);
    assert_int_equal(s_mode(file), 0600);
    zstr_free(&file);
    file = zsys_sprintf("%s/lock.mdb", path);
    assert_int_equal(s_mode(file), 0600);
    zstr_free(&file);

    /* The two databases are distinct. */
    s_put(kv, 0, "k", "in-a");
    s_put(kv, 1, "k", "in-b");
    char got[64];
    s_get_all(kv, 0, "k", got, sizeof got);
    assert_string_equal(got, "in-a");
    s_get_all(kv, 1, "k", got, sizeof got);
    assert_string_equal(got, "in-b");
    kv_close(&kv);
    assert_null(kv);
    kv_close(&kv);  /* harmless */
    kv_close(NULL); /* harmless */

    /* Reopened (existing directory, same names): the data is there. */
    kv = kv_open(path, 1 << 20, names, NULL, 2, err, sizeof err);
    assert_non_null(kv);
    s_get_all(kv, 1, "k", got, sizeof got);
    assert_string_equal(got, "in-b");
    /* A later version may add a database to an existing environment. */
    kv_close(&kv);
    const char *more[] = {"a", "b", "c"};
    kv = kv_open(path, 1 << 20, more, NULL, 3, err, sizeof err);
    assert_non_null(kv);
    s_get_all(kv, 0, "k", got, sizeof got);
    assert_string_equal(got, "in-a");
    s_put(kv, 2, "k", "in-c");
    kv_close(&kv);
    zstr_free(&path);
}

static void test_flags(void **state)
{
    const char *root = *state;
    const char *names[] = {"plain", "dups"};
    const unsigned flags[] = {0, MDB_DUPSORT};
    char err[256];
    kv_t *kv = kv_open(root, 1 << 20, names, flags, 2, err, sizeof err);
    assert_non_null(kv);
    s_put(kv, 0, "k", "1");
    s_put(kv, 0, "k", "2"); /* replaces */
    s_put(kv, 1, "k", "2");
    s_put(kv, 1, "k", "1"); /* adds, sorted */
    char got[64];
    s_get_all(kv, 0, "k", got, sizeof got);
    assert_string_equal(got, "2");
    s_get_all(kv, 1, "k", got, sizeof got);
    assert_string_equal(got, "1,2");
    kv_close(&kv);
}

static void test_refusals(void **state)
{
    const char *root = *state;
    const char *names[KV_MAX_DBS + 1];
    char buffers[KV_MAX_DBS + 1][16];
    for (int i = 0; i <= KV_MAX_DBS; i++) {
        snprintf(buffers[i], sizeof buffers[i], "db%d", i);
        names[i] = buffers[i];
    }
    char err[256] = "";
    /* Too many databases, a negative count, no names, no path. */
    assert_null(kv_open(root, 1 << 20, names, NULL, KV_MAX_DBS + 1, err, sizeof err));
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_null(kv_open(root, 1 << 20, names, NULL, -1, err, sizeof err));
    assert_true(strlen(err) > 0);
    assert_null(kv_open(root, 1 << 20, NULL, NULL, 2, err, sizeof err));
    assert_null(kv_open(NULL, 1 << 20, names, NULL, 2, err, sizeof err));
    assert_null(kv_open("", 1 << 20, names, NULL, 2, err, sizeof err));
    /* KV_MAX_DBS itself is fine. */
    kv_t *kv = kv_open(root, 1 << 20, names, NULL, KV_MAX_DBS, err, sizeof err);
    assert_non_null(kv);
    kv_close(&kv);

    /* A path under a regular file cannot be a directory. */
    char *file = zsys_sprintf("%s/plain-file", root);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    assert_int_equal(fclose(fp), 0);
    err[0] = '\0';
    assert_null(kv_open(file, 1 << 20, names, NULL, 1, err, sizeof err));
    assert_non_null(strstr(err, "plain-file"));
    char *under = zsys_sprintf("%s/sub", file);
    err[0] = '\0';
    assert_null(kv_open(under, 1 << 20, names, NULL, 1, err, sizeof err));
    assert_true(strlen(err) > 0);
    zstr_free(&under);
    zstr_free(&file);
}

/* ---- group commit (kv_write) ---- */

#define S_WAIT_MS 5000 /* bound on every wait for another thread */
#define S_QUEUED 7     /* writes queued behind the first in the batch tests */
#define S_REFUSER 3    /* the one of them that refuses */
#define S_REFUSAL 5    /* and what it returns */

static kv_t *s_open_one(const char *root)
{
    const char *names[] = {"a"};
    char err[256];
    kv_t *kv = kv_open(root, 1 << 20, names, NULL, 1, err, sizeof err);
    assert_non_null(kv);
    return kv;
}

/* One kv_write: put key -> key, then answer. The leader of a batch test
 * also signals that it runs and holds its transaction open until
 * wait_for writes are queued (or S_WAIT_MS passed). */
typedef struct {
    kv_t *kv;
    MDB_dbi dbi;
    char key[16];
    int answer;
    atomic_bool *running; /* leader only */
    int wait_for;         /* leader only */
    int saw;              /* leader only: the most writes seen queued */
    int rc, result;       /* kv_write's */
} s_writer_t;

static int s_put_fn(MDB_txn *txn, void *arg)
{
    s_writer_t *w = arg;
    MDB_val k = {strlen(w->key), w->key}, v = k;
    int rc = mdb_put(txn, w->dbi, &k, &v, 0);
    if (rc != 0)
        return rc;
    if (w->running) {
        atomic_store(w->running, true);
        int64_t deadline = zclock_mono() + S_WAIT_MS;
        while (w->saw < w->wait_for && zclock_mono() < deadline) {
            int n = kv_write_pending(w->kv);
            if (n > w->saw)
                w->saw = n;
            if (n < w->wait_for)
                zclock_sleep(1);
        }
    }
    return w->answer;
}

static void *s_writer_run(void *arg)
{
    s_writer_t *w = arg;
    w->rc = kv_write(w->kv, s_put_fn, w, &w->result);
    return NULL;
}

static void test_write_alone(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_one(root);
    unsigned long writes = 99, commits = 99;
    kv_write_stats(kv, &writes, &commits);
    assert_int_equal(writes, 0);
    assert_int_equal(commits, 0);

    s_writer_t kept = {.kv = kv, .dbi = kv_dbi(kv, 0), .key = "kept", .result = -1};
    assert_int_equal(kv_write(kv, s_put_fn, &kept, &kept.result), 0);
    assert_int_equal(kept.result, 0);
    char got[64];
    s_get_all(kv, 0, "kept", got, sizeof got); /* a read transaction begun after */
    assert_string_equal(got, "kept");
    kv_write_stats(kv, &writes, &commits);
    assert_int_equal(writes, 1);
    assert_int_equal(commits, 1);

    /* Refused after its put: the put is undone, the answer handed back,
     * and there was nothing to commit. */
    s_writer_t refused = {.kv = kv, .dbi = kv_dbi(kv, 0), .key = "refused", .answer = 7};
    assert_int_equal(kv_write(kv, s_put_fn, &refused, &refused.result), 0);
    assert_int_equal(refused.result, 7);
    s_get_all(kv, 0, "refused", got, sizeof got);
    assert_string_equal(got, "");
    kv_write_stats(kv, &writes, &commits);
    assert_int_equal(writes, 2);
    assert_int_equal(commits, 1);
    kv_write_stats(kv, NULL, NULL); /* either may be left out */

    /* What was acknowledged survives a reopen. */
    kv_close(&kv);
    kv = s_open_one(root);
    s_get_all(kv, 0, "kept", got, sizeof got);
    assert_string_equal(got, "kept");
    s_get_all(kv, 0, "refused", got, sizeof got);
    assert_string_equal(got, "");
    kv_close(&kv);
}

/* A leader whose write holds its transaction until S_QUEUED others are
 * queued behind it, one of which refuses; the stats must show
 * want_commits commits for the 1 + S_QUEUED writes. */
static void s_batch_scenario(const char *root, bool group, unsigned long want_commits)
{
    kv_t *kv = s_open_one(root);
    kv_set_group_commit(kv, group);
    atomic_bool running = false;
    s_writer_t leader = {.kv = kv,
                         .dbi = kv_dbi(kv, 0),
                         .key = "leader",
                         .running = &running,
                         .wait_for = S_QUEUED,
                         .result = -1};
    pthread_t leader_thread;
    assert_int_equal(pthread_create(&leader_thread, NULL, s_writer_run, &leader), 0);
    /* The others start only once the leader's write runs, so none of
     * them can join its batch. */
    int64_t deadline = zclock_mono() + S_WAIT_MS;
    while (!atomic_load(&running) && zclock_mono() < deadline)
        zclock_sleep(1);
    assert_true(atomic_load(&running));

    s_writer_t others[S_QUEUED];
    pthread_t threads[S_QUEUED];
    for (int i = 0; i < S_QUEUED; i++) {
        others[i] = (s_writer_t){.kv = kv,
                                 .dbi = kv_dbi(kv, 0),
                                 .answer = i == S_REFUSER ? S_REFUSAL : 0,
                                 .rc = -1,
                                 .result = -1};
        snprintf(others[i].key, sizeof others[i].key, "w%d", i);
        assert_int_equal(pthread_create(&threads[i], NULL, s_writer_run, &others[i]), 0);
    }
    pthread_join(leader_thread, NULL);
    for (int i = 0; i < S_QUEUED; i++)
        pthread_join(threads[i], NULL);

    assert_int_equal(leader.saw, S_QUEUED); /* else the batch size is unknown */
    assert_int_equal(leader.rc, 0);
    assert_int_equal(leader.result, 0);
    char got[64];
    s_get_all(kv, 0, "leader", got, sizeof got);
    assert_string_equal(got, "leader");
    for (int i = 0; i < S_QUEUED; i++) {
        assert_int_equal(others[i].rc, 0);
        s_get_all(kv, 0, others[i].key, got, sizeof got);
        if (i == S_REFUSER) {
            assert_int_equal(others[i].result, S_REFUSAL);
            assert_string_equal(got, "");
        } else {
            assert_int_equal(others[i].result, 0);
            assert_string_equal(got, others[i].key);
        }
    }
    unsigned long writes, commits;
    kv_write_stats(kv, &writes, &commits);
    assert_int_equal(writes, 1 + S_QUEUED);
    assert_int_equal(commits, want_commits);
    kv_close(&kv);
}

static void test_write_batch(void **state)
{
    /* The leader's batch, then one of all the writes that queued. */
    s_batch_scenario(*state, true, 2);
}

static void test_write_no_group(void **state)
{
    /* One commit per accepted write: the leader's and the queued ones
     * but the refused. */
    s_batch_scenario(*state, false, 1 + S_QUEUED - 1);
}

#define S_COUNTERS 8
#define S_INCREMENTS 200
#define S_REFUSE_EVERY 10 /* and one refused increment after every 10th */

/* Adds 1 to the 8-byte counter under "counter"; answer != 0 refuses
 * after the increment, which must then be undone. */
typedef struct {
    MDB_dbi dbi;
    int answer;
} s_increment_t;

static int s_increment_fn(MDB_txn *txn, void *arg)
{
    const s_increment_t *inc = arg;
    MDB_val k = {7, "counter"}, v;
    uint64_t n = 0;
    int rc = mdb_get(txn, inc->dbi, &k, &v);
    if (rc == 0 && v.mv_size == sizeof n)
        memcpy(&n, v.mv_data, sizeof n);
    else if (rc != MDB_NOTFOUND)
        return rc ? rc : -1;
    n++;
    v = (MDB_val){sizeof n, &n};
    rc = mdb_put(txn, inc->dbi, &k, &v, 0);
    return rc ? rc : inc->answer;
}

typedef struct {
    kv_t *kv;
    int failures; /* calls that did not answer as expected */
} s_counter_t;

static void *s_counter_run(void *arg)
{
    s_counter_t *c = arg;
    for (int i = 1; i <= S_INCREMENTS; i++) {
        s_increment_t inc = {.dbi = kv_dbi(c->kv, 0)};
        int result = -1;
        if (kv_write(c->kv, s_increment_fn, &inc, &result) != 0 || result != 0)
            c->failures++;
        if (i % S_REFUSE_EVERY == 0) {
            inc.answer = 1;
            if (kv_write(c->kv, s_increment_fn, &inc, &result) != 0 || result != 1)
                c->failures++;
        }
    }
    return NULL;
}

static uint64_t s_counter(kv_t *kv)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(kv), NULL, MDB_RDONLY, &txn), 0);
    MDB_val k = {7, "counter"}, v;
    assert_int_equal(mdb_get(txn, kv_dbi(kv, 0), &k, &v), 0);
    uint64_t n;
    assert_int_equal(v.mv_size, sizeof n);
    memcpy(&n, v.mv_data, sizeof n);
    mdb_txn_abort(txn);
    return n;
}

static void test_write_no_lost_update(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_one(root);
    s_counter_t counters[S_COUNTERS];
    pthread_t threads[S_COUNTERS];
    for (int i = 0; i < S_COUNTERS; i++) {
        counters[i] = (s_counter_t){.kv = kv};
        assert_int_equal(pthread_create(&threads[i], NULL, s_counter_run, &counters[i]), 0);
    }
    for (int i = 0; i < S_COUNTERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < S_COUNTERS; i++)
        assert_int_equal(counters[i].failures, 0);

    const unsigned long accepted = S_COUNTERS * S_INCREMENTS;
    const unsigned long refused = S_COUNTERS * (S_INCREMENTS / S_REFUSE_EVERY);
    assert_int_equal(s_counter(kv), accepted);
    unsigned long writes, commits;
    kv_write_stats(kv, &writes, &commits);
    assert_int_equal(writes, accepted + refused);
    assert_true(commits >= 1 && commits <= writes);
    kv_close(&kv);
    kv = s_open_one(root);
    assert_int_equal(s_counter(kv), accepted);
    kv_close(&kv);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_private, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_flags, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_alone, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_no_group, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_write_no_lost_update, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests_name("kv", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

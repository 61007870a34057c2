/*  test_no_space.c - a write that finds no room: the LMDB map at its size
 *  (storage/kv.h, kv_no_space), store by store.
 *
 *  A full map is what can be provoked here deterministically: each test
 *  opens its store as usual, then sets the map's limit a few pages above
 *  what is used and writes
 *  until a write answers the store's "no room" status, and then checks
 *  what the issue asks of every store: the refused write changed nothing
 *  (the records before it are all there and no more), reads go on, the
 *  environment is not broken (no reopen: the same write asked again gets
 *  the same answer), and that write succeeds once there is room again,
 *  either because the limit was raised (s_limit again) or, for the
 *  catalog, because an admin's deletes freed pages. "Full" is relative to
 *  the write: a smaller one may still fit where a larger was refused, so
 *  the tests hold each refused write to itself, not to others.
 *
 *  Two limits. s_limit sets LMDB's own map (mdb_env_set_mapsize, which
 *  LMDB allows while no write transaction runs): a put inside a write
 *  or its commit then finds MDB_MAP_FULL, the path every store must map
 *  to its "no room" status. s_soft sets kv's limit (kv_set_limit), the
 *  one RETAIL_CATALOG_MAP_MB and every kv_open's map_size set, with
 *  LMDB's headroom behind it: ordinary writes are refused before they
 *  run, freeing ones (deletes) still run, which is what lets an admin's
 *  deletes make room at all (a delete needs new pages before it frees
 *  the old: at LMDB's own limit it may be refused like a create). A full filesystem (ENOSPC, and
 * LMDB's EIO for a short write) needs a small filesystem of its own: tests/smoke/full_disk.sh
 * mounts one.
 *
 *  Also here: kv_no_space and kv_status themselves; a batch (group commit)
 *  in which one write finds no room while its neighbours commit; and that
 *  kv_open has allocated the lock file's blocks (its reader table is
 *  written through a shared map: a page first touched on a full tmpfs
 *  would be SIGBUS).
 */
#include "storage/catalog/catalog_store.h"
#include "storage/kv.h"
#include "storage/orders/cart_store.h"
#include "storage/orders/order_store.h"
#include "storage/orders/orders_env.h"
#include "storage/payments/payment_store.h"
#include "storage/users/sessions.h"
#include "storage/users/user_store.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_SLACK_PAGES 8   /* the limit above what is used when a test begins */
#define S_ROOM_PAGES 4096 /* the limit raised: room again */
#define S_MAX_WRITES 100000
#define S_WAIT_MS 5000

static int s_setup(void **state)
{
    *state = tu_tempdir("test-no-space");
    return 0;
}

static int s_teardown(void **state)
{
    char *root = *state;
    tu_rmtree(root);
    zstr_free(&root);
    return 0;
}

/* Sets the map's limit `pages` pages above the last page used. */
static void s_limit(kv_t *kv, size_t pages)
{
    MDB_envinfo info;
    MDB_stat st;
    assert_int_equal(mdb_env_info(kv_mdb(kv), &info), 0);
    assert_int_equal(mdb_env_stat(kv_mdb(kv), &st), 0);
    size_t size = (info.me_last_pgno + 1 + pages) * st.ms_psize;
    assert_int_equal(mdb_env_set_mapsize(kv_mdb(kv), size), 0);
}

/* Sets kv's limit `pages` pages above the data file's pages. */
static void s_soft(kv_t *kv, size_t pages)
{
    MDB_envinfo info;
    MDB_stat st;
    assert_int_equal(mdb_env_info(kv_mdb(kv), &info), 0);
    assert_int_equal(mdb_env_stat(kv_mdb(kv), &st), 0);
    kv_set_limit(kv, (info.me_last_pgno + 1 + pages) * st.ms_psize);
}

static size_t s_file_pages(kv_t *kv)
{
    MDB_envinfo info;
    assert_int_equal(mdb_env_info(kv_mdb(kv), &info), 0);
    return info.me_last_pgno + 1;
}

/* ---- kv ---- */

static void test_statuses(void **state)
{
    (void)state;
    assert_true(kv_no_space(MDB_MAP_FULL));
    assert_true(kv_no_space(ENOSPC));
    assert_true(kv_no_space(EDQUOT));
    assert_false(kv_no_space(0));
    assert_false(kv_no_space(EIO)); /* a failing disk is not a full one */
    assert_false(kv_no_space(MDB_BAD_TXN));
    assert_false(kv_no_space(MDB_PANIC));
    assert_int_equal(kv_status(0), STORE_OK);
    assert_int_equal(kv_status(MDB_MAP_FULL), STORE_NO_SPACE);
    assert_int_equal(kv_status(ENOSPC), STORE_NO_SPACE);
    assert_int_equal(kv_status(EIO), STORE_ERROR);
    assert_int_equal(kv_status(MDB_CORRUPTED), STORE_ERROR);
}

static kv_t *s_open_kv(const char *root, size_t map_size)
{
    const char *names[] = {"a"};
    char err[256] = "";
    kv_t *kv = kv_open(root, map_size, names, NULL, 1, err, sizeof err);
    if (!kv)
        print_error("kv_open: %s\n", err);
    assert_non_null(kv);
    return kv;
}

static void test_lock_file_allocated(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_kv(root, 1 << 20);
    char *lock = zsys_sprintf("%s/lock.mdb", root);
    struct stat st;
    assert_int_equal(stat(lock, &st), 0);
    assert_true(st.st_size > 0);
    /* every byte of it has a block: none is allocated on first write */
    assert_true((long long)st.st_blocks * 512 >= (long long)st.st_size);
    zstr_free(&lock);
    kv_close(&kv);
}

/* A put of key -> size bytes of value (0 bytes: a delete), answering
 * kv_status of it; optionally holding the committer until `wait_for`
 * writes are queued (the gate of a batch). */
typedef struct {
    MDB_dbi dbi;
    char key[24];
    size_t size;
    bool del;
    kv_t *kv;
    int wait_for;
    atomic_bool running; /* the gate's: it holds the committer now */
} s_put_t;

static int s_put_fn(MDB_txn *txn, void *arg)
{
    s_put_t *p = arg;
    if (p->wait_for) {
        atomic_store(&p->running, true);
        int64_t deadline = zclock_mono() + S_WAIT_MS;
        while (kv_write_pending(p->kv) < p->wait_for && zclock_mono() < deadline)
            zclock_sleep(1);
        return 0;
    }
    MDB_val k = {strlen(p->key), p->key};
    if (p->del) {
        int rc = mdb_del(txn, p->dbi, &k, NULL);
        return rc == MDB_NOTFOUND ? 0 : (int)kv_status(rc);
    }
    MDB_val v = {p->size, NULL};
    int rc = mdb_put(txn, p->dbi, &k, &v, MDB_RESERVE);
    if (rc == 0)
        memset(v.mv_data, 'v', p->size);
    return kv_status(rc);
}

/* One write of s_put_fn, waited for: its outcome as a status. */
static int s_put(kv_t *kv, const char *key, size_t size, bool del)
{
    s_put_t p = {.dbi = kv_dbi(kv, 0), .size = size, .del = del};
    snprintf(p.key, sizeof p.key, "%s", key);
    int result = -1;
    int rc = kv_write(kv, s_put_fn, &p, &result);
    return rc == 0 ? result : (int)kv_status(rc);
}

/* The number of keys of the database, and whether each has its size. */
static int s_count(kv_t *kv, size_t size)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(kv), NULL, MDB_RDONLY, &txn), 0);
    MDB_cursor *cursor;
    assert_int_equal(mdb_cursor_open(txn, kv_dbi(kv, 0), &cursor), 0);
    MDB_val k, v;
    int n = 0;
    for (int rc = mdb_cursor_get(cursor, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &k, &v, MDB_NEXT)) {
        assert_int_equal(v.mv_size, size);
        n++;
    }
    mdb_cursor_close(cursor);
    mdb_txn_abort(txn);
    return n;
}

static void test_map_full_alone(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_kv(root, 1 << 20);
    s_limit(kv, S_SLACK_PAGES);
    char key[24];
    int stored = 0, status = STORE_OK;
    while (stored < S_MAX_WRITES) {
        snprintf(key, sizeof key, "k%06d", stored);
        status = s_put(kv, key, 5000, false); /* two overflow pages each */
        if (status != STORE_OK)
            break;
        stored++;
    }
    assert_int_equal(status, STORE_NO_SPACE);
    assert_true(stored > 0);
    /* Nothing of the refused write, all of the others; reads go on. */
    assert_int_equal(s_count(kv, 5000), stored);
    /* Still full, still usable: the same answer, not a broken state. */
    assert_int_equal(s_put(kv, key, 5000, false), STORE_NO_SPACE);
    /* Room again: the same write succeeds, with no reopen. */
    s_limit(kv, S_ROOM_PAGES);
    assert_int_equal(s_put(kv, key, 5000, false), STORE_OK);
    assert_int_equal(s_count(kv, 5000), stored + 1);
    kv_close(&kv);
    /* and it is on disk */
    kv = s_open_kv(root, 1 << 20);
    assert_int_equal(s_count(kv, 5000), stored + 1);
    kv_close(&kv);
}

static void test_map_full_in_batch(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_kv(root, 1 << 20);
    s_limit(kv, S_SLACK_PAGES);
    kv_inbox_t *inbox = kv_inbox_new();
    assert_non_null(inbox);
    /* A gate holds the committer until the three behind it are queued,
     * so that they make one batch: small, too large for the map, small. */
    enum { S_JOBS = 4 };
    s_put_t puts[S_JOBS] = {
        {.kv = kv, .wait_for = 3},
        {.dbi = kv_dbi(kv, 0), .key = "before", .size = 10},
        {.dbi = kv_dbi(kv, 0), .key = "huge", .size = (S_SLACK_PAGES + 8) * 4096},
        {.dbi = kv_dbi(kv, 0), .key = "after", .size = 10},
    };
    kv_job_t jobs[S_JOBS];
    int64_t deadline = zclock_mono() + S_WAIT_MS;
    for (int i = 0; i < S_JOBS; i++) {
        jobs[i] = (kv_job_t){.fn = s_put_fn, .arg = &puts[i], .cookie = &puts[i]};
        kv_submit(kv, &jobs[i], inbox);
        /* the gate first, alone in its batch */
        while (i == 0 && !atomic_load(&puts[0].running) && zclock_mono() < deadline)
            zclock_sleep(1);
    }
    int back = 0;
    deadline = zclock_mono() + S_WAIT_MS;
    while (back < S_JOBS && zclock_mono() < deadline) {
        kv_job_t *done = kv_inbox_take(inbox);
        if (!done)
            zclock_sleep(1);
        for (; done; done = done->next)
            back++;
    }
    assert_int_equal(back, S_JOBS);
    for (int i = 0; i < S_JOBS; i++)
        assert_int_equal(jobs[i].rc, 0); /* the batch committed */
    assert_int_equal(jobs[1].result, STORE_OK);
    assert_int_equal(jobs[2].result, STORE_NO_SPACE);
    assert_int_equal(jobs[3].result, STORE_OK);
    unsigned long writes = 0, commits = 0;
    kv_write_stats(kv, &writes, &commits);
    assert_int_equal(writes, 4); /* the gate alone, then the three together */
    assert_int_equal(commits, 2);
    /* Its neighbours are stored, it is not. */
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(kv), NULL, MDB_RDONLY, &txn), 0);
    MDB_val k = {6, "before"}, v;
    assert_int_equal(mdb_get(txn, kv_dbi(kv, 0), &k, &v), 0);
    k = (MDB_val){5, "after"};
    assert_int_equal(mdb_get(txn, kv_dbi(kv, 0), &k, &v), 0);
    k = (MDB_val){4, "huge"};
    assert_int_equal(mdb_get(txn, kv_dbi(kv, 0), &k, &v), MDB_NOTFOUND);
    mdb_txn_abort(txn);
    kv_inbox_destroy(&inbox);
    kv_close(&kv);
}

/* A write of s_put_fn as kv_write_freeing. */
static int s_put_freeing(kv_t *kv, const char *key, size_t size, bool del)
{
    s_put_t p = {.dbi = kv_dbi(kv, 0), .size = size, .del = del};
    snprintf(p.key, sizeof p.key, "%s", key);
    int result = -1;
    int rc = kv_write_freeing(kv, s_put_fn, &p, &result);
    return rc == 0 ? result : (int)kv_status(rc);
}

static void test_limit(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_kv(root, 1 << 20); /* 256 pages; LMDB's map: 5 MiB */
    size_t used = 0, limit = 0;
    kv_room(kv, &used, &limit);
    assert_int_equal(limit, (1 << 20) / 4096);
    char key[24];
    int stored = 0, status = STORE_OK;
    while (stored < S_MAX_WRITES) {
        snprintf(key, sizeof key, "k%06d", stored);
        status = s_put(kv, key, 5000, false);
        if (status != STORE_OK)
            break;
        stored++;
    }
    assert_int_equal(status, STORE_NO_SPACE);
    assert_int_equal(s_count(kv, 5000), stored);
    /* It stopped at the limit, not at LMDB's map: past it by at most the
     * last write admitted (its two overflow pages and the path to them). */
    kv_room(kv, &used, &limit);
    assert_true(used >= limit);
    assert_true(s_file_pages(kv) <= limit + 8);
    assert_int_equal(s_put(kv, key, 5000, false), STORE_NO_SPACE);

    /* Deletes run at the limit, and ordinary writes come back once they
     * have brought the pages in use below it. */
    int deleted = 0;
    status = STORE_NO_SPACE;
    while (deleted < stored && status == STORE_NO_SPACE) {
        char victim[24];
        snprintf(victim, sizeof victim, "k%06d", deleted++);
        assert_int_equal(s_put_freeing(kv, victim, 0, true), STORE_OK);
        status = s_put(kv, key, 5000, false);
    }
    assert_int_equal(status, STORE_OK);
    assert_true(deleted <= 4);
    assert_int_equal(s_count(kv, 5000), stored - deleted + 1);

    /* A freeing write is not refused even well past the limit, and a
     * raised limit lets ordinary writes in again. */
    s_soft(kv, 0);
    kv_set_limit(kv, 4096); /* one page: far below what is used */
    assert_int_equal(s_put(kv, "another", 10, false), STORE_NO_SPACE);
    assert_int_equal(s_put_freeing(kv, "k000100", 0, true), STORE_OK);
    kv_set_limit(kv, 1 << 20);
    assert_int_equal(s_put(kv, "another", 10, false), STORE_OK);
    kv_set_limit(kv, (size_t)1 << 40); /* at most kv_open's size */
    kv_room(kv, NULL, &limit);
    assert_int_equal(limit, (1 << 20) / 4096);
    kv_close(&kv);
}

/* ---- users: accounts and sessions ---- */

#define S_HASH                                                                                     \
    "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHRzb21lc2FsdA$"                                       \
    "K3lGVn9mNwSc3Ff1Rp3PLuI8hYhQmQd0tVzX2QWlm5A"

static user_record_t s_user(int i)
{
    user_record_t u = {0};
    user_store_new_id(u.id);
    snprintf(u.email, sizeof u.email, "user%d@example.com", i);
    snprintf(u.name, sizeof u.name, "User %d", i);
    snprintf(u.role, sizeof u.role, "customer");
    snprintf(u.password_hash, sizeof u.password_hash, "%s", S_HASH);
    u.created_at_ms = zclock_time();
    return u;
}

static kv_t *s_open_users(const char *root)
{
    const char *names[USER_STORE_LMDB_DBS + SESSIONS_LMDB_DBS];
    for (int i = 0; i < USER_STORE_LMDB_DBS; i++)
        names[i] = user_store_lmdb_names[i];
    for (int i = 0; i < SESSIONS_LMDB_DBS; i++)
        names[USER_STORE_LMDB_DBS + i] = sessions_lmdb_names[i];
    char err[256] = "";
    kv_t *kv = kv_open(root, 64 << 20, names, NULL, USER_STORE_LMDB_DBS + SESSIONS_LMDB_DBS, err,
                       sizeof err);
    if (!kv)
        print_error("kv_open: %s\n", err);
    assert_non_null(kv);
    return kv;
}

static void test_users(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_users(root);
    user_store_t *store = user_store_open_lmdb(kv, 0);
    assert_non_null(store);
    user_record_t first = s_user(0);
    assert_int_equal(user_store_create(store, &first), STORE_OK);
    s_limit(kv, S_SLACK_PAGES);
    int made = 1;
    store_status_t status = STORE_OK;
    user_record_t u;
    while (made < S_MAX_WRITES) {
        u = s_user(made);
        status = user_store_create(store, &u);
        if (status != STORE_OK)
            break;
        made++;
    }
    assert_int_equal(status, STORE_NO_SPACE);
    /* The refused account is not there, in neither database. */
    user_record_t got;
    assert_int_equal(user_store_get_by_id(store, u.id, &got), STORE_NOT_FOUND);
    assert_int_equal(user_store_get_by_email(store, u.email, &got), STORE_NOT_FOUND);
    assert_int_equal(user_store_get_by_email(store, first.email, &got), STORE_OK);
    assert_string_equal(got.id, first.id);
    /* Asked again: the same answer, nothing stored. */
    assert_int_equal(user_store_create(store, &u), STORE_NO_SPACE);
    assert_int_equal(user_store_get_by_email(store, u.email, &got), STORE_NOT_FOUND);

    s_limit(kv, S_ROOM_PAGES);
    assert_int_equal(user_store_create(store, &u), STORE_OK);
    assert_int_equal(user_store_get_by_email(store, u.email, &got), STORE_OK);
    assert_string_equal(got.id, u.id);
    user_store_close(&store);
    kv_close(&kv);
}

static void test_sessions(void **state)
{
    const char *root = *state;
    kv_t *kv = s_open_users(root);
    sessions_t *sessions = sessions_open(kv, USER_STORE_LMDB_DBS);
    assert_non_null(sessions);
    int64_t now = zclock_time() / 1000;
    uint8_t hash[SESSION_HASH_BYTES];
    s_limit(kv, S_SLACK_PAGES);
    /* Logins (new sessions) until one finds no room; asked again, the
     * same answer. */
    store_status_t status = STORE_OK;
    for (int i = 0; i < S_MAX_WRITES && status == STORE_OK; i++) {
        randombytes_buf(hash, sizeof hash);
        status = sessions_issue(sessions, hash, "u2", NULL, now + 3600);
    }
    assert_int_equal(status, STORE_NO_SPACE);
    assert_int_equal(sessions_issue(sessions, hash, "u2", NULL, now + 3600), STORE_NO_SPACE);
    s_limit(kv, S_ROOM_PAGES);
    assert_int_equal(sessions_issue(sessions, hash, "u2", NULL, now + 3600), STORE_OK);

    /* Refreshes, each rotating the token the one before made, until one
     * finds no room: that token is left as it was and rotates once there
     * is room again (the client may simply refresh again). */
    s_limit(kv, S_SLACK_PAGES);
    uint8_t token[SESSION_HASH_BYTES], next[SESSION_HASH_BYTES];
    memcpy(token, hash, sizeof token);
    char user_id[USER_ID_MAX + 1] = "";
    rotate_result_t r = ROTATE_OK;
    for (int i = 0; i < S_MAX_WRITES; i++) {
        randombytes_buf(next, sizeof next);
        r = sessions_rotate(sessions, token, next, now, now + 3600, user_id);
        if (r != ROTATE_OK)
            break;
        memcpy(token, next, sizeof token);
    }
    assert_int_equal(r, ROTATE_NO_SPACE);
    assert_int_equal(sessions_rotate(sessions, token, next, now, now + 3600, user_id),
                     ROTATE_NO_SPACE);
    s_limit(kv, S_ROOM_PAGES);
    assert_int_equal(sessions_rotate(sessions, token, next, now, now + 3600, user_id), ROTATE_OK);
    assert_string_equal(user_id, "u2");
    /* and the new one is the live one */
    assert_int_equal(sessions_revoke(sessions, next, "u2"), STORE_OK);
    sessions_close(&sessions);
    kv_close(&kv);
}

/* ---- the catalog: full, then an admin's deletes make room ---- */

static void test_catalog(void **state)
{
    const char *root = *state;
    char err[256] = "";
    kv_t *kv = kv_open(root, (size_t)1 << 30, catalog_store_names, NULL, CATALOG_STORE_DBS, err,
                       sizeof err);
    assert_non_null(kv);
    catalog_store_t *store = catalog_store_open(kv, 0);
    assert_non_null(store);
    category_t c = {0};
    snprintf(c.name, sizeof c.name, "Clocks");
    assert_int_equal(catalog_category_create(store, &c), CATALOG_OK);
    s_soft(kv, 8 * S_SLACK_PAGES);

    enum { S_PRODUCTS_MAX = 2000 };
    char(*ids)[CATALOG_ID_MAX + 1] = calloc(S_PRODUCTS_MAX, sizeof *ids);
    product_t *p = calloc(1, sizeof *p), *got = calloc(1, sizeof *got);
    assert_true(ids && p && got);
    int made = 0;
    catalog_status_t status = CATALOG_OK;
    while (made < S_PRODUCTS_MAX) {
        memset(p, 0, sizeof *p);
        snprintf(p->sku, sizeof p->sku, "SKU-%05d", made);
        snprintf(p->name, sizeof p->name, "Wall clock number %d", made);
        /* a description of some words to index */
        for (size_t n = 0; n + 40 < sizeof p->description && n < 400;)
            n += (size_t)snprintf(p->description + n, sizeof p->description - n,
                                  "word%d tick%d tock%zu ", made, made % 7, n);
        p->price_cents = 1000 + made;
        memcpy(p->currency, "EUR", 4);
        snprintf(p->category_id, sizeof p->category_id, "%s", c.id);
        p->stock = 10;
        status = catalog_product_create(store, p);
        if (status != CATALOG_OK)
            break;
        snprintf(ids[made++], CATALOG_ID_MAX + 1, "%s", p->id);
    }
    assert_int_equal(status, CATALOG_NO_SPACE);
    assert_true(made > 1);
    /* The refused product left nothing: not its sku, nor a search hit. */
    char word[32];
    snprintf(word, sizeof word, "word%d", made);
    catalog_query_t q = {.q = word, .sort = SORT_NEWEST, .limit = 4};
    catalog_page_t page = {.items = calloc(4, sizeof(product_t)), .count = -1};
    assert_int_equal(catalog_search(store, &q, &page), CATALOG_OK);
    assert_int_equal(page.count, 0);
    snprintf(word, sizeof word, "word%d", made - 1); /* the last one made is found */
    assert_int_equal(catalog_search(store, &q, &page), CATALOG_OK);
    assert_int_equal(page.count, 1);
    free(page.items);
    /* Reads go on. */
    assert_int_equal(catalog_product_get(store, ids[0], got), CATALOG_OK);
    assert_string_equal(got->sku, "SKU-00000");
    /* Asked again: the same answer. */
    assert_int_equal(catalog_product_create(store, p), CATALOG_NO_SPACE);

    /* An admin deletes products until a product can be made again, with
     * no restart: deletes find room where creates do not (the headroom
     * behind kv's limit). */
    int deleted = 0;
    status = CATALOG_NO_SPACE;
    while (deleted < made && status == CATALOG_NO_SPACE) {
        assert_int_equal(catalog_product_delete(store, ids[deleted]), CATALOG_OK);
        deleted++;
        status = catalog_product_create(store, p);
    }
    assert_int_equal(status, CATALOG_OK);
    print_message("      catalog: %d products filled the map, %d deletes made room\n", made,
                  deleted);
    assert_int_equal(catalog_product_get(store, p->id, got), CATALOG_OK);
    assert_int_equal(catalog_product_get(store, ids[deleted], got), CATALOG_OK);
    free(ids);
    free(p);
    free(got);
    catalog_store_close(&store);
    kv_close(&kv);
}

/* ---- orders: carts and orders ---- */

static order_t *s_order(order_t *o, int i)
{
    memset(o, 0, sizeof *o);
    snprintf(o->user_id, sizeof o->user_id, "u%d", i % 10);
    o->n_items = 1;
    o->items[0] = (order_item_t){.unit_price_cents = 250, .qty = 2};
    snprintf(o->items[0].product_id, sizeof o->items[0].product_id, "p%d", i);
    snprintf(o->items[0].sku, sizeof o->items[0].sku, "sku-%d", i);
    snprintf(o->items[0].name, sizeof o->items[0].name, "Product %d", i);
    o->total_cents = 500;
    memcpy(o->currency, "EUR", 4);
    const char address[] = "\x81\xa5line1\xa9Main St 1"; /* {line1: "Main St 1"} */
    memcpy(o->address, address, sizeof address - 1);
    o->address_len = sizeof address - 1;
    return o;
}

static void test_orders(void **state)
{
    const char *root = *state;
    char err[256] = "";
    kv_t *env = orders_env_open(root, err, sizeof err);
    assert_non_null(env);
    order_store_shared_t *shared = order_store_shared_new(env, err, sizeof err);
    assert_non_null(shared);
    order_store_t *orders = order_store_open(shared);
    cart_store_shared_t *cart_shared = cart_store_shared_new(env, err, sizeof err);
    assert_non_null(cart_shared);
    cart_store_t *carts = cart_store_open(cart_shared);
    assert_true(orders && carts);
    order_t *o = calloc(1, sizeof *o), *got = calloc(1, sizeof *got);
    assert_int_equal(order_store_create(orders, s_order(o, 0), NULL, NULL, NULL), ORDER_OK);
    char first[ORDER_ID_MAX + 1];
    snprintf(first, sizeof first, "%s", o->id);
    cart_t cart;
    assert_int_equal(cart_store_set(carts, "u0", "p1", "EUR", 2, &cart), CART_OK);
    s_limit(env, S_SLACK_PAGES);

    /* Orders until one finds no room. */
    order_store_status_t st = ORDER_OK;
    int made = 1;
    for (; made < S_MAX_WRITES && st == ORDER_OK; made++)
        st = order_store_create(orders, s_order(o, made), NULL, NULL, NULL);
    assert_int_equal(st, ORDER_NO_SPACE);
    int n = 0;
    bool more = false;
    char ids[4][ORDER_ID_MAX + 1];
    assert_int_equal(order_store_get(orders, first, got), ORDER_OK);
    assert_int_equal(order_store_list(orders, "", -1, "", 4, ids, &n, &more), ORDER_OK);
    assert_true(n > 0);
    assert_int_equal(order_store_create(orders, s_order(o, made), NULL, NULL, NULL),
                     ORDER_NO_SPACE);
    s_limit(env, S_ROOM_PAGES);
    assert_int_equal(order_store_create(orders, s_order(o, made), NULL, NULL, NULL), ORDER_OK);
    assert_int_equal(order_store_get(orders, o->id, got), ORDER_OK);

    /* Carts: lines added to one user's cart (up to its 100, then the next
     * user's) until one finds no room; that cart is left as it was. */
    s_limit(env, S_SLACK_PAGES);
    cart_status_t cs = CART_OK;
    char user[16] = "", product[16] = "";
    int before = 0;
    for (int i = 2; i < S_MAX_WRITES; i++) {
        snprintf(user, sizeof user, "u%d", 100 + i / 100);
        snprintf(product, sizeof product, "p%d", i % 100);
        cs = cart_store_get(carts, user, &cart);
        assert_int_equal(cs, CART_OK);
        before = cart.n_lines;
        cs = cart_store_set(carts, user, product, "EUR", 1, NULL);
        if (cs != CART_OK)
            break;
    }
    assert_int_equal(cs, CART_NO_SPACE);
    assert_int_equal(cart_store_get(carts, user, &cart), CART_OK);
    assert_int_equal(cart.n_lines, before);
    assert_int_equal(cart_store_set(carts, user, product, "EUR", 1, NULL), CART_NO_SPACE);
    s_limit(env, S_ROOM_PAGES);
    assert_int_equal(cart_store_set(carts, user, product, "EUR", 1, &cart), CART_OK);
    assert_int_equal(cart.n_lines, before + 1);
    free(o);
    free(got);
    cart_store_close(&carts);
    cart_store_shared_destroy(&cart_shared);
    order_store_close(&orders);
    order_store_shared_destroy(&shared);
    kv_close(&env);
}

/* ---- payments: the log keeps no half entry ---- */

static store_status_t s_charge(payment_store_shared_t *shared, payment_store_t *store, int i)
{
    payment_t p = {.amount_cents = 1000 + i, .exp_month = 12, .exp_year = 2031}, out;
    snprintf(p.order_id, sizeof p.order_id, "o%d", i);
    memcpy(p.currency, "EUR", 4);
    memcpy(p.brand, "visa", 5);
    memcpy(p.last4, "4242", 5);
    payment_card_fingerprint(shared, "4242424242424242", 16, p.fingerprint);
    bool created = false;
    store_status_t st = payment_store_begin(store, &p, &out, &created);
    if (st != STORE_OK)
        return st;
    char id[PAYMENT_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", out.id);
    payment_event_t e = {
        .type = PAYMENT_EVENT_AUTHORIZE, .amount_cents = p.amount_cents, .gateway_id = "auth-1"};
    if ((st = payment_store_apply(store, id, &e, &out)) != STORE_OK)
        return st;
    e = (payment_event_t){
        .type = PAYMENT_EVENT_CAPTURE, .amount_cents = p.amount_cents, .gateway_id = "cap-1"};
    return payment_store_apply(store, id, &e, &out);
}

static void s_assert_log_ok(payment_store_t *store, uint64_t *entries)
{
    log_verify_t v;
    assert_int_equal(payment_log_verify(store, NULL, &v), STORE_OK);
    if (!v.ok)
        print_error("verify: %s\n", v.problem);
    assert_true(v.ok);
    *entries = v.entries;
}

static void test_payments(void **state)
{
    const char *root = *state;
    char data[512], keys[512], err[256] = "";
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(keys, sizeof keys, "%s/keys", root);
    payment_store_shared_t *shared = payment_store_shared_new(data, keys, err, sizeof err);
    if (!shared)
        print_error("payment_store_shared_new: %s\n", err);
    assert_non_null(shared);
    payment_store_t *store = payment_store_open(shared);
    assert_non_null(store);
    kv_t *kv = payment_store_kv(store);
    assert_int_equal(s_charge(shared, store, 0), STORE_OK);
    s_limit(kv, S_SLACK_PAGES);
    store_status_t st = STORE_OK;
    int i = 1;
    for (; i < S_MAX_WRITES && st == STORE_OK; i++)
        st = s_charge(shared, store, i);
    assert_int_equal(st, STORE_NO_SPACE);
    /* Whatever step found no room, the log verifies: no half entry, no
     * payment ahead of its entries. */
    uint64_t entries = 0, later = 0;
    s_assert_log_ok(store, &entries);
    assert_true(entries >= 2);

    s_limit(kv, S_ROOM_PAGES);
    assert_int_equal(s_charge(shared, store, i), STORE_OK);
    s_assert_log_ok(store, &later);
    assert_int_equal(later, entries + 2); /* authorize, capture */
    payment_store_close(&store);
    payment_store_shared_destroy(&shared);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_statuses),
        cmocka_unit_test_setup_teardown(test_lock_file_allocated, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_map_full_alone, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_map_full_in_batch, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_users, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sessions, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_catalog, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_orders, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_payments, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

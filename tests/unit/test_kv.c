/*  test_kv.c - the LMDB environment layer (storage/kv.h).
 *
 *  Every domain's state sits in one of these environments, so the tests
 *  check what would be costly to find out later: files that others can
 *  read (the users environment holds password hashes), a directory that is
 *  not created, database handles that do not survive a reopen (committed
 *  data must be there), extra flags such as MDB_DUPSORT being dropped, and
 *  bad arguments or unusable paths answered with a message rather than a
 *  crash.
 */
#include "storage/kv.h"
#include "tests/testutil.h"

#include <czmq.h>
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_open_creates_private, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_flags, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_refusals, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests_name("kv", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

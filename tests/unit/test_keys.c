/*  test_keys.c - CurveZMQ certificates on disk (protocol/keys.h).
 *
 *  The broker admits only callers whose public certificate is in its
 *  allow-list, and ZAP reports the certificate's "name" as the caller, so
 *  these files are the system's identity store. The tests check what a
 *  mistake here would cost: a secret file readable by others, an
 *  allow-list entry that leaks a secret key, a second start that makes a
 *  new key (locking out every client that trusted the old one), or two
 *  processes starting together that end up with different keys for the
 *  same name. The last is tested for real with forked processes released
 *  at the same instant.
 */
#include "protocol/keys.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <dirent.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define ZERO_KEY "0000000000000000000000000000000000000000"

typedef struct {
    char *root; /* the temporary directory */
    char *keys; /* root/keys, not created yet */
} fx_t;

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->root = tu_tempdir("test-keys");
    f->keys = zsys_sprintf("%s/keys", f->root);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    tu_rmtree(f->root);
    zstr_free(&f->root);
    zstr_free(&f->keys);
    free(f);
    return 0;
}

/* True when cert's public key is the one its secret key yields, i.e. the
 * two halves on disk belong together. */
static bool s_pair_matches(zcert_t *cert)
{
    uint8_t derived[32];
    if (crypto_scalarmult_base(derived, zcert_secret_key(cert)) != 0)
        return false;
    return memcmp(derived, zcert_public_key(cert), 32) == 0;
}

/* The permission bits of path, or -1 if it does not exist. */
static int s_mode(const char *dir, const char *name)
{
    char *path = zsys_sprintf("%s/%s", dir, name);
    struct stat st;
    int rc = stat(path, &st);
    zstr_free(&path);
    return rc == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* The whole text of dir/name (malloc'd), or NULL. */
static char *s_slurp(const char *dir, const char *name)
{
    char *path = zsys_sprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    zstr_free(&path);
    if (!f)
        return NULL;
    char *text = calloc(1, 65536);
    size_t n = fread(text, 1, 65535, f);
    text[n] = '\0';
    fclose(f);
    return text;
}

/* How many entries of dir start with prefix (hidden ones included). */
static int s_count(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static void test_ensure_creates_and_reloads(void **state)
{
    fx_t *f = *state;
    zcert_t *cert = keys_ensure(f->keys, "alice");
    assert_non_null(cert);
    /* keys_dir was created, private. */
    assert_int_equal(s_mode(f->root, "keys"), 0700);
    assert_int_equal(s_mode(f->keys, "alice.cert") >= 0, 1);
    assert_int_equal(s_mode(f->keys, "alice.cert_secret"), 0600);
    /* The public file is not secret; it must not be world-writable. */
    assert_int_equal(s_mode(f->keys, "alice.cert") & 0022, 0);
    /* No temporary files left behind. */
    assert_int_equal(s_count(f->keys, "."), 2); /* "." and ".." only */

    assert_string_equal(zcert_meta(cert, "name"), "alice");
    assert_int_equal(strlen(zcert_public_txt(cert)), KEYS_Z85_LEN);
    assert_string_not_equal(zcert_public_txt(cert), ZERO_KEY);
    assert_string_not_equal(zcert_secret_txt(cert), ZERO_KEY);
    assert_true(s_pair_matches(cert));

    /* The secret file holds the secret key, the public file does not. */
    char *secret_text = s_slurp(f->keys, "alice.cert_secret");
    char *public_text = s_slurp(f->keys, "alice.cert");
    assert_non_null(secret_text);
    assert_non_null(public_text);
    assert_non_null(strstr(secret_text, zcert_secret_txt(cert)));
    assert_null(strstr(public_text, zcert_secret_txt(cert)));
    assert_null(strstr(public_text, "secret-key"));
    assert_non_null(strstr(public_text, zcert_public_txt(cert)));
    free(secret_text);
    free(public_text);

    /* A second call loads the same pair, it does not make a new one. */
    zcert_t *again = keys_ensure(f->keys, "alice");
    assert_non_null(again);
    assert_string_equal(zcert_public_txt(again), zcert_public_txt(cert));
    assert_string_equal(zcert_secret_txt(again), zcert_secret_txt(cert));
    assert_string_equal(zcert_meta(again, "name"), "alice");
    zcert_destroy(&again);
    zcert_t *loaded = keys_load(f->keys, "alice");
    assert_non_null(loaded);
    assert_true(zcert_eq(loaded, cert));
    assert_string_equal(zcert_secret_txt(loaded), zcert_secret_txt(cert));
    assert_true(s_pair_matches(loaded));
    zcert_destroy(&loaded);

    /* Another name is another pair. */
    zcert_t *bob = keys_ensure(f->keys, "bob");
    assert_non_null(bob);
    assert_string_not_equal(zcert_public_txt(bob), zcert_public_txt(cert));
    assert_string_equal(zcert_meta(bob, "name"), "bob");
    zcert_destroy(&bob);
    zcert_destroy(&cert);

    /* keys_load never creates. */
    assert_null(keys_load(f->keys, "carol"));
    assert_int_equal(s_mode(f->keys, "carol.cert"), -1);
    char *nowhere = zsys_sprintf("%s/nowhere", f->root);
    assert_null(keys_load(nowhere, "alice"));
    zstr_free(&nowhere);
}

static void test_load_needs_secret(void **state)
{
    fx_t *f = *state;
    /* An allow-list copy (public only) is not a pair: keys_load refuses
     * it rather than returning a certificate with a zero secret key. */
    zcert_t *cert = keys_ensure(f->keys, "dave");
    assert_non_null(cert);
    assert_int_equal(keys_allow(f->keys, cert, "dave"), 0);
    char *clients = zsys_sprintf("%s/clients", f->keys);
    assert_null(keys_load(clients, "dave"));
    zstr_free(&clients);
    zcert_destroy(&cert);
}

static void test_allow(void **state)
{
    fx_t *f = *state;
    zcert_t *cert = keys_ensure(f->keys, "pool-catalog");
    assert_non_null(cert);
    assert_int_equal(keys_allow(f->keys, cert, "pool-catalog"), 0);
    char *clients = zsys_sprintf("%s/clients", f->keys);
    assert_true(s_mode(clients, "pool-catalog.cert") >= 0);
    assert_int_equal(s_mode(clients, "pool-catalog.cert_secret"), -1);
    assert_int_equal(s_count(clients, "pool-catalog"), 1);

    char *text = s_slurp(clients, "pool-catalog.cert");
    assert_non_null(text);
    assert_null(strstr(text, "secret-key"));
    assert_null(strstr(text, zcert_secret_txt(cert)));
    assert_non_null(strstr(text, "public-key"));
    assert_non_null(strstr(text, zcert_public_txt(cert)));
    free(text);

    /* What the broker's allow-list (zcertstore) will read. */
    char *path = zsys_sprintf("%s/pool-catalog.cert", clients);
    zcert_t *pub = zcert_load(path);
    assert_non_null(pub);
    assert_string_equal(zcert_public_txt(pub), zcert_public_txt(cert));
    assert_string_equal(zcert_secret_txt(pub), ZERO_KEY);
    assert_string_equal(zcert_meta(pub, "name"), "pool-catalog");
    zcert_destroy(&pub);
    zstr_free(&path);

    /* Allowing again (same or another cert) just rewrites the entry. */
    assert_int_equal(keys_allow(f->keys, cert, "pool-catalog"), 0);
    assert_int_equal(s_count(clients, "pool-catalog"), 1);

    /* A directory that cannot be created: -1. */
    char *file = zsys_sprintf("%s/plain-file", f->root);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    assert_int_equal(keys_allow(file, cert, "x"), -1);
    zstr_free(&file);

    zstr_free(&clients);
    zcert_destroy(&cert);
}

static void test_broker_public(void **state)
{
    fx_t *f = *state;
    char out[KEYS_Z85_LEN + 1];
    memset(out, 'Q', sizeof out);
    assert_int_equal(keys_broker_public(f->keys, out), -1);
    zcert_t *broker = keys_ensure(f->keys, "broker");
    assert_non_null(broker);
    assert_int_equal(keys_broker_public(f->keys, out), 0);
    assert_int_equal(strlen(out), KEYS_Z85_LEN);
    assert_string_equal(out, zcert_public_txt(broker));
    /* Only the public file is needed (what a remote client is given). */
    char *secret = zsys_sprintf("%s/broker.cert_secret", f->keys);
    assert_int_equal(unlink(secret), 0);
    zstr_free(&secret);
    memset(out, 'Q', sizeof out);
    assert_int_equal(keys_broker_public(f->keys, out), 0);
    assert_string_equal(out, zcert_public_txt(broker));
    zcert_destroy(&broker);
}

static void test_endpoint_needs_curve(void **state)
{
    (void)state;
    assert_false(keys_endpoint_needs_curve("inproc://broker"));
    assert_false(keys_endpoint_needs_curve("inproc://"));
    assert_true(keys_endpoint_needs_curve("tcp://127.0.0.1:5555"));
    assert_true(keys_endpoint_needs_curve("tcp://*:5555"));
    assert_true(keys_endpoint_needs_curve("ipc:///tmp/retail.sock"));
    assert_true(keys_endpoint_needs_curve("ws://host:80"));
    assert_true(keys_endpoint_needs_curve("inproc:/x")); /* not inproc:// */
    assert_true(keys_endpoint_needs_curve(""));
}

static void test_long_paths(void **state)
{
    fx_t *f = *state;
    /* CZMQ cuts certificate paths at 255 bytes; a keys_dir near that limit
     * must be refused whole, not half-written (a secret key under a cut
     * name) or half-read (a zero secret key). */
    char dir[400];
    int n = snprintf(dir, sizeof dir, "%s/", f->root);
    memset(dir + n, 'd', sizeof dir - (size_t)n - 1);
    dir[sizeof dir - 1] = '\0';
    for (size_t len = 150; len <= 250; len += 20) {
        char cut[400];
        snprintf(cut, sizeof cut, "%.*s", (int)len, dir);
        zcert_t *cert = keys_ensure(cut, "alice");
        if (cert) {
            assert_true(s_pair_matches(cert));
            assert_string_not_equal(zcert_secret_txt(cert), ZERO_KEY);
            zcert_t *again = keys_load(cut, "alice");
            assert_non_null(again);
            assert_true(zcert_eq(again, cert));
            assert_string_equal(zcert_secret_txt(again), zcert_secret_txt(cert));
            zcert_destroy(&again);
            zcert_destroy(&cert);
        } else {
            assert_null(keys_load(cut, "alice"));
        }
    }
    /* Short enough always works; far too long never does. */
    char shorter[200];
    snprintf(shorter, sizeof shorter, "%.*s", 150, dir);
    zcert_t *ok = keys_ensure(shorter, "alice");
    assert_non_null(ok);
    zcert_destroy(&ok);
    assert_null(keys_ensure(dir, "alice"));
    /* Nothing but the directories and whole pairs was written: every file
     * under root is NAME.cert or NAME.cert_secret. */
    char *cmd = zsys_sprintf("find '%s' -type f ! -name alice.cert ! -name alice.cert_secret "
                             "| grep -q .",
                             f->root);
    int rc = system(cmd);
    zstr_free(&cmd);
    assert_int_not_equal(WEXITSTATUS(rc), 0); /* grep found nothing */
}

#define RACERS 4

/* Forks RACERS processes that call keys_ensure(dir, name) at the same
 * moment; fills keys[i] with each one's public key. */
static void s_race(const char *dir, const char *name, char keys[RACERS][KEYS_Z85_LEN + 1])
{
    int go[2];
    assert_int_equal(pipe(go), 0);
    int results[RACERS][2];
    pid_t pids[RACERS];
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(pipe(results[i]), 0);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            close(go[1]);
            close(results[i][0]);
            char byte;
            /* Blocks until the parent closes its end: all start together. */
            if (read(go[0], &byte, 1) != 0)
                _exit(2);
            zcert_t *cert = keys_ensure(dir, name);
            int rc = 1;
            if (cert) {
                const char *pub = zcert_public_txt(cert);
                rc = write(results[i][1], pub, KEYS_Z85_LEN) == KEYS_Z85_LEN ? 0 : 3;
                zcert_destroy(&cert);
            }
            _exit(rc);
        }
        close(results[i][1]);
    }
    close(go[0]);
    close(go[1]); /* release */
    for (int i = 0; i < RACERS; i++) {
        int status = 0;
        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("%s: racer %d failed (status %d)", name, i, status);
        ssize_t n = read(results[i][0], keys[i], KEYS_Z85_LEN);
        close(results[i][0]);
        assert_int_equal(n, KEYS_Z85_LEN);
        keys[i][KEYS_Z85_LEN] = '\0';
    }
}

static void test_concurrent_ensure(void **state)
{
    fx_t *f = *state;
    /* Several rounds, each with a fresh name, to give the race a chance;
     * the first round also races on creating keys_dir itself. */
    for (int round = 0; round < 5; round++) {
        char name[32];
        snprintf(name, sizeof name, round == 0 ? "same" : "same-%d", round);
        char keys[RACERS][KEYS_Z85_LEN + 1];
        s_race(f->keys, name, keys);
        for (int i = 1; i < RACERS; i++)
            if (strcmp(keys[i], keys[0]) != 0)
                fail_msg("round %d: racer %d got %s, racer 0 got %s", round, i, keys[i], keys[0]);
        /* And the files agree with what the racers got. */
        zcert_t *cert = keys_load(f->keys, name);
        assert_non_null(cert);
        assert_string_equal(zcert_public_txt(cert), keys[0]);
        assert_string_equal(zcert_meta(cert, "name"), name);
        /* The secret on disk belongs to the public key on disk. */
        assert_true(s_pair_matches(cert));
        zcert_destroy(&cert);
        char mode_name[64];
        snprintf(mode_name, sizeof mode_name, "%s.cert_secret", name);
        assert_int_equal(s_mode(f->keys, mode_name), 0600);
    }
    /* Losers cleaned up their temporary files. */
    assert_int_equal(s_count(f->keys, "."), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ensure_creates_and_reloads, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_load_needs_secret, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_allow, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_broker_public, s_setup, s_teardown),
        cmocka_unit_test(test_endpoint_needs_curve),
        cmocka_unit_test_setup_teardown(test_long_paths, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_ensure, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests_name("keys", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

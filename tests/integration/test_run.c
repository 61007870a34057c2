/*  test_run.c - the first run of `make run` (tools/run.sh --prepare-only).
 *
 *  What it checks: on a new data directory the script seeds a demo
 *  catalog of 1000 products with their ids in a file, and makes an admin
 *  whose credentials it keeps in a file that only its owner can read; a
 *  second run changes neither; a retaild started on that directory serves
 *  the 1000 products (and no others) and lets the admin log in with the
 *  file as it is; a run cut short is finished by the next one; a
 *  configured admin is left to retaild.
 *
 *  How: the script runs as a child in a session of its own (setsid: no
 *  controlling terminal, so it must not print the password anywhere),
 *  stdin from /dev/null, stdout and stderr to files, an environment
 *  without the caller's RETAIL_* variables and with RETAIL_DATA_DIR set to
 *  a directory under the test's own. Each run has a deadline (polled) and
 *  is killed after it. retaild is the fixture's (tests/fixture.h: free
 *  ports), pointed at the prepared directory through its RETAIL_DATA_DIR.
 *  The script is found in $RETAIL_SOURCE_DIR (tests/run.sh sets it), else
 *  in the current directory (a test started from the tree's root).
 *
 *  The tests of the group run in order and share the first data
 *  directory: the first prepares it, the second prepares it again, the
 *  third serves it.
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 120000 /* seeding and an Argon2id hash, in a sanitizer build too */
#define DEMO_PRODUCTS 1000
#define ADMIN_EMAIL "admin@shop.example"
#define PASSWORD_LEN 24
#define PAGE_LIMIT 100
#define PATH_MAX_ 1200

extern char **environ;

typedef struct {
    char *tmp;               /* the test's directory, removed at the end */
    char script[PATH_MAX_];  /* tools/run.sh */
    char data[PATH_MAX_];    /* tmp/var: the shared data directory, absent at first */
    char *first_creds;       /* the credentials file as the first run wrote it */
    char *first_ids;         /* and the ids file */
    struct stat first_store; /* data/catalog/data.mdb after the first run */
    int runs;                /* of the script so far: names its output files */
    fixture_t *fixture;      /* the running retaild, if any: a failed test leaves it here */
} state_t;

/* One run of the script. */
typedef struct {
    int status; /* its exit status; -1 when killed at the deadline or by a signal */
    char *out;  /* stdout and stderr, NUL-terminated */
    char *err;
} run_t;

static char *s_path(const char *dir, const char *name)
{
    char *path = zsys_sprintf("%s/%s", dir, name);
    assert_non_null(path);
    return path;
}

static bool s_exists(const char *dir, const char *name)
{
    char *path = s_path(dir, name);
    struct stat st;
    bool yes = lstat(path, &st) == 0;
    zstr_free(&path);
    return yes;
}

/* Runs `bash tools/run.sh OPTION BUILD` with RETAIL_DATA_DIR=data and the
 * "KEY=VALUE" entries of extra (NULL-terminated, may be NULL). */
static run_t s_script(state_t *st, const char *data, const char *const *extra, const char *option)
{
    char *out_path = zsys_sprintf("%s/run-%d.out", st->tmp, st->runs);
    char *err_path = zsys_sprintf("%s/run-%d.err", st->tmp, st->runs++);
    char *data_env = zsys_sprintf("RETAIL_DATA_DIR=%s", data);
    assert_non_null(out_path);
    assert_non_null(err_path);
    assert_non_null(data_env);
    /* Everything the child needs is made before fork (the test process
     * has threads): the environment without RETAIL_*, then ours. */
    size_t n = 0, m = 0;
    while (environ[n])
        n++;
    const char **envp = calloc(n + 16, sizeof *envp);
    assert_non_null(envp);
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "RETAIL_", 7) != 0)
            envp[m++] = environ[i];
    envp[m++] = data_env;
    for (size_t i = 0; extra && extra[i]; i++) {
        assert_true(m < n + 15);
        envp[m++] = extra[i];
    }
    envp[m] = NULL;
    const char *argv[] = {"bash", st->script, option, tu_build_dir(), NULL};

    fflush(NULL);
    pid_t parent = getpid();
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int in = open("/dev/null", O_RDONLY);
        int out = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int err = open(err_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (setsid() < 0 || prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent ||
            in < 0 || out < 0 || err < 0 || dup2(in, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0)
            _exit(127);
        execve("/bin/bash", (char *const *)argv, (char *const *)envp);
        _exit(127);
    }
    int status = -1;
    pid_t got = 0;
    int64_t deadline = zclock_mono() + RUN_TIMEOUT_MS;
    while ((got = waitpid(pid, &status, WNOHANG)) == 0 && zclock_mono() < deadline)
        zclock_sleep(10); /* polling the child's exit, up to the deadline */
    if (got == 0) {
        print_error("tools/run.sh did not finish within %d ms\n", RUN_TIMEOUT_MS);
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        status = -1;
    }
    run_t r = {.status = got == pid && WIFEXITED(status) ? WEXITSTATUS(status) : -1,
               .out = tu_slurp(out_path, NULL),
               .err = tu_slurp(err_path, NULL)};
    assert_non_null(r.out);
    assert_non_null(r.err);
    free(envp);
    zstr_free(&data_env);
    zstr_free(&out_path);
    zstr_free(&err_path);
    return r;
}

/* The preparation alone: `tools/run.sh --prepare-only BUILD`. */
static run_t s_prepare(state_t *st, const char *data, const char *const *extra)
{
    return s_script(st, data, extra, "--prepare-only");
}

static void s_expect_status(const run_t *r, int want)
{
    if (r->status != want)
        print_error("tools/run.sh: exit %d, expected %d\n--- stdout:\n%s--- stderr:\n%s---\n",
                    r->status, want, r->out, r->err);
    assert_int_equal(r->status, want);
}

static void s_run_free(run_t *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* The lines of a file of ids: their count, each one asserted not empty. */
static int s_count_lines(const char *text)
{
    int lines = 0;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        assert_non_null(end); /* every line ends with a newline */
        assert_true(end > p);
        lines++;
        p = end + 1;
    }
    return lines;
}

/* The password of a credentials file, checked for its shape: the file is
 * one JSON object {"email": ADMIN_EMAIL, "password": 24 base64url}. The
 * caller frees the result. */
static char *s_password(const char *creds_text)
{
    json_error_t error;
    json_t *doc = json_loads(creds_text, 0, &error);
    if (!doc)
        print_error("the credentials file is no JSON: %s\n", error.text);
    assert_non_null(doc);
    assert_int_equal(json_object_size(doc), 2);
    assert_string_equal(hc_str(doc, "email"), ADMIN_EMAIL);
    const char *password = hc_str(doc, "password");
    assert_non_null(password);
    assert_int_equal(strlen(password), PASSWORD_LEN);
    assert_int_equal(strspn(password, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789-_"),
                     PASSWORD_LEN);
    char *copy = strdup(password);
    assert_non_null(copy);
    json_decref(doc);
    return copy;
}

/* Asserts that path is a regular file of this user with exactly mode. */
static void s_expect_mode(const char *path, mode_t mode)
{
    struct stat st;
    assert_int_equal(lstat(path, &st), 0);
    if ((st.st_mode & 07777) != mode)
        print_error("%s has mode %04o, expected %04o\n", path, (unsigned)(st.st_mode & 07777),
                    (unsigned)mode);
    assert_int_equal(st.st_mode & 07777, mode);
    assert_int_equal(st.st_uid, getuid());
}

static int s_setup(void **state)
{
    state_t *st = calloc(1, sizeof *st);
    if (!st)
        return -1;
    st->tmp = tu_tempdir("retail-run");
    const char *src = getenv("RETAIL_SOURCE_DIR");
    snprintf(st->script, sizeof st->script, "%s/tools/run.sh", src && *src ? src : ".");
    snprintf(st->data, sizeof st->data, "%s/var", st->tmp);
    if (access(st->script, R_OK) != 0) {
        print_error("no %s: set RETAIL_SOURCE_DIR to the source tree\n", st->script);
        return -1;
    }
    *state = st;
    return 0;
}

static int s_teardown(void **state)
{
    state_t *st = *state;
    if (getenv("TEST_KEEP_DIR"))
        print_message("      kept %s\n", st->tmp);
    else
        tu_rmtree(st->tmp);
    fixture_destroy(&st->fixture);
    free(st->tmp);
    free(st->first_creds);
    free(st->first_ids);
    free(st);
    return 0;
}

/* ---- the tests ---- */

/* A new directory: 1000 products with their ids, an admin with a file. */
static void test_first_run_seeds_and_makes_an_admin(void **state)
{
    state_t *st = *state;
    run_t r = s_prepare(st, st->data, NULL);
    s_expect_status(&r, 0);

    struct stat dir;
    assert_int_equal(stat(st->data, &dir), 0);
    assert_true(S_ISDIR(dir.st_mode));
    assert_int_equal(dir.st_mode & 0777, 0700);

    char *ids_path = s_path(st->data, "demo-product-ids.txt");
    st->first_ids = tu_slurp(ids_path, NULL);
    assert_non_null(st->first_ids);
    assert_int_equal(s_count_lines(st->first_ids), DEMO_PRODUCTS);
    char *store = s_path(st->data, "catalog/data.mdb");
    assert_int_equal(stat(store, &st->first_store), 0);

    char *creds = s_path(st->data, "admin-credentials.json");
    s_expect_mode(creds, 0600);
    st->first_creds = tu_slurp(creds, NULL);
    assert_non_null(st->first_creds);
    char *password = s_password(st->first_creds);
    /* No terminal: the password was printed nowhere, the file was named. */
    assert_null(strstr(r.out, password));
    assert_null(strstr(r.err, password));
    assert_non_null(strstr(r.err, creds));
    /* Nothing half-done is left. */
    assert_false(s_exists(st->data, "admin-credentials.json.new"));
    assert_false(s_exists(st->data, ".demo-seed"));

    free(password);
    zstr_free(&creds);
    zstr_free(&store);
    zstr_free(&ids_path);
    s_run_free(&r);
}

/* Again on the same directory: no seeding, the same credentials. */
static void test_second_run_changes_nothing(void **state)
{
    state_t *st = *state;
    assert_non_null(st->first_creds);
    run_t r = s_prepare(st, st->data, NULL);
    s_expect_status(&r, 0);

    char *creds = s_path(st->data, "admin-credentials.json");
    char *now = tu_slurp(creds, NULL);
    assert_non_null(now);
    assert_string_equal(now, st->first_creds);
    s_expect_mode(creds, 0600);
    char *password = s_password(now);
    assert_null(strstr(r.err, password));
    assert_non_null(strstr(r.err, creds)); /* where the credentials are */
    assert_null(strstr(r.err, "seeding"));

    char *ids_path = s_path(st->data, "demo-product-ids.txt");
    char *ids = tu_slurp(ids_path, NULL);
    assert_non_null(ids);
    assert_string_equal(ids, st->first_ids);
    /* The store was not written to: the seeder never ran. */
    char *store = s_path(st->data, "catalog/data.mdb");
    struct stat sb;
    assert_int_equal(stat(store, &sb), 0);
    assert_int_equal(sb.st_size, st->first_store.st_size);
    assert_int_equal(sb.st_mtim.tv_sec, st->first_store.st_mtim.tv_sec);
    assert_int_equal(sb.st_mtim.tv_nsec, st->first_store.st_mtim.tv_nsec);

    free(password);
    free(ids);
    free(now);
    zstr_free(&store);
    zstr_free(&ids_path);
    zstr_free(&creds);
    s_run_free(&r);
}

/* retaild on the prepared directory: exactly the seeded products, and the
 * admin logs in with the credentials file as the login's body. */
static void test_retaild_serves_the_demo(void **state)
{
    state_t *st = *state;
    assert_non_null(st->first_ids);
    char *data_env = zsys_sprintf("RETAIL_DATA_DIR=%s", st->data);
    const char *env[] = {data_env, NULL};
    fixture_opts_t opts = {.name = "retail-run-fixture", .env = env, .logs = true};
    fixture_t *f = st->fixture = fixture_new(&opts);
    assert_non_null(f);

    zhash_t *seeded = zhash_new();
    assert_non_null(seeded);
    char *ids = strdup(st->first_ids);
    assert_non_null(ids);
    char *save = NULL;
    for (char *id = strtok_r(ids, "\n", &save); id; id = strtok_r(NULL, "\n", &save))
        assert_int_equal(zhash_insert(seeded, id, "seeded"), 0); /* no id twice */
    assert_int_equal(zhash_size(seeded), DEMO_PRODUCTS);

    /* Every page of products, each one seeded, each seen once. */
    zhash_t *seen = zhash_new();
    assert_non_null(seen);
    char cursor[128] = "";
    int pages = 0;
    do {
        char path[256];
        snprintf(path, sizeof path, "/v1/products?limit=%d%s%s", PAGE_LIMIT,
                 cursor[0] ? "&cursor=" : "", cursor);
        hc_response_t r = hc_request(f->base, "GET", path, NULL, NULL, NULL);
        hc_expect(&r, 200, "a page of products");
        json_t *items = json_object_get(r.body, "items");
        assert_true(json_is_array(items));
        size_t i;
        json_t *item;
        json_array_foreach(items, i, item)
        {
            const char *id = hc_str(item, "id");
            assert_non_null(id);
            if (!zhash_lookup(seeded, id))
                print_error("product %s was not seeded\n", id);
            assert_non_null(zhash_lookup(seeded, id));
            assert_int_equal(zhash_insert(seen, id, "seen"), 0);
        }
        const char *next = hc_str(r.body, "next_cursor");
        assert_true(!next || strlen(next) < sizeof cursor);
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        hc_response_free(&r);
        assert_true(++pages <= DEMO_PRODUCTS / PAGE_LIMIT + 1);
    } while (cursor[0]);
    assert_int_equal(zhash_size(seen), DEMO_PRODUCTS);

    hc_response_t r = hc_request(f->base, "GET", "/v1/categories?limit=100", NULL, NULL, NULL);
    hc_expect(&r, 200, "the categories");
    assert_true(json_array_size(json_object_get(r.body, "items")) > 0);
    hc_response_free(&r);

    r = hc_request(f->base, "POST", "/v1/auth/login", NULL, st->first_creds, NULL);
    hc_expect(&r, 200, "the admin's login with the credentials file");
    assert_string_equal(hc_str(r.body, "user.role"), "admin");
    assert_non_null(hc_str(r.body, "access_token"));
    hc_response_free(&r);

    assert_int_equal(fixture_stop(f), 0);
    fixture_destroy(&st->fixture);
    zhash_destroy(&seen);
    zhash_destroy(&seeded);
    free(ids);
    zstr_free(&data_env);
}

/* A first run cut short (in the seeder; after the credentials were
 * written) is finished by the next: a whole catalog, the same password. */
static void test_an_interrupted_run_is_finished(void **state)
{
    state_t *st = *state;
    char *data = s_path(st->tmp, "var-interrupted");
    char *leftover = s_path(data, ".demo-seed/catalog");
    assert_int_equal(zsys_dir_create("%s", leftover), 0);
    char *junk = s_path(leftover, "data.mdb");
    FILE *file = fopen(junk, "w");
    assert_non_null(file);
    assert_true(fputs("half a seed", file) >= 0);
    assert_int_equal(fclose(file), 0);
    const char *pending_text =
        "{\"email\": \"" ADMIN_EMAIL "\", \"password\": \"0123456789abcdefABCDEF-_\"}\n";
    char *pending = s_path(data, "admin-credentials.json.new");
    int fd = open(pending, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, pending_text, strlen(pending_text)), (ssize_t)strlen(pending_text));
    assert_int_equal(close(fd), 0);

    run_t r = s_prepare(st, data, NULL);
    s_expect_status(&r, 0);
    assert_false(s_exists(data, ".demo-seed"));
    assert_false(s_exists(data, "admin-credentials.json.new"));
    char *ids_path = s_path(data, "demo-product-ids.txt");
    char *ids = tu_slurp(ids_path, NULL);
    assert_non_null(ids);
    assert_int_equal(s_count_lines(ids), DEMO_PRODUCTS);
    char *creds = s_path(data, "admin-credentials.json");
    char *text = tu_slurp(creds, NULL);
    assert_non_null(text);
    assert_string_equal(text, pending_text);
    s_expect_mode(creds, 0600);

    free(text);
    free(ids);
    zstr_free(&creds);
    zstr_free(&ids_path);
    zstr_free(&pending);
    zstr_free(&junk);
    zstr_free(&leftover);
    zstr_free(&data);
    s_run_free(&r);
}

/* With an admin in the environment the script makes none (retaild will),
 * and it still seeds the catalog. A usage error exits 2. */
static void test_a_configured_admin_is_left_to_retaild(void **state)
{
    state_t *st = *state;
    char *data = s_path(st->tmp, "var-configured");
    const char *env[] = {"RETAIL_ADMIN_EMAIL=boss@shop.test", "RETAIL_ADMIN_PASSWORD=a long secret",
                         NULL};
    run_t r = s_prepare(st, data, env);
    s_expect_status(&r, 0);
    assert_true(s_exists(data, "catalog"));
    assert_true(s_exists(data, "demo-product-ids.txt"));
    assert_false(s_exists(data, "admin-credentials.json"));
    assert_false(s_exists(data, "admin-credentials.json.new"));
    assert_false(s_exists(data, "users")); /* no account store made */
    s_run_free(&r);

    /* An unknown option: usage, and nothing made. */
    char *other = s_path(st->tmp, "var-usage");
    r = s_script(st, other, NULL, "--no-such-option");
    s_expect_status(&r, 2);
    assert_false(s_exists(st->tmp, "var-usage"));
    s_run_free(&r);
    zstr_free(&other);
    zstr_free(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_run_seeds_and_makes_an_admin),
        cmocka_unit_test(test_second_run_changes_nothing),
        cmocka_unit_test(test_retaild_serves_the_demo),
        cmocka_unit_test(test_an_interrupted_run_is_finished),
        cmocka_unit_test(test_a_configured_admin_is_left_to_retaild),
    };
    return cmocka_run_group_tests(tests, s_setup, s_teardown);
}

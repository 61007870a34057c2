/*  test_settings.c - settings_load(): defaults, ZPL file, environment.
 *
 *  Every process of the system starts from settings_load(), and a wrong
 *  value there (a port of 0 from a typo, a keys directory outside the data
 *  directory) is silent until much later, so the precedence order and the
 *  strict refusal of bad values are tested here: each refusal must name
 *  the offending key. The same goes for a service's own settings, read by
 *  settings_read() from its table: a table with older names is read in
 *  the documented order, and the users service's settings keep the names
 *  API.md section 4 promises (RETAIL_PG_DSN, retail/pg_dsn, ...) beside
 *  their own (RETAIL_USERS_PG_DSN, retail/users/pg_dsn, ...). Each test
 *  runs with every RETAIL_* variable unset and its own temporary
 *  directory, so the developer's environment cannot leak in and the tests
 *  do not depend on one another.
 */
#include "actors/users/settings.h"
#include "actors/users/users.h"
#include "protocol/settings.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const s_env_vars[] = {
    "RETAIL_CONFIG",
    "RETAIL_DATA_DIR",
    "RETAIL_BROKER_ENDPOINT",
    "RETAIL_HTTP_PORT",
    "RETAIL_HEARTBEAT_MS",
    "RETAIL_REQUEST_TIMEOUT_MS",
    "RETAIL_QUEUE_LIMIT",
    "RETAIL_WORKERS",
    "RETAIL_WORKER_CAPACITY",
    "RETAIL_PG_DSN",
    "RETAIL_ADMIN_EMAIL",
    "RETAIL_ADMIN_PASSWORD",
    "RETAIL_USERS_PG_DSN",
    "RETAIL_USERS_ADMIN_EMAIL",
    "RETAIL_USERS_ADMIN_PASSWORD",
    "RETAIL_TEST_NAME",
    "RETAIL_TEST_OLD_NAME",
    "RETAIL_TEST_COUNT",
    "RETAIL_EVENTS_ENDPOINT",
    "RETAIL_EVENTS_PUBLISH_ENDPOINT",
    "RETAIL_EVENTS_KEEP_MS",
    "RETAIL_EVENTS_KEEP_COUNT",
    "RETAIL_EVENTS_OUTBOX",
};

static void s_clear_env(void)
{
    for (size_t i = 0; i < sizeof s_env_vars / sizeof s_env_vars[0]; i++)
        unsetenv(s_env_vars[i]);
}

static int s_setup(void **state)
{
    s_clear_env();
    *state = tu_tempdir("test-settings");
    return 0;
}

static int s_teardown(void **state)
{
    s_clear_env();
    char *dir = *state;
    tu_rmtree(dir);
    zstr_free(&dir);
    return 0;
}

/* Writes text to dir/name; returns the path (zstr_free it). */
static char *s_write(const char *dir, const char *name, const char *text)
{
    char *path = zsys_sprintf("%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(text, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    return path;
}

/* A whole config file with every key set to a non-default value. */
static const char *s_full_config = "#   a test configuration\n"
                                   "retail\n"
                                   "    data_dir = \"/srv/retail-data\"\n"
                                   "    http_port = 9090\n"
                                   "    broker\n"
                                   "        endpoint = \"tcp://10.0.0.1:6000\"\n"
                                   "        heartbeat_ms = 250\n"
                                   "        request_timeout_ms = 1500\n"
                                   "        queue_limit = 77\n"
                                   "    workers = 12\n"
                                   "    worker_capacity = 9\n";

/* Loads expecting failure; asserts err names every string in want. */
static void s_assert_refused(const char *config, const char *const *want)
{
    settings_t s;
    char err[512] = "";
    if (settings_load(&s, config, err, sizeof err) != -1)
        fail_msg("settings accepted, expected a refusal naming %s", want[0]);
    for (size_t i = 0; want[i]; i++)
        if (!strstr(err, want[i]))
            fail_msg("error '%s' does not name '%s'", err, want[i]);
}

static void test_defaults(void **state)
{
    (void)state;
    settings_t s;
    memset(&s, 0xab, sizeof s); /* settings_load must fill every field */
    char err[256] = "";
    assert_int_equal(settings_load(&s, NULL, err, sizeof err), 0);
    assert_string_equal(s.data_dir, "./var");
    assert_string_equal(s.keys_dir, "./var/keys");
    assert_string_equal(s.broker_endpoint, "tcp://127.0.0.1:5555");
    assert_int_equal(s.http_port, 8080);
    assert_int_equal(s.heartbeat_ms, 1000);
    assert_int_equal(s.request_timeout_ms, 5000);
    assert_int_equal(s.queue_limit, 1024);
    assert_int_equal(s.workers, 4);
    assert_int_equal(s.worker_capacity, 4);
    /* An empty variable counts as unset. */
    setenv("RETAIL_HTTP_PORT", "", 1);
    setenv("RETAIL_DATA_DIR", "", 1);
    assert_int_equal(settings_load(&s, NULL, err, sizeof err), 0);
    assert_int_equal(s.http_port, 8080);
    assert_string_equal(s.data_dir, "./var");
}

static void test_file_overrides(void **state)
{
    const char *dir = *state;
    char *path = s_write(dir, "full.cfg", s_full_config);
    settings_t s;
    char err[256] = "";
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_string_equal(s.data_dir, "/srv/retail-data");
    assert_string_equal(s.keys_dir, "/srv/retail-data/keys");
    assert_string_equal(s.broker_endpoint, "tcp://10.0.0.1:6000");
    assert_int_equal(s.http_port, 9090);
    assert_int_equal(s.heartbeat_ms, 250);
    assert_int_equal(s.request_timeout_ms, 1500);
    assert_int_equal(s.queue_limit, 77);
    assert_int_equal(s.workers, 12);
    assert_int_equal(s.worker_capacity, 9);
    zstr_free(&path);

    /* A partial file leaves the rest at the defaults. */
    path = s_write(dir, "partial.cfg",
                   "retail\n"
                   "    broker\n"
                   "        queue_limit = 5\n");
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_int_equal(s.queue_limit, 5);
    assert_int_equal(s.http_port, 8080);
    assert_int_equal(s.heartbeat_ms, 1000);
    assert_string_equal(s.data_dir, "./var");
    assert_string_equal(s.broker_endpoint, "tcp://127.0.0.1:5555");
    zstr_free(&path);

    /* $RETAIL_CONFIG is used when no path is given, and a given path wins
     * over it. */
    char *full = zsys_sprintf("%s/full.cfg", dir);
    setenv("RETAIL_CONFIG", full, 1);
    assert_int_equal(settings_load(&s, NULL, err, sizeof err), 0);
    assert_int_equal(s.http_port, 9090);
    path = s_write(dir, "other.cfg", "retail\n    http_port = 7070\n");
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_int_equal(s.http_port, 7070);
    assert_int_equal(s.workers, 4);
    zstr_free(&path);
    zstr_free(&full);

    /* Boundaries are accepted. */
    path = s_write(dir, "bounds.cfg",
                   "retail\n"
                   "    http_port = 65535\n"
                   "    workers = 1\n"
                   "    broker\n"
                   "        heartbeat_ms = 10\n"
                   "        request_timeout_ms = 600000\n"
                   "        queue_limit = 1000000\n");
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_int_equal(s.http_port, 65535);
    assert_int_equal(s.workers, 1);
    assert_int_equal(s.heartbeat_ms, 10);
    assert_int_equal(s.request_timeout_ms, 600000);
    assert_int_equal(s.queue_limit, 1000000);
    zstr_free(&path);
}

static void test_env_overrides_file(void **state)
{
    const char *dir = *state;
    char *path = s_write(dir, "full.cfg", s_full_config);
    setenv("RETAIL_DATA_DIR", "/env/data", 1);
    setenv("RETAIL_BROKER_ENDPOINT", "ipc:///tmp/retail.sock", 1);
    setenv("RETAIL_HTTP_PORT", "8181", 1);
    setenv("RETAIL_HEARTBEAT_MS", "500", 1);
    setenv("RETAIL_REQUEST_TIMEOUT_MS", "2500", 1);
    setenv("RETAIL_QUEUE_LIMIT", "10", 1);
    setenv("RETAIL_WORKERS", "2", 1);
    setenv("RETAIL_WORKER_CAPACITY", "64", 1);
    settings_t s;
    char err[256] = "";
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_string_equal(s.data_dir, "/env/data");
    assert_string_equal(s.keys_dir, "/env/data/keys");
    assert_string_equal(s.broker_endpoint, "ipc:///tmp/retail.sock");
    assert_int_equal(s.http_port, 8181);
    assert_int_equal(s.heartbeat_ms, 500);
    assert_int_equal(s.request_timeout_ms, 2500);
    assert_int_equal(s.queue_limit, 10);
    assert_int_equal(s.workers, 2);
    assert_int_equal(s.worker_capacity, 64);

    /* One variable alone overrides one value; the file keeps the rest. */
    s_clear_env();
    setenv("RETAIL_WORKERS", "3", 1);
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_int_equal(s.workers, 3);
    assert_int_equal(s.http_port, 9090);
    assert_string_equal(s.data_dir, "/srv/retail-data");
    zstr_free(&path);

    /* And without a file, over the defaults. */
    assert_int_equal(settings_load(&s, NULL, err, sizeof err), 0);
    assert_int_equal(s.workers, 3);
    assert_int_equal(s.http_port, 8080);
}

static void test_invalid_numbers(void **state)
{
    const char *dir = *state;
    /* Environment: the message names the variable and the value. */
    static const struct {
        const char *var, *value;
    } env_bad[] = {
        {"RETAIL_HTTP_PORT", "abc"},
        {"RETAIL_HTTP_PORT", "80x"},
        {"RETAIL_HTTP_PORT", "0"},
        {"RETAIL_HTTP_PORT", "65536"},
        {"RETAIL_HTTP_PORT", "-1"},
        {"RETAIL_HTTP_PORT", "1.5"},
        {"RETAIL_HTTP_PORT", "99999999999999999999999"},
        {"RETAIL_HEARTBEAT_MS", "9"},
        {"RETAIL_HEARTBEAT_MS", "60001"},
        {"RETAIL_REQUEST_TIMEOUT_MS", "600001"},
        {"RETAIL_QUEUE_LIMIT", "0"},
        {"RETAIL_QUEUE_LIMIT", "1000001"},
        {"RETAIL_WORKERS", "257"},
        {"RETAIL_WORKERS", "four"},
        {"RETAIL_WORKERS", "4 "},
        {"RETAIL_WORKER_CAPACITY", "0"},
        {"RETAIL_WORKER_CAPACITY", "65"},
    };
    for (size_t i = 0; i < sizeof env_bad / sizeof env_bad[0]; i++) {
        s_clear_env();
        setenv(env_bad[i].var, env_bad[i].value, 1);
        const char *want[] = {env_bad[i].var, env_bad[i].value, NULL};
        s_assert_refused(NULL, want);
    }
    s_clear_env();

    /* File: the message names the ZPL path. */
    static const struct {
        const char *text, *key, *value;
    } file_bad[] = {
        {"retail\n    http_port = nope\n", "retail/http_port", "nope"},
        {"retail\n    http_port = 70000\n", "retail/http_port", "70000"},
        {"retail\n    http_port = \"\"\n", "retail/http_port", NULL},
        {"retail\n    workers = 0\n", "retail/workers", "0"},
        {"retail\n    worker_capacity = 100\n", "retail/worker_capacity", "100"},
        {"retail\n    broker\n        heartbeat_ms = 5\n", "retail/broker/heartbeat_ms", "5"},
        {"retail\n    broker\n        queue_limit = 12abc\n", "retail/broker/queue_limit", "12abc"},
        {"retail\n    broker\n        request_timeout_ms = -3\n",
         "retail/broker/request_timeout_ms", "-3"},
        {"retail\n    data_dir = \"\"\n", "retail/data_dir", NULL},
    };
    for (size_t i = 0; i < sizeof file_bad / sizeof file_bad[0]; i++) {
        char *path = s_write(dir, "bad.cfg", file_bad[i].text);
        const char *want[] = {file_bad[i].key, file_bad[i].value, NULL};
        s_assert_refused(path, want);
        zstr_free(&path);
    }

    /* A bad environment value is refused even when the file is fine, and
     * a good one does not hide a bad file value. */
    char *path = s_write(dir, "full.cfg", s_full_config);
    setenv("RETAIL_QUEUE_LIMIT", "lots", 1);
    const char *want_env[] = {"RETAIL_QUEUE_LIMIT", NULL};
    s_assert_refused(path, want_env);
    zstr_free(&path);
    s_clear_env();
    path = s_write(dir, "bad.cfg", "retail\n    workers = many\n");
    setenv("RETAIL_WORKERS", "2", 1);
    const char *want_file[] = {"retail/workers", NULL};
    s_assert_refused(path, want_file);
    zstr_free(&path);
}

/* The event stream's settings: defaults, the file, the environment over
 * it, the bounds (0 means no limit) and refusals. */
static void test_events_settings(void **state)
{
    const char *dir = *state;
    settings_t s;
    char err[256] = "";
    assert_int_equal(settings_load(&s, NULL, err, sizeof err), 0);
    assert_string_equal(s.events_endpoint, "tcp://127.0.0.1:5556");
    assert_string_equal(s.events_publish_endpoint, "tcp://127.0.0.1:5557");
    assert_int_equal(s.events_keep_ms, 604800000);
    assert_int_equal(s.events_keep_count, 1000000);
    assert_int_equal(s.events_outbox, 1);

    char *path = s_write(dir, "events.cfg",
                         "retail\n"
                         "    events\n"
                         "        endpoint = \"tcp://10.0.0.2:7000\"\n"
                         "        publish_endpoint = \"tcp://10.0.0.2:7001\"\n"
                         "        keep_ms = 0\n"
                         "        keep_count = 0\n"
                         "        outbox = 0\n");
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_string_equal(s.events_endpoint, "tcp://10.0.0.2:7000");
    assert_string_equal(s.events_publish_endpoint, "tcp://10.0.0.2:7001");
    assert_int_equal(s.events_keep_ms, 0);
    assert_int_equal(s.events_keep_count, 0);
    assert_int_equal(s.events_outbox, 0);

    setenv("RETAIL_EVENTS_ENDPOINT", "tcp://127.0.0.1:6556", 1);
    setenv("RETAIL_EVENTS_PUBLISH_ENDPOINT", "tcp://127.0.0.1:6557", 1);
    setenv("RETAIL_EVENTS_KEEP_MS", "2147483647", 1);
    setenv("RETAIL_EVENTS_KEEP_COUNT", "5", 1);
    setenv("RETAIL_EVENTS_OUTBOX", "1", 1);
    assert_int_equal(settings_load(&s, path, err, sizeof err), 0);
    assert_string_equal(s.events_endpoint, "tcp://127.0.0.1:6556");
    assert_string_equal(s.events_publish_endpoint, "tcp://127.0.0.1:6557");
    assert_int_equal(s.events_keep_ms, 2147483647);
    assert_int_equal(s.events_keep_count, 5);
    assert_int_equal(s.events_outbox, 1);
    zstr_free(&path);

    static const struct {
        const char *var, *value;
    } bad[] = {
        {"RETAIL_EVENTS_KEEP_MS", "-1"},    {"RETAIL_EVENTS_KEEP_MS", "2147483648"},
        {"RETAIL_EVENTS_KEEP_COUNT", "-5"}, {"RETAIL_EVENTS_KEEP_COUNT", "many"},
        {"RETAIL_EVENTS_OUTBOX", "2"},      {"RETAIL_EVENTS_OUTBOX", "yes"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_clear_env();
        setenv(bad[i].var, bad[i].value, 1);
        const char *want[] = {bad[i].var, bad[i].value, NULL};
        s_assert_refused(NULL, want);
    }
    s_clear_env();
    char long_value[300];
    memset(long_value, 'e', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';
    setenv("RETAIL_EVENTS_ENDPOINT", long_value, 1);
    const char *want_long[] = {"RETAIL_EVENTS_ENDPOINT", NULL};
    s_assert_refused(NULL, want_long);
}

static void test_invalid_strings(void **state)
{
    (void)state;
    char long_value[SETTINGS_PATH_MAX + 10];
    memset(long_value, 'd', sizeof long_value - 1);
    long_value[0] = '/';
    long_value[sizeof long_value - 1] = '\0';
    setenv("RETAIL_DATA_DIR", long_value, 1);
    const char *want_dir[] = {"RETAIL_DATA_DIR", NULL};
    s_assert_refused(NULL, want_dir);
    s_clear_env();

    char endpoint[300];
    snprintf(endpoint, sizeof endpoint, "tcp://%0280d:1", 0);
    setenv("RETAIL_BROKER_ENDPOINT", endpoint, 1);
    const char *want_ep[] = {"RETAIL_BROKER_ENDPOINT", NULL};
    s_assert_refused(NULL, want_ep);
}

static void test_missing_file(void **state)
{
    const char *dir = *state;
    char *path = zsys_sprintf("%s/does-not-exist.cfg", dir);
    const char *want[] = {path, NULL};
    s_assert_refused(path, want);
    /* The same through $RETAIL_CONFIG. */
    setenv("RETAIL_CONFIG", path, 1);
    s_assert_refused(NULL, want);
    zstr_free(&path);
}

static void test_keys_dir_derived(void **state)
{
    (void)state;
    settings_t s;
    char err[256] = "";
    setenv("RETAIL_DATA_DIR", "/var/lib/retail", 1);
    assert_int_equal(settings_load(&s, NULL, err, sizeof err), 0);
    assert_string_equal(s.keys_dir, "/var/lib/retail/keys");

    /* A caller (a --data-dir flag) changes data_dir and re-derives. */
    snprintf(s.data_dir, sizeof s.data_dir, "relative/dir");
    settings_derive(&s);
    assert_string_equal(s.keys_dir, "relative/dir/keys");

    /* The longest data_dir that settings_load accepts still yields a
     * keys_dir inside it, never a truncated path elsewhere. */
    int accepted = 0, refused = 0;
    for (size_t n = SETTINGS_PATH_MAX - 12; n < SETTINGS_PATH_MAX; n++) {
        char dir[SETTINGS_PATH_MAX + 1];
        memset(dir, 'a', n);
        dir[0] = '/';
        dir[n] = '\0';
        setenv("RETAIL_DATA_DIR", dir, 1);
        err[0] = '\0';
        if (settings_load(&s, NULL, err, sizeof err) != 0) {
            assert_true(strstr(err, "RETAIL_DATA_DIR") != NULL);
            refused++;
            continue;
        }
        assert_string_equal(s.data_dir, dir);
        size_t dl = strlen(s.data_dir);
        if (strlen(s.keys_dir) != dl + 5 || strncmp(s.keys_dir, s.data_dir, dl) != 0 ||
            strcmp(s.keys_dir + dl, "/keys") != 0)
            fail_msg("data_dir of %zu bytes accepted but keys_dir is not data_dir/keys", n);
        accepted++;
    }
    assert_true(accepted > 0);
    assert_true(refused > 0);
}

/* A service-like struct and its table: one setting with an older name,
 * one without. */
typedef struct {
    char name[16];
    int count;
} own_t;

static const setting_t s_own_table[] = {
    {"retail/test/name", "RETAIL_TEST_NAME", SETTING_STR, offsetof(own_t, name),
     sizeof((own_t *)0)->name, 0, 0, "retail/old_name", "RETAIL_TEST_OLD_NAME"},
    {"retail/test/count", "RETAIL_TEST_COUNT", SETTING_INT, offsetof(own_t, count), 0, 1, 9, NULL,
     NULL},
};

/* Reads s_own_table from config (may be NULL) into out, over defaults. */
static int s_read_own(const char *config, own_t *out, char *err, size_t errlen)
{
    *out = (own_t){.name = "default", .count = 5};
    settings_source_t *source = settings_source_new(config, err, errlen);
    if (!source)
        return -1;
    int rc = settings_read(source, s_own_table, 2, out, err, errlen);
    settings_source_destroy(&source);
    return rc;
}

static void test_read_own_table(void **state)
{
    const char *dir = *state;
    own_t own;
    char err[256] = "";
    /* nothing set: the caller's defaults stay */
    assert_int_equal(s_read_own(NULL, &own, err, sizeof err), 0);
    assert_string_equal(own.name, "default");
    assert_int_equal(own.count, 5);

    /* each source over the one before:
     *   file old name < file name < env old name < env name */
    char *both = s_write(dir, "both.cfg",
                         "retail\n    old_name = \"file-old\"\n"
                         "    test\n        name = \"file-new\"\n        count = 2\n");
    char *old_only = s_write(dir, "old.cfg", "retail\n    old_name = \"file-old\"\n");
    assert_int_equal(s_read_own(old_only, &own, err, sizeof err), 0);
    assert_string_equal(own.name, "file-old");
    assert_int_equal(s_read_own(both, &own, err, sizeof err), 0);
    assert_string_equal(own.name, "file-new");
    assert_int_equal(own.count, 2);
    setenv("RETAIL_TEST_OLD_NAME", "env-old", 1);
    assert_int_equal(s_read_own(both, &own, err, sizeof err), 0);
    assert_string_equal(own.name, "env-old"); /* the environment wins over the file */
    setenv("RETAIL_TEST_NAME", "env-new", 1);
    assert_int_equal(s_read_own(both, &own, err, sizeof err), 0);
    assert_string_equal(own.name, "env-new");
    unsetenv("RETAIL_TEST_OLD_NAME");
    assert_int_equal(s_read_own(old_only, &own, err, sizeof err), 0);
    assert_string_equal(own.name, "env-new");
    s_clear_env();

    /* a bad value is refused under whichever name carried it */
    setenv("RETAIL_TEST_OLD_NAME", "a name far too long for it", 1);
    assert_int_equal(s_read_own(NULL, &own, err, sizeof err), -1);
    assert_non_null(strstr(err, "RETAIL_TEST_OLD_NAME"));
    s_clear_env();
    setenv("RETAIL_TEST_COUNT", "10", 1);
    assert_int_equal(s_read_own(NULL, &own, err, sizeof err), -1);
    assert_non_null(strstr(err, "RETAIL_TEST_COUNT"));
    assert_non_null(strstr(err, "1..9"));
    s_clear_env();
    char *bad = s_write(dir, "bad.cfg", "retail\n    old_name = \"\"\n");
    assert_int_equal(s_read_own(bad, &own, err, sizeof err), -1);
    assert_non_null(strstr(err, "retail/old_name"));
    zstr_free(&bad);
    zstr_free(&both);
    zstr_free(&old_only);
}

/* The users service's settings, read as users_service reads them. */
static int s_read_users(const char *config, users_settings_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    settings_source_t *source = settings_source_new(config, err, errlen);
    if (!source)
        return -1;
    assert_int_equal(users_service.settings_size, sizeof *out);
    int rc =
        settings_read(source, users_service.settings, users_service.n_settings, out, err, errlen);
    settings_source_destroy(&source);
    return rc;
}

static void test_users_settings_old_and_new_names(void **state)
{
    const char *dir = *state;
    users_settings_t us;
    char err[256] = "";
    assert_int_equal(s_read_users(NULL, &us, err, sizeof err), 0);
    assert_string_equal(us.pg_dsn, "");
    assert_string_equal(us.admin_email, "");
    assert_string_equal(us.admin_password, "");

    /* API.md section 4's names, exactly as before */
    setenv("RETAIL_PG_DSN", "dbname=old", 1);
    setenv("RETAIL_ADMIN_EMAIL", "old@example.com", 1);
    setenv("RETAIL_ADMIN_PASSWORD", "old secret", 1);
    assert_int_equal(s_read_users(NULL, &us, err, sizeof err), 0);
    assert_string_equal(us.pg_dsn, "dbname=old");
    assert_string_equal(us.admin_email, "old@example.com");
    assert_string_equal(us.admin_password, "old secret");
    /* an empty variable is unset, as ever (the tests start LMDB that way) */
    setenv("RETAIL_PG_DSN", "", 1);
    assert_int_equal(s_read_users(NULL, &us, err, sizeof err), 0);
    assert_string_equal(us.pg_dsn, "");
    /* the service's own names win over them */
    setenv("RETAIL_PG_DSN", "dbname=old", 1);
    setenv("RETAIL_USERS_PG_DSN", "dbname=new", 1);
    setenv("RETAIL_USERS_ADMIN_EMAIL", "new@example.com", 1);
    assert_int_equal(s_read_users(NULL, &us, err, sizeof err), 0);
    assert_string_equal(us.pg_dsn, "dbname=new");
    assert_string_equal(us.admin_email, "new@example.com");
    assert_string_equal(us.admin_password, "old secret");
    s_clear_env();

    /* in the file: retail/pg_dsn as before, retail/users/pg_dsn over it */
    char *old_cfg = s_write(dir, "old.cfg",
                            "retail\n    pg_dsn = \"dbname=file-old\"\n"
                            "    admin_email = \"file@example.com\"\n");
    assert_int_equal(s_read_users(old_cfg, &us, err, sizeof err), 0);
    assert_string_equal(us.pg_dsn, "dbname=file-old");
    assert_string_equal(us.admin_email, "file@example.com");
    char *new_cfg = s_write(dir, "new.cfg",
                            "retail\n    pg_dsn = \"dbname=file-old\"\n"
                            "    users\n        pg_dsn = \"dbname=file-new\"\n");
    assert_int_equal(s_read_users(new_cfg, &us, err, sizeof err), 0);
    assert_string_equal(us.pg_dsn, "dbname=file-new");
    /* and the environment, under the old name too, over any file */
    setenv("RETAIL_PG_DSN", "dbname=env-old", 1);
    assert_int_equal(s_read_users(new_cfg, &us, err, sizeof err), 0);
    assert_string_equal(us.pg_dsn, "dbname=env-old");
    s_clear_env();

    /* the shared settings ignore the users service's keys and variables */
    settings_t s;
    setenv("RETAIL_PG_DSN", "dbname=old", 1);
    assert_int_equal(settings_load(&s, new_cfg, err, sizeof err), 0);
    zstr_free(&old_cfg);
    zstr_free(&new_cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_file_overrides, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_env_overrides_file, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_numbers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_strings, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_events_settings, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_dir_derived, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_read_own_table, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_users_settings_old_and_new_names, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests_name("settings", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

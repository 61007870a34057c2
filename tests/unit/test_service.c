/*  test_service.c - service_start() and service_stop() on a small fake service.
 *
 *  The fake service "fake" has every part a definition may have: its own
 *  settings (retail/fake/... in a ZPL file and RETAIL_FAKE_* variables),
 *  shared state, one extra worker, per-worker state and a background
 *  actor that ticks on a timer. Each of its hooks appends one line to a
 *  log file named by its settings, so the test reads afterwards, from the
 *  outside, in which order things happened:
 *    - settings first (the log's path comes from them), then the shared
 *      state, then the background actor, then the workers' state: the
 *      background actor is running before the first worker starts;
 *    - at the stop, every worker's state goes first, then the background
 *      actor (which sees no worker left), then the shared state;
 *    - the background actor really runs beside the pool (it ticks), and
 *      the pool really serves, through a real broker in this process;
 *    - a step that fails undoes the steps before it, and the reason names
 *      the service and the step; a bad settings value is refused, naming
 *      the variable, before any hook runs.
 *  A service with no hooks at all (sys) runs too.
 */
#include "actors/service.h"
#include "actors/sys/sys.h"
#include "protocol/envelope.h"
#include "protocol/mdpcli.h"
#include "router/broker.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WAIT_MS 5000

/* ------------------------------------------------------------------ */
/* The fake service                                                    */

typedef struct {
    char log[1024];
    int tick_ms;
    char fail[16]; /* "shared", "background" or "state": that step fails */
} fake_settings_t;

typedef struct {
    char log[1024];
    bool fail_state;
    atomic_int workers; /* states alive */
} fake_shared_t;

static const setting_t s_fake_settings[] = {
    {"retail/fake/log", "RETAIL_FAKE_LOG", SETTING_STR, offsetof(fake_settings_t, log),
     sizeof((fake_settings_t *)0)->log, 0, 0, NULL, NULL},
    {"retail/fake/tick_ms", "RETAIL_FAKE_TICK_MS", SETTING_INT, offsetof(fake_settings_t, tick_ms),
     0, 1, 1000, NULL, NULL},
    {"retail/fake/fail", "RETAIL_FAKE_FAIL", SETTING_STR, offsetof(fake_settings_t, fail),
     sizeof((fake_settings_t *)0)->fail, 0, 0, NULL, NULL},
};

/* Appends one line to the log; O_APPEND keeps lines whole across threads. */
static void s_log(const char *path, const char *line)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0600);
    assert_true(fd >= 0);
    char text[128];
    int len = snprintf(text, sizeof text, "%s\n", line);
    assert_int_equal(write(fd, text, (size_t)len), len);
    assert_int_equal(close(fd), 0);
}

static void s_fake_defaults(void *settings)
{
    ((fake_settings_t *)settings)->tick_ms = 50;
}

static void *s_fake_shared_new(const service_env_t *env, const void *settings, char *err,
                               size_t errlen)
{
    (void)env;
    const fake_settings_t *own = settings;
    s_log(own->log, "shared_new");
    if (streq(own->fail, "shared")) {
        snprintf(err, errlen, "told to fail");
        return NULL;
    }
    fake_shared_t *shared = calloc(1, sizeof *shared);
    assert_non_null(shared);
    snprintf(shared->log, sizeof shared->log, "%s", own->log);
    shared->fail_state = streq(own->fail, "state");
    atomic_init(&shared->workers, 0);
    return shared;
}

static void s_fake_shared_destroy(void **shared)
{
    fake_shared_t *self = *shared;
    s_log(self->log, "shared_destroy");
    free(self);
    *shared = NULL;
}

static void *s_fake_state_new(void *shared)
{
    fake_shared_t *self = shared;
    s_log(self->log, "state_new");
    if (self->fail_state)
        return NULL;
    atomic_fetch_add(&self->workers, 1);
    return self;
}

static void s_fake_state_destroy(void **state)
{
    fake_shared_t *self = *state;
    atomic_fetch_sub(&self->workers, 1);
    s_log(self->log, "state_destroy");
    *state = NULL;
}

static int s_fake_extra_workers(void *shared)
{
    (void)shared;
    return 1;
}

typedef struct {
    fake_shared_t *shared;
    int tick_ms;
} background_args_t;

/* Ticks every tick_ms until $TERM; logs its first tick and, at the end,
 * how many workers still had state. */
static void s_background(zsock_t *pipe, void *args)
{
    background_args_t a = *(background_args_t *)args;
    free(args);
    zsock_signal(pipe, 0);
    zpoller_t *poller = zpoller_new(pipe, NULL);
    assert_non_null(poller);
    bool ticked = false;
    while (true) {
        void *which = zpoller_wait(poller, a.tick_ms);
        if (which == pipe) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                break;
        } else if (zpoller_terminated(poller))
            break;
        else if (!ticked) {
            s_log(a.shared->log, "background tick");
            ticked = true;
        }
    }
    char line[64];
    snprintf(line, sizeof line, "background stop workers=%d", atomic_load(&a.shared->workers));
    s_log(a.shared->log, line);
    zpoller_destroy(&poller);
}

static zactor_t *s_fake_background_new(const service_env_t *env, const void *settings, void *shared,
                                       char *err, size_t errlen)
{
    (void)env;
    const fake_settings_t *own = settings;
    s_log(own->log, "background_new");
    if (streq(own->fail, "background")) {
        snprintf(err, errlen, "told to fail");
        return NULL;
    }
    background_args_t *args = malloc(sizeof *args);
    assert_non_null(args);
    *args = (background_args_t){.shared = shared, .tick_ms = own->tick_ms};
    return zactor_new(s_background, args);
}

static void s_ping(call_t *call, void *state)
{
    (void)state;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "pong");
    msgpack_pack_true(pk);
}

static const worker_op_t s_fake_ops[] = {{"ping", s_ping}, {NULL, NULL}};

static const worker_op_t *s_fake_ops_fn(bool with_test_ops)
{
    (void)with_test_ops;
    return s_fake_ops;
}

static const service_def_t s_fake = {
    .name = "fake",
    .ops = s_fake_ops_fn,
    .settings = s_fake_settings,
    .n_settings = sizeof s_fake_settings / sizeof s_fake_settings[0],
    .settings_size = sizeof(fake_settings_t),
    .settings_defaults = s_fake_defaults,
    .shared_new = s_fake_shared_new,
    .shared_destroy = s_fake_shared_destroy,
    .state_new = s_fake_state_new,
    .state_destroy = s_fake_state_destroy,
    .extra_workers = s_fake_extra_workers,
    .background_new = s_fake_background_new,
};

/* ------------------------------------------------------------------ */
/* Fixture: a broker in this process, a temporary directory, a config   */

typedef struct {
    char *dir;
    char *log;    /* dir/fake.log, named by the config file */
    char *config; /* dir/retail.cfg */
    char endpoint[96];
    zactor_t *broker;
    settings_t common;
    settings_source_t *source;
    service_env_t env;
} fixture_t;

static void s_clear_env(void)
{
    unsetenv("RETAIL_CONFIG");
    unsetenv("RETAIL_FAKE_LOG");
    unsetenv("RETAIL_FAKE_TICK_MS");
    unsetenv("RETAIL_FAKE_FAIL");
    unsetenv("RETAIL_WORKERS");
}

/* Loads the settings the way retaild does, from the fixture's file and
 * the environment as it is now. */
static void s_load(fixture_t *f)
{
    settings_source_destroy(&f->source);
    char err[256] = "";
    f->source = settings_source_new(f->config, err, sizeof err);
    if (!f->source)
        fail_msg("%s", err);
    assert_int_equal(settings_load_from(&f->common, f->source, err, sizeof err), 0);
    f->env =
        (service_env_t){.common = &f->common, .source = f->source, .broker_endpoint = f->endpoint};
}

static int s_setup(void **state)
{
    s_clear_env();
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_tempdir("test-service");
    f->log = zsys_sprintf("%s/fake.log", f->dir);
    f->config = zsys_sprintf("%s/retail.cfg", f->dir);
    FILE *cfg = fopen(f->config, "w");
    assert_non_null(cfg);
    fprintf(cfg, "retail\n    workers = 2\n    fake\n        log = \"%s\"\n", f->log);
    assert_int_equal(fclose(cfg), 0);
    snprintf(f->endpoint, sizeof f->endpoint, "inproc://test-service-%lld",
             (long long)zclock_usecs());
    broker_config_t bc = {.inproc_endpoint = f->endpoint, .heartbeat_ms = 100};
    f->broker = broker_new(&bc);
    assert_non_null(f->broker);
    s_load(f);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    broker_destroy(&f->broker);
    settings_source_destroy(&f->source);
    tu_rmtree(f->dir);
    zstr_free(&f->dir);
    zstr_free(&f->log);
    zstr_free(&f->config);
    free(f);
    s_clear_env();
    return 0;
}

/* The log's lines, in order (a zlist of strings the caller destroys). */
static zlist_t *s_read_log(const char *path)
{
    zlist_t *lines = zlist_new();
    assert_non_null(lines);
    zlist_autofree(lines);
    FILE *in = fopen(path, "r");
    if (!in)
        return lines; /* nothing logged */
    char line[256];
    while (fgets(line, sizeof line, in)) {
        line[strcspn(line, "\n")] = '\0';
        assert_int_equal(zlist_append(lines, line), 0);
    }
    fclose(in);
    return lines;
}

static bool s_log_has(const char *path, const char *want)
{
    zlist_t *lines = s_read_log(path);
    bool found = false;
    for (char *line = zlist_first(lines); line && !found; line = zlist_next(lines))
        found = streq(line, want);
    zlist_destroy(&lines);
    return found;
}

/* Asserts that the log is exactly want[] (NULL ends it) but for the
 * background actor's tick, which comes when its timer says: a tick, if
 * any, must come after "background_new" and before "background stop". */
static void s_assert_log(const char *path, const char *const *want, const char *context)
{
    zlist_t *lines = s_read_log(path);
    size_t i = 0;
    bool background = false;
    for (char *line = zlist_first(lines); line; line = zlist_next(lines)) {
        if (streq(line, "background tick")) {
            if (!background)
                fail_msg("%s: a tick outside the background actor's life", context);
            continue;
        }
        if (!want[i])
            fail_msg("%s: log line \"%s\"; expected the log to end", context, line);
        if (!streq(line, want[i]))
            fail_msg("%s: log line \"%s\", expected \"%s\"", context, line, want[i]);
        background = streq(line, "background_new") || (background && !strstr(line, "stop"));
        i++;
    }
    if (want[i])
        fail_msg("%s: the log ends before \"%s\"", context, want[i]);
    zlist_destroy(&lines);
}

/* Calls service op over the broker; true when the reply says ok. */
static bool s_call_ok(const fixture_t *f, const char *service, const char *op)
{
    mdpcli_t *cli = mdpcli_new_inproc(f->endpoint, "test");
    assert_non_null(cli);
    msgpack_sbuffer request;
    msgpack_sbuffer_init(&request);
    assert_int_equal(envelope_pack_request(&request, 7, op, NULL, NULL, 0), 0);
    assert_int_equal(mdpcli_send(cli, service, request.data, request.size), 0);
    msgpack_sbuffer_destroy(&request);
    zframe_t *body = mdpcli_recv(cli, WAIT_MS, NULL);
    bool ok = false;
    if (body) {
        msgpack_zone zone;
        assert_true(msgpack_zone_init(&zone, 256));
        envelope_reply_t reply;
        const char *why;
        ok = envelope_decode_reply(zframe_data(body), zframe_size(body), &zone, &reply, &why) &&
             reply.ok;
        msgpack_zone_destroy(&zone);
        zframe_destroy(&body);
    }
    mdpcli_destroy(&cli);
    return ok;
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_start_and_stop_in_order(void **state)
{
    fixture_t *f = *state;
    setenv("RETAIL_FAKE_TICK_MS", "5", 1); /* the environment beside the file */
    s_load(f);
    char err[256] = "";
    service_t *svc = service_start(&s_fake, &f->env, err, sizeof err);
    if (!svc)
        fail_msg("the fake service did not start: %s", err);
    assert_ptr_equal(service_def(svc), &s_fake);
    assert_int_equal(service_workers(svc), 2 + 1); /* retail/workers, plus its extra one */
    assert_non_null(service_pool(svc));
    assert_int_equal(pool_size(service_pool(svc)), 3);

    /* the background actor runs beside the pool, and the pool serves */
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (!s_log_has(f->log, "background tick") && zclock_mono() < deadline)
        zclock_sleep(5);
    assert_true(s_log_has(f->log, "background tick"));
    assert_true(s_call_ok(f, "fake", "ping"));
    service_stop(&svc);
    assert_null(svc);

    const char *const want[] = {"shared_new",
                                "background_new",
                                "state_new",
                                "state_new",
                                "state_new",
                                "state_destroy",
                                "state_destroy",
                                "state_destroy",
                                "background stop workers=0",
                                "shared_destroy",
                                NULL};
    s_assert_log(f->log, want, "start and stop");
    service_stop(&svc); /* a NULL service: nothing */
}

static void test_a_failed_step_undoes_the_ones_before(void **state)
{
    fixture_t *f = *state;
    static const struct {
        const char *fail;
        const char *reason; /* in err */
        const char *log[8];
    } cases[] = {
        {"shared", "fake: told to fail", {"shared_new", NULL}},
        {"background",
         "fake background actor: told to fail",
         {"shared_new", "background_new", "shared_destroy", NULL}},
        /* the first worker's state fails: the pool does not start */
        {"state",
         "fake: the pool of 3 workers could not start",
         {"shared_new", "background_new", "state_new", "background stop workers=0",
          "shared_destroy", NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        unlink(f->log);
        setenv("RETAIL_FAKE_FAIL", cases[i].fail, 1);
        s_load(f);
        char err[256] = "";
        service_t *svc = service_start(&s_fake, &f->env, err, sizeof err);
        if (svc)
            fail_msg("started though told to fail at %s", cases[i].fail);
        if (!strstr(err, cases[i].reason))
            fail_msg("failing at %s: \"%s\" does not say \"%s\"", cases[i].fail, err,
                     cases[i].reason);
        s_assert_log(f->log, cases[i].log, cases[i].fail);
    }
}

static void test_bad_settings_refused_before_any_hook(void **state)
{
    fixture_t *f = *state;
    setenv("RETAIL_FAKE_TICK_MS", "soon", 1);
    s_load(f);
    char err[256] = "";
    assert_null(service_start(&s_fake, &f->env, err, sizeof err));
    assert_non_null(strstr(err, "fake settings"));
    assert_non_null(strstr(err, "RETAIL_FAKE_TICK_MS"));
    assert_non_null(strstr(err, "soon"));
    assert_false(zsys_file_exists(f->log));
}

static void test_a_service_without_hooks(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    service_t *svc = service_start(&sys_service, &f->env, err, sizeof err);
    if (!svc)
        fail_msg("sys did not start: %s", err);
    assert_int_equal(service_workers(svc), 2);
    assert_true(s_call_ok(f, "sys", "ping"));
    service_stop(&svc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_start_and_stop_in_order, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_step_undoes_the_ones_before, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_settings_refused_before_any_hook, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_a_service_without_hooks, s_setup, s_teardown),
    };
    int failed = cmocka_run_group_tests_name("service", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

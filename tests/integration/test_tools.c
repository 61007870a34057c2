/*  test_tools.c - the command-line tools against a real retaild.
 *
 *  One retaild (tests/fixture.h: every role, two workers a pool) runs for
 *  the whole group on private ports and a private data directory. The
 *  tests then run
 *  build/retailctl and build/loadgen as an operator would: a fresh process
 *  each time, configured only through RETAIL_DATA_DIR and
 *  RETAIL_BROKER_ENDPOINT, judged by exit status and output.
 *
 *  Covers: keygen writes the pair and the allow-list entry and never prints
 *  the secret key; reserved and path-like names are refused; call turns
 *  JSON into a request and prints the reply envelope as JSON (echo, ping,
 *  whoami with the certificate's name, not_found, unavailable); malformed
 *  or non-object arguments are usage errors; services says up and down; an
 *  unreachable broker and a revoked certificate end in a timeout (exit 3);
 *  loadgen --json reports requests and no errors, and gets no replies (exit
 *  1) once its own certificate is revoked, without re-admitting itself;
 *  last, retaild stops with exit 0 on SIGTERM.
 *
 *  The group teardown stops retaild whatever happened, and it dies with
 *  the test process anyway (PR_SET_PDEATHSIG).
 */
#include "tests/fixture.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 30000 /* per tool run; generous for sanitizer builds */
#define RUN_TIMED_OUT -1
#define RUN_SIGNALLED -2

/* The outcome of one tool run. */
typedef struct {
    int status; /* exit code, RUN_TIMED_OUT or RUN_SIGNALLED */
    char *out;  /* stdout, NUL-terminated */
    char *err;  /* stderr, NUL-terminated */
} run_t;

/* ---- running a tool ---- */

typedef struct {
    char *data;
    size_t len, cap;
} buf_t;

static void s_buf_append(buf_t *b, const char *data, size_t len)
{
    if (b->len + len + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + len + 1)
            cap *= 2;
        b->data = realloc(b->data, cap);
        assert_non_null(b->data);
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}

/* Runs $build/TOOL with args (NULL-terminated, argv[0] excluded) in this
 * process's environment, stdin from /dev/null, and collects its output and
 * exit status. A run that outlives RUN_TIMEOUT_MS is killed. */
static void s_run(run_t *r, const char *tool, const char *const *args)
{
    char *path = zsys_sprintf("%s/%s", tu_build_dir(), tool);
    const char *argv[32] = {path};
    int argc = 1;
    for (int i = 0; args && args[i]; i++) {
        assert_true(argc < 31);
        argv[argc++] = args[i];
    }
    argv[argc] = NULL;

    int out_pipe[2], err_pipe[2];
    assert_int_equal(pipe2(out_pipe, O_CLOEXEC), 0);
    assert_int_equal(pipe2(err_pipe, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_RDONLY);
        if (null < 0 || dup2(null, 0) < 0 || dup2(out_pipe[1], 1) < 0 || dup2(err_pipe[1], 2) < 0)
            _exit(127);
        execv(path, (char *const *)argv);
        perror("execv");
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);

    buf_t out = {0}, err = {0};
    s_buf_append(&out, "", 0);
    s_buf_append(&err, "", 0);
    struct pollfd fds[2] = {{.fd = out_pipe[0], .events = POLLIN},
                            {.fd = err_pipe[0], .events = POLLIN}};
    buf_t *bufs[2] = {&out, &err};
    int open_fds = 2;
    bool timed_out = false;
    int64_t deadline = zclock_mono() + RUN_TIMEOUT_MS;
    while (open_fds > 0) {
        int64_t left = deadline - zclock_mono();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        int n = poll(fds, 2, (int)left);
        if (n < 0 && errno == EINTR)
            continue;
        assert_true(n >= 0);
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !fds[i].revents)
                continue;
            char chunk[4096];
            ssize_t got = read(fds[i].fd, chunk, sizeof chunk);
            if (got > 0)
                s_buf_append(bufs[i], chunk, (size_t)got);
            else if (got == 0 || errno != EINTR) {
                close(fds[i].fd);
                fds[i].fd = -1;
                open_fds--;
            }
        }
    }
    for (int i = 0; i < 2; i++)
        if (fds[i].fd >= 0)
            close(fds[i].fd);
    if (timed_out)
        kill(pid, SIGKILL);
    int status;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (timed_out)
        r->status = RUN_TIMED_OUT;
    else if (WIFEXITED(status))
        r->status = WEXITSTATUS(status);
    else
        r->status = RUN_SIGNALLED;
    r->out = out.data;
    r->err = err.data;
    zstr_free(&path);
}

static void s_run_free(run_t *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

/* Asserts the exit status, showing the tool's output when it differs. */
static void s_expect_status(const run_t *r, int want)
{
    if (r->status != want)
        print_error("exit status %d, expected %d\n--- stdout:\n%s--- stderr:\n%s---\n", r->status,
                    want, r->out, r->err);
    assert_int_equal(r->status, want);
}

/* Runs retailctl with args and checks its exit status. */
static void s_retailctl(run_t *r, int want, const char *const *args)
{
    s_run(r, "retailctl", args);
    s_expect_status(r, want);
}

/* True when text has a line equal to line. */
static bool s_has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p;) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len == n && memcmp(p, line, n) == 0)
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* Parses text as one JSON document; fails the test when it is not. */
static json_t *s_json(const char *text)
{
    json_error_t error;
    json_t *doc = json_loads(text, 0, &error);
    if (!doc)
        print_error("not JSON (line %d: %s):\n%s\n", error.line, error.text, text);
    assert_non_null(doc);
    return doc;
}

/* The reply envelope printed by `retailctl call`, checked for ok. */
static json_t *s_reply(const run_t *r, bool ok)
{
    json_t *reply = s_json(r->out);
    assert_true(json_is_object(reply));
    assert_true(json_is_integer(json_object_get(reply, "id")));
    assert_true(json_is_boolean(json_object_get(reply, "ok")));
    assert_int_equal(json_is_true(json_object_get(reply, "ok")), ok);
    return reply;
}

/* error.code of a failed reply. */
static void s_expect_error_code(const run_t *r, const char *code)
{
    json_t *reply = s_reply(r, false);
    json_t *error = json_object_get(reply, "error");
    assert_true(json_is_object(error));
    assert_string_equal(json_string_value(json_object_get(error, "code")), code);
    assert_true(json_is_string(json_object_get(error, "message")));
    json_decref(reply);
}

/* The quoted value of `key = "..."` in a ZPL certificate file. */
static char *s_cert_value(const char *path, const char *key)
{
    char *text = tu_slurp(path, NULL);
    assert_non_null(text);
    char *value = NULL;
    char *at = strstr(text, key);
    if (at) {
        char *open = strchr(at, '"');
        char *close = open ? strchr(open + 1, '"') : NULL;
        if (close)
            value = zsys_sprintf("%.*s", (int)(close - open - 1), open + 1);
    }
    free(text);
    assert_non_null(value);
    return value;
}

static bool s_exists(const fixture_t *fx, const char *relative)
{
    char *path = zsys_sprintf("%s/%s", fx->dir, relative);
    bool exists = access(path, F_OK) == 0;
    zstr_free(&path);
    return exists;
}

/* ---- tests ---- */

static void test_keygen_creates_pair_and_hides_secret(void **state)
{
    fixture_t *fx = *state;
    run_t r;
    s_retailctl(&r, 0, (const char *[]){"keygen", "alice", NULL});

    char *pub = zsys_sprintf("%s/alice.cert", fx->keys);
    char *sec = zsys_sprintf("%s/alice.cert_secret", fx->keys);
    char *allowed = zsys_sprintf("%s/clients/alice.cert", fx->keys);
    struct stat st;
    assert_int_equal(stat(pub, &st), 0);
    assert_int_equal(stat(allowed, &st), 0);
    assert_int_equal(stat(sec, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    /* the allow-list holds the same public key, and no secret */
    char *public_key = s_cert_value(pub, "public-key");
    char *listed_key = s_cert_value(allowed, "public-key");
    assert_string_equal(public_key, listed_key);
    char *listed = tu_slurp(allowed, NULL);
    assert_null(strstr(listed, "secret-key"));

    /* the output names the files and the public key, never the secret */
    char *secret_key = s_cert_value(sec, "secret-key");
    assert_int_equal(strlen(secret_key), 40);
    assert_non_null(strstr(r.out, public_key));
    assert_null(strstr(r.out, secret_key));
    assert_null(strstr(r.err, secret_key));
    s_run_free(&r);

    /* again: the existing pair is shown, not replaced, still no secret */
    s_retailctl(&r, 0, (const char *[]){"keygen", "alice", NULL});
    assert_non_null(strstr(r.out, public_key));
    assert_null(strstr(r.out, secret_key));
    assert_null(strstr(r.err, secret_key));
    char *secret_again = s_cert_value(sec, "secret-key");
    assert_string_equal(secret_again, secret_key);
    s_run_free(&r);

    zstr_free(&secret_again);
    zstr_free(&secret_key);
    free(listed);
    zstr_free(&listed_key);
    zstr_free(&public_key);
    zstr_free(&allowed);
    zstr_free(&sec);
    zstr_free(&pub);
}

static void test_keygen_refuses_reserved_and_path_names(void **state)
{
    fixture_t *fx = *state;
    char *broker_cert = zsys_sprintf("%s/broker.cert", fx->keys);
    char *before = tu_slurp(broker_cert, NULL);
    assert_non_null(before);

    run_t r;
    s_retailctl(&r, 2, (const char *[]){"keygen", "broker", NULL});
    assert_string_equal(r.out, "");
    s_run_free(&r);
    char *after = tu_slurp(broker_cert, NULL);
    assert_string_equal(after, before);
    assert_false(s_exists(fx, "keys/clients/broker.cert"));

    s_retailctl(&r, 2, (const char *[]){"keygen", "../x", NULL});
    assert_string_equal(r.out, "");
    s_run_free(&r);
    assert_false(s_exists(fx, "x.cert"));
    assert_false(s_exists(fx, "x.cert_secret"));
    assert_false(s_exists(fx, "keys/x.cert"));

    free(after);
    free(before);
    zstr_free(&broker_cert);
}

/* A certificate named after a part of the system is trusted as that part
 * (the catalog moves stock for "orders"): plain keygen refuses the names,
 * --cert never creates one, and keygen --service makes one on purpose. */
static void test_keygen_refuses_service_names_unless_told(void **state)
{
    fixture_t *fx = *state;
    const char *names[] = {"orders", "bridge", "catalog", "payments"};
    run_t r;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        s_retailctl(&r, 2, (const char *[]){"keygen", names[i], NULL});
        assert_string_equal(r.out, "");
        assert_non_null(strstr(r.err, "--service"));
        s_run_free(&r);
        char *cert = zsys_sprintf("keys/%s.cert", names[i]);
        char *listed = zsys_sprintf("keys/clients/%s.cert", names[i]);
        assert_false(s_exists(fx, cert));
        assert_false(s_exists(fx, listed));
        zstr_free(&cert);
        zstr_free(&listed);
    }
    s_retailctl(&r, 3, (const char *[]){"call", "--cert", "orders", "sys", "ping", NULL});
    s_run_free(&r);
    assert_false(s_exists(fx, "keys/orders.cert"));
    assert_false(s_exists(fx, "keys/clients/orders.cert"));

    /* --service is for those names only */
    s_retailctl(&r, 2, (const char *[]){"keygen", "--service", "carol", NULL});
    s_run_free(&r);
    assert_false(s_exists(fx, "keys/carol.cert"));
    s_retailctl(&r, 0, (const char *[]){"keygen", "--service", "orders", NULL});
    s_run_free(&r);
    assert_true(s_exists(fx, "keys/orders.cert"));
    assert_true(s_exists(fx, "keys/clients/orders.cert"));
}

static void test_call_echo_round_trips_json(void **state)
{
    (void)state;
    const char *args = "{\"a\":[1,2,{\"b\":\"\xc3\xbc\"}],\"n\":-5}";
    run_t r;
    s_retailctl(&r, 0, (const char *[]){"call", "sys", "echo", args, NULL});
    json_t *reply = s_reply(&r, true);
    json_t *want = s_json(args);
    assert_true(json_equal(json_object_get(reply, "data"), want));
    json_decref(want);
    json_decref(reply);
    s_run_free(&r);
}

static void test_call_ping(void **state)
{
    (void)state;
    run_t r;
    s_retailctl(&r, 0, (const char *[]){"call", "sys", "ping", NULL});
    json_t *reply = s_reply(&r, true);
    assert_true(json_is_true(json_object_get(json_object_get(reply, "data"), "pong")));
    json_decref(reply);
    s_run_free(&r);
}

static void test_call_whoami_names_the_certificate(void **state)
{
    (void)state;
    run_t r;
    s_retailctl(&r, 0, (const char *[]){"keygen", "alice", NULL});
    s_run_free(&r);
    /* --cert is an option of call (it may also follow the positionals) */
    s_retailctl(&r, 0, (const char *[]){"call", "--cert", "alice", "sys", "whoami", NULL});
    json_t *reply = s_reply(&r, true);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(reply, "data"), "caller")), "alice");
    json_decref(reply);
    s_run_free(&r);

    /* the default certificate is retailctl's own */
    s_retailctl(&r, 0, (const char *[]){"call", "sys", "whoami", NULL});
    reply = s_reply(&r, true);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(reply, "data"), "caller")), "retailctl");
    json_decref(reply);
    s_run_free(&r);
}

static void test_call_unknown_op_is_not_found(void **state)
{
    (void)state;
    run_t r;
    s_retailctl(&r, 1, (const char *[]){"call", "sys", "nosuchop", NULL});
    s_expect_error_code(&r, "not_found");
    s_run_free(&r);
}

static void test_call_unknown_service_is_unavailable(void **state)
{
    (void)state;
    run_t r;
    s_retailctl(&r, 1, (const char *[]){"call", "nosuchservice", "ping", NULL});
    s_expect_error_code(&r, "unavailable");
    s_run_free(&r);
}

static void test_call_bad_arguments_are_usage_errors(void **state)
{
    (void)state;
    const char *bad[] = {"{bad json", "[1]", "\"text\"", "{\"a\":1} trailing"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        run_t r;
        s_retailctl(&r, 2, (const char *[]){"call", "sys", "echo", bad[i], NULL});
        assert_string_equal(r.out, "");
        assert_true(strlen(r.err) > 0);
        s_run_free(&r);
    }
}

static void test_services_says_up_and_down(void **state)
{
    (void)state;
    run_t r;
    s_retailctl(&r, 0, (const char *[]){"services", NULL});
    assert_true(s_has_line(r.out, "sys up"));
    assert_true(s_has_line(r.out, "catalog up"));
    assert_true(s_has_line(r.out, "users up"));
    assert_true(s_has_line(r.out, "orders up"));
    s_run_free(&r);
    /* a service that no process runs (orders was one until it was built) */
    s_retailctl(&r, 0, (const char *[]){"services", "nosuchservice", "sys", NULL});
    assert_true(s_has_line(r.out, "nosuchservice down"));
    assert_true(s_has_line(r.out, "sys up"));
    s_run_free(&r);
}

static void test_unreachable_broker_times_out(void **state)
{
    (void)state;
    char *endpoint = zsys_sprintf("tcp://127.0.0.1:%d", tu_free_port());
    run_t r;
    int64_t start = zclock_mono();
    s_retailctl(
        &r, 3,
        (const char *[]){"--broker", endpoint, "call", "sys", "ping", "--timeout", "500", NULL});
    int64_t took = zclock_mono() - start;
    assert_true(took >= 500);
    assert_string_equal(r.out, "");
    assert_true(strlen(r.err) > 0);
    s_run_free(&r);
    zstr_free(&endpoint);
}

static void test_revoked_certificate_is_refused(void **state)
{
    fixture_t *fx = *state;
    run_t r;
    s_retailctl(&r, 0, (const char *[]){"keygen", "bob", NULL});
    s_run_free(&r);
    /* admitted while on the allow-list */
    s_retailctl(
        &r, 0, (const char *[]){"call", "--cert", "bob", "sys", "ping", "--timeout", "5000", NULL});
    s_run_free(&r);

    /* removed from it: the broker re-reads the list, the handshake fails,
     * and retailctl does not quietly put bob back */
    char *allowed = zsys_sprintf("%s/clients/bob.cert", fx->keys);
    assert_int_equal(unlink(allowed), 0);
    s_retailctl(
        &r, 3, (const char *[]){"call", "--cert", "bob", "sys", "ping", "--timeout", "1000", NULL});
    assert_string_equal(r.out, "");
    s_run_free(&r);
    assert_int_not_equal(access(allowed, F_OK), 0);
    assert_true(s_exists(fx, "keys/bob.cert_secret"));
    zstr_free(&allowed);
}

/* The JSON result of `loadgen --json`: the last line, after the
 * human-readable report. */
static json_t *s_loadgen_result(const run_t *r)
{
    const char *line = NULL;
    for (const char *p = r->out; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (*p == '{')
            line = p;
    if (!line)
        print_error("no JSON line in:\n%s\n", r->out);
    assert_non_null(line);
    return s_json(line);
}

static void test_loadgen_reports_requests_without_errors(void **state)
{
    (void)state;
    run_t r;
    s_run(&r, "loadgen",
          (const char *[]){"-c", "8", "-d", "1", "--warmup", "0", "--service", "sys", "--op",
                           "echo", "--json", "-q", NULL});
    s_expect_status(&r, 0);
    json_t *doc = s_loadgen_result(&r);
    json_t *requests = json_object_get(doc, "requests");
    json_t *errors = json_object_get(doc, "errors");
    assert_true(json_is_integer(requests) && json_is_integer(errors));
    assert_true(json_integer_value(requests) > 0);
    assert_int_equal(json_integer_value(errors), 0);
    assert_int_equal(json_integer_value(json_object_get(doc, "malformed")), 0);
    assert_int_equal(json_integer_value(json_object_get(doc, "unmatched")), 0);
    assert_string_equal(json_string_value(json_object_get(doc, "service")), "sys");
    assert_string_equal(json_string_value(json_object_get(doc, "op")), "echo");
    assert_true(json_is_true(json_object_get(doc, "curve")));
    /* the percentiles, from the histogram, in order */
    const char *order[] = {"p50_us", "p90_us", "p99_us", "p999_us", "max_us"};
    double previous = 0;
    for (int i = 0; i < 5; i++) {
        json_t *v = json_object_get(doc, order[i]);
        assert_true(json_is_number(v));
        assert_true(json_number_value(v) >= previous);
        previous = json_number_value(v);
    }
    assert_true(previous > 0);
    json_decref(doc);
    s_run_free(&r);
}

static void test_loadgen_respects_a_revoked_certificate(void **state)
{
    fixture_t *fx = *state;
    const char *args[] = {"-c", "2", "-d", "0.2", "--warmup", "0", "--json", "-q", NULL};
    run_t r;
    /* the first run makes loadgen.cert and allow-lists it */
    s_run(&r, "loadgen", args);
    s_expect_status(&r, 0);
    s_run_free(&r);

    /* removed from the allow-list: no replies (exit 1), and loadgen does
     * not put itself back on the list */
    char *allowed = zsys_sprintf("%s/clients/loadgen.cert", fx->keys);
    assert_int_equal(unlink(allowed), 0);
    s_run(&r, "loadgen", args);
    s_expect_status(&r, 1);
    json_t *doc = s_loadgen_result(&r);
    assert_int_equal(json_integer_value(json_object_get(doc, "replies")), 0);
    json_decref(doc);
    s_run_free(&r);
    assert_int_not_equal(access(allowed, F_OK), 0);
    zstr_free(&allowed);
}

/* ---- the shared retaild ---- */

static int s_group_teardown(void **state)
{
    fixture_destroy((fixture_t **)state);
    return 0;
}

static int s_group_setup(void **state)
{
    const char *const env[] = {"RETAIL_HEARTBEAT_MS=200", NULL};
    fixture_opts_t opts = {.name = "retail-tools", .env = env};
    fixture_t *fx = fixture_new(&opts);
    if (!fx)
        return -1;
    *state = fx;
    /* The tools read the same two variables, inherited from this process;
     * nothing else from the caller's environment may steer them. */
    setenv("RETAIL_DATA_DIR", fx->dir, 1);
    setenv("RETAIL_BROKER_ENDPOINT", fx->broker_endpoint, 1);
    unsetenv("RETAIL_CONFIG");
    unsetenv("RETAIL_TOKEN");
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keygen_creates_pair_and_hides_secret),
        cmocka_unit_test(test_keygen_refuses_reserved_and_path_names),
        cmocka_unit_test(test_keygen_refuses_service_names_unless_told),
        cmocka_unit_test(test_call_echo_round_trips_json),
        cmocka_unit_test(test_call_ping),
        cmocka_unit_test(test_call_whoami_names_the_certificate),
        cmocka_unit_test(test_call_unknown_op_is_not_found),
        cmocka_unit_test(test_call_unknown_service_is_unavailable),
        cmocka_unit_test(test_call_bad_arguments_are_usage_errors),
        cmocka_unit_test(test_services_says_up_and_down),
        cmocka_unit_test(test_unreachable_broker_times_out),
        cmocka_unit_test(test_revoked_certificate_is_refused),
        cmocka_unit_test(test_loadgen_reports_requests_without_errors),
        cmocka_unit_test(test_loadgen_respects_a_revoked_certificate),
        cmocka_unit_test(fixture_test_stop), /* last: SIGTERM, and exit 0 */
    };
    return cmocka_run_group_tests_name("tools", tests, s_group_setup, s_group_teardown);
}

/*  test_tls.c - the HTTP bridge over HTTPS (RETAIL_TLS_CERT, RETAIL_TLS_KEY).
 *
 *  The group setup makes a throw-away self-signed certificate (P-256, for
 *  DNS:localhost and IP:127.0.0.1) with the openssl command-line tool in a
 *  temporary directory, and starts build/retaild (every role) with it on
 *  private ports. Then, with libcurl as an outside client would:
 *    - GET https://127.0.0.1:PORT/v1/sys/ping, verifying the peer against
 *      that certificate (VERIFYPEER 1, VERIFYHOST 2): 200 {"pong":true};
 *      and by the name localhost, which the certificate also covers;
 *    - the same without the certificate as a CA: a certificate error; and
 *      with it but under a name the certificate does not cover: refused;
 *    - plain http:// to the TLS port fails (and HTTPS still works after);
 *    - a retaild given only one of RETAIL_TLS_CERT and RETAIL_TLS_KEY, or a
 *      certificate path it cannot read, or a file that is not a
 *      certificate, exits non-zero within a few seconds instead of serving
 *      plain HTTP or nothing;
 *    - last, the daemon stops with exit 0 on SIGTERM.
 *  A sanitizer report in a retaild's log (a SAN=1 build) fails the test.
 *  The group teardown stops retaild (SIGTERM, then SIGKILL) and removes
 *  the directory whatever the tests did; retaild also dies with the test
 *  process (tu_spawn_retaild sets PR_SET_PDEATHSIG).
 */
#include "tests/httpc.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 30000 /* generous for sanitizer builds */
#define EXIT_TIMEOUT_MS 5000   /* a refused configuration ends in this */
#define REQUEST_TIMEOUT_MS 5000

typedef struct {
    char *dir;
    char cert[1100], key[1100];
    int http_port;
    char url[128]; /* https://127.0.0.1:PORT/v1/sys/ping */
    pid_t pid;     /* the TLS retaild of the group */
    pid_t other;   /* a retaild a test expects to exit by itself */
} fixture_t;

static const char *const s_env_vars[] = {
    "RETAIL_CONFIG",       "RETAIL_DATA_DIR",        "RETAIL_BROKER_ENDPOINT", "RETAIL_HTTP_PORT",
    "RETAIL_HTTP_ADDRESS", "RETAIL_HTTP_TIMEOUT_MS", "RETAIL_TLS_CERT",        "RETAIL_TLS_KEY",
    "RETAIL_ACCESS_LOG",   "RETAIL_WORKERS",
};

static int64_t s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Runs argv (PATH lookup) with stdout and stderr into log; returns its
 * exit code, or -1 if it could not run or was killed. */
static int s_run(const char *const *argv, const char *log)
{
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
            close(fd);
        }
        execvp(argv[0], (char *const *)argv);
        _exit(127);
    }
    int status;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/* Prints the end of a log file (a failure's context). */
static void s_show(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return;
    char text[2048];
    if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > (long)sizeof text - 1)
        fseek(f, -(long)(sizeof text - 1), SEEK_END);
    else
        rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    text[n] = '\0';
    fclose(f);
    print_message("      --- %s:\n%s", log, text);
}

/* Did a sanitizer build of retaild report something in its log? */
static bool s_sanitizer_report(const char *log)
{
    FILE *f = fopen(log, "r");
    if (!f)
        return false;
    char line[1024];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, "Sanitizer") != NULL || strstr(line, "runtime error:") != NULL;
    fclose(f);
    return found;
}

/* GET url; cainfo: the CA file to verify with (NULL: libcurl's default
 * store); resolve: a "host:port:address" override, or NULL. r is the
 * caller's to hc_response_free. */
static void s_get(const char *url, const char *cainfo, const char *resolve, hc_response_t *r)
{
    hc_request_t q = {
        .url = url, .cainfo = cainfo, .resolve = resolve, .timeout_ms = REQUEST_TIMEOUT_MS};
    *r = hc_try(&q);
}

/* Waits for pid to exit by itself; returns its wait status, or -1 (then
 * it is killed) after timeout_ms. */
static int s_wait_exit(pid_t pid, int timeout_ms, int64_t *took_ms)
{
    int64_t start = s_now_ms();
    int status;
    while (s_now_ms() - start < timeout_ms) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            *took_ms = s_now_ms() - start;
            return status;
        }
        usleep(10 * 1000);
    }
    *took_ms = s_now_ms() - start;
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* Starts retaild with its own data directory and ports and the given TLS
 * variables (NULL: unset); its output goes to dir/NAME.log. */
static pid_t s_spawn(fixture_t *f, const char *name, const char *cert, const char *key,
                     int http_port, const char *extra_env)
{
    char env_dir[1200], env_endpoint[96], env_port[64], env_cert[1200], env_key[1200], log[1200];
    snprintf(env_dir, sizeof env_dir, "RETAIL_DATA_DIR=%s/%s", f->dir, name);
    snprintf(env_endpoint, sizeof env_endpoint, "RETAIL_BROKER_ENDPOINT=tcp://127.0.0.1:%d",
             tu_free_port());
    snprintf(env_port, sizeof env_port, "RETAIL_HTTP_PORT=%d", http_port);
    snprintf(env_cert, sizeof env_cert, "RETAIL_TLS_CERT=%s", cert ? cert : "");
    snprintf(env_key, sizeof env_key, "RETAIL_TLS_KEY=%s", key ? key : "");
    snprintf(log, sizeof log, "%s/%s.log", f->dir, name);
    const char *env[9] = {env_dir, env_endpoint, env_port, "RETAIL_ACCESS_LOG=0",
                          "RETAIL_WORKERS=2"};
    int n = 5;
    if (cert)
        env[n++] = env_cert;
    if (key)
        env[n++] = env_key;
    if (extra_env)
        env[n++] = extra_env;
    env[n] = NULL;

    /* the child inherits stdout and stderr: point them at the log for the
     * moment of the fork (this process has no other threads) */
    fflush(stdout);
    fflush(stderr);
    int saved_out = dup(STDOUT_FILENO), saved_err = dup(STDERR_FILENO);
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(saved_out >= 0 && saved_err >= 0 && fd >= 0);
    dup2(fd, STDOUT_FILENO);
    dup2(fd, STDERR_FILENO);
    close(fd);
    pid_t pid = tu_spawn_retaild(NULL, env);
    dup2(saved_out, STDOUT_FILENO);
    dup2(saved_err, STDERR_FILENO);
    close(saved_out);
    close(saved_err);
    return pid;
}

/* ---- group fixture ---- */

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    if (!f)
        return 0;
    if (f->pid > 0)
        tu_stop(f->pid, SIGTERM, 5000);
    if (f->other > 0)
        tu_stop(f->other, SIGKILL, 2000);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    *state = NULL;
    return 0;
}

static int s_setup(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    f->dir = tu_tempdir("retail-tls");
    snprintf(f->cert, sizeof f->cert, "%s/cert.pem", f->dir);
    snprintf(f->key, sizeof f->key, "%s/key.pem", f->dir);
    char log[1200];
    snprintf(log, sizeof log, "%s/openssl.log", f->dir);
    const char *openssl[] = {"openssl",
                             "req",
                             "-x509",
                             "-newkey",
                             "ec",
                             "-pkeyopt",
                             "ec_paramgen_curve:prime256v1",
                             "-nodes",
                             "-days",
                             "2",
                             "-subj",
                             "/CN=localhost",
                             "-addext",
                             "subjectAltName=DNS:localhost,IP:127.0.0.1",
                             "-keyout",
                             f->key,
                             "-out",
                             f->cert,
                             NULL};
    int rc = s_run(openssl, log);
    if (rc != 0 || access(f->cert, R_OK) != 0 || access(f->key, R_OK) != 0) {
        print_error("openssl req failed (exit %d%s)\n", rc,
                    rc == 127 ? ": is the openssl command installed?" : "");
        s_show(log);
        s_teardown(state);
        return -1;
    }

    f->http_port = tu_free_port();
    snprintf(f->url, sizeof f->url, "https://127.0.0.1:%d/v1/sys/ping", f->http_port);
    f->pid = s_spawn(f, "main", f->cert, f->key, f->http_port, NULL);

    /* ready: the pong comes back over verified TLS */
    int64_t start = s_now_ms();
    hc_response_t r = {0};
    while (s_now_ms() - start < READY_TIMEOUT_MS) {
        int status;
        if (waitpid(f->pid, &status, WNOHANG) == f->pid) {
            f->pid = 0;
            print_error("retaild exited during start-up\n");
            break;
        }
        hc_response_free(&r);
        s_get(f->url, f->cert, NULL, &r);
        if (r.rc == CURLE_OK && r.status == 200) {
            hc_response_free(&r);
            return 0;
        }
        usleep(50 * 1000);
    }
    print_error("retaild over TLS not ready after %d ms (last: %s, status %ld)\n", READY_TIMEOUT_MS,
                r.error, r.status);
    hc_response_free(&r);
    snprintf(log, sizeof log, "%s/main.log", f->dir);
    s_show(log);
    s_teardown(state);
    return -1;
}

/* ---- tests ---- */

static void test_ping_over_verified_tls(void **state)
{
    fixture_t *f = *state;
    hc_response_t r;
    s_get(f->url, f->cert, NULL, &r);
    if (r.rc != CURLE_OK)
        print_error("curl: %s\n", r.error);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.text, "{\"pong\":true}");
    assert_int_equal(strncmp(r.content_type, "application/json", 16), 0);
    hc_response_free(&r);

    /* by name: the certificate covers DNS:localhost as well */
    char url[128], resolve[64];
    snprintf(url, sizeof url, "https://localhost:%d/v1/sys/ping", f->http_port);
    snprintf(resolve, sizeof resolve, "localhost:%d:127.0.0.1", f->http_port);
    s_get(url, f->cert, resolve, &r);
    if (r.rc != CURLE_OK)
        print_error("curl: %s\n", r.error);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.text, "{\"pong\":true}");
    hc_response_free(&r);
}

static void test_unknown_ca_is_refused(void **state)
{
    fixture_t *f = *state;
    hc_response_t r;
    s_get(f->url, NULL, NULL, &r);
    print_message("      without the CA: %s\n", r.error);
    assert_int_equal(r.rc, CURLE_PEER_FAILED_VERIFICATION);
    assert_non_null(strstr(r.error, "certificate"));
    assert_int_equal(r.len, 0);
    hc_response_free(&r);
}

static void test_name_outside_certificate_is_refused(void **state)
{
    fixture_t *f = *state;
    char url[128], resolve[80];
    snprintf(url, sizeof url, "https://shop.example:%d/v1/sys/ping", f->http_port);
    snprintf(resolve, sizeof resolve, "shop.example:%d:127.0.0.1", f->http_port);
    hc_response_t r;
    s_get(url, f->cert, resolve, &r);
    print_message("      another name: %s\n", r.error);
    assert_int_equal(r.rc, CURLE_PEER_FAILED_VERIFICATION);
    assert_int_equal(r.len, 0);
    hc_response_free(&r);
}

static void test_plain_http_to_tls_port_fails(void **state)
{
    fixture_t *f = *state;
    char url[128];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/sys/ping", f->http_port);
    hc_response_t r;
    s_get(url, NULL, NULL, &r);
    print_message("      plain HTTP: %s (status %ld)\n", r.error, r.status);
    assert_int_not_equal(r.rc, CURLE_OK);
    assert_int_not_equal(r.rc, CURLE_OPERATION_TIMEDOUT); /* refused, not ignored */
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.text, "pong"));
    hc_response_free(&r);

    /* the daemon is unharmed */
    s_get(f->url, f->cert, NULL, &r);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    hc_response_free(&r);
}

/* Starts retaild with a bad TLS configuration; it must exit non-zero
 * within EXIT_TIMEOUT_MS. */
static void s_expect_refusal(fixture_t *f, const char *name, const char *cert, const char *key,
                             const char *extra_env)
{
    f->other = s_spawn(f, name, cert, key, tu_free_port(), extra_env);
    int64_t took = 0;
    int status = s_wait_exit(f->other, EXIT_TIMEOUT_MS, &took);
    f->other = 0;
    char log[1200];
    snprintf(log, sizeof log, "%s/%s.log", f->dir, name);
    if (status == -1)
        print_error("%s: retaild still running after %d ms\n", name, EXIT_TIMEOUT_MS);
    else
        print_message("      %s: exit %d after %lld ms\n", name,
                      WIFEXITED(status) ? WEXITSTATUS(status) : -1, (long long)took);
    bool report = s_sanitizer_report(log);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) == 0 || report)
        s_show(log);
    assert_int_not_equal(status, -1);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    assert_false(report);
}

static void test_cert_without_key_exits(void **state)
{
    fixture_t *f = *state;
    s_expect_refusal(f, "cert-only", f->cert, NULL, NULL);
    s_expect_refusal(f, "key-only", NULL, f->key, NULL);
}

static void test_unreadable_cert_exits(void **state)
{
    fixture_t *f = *state;
    char path[1200];
    snprintf(path, sizeof path, "%s/no-such-cert.pem", f->dir);
    s_expect_refusal(f, "missing-cert", path, f->key, NULL);

    /* a file that is there but is not a certificate */
    snprintf(path, sizeof path, "%s/garbage.pem", f->dir);
    FILE *out = fopen(path, "w");
    assert_non_null(out);
    fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n", out);
    fclose(out);
    /* libmicrohttpd 0.9.75 leaks GnuTLS's half-parsed certificate when
     * MHD_start_daemon fails on it (reproduced without this project), so
     * a sanitizer build is told to overlook exactly that */
    char supp[1200], lsan[1400];
    snprintf(supp, sizeof supp, "%s/lsan.supp", f->dir);
    out = fopen(supp, "w");
    assert_non_null(out);
    fputs("leak:gnutls_x509_crt_init\nleak:libtasn1.so\n", out);
    fclose(out);
    const char *given = getenv("LSAN_OPTIONS");
    snprintf(lsan, sizeof lsan, "LSAN_OPTIONS=%s%ssuppressions=%s", given ? given : "",
             given && *given ? ":" : "", supp);
    s_expect_refusal(f, "garbage-cert", path, f->key, lsan);

    /* a file without read permission (root reads it anyway: skipped) */
    if (geteuid() != 0) {
        snprintf(path, sizeof path, "%s/closed.pem", f->dir);
        char cmd[2600];
        snprintf(cmd, sizeof cmd, "cp '%s' '%s'", f->cert, path);
        assert_int_equal(system(cmd), 0);
        assert_int_equal(chmod(path, 0), 0);
        s_expect_refusal(f, "closed-cert", path, f->key, NULL);
    }
}

/* Last: the TLS daemon stops cleanly on SIGTERM (and, in a sanitizer
 * build, without a report). */
static void test_sigterm_stops_cleanly(void **state)
{
    fixture_t *f = *state;
    int status = tu_stop(f->pid, SIGTERM, 10000);
    f->pid = 0;
    char log[1200];
    snprintf(log, sizeof log, "%s/main.log", f->dir);
    bool report = s_sanitizer_report(log);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0 || report)
        s_show(log);
    assert_int_not_equal(status, -1);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_false(report);
}

int main(void)
{
    for (size_t i = 0; i < sizeof s_env_vars / sizeof s_env_vars[0]; i++)
        unsetenv(s_env_vars[i]);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ping_over_verified_tls),
        cmocka_unit_test(test_unknown_ca_is_refused),
        cmocka_unit_test(test_name_outside_certificate_is_refused),
        cmocka_unit_test(test_plain_http_to_tls_port_fails),
        cmocka_unit_test(test_cert_without_key_exits),
        cmocka_unit_test(test_unreadable_cert_exits),
        cmocka_unit_test(test_sigterm_stops_cleanly),
    };
    int failed = cmocka_run_group_tests_name("tls", tests, s_setup, s_teardown);
    curl_global_cleanup();
    return failed;
}

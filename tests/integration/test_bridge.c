/*  test_bridge.c - the HTTP bridge of a real retaild, from the outside.
 *
 *  One retaild (broker, bridge and a sys pool of two workers, test ops on,
 *  a 400 ms HTTP deadline, the access log on) runs for the whole group on
 *  private ports and a private data directory, its stdout and stderr sent
 *  to files there so that the access log and sanitizer reports can be
 *  read. The tests talk to it with libcurl (tests/httpc.h) as any HTTP
 *  client would, and judge status, headers and bodies (jansson, msgpack).
 *
 *  Covers: the route table (ping, echo round trips of every JSON kind, an
 *  empty body); the error contract of API.md section 3 for 404, 405, 413
 *  (announced length and chunked), 415, 400 malformed_body and
 *  invalid_argument (bridge-side and service-side), 504 at the bridge's
 *  deadline and service afterwards; 503 and /readyz naming the missing
 *  service on a retaild without a sys pool; msgpack negotiation both ways
 *  (a client that sends msgpack gets msgpack without asking); request ids
 *  (echoed, replaced when invalid, unique when made) and the access log
 *  (one JSON line per request, never a token); /metrics counters; a
 *  battery of malformed bodies and raw-socket garbage that must get 4xx
 *  and leave the bridge serving; the HTTP edge of protocol/SPEC.md (414
 *  and 431 in the contract's shape, too many query arguments, a malformed
 *  Content-Length answered once, Transfer-Encoding answered at once, read
 *  as raw bytes where curl cannot send the request); 200 concurrent slow
 *  requests on one bridge thread; and a clean SIGTERM exit with no
 *  sanitizer report.
 *
 *  A second part runs a broker, a sys pool and a bridge in this process,
 *  the bridge given a route table larger than the API's (more routes,
 *  services and arguments than the bridge once had room for), and tables
 *  it must refuse to start with.
 *
 *  Every retaild started here (tests/fixture.h) is stopped by the
 *  teardowns, and dies with this process anyway (PR_SET_PDEATHSIG).
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include "actors/pool.h"
#include "actors/sys/sys.h"
#include "router/bridge.h"
#include "router/broker.h"

#include <arpa/inet.h>
#include <czmq.h>
#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <msgpack.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 10000 /* the in-process bridge of section 10 */
#define HTTP_TIMEOUT_MS 400    /* RETAIL_HTTP_TIMEOUT_MS of the main retaild */
#define CURL_TIMEOUT_MS 15000
#define BODY_MAX (1024 * 1024)

/* ------------------------------------------------------------------ */
/* Daemons                                                             */

/* The group's retaild. */
static fixture_t *s_main;

/* A retaild as the tests here want it (tests/fixture.h): test ops on,
 * 200 ms heartbeats, the access log on, stdout and stderr kept in files
 * (the access log and sanitizer reports are read), env on top; roles NULL
 * for all of them. Ready when ready_path answers 200; NULL (said why)
 * when it did not get there. */
static fixture_t *s_daemon(const char *name, const char *const *roles, const char *const *env,
                           const char *ready_path)
{
    const char *all[16] = {"RETAIL_TEST_OPS=1", "RETAIL_HEARTBEAT_MS=200", "RETAIL_ACCESS_LOG=1"};
    size_t n = 3;
    for (size_t i = 0; env && env[i] && n < 15; i++)
        all[n++] = env[i];
    fixture_opts_t opts = {
        .name = name, .roles = roles, .env = all, .ready_path = ready_path, .logs = true};
    return fixture_new(&opts);
}

/* ------------------------------------------------------------------ */
/* HTTP                                                                */

/* A request body handed out by a read callback: curl sends it chunked. */
typedef struct {
    size_t left;
    char fill;
} chunked_t;

static size_t s_on_read(char *buffer, size_t size, size_t nitems, void *userp)
{
    chunked_t *c = userp;
    size_t n = size * nitems;
    if (n > c->left)
        n = c->left;
    if (n > 16384)
        n = 16384; /* many chunks */
    memset(buffer, c->fill, n);
    c->left -= n;
    return n;
}

/* One request to d (q's url is d's), within CURL_TIMEOUT_MS. */
static void s_http(const fixture_t *d, const hc_request_t *q, hc_response_t *r)
{
    hc_request_t to_d = *q;
    to_d.url = d->base;
    to_d.timeout_ms = CURL_TIMEOUT_MS;
    *r = hc_send(&to_d);
}

static void s_get(const fixture_t *d, const char *path, hc_response_t *r)
{
    hc_request_t q = {.path = path};
    s_http(d, &q, r);
}

static void s_post_json(const fixture_t *d, const char *path, const char *json, hc_response_t *r)
{
    hc_request_t q = {.method = "POST", .path = path, .body = json, .body_len = strlen(json)};
    s_http(d, &q, r);
}

static void s_expect_status(const hc_response_t *r, long status)
{
    if (r->status != status)
        print_error("expected %ld, got %ld: %.500s\n", status, r->status, r->text);
    assert_int_equal(r->status, status);
}

static bool s_is_json_type(const char *content_type)
{
    return strncasecmp(content_type, "application/json", 16) == 0 &&
           (content_type[16] == '\0' || content_type[16] == ';');
}

static json_t *s_json(const hc_response_t *r)
{
    json_error_t error;
    json_t *root = json_loadb(r->text, r->len, 0, &error);
    if (!root)
        print_error("not JSON (%s): %.500s\n", error.text, r->text);
    assert_non_null(root);
    return root;
}

/* A request id as the bridge makes or accepts them: 1..64 of [A-Za-z0-9._-]. */
static bool s_valid_request_id(const char *id)
{
    size_t n = strlen(id);
    return n >= 1 && n <= 64 &&
           strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == n;
}

/* Checks an error response: status, JSON, {"error": {code, message,
 * request_id (= X-Request-Id), details?}} and nothing else. Returns the
 * parsed body (json_decref it). */
static json_t *s_expect_error(const hc_response_t *r, long status, const char *code)
{
    s_expect_status(r, status);
    if (!s_is_json_type(r->content_type))
        print_error("Content-Type '%s' for %.300s\n", r->content_type, r->text);
    assert_true(s_is_json_type(r->content_type));
    assert_true(r->has_request_id);
    assert_true(s_valid_request_id(r->request_id));
    json_t *root = s_json(r);
    assert_true(json_is_object(root));
    assert_int_equal(json_object_size(root), 1);
    json_t *error = json_object_get(root, "error");
    assert_true(json_is_object(error));
    const char *key;
    json_t *value;
    json_object_foreach(error, key, value)
    {
        if (strcmp(key, "code") && strcmp(key, "message") && strcmp(key, "request_id") &&
            strcmp(key, "details"))
            fail_msg("unexpected key '%s' in the error object", key);
    }
    assert_true(json_is_string(json_object_get(error, "code")));
    assert_string_equal(json_string_value(json_object_get(error, "code")), code);
    assert_true(json_is_string(json_object_get(error, "message")));
    assert_true(strlen(json_string_value(json_object_get(error, "message"))) > 0);
    json_t *request_id = json_object_get(error, "request_id");
    if (!json_is_string(request_id))
        print_error("no request_id in %.300s\n", r->text);
    assert_true(json_is_string(request_id));
    assert_string_equal(json_string_value(request_id), r->request_id);
    return root;
}

static void s_expect_error_only(const hc_response_t *r, long status, const char *code)
{
    json_decref(s_expect_error(r, status, code));
}

/* The value of one Prometheus series ("name{labels}"), 0 when absent. */
static long long s_metric(const char *text, const char *series)
{
    size_t n = strlen(series);
    for (const char *line = text; line && *line;) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ')
            return atoll(line + n + 1);
        line = strchr(line, '\n');
        if (line)
            line++;
    }
    return 0;
}

static long long s_read_metric(const fixture_t *d, const char *series)
{
    hc_response_t r;
    s_get(d, "/metrics", &r);
    s_expect_status(&r, 200);
    long long v = s_metric(r.text, series);
    hc_response_free(&r);
    return v;
}

/* Pings until `want` answers in a row are 200 (the pool has settled after
 * a worker was presumed stuck); false after timeout_ms. */
static bool s_wait_pings(const fixture_t *d, int want, int timeout_ms)
{
    int64_t deadline = zclock_mono() + timeout_ms;
    int in_a_row = 0;
    while (in_a_row < want && zclock_mono() < deadline) {
        hc_response_t r;
        s_get(d, "/v1/sys/ping", &r);
        in_a_row = r.status == 200 ? in_a_row + 1 : 0;
        hc_response_free(&r);
        if (in_a_row == 0)
            zclock_sleep(50);
    }
    return in_a_row >= want;
}

/* ------------------------------------------------------------------ */
/* 1. The route table                                                  */

static void test_routes_ping_and_echo(void **state)
{
    (void)state;
    hc_response_t r;
    s_get(s_main, "/v1/sys/ping", &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.content_type, "application/json");
    assert_true(r.has_request_id && s_valid_request_id(r.request_id));
    json_t *got = s_json(&r);
    json_t *want = json_pack("{s:b}", "pong", 1);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    hc_response_free(&r);

    /* every JSON kind, escapes and non-ASCII text, the int64 extremes,
     * reals that must survive exactly, nesting within the depth limit */
    const char *doc =
        "{\"s\":\"h\\u00e9llo \\u2713 \\ud83d\\ude00\","
        "\"raw\":\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87\","
        "\"esc\":\"quote\\\" backslash\\\\ tab\\t nl\\n slash\\/ ctl\\u001f\","
        "\"max\":9223372036854775807,\"min\":-9223372036854775808,\"zero\":0,\"neg\":-1,"
        "\"reals\":[0.1,-2.5,1e300,-1e-300,3.141592653589793,2.2250738585072014e-308,1.5e-7],"
        "\"t\":true,\"f\":false,\"n\":null,"
        "\"nested\":{\"a\":{\"b\":{\"c\":[1,[2,[3,{\"d\":\"deep\",\"e\":[]}]]]}}},"
        "\"empty_obj\":{},\"empty_arr\":[],\"mixed\":[1,\"two\",3.5,true,null,{\"k\":[false]}],"
        "\"\":\"empty key\",\"k\\u00e9y\":\"non-ASCII key\"}";
    s_post_json(s_main, "/v1/sys/echo", doc, &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.content_type, "application/json");
    json_error_t error;
    want = json_loads(doc, 0, &error);
    assert_non_null(want);
    got = s_json(&r);
    if (!json_equal(got, want))
        print_error("sent %s\ngot  %s\n", doc, r.text);
    assert_true(json_equal(got, want));
    /* the int64 extremes stay integers, reals stay reals */
    assert_true(json_is_integer(json_object_get(got, "max")));
    assert_int_equal(json_integer_value(json_object_get(got, "max")), INT64_MAX);
    assert_int_equal(json_integer_value(json_object_get(got, "min")), INT64_MIN);
    assert_true(json_is_real(json_array_get(json_object_get(got, "reals"), 0)));
    assert_true(json_real_value(json_array_get(json_object_get(got, "reals"), 0)) == 0.1);
    json_decref(got);
    json_decref(want);
    hc_response_free(&r);

    /* with "; charset=utf-8" the type is still JSON */
    const char *const charset[] = {"Content-Type: application/json; charset=utf-8", NULL};
    hc_request_t q = {.method = "POST",
                      .path = "/v1/sys/echo",
                      .headers = charset,
                      .body = "{\"a\":1}",
                      .body_len = 7};
    s_http(s_main, &q, &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.text, "{\"a\":1}");
    hc_response_free(&r);

    /* no body: with Content-Length 0, and with no length at all */
    hc_request_t empty = {.method = "POST", .path = "/v1/sys/echo"};
    s_http(s_main, &empty, &r);
    s_expect_status(&r, 200);
    got = s_json(&r);
    assert_true(json_is_object(got) && json_object_size(got) == 0);
    json_decref(got);
    hc_response_free(&r);
    hc_request_t no_length = {.method = "POST", .path = "/v1/sys/echo", .no_length = true};
    s_http(s_main, &no_length, &r);
    s_expect_status(&r, 200);
    got = s_json(&r);
    assert_true(json_is_object(got) && json_object_size(got) == 0);
    json_decref(got);
    hc_response_free(&r);

    /* a body of exactly 1 MiB is accepted and comes back whole */
    char *big = malloc(BODY_MAX + 1);
    assert_non_null(big);
    memcpy(big, "{\"a\":\"", 6);
    memset(big + 6, 'x', BODY_MAX - 8);
    memcpy(big + BODY_MAX - 2, "\"}", 2);
    big[BODY_MAX] = '\0';
    s_post_json(s_main, "/v1/sys/echo", big, &r);
    s_expect_status(&r, 200);
    assert_int_equal(r.len, BODY_MAX);
    assert_memory_equal(r.text, big, BODY_MAX);
    hc_response_free(&r);
    free(big);
}

/* ------------------------------------------------------------------ */
/* 2. Errors                                                           */

static void test_errors_have_status_code_and_request_id(void **state)
{
    (void)state;
    hc_response_t r;
    s_get(s_main, "/v1/nowhere", &r);
    s_expect_error_only(&r, 404, "not_found");
    hc_response_free(&r);
    s_get(s_main, "/v1/sys/ping/extra", &r);
    s_expect_error_only(&r, 404, "not_found");
    hc_response_free(&r);

    hc_request_t del = {.method = "DELETE", .path = "/v1/sys/ping"};
    s_http(s_main, &del, &r);
    s_expect_error_only(&r, 405, "method_not_allowed");
    hc_response_free(&r);
    hc_request_t get_echo = {.path = "/v1/sys/echo"};
    s_http(s_main, &get_echo, &r);
    s_expect_error_only(&r, 405, "method_not_allowed");
    hc_response_free(&r);

    /* over 1 MiB, announced honestly in Content-Length */
    size_t over = BODY_MAX + 1;
    char *big = malloc(over);
    assert_non_null(big);
    memset(big, ' ', over);
    big[0] = '{';
    big[over - 1] = '}';
    hc_request_t q = {.method = "POST", .path = "/v1/sys/echo", .body = big, .body_len = over};
    s_http(s_main, &q, &r);
    s_expect_error_only(&r, 413, "payload_too_large");
    hc_response_free(&r);
    free(big);

    /* under 1 MiB of JSON, but over the envelope as msgpack (each 1.5
     * takes 4 bytes here, 9 there): refused at once, not a 504 later */
    size_t reals = (BODY_MAX - 16) / 4;
    char *json = malloc(reals * 4 + 16);
    assert_non_null(json);
    size_t len = (size_t)sprintf(json, "{\"a\":[");
    for (size_t i = 0; i < reals; i++)
        len += (size_t)sprintf(json + len, i ? ",1.5" : "1.5");
    len += (size_t)sprintf(json + len, "]}");
    assert_true(len <= BODY_MAX);
    hc_request_t grows = {.method = "POST", .path = "/v1/sys/echo", .body = json, .body_len = len};
    s_http(s_main, &grows, &r);
    s_expect_error_only(&r, 413, "payload_too_large");
    hc_response_free(&r);
    free(json);

    /* over 1 MiB in chunks: nothing announced, found while reading */
    chunked_t chunks = {.left = BODY_MAX + 512 * 1024, .fill = ' '};
    hc_request_t chunked = {
        .method = "POST", .path = "/v1/sys/echo", .read = s_on_read, .read_data = &chunks};
    s_http(s_main, &chunked, &r);
    s_expect_error_only(&r, 413, "payload_too_large");
    assert_int_equal(chunks.left, 0); /* it was read to the end, not cut off */
    hc_response_free(&r);
    /* and a small chunked body is fine */
    chunked_t small = {.left = 64, .fill = ' '};
    hc_request_t small_chunked = {
        .method = "POST", .path = "/v1/sys/echo", .read = s_on_read, .read_data = &small};
    s_http(s_main, &small_chunked, &r);
    s_expect_error_only(&r, 400, "malformed_body"); /* 64 spaces are no JSON value */
    hc_response_free(&r);

    const char *const text_plain[] = {"Content-Type: text/plain", NULL};
    hc_request_t plain = {.method = "POST",
                          .path = "/v1/sys/echo",
                          .headers = text_plain,
                          .body = "{}",
                          .body_len = 2};
    s_http(s_main, &plain, &r);
    s_expect_error_only(&r, 415, "unsupported_media_type");
    hc_response_free(&r);
    const char *const form[] = {"Content-Type: application/x-www-form-urlencoded", NULL};
    hc_request_t formq = {
        .method = "POST", .path = "/v1/sys/echo", .headers = form, .body = "a=1", .body_len = 3};
    s_http(s_main, &formq, &r);
    s_expect_error_only(&r, 415, "unsupported_media_type");
    hc_response_free(&r);

    s_post_json(s_main, "/v1/sys/echo", "{\"a\":", &r);
    s_expect_error_only(&r, 400, "malformed_body");
    hc_response_free(&r);
    s_post_json(s_main, "/v1/sys/echo", "[1,2,3]", &r);
    s_expect_error_only(&r, 400, "malformed_body");
    hc_response_free(&r);
    s_post_json(s_main, "/v1/sys/echo", "\"just a string\"", &r);
    s_expect_error_only(&r, 400, "malformed_body");
    hc_response_free(&r);
    s_post_json(s_main, "/v1/sys/echo", "{\"a\":1,\"a\":2}", &r); /* duplicate key */
    s_expect_error_only(&r, 400, "malformed_body");
    hc_response_free(&r);

    /* a query parameter of the wrong type, found by the bridge */
    s_get(s_main, "/v1/sys/sleep?ms=abc", &r);
    json_t *body = s_expect_error(&r, 400, "invalid_argument");
    json_t *fields =
        json_object_get(json_object_get(json_object_get(body, "error"), "details"), "fields");
    assert_true(json_is_array(fields));
    assert_true(json_array_size(fields) >= 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(fields, 0), "field")),
                        "ms");
    json_decref(body);
    hc_response_free(&r);

    /* in range of the type but not of the op: found by the service */
    s_get(s_main, "/v1/sys/sleep?ms=99999", &r);
    body = s_expect_error(&r, 400, "invalid_argument");
    fields = json_object_get(json_object_get(json_object_get(body, "error"), "details"), "fields");
    if (json_is_array(fields) && json_array_size(fields) > 0)
        assert_string_equal(json_string_value(json_object_get(json_array_get(fields, 0), "field")),
                            "ms");
    json_decref(body);
    hc_response_free(&r);

    /* a missing required argument */
    s_get(s_main, "/v1/sys/sleep", &r);
    s_expect_error_only(&r, 400, "invalid_argument");
    hc_response_free(&r);

    /* the bridge's deadline: 504 after ~400 ms, not after the 1 s sleep */
    s_get(s_main, "/v1/sys/sleep?ms=1000", &r);
    s_expect_error_only(&r, 504, "timeout");
    print_message("      504 after %lld ms (deadline %d ms)\n", (long long)r.elapsed_ms,
                  HTTP_TIMEOUT_MS);
    assert_true(r.elapsed_ms >= HTTP_TIMEOUT_MS - 20);
    assert_true(r.elapsed_ms < 950);
    hc_response_free(&r);

    /* and it keeps serving: the other worker answers at once */
    s_get(s_main, "/v1/sys/ping", &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);
    s_get(s_main, "/healthz", &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);
    /* The sleeping worker cannot beat, but it holds a request within
     * the broker's deadline, so it is kept; a ping queued behind its sleep
     * waits (or times out at the bridge). Wait until both workers answer
     * again before the next tests. */
    assert_true(s_wait_pings(s_main, 5, 5000));
}

/* RFC 9110 section 15.5.6: a 405 response MUST carry an
 * Allow header listing the methods the resource supports. The bridge sends
 * none (s_queue never adds one; routes_match knows the methods). */
static void test_405_has_allow_header(void **state)
{
    (void)state;
    hc_response_t r;
    hc_request_t del = {.method = "DELETE", .path = "/v1/sys/ping"};
    s_http(s_main, &del, &r);
    s_expect_error_only(&r, 405, "method_not_allowed");
    bool allow_get = strstr(r.allow, "GET") != NULL;
    if (!allow_get)
        print_error("405 without 'Allow: GET' (Allow: '%s')\n", r.allow);
    hc_response_free(&r);
    assert_true(allow_get);
}

/* ------------------------------------------------------------------ */
/* 3. 503 when a service has no worker                                 */

static int s_own_daemon_teardown(void **state)
{
    fixture_destroy((fixture_t **)state);
    return 0;
}

static int s_no_pool_setup(void **state)
{
    /* /readyz is 503 without a sys pool: /healthz says it serves */
    const char *const roles[] = {"broker", "bridge", NULL};
    const char *const env[] = {"RETAIL_WORKERS=2", "RETAIL_HTTP_TIMEOUT_MS=400", NULL};
    *state = s_daemon("bridge-nopool", roles, env, "/healthz");
    return *state ? 0 : -1;
}

static void test_no_worker_is_503_and_not_ready(void **state)
{
    fixture_t *d = *state;
    hc_response_t r;
    s_get(d, "/v1/sys/ping", &r);
    s_expect_error_only(&r, 503, "unavailable");
    assert_true(r.elapsed_ms < HTTP_TIMEOUT_MS); /* at once, not at the deadline */
    hc_response_free(&r);

    s_get(d, "/readyz", &r);
    s_expect_status(&r, 503);
    assert_true(s_is_json_type(r.content_type));
    json_t *body = s_json(&r);
    json_t *missing = json_object_get(body, "missing");
    assert_true(json_is_array(missing));
    bool sys = false;
    size_t i;
    json_t *item;
    json_array_foreach(missing, i, item) sys =
        sys || (json_is_string(item) && strcmp(json_string_value(item), "sys") == 0);
    if (!sys)
        print_error("readyz: %s\n", r.text);
    assert_true(sys);
    json_decref(body);
    hc_response_free(&r);

    s_get(d, "/healthz", &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);

    assert_int_equal(fixture_stop(d), 0); /* exit 0, no sanitizer report */
}

/* ------------------------------------------------------------------ */
/* 4. msgpack negotiation                                              */

static void s_unpack(const hc_response_t *r, msgpack_zone *zone, msgpack_object *obj)
{
    size_t off = 0;
    assert_int_equal(msgpack_unpack(r->text, r->len, &off, zone, obj), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(off, r->len);
}

static const msgpack_object *s_mp_get(const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

static bool s_mp_str_is(const msgpack_object *o, const char *s)
{
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static void s_pack_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* s_expect_error for a msgpack client: status, Content-Type
 * application/msgpack, and a body of exactly {"error": {code, message,
 * request_id (= X-Request-Id), details?}}. */
static void s_expect_mp_error(const hc_response_t *r, long status, const char *code)
{
    s_expect_status(r, status);
    if (strcmp(r->content_type, "application/msgpack") != 0)
        print_error("Content-Type '%s' for %.300s\n", r->content_type, r->text);
    assert_string_equal(r->content_type, "application/msgpack");
    assert_true(r->has_request_id);
    assert_true(s_valid_request_id(r->request_id));
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 1024));
    msgpack_object obj;
    s_unpack(r, &zone, &obj);
    assert_int_equal(obj.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(obj.via.map.size, 1);
    const msgpack_object *error = s_mp_get(&obj, "error");
    assert_non_null(error);
    assert_int_equal(error->type, MSGPACK_OBJECT_MAP);
    for (uint32_t i = 0; i < error->via.map.size; i++) {
        const msgpack_object *k = &error->via.map.ptr[i].key;
        assert_true(s_mp_str_is(k, "code") || s_mp_str_is(k, "message") ||
                    s_mp_str_is(k, "request_id") || s_mp_str_is(k, "details"));
    }
    assert_true(s_mp_str_is(s_mp_get(error, "code"), code));
    const msgpack_object *message = s_mp_get(error, "message");
    assert_true(message && message->type == MSGPACK_OBJECT_STR && message->via.str.size > 0);
    assert_true(s_mp_str_is(s_mp_get(error, "request_id"), r->request_id));
    msgpack_zone_destroy(&zone);
}

static void test_msgpack_negotiation(void **state)
{
    (void)state;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    msgpack_object obj;
    hc_response_t r;

    const char *const accept[] = {"Accept: application/msgpack", NULL};
    hc_request_t q = {.path = "/v1/sys/ping", .headers = accept};
    s_http(s_main, &q, &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.content_type, "application/msgpack");
    s_unpack(&r, &zone, &obj);
    assert_int_equal(obj.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(obj.via.map.size, 1);
    const msgpack_object *pong = s_mp_get(&obj, "pong");
    assert_non_null(pong);
    assert_int_equal(pong->type, MSGPACK_OBJECT_BOOLEAN);
    assert_true(pong->via.boolean);
    hc_response_free(&r);

    /* errors are msgpack too for such a client, same shape */
    hc_request_t missing = {.path = "/v1/nowhere", .headers = accept};
    s_http(s_main, &missing, &r);
    s_expect_status(&r, 404);
    assert_string_equal(r.content_type, "application/msgpack");
    s_unpack(&r, &zone, &obj);
    const msgpack_object *error = s_mp_get(&obj, "error");
    assert_non_null(error);
    assert_true(s_mp_str_is(s_mp_get(error, "code"), "not_found"));
    assert_true(s_mp_str_is(s_mp_get(error, "request_id"), r.request_id));
    hc_response_free(&r);

    /* a msgpack body from a client that asks for JSON: a JSON answer */
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    s_pack_str(&pk, "a");
    msgpack_pack_int(&pk, 1);
    s_pack_str(&pk, "b");
    s_pack_str(&pk, "x\xc3\xa9");
    s_pack_str(&pk, "c");
    msgpack_pack_array(&pk, 4);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_double(&pk, 2.5);
    msgpack_pack_true(&pk);
    msgpack_pack_nil(&pk);
    s_pack_str(&pk, "d");
    msgpack_pack_map(&pk, 1);
    s_pack_str(&pk, "e");
    msgpack_pack_int64(&pk, INT64_MIN);
    s_pack_str(&pk, "f");
    msgpack_pack_uint64(&pk, INT64_MAX);
    const char *const mp_type[] = {"Content-Type: application/msgpack", NULL};
    const char *const mp_type_json[] = {"Content-Type: application/msgpack",
                                        "Accept: application/json", NULL};
    hc_request_t echo = {.method = "POST",
                         .path = "/v1/sys/echo",
                         .headers = mp_type_json,
                         .body = buf.data,
                         .body_len = buf.size};
    s_http(s_main, &echo, &r);
    s_expect_status(&r, 200);
    assert_true(s_is_json_type(r.content_type));
    json_error_t jerr;
    json_t *want = json_loads("{\"a\":1,\"b\":\"x\\u00e9\",\"c\":[1,2.5,true,null],"
                              "\"d\":{\"e\":-9223372036854775808},\"f\":9223372036854775807}",
                              0, &jerr);
    assert_non_null(want);
    json_t *got = s_json(&r);
    if (!json_equal(got, want))
        print_error("got %s\n", r.text);
    assert_true(json_equal(got, want));
    json_decref(got);
    json_decref(want);
    hc_response_free(&r);

    /* msgpack both ways: the same value comes back */
    const char *const both[] = {"Content-Type: application/msgpack", "Accept: application/msgpack",
                                NULL};
    echo.headers = both;
    s_http(s_main, &echo, &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.content_type, "application/msgpack");
    s_unpack(&r, &zone, &obj);
    msgpack_object sent;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(buf.data, buf.size, &off, &zone, &sent),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(obj.via.map.size, sent.via.map.size);
    for (uint32_t i = 0; i < sent.via.map.size; i++) {
        char key[8];
        snprintf(key, sizeof key, "%.*s", (int)sent.via.map.ptr[i].key.via.str.size,
                 sent.via.map.ptr[i].key.via.str.ptr);
        const msgpack_object *v = s_mp_get(&obj, key);
        assert_non_null(v);
        assert_true(msgpack_object_equal(*v, sent.via.map.ptr[i].val));
    }
    hc_response_free(&r);

    /* not a map: 400, in msgpack for a client that sends msgpack */
    msgpack_sbuffer_clear(&buf);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
    echo.headers = mp_type;
    echo.body = buf.data;
    echo.body_len = buf.size;
    s_http(s_main, &echo, &r);
    s_expect_mp_error(&r, 400, "malformed_body");
    hc_response_free(&r);

    /* invalid msgpack: the never-used byte, a map cut short, trailing
     * bytes, a map with a non-string key, an ext value */
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\xc1", 1},
        {"\x82\xa1"
         "a",
         3},
        {"\x80\x80", 2},
        {"\x81\x01\x02", 3},
        {"\x81\xa1"
         "a\xd4\x01\x02",
         6},
        {"\x81\xa1"
         "a\xa2\xff\xfe",
         6},                         /* a str that is not UTF-8 */
        {"\xdf\xff\xff\xff\xff", 5}, /* a map claiming 4G entries */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        echo.body = bad[i].bytes;
        echo.body_len = bad[i].len;
        s_http(s_main, &echo, &r);
        if (r.status != 400)
            print_error("bad msgpack #%zu\n", i);
        s_expect_mp_error(&r, 400, "malformed_body");
        hc_response_free(&r);
    }
    msgpack_sbuffer_destroy(&buf);
    msgpack_zone_destroy(&zone);
}

/* msgpack whose values have no JSON form (bin, uint64 above INT64_MAX,
 * NaN) is the client's mistake: 400 with the section 3 shape (in msgpack,
 * the client's format), never a 500 (the API is JSON-shaped for every
 * client). */
static void test_msgpack_without_json_form_is_400(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"\x81\xa1"
         "a\xc4\x03\x01\x02\x03",
         8}, /* bin */
        {"\x81\xa1"
         "a\xcf\xff\xff\xff\xff\xff\xff\xff\xff",
         12}, /* uint64 max */
        {"\x81\xa1"
         "a\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00",
         12}, /* NaN */
    };
    const char *const mp_type[] = {"Content-Type: application/msgpack", NULL};
    int broken = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hc_request_t q = {.method = "POST",
                          .path = "/v1/sys/echo",
                          .headers = mp_type,
                          .body = cases[i].bytes,
                          .body_len = cases[i].len};
        hc_response_t r;
        s_http(s_main, &q, &r);
        msgpack_zone zone;
        assert_true(msgpack_zone_init(&zone, 1024));
        msgpack_object obj;
        size_t off = 0;
        bool unpacked =
            msgpack_unpack(r.text, r.len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS &&
            off == r.len;
        const msgpack_object *error = unpacked ? s_mp_get(&obj, "error") : NULL;
        bool ok = r.status >= 400 && r.status < 500 && error &&
                  s_mp_str_is(s_mp_get(error, "request_id"), r.request_id);
        if (!ok) {
            print_error("msgpack case %zu: %ld %s\n", i, r.status, r.text);
            broken++;
        }
        msgpack_zone_destroy(&zone);
        hc_response_free(&r);
    }
    assert_int_equal(broken, 0);
}

/* ------------------------------------------------------------------ */
/* 5. Request ids and the access log                                   */

/* The access log line of request_id, parsed; NULL if there is none. Checks
 * on the way that every JSON line of the log is an object with the fields
 * and that request_id appears on at most one line. */
static json_t *s_access_line(const fixture_t *d, const char *request_id)
{
    json_t *found = NULL;
    int64_t deadline = zclock_mono() + 2000;
    while (!found && zclock_mono() < deadline) {
        char *log = tu_slurp(d->out_path, NULL);
        assert_non_null(log);
        int matches = 0;
        for (char *line = strtok(log, "\n"); line; line = strtok(NULL, "\n")) {
            if (line[0] != '{')
                continue; /* zsys log lines share stdout */
            json_error_t error;
            json_t *entry = json_loads(line, 0, &error);
            if (!entry)
                print_error("access log line is not JSON: %s\n", line);
            assert_non_null(entry);
            assert_true(json_is_string(json_object_get(entry, "request_id")));
            assert_true(json_is_string(json_object_get(entry, "method")));
            assert_true(json_is_string(json_object_get(entry, "route")));
            assert_true(json_is_integer(json_object_get(entry, "status")));
            assert_true(json_is_integer(json_object_get(entry, "duration_us")));
            assert_true(json_is_integer(json_object_get(entry, "bytes")));
            if (strcmp(json_string_value(json_object_get(entry, "request_id")), request_id) == 0) {
                matches++;
                json_decref(found);
                found = entry;
            } else
                json_decref(entry);
        }
        free(log);
        assert_true(matches <= 1);
        if (!found)
            zclock_sleep(20);
    }
    return found;
}

static void test_request_ids_and_access_log(void **state)
{
    (void)state;
    hc_response_t r;
    const char *const given[] = {"X-Request-Id: abc-123_X.y", NULL};
    hc_request_t q = {.path = "/v1/sys/ping", .headers = given};
    s_http(s_main, &q, &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.request_id, "abc-123_X.y");
    size_t ping_bytes = r.len;
    hc_response_free(&r);

    /* the client's id in an error body too */
    const char *const given_404[] = {"X-Request-Id: log-404.check", NULL};
    hc_request_t q404 = {.path = "/v1/nowhere", .headers = given_404};
    s_http(s_main, &q404, &r);
    s_expect_error_only(&r, 404, "not_found");
    assert_string_equal(r.request_id, "log-404.check");
    hc_response_free(&r);

    /* 64 characters is the longest accepted */
    char id64[80] = "X-Request-Id: ";
    memset(id64 + 14, 'b', 64);
    id64[78] = '\0';
    const char *const long_ok[] = {id64, NULL};
    hc_request_t q64 = {.path = "/v1/sys/ping", .headers = long_ok};
    s_http(s_main, &q64, &r);
    assert_string_equal(r.request_id, id64 + 14);
    hc_response_free(&r);

    /* invalid ones are replaced by a made one */
    char id100[128] = "X-Request-Id: ";
    memset(id100 + 14, 'a', 100);
    id100[114] = '\0';
    char id65[96] = "X-Request-Id: ";
    memset(id65 + 14, 'c', 65);
    id65[79] = '\0';
    const char *invalid[] = {
        "X-Request-Id: abc def",    id100, id65, "X-Request-Id: a/b", "X-Request-Id: \"quoted\"",
        "X-Request-Id: caf\xc3\xa9"};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        const char *const headers[] = {invalid[i], NULL};
        hc_request_t qi = {.path = "/v1/sys/ping", .headers = headers};
        s_http(s_main, &qi, &r);
        s_expect_status(&r, 200);
        assert_true(r.has_request_id);
        assert_true(s_valid_request_id(r.request_id));
        assert_string_not_equal(r.request_id, invalid[i] + 14);
        hc_response_free(&r);
    }

    /* two without one: two different made ones */
    char first[256];
    s_get(s_main, "/v1/sys/ping", &r);
    assert_true(s_valid_request_id(r.request_id));
    snprintf(first, sizeof first, "%s", r.request_id);
    hc_response_free(&r);
    s_get(s_main, "/v1/sys/ping", &r);
    assert_true(s_valid_request_id(r.request_id));
    assert_string_not_equal(first, r.request_id);
    hc_response_free(&r);

    /* a token must never reach the log */
    const char *const auth[] = {"Authorization: Bearer secret-token-xyz",
                                "X-Request-Id: auth-log-check", NULL};
    hc_request_t qa = {.path = "/v1/sys/ping", .headers = auth};
    s_http(s_main, &qa, &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);
    const char *const auth_404[] = {"Authorization: Bearer secret-token-xyz", NULL};
    hc_request_t qa404 = {.path = "/v1/secret-token-xyz-not-a-route", .headers = auth_404};
    s_http(s_main, &qa404, &r);
    s_expect_status(&r, 404);
    hc_response_free(&r);

    json_t *line = s_access_line(s_main, "abc-123_X.y");
    assert_non_null(line);
    assert_string_equal(json_string_value(json_object_get(line, "method")), "GET");
    assert_string_equal(json_string_value(json_object_get(line, "route")), "/v1/sys/ping");
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 200);
    assert_true(json_integer_value(json_object_get(line, "duration_us")) >= 0);
    assert_int_equal(json_integer_value(json_object_get(line, "bytes")), ping_bytes);
    json_decref(line);

    line = s_access_line(s_main, "log-404.check");
    assert_non_null(line);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 404);
    json_decref(line);

    line = s_access_line(s_main, "auth-log-check");
    assert_non_null(line);
    assert_int_equal(json_integer_value(json_object_get(line, "status")), 200);
    json_decref(line);

    char *out = tu_slurp(s_main->out_path, NULL);
    char *err = tu_slurp(s_main->err_path, NULL);
    assert_true(out && err);
    if (strstr(out, "secret-token-xyz") || strstr(err, "secret-token-xyz"))
        print_error("the token is in the log\n");
    assert_null(strstr(out, "secret-token-xyz"));
    assert_null(strstr(err, "secret-token-xyz"));
    free(out);
    free(err);
}

/* ------------------------------------------------------------------ */
/* 6. /metrics                                                         */

#define PING_200 "retail_http_requests_total{route=\"GET /v1/sys/ping\",status=\"200\"}"
#define NOT_FOUND "retail_http_errors_total{code=\"not_found\"}"

static void test_metrics_count_requests_and_errors(void **state)
{
    (void)state;
    long long pings = s_read_metric(s_main, PING_200);
    long long not_found = s_read_metric(s_main, NOT_FOUND);
    for (int i = 0; i < 5; i++) {
        hc_response_t r;
        s_get(s_main, "/v1/sys/ping", &r);
        s_expect_status(&r, 200);
        hc_response_free(&r);
    }
    hc_response_t r;
    s_get(s_main, "/v1/no/such/route", &r);
    s_expect_status(&r, 404);
    hc_response_free(&r);
    long long pings_after = s_read_metric(s_main, PING_200);
    long long not_found_after = s_read_metric(s_main, NOT_FOUND);
    print_message("      pings %lld -> %lld, not_found %lld -> %lld\n", pings, pings_after,
                  not_found, not_found_after);
    assert_true(pings_after >= pings + 5);
    assert_true(not_found_after >= not_found + 1);

    s_get(s_main, "/metrics", &r);
    assert_non_null(strstr(r.text, "# TYPE retail_http_requests_total counter"));
    assert_non_null(strstr(r.text, "retail_http_requests_in_flight "));
    /* the pools of the same process: restarts per service, none so far */
    assert_non_null(strstr(r.text, "# TYPE retail_worker_restarts_total counter"));
    assert_non_null(strstr(r.text, "retail_worker_restarts_total{service=\"sys\"} 0\n"));
    hc_response_free(&r);
}

/* /metrics is Prometheus text: Prometheus 3 refuses a scrape whose
 * Content-Type is not a scrape format; the text format is "text/plain;
 * version=0.0.4". */
static void test_metrics_content_type_is_prometheus_text(void **state)
{
    (void)state;
    hc_response_t r;
    s_get(s_main, "/metrics", &r);
    s_expect_status(&r, 200);
    bool text = strncmp(r.content_type, "text/plain", 10) == 0;
    if (!text)
        print_error("/metrics Content-Type: '%s'\n", r.content_type);
    hc_response_free(&r);
    assert_true(text);
}

/* ------------------------------------------------------------------ */
/* 7. Malformed input                                                  */

static uint64_t s_rng = 0x9E3779B97F4A7C15ull;

static uint64_t s_next(void)
{
    /* xorshift64* */
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 0x2545F4914F6CDD1Dull;
}

/* Sends body to echo and wants a 4xx (with the error shape); counts it. */
static void s_hostile(const void *body, size_t len, const char *content_type, int *sent)
{
    char header[96];
    snprintf(header, sizeof header, "Content-Type: %s", content_type);
    /* the bodies are judged here, not the format of the answer */
    const char *const headers[] = {header, "Accept: application/json", NULL};
    hc_request_t q = {.method = "POST",
                      .path = "/v1/sys/echo",
                      .headers = headers,
                      .body = body,
                      .body_len = len};
    hc_response_t r;
    s_http(s_main, &q, &r); /* a dropped connection fails in there */
    if (r.status < 400 || r.status >= 500) {
        print_error("body #%d (%zu bytes, %s) got %ld: %.300s\n", *sent, len, content_type,
                    r.status, r.text);
        fail();
    }
    json_decref(
        s_expect_error(&r, r.status, r.status == 413 ? "payload_too_large" : "malformed_body"));
    hc_response_free(&r);
    (*sent)++;
}

static void s_raw(const fixture_t *d, const void *data, size_t len, char *reply, size_t reply_size)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->http_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = send(fd, p, left, MSG_NOSIGNAL);
        if (n <= 0)
            break; /* the server may hang up first: fine */
        p += n;
        left -= (size_t)n;
    }
    size_t got = 0;
    int64_t deadline = zclock_mono() + 1500;
    while (got + 1 < reply_size) {
        int64_t wait = deadline - zclock_mono();
        if (wait <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)wait) <= 0)
            break;
        ssize_t n = recv(fd, reply + got, reply_size - 1 - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    reply[got] = '\0';
    close(fd);
}

static void test_malformed_input_battery(void **state)
{
    (void)state;
    int sent = 0;
    const char *json = "application/json";

    /* random bytes */
    char buf[2048];
    for (int i = 0; i < 180; i++) {
        size_t len = 8 + s_next() % 1500;
        for (size_t k = 0; k < len; k++)
            buf[k] = (char)(s_next() & 0xff);
        if (i % 3 == 0)
            buf[0] = '{'; /* get past the first byte more often */
        s_hostile(buf, len, json, &sent);
    }
    /* random bytes as msgpack: all but hopeless as a single valid map */
    for (int i = 0; i < 30; i++) {
        size_t len = 8 + s_next() % 200;
        for (size_t k = 0; k < len; k++)
            buf[k] = (char)(s_next() & 0xff);
        if (i % 2 == 0)
            buf[0] = (char)(0x80 | (s_next() & 0x0f)); /* a fixmap header */
        s_hostile(buf, len, "application/msgpack", &sent);
    }

    /* every truncated prefix of a valid document */
    const char *doc = "{\"a\":[1,2.5,{\"b\":\"h\xc3\xa9llo\"}],\"c\":true,\"d\":null,"
                      "\"e\":-1.5e3,\"f\":\"\\u00e9\\n\"}";
    for (size_t len = 1; len < strlen(doc); len++)
        s_hostile(doc, len, json, &sent);

    /* deep nesting */
    size_t deep = 10000;
    char *nest = malloc(deep * 5 + 16);
    assert_non_null(nest);
    memset(nest, '[', deep);
    s_hostile(nest, deep, json, &sent);
    memset(nest + deep, ']', deep);
    s_hostile(nest, 2 * deep, json, &sent); /* balanced, still too deep */
    size_t n = 0;
    for (size_t i = 0; i < deep; i++) {
        memcpy(nest + n, "{\"a\":", 5);
        n += 5;
    }
    s_hostile(nest, n, json, &sent);
    /* the depth limit, just past it: 21 levels */
    n = 0;
    nest[n++] = '{';
    memcpy(nest + n, "\"a\":", 4);
    n += 4;
    for (int i = 0; i < 20; i++)
        nest[n++] = '[';
    for (int i = 0; i < 20; i++)
        nest[n++] = ']';
    nest[n++] = '}';
    s_hostile(nest, n, json, &sent);
    /* msgpack nested 10000 deep inside a map */
    n = 0;
    nest[n++] = '\x81';
    nest[n++] = '\xa1';
    nest[n++] = 'a';
    for (size_t i = 0; i < deep; i++)
        nest[n++] = '\x91';
    nest[n++] = '\xc0';
    s_hostile(nest, n, "application/msgpack", &sent);
    free(nest);

    /* numbers, strings and other ways to be wrong */
    static const char *const bad[] = {
        "{\"a\":1e999999}",
        "{\"a\":-1e999999}",
        "{\"a\":123456789012345678901234567890}",
        "{\"a\":-123456789012345678901234567890}",
        "{\"a\":9223372036854775808}",
        "123456789012345678901234567890",
        "{\"a\":NaN}",
        "{\"a\":Infinity}",
        "{\"a\":01}",
        "{\"a\":\"\xff\xfe\"}",
        "{\"a\":\"\xc0\xaf\"}",
        "{\"a\":\"\xed\xa0\x80\"}",     /* a surrogate, UTF-8 encoded */
        "{\"a\":\"\xf4\x90\x80\x80\"}", /* above U+10FFFF */
        "{\"\xff\":1}",
        "{\"a\":\"\\ud800\"}",
        "{\"a\":\"\\udc00\"}",
        "{\"a\":\"\\ud800\\u0041\"}",
        "{\"a\":\"\\u0000\"}",
        "{\"a\\u0000b\":1}",
        "{\"a\":\"x\\u0000\"}",
        "{\"a\":\"\\x41\"}",
        "{\"a\":'single'}",
        "{a:1}",
        "{\"a\":1,}",
        "{\"a\":1} {\"b\":2}",
        "{\"a\":1}garbage",
        "{\"a\":tru}",
        "{\"a\":\"unterminated}",
        "\xef\xbb\xbf{}",
        "null",
        "true",
        "{\"a\":1",
        "}",
        "{\"a\":\"tab\there\"}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        s_hostile(bad[i], strlen(bad[i]), json, &sent);
    /* bytes after a NUL */
    s_hostile("{\"a\":1}\0{}", 10, json, &sent);
    s_hostile("\0\0\0\0", 4, json, &sent);
    print_message("      %d hostile bodies, each answered 4xx\n", sent);
    assert_true(sent >= 300);

    hc_response_t r;
    s_get(s_main, "/v1/sys/ping", &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);

    /* raw-socket garbage: whatever comes back, then the bridge still serves */
    char reply[4096];
    s_raw(s_main, "GARBAGE\r\n\r\n", 11, reply, sizeof reply);
    size_t line_len = 10 * 1024;
    char *line = malloc(line_len + 64);
    assert_non_null(line);
    memcpy(line, "GET /", 5);
    memset(line + 5, 'a', line_len);
    strcpy(line + 5 + line_len, " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s_raw(s_main, line, strlen(line), reply, sizeof reply);
    if (strncmp(reply, "HTTP/1.1 ", 9) == 0)
        assert_true(reply[9] == '4'); /* a 404 (or 414): never a 5xx */
    /* far past libmicrohttpd's buffer */
    size_t huge_len = 100 * 1024;
    char *huge = malloc(huge_len + 64);
    assert_non_null(huge);
    memcpy(huge, "GET /", 5);
    memset(huge + 5, 'a', huge_len);
    strcpy(huge + 5 + huge_len, " HTTP/1.1\r\nHost: x\r\n\r\n");
    s_raw(s_main, huge, strlen(huge), reply, sizeof reply);
    if (strncmp(reply, "HTTP/1.1 ", 9) == 0)
        assert_true(reply[9] == '4');
    free(huge);
    free(line);
    s_raw(s_main, "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11, reply, sizeof reply);
    s_raw(s_main, "POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n", 58, reply,
          sizeof reply);
    s_raw(s_main,
          "POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
          "Content-Type: application/json\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
          strlen("POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                 "Content-Type: application/json\r\nConnection: close\r\n\r\nzz\r\n{}\r\n0\r\n"
                 "\r\n"),
          reply, sizeof reply);
    if (strncmp(reply, "HTTP/1.1 ", 9) == 0)
        assert_true(reply[9] == '4');

    s_get(s_main, "/v1/sys/ping", &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.text, "{\"pong\":true}");
    hc_response_free(&r);
}

/* ------------------------------------------------------------------ */
/* 8. The HTTP edge: every answer in the contract's shape, at once     */

/* What a raw exchange brought back. */
typedef struct {
    char *bytes; /* the whole reply, NUL-terminated; owned */
    size_t len;
    bool closed;        /* the server closed the connection */
    int64_t elapsed_ms; /* from the last byte sent to the close or timeout */
} exchange_t;

/* Sends data on a new connection to port and reads until the server closes
 * it or timeout_ms pass. A server that hangs up while data is still being
 * sent is fine: what it answered is read all the same. */
static exchange_t s_exchange(int port, const void *data, size_t len, int timeout_ms)
{
    exchange_t x = {0};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = send(fd, p, left, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
    size_t cap = 65536;
    x.bytes = malloc(cap + 1);
    assert_non_null(x.bytes);
    int64_t start = zclock_mono();
    int64_t deadline = start + timeout_ms;
    while (x.len < cap) {
        int64_t wait = deadline - zclock_mono();
        if (wait <= 0)
            break;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, (int)wait) <= 0)
            break;
        ssize_t n = recv(fd, x.bytes + x.len, cap - x.len, 0);
        if (n <= 0) {
            x.closed = true; /* EOF, or reset after the answer */
            break;
        }
        x.len += (size_t)n;
    }
    x.elapsed_ms = zclock_mono() - start;
    x.bytes[x.len] = '\0';
    close(fd);
    return x;
}

/* How many lines of the reply are status lines ("HTTP/1.x "). */
static int s_status_lines(const exchange_t *x)
{
    int n = 0;
    for (size_t i = 0; i + 9 <= x->len; i++)
        if ((i == 0 || x->bytes[i - 1] == '\n') && memcmp(x->bytes + i, "HTTP/1.", 7) == 0 &&
            x->bytes[i + 8] == ' ')
            n++;
    return n;
}

/* The value of header name in the reply's header block, or NULL. */
static char *s_raw_header(const exchange_t *x, const char *name, char *out, size_t size)
{
    const char *end = strstr(x->bytes, "\r\n\r\n");
    size_t n = strlen(name);
    for (const char *line = strstr(x->bytes, "\r\n"); line && line < end;
         line = strstr(line + 2, "\r\n")) {
        const char *h = line + 2;
        if (strncasecmp(h, name, n) == 0 && h[n] == ':') {
            const char *v = h + n + 1;
            while (*v == ' ')
                v++;
            size_t len = strcspn(v, "\r");
            if (len >= size)
                len = size - 1;
            memcpy(out, v, len);
            out[len] = '\0';
            return out;
        }
    }
    return NULL;
}

/* One well-formed answer: exactly one status line with this status, the
 * connection closed, a Content-Length the body matches to the byte, and a
 * JSON error of the section 3 shape whose request_id is the X-Request-Id
 * header. Returns the request id (static: the next call overwrites it). */
static const char *s_expect_raw_error(const exchange_t *x, int status, const char *code)
{
    if (s_status_lines(x) != 1)
        print_error("reply (%zu bytes, closed %d):\n%s\n", x->len, x->closed, x->bytes);
    assert_int_equal(s_status_lines(x), 1);
    assert_true(x->len > 12 && strncmp(x->bytes, "HTTP/1.1 ", 9) == 0);
    assert_int_equal(atoi(x->bytes + 9), status);
    assert_true(x->closed);
    const char *body = strstr(x->bytes, "\r\n\r\n");
    assert_non_null(body);
    body += 4;
    char value[128];
    assert_non_null(s_raw_header(x, "Content-Length", value, sizeof value));
    assert_int_equal(strtoul(value, NULL, 10), x->len - (size_t)(body - x->bytes));
    assert_non_null(s_raw_header(x, "Content-Type", value, sizeof value));
    assert_true(s_is_json_type(value));
    static char request_id[128];
    assert_non_null(s_raw_header(x, "X-Request-Id", request_id, sizeof request_id));
    assert_true(s_valid_request_id(request_id));
    json_t *root = json_loads(body, 0, NULL);
    assert_non_null(root);
    assert_int_equal(json_object_size(root), 1);
    json_t *error = json_object_get(root, "error");
    assert_string_equal(json_string_value(json_object_get(error, "code")), code);
    assert_true(json_is_string(json_object_get(error, "message")));
    assert_string_equal(json_string_value(json_object_get(error, "request_id")), request_id);
    json_decref(root);
    return request_id;
}

static void s_exchange_free(exchange_t *x)
{
    free(x->bytes);
    memset(x, 0, sizeof *x);
}

static void s_expect_still_serving(const fixture_t *d)
{
    hc_response_t r;
    s_get(d, "/v1/sys/ping", &r);
    s_expect_status(&r, 200);
    assert_string_equal(r.text, "{\"pong\":true}");
    hc_response_free(&r);
}

/* API.md section 2: a client that sends msgpack gets msgpack back, with no
 * Accept header; errors too. */
static void test_msgpack_body_gets_msgpack_answer(void **state)
{
    (void)state;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    s_pack_str(&pk, "n");
    msgpack_pack_int(&pk, -7);
    s_pack_str(&pk, "s");
    s_pack_str(&pk, "x\xc3\xa9");
    const char *const mp_type[] = {"Content-Type: application/msgpack", NULL};
    hc_request_t echo = {.method = "POST",
                         .path = "/v1/sys/echo",
                         .headers = mp_type,
                         .body = buf.data,
                         .body_len = buf.size};
    hc_response_t r;
    s_http(s_main, &echo, &r);
    s_expect_status(&r, 200);
    if (strcmp(r.content_type, "application/msgpack") != 0)
        print_error("a msgpack body got Content-Type '%s': %s\n", r.content_type, r.text);
    assert_string_equal(r.content_type, "application/msgpack");
    /* the same bytes come back: a map of two, packed the same way */
    assert_int_equal(r.len, buf.size);
    assert_memory_equal(r.text, buf.data, buf.size);
    hc_response_free(&r);

    /* an error for such a client is msgpack as well */
    hc_request_t missing = {.method = "POST",
                            .path = "/v1/nowhere",
                            .headers = mp_type,
                            .body = buf.data,
                            .body_len = buf.size};
    s_http(s_main, &missing, &r);
    s_expect_mp_error(&r, 404, "not_found");
    hc_response_free(&r);
    msgpack_sbuffer_destroy(&buf);
}

/* A request target over the bridge's 8 KiB: 414 in the contract's shape
 * (payload_too_large, API.md section 3), not libmicrohttpd's HTML page. */
static void test_long_url_is_414(void **state)
{
    (void)state;
    size_t len = 20 * 1024;
    char *path = malloc(len + 32);
    assert_non_null(path);
    strcpy(path, "/v1/sys/ping?q=");
    size_t used = strlen(path);
    memset(path + used, 'a', len - used);
    path[len] = '\0';
    hc_response_t r;
    hc_request_t q = {.path = path};
    s_http(s_main, &q, &r);
    s_expect_error_only(&r, 414, "payload_too_large");
    hc_response_free(&r);
    /* the same without a query */
    memcpy(path, "/v1/", 4);
    memset(path + 4, 'b', len - 4);
    s_http(s_main, &q, &r);
    s_expect_error_only(&r, 414, "payload_too_large");
    hc_response_free(&r);
    free(path);
    s_expect_still_serving(s_main);
}

/* 500 query arguments in a 1 KiB URL: libmicrohttpd 0.9.75 would run out
 * of room filing them and close without a word; the bridge refuses more
 * than 64 with a 400 naming the query. 64 are fine. */
static void test_many_query_arguments(void **state)
{
    (void)state;
    char path[2048] = "/v1/sys/ping?";
    for (int i = 0; i < 500; i++)
        strcat(path, i ? "&a" : "a");
    hc_response_t r;
    hc_request_t q = {.path = path};
    s_http(s_main, &q, &r);
    json_t *body = s_expect_error(&r, 400, "invalid_argument");
    json_t *field = json_array_get(
        json_object_get(json_object_get(json_object_get(body, "error"), "details"), "fields"), 0);
    assert_string_equal(json_string_value(json_object_get(field, "field")), "query");
    json_decref(body);
    hc_response_free(&r);

    strcpy(path, "/v1/sys/ping?");
    for (int i = 0; i < 64; i++)
        strcat(path, i ? "&a=1" : "a=1");
    s_http(s_main, &q, &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);
}

/* Too many header fields, or a header block over 16 KiB: 431 in the
 * contract's shape. One 64 KiB header does not fit libmicrohttpd's 32 KiB
 * pool at all, and it answers that itself (protocol/SPEC.md, "The HTTP
 * edge"): one well-formed 431, and the bridge goes on serving. */
static void test_header_limits_are_431(void **state)
{
    (void)state;
    char **lines = calloc(201, sizeof *lines);
    assert_non_null(lines);
    for (int i = 0; i < 200; i++)
        lines[i] = zsys_sprintf("X-Header-%d: %d", i, i);
    hc_request_t q = {.path = "/v1/sys/ping", .headers = (const char *const *)lines};
    hc_response_t r;
    s_http(s_main, &q, &r);
    s_expect_error_only(&r, 431, "payload_too_large");
    hc_response_free(&r);
    for (int i = 0; i < 200; i++)
        zstr_free(&lines[i]);

    /* one header of 20 KiB: over the bridge's limit, inside MHD's pool */
    size_t big = 20 * 1024;
    char *line = malloc(big + 16);
    assert_non_null(line);
    strcpy(line, "X-Big: ");
    memset(line + 7, 'b', big);
    line[7 + big] = '\0';
    lines[0] = line;
    s_http(s_main, &q, &r);
    s_expect_error_only(&r, 431, "payload_too_large");
    hc_response_free(&r);
    free(line);
    free(lines);

    size_t huge = 64 * 1024;
    char *request = malloc(huge + 128);
    assert_non_null(request);
    int n = sprintf(request, "GET /v1/sys/ping HTTP/1.1\r\nHost: x\r\nX-Huge: ");
    memset(request + n, 'h', huge);
    strcpy(request + n + huge, "\r\n\r\n");
    exchange_t x = s_exchange(s_main->http_port, request, strlen(request), 3000);
    free(request);
    if (x.len > 0) { /* MHD's own answer: one status line, 431 */
        assert_int_equal(s_status_lines(&x), 1);
        assert_int_equal(strncmp(x.bytes, "HTTP/1.1 431 ", 13), 0);
    }
    assert_true(x.closed);
    s_exchange_free(&x);
    s_expect_still_serving(s_main);
}

/* A Content-Length that is not a number: libmicrohttpd 0.9.75 wrote its
 * 400's header block twice. Now: one well-formed 400, JSON, with the
 * request id (the client's when it sent one), and the connection closed. */
static void test_bad_content_length_is_one_answer(void **state)
{
    (void)state;
    static const char *const values[] = {"abc", "-5", "5x", ""};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        char request[256];
        snprintf(request, sizeof request,
                 "POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "Content-Length: %s\r\n\r\n",
                 values[i]);
        exchange_t x = s_exchange(s_main->http_port, request, strlen(request), 3000);
        if (s_status_lines(&x) != 1)
            print_error("Content-Length '%s'\n", values[i]);
        s_expect_raw_error(&x, 400, "malformed_body");
        s_exchange_free(&x);
    }
    const char with_id[] = "POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine-42\r\n"
                           "Content-Length: abc\r\n\r\n";
    exchange_t x = s_exchange(s_main->http_port, with_id, strlen(with_id), 3000);
    assert_string_equal(s_expect_raw_error(&x, 400, "malformed_body"), "mine-42");
    s_exchange_free(&x);
    /* too large for 64 bits: one 413 */
    const char huge[] = "POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\n"
                        "Content-Length: 123456789012345678901234567890\r\n\r\n";
    x = s_exchange(s_main->http_port, huge, strlen(huge), 3000);
    s_expect_raw_error(&x, 413, "payload_too_large");
    s_exchange_free(&x);
    s_expect_still_serving(s_main);
}

/* A body whose length cannot be known (Transfer-Encoding not ending in
 * chunked: libmicrohttpd 0.9.75 waited for the connection to close, so
 * neither side spoke until a timeout), an unsupported coding, or two ways
 * of framing at once: answered at once, and the connection closed. The
 * deadline is generous; the answer comes in milliseconds. */
static void test_transfer_encoding_answered_at_once(void **state)
{
    (void)state;
    static const struct {
        const char *headers;
        int status;
        const char *code;
    } cases[] = {
        {"Transfer-Encoding: gzip\r\n", 400, "malformed_body"},
        {"Transfer-Encoding: chunked, gzip\r\n", 400, "malformed_body"},
        {"Transfer-Encoding: gzip, chunked\r\n", 415, "unsupported_media_type"},
        {"Transfer-Encoding: chunked\r\nContent-Length: 2\r\n", 400, "malformed_body"},
        {"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", 400, "malformed_body"},
        {"Content-Length: 2\r\nContent-Length: 2\r\n", 400, "malformed_body"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char request[512];
        snprintf(request, sizeof request,
                 "POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 "%s\r\n",
                 cases[i].headers);
        exchange_t x = s_exchange(s_main->http_port, request, strlen(request), 3000);
        if (!x.closed || s_status_lines(&x) != 1)
            print_error("case %zu (%s): %lld ms, closed %d\n", i, cases[i].headers,
                        (long long)x.elapsed_ms, x.closed);
        s_expect_raw_error(&x, cases[i].status, cases[i].code);
        s_exchange_free(&x);
    }
    /* chunked alone is served */
    const char chunked[] =
        "POST /v1/sys/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        "7\r\n{\"a\":1}\r\n0\r\n\r\n";
    exchange_t x = s_exchange(s_main->http_port, chunked, strlen(chunked), 3000);
    assert_int_equal(s_status_lines(&x), 1);
    assert_int_equal(strncmp(x.bytes, "HTTP/1.1 200 ", 13), 0);
    assert_non_null(strstr(x.bytes, "\r\n\r\n{\"a\":1}"));
    s_exchange_free(&x);
}

/* ------------------------------------------------------------------ */
/* 9. Many requests in flight                                          */

#define IN_FLIGHT 200
#define FLIGHT_WORKERS 20

static int s_flight_setup(void **state)
{
    /* 200 sleeps of 50 ms on two workers would take 5 s, past any sane
     * deadline: this one has 20 workers (10 rounds, ~0.5 s) and a 10 s
     * deadline, so what is measured is the bridge. */
    const char *const env[] = {"RETAIL_WORKERS=20", "RETAIL_HTTP_TIMEOUT_MS=10000", NULL};
    *state = s_daemon("bridge-flight", NULL, env, NULL);
    return *state ? 0 : -1;
}

static int s_threads(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    char *status = tu_slurp(path, NULL);
    char *line = status ? strstr(status, "\nThreads:") : NULL;
    int threads = line ? atoi(line + 9) : -1;
    free(status);
    return threads;
}

static void test_many_requests_in_flight(void **state)
{
    fixture_t *d = *state;
    int threads_before = s_threads(d->pid);
    assert_true(threads_before > 0);

    CURLM *multi = curl_multi_init();
    assert_non_null(multi);
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, 0L);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)IN_FLIGHT + 10);
    hc_response_t *resps = calloc(IN_FLIGHT, sizeof *resps);
    CURL **easies = calloc(IN_FLIGHT, sizeof *easies);
    assert_true(resps && easies);
    hc_request_t q = {.url = d->base, .path = "/v1/sys/sleep?ms=50", .timeout_ms = CURL_TIMEOUT_MS};
    for (int i = 0; i < IN_FLIGHT; i++) {
        easies[i] = hc_easy(&q, &resps[i]);
        assert_non_null(easies[i]);
        curl_easy_setopt(easies[i], CURLOPT_PRIVATE, (void *)&resps[i]);
        assert_int_equal(curl_multi_add_handle(multi, easies[i]), CURLM_OK);
    }
    int64_t start = zclock_mono();
    int running = 1;
    int done = 0;
    int threads_during = -1;
    long long in_flight_max = 0;
    bool sampled = false;
    while (running > 0 && zclock_mono() - start < 20000) {
        assert_int_equal(curl_multi_perform(multi, &running), CURLM_OK);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            hc_response_t *r;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&r);
            r->rc = msg->data.result;
            done++;
        }
        /* once all are sent and some are still waiting, look inside */
        if (!sampled && zclock_mono() - start > 100 && running > IN_FLIGHT / 4) {
            sampled = true;
            threads_during = s_threads(d->pid);
            hc_response_t m;
            s_get(d, "/metrics", &m);
            in_flight_max = s_metric(m.text, "retail_http_requests_in_flight");
            hc_response_free(&m);
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    int64_t elapsed = zclock_mono() - start;
    print_message("      %d requests in %lld ms; threads %d before, %d during; %lld in flight "
                  "seen\n",
                  done, (long long)elapsed, threads_before, threads_during, in_flight_max);

    int ok = 0;
    for (int i = 0; i < IN_FLIGHT; i++) {
        curl_multi_remove_handle(multi, easies[i]);
        hc_finish(easies[i], resps[i].rc, &resps[i]);
        if (resps[i].rc == CURLE_OK && resps[i].status == 200 &&
            strcmp(resps[i].text, "{\"slept_ms\":50}") == 0)
            ok++;
        else if (ok + 5 > i) /* show a few */
            print_error("request %d: rc %d status %ld body %s\n", i, resps[i].rc, resps[i].status,
                        resps[i].text);
        hc_response_free(&resps[i]);
    }
    curl_multi_cleanup(multi);
    free(resps);
    free(easies);
    assert_int_equal(ok, IN_FLIGHT);
    /* concurrent, not one after another (200 x 50 ms = 10 s) */
    assert_true(elapsed < 5000);
    /* no thread per request: the count did not move while they waited */
    if (threads_during >= 0)
        assert_int_equal(threads_during, threads_before);
    if (sampled)
        assert_true(in_flight_max > 20);

    hc_response_t r;
    s_get(d, "/v1/sys/ping", &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);
    assert_int_equal(fixture_stop(d), 0); /* exit 0, no sanitizer report */
}

/* ------------------------------------------------------------------ */
/* 10. A route table of its own, in process                            */

/* A broker, a sys pool of one and a bridge in this process, the bridge
 * given a table bigger than the API's in every way that once had a cap:
 * 40 services without workers (readyz checked 32), 73 routes (metrics
 * labelled 64) and one route taking 25 arguments from query and headers
 * (the bridge had room for 16). */
#define TABLE_SERVICES 40
#define TABLE_PINGS 30
#define TABLE_QUERY 20
#define TABLE_HEADERS 5

typedef struct {
    zactor_t *broker;
    pool_t *pool;
    zactor_t *bridge;
    route_t *routes;
    size_t n_routes;
    zlistx_t *strings; /* what the table's strings point to */
    char base[64];
    int port;
    char endpoint[64]; /* each fixture its own: a closed inproc endpoint is
                          released by libzmq's reaper, later */
} table_fixture_t;

static char *s_keep(table_fixture_t *f, char *text)
{
    assert_non_null(text);
    assert_non_null(zlistx_add_end(f->strings, text));
    return text;
}

static int s_table_teardown(void **state)
{
    table_fixture_t *f = *state;
    if (!f)
        return 0;
    bridge_destroy(&f->bridge);
    pool_destroy(&f->pool);
    broker_destroy(&f->broker);
    char *text;
    while ((text = zlistx_detach(f->strings, NULL)))
        zstr_free(&text);
    zlistx_destroy(&f->strings);
    free(f->routes);
    free(f);
    *state = NULL;
    return 0;
}

static int s_table_setup(void **state)
{
    table_fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    *state = f;
    f->strings = zlistx_new();
    size_t cap = 3 + TABLE_SERVICES + TABLE_PINGS;
    f->routes = calloc(cap, sizeof *f->routes);
    assert_true(f->strings && f->routes);
    route_t *r = f->routes;
    *r++ = (route_t){"GET", "/readyz", NULL, NULL, 200, NULL, NULL, false, LOCAL_READYZ};
    *r++ = (route_t){"GET", "/metrics", NULL, NULL, 200, NULL, NULL, false, LOCAL_METRICS};
    for (int i = 0; i < TABLE_SERVICES; i++)
        *r++ = (route_t){"GET",
                         s_keep(f, zsys_sprintf("/svc/%02d", i)),
                         s_keep(f, zsys_sprintf("svc%02d", i)),
                         "ping",
                         200,
                         NULL,
                         NULL,
                         false,
                         LOCAL_NONE};
    for (int i = 0; i < TABLE_PINGS; i++)
        *r++ = (route_t){
            "GET",     s_keep(f, zsys_sprintf("/r/%02d", i)), "sys", "ping", 200, NULL, NULL, false,
            LOCAL_NONE};
    /* "q1,q2:int,...,q20:int" and "X-Arg-1>h1,...,X-Arg-5>h5:bool" */
    char query[512] = "", headers[256] = "";
    for (int i = 1; i <= TABLE_QUERY; i++)
        snprintf(query + strlen(query), sizeof query - strlen(query), "%sq%d%s", i > 1 ? "," : "",
                 i, i % 2 ? "" : ":int");
    for (int i = 1; i <= TABLE_HEADERS; i++)
        snprintf(headers + strlen(headers), sizeof headers - strlen(headers), "%sX-Arg-%d>h%d%s",
                 i > 1 ? "," : "", i, i, i == TABLE_HEADERS ? ":bool" : "");
    *r++ = (route_t){
        "GET", "/many",   "sys", "echo", 200, s_keep(f, strdup(query)), s_keep(f, strdup(headers)),
        false, LOCAL_NONE};
    f->n_routes = (size_t)(r - f->routes);

    f->port = tu_free_port();
    snprintf(f->endpoint, sizeof f->endpoint, "inproc://test-bridge-table-%d-%lld", f->port,
             (long long)zclock_usecs());
    broker_config_t bc = {.inproc_endpoint = f->endpoint};
    f->broker = broker_new(&bc);
    worker_config_t wc = {.service = "sys", .ops = sys_ops(false), .endpoint = f->endpoint};
    f->pool = f->broker ? pool_new(&wc, 1) : NULL;
    bridge_config_t hc = {.port = f->port,
                          .broker_endpoint = f->endpoint,
                          .timeout_ms = 5000,
                          .routes = f->routes,
                          .n_routes = f->n_routes};
    f->bridge = f->pool ? bridge_new(&hc) : NULL;
    if (!f->bridge) {
        fprintf(stderr, "the in-process broker, pool or bridge did not start\n");
        s_table_teardown(state);
        return -1;
    }
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%d", f->port);
    /* the sys worker has said READY once a ping through it answers */
    int64_t deadline = zclock_mono() + READY_TIMEOUT_MS;
    long status = 0;
    while (status != 200 && zclock_mono() < deadline) {
        hc_request_t q = {.url = f->base, .path = "/r/00", .timeout_ms = 2000};
        status = hc_status(&q);
        if (status != 200)
            zclock_sleep(20);
    }
    if (status != 200) {
        fprintf(stderr, "the in-process sys pool did not answer\n");
        s_table_teardown(state);
        return -1;
    }
    return 0;
}

static hc_response_t s_table_get(const table_fixture_t *f, const char *path,
                                 const char *const *headers)
{
    hc_request_t q = {
        .url = f->base, .path = path, .headers = headers, .timeout_ms = CURL_TIMEOUT_MS};
    return hc_send(&q);
}

/* /readyz names every service without a worker, all 40 of them. */
static void test_table_readyz_names_every_service(void **state)
{
    table_fixture_t *f = *state;
    hc_response_t r = s_table_get(f, "/readyz", NULL);
    s_expect_status(&r, 503);
    json_t *body = s_json(&r);
    assert_string_equal(json_string_value(json_object_get(body, "status")), "unavailable");
    json_t *missing = json_object_get(body, "missing");
    if (json_array_size(missing) != TABLE_SERVICES)
        print_error("readyz: %s\n", r.text);
    assert_int_equal(json_array_size(missing), TABLE_SERVICES);
    for (int i = 0; i < TABLE_SERVICES; i++) {
        char name[16];
        snprintf(name, sizeof name, "svc%02d", i);
        assert_string_equal(json_string_value(json_array_get(missing, (size_t)i)), name);
    }
    json_decref(body);
    hc_response_free(&r);
}

/* Every route has its own label, the 73rd as much as the first. */
static void test_table_metrics_label_every_route(void **state)
{
    table_fixture_t *f = *state;
    char path[32];
    snprintf(path, sizeof path, "/r/%02d", TABLE_PINGS - 1);
    hc_response_t r = s_table_get(f, path, NULL);
    s_expect_status(&r, 200);
    hc_response_free(&r);
    r = s_table_get(f, "/metrics", NULL);
    s_expect_status(&r, 200);
    char series[128];
    snprintf(series, sizeof series,
             "retail_http_requests_total{route=\"GET /r/%02d\",status=\"200\"}", TABLE_PINGS - 1);
    if (s_metric(r.text, series) != 1)
        print_error("no %s in\n%s\n", series, r.text);
    assert_int_equal(s_metric(r.text, series), 1);
    hc_response_free(&r);
}

/* A route taking 25 arguments gets all 25, typed; a bad value in the last
 * slot is a 400 naming it, not an argument dropped without a word. */
static void test_table_every_argument_arrives(void **state)
{
    table_fixture_t *f = *state;
    char path[512] = "/many?";
    for (int i = 1; i <= TABLE_QUERY; i++)
        snprintf(path + strlen(path), sizeof path - strlen(path), "%sq%d=%d", i > 1 ? "&" : "", i,
                 i * 10);
    char lines[TABLE_HEADERS][32];
    const char *headers[TABLE_HEADERS + 1];
    for (int i = 1; i <= TABLE_HEADERS; i++) {
        snprintf(lines[i - 1], sizeof lines[i - 1], "X-Arg-%d: %s", i,
                 i == TABLE_HEADERS ? "true" : "v");
        headers[i - 1] = lines[i - 1];
    }
    headers[TABLE_HEADERS] = NULL;
    hc_response_t r = s_table_get(f, path, headers);
    s_expect_status(&r, 200);
    json_t *body = s_json(&r);
    if (json_object_size(body) != TABLE_QUERY + TABLE_HEADERS)
        print_error("echo: %s\n", r.text);
    assert_int_equal(json_object_size(body), TABLE_QUERY + TABLE_HEADERS);
    for (int i = 1; i <= TABLE_QUERY; i++) {
        char name[16], text[16];
        snprintf(name, sizeof name, "q%d", i);
        snprintf(text, sizeof text, "%d", i * 10);
        json_t *v = json_object_get(body, name);
        if (i % 2)
            assert_string_equal(json_string_value(v), text);
        else
            assert_int_equal(json_integer_value(v), i * 10);
    }
    assert_string_equal(json_string_value(json_object_get(body, "h1")), "v");
    assert_true(json_is_true(json_object_get(body, "h5")));
    json_decref(body);
    hc_response_free(&r);

    /* the last header argument, of the wrong type */
    snprintf(lines[TABLE_HEADERS - 1], sizeof lines[0], "X-Arg-%d: maybe", TABLE_HEADERS);
    r = s_table_get(f, path, headers);
    body = s_expect_error(&r, 400, "invalid_argument");
    json_t *field = json_array_get(
        json_object_get(json_object_get(json_object_get(body, "error"), "details"), "fields"), 0);
    assert_string_equal(json_string_value(json_object_get(field, "field")), "h5");
    json_decref(body);
    hc_response_free(&r);
}

/* A table the bridge could serve only in part does not start it. */
static void test_table_that_cannot_be_served_is_refused(void **state)
{
    (void)state;
    char long_source[ROUTE_SOURCE_MAX + 16];
    memset(long_source, 'X', sizeof long_source - 6);
    strcpy(long_source + sizeof long_source - 6, ">arg");
    const route_t bad[][2] = {
        {{"GET", "/a/{p1}/{p2}/{p3}/{p4}/{p5}", "sys", "ping", 200, NULL, NULL, false, LOCAL_NONE}},
        {{"GET", "/a", "sys", "ping", 200, NULL, long_source, false, LOCAL_NONE}},
        {{"GET", "/a", "sys", "ping", 200, "n:float", NULL, false, LOCAL_NONE}},
        {{"GET", "/a", "sys", "ping", 200, NULL, NULL, false, LOCAL_NONE},
         {"GET", "/a", "sys", "echo", 200, NULL, NULL, false, LOCAL_NONE}},
        {{"GET", "a", "sys", "ping", 200, NULL, NULL, false, LOCAL_NONE}},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        bridge_config_t hc = {.port = tu_free_port(),
                              .broker_endpoint = "inproc://test-bridge-refused",
                              .routes = bad[i],
                              .n_routes = bad[i][1].method ? 2 : 1};
        zactor_t *bridge = bridge_new(&hc);
        if (bridge)
            print_error("table %zu was accepted\n", i);
        assert_null(bridge);
    }
}

/* ------------------------------------------------------------------ */
/* Last: the group's retaild stops cleanly                             */

/* SIGTERM with a request in flight: it is answered (API.md section 4), and
 * the process exits 0 with nothing from the sanitizers. */
static void test_main_daemon_stops_cleanly(void **state)
{
    (void)state;
    hc_response_t r;
    s_get(s_main, "/healthz", &r);
    s_expect_status(&r, 200);
    hc_response_free(&r);

    /* 300 ms: under the 400 ms deadline and under 3 heartbeats */
    CURLM *multi = curl_multi_init();
    assert_non_null(multi);
    hc_request_t q = {
        .url = s_main->base, .path = "/v1/sys/sleep?ms=300", .timeout_ms = CURL_TIMEOUT_MS};
    CURL *easy = hc_easy(&q, &r);
    assert_non_null(easy);
    curl_multi_add_handle(multi, easy);
    int running = 1;
    int64_t start = zclock_mono();
    bool signalled = false;
    while (running > 0 && zclock_mono() - start < 10000) {
        curl_multi_perform(multi, &running);
        if (!signalled && zclock_mono() - start >= 100) {
            kill(s_main->pid, SIGTERM); /* the worker is asleep in the handler */
            signalled = true;
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 20, NULL);
    }
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(multi, &left)))
        if (msg->msg == CURLMSG_DONE)
            r.rc = msg->data.result;
    curl_multi_remove_handle(multi, easy);
    hc_finish(easy, r.rc, &r);
    curl_multi_cleanup(multi);
    if (r.rc != CURLE_OK || r.status != 200)
        print_error("in flight at SIGTERM: rc %d status %ld %s\n", r.rc, r.status, r.text);
    assert_true(signalled);
    assert_int_equal(r.rc, CURLE_OK);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.text, "{\"slept_ms\":300}");
    hc_response_free(&r);

    assert_int_equal(fixture_stop(s_main), 0); /* exit 0, no sanitizer report */
}

/* ------------------------------------------------------------------ */

static int s_group_teardown(void **state)
{
    (void)state;
    fixture_destroy(&s_main);
    return 0;
}

static int s_group_setup(void **state)
{
    (void)state;
    const char *const env[] = {"RETAIL_WORKERS=2", "RETAIL_HTTP_TIMEOUT_MS=400", NULL};
    s_main = s_daemon("bridge-it", NULL, env, NULL);
    return s_main ? 0 : -1;
}

int main(void)
{
    /* a SIGINT or SIGTERM ends the test process, and the daemons with it
     * (PR_SET_PDEATHSIG): the in-process actors must not swallow it */
    zsys_handler_set(NULL);
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_routes_ping_and_echo),
        cmocka_unit_test(test_errors_have_status_code_and_request_id),
        cmocka_unit_test(test_405_has_allow_header),
        cmocka_unit_test_setup_teardown(test_no_worker_is_503_and_not_ready, s_no_pool_setup,
                                        s_own_daemon_teardown),
        cmocka_unit_test(test_msgpack_negotiation),
        cmocka_unit_test(test_msgpack_without_json_form_is_400),
        cmocka_unit_test(test_request_ids_and_access_log),
        cmocka_unit_test(test_metrics_count_requests_and_errors),
        cmocka_unit_test(test_metrics_content_type_is_prometheus_text),
        cmocka_unit_test(test_malformed_input_battery),
        cmocka_unit_test(test_msgpack_body_gets_msgpack_answer),
        cmocka_unit_test(test_long_url_is_414),
        cmocka_unit_test(test_many_query_arguments),
        cmocka_unit_test(test_header_limits_are_431),
        cmocka_unit_test(test_bad_content_length_is_one_answer),
        cmocka_unit_test(test_transfer_encoding_answered_at_once),
        cmocka_unit_test_setup_teardown(test_table_readyz_names_every_service, s_table_setup,
                                        s_table_teardown),
        cmocka_unit_test_setup_teardown(test_table_metrics_label_every_route, s_table_setup,
                                        s_table_teardown),
        cmocka_unit_test_setup_teardown(test_table_every_argument_arrives, s_table_setup,
                                        s_table_teardown),
        cmocka_unit_test(test_table_that_cannot_be_served_is_refused),
        cmocka_unit_test_setup_teardown(test_many_requests_in_flight, s_flight_setup,
                                        s_own_daemon_teardown),
        cmocka_unit_test(test_main_daemon_stops_cleanly),
    };
    int failed = cmocka_run_group_tests_name("bridge", tests, s_group_setup, s_group_teardown);
    curl_global_cleanup();
    return failed;
}

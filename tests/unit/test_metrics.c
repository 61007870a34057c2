/*  test_metrics.c - the bridge's Prometheus metrics of router/metrics.h.
 *
 *  Prometheus reads nothing but the rendered text, so the tests do too:
 *  every check looks up one series by its exact name and labels in
 *  metrics_render()'s output, and also proves it occurs only once, since a
 *  repeated series makes a scrape fail. Every rendered text is run through
 *  a small parser of the 0.0.4 format first (s_check_exposition), so that
 *  a malformed line in any test, not only in the dedicated one, is caught.
 */
#include "actors/services.h"
#include "protocol/envelope.h"
#include "router/api.h"
#include "router/metrics.h"
#include "tests/testutil.h"

#include <ctype.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const s_routes[] = {
    "GET /v1/products/{id}",
    "POST /v1/cart/items",
    "GET /healthz",
};
#define N_ROUTES (sizeof s_routes / sizeof s_routes[0])

static const char *const s_les[] = {"0.0001", "0.00025", "0.0005", "0.001", "0.0025", "0.005",
                                    "0.01",   "0.025",   "0.05",   "0.1",   "0.25",   "0.5",
                                    "1",      "2.5",     "5",      "10",    "+Inf"};
#define N_LES (sizeof s_les / sizeof s_les[0])

static bool s_is_name_start(char c, bool colon)
{
    return isalpha((unsigned char)c) || c == '_' || (colon && c == ':');
}

static bool s_is_name_char(char c, bool colon)
{
    return s_is_name_start(c, colon) || isdigit((unsigned char)c);
}

/* Skips a metric name (colon allowed) or label name; NULL if none. */
static const char *s_skip_name(const char *p, bool colon)
{
    if (!s_is_name_start(*p, colon))
        return NULL;
    while (s_is_name_char(*p, colon))
        p++;
    return p;
}

/* Checks one sample line [p, end): name{labels} value or name value, with
 * the metric name belonging to the family last declared by # TYPE. */
static const char *s_check_sample(const char *p, const char *end, const char *family,
                                  const char *type)
{
    const char *name = p;
    if (!(p = s_skip_name(p, true)))
        return "bad metric name";
    size_t name_len = (size_t)(p - name);
    size_t family_len = strlen(family);
    bool belongs = name_len == family_len && memcmp(name, family, name_len) == 0;
    if (!belongs && strcmp(type, "histogram") == 0 && name_len > family_len &&
        memcmp(name, family, family_len) == 0) {
        const char *suffix = name + family_len;
        size_t suffix_len = name_len - family_len;
        belongs = (suffix_len == 7 && memcmp(suffix, "_bucket", 7) == 0) ||
                  (suffix_len == 4 && memcmp(suffix, "_sum", 4) == 0) ||
                  (suffix_len == 6 && memcmp(suffix, "_count", 6) == 0);
    }
    if (!belongs)
        return "sample outside its # TYPE family";
    if (*p == '{') {
        p++;
        while (*p != '}') {
            if (!(p = s_skip_name(p, false)))
                return "bad label name";
            if (*p++ != '=' || *p++ != '"')
                return "label without =\"";
            while (*p != '"') {
                if (p >= end)
                    return "unterminated label value";
                if (*p == '\\') {
                    p++;
                    if (*p != '\\' && *p != '"' && *p != 'n')
                        return "bad escape in label value";
                }
                p++;
            }
            p++;
            if (*p == ',')
                p++;
            else if (*p != '}')
                return "labels not separated by ,";
        }
        p++;
    }
    if (*p++ != ' ')
        return "no space before the value";
    size_t rest = (size_t)(end - p);
    if ((rest == 4 && (memcmp(p, "+Inf", 4) == 0 || memcmp(p, "-Inf", 4) == 0)) ||
        (rest == 3 && memcmp(p, "NaN", 3) == 0))
        return NULL;
    if (rest == 0 || isspace((unsigned char)*p))
        return "no value";
    char *value_end = NULL;
    strtod(p, &value_end);
    if (value_end != end)
        return "value is not a number";
    return NULL;
}

/* Parses the whole text as the 0.0.4 exposition format; fails the test
 * naming the first bad line. */
static void s_check_exposition(const char *text)
{
    size_t len = strlen(text);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    char family[128] = "";
    char type[32] = "";
    char help_of[128] = "";
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        const char *problem = NULL;
        char name[128] = "";
        char word[32] = "";
        int used = 0;
        if (end == line)
            problem = "empty line";
        else if (strncmp(line, "# HELP ", 7) == 0) {
            if (sscanf(line, "# HELP %127s %n", name, &used) != 1 || line + used >= end)
                problem = "HELP without a name and text";
            else if (!s_skip_name(name, true) || *s_skip_name(name, true))
                problem = "HELP of a bad name";
            else
                snprintf(help_of, sizeof help_of, "%s", name);
        } else if (strncmp(line, "# TYPE ", 7) == 0) {
            if (sscanf(line, "# TYPE %127s %31s%n", name, word, &used) != 2 || line + used != end)
                problem = "TYPE is not '# TYPE name type'";
            else if (strcmp(word, "counter") && strcmp(word, "gauge") &&
                     strcmp(word, "histogram") && strcmp(word, "summary") &&
                     strcmp(word, "untyped"))
                problem = "unknown TYPE";
            else if (strcmp(name, help_of) != 0)
                problem = "TYPE not preceded by the HELP of the same metric";
            else {
                snprintf(family, sizeof family, "%s", name);
                snprintf(type, sizeof type, "%s", word);
            }
        } else if (*line == '#')
            problem = "comment that is neither HELP nor TYPE";
        else if (!*family)
            problem = "sample before any # TYPE";
        else
            problem = s_check_sample(line, end, family, type);
        if (problem)
            fail_msg("bad exposition line (%s): %.*s", problem, (int)(end - line), line);
        line = end + 1;
    }
}

/* Renders, checks the text's format and its reported length. */
static char *s_render(const metrics_t *m)
{
    size_t len = 0;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    s_check_exposition(text);
    return text;
}

/* The value of the sample line "series value", where series is the exact
 * name and labels; -1 if absent; fails if the series occurs twice. */
static double s_number(const char *text, const char *series)
{
    size_t n = strlen(series);
    double value = -1;
    int found = 0;
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, series, n) == 0 && line[n] == ' ') {
            value = strtod(line + n + 1, NULL);
            found++;
        }
    }
    if (found > 1)
        fail_msg("series occurs %d times: %s", found, series);
    return value;
}

/* The same as a whole number, so that cmocka's integer asserts never see a
 * negative double (converting one to unsigned is undefined). */
static long long s_value(const char *text, const char *series)
{
    return (long long)s_number(text, series);
}

/* The series name{route="label",extra}. */
static const char *s_series(const char *name, const char *label, const char *extra)
{
    static char buf[512];
    snprintf(buf, sizeof buf, "%s{route=\"%s\"%s%s}", name, label, extra ? "," : "",
             extra ? extra : "");
    return buf;
}

static long long s_requests(const char *text, const char *route, int status)
{
    char extra[32];
    snprintf(extra, sizeof extra, "status=\"%d\"", status);
    return s_value(text, s_series("retail_http_requests_total", route, extra));
}

static long long s_bucket(const char *text, const char *route, const char *le)
{
    char extra[32];
    snprintf(extra, sizeof extra, "le=\"%s\"", le);
    return s_value(text, s_series("retail_http_request_duration_seconds_bucket", route, extra));
}

static long long s_error(const char *text, const char *code)
{
    char series[256];
    snprintf(series, sizeof series, "retail_http_errors_total{code=\"%s\"}", code);
    return s_value(text, series);
}

static int s_setup(void **state)
{
    metrics_t *m = metrics_new(s_routes, N_ROUTES);
    assert_non_null(m);
    *state = m;
    return 0;
}

static int s_teardown(void **state)
{
    metrics_t *m = *state;
    metrics_destroy(&m);
    assert_null(m);
    metrics_destroy(&m); /* harmless twice */
    return 0;
}

/* Records a whole request: start then end. */
static void s_request(metrics_t *m, int route, int status, const char *code, int64_t us)
{
    metrics_request_start(m);
    metrics_request_end(m, route, status, code, us);
}

static void test_empty(void **state)
{
    metrics_t *m = *state;
    char *text = s_render(m);
    /* Only the gauges have samples; every family is still declared. */
    assert_int_equal(s_value(text, "retail_http_requests_in_flight"), 0);
    assert_true(s_number(text, "retail_process_start_time_seconds") > 0);
    assert_non_null(strstr(text, "# TYPE retail_http_requests_total counter\n"));
    assert_non_null(strstr(text, "# TYPE retail_http_request_duration_seconds histogram\n"));
    assert_non_null(strstr(text, "# TYPE retail_http_errors_total counter\n"));
    assert_non_null(strstr(text, "# TYPE retail_http_requests_in_flight gauge\n"));
    assert_non_null(strstr(text, "# TYPE retail_process_start_time_seconds gauge\n"));
    assert_null(strstr(text, "retail_http_requests_total{"));
    assert_null(strstr(text, "retail_http_request_duration_seconds_bucket{"));
    assert_null(strstr(text, "retail_http_errors_total{"));
    /* len is optional. */
    char *again = metrics_render(m, NULL);
    assert_non_null(again);
    assert_string_equal(again, text);
    free(again);
    free(text);
}

static void test_counts_by_route_and_status(void **state)
{
    metrics_t *m = *state;
    for (int i = 0; i < 5; i++)
        s_request(m, 0, 200, NULL, 300);
    s_request(m, 0, 404, "not_found", 200);
    s_request(m, 0, 404, "not_found", 200);
    s_request(m, 1, 201, NULL, 900);
    s_request(m, 1, 400, "invalid_argument", 100);
    s_request(m, 1, 201, NULL, 900);
    s_request(m, 0, 200, NULL, 300);
    char *text = s_render(m);
    assert_int_equal(s_requests(text, "GET /v1/products/{id}", 200), 6);
    assert_int_equal(s_requests(text, "GET /v1/products/{id}", 404), 2);
    assert_int_equal(s_requests(text, "POST /v1/cart/items", 201), 2);
    assert_int_equal(s_requests(text, "POST /v1/cart/items", 400), 1);
    /* Pairs that never occurred are not written, nor idle routes. */
    assert_int_equal(s_requests(text, "GET /v1/products/{id}", 201), -1);
    assert_int_equal(s_requests(text, "POST /v1/cart/items", 200), -1);
    assert_null(strstr(text, "GET /healthz"));
    assert_null(strstr(text, "unmatched"));
    /* Each route's histogram counts all its requests. */
    assert_int_equal(s_value(text, s_series("retail_http_request_duration_seconds_count",
                                            "GET /v1/products/{id}", NULL)),
                     8);
    assert_int_equal(s_value(text, s_series("retail_http_request_duration_seconds_count",
                                            "POST /v1/cart/items", NULL)),
                     3);
    free(text);
}

static void test_statuses(void **state)
{
    metrics_t *m = *state;
    /* Every valid status on one route, in descending order so each insert
     * goes to the front and the array grows many times. */
    for (int status = 599; status >= 100; status--)
        s_request(m, 2, status, NULL, 10);
    s_request(m, 2, 302, NULL, 10);
    /* Out of range: one "other" series, never a made-up status. */
    s_request(m, 2, 99, NULL, 10);
    s_request(m, 2, 600, NULL, 10);
    s_request(m, 2, -1, NULL, 10);
    char *text = s_render(m);
    for (int status = 100; status <= 599; status++)
        assert_int_equal(s_requests(text, "GET /healthz", status), status == 302 ? 2 : 1);
    assert_int_equal(
        s_value(text, s_series("retail_http_requests_total", "GET /healthz", "status=\"other\"")),
        3);
    assert_int_equal(s_requests(text, "GET /healthz", 99), -1);
    assert_int_equal(s_requests(text, "GET /healthz", 600), -1);
    /* Lines come in ascending status order. */
    const char *p100 = strstr(text, "status=\"100\"");
    const char *p599 = strstr(text, "status=\"599\"");
    assert_non_null(p100);
    assert_non_null(p599);
    assert_true(p100 < p599);
    free(text);
}

static void test_unmatched(void **state)
{
    metrics_t *m = *state;
    s_request(m, -1, 404, "not_found", 50);
    s_request(m, -1, 405, "method_not_allowed", 50);
    /* Any other index out of range counts as unmatched too. */
    s_request(m, (int)N_ROUTES, 404, "not_found", 50);
    s_request(m, -7, 404, "not_found", 50);
    char *text = s_render(m);
    assert_int_equal(s_requests(text, "unmatched", 404), 3);
    assert_int_equal(s_requests(text, "unmatched", 405), 1);
    assert_int_equal(
        s_value(text, s_series("retail_http_request_duration_seconds_count", "unmatched", NULL)),
        4);
    assert_null(strstr(text, "GET /"));
    free(text);
}

static void test_histogram(void **state)
{
    metrics_t *m = *state;
    /* One observation exactly on each bound and one just above it; le is
     * inclusive, so the first lands in its own bucket and the second in
     * the next one. */
    static const int64_t bounds[] = {100,     250,     500,     1000,    2500,   5000,
                                     10000,   25000,   50000,   100000,  250000, 500000,
                                     1000000, 2500000, 5000000, 10000000};
    size_t n_bounds = sizeof bounds / sizeof bounds[0];
    assert_int_equal(n_bounds + 1, N_LES);
    uint64_t sum_us = 0;
    for (size_t i = 0; i < n_bounds; i++) {
        s_request(m, 0, 200, NULL, bounds[i]);
        s_request(m, 0, 200, NULL, bounds[i] + 1);
        sum_us += 2 * (uint64_t)bounds[i] + 1;
    }
    /* A negative duration (clock stepped back) counts as 0. */
    s_request(m, 0, 200, NULL, -5);
    s_request(m, 0, 200, NULL, 0);
    uint64_t count = 2 * n_bounds + 2;
    char *text = s_render(m);
    const char *route = "GET /v1/products/{id}";
    /* Bucket i holds 0, -5, and each bound up to i once on the bound and
     * once just above (which belongs to bucket i+1): 2 + (i+1) + i. */
    for (size_t i = 0; i < N_LES; i++) {
        long long expected = i + 1 < N_LES ? (long long)(2 * i + 3) : (long long)count;
        if (s_bucket(text, route, s_les[i]) != expected)
            fail_msg("le=%s holds %lld, expected %lld", s_les[i], s_bucket(text, route, s_les[i]),
                     expected);
    }
    assert_int_equal(
        s_value(text, s_series("retail_http_request_duration_seconds_count", route, NULL)), count);
    double sum = s_number(text, s_series("retail_http_request_duration_seconds_sum", route, NULL));
    assert_true(fabs(sum - (double)sum_us / 1e6) < 1e-9);
    /* Buckets are written in ascending le order. */
    const char *prev = text;
    for (size_t i = 0; i < N_LES; i++) {
        char needle[32];
        snprintf(needle, sizeof needle, "le=\"%s\"}", s_les[i]);
        const char *at = strstr(prev, needle);
        assert_non_null(at);
        prev = at;
    }
    free(text);
}

static void test_histogram_exact(void **state)
{
    metrics_t *m = *state;
    /* Exactly 1 ms lands in le="0.001", not above; the sum is written as
     * exact decimal seconds. */
    s_request(m, 1, 201, NULL, 1000);
    char *text = s_render(m);
    const char *route = "POST /v1/cart/items";
    assert_int_equal(s_bucket(text, route, "0.0005"), 0);
    assert_int_equal(s_bucket(text, route, "0.001"), 1);
    assert_int_equal(s_bucket(text, route, "0.0025"), 1);
    assert_int_equal(s_bucket(text, route, "+Inf"), 1);
    assert_non_null(strstr(text, "retail_http_request_duration_seconds_sum{route=\"POST "
                                 "/v1/cart/items\"} 0.001000\n"));
    free(text);

    /* 12.5 s: only +Inf; the sum accumulates. */
    s_request(m, 1, 201, NULL, 12500000);
    text = s_render(m);
    assert_int_equal(s_bucket(text, route, "10"), 1);
    assert_int_equal(s_bucket(text, route, "+Inf"), 2);
    assert_non_null(strstr(text, "retail_http_request_duration_seconds_sum{route=\"POST "
                                 "/v1/cart/items\"} 12.501000\n"));
    assert_int_equal(
        s_value(text, s_series("retail_http_request_duration_seconds_count", route, NULL)), 2);
    free(text);
}

static void test_in_flight(void **state)
{
    metrics_t *m = *state;
    metrics_request_start(m);
    metrics_request_start(m);
    metrics_request_start(m);
    char *text = s_render(m);
    assert_int_equal(s_value(text, "retail_http_requests_in_flight"), 3);
    free(text);

    metrics_request_end(m, 0, 200, NULL, 10);
    text = s_render(m);
    assert_int_equal(s_value(text, "retail_http_requests_in_flight"), 2);
    free(text);

    metrics_request_end(m, 1, 201, NULL, 10);
    metrics_request_end(m, -1, 404, "not_found", 10);
    text = s_render(m);
    assert_int_equal(s_value(text, "retail_http_requests_in_flight"), 0);
    free(text);
}

static void test_errors(void **state)
{
    metrics_t *m = *state;
    s_request(m, 0, 404, "not_found", 10);
    s_request(m, -1, 404, "not_found", 10);
    s_request(m, 1, 400, "invalid_argument", 10);
    s_request(m, 1, 503, "unavailable", 10);
    s_request(m, 0, 200, NULL, 10);
    /* The code is copied, not kept by pointer. */
    char code[32];
    snprintf(code, sizeof code, "conflict");
    s_request(m, 1, 409, code, 10);
    snprintf(code, sizeof code, "XXXXXXXX");
    char *text = s_render(m);
    assert_int_equal(s_error(text, "not_found"), 2);
    assert_int_equal(s_error(text, "invalid_argument"), 1);
    assert_int_equal(s_error(text, "unavailable"), 1);
    assert_int_equal(s_error(text, "conflict"), 1);
    assert_int_equal(s_error(text, "XXXXXXXX"), -1);
    assert_int_equal(s_error(text, "other"), -1);
    free(text);
}

static void test_error_cap(void **state)
{
    metrics_t *m = *state;
    char code[32];
    /* A code named "other" joins the overflow count rather than taking a
     * slot and making a second code="other" series once the cap is hit. */
    s_request(m, 0, 500, "other", 10);
    /* 70 distinct codes, twice each: the first 64 keep their names. */
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 70; i++) {
            snprintf(code, sizeof code, "code_%02d", i);
            s_request(m, 0, 500, code, 10);
        }
    }
    char *text = s_render(m);
    for (int i = 0; i < 70; i++) {
        snprintf(code, sizeof code, "code_%02d", i);
        assert_int_equal(s_error(text, code), i < METRICS_MAX_ERROR_CODES ? 2 : -1);
    }
    assert_int_equal(METRICS_MAX_ERROR_CODES, 64);
    assert_int_equal(s_error(text, "other"), 2 * (70 - 64) + 1);
    /* Still counted by route and status, all of them. */
    assert_int_equal(s_requests(text, "GET /v1/products/{id}", 500), 141);
    free(text);
}

static void test_label_escaping(void **state)
{
    (void)state;
    static const char *const routes[] = {
        "GET /a\"b\\c",
        "GET /line\nbreak",
        "GET /plain",
    };
    metrics_t *m = metrics_new(routes, 3);
    assert_non_null(m);
    s_request(m, 0, 200, "odd\"code\\x", 1000);
    s_request(m, 1, 200, NULL, 1000);
    s_request(m, 2, 200, NULL, 1000);
    char *text = s_render(m);
    assert_int_equal(s_requests(text, "GET /a\\\"b\\\\c", 200), 1);
    assert_int_equal(s_requests(text, "GET /line\\nbreak", 200), 1);
    assert_int_equal(s_requests(text, "GET /plain", 200), 1);
    assert_int_equal(s_bucket(text, "GET /a\\\"b\\\\c", "0.001"), 1);
    assert_int_equal(s_bucket(text, "GET /line\\nbreak", "+Inf"), 1);
    assert_int_equal(s_error(text, "odd\\\"code\\\\x"), 1);
    /* No raw newline inside a label: every line is a whole line. */
    assert_null(strstr(text, "/line\n"));
    free(text);
    metrics_destroy(&m);
}

static void test_exposition_valid(void **state)
{
    metrics_t *m = *state;
    /* A bit of everything, then the whole text through the parser again,
     * this time also checking each sample line against a strict shape:
     * name{labels} value or name value, with no empty labels. */
    s_request(m, 0, 200, NULL, 120);
    s_request(m, 1, 400, "invalid_argument", 3000000);
    s_request(m, -1, 404, "not_found", 0);
    s_request(m, 2, 700, "odd \"one\"", 99999999);
    metrics_request_start(m);
    char *text = s_render(m);
    int samples = 0;
    int comments = 0;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        assert_non_null(end);
        if (*line == '#')
            comments++;
        else {
            samples++;
            const char *space = memchr(line, ' ', (size_t)(end - line));
            assert_non_null(space);
            const char *brace = memchr(line, '{', (size_t)(space - line));
            if (brace) {
                /* The labels end right before the value; escaped values
                 * may hold spaces, so find the last space instead. */
                const char *last = end;
                while (last > line && last[-1] != ' ')
                    last--;
                assert_int_equal(last[-2], '}');
                assert_int_not_equal(brace[1], '}');
            }
        }
        line = end + 1;
    }
    /* Five families, each with HELP and TYPE. */
    assert_int_equal(comments, 10);
    /* 2 gauges, 4 requests_total, 3 errors, 4 histograms of 17+2. */
    assert_int_equal(samples, 2 + 4 + 3 + 4 * (17 + 2));
    free(text);
}

static void test_lifecycle(void **state)
{
    (void)state;
    /* No routes at all: only "unmatched". */
    /* The clock metrics_new reads: time() is the coarse clock, which can
     * lag it across a second boundary. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    double before = (double)ts.tv_sec + (double)(ts.tv_nsec / 1000000) / 1e3;
    metrics_t *m = metrics_new(NULL, 0);
    clock_gettime(CLOCK_REALTIME, &ts);
    double after = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
    assert_non_null(m);
    s_request(m, 0, 404, NULL, 5);
    char *text = s_render(m);
    assert_int_equal(s_requests(text, "unmatched", 404), 1);
    double start = s_number(text, "retail_process_start_time_seconds");
    /* milliseconds in the exposition: before is cut to them too */
    assert_true(start >= before - 1e-6 && start <= after + 1e-6);
    free(text);
    metrics_destroy(&m);
    assert_null(m);
    metrics_destroy(NULL);

    /* A NULL label or a NULL array with routes is refused. */
    static const char *const bad[] = {"GET /a", NULL};
    assert_null(metrics_new(bad, 2));
    assert_null(metrics_new(NULL, 1));

    /* Labels are copied: the caller's strings may go away. */
    char label[32];
    snprintf(label, sizeof label, "GET /copied");
    const char *labels[] = {label};
    m = metrics_new(labels, 1);
    assert_non_null(m);
    snprintf(label, sizeof label, "GET /changed");
    s_request(m, 0, 200, NULL, 5);
    text = s_render(m);
    assert_int_equal(s_requests(text, "GET /copied", 200), 1);
    assert_null(strstr(text, "changed"));
    free(text);
    metrics_destroy(&m);
}

/* A table far past the 64 routes the bridge once labelled: every route
 * gets its own "METHOD path" label, the last as much as the first, and
 * only a request that matched none is "unmatched". */
static void test_many_routes_from_a_table(void **state)
{
    (void)state;
    enum { N = 200 };
    route_t *table = calloc(N, sizeof *table);
    char(*paths)[32] = calloc(N, sizeof *paths);
    assert_non_null(table);
    assert_non_null(paths);
    for (int i = 0; i < N; i++) {
        snprintf(paths[i], sizeof paths[i], "/r/%d/{id}", i);
        table[i] = (route_t){.method = i % 2 ? "POST" : "GET",
                             .path = paths[i],
                             .service = "s",
                             .op = "o",
                             .ok_status = 200};
    }
    metrics_t *m = metrics_new_for_routes(table, N);
    assert_non_null(m);
    for (int i = 0; i < N; i++)
        s_request(m, i, 200, NULL, 10);
    s_request(m, -1, 404, "not_found", 10);
    char *text = s_render(m);
    for (int i = 0; i < N; i++) {
        char label[32];
        snprintf(label, sizeof label, "%s /r/%d/{id}", i % 2 ? "POST" : "GET", i);
        if (s_requests(text, label, 200) != 1)
            print_error("route %d (%s) has no series of its own\n", i, label);
        assert_int_equal(s_requests(text, label, 200), 1);
    }
    assert_int_equal(s_requests(text, "unmatched", 200), -1);
    assert_int_equal(s_requests(text, "unmatched", 404), 1);
    free(text);
    metrics_destroy(&m);

    /* the API's own table, label i for route i */
    size_t n;
    const service_def_t *const *all = services_all(&n);
    char err[256];
    api_t *assembled = api_new(all, n, err, sizeof err);
    assert_non_null(assembled);
    const route_t *api = api_routes(assembled, &n);
    m = metrics_new_for_routes(api, n);
    assert_non_null(m);
    s_request(m, (int)n - 1, 200, NULL, 10);
    text = s_render(m);
    char label[128];
    snprintf(label, sizeof label, "%s %s", api[n - 1].method, api[n - 1].path);
    assert_int_equal(s_requests(text, label, 200), 1);
    free(text);
    metrics_destroy(&m);
    api_destroy(&assembled);

    /* a route without a method or a path cannot be labelled: refused */
    table[N / 2].method = NULL;
    assert_null(metrics_new_for_routes(table, N));
    assert_null(metrics_new_for_routes(NULL, 1));
    m = metrics_new_for_routes(NULL, 0);
    assert_non_null(m);
    metrics_destroy(&m);
    free(paths);
    free(table);
}

/* The broker's series come from an mmi.services answer, every service
 * and outcome labelled, names escaped; no answer is retail_broker_up 0. */
static void test_broker_series(void **state)
{
    (void)state;
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_map(&pk, 8);
    const char *keys[] = {"workers",     "queued",  "held",        "ok",
                          "unavailable", "timeout", "workers_lost"};
    mp_pack_str(&pk, "name");
    mp_pack_str(&pk, "catalog");
    for (int k = 0; k < 7; k++) {
        mp_pack_str(&pk, keys[k]);
        msgpack_pack_uint64(&pk, (uint64_t)(k + 1) * 10);
    }
    msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "name");
    mp_pack_str(&pk, "odd\"name");
    mp_pack_str(&pk, "workers");
    msgpack_pack_uint64(&pk, 1);
    msgpack_pack_int(&pk, 7); /* not a map: skipped */
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object list;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(buf.data, buf.size, &off, &zone, &list),
                     MSGPACK_UNPACK_SUCCESS);
    size_t len = 0;
    char *text = metrics_render_broker(&list, &len);
    assert_non_null(text);
    assert_int_equal(strlen(text), len);
    assert_non_null(strstr(text, "retail_broker_up 1\n"));
    assert_non_null(strstr(text, "retail_broker_workers{service=\"catalog\"} 10\n"));
    assert_non_null(strstr(text, "retail_broker_queue_depth{service=\"catalog\"} 20\n"));
    assert_non_null(strstr(text, "retail_broker_held{service=\"catalog\"} 30\n"));
    assert_non_null(
        strstr(text, "retail_broker_requests_total{service=\"catalog\",outcome=\"ok\"} 40\n"));
    assert_non_null(strstr(
        text, "retail_broker_requests_total{service=\"catalog\",outcome=\"unavailable\"} 50\n"));
    assert_non_null(
        strstr(text, "retail_broker_requests_total{service=\"catalog\",outcome=\"timeout\"} 60\n"));
    assert_non_null(strstr(text, "retail_broker_workers_lost_total{service=\"catalog\"} 70\n"));
    assert_non_null(strstr(text, "retail_broker_workers{service=\"odd\\\"name\"} 1\n"));
    assert_non_null(strstr(text, "retail_broker_held{service=\"odd\\\"name\"} 0\n"));
    /* one HELP and TYPE per family, though requests_total has 3 outcomes */
    const char *p = text;
    int types = 0;
    while ((p = strstr(p, "# TYPE retail_broker_requests_total counter"))) {
        types++;
        p++;
    }
    assert_int_equal(types, 1);
    free(text);

    text = metrics_render_broker(NULL, &len);
    assert_non_null(text);
    assert_non_null(strstr(text, "retail_broker_up 0\n"));
    assert_null(strstr(text, "retail_broker_workers{"));
    free(text);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_counts_by_route_and_status, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_statuses, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_unmatched, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_histogram, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_histogram_exact, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_in_flight, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_error_cap, s_setup, s_teardown),
        cmocka_unit_test(test_label_escaping),
        cmocka_unit_test_setup_teardown(test_exposition_valid, s_setup, s_teardown),
        cmocka_unit_test(test_lifecycle),
        cmocka_unit_test(test_many_routes_from_a_table),
        cmocka_unit_test(test_broker_series),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}

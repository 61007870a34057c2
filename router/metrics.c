/*  metrics.c - counting HTTP requests and writing them as Prometheus text.
 *
 *  Each route (plus a last slot for "unmatched") keeps its own counters:
 *  a small array of (status, count) pairs kept sorted by status, so a route
 *  that only ever answers 200 and 404 costs two pairs rather than a table
 *  of 500; and a histogram. The histogram stores per-bucket counts and the
 *  render makes them cumulative, because an observation then touches one
 *  bucket instead of up to seventeen. Bucket bounds are compared as whole
 *  microseconds, never as doubles, so a duration of exactly 1000 us lands
 *  in le="0.001" with no rounding doubt; the sum is kept in microseconds
 *  too and printed as an exact decimal number of seconds.
 *
 *  Error codes are matched by string against at most
 *  METRICS_MAX_ERROR_CODES copies; a linear scan is fine since the bridge
 *  only knows a dozen codes. Anything beyond the cap, a code literally
 *  named "other", or a code that could not be copied, is counted as
 *  code="other" so the output can never hold that series twice.
 *
 *  Label values are escaped when rendered (backslash, double quote and
 *  newline, as the 0.0.4 format requires). Rendering is a scrape every few
 *  seconds at most, so it builds the text in one growing buffer with
 *  vsnprintf rather than anything cleverer.
 */
#include "router/metrics.h"
#include "protocol/envelope.h"
#include "protocol/mdp.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Upper bounds of the histogram buckets, in microseconds and as written in
 * the le label. The +Inf bucket follows them. */
static const struct {
    int64_t us;
    const char *le;
} s_bounds[] = {
    {100, "0.0001"},  {250, "0.00025"}, {500, "0.0005"},  {1000, "0.001"},
    {2500, "0.0025"}, {5000, "0.005"},  {10000, "0.01"},  {25000, "0.025"},
    {50000, "0.05"},  {100000, "0.1"},  {250000, "0.25"}, {500000, "0.5"},
    {1000000, "1"},   {2500000, "2.5"}, {5000000, "5"},   {10000000, "10"},
};
#define N_BOUNDS (sizeof s_bounds / sizeof s_bounds[0])
#define N_BUCKETS (N_BOUNDS + 1)

/* A status outside 100..599 is stored as this and rendered as "other". */
#define STATUS_OTHER 0

typedef struct {
    int status;
    uint64_t count;
} status_count_t;

typedef struct {
    char *label;
    status_count_t *statuses; /* sorted by status */
    size_t n_statuses;
    size_t cap_statuses;
    uint64_t buckets[N_BUCKETS]; /* per bucket, not cumulative */
    uint64_t count;
    uint64_t sum_us;
} route_stats_t;

typedef struct {
    char *code;
    uint64_t count;
} error_count_t;

struct metrics_t {
    route_stats_t *routes; /* n_routes + 1; the last is "unmatched" */
    size_t n_routes;
    int64_t in_flight;
    error_count_t errors[METRICS_MAX_ERROR_CODES];
    size_t n_errors;
    uint64_t errors_other;
    int64_t start_ms; /* unix time of metrics_new, milliseconds */
};

static char *s_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *copy = malloc(n);
    if (copy)
        memcpy(copy, s, n);
    return copy;
}

metrics_t *metrics_new(const char *const *route_labels, size_t n_routes)
{
    if (n_routes > 0 && !route_labels)
        return NULL;
    if (n_routes >= SIZE_MAX / sizeof(route_stats_t))
        return NULL;
    metrics_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    /* The count is set first so that metrics_destroy() can free a table
     * that is only partly filled. */
    self->routes = calloc(n_routes + 1, sizeof *self->routes);
    if (!self->routes) {
        free(self);
        return NULL;
    }
    self->n_routes = n_routes;
    for (size_t i = 0; i <= n_routes; i++) {
        const char *label = i < n_routes ? route_labels[i] : "unmatched";
        if (!label || !(self->routes[i].label = s_strdup(label))) {
            metrics_destroy(&self);
            return NULL;
        }
    }
    struct timespec now;
    if (clock_gettime(CLOCK_REALTIME, &now) == 0)
        self->start_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    return self;
}

metrics_t *metrics_new_for_routes(const route_t *table, size_t n_routes)
{
    if (n_routes > 0 && !table)
        return NULL;
    if (n_routes >= SIZE_MAX / sizeof(char *))
        return NULL;
    /* Labels live only until metrics_new has copied them. */
    metrics_t *self = NULL;
    char **labels = calloc(n_routes ? n_routes : 1, sizeof *labels);
    if (!labels)
        return NULL;
    size_t made = 0;
    for (; made < n_routes; made++) {
        const route_t *r = &table[made];
        if (!r->method || !r->path)
            goto cleanup;
        size_t len = strlen(r->method) + 1 + strlen(r->path) + 1;
        labels[made] = malloc(len);
        if (!labels[made])
            goto cleanup;
        snprintf(labels[made], len, "%s %s", r->method, r->path);
    }
    self = metrics_new((const char *const *)labels, n_routes);
cleanup:
    for (size_t i = 0; i < made; i++)
        free(labels[i]);
    free(labels);
    return self;
}

void metrics_destroy(metrics_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    metrics_t *self = *self_p;
    if (self->routes) {
        for (size_t i = 0; i <= self->n_routes; i++) {
            free(self->routes[i].label);
            free(self->routes[i].statuses);
        }
        free(self->routes);
    }
    for (size_t i = 0; i < self->n_errors; i++)
        free(self->errors[i].code);
    free(self);
    *self_p = NULL;
}

void metrics_request_start(metrics_t *self)
{
    self->in_flight++;
}

/* Counts one response with this status on route r, inserting a pair in
 * order when the status is new. Drops the count if that insert cannot
 * grow the array: the caller cannot act on the failure, and the histogram
 * still counts the request. */
static void s_count_status(route_stats_t *r, int status)
{
    size_t i = 0;
    while (i < r->n_statuses && r->statuses[i].status < status)
        i++;
    if (i < r->n_statuses && r->statuses[i].status == status) {
        r->statuses[i].count++;
        return;
    }
    if (r->n_statuses == r->cap_statuses) {
        size_t cap = r->cap_statuses ? r->cap_statuses * 2 : 4;
        status_count_t *grown = realloc(r->statuses, cap * sizeof *grown);
        if (!grown)
            return;
        r->statuses = grown;
        r->cap_statuses = cap;
    }
    memmove(&r->statuses[i + 1], &r->statuses[i], (r->n_statuses - i) * sizeof *r->statuses);
    r->statuses[i] = (status_count_t){.status = status, .count = 1};
    r->n_statuses++;
}

static void s_count_error(metrics_t *self, const char *code)
{
    if (strcmp(code, "other") != 0) {
        for (size_t i = 0; i < self->n_errors; i++) {
            if (strcmp(self->errors[i].code, code) == 0) {
                self->errors[i].count++;
                return;
            }
        }
        if (self->n_errors < METRICS_MAX_ERROR_CODES) {
            char *copy = s_strdup(code);
            if (copy) {
                self->errors[self->n_errors++] = (error_count_t){.code = copy, .count = 1};
                return;
            }
        }
    }
    self->errors_other++;
}

void metrics_request_end(metrics_t *self, int route, int status, const char *error_code,
                         int64_t duration_us)
{
    self->in_flight--;
    route_stats_t *r = &self->routes[self->n_routes];
    if (route >= 0 && (size_t)route < self->n_routes)
        r = &self->routes[route];

    s_count_status(r, status >= 100 && status <= 599 ? status : STATUS_OTHER);

    if (duration_us < 0)
        duration_us = 0;
    size_t b = 0;
    while (b < N_BOUNDS && duration_us > s_bounds[b].us)
        b++;
    r->buckets[b]++;
    r->count++;
    /* Saturate rather than wrap: a wrapped sum would look like a sudden
     * drop in latency. */
    uint64_t d = (uint64_t)duration_us;
    r->sum_us = r->sum_us > UINT64_MAX - d ? UINT64_MAX : r->sum_us + d;

    if (error_code)
        s_count_error(self, error_code);
}

/* The text being rendered. After the first allocation failure every
 * append is a no-op, so the render checks once at the end. */
typedef struct {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} text_t;

static bool s_reserve(text_t *t, size_t extra)
{
    if (t->failed)
        return false;
    if (t->len + extra < t->cap)
        return true;
    size_t cap = t->cap ? t->cap : 4096;
    while (t->len + extra >= cap) {
        if (cap > SIZE_MAX / 2) {
            t->failed = true;
            return false;
        }
        cap *= 2;
    }
    char *grown = realloc(t->data, cap);
    if (!grown) {
        t->failed = true;
        return false;
    }
    t->data = grown;
    t->cap = cap;
    return true;
}

static void s_printf(text_t *t, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void s_printf(text_t *t, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    va_list again;
    va_copy(again, args);
    int n = vsnprintf(NULL, 0, format, args);
    va_end(args);
    if (n < 0)
        t->failed = true;
    else if (s_reserve(t, (size_t)n)) {
        vsnprintf(t->data + t->len, t->cap - t->len, format, again);
        t->len += (size_t)n;
    }
    va_end(again);
}

/* Appends name="value" with the value escaped as the format requires. */
static void s_label(text_t *t, const char *name, const char *value)
{
    s_printf(t, "%s=\"", name);
    for (const char *p = value; *p; p++) {
        if (!s_reserve(t, 2))
            return;
        if (*p == '\\' || *p == '"') {
            t->data[t->len++] = '\\';
            t->data[t->len++] = *p;
        } else if (*p == '\n') {
            t->data[t->len++] = '\\';
            t->data[t->len++] = 'n';
        } else
            t->data[t->len++] = *p;
    }
    s_printf(t, "\"");
}

/* The text made, NUL-terminated, or NULL (freed) when an append failed.
 * Every append reserved room for a NUL after it; an empty text cannot
 * happen since a header is always written. */
static char *s_text_finish(text_t *t, size_t *len)
{
    if (t->failed || !t->data) {
        free(t->data);
        return NULL;
    }
    t->data[t->len] = '\0';
    if (len)
        *len = t->len;
    return t->data;
}

static void s_header(text_t *t, const char *name, const char *type, const char *help)
{
    s_printf(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void s_render_requests(text_t *t, const metrics_t *self)
{
    s_header(t, "retail_http_requests_total", "counter",
             "HTTP requests answered, by route and status.");
    for (size_t i = 0; i <= self->n_routes; i++) {
        const route_stats_t *r = &self->routes[i];
        for (size_t j = 0; j < r->n_statuses; j++) {
            s_printf(t, "retail_http_requests_total{");
            s_label(t, "route", r->label);
            if (r->statuses[j].status == STATUS_OTHER)
                s_printf(t, ",status=\"other\"}");
            else
                s_printf(t, ",status=\"%d\"}", r->statuses[j].status);
            s_printf(t, " %" PRIu64 "\n", r->statuses[j].count);
        }
    }
}

static void s_render_durations(text_t *t, const metrics_t *self)
{
    static const char name[] = "retail_http_request_duration_seconds";
    s_header(t, name, "histogram", "Time from accepting an HTTP request to answering it.");
    for (size_t i = 0; i <= self->n_routes; i++) {
        const route_stats_t *r = &self->routes[i];
        if (r->count == 0)
            continue;
        uint64_t cumulative = 0;
        for (size_t b = 0; b < N_BUCKETS; b++) {
            cumulative += r->buckets[b];
            s_printf(t, "%s_bucket{", name);
            s_label(t, "route", r->label);
            s_printf(t, ",le=\"%s\"} %" PRIu64 "\n", b < N_BOUNDS ? s_bounds[b].le : "+Inf",
                     cumulative);
        }
        s_printf(t, "%s_sum{", name);
        s_label(t, "route", r->label);
        s_printf(t, "} %" PRIu64 ".%06" PRIu64 "\n", r->sum_us / 1000000, r->sum_us % 1000000);
        s_printf(t, "%s_count{", name);
        s_label(t, "route", r->label);
        s_printf(t, "} %" PRIu64 "\n", r->count);
    }
}

static void s_render_errors(text_t *t, const metrics_t *self)
{
    s_header(t, "retail_http_errors_total", "counter",
             "HTTP error responses, by the code in their error body.");
    for (size_t i = 0; i < self->n_errors; i++) {
        s_printf(t, "retail_http_errors_total{");
        s_label(t, "code", self->errors[i].code);
        s_printf(t, "} %" PRIu64 "\n", self->errors[i].count);
    }
    if (self->errors_other > 0)
        s_printf(t, "retail_http_errors_total{code=\"other\"} %" PRIu64 "\n", self->errors_other);
}

char *metrics_render(const metrics_t *self, size_t *len)
{
    text_t t = {0};
    s_header(&t, "retail_http_requests_in_flight", "gauge",
             "HTTP requests accepted and not yet answered.");
    s_printf(&t, "retail_http_requests_in_flight %" PRId64 "\n", self->in_flight);
    s_header(&t, "retail_process_start_time_seconds", "gauge",
             "Start time of the HTTP bridge since the unix epoch, in seconds.");
    s_printf(&t, "retail_process_start_time_seconds %" PRId64 ".%03d\n", self->start_ms / 1000,
             (int)(self->start_ms % 1000));
    s_render_requests(&t, self);
    s_render_errors(&t, self);
    s_render_durations(&t, self);
    return s_text_finish(&t, len);
}

/* The value of key in one mmi.services entry, or 0. */
static uint64_t s_entry_u64(const msgpack_object *entry, const char *key)
{
    const msgpack_object *v = mp_map_get(entry, key);
    return v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER ? v->via.u64 : 0;
}

/* One gauge or counter per service, from the entries' field key. */
static void s_render_broker_series(text_t *t, const msgpack_object *list, const char *name,
                                   const char *type, const char *help, const char *key,
                                   const char *outcome)
{
    if (!outcome || strcmp(outcome, "ok") == 0)
        s_header(t, name, type, help);
    for (uint32_t i = 0; i < list->via.array.size; i++) {
        const msgpack_object *entry = &list->via.array.ptr[i];
        const msgpack_object *service = mp_map_get(entry, "name");
        if (entry->type != MSGPACK_OBJECT_MAP || !service || service->type != MSGPACK_OBJECT_STR)
            continue;
        char label[MDP_SERVICE_MAX + 1];
        size_t n =
            service->via.str.size < MDP_SERVICE_MAX ? service->via.str.size : MDP_SERVICE_MAX;
        memcpy(label, service->via.str.ptr, n);
        label[n] = '\0';
        s_printf(t, "%s{", name);
        s_label(t, "service", label);
        if (outcome)
            s_printf(t, ",outcome=\"%s\"", outcome);
        s_printf(t, "} %" PRIu64 "\n", s_entry_u64(entry, key));
    }
}

char *metrics_render_broker(const msgpack_object *services, size_t *len)
{
    text_t t = {0};
    bool up = services && services->type == MSGPACK_OBJECT_ARRAY;
    s_header(&t, "retail_broker_up", "gauge",
             "1 when the broker answered this scrape (mmi.services), else 0.");
    s_printf(&t, "retail_broker_up %d\n", up ? 1 : 0);
    if (up) {
        s_render_broker_series(&t, services, "retail_broker_workers", "gauge",
                               "Live workers the broker has, by service.", "workers", NULL);
        s_render_broker_series(&t, services, "retail_broker_queue_depth", "gauge",
                               "Requests waiting for a worker, by service.", "queued", NULL);
        s_render_broker_series(&t, services, "retail_broker_held", "gauge",
                               "Requests given to workers and not yet answered by them.", "held",
                               NULL);
        static const char *const outcomes[] = {"ok", "unavailable", "timeout"};
        for (size_t k = 0; k < 3; k++)
            s_render_broker_series(&t, services, "retail_broker_requests_total", "counter",
                                   "Requests by outcome: ok (answered by a worker), "
                                   "unavailable or timeout (answered so by the broker).",
                                   outcomes[k], outcomes[k]);
        s_render_broker_series(&t, services, "retail_broker_workers_lost_total", "counter",
                               "Workers that expired, vanished or disconnected.", "workers_lost",
                               NULL);
    }
    return s_text_finish(&t, len);
}

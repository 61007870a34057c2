/*  settings.c - defaults, then a ZPL file, then environment variables.
 *
 *  Numbers are parsed strictly (whole string, in range) so that a typo in
 *  a config file stops the process with a message instead of running with
 *  a zero. Every setting, the shared ones here and each service's own, is
 *  a row of a table read by one loop (settings_read), so they all follow
 *  the same precedence and the same refusals.
 */
#include "protocol/settings.h"
#include "protocol/files.h"

#include <errno.h>

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <stdlib.h>

struct settings_source_t {
    zconfig_t *config; /* NULL: no file */
};

/* A configuration file is a few hundred bytes; anything near this is not one. */
#define SETTINGS_FILE_MAX (1024 * 1024)

settings_source_t *settings_source_new(const char *config_path, char *err, size_t errlen)
{
    settings_source_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (!config_path)
        config_path = getenv("RETAIL_CONFIG");
    if (config_path) {
        self->config = files_load_zpl(config_path, SETTINGS_FILE_MAX);
        if (!self->config) {
            snprintf(err, errlen, "cannot read config file %s: %s", config_path,
                     errno == EINVAL ? "not ZPL" : strerror(errno));
            free(self);
            return NULL;
        }
    }
    return self;
}

void settings_source_destroy(settings_source_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    zconfig_destroy(&(*self_p)->config);
    free(*self_p);
    *self_p = NULL;
}

static int s_set_int(int *out, const char *text, int min, int max, const char *what, char *err,
                     size_t errlen)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max) {
        snprintf(err, errlen, "%s must be an integer in %d..%d, got '%s'", what, min, max, text);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static int s_set_str(char *out, size_t size, const char *text, const char *what, char *err,
                     size_t errlen)
{
    if (strlen(text) == 0 || strlen(text) >= size) {
        snprintf(err, errlen, "%s is empty or too long", what);
        return -1;
    }
    snprintf(out, size, "%s", text);
    return 0;
}

/* The file's value at a ZPL path, or NULL. */
static const char *s_from_file(const settings_source_t *source, const char *zpl)
{
    return source && source->config && zpl ? zconfig_get(source->config, zpl, NULL) : NULL;
}

/* The variable's value, or NULL when it is unset or empty. */
static const char *s_from_env(const char *name)
{
    const char *value = name ? getenv(name) : NULL;
    return value && *value ? value : NULL;
}

int settings_read(const settings_source_t *source, const setting_t *table, size_t n, void *into,
                  char *err, size_t errlen)
{
    for (size_t i = 0; i < n; i++) {
        const setting_t *t = &table[i];
        /* lowest first: each value found replaces the one before */
        const char *names[4] = {t->old_zpl, t->zpl, t->old_env, t->env};
        const char *values[4] = {s_from_file(source, t->old_zpl), s_from_file(source, t->zpl),
                                 s_from_env(t->old_env), s_from_env(t->env)};
        for (int k = 0; k < 4; k++) {
            if (!values[k])
                continue;
            char *field = (char *)into + t->offset;
            int rc = t->type == SETTING_STR
                         ? s_set_str(field, t->size, values[k], names[k], err, errlen)
                         : s_set_int((int *)(void *)field, values[k], t->min, t->max, names[k], err,
                                     errlen);
            if (rc != 0)
                return -1;
        }
    }
    return 0;
}

void settings_derive(settings_t *s)
{
    snprintf(s->keys_dir, sizeof s->keys_dir, "%.*s/keys", (int)sizeof s->data_dir - 6,
             s->data_dir);
}

#define STR(zpl, env, field, size)                                                                 \
    {                                                                                              \
        zpl, env, SETTING_STR, offsetof(settings_t, field), size, 0, 0, NULL, NULL                 \
    }
#define INT(zpl, env, field, min, max)                                                             \
    {                                                                                              \
        zpl, env, SETTING_INT, offsetof(settings_t, field), 0, min, max, NULL, NULL                \
    }

/* data_dir leaves room for "/keys" so that keys_dir is never a truncated
 * path outside it (see settings_derive). */
static const setting_t s_table[] = {
    STR("retail/data_dir", "RETAIL_DATA_DIR", data_dir, SETTINGS_PATH_MAX - 5),
    STR("retail/broker/endpoint", "RETAIL_BROKER_ENDPOINT", broker_endpoint,
        sizeof((settings_t *)0)->broker_endpoint),
    INT("retail/http_port", "RETAIL_HTTP_PORT", http_port, 1, 65535),
    STR("retail/http_address", "RETAIL_HTTP_ADDRESS", http_address,
        sizeof((settings_t *)0)->http_address),
    INT("retail/http_timeout_ms", "RETAIL_HTTP_TIMEOUT_MS", http_timeout_ms, 10, 600000),
    STR("retail/tls_cert", "RETAIL_TLS_CERT", tls_cert, SETTINGS_PATH_MAX),
    STR("retail/tls_key", "RETAIL_TLS_KEY", tls_key, SETTINGS_PATH_MAX),
    INT("retail/access_log", "RETAIL_ACCESS_LOG", access_log, 0, 1),
    INT("retail/broker/heartbeat_ms", "RETAIL_HEARTBEAT_MS", heartbeat_ms, 10, 60000),
    INT("retail/broker/request_timeout_ms", "RETAIL_REQUEST_TIMEOUT_MS", request_timeout_ms, 10,
        600000),
    INT("retail/broker/queue_limit", "RETAIL_QUEUE_LIMIT", queue_limit, 1, 1000000),
    INT("retail/workers", "RETAIL_WORKERS", workers, 1, 256),
    INT("retail/worker_capacity", "RETAIL_WORKER_CAPACITY", worker_capacity, 1, 64),
    INT("retail/drain_ms", "RETAIL_DRAIN_MS", drain_ms, 0, 600000),
    STR("retail/events/endpoint", "RETAIL_EVENTS_ENDPOINT", events_endpoint,
        sizeof((settings_t *)0)->events_endpoint),
    STR("retail/events/publish_endpoint", "RETAIL_EVENTS_PUBLISH_ENDPOINT", events_publish_endpoint,
        sizeof((settings_t *)0)->events_publish_endpoint),
    INT("retail/events/keep_ms", "RETAIL_EVENTS_KEEP_MS", events_keep_ms, 0, INT_MAX),
    INT("retail/events/keep_count", "RETAIL_EVENTS_KEEP_COUNT", events_keep_count, 0, INT_MAX),
    INT("retail/events/outbox", "RETAIL_EVENTS_OUTBOX", events_outbox, 0, 1),
};

int settings_load_from(settings_t *s, const settings_source_t *source, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    snprintf(s->data_dir, sizeof s->data_dir, "./var");
    snprintf(s->broker_endpoint, sizeof s->broker_endpoint, "tcp://127.0.0.1:5555");
    s->http_port = 8080;
    snprintf(s->http_address, sizeof s->http_address, "127.0.0.1");
    s->http_timeout_ms = 5000;
    s->access_log = 1;
    s->heartbeat_ms = 1000;
    s->request_timeout_ms = 5000;
    s->queue_limit = 1024;
    s->workers = 4;
    s->worker_capacity = 4;
    s->drain_ms = 3000;
    snprintf(s->events_endpoint, sizeof s->events_endpoint, "tcp://127.0.0.1:5556");
    snprintf(s->events_publish_endpoint, sizeof s->events_publish_endpoint, "tcp://127.0.0.1:5557");
    s->events_keep_ms = 7 * 24 * 3600 * 1000; /* 604800000 */
    s->events_keep_count = 1000000;
    s->events_outbox = 1;
    int rc = settings_read(source, s_table, sizeof s_table / sizeof s_table[0], s, err, errlen);
    settings_derive(s);
    return rc;
}

int settings_load(settings_t *s, const char *config_path, char *err, size_t errlen)
{
    settings_source_t *source = settings_source_new(config_path, err, errlen);
    if (!source)
        return -1;
    int rc = settings_load_from(s, source, err, errlen);
    settings_source_destroy(&source);
    return rc;
}

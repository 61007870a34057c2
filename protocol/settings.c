/*  settings.c - defaults, then a ZPL file, then environment variables.
 *
 *  Numbers are parsed strictly (whole string, in range) so that a typo in
 *  a config file stops the process with a message instead of running with
 *  a zero.
 */
#include "protocol/settings.h"

#include <czmq.h>
#include <errno.h>
#include <stdlib.h>

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

void settings_derive(settings_t *s)
{
    snprintf(s->keys_dir, sizeof s->keys_dir, "%.*s/keys", (int)sizeof s->data_dir - 6,
             s->data_dir);
}

/* One setting: its ZPL path, its environment variable, where it goes. */
typedef struct {
    const char *zpl;
    const char *env;
    char *str;
    size_t str_size;
    int *num;
    int min, max;
} setting_t;

int settings_load(settings_t *s, const char *config_path, char *err, size_t errlen)
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

    /* data_dir leaves room for "/keys" so that keys_dir is never a
     * truncated path outside it (see settings_derive). */
    const setting_t table[] = {
        {"retail/data_dir", "RETAIL_DATA_DIR", s->data_dir, sizeof s->data_dir - 5, NULL, 0, 0},
        {"retail/broker/endpoint", "RETAIL_BROKER_ENDPOINT", s->broker_endpoint,
         sizeof s->broker_endpoint, NULL, 0, 0},
        {"retail/http_port", "RETAIL_HTTP_PORT", NULL, 0, &s->http_port, 1, 65535},
        {"retail/http_address", "RETAIL_HTTP_ADDRESS", s->http_address, sizeof s->http_address,
         NULL, 0, 0},
        {"retail/http_timeout_ms", "RETAIL_HTTP_TIMEOUT_MS", NULL, 0, &s->http_timeout_ms, 10,
         600000},
        {"retail/tls_cert", "RETAIL_TLS_CERT", s->tls_cert, sizeof s->tls_cert, NULL, 0, 0},
        {"retail/tls_key", "RETAIL_TLS_KEY", s->tls_key, sizeof s->tls_key, NULL, 0, 0},
        {"retail/access_log", "RETAIL_ACCESS_LOG", NULL, 0, &s->access_log, 0, 1},
        {"retail/broker/heartbeat_ms", "RETAIL_HEARTBEAT_MS", NULL, 0, &s->heartbeat_ms, 10, 60000},
        {"retail/broker/request_timeout_ms", "RETAIL_REQUEST_TIMEOUT_MS", NULL, 0,
         &s->request_timeout_ms, 10, 600000},
        {"retail/broker/queue_limit", "RETAIL_QUEUE_LIMIT", NULL, 0, &s->queue_limit, 1, 1000000},
        {"retail/workers", "RETAIL_WORKERS", NULL, 0, &s->workers, 1, 256},
        {"retail/pg_dsn", "RETAIL_PG_DSN", s->pg_dsn, sizeof s->pg_dsn, NULL, 0, 0},
        {"retail/admin_email", "RETAIL_ADMIN_EMAIL", s->admin_email, sizeof s->admin_email, NULL, 0,
         0},
        {"retail/admin_password", "RETAIL_ADMIN_PASSWORD", s->admin_password,
         sizeof s->admin_password, NULL, 0, 0},
        {"retail/worker_capacity", "RETAIL_WORKER_CAPACITY", NULL, 0, &s->worker_capacity, 1, 64},
        {"retail/drain_ms", "RETAIL_DRAIN_MS", NULL, 0, &s->drain_ms, 0, 600000},
    };
    const size_t n = sizeof table / sizeof table[0];

    if (!config_path)
        config_path = getenv("RETAIL_CONFIG");
    zconfig_t *config = NULL;
    if (config_path) {
        config = zconfig_load(config_path);
        if (!config) {
            snprintf(err, errlen, "cannot read config file %s", config_path);
            return -1;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const setting_t *t = &table[i];
        const char *from_file = config ? zconfig_get(config, t->zpl, NULL) : NULL;
        const char *from_env = getenv(t->env);
        const char *sources[2] = {from_file, from_env && *from_env ? from_env : NULL};
        for (int k = 0; k < 2 && rc == 0; k++) {
            if (!sources[k])
                continue;
            const char *what = k == 0 ? t->zpl : t->env;
            rc = t->str ? s_set_str(t->str, t->str_size, sources[k], what, err, errlen)
                        : s_set_int(t->num, sources[k], t->min, t->max, what, err, errlen);
        }
    }
    zconfig_destroy(&config);
    settings_derive(s);
    return rc;
}

/*  service.c - runs one service definition (see service.h).
 *
 *  Each step owns what it made until the service does: a failed step
 *  undoes the ones before it through service_stop, which copes with a
 *  service started only in part, so there is one way down whatever the
 *  way up reached.
 */
#include "actors/service.h"

#include <sodium.h>

struct service_t {
    const service_def_t *def;
    void *settings; /* settings_size bytes, or NULL */
    void *shared;
    outbox_t *outbox; /* the shared state's */
    relay_stats_t *relay_stats;
    zactor_t *relay;
    zactor_t *background;
    pool_t *pool;
    int workers;
};

/* The test hook of relay.h, for test_events_crash: only with
 * RETAIL_TEST_OPS=1. */
static bool s_crash_before_publish(void)
{
    const char *v = getenv("RETAIL_EVENTS_CRASH_BEFORE_PUBLISH");
    return v && streq(v, "1");
}

outbox_t *service_outbox_new(const service_env_t *env, const char *name, kv_t *kv, int events_db,
                             int meta_db, char *err, size_t errlen)
{
    outbox_config_t config = {
        .source = name,
        .keep_ms = env->common->events_keep_ms,
        .keep_count = env->common->events_keep_count,
        .off = env->common->events_outbox == 0,
    };
    return outbox_new(kv, events_db, meta_db, &config, err, errlen);
}

service_t *service_start(const service_def_t *def, const service_env_t *env, char *err,
                         size_t errlen)
{
    service_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "%s: out of memory", def->name);
        return NULL;
    }
    self->def = def;
    char why[256] = "";

    if (def->settings_size > 0) {
        self->settings = calloc(1, def->settings_size);
        if (!self->settings) {
            snprintf(err, errlen, "%s: out of memory", def->name);
            goto failed;
        }
        if (def->settings_defaults)
            def->settings_defaults(self->settings);
        if (settings_read(env->source, def->settings, def->n_settings, self->settings, why,
                          sizeof why) != 0) {
            snprintf(err, errlen, "%s settings: %s", def->name, why);
            goto failed;
        }
    }
    if (def->shared_new) {
        self->shared = def->shared_new(env, self->settings, why, sizeof why);
        if (!self->shared) {
            snprintf(err, errlen, "%s: %s", def->name, why);
            goto failed;
        }
    }
    self->outbox = def->outbox && self->shared ? def->outbox(self->shared) : NULL;
    if (self->outbox && env->events_endpoint) {
        self->relay_stats = relay_stats_new();
        char marker[SETTINGS_PATH_MAX + 32];
        snprintf(marker, sizeof marker, "%s/events-crashed", env->common->data_dir);
        relay_config_t rc = {
            .outbox = self->outbox,
            .endpoint = env->events_endpoint,
            .cert = env->events_cert,
            .server_key = env->events_server_key,
            .crash_marker = env->test_ops && s_crash_before_publish() ? marker : NULL,
            .stats = self->relay_stats,
            .verbose = env->verbose,
        };
        self->relay = self->relay_stats ? relay_new(&rc) : NULL;
        if (!self->relay) {
            snprintf(err, errlen, "%s: its event relay could not start (to %s)", def->name,
                     env->events_endpoint);
            goto failed;
        }
    }
    if (def->background_new) {
        self->background = def->background_new(env, self->settings, self->shared, why, sizeof why);
        if (!self->background) {
            snprintf(err, errlen, "%s background actor: %s", def->name, why);
            goto failed;
        }
    }
    worker_config_t wc = {
        .service = def->name,
        .ops = def->ops(env->test_ops),
        .endpoint = env->broker_endpoint,
        .cert = env->cert,
        .server_key = env->server_key,
        .heartbeat_ms = env->common->heartbeat_ms,
        .capacity = def->capacity ? def->capacity : env->common->worker_capacity,
        .state_new = def->state_new,
        .state_destroy = def->state_destroy,
        .shared = self->shared,
        .verbose = env->verbose,
    };
    self->workers =
        env->common->workers + (def->extra_workers ? def->extra_workers(self->shared) : 0);
    self->pool = pool_new(&wc, self->workers);
    if (!self->pool) {
        snprintf(err, errlen, "%s: the pool of %d workers could not start", def->name,
                 self->workers);
        goto failed;
    }
    return self;

failed:
    service_stop(&self);
    return NULL;
}

void service_stop(service_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    service_t *self = *self_p;
    const service_def_t *def = self->def;
    pool_destroy(&self->pool);
    if (self->background) {
        if (def->background_destroy)
            def->background_destroy(&self->background);
        else
            zactor_destroy(&self->background);
    }
    /* after every writer, so that it publishes all they committed */
    relay_destroy(&self->relay);
    relay_stats_destroy(&self->relay_stats);
    if (self->shared)
        def->shared_destroy(&self->shared);
    if (self->settings) {
        sodium_memzero(self->settings, def->settings_size);
        free(self->settings);
    }
    free(self);
    *self_p = NULL;
}

const service_def_t *service_def(const service_t *self)
{
    return self->def;
}

outbox_t *service_outbox(const service_t *self)
{
    return self->outbox;
}

relay_stats_t *service_relay_stats(const service_t *self)
{
    return self->relay_stats;
}

const pool_t *service_pool(const service_t *self)
{
    return self->pool;
}

int service_workers(const service_t *self)
{
    return self->workers;
}

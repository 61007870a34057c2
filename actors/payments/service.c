/*  service.c - the definition of the `payments` service (actors/service.h).
 *
 *  Its settings are payments_settings_t (settings.h). Its shared state is
 *  the payment store under the process's data directory (and its keys in
 *  the keys directory); its background actor runs the gateway (gateway.h),
 *  bound to an in-process endpoint that the workers ask, and tells orders
 *  of the refunds in full they have not heard of (followup.h). Its OpenAPI part
 *  is openapi.json beside this file. The money-moving ops (charge, void)
 *  have no route: they are for the orders service, over MDP.
 *
 *  Capacity 64 per worker: a charge waits on the gateway (tens of ms), and
 *  while it waits its worker serves others, so a few workers hold many
 *  charges. Extra workers: every store write waits for its disk flush,
 *  and writes from several workers share one (group commit).
 *
 *  Its outbox (storage/outbox.h) is in the store's environment, given to
 *  the store, which appends the payment.* events inside its writes; the
 *  relay that publishes them is service.c's (the `outbox` hook).
 */
#include "actors/payments/followup.h"
#include "actors/payments/payments.h"
#include "actors/payments/payments_impl.h"

#include <stddef.h>

#define PAYMENTS_CAPACITY 64
#define PAYMENTS_WRITE_WORKERS 2

extern const char actors_payments_openapi_json[];

#define S(field) offsetof(payments_settings_t, field)
static const setting_t s_settings[] = {
    {"retail/payments/gateway", "RETAIL_PAYMENTS_GATEWAY", SETTING_STR, S(gateway),
     sizeof((payments_settings_t *)0)->gateway, 0, 0, NULL, NULL},
    {"retail/payments/gateway_latency_ms", "RETAIL_PAYMENTS_GATEWAY_LATENCY_MS", SETTING_INT,
     S(gateway_latency_ms), 0, 0, 60000, NULL, NULL},
    {"retail/payments/gateway_fail_percent", "RETAIL_PAYMENTS_GATEWAY_FAIL_PERCENT", SETTING_INT,
     S(gateway_fail_percent), 0, 0, 100, NULL, NULL},
    {"retail/payments/gateway_drop_percent", "RETAIL_PAYMENTS_GATEWAY_DROP_PERCENT", SETTING_INT,
     S(gateway_drop_percent), 0, 0, 100, NULL, NULL},
    {"retail/payments/gateway_timeout_ms", "RETAIL_PAYMENTS_GATEWAY_TIMEOUT_MS", SETTING_INT,
     S(gateway_timeout_ms), 0, 10, 60000, NULL, NULL},
    {"retail/payments/gateway_tries", "RETAIL_PAYMENTS_GATEWAY_TRIES", SETTING_INT,
     S(gateway_tries), 0, 1, 10, NULL, NULL},
    {"retail/payments/budget_ms", "RETAIL_PAYMENTS_BUDGET_MS", SETTING_INT, S(budget_ms), 0, 10,
     600000, NULL, NULL},
};
#undef S

/* clang-format off */
static const route_t s_routes[] = {
    /* method  path                          service     op                ok   query  headers body  local */
    {"GET",    "/v1/payments",               "payments", "payment.list",   200,
     "order_id,status,from,to,limit:int,cursor", NULL, false, LOCAL_NONE},
    {"GET",    "/v1/payments/log/verify",    "payments", "log.verify",     200, "head", NULL, false, LOCAL_NONE},
    {"GET",    "/v1/payments/{id}",          "payments", "payment.get",    200, NULL, NULL, false, LOCAL_NONE},
    {"POST",   "/v1/payments/{id}/refund",   "payments", "payment.refund", 200, NULL,
     "Idempotency-Key>idempotency_key", true, LOCAL_NONE},
};
/* clang-format on */

static void s_defaults(void *settings)
{
    payments_settings_t *s = settings;
    snprintf(s->gateway, sizeof s->gateway, "sim");
    s->gateway_timeout_ms = 1000;
    s->gateway_tries = 3;
    s->budget_ms = 4000;
}

static void s_running_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_shared_destroy(void **shared);

static void *s_shared_new(const service_env_t *env, const void *settings, char *err, size_t errlen)
{
    payments_shared_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->settings = *(const payments_settings_t *)settings;
    snprintf(self->public_pem, sizeof self->public_pem, "%s/jwt.pub.pem", env->common->keys_dir);
    /* one payments service per process: the endpoint is the process's */
    snprintf(self->gateway_endpoint, sizeof self->gateway_endpoint,
             "inproc://retail-payments-gateway");
    self->running = zhashx_new();
    if (!self->running || pthread_mutex_init(&self->running_lock, NULL) != 0) {
        zhashx_destroy(&self->running);
        free(self);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    zhashx_set_destructor(self->running, s_running_free);
    self->store =
        payment_store_shared_new(env->common->data_dir, env->common->keys_dir, err, errlen);
    if (!self->store) {
        zhashx_destroy(&self->running);
        pthread_mutex_destroy(&self->running_lock);
        free(self);
        return NULL;
    }
    self->outbox =
        service_outbox_new(env, "payments", payment_store_shared_kv(self->store),
                           PAYMENT_STORE_DB_OUTBOX, PAYMENT_STORE_DB_OUTBOX_META, err, errlen);
    if (!self->outbox) {
        void *shared = self;
        s_shared_destroy(&shared);
        return NULL;
    }
    payment_store_shared_set_outbox(self->store, self->outbox);
    return self;
}

static void s_shared_destroy(void **shared)
{
    payments_shared_t *self = *shared;
    if (!self)
        return;
    payment_store_shared_destroy(&self->store);
    /* after the store that borrows it; the store closes the environment,
     * which outbox_destroy does not touch */
    outbox_destroy(&self->outbox);
    zhashx_destroy(&self->running);
    pthread_mutex_destroy(&self->running_lock);
    free(self);
    *shared = NULL;
}

static outbox_t *s_outbox(void *shared)
{
    return ((payments_shared_t *)shared)->outbox;
}

static zactor_t *s_background_new(const service_env_t *env, const void *settings, void *shared,
                                  char *err, size_t errlen)
{
    const payments_settings_t *own = settings;
    payments_shared_t *self = shared;
    gateway_config_t config = {
        .kind = own->gateway,
        .data_dir = env->common->data_dir,
        .endpoint = self->gateway_endpoint,
        .sim = {.latency_ms = own->gateway_latency_ms,
                .fail_percent = own->gateway_fail_percent,
                .drop_percent = own->gateway_drop_percent},
    };
    return followup_new(env, &config, self, err, errlen);
}

static void s_background_destroy(zactor_t **background)
{
    followup_destroy(background);
}

static int s_extra_workers(void *shared)
{
    (void)shared;
    return PAYMENTS_WRITE_WORKERS;
}

const service_def_t payments_service = {
    .name = "payments",
    .ops = payments_ops,
    .capacity = PAYMENTS_CAPACITY,
    .routes = s_routes,
    .n_routes = sizeof s_routes / sizeof s_routes[0],
    .openapi = actors_payments_openapi_json,
    .settings = s_settings,
    .n_settings = sizeof s_settings / sizeof s_settings[0],
    .settings_size = sizeof(payments_settings_t),
    .settings_defaults = s_defaults,
    .shared_new = s_shared_new,
    .shared_destroy = s_shared_destroy,
    .state_new = payments_state_new,
    .state_destroy = payments_state_destroy,
    .extra_workers = s_extra_workers,
    .background_new = s_background_new,
    .background_destroy = s_background_destroy,
    .outbox = s_outbox,
};

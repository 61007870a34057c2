/*  service.c - the definition of the `orders` service (actors/service.h).
 *
 *  Its settings are orders_settings_t (settings.h). Its shared state is
 *  the orders environment under the process's data directory
 *  (data_dir/orders: carts, orders, idempotency keys; orders_env.h) with
 *  its two stores; each worker has store handles and a token verifier.
 *  Its background actor is recovery (recovery.c). Its OpenAPI part is
 *  openapi.json beside this file, compiled in by the Makefile as
 *  actors_orders_openapi_json.
 *
 *  Its outbox (storage/outbox.h) is in the same environment, given to the
 *  order store, which appends the order.* events inside its writes; the
 *  relay that publishes them is service.c's (the `outbox` hook).
 *
 *  It calls the catalog and payments, so actors/services.c lists it after
 *  both.
 */
#include "actors/orders/orders.h"
#include "actors/orders/orders_impl.h"
#include "actors/events_since.h"
#include "actors/orders/recovery.h"
#include "storage/orders/orders_env.h"

#include <sodium.h>

extern const char actors_orders_openapi_json[];

#define S(field) offsetof(orders_settings_t, field)
static const setting_t s_settings[] = {
    {"retail/orders/lease_ms", "RETAIL_ORDERS_LEASE_MS", SETTING_INT, S(lease_ms), 0, 1000, 3600000,
     NULL, NULL},
    {"retail/orders/hold_ms", "RETAIL_ORDERS_HOLD_MS", SETTING_INT, S(hold_ms), 0, 1000, 86400000,
     NULL, NULL},
    {"retail/orders/recover_every_ms", "RETAIL_ORDERS_RECOVER_EVERY_MS", SETTING_INT,
     S(recover_every_ms), 0, 10, 600000, NULL, NULL},
    {"retail/orders/crash_at", "RETAIL_ORDERS_CRASH_AT", SETTING_STR, S(crash_at),
     sizeof((orders_settings_t *)0)->crash_at, 0, 0, NULL, NULL},
};
#undef S

static void s_defaults(void *settings)
{
    orders_settings_t *s = settings;
    s->lease_ms = 15000;
    s->hold_ms = 600000;
    s->recover_every_ms = 1000;
}

/* clang-format off */
static const route_t s_routes[] = {
    /* method  path                           service   op                  ok   query headers body   local */
    {"GET",    "/v1/cart",                    "orders", "cart.get",         200, NULL, NULL, false, LOCAL_NONE},
    {"DELETE", "/v1/cart",                    "orders", "cart.clear",       204, NULL, NULL, false, LOCAL_NONE},
    {"PUT",    "/v1/cart/items/{product_id}", "orders", "cart.set_item",    200, NULL, NULL, true,  LOCAL_NONE},
    {"DELETE", "/v1/cart/items/{product_id}", "orders", "cart.remove_item", 200, NULL, NULL, false, LOCAL_NONE},
    {"POST",   "/v1/cart/checkout",           "orders", "cart.checkout",    201, NULL, "Idempotency-Key>idempotency_key", true, LOCAL_NONE},
    {"POST",   "/v1/orders",                  "orders", "order.create",     201, NULL, "Idempotency-Key>idempotency_key", true, LOCAL_NONE},
    {"GET",    "/v1/orders",                  "orders", "order.list",       200, "status,user_id,limit:int,cursor", NULL, false, LOCAL_NONE},
    {"GET",    "/v1/orders/{id}",             "orders", "order.get",        200, NULL, NULL, false, LOCAL_NONE},
    {"POST",   "/v1/orders/{id}/cancel",      "orders", "order.cancel",     200, NULL, NULL, false, LOCAL_NONE},
    {"PATCH",  "/v1/orders/{id}/status",      "orders", "order.set_status", 200, NULL, NULL, true,  LOCAL_NONE},
};
/* clang-format on */

static void s_events_since(call_t *call, void *state)
{
    events_since_reply(call, ((orders_state_t *)state)->shared->outbox);
}

static const worker_op_t s_ops[] = {
    {"cart.get", orders_cart_get},
    {"cart.set_item", orders_cart_set_item},
    {"cart.remove_item", orders_cart_remove_item},
    {"cart.clear", orders_cart_clear},
    {"cart.checkout", orders_cart_checkout},
    {"order.create", orders_order_create},
    {"order.recover", orders_order_recover},
    {"order.get", orders_order_get},
    {"order.list", orders_order_list},
    {"order.cancel", orders_order_cancel},
    {"order.set_status", orders_order_set_status},
    {"order.payment_refunded", orders_order_payment_refunded},
    {"ops.check", orders_ops_check},
    {"events.since", s_events_since},
    {NULL, NULL},
};

static const worker_op_t *s_ops_of(bool with_test_ops)
{
    (void)with_test_ops;
    return s_ops;
}

static void s_shared_destroy_impl(void **shared)
{
    orders_shared_t *self = *shared;
    if (!self)
        return;
    order_store_shared_destroy(&self->orders);
    cart_store_shared_destroy(&self->carts);
    /* after the store that borrows it, before the environment it is in */
    outbox_destroy(&self->outbox);
    kv_close(&self->env);
    free(self);
    *shared = NULL;
}

static void *s_shared_new(const service_env_t *env, const void *settings, char *err, size_t errlen)
{
    orders_shared_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->settings = *(const orders_settings_t *)settings;
    self->test_ops = env->test_ops;
    self->crash_at = -1;
    if (env->test_ops && self->settings.crash_at[0]) {
        for (int step = 0; step < STEP_COUNT; step++)
            if (streq(order_step_name(step), self->settings.crash_at))
                self->crash_at = step;
        if (self->crash_at < 0 && streq(self->settings.crash_at, "paid"))
            self->crash_at = STEP_COUNT; /* after the final write */
    }
    snprintf(self->public_pem, sizeof self->public_pem, "%s/jwt.pub.pem", env->common->keys_dir);
    snprintf(self->crash_marker, sizeof self->crash_marker, "%s/orders-crashed",
             env->common->data_dir);
    uint8_t instance[4];
    randombytes_buf(instance, sizeof instance);
    sodium_bin2hex(self->instance, sizeof self->instance, instance, sizeof instance);
    self->env = orders_env_open(env->common->data_dir, err, errlen);
    if (!self->env)
        goto failed;
    self->carts = cart_store_shared_new(self->env, err, errlen);
    if (!self->carts)
        goto failed;
    self->orders = order_store_shared_new(self->env, err, errlen);
    if (!self->orders)
        goto failed;
    self->outbox = service_outbox_new(env, "orders", self->env, ORDERS_DB_OUTBOX,
                                      ORDERS_DB_OUTBOX_META, err, errlen);
    if (!self->outbox)
        goto failed;
    order_store_shared_set_outbox(self->orders, self->outbox);
    return self;
failed:;
    void *shared = self;
    s_shared_destroy_impl(&shared);
    return NULL;
}

static void s_shared_destroy(void **shared)
{
    s_shared_destroy_impl(shared);
}

static outbox_t *s_outbox(void *shared)
{
    return ((orders_shared_t *)shared)->outbox;
}

static void s_state_destroy(void **state)
{
    if (!state || !*state)
        return;
    orders_state_t *self = *state;
    cart_store_close(&self->carts);
    order_store_close(&self->orders);
    auth_verifier_destroy(&self->verifier);
    free(self->scratch);
    free(self);
    *state = NULL;
}

static void *s_state_new(void *shared_ptr)
{
    orders_shared_t *shared = shared_ptr;
    orders_state_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = shared;
    self->carts = cart_store_open(shared->carts);
    self->orders = order_store_open(shared->orders);
    self->scratch = calloc(1, sizeof *self->scratch);
    self->verifier = auth_verifier_new(shared->public_pem, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    if (!self->carts || !self->orders || !self->scratch || !self->verifier) {
        void *state = self;
        s_state_destroy(&state);
        return NULL;
    }
    return self;
}

static zactor_t *s_background_new(const service_env_t *env, const void *settings, void *shared,
                                  char *err, size_t errlen)
{
    (void)settings;
    return recovery_new(env, shared, err, errlen);
}

/* Requests a worker holds at once: a checkout spends nearly all its time
 * waiting on the catalog and payments, so a worker holds many; its own
 * work is a few durable writes that share commits (group commit). */
#define ORDERS_CAPACITY 64

const service_def_t orders_service = {
    .name = "orders",
    .capacity = ORDERS_CAPACITY,
    .ops = s_ops_of,
    .routes = s_routes,
    .n_routes = sizeof s_routes / sizeof s_routes[0],
    .openapi = actors_orders_openapi_json,
    .settings = s_settings,
    .n_settings = sizeof s_settings / sizeof s_settings[0],
    .settings_size = sizeof(orders_settings_t),
    .settings_defaults = s_defaults,
    .shared_new = s_shared_new,
    .shared_destroy = s_shared_destroy,
    .state_new = s_state_new,
    .state_destroy = s_state_destroy,
    .background_new = s_background_new,
    .outbox = s_outbox,
};

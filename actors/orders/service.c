/*  service.c - the definition of the `orders` service (actors/service.h).
 *
 *  Its shared state is the orders environment under the process's data
 *  directory (data_dir/orders: the carts now, the orders later); each
 *  worker has a store handle and a token verifier. It has no settings of
 *  its own yet. Its OpenAPI part is openapi.json beside this file,
 *  compiled in by the Makefile as actors_orders_openapi_json.
 *
 *  It calls the catalog, so actors/services.c lists it after the catalog.
 */
#include "actors/orders/orders.h"
#include "actors/orders/orders_impl.h"

extern const char actors_orders_openapi_json[];

/* clang-format off */
static const route_t s_routes[] = {
    /* method  path                           service   op                  ok   query headers body   local */
    {"GET",    "/v1/cart",                    "orders", "cart.get",         200, NULL, NULL, false, LOCAL_NONE},
    {"DELETE", "/v1/cart",                    "orders", "cart.clear",       204, NULL, NULL, false, LOCAL_NONE},
    {"PUT",    "/v1/cart/items/{product_id}", "orders", "cart.set_item",    200, NULL, NULL, true,  LOCAL_NONE},
    {"DELETE", "/v1/cart/items/{product_id}", "orders", "cart.remove_item", 200, NULL, NULL, false, LOCAL_NONE},
};
/* clang-format on */

static const worker_op_t s_ops[] = {
    {"cart.get", orders_cart_get},
    {"cart.set_item", orders_cart_set_item},
    {"cart.remove_item", orders_cart_remove_item},
    {"cart.clear", orders_cart_clear},
    {NULL, NULL},
};

static const worker_op_t *s_ops_of(bool with_test_ops)
{
    (void)with_test_ops;
    return s_ops;
}

static void *s_shared_new(const service_env_t *env, const void *settings, char *err, size_t errlen)
{
    (void)settings;
    orders_shared_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    snprintf(self->public_pem, sizeof self->public_pem, "%s/jwt.pub.pem", env->common->keys_dir);
    self->carts = cart_store_shared_new(env->common->data_dir, err, errlen);
    if (!self->carts) {
        free(self);
        return NULL;
    }
    return self;
}

static void s_shared_destroy(void **shared)
{
    orders_shared_t *self = *shared;
    if (!self)
        return;
    cart_store_shared_destroy(&self->carts);
    free(self);
    *shared = NULL;
}

static void s_state_destroy(void **state)
{
    if (!state || !*state)
        return;
    orders_state_t *self = *state;
    cart_store_close(&self->carts);
    auth_verifier_destroy(&self->verifier);
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
    self->verifier = auth_verifier_new(shared->public_pem, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    if (!self->carts || !self->verifier) {
        void *state = self;
        s_state_destroy(&state);
        return NULL;
    }
    return self;
}

const service_def_t orders_service = {
    .name = "orders",
    .ops = s_ops_of,
    .routes = s_routes,
    .n_routes = sizeof s_routes / sizeof s_routes[0],
    .openapi = actors_orders_openapi_json,
    .shared_new = s_shared_new,
    .shared_destroy = s_shared_destroy,
    .state_new = s_state_new,
    .state_destroy = s_state_destroy,
};

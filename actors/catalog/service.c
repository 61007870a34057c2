/*  service.c - the definition of the `catalog` service (actors/service.h).
 *
 *  Its shared state is the catalog environment under the process's data
 *  directory, with its outbox; its settings are stock.low's threshold
 *  and the size limit of its map (settings.h). A worker holds up to
 *  CATALOG_CAPACITY requests (the stock ops wait for their writes without
 *  blocking it). Its OpenAPI part is
 *  openapi.json beside this file, compiled in by the Makefile as
 *  actors_catalog_openapi_json. The stock ops (stock.reserve and the
 *  rest) have no route: they are for the orders service, over MDP.
 */
#include "actors/catalog/catalog.h"

#include <stddef.h>

extern const char actors_catalog_openapi_json[];

#define S(field) offsetof(catalog_settings_t, field)
static const setting_t s_settings[] = {
    {"retail/catalog/stock_low", "RETAIL_CATALOG_STOCK_LOW", SETTING_INT, S(stock_low), 0, 0,
     CATALOG_STOCK_LOW_MAX, NULL, NULL},
    {"retail/catalog/map_mb", "RETAIL_CATALOG_MAP_MB", SETTING_INT, S(map_mb), 0, 1,
     CATALOG_MAP_MB_MAX, NULL, NULL},
};
#undef S

static void s_defaults(void *settings)
{
    catalog_settings_t *s = settings;
    s->stock_low = CATALOG_STOCK_LOW_DEFAULT;
    s->map_mb = CATALOG_MAP_MB_DEFAULT;
}

/* clang-format off */
static const route_t s_routes[] = {
    /* method  path                      service    op                  ok   query  headers body  local */
    {"GET",    "/v1/categories",         "catalog", "category.list",    200, "limit:int,cursor", NULL, false, LOCAL_NONE},
    {"POST",   "/v1/categories",         "catalog", "category.create",  201, NULL, NULL, true,  LOCAL_NONE},
    {"PATCH",  "/v1/categories/{id}",    "catalog", "category.update",  200, NULL, NULL, true,  LOCAL_NONE},
    {"DELETE", "/v1/categories/{id}",    "catalog", "category.delete",  204, NULL, NULL, false, LOCAL_NONE},
    {"POST",   "/v1/products",           "catalog", "product.create",   201, NULL, NULL, true,  LOCAL_NONE},
    {"GET",    "/v1/products",           "catalog", "product.search",   200,
     "q,category,min_price:int,max_price:int,in_stock:bool,sort,limit:int,cursor", NULL, false, LOCAL_NONE},
    {"GET",    "/v1/products/{id}",      "catalog", "product.get",      200, NULL, NULL, false, LOCAL_NONE},
    {"PATCH",  "/v1/products/{id}",      "catalog", "product.update",   200, NULL, "If-Match>if_match", true, LOCAL_NONE},
    {"DELETE", "/v1/products/{id}",      "catalog", "product.delete",   204, NULL, NULL, false, LOCAL_NONE},
    {"PUT",    "/v1/products/{id}/stock", "catalog", "product.set_stock", 200, NULL, NULL, true, LOCAL_NONE},
};
/* clang-format on */

static void *s_shared_new(const service_env_t *env, const void *settings, char *err, size_t errlen)
{
    return catalog_shared_new(env, settings, err, errlen);
}

static void s_shared_destroy(void **shared)
{
    catalog_shared_destroy((catalog_shared_t **)shared);
}

static int s_extra_workers(void *shared)
{
    /* A worker waiting for the disk flush of a product or category write
     * uses no CPU, and every write that waits joins the next commit
     * (group commit): more workers, more of those writes per flush
     * (docs/BENCHMARKS.md, bench-catalog-writes). The stock ops do not
     * block a worker (call_write), so they need no extra workers. */
    (void)shared;
    return CATALOG_WRITE_WORKERS;
}

const service_def_t catalog_service = {
    .name = "catalog",
    .capacity = CATALOG_CAPACITY,
    .ops = catalog_ops,
    .routes = s_routes,
    .n_routes = sizeof s_routes / sizeof s_routes[0],
    .openapi = actors_catalog_openapi_json,
    .settings = s_settings,
    .n_settings = sizeof s_settings / sizeof s_settings[0],
    .settings_size = sizeof(catalog_settings_t),
    .settings_defaults = s_defaults,
    .shared_new = s_shared_new,
    .shared_destroy = s_shared_destroy,
    .state_new = catalog_state_new,
    .state_destroy = catalog_state_destroy,
    .extra_workers = s_extra_workers,
    .outbox = catalog_shared_outbox,
};

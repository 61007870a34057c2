/*  service.c - the definition of the `sys` service (actors/service.h).
 *
 *  No state, no settings: its workers answer from the request alone. Its
 *  OpenAPI part is openapi.json beside this file, compiled in by the
 *  Makefile as actors_sys_openapi_json.
 */
#include "actors/sys/sys.h"

extern const char actors_sys_openapi_json[];

/* clang-format off */
static const route_t s_routes[] = {
    /* method  path           service op      ok   query     headers body  local */
    {"GET",  "/v1/sys/ping",  "sys", "ping",  200, NULL,     NULL, false, LOCAL_NONE},
    {"POST", "/v1/sys/echo",  "sys", "echo",  200, NULL,     NULL, true,  LOCAL_NONE},
    {"GET",  "/v1/sys/sleep", "sys", "sleep", 200, "ms:int", NULL, false, LOCAL_NONE},
};
/* clang-format on */

const service_def_t sys_service = {
    .name = "sys",
    .ops = sys_ops,
    .routes = s_routes,
    .n_routes = sizeof s_routes / sizeof s_routes[0],
    .openapi = actors_sys_openapi_json,
};

/*  routes.c - the route table and a matcher over path segments.
 *
 *  Matching walks the table comparing segment by segment; "{name}" matches
 *  any one non-empty segment. The table is small, so a linear scan costs
 *  less than the JSON decode of the smallest body. A path that matches a
 *  template under another method is told apart (405, not 404).
 */
#include "router/routes.h"

#include <stdio.h>
#include <string.h>

/* clang-format off */
static const route_t s_routes[] = {
    /* method  path               service op      ok   query  headers body  local */
    {"GET", "/healthz",           NULL,  NULL,   200, NULL, NULL, false, LOCAL_HEALTHZ},
    {"GET", "/readyz",            NULL,  NULL,   200, NULL, NULL, false, LOCAL_READYZ},
    {"GET", "/metrics",           NULL,  NULL,   200, NULL, NULL, false, LOCAL_METRICS},
    {"GET", "/openapi.json",      NULL,  NULL,   200, NULL, NULL, false, LOCAL_OPENAPI},
    {"GET", "/v1/sys/ping",       "sys", "ping", 200, NULL, NULL, false, LOCAL_NONE},
    {"POST", "/v1/sys/echo",      "sys", "echo", 200, NULL, NULL, true,  LOCAL_NONE},
    {"GET", "/v1/sys/sleep",      "sys", "sleep", 200, "ms:int", NULL, false, LOCAL_NONE},
    {"POST", "/v1/auth/register", "users", "auth.register", 201, NULL, NULL, true, LOCAL_NONE},
    {"POST", "/v1/auth/login",    "users", "auth.login", 200, NULL, "@client_ip>client_ip", true, LOCAL_NONE},
    {"POST", "/v1/auth/refresh",  "users", "auth.refresh", 200, NULL, NULL, true, LOCAL_NONE},
    {"POST", "/v1/auth/logout",   "users", "auth.logout", 204, NULL, NULL, true, LOCAL_NONE},
    {"GET", "/v1/auth/jwks.json", "users", "auth.jwks", 200, NULL, NULL, false, LOCAL_NONE},
    {"GET", "/v1/users/me",       "users", "user.me", 200, NULL, NULL, false, LOCAL_NONE},
    {"PATCH", "/v1/users/me",     "users", "user.update_me", 200, NULL, NULL, true, LOCAL_NONE},
    {"GET", "/v1/users",          "users", "user.list", 200, "limit:int,cursor", NULL, false, LOCAL_NONE},
    {"PATCH", "/v1/users/{id}",   "users", "user.set_role", 200, NULL, NULL, true, LOCAL_NONE},
    {"GET", "/v1/categories", "catalog", "category.list", 200, "limit:int,cursor", NULL, false, LOCAL_NONE},
    {"POST", "/v1/categories", "catalog", "category.create", 201, NULL, NULL, true, LOCAL_NONE},
    {"PATCH", "/v1/categories/{id}", "catalog", "category.update", 200, NULL, NULL, true, LOCAL_NONE},
    {"DELETE", "/v1/categories/{id}", "catalog", "category.delete", 204, NULL, NULL, false, LOCAL_NONE},
    {"POST", "/v1/products", "catalog", "product.create", 201, NULL, NULL, true, LOCAL_NONE},
    {"GET", "/v1/products", "catalog", "product.search", 200,
     "q,category,min_price:int,max_price:int,in_stock:bool,sort,limit:int,cursor", NULL, false, LOCAL_NONE},
    {"GET", "/v1/products/{id}", "catalog", "product.get", 200, NULL, NULL, false, LOCAL_NONE},
    {"PATCH", "/v1/products/{id}", "catalog", "product.update", 200, NULL, "If-Match>if_match", true, LOCAL_NONE},
    {"DELETE", "/v1/products/{id}", "catalog", "product.delete", 204, NULL, NULL, false, LOCAL_NONE},
    {"PUT", "/v1/products/{id}/stock", "catalog", "product.set_stock", 200, NULL, NULL, true, LOCAL_NONE},
};
/* clang-format on */

#define ROUTE_COUNT (sizeof s_routes / sizeof s_routes[0])

const route_t *routes_table(size_t *count)
{
    *count = ROUTE_COUNT;
    return s_routes;
}

/* Matches one template against a path; fills the captures. */
static bool s_match(const char *tmpl, const char *path, route_match_t *m)
{
    m->n_params = 0;
    while (*tmpl && *path) {
        if (*tmpl != '/' || *path != '/')
            return false;
        tmpl++;
        path++;
        const char *t_end = strchr(tmpl, '/');
        const char *p_end = strchr(path, '/');
        size_t t_len = t_end ? (size_t)(t_end - tmpl) : strlen(tmpl);
        size_t p_len = p_end ? (size_t)(p_end - path) : strlen(path);
        if (t_len >= 2 && tmpl[0] == '{' && tmpl[t_len - 1] == '}') {
            if (p_len == 0 || m->n_params == ROUTE_MAX_PARAMS)
                return false;
            m->param_name[m->n_params] = tmpl + 1;
            m->param_name_len[m->n_params] = t_len - 2;
            m->param_value[m->n_params] = path;
            m->param_value_len[m->n_params] = p_len;
            m->n_params++;
        } else if (t_len != p_len || memcmp(tmpl, path, t_len) != 0)
            return false;
        tmpl += t_len;
        path += p_len;
    }
    return *tmpl == '\0' && *path == '\0';
}

size_t routes_allowed(const char *path, char *out, size_t size)
{
    route_match_t match;
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < ROUTE_COUNT; i++)
        if (s_match(s_routes[i].path, path, &match) && used < size)
            used += (size_t)snprintf(out + used, size - used, "%s%s%s", used ? ", " : "",
                                     s_routes[i].method,
                                     strcmp(s_routes[i].method, "GET") == 0 ? ", HEAD" : "");
    return used;
}

route_result_t routes_match(const char *method, const char *path, route_match_t *match)
{
    /* HEAD is GET without the body (libmicrohttpd drops the body). */
    if (strcmp(method, "HEAD") == 0)
        method = "GET";
    bool path_known = false;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        if (!s_match(s_routes[i].path, path, match))
            continue;
        if (strcmp(s_routes[i].method, method) == 0) {
            match->index = (int)i;
            return ROUTE_FOUND;
        }
        path_known = true;
    }
    return path_known ? ROUTE_NO_METHOD : ROUTE_NO_PATH;
}

size_t routes_services(const char **out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < ROUTE_COUNT; i++) {
        const char *s = s_routes[i].service;
        bool seen = !s;
        for (size_t k = 0; k < n && !seen; k++)
            seen = strcmp(out[k], s) == 0;
        if (!seen && n < max)
            out[n++] = s;
    }
    return n;
}

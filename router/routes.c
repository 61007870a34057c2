/*  routes.c - the bridge's routes and a matcher over path segments.
 *
 *  Matching walks the table comparing segment by segment; "{name}" matches
 *  any one non-empty segment. The table is small, so a linear scan costs
 *  less than the JSON decode of the smallest body. A path that matches a
 *  template under another method is told apart (405, not 404).
 *
 *  The functions work on any table (the bridge may be given another);
 *  routes_check() is what makes that safe: whatever the matcher or the
 *  bridge could not serve whole (a fifth path parameter, a header name too
 *  long for the bridge's buffer, a route twice) is refused at start, so
 *  nothing is cut short later without a word.
 */
#include "router/routes.h"

#include <stdio.h>
#include <string.h>

/* The bridge's own routes; every service brings its own (actors/service.h)
 * and router/api.c puts them together. */
/* clang-format off */
static const route_t s_routes[] = {
    /* method  path          service op  ok   query headers body   local */
    {"GET", "/healthz",      NULL, NULL, 200, NULL, NULL, false, LOCAL_HEALTHZ},
    {"GET", "/readyz",       NULL, NULL, 200, NULL, NULL, false, LOCAL_READYZ},
    {"GET", "/metrics",      NULL, NULL, 200, NULL, NULL, false, LOCAL_METRICS},
    {"GET", "/openapi.json", NULL, NULL, 200, NULL, NULL, false, LOCAL_OPENAPI},
};
/* clang-format on */

const route_t *routes_bridge(size_t *count)
{
    *count = sizeof s_routes / sizeof s_routes[0];
    return s_routes;
}

/* How many entries a "a,b>c:int" list has (0 for NULL or ""). */
static size_t s_list_entries(const char *list)
{
    if (!list || !*list)
        return 0;
    size_t n = 1;
    for (const char *p = list; *p; p++)
        n += *p == ',';
    return n;
}

/* Checks one entry [p, end) of a query or headers list. */
static bool s_entry_ok(const char *p, const char *end)
{
    const char *arrow = memchr(p, '>', (size_t)(end - p));
    const char *name = arrow ? arrow + 1 : p;
    const char *colon = memchr(name, ':', (size_t)(end - name));
    const char *source_end = arrow ? arrow : (colon ? colon : end);
    size_t source_len = (size_t)(source_end - p);
    size_t name_len = (size_t)((colon ? colon : end) - name);
    if (source_len == 0 || source_len > ROUTE_SOURCE_MAX || name_len == 0)
        return false;
    if (!colon)
        return true;
    size_t type_len = (size_t)(end - colon - 1);
    return (type_len == 3 &&
            (memcmp(colon + 1, "str", 3) == 0 || memcmp(colon + 1, "int", 3) == 0)) ||
           (type_len == 4 && memcmp(colon + 1, "bool", 4) == 0);
}

static bool s_list_ok(const char *list)
{
    for (const char *p = list; p && *p;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        if (!s_entry_ok(p, end))
            return false;
        p = *end ? end + 1 : end;
    }
    return true;
}

/* The "{name}" segments of a template, or -1 when it is malformed. */
static int s_template_params(const char *tmpl)
{
    if (tmpl[0] != '/')
        return -1;
    int params = 0;
    for (const char *p = tmpl; *p;) {
        p++; /* past the '/' */
        const char *end = strchr(p, '/');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        /* only "/" itself may end in an empty segment */
        if (len == 0 && (end || p != tmpl + 1))
            return -1;
        if (len >= 2 && p[0] == '{' && p[len - 1] == '}') {
            if (len == 2)
                return -1; /* "{}": a parameter without a name */
            params++;
        }
        p += len;
    }
    return params;
}

int routes_check(const route_t *table, size_t n, char *why, size_t why_size)
{
    for (size_t i = 0; i < n; i++) {
        const route_t *r = &table[i];
        const char *problem = NULL;
        int params = r->path ? s_template_params(r->path) : -1;
        if (!r->method || !*r->method || params < 0)
            problem = "no method, or a path that is not /segment/...";
        else if (params > ROUTE_MAX_PARAMS)
            problem = "more path parameters than ROUTE_MAX_PARAMS";
        else if (!s_list_ok(r->query) || !s_list_ok(r->headers))
            problem = "a query or headers entry without source or name, with a source over "
                      "ROUTE_SOURCE_MAX, or of a type other than str, int and bool";
        else if (r->service ? !r->op || !*r->op : r->local == LOCAL_NONE)
            problem = "a service without an op, or neither a service nor a local answer";
        for (size_t k = 0; !problem && k < i; k++)
            if (strcmp(table[k].method, r->method) == 0 && strcmp(table[k].path, r->path) == 0)
                problem = "the same method and path as an earlier route";
        if (problem) {
            snprintf(why, why_size, "route %zu (%s %s): %s", i, r->method ? r->method : "?",
                     r->path ? r->path : "?", problem);
            return -1;
        }
    }
    return 0;
}

size_t routes_max_args(const route_t *table, size_t n)
{
    size_t most = 0;
    for (size_t i = 0; i < n; i++) {
        int params = s_template_params(table[i].path);
        size_t args = (params > 0 ? (size_t)params : 0) + s_list_entries(table[i].query) +
                      s_list_entries(table[i].headers);
        if (args > most)
            most = args;
    }
    return most;
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

/* Appends text to out[0..size) at *used, counting what did not fit. */
static void s_append(char *out, size_t size, size_t *used, const char *text)
{
    size_t len = strlen(text);
    if (*used < size) {
        size_t room = size - *used - 1;
        size_t copy = len < room ? len : room;
        memcpy(out + *used, text, copy);
        out[*used + copy] = '\0';
    }
    *used += len;
}

size_t routes_allowed(const route_t *table, size_t n, const char *path, char *out, size_t size)
{
    route_match_t match;
    size_t used = 0;
    if (size > 0)
        out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (!s_match(table[i].path, path, &match))
            continue;
        /* a method may come from two templates ("/users/me", "/users/{id}") */
        bool seen = false;
        for (size_t k = 0; k < i && !seen; k++)
            seen = strcmp(table[k].method, table[i].method) == 0 &&
                   s_match(table[k].path, path, &match);
        if (seen)
            continue;
        if (used > 0)
            s_append(out, size, &used, ", ");
        s_append(out, size, &used, table[i].method);
        if (strcmp(table[i].method, "GET") == 0)
            s_append(out, size, &used, ", HEAD");
    }
    return used;
}

route_result_t routes_match(const route_t *table, size_t n, const char *method, const char *path,
                            route_match_t *match)
{
    /* HEAD is GET without the body (libmicrohttpd drops the body). */
    if (strcmp(method, "HEAD") == 0)
        method = "GET";
    bool path_known = false;
    for (size_t i = 0; i < n; i++) {
        if (!s_match(table[i].path, path, match))
            continue;
        if (strcmp(table[i].method, method) == 0) {
            match->index = (int)i;
            return ROUTE_FOUND;
        }
        path_known = true;
    }
    return path_known ? ROUTE_NO_METHOD : ROUTE_NO_PATH;
}

size_t routes_services(const route_t *table, size_t n, const char **out, size_t max)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = table[i].service;
        bool seen = !s;
        for (size_t k = 0; k < i && !seen; k++)
            seen = table[k].service && strcmp(table[k].service, s) == 0;
        if (seen)
            continue;
        if (count < max)
            out[count] = s;
        count++;
    }
    return count;
}

/*  test_openapi.c - the served OpenAPI document against the route table.
 *
 *  The bridge serves the document that router/api.c assembles from
 *  router/openapi.json and every service's actors/<service>/openapi.json,
 *  and answers the table assembled from the bridge's routes and every
 *  service's; nothing else keeps the two in step. This test assembles both
 *  as the bridge does (api_new over services_all), parses the document
 *  with jansson and checks:
 *    - it is OpenAPI 3.1.x, and info.license names a licence;
 *    - every route (method, path template) is an operation of the document
 *      (the method lower-cased as the operation key), and every operation
 *      of the document is a route; a miss either way is named;
 *    - every operation has an operationId, unique in the document, and a
 *      route to a service has operationId "<service>.<op>";
 *    - every operation declares security: a list whose requirements name
 *      only schemes of components.securitySchemes (public ones: []), and
 *      one that needs a token lists 401;
 *    - every operation lists at least one 4xx answer, and the ones the
 *      bridge gives on any route (413, 414, 415, 431), and an operation of
 *      a service also 503 and 504;
 *    - every "{x}" of a route's path template is declared as a required
 *      `in: path` parameter on the operation or on its path item, and no
 *      path parameter is declared that the template does not have;
 *    - every query parameter of a route (its "name:type,..." spec) is
 *      declared `in: query`, with the matching schema type when it has one;
 *    - the Error schema's code enum lists every code of protocol/errors.h
 *      (1 .. ERR__COUNT-1) and nothing else.
 *  Each check is a function that collects problems; besides running it on
 *  the real document, the test runs it on small inline documents with a
 *  known defect and sees it report exactly that defect, so each checker is
 *  known to catch what it looks for, whatever the real document holds
 *  today. Local "$ref"s ("#/components/...") are
 *  followed wherever a parameter or schema may be one.
 */
#include "actors/services.h"
#include "protocol/errors.h"
#include "router/api.h"
#include "router/routes.h"
#include "tests/testutil.h"

#include <ctype.h>
#include <czmq.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What a checker found: how many problems, one line each. */
typedef struct {
    int count;
    char text[8192];
} problems_t;

static void s_problem(problems_t *p, const char *format, ...) __attribute__((format(printf, 2, 3)));

static void s_problem(problems_t *p, const char *format, ...)
{
    p->count++;
    size_t used = strlen(p->text);
    if (used + 2 >= sizeof p->text)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(p->text + used, sizeof p->text - used - 1, format, args);
    va_end(args);
    used = strlen(p->text);
    p->text[used] = '\n';
    p->text[used + 1] = '\0';
}

/* Asserts that a checker run on the real document found nothing. */
static void s_assert_clean(const problems_t *p)
{
    if (p->count)
        print_error("problems in the served openapi.json:\n%s", p->text);
    assert_int_equal(p->count, 0);
}

static bool s_mentions(const problems_t *p, const char *what)
{
    return strstr(p->text, what) != NULL;
}

static const char *const s_methods[] = {"get",     "put",  "post",  "delete",
                                        "options", "head", "patch", "trace"};
static const char *const s_upper[] = {"GET",     "PUT",  "POST",  "DELETE",
                                      "OPTIONS", "HEAD", "PATCH", "TRACE"};
#define METHOD_COUNT (sizeof s_methods / sizeof s_methods[0])

static void s_lower(const char *in, char *out, size_t size)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++)
        out[i] = (char)tolower((unsigned char)in[i]);
    out[i] = '\0';
}

/* Follows local references ("$ref": "#/a/b~1c") until a node that is not
 * one; NULL if a reference does not resolve (or loops). */
static json_t *s_resolve(json_t *doc, json_t *node)
{
    for (int hops = 0; node && hops < 16; hops++) {
        const char *ref = json_string_value(json_object_get(node, "$ref"));
        if (!json_is_object(node) || !ref)
            return node;
        if (ref[0] != '#')
            return NULL; /* only references inside this document */
        json_t *at = doc;
        const char *s = ref + 1;
        while (at && *s == '/') {
            s++;
            char key[256];
            size_t k = 0;
            while (*s && *s != '/' && k + 1 < sizeof key) {
                if (s[0] == '~' && (s[1] == '0' || s[1] == '1')) {
                    key[k++] = s[1] == '0' ? '~' : '/';
                    s += 2;
                } else
                    key[k++] = *s++;
            }
            key[k] = '\0';
            at = json_is_array(at) ? json_array_get(at, strtoul(key, NULL, 10))
                                   : json_object_get(at, key);
        }
        node = *s ? NULL : at;
    }
    return NULL;
}

/* The operation object for method ("GET") and path, or NULL. */
static json_t *s_operation(json_t *doc, const char *method, const char *path)
{
    char key[16];
    s_lower(method, key, sizeof key);
    json_t *item = s_resolve(doc, json_object_get(json_object_get(doc, "paths"), path));
    return json_object_get(item, key);
}

/* ------------------------------------------------------------------ */
/* Checkers                                                            */

/* Every route is in the document and every operation is in the table. */
static void s_check_coverage(json_t *doc, const route_t *routes, size_t n, problems_t *p)
{
    for (size_t i = 0; i < n; i++)
        if (!json_is_object(s_operation(doc, routes[i].method, routes[i].path)))
            s_problem(p, "%s %s is a route but not in openapi.json", routes[i].method,
                      routes[i].path);
    json_t *paths = json_object_get(doc, "paths");
    if (!json_is_object(paths)) {
        s_problem(p, "openapi.json has no paths object");
        return;
    }
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        item = s_resolve(doc, item);
        for (size_t m = 0; m < METHOD_COUNT; m++) {
            if (!json_object_get(item, s_methods[m]))
                continue;
            bool routed = false;
            for (size_t i = 0; i < n && !routed; i++) {
                char method[16];
                s_lower(routes[i].method, method, sizeof method);
                routed = streq(method, s_methods[m]) && streq(routes[i].path, path);
            }
            if (!routed)
                s_problem(p, "%s %s is in openapi.json but not a route", s_upper[m], path);
        }
    }
}

/* operationIds: present, unique, and "<service>.<op>" for service routes. */
static void s_check_operation_ids(json_t *doc, const route_t *routes, size_t n, problems_t *p)
{
    json_t *seen = json_object(); /* operationId -> "METHOD path" */
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        item = s_resolve(doc, item);
        for (size_t m = 0; m < METHOD_COUNT; m++) {
            json_t *op = json_object_get(item, s_methods[m]);
            if (!op)
                continue;
            const char *id = json_string_value(json_object_get(op, "operationId"));
            if (!id || !*id) {
                s_problem(p, "%s %s has no operationId", s_upper[m], path);
                continue;
            }
            const char *first = json_string_value(json_object_get(seen, id));
            if (first)
                s_problem(p, "operationId \"%s\" of %s %s is also that of %s", id, s_upper[m], path,
                          first);
            else {
                char where[512];
                snprintf(where, sizeof where, "%s %s", s_upper[m], path);
                json_object_set_new(seen, id, json_string(where));
            }
        }
    }
    json_decref(seen);
    for (size_t i = 0; i < n; i++) {
        if (!routes[i].service)
            continue;
        json_t *op = s_operation(doc, routes[i].method, routes[i].path);
        const char *id = json_string_value(json_object_get(op, "operationId"));
        if (!op || !id)
            continue; /* reported above or by the coverage check */
        char want[256];
        snprintf(want, sizeof want, "%s.%s", routes[i].service, routes[i].op);
        if (!streq(id, want))
            s_problem(p, "%s %s has operationId \"%s\"; the route calls %s", routes[i].method,
                      routes[i].path, id, want);
    }
}

/* The parameter (name, in) of an operation: its own list first, then its
 * path item's (an operation may override a path item's parameter). */
static json_t *s_find_param(json_t *doc, json_t *item, json_t *op, const char *name, const char *in)
{
    json_t *lists[] = {json_object_get(op, "parameters"), json_object_get(item, "parameters")};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *param;
        json_array_foreach(lists[l], i, param)
        {
            param = s_resolve(doc, param);
            const char *pname = json_string_value(json_object_get(param, "name"));
            const char *pin = json_string_value(json_object_get(param, "in"));
            if (pname && pin && streq(pname, name) && streq(pin, in))
                return param;
        }
    }
    return NULL;
}

/* Does the template have the segment "{name}"? */
static bool s_template_has(const char *path, const char *name)
{
    size_t len = strlen(name);
    for (const char *s = strchr(path, '{'); s; s = strchr(s + 1, '{'))
        if (strncmp(s + 1, name, len) == 0 && s[1 + len] == '}')
            return true;
    return false;
}

/* Every "{x}" of the template is a required `in: path` parameter of the
 * operation (or of its path item), and every declared path parameter is
 * in the template. Returns how many template parameters there were. */
static int s_check_path_params(json_t *doc, const char *method, const char *path, problems_t *p)
{
    json_t *item = s_resolve(doc, json_object_get(json_object_get(doc, "paths"), path));
    json_t *op = s_operation(doc, method, path);
    if (!op)
        return 0; /* the coverage check names it */
    int found = 0;
    for (const char *s = strchr(path, '{'); s; s = strchr(s + 1, '{')) {
        const char *end = strchr(s, '}');
        if (!end || end == s + 1) {
            s_problem(p, "%s %s: malformed path template", method, path);
            break;
        }
        char name[128];
        snprintf(name, sizeof name, "%.*s", (int)(end - s - 1), s + 1);
        found++;
        json_t *param = s_find_param(doc, item, op, name, "path");
        if (!param)
            s_problem(p, "%s %s: path parameter {%s} is not declared (in: path)", method, path,
                      name);
        else if (!json_is_true(json_object_get(param, "required")))
            s_problem(p, "%s %s: path parameter {%s} is not required: true", method, path, name);
    }
    json_t *lists[] = {json_object_get(op, "parameters"), json_object_get(item, "parameters")};
    for (size_t l = 0; l < 2; l++) {
        size_t i;
        json_t *param;
        json_array_foreach(lists[l], i, param)
        {
            param = s_resolve(doc, param);
            const char *pname = json_string_value(json_object_get(param, "name"));
            const char *pin = json_string_value(json_object_get(param, "in"));
            if (!param || !pname || !pin)
                s_problem(p, "%s %s: a parameter without name or in (or a broken $ref)", method,
                          path);
            else if (streq(pin, "path") && !s_template_has(path, pname))
                s_problem(p, "%s %s: declares path parameter %s, which the template lacks", method,
                          path, pname);
        }
    }
    return found;
}

/* Does a schema's type (a string, or a 3.1 list of them) include want? */
static bool s_type_includes(json_t *type, const char *want)
{
    if (json_is_string(type))
        return streq(json_string_value(type), want);
    size_t i;
    json_t *t;
    json_array_foreach(type, i, t)
    {
        if (json_is_string(t) && streq(json_string_value(t), want))
            return true;
    }
    return false;
}

/* Every query parameter of the route's spec ("name:type,...") is declared
 * `in: query`; when its schema has a type, it is the spec's. Returns how
 * many query parameters the route has. */
static int s_check_query_params(json_t *doc, const route_t *route, problems_t *p)
{
    if (!route->query)
        return 0;
    json_t *item = s_resolve(doc, json_object_get(json_object_get(doc, "paths"), route->path));
    json_t *op = s_operation(doc, route->method, route->path);
    if (!op)
        return 0; /* the coverage check names it */
    int found = 0;
    const char *s = route->query;
    while (*s) {
        size_t len = strcspn(s, ",");
        char spec[128];
        snprintf(spec, sizeof spec, "%.*s", (int)len, s);
        s += len + (s[len] == ',');
        if (!*spec)
            continue;
        char *colon = strchr(spec, ':');
        const char *type = colon ? colon + 1 : "str";
        if (colon)
            *colon = '\0';
        found++;
        json_t *param = s_find_param(doc, item, op, spec, "query");
        if (!param) {
            s_problem(p, "%s %s: query parameter %s is not declared (in: query)", route->method,
                      route->path, spec);
            continue;
        }
        const char *want = streq(type, "int")    ? "integer"
                           : streq(type, "bool") ? "boolean"
                                                 : "string";
        json_t *schema = s_resolve(doc, json_object_get(param, "schema"));
        json_t *declared = json_object_get(schema, "type");
        if (declared && !s_type_includes(declared, want))
            s_problem(p, "%s %s: query parameter %s is %s in the route but not in openapi.json",
                      route->method, route->path, spec, want);
    }
    return found;
}

/* The Error schema's code enum is exactly the codes of errors.h. */
static void s_check_error_codes(json_t *doc, problems_t *p)
{
    json_t *error = s_resolve(
        doc,
        json_object_get(json_object_get(json_object_get(doc, "components"), "schemas"), "Error"));
    json_t *inner = s_resolve(doc, json_object_get(json_object_get(error, "properties"), "error"));
    json_t *code = s_resolve(doc, json_object_get(json_object_get(inner, "properties"), "code"));
    json_t *list = json_object_get(code, "enum");
    if (!json_is_array(list)) {
        s_problem(p, "no enum at components.schemas.Error.properties.error.properties.code");
        return;
    }
    for (int c = 1; c < ERR__COUNT; c++) {
        const char *name = err_code_name((err_code_t)c);
        bool listed = false;
        size_t i;
        json_t *value;
        json_array_foreach(list, i, value)
        {
            listed = listed || (json_is_string(value) && streq(json_string_value(value), name));
        }
        if (!listed)
            s_problem(p, "error code %s is missing from the Error schema's code enum", name);
    }
    size_t i;
    json_t *value;
    json_array_foreach(list, i, value)
    {
        const char *name = json_string_value(value);
        if (!name || (err_code_from_name(name, strlen(name)) == ERR_INTERNAL &&
                      !streq(name, err_code_name(ERR_INTERNAL))))
            s_problem(p, "the Error schema's code enum has %s, which errors.h does not know",
                      name ? name : "a non-string");
    }
}

/* Does the operation list this status (or its "4XX" range)? */
static bool s_lists_status(json_t *op, const char *status)
{
    json_t *responses = json_object_get(op, "responses");
    char range[4] = {status[0], 'X', 'X', '\0'};
    return json_object_get(responses, status) || json_object_get(responses, range);
}

/* Every operation declares security: a list of requirements that name
 * only schemes the document defines; one that needs a token lists 401.
 * (An empty list is a public operation; {} in a list makes the token
 * optional.) */
static void s_check_security(json_t *doc, problems_t *p)
{
    json_t *schemes = json_object_get(json_object_get(doc, "components"), "securitySchemes");
    const char *path;
    json_t *item;
    json_object_foreach(json_object_get(doc, "paths"), path, item)
    {
        item = s_resolve(doc, item);
        for (size_t m = 0; m < METHOD_COUNT; m++) {
            json_t *op = json_object_get(item, s_methods[m]);
            if (!op)
                continue;
            json_t *security = json_object_get(op, "security");
            if (!json_is_array(security)) {
                s_problem(p, "%s %s declares no security (public operations: [])", s_upper[m],
                          path);
                continue;
            }
            bool optional = false;
            size_t i;
            json_t *requirement;
            json_array_foreach(security, i, requirement)
            {
                if (!json_is_object(requirement)) {
                    s_problem(p, "%s %s: a security requirement that is not an object", s_upper[m],
                              path);
                    continue;
                }
                optional = optional || json_object_size(requirement) == 0;
                const char *scheme;
                json_t *scopes;
                json_object_foreach(requirement, scheme, scopes)
                {
                    if (!json_object_get(schemes, scheme))
                        s_problem(p,
                                  "%s %s: security scheme %s is not in "
                                  "components.securitySchemes",
                                  s_upper[m], path, scheme);
                }
            }
            if (json_array_size(security) > 0 && !optional && !s_lists_status(op, "401"))
                s_problem(p, "%s %s needs a token but does not list 401", s_upper[m], path);
        }
    }
}

/* Every operation lists a 4xx answer, and the answers the bridge gives
 * whatever the route; an operation routed to a service also the bridge's
 * 503 (no worker, broker unreachable, stopping) and 504 (deadline). */
static void s_check_answers(json_t *doc, const route_t *routes, size_t n, problems_t *p)
{
    static const char *const everywhere[] = {"413", "414", "415", "431"};
    static const char *const routed[] = {"503", "504"};
    for (size_t i = 0; i < n; i++) {
        json_t *op = s_operation(doc, routes[i].method, routes[i].path);
        if (!op)
            continue; /* the coverage check names it */
        bool any_4xx = false;
        const char *status;
        json_t *response;
        json_object_foreach(json_object_get(op, "responses"), status, response)
        {
            any_4xx = any_4xx || status[0] == '4';
        }
        if (!any_4xx)
            s_problem(p, "%s %s lists no 4xx answer", routes[i].method, routes[i].path);
        for (size_t k = 0; k < sizeof everywhere / sizeof everywhere[0]; k++)
            if (!s_lists_status(op, everywhere[k]))
                s_problem(p, "%s %s does not list %s, which the bridge answers on any route",
                          routes[i].method, routes[i].path, everywhere[k]);
        for (size_t k = 0; routes[i].service && k < sizeof routed / sizeof routed[0]; k++)
            if (!s_lists_status(op, routed[k]))
                s_problem(p, "%s %s does not list %s, which the bridge answers for a service",
                          routes[i].method, routes[i].path, routed[k]);
    }
}

/* info.license with a name, and an SPDX identifier or a URL (one). */
static void s_check_license(json_t *doc, problems_t *p)
{
    json_t *license = json_object_get(json_object_get(doc, "info"), "license");
    const char *name = json_string_value(json_object_get(license, "name"));
    bool identifier = json_is_string(json_object_get(license, "identifier"));
    bool url = json_is_string(json_object_get(license, "url"));
    if (!name || !*name)
        s_problem(p, "info.license has no name");
    else if (identifier == url)
        s_problem(p, "info.license has %s an identifier and a url",
                  identifier ? "both" : "neither");
}

/* ------------------------------------------------------------------ */
/* The real document                                                   */

static json_t *s_parse(const char *text)
{
    json_error_t error;
    json_t *doc = json_loads(text, 0, &error);
    if (!doc)
        print_error("inline document, line %d: %s\n", error.line, error.text);
    assert_non_null(doc);
    return doc;
}

/* The API as the bridge serves it, and its document parsed. */
typedef struct {
    api_t *api;
    json_t *doc;
    const route_t *routes;
    size_t n_routes;
} fixture_t;

static int s_load(void **state)
{
    fixture_t *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    *state = f;
    size_t n;
    const service_def_t *const *all = services_all(&n);
    char err[256];
    f->api = api_new(all, n, err, sizeof err);
    if (!f->api) {
        print_error("the API does not assemble: %s\n", err);
        return -1;
    }
    f->routes = api_routes(f->api, &f->n_routes);
    size_t len;
    const char *text = api_openapi(f->api, &len);
    json_error_t error;
    f->doc = json_loadb(text, len, 0, &error);
    if (!f->doc) {
        print_error("the served openapi.json, line %d column %d: %s\n", error.line, error.column,
                    error.text);
        return -1;
    }
    return 0;
}

static int s_unload(void **state)
{
    fixture_t *f = *state;
    if (f) {
        json_decref(f->doc);
        api_destroy(&f->api);
        free(f);
    }
    return 0;
}

static void test_is_openapi_3_1(void **state)
{
    json_t *doc = ((fixture_t *)*state)->doc;
    const char *version = json_string_value(json_object_get(doc, "openapi"));
    assert_non_null(version);
    if (strncmp(version, "3.1.", 4) != 0)
        print_error("openapi is \"%s\", not 3.1.x\n", version);
    assert_int_equal(strncmp(version, "3.1.", 4), 0);
    assert_true(json_is_object(json_object_get(doc, "info")));
    assert_true(json_is_object(json_object_get(doc, "paths")));
    /* the assembler's instructions are not part of what is served */
    assert_null(json_object_get(doc, "x-bridge-responses"));
    problems_t p = {0};
    s_check_license(doc, &p);
    s_assert_clean(&p);
}

static void test_routes_and_paths_agree(void **state)
{
    fixture_t *f = *state;
    problems_t p = {0};
    s_check_coverage(f->doc, f->routes, f->n_routes, &p);
    s_assert_clean(&p);
    /* every service's routes are in the table, and the bridge's */
    size_t n;
    const service_def_t *const *all = services_all(&n);
    size_t expected = 0;
    routes_bridge(&expected);
    for (size_t i = 0; i < n; i++)
        expected += all[i]->n_routes;
    assert_int_equal(f->n_routes, expected);
}

static void test_operation_ids(void **state)
{
    fixture_t *f = *state;
    problems_t p = {0};
    s_check_operation_ids(f->doc, f->routes, f->n_routes, &p);
    s_assert_clean(&p);
}

static void test_security_declared(void **state)
{
    fixture_t *f = *state;
    problems_t p = {0};
    s_check_security(f->doc, &p);
    s_assert_clean(&p);
}

static void test_answers_declared(void **state)
{
    fixture_t *f = *state;
    problems_t p = {0};
    s_check_answers(f->doc, f->routes, f->n_routes, &p);
    s_assert_clean(&p);
}

static void test_path_parameters_declared(void **state)
{
    fixture_t *f = *state;
    problems_t p = {0};
    int params = 0;
    for (size_t i = 0; i < f->n_routes; i++)
        params += s_check_path_params(f->doc, f->routes[i].method, f->routes[i].path, &p);
    print_message("      %d path parameter(s) across %zu routes\n", params, f->n_routes);
    s_assert_clean(&p);
}

static void test_query_parameters_declared(void **state)
{
    fixture_t *f = *state;
    problems_t p = {0};
    int params = 0;
    for (size_t i = 0; i < f->n_routes; i++)
        params += s_check_query_params(f->doc, &f->routes[i], &p);
    print_message("      %d query parameter(s) across %zu routes\n", params, f->n_routes);
    s_assert_clean(&p);
}

static void test_error_codes_listed(void **state)
{
    problems_t p = {0};
    s_check_error_codes(((fixture_t *)*state)->doc, &p);
    s_assert_clean(&p);
}

/* ------------------------------------------------------------------ */
/* The checkers on documents with known defects                        */

static void test_coverage_checker_names_misses(void **state)
{
    (void)state;
    json_t *doc = s_parse("{\"openapi\": \"3.1.0\", \"paths\": {"
                          "  \"/a\": {\"get\": {}, \"parameters\": []},"
                          "  \"/b\": {\"get\": {}, \"post\": {}}}}");
    const route_t routes[] = {
        {"GET", "/a", NULL, NULL, 200, NULL, NULL, false, LOCAL_NONE},
        {"GET", "/b", NULL, NULL, 200, NULL, NULL, false, LOCAL_NONE},
        {"DELETE", "/a", NULL, NULL, 204, NULL, NULL, false, LOCAL_NONE},
        {"GET", "/c", NULL, NULL, 200, NULL, NULL, false, LOCAL_NONE},
    };
    problems_t p = {0};
    s_check_coverage(doc, routes, 4, &p);
    assert_int_equal(p.count, 3);
    assert_true(s_mentions(&p, "DELETE /a is a route but not in openapi.json"));
    assert_true(s_mentions(&p, "GET /c is a route but not in openapi.json"));
    assert_true(s_mentions(&p, "POST /b is in openapi.json but not a route"));

    /* the same table against a document that has it all: nothing */
    json_t *full = s_parse("{\"paths\": {\"/a\": {\"get\": {}, \"delete\": {}},"
                           "  \"/b\": {\"get\": {}}, \"/c\": {\"get\": {}}}}");
    problems_t none = {0};
    s_check_coverage(full, routes, 4, &none);
    assert_int_equal(none.count, 0);
    json_decref(full);
    json_decref(doc);
}

static void test_operation_id_checker_catches(void **state)
{
    (void)state;
    json_t *doc = s_parse("{\"paths\": {"
                          "  \"/x\": {\"get\": {\"operationId\": \"things.get\"},"
                          "           \"post\": {\"operationId\": \"things.get\"}},"
                          "  \"/y\": {\"get\": {}},"
                          "  \"/z\": {\"put\": {\"operationId\": \"things.set\"}}}}");
    const route_t routes[] = {
        {"GET", "/x", "things", "get", 200, NULL, NULL, false, LOCAL_NONE},
        {"POST", "/x", "things", "create", 201, NULL, NULL, true, LOCAL_NONE},
        {"GET", "/y", NULL, NULL, 200, NULL, NULL, false, LOCAL_HEALTHZ},
        {"PUT", "/z", "things", "put", 200, NULL, NULL, true, LOCAL_NONE},
    };
    problems_t p = {0};
    s_check_operation_ids(doc, routes, 4, &p);
    assert_true(s_mentions(&p, "operationId \"things.get\" of POST /x is also that of GET /x"));
    assert_true(s_mentions(&p, "GET /y has no operationId"));
    assert_true(s_mentions(&p, "POST /x has operationId \"things.get\"; the route calls "
                               "things.create"));
    assert_true(s_mentions(&p, "PUT /z has operationId \"things.set\"; the route calls "
                               "things.put"));
    assert_int_equal(p.count, 4);
    json_decref(doc);
}

static void test_path_param_checker_catches(void **state)
{
    (void)state;
    json_t *doc = s_parse(
        "{\"paths\": {"
        /* declared on the operation */
        "  \"/v1/a/{id}\": {\"get\": {\"parameters\": [{\"name\": \"id\", \"in\": \"path\","
        "     \"required\": true, \"schema\": {\"type\": \"string\"}}]}},"
        /* declared on the path item, by reference */
        "  \"/v1/b/{id}\": {\"parameters\": [{\"$ref\": \"#/components/parameters/Id\"}],"
        "     \"get\": {}},"
        /* not declared at all */
        "  \"/v1/c/{id}\": {\"get\": {}},"
        /* a query parameter of that name is not a path parameter */
        "  \"/v1/d/{id}\": {\"get\": {\"parameters\": [{\"name\": \"id\", \"in\": \"query\"}]}},"
        /* two parameters, the second one missing */
        "  \"/v1/e/{id}/items/{item_id}\": {\"get\": {\"parameters\": ["
        "     {\"$ref\": \"#/components/parameters/Id\"}]}},"
        /* declared but not required */
        "  \"/v1/f/{id}\": {\"get\": {\"parameters\": [{\"name\": \"id\", \"in\": \"path\"}]}},"
        /* declared but the template has no such segment */
        "  \"/v1/g\": {\"get\": {\"parameters\": [{\"$ref\": \"#/components/parameters/Id\"}]}},"
        /* a reference that leads nowhere */
        "  \"/v1/h/{id}\": {\"get\": {\"parameters\": [{\"$ref\": \"#/components/parameters/X\"}]}}"
        "}, \"components\": {\"parameters\": {\"Id\": {\"name\": \"id\", \"in\": \"path\","
        "     \"required\": true, \"schema\": {\"type\": \"string\"}}}}}");

    problems_t p = {0};
    assert_int_equal(s_check_path_params(doc, "GET", "/v1/a/{id}", &p), 1);
    assert_int_equal(s_check_path_params(doc, "GET", "/v1/b/{id}", &p), 1);
    assert_int_equal(p.count, 0);

    /* the same checker, called again: it fails, naming the parameter */
    assert_int_equal(s_check_path_params(doc, "GET", "/v1/c/{id}", &p), 1);
    assert_int_equal(p.count, 1);
    assert_true(s_mentions(&p, "GET /v1/c/{id}: path parameter {id} is not declared"));

    problems_t q = {0};
    s_check_path_params(doc, "GET", "/v1/d/{id}", &q);
    assert_int_equal(q.count, 1);
    assert_true(s_mentions(&q, "GET /v1/d/{id}: path parameter {id} is not declared"));

    problems_t r = {0};
    assert_int_equal(s_check_path_params(doc, "GET", "/v1/e/{id}/items/{item_id}", &r), 2);
    assert_int_equal(r.count, 1);
    assert_true(s_mentions(&r, "path parameter {item_id} is not declared"));

    problems_t s = {0};
    s_check_path_params(doc, "GET", "/v1/f/{id}", &s);
    assert_int_equal(s.count, 1);
    assert_true(s_mentions(&s, "path parameter {id} is not required: true"));

    problems_t t = {0};
    assert_int_equal(s_check_path_params(doc, "GET", "/v1/g", &t), 0);
    assert_int_equal(t.count, 1);
    assert_true(s_mentions(&t, "GET /v1/g: declares path parameter id, which the template lacks"));

    problems_t u = {0};
    s_check_path_params(doc, "GET", "/v1/h/{id}", &u);
    assert_true(s_mentions(&u, "path parameter {id} is not declared"));
    assert_true(s_mentions(&u, "broken $ref"));
    json_decref(doc);
}

static void test_query_param_checker_catches(void **state)
{
    (void)state;
    json_t *doc = s_parse(
        "{\"paths\": {\"/v1/products\": {"
        "  \"parameters\": [{\"name\": \"cursor\", \"in\": \"query\"}],"
        "  \"get\": {\"parameters\": ["
        "    {\"name\": \"q\", \"in\": \"query\", \"schema\": {\"type\": \"string\"}},"
        "    {\"name\": \"limit\", \"in\": \"query\", \"schema\": {\"type\": \"string\"}},"
        "    {\"name\": \"min_price\", \"in\": \"query\","
        "       \"schema\": {\"$ref\": \"#/components/schemas/Cents\"}},"
        "    {\"name\": \"in_stock\", \"in\": \"header\"}]}}},"
        " \"components\": {\"schemas\": {\"Cents\": {\"type\": [\"integer\", \"null\"]}}}}");
    const route_t ok = {"GET",     "/v1/products",           "catalog", "product.search",
                        200,       "q,cursor,min_price:int", NULL,      false,
                        LOCAL_NONE};
    problems_t p = {0};
    assert_int_equal(s_check_query_params(doc, &ok, &p), 3);
    assert_int_equal(p.count, 0);

    const route_t bad = {
        "GET", "/v1/products", "catalog", "product.search", 200, "q:str,limit:int,in_stock:bool",
        NULL,  false,          LOCAL_NONE};
    assert_int_equal(s_check_query_params(doc, &bad, &p), 3);
    assert_int_equal(p.count, 2);
    assert_true(s_mentions(&p, "query parameter limit is integer in the route"));
    assert_true(s_mentions(&p, "query parameter in_stock is not declared (in: query)"));
    json_decref(doc);
}

static void test_error_code_checker_catches(void **state)
{
    (void)state;
    /* every code but timeout, plus one errors.h does not have */
    json_t *codes = json_array();
    for (int c = 1; c < ERR__COUNT; c++)
        if (c != ERR_TIMEOUT)
            json_array_append_new(codes, json_string(err_code_name((err_code_t)c)));
    json_array_append_new(codes, json_string("teapot"));
    json_t *doc = json_pack("{s:{s:{s:{s:{s:{s:{s:{s:o}}}}}}}}", "components", "schemas", "Error",
                            "properties", "error", "properties", "code", "enum", codes);
    assert_non_null(doc);
    problems_t p = {0};
    s_check_error_codes(doc, &p);
    assert_int_equal(p.count, 2);
    assert_true(s_mentions(&p, "error code timeout is missing"));
    assert_true(s_mentions(&p, "code enum has teapot"));
    json_decref(doc);

    problems_t q = {0};
    json_t *empty = s_parse("{\"components\": {}}");
    s_check_error_codes(empty, &q);
    assert_int_equal(q.count, 1);
    json_decref(empty);
}

static void test_security_checker_catches(void **state)
{
    (void)state;
    json_t *doc = s_parse(
        "{\"components\": {\"securitySchemes\": {\"bearer\": {\"type\": \"http\","
        "     \"scheme\": \"bearer\"}}},"
        " \"paths\": {"
        /* fine: public, token needed with 401, token optional without 401 */
        "  \"/a\": {\"get\": {\"security\": []},"
        "          \"post\": {\"security\": [{\"bearer\": []}], \"responses\": {\"401\": {}}},"
        "          \"put\": {\"security\": [{}, {\"bearer\": []}]}},"
        /* no security at all */
        "  \"/b\": {\"get\": {\"responses\": {\"200\": {}}}},"
        /* a scheme the document does not define */
        "  \"/c\": {\"get\": {\"security\": [{\"apikey\": []}],"
        "          \"responses\": {\"4XX\": {}}}},"
        /* a token needed, and no 401 */
        "  \"/d\": {\"delete\": {\"security\": [{\"bearer\": []}],"
        "          \"responses\": {\"403\": {}}}}}}");
    problems_t p = {0};
    s_check_security(doc, &p);
    assert_true(s_mentions(&p, "GET /b declares no security"));
    assert_true(s_mentions(&p, "GET /c: security scheme apikey is not in"));
    assert_true(s_mentions(&p, "DELETE /d needs a token but does not list 401"));
    assert_int_equal(p.count, 3);
    json_decref(doc);
}

static void test_answers_checker_catches(void **state)
{
    (void)state;
    json_t *doc = s_parse("{\"paths\": {"
                          "  \"/ok\": {\"get\": {\"responses\": {\"200\": {}, \"413\": {},"
                          "     \"414\": {}, \"415\": {}, \"431\": {}}}},"
                          "  \"/svc\": {\"get\": {\"responses\": {\"200\": {}, \"4XX\": {},"
                          "     \"503\": {}, \"504\": {}}},"
                          "            \"post\": {\"responses\": {\"200\": {}, \"413\": {},"
                          "     \"414\": {}, \"415\": {}, \"431\": {}}}},"
                          "  \"/none\": {\"get\": {\"responses\": {\"200\": {}, \"500\": {}}}}}}");
    const route_t routes[] = {
        {"GET", "/ok", NULL, NULL, 200, NULL, NULL, false, LOCAL_HEALTHZ},
        {"GET", "/svc", "things", "get", 200, NULL, NULL, false, LOCAL_NONE},
        {"POST", "/svc", "things", "make", 201, NULL, NULL, true, LOCAL_NONE},
        {"GET", "/none", NULL, NULL, 200, NULL, NULL, false, LOCAL_METRICS},
    };
    problems_t p = {0};
    s_check_answers(doc, routes, 4, &p);
    /* /ok and GET /svc (a 4XX range covers every 4xx) are whole */
    assert_false(s_mentions(&p, "GET /ok"));
    assert_false(s_mentions(&p, "GET /svc"));
    assert_true(s_mentions(&p, "POST /svc does not list 503"));
    assert_true(s_mentions(&p, "POST /svc does not list 504"));
    assert_true(s_mentions(&p, "GET /none lists no 4xx answer"));
    assert_true(s_mentions(&p, "GET /none does not list 414"));
    /* 2 for POST /svc; for /none: no 4xx, and each of 413 414 415 431 */
    assert_int_equal(p.count, 2 + 1 + 4);
    json_decref(doc);
}

static void test_license_checker_catches(void **state)
{
    (void)state;
    static const struct {
        const char *doc;
        const char *problem; /* NULL: none */
    } cases[] = {
        {"{\"info\": {\"license\": {\"name\": \"MIT\", \"identifier\": \"MIT\"}}}", NULL},
        {"{\"info\": {\"license\": {\"name\": \"X\", \"url\": \"https://x.test/l\"}}}", NULL},
        {"{\"info\": {}}", "info.license has no name"},
        {"{\"info\": {\"license\": {\"name\": \"\"}}}", "info.license has no name"},
        {"{\"info\": {\"license\": {\"name\": \"X\"}}}", "neither an identifier and a url"},
        {"{\"info\": {\"license\": {\"name\": \"X\", \"identifier\": \"MIT\","
         "   \"url\": \"https://x.test/l\"}}}",
         "both an identifier and a url"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        json_t *doc = s_parse(cases[i].doc);
        problems_t p = {0};
        s_check_license(doc, &p);
        if (cases[i].problem) {
            assert_int_equal(p.count, 1);
            assert_true(s_mentions(&p, cases[i].problem));
        } else
            assert_int_equal(p.count, 0);
        json_decref(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_openapi_3_1),
        cmocka_unit_test(test_routes_and_paths_agree),
        cmocka_unit_test(test_operation_ids),
        cmocka_unit_test(test_security_declared),
        cmocka_unit_test(test_answers_declared),
        cmocka_unit_test(test_path_parameters_declared),
        cmocka_unit_test(test_query_parameters_declared),
        cmocka_unit_test(test_error_codes_listed),
        cmocka_unit_test(test_coverage_checker_names_misses),
        cmocka_unit_test(test_operation_id_checker_catches),
        cmocka_unit_test(test_path_param_checker_catches),
        cmocka_unit_test(test_query_param_checker_catches),
        cmocka_unit_test(test_error_code_checker_catches),
        cmocka_unit_test(test_security_checker_catches),
        cmocka_unit_test(test_answers_checker_catches),
        cmocka_unit_test(test_license_checker_catches),
    };
    return cmocka_run_group_tests_name("openapi", tests, s_load, s_unload);
}

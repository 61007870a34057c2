/*  api.c - the assembly of api.h, with jansson.
 *
 *  Runs once at start and on small documents (tens of kilobytes), so it
 *  is written for clarity: parse every part, merge into the base, walk the
 *  operations once to add the bridge's responses, print once. Every
 *  refusal names the part and what it defines twice or wrongly.
 */
#include "router/api.h"
#include "router/openapi.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct api_t {
    route_t *routes;
    size_t n_routes;
    char *openapi; /* json_dumps text */
    size_t openapi_len;
};

static const char *const s_methods[] = {"get",     "put",  "post",  "delete",
                                        "options", "head", "patch", "trace"};

static void s_why(char *err, size_t errlen, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void s_why(char *err, size_t errlen, const char *format, ...)
{
    va_list args;
    va_start(args, format);
    vsnprintf(err, errlen, format, args);
    va_end(args);
}

/* Parses a part; NULL with the reason (and where) in err. */
static json_t *s_parse(const char *part, const char *text, char *err, size_t errlen)
{
    if (!text) {
        s_why(err, errlen, "%s has no OpenAPI part", part);
        return NULL;
    }
    json_error_t error;
    json_t *doc = json_loads(text, 0, &error);
    if (!doc)
        s_why(err, errlen, "%s's OpenAPI part, line %d column %d: %s", part, error.line,
              error.column, error.text);
    else if (!json_is_object(doc)) {
        s_why(err, errlen, "%s's OpenAPI part is not a JSON object", part);
        json_decref(doc);
        doc = NULL;
    }
    return doc;
}

/* Adds every member of from to into; a name into has already is refused,
 * naming what of whose it is (owners: name -> the part that defined it). */
static int s_add_members(json_t *into, json_t *from, json_t *owners, const char *part,
                         const char *what, char *err, size_t errlen)
{
    const char *name;
    json_t *value;
    json_object_foreach(from, name, value)
    {
        if (json_object_get(into, name)) {
            const char *first = json_string_value(json_object_get(owners, name));
            s_why(err, errlen, "%s %s of %s is defined by %s already", what, name, part,
                  first ? first : "the base document");
            return -1;
        }
        if (json_object_set(into, name, value) != 0 ||
            json_object_set_new(owners, name, json_string(part)) != 0) {
            s_why(err, errlen, "out of memory");
            return -1;
        }
    }
    return 0;
}

/* The object at parent[key], made empty when absent; NULL when it is there
 * but not an object, or out of memory. */
static json_t *s_object_at(json_t *parent, const char *key)
{
    json_t *node = json_object_get(parent, key);
    if (!node) {
        node = json_object();
        if (!node || json_object_set_new(parent, key, node) != 0)
            return NULL;
    }
    return json_is_object(node) ? node : NULL;
}

/* Merges a part's paths and components into doc. owners holds, per kind
 * ("paths", "schemas", ...), who defined each name. */
static int s_merge_part(json_t *doc, json_t *part_doc, json_t *owners, const char *part, char *err,
                        size_t errlen)
{
    const char *key;
    json_t *value;
    json_object_foreach(part_doc, key, value)
    {
        if (!streq(key, "paths") && !streq(key, "components")) {
            s_why(err, errlen, "%s's OpenAPI part has \"%s\"; a part holds paths and components",
                  part, key);
            return -1;
        }
        if (!json_is_object(value)) {
            s_why(err, errlen, "%s's OpenAPI part: %s is not an object", part, key);
            return -1;
        }
    }
    json_t *paths = s_object_at(doc, "paths");
    json_t *path_owners = s_object_at(owners, "paths");
    if (!paths || !path_owners) {
        s_why(err, errlen, "the base document's paths is not an object");
        return -1;
    }
    json_t *part_paths = json_object_get(part_doc, "paths");
    if (part_paths && s_add_members(paths, part_paths, path_owners, part, "path", err, errlen) != 0)
        return -1;

    json_t *components = json_object_get(part_doc, "components");
    const char *kind;
    json_t *members;
    json_object_foreach(components, kind, members)
    {
        json_t *into = s_object_at(s_object_at(doc, "components"), kind);
        json_t *kind_owners = s_object_at(owners, kind);
        if (!into || !kind_owners || !json_is_object(members)) {
            s_why(err, errlen, "%s's OpenAPI part: components.%s is not an object", part, kind);
            return -1;
        }
        char what[96];
        snprintf(what, sizeof what, "components.%s", kind);
        if (s_add_members(into, members, kind_owners, part, what, err, errlen) != 0)
            return -1;
    }
    return 0;
}

static int s_compare_keys(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* The members of object in key order ("200" < "404" < "default"), so that
 * a response added later is still listed in place; NULL out of memory. */
static json_t *s_sorted(json_t *object)
{
    size_t n = json_object_size(object);
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    json_t *sorted = json_object();
    if (!keys || !sorted) {
        free(keys);
        json_decref(sorted);
        return NULL;
    }
    size_t i = 0;
    const char *key;
    json_t *value;
    json_object_foreach(object, key, value)
    {
        keys[i++] = key;
    }
    qsort(keys, n, sizeof *keys, s_compare_keys);
    for (i = 0; i < n; i++)
        if (json_object_set(sorted, keys[i], json_object_get(object, keys[i])) != 0) {
            json_decref(sorted);
            sorted = NULL;
            break;
        }
    free(keys);
    return sorted;
}

/* Adds to each operation of paths the responses of extra that it lacks. */
static int s_add_responses(json_t *paths, json_t *extra)
{
    if (!json_is_object(extra))
        return 0;
    const char *path;
    json_t *item;
    json_object_foreach(paths, path, item)
    {
        for (size_t m = 0; m < sizeof s_methods / sizeof s_methods[0]; m++) {
            json_t *op = json_object_get(item, s_methods[m]);
            if (!json_is_object(op))
                continue;
            json_t *responses = s_object_at(op, "responses");
            if (!responses)
                return -1;
            const char *code;
            json_t *response;
            json_object_foreach(extra, code, response)
            {
                if (!json_object_get(responses, code) &&
                    json_object_set_new(responses, code, json_deep_copy(response)) != 0)
                    return -1;
            }
            json_t *sorted = s_sorted(responses);
            if (!sorted || json_object_set_new(op, "responses", sorted) != 0)
                return -1;
        }
    }
    return 0;
}

/* The route table: the bridge's routes, then each service's. */
static int s_routes(api_t *self, const service_def_t *const *services, size_t n, char *err,
                    size_t errlen)
{
    size_t n_bridge;
    const route_t *bridge = routes_bridge(&n_bridge);
    size_t total = n_bridge;
    for (size_t i = 0; i < n; i++)
        total += services[i]->n_routes;
    self->routes = calloc(total ? total : 1, sizeof *self->routes);
    if (!self->routes) {
        s_why(err, errlen, "out of memory");
        return -1;
    }
    memcpy(self->routes, bridge, n_bridge * sizeof *bridge);
    self->n_routes = n_bridge;
    for (size_t i = 0; i < n; i++) {
        const service_def_t *def = services[i];
        for (size_t k = 0; k < def->n_routes; k++) {
            const route_t *r = &def->routes[k];
            if (!r->service || !streq(r->service, def->name)) {
                s_why(err, errlen, "route %s %s of %s goes to %s, not to %s",
                      r->method ? r->method : "?", r->path ? r->path : "?", def->name,
                      r->service ? r->service : "the bridge", def->name);
                return -1;
            }
            self->routes[self->n_routes++] = *r;
        }
    }
    return 0;
}

/* The document: the base, each part merged, the bridge's responses. */
static int s_document(api_t *self, const service_def_t *const *services, size_t n, char *err,
                      size_t errlen)
{
    int rc = -1;
    json_t *owners = json_object();
    json_t *doc =
        s_parse("the base document (router/openapi.json)", router_openapi_json, err, errlen);
    if (!doc || !owners)
        goto cleanup;
    json_t *bridge_responses = json_incref(json_object_get(doc, "x-bridge-responses"));
    json_object_del(doc, "x-bridge-responses");
    /* the bridge's own paths answer "every" but not "routed" */
    if (s_add_responses(json_object_get(doc, "paths"),
                        json_object_get(bridge_responses, "every")) != 0) {
        s_why(err, errlen, "out of memory");
        json_decref(bridge_responses);
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *part = s_parse(services[i]->name, services[i]->openapi, err, errlen);
        json_t *paths = json_object_get(part, "paths");
        int merged = -1;
        if (part && s_add_responses(paths, json_object_get(bridge_responses, "every")) == 0 &&
            s_add_responses(paths, json_object_get(bridge_responses, "routed")) == 0)
            merged = s_merge_part(doc, part, owners, services[i]->name, err, errlen);
        else if (part)
            s_why(err, errlen, "out of memory");
        json_decref(part);
        if (merged != 0) {
            json_decref(bridge_responses);
            goto cleanup;
        }
    }
    json_decref(bridge_responses);
    self->openapi = json_dumps(doc, JSON_INDENT(2));
    if (!self->openapi) {
        s_why(err, errlen, "out of memory");
        goto cleanup;
    }
    self->openapi_len = strlen(self->openapi);
    rc = 0;
cleanup:
    json_decref(doc);
    json_decref(owners);
    return rc;
}

api_t *api_new(const service_def_t *const *services, size_t n, char *err, size_t errlen)
{
    api_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_why(err, errlen, "out of memory");
        return NULL;
    }
    if (s_routes(self, services, n, err, errlen) != 0 ||
        s_document(self, services, n, err, errlen) != 0)
        api_destroy(&self);
    return self;
}

void api_destroy(api_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    api_t *self = *self_p;
    free(self->routes);
    free(self->openapi);
    free(self);
    *self_p = NULL;
}

const route_t *api_routes(const api_t *self, size_t *count)
{
    *count = self->n_routes;
    return self->routes;
}

const char *api_openapi(const api_t *self, size_t *len)
{
    if (len)
        *len = self->openapi_len;
    return self->openapi;
}

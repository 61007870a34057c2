/*  fuzz_routes.c - the bridge's route matching (routes_match over the
 *  whole API's table, routes_allowed) and its typed arguments from the
 *  query and headers (route_args), on any method, path and values.
 *
 *  Input: a byte that picks the method, then the path up to the first NUL
 *  (paths reach the bridge as C strings, already cut at '?' by
 *  libmicrohttpd), then NUL-separated name/value pairs that stand for the
 *  query parameters and headers libmicrohttpd has split and decoded
 *  (splitting and percent-decoding are libmicrohttpd's, not ours).
 *  Checked: a match's parameters lie inside the path and come from a
 *  "{name}" of the template; Allow's length is what it says; packed
 *  arguments unpack into a map of exactly the arguments collected.
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "actors/services.h"
#include "router/api.h"
#include "router/route_args.h"
#include "router/routes.h"

#define MAX_PAIRS 16

typedef struct {
    const char *name[MAX_PAIRS];
    const char *value[MAX_PAIRS];
    int n;
} pairs_t;

static api_t *s_api;
static const route_t *s_table;
static size_t s_routes;
static route_arg_t *s_args;
static size_t s_max_args;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    size_t n;
    const service_def_t *const *all = services_all(&n);
    char err[256];
    s_api = api_new(all, n, err, sizeof err);
    if (!s_api)
        abort();
    s_table = api_routes(s_api, &s_routes);
    s_max_args = routes_max_args(s_table, s_routes);
    s_args = calloc(s_max_args ? s_max_args : 1, sizeof *s_args);
    return s_args ? 0 : -1;
}

static const char *s_lookup(void *ctx, route_from_t from, const char *source)
{
    const pairs_t *pairs = ctx;
    for (int i = 0; i < pairs->n; i++) {
        bool same = from == ROUTE_FROM_HEADER ? strcasecmp(pairs->name[i], source) == 0
                                              : strcmp(pairs->name[i], source) == 0;
        if (same)
            return pairs->value[i];
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const methods[] = {"GET",    "HEAD",    "POST", "PUT",   "PATCH",
                                          "DELETE", "OPTIONS", "get",  "TRACE", ""};
    if (size < 1 || size > 16384)
        return 0;
    const char *method = methods[data[0] % (sizeof methods / sizeof *methods)];
    /* A NUL-terminated copy, so that every piece is a C string. */
    char *copy = malloc(size + 1);
    if (!copy)
        return 0;
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    const char *end = copy + size - 1;
    const char *path = copy;
    pairs_t pairs = {.n = 0};
    for (const char *p = path + strlen(path) + 1; p < end && pairs.n < MAX_PAIRS;) {
        const char *name = p;
        p += strlen(p) + 1;
        if (p >= end)
            break;
        pairs.name[pairs.n] = name;
        pairs.value[pairs.n++] = p;
        p += strlen(p) + 1;
    }

    route_match_t match;
    route_result_t result = routes_match(s_table, s_routes, method, path, &match);
    size_t path_len = strlen(path);
    if (result == ROUTE_FOUND) {
        if (match.index < 0 || (size_t)match.index >= s_routes || match.n_params < 0 ||
            match.n_params > ROUTE_MAX_PARAMS)
            abort();
        const route_t *route = &s_table[match.index];
        for (int i = 0; i < match.n_params; i++) {
            if (match.param_value[i] < path ||
                match.param_value[i] + match.param_value_len[i] > path + path_len)
                abort();
            if (!strstr(route->path, "{") || match.param_name[i] < route->path ||
                match.param_name[i] + match.param_name_len[i] > route->path + strlen(route->path))
                abort();
        }
        int n = route_args_collect(route, &match, s_lookup, &pairs, s_args, (int)s_max_args);
        if (n < match.n_params || (size_t)n > s_max_args)
            abort();
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, (size_t)n);
        bool all = true;
        for (int i = 0; i < n && all; i++)
            all = route_arg_pack(&pk, &s_args[i]);
        if (all) {
            msgpack_zone zone;
            msgpack_zone_init(&zone, 1024);
            msgpack_object obj;
            size_t off = 0;
            if (msgpack_unpack(buf.data, buf.size, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS ||
                off != buf.size || obj.type != MSGPACK_OBJECT_MAP || obj.via.map.size != (size_t)n)
                abort();
            msgpack_zone_destroy(&zone);
        }
        msgpack_sbuffer_destroy(&buf);
    }
    char allow[64];
    size_t want = routes_allowed(s_table, s_routes, path, allow, sizeof allow);
    if (want < sizeof allow && strlen(allow) != want)
        abort();
    if ((result == ROUTE_NO_PATH) != (want == 0))
        abort(); /* Allow names methods exactly for the paths that have routes */
    free(copy);
    return 0;
}

/*  route_args.c - a request's arguments from its path, query and headers.
 *
 *  A route's query and headers lists are "source>name:type,..." (the '>'
 *  part is optional: then the source is the name; the type is 's' when
 *  omitted); routes_check() refused, at start, any source longer than
 *  ROUTE_SOURCE_MAX, so none is ever skipped here. Every step is linear
 *  in the spec and the values: an int is read from at most 20 digits and
 *  a sign, never by strtoll over a string of unknown length.
 */
#include "router/route_args.h"

#include <string.h>

#include "protocol/envelope.h"
#include "protocol/mpcheck.h"

static void s_collect(const char *spec, route_from_t from, route_lookup_fn *lookup, void *ctx,
                      route_arg_t *args, int *n, int max)
{
    for (const char *p = spec; p && *p && *n < max;) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *arrow = memchr(p, '>', (size_t)(end - p));
        const char *name = arrow ? arrow + 1 : p;
        const char *colon = memchr(name, ':', (size_t)(end - name));
        const char *source_end = arrow ? arrow : (colon ? colon : end);
        char source[ROUTE_SOURCE_MAX + 1];
        size_t source_len = (size_t)(source_end - p);
        if (source_len > 0 && source_len < sizeof source) {
            memcpy(source, p, source_len);
            source[source_len] = '\0';
            const char *value = lookup(ctx, from, source);
            if (value) {
                route_arg_t *a = &args[(*n)++];
                a->name = name;
                a->name_len = (size_t)((colon ? colon : end) - name);
                a->value = value;
                a->value_len = strlen(value);
                a->type = colon && colon + 1 < end ? colon[1] : 's';
            }
        }
        p = *end ? end + 1 : end;
    }
}

int route_args_collect(const route_t *route, const route_match_t *match, route_lookup_fn *lookup,
                       void *ctx, route_arg_t *args, int max)
{
    int n = 0;
    for (int i = 0; i < match->n_params && n < max; i++) {
        route_arg_t *a = &args[n++];
        a->name = match->param_name[i];
        a->name_len = match->param_name_len[i];
        a->value = match->param_value[i];
        a->value_len = match->param_value_len[i];
        a->type = 's';
    }
    s_collect(route->query, ROUTE_FROM_QUERY, lookup, ctx, args, &n, max);
    s_collect(route->headers, ROUTE_FROM_HEADER, lookup, ctx, args, &n, max);
    return n;
}

/* A decimal int64: an optional '-' or '+', then 1 to 19 digits (20 with
 * leading zeros refused only by range), in range. */
static bool s_parse_int(const char *s, size_t len, int64_t *out)
{
    size_t i = 0;
    bool negative = false;
    if (i < len && (s[i] == '-' || s[i] == '+'))
        negative = s[i++] == '-';
    if (i == len)
        return false;
    uint64_t v = 0;
    const uint64_t limit = negative ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned digit = (unsigned)(s[i] - '0');
        if (v > (limit - digit) / 10)
            return false;
        v = v * 10 + digit;
    }
    *out = negative ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

static bool s_is(const route_arg_t *a, const char *text)
{
    size_t n = strlen(text);
    return a->value_len == n && memcmp(a->value, text, n) == 0;
}

bool route_arg_pack(msgpack_packer *pk, const route_arg_t *a)
{
    mp_pack_strn(pk, a->name, a->name_len);
    if (a->type == 'i') {
        int64_t v;
        if (!s_parse_int(a->value, a->value_len, &v))
            return false;
        msgpack_pack_int64(pk, v);
    } else if (a->type == 'b') {
        if (s_is(a, "true") || s_is(a, "1"))
            msgpack_pack_true(pk);
        else if (s_is(a, "false") || s_is(a, "0"))
            msgpack_pack_false(pk);
        else
            return false;
    } else {
        if (!utf8_valid((const uint8_t *)a->value, a->value_len))
            return false;
        mp_pack_strn(pk, a->value, a->value_len);
    }
    return true;
}

bool route_args_named(const route_arg_t *args, int n, const char *name, size_t len)
{
    for (int i = 0; i < n; i++)
        if (args[i].name_len == len && memcmp(args[i].name, name, len) == 0)
            return true;
    return false;
}

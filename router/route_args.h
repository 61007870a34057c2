/*  route_args.h - a request's arguments from its path, query and headers.
 *
 *  A route (router/routes.h) says which query parameters and headers
 *  become arguments of its operation and of what type; the bridge takes
 *  the values from libmicrohttpd, which has already split and decoded the
 *  query string, and packs them here into the envelope's args. Split from
 *  the bridge so that the fuzzer (tests/fuzz/fuzz_routes.c) runs the same
 *  code on any values, with no connection.
 *
 *  Types: 's' a string (valid UTF-8), 'i' a decimal int64 (an optional
 *  sign and digits, nothing else), 'b' "true"/"1" or "false"/"0".
 *
 *  Ownership: an argument points into the route table (its name) and into
 *  what the lookup returned or the path (its value); all must outlive it.
 */
#ifndef RETAIL_ROUTE_ARGS_H
#define RETAIL_ROUTE_ARGS_H
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#include "router/routes.h"

typedef struct {
    const char *name; /* not NUL-terminated */
    size_t name_len;
    const char *value; /* not NUL-terminated */
    size_t value_len;
    char type; /* 's', 'i', 'b' */
} route_arg_t;

typedef enum { ROUTE_FROM_QUERY, ROUTE_FROM_HEADER } route_from_t;

/* The value of source (NUL-terminated: a query parameter's or a header's
 * name, or a connection property such as "@client_ip") in a request, as a
 * NUL-terminated string, or NULL when the request has none. */
typedef const char *(route_lookup_fn)(void *ctx, route_from_t from, const char *source);

/* Fills args[0..max) with the path parameters of match, then the route's
 * query entries, then its header entries that the request has, and
 * returns how many. max from routes_max_args() holds every one. */
int route_args_collect(const route_t *route, const route_match_t *match, route_lookup_fn *lookup,
                       void *ctx, route_arg_t *args, int max);

/* Packs a's name and its value as its type; false when the value is not
 * of that type, and then the packer holds the name without a value: the
 * caller throws the message away. */
bool route_arg_pack(msgpack_packer *pk, const route_arg_t *a);

/* True when args[0..n) has one named name[0..len). */
bool route_args_named(const route_arg_t *args, int n, const char *name, size_t len);

#endif

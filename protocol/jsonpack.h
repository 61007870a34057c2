/*  jsonpack.h - strict, bounded conversion between JSON text and msgpack.
 *
 *  The one place where JSON meets the msgpack bodies of API.md section 1:
 *  retailctl uses it for arguments and replies, the HTTP bridge for request
 *  and response bodies. Both directions refuse rather than guess:
 *
 *  JSON -> msgpack (jansson parses, then one walk writes msgpack):
 *      object -> map with str keys     array   -> array
 *      string -> str (UTF-8)           integer -> int (int64 range only)
 *      real   -> float64               true/false/null -> bool/nil
 *    Refused: syntax errors, anything after the value, duplicate object
 *    keys, integers outside int64 (never silently turned into reals), reals
 *    that overflow a double, invalid UTF-8, \u0000 in strings or keys, and
 *    nesting deeper than max_depth. Any JSON value may be the top one; a
 *    caller that needs an object checks with jsonpack_is_map().
 *
 *  msgpack -> JSON:
 *      map (str keys only) -> object   array -> array     str -> string
 *      int  -> integer                 float32/64 -> real
 *      bool -> true/false              nil -> null
 *    Refused: maps with non-str keys or with a key twice (found in time
 *    linear in the keys: a keyed hash set per map), bin (JSON has no
 *    bytes type, and a base64 string would be indistinguishable from a
 *    real string, so the API never sends bytes to JSON clients), ext,
 *    uint64 above INT64_MAX (jansson's integers are long long), NaN and
 *    infinities, strings that are not UTF-8, strings and keys that hold a
 *    NUL byte (the reader refuses \u0000, so the writer never writes what
 *    the reader would refuse, and a msgpack body cannot smuggle in what a
 *    JSON one cannot: found by tests/fuzz/fuzz_mp_to_json.c), and nesting
 *    deeper than JSONPACK_DEPTH_LIMIT.
 *
 *  Depth is counted as in mpcheck.h: a scalar is depth 0, a container one
 *  more than the deepest container inside it, so {"a":[1]} has depth 2.
 *
 *  Reals are written by jansson with 17 significant digits unless the
 *  caller passes JSON_REAL_PRECISION(n), so a double survives the trip
 *  exactly (0.1 prints as 0.10000000000000001).
 *
 *  Errors: every function that can fail takes err[errlen] and, on failure,
 *  writes a NUL-terminated English message there (never empty when
 *  errlen > 1). Messages never quote input values, so they are safe to log.
 */
#ifndef RETAIL_JSONPACK_H
#define RETAIL_JSONPACK_H

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The deepest nesting either direction follows, whatever the caller asks;
 * it bounds the recursion of the converters. */
#define JSONPACK_DEPTH_LIMIT 64

/* Parses json[0..len) (need not be NUL-terminated) and appends one msgpack
 * value to the caller-owned out. max_depth above JSONPACK_DEPTH_LIMIT is
 * lowered to it; below 0 it is treated as 0 (scalars only). Returns 0, or
 * -1 with a message in err (syntax errors carry jansson's line and column),
 * in which case out is left exactly as it was. */
int jsonpack_from_json(const char *json, size_t len, msgpack_sbuffer *out, int max_depth, char *err,
                       size_t errlen);

/* True when mp[0..len) starts with a msgpack map header: after a successful
 * jsonpack_from_json, that means the JSON was an object. */
bool jsonpack_is_map(const void *mp, size_t len);

/* Converts obj into a new jansson value. On success returns 0 and *out
 * holds a reference the caller releases with json_decref(); on failure
 * returns -1, sets *out to NULL and writes err. obj is only read. */
int jsonpack_to_json(const msgpack_object *obj, json_t **out, char *err, size_t errlen);

/* Converts obj to JSON text. flags are json_dumps() flags (JSON_INDENT(n),
 * JSON_SORT_KEYS, JSON_ENSURE_ASCII, JSON_REAL_PRECISION(n), ...); 0 means
 * JSON_COMPACT. Any value may be the top one (JSON_ENCODE_ANY is implied).
 * Returns a NUL-terminated string allocated with malloc(), whatever
 * allocator jansson was given, which the caller frees with free(); or NULL
 * with a message in err. */
char *jsonpack_to_json_text(const msgpack_object *obj, size_t flags, char *err, size_t errlen);

/* The work of one compact conversion, for tests and benchmarks: counts
 * that show the duplicate-key check linear in the keys without timing
 * anything, and two knobs that make the counts repeatable or force hash
 * collisions. The caller sets the inputs; the counts are reset by each
 * call and hold its totals when it returns, whether or not it succeeded. */
#define JSONPACK_HASH_KEY_BYTES 16
typedef struct {
    /* in: JSONPACK_HASH_KEY_BYTES bytes that key the hash of map keys, or
     * NULL for a key drawn at random per call (what every other call does) */
    const unsigned char *hash_key;
    /* in: 1..31 keeps only that many low bits of each key's hash, so that
     * unequal keys collide; 0 (or anything else) keeps all 32 */
    int hash_bits;
    /* out: map keys checked */
    uint64_t keys;
    /* out: times a key was compared with another one: a pair in a map of
     * up to 8 keys, an occupied hash slot met while probing in a larger one */
    uint64_t key_compares;
} jsonpack_work_t;

/* jsonpack_to_json_text(obj, 0, ...), counting into work (not NULL). */
char *jsonpack_to_json_text_counted(const msgpack_object *obj, jsonpack_work_t *work, char *err,
                                    size_t errlen);

/* Like jsonpack_to_json_text() for msgpack bytes from outside: mp[0..len)
 * must hold exactly one value that passes mpcheck() with ENVELOPE_MAX_BYTES
 * and ENVELOPE_MAX_DEPTH. mp is only read; nothing of it is kept. */
char *jsonpack_bytes_to_json_text(const void *mp, size_t len, size_t flags, char *err,
                                  size_t errlen);

/* An HTTP request body as the map its envelope's args start from, as the
 * bridge accepts one: JSON text converted into the caller-owned converted
 * (max_depth as for jsonpack_from_json), or msgpack checked where it is
 * (mpcheck with max_len and max_depth, and no value JSON cannot carry, so
 * the API stays JSON-shaped for every client). On JSONPACK_BODY_OK *out is
 * the map, unpacked into zone and pointing into body or converted. Every
 * step is linear in len. Otherwise a message in err. */
typedef enum {
    JSONPACK_BODY_OK = 0,
    JSONPACK_BODY_REFUSED,      /* not a valid object: malformed_body */
    JSONPACK_BODY_OUT_OF_MEMORY /* nothing wrong with it: unavailable */
} jsonpack_body_t;
jsonpack_body_t jsonpack_body_map(const char *body, size_t len, bool is_msgpack, size_t max_len,
                                  int max_depth, msgpack_sbuffer *converted, msgpack_zone *zone,
                                  msgpack_object *out, char *err, size_t errlen);

#endif

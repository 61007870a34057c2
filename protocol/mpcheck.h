/*  mpcheck.h - strict validation of msgpack bytes that come from outside.
 *
 *  Every body that crosses a process boundary is checked here before it is
 *  unpacked: msgpack-c trusts the lengths it reads and allocates from them,
 *  so a five-byte frame that claims four billion map entries must be stopped
 *  first. The check is one pass over the bytes, allocates nothing and keeps
 *  an explicit stack, so hostile input cannot exhaust memory or the C stack.
 *
 *  Accepted: nil, bool, ints, floats, str (valid UTF-8), bin, arrays, maps
 *  whose keys are str. Refused: ext types, the never-used byte 0xc1, maps
 *  with non-string keys, counts that cannot fit in the remaining bytes,
 *  nesting deeper than max_depth, and any byte after the first value.
 */
#ifndef RETAIL_MPCHECK_H
#define RETAIL_MPCHECK_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MP_OK = 0,
    MP_EMPTY,     /* zero bytes */
    MP_TOO_LARGE, /* more than max_len bytes */
    MP_TRUNCATED, /* a value runs past the end */
    MP_TRAILING,  /* bytes after the first value */
    MP_TOO_DEEP,  /* containers nested deeper than max_depth */
    MP_BAD_TYPE,  /* ext types or 0xc1 */
    MP_BAD_UTF8,  /* a str that is not valid UTF-8 */
    MP_BAD_KEY,   /* a map key that is not a str */
} mp_status_t;

/* The deepest nesting mpcheck accepts, whatever max_depth says: msgpack-c
 * unpacks at most 32 levels, and mpcheck promises that what it accepts
 * unpacks. */
#define MPCHECK_DEPTH_LIMIT 32

/* Checks that buf[0..len) holds exactly one well-formed value. */
mp_status_t mpcheck(const uint8_t *buf, size_t len, size_t max_len, int max_depth);

/* A short English phrase for a status ("trailing bytes after the value"). */
const char *mpcheck_strerror(mp_status_t status);

/* True when s[0..len) is valid UTF-8 (no overlongs, no surrogates). */
int utf8_valid(const uint8_t *s, size_t len);

#endif

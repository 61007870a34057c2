/*  mpout.h - a checked msgpack output: a buffer that is never sent truncated.
 *
 *  msgpack-c's packers return -1 when their write callback fails (the
 *  sbuffer's realloc ran out of memory) and leave the buffer holding
 *  everything before the value that failed: a truncated message, sent as
 *  is by any caller that ignored one return among dozens. mpout_write is a
 *  write callback over a msgpack_sbuffer that records the first failure
 *  and refuses every later write (a sticky error), so a handler may pack a
 *  whole reply without checking each call, and whoever sends the bytes
 *  checks `failed` once. An optional byte limit makes a write that would
 *  take the buffer past it fail the same way (the size a peer accepts);
 *  `over_limit` tells that case from memory running out.
 *
 *      mpout_t out;
 *      mpout_init(&out, ENVELOPE_MAX_BYTES);
 *      msgpack_packer pk;
 *      mpout_packer(&out, &pk);
 *      ... any msgpack_pack_*(&pk, ...) ...
 *      if (out.failed) ... nothing of out.buf may be used ...
 *      mpout_destroy(&out);
 *
 *  Ownership: an mpout_t is a value the caller places (on the stack or in
 *  its own struct); it owns buf's memory, freed by mpout_destroy. The
 *  bytes buf.data[0..buf.size) are valid until the next write, clear or
 *  destroy, and mean something only while failed is false. Write only
 *  through mpout_write (or a packer from mpout_packer): a direct
 *  msgpack_sbuffer_write would bypass the limit and the sticky error.
 */
#ifndef RETAIL_MPOUT_H
#define RETAIL_MPOUT_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    msgpack_sbuffer buf; /* the bytes so far; owned */
    size_t limit;        /* most bytes buf may hold; 0 for no limit */
    bool failed;         /* a write was refused; sticky until mpout_clear */
    bool over_limit;     /* when failed: the limit refused it, not memory */
} mpout_t;

/* An empty output; allocates nothing yet. limit 0 means none. */
void mpout_init(mpout_t *self, size_t limit);
/* Empties the output and forgets a failure; keeps the memory and limit. */
void mpout_clear(mpout_t *self);
/* Frees the memory; the output must be initialised again before reuse. */
void mpout_destroy(mpout_t *self);

/* The msgpack_packer_write callback; data is an mpout_t. Appends len
 * bytes: 0, or -1 (and failed set) when out of memory, when over the
 * limit, or when an earlier write failed. A refused write appends nothing. */
int mpout_write(void *data, const char *buf, size_t len);

/* Makes pk a packer that writes through self (valid while self is). */
void mpout_packer(mpout_t *self, msgpack_packer *pk);

#endif

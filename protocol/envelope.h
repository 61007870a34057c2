/*  envelope.h - the msgpack request and reply bodies of API.md section 1.
 *
 *  Request:  {"id": any, "op": str, "token": str (optional), "args": map (optional)}
 *  Reply:    {"id": echoed, "ok": true,  "data": value}
 *            {"id": echoed, "ok": false, "error": {"code", "message", "details"?}}
 *
 *  Decoding is strict (see mpcheck.h): a size limit, a nesting limit, no
 *  trailing bytes, a map at the top, known keys only, each of its type.
 *  Any failure yields ERR_MALFORMED_BODY and a message naming the problem.
 *
 *  Ownership: a decoded request points into the caller's input bytes and
 *  into the caller's msgpack_zone; both must outlive it. Encoders append to
 *  a caller-owned msgpack_sbuffer or write through a caller's packer.
 *
 *  Encoders return 0, or -1 when a write failed (out of memory, or a
 *  checked output's limit, protocol/mpout.h). An encoder into an sbuffer
 *  then leaves it as it was (its size restored), so the caller never holds
 *  half a message; an encoder into a packer leaves whatever the packer's
 *  output kept, which for an mpout_t is a sticky failure.
 */
#ifndef RETAIL_ENVELOPE_H
#define RETAIL_ENVELOPE_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>

#include "protocol/errors.h"

/* A body may carry a 1 MiB HTTP payload plus the envelope around it. */
#define ENVELOPE_MAX_BYTES (1024 * 1024 + 64 * 1024)
/* The envelope map and args count as two levels. */
#define ENVELOPE_MAX_DEPTH 24
#define ENVELOPE_MAX_OP 64
#define ENVELOPE_MAX_TOKEN 4096

typedef struct {
    msgpack_object id; /* MSGPACK_OBJECT_NIL when absent */
    const char *op;    /* not NUL-terminated */
    size_t op_len;     /* 1..ENVELOPE_MAX_OP */
    const char *token; /* NULL when absent or nil */
    size_t token_len;
    msgpack_object args; /* always a map; empty when absent */
} envelope_request_t;

/* Decodes a request body. On failure returns false and sets *message to a
 * static string; the code is always ERR_MALFORMED_BODY. */
bool envelope_decode_request(const void *body, size_t len, msgpack_zone *zone,
                             envelope_request_t *out, const char **message);

/* Packs a whole request (used by clients and tests). args may be NULL (sent
 * as an empty map); args_packed is msgpack bytes of a map, or NULL. */
int envelope_pack_request(msgpack_sbuffer *out, uint64_t id, const char *op, const char *token,
                          const void *args_packed, size_t args_len);

/* Writes {"id":..,"ok":true,"data": and leaves the packer ready for
 * exactly one value, the data. */
int envelope_reply_ok_begin(msgpack_packer *pk, const msgpack_object *id);
/* The same for a reply that repeats the first answer to an idempotency
 * key: {"id":..,"ok":true,"replayed":true,"data": (the bridge adds
 * Idempotent-Replayed: true). */
int envelope_reply_ok_replayed_begin(msgpack_packer *pk, const msgpack_object *id);

/* Writes a whole error reply. details_packed is one msgpack value or NULL. */
int envelope_reply_error(msgpack_sbuffer *out, const msgpack_object *id, err_code_t code,
                         const char *message, const void *details_packed, size_t details_len);
/* The same through a packer (protocol/call.c writes through its mpout_t). */
int envelope_pack_error(msgpack_packer *pk, const msgpack_object *id, err_code_t code,
                        const char *message, const void *details_packed, size_t details_len);
/* The same with "replayed": true when replayed: an error that repeats the
 * first answer given to an idempotency key. */
int envelope_pack_error_replayed(msgpack_packer *pk, const msgpack_object *id, err_code_t code,
                                 const char *message, const void *details_packed,
                                 size_t details_len, bool replayed);

/* An error reply to a request the caller did not decode (the broker's
 * timeouts and refusals): echoes the request's id when the body is a valid
 * envelope, nil otherwise. */
int envelope_error_for(msgpack_sbuffer *out, const void *request, size_t len, err_code_t code,
                       const char *message);

/* The error messages of a reply that could not be built, and the last
 * resort when not even its error reply can be: a pre-encoded reply with a
 * nil id, ERR_UNAVAILABLE "out of memory" (ENVELOPE_FIXED_OUT_OF_MEMORY)
 * or ERR_INTERNAL "the reply is over the size limit"
 * (ENVELOPE_FIXED_TOO_LARGE, an id too large to echo). The bytes are
 * static and constant: never freed, valid for the program's life. */
#define ENVELOPE_MSG_OUT_OF_MEMORY "out of memory"
#define ENVELOPE_MSG_TOO_LARGE "the reply is over the size limit"
typedef enum { ENVELOPE_FIXED_OUT_OF_MEMORY, ENVELOPE_FIXED_TOO_LARGE } envelope_fixed_t;
const char *envelope_reply_fixed(envelope_fixed_t which, size_t *len);

/* A decoded reply, for clients. Points into the caller's bytes and zone. */
typedef struct {
    msgpack_object id;
    bool ok;
    msgpack_object data;  /* when ok */
    bool replayed;        /* "replayed": true (a repeated first answer, ok or not) */
    err_code_t code;      /* when !ok */
    msgpack_object error; /* the whole error map when !ok */
} envelope_reply_t;

bool envelope_decode_reply(const void *body, size_t len, msgpack_zone *zone, envelope_reply_t *out,
                           const char **message);

/* Small helpers over msgpack objects, shared by all readers. */
const msgpack_object *mp_map_get(const msgpack_object *map, const char *key);
bool mp_str_eq(const msgpack_object *o, const char *s);
/* Like msgpack_pack_*: 0, or -1 when the packer's output refused a write. */
int mp_pack_str(msgpack_packer *pk, const char *s);
int mp_pack_strn(msgpack_packer *pk, const char *s, size_t n);
/* Appends bytes that already are msgpack (one whole value) through pk's
 * own output, so a checked output's limit and sticky error apply. */
int mp_pack_raw(msgpack_packer *pk, const void *bytes, size_t len);

#endif

/*  call.h - what a service handler sees of one request, and how it answers.
 *
 *  The worker framework decodes the envelope, finds the handler for the op
 *  and passes it a call_t. The handler reads typed arguments (each failed
 *  read records the field and the problem), then either packs one result
 *  value with call_reply() or fails with call_fail(). If arguments were
 *  invalid, call_args_ok() answers invalid_argument with details listing
 *  every bad field, so a client learns all of them at once:
 *
 *      const char *name; size_t name_len; int64_t qty;
 *      call_arg_str(call, "name", ARG_REQUIRED, 200, &name, &name_len);
 *      call_arg_int(call, "qty", ARG_OPTIONAL, 0, 1000, &qty);
 *      if (!call_args_ok(call)) return;
 *      msgpack_packer *pk = call_reply(call);
 *      ... pack exactly one value ...
 *
 *  The reply packer needs no checks: it writes through a checked output
 *  (protocol/mpout.h) of at most ENVELOPE_MAX_BYTES, and a reply that runs
 *  out of memory or over that size is answered as an error instead (see
 *  call_reply_bytes), never sent truncated.
 *
 *  Ownership: strings and objects handed out point into the request and
 *  stay valid until the handler returns. The call owns its reply buffer.
 */
#ifndef RETAIL_CALL_H
#define RETAIL_CALL_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "protocol/envelope.h"
#include "protocol/mpout.h"

typedef struct call_t call_t;

typedef enum { ARG_OPTIONAL = 0, ARG_REQUIRED = 1 } arg_need_t;

/* Used by the worker framework; handlers never create calls. */
call_t *call_new(void);
void call_destroy(call_t **self_p);
/* Resets the call for a new request (keeps buffers). */
void call_start(call_t *self, const envelope_request_t *request, const char *caller);
/* The reply body; valid until the next call_start. Answers internal if the
 * handler neither replied nor failed; unavailable "out of memory" if its
 * reply ran out of memory; internal "the reply is over the size limit" if
 * it would pass ENVELOPE_MAX_BYTES; each with the request's id, or, when
 * not even that error fits, the static one of envelope_reply_fixed. */
const char *call_reply_bytes(call_t *self, size_t *len);

const char *call_caller(const call_t *self);
const envelope_request_t *call_request(const call_t *self);
const msgpack_object *call_args(const call_t *self);

/* Typed readers. Return true when the argument is present and valid; false
 * when absent (optional: not an error) or invalid (recorded). out is left
 * unchanged unless true. A nil value counts as absent. */
bool call_arg_str(call_t *self, const char *name, arg_need_t need, size_t max_len, const char **out,
                  size_t *out_len);
/* Copies s[0..len) NUL-terminated into out[size], cut to size - 1 bytes:
 * for strings a handler has checked (call_arg_str's max) or made itself. */
void call_copy_text(char *out, size_t size, const char *s, size_t len);

/* Like call_arg_str, copied NUL-terminated into out[size] (max < size). */
bool call_arg_text(call_t *self, const char *name, arg_need_t need, size_t max, char *out,
                   size_t size);
bool call_arg_int(call_t *self, const char *name, arg_need_t need, int64_t min, int64_t max,
                  int64_t *out);
bool call_arg_bool(call_t *self, const char *name, arg_need_t need, bool *out);
bool call_arg_map(call_t *self, const char *name, arg_need_t need, const msgpack_object **out);
bool call_arg_array(call_t *self, const char *name, arg_need_t need, const msgpack_object **out);
bool call_arg_any(call_t *self, const char *name, arg_need_t need, const msgpack_object **out);

/* Records a problem with a field found by the handler's own checks. */
void call_arg_invalid(call_t *self, const char *name, const char *problem);

/* False (and the reply is invalid_argument listing the fields) when any
 * read so far recorded a problem. */
bool call_args_ok(call_t *self);

/* Starts the ok reply; the handler packs exactly one value. Raw msgpack
 * goes in with mp_pack_raw, never straight into pk->data. */
msgpack_packer *call_reply(call_t *self);

/* Time as the API writes it: RFC 3339 UTC with milliseconds
 * ("2026-11-25T17:25:37.123Z"), from unix milliseconds. */
void call_rfc3339(int64_t unix_ms, char out[32]);
/* Now, in unix milliseconds (clock_now_ms, protocol/clock.h). */
int64_t call_now_ms(void);

/* Says that the worker's state can serve no further request (a store
 * handle in a state it cannot leave): after this request is answered, the
 * worker destroys its state, makes a new one and reconnects, counted as a
 * restart (actors/worker.h). The handler still answers this request. */
void call_state_broken(call_t *self);
bool call_is_state_broken(const call_t *self);

/* Answers an error; replaces any reply begun. message is copied. */
void call_fail(call_t *self, err_code_t code, const char *message);

/* Answers an error with details, one msgpack value (copied). */
void call_fail_details(call_t *self, err_code_t code, const char *message, const void *details,
                       size_t details_len);

/* The same with details packed into a checked output (copied; the caller
 * still owns and destroys it). If the output failed, the details do not
 * exist: answers unavailable "out of memory" instead (internal "the reply
 * is over the size limit" if it failed on its limit). */
void call_fail_packed(call_t *self, err_code_t code, const char *message, const mpout_t *details);

#endif

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
#include "storage/kv.h"

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

/* Records a problem with a field found by the handler's own checks. The
 * name is copied (one built in a buffer is fine: "items[2].qty", cut to
 * 63 bytes); the problem must outlive the call (a string literal). */
void call_arg_invalid(call_t *self, const char *name, const char *problem);

/* False (and the reply is invalid_argument listing the fields) when any
 * read so far recorded a problem. */
bool call_args_ok(call_t *self);

/* Starts the ok reply; the handler packs exactly one value. Raw msgpack
 * goes in with mp_pack_raw, never straight into pk->data. */
msgpack_packer *call_reply(call_t *self);
/* The same for an answer that repeats the first one given to the
 * request's idempotency key (the reply says "replayed": true, and the
 * bridge adds Idempotent-Replayed: true). */
msgpack_packer *call_reply_replayed(call_t *self);

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

/* ------------------------------------------------------------------ */
/* Waiting on another service without blocking the worker
 *
 * A handler that needs another service's answer (or an outside system's,
 * reached at an endpoint that speaks envelopes) asks for it and returns
 * without answering. The worker keeps the call, with its request, and
 * serves other requests meanwhile, heartbeating as usual. When the answer
 * comes, or timeout_ms passes first, resume runs in the worker's thread
 * with the same call (its arguments still readable) and the worker's
 * state; it answers, or asks again (a saga's next step):
 *
 *      static void s_reserved(call_t *call, void *state, const call_answer_t *a)
 *      {
 *          if (!a->ok) { call_fail(call, a->code, a->message); return; }
 *          ... pack the reply from a->data ...
 *      }
 *      msgpack_packer *pk = call_ask_args(call);
 *      ... pack exactly one map: the args ...
 *      call_ask(call, "catalog", "stock.reserve", 500, s_reserved);
 *      return;
 *
 * The callee sees this worker's service as the caller (in process: the
 * routing id; over TCP: the pool's certificate). An ask that cannot be
 * sent resumes at once with ERR_UNAVAILABLE; one whose deadline passes
 * resumes with ERR_TIMEOUT, and its late answer is dropped, so resume runs
 * exactly once per ask. A held call counts against the worker's capacity
 * until it is answered. State that must survive from the handler to its
 * resume goes in call_context(). Answering (call_reply, call_fail) after
 * asking cancels the ask; asking after beginning a reply discards it. */

typedef struct {
    bool ok;
    err_code_t code;             /* ERR_NONE when ok */
    const msgpack_object *data;  /* ok: the reply's data */
    const msgpack_object *error; /* !ok: the callee's error map {code,
                                    message, details?}; NULL when the worker
                                    or broker made the error up */
    const char *message;         /* !ok: NUL-terminated */
    int result;                  /* call_write, ok: the write function's return;
                                    !ok: the transaction's error (storage/kv.h) */
} call_answer_t;
/* Everything in answer points into the reply and is valid during resume. */
typedef void(call_resume_fn)(call_t *call, void *state, const call_answer_t *answer);

#define CALL_ENDPOINT_MAX 255

/* Clears and returns the packer of the next ask's args: pack one map, or
 * nothing for none. Owned by the call. */
msgpack_packer *call_ask_args(call_t *self);
/* Asks service (through the broker) to run op with the packed args.
 * service and op are copied. */
void call_ask(call_t *self, const char *service, const char *op, int timeout_ms,
              call_resume_fn *resume);
/* The same, of an endpoint outside the broker (a ROUTER that answers each
 * [empty][envelope] with [empty][reply envelope], such as a payment
 * gateway's actor); plain, no CURVE: an endpoint in this process or on a
 * trusted network. At most WORKER_ENDPOINTS_MAX (actors/worker.h) per
 * worker. */
void call_ask_at(call_t *self, const char *endpoint, const char *op, int timeout_ms,
                 call_resume_fn *resume);
/* Resumes after ms with an ok answer (data NULL): a pause that does not
 * block the worker (a retry's backoff, a simulated latency). */
void call_after(call_t *self, int ms, call_resume_fn *resume);
/* Runs fn(txn, arg) as a durable write of kv (kv_submit in
 * storage/kv.h: group-committed with every other write of the
 * environment) and resumes once the transaction holding it is on disk:
 * ok with answer->result = fn's return value (0 kept, else refused and
 * undone), or ERR_UNAVAILABLE when the transaction failed (nothing of fn
 * is stored; answer->result is then its error, kv_no_space telling a
 * full disk or map). The worker serves other requests meanwhile, so one worker
 * may have many writes in one batch. fn runs on the environment's
 * committer thread: arg must hold everything it uses and live until the
 * resume (a block of call_context), and fn must not touch the worker's
 * state. A write has no deadline: every write ends with its commit. */
void call_write(call_t *self, kv_t *kv, kv_write_fn *fn, void *arg, call_resume_fn *resume);
/* Zeroed memory of at least size bytes that lives until the call is
 * answered: the same block on every call of one request, as long as size
 * does not grow within it (a larger size gets a new, zeroed block). NULL
 * out of memory. */
void *call_context(call_t *self, size_t size);

/* For the worker framework. */
typedef struct {
    const char *service;  /* NULL with an endpoint, a pause or a write */
    const char *endpoint; /* NULL with a service, a pause or a write */
    kv_t *kv;             /* a write (call_write): of fn and arg below */
    kv_write_fn *write_fn;
    void *write_arg;
    const char *op;
    int timeout_ms;
    const void *args; /* msgpack map bytes, or NULL for none */
    size_t args_len;
    bool args_failed; /* packing the args ran out of memory or room */
} call_ask_t;
/* True when the handler (or resume) that just returned asked; fills out. */
bool call_asking(const call_t *self, call_ask_t *out);
/* Runs the pending ask's resume with answer, clearing the ask first. */
void call_resume(call_t *self, void *state, const call_answer_t *answer);

/* Answers an error; replaces any reply begun. message is copied. */
void call_fail(call_t *self, err_code_t code, const char *message);

/* An error that repeats the first answer given to the request's
 * idempotency key ("replayed": true; the bridge adds
 * Idempotent-Replayed: true). details may be NULL. */
void call_fail_replayed(call_t *self, err_code_t code, const char *message, const void *details,
                        size_t details_len);
/* Answers an error with details, one msgpack value (copied). */
void call_fail_details(call_t *self, err_code_t code, const char *message, const void *details,
                       size_t details_len);

/* The same with details packed into a checked output (copied; the caller
 * still owns and destroys it). If the output failed, the details do not
 * exist: answers unavailable "out of memory" instead (internal "the reply
 * is over the size limit" if it failed on its limit). */
void call_fail_packed(call_t *self, err_code_t code, const char *message, const mpout_t *details);

/* Answers an error whose details are {retry_after: seconds}, from which
 * the bridge sets Retry-After. */
void call_fail_retry(call_t *self, err_code_t code, const char *message, int seconds);

/* The answer to a write that found no room (STORE_NO_SPACE: the disk or
 * an LMDB map is full, storage/kv.h): unavailable with CALL_NO_SPACE and
 * retry_after CALL_NO_SPACE_RETRY_S. Nothing of that write was stored,
 * and it succeeds once space is freed (what the request did before it,
 * such as a saga's earlier steps, is the caller's to say). */
#define CALL_NO_SPACE "storage is full; retry later"
#define CALL_NO_SPACE_RETRY_S 1
void call_fail_no_space(call_t *self);

#endif

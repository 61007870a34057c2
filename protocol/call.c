/*  call.c - argument reading and reply writing for service handlers.
 *
 *  Problems with arguments are collected (up to CALL_MAX_PROBLEMS) rather
 *  than failing on the first, so that invalid_argument's details can list
 *  every bad field. Field names and problems are static strings or the
 *  handler's own literals: they are stored as pointers, never copied.
 *
 *  The reply is packed through a checked output (protocol/mpout.h) limited
 *  to ENVELOPE_MAX_BYTES, the most a peer decodes, so a handler packs
 *  without checking each call. call_reply_bytes looks at the output once:
 *  a reply that ran out of memory becomes `unavailable` "out of memory"
 *  (a retry may find memory), one over the limit `internal` "the reply is
 *  over the size limit" (a retry gets the same reply: the service's
 *  fault, not the client's), each echoing the request's id; if even that
 *  error cannot be packed, a pre-encoded one with a nil id. Never a
 *  truncated reply.
 */
#include "protocol/call.h"
#include "protocol/clock.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CALL_MAX_PROBLEMS 16

typedef enum { REPLY_NONE, REPLY_OK, REPLY_ERROR } reply_state_t;

struct call_t {
    const envelope_request_t *request;
    const char *caller;
    mpout_t reply;         /* checked, limited to ENVELOPE_MAX_BYTES */
    msgpack_packer packer; /* writes through reply */
    const char *fixed;     /* a static error reply when not even one could be packed */
    size_t fixed_len;
    reply_state_t state;
    int problems;
    bool state_broken;                 /* call_state_broken: the worker starts over */
    char field[CALL_MAX_PROBLEMS][64]; /* copied: a handler may build a name */
    const char *problem[CALL_MAX_PROBLEMS];
    /* the pending ask (call_ask) */
    bool asking;
    enum { ASK_SERVICE, ASK_ENDPOINT, ASK_PAUSE, ASK_WRITE } ask_kind;
    kv_t *write_kv; /* call_write */
    kv_write_fn *write_fn;
    void *write_arg;
    char ask_to[CALL_ENDPOINT_MAX + 1];
    char ask_op[ENVELOPE_MAX_OP + 1];
    int ask_timeout_ms;
    call_resume_fn *resume;
    mpout_t ask_args;
    msgpack_packer ask_packer;
    void *context; /* call_context */
    size_t context_size;
};

call_t *call_new(void)
{
    call_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    mpout_init(&self->reply, ENVELOPE_MAX_BYTES);
    mpout_packer(&self->reply, &self->packer);
    mpout_init(&self->ask_args, ENVELOPE_MAX_BYTES - 4096); /* room for the envelope */
    mpout_packer(&self->ask_args, &self->ask_packer);
    return self;
}

void call_destroy(call_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mpout_destroy(&(*self_p)->reply);
    mpout_destroy(&(*self_p)->ask_args);
    free((*self_p)->context);
    free(*self_p);
    *self_p = NULL;
}

void call_start(call_t *self, const envelope_request_t *request, const char *caller)
{
    self->request = request;
    self->caller = caller ? caller : "";
    mpout_clear(&self->reply);
    self->fixed = NULL;
    self->state = REPLY_NONE;
    self->problems = 0;
    self->state_broken = false;
    self->asking = false;
    if (self->context)
        memset(self->context, 0, self->context_size);
}

void call_state_broken(call_t *self)
{
    self->state_broken = true;
}

bool call_is_state_broken(const call_t *self)
{
    return self->state_broken;
}

/* Replaces a reply the output refused by the error that says why. */
static void s_reply_refused(call_t *self)
{
    bool too_large = self->reply.over_limit;
    call_fail(self, too_large ? ERR_INTERNAL : ERR_UNAVAILABLE,
              too_large ? ENVELOPE_MSG_TOO_LARGE : ENVELOPE_MSG_OUT_OF_MEMORY);
    /* Memory is still short, or the id alone is over the limit. */
    if (self->reply.failed)
        self->fixed = envelope_reply_fixed(
            too_large ? ENVELOPE_FIXED_TOO_LARGE : ENVELOPE_FIXED_OUT_OF_MEMORY, &self->fixed_len);
}

const char *call_reply_bytes(call_t *self, size_t *len)
{
    if (self->state == REPLY_NONE)
        call_fail(self, ERR_INTERNAL, "the handler gave no answer");
    if (!self->fixed && self->reply.failed)
        s_reply_refused(self);
    if (self->fixed) {
        *len = self->fixed_len;
        return self->fixed;
    }
    *len = self->reply.buf.size;
    return self->reply.buf.data;
}

const char *call_caller(const call_t *self)
{
    return self->caller;
}

const envelope_request_t *call_request(const call_t *self)
{
    return self->request;
}

const msgpack_object *call_args(const call_t *self)
{
    return &self->request->args;
}

void call_arg_invalid(call_t *self, const char *name, const char *problem)
{
    if (self->problems < CALL_MAX_PROBLEMS) {
        snprintf(self->field[self->problems], sizeof self->field[0], "%s", name);
        self->problem[self->problems] = problem;
    }
    self->problems++;
}

/* Finds an argument; records "is required" when a required one is absent. */
static const msgpack_object *s_arg(call_t *self, const char *name, arg_need_t need)
{
    const msgpack_object *v = mp_map_get(&self->request->args, name);
    if (v && v->type == MSGPACK_OBJECT_NIL)
        v = NULL;
    if (!v && need == ARG_REQUIRED)
        call_arg_invalid(self, name, "is required");
    return v;
}

bool call_arg_str(call_t *self, const char *name, arg_need_t need, size_t max_len, const char **out,
                  size_t *out_len)
{
    const msgpack_object *v = s_arg(self, name, need);
    if (!v)
        return false;
    if (v->type != MSGPACK_OBJECT_STR) {
        call_arg_invalid(self, name, "must be a string");
        return false;
    }
    if (v->via.str.size > max_len) {
        call_arg_invalid(self, name, "is too long");
        return false;
    }
    *out = v->via.str.ptr;
    *out_len = v->via.str.size;
    return true;
}

void call_copy_text(char *out, size_t size, const char *s, size_t len)
{
    if (len >= size)
        len = size - 1;
    memcpy(out, s, len);
    out[len] = '\0';
}

bool call_arg_text(call_t *self, const char *name, arg_need_t need, size_t max, char *out,
                   size_t size)
{
    const char *s;
    size_t n;
    if (max >= size || !call_arg_str(self, name, need, max, &s, &n))
        return false;
    memcpy(out, s, n);
    out[n] = '\0';
    return true;
}

bool call_arg_int(call_t *self, const char *name, arg_need_t need, int64_t min, int64_t max,
                  int64_t *out)
{
    const msgpack_object *v = s_arg(self, name, need);
    if (!v)
        return false;
    int64_t n;
    if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        if (v->via.u64 > (uint64_t)INT64_MAX) {
            call_arg_invalid(self, name, "is out of range");
            return false;
        }
        n = (int64_t)v->via.u64;
    } else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        n = v->via.i64;
    } else {
        call_arg_invalid(self, name, "must be an integer");
        return false;
    }
    if (n < min || n > max) {
        call_arg_invalid(self, name, "is out of range");
        return false;
    }
    *out = n;
    return true;
}

bool call_arg_bool(call_t *self, const char *name, arg_need_t need, bool *out)
{
    const msgpack_object *v = s_arg(self, name, need);
    if (!v)
        return false;
    if (v->type != MSGPACK_OBJECT_BOOLEAN) {
        call_arg_invalid(self, name, "must be a boolean");
        return false;
    }
    *out = v->via.boolean;
    return true;
}

static bool s_arg_typed(call_t *self, const char *name, arg_need_t need, msgpack_object_type type,
                        const char *problem, const msgpack_object **out)
{
    const msgpack_object *v = s_arg(self, name, need);
    if (!v)
        return false;
    if (v->type != type) {
        call_arg_invalid(self, name, problem);
        return false;
    }
    *out = v;
    return true;
}

bool call_arg_map(call_t *self, const char *name, arg_need_t need, const msgpack_object **out)
{
    return s_arg_typed(self, name, need, MSGPACK_OBJECT_MAP, "must be an object", out);
}

bool call_arg_array(call_t *self, const char *name, arg_need_t need, const msgpack_object **out)
{
    return s_arg_typed(self, name, need, MSGPACK_OBJECT_ARRAY, "must be an array", out);
}

bool call_arg_any(call_t *self, const char *name, arg_need_t need, const msgpack_object **out)
{
    const msgpack_object *v = s_arg(self, name, need);
    if (!v)
        return false;
    *out = v;
    return true;
}

bool call_args_ok(call_t *self)
{
    if (self->problems == 0)
        return true;
    mpout_t details;
    mpout_init(&details, ENVELOPE_MAX_BYTES);
    msgpack_packer pk;
    mpout_packer(&details, &pk);
    int n = self->problems < CALL_MAX_PROBLEMS ? self->problems : CALL_MAX_PROBLEMS;
    /* The output's sticky failure checks every pack below at once. */
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "fields");
    msgpack_pack_array(&pk, n);
    for (int i = 0; i < n; i++) {
        msgpack_pack_map(&pk, 2);
        mp_pack_str(&pk, "field");
        mp_pack_str(&pk, self->field[i]);
        mp_pack_str(&pk, "problem");
        mp_pack_str(&pk, self->problem[i]);
    }
    char message[160];
    snprintf(message, sizeof message, "invalid argument: %s %s%s", self->field[0], self->problem[0],
             self->problems > 1 ? " (and more, see details)" : "");
    call_fail_packed(self, ERR_INVALID_ARGUMENT, message, &details);
    mpout_destroy(&details);
    return false;
}

msgpack_packer *call_reply_replayed(call_t *self)
{
    mpout_clear(&self->reply);
    self->fixed = NULL;
    (void)envelope_reply_ok_replayed_begin(&self->packer, &self->request->id);
    self->state = REPLY_OK;
    self->asking = false;
    return &self->packer;
}

msgpack_packer *call_reply(call_t *self)
{
    mpout_clear(&self->reply);
    self->fixed = NULL;
    /* A failure here stays in the output, seen by call_reply_bytes. */
    (void)envelope_reply_ok_begin(&self->packer, &self->request->id);
    self->state = REPLY_OK;
    self->asking = false;
    return &self->packer;
}

void call_fail_details(call_t *self, err_code_t code, const char *message, const void *details,
                       size_t details_len)
{
    mpout_clear(&self->reply);
    self->fixed = NULL;
    /* A failure here stays in the output, seen by call_reply_bytes. */
    (void)envelope_pack_error(&self->packer, self->request ? &self->request->id : NULL, code,
                              message, details, details_len);
    self->state = REPLY_ERROR;
    self->asking = false;
}

void call_fail_replayed(call_t *self, err_code_t code, const char *message, const void *details,
                        size_t details_len)
{
    mpout_clear(&self->reply);
    self->fixed = NULL;
    (void)envelope_pack_error_replayed(&self->packer, self->request ? &self->request->id : NULL,
                                       code, message, details, details_len, true);
    self->state = REPLY_ERROR;
    self->asking = false;
}

void call_fail(call_t *self, err_code_t code, const char *message)
{
    call_fail_details(self, code, message, NULL, 0);
}

void call_fail_packed(call_t *self, err_code_t code, const char *message, const mpout_t *details)
{
    if (!details->failed)
        call_fail_details(self, code, message, details->buf.data, details->buf.size);
    else if (details->over_limit)
        call_fail(self, ERR_INTERNAL, ENVELOPE_MSG_TOO_LARGE);
    else
        call_fail(self, ERR_UNAVAILABLE, ENVELOPE_MSG_OUT_OF_MEMORY);
}

void call_fail_retry(call_t *self, err_code_t code, const char *message, int seconds)
{
    mpout_t details;
    mpout_init(&details, 0);
    msgpack_packer pk;
    mpout_packer(&details, &pk);
    /* Checked at once by call_fail_packed (the output's error sticks). */
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "retry_after");
    msgpack_pack_int(&pk, seconds);
    call_fail_packed(self, code, message, &details);
    mpout_destroy(&details);
}

void call_fail_no_space(call_t *self)
{
    call_fail_retry(self, ERR_UNAVAILABLE, CALL_NO_SPACE, CALL_NO_SPACE_RETRY_S);
}

void call_rfc3339(int64_t unix_ms, char out[32])
{
    time_t seconds = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03dZ", (int)(unix_ms % 1000));
}

int64_t call_now_ms(void)
{
    return clock_now_ms();
}

/* ------------------------------------------------------------------ */
/* Asks (see call.h): the call records one; the worker sends it. */

msgpack_packer *call_ask_args(call_t *self)
{
    mpout_clear(&self->ask_args);
    return &self->ask_packer;
}

static void s_ask(call_t *self, int kind, const char *to, const char *op, int timeout_ms,
                  call_resume_fn *resume)
{
    mpout_clear(&self->reply);
    self->fixed = NULL;
    self->state = REPLY_NONE;
    self->asking = true;
    self->ask_kind = kind;
    snprintf(self->ask_to, sizeof self->ask_to, "%s", to ? to : "");
    snprintf(self->ask_op, sizeof self->ask_op, "%s", op ? op : "");
    self->ask_timeout_ms = timeout_ms > 0 ? timeout_ms : 1;
    self->resume = resume;
}

void call_ask(call_t *self, const char *service, const char *op, int timeout_ms,
              call_resume_fn *resume)
{
    s_ask(self, ASK_SERVICE, service, op, timeout_ms, resume);
}

void call_ask_at(call_t *self, const char *endpoint, const char *op, int timeout_ms,
                 call_resume_fn *resume)
{
    s_ask(self, ASK_ENDPOINT, endpoint, op, timeout_ms, resume);
}

void call_after(call_t *self, int ms, call_resume_fn *resume)
{
    s_ask(self, ASK_PAUSE, NULL, NULL, ms, resume);
}

void call_write(call_t *self, kv_t *kv, kv_write_fn *fn, void *arg, call_resume_fn *resume)
{
    s_ask(self, ASK_WRITE, NULL, NULL, 0, resume);
    self->write_kv = kv;
    self->write_fn = fn;
    self->write_arg = arg;
}

void *call_context(call_t *self, size_t size)
{
    /* The block outlives requests (it is zeroed at each call_start), and
     * grows to the largest size any op of the service asked for. */
    if (self->context_size < size) {
        void *grown = calloc(1, size);
        if (!grown)
            return NULL;
        free(self->context);
        self->context = grown;
        self->context_size = size;
    }
    return self->context;
}

bool call_asking(const call_t *self, call_ask_t *out)
{
    if (!self->asking)
        return false;
    out->service = self->ask_kind == ASK_SERVICE ? self->ask_to : NULL;
    out->endpoint = self->ask_kind == ASK_ENDPOINT ? self->ask_to : NULL;
    bool write = self->ask_kind == ASK_WRITE;
    out->kv = write ? self->write_kv : NULL;
    out->write_fn = write ? self->write_fn : NULL;
    out->write_arg = write ? self->write_arg : NULL;
    out->op = self->ask_op;
    out->timeout_ms = self->ask_timeout_ms;
    bool has_args = self->ask_args.buf.size > 0 && !self->ask_args.failed;
    out->args = has_args ? self->ask_args.buf.data : NULL;
    out->args_len = has_args ? self->ask_args.buf.size : 0;
    out->args_failed = self->ask_args.failed;
    return true;
}

void call_resume(call_t *self, void *state, const call_answer_t *answer)
{
    call_resume_fn *resume = self->resume;
    self->asking = false;
    self->resume = NULL;
    if (resume)
        resume(self, state, answer);
    else
        call_fail(self, ERR_INTERNAL, "an ask had no resume");
}

/*  sys.c - the `sys` service. See sys.h. */
#include "actors/sys/sys.h"

static void s_ping(call_t *call, void *state)
{
    (void)state;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "pong");
    msgpack_pack_true(pk);
}

static void s_echo(call_t *call, void *state)
{
    (void)state;
    msgpack_pack_object(call_reply(call), *call_args(call));
}

static void s_whoami(call_t *call, void *state)
{
    (void)state;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "caller");
    mp_pack_str(pk, call_caller(call));
}

static void s_sleep(call_t *call, void *state)
{
    (void)state;
    int64_t ms = 0;
    call_arg_int(call, "ms", ARG_REQUIRED, 0, 60000, &ms);
    if (!call_args_ok(call))
        return;
    zclock_sleep((int)ms);
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "slept_ms");
    msgpack_pack_int64(pk, ms);
}

static void s_waited(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    (void)answer; /* a pause always ends ok */
    int64_t ms = 0;
    call_arg_int(call, "ms", ARG_REQUIRED, 0, 60000, &ms);
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "waited_ms");
    msgpack_pack_int64(pk, ms);
}

/* Like sleep, without blocking the worker (call_after). */
static void s_wait(call_t *call, void *state)
{
    (void)state;
    int64_t ms = 0;
    call_arg_int(call, "ms", ARG_REQUIRED, 0, 60000, &ms);
    if (!call_args_ok(call))
        return;
    call_after(call, (int)ms, s_waited);
}

static void s_asked(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    if (!answer->ok) {
        call_fail(call, answer->code, answer->message);
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "answer");
    msgpack_pack_object(pk, *answer->data);
}

/* Asks another service as `sys` and answers what it answered: a probe of
 * the ask path (protocol/call.h) in a whole system. */
static void s_ask(call_t *call, void *state)
{
    (void)state;
    char service[65], op[65];
    const msgpack_object *args = NULL;
    int64_t timeout_ms = 1000;
    call_arg_text(call, "service", ARG_REQUIRED, 64, service, sizeof service);
    call_arg_text(call, "op", ARG_REQUIRED, 64, op, sizeof op);
    call_arg_map(call, "args", ARG_OPTIONAL, &args);
    call_arg_int(call, "timeout_ms", ARG_OPTIONAL, 1, 60000, &timeout_ms);
    if (!call_args_ok(call))
        return;
    msgpack_packer *pk = call_ask_args(call);
    if (args)
        msgpack_pack_object(pk, *args);
    call_ask(call, service, op, (int)timeout_ms, s_asked);
}

static const worker_op_t s_ops[] = {
    {"ping", s_ping},
    {"echo", s_echo},
    {"whoami", s_whoami},
    {NULL, NULL},
};

static const worker_op_t s_ops_with_test[] = {
    {"ping", s_ping}, {"echo", s_echo}, {"whoami", s_whoami}, {"sleep", s_sleep},
    {"wait", s_wait}, {"ask", s_ask},   {NULL, NULL},
};

const worker_op_t *sys_ops(bool with_test_ops)
{
    return with_test_ops ? s_ops_with_test : s_ops;
}

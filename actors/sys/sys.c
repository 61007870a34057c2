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

static const worker_op_t s_ops[] = {
    {"ping", s_ping},
    {"echo", s_echo},
    {"whoami", s_whoami},
    {NULL, NULL},
};

static const worker_op_t s_ops_with_test[] = {
    {"ping", s_ping}, {"echo", s_echo}, {"whoami", s_whoami}, {"sleep", s_sleep}, {NULL, NULL},
};

const worker_op_t *sys_ops(bool with_test_ops)
{
    return with_test_ops ? s_ops_with_test : s_ops;
}

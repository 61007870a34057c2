/*  test_route_args.c - a request's typed arguments (router/route_args.h):
 *  which values each type takes, at its limits, and the order and sources
 *  of the collected arguments. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>

#include <cmocka.h>

#include "router/route_args.h"

/* Packs one argument and returns what it became: 1 ok (value in *out),
 * 0 refused. */
static int s_pack(char type, const char *value, msgpack_object *out, msgpack_zone *zone,
                  msgpack_sbuffer *buf)
{
    route_arg_t a = {
        .name = "x", .name_len = 1, .value = value, .value_len = strlen(value), .type = type};
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    if (!route_arg_pack(&pk, &a))
        return 0;
    size_t off = 0;
    msgpack_object map;
    assert_int_equal(msgpack_unpack(buf->data, buf->size, &off, zone, &map),
                     MSGPACK_UNPACK_SUCCESS);
    *out = map.via.map.ptr[0].val;
    return 1;
}

static void test_int_limits(void **state)
{
    (void)state;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_object v;
    assert_true(s_pack('i', "9223372036854775807", &v, &zone, &buf));
    assert_int_equal(v.via.i64, INT64_MAX);
    assert_true(s_pack('i', "-9223372036854775808", &v, &zone, &buf));
    assert_true(v.via.i64 == INT64_MIN);
    assert_true(s_pack('i', "+42", &v, &zone, &buf));
    assert_int_equal(v.via.u64, 42);
    assert_true(s_pack('i', "00000000000000000000000007", &v, &zone, &buf));
    assert_int_equal(v.via.u64, 7);
    const char *refused[] = {"9223372036854775808",
                             "-9223372036854775809",
                             "",
                             "-",
                             "+",
                             " 1",
                             "1 ",
                             "1a",
                             "0x10",
                             "1e3",
                             "99999999999999999999999"};
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++)
        assert_false(s_pack('i', refused[i], &v, &zone, &buf));
    msgpack_sbuffer_destroy(&buf);
    msgpack_zone_destroy(&zone);
}

static void test_bool_and_str(void **state)
{
    (void)state;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_object v;
    assert_true(s_pack('b', "true", &v, &zone, &buf) && v.via.boolean);
    assert_true(s_pack('b', "1", &v, &zone, &buf) && v.via.boolean);
    assert_true(s_pack('b', "false", &v, &zone, &buf) && !v.via.boolean);
    assert_true(s_pack('b', "0", &v, &zone, &buf) && !v.via.boolean);
    assert_false(s_pack('b', "True", &v, &zone, &buf));
    assert_false(s_pack('b', "truex", &v, &zone, &buf));
    assert_true(s_pack('s', "caf\xc3\xa9", &v, &zone, &buf));
    assert_int_equal(v.via.str.size, 5);
    assert_false(s_pack('s', "\xc3", &v, &zone, &buf));
    msgpack_sbuffer_destroy(&buf);
    msgpack_zone_destroy(&zone);
}

static const char *s_lookup(void *ctx, route_from_t from, const char *source)
{
    (void)ctx;
    if (from == ROUTE_FROM_QUERY && strcmp(source, "limit") == 0)
        return "10";
    if (from == ROUTE_FROM_HEADER && strcmp(source, "Idempotency-Key") == 0)
        return "k1";
    return NULL;
}

static void test_collect(void **state)
{
    (void)state;
    route_t route = {.method = "GET",
                     .path = "/v1/x/{id}",
                     .service = "s",
                     .op = "o",
                     .query = "q,limit:int",
                     .headers = "Idempotency-Key>idempotency_key"};
    route_match_t match = {.n_params = 1,
                           .param_name = {"id"},
                           .param_name_len = {2},
                           .param_value = {"abc"},
                           .param_value_len = {3}};
    route_arg_t args[4];
    int n = route_args_collect(&route, &match, s_lookup, NULL, args, 4);
    assert_int_equal(n, 3);
    assert_memory_equal(args[0].name, "id", 2);
    assert_memory_equal(args[1].name, "limit", 5);
    assert_int_equal(args[1].type, 'i');
    assert_memory_equal(args[2].name, "idempotency_key", 15);
    assert_int_equal(args[2].name_len, 15);
    assert_true(route_args_named(args, n, "limit", 5));
    assert_false(route_args_named(args, n, "q", 1));
    /* room for fewer: the first ones, never past the array */
    assert_int_equal(route_args_collect(&route, &match, s_lookup, NULL, args, 2), 2);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_int_limits),
        cmocka_unit_test(test_bool_and_str),
        cmocka_unit_test(test_collect),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*  test_call.c - the handler API of protocol/call.h.
 *
 *  Handlers trust call_arg_*() to enforce types, bounds and presence, and
 *  clients trust invalid_argument's details to name every bad field, so
 *  each reader is tested with an argument present, absent (optional and
 *  required), nil, of the wrong type, out of range and too long. Replies
 *  are never inspected as raw bytes: each is decoded with
 *  envelope_decode_reply(), as a client would, after passing mpcheck() with
 *  the envelope's limits, which proves the reply is one well-formed value
 *  with nothing left over from a reply that was replaced.
 *
 *  A reply that cannot be built whole (over ENVELOPE_MAX_BYTES, or out of
 *  memory: a write of NO_MEMORY_LEN bytes, which realloc refuses) must
 *  come out as an error envelope that decodes, with the request's id, or
 *  the pre-encoded one when not even that fits; never a truncated reply.
 */
#include "protocol/call.h"
#include "protocol/envelope.h"
#include "protocol/mpcheck.h"
#include "tests/testutil.h"

#include <stdlib.h>
#include <string.h>

/* More than any allocator gives: the write fails before a byte is copied. */
#define NO_MEMORY_LEN (SIZE_MAX / 2)

/* Under AddressSanitizer a refused allocation must return NULL, as the
 * C library's does, instead of stopping the program (it still prints a
 * warning for each refusal). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}

/* One request under test: its bytes, the decoded envelope, the call. */
typedef struct {
    msgpack_sbuffer body;
    msgpack_zone zone;
    envelope_request_t rq;
    call_t *call;
    /* The last decoded reply. */
    msgpack_zone reply_zone;
    envelope_reply_t reply;
} fx_t;

/* Args used by most tests, packed as the request's "args" map. */
static void s_pack_args(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 12);
    mp_pack_str(pk, "name");
    mp_pack_str(pk, "Blue mug");
    mp_pack_str(pk, "qty");
    msgpack_pack_int(pk, 3);
    mp_pack_str(pk, "delta");
    msgpack_pack_int(pk, -7);
    mp_pack_str(pk, "big");
    msgpack_pack_uint64(pk, UINT64_MAX);
    mp_pack_str(pk, "ratio");
    msgpack_pack_double(pk, 2.0);
    mp_pack_str(pk, "flag");
    msgpack_pack_true(pk);
    mp_pack_str(pk, "obj");
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "k");
    msgpack_pack_int(pk, 1);
    mp_pack_str(pk, "list");
    msgpack_pack_array(pk, 2);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, 2);
    mp_pack_str(pk, "nothing");
    msgpack_pack_nil(pk);
    mp_pack_str(pk, "text_num");
    mp_pack_str(pk, "5");
    mp_pack_str(pk, "empty");
    mp_pack_str(pk, "");
    mp_pack_str(pk, "raw");
    msgpack_pack_bin(pk, 2);
    msgpack_pack_bin_body(pk, "\x00\x01", 2);
}

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    msgpack_sbuffer_init(&f->body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &f->body, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mp_pack_str(&pk, "id");
    mp_pack_str(&pk, "req-42");
    mp_pack_str(&pk, "op");
    mp_pack_str(&pk, "catalog.create");
    mp_pack_str(&pk, "args");
    s_pack_args(&pk);
    msgpack_zone_init(&f->zone, 1024);
    const char *message = NULL;
    if (!envelope_decode_request(f->body.data, f->body.size, &f->zone, &f->rq, &message))
        fail_msg("fixture request refused: %s", message);
    f->call = call_new();
    assert_non_null(f->call);
    call_start(f->call, &f->rq, "alice");
    msgpack_zone_init(&f->reply_zone, 1024);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    call_destroy(&f->call);
    assert_null(f->call);
    call_destroy(&f->call); /* harmless twice */
    msgpack_zone_destroy(&f->reply_zone);
    msgpack_zone_destroy(&f->zone);
    msgpack_sbuffer_destroy(&f->body);
    free(f);
    return 0;
}

/* Takes the call's reply, checks it is one strict value and decodes it
 * into f->reply. */
static void s_reply(fx_t *f)
{
    size_t len = 0;
    const char *bytes = call_reply_bytes(f->call, &len);
    assert_non_null(bytes);
    assert_true(len > 0);
    mp_status_t st = mpcheck((const uint8_t *)bytes, len, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH);
    if (st != MP_OK)
        fail_msg("reply is not strict msgpack: %s", mpcheck_strerror(st));
    msgpack_zone_clear(&f->reply_zone);
    const char *message = NULL;
    if (!envelope_decode_reply(bytes, len, &f->reply_zone, &f->reply, &message))
        fail_msg("reply does not decode: %s", message);
    /* The id is always echoed. */
    assert_true(mp_str_eq(&f->reply.id, "req-42"));
}

/* Asserts the reply is an error with this code. */
static void s_assert_error(fx_t *f, err_code_t code)
{
    s_reply(f);
    assert_false(f->reply.ok);
    if (f->reply.code != code)
        fail_msg("reply code %s, expected %s", err_code_name(f->reply.code), err_code_name(code));
}

/* Asserts the reply is invalid_argument whose details.fields are exactly
 * the n (field, problem) pairs given, in order. */
static void s_assert_fields(fx_t *f, const char *const pairs[][2], size_t n)
{
    s_assert_error(f, ERR_INVALID_ARGUMENT);
    const msgpack_object *details = mp_map_get(&f->reply.error, "details");
    assert_non_null(details);
    const msgpack_object *fields = mp_map_get(details, "fields");
    assert_non_null(fields);
    assert_int_equal(fields->type, MSGPACK_OBJECT_ARRAY);
    if (fields->via.array.size != n)
        fail_msg("%u fields listed, expected %zu", fields->via.array.size, n);
    for (size_t i = 0; i < n; i++) {
        const msgpack_object *e = &fields->via.array.ptr[i];
        assert_int_equal(e->type, MSGPACK_OBJECT_MAP);
        if (!mp_str_eq(mp_map_get(e, "field"), pairs[i][0]) ||
            !mp_str_eq(mp_map_get(e, "problem"), pairs[i][1]))
            fail_msg("entry %zu is not {%s, %s}", i, pairs[i][0], pairs[i][1]);
    }
    const msgpack_object *message = mp_map_get(&f->reply.error, "message");
    assert_non_null(message);
    assert_int_equal(message->type, MSGPACK_OBJECT_STR);
    assert_true(message->via.str.size > 0);
}

/* Asserts the error message equals text. */
static void s_assert_message(fx_t *f, const char *text)
{
    const msgpack_object *m = mp_map_get(&f->reply.error, "message");
    if (!mp_str_eq(m, text))
        fail_msg("message is '%.*s', expected '%s'", m ? (int)m->via.str.size : 0,
                 m ? m->via.str.ptr : "", text);
}

/* ---- readers ---- */

static void test_arg_str(void **state)
{
    fx_t *f = *state;
    const char *s = "untouched";
    size_t n = 999;
    assert_true(call_arg_str(f->call, "name", ARG_REQUIRED, 200, &s, &n));
    assert_int_equal(n, strlen("Blue mug"));
    assert_memory_equal(s, "Blue mug", n);
    /* Exactly max_len is fine; empty strings are strings. */
    assert_true(call_arg_str(f->call, "name", ARG_REQUIRED, 8, &s, &n));
    assert_true(call_arg_str(f->call, "empty", ARG_REQUIRED, 8, &s, &n));
    assert_int_equal(n, 0);
    /* Absent and nil, optional: false, out untouched, no problem. */
    s = "untouched";
    n = 999;
    assert_false(call_arg_str(f->call, "missing", ARG_OPTIONAL, 10, &s, &n));
    assert_false(call_arg_str(f->call, "nothing", ARG_OPTIONAL, 10, &s, &n));
    assert_string_equal(s, "untouched");
    assert_int_equal(n, 999);
    assert_true(call_args_ok(f->call));

    /* Problems, each recorded; out stays untouched. */
    assert_false(call_arg_str(f->call, "missing", ARG_REQUIRED, 10, &s, &n));
    assert_false(call_arg_str(f->call, "nothing", ARG_REQUIRED, 10, &s, &n));
    assert_false(call_arg_str(f->call, "qty", ARG_OPTIONAL, 10, &s, &n));
    assert_false(call_arg_str(f->call, "raw", ARG_REQUIRED, 10, &s, &n));
    assert_false(call_arg_str(f->call, "name", ARG_REQUIRED, 7, &s, &n));
    assert_string_equal(s, "untouched");
    assert_int_equal(n, 999);
    assert_false(call_args_ok(f->call));
    static const char *const want[][2] = {{"missing", "is required"},
                                          {"nothing", "is required"},
                                          {"qty", "must be a string"},
                                          {"raw", "must be a string"},
                                          {"name", "is too long"}};
    s_assert_fields(f, want, 5);
}

static void test_arg_int(void **state)
{
    fx_t *f = *state;
    int64_t v = 12345;
    assert_true(call_arg_int(f->call, "qty", ARG_REQUIRED, 1, 1000, &v));
    assert_int_equal(v, 3);
    assert_true(call_arg_int(f->call, "delta", ARG_REQUIRED, -100, 100, &v));
    assert_int_equal(v, -7);
    /* Bounds are inclusive. */
    assert_true(call_arg_int(f->call, "qty", ARG_REQUIRED, 3, 3, &v));
    assert_true(call_arg_int(f->call, "delta", ARG_REQUIRED, INT64_MIN, -7, &v));
    assert_false(call_arg_int(f->call, "absent", ARG_OPTIONAL, 0, 1, &v));
    assert_false(call_arg_int(f->call, "nothing", ARG_OPTIONAL, 0, 1, &v));
    assert_true(call_args_ok(f->call));

    v = 12345;
    assert_false(call_arg_int(f->call, "qty", ARG_REQUIRED, 4, 10, &v));    /* below */
    assert_false(call_arg_int(f->call, "delta", ARG_REQUIRED, -6, 10, &v)); /* below, negative */
    assert_false(call_arg_int(f->call, "qty", ARG_REQUIRED, 0, 2, &v));     /* above */
    /* UINT64_MAX does not fit an int64_t, whatever the bounds. */
    assert_false(call_arg_int(f->call, "big", ARG_REQUIRED, INT64_MIN, INT64_MAX, &v));
    assert_false(call_arg_int(f->call, "ratio", ARG_REQUIRED, 0, 10, &v));    /* a float */
    assert_false(call_arg_int(f->call, "text_num", ARG_REQUIRED, 0, 10, &v)); /* "5" */
    assert_false(call_arg_int(f->call, "flag", ARG_OPTIONAL, 0, 10, &v));
    assert_false(call_arg_int(f->call, "absent", ARG_REQUIRED, 0, 10, &v));
    assert_int_equal(v, 12345);
    assert_false(call_args_ok(f->call));
    static const char *const want[][2] = {
        {"qty", "is out of range"},      {"delta", "is out of range"},
        {"qty", "is out of range"},      {"big", "is out of range"},
        {"ratio", "must be an integer"}, {"text_num", "must be an integer"},
        {"flag", "must be an integer"},  {"absent", "is required"},
    };
    s_assert_fields(f, want, 8);
}

static void test_arg_bool(void **state)
{
    fx_t *f = *state;
    bool b = false;
    assert_true(call_arg_bool(f->call, "flag", ARG_REQUIRED, &b));
    assert_true(b);
    b = false;
    assert_false(call_arg_bool(f->call, "absent", ARG_OPTIONAL, &b));
    assert_false(call_arg_bool(f->call, "nothing", ARG_OPTIONAL, &b));
    assert_true(call_args_ok(f->call));
    assert_false(call_arg_bool(f->call, "qty", ARG_OPTIONAL, &b)); /* 1 is not true */
    assert_false(call_arg_bool(f->call, "text_num", ARG_REQUIRED, &b));
    assert_false(call_arg_bool(f->call, "absent", ARG_REQUIRED, &b));
    assert_false(b);
    assert_false(call_args_ok(f->call));
    static const char *const want[][2] = {
        {"qty", "must be a boolean"}, {"text_num", "must be a boolean"}, {"absent", "is required"}};
    s_assert_fields(f, want, 3);
}

static void test_arg_containers(void **state)
{
    fx_t *f = *state;
    const msgpack_object *o = NULL;
    assert_true(call_arg_map(f->call, "obj", ARG_REQUIRED, &o));
    assert_non_null(o);
    assert_int_equal(o->type, MSGPACK_OBJECT_MAP);
    assert_non_null(mp_map_get(o, "k"));
    o = NULL;
    assert_true(call_arg_array(f->call, "list", ARG_REQUIRED, &o));
    assert_int_equal(o->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(o->via.array.size, 2);
    /* any: every type, but nil is absent. */
    static const char *const any_ok[] = {"name", "qty",  "big", "ratio", "flag",
                                         "obj",  "list", "raw", "empty"};
    for (size_t i = 0; i < sizeof any_ok / sizeof any_ok[0]; i++) {
        o = NULL;
        assert_true(call_arg_any(f->call, any_ok[i], ARG_REQUIRED, &o));
        assert_non_null(o);
    }
    o = NULL;
    assert_false(call_arg_any(f->call, "nothing", ARG_OPTIONAL, &o));
    assert_false(call_arg_map(f->call, "absent", ARG_OPTIONAL, &o));
    assert_false(call_arg_array(f->call, "absent", ARG_OPTIONAL, &o));
    assert_null(o);
    assert_true(call_args_ok(f->call));

    assert_false(call_arg_map(f->call, "list", ARG_REQUIRED, &o));
    assert_false(call_arg_map(f->call, "name", ARG_OPTIONAL, &o));
    assert_false(call_arg_array(f->call, "obj", ARG_REQUIRED, &o));
    assert_false(call_arg_array(f->call, "raw", ARG_OPTIONAL, &o));
    assert_false(call_arg_any(f->call, "nothing", ARG_REQUIRED, &o));
    assert_false(call_arg_map(f->call, "absent", ARG_REQUIRED, &o));
    assert_null(o);
    assert_false(call_args_ok(f->call));
    static const char *const want[][2] = {
        {"list", "must be an object"}, {"name", "must be an object"}, {"obj", "must be an array"},
        {"raw", "must be an array"},   {"nothing", "is required"},    {"absent", "is required"},
    };
    s_assert_fields(f, want, 6);
}

/* ---- invalid_argument ---- */

static void test_args_message(void **state)
{
    fx_t *f = *state;
    int64_t v;
    /* One problem: the message names it and says nothing of more. */
    call_arg_int(f->call, "qty", ARG_REQUIRED, 10, 20, &v);
    assert_false(call_args_ok(f->call));
    static const char *const one[][2] = {{"qty", "is out of range"}};
    s_assert_fields(f, one, 1);
    s_assert_message(f, "invalid argument: qty is out of range");

    /* A handler's own check, then a reader's: both listed, first named. */
    call_start(f->call, &f->rq, "alice");
    call_arg_invalid(f->call, "email", "is not an email address");
    call_arg_int(f->call, "qty", ARG_REQUIRED, 10, 20, &v);
    assert_false(call_args_ok(f->call));
    static const char *const two[][2] = {{"email", "is not an email address"},
                                         {"qty", "is out of range"}};
    s_assert_fields(f, two, 2);
    s_assert_message(f, "invalid argument: email is not an email address (and more, see details)");
}

static void test_args_many(void **state)
{
    fx_t *f = *state;
    /* More problems than the call keeps: no overflow, a bounded list of
     * the first ones, still invalid_argument. */
    const char *names[40];
    char buf[40][16];
    for (int i = 0; i < 40; i++) {
        snprintf(buf[i], sizeof buf[i], "f%02d", i);
        names[i] = buf[i];
        call_arg_invalid(f->call, names[i], "is bad");
    }
    assert_false(call_args_ok(f->call));
    s_assert_error(f, ERR_INVALID_ARGUMENT);
    const msgpack_object *fields = mp_map_get(mp_map_get(&f->reply.error, "details"), "fields");
    assert_non_null(fields);
    assert_true(fields->via.array.size >= 1 && fields->via.array.size <= 40);
    for (uint32_t i = 0; i < fields->via.array.size; i++)
        assert_true(mp_str_eq(mp_map_get(&fields->via.array.ptr[i], "field"), names[i]));
    s_assert_message(f, "invalid argument: f00 is bad (and more, see details)");
}

/* ---- replies ---- */

static void test_reply_ok(void **state)
{
    fx_t *f = *state;
    const char *name;
    size_t len;
    assert_true(call_arg_str(f->call, "name", ARG_REQUIRED, 200, &name, &len));
    assert_true(call_args_ok(f->call));
    msgpack_packer *pk = call_reply(f->call);
    assert_non_null(pk);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "sku");
    mp_pack_str(pk, "MUG-1");
    mp_pack_str(pk, "name");
    mp_pack_strn(pk, name, len);
    s_reply(f);
    assert_true(f->reply.ok);
    assert_int_equal(f->reply.data.type, MSGPACK_OBJECT_MAP);
    assert_true(mp_str_eq(mp_map_get(&f->reply.data, "sku"), "MUG-1"));
    assert_true(mp_str_eq(mp_map_get(&f->reply.data, "name"), "Blue mug"));

    /* Exactly {"id","ok","data"} at the top. */
    size_t n;
    const char *bytes = call_reply_bytes(f->call, &n);
    msgpack_object top;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(bytes, n, &off, &f->reply_zone, &top), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(top.via.map.size, 3);
    assert_true(mp_str_eq(&top.via.map.ptr[0].key, "id"));
    assert_true(mp_str_eq(&top.via.map.ptr[1].key, "ok"));
    assert_true(mp_str_eq(&top.via.map.ptr[2].key, "data"));

    /* A second call_reply starts over. */
    pk = call_reply(f->call);
    msgpack_pack_nil(pk);
    s_reply(f);
    assert_true(f->reply.ok);
    assert_int_equal(f->reply.data.type, MSGPACK_OBJECT_NIL);
}

static void test_fail_replaces(void **state)
{
    fx_t *f = *state;
    /* A reply begun, half packed, then abandoned for an error. */
    msgpack_packer *pk = call_reply(f->call);
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, 1);
    char message[32];
    snprintf(message, sizeof message, "no such sku");
    call_fail(f->call, ERR_NOT_FOUND, message);
    memset(message, 'X', sizeof message - 1); /* the call copied it */
    s_assert_error(f, ERR_NOT_FOUND);
    s_assert_message(f, "no such sku");
    assert_null(mp_map_get(&f->reply.error, "details"));

    /* A later failure replaces an earlier one. */
    call_fail(f->call, ERR_CONFLICT, "first");
    call_fail(f->call, ERR_OUT_OF_STOCK, "second");
    s_assert_error(f, ERR_OUT_OF_STOCK);
    s_assert_message(f, "second");

    /* With details. */
    msgpack_sbuffer d;
    msgpack_sbuffer_init(&d);
    msgpack_packer dpk;
    msgpack_packer_init(&dpk, &d, msgpack_sbuffer_write);
    msgpack_pack_map(&dpk, 1);
    mp_pack_str(&dpk, "available");
    msgpack_pack_int(&dpk, 2);
    call_fail_details(f->call, ERR_OUT_OF_STOCK, "only 2 left", d.data, d.size);
    msgpack_sbuffer_destroy(&d); /* copied */
    s_assert_error(f, ERR_OUT_OF_STOCK);
    const msgpack_object *details = mp_map_get(&f->reply.error, "details");
    assert_non_null(details);
    const msgpack_object *avail = mp_map_get(details, "available");
    assert_non_null(avail);
    assert_int_equal(avail->via.u64, 2);

    /* invalid_argument replaces a begun reply too. */
    pk = call_reply(f->call);
    mp_pack_str(pk, "partial");
    call_arg_invalid(f->call, "x", "is wrong");
    assert_false(call_args_ok(f->call));
    static const char *const want[][2] = {{"x", "is wrong"}};
    s_assert_fields(f, want, 1);
}

static void test_no_answer(void **state)
{
    fx_t *f = *state;
    /* A handler that read its arguments and returned without answering. */
    int64_t v;
    assert_true(call_arg_int(f->call, "qty", ARG_REQUIRED, 0, 10, &v));
    assert_true(call_args_ok(f->call));
    s_assert_error(f, ERR_INTERNAL);
    /* Asking again gives the same answer. */
    s_assert_error(f, ERR_INTERNAL);
}

static void test_caller_and_reuse(void **state)
{
    fx_t *f = *state;
    assert_string_equal(call_caller(f->call), "alice");
    assert_ptr_equal(call_request(f->call), &f->rq);
    assert_ptr_equal(call_args(f->call), &f->rq.args);
    assert_int_equal(call_args(f->call)->type, MSGPACK_OBJECT_MAP);

    /* A failed request, then the same call reused: no problems, no reply
     * and no caller carried over. */
    call_arg_invalid(f->call, "x", "is wrong");
    assert_false(call_args_ok(f->call));
    call_start(f->call, &f->rq, NULL);
    assert_string_equal(call_caller(f->call), "");
    assert_true(call_args_ok(f->call));
    s_assert_error(f, ERR_INTERNAL);

    call_start(f->call, &f->rq, "pool-catalog");
    assert_string_equal(call_caller(f->call), "pool-catalog");
    msgpack_pack_true(call_reply(f->call));
    s_reply(f);
    assert_true(f->reply.ok);
    assert_int_equal(f->reply.data.type, MSGPACK_OBJECT_BOOLEAN);
    assert_true(f->reply.data.via.boolean);
}

/* ---- replies that cannot be built ---- */

static void test_reply_over_limit(void **state)
{
    fx_t *f = *state;
    /* The envelope around a nil sizes a reply that fills the limit. */
    msgpack_pack_nil(call_reply(f->call));
    size_t around = 0;
    assert_non_null(call_reply_bytes(f->call, &around));
    around -= 1;
    size_t body = ENVELOPE_MAX_BYTES - around - 5; /* bin 32's header */
    char *blob = calloc(1, ENVELOPE_MAX_BYTES + 1);
    assert_non_null(blob);

    msgpack_packer *pk = call_reply(f->call);
    assert_int_equal(msgpack_pack_bin(pk, body), 0);
    assert_int_equal(msgpack_pack_bin_body(pk, blob, body), 0);
    size_t len = 0;
    call_reply_bytes(f->call, &len);
    assert_int_equal(len, ENVELOPE_MAX_BYTES);
    s_reply(f);
    assert_true(f->reply.ok);
    assert_int_equal(f->reply.data.type, MSGPACK_OBJECT_BIN);
    assert_int_equal(f->reply.data.via.bin.size, body);

    /* One byte more: an error with the request's id, not a cut reply. */
    pk = call_reply(f->call);
    assert_int_equal(msgpack_pack_bin(pk, body + 1), 0);
    assert_int_equal(msgpack_pack_bin_body(pk, blob, body + 1), -1);
    /* A handler that packs on regardless changes nothing. */
    assert_int_equal(msgpack_pack_nil(pk), -1);
    s_assert_error(f, ERR_INTERNAL);
    s_assert_message(f, ENVELOPE_MSG_TOO_LARGE);
    /* Asked again, the same answer. */
    s_assert_error(f, ERR_INTERNAL);

    /* Far over, in many small values, as a long list would be. */
    pk = call_reply(f->call);
    msgpack_pack_array(pk, 100000);
    for (int i = 0; i < 100000; i++)
        mp_pack_strn(pk, blob, 100);
    s_assert_error(f, ERR_INTERNAL);
    s_assert_message(f, ENVELOPE_MSG_TOO_LARGE);

    /* The next reply of the same call is whole again. */
    msgpack_pack_true(call_reply(f->call));
    s_reply(f);
    assert_true(f->reply.ok);
    assert_int_equal(f->reply.data.type, MSGPACK_OBJECT_BOOLEAN);

    /* Details over the limit are refused the same way. */
    assert_int_equal(msgpack_pack_nil(call_reply(f->call)), 0);
    call_fail_details(f->call, ERR_CONFLICT, "big details", blob, ENVELOPE_MAX_BYTES);
    s_assert_error(f, ERR_INTERNAL);
    s_assert_message(f, ENVELOPE_MSG_TOO_LARGE);
    free(blob);
}

static void test_fail_packed(void **state)
{
    fx_t *f = *state;
    mpout_t details;
    mpout_init(&details, 0);
    msgpack_packer pk;
    mpout_packer(&details, &pk);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "retry_after");
    msgpack_pack_int(&pk, 2);
    call_fail_packed(f->call, ERR_RATE_LIMITED, "slow down", &details);
    s_assert_error(f, ERR_RATE_LIMITED);
    s_assert_message(f, "slow down");
    const msgpack_object *retry = mp_map_get(mp_map_get(&f->reply.error, "details"), "retry_after");
    assert_non_null(retry);
    assert_int_equal(retry->via.u64, 2);

    /* Details that ran out of memory: unavailable, with the id. */
    mpout_clear(&details);
    msgpack_pack_map(&pk, 1);
    assert_int_equal(mp_pack_raw(&pk, "\xc0", NO_MEMORY_LEN), -1);
    assert_true(details.failed && !details.over_limit);
    call_fail_packed(f->call, ERR_RATE_LIMITED, "slow down", &details);
    s_assert_error(f, ERR_UNAVAILABLE);
    s_assert_message(f, ENVELOPE_MSG_OUT_OF_MEMORY);
    assert_null(mp_map_get(&f->reply.error, "details"));
    mpout_destroy(&details);

    /* Details over their output's limit: internal. */
    mpout_init(&details, 4);
    mpout_packer(&details, &pk);
    mp_pack_str(&pk, "too long for four bytes");
    call_fail_packed(f->call, ERR_RATE_LIMITED, "slow down", &details);
    s_assert_error(f, ERR_INTERNAL);
    s_assert_message(f, ENVELOPE_MSG_TOO_LARGE);
    mpout_destroy(&details);
}

/* A request of exactly ENVELOPE_MAX_BYTES whose id is one long string:
 * no error reply that echoes it fits the limit. */
static void s_huge_id_request(msgpack_sbuffer *body, size_t id_len, char *id)
{
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, body, msgpack_sbuffer_write);
    assert_int_equal(msgpack_pack_map(&pk, 3), 0);
    assert_int_equal(mp_pack_str(&pk, "id"), 0);
    assert_int_equal(mp_pack_strn(&pk, id, id_len), 0);
    assert_int_equal(mp_pack_str(&pk, "op"), 0);
    assert_int_equal(mp_pack_str(&pk, "x"), 0);
    assert_int_equal(mp_pack_str(&pk, "args"), 0);
    assert_int_equal(msgpack_pack_map(&pk, 0), 0);
}

static void test_id_too_large_to_echo(void **state)
{
    (void)state;
    size_t id_len = ENVELOPE_MAX_BYTES - 64;
    char *id = malloc(ENVELOPE_MAX_BYTES);
    assert_non_null(id);
    memset(id, 'i', ENVELOPE_MAX_BYTES);
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    s_huge_id_request(&body, id_len, id);
    id_len += ENVELOPE_MAX_BYTES - body.size;
    s_huge_id_request(&body, id_len, id);
    assert_int_equal(body.size, ENVELOPE_MAX_BYTES);
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 1024));
    envelope_request_t rq;
    const char *why;
    if (!envelope_decode_request(body.data, body.size, &zone, &rq, &why))
        fail_msg("request refused: %s", why);
    call_t *call = call_new();
    assert_non_null(call);
    call_start(call, &rq, "alice");

    /* A small ok reply with that id still fits ({"id","ok","data"} is
     * shorter than {"id","op","args"}). */
    msgpack_pack_nil(call_reply(call));
    size_t len = 0;
    const char *bytes = call_reply_bytes(call, &len);
    msgpack_zone reply_zone;
    assert_true(msgpack_zone_init(&reply_zone, 1024));
    envelope_reply_t reply;
    assert_true(envelope_decode_reply(bytes, len, &reply_zone, &reply, &why));
    assert_true(reply.ok);
    assert_int_equal(reply.id.type, MSGPACK_OBJECT_STR);
    assert_int_equal(reply.id.via.str.size, id_len);

    /* A larger one does not, nor does its error: the fixed reply, nil id. */
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_bin(pk, 64);
    msgpack_pack_bin_body(pk, id, 64);
    bytes = call_reply_bytes(call, &len);
    size_t fixed_len = 0;
    const char *fixed = envelope_reply_fixed(ENVELOPE_FIXED_TOO_LARGE, &fixed_len);
    assert_int_equal(len, fixed_len);
    assert_memory_equal(bytes, fixed, len);
    msgpack_zone_clear(&reply_zone);
    assert_true(envelope_decode_reply(bytes, len, &reply_zone, &reply, &why));
    assert_false(reply.ok);
    assert_int_equal(reply.id.type, MSGPACK_OBJECT_NIL);
    assert_int_equal(reply.code, ERR_INTERNAL);
    /* Stable when asked again; gone at the next request. */
    assert_ptr_equal(call_reply_bytes(call, &len), fixed);
    call_start(call, &rq, "alice");
    msgpack_pack_nil(call_reply(call));
    assert_ptr_not_equal(call_reply_bytes(call, &len), fixed);

    call_destroy(&call);
    msgpack_zone_destroy(&reply_zone);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&body);
    free(id);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_arg_str, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_arg_int, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_arg_bool, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_arg_containers, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_args_message, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_args_many, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reply_ok, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_fail_replaces, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_answer, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_caller_and_reuse, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_reply_over_limit, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_fail_packed, s_setup, s_teardown),
        cmocka_unit_test(test_id_too_large_to_echo),
    };
    return cmocka_run_group_tests_name("call", tests, NULL, NULL);
}

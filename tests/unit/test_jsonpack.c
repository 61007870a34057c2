/*  test_jsonpack.c - unit tests of protocol/jsonpack (JSON <-> msgpack).
 *
 *  Round trips compare with json_equal(), which tells integers from reals,
 *  so a test fails if a conversion changes a number's kind. Every refusal
 *  is checked for three things: the -1 return, a non-empty message, and
 *  an output left untouched. Each test frees what it made, so the binary
 *  is also meaningful under AddressSanitizer's leak checker.
 */
#include "protocol/jsonpack.h"
#include "protocol/envelope.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEEP 64 /* a max_depth that never gets in the way of a test */

/* JSON -> msgpack bytes -> JSON text (compact); returns the malloc'd text. */
static char *s_roundtrip(const char *json, int max_depth)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    int rc = jsonpack_from_json(json, strlen(json), &sb, max_depth, err, sizeof err);
    char *text = NULL;
    if (rc == 0)
        text = jsonpack_bytes_to_json_text(sb.data, sb.size, 0, err, sizeof err);
    msgpack_sbuffer_destroy(&sb);
    if (!text)
        fail_msg("round trip of %s failed: %s", json, err);
    return text;
}

/* Asserts that two JSON texts hold equal values (json_equal). */
static void s_assert_same_json(const char *expected, const char *actual)
{
    json_error_t jerr;
    json_t *a = json_loads(expected, JSON_DECODE_ANY, &jerr);
    json_t *b = json_loads(actual, JSON_DECODE_ANY, &jerr);
    int equal = a && b && json_equal(a, b);
    json_decref(a);
    json_decref(b);
    if (!equal)
        fail_msg("expected %s, got %s", expected, actual);
}

static void s_assert_roundtrip(const char *json)
{
    char *text = s_roundtrip(json, DEEP);
    s_assert_same_json(json, text);
    free(text);
}

/* Asserts that json[0..len) is refused with a message and no output. */
static void s_assert_json_rejected(const char *json, size_t len, int max_depth)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    int rc = jsonpack_from_json(json, len, &sb, max_depth, err, sizeof err);
    size_t written = sb.size;
    msgpack_sbuffer_destroy(&sb);
    if (rc != -1)
        fail_msg("accepted: %.*s", (int)len, json);
    assert_int_equal(written, 0);
    assert_true(err[0] != '\0');
}

static void s_assert_rejected_str(const char *json)
{
    s_assert_json_rejected(json, strlen(json), DEEP);
}

/* Unpacks sb into zone (no mpcheck: the tests feed jsonpack_to_json
 * objects that the bytes path would stop earlier). */
static msgpack_object s_unpack(const msgpack_sbuffer *sb, msgpack_zone *zone)
{
    msgpack_object obj;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(sb->data, sb->size, &off, zone, &obj), MSGPACK_UNPACK_SUCCESS);
    return obj;
}

/* Asserts that jsonpack_to_json refuses obj with a message and no value. */
static void s_assert_object_rejected(const msgpack_object *obj)
{
    char err[256] = "";
    json_t *j = json_null(); /* a sentinel that must be reset to NULL */
    assert_int_equal(jsonpack_to_json(obj, &j, err, sizeof err), -1);
    assert_null(j);
    assert_true(err[0] != '\0');
    err[0] = '\0';
    char *text = jsonpack_to_json_text(obj, 0, err, sizeof err);
    assert_null(text);
    assert_true(err[0] != '\0');
}

/* Asserts that the bytes path refuses sb with a message. */
static void s_assert_bytes_rejected(const msgpack_sbuffer *sb)
{
    char err[256] = "";
    char *text = jsonpack_bytes_to_json_text(sb->data, sb->size, 0, err, sizeof err);
    if (text) {
        free(text);
        fail_msg("bytes accepted");
    }
    assert_true(err[0] != '\0');
}

/* ------------------------------------------------------------------ */

static void test_roundtrip_nested(void **state)
{
    (void)state;
    s_assert_roundtrip("{\"a\":{\"b\":[1,2,{\"c\":null}],\"d\":{}},\"e\":[],\"f\":[[[\"x\"]]]}");
    s_assert_roundtrip("[{\"k\":[true,false,null]},{},[],\"\",0]");
}

static void test_roundtrip_unicode(void **state)
{
    (void)state;
    /* Latin-1, BMP symbol, astral plane (a surrogate pair in JSON escapes),
     * escapes and control characters. */
    s_assert_roundtrip("{\"s\":\"h\xc3\xa9llo \xe2\x9c\x93 \xf0\x9f\x98\x80\","
                       "\"\xc3\xa9t\xc3\xa9\":\"key\","
                       "\"esc\":\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"}");
    char *text = s_roundtrip("\"\\u00e9\\ud83d\\ude00\"", DEEP);
    assert_string_equal(text, "\"\xc3\xa9\xf0\x9f\x98\x80\"");
    free(text);
}

static void test_roundtrip_numbers(void **state)
{
    (void)state;
    s_assert_roundtrip("{\"neg\":-42,\"zero\":0,\"max\":9223372036854775807,"
                       "\"min\":-9223372036854775808,\"u32\":4294967296,\"small\":-1}");
    s_assert_roundtrip("[3.25,-0.5,1.0,1e300,-2.5e-300,0.1,123456789.125]");
    /* json_equal tells 1 from 1.0, so this proves kinds survive. */
    char *text = s_roundtrip("[1,1.0,-1,-1.0]", DEEP);
    assert_string_equal(text, "[1,1.0,-1,-1.0]");
    free(text);
}

static void test_roundtrip_scalars(void **state)
{
    (void)state;
    const char *cases[] = {"true", "false", "null", "0", "-7", "2.5", "\"\"", "\"x\""};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = s_roundtrip(cases[i], DEEP);
        assert_string_equal(text, cases[i]);
        free(text);
    }
}

static void test_msgpack_types(void **state)
{
    (void)state;
    const char *json = "{\"i\":9223372036854775807,\"n\":-9223372036854775808,\"r\":1.0,"
                       "\"s\":\"v\",\"t\":true,\"z\":null,\"a\":[1]}";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    assert_int_equal(jsonpack_from_json(json, strlen(json), &sb, DEEP, err, sizeof err), 0);
    assert_true(jsonpack_is_map(sb.data, sb.size));
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 1024));
    msgpack_object top = s_unpack(&sb, &zone);
    assert_int_equal(top.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(top.via.map.size, 7);
    /* jansson keeps insertion order, so the map's order is the text's. */
    assert_true(mp_str_eq(&top.via.map.ptr[0].key, "i"));
    const msgpack_object *v = mp_map_get(&top, "i");
    assert_int_equal(v->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_true(v->via.u64 == (uint64_t)INT64_MAX);
    v = mp_map_get(&top, "n");
    assert_int_equal(v->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
    assert_true(v->via.i64 == INT64_MIN);
    v = mp_map_get(&top, "r");
    assert_int_equal(v->type, MSGPACK_OBJECT_FLOAT64);
    assert_true(v->via.f64 == 1.0);
    assert_true(mp_str_eq(mp_map_get(&top, "s"), "v"));
    assert_int_equal(mp_map_get(&top, "t")->type, MSGPACK_OBJECT_BOOLEAN);
    assert_int_equal(mp_map_get(&top, "z")->type, MSGPACK_OBJECT_NIL);
    assert_int_equal(mp_map_get(&top, "a")->type, MSGPACK_OBJECT_ARRAY);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

static void test_text_flags(void **state)
{
    (void)state;
    const char *json = "{\"b\":1,\"a\":[true,null],\"u\":\"\xc3\xa9\"}";
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    assert_int_equal(jsonpack_from_json(json, strlen(json), &sb, DEEP, err, sizeof err), 0);

    char *text = jsonpack_bytes_to_json_text(sb.data, sb.size, 0, err, sizeof err);
    assert_non_null(text);
    assert_string_equal(text, json); /* compact, same order, raw UTF-8 */
    free(text);

    text = jsonpack_bytes_to_json_text(sb.data, sb.size, JSON_SORT_KEYS | JSON_ENSURE_ASCII, err,
                                       sizeof err);
    assert_non_null(text);
    assert_string_equal(text, "{\"a\": [true, null], \"b\": 1, \"u\": \"\\u00E9\"}");
    free(text);

    text = jsonpack_bytes_to_json_text(sb.data, sb.size, JSON_INDENT(2), err, sizeof err);
    assert_non_null(text);
    assert_non_null(strstr(text, "\n  \"b\": 1"));
    free(text);
    msgpack_sbuffer_destroy(&sb);
}

static void test_jansson_tree(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "f32");
    msgpack_pack_float(&pk, 1.5f);
    mp_pack_str(&pk, "u");
    msgpack_pack_uint64(&pk, (uint64_t)INT64_MAX);

    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 1024));
    msgpack_object obj = s_unpack(&sb, &zone);
    json_t *j = NULL;
    char err[256] = "";
    assert_int_equal(jsonpack_to_json(&obj, &j, err, sizeof err), 0);
    assert_non_null(j);
    json_t *expected = json_pack("{s:f,s:I}", "f32", 1.5, "u", (json_int_t)INT64_MAX);
    assert_non_null(expected);
    assert_true(json_equal(j, expected));
    json_decref(expected);
    json_decref(j);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

static void test_large_text(void **state)
{
    (void)state;
    /* Enough output to make the text buffer grow many times. */
    const int n = 20000;
    size_t cap = (size_t)n * 16 + 16;
    char *json = malloc(cap);
    assert_non_null(json);
    size_t len = 0;
    json[len++] = '[';
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(json + len, cap - len, "%s\"item-%d\"", i ? "," : "", i);
    json[len++] = ']';
    json[len] = '\0';
    char *text = s_roundtrip(json, 1);
    assert_string_equal(text, json);
    free(text);
    free(json);
}

static void test_append_and_restore(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "\x92", 1); /* a caller's half-built array */
    char err[256] = "";
    assert_int_equal(jsonpack_from_json("{\"a\":1}", 7, &sb, DEEP, err, sizeof err), 0);
    size_t after_ok = sb.size;
    assert_true(after_ok > 1);
    /* A failure deep inside (after bytes were written) must cut back. */
    const char *bad = "{\"a\":[1,2,[3,[4]]]}";
    assert_int_equal(jsonpack_from_json(bad, strlen(bad), &sb, 3, err, sizeof err), -1);
    assert_int_equal(sb.size, after_ok);
    assert_true(err[0] != '\0');
    msgpack_sbuffer_destroy(&sb);
}

/* The input need not be NUL-terminated: only len bytes are read. */
static void test_length_bounded(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    const char text[] = "[1,2]garbage";
    assert_int_equal(jsonpack_from_json(text, 5, &sb, DEEP, err, sizeof err), 0);
    assert_false(jsonpack_is_map(sb.data, sb.size));
    msgpack_sbuffer_destroy(&sb);
}

/* ------------------------------------------------------------------ */

static void test_reject_malformed(void **state)
{
    (void)state;
    const char *cases[] = {"",         " ",         "{",         "{\"a\":}", "{'a':1}",
                           "[1,2",     "[1,]",      "{\"a\" 1}", "tru",      "NaN",
                           "Infinity", "01",        "1.",        "\"abc",    "{\"a\":1,}",
                           "/* */{}",  "\"\\x41\"", "\"a\tb\"",  "{1:2}",    "-"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        s_assert_rejected_str(cases[i]);

    /* Syntax errors carry a position. */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    assert_int_equal(jsonpack_from_json("{\n  \"a\": ?}", 11, &sb, DEEP, err, sizeof err), -1);
    msgpack_sbuffer_destroy(&sb);
    assert_non_null(strstr(err, "line 2"));
    assert_non_null(strstr(err, "column"));

    /* jansson's "near '<token>'" is cut, so input never reaches a log. */
    const char *secret = "{\"password\": hunter2}";
    msgpack_sbuffer_init(&sb);
    assert_int_equal(jsonpack_from_json(secret, strlen(secret), &sb, DEEP, err, sizeof err), -1);
    msgpack_sbuffer_destroy(&sb);
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "invalid token"));
}

static void test_reject_trailing(void **state)
{
    (void)state;
    s_assert_rejected_str("{\"a\":1} x");
    s_assert_rejected_str("{} {}");
    s_assert_rejected_str("1 2");
    s_assert_rejected_str("[]]");
    s_assert_rejected_str("null,");
    /* Whitespace after the value is fine. */
    char *text = s_roundtrip("{} \n\t", DEEP);
    assert_string_equal(text, "{}");
    free(text);
}

static void test_reject_duplicate_keys(void **state)
{
    (void)state;
    s_assert_rejected_str("{\"a\":1,\"a\":2}");
    s_assert_rejected_str("{\"a\":1,\"a\":1}");
    s_assert_rejected_str("{\"x\":[{\"k\":1,\"b\":0,\"k\":null}]}");
    /* Escapes are decoded before comparing. */
    s_assert_rejected_str("{\"a\":1,\"\\u0061\":2}");
}

/* "[[...]]", n arrays deep; malloc'd. */
static char *s_nested_arrays(int n)
{
    char *text = malloc(2 * (size_t)n + 1);
    assert_non_null(text);
    memset(text, '[', (size_t)n);
    memset(text + n, ']', (size_t)n);
    text[2 * n] = '\0';
    return text;
}

static void test_reject_deep(void **state)
{
    (void)state;
    char *text = s_roundtrip("[[[1]]]", 3);
    free(text);
    s_assert_json_rejected("[[[[1]]]]", 9, 3);
    s_assert_json_rejected("{\"a\":{\"b\":{\"c\":{}}}}", 20, 3);
    s_assert_json_rejected("[{\"a\":[{}]}]", 12, 3);
    /* max_depth 0: scalars only. Negative is treated as 0. */
    text = s_roundtrip("\"s\"", 0);
    free(text);
    s_assert_json_rejected("[]", 2, 0);
    s_assert_json_rejected("{}", 2, -5);

    /* A max_depth above the limit is lowered to JSONPACK_DEPTH_LIMIT; one
     * level less than too deep is accepted. */
    char *deep = s_nested_arrays(JSONPACK_DEPTH_LIMIT + 1);
    s_assert_json_rejected(deep, strlen(deep), 100000);
    free(deep);
    deep = s_nested_arrays(JSONPACK_DEPTH_LIMIT);
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char err[256] = "";
    int rc = jsonpack_from_json(deep, strlen(deep), &sb, 100000, err, sizeof err);
    size_t written = sb.size;
    msgpack_sbuffer_destroy(&sb);
    free(deep);
    assert_int_equal(rc, 0);
    assert_int_equal(written, JSONPACK_DEPTH_LIMIT);
}

static void test_reject_int_range(void **state)
{
    (void)state;
    s_assert_rejected_str("9223372036854775808");
    s_assert_rejected_str("-9223372036854775809");
    s_assert_rejected_str("{\"n\":9223372036854775808}");
    s_assert_rejected_str("[-9223372036854775809]");
    s_assert_rejected_str("18446744073709551616");
    s_assert_rejected_str("99999999999999999999999999");
    /* Reals too large for a double are refused, not made infinite. */
    s_assert_rejected_str("1e400");
    s_assert_rejected_str("-1e400");
}

static void test_reject_bad_utf8(void **state)
{
    (void)state;
    s_assert_rejected_str("\"\xff\"");
    s_assert_rejected_str("\"\xc3\"");             /* truncated sequence */
    s_assert_rejected_str("\"\xc0\xaf\"");         /* overlong '/' */
    s_assert_rejected_str("\"\xed\xa0\x80\"");     /* an encoded surrogate */
    s_assert_rejected_str("\"\xf4\x90\x80\x80\""); /* above U+10FFFF */
    s_assert_rejected_str("{\"\xfe\":1}");         /* in a key */
    s_assert_rejected_str("\"\\ud800\"");          /* a lone surrogate escape */
    s_assert_rejected_str("\"\\udc00\\ud800\"");   /* a reversed pair */
}

static void test_reject_nul(void **state)
{
    (void)state;
    s_assert_rejected_str("\"a\\u0000b\"");
    s_assert_rejected_str("{\"a\\u0000\":1}");
    s_assert_rejected_str("[\"\\u0000\"]");
    /* A raw NUL byte, inside a string and outside. */
    s_assert_json_rejected("\"a\0b\"", 5, DEEP);
    s_assert_json_rejected("{}\0", 3, DEEP);
}

static void test_reject_msgpack_key(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_int(&pk, 7);
    msgpack_pack_nil(&pk);
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 1024));
    msgpack_object obj = s_unpack(&sb, &zone);
    s_assert_object_rejected(&obj);
    s_assert_bytes_rejected(&sb);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

static void test_reject_msgpack_duplicate_key(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "k");
    msgpack_pack_int(&pk, 1);
    mp_pack_str(&pk, "k");
    msgpack_pack_int(&pk, 2);
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 1024));
    msgpack_object obj = s_unpack(&sb, &zone);
    s_assert_object_rejected(&obj);
    s_assert_bytes_rejected(&sb);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&sb);
}

static void test_reject_msgpack_ext_bin(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_array(&pk, 1);
        if (kind == 0) {
            msgpack_pack_ext(&pk, 3, 1);
            msgpack_pack_ext_body(&pk, "xyz", 3);
        } else {
            msgpack_pack_bin(&pk, 3);
            msgpack_pack_bin_body(&pk, "xyz", 3);
        }
        msgpack_zone zone;
        assert_true(msgpack_zone_init(&zone, 1024));
        msgpack_object obj = s_unpack(&sb, &zone);
        s_assert_object_rejected(&obj);
        s_assert_bytes_rejected(&sb);
        msgpack_zone_destroy(&zone);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_reject_msgpack_numbers(void **state)
{
    (void)state;
    for (int kind = 0; kind < 4; kind++) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_map(&pk, 1);
        mp_pack_str(&pk, "v");
        switch (kind) {
        case 0:
            msgpack_pack_uint64(&pk, (uint64_t)INT64_MAX + 1);
            break;
        case 1:
            msgpack_pack_uint64(&pk, UINT64_MAX);
            break;
        case 2:
            msgpack_pack_double(&pk, NAN);
            break;
        default:
            msgpack_pack_float(&pk, -INFINITY);
            break;
        }
        msgpack_zone zone;
        assert_true(msgpack_zone_init(&zone, 1024));
        msgpack_object obj = s_unpack(&sb, &zone);
        s_assert_object_rejected(&obj);
        s_assert_bytes_rejected(&sb);
        msgpack_zone_destroy(&zone);
        msgpack_sbuffer_destroy(&sb);
    }
}

static void test_reject_msgpack_bad_utf8(void **state)
{
    (void)state;
    /* Built by hand: the bytes path stops these in mpcheck already. */
    msgpack_object str = {.type = MSGPACK_OBJECT_STR};
    str.via.str.ptr = "\xc0\xaf";
    str.via.str.size = 2;
    s_assert_object_rejected(&str);

    msgpack_object_kv kv = {.key = str, .val = {.type = MSGPACK_OBJECT_NIL}};
    msgpack_object map = {.type = MSGPACK_OBJECT_MAP};
    map.via.map.size = 1;
    map.via.map.ptr = &kv;
    s_assert_object_rejected(&map);

    /* An embedded NUL is valid UTF-8, but the reader refuses \u0000, so
     * the writer refuses it too, in a string and in a key: what one side
     * writes the other reads (found by tests/fuzz/fuzz_mp_to_json.c). */
    str.via.str.ptr = "a\0b";
    str.via.str.size = 3;
    s_assert_object_rejected(&str);
    kv.key = str;
    s_assert_object_rejected(&map);
    /* and so does a msgpack body: it cannot carry what a JSON one cannot */
    const char body[] = "\x81\xa3"
                        "a\0b"
                        "\x01";
    msgpack_sbuffer converted;
    msgpack_sbuffer_init(&converted);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    msgpack_object out;
    char err[256] = "";
    assert_int_equal(jsonpack_body_map(body, sizeof body - 1, true, 1024, 8, &converted, &zone,
                                       &out, err, sizeof err),
                     JSONPACK_BODY_REFUSED);
    assert_non_null(strstr(err, "NUL"));
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&converted);
}

static void test_reject_msgpack_deep(void **state)
{
    (void)state;
    /* A chain of one-element arrays, JSONPACK_DEPTH_LIMIT + 1 deep. */
    msgpack_object chain[JSONPACK_DEPTH_LIMIT + 2];
    for (int i = 0; i <= JSONPACK_DEPTH_LIMIT; i++) {
        chain[i].type = MSGPACK_OBJECT_ARRAY;
        chain[i].via.array.size = 1;
        chain[i].via.array.ptr = &chain[i + 1];
    }
    chain[JSONPACK_DEPTH_LIMIT + 1].type = MSGPACK_OBJECT_NIL;
    s_assert_object_rejected(&chain[0]);
    char err[256] = "";
    json_t *j = NULL;
    assert_int_equal(jsonpack_to_json(&chain[1], &j, err, sizeof err), 0);
    json_decref(j);
}

static void test_reject_bytes(void **state)
{
    (void)state;
    char err[256];
    struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"", 0},                     /* empty */
        {"\x92\x01", 2},             /* truncated array */
        {"\x01\x02", 2},             /* trailing byte */
        {"\xc1", 1},                 /* never-used byte */
        {"\xa2\xc3\x28", 3},         /* bad UTF-8 string */
        {"\xd4\x01\x00", 3},         /* fixext 1 */
        {"\xdd\xff\xff\xff\xff", 5}, /* array claiming 4 billion items */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        char *text = jsonpack_bytes_to_json_text(cases[i].bytes, cases[i].len, 0, err, sizeof err);
        if (text) {
            free(text);
            fail_msg("case %zu accepted", i);
        }
        assert_true(err[0] != '\0');
    }
    /* Deeper than ENVELOPE_MAX_DEPTH. */
    uint8_t deep[ENVELOPE_MAX_DEPTH + 2];
    memset(deep, 0x91, sizeof deep);
    deep[sizeof deep - 1] = 0xc0;
    err[0] = '\0';
    assert_null(jsonpack_bytes_to_json_text(deep, sizeof deep, 0, err, sizeof err));
    assert_true(err[0] != '\0');
    /* Exactly at the limit it passes. */
    char *text = jsonpack_bytes_to_json_text(deep + 1, sizeof deep - 1, 0, err, sizeof err);
    assert_non_null(text);
    free(text);
}

static void test_small_err_buffers(void **state)
{
    (void)state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    char one[1] = {'x'};
    assert_int_equal(jsonpack_from_json("{", 1, &sb, DEEP, one, sizeof one), -1);
    assert_int_equal(one[0], '\0'); /* truncated to nothing, still terminated */
    char small[8];
    assert_int_equal(jsonpack_from_json("{", 1, &sb, DEEP, small, sizeof small), -1);
    assert_int_equal(strlen(small), sizeof small - 1);
    assert_int_equal(jsonpack_from_json("{", 1, &sb, DEEP, NULL, 0), -1);
    assert_null(jsonpack_bytes_to_json_text("", 0, 0, NULL, 0));
    assert_int_equal(sb.size, 0);
    msgpack_sbuffer_destroy(&sb);
}

static void test_is_map(void **state)
{
    (void)state;
    assert_true(jsonpack_is_map("\x80", 1));
    assert_true(jsonpack_is_map("\x8f", 1));
    assert_true(jsonpack_is_map("\xde\x00\x00", 3));
    assert_true(jsonpack_is_map("\xdf\x00\x00\x00\x00", 5));
    assert_false(jsonpack_is_map("\x90", 1));
    assert_false(jsonpack_is_map("\xc0", 1));
    assert_false(jsonpack_is_map("", 0));
    assert_false(jsonpack_is_map(NULL, 0));
}

/* The compact writer (flags 0) must write exactly what jansson's
 * JSON_COMPACT dump writes (reached here through a precision flag, which
 * takes the jansson path), for every kind of value and escape. */
static void test_compact_writer_matches_jansson(void **state)
{
    (void)state;
    static const char *docs[] = {
        "{\"a\":1,\"b\":[true,false,null],\"c\":{\"d\":\"e\"}}",
        "[0,-1,9223372036854775807,-9223372036854775808]",
        "[0.1,1.0,-2.5,1e100,1e-7,123456789.125,5e-324,1.7976931348623157e308,0.0,-0.0]",
        "[\"quote\\\" backslash\\\\ slash/ tab\\t nl\\n cr\\r bs\\b ff\\f\"]",
        "[\"\\u0001\\u001f\\u007f \\u00e9 \\u2028 \\ud83d\\ude00 \u00fc\"]",
        "{\"\":\"\",\"k\\n\":[[],{}]}",
        "\"top\"",
        "42",
    };
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        char err[160];
        assert_int_equal(jsonpack_from_json(docs[i], strlen(docs[i]), &buf, 16, err, sizeof err),
                         0);
        msgpack_zone zone;
        msgpack_zone_init(&zone, 1024);
        msgpack_object obj;
        size_t off = 0;
        assert_int_equal(msgpack_unpack(buf.data, buf.size, &off, &zone, &obj),
                         MSGPACK_UNPACK_SUCCESS);
        char *fast = jsonpack_to_json_text(&obj, 0, err, sizeof err);
        char *slow =
            jsonpack_to_json_text(&obj, JSON_COMPACT | JSON_REAL_PRECISION(17), err, sizeof err);
        assert_non_null(fast);
        assert_non_null(slow);
        assert_string_equal(fast, slow);
        free(fast);
        free(slow);
        msgpack_zone_destroy(&zone);
        msgpack_sbuffer_destroy(&buf);
    }
}

/* ------------------------------------------------------------------ */
/* Duplicate keys: the compact writer's hash set (jsonpack.c)           */

#define NO_DUP UINT32_MAX
#define DUP_MESSAGE "map has the same key twice"

/* Four fixed hash keys, so that the counts below are the same on every
 * run (the bridge's conversions draw a random key each). */
static const unsigned char s_hash_keys[4][JSONPACK_HASH_KEY_BYTES] = {
    {0},
    {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
    {0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0},
    {0x5a, 0xa5, 0x5a, 0xa5, 0x5a, 0xa5, 0x5a, 0xa5, 0x3c, 0xc3, 0x3c, 0xc3, 0x3c, 0xc3, 0x3c,
     0xc3},
};

/* A msgpack document a test packs, then reads as an object. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    msgpack_zone zone;
    msgpack_object obj;
} doc_t;

static void s_doc_init(doc_t *d)
{
    msgpack_sbuffer_init(&d->sb);
    msgpack_packer_init(&d->pk, &d->sb, msgpack_sbuffer_write);
    assert_true(msgpack_zone_init(&d->zone, 4096));
}

static const msgpack_object *s_doc_object(doc_t *d)
{
    d->obj = s_unpack(&d->sb, &d->zone);
    return &d->obj;
}

static void s_doc_destroy(doc_t *d)
{
    msgpack_zone_destroy(&d->zone);
    msgpack_sbuffer_destroy(&d->sb);
}

static void s_pack_key(msgpack_packer *pk, const char *key, size_t len)
{
    assert_int_equal(msgpack_pack_str(pk, len), 0);
    assert_int_equal(msgpack_pack_str_body(pk, key, len), 0);
}

/* Key i is "k<i>", except that key dup_at is "k<dup_of>". */
static void s_pack_numbered_key(msgpack_packer *pk, uint32_t i, uint32_t dup_at, uint32_t dup_of)
{
    char key[16];
    int len = snprintf(key, sizeof key, "k%u", (unsigned)(i == dup_at ? dup_of : i));
    s_pack_key(pk, key, (size_t)len);
}

/* levels maps of n keys each, one inside the other: at every level the
 * value of key n/2 is the next map, the others are ints. All levels use
 * the same key names, so a check that mixed up a map's keys with its
 * parent's would refuse the document. The map at dup_level (or none, when
 * it is not below levels) has key dup_at renamed to key dup_of. */
static void s_pack_nested(msgpack_packer *pk, int levels, uint32_t n, int dup_level,
                          uint32_t dup_at, uint32_t dup_of)
{
    assert_int_equal(msgpack_pack_map(pk, n), 0);
    for (uint32_t i = 0; i < n; i++) {
        s_pack_numbered_key(pk, i, dup_level == 0 ? dup_at : NO_DUP, dup_of);
        if (i == n / 2 && levels > 1)
            s_pack_nested(pk, levels - 1, n, dup_level - 1, dup_at, dup_of);
        else
            assert_int_equal(msgpack_pack_uint32(pk, i), 0);
    }
}

/* Asserts that every path refuses obj for a key given twice: the compact
 * writer (random and fixed hash keys, all 32 bits of hash or one), the
 * jansson tree, and (when bytes is not NULL) the bytes path. */
static void s_assert_dup(const msgpack_object *obj, const msgpack_sbuffer *bytes)
{
    char err[256] = "";
    char *text = jsonpack_to_json_text(obj, 0, err, sizeof err);
    assert_null(text);
    assert_string_equal(err, DUP_MESSAGE);
    for (int bits = 0; bits <= 1; bits++) {
        jsonpack_work_t work = {.hash_key = s_hash_keys[1], .hash_bits = bits};
        err[0] = '\0';
        assert_null(jsonpack_to_json_text_counted(obj, &work, err, sizeof err));
        assert_string_equal(err, DUP_MESSAGE);
    }
    err[0] = '\0';
    assert_null(jsonpack_to_json_text(obj, JSON_INDENT(1), err, sizeof err));
    assert_string_equal(err, DUP_MESSAGE);
    if (bytes) {
        err[0] = '\0';
        assert_null(jsonpack_bytes_to_json_text(bytes->data, bytes->size, 0, err, sizeof err));
        assert_string_equal(err, DUP_MESSAGE);
    }
}

/* Asserts that obj is written, the same by the compact writer (random
 * key; fixed key with full or one-bit hashes) as by jansson's dump. */
static void s_assert_no_dup(const msgpack_object *obj)
{
    char err[256] = "";
    char *fast = jsonpack_to_json_text(obj, 0, err, sizeof err);
    if (!fast)
        fail_msg("refused: %s", err);
    char *slow =
        jsonpack_to_json_text(obj, JSON_COMPACT | JSON_REAL_PRECISION(17), err, sizeof err);
    assert_non_null(slow);
    assert_string_equal(fast, slow);
    for (int bits = 0; bits <= 1; bits++) {
        jsonpack_work_t work = {.hash_key = s_hash_keys[2], .hash_bits = bits};
        char *counted = jsonpack_to_json_text_counted(obj, &work, err, sizeof err);
        assert_non_null(counted);
        assert_string_equal(counted, fast);
        free(counted);
    }
    free(fast);
    free(slow);
}

/* Maps of 2 and 8 keys take the pairwise check, 9 and more the hash set. */
static const uint32_t s_map_sizes[] = {2, 8, 9, 100, 1500};
#define MAP_SIZES (sizeof s_map_sizes / sizeof s_map_sizes[0])

static void test_duplicate_keys_at_depths(void **state)
{
    (void)state;
    for (size_t s = 0; s < MAP_SIZES; s++) {
        uint32_t n = s_map_sizes[s];
        for (int levels = 1; levels <= 4; levels++) {
            doc_t d;
            s_doc_init(&d);
            s_pack_nested(&d.pk, levels, n, -1, NO_DUP, 0);
            s_assert_no_dup(s_doc_object(&d));
            s_doc_destroy(&d);
            /* The last key repeats the first, the second the first, and
             * (past the nested value, so after a child map used the
             * table) the last repeats the one before. */
            const uint32_t dups[3][2] = {{n - 1, 0}, {1, 0}, {n - 1, n - 2}};
            for (int level = 0; level < levels; level++)
                for (int k = 0; k < 3; k++) {
                    s_doc_init(&d);
                    s_pack_nested(&d.pk, levels, n, level, dups[k][0], dups[k][1]);
                    s_assert_dup(s_doc_object(&d), &d.sb);
                    s_doc_destroy(&d);
                }
        }
    }
}

/* Keys that share bytes but not their length are different keys (a
 * control byte stands where a NUL would: the writer refuses NULs). */
static void test_keys_differing_in_length(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
        const char *json; /* as the writer escapes it */
    } keys[] = {
        {"", 0, ""},
        {"a", 1, "a"},
        {"a\1", 2, "a\\u0001"},
        {"a\1\1", 3, "a\\u0001\\u0001"},
        {"ab", 2, "ab"},
        {"abc", 3, "abc"},
        {"\1", 1, "\\u0001"},
        {"\1\1", 2, "\\u0001\\u0001"},
        {"abcd", 4, "abcd"},
        {"b", 1, "b"},
        {"ab\1", 3, "ab\\u0001"},
        {"abcde", 5, "abcde"},
    };
    const size_t n_keys = sizeof keys / sizeof keys[0];
    /* The first 8 (pairwise), then all 12 (hash set). */
    const size_t sizes[] = {8, n_keys};
    for (size_t s = 0; s < 2; s++) {
        size_t n = sizes[s];
        doc_t d;
        s_doc_init(&d);
        assert_int_equal(msgpack_pack_map(&d.pk, n), 0);
        char expected[512] = "{";
        size_t used = 1;
        for (size_t i = 0; i < n; i++) {
            s_pack_key(&d.pk, keys[i].bytes, keys[i].len);
            assert_int_equal(msgpack_pack_uint32(&d.pk, (uint32_t)i), 0);
            used += (size_t)snprintf(expected + used, sizeof expected - used, "%s\"%s\":%zu",
                                     i ? "," : "", keys[i].json, i);
        }
        snprintf(expected + used, sizeof expected - used, "}");
        const msgpack_object *obj = s_doc_object(&d);
        char err[256] = "";
        char *text = jsonpack_to_json_text(obj, 0, err, sizeof err);
        assert_non_null(text);
        assert_string_equal(text, expected);
        free(text);
        /* Every hash the same but for one bit: the bytes decide. */
        jsonpack_work_t work = {.hash_key = s_hash_keys[3], .hash_bits = 1};
        text = jsonpack_to_json_text_counted(obj, &work, err, sizeof err);
        assert_non_null(text);
        assert_string_equal(text, expected);
        free(text);
        s_doc_destroy(&d);

        /* Each key given twice (right after itself) is refused. */
        for (size_t twice = 0; twice < n; twice++) {
            s_doc_init(&d);
            assert_int_equal(msgpack_pack_map(&d.pk, n + 1), 0);
            for (size_t i = 0; i < n; i++) {
                s_pack_key(&d.pk, keys[i].bytes, keys[i].len);
                assert_int_equal(msgpack_pack_nil(&d.pk), 0);
                if (i == twice) {
                    s_pack_key(&d.pk, keys[i].bytes, keys[i].len);
                    assert_int_equal(msgpack_pack_nil(&d.pk), 0);
                }
            }
            s_assert_dup(s_doc_object(&d), &d.sb);
            s_doc_destroy(&d);
        }
    }
}

/* With only a few bits of hash kept, unequal keys share hashes and slots:
 * the answers stay right, and the comparisons show the collisions
 * happened (so the other tests' counts are not vacuous). */
static void test_forced_hash_collisions(void **state)
{
    (void)state;
    const uint32_t n = 300;
    doc_t d;
    s_doc_init(&d);
    s_pack_nested(&d.pk, 1, n, -1, NO_DUP, 0);
    const msgpack_object *obj = s_doc_object(&d);
    char err[256] = "";
    char *expected = jsonpack_to_json_text(obj, 0, err, sizeof err);
    assert_non_null(expected);
    const int bits[] = {1, 2, 4, 31, 0};
    for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++) {
        jsonpack_work_t work = {.hash_key = s_hash_keys[0], .hash_bits = bits[b]};
        char *text = jsonpack_to_json_text_counted(obj, &work, err, sizeof err);
        assert_non_null(text);
        assert_string_equal(text, expected);
        free(text);
        assert_int_equal(work.keys, n);
        if (bits[b] == 1) /* two hash values: each key meets most earlier ones */
            assert_true(work.key_compares >= (uint64_t)n * (n - 1) / 4);
    }
    free(expected);
    s_doc_destroy(&d);

    const uint32_t dups[][2] = {{n - 1, 0}, {150, 149}, {1, 0}, {n - 1, n - 2}};
    for (size_t k = 0; k < sizeof dups / sizeof dups[0]; k++) {
        s_doc_init(&d);
        s_pack_nested(&d.pk, 1, n, 0, dups[k][0], dups[k][1]);
        obj = s_doc_object(&d);
        for (size_t b = 0; b < sizeof bits / sizeof bits[0]; b++) {
            jsonpack_work_t work = {.hash_key = s_hash_keys[0], .hash_bits = bits[b]};
            err[0] = '\0';
            assert_null(jsonpack_to_json_text_counted(obj, &work, err, sizeof err));
            assert_string_equal(err, DUP_MESSAGE);
            assert_int_equal(work.keys, dups[k][0] + 1); /* it stops at the duplicate */
        }
        s_doc_destroy(&d);
    }
}

/* Many maps of every size in one document, siblings with the same keys:
 * each map's check starts empty, and one duplicate among thousands of
 * maps is found. */
static void test_many_maps(void **state)
{
    (void)state;
    const uint32_t maps = 4000;
    for (int with_dup = 0; with_dup <= 1; with_dup++) {
        doc_t d;
        s_doc_init(&d);
        assert_int_equal(msgpack_pack_array(&d.pk, maps), 0);
        for (uint32_t m = 0; m < maps; m++) {
            uint32_t n = m % 13 + 1;               /* 1..13 keys */
            bool dup_here = with_dup && m == 2999; /* 2999 % 13 + 1 = 10 keys */
            assert_int_equal(msgpack_pack_map(&d.pk, n), 0);
            for (uint32_t i = 0; i < n; i++) {
                s_pack_numbered_key(&d.pk, i, dup_here ? n - 1 : NO_DUP, 3);
                assert_int_equal(msgpack_pack_uint32(&d.pk, m), 0);
            }
        }
        const msgpack_object *obj = s_doc_object(&d);
        if (with_dup)
            s_assert_dup(obj, &d.sb);
        else
            s_assert_no_dup(obj);
        s_doc_destroy(&d);
    }
}

/* The duplicate check does work linear in the keys: it compares a key
 * with at most a few others, where comparing each key with every earlier
 * one (the old check) makes n(n-1)/2 comparisons: 799,980,000 for the
 * 40,000 keys here, against a bound of 4 per key. Counted, not timed, and
 * with fixed hash keys, so the counts are the same on every run. */
static void test_key_checks_linear(void **state)
{
    (void)state;
    const uint32_t n = 40000;
    for (int dup = 0; dup <= 1; dup++) {
        doc_t d;
        s_doc_init(&d);
        s_pack_nested(&d.pk, 1, n, dup ? 0 : -1, n - 1, 0);
        const msgpack_object *obj = s_doc_object(&d);
        for (size_t k = 0; k < 4; k++) {
            jsonpack_work_t work = {.hash_key = s_hash_keys[k]};
            char err[256] = "";
            char *text = jsonpack_to_json_text_counted(obj, &work, err, sizeof err);
            if (dup) {
                assert_null(text);
                assert_string_equal(err, DUP_MESSAGE);
            } else
                assert_non_null(text);
            free(text);
            assert_int_equal(work.keys, n);
            assert_true(work.key_compares <= 4 * (uint64_t)n);
        }
        s_doc_destroy(&d);
    }
    /* Nested maps (the table's regions stacked) and small maps (pairwise),
     * many of each: still at most 4 comparisons per key. */
    doc_t d;
    s_doc_init(&d);
    assert_int_equal(msgpack_pack_array(&d.pk, 2), 0);
    s_pack_nested(&d.pk, 3, 30, -1, NO_DUP, 0); /* 90 keys in 3 maps */
    assert_int_equal(msgpack_pack_array(&d.pk, 10000), 0);
    for (uint32_t m = 0; m < 10000; m++)
        s_pack_nested(&d.pk, 1, m % 2 ? 8 : 200, -1, NO_DUP, 0);
    const msgpack_object *obj = s_doc_object(&d);
    uint64_t keys = 90 + 5000 * 8 + 5000 * 200;
    for (size_t k = 0; k < 4; k++) {
        jsonpack_work_t work = {.hash_key = s_hash_keys[k]};
        char err[256] = "";
        char *text = jsonpack_to_json_text_counted(obj, &work, err, sizeof err);
        assert_non_null(text);
        free(text);
        assert_int_equal(work.keys, keys);
        assert_true(work.key_compares <= 4 * keys);
    }
    /* The random key of every other call gives the same answers. */
    char err[256] = "";
    jsonpack_work_t work = {0};
    char *text = jsonpack_to_json_text_counted(obj, &work, err, sizeof err);
    assert_non_null(text);
    free(text);
    assert_int_equal(work.keys, keys);
    assert_null(jsonpack_to_json_text_counted(obj, NULL, err, sizeof err));
    assert_true(err[0] != '\0');
    s_doc_destroy(&d);
}

/* A key given twice is reported where it is, as before: a bad value
 * earlier in the map is found first, a later one is never reached. */
static void test_first_problem_reported(void **state)
{
    (void)state;
    for (uint32_t n = 4; n <= 40; n += 36) { /* pairwise, then hashed */
        for (int bin_first = 0; bin_first <= 1; bin_first++) {
            doc_t d;
            s_doc_init(&d);
            assert_int_equal(msgpack_pack_map(&d.pk, n), 0);
            for (uint32_t i = 0; i < n; i++) {
                /* key n-2 repeats key 0; a bin value at 1 or at n-1 */
                s_pack_numbered_key(&d.pk, i, n - 2, 0);
                if (i == (bin_first ? 1 : n - 1)) {
                    assert_int_equal(msgpack_pack_bin(&d.pk, 1), 0);
                    assert_int_equal(msgpack_pack_bin_body(&d.pk, "x", 1), 0);
                } else
                    assert_int_equal(msgpack_pack_nil(&d.pk), 0);
            }
            const msgpack_object *obj = s_doc_object(&d);
            char err[256] = "";
            assert_null(jsonpack_to_json_text(obj, 0, err, sizeof err));
            assert_string_equal(err,
                                bin_first ? "binary (bin) value has no JSON form" : DUP_MESSAGE);
            s_doc_destroy(&d);
        }
    }
}

/* jsonpack_body_map: what the bridge accepts as a request body. */
static void test_body_map(void **state)
{
    (void)state;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_sbuffer converted;
    msgpack_sbuffer_init(&converted);
    msgpack_object out;
    char err[160];
    const char *json_ok = "{\"a\":[1,2],\"b\":\"x\"}";
    assert_int_equal(jsonpack_body_map(json_ok, strlen(json_ok), false, 1 << 20, 20, &converted,
                                       &zone, &out, err, sizeof err),
                     JSONPACK_BODY_OK);
    assert_int_equal(out.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(out.via.map.size, 2);
    const char *refused[] = {"[1,2]", "{\"a\":1,\"a\":2}", "{\"a\":", "7"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        msgpack_sbuffer_clear(&converted);
        assert_int_equal(jsonpack_body_map(refused[i], strlen(refused[i]), false, 1 << 20, 20,
                                           &converted, &zone, &out, err, sizeof err),
                         JSONPACK_BODY_REFUSED);
        assert_true(err[0] != '\0');
    }
    /* msgpack: a map is taken where it is; an array, a bin, trailing
     * bytes are refused */
    const char map[] = "\x81\xa1"
                       "a"
                       "\x01";
    assert_int_equal(
        jsonpack_body_map(map, 4, true, 1 << 20, 20, &converted, &zone, &out, err, sizeof err),
        JSONPACK_BODY_OK);
    assert_int_equal(out.via.map.size, 1);
    const char array[] = "\x91\x01";
    const char bin[] = "\x81\xa1"
                       "a"
                       "\xc4\x01"
                       "z";
    const char trailing[] = "\x81\xa1"
                            "a"
                            "\x01\x01";
    assert_int_equal(
        jsonpack_body_map(array, 2, true, 1 << 20, 20, &converted, &zone, &out, err, sizeof err),
        JSONPACK_BODY_REFUSED);
    assert_string_equal(err, "the body must be an object");
    assert_int_equal(
        jsonpack_body_map(bin, 6, true, 1 << 20, 20, &converted, &zone, &out, err, sizeof err),
        JSONPACK_BODY_REFUSED);
    assert_int_equal(
        jsonpack_body_map(trailing, 5, true, 1 << 20, 20, &converted, &zone, &out, err, sizeof err),
        JSONPACK_BODY_REFUSED);
    msgpack_sbuffer_destroy(&converted);
    msgpack_zone_destroy(&zone);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_nested),
        cmocka_unit_test(test_roundtrip_unicode),
        cmocka_unit_test(test_roundtrip_numbers),
        cmocka_unit_test(test_roundtrip_scalars),
        cmocka_unit_test(test_msgpack_types),
        cmocka_unit_test(test_text_flags),
        cmocka_unit_test(test_jansson_tree),
        cmocka_unit_test(test_large_text),
        cmocka_unit_test(test_append_and_restore),
        cmocka_unit_test(test_length_bounded),
        cmocka_unit_test(test_reject_malformed),
        cmocka_unit_test(test_reject_trailing),
        cmocka_unit_test(test_reject_duplicate_keys),
        cmocka_unit_test(test_reject_deep),
        cmocka_unit_test(test_reject_int_range),
        cmocka_unit_test(test_reject_bad_utf8),
        cmocka_unit_test(test_reject_nul),
        cmocka_unit_test(test_reject_msgpack_key),
        cmocka_unit_test(test_reject_msgpack_duplicate_key),
        cmocka_unit_test(test_reject_msgpack_ext_bin),
        cmocka_unit_test(test_reject_msgpack_numbers),
        cmocka_unit_test(test_reject_msgpack_bad_utf8),
        cmocka_unit_test(test_reject_msgpack_deep),
        cmocka_unit_test(test_reject_bytes),
        cmocka_unit_test(test_small_err_buffers),
        cmocka_unit_test(test_is_map),
        cmocka_unit_test(test_compact_writer_matches_jansson),
        cmocka_unit_test(test_duplicate_keys_at_depths),
        cmocka_unit_test(test_keys_differing_in_length),
        cmocka_unit_test(test_forced_hash_collisions),
        cmocka_unit_test(test_many_maps),
        cmocka_unit_test(test_key_checks_linear),
        cmocka_unit_test(test_first_problem_reported),
        cmocka_unit_test(test_body_map),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

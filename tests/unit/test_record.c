/*  test_record.c - the table-driven record codec (storage/record.h).
 *
 *  Every store's record goes through this codec, so a bug here damages
 *  or refuses stored data everywhere. The tests use one struct with a
 *  field of every type and check: a round trip of each type (ints at
 *  their limits and in every msgpack width); that the encoder writes the
 *  same bytes as the msgpack-c calls the stores' old encoders made (so
 *  existing data directories load); a missing required field and an
 *  absent optional one; a wrong type for each field; every truncation of
 *  a valid record, each in a buffer of exactly that many bytes so that
 *  AddressSanitizer catches a read past it; strs and bins one byte over
 *  their fields; UTF-8 in the strs read; unknown keys (skipped, nested
 *  ones too); duplicates;
 *  bytes that are not a map or not msgpack; custom hooks that read too
 *  much or too little; and encodes that must fail.
 *
 *  Records are built by hand with msgpack-c's packers into an mpout_t,
 *  never with the codec under test.
 */
#include "storage/record.h"
#include "protocol/mpout.h"
#include "tests/testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { COLOUR_RED, COLOUR_GREEN, COLOUR_BLUE } colour_t;
static const char *const s_colours[] = {"red", "green", "blue"};

typedef struct {
    char name[8]; /* at most 7 bytes */
    record_view_t label;
    int64_t signed_n;
    uint64_t unsigned_n;
    bool flag;
    uint8_t blob[4];
    size_t blob_len;
    int colour;
    record_view_t extra; /* RAW */
    int64_t list[3];     /* CUSTOM: an array of up to 3 ints */
    int list_len;
    int64_t opt; /* optional */
} thing_t;

static bool s_list_decode(record_reader_t *r, void *record)
{
    thing_t *t = record;
    uint32_t n;
    if (!record_read_array(r, &n) || n > 3)
        return false;
    for (uint32_t i = 0; i < n; i++)
        if (!record_read_int64(r, &t->list[i]))
            return false;
    t->list_len = (int)n;
    return true;
}

static int s_list_encode(msgpack_packer *pk, const void *record)
{
    const thing_t *t = record;
    if (t->list_len < 0 || t->list_len > 3 || msgpack_pack_array(pk, (size_t)t->list_len) != 0)
        return -1;
    for (int i = 0; i < t->list_len; i++)
        if (msgpack_pack_int64(pk, t->list[i]) != 0)
            return -1;
    return 0;
}

#define REQ RECORD_REQUIRED
static const record_field_t s_fields[] = {
    RECORD_STR_FIELD(thing_t, name, "name", REQ),
    RECORD_STR_VIEW_FIELD(thing_t, label, "label", 5, REQ),
    RECORD_INT64_FIELD(thing_t, signed_n, "signed", REQ),
    RECORD_UINT64_FIELD(thing_t, unsigned_n, "unsigned", REQ),
    RECORD_BOOL_FIELD(thing_t, flag, "flag", REQ),
    RECORD_BIN_FIELD(thing_t, blob, blob_len, "blob", REQ),
    RECORD_ENUM_FIELD(thing_t, colour, "colour", s_colours, 3, REQ),
    RECORD_RAW_FIELD(thing_t, extra, "extra", 0),
    RECORD_CUSTOM_FIELD("list", s_list_decode, s_list_encode, REQ),
    RECORD_INT64_FIELD(thing_t, opt, "opt", 0),
};
static const record_table_t s_table = RECORD_TABLE(s_fields);
#define N_FIELDS ((int)(sizeof s_fields / sizeof s_fields[0]))

/* extra: {"k": [1, nil]} as msgpack */
static const uint8_t s_extra[] = {0x81, 0xa1, 'k', 0x92, 0x01, 0xc0};

static thing_t s_sample(void)
{
    thing_t t = {0};
    snprintf(t.name, sizeof t.name, "%s", "seven!!");
    t.label = (record_view_t){.ptr = (const uint8_t *)"hello", .len = 5};
    t.signed_n = INT64_MIN;
    t.unsigned_n = UINT64_MAX;
    t.flag = true;
    memcpy(t.blob, "\x00\x01\xfe\xff", 4);
    t.blob_len = 4;
    t.colour = COLOUR_BLUE;
    t.extra = (record_view_t){.ptr = s_extra, .len = sizeof s_extra};
    t.list[0] = -1, t.list[1] = 0, t.list[2] = INT64_MAX;
    t.list_len = 3;
    t.opt = 42;
    return t;
}

/* Encodes t into out (initialised here; the caller destroys it). */
static void s_encode(const thing_t *t, mpout_t *out)
{
    mpout_init(out, 0);
    msgpack_packer pk;
    mpout_packer(out, &pk);
    assert_int_equal(record_encode(&s_table, t, &pk), 0);
    assert_false(out->failed);
}

/* Decodes bytes copied into a buffer of exactly len bytes (ASan sees any
 * read past it). */
static record_status_t s_decode_exact(const void *bytes, size_t len, thing_t *out)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    record_status_t status = record_decode(&s_table, copy, len, out);
    free(copy);
    return status;
}

static void s_assert_same(const thing_t *a, const thing_t *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->label.len, b->label.len);
    assert_memory_equal(a->label.ptr, b->label.ptr, a->label.len);
    assert_true(a->signed_n == b->signed_n);
    assert_true(a->unsigned_n == b->unsigned_n);
    assert_int_equal(a->flag, b->flag);
    assert_int_equal(a->blob_len, b->blob_len);
    assert_memory_equal(a->blob, b->blob, a->blob_len);
    assert_int_equal(a->colour, b->colour);
    assert_int_equal(a->extra.len, b->extra.len);
    if (a->extra.len)
        assert_memory_equal(a->extra.ptr, b->extra.ptr, a->extra.len);
    assert_int_equal(a->list_len, b->list_len);
    for (int i = 0; i < a->list_len; i++)
        assert_true(a->list[i] == b->list[i]);
    assert_true(a->opt == b->opt);
}

/* ---- hand-built records ---- */

typedef struct {
    mpout_t out;
    msgpack_packer pk;
} hand_t;

static void h_init(hand_t *h)
{
    mpout_init(&h->out, 0);
    mpout_packer(&h->out, &h->pk);
}

static void h_str(hand_t *h, const char *s)
{
    msgpack_pack_str(&h->pk, strlen(s));
    msgpack_pack_str_body(&h->pk, s, strlen(s));
}

/* The sample record by hand, without the field named `skip` (NULL: all),
 * with `replace`'s value written by fn instead (NULL: none). */
static void h_sample(hand_t *h, const char *skip, const char *replace,
                     void (*fn)(msgpack_packer *pk))
{
    h_init(h);
    thing_t t = s_sample();
    msgpack_pack_map(&h->pk, N_FIELDS - (skip ? 1 : 0));
    for (int i = 0; i < N_FIELDS; i++) {
        const char *key = s_fields[i].key;
        if (skip && strcmp(skip, key) == 0)
            continue;
        h_str(h, key);
        if (replace && strcmp(replace, key) == 0) {
            fn(&h->pk);
            continue;
        }
        switch (i) {
        case 0:
            h_str(h, t.name);
            break;
        case 1:
            msgpack_pack_str(&h->pk, t.label.len);
            msgpack_pack_str_body(&h->pk, t.label.ptr, t.label.len);
            break;
        case 2:
            msgpack_pack_int64(&h->pk, t.signed_n);
            break;
        case 3:
            msgpack_pack_uint64(&h->pk, t.unsigned_n);
            break;
        case 4:
            msgpack_pack_true(&h->pk);
            break;
        case 5:
            msgpack_pack_bin(&h->pk, t.blob_len);
            msgpack_pack_bin_body(&h->pk, t.blob, t.blob_len);
            break;
        case 6:
            h_str(h, "blue");
            break;
        case 7:
            mpout_write(&h->out, (const char *)s_extra, sizeof s_extra);
            break;
        case 8:
            msgpack_pack_array(&h->pk, 3);
            for (int k = 0; k < 3; k++)
                msgpack_pack_int64(&h->pk, t.list[k]);
            break;
        case 9:
            msgpack_pack_int64(&h->pk, t.opt);
            break;
        }
    }
    assert_false(h->out.failed);
}

/* ---- tests ---- */

static void test_round_trip(void **state)
{
    (void)state;
    thing_t t = s_sample(), back;
    mpout_t out;
    s_encode(&t, &out);
    memset(&back, 0, sizeof back);
    assert_int_equal(record_decode(&s_table, (const uint8_t *)out.buf.data, out.buf.size, &back),
                     RECORD_OK);
    s_assert_same(&t, &back);
    /* Views point into the decoded bytes, not into the original. */
    assert_true(back.label.ptr >= (const uint8_t *)out.buf.data &&
                back.label.ptr < (const uint8_t *)out.buf.data + out.buf.size);

    /* The other end of each range, an empty str, bin and list, false. */
    t.name[0] = '\0';
    t.label.len = 0;
    t.signed_n = INT64_MAX;
    t.unsigned_n = 0;
    t.flag = false;
    t.blob_len = 0;
    t.colour = COLOUR_RED;
    t.list_len = 0;
    t.opt = -1;
    mpout_destroy(&out);
    s_encode(&t, &out);
    memset(&back, 0xff, sizeof back);
    assert_int_equal(record_decode(&s_table, (const uint8_t *)out.buf.data, out.buf.size, &back),
                     RECORD_OK);
    s_assert_same(&t, &back);
    mpout_destroy(&out);
}

/* The codec writes what msgpack-c's calls wrote (the old encoders), and
 * leaves an empty RAW out. */
static void test_same_bytes(void **state)
{
    (void)state;
    thing_t t = s_sample();
    hand_t h;
    h_sample(&h, NULL, NULL, NULL);
    mpout_t out;
    s_encode(&t, &out);
    assert_int_equal(out.buf.size, h.out.buf.size);
    assert_memory_equal(out.buf.data, h.out.buf.data, out.buf.size);
    mpout_destroy(&out);
    mpout_destroy(&h.out);

    t.extra.len = 0;
    h_sample(&h, "extra", NULL, NULL);
    s_encode(&t, &out);
    assert_int_equal(out.buf.size, h.out.buf.size);
    assert_memory_equal(out.buf.data, h.out.buf.data, out.buf.size);
    mpout_destroy(&out);
    mpout_destroy(&h.out);
}

static int64_t s_int_value;
static void w_int64(msgpack_packer *pk)
{
    msgpack_pack_int64(pk, s_int_value);
}
static void w_fix_neg(msgpack_packer *pk)
{
    msgpack_pack_fix_int8(pk, -5); /* 0xd0 0xfb */
}
static void w_int16(msgpack_packer *pk)
{
    msgpack_pack_fix_int16(pk, -300);
}
static void w_int32_pos(msgpack_packer *pk)
{
    msgpack_pack_fix_int32(pk, 70000); /* a signed format, value >= 0 */
}
static void w_int64_min(msgpack_packer *pk)
{
    msgpack_pack_fix_int64(pk, INT64_MIN);
}
static void w_uint8(msgpack_packer *pk)
{
    msgpack_pack_fix_uint8(pk, 200);
}
static void w_uint64_big(msgpack_packer *pk)
{
    msgpack_pack_fix_uint64(pk, (uint64_t)INT64_MAX + 1);
}
static void w_minus_one(msgpack_packer *pk)
{
    msgpack_pack_int64(pk, -1);
}

/* Each msgpack int width reads into an int64 field, and the range ends
 * are refused. */
static void test_int_widths(void **state)
{
    (void)state;
    const int64_t values[] = {
        0,         1,         127,          128,          255,       256,
        65535,     65536,     4294967295LL, -1,           -32,       -33,
        -128,      -129,      -32768,       -32769,       INT64_MIN, INT64_MAX,
        INT32_MIN, INT32_MAX, 4294967296LL, -2147483649LL};
    for (size_t i = 0; i < sizeof values / sizeof values[0]; i++) {
        s_int_value = values[i];
        hand_t h;
        h_sample(&h, NULL, "signed", w_int64);
        thing_t back;
        assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_OK);
        assert_true(back.signed_n == values[i]);
        mpout_destroy(&h.out);
    }
    struct {
        void (*fn)(msgpack_packer *);
        int64_t want;
    } fixed[] = {{w_fix_neg, -5},
                 {w_int16, -300},
                 {w_int32_pos, 70000},
                 {w_int64_min, INT64_MIN},
                 {w_uint8, 200}};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        hand_t h;
        h_sample(&h, NULL, "signed", fixed[i].fn);
        thing_t back;
        assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_OK);
        assert_true(back.signed_n == fixed[i].want);
        mpout_destroy(&h.out);
    }
    /* uint64 past INT64_MAX into an int64: out of range. */
    hand_t h;
    thing_t back;
    h_sample(&h, NULL, "signed", w_uint64_big);
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_BAD_VALUE);
    mpout_destroy(&h.out);
    /* ... but fine for a uint64, and a signed format >= 0 too. */
    h_sample(&h, NULL, "unsigned", w_uint64_big);
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_OK);
    assert_true(back.unsigned_n == (uint64_t)INT64_MAX + 1);
    mpout_destroy(&h.out);
    h_sample(&h, NULL, "unsigned", w_int32_pos);
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_OK);
    assert_true(back.unsigned_n == 70000);
    mpout_destroy(&h.out);
    /* A negative into a uint64: out of range. */
    h_sample(&h, NULL, "unsigned", w_minus_one);
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_BAD_VALUE);
    mpout_destroy(&h.out);
}

/* Each required field left out is RECORD_MISSING; the optional ones may
 * be, and then keep the caller's value. */
static void test_missing(void **state)
{
    (void)state;
    for (int i = 0; i < N_FIELDS; i++) {
        hand_t h;
        h_sample(&h, s_fields[i].key, NULL, NULL);
        thing_t back;
        memset(&back, 0, sizeof back);
        back.opt = 7;
        record_status_t status = s_decode_exact(h.out.buf.data, h.out.buf.size, &back);
        if (s_fields[i].flags & RECORD_REQUIRED)
            assert_int_equal(status, RECORD_MISSING);
        else {
            assert_int_equal(status, RECORD_OK);
            if (strcmp(s_fields[i].key, "opt") == 0)
                assert_true(back.opt == 7);
            else
                assert_int_equal(back.extra.len, 0);
        }
        mpout_destroy(&h.out);
    }
}

static void w_nil(msgpack_packer *pk)
{
    msgpack_pack_nil(pk);
}
static void w_int(msgpack_packer *pk)
{
    msgpack_pack_int64(pk, 5);
}
static void w_str(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "red", 3);
}
static void w_float(msgpack_packer *pk)
{
    msgpack_pack_double(pk, 1.5);
}
static void w_bin(msgpack_packer *pk)
{
    msgpack_pack_bin(pk, 1);
    msgpack_pack_bin_body(pk, "x", 1);
}
static void w_array(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 1);
    msgpack_pack_int64(pk, 1);
}
static void w_true(msgpack_packer *pk)
{
    msgpack_pack_true(pk);
}

/* A value of another type for a field is refused (a custom field's hook
 * refuses it: RECORD_BAD_VALUE). RAW takes any type. */
static void test_wrong_type(void **state)
{
    (void)state;
    struct {
        const char *key;
        void (*fn)(msgpack_packer *);
        record_status_t want;
    } cases[] = {
        {"name", w_int, RECORD_WRONG_TYPE},    {"name", w_bin, RECORD_WRONG_TYPE},
        {"name", w_nil, RECORD_WRONG_TYPE},    {"label", w_array, RECORD_WRONG_TYPE},
        {"signed", w_str, RECORD_WRONG_TYPE},  {"signed", w_float, RECORD_WRONG_TYPE},
        {"signed", w_true, RECORD_WRONG_TYPE}, {"unsigned", w_nil, RECORD_WRONG_TYPE},
        {"flag", w_int, RECORD_WRONG_TYPE},    {"flag", w_nil, RECORD_WRONG_TYPE},
        {"blob", w_str, RECORD_WRONG_TYPE},    {"blob", w_array, RECORD_WRONG_TYPE},
        {"colour", w_int, RECORD_WRONG_TYPE},  {"colour", w_bin, RECORD_WRONG_TYPE},
        {"list", w_str, RECORD_BAD_VALUE},     {"list", w_int, RECORD_BAD_VALUE},
        {"opt", w_float, RECORD_WRONG_TYPE},   {"extra", w_nil, RECORD_OK},
        {"extra", w_float, RECORD_OK},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hand_t h;
        h_sample(&h, NULL, cases[i].key, cases[i].fn);
        thing_t back;
        record_status_t status = s_decode_exact(h.out.buf.data, h.out.buf.size, &back);
        if (status != cases[i].want)
            fail_msg("%s: got %s, want %s", cases[i].key, record_strerror(status),
                     record_strerror(cases[i].want));
        mpout_destroy(&h.out);
    }
}

/* Every prefix of a valid record fails cleanly, from a buffer of
 * exactly that size. */
static void test_truncated(void **state)
{
    (void)state;
    thing_t t = s_sample();
    mpout_t out;
    s_encode(&t, &out);
    for (size_t len = 0; len < out.buf.size; len++) {
        thing_t back;
        record_status_t status = s_decode_exact(out.buf.data, len, &back);
        if (status == RECORD_OK)
            fail_msg("a record cut to %zu of %zu bytes decoded", len, out.buf.size);
    }
    thing_t back;
    assert_int_equal(s_decode_exact(out.buf.data, out.buf.size, &back), RECORD_OK);
    /* Nothing, and NULL. */
    assert_int_equal(record_decode(&s_table, NULL, 0, &back), RECORD_MALFORMED);
    mpout_destroy(&out);
}

static void w_str8(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 8);
    msgpack_pack_str_body(pk, "12345678", 8);
}
static void w_str7(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 7);
    msgpack_pack_str_body(pk, "1234567", 7);
}
static void w_str6(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 6);
    msgpack_pack_str_body(pk, "123456", 6);
}
static void w_bin5(msgpack_packer *pk)
{
    msgpack_pack_bin(pk, 5);
    msgpack_pack_bin_body(pk, "12345", 5);
}
static void w_list4(msgpack_packer *pk)
{
    msgpack_pack_array(pk, 4);
    for (int i = 0; i < 4; i++)
        msgpack_pack_int64(pk, i);
}
static void w_str_nul(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 3);
    msgpack_pack_str_body(pk, "a\0b", 3);
}
static void w_colour_bad(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 4);
    msgpack_pack_str_body(pk, "pink", 4);
}
static void w_colour_prefix(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 2);
    msgpack_pack_str_body(pk, "bl", 2);
}

/* One byte over a field is refused; exactly its size is taken. */
static void test_too_long(void **state)
{
    (void)state;
    struct {
        const char *key;
        void (*fn)(msgpack_packer *);
        record_status_t want;
    } cases[] = {
        {"name", w_str8, RECORD_TOO_LONG},
        {"name", w_str7, RECORD_OK},
        {"label", w_str6, RECORD_TOO_LONG},
        {"blob", w_bin5, RECORD_TOO_LONG},
        {"list", w_list4, RECORD_BAD_VALUE},
        {"name", w_str_nul, RECORD_BAD_VALUE},
        {"label", w_str_nul, RECORD_BAD_VALUE},
        {"colour", w_colour_bad, RECORD_BAD_VALUE},
        {"colour", w_colour_prefix, RECORD_BAD_VALUE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        hand_t h;
        h_sample(&h, NULL, cases[i].key, cases[i].fn);
        thing_t back;
        memset(&back, 0, sizeof back);
        record_status_t status = s_decode_exact(h.out.buf.data, h.out.buf.size, &back);
        if (status != cases[i].want)
            fail_msg("case %zu (%s): got %s, want %s", i, cases[i].key, record_strerror(status),
                     record_strerror(cases[i].want));
        if (status == RECORD_OK)
            assert_string_equal(back.name, "1234567");
        mpout_destroy(&h.out);
    }
}

/* Unknown keys of any type, nested ones too, anywhere in the map, are
 * passed over; the known fields are read whatever their order. */
static void test_unknown_keys(void **state)
{
    (void)state;
    thing_t t = s_sample();
    mpout_t out;
    s_encode(&t, &out);
    /* The encoded map's entries, after its one-byte header (< 16). */
    const uint8_t *entries = (const uint8_t *)out.buf.data + 1;
    size_t entries_len = out.buf.size - 1;
    assert_int_equal((uint8_t)out.buf.data[0], 0x80 | N_FIELDS);

    hand_t h;
    h_init(&h);
    msgpack_pack_map(&h.pk, N_FIELDS + 4);
    h_str(&h, "zz_new_int");
    msgpack_pack_int64(&h.pk, -7);
    h_str(&h, "nested");
    msgpack_pack_map(&h.pk, 2);
    h_str(&h, "name"); /* the same key as a field, one level down */
    msgpack_pack_array(&h.pk, 2);
    msgpack_pack_map(&h.pk, 0);
    msgpack_pack_double(&h.pk, 2.5);
    h_str(&h, "b");
    msgpack_pack_bin(&h.pk, 3);
    msgpack_pack_bin_body(&h.pk, "abc", 3);
    mpout_write(&h.out, (const char *)entries, entries_len);
    h_str(&h, "");
    msgpack_pack_nil(&h.pk);
    h_str(&h, "Name"); /* keys are compared exactly */
    h_str(&h, "not the name");
    assert_false(h.out.failed);
    thing_t back;
    memset(&back, 0, sizeof back);
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_OK);
    s_assert_same(&t, &back);
    mpout_destroy(&h.out);
    mpout_destroy(&out);
}

/* A known key twice is refused, even with the same value. */
static void test_duplicate(void **state)
{
    (void)state;
    hand_t h;
    h_sample(&h, NULL, NULL, NULL);
    /* Bump the fixmap count and append "opt" again. */
    h.out.buf.data[0]++;
    h_str(&h, "opt");
    msgpack_pack_int64(&h.pk, 42);
    thing_t back;
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_DUPLICATE);
    mpout_destroy(&h.out);
}

/* What is not one msgpack map is refused before any field is read. */
static void test_not_a_record(void **state)
{
    (void)state;
    thing_t back;
    const uint8_t array[] = {0x91, 0x01};
    assert_int_equal(s_decode_exact(array, sizeof array, &back), RECORD_NOT_MAP);
    const uint8_t scalar[] = {0x05};
    assert_int_equal(s_decode_exact(scalar, sizeof scalar, &back), RECORD_NOT_MAP);
    const uint8_t trailing[] = {0x80, 0x00};
    assert_int_equal(s_decode_exact(trailing, sizeof trailing, &back), RECORD_MALFORMED);
    const uint8_t int_key[] = {0x81, 0x01, 0x02};
    assert_int_equal(s_decode_exact(int_key, sizeof int_key, &back), RECORD_MALFORMED);
    const uint8_t ext[] = {0x81, 0xa1, 'x', 0xd4, 0x01, 0x00};
    assert_int_equal(s_decode_exact(ext, sizeof ext, &back), RECORD_MALFORMED);
    /* A map that claims 2^32 - 1 entries in six bytes. */
    const uint8_t liar[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0x80};
    assert_int_equal(s_decode_exact(liar, sizeof liar, &back), RECORD_MALFORMED);
    /* An empty map lacks every required field. */
    const uint8_t empty[] = {0x80};
    assert_int_equal(s_decode_exact(empty, sizeof empty, &back), RECORD_MISSING);
}

static void w_bad_utf8(msgpack_packer *pk)
{
    msgpack_pack_str(pk, 2);
    msgpack_pack_str_body(pk, "\xc3\x28", 2);
}
static void w_int_key_map(msgpack_packer *pk)
{
    msgpack_pack_map(pk, 1);
    msgpack_pack_int64(pk, 1);
    msgpack_pack_nil(pk);
}

/* The strs a table reads must be UTF-8 (a RAW value must pass mpcheck);
 * the values of unknown keys are only passed over. */
static void test_utf8(void **state)
{
    (void)state;
    const char *fields[] = {"name", "label"};
    for (int i = 0; i < 2; i++) {
        hand_t h;
        h_sample(&h, NULL, fields[i], w_bad_utf8);
        thing_t back;
        assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_BAD_VALUE);
        mpout_destroy(&h.out);
    }
    hand_t h;
    thing_t back;
    h_sample(&h, NULL, "extra", w_int_key_map);
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_BAD_VALUE);
    mpout_destroy(&h.out);
    /* The sample with one more key, unknown, whose str is not UTF-8. */
    h_sample(&h, NULL, NULL, NULL);
    h.out.buf.data[0]++;
    h_str(&h, "unknown");
    w_bad_utf8(&h.pk);
    assert_int_equal(s_decode_exact(h.out.buf.data, h.out.buf.size, &back), RECORD_OK);
    assert_string_equal(back.name, "seven!!");
    mpout_destroy(&h.out);
    /* The hooks' reader refuses it. */
    const uint8_t bad[] = {0xa2, 0xc3, 0x28};
    record_reader_t r = {.pos = bad, .end = bad + sizeof bad};
    const char *text;
    size_t len;
    assert_false(record_read_str(&r, &text, &len));
    assert_ptr_equal(r.pos, bad);
}

/* A hook reads only its own value: reading on runs into the end of it,
 * and one that leaves part of it unread is refused. */
static bool s_greedy_decode(record_reader_t *r, void *record)
{
    (void)record;
    uint32_t n;
    int64_t v;
    /* The array, then one value more than it holds (unbounded, that
     * would be the next key). */
    return record_read_array(r, &n) && n == 1 && record_read_int64(r, &v) && record_skip(r);
}
static bool s_lazy_decode(record_reader_t *r, void *record)
{
    (void)record;
    uint32_t n;
    return record_read_array(r, &n); /* the header only */
}
static int s_no_encode(msgpack_packer *pk, const void *record)
{
    (void)pk;
    (void)record;
    return -1;
}

static void test_hooks_bounded(void **state)
{
    (void)state;
    const record_field_t greedy[] = {RECORD_CUSTOM_FIELD("a", s_greedy_decode, s_no_encode, REQ)};
    const record_field_t lazy[] = {RECORD_CUSTOM_FIELD("a", s_lazy_decode, s_no_encode, REQ)};
    const record_table_t greedy_table = RECORD_TABLE(greedy), lazy_table = RECORD_TABLE(lazy);
    /* {"a": [1], "b": 2} */
    const uint8_t bytes[] = {0x82, 0xa1, 'a', 0x91, 0x01, 0xa1, 'b', 0x02};
    thing_t scratch;
    assert_int_equal(record_decode(&greedy_table, bytes, sizeof bytes, &scratch), RECORD_BAD_VALUE);
    assert_int_equal(record_decode(&lazy_table, bytes, sizeof bytes, &scratch), RECORD_BAD_VALUE);
}

/* The readers on their own: every one refuses a value cut short, and
 * record_skip passes over nested containers without recursion limits
 * of its own. */
static void test_readers(void **state)
{
    (void)state;
    /* [[[...]]] 40 deep, then 1: deeper than mpcheck allows, but skip
     * walks it. */
    uint8_t deep[41];
    memset(deep, 0x91, 40);
    deep[40] = 0x01;
    record_reader_t r = {.pos = deep, .end = deep + sizeof deep};
    assert_true(record_skip(&r));
    assert_ptr_equal(r.pos, deep + sizeof deep);
    r = (record_reader_t){.pos = deep, .end = deep + 40};
    assert_false(record_skip(&r));
    assert_ptr_equal(r.pos, deep); /* unmoved */

    const uint8_t u64[] = {0xcf, 0, 0, 0, 0, 0, 0, 0, 9};
    for (size_t len = 0; len < sizeof u64; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, u64, len);
        record_reader_t c = {.pos = cut, .end = cut + len};
        uint64_t v;
        assert_false(record_read_uint64(&c, &v));
        assert_false(record_skip(&c));
        free(cut);
    }
    record_reader_t c = {.pos = u64, .end = u64 + sizeof u64};
    uint64_t v;
    assert_true(record_read_uint64(&c, &v));
    assert_true(v == 9);

    const uint8_t str16[] = {0xda, 0x00, 0x03, 'a', 'b', 'c'};
    for (size_t len = 0; len < sizeof str16; len++) {
        uint8_t *cut = malloc(len ? len : 1);
        memcpy(cut, str16, len);
        record_reader_t s = {.pos = cut, .end = cut + len};
        const char *text;
        size_t text_len;
        assert_false(record_read_str(&s, &text, &text_len));
        free(cut);
    }
    const uint8_t arr32[] = {0xdd, 0x00, 0x00, 0x00, 0x02, 0x01};
    record_reader_t a = {.pos = arr32, .end = arr32 + sizeof arr32};
    uint32_t n;
    assert_false(record_read_array(&a, &n)); /* two owed, one byte left */
    assert_false(record_read_map(&a, &n));   /* not a map at all */
}

/* Encodes that must not write a record. */
static void test_encode_refuses(void **state)
{
    (void)state;
    thing_t t = s_sample();
    mpout_t out;
    msgpack_packer pk;

    memset(t.name, 'x', sizeof t.name); /* not terminated */
    mpout_init(&out, 0);
    mpout_packer(&out, &pk);
    assert_int_equal(record_encode(&s_table, &t, &pk), -1);
    mpout_destroy(&out);

    t = s_sample();
    t.blob_len = sizeof t.blob + 1;
    mpout_init(&out, 0);
    mpout_packer(&out, &pk);
    assert_int_equal(record_encode(&s_table, &t, &pk), -1);
    mpout_destroy(&out);

    t = s_sample();
    t.colour = 3;
    mpout_init(&out, 0);
    mpout_packer(&out, &pk);
    assert_int_equal(record_encode(&s_table, &t, &pk), -1);
    mpout_destroy(&out);

    t = s_sample();
    t.label.len = 6; /* over its most */
    mpout_init(&out, 0);
    mpout_packer(&out, &pk);
    assert_int_equal(record_encode(&s_table, &t, &pk), -1);
    mpout_destroy(&out);

    t = s_sample();
    t.list_len = 4; /* the hook refuses */
    mpout_init(&out, 0);
    mpout_packer(&out, &pk);
    assert_int_equal(record_encode(&s_table, &t, &pk), -1);
    mpout_destroy(&out);

    /* An output that takes too few bytes: -1 and the output says so. */
    t = s_sample();
    mpout_init(&out, 16);
    mpout_packer(&out, &pk);
    assert_int_equal(record_encode(&s_table, &t, &pk), -1);
    assert_true(out.failed && out.over_limit);
    mpout_destroy(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip), cmocka_unit_test(test_same_bytes),
        cmocka_unit_test(test_int_widths), cmocka_unit_test(test_missing),
        cmocka_unit_test(test_wrong_type), cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_too_long),   cmocka_unit_test(test_unknown_keys),
        cmocka_unit_test(test_duplicate),  cmocka_unit_test(test_not_a_record),
        cmocka_unit_test(test_utf8),       cmocka_unit_test(test_hooks_bounded),
        cmocka_unit_test(test_readers),    cmocka_unit_test(test_encode_refuses),
    };
    return cmocka_run_group_tests_name("record", tests, NULL, NULL);
}

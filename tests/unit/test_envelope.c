/*  test_envelope.c - strict msgpack checking, envelope decoding, error table.
 *
 *  Every body on the wire comes from outside the process, so protocol/
 *  mpcheck and protocol/envelope are the first line of defence. These
 *  tests feed them malformed input of every kind the header promises to
 *  refuse (truncation at every byte, trailing bytes, too deep, ext types,
 *  0xc1, bad UTF-8, non-string keys, counts that cannot fit) and check the
 *  exact mp_status_t or the envelope's message. Checked bytes are always
 *  copied into a heap block of exactly their length, so under AddressSanitizer
 *  a read one byte past the end is reported. A seeded random battery then
 *  checks the promise mpcheck makes to its callers: whatever it accepts,
 *  msgpack_unpack() accepts whole. The error table is checked against the
 *  status table of API.md section 3. Every test frees what it made, so the
 *  binary is meaningful under the leak checker.
 *
 *  The checked output (protocol/mpout.h) and the encoders are made to fail
 *  for real: on its limit, and out of memory by asking for more than any
 *  allocator gives (NO_MEMORY_LEN), which makes realloc return NULL.
 */
#include "protocol/envelope.h"
#include "protocol/errors.h"
#include "protocol/mpcheck.h"
#include "protocol/mpout.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BIG ((size_t)1 << 30) /* a max_len that never gets in the way */

/* A write of this many bytes needs a buffer of half the address space:
 * realloc refuses it, so the write fails as out of memory before any byte
 * would be copied (the source may then be a short buffer). */
#define NO_MEMORY_LEN (SIZE_MAX / 2)

/* Under AddressSanitizer a refused allocation must return NULL, as the
 * C library's does, instead of stopping the program (it still prints a
 * warning for each refusal). */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1";
}
#define DEEP 16 /* a max_depth that never gets in the way */

/* ---- helpers ---- */

/* mpcheck on a private heap copy of exactly len bytes. */
static mp_status_t s_check(const void *bytes, size_t len, size_t max_len, int max_depth)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    mp_status_t st = mpcheck(copy, len, max_len, max_depth);
    free(copy);
    return st;
}

/* A string literal and its length, for tables of byte strings. */
#define B(lit) lit, sizeof(lit) - 1

#define CHECK(lit, expected) assert_int_equal(s_check(lit, sizeof(lit) - 1, BIG, DEEP), expected)

/* A msgpack buffer with its packer. */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
} mp_t;

static void mp_init(mp_t *m)
{
    msgpack_sbuffer_init(&m->sb);
    msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

static void mp_done(mp_t *m)
{
    msgpack_sbuffer_destroy(&m->sb);
}

/* envelope_decode_request on a heap copy; returns the result and leaves the
 * message (static) in *message. */
static bool s_decode(const void *bytes, size_t len, envelope_request_t *rq, const char **message)
{
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    *message = NULL;
    bool ok = envelope_decode_request(copy, len, &zone, rq, message);
    msgpack_zone_destroy(&zone);
    free(copy);
    return ok;
}

/* Asserts the request bytes are refused with a message containing want. */
static void s_assert_refused(const void *bytes, size_t len, const char *want)
{
    envelope_request_t rq;
    const char *message;
    if (s_decode(bytes, len, &rq, &message))
        fail_msg("request accepted, expected refusal with '%s'", want);
    assert_non_null(message);
    assert_true(message[0] != '\0');
    if (!strstr(message, want))
        fail_msg("message '%s' does not contain '%s'", message, want);
}

static void s_assert_refused_mp(mp_t *m, const char *want)
{
    s_assert_refused(m->sb.data, m->sb.size, want);
    mp_done(m);
}

/* A valid request with nesting in id and args; the caller destroys it. */
static void s_valid_request(mp_t *m)
{
    mp_init(m);
    msgpack_packer *pk = &m->pk;
    msgpack_pack_map(pk, 4);
    mp_pack_str(pk, "id");
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "a");
    msgpack_pack_array(pk, 3);
    msgpack_pack_int(pk, 1);
    msgpack_pack_int(pk, -300);
    mp_pack_str(pk, "x\xc3\xa9"); /* x, e-acute */
    mp_pack_str(pk, "op");
    mp_pack_str(pk, "catalog.get");
    mp_pack_str(pk, "token");
    mp_pack_str(pk, "eyJhbGciOi.payload.sig");
    mp_pack_str(pk, "args");
    msgpack_pack_map(pk, 5);
    mp_pack_str(pk, "sku");
    mp_pack_str(pk, "ABC-123");
    mp_pack_str(pk, "qty");
    msgpack_pack_uint32(pk, 70000);
    mp_pack_str(pk, "tags");
    msgpack_pack_array(pk, 2);
    mp_pack_str(pk, "new");
    msgpack_pack_nil(pk);
    mp_pack_str(pk, "price");
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "f");
    msgpack_pack_double(pk, 1.5);
    mp_pack_str(pk, "b");
    msgpack_pack_bin(pk, 3);
    msgpack_pack_bin_body(pk, "\x00\x01\x02", 3);
    mp_pack_str(pk, "on");
    msgpack_pack_true(pk);
}

/* n nested one-element arrays around a nil: depth n. Returns malloc'd bytes. */
static uint8_t *s_deep_array(int n, size_t *len)
{
    uint8_t *b = malloc((size_t)n + 1);
    assert_non_null(b);
    memset(b, 0x91, (size_t)n);
    b[n] = 0xc0;
    *len = (size_t)n + 1;
    return b;
}

/* ---- mpcheck ---- */

static void test_mpcheck_empty_and_size(void **state)
{
    (void)state;
    assert_int_equal(s_check("", 0, BIG, DEEP), MP_EMPTY);
    assert_int_equal(mpcheck(NULL, 0, BIG, DEEP), MP_EMPTY);
    /* "abc" as fixstr: 4 bytes. */
    assert_int_equal(s_check("\xa3"
                             "abc",
                             4, 3, DEEP),
                     MP_TOO_LARGE);
    assert_int_equal(s_check("\xa3"
                             "abc",
                             4, 4, DEEP),
                     MP_OK);
    /* The size check comes before any parsing: garbage over the limit is
     * too large, not bad. */
    assert_int_equal(s_check("\xc1\xc1", 2, 1, DEEP), MP_TOO_LARGE);

    /* The envelope's own limit. */
    size_t n = ENVELOPE_MAX_BYTES + 1;
    uint8_t *huge = calloc(1, n);
    assert_non_null(huge);
    s_assert_refused(huge, n, mpcheck_strerror(MP_TOO_LARGE));
    free(huge);
}

static void test_mpcheck_scalars_ok(void **state)
{
    (void)state;
    CHECK("\xc0", MP_OK);                                 /* nil */
    CHECK("\xc2", MP_OK);                                 /* false */
    CHECK("\xc3", MP_OK);                                 /* true */
    CHECK("\x7f", MP_OK);                                 /* positive fixint */
    CHECK("\xe0", MP_OK);                                 /* negative fixint */
    CHECK("\xcc\xff", MP_OK);                             /* uint8 */
    CHECK("\xcf\x01\x02\x03\x04\x05\x06\x07\x08", MP_OK); /* uint64 */
    CHECK("\xd3\xff\xff\xff\xff\xff\xff\xff\xff", MP_OK); /* int64 */
    CHECK("\xca\x3f\x80\x00\x00", MP_OK);                 /* float32 */
    CHECK("\xcb\x3f\xf0\x00\x00\x00\x00\x00\x00", MP_OK); /* float64 */
    CHECK("\xa0", MP_OK);                                 /* "" */
    CHECK("\xd9\x01z", MP_OK);                            /* str8 */
    CHECK("\xda\x00\x01z", MP_OK);                        /* str16 */
    CHECK("\xdb\x00\x00\x00\x01z", MP_OK);                /* str32 */
    CHECK("\xc4\x02\xff\xfe", MP_OK);                     /* bin8: any bytes */
    CHECK("\x90", MP_OK);                                 /* [] */
    CHECK("\x80", MP_OK);                                 /* {} */
    CHECK("\xdc\x00\x01\xc0", MP_OK);                     /* array16 [nil] */
    CHECK("\xdf\x00\x00\x00\x01\xa1k\x01", MP_OK);        /* map32 {"k":1} */
    /* A 32-bit count that is small but honest. */
    CHECK("\xdd\x00\x00\x00\x03\x01\x02\x03", MP_OK);
    /* Scalars with a short payload. */
    CHECK("\xcc", MP_TRUNCATED);
    CHECK("\xcb\x3f\xf0", MP_TRUNCATED);
    CHECK("\xd9", MP_TRUNCATED);
    CHECK("\xda\x00", MP_TRUNCATED);
}

static void test_mpcheck_truncated_every_prefix(void **state)
{
    (void)state;
    mp_t m;
    s_valid_request(&m);
    assert_int_equal(s_check(m.sb.data, m.sb.size, BIG, DEEP), MP_OK);
    envelope_request_t rq;
    const char *message;
    assert_true(s_decode(m.sb.data, m.sb.size, &rq, &message));

    assert_int_equal(s_check(m.sb.data, 0, BIG, DEEP), MP_EMPTY);
    for (size_t n = 1; n < m.sb.size; n++) {
        mp_status_t st = s_check(m.sb.data, n, BIG, DEEP);
        if (st != MP_TRUNCATED)
            fail_msg("prefix of %zu/%zu bytes: %s", n, m.sb.size, mpcheck_strerror(st));
        s_assert_refused(m.sb.data, n, mpcheck_strerror(MP_TRUNCATED));
    }
    s_assert_refused(m.sb.data, 0, mpcheck_strerror(MP_EMPTY));
    mp_done(&m);
}

static void test_mpcheck_trailing(void **state)
{
    (void)state;
    CHECK("\xc0\xc0", MP_TRAILING);
    CHECK("\x90\x00", MP_TRAILING);
    CHECK("\x81\xa1k\x01\x02", MP_TRAILING);
    /* A garbage byte after a complete value is trailing, not bad type. */
    CHECK("\x01\xc1", MP_TRAILING);

    mp_t m;
    s_valid_request(&m);
    msgpack_pack_nil(&m.pk);
    assert_int_equal(s_check(m.sb.data, m.sb.size, BIG, DEEP), MP_TRAILING);
    s_assert_refused_mp(&m, mpcheck_strerror(MP_TRAILING));
}

static void test_mpcheck_depth(void **state)
{
    (void)state;
    size_t len;
    for (int limit = 1; limit <= 30; limit++) {
        uint8_t *at = s_deep_array(limit, &len);
        assert_int_equal(s_check(at, len, BIG, limit), MP_OK);
        free(at);
        uint8_t *over = s_deep_array(limit + 1, &len);
        assert_int_equal(s_check(over, len, BIG, limit), MP_TOO_DEEP);
        free(over);
    }
    /* A scalar is depth 0; a container needs max_depth >= 1. */
    CHECK("\x01", MP_OK);
    assert_int_equal(s_check("\x01", 1, BIG, 0), MP_OK);
    assert_int_equal(s_check("\x90", 1, BIG, 0), MP_TOO_DEEP);

    /* Maps count too: {"a":{"a":{"a":1}}} is depth 3. */
    const char *maps = "\x81\xa1"
                       "a\x81\xa1"
                       "a\x81\xa1"
                       "a\x01";
    assert_int_equal(s_check(maps, strlen(maps), BIG, 3), MP_OK);
    assert_int_equal(s_check(maps, strlen(maps), BIG, 2), MP_TOO_DEEP);

    /* Depth is nesting, not the number of containers: many siblings at
     * depth 2 are fine with max_depth 2. */
    const char *siblings = "\x94\x90\x91\x01\x80\x92\x02\x03";
    assert_int_equal(s_check(siblings, strlen(siblings), BIG, 2), MP_OK);

    /* Whatever max_depth says, MPCHECK_DEPTH_LIMIT holds. */
    uint8_t *lim = s_deep_array(MPCHECK_DEPTH_LIMIT, &len);
    assert_int_equal(s_check(lim, len, BIG, 1000), MP_OK);
    free(lim);
    uint8_t *past = s_deep_array(MPCHECK_DEPTH_LIMIT + 1, &len);
    assert_int_equal(s_check(past, len, BIG, 1000), MP_TOO_DEEP);
    free(past);
    /* Very deep input: refused, the C stack is not used for nesting. */
    uint8_t *abyss = s_deep_array(100000, &len);
    assert_int_equal(s_check(abyss, len, BIG, 1000), MP_TOO_DEEP);
    free(abyss);

    /* The envelope's limit: the envelope map is depth 1, so the deepest
     * acceptable id is ENVELOPE_MAX_DEPTH - 1 arrays. */
    for (int extra = 0; extra <= 1; extra++) {
        int n = ENVELOPE_MAX_DEPTH - 1 + extra;
        mp_t m;
        mp_init(&m);
        msgpack_pack_map(&m.pk, 2);
        mp_pack_str(&m.pk, "op");
        mp_pack_str(&m.pk, "x");
        mp_pack_str(&m.pk, "id");
        for (int i = 0; i < n; i++)
            msgpack_pack_array(&m.pk, 1);
        msgpack_pack_int(&m.pk, 7);
        if (extra) {
            s_assert_refused_mp(&m, mpcheck_strerror(MP_TOO_DEEP));
        } else {
            envelope_request_t rq;
            const char *message;
            assert_true(s_decode(m.sb.data, m.sb.size, &rq, &message));
            mp_done(&m);
        }
    }
}

static void test_mpcheck_bad_types(void **state)
{
    (void)state;
    CHECK("\xc1", MP_BAD_TYPE);
    CHECK("\x91\xc1", MP_BAD_TYPE);
    CHECK("\x81\xa1k\xc1", MP_BAD_TYPE);
    CHECK("\xd4\x01\x00", MP_BAD_TYPE);                             /* fixext 1 */
    CHECK("\xd5\x01\x00\x00", MP_BAD_TYPE);                         /* fixext 2 */
    CHECK("\xd6\xff\x00\x00\x00\x00", MP_BAD_TYPE);                 /* fixext 4 (timestamp) */
    CHECK("\xd7\x01\x00\x00\x00\x00\x00\x00\x00\x00", MP_BAD_TYPE); /* fixext 8 */
    CHECK("\xc7\x01\x05\x00", MP_BAD_TYPE);                         /* ext 8 */
    CHECK("\xc8\x00\x01\x05\x00", MP_BAD_TYPE);                     /* ext 16 */
    CHECK("\xc9\x00\x00\x00\x01\x05\x00", MP_BAD_TYPE);             /* ext 32 */
    CHECK("\x92\x01\xd4\x01\x00", MP_BAD_TYPE);                     /* ext inside an array */

    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_pack_str(&m.pk, "op");
    mp_pack_str(&m.pk, "x");
    mp_pack_str(&m.pk, "args");
    msgpack_pack_map(&m.pk, 1);
    mp_pack_str(&m.pk, "e");
    msgpack_pack_ext(&m.pk, 1, 1);
    msgpack_pack_ext_body(&m.pk, "z", 1);
    s_assert_refused_mp(&m, mpcheck_strerror(MP_BAD_TYPE));
}

static void test_mpcheck_utf8(void **state)
{
    (void)state;
    CHECK("\xa2\xc3\xa9", MP_OK);               /* U+00E9 */
    CHECK("\xa3\xe2\x82\xac", MP_OK);           /* U+20AC */
    CHECK("\xa4\xf0\x9f\x98\x80", MP_OK);       /* U+1F600 */
    CHECK("\xa3\xef\xbf\xbf", MP_OK);           /* U+FFFF */
    CHECK("\xa4\xf4\x8f\xbf\xbf", MP_OK);       /* U+10FFFF */
    CHECK("\xa2\xc0\xaf", MP_BAD_UTF8);         /* overlong '/' */
    CHECK("\xa2\xc1\xbf", MP_BAD_UTF8);         /* overlong */
    CHECK("\xa3\xe0\x80\xaf", MP_BAD_UTF8);     /* overlong, 3 bytes */
    CHECK("\xa4\xf0\x80\x80\xaf", MP_BAD_UTF8); /* overlong, 4 bytes */
    CHECK("\xa3\xed\xa0\x80", MP_BAD_UTF8);     /* U+D800, a surrogate */
    CHECK("\xa3\xed\xbf\xbf", MP_BAD_UTF8);     /* U+DFFF */
    CHECK("\xa4\xf4\x90\x80\x80", MP_BAD_UTF8); /* past U+10FFFF */
    CHECK("\xa2\xe2\x82", MP_BAD_UTF8);         /* sequence cut by the str end */
    CHECK("\xa1\xc3", MP_BAD_UTF8);
    CHECK("\xa3x\xf0\x9f", MP_BAD_UTF8);
    CHECK("\xa1\x80", MP_BAD_UTF8);     /* lone continuation byte */
    CHECK("\xa2\xc3\x41", MP_BAD_UTF8); /* continuation missing */
    CHECK("\xa1\xff", MP_BAD_UTF8);
    CHECK("\xa5\xf8\x88\x80\x80\x80", MP_BAD_UTF8); /* 5-byte form */
    /* Keys are checked too, and str8 as well as fixstr. */
    CHECK("\x81\xa1\xff\x01", MP_BAD_UTF8);
    CHECK("\xd9\x02\xed\xa0", MP_BAD_UTF8);
    /* bin is not text: any bytes. */
    CHECK("\xc4\x03\xed\xa0\x80", MP_OK);

    /* utf8_valid itself, on exact-size heap copies. */
    static const struct {
        const char *s;
        size_t n;
        int ok;
    } cases[] = {
        {"", 0, 1},
        {"plain ascii", 11, 1},
        {"\x00", 1, 1},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, 1},
        {"\xc3", 1, 0},
        {"\xe2\x82", 2, 0},
        {"\xf0\x9f\x98", 3, 0},
        {"\xc0\x80", 2, 0},
        {"\xed\xb0\x80", 3, 0},
        {"\xfe", 1, 0},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint8_t *copy = malloc(cases[i].n + 1);
        memcpy(copy, cases[i].s, cases[i].n);
        int got = utf8_valid(copy, cases[i].n);
        free(copy);
        if (!got != !cases[i].ok)
            fail_msg("utf8_valid case %zu: got %d", i, got);
    }

    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 1);
    mp_pack_str(&m.pk, "op");
    mp_pack_strn(&m.pk, "\xed\xa0\x80", 3);
    s_assert_refused_mp(&m, mpcheck_strerror(MP_BAD_UTF8));
}

static void test_mpcheck_keys(void **state)
{
    (void)state;
    CHECK("\x81\x01\x02", MP_BAD_KEY);          /* int key */
    CHECK("\x81\xc0\x02", MP_BAD_KEY);          /* nil key */
    CHECK("\x81\xc4\x01k\x02", MP_BAD_KEY);     /* bin key */
    CHECK("\x81\x90\x02", MP_BAD_KEY);          /* array key */
    CHECK("\x81\x80\x02", MP_BAD_KEY);          /* map key */
    CHECK("\x82\xa1k\x01\x02\x03", MP_BAD_KEY); /* second key bad */
    CHECK("\x91\x81\x01\x02", MP_BAD_KEY);      /* nested map */
    /* Values may be anything; only keys must be str. */
    CHECK("\x81\xa1k\x81\xa1j\x90", MP_OK);
    /* The key check needs only the type byte, so it wins over truncation
     * of the key itself. */
    CHECK("\x81\xcd\x00", MP_BAD_KEY); /* uint16 key missing a byte */

    mp_t m;
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_pack_str(&m.pk, "op");
    mp_pack_str(&m.pk, "x");
    msgpack_pack_int(&m.pk, 1);
    msgpack_pack_int(&m.pk, 2);
    s_assert_refused_mp(&m, mpcheck_strerror(MP_BAD_KEY));
}

static void test_mpcheck_huge_counts(void **state)
{
    (void)state;
    /* A map claiming 2^32-1 entries in 6 bytes: refused from the header,
     * before anything is read or allocated. */
    CHECK("\xdf\xff\xff\xff\xff\xa0", MP_TRUNCATED);
    CHECK("\xdf\xff\xff\xff\xff", MP_TRUNCATED);
    CHECK("\xde\xff\xff\xa1k", MP_TRUNCATED);
    CHECK("\xdd\xff\xff\xff\xff\x01\x02\x03", MP_TRUNCATED); /* array32 */
    CHECK("\xdc\xff\xff\x01", MP_TRUNCATED);                 /* array16 */
    CHECK("\xdb\xff\xff\xff\xff"
          "abc",
          MP_TRUNCATED);                             /* str32 */
    CHECK("\xda\xff\xff", MP_TRUNCATED);             /* str16 */
    CHECK("\xc6\xff\xff\xff\xff\x00", MP_TRUNCATED); /* bin32 */
    /* Off by one: the count says 4 values, 3 are present. */
    CHECK("\xdd\x00\x00\x00\x04\x01\x02\x03", MP_TRUNCATED);
    /* A map's count is of pairs: 2 pairs need 4 values. */
    CHECK("\x82\xa1k\x01\xa1j", MP_TRUNCATED);
    /* Huge counts nested below the top. */
    CHECK("\x91\xdf\xff\xff\xff\xff\xa0", MP_TRUNCATED);

    /* Through the envelope: refused with a message, and since the bytes
     * never reach msgpack_unpack, nothing is allocated for 2^32 entries
     * (a zone that tried would abort or fail under ASan). */
    static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff, 0xa0};
    assert_int_equal(s_check(map32, sizeof map32, BIG, DEEP), MP_TRUNCATED);
    /* Instantly: the count is compared with the bytes left, never walked.
     * 100000 checks take milliseconds; walking 2^32 entries even once
     * would take seconds. */
    int64_t start = zclock_mono();
    for (int i = 0; i < 100000; i++)
        assert_int_equal(mpcheck(map32, sizeof map32, BIG, DEEP), MP_TRUNCATED);
    assert_true(zclock_mono() - start < 1000);
    s_assert_refused(map32, sizeof map32, mpcheck_strerror(MP_TRUNCATED));
    static const uint8_t str32[] = {0x81, 0xa2, 'o', 'p', 0xdb, 0xff, 0xff, 0xff, 0xff, 'x'};
    s_assert_refused(str32, sizeof str32, mpcheck_strerror(MP_TRUNCATED));
}

static void test_mpcheck_strerror(void **state)
{
    (void)state;
    for (int st = MP_OK; st <= MP_BAD_KEY; st++) {
        const char *s = mpcheck_strerror((mp_status_t)st);
        assert_non_null(s);
        assert_true(s[0] != '\0');
        for (int other = MP_OK; other < st; other++)
            assert_string_not_equal(s, mpcheck_strerror((mp_status_t)other));
    }
}

/* ---- envelope_decode_request ---- */

static void test_request_valid(void **state)
{
    (void)state;
    mp_t m;
    s_valid_request(&m);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_request_t rq;
    const char *message = NULL;
    assert_true(envelope_decode_request(m.sb.data, m.sb.size, &zone, &rq, &message));
    assert_int_equal(rq.op_len, strlen("catalog.get"));
    assert_memory_equal(rq.op, "catalog.get", rq.op_len);
    assert_non_null(rq.token);
    assert_int_equal(rq.token_len, strlen("eyJhbGciOi.payload.sig"));
    assert_int_equal(rq.id.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(rq.args.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(rq.args.via.map.size, 5);
    const msgpack_object *qty = mp_map_get(&rq.args, "qty");
    assert_non_null(qty);
    assert_int_equal(qty->via.u64, 70000);
    assert_true(mp_str_eq(mp_map_get(&rq.args, "sku"), "ABC-123"));
    assert_null(mp_map_get(&rq.args, "absent"));
    msgpack_zone_destroy(&zone);
    mp_done(&m);

    /* envelope_pack_request round trip, with and without token and args. */
    mp_init(&m);
    mp_t args;
    mp_init(&args);
    msgpack_pack_map(&args.pk, 1);
    mp_pack_str(&args.pk, "n");
    msgpack_pack_int(&args.pk, -5);
    envelope_pack_request(&m.sb, 42, "users.login", "tok", args.sb.data, args.sb.size);
    assert_true(s_decode(m.sb.data, m.sb.size, &rq, &message));
    mp_done(&args);
    msgpack_sbuffer_clear(&m.sb);
    envelope_pack_request(&m.sb, 43, "users.me", NULL, NULL, 0);
    msgpack_zone_init(&zone, 256);
    assert_true(envelope_decode_request(m.sb.data, m.sb.size, &zone, &rq, &message));
    assert_int_equal(rq.id.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(rq.id.via.u64, 43);
    assert_null(rq.token);
    assert_int_equal(rq.args.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(rq.args.via.map.size, 0);
    msgpack_zone_destroy(&zone);
    mp_done(&m);
}

static void test_request_not_a_map(void **state)
{
    (void)state;
    s_assert_refused(B("\x92\xa2op\xa1x"), "not a map");
    s_assert_refused(B("\x05"), "not a map");
    s_assert_refused(B("\xcd\x01\x00"), "not a map");
    s_assert_refused(B("\xa2op"), "not a map");
    s_assert_refused(B("\xc0"), "not a map");
    s_assert_refused(B("\xc4\x01x"), "not a map");
}

static void test_request_op(void **state)
{
    (void)state;
    mp_t m;
    /* Missing. */
    s_assert_refused(B("\x80"), "op is missing");
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_pack_str(&m.pk, "id");
    msgpack_pack_int(&m.pk, 1);
    mp_pack_str(&m.pk, "args");
    msgpack_pack_map(&m.pk, 0);
    s_assert_refused_mp(&m, "op is missing");

    /* Empty, too long, wrong types. */
    char op[ENVELOPE_MAX_OP + 2];
    memset(op, 'o', sizeof op);
    static const size_t lens[] = {0, ENVELOPE_MAX_OP + 1};
    for (size_t i = 0; i < 2; i++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mp_pack_str(&m.pk, "op");
        mp_pack_strn(&m.pk, op, lens[i]);
        s_assert_refused_mp(&m, "op must be a string");
    }
    for (int kind = 0; kind < 5; kind++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mp_pack_str(&m.pk, "op");
        switch (kind) {
        case 0:
            msgpack_pack_int(&m.pk, 3);
            break;
        case 1:
            msgpack_pack_nil(&m.pk);
            break;
        case 2:
            msgpack_pack_array(&m.pk, 0);
            break;
        case 3:
            msgpack_pack_bin(&m.pk, 1);
            msgpack_pack_bin_body(&m.pk, "x", 1);
            break;
        default:
            msgpack_pack_true(&m.pk);
            break;
        }
        s_assert_refused_mp(&m, "op must be a string");
    }

    /* Exactly ENVELOPE_MAX_OP bytes, and one byte, are accepted. */
    static const size_t good[] = {1, ENVELOPE_MAX_OP};
    for (size_t i = 0; i < 2; i++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 1);
        mp_pack_str(&m.pk, "op");
        mp_pack_strn(&m.pk, op, good[i]);
        envelope_request_t rq;
        const char *message;
        msgpack_zone zone;
        msgpack_zone_init(&zone, 256);
        assert_true(envelope_decode_request(m.sb.data, m.sb.size, &zone, &rq, &message));
        assert_int_equal(rq.op_len, good[i]);
        assert_int_equal(rq.id.type, MSGPACK_OBJECT_NIL);
        assert_null(rq.token);
        assert_int_equal(rq.args.type, MSGPACK_OBJECT_MAP);
        assert_int_equal(rq.args.via.map.size, 0);
        msgpack_zone_destroy(&zone);
        mp_done(&m);
    }
}

static void test_request_token(void **state)
{
    (void)state;
    mp_t m;
    for (int kind = 0; kind < 4; kind++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 2);
        mp_pack_str(&m.pk, "op");
        mp_pack_str(&m.pk, "x");
        mp_pack_str(&m.pk, "token");
        switch (kind) {
        case 0:
            msgpack_pack_int(&m.pk, 12);
            break;
        case 1:
            msgpack_pack_map(&m.pk, 0);
            break;
        case 2:
            msgpack_pack_bin(&m.pk, 1);
            msgpack_pack_bin_body(&m.pk, "t", 1);
            break;
        default:
            msgpack_pack_false(&m.pk);
            break;
        }
        s_assert_refused_mp(&m, "token must be a string");
    }
    /* Too long. */
    char *tok = malloc(ENVELOPE_MAX_TOKEN + 1);
    memset(tok, 't', ENVELOPE_MAX_TOKEN + 1);
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_pack_str(&m.pk, "op");
    mp_pack_str(&m.pk, "x");
    mp_pack_str(&m.pk, "token");
    mp_pack_strn(&m.pk, tok, ENVELOPE_MAX_TOKEN + 1);
    s_assert_refused_mp(&m, "token must be a string");

    /* Nil means absent; the maximum length is accepted. */
    for (int kind = 0; kind < 2; kind++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 2);
        mp_pack_str(&m.pk, "token");
        if (kind == 0)
            msgpack_pack_nil(&m.pk);
        else
            mp_pack_strn(&m.pk, tok, ENVELOPE_MAX_TOKEN);
        mp_pack_str(&m.pk, "op");
        mp_pack_str(&m.pk, "x");
        envelope_request_t rq;
        const char *message;
        msgpack_zone zone;
        msgpack_zone_init(&zone, 256);
        assert_true(envelope_decode_request(m.sb.data, m.sb.size, &zone, &rq, &message));
        if (kind == 0) {
            assert_null(rq.token);
        } else {
            assert_non_null(rq.token);
            assert_int_equal(rq.token_len, ENVELOPE_MAX_TOKEN);
        }
        msgpack_zone_destroy(&zone);
        mp_done(&m);
    }
    free(tok);
}

static void test_request_args(void **state)
{
    (void)state;
    mp_t m;
    for (int kind = 0; kind < 4; kind++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 2);
        mp_pack_str(&m.pk, "op");
        mp_pack_str(&m.pk, "x");
        mp_pack_str(&m.pk, "args");
        switch (kind) {
        case 0:
            msgpack_pack_array(&m.pk, 0);
            break;
        case 1:
            msgpack_pack_int(&m.pk, 1);
            break;
        case 2:
            mp_pack_str(&m.pk, "{}");
            break;
        default:
            msgpack_pack_true(&m.pk);
            break;
        }
        s_assert_refused_mp(&m, "args must be a map");
    }
    /* Nil args become an empty map. */
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_pack_str(&m.pk, "args");
    msgpack_pack_nil(&m.pk);
    mp_pack_str(&m.pk, "op");
    mp_pack_str(&m.pk, "x");
    envelope_request_t rq;
    const char *message;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    assert_true(envelope_decode_request(m.sb.data, m.sb.size, &zone, &rq, &message));
    assert_int_equal(rq.args.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(rq.args.via.map.size, 0);
    assert_null(mp_map_get(&rq.args, "anything"));
    msgpack_zone_destroy(&zone);
    mp_done(&m);
}

static void test_request_keys(void **state)
{
    (void)state;
    mp_t m;
    /* Unknown top-level key, including near misses. */
    static const char *unknown[] = {"extra", "ID", "op ", "", "arg"};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 2);
        mp_pack_str(&m.pk, "op");
        mp_pack_str(&m.pk, "x");
        mp_pack_str(&m.pk, unknown[i]);
        msgpack_pack_int(&m.pk, 1);
        s_assert_refused_mp(&m, "unknown key");
    }
    /* Duplicates of each known key. */
    static const char *known[] = {"id", "op", "token", "args"};
    for (size_t i = 0; i < 4; i++) {
        mp_init(&m);
        msgpack_pack_map(&m.pk, 3);
        mp_pack_str(&m.pk, "op");
        mp_pack_str(&m.pk, "x");
        for (int twice = 0; twice < 2; twice++) {
            mp_pack_str(&m.pk, known[i]);
            if (i == 3)
                msgpack_pack_map(&m.pk, 0);
            else
                mp_pack_str(&m.pk, "v");
        }
        s_assert_refused_mp(&m, "duplicate key");
    }
    /* Duplicate keys inside args are the handler's business: accepted. */
    mp_init(&m);
    msgpack_pack_map(&m.pk, 2);
    mp_pack_str(&m.pk, "op");
    mp_pack_str(&m.pk, "x");
    mp_pack_str(&m.pk, "args");
    msgpack_pack_map(&m.pk, 2);
    mp_pack_str(&m.pk, "a");
    msgpack_pack_int(&m.pk, 1);
    mp_pack_str(&m.pk, "a");
    msgpack_pack_int(&m.pk, 2);
    envelope_request_t rq;
    const char *message;
    assert_true(s_decode(m.sb.data, m.sb.size, &rq, &message));
    mp_done(&m);
}

/* Packs an id of the given kind; returns its expected msgpack type. */
static msgpack_object_type s_pack_id(msgpack_packer *pk, int kind)
{
    switch (kind) {
    case 0:
        mp_pack_str(pk, "req-7");
        return MSGPACK_OBJECT_STR;
    case 1:
        msgpack_pack_uint64(pk, UINT64_MAX);
        return MSGPACK_OBJECT_POSITIVE_INTEGER;
    case 2:
        msgpack_pack_int64(pk, -12);
        return MSGPACK_OBJECT_NEGATIVE_INTEGER;
    case 3:
        msgpack_pack_map(pk, 2);
        mp_pack_str(pk, "trace");
        mp_pack_str(pk, "abc");
        mp_pack_str(pk, "n");
        msgpack_pack_array(pk, 2);
        msgpack_pack_int(pk, 1);
        msgpack_pack_nil(pk);
        return MSGPACK_OBJECT_MAP;
    case 4:
        msgpack_pack_double(pk, 2.5);
        return MSGPACK_OBJECT_FLOAT64;
    case 5:
        msgpack_pack_bin(pk, 2);
        msgpack_pack_bin_body(pk, "\x00\xff", 2);
        return MSGPACK_OBJECT_BIN;
    default:
        msgpack_pack_nil(pk);
        return MSGPACK_OBJECT_NIL;
    }
}

/* Asserts that two objects are equal (msgpack_object_equal). */
static void s_assert_same_object(const msgpack_object *a, const msgpack_object *b)
{
    if (!msgpack_object_equal(*a, *b))
        fail_msg("objects differ (types %d and %d)", a->type, b->type);
}

static void test_request_id_echoed(void **state)
{
    (void)state;
    for (int kind = 0; kind <= 7; kind++) {
        /* kind 7: no id at all. */
        mp_t m;
        mp_init(&m);
        msgpack_pack_map(&m.pk, kind == 7 ? 1 : 2);
        mp_pack_str(&m.pk, "op");
        mp_pack_str(&m.pk, "x");
        msgpack_object_type want = MSGPACK_OBJECT_NIL;
        if (kind != 7) {
            mp_pack_str(&m.pk, "id");
            want = s_pack_id(&m.pk, kind);
        }
        msgpack_zone zone;
        msgpack_zone_init(&zone, 256);
        envelope_request_t rq;
        const char *message;
        assert_true(envelope_decode_request(m.sb.data, m.sb.size, &zone, &rq, &message));
        assert_int_equal(rq.id.type, want);

        /* The broker's path: an error for bytes it did not decode. */
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        envelope_error_for(&out, m.sb.data, m.sb.size, ERR_TIMEOUT, "too slow");
        msgpack_zone rzone;
        msgpack_zone_init(&rzone, 256);
        envelope_reply_t reply;
        assert_true(envelope_decode_reply(out.data, out.size, &rzone, &reply, &message));
        assert_false(reply.ok);
        assert_int_equal(reply.code, ERR_TIMEOUT);
        s_assert_same_object(&reply.id, &rq.id);
        assert_true(mp_str_eq(mp_map_get(&reply.error, "message"), "too slow"));

        /* The handler's path: an ok reply. */
        msgpack_sbuffer_clear(&out);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
        envelope_reply_ok_begin(&pk, &rq.id);
        mp_pack_str(&pk, "fine");
        assert_true(envelope_decode_reply(out.data, out.size, &rzone, &reply, &message));
        assert_true(reply.ok);
        s_assert_same_object(&reply.id, &rq.id);
        assert_true(mp_str_eq(&reply.data, "fine"));

        msgpack_zone_destroy(&rzone);
        msgpack_sbuffer_destroy(&out);
        msgpack_zone_destroy(&zone);
        mp_done(&m);
    }
}

/* ---- replies ---- */

static void test_error_for_garbage(void **state)
{
    (void)state;
    static const struct {
        const char *bytes;
        size_t len;
    } garbage[] = {
        {B("")},
        {B("\xc1")},
        {B("\xdf\xff\xff\xff\xff\xa0")},
        {B("\x81\xa2id\x05")},                /* valid map, id but no op */
        {B("\x82\xa2id\x05\xa2op\x05")},      /* op not a string */
        {B("\x82\xa2id\x05\xa2op\xa1x\x00")}, /* trailing byte */
        {B("hello")},
    };
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        char *copy = malloc(garbage[i].len + 1);
        memcpy(copy, garbage[i].bytes, garbage[i].len);
        envelope_error_for(&out, copy, garbage[i].len, ERR_MALFORMED_BODY, NULL);
        free(copy);
        msgpack_zone zone;
        msgpack_zone_init(&zone, 256);
        envelope_reply_t reply;
        const char *message;
        assert_true(envelope_decode_reply(out.data, out.size, &zone, &reply, &message));
        assert_false(reply.ok);
        assert_int_equal(reply.id.type, MSGPACK_OBJECT_NIL);
        assert_int_equal(reply.code, ERR_MALFORMED_BODY);
        /* A NULL message falls back to the code's name. */
        assert_true(mp_str_eq(mp_map_get(&reply.error, "message"), "malformed_body"));
        assert_null(mp_map_get(&reply.error, "details"));
        msgpack_zone_destroy(&zone);
        msgpack_sbuffer_destroy(&out);
    }
    /* A NULL request is garbage too. */
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    envelope_error_for(&out, NULL, 0, ERR_UNAVAILABLE, "no worker");
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_reply_t reply;
    const char *message;
    assert_true(envelope_decode_reply(out.data, out.size, &zone, &reply, &message));
    assert_int_equal(reply.code, ERR_UNAVAILABLE);
    assert_int_equal(reply.id.type, MSGPACK_OBJECT_NIL);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&out);
}

static void test_reply_error_details(void **state)
{
    (void)state;
    mp_t details;
    mp_init(&details);
    msgpack_pack_map(&details.pk, 1);
    mp_pack_str(&details.pk, "reason");
    mp_pack_str(&details.pk, "insufficient_funds");
    msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 99};

    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    envelope_reply_error(&out, &id, ERR_PAYMENT_DECLINED, "card declined", details.sb.data,
                         details.sb.size);
    assert_int_equal(s_check(out.data, out.size, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH), MP_OK);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_reply_t reply;
    const char *message;
    assert_true(envelope_decode_reply(out.data, out.size, &zone, &reply, &message));
    assert_false(reply.ok);
    assert_int_equal(reply.id.type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    assert_int_equal(reply.id.via.u64, 99);
    assert_int_equal(reply.code, ERR_PAYMENT_DECLINED);
    assert_int_equal(reply.error.type, MSGPACK_OBJECT_MAP);
    assert_int_equal(reply.error.via.map.size, 3);
    assert_true(mp_str_eq(mp_map_get(&reply.error, "code"), "payment_declined"));
    assert_true(mp_str_eq(mp_map_get(&reply.error, "message"), "card declined"));
    const msgpack_object *d = mp_map_get(&reply.error, "details");
    assert_non_null(d);
    assert_true(mp_str_eq(mp_map_get(d, "reason"), "insufficient_funds"));
    /* The top map has exactly id, ok, error. */
    msgpack_object top;
    size_t off = 0;
    assert_int_equal(msgpack_unpack(out.data, out.size, &off, &zone, &top), MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(top.via.map.size, 3);
    assert_non_null(mp_map_get(&top, "error"));
    assert_null(mp_map_get(&top, "data"));
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&out);

    /* A NULL id is sent as nil. */
    msgpack_sbuffer_init(&out);
    envelope_reply_error(&out, NULL, ERR_NOT_FOUND, "no such sku", NULL, 0);
    msgpack_zone_init(&zone, 256);
    assert_true(envelope_decode_reply(out.data, out.size, &zone, &reply, &message));
    assert_int_equal(reply.id.type, MSGPACK_OBJECT_NIL);
    assert_int_equal(reply.code, ERR_NOT_FOUND);
    assert_int_equal(reply.error.via.map.size, 2);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&out);
    mp_done(&details);
}

static void test_decode_reply(void **state)
{
    (void)state;
    /* Every code maps back from its name. */
    for (int c = 0; c < ERR__COUNT; c++) {
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = (uint64_t)c};
        envelope_reply_error(&out, &id, (err_code_t)c, "m", NULL, 0);
        msgpack_zone zone;
        msgpack_zone_init(&zone, 256);
        envelope_reply_t reply;
        const char *message;
        assert_true(envelope_decode_reply(out.data, out.size, &zone, &reply, &message));
        assert_false(reply.ok);
        assert_int_equal(reply.code, c);
        assert_int_equal(reply.id.via.u64, (uint64_t)c);
        msgpack_zone_destroy(&zone);
        msgpack_sbuffer_destroy(&out);
    }

    /* Hand-made replies: ok with and without data, odd error maps. */
    static const struct {
        const char *bytes;
        size_t len;
        bool decoded;
        bool ok;
        err_code_t code;
        const char *why;
    } cases[] = {
        /* {"id":1,"ok":true,"data":[1]} */
        {B("\x83\xa2id\x01\xa2ok\xc3\xa4"
           "data\x91\x01"),
         true, true, ERR_NONE, NULL},
        /* {"ok":true}: data nil, id nil */
        {B("\x81\xa2ok\xc3"), true, true, ERR_NONE, NULL},
        /* {"ok":false,"error":{"code":"nope"}}: unknown code -> internal */
        {B("\x82\xa2ok\xc2\xa5"
           "error\x81\xa4"
           "code\xa4nope"),
         true, false, ERR_INTERNAL, NULL},
        /* {"ok":false,"error":{"code":"out_of_stock"}} */
        {B("\x82\xa2ok\xc2\xa5"
           "error\x81\xa4"
           "code\xacout_of_stock"),
         true, false, ERR_OUT_OF_STOCK, NULL},
        /* {"ok":1}: ok not a boolean */
        {B("\x81\xa2ok\x01"), false, false, ERR_NONE, "boolean ok"},
        /* {"id":1} */
        {B("\x81\xa2id\x01"), false, false, ERR_NONE, "boolean ok"},
        /* {"ok":false} with no error */
        {B("\x81\xa2ok\xc2"), false, false, ERR_NONE, "no code"},
        /* {"ok":false,"error":"x"} */
        {B("\x82\xa2ok\xc2\xa5"
           "error\xa1x"),
         false, false, ERR_NONE, "no code"},
        /* {"ok":false,"error":{"code":5}} */
        {B("\x82\xa2ok\xc2\xa5"
           "error\x81\xa4"
           "code\x05"),
         false, false, ERR_NONE, "no code"},
        /* not a map */
        {B("\x91\xc3"), false, false, ERR_NONE, "not a map"},
        /* truncated */
        {B("\x83\xa2id\x01"), false, false, ERR_NONE, "truncated"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *copy = malloc(cases[i].len);
        memcpy(copy, cases[i].bytes, cases[i].len);
        msgpack_zone zone;
        msgpack_zone_init(&zone, 256);
        envelope_reply_t reply;
        const char *message = NULL;
        bool got = envelope_decode_reply(copy, cases[i].len, &zone, &reply, &message);
        if (got != cases[i].decoded)
            fail_msg("reply case %zu: decoded=%d (%s)", i, got, message ? message : "");
        if (got) {
            assert_int_equal(reply.ok, cases[i].ok);
            if (!reply.ok)
                assert_int_equal(reply.code, cases[i].code);
        } else {
            assert_non_null(message);
            if (!strstr(message, cases[i].why))
                fail_msg("reply case %zu: message '%s'", i, message);
        }
        msgpack_zone_destroy(&zone);
        free(copy);
    }
}

/* ---- errors ---- */

static void test_errors_table(void **state)
{
    (void)state;
    /* API.md section 3, plus the codes it does not list: "ok" (never
     * sent as an error), "internal", the catch-all a client sees when a
     * handler fails unexpectedly, which is a 500, and "method_not_allowed",
     * the bridge's 405 for a known path with another method. */
    static const struct {
        const char *name;
        int status;
    } api[] = {
        {"ok", 200},
        {"invalid_argument", 400},
        {"malformed_body", 400},
        {"unauthenticated", 401},
        {"invalid_credentials", 401},
        {"token_expired", 401},
        {"payment_declined", 402},
        {"forbidden", 403},
        {"not_found", 404},
        {"method_not_allowed", 405},
        {"conflict", 409},
        {"email_taken", 409},
        {"sku_taken", 409},
        {"out_of_stock", 409},
        {"invalid_transition", 409},
        {"idempotency_key_reused", 409},
        {"version_mismatch", 412},
        {"payload_too_large", 413},
        {"unsupported_media_type", 415},
        {"rate_limited", 429},
        {"unavailable", 503},
        {"timeout", 504},
        {"internal", 500},
        {"gateway_error", 502},
        {"idempotency_key_in_use", 409},
    };
    const size_t n_api = sizeof api / sizeof api[0];
    bool listed[sizeof api / sizeof api[0]] = {false};

    for (int c = 0; c < ERR__COUNT; c++) {
        const char *name = err_code_name((err_code_t)c);
        assert_non_null(name);
        assert_true(name[0] != '\0');
        for (int other = 0; other < c; other++)
            assert_string_not_equal(name, err_code_name((err_code_t)other));
        assert_int_equal(err_code_from_name(name, strlen(name)), c);
        size_t k = 0;
        while (k < n_api && strcmp(api[k].name, name) != 0)
            k++;
        if (k == n_api)
            fail_msg("code %d '%s' is not in the API table", c, name);
        listed[k] = true;
        if (err_http_status((err_code_t)c) != api[k].status)
            fail_msg("%s maps to %d, API.md says %d", name, err_http_status((err_code_t)c),
                     api[k].status);
    }
    for (size_t k = 0; k < n_api; k++)
        if (!listed[k])
            fail_msg("API code '%s' has no err_code_t", api[k].name);
    assert_int_equal(ERR__COUNT, n_api);

    /* Out of range and unknown names fall back to internal. */
    assert_string_equal(err_code_name(ERR__COUNT), "internal");
    assert_string_equal(err_code_name((err_code_t)1000), "internal");
    assert_int_equal(err_http_status(ERR__COUNT), 500);
    assert_int_equal(err_code_from_name("nope", 4), ERR_INTERNAL);
    assert_int_equal(err_code_from_name("", 0), ERR_INTERNAL);
    /* Length-bounded: a prefix or an extension of a name is not the name. */
    assert_int_equal(err_code_from_name("not_found_x", 9), ERR_NOT_FOUND);
    assert_int_equal(err_code_from_name("not_foun", 8), ERR_INTERNAL);
    assert_int_equal(err_code_from_name("conflicts", 9), ERR_INTERNAL);
}

/* ---- random battery ---- */

static uint64_t s_rng;

static uint64_t s_rand(void)
{
    /* xorshift64* */
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 0x2545F4914F6CDD1DULL;
}

/* Runs one buffer through mpcheck and envelope_decode_request and checks
 * mpcheck's promise. Returns the mpcheck status. */
static mp_status_t s_battery_one(const uint8_t *bytes, size_t len, msgpack_zone *zone,
                                 bool *decoded)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, bytes, len);
    mp_status_t st = mpcheck(copy, len, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH);
    assert_true(st >= MP_OK && st <= MP_BAD_KEY);
    if (st == MP_OK) {
        msgpack_object obj;
        size_t off = 0;
        msgpack_unpack_return r = msgpack_unpack((const char *)copy, len, &off, zone, &obj);
        if (r != MSGPACK_UNPACK_SUCCESS || off != len)
            fail_msg("mpcheck accepted %zu bytes that msgpack_unpack refused (%d, off %zu)", len,
                     (int)r, off);
        msgpack_zone_clear(zone);
    }
    envelope_request_t rq;
    const char *message = NULL;
    *decoded = envelope_decode_request(copy, len, zone, &rq, &message);
    if (*decoded) {
        assert_int_equal(st, MP_OK);
        assert_true(rq.op_len >= 1 && rq.op_len <= ENVELOPE_MAX_OP);
        assert_int_equal(rq.args.type, MSGPACK_OBJECT_MAP);
    } else {
        assert_non_null(message);
        assert_true(message[0] != '\0');
        if (st != MP_OK)
            assert_string_equal(message, mpcheck_strerror(st));
    }
    msgpack_zone_clear(zone);
    free(copy);
    return st;
}

static void test_random_battery(void **state)
{
    (void)state;
    s_rng = 0x9e3779b97f4a7c15ULL;
    mp_t valid;
    s_valid_request(&valid);
    const uint8_t *v = (const uint8_t *)valid.sb.data;
    const size_t vlen = valid.sb.size;
    /* Bytes that start containers and strings, to make random buffers
     * reach deeper than uniform bytes would. */
    static const uint8_t palette[] = {0x80, 0x81, 0x82, 0x90, 0x91, 0x93, 0xa1, 0xa3,
                                      0xc0, 0xc3, 0xd9, 0xdc, 0xde, 0xdf, 0xdd, 0xdb,
                                      0xc4, 0x01, 0x7f, 0xe0, 0xcb, 0xd4, 0xc1, 0xff};
    uint8_t buf[512];
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    int ok = 0, refused = 0, decoded = 0;

    for (int iter = 0; iter < 20000; iter++) {
        size_t len;
        if (iter % 2 == 0) {
            /* Random bytes, lengths 0..64. */
            len = s_rand() % 65;
            bool biased = iter % 4 == 0;
            for (size_t i = 0; i < len; i++) {
                uint64_t r = s_rand();
                buf[i] = biased && (r & 1) ? palette[(r >> 8) % sizeof palette] : (uint8_t)(r >> 8);
            }
        } else {
            /* A mutation of the valid request: 1..4 flips, inserts or
             * deletes. */
            memcpy(buf, v, vlen);
            len = vlen;
            int edits = 1 + (int)(s_rand() % 4);
            for (int e = 0; e < edits; e++) {
                uint64_t r = s_rand();
                size_t at = len ? (size_t)(r >> 16) % len : 0;
                switch (r % 3) {
                case 0: /* flip bits */
                    if (len)
                        buf[at] ^= (uint8_t)(1u << ((r >> 8) % 8));
                    break;
                case 1: /* insert a byte */
                    if (len < sizeof buf) {
                        memmove(buf + at + 1, buf + at, len - at);
                        buf[at] = (uint8_t)(r >> 40);
                        len++;
                    }
                    break;
                default: /* delete a byte */
                    if (len) {
                        memmove(buf + at, buf + at + 1, len - at - 1);
                        len--;
                    }
                    break;
                }
            }
        }
        bool valid;
        if (s_battery_one(buf, len, &zone, &valid) == MP_OK)
            ok++;
        else
            refused++;
        decoded += valid;
    }
    print_message("random battery: %d accepted by mpcheck, %d refused, %d valid requests\n", ok,
                  refused, decoded);
    /* The battery must exercise both sides. */
    assert_true(ok > 500);
    assert_true(refused > 500);
    assert_true(decoded > 100);
    msgpack_zone_destroy(&zone);
    mp_done(&valid);
}

/* ---- the checked output and failing encoders ---- */

static void test_mpout_limit_sticky(void **state)
{
    (void)state;
    mpout_t out;
    mpout_init(&out, 16);
    assert_int_equal(mpout_write(&out, "0123456789", 10), 0);
    assert_false(out.failed);
    /* Up to the limit exactly is fine. */
    assert_int_equal(mpout_write(&out, "abcdef", 6), 0);
    assert_int_equal(out.buf.size, 16);
    assert_false(out.failed);
    /* One byte past it is refused and appends nothing. */
    assert_int_equal(mpout_write(&out, "x", 1), -1);
    assert_true(out.failed);
    assert_true(out.over_limit);
    assert_int_equal(out.buf.size, 16);
    assert_memory_equal(out.buf.data, "0123456789abcdef", 16);
    /* Cleared: empty, failure forgotten, limit kept. */
    mpout_clear(&out);
    assert_false(out.failed);
    assert_false(out.over_limit);
    assert_int_equal(out.buf.size, 0);
    assert_int_equal(mpout_write(&out, "0123456789", 10), 0);
    assert_int_equal(mpout_write(&out, "0123456789", 10), -1);
    assert_true(out.over_limit);
    /* Sticky: a write that would fit is refused after a failure. */
    assert_int_equal(mpout_write(&out, "y", 1), -1);
    assert_int_equal(out.buf.size, 10);

    /* Through a packer: the value that crosses the limit fails, and so
     * does every value after it, small or not. */
    mpout_clear(&out);
    msgpack_packer pk;
    mpout_packer(&out, &pk);
    assert_int_equal(msgpack_pack_array(&pk, 3), 0);
    assert_int_equal(mp_pack_str(&pk, "ab"), 0);
    assert_int_equal(out.buf.size, 4);
    /* The string's header fits (5 bytes), its 21-byte body does not. */
    assert_int_equal(mp_pack_str(&pk, "a string of twenty ch"), -1);
    assert_true(out.failed && out.over_limit);
    assert_int_equal(out.buf.size, 5);
    assert_int_equal(msgpack_pack_nil(&pk), -1);
    assert_int_equal(mp_pack_raw(&pk, "\xc0", 1), -1);
    assert_int_equal(out.buf.size, 5);
    mpout_destroy(&out);

    /* No limit: 0. */
    mpout_init(&out, 0);
    char *big = calloc(1, 3 << 20);
    assert_non_null(big);
    assert_int_equal(mpout_write(&out, big, 3 << 20), 0);
    assert_int_equal(out.buf.size, 3 << 20);
    assert_false(out.failed);
    free(big);
    mpout_destroy(&out);
}

static void test_mpout_out_of_memory(void **state)
{
    (void)state;
    mpout_t out;
    mpout_init(&out, 0);
    msgpack_packer pk;
    mpout_packer(&out, &pk);
    assert_int_equal(msgpack_pack_map(&pk, 1), 0);
    assert_int_equal(mp_pack_str(&pk, "k"), 0);
    size_t before = out.buf.size;
    /* A real realloc failure: flagged as memory, not as the limit. */
    assert_int_equal(mp_pack_raw(&pk, "\xc0", NO_MEMORY_LEN), -1);
    assert_true(out.failed);
    assert_false(out.over_limit);
    assert_int_equal(out.buf.size, before);
    /* Memory for a nil is there, but the map is missing its value: the
     * output stays refused. */
    assert_int_equal(msgpack_pack_nil(&pk), -1);
    assert_int_equal(out.buf.size, before);
    mpout_clear(&out);
    assert_int_equal(msgpack_pack_nil(&pk), 0);
    assert_int_equal(out.buf.size, 1);
    mpout_destroy(&out);
}

/* The bytes of out decode as an error reply with this id type and code. */
static void s_assert_error_reply(const void *bytes, size_t len, msgpack_object_type id_type,
                                 err_code_t code, const char *text)
{
    assert_int_equal(s_check(bytes, len, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH), MP_OK);
    msgpack_zone zone;
    assert_true(msgpack_zone_init(&zone, 256));
    envelope_reply_t reply;
    const char *message;
    assert_true(envelope_decode_reply(bytes, len, &zone, &reply, &message));
    assert_false(reply.ok);
    assert_int_equal(reply.id.type, id_type);
    assert_int_equal(reply.code, code);
    assert_true(mp_str_eq(mp_map_get(&reply.error, "message"), text));
    msgpack_zone_destroy(&zone);
}

static void test_encoders_fail_whole(void **state)
{
    (void)state;
    msgpack_object id = {.type = MSGPACK_OBJECT_POSITIVE_INTEGER, .via.u64 = 7};
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    /* Something already in the buffer stays; nothing of the failed
     * message is left after it. */
    assert_int_equal(msgpack_sbuffer_write(&out, "\xc0", 1), 0);
    assert_int_equal(envelope_reply_error(&out, &id, ERR_CONFLICT, "m", "\xc0", NO_MEMORY_LEN), -1);
    assert_int_equal(out.size, 1);
    assert_int_equal(envelope_pack_request(&out, 1, "sys.echo", "tok", "\x80", NO_MEMORY_LEN), -1);
    assert_int_equal(out.size, 1);
    /* The same calls succeed when they can, and say so. */
    assert_int_equal(envelope_reply_error(&out, &id, ERR_CONFLICT, "m", "\xc0", 1), 0);
    s_assert_error_reply(out.data + 1, out.size - 1, MSGPACK_OBJECT_POSITIVE_INTEGER, ERR_CONFLICT,
                         "m");
    msgpack_sbuffer_clear(&out);
    assert_int_equal(envelope_pack_request(&out, 1, "sys.echo", "tok", "\x80", 1), 0);
    envelope_request_t rq;
    const char *why;
    assert_true(s_decode(out.data, out.size, &rq, &why));
    msgpack_sbuffer_clear(&out);
    assert_int_equal(envelope_error_for(&out, NULL, 0, ERR_TIMEOUT, "late"), 0);
    s_assert_error_reply(out.data, out.size, MSGPACK_OBJECT_NIL, ERR_TIMEOUT, "late");
    msgpack_sbuffer_destroy(&out);

    /* Through a checked output: each encoder reports the refusal, and
     * the output keeps it. */
    mpout_t mo;
    mpout_init(&mo, 8);
    msgpack_packer pk;
    mpout_packer(&mo, &pk);
    assert_int_equal(envelope_reply_ok_begin(&pk, &id), -1);
    assert_true(mo.failed && mo.over_limit);
    mpout_clear(&mo);
    assert_int_equal(envelope_pack_error(&pk, &id, ERR_CONFLICT, "m", NULL, 0), -1);
    assert_true(mo.failed && mo.over_limit);
    mpout_destroy(&mo);
    mpout_init(&mo, ENVELOPE_MAX_BYTES);
    mpout_packer(&mo, &pk);
    assert_int_equal(envelope_pack_error(&pk, &id, ERR_CONFLICT, "m", "\xc0", 1), 0);
    s_assert_error_reply(mo.buf.data, mo.buf.size, MSGPACK_OBJECT_POSITIVE_INTEGER, ERR_CONFLICT,
                         "m");
    mpout_destroy(&mo);
}

static void test_reply_fixed(void **state)
{
    (void)state;
    static const struct {
        envelope_fixed_t which;
        err_code_t code;
        const char *message;
    } fixed[] = {
        {ENVELOPE_FIXED_OUT_OF_MEMORY, ERR_UNAVAILABLE, ENVELOPE_MSG_OUT_OF_MEMORY},
        {ENVELOPE_FIXED_TOO_LARGE, ERR_INTERNAL, ENVELOPE_MSG_TOO_LARGE},
    };
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
        size_t len = 0;
        const char *bytes = envelope_reply_fixed(fixed[i].which, &len);
        assert_non_null(bytes);
        s_assert_error_reply(bytes, len, MSGPACK_OBJECT_NIL, fixed[i].code, fixed[i].message);
        /* Byte for byte what the encoder makes of the same error. */
        msgpack_sbuffer out;
        msgpack_sbuffer_init(&out);
        assert_int_equal(envelope_reply_error(&out, NULL, fixed[i].code, fixed[i].message, NULL, 0),
                         0);
        assert_int_equal(out.size, len);
        assert_memory_equal(out.data, bytes, len);
        msgpack_sbuffer_destroy(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mpcheck_empty_and_size),
        cmocka_unit_test(test_mpcheck_scalars_ok),
        cmocka_unit_test(test_mpcheck_truncated_every_prefix),
        cmocka_unit_test(test_mpcheck_trailing),
        cmocka_unit_test(test_mpcheck_depth),
        cmocka_unit_test(test_mpcheck_bad_types),
        cmocka_unit_test(test_mpcheck_utf8),
        cmocka_unit_test(test_mpcheck_keys),
        cmocka_unit_test(test_mpcheck_huge_counts),
        cmocka_unit_test(test_mpcheck_strerror),
        cmocka_unit_test(test_request_valid),
        cmocka_unit_test(test_request_not_a_map),
        cmocka_unit_test(test_request_op),
        cmocka_unit_test(test_request_token),
        cmocka_unit_test(test_request_args),
        cmocka_unit_test(test_request_keys),
        cmocka_unit_test(test_request_id_echoed),
        cmocka_unit_test(test_error_for_garbage),
        cmocka_unit_test(test_reply_error_details),
        cmocka_unit_test(test_decode_reply),
        cmocka_unit_test(test_errors_table),
        cmocka_unit_test(test_random_battery),
        cmocka_unit_test(test_mpout_limit_sticky),
        cmocka_unit_test(test_mpout_out_of_memory),
        cmocka_unit_test(test_encoders_fail_whole),
        cmocka_unit_test(test_reply_fixed),
    };
    return cmocka_run_group_tests_name("envelope", tests, NULL, NULL);
}

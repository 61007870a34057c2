/*  jsonpack.c - JSON text <-> msgpack, strictly and within fixed bounds.
 *
 *  JSON -> msgpack: jansson parses the whole text into a tree (it rejects
 *  duplicate keys, trailing bytes, \u0000, bad UTF-8 and integers beyond
 *  long long for us, given the flags below), then one recursive walk
 *  writes msgpack while counting depth. The walk is the depth check: it
 *  stops at the first container past max_depth, so its own recursion is
 *  bounded by JSONPACK_DEPTH_LIMIT even though jansson accepts far deeper
 *  input. On failure the output buffer is cut back to where it started, so
 *  a caller appending to a larger message never sees half a value.
 *
 *  msgpack -> JSON: a recursive walk builds a jansson tree, refusing what
 *  JSON cannot carry faithfully (see jsonpack.h), then json_dump_callback
 *  writes it into a buffer we malloc ourselves, so callers free() the text
 *  without caring which allocator jansson was configured with. Compact
 *  text (what the bridge writes) skips the tree: one walk writes it.
 *
 *  Every pass is linear in its input, because the bridge runs them on its
 *  one thread for bodies from outside: jansson finds duplicate keys with
 *  its hash table (seeded at random per process); the compact writer with
 *  a keyed hash set per map (below), never by comparing each key with
 *  every earlier one, which made a 1 MiB map of 200,000 keys cost minutes.
 */
#include "protocol/jsonpack.h"
#include "protocol/envelope.h"
#include "protocol/mpcheck.h"

#include <math.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Writes a message into err (when the caller gave room) and returns -1, so
 * that failure paths read "return s_fail(...)". */
static int s_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int s_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        /* A message must never come back empty, even if formatting did. */
        if (n <= 0)
            snprintf(err, errlen, "jsonpack error");
    }
    return -1;
}

/* ---------------------------------------------------------------------
 *  JSON -> msgpack
 */

typedef struct {
    msgpack_packer pk;
    int max_depth;
    char *err;
    size_t errlen;
} to_mp_t;

static int s_pack_str(to_mp_t *ctx, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        return s_fail(ctx->err, ctx->errlen, "string longer than msgpack allows");
    if (msgpack_pack_str(&ctx->pk, n) != 0 || msgpack_pack_str_body(&ctx->pk, s, n) != 0)
        return s_fail(ctx->err, ctx->errlen, "out of memory writing msgpack");
    return 0;
}

/* Packs v, which sits inside `level` containers. jansson's API takes
 * non-const values for iteration, hence json_t * here. */
static int s_pack_json(to_mp_t *ctx, json_t *v, int level)
{
    int rc = 0;
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (level + 1 > ctx->max_depth)
            return s_fail(ctx->err, ctx->errlen, "JSON nested deeper than %d levels",
                          ctx->max_depth);
        size_t n = json_object_size(v);
        if (n > UINT32_MAX)
            return s_fail(ctx->err, ctx->errlen, "object has more members than msgpack allows");
        if (msgpack_pack_map(&ctx->pk, n) != 0)
            return s_fail(ctx->err, ctx->errlen, "out of memory writing msgpack");
        const char *key;
        size_t key_len;
        json_t *member;
        json_object_keylen_foreach(v, key, key_len, member)
        {
            if (s_pack_str(ctx, key, key_len) != 0 || s_pack_json(ctx, member, level + 1) != 0)
                return -1;
        }
        return 0;
    }
    case JSON_ARRAY: {
        if (level + 1 > ctx->max_depth)
            return s_fail(ctx->err, ctx->errlen, "JSON nested deeper than %d levels",
                          ctx->max_depth);
        size_t n = json_array_size(v);
        if (n > UINT32_MAX)
            return s_fail(ctx->err, ctx->errlen, "array has more items than msgpack allows");
        if (msgpack_pack_array(&ctx->pk, n) != 0)
            return s_fail(ctx->err, ctx->errlen, "out of memory writing msgpack");
        for (size_t i = 0; i < n; i++)
            if (s_pack_json(ctx, json_array_get(v, i), level + 1) != 0)
                return -1;
        return 0;
    }
    case JSON_STRING:
        return s_pack_str(ctx, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        rc = msgpack_pack_int64(&ctx->pk, (int64_t)json_integer_value(v));
        break;
    case JSON_REAL:
        rc = msgpack_pack_double(&ctx->pk, json_real_value(v));
        break;
    case JSON_TRUE:
        rc = msgpack_pack_true(&ctx->pk);
        break;
    case JSON_FALSE:
        rc = msgpack_pack_false(&ctx->pk);
        break;
    case JSON_NULL:
        rc = msgpack_pack_nil(&ctx->pk);
        break;
    default:
        return s_fail(ctx->err, ctx->errlen, "unknown JSON type");
    }
    if (rc != 0)
        return s_fail(ctx->err, ctx->errlen, "out of memory writing msgpack");
    return 0;
}

/* Turns a jansson parse error into our message, keeping its position. */
static int s_parse_fail(const json_error_t *jerr, char *err, size_t errlen)
{
    const char *what = jerr->text;
    switch (json_error_code(jerr)) {
    case json_error_null_character:
    case json_error_null_byte_in_key:
        /* jansson's own text names a flag, which means nothing to a client. */
        what = "\\u0000 is not allowed in strings";
        break;
    case json_error_end_of_input_expected:
        what = "unexpected data after the JSON value";
        break;
    default:
        break;
    }
    /* jansson appends " near '<token>'", quoting the input; the position
     * says as much without copying a possibly secret value into logs. */
    int what_len = (int)strnlen(what, JSON_ERROR_TEXT_LENGTH);
    const char *near = strstr(what, " near '");
    if (near)
        what_len = (int)(near - what);
    return s_fail(err, errlen, "invalid JSON at line %d, column %d: %.*s", jerr->line, jerr->column,
                  what_len, what);
}

int jsonpack_from_json(const char *json, size_t len, msgpack_sbuffer *out, int max_depth, char *err,
                       size_t errlen)
{
    if (!out || (!json && len > 0))
        return s_fail(err, errlen, "jsonpack_from_json: no input or output buffer");
    if (max_depth > JSONPACK_DEPTH_LIMIT)
        max_depth = JSONPACK_DEPTH_LIMIT;
    if (max_depth < 0)
        max_depth = 0;

    /* Not set on purpose: JSON_DISABLE_EOF_CHECK (trailing bytes must fail),
     * JSON_DECODE_INT_AS_REAL (big integers must fail, not lose digits),
     * JSON_ALLOW_NUL (C consumers treat strings as NUL-terminated). */
    json_error_t jerr;
    json_t *root =
        json_loadb(json ? json : "", len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!root)
        return s_parse_fail(&jerr, err, errlen);

    size_t start = out->size;
    to_mp_t ctx = {.max_depth = max_depth, .err = err, .errlen = errlen};
    msgpack_packer_init(&ctx.pk, out, msgpack_sbuffer_write);
    int rc = s_pack_json(&ctx, root, 0);
    json_decref(root);
    if (rc != 0)
        out->size = start;
    return rc;
}

bool jsonpack_is_map(const void *mp, size_t len)
{
    if (!mp || len == 0)
        return false;
    uint8_t b = *(const uint8_t *)mp;
    return (b & 0xf0) == 0x80 || b == 0xde || b == 0xdf;
}

/* ---------------------------------------------------------------------
 *  msgpack -> JSON
 */

/* A new string value, or NULL with err set. Checked here rather than by
 * jansson so the message can say which of UTF-8 or memory failed. */
static json_t *s_json_string(const char *s, size_t n, const char *what, char *err, size_t errlen)
{
    if (n > 0 && !utf8_valid((const uint8_t *)s, n)) {
        s_fail(err, errlen, "%s is not valid UTF-8", what);
        return NULL;
    }
    if (n > 0 && memchr(s, '\0', n)) {
        s_fail(err, errlen, "%s holds a NUL byte", what);
        return NULL;
    }
    json_t *j = json_stringn_nocheck(n > 0 ? s : "", n);
    if (!j)
        s_fail(err, errlen, "out of memory building JSON");
    return j;
}

static json_t *s_to_json(const msgpack_object *o, int level, char *err, size_t errlen);

static json_t *s_array_to_json(const msgpack_object *o, int level, char *err, size_t errlen)
{
    json_t *arr = json_array();
    if (!arr) {
        s_fail(err, errlen, "out of memory building JSON");
        return NULL;
    }
    for (uint32_t i = 0; i < o->via.array.size; i++) {
        json_t *item = s_to_json(&o->via.array.ptr[i], level + 1, err, errlen);
        /* json_array_append_new takes the reference even when it fails. */
        if (!item || json_array_append_new(arr, item) != 0) {
            if (item)
                s_fail(err, errlen, "out of memory building JSON");
            json_decref(arr);
            return NULL;
        }
    }
    return arr;
}

static json_t *s_map_to_json(const msgpack_object *o, int level, char *err, size_t errlen)
{
    json_t *obj = json_object();
    if (!obj) {
        s_fail(err, errlen, "out of memory building JSON");
        return NULL;
    }
    for (uint32_t i = 0; i < o->via.map.size; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) {
            s_fail(err, errlen, "map key is not a string");
            goto fail;
        }
        const char *key = k->via.str.size > 0 ? k->via.str.ptr : "";
        size_t key_len = k->via.str.size;
        if (!utf8_valid((const uint8_t *)key, key_len)) {
            s_fail(err, errlen, "map key is not valid UTF-8");
            goto fail;
        }
        if (key_len > 0 && memchr(key, '\0', key_len)) {
            s_fail(err, errlen, "map key holds a NUL byte");
            goto fail;
        }
        /* A JSON object cannot hold a key twice; keeping either value
         * would silently drop data. */
        if (json_object_getn(obj, key, key_len)) {
            s_fail(err, errlen, "map has the same key twice");
            goto fail;
        }
        json_t *val = s_to_json(&o->via.map.ptr[i].val, level + 1, err, errlen);
        if (!val)
            goto fail;
        /* Like append_new, setn_new takes the reference even on failure. */
        if (json_object_setn_new_nocheck(obj, key, key_len, val) != 0) {
            s_fail(err, errlen, "out of memory building JSON");
            goto fail;
        }
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

/* Converts o, which sits inside `level` containers. */
static json_t *s_to_json(const msgpack_object *o, int level, char *err, size_t errlen)
{
    json_t *j = NULL;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        j = json_null();
        break;
    case MSGPACK_OBJECT_BOOLEAN:
        j = json_boolean(o->via.boolean);
        break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX) {
            s_fail(err, errlen, "unsigned integer above 9223372036854775807 has no JSON form");
            return NULL;
        }
        j = json_integer((json_int_t)o->via.u64);
        break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        j = json_integer((json_int_t)o->via.i64);
        break;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64)) {
            s_fail(err, errlen, "NaN or infinite number has no JSON form");
            return NULL;
        }
        j = json_real(o->via.f64);
        break;
    case MSGPACK_OBJECT_STR:
        return s_json_string(o->via.str.ptr, o->via.str.size, "string", err, errlen);
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        if (level + 1 > JSONPACK_DEPTH_LIMIT) {
            s_fail(err, errlen, "msgpack nested deeper than %d levels", JSONPACK_DEPTH_LIMIT);
            return NULL;
        }
        return o->type == MSGPACK_OBJECT_ARRAY ? s_array_to_json(o, level, err, errlen)
                                               : s_map_to_json(o, level, err, errlen);
    case MSGPACK_OBJECT_BIN:
        s_fail(err, errlen, "binary (bin) value has no JSON form");
        return NULL;
    case MSGPACK_OBJECT_EXT:
        s_fail(err, errlen, "ext value has no JSON form");
        return NULL;
    default:
        s_fail(err, errlen, "unknown msgpack type %d", (int)o->type);
        return NULL;
    }
    if (!j)
        s_fail(err, errlen, "out of memory building JSON");
    return j;
}

int jsonpack_to_json(const msgpack_object *obj, json_t **out, char *err, size_t errlen)
{
    if (!out)
        return s_fail(err, errlen, "jsonpack_to_json: no output");
    *out = NULL;
    if (!obj)
        return s_fail(err, errlen, "jsonpack_to_json: no input");
    *out = s_to_json(obj, 0, err, errlen);
    return *out ? 0 : -1;
}

/* The text being written by json_dump_callback; ours, grown by doubling. */
typedef struct {
    char *data;
    size_t size; /* bytes written, excluding the NUL */
    size_t cap;
} text_t;

static int s_text_append(const char *buf, size_t len, void *arg)
{
    text_t *t = arg;
    if (len > SIZE_MAX / 2 - t->size - 1)
        return -1;
    if (t->size + len + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->size + len + 1)
            cap *= 2;
        char *data = realloc(t->data, cap);
        if (!data)
            return -1;
        t->data = data;
        t->cap = cap;
    }
    memcpy(t->data + t->size, buf, len);
    t->size += len;
    t->data[t->size] = '\0';
    return 0;
}

/* ---- the compact writer: msgpack straight to text ----
 *
 * The bridge writes every reply body as compact JSON, so that path skips
 * building a jansson tree (an allocation per value) and writes the text in
 * one pass, byte for byte what json_dumps(JSON_COMPACT) would produce:
 * the same escapes, and reals as "%.17g" with ".0" added to integral
 * values and the exponent's '+' and leading zeros dropped. The refusals
 * are the same as s_to_json's. */

static int s_put(text_t *t, const char *s, size_t n, char *err, size_t errlen)
{
    if (s_text_append(s, n, t) != 0)
        return s_fail(err, errlen, "out of memory writing JSON");
    return 0;
}

static int s_put_string(text_t *t, const char *s, size_t n, const char *what, char *err,
                        size_t errlen)
{
    if (n > 0 && !utf8_valid((const uint8_t *)s, n))
        return s_fail(err, errlen, "%s is not valid UTF-8", what);
    if (n > 0 && memchr(s, '\0', n))
        return s_fail(err, errlen, "%s holds a NUL byte", what);
    if (s_put(t, "\"", 1, err, errlen) != 0)
        return -1;
    size_t run = 0; /* bytes that need no escape, written in one go */
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            run++;
            continue;
        }
        if (run && s_put(t, s + i - run, run, err, errlen) != 0)
            return -1;
        run = 0;
        char esc[8];
        switch (c) {
        case '"':
            memcpy(esc, "\\\"", 3);
            break;
        case '\\':
            memcpy(esc, "\\\\", 3);
            break;
        case '\b':
            memcpy(esc, "\\b", 3);
            break;
        case '\f':
            memcpy(esc, "\\f", 3);
            break;
        case '\n':
            memcpy(esc, "\\n", 3);
            break;
        case '\r':
            memcpy(esc, "\\r", 3);
            break;
        case '\t':
            memcpy(esc, "\\t", 3);
            break;
        default: /* what jansson writes: \u and four upper-case hex digits */
            memcpy(esc, "\\u00", 4);
            esc[4] = "0123456789ABCDEF"[c >> 4];
            esc[5] = "0123456789ABCDEF"[c & 15];
            esc[6] = '\0';
        }
        if (s_put(t, esc, strlen(esc), err, errlen) != 0)
            return -1;
    }
    if (run && s_put(t, s + n - run, run, err, errlen) != 0)
        return -1;
    return s_put(t, "\"", 1, err, errlen);
}

static int s_put_real(text_t *t, double v, char *err, size_t errlen)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf, "%.17g", v);
    if (n < 0 || n >= (int)sizeof buf - 3)
        return s_fail(err, errlen, "cannot format a number");
    if (!strpbrk(buf, ".eE")) {
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    char *e = strchr(buf, 'e');
    if (e) { /* "1e+07" -> "1e7", "1e-07" -> "1e-7" */
        char *digits = e + 1;
        if (*digits == '+')
            memmove(digits, digits + 1, strlen(digits));
        else if (*digits == '-')
            digits++;
        while (digits[0] == '0' && digits[1] != '\0')
            memmove(digits, digits + 1, strlen(digits));
        n = (int)strlen(buf);
    }
    return s_put(t, buf, (size_t)n, err, errlen);
}

/* ---- duplicate keys, in time linear in the keys ----
 *
 * A map's keys are checked one by one as they are written, so the first
 * problem in document order is the one reported. A map of up to
 * S_PAIRWISE_MAX keys compares each pair (at most 28 comparisons, cheaper
 * than hashing). A larger one gets a region of an open-addressing table
 * of cap slots, cap a power of two at least twice its keys, so a probe
 * meets few occupied slots; the region is cleared when the map begins,
 * which costs O(cap) = O(keys). Regions are a stack in one table: a map
 * nested in a value takes the slots after its parent's and gives them
 * back when it ends, so the table holds at most 4 slots per key of the
 * maps open at once (bounded by the body), and grows by doubling. Slots
 * hold offsets, not pointers, because growing moves the table.
 *
 * The hash is SipHash-2-4 (libsodium's crypto_shorthash) under a key
 * drawn at random per conversion: a client cannot pick keys that collide,
 * as it could for any fixed hash (and then the probes would be quadratic
 * again). */

#define S_PAIRWISE_MAX 8
#define S_REGION_MIN 32

_Static_assert(JSONPACK_HASH_KEY_BYTES == crypto_shorthash_KEYBYTES, "SipHash takes 16 key bytes");

typedef struct {
    uint32_t hash;  /* of the key, as kept (see hash_bits) */
    uint32_t index; /* the key's index in its map plus 1; 0: empty */
} slot_t;

typedef struct {
    slot_t *slots;
    size_t used, cap; /* slots taken by the open maps; allocated */
    unsigned char key[JSONPACK_HASH_KEY_BYTES];
    bool keyed;            /* key holds the hash key (drawn when first needed) */
    jsonpack_work_t *work; /* the caller's counters and knobs, or NULL */
} keyset_t;

/* The slots one map checks its keys in; cap 0: pairwise. */
typedef struct {
    size_t base, cap;
} region_t;

/* Opens the region of a map of n keys; -1 with a message in err. */
static int s_region_begin(keyset_t *ks, uint32_t n, region_t *r, char *err, size_t errlen)
{
    r->base = ks->used;
    r->cap = 0;
    if (n <= S_PAIRWISE_MAX)
        return 0;
    if (!ks->keyed) {
        if (ks->work && ks->work->hash_key)
            memcpy(ks->key, ks->work->hash_key, sizeof ks->key);
        else {
            if (sodium_init() < 0)
                return s_fail(err, errlen, "libsodium did not start: no key for map keys");
            randombytes_buf(ks->key, sizeof ks->key);
        }
        ks->keyed = true;
    }
    size_t cap = S_REGION_MIN;
    while (cap < 2 * (size_t)n)
        cap *= 2;
    if (cap > SIZE_MAX / sizeof(slot_t) / 2 - ks->used)
        return s_fail(err, errlen, "map has more keys than memory can check");
    if (ks->used + cap > ks->cap) {
        size_t grown_cap = ks->cap ? ks->cap : 1024;
        while (grown_cap < ks->used + cap)
            grown_cap *= 2;
        slot_t *grown = realloc(ks->slots, grown_cap * sizeof *grown);
        if (!grown)
            return s_fail(err, errlen, "out of memory checking map keys");
        ks->slots = grown;
        ks->cap = grown_cap;
    }
    memset(ks->slots + ks->used, 0, cap * sizeof(slot_t));
    ks->used += cap;
    r->cap = cap;
    return 0;
}

static void s_region_end(keyset_t *ks, const region_t *r)
{
    ks->used = r->base;
}

static bool s_same_key(const msgpack_object *a, const msgpack_object *b)
{
    return a->via.str.size == b->via.str.size &&
           (a->via.str.size == 0 || memcmp(a->via.str.ptr, b->via.str.ptr, a->via.str.size) == 0);
}

/* Adds key i of the map pairs (a str, as are keys 0..i-1, all added
 * before); true when an earlier key is the same. */
static bool s_region_add(keyset_t *ks, const region_t *r, const msgpack_object_kv *pairs,
                         uint32_t i)
{
    const msgpack_object *k = &pairs[i].key;
    uint64_t compares = 0;
    bool duplicate = false;
    if (r->cap == 0) {
        for (uint32_t j = 0; j < i && !duplicate; j++) {
            compares++;
            duplicate = s_same_key(&pairs[j].key, k);
        }
    } else {
        unsigned char out[crypto_shorthash_BYTES];
        const unsigned char *bytes =
            k->via.str.size > 0 ? (const unsigned char *)k->via.str.ptr : (const unsigned char *)"";
        crypto_shorthash(out, bytes, k->via.str.size, ks->key);
        uint32_t hash;
        memcpy(&hash, out, sizeof hash);
        int bits = ks->work ? ks->work->hash_bits : 0;
        if (bits > 0 && bits < 32)
            hash &= ((uint32_t)1 << bits) - 1;
        slot_t *slots = ks->slots + r->base;
        size_t mask = r->cap - 1;
        for (size_t at = hash & mask;; at = (at + 1) & mask) {
            if (slots[at].index == 0) {
                slots[at].hash = hash;
                slots[at].index = i + 1;
                break;
            }
            compares++;
            if (slots[at].hash == hash && s_same_key(&pairs[slots[at].index - 1].key, k)) {
                duplicate = true;
                break;
            }
        }
    }
    if (ks->work) {
        ks->work->keys++;
        ks->work->key_compares += compares;
    }
    return duplicate;
}

/* The compact writer's state: the text, the key set, where errors go. */
typedef struct {
    text_t text;
    keyset_t keys;
    char *err;
    size_t errlen;
} writer_t;

/* An integer in decimal, as printf's %lld would write it; by hand
 * because printf costs as much as the rest of the writer for a body of
 * small ints. */
static int s_put_int(text_t *t, bool negative, uint64_t magnitude, char *err, size_t errlen)
{
    char buf[24];
    char *p = buf + sizeof buf;
    do {
        *--p = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (negative)
        *--p = '-';
    return s_put(t, p, (size_t)(buf + sizeof buf - p), err, errlen);
}

static int s_write(writer_t *w, const msgpack_object *o, int level)
{
    text_t *t = &w->text;
    char *err = w->err;
    size_t errlen = w->errlen;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return s_put(t, "null", 4, err, errlen);
    case MSGPACK_OBJECT_BOOLEAN:
        return o->via.boolean ? s_put(t, "true", 4, err, errlen)
                              : s_put(t, "false", 5, err, errlen);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > (uint64_t)INT64_MAX)
            return s_fail(err, errlen,
                          "unsigned integer above 9223372036854775807 has no JSON form");
        return s_put_int(t, false, o->via.u64, err, errlen);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        /* The magnitude in unsigned arithmetic: -INT64_MIN overflows int64. */
        return s_put_int(t, o->via.i64 < 0,
                         o->via.i64 < 0 ? 0 - (uint64_t)o->via.i64 : (uint64_t)o->via.i64, err,
                         errlen);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64))
            return s_fail(err, errlen, "NaN or infinite number has no JSON form");
        return s_put_real(t, o->via.f64, err, errlen);
    case MSGPACK_OBJECT_STR:
        return s_put_string(t, o->via.str.ptr, o->via.str.size, "string", err, errlen);
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        if (level + 1 > JSONPACK_DEPTH_LIMIT)
            return s_fail(err, errlen, "msgpack nested deeper than %d levels",
                          JSONPACK_DEPTH_LIMIT);
        break;
    case MSGPACK_OBJECT_BIN:
        return s_fail(err, errlen, "binary (bin) value has no JSON form");
    case MSGPACK_OBJECT_EXT:
        return s_fail(err, errlen, "ext value has no JSON form");
    default:
        return s_fail(err, errlen, "unknown msgpack type %d", (int)o->type);
    }
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        if (s_put(t, "[", 1, err, errlen) != 0)
            return -1;
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if ((i && s_put(t, ",", 1, err, errlen) != 0) ||
                s_write(w, &o->via.array.ptr[i], level + 1) != 0)
                return -1;
        return s_put(t, "]", 1, err, errlen);
    }
    if (s_put(t, "{", 1, err, errlen) != 0)
        return -1;
    region_t region;
    if (s_region_begin(&w->keys, o->via.map.size, &region, err, errlen) != 0)
        return -1;
    int rc = 0;
    for (uint32_t i = 0; i < o->via.map.size && rc == 0; i++) {
        const msgpack_object *k = &o->via.map.ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR)
            rc = s_fail(err, errlen, "map key is not a string");
        else if (s_region_add(&w->keys, &region, o->via.map.ptr, i))
            rc = s_fail(err, errlen, "map has the same key twice");
        else if ((i && s_put(t, ",", 1, err, errlen) != 0) ||
                 s_put_string(t, k->via.str.ptr, k->via.str.size, "map key", err, errlen) != 0 ||
                 s_put(t, ":", 1, err, errlen) != 0 ||
                 s_write(w, &o->via.map.ptr[i].val, level + 1) != 0)
            rc = -1;
    }
    s_region_end(&w->keys, &region);
    if (rc != 0)
        return -1;
    return s_put(t, "}", 1, err, errlen);
}

/* The compact writer, counting into work when it is not NULL. */
static char *s_compact_text(const msgpack_object *obj, jsonpack_work_t *work, char *err,
                            size_t errlen)
{
    if (!obj) {
        s_fail(err, errlen, "jsonpack_to_json: no input");
        return NULL;
    }
    if (work) {
        work->keys = 0;
        work->key_compares = 0;
    }
    writer_t w = {.keys = {.work = work}, .err = err, .errlen = errlen};
    int rc = s_write(&w, obj, 0);
    free(w.keys.slots);
    if (rc != 0) {
        free(w.text.data);
        return NULL;
    }
    return w.text.data;
}

char *jsonpack_to_json_text(const msgpack_object *obj, size_t flags, char *err, size_t errlen)
{
    if (flags == 0 || flags == JSON_COMPACT)
        return s_compact_text(obj, NULL, err, errlen);
    json_t *j;
    if (jsonpack_to_json(obj, &j, err, errlen) != 0)
        return NULL;
    if (flags == 0)
        flags = JSON_COMPACT;
    text_t t = {0};
    int rc = json_dump_callback(j, s_text_append, &t, flags | JSON_ENCODE_ANY);
    json_decref(j);
    if (rc != 0 || !t.data) {
        free(t.data);
        s_fail(err, errlen, "could not write JSON text (out of memory or bad flags)");
        return NULL;
    }
    return t.data;
}

char *jsonpack_to_json_text_counted(const msgpack_object *obj, jsonpack_work_t *work, char *err,
                                    size_t errlen)
{
    if (!work) {
        s_fail(err, errlen, "jsonpack_to_json_text_counted: no counters");
        return NULL;
    }
    return s_compact_text(obj, work, err, errlen);
}

char *jsonpack_bytes_to_json_text(const void *mp, size_t len, size_t flags, char *err,
                                  size_t errlen)
{
    if (!mp && len > 0) {
        s_fail(err, errlen, "jsonpack_bytes_to_json_text: no input");
        return NULL;
    }
    /* mpcheck first: msgpack_unpack trusts the lengths it reads. */
    mp_status_t st = mpcheck(mp, len, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH);
    if (st != MP_OK) {
        s_fail(err, errlen, "invalid msgpack: %s", mpcheck_strerror(st));
        return NULL;
    }
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096)) {
        s_fail(err, errlen, "out of memory");
        return NULL;
    }
    char *text = NULL;
    msgpack_object obj;
    size_t off = 0;
    if (msgpack_unpack(mp, len, &off, &zone, &obj) != MSGPACK_UNPACK_SUCCESS)
        s_fail(err, errlen, "msgpack could not be unpacked");
    else
        text = jsonpack_to_json_text(&obj, flags, err, errlen);
    msgpack_zone_destroy(&zone);
    return text;
}

/* jansson and the writers above say "out of memory..." when they are. */
static bool s_is_oom_message(const char *err)
{
    return strncmp(err, "out of memory", 13) == 0;
}

jsonpack_body_t jsonpack_body_map(const char *body, size_t len, bool is_msgpack, size_t max_len,
                                  int max_depth, msgpack_sbuffer *converted, msgpack_zone *zone,
                                  msgpack_object *out, char *err, size_t errlen)
{
    const char *mp = body;
    size_t mp_len = len;
    err[0] = '\0';
    if (!is_msgpack) {
        if (jsonpack_from_json(body, len, converted, max_depth, err, errlen) != 0)
            return s_is_oom_message(err) ? JSONPACK_BODY_OUT_OF_MEMORY : JSONPACK_BODY_REFUSED;
        mp = converted->data;
        mp_len = converted->size;
    } else {
        mp_status_t st = mpcheck((const uint8_t *)mp, mp_len, max_len, max_depth);
        if (st != MP_OK) {
            snprintf(err, errlen, "%s", mpcheck_strerror(st));
            return JSONPACK_BODY_REFUSED;
        }
        char why[96];
        char *json = jsonpack_bytes_to_json_text(mp, mp_len, 0, why, sizeof why);
        if (!json) {
            if (s_is_oom_message(why)) {
                snprintf(err, errlen, "%s", why);
                return JSONPACK_BODY_OUT_OF_MEMORY;
            }
            snprintf(err, errlen, "the body holds a value JSON cannot: %s", why);
            return JSONPACK_BODY_REFUSED;
        }
        free(json);
    }
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack(mp, mp_len, &off, zone, out);
    if (rc == MSGPACK_UNPACK_NOMEM_ERROR) {
        snprintf(err, errlen, "out of memory");
        return JSONPACK_BODY_OUT_OF_MEMORY;
    }
    if (rc != MSGPACK_UNPACK_SUCCESS || out->type != MSGPACK_OBJECT_MAP) {
        snprintf(err, errlen, "the body must be an object");
        return JSONPACK_BODY_REFUSED;
    }
    return JSONPACK_BODY_OK;
}

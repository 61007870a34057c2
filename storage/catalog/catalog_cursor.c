/*  catalog_cursor.c - the text of a search cursor (catalog_cursor_t in
 *  catalog_store_impl.h): what a page's next_cursor holds and how it is
 *  read back. catalog_search.c decides what goes in it.
 *
 *  Format: base64url without padding of the msgpack array
 *      [sort, hash, a, b, name, id]
 *  (uints, ints, then two strs). Decoding is strict: only the alphabet,
 *  no padding, no spare bits set, exactly one msgpack array of six, every
 *  field of its type and within its limit, no trailing bytes. Anything
 *  else is "not a cursor", so a forged or cut cursor is refused rather
 *  than read as a position. At most S_RAW_MAX bytes of msgpack, so at most
 *  347 characters: within CATALOG_CURSOR_MAX.
 */
#include "storage/catalog/catalog_store_impl.h"
#include "protocol/mpcheck.h"

#include <msgpack.h>
#include <string.h>

/* The array, sort, hash, a, b (at most 1 + 1 + 5 + 9 + 9), the name
 * (2 + CATALOG_NAME_MAX) and the id (1 + CATALOG_ID_MAX). */
#define S_RAW_MAX (25 + 2 + CATALOG_NAME_MAX + 1 + CATALOG_ID_MAX)

static const char s_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static bool s_b64_encode(const uint8_t *in, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        size_t chunk = len - i < 3 ? len - i : 3;
        if (chunk > 1)
            v |= (uint32_t)in[i + 1] << 8;
        if (chunk > 2)
            v |= in[i + 2];
        for (size_t j = 0; j <= chunk; j++) {
            if (n + 1 >= cap)
                return false;
            out[n++] = s_b64[(v >> (18 - 6 * j)) & 63];
        }
    }
    out[n] = '\0';
    return true;
}

/* Strict: only the alphabet, no padding, zero spare bits. -1 if not. */
static int s_b64_decode(const char *in, uint8_t *out, size_t cap, size_t *len)
{
    size_t n = 0, bits = 0;
    uint32_t acc = 0;
    for (const char *c = in; *c; c++) {
        const char *p = strchr(s_b64, *c);
        if (!p)
            return -1;
        acc = acc << 6 | (uint32_t)(p - s_b64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n == cap)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    if (bits >= 6 || acc != 0)
        return -1;
    *len = n;
    return 0;
}

bool catalog_cursor_encode(const catalog_cursor_t *c, char out[CATALOG_CURSOR_MAX + 1])
{
    char data[S_RAW_MAX];
    catalog_buf_t raw = {.data = data, .cap = sizeof data};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &raw, catalog_buf_write);
    out[0] = '\0';
    return c->name_len <= CATALOG_NAME_MAX && c->id_len <= CATALOG_ID_MAX &&
           msgpack_pack_array(&pk, 6) == 0 && msgpack_pack_uint8(&pk, c->sort) == 0 &&
           msgpack_pack_uint32(&pk, c->hash) == 0 && msgpack_pack_int64(&pk, c->a) == 0 &&
           msgpack_pack_int64(&pk, c->b) == 0 && msgpack_pack_str(&pk, c->name_len) == 0 &&
           msgpack_pack_str_body(&pk, c->name, c->name_len) == 0 &&
           msgpack_pack_str(&pk, c->id_len) == 0 &&
           msgpack_pack_str_body(&pk, c->id, c->id_len) == 0 &&
           s_b64_encode((const uint8_t *)raw.data, raw.len, out, CATALOG_CURSOR_MAX + 1);
}

static bool s_obj_int(const msgpack_object *o, int64_t *v)
{
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX)
        *v = (int64_t)o->via.u64;
    else if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *v = o->via.i64;
    else
        return false;
    return true;
}

bool catalog_cursor_decode(const char *text, catalog_cursor_t *out)
{
    uint8_t raw[S_RAW_MAX];
    size_t len = 0;
    if (strnlen(text, CATALOG_CURSOR_MAX + 1) > CATALOG_CURSOR_MAX ||
        s_b64_decode(text, raw, sizeof raw, &len) != 0)
        return false;
    /* msgpack-c allocates what a header claims before reading a byte of
     * it: a 46-character cursor made it ask for 256 GiB
     * (tests/fuzz/fuzz_cursor.c). mpcheck bounds it first. */
    if (mpcheck(raw, len, sizeof raw, 1) != MP_OK)
        return false;
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    size_t offset = 0;
    bool ok = false;
    if (msgpack_unpack_next(&msg, (const char *)raw, len, &offset) != MSGPACK_UNPACK_SUCCESS ||
        offset != len || msg.data.type != MSGPACK_OBJECT_ARRAY || msg.data.via.array.size != 6)
        goto cleanup;
    const msgpack_object *f = msg.data.via.array.ptr;
    int64_t sort, hash;
    if (!s_obj_int(&f[0], &sort) || sort < 0 || sort > UINT8_MAX || !s_obj_int(&f[1], &hash) ||
        hash < 0 || hash > UINT32_MAX || !s_obj_int(&f[2], &out->a) || !s_obj_int(&f[3], &out->b) ||
        f[4].type != MSGPACK_OBJECT_STR || f[4].via.str.size > CATALOG_NAME_MAX ||
        (f[4].via.str.size && memchr(f[4].via.str.ptr, 0, f[4].via.str.size)) ||
        f[5].type != MSGPACK_OBJECT_STR || f[5].via.str.size == 0 ||
        f[5].via.str.size > CATALOG_ID_MAX || memchr(f[5].via.str.ptr, 0, f[5].via.str.size))
        goto cleanup;
    out->sort = (uint8_t)sort;
    out->hash = (uint32_t)hash;
    /* msgpack-c gives an empty str a NULL pointer: neither memchr nor
     * memcpy may be handed one, even for 0 bytes (fuzz_cursor.c found it) */
    if (f[4].via.str.size)
        memcpy(out->name, f[4].via.str.ptr, f[4].via.str.size);
    out->name[f[4].via.str.size] = '\0';
    out->name_len = f[4].via.str.size;
    memcpy(out->id, f[5].via.str.ptr, f[5].via.str.size);
    out->id[f[5].via.str.size] = '\0';
    out->id_len = f[5].via.str.size;
    ok = true;
cleanup:
    msgpack_unpacked_destroy(&msg);
    return ok;
}

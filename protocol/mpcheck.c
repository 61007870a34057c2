/*  mpcheck.c - one-pass structural check of untrusted msgpack.
 *
 *  The walk keeps, per open container, how many values are still owed.
 *  Each value read pays one off; a container header pushes a new debt of
 *  n (array) or 2n (map). Because every value is at least one byte, a
 *  count larger than the bytes left is refused at once, which is what
 *  makes a later msgpack_unpack() safe to call on the same bytes.
 */
#include "protocol/mpcheck.h"

#include <stdbool.h>

int utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t n;
        uint32_t cp;
        if ((c & 0xe0) == 0xc0) {
            n = 1;
            cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            n = 2;
            cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            n = 3;
            cp = c & 0x07;
        } else
            return 0;
        if (len - i <= n)
            return 0;
        for (size_t k = 1; k <= n; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return 0;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[n] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return 0;
        i += n + 1;
    }
    return 1;
}

static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

mp_status_t mpcheck(const uint8_t *buf, size_t len, size_t max_len, int max_depth)
{
    if (len == 0)
        return MP_EMPTY;
    if (len > max_len)
        return MP_TOO_LARGE;
    if (max_depth > MPCHECK_DEPTH_LIMIT)
        max_depth = MPCHECK_DEPTH_LIMIT;

    /* owed[d]: values still to read in the container at depth d; owed[0]
     * is the single top-level value. key_next[d]: the next value of a map
     * is a key (must be str). */
    uint64_t owed[MPCHECK_DEPTH_LIMIT + 1];
    bool is_map[MPCHECK_DEPTH_LIMIT + 1];
    int depth = 0;
    owed[0] = 1;
    is_map[0] = false;
    size_t pos = 0;

    while (depth >= 0) {
        if (owed[depth] == 0) {
            depth--;
            continue;
        }
        if (pos >= len)
            return MP_TRUNCATED;
        bool want_key = is_map[depth] && (owed[depth] % 2 == 0);
        owed[depth]--;

        uint8_t t = buf[pos++];
        size_t left = len - pos;
        uint64_t count = 0; /* elements of a container header */
        bool container = false, map = false;
        uint64_t skip = 0; /* payload bytes of a scalar */
        bool str = false;

        if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
            skip = 0;
        } else if (t >= 0x80 && t <= 0x8f) {
            container = map = true;
            count = t & 0x0f;
        } else if (t >= 0x90 && t <= 0x9f) {
            container = true;
            count = t & 0x0f;
        } else if (t >= 0xa0 && t <= 0xbf) {
            str = true;
            skip = t & 0x1f;
        } else {
            int w; /* width of a length or value field */
            switch (t) {
            case 0xc4:
            case 0xd9:
                w = 1;
                break;
            case 0xc5:
            case 0xda:
                w = 2;
                break;
            case 0xc6:
            case 0xdb:
                w = 4;
                break;
            case 0xca:
                skip = 4;
                w = 0;
                break;
            case 0xcb:
                skip = 8;
                w = 0;
                break;
            case 0xcc:
            case 0xd0:
                skip = 1;
                w = 0;
                break;
            case 0xcd:
            case 0xd1:
                skip = 2;
                w = 0;
                break;
            case 0xce:
            case 0xd2:
                skip = 4;
                w = 0;
                break;
            case 0xcf:
            case 0xd3:
                skip = 8;
                w = 0;
                break;
            case 0xdc:
            case 0xde:
                w = 2;
                container = true;
                map = t == 0xde;
                break;
            case 0xdd:
            case 0xdf:
                w = 4;
                container = true;
                map = t == 0xdf;
                break;
            default:
                return MP_BAD_TYPE; /* 0xc1, ext8/16/32, fixext */
            }
            if (w > 0) {
                if (left < (size_t)w)
                    return MP_TRUNCATED;
                uint64_t n = s_be(buf + pos, w);
                pos += w;
                left -= w;
                if (container)
                    count = n;
                else {
                    skip = n;
                    str = t >= 0xd9;
                }
            }
        }
        if (want_key && !str)
            return MP_BAD_KEY;
        if (container) {
            uint64_t need = map ? count * 2 : count;
            if (need > left)
                return MP_TRUNCATED;
            if (depth + 1 > max_depth)
                return MP_TOO_DEEP;
            depth++;
            owed[depth] = need;
            is_map[depth] = map;
            continue;
        }
        if (skip > left)
            return MP_TRUNCATED;
        if (str && !utf8_valid(buf + pos, (size_t)skip))
            return MP_BAD_UTF8;
        pos += (size_t)skip;
    }
    return pos == len ? MP_OK : MP_TRAILING;
}

const char *mpcheck_strerror(mp_status_t status)
{
    switch (status) {
    case MP_OK:
        return "ok";
    case MP_EMPTY:
        return "empty body";
    case MP_TOO_LARGE:
        return "body too large";
    case MP_TRUNCATED:
        return "truncated msgpack value";
    case MP_TRAILING:
        return "trailing bytes after the value";
    case MP_TOO_DEEP:
        return "nesting too deep";
    case MP_BAD_TYPE:
        return "unsupported msgpack type";
    case MP_BAD_UTF8:
        return "string is not valid UTF-8";
    case MP_BAD_KEY:
        return "map key is not a string";
    }
    return "invalid msgpack";
}

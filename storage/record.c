/*  record.c - the table-driven record codec (record.h).
 *
 *  Every reader below checks its bounds before it reads a byte, and
 *  refuses a count or length that cannot fit in what is left, so no input
 *  can make one read past its end or loop on a claimed count. record_decode
 *  first passes over the whole value with record_skip (the structure
 *  only: headers and lengths, payloads jumped over), so a value cut short
 *  or followed by more bytes is RECORD_MALFORMED whatever field it is in;
 *  then it walks the map, each key read once and compared with the
 *  table's few keys. Both passes are linear.
 *
 *  UTF-8 is checked (mpcheck's utf8_valid) in the strs that a table reads,
 *  and a RAW value, which is handed on as msgpack, is checked whole by
 *  mpcheck; the values of unknown keys are only passed over. Not the
 *  whole record through mpcheck: that would check a 4 KB description's
 *  UTF-8 on each of the many reads (search's stock filter) that want one
 *  int, at several times the cost of the rest of the decode.
 *
 *  The msgpack formats read here: positive fixint 0x00-0x7f, fixmap
 *  0x80-0x8f, fixarray 0x90-0x9f, fixstr 0xa0-0xbf, nil 0xc0, false 0xc2,
 *  true 0xc3, bin 0xc4-0xc6, float 0xca-0xcb, uint 0xcc-0xcf, int
 *  0xd0-0xd3, str 0xd9-0xdb, array 0xdc-0xdd, map 0xde-0xdf, negative
 *  fixint 0xe0-0xff. Ext types (and 0xc1) are refused, as mpcheck does.
 */
#include "storage/record.h"

#include "protocol/mpcheck.h"

#include <string.h>

/* ---- readers ---- */

static size_t s_left(const record_reader_t *r)
{
    return (size_t)(r->end - r->pos);
}

/* n bytes big-endian at p (n <= 8). */
static uint64_t s_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* Reads a length field of w bytes after a one-byte header; false when it
 * does not fit. *hdr gets 1 + w. */
static bool s_length(const record_reader_t *r, int w, uint64_t *n, size_t *hdr)
{
    if (s_left(r) < 1 + (size_t)w)
        return false;
    *n = s_be(r->pos + 1, w);
    *hdr = 1 + (size_t)w;
    return true;
}

/* A container header (map true: a map) with its count. */
static bool s_read_container(record_reader_t *r, bool map, uint32_t *count)
{
    if (s_left(r) < 1)
        return false;
    uint8_t t = r->pos[0];
    uint64_t n;
    size_t hdr = 1;
    uint8_t fix = map ? 0x80 : 0x90;
    uint8_t w16 = map ? 0xde : 0xdc, w32 = map ? 0xdf : 0xdd;
    if (t >= fix && t <= fix + 0x0f)
        n = t & 0x0f;
    else if (t == w16) {
        if (!s_length(r, 2, &n, &hdr))
            return false;
    } else if (t == w32) {
        if (!s_length(r, 4, &n, &hdr))
            return false;
    } else
        return false;
    /* Every element is at least one byte: a count that cannot fit is a
     * lie, refused before anyone loops on it. */
    uint64_t need = map ? n * 2 : n;
    if (need > s_left(r) - hdr)
        return false;
    r->pos += hdr;
    *count = (uint32_t)n;
    return true;
}

bool record_read_map(record_reader_t *r, uint32_t *count)
{
    return s_read_container(r, true, count);
}

bool record_read_array(record_reader_t *r, uint32_t *count)
{
    return s_read_container(r, false, count);
}

/* A str (bin false) or bin (bin true) and its payload. */
static bool s_read_bytes(record_reader_t *r, bool bin, const uint8_t **bytes, size_t *len)
{
    if (s_left(r) < 1)
        return false;
    uint8_t t = r->pos[0];
    uint64_t n;
    size_t hdr = 1;
    int w = 0;
    if (!bin && t >= 0xa0 && t <= 0xbf)
        n = t & 0x1f;
    else if (t == (bin ? 0xc4 : 0xd9))
        w = 1;
    else if (t == (bin ? 0xc5 : 0xda))
        w = 2;
    else if (t == (bin ? 0xc6 : 0xdb))
        w = 4;
    else
        return false;
    if (w > 0 && !s_length(r, w, &n, &hdr))
        return false;
    if (n > s_left(r) - hdr)
        return false;
    *bytes = r->pos + hdr;
    *len = (size_t)n;
    r->pos += hdr + (size_t)n;
    return true;
}

bool record_read_str(record_reader_t *r, const char **s, size_t *len)
{
    record_reader_t at = *r;
    const uint8_t *bytes;
    if (!s_read_bytes(&at, false, &bytes, len) || !utf8_valid(bytes, *len))
        return false;
    *s = (const char *)bytes;
    *r = at;
    return true;
}

bool record_read_bin(record_reader_t *r, const uint8_t **bytes, size_t *len)
{
    return s_read_bytes(r, true, bytes, len);
}

/* Any int: *negative tells which of *i (negative) or *u (not) holds it. */
static bool s_read_int(record_reader_t *r, bool *negative, int64_t *i, uint64_t *u)
{
    if (s_left(r) < 1)
        return false;
    uint8_t t = r->pos[0];
    int w;
    bool is_signed;
    if (t <= 0x7f) {
        *negative = false;
        *u = t;
        r->pos++;
        return true;
    }
    if (t >= 0xe0) {
        *negative = true;
        *i = (int64_t)t - 256;
        r->pos++;
        return true;
    }
    switch (t) {
    case 0xcc:
    case 0xd0:
        w = 1;
        break;
    case 0xcd:
    case 0xd1:
        w = 2;
        break;
    case 0xce:
    case 0xd2:
        w = 4;
        break;
    case 0xcf:
    case 0xd3:
        w = 8;
        break;
    default:
        return false;
    }
    is_signed = t >= 0xd0;
    if (s_left(r) < 1 + (size_t)w)
        return false;
    uint64_t raw = s_be(r->pos + 1, w);
    uint64_t sign = (uint64_t)1 << (8 * w - 1);
    if (is_signed && (raw & sign)) {
        /* A w-byte two's complement negative: raw - 2^(8w), computed
         * without a conversion that could overflow. */
        *negative = true;
        *i = -(int64_t)(~raw & (sign - 1)) - 1;
    } else {
        *negative = false;
        *u = raw;
    }
    r->pos += 1 + (size_t)w;
    return true;
}

bool record_read_int64(record_reader_t *r, int64_t *v)
{
    record_reader_t at = *r;
    bool negative;
    int64_t i;
    uint64_t u;
    if (!s_read_int(&at, &negative, &i, &u) || (!negative && u > INT64_MAX))
        return false;
    *v = negative ? i : (int64_t)u;
    *r = at;
    return true;
}

bool record_read_uint64(record_reader_t *r, uint64_t *v)
{
    record_reader_t at = *r;
    bool negative;
    int64_t i;
    uint64_t u;
    if (!s_read_int(&at, &negative, &i, &u) || negative)
        return false;
    *v = u;
    *r = at;
    return true;
}

bool record_read_bool(record_reader_t *r, bool *v)
{
    if (s_left(r) < 1 || (r->pos[0] != 0xc2 && r->pos[0] != 0xc3))
        return false;
    *v = r->pos[0] == 0xc3;
    r->pos++;
    return true;
}

/* The bytes of the scalar at r (header and payload), or 0 for a
 * container header or a refused type; *items gets the values a
 * container header owes (0 for a scalar). False when it does not fit. */
static bool s_skip_one(record_reader_t *r, uint64_t *items)
{
    if (s_left(r) < 1)
        return false;
    uint8_t t = r->pos[0];
    uint64_t size = 1, n = 0; /* bytes to pass; values owed */
    *items = 0;
    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3)
        size = 1;
    else if (t >= 0xa0 && t <= 0xbf)
        size = 1 + (uint64_t)(t & 0x1f);
    else if (t >= 0x80 && t <= 0x8f)
        *items = 2 * (uint64_t)(t & 0x0f);
    else if (t >= 0x90 && t <= 0x9f)
        *items = t & 0x0f;
    else {
        size_t hdr;
        switch (t) {
        case 0xc4:
        case 0xd9:
        case 0xc5:
        case 0xda:
        case 0xc6:
        case 0xdb: {
            int w = (t == 0xc4 || t == 0xd9) ? 1 : (t == 0xc5 || t == 0xda) ? 2 : 4;
            if (!s_length(r, w, &n, &hdr))
                return false;
            size = hdr + n;
            break;
        }
        case 0xca:
            size = 5;
            break;
        case 0xcb:
            size = 9;
            break;
        case 0xcc:
        case 0xd0:
            size = 2;
            break;
        case 0xcd:
        case 0xd1:
            size = 3;
            break;
        case 0xce:
        case 0xd2:
            size = 5;
            break;
        case 0xcf:
        case 0xd3:
            size = 9;
            break;
        case 0xdc:
        case 0xdd:
        case 0xde:
        case 0xdf:
            if (!s_length(r, t == 0xdc || t == 0xde ? 2 : 4, &n, &hdr))
                return false;
            size = hdr;
            *items = t >= 0xde ? 2 * n : n;
            break;
        default:
            return false; /* 0xc1, ext */
        }
    }
    if (size > s_left(r) || *items > s_left(r) - size)
        return false;
    r->pos += size;
    return true;
}

bool record_skip(record_reader_t *r)
{
    record_reader_t at = *r;
    /* Values still to pass: every container adds what it holds. Each is
     * at least one byte, and s_skip_one refuses counts past the end, so
     * owed never exceeds the bytes left. */
    uint64_t owed = 1;
    while (owed > 0) {
        uint64_t items;
        if (!s_skip_one(&at, &items))
            return false;
        owed = owed - 1 + items;
    }
    *r = at;
    return true;
}

/* ---- decode ---- */

static bool s_key_is(const char *key, const char *s, size_t len)
{
    return strlen(key) == len && memcmp(key, s, len) == 0;
}

/* The value at r into the field's member of record. */
static record_status_t s_decode_field(const record_field_t *f, record_reader_t *r, uint8_t *record)
{
    uint8_t *member = record + f->offset;
    const char *s;
    const uint8_t *bytes;
    size_t len;
    switch (f->type) {
    case RECORD_STR:
        if (!s_read_bytes(r, false, &bytes, &len))
            return RECORD_WRONG_TYPE;
        s = (const char *)bytes;
        if (f->size == 0 || len > f->size - 1)
            return RECORD_TOO_LONG;
        if (memchr(s, '\0', len) || !utf8_valid(bytes, len))
            return RECORD_BAD_VALUE;
        memcpy(member, s, len);
        member[len] = '\0';
        return RECORD_OK;
    case RECORD_STR_VIEW:
        if (!s_read_bytes(r, false, &bytes, &len))
            return RECORD_WRONG_TYPE;
        s = (const char *)bytes;
        if (len > f->size)
            return RECORD_TOO_LONG;
        if (memchr(s, '\0', len) || !utf8_valid(bytes, len))
            return RECORD_BAD_VALUE;
        memcpy(member, &(record_view_t){.ptr = (const uint8_t *)s, .len = len},
               sizeof(record_view_t));
        return RECORD_OK;
    case RECORD_INT64:
    case RECORD_UINT64: {
        bool negative;
        int64_t i;
        uint64_t u;
        if (!s_read_int(r, &negative, &i, &u))
            return RECORD_WRONG_TYPE;
        if (f->type == RECORD_INT64) {
            if (!negative && u > INT64_MAX)
                return RECORD_BAD_VALUE;
            int64_t v = negative ? i : (int64_t)u;
            memcpy(member, &v, sizeof v);
        } else {
            if (negative)
                return RECORD_BAD_VALUE;
            memcpy(member, &u, sizeof u);
        }
        return RECORD_OK;
    }
    case RECORD_BOOL: {
        bool v;
        if (!record_read_bool(r, &v))
            return RECORD_WRONG_TYPE;
        memcpy(member, &v, sizeof v);
        return RECORD_OK;
    }
    case RECORD_BIN:
        if (!record_read_bin(r, &bytes, &len))
            return RECORD_WRONG_TYPE;
        if (len > f->size)
            return RECORD_TOO_LONG;
        memcpy(member, bytes, len);
        memcpy(record + f->len_offset, &len, sizeof len);
        return RECORD_OK;
    case RECORD_ENUM:
        /* Compared byte for byte with the names: no other str matches. */
        if (!s_read_bytes(r, false, &bytes, &len))
            return RECORD_WRONG_TYPE;
        s = (const char *)bytes;
        for (size_t i = 0; i < f->size; i++)
            if (s_key_is(f->names[i], s, len)) {
                int v = (int)i;
                memcpy(member, &v, sizeof v);
                return RECORD_OK;
            }
        return RECORD_BAD_VALUE;
    case RECORD_RAW: {
        const uint8_t *start = r->pos;
        if (!record_skip(r))
            return RECORD_MALFORMED;
        /* Handed on as msgpack: as valid as any message the project
         * accepts from outside. */
        size_t raw_len = (size_t)(r->pos - start);
        if (mpcheck(start, raw_len, raw_len, MPCHECK_DEPTH_LIMIT) != MP_OK)
            return RECORD_BAD_VALUE;
        memcpy(member, &(record_view_t){.ptr = start, .len = (size_t)(r->pos - start)},
               sizeof(record_view_t));
        return RECORD_OK;
    }
    case RECORD_CUSTOM: {
        /* The hook sees exactly the field's value and must read all of
         * it: it can neither run into the next key nor leave half. */
        record_reader_t whole = *r;
        if (!record_skip(&whole))
            return RECORD_MALFORMED;
        record_reader_t sub = {.pos = r->pos, .end = whole.pos};
        if (!f->decode(&sub, record) || sub.pos != sub.end)
            return RECORD_BAD_VALUE;
        *r = whole;
        return RECORD_OK;
    }
    }
    return RECORD_BAD_TABLE;
}

record_status_t record_decode(const record_table_t *table, const uint8_t *bytes, size_t len,
                              void *record)
{
    if (table->count > RECORD_FIELDS_MAX)
        return RECORD_BAD_TABLE;
    if (!bytes || len == 0)
        return RECORD_MALFORMED;
    record_reader_t r = {.pos = bytes, .end = bytes + len};
    /* Exactly one value, every count and length of it within the bytes. */
    record_reader_t whole = r;
    if (!record_skip(&whole) || whole.pos != whole.end)
        return RECORD_MALFORMED;
    uint32_t count;
    if (!record_read_map(&r, &count))
        return RECORD_NOT_MAP;
    uint64_t seen = 0, required = 0;
    for (size_t i = 0; i < table->count; i++)
        if (table->fields[i].flags & RECORD_REQUIRED)
            required |= (uint64_t)1 << i;
    for (uint32_t k = 0; k < count; k++) {
        const uint8_t *key_bytes;
        size_t key_len;
        if (!s_read_bytes(&r, false, &key_bytes, &key_len))
            return RECORD_MALFORMED; /* keys are strs */
        const char *key = (const char *)key_bytes;
        size_t i = 0;
        while (i < table->count && !s_key_is(table->fields[i].key, key, key_len))
            i++;
        if (i == table->count) {
            if (!record_skip(&r))
                return RECORD_MALFORMED;
            continue;
        }
        uint64_t bit = (uint64_t)1 << i;
        if (seen & bit)
            return RECORD_DUPLICATE;
        seen |= bit;
        record_status_t status = s_decode_field(&table->fields[i], &r, record);
        if (status != RECORD_OK)
            return status;
    }
    if ((seen & required) != required)
        return RECORD_MISSING;
    return r.pos == r.end ? RECORD_OK : RECORD_MALFORMED;
}

/* ---- encode ---- */

static int s_pack_str(msgpack_packer *pk, const char *s, size_t len)
{
    return msgpack_pack_str(pk, len) != 0 || msgpack_pack_str_body(pk, s, len) != 0 ? -1 : 0;
}

/* Whether the field is written: all are, but an empty RAW. */
static bool s_written(const record_field_t *f, const uint8_t *record)
{
    if (f->type != RECORD_RAW)
        return true;
    record_view_t v;
    memcpy(&v, record + f->offset, sizeof v);
    return v.len > 0;
}

static int s_encode_field(const record_field_t *f, const uint8_t *record, msgpack_packer *pk)
{
    const uint8_t *member = record + f->offset;
    switch (f->type) {
    case RECORD_STR: {
        size_t len = strnlen((const char *)member, f->size);
        if (len == f->size)
            return -1; /* not terminated: no text to write */
        return s_pack_str(pk, (const char *)member, len);
    }
    case RECORD_STR_VIEW: {
        record_view_t v;
        memcpy(&v, member, sizeof v);
        if (v.len > f->size || (v.len > 0 && !v.ptr))
            return -1;
        return s_pack_str(pk, (const char *)v.ptr, v.len);
    }
    case RECORD_INT64: {
        int64_t v;
        memcpy(&v, member, sizeof v);
        return msgpack_pack_int64(pk, v) != 0 ? -1 : 0;
    }
    case RECORD_UINT64: {
        uint64_t v;
        memcpy(&v, member, sizeof v);
        return msgpack_pack_uint64(pk, v) != 0 ? -1 : 0;
    }
    case RECORD_BOOL: {
        bool v;
        memcpy(&v, member, sizeof v);
        return (v ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) != 0 ? -1 : 0;
    }
    case RECORD_BIN: {
        size_t len;
        memcpy(&len, record + f->len_offset, sizeof len);
        if (len > f->size)
            return -1;
        return msgpack_pack_bin(pk, len) != 0 || msgpack_pack_bin_body(pk, member, len) != 0 ? -1
                                                                                             : 0;
    }
    case RECORD_ENUM: {
        int v;
        memcpy(&v, member, sizeof v);
        if (v < 0 || (size_t)v >= f->size)
            return -1;
        return s_pack_str(pk, f->names[v], strlen(f->names[v]));
    }
    case RECORD_RAW: {
        record_view_t v;
        memcpy(&v, member, sizeof v);
        /* The bytes are one value already: written as they are, through
         * the packer's own callback (so an mpout_t still counts them). */
        return pk->callback(pk->data, (const char *)v.ptr, v.len) != 0 ? -1 : 0;
    }
    case RECORD_CUSTOM:
        return f->encode(pk, record);
    }
    return -1;
}

int record_encode(const record_table_t *table, const void *record, msgpack_packer *pk)
{
    const uint8_t *base = record;
    size_t n = 0;
    for (size_t i = 0; i < table->count; i++)
        if (s_written(&table->fields[i], base))
            n++;
    if (msgpack_pack_map(pk, n) != 0)
        return -1;
    for (size_t i = 0; i < table->count; i++) {
        const record_field_t *f = &table->fields[i];
        if (!s_written(f, base))
            continue;
        if (s_pack_str(pk, f->key, strlen(f->key)) != 0 || s_encode_field(f, base, pk) != 0)
            return -1;
    }
    return 0;
}

int record_pack(const record_table_t *table, const void *record, mpout_t *out)
{
    mpout_clear(out);
    msgpack_packer pk;
    mpout_packer(out, &pk);
    return record_encode(table, record, &pk) == 0 && !out->failed ? 0 : -1;
}

const char *record_strerror(record_status_t status)
{
    switch (status) {
    case RECORD_OK:
        return "ok";
    case RECORD_MALFORMED:
        return "not one well-formed msgpack value";
    case RECORD_NOT_MAP:
        return "not a map";
    case RECORD_WRONG_TYPE:
        return "a field has the wrong type";
    case RECORD_BAD_VALUE:
        return "a field has a value out of its range";
    case RECORD_TOO_LONG:
        return "a field is too long";
    case RECORD_DUPLICATE:
        return "a field is given twice";
    case RECORD_MISSING:
        return "a required field is missing";
    case RECORD_BAD_TABLE:
        return "the record table is invalid";
    }
    return "invalid record";
}

/*  record.h - one table-driven codec for the msgpack records of the stores.
 *
 *  Every record a store keeps in LMDB (a product, a category, a
 *  reservation, a user) is a msgpack map with str keys; the key of the
 *  LMDB entry (the id) is not repeated in it. A C struct is described once,
 *  by a const table of its fields: key, type, where the member is
 *  (offsetof), how big it may be, required or optional. record_decode and
 *  record_encode read and write every record through its table, so no
 *  store hand-writes a decoder.
 *
 *      static const record_field_t s_fields[] = {
 *          RECORD_STR_FIELD(user_record_t, email, "email", RECORD_REQUIRED),
 *          RECORD_INT64_FIELD(user_record_t, created_at_ms, "created_at", RECORD_REQUIRED),
 *      };
 *      static const record_table_t s_table = RECORD_TABLE(s_fields);
 *      ... record_encode(&s_table, &user, &pk) ...
 *      ... record_decode(&s_table, bytes, len, &user) == RECORD_OK ...
 *
 *  Decoding is strict, and linear in the input:
 *    - the bytes must be exactly one msgpack value, every header, count
 *      and length of it within them, no ext types, nothing after it
 *      (else RECORD_MALFORMED: one pass over the structure first); and
 *      that value must be a map (RECORD_NOT_MAP) with str keys;
 *    - then one more pass reads the map: each key is looked up in the
 *      table (a few fields); every read checks its bounds, so no byte
 *      past the input is ever read, whatever the input claims;
 *    - a known key whose value has another type than its field is
 *      refused (RECORD_WRONG_TYPE; an int is never read as a str, nor a
 *      float as an int, nor nil as anything); an int out of its field's
 *      range, a str with a NUL or not valid UTF-8 (utf8_valid of
 *      protocol/mpcheck.h), an enum name not in the list, a RAW value
 *      that mpcheck refuses, or a custom field its hook refuses is
 *      RECORD_BAD_VALUE; a str or bin longer than its field is
 *      RECORD_TOO_LONG;
 *    - a known key given twice is refused (RECORD_DUPLICATE): no encoder
 *      writes one, and "the last one wins" would hide damage;
 *    - unknown keys are skipped: their values are passed over (their
 *      structure checked as above, their strs' text not looked at).
 *      That is how a field is added without rewriting stored records: a
 *      newer version's record still loads in older code, and a field that
 *      older records lack is made optional;
 *    - every RECORD_REQUIRED field must be there (RECORD_MISSING); an
 *      optional field that is absent leaves its member as the caller set
 *      it (its default).
 *  On any failure the members may be partly written: the caller decodes
 *  into scratch when it must not lose what it had.
 *
 *  Encoding writes a map of the fields in table order (an optional RAW
 *  field with no bytes is left out), each with the msgpack-c call that
 *  the stores' hand-written encoders used (msgpack_pack_str for keys and
 *  strs, msgpack_pack_int64, msgpack_pack_bin, ...), so the bytes of a
 *  record are what they were before this codec and the data of an
 *  existing directory decodes unchanged, both ways.
 *
 *  Types and their members:
 *    RECORD_STR      char[size] (size = sizeof the member): a str of at
 *                    most size - 1 bytes without NUL, stored terminated
 *    RECORD_STR_VIEW record_view_t pointing into the decoded bytes (not
 *                    copied, valid while they are): a str of at most size
 *                    bytes without NUL
 *    RECORD_INT64    int64_t: any msgpack int in range
 *    RECORD_UINT64   uint64_t: any msgpack int >= 0
 *    RECORD_BOOL     bool
 *    RECORD_BIN      uint8_t[size], with its length in a size_t member
 *                    (len_offset): a bin of at most size bytes
 *    RECORD_ENUM     int, one of names[0..size): a str equal to names[i]
 *                    decodes to i, and i encodes as names[i]
 *    RECORD_RAW      record_view_t of one whole msgpack value of any type
 *                    (header included) pointing into the decoded bytes;
 *                    encoded verbatim, and left out when its len is 0: an
 *                    optional sub-object kept as it is
 *    RECORD_CUSTOM   what the table cannot express (a list of lines): its
 *                    decode hook gets a reader bounded to exactly the
 *                    field's value and must read all of it; its encode
 *                    hook packs exactly one value
 *
 *  Ownership: tables are const and static; nothing here allocates. A
 *  view's pointer is into the caller's bytes.
 */
#ifndef RETAIL_RECORD_H
#define RETAIL_RECORD_H

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/mpout.h"

typedef enum {
    RECORD_STR,
    RECORD_STR_VIEW,
    RECORD_INT64,
    RECORD_UINT64,
    RECORD_BOOL,
    RECORD_BIN,
    RECORD_ENUM,
    RECORD_RAW,
    RECORD_CUSTOM,
} record_type_t;

typedef enum {
    RECORD_OK = 0,
    RECORD_MALFORMED,  /* not one well-formed msgpack value (mpcheck) */
    RECORD_NOT_MAP,    /* well-formed, but not a map */
    RECORD_WRONG_TYPE, /* a known key's value has another type */
    RECORD_BAD_VALUE,  /* right type, value refused (range, NUL, enum, hook) */
    RECORD_TOO_LONG,   /* a str or bin longer than its field */
    RECORD_DUPLICATE,  /* a known key twice */
    RECORD_MISSING,    /* a required field is absent */
    RECORD_BAD_TABLE,  /* more than RECORD_FIELDS_MAX fields */
} record_status_t;

/* Fields a table may have (required and seen fields are bit masks). */
#define RECORD_FIELDS_MAX 64

/* Flags of a field. */
#define RECORD_REQUIRED 1u

/* Bytes inside the decoded input: a STR_VIEW's text or a RAW value. */
typedef struct {
    const uint8_t *ptr;
    size_t len;
} record_view_t;

/* A position in msgpack bytes that never reads at or past end. Every
 * read returns false, leaving pos where it was, when the value there is
 * not of the type asked for or does not fit before end. */
typedef struct {
    const uint8_t *pos;
    const uint8_t *end;
} record_reader_t;

bool record_read_map(record_reader_t *r, uint32_t *count);
bool record_read_array(record_reader_t *r, uint32_t *count);
/* A str of valid UTF-8; *s points into the bytes (not terminated). */
bool record_read_str(record_reader_t *r, const char **s, size_t *len);
bool record_read_bin(record_reader_t *r, const uint8_t **bytes, size_t *len);
/* Any int: false for one above INT64_MAX. */
bool record_read_int64(record_reader_t *r, int64_t *v);
/* Any int >= 0. */
bool record_read_uint64(record_reader_t *r, uint64_t *v);
bool record_read_bool(record_reader_t *r, bool *v);
/* Passes over one whole value of any type (containers with all they
 * hold; no recursion). */
bool record_skip(record_reader_t *r);

/* RECORD_CUSTOM hooks. decode reads exactly one value from r (bounded
 * to it) into the record; false refuses it (RECORD_BAD_VALUE). encode
 * packs exactly one value of the record; 0, or -1 when it cannot. */
typedef bool record_decode_fn(record_reader_t *r, void *record);
typedef int record_encode_fn(msgpack_packer *pk, const void *record);

typedef struct {
    const char *key;
    record_type_t type;
    unsigned flags;           /* RECORD_REQUIRED */
    size_t offset;            /* of the member; not used by CUSTOM */
    size_t size;              /* STR: sizeof the array; STR_VIEW: most bytes;
                                 BIN: capacity; ENUM: number of names */
    size_t len_offset;        /* BIN: of its size_t length */
    const char *const *names; /* ENUM */
    record_decode_fn *decode; /* CUSTOM */
    record_encode_fn *encode; /* CUSTOM */
} record_field_t;

typedef struct {
    const record_field_t *fields;
    size_t count;
} record_table_t;

#define RECORD_MEMBER_SIZE(T, m) sizeof(((T *)0)->m)

#define RECORD_STR_FIELD(T, m, k, f)                                                               \
    {                                                                                              \
        .key = (k), .type = RECORD_STR, .flags = (f), .offset = offsetof(T, m),                    \
        .size = RECORD_MEMBER_SIZE(T, m)                                                           \
    }
#define RECORD_STR_VIEW_FIELD(T, m, k, max, f)                                                     \
    {                                                                                              \
        .key = (k), .type = RECORD_STR_VIEW, .flags = (f), .offset = offsetof(T, m), .size = (max) \
    }
#define RECORD_INT64_FIELD(T, m, k, f)                                                             \
    {                                                                                              \
        .key = (k), .type = RECORD_INT64, .flags = (f), .offset = offsetof(T, m)                   \
    }
#define RECORD_UINT64_FIELD(T, m, k, f)                                                            \
    {                                                                                              \
        .key = (k), .type = RECORD_UINT64, .flags = (f), .offset = offsetof(T, m)                  \
    }
#define RECORD_BOOL_FIELD(T, m, k, f)                                                              \
    {                                                                                              \
        .key = (k), .type = RECORD_BOOL, .flags = (f), .offset = offsetof(T, m)                    \
    }
#define RECORD_BIN_FIELD(T, m, len_m, k, f)                                                        \
    {                                                                                              \
        .key = (k), .type = RECORD_BIN, .flags = (f), .offset = offsetof(T, m),                    \
        .size = RECORD_MEMBER_SIZE(T, m), .len_offset = offsetof(T, len_m)                         \
    }
#define RECORD_ENUM_FIELD(T, m, k, name_list, n_names, f)                                          \
    {                                                                                              \
        .key = (k), .type = RECORD_ENUM, .flags = (f), .offset = offsetof(T, m),                   \
        .size = (n_names), .names = (name_list)                                                    \
    }
#define RECORD_RAW_FIELD(T, m, k, f)                                                               \
    {                                                                                              \
        .key = (k), .type = RECORD_RAW, .flags = (f), .offset = offsetof(T, m)                     \
    }
#define RECORD_CUSTOM_FIELD(k, dec, enc, f)                                                        \
    {                                                                                              \
        .key = (k), .type = RECORD_CUSTOM, .flags = (f), .decode = (dec), .encode = (enc)          \
    }
#define RECORD_TABLE(fields_array)                                                                 \
    {                                                                                              \
        .fields = (fields_array), .count = sizeof(fields_array) / sizeof((fields_array)[0])        \
    }

/* Decodes the record bytes[0..len) into the struct at record (above).
 * RECORD_OK, or why not. */
record_status_t record_decode(const record_table_t *table, const uint8_t *bytes, size_t len,
                              void *record);

/* Packs the struct at record as a map of the table's fields. 0, or -1
 * when a pack call failed (the packer's output is then unusable: with an
 * mpout_t, its sticky `failed`) or a member cannot be written (a STR not
 * terminated within its array, a BIN length over its capacity, an ENUM
 * out of range, a hook's -1). */
int record_encode(const record_table_t *table, const void *record, msgpack_packer *pk);

/* record_encode into out, cleared first (the bytes are out->buf's): 0,
 * or -1 when the record cannot be written or out refused a write (its
 * limit, memory). */
int record_pack(const record_table_t *table, const void *record, mpout_t *out);

/* A short English phrase for a status ("a required field is missing"). */
const char *record_strerror(record_status_t status);

#endif

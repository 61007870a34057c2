/*  envelope.c - strict decoding and encoding of request and reply bodies.
 *
 *  Decoding runs mpcheck() first, so msgpack_unpack() only ever sees bytes
 *  whose every length has been proven to fit; then the top map is read key
 *  by key, refusing duplicates, unknown keys and wrong types.
 *
 *  Encoding stops at the first pack that fails: a later, smaller write
 *  could succeed and leave a buffer that parses as something else. The
 *  sbuffer encoders then cut the buffer back to where they began.
 */
#include "protocol/envelope.h"
#include "protocol/mpcheck.h"

#include <string.h>

const msgpack_object *mp_map_get(const msgpack_object *map, const char *key)
{
    if (!map || map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == klen &&
            memcmp(k->via.str.ptr, key, klen) == 0)
            return &map->via.map.ptr[i].val;
    }
    return NULL;
}

bool mp_str_eq(const msgpack_object *o, const char *s)
{
    size_t n = strlen(s);
    return o && o->type == MSGPACK_OBJECT_STR && o->via.str.size == n &&
           memcmp(o->via.str.ptr, s, n) == 0;
}

int mp_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    if (msgpack_pack_str(pk, n) != 0 || msgpack_pack_str_body(pk, s, n) != 0)
        return -1;
    return 0;
}

int mp_pack_str(msgpack_packer *pk, const char *s)
{
    return mp_pack_strn(pk, s, strlen(s));
}

int mp_pack_raw(msgpack_packer *pk, const void *bytes, size_t len)
{
    return pk->callback(pk->data, bytes, len) == 0 ? 0 : -1;
}

/* Validates and unpacks one value; the top must be a map. */
static bool s_unpack_map(const void *body, size_t len, msgpack_zone *zone, msgpack_object *out,
                         const char **message)
{
    mp_status_t st = mpcheck(body, len, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH);
    if (st != MP_OK) {
        *message = mpcheck_strerror(st);
        return false;
    }
    size_t off = 0;
    if (msgpack_unpack(body, len, &off, zone, out) != MSGPACK_UNPACK_SUCCESS) {
        *message = "msgpack could not be unpacked";
        return false;
    }
    if (out->type != MSGPACK_OBJECT_MAP) {
        *message = "body is not a map";
        return false;
    }
    return true;
}

bool envelope_decode_request(const void *body, size_t len, msgpack_zone *zone,
                             envelope_request_t *out, const char **message)
{
    msgpack_object top;
    if (!s_unpack_map(body, len, zone, &top, message))
        return false;

    memset(out, 0, sizeof *out);
    out->id.type = MSGPACK_OBJECT_NIL;
    out->args.type = MSGPACK_OBJECT_MAP;
    bool seen_id = false, seen_op = false, seen_token = false, seen_args = false;

    for (uint32_t i = 0; i < top.via.map.size; i++) {
        const msgpack_object *k = &top.via.map.ptr[i].key;
        const msgpack_object *v = &top.via.map.ptr[i].val;
        bool *seen;
        if (mp_str_eq(k, "id"))
            seen = &seen_id;
        else if (mp_str_eq(k, "op"))
            seen = &seen_op;
        else if (mp_str_eq(k, "token"))
            seen = &seen_token;
        else if (mp_str_eq(k, "args"))
            seen = &seen_args;
        else {
            *message = "unknown key in envelope (allowed: id, op, token, args)";
            return false;
        }
        if (*seen) {
            *message = "duplicate key in envelope";
            return false;
        }
        *seen = true;

        if (seen == &seen_id) {
            out->id = *v;
        } else if (seen == &seen_op) {
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 ||
                v->via.str.size > ENVELOPE_MAX_OP) {
                *message = "op must be a string of 1 to 64 bytes";
                return false;
            }
            out->op = v->via.str.ptr;
            out->op_len = v->via.str.size;
        } else if (seen == &seen_token) {
            if (v->type == MSGPACK_OBJECT_NIL)
                continue;
            if (v->type != MSGPACK_OBJECT_STR || v->via.str.size > ENVELOPE_MAX_TOKEN) {
                *message = "token must be a string of at most 4096 bytes";
                return false;
            }
            out->token = v->via.str.ptr;
            out->token_len = v->via.str.size;
        } else {
            if (v->type == MSGPACK_OBJECT_NIL)
                continue;
            if (v->type != MSGPACK_OBJECT_MAP) {
                *message = "args must be a map";
                return false;
            }
            out->args = *v;
        }
    }
    if (!seen_op) {
        *message = "op is missing";
        return false;
    }
    return true;
}

int envelope_pack_request(msgpack_sbuffer *out, uint64_t id, const char *op, const char *token,
                          const void *args_packed, size_t args_len)
{
    size_t start = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    if (msgpack_pack_map(&pk, token ? 4 : 3) != 0 || mp_pack_str(&pk, "id") != 0 ||
        msgpack_pack_uint64(&pk, id) != 0 || mp_pack_str(&pk, "op") != 0 ||
        mp_pack_str(&pk, op) != 0 ||
        (token && (mp_pack_str(&pk, "token") != 0 || mp_pack_str(&pk, token) != 0)) ||
        mp_pack_str(&pk, "args") != 0 ||
        (args_packed ? mp_pack_raw(&pk, args_packed, args_len) : msgpack_pack_map(&pk, 0)) != 0) {
        out->size = start;
        return -1;
    }
    return 0;
}

int envelope_reply_ok_begin(msgpack_packer *pk, const msgpack_object *id)
{
    if (msgpack_pack_map(pk, 3) != 0 || mp_pack_str(pk, "id") != 0 ||
        msgpack_pack_object(pk, *id) != 0 || mp_pack_str(pk, "ok") != 0 ||
        msgpack_pack_true(pk) != 0 || mp_pack_str(pk, "data") != 0)
        return -1;
    return 0;
}

int envelope_reply_ok_replayed_begin(msgpack_packer *pk, const msgpack_object *id)
{
    if (msgpack_pack_map(pk, 4) != 0 || mp_pack_str(pk, "id") != 0 ||
        msgpack_pack_object(pk, *id) != 0 || mp_pack_str(pk, "ok") != 0 ||
        msgpack_pack_true(pk) != 0 || mp_pack_str(pk, "replayed") != 0 ||
        msgpack_pack_true(pk) != 0 || mp_pack_str(pk, "data") != 0)
        return -1;
    return 0;
}

int envelope_pack_error(msgpack_packer *pk, const msgpack_object *id, err_code_t code,
                        const char *message, const void *details_packed, size_t details_len)
{
    return envelope_pack_error_replayed(pk, id, code, message, details_packed, details_len, false);
}

int envelope_pack_error_replayed(msgpack_packer *pk, const msgpack_object *id, err_code_t code,
                                 const char *message, const void *details_packed,
                                 size_t details_len, bool replayed)
{
    if (msgpack_pack_map(pk, replayed ? 4 : 3) != 0 || mp_pack_str(pk, "id") != 0 ||
        (id ? msgpack_pack_object(pk, *id) : msgpack_pack_nil(pk)) != 0 ||
        mp_pack_str(pk, "ok") != 0 || msgpack_pack_false(pk) != 0 ||
        (replayed && (mp_pack_str(pk, "replayed") != 0 || msgpack_pack_true(pk) != 0)) ||
        mp_pack_str(pk, "error") != 0 || msgpack_pack_map(pk, details_packed ? 3 : 2) != 0 ||
        mp_pack_str(pk, "code") != 0 || mp_pack_str(pk, err_code_name(code)) != 0 ||
        mp_pack_str(pk, "message") != 0 ||
        mp_pack_str(pk, message ? message : err_code_name(code)) != 0)
        return -1;
    if (details_packed &&
        (mp_pack_str(pk, "details") != 0 || mp_pack_raw(pk, details_packed, details_len) != 0))
        return -1;
    return 0;
}

int envelope_reply_error(msgpack_sbuffer *out, const msgpack_object *id, err_code_t code,
                         const char *message, const void *details_packed, size_t details_len)
{
    size_t start = out->size;
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    if (envelope_pack_error(&pk, id, code, message, details_packed, details_len) != 0) {
        out->size = start;
        return -1;
    }
    return 0;
}

int envelope_error_for(msgpack_sbuffer *out, const void *request, size_t len, err_code_t code,
                       const char *message)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 256))
        return -1;
    envelope_request_t rq;
    const char *why;
    bool decoded = request && envelope_decode_request(request, len, &zone, &rq, &why);
    int rc = envelope_reply_error(out, decoded ? &rq.id : NULL, code, message, NULL, 0);
    msgpack_zone_destroy(&zone);
    return rc;
}

/* What envelope_reply_error packs for a nil id, written out by hand so
 * that it exists without any allocation (test_envelope compares the two),
 * one line per key and value. Each escape is its own literal: "\xa5"
 * "error", not "\xa5error", which C would read as the hex escape \xa5e. */
/* clang-format off */
static const char s_fixed_out_of_memory[] =
    "\x83"
    "\xa2" "id" "\xc0"
    "\xa2" "ok" "\xc2"
    "\xa5" "error" "\x82"
    "\xa4" "code" "\xab" "unavailable"
    "\xa7" "message" "\xad" ENVELOPE_MSG_OUT_OF_MEMORY;
static const char s_fixed_too_large[] =
    "\x83"
    "\xa2" "id" "\xc0"
    "\xa2" "ok" "\xc2"
    "\xa5" "error" "\x82"
    "\xa4" "code" "\xa8" "internal"
    "\xa7" "message" "\xd9\x20" ENVELOPE_MSG_TOO_LARGE;
/* clang-format on */
_Static_assert(sizeof ENVELOPE_MSG_OUT_OF_MEMORY - 1 == 0x0d, "the fixstr header above");
_Static_assert(sizeof ENVELOPE_MSG_TOO_LARGE - 1 == 0x20, "the str8 header above");

const char *envelope_reply_fixed(envelope_fixed_t which, size_t *len)
{
    if (which == ENVELOPE_FIXED_TOO_LARGE) {
        *len = sizeof s_fixed_too_large - 1;
        return s_fixed_too_large;
    }
    *len = sizeof s_fixed_out_of_memory - 1;
    return s_fixed_out_of_memory;
}

bool envelope_decode_reply(const void *body, size_t len, msgpack_zone *zone, envelope_reply_t *out,
                           const char **message)
{
    msgpack_object top;
    if (!s_unpack_map(body, len, zone, &top, message))
        return false;
    memset(out, 0, sizeof *out);
    const msgpack_object *id = mp_map_get(&top, "id");
    const msgpack_object *ok = mp_map_get(&top, "ok");
    if (id)
        out->id = *id;
    else
        out->id.type = MSGPACK_OBJECT_NIL;
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN) {
        *message = "reply has no boolean ok";
        return false;
    }
    out->ok = ok->via.boolean;
    const msgpack_object *replayed = mp_map_get(&top, "replayed");
    out->replayed = replayed && replayed->type == MSGPACK_OBJECT_BOOLEAN && replayed->via.boolean;
    if (out->ok) {
        const msgpack_object *data = mp_map_get(&top, "data");
        if (data)
            out->data = *data;
        else
            out->data.type = MSGPACK_OBJECT_NIL;
        return true;
    }
    const msgpack_object *err = mp_map_get(&top, "error");
    const msgpack_object *code = mp_map_get(err, "code");
    if (!code || code->type != MSGPACK_OBJECT_STR) {
        *message = "error reply has no code";
        return false;
    }
    out->error = *err;
    out->code = err_code_from_name(code->via.str.ptr, code->via.str.size);
    return true;
}

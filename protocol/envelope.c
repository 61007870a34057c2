/*  envelope.c - strict decoding and encoding of request and reply bodies.
 *
 *  Decoding runs mpcheck() first, so msgpack_unpack() only ever sees bytes
 *  whose every length has been proven to fit; then the top map is read key
 *  by key, refusing duplicates, unknown keys and wrong types.
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

void mp_pack_strn(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void mp_pack_str(msgpack_packer *pk, const char *s)
{
    mp_pack_strn(pk, s, strlen(s));
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

void envelope_pack_request(msgpack_sbuffer *out, uint64_t id, const char *op, const char *token,
                           const void *args_packed, size_t args_len)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, token ? 4 : 3);
    mp_pack_str(&pk, "id");
    msgpack_pack_uint64(&pk, id);
    mp_pack_str(&pk, "op");
    mp_pack_str(&pk, op);
    if (token) {
        mp_pack_str(&pk, "token");
        mp_pack_str(&pk, token);
    }
    mp_pack_str(&pk, "args");
    if (args_packed)
        msgpack_sbuffer_write(out, args_packed, args_len);
    else
        msgpack_pack_map(&pk, 0);
}

void envelope_reply_ok_begin(msgpack_packer *pk, const msgpack_object *id)
{
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "id");
    msgpack_pack_object(pk, *id);
    mp_pack_str(pk, "ok");
    msgpack_pack_true(pk);
    mp_pack_str(pk, "data");
}

void envelope_reply_error(msgpack_sbuffer *out, const msgpack_object *id, err_code_t code,
                          const char *message, const void *details_packed, size_t details_len)
{
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    mp_pack_str(&pk, "id");
    if (id)
        msgpack_pack_object(&pk, *id);
    else
        msgpack_pack_nil(&pk);
    mp_pack_str(&pk, "ok");
    msgpack_pack_false(&pk);
    mp_pack_str(&pk, "error");
    msgpack_pack_map(&pk, details_packed ? 3 : 2);
    mp_pack_str(&pk, "code");
    mp_pack_str(&pk, err_code_name(code));
    mp_pack_str(&pk, "message");
    mp_pack_str(&pk, message ? message : err_code_name(code));
    if (details_packed) {
        mp_pack_str(&pk, "details");
        msgpack_sbuffer_write(out, details_packed, details_len);
    }
}

void envelope_error_for(msgpack_sbuffer *out, const void *request, size_t len, err_code_t code,
                        const char *message)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_request_t rq;
    const char *why;
    bool decoded = request && envelope_decode_request(request, len, &zone, &rq, &why);
    envelope_reply_error(out, decoded ? &rq.id : NULL, code, message, NULL, 0);
    msgpack_zone_destroy(&zone);
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

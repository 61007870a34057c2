/*  errors.c - the error table: wire string and HTTP status per code.
 *
 *  Kept as one array indexed by err_code_t so that adding a code is one
 *  line here and one in the enum; a unit test checks the two agree.
 */
#include "protocol/errors.h"

#include <string.h>

static const struct {
    const char *name;
    int status;
} s_errors[ERR__COUNT] = {
    [ERR_NONE] = {"ok", 200},
    [ERR_INVALID_ARGUMENT] = {"invalid_argument", 400},
    [ERR_MALFORMED_BODY] = {"malformed_body", 400},
    [ERR_UNAUTHENTICATED] = {"unauthenticated", 401},
    [ERR_INVALID_CREDENTIALS] = {"invalid_credentials", 401},
    [ERR_TOKEN_EXPIRED] = {"token_expired", 401},
    [ERR_PAYMENT_DECLINED] = {"payment_declined", 402},
    [ERR_FORBIDDEN] = {"forbidden", 403},
    [ERR_NOT_FOUND] = {"not_found", 404},
    [ERR_METHOD_NOT_ALLOWED] = {"method_not_allowed", 405},
    [ERR_CONFLICT] = {"conflict", 409},
    [ERR_EMAIL_TAKEN] = {"email_taken", 409},
    [ERR_SKU_TAKEN] = {"sku_taken", 409},
    [ERR_OUT_OF_STOCK] = {"out_of_stock", 409},
    [ERR_INVALID_TRANSITION] = {"invalid_transition", 409},
    [ERR_IDEMPOTENCY_KEY_REUSED] = {"idempotency_key_reused", 409},
    [ERR_VERSION_MISMATCH] = {"version_mismatch", 412},
    [ERR_PAYLOAD_TOO_LARGE] = {"payload_too_large", 413},
    [ERR_UNSUPPORTED_MEDIA_TYPE] = {"unsupported_media_type", 415},
    [ERR_RATE_LIMITED] = {"rate_limited", 429},
    [ERR_UNAVAILABLE] = {"unavailable", 503},
    [ERR_TIMEOUT] = {"timeout", 504},
    [ERR_INTERNAL] = {"internal", 500},
    [ERR_GATEWAY_ERROR] = {"gateway_error", 502},
    [ERR_IDEMPOTENCY_KEY_IN_USE] = {"idempotency_key_in_use", 409},
};

const char *err_code_name(err_code_t code)
{
    if ((unsigned)code >= ERR__COUNT)
        code = ERR_INTERNAL;
    return s_errors[code].name;
}

int err_http_status(err_code_t code)
{
    if ((unsigned)code >= ERR__COUNT)
        code = ERR_INTERNAL;
    return s_errors[code].status;
}

err_code_t err_code_from_name(const char *name, size_t len)
{
    for (int i = 0; i < ERR__COUNT; i++) {
        if (strlen(s_errors[i].name) == len && memcmp(s_errors[i].name, name, len) == 0)
            return (err_code_t)i;
    }
    return ERR_INTERNAL;
}

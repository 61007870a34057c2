/*  errors.h - the error codes of the public contract (API.md section 3).
 *
 *  One table, shared by every service (which writes the code string into
 *  the reply envelope) and by the HTTP bridge (which maps it to a status).
 *  Codes are stable strings on the wire; the enum is only an index.
 */
#ifndef RETAIL_ERRORS_H
#define RETAIL_ERRORS_H

#include <stddef.h>

typedef enum {
    ERR_NONE = 0,
    ERR_INVALID_ARGUMENT,
    ERR_MALFORMED_BODY,
    ERR_UNAUTHENTICATED,
    ERR_INVALID_CREDENTIALS,
    ERR_TOKEN_EXPIRED,
    ERR_PAYMENT_DECLINED,
    ERR_FORBIDDEN,
    ERR_NOT_FOUND,
    ERR_METHOD_NOT_ALLOWED, /* HTTP only: the path exists with other methods */
    ERR_CONFLICT,
    ERR_EMAIL_TAKEN,
    ERR_SKU_TAKEN,
    ERR_OUT_OF_STOCK,
    ERR_INVALID_TRANSITION,
    ERR_IDEMPOTENCY_KEY_REUSED,
    ERR_VERSION_MISMATCH,
    ERR_PAYLOAD_TOO_LARGE,
    ERR_UNSUPPORTED_MEDIA_TYPE,
    ERR_RATE_LIMITED,
    ERR_UNAVAILABLE,
    ERR_TIMEOUT,
    ERR_INTERNAL,
    ERR_GATEWAY_ERROR,          /* the payment gateway failed (after retries) */
    ERR_IDEMPOTENCY_KEY_IN_USE, /* the first request with the key is still running */
    ERR__COUNT
} err_code_t;

/* The wire string of a code ("invalid_argument"). Never NULL. */
const char *err_code_name(err_code_t code);

/* The HTTP status a code maps to (400, 401, ...). */
int err_http_status(err_code_t code);

/* The code whose wire string is name[0..len), or ERR_INTERNAL if none. */
err_code_t err_code_from_name(const char *name, size_t len);

#endif

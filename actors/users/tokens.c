/*  tokens.c - signing access tokens with libjwt, and refresh tokens.
 *
 *  A signer reads its private key PEM once and keeps the bytes: libjwt
 *  1.10 takes the key as PEM text on each jwt_set_alg() and parses it per
 *  signature, which is its cost (tokens.h). Before keeping the key we ask
 *  auth_pem_kid() for its thumbprint, which also proves it is an EC P-256
 *  private key, so a wrong key file fails at start, not at the first login.
 *
 *  Claims: sub, role, iss, aud (one string), jti (16 random bytes,
 *  base64url), iat and exp (unix seconds). Header: alg ES256, typ JWT
 *  (libjwt adds both) and kid, the key's RFC 7638 thumbprint, which is how
 *  a JWKS consumer picks the key.
 *
 *  The key bytes are wiped when the signer goes; libjwt wipes its own copy
 *  in jwt_free(). Nothing here logs a key or a token.
 */
#include "actors/users/tokens.h"
#include "protocol/files.h"

#include "protocol/auth.h"

#include <errno.h>
#include <jwt.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TOKENS_DEFAULT_TTL_S 900
#define TOKENS_PEM_MAX (64 * 1024)
#define TOKENS_JTI_BYTES 16
#define TOKENS_REFRESH_BYTES 32
#define TOKENS_REFRESH_PREFIX "rt_"

_Static_assert(sizeof TOKENS_REFRESH_PREFIX - 1 +
                       sodium_base64_ENCODED_LEN(TOKENS_REFRESH_BYTES,
                                                 sodium_base64_VARIANT_URLSAFE_NO_PADDING) -
                       1 <=
                   REFRESH_TOKEN_MAX,
               "a refresh token fits REFRESH_TOKEN_MAX");

struct token_signer_t {
    unsigned char *pem; /* the private key, wiped on destroy */
    size_t pem_len;
    char *issuer;
    char *audience;
    int ttl_s;
    char kid[AUTH_KID_LEN + 1];
};

static void s_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
}

token_signer_t *token_signer_new(const char *private_pem_path, const char *issuer,
                                 const char *audience, int ttl_s, char *err, size_t errlen)
{
    if (!private_pem_path || !issuer || !audience) {
        s_set_err(err, errlen, "token signer: missing key path, issuer or audience");
        return NULL;
    }
    if (sodium_init() < 0) {
        s_set_err(err, errlen, "token signer: libsodium did not initialise");
        return NULL;
    }
    token_signer_t *self = calloc(1, sizeof *self);
    if (!self) {
        s_set_err(err, errlen, "token signer: out of memory");
        return NULL;
    }
    self->pem = (unsigned char *)files_read(private_pem_path, TOKENS_PEM_MAX, &self->pem_len);
    if (!self->pem) {
        s_set_err(err, errlen, "token signer: cannot read %s: %s", private_pem_path,
                  strerror(errno));
        goto failed;
    }
    if (auth_pem_kid((const char *)self->pem, self->pem_len, true, self->kid) != 0) {
        s_set_err(err, errlen, "token signer: %s is not an EC P-256 private key", private_pem_path);
        goto failed;
    }
    self->issuer = strdup(issuer);
    self->audience = strdup(audience);
    if (!self->issuer || !self->audience) {
        s_set_err(err, errlen, "token signer: out of memory");
        goto failed;
    }
    /* Negative lifetimes make tokens that are already expired: tests use
     * them to exercise token_expired without waiting. */
    self->ttl_s = ttl_s ? ttl_s : TOKENS_DEFAULT_TTL_S;
    return self;
failed:
    token_signer_destroy(&self);
    return NULL;
}

void token_signer_destroy(token_signer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    token_signer_t *self = *self_p;
    if (self->pem) {
        sodium_memzero(self->pem, self->pem_len);
        free(self->pem);
    }
    free(self->issuer);
    free(self->audience);
    free(self);
    *self_p = NULL;
}

static bool s_role_ok(const char *role)
{
    return strcmp(role, "customer") == 0 || strcmp(role, "admin") == 0;
}

int token_sign(token_signer_t *self, const char *sub, const char *role, char **token,
               int *expires_in)
{
    *token = NULL;
    if (!sub || !role || sub[0] == '\0' || strlen(sub) > AUTH_SUB_MAX || !s_role_ok(role))
        return -1;
    uint8_t jti_bytes[TOKENS_JTI_BYTES];
    randombytes_buf(jti_bytes, sizeof jti_bytes);
    char jti[sodium_base64_ENCODED_LEN(TOKENS_JTI_BYTES, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];
    sodium_bin2base64(jti, sizeof jti, jti_bytes, sizeof jti_bytes,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    long now = (long)time(NULL);

    int rc = -1;
    jwt_t *jwt = NULL;
    if (jwt_new(&jwt) != 0)
        goto cleanup;
    if (jwt_add_grant(jwt, "sub", sub) != 0 || jwt_add_grant(jwt, "role", role) != 0 ||
        jwt_add_grant(jwt, "iss", self->issuer) != 0 ||
        jwt_add_grant(jwt, "aud", self->audience) != 0 || jwt_add_grant(jwt, "jti", jti) != 0 ||
        jwt_add_grant_int(jwt, "iat", now) != 0 ||
        jwt_add_grant_int(jwt, "exp", now + self->ttl_s) != 0)
        goto cleanup;
    if (jwt_add_header(jwt, "kid", self->kid) != 0)
        goto cleanup;
    if (jwt_set_alg(jwt, JWT_ALG_ES256, self->pem, (int)self->pem_len) != 0)
        goto cleanup;
    /* libjwt 1.10 has no jwt_free_str(): the string is plain malloc'd,
     * which is what tokens.h promises the caller. */
    char *encoded = jwt_encode_str(jwt);
    if (!encoded)
        goto cleanup;
    if (strlen(encoded) > AUTH_TOKEN_MAX) { /* cannot happen with sub bounded */
        free(encoded);
        goto cleanup;
    }
    *token = encoded;
    if (expires_in)
        *expires_in = self->ttl_s;
    rc = 0;
cleanup:
    if (jwt)
        jwt_free(jwt);
    return rc;
}

void refresh_token_new(char *out)
{
    /* A predictable refresh token would hand out sessions; a library that
     * cannot initialise its random source is not something to go on with.
     * (sodium_init() is cheap once it has succeeded.) */
    if (sodium_init() < 0)
        abort();
    uint8_t bytes[TOKENS_REFRESH_BYTES];
    randombytes_buf(bytes, sizeof bytes);
    size_t prefix = strlen(TOKENS_REFRESH_PREFIX);
    memcpy(out, TOKENS_REFRESH_PREFIX, prefix);
    sodium_bin2base64(out + prefix, REFRESH_TOKEN_MAX + 1 - prefix, bytes, sizeof bytes,
                      sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    sodium_memzero(bytes, sizeof bytes);
}

void refresh_token_hash(const char *token, size_t len, uint8_t out[REFRESH_HASH_BYTES])
{
    /* Unkeyed is enough: the token has 256 bits of entropy, so its hash
     * cannot be inverted by guessing. crypto_generichash cannot fail with
     * these sizes. */
    if (crypto_generichash(out, REFRESH_HASH_BYTES, (const uint8_t *)token, len, NULL, 0) != 0)
        abort();
}

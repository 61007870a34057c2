/*  tokens.h - signing access tokens (the users service only).
 *
 *  ES256 with libjwt, claims sub, role, iat, exp, iss, aud, jti (random),
 *  header kid = the key's thumbprint. libjwt re-reads the PEM key on every
 *  call (about 0.6 ms per signature): acceptable for logins and refreshes,
 *  which are rare next to verifications (protocol/auth.h).
 *
 *  Also refresh tokens: 32 random bytes, base64url, "rt_" prefix; only
 *  their BLAKE2b-256 hash is ever stored.
 */
#ifndef RETAIL_TOKENS_H
#define RETAIL_TOKENS_H

#include <stddef.h>
#include <stdint.h>

typedef struct token_signer_t token_signer_t;

/* Loads the private key PEM (kept in memory, never logged; it must be an
 * EC P-256 key). ttl_s: access token lifetime, 0 means 900 (15 minutes);
 * negative makes tokens that are already expired (tests only). NULL on
 * error (err). */
token_signer_t *token_signer_new(const char *private_pem_path, const char *issuer,
                                 const char *audience, int ttl_s, char *err, size_t errlen);
void token_signer_destroy(token_signer_t **self_p);

/* Signs an access token for (sub, role). *token is malloc'd (caller frees
 * with free()); *expires_in (may be NULL) receives the lifetime in seconds.
 * 0, or -1 (*token NULL) on error, an empty or over-long sub (AUTH_SUB_MAX)
 * or a role other than "customer" and "admin". */
int token_sign(token_signer_t *self, const char *sub, const char *role, char **token,
               int *expires_in);

#define REFRESH_TOKEN_MAX 64
#define REFRESH_HASH_BYTES 32

/* A new refresh token (NUL-terminated) into out[REFRESH_TOKEN_MAX + 1]. */
void refresh_token_new(char *out);
/* The stored form of a refresh token. */
void refresh_token_hash(const char *token, size_t len, uint8_t out[REFRESH_HASH_BYTES]);

#endif

/*  auth.h - access tokens: verification for every service, keys, JWKS.
 *
 *  Access tokens are ES256 JWTs made by the users service (see
 *  actors/users/tokens.h) with claims sub, role, iat, exp, iss, aud, jti.
 *  Every service verifies them with the public key alone, through
 *  auth_verify(): the header's alg must be exactly "ES256" (so "none" and
 *  HMAC tokens, including an HS256 token whose secret is our public key,
 *  are refused before any signature check), then the signature, then exp,
 *  iss and aud.
 *
 *  Verified tokens are cached (keyed by a BLAKE2b hash of the token,
 *  bounded, each entry expiring with its token), so a request with a token
 *  seen before costs a hash and a lookup instead of an ECDSA verify.
 *
 *  Keys live in the keys directory: jwt.key.pem (the private key, mode
 *  0600, only where the users service runs) and jwt.pub.pem.
 *
 *  A verifier is used by one thread (each worker has its own): no locks.
 */
#ifndef RETAIL_AUTH_H
#define RETAIL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/call.h"
#include "protocol/errors.h"

#define AUTH_ISSUER "retail"
#define AUTH_AUDIENCE "retail-api"
#define AUTH_SUB_MAX 63
#define AUTH_ROLE_MAX 15
/* Longer tokens are refused unread (the envelope allows 4096 bytes). */
#define AUTH_TOKEN_MAX 4096
/* Clock skew allowed between the signer and a verifier, for exp and iat. */
#define AUTH_LEEWAY_S 30
/* A key id: base64url of a SHA-256 digest, without padding. */
#define AUTH_KID_LEN 43

typedef struct {
    char sub[AUTH_SUB_MAX + 1];   /* the user id */
    char role[AUTH_ROLE_MAX + 1]; /* "customer" or "admin" */
    int64_t exp;                  /* unix seconds */
} auth_identity_t;

typedef struct auth_verifier_t auth_verifier_t;

/* A verifier that reads the public key from public_pem_path when first
 * needed (and again while it is missing, so services may start before the
 * users service made the key). cache_entries: 0 means 4096. */
auth_verifier_t *auth_verifier_new(const char *public_pem_path, const char *issuer,
                                   const char *audience, size_t cache_entries);
void auth_verifier_destroy(auth_verifier_t **self_p);

/* ERR_NONE and *out filled, or ERR_UNAUTHENTICATED (missing, malformed,
 * wrong alg, bad signature, wrong iss or aud, no key) or ERR_TOKEN_EXPIRED. */
err_code_t auth_verify(auth_verifier_t *self, const char *token, size_t len, auth_identity_t *out);

/* For tests and measurements: cache hits, and signature checks done
 * (a token refused before its signature was checked does not count). */
size_t auth_verifier_hits(const auth_verifier_t *self);
size_t auth_verifier_signature_checks(const auth_verifier_t *self);

/* Why the last auth_verify() failed, as a static phrase ("bad signature",
 * "wrong audience"...), for debug logs and tests; "" after a success. It
 * never contains any part of the token. */
const char *auth_verifier_reason(const auth_verifier_t *self);

/* Tests only: pretend the time is now_s (unix seconds); 0 restores the
 * real clock. */
void auth_verifier_set_time(auth_verifier_t *self, int64_t now_s);

/* For handlers: verifies the call's token; on failure answers the call
 * with the error and returns false. out may be NULL. Messages are fixed
 * phrases ("missing access token", "invalid access token", "access token
 * expired"): the reason a token failed is not told to its sender. */
bool auth_require(auth_verifier_t *self, call_t *call, auth_identity_t *out);
/* Same, and the role must be "admin" (else forbidden). */
bool auth_require_admin(auth_verifier_t *self, call_t *call, auth_identity_t *out);

/* Makes the ES256 key pair in keys_dir (jwt.key.pem 0600, jwt.pub.pem)
 * unless it exists; safe when several processes race. 0 or -1 (err). */
int auth_keys_ensure(const char *keys_dir, char *err, size_t errlen);

/* The JWK Set of the public key in public_pem_path, as JSON text
 * ({"keys":[{"kty":"EC","crv":"P-256","x","y","use":"sig","alg":"ES256",
 * "kid"}]}); kid is the RFC 7638 thumbprint. malloc'd, caller frees; NULL
 * on error. */
char *auth_jwks_json(const char *public_pem_path, char *err, size_t errlen);

/* The key id (RFC 7638 thumbprint, as in the JWK Set) of the EC P-256 key
 * in pem[0..len): a private key (PKCS#8 or SEC1) when private_key, else a
 * public key (SubjectPublicKeyInfo). Also how a signer checks its key is
 * usable. 0, or -1 when pem holds no such key. */
int auth_pem_kid(const char *pem, size_t len, bool private_key, char kid[AUTH_KID_LEN + 1]);

#endif

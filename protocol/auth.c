/*  auth.c - access token verification, the verified-token cache, the
 *  ES256 key pair on disk and its JWK Set (see auth.h).
 *
 *  Verification is done here with OpenSSL, not with libjwt's decoder,
 *  because libjwt parses the PEM key again on every call (about 0.6 ms);
 *  a verifier parses its key once and keeps the EVP_PKEY. The steps, each
 *  refusing with ERR_UNAUTHENTICATED, in an order chosen so that an
 *  attacker's token costs as little as possible and reaches the signature
 *  code only when it claims our one algorithm:
 *
 *    1. size (at most AUTH_TOKEN_MAX) and shape: exactly three parts,
 *       each strict base64url (no padding, canonical trailing bits);
 *    2. the header: JSON without duplicate keys, alg exactly "ES256", typ
 *       "JWT" when present, no crit (we understand no extensions). "none"
 *       and HMAC tokens, including HS256 keyed with our public key PEM
 *       (the classic algorithm confusion), stop here;
 *    3. the signature: 64 bytes R||S (JWS form), turned into the DER
 *       ECDSA-Sig-Value that OpenSSL verifies, over "header.payload";
 *    4. the claims: sub, role, iss, aud, jti, iat, exp (AUTH_LEEWAY_S of
 *       clock skew both ways), then expiry last so that token_expired
 *       means "ours, valid, but too old".
 *
 *  The cache maps a keyed BLAKE2b-128 of the token's bytes to the identity
 *  it carries and its exp. It is 2-way set-associative with a fixed number
 *  of slots (bounded memory); a newcomer takes an empty or expired way, or
 *  else the least recently used one. The hash key is random per
 *  verifier, so nobody can craft tokens that land in one set to evict
 *  others. Expiry is checked on every hit; an expired token stays cached
 *  (answered token_expired cheaply) until its slot is reused. Failures
 *  are not cached: only tokens that passed every check get a slot.
 *
 *  The key pair is made once per keys directory; several processes may
 *  race to make it, so each writes a complete private key under a
 *  temporary name and link()s it into place, which succeeds for exactly
 *  one; everyone then derives the public key file from whichever private
 *  key won (identical bytes, written by rename(), so readers never see a
 *  partial file).
 *
 *  Nothing here logs or returns any part of a token or a private key.
 */
#include "protocol/auth.h"
#include "protocol/files.h"

#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/buffer.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/obj_mac.h>
#include <openssl/pem.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define AUTH_CACHE_DEFAULT 4096
#define AUTH_CACHE_MAX (1u << 20)
#define AUTH_CACHE_WAYS 2
#define AUTH_TAG_BYTES 16 /* BLAKE2b-128: collisions are out of reach */
#define AUTH_KEY_RETRY_MS 1000
#define AUTH_PEM_MAX (64 * 1024)
#define AUTH_COORD_BYTES 32 /* one P-256 coordinate, one of R and S */
#define AUTH_SIG_BYTES (2 * AUTH_COORD_BYTES)
#define AUTH_SIG_B64_LEN 86 /* 64 bytes in base64url without padding */
#define AUTH_DER_SIG_MAX 80 /* DER of two 33-byte INTEGERs is at most 72 */
#define AUTH_B64_32_SIZE 44 /* base64url of 32 bytes, with its NUL */
#define AUTH_PUB_FILE "jwt.pub.pem"
#define AUTH_KEY_FILE "jwt.key.pem"

typedef struct {
    uint8_t tag[AUTH_TAG_BYTES];
    bool used;
    uint64_t stamp; /* self->uses when last found or stored: for LRU */
    auth_identity_t identity;
} cache_slot_t;

struct auth_verifier_t {
    char *public_pem_path;
    char *issuer;
    char *audience;
    EVP_PKEY *key;        /* NULL until loaded */
    EVP_MD *sha256;       /* fetched once, not per verify */
    EVP_MD_CTX *md;       /* reused by every verify */
    int64_t key_tried_ms; /* zclock_mono() of the last failed load */
    bool key_tried;       /* a load failed at key_tried_ms */
    bool key_warned;      /* an unusable key file was reported once */
    cache_slot_t *slots;  /* sets * AUTH_CACHE_WAYS */
    size_t sets;          /* a power of two */
    uint8_t tag_key[crypto_generichash_KEYBYTES];
    uint64_t uses; /* cache lookups so far: the LRU clock */
    size_t hits;
    size_t signature_checks;
    int64_t fixed_now; /* tests: 0 means the real clock */
    const char *reason;
};

/* PEM readers must never prompt for a passphrase on a terminal (OpenSSL's
 * default when no callback is given): an encrypted key is just refused. */
static int s_no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf;
    (void)size;
    (void)rwflag;
    (void)u;
    return -1;
}

static void s_set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list args;
    va_start(args, fmt);
    vsnprintf(err, errlen, fmt, args);
    va_end(args);
}

static bool s_is_p256(EVP_PKEY *pkey)
{
    char group[64];
    size_t group_len = 0;
    return EVP_PKEY_is_a(pkey, "EC") &&
           EVP_PKEY_get_group_name(pkey, group, sizeof group, &group_len) == 1 &&
           strcmp(group, SN_X9_62_prime256v1) == 0;
}

/* An EC P-256 key from PEM text, or NULL. */
static EVP_PKEY *s_parse_pem(const char *pem, size_t len, bool private_key)
{
    if (len > AUTH_PEM_MAX)
        return NULL;
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (!bio)
        return NULL;
    EVP_PKEY *pkey = private_key ? PEM_read_bio_PrivateKey(bio, NULL, s_no_passphrase, NULL)
                                 : PEM_read_bio_PUBKEY(bio, NULL, s_no_passphrase, NULL);
    BIO_free(bio);
    if (pkey && !s_is_p256(pkey)) {
        EVP_PKEY_free(pkey);
        pkey = NULL;
    }
    ERR_clear_error(); /* failures leave entries on the thread's queue */
    return pkey;
}

/* The public point's affine coordinates, big-endian, 32 bytes each. */
static int s_point_xy(EVP_PKEY *pkey, uint8_t x[AUTH_COORD_BYTES], uint8_t y[AUTH_COORD_BYTES])
{
    BIGNUM *bx = NULL;
    BIGNUM *by = NULL;
    int rc = -1;
    if (EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_X, &bx) != 1 ||
        EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_EC_PUB_Y, &by) != 1)
        goto cleanup;
    if (BN_bn2binpad(bx, x, AUTH_COORD_BYTES) != AUTH_COORD_BYTES ||
        BN_bn2binpad(by, y, AUTH_COORD_BYTES) != AUTH_COORD_BYTES)
        goto cleanup;
    rc = 0;
cleanup:
    BN_free(bx);
    BN_free(by);
    ERR_clear_error();
    return rc;
}

static void s_b64url(const uint8_t *bin, size_t len, char *out, size_t out_size)
{
    sodium_bin2base64(out, out_size, bin, len, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
}

/* Strict base64url: only the URL-safe alphabet, no padding, no ignored
 * characters, all input consumed, zero trailing bits (libsodium refuses
 * non-canonical encodings). Stricter than RFC 7515 needs, so one token has
 * exactly one spelling. */
static bool s_b64url_decode(const char *in, size_t in_len, uint8_t *out, size_t cap,
                            size_t *out_len)
{
    return sodium_base642bin(out, cap, in, in_len, NULL, out_len, NULL,
                             sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0;
}

/* RFC 7638: SHA-256 of the required members in lexicographic order, no
 * whitespace, then base64url. */
static int s_thumbprint(const uint8_t x[AUTH_COORD_BYTES], const uint8_t y[AUTH_COORD_BYTES],
                        char kid[AUTH_KID_LEN + 1])
{
    char xs[AUTH_B64_32_SIZE];
    char ys[AUTH_B64_32_SIZE];
    s_b64url(x, AUTH_COORD_BYTES, xs, sizeof xs);
    s_b64url(y, AUTH_COORD_BYTES, ys, sizeof ys);
    char canonical[160];
    int n = snprintf(canonical, sizeof canonical,
                     "{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", xs, ys);
    if (n < 0 || (size_t)n >= sizeof canonical)
        return -1;
    uint8_t digest[crypto_hash_sha256_BYTES];
    if (crypto_hash_sha256(digest, (const uint8_t *)canonical, (size_t)n) != 0)
        return -1;
    s_b64url(digest, sizeof digest, kid, AUTH_KID_LEN + 1);
    return 0;
}

int auth_pem_kid(const char *pem, size_t len, bool private_key, char kid[AUTH_KID_LEN + 1])
{
    EVP_PKEY *pkey = s_parse_pem(pem, len, private_key);
    if (!pkey)
        return -1;
    uint8_t x[AUTH_COORD_BYTES];
    uint8_t y[AUTH_COORD_BYTES];
    int rc = s_point_xy(pkey, x, y) == 0 ? s_thumbprint(x, y, kid) : -1;
    EVP_PKEY_free(pkey);
    return rc;
}

/* ---------------------------------------------------------------------
 * The verifier
 */

auth_verifier_t *auth_verifier_new(const char *public_pem_path, const char *issuer,
                                   const char *audience, size_t cache_entries)
{
    if (!public_pem_path || !issuer || !audience || sodium_init() < 0)
        return NULL;
    /* Whole sets of two, a power of two of them, so a set is picked with a
     * mask; out-of-range sizes are clamped rather than refused. */
    size_t entries = cache_entries ? cache_entries : AUTH_CACHE_DEFAULT;
    if (entries > AUTH_CACHE_MAX)
        entries = AUTH_CACHE_MAX;
    size_t sets = 1;
    while (sets * AUTH_CACHE_WAYS < entries)
        sets *= 2;

    auth_verifier_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->public_pem_path = strdup(public_pem_path);
    self->issuer = strdup(issuer);
    self->audience = strdup(audience);
    self->slots = calloc(sets * AUTH_CACHE_WAYS, sizeof *self->slots);
    self->sets = sets;
    self->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    self->md = EVP_MD_CTX_new();
    self->reason = "";
    randombytes_buf(self->tag_key, sizeof self->tag_key);
    if (!self->public_pem_path || !self->issuer || !self->audience || !self->slots ||
        !self->sha256 || !self->md)
        auth_verifier_destroy(&self);
    return self;
}

void auth_verifier_destroy(auth_verifier_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    auth_verifier_t *self = *self_p;
    EVP_PKEY_free(self->key);
    EVP_MD_free(self->sha256);
    EVP_MD_CTX_free(self->md);
    if (self->slots)
        sodium_memzero(self->slots, self->sets * AUTH_CACHE_WAYS * sizeof *self->slots);
    free(self->slots);
    free(self->public_pem_path);
    free(self->issuer);
    free(self->audience);
    sodium_memzero(self->tag_key, sizeof self->tag_key);
    free(self);
    *self_p = NULL;
}

size_t auth_verifier_hits(const auth_verifier_t *self)
{
    return self->hits;
}

size_t auth_verifier_signature_checks(const auth_verifier_t *self)
{
    return self->signature_checks;
}

const char *auth_verifier_reason(const auth_verifier_t *self)
{
    return self->reason;
}

void auth_verifier_set_time(auth_verifier_t *self, int64_t now_s)
{
    self->fixed_now = now_s;
}

static int64_t s_now(const auth_verifier_t *self)
{
    return self->fixed_now ? self->fixed_now : (int64_t)time(NULL);
}

/* An expired token is refused from AUTH_LEEWAY_S after its exp (written
 * so that no sum can overflow, whatever exp a token claims). */
static bool s_expired(int64_t exp, int64_t now)
{
    return exp <= now - AUTH_LEEWAY_S;
}

/* The public key, loading it on first use. While the file is missing (the
 * users service makes it, and may start later) a load is tried at most
 * once per AUTH_KEY_RETRY_MS, so a flood of tokens cannot turn into a
 * flood of file reads. Once loaded, the key is kept for good. */
static EVP_PKEY *s_key(auth_verifier_t *self)
{
    if (self->key)
        return self->key;
    int64_t now_ms = zclock_mono();
    if (self->key_tried && now_ms - self->key_tried_ms < AUTH_KEY_RETRY_MS)
        return NULL;
    size_t len = 0;
    char *pem = files_read(self->public_pem_path, AUTH_PEM_MAX, &len);
    if (pem) {
        self->key = s_parse_pem(pem, len, false);
        free(pem);
        if (!self->key && !self->key_warned) {
            zsys_warning("auth: %s is not an EC P-256 public key", self->public_pem_path);
            self->key_warned = true;
        }
    } else if (errno != ENOENT && !self->key_warned) {
        zsys_warning("auth: cannot read %s: %s", self->public_pem_path, strerror(errno));
        self->key_warned = true;
    }
    self->key_tried = !self->key;
    self->key_tried_ms = now_ms;
    return self->key;
}

static cache_slot_t *s_cache_set(auth_verifier_t *self, const uint8_t tag[AUTH_TAG_BYTES])
{
    uint64_t index;
    memcpy(&index, tag, sizeof index);
    return &self->slots[(index & (self->sets - 1)) * AUTH_CACHE_WAYS];
}

static cache_slot_t *s_cache_find(auth_verifier_t *self, const uint8_t tag[AUTH_TAG_BYTES])
{
    cache_slot_t *set = s_cache_set(self, tag);
    self->uses++;
    for (int way = 0; way < AUTH_CACHE_WAYS; way++)
        if (set[way].used && sodium_memcmp(set[way].tag, tag, AUTH_TAG_BYTES) == 0) {
            set[way].stamp = self->uses;
            return &set[way];
        }
    return NULL;
}

static void s_cache_put(auth_verifier_t *self, const uint8_t tag[AUTH_TAG_BYTES],
                        const auth_identity_t *identity, int64_t now)
{
    cache_slot_t *set = s_cache_set(self, tag);
    cache_slot_t *victim = &set[0];
    for (int way = 0; way < AUTH_CACHE_WAYS; way++) {
        cache_slot_t *slot = &set[way];
        if (!slot->used || s_expired(slot->identity.exp, now)) {
            victim = slot;
            break;
        }
        if (slot->stamp < victim->stamp)
            victim = slot;
    }
    memcpy(victim->tag, tag, AUTH_TAG_BYTES);
    victim->stamp = self->uses;
    victim->identity = *identity;
    victim->used = true;
}

/* True when o is a JSON string equal to s (lengths compared too, so a
 * string with an embedded NUL never matches). */
static bool s_json_str_eq(const json_t *o, const char *s)
{
    if (!json_is_string(o))
        return false;
    size_t len = json_string_length(o);
    return len == strlen(s) && memcmp(json_string_value(o), s, len) == 0;
}

static bool s_audience_ok(const json_t *aud, const char *audience)
{
    if (json_is_string(aud))
        return s_json_str_eq(aud, audience);
    if (!json_is_array(aud))
        return false;
    for (size_t i = 0; i < json_array_size(aud); i++)
        if (s_json_str_eq(json_array_get(aud, i), audience))
            return true;
    return false;
}

static err_code_t s_refuse(auth_verifier_t *self, const char *reason)
{
    self->reason = reason;
    return ERR_UNAUTHENTICATED;
}

/* Step 2: the protected header. */
static err_code_t s_check_header(auth_verifier_t *self, const uint8_t *json, size_t len)
{
    json_error_t jerr;
    json_t *header = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &jerr);
    err_code_t code = ERR_NONE;
    if (!json_is_object(header))
        code = s_refuse(self, "header is not a valid JSON object");
    else if (!s_json_str_eq(json_object_get(header, "alg"), "ES256"))
        code = s_refuse(self, "algorithm is not ES256");
    else if (json_object_get(header, "typ") &&
             !s_json_str_eq(json_object_get(header, "typ"), "JWT"))
        code = s_refuse(self, "typ is not JWT");
    else if (json_object_get(header, "crit"))
        code = s_refuse(self, "critical header extensions are not supported");
    json_decref(header);
    return code;
}

/* Step 3: sig is R||S; OpenSSL wants the DER ECDSA-Sig-Value. */
static bool s_signature_ok(auth_verifier_t *self, EVP_PKEY *key, const char *signed_part,
                           size_t signed_len, const uint8_t sig[AUTH_SIG_BYTES])
{
    bool ok = false;
    ECDSA_SIG *ecdsa = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, AUTH_COORD_BYTES, NULL);
    BIGNUM *s = BN_bin2bn(sig + AUTH_COORD_BYTES, AUTH_COORD_BYTES, NULL);
    if (!ecdsa || !r || !s || ECDSA_SIG_set0(ecdsa, r, s) != 1)
        goto cleanup;
    r = s = NULL; /* owned by ecdsa now */
    uint8_t der[AUTH_DER_SIG_MAX];
    int der_len = i2d_ECDSA_SIG(ecdsa, NULL);
    if (der_len <= 0 || der_len > (int)sizeof der)
        goto cleanup;
    uint8_t *cursor = der;
    if (i2d_ECDSA_SIG(ecdsa, &cursor) != der_len)
        goto cleanup;
    if (EVP_MD_CTX_reset(self->md) != 1 ||
        EVP_DigestVerifyInit(self->md, NULL, self->sha256, NULL, key) != 1)
        goto cleanup;
    self->signature_checks++;
    /* OpenSSL rejects R or S outside [1, n-1] itself. */
    ok = EVP_DigestVerify(self->md, der, (size_t)der_len, (const uint8_t *)signed_part,
                          signed_len) == 1;
cleanup:
    ECDSA_SIG_free(ecdsa);
    BN_free(r);
    BN_free(s);
    ERR_clear_error();
    return ok;
}

/* Step 4: the claims; fills *identity. Expiry is left to the caller, which
 * caches the identity first (see auth_verify). */
static err_code_t s_check_claims(auth_verifier_t *self, const uint8_t *json, size_t len,
                                 int64_t now, auth_identity_t *identity)
{
    json_error_t jerr;
    json_t *claims = json_loadb((const char *)json, len, JSON_REJECT_DUPLICATES, &jerr);
    err_code_t code = ERR_NONE;
    if (!json_is_object(claims)) {
        code = s_refuse(self, "payload is not a valid JSON object");
        goto cleanup;
    }
    const json_t *sub = json_object_get(claims, "sub");
    const json_t *role = json_object_get(claims, "role");
    const json_t *jti = json_object_get(claims, "jti");
    const json_t *exp = json_object_get(claims, "exp");
    const json_t *iat = json_object_get(claims, "iat");
    const json_t *nbf = json_object_get(claims, "nbf");
    if (!json_is_string(sub) || json_string_length(sub) == 0 ||
        json_string_length(sub) > AUTH_SUB_MAX ||
        strlen(json_string_value(sub)) != json_string_length(sub))
        code = s_refuse(self, "sub missing or invalid");
    else if (!s_json_str_eq(role, "customer") && !s_json_str_eq(role, "admin"))
        code = s_refuse(self, "role missing or unknown");
    else if (!s_json_str_eq(json_object_get(claims, "iss"), self->issuer))
        code = s_refuse(self, "wrong issuer");
    else if (!s_audience_ok(json_object_get(claims, "aud"), self->audience))
        code = s_refuse(self, "wrong audience");
    else if (!json_is_string(jti) || json_string_length(jti) == 0)
        code = s_refuse(self, "jti missing");
    else if (!json_is_integer(exp))
        code = s_refuse(self, "exp missing or not an integer");
    else if (!json_is_integer(iat))
        code = s_refuse(self, "iat missing or not an integer");
    else if (json_integer_value(iat) > now + AUTH_LEEWAY_S)
        code = s_refuse(self, "issued in the future");
    else if (nbf && (!json_is_integer(nbf) || json_integer_value(nbf) > now + AUTH_LEEWAY_S))
        code = s_refuse(self, "not valid yet");
    if (code != ERR_NONE)
        goto cleanup;

    memset(identity, 0, sizeof *identity);
    memcpy(identity->sub, json_string_value(sub), json_string_length(sub));
    snprintf(identity->role, sizeof identity->role, "%s", json_string_value(role));
    identity->exp = json_integer_value(exp);
cleanup:
    json_decref(claims);
    return code;
}

err_code_t auth_verify(auth_verifier_t *self, const char *token, size_t len, auth_identity_t *out)
{
    self->reason = "";
    if (!token || len == 0)
        return s_refuse(self, "no token");
    if (len > AUTH_TOKEN_MAX)
        return s_refuse(self, "token too long");
    int64_t now = s_now(self);

    uint8_t tag[AUTH_TAG_BYTES];
    if (crypto_generichash(tag, sizeof tag, (const uint8_t *)token, len, self->tag_key,
                           sizeof self->tag_key) != 0)
        return s_refuse(self, "cannot hash the token");
    cache_slot_t *hit = s_cache_find(self, tag);
    if (hit) {
        self->hits++;
        if (s_expired(hit->identity.exp, now)) {
            self->reason = "expired";
            return ERR_TOKEN_EXPIRED;
        }
        *out = hit->identity;
        return ERR_NONE;
    }

    /* Step 1: three parts, split at the only two dots. */
    const char *end = token + len;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        return s_refuse(self, "not three parts");
    /* Decoded parts are shorter than the token, itself bounded. */
    uint8_t buf[AUTH_TOKEN_MAX];
    size_t buf_len = 0;
    if (!s_b64url_decode(token, (size_t)(dot1 - token), buf, sizeof buf, &buf_len))
        return s_refuse(self, "header is not base64url");
    err_code_t code = s_check_header(self, buf, buf_len);
    if (code != ERR_NONE)
        return code;

    uint8_t sig[AUTH_SIG_BYTES];
    size_t sig_len = 0;
    if ((size_t)(end - dot2 - 1) != AUTH_SIG_B64_LEN ||
        !s_b64url_decode(dot2 + 1, AUTH_SIG_B64_LEN, sig, sizeof sig, &sig_len) ||
        sig_len != AUTH_SIG_BYTES)
        return s_refuse(self, "signature is not 64 bytes of base64url");
    EVP_PKEY *key = s_key(self);
    if (!key)
        return s_refuse(self, "no verification key");
    if (!s_signature_ok(self, key, token, (size_t)(dot2 - token), sig))
        return s_refuse(self, "bad signature");

    if (!s_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), buf, sizeof buf, &buf_len))
        return s_refuse(self, "payload is not base64url");
    auth_identity_t identity;
    code = s_check_claims(self, buf, buf_len, now, &identity);
    if (code != ERR_NONE)
        return code;
    /* Cached even when expired: a client retrying with a stale token is
     * then answered from the cache, and such slots are the first reused. */
    s_cache_put(self, tag, &identity, now);
    if (s_expired(identity.exp, now)) {
        self->reason = "expired";
        return ERR_TOKEN_EXPIRED;
    }
    *out = identity;
    return ERR_NONE;
}

bool auth_require(auth_verifier_t *self, call_t *call, auth_identity_t *out)
{
    const envelope_request_t *request = call_request(call);
    if (!request || !request->token || request->token_len == 0) {
        call_fail(call, ERR_UNAUTHENTICATED, "missing access token");
        return false;
    }
    auth_identity_t identity;
    err_code_t code = auth_verify(self, request->token, request->token_len, &identity);
    if (code == ERR_TOKEN_EXPIRED) {
        call_fail(call, ERR_TOKEN_EXPIRED, "access token expired");
        return false;
    }
    if (code != ERR_NONE) {
        /* The reason stays out of the reply: it would tell a forger which
         * check stopped the token. */
        call_fail(call, ERR_UNAUTHENTICATED, "invalid access token");
        return false;
    }
    if (out)
        *out = identity;
    return true;
}

bool auth_require_admin(auth_verifier_t *self, call_t *call, auth_identity_t *out)
{
    auth_identity_t identity;
    if (!auth_require(self, call, &identity))
        return false;
    if (strcmp(identity.role, "admin") != 0) {
        call_fail(call, ERR_FORBIDDEN, "this operation needs the admin role");
        return false;
    }
    if (out)
        *out = identity;
    return true;
}

/* ---------------------------------------------------------------------
 * Keys on disk
 */

/* Writes data to a new file "DIR/.NAME.XXXXXX" with the given mode and
 * flushes it to disk; *tmp_path receives its name (caller frees). */
static int s_write_temp(const char *dir, const char *name, const void *data, size_t len,
                        mode_t mode, char **tmp_path)
{
    char *path = zsys_sprintf("%s/.%s.XXXXXX", dir, name);
    if (!path)
        return -1;
    int fd = mkstemp(path); /* mode 0600 from the start */
    if (fd < 0) {
        zstr_free(&path);
        return -1;
    }
    const uint8_t *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        p += n;
        left -= (size_t)n;
    }
    int saved = errno;
    bool ok = left == 0 && fchmod(fd, mode) == 0 && fsync(fd) == 0;
    if (!ok)
        saved = errno;
    if (close(fd) != 0 && ok) {
        saved = errno;
        ok = false;
    }
    if (!ok) {
        if (unlink(path) != 0)
            zsys_warning("auth: cannot remove %s: %s", path, strerror(errno));
        zstr_free(&path);
        errno = saved;
        return -1;
    }
    *tmp_path = path;
    return 0;
}

static void s_unlink_temp(char **tmp_path)
{
    if (*tmp_path && unlink(*tmp_path) != 0 && errno != ENOENT)
        zsys_warning("auth: cannot remove %s: %s", *tmp_path, strerror(errno));
    zstr_free(tmp_path);
}

/* Makes a private key and links it into place at key_path, unless another
 * process got there first (not an error: its key is the one). */
static int s_make_private(const char *dir, const char *key_path, char *err, size_t errlen)
{
    int rc = -1;
    char *tmp = NULL;
    BIO *bio = NULL;
    EVP_PKEY *pkey = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    if (!pkey) {
        s_set_err(err, errlen, "cannot generate an EC P-256 key");
        goto cleanup;
    }
    /* A secure-memory BIO clears the PEM text when freed. */
    bio = BIO_new(BIO_s_secmem());
    BUF_MEM *mem = NULL;
    if (!bio || PEM_write_bio_PrivateKey(bio, pkey, NULL, NULL, 0, NULL, NULL) != 1 ||
        BIO_get_mem_ptr(bio, &mem) != 1 || !mem) {
        s_set_err(err, errlen, "cannot encode the private key");
        goto cleanup;
    }
    if (s_write_temp(dir, AUTH_KEY_FILE, mem->data, mem->length, 0600, &tmp) != 0) {
        s_set_err(err, errlen, "cannot write a key file in %s: %s", dir, strerror(errno));
        goto cleanup;
    }
    if (link(tmp, key_path) != 0 && errno != EEXIST) {
        s_set_err(err, errlen, "cannot create %s: %s", key_path, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    s_unlink_temp(&tmp);
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    ERR_clear_error();
    return rc;
}

/* Makes pub_path hold exactly pem (the public half of the private key on
 * disk): left alone when it already does, else replaced whole. */
static int s_write_public(const char *dir, const char *pub_path, const char *pem, size_t len,
                          char *err, size_t errlen)
{
    size_t old_len = 0;
    char *old = files_read(pub_path, AUTH_PEM_MAX, &old_len);
    if (!old && errno != ENOENT && errno != EFBIG) {
        s_set_err(err, errlen, "cannot read %s: %s", pub_path, strerror(errno));
        return -1;
    }
    bool same = old && old_len == len && memcmp(old, pem, len) == 0;
    free(old);
    if (same)
        return 0;
    if (old)
        zsys_warning("auth: %s did not match %s; rewritten", pub_path, AUTH_KEY_FILE);
    char *tmp = NULL;
    if (s_write_temp(dir, AUTH_PUB_FILE, pem, len, 0644, &tmp) != 0) {
        s_set_err(err, errlen, "cannot write a key file in %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    if (rename(tmp, pub_path) != 0) {
        s_set_err(err, errlen, "cannot create %s: %s", pub_path, strerror(errno));
        rc = -1;
    }
    s_unlink_temp(&tmp);
    return rc;
}

int auth_keys_ensure(const char *keys_dir, char *err, size_t errlen)
{
    int rc = -1;
    char *key_path = NULL;
    char *pub_path = NULL;
    char *pem = NULL;
    size_t pem_len = 0;
    EVP_PKEY *pkey = NULL;
    BIO *bio = NULL;
    if (!keys_dir || files_dir_create(keys_dir) != 0) {
        s_set_err(err, errlen, "cannot create %s", keys_dir ? keys_dir : "(null)");
        goto cleanup;
    }
    /* Like keys.c: the directory holds private keys. Someone else's
     * directory we cannot tighten still works; say so. */
    if (chmod(keys_dir, 0700) != 0)
        zsys_warning("auth: cannot make %s private: %s", keys_dir, strerror(errno));
    key_path = zsys_sprintf("%s/%s", keys_dir, AUTH_KEY_FILE);
    pub_path = zsys_sprintf("%s/%s", keys_dir, AUTH_PUB_FILE);
    if (!key_path || !pub_path) {
        s_set_err(err, errlen, "out of memory");
        goto cleanup;
    }
    struct stat st;
    if (stat(key_path, &st) != 0) {
        if (errno != ENOENT) {
            s_set_err(err, errlen, "cannot read %s: %s", key_path, strerror(errno));
            goto cleanup;
        }
        if (s_make_private(keys_dir, key_path, err, errlen) != 0)
            goto cleanup;
        if (stat(key_path, &st) != 0) {
            s_set_err(err, errlen, "cannot read %s: %s", key_path, strerror(errno));
            goto cleanup;
        }
    }
    /* A private key that others can read is made private, not refused:
     * refusing would stop the service and fix nothing. */
    if ((st.st_mode & 077) != 0) {
        zsys_warning("auth: %s was readable by others; now 0600", key_path);
        if (chmod(key_path, 0600) != 0) {
            s_set_err(err, errlen, "cannot make %s private: %s", key_path, strerror(errno));
            goto cleanup;
        }
    }

    /* Whoever made it, the private key on disk is the one: load it and
     * derive the public file from it. */
    pem = files_read(key_path, AUTH_PEM_MAX, &pem_len);
    if (!pem) {
        s_set_err(err, errlen, "cannot read %s: %s", key_path, strerror(errno));
        goto cleanup;
    }
    pkey = s_parse_pem(pem, pem_len, true);
    if (!pkey) {
        s_set_err(err, errlen, "%s is not an EC P-256 private key", key_path);
        goto cleanup;
    }
    bio = BIO_new(BIO_s_mem());
    BUF_MEM *mem = NULL;
    if (!bio || PEM_write_bio_PUBKEY(bio, pkey) != 1 || BIO_get_mem_ptr(bio, &mem) != 1 || !mem) {
        s_set_err(err, errlen, "cannot encode the public key");
        goto cleanup;
    }
    if (s_write_public(keys_dir, pub_path, mem->data, mem->length, err, errlen) != 0)
        goto cleanup;
    rc = 0;
cleanup:
    if (pem) {
        sodium_memzero(pem, pem_len);
        free(pem);
    }
    BIO_free(bio);
    EVP_PKEY_free(pkey);
    zstr_free(&key_path);
    zstr_free(&pub_path);
    ERR_clear_error();
    return rc;
}

char *auth_jwks_json(const char *public_pem_path, char *err, size_t errlen)
{
    char *text = NULL;
    json_t *jwks = NULL;
    EVP_PKEY *pkey = NULL;
    size_t len = 0;
    char *pem = files_read(public_pem_path, AUTH_PEM_MAX, &len);
    if (!pem) {
        s_set_err(err, errlen, "cannot read %s: %s", public_pem_path, strerror(errno));
        goto cleanup;
    }
    pkey = s_parse_pem(pem, len, false);
    uint8_t x[AUTH_COORD_BYTES];
    uint8_t y[AUTH_COORD_BYTES];
    char kid[AUTH_KID_LEN + 1];
    if (!pkey || s_point_xy(pkey, x, y) != 0 || s_thumbprint(x, y, kid) != 0) {
        s_set_err(err, errlen, "%s is not an EC P-256 public key", public_pem_path);
        goto cleanup;
    }
    char xs[AUTH_B64_32_SIZE];
    char ys[AUTH_B64_32_SIZE];
    s_b64url(x, sizeof x, xs, sizeof xs);
    s_b64url(y, sizeof y, ys, sizeof ys);
    jwks = json_pack("{s:[{s:s, s:s, s:s, s:s, s:s, s:s, s:s}]}", "keys", "kty", "EC", "crv",
                     "P-256", "x", xs, "y", ys, "use", "sig", "alg", "ES256", "kid", kid);
    text = jwks ? json_dumps(jwks, JSON_COMPACT) : NULL;
    if (!text)
        s_set_err(err, errlen, "out of memory");
cleanup:
    json_decref(jwks);
    EVP_PKEY_free(pkey);
    free(pem);
    return text;
}

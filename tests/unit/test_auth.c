/*  test_auth.c - access tokens: keys, signing, verification, the cache
 *  (protocol/auth.h, actors/users/tokens.h).
 *
 *  Every service trusts auth_verify() to say who is calling, so most of
 *  these tests are attacks: tokens that must be refused, each for the
 *  reason it should be refused for (auth_verifier_reason), and the
 *  algorithm-confusion ones ("none", HS256 keyed with our public key)
 *  before any signature work (auth_verifier_signature_checks). Tokens with
 *  arbitrary headers and claims are signed here with OpenSSL directly, so
 *  the verifier is checked against an ES256 implementation other than the
 *  libjwt one that makes real tokens; the JWKS thumbprint is likewise
 *  recomputed here from the PEM file with OpenSSL's own SHA-256.
 *
 *  The key files are what the users service and every verifier share, so
 *  they get the same treatment as CurveZMQ keys in test_keys.c: modes,
 *  idempotence, repair of a missing or stale public file, and forked
 *  processes racing to create them.
 */
#include "actors/users/tokens.h"
#include "protocol/auth.h"
#include "protocol/call.h"
#include "protocol/envelope.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <dirent.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/sha.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define B64 sodium_base64_VARIANT_URLSAFE_NO_PADDING

typedef struct {
    char *root; /* the temporary directory */
    char *keys; /* root/keys, with the key pair */
    char *key_path;
    char *pub_path;
    token_signer_t *signer; /* AUTH_ISSUER, AUTH_AUDIENCE, default ttl */
    auth_verifier_t *verifier;
    EVP_PKEY *private_key; /* the same key, for tokens made by hand */
} fx_t;

static char *s_slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *text = calloc(1, 65536);
    size_t n = fread(text, 1, 65535, f);
    fclose(f);
    if (len)
        *len = n;
    return text;
}

static EVP_PKEY *s_load_private(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    EVP_PKEY *pkey = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(pkey);
    return pkey;
}

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    f->root = tu_tempdir("test-auth");
    f->keys = zsys_sprintf("%s/keys", f->root);
    f->key_path = zsys_sprintf("%s/jwt.key.pem", f->keys);
    f->pub_path = zsys_sprintf("%s/jwt.pub.pem", f->keys);
    char err[256] = "";
    if (auth_keys_ensure(f->keys, err, sizeof err) != 0)
        fail_msg("auth_keys_ensure: %s", err);
    f->signer = token_signer_new(f->key_path, AUTH_ISSUER, AUTH_AUDIENCE, 0, err, sizeof err);
    if (!f->signer)
        fail_msg("token_signer_new: %s", err);
    f->verifier = auth_verifier_new(f->pub_path, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    assert_non_null(f->verifier);
    f->private_key = s_load_private(f->key_path);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    EVP_PKEY_free(f->private_key);
    auth_verifier_destroy(&f->verifier);
    assert_null(f->verifier);
    auth_verifier_destroy(&f->verifier); /* harmless twice */
    token_signer_destroy(&f->signer);
    assert_null(f->signer);
    token_signer_destroy(&f->signer);
    tu_rmtree(f->root);
    zstr_free(&f->root);
    zstr_free(&f->keys);
    zstr_free(&f->key_path);
    zstr_free(&f->pub_path);
    free(f);
    return 0;
}

static int64_t s_now(void)
{
    return (int64_t)time(NULL);
}

/* base64url without padding, malloc'd. */
static char *s_b64(const void *bin, size_t len)
{
    size_t size = sodium_base64_ENCODED_LEN(len, B64);
    char *out = malloc(size);
    sodium_bin2base64(out, size, bin, len, B64);
    return out;
}

/* Decodes base64url into a malloc'd NUL-terminated buffer. */
static char *s_unb64(const char *in, size_t in_len, size_t *out_len)
{
    char *out = calloc(1, in_len + 1);
    size_t n = 0;
    if (sodium_base642bin((unsigned char *)out, in_len, in, in_len, NULL, &n, NULL, B64) != 0)
        fail_msg("test helper: not base64url");
    if (out_len)
        *out_len = n;
    return out;
}

/* The three parts of a token. */
typedef struct {
    char *header; /* decoded JSON */
    char *payload;
    char *b64_header;
    char *b64_payload;
    char *b64_sig;
} parts_t;

static void s_split(const char *token, parts_t *p)
{
    const char *d1 = strchr(token, '.');
    assert_non_null(d1);
    const char *d2 = strchr(d1 + 1, '.');
    assert_non_null(d2);
    assert_null(strchr(d2 + 1, '.'));
    p->b64_header = strndup(token, (size_t)(d1 - token));
    p->b64_payload = strndup(d1 + 1, (size_t)(d2 - d1 - 1));
    p->b64_sig = strdup(d2 + 1);
    p->header = s_unb64(p->b64_header, strlen(p->b64_header), NULL);
    p->payload = s_unb64(p->b64_payload, strlen(p->b64_payload), NULL);
}

static void s_parts_free(parts_t *p)
{
    free(p->header);
    free(p->payload);
    free(p->b64_header);
    free(p->b64_payload);
    free(p->b64_sig);
}

/* A token with these header and payload texts, signed ES256 with key by
 * OpenSSL (DER signature turned into R||S here, independently of the
 * verifier's conversion the other way). malloc'd. */
static char *s_sign_raw(EVP_PKEY *key, const char *header, const char *payload)
{
    char *h = s_b64(header, strlen(header));
    char *p = s_b64(payload, strlen(payload));
    char *signing_input = zsys_sprintf("%s.%s", h, p);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    assert_non_null(md);
    assert_int_equal(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key), 1);
    uint8_t der[128];
    size_t der_len = sizeof der;
    assert_int_equal(
        EVP_DigestSign(md, der, &der_len, (const uint8_t *)signing_input, strlen(signing_input)),
        1);
    EVP_MD_CTX_free(md);
    const uint8_t *cursor = der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &cursor, (long)der_len);
    assert_non_null(sig);
    uint8_t raw[64];
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_r(sig), raw, 32), 32);
    assert_int_equal(BN_bn2binpad(ECDSA_SIG_get0_s(sig), raw + 32, 32), 32);
    ECDSA_SIG_free(sig);
    char *s = s_b64(raw, sizeof raw);
    char *token = zsys_sprintf("%s.%s", signing_input, s);
    free(h);
    free(p);
    free(s);
    zstr_free(&signing_input);
    return token;
}

/* Claims like the users service's, with iat and exp around now. */
static char *s_claims(const char *role, int64_t exp)
{
    return zsys_sprintf("{\"sub\":\"u-123\",\"role\":\"%s\",\"iss\":\"%s\",\"aud\":\"%s\","
                        "\"jti\":\"j1\",\"iat\":%lld,\"exp\":%lld}",
                        role, AUTH_ISSUER, AUTH_AUDIENCE, (long long)s_now(), (long long)exp);
}

static const char *HEADER = "{\"alg\":\"ES256\",\"typ\":\"JWT\"}";

/* Asserts token (as text) is refused with code, for a reason containing
 * why (when not NULL). */
static void s_refused(fx_t *f, const char *token, size_t len, err_code_t code, const char *why)
{
    auth_identity_t id;
    memset(&id, 0x5a, sizeof id);
    err_code_t got = auth_verify(f->verifier, token, len, &id);
    if (got != code)
        fail_msg("got %s (%s), expected %s", err_code_name(got), auth_verifier_reason(f->verifier),
                 err_code_name(code));
    if (why && !strstr(auth_verifier_reason(f->verifier), why))
        fail_msg("refused because \"%s\", expected \"%s\"", auth_verifier_reason(f->verifier), why);
}

static void s_refused_str(fx_t *f, const char *token, const char *why)
{
    s_refused(f, token, strlen(token), ERR_UNAUTHENTICATED, why);
}

static void s_accepted(fx_t *f, const char *token, auth_identity_t *id)
{
    err_code_t got = auth_verify(f->verifier, token, strlen(token), id);
    if (got != ERR_NONE)
        fail_msg("refused: %s (%s)", err_code_name(got), auth_verifier_reason(f->verifier));
    assert_string_equal(auth_verifier_reason(f->verifier), "");
}

static char *s_sign(fx_t *f, const char *sub, const char *role)
{
    char *token = NULL;
    int expires_in = 0;
    assert_int_equal(token_sign(f->signer, sub, role, &token, &expires_in), 0);
    assert_non_null(token);
    assert_int_equal(expires_in, 900);
    return token;
}

static int s_mode(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (int)(st.st_mode & 07777) : -1;
}

/* How many entries of dir start with prefix. */
static int s_count(const char *dir, const char *prefix)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    closedir(d);
    return n;
}

static void s_kid_of_file(const char *path, bool private_key, char kid[AUTH_KID_LEN + 1])
{
    size_t len = 0;
    char *pem = s_slurp(path, &len);
    assert_non_null(pem);
    assert_int_equal(auth_pem_kid(pem, len, private_key, kid), 0);
    assert_int_equal(strlen(kid), AUTH_KID_LEN);
    free(pem);
}

/* ---------------------------------------------------------------------
 * Keys
 */

static void test_keys_ensure(void **state)
{
    fx_t *f = *state;
    /* s_setup made the pair. */
    assert_int_equal(s_mode(f->keys), 0700);
    assert_int_equal(s_mode(f->key_path), 0600);
    assert_true(s_mode(f->pub_path) >= 0);
    assert_int_equal(s_mode(f->pub_path) & 0022, 0);
    assert_int_equal(s_count(f->keys, "."), 2); /* no temporary files */
    size_t key_len = 0, pub_len = 0;
    char *key_pem = s_slurp(f->key_path, &key_len);
    char *pub_pem = s_slurp(f->pub_path, &pub_len);
    assert_non_null(key_pem);
    assert_non_null(pub_pem);
    /* PKCS#8 and SubjectPublicKeyInfo. */
    assert_int_equal(strncmp(key_pem, "-----BEGIN PRIVATE KEY-----\n", 28), 0);
    assert_int_equal(strncmp(pub_pem, "-----BEGIN PUBLIC KEY-----\n", 27), 0);
    assert_null(strstr(pub_pem, "PRIVATE"));
    /* The two halves belong together. */
    char kid_key[AUTH_KID_LEN + 1], kid_pub[AUTH_KID_LEN + 1];
    s_kid_of_file(f->key_path, true, kid_key);
    s_kid_of_file(f->pub_path, false, kid_pub);
    assert_string_equal(kid_key, kid_pub);
    /* Each reader refuses the other kind of file. */
    assert_int_equal(auth_pem_kid(key_pem, key_len, false, kid_pub), -1);
    assert_int_equal(auth_pem_kid(pub_pem, pub_len, true, kid_pub), -1);
    assert_int_equal(auth_pem_kid("garbage", 7, false, kid_pub), -1);

    /* A second call keeps the pair, byte for byte. */
    char err[256] = "";
    assert_int_equal(auth_keys_ensure(f->keys, err, sizeof err), 0);
    char *key_again = s_slurp(f->key_path, NULL);
    char *pub_again = s_slurp(f->pub_path, NULL);
    assert_string_equal(key_again, key_pem);
    assert_string_equal(pub_again, pub_pem);
    free(key_again);
    free(pub_again);

    /* A lost public file comes back from the private key, identical. */
    assert_int_equal(unlink(f->pub_path), 0);
    assert_int_equal(auth_keys_ensure(f->keys, err, sizeof err), 0);
    pub_again = s_slurp(f->pub_path, NULL);
    assert_string_equal(pub_again, pub_pem);
    free(pub_again);

    /* A stale public file (another key's) is replaced: tokens are signed
     * with the private key, so its public half is the one to publish. */
    char *other = zsys_sprintf("%s/other", f->root);
    assert_int_equal(auth_keys_ensure(other, err, sizeof err), 0);
    char *other_pub = zsys_sprintf("%s/jwt.pub.pem", other);
    assert_int_equal(rename(other_pub, f->pub_path), 0);
    assert_int_equal(auth_keys_ensure(f->keys, err, sizeof err), 0);
    pub_again = s_slurp(f->pub_path, NULL);
    assert_string_equal(pub_again, pub_pem);
    free(pub_again);

    /* A private key left readable by others is made private. */
    assert_int_equal(chmod(f->key_path, 0644), 0);
    assert_int_equal(auth_keys_ensure(f->keys, err, sizeof err), 0);
    assert_int_equal(s_mode(f->key_path), 0600);
    assert_int_equal(s_count(f->keys, "."), 2);

    /* Errors: a directory that cannot be made; a private key file that is
     * not a key. Messages name the file, never its contents. */
    char *plain = zsys_sprintf("%s/plain-file", f->root);
    FILE *fp = fopen(plain, "w");
    assert_non_null(fp);
    fclose(fp);
    err[0] = '\0';
    assert_int_equal(auth_keys_ensure(plain, err, sizeof err), -1);
    assert_true(strlen(err) > 0);
    char *bad = zsys_sprintf("%s/bad", f->root);
    assert_int_equal(zsys_dir_create("%s", bad), 0);
    char *bad_key = zsys_sprintf("%s/jwt.key.pem", bad);
    fp = fopen(bad_key, "w");
    assert_non_null(fp);
    fputs("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n", fp);
    fclose(fp);
    err[0] = '\0';
    assert_int_equal(auth_keys_ensure(bad, err, sizeof err), -1);
    assert_non_null(strstr(err, "jwt.key.pem"));
    assert_null(strstr(err, "not a key"));

    zstr_free(&bad_key);
    zstr_free(&bad);
    zstr_free(&plain);
    zstr_free(&other_pub);
    zstr_free(&other);
    free(key_pem);
    free(pub_pem);
}

#define RACERS 4

static void test_keys_concurrent(void **state)
{
    fx_t *f = *state;
    /* Several rounds with a fresh directory each, racing on creating the
     * directory too; every racer must end up with the same pair. */
    for (int round = 0; round < 5; round++) {
        char *dir = zsys_sprintf("%s/race-%d/keys", f->root, round);
        int go[2];
        assert_int_equal(pipe(go), 0);
        int results[RACERS][2];
        pid_t pids[RACERS];
        for (int i = 0; i < RACERS; i++) {
            assert_int_equal(pipe(results[i]), 0);
            pids[i] = fork();
            assert_true(pids[i] >= 0);
            if (pids[i] == 0) {
                close(go[1]);
                close(results[i][0]);
                char byte;
                if (read(go[0], &byte, 1) != 0) /* blocks until released */
                    _exit(2);
                char err[256];
                if (auth_keys_ensure(dir, err, sizeof err) != 0)
                    _exit(3);
                /* What this racer sees: both files, as kids. */
                char *key = zsys_sprintf("%s/jwt.key.pem", dir);
                char *pub = zsys_sprintf("%s/jwt.pub.pem", dir);
                char out[2 * AUTH_KID_LEN];
                char kid[AUTH_KID_LEN + 1];
                size_t len = 0;
                char *pem = s_slurp(key, &len);
                if (!pem || auth_pem_kid(pem, len, true, kid) != 0)
                    _exit(4);
                memcpy(out, kid, AUTH_KID_LEN);
                free(pem);
                pem = s_slurp(pub, &len);
                if (!pem || auth_pem_kid(pem, len, false, kid) != 0)
                    _exit(5);
                memcpy(out + AUTH_KID_LEN, kid, AUTH_KID_LEN);
                free(pem);
                _exit(write(results[i][1], out, sizeof out) == (ssize_t)sizeof out ? 0 : 6);
            }
            close(results[i][1]);
        }
        close(go[0]);
        close(go[1]); /* release them all at once */
        char seen[RACERS][2 * AUTH_KID_LEN + 1];
        for (int i = 0; i < RACERS; i++) {
            int status = 0;
            assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                fail_msg("round %d: racer %d failed (status %d)", round, i, status);
            ssize_t n = read(results[i][0], seen[i], 2 * AUTH_KID_LEN);
            close(results[i][0]);
            assert_int_equal(n, 2 * AUTH_KID_LEN);
            seen[i][2 * AUTH_KID_LEN] = '\0';
            /* Private and public halves agree for this racer... */
            assert_memory_equal(seen[i], seen[i] + AUTH_KID_LEN, AUTH_KID_LEN);
            /* ...and with every other racer. */
            if (strcmp(seen[i], seen[0]) != 0)
                fail_msg("round %d: racers 0 and %d saw different keys", round, i);
        }
        char *key = zsys_sprintf("%s/jwt.key.pem", dir);
        assert_int_equal(s_mode(key), 0600);
        assert_int_equal(s_count(dir, "."), 2); /* losers cleaned up */
        zstr_free(&key);
        zstr_free(&dir);
    }
}

/* ---------------------------------------------------------------------
 * Signing and verifying
 */

static void test_sign_verify(void **state)
{
    fx_t *f = *state;
    char *token = s_sign(f, "u-42", "customer");
    auth_identity_t id;
    s_accepted(f, token, &id);
    assert_string_equal(id.sub, "u-42");
    assert_string_equal(id.role, "customer");
    int64_t now = s_now();
    assert_true(id.exp >= now + 899 && id.exp <= now + 901);

    /* What a third party sees: the header and the claims. */
    parts_t p;
    s_split(token, &p);
    json_error_t jerr;
    json_t *h = json_loads(p.header, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(h);
    assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES256");
    assert_string_equal(json_string_value(json_object_get(h, "typ")), "JWT");
    char kid[AUTH_KID_LEN + 1];
    s_kid_of_file(f->pub_path, false, kid);
    assert_string_equal(json_string_value(json_object_get(h, "kid")), kid);
    json_t *c = json_loads(p.payload, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(c);
    assert_string_equal(json_string_value(json_object_get(c, "sub")), "u-42");
    assert_string_equal(json_string_value(json_object_get(c, "role")), "customer");
    assert_string_equal(json_string_value(json_object_get(c, "iss")), AUTH_ISSUER);
    assert_string_equal(json_string_value(json_object_get(c, "aud")), AUTH_AUDIENCE);
    assert_true(json_is_integer(json_object_get(c, "iat")));
    assert_int_equal(json_integer_value(json_object_get(c, "exp")), id.exp);
    assert_int_equal(json_integer_value(json_object_get(c, "exp")) -
                         json_integer_value(json_object_get(c, "iat")),
                     900);
    const char *jti = json_string_value(json_object_get(c, "jti"));
    assert_non_null(jti);
    assert_true(strlen(jti) >= 16);
    assert_int_equal(strlen(p.b64_sig), 86); /* 64 bytes */
    json_decref(h);
    json_decref(c);
    s_parts_free(&p);

    /* Another token for the same user is another token (new jti). */
    char *again = s_sign(f, "u-42", "customer");
    assert_string_not_equal(again, token);
    s_accepted(f, again, &id);
    free(again);
    free(token);

    /* Admin tokens; a sub of the longest length. */
    char sub[AUTH_SUB_MAX + 1];
    memset(sub, 'a', AUTH_SUB_MAX);
    sub[AUTH_SUB_MAX] = '\0';
    token = s_sign(f, sub, "admin");
    s_accepted(f, token, &id);
    assert_string_equal(id.sub, sub);
    assert_string_equal(id.role, "admin");
    free(token);

    /* Many signatures: about 1 in 128 has an R or S with a leading zero
     * byte, which must still be 32 bytes each in the token. */
    for (int i = 0; i < 300; i++) {
        char name[32];
        snprintf(name, sizeof name, "u-%d", i);
        token = s_sign(f, name, "customer");
        parts_t q;
        s_split(token, &q);
        assert_int_equal(strlen(q.b64_sig), 86);
        s_parts_free(&q);
        s_accepted(f, token, &id);
        assert_string_equal(id.sub, name);
        free(token);
    }
    /* And tokens signed by OpenSSL directly verify too. */
    char *claims = s_claims("customer", s_now() + 60);
    token = s_sign_raw(f->private_key, HEADER, claims);
    s_accepted(f, token, &id);
    assert_string_equal(id.sub, "u-123");
    free(token);
    zstr_free(&claims);
}

static void test_signer_errors(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    char *token = (char *)"untouched";
    /* Bad subjects and roles. */
    assert_int_equal(token_sign(f->signer, "", "customer", &token, NULL), -1);
    assert_null(token);
    char sub[AUTH_SUB_MAX + 2];
    memset(sub, 'a', sizeof sub - 1);
    sub[sizeof sub - 1] = '\0';
    assert_int_equal(token_sign(f->signer, sub, "customer", &token, NULL), -1);
    assert_int_equal(token_sign(f->signer, "u-1", "root", &token, NULL), -1);
    assert_int_equal(token_sign(f->signer, "u-1", "", &token, NULL), -1);
    assert_int_equal(token_sign(f->signer, "u-1", "Admin", &token, NULL), -1);
    assert_null(token);

    /* Key files that are not an EC P-256 private key. */
    char *missing = zsys_sprintf("%s/nothing.pem", f->root);
    assert_null(token_signer_new(missing, AUTH_ISSUER, AUTH_AUDIENCE, 0, err, sizeof err));
    assert_non_null(strstr(err, "nothing.pem"));
    err[0] = '\0';
    assert_null(token_signer_new(f->pub_path, AUTH_ISSUER, AUTH_AUDIENCE, 0, err, sizeof err));
    assert_true(strlen(err) > 0);
    /* A P-384 key: a valid EC key of the wrong curve. */
    EVP_PKEY *p384 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
    assert_non_null(p384);
    char *p384_path = zsys_sprintf("%s/p384.pem", f->root);
    FILE *fp = fopen(p384_path, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PrivateKey(fp, p384, NULL, NULL, 0, NULL, NULL), 1);
    fclose(fp);
    err[0] = '\0';
    assert_null(token_signer_new(p384_path, AUTH_ISSUER, AUTH_AUDIENCE, 0, err, sizeof err));
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "BEGIN")); /* no key text in messages */
    /* Its public half is refused by a verifier (and only warned about). */
    char *p384_pub = zsys_sprintf("%s/p384.pub.pem", f->root);
    fp = fopen(p384_pub, "w");
    assert_non_null(fp);
    assert_int_equal(PEM_write_PUBKEY(fp, p384), 1);
    fclose(fp);
    auth_verifier_t *v = auth_verifier_new(p384_pub, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    assert_non_null(v);
    token = s_sign(f, "u-1", "customer");
    auth_identity_t id;
    assert_int_equal(auth_verify(v, token, strlen(token), &id), ERR_UNAUTHENTICATED);
    assert_string_equal(auth_verifier_reason(v), "no verification key");
    char jwks_err[256] = "";
    assert_null(auth_jwks_json(p384_pub, jwks_err, sizeof jwks_err));
    assert_true(strlen(jwks_err) > 0);
    free(token);
    auth_verifier_destroy(&v);
    EVP_PKEY_free(p384);
    zstr_free(&p384_pub);
    zstr_free(&p384_path);
    zstr_free(&missing);
    assert_null(auth_verifier_new(NULL, AUTH_ISSUER, AUTH_AUDIENCE, 0));
}

static void test_jwks(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    char *text = auth_jwks_json(f->pub_path, err, sizeof err);
    if (!text)
        fail_msg("auth_jwks_json: %s", err);
    json_error_t jerr;
    json_t *jwks = json_loads(text, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(jwks);
    json_t *keys = json_object_get(jwks, "keys");
    assert_true(json_is_array(keys));
    assert_int_equal(json_array_size(keys), 1);
    json_t *k = json_array_get(keys, 0);
    assert_string_equal(json_string_value(json_object_get(k, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(k, "crv")), "P-256");
    assert_string_equal(json_string_value(json_object_get(k, "use")), "sig");
    assert_string_equal(json_string_value(json_object_get(k, "alg")), "ES256");
    assert_null(json_object_get(k, "d")); /* never the private scalar */
    const char *xs = json_string_value(json_object_get(k, "x"));
    const char *ys = json_string_value(json_object_get(k, "y"));
    const char *kid = json_string_value(json_object_get(k, "kid"));
    assert_non_null(xs);
    assert_non_null(ys);
    assert_non_null(kid);
    size_t xn = 0, yn = 0;
    char *x = s_unb64(xs, strlen(xs), &xn);
    char *y = s_unb64(ys, strlen(ys), &yn);
    assert_int_equal(xn, 32);
    assert_int_equal(yn, 32);

    /* x and y are the point in the PEM file, read here as the encoded
     * point (04 || X || Y) rather than as coordinates. */
    FILE *fp = fopen(f->pub_path, "r");
    assert_non_null(fp);
    EVP_PKEY *pub = PEM_read_PUBKEY(fp, NULL, NULL, NULL);
    fclose(fp);
    assert_non_null(pub);
    assert_int_equal(EVP_PKEY_set_utf8_string_param(pub, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
                                                    "uncompressed"),
                     1);
    uint8_t point[65];
    size_t point_len = 0;
    assert_int_equal(EVP_PKEY_get_octet_string_param(pub, OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                                     sizeof point, &point_len),
                     1);
    assert_int_equal(point_len, 65);
    assert_int_equal(point[0], 0x04);
    assert_memory_equal(point + 1, x, 32);
    assert_memory_equal(point + 33, y, 32);
    EVP_PKEY_free(pub);

    /* The kid is the RFC 7638 thumbprint, computed here with OpenSSL. */
    char *canonical =
        zsys_sprintf("{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":\"%s\",\"y\":\"%s\"}", xs, ys);
    uint8_t digest[SHA256_DIGEST_LENGTH];
    assert_non_null(SHA256((const uint8_t *)canonical, strlen(canonical), digest));
    char *expected = s_b64(digest, sizeof digest);
    assert_string_equal(kid, expected);
    /* The same kid as in tokens' headers and from auth_pem_kid. */
    char file_kid[AUTH_KID_LEN + 1];
    s_kid_of_file(f->pub_path, false, file_kid);
    assert_string_equal(kid, file_kid);

    free(expected);
    zstr_free(&canonical);
    free(x);
    free(y);
    json_decref(jwks);
    free(text);

    /* No file, or a private key file: NULL, with a reason. */
    char *missing = zsys_sprintf("%s/none.pem", f->root);
    err[0] = '\0';
    assert_null(auth_jwks_json(missing, err, sizeof err));
    assert_non_null(strstr(err, "none.pem"));
    err[0] = '\0';
    assert_null(auth_jwks_json(f->key_path, err, sizeof err));
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "BEGIN"));
    zstr_free(&missing);
}

/* ---------------------------------------------------------------------
 * Attacks
 */

static void test_alg_none(void **state)
{
    fx_t *f = *state;
    char *claims = s_claims("admin", s_now() + 600);
    char *p = s_b64(claims, strlen(claims));
    const char *headers[] = {
        "{\"alg\":\"none\"}", "{\"alg\":\"none\",\"typ\":\"JWT\"}",
        "{\"alg\":\"None\"}", "{\"alg\":\"NONE\"}",
        "{\"typ\":\"JWT\"}",  "{\"alg\":null}",
        "{\"alg\":\"\"}",     "{\"alg\":[\"ES256\"]}",
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *h = s_b64(headers[i], strlen(headers[i]));
        /* Empty signature, as "none" tokens have... */
        char *token = zsys_sprintf("%s.%s.", h, p);
        s_refused_str(f, token, "algorithm");
        zstr_free(&token);
        /* ...and a plausible one, which changes nothing. */
        uint8_t sig[64];
        randombytes_buf(sig, sizeof sig);
        char *s = s_b64(sig, sizeof sig);
        token = zsys_sprintf("%s.%s.%s", h, p, s);
        s_refused_str(f, token, "algorithm");
        zstr_free(&token);
        free(s);
        free(h);
    }
    assert_int_equal(auth_verifier_signature_checks(f->verifier), 0);
    free(p);
    zstr_free(&claims);
}

static void test_hs256_with_public_key(void **state)
{
    fx_t *f = *state;
    /* The classic confusion: a verifier that takes alg from the token and
     * "the key" from its configuration would check this HMAC with the
     * public key PEM as the secret, which anyone can download. */
    size_t pem_len = 0;
    char *pem = s_slurp(f->pub_path, &pem_len);
    assert_non_null(pem);
    char *claims = s_claims("admin", s_now() + 600);
    const char *headers[] = {
        "{\"alg\":\"HS256\",\"typ\":\"JWT\"}", "{\"alg\":\"HS512\",\"typ\":\"JWT\"}",
        "{\"alg\":\"RS256\",\"typ\":\"JWT\"}", "{\"alg\":\"ES384\",\"typ\":\"JWT\"}",
        "{\"alg\":\"es256\",\"typ\":\"JWT\"}", "{\"alg\":\"ES256 \",\"typ\":\"JWT\"}"};
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        char *h = s_b64(headers[i], strlen(headers[i]));
        char *p = s_b64(claims, strlen(claims));
        char *signing_input = zsys_sprintf("%s.%s", h, p);
        crypto_auth_hmacsha256_state st;
        uint8_t mac[crypto_auth_hmacsha256_BYTES];
        assert_int_equal(crypto_auth_hmacsha256_init(&st, (const uint8_t *)pem, pem_len), 0);
        assert_int_equal(crypto_auth_hmacsha256_update(&st, (const uint8_t *)signing_input,
                                                       strlen(signing_input)),
                         0);
        assert_int_equal(crypto_auth_hmacsha256_final(&st, mac), 0);
        char *s = s_b64(mac, sizeof mac);
        char *token = zsys_sprintf("%s.%s", signing_input, s);
        s_refused_str(f, token, "algorithm");
        zstr_free(&token);
        free(s);
        zstr_free(&signing_input);
        free(p);
        free(h);
    }
    assert_int_equal(auth_verifier_signature_checks(f->verifier), 0);
    zstr_free(&claims);
    free(pem);
}

static void test_tampered_payload(void **state)
{
    fx_t *f = *state;
    char *token = s_sign(f, "u-7", "customer");
    parts_t p;
    s_split(token, &p);
    char *at = strstr(p.payload, "\"customer\"");
    assert_non_null(at);
    /* "customer" -> "admin", keeping the rest as libjwt wrote it. */
    char *forged_claims = zsys_sprintf("%.*s\"admin\"%s", (int)(at - p.payload), p.payload,
                                       at + strlen("\"customer\""));
    char *b64 = s_b64(forged_claims, strlen(forged_claims));
    char *forged = zsys_sprintf("%s.%s.%s", p.b64_header, b64, p.b64_sig);
    s_refused_str(f, forged, "bad signature");
    assert_int_equal(auth_verifier_signature_checks(f->verifier), 1);
    /* Another sub under the real signature, and a changed header. */
    zstr_free(&forged);
    free(b64);
    zstr_free(&forged_claims);
    at = strstr(p.payload, "u-7");
    assert_non_null(at);
    forged_claims = zsys_sprintf("%.*su-8%s", (int)(at - p.payload), p.payload, at + 3);
    b64 = s_b64(forged_claims, strlen(forged_claims));
    forged = zsys_sprintf("%s.%s.%s", p.b64_header, b64, p.b64_sig);
    s_refused_str(f, forged, "bad signature");
    zstr_free(&forged);
    char *h = s_b64(HEADER, strlen(HEADER));
    forged = zsys_sprintf("%s.%s.%s", h, p.b64_payload, p.b64_sig);
    s_refused_str(f, forged, "bad signature");
    /* The original still verifies: nothing above was cached. */
    auth_identity_t id;
    s_accepted(f, token, &id);
    assert_string_equal(id.role, "customer");
    free(h);
    zstr_free(&forged);
    free(b64);
    zstr_free(&forged_claims);
    s_parts_free(&p);
    free(token);
}

static void test_other_key(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    char *dir = zsys_sprintf("%s/other", f->root);
    assert_int_equal(auth_keys_ensure(dir, err, sizeof err), 0);
    char *key = zsys_sprintf("%s/jwt.key.pem", dir);
    token_signer_t *other = token_signer_new(key, AUTH_ISSUER, AUTH_AUDIENCE, 0, err, sizeof err);
    assert_non_null(other);
    char *token = NULL;
    assert_int_equal(token_sign(other, "u-1", "admin", &token, NULL), 0);
    s_refused_str(f, token, "bad signature");
    free(token);
    token_signer_destroy(&other);
    zstr_free(&key);
    zstr_free(&dir);
}

static void test_wrong_iss_aud(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    token_signer_t *s =
        token_signer_new(f->key_path, "someone-else", AUTH_AUDIENCE, 0, err, sizeof err);
    assert_non_null(s);
    char *token = NULL;
    assert_int_equal(token_sign(s, "u-1", "customer", &token, NULL), 0);
    s_refused_str(f, token, "wrong issuer");
    free(token);
    token_signer_destroy(&s);
    s = token_signer_new(f->key_path, AUTH_ISSUER, "another-api", 0, err, sizeof err);
    assert_non_null(s);
    assert_int_equal(token_sign(s, "u-1", "customer", &token, NULL), 0);
    s_refused_str(f, token, "wrong audience");
    free(token);
    token_signer_destroy(&s);
    /* The verifier's own settings decide, not a constant. */
    auth_verifier_t *v = auth_verifier_new(f->pub_path, AUTH_ISSUER, "another-api", 0);
    assert_non_null(v);
    token = s_sign(f, "u-1", "customer");
    auth_identity_t id;
    assert_int_equal(auth_verify(v, token, strlen(token), &id), ERR_UNAUTHENTICATED);
    assert_string_equal(auth_verifier_reason(v), "wrong audience");
    free(token);
    auth_verifier_destroy(&v);
}

/* Claims made by hand, each signed properly, each with one thing wrong. */
static void test_claims(void **state)
{
    fx_t *f = *state;
    long long now = (long long)s_now();
    long long exp = now + 600;
    struct {
        const char *claims; /* printf format: iat, exp */
        const char *why;    /* NULL: accepted */
    } cases[] = {
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         NULL},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":[\"x\",\"retail-api\"],"
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         NULL},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":[\"x\",\"y\"],"
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "wrong audience"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":[],"
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "wrong audience"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "wrong audience"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "wrong issuer"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retailx\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "wrong issuer"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":\"%lld\"}",
         "exp"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld.0}",
         "exp"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"nbf\":%lld}",
         "exp"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"nbf\":%lld,\"exp\":%lld}",
         "iat"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"iat\":%lld,\"exp\":%lld}",
         "jti"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"\",\"iat\":%lld,\"exp\":%lld}",
         "jti"},
        {"{\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "sub"},
        {"{\"sub\":\"\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "sub"},
        {"{\"sub\":42,\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "sub"},
        {"{\"sub\":\"0123456789012345678901234567890123456789012345678901234567890123\","
         "\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "sub"},
        {"{\"sub\":\"u\",\"role\":\"root\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "role"},
        {"{\"sub\":\"u\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "role"},
        {"{\"sub\":\"u\",\"role\":\"customer\",\"role\":\"admin\",\"iss\":\"retail\","
         "\"aud\":\"retail-api\",\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld}",
         "payload"},
        {"[%lld,%lld]", "payload"},
        {"{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
         "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld",
         "payload"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *claims = zsys_sprintf(cases[i].claims, now, exp);
        char *token = s_sign_raw(f->private_key, HEADER, claims);
        if (cases[i].why)
            s_refused_str(f, token, cases[i].why);
        else {
            auth_identity_t id;
            s_accepted(f, token, &id);
            assert_string_equal(id.sub, "u");
            assert_string_equal(id.role, "admin");
            assert_int_equal(id.exp, exp);
        }
        zstr_free(&token);
        zstr_free(&claims);
    }

    /* Times: issued in the future (beyond the leeway), not yet valid. */
    char *fmt = "{\"sub\":\"u\",\"role\":\"admin\",\"iss\":\"retail\",\"aud\":\"retail-api\","
                "\"jti\":\"j\",\"iat\":%lld,\"exp\":%lld%s}";
    char *claims = zsys_sprintf(fmt, now + 3600, now + 4000, "");
    char *token = s_sign_raw(f->private_key, HEADER, claims);
    s_refused_str(f, token, "future");
    zstr_free(&token);
    zstr_free(&claims);
    char nbf[64];
    snprintf(nbf, sizeof nbf, ",\"nbf\":%lld", now + 3600);
    claims = zsys_sprintf(fmt, now, exp, nbf);
    token = s_sign_raw(f->private_key, HEADER, claims);
    s_refused_str(f, token, "not valid yet");
    zstr_free(&token);
    zstr_free(&claims);
    /* Within the leeway both are fine (clocks differ a little). */
    snprintf(nbf, sizeof nbf, ",\"nbf\":%lld", now + 10);
    claims = zsys_sprintf(fmt, now + 10, exp, nbf);
    token = s_sign_raw(f->private_key, HEADER, claims);
    auth_identity_t id;
    s_accepted(f, token, &id);
    zstr_free(&token);
    zstr_free(&claims);

    /* Headers: typ other than JWT, crit, duplicate alg; no typ is fine. */
    claims = s_claims("customer", exp);
    const struct {
        const char *header;
        const char *why;
    } headers[] = {
        {"{\"alg\":\"ES256\"}", NULL},
        {"{\"alg\":\"ES256\",\"typ\":\"JWT\",\"kid\":\"anything\"}", NULL},
        {"{\"alg\":\"ES256\",\"typ\":\"JOSE\"}", "typ"},
        {"{\"alg\":\"ES256\",\"typ\":7}", "typ"},
        {"{\"alg\":\"ES256\",\"crit\":[\"exp\"]}", "critical"},
        {"{\"alg\":\"ES256\",\"alg\":\"ES256\"}", "header"},
        {"{\"alg\":\"none\",\"alg\":\"ES256\"}", "header"},
        {"[\"ES256\"]", "header"},
        {"{\"alg\":\"ES256\\u0000\"}", "header"}, /* jansson refuses NUL */
        {"", "header"},
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        token = s_sign_raw(f->private_key, headers[i].header, claims);
        if (headers[i].why)
            s_refused_str(f, token, headers[i].why);
        else
            s_accepted(f, token, &id);
        zstr_free(&token);
    }
    zstr_free(&claims);
}

static void test_garbage(void **state)
{
    fx_t *f = *state;
    s_refused(f, NULL, 0, ERR_UNAUTHENTICATED, "no token");
    s_refused(f, "", 0, ERR_UNAUTHENTICATED, "no token");
    const char *shapes[] = {".", "..", "...", "a.b.c", "a.b.c.d", "abc", "eyJ", "...."};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
        s_refused_str(f, shapes[i], NULL);

    /* Random bytes of many lengths, and random base64url text. */
    for (int i = 0; i < 500; i++) {
        uint8_t junk[600];
        size_t n = 1 + randombytes_uniform(sizeof junk);
        randombytes_buf(junk, n);
        s_refused(f, (const char *)junk, n, ERR_UNAUTHENTICATED, NULL);
        char *text = s_b64(junk, n);
        s_refused_str(f, text, NULL);
        /* Dots in random places. */
        size_t len = strlen(text);
        if (len > 4) {
            text[randombytes_uniform((uint32_t)len)] = '.';
            text[randombytes_uniform((uint32_t)len)] = '.';
            s_refused_str(f, text, NULL);
        }
        free(text);
    }

    /* Too long: refused unread, whatever it holds. */
    char *token = s_sign(f, "u-1", "customer");
    size_t len = strlen(token);
    char *big = calloc(1, 5001);
    memset(big, 'A', 5000);
    memcpy(big, token, len);
    s_refused(f, big, 5000, ERR_UNAUTHENTICATED, "too long");
    s_refused(f, big, AUTH_TOKEN_MAX + 1, ERR_UNAUTHENTICATED, "too long");
    free(big);

    /* A valid token, spoiled in small ways. */
    char *t = calloc(1, len + 8);
    /* Trailing characters. */
    snprintf(t, len + 8, "%s=", token);
    s_refused_str(f, t, "signature");
    snprintf(t, len + 8, "%s\n", token);
    s_refused_str(f, t, "signature");
    snprintf(t, len + 8, "%s.", token);
    s_refused_str(f, t, "three parts");
    snprintf(t, len + 8, " %s", token);
    s_refused_str(f, t, "header is not base64url");
    /* Truncated signature. */
    s_refused(f, token, len - 1, ERR_UNAUTHENTICATED, "signature");
    s_refused(f, token, len - 4, ERR_UNAUTHENTICATED, "signature");
    /* An embedded NUL, with the full length given. */
    memcpy(t, token, len);
    t[10] = '\0';
    s_refused(f, t, len, ERR_UNAUTHENTICATED, "base64url");
    /* Standard base64 characters instead of URL-safe ones (in the
     * signature, which is checked before anything it signs). */
    memcpy(t, token, len + 1);
    char *sig_start = strrchr(t, '.') + 1;
    sig_start[0] = '+';
    s_refused_str(f, t, "base64url");
    sig_start[0] = '/';
    s_refused_str(f, t, "base64url");
    /* A non-canonical spelling of the same signature: the last character
     * of 86 carries 2 bits; changing its 4 unused bits must not pass. */
    memcpy(t, token, len + 1);
    const char *alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    int v = (int)(strchr(alphabet, t[len - 1]) - alphabet);
    assert_int_equal(v & 0x0f, 0);
    t[len - 1] = alphabet[v | 1];
    s_refused_str(f, t, "signature");
    /* A signature of 63 and 65 bytes. */
    parts_t p;
    s_split(token, &p);
    uint8_t sig[65];
    size_t sig_len = 0;
    assert_int_equal(
        sodium_base642bin(sig, sizeof sig, p.b64_sig, strlen(p.b64_sig), NULL, &sig_len, NULL, B64),
        0);
    assert_int_equal(sig_len, 64);
    for (size_t n = 63; n <= 65; n += 2) {
        sig[64] = 0;
        char *s = s_b64(sig, n);
        char *bad = zsys_sprintf("%s.%s.%s", p.b64_header, p.b64_payload, s);
        s_refused_str(f, bad, "signature");
        zstr_free(&bad);
        free(s);
    }
    /* All zeros, and R = S = n-ish garbage: refused by the signature. */
    memset(sig, 0, 64);
    char *s = s_b64(sig, 64);
    char *bad = zsys_sprintf("%s.%s.%s", p.b64_header, p.b64_payload, s);
    s_refused_str(f, bad, "bad signature");
    zstr_free(&bad);
    free(s);
    memset(sig, 0xff, 64);
    s = s_b64(sig, 64);
    bad = zsys_sprintf("%s.%s.%s", p.b64_header, p.b64_payload, s);
    s_refused_str(f, bad, "bad signature");
    zstr_free(&bad);
    free(s);
    s_parts_free(&p);
    free(t);

    /* After all that, the real token is still fine. */
    auth_identity_t id;
    s_accepted(f, token, &id);
    free(token);
}

/* ---------------------------------------------------------------------
 * Expiry and the cache
 */

static void test_expired(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    token_signer_t *old =
        token_signer_new(f->key_path, AUTH_ISSUER, AUTH_AUDIENCE, -60, err, sizeof err);
    assert_non_null(old);
    char *token = NULL;
    int expires_in = 0;
    assert_int_equal(token_sign(old, "u-1", "customer", &token, &expires_in), 0);
    assert_int_equal(expires_in, -60);
    s_refused(f, token, strlen(token), ERR_TOKEN_EXPIRED, "expired");
    /* Asked again it is expired again (now from the cache). */
    size_t hits = auth_verifier_hits(f->verifier);
    s_refused(f, token, strlen(token), ERR_TOKEN_EXPIRED, "expired");
    assert_int_equal(auth_verifier_hits(f->verifier), hits + 1);
    free(token);
    token_signer_destroy(&old);

    /* 20 s past exp is inside the 30 s leeway for clock skew. */
    token_signer_t *skewed =
        token_signer_new(f->key_path, AUTH_ISSUER, AUTH_AUDIENCE, -20, err, sizeof err);
    assert_non_null(skewed);
    assert_int_equal(token_sign(skewed, "u-2", "customer", &token, NULL), 0);
    auth_identity_t id;
    s_accepted(f, token, &id);
    assert_string_equal(id.sub, "u-2");
    free(token);
    token_signer_destroy(&skewed);
}

static void test_cached_token_expires(void **state)
{
    fx_t *f = *state;
    char *token = s_sign(f, "u-9", "admin");
    size_t len = strlen(token);
    auth_identity_t id;
    s_accepted(f, token, &id);
    int64_t exp = id.exp;
    assert_int_equal(auth_verifier_hits(f->verifier), 0);
    s_accepted(f, token, &id);
    assert_int_equal(auth_verifier_hits(f->verifier), 1);
    assert_int_equal(auth_verifier_signature_checks(f->verifier), 1);

    /* Time passes: the cached entry is checked against the clock on every
     * hit, with the same leeway as a full verification. */
    auth_verifier_set_time(f->verifier, exp + AUTH_LEEWAY_S - 1);
    s_accepted(f, token, &id);
    auth_verifier_set_time(f->verifier, exp + AUTH_LEEWAY_S);
    s_refused(f, token, len, ERR_TOKEN_EXPIRED, "expired");
    auth_verifier_set_time(f->verifier, exp + 86400);
    s_refused(f, token, len, ERR_TOKEN_EXPIRED, "expired");
    assert_int_equal(auth_verifier_hits(f->verifier), 4);
    assert_int_equal(auth_verifier_signature_checks(f->verifier), 1);

    /* A fresh verifier at that time agrees, without the cache. */
    auth_verifier_t *v = auth_verifier_new(f->pub_path, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    assert_non_null(v);
    auth_verifier_set_time(v, exp + AUTH_LEEWAY_S);
    assert_int_equal(auth_verify(v, token, len, &id), ERR_TOKEN_EXPIRED);
    assert_int_equal(auth_verifier_hits(v), 0);
    auth_verifier_destroy(&v);

    /* Back to the real clock: valid again. */
    auth_verifier_set_time(f->verifier, 0);
    s_accepted(f, token, &id);
    assert_string_equal(id.sub, "u-9");
    free(token);
}

static void test_cache(void **state)
{
    fx_t *f = *state;
    /* N against 2048 sets of 2 ways: three tokens in one set (chance
     * about C(N,3)/2048^2) cost up to 6 misses in the two passes below, as
     * the LRU way cycles. At N = 100 two such sets (about 1 run in 1,300)
     * broke the bound; at 32 it takes three (about 1 in 10^9). */
    enum { N = 32 };
    char *tokens[N];
    for (int i = 0; i < N; i++) {
        char sub[16];
        snprintf(sub, sizeof sub, "u-%d", i);
        tokens[i] = s_sign(f, sub, i % 2 ? "admin" : "customer");
    }
    /* First pass: all misses. Then hits (a 2-way cache of 4096 slots may
     * lose the odd one to a full set), each the right identity. */
    auth_identity_t id;
    for (int i = 0; i < N; i++)
        s_accepted(f, tokens[i], &id);
    assert_int_equal(auth_verifier_hits(f->verifier), 0);
    assert_int_equal(auth_verifier_signature_checks(f->verifier), N);
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < N; i++) {
            s_accepted(f, tokens[i], &id);
            char sub[16];
            snprintf(sub, sizeof sub, "u-%d", i);
            assert_string_equal(id.sub, sub);
            assert_string_equal(id.role, i % 2 ? "admin" : "customer");
        }
    assert_true(auth_verifier_hits(f->verifier) >= 2 * N - 12);

    /* A cache of two slots (one set) still answers right, just verifies
     * more: bounded memory, never a wrong identity. */
    auth_verifier_t *tiny = auth_verifier_new(f->pub_path, AUTH_ISSUER, AUTH_AUDIENCE, 2);
    assert_non_null(tiny);
    for (int round = 0; round < 3; round++)
        for (int i = 0; i < 5; i++) {
            assert_int_equal(auth_verify(tiny, tokens[i], strlen(tokens[i]), &id), ERR_NONE);
            char sub[16];
            snprintf(sub, sizeof sub, "u-%d", i);
            assert_string_equal(id.sub, sub);
        }
    /* The newest entry is always still there. */
    size_t hits = auth_verifier_hits(tiny);
    assert_int_equal(auth_verify(tiny, tokens[4], strlen(tokens[4]), &id), ERR_NONE);
    assert_int_equal(auth_verifier_hits(tiny), hits + 1);
    assert_true(auth_verifier_signature_checks(tiny) >= 10);
    auth_verifier_destroy(&tiny);
    /* Odd sizes are rounded, not refused. */
    tiny = auth_verifier_new(f->pub_path, AUTH_ISSUER, AUTH_AUDIENCE, 3);
    assert_non_null(tiny);
    assert_int_equal(auth_verify(tiny, tokens[0], strlen(tokens[0]), &id), ERR_NONE);
    assert_int_equal(auth_verify(tiny, tokens[0], strlen(tokens[0]), &id), ERR_NONE);
    assert_int_equal(auth_verifier_hits(tiny), 1);
    auth_verifier_destroy(&tiny);

    /* A prefix of a cached token is not the cached token. */
    s_refused(f, tokens[0], strlen(tokens[0]) - 1, ERR_UNAUTHENTICATED, "signature");
    for (int i = 0; i < N; i++)
        free(tokens[i]);
}

static void test_key_appears_later(void **state)
{
    fx_t *f = *state;
    char *dir = zsys_sprintf("%s/later", f->root);
    char *pub = zsys_sprintf("%s/jwt.pub.pem", dir);
    char *key = zsys_sprintf("%s/jwt.key.pem", dir);
    /* A service that starts before the users service made the key. */
    auth_verifier_t *v = auth_verifier_new(pub, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    assert_non_null(v);
    char *foreign = s_sign(f, "u-1", "customer");
    auth_identity_t id;
    assert_int_equal(auth_verify(v, foreign, strlen(foreign), &id), ERR_UNAUTHENTICATED);
    assert_string_equal(auth_verifier_reason(v), "no verification key");

    char err[256] = "";
    assert_int_equal(auth_keys_ensure(dir, err, sizeof err), 0);
    token_signer_t *s = token_signer_new(key, AUTH_ISSUER, AUTH_AUDIENCE, 0, err, sizeof err);
    assert_non_null(s);
    char *token = NULL;
    assert_int_equal(token_sign(s, "u-5", "customer", &token, NULL), 0);
    /* Retries are at most once a second, so right away it still has no
     * key; a little later it has. */
    assert_int_equal(auth_verify(v, token, strlen(token), &id), ERR_UNAUTHENTICATED);
    zclock_sleep(1100);
    assert_int_equal(auth_verify(v, token, strlen(token), &id), ERR_NONE);
    assert_string_equal(id.sub, "u-5");
    /* The key is this directory's, not the fixture's. */
    assert_int_equal(auth_verify(v, foreign, strlen(foreign), &id), ERR_UNAUTHENTICATED);
    assert_string_equal(auth_verifier_reason(v), "bad signature");

    free(token);
    free(foreign);
    token_signer_destroy(&s);
    auth_verifier_destroy(&v);
    zstr_free(&key);
    zstr_free(&pub);
    zstr_free(&dir);
}

/* ---------------------------------------------------------------------
 * Handlers: auth_require, auth_require_admin
 */

/* Runs check on a call carrying token (NULL: none) and returns whether it
 * passed; when it did not, *code and message (copied) describe the error
 * reply, decoded as a client would. */
typedef bool (*require_fn)(auth_verifier_t *, call_t *, auth_identity_t *);

static bool s_require(fx_t *f, require_fn check, const char *token, auth_identity_t *id,
                      err_code_t *code, char *message, size_t message_size)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    envelope_pack_request(&body, 7, "user.list", token, NULL, 0);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    envelope_request_t rq;
    const char *problem = NULL;
    if (!envelope_decode_request(body.data, body.size, &zone, &rq, &problem))
        fail_msg("request refused: %s", problem);
    call_t *call = call_new();
    assert_non_null(call);
    call_start(call, &rq, "bridge");
    bool passed = check(f->verifier, call, id);
    size_t len = 0;
    const char *bytes = call_reply_bytes(call, &len);
    msgpack_zone reply_zone;
    msgpack_zone_init(&reply_zone, 1024);
    envelope_reply_t reply;
    if (!envelope_decode_reply(bytes, len, &reply_zone, &reply, &problem))
        fail_msg("reply does not decode: %s", problem);
    assert_false(reply.ok);
    *code = reply.code;
    const msgpack_object *m = mp_map_get(&reply.error, "message");
    assert_non_null(m);
    assert_int_equal(m->type, MSGPACK_OBJECT_STR);
    snprintf(message, message_size, "%.*s", (int)m->via.str.size, m->via.str.ptr);
    msgpack_zone_destroy(&reply_zone);
    call_destroy(&call);
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&body);
    return passed;
}

static void test_require(void **state)
{
    fx_t *f = *state;
    char *customer = s_sign(f, "u-1", "customer");
    char *admin = s_sign(f, "u-2", "admin");
    char err[256] = "";
    token_signer_t *old =
        token_signer_new(f->key_path, AUTH_ISSUER, AUTH_AUDIENCE, -3600, err, sizeof err);
    assert_non_null(old);
    char *expired = NULL;
    assert_int_equal(token_sign(old, "u-3", "admin", &expired, NULL), 0);
    token_signer_destroy(&old);

    auth_identity_t id;
    err_code_t code;
    char message[256];
    /* No token. */
    assert_false(s_require(f, auth_require, NULL, &id, &code, message, sizeof message));
    assert_int_equal(code, ERR_UNAUTHENTICATED);
    assert_string_equal(message, "missing access token");
    assert_false(s_require(f, auth_require_admin, NULL, &id, &code, message, sizeof message));
    assert_int_equal(code, ERR_UNAUTHENTICATED);
    /* A customer: a user, not an admin. When a check passes the handler
     * has not answered yet (the framework reports that as internal). */
    memset(&id, 0, sizeof id);
    assert_true(s_require(f, auth_require, customer, &id, &code, message, sizeof message));
    assert_int_equal(code, ERR_INTERNAL);
    assert_string_equal(id.sub, "u-1");
    assert_false(s_require(f, auth_require_admin, customer, &id, &code, message, sizeof message));
    assert_int_equal(code, ERR_FORBIDDEN);
    assert_non_null(strstr(message, "admin"));
    /* An admin passes both. */
    assert_true(s_require(f, auth_require_admin, admin, &id, &code, message, sizeof message));
    assert_string_equal(id.sub, "u-2");
    assert_string_equal(id.role, "admin");
    assert_true(s_require(f, auth_require, admin, NULL, &code, message, sizeof message));
    /* Expired, and bad: distinct codes, and no token text in messages. */
    assert_false(s_require(f, auth_require_admin, expired, &id, &code, message, sizeof message));
    assert_int_equal(code, ERR_TOKEN_EXPIRED);
    assert_null(strstr(message, "eyJ"));
    customer[strlen(customer) - 2] ^= 1; /* spoil the signature */
    assert_false(s_require(f, auth_require, customer, &id, &code, message, sizeof message));
    assert_int_equal(code, ERR_UNAUTHENTICATED);
    assert_string_equal(message, "invalid access token");
    assert_false(s_require(f, auth_require, "", &id, &code, message, sizeof message));
    assert_int_equal(code, ERR_UNAUTHENTICATED);
    free(customer);
    free(admin);
    free(expired);
}

/* ---------------------------------------------------------------------
 * Refresh tokens
 */

static void test_refresh_tokens(void **state)
{
    (void)state;
    char a[REFRESH_TOKEN_MAX + 1];
    char b[REFRESH_TOKEN_MAX + 1];
    refresh_token_new(a);
    refresh_token_new(b);
    assert_string_not_equal(a, b);
    assert_int_equal(strncmp(a, "rt_", 3), 0);
    assert_int_equal(strlen(a), 3 + 43);
    uint8_t raw[33];
    size_t n = 0;
    assert_int_equal(sodium_base642bin(raw, sizeof raw, a + 3, strlen(a) - 3, NULL, &n, NULL, B64),
                     0);
    assert_int_equal(n, 32);

    uint8_t ha[REFRESH_HASH_BYTES], ha2[REFRESH_HASH_BYTES], hb[REFRESH_HASH_BYTES];
    refresh_token_hash(a, strlen(a), ha);
    refresh_token_hash(a, strlen(a), ha2);
    refresh_token_hash(b, strlen(b), hb);
    assert_memory_equal(ha, ha2, sizeof ha);
    assert_memory_not_equal(ha, hb, sizeof ha);
    uint8_t expected[32];
    assert_int_equal(crypto_generichash(expected, 32, (const uint8_t *)a, strlen(a), NULL, 0), 0);
    assert_memory_equal(ha, expected, 32);
}

int main(void)
{
    if (sodium_init() < 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keys_ensure, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_concurrent, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_sign_verify, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_signer_errors, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_jwks, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_alg_none, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_hs256_with_public_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_tampered_payload, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_other_key, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_iss_aud, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_claims, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_garbage, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_expired, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cached_token_expires, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_cache, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_key_appears_later, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_require, s_setup, s_teardown),
        cmocka_unit_test(test_refresh_tokens),
    };
    int failed = cmocka_run_group_tests_name("auth", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

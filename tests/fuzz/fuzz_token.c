/*  fuzz_token.c - access token verification (auth_verify) on any bytes,
 *  as the Authorization header or an envelope's token carries them.
 *
 *  A key pair is made once in a temporary directory and a real token is
 *  signed with it. An input whose first byte is even is a whole token; an
 *  odd one is a list of (offset, byte) edits applied to the real token,
 *  which reaches the signature check and the claims far more often than
 *  random text can. A token that verifies must carry exactly the claims
 *  that were signed: an edit may only ever be refused (or be one the
 *  base64url decoder ignores, which changes nothing that was signed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "actors/users/tokens.h"
#include "protocol/auth.h"

static auth_verifier_t *s_verifier;
static char *s_token;
static size_t s_token_len;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/fuzz-token.XXXXXX";
    char err[256];
    if (!mkdtemp(dir) || auth_keys_ensure(dir, err, sizeof err) != 0)
        abort();
    char priv[300], pub[300];
    snprintf(priv, sizeof priv, "%s/jwt.key.pem", dir);
    snprintf(pub, sizeof pub, "%s/jwt.pub.pem", dir);
    token_signer_t *signer =
        token_signer_new(priv, AUTH_ISSUER, AUTH_AUDIENCE, 3600, err, sizeof err);
    if (!signer || token_sign(signer, "u_fuzz", "customer", &s_token, NULL) != 0)
        abort();
    token_signer_destroy(&signer);
    s_token_len = strlen(s_token);
    s_verifier = auth_verifier_new(pub, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    auth_identity_t who;
    if (!s_verifier || auth_verify(s_verifier, s_token, s_token_len, &who) != ERR_NONE)
        abort();
    /* The key is in memory now; the files go. */
    remove(priv);
    remove(pub);
    rmdir(dir);
    return 0;
}

static void s_verify(const char *token, size_t len)
{
    auth_identity_t who;
    err_code_t code = auth_verify(s_verifier, token, len, &who);
    if (code == ERR_NONE) {
        if (strcmp(who.sub, "u_fuzz") != 0 || strcmp(who.role, "customer") != 0)
            abort(); /* claims that were never signed */
    } else if (code != ERR_UNAUTHENTICATED && code != ERR_TOKEN_EXPIRED)
        abort();
    else if (!auth_verifier_reason(s_verifier)[0])
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if ((data[0] & 1) == 0) {
        s_verify((const char *)data + 1, size - 1);
        return 0;
    }
    char *token = malloc(s_token_len);
    if (!token)
        return 0;
    memcpy(token, s_token, s_token_len);
    size_t len = s_token_len;
    for (size_t i = 1; i + 2 < size; i += 3) {
        size_t at = ((size_t)data[i] << 8 | data[i + 1]) % s_token_len;
        token[at] = (char)data[i + 2];
    }
    if (size >= 2 && data[size - 1] == 0xff)
        len = data[size - 2] % s_token_len; /* a cut token */
    s_verify(token, len);
    free(token);
    return 0;
}

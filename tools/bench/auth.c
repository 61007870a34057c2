/*  auth.c - what access tokens cost: signing, and verifying with and
 *  without the cache (protocol/auth.h, actors/users/tokens.h).
 *
 *      auth-bench [-n ITERATIONS]        (default 2000)
 *
 *  In a temporary keys directory it makes a key pair, then times, one call
 *  at a time with CLOCK_MONOTONIC:
 *    - token_sign: libjwt ES256, which parses the PEM key on every call;
 *    - auth_verify on a token it has not seen (N distinct tokens, each
 *      verified once: the ECDSA check, JSON parsing and the cache insert);
 *    - auth_verify on one token seen before (a keyed BLAKE2b hash and a
 *      lookup).
 *  One untimed verify first loads the public key, so the load is not
 *  counted. It prints the median and p99 of each in microseconds, and
 *  exits 1 if any call failed (a bench that measures errors is no bench).
 *  The directory is removed at the end.
 */
#include "actors/users/tokens.h"
#include "protocol/auth.h"

#include <czmq.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double s_us_since(const struct timespec *start)
{
    struct timespec end;
    clock_gettime(CLOCK_MONOTONIC, &end);
    return (double)(end.tv_sec - start->tv_sec) * 1e6 +
           (double)(end.tv_nsec - start->tv_nsec) / 1e3;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts samples in place and prints its median and p99. */
static void s_report(const char *what, double *samples, size_t n)
{
    qsort(samples, n, sizeof *samples, s_cmp_double);
    printf("%-34s median %9.2f us   p99 %9.2f us\n", what, samples[n / 2], samples[(n * 99) / 100]);
}

int main(int argc, char **argv)
{
    size_t n = 2000;
    int opt;
    while ((opt = getopt(argc, argv, "n:")) != -1) {
        if (opt == 'n' && atol(optarg) > 0)
            n = (size_t)atol(optarg);
        else {
            fprintf(stderr, "usage: auth-bench [-n ITERATIONS]\n");
            return 2;
        }
    }

    int rc = 1;
    char root[] = "/tmp/auth-bench-XXXXXX";
    bool made_root = mkdtemp(root) != NULL;
    char *keys = zsys_sprintf("%s/keys", root);
    char *key_path = zsys_sprintf("%s/jwt.key.pem", keys);
    char *pub_path = zsys_sprintf("%s/jwt.pub.pem", keys);
    token_signer_t *signer = NULL;
    auth_verifier_t *verifier = NULL;
    char **tokens = calloc(n + 1, sizeof *tokens);
    double *sign_us = calloc(n, sizeof *sign_us);
    double *miss_us = calloc(n, sizeof *miss_us);
    double *hit_us = calloc(n, sizeof *hit_us);
    char err[256] = "";
    if (!made_root || !keys || !key_path || !pub_path || !tokens || !sign_us || !miss_us ||
        !hit_us) {
        fprintf(stderr, "auth-bench: out of memory or no temporary directory\n");
        goto cleanup;
    }
    if (auth_keys_ensure(keys, err, sizeof err) != 0) {
        fprintf(stderr, "auth-bench: %s\n", err);
        goto cleanup;
    }
    signer = token_signer_new(key_path, AUTH_ISSUER, AUTH_AUDIENCE, 0, err, sizeof err);
    verifier = auth_verifier_new(pub_path, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    if (!signer || !verifier) {
        fprintf(stderr, "auth-bench: %s\n", signer ? "cannot make a verifier" : err);
        goto cleanup;
    }

    /* tokens[n] is the warm-up token; tokens[0..n) are timed. */
    for (size_t i = 0; i <= n; i++) {
        char sub[32];
        snprintf(sub, sizeof sub, "user-%zu", i);
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        int signed_ok = token_sign(signer, sub, "customer", &tokens[i], NULL);
        double us = s_us_since(&start);
        if (signed_ok != 0) {
            fprintf(stderr, "auth-bench: token_sign failed\n");
            goto cleanup;
        }
        if (i < n)
            sign_us[i] = us;
    }
    auth_identity_t id;
    if (auth_verify(verifier, tokens[n], strlen(tokens[n]), &id) != ERR_NONE) {
        fprintf(stderr, "auth-bench: warm-up verify failed: %s\n", auth_verifier_reason(verifier));
        goto cleanup;
    }
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(tokens[i]);
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        err_code_t code = auth_verify(verifier, tokens[i], len, &id);
        miss_us[i] = s_us_since(&start);
        if (code != ERR_NONE) {
            fprintf(stderr, "auth-bench: verify failed: %s\n", auth_verifier_reason(verifier));
            goto cleanup;
        }
    }
    size_t hits_before = auth_verifier_hits(verifier);
    size_t len0 = strlen(tokens[0]);
    for (size_t i = 0; i < n; i++) {
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        err_code_t code = auth_verify(verifier, tokens[0], len0, &id);
        hit_us[i] = s_us_since(&start);
        if (code != ERR_NONE) {
            fprintf(stderr, "auth-bench: cached verify failed\n");
            goto cleanup;
        }
    }
    if (auth_verifier_hits(verifier) - hits_before != n) {
        fprintf(stderr, "auth-bench: the cached loop missed the cache\n");
        goto cleanup;
    }

    printf("auth-bench: %zu iterations, one thread, token of %zu bytes\n", n, len0);
    s_report("token_sign (libjwt ES256)", sign_us, n);
    s_report("auth_verify, not cached (OpenSSL)", miss_us, n);
    s_report("auth_verify, cached", hit_us, n);
    /* What bounds logins: one Argon2id hash at the users service's limits. */
    double hash_us[11];
    for (int i = 0; i < 11; i++) {
        char out[crypto_pwhash_STRBYTES];
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        if (crypto_pwhash_str(out, "bench-password", 14, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
            fprintf(stderr, "auth-bench: crypto_pwhash_str failed\n");
            goto cleanup;
        }
        hash_us[i] = s_us_since(&start);
    }
    s_report("Argon2id hash (interactive)", hash_us, 11);
    rc = 0;
cleanup:
    for (size_t i = 0; tokens && i <= n; i++)
        free(tokens[i]);
    free(tokens);
    free(sign_us);
    free(miss_us);
    free(hit_us);
    auth_verifier_destroy(&verifier);
    token_signer_destroy(&signer);
    /* Only the files this program made, then its directories. */
    if (key_path && unlink(key_path) != 0 && made_root)
        perror("auth-bench: unlink");
    if (pub_path && unlink(pub_path) != 0 && made_root)
        perror("auth-bench: unlink");
    if (keys && made_root && rmdir(keys) != 0)
        perror("auth-bench: rmdir");
    if (made_root && rmdir(root) != 0)
        perror("auth-bench: rmdir");
    zstr_free(&keys);
    zstr_free(&key_path);
    zstr_free(&pub_path);
    return rc;
}

/*  payment_keys.c - the payment store's key files, the signatures of log
 *  heads and the keyed fingerprints of card numbers (payment_store_impl.h).
 *
 *  Files in keys_dir, each 64 lower-case hex digits and a newline, mode
 *  0600:
 *    payments-log.key      the 32-byte Ed25519 seed that signs log heads
 *    payments-log.pub      its public key (written from the seed, for
 *                          whoever checks heads elsewhere)
 *    card-fingerprint.key  the 32-byte key of card fingerprints
 *  A missing secret is made from libsodium's random bytes, written to a
 *  temporary file (mkstemp: 0600 from the start), flushed, and linked into
 *  place: link() never replaces a file, so of two processes opening at once
 *  the first one's key is the key, and both load it from disk. Whoever made
 *  it, the key used is the one read back from the file. A key file others
 *  can read is made private (a warning), not refused.
 *
 *  The fingerprint is BLAKE2b-256 keyed with card-fingerprint.key: the same
 *  card gives the same fingerprint in one shop (to spot a card used across
 *  orders), and without the key nobody can test a guessed number against
 *  it, which an unkeyed hash of a 16-digit number would allow.
 */
#include "storage/payments/payment_store_impl.h"
#include "protocol/files.h"

#include <czmq.h>
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define S_SIGN_FILE "payments-log.key"
#define S_PUB_FILE "payments-log.pub"
#define S_CARD_FILE "card-fingerprint.key"

/* A key file's text: 64 hex digits and a newline. */
#define S_KEY_TEXT (2 * 32 + 1)

/* Writes text to a new temporary file in dir (0600), flushed to disk;
 * its malloc'd path, or NULL with errno set. */
static char *s_write_temp(const char *dir, const char *text, size_t len)
{
    char *path = zsys_sprintf("%s/.payment-key.XXXXXX", dir);
    if (!path) {
        errno = ENOMEM;
        return NULL;
    }
    int fd = mkstemp(path);
    if (fd < 0) {
        zstr_free(&path);
        return NULL;
    }
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, text + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    int saved = done == len ? 0 : (errno ? errno : EIO);
    if (!saved && fsync(fd) != 0)
        saved = errno;
    if (close(fd) != 0 && !saved)
        saved = errno;
    if (saved) {
        if (unlink(path) != 0)
            zsys_warning("payment_store: cannot remove %s: %s", path, strerror(errno));
        zstr_free(&path);
        errno = saved;
        return NULL;
    }
    return path;
}

/* 32 bytes as key text (64 hex digits and a newline, no terminator). */
static void s_key_text(const uint8_t bytes[32], char text[S_KEY_TEXT + 1])
{
    sodium_bin2hex(text, S_KEY_TEXT, bytes, 32);
    text[S_KEY_TEXT - 1] = '\n';
    text[S_KEY_TEXT] = '\0';
}

/* Reads the 32 bytes of the key file at path; ENOENT when there is none,
 * EINVAL when it is not key text. 0, or -1 with errno set. */
static int s_read_key(const char *path, uint8_t out[32])
{
    size_t len = 0;
    char *text = files_read(path, 256, &len);
    if (!text)
        return -1;
    while (len > 0 && (text[len - 1] == '\n' || text[len - 1] == '\r' || text[len - 1] == ' '))
        len--;
    size_t bin_len = 0;
    const char *end = NULL;
    int rc = 0;
    if (len != 64 || sodium_hex2bin(out, 32, text, len, NULL, &bin_len, &end) != 0 ||
        bin_len != 32 || end != text + len) {
        errno = EINVAL;
        rc = -1;
    }
    sodium_memzero(text, len);
    free(text);
    return rc;
}

/* Makes the file at path private when others can read it. */
static int s_tighten(const char *path, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        return -1;
    }
    if ((st.st_mode & 077) == 0)
        return 0;
    zsys_warning("payment_store: %s was readable by others; now 0600", path);
    if (chmod(path, 0600) != 0) {
        snprintf(err, errlen, "cannot make %s private: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* The 32-byte secret in dir/name, made when missing (above). */
static int s_secret(const char *dir, const char *name, uint8_t out[32], char *err, size_t errlen)
{
    int rc = -1;
    char *tmp = NULL;
    char text[S_KEY_TEXT + 1];
    char *path = zsys_sprintf("%s/%s", dir, name);
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (s_read_key(path, out) != 0) {
        if (errno != ENOENT) {
            snprintf(err, errlen, "cannot read the key %s: %s", path,
                     errno == EINVAL ? "not 64 hex digits" : strerror(errno));
            goto cleanup;
        }
        uint8_t fresh[32];
        randombytes_buf(fresh, sizeof fresh);
        s_key_text(fresh, text);
        sodium_memzero(fresh, sizeof fresh);
        tmp = s_write_temp(dir, text, S_KEY_TEXT);
        if (!tmp || (link(tmp, path) != 0 && errno != EEXIST)) {
            snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
            goto cleanup;
        }
        if (s_read_key(path, out) != 0) {
            snprintf(err, errlen, "cannot read the key %s: %s", path, strerror(errno));
            goto cleanup;
        }
    }
    rc = s_tighten(path, err, errlen);
cleanup:
    if (tmp && unlink(tmp) != 0)
        zsys_warning("payment_store: cannot remove %s: %s", tmp, strerror(errno));
    sodium_memzero(text, sizeof text);
    zstr_free(&tmp);
    zstr_free(&path);
    return rc;
}

/* Makes dir/name hold the public key pk: left alone when it does, else
 * replaced whole (rename over it). */
static int s_public(const char *dir, const char *name, const uint8_t pk[32], char *err,
                    size_t errlen)
{
    char *path = zsys_sprintf("%s/%s", dir, name);
    if (!path) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    char *tmp = NULL;
    char text[S_KEY_TEXT + 1];
    uint8_t stored[32];
    bool read = s_read_key(path, stored) == 0;
    if (read && memcmp(stored, pk, 32) == 0) {
        rc = s_tighten(path, err, errlen);
        goto cleanup;
    }
    if (read || errno != ENOENT)
        zsys_warning("payment_store: %s did not match %s; rewritten", path, S_SIGN_FILE);
    s_key_text(pk, text);
    tmp = s_write_temp(dir, text, S_KEY_TEXT);
    if (!tmp || rename(tmp, path) != 0) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        if (tmp && unlink(tmp) != 0)
            zsys_warning("payment_store: cannot remove %s: %s", tmp, strerror(errno));
        goto cleanup;
    }
    rc = 0;
cleanup:
    zstr_free(&tmp);
    zstr_free(&path);
    return rc;
}

int payment_keys_load(const char *keys_dir, payment_keys_t *keys, char *err, size_t errlen)
{
    if (!keys_dir || !*keys_dir || files_dir_create(keys_dir) != 0) {
        snprintf(err, errlen, "cannot create the key directory %s", keys_dir ? keys_dir : "(null)");
        return -1;
    }
    /* It holds private keys. Someone else's directory that we cannot
     * tighten still works; say so. */
    if (chmod(keys_dir, 0700) != 0)
        zsys_warning("payment_store: cannot make %s private: %s", keys_dir, strerror(errno));
    uint8_t seed[crypto_sign_SEEDBYTES];
    int rc = -1;
    if (s_secret(keys_dir, S_SIGN_FILE, seed, err, errlen) != 0 ||
        s_secret(keys_dir, S_CARD_FILE, keys->card_key, err, errlen) != 0)
        goto cleanup;
    if (crypto_sign_seed_keypair(keys->sign_pk, keys->sign_sk, seed) != 0) {
        snprintf(err, errlen, "cannot derive the log's signing key");
        goto cleanup;
    }
    rc = s_public(keys_dir, S_PUB_FILE, keys->sign_pk, err, errlen);
cleanup:
    sodium_memzero(seed, sizeof seed);
    return rc;
}

/* The signed message: seq big-endian, then the hash. */
static void s_head_message(uint64_t seq, const uint8_t hash[PAYMENT_HASH_BYTES],
                           uint8_t msg[8 + PAYMENT_HASH_BYTES])
{
    payment_be64_put(msg, seq);
    memcpy(msg + 8, hash, PAYMENT_HASH_BYTES);
}

int payment_keys_sign_head(const payment_keys_t *keys, uint64_t seq,
                           const uint8_t hash[PAYMENT_HASH_BYTES], uint8_t sig[crypto_sign_BYTES])
{
    uint8_t msg[8 + PAYMENT_HASH_BYTES];
    s_head_message(seq, hash, msg);
    return crypto_sign_detached(sig, NULL, msg, sizeof msg, keys->sign_sk) == 0 ? 0 : -1;
}

bool payment_keys_head_ok(const payment_keys_t *keys, uint64_t seq,
                          const uint8_t hash[PAYMENT_HASH_BYTES],
                          const uint8_t sig[crypto_sign_BYTES])
{
    uint8_t msg[8 + PAYMENT_HASH_BYTES];
    s_head_message(seq, hash, msg);
    return crypto_sign_verify_detached(sig, msg, sizeof msg, keys->sign_pk) == 0;
}

void payment_card_fingerprint(payment_store_shared_t *shared, const char *number, size_t len,
                              char out[PAYMENT_HASH_HEX + 1])
{
    uint8_t hash[PAYMENT_HASH_BYTES];
    if (crypto_generichash(hash, sizeof hash, (const unsigned char *)number, len,
                           shared->keys.card_key, sizeof shared->keys.card_key) != 0) {
        out[0] = '\0'; /* never with these sizes; "" rather than a wrong value */
        return;
    }
    sodium_bin2hex(out, PAYMENT_HASH_HEX + 1, hash, sizeof hash);
}

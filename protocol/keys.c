/*  keys.c - create, load and allow-list CurveZMQ certificates.
 *
 *  A certificate pair is made once and kept; zcert_save() writes the
 *  secret file, then we tighten it to 0600 because it holds a private key.
 */
#include "protocol/keys.h"
#include "protocol/files.h"

#include <errno.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

/* zcert_load() and zcert_save() build FILE + "_secret" in a 256-byte buffer
 * and silently cut longer paths: a save then writes the secret key under a
 * cut name, a load reads only the public file (a zero secret key). Paths
 * that long are refused instead. */
#define KEYS_CZMQ_PATH_MAX 256

static char *s_path(const char *dir, const char *name, const char *suffix)
{
    return zsys_sprintf("%s/%s%s", dir, name, suffix);
}

/* A certificate file is well under a kilobyte. */
#define KEYS_FILE_MAX (64 * 1024)

/* A Z85 key text: exactly 40 characters of Z85's alphabet, decoded into
 * out[32]. */
static bool s_z85_key(const char *text, uint8_t out[32])
{
    static const char alphabet[] = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                   ".-:+=^!/*?&<>()[]{}@%$#";
    if (!text || strlen(text) != KEYS_Z85_LEN || strspn(text, alphabet) != KEYS_Z85_LEN)
        return false;
    return zmq_z85_decode(out, text) != NULL;
}

/* What zcert_load(path) reads (the keys and the metadata of a ZPL
 * certificate, public or secret), through files_load_zpl: bounded, and a
 * file that does not parse, or whose keys are not Z85, is refused without
 * leaking (tests/fuzz/fuzz_cert.c). A public certificate's secret key is
 * all zeros, as with zcert_load. */
static zcert_t *s_cert_load(const char *path)
{
    zconfig_t *root = files_load_zpl(path, KEYS_FILE_MAX);
    if (!root)
        return NULL;
    uint8_t public_key[32], secret_key[32] = {0};
    const char *secret_txt = zconfig_get(root, "curve/secret-key", NULL);
    zcert_t *cert = NULL;
    if (s_z85_key(zconfig_get(root, "curve/public-key", NULL), public_key) &&
        (!secret_txt || s_z85_key(secret_txt, secret_key)))
        cert = zcert_new_from(public_key, secret_key);
    zconfig_t *meta = cert ? zconfig_locate(root, "metadata") : NULL;
    for (zconfig_t *item = meta ? zconfig_child(meta) : NULL; item; item = zconfig_next(item))
        if (zconfig_name(item) && zconfig_value(item))
            zcert_set_meta(cert, zconfig_name(item), "%s", zconfig_value(item));
    sodium_memzero(secret_key, sizeof secret_key);
    zconfig_destroy(&root);
    return cert;
}

zcert_t *keys_load(const char *keys_dir, const char *name)
{
    char *path = s_path(keys_dir, name, ".cert");
    zcert_t *cert = NULL;
    char *secret = s_path(keys_dir, name, ".cert_secret");
    if (strlen(secret) < KEYS_CZMQ_PATH_MAX && zsys_file_exists(secret))
        cert = s_cert_load(secret); /* the secret file holds both keys */
    zstr_free(&secret);
    zstr_free(&path);
    return cert;
}

/* Two processes may make the same pair at once (two pools started
 * together). Each writes its pair under a private name and link()s the
 * secret into place, which fails for all but the first; the others load
 * the winner's pair. */
zcert_t *keys_ensure(const char *keys_dir, const char *name)
{
    /* The longest path below is "DIR/.NAME.PID.cert_secret". */
    if (strlen(keys_dir) + strlen(name) + 32 >= KEYS_CZMQ_PATH_MAX) {
        zsys_error("keys: %s/%s: path too long for a certificate", keys_dir, name);
        return NULL;
    }
    if (files_dir_create(keys_dir) != 0)
        return NULL;
    /* The directory holds secret keys: only its owner may list it. */
    if (chmod(keys_dir, 0700) != 0) {
        zsys_error("keys: cannot make %s private: %s", keys_dir, strerror(errno));
        return NULL;
    }
    zcert_t *cert = keys_load(keys_dir, name);
    if (cert)
        return cert;
    cert = zcert_new();
    if (!cert)
        return NULL;
    zcert_set_meta(cert, "name", "%s", name);
    char *tmp = zsys_sprintf("%s/.%s.%d.cert", keys_dir, name, (int)getpid());
    char *tmp_secret = zsys_sprintf("%s_secret", tmp);
    char *path = s_path(keys_dir, name, ".cert");
    char *secret = s_path(keys_dir, name, ".cert_secret");
    bool won = false;
    if (zcert_save(cert, tmp) == 0 && chmod(tmp_secret, 0600) == 0) {
        if (link(tmp_secret, secret) == 0)
            won = rename(tmp, path) == 0;
        else if (errno != EEXIST)
            zsys_error("keys: cannot write %s: %s", secret, strerror(errno));
    }
    unlink(tmp);
    unlink(tmp_secret);
    zcert_destroy(&cert);
    /* The winner's public file may lag its secret by a moment. */
    for (int attempt = 0; attempt < 100 && !cert; attempt++) {
        cert = keys_load(keys_dir, name);
        if (!cert && !won)
            zclock_sleep(10);
        else if (!cert)
            break;
    }
    zstr_free(&tmp);
    zstr_free(&tmp_secret);
    zstr_free(&path);
    zstr_free(&secret);
    return cert;
}

/* The broker's authenticator re-reads clients/ whenever it changes, so a
 * certificate is never written there in place: a reader could find it
 * half written and refuse its holder for a moment. An identical one is
 * left alone (nothing changes, nothing is re-read); a new one is written
 * beside the directory and renamed into it, which is atomic. */
int keys_allow(const char *keys_dir, zcert_t *cert, const char *name)
{
    char *dir = zsys_sprintf("%s/clients", keys_dir);
    char *path = NULL, *temp = NULL;
    int rc = dir ? files_dir_create(dir) : -1;
    if (rc != 0)
        goto cleanup;
    path = s_path(dir, name, ".cert");
    zcert_t *listed = s_cert_load(path);
    bool same = listed && streq(zcert_public_txt(listed), zcert_public_txt(cert));
    zcert_destroy(&listed);
    if (same)
        goto cleanup;
    /* unique per writer: threads and processes may allow the same name */
    temp = zsys_sprintf("%s/.%s.cert.%08x%08x.tmp", keys_dir, name, randombytes_random(),
                        randombytes_random());
    rc = temp ? zcert_save_public(cert, temp) : -1;
    if (rc == 0 && rename(temp, path) != 0)
        rc = -1;
    if (rc != 0 && temp)
        unlink(temp);
cleanup:
    zstr_free(&temp);
    zstr_free(&path);
    zstr_free(&dir);
    return rc;
}

int keys_broker_public(const char *keys_dir, char out[KEYS_Z85_LEN + 1])
{
    char *path = s_path(keys_dir, "broker", ".cert");
    zcert_t *cert = s_cert_load(path);
    zstr_free(&path);
    if (!cert)
        return -1;
    snprintf(out, KEYS_Z85_LEN + 1, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

void keys_apply_client(zsock_t *sock, zcert_t *cert, const char *server_public)
{
    zcert_apply(cert, sock);
    zsock_set_curve_serverkey(sock, server_public);
}

bool keys_endpoint_needs_curve(const char *endpoint)
{
    return strncmp(endpoint, "inproc://", 9) != 0;
}

bool keys_name_valid(const char *name, size_t len)
{
    if (len == 0 || len > KEYS_NAME_MAX || name[0] == '.')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* The parts of the system whose names are roles. A service added later
 * adds its name here (the catalog of services moves into one list with
 * the service-shape work; until then this is that list for names). */
static const char *const s_reserved[] = {"broker",  "bridge", "events",   "sys", "users",
                                         "catalog", "orders", "payments", NULL};

bool keys_name_reserved(const char *name)
{
    for (const char *const *r = s_reserved; *r; r++)
        if (strcmp(*r, name) == 0)
            return true;
    return false;
}

#define INPROC_SUFFIX 17 /* "#" and 16 hex digits */

int keys_name_inproc(zsock_t *sock, const char *name)
{
    size_t len = strlen(name);
    if (!keys_name_valid(name, len))
        return -1;
    uint8_t nonce[8];
    randombytes_buf(nonce, sizeof nonce);
    char id[KEYS_NAME_MAX + INPROC_SUFFIX + 1];
    int n = snprintf(id, sizeof id, "%s#", name);
    for (size_t i = 0; i < sizeof nonce; i++)
        n += snprintf(id + n, sizeof id - (size_t)n, "%02x", nonce[i]);
    zsock_set_identity(sock, id);
    return 0;
}

bool keys_inproc_caller(const void *routing_id, size_t len, char *out)
{
    const char *id = routing_id;
    if (len <= INPROC_SUFFIX || id[len - INPROC_SUFFIX] != '#')
        return false;
    size_t name_len = len - INPROC_SUFFIX;
    if (!keys_name_valid(id, name_len))
        return false;
    memcpy(out, id, name_len);
    out[name_len] = '\0';
    return true;
}

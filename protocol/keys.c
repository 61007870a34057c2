/*  keys.c - create, load and allow-list CurveZMQ certificates.
 *
 *  A certificate pair is made once and kept; zcert_save() writes the
 *  secret file, then we tighten it to 0600 because it holds a private key.
 */
#include "protocol/keys.h"

#include <errno.h>
#include <sys/stat.h>

static char *s_path(const char *dir, const char *name, const char *suffix)
{
    return zsys_sprintf("%s/%s%s", dir, name, suffix);
}

zcert_t *keys_load(const char *keys_dir, const char *name)
{
    char *path = s_path(keys_dir, name, ".cert");
    zcert_t *cert = NULL;
    char *secret = s_path(keys_dir, name, ".cert_secret");
    if (zsys_file_exists(secret))
        cert = zcert_load(path); /* zcert_load reads path + "_secret" */
    zstr_free(&secret);
    zstr_free(&path);
    return cert;
}

zcert_t *keys_ensure(const char *keys_dir, const char *name)
{
    if (zsys_dir_create("%s", keys_dir) != 0)
        return NULL;
    chmod(keys_dir, 0700);
    zcert_t *cert = keys_load(keys_dir, name);
    if (cert)
        return cert;
    cert = zcert_new();
    if (!cert)
        return NULL;
    zcert_set_meta(cert, "name", "%s", name);
    char *path = s_path(keys_dir, name, ".cert");
    char *secret = s_path(keys_dir, name, ".cert_secret");
    int rc = zcert_save(cert, path);
    if (rc == 0)
        rc = chmod(secret, 0600);
    zstr_free(&path);
    zstr_free(&secret);
    if (rc != 0)
        zcert_destroy(&cert);
    return cert;
}

int keys_allow(const char *keys_dir, zcert_t *cert, const char *name)
{
    char *dir = zsys_sprintf("%s/clients", keys_dir);
    int rc = zsys_dir_create("%s", dir);
    if (rc == 0) {
        char *path = s_path(dir, name, ".cert");
        rc = zcert_save_public(cert, path);
        zstr_free(&path);
    }
    zstr_free(&dir);
    return rc;
}

int keys_broker_public(const char *keys_dir, char out[KEYS_Z85_LEN + 1])
{
    char *path = s_path(keys_dir, "broker", ".cert");
    zcert_t *cert = zcert_load(path);
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

/*  fuzz_cert.c - CurveZMQ certificate files (protocol/keys.h) of any
 *  content, as found in a keys directory: a pair NAME.cert and
 *  NAME.cert_secret (keys_load) and the broker's public certificate
 *  (keys_broker_public). The input is split at its first 0xff byte into
 *  the public file and the secret one. A pair that loads must carry keys
 *  of the right length; a broker key that is read is 40 Z85 characters.
 */
#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "protocol/keys.h"

static char s_dir[] = "/tmp/fuzz-cert.XXXXXX";

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (!mkdtemp(s_dir))
        abort();
    zsys_set_logstream(NULL); /* CZMQ's complaints about bad files are expected */
    return 0;
}

static void s_write(const char *name, const uint8_t *data, size_t size)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", s_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || (size && fwrite(data, 1, size, f) != size) || fclose(f) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *cut = memchr(data, 0xff, size);
    size_t public_len = cut ? (size_t)(cut - data) : size;
    const uint8_t *secret = cut ? cut + 1 : data;
    size_t secret_len = cut ? size - public_len - 1 : size;
    s_write("peer.cert", data, public_len);
    s_write("peer.cert_secret", secret, secret_len);
    s_write("broker.cert", data, public_len);

    zcert_t *cert = keys_load(s_dir, "peer");
    if (cert) {
        if (strlen(zcert_public_txt(cert)) != KEYS_Z85_LEN)
            abort();
        zcert_destroy(&cert);
    }
    char key[KEYS_Z85_LEN + 1];
    if (keys_broker_public(s_dir, key) == 0 && strlen(key) != KEYS_Z85_LEN)
        abort();
    return 0;
}

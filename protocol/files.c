/*  files.c - see files.h. */
#include "protocol/files.h"

#include <czmq.h>

#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *files_read(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    int failure = 0;
    char *data = malloc(max + 1);
    size_t n = 0;
    if (!data)
        failure = ENOMEM;
    else {
        n = fread(data, 1, max + 1, f);
        if (ferror(f))
            failure = EIO;
        else if (n > max)
            failure = EFBIG;
    }
    if (fclose(f) != 0 && !failure)
        failure = errno;
    if (failure) {
        if (data)
            sodium_memzero(data, max + 1); /* it may be a private key */
        free(data);
        errno = failure;
        return NULL;
    }
    data[n] = '\0';
    *len = n;
    return data;
}

int files_dir_create(const char *dir)
{
    for (int attempt = 0; attempt < 3; attempt++)
        if (zsys_dir_create("%s", dir) == 0)
            return 0;
    return -1;
}

zconfig_t *files_load_zpl(const char *path, size_t max)
{
    size_t len;
    char *text = files_read(path, max, &len);
    if (!text)
        return NULL;
    zconfig_t *root = NULL;
    if (!memchr(text, '\0', len))
        root = zconfig_str_load(text);
    sodium_memzero(text, len); /* a certificate's secret key */
    free(text);
    if (!root)
        errno = EINVAL;
    return root;
}

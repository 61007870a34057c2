/*  files.h - reading small files that may hold secrets (keys, certificates).
 *
 *  One careful reader for every key and certificate file: bounded size,
 *  errors through errno, and the buffer wiped before it is freed on a
 *  failure, because it may hold a private key.
 */
#ifndef RETAIL_FILES_H
#define RETAIL_FILES_H

#include <stddef.h>

/* The whole file, malloc'd and NUL-terminated (the caller frees it, after
 * sodium_memzero when it is secret); *len gets its size. NULL with errno
 * set; EFBIG when the file has more than max bytes. */
char *files_read(const char *path, size_t max, size_t *len);

#endif

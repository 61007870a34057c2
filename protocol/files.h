/*  files.h - reading small files that may hold secrets (keys, certificates),
 *  and making the directories they live in.
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

/* Makes dir and its parents; 0, or -1. Safe while other processes make
 * the same directories (zsys_dir_create checks, then mkdir()s each level,
 * and fails when another process made that level in between: it is
 * retried, and then skips the levels that exist). */
int files_dir_create(const char *dir);

#endif

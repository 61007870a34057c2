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

/* A ZPL file (a configuration, a certificate) of at most max bytes,
 * parsed: what zconfig_load() does, but bounded, refusing a NUL byte
 * inside the text (the parser would stop there), and without the leak of
 * CZMQ 4.2.1's zconfig_load(), which keeps its zfile when a file does not
 * parse (found by tests/fuzz/fuzz_config.c). The caller destroys the tree
 * with zconfig_destroy(). NULL with errno set: EINVAL when the text is
 * not ZPL or holds a NUL, EFBIG when it is too large. */
typedef struct _zconfig_t zconfig_t;
zconfig_t *files_load_zpl(const char *path, size_t max);

#endif

/*  testutil.h - helpers shared by the cmocka tests.
 *
 *  Temporary data directories, free TCP ports, and starting and stopping
 *  a real retaild process for integration tests.
 */
#ifndef RETAIL_TESTUTIL_H
#define RETAIL_TESTUTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <sys/types.h>
#include <cmocka.h>

/* Makes a fresh directory under /tmp; returns a malloc'd path. */
char *tu_tempdir(const char *prefix);
/* Removes a directory tree (rm -rf). */
void tu_rmtree(const char *path);
/* A TCP port on 127.0.0.1 that was free a moment ago. */
int tu_free_port(void);
/* The build directory ($RETAIL_BUILD_DIR, or "build"). */
const char *tu_build_dir(void);

/* Starts $build/retaild with argv (NULL-terminated, argv[0] excluded) and
 * the environment entries env ("KEY=VALUE", NULL-terminated) added. */
pid_t tu_spawn_retaild(const char *const *argv, const char *const *env);
/* Sends sig and waits up to timeout_ms for the process to exit; returns its
 * wait status, or -1 if it did not exit (then it is SIGKILLed). */
int tu_stop(pid_t pid, int sig, int timeout_ms);

#endif

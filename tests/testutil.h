/*  testutil.h - helpers shared by the cmocka tests.
 *
 *  Temporary data directories, free TCP ports, whole files, and starting
 *  and stopping a real retaild process (tests/fixture.h builds the
 *  integration tests' set-up on these).
 */
#ifndef RETAIL_TESTUTIL_H
#define RETAIL_TESTUTIL_H

#include <stdarg.h>
#include <stdbool.h>
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

/* A whole file, NUL-terminated (malloc'd, the caller frees it); NULL when
 * it cannot be read. *len, when given, gets its length. */
char *tu_slurp(const char *path, size_t *len);

/* How to start a process of the build (tu_spawn). */
typedef struct {
    const char *program;     /* a file of $build: "retaild" */
    const char *const *argv; /* NULL-terminated, argv[0] excluded; may be NULL */
    const char *const *env;  /* "KEY=VALUE" entries, NULL-terminated, each
                                replacing an inherited one of that KEY */
    bool clean;              /* inherit no RETAIL_* variable: only env steers it */
    const char *out_path;    /* stdout appended to this file; NULL: inherited */
    const char *err_path;    /* stderr likewise */
} tu_spawn_t;

/* Starts the process (stdin from /dev/null when out_path or err_path is
 * given); it dies with the test, even one killed by SIGKILL
 * (PR_SET_PDEATHSIG), so no daemon outlives a crashed test. Returns its
 * pid, or -1 when it could not fork. The strings are only read, and only
 * during the call. */
pid_t tu_spawn(const tu_spawn_t *how);

/* Starts $build/retaild with argv (NULL-terminated, argv[0] excluded) and
 * the environment entries env ("KEY=VALUE", NULL-terminated) added. */
pid_t tu_spawn_retaild(const char *const *argv, const char *const *env);
/* Waits up to timeout_ms for the process to exit by itself; returns its
 * wait status, or -1 if it did not exit (then it is SIGKILLed and reaped). */
int tu_wait(pid_t pid, int timeout_ms);
/* Sends sig and waits up to timeout_ms for the process to exit; returns its
 * wait status, or -1 if it did not exit (then it is SIGKILLed). */
int tu_stop(pid_t pid, int sig, int timeout_ms);

#endif

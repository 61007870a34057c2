/*  ids.c - new record ids (ids.h).
 *
 *  The time part makes ids sort in creation order; the microseconds keep
 *  that order for ids made in the same millisecond, which a fast store
 *  does (LMDB creates in tens of microseconds), without any shared
 *  counter. The random part comes from libsodium.
 */
#include "storage/ids.h"

#include <czmq.h>
#include <inttypes.h>
#include <sodium.h>
#include <stdio.h>
#include <time.h>

void store_new_id(char prefix, char *out)
{
    /* sodium_init is idempotent and thread-safe; randombytes works
     * without it on Linux, so a failure is only worth a log line. */
    if (sodium_init() < 0)
        zsys_error("store_new_id: sodium_init failed");
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        /* Never happens for CLOCK_REALTIME; time(NULL) keeps order to
         * the second rather than writing a zero time. */
        ts.tv_sec = time(NULL);
        ts.tv_nsec = 0;
    }
    uint64_t ms = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
    uint32_t us_in_ms = (uint32_t)(ts.tv_nsec / 1000 % 1000); /* < 1024: 10 bits */
    uint32_t tail = us_in_ms << 22 | (randombytes_random() & 0x3fffffu);
    /* 12 hex digits of ms last until the year 10889. */
    snprintf(out, STORE_ID_LEN + 1, "%c%012" PRIx64 "%08" PRIx32, prefix,
             (uint64_t)(ms & 0xffffffffffffu), tail);
}

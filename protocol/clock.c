/*  clock.c - the time now in unix milliseconds (clock.h).
 *
 *  CLOCK_REALTIME cannot fail with a valid timespec; were it ever to, the
 *  second from time() is better than a zero time.
 */
#include "protocol/clock.h"

#include <time.h>

int64_t clock_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_REALTIME, &ts) != 0) {
        ts.tv_sec = time(NULL);
        ts.tv_nsec = 0;
    }
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*  clock.h - the time now, as the whole system writes it: unix ms.
 *
 *  One function so that every timestamp (a handler's call_now_ms, a
 *  store's updated_at) comes from the same clock in the same unit. It is
 *  here rather than in call.h because the stores use it too and must not
 *  depend on the handler API.
 */
#ifndef RETAIL_CLOCK_H
#define RETAIL_CLOCK_H

#include <stdint.h>

/* Now, in unix milliseconds (CLOCK_REALTIME). */
int64_t clock_now_ms(void);

#endif

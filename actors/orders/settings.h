/*  settings.h - the orders service's own settings.
 *
 *      ZPL                              variable                          default
 *      retail/orders/lease_ms           RETAIL_ORDERS_LEASE_MS            15000
 *      retail/orders/hold_ms            RETAIL_ORDERS_HOLD_MS             600000
 *      retail/orders/recover_every_ms   RETAIL_ORDERS_RECOVER_EVERY_MS    1000
 *      retail/orders/crash_at           RETAIL_ORDERS_CRASH_AT            ""
 *
 *  lease_ms is how long a checkout owns its order before recovery may
 *  take it over; it must be longer than every deadline of the saga added
 *  up (reserve, charge, commit: see checkout.c), so recovery never races
 *  a live checkout of this process. hold_ms is how long an order may stay
 *  pending while payments does not answer before recovery ends it without
 *  payments (orders.h, "Payments down"). recover_every_ms is the period of
 *  recovery's passes. crash_at names a saga step (created, reserved,
 *  charged, committed, paid) once done which the process kills itself
 *  (SIGKILL): a test hook, honoured only with RETAIL_TEST_OPS=1.
 */
#ifndef RETAIL_ORDERS_SETTINGS_H
#define RETAIL_ORDERS_SETTINGS_H

#include "protocol/settings.h"

typedef struct {
    int lease_ms;
    int hold_ms;
    int recover_every_ms;
    char crash_at[24];
} orders_settings_t;

#endif

/*  settings.h - the payments service's own settings.
 *
 *      ZPL                                  variable                              default
 *      retail/payments/gateway              RETAIL_PAYMENTS_GATEWAY               "sim"
 *      retail/payments/gateway_latency_ms   RETAIL_PAYMENTS_GATEWAY_LATENCY_MS    0
 *      retail/payments/gateway_fail_percent RETAIL_PAYMENTS_GATEWAY_FAIL_PERCENT  0
 *      retail/payments/gateway_drop_percent RETAIL_PAYMENTS_GATEWAY_DROP_PERCENT  0
 *      retail/payments/gateway_timeout_ms   RETAIL_PAYMENTS_GATEWAY_TIMEOUT_MS    1000
 *      retail/payments/gateway_tries        RETAIL_PAYMENTS_GATEWAY_TRIES         3
 *      retail/payments/budget_ms            RETAIL_PAYMENTS_BUDGET_MS             4000
 *
 *  The simulated gateway's latency and its failure and drop rates are for
 *  tests and benchmarks (gateway.h). gateway_timeout_ms bounds one ask of
 *  the gateway; a request makes at most gateway_tries tries of a step
 *  (API.md: 3 in all), and all its steps fit in budget_ms, which should be
 *  under the broker's request deadline so that the caller hears an answer.
 */
#ifndef RETAIL_PAYMENTS_SETTINGS_H
#define RETAIL_PAYMENTS_SETTINGS_H

#include "protocol/settings.h"

typedef struct {
    char gateway[16];
    int gateway_latency_ms;
    int gateway_fail_percent;
    int gateway_drop_percent;
    int gateway_timeout_ms;
    int gateway_tries;
    int budget_ms;
} payments_settings_t;

#endif

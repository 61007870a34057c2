/*  gateway.c - the gateway factory, and the card checks every kind shares
 *  (gateway.h).
 *
 *  gateway_new picks the start function of config->kind from s_kinds and
 *  hands it the config; every kind is an actor answering the envelopes of
 *  gateway.h on a ROUTER at config->endpoint, so the payments service
 *  talks to any of them the same way (call_ask_at) and never knows which.
 *
 *  Adding a second implementation (say "acme", a real provider over
 *  HTTPS) touches neither the payments service nor the simulated gateway:
 *    1. a file of its own, actors/payments/gateway_acme.c, with its actor
 *       (its ROUTER, its provider client in the same loop, its own record
 *       under data_dir/gateway-acme if it keeps one) and one start
 *       function, gateway_acme_start, of type gateway_start_fn;
 *    2. that function declared in gateway_impl.h;
 *    3. a row {"acme", gateway_acme_start} in s_kinds below.
 *  The service then names "acme" as config.kind (a setting, not code).
 *  Settings only the new kind has go in a struct of their own in
 *  gateway_config_t, beside sim.
 */
#include "actors/payments/gateway.h"
#include "actors/payments/gateway_impl.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *kind;
    gateway_start_fn *start;
} s_kind_t;

static const s_kind_t s_kinds[] = {
    {"sim", gateway_sim_start},
};

zactor_t *gateway_new(const gateway_config_t *config, char *err, size_t errlen)
{
    if (!config || !config->kind || !config->kind[0]) {
        snprintf(err, errlen, "no gateway kind given");
        return NULL;
    }
    for (size_t i = 0; i < sizeof s_kinds / sizeof s_kinds[0]; i++)
        if (strcmp(s_kinds[i].kind, config->kind) == 0)
            return s_kinds[i].start(config, err, errlen);
    /* The list of known kinds is short; say it so the fix is obvious. */
    char known[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < sizeof s_kinds / sizeof s_kinds[0] && used < sizeof known; i++)
        used += (size_t)snprintf(known + used, sizeof known - used, "%s%s", i ? ", " : "",
                                 s_kinds[i].kind);
    snprintf(err, errlen, "unknown gateway kind '%.64s' (known: %s)", config->kind, known);
    return NULL;
}

void gateway_destroy(zactor_t **self_p)
{
    zactor_destroy(self_p);
}

bool gateway_luhn_valid(const char *number, size_t len)
{
    if (!number || len < 12 || len > 19)
        return false;
    /* From the right: every second digit doubled, 10..18 counted as the
     * sum of their digits (d * 2 - 9); the total must end in 0. */
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++) {
        char c = number[len - 1 - i];
        if (c < '0' || c > '9')
            return false;
        unsigned digit = (unsigned)(c - '0');
        if (i % 2 == 1) {
            digit *= 2;
            if (digit > 9)
                digit -= 9;
        }
        sum += digit;
    }
    return sum % 10 == 0;
}

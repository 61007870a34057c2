/*  gateway_impl.h - what each kind of gateway gives the factory
 *  (gateway.c): one start function, in a file of its own.
 *
 *  A start function does what gateway_new promises for its kind: it
 *  starts the actor bound to config->endpoint, with its record under
 *  config->data_dir, and returns it once it answers, or NULL with a
 *  reason in err. The config is only read during the call (the actor
 *  copies what it keeps). Nothing else of a kind is seen outside its file.
 */
#ifndef RETAIL_GATEWAY_IMPL_H
#define RETAIL_GATEWAY_IMPL_H

#include "actors/payments/gateway.h"

typedef zactor_t *gateway_start_fn(const gateway_config_t *config, char *err, size_t errlen);

/* "sim": the simulated gateway (gateway_sim.c). */
gateway_start_fn gateway_sim_start;

#endif

/*  services.h - the one list of the services this system has.
 *
 *  retaild runs them (all, or the ones named as roles), the bridge routes
 *  to them and serves their OpenAPI parts (router/api.h), and nothing else
 *  names a service: adding one is adding its folder and one line to
 *  services.c.
 */
#ifndef RETAIL_SERVICES_H
#define RETAIL_SERVICES_H

#include "actors/service.h"

/* Every service, in the order they start (and the reverse of the order
 * they stop); count receives how many. Static, never freed. */
const service_def_t *const *services_all(size_t *count);

/* The service called name, or NULL. */
const service_def_t *services_find(const char *name);

#endif

/*  services.c - the list (see services.h).
 *
 *  Order matters where one service calls another at start or from a
 *  background actor: the one called comes first, so that it is running
 *  before and still running after its callers.
 */
#include "actors/services.h"

#include "actors/catalog/catalog.h"
#include "actors/orders/orders.h"
#include "actors/payments/payments.h"
#include "actors/sys/sys.h"
#include "actors/users/users.h"

static const service_def_t *const s_all[] = {
    &sys_service,
    &users_service,
    &catalog_service,
    &payments_service,
    &orders_service, /* calls the catalog and payments */
};

const service_def_t *const *services_all(size_t *count)
{
    *count = sizeof s_all / sizeof s_all[0];
    return s_all;
}

const service_def_t *services_find(const char *name)
{
    for (size_t i = 0; i < sizeof s_all / sizeof s_all[0]; i++)
        if (streq(s_all[i]->name, name))
            return s_all[i];
    return NULL;
}

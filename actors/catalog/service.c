/*  service.c - the definition of the `catalog` service (actors/service.h).
 *
 *  Its shared state is the catalog environment under the process's data
 *  directory; it has no settings of its own yet.
 */
#include "actors/catalog/catalog.h"

static void *s_shared_new(const service_env_t *env, const void *settings, char *err, size_t errlen)
{
    (void)settings;
    return catalog_shared_new(env->common->data_dir, env->common->keys_dir, err, errlen);
}

static void s_shared_destroy(void **shared)
{
    catalog_shared_destroy((catalog_shared_t **)shared);
}

static int s_extra_workers(void *shared)
{
    /* A worker waiting for a disk flush uses no CPU, and every write that
     * waits joins the next commit (group commit): more workers, more
     * writes per flush (docs/BENCHMARKS.md, bench-catalog-writes). */
    (void)shared;
    return CATALOG_WRITE_WORKERS;
}

const service_def_t catalog_service = {
    .name = "catalog",
    .ops = catalog_ops,
    .shared_new = s_shared_new,
    .shared_destroy = s_shared_destroy,
    .state_new = catalog_state_new,
    .state_destroy = catalog_state_destroy,
    .extra_workers = s_extra_workers,
};

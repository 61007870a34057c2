/*  pool.c - see pool.h. Workers are stopped in parallel: $TERM is sent to
 *  all first, then each is awaited, so shutdown takes one request's time,
 *  not N of them. */
#include "actors/pool.h"

struct pool_t {
    int size;
    zactor_t **workers;
    atomic_uint_fast64_t restarts; /* the workers count here */
};

pool_t *pool_new(const worker_config_t *config, int size)
{
    pool_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->workers = calloc((size_t)size, sizeof *self->workers);
    if (!self->workers) {
        free(self);
        return NULL;
    }
    atomic_init(&self->restarts, 0);
    worker_config_t c = *config;
    c.restarts = &self->restarts;
    for (int i = 0; i < size; i++) {
        self->workers[i] = worker_new(&c);
        if (!self->workers[i]) {
            pool_destroy(&self);
            return NULL;
        }
        self->size++;
    }
    return self;
}

void pool_destroy(pool_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pool_t *self = *self_p;
    for (int i = 0; i < self->size; i++)
        zstr_send(self->workers[i], "$TERM");
    /* zactor_destroy sends $TERM again (harmless: a stopping actor reads
     * no more commands) and waits for the actor's exit signal. */
    for (int i = 0; i < self->size; i++)
        zactor_destroy(&self->workers[i]);
    free(self->workers);
    free(self);
    *self_p = NULL;
}

int pool_size(const pool_t *self)
{
    return self->size;
}

uint64_t pool_restarts(const pool_t *self)
{
    return atomic_load(&((pool_t *)self)->restarts);
}

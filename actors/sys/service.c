/*  service.c - the definition of the `sys` service (actors/service.h).
 *
 *  No state, no settings: its workers answer from the request alone.
 */
#include "actors/sys/sys.h"

const service_def_t sys_service = {
    .name = "sys",
    .ops = sys_ops,
};

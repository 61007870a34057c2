/*  sys.h - the built-in `sys` service: liveness checks and benchmarks.
 *
 *  ops:  ping            -> {"pong": true}
 *        echo  {any}     -> the args, unchanged
 *        whoami          -> {"caller": <the broker-authenticated caller name>}
 *        sleep {ms}      -> {"slept_ms": ms}; only when test ops are enabled
 *                           (RETAIL_TEST_OPS=1), to exercise deadlines
 *        wait {ms}       -> {"waited_ms": ms}, holding the request without
 *                           blocking the worker (call_after); test ops only
 *        ask {service, op, args?, timeout_ms? (1000)}
 *                        -> {"answer": <the data>}, or the callee's error:
 *                           asks through the broker as `sys` (call_ask);
 *                           test ops only, since it lends sys's name
 */
#ifndef RETAIL_SYS_H
#define RETAIL_SYS_H

#include "actors/service.h"
#include "actors/worker.h"

/* The dispatch table; with_test_ops adds `sleep`. Static, never freed. */
const worker_op_t *sys_ops(bool with_test_ops);

/* The service's definition (service.c): what retaild runs and the bridge routes. */
extern const service_def_t sys_service;

#endif

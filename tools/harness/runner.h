/*  runner.h - drives a scenario's virtual users against a broker and
 *  measures what they get: the engine of `loadgen`.
 *
 *  Two load models:
 *
 *  - closed loop (rate 0): every virtual user has one request in flight
 *    and sends its next as soon as the reply comes; latency is from send
 *    to reply. Throughput is whatever the system gives.
 *  - open loop (rate R): requests are due at a constant rate, one every
 *    1/R s, from the start. A due request goes to an idle virtual user;
 *    when none is idle it waits, and its latency still counts from when
 *    it was due, so a stall of the system shows in the percentiles
 *    instead of slowing the schedule down and hiding (what wrk2 calls
 *    coordinated omission). `vus` bounds the requests in flight. The loop
 *    waits with zpoller's millisecond resolution, so above 1000/s requests
 *    leave in bursts and one may go out up to a millisecond after it was
 *    due; that delay counts in its latency, as it should.
 *
 *  One thread, N DEALER sockets (virtual user v uses socket v % N). User v
 *  sends ids v, v + vus, v + 2 vus, ..., so id % vus finds the user of any
 *  reply without a map. A request that gets no reply within the timeout
 *  counts as `no_reply` and its user moves on (a late reply to it is
 *  unmatched and ignored).
 *
 *  Timeline: a warmup (not measured), the measured window, then a drain
 *  for the replies still outstanding (bounded by the request timeout).
 *  Replies received from the window's start on are measured, the drained
 *  ones included; the throughput counts those inside the window.
 *
 *  Ownership: the runner borrows the scenario, the certificate and the
 *  record for its whole life; the result belongs to the runner.
 */
#ifndef RETAIL_HARNESS_RUNNER_H
#define RETAIL_HARNESS_RUNNER_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "protocol/errors.h"
#include "tools/harness/histogram.h"
#include "tools/harness/record.h"
#include "tools/harness/scenario.h"

typedef struct runner_t runner_t;

typedef struct {
    const char *endpoint;
    zcert_t *cert;             /* NULL for a plain (inproc, ipc) endpoint */
    const char *server_public; /* Z85, with cert */
    size_t vus;                /* virtual users: the most requests in flight */
    size_t sockets;
    double seconds, warmup;
    double rate;        /* requests/s for the open loop; 0: closed loop */
    int timeout_ms;     /* a request's wait for its reply */
    uint64_t seed;      /* of every virtual user's random draws; 0: from the clock */
    const char *run_id; /* in {{run}} and {{unique}}; NULL: made from the clock */
    FILE *progress;     /* a line every second; NULL: none */
    record_t *record;   /* NULL: none */
} runner_options_t;

/* What one step (or the whole run) got. */
typedef struct {
    uint64_t requests; /* sent */
    uint64_t replies;  /* measured */
    uint64_t ok;       /* measured ok replies */
    uint64_t accepted; /* measured errors in the step's accept list */
    uint64_t errors[ERR__COUNT];
    uint64_t no_reply;    /* timed out, or still out at the end */
    uint64_t capture;     /* ok, but a capture found nothing */
    uint64_t missing_var; /* not sent: a variable it needs is not set */
    histogram_t *latency; /* ns */
} runner_stats_t;

typedef struct {
    runner_stats_t total;
    runner_stats_t *steps; /* scenario_step_count of them */
    size_t nsteps;
    double window_s;       /* the measured window as run */
    uint64_t in_window;    /* replies inside the window */
    uint64_t malformed;    /* replies that are not an MDP reply with an envelope */
    uint64_t unmatched;    /* replies to no request in flight */
    uint64_t due_late_max; /* open loop: the most requests due and not yet sent */
    uint64_t request_bytes_max;
    double cpu_s;         /* the harness's own CPU time (user + system) over the run */
    uint64_t replies_all; /* every matched reply, the warmup's too (for cpu_s) */
    bool interrupted;
    const char *run_id;
} runner_result_t;

runner_t *runner_new(const runner_options_t *options, const scenario_t *scenario, char *err,
                     size_t errlen);
void runner_destroy(runner_t **self_p);

/* Sets the record after runner_new (it needs the run's id, in the
 * result); borrowed until the runner is destroyed. */
void runner_set_record(runner_t *self, record_t *record);

/* Runs the whole timeline. 0, or -1 on a fatal error (a socket failed,
 * out of memory); the result holds what was measured either way. */
int runner_run(runner_t *self);
const runner_result_t *runner_result(const runner_t *self);

/* The sum of errors[] plus no_reply, capture and missing_var. */
uint64_t runner_stats_errors(const runner_stats_t *stats);

#endif

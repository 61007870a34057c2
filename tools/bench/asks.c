/*  asks.c - what replies that wait are worth: service A answers each
 *  request by asking service B (protocol/call.h, call_ask).
 *
 *      asks-bench [--seconds N] [--inflight K] [--delay MS] [--runs R]
 *                 [--a-workers N] [--a-capacity C]
 *
 *  One process: a broker on a private inproc endpoint, a pool of A
 *  (default 2 workers, each holding up to 256 requests) and a pool of B
 *  (2 workers), and one client keeping K requests in flight (default 256)
 *  through the broker, as a load harness does. Cases, each run R times
 *  (default 3) for N seconds (default 3), reporting the median rate:
 *
 *    ask-delayed   A asks B, B answers after MS (default 20) without
 *                  blocking (call_after): a blocking A would give
 *                  workers * 1000 / MS requests a second
 *    ask-at-once   A asks B, B answers at once
 *    echo          A answers at once (no ask): the floor of one hop
 *    blocking      A sleeps MS in its handler, as a worker that cannot wait
 *                  would (one short run: it is slow by design)
 *
 *  Every reply is checked: an error reply or a lost one (no reply for 5 s)
 *  fails the bench with exit status 1, since a rate of errors is no rate.
 */
#include "actors/pool.h"
#include "protocol/envelope.h"
#include "protocol/mdpcli.h"
#include "router/broker.h"

#include <czmq.h>
#include <getopt.h>

typedef struct {
    int delay_ms;
} bench_shared_t;

/* ---- service B ---- */

static void s_b_done(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    (void)answer;
    msgpack_pack_true(call_reply(call));
}

static void s_b_later(call_t *call, void *state)
{
    call_after(call, ((bench_shared_t *)state)->delay_ms, s_b_done);
}

static void s_b_now(call_t *call, void *state)
{
    (void)state;
    msgpack_pack_true(call_reply(call));
}

static const worker_op_t s_b_ops[] = {{"later", s_b_later}, {"now", s_b_now}, {NULL, NULL}};

/* ---- service A ---- */

static void s_a_answered(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    if (!answer->ok) {
        call_fail(call, answer->code, answer->message);
        return;
    }
    msgpack_pack_object(call_reply(call), *answer->data);
}

static void s_a_ask_later(call_t *call, void *state)
{
    (void)state;
    call_ask_args(call);
    call_ask(call, "b", "later", 5000, s_a_answered);
}

static void s_a_ask_now(call_t *call, void *state)
{
    (void)state;
    call_ask_args(call);
    call_ask(call, "b", "now", 5000, s_a_answered);
}

static void s_a_echo(call_t *call, void *state)
{
    (void)state;
    msgpack_pack_true(call_reply(call));
}

static void s_a_block(call_t *call, void *state)
{
    zclock_sleep(((bench_shared_t *)state)->delay_ms);
    msgpack_pack_true(call_reply(call));
}

static const worker_op_t s_a_ops[] = {{"ask-delayed", s_a_ask_later},
                                      {"ask-at-once", s_a_ask_now},
                                      {"echo", s_a_echo},
                                      {"blocking", s_a_block},
                                      {NULL, NULL}};

static void *s_state_new(void *shared)
{
    return shared; /* read-only: the delay */
}

/* ---- the client ---- */

static int s_send(mdpcli_t *client, const char *op, uint64_t id, msgpack_sbuffer *buf)
{
    msgpack_sbuffer_clear(buf);
    if (envelope_pack_request(buf, id, op, NULL, NULL, 0) != 0)
        return -1;
    return mdpcli_send(client, "a", buf->data, buf->size);
}

/* Keeps inflight requests of op going for seconds; the rate, or -1. */
static double s_run(mdpcli_t *client, const char *op, int inflight, double seconds)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    uint64_t next_id = 1;
    double rate = -1;
    for (int i = 0; i < inflight; i++)
        if (s_send(client, op, next_id++, &buf) != 0)
            goto cleanup;
    int64_t start = zclock_usecs();
    int64_t end = start + (int64_t)(seconds * 1e6);
    uint64_t done = 0;
    int outstanding = inflight;
    while (outstanding > 0) {
        zframe_t *frame = mdpcli_recv(client, 5000, NULL);
        if (!frame) {
            fprintf(stderr, "asks-bench: %s: a reply was lost\n", op);
            goto cleanup;
        }
        envelope_reply_t reply;
        const char *why;
        msgpack_zone_clear(&zone);
        bool ok =
            envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why) &&
            reply.ok;
        zframe_destroy(&frame);
        if (!ok) {
            fprintf(stderr, "asks-bench: %s: an error reply\n", op);
            goto cleanup;
        }
        done++;
        outstanding--;
        if (zclock_usecs() < end) {
            if (s_send(client, op, next_id++, &buf) != 0)
                goto cleanup;
            outstanding++;
        }
    }
    rate = (double)done / ((double)(zclock_usecs() - start) / 1e6);
cleanup:
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&buf);
    return rate;
}

/* Waits up to 5 s until the broker has `workers` workers of service. */
static int s_wait_ready(mdpcli_t *client, const char *service, int workers)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    int rc = -1;
    for (int64_t end = zclock_mono() + 5000; rc != 0 && zclock_mono() < end;) {
        if (mdpcli_send(client, "mmi.services", "", 0) != 0)
            break;
        zframe_t *frame = mdpcli_recv(client, 1000, NULL);
        msgpack_object list;
        size_t off = 0;
        msgpack_zone_clear(&zone);
        if (frame &&
            msgpack_unpack((char *)zframe_data(frame), zframe_size(frame), &off, &zone, &list) ==
                MSGPACK_UNPACK_SUCCESS &&
            list.type == MSGPACK_OBJECT_ARRAY)
            for (uint32_t i = 0; i < list.via.array.size; i++) {
                const msgpack_object *entry = &list.via.array.ptr[i];
                const msgpack_object *n = mp_map_get(entry, "workers");
                if (mp_str_eq(mp_map_get(entry, "name"), service) && n &&
                    n->type == MSGPACK_OBJECT_POSITIVE_INTEGER && n->via.u64 >= (uint64_t)workers)
                    rc = 0;
            }
        zframe_destroy(&frame);
        if (rc != 0)
            zclock_sleep(10);
    }
    msgpack_zone_destroy(&zone);
    return rc;
}

static int s_cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"seconds", required_argument, NULL, 's'},
                                            {"inflight", required_argument, NULL, 'k'},
                                            {"delay", required_argument, NULL, 'd'},
                                            {"runs", required_argument, NULL, 'r'},
                                            {"a-workers", required_argument, NULL, 'w'},
                                            {"a-capacity", required_argument, NULL, 'c'},
                                            {NULL, 0, NULL, 0}};
    double seconds = 3;
    int inflight = 256, runs = 3, a_workers = 2, a_capacity = 256;
    bench_shared_t shared = {.delay_ms = 20};
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 's':
            seconds = atof(optarg);
            break;
        case 'k':
            inflight = atoi(optarg);
            break;
        case 'd':
            shared.delay_ms = atoi(optarg);
            break;
        case 'r':
            runs = atoi(optarg);
            break;
        case 'w':
            a_workers = atoi(optarg);
            break;
        case 'c':
            a_capacity = atoi(optarg);
            break;
        default:
            fprintf(stderr, "usage: asks-bench [--seconds N] [--inflight K] [--delay MS] "
                            "[--runs R] [--a-workers N] [--a-capacity C]\n");
            return 2;
        }
    }
    if (seconds <= 0 || inflight < 1 || runs < 1 || runs > 99 || a_workers < 1 || a_capacity < 1 ||
        shared.delay_ms < 0) {
        fprintf(stderr, "asks-bench: bad arguments\n");
        return 2;
    }

    int status = 1;
    zsys_init();
    zsys_set_logstream(NULL);
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://asks-bench-%d", (int)getpid());
    /* A generous deadline: under this load a request waits its turn. */
    broker_config_t bc = {
        .inproc_endpoint = endpoint, .request_timeout_ms = 30000, .queue_limit = 100000};
    zactor_t *broker = broker_new(&bc);
    worker_config_t b = {.service = "b",
                         .ops = s_b_ops,
                         .endpoint = endpoint,
                         .capacity = 1024,
                         .state_new = s_state_new,
                         .shared = &shared};
    worker_config_t a = {.service = "a",
                         .ops = s_a_ops,
                         .endpoint = endpoint,
                         .capacity = a_capacity,
                         .state_new = s_state_new,
                         .shared = &shared};
    pool_t *pool_b = broker ? pool_new(&b, 2) : NULL;
    pool_t *pool_a = pool_b ? pool_new(&a, a_workers) : NULL;
    mdpcli_t *client = pool_a ? mdpcli_new_inproc(endpoint, "bench") : NULL;
    if (!client) {
        fprintf(stderr, "asks-bench: could not start\n");
        goto cleanup;
    }
    if (s_wait_ready(client, "a", a_workers) != 0 || s_wait_ready(client, "b", 2) != 0) {
        fprintf(stderr, "asks-bench: the workers did not register\n");
        goto cleanup;
    }

    printf("A: %d workers of capacity %d; B: 2 workers; %d in flight; B's delay %d ms\n", a_workers,
           a_capacity, inflight, shared.delay_ms);
    const char *cases[] = {"ask-delayed", "ask-at-once", "echo"};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        double rates[99];
        for (int r = 0; r < runs; r++) {
            rates[r] = s_run(client, cases[c], inflight, seconds);
            if (rates[r] < 0)
                goto cleanup;
        }
        qsort(rates, (size_t)runs, sizeof rates[0], s_cmp_double);
        printf("%-12s median %8.0f req/s  (runs:", cases[c], rates[runs / 2]);
        for (int r = 0; r < runs; r++)
            printf(" %.0f", rates[r]);
        printf(")\n");
    }
    /* Blocking: at most a_workers * 1000 / delay a second; one short run,
     * with no more in flight than it can answer in that time. */
    int blocking_inflight = inflight < 2 * a_workers ? inflight : 2 * a_workers;
    double blocking = s_run(client, "blocking", blocking_inflight, seconds < 2 ? seconds : 2);
    if (blocking < 0)
        goto cleanup;
    printf("%-12s          %8.0f req/s  (one run, %d in flight; bound %d)\n", "blocking", blocking,
           blocking_inflight, shared.delay_ms ? a_workers * 1000 / shared.delay_ms : 0);
    status = 0;
cleanup:
    mdpcli_destroy(&client);
    pool_destroy(&pool_a);
    pool_destroy(&pool_b);
    broker_destroy(&broker);
    return status;
}

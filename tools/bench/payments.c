/*  payments.c - charges per second through the payments service, with the
 *  simulated gateway answering at once and after a latency.
 *
 *      payments-bench [--seconds N] [--inflight K] [--latency MS] [--runs R]
 *
 *  One process, as retaild runs it: a broker on a private inproc endpoint
 *  and the payments service (actors/payments/: its pool, its store in a
 *  temporary data directory, the gateway as its background actor), and a
 *  client named "orders" keeping K charges in flight (default 256), each
 *  of a new order with the approved test card. For latency 0 and then MS
 *  (default 20), R runs (default 3) of N seconds (default 5): the median
 *  charges per second, and the ratio of the two. Every charge must be
 *  answered captured: anything else fails the bench (exit 1).
 *
 *  Each charge is three durable writes of the payments store (begin,
 *  authorize, capture, each with its log entry) and two of the gateway's
 *  record, so the disk's flushes, shared by group commit, bound the rate;
 *  the latency must not: a pool that blocked on the gateway would fall to
 *  workers * 1000 / MS charges a second.
 */
#include "actors/payments/payments.h"
#include "protocol/envelope.h"
#include "protocol/mdpcli.h"
#include "router/broker.h"

#include <czmq.h>
#include <getopt.h>

static int s_send(mdpcli_t *client, uint64_t id, const char *run, msgpack_sbuffer *args,
                  msgpack_sbuffer *body)
{
    char order[64];
    snprintf(order, sizeof order, "bench-%s-%llu", run, (unsigned long long)id);
    msgpack_sbuffer_clear(args);
    msgpack_sbuffer_clear(body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, args, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    mp_pack_str(&pk, "order_id");
    mp_pack_str(&pk, order);
    mp_pack_str(&pk, "amount_cents");
    msgpack_pack_int(&pk, 1000 + (int)(id % 1000));
    mp_pack_str(&pk, "currency");
    mp_pack_str(&pk, "EUR");
    mp_pack_str(&pk, "card");
    msgpack_pack_map(&pk, 4);
    mp_pack_str(&pk, "number");
    mp_pack_str(&pk, "4242424242424242");
    mp_pack_str(&pk, "exp_month");
    msgpack_pack_int(&pk, 12);
    mp_pack_str(&pk, "exp_year");
    msgpack_pack_int(&pk, 2035);
    mp_pack_str(&pk, "cvc");
    mp_pack_str(&pk, "123");
    if (envelope_pack_request(body, id, "payment.charge", NULL, args->data, args->size) != 0)
        return -1;
    return mdpcli_send(client, "payments", body->data, body->size);
}

/* Keeps inflight charges going for seconds; the rate, or -1. */
static double s_run(mdpcli_t *client, const char *run, int inflight, double seconds)
{
    msgpack_sbuffer args, body;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&body);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    double rate = -1;
    uint64_t next = 1, done = 0;
    int outstanding = 0;
    int64_t start = zclock_usecs(), end = start + (int64_t)(seconds * 1e6);
    for (; outstanding < inflight; outstanding++)
        if (s_send(client, next++, run, &args, &body) != 0)
            goto cleanup;
    while (outstanding > 0) {
        zframe_t *frame = mdpcli_recv(client, 10000, NULL);
        if (!frame) {
            fprintf(stderr, "payments-bench: a charge was not answered\n");
            goto cleanup;
        }
        envelope_reply_t reply;
        const char *why;
        msgpack_zone_clear(&zone);
        bool ok =
            envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why) &&
            reply.ok && mp_str_eq(mp_map_get(&reply.data, "status"), "captured");
        zframe_destroy(&frame);
        if (!ok) {
            fprintf(stderr, "payments-bench: a charge was not captured\n");
            goto cleanup;
        }
        done++;
        outstanding--;
        if (zclock_usecs() < end) {
            if (s_send(client, next++, run, &args, &body) != 0)
                goto cleanup;
            outstanding++;
        }
    }
    rate = (double)done / ((double)(zclock_usecs() - start) / 1e6);
cleanup:
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&body);
    return rate;
}

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Starts payments with the given gateway latency, runs the charges, stops
 * it; the median rate, or -1. */
static double s_case(const char *endpoint, const char *dir, int latency, int inflight,
                     double seconds, int runs)
{
    char value[16], err[256];
    snprintf(value, sizeof value, "%d", latency);
    setenv("RETAIL_PAYMENTS_GATEWAY_LATENCY_MS", value, 1);
    settings_t settings;
    settings_source_t *source = settings_source_new(NULL, err, sizeof err);
    double median = -1;
    service_t *payments = NULL;
    mdpcli_t *client = NULL;
    if (!source || settings_load_from(&settings, source, err, sizeof err) != 0)
        goto cleanup;
    snprintf(settings.data_dir, sizeof settings.data_dir, "%s", dir);
    settings_derive(&settings);
    service_env_t env = {.common = &settings, .source = source, .broker_endpoint = endpoint};
    payments = service_start(&payments_service, &env, err, sizeof err);
    client = payments ? mdpcli_new_inproc(endpoint, "orders") : NULL;
    if (!client)
        goto cleanup;
    double rates[99];
    for (int r = 0; r < runs; r++) {
        char run[32];
        snprintf(run, sizeof run, "%d-%d", latency, r);
        if ((rates[r] = s_run(client, run, inflight, seconds)) < 0)
            goto cleanup;
    }
    qsort(rates, (size_t)runs, sizeof rates[0], s_cmp);
    printf("gateway latency %3d ms: median %7.0f charges/s  (runs:", latency, rates[runs / 2]);
    for (int r = 0; r < runs; r++)
        printf(" %.0f", rates[r]);
    printf(")\n");
    median = rates[runs / 2];
cleanup:
    if (median < 0)
        fprintf(stderr, "payments-bench: %s\n", err[0] ? err : "the case failed");
    mdpcli_destroy(&client);
    service_stop(&payments);
    settings_source_destroy(&source);
    return median;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"seconds", required_argument, NULL, 's'},
                                            {"inflight", required_argument, NULL, 'k'},
                                            {"latency", required_argument, NULL, 'l'},
                                            {"runs", required_argument, NULL, 'r'},
                                            {NULL, 0, NULL, 0}};
    double seconds = 5;
    int inflight = 256, latency = 20, runs = 3, opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        if (opt == 's')
            seconds = atof(optarg);
        else if (opt == 'k')
            inflight = atoi(optarg);
        else if (opt == 'l')
            latency = atoi(optarg);
        else if (opt == 'r')
            runs = atoi(optarg);
        else {
            fprintf(stderr, "usage: payments-bench [--seconds N] [--inflight K] [--latency MS] "
                            "[--runs R]\n");
            return 2;
        }
    }
    if (seconds <= 0 || inflight < 1 || latency < 0 || runs < 1 || runs > 99)
        return 2;
    zsys_init();
    zsys_set_logstream(NULL);
    char dir[] = "/tmp/payments-bench.XXXXXX";
    if (!mkdtemp(dir)) {
        fprintf(stderr, "payments-bench: no temporary directory\n");
        return 1;
    }
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://payments-bench-%d", (int)getpid());
    broker_config_t bc = {
        .inproc_endpoint = endpoint, .request_timeout_ms = 30000, .queue_limit = 100000};
    zactor_t *broker = broker_new(&bc);
    int status = 1;
    if (broker) {
        printf("payments: %d charges in flight, %g s per run, median of %d\n", inflight, seconds,
               runs);
        double at_once = s_case(endpoint, dir, 0, inflight, seconds, runs);
        double slow = at_once > 0 ? s_case(endpoint, dir, latency, inflight, seconds, runs) : -1;
        if (slow > 0) {
            printf("ratio at %d ms / at once: %.2f\n", latency, slow / at_once);
            status = 0;
        }
    }
    broker_destroy(&broker);
    zdir_t *tree = zdir_new(dir, NULL);
    if (tree)
        zdir_remove(tree, true);
    zdir_destroy(&tree);
    return status;
}

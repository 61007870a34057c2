/*  payment_log.c - durable appends per second to the payment store's
 *  transaction log, by number of writers (build/payment-log-bench).
 *
 *      payment-log-bench [--dir DIR] [--payments P] [--runs R] [--no-group]
 *                        [WRITERS...]          (default: 1 4 16)
 *
 *  For each writer count N, R times (default 3) on a fresh data directory
 *  under DIR (default /tmp): N threads, each with its own payment_store_t
 *  on the one shared handle (as the payments workers share their
 *  environment), begin P payments each (default 200; untimed), wait for
 *  each other, and then, timed, apply an authorize and a capture to each
 *  of them: 2 * P log entries per thread, every one appended in the
 *  payment's own durable write (kv_write, group commit). It prints, per
 *  N, the median appends/s of the runs, the runs themselves, and the
 *  writes per commit of the median run (kv_write_stats over the timed
 *  part: 1 when nothing was grouped). --no-group turns group commit off
 *  (kv_set_group_commit) to compare.
 */
/* The store's private header: the bench reads its kv_t's commit counters
 * and turns group commit off, which the public interface does not offer. */
#include "storage/payments/payment_store_impl.h"

#include <czmq.h>
#include <ftw.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_WRITERS_MAX 100 /* a store handle each; LMDB has 126 reader slots */
#define S_RUNS_MAX 15

static int s_remove(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)type;
    (void)ftw;
    if (remove(path) != 0)
        fprintf(stderr, "payment-log-bench: cannot remove %s\n", path);
    return 0;
}

/* rm -rf path: children first (FTW_DEPTH), links not followed. */
static void s_rmtree(const char *path)
{
    if (nftw(path, s_remove, 16, FTW_DEPTH | FTW_PHYS) != 0)
        fprintf(stderr, "payment-log-bench: cannot remove %s\n", path);
}

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

typedef struct {
    payment_store_shared_t *shared;
    pthread_barrier_t *ready, *go;
    int index, payments;
    char (*ids)[PAYMENT_ID_MAX + 1];
    bool failed;
} s_writer_t;

static void *s_writer_run(void *arg)
{
    s_writer_t *w = arg;
    payment_store_t *store = payment_store_open(w->shared);
    w->failed = !store;
    for (int i = 0; store && i < w->payments && !w->failed; i++) {
        payment_t p = {.amount_cents = 1000, .exp_month = 12, .exp_year = 2031}, out;
        snprintf(p.order_id, sizeof p.order_id, "bench-%d-%d", w->index, i);
        memcpy(p.currency, "EUR", 4);
        memcpy(p.brand, "visa", 5);
        memcpy(p.last4, "4242", 5);
        bool created;
        w->failed = payment_store_begin(store, &p, &out, &created) != STORE_OK || !created;
        snprintf(w->ids[i], PAYMENT_ID_MAX + 1, "%s", out.id);
    }
    pthread_barrier_wait(w->ready);
    pthread_barrier_wait(w->go);
    static const payment_event_type_t steps[2] = {PAYMENT_EVENT_AUTHORIZE, PAYMENT_EVENT_CAPTURE};
    for (int i = 0; store && i < w->payments && !w->failed; i++)
        for (int s = 0; s < 2 && !w->failed; s++) {
            payment_event_t e = {.type = steps[s], .amount_cents = 1000, .gateway_id = "g"};
            payment_t out;
            w->failed = payment_store_apply(store, w->ids[i], &e, &out) != STORE_OK;
        }
    payment_store_close(&store);
    return NULL;
}

typedef struct {
    double appends_per_s;
    double writes_per_commit;
} s_result_t;

/* One run of n writers in a fresh directory under base; 0, or -1. */
static int s_run(const char *base, int n, int payments, bool group, s_result_t *result)
{
    char *dir = zsys_sprintf("%s/payment-log-bench-XXXXXX", base);
    if (!dir || !mkdtemp(dir)) {
        fprintf(stderr, "payment-log-bench: cannot make a directory under %s\n", base);
        zstr_free(&dir);
        return -1;
    }
    char *keys = zsys_sprintf("%s/keys", dir);
    char err[256];
    int rc = -1;
    payment_store_shared_t *shared = payment_store_shared_new(dir, keys, err, sizeof err);
    s_writer_t *w = calloc((size_t)n, sizeof *w);
    pthread_t *threads = calloc((size_t)n, sizeof *threads);
    pthread_barrier_t ready, go;
    int started = 0;
    if (!shared || !w || !threads) {
        fprintf(stderr, "payment-log-bench: %s\n", shared ? "out of memory" : err);
        goto cleanup;
    }
    kv_set_group_commit(shared->kv, group);
    pthread_barrier_init(&ready, NULL, (unsigned)n + 1);
    pthread_barrier_init(&go, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        w[i] = (s_writer_t){.shared = shared,
                            .ready = &ready,
                            .go = &go,
                            .index = i,
                            .payments = payments,
                            .ids = calloc((size_t)payments, PAYMENT_ID_MAX + 1)};
        if (!w[i].ids || pthread_create(&threads[i], NULL, s_writer_run, &w[i]) != 0) {
            fprintf(stderr, "payment-log-bench: cannot start writer %d\n", i);
            abort(); /* the others wait at the barrier forever */
        }
        started++;
    }
    pthread_barrier_wait(&ready);
    unsigned long writes0, commits0, writes1, commits1;
    kv_write_stats(shared->kv, &writes0, &commits0);
    int64_t t0 = s_now_ns();
    pthread_barrier_wait(&go);
    bool failed = false;
    for (int i = 0; i < started; i++) {
        pthread_join(threads[i], NULL);
        failed |= w[i].failed;
    }
    int64_t t1 = s_now_ns();
    kv_write_stats(shared->kv, &writes1, &commits1);
    pthread_barrier_destroy(&ready);
    pthread_barrier_destroy(&go);
    if (failed) {
        fprintf(stderr, "payment-log-bench: a write failed\n");
        goto cleanup;
    }
    result->appends_per_s = 2.0 * n * payments / ((double)(t1 - t0) / 1e9);
    result->writes_per_commit =
        commits1 > commits0 ? (double)(writes1 - writes0) / (double)(commits1 - commits0) : 0;
    rc = 0;
cleanup:
    for (int i = 0; w && i < n; i++)
        free(w[i].ids);
    free(w);
    free(threads);
    payment_store_shared_destroy(&shared);
    s_rmtree(dir);
    zstr_free(&keys);
    zstr_free(&dir);
    return rc;
}

static int s_cmp_result(const void *a, const void *b)
{
    double x = ((const s_result_t *)a)->appends_per_s, y = ((const s_result_t *)b)->appends_per_s;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *base = "/tmp";
    int payments = 200, runs = 3;
    bool group = true;
    int writers[16], n_writers = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--dir") == 0 && i + 1 < argc)
            base = argv[++i];
        else if (strcmp(argv[i], "--payments") == 0 && i + 1 < argc)
            payments = atoi(argv[++i]);
        else if (strcmp(argv[i], "--runs") == 0 && i + 1 < argc)
            runs = atoi(argv[++i]);
        else if (strcmp(argv[i], "--no-group") == 0)
            group = false;
        else if (argv[i][0] != '-' && n_writers < 16)
            writers[n_writers++] = atoi(argv[i]);
        else {
            fprintf(stderr,
                    "usage: %s [--dir DIR] [--payments P] [--runs R] [--no-group] "
                    "[WRITERS...]\n",
                    argv[0]);
            return 2;
        }
    }
    if (n_writers == 0) {
        writers[n_writers++] = 1;
        writers[n_writers++] = 4;
        writers[n_writers++] = 16;
    }
    if (payments < 1 || runs < 1 || runs > S_RUNS_MAX) {
        fprintf(stderr, "payment-log-bench: --payments >= 1, --runs 1..%d\n", S_RUNS_MAX);
        return 2;
    }
    zsys_init();
    printf("durable log appends (authorize + capture), group commit %s, %d payments a writer\n",
           group ? "on" : "off", payments);
    for (int k = 0; k < n_writers; k++) {
        int n = writers[k];
        if (n < 1 || n > S_WRITERS_MAX) {
            fprintf(stderr, "payment-log-bench: writers 1..%d\n", S_WRITERS_MAX);
            return 2;
        }
        s_result_t results[S_RUNS_MAX];
        for (int r = 0; r < runs; r++)
            if (s_run(base, n, payments, group, &results[r]) != 0)
                return 1;
        s_result_t sorted[S_RUNS_MAX];
        memcpy(sorted, results, sizeof(s_result_t) * (size_t)runs);
        qsort(sorted, (size_t)runs, sizeof sorted[0], s_cmp_result);
        const s_result_t *median = &sorted[runs / 2];
        printf("writers %3d  appends/s %8.0f  (runs:", n, median->appends_per_s);
        for (int r = 0; r < runs; r++)
            printf(" %.0f", results[r].appends_per_s);
        printf(")  writes/commit %.1f\n", median->writes_per_commit);
    }
    return 0;
}

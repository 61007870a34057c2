/*  catalog_store.c - times the catalog store in-process
 *  (build/catalog-store-bench): searches on a seeded catalog (the data
 *  dir comes from retail-seed), or concurrent stock writes.
 *
 *      catalog-store-bench --data-dir DIR [-q WORD] [-c SLUG] [-n RUNS]
 *      catalog-store-bench --data-dir DIR --writers N [--seconds S] [--no-group]
 *
 *  Search mode (no --writers): opens DIR/catalog with
 *  catalog_store_names, looks the category up by slug
 *  (catalog_category_list), runs one untimed warm-up search, then times
 *  RUNS calls of catalog_search (q, that category and its subtree,
 *  relevance, limit 20) and prints the page size and p50/p99/max in µs.
 *
 *  Writer mode (--writers N): measures what group commit (kv_write in
 *  storage/kv.h) buys concurrent writers. It needs no seeded catalog:
 *  it looks up S_PRODUCTS products of its own by sku (bench-writer-NNNN)
 *  and creates those missing, with a stock large enough never to run out,
 *  so a later run on the same DIR reuses them. Then N threads, each with
 *  its own catalog_store_t on the one kv_t (as the catalog workers of a
 *  domain share their environment), loop for S seconds (default 5):
 *  catalog_stock_reserve of a new order id (one line, qty 1, a random
 *  product of those) then catalog_stock_release of it, timing each of the
 *  two writes. Stock is unchanged at the end but every order leaves its
 *  released reservation in the store. --no-group turns group commit off
 *  (kv_set_group_commit) to compare. It prints one line: writers, group
 *  on/off, writes (calls), writes/s, p50/p99 of a write in µs, and
 *  kv_write_stats' counters over the timed loop only (the commits, and
 *  the writes per commit: 1 when nothing was grouped).
 */
#include "storage/catalog/catalog_store.h"

#include <czmq.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_MAP_SIZE ((size_t)16 << 30)
#define S_CATEGORIES_MAX 4096
#define S_PRODUCTS 1000   /* writer mode: products the writers pick from */
#define S_STOCK 1000000   /* theirs at creation */
#define S_WRITERS_MAX 100 /* a store handle each; LMDB has 126 reader slots */
#define S_LATENCIES 65536 /* first size of a writer's latency array */

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The id of the category with this slug into out; -1 if none. */
static int s_category_by_slug(catalog_store_t *store, const char *slug,
                              char out[CATALOG_ID_MAX + 1])
{
    category_t *all = calloc(S_CATEGORIES_MAX, sizeof *all);
    int count = 0, found = -1;
    if (all && catalog_category_list(store, all, S_CATEGORIES_MAX, &count) == CATALOG_OK)
        for (int i = 0; i < count && found < 0; i++)
            if (strcmp(all[i].slug, slug) == 0) {
                snprintf(out, CATALOG_ID_MAX + 1, "%s", all[i].id);
                found = 0;
            }
    free(all);
    return found;
}

/* ---- writer mode ---- */

/* The ids of the bench's own products into ids, created if missing;
 * 0, or -1 with a message. */
static int s_bench_products(catalog_store_t *store, char (*ids)[CATALOG_ID_MAX + 1])
{
    product_t *p = calloc(1, sizeof *p);
    if (!p) {
        fprintf(stderr, "catalog-store-bench: out of memory\n");
        return -1;
    }
    int created = 0, rc = 0;
    for (int i = 0; i < S_PRODUCTS && rc == 0; i++) {
        char sku[CATALOG_SKU_MAX + 1];
        snprintf(sku, sizeof sku, "bench-writer-%04d", i);
        catalog_status_t status = catalog_product_by_sku(store, sku, ids[i]);
        if (status == CATALOG_NOT_FOUND) {
            memset(p, 0, sizeof *p);
            snprintf(p->sku, sizeof p->sku, "%s", sku);
            snprintf(p->name, sizeof p->name, "Writer bench product %d", i);
            snprintf(p->description, sizeof p->description,
                     "Made by catalog-store-bench --writers to reserve and release.");
            p->price_cents = 100 + i;
            memcpy(p->currency, "EUR", 4);
            p->stock = S_STOCK; /* category_id "": none */
            status = catalog_product_create(store, p);
            if (status == CATALOG_OK) {
                snprintf(ids[i], CATALOG_ID_MAX + 1, "%s", p->id);
                created++;
            }
        }
        if (status != CATALOG_OK) {
            fprintf(stderr, "catalog-store-bench: product %s: status %d\n", sku, (int)status);
            rc = -1;
        }
    }
    if (rc == 0 && created > 0)
        fprintf(stderr, "catalog-store-bench: created %d products\n", created);
    free(p);
    return rc;
}

/* The writers wait for go, so that they start together and the clock
 * starts when they do; a writer that could not be started leaves the
 * others a deadline of 0 (they stop at once). */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool go;
    int64_t deadline; /* s_now_ns() */
} s_start_t;

typedef struct {
    catalog_store_t *store;
    const char (*ids)[CATALOG_ID_MAX + 1];
    const char *run; /* order ids start with it, so no run repeats one */
    int index;
    s_start_t *start;
    uint32_t random; /* xorshift32 state, not 0 */
    int64_t *ns;     /* a latency per write */
    size_t count, cap;
    const char *failed; /* the call that stopped this writer, or NULL */
    catalog_status_t status;
} s_writer_t;

static bool s_record(s_writer_t *w, int64_t ns)
{
    if (w->count == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : S_LATENCIES;
        int64_t *grown = realloc(w->ns, cap * sizeof *grown);
        if (!grown) {
            w->failed = "realloc";
            return false;
        }
        w->ns = grown;
        w->cap = cap;
    }
    w->ns[w->count++] = ns;
    return true;
}

static void *s_writer_run(void *arg)
{
    s_writer_t *w = arg;
    pthread_mutex_lock(&w->start->lock);
    while (!w->start->go)
        pthread_cond_wait(&w->start->cond, &w->start->lock);
    int64_t deadline = w->start->deadline;
    pthread_mutex_unlock(&w->start->lock);
    for (unsigned long order = 0; !w->failed && s_now_ns() < deadline; order++) {
        w->random ^= w->random << 13;
        w->random ^= w->random >> 17;
        w->random ^= w->random << 5;
        stock_line_t line = {.qty = 1};
        snprintf(line.product_id, sizeof line.product_id, "%s", w->ids[w->random % S_PRODUCTS]);
        char order_id[CATALOG_ORDER_ID_MAX + 1];
        stock_short_t short_product;
        snprintf(order_id, sizeof order_id, "%s-%d-%lu", w->run, w->index, order);

        int64_t start = s_now_ns();
        w->status = catalog_stock_reserve(w->store, order_id, &line, 1, &short_product);
        if (!s_record(w, s_now_ns() - start))
            break;
        if (w->status != CATALOG_OK) {
            w->failed = "catalog_stock_reserve";
            break;
        }
        start = s_now_ns();
        w->status = catalog_stock_release(w->store, order_id);
        if (!s_record(w, s_now_ns() - start))
            break;
        if (w->status != CATALOG_OK)
            w->failed = "catalog_stock_release";
    }
    return NULL;
}

static int s_writer_mode(kv_t *env, int writers, double seconds, bool group)
{
    catalog_store_t **stores = calloc((size_t)writers, sizeof *stores);
    s_writer_t *w = calloc((size_t)writers, sizeof *w);
    pthread_t *threads = calloc((size_t)writers, sizeof *threads);
    char(*ids)[CATALOG_ID_MAX + 1] = calloc(S_PRODUCTS, sizeof *ids);
    int64_t *all = NULL;
    int status = 1, started = 0;
    if (!stores || !w || !threads || !ids) {
        fprintf(stderr, "catalog-store-bench: out of memory\n");
        goto cleanup;
    }
    for (int i = 0; i < writers; i++)
        if (!(stores[i] = catalog_store_open(env, 0))) {
            fprintf(stderr, "catalog-store-bench: cannot open store handle %d\n", i + 1);
            goto cleanup;
        }
    /* An environment from an older version gets its missing indexes
     * before anything writes (catalog_store.h). */
    if (catalog_store_upgrade(env, 0) != CATALOG_OK) {
        fprintf(stderr, "catalog-store-bench: catalog_store_upgrade failed\n");
        goto cleanup;
    }
    if (s_bench_products(stores[0], ids) != 0)
        goto cleanup;
    kv_set_group_commit(env, group);

    char run[32];
    snprintf(run, sizeof run, "bench-%" PRIx64, (uint64_t)zclock_time());
    s_start_t start = {.deadline = 0};
    pthread_mutex_init(&start.lock, NULL);
    pthread_cond_init(&start.cond, NULL);
    for (int i = 0; i < writers; i++) {
        w[i] = (s_writer_t){.store = stores[i],
                            .ids = (const char(*)[CATALOG_ID_MAX + 1]) ids,
                            .run = run,
                            .index = i,
                            .start = &start,
                            .random = (2463534242u + (uint32_t)i * 2654435761u) | 1};
        if (pthread_create(&threads[i], NULL, s_writer_run, &w[i]) != 0) {
            fprintf(stderr, "catalog-store-bench: cannot start writer %d\n", i + 1);
            break;
        }
        started++;
    }
    unsigned long writes0 = 0, commits0 = 0, writes1 = 0, commits1 = 0;
    kv_write_stats(env, &writes0, &commits0);
    pthread_mutex_lock(&start.lock);
    int64_t begun = s_now_ns();
    if (started == writers)
        start.deadline = begun + (int64_t)(seconds * 1e9);
    start.go = true;
    pthread_cond_broadcast(&start.cond);
    pthread_mutex_unlock(&start.lock);
    for (int i = 0; i < started; i++)
        pthread_join(threads[i], NULL);
    int64_t elapsed = s_now_ns() - begun;
    kv_write_stats(env, &writes1, &commits1);
    pthread_cond_destroy(&start.cond);
    pthread_mutex_destroy(&start.lock);
    if (started < writers)
        goto cleanup;

    size_t total = 0;
    bool failed = false;
    for (int i = 0; i < writers; i++) {
        total += w[i].count;
        if (w[i].failed) {
            fprintf(stderr, "catalog-store-bench: writer %d: %s failed (status %d)\n", i + 1,
                    w[i].failed, (int)w[i].status);
            failed = true;
        }
    }
    if (failed || total == 0) {
        if (total == 0)
            fprintf(stderr, "catalog-store-bench: no write was made\n");
        goto cleanup;
    }
    all = malloc(total * sizeof *all);
    if (!all) {
        fprintf(stderr, "catalog-store-bench: out of memory\n");
        goto cleanup;
    }
    size_t n = 0;
    for (int i = 0; i < writers; i++) {
        memcpy(all + n, w[i].ns, w[i].count * sizeof *all);
        n += w[i].count;
    }
    qsort(all, total, sizeof *all, s_cmp_i64);
    unsigned long kv_writes = writes1 - writes0, commits = commits1 - commits0;
    printf("writers %d, group %s: %zu writes in %.2f s, %.0f writes/s, p50 %.0f us, p99 %.0f us; "
           "kv: %lu writes in %lu commits, %.2f writes/commit\n",
           writers, group ? "on" : "off", total, (double)elapsed / 1e9,
           (double)total * 1e9 / (double)elapsed, (double)all[total / 2] / 1e3,
           (double)all[total * 99 / 100] / 1e3, kv_writes, commits,
           commits ? (double)kv_writes / (double)commits : 0.0);
    status = 0;

cleanup:
    free(all);
    if (w)
        for (int i = 0; i < writers; i++)
            free(w[i].ns);
    if (stores)
        for (int i = 0; i < writers; i++)
            catalog_store_close(&stores[i]);
    free(ids);
    free(threads);
    free(w);
    free(stores);
    return status;
}

static void s_usage(void)
{
    fprintf(stderr,
            "usage: catalog-store-bench --data-dir DIR [-q WORD] [-c SLUG] [-n RUNS]\n"
            "       catalog-store-bench --data-dir DIR --writers N [--seconds S] [--no-group]\n");
}

int main(int argc, char **argv)
{
    const char *data_dir = NULL, *word = "compact", *slug = "electronics";
    int runs = 2000, writers = 0;
    double seconds = 5;
    bool group = true, writer_flags = false, bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        const char *flag = argv[i], *value = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (strcmp(flag, "--no-group") == 0) {
            group = false;
            writer_flags = true;
            continue;
        }
        if (!value) {
            bad = true;
            break;
        }
        i++;
        if (strcmp(flag, "--data-dir") == 0)
            data_dir = value;
        else if (strcmp(flag, "-q") == 0)
            word = value;
        else if (strcmp(flag, "-c") == 0)
            slug = value;
        else if (strcmp(flag, "-n") == 0)
            runs = atoi(value);
        else if (strcmp(flag, "--writers") == 0) {
            long n = strtol(value, &end, 10);
            writers = *end || n < 1 || n > S_WRITERS_MAX ? -1 : (int)n;
        } else if (strcmp(flag, "--seconds") == 0) {
            seconds = strtod(value, &end);
            writer_flags = true;
            if (*end || !(seconds > 0 && seconds <= 86400))
                bad = true;
        } else
            bad = true;
    }
    if (bad || !data_dir || runs < 1 || writers < 0 || (writer_flags && writers == 0)) {
        s_usage();
        if (writers < 0)
            fprintf(stderr, "catalog-store-bench: --writers takes 1..%d\n", S_WRITERS_MAX);
        return 2;
    }
    char dir[4096], err[256];
    snprintf(dir, sizeof dir, "%s/catalog", data_dir);
    kv_t *env =
        kv_open(dir, S_MAP_SIZE, catalog_store_names, NULL, CATALOG_STORE_DBS, err, sizeof err);
    if (!env) {
        fprintf(stderr, "catalog-store-bench: %s\n", err);
        return 1;
    }
    if (writers > 0) {
        int status = s_writer_mode(env, writers, seconds, group);
        kv_close(&env);
        zsys_shutdown();
        return status;
    }
    catalog_store_t *store = catalog_store_open(env, 0);
    char category[CATALOG_ID_MAX + 1];
    int64_t *ns = calloc((size_t)runs, sizeof *ns);
    catalog_page_t page = {.items = calloc(20, sizeof(product_t))};
    int status = 1;
    if (!store || !ns || !page.items)
        fprintf(stderr, "catalog-store-bench: cannot open the store\n");
    else if (s_category_by_slug(store, slug, category) != 0)
        fprintf(stderr, "catalog-store-bench: no category %s\n", slug);
    else {
        catalog_query_t q = {
            .q = word, .category_id = category, .sort = SORT_RELEVANCE, .limit = 20};
        status = catalog_search(store, &q, &page) == CATALOG_OK ? 0 : 1; /* warm-up */
        for (int i = 0; i < runs && status == 0; i++) {
            int64_t start = s_now_ns();
            if (catalog_search(store, &q, &page) != CATALOG_OK)
                status = 1;
            ns[i] = s_now_ns() - start;
        }
        if (status == 0) {
            qsort(ns, (size_t)runs, sizeof *ns, s_cmp_i64);
            printf("q=%s category=%s (%s): %d items, next %s; %d runs: p50 %.0f us, p99 %.0f "
                   "us, max %.0f us\n",
                   word, slug, category, page.count, page.next_cursor[0] ? "yes" : "no", runs,
                   (double)ns[runs / 2] / 1e3, (double)ns[(size_t)runs * 99 / 100] / 1e3,
                   (double)ns[runs - 1] / 1e3);
        } else
            fprintf(stderr, "catalog-store-bench: catalog_search failed\n");
    }
    free(page.items);
    free(ns);
    catalog_store_close(&store);
    kv_close(&env);
    zsys_shutdown();
    return status;
}

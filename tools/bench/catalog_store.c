/*  catalog_store.c - times catalog_search in-process on a seeded catalog
 *  (build/catalog-store-bench; the data dir comes from retail-seed).
 *
 *      catalog-store-bench --data-dir DIR [-q WORD] [-c SLUG] [-n RUNS]
 *
 *  Opens DIR/catalog with catalog_store_names, looks the category up by
 *  slug (catalog_category_list), runs one untimed warm-up search, then
 *  times RUNS calls of catalog_search (q, that category and its subtree,
 *  relevance, limit 20) and prints the page size and p50/p99/max in µs.
 */
#include "storage/catalog_store.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_MAP_SIZE ((size_t)16 << 30)
#define S_CATEGORIES_MAX 4096

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

int main(int argc, char **argv)
{
    const char *data_dir = NULL, *word = "compact", *slug = "electronics";
    int runs = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--data-dir") == 0)
            data_dir = argv[i + 1];
        else if (strcmp(argv[i], "-q") == 0)
            word = argv[i + 1];
        else if (strcmp(argv[i], "-c") == 0)
            slug = argv[i + 1];
        else if (strcmp(argv[i], "-n") == 0)
            runs = atoi(argv[i + 1]);
    }
    if (!data_dir || runs < 1) {
        fprintf(stderr,
                "usage: catalog-store-bench --data-dir DIR [-q WORD] [-c SLUG] [-n RUNS]\n");
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

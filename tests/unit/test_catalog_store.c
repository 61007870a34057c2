/*  test_catalog_store.c - the catalog store (storage/catalog/catalog_store.h):
 *  categories, products and their indexes, search, keyset pagination and
 *  stock reservations, on a fresh LMDB environment per test.
 *
 *  The indexes are checked from the outside: after every kind of write
 *  the searches and sku lookups must agree with the records (a product
 *  found by a word it no longer has, or missing from a listing, is an
 *  index out of step). Orders are checked against a comparator written
 *  here from the header's definitions, not the store's. Pagination is
 *  checked for every sort order, also with products inserted and
 *  deleted between pages. Stock is reserved from 8 threads, each with
 *  its own handle, released together by a barrier.
 *
 *  Updates are patches: a product patch racing reservations and releases
 *  (threads, own handles) must leave the stock at what the reservations
 *  hold and the version counting every write; a category renamed by one
 *  thread while another moves it must keep both changes, and a watcher
 *  must never see either field go back. Categories page by id. Records
 *  as earlier versions stored them (put into LMDB by hand) still load.
 *
 *  The reserved counter follows reserve, release, commit and a release
 *  after commit, and catalog_store_check agrees at every step; then
 *  records damaged by hand (a wrong reserved, negative stock, an index
 *  entry gone or pointing nowhere) turn the check red, each named, and
 *  an environment from before the counter is counted by
 *  catalog_store_upgrade, once. Reservations page by order id.
 *
 *  The prepared stock writes run through kv_submit and an inbox, as a
 *  worker's call_write runs them: two orders racing for the last units,
 *  from a handle closed while they are out, one reserved and the other
 *  refused with its details, then commit and release the same way.
 *
 *  Events (catalog_store_set_outbox), read back from the outbox as a
 *  subscriber would (tests/events.h): product.created, .updated (also a
 *  stock set) and .deleted once per change, with exactly the public
 *  fields; none for a refused write (a taken sku, a version mismatch, an
 *  unknown product, out of stock, a repeated reserve) or a category, and
 *  seq still without a gap after them. stock.low once per crossing of the
 *  threshold, from a reserve (two products in one write), a stock set
 *  and a patch, again after the stock went back above it; with the
 *  setting, a product's own low_stock_threshold, invalid ones ignored, a
 *  threshold raised by a patch, and the setting 0. A write whose event
 *  cannot be stored (the counter broken on purpose) fails and changes
 *  nothing; without an outbox nothing is appended.
 */
#include "storage/catalog/catalog_store.h"
#include "storage/catalog/catalog_store_impl.h"
#include "storage/record.h"
#include "tests/events.h"
#include "tests/testutil.h"

#include <ctype.h>
#include <czmq.h>
#include <errno.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *dir;
    kv_t *kv;
    catalog_store_t *store;
    outbox_t *outbox; /* the events' tests' */
} fx_t;

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    *state = f;
    f->dir = tu_tempdir("test-catalog-store");
    /* Another database first: the store must use the indexes given. */
    const char *names[1 + CATALOG_STORE_DBS] = {"other"};
    for (int i = 0; i < CATALOG_STORE_DBS; i++)
        names[1 + i] = catalog_store_names[i];
    char err[256];
    f->kv = kv_open(f->dir, (size_t)1 << 30, names, NULL, 1 + CATALOG_STORE_DBS, err, sizeof err);
    if (!f->kv) {
        print_error("kv_open: %s\n", err);
        return -1;
    }
    f->store = catalog_store_open(f->kv, 1);
    return f->store ? 0 : -1;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    catalog_store_close(&f->store);
    outbox_destroy(&f->outbox);
    kv_close(&f->kv);
    tu_rmtree(f->dir);
    zstr_free(&f->dir);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static void s_category(catalog_store_t *store, const char *name, const char *parent,
                       char id[CATALOG_ID_MAX + 1])
{
    category_t c = {0};
    snprintf(c.name, sizeof c.name, "%s", name);
    snprintf(c.parent_id, sizeof c.parent_id, "%s", parent ? parent : "");
    assert_int_equal(catalog_category_create(store, &c), CATALOG_OK);
    snprintf(id, CATALOG_ID_MAX + 1, "%s", c.id);
}

static product_t *s_new_product(const char *sku, const char *name, const char *description,
                                int64_t price, const char *category, int64_t stock)
{
    product_t *p = calloc(1, sizeof *p);
    snprintf(p->sku, sizeof p->sku, "%s", sku);
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->description, sizeof p->description, "%s", description);
    p->price_cents = price;
    memcpy(p->currency, "EUR", 4);
    snprintf(p->category_id, sizeof p->category_id, "%s", category ? category : "");
    p->stock = stock;
    return p;
}

/* Creates a product; its id into id (may be NULL). */
static void s_product(catalog_store_t *store, const char *sku, const char *name,
                      const char *description, int64_t price, const char *category, int64_t stock,
                      char *id)
{
    product_t *p = s_new_product(sku, name, description, price, category, stock);
    assert_int_equal(catalog_product_create(store, p), CATALOG_OK);
    if (id)
        snprintf(id, CATALOG_ID_MAX + 1, "%s", p->id);
    free(p);
}

typedef struct {
    int count;
    char ids[256][CATALOG_ID_MAX + 1];
    char next[CATALOG_CURSOR_MAX + 1];
} s_result_t;

/* One page of the query, ids into r; the status. */
static catalog_status_t s_search(catalog_store_t *store, const catalog_query_t *q, s_result_t *r)
{
    catalog_page_t page = {.items = calloc((size_t)q->limit, sizeof(product_t))};
    catalog_status_t status = catalog_search(store, q, &page);
    r->count = page.count;
    for (int i = 0; i < page.count; i++)
        snprintf(r->ids[i], sizeof r->ids[i], "%s", page.items[i].id);
    snprintf(r->next, sizeof r->next, "%s", page.next_cursor);
    free(page.items);
    return status;
}

/* The ids matching q with sort `sort` on one page of up to 100. */
static int s_find(catalog_store_t *store, const char *q, catalog_sort_t sort, s_result_t *r)
{
    catalog_query_t query = {.q = q, .sort = sort, .limit = 100};
    assert_int_equal(s_search(store, &query, r), CATALOG_OK);
    return r->count;
}

static bool s_has(const s_result_t *r, const char *id)
{
    for (int i = 0; i < r->count; i++)
        if (strcmp(r->ids[i], id) == 0)
            return true;
    return false;
}

typedef struct {
    char words[64][64 + 1];
    int n;
} s_words_t;

static void s_word_fn(const char *word, size_t len, void *arg)
{
    s_words_t *w = arg;
    if (w->n < 64) {
        memcpy(w->words[w->n], word, len);
        w->words[w->n][len] = '\0';
        w->n++;
    }
}

/* ---- words ---- */

static void test_words(void **state)
{
    (void)state;
    s_words_t w = {.n = 0};
    catalog_words("Hello, WORLD!  Éclair--CAFÉ x ÀÞ 2×3 naïve\xff"
                  "bad",
                  s_word_fn, &w);
    const char *want[] = {"hello", "world", "éclair", "café", "x", "àþ", "2", "3", "naïve", "bad"};
    assert_int_equal(w.n, 10);
    for (int i = 0; i < 10; i++)
        assert_string_equal(w.words[i], want[i]);

    /* A word of 70 letters is cut to 64; the rest is not another word. */
    char longword[80];
    memset(longword, 'a', 70);
    strcpy(longword + 70, " b");
    w.n = 0;
    catalog_words(longword, s_word_fn, &w);
    assert_int_equal(w.n, 2);
    assert_int_equal(strlen(w.words[0]), 64);
    assert_string_equal(w.words[1], "b");

    /* Cut on a character boundary: 63 ASCII then a 2-byte letter. */
    memset(longword, 'a', 63);
    strcpy(longword + 63, "éé");
    w.n = 0;
    catalog_words(longword, s_word_fn, &w);
    assert_int_equal(w.n, 1);
    assert_int_equal(strlen(w.words[0]), 63);

    w.n = 0;
    catalog_words("", s_word_fn, &w);
    catalog_words(" ,.; ", s_word_fn, &w);
    assert_int_equal(w.n, 0);
}

/* ---- categories ---- */

static void test_categories(void **state)
{
    fx_t *f = *state;
    char root[CATALOG_ID_MAX + 1], child[CATALOG_ID_MAX + 1], leaf[CATALOG_ID_MAX + 1];
    s_category(f->store, "  Home & Garden!! ", NULL, root);
    category_t c;
    assert_int_equal(catalog_category_get(f->store, root, &c), CATALOG_OK);
    assert_string_equal(c.slug, "home-garden");
    assert_string_equal(c.parent_id, "");
    s_category(f->store, "Kitchen", root, child);
    s_category(f->store, "Knives", child, leaf);

    /* Slugs are unique, derived or given. */
    category_t dup = {.name = "Home and garden", .slug = "Home-Garden"};
    assert_int_equal(catalog_category_create(f->store, &dup), CATALOG_SLUG_TAKEN);
    category_t given = {.name = "Tools", .slug = "diy-tools"};
    assert_int_equal(catalog_category_create(f->store, &given), CATALOG_OK);
    assert_string_equal(given.slug, "diy-tools");

    /* A missing parent. */
    category_t orphan = {.name = "Orphan", .parent_id = "cnothere"};
    assert_int_equal(catalog_category_create(f->store, &orphan), CATALOG_NO_CATEGORY);

    category_t list[10];
    int count = 0;
    assert_int_equal(catalog_category_list(f->store, list, 10, &count), CATALOG_OK);
    assert_int_equal(count, 4);
    for (int i = 1; i < count; i++)
        assert_true(strcmp(list[i - 1].id, list[i].id) < 0);

    /* Update: rename (the slug follows the name when given empty). */
    category_t v = {.name = "Cooking"}, out;
    assert_int_equal(catalog_category_update(
                         f->store, child, CATALOG_CATEGORY_NAME | CATALOG_CATEGORY_SLUG, &v, &out),
                     CATALOG_OK);
    assert_string_equal(out.name, "Cooking");
    assert_string_equal(out.slug, "cooking");
    assert_string_equal(out.parent_id, root);
    assert_int_equal(catalog_category_get(f->store, child, &c), CATALOG_OK);
    assert_string_equal(c.name, "Cooking");
    assert_string_equal(c.slug, "cooking");
    assert_string_equal(c.parent_id, root);
    /* A rename alone keeps the slug; fields not named keep theirs even
     * when values holds others. */
    v = (category_t){.name = "Cookery", .slug = "ignored", .parent_id = "cignored"};
    assert_int_equal(catalog_category_update(f->store, child, CATALOG_CATEGORY_NAME, &v, &out),
                     CATALOG_OK);
    assert_string_equal(out.name, "Cookery");
    assert_string_equal(out.slug, "cooking");
    assert_string_equal(out.parent_id, root);
    v = (category_t){.name = "Cooking"};
    assert_int_equal(catalog_category_update(f->store, child, CATALOG_CATEGORY_NAME, &v, &out),
                     CATALOG_OK);
    /* Bad patches: an empty name, an unknown field bit, values as out. */
    v = (category_t){.name = ""};
    assert_int_equal(catalog_category_update(f->store, child, CATALOG_CATEGORY_NAME, &v, &out),
                     CATALOG_ERROR);
    assert_int_equal(catalog_category_update(f->store, child, 8, &v, &out), CATALOG_ERROR);
    assert_int_equal(catalog_category_update(f->store, child, 0, &out, &out), CATALOG_ERROR);
    assert_int_equal(catalog_category_get(f->store, child, &c), CATALOG_OK);
    assert_string_equal(c.name, "Cooking");
    /* The old slug is free again, the new one taken. */
    category_t again = {.name = "Kitchen"};
    assert_int_equal(catalog_category_create(f->store, &again), CATALOG_OK);
    category_t clash = {.name = "cooking"};
    assert_int_equal(catalog_category_create(f->store, &clash), CATALOG_SLUG_TAKEN);

    /* No cycles: root under its grandchild, or under itself. */
    const unsigned parent = CATALOG_CATEGORY_PARENT;
    v = (category_t){0};
    snprintf(v.parent_id, sizeof v.parent_id, "%s", leaf);
    assert_int_equal(catalog_category_update(f->store, root, parent, &v, &out), CATALOG_CYCLE);
    snprintf(v.parent_id, sizeof v.parent_id, "%s", root);
    assert_int_equal(catalog_category_update(f->store, root, parent, &v, &out), CATALOG_CYCLE);
    snprintf(v.parent_id, sizeof v.parent_id, "cnothere");
    assert_int_equal(catalog_category_update(f->store, root, parent, &v, &out),
                     CATALOG_NO_CATEGORY);
    v = (category_t){.name = "x"};
    assert_int_equal(catalog_category_update(f->store, "cnothere", CATALOG_CATEGORY_NAME, &v, &out),
                     CATALOG_NOT_FOUND);
    /* A legal move: the leaf under the root; then back under its parent. */
    snprintf(v.parent_id, sizeof v.parent_id, "%s", root);
    assert_int_equal(catalog_category_update(f->store, leaf, parent, &v, &out), CATALOG_OK);
    assert_string_equal(out.parent_id, root);
    assert_string_equal(out.name, "Knives");
    snprintf(v.parent_id, sizeof v.parent_id, "%s", child);
    assert_int_equal(catalog_category_update(f->store, leaf, parent, &v, &out), CATALOG_OK);
    v.parent_id[0] = '\0'; /* a root, and back */
    assert_int_equal(catalog_category_update(f->store, leaf, parent, &v, &out), CATALOG_OK);
    assert_string_equal(out.parent_id, "");
    snprintf(v.parent_id, sizeof v.parent_id, "%s", root);
    assert_int_equal(catalog_category_update(f->store, leaf, parent, &v, &out), CATALOG_OK);

    /* In use: by children, then by a product. */
    assert_int_equal(catalog_category_delete(f->store, root), CATALOG_IN_USE);
    char pid[CATALOG_ID_MAX + 1];
    s_product(f->store, "K-1", "Chef knife", "sharp", 5000, leaf, 3, pid);
    assert_int_equal(catalog_category_delete(f->store, leaf), CATALOG_IN_USE);
    product_t *p = s_new_product("X", "x", "", 1, "cnothere", 0);
    assert_int_equal(catalog_product_create(f->store, p), CATALOG_NO_CATEGORY);
    free(p);
    assert_int_equal(catalog_product_delete(f->store, pid), CATALOG_OK);
    assert_int_equal(catalog_category_delete(f->store, leaf), CATALOG_OK);
    assert_int_equal(catalog_category_delete(f->store, child), CATALOG_OK);
    assert_int_equal(catalog_category_delete(f->store, root), CATALOG_OK);
    assert_int_equal(catalog_category_get(f->store, root, &c), CATALOG_NOT_FOUND);
    assert_int_equal(catalog_category_delete(f->store, root), CATALOG_NOT_FOUND);
    /* Its slug is free again. */
    category_t reborn = {.name = "Home & Garden"};
    assert_int_equal(catalog_category_create(f->store, &reborn), CATALOG_OK);
}

/* ---- products ---- */

static void test_products(void **state)
{
    fx_t *f = *state;
    char cat_a[CATALOG_ID_MAX + 1], cat_b[CATALOG_ID_MAX + 1];
    s_category(f->store, "A", NULL, cat_a);
    s_category(f->store, "B", NULL, cat_b);
    product_t *p = s_new_product("SKU-1", "Blue Kettle", "Boils water fast", 2999, cat_a, 5);
    assert_int_equal(catalog_product_create(f->store, p), CATALOG_OK);
    assert_int_equal(p->id[0], 'p');
    assert_int_equal(p->version, 1);
    assert_true(p->created_at_ms > 0);
    char id[CATALOG_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", p->id);

    product_t *got = calloc(1, sizeof *got);
    assert_int_equal(catalog_product_get(f->store, id, got), CATALOG_OK);
    assert_string_equal(got->sku, "SKU-1");
    assert_string_equal(got->name, "Blue Kettle");
    assert_string_equal(got->currency, "EUR");
    assert_int_equal(got->price_cents, 2999);
    assert_int_equal(got->stock, 5);
    assert_int_equal(got->version, 1);
    assert_int_equal(got->created_at_ms, p->created_at_ms);

    char by_sku[CATALOG_ID_MAX + 1];
    assert_int_equal(catalog_product_by_sku(f->store, "SKU-1", by_sku), CATALOG_OK);
    assert_string_equal(by_sku, id);

    /* The sku is unique, and a refused create leaves nothing behind. */
    product_t *dup = s_new_product("SKU-1", "Other", "", 1, cat_a, 0);
    assert_int_equal(catalog_product_create(f->store, dup), CATALOG_SKU_TAKEN);
    s_result_t r;
    assert_int_equal(s_find(f->store, "other", SORT_RELEVANCE, &r), 0);

    /* Update: new sku, name, price and category; the indexes follow. */
    const unsigned fields = CATALOG_PRODUCT_SKU | CATALOG_PRODUCT_NAME | CATALOG_PRODUCT_PRICE |
                            CATALOG_PRODUCT_CATEGORY;
    product_t *values = calloc(1, sizeof *values);
    snprintf(values->sku, sizeof values->sku, "SKU-2");
    snprintf(values->name, sizeof values->name, "Red Teapot");
    values->price_cents = 4500;
    snprintf(values->category_id, sizeof values->category_id, "%s", cat_b);
    values->stock = 999; /* not named in the mask: ignored */
    assert_int_equal(catalog_product_update(f->store, id, fields, values, 7, got),
                     CATALOG_VERSION_MISMATCH);
    assert_int_equal(catalog_product_update(f->store, id, fields, values, 1, got), CATALOG_OK);
    assert_int_equal(got->version, 2);
    assert_string_equal(got->sku, "SKU-2");
    assert_string_equal(got->description, "Boils water fast");
    assert_string_equal(got->currency, "EUR");
    assert_int_equal(got->stock, 5);
    assert_int_equal(got->created_at_ms, p->created_at_ms);
    assert_true(got->updated_at_ms >= p->updated_at_ms);
    assert_int_equal(catalog_product_update(f->store, id, fields, values, 1, got),
                     CATALOG_VERSION_MISMATCH);
    assert_int_equal(catalog_product_get(f->store, id, got), CATALOG_OK);
    assert_int_equal(got->version, 2);
    assert_string_equal(got->name, "Red Teapot");
    assert_int_equal(got->stock, 5);
    assert_int_equal(catalog_product_by_sku(f->store, "SKU-1", by_sku), CATALOG_NOT_FOUND);
    assert_int_equal(catalog_product_by_sku(f->store, "SKU-2", by_sku), CATALOG_OK);
    assert_int_equal(s_find(f->store, "kettle", SORT_RELEVANCE, &r), 0);
    assert_int_equal(s_find(f->store, "blue", SORT_RELEVANCE, &r), 0);
    assert_int_equal(s_find(f->store, "teapot", SORT_RELEVANCE, &r), 1);
    assert_int_equal(s_find(f->store, "water", SORT_RELEVANCE, &r), 1);
    catalog_query_t q = {.category_id = cat_a, .sort = SORT_NEWEST, .limit = 10};
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
    assert_int_equal(r.count, 0);
    q.category_id = cat_b;
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
    assert_int_equal(r.count, 1);
    q = (catalog_query_t){.has_min_price = true,
                          .min_price = 2000,
                          .has_max_price = true,
                          .max_price = 3000,
                          .sort = SORT_NEWEST,
                          .limit = 10};
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
    assert_int_equal(r.count, 0);
    q.max_price = 5000;
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
    assert_int_equal(r.count, 1);
    /* Unconditional update (expected 0), an empty patch (a version
     * bump), and the update of a missing id. */
    assert_int_equal(catalog_product_update(f->store, id, fields, values, 0, got), CATALOG_OK);
    assert_int_equal(got->version, 3);
    assert_int_equal(catalog_product_update(f->store, id, 0, values, 0, got), CATALOG_OK);
    assert_int_equal(got->version, 4);
    assert_string_equal(got->name, "Red Teapot");
    assert_int_equal(catalog_product_update(f->store, "pnothere", fields, values, 0, got),
                     CATALOG_NOT_FOUND);
    assert_int_equal(catalog_product_update(f->store, "", fields, values, 0, got),
                     CATALOG_NOT_FOUND);
    /* Malformed patches change nothing: an empty name, a short currency,
     * a missing category, an unknown field bit, values as out. */
    values->name[0] = '\0';
    assert_int_equal(catalog_product_update(f->store, id, CATALOG_PRODUCT_NAME, values, 0, got),
                     CATALOG_ERROR);
    memcpy(values->currency, "EU", 3);
    assert_int_equal(catalog_product_update(f->store, id, CATALOG_PRODUCT_CURRENCY, values, 0, got),
                     CATALOG_ERROR);
    snprintf(values->category_id, sizeof values->category_id, "cnothere");
    assert_int_equal(catalog_product_update(f->store, id, CATALOG_PRODUCT_CATEGORY, values, 0, got),
                     CATALOG_NO_CATEGORY);
    assert_int_equal(catalog_product_update(f->store, id, 256, values, 0, got), CATALOG_ERROR);
    values->stock = -1;
    assert_int_equal(catalog_product_update(f->store, id, CATALOG_PRODUCT_STOCK, values, 0, got),
                     CATALOG_ERROR);
    assert_int_equal(catalog_product_update(f->store, id, 0, got, 0, got), CATALOG_ERROR);
    assert_int_equal(catalog_product_get(f->store, id, got), CATALOG_OK);
    assert_int_equal(got->version, 4);
    assert_string_equal(got->name, "Red Teapot");
    assert_string_equal(got->category_id, cat_b);
    /* Another product may not take a used sku by update either. */
    char other[CATALOG_ID_MAX + 1];
    s_product(f->store, "SKU-3", "Mug", "", 500, cat_a, 1, other);
    snprintf(values->sku, sizeof values->sku, "SKU-2");
    assert_int_equal(catalog_product_update(f->store, other, CATALOG_PRODUCT_SKU, values, 0, got),
                     CATALOG_SKU_TAKEN);
    assert_int_equal(catalog_product_by_sku(f->store, "SKU-3", by_sku), CATALOG_OK);
    assert_string_equal(by_sku, other);
    free(values);

    /* Stock. */
    assert_int_equal(catalog_product_set_stock(f->store, id, 42, got), CATALOG_OK);
    assert_int_equal(got->stock, 42);
    assert_int_equal(got->version, 5);
    assert_int_equal(catalog_product_set_stock(f->store, id, -1, got), CATALOG_ERROR);
    assert_int_equal(catalog_product_set_stock(f->store, "pnothere", 1, got), CATALOG_NOT_FOUND);

    /* Delete: gone from the record, the sku index and every listing. */
    assert_int_equal(catalog_product_delete(f->store, id), CATALOG_OK);
    assert_int_equal(catalog_product_get(f->store, id, got), CATALOG_NOT_FOUND);
    assert_int_equal(catalog_product_by_sku(f->store, "SKU-2", by_sku), CATALOG_NOT_FOUND);
    assert_int_equal(s_find(f->store, "teapot", SORT_RELEVANCE, &r), 0);
    catalog_sort_t sorts[] = {SORT_NEWEST, SORT_PRICE_ASC, SORT_PRICE_DESC, SORT_NAME};
    for (int i = 0; i < 4; i++) {
        q = (catalog_query_t){.sort = sorts[i], .limit = 10};
        assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
        assert_int_equal(r.count, 1);
        assert_string_equal(r.ids[0], other);
    }
    q = (catalog_query_t){.category_id = cat_b, .sort = SORT_NEWEST, .limit = 10};
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
    assert_int_equal(r.count, 0);
    assert_int_equal(catalog_product_delete(f->store, id), CATALOG_NOT_FOUND);
    /* The sku is free again. */
    s_product(f->store, "SKU-2", "Again", "", 1, cat_a, 0, NULL);
    free(p);
    free(dup);
    free(got);
}

static void test_attributes_round_trip(void **state)
{
    fx_t *f = *state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 4);
    msgpack_pack_str_with_body(&pk, "colour", 6);
    msgpack_pack_str_with_body(&pk, "rød ✓ 日本", strlen("rød ✓ 日本"));
    msgpack_pack_str_with_body(&pk, "sizes", 5);
    msgpack_pack_array(&pk, 3);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_double(&pk, 2.5);
    msgpack_pack_nil(&pk);
    msgpack_pack_str_with_body(&pk, "dims", 4);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "w", 1);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "mm", 2);
    msgpack_pack_int64(&pk, -300000);
    msgpack_pack_str_with_body(&pk, "ok", 2);
    msgpack_pack_true(&pk);
    msgpack_pack_str_with_body(&pk, "wide", 4);
    /* A small int in its widest form: re-encoding would shorten it. */
    const char wide[] = {(char)0xd3, 0, 0, 0, 0, 0, 0, 0, 7};
    msgpack_sbuffer_write(&sb, wide, sizeof wide);

    product_t *p = s_new_product("ATTR", "Thing", "", 1, NULL, 0);
    memcpy(p->attributes, sb.data, sb.size);
    p->attributes_len = sb.size;
    assert_int_equal(catalog_product_create(f->store, p), CATALOG_OK);
    product_t *got = calloc(1, sizeof *got);
    assert_int_equal(catalog_product_get(f->store, p->id, got), CATALOG_OK);
    assert_int_equal(got->attributes_len, sb.size);
    assert_memory_equal(got->attributes, sb.data, sb.size);
    /* Through an update too (of attributes, and of another field); and
     * not a map, or trailing bytes: refused. */
    const unsigned attrs = CATALOG_PRODUCT_ATTRIBUTES;
    product_t *out = calloc(1, sizeof *out);
    assert_int_equal(catalog_product_update(f->store, p->id, attrs, got, 0, out), CATALOG_OK);
    assert_int_equal(out->attributes_len, sb.size);
    assert_memory_equal(out->attributes, sb.data, sb.size);
    assert_int_equal(catalog_product_update(f->store, p->id, CATALOG_PRODUCT_NAME, got, 0, out),
                     CATALOG_OK);
    assert_int_equal(catalog_product_get(f->store, p->id, got), CATALOG_OK);
    assert_int_equal(got->attributes_len, sb.size);
    assert_memory_equal(got->attributes, sb.data, sb.size);
    got->attributes[got->attributes_len++] = 1;
    assert_int_equal(catalog_product_update(f->store, p->id, attrs, got, 0, out), CATALOG_ERROR);
    got->attributes[0] = 0x91, got->attributes[1] = 1, got->attributes_len = 2; /* [1] */
    assert_int_equal(catalog_product_update(f->store, p->id, attrs, got, 0, out), CATALOG_ERROR);
    /* An empty map (length 0) clears them. */
    got->attributes_len = 0;
    assert_int_equal(catalog_product_update(f->store, p->id, attrs, got, 0, out), CATALOG_OK);
    assert_int_equal(out->attributes_len, 0);
    free(out);
    /* Empty stays empty. */
    product_t *empty = s_new_product("EMPTY", "Empty", "", 1, NULL, 0);
    assert_int_equal(catalog_product_create(f->store, empty), CATALOG_OK);
    assert_int_equal(catalog_product_get(f->store, empty->id, got), CATALOG_OK);
    assert_int_equal(got->attributes_len, 0);
    msgpack_sbuffer_destroy(&sb);
    free(p);
    free(got);
    free(empty);
}

/* ---- search ---- */

static void test_search_words(void **state)
{
    fx_t *f = *state;
    char laptop[CATALOG_ID_MAX + 1], bag[CATALOG_ID_MAX + 1], desk[CATALOG_ID_MAX + 1],
        shirt[CATALOG_ID_MAX + 1], cafe[CATALOG_ID_MAX + 1];
    s_product(f->store, "1", "Red Laptop Pro", "A fast machine", 100000, NULL, 1, laptop);
    s_product(f->store, "2", "Laptop bag", "Fits a 15 inch laptop", 3000, NULL, 1, bag);
    s_product(f->store, "3", "Lap desk", "For the sofa; red legs", 2500, NULL, 1, desk);
    s_product(f->store, "4", "Red shirt", "Cotton", 1500, NULL, 1, shirt);
    s_product(f->store, "5", "CAFÉ Crème", "Grand cru", 900, NULL, 1, cafe);
    s_result_t r;
    assert_int_equal(s_find(f->store, "laptop", SORT_RELEVANCE, &r), 2);
    assert_int_equal(s_find(f->store, "LAP", SORT_RELEVANCE, &r), 3);
    assert_int_equal(s_find(f->store, "red", SORT_RELEVANCE, &r), 3);
    assert_int_equal(s_find(f->store, "Red LAPTOP", SORT_RELEVANCE, &r), 1);
    assert_string_equal(r.ids[0], laptop);
    assert_int_equal(s_find(f->store, "red la", SORT_RELEVANCE, &r), 2);
    assert_true(s_has(&r, laptop) && s_has(&r, desk));
    assert_int_equal(s_find(f->store, "red zebra", SORT_RELEVANCE, &r), 0);
    assert_int_equal(s_find(f->store, "café", SORT_RELEVANCE, &r), 1);
    assert_int_equal(s_find(f->store, "CAFÉ CRÈME", SORT_RELEVANCE, &r), 1);
    assert_int_equal(s_find(f->store, "cr", SORT_RELEVANCE, &r), 1);
    assert_int_equal(s_find(f->store, "15", SORT_RELEVANCE, &r), 1);
    assert_string_equal(r.ids[0], bag);

    /* Relevance: "laptop": laptop (exact, in name: 4) and bag (exact in
     * name: 4): tie, newest first: bag. "lap": laptop and bag have the
     * prefix in the name (2), desk has it exactly in the name (4). */
    assert_int_equal(s_find(f->store, "laptop", SORT_RELEVANCE, &r), 2);
    assert_string_equal(r.ids[0], bag);
    assert_string_equal(r.ids[1], laptop);
    assert_int_equal(s_find(f->store, "lap", SORT_RELEVANCE, &r), 3);
    assert_string_equal(r.ids[0], desk);
    assert_string_equal(r.ids[1], bag);
    assert_string_equal(r.ids[2], laptop);
    /* "red": shirt, laptop in the name (4), desk in the description (2). */
    assert_int_equal(s_find(f->store, "red", SORT_RELEVANCE, &r), 3);
    assert_string_equal(r.ids[0], shirt);
    assert_string_equal(r.ids[1], laptop);
    assert_string_equal(r.ids[2], desk);
    /* Other sorts with words. */
    assert_int_equal(s_find(f->store, "red", SORT_PRICE_ASC, &r), 3);
    assert_string_equal(r.ids[0], shirt);
    assert_string_equal(r.ids[1], desk);
    assert_string_equal(r.ids[2], laptop);
    assert_int_equal(s_find(f->store, "red", SORT_NAME, &r), 3);
    assert_string_equal(r.ids[0], desk);
    assert_string_equal(r.ids[1], laptop);
    assert_string_equal(r.ids[2], shirt);
    /* A query of separators only is no text filter. */
    assert_int_equal(s_find(f->store, " ,; ", SORT_NEWEST, &r), 5);
}

/* The test's own order (header definitions) over full products. */
static int s_expect_cmp(catalog_sort_t sort, const product_t *a, const product_t *b)
{
    int id = strcmp(a->id, b->id);
    int c = 0;
    switch (sort) {
    case SORT_RELEVANCE:
    case SORT_NEWEST:
        c = (a->created_at_ms < b->created_at_ms) - (a->created_at_ms > b->created_at_ms);
        return c ? c : -id;
    case SORT_PRICE_ASC:
        c = (a->price_cents > b->price_cents) - (a->price_cents < b->price_cents);
        return c ? c : id;
    case SORT_PRICE_DESC:
        c = (a->price_cents < b->price_cents) - (a->price_cents > b->price_cents);
        return c ? c : -id;
    case SORT_NAME: {
        /* ASCII names in these tests: the whole name, lower-cased. */
        char x[CATALOG_NAME_MAX + 1] = "", y[CATALOG_NAME_MAX + 1] = "";
        for (int i = 0; a->name[i]; i++)
            x[i] = (char)tolower((unsigned char)a->name[i]);
        for (int i = 0; b->name[i]; i++)
            y[i] = (char)tolower((unsigned char)b->name[i]);
        c = strcmp(x, y);
        return c ? c : id;
    }
    }
    return id;
}

static const catalog_sort_t s_all_sorts[] = {SORT_RELEVANCE, SORT_NEWEST, SORT_PRICE_ASC,
                                             SORT_PRICE_DESC, SORT_NAME};

static void test_sort_orders(void **state)
{
    fx_t *f = *state;
    const char *names[] = {"delta", "Alpha", "charlie", "Bravo", "alpha", "echo"};
    const int64_t prices[] = {500, 100, 500, -20, 300, 100};
    for (int i = 0; i < 6; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "S%d", i);
        s_product(f->store, sku, names[i], "common", prices[i], NULL, 1, NULL);
    }
    for (int s = 0; s < 5; s++) {
        for (int with_q = 0; with_q < 2; with_q++) {
            catalog_query_t q = {
                .q = with_q ? "common" : NULL, .sort = s_all_sorts[s], .limit = 10};
            catalog_page_t page = {.items = calloc(10, sizeof(product_t))};
            assert_int_equal(catalog_search(f->store, &q, &page), CATALOG_OK);
            assert_int_equal(page.count, 6);
            assert_string_equal(page.next_cursor, "");
            for (int i = 1; i < 6; i++)
                assert_true(s_expect_cmp(s_all_sorts[s], &page.items[i - 1], &page.items[i]) < 0);
            free(page.items);
        }
    }
}

static void test_filters(void **state)
{
    fx_t *f = *state;
    char top[CATALOG_ID_MAX + 1], mid[CATALOG_ID_MAX + 1], low[CATALOG_ID_MAX + 1],
        other[CATALOG_ID_MAX + 1];
    s_category(f->store, "Top", NULL, top);
    s_category(f->store, "Mid", top, mid);
    s_category(f->store, "Low", mid, low);
    s_category(f->store, "Other", NULL, other);
    char in_top[CATALOG_ID_MAX + 1], in_mid[CATALOG_ID_MAX + 1], in_low[CATALOG_ID_MAX + 1],
        in_other[CATALOG_ID_MAX + 1], none_left[CATALOG_ID_MAX + 1];
    s_product(f->store, "T", "Widget top", "", 1000, top, 1, in_top);
    s_product(f->store, "M", "Widget mid", "", 2000, mid, 0, in_mid);
    s_product(f->store, "L", "Widget low", "", 3000, low, 5, in_low);
    s_product(f->store, "O", "Widget other", "", 4000, other, 2, in_other);
    s_product(f->store, "N", "Gadget", "", 2500, low, 0, none_left);
    s_result_t r;
    for (int s = 0; s < 5; s++) {
        for (int with_q = 0; with_q < 2; with_q++) {
            const char *text = with_q ? "widget" : NULL;
            catalog_query_t q = {
                .q = text, .category_id = top, .sort = s_all_sorts[s], .limit = 10};
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, with_q ? 3 : 4);
            assert_false(s_has(&r, in_other));
            q.category_id = mid;
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, with_q ? 2 : 3);
            assert_true(s_has(&r, in_mid) && s_has(&r, in_low) && !s_has(&r, in_top));
            q.category_id = low;
            q.in_stock_only = true;
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, 1);
            assert_string_equal(r.ids[0], in_low);
            q.category_id = "cnothere";
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, 0);
            q = (catalog_query_t){.q = text,
                                  .has_min_price = true,
                                  .min_price = 2000,
                                  .has_max_price = true,
                                  .max_price = 3000,
                                  .sort = s_all_sorts[s],
                                  .limit = 10};
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, with_q ? 2 : 3);
            assert_true(s_has(&r, in_mid) && s_has(&r, in_low));
            q.in_stock_only = true;
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, 1);
            q.has_max_price = false;
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, 2);
            assert_true(s_has(&r, in_low) && s_has(&r, in_other));
            q.in_stock_only = false;
            q.has_min_price = false;
            q.has_max_price = true;
            q.max_price = 1999;
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, 1);
            assert_string_equal(r.ids[0], in_top);
            q.in_stock_only = true;
            q.has_max_price = false;
            assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
            assert_int_equal(r.count, 3);
        }
    }
    (void)none_left;
}

/* ---- words within a category ---- */

/* Word + category searches read cat_words; they must give what the words
 * index gives once filtered by the subtree (the path before cat_words),
 * in the same order and pages, also after moves, rewrites and deletes. */

#define S_EQ_PRODUCTS 160
#define S_EQ_MAX 512

static uint32_t s_rand_state = 12345;

static uint32_t s_rand(uint32_t n)
{
    s_rand_state = s_rand_state * 1103515245u + 12345u;
    return (s_rand_state >> 8) % n;
}

static const char *const s_eq_vocab[] = {"red",   "redo",    "reddish",  "blue", "blues",
                                         "bl",    "green",   "greenish", "tan",  "gadget",
                                         "gizmo", "compact", "compactor"};
#define S_EQ_VOCAB (sizeof s_eq_vocab / sizeof s_eq_vocab[0])
static const char *const s_eq_queries[] = {"red", "re", "blue", "bl",      "green", "gre",
                                           "tan", "t",  "g",    "compact", "zzz"};
#define S_EQ_QUERIES (sizeof s_eq_queries / sizeof s_eq_queries[0])

typedef struct {
    int count;
    char ids[S_EQ_MAX][CATALOG_ID_MAX + 1];
    char cats[S_EQ_MAX][CATALOG_ID_MAX + 1];
} s_list_t;

/* Every page of q (q->limit each) into out, in order. */
static void s_collect(catalog_store_t *store, catalog_query_t *q, s_list_t *out)
{
    catalog_page_t page = {.items = calloc((size_t)q->limit, sizeof(product_t))};
    char cursor[CATALOG_CURSOR_MAX + 1] = "";
    out->count = 0;
    for (;;) {
        q->cursor = cursor[0] ? cursor : NULL;
        assert_int_equal(catalog_search(store, q, &page), CATALOG_OK);
        for (int i = 0; i < page.count; i++) {
            assert_true(out->count < S_EQ_MAX);
            snprintf(out->ids[out->count], sizeof out->ids[0], "%s", page.items[i].id);
            snprintf(out->cats[out->count], sizeof out->cats[0], "%s", page.items[i].category_id);
            out->count++;
        }
        if (!page.next_cursor[0])
            break;
        snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
    }
    q->cursor = NULL;
    free(page.items);
}

static void s_eq_text(char *out, size_t cap, int words)
{
    out[0] = '\0';
    for (int i = 0; i < words; i++) {
        size_t len = strlen(out);
        snprintf(out + len, cap - len, "%s%s", i ? " " : "", s_eq_vocab[s_rand(S_EQ_VOCAB)]);
    }
}

/* cats[0..5]: A, A1 < A, A2 < A, A1a < A1, B, B1 < B; in[c][d]: whether
 * cats[d] is in the subtree of cats[c]. */
static void s_eq_check(catalog_store_t *store, char cats[6][CATALOG_ID_MAX + 1],
                       const bool in[6][6], int rounds)
{
    s_list_t *got = malloc(sizeof *got), *all = malloc(sizeof *all);
    for (int r = 0; r < rounds; r++) {
        char text[64];
        snprintf(text, sizeof text, "%s", s_eq_queries[s_rand(S_EQ_QUERIES)]);
        if (s_rand(3) == 0) {
            size_t len = strlen(text);
            snprintf(text + len, sizeof text - len, " %s", s_eq_queries[s_rand(S_EQ_QUERIES)]);
        }
        int c = (int)s_rand(6);
        catalog_query_t q = {.q = text,
                             .category_id = cats[c],
                             .sort = s_all_sorts[s_rand(5)],
                             .in_stock_only = s_rand(4) == 0,
                             .limit = 1 + (int)s_rand(25)};
        if (s_rand(4) == 0) {
            q.has_min_price = true;
            q.min_price = 200;
        }
        s_collect(store, &q, got);
        q.category_id = NULL;
        q.limit = 100;
        s_collect(store, &q, all);
        int n = 0;
        for (int i = 0; i < all->count; i++) {
            int d = -1;
            for (int j = 0; j < 6; j++)
                if (strcmp(all->cats[i], cats[j]) == 0)
                    d = j;
            if (d < 0 || !in[c][d])
                continue;
            if (n >= got->count)
                fail_msg("q=\"%s\" cat %d sort %d: %s missing", text, c, q.sort, all->ids[i]);
            if (strcmp(got->ids[n], all->ids[i]) != 0)
                fail_msg("q=\"%s\" cat %d sort %d: #%d is %s, expected %s", text, c, q.sort, n,
                         got->ids[n], all->ids[i]);
            n++;
        }
        if (n != got->count)
            fail_msg("q=\"%s\" cat %d sort %d: %d results, expected %d", text, c, q.sort,
                     got->count, n);
    }
    free(got);
    free(all);
}

static void test_search_words_in_category(void **state)
{
    fx_t *f = *state;
    char cats[6][CATALOG_ID_MAX + 1];
    s_category(f->store, "A", NULL, cats[0]);
    s_category(f->store, "A1", cats[0], cats[1]);
    s_category(f->store, "A2", cats[0], cats[2]);
    s_category(f->store, "A1a", cats[1], cats[3]);
    s_category(f->store, "B", NULL, cats[4]);
    s_category(f->store, "B1", cats[4], cats[5]);
    const bool in[6][6] = {{1, 1, 1, 1, 0, 0}, {0, 1, 0, 1, 0, 0}, {0, 0, 1, 0, 0, 0},
                           {0, 0, 0, 1, 0, 0}, {0, 0, 0, 0, 1, 1}, {0, 0, 0, 0, 0, 1}};
    char(*ids)[CATALOG_ID_MAX + 1] = calloc(S_EQ_PRODUCTS, sizeof *ids);
    bool *gone = calloc(S_EQ_PRODUCTS, sizeof *gone);
    for (int i = 0; i < S_EQ_PRODUCTS; i++) {
        char sku[16], name[64], description[96];
        snprintf(sku, sizeof sku, "E%d", i);
        s_eq_text(name, sizeof name, 1 + (int)s_rand(3));
        s_eq_text(description, sizeof description, (int)s_rand(4));
        int c = (int)s_rand(7); /* 6: no category */
        s_product(f->store, sku, name, description, (int64_t)s_rand(500), c < 6 ? cats[c] : NULL,
                  (int64_t)s_rand(3), ids[i]);
    }
    s_eq_check(f->store, cats, in, 150);
    /* Moves (also to and from no category), rewrites and deletes. */
    product_t *p = calloc(1, sizeof *p), *out = calloc(1, sizeof *out);
    for (int round = 0; round < 3; round++) {
        for (int k = 0; k < 40; k++) {
            int i = (int)s_rand(S_EQ_PRODUCTS);
            if (gone[i])
                continue;
            int op = (int)s_rand(4);
            if (op == 0) {
                assert_int_equal(catalog_product_delete(f->store, ids[i]), CATALOG_OK);
                gone[i] = true;
                continue;
            }
            unsigned fields = CATALOG_PRODUCT_CATEGORY;
            int c = (int)s_rand(7);
            snprintf(p->category_id, sizeof p->category_id, "%s", c < 6 ? cats[c] : "");
            if (op >= 2) {
                fields |= CATALOG_PRODUCT_NAME;
                s_eq_text(p->name, sizeof p->name, 1 + (int)s_rand(3));
            }
            if (op == 3) {
                fields |= CATALOG_PRODUCT_PRICE;
                p->price_cents = (int64_t)s_rand(500);
            }
            assert_int_equal(catalog_product_update(f->store, ids[i], fields, p, 0, out),
                             CATALOG_OK);
        }
        s_eq_check(f->store, cats, in, 100);
    }
    free(p);
    free(out);
    free(gone);
    free(ids);
}

/* An environment made before cat_words (its other databases only) opens
 * with the current list: the new database is created. */
static void test_open_old_env(void **state)
{
    (void)state;
    char *dir = tu_tempdir("test-catalog-store-old");
    const char *names[CATALOG_STORE_DBS];
    int n = 0;
    for (int i = 0; i < CATALOG_STORE_DBS; i++)
        if (strcmp(catalog_store_names[i], "cat_words") != 0)
            names[n++] = catalog_store_names[i];
    assert_int_equal(n, CATALOG_STORE_DBS - 1);
    char err[256];
    kv_t *kv = kv_open(dir, (size_t)1 << 26, names, NULL, n, err, sizeof err);
    assert_non_null(kv);
    kv_close(&kv);
    kv = kv_open(dir, (size_t)1 << 26, catalog_store_names, NULL, CATALOG_STORE_DBS, err,
                 sizeof err);
    assert_non_null(kv);
    catalog_store_t *store = catalog_store_open(kv, 0);
    assert_non_null(store);
    char cat[CATALOG_ID_MAX + 1];
    s_category(store, "Top", NULL, cat);
    s_product(store, "X", "Compact thing", "", 100, cat, 1, NULL);
    s_result_t r;
    catalog_query_t q = {.q = "compact", .category_id = cat, .limit = 10};
    assert_int_equal(s_search(store, &q, &r), CATALOG_OK);
    assert_int_equal(r.count, 1);
    catalog_store_close(&store);
    kv_close(&kv);
    tu_rmtree(dir);
    zstr_free(&dir);
}

/* An environment whose by_name and cat_words are empty (made before they
 * existed) gets them filled by catalog_store_upgrade: until then the name
 * sort without a filter and a word search in a category find nothing,
 * after it they find every product, in order. */
static void test_upgrade_fills_new_indexes(void **state)
{
    fx_t *f = *state;
    char cat[CATALOG_ID_MAX + 1];
    s_category(f->store, "Top", NULL, cat);
    const char *names[] = {"delta lamp", "Alpha lamp", "charlie lamp", "Bravo lamp", "echo lamp"};
    for (int i = 0; i < 5; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "U%d", i);
        s_product(f->store, sku, names[i], "", 100, i % 2 ? cat : NULL, 1, NULL);
    }
    MDB_txn *txn = NULL;
    assert_int_equal(mdb_txn_begin(kv_mdb(f->kv), NULL, 0, &txn), 0);
    /* the fixture puts "other" first: the store's dbs start at 1 */
    for (int i = 0; i < CATALOG_STORE_DBS; i++)
        if (strcmp(catalog_store_names[i], "by_name") == 0 ||
            strcmp(catalog_store_names[i], "cat_words") == 0)
            assert_int_equal(mdb_drop(txn, kv_dbi(f->kv, 1 + i), 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    s_result_t r;
    catalog_query_t by_name = {.sort = SORT_NAME, .limit = 10};
    catalog_query_t in_cat = {.q = "lamp", .category_id = cat, .limit = 10};
    assert_int_equal(s_search(f->store, &by_name, &r), CATALOG_OK);
    assert_int_equal(r.count, 0);
    assert_int_equal(s_search(f->store, &in_cat, &r), CATALOG_OK);
    assert_int_equal(r.count, 0);

    assert_int_equal(catalog_store_upgrade(f->kv, 1), CATALOG_OK);
    assert_int_equal(s_search(f->store, &by_name, &r), CATALOG_OK);
    assert_int_equal(r.count, 5);
    const int order[] = {1, 3, 2, 0, 4};
    for (int i = 0; i < 5; i++) {
        product_t *p = calloc(1, sizeof *p);
        assert_int_equal(catalog_product_get(f->store, r.ids[i], p), CATALOG_OK);
        assert_string_equal(p->name, names[order[i]]);
        free(p);
    }
    assert_int_equal(s_search(f->store, &in_cat, &r), CATALOG_OK);
    assert_int_equal(r.count, 2); /* the products of odd index */
    /* the other indexes were put again, not doubled */
    catalog_query_t all = {.q = "lamp", .limit = 10};
    assert_int_equal(s_search(f->store, &all, &r), CATALOG_OK);
    assert_int_equal(r.count, 5);
    /* filled: a second call changes nothing */
    assert_int_equal(catalog_store_upgrade(f->kv, 1), CATALOG_OK);
    assert_int_equal(s_search(f->store, &by_name, &r), CATALOG_OK);
    assert_int_equal(r.count, 5);
}

/* ---- relevance and newest against a reference ---- */

/* Products of random words from a small vocabulary in which words are
 * prefixes of others ("comp" < "compact" < "compactor"), in a small
 * category tree, with ties of creation time (many per millisecond). Every
 * one-page and paged search of a set of queries must give exactly the
 * order computed here from the header's rules, whichever path the store
 * takes (the newest-first walk of exact postings, or the full gather). */

#define S_REF_N 240
#define S_REF_CATS 4

typedef struct {
    char id[CATALOG_ID_MAX + 1];
    char name[128], description[128];
    int cat; /* -1: none */
    int64_t price, stock, created;
    int score;
} s_ref_t;

/* 0 Home, 1 Lamps (in Home), 2 Desk lamps (in Lamps), 3 Garden */
static const int s_ref_parent[S_REF_CATS] = {-1, 0, 1, -1};

static bool s_ref_in(int cat, int root)
{
    for (; cat >= 0; cat = s_ref_parent[cat])
        if (cat == root)
            return true;
    return false;
}

/* The best contribution of one query word over a text's words. */
typedef struct {
    const char *q;
    size_t q_len;
    int factor; /* 2 in the name, 1 in the description */
    int best;
} s_ref_match_t;

static void s_ref_match_fn(const char *word, size_t len, void *arg)
{
    s_ref_match_t *m = arg;
    int c = 0;
    if (len == m->q_len && memcmp(word, m->q, len) == 0)
        c = 2;
    else if (len > m->q_len && memcmp(word, m->q, m->q_len) == 0)
        c = 1;
    if (c * m->factor > m->best)
        m->best = c * m->factor;
}

/* Sums the query words' best contributions into p->score; false when a
 * query word matches nothing. */
static bool s_ref_score(s_ref_t *p, const s_words_t *qw)
{
    p->score = 0;
    for (int i = 0; i < qw->n; i++) {
        s_ref_match_t m = {.q = qw->words[i], .q_len = strlen(qw->words[i]), .factor = 2};
        catalog_words(p->name, s_ref_match_fn, &m);
        m.factor = 1;
        catalog_words(p->description, s_ref_match_fn, &m);
        if (m.best == 0)
            return false;
        p->score += m.best;
    }
    return true;
}

static catalog_sort_t s_ref_sort;

static int s_ref_cmp(const void *x, const void *y)
{
    const s_ref_t *a = *(const s_ref_t *const *)x, *b = *(const s_ref_t *const *)y;
    if (s_ref_sort == SORT_RELEVANCE && a->score != b->score)
        return b->score - a->score;
    if (a->created != b->created)
        return a->created < b->created ? 1 : -1;
    return -strcmp(a->id, b->id);
}

static void test_search_against_reference(void **state)
{
    fx_t *f = *state;
    static const char *const vocabulary[] = {"compact", "compactor", "comp",   "lamp",
                                             "lamps",   "desk",      "garden", "light"};
    char cats[S_REF_CATS][CATALOG_ID_MAX + 1];
    s_category(f->store, "Home", NULL, cats[0]);
    s_category(f->store, "Lamps", cats[0], cats[1]);
    s_category(f->store, "Desk lamps", cats[1], cats[2]);
    s_category(f->store, "Garden", NULL, cats[3]);
    s_ref_t *ref = calloc(S_REF_N, sizeof *ref);
    uint32_t seed = 12345;
#define S_RAND() (seed = seed * 1103515245u + 12345u, (seed >> 16) & 0x7fff)
    for (int i = 0; i < S_REF_N; i++) {
        s_ref_t *r = &ref[i];
        for (int t = 0; t < 2; t++) {
            char *text = t == 0 ? r->name : r->description;
            int words = 1 + (int)(S_RAND() % 3);
            text[0] = '\0';
            for (int w = 0; w < words; w++) {
                strcat(text, w ? " " : "");
                strcat(text, vocabulary[S_RAND() % 8]);
            }
        }
        r->cat = (int)(S_RAND() % (S_REF_CATS + 1)) - 1;
        r->price = (int64_t)(S_RAND() % 1000);
        r->stock = S_RAND() % 3 == 0 ? 0 : 5;
        char sku[16];
        snprintf(sku, sizeof sku, "R%d", i);
        product_t *p = s_new_product(sku, r->name, r->description, r->price,
                                     r->cat >= 0 ? cats[r->cat] : NULL, r->stock);
        assert_int_equal(catalog_product_create(f->store, p), CATALOG_OK);
        snprintf(r->id, sizeof r->id, "%s", p->id);
        r->created = p->created_at_ms;
        free(p);
    }
#undef S_RAND
    static const char *const queries[] = {"compact",      "comp",       "lamp", "desk",
                                          "compact lamp", "light comp", "zzz"};
    static const catalog_sort_t sorts[] = {SORT_RELEVANCE, SORT_NEWEST};
    static const int limits[] = {1, 7, 100};
    s_ref_t **want = calloc(S_REF_N, sizeof *want);
    catalog_page_t page = {.items = calloc(100, sizeof(product_t))};
    int checked = 0;
    for (size_t qi = 0; qi < sizeof queries / sizeof queries[0]; qi++)
        for (size_t si = 0; si < 2; si++)
            for (int cat = -1; cat < S_REF_CATS; cat++)
                for (int filters = 0; filters < 4; filters++)
                    for (size_t li = 0; li < 3; li++) {
                        catalog_query_t q = {.q = queries[qi],
                                             .category_id = cat >= 0 ? cats[cat] : NULL,
                                             .in_stock_only = filters & 1,
                                             .has_min_price = filters & 2,
                                             .has_max_price = filters & 2,
                                             .min_price = 100,
                                             .max_price = 600,
                                             .sort = sorts[si],
                                             .limit = limits[li]};
                        s_words_t qw = {.n = 0};
                        catalog_words(queries[qi], s_word_fn, &qw);
                        size_t n_want = 0;
                        for (int i = 0; i < S_REF_N; i++) {
                            s_ref_t *r = &ref[i];
                            if (s_ref_score(r, &qw) && (cat < 0 || s_ref_in(r->cat, cat)) &&
                                (!q.in_stock_only || r->stock > 0) &&
                                (!q.has_min_price || (r->price >= 100 && r->price <= 600)))
                                want[n_want++] = r;
                        }
                        s_ref_sort = q.sort;
                        qsort(want, n_want, sizeof *want, s_ref_cmp);
                        char cursor[CATALOG_CURSOR_MAX + 1] = "";
                        size_t got = 0;
                        for (;;) {
                            q.cursor = cursor[0] ? cursor : NULL;
                            assert_int_equal(catalog_search(f->store, &q, &page), CATALOG_OK);
                            for (int i = 0; i < page.count; i++, got++) {
                                if (got >= n_want || strcmp(page.items[i].id, want[got]->id) != 0)
                                    fail_msg("q=%s sort %d cat %d filters %d limit %d: item %zu "
                                             "is %s, want %s",
                                             queries[qi], q.sort, cat, filters, q.limit, got,
                                             page.items[i].id,
                                             got < n_want ? want[got]->id : "(none)");
                            }
                            if (!page.next_cursor[0])
                                break;
                            snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
                        }
                        assert_int_equal(got, n_want);
                        checked++;
                    }
    assert_true(checked > 0);
    free(page.items);
    free(want);
    free(ref);
}

/* ---- pagination ---- */

#define S_MANY 250

/* Pages through q (limit 20) collecting ids into seen (a zhash of id ->
 * ""), failing on a repeat; between pages calls between(i, arg). Checks
 * the order within and across pages with the test's comparator. */
static int s_page_all(catalog_store_t *store, catalog_query_t *q, zhash_t *seen,
                      void (*between)(int page, void *arg), void *arg)
{
    catalog_page_t page = {.items = calloc((size_t)q->limit, sizeof(product_t))};
    char cursor[CATALOG_CURSOR_MAX + 1] = "";
    product_t *last = calloc(1, sizeof *last);
    bool have_last = false;
    int pages = 0;
    for (;;) {
        q->cursor = cursor[0] ? cursor : NULL;
        assert_int_equal(catalog_search(store, q, &page), CATALOG_OK);
        for (int i = 0; i < page.count; i++) {
            if (zhash_lookup(seen, page.items[i].id))
                fail_msg("%s seen twice (sort %d)", page.items[i].id, q->sort);
            zhash_insert(seen, page.items[i].id, "");
            if (have_last && q->sort != SORT_RELEVANCE)
                assert_true(s_expect_cmp(q->sort, last, &page.items[i]) < 0);
            memcpy(last, &page.items[i], sizeof *last);
            have_last = true;
        }
        pages++;
        if (!page.next_cursor[0])
            break;
        assert_int_equal(page.count, q->limit);
        assert_true(strlen(page.next_cursor) <= CATALOG_CURSOR_MAX);
        snprintf(cursor, sizeof cursor, "%s", page.next_cursor);
        if (between)
            between(pages, arg);
    }
    free(page.items);
    free(last);
    return pages;
}

static void s_many(catalog_store_t *store, char ids[][CATALOG_ID_MAX + 1], int n, int from)
{
    for (int i = 0; i < n; i++) {
        char sku[16], name[64];
        snprintf(sku, sizeof sku, "M%d", from + i);
        /* Repeated names and prices, so ties are broken by id; names
         * longer than the 24 bytes that index values carry, differing
         * only after them, so the name sort must read whole names. */
        snprintf(name, sizeof name, "Item of the long-named kind %03d thing", (from + i) % 37);
        s_product(store, sku, name, "bulk stuff", (from + i) * 7919 % 101 - 10, NULL, 1 + i % 2,
                  ids ? ids[i] : NULL);
    }
}

static void test_pagination(void **state)
{
    fx_t *f = *state;
    s_many(f->store, NULL, S_MANY, 0);
    for (int s = 0; s < 5; s++) {
        for (int with_q = 0; with_q < 2; with_q++) {
            catalog_query_t q = {
                .q = with_q ? "thing bulk" : NULL, .sort = s_all_sorts[s], .limit = 20};
            zhash_t *seen = zhash_new();
            assert_int_equal(s_page_all(f->store, &q, seen, NULL, NULL), 13);
            assert_int_equal(zhash_size(seen), S_MANY);
            zhash_destroy(&seen);
        }
        /* With a price range too (by_price walks). */
        catalog_query_t q = {.has_min_price = true,
                             .min_price = 0,
                             .has_max_price = true,
                             .max_price = 50,
                             .sort = s_all_sorts[s],
                             .limit = 20};
        zhash_t *seen = zhash_new();
        s_page_all(f->store, &q, seen, NULL, NULL);
        int expected = 0;
        for (int i = 0; i < S_MANY; i++) {
            int64_t price = i * 7919 % 101 - 10;
            expected += price >= 0 && price <= 50;
        }
        assert_int_equal(zhash_size(seen), expected);
        zhash_destroy(&seen);
    }
}

typedef struct {
    catalog_store_t *store;
    char (*ids)[CATALOG_ID_MAX + 1]; /* the first products */
    bool *deleted;
    int next_sku;
} s_churn_t;

static void s_churn(int page, void *arg)
{
    s_churn_t *c = arg;
    /* Two new products and two deletions (of products every fourth) per
     * page, landing before and after the cursor in every order. */
    s_many(c->store, NULL, 2, c->next_sku);
    c->next_sku += 2;
    for (int i = 0; i < 2; i++) {
        int victim = (page * 37 + i * 101) % S_MANY;
        victim -= victim % 4;
        if (!c->deleted[victim]) {
            assert_int_equal(catalog_product_delete(c->store, c->ids[victim]), CATALOG_OK);
            c->deleted[victim] = true;
        }
    }
}

static void test_pagination_with_changes(void **state)
{
    fx_t *f = *state;
    char(*ids)[CATALOG_ID_MAX + 1] = calloc(S_MANY, sizeof *ids);
    s_many(f->store, ids, S_MANY, 0);
    int next_sku = 100000;
    /* Products deleted by an earlier round are gone for good. */
    bool deleted[S_MANY] = {false};
    for (int s = 0; s < 5; s++) {
        for (int with_q = 0; with_q < 2; with_q++) {
            s_churn_t churn = {
                .store = f->store, .ids = ids, .deleted = deleted, .next_sku = next_sku};
            catalog_query_t q = {.q = with_q ? "thing" : NULL, .sort = s_all_sorts[s], .limit = 20};
            zhash_t *seen = zhash_new();
            s_page_all(f->store, &q, seen, s_churn, &churn);
            next_sku = churn.next_sku;
            for (int i = 0; i < S_MANY; i++) {
                product_t *p = calloc(1, sizeof *p);
                bool exists = catalog_product_get(f->store, ids[i], p) == CATALOG_OK;
                if (exists && !zhash_lookup(seen, ids[i]))
                    fail_msg("%s existed throughout and was skipped (sort %d)", ids[i], q.sort);
                free(p);
            }
            zhash_destroy(&seen);
        }
    }
    free(ids);
}

static void test_cursor_refused(void **state)
{
    fx_t *f = *state;
    s_many(f->store, NULL, 30, 0);
    s_result_t r;
    catalog_query_t q = {.sort = SORT_NEWEST, .limit = 10};
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
    assert_true(r.next[0]);
    char cursor[CATALOG_CURSOR_MAX + 1];
    snprintf(cursor, sizeof cursor, "%s", r.next);
    q.cursor = cursor;
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_OK);
    assert_int_equal(r.count, 10);
    /* Another sort, another query, another filter. */
    q.sort = SORT_PRICE_ASC;
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_CONFLICT);
    q.sort = SORT_NEWEST;
    q.q = "thing";
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_CONFLICT);
    q.q = NULL;
    q.in_stock_only = true;
    assert_int_equal(s_search(f->store, &q, &r), CATALOG_CONFLICT);
    q.in_stock_only = false;
    /* Malformed. */
    const char *bad[] = {"!!!", "AAAA", "x", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"};
    for (int i = 0; i < 4; i++) {
        q.cursor = bad[i];
        assert_int_equal(s_search(f->store, &q, &r), CATALOG_CONFLICT);
    }
    char tampered[CATALOG_CURSOR_MAX + 1];
    snprintf(tampered, sizeof tampered, "%s", cursor);
    tampered[3] = tampered[3] == 'A' ? 'B' : 'A';
    q.cursor = tampered;
    catalog_status_t status = s_search(f->store, &q, &r);
    /* A changed byte is refused unless it only moved the position. */
    assert_true(status == CATALOG_CONFLICT || status == CATALOG_OK);
}

/* ---- inventory ---- */

static int64_t s_stock(catalog_store_t *store, const char *id)
{
    product_t *p = calloc(1, sizeof *p);
    assert_int_equal(catalog_product_get(store, id, p), CATALOG_OK);
    int64_t stock = p->stock;
    free(p);
    return stock;
}

static void test_reserve(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], b[CATALOG_ID_MAX + 1];
    s_product(f->store, "A", "A", "", 100, NULL, 5, a);
    s_product(f->store, "B", "B", "", 100, NULL, 1, b);
    stock_short_t short_product;

    /* One short line: nothing changes, the short product is named. */
    stock_line_t lines[2] = {{.qty = 2}, {.qty = 2}};
    snprintf(lines[0].product_id, sizeof lines[0].product_id, "%s", a);
    snprintf(lines[1].product_id, sizeof lines[1].product_id, "%s", b);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_product),
                     CATALOG_OUT_OF_STOCK);
    assert_string_equal(short_product.product_id, b);
    assert_int_equal(s_stock(f->store, a), 5);
    assert_int_equal(s_stock(f->store, b), 1);
    assert_int_equal(catalog_stock_release(f->store, "o1"), CATALOG_NOT_FOUND);
    /* A missing product: NOT_FOUND and named. */
    stock_line_t ghost = {.product_id = "pnothere", .qty = 1};
    assert_int_equal(catalog_stock_reserve(f->store, "o0", &ghost, 1, &short_product),
                     CATALOG_NOT_FOUND);
    assert_string_equal(short_product.product_id, "pnothere");

    /* Reserve; a version bump per stock change. */
    product_t *p = calloc(1, sizeof *p);
    assert_int_equal(catalog_product_get(f->store, a, p), CATALOG_OK);
    int64_t version = p->version;
    lines[1].qty = 1;
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_product), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 3);
    assert_int_equal(s_stock(f->store, b), 0);
    assert_int_equal(catalog_product_get(f->store, a, p), CATALOG_OK);
    assert_int_equal(p->version, version + 1);
    /* Again, lines in another order: OK, no change. */
    stock_line_t swapped[2] = {lines[1], lines[0]};
    assert_int_equal(catalog_stock_reserve(f->store, "o1", swapped, 2, &short_product), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 3);
    /* Same order id, other lines: conflict. */
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 1, &short_product),
                     CATALOG_CONFLICT);
    /* Same product twice in one order counts as the sum. */
    stock_line_t twice[2] = {lines[0], lines[0]};
    twice[0].qty = twice[1].qty = 1;
    assert_int_equal(catalog_stock_reserve(f->store, "o2", twice, 2, &short_product), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 1);
    stock_line_t merged = {.qty = 2};
    snprintf(merged.product_id, sizeof merged.product_id, "%s", a);
    assert_int_equal(catalog_stock_reserve(f->store, "o2", &merged, 1, &short_product), CATALOG_OK);

    /* Commit and release. */
    assert_int_equal(catalog_stock_commit(f->store, "o1"), CATALOG_OK);
    assert_int_equal(catalog_stock_commit(f->store, "o1"), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 1);
    assert_int_equal(catalog_stock_release(f->store, "o1"), CATALOG_OK); /* a cancel */
    assert_int_equal(s_stock(f->store, a), 3);
    assert_int_equal(s_stock(f->store, b), 1);
    assert_int_equal(catalog_stock_release(f->store, "o1"), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 3);
    assert_int_equal(catalog_stock_commit(f->store, "o1"), CATALOG_CONFLICT);
    assert_int_equal(catalog_stock_commit(f->store, "nothere"), CATALOG_NOT_FOUND);
    /* A product deleted meanwhile is passed over on release. */
    assert_int_equal(catalog_product_delete(f->store, a), CATALOG_OK);
    assert_int_equal(catalog_stock_release(f->store, "o2"), CATALOG_OK);
    /* Bad arguments. */
    assert_int_equal(catalog_stock_reserve(f->store, "", lines, 1, &short_product), CATALOG_ERROR);
    lines[0].qty = 0;
    assert_int_equal(catalog_stock_reserve(f->store, "o3", lines, 1, &short_product),
                     CATALOG_ERROR);
    free(p);
}

#define S_THREADS 8
#define S_ORDERS 100

typedef struct {
    kv_t *kv;
    const char *product;
    int index;
    pthread_barrier_t *barrier;
    int ok, out;
} s_worker_t;

static void *s_reserver(void *arg)
{
    s_worker_t *w = arg;
    catalog_store_t *store = catalog_store_open(w->kv, 1);
    pthread_barrier_wait(w->barrier);
    for (int i = w->index; i < S_ORDERS; i += S_THREADS) {
        char order[32];
        stock_short_t short_product;
        snprintf(order, sizeof order, "order-%d", i);
        stock_line_t line = {.qty = 1};
        snprintf(line.product_id, sizeof line.product_id, "%s", w->product);
        catalog_status_t status = catalog_stock_reserve(store, order, &line, 1, &short_product);
        if (status == CATALOG_OK)
            w->ok++;
        else if (status == CATALOG_OUT_OF_STOCK)
            w->out++;
    }
    catalog_store_close(&store);
    return NULL;
}

static void test_reserve_concurrent(void **state)
{
    fx_t *f = *state;
    char id[CATALOG_ID_MAX + 1];
    s_product(f->store, "HOT", "Hot item", "", 100, NULL, 50, id);
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, S_THREADS);
    pthread_t threads[S_THREADS];
    s_worker_t workers[S_THREADS];
    for (int i = 0; i < S_THREADS; i++) {
        workers[i] = (s_worker_t){.kv = f->kv, .product = id, .index = i, .barrier = &barrier};
        assert_int_equal(pthread_create(&threads[i], NULL, s_reserver, &workers[i]), 0);
    }
    int ok = 0, out = 0;
    for (int i = 0; i < S_THREADS; i++) {
        pthread_join(threads[i], NULL);
        ok += workers[i].ok;
        out += workers[i].out;
    }
    pthread_barrier_destroy(&barrier);
    assert_int_equal(ok, 50);
    assert_int_equal(out, 50);
    assert_int_equal(s_stock(f->store, id), 0);
}

/* ---- updates are patches: nothing they do not name changes ---- */

/* The issue's case, step by step: reserve all 5, patch the description;
 * the stock stays 0 (a whole record read before the reservation, written
 * back, made it 5 again while the reservation still held 5). */
static void test_patch_keeps_reservations(void **state)
{
    fx_t *f = *state;
    char id[CATALOG_ID_MAX + 1];
    stock_short_t short_product;
    s_product(f->store, "LAST-5", "Last five", "before", 700, NULL, 5, id);
    product_t *p = calloc(1, sizeof *p), *values = calloc(1, sizeof *values);
    assert_int_equal(catalog_product_get(f->store, id, p), CATALOG_OK);
    int64_t seen_version = p->version; /* what a client read before */
    stock_line_t line = {.qty = 5};
    snprintf(line.product_id, sizeof line.product_id, "%s", id);
    assert_int_equal(catalog_stock_reserve(f->store, "o-all", &line, 1, &short_product),
                     CATALOG_OK);
    assert_int_equal(s_stock(f->store, id), 0);

    snprintf(values->description, sizeof values->description, "after");
    values->stock = 5; /* what the client read: not named in the mask */
    assert_int_equal(
        catalog_product_update(f->store, id, CATALOG_PRODUCT_DESCRIPTION, values, 0, p),
        CATALOG_OK);
    assert_int_equal(p->stock, 0);
    assert_string_equal(p->description, "after");
    assert_int_equal(p->version, seen_version + 2); /* the reservation, the patch */
    assert_int_equal(s_stock(f->store, id), 0);
    /* The version the client saw is stale: the reservation wrote since. */
    assert_int_equal(
        catalog_product_update(f->store, id, CATALOG_PRODUCT_DESCRIPTION, values, seen_version, p),
        CATALOG_VERSION_MISMATCH);
    /* Set-stock sets what is free to reserve; the reservation's 5 stay
     * held and come back on release, on top. */
    assert_int_equal(catalog_product_set_stock(f->store, id, 2, p), CATALOG_OK);
    assert_int_equal(p->stock, 2);
    assert_string_equal(p->description, "after");
    assert_int_equal(catalog_stock_release(f->store, "o-all"), CATALOG_OK);
    assert_int_equal(s_stock(f->store, id), 7);
    free(p);
    free(values);
}

#define S_PATCHERS 4
#define S_PATCHES 60
#define S_RESERVERS 4
#define S_ROUNDS 40
#define S_PATCH_STOCK 1000

typedef struct {
    kv_t *kv;
    const char *product;
    int index;
    pthread_barrier_t *barrier;
    int ok, failed; /* writes that succeeded / did not */
    int held;       /* reserve: units still reserved at the end */
} s_patcher_t;

/* Patches the description (and price) S_PATCHES times, with and without
 * an expected version read just before. */
static void *s_patcher(void *arg)
{
    s_patcher_t *w = arg;
    catalog_store_t *store = catalog_store_open(w->kv, 1);
    product_t *values = calloc(1, sizeof *values), *out = calloc(1, sizeof *out);
    pthread_barrier_wait(w->barrier);
    for (int i = 0; store && values && out && i < S_PATCHES; i++) {
        snprintf(values->description, sizeof values->description, "patch %d of writer %d", i,
                 w->index);
        values->price_cents = 100 + i;
        int64_t expected = 0;
        if (i % 2 && catalog_product_get(store, w->product, out) == CATALOG_OK)
            expected = out->version;
        catalog_status_t status = catalog_product_update(
            store, w->product, CATALOG_PRODUCT_DESCRIPTION | CATALOG_PRODUCT_PRICE, values,
            expected, out);
        if (status == CATALOG_OK)
            w->ok++;
        else if (status != CATALOG_VERSION_MISMATCH)
            w->failed++;
    }
    free(values);
    free(out);
    catalog_store_close(&store);
    return NULL;
}

/* Reserves 1 to 3 units per order and releases every other order: each
 * round moves stock both ways; w->held counts what stays reserved. */
static void *s_stock_mover(void *arg)
{
    s_patcher_t *w = arg;
    catalog_store_t *store = catalog_store_open(w->kv, 1);
    pthread_barrier_wait(w->barrier);
    for (int i = 0; store && i < S_ROUNDS; i++) {
        char order[48];
        stock_short_t short_product;
        snprintf(order, sizeof order, "mover-%d-%d", w->index, i);
        stock_line_t line = {.qty = 1 + i % 3};
        snprintf(line.product_id, sizeof line.product_id, "%s", w->product);
        if (catalog_stock_reserve(store, order, &line, 1, &short_product) != CATALOG_OK) {
            w->failed++;
            continue;
        }
        w->ok++;
        if (i % 2 == 0) {
            if (catalog_stock_release(store, order) == CATALOG_OK)
                w->ok++;
            else
                w->failed++;
        } else
            w->held += (int)line.qty;
    }
    catalog_store_close(&store);
    return NULL;
}

/* Patches from some threads while others reserve and release, each with
 * its own handle, all let go at once: the stock must end at what the
 * reservations left (a patch that wrote back the stock it read would
 * have undone some), and the version must count every write. */
static void test_patch_concurrent_with_reservations(void **state)
{
    fx_t *f = *state;
    char id[CATALOG_ID_MAX + 1];
    s_product(f->store, "BUSY", "Busy item", "start", 100, NULL, S_PATCH_STOCK, id);
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, S_PATCHERS + S_RESERVERS), 0);
    pthread_t threads[S_PATCHERS + S_RESERVERS];
    s_patcher_t workers[S_PATCHERS + S_RESERVERS];
    for (int i = 0; i < S_PATCHERS + S_RESERVERS; i++) {
        workers[i] = (s_patcher_t){.kv = f->kv, .product = id, .index = i, .barrier = &barrier};
        assert_int_equal(pthread_create(&threads[i], NULL,
                                        i < S_PATCHERS ? s_patcher : s_stock_mover, &workers[i]),
                         0);
    }
    int writes = 0, patches = 0, held = 0;
    for (int i = 0; i < S_PATCHERS + S_RESERVERS; i++) {
        assert_int_equal(pthread_join(threads[i], NULL), 0);
        assert_int_equal(workers[i].failed, 0);
        writes += workers[i].ok;
        held += workers[i].held;
        if (i < S_PATCHERS)
            patches += workers[i].ok;
    }
    assert_int_equal(pthread_barrier_destroy(&barrier), 0);
    /* Every unconditional patch goes through; conditional ones may lose
     * to a write between their read and theirs (412), never silently. */
    assert_true(patches >= S_PATCHERS * S_PATCHES / 2);
    product_t *p = calloc(1, sizeof *p);
    assert_int_equal(catalog_product_get(f->store, id, p), CATALOG_OK);
    if (p->stock != S_PATCH_STOCK - held)
        print_error("stock %lld, but %d units are held of %d: a patch undid stock moves\n",
                    (long long)p->stock, held, S_PATCH_STOCK);
    assert_int_equal(p->stock, S_PATCH_STOCK - held);
    assert_int_equal(p->version, 1 + writes);
    assert_non_null(strstr(p->description, "patch "));
    /* Releasing what is held brings all of it back. */
    for (int w = S_PATCHERS; w < S_PATCHERS + S_RESERVERS; w++)
        for (int i = 1; i < S_ROUNDS; i += 2) {
            char order[48];
            snprintf(order, sizeof order, "mover-%d-%d", workers[w].index, i);
            assert_int_equal(catalog_stock_release(f->store, order), CATALOG_OK);
        }
    assert_int_equal(s_stock(f->store, id), S_PATCH_STOCK);
    free(p);
}

#define S_CATEGORY_STEPS 150

typedef struct {
    kv_t *kv;
    const char *id;                      /* the category changed */
    char (*parents)[CATALOG_ID_MAX + 1]; /* mover: the parents in turn */
    bool rename;                         /* renamer, else mover */
    atomic_bool *done;                   /* watcher: stop */
    pthread_barrier_t *barrier;
    int failed;
    int regressions; /* watcher */
    int reads;       /* watcher */
} s_category_writer_t;

/* A rename to "name <i>" with i rising, or a move to parents[i] in turn. */
static void *s_category_writer(void *arg)
{
    s_category_writer_t *w = arg;
    catalog_store_t *store = catalog_store_open(w->kv, 1);
    pthread_barrier_wait(w->barrier);
    for (int i = 0; store && i < S_CATEGORY_STEPS; i++) {
        category_t values = {0}, out;
        unsigned fields;
        if (w->rename) {
            snprintf(values.name, sizeof values.name, "name %04d", i);
            fields = CATALOG_CATEGORY_NAME;
        } else {
            snprintf(values.parent_id, sizeof values.parent_id, "%s", w->parents[i]);
            fields = CATALOG_CATEGORY_PARENT;
        }
        if (catalog_category_update(store, w->id, fields, &values, &out) != CATALOG_OK)
            w->failed++;
    }
    catalog_store_close(&store);
    return NULL;
}

/* The index of parent in parents, or -1 (the original one). */
static int s_parent_index(char (*parents)[CATALOG_ID_MAX + 1], const char *parent)
{
    for (int i = 0; i < S_CATEGORY_STEPS; i++)
        if (strcmp(parents[i], parent) == 0)
            return i;
    return -1;
}

/* Reads the category until told to stop: its name number and its
 * parent's index must never go back (each field has one writer, in
 * order; going back is a stale copy of that field written by the other
 * writer). */
static void *s_category_watcher(void *arg)
{
    s_category_writer_t *w = arg;
    catalog_store_t *store = catalog_store_open(w->kv, 1);
    int last_name = -1, last_parent = -1;
    pthread_barrier_wait(w->barrier);
    while (store && !atomic_load(w->done)) {
        category_t c;
        if (catalog_category_get(store, w->id, &c) != CATALOG_OK) {
            w->failed++;
            break;
        }
        w->reads++;
        int name = -1, parent = s_parent_index(w->parents, c.parent_id);
        sscanf(c.name, "name %d", &name);
        if (name < last_name || parent < last_parent)
            w->regressions++;
        last_name = name > last_name ? name : last_name;
        last_parent = parent > last_parent ? parent : last_parent;
    }
    catalog_store_close(&store);
    return NULL;
}

/* One thread renames a category while another moves it from parent to
 * parent: both changes must stick (category.update read the category
 * outside its write and wrote all three fields back). */
static void test_category_patch_concurrent(void **state)
{
    fx_t *f = *state;
    char id[CATALOG_ID_MAX + 1], first[CATALOG_ID_MAX + 1];
    s_category(f->store, "Wanderer", NULL, id);
    s_category(f->store, "First home", NULL, first);
    char(*parents)[CATALOG_ID_MAX + 1] = calloc(S_CATEGORY_STEPS, sizeof *parents);
    for (int i = 0; i < S_CATEGORY_STEPS; i++) {
        char name[32];
        snprintf(name, sizeof name, "Home %d", i);
        s_category(f->store, name, NULL, parents[i]);
    }
    category_t values = {0}, out;
    snprintf(values.parent_id, sizeof values.parent_id, "%s", first);
    assert_int_equal(catalog_category_update(f->store, id, CATALOG_CATEGORY_PARENT, &values, &out),
                     CATALOG_OK);

    atomic_bool done;
    atomic_init(&done, false);
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, 3), 0);
    s_category_writer_t w[3];
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (s_category_writer_t){.kv = f->kv,
                                     .id = id,
                                     .parents = parents,
                                     .rename = i == 0,
                                     .done = &done,
                                     .barrier = &barrier};
        assert_int_equal(pthread_create(&threads[i], NULL,
                                        i < 2 ? s_category_writer : s_category_watcher, &w[i]),
                         0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(threads[i], NULL), 0);
    atomic_store(&done, true);
    assert_int_equal(pthread_join(threads[2], NULL), 0);
    assert_int_equal(pthread_barrier_destroy(&barrier), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(w[i].failed, 0);
    if (w[2].regressions)
        print_error("%d of %d reads saw a field go back\n", w[2].regressions, w[2].reads);
    assert_int_equal(w[2].regressions, 0);
    category_t c;
    assert_int_equal(catalog_category_get(f->store, id, &c), CATALOG_OK);
    char want[32];
    snprintf(want, sizeof want, "name %04d", S_CATEGORY_STEPS - 1);
    assert_string_equal(c.name, want);
    assert_string_equal(c.parent_id, parents[S_CATEGORY_STEPS - 1]);
    free(parents);
}

/* ---- category pages ---- */

static void test_category_pages(void **state)
{
    fx_t *f = *state;
    enum { MADE = 45 };
    char ids[MADE][CATALOG_ID_MAX + 1];
    for (int i = 0; i < MADE; i++) {
        char name[32];
        snprintf(name, sizeof name, "Paged %d", i);
        s_category(f->store, name, NULL, ids[i]);
    }
    /* Pages of 20: 20, 20, 5, in creation order, "more" on all but the
     * last; the cursor is the last id. */
    category_t page[20];
    char after[CATALOG_ID_MAX + 1] = "";
    int seen = 0, pages = 0;
    bool more = true;
    while (more) {
        int count = -1;
        assert_int_equal(catalog_category_page(f->store, after, 20, page, &count, &more),
                         CATALOG_OK);
        assert_int_equal(count, MADE - seen < 20 ? MADE - seen : 20);
        for (int i = 0; i < count; i++)
            assert_string_equal(page[i].id, ids[seen + i]);
        seen += count;
        pages++;
        assert_int_equal(more, seen < MADE);
        snprintf(after, sizeof after, "%s", page[count - 1].id);
    }
    assert_int_equal(seen, MADE);
    assert_int_equal(pages, 3);
    /* Exactly a page's worth left: no "more" after it. */
    int count = -1;
    assert_int_equal(catalog_category_page(f->store, ids[MADE - 21], 20, page, &count, &more),
                     CATALOG_OK);
    assert_int_equal(count, 20);
    assert_false(more);
    /* After the last: empty; NULL is the start; any string is a position. */
    assert_int_equal(catalog_category_page(f->store, ids[MADE - 1], 20, page, &count, &more),
                     CATALOG_OK);
    assert_int_equal(count, 0);
    assert_false(more);
    assert_int_equal(catalog_category_page(f->store, NULL, 1, page, &count, NULL), CATALOG_OK);
    assert_int_equal(count, 1);
    assert_string_equal(page[0].id, ids[0]);
    char between[CATALOG_ID_MAX + 2];
    snprintf(between, sizeof between, "%s0", ids[9]);
    assert_int_equal(catalog_category_page(f->store, between, 2, page, &count, &more), CATALOG_OK);
    assert_int_equal(count, 2);
    assert_string_equal(page[0].id, ids[10]);
    assert_true(more);
    char longer[128];
    snprintf(longer, sizeof longer, "%s%s", ids[3], "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz");
    assert_int_equal(catalog_category_page(f->store, longer, 1, page, &count, &more), CATALOG_OK);
    assert_int_equal(count, 1);
    assert_string_equal(page[0].id, ids[4]);
    assert_int_equal(catalog_category_page(f->store, "d", 1, page, &count, &more), CATALOG_OK);
    assert_int_equal(count, 0);
    /* limit 0 is empty (more tells whether any exist); bad arguments. */
    assert_int_equal(catalog_category_page(f->store, NULL, 0, NULL, &count, &more), CATALOG_OK);
    assert_int_equal(count, 0);
    assert_true(more);
    assert_int_equal(catalog_category_page(f->store, NULL, -1, page, &count, &more), CATALOG_ERROR);
    assert_int_equal(catalog_category_page(f->store, NULL, 1, page, NULL, &more), CATALOG_ERROR);
    /* The whole list for tools, cut at its array. */
    category_t all[MADE + 1];
    assert_int_equal(catalog_category_list(f->store, all, MADE + 1, &count), CATALOG_OK);
    assert_int_equal(count, MADE);
    assert_int_equal(catalog_category_list(f->store, all, 10, &count), CATALOG_OK);
    assert_int_equal(count, 10);
}

/* ---- records as stored ---- */

static void s_pack_s(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

/* Puts bytes under key in the store's database `name`, as a data
 * directory written by an earlier version holds them. */
static void s_put_raw(fx_t *f, const char *name, const char *key, const msgpack_sbuffer *sb)
{
    int index = -1;
    for (int i = 0; i < CATALOG_STORE_DBS; i++)
        if (strcmp(catalog_store_names[i], name) == 0)
            index = i;
    assert_true(index >= 0);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(f->kv), NULL, 0, &txn), 0);
    MDB_val k = {.mv_size = strlen(key), .mv_data = (void *)key};
    MDB_val v = {.mv_size = sb->size, .mv_data = sb->data};
    assert_int_equal(mdb_put(txn, kv_dbi(f->kv, 1 + index), &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* A product record in the layout the store has always written, plus a
 * key no version knows yet; stock_as_str spoils it. */
static void s_old_product(msgpack_sbuffer *sb, bool stock_as_str)
{
    msgpack_packer pk;
    msgpack_sbuffer_clear(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 12);
    s_pack_s(&pk, "sku"), s_pack_s(&pk, "OLD-1");
    s_pack_s(&pk, "name"), s_pack_s(&pk, "Old lamp");
    s_pack_s(&pk, "description"), s_pack_s(&pk, "made before the codec");
    s_pack_s(&pk, "price_cents"), msgpack_pack_int64(&pk, -250);
    s_pack_s(&pk, "currency"), s_pack_s(&pk, "EUR");
    s_pack_s(&pk, "future_field"), msgpack_pack_array(&pk, 1), msgpack_pack_nil(&pk);
    s_pack_s(&pk, "category_id"), s_pack_s(&pk, "");
    s_pack_s(&pk, "attributes"), msgpack_pack_bin(&pk, 4);
    msgpack_pack_bin_body(&pk, "\x81\xa1k\x07", 4); /* {"k": 7} */
    s_pack_s(&pk, "stock");
    if (stock_as_str)
        s_pack_s(&pk, "12");
    else
        msgpack_pack_int64(&pk, 12);
    s_pack_s(&pk, "version"), msgpack_pack_int64(&pk, 3);
    s_pack_s(&pk, "created_at"), msgpack_pack_int64(&pk, 1700000000000);
    s_pack_s(&pk, "updated_at"), msgpack_pack_int64(&pk, 1700000000001);
}

/* Records written by earlier versions (the same maps, keys in their
 * order, a key added later) load: old data directories keep working.
 * A record with a field of the wrong type is an error, not a product. */
static void test_stored_records_load(void **state)
{
    fx_t *f = *state;
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    s_old_product(&sb, false);
    s_put_raw(f, "products", "p00000000000100000001", &sb);

    msgpack_packer pk;
    msgpack_sbuffer_clear(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 3);
    s_pack_s(&pk, "name"), s_pack_s(&pk, "Lamps");
    s_pack_s(&pk, "slug"), s_pack_s(&pk, "lamps");
    s_pack_s(&pk, "parent_id"), s_pack_s(&pk, "");
    s_put_raw(f, "categories", "c00000000000100000002", &sb);

    msgpack_sbuffer_clear(&sb);
    msgpack_pack_map(&pk, 2);
    s_pack_s(&pk, "state"), s_pack_s(&pk, "reserved");
    s_pack_s(&pk, "lines"), msgpack_pack_array(&pk, 1), msgpack_pack_array(&pk, 2);
    s_pack_s(&pk, "p00000000000100000001"), msgpack_pack_int64(&pk, 5);
    s_put_raw(f, "reservations", "order-old", &sb);

    product_t *p = malloc(sizeof *p);
    assert_non_null(p);
    assert_int_equal(catalog_product_get(f->store, "p00000000000100000001", p), CATALOG_OK);
    assert_string_equal(p->sku, "OLD-1");
    assert_string_equal(p->name, "Old lamp");
    assert_string_equal(p->description, "made before the codec");
    assert_true(p->price_cents == -250);
    assert_string_equal(p->currency, "EUR");
    assert_string_equal(p->category_id, "");
    assert_int_equal(p->attributes_len, 4);
    assert_memory_equal(p->attributes, "\x81\xa1k\x07", 4);
    assert_true(p->stock == 12 && p->version == 3);
    assert_true(p->created_at_ms == 1700000000000 && p->updated_at_ms == 1700000000001);

    category_t c;
    assert_int_equal(catalog_category_get(f->store, "c00000000000100000002", &c), CATALOG_OK);
    assert_string_equal(c.name, "Lamps");
    assert_string_equal(c.slug, "lamps");
    assert_string_equal(c.parent_id, "");

    /* The old record has no reserved: 0 until the upgrade counts the old
     * live reservation's 5. */
    assert_true(p->reserved == 0);
    assert_int_equal(catalog_store_upgrade(f->kv, 1), CATALOG_OK);
    assert_int_equal(catalog_product_get(f->store, "p00000000000100000001", p), CATALOG_OK);
    assert_true(p->reserved == 5 && p->stock == 12 && p->version == 3);

    /* The old reservation's lines are read: releasing gives 5 back. */
    assert_int_equal(catalog_stock_release(f->store, "order-old"), CATALOG_OK);
    assert_int_equal(catalog_product_get(f->store, "p00000000000100000001", p), CATALOG_OK);
    assert_true(p->stock == 17 && p->version == 4 && p->reserved == 0);
    assert_int_equal(catalog_stock_release(f->store, "order-old"), CATALOG_OK);

    s_old_product(&sb, true);
    s_put_raw(f, "products", "p00000000000100000003", &sb);
    assert_int_equal(catalog_product_get(f->store, "p00000000000100000003", p), CATALOG_ERROR);
    free(p);
    msgpack_sbuffer_destroy(&sb);
}

/* ---- the reserved counter and the check ---- */

static int64_t s_reserved(catalog_store_t *store, const char *id)
{
    product_t *p = calloc(1, sizeof *p);
    assert_int_equal(catalog_product_get(store, id, p), CATALOG_OK);
    int64_t reserved = p->reserved;
    free(p);
    return reserved;
}

static int64_t s_version(catalog_store_t *store, const char *id)
{
    product_t *p = calloc(1, sizeof *p);
    assert_int_equal(catalog_product_get(store, id, p), CATALOG_OK);
    int64_t version = p->version;
    free(p);
    return version;
}

/* Runs the check; asserts it ran. The caller frees. */
static catalog_check_t *s_check(catalog_store_t *store)
{
    catalog_check_t *c = malloc(sizeof *c);
    assert_non_null(c);
    assert_int_equal(catalog_store_check(store, c), CATALOG_OK);
    if (!c->ok)
        for (int i = 0; i < c->n_problems; i++)
            print_message("check: %s %s: %s\n", c->problems[i].check, c->problems[i].id,
                          c->problems[i].message);
    return c;
}

/* Whether the check found a problem of this rule about this id. */
static bool s_has_problem(const catalog_check_t *c, const char *check, const char *id)
{
    for (int i = 0; i < c->n_problems; i++)
        if (strcmp(c->problems[i].check, check) == 0 && (!id || strcmp(c->problems[i].id, id) == 0))
            return true;
    return false;
}

static void s_line(stock_line_t *line, const char *product, int64_t qty)
{
    snprintf(line->product_id, sizeof line->product_id, "%s", product);
    line->qty = qty;
}

static void s_expect_counts(catalog_store_t *store, int64_t products, int64_t stock,
                            int64_t reserved, int64_t live, int64_t committed, int64_t released)
{
    catalog_check_t *c = s_check(store);
    assert_true(c->ok);
    assert_int_equal(c->n_problems, 0);
    assert_int_equal(c->products, products);
    assert_int_equal(c->stock_units, stock);
    assert_int_equal(c->reserved_units, reserved);
    assert_int_equal(c->live_reservations, live);
    assert_int_equal(c->committed_units, committed);
    assert_int_equal(c->released, released);
    free(c);
}

/* reserve +qty, release of a reserved one -qty, commit -qty, release of
 * a committed one: stock back, reserved unchanged; the check green and
 * its counts exact after every step; a commit leaves version alone. */
static void test_reserved_counter(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], b[CATALOG_ID_MAX + 1];
    s_product(f->store, "RA", "A", "", 100, NULL, 5, a);
    s_product(f->store, "RB", "B", "", 100, NULL, 3, b);
    s_expect_counts(f->store, 2, 8, 0, 0, 0, 0);
    stock_short_t short_line;
    stock_line_t lines[2];
    s_line(&lines[0], a, 2);
    s_line(&lines[1], b, 1);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_line), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 3);
    assert_int_equal(s_reserved(f->store, a), 2);
    assert_int_equal(s_reserved(f->store, b), 1);
    s_expect_counts(f->store, 2, 5, 3, 1, 0, 0);
    /* a repeat changes nothing */
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_line), CATALOG_OK);
    assert_int_equal(s_reserved(f->store, a), 2);

    s_line(&lines[0], a, 1);
    assert_int_equal(catalog_stock_reserve(f->store, "o2", lines, 1, &short_line), CATALOG_OK);
    assert_int_equal(s_reserved(f->store, a), 3);
    s_expect_counts(f->store, 2, 4, 4, 2, 0, 0);

    /* commit: out of reserved, stock stays out; version unchanged */
    int64_t version = s_version(f->store, a);
    assert_int_equal(catalog_stock_commit(f->store, "o1"), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 2);
    assert_int_equal(s_reserved(f->store, a), 1);
    assert_int_equal(s_reserved(f->store, b), 0);
    assert_int_equal(s_version(f->store, a), version);
    assert_int_equal(catalog_stock_commit(f->store, "o1"), CATALOG_OK);
    assert_int_equal(s_reserved(f->store, a), 1);
    s_expect_counts(f->store, 2, 4, 1, 1, 3, 0);

    /* release of a reserved one: back to stock, out of reserved */
    assert_int_equal(catalog_stock_release(f->store, "o2"), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 3);
    assert_int_equal(s_reserved(f->store, a), 0);
    assert_int_equal(catalog_stock_release(f->store, "o2"), CATALOG_OK);
    assert_int_equal(s_reserved(f->store, a), 0);
    s_expect_counts(f->store, 2, 5, 0, 0, 3, 1);

    /* release after commit: stock back, reserved unchanged */
    assert_int_equal(catalog_stock_release(f->store, "o1"), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 5);
    assert_int_equal(s_stock(f->store, b), 3);
    assert_int_equal(s_reserved(f->store, a), 0);
    assert_int_equal(s_reserved(f->store, b), 0);
    s_expect_counts(f->store, 2, 8, 0, 0, 0, 2);

    /* set_stock and a patch leave reserved alone */
    assert_int_equal(catalog_stock_reserve(f->store, "o3", lines, 1, &short_line), CATALOG_OK);
    product_t *p = calloc(2, sizeof *p);
    assert_int_equal(catalog_product_set_stock(f->store, a, 9, p), CATALOG_OK);
    assert_int_equal(p->reserved, 1);
    snprintf(p[1].name, sizeof p[1].name, "A renamed");
    assert_int_equal(catalog_product_update(f->store, a, CATALOG_PRODUCT_NAME, &p[1], 0, p),
                     CATALOG_OK);
    assert_int_equal(p->reserved, 1);
    assert_int_equal(s_reserved(f->store, a), 1);
    s_expect_counts(f->store, 2, 12, 1, 1, 0, 2);
    free(p);
}

/* A refused reserve names the first line in the caller's order that is
 * short or missing, with the product's qty summed over the order. */
static void test_reserve_short_details(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], b[CATALOG_ID_MAX + 1];
    s_product(f->store, "SA", "A", "", 100, NULL, 3, a);
    s_product(f->store, "SB", "B", "", 100, NULL, 1, b);
    stock_short_t short_line;
    stock_line_t lines[3];
    /* two lines of one product: 2 + 2 > 3 */
    s_line(&lines[0], b, 1);
    s_line(&lines[1], a, 2);
    s_line(&lines[2], a, 2);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 3, &short_line),
                     CATALOG_OUT_OF_STOCK);
    assert_string_equal(short_line.product_id, a);
    assert_int_equal(short_line.requested, 4);
    assert_int_equal(short_line.available, 3);
    assert_int_equal(s_stock(f->store, a), 3);
    assert_int_equal(s_stock(f->store, b), 1);
    assert_int_equal(s_reserved(f->store, b), 0);
    /* both short: the caller's first, although a sorts before b */
    s_line(&lines[0], b, 5);
    s_line(&lines[1], a, 9);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_line),
                     CATALOG_OUT_OF_STOCK);
    assert_string_equal(short_line.product_id, b);
    assert_int_equal(short_line.requested, 5);
    assert_int_equal(short_line.available, 1);
    /* a missing product listed first */
    s_line(&lines[0], "pmissing", 1);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_line),
                     CATALOG_NOT_FOUND);
    assert_string_equal(short_line.product_id, "pmissing");
    assert_int_equal(short_line.available, 0);
    /* enough: nothing named */
    s_line(&lines[0], a, 1);
    s_line(&lines[1], a, 2);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_line), CATALOG_OK);
    assert_string_equal(short_line.product_id, "");
    assert_int_equal(s_reserved(f->store, a), 3);
    s_expect_counts(f->store, 2, 1, 3, 1, 0, 0);
}

/* Takes n jobs from inbox, waiting on its descriptor for them (a bound
 * that only a hung write reaches). */
static void s_take_jobs(kv_inbox_t *inbox, int n)
{
    int taken = 0;
    while (taken < n) {
        struct pollfd item = {.fd = kv_inbox_fd(inbox), .events = POLLIN};
        int rc = poll(&item, 1, 30000);
        if (rc < 0 && errno == EINTR)
            continue;
        assert_true(rc > 0);
        for (kv_job_t *job = kv_inbox_take(inbox); job; job = job->next)
            taken++;
    }
    assert_int_equal(taken, n);
}

/* Submits the prepared writes w[0..n) as jobs[0..n) to inbox at once. */
static void s_submit(kv_t *kv, stock_write_t *w, kv_job_t *jobs, int n, kv_inbox_t *inbox)
{
    for (int i = 0; i < n; i++) {
        jobs[i] = (kv_job_t){.fn = catalog_stock_write_txn, .arg = &w[i], .cookie = &w[i]};
        kv_submit(kv, &jobs[i], inbox);
    }
}

/* The prepared writes without waiting (kv_submit and an inbox, as a
 * worker's call_write runs them): two orders for the last units of a
 * product go out at once, prepared from a handle closed before they are
 * back; whichever runs first is reserved, the other refused out of
 * stock with its details filled inside the write. Then the winner's
 * commit and the loser's release go out together the same way. */
static void test_reserve_submitted(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], b[CATALOG_ID_MAX + 1];
    s_product(f->store, "QA", "A", "", 100, NULL, 3, a);
    s_product(f->store, "QB", "B", "", 100, NULL, 5, b);
    /* 2 of a each: the second is short by one; the second order lists b
     * first and a in two lines (summed, and named though not first). */
    stock_line_t one[1], two[3];
    s_line(&one[0], a, 2);
    s_line(&two[0], b, 1);
    s_line(&two[1], a, 1);
    s_line(&two[2], a, 1);
    const char *orders[2] = {"o-one", "o-two"};
    kv_inbox_t *inbox = kv_inbox_new();
    assert_non_null(inbox);
    stock_write_t *w = calloc(2, sizeof *w);
    assert_non_null(w);
    stock_short_t short_line[2];
    memset(short_line, 'x', sizeof short_line); /* the prepare clears them */
    kv_job_t jobs[2];

    catalog_store_t *handle = catalog_store_open(f->kv, 1);
    assert_non_null(handle);
    assert_true(catalog_stock_write_reserve(&w[0], handle, orders[0], one, 1, &short_line[0]));
    assert_true(catalog_stock_write_reserve(&w[1], handle, orders[1], two, 3, &short_line[1]));
    kv_t *kv = catalog_store_kv(handle);
    assert_ptr_equal(kv, f->kv);
    s_submit(kv, w, jobs, 2, inbox);
    catalog_store_close(&handle); /* the writes need nothing of it */
    s_take_jobs(inbox, 2);
    catalog_status_t status[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(jobs[i].rc, 0);
        status[i] = catalog_stock_write_end(&w[i], true, jobs[i].result);
    }
    assert_true(status[0] == CATALOG_OK || status[1] == CATALOG_OK);
    int won = status[0] == CATALOG_OK ? 0 : 1, lost = 1 - won;
    assert_int_equal(status[lost], CATALOG_OUT_OF_STOCK);
    assert_string_equal(short_line[lost].product_id, a);
    assert_int_equal(short_line[lost].requested, 2);
    assert_int_equal(short_line[lost].available, 1);
    assert_string_equal(short_line[won].product_id, "");
    assert_int_equal(short_line[won].requested, 0);
    int b_taken = won == 1; /* the second order also holds one of b */
    assert_int_equal(s_stock(f->store, a), 1);
    assert_int_equal(s_reserved(f->store, a), 2);
    assert_int_equal(s_stock(f->store, b), 5 - b_taken);
    assert_int_equal(s_reserved(f->store, b), b_taken);
    s_expect_counts(f->store, 2, 1 + 5 - b_taken, 2 + b_taken, 1, 0, 0);

    /* The winner's commit and the loser's release (it holds nothing). */
    assert_true(catalog_stock_write_commit(&w[0], f->store, orders[won]));
    assert_true(catalog_stock_write_release(&w[1], f->store, orders[lost]));
    s_submit(f->kv, w, jobs, 2, inbox);
    s_take_jobs(inbox, 2);
    assert_int_equal(jobs[0].rc, 0);
    assert_int_equal(jobs[1].rc, 0);
    assert_int_equal(catalog_stock_write_end(&w[0], true, jobs[0].result), CATALOG_OK);
    assert_int_equal(catalog_stock_write_end(&w[1], true, jobs[1].result), CATALOG_NOT_FOUND);
    assert_int_equal(s_stock(f->store, a), 1);
    assert_int_equal(s_reserved(f->store, a), 0);
    assert_int_equal(s_reserved(f->store, b), 0);
    s_expect_counts(f->store, 2, 1 + 5 - b_taken, 0, 0, 2 + b_taken, 0);
    /* A transaction that did not commit is an error, whatever the
     * function said, and names no line. */
    assert_true(catalog_stock_write_reserve(&w[0], f->store, "o-three", one, 1, &short_line[0]));
    short_line[0].requested = 7;
    assert_int_equal(catalog_stock_write_end(&w[0], false, CATALOG_OUT_OF_STOCK), CATALOG_ERROR);
    assert_int_equal(short_line[0].requested, 0);
    /* Arguments the blocking reserve refuses are refused by the prepare. */
    assert_false(catalog_stock_write_reserve(&w[0], f->store, "", one, 1, &short_line[0]));
    assert_false(catalog_stock_write_reserve(&w[0], f->store, "o-four", one, 0, NULL));
    assert_false(catalog_stock_write_commit(&w[0], f->store, NULL));
    kv_inbox_destroy(&inbox);
    free(w);
}

/* The store's product fields as it writes them (the record codec, as in
 * catalog_store.c): records damaged by hand below are otherwise genuine. */
static const record_field_t s_test_product_fields[] = {
    RECORD_STR_FIELD(product_t, sku, "sku", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, name, "name", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, description, "description", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, price_cents, "price_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, currency, "currency", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, category_id, "category_id", RECORD_REQUIRED),
    RECORD_BIN_FIELD(product_t, attributes, attributes_len, "attributes", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, stock, "stock", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, reserved, "reserved", 0),
    RECORD_INT64_FIELD(product_t, version, "version", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, created_at_ms, "created_at", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, updated_at_ms, "updated_at", RECORD_REQUIRED),
};
static const record_table_t s_test_product_table = RECORD_TABLE(s_test_product_fields);
/* Without "reserved": the layout from before the counter (it is the
 * last field but three; the table is rebuilt without it). */
static const record_field_t s_test_old_product_fields[] = {
    RECORD_STR_FIELD(product_t, sku, "sku", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, name, "name", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, description, "description", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, price_cents, "price_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, currency, "currency", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, category_id, "category_id", RECORD_REQUIRED),
    RECORD_BIN_FIELD(product_t, attributes, attributes_len, "attributes", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, stock, "stock", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, version, "version", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, created_at_ms, "created_at", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, updated_at_ms, "updated_at", RECORD_REQUIRED),
};
static const record_table_t s_test_old_product_table = RECORD_TABLE(s_test_old_product_fields);

static void s_put_raw(fx_t *f, const char *name, const char *key, const msgpack_sbuffer *sb);

/* Writes p under p->id straight into LMDB, around the store. */
static void s_put_product_raw(fx_t *f, const product_t *p, bool old_layout)
{
    mpout_t out;
    mpout_init(&out, 0);
    assert_int_equal(
        record_pack(old_layout ? &s_test_old_product_table : &s_test_product_table, p, &out), 0);
    s_put_raw(f, "products", p->id, &out.buf);
    mpout_destroy(&out);
}

/* The index of database name in catalog_store_names, + 1 for the
 * fixture's "other" first. */
static MDB_dbi s_dbi(fx_t *f, const char *name)
{
    for (int i = 0; i < CATALOG_STORE_DBS; i++)
        if (strcmp(catalog_store_names[i], name) == 0)
            return kv_dbi(f->kv, 1 + i);
    fail_msg("no database %s", name);
    return 0;
}

static void s_del_raw(fx_t *f, const char *name, const void *key, size_t len)
{
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(f->kv), NULL, 0, &txn), 0);
    MDB_val k = {.mv_size = len, .mv_data = (void *)key};
    assert_int_equal(mdb_del(txn, s_dbi(f, name), &k, NULL), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
}

/* Green, then red for each kind of damage made offline, each named;
 * repaired, green again. */
static void test_check_finds_damage(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], b[CATALOG_ID_MAX + 1];
    s_product(f->store, "DA", "Alpha", "", 100, NULL, 5, a);
    s_product(f->store, "DB", "Bravo", "", 200, NULL, 5, b);
    stock_short_t short_line;
    stock_line_t line;
    s_line(&line, a, 2);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", &line, 1, &short_line), CATALOG_OK);
    s_expect_counts(f->store, 2, 8, 2, 1, 0, 0);

    /* a wrong reserved, written around the store */
    product_t *p = calloc(1, sizeof *p);
    assert_int_equal(catalog_product_get(f->store, a, p), CATALOG_OK);
    int64_t good = p->reserved;
    p->reserved = 7;
    s_put_product_raw(f, p, false);
    catalog_check_t *c = s_check(f->store);
    assert_false(c->ok);
    assert_int_equal(c->n_problems, 1);
    assert_true(s_has_problem(c, "reserved_sum", a));
    assert_int_equal(c->reserved_units, 7);
    free(c);
    /* and negative: two problems of it */
    p->reserved = -1;
    p->stock = -3;
    s_put_product_raw(f, p, false);
    c = s_check(f->store);
    assert_false(c->ok);
    assert_true(s_has_problem(c, "reserved", a));
    assert_true(s_has_problem(c, "stock", a));
    assert_true(s_has_problem(c, "reserved_sum", a));
    free(c);
    p->reserved = good;
    p->stock = 3;
    s_put_product_raw(f, p, false);
    s_expect_counts(f->store, 2, 8, 2, 1, 0, 0);

    /* a by_sku entry pointing at a product that is gone, and one product
     * without its entry */
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_sbuffer_write(&sb, "pgone", 5);
    s_put_raw(f, "by_sku", "GHOST", &sb);
    s_del_raw(f, "by_sku", "DB", 2);
    c = s_check(f->store);
    assert_false(c->ok);
    assert_true(s_has_problem(c, "by_sku", "GHOST"));
    assert_true(s_has_problem(c, "by_sku", b));
    free(c);
    s_del_raw(f, "by_sku", "GHOST", 5);
    msgpack_sbuffer_clear(&sb);
    msgpack_sbuffer_write(&sb, b, strlen(b));
    s_put_raw(f, "by_sku", "DB", &sb);
    s_expect_counts(f->store, 2, 8, 2, 1, 0, 0);

    /* a by_created entry gone: the product names it; a stale extra one:
     * the count does */
    MDB_txn *txn;
    MDB_cursor *cursor;
    MDB_val key, val;
    uint8_t saved[64];
    size_t saved_len;
    assert_int_equal(mdb_txn_begin(kv_mdb(f->kv), NULL, 0, &txn), 0);
    assert_int_equal(mdb_cursor_open(txn, s_dbi(f, "by_created"), &cursor), 0);
    assert_int_equal(mdb_cursor_get(cursor, &key, &val, MDB_FIRST), 0);
    assert_true(key.mv_size <= sizeof saved);
    memcpy(saved, key.mv_data, key.mv_size);
    saved_len = key.mv_size;
    MDB_val saved_val = val;
    uint8_t meta[128];
    assert_true(val.mv_size <= sizeof meta);
    memcpy(meta, val.mv_data, val.mv_size);
    saved_val.mv_data = meta;
    assert_int_equal(mdb_cursor_del(cursor, 0), 0);
    mdb_cursor_close(cursor);
    assert_int_equal(mdb_txn_commit(txn), 0);
    c = s_check(f->store);
    assert_false(c->ok);
    assert_true(s_has_problem(c, "by_created", a)); /* a is the older one */
    free(c);
    saved[saved_len - 1] ^= 1; /* another id: an entry of no product */
    assert_int_equal(mdb_txn_begin(kv_mdb(f->kv), NULL, 0, &txn), 0);
    MDB_val k = {.mv_size = saved_len, .mv_data = saved};
    assert_int_equal(mdb_put(txn, s_dbi(f, "by_created"), &k, &saved_val, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    c = s_check(f->store);
    assert_false(c->ok);
    assert_true(s_has_problem(c, "by_created", a));
    free(c);
    saved[saved_len - 1] ^= 1;
    assert_int_equal(mdb_txn_begin(kv_mdb(f->kv), NULL, 0, &txn), 0);
    assert_int_equal(mdb_put(txn, s_dbi(f, "by_created"), &k, &saved_val, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    c = s_check(f->store); /* the stale one is still there: counted */
    assert_false(c->ok);
    assert_int_equal(c->n_problems, 1);
    assert_true(s_has_problem(c, "by_created", NULL));
    free(c);
    saved[saved_len - 1] ^= 1;
    s_del_raw(f, "by_created", saved, saved_len);
    s_expect_counts(f->store, 2, 8, 2, 1, 0, 0);

    /* a live reservation of a product that is gone */
    assert_int_equal(catalog_product_delete(f->store, a), CATALOG_OK);
    c = s_check(f->store);
    assert_false(c->ok);
    assert_true(s_has_problem(c, "reservation_product", "o1"));
    free(c);
    /* a reservation that does not decode */
    msgpack_sbuffer_clear(&sb);
    msgpack_sbuffer_write(&sb, "\x81\xa5state\xa3odd", 11);
    s_put_raw(f, "reservations", "o-bad", &sb);
    c = s_check(f->store);
    assert_true(s_has_problem(c, "reservation_record", "o-bad"));
    free(c);
    msgpack_sbuffer_destroy(&sb);
    free(p);
}

/* An environment from before the counter: records without reserved and
 * no mark in meta. catalog_store_upgrade counts every product's reserved
 * from the live reservations, once. */
static void test_upgrade_counts_reserved(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], b[CATALOG_ID_MAX + 1], c_id[CATALOG_ID_MAX + 1];
    s_product(f->store, "UA", "A", "", 100, NULL, 10, a);
    s_product(f->store, "UB", "B", "", 100, NULL, 10, b);
    s_product(f->store, "UC", "C", "", 100, NULL, 10, c_id);
    stock_short_t short_line;
    stock_line_t lines[2];
    s_line(&lines[0], a, 2);
    s_line(&lines[1], b, 3);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 2, &short_line), CATALOG_OK);
    s_line(&lines[0], a, 1);
    assert_int_equal(catalog_stock_reserve(f->store, "o2", lines, 1, &short_line), CATALOG_OK);
    assert_int_equal(catalog_stock_reserve(f->store, "o3", lines, 1, &short_line), CATALOG_OK);
    assert_int_equal(catalog_stock_commit(f->store, "o2"), CATALOG_OK);
    s_line(&lines[0], c_id, 4);
    assert_int_equal(catalog_stock_reserve(f->store, "o4", lines, 1, &short_line), CATALOG_OK);
    assert_int_equal(catalog_stock_release(f->store, "o4"), CATALOG_OK);
    s_expect_counts(f->store, 3, 23, 6, 2, 1, 1);

    /* as the earlier version left them: no reserved; c with a stale one */
    const char *ids[] = {a, b, c_id};
    product_t *p = calloc(1, sizeof *p);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(catalog_product_get(f->store, ids[i], p), CATALOG_OK);
        p->reserved = 5;
        s_put_product_raw(f, p, i < 2);
    }
    assert_int_equal(s_reserved(f->store, a), 0);
    catalog_check_t *c = s_check(f->store);
    assert_false(c->ok);
    assert_true(s_has_problem(c, "reserved_sum", a));
    assert_true(s_has_problem(c, "reserved_sum", b));
    assert_true(s_has_problem(c, "reserved_sum", c_id));
    free(c);

    /* the fixture never ran the upgrade: no mark yet */
    assert_int_equal(catalog_store_upgrade(f->kv, 1), CATALOG_OK);
    assert_int_equal(s_reserved(f->store, a), 3);
    assert_int_equal(s_reserved(f->store, b), 3);
    assert_int_equal(s_reserved(f->store, c_id), 0);
    s_expect_counts(f->store, 3, 23, 6, 2, 1, 1);

    /* marked: it does not run again */
    assert_int_equal(catalog_product_get(f->store, a, p), CATALOG_OK);
    p->reserved = 9;
    s_put_product_raw(f, p, false);
    assert_int_equal(catalog_store_upgrade(f->kv, 1), CATALOG_OK);
    assert_int_equal(s_reserved(f->store, a), 9);
    /* without the mark it does */
    s_del_raw(f, "meta", "reserved_counted", strlen("reserved_counted"));
    assert_int_equal(catalog_store_upgrade(f->kv, 1), CATALOG_OK);
    assert_int_equal(s_reserved(f->store, a), 3);
    s_expect_counts(f->store, 3, 23, 6, 2, 1, 1);
    free(p);
}

typedef struct {
    int count;
    char orders[64][CATALOG_ORDER_ID_MAX + 1];
    stock_state_t states[64];
    int64_t qty[64];
    int stop_after; /* > 0: refuse the item after this many */
} s_taken_t;

static bool s_take_one(const char *order_id, stock_state_t state, const stock_line_t *lines,
                       int n_lines, void *arg)
{
    s_taken_t *t = arg;
    if (t->stop_after > 0 && t->count == t->stop_after)
        return false;
    assert_true(t->count < 64);
    snprintf(t->orders[t->count], sizeof t->orders[0], "%s", order_id);
    t->states[t->count] = state;
    t->qty[t->count] = 0;
    for (int i = 0; i < n_lines; i++)
        t->qty[t->count] += lines[i].qty;
    t->count++;
    return true;
}

/* Reservations page by order id, filtered by state, with a cursor that
 * neither repeats nor skips one; a callback may end a page early. */
static void test_reservation_pages(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1];
    s_product(f->store, "PA", "A", "", 100, NULL, 1000, a);
    stock_short_t short_line;
    stock_line_t line;
    for (int i = 0; i < 23; i++) {
        char order[16];
        snprintf(order, sizeof order, "ord-%02d", i);
        s_line(&line, a, i + 1);
        assert_int_equal(catalog_stock_reserve(f->store, order, &line, 1, &short_line), CATALOG_OK);
        if (i % 3 == 1)
            assert_int_equal(catalog_stock_commit(f->store, order), CATALOG_OK);
        if (i % 3 == 2)
            assert_int_equal(catalog_stock_release(f->store, order), CATALOG_OK);
    }
    for (int want = -1; want <= STOCK_RELEASED; want++) {
        char after[CATALOG_ORDER_ID_MAX + 1] = "";
        int seen = 0, pages = 0;
        for (bool more = true; more; pages++) {
            s_taken_t t = {0};
            assert_int_equal(
                catalog_reservation_page(f->store, want, after, 4, s_take_one, &t, &more),
                CATALOG_OK);
            assert_true(t.count <= 4);
            assert_true(!more || t.count == 4);
            for (int i = 0; i < t.count; i++) {
                int n = atoi(t.orders[i] + 4);
                assert_true(strcmp(t.orders[i], after) > 0); /* ascending, none twice */
                memcpy(after, t.orders[i], sizeof after);    /* both CATALOG_ORDER_ID_MAX + 1 */
                int expect = n % 3 == 0   ? STOCK_RESERVED
                             : n % 3 == 1 ? STOCK_COMMITTED
                                          : STOCK_RELEASED;
                assert_int_equal(t.states[i], expect);
                assert_true(want < 0 || (int)t.states[i] == want);
                assert_int_equal(t.qty[i], n + 1);
                seen++;
            }
        }
        /* 23 in all; 8 reserved (0, 3, ..., 21), 8 committed, 7 released */
        assert_int_equal(seen, want < 0 ? 23 : want == STOCK_RELEASED ? 7 : 8);
        assert_true(pages >= 2);
    }
    /* a callback that ends the page: more, and the next page starts there */
    s_taken_t t = {.stop_after = 2};
    bool more = false;
    assert_int_equal(catalog_reservation_page(f->store, -1, NULL, 10, s_take_one, &t, &more),
                     CATALOG_OK);
    assert_int_equal(t.count, 2);
    assert_true(more);
    s_taken_t next = {0};
    assert_int_equal(
        catalog_reservation_page(f->store, -1, t.orders[1], 1, s_take_one, &next, &more),
        CATALOG_OK);
    assert_string_equal(next.orders[0], "ord-02");
    /* bad arguments */
    assert_int_equal(catalog_reservation_page(f->store, -1, NULL, 0, s_take_one, &next, &more),
                     CATALOG_ERROR);
    assert_int_equal(catalog_reservation_page(f->store, -1, NULL, 1001, s_take_one, &next, &more),
                     CATALOG_ERROR);
    assert_int_equal(catalog_reservation_page(f->store, 3, NULL, 1, s_take_one, &next, &more),
                     CATALOG_ERROR);
}

/* ---- events (catalog_store_set_outbox) ---- */

/* The fixture with the outbox in the catalog's own databases (index 1 +
 * CATALOG_STORE_DB_OUTBOX, as the store's), the setting stock_low 5. */
static int s_setup_events(void **state)
{
    if (s_setup(state) != 0)
        return -1;
    fx_t *f = *state;
    char err[256] = "";
    f->outbox = outbox_new(f->kv, 1 + CATALOG_STORE_DB_OUTBOX, 1 + CATALOG_STORE_DB_OUTBOX_META,
                           &(outbox_config_t){.source = "catalog"}, err, sizeof err);
    if (!f->outbox) {
        print_error("outbox_new: %s\n", err);
        return -1;
    }
    catalog_store_set_outbox(f->store, f->outbox, 5);
    return 0;
}

/* The events: n of them, seq 1..n, each ok and of source catalog. */
static te_events_t *s_events(fx_t *f, int n)
{
    const char *never[] = {"secret-description", NULL};
    return te_events_expect(f->outbox, n, "catalog", never);
}

/* A product event: exactly the public fields, equal to the product. */
static void s_expect_product(const te_event_t *e, const char *type, catalog_store_t *store,
                             const char *id)
{
    assert_non_null(e);
    assert_string_equal(e->type, type);
    product_t *p = calloc(1, sizeof *p);
    assert_int_equal(catalog_product_get(store, id, p), CATALOG_OK);
    assert_int_equal(te_event_fields(e), 8);
    assert_true(te_event_str_is(e, "id", p->id));
    assert_true(te_event_str_is(e, "sku", p->sku));
    assert_true(te_event_str_is(e, "name", p->name));
    assert_int_equal(te_event_int(e, "price_cents"), p->price_cents);
    assert_true(te_event_str_is(e, "currency", p->currency));
    assert_true(te_event_str_is(e, "category_id", p->category_id));
    assert_int_equal(te_event_int(e, "stock"), p->stock);
    assert_int_equal(te_event_int(e, "version"), p->version);
    free(p);
}

static void s_expect_low(const te_event_t *e, const char *id, const char *sku, int64_t stock,
                         int64_t threshold)
{
    assert_non_null(e);
    assert_string_equal(e->type, "stock.low");
    assert_int_equal(te_event_fields(e), 4);
    assert_true(te_event_str_is(e, "product_id", id));
    assert_true(te_event_str_is(e, "sku", sku));
    assert_int_equal(te_event_int(e, "stock"), stock);
    assert_int_equal(te_event_int(e, "threshold"), threshold);
}

/* Attributes {key: value} with an int value, or a str one when str. */
static void s_threshold_attr(product_t *p, int64_t value, const char *str)
{
    msgpack_sbuffer sb;
    msgpack_sbuffer_init(&sb);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 2);
    msgpack_pack_str_with_body(&pk, "color", 5);
    msgpack_pack_str_with_body(&pk, "red", 3);
    msgpack_pack_str_with_body(&pk, "low_stock_threshold", 19);
    if (str)
        msgpack_pack_str_with_body(&pk, str, strlen(str));
    else
        msgpack_pack_int64(&pk, value);
    assert_true(sb.size <= sizeof p->attributes);
    memcpy(p->attributes, sb.data, sb.size);
    p->attributes_len = sb.size;
    msgpack_sbuffer_destroy(&sb);
}

static void s_product_p(catalog_store_t *store, product_t *p, char id[CATALOG_ID_MAX + 1])
{
    assert_int_equal(catalog_product_create(store, p), CATALOG_OK);
    snprintf(id, CATALOG_ID_MAX + 1, "%s", p->id);
    free(p);
}

static void test_events_products(void **state)
{
    fx_t *f = *state;
    char cat[CATALOG_ID_MAX + 1], a[CATALOG_ID_MAX + 1];
    s_category(f->store, "Tools", NULL, cat); /* categories have no events */
    product_t *p = s_new_product("SKU-A", "Hammer", "secret-description", 1999, cat, 40);
    s_threshold_attr(p, 3, NULL);
    s_product_p(f->store, p, a);
    /* refused: a taken sku, a version mismatch, a sku taken by an update,
     * an unknown product */
    p = s_new_product("SKU-A", "Other", "", 1, NULL, 1);
    assert_int_equal(catalog_product_create(f->store, p), CATALOG_SKU_TAKEN);
    free(p);
    char b[CATALOG_ID_MAX + 1];
    s_product(f->store, "SKU-B", "Saw", "", 500, NULL, 10, b);
    product_t *values = calloc(1, sizeof *values), *out = calloc(1, sizeof *out);
    snprintf(values->name, sizeof values->name, "Big hammer");
    assert_int_equal(catalog_product_update(f->store, a, CATALOG_PRODUCT_NAME, values, 7, out),
                     CATALOG_VERSION_MISMATCH);
    snprintf(values->sku, sizeof values->sku, "SKU-B");
    assert_int_equal(catalog_product_update(f->store, a, CATALOG_PRODUCT_SKU, values, 0, out),
                     CATALOG_SKU_TAKEN);
    assert_int_equal(
        catalog_product_update(f->store, "p-none", CATALOG_PRODUCT_NAME, values, 0, out),
        CATALOG_NOT_FOUND);
    assert_int_equal(catalog_product_set_stock(f->store, "p-none", 3, out), CATALOG_NOT_FOUND);
    assert_int_equal(catalog_product_delete(f->store, "p-none"), CATALOG_NOT_FOUND);

    te_events_t *es = s_events(f, 2);
    s_expect_product(&es->items[0], "product.created", f->store, a);
    s_expect_product(&es->items[1], "product.created", f->store, b);
    te_events_destroy(&es);

    /* an update, a stock set (stock is a field the product shows) */
    assert_int_equal(catalog_product_update(f->store, a, CATALOG_PRODUCT_NAME, values, 1, out),
                     CATALOG_OK);
    assert_int_equal(out->version, 2);
    es = s_events(f, 3);
    s_expect_product(&es->items[2], "product.updated", f->store, a);
    assert_true(te_event_str_is(&es->items[2], "name", "Big hammer"));
    te_events_destroy(&es);
    assert_int_equal(catalog_product_set_stock(f->store, a, 30, out), CATALOG_OK);
    es = s_events(f, 4);
    s_expect_product(&es->items[3], "product.updated", f->store, a);
    assert_int_equal(te_event_int(&es->items[3], "stock"), 30);
    assert_int_equal(te_event_int(&es->items[3], "version"), 3);
    te_events_destroy(&es);

    /* a delete, once */
    assert_int_equal(catalog_product_delete(f->store, b), CATALOG_OK);
    assert_int_equal(catalog_product_delete(f->store, b), CATALOG_NOT_FOUND);
    es = s_events(f, 5);
    const te_event_t *e = &es->items[4];
    assert_string_equal(e->type, "product.deleted");
    assert_int_equal(te_event_fields(e), 2);
    assert_true(te_event_str_is(e, "id", b));
    assert_true(te_event_str_is(e, "sku", "SKU-B"));
    assert_int_equal(te_events_count(es, "product.created"), 2);
    assert_int_equal(te_events_count(es, "product.updated"), 2);
    assert_int_equal(te_events_count(es, "product.deleted"), 1);
    assert_int_equal(te_events_count(es, "stock.low"), 0);
    te_events_destroy(&es);
    free(values);
    free(out);
}

static void test_events_stock_low(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], b[CATALOG_ID_MAX + 1];
    s_product(f->store, "LOW-A", "A", "", 100, NULL, 8, a); /* 1 */
    s_product(f->store, "LOW-B", "B", "", 100, NULL, 6, b); /* 2 */
    stock_line_t lines[2];
    stock_short_t short_line;
    /* 8 -> 6: above the threshold (5) still */
    s_line(&lines[0], a, 2);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", lines, 1, &short_line), CATALOG_OK);
    /* one write, two products crossing: 6 -> 5 and 6 -> 4 */
    s_line(&lines[0], a, 1);
    s_line(&lines[1], b, 2);
    assert_int_equal(catalog_stock_reserve(f->store, "o2", lines, 2, &short_line),
                     CATALOG_OK); /* 3, 4 */
    /* at or below already: no more, nor for a repeat, a refusal, a commit */
    s_line(&lines[0], a, 1);
    assert_int_equal(catalog_stock_reserve(f->store, "o3", lines, 1, &short_line), CATALOG_OK);
    assert_int_equal(catalog_stock_reserve(f->store, "o3", lines, 1, &short_line), CATALOG_OK);
    s_line(&lines[0], a, 100);
    assert_int_equal(catalog_stock_reserve(f->store, "o4", lines, 1, &short_line),
                     CATALOG_OUT_OF_STOCK);
    assert_int_equal(catalog_stock_commit(f->store, "o3"), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 4);
    te_events_t *es = s_events(f, 4);
    s_expect_low(&es->items[2], a, "LOW-A", 5, 5);
    s_expect_low(&es->items[3], b, "LOW-B", 4, 5);
    te_events_destroy(&es);

    /* back above (releases: no event), then down again: a new crossing */
    assert_int_equal(catalog_stock_release(f->store, "o2"), CATALOG_OK); /* a 5, b 6 */
    assert_int_equal(catalog_stock_release(f->store, "o1"), CATALOG_OK); /* a 7 */
    assert_int_equal(s_stock(f->store, a), 7);
    es = s_events(f, 4);
    te_events_destroy(&es);
    te_events_t *none = te_events_read(f->outbox, 5);
    assert_int_equal(none->n, 0);
    te_events_destroy(&none);
    s_line(&lines[0], a, 7);
    assert_int_equal(catalog_stock_reserve(f->store, "o5", lines, 1, &short_line), CATALOG_OK);
    es = s_events(f, 5);
    s_expect_low(&es->items[4], a, "LOW-A", 0, 5);
    te_events_destroy(&es);

    /* an admin's stock: b 6 -> 2 is an update and a crossing; 2 -> 1 only
     * an update; 9 then 5 by a patch naming stock: again both */
    product_t *out = calloc(1, sizeof *out), *values = calloc(1, sizeof *values);
    assert_int_equal(catalog_product_set_stock(f->store, b, 2, out), CATALOG_OK);
    assert_int_equal(catalog_product_set_stock(f->store, b, 1, out), CATALOG_OK);
    assert_int_equal(catalog_product_set_stock(f->store, b, 9, out), CATALOG_OK);
    values->stock = 5;
    assert_int_equal(catalog_product_update(f->store, b, CATALOG_PRODUCT_STOCK, values, 0, out),
                     CATALOG_OK);
    es = s_events(f, 11);
    assert_string_equal(es->items[5].type, "product.updated");
    assert_int_equal(te_event_int(&es->items[5], "stock"), 2);
    s_expect_low(&es->items[6], b, "LOW-B", 2, 5);
    assert_string_equal(es->items[7].type, "product.updated");
    assert_string_equal(es->items[8].type, "product.updated");
    assert_int_equal(te_event_int(&es->items[8], "stock"), 9);
    s_expect_product(&es->items[9], "product.updated", f->store, b); /* as it is now */
    s_expect_low(&es->items[10], b, "LOW-B", 5, 5);
    assert_int_equal(te_events_count(es, "stock.low"), 5);
    te_events_destroy(&es);
    free(out);
    free(values);
}

static void test_events_stock_low_threshold(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1], bad[CATALOG_ID_MAX + 1], neg[CATALOG_ID_MAX + 1],
        c[CATALOG_ID_MAX + 1];
    /* its own threshold, 10 */
    product_t *p = s_new_product("T-A", "A", "", 100, NULL, 12);
    s_threshold_attr(p, 10, NULL);
    s_product_p(f->store, p, a);
    /* invalid ones: the setting (5) stands */
    p = s_new_product("T-BAD", "B", "", 100, NULL, 7);
    s_threshold_attr(p, 0, "ten");
    s_product_p(f->store, p, bad);
    p = s_new_product("T-NEG", "N", "", 100, NULL, 7);
    s_threshold_attr(p, -3, NULL);
    s_product_p(f->store, p, neg);
    p = s_new_product("T-C", "C", "", 100, NULL, 8);
    s_product_p(f->store, p, c); /* events 1-4 */

    stock_line_t line;
    stock_short_t short_line;
    s_line(&line, a, 2); /* 12 -> 10 */
    assert_int_equal(catalog_stock_reserve(f->store, "o1", &line, 1, &short_line), CATALOG_OK);
    s_line(&line, bad, 1); /* 7 -> 6: above 5 */
    assert_int_equal(catalog_stock_reserve(f->store, "o2", &line, 1, &short_line), CATALOG_OK);
    s_line(&line, neg, 2); /* 7 -> 5 */
    assert_int_equal(catalog_stock_reserve(f->store, "o3", &line, 1, &short_line), CATALOG_OK);
    s_line(&line, bad, 1); /* 6 -> 5 */
    assert_int_equal(catalog_stock_reserve(f->store, "o4", &line, 1, &short_line), CATALOG_OK);
    te_events_t *es = s_events(f, 7);
    s_expect_low(&es->items[4], a, "T-A", 10, 10);
    s_expect_low(&es->items[5], neg, "T-NEG", 5, 5);
    s_expect_low(&es->items[6], bad, "T-BAD", 5, 5);
    te_events_destroy(&es);

    /* a threshold raised above the stock by the attributes is a crossing
     * (c: 8, threshold 5 -> 20); lowered again, then raised, again */
    product_t *values = calloc(1, sizeof *values), *out = calloc(1, sizeof *out);
    s_threshold_attr(values, 20, NULL);
    assert_int_equal(
        catalog_product_update(f->store, c, CATALOG_PRODUCT_ATTRIBUTES, values, 0, out),
        CATALOG_OK);
    s_threshold_attr(values, 7, NULL);
    assert_int_equal(
        catalog_product_update(f->store, c, CATALOG_PRODUCT_ATTRIBUTES, values, 0, out),
        CATALOG_OK);
    es = s_events(f, 10);
    assert_string_equal(es->items[7].type, "product.updated");
    s_expect_low(&es->items[8], c, "T-C", 8, 20);
    assert_string_equal(es->items[9].type, "product.updated"); /* 8 > 7: not low */
    te_events_destroy(&es);

    /* the setting: 0 is "sold out" */
    catalog_store_set_outbox(f->store, f->outbox, 0);
    s_line(&line, c, 8); /* 8 -> 0, but c's own threshold is 7: it crosses at 7 */
    assert_int_equal(catalog_stock_reserve(f->store, "o5", &line, 1, &short_line), CATALOG_OK);
    char d[CATALOG_ID_MAX + 1];
    s_product(f->store, "T-D", "D", "", 100, NULL, 3, d);
    s_line(&line, d, 2); /* 3 -> 1: above 0 */
    assert_int_equal(catalog_stock_reserve(f->store, "o6", &line, 1, &short_line), CATALOG_OK);
    s_line(&line, d, 1); /* 1 -> 0 */
    assert_int_equal(catalog_stock_reserve(f->store, "o7", &line, 1, &short_line), CATALOG_OK);
    es = s_events(f, 13);
    s_expect_low(&es->items[10], c, "T-C", 0, 7);
    assert_string_equal(es->items[11].type, "product.created");
    s_expect_low(&es->items[12], d, "T-D", 0, 0);
    te_events_destroy(&es);
    free(values);
    free(out);
}

static void test_events_failed_append(void **state)
{
    fx_t *f = *state;
    char a[CATALOG_ID_MAX + 1];
    s_product(f->store, "F-A", "A", "", 100, NULL, 8, a);
    assert_int_equal(te_outbox_break(f->kv, 1 + CATALOG_STORE_DB_OUTBOX_META, true), 0);
    /* every write that would append fails, and leaves nothing */
    product_t *p = s_new_product("F-B", "B", "", 100, NULL, 1);
    assert_int_equal(catalog_product_create(f->store, p), CATALOG_ERROR);
    free(p);
    char id[CATALOG_ID_MAX + 1];
    assert_int_equal(catalog_product_by_sku(f->store, "F-B", id), CATALOG_NOT_FOUND);
    product_t *out = calloc(1, sizeof *out);
    assert_int_equal(catalog_product_set_stock(f->store, a, 20, out), CATALOG_ERROR);
    assert_int_equal(s_stock(f->store, a), 8);
    stock_line_t line;
    stock_short_t short_line;
    s_line(&line, a, 3); /* 8 -> 5 would cross */
    assert_int_equal(catalog_stock_reserve(f->store, "o1", &line, 1, &short_line), CATALOG_ERROR);
    assert_int_equal(s_stock(f->store, a), 8);
    assert_int_equal(catalog_product_delete(f->store, a), CATALOG_ERROR);
    /* a reserve that crosses nothing appends nothing: it stands */
    s_line(&line, a, 1);
    assert_int_equal(catalog_stock_reserve(f->store, "o2", &line, 1, &short_line), CATALOG_OK);
    assert_int_equal(s_stock(f->store, a), 7);
    assert_int_equal(te_outbox_break(f->kv, 1 + CATALOG_STORE_DB_OUTBOX_META, false), 0);
    s_line(&line, a, 2);
    assert_int_equal(catalog_stock_reserve(f->store, "o3", &line, 1, &short_line), CATALOG_OK);
    te_events_t *es = s_events(f, 2);
    s_expect_low(&es->items[1], a, "F-A", 5, 5);
    te_events_destroy(&es);
    free(out);
}

static void test_events_without_outbox(void **state)
{
    fx_t *f = *state;
    catalog_store_set_outbox(f->store, NULL, 5);
    char a[CATALOG_ID_MAX + 1];
    s_product(f->store, "N-A", "A", "", 100, NULL, 8, a);
    stock_line_t line;
    s_line(&line, a, 8);
    assert_int_equal(catalog_stock_reserve(f->store, "o1", &line, 1, NULL), CATALOG_OK);
    assert_int_equal(catalog_product_delete(f->store, a), CATALOG_OK);
    te_events_t *es = s_events(f, 0);
    te_events_destroy(&es);
}

/* Cursor texts that are not cursors, whatever they claim (what
 * tests/fuzz/fuzz_cursor.c found): array headers that claim billions of
 * entries, which msgpack-c allocated for before the check (256 GiB for
 * the second one); an empty name's NULL pointer reached memchr and
 * memcpy. */
static void test_cursor_text(void **state)
{
    (void)state;
    catalog_cursor_t c;
    assert_false(catalog_cursor_decode("3f____8", &c)); /* dd ff ff ff ff */
    assert_false(catalog_cursor_decode("lgLOAQIKBN_P________-waoQmx0ZSBtdWencF8wMDA0Mg", &c));
    assert_false(catalog_cursor_decode("", &c));
    /* [0, 123, 5, 6, "", "p_1"]: an empty name is a cursor of the id sorts */
    assert_true(catalog_cursor_decode("lgB7BQago3BfMQ", &c));
    assert_int_equal(c.name_len, 0);
    assert_string_equal(c.id, "p_1");
    char again[CATALOG_CURSOR_MAX + 1];
    assert_true(catalog_cursor_encode(&c, again));
    assert_string_equal(again, "lgB7BQago3BfMQ");
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)
#define TEST_EVENTS(fn) cmocka_unit_test_setup_teardown(fn, s_setup_events, s_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_words),
        cmocka_unit_test(test_cursor_text),
        TEST(test_categories),
        TEST(test_products),
        TEST(test_attributes_round_trip),
        TEST(test_search_words),
        TEST(test_sort_orders),
        TEST(test_filters),
        TEST(test_search_words_in_category),
        TEST(test_search_against_reference),
        cmocka_unit_test(test_open_old_env),
        TEST(test_upgrade_fills_new_indexes),
        TEST(test_pagination),
        TEST(test_pagination_with_changes),
        TEST(test_cursor_refused),
        TEST(test_reserve),
        TEST(test_reserve_concurrent),
        TEST(test_patch_keeps_reservations),
        TEST(test_patch_concurrent_with_reservations),
        TEST(test_category_patch_concurrent),
        TEST(test_category_pages),
        TEST(test_stored_records_load),
        TEST(test_reserved_counter),
        TEST(test_reserve_short_details),
        TEST(test_reserve_submitted),
        TEST(test_check_finds_damage),
        TEST(test_upgrade_counts_reserved),
        TEST(test_reservation_pages),
        TEST_EVENTS(test_events_products),
        TEST_EVENTS(test_events_stock_low),
        TEST_EVENTS(test_events_stock_low_threshold),
        TEST_EVENTS(test_events_failed_append),
        TEST_EVENTS(test_events_without_outbox),
    };
    int failed = cmocka_run_group_tests_name("catalog_store", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

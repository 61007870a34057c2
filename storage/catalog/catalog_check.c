/*  catalog_check.c - the catalog's own books verified (catalog_store.h,
 *  catalog_store_check), for `ops.check` and `retailctl check`.
 *
 *  Why: every rule below is kept by the writes (one transaction for a
 *  record and everything derived from it), so a broken one means damage
 *  or a bug, and the sooner it is seen the less it costs: an oversold
 *  product, a reserved count that no release can bring back to zero, an
 *  index that answers with a product that is gone. The check reads what
 *  the store keeps; it repairs nothing.
 *
 *  All of it runs in one read transaction of the handle (store_reader_t),
 *  so it sees one moment: writes committed meanwhile are not half seen.
 *  Three walks:
 *    1. reservations: decoded; the qty of each live (reserved) one summed
 *       per product (a hash: product id -> sum and the first order seen);
 *       counts of live ones, committed units, released ones;
 *    2. products: decoded; stock and reserved not negative; reserved
 *       equal to the sum of step 1 (entries matched are removed, so what
 *       remains afterwards is a live reservation of a missing product);
 *       the product's own entry in by_sku, by_created, by_price,
 *       by_category and by_name present (catalog_index_key gives it);
 *    3. by_sku: each entry names a product that has that sku.
 *  The four derived single-key indexes hold one entry per product under
 *  a key that contains its id, so "every product finds its own entry"
 *  plus "as many entries as products" means nothing else is there: the
 *  entry counts (mdb_stat) are compared rather than every entry read.
 *  The word indexes (words, cat_words) are not walked: they are as large
 *  as the text, and search passes over postings of missing products.
 *
 *  Problems: the first CATALOG_CHECK_PROBLEMS_MAX are kept, all counted.
 */
#include "storage/catalog/catalog_store_impl.h"

#include <czmq.h>
#include <inttypes.h>
#include <stdarg.h>
#include <string.h>

typedef struct {
    int64_t sum;
    char order_id[CATALOG_ORDER_ID_MAX + 1]; /* one live reservation of it */
} s_sum_t;

static void s_problem(catalog_check_t *out, const char *check, const char *id, size_t id_len,
                      const char *format, ...) __attribute__((format(printf, 5, 6)));

static void s_problem(catalog_check_t *out, const char *check, const char *id, size_t id_len,
                      const char *format, ...)
{
    out->ok = false;
    out->problems_total++;
    if (out->n_problems >= CATALOG_CHECK_PROBLEMS_MAX)
        return;
    catalog_problem_t *p = &out->problems[out->n_problems++];
    snprintf(p->check, sizeof p->check, "%s", check);
    if (id_len > CATALOG_ORDER_ID_MAX)
        id_len = CATALOG_ORDER_ID_MAX;
    snprintf(p->id, sizeof p->id, "%.*s", (int)id_len, id ? id : "");
    va_list args;
    va_start(args, format);
    vsnprintf(p->message, sizeof p->message, format, args);
    va_end(args);
}

static void s_free(void **item)
{
    free(*item);
    *item = NULL;
}

/* Walk 1: the reservations. */
static catalog_status_t s_reservations(catalog_store_t *self, MDB_txn *txn, zhashx_t *sums,
                                       catalog_check_t *out)
{
    catalog_reservation_t *r = malloc(sizeof *r);
    MDB_cursor *cursor = NULL;
    if (!r)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_OK;
    int rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_RESERVATIONS], &cursor);
    MDB_val key, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    for (; rc == 0 && status == CATALOG_OK; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        const char *order = key.mv_data;
        if (key.mv_size == 0 || key.mv_size > CATALOG_ORDER_ID_MAX ||
            memchr(order, '\0', key.mv_size)) {
            s_problem(out, "reservation_record", order, key.mv_size,
                      "a reservation key is not an order id (%zu bytes)", key.mv_size);
            continue;
        }
        if (!catalog_reservation_decode(&val, r)) {
            s_problem(out, "reservation_record", order, key.mv_size,
                      "the reservation record does not decode");
            continue;
        }
        if (r->state == STOCK_COMMITTED) {
            for (int i = 0; i < r->n_lines; i++)
                out->committed_units += r->lines[i].qty;
            continue;
        }
        if (r->state == STOCK_RELEASED) {
            out->released++;
            continue;
        }
        out->live_reservations++;
        for (int i = 0; i < r->n_lines; i++) {
            s_sum_t *sum = zhashx_lookup(sums, r->lines[i].product_id);
            if (!sum) {
                sum = calloc(1, sizeof *sum);
                if (!sum || zhashx_insert(sums, r->lines[i].product_id, sum) != 0) {
                    free(sum);
                    status = CATALOG_ERROR;
                    break;
                }
                memcpy(sum->order_id, order, key.mv_size);
            }
            sum->sum += r->lines[i].qty;
        }
    }
    if (status == CATALOG_OK && rc != MDB_NOTFOUND)
        status = catalog_fail("check: reservations", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    free(r);
    return status;
}

/* Whether db holds key with a value equal to want (want NULL: any). -1
 * when LMDB fails. */
static int s_has(MDB_txn *txn, MDB_dbi db, const void *key, size_t key_len, const char *want)
{
    MDB_val k = {.mv_size = key_len, .mv_data = (void *)key}, v;
    int rc = mdb_get(txn, db, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0) {
        catalog_fail("check: mdb_get", rc);
        return -1;
    }
    return !want || (v.mv_size == strlen(want) && memcmp(v.mv_data, want, v.mv_size) == 0);
}

static const int s_derived[] = {CATALOG_DB_BY_CREATED, CATALOG_DB_BY_PRICE, CATALOG_DB_BY_CATEGORY,
                                CATALOG_DB_BY_NAME};
#define S_DERIVED (int)(sizeof s_derived / sizeof s_derived[0])

/* Walk 2: the products, each with its own index entries. */
static catalog_status_t s_products(catalog_store_t *self, MDB_txn *txn, zhashx_t *sums,
                                   catalog_check_t *out)
{
    product_t *p = malloc(sizeof *p);
    MDB_cursor *cursor = NULL;
    if (!p)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_OK;
    int rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_PRODUCTS], &cursor);
    MDB_val key, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    for (; rc == 0 && status == CATALOG_OK; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        const char *id = key.mv_data;
        if (key.mv_size == 0 || key.mv_size > CATALOG_ID_MAX || memchr(id, '\0', key.mv_size)) {
            s_problem(out, "product_record", id, key.mv_size,
                      "a product key is not a product id (%zu bytes)", key.mv_size);
            continue;
        }
        catalog_status_t st = catalog_product_read(self->dbi, txn, id, key.mv_size, p);
        if (st == CATALOG_ERROR) {
            s_problem(out, "product_record", id, key.mv_size, "the product record does not decode");
            continue;
        }
        if (st != CATALOG_OK) {
            status = st;
            break;
        }
        out->products++;
        out->stock_units += p->stock;
        out->reserved_units += p->reserved;
        if (p->stock < 0)
            s_problem(out, "stock", p->id, strlen(p->id), "stock is %" PRId64, p->stock);
        if (p->reserved < 0)
            s_problem(out, "reserved", p->id, strlen(p->id), "reserved is %" PRId64, p->reserved);
        s_sum_t *sum = zhashx_lookup(sums, p->id);
        int64_t live = sum ? sum->sum : 0;
        if (p->reserved != live)
            s_problem(out, "reserved_sum", p->id, strlen(p->id),
                      "reserved is %" PRId64 " but its live reservations hold %" PRId64,
                      p->reserved, live);
        if (sum)
            zhashx_delete(sums, p->id);
        int has = s_has(txn, self->dbi[CATALOG_DB_BY_SKU], p->sku, strlen(p->sku), p->id);
        if (has == 0)
            s_problem(out, "by_sku", p->id, strlen(p->id),
                      "by_sku does not map its sku \"%.64s\" to it", p->sku);
        for (int i = 0; i < S_DERIVED && has >= 0; i++) {
            uint8_t index_key[CATALOG_INDEX_KEY_MAX];
            size_t len = catalog_index_key(p, s_derived[i], index_key);
            has = s_has(txn, self->dbi[s_derived[i]], index_key, len, NULL);
            if (has == 0)
                s_problem(out, catalog_store_names[s_derived[i]], p->id, strlen(p->id),
                          "%s has no entry for it", catalog_store_names[s_derived[i]]);
        }
        if (has < 0)
            status = CATALOG_ERROR;
    }
    if (status == CATALOG_OK && rc != MDB_NOTFOUND)
        status = catalog_fail("check: products", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    free(p);
    return status;
}

/* Walk 3: by_sku, from the index's side. */
static catalog_status_t s_by_sku(catalog_store_t *self, MDB_txn *txn, catalog_check_t *out)
{
    product_t *p = malloc(sizeof *p);
    MDB_cursor *cursor = NULL;
    if (!p)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_OK;
    int rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_BY_SKU], &cursor);
    MDB_val key, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        const char *sku = key.mv_data;
        catalog_status_t st = catalog_product_read(self->dbi, txn, val.mv_data, val.mv_size, p);
        if (st == CATALOG_NOT_FOUND)
            s_problem(out, "by_sku", sku, key.mv_size,
                      "the sku names product \"%.*s\", which is gone",
                      (int)(val.mv_size > CATALOG_ID_MAX ? CATALOG_ID_MAX : val.mv_size),
                      (const char *)val.mv_data);
        else if (st == CATALOG_OK &&
                 (strlen(p->sku) != key.mv_size || memcmp(p->sku, sku, key.mv_size) != 0))
            s_problem(out, "by_sku", sku, key.mv_size,
                      "the sku names product %s, whose sku is \"%.64s\"", p->id, p->sku);
        /* a record that does not decode was reported by walk 2 */
    }
    if (rc != MDB_NOTFOUND)
        status = catalog_fail("check: by_sku", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    free(p);
    return status;
}

/* The derived indexes hold as many entries as there are products. */
static catalog_status_t s_index_counts(catalog_store_t *self, MDB_txn *txn, catalog_check_t *out)
{
    MDB_stat products;
    int rc = mdb_stat(txn, self->dbi[CATALOG_DB_PRODUCTS], &products);
    for (int i = 0; rc == 0 && i < S_DERIVED + 1; i++) {
        int db = i < S_DERIVED ? s_derived[i] : CATALOG_DB_BY_SKU;
        MDB_stat st;
        rc = mdb_stat(txn, self->dbi[db], &st);
        if (rc == 0 && st.ms_entries != products.ms_entries)
            s_problem(out, catalog_store_names[db], NULL, 0, "%s has %zu entries for %zu products",
                      catalog_store_names[db], st.ms_entries, products.ms_entries);
    }
    return rc == 0 ? CATALOG_OK : catalog_fail("check: mdb_stat", rc);
}

catalog_status_t catalog_store_check(catalog_store_t *self, catalog_check_t *out)
{
    if (!self || !out)
        return CATALOG_ERROR;
    memset(out, 0, sizeof *out);
    out->ok = true;
    zhashx_t *sums = zhashx_new();
    if (!sums)
        return CATALOG_ERROR;
    zhashx_set_destructor(sums, s_free);
    catalog_status_t status = CATALOG_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        goto cleanup;
    status = s_reservations(self, txn, sums, out);
    if (status == CATALOG_OK)
        status = s_products(self, txn, sums, out);
    if (status == CATALOG_OK)
        status = s_by_sku(self, txn, out);
    if (status == CATALOG_OK)
        status = s_index_counts(self, txn, out);
    if (status != CATALOG_OK)
        goto cleanup;
    /* What walk 2 did not match: live reservations of missing products. */
    for (s_sum_t *sum = zhashx_first(sums); sum; sum = zhashx_next(sums)) {
        const char *product = zhashx_cursor(sums);
        s_problem(out, "reservation_product", sum->order_id, strlen(sum->order_id),
                  "live reservations hold %" PRId64 " of product %s, which is gone", sum->sum,
                  product);
    }
cleanup:
    if (txn)
        store_reader_end(&self->reader);
    zhashx_destroy(&sums);
    return status;
}

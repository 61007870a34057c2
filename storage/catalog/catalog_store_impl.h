/*  catalog_store_impl.h - what the files of the catalog store share
 *  (catalog_store.c: the handle, records, products and their indexes;
 *  catalog_categories.c: the category tree; catalog_inventory.c:
 *  reservations; catalog_check.c: the checks of the books; catalog_search.c: search;
 * catalog_cursor.c: the text of its cursors; catalog_words.c: the word normaliser). Not for callers
 *  outside storage/catalog/.
 *
 *  Index values ("meta"). Every entry of by_category, by_created,
 *  by_price, by_name, words and cat_words carries the same small binary value, so that search
 *  can filter and sort a candidate without reading its record:
 *      flags(1) price(8) created(8) cat_len(1) category cat_name(1) name_key
 *  flags: CATALOG_IN_NAME / CATALOG_IN_DESCRIPTION for a word posting, 0
 *  elsewhere; price and created biased big-endian (catalog_be64_put of
 *  catalog_bias), as in the keys; name_key is the lower-cased name cut to
 *  CATALOG_NAME_KEY_MAX bytes (the key of the `name` sort). Stock is not
 *  there: it changes with every order and would make each reservation
 *  rewrite every posting of the product; an in_stock filter reads the
 *  record of the candidates that would enter the page.
 *
 *  Keys (bytes, compared bytewise):
 *      by_category  category_id \0 created(8) id
 *      by_created   created(8) id
 *      by_price     price(8) id
 *      words        word \0 id
 *      cat_words    category_id \0 word \0 id   (category_id not "")
 *      by_name      lower-cased name \0 id     (names hold no \0)
 *  with created and price biased (sign bit flipped) so that negative
 *  values sort before positive ones.
 */
#ifndef RETAIL_CATALOG_STORE_IMPL_H
#define RETAIL_CATALOG_STORE_IMPL_H

#include "storage/catalog/catalog_store.h"
#include "storage/reader.h"

#include <msgpack.h>
#include <stddef.h>

/* The index of each database in catalog_store_names. */
enum {
    CATALOG_DB_PRODUCTS,
    CATALOG_DB_BY_SKU,
    CATALOG_DB_BY_CATEGORY,
    CATALOG_DB_BY_CREATED,
    CATALOG_DB_BY_PRICE,
    CATALOG_DB_WORDS,
    CATALOG_DB_CATEGORIES,
    CATALOG_DB_BY_SLUG,
    CATALOG_DB_RESERVATIONS,
    CATALOG_DB_CAT_WORDS,
    CATALOG_DB_BY_NAME,
    CATALOG_DB_META,
    CATALOG_DB_OUTBOX,
    CATALOG_DB_OUTBOX_META,
};

struct catalog_store_t {
    kv_t *kv; /* shared by every handle: group commit (kv_write, kv_submit) */
    MDB_dbi dbi[CATALOG_STORE_DBS];
    store_reader_t reader; /* reset between calls, renewed at the start of one */
    /* Search's candidate array, kept between calls (one thread uses a
     * handle) so a search allocates nothing once it has grown;
     * catalog_search.c owns its layout. */
    void *scratch;
    size_t scratch_cap; /* bytes */
    outbox_t *outbox;   /* borrowed; NULL: no events */
    int stock_low;      /* stock.low's threshold, unless a product has its own */
};

#define CATALOG_WORD_MAX 64     /* bytes; longer words are cut */
#define CATALOG_NAME_KEY_MAX 24 /* bytes of the lower-cased name kept for sorting */
#define CATALOG_IN_NAME 1
#define CATALOG_IN_DESCRIPTION 2
#define CATALOG_META_MAX (1 + 8 + 8 + 1 + CATALOG_ID_MAX + 1 + CATALOG_NAME_KEY_MAX)

/* A decoded meta value; the strings point into the value (not terminated). */
typedef struct {
    uint8_t flags;
    int64_t price;
    int64_t created;
    const char *category;
    size_t category_len;
    const char *name_key;
    size_t name_key_len;
} catalog_meta_t;

/* Logs what failed with LMDB's message; returns CATALOG_ERROR. */
catalog_status_t catalog_fail(const char *what, int rc);

/* The sign bit flipped: signed order becomes unsigned (bytewise) order. */
uint64_t catalog_bias(int64_t v);
void catalog_be64_put(uint8_t *out, uint64_t v);
uint64_t catalog_be64_get(const uint8_t *in);

/* Encodes p's meta with flags into out[CATALOG_META_MAX]; its length. */
size_t catalog_meta_encode(const product_t *p, uint8_t flags, uint8_t *out);
/* false for a value that is not a meta (damage). */
bool catalog_meta_decode(const MDB_val *val, catalog_meta_t *out);

/* Lower-cases text as catalog_words does (ASCII and Latin-1 letters; all
 * other bytes kept) into out[cap], cut to at most cap bytes on a UTF-8
 * character boundary; the length (out is not terminated). */
size_t catalog_lower(const char *text, char *out, size_t cap);

/* p's key in by_category, by_created, by_price or by_name (db, a
 * CATALOG_DB_* index) into key[CATALOG_INDEX_KEY_MAX]; its length (0 for
 * another db). */
#define CATALOG_INDEX_KEY_MAX (CATALOG_NAME_MAX + 1 + CATALOG_ID_MAX)
size_t catalog_index_key(const product_t *p, int db, uint8_t *key);

/* Reads and decodes the product id (id_len bytes) within txn. Product
 * records are read and written through the database handles alone (a
 * store's dbi, or a prepared stock write's copy of them), so that a write
 * function on the committer's thread needs no handle. */
catalog_status_t catalog_product_read(const MDB_dbi *dbi, MDB_txn *txn, const char *id,
                                      size_t id_len, product_t *out);
/* Reads and decodes the category id within txn. */
catalog_status_t catalog_category_read(catalog_store_t *self, MDB_txn *txn, const char *id,
                                       category_t *out);
/* Encodes p (all but its id) and puts it under p->id within txn. */
catalog_status_t catalog_product_write(const MDB_dbi *dbi, MDB_txn *txn, const product_t *p);
/* The stock of a stored product record, without decoding all of it; -1
 * when the record is malformed. */
int catalog_record_stock(const MDB_val *record, int64_t *stock);
/* The reserved counter of a stored product record (0 when the record has
 * none); -1 when malformed. */
int catalog_record_reserved(const MDB_val *record, int64_t *reserved);
/* Sets every product's reserved to the sum of its live reservations'
 * lines within txn (a write transaction), rewriting only the records
 * that differ (version unchanged: nothing a client sees changed); *fixed
 * gets how many. For catalog_store_upgrade. */
catalog_status_t catalog_reserved_recount(catalog_store_t *self, MDB_txn *txn, long *fixed);
/* The name of a stored product record as it is stored (not lower-cased):
 * *name points into record, *len bytes; -1 when malformed. */
int catalog_record_name(const MDB_val *record, const char **name, size_t *len);
/* Its name and description the same way (the text search indexes). */
int catalog_record_texts(const MDB_val *record, const char **name, size_t *name_len,
                         const char **description, size_t *description_len);

/* Runs fn(txn, arg) through kv_write (group commit with the other
 * handles' writes) and returns its status once durable; fn returns a
 * catalog_status_t, CATALOG_OK to keep its changes. fn runs on the
 * environment's committer thread: it must use the store only for dbi and
 * helpers taking the txn, never the read transaction or scratch. */
catalog_status_t catalog_write(catalog_store_t *self, kv_write_fn *fn, void *arg);
/* The same for a delete: a freeing write (kv_write_freeing), which runs
 * even with the map at its limit, so that deletes can make room. */
catalog_status_t catalog_write_freeing(catalog_store_t *self, kv_write_fn *fn, void *arg);
/* True when s is terminated within s[cap + 1]. */
bool catalog_fits(const char *s, size_t cap);
/* s as an LMDB key or value, without its terminator. */
MDB_val catalog_val(const char *s);

/* ---- catalog_events.c: the events of the writes (catalog_store.h) ----
 * Each begins an event in outbox and stores it in txn; CATALOG_OK with
 * nothing done when outbox is NULL or off, CATALOG_ERROR (logged) when
 * it cannot be stored (the write must fail with it). */

/* product.created or product.updated (type): p's public fields. */
catalog_status_t catalog_event_product(outbox_t *outbox, MDB_txn *txn, const char *type,
                                       const product_t *p);
/* product.deleted: {id, sku}. */
catalog_status_t catalog_event_deleted(outbox_t *outbox, MDB_txn *txn, const product_t *p);
/* The threshold of stock.low for p: its attributes' integer
 * "low_stock_threshold" when it is one in 0..1000000, else stock_low. */
int64_t catalog_stock_threshold(const product_t *p, int stock_low);
/* stock.low {product_id, sku, stock, threshold} when a write took p from
 * stock_before, above threshold_before (its threshold as it was read), to
 * p->stock at or below threshold (its threshold as written); else none.
 * So once per crossing: a product at or below its threshold does not
 * cross again until a write puts it above. */
catalog_status_t catalog_event_stock(outbox_t *outbox, MDB_txn *txn, int64_t stock_before,
                                     int64_t threshold_before, const product_t *p,
                                     int64_t threshold);

/* A search cursor's content (catalog_cursor.c): the sort, the query's
 * hash and the last item's sort key (a, b, name) and id. */
typedef struct {
    uint8_t sort;
    uint32_t hash;
    int64_t a, b;
    char name[CATALOG_NAME_MAX + 1]; /* terminated; "" unless the name sort */
    size_t name_len;
    char id[CATALOG_ID_MAX + 1]; /* terminated */
    size_t id_len;
} catalog_cursor_t;

/* c as cursor text into out; false (out "") when it does not fit. */
bool catalog_cursor_encode(const catalog_cursor_t *c, char out[CATALOG_CURSOR_MAX + 1]);
/* Reads cursor text into out; false when text is not a cursor. */
bool catalog_cursor_decode(const char *text, catalog_cursor_t *out);

/* A decoded reservation record (catalog_inventory.c has its layout). */
typedef struct {
    int state; /* stock_state_t (an int: the record codec's enum member) */
    int n_lines;
    stock_line_t lines[CATALOG_LINES_MAX];
} catalog_reservation_t;

/* Decodes a stored reservation record into r; false when malformed. */
bool catalog_reservation_decode(const MDB_val *val, catalog_reservation_t *r);

/* The meta key of the reserved counter's one-time recount. */
#define CATALOG_META_RESERVED "reserved_counted"

/* msgpack into a caller's fixed buffer (a search cursor has known bounds). */
typedef struct {
    char *data;
    size_t len, cap;
} catalog_buf_t;
int catalog_buf_write(void *data, const char *buf, size_t len); /* msgpack_packer_write */

#endif

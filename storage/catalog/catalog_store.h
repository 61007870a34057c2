/*  catalog_store.h - products, categories, inventory and search on LMDB.
 *
 *  One LMDB environment ($RETAIL_DATA_DIR/catalog) shared by the catalog
 *  workers; each worker has its own catalog_store_t (one thread at a time),
 *  which keeps a read transaction that it resets and renews per call, so
 *  reads never wait on writes and cost no transaction setup.
 *
 *  Databases (all maintained in the same write transaction as the record,
 *  so an index never disagrees with the data):
 *    products       id -> product record (msgpack map, see below)
 *    by_sku         sku -> id                         (unique)
 *    by_category    category_id \0 created(8, BE) id -> ""
 *    by_created     created(8, BE) id -> ""
 *    by_price       price(8, BE, offset so negatives sort) id -> ""
 *    words          word \0 id -> posting (flags: in name / in description)
 *    cat_words      category_id \0 word \0 id -> the same posting as in
 *                   words (products with a category only), so a search
 *                   with words and a category walks only the postings of
 *                   the category's subtree
 *    categories     id -> category record (msgpack map)
 *    by_slug        slug -> id                        (unique)
 *    reservations   order_id -> reservation record (state + lines)
 *    by_name        lower-cased name \0 id -> ""-like meta (the whole name:
 *                   names are at most CATALOG_NAME_MAX bytes, well under
 *                   LMDB's 511-byte keys), for the `name` sort
 *    meta           name -> value: what catalog_store_upgrade has done
 *                   ("reserved_counted" once every product's reserved
 *                   counter was recomputed from the reservations)
 *    outbox         the service's events (storage/outbox.h), appended by
 *    outbox_meta    the writes below once given an outbox
 *                   (catalog_store_set_outbox)
 *  An environment made before cat_words, by_name or meta existed opens
 *  (the databases are created empty) and catalog_store_upgrade fills them.
 *
 *  Stock and reserved: a product's `stock` is the units free to reserve;
 *  `reserved` the units that live reservations (state reserved) hold,
 *  taken out of stock by them. Both change in the write transaction of
 *  the reservation: reserve moves qty from stock to reserved, release of
 *  a reserved reservation moves it back, commit drops it from reserved
 *  (sold), and release of a committed one puts it back into stock only.
 *  So at any moment reserved == the sum of the live reservations' lines,
 *  which catalog_store_check verifies.
 *
 *  Words: a product's name and description are split on anything that is
 *  not a letter or digit (UTF-8 aware: non-ASCII letters are kept), and
 *  lower-cased (ASCII and Latin-1 supplement letters at least). A query
 *  word matches a product word equal to it or starting with it.
 *
 *  Ids: "p"/"c" + the scheme of storage/ids.h (as user ids): unique and
 *  in creation order; a product's created_at is the milliseconds of its
 *  id, so ordering by id is ordering by creation
 *  (search relies on it). Timestamps are unix milliseconds.
 *  Money is an integer of minor units with a 3-letter currency.
 *
 *  Every write is atomic and durable when its call returns; concurrent
 *  writes from several handles share one LMDB transaction and one disk
 *  flush (group commit, kv_write in kv.h), each in a nested transaction
 *  of its own. A write that breaks a rule changes nothing and says why
 *  (the status values below). The stock writes (reserve, commit,
 *  release: the orders' hot path) can also be prepared in a
 *  stock_write_t and run without waiting (kv_submit, or call_write in
 *  protocol/call.h), so a worker keeps serving while they wait for the
 *  disk; the waiting forms are that prepare, a kv_write and the end.
 *
 *  Ownership: strings in results point into out-structures owned by the
 *  caller; `attributes` is msgpack bytes copied into a caller buffer.
 */
#ifndef RETAIL_CATALOG_STORE_H
#define RETAIL_CATALOG_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/kv.h"
#include "storage/outbox.h"
#include "storage/status.h"

#define CATALOG_ID_MAX 32
#define CATALOG_SKU_MAX 64
#define CATALOG_NAME_MAX 200
#define CATALOG_DESCRIPTION_MAX 4000
#define CATALOG_SLUG_MAX 100
#define CATALOG_ATTRIBUTES_MAX 16384 /* msgpack bytes */
#define CATALOG_QUERY_WORDS_MAX 8
#define CATALOG_PAGE_MAX 100
#define CATALOG_CURSOR_MAX 360 /* a name sort's cursor holds a whole name */
#define CATALOG_ORDER_ID_MAX 64
#define CATALOG_LINES_MAX 100

typedef struct {
    char id[CATALOG_ID_MAX + 1];
    char sku[CATALOG_SKU_MAX + 1];
    char name[CATALOG_NAME_MAX + 1];
    char description[CATALOG_DESCRIPTION_MAX + 1];
    int64_t price_cents;
    char currency[4];
    char category_id[CATALOG_ID_MAX + 1];
    uint8_t attributes[CATALOG_ATTRIBUTES_MAX]; /* a msgpack map */
    size_t attributes_len;                      /* 0: empty map */
    int64_t stock;
    int64_t reserved; /* units live reservations hold; not in stock; kept by the
                         store (create sets 0, patches never touch it) */
    int64_t version;  /* 1 at creation, +1 on every write */
    int64_t created_at_ms;
    int64_t updated_at_ms;
} product_t;

typedef struct {
    char id[CATALOG_ID_MAX + 1];
    char name[CATALOG_NAME_MAX + 1];
    char slug[CATALOG_SLUG_MAX + 1];
    char parent_id[CATALOG_ID_MAX + 1]; /* "" for a root */
} category_t;

/* Extra statuses (store_status_t values are reused where they fit). */
typedef enum {
    CATALOG_OK = STORE_OK,
    CATALOG_NOT_FOUND = STORE_NOT_FOUND,
    CATALOG_ERROR = STORE_ERROR,
    /* a write found no room (storage/kv.h): nothing changed */
    CATALOG_NO_SPACE = STORE_NO_SPACE,
    CATALOG_SKU_TAKEN = 100,  /* create/update: another product has the sku */
    CATALOG_SLUG_TAKEN,       /* category create/update */
    CATALOG_VERSION_MISMATCH, /* update with an expected version that differs */
    CATALOG_IN_USE,           /* category delete: products or children use it */
    CATALOG_NO_CATEGORY,      /* product or category names a missing category */
    CATALOG_CYCLE,            /* category update would make a cycle */
    CATALOG_OUT_OF_STOCK,     /* reserve: `product` names the first short line */
    CATALOG_CONFLICT,         /* reserve/commit/release in a state that forbids it */
} catalog_status_t;

#define CATALOG_STORE_DBS 14
extern const char *const catalog_store_names[CATALOG_STORE_DBS];
/* Where the outbox's databases (OUTBOX_DB_EVENTS, OUTBOX_DB_META) are
 * among catalog_store_names: add first_dbi_index for the kv_t's index. */
#define CATALOG_STORE_DB_OUTBOX 12
#define CATALOG_STORE_DB_OUTBOX_META 13

typedef struct catalog_store_t catalog_store_t;

/* Fills the indexes that an environment made by an earlier version lacks
 * (by_name, cat_words) by indexing every product again, in write
 * transactions of CATALOG_UPGRADE_BATCH products; does nothing when they
 * are filled already. Then, when meta has no "reserved_counted" (an
 * environment from before the reserved counter; records without it read
 * reserved 0), sets every product's reserved to the sum of its live
 * reservations' lines and writes the mark, in one write transaction, so
 * it runs once. Call once after kv_open, before any handle writes. */
#define CATALOG_UPGRADE_BATCH 10000
catalog_status_t catalog_store_upgrade(kv_t *env, int first_dbi_index);

/* env must have been opened with catalog_store_names at first_dbi_index. */
catalog_store_t *catalog_store_open(kv_t *env, int first_dbi_index);
void catalog_store_close(catalog_store_t **self_p);

/* The outbox this handle's writes append their events to (the service's,
 * in this environment), borrowed: it must outlive the handle and every
 * write still out (a prepared stock write copies it). NULL (what a handle
 * starts with): no events, for tools and the tests of other things.
 * stock_low is the threshold of stock.low (0..1000000) where a product's
 * attributes have no valid "low_stock_threshold" (an integer in that
 * range) of their own. Set it before the handle's first write.
 *
 * Events, each appended inside the write that makes its change
 * (protocol/SPEC.md, "Events: types and data", has the fields):
 *   product.created  product create
 *   product.updated  product update and set_stock (stock is a field the
 *                    product shows), with the product as written
 *   product.deleted  product delete
 *   stock.low        a write that takes a product's stock from above its
 *                    threshold to at or below it: a reserve (one per
 *                    product), an update or a set_stock; once per
 *                    crossing, since the stock must rise above the
 *                    threshold again before a write can cross it again
 * A reserve, commit or release is no product.updated: the saga's stock
 * moves are the orders' events (and a commit leaves stock alone). A
 * refused write (a taken sku, a version mismatch, out of stock, a
 * repeated stock op) appends nothing; categories have no events. When an
 * event cannot be appended the write fails (CATALOG_ERROR). */
void catalog_store_set_outbox(catalog_store_t *self, outbox_t *outbox, int stock_low);

/* ---- categories ---- */
catalog_status_t catalog_category_create(catalog_store_t *self, category_t *c); /* sets c->id */
catalog_status_t catalog_category_get(catalog_store_t *self, const char *id, category_t *out);
/* The fields of a category that an update sets (a mask). */
#define CATALOG_CATEGORY_NAME 1u
#define CATALOG_CATEGORY_SLUG 2u   /* normalised; "" derives it from the name */
#define CATALOG_CATEGORY_PARENT 4u /* "" makes it a root */
/* Sets the fields of category id named in `fields` to their values in
 * `values` (its other members are ignored); the others keep what is
 * stored. The stored record is read, and the parent and the cycle rule
 * checked, inside the write transaction, so a concurrent update of
 * another field is never undone. out (not values) gets the category as
 * written. */
catalog_status_t catalog_category_update(catalog_store_t *self, const char *id, unsigned fields,
                                         const category_t *values, category_t *out);
catalog_status_t catalog_category_delete(catalog_store_t *self, const char *id);
/* A page of categories in id order (creation order): up to limit with an
 * id after `after` (NULL or "": from the first; any string, not only an
 * id, bytewise), into out[limit]; *count of them, and *more (may be NULL)
 * true when others follow the last one. */
catalog_status_t catalog_category_page(catalog_store_t *self, const char *after, int limit,
                                       category_t *out, int *count, bool *more);
/* The first max categories in id order into out[max]; *count (for tools:
 * a full array may mean more, which catalog_category_page tells). */
catalog_status_t catalog_category_list(catalog_store_t *self, category_t *out, int max, int *count);

/* ---- products ---- */
/* Sets id, version 1, created/updated; p->created_at_ms is set by the store. */
catalog_status_t catalog_product_create(catalog_store_t *self, product_t *p);
catalog_status_t catalog_product_get(catalog_store_t *self, const char *id, product_t *out);
/* The id of the product with this sku into out; CATALOG_NOT_FOUND if none. */
catalog_status_t catalog_product_by_sku(catalog_store_t *self, const char *sku,
                                        char out[CATALOG_ID_MAX + 1]);
/* The fields of a product that an update sets (a mask). A patch that
 * leaves out CATALOG_PRODUCT_STOCK never touches stock; one that names it
 * sets it as catalog_product_set_stock does (the units free to reserve,
 * in the same transaction), so neither can undo a reservation. */
#define CATALOG_PRODUCT_SKU 1u
#define CATALOG_PRODUCT_NAME 2u
#define CATALOG_PRODUCT_DESCRIPTION 4u
#define CATALOG_PRODUCT_PRICE 8u
#define CATALOG_PRODUCT_CURRENCY 16u
#define CATALOG_PRODUCT_CATEGORY 32u
#define CATALOG_PRODUCT_ATTRIBUTES 64u
#define CATALOG_PRODUCT_STOCK 128u
#define CATALOG_PRODUCT_FIELDS 255u
/* A patch: sets the fields of product id named in `fields` to their
 * values in `values` (its other members are ignored) and keeps the rest
 * as stored (stock included, unless named). The stored record is read, and
 * expected_version (> 0: it must equal the stored version, else
 * CATALOG_VERSION_MISMATCH; 0: any) checked, inside the write
 * transaction, so no concurrent write (a reservation, another patch) is
 * undone. Version +1, updated_at now. out (not values) gets the product
 * as written. */
catalog_status_t catalog_product_update(catalog_store_t *self, const char *id, unsigned fields,
                                        const product_t *values, int64_t expected_version,
                                        product_t *out);
catalog_status_t catalog_product_delete(catalog_store_t *self, const char *id);
/* Sets the stock (>= 0) of a product: the units free to reserve, read
 * and written in one transaction; version +1. Units that reservations
 * hold are not in stock (reserving took them out), so they are not
 * touched, and a later release gives them back on top of the stock set
 * here. out gets the product. */
catalog_status_t catalog_product_set_stock(catalog_store_t *self, const char *id, int64_t stock,
                                           product_t *out);

/* ---- search ---- */
typedef enum {
    SORT_RELEVANCE, /* only with words; ties by newest */
    SORT_NEWEST,
    SORT_PRICE_ASC,
    SORT_PRICE_DESC,
    SORT_NAME,
} catalog_sort_t;

typedef struct {
    const char *q;           /* NULL or "": no text filter */
    const char *category_id; /* NULL: any; else this category and all below it */
    bool has_min_price, has_max_price;
    int64_t min_price, max_price; /* inclusive */
    bool in_stock_only;
    catalog_sort_t sort;
    int limit;          /* 1..CATALOG_PAGE_MAX */
    const char *cursor; /* NULL: first page; else a next_cursor from before */
} catalog_query_t;

typedef struct {
    int count;
    product_t *items;                         /* caller's array of >= limit */
    char next_cursor[CATALOG_CURSOR_MAX + 1]; /* "" when this is the last page */
} catalog_page_t;

/* Pagination is keyset: the cursor encodes the sort key of the last item
 * (value + id), so a page starts strictly after it whatever was inserted or
 * deleted meanwhile: no item is seen twice, none that existed throughout
 * is skipped. A cursor from another sort or a malformed one is refused
 * (CATALOG_CONFLICT). Candidates come from the most selective index that
 * answers the query (words, then category, then price range, then
 * creation time), never from a scan of every product when one applies. */
catalog_status_t catalog_search(catalog_store_t *self, const catalog_query_t *q,
                                catalog_page_t *page);

/* ---- inventory (for orders; every call idempotent on order_id) ---- */
typedef struct {
    char product_id[CATALOG_ID_MAX + 1];
    int64_t qty; /* > 0 */
} stock_line_t;

/* What a refused reserve names: the first line, in the caller's order,
 * whose product is missing (NOT_FOUND) or short (OUT_OF_STOCK); requested
 * is that product's qty summed over all the order's lines, available its
 * stock in the reserving transaction (0 when missing). */
typedef struct {
    char product_id[CATALOG_ID_MAX + 1];
    int64_t requested;
    int64_t available;
} stock_short_t;

/* All lines or none, in one write transaction; stock never below zero;
 * each product's stock - qty and reserved + qty. A repeated reserve of
 * the same order_id with the same lines returns OK and changes nothing;
 * with other lines, CATALOG_CONFLICT. On OUT_OF_STOCK or NOT_FOUND,
 * *short_line (may be NULL) tells which; else its product_id is "". */
catalog_status_t catalog_stock_reserve(catalog_store_t *self, const char *order_id,
                                       const stock_line_t *lines, int n_lines,
                                       stock_short_t *short_line);
/* Gives a reservation's stock back: from reserved (stock + qty, reserved
 * - qty) or committed (stock + qty: a cancelled sale); again: OK, no
 * change. Unknown order: CATALOG_NOT_FOUND. */
catalog_status_t catalog_stock_release(catalog_store_t *self, const char *order_id);
/* Makes a reservation final (reserved -> committed, reserved - qty; stock
 * stays out); again: OK. Released: CATALOG_CONFLICT. Unknown:
 * CATALOG_NOT_FOUND. Products deleted meanwhile are passed over by
 * commit and release. */
catalog_status_t catalog_stock_commit(catalog_store_t *self, const char *order_id);

/* ---- the same stock writes, without waiting ----
 *
 *      catalog_stock_write_reserve(&w, store, order_id, lines, n, &short_line);
 *      call_write(call, catalog_store_kv(store), catalog_stock_write_txn, &w, resume);
 *      ... in resume:
 *      status = catalog_stock_write_end(&w, answer->ok, answer->result);
 *
 * A prepared write holds everything its write function uses: a copy of
 * the order id, the lines (in canonical form) and the environment's
 * database handles, never the handle it was prepared from, so one handle
 * may have any number of writes out at once, and the handle may even be
 * closed before they are back. The function runs on the environment's
 * committer thread, inside a batch of other writes. w, and the
 * stock_short_t given to the reserve (may be NULL), must stay alive and
 * untouched until the write is back (the resume; kv_inbox_take): the
 * refusal's details are written into it inside the write. The lines
 * given to the prepare are copied; they need not live on. The outcome is
 * what catalog_stock_reserve, _commit or _release would have answered. */
typedef struct {
    /* the store's */
    kv_t *kv;
    MDB_dbi dbi[CATALOG_STORE_DBS];
    outbox_t *outbox; /* the handle's (catalog_store_set_outbox) */
    int stock_low;
    int kind;
    char order_id[CATALOG_ORDER_ID_MAX + 1];
    int n_lines;
    stock_line_t lines[CATALOG_LINES_MAX]; /* canonical: by product, merged */
    int rank[CATALOG_LINES_MAX];           /* a line's first place in the request */
    stock_short_t *short_line;
} stock_write_t;

/* Prepares catalog_stock_reserve's write and clears *short_line (may be
 * NULL). false, and nothing to run, for the arguments it refuses
 * (CATALOG_ERROR). */
bool catalog_stock_write_reserve(stock_write_t *w, catalog_store_t *self, const char *order_id,
                                 const stock_line_t *lines, int n_lines, stock_short_t *short_line);
/* Prepares catalog_stock_commit's or catalog_stock_release's write; false
 * for an order id they refuse (CATALOG_ERROR). */
bool catalog_stock_write_commit(stock_write_t *w, catalog_store_t *self, const char *order_id);
bool catalog_stock_write_release(stock_write_t *w, catalog_store_t *self, const char *order_id);
/* The kv write function of a prepared write; arg is the stock_write_t. */
int catalog_stock_write_txn(MDB_txn *txn, void *arg);
/* The outcome, from whether the transaction committed and the function's
 * result (when it did not: the transaction's error, call_answer_t's
 * result): CATALOG_ERROR when it did not commit (kv logged why),
 * CATALOG_NO_SPACE when that was for want of room. The
 * reserve's *short_line is cleared unless the outcome is OUT_OF_STOCK or
 * NOT_FOUND (a line named by a write that a failed commit undid). */
catalog_status_t catalog_stock_write_end(const stock_write_t *w, bool committed, int result);
/* The environment the writes go to. */
kv_t *catalog_store_kv(catalog_store_t *self);

/* A reservation as catalog_reservation_page shows it (lines canonical:
 * by product id, one per product). */
typedef enum { STOCK_RESERVED, STOCK_COMMITTED, STOCK_RELEASED } stock_state_t;
extern const char *const stock_state_names[3];
/* Takes one reservation; false to end the page before it (it is then
 * the first of the next page). */
typedef bool catalog_reservation_fn(const char *order_id, stock_state_t state,
                                    const stock_line_t *lines, int n_lines, void *arg);
/* Calls fn for up to limit (1..CATALOG_RESERVATIONS_PAGE_MAX) reservations
 * in order id order after `after` (NULL or "": from the first; order ids
 * are at most CATALOG_ORDER_ID_MAX bytes), only those in state `state`
 * unless it is -1, all read in one read transaction; *more (may be NULL)
 * true when another such reservation follows the last one taken. A
 * malformed record is logged and passed over (catalog_store_check
 * reports it). */
#define CATALOG_RESERVATIONS_PAGE_MAX 1000
catalog_status_t catalog_reservation_page(catalog_store_t *self, int state, const char *after,
                                          int limit, catalog_reservation_fn *fn, void *arg,
                                          bool *more);

/* ---- checks (catalog_check.c) ---- */
#define CATALOG_CHECK_PROBLEMS_MAX 100
typedef struct {
    char check[24];                    /* which rule: "stock", "reserved", "reserved_sum", ... */
    char message[200];                 /* what is wrong, in words */
    char id[CATALOG_ORDER_ID_MAX + 1]; /* the product, order or key; "" if none */
} catalog_problem_t;

typedef struct {
    bool ok;        /* no problem found (problems_total == 0) */
    int n_problems; /* the first CATALOG_CHECK_PROBLEMS_MAX found */
    long problems_total;
    catalog_problem_t problems[CATALOG_CHECK_PROBLEMS_MAX];
    int64_t products, stock_units, reserved_units;
    int64_t live_reservations, committed_units, released;
} catalog_check_t;

/* Verifies the store's own books in one read transaction (one moment):
 * no product with negative stock or reserved; every product's reserved
 * equals the sum of its live reservations' qty; every live
 * reservation's product exists; every reservation and product record
 * decodes; by_sku maps each product's sku to it and holds nothing else;
 * by_created, by_price, by_category and by_name hold exactly one entry
 * per product, under the key its record gives. (The word indexes are
 * not walked: they are as large as the text.) Counts: products, the sum
 * of stock and of reserved, the live reservations, the units of
 * committed ones and the number of released ones. CATALOG_OK even when
 * problems are found (out->ok says); CATALOG_ERROR when LMDB fails. */
catalog_status_t catalog_store_check(catalog_store_t *self, catalog_check_t *out);

/* Splits text into normalised words (see above), for tests and the
 * service's own checks: calls fn for each word. */
void catalog_words(const char *text, void (*fn)(const char *word, size_t len, void *arg),
                   void *arg);

#endif

/*  catalog_search.c - catalog_search: text search, filters, sort orders
 *  and keyset cursors over the catalog's indexes (catalog_store.h).
 *
 *  Candidates. With words in q, the candidates are the products having,
 *  for every query word, a word equal to it or starting with it. The
 *  postings of a query word are the keys of the words database from
 *  MDB_SET_RANGE on the word while they start with it ("word\0id", so a
 *  key starting with the query word is a product word having it as a
 *  prefix, or equal when the \0 follows at once). The query words are
 *  first counted, the smallest posting set is gathered (ids and pointers
 *  into the map, sorted by id), and every other word, in rising count,
 *  marks the entries it also has; the unmarked go. Memory is that of the
 *  smallest set, in an array the handle keeps between calls. A single
 *  word sorted by relevance or newest is not gathered: its postings are
 *  walked newest first, run by run, each run left as soon as nothing
 *  older in it can enter the page (s_word_newest_first), so a page costs
 *  about its size in postings per run rather than every posting of the
 *  word. A single word under another sort is gathered at once; when all
 *  its postings are exact (no longer word matched) each product has one
 *  and the merge by id (a sort) is skipped. With a category as well,
 *  every walk is of cat_words instead ("category\0word" for each category
 *  of the subtree), so only the postings inside the subtree are read and
 *  the category needs no check per candidate. Without words the source is, in this
 *  order: by_category (for each category of the subtree) when a category
 *  is given; by_name for the name sort without a price range; by_price
 *  when a price range is given or the sort is by price; else by_created.
 *
 *  Every index value carries the candidate's meta (price, created,
 *  category, name key; catalog_store_impl.h), so filters and sort keys
 *  need no record read. Records are read for the page's items, and for
 *  in_stock only for candidates that would enter the page.
 *
 *  Selection. Candidates pass the filters and the cursor (strictly after
 *  the cursor's key in the sort order), then go into a sorted array of
 *  the best limit + 1 (the extra one says whether a next page exists).
 *  When the source is walked in the sort's own order (newest from
 *  by_created or within each category walked backwards; price from
 *  by_price; name from by_name), the walk starts at the cursor and stops
 *  at the first candidate worse than a full page: a page costs about
 *  limit reads.
 *
 *  Sort orders (each a total order, ids breaking ties):
 *    relevance   score desc, created desc, id desc (without words every
 *                score is 0: newest)
 *    newest      created desc, id desc
 *    price_asc   price asc, id asc;  price_desc  price desc, id desc
 *    name        the lower-cased name asc (bytewise, so a name before
 *                its longer continuations), then id asc. Index values
 *                carry the first CATALOG_NAME_KEY_MAX bytes, which decide
 *                most comparisons; names that tie there are read whole
 *                from their records (s_name_cmp).
 *  The score sums, over the query words, 2 for an exact word or 1 for a
 *  prefix, doubled when that word is in the name (the best posting of a
 *  product for each query word counts).
 *
 *  Cursor: the sort, a 32-bit FNV-1a hash of the query (its normalised
 *  words, category, price bounds and in_stock), and the last item's sort
 *  key: a, b as relevance (score, created), newest (created, 0), price
 *  (price, 0), name (0, 0) with the whole lower-cased name for the name
 *  sort, and its id; encoded by catalog_cursor.c. A cursor replayed with
 *  another query or sort, or one that does not decode, is
 *  CATALOG_CONFLICT.
 */
#include "storage/catalog/catalog_store_impl.h"

#include <czmq.h>
#include <msgpack.h>
#include <string.h>

/* A candidate: id and meta point into the map of the read transaction.
 * name is its whole name for the name sort, lower-cased or not (it is
 * folded when compared), or NULL until a comparison needs it. */
typedef struct {
    const char *id;
    size_t id_len;
    catalog_meta_t meta;
    int score;
    const char *name;
    size_t name_len;
    bool from_longer; /* from a longer word's postings (s_word_newest_first) */
} s_cand_t;

/* A member of the smallest posting set (compact: there may be many). */
typedef struct {
    const char *id;
    const uint8_t *meta;
    uint16_t id_len, meta_len;
    int32_t score; /* summed over the words seen so far */
    int32_t hit;   /* the current word's best contribution, 0 if none */
} s_entry_t;

typedef char s_id_t[CATALOG_ID_MAX + 1];

/* Bytes of candidate array a handle keeps between searches. */
#define S_SCRATCH_KEEP ((size_t)8 << 20)

typedef struct {
    catalog_store_t *store;
    MDB_txn *txn;
    const catalog_query_t *q;
    s_id_t *cats; /* the category subtree, sorted, when filtering by one */
    size_t n_cats;
    bool by_cat_words; /* postings from cat_words: all within cats already */
    bool saw_prefix;   /* a posting walked was a longer word than the query's */
    bool has_cursor;
    s_cand_t after; /* the cursor's position; strings in the two below */
    char after_id[CATALOG_ID_MAX + 1];
    char after_name[CATALOG_NAME_MAX + 1]; /* lower-cased, whole */
    bool failed; /* a comparison could not read a name: the search fails */
    /* Set by s_word_newest_first: its query word. Candidates from_longer
     * are rescored and the page holds a product once (s_offer). */
    const struct s_qword_t *rescore;
    int k; /* limit + 1 */
    int n_top;
    s_cand_t top[CATALOG_PAGE_MAX + 1];
} s_search_t;

typedef enum { OFFER_TAKEN, OFFER_SKIPPED, OFFER_WORSE, OFFER_FAILED } s_offer_t;

/* ---- order ---- */

static int s_cmp_i64(int64_t a, int64_t b)
{
    return (a > b) - (a < b);
}

static int s_cmp_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
    int c = memcmp(a, b, a_len < b_len ? a_len : b_len);
    return c ? c : s_cmp_i64((int64_t)a_len, (int64_t)b_len);
}

/* Lower-cases name (len bytes) into out[CATALOG_NAME_MAX]; its length. */
static size_t s_fold(const char *name, size_t len, char *out)
{
    char text[CATALOG_NAME_MAX + 1];
    len = len < CATALOG_NAME_MAX ? len : CATALOG_NAME_MAX;
    memcpy(text, name, len);
    text[len] = '\0';
    return catalog_lower(text, out, CATALOG_NAME_MAX);
}

/* Reads c's whole name from its record; false (logged) when it cannot. */
static bool s_name_load(s_search_t *s, s_cand_t *c)
{
    MDB_val key = {.mv_size = c->id_len, .mv_data = (void *)c->id}, val;
    int rc = mdb_get(s->txn, s->store->dbi[CATALOG_DB_PRODUCTS], &key, &val);
    if (rc != 0) {
        catalog_fail("mdb_get products (name)", rc);
        return false;
    }
    if (catalog_record_name(&val, &c->name, &c->name_len) != 0) {
        zsys_error("catalog_store: malformed product record %.*s", (int)c->id_len, c->id);
        return false;
    }
    return true;
}

/* The name order of a and b (0 when the names are one). The index values
 * carry only the lower-cased name's first CATALOG_NAME_KEY_MAX bytes,
 * which decide unless one key is a prefix of the other and the shorter
 * may have been cut (a cut on a character boundary drops at most 3
 * bytes): then the whole names are compared, read from the records on
 * first need (a tie of long names is the only case that reads). */
static int s_name_cmp(s_search_t *s, s_cand_t *a, s_cand_t *b)
{
    size_t n =
        a->meta.name_key_len < b->meta.name_key_len ? a->meta.name_key_len : b->meta.name_key_len;
    int c = memcmp(a->meta.name_key, b->meta.name_key, n);
    if (c)
        return c;
    if (n + 4 <= CATALOG_NAME_KEY_MAX) /* the shorter key is a whole name */
        return s_cmp_i64((int64_t)a->meta.name_key_len, (int64_t)b->meta.name_key_len);
    if ((!a->name && !s_name_load(s, a)) || (!b->name && !s_name_load(s, b))) {
        s->failed = true;
        return 0;
    }
    char x[CATALOG_NAME_MAX], y[CATALOG_NAME_MAX];
    size_t x_len = s_fold(a->name, a->name_len, x), y_len = s_fold(b->name, b->name_len, y);
    return s_cmp_bytes(x, x_len, y, y_len);
}

/* < 0 when a comes before b in the sort order, 0 when they are one. */
static int s_order(s_search_t *s, s_cand_t *a, s_cand_t *b)
{
    int id = s_cmp_bytes(a->id, a->id_len, b->id, b->id_len);
    int c;
    switch (s->q->sort) {
    case SORT_RELEVANCE:
        c = s_cmp_i64(b->score, a->score);
        if (!c)
            c = s_cmp_i64(b->meta.created, a->meta.created);
        return c ? c : -id;
    case SORT_NEWEST:
        c = s_cmp_i64(b->meta.created, a->meta.created);
        return c ? c : -id;
    case SORT_PRICE_ASC:
        c = s_cmp_i64(a->meta.price, b->meta.price);
        return c ? c : id;
    case SORT_PRICE_DESC:
        c = s_cmp_i64(b->meta.price, a->meta.price);
        return c ? c : -id;
    case SORT_NAME:
        c = s_name_cmp(s, a, b);
        return c ? c : id;
    }
    return id;
}

/* ---- filters and the page ---- */

static int s_id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static bool s_in_cats(const s_search_t *s, const char *cat, size_t len)
{
    if (len > CATALOG_ID_MAX)
        return false;
    s_id_t key;
    memcpy(key, cat, len);
    key[len] = '\0';
    return bsearch(key, s->cats, s->n_cats, sizeof *s->cats, s_id_cmp) != NULL;
}

/* Whether the product id is in stock; -1 on failure. */
static int s_in_stock(s_search_t *s, const s_cand_t *c)
{
    MDB_val key = {.mv_size = c->id_len, .mv_data = (void *)c->id}, val;
    int rc = mdb_get(s->txn, s->store->dbi[CATALOG_DB_PRODUCTS], &key, &val);
    if (rc != 0) {
        /* Written in one transaction with the index: a miss is damage. */
        catalog_fail("mdb_get products (in_stock)", rc);
        return -1;
    }
    int64_t stock;
    if (catalog_record_stock(&val, &stock) != 0) {
        zsys_error("catalog_store: malformed product record %.*s", (int)c->id_len, c->id);
        return -1;
    }
    return stock > 0;
}

/* The best contribution of the query word over a text's words. */
typedef struct {
    const struct s_qword_t *q;
    int factor; /* 2 for the name, 1 for the description */
    int best;
} s_rescore_t;

static void s_rescore_fn(const char *word, size_t len, void *arg);

/* c's score for s->rescore from its record: the best posting of the
 * product for the query word, as the index would give it. -1 on failure. */
static int s_rescore(s_search_t *s, const s_cand_t *c)
{
    MDB_val key = {.mv_size = c->id_len, .mv_data = (void *)c->id}, val;
    int rc = mdb_get(s->txn, s->store->dbi[CATALOG_DB_PRODUCTS], &key, &val);
    if (rc != 0) {
        catalog_fail("mdb_get products (score)", rc);
        return -1;
    }
    const char *text[2];
    size_t len[2];
    if (catalog_record_texts(&val, &text[0], &len[0], &text[1], &len[1]) != 0) {
        zsys_error("catalog_store: malformed product record %.*s", (int)c->id_len, c->id);
        return -1;
    }
    s_rescore_t r = {.q = s->rescore, .factor = 2};
    char buf[CATALOG_DESCRIPTION_MAX + 1];
    for (int i = 0; i < 2; i++, r.factor = 1) {
        memcpy(buf, text[i], len[i]); /* the splitter wants a terminated string */
        buf[len[i]] = '\0';
        catalog_words(buf, s_rescore_fn, &r);
    }
    return r.best;
}

static s_offer_t s_offer(s_search_t *s, s_cand_t *c)
{
    const catalog_query_t *q = s->q;
    if (s->cats && !s->by_cat_words && !s_in_cats(s, c->meta.category, c->meta.category_len))
        return OFFER_SKIPPED;
    if ((q->has_min_price && c->meta.price < q->min_price) ||
        (q->has_max_price && c->meta.price > q->max_price))
        return OFFER_SKIPPED;
    if (s->has_cursor && s_order(s, &s->after, c) >= 0)
        return s->failed ? OFFER_FAILED : OFFER_SKIPPED;
    if (s->n_top == s->k && s_order(s, c, &s->top[s->n_top - 1]) >= 0)
        return s->failed ? OFFER_FAILED : OFFER_WORSE;
    if (s->rescore) {
        /* It would enter the page at the score of this posting; its own
         * may be higher (s_word_newest_first), which can put it before
         * the cursor, and it may be in the page already. */
        if (c->from_longer && q->sort == SORT_RELEVANCE) {
            int score = s_rescore(s, c);
            if (score < 0)
                return OFFER_FAILED;
            c->score = score;
            if (s->has_cursor && s_order(s, &s->after, c) >= 0)
                return OFFER_SKIPPED;
        }
        for (int i = 0; i < s->n_top; i++)
            if (s->top[i].id_len == c->id_len && memcmp(s->top[i].id, c->id, c->id_len) == 0)
                return OFFER_SKIPPED;
    }
    if (q->in_stock_only) {
        int in = s_in_stock(s, c);
        if (in < 0)
            return OFFER_FAILED;
        if (!in)
            return OFFER_SKIPPED;
    }
    int lo = 0, hi = s->n_top;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (s_order(s, c, &s->top[mid]) < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    if (s->n_top == s->k)
        s->n_top--; /* the last one drops out */
    memmove(&s->top[lo + 1], &s->top[lo], (size_t)(s->n_top - lo) * sizeof s->top[0]);
    s->top[lo] = *c;
    s->n_top++;
    return s->failed ? OFFER_FAILED : OFFER_TAKEN;
}

/* ---- index walks (no words) ---- */

typedef struct {
    int db;
    uint8_t prefix[CATALOG_ID_MAX + 1];
    size_t prefix_len;
    int64_t lo, hi; /* bounds of the 8-byte field after the prefix */
    bool backward;
    bool ordered;     /* the walk visits candidates in the sort's order */
    bool from_cursor; /* start at (field, id) below */
    int64_t cursor_field;
} s_walk_t;

static catalog_status_t s_walk(s_search_t *s, const s_walk_t *w)
{
    MDB_cursor *cursor = NULL;
    catalog_status_t status = CATALOG_ERROR;
    int rc = mdb_cursor_open(s->txn, s->store->dbi[w->db], &cursor);
    if (rc != 0)
        return catalog_fail("mdb_cursor_open", rc);
    uint8_t start[CATALOG_ID_MAX + 1 + 8 + CATALOG_ID_MAX + 1];
    size_t n = w->prefix_len;
    memcpy(start, w->prefix, n);
    int64_t field = w->backward ? w->hi : w->lo;
    bool at_cursor =
        w->from_cursor && (w->backward ? w->cursor_field <= w->hi : w->cursor_field >= w->lo);
    if (at_cursor)
        field = w->cursor_field;
    catalog_be64_put(start + n, catalog_bias(field));
    n += 8;
    if (at_cursor) {
        memcpy(start + n, s->after.id, s->after.id_len);
        n += s->after.id_len;
    } else if (w->backward)
        start[n++] = 0xff; /* past every id with this field: ids are ASCII */
    MDB_val key = {.mv_size = n, .mv_data = start}, val;
    rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    if (w->backward) {
        /* The last key before the start: the one before the first key at
         * or after it, or the last of all. */
        if (rc == 0)
            rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV);
        else if (rc == MDB_NOTFOUND)
            rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
    }
    while (rc == 0) {
        const uint8_t *k = key.mv_data;
        if (key.mv_size <= w->prefix_len + 8 || memcmp(k, w->prefix, w->prefix_len) != 0)
            break;
        int64_t v = (int64_t)(catalog_be64_get(k + w->prefix_len) ^ 0x8000000000000000u);
        if (w->backward ? v < w->lo : v > w->hi)
            break;
        s_cand_t c = {.id = (const char *)k + w->prefix_len + 8,
                      .id_len = key.mv_size - w->prefix_len - 8};
        if (!catalog_meta_decode(&val, &c.meta)) {
            zsys_error("catalog_store: %s: malformed index value", catalog_store_names[w->db]);
            goto cleanup;
        }
        if (v >= w->lo && v <= w->hi) {
            s_offer_t o = s_offer(s, &c);
            if (o == OFFER_FAILED)
                goto cleanup;
            if (o == OFFER_WORSE && w->ordered)
                break; /* everything after is worse still */
        }
        rc = mdb_cursor_get(cursor, &key, &val, w->backward ? MDB_PREV : MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        catalog_fail("mdb_cursor_get", rc);
        goto cleanup;
    }
    status = CATALOG_OK;
cleanup:
    mdb_cursor_close(cursor);
    return status;
}

/* The name sort without words, category or price range: by_name in
 * order from the cursor, a page costing about limit reads. */
static catalog_status_t s_walk_names(s_search_t *s)
{
    MDB_cursor *cursor = NULL;
    catalog_status_t status = CATALOG_ERROR;
    int rc = mdb_cursor_open(s->txn, s->store->dbi[CATALOG_DB_BY_NAME], &cursor);
    if (rc != 0)
        return catalog_fail("mdb_cursor_open by_name", rc);
    uint8_t start[CATALOG_NAME_MAX + 1 + CATALOG_ID_MAX];
    MDB_val key = {.mv_size = 0, .mv_data = start}, val;
    if (s->has_cursor) {
        memcpy(start, s->after.name, s->after.name_len);
        start[s->after.name_len] = 0;
        memcpy(start + s->after.name_len + 1, s->after.id, s->after.id_len);
        key.mv_size = s->after.name_len + 1 + s->after.id_len;
        rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    } else
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        const char *k = key.mv_data, *end = memchr(k, '\0', key.mv_size);
        s_cand_t c = {.name = k};
        if (!end || end + 1 == k + key.mv_size || !catalog_meta_decode(&val, &c.meta)) {
            zsys_error("catalog_store: by_name: malformed entry");
            goto cleanup;
        }
        c.name_len = (size_t)(end - k);
        c.id = end + 1;
        c.id_len = key.mv_size - c.name_len - 1;
        s_offer_t o = s_offer(s, &c);
        if (o == OFFER_FAILED)
            goto cleanup;
        if (o == OFFER_WORSE)
            break; /* everything after is worse still */
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        catalog_fail("mdb_cursor_get by_name", rc);
        goto cleanup;
    }
    status = CATALOG_OK;
cleanup:
    mdb_cursor_close(cursor);
    return status;
}

static catalog_status_t s_source_indexes(s_search_t *s)
{
    const catalog_query_t *q = s->q;
    bool by_newest = q->sort == SORT_NEWEST || q->sort == SORT_RELEVANCE;
    s_walk_t w = {.lo = INT64_MIN, .hi = INT64_MAX};
    if (s->cats) {
        /* Within a category the keys are in creation order. */
        w.db = CATALOG_DB_BY_CATEGORY;
        w.backward = w.ordered = by_newest;
        w.from_cursor = by_newest && s->has_cursor;
        w.cursor_field = s->after.meta.created;
        for (size_t i = 0; i < s->n_cats; i++) {
            size_t len = strlen(s->cats[i]);
            memcpy(w.prefix, s->cats[i], len + 1);
            w.prefix_len = len + 1;
            catalog_status_t status = s_walk(s, &w);
            if (status != CATALOG_OK)
                return status;
        }
        return CATALOG_OK;
    }
    bool by_price = q->sort == SORT_PRICE_ASC || q->sort == SORT_PRICE_DESC;
    if (q->sort == SORT_NAME && !q->has_min_price && !q->has_max_price)
        return s_walk_names(s);
    if (by_price || q->has_min_price || q->has_max_price) {
        w.db = CATALOG_DB_BY_PRICE;
        if (q->has_min_price)
            w.lo = q->min_price;
        if (q->has_max_price)
            w.hi = q->max_price;
        if (w.lo > w.hi)
            return CATALOG_OK;
        w.ordered = by_price;
        w.backward = q->sort == SORT_PRICE_DESC;
        w.from_cursor = by_price && s->has_cursor;
        w.cursor_field = s->after.meta.price;
        return s_walk(s, &w);
    }
    w.db = CATALOG_DB_BY_CREATED;
    w.backward = w.ordered = by_newest;
    w.from_cursor = by_newest && s->has_cursor;
    w.cursor_field = s->after.meta.created;
    return s_walk(s, &w);
}

/* ---- word postings ---- */

typedef struct s_qword_t {
    char word[CATALOG_WORD_MAX];
    size_t len;
    size_t count; /* postings having it as a prefix */
} s_qword_t;

typedef struct {
    s_qword_t words[CATALOG_QUERY_WORDS_MAX];
    int n;
} s_qwords_t;

static void s_qword_add(const char *word, size_t len, void *arg)
{
    s_qwords_t *qw = arg;
    if (qw->n == CATALOG_QUERY_WORDS_MAX)
        return; /* the rest of the query is ignored */
    for (int i = 0; i < qw->n; i++)
        if (qw->words[i].len == len && memcmp(qw->words[i].word, word, len) == 0)
            return; /* a repeated word adds nothing */
    memcpy(qw->words[qw->n].word, word, len);
    qw->words[qw->n].len = len;
    qw->words[qw->n].count = 0;
    qw->n++;
}

static int s_entry_cmp(const void *a, const void *b)
{
    const s_entry_t *x = a, *y = b;
    return s_cmp_bytes(x->id, x->id_len, y->id, y->id_len);
}

/* What a posting adds to the score (header comment). */
static int s_contribution(size_t word_len, size_t matched_len, const uint8_t *meta)
{
    return (word_len == matched_len ? 2 : 1) * (meta[0] & CATALOG_IN_NAME ? 2 : 1);
}

static void s_rescore_fn(const char *word, size_t len, void *arg)
{
    s_rescore_t *r = arg;
    if (len < r->q->len || memcmp(word, r->q->word, r->q->len) != 0)
        return;
    int score = (len == r->q->len ? 2 : 1) * r->factor;
    if (score > r->best)
        r->best = score;
}

/* Walks the postings of w calling fn on each (id, meta, contribution);
 * fn returning false stops with an error. */
typedef bool (*s_posting_fn)(const char *id, size_t id_len, const MDB_val *meta, int score,
                             void *arg);

/* Walks the postings of w with cursor (on db) under prefix (the
 * category and its \0 in cat_words, nothing in words). */
static catalog_status_t s_postings_in(s_search_t *s, MDB_cursor *cursor, int db, const char *prefix,
                                      size_t prefix_len, const s_qword_t *w, s_posting_fn fn,
                                      void *arg)
{
    char start[CATALOG_ID_MAX + 1 + CATALOG_WORD_MAX];
    if (prefix_len > CATALOG_ID_MAX + 1)
        return CATALOG_ERROR;
    memcpy(start, prefix, prefix_len);
    memcpy(start + prefix_len, w->word, w->len);
    size_t start_len = prefix_len + w->len;
    MDB_val key = {.mv_size = start_len, .mv_data = start}, val;
    int rc;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        const char *k = key.mv_data;
        if (key.mv_size <= start_len || memcmp(k, start, start_len) != 0)
            break;
        const char *end = memchr(k + start_len, '\0', key.mv_size - start_len);
        if (!end || end + 1 == k + key.mv_size || val.mv_size < 1) {
            zsys_error("catalog_store: %s: malformed posting", catalog_store_names[db]);
            return CATALOG_ERROR;
        }
        size_t matched = (size_t)(end - k) - prefix_len;
        if (matched != w->len)
            s->saw_prefix = true;
        const char *id = end + 1;
        size_t id_len = key.mv_size - prefix_len - matched - 1;
        if (!fn(id, id_len, &val, s_contribution(w->len, matched, val.mv_data), arg))
            return CATALOG_ERROR;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        return catalog_fail("mdb_cursor_get words", rc);
    return CATALOG_OK;
}

/* The postings of w: from words, or with a category filter from
 * cat_words under each category of the subtree (the same postings less
 * those outside it). */
static catalog_status_t s_postings(s_search_t *s, const s_qword_t *w, s_posting_fn fn, void *arg)
{
    int db = s->by_cat_words ? CATALOG_DB_CAT_WORDS : CATALOG_DB_WORDS;
    MDB_cursor *cursor = NULL;
    int rc = mdb_cursor_open(s->txn, s->store->dbi[db], &cursor);
    if (rc != 0)
        return catalog_fail("mdb_cursor_open words", rc);
    catalog_status_t status = CATALOG_OK;
    if (!s->by_cat_words)
        status = s_postings_in(s, cursor, db, "", 0, w, fn, arg);
    for (size_t i = 0; s->by_cat_words && i < s->n_cats && status == CATALOG_OK; i++) {
        size_t len = strlen(s->cats[i]) + 1; /* with its \0 */
        status = s_postings_in(s, cursor, db, s->cats[i], len, w, fn, arg);
    }
    mdb_cursor_close(cursor);
    return status;
}

static bool s_count_fn(const char *id, size_t id_len, const MDB_val *meta, int score, void *arg)
{
    (void)id, (void)id_len, (void)meta, (void)score;
    (*(size_t *)arg)++;
    return true;
}

typedef struct {
    s_entry_t *entries;
    size_t n, cap;
    s_search_t *grow; /* non-NULL: the array grows (no count was taken) */
} s_set_t;

/* Makes room for n entries in the handle's scratch array (kept between
 * calls); false when out of memory. */
static bool s_set_reserve(s_search_t *s, s_set_t *set, size_t n)
{
    catalog_store_t *store = s->store;
    if (n > store->scratch_cap / sizeof *set->entries) {
        size_t cap = store->scratch_cap / sizeof *set->entries;
        cap = cap ? cap : 1024;
        while (cap < n)
            cap *= 2;
        s_entry_t *grown = realloc(store->scratch, cap * sizeof *grown);
        if (!grown) {
            zsys_error("catalog_store: out of memory for %zu postings", n);
            return false;
        }
        store->scratch = grown;
        store->scratch_cap = cap * sizeof *grown;
    }
    set->entries = store->scratch;
    set->cap = store->scratch_cap / sizeof *set->entries;
    return true;
}

static bool s_gather_fn(const char *id, size_t id_len, const MDB_val *meta, int score, void *arg)
{
    s_set_t *set = arg;
    if (set->n == set->cap && set->grow && !s_set_reserve(set->grow, set, set->n + 1))
        return false;
    if (set->n == set->cap || id_len > CATALOG_ID_MAX || meta->mv_size > CATALOG_META_MAX)
        return false; /* the count said less: damage */
    set->entries[set->n++] = (s_entry_t){.id = id,
                                         .id_len = (uint16_t)id_len,
                                         .meta = meta->mv_data,
                                         .meta_len = (uint16_t)meta->mv_size,
                                         .score = score};
    return true;
}

static bool s_mark_fn(const char *id, size_t id_len, const MDB_val *meta, int score, void *arg)
{
    (void)meta;
    s_set_t *set = arg;
    s_entry_t key = {.id = id, .id_len = (uint16_t)id_len};
    s_entry_t *e = bsearch(&key, set->entries, set->n, sizeof key, s_entry_cmp);
    if (e && score > e->hit)
        e->hit = score;
    return true;
}

static int s_qword_cmp(const void *a, const void *b)
{
    const s_qword_t *x = a, *y = b;
    return (x->count > y->count) - (x->count < y->count);
}

/* The best score a posting can give one query word: exact, in the name. */
#define S_SCORE_EXACT_MAX 4
/* The best a posting of a longer word can give: a prefix, in the name. */
#define S_SCORE_PREFIX_MAX 2
/* How far a product's created_at may be past its id's time: 0 since the
 * store derives one from the other, 1 ms for products written before
 * that (the two clock readings were taken one after the other). */
#define S_CREATED_SLACK_MS 2

/* Walks one run of postings newest first: the keys under run (a
 * category's \0 in cat_words, the word, its \0), in id order, which is
 * creation order. It stops as soon as even a best-scored posting of the
 * rest (max_score, its created time plus the slack) could not enter the
 * page. Candidates are marked from_longer when the run is of a longer
 * word than the query's. */
static catalog_status_t s_walk_run(s_search_t *s, MDB_cursor *cursor, int db, const char *run,
                                   size_t run_len, const s_qword_t *w, bool longer)
{
    char start[CATALOG_ID_MAX + 1 + CATALOG_WORD_MAX + 2];
    memcpy(start, run, run_len);
    start[run_len] = (char)0xff; /* past every posting of the run: ids are ASCII */
    MDB_val key = {.mv_size = run_len + 1, .mv_data = start}, val;
    int rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
    int max_score = longer ? S_SCORE_PREFIX_MAX : S_SCORE_EXACT_MAX;
    size_t matched = run_len - 1 - (s->by_cat_words ? (size_t)(strchr(run, '\0') - run) + 1 : 0);
    for (; rc == 0; rc = mdb_cursor_get(cursor, &key, &val, MDB_PREV)) {
        const char *k = key.mv_data;
        if (key.mv_size <= run_len || memcmp(k, run, run_len) != 0)
            break; /* before the run */
        s_cand_t c = {.id = k + run_len, .id_len = key.mv_size - run_len, .from_longer = longer};
        if (val.mv_size < 1 || !catalog_meta_decode(&val, &c.meta)) {
            zsys_error("catalog_store: %s: malformed posting", catalog_store_names[db]);
            return CATALOG_ERROR;
        }
        c.score = s_contribution(w->len, matched, val.mv_data);
        if (s->n_top == s->k) {
            s_cand_t best = c;
            best.score = max_score;
            best.meta.created += S_CREATED_SLACK_MS;
            if (s_order(s, &best, &s->top[s->n_top - 1]) >= 0)
                break;
        }
        if (s_offer(s, &c) == OFFER_FAILED)
            return CATALOG_ERROR;
    }
    return rc == 0 || rc == MDB_NOTFOUND ? CATALOG_OK : catalog_fail("mdb_cursor_get words", rc);
}

/* One query word sorted by relevance or newest, without gathering its
 * postings: each run (per category of the subtree in cat_words, or the
 * one of words; per word matched: the query word itself, then each longer
 * word starting with it) is walked newest first by s_walk_run and left
 * early. The exact runs go first: their products score 2 or 4 and soon
 * fill the page, after which a longer word's run (postings scoring 1 or
 * 2) is mostly left at its first posting. A product found through a
 * longer word may score more through another of its words, and may be in
 * several runs: s_offer rescores such a candidate from its record when it
 * would enter the page, and keeps a product in the page once. Leaving a
 * run early is safe for such products too: each is offered at its true
 * score by the run of its best word, unless that run was left because
 * nothing of it could enter. */
static catalog_status_t s_word_newest_first(s_search_t *s, const s_qword_t *w)
{
    int db = s->by_cat_words ? CATALOG_DB_CAT_WORDS : CATALOG_DB_WORDS;
    MDB_cursor *cursor = NULL;
    int rc = mdb_cursor_open(s->txn, s->store->dbi[db], &cursor);
    if (rc != 0)
        return catalog_fail("mdb_cursor_open words", rc);
    s->rescore = w;
    catalog_status_t status = CATALOG_OK;
    size_t n_prefixes = s->by_cat_words ? s->n_cats : 1;
    for (int pass = 0; pass < 2 && status == CATALOG_OK; pass++)
        for (size_t r = 0; r < n_prefixes && status == CATALOG_OK; r++) {
            /* run: [category \0] word \0 */
            char run[CATALOG_ID_MAX + 1 + CATALOG_WORD_MAX + 1];
            size_t n = 0;
            if (s->by_cat_words) {
                n = strlen(s->cats[r]) + 1;
                memcpy(run, s->cats[r], n);
            }
            memcpy(run + n, w->word, w->len);
            run[n + w->len] = '\0';
            if (pass == 0) {
                status = s_walk_run(s, cursor, db, run, n + w->len + 1, w, false);
                continue;
            }
            /* The longer words, in key order: from the query word's
             * postings on, each word's run, then a seek past it. */
            MDB_val key = {.mv_size = n + w->len, .mv_data = run}, val;
            char next[CATALOG_ID_MAX + 1 + CATALOG_WORD_MAX + 2]; /* the seek key */
            for (rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
                 rc == 0 && status == CATALOG_OK;
                 rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE)) {
                const char *k = key.mv_data;
                if (key.mv_size <= n + w->len || memcmp(k, run, n + w->len) != 0)
                    break; /* past the words starting with the query word */
                const char *end = memchr(k + n, '\0', key.mv_size - n);
                if (!end) {
                    zsys_error("catalog_store: %s: malformed posting", catalog_store_names[db]);
                    status = CATALOG_ERROR;
                    break;
                }
                size_t run_len = (size_t)(end - k) + 1;
                if (run_len > sizeof next - 1) {
                    status = CATALOG_ERROR;
                    break;
                }
                memcpy(next, k, run_len);
                if (run_len > n + w->len + 1) /* not the query word itself */
                    status = s_walk_run(s, cursor, db, next, run_len, w, true);
                next[run_len] = (char)0xff; /* the next word's first posting */
                key = (MDB_val){.mv_size = run_len + 1, .mv_data = next};
            }
            if (status == CATALOG_OK && rc != 0 && rc != MDB_NOTFOUND)
                status = catalog_fail("mdb_cursor_get words", rc);
        }
    mdb_cursor_close(cursor);
    return status;
}

static catalog_status_t s_source_words(s_search_t *s, s_qwords_t *qw)
{
    if (qw->n == 1 && (s->q->sort == SORT_RELEVANCE || s->q->sort == SORT_NEWEST))
        return s_word_newest_first(s, &qw->words[0]);
    /* Several words: each is counted and the smallest set is gathered.
     * One word: gathered at once, the array growing as it goes. */
    if (qw->n > 1) {
        for (int i = 0; i < qw->n; i++) {
            catalog_status_t status = s_postings(s, &qw->words[i], s_count_fn, &qw->words[i].count);
            if (status != CATALOG_OK)
                return status;
            if (qw->words[i].count == 0)
                return CATALOG_OK; /* a word nothing has: no match */
        }
        qsort(qw->words, (size_t)qw->n, sizeof qw->words[0], s_qword_cmp);
    }
    s_set_t set = {.grow = qw->n > 1 ? NULL : s};
    if (!s_set_reserve(s, &set, qw->n > 1 ? qw->words[0].count : 0))
        return CATALOG_ERROR;
    s->saw_prefix = false;
    catalog_status_t status = s_postings(s, &qw->words[0], s_gather_fn, &set);
    if (status != CATALOG_OK)
        goto cleanup;
    if (!s->saw_prefix && qw->n == 1)
        goto offer; /* exact postings only: one per product, nothing to merge */
    /* A prefix may match several words of one product: keep its best. */
    qsort(set.entries, set.n, sizeof *set.entries, s_entry_cmp);
    size_t n = 0;
    for (size_t i = 0; i < set.n; i++) {
        if (n > 0 && s_entry_cmp(&set.entries[n - 1], &set.entries[i]) == 0) {
            if (set.entries[i].score > set.entries[n - 1].score)
                set.entries[n - 1].score = set.entries[i].score;
        } else
            set.entries[n++] = set.entries[i];
    }
    set.n = n;
    for (int w = 1; w < qw->n && set.n > 0; w++) {
        for (size_t i = 0; i < set.n; i++)
            set.entries[i].hit = 0;
        status = s_postings(s, &qw->words[w], s_mark_fn, &set);
        if (status != CATALOG_OK)
            goto cleanup;
        n = 0;
        for (size_t i = 0; i < set.n; i++)
            if (set.entries[i].hit > 0) {
                set.entries[n] = set.entries[i];
                set.entries[n++].score += set.entries[i].hit;
            }
        set.n = n;
    }
offer:
    for (size_t i = 0; i < set.n; i++) {
        const s_entry_t *e = &set.entries[i];
        s_cand_t c = {.id = e->id, .id_len = e->id_len, .score = e->score};
        MDB_val meta = {.mv_size = e->meta_len, .mv_data = (void *)e->meta};
        if (!catalog_meta_decode(&meta, &c.meta)) {
            zsys_error("catalog_store: words: malformed posting value");
            status = CATALOG_ERROR;
            goto cleanup;
        }
        if (s_offer(s, &c) == OFFER_FAILED) {
            status = CATALOG_ERROR;
            goto cleanup;
        }
    }
cleanup:
    return status; /* set.entries is the handle's scratch */
}

/* ---- category subtree ---- */

typedef struct {
    s_id_t id, parent;
} s_edge_t;

static int s_edge_cmp(const void *a, const void *b)
{
    return strcmp(((const s_edge_t *)a)->parent, ((const s_edge_t *)b)->parent);
}

/* The category root and all below it into s->cats (sorted); none when
 * root does not exist. */
static catalog_status_t s_subtree(s_search_t *s, const char *root)
{
    s_edge_t *edges = NULL;
    size_t n_edges = 0, cap = 0;
    bool root_found = false;
    MDB_cursor *cursor = NULL;
    catalog_status_t status = CATALOG_ERROR;
    int rc = mdb_cursor_open(s->txn, s->store->dbi[CATALOG_DB_CATEGORIES], &cursor);
    if (rc != 0)
        return catalog_fail("mdb_cursor_open categories", rc);
    MDB_val key, val;
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        if (n_edges == cap) {
            cap = cap ? cap * 2 : 64;
            s_edge_t *grown = realloc(edges, cap * sizeof *edges);
            if (!grown)
                goto cleanup;
            edges = grown;
        }
        category_t c;
        char id[CATALOG_ID_MAX + 1];
        if (key.mv_size == 0 || key.mv_size > CATALOG_ID_MAX)
            goto cleanup;
        memcpy(id, key.mv_data, key.mv_size);
        id[key.mv_size] = '\0';
        if (catalog_category_read(s->store, s->txn, id, &c) != CATALOG_OK)
            goto cleanup;
        memcpy(edges[n_edges].id, c.id, sizeof c.id);
        memcpy(edges[n_edges].parent, c.parent_id, sizeof c.parent_id);
        n_edges++;
        if (strcmp(c.id, root) == 0)
            root_found = true;
    }
    if (rc != MDB_NOTFOUND) {
        catalog_fail("mdb_cursor_get categories", rc);
        goto cleanup;
    }
    s->cats = malloc((n_edges + 1) * sizeof *s->cats);
    if (!s->cats)
        goto cleanup;
    s->n_cats = 0;
    if (root_found) {
        snprintf(s->cats[s->n_cats++], sizeof s->cats[0], "%s", root);
        qsort(edges, n_edges, sizeof *edges, s_edge_cmp);
        /* Breadth first: the children of each member join the set; the
         * tree has no cycles (category update refuses them). */
        for (size_t i = 0; i < s->n_cats && s->n_cats <= n_edges; i++) {
            s_edge_t probe;
            memcpy(probe.parent, s->cats[i], sizeof probe.parent);
            s_edge_t *e = bsearch(&probe, edges, n_edges, sizeof *edges, s_edge_cmp);
            if (!e)
                continue;
            while (e > edges && strcmp(e[-1].parent, probe.parent) == 0)
                e--;
            for (; e < edges + n_edges && strcmp(e->parent, probe.parent) == 0; e++)
                if (s->n_cats <= n_edges)
                    memcpy(s->cats[s->n_cats++], e->id, sizeof e->id);
        }
        qsort(s->cats, s->n_cats, sizeof *s->cats, s_id_cmp);
    }
    status = CATALOG_OK;
cleanup:
    if (status != CATALOG_OK)
        zsys_error("catalog_store: cannot read the category tree");
    mdb_cursor_close(cursor);
    free(edges);
    return status;
}

/* ---- cursors (the codec is catalog_cursor.c) ---- */

static void s_hash_bytes(uint32_t *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        *h ^= p[i];
        *h *= 16777619u;
    }
}

static uint32_t s_query_hash(const catalog_query_t *q, const s_qwords_t *qw)
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < qw->n; i++) {
        /* Each word with its terminator, so "ab c" and "a bc" differ. */
        s_hash_bytes(&h, qw->words[i].word, qw->words[i].len);
        s_hash_bytes(&h, "", 1);
    }
    s_hash_bytes(&h, "\x01", 1);
    if (q->category_id)
        s_hash_bytes(&h, q->category_id, strlen(q->category_id));
    uint8_t flags[3] = {q->has_min_price, q->has_max_price, q->in_stock_only};
    s_hash_bytes(&h, flags, sizeof flags);
    if (q->has_min_price)
        s_hash_bytes(&h, &q->min_price, sizeof q->min_price);
    if (q->has_max_price)
        s_hash_bytes(&h, &q->max_price, sizeof q->max_price);
    return h;
}

/* name: the item's whole name, lower-cased (used by the name sort). */
static void s_cursor_encode(const catalog_query_t *q, uint32_t hash, const s_cand_t *c,
                            const char *folded_name, size_t folded_len,
                            char out[CATALOG_CURSOR_MAX + 1])
{
    catalog_cursor_t cursor = {.sort = (uint8_t)q->sort, .hash = hash};
    switch (q->sort) {
    case SORT_RELEVANCE:
        cursor.a = c->score, cursor.b = c->meta.created;
        break;
    case SORT_NEWEST:
        cursor.a = c->meta.created;
        break;
    case SORT_PRICE_ASC:
    case SORT_PRICE_DESC:
        cursor.a = c->meta.price;
        break;
    case SORT_NAME:
        memcpy(cursor.name, folded_name, folded_len);
        cursor.name_len = folded_len;
        break;
    }
    memcpy(cursor.id, c->id, c->id_len);
    cursor.id_len = c->id_len;
    if (!catalog_cursor_encode(&cursor, out)) {
        zsys_error("catalog_store: cursor for %.*s does not fit", (int)c->id_len, c->id);
        out[0] = '\0';
    }
}

/* Sets s->after from the cursor text; CATALOG_CONFLICT when it is not
 * one of ours for this query. */
static catalog_status_t s_cursor_decode(s_search_t *s, const char *text, uint32_t hash)
{
    catalog_cursor_t c;
    if (!catalog_cursor_decode(text, &c) || c.sort != (uint8_t)s->q->sort || c.hash != hash)
        return CATALOG_CONFLICT;
    memcpy(s->after_name, c.name, c.name_len + 1);
    memcpy(s->after_id, c.id, c.id_len + 1);
    s->after = (s_cand_t){
        .id = s->after_id, .id_len = c.id_len, .name = s->after_name, .name_len = c.name_len};
    /* Its key as the index values have it: the (lower-cased) name cut on
     * a character boundary. */
    char key[CATALOG_NAME_KEY_MAX];
    s->after.meta.name_key = s->after_name;
    s->after.meta.name_key_len = catalog_lower(s->after_name, key, CATALOG_NAME_KEY_MAX);
    switch (s->q->sort) {
    case SORT_RELEVANCE:
        if (c.a < 0 || c.a > INT32_MAX)
            return CATALOG_CONFLICT;
        s->after.score = (int)c.a, s->after.meta.created = c.b;
        break;
    case SORT_NEWEST:
        s->after.meta.created = c.a;
        break;
    case SORT_PRICE_ASC:
    case SORT_PRICE_DESC:
        s->after.meta.price = c.a;
        break;
    case SORT_NAME:
        break;
    }
    s->has_cursor = true;
    return CATALOG_OK;
}

/* ---- the call ---- */

catalog_status_t catalog_search(catalog_store_t *self, const catalog_query_t *q,
                                catalog_page_t *page)
{
    if (!self || !q || !page || !page->items || q->limit < 1 || q->limit > CATALOG_PAGE_MAX ||
        q->sort < SORT_RELEVANCE || q->sort > SORT_NAME)
        return CATALOG_ERROR;
    page->count = 0;
    page->next_cursor[0] = '\0';
    s_search_t *s = calloc(1, sizeof *s);
    if (!s)
        return CATALOG_ERROR;
    s->store = self;
    s->q = q;
    s->k = q->limit + 1;
    s_qwords_t qw = {.n = 0};
    if (q->q)
        catalog_words(q->q, s_qword_add, &qw);
    uint32_t hash = s_query_hash(q, &qw);
    catalog_status_t status = CATALOG_OK;
    bool reading = false;
    if (q->cursor && q->cursor[0]) {
        status = s_cursor_decode(s, q->cursor, hash);
        if (status != CATALOG_OK)
            goto cleanup;
    }
    s->txn = store_reader_begin(&self->reader);
    if (!s->txn) {
        status = CATALOG_ERROR;
        goto cleanup;
    }
    reading = true;
    if (q->category_id) {
        status = s_subtree(s, q->category_id);
        if (status != CATALOG_OK || s->n_cats == 0)
            goto cleanup; /* an unknown category has no products */
        s->by_cat_words = qw.n > 0;
    }
    status = qw.n > 0 ? s_source_words(s, &qw) : s_source_indexes(s);
    if (status == CATALOG_OK && s->failed)
        status = CATALOG_ERROR;
    if (status != CATALOG_OK)
        goto cleanup;
    int count = s->n_top < q->limit ? s->n_top : q->limit;
    for (int i = 0; i < count; i++) {
        status = catalog_product_read(self->dbi, s->txn, s->top[i].id, s->top[i].id_len,
                                      &page->items[i]);
        if (status == CATALOG_NOT_FOUND) {
            zsys_error("catalog_store: index names missing product %.*s", (int)s->top[i].id_len,
                       s->top[i].id);
            status = CATALOG_ERROR;
        }
        if (status != CATALOG_OK)
            goto cleanup;
    }
    page->count = count;
    if (s->n_top > q->limit) {
        char name[CATALOG_NAME_MAX];
        size_t name_len = catalog_lower(page->items[q->limit - 1].name, name, CATALOG_NAME_MAX);
        s_cursor_encode(q, hash, &s->top[q->limit - 1], name, name_len, page->next_cursor);
    }
cleanup:
    if (status != CATALOG_OK)
        page->count = 0;
    if (reading)
        store_reader_end(&self->reader);
    if (self->scratch_cap > S_SCRATCH_KEEP) {
        /* A rare huge search does not pin its memory. */
        free(self->scratch);
        self->scratch = NULL;
        self->scratch_cap = 0;
    }
    free(s->cats);
    free(s);
    return status;
}

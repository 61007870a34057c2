/*  catalog_store.c - the catalog store's handle, its records and the
 *  products with their indexes (catalog_store.h), every index kept in the
 *  write transaction of the record. Categories are in
 *  catalog_categories.c, reservations in catalog_inventory.c, search in
 *  catalog_search.c (its cursors in catalog_cursor.c), the word normaliser in
 *  catalog_words.c.
 *
 *  Records are msgpack maps with str keys, read and written by the record
 *  codec (storage/record.h) through a table of their fields
 *  (s_product_fields here); it skips keys it does not know, so a field is
 *  added later without rewriting old records.
 *    product:  "sku", "name", "description", "currency", "category_id":
 *              str; "price_cents", "stock", "version", "created_at",
 *              "updated_at": int; "reserved": int (added later, so
 *              optional: a record without it reads 0 and
 *              catalog_store_upgrade counts it once); "attributes": bin holding the caller's
 *              msgpack map bytes verbatim (a bin rather than the map
 *              itself: re-encoding a decoded map could change its bytes,
 *              e.g. an int's width, and attributes must round-trip
 *              exactly). The id is the key.
 *    category: see catalog_categories.c.
 *
 *  Index maintenance (catalog_store_impl.h lists the keys and values):
 *  a product's entries in by_category, by_created, by_price, by_name,
 *  words and cat_words all derive from its record, so a write that
 *  changes the record first deletes the entries of the stored version and
 *  then puts those of the new one (s_index). Stock is in no index, so
 *  stock changes touch the record only. by_sku and by_slug are unique: their
 *  puts use MDB_NOOVERWRITE and MDB_KEYEXIST is the "taken" answer; LMDB
 *  runs one writer at a time, so of two racing creates exactly one wins.
 *
 *  Reads use the handle's read transaction, reset between calls and
 *  renewed at the start of the next (store_reader_t, storage/reader.h).
 *  Reads that decide a write (the stored version, the category named)
 *  happen inside the write transaction. An update is a patch (a field
 *  mask and values) applied to the record that transaction reads, never a
 *  whole record read earlier: written back, that would undo what
 *  committed in between (a reservation's stock, another patch).
 *
 *  Writes: each public write checks its arguments, then hands a function
 *  of the transaction (s_*_txn) to catalog_write, which runs it through
 *  kv_write: on the environment's committer thread, inside a batch of
 *  concurrent writes committed together. Such a function therefore
 *  touches only the transaction and the caller's buffers it was given,
 *  and returns a status; anything but CATALOG_OK undoes it alone. The
 *  stock writes (catalog_inventory.c) can also run without waiting.
 *
 *  Events (catalog_store.h; packed in catalog_events.c): a product write
 *  appends its event last, once the record and its indexes are in the
 *  transaction, from the product as written; every refusal returns
 *  before it, so a refused write appends nothing, and a failed append
 *  fails the write. The handle's outbox and threshold are only read by
 *  the write functions (set before the first write), like its dbi.
 *
 *  A write that finds no room (the disk or the map full, storage/kv.h)
 *  is CATALOG_NO_SPACE (catalog_fail: not logged, the environment logs
 *  running out of room once): nothing of it is stored, and it succeeds
 *  once space is freed. Deletes (of products, categories) are freeing
 *  writes (kv_write_freeing), so that they run with the map at its limit
 *  and make room (tests/unit/test_no_space.c).
 */
#include "storage/catalog/catalog_store_impl.h"
#include "protocol/clock.h"
#include "storage/ids.h"
#include "storage/record.h"

#include <czmq.h>
#include <msgpack.h>
#include <string.h>

const char *const catalog_store_names[CATALOG_STORE_DBS] = {
    "products", "by_sku",     "by_category",    "by_created",   "by_price",
    "words",    "categories", "by_slug",        "reservations", "cat_words",
    "by_name",  "meta",       OUTBOX_DB_EVENTS, OUTBOX_DB_META};
_Static_assert(CATALOG_DB_OUTBOX == CATALOG_STORE_DB_OUTBOX &&
                   CATALOG_DB_OUTBOX_META == CATALOG_STORE_DB_OUTBOX_META &&
                   CATALOG_DB_OUTBOX_META + 1 == CATALOG_STORE_DBS,
               "catalog_store.h's outbox indexes are the names'");

/* A product record's largest size: the field limits add up to about
 * 20.7 KiB, plus keys and headers. */
#define S_RECORD_MAX (CATALOG_ATTRIBUTES_MAX + CATALOG_DESCRIPTION_MAX + 1024)

/* ---- small helpers shared through catalog_store_impl.h ---- */

catalog_status_t catalog_fail(const char *what, int rc)
{
    if (kv_no_space(rc))
        return CATALOG_NO_SPACE; /* expected while full; the environment logs it */
    zsys_error("catalog_store: %s: %s", what, mdb_strerror(rc));
    return CATALOG_ERROR;
}

uint64_t catalog_bias(int64_t v)
{
    return (uint64_t)v ^ 0x8000000000000000u;
}

void catalog_be64_put(uint8_t *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

uint64_t catalog_be64_get(const uint8_t *in)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | in[i];
    return v;
}

size_t catalog_meta_encode(const product_t *p, uint8_t flags, uint8_t *out)
{
    size_t n = 0;
    out[n++] = flags;
    catalog_be64_put(out + n, catalog_bias(p->price_cents));
    n += 8;
    catalog_be64_put(out + n, catalog_bias(p->created_at_ms));
    n += 8;
    size_t cat_len = strnlen(p->category_id, CATALOG_ID_MAX);
    out[n++] = (uint8_t)cat_len;
    memcpy(out + n, p->category_id, cat_len);
    n += cat_len;
    size_t name_len = catalog_lower(p->name, (char *)out + n + 1, CATALOG_NAME_KEY_MAX);
    out[n++] = (uint8_t)name_len;
    return n + name_len;
}

bool catalog_meta_decode(const MDB_val *val, catalog_meta_t *out)
{
    const uint8_t *v = val->mv_data;
    size_t size = val->mv_size;
    if (size < 19)
        return false;
    out->flags = v[0];
    out->price = (int64_t)(catalog_be64_get(v + 1) ^ 0x8000000000000000u);
    out->created = (int64_t)(catalog_be64_get(v + 9) ^ 0x8000000000000000u);
    size_t n = 17;
    out->category_len = v[n++];
    if (n + out->category_len + 1 > size)
        return false;
    out->category = (const char *)v + n;
    n += out->category_len;
    out->name_key_len = v[n++];
    if (n + out->name_key_len != size)
        return false;
    out->name_key = (const char *)v + n;
    return true;
}

/* ---- msgpack helpers ---- */

int catalog_buf_write(void *data, const char *buf, size_t len)
{
    catalog_buf_t *b = data;
    if (len > b->cap - b->len)
        return -1;
    memcpy(b->data + b->len, buf, len);
    b->len += len;
    return 0;
}

/* Unpacks a whole value that must be one msgpack map; false otherwise. */
static bool s_unpack_map(msgpack_unpacked *msg, const void *data, size_t size)
{
    size_t offset = 0;
    return msgpack_unpack_next(msg, data, size, &offset) == MSGPACK_UNPACK_SUCCESS &&
           offset == size && msg->data.type == MSGPACK_OBJECT_MAP;
}

/* ---- product records ---- */

/* The record's fields (storage/record.h); the id is the LMDB key. */
static const record_field_t s_product_fields[] = {
    RECORD_STR_FIELD(product_t, sku, "sku", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, name, "name", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, description, "description", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, price_cents, "price_cents", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, currency, "currency", RECORD_REQUIRED),
    RECORD_STR_FIELD(product_t, category_id, "category_id", RECORD_REQUIRED),
    RECORD_BIN_FIELD(product_t, attributes, attributes_len, "attributes", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, stock, "stock", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, reserved, "reserved", 0), /* added later: absent is 0 */
    RECORD_INT64_FIELD(product_t, version, "version", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, created_at_ms, "created_at", RECORD_REQUIRED),
    RECORD_INT64_FIELD(product_t, updated_at_ms, "updated_at", RECORD_REQUIRED),
};
static const record_table_t s_product_table = RECORD_TABLE(s_product_fields);

/* Search reads a field or two of many records that it may never show:
 * tables of just those fields decode them without copying the rest (the
 * codec skips keys a table does not name). */
typedef struct {
    int64_t stock, reserved;
    record_view_t name, description;
} s_product_part_t;

static const record_field_t s_reserved_fields[] = {
    RECORD_INT64_FIELD(s_product_part_t, reserved, "reserved", 0),
};
static const record_table_t s_reserved_table = RECORD_TABLE(s_reserved_fields);

static const record_field_t s_stock_fields[] = {
    RECORD_INT64_FIELD(s_product_part_t, stock, "stock", RECORD_REQUIRED),
};
static const record_table_t s_stock_table = RECORD_TABLE(s_stock_fields);

static const record_field_t s_text_fields[] = {
    RECORD_STR_VIEW_FIELD(s_product_part_t, name, "name", CATALOG_NAME_MAX, RECORD_REQUIRED),
    RECORD_STR_VIEW_FIELD(s_product_part_t, description, "description", CATALOG_DESCRIPTION_MAX,
                          RECORD_REQUIRED),
};
static const record_table_t s_text_table = RECORD_TABLE(s_text_fields);
/* Only the name: the first field of s_text_fields. */
static const record_table_t s_name_table = {.fields = s_text_fields, .count = 1};

int catalog_record_stock(const MDB_val *record, int64_t *stock)
{
    s_product_part_t part;
    if (record_decode(&s_stock_table, record->mv_data, record->mv_size, &part) != RECORD_OK)
        return -1;
    *stock = part.stock;
    return 0;
}

int catalog_record_reserved(const MDB_val *record, int64_t *reserved)
{
    s_product_part_t part = {.reserved = 0};
    if (record_decode(&s_reserved_table, record->mv_data, record->mv_size, &part) != RECORD_OK)
        return -1;
    *reserved = part.reserved;
    return 0;
}

int catalog_record_name(const MDB_val *record, const char **name, size_t *len)
{
    s_product_part_t part;
    if (record_decode(&s_name_table, record->mv_data, record->mv_size, &part) != RECORD_OK)
        return -1;
    *name = (const char *)part.name.ptr;
    *len = part.name.len;
    return 0;
}

int catalog_record_texts(const MDB_val *record, const char **name, size_t *name_len,
                         const char **description, size_t *description_len)
{
    s_product_part_t part;
    if (record_decode(&s_text_table, record->mv_data, record->mv_size, &part) != RECORD_OK)
        return -1;
    *name = (const char *)part.name.ptr;
    *name_len = part.name.len;
    *description = (const char *)part.description.ptr;
    *description_len = part.description.len;
    return 0;
}

catalog_status_t catalog_product_read(const MDB_dbi *dbi, MDB_txn *txn, const char *id,
                                      size_t id_len, product_t *out)
{
    if (id_len == 0 || id_len > CATALOG_ID_MAX)
        return CATALOG_NOT_FOUND;
    MDB_val key = {.mv_size = id_len, .mv_data = (void *)id}, val;
    int rc = mdb_get(txn, dbi[CATALOG_DB_PRODUCTS], &key, &val);
    if (rc == MDB_NOTFOUND)
        return CATALOG_NOT_FOUND;
    if (rc != 0)
        return catalog_fail("mdb_get products", rc);
    memset(out, 0, offsetof(product_t, attributes));
    out->attributes_len = 0;
    out->reserved = 0; /* a record from before the counter has none */
    memcpy(out->id, id, id_len);
    out->id[id_len] = '\0';
    record_status_t decoded = record_decode(&s_product_table, val.mv_data, val.mv_size, out);
    if (decoded != RECORD_OK) {
        zsys_error("catalog_store: malformed product record %.*s: %s", (int)id_len, id,
                   record_strerror(decoded));
        return CATALOG_ERROR;
    }
    return CATALOG_OK;
}

catalog_status_t catalog_product_write(const MDB_dbi *dbi, MDB_txn *txn, const product_t *p)
{
    mpout_t out;
    mpout_init(&out, S_RECORD_MAX);
    catalog_status_t status = CATALOG_OK;
    if (record_pack(&s_product_table, p, &out) != 0) {
        zsys_error("catalog_store: product %s does not encode", p->id);
        status = CATALOG_ERROR;
    } else {
        MDB_val key = {.mv_size = strlen(p->id), .mv_data = (void *)p->id};
        MDB_val val = {.mv_size = out.buf.size, .mv_data = out.buf.data};
        int rc = mdb_put(txn, dbi[CATALOG_DB_PRODUCTS], &key, &val, 0);
        if (rc != 0)
            status = catalog_fail("mdb_put products", rc);
    }
    mpout_destroy(&out);
    return status;
}

MDB_val catalog_val(const char *s)
{
    return (MDB_val){.mv_size = strlen(s), .mv_data = (void *)s};
}

/* ---- handle ---- */

catalog_store_t *catalog_store_open(kv_t *env, int first_dbi_index)
{
    if (!env || first_dbi_index < 0)
        return NULL;
    catalog_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->kv = env;
    for (int i = 0; i < CATALOG_STORE_DBS; i++)
        self->dbi[i] = kv_dbi(env, first_dbi_index + i);
    if (!store_reader_open(&self->reader, env, "catalog_store")) {
        free(self);
        return NULL;
    }
    return self;
}

void catalog_store_set_outbox(catalog_store_t *self, outbox_t *outbox, int stock_low)
{
    self->outbox = outbox;
    self->stock_low = stock_low;
}

void catalog_store_close(catalog_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    catalog_store_t *self = *self_p;
    store_reader_close(&self->reader);
    free(self->scratch);
    free(self);
    *self_p = NULL;
}

static catalog_status_t s_index(catalog_store_t *self, MDB_txn *txn, const product_t *p, bool put);

/* Whether an index added after the environment was made is missing: an
 * empty by_name while there are products, or an empty cat_words while a
 * product has a category (by_category's last key starts with one: keys
 * of products without one start with \0). -1 on failure. */
static int s_upgrade_needed(MDB_env *mdb, kv_t *env, int first, size_t *products_out)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    MDB_stat names, cat_words, all;
    int needed = -1;
    int rc = mdb_txn_begin(mdb, NULL, MDB_RDONLY, &txn);
    if (rc == 0)
        rc = mdb_stat(txn, kv_dbi(env, first + CATALOG_DB_BY_NAME), &names);
    if (rc == 0)
        rc = mdb_stat(txn, kv_dbi(env, first + CATALOG_DB_CAT_WORDS), &cat_words);
    if (rc == 0)
        rc = mdb_stat(txn, kv_dbi(env, first + CATALOG_DB_PRODUCTS), &all);
    if (rc == 0)
        rc = mdb_cursor_open(txn, kv_dbi(env, first + CATALOG_DB_BY_CATEGORY), &cursor);
    MDB_val key, val;
    bool with_category = false;
    if (rc == 0) {
        rc = mdb_cursor_get(cursor, &key, &val, MDB_LAST);
        with_category = rc == 0 && key.mv_size > 0 && ((const char *)key.mv_data)[0] != '\0';
        if (rc == MDB_NOTFOUND)
            rc = 0;
    }
    if (rc == 0) {
        *products_out = all.ms_entries;
        needed = (names.ms_entries == 0 && all.ms_entries > 0) ||
                 (cat_words.ms_entries == 0 && with_category);
    } else
        catalog_fail("upgrade: reading the indexes", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    if (txn)
        mdb_txn_abort(txn);
    return needed;
}

/* Every product's derived entries put again (the puts of entries that
 * exist change nothing), CATALOG_UPGRADE_BATCH products to a transaction;
 * each batch resumes after the last id of the one before. */
static catalog_status_t s_upgrade_indexes(kv_t *env, int first_dbi_index)
{
    MDB_env *mdb = kv_mdb(env);
    MDB_dbi products = kv_dbi(env, first_dbi_index + CATALOG_DB_PRODUCTS);
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    size_t count = 0;
    int needed = s_upgrade_needed(mdb, env, first_dbi_index, &count);
    if (needed <= 0)
        return needed == 0 ? CATALOG_OK : CATALOG_ERROR;
    zsys_info("catalog_store: indexing %zu products again (indexes added since)", count);
    int rc;
    catalog_store_t *self = catalog_store_open(env, first_dbi_index);
    product_t *p = malloc(sizeof *p);
    char after[CATALOG_ID_MAX + 1] = "";
    catalog_status_t status = CATALOG_ERROR;
    if (!self || !p)
        goto cleanup;
    for (bool more = true; more;) {
        rc = mdb_txn_begin(mdb, NULL, 0, &txn);
        if (rc == 0)
            rc = mdb_cursor_open(txn, products, &cursor);
        if (rc != 0)
            goto lmdb_failed;
        MDB_val key = catalog_val(after), val;
        rc = mdb_cursor_get(cursor, &key, &val, after[0] ? MDB_SET_RANGE : MDB_FIRST);
        if (rc == 0 && after[0] && key.mv_size == strlen(after) &&
            memcmp(key.mv_data, after, key.mv_size) == 0)
            rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
        for (int n = 0; rc == 0 && n < CATALOG_UPGRADE_BATCH; n++) {
            if (key.mv_size == 0 || key.mv_size > CATALOG_ID_MAX)
                goto cleanup;
            memcpy(after, key.mv_data, key.mv_size);
            after[key.mv_size] = '\0';
            status = catalog_product_read(self->dbi, txn, after, key.mv_size, p);
            if (status == CATALOG_OK)
                status = s_index(self, txn, p, true);
            if (status != CATALOG_OK)
                goto cleanup;
            status = CATALOG_ERROR;
            rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
        }
        more = rc == 0;
        if (rc != 0 && rc != MDB_NOTFOUND)
            goto lmdb_failed;
        mdb_cursor_close(cursor);
        cursor = NULL;
        rc = mdb_txn_commit(txn);
        txn = NULL;
        if (rc != 0)
            goto lmdb_failed;
    }
    status = CATALOG_OK;
    goto cleanup;
lmdb_failed:
    status = catalog_fail("upgrade", rc);
cleanup:
    if (cursor)
        mdb_cursor_close(cursor);
    if (txn)
        mdb_txn_abort(txn);
    free(p);
    catalog_store_close(&self);
    return status;
}

/* The reserved counters, once: when meta lacks CATALOG_META_RESERVED,
 * every product's reserved is set from the live reservations and the mark
 * written, in one transaction (so a crash leaves it to be done again,
 * never half done). */
static catalog_status_t s_upgrade_reserved(kv_t *env, int first_dbi_index)
{
    MDB_txn *txn = NULL;
    catalog_store_t *self = NULL;
    catalog_status_t status = CATALOG_ERROR;
    MDB_val key = catalog_val(CATALOG_META_RESERVED), val;
    int rc = mdb_txn_begin(kv_mdb(env), NULL, 0, &txn);
    if (rc != 0)
        return catalog_fail("upgrade: begin", rc);
    MDB_dbi meta = kv_dbi(env, first_dbi_index + CATALOG_DB_META);
    rc = mdb_get(txn, meta, &key, &val);
    if (rc == 0) {
        status = CATALOG_OK; /* done before */
        goto cleanup;
    }
    if (rc != MDB_NOTFOUND) {
        status = catalog_fail("upgrade: mdb_get meta", rc);
        goto cleanup;
    }
    self = catalog_store_open(env, first_dbi_index);
    if (!self)
        goto cleanup;
    long fixed = 0;
    status = catalog_reserved_recount(self, txn, &fixed);
    if (status != CATALOG_OK)
        goto cleanup;
    val = catalog_val("1");
    rc = mdb_put(txn, meta, &key, &val, 0);
    if (rc == 0) {
        rc = mdb_txn_commit(txn);
        txn = NULL;
    }
    if (rc != 0) {
        status = catalog_fail("upgrade: reserved counters", rc);
        goto cleanup;
    }
    if (fixed > 0)
        zsys_info("catalog_store: reserved counted again for %ld products", fixed);
cleanup:
    if (txn)
        mdb_txn_abort(txn);
    catalog_store_close(&self);
    return status;
}

catalog_status_t catalog_store_upgrade(kv_t *env, int first_dbi_index)
{
    if (!env || first_dbi_index < 0)
        return CATALOG_ERROR;
    catalog_status_t status = s_upgrade_indexes(env, first_dbi_index);
    return status == CATALOG_OK ? s_upgrade_reserved(env, first_dbi_index) : status;
}

catalog_status_t catalog_write(catalog_store_t *self, kv_write_fn *fn, void *arg)
{
    int result = CATALOG_ERROR;
    int rc = kv_write(self->kv, fn, arg, &result);
    return rc == 0 ? (catalog_status_t)result : catalog_fail("write transaction", rc);
}

catalog_status_t catalog_write_freeing(catalog_store_t *self, kv_write_fn *fn, void *arg)
{
    int result = CATALOG_ERROR;
    int rc = kv_write_freeing(self->kv, fn, arg, &result);
    return rc == 0 ? (catalog_status_t)result : catalog_fail("write transaction", rc);
}

kv_t *catalog_store_kv(catalog_store_t *self)
{
    return self->kv;
}

bool catalog_fits(const char *s, size_t cap)
{
    return memchr(s, '\0', cap + 1) != NULL;
}

/* ---- product indexes ---- */

typedef struct {
    char word[CATALOG_WORD_MAX];
    uint8_t len;
    uint8_t flags;
} s_word_t;

typedef struct {
    s_word_t *words;
    size_t count, cap;
    uint8_t flags; /* of the text being split */
    bool failed;
} s_word_set_t;

static void s_word_add(const char *word, size_t len, void *arg)
{
    s_word_set_t *set = arg;
    if (set->failed)
        return;
    if (set->count == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 64;
        s_word_t *words = realloc(set->words, cap * sizeof *words);
        if (!words) {
            set->failed = true;
            return;
        }
        set->words = words;
        set->cap = cap;
    }
    s_word_t *w = &set->words[set->count++];
    memcpy(w->word, word, len);
    w->len = (uint8_t)len;
    w->flags = set->flags;
}

static int s_word_cmp(const void *a, const void *b)
{
    const s_word_t *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->word, y->word, n);
    return c ? c : (int)x->len - (int)y->len;
}

/* The distinct words of p's name and description with their flags
 * merged; free set->words. -1 when out of memory. */
static int s_product_words(const product_t *p, s_word_set_t *set)
{
    memset(set, 0, sizeof *set);
    set->flags = CATALOG_IN_NAME;
    catalog_words(p->name, s_word_add, set);
    set->flags = CATALOG_IN_DESCRIPTION;
    catalog_words(p->description, s_word_add, set);
    if (set->failed) {
        free(set->words);
        set->words = NULL;
        return -1;
    }
    if (set->count == 0)
        return 0;
    qsort(set->words, set->count, sizeof *set->words, s_word_cmp);
    size_t n = 0;
    for (size_t i = 0; i < set->count; i++) {
        if (n > 0 && s_word_cmp(&set->words[n - 1], &set->words[i]) == 0)
            set->words[n - 1].flags |= set->words[i].flags;
        else
            set->words[n++] = set->words[i];
    }
    set->count = n;
    return 0;
}

/* Puts (put true) or deletes p's posting of one word in words and, when
 * p has a category, in cat_words; meta[0] holds the word's flags. */
static catalog_status_t s_index_word(catalog_store_t *self, MDB_txn *txn, const product_t *p,
                                     const s_word_t *w, const uint8_t *meta, size_t meta_len,
                                     bool put)
{
    uint8_t key[CATALOG_ID_MAX + 1 + CATALOG_WORD_MAX + 1 + CATALOG_ID_MAX];
    size_t id_len = strlen(p->id), cat_len = strlen(p->category_id);
    MDB_val v = {.mv_size = meta_len, .mv_data = (void *)meta};
    /* words: word \0 id, then cat_words: category \0 word \0 id. */
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 1 && cat_len == 0)
            break;
        size_t n = 0;
        if (pass == 1) {
            memcpy(key, p->category_id, cat_len);
            key[cat_len] = 0;
            n = cat_len + 1;
        }
        memcpy(key + n, w->word, w->len);
        n += w->len;
        key[n++] = 0;
        memcpy(key + n, p->id, id_len);
        n += id_len;
        MDB_val k = {.mv_size = n, .mv_data = key};
        int db = pass == 0 ? CATALOG_DB_WORDS : CATALOG_DB_CAT_WORDS;
        int rc =
            put ? mdb_put(txn, self->dbi[db], &k, &v, 0) : mdb_del(txn, self->dbi[db], &k, NULL);
        if (rc == MDB_NOTFOUND && !put)
            zsys_warning("catalog_store: %s: no entry %.*s for %s", catalog_store_names[db],
                         (int)w->len, w->word, p->id);
        else if (rc != 0)
            return catalog_fail(put ? "mdb_put words" : "mdb_del words", rc);
    }
    return CATALOG_OK;
}

size_t catalog_index_key(const product_t *p, int db, uint8_t *key)
{
    size_t id_len = strlen(p->id), cat_len = strlen(p->category_id), n = 0;
    switch (db) {
    case CATALOG_DB_BY_CATEGORY:
        memcpy(key, p->category_id, cat_len);
        key[cat_len] = 0;
        n = cat_len + 1;
        catalog_be64_put(key + n, catalog_bias(p->created_at_ms));
        n += 8;
        break;
    case CATALOG_DB_BY_CREATED:
        catalog_be64_put(key, catalog_bias(p->created_at_ms));
        n = 8;
        break;
    case CATALOG_DB_BY_PRICE:
        catalog_be64_put(key, catalog_bias(p->price_cents));
        n = 8;
        break;
    case CATALOG_DB_BY_NAME:
        n = catalog_lower(p->name, (char *)key, CATALOG_NAME_MAX);
        key[n++] = 0;
        break;
    default:
        return 0;
    }
    memcpy(key + n, p->id, id_len);
    return n + id_len;
}

/* Puts (put true) or deletes p's entries in the six derived indexes. A
 * delete of a missing entry is logged and passed over, so a store whose
 * index was damaged can still delete or fix the product. */
static catalog_status_t s_index(catalog_store_t *self, MDB_txn *txn, const product_t *p, bool put)
{
    uint8_t meta[CATALOG_META_MAX];
    size_t meta_len = catalog_meta_encode(p, 0, meta);
    struct {
        int db;
        size_t len;
    } plain[4];
    catalog_status_t status = CATALOG_OK;
    s_word_set_t set = {0};

    /* by_category, by_created, by_price, by_name: one key each. */
    uint8_t keys[4][CATALOG_INDEX_KEY_MAX];
    static const int dbs[4] = {CATALOG_DB_BY_CATEGORY, CATALOG_DB_BY_CREATED, CATALOG_DB_BY_PRICE,
                               CATALOG_DB_BY_NAME};
    for (int i = 0; i < 4; i++) {
        plain[i].db = dbs[i];
        plain[i].len = catalog_index_key(p, dbs[i], keys[i]);
    }
    for (int i = 0; i < 4; i++) {
        MDB_val k = {.mv_size = plain[i].len, .mv_data = keys[i]};
        MDB_val v = {.mv_size = meta_len, .mv_data = meta};
        int rc = put ? mdb_put(txn, self->dbi[plain[i].db], &k, &v, 0)
                     : mdb_del(txn, self->dbi[plain[i].db], &k, NULL);
        if (rc == MDB_NOTFOUND && !put)
            zsys_warning("catalog_store: %s: no entry for %s", catalog_store_names[plain[i].db],
                         p->id);
        else if (rc != 0) {
            status = catalog_fail(put ? "mdb_put index" : "mdb_del index", rc);
            goto cleanup;
        }
    }
    if (s_product_words(p, &set) != 0) {
        zsys_error("catalog_store: out of memory splitting words");
        status = CATALOG_ERROR;
        goto cleanup;
    }
    for (size_t i = 0; i < set.count && status == CATALOG_OK; i++) {
        meta[0] = set.words[i].flags;
        status = s_index_word(self, txn, p, &set.words[i], meta, meta_len, put);
    }
cleanup:
    free(set.words);
    return status;
}

/* ---- products ---- */

/* Whether the fields of p named in `fields` (CATALOG_PRODUCT_*) are
 * well-formed. */
static bool s_fields_valid(const product_t *p, unsigned fields)
{
    if (((fields & CATALOG_PRODUCT_SKU) &&
         (!catalog_fits(p->sku, CATALOG_SKU_MAX) || !p->sku[0])) ||
        ((fields & CATALOG_PRODUCT_NAME) &&
         (!catalog_fits(p->name, CATALOG_NAME_MAX) || !p->name[0])) ||
        ((fields & CATALOG_PRODUCT_DESCRIPTION) &&
         !catalog_fits(p->description, CATALOG_DESCRIPTION_MAX)) ||
        ((fields & CATALOG_PRODUCT_CATEGORY) && !catalog_fits(p->category_id, CATALOG_ID_MAX)) ||
        ((fields & CATALOG_PRODUCT_CURRENCY) && strnlen(p->currency, sizeof p->currency) != 3) ||
        ((fields & CATALOG_PRODUCT_STOCK) && p->stock < 0))
        return false;
    if (!(fields & CATALOG_PRODUCT_ATTRIBUTES))
        return true;
    if (p->attributes_len > CATALOG_ATTRIBUTES_MAX)
        return false;
    if (p->attributes_len > 0) {
        /* One msgpack map and nothing else: it is handed back verbatim. */
        msgpack_unpacked msg;
        msgpack_unpacked_init(&msg);
        bool ok = s_unpack_map(&msg, p->attributes, p->attributes_len);
        msgpack_unpacked_destroy(&msg);
        if (!ok)
            return false;
    }
    return true;
}

static bool s_product_valid(const product_t *p)
{
    return s_fields_valid(p, CATALOG_PRODUCT_FIELDS) && p->stock >= 0;
}

/* NO_CATEGORY unless id is "" or an existing category. */
static catalog_status_t s_category_exists(catalog_store_t *self, MDB_txn *txn, const char *id)
{
    if (!id[0])
        return CATALOG_OK;
    category_t c;
    catalog_status_t status = catalog_category_read(self, txn, id, &c);
    return status == CATALOG_NOT_FOUND ? CATALOG_NO_CATEGORY : status;
}

typedef struct {
    catalog_store_t *self;
    product_t *p;             /* create */
    const char *id;           /* update, delete */
    unsigned fields;          /* update: which fields of values */
    const product_t *values;  /* update */
    int64_t expected_version; /* update */
    product_t *stored;        /* update, delete: the stored version */
    product_t *out;           /* update: the version written */
} s_write_t;

static int s_create_txn(MDB_txn *txn, void *arg)
{
    const s_write_t *w = arg;
    catalog_store_t *self = w->self;
    product_t *p = w->p;
    catalog_status_t status = s_category_exists(self, txn, p->category_id);
    if (status != CATALOG_OK)
        return status;
    MDB_val sku = catalog_val(p->sku), id = catalog_val(p->id);
    int rc = mdb_put(txn, self->dbi[CATALOG_DB_BY_SKU], &sku, &id, MDB_NOOVERWRITE);
    if (rc != 0)
        return rc == MDB_KEYEXIST ? CATALOG_SKU_TAKEN : catalog_fail("mdb_put by_sku", rc);
    status = catalog_product_write(self->dbi, txn, p);
    if (status == CATALOG_OK)
        status = s_index(self, txn, p, true);
    /* a product new with little stock crossed nothing: product.created
     * shows its stock */
    return status == CATALOG_OK ? catalog_event_product(self->outbox, txn, "product.created", p)
                                : status;
}

catalog_status_t catalog_product_create(catalog_store_t *self, product_t *p)
{
    if (!self || !p || !s_product_valid(p))
        return CATALOG_ERROR;
    store_new_id('p', p->id);
    p->version = 1;
    p->reserved = 0;
    /* created_at is the id's own time, so that id order is creation order
     * exactly (catalog_search's newest-first walks of postings rely on
     * it); the id holds it as 12 hex digits after the prefix. */
    char ms[13];
    memcpy(ms, p->id + 1, 12);
    ms[12] = '\0';
    p->created_at_ms = p->updated_at_ms = (int64_t)strtoll(ms, NULL, 16);
    return catalog_write(self, s_create_txn, &(s_write_t){.self = self, .p = p});
}

catalog_status_t catalog_product_get(catalog_store_t *self, const char *id, product_t *out)
{
    if (!self || !id || !out)
        return CATALOG_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return CATALOG_ERROR;
    catalog_status_t status = catalog_product_read(self->dbi, txn, id, strlen(id), out);
    store_reader_end(&self->reader);
    return status;
}

/* Looks up the id of a sku into out; for the service and tests. */
catalog_status_t catalog_product_by_sku(catalog_store_t *self, const char *sku,
                                        char out[CATALOG_ID_MAX + 1])
{
    if (!self || !sku || !out)
        return CATALOG_ERROR;
    size_t len = strlen(sku);
    if (len == 0 || len > CATALOG_SKU_MAX)
        return CATALOG_NOT_FOUND;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return CATALOG_ERROR;
    MDB_val key = catalog_val(sku), val;
    catalog_status_t status = CATALOG_OK;
    int rc = mdb_get(txn, self->dbi[CATALOG_DB_BY_SKU], &key, &val);
    if (rc == MDB_NOTFOUND)
        status = CATALOG_NOT_FOUND;
    else if (rc != 0)
        status = catalog_fail("mdb_get by_sku", rc);
    else if (val.mv_size == 0 || val.mv_size > CATALOG_ID_MAX)
        status = CATALOG_ERROR;
    else {
        memcpy(out, val.mv_data, val.mv_size);
        out[val.mv_size] = '\0';
    }
    store_reader_end(&self->reader);
    return status;
}

/* Copies the fields named in `fields` from values into p. */
static void s_patch(product_t *p, const product_t *values, unsigned fields)
{
    if (fields & CATALOG_PRODUCT_SKU)
        memcpy(p->sku, values->sku, sizeof p->sku);
    if (fields & CATALOG_PRODUCT_NAME)
        memcpy(p->name, values->name, sizeof p->name);
    if (fields & CATALOG_PRODUCT_DESCRIPTION)
        memcpy(p->description, values->description, sizeof p->description);
    if (fields & CATALOG_PRODUCT_PRICE)
        p->price_cents = values->price_cents;
    if (fields & CATALOG_PRODUCT_CURRENCY)
        memcpy(p->currency, values->currency, sizeof p->currency);
    if (fields & CATALOG_PRODUCT_CATEGORY)
        memcpy(p->category_id, values->category_id, sizeof p->category_id);
    if (fields & CATALOG_PRODUCT_ATTRIBUTES) {
        memcpy(p->attributes, values->attributes, values->attributes_len);
        p->attributes_len = values->attributes_len;
    }
    /* the units free to reserve, as set_stock sets them: held units are
     * not in p->stock, so they are not touched */
    if (fields & CATALOG_PRODUCT_STOCK)
        p->stock = values->stock;
}

/* The patch is applied to the record as this transaction reads it, not
 * to a copy read before: whatever committed in between (a reservation
 * taking stock, another patch) is kept. */
static int s_update_txn(MDB_txn *txn, void *arg)
{
    const s_write_t *w = arg;
    catalog_store_t *self = w->self;
    product_t *stored = w->stored, *next = w->out;
    catalog_status_t status = catalog_product_read(self->dbi, txn, w->id, strlen(w->id), stored);
    if (status != CATALOG_OK)
        return status;
    if (w->expected_version > 0 && w->expected_version != stored->version)
        return CATALOG_VERSION_MISMATCH;
    memcpy(next, stored, sizeof *next);
    s_patch(next, w->values, w->fields);
    if (strcmp(stored->category_id, next->category_id) != 0) {
        status = s_category_exists(self, txn, next->category_id);
        if (status != CATALOG_OK)
            return status;
    }
    if (strcmp(stored->sku, next->sku) != 0) {
        MDB_val old_sku = catalog_val(stored->sku), sku = catalog_val(next->sku),
                id = catalog_val(next->id);
        int rc = mdb_put(txn, self->dbi[CATALOG_DB_BY_SKU], &sku, &id, MDB_NOOVERWRITE);
        if (rc == 0)
            rc = mdb_del(txn, self->dbi[CATALOG_DB_BY_SKU], &old_sku, NULL);
        if (rc != 0)
            return rc == MDB_KEYEXIST ? CATALOG_SKU_TAKEN : catalog_fail("by_sku", rc);
    }
    next->version = stored->version + 1;
    next->updated_at_ms = clock_now_ms();
    /* Every derived entry holds meta of the whole product (price, name,
     * category), so all are rewritten rather than diffed. */
    status = s_index(self, txn, stored, false);
    if (status == CATALOG_OK)
        status = catalog_product_write(self->dbi, txn, next);
    if (status == CATALOG_OK)
        status = s_index(self, txn, next, true);
    if (status == CATALOG_OK)
        status = catalog_event_product(self->outbox, txn, "product.updated", next);
    /* a patch may lower the stock or raise the threshold (attributes) */
    if (status == CATALOG_OK && self->outbox)
        status = catalog_event_stock(self->outbox, txn, stored->stock,
                                     catalog_stock_threshold(stored, self->stock_low), next,
                                     catalog_stock_threshold(next, self->stock_low));
    return status;
}

catalog_status_t catalog_product_update(catalog_store_t *self, const char *id, unsigned fields,
                                        const product_t *values, int64_t expected_version,
                                        product_t *out)
{
    if (!self || !id || !values || !out || out == values || (fields & ~CATALOG_PRODUCT_FIELDS) ||
        !s_fields_valid(values, fields) || expected_version < 0)
        return CATALOG_ERROR;
    size_t id_len = strnlen(id, CATALOG_ID_MAX + 1);
    if (id_len == 0 || id_len > CATALOG_ID_MAX)
        return CATALOG_NOT_FOUND; /* no product has such an id */
    product_t *stored = malloc(sizeof *stored);
    if (!stored)
        return CATALOG_ERROR;
    catalog_status_t status = catalog_write(self, s_update_txn,
                                            &(s_write_t){.self = self,
                                                         .id = id,
                                                         .fields = fields,
                                                         .values = values,
                                                         .expected_version = expected_version,
                                                         .stored = stored,
                                                         .out = out});
    free(stored);
    return status;
}

static int s_delete_txn(MDB_txn *txn, void *arg)
{
    const s_write_t *w = arg;
    catalog_store_t *self = w->self;
    product_t *stored = w->stored;
    catalog_status_t status = catalog_product_read(self->dbi, txn, w->id, strlen(w->id), stored);
    if (status == CATALOG_OK)
        status = s_index(self, txn, stored, false);
    if (status != CATALOG_OK)
        return status;
    MDB_val key = catalog_val(w->id), sku = catalog_val(stored->sku);
    int rc = mdb_del(txn, self->dbi[CATALOG_DB_PRODUCTS], &key, NULL);
    if (rc == 0)
        rc = mdb_del(txn, self->dbi[CATALOG_DB_BY_SKU], &sku, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return catalog_fail("mdb_del product", rc);
    return catalog_event_deleted(self->outbox, txn, stored);
}

catalog_status_t catalog_product_delete(catalog_store_t *self, const char *id)
{
    if (!self || !id || !catalog_fits(id, CATALOG_ID_MAX))
        return CATALOG_ERROR;
    product_t *stored = malloc(sizeof *stored);
    if (!stored)
        return CATALOG_ERROR;
    catalog_status_t status = catalog_write_freeing(
        self, s_delete_txn, &(s_write_t){.self = self, .id = id, .stored = stored});
    free(stored);
    return status;
}

typedef struct {
    catalog_store_t *self;
    const char *id;
    int64_t stock;
    product_t *out;
} s_stock_t;

static int s_set_stock_txn(MDB_txn *txn, void *arg)
{
    const s_stock_t *w = arg;
    product_t *out = w->out;
    catalog_store_t *self = w->self;
    catalog_status_t status = catalog_product_read(self->dbi, txn, w->id, strlen(w->id), out);
    if (status != CATALOG_OK)
        return status;
    int64_t before = out->stock;
    out->stock = w->stock;
    out->version++;
    out->updated_at_ms = clock_now_ms();
    /* Stock is in no index: the record is all that changes. It is a
     * field the product shows, so the write is a product.updated. */
    status = catalog_product_write(self->dbi, txn, out);
    if (status == CATALOG_OK)
        status = catalog_event_product(self->outbox, txn, "product.updated", out);
    if (status == CATALOG_OK && self->outbox) {
        int64_t threshold = catalog_stock_threshold(out, self->stock_low);
        status = catalog_event_stock(self->outbox, txn, before, threshold, out, threshold);
    }
    return status;
}

catalog_status_t catalog_product_set_stock(catalog_store_t *self, const char *id, int64_t stock,
                                           product_t *out)
{
    if (!self || !id || !out || stock < 0)
        return CATALOG_ERROR;
    return catalog_write(self, s_set_stock_txn, &(s_stock_t){self, id, stock, out});
}

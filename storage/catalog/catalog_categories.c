/*  catalog_categories.c - the category tree of the catalog
 *  (catalog_store.h): create, get, update, delete, and a list paged in
 *  id order (ids are in creation order; a page starts after the id that
 *  ended the one before, so one created meanwhile is never seen twice).
 *
 *  "categories" maps an id to a msgpack map {"name", "slug", "parent_id"}
 *  (str; parent_id "" for a root), read and written by the record codec
 *  (storage/record.h, table s_category_fields); "by_slug" maps a slug to the id and
 *  makes slugs unique (MDB_NOOVERWRITE in the write transaction of the
 *  record). A slug is normalised like a word list (catalog_words: lower
 *  case, letters and digits, runs of anything else one '-', none at the
 *  ends); an empty one is derived from the name, and a name without a
 *  letter or digit gets the id.
 *
 *  The rules that need other records are checked inside the write
 *  transaction, so no concurrent write can slip between check and write:
 *  a parent must exist; an update may not make a category its own
 *  ancestor (walk up from the new parent); a delete is refused while a
 *  product (a by_category key starting "id\0") or a child category (a
 *  scan: categories are few) uses it. An update is a patch: the fields
 *  given are applied to the record as the write transaction reads it, so
 *  two admins changing different fields at once both keep their change.
 */
#include "storage/catalog/catalog_store_impl.h"
#include "storage/ids.h"
#include "storage/record.h"

#include <czmq.h>
#include <string.h>

/* ---- category records ---- */

/* The record's fields (storage/record.h); the id is the LMDB key. */
static const record_field_t s_category_fields[] = {
    RECORD_STR_FIELD(category_t, name, "name", RECORD_REQUIRED),
    RECORD_STR_FIELD(category_t, slug, "slug", RECORD_REQUIRED),
    RECORD_STR_FIELD(category_t, parent_id, "parent_id", RECORD_REQUIRED),
};
static const record_table_t s_category_table = RECORD_TABLE(s_category_fields);

/* A category record's largest size: the field limits add up to 333
 * bytes, plus keys and headers. */
#define S_CATEGORY_MAX 1024

/* The category under key into out; why not when it is malformed. */
static record_status_t s_category_decode(const MDB_val *key, const MDB_val *val, category_t *out)
{
    memset(out, 0, sizeof *out);
    if (key->mv_size == 0 || key->mv_size > CATALOG_ID_MAX)
        return RECORD_BAD_VALUE;
    memcpy(out->id, key->mv_data, key->mv_size);
    return record_decode(&s_category_table, val->mv_data, val->mv_size, out);
}

catalog_status_t catalog_category_read(catalog_store_t *self, MDB_txn *txn, const char *id,
                                       category_t *out)
{
    size_t len = strlen(id);
    if (len == 0 || len > CATALOG_ID_MAX)
        return CATALOG_NOT_FOUND;
    MDB_val key = catalog_val(id), val;
    int rc = mdb_get(txn, self->dbi[CATALOG_DB_CATEGORIES], &key, &val);
    if (rc == MDB_NOTFOUND)
        return CATALOG_NOT_FOUND;
    if (rc != 0)
        return catalog_fail("mdb_get categories", rc);
    record_status_t decoded = s_category_decode(&key, &val, out);
    if (decoded != RECORD_OK) {
        zsys_error("catalog_store: malformed category record %s: %s", id, record_strerror(decoded));
        return CATALOG_ERROR;
    }
    return CATALOG_OK;
}

static catalog_status_t s_category_write(catalog_store_t *self, MDB_txn *txn, const category_t *c)
{
    mpout_t out;
    mpout_init(&out, S_CATEGORY_MAX);
    catalog_status_t status = CATALOG_OK;
    if (record_pack(&s_category_table, c, &out) != 0) {
        zsys_error("catalog_store: category %s does not encode", c->id);
        status = CATALOG_ERROR;
    } else {
        MDB_val key = catalog_val(c->id);
        MDB_val val = {.mv_size = out.buf.size, .mv_data = out.buf.data};
        int rc = mdb_put(txn, self->dbi[CATALOG_DB_CATEGORIES], &key, &val, 0);
        if (rc != 0)
            status = catalog_fail("mdb_put categories", rc);
    }
    mpout_destroy(&out);
    return status;
}

/* ---- categories ---- */

typedef struct {
    char *out;
    size_t len, cap;
} s_slug_t;

static void s_slug_word(const char *word, size_t len, void *arg)
{
    s_slug_t *s = arg;
    size_t need = len + (s->len > 0 ? 1 : 0);
    if (s->len + need > s->cap)
        return; /* the slug keeps the words that fit whole */
    if (s->len > 0)
        s->out[s->len++] = '-';
    memcpy(s->out + s->len, word, len);
    s->len += len;
}

/* The slug of text: its words (catalog_words: lower-case, letters and
 * digits) joined by '-', so separators are trimmed and collapsed. */
static void s_slugify(const char *text, char out[CATALOG_SLUG_MAX + 1])
{
    char buf[CATALOG_SLUG_MAX + 1];
    s_slug_t s = {.out = buf, .cap = CATALOG_SLUG_MAX};
    catalog_words(text, s_slug_word, &s);
    buf[s.len] = '\0';
    memcpy(out, buf, s.len + 1);
}

static bool s_category_valid(const category_t *c)
{
    return catalog_fits(c->name, CATALOG_NAME_MAX) && c->name[0] &&
           catalog_fits(c->slug, CATALOG_SLUG_MAX) && catalog_fits(c->parent_id, CATALOG_ID_MAX);
}

/* The slug a category gets: the given one normalised, or the name's;
 * when neither has a letter or digit, the id. */
static void s_category_slug(const category_t *c, char out[CATALOG_SLUG_MAX + 1])
{
    s_slugify(c->slug[0] ? c->slug : c->name, out);
    if (!out[0])
        snprintf(out, CATALOG_SLUG_MAX + 1, "%s", c->id);
}

typedef struct {
    catalog_store_t *self;
    const category_t *c;
} s_write_t;

static int s_create_txn(MDB_txn *txn, void *arg)
{
    const s_write_t *w = arg;
    catalog_store_t *self = w->self;
    const category_t *c = w->c;
    if (c->parent_id[0]) {
        category_t parent;
        catalog_status_t status = catalog_category_read(self, txn, c->parent_id, &parent);
        if (status != CATALOG_OK)
            return status == CATALOG_NOT_FOUND ? CATALOG_NO_CATEGORY : status;
    }
    MDB_val slug = catalog_val(c->slug), id = catalog_val(c->id);
    int rc = mdb_put(txn, self->dbi[CATALOG_DB_BY_SLUG], &slug, &id, MDB_NOOVERWRITE);
    if (rc != 0)
        return rc == MDB_KEYEXIST ? CATALOG_SLUG_TAKEN : catalog_fail("mdb_put by_slug", rc);
    return s_category_write(self, txn, c);
}

catalog_status_t catalog_category_create(catalog_store_t *self, category_t *c)
{
    if (!self || !c || !s_category_valid(c))
        return CATALOG_ERROR;
    store_new_id('c', c->id);
    s_category_slug(c, c->slug);
    return catalog_write(self, s_create_txn, &(s_write_t){self, c});
}

catalog_status_t catalog_category_get(catalog_store_t *self, const char *id, category_t *out)
{
    if (!self || !id || !out)
        return CATALOG_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return CATALOG_ERROR;
    catalog_status_t status = catalog_category_read(self, txn, id, out);
    store_reader_end(&self->reader);
    return status;
}

typedef struct {
    catalog_store_t *self;
    const char *id;
    unsigned fields;
    const category_t *values;
    category_t *out;
} s_update_t;

/* The patch is applied to the record this transaction reads, so a
 * concurrent update of another field is kept; the slug, when given, is
 * derived here too, since an empty one follows the name as it ends up. */
static int s_update_txn(MDB_txn *txn, void *arg)
{
    const s_update_t *w = arg;
    catalog_store_t *self = w->self;
    category_t stored, *next = w->out;
    catalog_status_t status = catalog_category_read(self, txn, w->id, &stored);
    if (status != CATALOG_OK)
        return status;
    *next = stored;
    if (w->fields & CATALOG_CATEGORY_NAME)
        memcpy(next->name, w->values->name, sizeof next->name);
    if (w->fields & CATALOG_CATEGORY_PARENT)
        memcpy(next->parent_id, w->values->parent_id, sizeof next->parent_id);
    if (w->fields & CATALOG_CATEGORY_SLUG) {
        memcpy(next->slug, w->values->slug, sizeof next->slug);
        s_category_slug(next, next->slug);
    }
    /* Walk up from the new parent: meeting the id means the category
     * would become its own ancestor. The tree is acyclic before, so the
     * walk ends; the step bound only guards against a damaged store. */
    char at[CATALOG_ID_MAX + 1];
    snprintf(at, sizeof at, "%s", next->parent_id);
    for (int steps = 0; at[0]; steps++) {
        if (strcmp(at, next->id) == 0 || steps > 10000)
            return CATALOG_CYCLE;
        category_t up;
        status = catalog_category_read(self, txn, at, &up);
        if (status != CATALOG_OK)
            return status == CATALOG_NOT_FOUND ? CATALOG_NO_CATEGORY : status;
        memcpy(at, up.parent_id, sizeof at);
    }
    if (strcmp(stored.slug, next->slug) != 0) {
        MDB_val old_slug = catalog_val(stored.slug), slug = catalog_val(next->slug),
                id = catalog_val(next->id);
        int rc = mdb_del(txn, self->dbi[CATALOG_DB_BY_SLUG], &old_slug, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            return catalog_fail("mdb_del by_slug", rc);
        rc = mdb_put(txn, self->dbi[CATALOG_DB_BY_SLUG], &slug, &id, MDB_NOOVERWRITE);
        if (rc != 0)
            return rc == MDB_KEYEXIST ? CATALOG_SLUG_TAKEN : catalog_fail("mdb_put by_slug", rc);
    }
    return s_category_write(self, txn, next);
}

catalog_status_t catalog_category_update(catalog_store_t *self, const char *id, unsigned fields,
                                         const category_t *values, category_t *out)
{
    const unsigned all = CATALOG_CATEGORY_NAME | CATALOG_CATEGORY_SLUG | CATALOG_CATEGORY_PARENT;
    if (!self || !id || !values || !out || out == values || (fields & ~all))
        return CATALOG_ERROR;
    if (((fields & CATALOG_CATEGORY_NAME) &&
         (!catalog_fits(values->name, CATALOG_NAME_MAX) || !values->name[0])) ||
        ((fields & CATALOG_CATEGORY_SLUG) && !catalog_fits(values->slug, CATALOG_SLUG_MAX)) ||
        ((fields & CATALOG_CATEGORY_PARENT) && !catalog_fits(values->parent_id, CATALOG_ID_MAX)))
        return CATALOG_ERROR;
    size_t id_len = strnlen(id, CATALOG_ID_MAX + 1);
    if (id_len == 0 || id_len > CATALOG_ID_MAX)
        return CATALOG_NOT_FOUND; /* no category has such an id */
    return catalog_write(
        self, s_update_txn,
        &(s_update_t){.self = self, .id = id, .fields = fields, .values = values, .out = out});
}

/* OK when no product and no child category uses id, IN_USE when one
 * does, ERROR on failure. */
static catalog_status_t s_category_unused(catalog_store_t *self, MDB_txn *txn, const char *id)
{
    MDB_cursor *cursor = NULL;
    catalog_status_t status = CATALOG_ERROR;
    char prefix[CATALOG_ID_MAX + 1];
    size_t prefix_len = strlen(id) + 1; /* with the \0 */
    memcpy(prefix, id, prefix_len);
    int rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_BY_CATEGORY], &cursor);
    if (rc != 0) {
        catalog_fail("mdb_cursor_open by_category", rc);
        goto cleanup;
    }
    MDB_val key = {.mv_size = prefix_len, .mv_data = prefix}, val;
    rc = mdb_cursor_get(cursor, &key, &val, MDB_SET_RANGE);
    if (rc == 0 && key.mv_size >= prefix_len && memcmp(key.mv_data, prefix, prefix_len) == 0) {
        status = CATALOG_IN_USE;
        goto cleanup;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) {
        catalog_fail("mdb_cursor_get by_category", rc);
        goto cleanup;
    }
    mdb_cursor_close(cursor);
    cursor = NULL;
    /* Children: categories are few, so a scan beats keeping a parent
     * index in step. */
    rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_CATEGORIES], &cursor);
    if (rc != 0) {
        catalog_fail("mdb_cursor_open categories", rc);
        goto cleanup;
    }
    for (rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        category_t child;
        record_status_t decoded = s_category_decode(&key, &val, &child);
        if (decoded != RECORD_OK) {
            zsys_error("catalog_store: malformed category record: %s", record_strerror(decoded));
            goto cleanup;
        }
        if (strcmp(child.parent_id, id) == 0) {
            status = CATALOG_IN_USE;
            goto cleanup;
        }
    }
    if (rc != MDB_NOTFOUND) {
        catalog_fail("mdb_cursor_get categories", rc);
        goto cleanup;
    }
    status = CATALOG_OK;
cleanup:
    if (cursor)
        mdb_cursor_close(cursor);
    return status;
}

typedef struct {
    catalog_store_t *self;
    const char *id;
} s_delete_t;

static int s_delete_txn(MDB_txn *txn, void *arg)
{
    const s_delete_t *d = arg;
    catalog_store_t *self = d->self;
    category_t stored;
    catalog_status_t status = catalog_category_read(self, txn, d->id, &stored);
    if (status == CATALOG_OK)
        status = s_category_unused(self, txn, d->id);
    if (status != CATALOG_OK)
        return status;
    MDB_val key = catalog_val(d->id), slug = catalog_val(stored.slug);
    int rc = mdb_del(txn, self->dbi[CATALOG_DB_CATEGORIES], &key, NULL);
    if (rc == 0)
        rc = mdb_del(txn, self->dbi[CATALOG_DB_BY_SLUG], &slug, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return catalog_fail("mdb_del category", rc);
    return CATALOG_OK;
}

catalog_status_t catalog_category_delete(catalog_store_t *self, const char *id)
{
    if (!self || !id)
        return CATALOG_ERROR;
    return catalog_write_freeing(self, s_delete_txn, &(s_delete_t){self, id});
}

/* store_page's callback: the category of one entry into out[index]. */
static int s_page_entry(const MDB_val *key, const MDB_val *val, int index, void *arg)
{
    category_t *out = arg;
    record_status_t decoded = s_category_decode(key, val, &out[index]);
    if (decoded != RECORD_OK) {
        zsys_error("catalog_store: malformed category record: %s", record_strerror(decoded));
        return -1;
    }
    return 0;
}

catalog_status_t catalog_category_page(catalog_store_t *self, const char *after, int limit,
                                       category_t *out, int *count, bool *more)
{
    if (count)
        *count = 0;
    if (more)
        *more = false;
    if (!self || !count || limit < 0 || (limit > 0 && !out))
        return CATALOG_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return CATALOG_ERROR;
    int rc = store_page(txn, self->dbi[CATALOG_DB_CATEGORIES], after ? after : "", CATALOG_ID_MAX,
                        limit, s_page_entry, out, count, more, "catalog_store", "categories page");
    store_reader_end(&self->reader);
    return rc == 0 ? CATALOG_OK : CATALOG_ERROR;
}

catalog_status_t catalog_category_list(catalog_store_t *self, category_t *out, int max, int *count)
{
    return catalog_category_page(self, NULL, max, out, count, NULL);
}

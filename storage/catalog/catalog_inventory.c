/*  catalog_inventory.c - stock reservations for orders (catalog_store.h).
 *
 *  The reservations database maps an order id to a msgpack map, read and
 *  written by the record codec (storage/record.h, s_reservation_fields):
 *      "state": "reserved" | "committed" | "released"  (an enum field)
 *      "lines": [[product_id str, qty int], ...]        (a custom field)
 *  with the lines in canonical form: sorted by product id, one line per
 *  product (repeated products summed). Comparing canonical forms makes a
 *  repeated reserve match whatever order the caller lists its lines in.
 *
 *  Each call is one write that reads the reservation and the products it
 *  touches and writes them back: the environment runs its writes one at a
 *  time, so two handles reserving the last unit cannot both see it, and
 *  a reserve that finds one short line aborts with nothing written. A
 *  stock change is a product write like any other: version + 1 and
 *  updated_at now. Stock is in no index (catalog_store_impl.h), so only
 *  the records change.
 *
 *  Each product also counts the units its live reservations hold
 *  ("reserved"), moved in the same write as the reservation's state:
 *      reserve                 stock - qty, reserved + qty
 *      release of reserved     stock + qty, reserved - qty
 *      commit                  reserved - qty (sold; version unchanged:
 *                              nothing a client sees changed)
 *      release of committed    stock + qty (a cancelled sale)
 *  so reserved is the sum of the live reservations' lines at every commit
 *  of the environment, which is what catalog_store_check verifies. Before
 *  the counter existed, records had no "reserved"; catalog_store_upgrade
 *  counts it once from the reservations (catalog_reserved_recount).
 *
 *  A refused reserve names the first line in the caller's order that is
 *  missing or short, with the qty of that product summed over the order
 *  and the stock it has: every line is read before any is written.
 *
 *  The three writes are prepared in a stock_write_t (its lines made
 *  canonical there, and each canonical line's first place in the request
 *  kept for the refusal), run by one write function on the environment's
 *  committer thread, and read back by catalog_stock_write_end; the
 *  blocking calls are prepare, kv_write and end, so there is one path.
 *  The write function uses only its prepared write, which carries a copy
 *  of the database handles: a handle may have many writes out at once
 *  (call_write), so nothing of the handle is touched. Its scratch (the
 *  stored reservation and a product record) is allocated per write.
 *
 *  Events: a reserve appends a stock.low for each product whose stock it
 *  takes from above its threshold to at or below it, in its own write
 *  (the prepared write carries the handle's outbox and threshold). A
 *  commit leaves stock alone and a release raises it, so neither has an
 *  event; none of the three is a product.updated (catalog_store.h).
 */
#include "storage/catalog/catalog_store_impl.h"
#include "protocol/clock.h"
#include "storage/record.h"

#include <czmq.h>
#include <msgpack.h>
#include <string.h>

const char *const stock_state_names[3] = {"reserved", "committed", "released"};

typedef catalog_reservation_t s_reservation_t;

static int s_line_cmp(const void *a, const void *b)
{
    return strcmp(((const stock_line_t *)a)->product_id, ((const stock_line_t *)b)->product_id);
}

/* Sorts the *n_lines lines by product and merges repeats. */
static void s_canonical(stock_line_t *lines, int *n_lines)
{
    qsort(lines, (size_t)*n_lines, sizeof lines[0], s_line_cmp);
    int n = 0;
    for (int i = 0; i < *n_lines; i++) {
        if (n > 0 && strcmp(lines[n - 1].product_id, lines[i].product_id) == 0)
            lines[n - 1].qty += lines[i].qty;
        else
            lines[n++] = lines[i];
    }
    *n_lines = n;
}

/* A reservation record's largest size: every line at its longest. */
#define S_RESERVATION_MAX (CATALOG_LINES_MAX * (CATALOG_ID_MAX + 16) + 64)

/* "lines": [[product_id, qty], ...], at most CATALOG_LINES_MAX, each id
 * non-empty and qty >= 0 (a custom field: the codec has no lists). */
static bool s_lines_decode(record_reader_t *rd, void *record)
{
    s_reservation_t *r = record;
    uint32_t n;
    if (!record_read_array(rd, &n) || n > CATALOG_LINES_MAX)
        return false;
    for (uint32_t j = 0; j < n; j++) {
        uint32_t pair;
        const char *pid;
        size_t pid_len;
        int64_t qty;
        if (!record_read_array(rd, &pair) || pair != 2 || !record_read_str(rd, &pid, &pid_len) ||
            pid_len == 0 || pid_len > CATALOG_ID_MAX || memchr(pid, '\0', pid_len) ||
            !record_read_int64(rd, &qty) || qty < 0)
            return false;
        memcpy(r->lines[j].product_id, pid, pid_len);
        r->lines[j].product_id[pid_len] = '\0';
        r->lines[j].qty = qty;
    }
    r->n_lines = (int)n;
    return true;
}

static int s_lines_encode(msgpack_packer *pk, const void *record)
{
    const s_reservation_t *r = record;
    if (r->n_lines < 0 || r->n_lines > CATALOG_LINES_MAX ||
        msgpack_pack_array(pk, (size_t)r->n_lines) != 0)
        return -1;
    for (int i = 0; i < r->n_lines; i++) {
        const char *pid = r->lines[i].product_id;
        size_t len = strnlen(pid, CATALOG_ID_MAX + 1);
        if (len > CATALOG_ID_MAX || msgpack_pack_array(pk, 2) != 0 ||
            msgpack_pack_str(pk, len) != 0 || msgpack_pack_str_body(pk, pid, len) != 0 ||
            msgpack_pack_int64(pk, r->lines[i].qty) != 0)
            return -1;
    }
    return 0;
}

/* The record's fields (storage/record.h); the order id is the key. */
static const record_field_t s_reservation_fields[] = {
    RECORD_ENUM_FIELD(s_reservation_t, state, "state", stock_state_names, 3, RECORD_REQUIRED),
    RECORD_CUSTOM_FIELD("lines", s_lines_decode, s_lines_encode, RECORD_REQUIRED),
};
static const record_table_t s_reservation_table = RECORD_TABLE(s_reservation_fields);

bool catalog_reservation_decode(const MDB_val *val, catalog_reservation_t *r)
{
    memset(r, 0, sizeof *r);
    return record_decode(&s_reservation_table, val->mv_data, val->mv_size, r) == RECORD_OK;
}

/* Reads order_id's reservation within txn into r. */
static catalog_status_t s_read(const MDB_dbi *dbi, MDB_txn *txn, const char *order_id,
                               s_reservation_t *r)
{
    MDB_val key = {.mv_size = strlen(order_id), .mv_data = (void *)order_id}, val;
    int rc = mdb_get(txn, dbi[CATALOG_DB_RESERVATIONS], &key, &val);
    if (rc == MDB_NOTFOUND)
        return CATALOG_NOT_FOUND;
    if (rc != 0)
        return catalog_fail("mdb_get reservations", rc);
    memset(r, 0, sizeof *r);
    record_status_t decoded = record_decode(&s_reservation_table, val.mv_data, val.mv_size, r);
    if (decoded != RECORD_OK) {
        zsys_error("catalog_store: malformed reservation %s: %s", order_id,
                   record_strerror(decoded));
        return CATALOG_ERROR;
    }
    return CATALOG_OK;
}

static catalog_status_t s_write(const MDB_dbi *dbi, MDB_txn *txn, const char *order_id,
                                const s_reservation_t *r)
{
    mpout_t out;
    mpout_init(&out, S_RESERVATION_MAX);
    catalog_status_t status = CATALOG_OK;
    if (record_pack(&s_reservation_table, r, &out) != 0) {
        zsys_error("catalog_store: reservation %s does not encode", order_id);
        status = CATALOG_ERROR;
    } else {
        MDB_val key = {.mv_size = strlen(order_id), .mv_data = (void *)order_id};
        MDB_val val = {.mv_size = out.buf.size, .mv_data = out.buf.data};
        int rc = mdb_put(txn, dbi[CATALOG_DB_RESERVATIONS], &key, &val, 0);
        if (rc != 0)
            status = catalog_fail("mdb_put reservations", rc);
    }
    mpout_destroy(&out);
    return status;
}

static bool s_order_id_ok(const char *order_id)
{
    return order_id && order_id[0] && memchr(order_id, '\0', CATALOG_ORDER_ID_MAX + 1);
}

/* ---- the writes (stock_write_t) ---- */

enum { S_RESERVE = 1, S_COMMIT, S_RELEASE };

/* What one write works in, allocated by the write itself on the
 * committer's thread: a product record is about 21 KB, too large for the
 * prepared write that every held call keeps. */
typedef struct {
    s_reservation_t stored;
    product_t product;
} s_scratch_t;

/* Names line i (a canonical line of w) in *w->short_line as refused
 * with status st, the stock of product p (0 when it is missing). */
static void s_name_short(const stock_write_t *w, int i, catalog_status_t st, const product_t *p)
{
    stock_short_t *short_line = w->short_line;
    if (!short_line)
        return;
    snprintf(short_line->product_id, sizeof short_line->product_id, "%s", w->lines[i].product_id);
    short_line->requested = w->lines[i].qty;
    short_line->available = st == CATALOG_NOT_FOUND ? 0 : p->stock;
}

/* Takes every line of w out of stock into reserved within txn: first
 * every line is checked (all read before any is written), and when one
 * is missing or short the one the caller listed first (w->rank) is named
 * in *w->short_line and nothing is written. p is scratch. */
static catalog_status_t s_take(MDB_txn *txn, const stock_write_t *w, product_t *p)
{
    catalog_status_t status = CATALOG_OK;
    int first = -1; /* the short line of the lowest rank */
    for (int i = 0; i < w->n_lines; i++) {
        const stock_line_t *line = &w->lines[i];
        catalog_status_t st =
            catalog_product_read(w->dbi, txn, line->product_id, strlen(line->product_id), p);
        if (st == CATALOG_OK && p->stock < line->qty)
            st = CATALOG_OUT_OF_STOCK;
        if (st == CATALOG_NOT_FOUND || st == CATALOG_OUT_OF_STOCK) {
            if (first < 0 || w->rank[i] < w->rank[first]) {
                first = i;
                status = st;
                s_name_short(w, i, st, p);
            }
        } else if (st != CATALOG_OK)
            return st;
    }
    int64_t now = clock_now_ms();
    for (int i = 0; i < w->n_lines && status == CATALOG_OK; i++) {
        const stock_line_t *line = &w->lines[i];
        status = catalog_product_read(w->dbi, txn, line->product_id, strlen(line->product_id), p);
        if (status != CATALOG_OK)
            break;
        int64_t before = p->stock;
        p->stock -= line->qty;
        p->reserved += line->qty;
        p->version++;
        p->updated_at_ms = now;
        status = catalog_product_write(w->dbi, txn, p);
        /* the one event a reservation may make: its product's stock
         * falling to its threshold (the attributes, so the threshold,
         * are the same before and after) */
        if (status == CATALOG_OK && w->outbox) {
            int64_t threshold = catalog_stock_threshold(p, w->stock_low);
            status = catalog_event_stock(w->outbox, txn, before, threshold, p, threshold);
        }
    }
    return status;
}

/* What a transition does to each line's product within txn: a release
 * gives the units back to stock (and, from reserved, takes them out of
 * reserved); a commit takes them out of reserved only (sold: they stay
 * out of stock). A product deleted meanwhile is passed over. A commit
 * changes nothing a client sees, so it leaves version and updated_at
 * alone; a release changes stock, a write like any other. p is scratch. */
static catalog_status_t s_settle(const MDB_dbi *dbi, MDB_txn *txn, const s_reservation_t *r,
                                 stock_state_t to, product_t *p)
{
    catalog_status_t status = CATALOG_OK;
    int64_t now = clock_now_ms();
    for (int i = 0; i < r->n_lines && status == CATALOG_OK; i++) {
        const stock_line_t *line = &r->lines[i];
        status = catalog_product_read(dbi, txn, line->product_id, strlen(line->product_id), p);
        if (status == CATALOG_NOT_FOUND) {
            status = CATALOG_OK;
            continue;
        }
        if (status != CATALOG_OK)
            break;
        if (r->state == STOCK_RESERVED)
            p->reserved -= line->qty;
        if (to == STOCK_RELEASED) {
            p->stock += line->qty;
            p->version++;
            p->updated_at_ms = now;
        }
        status = catalog_product_write(dbi, txn, p);
    }
    return status;
}

static catalog_status_t s_reserve_txn(MDB_txn *txn, const stock_write_t *w, s_scratch_t *s)
{
    s_reservation_t *stored = &s->stored;
    catalog_status_t status = s_read(w->dbi, txn, w->order_id, stored);
    if (status == CATALOG_OK) {
        /* A repeat: the same lines is the same request, whatever became
         * of it since; other lines reuse the order id. */
        bool same = stored->n_lines == w->n_lines;
        for (int i = 0; same && i < w->n_lines; i++)
            same = strcmp(stored->lines[i].product_id, w->lines[i].product_id) == 0 &&
                   stored->lines[i].qty == w->lines[i].qty;
        return same ? CATALOG_OK : CATALOG_CONFLICT;
    }
    if (status != CATALOG_NOT_FOUND)
        return status;
    status = s_take(txn, w, &s->product);
    if (status != CATALOG_OK)
        return status;
    stored->state = STOCK_RESERVED;
    stored->n_lines = w->n_lines;
    memcpy(stored->lines, w->lines, (size_t)w->n_lines * sizeof w->lines[0]);
    return s_write(w->dbi, txn, w->order_id, stored);
}

static catalog_status_t s_transition_txn(MDB_txn *txn, const stock_write_t *w, s_scratch_t *s)
{
    stock_state_t to = w->kind == S_COMMIT ? STOCK_COMMITTED : STOCK_RELEASED;
    s_reservation_t *r = &s->stored;
    catalog_status_t status = s_read(w->dbi, txn, w->order_id, r);
    if (status != CATALOG_OK || r->state == (int)to)
        return status; /* unknown, failed, or already there: no change */
    if (r->state == STOCK_RELEASED)
        return CATALOG_CONFLICT; /* a released reservation is final */
    status = s_settle(w->dbi, txn, r, to, &s->product);
    if (status != CATALOG_OK)
        return status;
    r->state = (int)to;
    return s_write(w->dbi, txn, w->order_id, r);
}

int catalog_stock_write_txn(MDB_txn *txn, void *arg)
{
    const stock_write_t *w = arg;
    s_scratch_t *s = malloc(sizeof *s);
    if (!s)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_ERROR;
    if (w->kind == S_RESERVE)
        status = s_reserve_txn(txn, w, s);
    else if (w->kind == S_COMMIT || w->kind == S_RELEASE)
        status = s_transition_txn(txn, w, s);
    free(s);
    return status;
}

/* The part every prepared write shares: the environment, its database
 * handles and the order id (checked by the caller). */
static void s_prepare(stock_write_t *w, catalog_store_t *self, int kind, const char *order_id)
{
    w->kv = catalog_store_kv(self);
    memcpy(w->dbi, self->dbi, sizeof w->dbi);
    w->outbox = self->outbox;
    w->stock_low = self->stock_low;
    w->kind = kind;
    snprintf(w->order_id, sizeof w->order_id, "%s", order_id);
}

bool catalog_stock_write_reserve(stock_write_t *w, catalog_store_t *self, const char *order_id,
                                 const stock_line_t *lines, int n_lines, stock_short_t *short_line)
{
    if (short_line)
        memset(short_line, 0, sizeof *short_line);
    if (!w || !self || !s_order_id_ok(order_id) || !lines || n_lines < 1 ||
        n_lines > CATALOG_LINES_MAX)
        return false;
    for (int i = 0; i < n_lines; i++) {
        size_t len = strnlen(lines[i].product_id, CATALOG_ID_MAX + 1);
        /* Summing repeats must not overflow: qty is bounded well below. */
        if (len == 0 || len > CATALOG_ID_MAX || lines[i].qty <= 0 ||
            lines[i].qty > INT64_MAX / CATALOG_LINES_MAX)
            return false;
    }
    memset(w, 0, sizeof *w);
    s_prepare(w, self, S_RESERVE, order_id);
    w->short_line = short_line;
    memcpy(w->lines, lines, (size_t)n_lines * sizeof lines[0]);
    w->n_lines = n_lines;
    s_canonical(w->lines, &w->n_lines);
    for (int i = 0; i < w->n_lines; i++)
        for (w->rank[i] = 0; w->rank[i] < n_lines; w->rank[i]++)
            if (strcmp(lines[w->rank[i]].product_id, w->lines[i].product_id) == 0)
                break;
    return true;
}

static bool s_prepare_transition(stock_write_t *w, catalog_store_t *self, int kind,
                                 const char *order_id)
{
    if (!w || !self || !s_order_id_ok(order_id))
        return false;
    memset(w, 0, sizeof *w);
    s_prepare(w, self, kind, order_id);
    return true;
}

bool catalog_stock_write_commit(stock_write_t *w, catalog_store_t *self, const char *order_id)
{
    return s_prepare_transition(w, self, S_COMMIT, order_id);
}

bool catalog_stock_write_release(stock_write_t *w, catalog_store_t *self, const char *order_id)
{
    return s_prepare_transition(w, self, S_RELEASE, order_id);
}

catalog_status_t catalog_stock_write_end(const stock_write_t *w, bool committed, int result)
{
    catalog_status_t status = committed             ? (catalog_status_t)result
                              : kv_no_space(result) ? CATALOG_NO_SPACE
                                                    : CATALOG_ERROR;
    if (w->short_line && status != CATALOG_OUT_OF_STOCK && status != CATALOG_NOT_FOUND)
        memset(w->short_line, 0, sizeof *w->short_line);
    return status;
}

/* ---- the same, waiting ---- */

/* Runs the write prepared in w (when prepared is true) and waits for its
 * commit. The prepared write lives on the heap: it holds every line. */
static catalog_status_t s_wait(stock_write_t *w, bool prepared)
{
    catalog_status_t status = CATALOG_ERROR;
    if (prepared) {
        int result = CATALOG_ERROR;
        int rc = kv_write(w->kv, catalog_stock_write_txn, w, &result);
        status = catalog_stock_write_end(w, rc == 0, rc == 0 ? result : rc);
    }
    free(w);
    return status;
}

catalog_status_t catalog_stock_reserve(catalog_store_t *self, const char *order_id,
                                       const stock_line_t *lines, int n_lines,
                                       stock_short_t *short_line)
{
    stock_write_t *w = malloc(sizeof *w);
    bool prepared = catalog_stock_write_reserve(w, self, order_id, lines, n_lines, short_line);
    return s_wait(w, prepared);
}

catalog_status_t catalog_stock_release(catalog_store_t *self, const char *order_id)
{
    stock_write_t *w = malloc(sizeof *w);
    return s_wait(w, catalog_stock_write_release(w, self, order_id));
}

catalog_status_t catalog_stock_commit(catalog_store_t *self, const char *order_id)
{
    stock_write_t *w = malloc(sizeof *w);
    return s_wait(w, catalog_stock_write_commit(w, self, order_id));
}

/* ---- listing ---- */

catalog_status_t catalog_reservation_page(catalog_store_t *self, int state, const char *after,
                                          int limit, catalog_reservation_fn *fn, void *arg,
                                          bool *more)
{
    if (more)
        *more = false;
    if (!self || !fn || limit < 1 || limit > CATALOG_RESERVATIONS_PAGE_MAX || state < -1 ||
        state > STOCK_RELEASED)
        return CATALOG_ERROR;
    s_reservation_t *r = malloc(sizeof *r);
    if (!r)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_OK;
    MDB_cursor *cursor = NULL;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn) {
        status = CATALOG_ERROR;
        goto cleanup;
    }
    int rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_RESERVATIONS], &cursor);
    if (rc != 0) {
        status = catalog_fail("mdb_cursor_open reservations", rc);
        goto cleanup;
    }
    MDB_val key, val;
    int count = 0;
    for (rc = kv_cursor_after(cursor, after ? after : "", CATALOG_ORDER_ID_MAX, &key, &val);
         rc == 0; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        char order_id[CATALOG_ORDER_ID_MAX + 1];
        if (key.mv_size == 0 || key.mv_size > CATALOG_ORDER_ID_MAX ||
            !catalog_reservation_decode(&val, r)) {
            zsys_error(
                "catalog_store: malformed reservation %.*s (passed over)",
                (int)(key.mv_size > CATALOG_ORDER_ID_MAX ? CATALOG_ORDER_ID_MAX : key.mv_size),
                (const char *)key.mv_data);
            continue;
        }
        if (state >= 0 && r->state != state)
            continue;
        memcpy(order_id, key.mv_data, key.mv_size);
        order_id[key.mv_size] = '\0';
        if (count == limit || !fn(order_id, (stock_state_t)r->state, r->lines, r->n_lines, arg)) {
            if (more)
                *more = true;
            break;
        }
        count++;
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        status = catalog_fail("reservations page", rc);
cleanup:
    if (cursor)
        mdb_cursor_close(cursor);
    if (txn)
        store_reader_end(&self->reader);
    free(r);
    return status;
}

/* ---- the one-time recount (catalog_store_upgrade) ---- */

/* Adds the lines of every live reservation to sums (product id -> an
 * int64_t it owns). A malformed reservation is logged and passed over
 * (catalog_store_check reports it). */
static catalog_status_t s_sum_live(catalog_store_t *self, MDB_txn *txn, zhashx_t *sums)
{
    s_reservation_t *r = malloc(sizeof *r);
    MDB_cursor *cursor = NULL;
    if (!r)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_OK;
    int rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_RESERVATIONS], &cursor);
    MDB_val key, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    for (; rc == 0 && status == CATALOG_OK; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        if (!catalog_reservation_decode(&val, r)) {
            zsys_error("catalog_store: recount: malformed reservation (passed over)");
            continue;
        }
        if (r->state != STOCK_RESERVED)
            continue;
        for (int i = 0; i < r->n_lines; i++) {
            int64_t *sum = zhashx_lookup(sums, r->lines[i].product_id);
            if (!sum) {
                sum = calloc(1, sizeof *sum);
                if (!sum || zhashx_insert(sums, r->lines[i].product_id, sum) != 0) {
                    free(sum);
                    status = CATALOG_ERROR;
                    break;
                }
            }
            *sum += r->lines[i].qty;
        }
    }
    if (rc != 0 && rc != MDB_NOTFOUND)
        status = catalog_fail("recount: reservations", rc);
    if (cursor)
        mdb_cursor_close(cursor);
    free(r);
    return status;
}

static void s_free_sum(void **item)
{
    free(*item);
    *item = NULL;
}

static void *s_dup_id(const void *id)
{
    return strdup(id);
}

catalog_status_t catalog_reserved_recount(catalog_store_t *self, MDB_txn *txn, long *fixed)
{
    *fixed = 0;
    zhashx_t *sums = zhashx_new();
    zlistx_t *wrong = zlistx_new(); /* ids of the records to rewrite */
    product_t *p = malloc(sizeof *p);
    MDB_cursor *cursor = NULL;
    catalog_status_t status = CATALOG_ERROR;
    if (!sums || !wrong || !p)
        goto cleanup;
    zhashx_set_destructor(sums, s_free_sum);
    zlistx_set_duplicator(wrong, s_dup_id);
    zlistx_set_destructor(wrong, s_free_sum);
    status = s_sum_live(self, txn, sums);
    if (status != CATALOG_OK)
        goto cleanup;
    /* The records that differ are collected first and rewritten after
     * the walk, so no put moves under the cursor. */
    int rc = mdb_cursor_open(txn, self->dbi[CATALOG_DB_PRODUCTS], &cursor);
    MDB_val key, val;
    if (rc == 0)
        rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        char id[CATALOG_ID_MAX + 1];
        int64_t reserved;
        if (key.mv_size == 0 || key.mv_size > CATALOG_ID_MAX ||
            catalog_record_reserved(&val, &reserved) != 0) {
            zsys_error("catalog_store: recount: malformed product (passed over)");
            continue;
        }
        memcpy(id, key.mv_data, key.mv_size);
        id[key.mv_size] = '\0';
        int64_t *sum = zhashx_lookup(sums, id);
        if (reserved != (sum ? *sum : 0) && !zlistx_add_end(wrong, id)) {
            status = CATALOG_ERROR;
            goto cleanup;
        }
    }
    if (rc != MDB_NOTFOUND) {
        status = catalog_fail("recount: products", rc);
        goto cleanup;
    }
    mdb_cursor_close(cursor);
    cursor = NULL;
    for (const char *id = zlistx_first(wrong); id && status == CATALOG_OK;
         id = zlistx_next(wrong)) {
        status = catalog_product_read(self->dbi, txn, id, strlen(id), p);
        if (status == CATALOG_OK) {
            int64_t *sum = zhashx_lookup(sums, id);
            p->reserved = sum ? *sum : 0;
            status = catalog_product_write(self->dbi, txn, p);
            (*fixed)++;
        }
    }
cleanup:
    if (cursor)
        mdb_cursor_close(cursor);
    zhashx_destroy(&sums);
    zlistx_destroy(&wrong);
    free(p);
    return status;
}

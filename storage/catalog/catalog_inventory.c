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
 *  Each call is one write transaction that reads the reservation and the
 *  products it touches and writes them back: LMDB runs one writer at a
 *  time, so two handles reserving the last unit cannot both see it, and
 *  a reserve that finds one short line aborts with nothing written. A
 *  stock change is a product write like any other: version + 1 and
 *  updated_at now. Stock is in no index (catalog_store_impl.h), so only
 *  the records change.
 */
#include "storage/catalog/catalog_store_impl.h"
#include "protocol/clock.h"
#include "storage/record.h"

#include <czmq.h>
#include <msgpack.h>
#include <string.h>

typedef enum { S_RESERVED, S_COMMITTED, S_RELEASED } s_state_t;

static const char *const s_state_names[] = {"reserved", "committed", "released"};

typedef struct {
    int state; /* s_state_t (an int: the record codec's enum member) */
    int n_lines;
    stock_line_t lines[CATALOG_LINES_MAX];
} s_reservation_t;

static int s_line_cmp(const void *a, const void *b)
{
    return strcmp(((const stock_line_t *)a)->product_id, ((const stock_line_t *)b)->product_id);
}

/* Sorts r's lines by product and merges repeats. */
static void s_canonical(s_reservation_t *r)
{
    qsort(r->lines, (size_t)r->n_lines, sizeof r->lines[0], s_line_cmp);
    int n = 0;
    for (int i = 0; i < r->n_lines; i++) {
        if (n > 0 && strcmp(r->lines[n - 1].product_id, r->lines[i].product_id) == 0)
            r->lines[n - 1].qty += r->lines[i].qty;
        else
            r->lines[n++] = r->lines[i];
    }
    r->n_lines = n;
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
    RECORD_ENUM_FIELD(s_reservation_t, state, "state", s_state_names, 3, RECORD_REQUIRED),
    RECORD_CUSTOM_FIELD("lines", s_lines_decode, s_lines_encode, RECORD_REQUIRED),
};
static const record_table_t s_reservation_table = RECORD_TABLE(s_reservation_fields);

/* Reads order_id's reservation within txn into r. */
static catalog_status_t s_read(catalog_store_t *self, MDB_txn *txn, const char *order_id,
                               s_reservation_t *r)
{
    MDB_val key = {.mv_size = strlen(order_id), .mv_data = (void *)order_id}, val;
    int rc = mdb_get(txn, self->dbi[CATALOG_DB_RESERVATIONS], &key, &val);
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

static catalog_status_t s_write(catalog_store_t *self, MDB_txn *txn, const char *order_id,
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
        int rc = mdb_put(txn, self->dbi[CATALOG_DB_RESERVATIONS], &key, &val, 0);
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

/* Adds delta to the stock of every line's product within txn (delta -1:
 * take, +1: give back). Taking: a missing product is NOT_FOUND and a
 * short one OUT_OF_STOCK, either named in short_product. Giving back: a
 * product deleted meanwhile is passed over. */
static catalog_status_t s_apply(catalog_store_t *self, MDB_txn *txn, const s_reservation_t *r,
                                int delta, char *short_product)
{
    product_t *p = malloc(sizeof *p);
    if (!p)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_OK;
    int64_t now = clock_now_ms();
    for (int i = 0; i < r->n_lines && status == CATALOG_OK; i++) {
        const stock_line_t *line = &r->lines[i];
        status = catalog_product_read(self, txn, line->product_id, strlen(line->product_id), p);
        if (status == CATALOG_NOT_FOUND && delta > 0) {
            status = CATALOG_OK;
            continue;
        }
        if (status == CATALOG_OK && delta < 0 && p->stock < line->qty)
            status = CATALOG_OUT_OF_STOCK;
        if (status != CATALOG_OK) {
            if (short_product)
                snprintf(short_product, CATALOG_ID_MAX + 1, "%s", line->product_id);
            break;
        }
        p->stock += delta * line->qty;
        p->version++;
        p->updated_at_ms = now;
        status = catalog_product_write(self, txn, p);
    }
    free(p);
    return status;
}

typedef struct {
    catalog_store_t *self;
    const char *order_id;
    s_reservation_t *want, *stored; /* reserve; transitions use stored */
    s_state_t to;                   /* transitions */
    char *short_product;
} s_write_t;

static int s_reserve_txn(MDB_txn *txn, void *arg)
{
    const s_write_t *w = arg;
    catalog_status_t status = s_read(w->self, txn, w->order_id, w->stored);
    if (status == CATALOG_OK) {
        /* A repeat: the same lines is the same request, whatever became
         * of it since; other lines reuse the order id. */
        const s_reservation_t *want = w->want, *stored = w->stored;
        bool same = stored->n_lines == want->n_lines;
        for (int i = 0; same && i < want->n_lines; i++)
            same = strcmp(stored->lines[i].product_id, want->lines[i].product_id) == 0 &&
                   stored->lines[i].qty == want->lines[i].qty;
        return same ? CATALOG_OK : CATALOG_CONFLICT;
    }
    if (status != CATALOG_NOT_FOUND)
        return status;
    status = s_apply(w->self, txn, w->want, -1, w->short_product);
    return status == CATALOG_OK ? s_write(w->self, txn, w->order_id, w->want) : status;
}

catalog_status_t catalog_stock_reserve(catalog_store_t *self, const char *order_id,
                                       const stock_line_t *lines, int n_lines,
                                       char short_product[CATALOG_ID_MAX + 1])
{
    if (short_product)
        short_product[0] = '\0';
    if (!self || !s_order_id_ok(order_id) || !lines || n_lines < 1 || n_lines > CATALOG_LINES_MAX)
        return CATALOG_ERROR;
    s_reservation_t *want = malloc(2 * sizeof *want);
    if (!want)
        return CATALOG_ERROR;
    catalog_status_t status = CATALOG_ERROR;
    want->state = S_RESERVED;
    want->n_lines = n_lines;
    for (int i = 0; i < n_lines; i++) {
        size_t len = strnlen(lines[i].product_id, CATALOG_ID_MAX + 1);
        /* Summing repeats must not overflow: qty is bounded well below. */
        if (len == 0 || len > CATALOG_ID_MAX || lines[i].qty <= 0 ||
            lines[i].qty > INT64_MAX / CATALOG_LINES_MAX)
            goto cleanup;
        want->lines[i] = lines[i];
    }
    s_canonical(want);
    status = catalog_write(self, s_reserve_txn,
                           &(s_write_t){.self = self,
                                        .order_id = order_id,
                                        .want = want,
                                        .stored = want + 1,
                                        .short_product = short_product});
    if (status != CATALOG_OUT_OF_STOCK && status != CATALOG_NOT_FOUND && short_product)
        short_product[0] = '\0'; /* named by an attempt that a later step undid */
cleanup:
    free(want);
    return status;
}

static int s_transition_txn(MDB_txn *txn, void *arg)
{
    const s_write_t *w = arg;
    s_reservation_t *r = w->stored;
    catalog_status_t status = s_read(w->self, txn, w->order_id, r);
    if (status != CATALOG_OK || r->state == (int)w->to)
        return status; /* unknown, failed, or already there: no change */
    if (r->state == S_RELEASED)
        return CATALOG_CONFLICT; /* a released reservation is final */
    if (w->to == S_RELEASED) {
        status = s_apply(w->self, txn, r, +1, NULL);
        if (status != CATALOG_OK)
            return status;
    }
    r->state = (int)w->to;
    return s_write(w->self, txn, w->order_id, r);
}

/* Moves order_id's reservation to state `to` (S_COMMITTED or
 * S_RELEASED), with the stock given back on release. */
static catalog_status_t s_transition(catalog_store_t *self, const char *order_id, s_state_t to)
{
    if (!self || !s_order_id_ok(order_id))
        return CATALOG_ERROR;
    s_reservation_t *r = malloc(sizeof *r);
    if (!r)
        return CATALOG_ERROR;
    catalog_status_t status =
        catalog_write(self, s_transition_txn,
                      &(s_write_t){.self = self, .order_id = order_id, .stored = r, .to = to});
    free(r);
    return status;
}

catalog_status_t catalog_stock_release(catalog_store_t *self, const char *order_id)
{
    return s_transition(self, order_id, S_RELEASED);
}

catalog_status_t catalog_stock_commit(catalog_store_t *self, const char *order_id)
{
    return s_transition(self, order_id, S_COMMITTED);
}

/*  cart_store.c - carts in LMDB (see cart_store.h).
 *
 *  Each write reads the cart's record inside its own write transaction
 *  (kv_write), changes the lines there and puts it back, or deletes it
 *  when no line is left; reads use the handle's kept read transaction
 *  (storage/reader.h). The record goes through the record codec, its list
 *  of lines through a RECORD_CUSTOM field whose hooks check every line
 *  (an id of the right length, a qty in 1..999, at most 100 lines, no
 *  product twice), so a damaged record is refused, never half used.
 *
 *  A write that finds no room (the disk or the map full, storage/kv.h)
 *  is CART_NO_SPACE, not logged here (the environment logs running out
 *  of room once): nothing of it is stored, and it succeeds once space is
 *  freed. Removing lines and clearing are freeing writes
 *  (kv_write_freeing): they run with the map at its limit.
 */
#include "storage/orders/cart_store.h"
#include "storage/orders/orders_env.h"
#include "protocol/clock.h"
#include "protocol/envelope.h"
#include "storage/kv.h"
#include "storage/reader.h"
#include "storage/record.h"

#include <czmq.h>
#include <string.h>

/* A record with every line at its longest, and room for the keys. */
#define S_RECORD_MAX (64 + CART_LINES_MAX * (CART_PRODUCT_ID_MAX + 32))

struct cart_store_shared_t {
    kv_t *kv;
    MDB_dbi carts;
};

struct cart_store_t {
    cart_store_shared_t *shared;
    store_reader_t reader;
};

/* ---- the record ---- */

static bool s_id_ok(const char *s, size_t len)
{
    return len > 0 && len <= CART_PRODUCT_ID_MAX && !memchr(s, '\0', len);
}

static int s_find(const cart_t *cart, const char *product_id)
{
    for (int i = 0; i < cart->n_lines; i++)
        if (streq(cart->lines[i].product_id, product_id))
            return i;
    return -1;
}

/* "lines": [{"product_id", "qty"}, ...] */
static bool s_lines_decode(record_reader_t *r, void *record)
{
    cart_t *cart = record;
    uint32_t count;
    if (!record_read_array(r, &count) || count > CART_LINES_MAX)
        return false;
    cart->n_lines = 0;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t pairs;
        if (!record_read_map(r, &pairs))
            return false;
        const char *id = NULL;
        size_t id_len = 0;
        int64_t qty = 0;
        for (uint32_t k = 0; k < pairs; k++) {
            const char *key;
            size_t key_len;
            if (!record_read_str(r, &key, &key_len))
                return false;
            bool ok;
            if (key_len == 10 && memcmp(key, "product_id", 10) == 0)
                ok = !id && record_read_str(r, &id, &id_len);
            else if (key_len == 3 && memcmp(key, "qty", 3) == 0)
                ok = qty == 0 && record_read_int64(r, &qty);
            else
                ok = record_skip(r); /* a later version's field */
            if (!ok)
                return false;
        }
        if (!id || !s_id_ok(id, id_len) || qty < 1 || qty > CART_QTY_MAX)
            return false;
        cart_line_t *line = &cart->lines[cart->n_lines];
        memcpy(line->product_id, id, id_len);
        line->product_id[id_len] = '\0';
        line->qty = (int)qty;
        if (s_find(cart, line->product_id) >= 0)
            return false; /* a product twice */
        cart->n_lines++;
    }
    return true;
}

static int s_lines_encode(msgpack_packer *pk, const void *record)
{
    const cart_t *cart = record;
    if (cart->n_lines < 0 || cart->n_lines > CART_LINES_MAX)
        return -1;
    if (msgpack_pack_array(pk, (size_t)cart->n_lines) != 0)
        return -1;
    for (int i = 0; i < cart->n_lines; i++) {
        const cart_line_t *line = &cart->lines[i];
        if (msgpack_pack_map(pk, 2) != 0 || mp_pack_str(pk, "product_id") != 0 ||
            mp_pack_str(pk, line->product_id) != 0 || mp_pack_str(pk, "qty") != 0 ||
            msgpack_pack_int64(pk, line->qty) != 0)
            return -1;
    }
    return 0;
}

static const record_field_t s_fields[] = {
    RECORD_CUSTOM_FIELD("lines", s_lines_decode, s_lines_encode, RECORD_REQUIRED),
    RECORD_STR_FIELD(cart_t, currency, "currency", RECORD_REQUIRED),
    RECORD_INT64_FIELD(cart_t, updated_at_ms, "updated_at", RECORD_REQUIRED),
};
static const record_table_t s_table = RECORD_TABLE(s_fields);

/* A failed LMDB call or write as a status: CART_NO_SPACE when it found
 * no room (not logged: the environment logs running out of room), else
 * CART_ERROR, logged. */
static cart_status_t s_fail(const char *what, int rc)
{
    if (kv_no_space(rc))
        return CART_NO_SPACE;
    zsys_error("cart_store: %s: %s", what, mdb_strerror(rc));
    return CART_ERROR;
}

static MDB_val s_key(const char *user_id)
{
    return (MDB_val){.mv_size = strlen(user_id), .mv_data = (void *)user_id};
}

static bool s_user_ok(const char *user_id)
{
    return user_id && user_id[0] && strnlen(user_id, CART_USER_ID_MAX + 1) <= CART_USER_ID_MAX;
}

/* The cart of user_id within txn into out (no lines when absent). */
static cart_status_t s_read(MDB_txn *txn, MDB_dbi dbi, const char *user_id, cart_t *out)
{
    memset(out, 0, sizeof *out);
    MDB_val key = s_key(user_id), val;
    int rc = mdb_get(txn, dbi, &key, &val);
    if (rc == MDB_NOTFOUND)
        return CART_OK;
    if (rc != 0)
        return s_fail("mdb_get carts", rc);
    record_status_t decoded = record_decode(&s_table, val.mv_data, val.mv_size, out);
    if (decoded != RECORD_OK || out->n_lines == 0 || strlen(out->currency) != CART_CURRENCY_LEN) {
        zsys_error("cart_store: malformed cart of %s: %s", user_id,
                   decoded != RECORD_OK ? record_strerror(decoded) : "no lines or no currency");
        memset(out, 0, sizeof *out);
        return CART_ERROR;
    }
    return CART_OK;
}

/* Puts cart back under user_id, or deletes the record when it has no
 * lines left. */
static cart_status_t s_put(MDB_txn *txn, MDB_dbi dbi, const char *user_id, cart_t *cart)
{
    MDB_val key = s_key(user_id);
    if (cart->n_lines == 0) {
        memset(cart, 0, sizeof *cart);
        int rc = mdb_del(txn, dbi, &key, NULL);
        return rc == 0 || rc == MDB_NOTFOUND ? CART_OK : s_fail("mdb_del carts", rc);
    }
    cart->updated_at_ms = clock_now_ms();
    mpout_t out;
    mpout_init(&out, S_RECORD_MAX);
    cart_status_t status = CART_OK;
    if (record_pack(&s_table, cart, &out) != 0) {
        zsys_error("cart_store: the cart of %s does not encode", user_id);
        status = CART_ERROR;
    } else {
        MDB_val val = {.mv_size = out.buf.size, .mv_data = out.buf.data};
        int rc = mdb_put(txn, dbi, &key, &val, 0);
        if (rc != 0)
            status = s_fail("mdb_put carts", rc);
    }
    mpout_destroy(&out);
    return status;
}

/* ---- handles ---- */

cart_store_shared_t *cart_store_shared_new(kv_t *env, char *err, size_t errlen)
{
    if (!env) {
        snprintf(err, errlen, "cart_store: no environment");
        return NULL;
    }
    cart_store_shared_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->kv = env;
    self->carts = kv_dbi(env, ORDERS_DB_CARTS);
    return self;
}

void cart_store_shared_destroy(cart_store_shared_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

cart_store_t *cart_store_open(cart_store_shared_t *shared)
{
    if (!shared)
        return NULL;
    cart_store_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = shared;
    if (!store_reader_open(&self->reader, shared->kv, "cart_store")) {
        free(self);
        return NULL;
    }
    return self;
}

void cart_store_close(cart_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    store_reader_close(&(*self_p)->reader);
    free(*self_p);
    *self_p = NULL;
}

cart_status_t cart_store_get(cart_store_t *self, const char *user_id, cart_t *out)
{
    if (!self || !out || !s_user_ok(user_id))
        return CART_ERROR;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return CART_ERROR;
    cart_status_t status = s_read(txn, self->shared->carts, user_id, out);
    store_reader_end(&self->reader);
    return status;
}

/* ---- writes ---- */

typedef enum { S_SET, S_REMOVE, S_CLEAR } s_kind_t;

/* One write, as it is carried to whichever thread runs it. */
typedef struct {
    MDB_dbi dbi;
    s_kind_t kind;
    const char *user_id;
    const char *product_id; /* S_SET */
    const char *currency;   /* S_SET with qty > 0 */
    int qty;
    const char *const *ids; /* S_REMOVE */
    int n_ids;
    cart_t cart; /* read, changed, then as written */
} s_write_t;

static cart_status_t s_set(s_write_t *w)
{
    cart_t *cart = &w->cart;
    int at = s_find(cart, w->product_id);
    if (w->qty == 0) {
        if (at >= 0) {
            memmove(&cart->lines[at], &cart->lines[at + 1],
                    (size_t)(cart->n_lines - at - 1) * sizeof cart->lines[0]);
            cart->n_lines--;
        }
        return CART_OK;
    }
    if (cart->n_lines > 0 && !streq(cart->currency, w->currency))
        return CART_OTHER_CURRENCY;
    if (at >= 0) {
        cart->lines[at].qty = w->qty;
        return CART_OK;
    }
    if (cart->n_lines == CART_LINES_MAX)
        return CART_FULL;
    cart_line_t *line = &cart->lines[cart->n_lines++];
    snprintf(line->product_id, sizeof line->product_id, "%s", w->product_id);
    line->qty = w->qty;
    snprintf(cart->currency, sizeof cart->currency, "%s", w->currency);
    return CART_OK;
}

static int s_write_txn(MDB_txn *txn, void *arg)
{
    s_write_t *w = arg;
    cart_status_t status = CART_OK;
    if (w->kind == S_CLEAR)
        memset(&w->cart, 0, sizeof w->cart);
    else
        status = s_read(txn, w->dbi, w->user_id, &w->cart);
    if (status != CART_OK)
        return status;
    if (w->kind == S_SET)
        status = s_set(w);
    for (int i = 0; w->kind == S_REMOVE && i < w->n_ids; i++) {
        int at = s_find(&w->cart, w->ids[i]);
        if (at < 0)
            continue;
        memmove(&w->cart.lines[at], &w->cart.lines[at + 1],
                (size_t)(w->cart.n_lines - at - 1) * sizeof w->cart.lines[0]);
        w->cart.n_lines--;
    }
    if (status != CART_OK)
        return status;
    return s_put(txn, w->dbi, w->user_id, &w->cart);
}

/* Runs w; *out (may be NULL) gets the cart after it. */
static cart_status_t s_write(cart_store_t *self, s_write_t *w, cart_t *out)
{
    int result = CART_ERROR;
    /* Removing lines frees (kv.h): it runs with the map at its limit. */
    int rc = w->kind == S_SET ? kv_write(self->shared->kv, s_write_txn, w, &result)
                              : kv_write_freeing(self->shared->kv, s_write_txn, w, &result);
    if (rc != 0)
        return s_fail("write transaction", rc);
    if (result == CART_OK && out)
        *out = w->cart;
    return (cart_status_t)result;
}

static bool s_currency_ok(const char *c)
{
    if (!c || strlen(c) != CART_CURRENCY_LEN)
        return false;
    for (int i = 0; i < CART_CURRENCY_LEN; i++)
        if (c[i] < 'A' || c[i] > 'Z')
            return false;
    return true;
}

cart_status_t cart_store_set(cart_store_t *self, const char *user_id, const char *product_id,
                             const char *currency, int qty, cart_t *out)
{
    if (!self || !s_user_ok(user_id) || !product_id ||
        !s_id_ok(product_id, strnlen(product_id, CART_PRODUCT_ID_MAX + 1)) || qty < 0 ||
        qty > CART_QTY_MAX || (qty > 0 && !s_currency_ok(currency)))
        return CART_ERROR;
    s_write_t *w = calloc(1, sizeof *w); /* a cart is a few KiB */
    if (!w)
        return CART_ERROR;
    *w = (s_write_t){.dbi = self->shared->carts,
                     .kind = S_SET,
                     .user_id = user_id,
                     .product_id = product_id,
                     .currency = currency,
                     .qty = qty};
    cart_status_t status = s_write(self, w, out);
    free(w);
    return status;
}

cart_status_t cart_store_remove(cart_store_t *self, const char *user_id, const char *const *ids,
                                int n, cart_t *out)
{
    if (!self || !s_user_ok(user_id) || n < 0 || (n > 0 && !ids))
        return CART_ERROR;
    s_write_t *w = calloc(1, sizeof *w);
    if (!w)
        return CART_ERROR;
    *w = (s_write_t){
        .dbi = self->shared->carts, .kind = S_REMOVE, .user_id = user_id, .ids = ids, .n_ids = n};
    cart_status_t status = s_write(self, w, out);
    free(w);
    return status;
}

cart_status_t cart_store_clear(cart_store_t *self, const char *user_id)
{
    if (!self || !s_user_ok(user_id))
        return CART_ERROR;
    s_write_t *w = calloc(1, sizeof *w);
    if (!w)
        return CART_ERROR;
    *w = (s_write_t){.dbi = self->shared->carts, .kind = S_CLEAR, .user_id = user_id};
    cart_status_t status = s_write(self, w, NULL);
    free(w);
    return status;
}

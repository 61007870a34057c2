/*  retailctl_stock.c - the catalog's stock as a whole (retailctl_stock.h).
 *
 *  Two walks of pages, one request at a time (retailctl_ask): products
 *  into a hash of id -> stock, reservations into a hash of order id ->
 *  its state and lines, adding each live or committed line's qty to its
 *  product's held units on the way. A product's units are then its stock
 *  plus its held units, one lookup each.
 */
#include "tools/retailctl_stock.h"
#include "tools/retailctl_ask.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <string.h>

#include "protocol/envelope.h"

#define S_PAGES_MAX 1000000
#define S_CURSOR_MAX 512

struct stock_view_t {
    zhashx_t *stock;        /* product id -> int64_t */
    zhashx_t *held;         /* product id -> int64_t: reserved + committed qty */
    zhashx_t *reservations; /* order id -> stock_reservation_t */
};

typedef struct {
    mdpcli_t *client;
    int timeout_ms;
    uint64_t *next_id;
    const char *who;
    msgpack_zone zone;
    zframe_t *frame;
    envelope_reply_t reply;
} s_asker_t;

static void s_free(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_reservation_free(void **item)
{
    stock_reservation_t *r = *item;
    if (r) {
        free(r->lines);
        free(r);
    }
    *item = NULL;
}

static zhashx_t *s_hash(zhashx_destructor_fn *destructor)
{
    zhashx_t *h = zhashx_new();
    if (h) {
        zhashx_set_destructor(h, destructor);
        zhashx_set_duplicator(h, NULL);
    }
    return h;
}

static bool s_str(const msgpack_object *o, char *out, size_t size)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

static bool s_int(const msgpack_object *o, int64_t *out)
{
    if (o && o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *out = (int64_t)o->via.u64;
        return true;
    }
    if (o && o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = o->via.i64;
        return true;
    }
    return false;
}

/* Adds n to the int64 under key (a new entry at 0 first). */
static int s_add(zhashx_t *h, const char *key, int64_t n)
{
    int64_t *v = zhashx_lookup(h, key);
    if (!v) {
        v = calloc(1, sizeof *v);
        if (!v || zhashx_insert(h, key, v) != 0) {
            free(v);
            return -1;
        }
    }
    *v += n;
    return 0;
}

/* One page of op with {limit, cursor?}; false when no usable reply
 * (said). */
static bool s_page(s_asker_t *a, const char *service, const char *op, int limit, const char *cursor,
                   const msgpack_object **items, char next[S_CURSOR_MAX])
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    bool sort = strcmp(op, "product.search") == 0;
    bool packed =
        msgpack_pack_map(&pk, 1 + (cursor[0] != '\0') + sort) == 0 &&
        mp_pack_str(&pk, "limit") == 0 && msgpack_pack_int(&pk, limit) == 0 &&
        (!cursor[0] || (mp_pack_str(&pk, "cursor") == 0 && mp_pack_str(&pk, cursor) == 0)) &&
        (!sort || (mp_pack_str(&pk, "sort") == 0 && mp_pack_str(&pk, "newest") == 0));
    bool ok = packed && retailctl_ask(a->client, a->timeout_ms, ++*a->next_id, service, op,
                                      args.data, args.size, &a->zone, &a->frame, &a->reply, a->who);
    msgpack_sbuffer_destroy(&args);
    if (!ok)
        return false;
    if (!a->reply.ok) {
        fprintf(stderr, "%s: %s %s: %s\n", a->who, service, op, err_code_name(a->reply.code));
        return false;
    }
    *items = mp_map_get(&a->reply.data, "items");
    if (!*items || (*items)->type != MSGPACK_OBJECT_ARRAY) {
        fprintf(stderr, "%s: %s %s answered no items\n", a->who, service, op);
        return false;
    }
    const msgpack_object *n = mp_map_get(&a->reply.data, "next_cursor");
    next[0] = '\0';
    if (n && n->type != MSGPACK_OBJECT_NIL && !s_str(n, next, S_CURSOR_MAX)) {
        fprintf(stderr, "%s: %s %s answered a cursor out of shape\n", a->who, service, op);
        return false;
    }
    return true;
}

static int s_products(stock_view_t *self, s_asker_t *a)
{
    char cursor[S_CURSOR_MAX] = "", next[S_CURSOR_MAX];
    for (int page = 0; page < S_PAGES_MAX; page++) {
        const msgpack_object *items;
        if (!s_page(a, "catalog", "product.search", 100, cursor, &items, next))
            return -1;
        for (uint32_t i = 0; i < items->via.array.size; i++) {
            const msgpack_object *p = &items->via.array.ptr[i];
            char id[STOCK_ID_MAX + 1];
            int64_t stock;
            if (p->type != MSGPACK_OBJECT_MAP || !s_str(mp_map_get(p, "id"), id, sizeof id) ||
                !s_int(mp_map_get(p, "stock"), &stock)) {
                fprintf(stderr, "%s: product.search answered a product without id or stock\n",
                        a->who);
                return -1;
            }
            if (s_add(self->stock, id, stock) != 0)
                return -1;
        }
        if (!next[0])
            return 0;
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    return -1;
}

static int s_reservations(stock_view_t *self, s_asker_t *a)
{
    char cursor[S_CURSOR_MAX] = "", next[S_CURSOR_MAX];
    for (int page = 0; page < S_PAGES_MAX; page++) {
        const msgpack_object *items;
        if (!s_page(a, "catalog", "stock.reservations", 1000, cursor, &items, next))
            return -1;
        for (uint32_t i = 0; i < items->via.array.size; i++) {
            const msgpack_object *r = &items->via.array.ptr[i];
            const msgpack_object *lines =
                r->type == MSGPACK_OBJECT_MAP ? mp_map_get(r, "lines") : NULL;
            char order[STOCK_ID_MAX + 1];
            stock_reservation_t *res = calloc(1, sizeof *res);
            if (!res)
                return -1;
            if (!lines || lines->type != MSGPACK_OBJECT_ARRAY ||
                !s_str(mp_map_get(r, "order_id"), order, sizeof order) ||
                !s_str(mp_map_get(r, "state"), res->state, sizeof res->state) ||
                !(res->lines = calloc(lines->via.array.size ? lines->via.array.size : 1,
                                      sizeof *res->lines))) {
                fprintf(stderr, "%s: stock.reservations answered one out of shape\n", a->who);
                s_reservation_free((void **)&res);
                return -1;
            }
            bool held = strcmp(res->state, "reserved") == 0 || strcmp(res->state, "committed") == 0;
            for (uint32_t k = 0; k < lines->via.array.size; k++) {
                const msgpack_object *l = &lines->via.array.ptr[k];
                stock_line_t *line = &res->lines[res->nlines];
                if (l->type != MSGPACK_OBJECT_MAP ||
                    !s_str(mp_map_get(l, "product_id"), line->product_id,
                           sizeof line->product_id) ||
                    !s_int(mp_map_get(l, "qty"), &line->qty)) {
                    fprintf(stderr, "%s: stock.reservations answered a line out of shape\n",
                            a->who);
                    s_reservation_free((void **)&res);
                    return -1;
                }
                res->nlines++;
                if (held && s_add(self->held, line->product_id, line->qty) != 0) {
                    s_reservation_free((void **)&res);
                    return -1;
                }
            }
            if (zhashx_insert(self->reservations, order, res) != 0) {
                /* an order's reservation twice: pages overlapped, or worse */
                fprintf(stderr, "%s: stock.reservations named order %s twice\n", a->who, order);
                s_reservation_free((void **)&res);
                return -1;
            }
        }
        if (!next[0])
            return 0;
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    return -1;
}

stock_view_t *stock_view_read(mdpcli_t *client, int timeout_ms, uint64_t *next_id, const char *who)
{
    stock_view_t *self = calloc(1, sizeof *self);
    s_asker_t a = {.client = client, .timeout_ms = timeout_ms, .next_id = next_id, .who = who};
    bool zone = msgpack_zone_init(&a.zone, 4096);
    if (!self || !zone || !(self->stock = s_hash(s_free)) || !(self->held = s_hash(s_free)) ||
        !(self->reservations = s_hash(s_reservation_free))) {
        fprintf(stderr, "%s: out of memory\n", who);
        stock_view_destroy(&self);
    } else if (s_products(self, &a) != 0 || s_reservations(self, &a) != 0)
        stock_view_destroy(&self);
    zframe_destroy(&a.frame);
    if (zone)
        msgpack_zone_destroy(&a.zone);
    return self;
}

void stock_view_destroy(stock_view_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    stock_view_t *self = *self_p;
    zhashx_destroy(&self->stock);
    zhashx_destroy(&self->held);
    zhashx_destroy(&self->reservations);
    free(self);
    *self_p = NULL;
}

size_t stock_view_product_count(const stock_view_t *self)
{
    return zhashx_size(self->stock);
}

size_t stock_view_reservation_count(const stock_view_t *self)
{
    return zhashx_size(self->reservations);
}

bool stock_view_units(const stock_view_t *self, const char *product_id, int64_t *units)
{
    const int64_t *stock = zhashx_lookup(self->stock, product_id);
    if (!stock)
        return false;
    const int64_t *held = zhashx_lookup(self->held, product_id);
    *units = *stock + (held ? *held : 0);
    return true;
}

const stock_reservation_t *stock_view_reservation(const stock_view_t *self, const char *order_id)
{
    return zhashx_lookup(self->reservations, order_id);
}

int stock_view_write(const stock_view_t *self, FILE *out)
{
    json_t *products = json_object();
    json_t *doc =
        products ? json_pack("{s:i, s:o}", "stock_ledger", 1, "products", products) : NULL;
    int rc = -1;
    if (!doc)
        goto done;
    /* no lookup in self->stock while it is walked: that moves its cursor */
    for (int64_t *stock = zhashx_first(self->stock); stock; stock = zhashx_next(self->stock)) {
        const char *id = zhashx_cursor(self->stock);
        const int64_t *held = zhashx_lookup(self->held, id);
        int64_t units = *stock + (held ? *held : 0);
        if (json_object_set_new(products, id, json_integer((json_int_t)units)) != 0)
            goto done;
    }
    if (json_dumpf(doc, out, JSON_COMPACT | JSON_SORT_KEYS) == 0 && fputc('\n', out) != EOF)
        rc = 0;
done:
    json_decref(doc);
    return rc;
}

zhashx_t *stock_ledger_read(const char *path, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, 0, &jerr);
    zhashx_t *units = NULL;
    json_t *products = json_object_get(doc, "products");
    if (!doc || json_integer_value(json_object_get(doc, "stock_ledger")) != 1 ||
        !json_is_object(products)) {
        snprintf(err, errlen, "%s is not a stock ledger (retailctl stock-ledger writes one)", path);
        goto done;
    }
    if (!(units = s_hash(s_free))) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    const char *id;
    json_t *v;
    json_object_foreach(products, id, v)
    {
        if (!json_is_integer(v) || strlen(id) > STOCK_ID_MAX ||
            s_add(units, id, json_integer_value(v)) != 0) {
            snprintf(err, errlen, "%s: product %.64s has no whole number of units", path, id);
            zhashx_destroy(&units);
            goto done;
        }
    }
done:
    json_decref(doc);
    return units;
}

int retailctl_stock_ledger(mdpcli_t *client, int timeout_ms)
{
    uint64_t next_id = 0;
    stock_view_t *view = stock_view_read(client, timeout_ms, &next_id, "retailctl stock-ledger");
    if (!view)
        return 3;
    int rc = stock_view_write(view, stdout) == 0 ? 0 : 3;
    if (rc != 0)
        fprintf(stderr, "retailctl stock-ledger: cannot write the ledger: %s\n", strerror(errno));
    stock_view_destroy(&view);
    return rc;
}

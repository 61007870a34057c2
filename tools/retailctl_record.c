/*  retailctl_record.c - `retailctl check-record` (retailctl_record.h):
 *  reading the records, and what was acknowledged.
 *
 *  Two passes. Reading: each line is parsed once (jansson), and what it
 *  asks of the system is kept (retailctl_record_impl.h): users and orders
 *  in lists, carts as a model per user (product -> qty, or unknown) and
 *  products as a model per product, each updated in the records' order;
 *  idempotency keys and buyers for the checks of
 *  retailctl_record_effects.c. Asking: one request at a time, each reply
 *  matched by its id and decoded into a zone that lives for that question
 *  only.
 */
#include "tools/retailctl_record_impl.h"
#include "tools/retailctl_ask.h"
#include "tools/retailctl_stock.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#include "protocol/envelope.h"
#include "tools/harness/record.h"

#define S_EXIT_OK 0
#define S_EXIT_PROBLEMS 1
#define S_EXIT_USAGE 2
#define S_EXIT_UNREACHABLE 3
#define S_TEXT_MAX RECORD_TEXT_MAX

/* One product of a modelled cart. */
typedef struct {
    int64_t qty;  /* 0: not in the cart */
    bool unknown; /* an unknown outcome may have changed it */
    bool seen;    /* the system's cart has it */
} line_t;

static int s_add(check_t *self, list_t *list, const char *id, const char *what, int64_t amount,
                 size_t line)
{
    if (list->count == list->cap) {
        size_t cap = list->cap ? list->cap * 2 : 64;
        item_t *grown = realloc(list->items, cap * sizeof *grown);
        if (!grown)
            return -1;
        list->items = grown;
        list->cap = cap;
    }
    item_t *it = &list->items[list->count++];
    snprintf(it->id, sizeof it->id, "%s", id);
    snprintf(it->what, sizeof it->what, "%s", what ? what : "");
    it->amount = amount;
    it->file = self->file;
    it->line = line;
    return 0;
}

void record_problem(check_t *self, const char *kind, const char *id, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s %s: ", kind, id);
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    self->problems++;
}

static void s_line_destroy(void **item)
{
    free(*item);
    *item = NULL;
}

static void s_cart_destroy(void **item)
{
    zhashx_destroy((zhashx_t **)item);
}

static zhashx_t *s_cart(check_t *self, const char *user)
{
    zhashx_t *cart = zhashx_lookup(self->carts, user);
    if (cart)
        return cart;
    cart = zhashx_new();
    if (!cart)
        return NULL;
    zhashx_set_destructor(cart, s_line_destroy);
    zhashx_set_duplicator(cart, NULL);
    if (zhashx_insert(self->carts, user, cart) != 0) {
        zhashx_destroy(&cart);
        return NULL;
    }
    return cart;
}

/* Sets product's line in cart (a copy is kept). */
static int s_cart_set(zhashx_t *cart, const char *product, int64_t qty, bool unknown)
{
    line_t *line = zhashx_lookup(cart, product);
    if (!line) {
        line = calloc(1, sizeof *line);
        if (!line || zhashx_insert(cart, product, line) != 0) {
            free(line);
            return -1;
        }
    }
    /* An unknown stays unknown: a request given up on may land later. */
    line->unknown = line->unknown || unknown;
    line->qty = qty;
    return 0;
}

/* Every line of the cart: emptied (a clear, a checkout), or unknown. */
static void s_cart_all(zhashx_t *cart, bool unknown)
{
    for (line_t *line = zhashx_first(cart); line; line = zhashx_next(cart)) {
        if (unknown)
            line->unknown = true;
        else
            line->qty = 0;
    }
}

static const char *s_str(json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

static void s_free(void **item)
{
    free(*item);
    *item = NULL;
}

zhashx_t *record_hash(void)
{
    zhashx_t *h = zhashx_new();
    if (h) {
        zhashx_set_destructor(h, s_free);
        zhashx_set_duplicator(h, NULL);
    }
    return h;
}

/* A struct of size under key in h, made zeroed when absent; NULL when out
 * of memory. */
static void *s_entry(zhashx_t *h, const char *key, size_t size, bool *made)
{
    void *e = zhashx_lookup(h, key);
    if (made)
        *made = !e;
    if (e)
        return e;
    e = calloc(1, size);
    if (e && zhashx_insert(h, key, e) != 0) {
        free(e);
        e = NULL;
    }
    return e;
}

static int s_mark(zhashx_t *h, const char *key)
{
    return s_entry(h, key, 1, NULL) ? 0 : -1;
}

/* A checkout line: its idempotency key (one order per key, and every
 * acknowledged reply to it naming that order) and its buyer. */
static int s_take_checkout(check_t *self, json_t *keys, json_t *ids, bool ack, const char *user,
                           size_t n)
{
    const char *order = ack ? s_str(ids, "order_id") : NULL;
    if (order && s_mark(self->acked_orders, order) != 0)
        return -1;
    if (!user)
        return 0; /* no user to scope a key by, no orders to count */
    buyer_t *buyer = s_entry(self->buyers, user, sizeof *buyer, NULL);
    if (!buyer)
        return -1;
    const char *key = s_str(keys, "idempotency_key");
    if (!key) {
        buyer->keyless_unknown += !ack;
        return 0;
    }
    char scoped[2 * S_TEXT_MAX + 2];
    snprintf(scoped, sizeof scoped, "%s\n%s", user, key);
    idem_t *idem = s_entry(self->keys, scoped, sizeof *idem, NULL);
    if (!idem)
        return -1;
    snprintf(idem->user, sizeof idem->user, "%s", user);
    if (!order)
        return 0;
    if (!idem->order_id[0]) {
        snprintf(idem->order_id, sizeof idem->order_id, "%s", order);
        idem->file = self->file;
        idem->line = n;
    } else if (strcmp(idem->order_id, order) != 0)
        record_problem(self, "idempotency_key", key,
                       "of user %s answered order %s (%s:%zu) and order %s (%s:%zu)", user,
                       idem->order_id, idem->file, idem->line, order, self->file, n);
    return 0;
}

/* A catalog write: the created product's model, updated in order. */
static int s_take_product(check_t *self, const char *op, json_t *keys, json_t *ids, bool ack,
                          size_t n, const char **why)
{
    bool create = strcmp(op, "product.create") == 0;
    const char *id = create ? (ack ? s_str(ids, "product_id") : NULL) : s_str(keys, "product_id");
    if (create && ack && (!id || !s_str(keys, "sku"))) {
        *why = "an acknowledged product.create needs keys.sku and ids.product_id";
        return -1;
    }
    if (!id && !create) {
        *why = "a product write needs keys.product_id";
        return -1;
    }
    if (!id)
        return 0; /* a create of unknown outcome: no id to look for */
    json_t *name = json_object_get(keys, "name"), *price = json_object_get(keys, "price_cents"),
           *stock = json_object_get(keys, "stock"), *version = json_object_get(ids, "version");
    bool deletes = strcmp(op, "product.delete") == 0;
    /* any line that may set a product's stock takes it out of the ledger */
    if ((stock || deletes) && s_mark(self->stock_touched, id) != 0)
        return -1;
    bool made;
    product_t *p =
        create ? s_entry(self->products, id, sizeof *p, &made) : zhashx_lookup(self->products, id);
    if (!p)
        return create ? -1 : 0; /* not made by these records: nothing to hold it to */
    if (create) {
        snprintf(p->sku, sizeof p->sku, "%s", s_str(keys, "sku"));
        p->file = self->file;
        p->line = n;
    }
    if (deletes) {
        p->deleted = p->deleted || ack;
        p->delete_unknown = p->delete_unknown || !ack;
        return 0;
    }
    if (name && json_is_string(name)) {
        p->name_unknown = p->name_unknown || !ack;
        snprintf(p->name, sizeof p->name, "%s", json_string_value(name));
    }
    if (price && json_is_integer(price)) {
        p->price_unknown = p->price_unknown || !ack;
        p->price_cents = json_integer_value(price);
    }
    if (stock && json_is_integer(stock)) {
        p->stock_unknown = p->stock_unknown || !ack;
        p->stock = json_integer_value(stock);
    } else if (create)
        p->stock = 0; /* created without stock: none */
    p->version_unknown = p->version_unknown || !ack;
    if (ack && json_is_integer(version))
        p->version = json_integer_value(version);
    return 0;
}

/* Takes one record line into the model. 0, or -1 with why. */
static int s_take(check_t *self, json_t *l, size_t n, const char **why)
{
    const char *op = s_str(l, "op");
    json_t *ack_json = json_object_get(l, "ack");
    if (!op || !json_is_boolean(ack_json) || !json_is_integer(json_object_get(l, "vu")) ||
        !s_str(l, "step") || !s_str(l, "service")) {
        *why = "a record line needs vu, step, service, op and ack";
        return -1;
    }
    bool ack = json_is_true(ack_json);
    json_t *keys = json_object_get(l, "keys");
    json_t *ids = json_object_get(l, "ids");
    if (!json_is_object(keys) || (ack && !json_is_object(ids))) {
        *why = "keys (and ids, when ack) must be objects";
        return -1;
    }
    const char *user = s_str(l, "user_id");
    if (strcmp(op, "auth.register") == 0) {
        const char *email = s_str(keys, "email"), *id = s_str(ids, "user_id");
        if (ack && (!email || !id)) {
            *why = "an acknowledged auth.register needs keys.email and ids.user_id";
            return -1;
        }
        return ack ? s_add(self, &self->users, id, email, 0, n) : 0;
    }
    if (strcmp(op, "cart.checkout") == 0 || strcmp(op, "order.create") == 0) {
        if (ack) {
            const char *id = s_str(ids, "order_id"), *status = s_str(ids, "status");
            json_t *total = json_object_get(ids, "total_cents");
            if (!id || !status || !json_is_integer(total)) {
                *why = "an acknowledged order needs ids.order_id, status and total_cents";
                return -1;
            }
            if (s_add(self, &self->orders, id, status, json_integer_value(total), n) != 0)
                return -1;
        }
        if (strcmp(op, "cart.checkout") == 0 && user) {
            zhashx_t *cart = s_cart(self, user);
            if (!cart)
                return -1;
            s_cart_all(cart, !ack);
        }
        return s_take_checkout(self, keys, ids, ack, user, n);
    }
    if (strcmp(s_str(l, "service"), "catalog") == 0 &&
        (strcmp(op, "product.create") == 0 || strcmp(op, "product.update") == 0 ||
         strcmp(op, "product.set_stock") == 0 || strcmp(op, "product.delete") == 0))
        return s_take_product(self, op, keys, ids, ack, n, why);
    if (strcmp(op, "order.cancel") == 0) {
        const char *id = s_str(keys, "order_id");
        if (ack && !id) {
            *why = "an acknowledged order.cancel needs keys.order_id";
            return -1;
        }
        return ack ? s_add(self, &self->cancels, id, NULL, 0, n) : 0;
    }
    if (strcmp(op, "payment.refund") == 0) {
        const char *id = s_str(keys, "payment_id");
        json_t *refunded = json_object_get(ids, "refunded_cents");
        if (ack && (!id || !json_is_integer(refunded))) {
            *why = "an acknowledged payment.refund needs keys.payment_id and ids.refunded_cents";
            return -1;
        }
        return ack ? s_add(self, &self->refunds, id, NULL, json_integer_value(refunded), n) : 0;
    }
    bool set = strcmp(op, "cart.set_item") == 0, remove = strcmp(op, "cart.remove_item") == 0,
         clear = strcmp(op, "cart.clear") == 0;
    if (!(set || remove || clear) || !user)
        return 0; /* nothing the check holds the system to */
    zhashx_t *cart = s_cart(self, user);
    if (!cart)
        return -1;
    if (clear) {
        s_cart_all(cart, !ack);
        return 0;
    }
    const char *product = s_str(keys, "product_id");
    json_t *qty = json_object_get(keys, "qty");
    if (!product || (set && ack && !json_is_integer(qty))) {
        *why = "a cart change needs keys.product_id (and keys.qty)";
        return -1;
    }
    return s_cart_set(cart, product, set && ack ? json_integer_value(qty) : 0, !ack);
}

static int s_read(check_t *self, const char *path)
{
    self->file = path;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "retailctl check-record: cannot open %s: %s\n", path, strerror(errno));
        return S_EXIT_USAGE;
    }
    char *line = NULL;
    size_t cap = 0, n = 0;
    int rc = S_EXIT_OK;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) >= 0) {
        n++;
        json_error_t jerr;
        json_t *l = json_loadb(line, (size_t)len, 0, &jerr);
        const char *why = "not a JSON object";
        bool ok = json_is_object(l);
        if (ok && n == 1) {
            ok = s_str(l, "record") && strcmp(s_str(l, "record"), "loadgen") == 0 &&
                 json_integer_value(json_object_get(l, "version")) == RECORD_VERSION;
            why = "the first line is not a loadgen record's header (version 1)";
        } else if (ok)
            ok = s_take(self, l, n, &why) == 0;
        json_decref(l);
        if (!ok) {
            fprintf(stderr, "retailctl check-record: %s:%zu: %s\n", path, n, why);
            rc = S_EXIT_USAGE;
            break;
        }
    }
    if (rc == S_EXIT_OK && n == 0) {
        fprintf(stderr, "retailctl check-record: %s is empty\n", path);
        rc = S_EXIT_USAGE;
    }
    free(line);
    fclose(f);
    return rc;
}

bool record_ask_args(check_t *self, const char *service, const char *op, const void *args,
                     size_t args_len)
{
    return retailctl_ask(self->client, self->opts->timeout_ms, ++self->next_id, service, op, args,
                         args_len, &self->zone, &self->frame, &self->reply,
                         "retailctl check-record");
}

bool record_ask(check_t *self, const char *service, const char *op, const char *key,
                const char *value)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    bool ok = msgpack_pack_map(&pk, 1) == 0 && mp_pack_str(&pk, key) == 0 &&
              mp_pack_str(&pk, value) == 0 &&
              record_ask_args(self, service, op, args.data, args.size);
    msgpack_sbuffer_destroy(&args);
    return ok;
}

bool record_obj_str(const msgpack_object *o, char *out, size_t size)
{
    if (!o || o->type != MSGPACK_OBJECT_STR || o->via.str.size >= size)
        return false;
    memcpy(out, o->via.str.ptr, o->via.str.size);
    out[o->via.str.size] = '\0';
    return true;
}

bool record_obj_int(const msgpack_object *o, int64_t *out)
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

/* True when an order acknowledged in status `from` may now be in `to`
 * (API.md's transitions). */
static bool s_reachable(const char *from, const char *to)
{
    static const char *const s_next[][6] = {
        {"pending", "paid", "payment_failed", "shipped", "delivered", "cancelled"},
        {"paid", "shipped", "delivered", "cancelled", "refunded", NULL},
        {"shipped", "delivered", "refunded", NULL, NULL, NULL},
        {"delivered", "refunded", NULL, NULL, NULL, NULL},
        {"payment_failed", "cancelled", NULL, NULL, NULL, NULL},
        {"cancelled", "refunded", NULL, NULL, NULL, NULL},
    };
    if (strcmp(from, to) == 0 || strcmp(from, "pending") == 0)
        return true;
    for (size_t i = 0; i < sizeof s_next / sizeof *s_next; i++) {
        if (strcmp(s_next[i][0], from) != 0)
            continue;
        for (size_t k = 1; k < 6 && s_next[i][k]; k++)
            if (strcmp(s_next[i][k], to) == 0)
                return true;
    }
    return false;
}

/* The order's status and total as the system has them now; false when
 * the order is not there (a problem is counted) or no reply came. */
static int s_order(check_t *self, const item_t *it, char status[64], int64_t *total)
{
    if (!record_ask(self, "orders", "order.get", "id", it->id))
        return -1;
    if (!self->reply.ok) {
        record_problem(self, "order", it->id, "acknowledged (%s:%zu) but not there: %s", it->file,
                       it->line, err_code_name(self->reply.code));
        return 0;
    }
    const msgpack_object *order = mp_map_get(&self->reply.data, "order");
    if (!order || !record_obj_str(mp_map_get(order, "status"), status, 64) ||
        !record_obj_int(mp_map_get(order, "total_cents"), total)) {
        record_problem(self, "order", it->id, "order.get answered no status or total");
        return 0;
    }
    return 1;
}

static int s_check_orders(check_t *self)
{
    for (size_t i = 0; i < self->orders.count; i++) {
        const item_t *it = &self->orders.items[i];
        char status[64];
        int64_t total;
        int rc = s_order(self, it, status, &total);
        if (rc < 0)
            return -1;
        if (rc == 0)
            continue;
        if (total != it->amount)
            record_problem(self, "order", it->id, "total %" PRId64 ", acknowledged %" PRId64, total,
                           it->amount);
        if (!s_reachable(it->what, status))
            record_problem(self, "order", it->id, "status %s cannot follow the acknowledged %s",
                           status, it->what);
    }
    for (size_t i = 0; i < self->cancels.count; i++) {
        const item_t *it = &self->cancels.items[i];
        char status[64];
        int64_t total;
        int rc = s_order(self, it, status, &total);
        if (rc < 0)
            return -1;
        if (rc > 0 && strcmp(status, "cancelled") != 0 && strcmp(status, "refunded") != 0)
            record_problem(self, "cancel", it->id, "the order is %s, its cancel was acknowledged",
                           status);
    }
    return 0;
}

static int s_check_refunds(check_t *self)
{
    for (size_t i = 0; i < self->refunds.count; i++) {
        const item_t *it = &self->refunds.items[i];
        if (!record_ask(self, "payments", "payment.get", "id", it->id))
            return -1;
        const msgpack_object *p = self->reply.ok ? mp_map_get(&self->reply.data, "payment") : NULL;
        int64_t refunded = 0;
        if (!p || !record_obj_int(mp_map_get(p, "refunded_cents"), &refunded))
            record_problem(self, "refund", it->id, "payment.get: %s",
                           self->reply.ok ? "no refunded_cents" : err_code_name(self->reply.code));
        else if (refunded < it->amount)
            record_problem(self, "refund", it->id,
                           "refunded %" PRId64 ", acknowledged %" PRId64 " (%s:%zu)", refunded,
                           it->amount, it->file, it->line);
    }
    return 0;
}

static int s_check_carts(check_t *self)
{
    for (zhashx_t *model = zhashx_first(self->carts); model; model = zhashx_next(self->carts)) {
        const char *user = zhashx_cursor(self->carts);
        if (!record_ask(self, "orders", "cart.get", "user_id", user))
            return -1;
        if (!self->reply.ok) {
            record_problem(self, "cart", user, "cart.get: %s", err_code_name(self->reply.code));
            continue;
        }
        const msgpack_object *items = mp_map_get(&self->reply.data, "items");
        if (!items || items->type != MSGPACK_OBJECT_ARRAY) {
            record_problem(self, "cart", user, "cart.get answered no items");
            continue;
        }
        /* What is there, against the model. */
        for (uint32_t i = 0; i < items->via.array.size; i++) {
            const msgpack_object *item = &items->via.array.ptr[i];
            char product[S_TEXT_MAX];
            int64_t qty;
            if (item->type != MSGPACK_OBJECT_MAP ||
                !record_obj_str(mp_map_get(item, "product_id"), product, sizeof product) ||
                !record_obj_int(mp_map_get(item, "qty"), &qty)) {
                record_problem(self, "cart", user, "a line without product_id or qty");
                continue;
            }
            line_t *line = zhashx_lookup(model, product);
            self->cart_lines_checked++;
            if (!line)
                record_problem(self, "cart", user,
                               "holds %s x%" PRId64 ", which no change asked for", product, qty);
            else if (!line->unknown && line->qty != qty)
                record_problem(self, "cart", user, "holds %s x%" PRId64 ", acknowledged x%" PRId64,
                               product, qty, line->qty);
            if (line)
                line->seen = true;
        }
        /* What should be there and is not. */
        for (line_t *line = zhashx_first(model); line; line = zhashx_next(model)) {
            if (!line->unknown && line->qty > 0 && !line->seen)
                record_problem(self, "cart", user, "lost %s x%" PRId64 " (acknowledged)",
                               (const char *)zhashx_cursor(model), line->qty);
        }
    }
    return 0;
}

static int s_check_users(check_t *self, users_shared_t *users)
{
    for (size_t i = 0; i < self->users.count; i++) {
        const item_t *it = &self->users.items[i];
        char id[S_TEXT_MAX] = "", err[256] = "";
        int found = users_find_by_email(users, it->what, id, sizeof id, err, sizeof err);
        if (found < 0) {
            fprintf(stderr, "retailctl check-record: the account store: %s\n", err);
            return -1;
        }
        if (found == 0)
            record_problem(self, "user", it->id, "%s registered (%s:%zu) but not there", it->what,
                           it->file, it->line);
        else if (strcmp(id, it->id) != 0)
            record_problem(self, "user", it->id, "%s belongs to %s now", it->what, id);
    }
    return 0;
}

/* Each product the records created, against what their writes left. */
static int s_check_products(check_t *self)
{
    for (product_t *p = zhashx_first(self->products); p; p = zhashx_next(self->products)) {
        const char *id = zhashx_cursor(self->products);
        if (!record_ask(self, "catalog", "product.get", "id", id))
            return -1;
        self->products_checked++;
        const msgpack_object *got =
            self->reply.ok ? mp_map_get(&self->reply.data, "product") : NULL;
        if (!self->reply.ok && self->reply.code == ERR_NOT_FOUND) {
            if (!p->deleted && !p->delete_unknown)
                record_problem(self, "product", id, "created (%s:%zu) but not there", p->file,
                               p->line);
            continue;
        }
        if (!got || got->type != MSGPACK_OBJECT_MAP) {
            record_problem(self, "product", id, "product.get: %s",
                           self->reply.ok ? "no product" : err_code_name(self->reply.code));
            continue;
        }
        if (p->deleted) {
            record_problem(self, "product", id, "deleted (acknowledged) but still there");
            continue;
        }
        char sku[S_TEXT_MAX] = "", name[S_TEXT_MAX] = "";
        int64_t price = -1, stock = -1, version = -1;
        record_obj_str(mp_map_get(got, "sku"), sku, sizeof sku);
        record_obj_str(mp_map_get(got, "name"), name, sizeof name);
        record_obj_int(mp_map_get(got, "price_cents"), &price);
        record_obj_int(mp_map_get(got, "stock"), &stock);
        record_obj_int(mp_map_get(got, "version"), &version);
        if (strcmp(sku, p->sku) != 0)
            record_problem(self, "product", id, "sku %s, created as %s", sku, p->sku);
        if (!p->name_unknown && p->name[0] && strcmp(name, p->name) != 0)
            record_problem(self, "product", id, "name '%s', acknowledged '%s'", name, p->name);
        if (!p->price_unknown && price != p->price_cents)
            record_problem(self, "product", id, "price %" PRId64 ", acknowledged %" PRId64, price,
                           p->price_cents);
        if (!p->stock_unknown && stock != p->stock)
            record_problem(self, "product", id, "stock %" PRId64 ", acknowledged %" PRId64, stock,
                           p->stock);
        /* every write moves the version by one: the last acknowledged
         * one's, or more after writes of unknown outcome */
        if (p->version > 0 && (p->version_unknown ? version < p->version : version != p->version))
            record_problem(self, "product", id, "version %" PRId64 ", acknowledged %" PRId64 "%s",
                           version, p->version, p->version_unknown ? " at least" : "");
    }
    return 0;
}

static void s_cart_map_destroy(void **item)
{
    s_cart_destroy(item);
}

int retailctl_check_record(mdpcli_t *client, const record_check_opts_t *opts)
{
    check_t self = {.client = client, .opts = opts};
    int rc = S_EXIT_UNREACHABLE;
    bool zone = msgpack_zone_init(&self.zone, 4096);
    self.carts = zhashx_new();
    self.products = record_hash();
    self.stock_touched = record_hash();
    self.keys = record_hash();
    self.buyers = record_hash();
    self.acked_orders = record_hash();
    if (!zone || !self.carts || !self.products || !self.stock_touched || !self.keys ||
        !self.buyers || !self.acked_orders) {
        fprintf(stderr, "retailctl check-record: out of memory\n");
        goto cleanup;
    }
    zhashx_set_destructor(self.carts, s_cart_map_destroy);
    zhashx_set_duplicator(self.carts, NULL);
    for (size_t i = 0; i < opts->nrecords; i++) {
        int read = s_read(&self, opts->records[i]);
        if (read != S_EXIT_OK) {
            rc = read;
            goto cleanup;
        }
    }
    if (opts->users && s_check_users(&self, opts->users) != 0)
        goto cleanup;
    if (s_check_orders(&self) != 0 || s_check_refunds(&self) != 0 || s_check_carts(&self) != 0 ||
        s_check_products(&self) != 0)
        goto cleanup;
    rc = record_check_effects(&self);
    if (rc != 0)
        goto cleanup;
    printf("check-record: %zu records: %zu users, %zu orders, %zu cancels, %zu refunds, %zu carts "
           "(%zu lines), %zu products, %zu idempotency keys checked%s\n",
           opts->nrecords, self.users.count, self.orders.count, self.cancels.count,
           self.refunds.count, zhashx_size(self.carts), self.cart_lines_checked,
           self.products_checked, zhashx_size(self.keys),
           opts->users ? "" : " (registrations not: no account store here)");
    printf("check-record: %zu orders of %zu buyers against their payments (%zu)%s and "
           "reservations (%zu)",
           self.orders_listed, zhashx_size(self.buyers), self.payments_checked,
           self.charges ? ", the gateway's charges" : " (the gateway's not: no record of it here)",
           self.reservations_checked);
    if (opts->stock_ledger)
        printf("; the stock of %zu products against %s (%zu skipped: a line set their stock)",
               self.ledger_checked, opts->stock_ledger, self.ledger_skipped);
    printf("; %zu problems\n", self.problems);
    rc = self.problems ? S_EXIT_PROBLEMS : S_EXIT_OK;
cleanup:
    zframe_destroy(&self.frame);
    if (zone)
        msgpack_zone_destroy(&self.zone);
    zhashx_destroy(&self.carts);
    zhashx_destroy(&self.products);
    zhashx_destroy(&self.stock_touched);
    zhashx_destroy(&self.keys);
    zhashx_destroy(&self.buyers);
    zhashx_destroy(&self.acked_orders);
    zhashx_destroy(&self.charges);
    free(self.users.items);
    free(self.orders.items);
    free(self.cancels.items);
    free(self.refunds.items);
    return rc;
}

/*  retailctl_record_effects.c - `retailctl check-record`, the second half
 *  (retailctl_record.h): nothing happened twice, nothing vanished in
 *  between.
 *
 *  What a retry, a crash or a race could double is held to its once:
 *
 *    - keys: every acknowledged reply to a user's idempotency key named
 *      one order (found while reading, retailctl_record.c); and a user
 *      has no more orders than it can have made: the orders no
 *      acknowledged checkout names are at most its checkouts of unknown
 *      outcome (one per key, however often it was sent; each keyless one
 *      counts once). A scenario that declines cards would make orders the
 *      record does not name (a decline is not recorded): the shipped ones
 *      use the approved card only.
 *    - charges: each of those orders has at most one payment; its log
 *      has at most one capture; and the simulated gateway's own record
 *      (DIR/gateway-sim, opened read-only beside the running service)
 *      captured it at most once, for what the payment says was captured,
 *      and refunded what the payment says was refunded. Across the whole
 *      gateway, no order has two captured authorizations.
 *    - stock: the reservation of each order is what its status says
 *      (paid, shipped, delivered, refunded: committed, with the order's
 *      items; cancelled: released; payment_failed: released, or none
 *      when it never got to reserve; pending: not held to anything), and
 *      with a ledger, every product's units are what they were
 *      (retailctl_stock.h), unless a record line may have set its stock.
 *
 *  The gateway's record is read in one read transaction first, and the
 *  catalog's stock once (retailctl_stock.c), then the orders of each
 *  buyer page by page; a page's orders are copied out of the reply before
 *  the questions about each reuse its zone.
 */
#include "tools/retailctl_record_impl.h"
#include "tools/retailctl_stock.h"

#include <inttypes.h>
#include <lmdb.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "actors/payments/gateway_record.h"

#define S_EXIT_USAGE 2
#define S_EXIT_UNREACHABLE 3
#define S_PAGES_MAX 100000
#define S_ITEMS_MAX 100 /* an order's lines (API.md) */

typedef struct {
    char product_id[STOCK_ID_MAX + 1];
    int64_t qty;
} s_item_t;

typedef struct {
    char id[RECORD_TEXT_MAX];
    char status[32];
    int64_t total;
    s_item_t items[S_ITEMS_MAX];
    int nitems;
} s_order_t;

/* ---- the simulated gateway's record ---- */

/* Every captured authorization of the gateway, summed per order (the
 * order id is its authorize key's first part, "<order>:<attempt>:..."). */
static int s_read_gateway(check_t *self, const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (access(path, R_OK) != 0)
        return 0; /* another gateway, or none yet: said in the summary */
    self->charges = record_hash();
    MDB_env *env = NULL;
    MDB_txn *txn = NULL;
    MDB_cursor *cursor = NULL;
    MDB_dbi auths, captures;
    int rc = self->charges ? mdb_env_create(&env) : ENOMEM;
    if (rc == 0)
        rc = mdb_env_set_maxdbs(env, GATEWAY_DBS + 2);
    if (rc == 0)
        rc = mdb_env_set_mapsize(env, (size_t)1 << 30);
    if (rc == 0)
        rc = mdb_env_open(env, dir, MDB_RDONLY, 0600);
    if (rc == 0)
        rc = mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
    if (rc == 0)
        rc = mdb_dbi_open(txn, gateway_db_names[GATEWAY_DB_AUTHS], 0, &auths);
    if (rc == 0)
        rc = mdb_dbi_open(txn, gateway_db_names[GATEWAY_DB_CAPTURES], 0, &captures);
    if (rc == 0)
        rc = mdb_cursor_open(txn, auths, &cursor);
    MDB_val key, val;
    int at = rc == 0 ? mdb_cursor_get(cursor, &key, &val, MDB_FIRST) : rc;
    for (; rc == 0 && at == 0; at = mdb_cursor_get(cursor, &key, &val, MDB_NEXT)) {
        gateway_auth_record_t auth;
        memset(&auth, 0, sizeof auth);
        if (record_decode(&gateway_auth_table, val.mv_data, val.mv_size, &auth) != RECORD_OK) {
            record_problem(self, "gateway", "auths", "an authorization record does not decode");
            continue;
        }
        if (auth.status != GATEWAY_AUTH_CAPTURED)
            continue;
        char order[RECORD_TEXT_MAX];
        snprintf(order, sizeof order, "%.*s", (int)strcspn(auth.key, ":"), auth.key);
        charges_t *c = zhashx_lookup(self->charges, order);
        if (!c) {
            c = calloc(1, sizeof *c);
            if (!c || zhashx_insert(self->charges, order, c) != 0) {
                free(c);
                rc = ENOMEM;
                break;
            }
        }
        c->captures++;
        c->captured_cents += auth.captured_cents;
        gateway_capture_record_t cap;
        int got = gateway_record_get(txn, captures, auth.capture_id, &gateway_capture_table, &cap,
                                     sizeof cap);
        if (got == 0)
            c->refunded_cents += cap.refunded_cents;
        else
            record_problem(self, "gateway", auth.capture_id,
                           "the capture of a captured authorization is not there");
    }
    if (rc == 0 && at != MDB_NOTFOUND)
        rc = at;
    if (cursor)
        mdb_cursor_close(cursor);
    if (txn)
        mdb_txn_abort(txn);
    if (env)
        mdb_env_close(env);
    if (rc != 0) {
        fprintf(stderr, "retailctl check-record: the gateway's record in %s: %s\n", dir,
                mdb_strerror(rc));
        return -1;
    }
    /* the whole gateway: no order captured twice */
    for (charges_t *c = zhashx_first(self->charges); c; c = zhashx_next(self->charges))
        if (c->captures > 1)
            record_problem(self, "order", (const char *)zhashx_cursor(self->charges),
                           "captured %d times at the gateway (%" PRId64 " in all)", c->captures,
                           c->captured_cents);
    return 0;
}

/* ---- each buyer's orders ---- */

static bool s_settled_paid(const char *status)
{
    return strcmp(status, "paid") == 0 || strcmp(status, "shipped") == 0 ||
           strcmp(status, "delivered") == 0 || strcmp(status, "refunded") == 0;
}

/* The order's payments: one at most, captured once in its log, and what
 * the gateway did for it. -1 when no reply came. */
static int s_check_payment(check_t *self, const s_order_t *o)
{
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    bool asked = msgpack_pack_map(&pk, 2) == 0 && mp_pack_str(&pk, "order_id") == 0 &&
                 mp_pack_str(&pk, o->id) == 0 && mp_pack_str(&pk, "limit") == 0 &&
                 msgpack_pack_int(&pk, 100) == 0 &&
                 record_ask_args(self, "payments", "payment.list", args.data, args.size);
    msgpack_sbuffer_destroy(&args);
    if (!asked)
        return -1;
    const msgpack_object *items = self->reply.ok ? mp_map_get(&self->reply.data, "items") : NULL;
    if (!items || items->type != MSGPACK_OBJECT_ARRAY) {
        record_problem(self, "order", o->id, "payment.list: %s",
                       self->reply.ok ? "no items" : err_code_name(self->reply.code));
        return 0;
    }
    self->payments_checked++;
    const charges_t *charged = self->charges ? zhashx_lookup(self->charges, o->id) : NULL;
    uint32_t n = items->via.array.size;
    if (n > 1)
        record_problem(self, "order", o->id, "has %u payments", n);
    if (n == 0) {
        if (s_settled_paid(o->status))
            record_problem(self, "order", o->id, "is %s without a payment", o->status);
        if (charged)
            record_problem(self, "order", o->id,
                           "captured %" PRId64 " at the gateway, and has no payment",
                           charged->captured_cents);
        return 0;
    }
    char payment[RECORD_TEXT_MAX] = "";
    int64_t captured = 0, refunded = 0;
    const msgpack_object *p = &items->via.array.ptr[0];
    if (!record_obj_str(mp_map_get(p, "id"), payment, sizeof payment) ||
        !record_obj_int(mp_map_get(p, "captured_cents"), &captured) ||
        !record_obj_int(mp_map_get(p, "refunded_cents"), &refunded)) {
        record_problem(self, "order", o->id, "payment.list answered a payment out of shape");
        return 0;
    }
    if (self->charges) {
        int64_t gw_captured = charged ? charged->captured_cents : 0;
        int64_t gw_refunded = charged ? charged->refunded_cents : 0;
        if (gw_captured != captured)
            record_problem(self, "payment", payment,
                           "captured %" PRId64 " at the gateway, %" PRId64 " in its log (order %s)",
                           gw_captured, captured, o->id);
        if (gw_refunded != refunded)
            record_problem(self, "payment", payment,
                           "refunded %" PRId64 " at the gateway, %" PRId64 " in its log (order %s)",
                           gw_refunded, refunded, o->id);
    }
    if (!record_ask(self, "payments", "payment.get", "id", payment))
        return -1;
    const msgpack_object *entries =
        self->reply.ok ? mp_map_get(&self->reply.data, "entries") : NULL;
    if (!entries || entries->type != MSGPACK_OBJECT_ARRAY) {
        record_problem(self, "payment", payment, "payment.get: %s",
                       self->reply.ok ? "no entries" : err_code_name(self->reply.code));
        return 0;
    }
    int captures = 0;
    for (uint32_t i = 0; i < entries->via.array.size; i++) {
        char type[32] = "";
        record_obj_str(mp_map_get(&entries->via.array.ptr[i], "type"), type, sizeof type);
        captures += strcmp(type, "capture") == 0;
    }
    if (captures > 1)
        record_problem(self, "payment", payment, "captured %d times in its log (order %s)",
                       captures, o->id);
    return 0;
}

/* The order's reservation against its status. */
static void s_check_reservation(check_t *self, const stock_view_t *view, const s_order_t *o)
{
    if (strcmp(o->status, "pending") == 0)
        return; /* its saga or recovery still moves it */
    self->reservations_checked++;
    const stock_reservation_t *r = stock_view_reservation(view, o->id);
    const char *state = r ? r->state : "none";
    if (s_settled_paid(o->status)) {
        if (strcmp(state, "committed") != 0) {
            record_problem(self, "order", o->id, "is %s, its reservation %s", o->status, state);
            return;
        }
        /* the units sold are the order's: each product's qty summed */
        bool same = true;
        for (size_t k = 0; k < r->nlines && same; k++) {
            int64_t want = 0;
            for (int i = 0; i < o->nitems; i++)
                if (strcmp(o->items[i].product_id, r->lines[k].product_id) == 0)
                    want += o->items[i].qty;
            same = want == r->lines[k].qty;
        }
        for (int i = 0; i < o->nitems && same; i++) {
            bool found = false;
            for (size_t k = 0; k < r->nlines && !found; k++)
                found = strcmp(o->items[i].product_id, r->lines[k].product_id) == 0;
            same = found;
        }
        if (!same)
            record_problem(self, "order", o->id, "its committed reservation is not its items");
    } else if (strcmp(o->status, "cancelled") == 0) {
        if (strcmp(state, "released") != 0)
            record_problem(self, "order", o->id, "is cancelled, its reservation %s", state);
    } else if (strcmp(o->status, "payment_failed") == 0) {
        if (r && strcmp(state, "released") != 0)
            record_problem(self, "order", o->id, "failed its payment, its reservation %s", state);
    }
}

/* A page of order.list copied out: the asks about each reuse the zone. */
static int s_copy_orders(check_t *self, const msgpack_object *items, s_order_t **out, int *n)
{
    *n = 0;
    *out = calloc(items->via.array.size ? items->via.array.size : 1, sizeof **out);
    if (!*out)
        return -1;
    for (uint32_t i = 0; i < items->via.array.size; i++) {
        const msgpack_object *src = &items->via.array.ptr[i];
        s_order_t *o = &(*out)[*n];
        memset(o, 0, sizeof *o); /* a slot an order out of shape left */
        const msgpack_object *lines =
            src->type == MSGPACK_OBJECT_MAP ? mp_map_get(src, "items") : NULL;
        if (!record_obj_str(mp_map_get(src, "id"), o->id, sizeof o->id) ||
            !record_obj_str(mp_map_get(src, "status"), o->status, sizeof o->status) ||
            !record_obj_int(mp_map_get(src, "total_cents"), &o->total) || !lines ||
            lines->type != MSGPACK_OBJECT_ARRAY || lines->via.array.size > S_ITEMS_MAX) {
            record_problem(self, "order", o->id[0] ? o->id : "?",
                           "order.list answered an order out of shape");
            continue;
        }
        for (uint32_t k = 0; k < lines->via.array.size; k++) {
            s_item_t *it = &o->items[o->nitems];
            if (!record_obj_str(mp_map_get(&lines->via.array.ptr[k], "product_id"), it->product_id,
                                sizeof it->product_id) ||
                !record_obj_int(mp_map_get(&lines->via.array.ptr[k], "qty"), &it->qty))
                continue;
            o->nitems++;
        }
        (*n)++;
    }
    return 0;
}

/* A buyer's orders: as many as its checkouts explain, each charged once
 * and holding the stock its status says. */
static int s_check_buyer(check_t *self, const stock_view_t *view, const char *user,
                         const buyer_t *buyer)
{
    size_t possible = buyer->keyless_unknown;
    for (idem_t *k = zhashx_first(self->keys); k; k = zhashx_next(self->keys))
        possible += !k->order_id[0] && strcmp(k->user, user) == 0;
    size_t unexplained = 0;
    char first[RECORD_TEXT_MAX] = "";
    char cursor[512] = "";
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    int rc = -1;
    for (int page = 0; page < S_PAGES_MAX; page++) {
        msgpack_sbuffer_clear(&args);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
        bool packed =
            msgpack_pack_map(&pk, cursor[0] ? 3 : 2) == 0 && mp_pack_str(&pk, "user_id") == 0 &&
            mp_pack_str(&pk, user) == 0 && mp_pack_str(&pk, "limit") == 0 &&
            msgpack_pack_int(&pk, 100) == 0 &&
            (!cursor[0] || (mp_pack_str(&pk, "cursor") == 0 && mp_pack_str(&pk, cursor) == 0));
        if (!packed || !record_ask_args(self, "orders", "order.list", args.data, args.size))
            goto done;
        const msgpack_object *items =
            self->reply.ok ? mp_map_get(&self->reply.data, "items") : NULL;
        if (!items || items->type != MSGPACK_OBJECT_ARRAY) {
            record_problem(self, "buyer", user, "order.list: %s",
                           self->reply.ok ? "no items" : err_code_name(self->reply.code));
            rc = 0;
            goto done;
        }
        char next[512] = "";
        record_obj_str(mp_map_get(&self->reply.data, "next_cursor"), next, sizeof next);
        s_order_t *orders;
        int n;
        if (s_copy_orders(self, items, &orders, &n) != 0)
            goto done;
        for (int i = 0; i < n; i++) {
            self->orders_listed++;
            if (!zhashx_lookup(self->acked_orders, orders[i].id) && unexplained++ == 0)
                snprintf(first, sizeof first, "%s", orders[i].id);
            if (s_check_payment(self, &orders[i]) != 0) {
                free(orders);
                goto done;
            }
            if (view)
                s_check_reservation(self, view, &orders[i]);
        }
        free(orders);
        if (!next[0])
            break;
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    if (unexplained > possible)
        record_problem(self, "buyer", user,
                       "has %zu orders no acknowledged checkout names (%s, ...), and only %zu "
                       "checkouts of unknown outcome: an order was made twice",
                       unexplained, first, possible);
    rc = 0;
done:
    msgpack_sbuffer_destroy(&args);
    return rc;
}

/* ---- the ledger ---- */

/* The first pass (only NULL) compares every product of the ledger with
 * view and puts the ones that differ into wrong; the second (only: those)
 * compares them again and counts the ones that still differ. */
static void s_ledger_pass(check_t *self, zhashx_t *ledger, const stock_view_t *view, zlist_t *only,
                          zlist_t *wrong)
{
    for (int64_t *units = zhashx_first(ledger); units; units = zhashx_next(ledger)) {
        const char *id = zhashx_cursor(ledger);
        if (only && !zlist_exists(only, (void *)id))
            continue;
        if (!only && zhashx_lookup(self->stock_touched, id)) {
            self->ledger_skipped++;
            continue;
        }
        int64_t now = 0;
        bool there = stock_view_units(view, id, &now);
        if (!only && !(there && now == *units)) {
            zlist_append(wrong, (void *)id);
            continue;
        }
        self->ledger_checked++;
        if (there && now == *units)
            continue;
        if (!there)
            record_problem(self, "stock", id, "in the ledger with %" PRId64 " units, now gone",
                           *units);
        else
            record_problem(self, "stock", id,
                           "%" PRId64 " units (stock + reserved + sold), %" PRId64
                           " in the ledger: %s",
                           now, *units, now > *units ? "units appeared" : "units vanished");
    }
}

static int s_check_ledger(check_t *self, stock_view_t **view)
{
    char err[512];
    zhashx_t *ledger = stock_ledger_read(self->opts->stock_ledger, err, sizeof err);
    if (!ledger) {
        fprintf(stderr, "retailctl check-record: %s\n", err);
        return S_EXIT_USAGE;
    }
    zlist_t *wrong = zlist_new();
    int rc = S_EXIT_UNREACHABLE;
    if (!wrong)
        goto done;
    zlist_autofree(wrong); /* append copies the id */
    zlist_comparefn(wrong, (zlist_compare_fn *)strcmp);
    s_ledger_pass(self, ledger, *view, NULL, wrong);
    if (zlist_size(wrong) > 0) {
        /* a reservation may be on its way between the two walks: once
         * more, a second later, for those only */
        zclock_sleep(1000);
        stock_view_destroy(view);
        *view = stock_view_read(self->client, self->opts->timeout_ms, &self->next_id,
                                "retailctl check-record");
        if (!*view)
            goto done;
        s_ledger_pass(self, ledger, *view, wrong, NULL);
    }
    rc = 0;
done:
    zlist_destroy(&wrong);
    zhashx_destroy(&ledger);
    return rc;
}

int record_check_effects(check_t *self)
{
    if (self->opts->gateway_dir && s_read_gateway(self, self->opts->gateway_dir) != 0)
        return S_EXIT_UNREACHABLE;
    stock_view_t *view = stock_view_read(self->client, self->opts->timeout_ms, &self->next_id,
                                         "retailctl check-record");
    if (!view)
        return S_EXIT_UNREACHABLE;
    int rc = 0;
    for (buyer_t *b = zhashx_first(self->buyers); b && rc == 0; b = zhashx_next(self->buyers)) {
        const char *user = zhashx_cursor(self->buyers);
        char copy[RECORD_TEXT_MAX];
        snprintf(copy, sizeof copy, "%s", user);
        if (s_check_buyer(self, view, copy, b) != 0)
            rc = S_EXIT_UNREACHABLE;
    }
    if (rc == 0 && self->opts->stock_ledger)
        rc = s_check_ledger(self, &view);
    stock_view_destroy(&view);
    return rc;
}

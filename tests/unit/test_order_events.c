/*  test_order_events.c - the events the order store appends to the
 *  orders outbox (storage/orders/order_store.h; protocol/SPEC.md,
 *  "Events: types and data"), on a fresh orders environment per test.
 *
 *  Each change is made through the store and the outbox read back as a
 *  subscriber would see it (tests/events.h): the event of each change is
 *  there exactly once, with seq counting from 1 without a gap, source
 *  "orders" and the documented data (every field, and no other). What
 *  must append nothing: a create whose key is running, done or reused; a
 *  change its function refuses; a change that keeps the status (a lease).
 *  The next event after those still gets the next number. A pending order
 *  removed by the saga (its stock was not there) is announced cancelled,
 *  removed. A write whose event cannot be stored (the outbox's counter
 *  broken on purpose) fails and leaves no order. Without an outbox the
 *  store writes as before.
 */
#include "storage/orders/order_store.h"
#include "storage/orders/orders_env.h"
#include "tests/events.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *dir;
    kv_t *env;
    order_store_shared_t *shared;
    order_store_t *store;
    outbox_t *outbox;
    order_t *order; /* scratch: large */
} fx_t;

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    *state = f;
    f->dir = tu_tempdir("test-order-events");
    char err[256] = "";
    f->env = orders_env_open(f->dir, err, sizeof err);
    if (!f->env)
        print_error("orders_env_open: %s\n", err);
    assert_non_null(f->env);
    f->shared = order_store_shared_new(f->env, err, sizeof err);
    assert_non_null(f->shared);
    f->outbox = outbox_new(f->env, ORDERS_DB_OUTBOX, ORDERS_DB_OUTBOX_META,
                           &(outbox_config_t){.source = "orders"}, err, sizeof err);
    assert_non_null(f->outbox);
    order_store_shared_set_outbox(f->shared, f->outbox);
    f->store = order_store_open(f->shared);
    assert_non_null(f->store);
    f->order = calloc(1, sizeof *f->order);
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    order_store_close(&f->store);
    order_store_shared_destroy(&f->shared);
    outbox_destroy(&f->outbox);
    kv_close(&f->env);
    tu_rmtree(f->dir);
    zstr_free(&f->dir);
    free(f->order);
    free(f);
    return 0;
}

/* An order of user u: 2 x p1 (sku-1) at 250 and 1 x p2 (sku-2) at 1000. */
static order_t *s_order(fx_t *f, const char *user)
{
    order_t *o = f->order;
    memset(o, 0, sizeof *o);
    snprintf(o->user_id, sizeof o->user_id, "%s", user);
    o->n_items = 2;
    o->items[0] = (order_item_t){.unit_price_cents = 250, .qty = 2};
    snprintf(o->items[0].product_id, sizeof o->items[0].product_id, "p1");
    snprintf(o->items[0].sku, sizeof o->items[0].sku, "sku-1");
    snprintf(o->items[0].name, sizeof o->items[0].name, "First");
    o->items[1] = (order_item_t){.unit_price_cents = 1000, .qty = 1};
    snprintf(o->items[1].product_id, sizeof o->items[1].product_id, "p2");
    snprintf(o->items[1].sku, sizeof o->items[1].sku, "sku-2");
    snprintf(o->items[1].name, sizeof o->items[1].name, "Second");
    o->total_cents = 1500;
    memcpy(o->currency, "EUR", 4);
    const char address[] = "\x81\xa5line1\xa9Main St 1"; /* {line1: "Main St 1"} */
    memcpy(o->address, address, sizeof address - 1);
    o->address_len = sizeof address - 1;
    return o;
}

/* Creates an order of user (no key); its id into id. */
static void s_create(fx_t *f, const char *user, char id[ORDER_ID_MAX + 1])
{
    order_t *o = s_order(f, user);
    assert_int_equal(order_store_create(f->store, o, NULL, NULL, NULL), ORDER_OK);
    snprintf(id, ORDER_ID_MAX + 1, "%s", o->id);
}

/* A change: to status `to` (-1: keep it), with payment_id when given;
 * refuse: answered instead; lease: a new lease (a change that keeps the
 * status); remove with its code; finish the key. */
typedef struct {
    int to;
    const char *payment_id;
    int refuse;
    const char *lease;
    bool remove;
    const char *code;
} s_change_t;

static int s_change_fn(order_t *o, order_change_t *change, void *arg)
{
    const s_change_t *c = arg;
    if (c->refuse)
        return c->refuse;
    if (c->to >= 0)
        o->status = c->to;
    if (c->payment_id)
        snprintf(o->payment_id, sizeof o->payment_id, "%s", c->payment_id);
    if (c->lease) {
        snprintf(o->lease, sizeof o->lease, "%s", c->lease);
        o->lease_until_ms = 1;
    }
    change->remove = c->remove;
    change->finish_key = true;
    change->code = c->code ? c->code : "";
    change->message = "";
    return 0;
}

static order_store_status_t s_change(fx_t *f, const char *id, s_change_t c)
{
    int refusal = 0;
    return order_store_change(f->store, id, s_change_fn, &c, NULL, &refusal);
}

/* The events: n of them, seq 1..n, each ok and of source orders. */
static te_events_t *s_events(fx_t *f, int n)
{
    const char *never[] = {"Main St", NULL}; /* no address */
    return te_events_expect(f->outbox, n, "orders", never);
}

/* A status event of order id: the fields every one has. */
static void s_expect_status(const te_event_t *e, const char *id, const char *user,
                            const char *status, const char *from, const char *payment_id)
{
    assert_non_null(e);
    char type[64];
    snprintf(type, sizeof type, "order.%s", status);
    assert_string_equal(e->type, type);
    assert_int_equal(te_event_fields(e), payment_id ? 7 : 6);
    assert_true(te_event_str_is(e, "order_id", id));
    assert_true(te_event_str_is(e, "user_id", user));
    assert_true(te_event_str_is(e, "status", status));
    assert_true(te_event_str_is(e, "from", from));
    assert_int_equal(te_event_int(e, "total_cents"), 1500);
    assert_true(te_event_str_is(e, "currency", "EUR"));
    if (payment_id)
        assert_true(te_event_str_is(e, "payment_id", payment_id));
    else
        assert_null(te_event_field(e, "payment_id"));
}

static void test_created(void **state)
{
    fx_t *f = *state;
    char id[ORDER_ID_MAX + 1];
    s_create(f, "u1", id);
    te_events_t *es = s_events(f, 1);
    const te_event_t *e = te_events_find(es, "order.created", 0);
    assert_non_null(e);
    assert_int_equal(te_event_fields(e), 6);
    assert_true(te_event_str_is(e, "order_id", id));
    assert_true(te_event_str_is(e, "user_id", "u1"));
    assert_true(te_event_str_is(e, "status", "pending"));
    assert_int_equal(te_event_int(e, "total_cents"), 1500);
    assert_true(te_event_str_is(e, "currency", "EUR"));
    const msgpack_object *items = te_event_field(e, "items");
    assert_non_null(items);
    assert_int_equal(items->type, MSGPACK_OBJECT_ARRAY);
    assert_int_equal(items->via.array.size, 2);
    const char *pids[2] = {"p1", "p2"}, *skus[2] = {"sku-1", "sku-2"};
    int64_t qtys[2] = {2, 1}, prices[2] = {250, 1000};
    for (int i = 0; i < 2; i++) {
        const msgpack_object *item = &items->via.array.ptr[i];
        assert_int_equal(item->type, MSGPACK_OBJECT_MAP);
        assert_int_equal(item->via.map.size, 4); /* no name: the product's is enough */
        for (uint32_t k = 0; k < 4; k++) {
            const msgpack_object_kv *kv = &item->via.map.ptr[k];
            char key[32];
            snprintf(key, sizeof key, "%.*s", (int)kv->key.via.str.size, kv->key.via.str.ptr);
            if (strcmp(key, "product_id") == 0 || strcmp(key, "sku") == 0) {
                const char *want = key[0] == 'p' ? pids[i] : skus[i];
                assert_int_equal(kv->val.type, MSGPACK_OBJECT_STR);
                assert_int_equal(kv->val.via.str.size, strlen(want));
                assert_memory_equal(kv->val.via.str.ptr, want, strlen(want));
            } else if (strcmp(key, "qty") == 0) {
                assert_int_equal(kv->val.via.u64, qtys[i]);
            } else if (strcmp(key, "unit_price_cents") == 0) {
                assert_int_equal(kv->val.via.u64, prices[i]);
            } else {
                fail_msg("unexpected item field %s", key);
            }
        }
    }
    te_events_destroy(&es);
}

static void test_keys_replayed_append_nothing(void **state)
{
    fx_t *f = *state;
    uint8_t print[32] = {1}, other[32] = {2};
    order_key_t *key_out = calloc(1, sizeof *key_out);
    order_t *o = s_order(f, "u1");
    assert_int_equal(order_store_create(f->store, o, "k1", print, key_out), ORDER_OK);
    char id[ORDER_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", o->id);
    /* the key still runs, then comes with another request */
    o = s_order(f, "u1");
    assert_int_equal(order_store_create(f->store, o, "k1", print, key_out), ORDER_KEY_RUNNING);
    o = s_order(f, "u1");
    assert_int_equal(order_store_create(f->store, o, "k1", other, key_out), ORDER_KEY_REUSED);
    /* finished with the order paid: a replay answers the key */
    assert_int_equal(s_change(f, id, (s_change_t){.to = ORDER_PAID, .payment_id = "pay-1"}),
                     ORDER_OK);
    o = s_order(f, "u1");
    assert_int_equal(order_store_create(f->store, o, "k1", print, key_out), ORDER_KEY_DONE);
    assert_string_equal(key_out->order_id, id);
    /* another user's same key is another key */
    o = s_order(f, "u2");
    assert_int_equal(order_store_create(f->store, o, "k1", print, key_out), ORDER_OK);

    te_events_t *es = s_events(f, 3);
    assert_string_equal(es->items[0].type, "order.created");
    assert_true(te_event_str_is(&es->items[0], "order_id", id));
    s_expect_status(&es->items[1], id, "u1", "paid", "pending", "pay-1");
    assert_string_equal(es->items[2].type, "order.created");
    assert_true(te_event_str_is(&es->items[2], "user_id", "u2"));
    te_events_destroy(&es);
    free(key_out);
}

static void test_status_changes(void **state)
{
    fx_t *f = *state;
    char a[ORDER_ID_MAX + 1], b[ORDER_ID_MAX + 1];
    s_create(f, "u1", a);
    s_create(f, "u2", b);
    /* a refusal, a lease and an unknown order append nothing */
    assert_int_equal(s_change(f, a, (s_change_t){.to = ORDER_PAID, .refuse = 9}), ORDER_REFUSED);
    assert_int_equal(s_change(f, a, (s_change_t){.to = -1, .lease = "me-1"}), ORDER_OK);
    assert_int_equal(s_change(f, "o-none", (s_change_t){.to = ORDER_PAID}), ORDER_NOT_FOUND);
    assert_int_equal(s_change(f, a, (s_change_t){.to = ORDER_PAID, .payment_id = "pay-a"}),
                     ORDER_OK);
    assert_int_equal(s_change(f, a, (s_change_t){.to = ORDER_PAID}), ORDER_OK); /* no change */
    assert_int_equal(s_change(f, a, (s_change_t){.to = ORDER_SHIPPED}), ORDER_OK);
    assert_int_equal(s_change(f, a, (s_change_t){.to = ORDER_DELIVERED}), ORDER_OK);
    assert_int_equal(s_change(f, a, (s_change_t){.to = ORDER_REFUNDED}), ORDER_OK);
    assert_int_equal(s_change(f, b, (s_change_t){.to = ORDER_PAYMENT_FAILED}), ORDER_OK);
    assert_int_equal(s_change(f, b, (s_change_t){.to = ORDER_CANCELLED}), ORDER_OK);

    te_events_t *es = s_events(f, 8);
    assert_int_equal(te_events_count(es, "order.created"), 2);
    const char *once[] = {"order.paid",     "order.shipped",   "order.delivered",
                          "order.refunded", "order.cancelled", "order.payment_failed"};
    for (size_t i = 0; i < sizeof once / sizeof once[0]; i++)
        assert_int_equal(te_events_count(es, once[i]), 1);
    s_expect_status(&es->items[2], a, "u1", "paid", "pending", "pay-a");
    s_expect_status(&es->items[3], a, "u1", "shipped", "paid", "pay-a");
    s_expect_status(&es->items[4], a, "u1", "delivered", "shipped", "pay-a");
    s_expect_status(&es->items[5], a, "u1", "refunded", "delivered", "pay-a");
    s_expect_status(&es->items[6], b, "u2", "payment_failed", "pending", NULL);
    s_expect_status(&es->items[7], b, "u2", "cancelled", "payment_failed", NULL);
    te_events_destroy(&es);
}

static void test_removed_is_cancelled(void **state)
{
    fx_t *f = *state;
    char id[ORDER_ID_MAX + 1];
    s_create(f, "u1", id);
    assert_int_equal(
        s_change(f, id, (s_change_t){.to = -1, .remove = true, .code = "out_of_stock"}), ORDER_OK);
    assert_int_equal(order_store_get(f->store, id, f->order), ORDER_NOT_FOUND);
    /* a removal of what is gone is no change */
    assert_int_equal(s_change(f, id, (s_change_t){.to = -1, .remove = true}), ORDER_NOT_FOUND);
    te_events_t *es = s_events(f, 2);
    const te_event_t *e = &es->items[1];
    assert_string_equal(e->type, "order.cancelled");
    assert_int_equal(te_event_fields(e), 8);
    assert_true(te_event_str_is(e, "order_id", id));
    assert_true(te_event_str_is(e, "user_id", "u1"));
    assert_true(te_event_str_is(e, "status", "cancelled"));
    assert_true(te_event_str_is(e, "from", "pending"));
    assert_true(te_event_str_is(e, "reason", "out_of_stock"));
    const msgpack_object *removed = te_event_field(e, "removed");
    assert_non_null(removed);
    assert_int_equal(removed->type, MSGPACK_OBJECT_BOOLEAN);
    assert_true(removed->via.boolean);
    assert_int_equal(te_event_int(e, "total_cents"), 1500);
    assert_true(te_event_str_is(e, "currency", "EUR"));
    te_events_destroy(&es);
}

static void test_failed_append_fails_the_write(void **state)
{
    fx_t *f = *state;
    char id[ORDER_ID_MAX + 1];
    s_create(f, "u1", id);
    assert_int_equal(te_outbox_break(f->env, ORDERS_DB_OUTBOX_META, true), 0);
    order_t *o = s_order(f, "u1");
    snprintf(o->id, sizeof o->id, "o-broken");
    assert_int_equal(order_store_create(f->store, o, NULL, NULL, NULL), ORDER_ERROR);
    assert_int_equal(order_store_get(f->store, "o-broken", f->order), ORDER_NOT_FOUND);
    assert_int_equal(s_change(f, id, (s_change_t){.to = ORDER_PAID, .payment_id = "pay-1"}),
                     ORDER_ERROR);
    assert_int_equal(order_store_get(f->store, id, f->order), ORDER_OK);
    assert_int_equal(f->order->status, ORDER_PENDING);
    /* a change that appends nothing does not need the outbox */
    assert_int_equal(s_change(f, id, (s_change_t){.to = -1, .lease = "me-2"}), ORDER_OK);
    assert_int_equal(te_outbox_break(f->env, ORDERS_DB_OUTBOX_META, false), 0);
    assert_int_equal(s_change(f, id, (s_change_t){.to = ORDER_PAID, .payment_id = "pay-1"}),
                     ORDER_OK);
    te_events_t *es = s_events(f, 2);
    s_expect_status(&es->items[1], id, "u1", "paid", "pending", "pay-1");
    te_events_destroy(&es);
}

static void test_no_outbox(void **state)
{
    fx_t *f = *state;
    order_store_shared_set_outbox(f->shared, NULL);
    char id[ORDER_ID_MAX + 1];
    s_create(f, "u1", id);
    assert_int_equal(s_change(f, id, (s_change_t){.to = ORDER_PAID, .payment_id = "p"}), ORDER_OK);
    te_events_t *es = s_events(f, 0);
    te_events_destroy(&es);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_created, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_keys_replayed_append_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_status_changes, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_removed_is_cancelled, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failed_append_fails_the_write, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_outbox, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

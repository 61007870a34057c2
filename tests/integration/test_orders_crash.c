/*  test_orders_crash.c - a checkout survives retaild dying anywhere in it
 *  (orders.h, "Crash after each step").
 *
 *  Per step: a retaild whose orders service kills the process (SIGKILL)
 *  right after the named step of the first checkout that reaches it
 *  (RETAIL_ORDERS_CRASH_AT, a test hook of RETAIL_TEST_OPS=1, once per
 *  data directory), then a restart on the same data. The client asks
 *  again with its Idempotency-Key until it hears the order's end, which
 *  must be what that step allows: 201 paid once the charge was made,
 *  502 (no charge was ever made) before it; never a second order, no
 *  stock left held, and ops.check of every service ok.
 *
 *  In the mass: 200 checkouts from 40 clients at once, SIGKILL in the
 *  middle of them, a restart, then recovery's end: every order answered
 *  201 is paid, no order is pending, every captured payment has a paid
 *  order and no paid order lacks one, and stock plus units sold is the
 *  starting stock.
 *
 *  A refund in full done in the payments store whose order never heard
 *  (a crash right after the refund's end write, made offline): the order
 *  becomes refunded by itself once retaild is back. A refund begun and
 *  never ended (a crash while it was at the gateway): taken over and
 *  ended once its budget is over, its order refunded.
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include "storage/payments/payment_store.h"

#include <curl/curl.h>
#include <czmq.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define CARD_OK "4242424242424242"
#define WAIT_MS 30000

static hc_response_t s_post(const fixture_t *s, const char *path, const char *token, json_t *body,
                            const char *header)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    hc_request_t q = {.url = s->base,
                      .path = path,
                      .method = "POST",
                      .token = token,
                      .body = text,
                      .header = header,
                      .timeout_ms = 20000};
    hc_response_t r = hc_try(&q);
    free(text);
    return r;
}

static void s_product(fixture_t *s, json_int_t stock, char id[64])
{
    hc_response_t r =
        s_post(s, "/v1/categories", s->admin_token, json_pack("{s:s}", "name", "Crash test"), NULL);
    hc_expect(&r, 201, "create category");
    char category[64];
    snprintf(category, sizeof category, "%s", hc_str(r.body, "category.id"));
    hc_response_free(&r);
    r = s_post(s, "/v1/products", s->admin_token,
               json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:I}", "sku", "CRASH-1", "name",
                         "Crash thing", "description", "survives", "price_cents", 990, "currency",
                         "EUR", "category_id", category, "stock", stock),
               NULL);
    hc_expect(&r, 201, "create product");
    snprintf(id, 64, "%s", hc_str(r.body, "product.id"));
    hc_response_free(&r);
}

static json_int_t s_stock(fixture_t *s, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", id);
    hc_response_t r = hc_request(s->base, "GET", path, NULL, NULL, NULL);
    hc_expect(&r, 200, "GET product");
    json_int_t stock =
        json_integer_value(json_object_get(json_object_get(r.body, "product"), "stock"));
    hc_response_free(&r);
    return stock;
}

static json_t *s_order_body(const char *product)
{
    return json_pack("{s:[{s:s, s:i}], s:{s:s, s:i, s:i, s:s}, s:{s:s, s:s, s:s, s:s, s:s}}",
                     "items", "product_id", product, "qty", 1, "payment", "card_number", CARD_OK,
                     "exp_month", 1, "exp_year", 2099, "cvc", "321", "shipping_address", "name",
                     "Grace Hopper", "line1", "2 Test Way", "city", "Arlington", "postal_code",
                     "22201", "country", "US");
}

/* Every order of status (admin view, all pages) into ids (may be NULL);
 * how many. */
static int s_orders(fixture_t *s, const char *status, char (*ids)[64], int max)
{
    char cursor[64] = "", path[200];
    int n = 0;
    for (;;) {
        snprintf(path, sizeof path, "/v1/orders?limit=100&status=%s%s%s", status,
                 cursor[0] ? "&cursor=" : "", cursor);
        hc_response_t r = hc_request(s->base, "GET", path, s->admin_token, NULL, NULL);
        hc_expect(&r, 200, "list orders");
        json_t *items = json_object_get(r.body, "items");
        for (size_t i = 0; i < json_array_size(items); i++, n++)
            if (ids && n < max)
                snprintf(ids[n], 64, "%s", hc_str(json_array_get(items, i), "id"));
        const char *next = hc_str(r.body, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        hc_response_free(&r);
        if (!cursor[0])
            return n;
    }
}

/* Waits until recovery has left no order pending. */
static void s_wait_settled(fixture_t *s)
{
    int64_t deadline = zclock_mono() + WAIT_MS;
    int pending = 0;
    while ((pending = s_orders(s, "pending", NULL, 0)) > 0 && zclock_mono() < deadline)
        zclock_sleep(100);
    if (pending)
        print_error("%d orders still pending after %d ms\n", pending, WAIT_MS);
    assert_int_equal(pending, 0);
}

/* ops.check of a service, through retailctl's certificate: ok. */
static void s_check(fixture_t *s, const char *service)
{
    mdpcli_t *client = fixture_client(s, "retailctl");
    assert_int_equal(fixture_send(client, service, 7, "ops.check", NULL, "{}"), 0);
    fixture_reply_t reply = fixture_recv(client, 10000);
    if (!reply.ok || !json_is_true(json_object_get(reply.data, "ok")))
        print_error("%s ops.check: %s\n", service,
                    json_dumps(reply.ok ? reply.data : reply.error, JSON_INDENT(1)));
    assert_true(reply.ok);
    assert_true(json_is_true(json_object_get(reply.data, "ok")));
    fixture_reply_free(&reply);
    mdpcli_destroy(&client);
}

/* No unit is held by a reservation, as the catalog counts them. */
static void s_nothing_reserved(fixture_t *s)
{
    mdpcli_t *client = fixture_client(s, "retailctl");
    assert_int_equal(fixture_send(client, "catalog", 8, "ops.check", NULL, "{}"), 0);
    fixture_reply_t reply = fixture_recv(client, 10000);
    assert_true(reply.ok);
    json_t *counts = json_object_get(reply.data, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "reserved_units")), 0);
    assert_int_equal(json_integer_value(json_object_get(counts, "live_reservations")), 0);
    fixture_reply_free(&reply);
    mdpcli_destroy(&client);
}

/* `retailctl check` against the running system: exit 0, "check: ok". */
static void s_retailctl_check(fixture_t *s)
{
    char *out = zsys_sprintf("%s/check.out", s->dir);
    const char *argv[] = {"--data-dir", s->dir, "--broker", s->broker_endpoint, "check", NULL};
    tu_spawn_t how = {.program = "retailctl", .argv = argv, .clean = true, .out_path = out};
    int status = tu_wait(tu_spawn(&how), 60000);
    char *text = tu_slurp(out, NULL);
    if (status != 0 || !text || !strstr(text, "check: ok"))
        print_error("retailctl check (status %d):\n%s\n", status, text ? text : "");
    assert_int_equal(status, 0);
    assert_non_null(strstr(text, "check: ok"));
    free(text);
    zstr_free(&out);
}

/* Reaps the killed process and starts it again on the same data. */
static void s_restart(fixture_t *s)
{
    int status = fixture_kill(s, s->pid, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_int_equal(fixture_restart(s), 0);
}

static void s_crash_after(const char *step, long want_status)
{
    char crash[64];
    snprintf(crash, sizeof crash, "RETAIL_ORDERS_CRASH_AT=%s", step);
    const char *env[] = {"RETAIL_TEST_OPS=1", crash, "RETAIL_ORDERS_RECOVER_EVERY_MS=100", NULL};
    fixture_opts_t opts = {.name = "retail-crash", .accounts = true, .logs = true, .env = env};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    char product[64];
    s_product(s, 5, product);
    const char *header = "Idempotency-Key: crash-once";
    hc_response_t r = s_post(s, "/v1/orders", s->customer_token, s_order_body(product), header);
    assert_true(r.status == 0 || r.status >= 500); /* the process died under it */
    hc_response_free(&r);
    s_restart(s);
    /* the client asks again until it hears the end */
    int64_t deadline = zclock_mono() + WAIT_MS;
    for (;;) {
        r = s_post(s, "/v1/orders", s->customer_token, s_order_body(product), header);
        if ((r.status != 409 && r.status != 503) || zclock_mono() > deadline)
            break;
        hc_response_free(&r);
        zclock_sleep(100);
    }
    if (r.status != want_status)
        print_error("crash after %s: expected %ld, got %ld %s\n", step, want_status, r.status,
                    r.text);
    assert_int_equal(r.status, want_status);
    hc_response_free(&r);
    s_wait_settled(s);
    int paid = s_orders(s, "paid", NULL, 0);
    assert_int_equal(paid, want_status == 201 ? 1 : 0);
    assert_int_equal(s_orders(s, "payment_failed", NULL, 0), want_status == 201 ? 0 : 1);
    assert_int_equal(s_stock(s, product), 5 - paid);
    s_check(s, "orders");
    s_check(s, "catalog");
    s_check(s, "payments");
    s_nothing_reserved(s);
    s_retailctl_check(s);
    assert_int_equal(fixture_stop(s), 0);
    fixture_destroy(&s);
}

static void test_crash_after_created(void **state)
{
    (void)state;
    s_crash_after("created", 502);
}

static void test_crash_after_reserved(void **state)
{
    (void)state;
    s_crash_after("reserved", 502);
}

static void test_crash_after_charged(void **state)
{
    (void)state;
    s_crash_after("charged", 201);
}

static void test_crash_after_committed(void **state)
{
    (void)state;
    s_crash_after("committed", 201);
}

static void test_crash_after_paid(void **state)
{
    (void)state;
    s_crash_after("paid", 201);
}

/* ---- the mass ---- */

#define CLIENTS 40
#define EACH 5
#define STOCK 1000

typedef struct {
    fixture_t *s;
    const char *product;
    int index;
    atomic_int *answered;
    long status[EACH];
    char id[EACH][64];
} s_client_t;

static void *s_client(void *arg)
{
    s_client_t *c = arg;
    for (int i = 0; i < EACH; i++) {
        char header[64];
        snprintf(header, sizeof header, "Idempotency-Key: mass-%d-%d", c->index, i);
        hc_response_t r =
            s_post(c->s, "/v1/orders", c->s->customer_token, s_order_body(c->product), header);
        c->status[i] = r.status;
        const char *id = r.status == 201 ? hc_str(r.body, "order.id") : NULL;
        snprintf(c->id[i], 64, "%s", id ? id : "");
        hc_response_free(&r);
        atomic_fetch_add(c->answered, 1);
    }
    return NULL;
}

static void test_kill_in_the_middle(void **state)
{
    (void)state;
    const char *env[] = {"RETAIL_TEST_OPS=1", "RETAIL_ORDERS_RECOVER_EVERY_MS=100", NULL};
    fixture_opts_t opts = {.name = "retail-mass", .accounts = true, .logs = true, .env = env};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    char product[64];
    s_product(s, STOCK, product);
    atomic_int answered = 0;
    static s_client_t clients[CLIENTS];
    pthread_t threads[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (s_client_t){.s = s, .product = product, .index = i, .answered = &answered};
        assert_int_equal(pthread_create(&threads[i], NULL, s_client, &clients[i]), 0);
    }
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (atomic_load(&answered) < CLIENTS * EACH / 3 && zclock_mono() < deadline)
        zclock_sleep(1);
    assert_int_equal(kill(s->pid, SIGKILL), 0);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(threads[i], NULL);
    s_restart(s);
    s_wait_settled(s);

    static char paid_ids[CLIENTS * EACH][64];
    int paid = s_orders(s, "paid", paid_ids, CLIENTS * EACH);
    int acknowledged = 0;
    for (int i = 0; i < CLIENTS; i++)
        for (int j = 0; j < EACH; j++) {
            if (clients[i].status[j] != 201)
                continue;
            acknowledged++;
            bool found = false;
            for (int k = 0; k < paid && !found; k++)
                found = streq(paid_ids[k], clients[i].id[j]);
            if (!found)
                print_error("order %s was answered 201 and is not paid\n", clients[i].id[j]);
            assert_true(found);
        }
    assert_true(acknowledged > 0);
    assert_true(paid >= acknowledged);
    assert_int_equal(s_stock(s, product) + paid, STOCK);
    /* every captured payment has its paid order, and only those */
    int captured = 0;
    char cursor[64] = "", path[200];
    for (;;) {
        snprintf(path, sizeof path, "/v1/payments?status=captured&limit=100%s%s",
                 cursor[0] ? "&cursor=" : "", cursor);
        hc_response_t r = hc_request(s->base, "GET", path, s->admin_token, NULL, NULL);
        hc_expect(&r, 200, "list payments");
        json_t *items = json_object_get(r.body, "items");
        for (size_t i = 0; i < json_array_size(items); i++) {
            const char *order = hc_str(json_array_get(items, i), "order_id");
            bool found = false;
            for (int k = 0; k < paid && !found; k++)
                found = streq(paid_ids[k], order);
            if (!found)
                print_error("payment of order %s is captured, the order is not paid\n", order);
            assert_true(found);
            captured++;
        }
        const char *next = hc_str(r.body, "next_cursor");
        snprintf(cursor, sizeof cursor, "%s", next ? next : "");
        hc_response_free(&r);
        if (!cursor[0])
            break;
    }
    assert_int_equal(captured, paid);
    s_check(s, "orders");
    s_check(s, "catalog");
    s_check(s, "payments");
    s_nothing_reserved(s);
    s_retailctl_check(s);
    assert_int_equal(fixture_stop(s), 0);
    fixture_destroy(&s);
}

/* A refund in full whose order never heard of it: what a crash right
 * after the refund's end write leaves (the admin's request dies with the
 * process before it asks orders order.payment_refunded), made offline the
 * way the crash leaves it: retaild killed, the refund begun and ended
 * through the payment store's API. Once retaild is back, the order must
 * become refunded by itself, without the admin asking again: the refund's
 * end recorded its order as one to tell (payments' follow-up). Before
 * that, the order stayed paid with a refunded payment (retailctl check:
 * "a paid order's payment is refunded"); the crash loop found it. */
static void test_refund_told_after_a_crash(void **state)
{
    (void)state;
    fixture_opts_t opts = {.name = "retail-refund-crash", .accounts = true, .logs = true};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    char product[64], order[64], payment[64], path[160];
    s_product(s, 5, product);
    hc_response_t r = s_post(s, "/v1/orders", s->customer_token, s_order_body(product), NULL);
    hc_expect(&r, 201, "order");
    snprintf(order, sizeof order, "%s", hc_str(r.body, "order.id"));
    snprintf(payment, sizeof payment, "%s", hc_str(r.body, "order.payment.id"));
    hc_response_free(&r);

    assert_int_equal(kill(s->pid, SIGKILL), 0);
    int status = fixture_kill(s, s->pid, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char err[256] = "";
    payment_store_shared_t *shared = payment_store_shared_new(s->dir, s->keys, err, sizeof err);
    if (!shared)
        fail_msg("the payment store: %s", err);
    payment_store_t *store = payment_store_open(shared);
    assert_non_null(store);
    refund_t refund;
    payment_t p;
    bool created = false;
    assert_int_equal(payment_store_refund_begin(store, payment, "admin-refund-before-the-crash", 0,
                                                &refund, &p, &created),
                     STORE_OK);
    assert_true(created);
    assert_int_equal(payment_store_refund_end(store, "admin-refund-before-the-crash", true,
                                              "ref_before_the_crash", &refund, &p),
                     STORE_OK);
    assert_int_equal(p.status, PAYMENT_REFUNDED);
    payment_store_close(&store);
    payment_store_shared_destroy(&shared);
    assert_int_equal(fixture_restart(s), 0);

    /* nobody asks again: the order becomes refunded by itself */
    snprintf(path, sizeof path, "/v1/orders/%s", order);
    int64_t deadline = zclock_mono() + WAIT_MS;
    char got[32] = "";
    for (;;) {
        r = hc_request(s->base, "GET", path, s->customer_token, NULL, NULL);
        hc_expect(&r, 200, "GET order");
        snprintf(got, sizeof got, "%s", hc_str(r.body, "order.status"));
        hc_response_free(&r);
        if (streq(got, "refunded") || zclock_mono() > deadline)
            break;
        zclock_sleep(50);
    }
    if (!streq(got, "refunded"))
        print_error("order %s is %s, its payment refunded in full\n", order, got);
    assert_string_equal(got, "refunded");
    s_check(s, "orders");
    s_check(s, "payments");
    s_retailctl_check(s);
    assert_int_equal(fixture_stop(s), 0);

    /* and nothing is left to tell */
    shared = payment_store_shared_new(s->dir, s->keys, err, sizeof err);
    assert_non_null(shared);
    store = payment_store_open(shared);
    payment_to_tell_t left[4];
    int n = -1;
    assert_int_equal(payment_store_to_tell(store, "", 4, left, &n), STORE_OK);
    assert_int_equal(n, 0);
    payment_store_close(&store);
    payment_store_shared_destroy(&shared);
    fixture_destroy(&s);
}

/* A refund begun and never ended: a crash while the admin's refund was
 * at the gateway (the amount reserved in the payments store, the gateway
 * asked or not). Made offline the way the crash leaves it: retaild
 * killed, the refund begun through the payment store's API. Once retaild
 * is back and the refund's budget is over, the follow-up takes it over
 * (refund.recover: the gateway asked first, then the refund done, as the
 * same key asked again would), and the order of the payment, refunded in
 * full, becomes refunded. Before that the refund stayed pending, its
 * amount reserved, and when the gateway had refunded the payments log
 * never said so (check-record: "refunded 85 at the gateway, 0 in its
 * log"): the crash loop found it. */
static void test_refund_pending_after_a_crash(void **state)
{
    (void)state;
    const char *env[] = {"RETAIL_PAYMENTS_BUDGET_MS=1000", NULL};
    fixture_opts_t opts = {
        .name = "retail-refund-pending", .accounts = true, .logs = true, .env = env};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    char product[64], order[64], payment[64], path[160];
    s_product(s, 5, product);
    hc_response_t r = s_post(s, "/v1/orders", s->customer_token, s_order_body(product), NULL);
    hc_expect(&r, 201, "order");
    snprintf(order, sizeof order, "%s", hc_str(r.body, "order.id"));
    snprintf(payment, sizeof payment, "%s", hc_str(r.body, "order.payment.id"));
    json_int_t total = hc_int(json_object_get(r.body, "order"), "total_cents");
    hc_response_free(&r);

    assert_int_equal(kill(s->pid, SIGKILL), 0);
    int status = fixture_kill(s, s->pid, 0);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    char err[256] = "";
    payment_store_shared_t *shared = payment_store_shared_new(s->dir, s->keys, err, sizeof err);
    if (!shared)
        fail_msg("the payment store: %s", err);
    payment_store_t *store = payment_store_open(shared);
    assert_non_null(store);
    refund_t refund;
    payment_t p;
    bool created = false;
    /* a store key as refund.c makes them: 32 hex digits */
    const char *key = "0123456789abcdef0123456789abcdef";
    assert_int_equal(payment_store_refund_begin(store, payment, key, 0, &refund, &p, &created),
                     STORE_OK);
    assert_true(created);
    assert_int_equal(p.refunding_cents, total);
    payment_store_close(&store);
    payment_store_shared_destroy(&shared);
    assert_int_equal(fixture_restart(s), 0);

    /* nobody asks again: the refund ends, and the order hears of it */
    snprintf(path, sizeof path, "/v1/orders/%s", order);
    int64_t deadline = zclock_mono() + WAIT_MS;
    char got[32] = "";
    for (;;) {
        r = hc_request(s->base, "GET", path, s->customer_token, NULL, NULL);
        hc_expect(&r, 200, "GET order");
        snprintf(got, sizeof got, "%s", hc_str(r.body, "order.status"));
        hc_response_free(&r);
        if (streq(got, "refunded") || zclock_mono() > deadline)
            break;
        zclock_sleep(50);
    }
    if (!streq(got, "refunded"))
        print_error("order %s is %s, its refund left pending\n", order, got);
    assert_string_equal(got, "refunded");
    snprintf(path, sizeof path, "/v1/payments/%s", payment);
    r = hc_request(s->base, "GET", path, s->admin_token, NULL, NULL);
    hc_expect(&r, 200, "GET payment");
    json_t *pay = json_object_get(r.body, "payment");
    assert_string_equal(hc_str(pay, "status"), "refunded");
    assert_int_equal(hc_int(pay, "refunded_cents"), total);
    hc_response_free(&r);
    s_check(s, "payments");
    s_retailctl_check(s);
    assert_int_equal(fixture_stop(s), 0);

    /* nothing left pending, nothing left to tell */
    shared = payment_store_shared_new(s->dir, s->keys, err, sizeof err);
    assert_non_null(shared);
    store = payment_store_open(shared);
    refund_t left[4];
    int n = -1;
    assert_int_equal(payment_store_refunds_pending(store, "", 4, left, &n), STORE_OK);
    assert_int_equal(n, 0);
    payment_to_tell_t untold[4];
    assert_int_equal(payment_store_to_tell(store, "", 4, untold, &n), STORE_OK);
    assert_int_equal(n, 0);
    payment_store_close(&store);
    payment_store_shared_destroy(&shared);
    fixture_destroy(&s);
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_after_created),
        cmocka_unit_test(test_crash_after_reserved),
        cmocka_unit_test(test_crash_after_charged),
        cmocka_unit_test(test_crash_after_committed),
        cmocka_unit_test(test_crash_after_paid),
        cmocka_unit_test(test_kill_in_the_middle),
        cmocka_unit_test(test_refund_told_after_a_crash),
        cmocka_unit_test(test_refund_pending_after_a_crash),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return failed;
}

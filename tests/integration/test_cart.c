/*  test_cart.c - the cart of the orders service through HTTP.
 *
 *  Starts a real retaild (tests/fixture.h) with an admin and a customer,
 *  makes products through the admin API (a category, then products in
 *  EUR and one in USD), and walks API.md "Cart, checkout and orders" as
 *  a client would:
 *    - an empty cart is {items: [], total_cents: 0, currency: null};
 *    - PUT adds a line at the end, a second PUT changes its qty in place,
 *      qty 0 removes it; DELETE .../items/{id} removes one; every answer
 *      is the whole cart with the catalog's current names and prices, and
 *      line and cart totals that add up;
 *    - a price changed in the catalog shows at once in the cart;
 *    - an unknown product is 404, qty 1000 (or -1, or none) is 400, a
 *      product in another currency is 409 conflict and changes nothing;
 *    - a product deleted from the catalog disappears from the cart, and
 *      stays gone;
 *    - the customer's and the admin's carts are apart;
 *    - no token (or a bad one) is 401;
 *    - DELETE /v1/cart is 204, and the cart is empty after it.
 *  Last, SIGTERM stops the daemon with exit 0.
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include <curl/curl.h>
#include <czmq.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ */
/* HTTP                                                                */

/* Like hc_request with a jansson body, which it takes (may be NULL). */
static hc_response_t s_send(fixture_t *s, const char *method, const char *path, const char *token,
                            json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    hc_response_t r = hc_request(s->base, method, path, token, text, NULL);
    free(text);
    return r;
}

/* ------------------------------------------------------------------ */
/* Catalog and cart helpers                                            */

static void s_category(fixture_t *s, char id[64])
{
    static int counter = 0; /* test-local */
    char name[64];
    snprintf(name, sizeof name, "Cart test %d", ++counter);
    hc_response_t r =
        s_send(s, "POST", "/v1/categories", s->admin_token, json_pack("{s:s}", "name", name));
    hc_expect(&r, 201, "create category");
    snprintf(id, 64, "%s", hc_str(r.body, "category.id"));
    hc_response_free(&r);
}

/* Creates a product; its id into id. */
static void s_product(fixture_t *s, const char *category, const char *name, json_int_t price,
                      const char *currency, char id[64])
{
    static int counter = 0; /* test-local */
    char sku[64];
    snprintf(sku, sizeof sku, "CART-%04d", ++counter);
    json_t *body = json_pack("{s:s, s:s, s:s, s:I, s:s, s:s, s:i}", "sku", sku, "name", name,
                             "description", "for the cart", "price_cents", price, "currency",
                             currency, "category_id", category, "stock", 50);
    assert_non_null(body);
    hc_response_t r = s_send(s, "POST", "/v1/products", s->admin_token, body);
    hc_expect(&r, 201, "create product");
    snprintf(id, 64, "%s", hc_str(r.body, "product.id"));
    assert_true(id[0] != '\0');
    hc_response_free(&r);
}

/* GET /v1/cart as token: the cart (caller json_decref). */
static json_t *s_cart(fixture_t *s, const char *token)
{
    hc_response_t r = hc_request(s->base, "GET", "/v1/cart", token, NULL, NULL);
    hc_expect(&r, 200, "GET /v1/cart");
    json_t *cart = json_incref(r.body);
    hc_response_free(&r);
    assert_non_null(cart);
    return cart;
}

/* PUT /v1/cart/items/{id} {qty}: the response (caller frees). */
static hc_response_t s_put(fixture_t *s, const char *token, const char *id, json_int_t qty)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/cart/items/%s", id);
    return s_send(s, "PUT", path, token, json_pack("{s:I}", "qty", qty));
}

/* PUT that must succeed: the cart it answered (caller json_decref). */
static json_t *s_put_ok(fixture_t *s, const char *token, const char *id, json_int_t qty)
{
    hc_response_t r = s_put(s, token, id, qty);
    hc_expect(&r, 200, "PUT /v1/cart/items");
    json_t *cart = json_incref(r.body);
    hc_response_free(&r);
    return cart;
}

static void s_expect_empty(json_t *cart)
{
    json_t *items = json_object_get(cart, "items");
    assert_true(json_is_array(items));
    assert_int_equal(json_array_size(items), 0);
    assert_int_equal(hc_int(cart, "total_cents"), 0);
    json_t *currency = json_object_get(cart, "currency");
    assert_non_null(currency);
    assert_true(json_is_null(currency));
    assert_int_equal(json_object_size(cart), 3);
}

/* One expected line. */
typedef struct {
    const char *id, *name;
    json_int_t price, qty;
} s_line_t;

/* Asserts the cart holds exactly these lines in this order, each with
 * its line total, and their sum as total_cents, in currency. */
static void s_expect_lines(json_t *cart, const char *currency, int n, const s_line_t *lines)
{
    json_t *items = json_object_get(cart, "items");
    assert_true(json_is_array(items));
    assert_int_equal(json_array_size(items), n);
    json_int_t total = 0;
    for (int i = 0; i < n; i++) {
        json_t *item = json_array_get(items, (size_t)i);
        assert_string_equal(hc_str(item, "product_id"), lines[i].id);
        assert_string_equal(hc_str(item, "name"), lines[i].name);
        assert_int_equal(hc_int(item, "unit_price_cents"), lines[i].price);
        assert_int_equal(hc_int(item, "qty"), lines[i].qty);
        assert_int_equal(hc_int(item, "line_total_cents"), lines[i].price * lines[i].qty);
        assert_int_equal(json_object_size(item), 5);
        total += lines[i].price * lines[i].qty;
    }
    assert_int_equal(hc_int(cart, "total_cents"), total);
    assert_string_equal(hc_str(cart, "currency"), currency);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_empty_cart(void **state)
{
    fixture_t *s = *state;
    json_t *cart = s_cart(s, s->customer_token);
    s_expect_empty(cart);
    json_decref(cart);
}

static void test_add_change_remove(void **state)
{
    fixture_t *s = *state;
    char cat[64], a[64], b[64], c[64];
    s_category(s, cat);
    s_product(s, cat, "Teapot", 2500, "EUR", a);
    s_product(s, cat, "Cup", 450, "EUR", b);
    s_product(s, cat, "Saucer", 300, "EUR", c);

    json_t *cart = s_put_ok(s, s->customer_token, a, 1);
    s_expect_lines(cart, "EUR", 1, (s_line_t[]){{a, "Teapot", 2500, 1}});
    json_decref(cart);
    cart = s_put_ok(s, s->customer_token, b, 4);
    json_decref(cart);
    cart = s_put_ok(s, s->customer_token, c, 2);
    s_expect_lines(cart, "EUR", 3,
                   (s_line_t[]){{a, "Teapot", 2500, 1}, {b, "Cup", 450, 4}, {c, "Saucer", 300, 2}});
    json_decref(cart);

    /* a new qty keeps the line's place */
    cart = s_put_ok(s, s->customer_token, a, 3);
    s_expect_lines(cart, "EUR", 3,
                   (s_line_t[]){{a, "Teapot", 2500, 3}, {b, "Cup", 450, 4}, {c, "Saucer", 300, 2}});
    json_decref(cart);
    /* and GET shows what PUT answered */
    cart = s_cart(s, s->customer_token);
    s_expect_lines(cart, "EUR", 3,
                   (s_line_t[]){{a, "Teapot", 2500, 3}, {b, "Cup", 450, 4}, {c, "Saucer", 300, 2}});
    json_decref(cart);

    /* qty 0 removes */
    cart = s_put_ok(s, s->customer_token, b, 0);
    s_expect_lines(cart, "EUR", 2, (s_line_t[]){{a, "Teapot", 2500, 3}, {c, "Saucer", 300, 2}});
    json_decref(cart);

    /* the catalog's current price and name, read when shown */
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", c);
    hc_response_t r = s_send(s, "PATCH", path, s->admin_token,
                             json_pack("{s:s, s:I}", "name", "Big saucer", "price_cents", 375));
    hc_expect(&r, 200, "PATCH product");
    hc_response_free(&r);
    cart = s_cart(s, s->customer_token);
    s_expect_lines(cart, "EUR", 2, (s_line_t[]){{a, "Teapot", 2500, 3}, {c, "Big saucer", 375, 2}});
    json_decref(cart);

    /* DELETE of one line */
    snprintf(path, sizeof path, "/v1/cart/items/%s", a);
    r = hc_request(s->base, "DELETE", path, s->customer_token, NULL, NULL);
    hc_expect(&r, 200, "DELETE /v1/cart/items");
    s_expect_lines(r.body, "EUR", 1, (s_line_t[]){{c, "Big saucer", 375, 2}});
    hc_response_free(&r);

    /* DELETE /v1/cart: 204, then empty */
    r = hc_request(s->base, "DELETE", "/v1/cart", s->customer_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE /v1/cart");
    assert_int_equal(r.len, 0);
    hc_response_free(&r);
    cart = s_cart(s, s->customer_token);
    s_expect_empty(cart);
    json_decref(cart);
}

static void test_refusals(void **state)
{
    fixture_t *s = *state;
    char cat[64], eur[64], usd[64];
    s_category(s, cat);
    s_product(s, cat, "Kettle", 4000, "EUR", eur);
    s_product(s, cat, "Kettle (US)", 4500, "USD", usd);

    hc_response_t r = s_put(s, s->customer_token, "p00000000000000000000", 1);
    hc_expect_error(&r, 404, "not_found", "unknown product");
    r = s_put(s, s->customer_token, eur, 1000);
    hc_expect_error(&r, 400, "invalid_argument", "qty 1000");
    r = s_put(s, s->customer_token, eur, -1);
    hc_expect_error(&r, 400, "invalid_argument", "qty -1");
    r = s_send(s, "PUT", "/v1/cart/items/x", s->customer_token, json_object());
    hc_expect_error(&r, 400, "invalid_argument", "no qty");

    json_t *cart = s_put_ok(s, s->customer_token, eur, 999);
    json_decref(cart);
    r = s_put(s, s->customer_token, usd, 1);
    hc_expect_error(&r, 409, "conflict", "another currency");
    cart = s_cart(s, s->customer_token);
    s_expect_lines(cart, "EUR", 1, (s_line_t[]){{eur, "Kettle", 4000, 999}});
    json_decref(cart);

    /* an empty cart takes any currency again */
    r = hc_request(s->base, "DELETE", "/v1/cart", s->customer_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE /v1/cart");
    hc_response_free(&r);
    cart = s_put_ok(s, s->customer_token, usd, 2);
    s_expect_lines(cart, "USD", 1, (s_line_t[]){{usd, "Kettle (US)", 4500, 2}});
    json_decref(cart);
    r = hc_request(s->base, "DELETE", "/v1/cart", s->customer_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE /v1/cart");
    hc_response_free(&r);
}

static void test_deleted_product_leaves_the_cart(void **state)
{
    fixture_t *s = *state;
    char cat[64], keep[64], gone[64];
    s_category(s, cat);
    s_product(s, cat, "Spoon", 120, "EUR", keep);
    s_product(s, cat, "Fork", 130, "EUR", gone);
    json_t *cart = s_put_ok(s, s->customer_token, gone, 2);
    json_decref(cart);
    cart = s_put_ok(s, s->customer_token, keep, 5);
    s_expect_lines(cart, "EUR", 2, (s_line_t[]){{gone, "Fork", 130, 2}, {keep, "Spoon", 120, 5}});
    json_decref(cart);

    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", gone);
    hc_response_t r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE product");
    hc_response_free(&r);

    for (int i = 0; i < 2; i++) { /* dropped when shown, and stays dropped */
        cart = s_cart(s, s->customer_token);
        s_expect_lines(cart, "EUR", 1, (s_line_t[]){{keep, "Spoon", 120, 5}});
        json_decref(cart);
    }
    /* it cannot come back */
    r = s_put(s, s->customer_token, gone, 1);
    hc_expect_error(&r, 404, "not_found", "deleted product");

    /* the last line's product deleted: the empty cart */
    snprintf(path, sizeof path, "/v1/products/%s", keep);
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE product");
    hc_response_free(&r);
    cart = s_cart(s, s->customer_token);
    s_expect_empty(cart);
    json_decref(cart);
}

static void test_carts_are_apart(void **state)
{
    fixture_t *s = *state;
    char cat[64], a[64], b[64];
    s_category(s, cat);
    s_product(s, cat, "Plate", 900, "EUR", a);
    s_product(s, cat, "Bowl", 700, "USD", b);
    json_t *cart = s_put_ok(s, s->customer_token, a, 2);
    json_decref(cart);
    /* the admin's own cart, in another currency even */
    cart = s_put_ok(s, s->admin_token, b, 3);
    s_expect_lines(cart, "USD", 1, (s_line_t[]){{b, "Bowl", 700, 3}});
    json_decref(cart);
    cart = s_cart(s, s->customer_token);
    s_expect_lines(cart, "EUR", 1, (s_line_t[]){{a, "Plate", 900, 2}});
    json_decref(cart);

    hc_response_t r = hc_request(s->base, "DELETE", "/v1/cart", s->admin_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE /v1/cart (admin)");
    hc_response_free(&r);
    cart = s_cart(s, s->customer_token);
    s_expect_lines(cart, "EUR", 1, (s_line_t[]){{a, "Plate", 900, 2}});
    json_decref(cart);
    cart = s_cart(s, s->admin_token);
    s_expect_empty(cart);
    json_decref(cart);
    r = hc_request(s->base, "DELETE", "/v1/cart", s->customer_token, NULL, NULL);
    hc_expect(&r, 204, "DELETE /v1/cart");
    hc_response_free(&r);
}

static void test_needs_a_token(void **state)
{
    fixture_t *s = *state;
    hc_response_t r = hc_request(s->base, "GET", "/v1/cart", NULL, NULL, NULL);
    hc_expect_error(&r, 401, "unauthenticated", "GET without a token");
    r = hc_request(s->base, "GET", "/v1/cart", "not.a.token", NULL, NULL);
    hc_expect_error(&r, 401, "unauthenticated", "GET with a bad token");
    r = hc_request(s->base, "PUT", "/v1/cart/items/x", NULL, "{\"qty\":1}", NULL);
    hc_expect_error(&r, 401, "unauthenticated", "PUT without a token");
    r = hc_request(s->base, "DELETE", "/v1/cart/items/x", NULL, NULL, NULL);
    hc_expect_error(&r, 401, "unauthenticated", "DELETE item without a token");
    r = hc_request(s->base, "DELETE", "/v1/cart", NULL, NULL, NULL);
    hc_expect_error(&r, 401, "unauthenticated", "DELETE without a token");
}

static int s_setup(void **state)
{
    fixture_opts_t opts = {.name = "retail-cart", .accounts = true};
    *state = fixture_new(&opts);
    return *state ? 0 : -1;
}

static int s_teardown(void **state)
{
    fixture_destroy((fixture_t **)state);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_cart),
        cmocka_unit_test(test_add_change_remove),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_deleted_product_leaves_the_cart),
        cmocka_unit_test(test_carts_are_apart),
        cmocka_unit_test(test_needs_a_token),
        cmocka_unit_test(fixture_test_stop), /* last: SIGTERM, and exit 0 */
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("cart", tests, s_setup, s_teardown);
    zsys_shutdown();
    curl_global_cleanup();
    return failed;
}

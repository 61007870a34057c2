/*  test_catalog.c - the catalog service through HTTP and MDP.
 *
 *  Starts a real retaild (tests/fixture.h: broker, bridge and every pool)
 *  on private ports and a private data directory, with an admin from
 *  RETAIL_ADMIN_EMAIL and a registered customer, and walks API.md
 *  "Catalog" as a client would:
 *
 *    - categories: create, list, rename, re-parent (null = root), slug
 *      conflicts, cycles, delete refused (409) while a product or a child
 *      uses the category; the list paged (limit, cursor, next_cursor);
 *      a rename and a move at once both kept;
 *    - products: create, read, patch any subset, If-Match (bare and quoted)
 *      with 412 on a stale version, sku_taken, set stock, delete (then 404
 *      and absent from every listing), attributes that come back exactly
 *      (nested objects, arrays, unicode, int64 edges, reals, types kept);
 *    - admin-only writes: 401 without a token, 403 with a customer's;
 *    - concurrent writes: eight PATCHes with the same If-Match (one wins),
 *      eight creates of one SKU (one is created);
 *    - search: word and prefix matches, case-insensitive (Latin-1 too),
 *      not infixes; every sort order checked item by item (names by the
 *      whole name, however long the common prefix); a category filter that
 *      covers a three-level subtree (with and without words) and follows
 *      re-parenting and products changing category; inclusive price range;
 *      in_stock; a cursor of another query refused;
 *    - pagination: 60 products with duplicate prices and names paged 7 at
 *      a time in every sort order (no duplicate, no gap, the sort kept
 *      across pages), and again while products are inserted and deleted
 *      between page fetches (nothing twice, nothing that existed throughout
 *      skipped, nothing deleted shown afterwards);
 *    - inventory over MDP (service "catalog"): reserve, release and commit
 *      idempotent per order id, all-or-none reservations whose error names
 *      the short (or unknown) product, callers other than "orders" refused
 *      (a "tester" may still read), and 8 threads racing 80 one-unit
 *      reservations for 20 units; out_of_stock's details {product_id,
 *      requested (summed over two lines of one product), available};
 *    - ops.check (callers orders, retailctl, or an admin's token) green
 *      after every test before it, its counts agreeing with the pages of
 *      stock.reservations;
 *    - PATCHes never undo a stock move: a reservation of everything
 *      survives a PATCH, a PATCH naming stock sets the free units as
 *      PUT .../stock does, and PATCHes over HTTP
 *      racing reservations and releases over MDP leave the stock at what
 *      the reservations hold;
 *    - last, writes acknowledged before a SIGKILL are there after a restart
 *      on the same data, and SIGTERM stops the daemon with exit 0.
 *
 *  Each test works in categories of its own, so tests sharing the daemon
 *  do not see each other's products through a category filter.
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "protocol/keys.h"
#include "protocol/mdpcli.h"

#include <ctype.h>
#include <curl/curl.h>
#include <czmq.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#define MDP_TIMEOUT_MS 10000

/* ------------------------------------------------------------------ */
/* HTTP                                                                */

/* Like hc_request with a jansson body, which it takes (may be NULL). */
static hc_response_t s_send(fixture_t *s, const char *method, const char *path, const char *token,
                            json_t *body, const char *extra_header)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    hc_response_t r = hc_request(s->base, method, path, token, text, extra_header);
    free(text);
    return r;
}

/* Asserts the status, printing the body when it differs. */
static void s_expect(const hc_response_t *r, long status, const char *what)
{
    if (r->status != status) {
        char *text = r->body ? json_dumps(r->body, JSON_COMPACT) : NULL;
        print_error("%s: expected %ld, got %ld %s\n", what, status, r->status,
                    text ? text : "(no body)");
        free(text);
    }
    assert_int_equal(r->status, status);
}

/* Asserts an error status and code. */
static void s_expect_error(hc_response_t *r, long status, const char *code, const char *what)
{
    s_expect(r, status, what);
    const char *got = hc_error_code(r);
    if (!got || strcmp(got, code) != 0)
        print_error("%s: expected code %s, got %s\n", what, code, got ? got : "(none)");
    assert_non_null(got);
    assert_string_equal(got, code);
    hc_response_free(r);
}

static json_int_t s_int(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* Percent-encodes text for a query string into out. */
static void s_urlenc(const char *text, char *out, size_t size)
{
    size_t used = 0;
    for (const unsigned char *c = (const unsigned char *)text; *c && used + 4 < size; c++) {
        if (isalnum(*c) || *c == '-' || *c == '_' || *c == '.' || *c == '~')
            out[used++] = (char)*c;
        else
            used += (size_t)snprintf(out + used, size - used, "%%%02X", *c);
    }
    out[used] = '\0';
}

/* SKUs unique within the run. */
static void s_sku(char *out, size_t size, const char *prefix)
{
    static int counter = 0; /* test-local */
    snprintf(out, size, "%s-%04d", prefix, ++counter);
}

/* ------------------------------------------------------------------ */
/* Catalog helpers                                                     */

/* Creates a category (slug and parent may be NULL); writes its id. */
static void s_category(fixture_t *s, const char *name, const char *slug, const char *parent,
                       char id[64])
{
    json_t *body = json_pack("{s:s}", "name", name);
    if (slug)
        json_object_set_new(body, "slug", json_string(slug));
    if (parent)
        json_object_set_new(body, "parent_id", json_string(parent));
    hc_response_t r = s_send(s, "POST", "/v1/categories", s->admin_token, body, NULL);
    s_expect(&r, 201, "create category");
    json_t *c = json_object_get(r.body, "category");
    assert_non_null(hc_str(c, "id"));
    assert_string_equal(hc_str(c, "name"), name);
    if (slug)
        assert_string_equal(hc_str(c, "slug"), slug);
    if (parent)
        assert_string_equal(hc_str(c, "parent_id"), parent);
    else
        assert_true(json_is_null(json_object_get(c, "parent_id")));
    snprintf(id, 64, "%s", hc_str(c, "id"));
    hc_response_free(&r);
}

/* A product body; attributes (taken, may be NULL). stock < 0: omitted. */
static json_t *s_product_body(const char *sku, const char *name, const char *description,
                              json_int_t price, const char *category, json_int_t stock,
                              json_t *attributes)
{
    json_t *body =
        json_pack("{s:s, s:s, s:s, s:I, s:s, s:s}", "sku", sku, "name", name, "description",
                  description, "price_cents", price, "currency", "EUR", "category_id", category);
    assert_non_null(body);
    if (stock >= 0)
        json_object_set_new(body, "stock", json_integer(stock));
    if (attributes)
        json_object_set_new(body, "attributes", attributes);
    return body;
}

/* Creates a product; returns it (caller json_decref). */
static json_t *s_product(fixture_t *s, const char *name, const char *description, json_int_t price,
                         const char *category, json_int_t stock)
{
    char sku[64];
    s_sku(sku, sizeof sku, "SKU");
    hc_response_t r =
        s_send(s, "POST", "/v1/products", s->admin_token,
               s_product_body(sku, name, description, price, category, stock, NULL), NULL);
    s_expect(&r, 201, "create product");
    json_t *p = json_incref(json_object_get(r.body, "product"));
    assert_non_null(p);
    assert_string_equal(hc_str(p, "sku"), sku);
    hc_response_free(&r);
    return p;
}

/* GET /v1/products/{id}: the product (caller json_decref), or NULL on 404. */
static json_t *s_get(fixture_t *s, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", id);
    hc_response_t r = hc_request(s->base, "GET", path, NULL, NULL, NULL);
    if (r.status == 404) {
        assert_string_equal(hc_error_code(&r), "not_found");
        hc_response_free(&r);
        return NULL;
    }
    s_expect(&r, 200, "get product");
    json_t *p = json_incref(json_object_get(r.body, "product"));
    hc_response_free(&r);
    return p;
}

static json_int_t s_stock_of(fixture_t *s, const char *id)
{
    json_t *p = s_get(s, id);
    assert_non_null(p);
    json_int_t stock = s_int(p, "stock");
    json_decref(p);
    return stock;
}

/* GET /v1/products?<qs>: the body (caller json_decref); asserts 200. */
static json_t *s_search(fixture_t *s, const char *qs)
{
    char path[2048];
    snprintf(path, sizeof path, "/v1/products?%s", qs);
    hc_response_t r = hc_request(s->base, "GET", path, NULL, NULL, NULL);
    s_expect(&r, 200, qs);
    assert_true(json_is_array(json_object_get(r.body, "items")));
    json_t *next = json_object_get(r.body, "next_cursor");
    assert_true(json_is_null(next) || json_is_string(next));
    json_t *body = json_incref(r.body);
    hc_response_free(&r);
    return body;
}

/* Follows next_cursor from GET /v1/products?<qs>&limit=<limit> to the
 * end; returns every item in order (caller json_decref). No page is over
 * the limit or empty unless it is the only one. */
static json_t *s_collect(fixture_t *s, const char *qs, int limit, int *pages_out)
{
    json_t *all = json_array();
    char cursor[512] = "";
    int pages = 0;
    for (;;) {
        char page_qs[1536], enc[1024];
        s_urlenc(cursor, enc, sizeof enc);
        snprintf(page_qs, sizeof page_qs, "%s&limit=%d%s%s", qs, limit, *cursor ? "&cursor=" : "",
                 enc);
        json_t *body = s_search(s, page_qs);
        json_t *items = json_object_get(body, "items");
        assert_true(json_array_size(items) <= (size_t)limit);
        pages++;
        assert_true(pages < 1000);
        json_array_extend(all, items);
        json_t *next = json_object_get(body, "next_cursor");
        if (json_is_null(next)) {
            json_decref(body);
            break;
        }
        assert_true(json_array_size(items) > 0);
        assert_true(strlen(json_string_value(next)) < sizeof cursor);
        snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_decref(body);
    }
    if (pages_out)
        *pages_out = pages;
    return all;
}

/* True when items holds a product with this id. */
static bool s_has(json_t *items, const char *id)
{
    size_t i;
    json_t *p;
    json_array_foreach(items, i, p)
    {
        if (strcmp(hc_str(p, "id"), id) == 0)
            return true;
    }
    return false;
}

/* Whether items are exactly the products ids[n], in that order (says how
 * they differ when not). */
static bool s_same_ids(json_t *items, const char *const *ids, size_t n, const char *what)
{
    bool same = json_array_size(items) == n;
    for (size_t i = 0; same && i < n; i++)
        same = strcmp(hc_str(json_array_get(items, i), "id"), ids[i]) == 0;
    if (!same) {
        print_error("%s: expected %zu items:\n", what, n);
        for (size_t i = 0; i < n; i++)
            print_error("    %s\n", ids[i]);
        print_error("  got %zu:\n", json_array_size(items));
        size_t i;
        json_t *p;
        json_array_foreach(items, i, p)
        {
            print_error("    %s %s (%lld)\n", hc_str(p, "id"), hc_str(p, "name"),
                        (long long)s_int(p, "price_cents"));
        }
    }
    return same;
}

static void s_expect_ids(json_t *items, const char *const *ids, size_t n, const char *what)
{
    assert_true(s_same_ids(items, ids, n, what));
}

/* Asserts that items hold the products ids[n] in any order. */
static void s_expect_set(json_t *items, const char *const *ids, size_t n, const char *what)
{
    bool same = json_array_size(items) == n;
    for (size_t i = 0; same && i < n; i++)
        same = s_has(items, ids[i]);
    if (!same) {
        char *text = json_dumps(items, JSON_COMPACT);
        print_error("%s: expected %zu items, got %s\n", what, n, text);
        free(text);
    }
    assert_true(same);
}

/* Asserts that no id appears twice in items. */
static void s_expect_unique(json_t *items, const char *what)
{
    zhashx_t *seen = zhashx_new();
    size_t i;
    json_t *p;
    json_array_foreach(items, i, p)
    {
        if (zhashx_insert(seen, hc_str(p, "id"), (void *)1) != 0) {
            print_error("%s: %s seen twice\n", what, hc_str(p, "id"));
            fail();
        }
    }
    zhashx_destroy(&seen);
}

/* Lower-cases ASCII and Latin-1 capitals (UTF-8 C3 80 - C3 9E but the
 * sign C3 97) into out, as the store's name sort does. */
static void s_fold_name(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (const unsigned char *c = (const unsigned char *)in; *c && n + 1 < cap; c++) {
        unsigned char b = *c;
        if (c > (const unsigned char *)in && c[-1] == 0xc3 && b >= 0x80 && b <= 0x9e && b != 0x97)
            b += 0x20;
        out[n++] = (char)tolower(b);
    }
    out[n] = '\0';
}

static int s_casecmp_full(const char *a, const char *b)
{
    char x[512], y[512];
    s_fold_name(a, x, sizeof x);
    s_fold_name(b, y, sizeof y);
    return strcmp(x, y);
}

/* Asserts that consecutive items respect the sort. */
static void s_expect_sorted(json_t *items, const char *sort)
{
    for (size_t i = 1; i < json_array_size(items); i++) {
        json_t *a = json_array_get(items, i - 1), *b = json_array_get(items, i);
        bool ok = true;
        if (strcmp(sort, "newest") == 0) {
            int c = strcmp(hc_str(a, "created_at"), hc_str(b, "created_at"));
            ok = c > 0 || (c == 0 && strcmp(hc_str(a, "id"), hc_str(b, "id")) > 0);
        } else if (strcmp(sort, "price_asc") == 0)
            ok = s_int(a, "price_cents") <= s_int(b, "price_cents");
        else if (strcmp(sort, "price_desc") == 0)
            ok = s_int(a, "price_cents") >= s_int(b, "price_cents");
        else if (strcmp(sort, "name") == 0)
            ok = s_casecmp_full(hc_str(a, "name"), hc_str(b, "name")) <= 0;
        if (!ok)
            print_error("sort %s broken at %zu: %s '%s' %lld %s, then %s '%s' %lld %s\n", sort, i,
                        hc_str(a, "id"), hc_str(a, "name"), (long long)s_int(a, "price_cents"),
                        hc_str(a, "created_at"), hc_str(b, "id"), hc_str(b, "name"),
                        (long long)s_int(b, "price_cents"), hc_str(b, "created_at"));
        assert_true(ok);
    }
}

static void s_delete_product(fixture_t *s, const char *id)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", id);
    hc_response_t r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect(&r, 204, "delete product");
    hc_response_free(&r);
}

/* ------------------------------------------------------------------ */
/* MDP                                                                 */

/* One call; asserts an answer. */
static fixture_reply_t s_call(mdpcli_t *client, const char *op, const char *args_json)
{
    static uint64_t seq = 0; /* test-local */
    uint64_t id = ++seq;
    assert_int_equal(fixture_send(client, "catalog", id, op, NULL, args_json), 0);
    fixture_reply_t r = fixture_recv(client, MDP_TIMEOUT_MS);
    if (!r.answered)
        print_error("%s %s: no answer\n", op, args_json);
    assert_true(r.answered);
    assert_true(r.id == id);
    return r;
}

static void s_call_ok(mdpcli_t *client, const char *op, const char *args_json)
{
    fixture_reply_t r = s_call(client, op, args_json);
    if (!r.ok)
        print_error("%s %s: %s\n", op, args_json, r.code);
    assert_true(r.ok);
    fixture_reply_free(&r);
}

static void s_call_error(mdpcli_t *client, const char *op, const char *args_json, const char *code)
{
    fixture_reply_t r = s_call(client, op, args_json);
    if (r.ok || strcmp(r.code, code) != 0)
        print_error("%s %s: expected %s, got %s\n", op, args_json, code, r.ok ? "ok" : r.code);
    assert_false(r.ok);
    assert_string_equal(r.code, code);
    fixture_reply_free(&r);
}

/* ------------------------------------------------------------------ */
/* Fixture                                                             */

static int s_setup(void **state)
{
    const char *const env[] = {"RETAIL_WORKERS=4", NULL};
    fixture_opts_t opts = {.name = "retail-catalog", .env = env, .accounts = true};
    *state = fixture_new(&opts);
    return *state ? 0 : -1;
}

static int s_teardown(void **state)
{
    fixture_destroy((fixture_t **)state);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Categories                                                          */

/* Every category, following next_cursor from GET /v1/categories?limit=
 * <limit> to the end (caller json_decref); asserts the pages' shape: at
 * most limit items, full ones but the last, ids rising across pages. */
static json_t *s_all_categories(fixture_t *s, int limit, int *pages_out)
{
    json_t *all = json_array();
    char cursor[128] = "", path[256];
    int pages = 0;
    for (;;) {
        snprintf(path, sizeof path, "/v1/categories?limit=%d%s%s", limit,
                 cursor[0] ? "&cursor=" : "", cursor);
        hc_response_t r = hc_request(s->base, "GET", path, NULL, NULL, NULL);
        s_expect(&r, 200, "list categories");
        json_t *items = json_object_get(r.body, "items");
        json_t *next = json_object_get(r.body, "next_cursor");
        assert_true(json_is_array(items));
        assert_true(json_array_size(items) <= (size_t)limit);
        assert_true(json_is_null(next) || json_is_string(next));
        size_t i;
        json_t *c;
        json_array_foreach(items, i, c)
        {
            assert_non_null(hc_str(c, "name"));
            assert_non_null(hc_str(c, "slug"));
            assert_non_null(json_object_get(c, "parent_id"));
            size_t n = json_array_size(all);
            if (n > 0 && strcmp(hc_str(json_array_get(all, n - 1), "id"), hc_str(c, "id")) >= 0)
                fail_msg("categories out of order or twice at %s", hc_str(c, "id"));
            json_array_append(all, c);
        }
        pages++;
        assert_true(pages < 1000);
        bool last = json_is_null(next);
        if (!last) {
            assert_int_equal(json_array_size(items), (size_t)limit);
            assert_true(strlen(json_string_value(next)) < sizeof cursor);
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        }
        hc_response_free(&r);
        if (last)
            break;
    }
    if (pages_out)
        *pages_out = pages;
    return all;
}

/* The category with this id in GET /v1/categories, every page (caller
 * json_decref), or NULL. */
static json_t *s_listed_category(fixture_t *s, const char *id)
{
    json_t *all = s_all_categories(s, 100, NULL);
    json_t *found = NULL;
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c)
    {
        if (strcmp(hc_str(c, "id"), id) == 0)
            found = json_incref(c);
    }
    json_decref(all);
    return found;
}

static void test_categories(void **state)
{
    fixture_t *s = *state;
    char home[64], kitchen[64], knives[64], garden[64], path[128];
    s_category(s, "Home", "cat-home", NULL, home);
    s_category(s, "Kitchen", "cat-kitchen", home, kitchen);
    s_category(s, "Knives", "cat-knives", kitchen, knives);
    s_category(s, "Garden & Patio", NULL, NULL, garden);

    /* listed, with a slug made up when none was given */
    json_t *c = s_listed_category(s, knives);
    assert_non_null(c);
    assert_string_equal(hc_str(c, "name"), "Knives");
    assert_string_equal(hc_str(c, "slug"), "cat-knives");
    assert_string_equal(hc_str(c, "parent_id"), kitchen);
    json_decref(c);
    c = s_listed_category(s, garden);
    assert_non_null(c);
    assert_true(strlen(hc_str(c, "slug")) > 0);
    assert_true(json_is_null(json_object_get(c, "parent_id")));
    json_decref(c);

    /* a duplicate slug, on create and on rename */
    hc_response_t r = s_send(s, "POST", "/v1/categories", s->admin_token,
                             json_pack("{s:s, s:s}", "name", "Other", "slug", "cat-home"), NULL);
    s_expect_error(&r, 409, "conflict", "duplicate slug");
    snprintf(path, sizeof path, "/v1/categories/%s", garden);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "slug", "cat-kitchen"), NULL);
    s_expect_error(&r, 409, "conflict", "rename onto a taken slug");

    /* a missing parent */
    r = s_send(s, "POST", "/v1/categories", s->admin_token,
               json_pack("{s:s, s:s}", "name", "Orphan", "parent_id", "c0000000000000000dead"),
               NULL);
    assert_true(r.status == 400 || r.status == 404);
    hc_response_free(&r);

    /* rename, new slug, re-parent, back to the root */
    r = s_send(
        s, "PATCH", path, s->admin_token,
        json_pack("{s:s, s:s, s:s}", "name", "Garden", "slug", "cat-garden", "parent_id", home),
        NULL);
    s_expect(&r, 200, "patch category");
    c = json_object_get(r.body, "category");
    assert_string_equal(hc_str(c, "id"), garden);
    assert_string_equal(hc_str(c, "name"), "Garden");
    assert_string_equal(hc_str(c, "slug"), "cat-garden");
    assert_string_equal(hc_str(c, "parent_id"), home);
    hc_response_free(&r);
    r = hc_request(s->base, "PATCH", path, s->admin_token, "{\"parent_id\":null}", NULL);
    s_expect(&r, 200, "patch category to the root");
    c = json_object_get(r.body, "category");
    assert_true(json_is_null(json_object_get(c, "parent_id")));
    assert_string_equal(hc_str(c, "name"), "Garden"); /* untouched fields stay */
    assert_string_equal(hc_str(c, "slug"), "cat-garden");
    hc_response_free(&r);
    c = s_listed_category(s, garden);
    assert_string_equal(hc_str(c, "slug"), "cat-garden");
    assert_true(json_is_null(json_object_get(c, "parent_id")));
    json_decref(c);

    /* a cycle is refused and changes nothing */
    snprintf(path, sizeof path, "/v1/categories/%s", home);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "parent_id", knives), NULL);
    assert_true(r.status == 400 || r.status == 409);
    hc_response_free(&r);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "parent_id", home), NULL);
    assert_true(r.status == 400 || r.status == 409);
    hc_response_free(&r);
    c = s_listed_category(s, home);
    assert_true(json_is_null(json_object_get(c, "parent_id")));
    json_decref(c);
    r = s_send(s, "PATCH", "/v1/categories/c0000000000000000dead", s->admin_token,
               json_pack("{s:s}", "name", "Nobody"), NULL);
    s_expect_error(&r, 404, "not_found", "patch a missing category");

    /* delete: refused while a child or a product uses it */
    snprintf(path, sizeof path, "/v1/categories/%s", kitchen);
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect_error(&r, 409, "conflict", "delete a category with a child");
    json_t *knife = s_product(s, "Chef knife", "Forged steel", 4900, knives, 3);
    snprintf(path, sizeof path, "/v1/categories/%s", knives);
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect_error(&r, 409, "conflict", "delete a category with a product");
    c = s_listed_category(s, knives);
    assert_non_null(c);
    json_decref(c);
    s_delete_product(s, hc_str(knife, "id"));
    json_decref(knife);
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect(&r, 204, "delete an unused category");
    hc_response_free(&r);
    assert_null(s_listed_category(s, knives));
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect_error(&r, 404, "not_found", "delete it again");
    snprintf(path, sizeof path, "/v1/categories/%s", kitchen);
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect(&r, 204, "delete the parent once the child is gone");
    hc_response_free(&r);
    /* the slug is free again */
    char again[64];
    s_category(s, "Knives again", "cat-knives", home, again);
}

/* GET /v1/categories pages for real: limit (default 20, 1..100) and
 * cursor, next_cursor null only on the last page (it stopped at 1,024
 * and always said null). */
static void test_category_pages(void **state)
{
    fixture_t *s = *state;
    enum { MADE = 23 };
    char ids[MADE][64];
    for (int i = 0; i < MADE; i++) {
        char name[32], slug[32];
        snprintf(name, sizeof name, "Paged %d", i);
        snprintf(slug, sizeof slug, "cat-paged-%d", i);
        s_category(s, name, slug, NULL, ids[i]);
    }
    /* 7 at a time: every category once, in creation order, ours among
     * them in the order made */
    int pages = 0;
    json_t *all = s_all_categories(s, 7, &pages);
    size_t total = json_array_size(all);
    assert_true(total >= MADE);
    assert_int_equal(pages, (int)((total + 6) / 7));
    int next_mine = 0;
    size_t i;
    json_t *c;
    json_array_foreach(all, i, c)
    {
        if (next_mine < MADE && strcmp(hc_str(c, "id"), ids[next_mine]) == 0)
            next_mine++;
    }
    assert_int_equal(next_mine, MADE);
    json_decref(all);
    /* pages of the most, 100: the same categories */
    all = s_all_categories(s, 100, &pages);
    assert_int_equal(pages, (int)((total + 99) / 100));
    assert_int_equal(json_array_size(all), total);
    json_decref(all);

    /* the default is 20, with a cursor since there are more */
    hc_response_t r = hc_request(s->base, "GET", "/v1/categories", NULL, NULL, NULL);
    s_expect(&r, 200, "first page");
    assert_int_equal(json_array_size(json_object_get(r.body, "items")), 20);
    assert_non_null(hc_str(r.body, "next_cursor"));
    hc_response_free(&r);

    /* a cursor stays a position: after the last one, a category made
     * since is the next page */
    char path[256], newest[64];
    snprintf(path, sizeof path, "/v1/categories?cursor=%s", ids[MADE - 1]);
    r = hc_request(s->base, "GET", path, NULL, NULL, NULL);
    s_expect(&r, 200, "after the last");
    size_t after_last = json_array_size(json_object_get(r.body, "items"));
    hc_response_free(&r);
    s_category(s, "Paged late", "cat-paged-late", NULL, newest);
    snprintf(path, sizeof path, "/v1/categories?limit=100&cursor=%s", ids[MADE - 1]);
    r = hc_request(s->base, "GET", path, NULL, NULL, NULL);
    s_expect(&r, 200, "after the last, again");
    json_t *items = json_object_get(r.body, "items");
    assert_int_equal(json_array_size(items), after_last + 1);
    assert_string_equal(hc_str(json_array_get(items, after_last), "id"), newest);
    assert_true(json_is_null(json_object_get(r.body, "next_cursor")));
    hc_response_free(&r);

    /* bad limits and cursors are refused, naming the argument */
    const char *bad[] = {"limit=0", "limit=101", "limit=-1", "limit=many",
                         "cursor=c0123456789012345678901234567890123456789"};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(path, sizeof path, "/v1/categories?%s", bad[k]);
        r = hc_request(s->base, "GET", path, NULL, NULL, NULL);
        s_expect(&r, 400, bad[k]);
        assert_string_equal(hc_error_code(&r), "invalid_argument");
        const char *field =
            hc_str(json_array_get(
                       json_object_get(json_object_get(json_object_get(r.body, "error"), "details"),
                                       "fields"),
                       0),
                   "field");
        assert_non_null(field);
        assert_true(strncmp(bad[k], field, strlen(field)) == 0);
        hc_response_free(&r);
    }
}

/* ------------------------------------------------------------------ */
/* Who may write                                                       */

static void s_expect_denied(fixture_t *s, const char *method, const char *path, const char *body)
{
    hc_response_t r = hc_request(s->base, method, path, NULL, body, NULL);
    s_expect_error(&r, 401, "unauthenticated", path);
    r = hc_request(s->base, method, path, s->customer_token, body, NULL);
    s_expect_error(&r, 403, "forbidden", path);
}

static void test_writes_need_admin(void **state)
{
    fixture_t *s = *state;
    char cat[64], path[160], body[512];
    s_category(s, "Permissions", "cat-permissions", NULL, cat);
    json_t *p = s_product(s, "Guarded lamp", "Only admins change it", 1500, cat, 4);
    const char *id = hc_str(p, "id");

    s_expect_denied(s, "POST", "/v1/categories", "{\"name\":\"Nope\",\"slug\":\"cat-nope\"}");
    snprintf(path, sizeof path, "/v1/categories/%s", cat);
    s_expect_denied(s, "PATCH", path, "{\"name\":\"Nope\"}");
    s_expect_denied(s, "DELETE", path, NULL);
    snprintf(body, sizeof body,
             "{\"sku\":\"NOPE-1\",\"name\":\"Nope\",\"description\":\"x\",\"price_cents\":1,"
             "\"currency\":\"EUR\",\"category_id\":\"%s\"}",
             cat);
    s_expect_denied(s, "POST", "/v1/products", body);
    snprintf(path, sizeof path, "/v1/products/%s", id);
    s_expect_denied(s, "PATCH", path, "{\"price_cents\":1}");
    s_expect_denied(s, "DELETE", path, NULL);
    snprintf(path, sizeof path, "/v1/products/%s/stock", id);
    s_expect_denied(s, "PUT", path, "{\"stock\":1000}");

    /* nothing changed; reads need no token */
    json_t *now = s_get(s, id);
    assert_non_null(now);
    assert_true(json_equal(now, p));
    json_decref(now);
    json_t *c = s_listed_category(s, cat);
    assert_string_equal(hc_str(c, "name"), "Permissions");
    json_decref(c);
    json_t *found = s_search(s, "q=nope");
    assert_int_equal(json_array_size(json_object_get(found, "items")), 0);
    json_decref(found);
    json_decref(p);
}

/* ------------------------------------------------------------------ */
/* Products                                                            */

static bool s_is_rfc3339(const char *t)
{
    int y, mo, d, h, mi, sec;
    return t && sscanf(t, "%4d-%2d-%2dT%2d:%2d:%2d", &y, &mo, &d, &h, &mi, &sec) == 6 &&
           t[strlen(t) - 1] == 'Z' && y >= 2020;
}

static void test_product_crud(void **state)
{
    fixture_t *s = *state;
    char cat[64], other[64], path[160], header[64];
    s_category(s, "Lighting", "cat-lighting", NULL, cat);
    s_category(s, "Outdoor lighting", "cat-outdoor-lighting", NULL, other);

    /* create: every field of the contract, defaults for the optional ones */
    hc_response_t r = s_send(
        s, "POST", "/v1/products", s->admin_token,
        s_product_body("LAMP-001", "Brass desk lamp", "A heavy brass lamp.", 8900, cat, -1, NULL),
        NULL);
    s_expect(&r, 201, "create product");
    json_t *p = json_incref(json_object_get(r.body, "product"));
    hc_response_free(&r);
    const char *keys[] = {"id",          "sku",      "name",        "description",
                          "price_cents", "currency", "category_id", "attributes",
                          "stock",       "version",  "created_at",  "updated_at"};
    assert_int_equal(json_object_size(p), sizeof keys / sizeof keys[0]);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        assert_non_null(json_object_get(p, keys[i]));
    char id[64];
    snprintf(id, sizeof id, "%s", hc_str(p, "id"));
    assert_string_equal(hc_str(p, "sku"), "LAMP-001");
    assert_string_equal(hc_str(p, "name"), "Brass desk lamp");
    assert_string_equal(hc_str(p, "description"), "A heavy brass lamp.");
    assert_int_equal(s_int(p, "price_cents"), 8900);
    assert_string_equal(hc_str(p, "currency"), "EUR");
    assert_string_equal(hc_str(p, "category_id"), cat);
    assert_true(json_is_object(json_object_get(p, "attributes")));
    assert_int_equal(json_object_size(json_object_get(p, "attributes")), 0);
    assert_int_equal(s_int(p, "stock"), 0);
    assert_int_equal(s_int(p, "version"), 1);
    assert_true(s_is_rfc3339(hc_str(p, "created_at")));
    assert_true(s_is_rfc3339(hc_str(p, "updated_at")));
    json_t *got = s_get(s, id);
    assert_true(json_equal(got, p));
    json_decref(got);

    /* sku_taken, and a failed create leaves nothing behind */
    r = s_send(s, "POST", "/v1/products", s->admin_token,
               s_product_body("LAMP-001", "Copy", "x", 1, cat, 1, NULL), NULL);
    s_expect_error(&r, 409, "sku_taken", "duplicate sku");
    r = s_send(s, "POST", "/v1/products", s->admin_token,
               s_product_body("LAMP-002", "Nowhere lamp", "x", 1, "c0000000000000000dead", 1, NULL),
               NULL);
    assert_true(r.status == 400 || r.status == 404);
    hc_response_free(&r);
    r = s_send(s, "POST", "/v1/products", s->admin_token,
               s_product_body("LAMP-003", "Bad price", "x", -5, cat, 1, NULL), NULL);
    s_expect_error(&r, 400, "invalid_argument", "negative price");
    r = s_send(s, "POST", "/v1/products", s->admin_token, json_pack("{s:s}", "sku", "LAMP-004"),
               NULL);
    s_expect_error(&r, 400, "invalid_argument", "missing fields");
    json_t *second = s_product(s, "Second lamp", "x", 100, cat, 1);
    r = s_send(s, "POST", "/v1/products", s->admin_token,
               s_product_body("LAMP-002", "Somewhere lamp", "x", 1, cat, 1, NULL), NULL);
    s_expect(&r, 201, "the sku of a failed create is free");
    json_t *third = json_incref(json_object_get(r.body, "product"));
    hc_response_free(&r);

    /* patch a subset without If-Match */
    snprintf(path, sizeof path, "/v1/products/%s", id);
    r = s_send(s, "PATCH", path, s->admin_token,
               json_pack("{s:I, s:s}", "price_cents", (json_int_t)7900, "category_id", other),
               NULL);
    s_expect(&r, 200, "patch price and category");
    json_t *q = json_object_get(r.body, "product");
    assert_int_equal(s_int(q, "price_cents"), 7900);
    assert_string_equal(hc_str(q, "category_id"), other);
    assert_string_equal(hc_str(q, "name"), "Brass desk lamp");
    assert_string_equal(hc_str(q, "sku"), "LAMP-001");
    assert_string_equal(hc_str(q, "created_at"), hc_str(p, "created_at"));
    assert_int_equal(s_int(q, "version"), 2);
    hc_response_free(&r);

    /* If-Match: the current version (bare), then a stale one, then quoted */
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "name", "Brass reading lamp"),
               "If-Match: 2");
    s_expect(&r, 200, "If-Match current");
    assert_int_equal(s_int(json_object_get(r.body, "product"), "version"), 3);
    hc_response_free(&r);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "name", "Lost update"),
               "If-Match: 2");
    s_expect_error(&r, 412, "version_mismatch", "If-Match stale");
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "description", "Quoted."),
               "If-Match: \"3\"");
    s_expect(&r, 200, "If-Match quoted");
    q = json_object_get(r.body, "product");
    assert_int_equal(s_int(q, "version"), 4);
    assert_string_equal(hc_str(q, "name"), "Brass reading lamp"); /* not "Lost update" */
    assert_string_equal(hc_str(q, "description"), "Quoted.");
    hc_response_free(&r);
    snprintf(header, sizeof header, "If-Match: \"%d\"", 1);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "name", "Lost"), header);
    s_expect_error(&r, 412, "version_mismatch", "If-Match quoted stale");

    /* sku_taken on patch; unknown product */
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "sku", "LAMP-002"), NULL);
    s_expect_error(&r, 409, "sku_taken", "patch onto a taken sku");
    r = s_send(s, "PATCH", "/v1/products/p0000000000000000dead", s->admin_token,
               json_pack("{s:s}", "name", "x"), NULL);
    s_expect_error(&r, 404, "not_found", "patch a missing product");
    r = hc_request(s->base, "GET", "/v1/products/p0000000000000000dead", NULL, NULL, NULL);
    s_expect_error(&r, 404, "not_found", "get a missing product");

    /* a new sku frees the old one */
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "sku", "LAMP-001B"), NULL);
    s_expect(&r, 200, "patch sku");
    assert_int_equal(s_int(json_object_get(r.body, "product"), "version"), 5);
    hc_response_free(&r);
    json_t *reuse = s_product_body("LAMP-001", "Reused sku", "x", 1, cat, 0, NULL);
    r = s_send(s, "POST", "/v1/products", s->admin_token, reuse, NULL);
    s_expect(&r, 201, "the old sku is free");
    json_t *fourth = json_incref(json_object_get(r.body, "product"));
    hc_response_free(&r);

    /* stock */
    snprintf(path, sizeof path, "/v1/products/%s/stock", id);
    r = s_send(s, "PUT", path, s->admin_token, json_pack("{s:I}", "stock", (json_int_t)42), NULL);
    s_expect(&r, 200, "set stock");
    q = json_object_get(r.body, "product");
    assert_int_equal(s_int(q, "stock"), 42);
    assert_int_equal(s_int(q, "version"), 6);
    assert_string_equal(hc_str(q, "sku"), "LAMP-001B");
    hc_response_free(&r);
    assert_int_equal(s_stock_of(s, id), 42);
    r = s_send(s, "PUT", path, s->admin_token, json_pack("{s:I}", "stock", (json_int_t)-1), NULL);
    s_expect_error(&r, 400, "invalid_argument", "negative stock");
    r = s_send(s, "PUT", "/v1/products/p0000000000000000dead/stock", s->admin_token,
               json_pack("{s:I}", "stock", (json_int_t)1), NULL);
    s_expect_error(&r, 404, "not_found", "stock of a missing product");
    assert_int_equal(s_stock_of(s, id), 42);

    /* delete: 404 afterwards and gone from every listing */
    char qs[256];
    snprintf(qs, sizeof qs, "q=reading&category=%s", other);
    json_t *before = s_search(s, qs);
    assert_true(s_has(json_object_get(before, "items"), id));
    json_decref(before);
    snprintf(path, sizeof path, "/v1/products/%s", id);
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect(&r, 204, "delete product");
    assert_null(r.body);
    hc_response_free(&r);
    assert_null(s_get(s, id));
    r = hc_request(s->base, "DELETE", path, s->admin_token, NULL, NULL);
    s_expect_error(&r, 404, "not_found", "delete again");
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "name", "Ghost"), NULL);
    s_expect_error(&r, 404, "not_found", "patch a deleted product");
    const char *listings[] = {"q=reading",
                              "q=brass",
                              "q=quoted",
                              "sort=newest&limit=100",
                              "sort=price_asc&min_price=7900&max_price=7900&limit=100",
                              "sort=name&limit=100",
                              "in_stock=true&limit=100",
                              qs};
    for (size_t i = 0; i < sizeof listings / sizeof listings[0]; i++) {
        json_t *after = s_search(s, listings[i]);
        if (s_has(json_object_get(after, "items"), id))
            print_error("deleted product still in %s\n", listings[i]);
        assert_false(s_has(json_object_get(after, "items"), id));
        json_decref(after);
    }
    snprintf(qs, sizeof qs, "category=%s", other);
    json_t *left = s_search(s, qs);
    assert_int_equal(json_array_size(json_object_get(left, "items")), 0);
    json_decref(left);
    /* its sku is free */
    r = s_send(s, "POST", "/v1/products", s->admin_token,
               s_product_body("LAMP-001B", "Reborn", "x", 1, cat, 0, NULL), NULL);
    s_expect(&r, 201, "the deleted product's sku is free");
    hc_response_free(&r);
    json_decref(p);
    json_decref(second);
    json_decref(third);
    json_decref(fourth);
}

static void test_attributes_round_trip(void **state)
{
    fixture_t *s = *state;
    char cat[64], path[160];
    s_category(s, "Attributes", "cat-attributes", NULL, cat);
    const char *text =
        "{\"color\":\"midnight blue\","
        "\"size\":{\"w\":120,\"h\":-45,\"unit\":\"mm\",\"tolerance\":0.1},"
        "\"tags\":[\"new\",\"sale\",[],{},[1,[2,[3,[4]]]],null,true,false],"
        "\"\xe5\x90\x8d\xe5\x89\x8d\":\"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\","
        "\"emoji\":\"\xf0\x9f\x8e\x89 \xc3\xa9t\xc3\xa9 \xe2\x82\xac\","
        "\"escaped\":\"quote \\\" backslash \\\\ newline \\n tab \\t \\u00e9 \\ud83d\\ude00\","
        "\"int_max\":9223372036854775807,\"int_min\":-9223372036854775808,"
        "\"beyond_double\":9007199254740993,\"zero\":0,\"minus_one\":-1,"
        "\"real\":0.1,\"whole_real\":2.0,\"tiny\":5e-324,\"huge\":1.7976931348623157e308,"
        "\"negative_real\":-273.15,"
        "\"empty_string\":\"\",\"empty_object\":{},\"empty_array\":[],\"nothing\":null,"
        "\"deep\":{\"a\":{\"b\":{\"c\":{\"d\":{\"e\":[{\"f\":\"g\"}]}}}}}}";
    json_error_t jerr;
    json_t *attributes = json_loads(text, 0, &jerr);
    if (!attributes)
        print_error("test data: %s\n", jerr.text);
    assert_non_null(attributes);

    hc_response_t r = s_send(
        s, "POST", "/v1/products", s->admin_token,
        s_product_body("ATTR-1", "Attribute lamp", "x", 100, cat, 1, json_incref(attributes)),
        NULL);
    s_expect(&r, 201, "create with attributes");
    json_t *back = json_object_get(json_object_get(r.body, "product"), "attributes");
    assert_true(json_equal(back, attributes));
    char id[64];
    snprintf(id, sizeof id, "%s", hc_str(json_object_get(r.body, "product"), "id"));
    hc_response_free(&r);

    json_t *p = s_get(s, id);
    back = json_object_get(p, "attributes");
    if (!json_equal(back, attributes)) {
        char *dump = json_dumps(back, JSON_COMPACT);
        print_error("attributes came back as %s\n", dump);
        free(dump);
    }
    assert_true(json_equal(back, attributes));
    /* types are kept: 2.0 stays a real, big integers stay exact */
    assert_true(json_is_real(json_object_get(back, "whole_real")));
    assert_true(json_is_integer(json_object_get(back, "beyond_double")));
    assert_true(json_integer_value(json_object_get(back, "beyond_double")) == 9007199254740993LL);
    assert_true(json_real_value(json_object_get(back, "real")) == 0.1);
    json_decref(p);

    /* found in a listing with the same attributes */
    char qs[128];
    snprintf(qs, sizeof qs, "category=%s", cat);
    json_t *found = s_search(s, qs);
    assert_true(json_equal(
        json_object_get(json_array_get(json_object_get(found, "items"), 0), "attributes"),
        attributes));
    json_decref(found);

    /* a patch replaces them whole, and other fields keep theirs */
    snprintf(path, sizeof path, "/v1/products/%s", id);
    json_t *replacement = json_loads("{\"only\":[1.5,\"two\",{\"three\":3}]}", 0, NULL);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:O}", "attributes", replacement),
               NULL);
    s_expect(&r, 200, "patch attributes");
    assert_true(
        json_equal(json_object_get(json_object_get(r.body, "product"), "attributes"), replacement));
    hc_response_free(&r);
    p = s_get(s, id);
    assert_true(json_equal(json_object_get(p, "attributes"), replacement));
    json_decref(p);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "name", "Renamed lamp"), NULL);
    s_expect(&r, 200, "patch name only");
    assert_true(
        json_equal(json_object_get(json_object_get(r.body, "product"), "attributes"), replacement));
    hc_response_free(&r);

    /* attributes must be an object */
    r = hc_request(s->base, "PATCH", path, s->admin_token, "{\"attributes\":[1,2]}", NULL);
    s_expect_error(&r, 400, "invalid_argument", "array attributes");
    r = hc_request(s->base, "PATCH", path, s->admin_token, "{\"attributes\":\"red\"}", NULL);
    s_expect_error(&r, 400, "invalid_argument", "string attributes");
    p = s_get(s, id);
    assert_true(json_equal(json_object_get(p, "attributes"), replacement));
    json_decref(p);
    json_decref(replacement);
    json_decref(attributes);
}

/* ------------------------------------------------------------------ */
/* Search                                                              */

static json_t *s_items_of(fixture_t *s, const char *qs)
{
    json_t *body = s_search(s, qs);
    json_t *items = json_incref(json_object_get(body, "items"));
    json_decref(body);
    return items;
}

static void test_search_words(void **state)
{
    fixture_t *s = *state;
    char cat[64], qs[256];
    s_category(s, "Words", "cat-words", NULL, cat);
    json_t *plush = s_product(s, "Quokka plush", "A soft toy.", 1200, cat, 5);
    json_t *gnome = s_product(s, "Garden gnome", "A gnome riding a QUOKKA.", 2500, cat, 5);
    json_t *mug = s_product(s, "quokka mug", "Ceramic, 300 ml.", 900, cat, 5);
    json_t *other = s_product(s, "Travel mug", "Steel; not an animal.", 1100, cat, 5);
    json_t *torch =
        s_product(s, "Cr\xc3\xa8me br\xc3\xbb\x6c\xc3\xa9\x65 torch", "For sugar.", 3000, cat, 5);
    const char *name_first[] = {hc_str(mug, "id"), hc_str(plush, "id"), hc_str(gnome, "id")};

    /* relevance: the word in the name first, ties by newest */
    const char *words[] = {"quokka", "QUOKKA", "Quokka", "quok", "QuOk", "q"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        snprintf(qs, sizeof qs, "q=%s&category=%s", words[i], cat);
        json_t *items = s_items_of(s, qs);
        if (strcmp(words[i], "q") == 0) /* "q" is a prefix of quokka only */
            s_expect_set(items, name_first, 3, qs);
        else
            s_expect_ids(items, name_first, 3, qs);
        json_decref(items);
        snprintf(qs, sizeof qs, "q=%s&category=%s&sort=relevance", words[i], cat);
        items = s_items_of(s, qs);
        if (strcmp(words[i], "q") != 0)
            s_expect_ids(items, name_first, 3, qs);
        json_decref(items);
    }
    /* a word inside a word is not a match; nor is an unknown one */
    const char *none[] = {"okka", "uokka", "quokkas", "zzyzx", "lush"};
    for (size_t i = 0; i < sizeof none / sizeof none[0]; i++) {
        snprintf(qs, sizeof qs, "q=%s&category=%s", none[i], cat);
        json_t *items = s_items_of(s, qs);
        if (json_array_size(items) != 0)
            print_error("%s matched %zu\n", qs, json_array_size(items));
        assert_int_equal(json_array_size(items), 0);
        json_decref(items);
    }
    /* the description counts; punctuation splits words */
    snprintf(qs, sizeof qs, "q=ceramic&category=%s", cat);
    json_t *items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){hc_str(mug, "id")}, 1, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "q=steel&category=%s", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){hc_str(other, "id")}, 1, qs);
    json_decref(items);
    /* two words: the product with both ranks first */
    snprintf(qs, sizeof qs, "q=quokka%%20mug&category=%s", cat);
    items = s_items_of(s, qs);
    assert_true(json_array_size(items) >= 1);
    assert_string_equal(hc_str(json_array_get(items, 0), "id"), hc_str(mug, "id"));
    json_decref(items);
    /* non-ASCII letters, upper and lower case, whole and prefix */
    const char *accented[] = {"cr\xc3\xa8me", "CR\xc3\x88ME", "Cr\xc3\x88m", "br\xc3\xbb",
                              "BR\xc3\x9bL\xc3\x89\x45"};
    for (size_t i = 0; i < sizeof accented / sizeof accented[0]; i++) {
        char enc[64];
        s_urlenc(accented[i], enc, sizeof enc);
        snprintf(qs, sizeof qs, "q=%s&category=%s", enc, cat);
        items = s_items_of(s, qs);
        if (json_array_size(items) != 1)
            print_error("q=%s found %zu\n", accented[i], json_array_size(items));
        s_expect_ids(items, (const char *[]){hc_str(torch, "id")}, 1, accented[i]);
        json_decref(items);
    }
    /* q with other filters */
    snprintf(qs, sizeof qs, "q=quokka&category=%s&max_price=1200", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){hc_str(mug, "id"), hc_str(plush, "id")}, 2, qs);
    json_decref(items);
    /* an edit moves the product between words */
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s", hc_str(other, "id"));
    hc_response_t r =
        s_send(s, "PATCH", path, s->admin_token,
               json_pack("{s:s, s:s}", "name", "Wombat mug", "description", "Enamel."), NULL);
    s_expect(&r, 200, "rename");
    hc_response_free(&r);
    snprintf(qs, sizeof qs, "q=steel&category=%s", cat);
    items = s_items_of(s, qs);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);
    snprintf(qs, sizeof qs, "q=wombat&category=%s", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){hc_str(other, "id")}, 1, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "q=travel&category=%s", cat);
    items = s_items_of(s, qs);
    assert_int_equal(json_array_size(items), 0);
    json_decref(items);

    json_decref(plush);
    json_decref(gnome);
    json_decref(mug);
    json_decref(other);
    json_decref(torch);
}

static void test_search_sorts_and_filters(void **state)
{
    fixture_t *s = *state;
    char cat[64], qs[256];
    s_category(s, "Sorting", "cat-sorting", NULL, cat);
    /* created in this order; equal prices and names differing in case or
     * only at the end are told apart by the sort, not by creation */
    json_t *p[6];
    p[0] = s_product(s, "banana Stand", "Wood.", 500, cat, 2);
    p[1] = s_product(s, "Deluxe kettle, 2 L", "Steel.", 900, cat, 0);
    p[2] = s_product(s, "Apple crate", "Pine.", 300, cat, 1);
    p[3] = s_product(s, "cherry Pit", "Stone.", 700, cat, 0);
    p[4] = s_product(s, "apple Basket", "Wicker.", 301, cat, 9);
    p[5] = s_product(s, "Deluxe kettle, 1 L", "Steel.", 100, cat, 3);
#define ID(i) hc_str(p[i], "id")
    struct {
        const char *sort;
        const char *ids[6];
    } expected[] = {
        {"newest", {ID(5), ID(4), ID(3), ID(2), ID(1), ID(0)}},
        {"price_asc", {ID(5), ID(2), ID(4), ID(0), ID(3), ID(1)}},
        {"price_desc", {ID(1), ID(3), ID(0), ID(4), ID(2), ID(5)}},
        {"name", {ID(4), ID(2), ID(0), ID(3), ID(5), ID(1)}},
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++) {
        snprintf(qs, sizeof qs, "category=%s&sort=%s", cat, expected[i].sort);
        json_t *items = s_items_of(s, qs);
        s_expect_ids(items, expected[i].ids, 6, qs);
        s_expect_sorted(items, expected[i].sort);
        json_decref(items);
        /* the same order two at a time */
        items = s_collect(s, qs, 2, NULL);
        s_expect_ids(items, expected[i].ids, 6, qs);
        json_decref(items);
    }
    /* newest is the default without q */
    snprintf(qs, sizeof qs, "category=%s", cat);
    json_t *items = s_items_of(s, qs);
    s_expect_ids(items, expected[0].ids, 6, "default sort");
    json_decref(items);

    /* price range, inclusive at both ends */
    snprintf(qs, sizeof qs, "category=%s&min_price=300&max_price=700&sort=price_asc", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(2), ID(4), ID(0), ID(3)}, 4, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&min_price=301", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(4), ID(3), ID(1), ID(0)}, 4, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&max_price=299", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(5)}, 1, qs);
    json_decref(items);
    /* an empty range is a mistake, not an empty page */
    char bad[512];
    snprintf(bad, sizeof bad, "/v1/products?category=%s&min_price=800&max_price=200", cat);
    hc_response_t r = hc_request(s->base, "GET", bad, NULL, NULL, NULL);
    s_expect_error(&r, 400, "invalid_argument", bad);

    /* in stock only, alone and with a sort, a range and words */
    snprintf(qs, sizeof qs, "category=%s&in_stock=true", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(5), ID(4), ID(2), ID(0)}, 4, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&in_stock=true&sort=price_desc&max_price=500", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(0), ID(4), ID(2), ID(5)}, 4, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&in_stock=true&q=steel", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(5)}, 1, qs);
    json_decref(items);
    /* stock changes move products in and out */
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s/stock", ID(3));
    r = s_send(s, "PUT", path, s->admin_token, json_pack("{s:I}", "stock", (json_int_t)1), NULL);
    s_expect(&r, 200, "restock");
    hc_response_free(&r);
    snprintf(path, sizeof path, "/v1/products/%s/stock", ID(5));
    r = s_send(s, "PUT", path, s->admin_token, json_pack("{s:I}", "stock", (json_int_t)0), NULL);
    s_expect(&r, 200, "sold out");
    hc_response_free(&r);
    snprintf(qs, sizeof qs, "category=%s&in_stock=true&sort=price_asc", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(2), ID(4), ID(0), ID(3)}, 4, qs);
    json_decref(items);
    /* a price change moves it in the price order */
    snprintf(path, sizeof path, "/v1/products/%s", ID(1));
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:I}", "price_cents", (json_int_t)50),
               NULL);
    s_expect(&r, 200, "reprice");
    hc_response_free(&r);
    snprintf(qs, sizeof qs, "category=%s&sort=price_asc&max_price=300", cat);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){ID(1), ID(5), ID(2)}, 3, qs);
    json_decref(items);

    /* bad arguments */
    snprintf(qs, sizeof qs, "category=%s&sort=cheapest", cat);
    snprintf(bad, sizeof bad, "/v1/products?%s", qs);
    r = hc_request(s->base, "GET", bad, NULL, NULL, NULL);
    s_expect_error(&r, 400, "invalid_argument", qs);
    r = hc_request(s->base, "GET", "/v1/products?min_price=cheap", NULL, NULL, NULL);
    s_expect_error(&r, 400, "invalid_argument", "min_price=cheap");

    /* a cursor belongs to its query */
    snprintf(qs, sizeof qs, "category=%s&sort=price_asc&limit=2", cat);
    json_t *body = s_search(s, qs);
    const char *cursor = hc_str(body, "next_cursor");
    assert_non_null(cursor);
    char enc[512], path2[1024];
    s_urlenc(cursor, enc, sizeof enc);
    const char *others[] = {"sort=name", "sort=price_desc", "sort=newest", "q=steel&sort=price_asc",
                            "sort=price_asc&min_price=400"};
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        snprintf(path2, sizeof path2, "/v1/products?category=%s&%s&limit=2&cursor=%s", cat,
                 others[i], enc);
        r = hc_request(s->base, "GET", path2, NULL, NULL, NULL);
        s_expect_error(&r, 400, "invalid_argument", path2);
    }
    snprintf(path2, sizeof path2, "/v1/products?category=%s&sort=price_asc&limit=2&cursor=%s", cat,
             enc);
    r = hc_request(s->base, "GET", path2, NULL, NULL, NULL);
    s_expect(&r, 200, "the cursor with its own query");
    hc_response_free(&r);
    /* made-up and cut-short cursors */
    char cut[512];
    snprintf(cut, sizeof cut, "%.*s", (int)strlen(enc) / 2, enc);
    const char *garbage[] = {"x", "AAAA", "not-a-cursor", "%2F%2B%3D%3D", cut};
    for (size_t i = 0; i < sizeof garbage / sizeof garbage[0]; i++) {
        snprintf(path2, sizeof path2, "/v1/products?category=%s&sort=price_asc&cursor=%s", cat,
                 garbage[i]);
        r = hc_request(s->base, "GET", path2, NULL, NULL, NULL);
        s_expect_error(&r, 400, "invalid_argument", path2);
    }
    json_decref(body);
#undef ID
    for (int i = 0; i < 6; i++)
        json_decref(p[i]);
}

/* Asserts that the products ids[n] appear in items in this order (with
 * others between them allowed). */
static void s_expect_subsequence(json_t *items, const char *const *ids, size_t n, const char *what)
{
    size_t found = 0, i;
    json_t *p;
    json_array_foreach(items, i, p)
    {
        if (found < n && strcmp(hc_str(p, "id"), ids[found]) == 0)
            found++;
    }
    if (found != n)
        print_error("%s: %zu of %zu in order\n", what, found, n);
    assert_int_equal(found, n);
}

/* Names that differ only after a long common prefix (beyond the 24 bytes
 * the index values carry, and up to the 200-byte limit) still sort by the
 * whole lower-cased name, on one page and across pages, from every source
 * of the name sort: the category index, word postings, and the name index
 * (no filter). */
static void test_search_sort_long_names(void **state)
{
    fixture_t *s = *state;
    char cat[64], qs[256];
    s_category(s, "Long names", "cat-long-names", NULL, cat);
    char long_a[201], long_b[201];
    memset(long_a, 'k', 200);
    long_a[0] = 'K';
    long_a[200] = '\0';
    memcpy(long_b, long_a, sizeof long_b);
    long_a[199] = 'a', long_b[199] = 'b';
    /* created in reverse name order, so creation order cannot pass */
    static const char *const names[] = {
        "Professional Stainless Steel Chef Knife, 30 cm",
        "Professional Stainless Steel Chef Knife, 25 cm",
        "professional stainless steel chef knife, 20 cm",
        "Professional Stainless Steel Chef Knife, 15 cm",
        "PROFESSIONAL STAINLESS STEEL CHEF KNIFE",
        "Électrique professional stainless steel chef knife B",
        "électrique professional stainless steel chef knife A",
    };
    enum { N = 7 };
    json_t *p[N + 2];
    const char *text = "Sharp chef knife, zqlongname.";
    for (int i = 0; i < N; i++)
        p[i] = s_product(s, names[i], text, 5000, cat, 1);
    p[N] = s_product(s, long_b, text, 5000, cat, 1);
    p[N + 1] = s_product(s, long_a, text, 5000, cat, 1);
    const char *want[] = {hc_str(p[N + 1], "id"), hc_str(p[N], "id"), hc_str(p[4], "id"),
                          hc_str(p[3], "id"),     hc_str(p[2], "id"), hc_str(p[1], "id"),
                          hc_str(p[0], "id"),     hc_str(p[6], "id"), hc_str(p[5], "id")};
    bool ok = true;
    for (int i = 0; i < 3; i++) {
        if (i == 0)
            snprintf(qs, sizeof qs, "category=%s&sort=name", cat);
        else if (i == 1)
            snprintf(qs, sizeof qs, "q=chef+knife&category=%s&sort=name", cat);
        else
            snprintf(qs, sizeof qs, "q=zqlongname&sort=name");
        json_t *items = s_items_of(s, qs);
        ok = s_same_ids(items, want, N + 2, qs) && ok;
        json_decref(items);
        for (int limit = 1; limit <= 2; limit++) {
            items = s_collect(s, qs, limit, NULL);
            ok = s_same_ids(items, want, N + 2, "sort=name across pages") && ok;
            json_decref(items);
        }
    }
    /* the name index: the whole catalog, in pages */
    json_t *all = s_collect(s, "sort=name", 3, NULL);
    s_expect_sorted(all, "name");
    s_expect_subsequence(all, want, N + 2, "sort=name over the whole catalog");
    json_decref(all);
    for (int i = 0; i < N + 2; i++)
        json_decref(p[i]);
    assert_true(ok);
}

static void test_search_category_subtree(void **state)
{
    fixture_t *s = *state;
    char top[64], mid[64], leaf[64], side[64], qs[256], path[128];
    s_category(s, "Tree top", "tree-top", NULL, top);
    s_category(s, "Tree mid", "tree-mid", top, mid);
    s_category(s, "Tree leaf", "tree-leaf", mid, leaf);
    s_category(s, "Tree side", "tree-side", NULL, side);
    json_t *pt = s_product(s, "Top thing", "x", 100, top, 1);
    json_t *pm = s_product(s, "Mid thing", "x", 200, mid, 1);
    json_t *pl = s_product(s, "Leaf thing", "x", 300, leaf, 1);
    json_t *ps = s_product(s, "Side thing", "x", 400, side, 1);
    const char *t = hc_str(pt, "id"), *m = hc_str(pm, "id"), *l = hc_str(pl, "id"),
               *sd = hc_str(ps, "id");

    struct {
        const char *category;
        const char *ids[4];
        size_t n;
    } cases[] = {{top, {l, m, t}, 3}, {mid, {l, m}, 2}, {leaf, {l}, 1}, {side, {sd}, 1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(qs, sizeof qs, "category=%s", cases[i].category);
        json_t *items = s_items_of(s, qs);
        s_expect_ids(items, cases[i].ids, cases[i].n, qs);
        json_decref(items);
        snprintf(qs, sizeof qs, "category=%s&q=thing&sort=price_desc", cases[i].category);
        items = s_items_of(s, qs);
        s_expect_set(items, cases[i].ids, cases[i].n, qs);
        s_expect_sorted(items, "price_desc");
        json_decref(items);
    }

    /* the subtree follows a move: mid (with leaf) under side */
    snprintf(path, sizeof path, "/v1/categories/%s", mid);
    hc_response_t r =
        s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "parent_id", side), NULL);
    s_expect(&r, 200, "move mid under side");
    hc_response_free(&r);
    snprintf(qs, sizeof qs, "category=%s", top);
    json_t *items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){t}, 1, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&sort=price_asc", side);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){m, l, sd}, 3, qs);
    json_decref(items);
    /* words within the subtree follow too */
    snprintf(qs, sizeof qs, "category=%s&q=thing&sort=price_asc", side);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){m, l, sd}, 3, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&q=thing", top);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){t}, 1, qs);
    json_decref(items);
    /* and to the root */
    r = hc_request(s->base, "PATCH", path, s->admin_token, "{\"parent_id\":null}", NULL);
    s_expect(&r, 200, "mid to the root");
    hc_response_free(&r);
    snprintf(qs, sizeof qs, "category=%s", side);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){sd}, 1, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s", mid);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){l, m}, 2, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&q=th", side);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){sd}, 1, qs);
    json_decref(items);
    /* a product moved to another category moves in the filter */
    snprintf(path, sizeof path, "/v1/products/%s", l);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "category_id", top), NULL);
    s_expect(&r, 200, "move leaf thing to top");
    hc_response_free(&r);
    snprintf(qs, sizeof qs, "category=%s", mid);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){m}, 1, qs);
    json_decref(items);
    snprintf(qs, sizeof qs, "category=%s&sort=price_asc", top);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){t, l}, 2, qs);
    json_decref(items);
    const char *gone[] = {"q=leaf", "q=thing", "q=THING&sort=name"};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        snprintf(qs, sizeof qs, "category=%s&%s", leaf, gone[i]);
        items = s_items_of(s, qs);
        assert_int_equal(json_array_size(items), 0);
        json_decref(items);
        snprintf(qs, sizeof qs, "category=%s&%s", mid, gone[i]);
        items = s_items_of(s, qs);
        s_expect_ids(items, (const char *[]){m}, strcmp(gone[i], "q=leaf") ? 1 : 0, qs);
        json_decref(items);
    }
    snprintf(qs, sizeof qs, "category=%s&q=leaf", top);
    items = s_items_of(s, qs);
    s_expect_ids(items, (const char *[]){l}, 1, qs);
    json_decref(items);
    json_decref(pt);
    json_decref(pm);
    json_decref(pl);
    json_decref(ps);
}

/* ------------------------------------------------------------------ */
/* Pagination                                                          */

#define PAGED 60

static void test_pagination(void **state)
{
    fixture_t *s = *state;
    char cat[64], qs[256];
    s_category(s, "Paging", "cat-paging", NULL, cat);
    const char *ids[PAGED];
    json_t *made[PAGED];
    static const char *const names[] = {"Alpha", "bravo", "Charlie", "delta", "Echo"};
    int in_stock = 0;
    for (int i = 0; i < PAGED; i++) {
        char name[64], description[64];
        /* duplicate prices and names, so ties must be broken alike on
         * every page */
        snprintf(name, sizeof name, "%s %s", names[i % 5], i % 2 ? "pager" : "thing");
        snprintf(description, sizeof description, "%s number %d", i % 2 ? "plain" : "pager", i);
        made[i] = s_product(s, name, description, 100 * (i % 7), cat, i % 3 ? 5 : 0);
        ids[i] = hc_str(made[i], "id");
        in_stock += i % 3 != 0;
    }
    const char *sorts[] = {"newest", "price_asc", "price_desc", "name"};
    for (size_t k = 0; k < sizeof sorts / sizeof sorts[0]; k++) {
        int pages;
        snprintf(qs, sizeof qs, "category=%s&sort=%s", cat, sorts[k]);
        json_t *all = s_collect(s, qs, 7, &pages);
        s_expect_unique(all, qs);
        s_expect_set(all, ids, PAGED, qs);
        s_expect_sorted(all, sorts[k]);
        assert_true(pages >= (PAGED + 6) / 7);
        /* the same order as one page of 100 */
        snprintf(qs, sizeof qs, "category=%s&sort=%s&limit=100", cat, sorts[k]);
        json_t *one = s_items_of(s, qs);
        assert_int_equal(json_array_size(one), PAGED);
        for (size_t i = 0; i < PAGED; i++)
            assert_string_equal(hc_str(json_array_get(one, i), "id"),
                                hc_str(json_array_get(all, i), "id"));
        json_decref(one);
        json_decref(all);
        /* with a filter that drops a third of each page */
        snprintf(qs, sizeof qs, "category=%s&sort=%s&in_stock=true", cat, sorts[k]);
        all = s_collect(s, qs, 7, NULL);
        s_expect_unique(all, qs);
        assert_int_equal(json_array_size(all), in_stock);
        s_expect_sorted(all, sorts[k]);
        json_decref(all);
    }
    /* newest: exactly the reverse of creation */
    snprintf(qs, sizeof qs, "category=%s&sort=newest", cat);
    json_t *all = s_collect(s, qs, 7, NULL);
    for (int i = 0; i < PAGED; i++)
        assert_string_equal(hc_str(json_array_get(all, (size_t)i), "id"), ids[PAGED - 1 - i]);
    json_decref(all);
    /* relevance: every "pager" (half in names, half in descriptions) */
    snprintf(qs, sizeof qs, "q=pager&category=%s", cat);
    all = s_collect(s, qs, 7, NULL);
    s_expect_unique(all, qs);
    s_expect_set(all, ids, PAGED, qs);
    snprintf(qs, sizeof qs, "q=pager&category=%s&limit=100", cat);
    json_t *one = s_items_of(s, qs);
    assert_int_equal(json_array_size(one), PAGED);
    for (size_t i = 0; i < PAGED; i++)
        assert_string_equal(hc_str(json_array_get(one, i), "id"),
                            hc_str(json_array_get(all, i), "id"));
    /* names first (odd i, newest first), then descriptions */
    for (size_t i = 0; i < PAGED; i++) {
        int want = i < PAGED / 2 ? PAGED - 1 - 2 * (int)i : PAGED - 2 - 2 * (int)(i - PAGED / 2);
        assert_string_equal(hc_str(json_array_get(all, i), "id"), ids[want]);
    }
    json_decref(one);
    json_decref(all);
    for (int i = 0; i < PAGED; i++)
        json_decref(made[i]);
}

/* Pages through one query (limit 7) while inserting three matching
 * products and deleting one not yet seen after every page. */
static void s_page_while_writing(fixture_t *s, const char *cat, const char *sort, json_t *live)
{
    char qs[256], cursor[512] = "", enc[1024], page_qs[1536];
    zhashx_t *seen = zhashx_new();
    zhashx_t *deleted = zhashx_new();
    zhashx_t *start = zhashx_new(); /* what exists at the start */
    size_t i;
    json_t *p;
    json_array_foreach(live, i, p)
    {
        zhashx_insert(start, hc_str(p, "id"), (void *)1);
    }
    snprintf(qs, sizeof qs, "category=%s&sort=%s", cat, sort);
    int round = 0;
    json_t *prev = NULL;
    for (;;) {
        s_urlenc(cursor, enc, sizeof enc);
        snprintf(page_qs, sizeof page_qs, "%s&limit=7%s%s", qs, *cursor ? "&cursor=" : "", enc);
        json_t *body = s_search(s, page_qs);
        json_t *items = json_object_get(body, "items");
        assert_true(json_array_size(items) <= 7);
        json_array_foreach(items, i, p)
        {
            const char *id = hc_str(p, "id");
            if (zhashx_insert(seen, id, (void *)1) != 0) {
                print_error("%s: %s seen twice\n", sort, id);
                fail();
            }
            if (zhashx_lookup(deleted, id)) {
                print_error("%s: %s shown after its delete\n", sort, id);
                fail();
            }
            /* order holds across pages for what was there all along */
            if (prev) {
                json_t *pair = json_pack("[O, O]", prev, p);
                s_expect_sorted(pair, sort);
                json_decref(pair);
            }
            json_decref(prev);
            prev = json_incref(p);
        }
        json_t *next = json_object_get(body, "next_cursor");
        bool last = json_is_null(next);
        if (!last)
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_decref(body);
        if (last)
            break;
        /* writes between pages: three new products spread over the sort
         * keys, and one product from the start that was not seen yet */
        round++;
        for (int k = 0; k < 3; k++) {
            char name[64];
            static const char *const first[] = {"Aardvark", "Marmot", "Zebu"};
            snprintf(name, sizeof name, "%s %s %d", first[k], sort, round);
            json_t *fresh = s_product(s, name, "inserted while paging", 50 + 450 * k, cat, 1);
            json_array_append_new(live, fresh);
        }
        for (size_t j = 0; j < json_array_size(live); j++) {
            const char *id = hc_str(json_array_get(live, j), "id");
            if (zhashx_lookup(start, id) && !zhashx_lookup(seen, id) && round % 2 == 0) {
                s_delete_product(s, id);
                zhashx_insert(deleted, id, (void *)1);
                zhashx_delete(start, id);
                json_array_remove(live, j);
                break;
            }
        }
    }
    json_decref(prev);
    /* nothing that existed throughout was skipped */
    for (void *item = zhashx_first(start); item; item = zhashx_next(start)) {
        const char *key = zhashx_cursor(start);
        if (!zhashx_lookup(seen, key)) {
            print_error("%s: %s existed throughout and was skipped\n", sort, key);
            fail();
        }
    }
    assert_true(round >= 3);
    zhashx_destroy(&seen);
    zhashx_destroy(&deleted);
    zhashx_destroy(&start);
}

static void test_pagination_while_writing(void **state)
{
    fixture_t *s = *state;
    char cat[64];
    s_category(s, "Churn", "cat-churn", NULL, cat);
    json_t *live = json_array();
    static const char *const names[] = {"Kiwi", "lime", "Mango", "nectarine", "Olive", "peach"};
    for (int i = 0; i < 30; i++) {
        char name[64];
        snprintf(name, sizeof name, "%s crate %d", names[i % 6], i / 6);
        json_array_append_new(live, s_product(s, name, "fruit", 100 + 37 * (i % 11), cat, 3));
    }
    const char *sorts[] = {"newest", "price_asc", "price_desc", "name"};
    for (size_t k = 0; k < sizeof sorts / sizeof sorts[0]; k++)
        s_page_while_writing(s, cat, sorts[k], live);
    json_decref(live);
}

/* ------------------------------------------------------------------ */
/* Concurrent writes over HTTP                                         */

#define WRITERS 8

typedef struct {
    fixture_t *s;
    const char *method;
    char path[128];
    char body[512];
    const char *header;
    long status;
} writer_t;

/* One request on its own handle; only the status is kept (no cmocka
 * asserts off the main thread). */
static void *s_writer(void *arg)
{
    writer_t *w = arg;
    hc_request_t q = {.url = w->s->base,
                      .path = w->path,
                      .method = w->method,
                      .token = w->s->admin_token,
                      .body = w->body,
                      .header = w->header};
    w->status = hc_status(&q);
    return NULL;
}

/* Runs the writers at once; each keeps its status. */
static void s_run_writers(writer_t *w, int n)
{
    pthread_t threads[WRITERS];
    for (int i = 0; i < n; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, s_writer, &w[i]), 0);
    for (int i = 0; i < n; i++)
        pthread_join(threads[i], NULL);
}

static void test_concurrent_writes(void **state)
{
    fixture_t *s = *state;
    char cat[64];
    s_category(s, "Contended", "cat-contended", NULL, cat);
    json_t *p = s_product(s, "Contended lamp", "x", 1000, cat, 1);
    const char *id = hc_str(p, "id");

    /* eight PATCHes with If-Match: 1 at once: one wins, seven get 412 */
    writer_t w[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer_t){.s = s, .method = "PATCH", .header = "If-Match: 1"};
        snprintf(w[i].path, sizeof w[i].path, "/v1/products/%s", id);
        snprintf(w[i].body, sizeof w[i].body, "{\"price_cents\":%d}", 2000 + i);
    }
    s_run_writers(w, WRITERS);
    int won = -1, stale = 0;
    for (int i = 0; i < WRITERS; i++) {
        if (w[i].status == 200) {
            assert_int_equal(won, -1);
            won = i;
        } else if (w[i].status == 412)
            stale++;
        else
            print_error("If-Match race: writer %d got %ld\n", i, w[i].status);
    }
    assert_true(won >= 0);
    assert_int_equal(stale, WRITERS - 1);
    json_t *now = s_get(s, id);
    assert_int_equal(s_int(now, "version"), 2);
    assert_int_equal(s_int(now, "price_cents"), 2000 + won);
    json_decref(now);

    /* eight creates of one sku at once: one 201, seven sku_taken */
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (writer_t){.s = s, .method = "POST", .path = "/v1/products"};
        snprintf(w[i].body, sizeof w[i].body,
                 "{\"sku\":\"RACE-SKU\",\"name\":\"Racer %d\",\"description\":\"x\","
                 "\"price_cents\":1,\"currency\":\"EUR\",\"category_id\":\"%s\"}",
                 i, cat);
    }
    s_run_writers(w, WRITERS);
    int created = 0, taken = 0;
    for (int i = 0; i < WRITERS; i++) {
        created += w[i].status == 201;
        taken += w[i].status == 409;
    }
    assert_int_equal(created, 1);
    assert_int_equal(taken, WRITERS - 1);
    char qs[128];
    snprintf(qs, sizeof qs, "category=%s&q=racer", cat);
    json_t *items = s_items_of(s, qs);
    assert_int_equal(json_array_size(items), 1);
    assert_string_equal(hc_str(json_array_get(items, 0), "sku"), "RACE-SKU");
    json_decref(items);
    json_decref(p);
}

/* Acknowledged writes survive a kill: creators make products at once
 * (their writes share commits), then retaild is killed with SIGKILL, no
 * chance to flush anything, and restarted on the same data: every
 * product that was answered 201 is there, whole. */

#define SURVIVE_EACH 12

typedef struct {
    fixture_t *s;
    int index;
    const char *category;
    char ids[SURVIVE_EACH][64];
    int created;
    long last_status;
} creator_t;

static void *s_creator(void *arg)
{
    creator_t *c = arg;
    char body[512];
    for (int k = 0; k < SURVIVE_EACH; k++) {
        snprintf(body, sizeof body,
                 "{\"sku\":\"SURVIVE-%d-%d\",\"name\":\"Survivor %d %d\",\"description\":"
                 "\"kept\",\"price_cents\":%d,\"currency\":\"EUR\",\"category_id\":\"%s\"}",
                 c->index, k, c->index, k, 100 + k, c->category);
        hc_request_t q = {.url = c->s->base,
                          .path = "/v1/products",
                          .method = "POST",
                          .token = c->s->admin_token,
                          .body = body};
        hc_response_t r = hc_try(&q);
        c->last_status = r.rc == CURLE_OK ? r.status : 0;
        const char *id = hc_str(r.body, "product.id");
        if (c->last_status == 201 && id)
            snprintf(c->ids[c->created++], sizeof c->ids[0], "%s", id);
        hc_response_free(&r);
        if (c->last_status != 201)
            break;
    }
    return NULL;
}

static void test_acknowledged_writes_survive_kill(void **state)
{
    fixture_t *s = *state;
    char cat[64];
    s_category(s, "Survivors", "cat-survivors", NULL, cat);
    creator_t c[WRITERS];
    pthread_t threads[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        c[i] = (creator_t){.s = s, .index = i, .category = cat};
        assert_int_equal(pthread_create(&threads[i], NULL, s_creator, &c[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < WRITERS; i++) {
        if (c[i].created != SURVIVE_EACH)
            print_error("creator %d: %d created, last status %ld\n", i, c[i].created,
                        c[i].last_status);
        assert_int_equal(c[i].created, SURVIVE_EACH);
    }

    int status = fixture_kill(s, s->pid, SIGKILL);
    assert_true(status != -1 && WIFSIGNALED(status));
    assert_int_equal(fixture_restart(s), 0);

    for (int i = 0; i < WRITERS; i++)
        for (int k = 0; k < SURVIVE_EACH; k++) {
            json_t *p = s_get(s, c[i].ids[k]);
            char sku[32];
            snprintf(sku, sizeof sku, "SURVIVE-%d-%d", i, k);
            assert_string_equal(hc_str(p, "sku"), sku);
            assert_int_equal(s_int(p, "price_cents"), 100 + k);
            json_decref(p);
        }
    char qs[128];
    snprintf(qs, sizeof qs, "category=%s&q=survivor", cat);
    json_t *items = s_collect(s, qs, 100, NULL);
    assert_int_equal(json_array_size(items), WRITERS * SURVIVE_EACH);
    json_decref(items);
}

/* ------------------------------------------------------------------ */
/* Batched reads over MDP                                              */

/* product.get_many answers every id asked, in order, nil for none. */
static void test_get_many(void **state)
{
    fixture_t *s = *state;
    char cat[64], args[512];
    s_category(s, "Batched", "cat-batched", NULL, cat);
    json_t *pa = s_product(s, "Batch A", "x", 1500, cat, 3);
    json_t *pb = s_product(s, "Batch B", "x", 2500, cat, 4);
    const char *a = hc_str(pa, "id"), *b = hc_str(pb, "id");
    mdpcli_t *orders = fixture_client(s, "bridge-less");
    snprintf(args, sizeof args, "{\"ids\":[\"%s\",\"p-not-there\",\"%s\",\"%s\"]}", b, a, b);
    fixture_reply_t r = s_call(orders, "product.get_many", args);
    assert_true(r.ok);
    json_t *items = json_object_get(r.data, "items");
    assert_int_equal(json_array_size(items), 4);
    assert_string_equal(hc_str(json_array_get(items, 0), "id"), b);
    assert_true(json_is_null(json_array_get(items, 1)));
    assert_string_equal(hc_str(json_array_get(items, 2), "id"), a);
    assert_string_equal(hc_str(json_array_get(items, 2), "name"), "Batch A");
    assert_int_equal(json_integer_value(json_object_get(json_array_get(items, 2), "price_cents")),
                     1500);
    assert_string_equal(hc_str(json_array_get(items, 3), "id"), b);
    fixture_reply_free(&r);
    s_call_error(orders, "product.get_many", "{\"ids\":[]}", "invalid_argument");
    s_call_error(orders, "product.get_many", "{\"ids\":[7]}", "invalid_argument");
    char *many = malloc(101 * 8 + 16);
    int n = snprintf(many, 16, "{\"ids\":[");
    for (int i = 0; i < 101; i++)
        n += sprintf(many + n, "%s\"p%d\"", i ? "," : "", i % 10);
    sprintf(many + n, "]}");
    s_call_error(orders, "product.get_many", many, "invalid_argument");
    free(many);
    mdpcli_destroy(&orders);
    json_decref(pa);
    json_decref(pb);
}

/* ------------------------------------------------------------------ */
/* Inventory over MDP                                                  */

static void test_stock_ops(void **state)
{
    fixture_t *s = *state;
    char cat[64], args[512];
    s_category(s, "Inventory", "cat-inventory", NULL, cat);
    json_t *pa = s_product(s, "Reserve me A", "x", 1000, cat, 10);
    json_t *pb = s_product(s, "Reserve me B", "x", 2000, cat, 5);
    const char *a = hc_str(pa, "id"), *b = hc_str(pb, "id");
    mdpcli_t *orders = fixture_client(s, "orders");

    /* reserve twice: reserved once */
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-1\",\"lines\":[{\"product_id\":\"%s\",\"qty\":3}]}", a);
    for (int i = 0; i < 2; i++) {
        fixture_reply_t r = s_call(orders, "stock.reserve", args);
        if (!r.ok)
            print_error("reserve: %s\n", r.code);
        assert_true(r.ok);
        assert_string_equal(hc_str(r.data, "order_id"), "ord-1");
        assert_string_equal(hc_str(r.data, "state"), "reserved");
        fixture_reply_free(&r);
        assert_int_equal(s_stock_of(s, a), 7);
    }
    /* the same order with other lines is a conflict */
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-1\",\"lines\":[{\"product_id\":\"%s\",\"qty\":4}]}", a);
    s_call_error(orders, "stock.reserve", args, "conflict");
    assert_int_equal(s_stock_of(s, a), 7);

    /* release twice: stock back once; then commit is a conflict */
    for (int i = 0; i < 2; i++) {
        fixture_reply_t r = s_call(orders, "stock.release", "{\"order_id\":\"ord-1\"}");
        assert_true(r.ok);
        assert_string_equal(hc_str(r.data, "order_id"), "ord-1");
        assert_string_equal(hc_str(r.data, "state"), "released");
        fixture_reply_free(&r);
        assert_int_equal(s_stock_of(s, a), 10);
    }
    assert_int_equal(s_stock_of(s, a), 10);
    s_call_error(orders, "stock.commit", "{\"order_id\":\"ord-1\"}", "conflict");
    assert_int_equal(s_stock_of(s, a), 10);

    /* two lines, committed twice */
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-2\",\"lines\":[{\"product_id\":\"%s\",\"qty\":2},"
             "{\"product_id\":\"%s\",\"qty\":1}]}",
             a, b);
    s_call_ok(orders, "stock.reserve", args);
    for (int i = 0; i < 2; i++) {
        fixture_reply_t r = s_call(orders, "stock.commit", "{\"order_id\":\"ord-2\"}");
        assert_true(r.ok);
        assert_string_equal(hc_str(r.data, "order_id"), "ord-2");
        assert_string_equal(hc_str(r.data, "state"), "committed");
        fixture_reply_free(&r);
    }
    assert_int_equal(s_stock_of(s, a), 8);
    assert_int_equal(s_stock_of(s, b), 4);
    /* the same lines in another order are the same reservation */
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-2\",\"lines\":[{\"product_id\":\"%s\",\"qty\":1},"
             "{\"product_id\":\"%s\",\"qty\":2}]}",
             b, a);
    s_call_ok(orders, "stock.reserve", args);
    assert_int_equal(s_stock_of(s, a), 8);
    assert_int_equal(s_stock_of(s, b), 4);

    fixture_reply_t r;
    /* all or none: one short line reserves nothing and names the product */
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-3\",\"lines\":[{\"product_id\":\"%s\",\"qty\":1},"
             "{\"product_id\":\"%s\",\"qty\":5}]}",
             a, b);
    for (int i = 0; i < 2; i++) {
        r = s_call(orders, "stock.reserve", args);
        assert_false(r.ok);
        assert_string_equal(r.code, "out_of_stock");
        json_t *details = json_object_get(r.error, "details");
        if (!hc_str(details, "product_id"))
            print_error("out_of_stock without details.product_id\n");
        assert_string_equal(hc_str(details, "product_id"), b);
        fixture_reply_free(&r);
        assert_int_equal(s_stock_of(s, a), 8);
        assert_int_equal(s_stock_of(s, b), 4);
    }
    /* nothing was recorded for it */
    s_call_error(orders, "stock.release", "{\"order_id\":\"ord-3\"}", "not_found");
    s_call_error(orders, "stock.commit", "{\"order_id\":\"ord-never\"}", "not_found");
    /* after a restock the same order id goes through */
    char path[128];
    snprintf(path, sizeof path, "/v1/products/%s/stock", b);
    hc_response_t hr =
        s_send(s, "PUT", path, s->admin_token, json_pack("{s:I}", "stock", (json_int_t)5), NULL);
    s_expect(&hr, 200, "restock");
    hc_response_free(&hr);
    s_call_ok(orders, "stock.reserve", args);
    assert_int_equal(s_stock_of(s, a), 7);
    assert_int_equal(s_stock_of(s, b), 0);
    /* a committed reservation released gives its stock back */
    s_call_ok(orders, "stock.commit", "{\"order_id\":\"ord-3\"}");
    s_call_ok(orders, "stock.release", "{\"order_id\":\"ord-3\"}");
    assert_int_equal(s_stock_of(s, a), 8);
    assert_int_equal(s_stock_of(s, b), 5);

    /* a line for a product that does not exist: nothing reserved either */
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-6\",\"lines\":[{\"product_id\":\"%s\",\"qty\":1},"
             "{\"product_id\":\"p0000000000000000dead\",\"qty\":1}]}",
             a);
    r = s_call(orders, "stock.reserve", args);
    assert_false(r.ok);
    assert_string_equal(r.code, "not_found");
    assert_string_equal(hc_str(json_object_get(r.error, "details"), "product_id"),
                        "p0000000000000000dead");
    fixture_reply_free(&r);
    assert_int_equal(s_stock_of(s, a), 8);

    /* bad arguments */
    s_call_error(orders, "stock.reserve", "{\"order_id\":\"ord-4\",\"lines\":[]}",
                 "invalid_argument");
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-4\",\"lines\":[{\"product_id\":\"%s\",\"qty\":0}]}", a);
    s_call_error(orders, "stock.reserve", args, "invalid_argument");
    s_call_error(orders, "stock.reserve", "{\"lines\":[]}", "invalid_argument");

    /* the caller's name decides: "tester" may read, not move stock */
    mdpcli_t *tester = fixture_client(s, "tester");
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-5\",\"lines\":[{\"product_id\":\"%s\",\"qty\":1}]}", a);
    s_call_error(tester, "stock.reserve", args, "forbidden");
    s_call_error(tester, "stock.release", "{\"order_id\":\"ord-2\"}", "forbidden");
    s_call_error(tester, "stock.commit", "{\"order_id\":\"ord-2\"}", "forbidden");
    /* the bridge neither: it calls on behalf of anyone on the internet */
    mdpcli_t *bridge = fixture_client(s, "bridge");
    s_call_error(bridge, "stock.reserve", args, "forbidden");
    s_call_error(bridge, "stock.commit", "{\"order_id\":\"ord-2\"}", "forbidden");
    mdpcli_destroy(&bridge);
    assert_int_equal(s_stock_of(s, a), 8);
    snprintf(args, sizeof args, "{\"id\":\"%s\"}", a);
    r = s_call(tester, "product.get", args);
    assert_true(r.ok);
    assert_string_equal(hc_str(json_object_get(r.data, "product"), "id"), a);
    assert_int_equal(s_int(json_object_get(r.data, "product"), "stock"), 8);
    fixture_reply_free(&r);
    snprintf(args, sizeof args,
             "{\"order_id\":\"ord-5\",\"lines\":[{\"product_id\":\"%s\",\"qty\":1}]}", a);
    s_call_ok(orders, "stock.reserve", args);
    assert_int_equal(s_stock_of(s, a), 7);
    mdpcli_destroy(&tester);
    mdpcli_destroy(&orders);
    json_decref(pa);
    json_decref(pb);
}

/* out_of_stock names the product with the qty summed over the order's
 * lines of it and the stock it has; ops.check is green and agrees with
 * stock.reservations, paged; both only for orders, retailctl and an admin. */
static void test_ops_check(void **state)
{
    fixture_t *s = *state;
    char cat[64], args[512];
    s_category(s, "Checked", "cat-checked", NULL, cat);
    json_t *pa = s_product(s, "Checked A", "x", 1000, cat, 3);
    const char *a = hc_str(pa, "id");
    mdpcli_t *orders = fixture_client(s, "orders");
    snprintf(args, sizeof args,
             "{\"order_id\":\"chk-1\",\"lines\":[{\"product_id\":\"%s\",\"qty\":2},"
             "{\"product_id\":\"%s\",\"qty\":2}]}",
             a, a);
    fixture_reply_t r = s_call(orders, "stock.reserve", args);
    assert_false(r.ok);
    assert_string_equal(r.code, "out_of_stock");
    json_t *details = json_object_get(r.error, "details");
    assert_string_equal(hc_str(details, "product_id"), a);
    assert_int_equal(s_int(details, "requested"), 4);
    assert_int_equal(s_int(details, "available"), 3);
    assert_int_equal(json_object_size(details), 3);
    fixture_reply_free(&r);
    for (int i = 0; i < 3; i++) {
        snprintf(args, sizeof args,
                 "{\"order_id\":\"chk-%d\",\"lines\":[{\"product_id\":\"%s\",\"qty\":1}]}", 10 + i,
                 a);
        s_call_ok(orders, "stock.reserve", args);
    }
    s_call_ok(orders, "stock.commit", "{\"order_id\":\"chk-11\"}");

    /* green, for each caller allowed */
    mdpcli_t *ctl = fixture_client(s, "retailctl");
    mdpcli_t *tester = fixture_client(s, "tester");
    json_int_t live = -1, reserved = -1, committed = -1;
    for (int who = 0; who < 3; who++) {
        mdpcli_t *client = who == 0 ? orders : who == 1 ? ctl : tester;
        assert_int_equal(fixture_send(client, "catalog", 900 + (uint64_t)who, "ops.check",
                                      who == 2 ? s->admin_token : NULL, "{}"),
                         0);
        r = fixture_recv(client, MDP_TIMEOUT_MS);
        assert_true(r.answered);
        if (!r.ok)
            print_error("ops.check: %s\n", r.code);
        assert_true(r.ok);
        json_t *problems = json_object_get(r.data, "problems");
        if (json_array_size(problems) > 0) {
            char *text = json_dumps(problems, 0);
            print_error("ops.check problems: %s\n", text);
            free(text);
        }
        assert_true(json_is_true(json_object_get(r.data, "ok")));
        assert_int_equal(json_array_size(problems), 0);
        json_t *counts = json_object_get(r.data, "counts");
        assert_true(s_int(counts, "products") >= 1);
        assert_true(s_int(counts, "stock_units") >= 0);
        assert_true(s_int(counts, "released") >= 0);
        live = s_int(counts, "live_reservations");
        reserved = s_int(counts, "reserved_units");
        committed = s_int(counts, "committed_units");
        fixture_reply_free(&r);
    }
    assert_int_equal(s_stock_of(s, a), 0);

    /* the live reservations, paged 3 at a time, add up to the counts */
    char cursor[128] = "", last[128] = "";
    json_int_t pages_live = 0, pages_units = 0, pages_committed = 0;
    for (int pass = 0; pass < 2; pass++) {
        const char *state_name = pass == 0 ? "reserved" : "committed";
        cursor[0] = last[0] = '\0';
        for (int pages = 0;; pages++) {
            assert_true(pages < 1000);
            if (cursor[0])
                snprintf(args, sizeof args, "{\"state\":\"%s\",\"limit\":3,\"cursor\":\"%s\"}",
                         state_name, cursor);
            else
                snprintf(args, sizeof args, "{\"state\":\"%s\",\"limit\":3}", state_name);
            r = s_call(ctl, "stock.reservations", args);
            assert_true(r.ok);
            json_t *items = json_object_get(r.data, "items");
            assert_true(json_array_size(items) <= 3);
            for (size_t i = 0; i < json_array_size(items); i++) {
                json_t *item = json_array_get(items, i);
                const char *order = hc_str(item, "order_id");
                assert_true(strcmp(order, last) > 0); /* ascending: none twice */
                snprintf(last, sizeof last, "%s", order);
                assert_string_equal(hc_str(item, "state"), state_name);
                json_t *lines = json_object_get(item, "lines");
                assert_true(json_array_size(lines) >= 1);
                for (size_t j = 0; j < json_array_size(lines); j++) {
                    json_t *line = json_array_get(lines, j);
                    assert_non_null(hc_str(line, "product_id"));
                    if (pass == 0)
                        pages_units += s_int(line, "qty");
                    else
                        pages_committed += s_int(line, "qty");
                }
                if (pass == 0)
                    pages_live++;
            }
            json_t *next = json_object_get(r.data, "next_cursor");
            if (json_is_null(next)) {
                fixture_reply_free(&r);
                break;
            }
            assert_int_equal(json_array_size(items), 3);
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
            fixture_reply_free(&r);
        }
    }
    assert_int_equal(pages_live, live);
    assert_int_equal(pages_units, reserved);
    assert_int_equal(pages_committed, committed);
    /* all states: chk-10 reserved, chk-11 committed among them */
    r = s_call(orders, "stock.reservations", "{\"cursor\":\"chk-0\",\"limit\":2}");
    assert_true(r.ok);
    json_t *items = json_object_get(r.data, "items");
    assert_int_equal(json_array_size(items), 2);
    assert_string_equal(hc_str(json_array_get(items, 0), "order_id"), "chk-10");
    assert_string_equal(hc_str(json_array_get(items, 0), "state"), "reserved");
    assert_string_equal(hc_str(json_array_get(items, 1), "order_id"), "chk-11");
    assert_string_equal(hc_str(json_array_get(items, 1), "state"), "committed");
    assert_string_equal(hc_str(r.data, "next_cursor"), "chk-11");
    fixture_reply_free(&r);

    /* bad arguments; callers refused */
    s_call_error(ctl, "stock.reservations", "{\"state\":\"lost\"}", "invalid_argument");
    s_call_error(ctl, "stock.reservations", "{\"limit\":0}", "invalid_argument");
    s_call_error(ctl, "stock.reservations", "{\"limit\":1001}", "invalid_argument");
    assert_int_equal(fixture_send(tester, "catalog", 990, "ops.check", s->customer_token, "{}"), 0);
    r = fixture_recv(tester, MDP_TIMEOUT_MS);
    assert_true(r.answered && !r.ok);
    assert_string_equal(r.code, "forbidden");
    fixture_reply_free(&r);
    r = s_call(tester, "ops.check", "{}");
    assert_false(r.ok);
    assert_string_equal(r.code, "unauthenticated");
    fixture_reply_free(&r);
    r = s_call(tester, "stock.reservations", "{}");
    assert_false(r.ok);
    fixture_reply_free(&r);
    mdpcli_t *bridge = fixture_client(s, "bridge");
    s_call_error(bridge, "stock.reservations", "{}", "unauthenticated");
    mdpcli_destroy(&bridge);
    mdpcli_destroy(&tester);
    mdpcli_destroy(&ctl);
    mdpcli_destroy(&orders);
    json_decref(pa);
}

/* The issue's case in order: reserve all 5, PATCH the description: the
 * stock stays 0; a PATCH that names stock (API.md: any subset of fields)
 * sets the units free to reserve, as PUT .../stock does, and the held
 * units still come back on release on top of it. */
static void test_patch_keeps_reservations(void **state)
{
    fixture_t *s = *state;
    char cat[64], path[128], args[256];
    s_category(s, "Patched stock", "cat-patched-stock", NULL, cat);
    json_t *p = s_product(s, "Last five", "before", 700, cat, 5);
    const char *id = hc_str(p, "id");
    mdpcli_t *orders = fixture_client(s, "orders");
    snprintf(args, sizeof args,
             "{\"order_id\":\"keep-1\",\"lines\":[{\"product_id\":\"%s\",\"qty\":5}]}", id);
    s_call_ok(orders, "stock.reserve", args);
    snprintf(path, sizeof path, "/v1/products/%s", id);
    hc_response_t r =
        s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "description", "after"), NULL);
    s_expect(&r, 200, "patch the description");
    assert_int_equal(s_int(json_object_get(r.body, "product"), "stock"), 0);
    hc_response_free(&r);
    assert_int_equal(s_stock_of(s, id), 0);

    r = s_send(s, "PATCH", path, s->admin_token,
               json_pack("{s:s, s:I}", "name", "Renamed", "stock", (json_int_t)9), NULL);
    s_expect(&r, 200, "patch with stock");
    assert_int_equal(s_int(json_object_get(r.body, "product"), "stock"), 9);
    hc_response_free(&r);
    json_t *now = s_get(s, id);
    assert_int_equal(s_int(now, "stock"), 9);
    assert_string_equal(hc_str(now, "name"), "Renamed");
    assert_string_equal(hc_str(now, "description"), "after");
    json_decref(now);
    s_call_ok(orders, "stock.release", "{\"order_id\":\"keep-1\"}");
    assert_int_equal(s_stock_of(s, id), 14);
    mdpcli_destroy(&orders);
    json_decref(p);
}

#define PATCHERS 4
#define PATCHES_EACH 15
#define MOVERS 2
#define MOVES_EACH 24
#define MOVED_STOCK 500

typedef struct {
    fixture_t *s;
    const char *product;
    int index;
    int ok, failed;
    int held; /* movers: units still reserved at the end */
} mover_t;

/* PATCHes the description over HTTP. */
static void *s_http_patcher(void *arg)
{
    mover_t *m = arg;
    char path[128], body[128];
    snprintf(path, sizeof path, "/v1/products/%s", m->product);
    for (int i = 0; i < PATCHES_EACH; i++) {
        snprintf(body, sizeof body, "{\"description\":\"patch %d of %d\"}", i, m->index);
        hc_request_t q = {.url = m->s->base,
                          .path = path,
                          .method = "PATCH",
                          .token = m->s->admin_token,
                          .body = body};
        if (hc_status(&q) == 200)
            m->ok++;
        else
            m->failed++;
    }
    return NULL;
}

/* One MDP call from a thread (no cmocka asserts there): true when ok. */
static bool s_mdp_ok(mdpcli_t *client, uint64_t id, const char *op, const char *args)
{
    if (fixture_send(client, "catalog", id, op, NULL, args) != 0)
        return false;
    fixture_reply_t r = fixture_recv(client, MDP_TIMEOUT_MS);
    bool ok = r.answered && r.ok && r.id == id;
    fixture_reply_free(&r);
    return ok;
}

/* Reserves 1 to 3 units per order as "orders" and releases every other
 * order; m->held counts the units left reserved. */
static void *s_mdp_mover(void *arg)
{
    mover_t *m = arg;
    zcert_t *cert = keys_load(m->s->keys, "orders");
    mdpcli_t *client = cert ? mdpcli_new(m->s->broker_endpoint, cert, m->s->broker_key) : NULL;
    zcert_destroy(&cert);
    for (int i = 0; client && i < MOVES_EACH; i++) {
        char args[256], release[96];
        int qty = 1 + i % 3;
        snprintf(args, sizeof args,
                 "{\"order_id\":\"move-%d-%d\",\"lines\":[{\"product_id\":\"%s\",\"qty\":%d}]}",
                 m->index, i, m->product, qty);
        if (!s_mdp_ok(client, (uint64_t)(2 * i), "stock.reserve", args)) {
            m->failed++;
            continue;
        }
        m->ok++;
        if (i % 2) {
            m->held += qty;
            continue;
        }
        snprintf(release, sizeof release, "{\"order_id\":\"move-%d-%d\"}", m->index, i);
        if (s_mdp_ok(client, (uint64_t)(2 * i + 1), "stock.release", release))
            m->ok++;
        else
            m->failed++;
    }
    if (!client)
        m->failed++;
    mdpcli_destroy(&client);
    return NULL;
}

/* PATCHes over HTTP while the orders service reserves and releases over
 * MDP: the stock must end at what the reservations left. PATCH read the
 * product before its write and wrote the stock it had read back, so
 * every reservation or release between the two was undone. */
static void test_patch_while_reserving(void **state)
{
    fixture_t *s = *state;
    char cat[64];
    s_category(s, "Busy stock", "cat-busy-stock", NULL, cat);
    json_t *p = s_product(s, "Busy lamp", "start", 1500, cat, MOVED_STOCK);
    const char *id = hc_str(p, "id");
    mdpcli_t *orders = fixture_client(s, "orders"); /* makes and allows the certificate */
    mover_t m[PATCHERS + MOVERS];
    pthread_t threads[PATCHERS + MOVERS];
    for (int i = 0; i < PATCHERS + MOVERS; i++) {
        m[i] = (mover_t){.s = s, .product = id, .index = i};
        assert_int_equal(
            pthread_create(&threads[i], NULL, i < PATCHERS ? s_http_patcher : s_mdp_mover, &m[i]),
            0);
    }
    int held = 0, writes = 0;
    for (int i = 0; i < PATCHERS + MOVERS; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < PATCHERS + MOVERS; i++) {
        if (m[i].failed)
            print_error("%s %d: %d requests failed\n", i < PATCHERS ? "patcher" : "mover", i,
                        m[i].failed);
        assert_int_equal(m[i].failed, 0);
        held += m[i].held;
        writes += m[i].ok;
    }
    json_t *now = s_get(s, id);
    if (s_int(now, "stock") != MOVED_STOCK - held)
        print_error("stock %lld with %d units held of %d: patches undid stock moves\n",
                    (long long)s_int(now, "stock"), held, MOVED_STOCK);
    assert_int_equal(s_int(now, "stock"), MOVED_STOCK - held);
    assert_int_equal(s_int(now, "version"), 1 + writes);
    assert_true(strncmp(hc_str(now, "description"), "patch ", 6) == 0);
    json_decref(now);
    for (int w = PATCHERS; w < PATCHERS + MOVERS; w++)
        for (int i = 1; i < MOVES_EACH; i += 2) {
            char args[96];
            snprintf(args, sizeof args, "{\"order_id\":\"move-%d-%d\"}", w, i);
            s_call_ok(orders, "stock.release", args);
        }
    assert_int_equal(s_stock_of(s, id), MOVED_STOCK);
    mdpcli_destroy(&orders);
    json_decref(p);
}

#define CATEGORY_STEPS 60

typedef struct {
    fixture_t *s;
    const char *path;
    char (*parents)[64]; /* mover: the parents in turn */
    bool rename;
    int failed;
} category_patcher_t;

static void *s_category_patcher(void *arg)
{
    category_patcher_t *c = arg;
    for (int i = 0; i < CATEGORY_STEPS; i++) {
        char body[128];
        if (c->rename)
            snprintf(body, sizeof body, "{\"name\":\"name %04d\"}", i);
        else
            snprintf(body, sizeof body, "{\"parent_id\":\"%s\"}", c->parents[i]);
        hc_request_t q = {.url = c->s->base,
                          .path = c->path,
                          .method = "PATCH",
                          .token = c->s->admin_token,
                          .body = body};
        if (hc_status(&q) != 200)
            c->failed++;
    }
    return NULL;
}

/* One admin renames a category while another moves it: both changes
 * stick (category.update read the category outside its write and wrote
 * name, slug and parent back, undoing the other's change). */
static void test_category_patch_concurrent(void **state)
{
    fixture_t *s = *state;
    char id[64], path[128];
    char(*parents)[64] = calloc(CATEGORY_STEPS, sizeof *parents);
    s_category(s, "Wanderer", "cat-wanderer", NULL, id);
    for (int i = 0; i < CATEGORY_STEPS; i++) {
        char name[32], slug[48];
        snprintf(name, sizeof name, "Home %d", i);
        snprintf(slug, sizeof slug, "cat-wanderer-home-%d", i);
        s_category(s, name, slug, NULL, parents[i]);
    }
    snprintf(path, sizeof path, "/v1/categories/%s", id);
    category_patcher_t c[2];
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) {
        c[i] = (category_patcher_t){.s = s, .path = path, .parents = parents, .rename = i == 0};
        assert_int_equal(pthread_create(&threads[i], NULL, s_category_patcher, &c[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    assert_int_equal(c[0].failed, 0);
    assert_int_equal(c[1].failed, 0);
    json_t *got = s_listed_category(s, id);
    assert_non_null(got);
    char want[32];
    snprintf(want, sizeof want, "name %04d", CATEGORY_STEPS - 1);
    assert_string_equal(hc_str(got, "name"), want);
    assert_string_equal(hc_str(got, "parent_id"), parents[CATEGORY_STEPS - 1]);
    assert_string_equal(hc_str(got, "slug"), "cat-wanderer");
    json_decref(got);
    free(parents);
}

#define RACERS 8
#define RACER_REQUESTS 10
#define RACE_STOCK 20

typedef struct {
    fixture_t *s;
    const char *product;
    int index;
    int ok, short_, other;
} racer_t;

static void *s_racer(void *arg)
{
    racer_t *self = arg;
    zcert_t *cert = keys_load(self->s->keys, "orders");
    if (!cert) {
        self->other = RACER_REQUESTS;
        return NULL;
    }
    mdpcli_t *client = mdpcli_new(self->s->broker_endpoint, cert, self->s->broker_key);
    zcert_destroy(&cert);
    char args[256];
    int sent = 0;
    for (int i = 0; i < RACER_REQUESTS; i++) {
        snprintf(args, sizeof args,
                 "{\"order_id\":\"race-%d-%d\",\"lines\":[{\"product_id\":\"%s\",\"qty\":1}]}",
                 self->index, i, self->product);
        sent += fixture_send(client, "catalog", (uint64_t)(self->index * 100 + i), "stock.reserve",
                             NULL, args) == 0;
    }
    for (int i = 0; i < sent; i++) {
        fixture_reply_t r = fixture_recv(client, MDP_TIMEOUT_MS);
        if (r.answered && r.ok)
            self->ok++;
        else if (r.answered && strcmp(r.code, "out_of_stock") == 0)
            self->short_++;
        else
            self->other++;
        fixture_reply_free(&r);
    }
    self->other += RACER_REQUESTS - sent;
    mdpcli_destroy(&client);
    return NULL;
}

static void test_stock_race(void **state)
{
    fixture_t *s = *state;
    char cat[64];
    s_category(s, "Race", "cat-race", NULL, cat);
    json_t *p = s_product(s, "Limited edition", "Only twenty.", 9900, cat, RACE_STOCK);
    mdpcli_t *orders = fixture_client(s, "orders"); /* makes and allows the certificate */
    racer_t racers[RACERS];
    pthread_t threads[RACERS];
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (racer_t){.s = s, .product = hc_str(p, "id"), .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, s_racer, &racers[i]), 0);
    }
    int ok = 0, short_ = 0, other = 0;
    for (int i = 0; i < RACERS; i++) {
        pthread_join(threads[i], NULL);
        ok += racers[i].ok;
        short_ += racers[i].short_;
        other += racers[i].other;
    }
    if (ok != RACE_STOCK || other != 0)
        print_error("race: %d reserved, %d out_of_stock, %d other\n", ok, short_, other);
    assert_int_equal(ok, RACE_STOCK);
    assert_int_equal(short_, RACERS * RACER_REQUESTS - RACE_STOCK);
    assert_int_equal(other, 0);
    assert_int_equal(s_stock_of(s, hc_str(p, "id")), 0);
    /* each winner holds one unit: releasing one gives exactly one back */
    int released = 0;
    for (int i = 0; i < RACERS && !released; i++)
        if (racers[i].ok > 0) {
            /* which of its orders won is unknown; release them all: only
             * reservations that exist count */
            for (int k = 0; k < RACER_REQUESTS; k++) {
                char args[96];
                snprintf(args, sizeof args, "{\"order_id\":\"race-%d-%d\"}", i, k);
                fixture_reply_t r = s_call(orders, "stock.release", args);
                if (r.ok)
                    released++;
                else
                    assert_string_equal(r.code, "not_found");
                fixture_reply_free(&r);
            }
        }
    assert_true(released > 0);
    assert_int_equal(s_stock_of(s, hc_str(p, "id")), released);
    mdpcli_destroy(&orders);
    json_decref(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_categories), cmocka_unit_test(test_writes_need_admin),
        cmocka_unit_test(test_product_crud), cmocka_unit_test(test_attributes_round_trip),
        cmocka_unit_test(test_search_words), cmocka_unit_test(test_search_sorts_and_filters),
        cmocka_unit_test(test_search_sort_long_names),
        cmocka_unit_test(test_search_category_subtree), cmocka_unit_test(test_pagination),
        cmocka_unit_test(test_pagination_while_writing), cmocka_unit_test(test_concurrent_writes),
        cmocka_unit_test(test_stock_ops), cmocka_unit_test(test_stock_race),
        cmocka_unit_test(test_patch_keeps_reservations),
        cmocka_unit_test(test_patch_while_reserving),
        cmocka_unit_test(test_category_patch_concurrent), cmocka_unit_test(test_category_pages),
        /* it kills and restarts the fixture's retaild */
        cmocka_unit_test(test_get_many), cmocka_unit_test(test_ops_check),
        cmocka_unit_test(test_acknowledged_writes_survive_kill),
        cmocka_unit_test(fixture_test_stop), /* last: SIGTERM, and exit 0 */
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("catalog", tests, s_setup, s_teardown);
    zsys_shutdown();
    curl_global_cleanup();
    return failed;
}

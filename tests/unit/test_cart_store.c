/*  test_cart_store.c - the cart store (storage/orders/cart_store.h), on a
 *  fresh data directory per test.
 *
 *  Set adds a line at the end, changes a quantity in place and removes
 *  with qty 0; remove takes several ids at once and passes over unknown
 *  ones; clear empties; a cart with no lines has no currency. The limits
 *  are the store's own: a 101st line is CART_FULL and a line in another
 *  currency CART_OTHER_CURRENCY, and neither changes anything. Eight
 *  threads each adding their own products to one cart at once lose no
 *  line (every read that decides a write is inside it). A reopen of the
 *  environment keeps every cart.
 */
#include "storage/orders/cart_store.h"
#include "storage/orders/orders_env.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *dir;
    kv_t *env;
    cart_store_shared_t *shared;
    cart_store_t *store;
    cart_t cart;
} fx_t;

static void s_open(fx_t *f)
{
    char err[256] = "";
    f->env = orders_env_open(f->dir, err, sizeof err);
    if (!f->env)
        print_error("orders_env_open: %s\n", err);
    assert_non_null(f->env);
    f->shared = cart_store_shared_new(f->env, err, sizeof err);
    if (!f->shared)
        print_error("cart_store_shared_new: %s\n", err);
    assert_non_null(f->shared);
    f->store = cart_store_open(f->shared);
    assert_non_null(f->store);
}

static void s_close(fx_t *f)
{
    cart_store_close(&f->store);
    assert_null(f->store);
    cart_store_shared_destroy(&f->shared);
    assert_null(f->shared);
    kv_close(&f->env);
}

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_tempdir("test-cart-store");
    s_open(f);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    s_close(f);
    tu_rmtree(f->dir);
    zstr_free(&f->dir);
    free(f);
    return 0;
}

/* Asserts the cart's lines are exactly "id:qty" ... in order. */
static void s_expect_lines(const cart_t *cart, int n, const char *const *lines)
{
    assert_int_equal(cart->n_lines, n);
    for (int i = 0; i < n; i++) {
        char got[64];
        snprintf(got, sizeof got, "%s:%d", cart->lines[i].product_id, cart->lines[i].qty);
        assert_string_equal(got, lines[i]);
    }
}

static void test_set_remove_clear_get(void **state)
{
    fx_t *f = *state;
    cart_t *c = &f->cart;

    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    assert_int_equal(c->n_lines, 0);
    assert_string_equal(c->currency, "");

    assert_int_equal(cart_store_set(f->store, "u1", "pA", "EUR", 2, c), CART_OK);
    assert_int_equal(cart_store_set(f->store, "u1", "pB", "EUR", 1, c), CART_OK);
    assert_int_equal(cart_store_set(f->store, "u1", "pC", "EUR", 5, c), CART_OK);
    /* a change keeps the line's place */
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "EUR", 7, c), CART_OK);
    s_expect_lines(c, 3, (const char *const[]){"pA:7", "pB:1", "pC:5"});
    assert_string_equal(c->currency, "EUR");
    assert_true(c->updated_at_ms > 0);

    /* what the write answered is what a read finds */
    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    s_expect_lines(c, 3, (const char *const[]){"pA:7", "pB:1", "pC:5"});

    /* qty 0 removes, and needs no currency */
    assert_int_equal(cart_store_set(f->store, "u1", "pB", NULL, 0, c), CART_OK);
    s_expect_lines(c, 2, (const char *const[]){"pA:7", "pC:5"});
    /* qty 0 of a product not there changes nothing */
    assert_int_equal(cart_store_set(f->store, "u1", "pZ", NULL, 0, c), CART_OK);
    s_expect_lines(c, 2, (const char *const[]){"pA:7", "pC:5"});

    /* remove: several at once, unknown ones passed over */
    assert_int_equal(cart_store_set(f->store, "u1", "pD", "EUR", 1, c), CART_OK);
    const char *const ids[] = {"pC", "nope", "pA"};
    assert_int_equal(cart_store_remove(f->store, "u1", ids, 3, c), CART_OK);
    s_expect_lines(c, 1, (const char *const[]){"pD:1"});

    /* another user's cart is apart */
    assert_int_equal(cart_store_set(f->store, "u2", "pA", "USD", 3, NULL), CART_OK);
    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    s_expect_lines(c, 1, (const char *const[]){"pD:1"});
    assert_string_equal(c->currency, "EUR");

    /* the last line removed: no lines, no currency, so any currency fits again */
    assert_int_equal(cart_store_remove(f->store, "u1", (const char *const[]){"pD"}, 1, c), CART_OK);
    assert_int_equal(c->n_lines, 0);
    assert_string_equal(c->currency, "");
    assert_int_equal(cart_store_set(f->store, "u1", "pX", "GBP", 1, c), CART_OK);
    assert_string_equal(c->currency, "GBP");

    assert_int_equal(cart_store_clear(f->store, "u1"), CART_OK);
    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    assert_int_equal(c->n_lines, 0);
    assert_string_equal(c->currency, "");
    /* clearing an empty cart is fine */
    assert_int_equal(cart_store_clear(f->store, "u1"), CART_OK);
    assert_int_equal(cart_store_get(f->store, "u2", c), CART_OK);
    s_expect_lines(c, 1, (const char *const[]){"pA:3"});
}

static void test_refuses_bad_arguments(void **state)
{
    fx_t *f = *state;
    cart_t *c = &f->cart;
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "EUR", 1000, c), CART_ERROR);
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "EUR", -1, c), CART_ERROR);
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "eur", 1, c), CART_ERROR);
    assert_int_equal(cart_store_set(f->store, "u1", "pA", NULL, 1, c), CART_ERROR);
    assert_int_equal(cart_store_set(f->store, "u1", "", "EUR", 1, c), CART_ERROR);
    assert_int_equal(cart_store_set(f->store, "", "pA", "EUR", 1, c), CART_ERROR);
    char long_id[CART_PRODUCT_ID_MAX + 2];
    memset(long_id, 'p', sizeof long_id - 1);
    long_id[sizeof long_id - 1] = '\0';
    assert_int_equal(cart_store_set(f->store, "u1", long_id, "EUR", 1, c), CART_ERROR);
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "EUR", CART_QTY_MAX, c), CART_OK);
    s_expect_lines(c, 1, (const char *const[]){"pA:999"});
}

static void test_line_limit(void **state)
{
    fx_t *f = *state;
    cart_t *c = &f->cart;
    char id[32];
    for (int i = 0; i < CART_LINES_MAX; i++) {
        snprintf(id, sizeof id, "p%03d", i);
        assert_int_equal(cart_store_set(f->store, "u1", id, "EUR", 1, NULL), CART_OK);
    }
    assert_int_equal(cart_store_set(f->store, "u1", "p100", "EUR", 1, c), CART_FULL);
    /* a line there may still change */
    assert_int_equal(cart_store_set(f->store, "u1", "p042", "EUR", 9, c), CART_OK);
    assert_int_equal(c->n_lines, CART_LINES_MAX);
    assert_string_equal(c->lines[42].product_id, "p042");
    assert_int_equal(c->lines[42].qty, 9);
    assert_string_equal(c->lines[99].product_id, "p099");
    /* one out, one in */
    assert_int_equal(cart_store_set(f->store, "u1", "p000", NULL, 0, c), CART_OK);
    assert_int_equal(cart_store_set(f->store, "u1", "p100", "EUR", 1, c), CART_OK);
    assert_int_equal(c->n_lines, CART_LINES_MAX);
    assert_string_equal(c->lines[0].product_id, "p001");
    assert_string_equal(c->lines[99].product_id, "p100");
    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    assert_int_equal(c->n_lines, CART_LINES_MAX);
}

static void test_currency_conflict(void **state)
{
    fx_t *f = *state;
    cart_t *c = &f->cart;
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "EUR", 1, NULL), CART_OK);
    assert_int_equal(cart_store_set(f->store, "u1", "pB", "USD", 1, c), CART_OTHER_CURRENCY);
    /* nor may a line there change to another currency */
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "USD", 2, c), CART_OTHER_CURRENCY);
    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    s_expect_lines(c, 1, (const char *const[]){"pA:1"});
    assert_string_equal(c->currency, "EUR");
}

/* ---- concurrency ---- */

#define S_THREADS 8
#define S_PER_THREAD 12

typedef struct {
    cart_store_shared_t *shared;
    pthread_barrier_t *barrier;
    int index;
    int failures;
} s_racer_t;

static void *s_racer(void *arg)
{
    s_racer_t *r = arg;
    cart_store_t *store = cart_store_open(r->shared); /* one handle per thread */
    if (!store) {
        r->failures = S_PER_THREAD;
        pthread_barrier_wait(r->barrier);
        return NULL;
    }
    pthread_barrier_wait(r->barrier);
    for (int i = 0; i < S_PER_THREAD; i++) {
        char id[32];
        snprintf(id, sizeof id, "t%d-%02d", r->index, i);
        if (cart_store_set(store, "shared-user", id, "EUR", r->index + 1, NULL) != CART_OK)
            r->failures++;
    }
    cart_store_close(&store);
    return NULL;
}

static void test_concurrent_sets_lose_nothing(void **state)
{
    fx_t *f = *state;
    pthread_t threads[S_THREADS];
    s_racer_t racers[S_THREADS];
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, S_THREADS), 0);
    for (int i = 0; i < S_THREADS; i++) {
        racers[i] = (s_racer_t){.shared = f->shared, .barrier = &barrier, .index = i};
        assert_int_equal(pthread_create(&threads[i], NULL, s_racer, &racers[i]), 0);
    }
    for (int i = 0; i < S_THREADS; i++) {
        pthread_join(threads[i], NULL);
        assert_int_equal(racers[i].failures, 0);
    }
    pthread_barrier_destroy(&barrier);

    cart_t *c = &f->cart;
    assert_int_equal(cart_store_get(f->store, "shared-user", c), CART_OK);
    assert_int_equal(c->n_lines, S_THREADS * S_PER_THREAD);
    /* every line there once, with its thread's qty; each thread's in its order */
    for (int t = 0; t < S_THREADS; t++) {
        int last = -1;
        for (int i = 0; i < S_PER_THREAD; i++) {
            char id[32];
            snprintf(id, sizeof id, "t%d-%02d", t, i);
            int found = -1;
            for (int k = 0; k < c->n_lines; k++)
                if (strcmp(c->lines[k].product_id, id) == 0) {
                    assert_int_equal(found, -1);
                    found = k;
                }
            assert_true(found >= 0);
            assert_int_equal(c->lines[found].qty, t + 1);
            assert_true(found > last);
            last = found;
        }
    }
}

static void test_reopen_keeps_carts(void **state)
{
    fx_t *f = *state;
    cart_t *c = &f->cart;
    assert_int_equal(cart_store_set(f->store, "u1", "pA", "EUR", 4, NULL), CART_OK);
    assert_int_equal(cart_store_set(f->store, "u1", "pB", "EUR", 6, NULL), CART_OK);
    assert_int_equal(cart_store_set(f->store, "u2", "pC", "USD", 1, NULL), CART_OK);
    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    int64_t updated = c->updated_at_ms;
    s_close(f);
    s_open(f);
    assert_int_equal(cart_store_get(f->store, "u1", c), CART_OK);
    s_expect_lines(c, 2, (const char *const[]){"pA:4", "pB:6"});
    assert_string_equal(c->currency, "EUR");
    assert_int_equal(c->updated_at_ms, updated);
    assert_int_equal(cart_store_get(f->store, "u2", c), CART_OK);
    s_expect_lines(c, 1, (const char *const[]){"pC:1"});
    assert_string_equal(c->currency, "USD");
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_set_remove_clear_get),
        TEST(test_refuses_bad_arguments),
        TEST(test_line_limit),
        TEST(test_currency_conflict),
        TEST(test_concurrent_sets_lose_nothing),
        TEST(test_reopen_keeps_carts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

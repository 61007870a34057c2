/*  cart_store.h - every user's cart, in the orders service's own LMDB
 *  environment (data_dir/orders), apart from everyone else's data.
 *
 *  A cart is its lines, {product_id, qty}, in the order each product was
 *  first added, the currency its products share, and when it last
 *  changed. It lives in the database "carts" under the user's id; a user
 *  with no lines has no record (an empty cart reads as one with no lines
 *  and no currency).
 *
 *  The store knows nothing of the catalog: the caller (the orders
 *  service) asks the catalog for a product's currency and passes it in;
 *  the store keeps the currency of the cart's lines and refuses a line of
 *  another one. Names and prices are never stored here: a cart is shown
 *  with the catalog's current ones.
 *
 *  Every write is one kv_write (storage/kv.h, group-committed), and every
 *  read that decides it (the lines there, their count, the currency) is
 *  made inside it, so concurrent writes to one cart lose nothing and two
 *  of them cannot together pass the limit of CART_LINES_MAX lines.
 *
 *  The record (storage/record.h) is a msgpack map: "lines" (an array of
 *  maps {"product_id": str, "qty": int}, read by a RECORD_CUSTOM hook),
 *  "currency" (3 letters) and "updated_at" (unix ms).
 *
 *  Ownership: a cart_store_shared_t is made once per process and closed
 *  after every handle; a cart_store_t is used by one thread at a time (one
 *  per worker). Every out struct is the caller's.
 */
#ifndef RETAIL_CART_STORE_H
#define RETAIL_CART_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "storage/kv.h"
#include "storage/status.h"

#define CART_USER_ID_MAX 63    /* a token's subject (AUTH_SUB_MAX) */
#define CART_PRODUCT_ID_MAX 32 /* a catalog product id */
#define CART_LINES_MAX 100
#define CART_QTY_MAX 999
#define CART_CURRENCY_LEN 3 /* ISO 4217, upper case */

/* The store's answers: store_status_t's values, and one more. */
typedef enum {
    CART_OK = STORE_OK,
    CART_UNAVAILABLE = STORE_UNAVAILABLE,
    CART_ERROR = STORE_ERROR,
    CART_OTHER_CURRENCY = STORE_CONFLICT, /* set: the cart's lines are in another currency */
    /* a write found no room (storage/kv.h): nothing changed */
    CART_NO_SPACE = STORE_NO_SPACE,
    CART_FULL = 100, /* set: a new line beyond CART_LINES_MAX */
} cart_status_t;

typedef struct {
    char product_id[CART_PRODUCT_ID_MAX + 1];
    int qty; /* 1..CART_QTY_MAX */
} cart_line_t;

typedef struct {
    int n_lines;
    cart_line_t lines[CART_LINES_MAX];    /* in the order first added */
    char currency[CART_CURRENCY_LEN + 1]; /* "" when there are no lines */
    int64_t updated_at_ms;                /* 0 when there are no lines */
} cart_t;

typedef struct cart_store_shared_t cart_store_shared_t;
typedef struct cart_store_t cart_store_t;

/* The carts of the orders environment (orders_env.h), which the caller
 * opened and closes after this. NULL with a reason in err. */
cart_store_shared_t *cart_store_shared_new(kv_t *env, char *err, size_t errlen);
void cart_store_shared_destroy(cart_store_shared_t **self_p);

cart_store_t *cart_store_open(cart_store_shared_t *shared);
void cart_store_close(cart_store_t **self_p);

/* The cart of user_id into out (no lines when it has none). */
cart_status_t cart_store_get(cart_store_t *self, const char *user_id, cart_t *out);

/* Sets the quantity of product_id, whose currency is `currency`, in the
 * cart of user_id: a product not there yet is a new last line, one there
 * keeps its place, and qty 0 removes it (currency is then not looked at
 * and may be NULL). CART_OTHER_CURRENCY when the cart's lines are in
 * another currency, CART_FULL when a new line would be the 101st; then
 * nothing changes. qty outside 0..CART_QTY_MAX, or an id or currency of
 * the wrong shape: CART_ERROR. *out (may be NULL) is the cart after it. */
cart_status_t cart_store_set(cart_store_t *self, const char *user_id, const char *product_id,
                             const char *currency, int qty, cart_t *out);

/* Removes the lines of the n products ids[0..n) from the cart of user_id
 * (ids not in it are passed over), in one write. *out (may be NULL) is
 * the cart after it. */
cart_status_t cart_store_remove(cart_store_t *self, const char *user_id, const char *const *ids,
                                int n, cart_t *out);

/* Empties the cart of user_id. */
cart_status_t cart_store_clear(cart_store_t *self, const char *user_id);

#endif

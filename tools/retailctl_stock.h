/*  retailctl_stock.h - the catalog's stock as a whole, as the operator
 *  reads it: every product's free stock and every reservation. What
 *  `retailctl stock-ledger` prints and `retailctl check-record --stock`
 *  compares (issue 15, the crash loop).
 *
 *  Why: a unit is either free (the product's stock), held by a live
 *  reservation, or sold (a committed one); a release moves it back to
 *  free. So, while no admin sets a product's stock, stock + reserved +
 *  committed of each product (its units) never changes, whatever orders
 *  come and go, and whatever crashes happen between their steps. A unit
 *  sold twice, a release applied twice, a reservation lost or taken twice
 *  all change it. The catalog's own ops.check sees none of these as long
 *  as no stock goes negative; the ledger does.
 *
 *  How: product.search pages (newest first, 100 a page) give every
 *  product's stock; stock.reservations pages (1000 a page, all states)
 *  give every reservation, kept by order id with its lines. Each page is
 *  one read transaction, the whole is not: read it on a quiet system (the
 *  crash loop reads it between its load runs, after recovery settled).
 *
 *  The ledger file: one JSON object, {"stock_ledger": 1, "products":
 *  {"<product id>": units, ...}}.
 *
 *  Ownership: a view owns everything it read; the pointers its accessors
 *  return live as long as it does.
 */
#ifndef RETAIL_RETAILCTL_STOCK_H
#define RETAIL_RETAILCTL_STOCK_H

#include <czmq.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "protocol/mdpcli.h"

#define STOCK_ID_MAX 64

typedef struct stock_view_t stock_view_t;

typedef struct {
    char product_id[STOCK_ID_MAX + 1];
    int64_t qty;
} stock_line_t;

typedef struct {
    char state[16]; /* reserved, committed, released */
    stock_line_t *lines;
    size_t nlines;
} stock_reservation_t;

/* Reads every product and reservation. NULL when a service did not
 * answer or answered out of shape (said on stderr, prefixed by who). */
stock_view_t *stock_view_read(mdpcli_t *client, int timeout_ms, uint64_t *next_id, const char *who);
void stock_view_destroy(stock_view_t **self_p);

size_t stock_view_product_count(const stock_view_t *self);
size_t stock_view_reservation_count(const stock_view_t *self);
/* The product's units (stock + reserved + committed); false when the
 * catalog listed no such product. */
bool stock_view_units(const stock_view_t *self, const char *product_id, int64_t *units);
/* The reservation of the order, or NULL. */
const stock_reservation_t *stock_view_reservation(const stock_view_t *self, const char *order_id);

/* Writes the ledger file of every product. 0, or -1 on a write error. */
int stock_view_write(const stock_view_t *self, FILE *out);
/* Reads a ledger file: product id -> int64_t units (the caller destroys
 * the hash). NULL with why. */
zhashx_t *stock_ledger_read(const char *path, char *err, size_t errlen);

/* `retailctl stock-ledger`: the ledger file on stdout. 0, or 3 when a
 * service did not answer. */
int retailctl_stock_ledger(mdpcli_t *client, int timeout_ms);

#endif

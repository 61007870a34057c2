/*  retailctl_record_impl.h - what the two halves of `retailctl
 *  check-record` share (retailctl_record.h): the model read from the
 *  records and the asking of the system.
 *
 *  retailctl_record.c reads the records into this model and checks what
 *  was acknowledged: users, orders, cancels, refunds, carts, products.
 *  retailctl_record_effects.c checks that nothing happened twice or
 *  vanished in between: every idempotency key names one order, a user has
 *  no more orders than its checkouts explain, each of those orders has at
 *  most one payment captured once (in the payments log and at the
 *  simulated gateway), its reservation is what its status says, and, with
 *  a ledger, every product's units are what they were.
 *
 *  Ownership: check_t owns its lists and hashes; the file names are the
 *  caller's (argv), borrowed for the whole check.
 */
#ifndef RETAIL_RETAILCTL_RECORD_IMPL_H
#define RETAIL_RETAILCTL_RECORD_IMPL_H

#include "tools/retailctl_record.h"

#include <czmq.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "protocol/envelope.h"

#define RECORD_TEXT_MAX 256

typedef struct {
    char id[RECORD_TEXT_MAX];   /* order, payment or user id */
    char what[RECORD_TEXT_MAX]; /* email, status */
    int64_t amount;             /* total_cents, refunded_cents */
    const char *file;
    size_t line;
} item_t;

typedef struct {
    item_t *items;
    size_t count, cap;
} list_t;

/* A product created by the records, as its acknowledged writes left it;
 * a field an unknown outcome may have changed is not held to anything. */
typedef struct {
    char sku[RECORD_TEXT_MAX], name[RECORD_TEXT_MAX];
    int64_t price_cents, stock, version;
    bool name_unknown, price_unknown, stock_unknown, version_unknown;
    bool deleted, delete_unknown;
    const char *file;
    size_t line;
} product_t;

/* One idempotency key of a user's checkouts. */
typedef struct {
    char user[RECORD_TEXT_MAX];
    char order_id[RECORD_TEXT_MAX]; /* "" until an acknowledged line names one */
    const char *file;
    size_t line;
} idem_t;

/* A user who checked out: the checkouts of unknown outcome without a key
 * (each may have made an order). */
typedef struct {
    size_t keyless_unknown;
} buyer_t;

/* What the simulated gateway captured and refunded for one order. */
typedef struct {
    int captures;
    int64_t captured_cents, refunded_cents;
} charges_t;

typedef struct {
    mdpcli_t *client;
    const record_check_opts_t *opts;
    uint64_t next_id;
    msgpack_zone zone;
    zframe_t *frame;
    envelope_reply_t reply;
    const char *file; /* the record being read */
    list_t users, orders, cancels, refunds;
    zhashx_t *carts;         /* user id -> zhashx_t of product id -> line */
    zhashx_t *products;      /* product id -> product_t */
    zhashx_t *stock_touched; /* product id -> "": a line may have set its stock */
    zhashx_t *keys;          /* user "\n" key -> idem_t */
    zhashx_t *buyers;        /* user id -> buyer_t */
    zhashx_t *acked_orders;  /* order id -> "" */
    zhashx_t *charges;       /* order id -> charges_t; NULL: the gateway was not read */
    size_t problems, cart_lines_checked, products_checked, orders_listed, payments_checked,
        reservations_checked, ledger_checked, ledger_skipped;
} check_t;

/* Asks service op with args {key: value}; true with self->reply, false
 * when no reply came (said). */
bool record_ask(check_t *self, const char *service, const char *op, const char *key,
                const char *value);
/* Asks with args already packed (a map), NULL for none. */
bool record_ask_args(check_t *self, const char *service, const char *op, const void *args,
                     size_t args_len);
void record_problem(check_t *self, const char *kind, const char *id, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
bool record_obj_str(const msgpack_object *o, char *out, size_t size);
bool record_obj_int(const msgpack_object *o, int64_t *out);
/* A hash of the caller's structs, freed with free(). */
zhashx_t *record_hash(void);

/* retailctl_record_effects.c: 0, or -1 when a service did not answer or
 * a local read failed (said). */
int record_check_effects(check_t *self);

#endif

/*  order_store.h - orders and their idempotency keys, in the orders
 *  environment (orders_env.h).
 *
 *  An order is one record under its id: what was bought (items with the
 *  names and prices fixed when it was placed), its status and the history
 *  of its statuses, the summary of its payment, the shipping address as
 *  the client sent it (msgpack bytes), and the saga's durable journal (the
 *  steps done, each with its time) with the lease of whoever drives it.
 *  The record is a msgpack map read and written by the record codec.
 *
 *  Indexes, written in the same transaction as the record:
 *    by_user  user_id \0 id     a user's orders (ids are in creation
 *                               order, so walking backwards is newest
 *                               first)
 *    todo     id                the orders recovery must drive on: every
 *                               `pending` order, every one marked to
 *                               compensate, every paid one being cancelled
 *
 *  Idempotency keys: a key (scoped to the user) is stored under the
 *  BLAKE2b hash of (user, key), with the request's fingerprint, the order
 *  it made, whether it is still running and, once finished, the first
 *  response (an error code and message and details, or the reply data).
 *  It is written in the same transaction as the order: order_store_create
 *  puts the order and the running key together, and the write that ends
 *  the saga puts the response into the key (order_change_t's
 *  finish_key), so a crash can never leave one without the other. Keys
 *  expire ORDER_KEY_TTL_MS after they were made: idem_by_time orders them
 *  by creation, and order_store_sweep_keys deletes the old ones from the
 *  front, never scanning per request.
 *
 *  Every change is one write that reads the order inside it
 *  (order_store_change), so two changes of one order never lose each
 *  other's effect and a transition is decided on the status it changes.
 *  order_store_create and order_store_change wait for their commit; a
 *  caller that must not block (a worker: call_write in protocol/call.h)
 *  prepares the same write in an order_write_t and has the environment
 *  run it (order_write_txn), then reads its outcome (order_write_end).
 *
 *  Ownership: the environment is the caller's. An order_store_t is used by
 *  one thread at a time. order_t is large (about 40 KB with 100 items):
 *  callers keep it on the heap. Every out struct is the caller's.
 */
#ifndef RETAIL_ORDER_STORE_H
#define RETAIL_ORDER_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/mpout.h"
#include "storage/kv.h"
#include "storage/outbox.h"
#include "storage/status.h"

#define ORDER_ID_MAX 32
#define ORDER_USER_MAX 63
#define ORDER_ITEMS_MAX 100
#define ORDER_QTY_MAX 999
#define ORDER_SKU_MAX 64
#define ORDER_NAME_MAX 200
#define ORDER_HISTORY_MAX 8
#define ORDER_JOURNAL_MAX 16
#define ORDER_ADDRESS_MAX 2048 /* msgpack bytes */
#define ORDER_LEASE_MAX 32
#define ORDER_RESPONSE_MAX (64 * 1024)
#define ORDER_KEY_MAX 255
#define ORDER_KEY_TTL_MS (24LL * 3600 * 1000)

typedef enum {
    ORDER_PENDING,
    ORDER_PAID,
    ORDER_PAYMENT_FAILED,
    ORDER_SHIPPED,
    ORDER_DELIVERED,
    ORDER_CANCELLED,
    ORDER_REFUNDED,
    ORDER_STATUS_COUNT
} order_status_t;

/* The saga's steps as the journal records them (order_step_name). */
typedef enum {
    STEP_CREATED,       /* the order is written pending */
    STEP_RESERVED,      /* the catalog holds its stock */
    STEP_CHARGED,       /* payments captured its total */
    STEP_COMMITTED,     /* the catalog made the reservation final */
    STEP_RELEASED,      /* the catalog gave its stock back */
    STEP_ABANDONED,     /* recovery ended it: no charge could be made */
    STEP_HELD_TOO_LONG, /* recovery ended it after the hold, payments silent */
    STEP_COMPENSATED,   /* a payment found after the end was refunded or voided */
    STEP_CANCEL_ASKED,  /* a cancel of a paid order began */
    STEP_REFUNDED,      /* payments refunded the whole capture (cancel) */
    STEP_COUNT
} order_step_t;

/* The store's answers: store_status_t's values, and more. */
typedef enum {
    ORDER_OK = STORE_OK,
    ORDER_NOT_FOUND = STORE_NOT_FOUND,
    ORDER_UNAVAILABLE = STORE_UNAVAILABLE,
    ORDER_ERROR = STORE_ERROR,
    /* a write found no room (storage/kv.h): nothing changed */
    ORDER_NO_SPACE = STORE_NO_SPACE,
    ORDER_KEY_DONE = 100, /* create: the key has its response (*key_out) */
    ORDER_KEY_RUNNING,    /* create: the key's first request still runs */
    ORDER_KEY_REUSED,     /* create: the key came with another request */
    ORDER_REFUSED,        /* change: the change function refused */
} order_store_status_t;

typedef struct {
    char product_id[ORDER_ID_MAX + 1];
    char sku[ORDER_SKU_MAX + 1];
    char name[ORDER_NAME_MAX + 1];
    int64_t unit_price_cents;
    int qty;
} order_item_t;

typedef struct {
    int status; /* order_status_t */
    int64_t at_ms;
} order_history_t;

typedef struct {
    int step; /* order_step_t */
    int64_t at_ms;
} order_journal_t;

typedef struct {
    char id[ORDER_ID_MAX + 1];
    char user_id[ORDER_USER_MAX + 1];
    int n_items;
    order_item_t items[ORDER_ITEMS_MAX];
    int64_t total_cents;
    char currency[4];
    int status; /* order_status_t */
    int n_history;
    order_history_t history[ORDER_HISTORY_MAX];
    /* The payment, once payments answered (payment_id "" before). */
    char payment_id[ORDER_ID_MAX + 1];
    char payment_status[24];
    char brand[24];
    char last4[5];
    /* Why it failed (payment_failed): an error code name and a reason. */
    char failure_code[32];
    char failure_reason[32];
    uint8_t address[ORDER_ADDRESS_MAX];
    size_t address_len;
    int n_journal;
    order_journal_t journal[ORDER_JOURNAL_MAX];
    /* Who drives the saga now, and until when (unix ms). */
    char lease[ORDER_LEASE_MAX + 1];
    int64_t lease_until_ms;
    bool compensate; /* a payment may exist that no paid order covers */
    /* The hash of its idempotency key (hex), "" without one. */
    char key_hash[65];
    int64_t created_at_ms;
    int64_t updated_at_ms;
} order_t;

/* An idempotency key's record. */
typedef struct {
    uint8_t fingerprint[32];
    char order_id[ORDER_ID_MAX + 1];
    bool running;
    /* The first response, once not running: code "" and data for an ok
     * reply, or an error code name, its message and details (msgpack;
     * details_len 0 for none). */
    char code[32];
    char message[160];
    uint8_t body[ORDER_RESPONSE_MAX];
    size_t body_len;
    int64_t created_at_ms;
} order_key_t;

typedef struct order_store_shared_t order_store_shared_t;
typedef struct order_store_t order_store_t;

/* The order databases of the orders environment, opened by the caller and
 * closed after this. Reads (making it the first time) the key of request
 * fingerprints from meta. NULL with a reason in err. */
order_store_shared_t *order_store_shared_new(kv_t *env, char *err, size_t errlen);
void order_store_shared_destroy(order_store_shared_t **self_p);

/* The outbox the writes append their events to (storage/outbox.h; the
 * service's, in this environment), borrowed: it must outlive the shared
 * struct and every write still out. NULL (the default): no events, for
 * tools and the tests of other things. Set it before the first write.
 *
 * Events, each appended inside the write that makes its change, so it is
 * committed or undone with it (protocol/SPEC.md, "Events: types and
 * data", has every field):
 *   order.created     create, the order written pending
 *   order.<status>    a change that gives the order a new status (paid,
 *                     payment_failed, cancelled, shipped, delivered,
 *                     refunded), with the status it left (from)
 *   order.cancelled   a change that removes a pending order (change.remove:
 *                     the stock was not there), removed: true
 * A refused create or change (a key's replay, a refusal of the change
 * function) appends nothing, and neither does a change that keeps the
 * status (a lease, a journal step). When an event cannot be appended the
 * write fails (ORDER_ERROR, or ORDER_NO_SPACE on a full map or disk) and its
 * change with it. */
void order_store_shared_set_outbox(order_store_shared_t *self, outbox_t *outbox);

order_store_t *order_store_open(order_store_shared_t *shared);
void order_store_close(order_store_t **self_p);

/* The keyed hash of a request (its op and msgpack args), for a key's
 * fingerprint: the key lives in meta, so a stored fingerprint says
 * nothing about a card number to whoever lacks the key. */
void order_store_fingerprint(order_store_t *self, const void *request, size_t len, uint8_t out[32]);

/* Writes order (status pending; its id made here when "" and copied back)
 * and, when key is non-NULL, the user's key `key` running with
 * fingerprint, in one transaction. When the key exists already: its
 * response into *key_out (may be NULL) and ORDER_KEY_DONE, or
 * ORDER_KEY_RUNNING, or ORDER_KEY_REUSED (another fingerprint), and
 * nothing is written. */
order_store_status_t order_store_create(order_store_t *self, order_t *order, const char *key,
                                        const uint8_t fingerprint[32], order_key_t *key_out);

/* Looks the user's key up (a read, no write): ORDER_NOT_FOUND when it is
 * unknown, else as order_store_create would answer (ORDER_KEY_DONE with
 * *key_out, ORDER_KEY_RUNNING, ORDER_KEY_REUSED). A first look that
 * spares a request the catalog's read when it is a replay; the create
 * looks again inside its write. */
order_store_status_t order_store_key(order_store_t *self, const char *user_id, const char *key,
                                     const uint8_t fingerprint[32], order_key_t *key_out);

/* What a change function may ask besides changing the order. */
typedef struct {
    bool remove;      /* delete the order (and its indexes) */
    bool finish_key;  /* write the response below into its key */
    const char *code; /* "" for ok */
    const char *message;
    const void *body; /* msgpack, or NULL */
    size_t body_len;
    /* For an ok response that is the order itself: packs the order as
     * written (history and updated_at included) into out; used instead of
     * body when set. 0 or -1. */
    int (*body_of)(const order_t *order, mpout_t *out);
} order_change_t;

/* Changes the order: fn gets it as the write transaction reads it and
 * changes it in place; a non-zero return refuses (nothing written,
 * ORDER_REFUSED, and *refusal gets fn's value). updated_at, the history
 * (on a new status) and the indexes follow. *out (may be NULL) is the
 * order after it. */
typedef int order_change_fn(order_t *order, order_change_t *change, void *arg);
order_store_status_t order_store_change(order_store_t *self, const char *id, order_change_fn *fn,
                                        void *arg, order_t *out, int *refusal);

/* ---- the same writes, without waiting ----
 *
 *      order_write_change(&w, store, id, fn, arg, &order);
 *      call_write(call, order_store_kv(store), order_write_txn, &w, resume);
 *      ... in resume:
 *      status = order_write_end(&w, answer->ok, answer->result, &refusal);
 *
 * w, and whatever the prepare was given (the order, fn's arg, out,
 * key_out), must stay alive and untouched until the write is back: they
 * are used on the environment's committer thread (so fn must use only
 * its order, change and arg). The outcome is what order_store_create or
 * order_store_change would have answered; out (and key_out) are filled
 * inside the write. */
typedef struct {
    /* the store's */
    order_store_shared_t *shared;
    int kind;
    char id[ORDER_ID_MAX + 1];
    order_change_fn *fn;
    void *fn_arg;
    order_t *order; /* create: the order; change: out (may be NULL) */
    char key[ORDER_KEY_MAX + 1];
    bool has_key;
    uint8_t fingerprint[32];
    order_key_t *key_out;
    int refusal;
} order_write_t;

/* Prepares order_store_create's write (the order's id, status, history
 * and journal set here). false, and nothing to run, when the arguments
 * are bad (order_store_create's ORDER_ERROR). */
bool order_write_create(order_write_t *w, order_store_t *self, order_t *order, const char *key,
                        const uint8_t fingerprint[32], order_key_t *key_out);
/* Prepares order_store_change's write; false for an id that can name no
 * order (ORDER_NOT_FOUND). */
bool order_write_change(order_write_t *w, order_store_t *self, const char *id, order_change_fn *fn,
                        void *arg, order_t *out);
/* The kv write function of a prepared write; arg is the order_write_t. */
int order_write_txn(MDB_txn *txn, void *arg);
/* The outcome, from whether the transaction committed and the function's
 * result (when it did not: the transaction's error, call_answer_t's
 * result): ORDER_UNAVAILABLE when it did not commit, ORDER_NO_SPACE when
 * that was for want of room (kv_no_space); *refusal (may be NULL) as
 * order_store_change's. */
order_store_status_t order_write_end(const order_write_t *w, bool committed, int result,
                                     int *refusal);
/* The environment the writes go to. */
kv_t *order_store_kv(order_store_t *self);

order_store_status_t order_store_get(order_store_t *self, const char *id, order_t *out);

/* A page of orders, newest first: of user_id ("" for everyone), with the
 * given status (-1 for any), after cursor (an order id; "" from the
 * newest). ids receive up to limit ids; *more says whether more follow. */
order_store_status_t order_store_list(order_store_t *self, const char *user_id, int status,
                                      const char *cursor, int limit, char ids[][ORDER_ID_MAX + 1],
                                      int *count, bool *more);

/* Up to max ids from todo, after `after` ("" from the first), leaving out
 * those whose lease is of `instance` (this process) and ends after now_ms:
 * a live saga drives them. *end: no entry follows the last one looked at. */
order_store_status_t order_store_todo(order_store_t *self, const char *after, int max,
                                      const char *instance, int64_t now_ms,
                                      char ids[][ORDER_ID_MAX + 1], int *count, bool *end);

/* Deletes the keys made before now_ms - ORDER_KEY_TTL_MS, at most max of
 * them (the oldest); *deleted gets how many. */
order_store_status_t order_store_sweep_keys(order_store_t *self, int64_t now_ms, int max,
                                            int *deleted);

/* Checks the store's own books in one read transaction: every record
 * decodes, by_user and todo hold exactly what the orders say, totals are
 * the sums of their items, every key names an order that names it back
 * (or one removed: out of stock). fn gets each problem (check name, id,
 * message); counts[ORDER_STATUS_COUNT] gets orders per status. */
typedef void order_problem_fn(const char *check, const char *id, const char *message, void *arg);
order_store_status_t order_store_check(order_store_t *self, order_problem_fn *fn, void *arg,
                                       long counts[ORDER_STATUS_COUNT], long *keys);

const char *order_status_name(int status);
/* -1 for a name that is none. */
int order_status_parse(const char *name);
const char *order_step_name(int step);
bool order_has_step(const order_t *order, int step);
/* Appends a step to the journal (the oldest non-created step gives way
 * when it is full, which a saga never reaches). */
void order_add_step(order_t *order, int step, int64_t at_ms);

#endif

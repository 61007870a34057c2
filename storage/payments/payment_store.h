/*  payment_store.h - payments and their transaction log, behind one
 *  interface (LMDB now; PostgreSQL can back it later without the service
 *  changing).
 *
 *  What it keeps, in the payments service's own LMDB environment
 *  (data_dir/payments), apart from everyone else's data:
 *    - payments: one per order (the order id is the charge's idempotency
 *      key), with card metadata only: brand, last4, expiry and a keyed
 *      fingerprint, never a number or a CVC;
 *    - refunds: one per caller's idempotency key;
 *    - the transaction log: entries numbered 1, 2, 3... with no gaps, each
 *      holding the BLAKE2b-256 hash of the one before; an entry is written
 *      in the same write transaction as the payment's new state, so the
 *      two never disagree, and never changed after;
 *    - signed heads: every PAYMENT_LOG_ANCHOR_EVERY entries (inside the
 *      write that appends that entry) and at payment_store_anchor, the head
 *      (seq, hash) signed with Ed25519, so that a log whose tail was cut
 *      off no longer reaches its newest signed head.
 *
 *  Every read that decides a write is made in that write's transaction
 *  (group-committed, storage/kv.h): the transitions and the sums are
 *  checked there. The write itself enforces captured <= authorized and
 *  refunded + refunds in progress <= captured, so two refunds racing
 *  cannot pass the captured amount together.
 *
 *  The writes of a charge and a refund (begin, apply, refund begin and
 *  end) come in two forms: payment_store_* waits for its commit; the same
 *  write prepared in a payment_write_t (payment_write_begin, ...) is run
 *  by the environment without waiting (kv_submit, or call_write in
 *  protocol/call.h), and payment_write_end reads its outcome. The waiting
 *  forms are prepare, kv_write and end: one path. A prepared write holds
 *  copies of its arguments and pointers to the caller's out structs,
 *  which it fills inside the transaction, on the environment's committer
 *  thread; so several writes of one handle may be out at once, and each
 *  appends its log entry in its own (nested) transaction after those
 *  before it in the batch, so the chain stays whole.
 *
 *  Transitions (status, and the log entry each writes):
 *      pending    -authorize-> authorized     (entry "authorize")
 *      pending    -fail->      failed         (entry "fail": declined or gateway error)
 *      authorized -capture->   captured       (entry "capture")
 *      authorized -void->      voided         (entry "void")
 *      authorized -fail->      failed         (entry "fail": capture refused)
 *      captured | partially_refunded -refund-> partially_refunded | refunded
 *                                             (entry "refund")
 *  "pending" is a payment whose authorization is asked and not yet known
 *  (an extension of API.md's statuses; crash recovery finishes it).
 *
 *  The hash of an entry is BLAKE2b-256 over prev_hash followed by the
 *  msgpack array [seq, type, payment_id, order_id, amount_cents, currency,
 *  at_ms, details], details being the entry's msgpack map bytes as stored.
 *  The first entry's prev_hash is 32 zero bytes. Hashes travel as 64
 *  lower-case hex digits.
 *
 *  Keys: the Ed25519 pair that signs heads and the 32-byte key of card
 *  fingerprints are files in keys_dir (payments-log.key, payments-log.pub,
 *  card-fingerprint.key; mode 0600; made on first open).
 *
 *  Ownership: a store handle is used by one thread at a time (one per
 *  worker); handles of one process share the kv_t and the keys through
 *  payment_store_shared_t. Every out struct is the caller's; a prepared
 *  write and the out structs it was given must live, untouched, until the
 *  write is back (then payment_write_end), and the shared struct until
 *  every write is back.
 */
#ifndef RETAIL_PAYMENT_STORE_H
#define RETAIL_PAYMENT_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/kv.h"
#include "storage/outbox.h"
#include "storage/status.h"

#define PAYMENT_ID_MAX 32
#define PAYMENT_ORDER_ID_MAX 64
#define PAYMENT_CURRENCY_MAX 3 /* ISO 4217, upper case */
#define PAYMENT_BRAND_MAX 16
#define PAYMENT_GATEWAY_ID_MAX 64
#define PAYMENT_REASON_MAX 32
#define PAYMENT_KEY_MAX 128 /* a refund's idempotency key */
#define PAYMENT_HASH_HEX 64
#define PAYMENT_LOG_ANCHOR_EVERY 64

typedef enum {
    PAYMENT_PENDING,
    PAYMENT_AUTHORIZED,
    PAYMENT_CAPTURED,
    PAYMENT_PARTIALLY_REFUNDED,
    PAYMENT_REFUNDED,
    PAYMENT_FAILED,
    PAYMENT_VOIDED,
} payment_status_t;

/* "pending", "authorized", ...; NULL for a value out of range. */
const char *payment_status_name(payment_status_t status);
/* The status named name[0..len); false for none. */
bool payment_status_parse(const char *name, size_t len, payment_status_t *out);

typedef struct {
    char id[PAYMENT_ID_MAX + 1];
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
    payment_status_t status;
    int64_t amount_cents;     /* what the charge asked for */
    int64_t authorized_cents; /* 0 until authorized */
    int64_t captured_cents;
    int64_t refunded_cents;  /* refunds done */
    int64_t refunding_cents; /* refunds begun and not yet finished */
    char currency[PAYMENT_CURRENCY_MAX + 1];
    char brand[PAYMENT_BRAND_MAX + 1]; /* "visa", "mastercard", "amex", "card" */
    char last4[5];
    int exp_month, exp_year;
    char fingerprint[PAYMENT_HASH_HEX + 1]; /* keyed hash of the number */
    char auth_id[PAYMENT_GATEWAY_ID_MAX + 1];
    char capture_id[PAYMENT_GATEWAY_ID_MAX + 1];
    char failure[PAYMENT_REASON_MAX + 1]; /* "card_declined", "gateway_error", ... */
    int attempt;                          /* of the gateway keys: 1, then 2 after a recovery */
    int64_t created_at_ms, updated_at_ms;
} payment_t;

typedef struct payment_store_shared_t payment_store_shared_t;
typedef struct payment_store_t payment_store_t;

/* Opens (creating) data_dir/payments and the keys in keys_dir. NULL with
 * a reason in err. */
payment_store_shared_t *payment_store_shared_new(const char *data_dir, const char *keys_dir,
                                                 char *err, size_t errlen);
/* Anchors the head (payment_store_anchor) and closes. */
void payment_store_shared_destroy(payment_store_shared_t **self_p);

/* The environment (data_dir/payments), for the service's outbox, which
 * lives there in the databases at these indexes (OUTBOX_DB_EVENTS and
 * OUTBOX_DB_META among the environment's names). */
#define PAYMENT_STORE_DB_OUTBOX 7
#define PAYMENT_STORE_DB_OUTBOX_META 8
kv_t *payment_store_shared_kv(payment_store_shared_t *self);

/* The outbox the writes append their events to (storage/outbox.h),
 * borrowed: it must outlive every write still out. NULL (the default):
 * no events, for tools and the tests of other things. Set it before the
 * first write. Events, each appended inside the write that makes its
 * change (protocol/SPEC.md, "Events: types and data", has the fields):
 *   payment.captured  an apply of CAPTURE (also the second event of
 *                     payment_write_apply_two)
 *   payment.failed    an apply of FAIL (declined, gateway error, not
 *                     authorized)
 *   payment.refunded  a refund end that is done
 * An authorization, a void, a refund begun or failed, a new attempt and
 * every refused or repeated write append nothing. When an event cannot be
 * appended the write fails (STORE_ERROR) and its change with it. */
void payment_store_shared_set_outbox(payment_store_shared_t *self, outbox_t *outbox);

payment_store_t *payment_store_open(payment_store_shared_t *shared);
void payment_store_close(payment_store_t **self_p);

/* The keyed fingerprint of a card number, as 64 hex digits. */
void payment_card_fingerprint(payment_store_shared_t *shared, const char *number, size_t len,
                              char out[PAYMENT_HASH_HEX + 1]);

/* ---- charges ---- */

/* Starts the charge of an order: when the order has no payment yet,
 * stores `payment` (its id, order_id, amount, currency, card metadata;
 * status pending, attempt 1) and sets *created; otherwise leaves it be and
 * returns the order's payment as it is (the first charge's). The id is
 * "" for the store to make one, else one of store_new_id('p')
 * (storage/ids.h); created_at is the id's time (lists page by id). */
store_status_t payment_store_begin(payment_store_t *self, const payment_t *payment, payment_t *out,
                                   bool *created);

typedef enum {
    PAYMENT_EVENT_AUTHORIZE, /* amount_cents authorized, gateway_id = auth_id */
    PAYMENT_EVENT_CAPTURE,   /* amount_cents captured, gateway_id = capture_id */
    PAYMENT_EVENT_VOID,
    PAYMENT_EVENT_FAIL, /* reason */
} payment_event_type_t;

typedef struct {
    payment_event_type_t type;
    int64_t amount_cents;
    const char *gateway_id; /* NUL-terminated, or NULL */
    const char *reason;     /* FAIL: "card_declined", "insufficient_funds", "gateway_error"... */
} payment_event_t;

/* Applies one event to payment id: checks the transition (else
 * STORE_CONFLICT, nothing written) and the sums, writes the new state and
 * appends its log entry, in one write. *out is the payment after it. */
store_status_t payment_store_apply(payment_store_t *self, const char *id,
                                   const payment_event_t *event, payment_t *out);

/* A payment whose next step crash recovery or a retry takes with new
 * gateway keys: attempt + 1, in one write (no log entry). */
store_status_t payment_store_next_attempt(payment_store_t *self, const char *id, payment_t *out);

/* ---- refunds ---- */

typedef enum { REFUND_PENDING, REFUND_DONE, REFUND_FAILED } refund_state_t;

typedef struct {
    char key[PAYMENT_KEY_MAX + 1];
    char payment_id[PAYMENT_ID_MAX + 1];
    int64_t amount_cents;
    refund_state_t state;
    char refund_id[PAYMENT_GATEWAY_ID_MAX + 1]; /* the gateway's, when done */
    int64_t created_at_ms;
    /* When done: the payment as this refund's end left it, so that the
     * key asked again answers exactly what it answered first. */
    payment_status_t status_after;
    int64_t captured_after_cents, refunded_after_cents, updated_after_ms;
} refund_t;

/* Begins a refund under the caller's key. A new key: checks that the
 * payment is captured or partially refunded (else STORE_CONFLICT) and
 * that refunded + refunding + amount <= captured (else STORE_CONFLICT),
 * adds amount to refunding and stores the refund pending; *created set.
 * A known key: returns its refund as it is (STORE_EXISTS when its
 * payment or amount differ: a key means one refund). amount 0: the rest
 * (captured - refunded - refunding; STORE_CONFLICT when nothing is left).
 * *payment_out is the payment after it. */
store_status_t payment_store_refund_begin(payment_store_t *self, const char *payment_id,
                                          const char *key, int64_t amount_cents, refund_t *out,
                                          payment_t *payment_out, bool *created);

/* Ends a pending refund: done (refund_id given: refunded += amount, the
 * status follows, log entry "refund"; refunded in full, its order is
 * recorded to tell, payment_store_to_tell) or failed (refunding -= amount,
 * log entry "fail" with details {refund: key}); either way it leaves the
 * refunds pending (payment_store_refunds_pending). A refund already
 * ended: nothing changes, *out is as stored. */
store_status_t payment_store_refund_end(payment_store_t *self, const char *key, bool done,
                                        const char *refund_id, refund_t *out,
                                        payment_t *payment_out);

/* ---- the same writes, without waiting ----
 *
 *      payment_write_apply(&w, store, id, &event, &payment);
 *      call_write(call, payment_store_kv(store), payment_write_txn, &w, resume);
 *      ... in resume:
 *      status = payment_write_end(&w, answer->ok, answer->result);
 *
 * A prepare copies what it is given (the payment to begin, the id, the
 * event's strings, the keys), so those may go at once; w and the out
 * structs (out, refund out, created) must stay alive and untouched until
 * the write is back: the write fills them on the environment's committer
 * thread. The outcome is what the waiting form would have answered, with
 * the outs as it leaves them (*created false unless STORE_OK). */
typedef struct {
    /* the store's */
    payment_store_shared_t *shared;
    int kind;
    payment_t want;                              /* begin: the payment to store, complete */
    char id[PAYMENT_ID_MAX + 1];                 /* the payment (all but refund end) */
    char key[PAYMENT_KEY_MAX + 1];               /* a refund's */
    payment_event_type_t event;                  /* apply */
    int64_t amount_cents;                        /* apply: the event's; refund begin: 0 the rest */
    char gateway_id[PAYMENT_GATEWAY_ID_MAX + 1]; /* apply: the event's; refund end: refund_id */
    char reason[PAYMENT_REASON_MAX + 1];         /* apply, fail */
    bool done;                                   /* refund end */
    bool has_then;                               /* apply: a second event follows */
    payment_event_type_t then_event;
    int64_t then_amount_cents;
    char then_gateway_id[PAYMENT_GATEWAY_ID_MAX + 1];
    char then_reason[PAYMENT_REASON_MAX + 1];
    payment_t *out;       /* the caller's */
    refund_t *refund_out; /* the caller's (refunds) */
    bool *created;        /* the caller's, or NULL */
} payment_write_t;

/* Prepare the writes of payment_store_begin, payment_store_apply,
 * payment_store_refund_begin and payment_store_refund_end, with the same
 * arguments; false, and nothing to run, when they are bad (the waiting
 * form's STORE_ERROR; *created is false then). begin sets the new
 * payment's id (when ""), status, sums and times here. */
bool payment_write_begin(payment_write_t *w, payment_store_t *self, const payment_t *payment,
                         payment_t *out, bool *created);
bool payment_write_apply(payment_write_t *w, payment_store_t *self, const char *id,
                         const payment_event_t *event, payment_t *out);
/* Two events in one write, each checked on the state the first left and
 * each with its log entry; either refused leaves both undone. A charge
 * writes its authorization with its capture (or its failure) so: one
 * disk flush instead of two, and a crash between finds the payment
 * pending, which a retry or a settle takes over by looking the
 * authorization up at the gateway (actors/payments/charge.c). */
bool payment_write_apply_two(payment_write_t *w, payment_store_t *self, const char *id,
                             const payment_event_t *event, const payment_event_t *then,
                             payment_t *out);
bool payment_write_refund_begin(payment_write_t *w, payment_store_t *self, const char *payment_id,
                                const char *key, int64_t amount_cents, refund_t *out,
                                payment_t *payment_out, bool *created);
bool payment_write_refund_end(payment_write_t *w, payment_store_t *self, const char *key, bool done,
                              const char *refund_id, refund_t *out, payment_t *payment_out);
/* The kv write function of a prepared write; arg is the payment_write_t. */
int payment_write_txn(MDB_txn *txn, void *arg);
/* The outcome, from whether the transaction committed and the function's
 * result (when it did not: the transaction's error, call_answer_t's
 * result): STORE_ERROR (logged) when it did not commit, STORE_NO_SPACE
 * when that was for want of room (kv_no_space). */
store_status_t payment_write_end(const payment_write_t *w, bool committed, int result);
/* The environment the writes go to. */
kv_t *payment_store_kv(payment_store_t *self);

/* ---- reads ---- */

store_status_t payment_store_get(payment_store_t *self, const char *id, payment_t *out);
store_status_t payment_store_by_order(payment_store_t *self, const char *order_id, payment_t *out);

typedef struct {
    const char *order_id; /* NULL: any */
    bool has_status;
    payment_status_t status;
    int64_t from_ms, to_ms; /* created_at in [from, to); 0: unbounded */
} payment_filter_t;

/* Payments matching filter, newest first: up to limit (1..100) after
 * cursor (a payment id from a previous page's next_cursor, or "" for the
 * first page) into out[]; *n set; next_cursor gets the id to continue from,
 * or "" when there are no more. */
store_status_t payment_store_list(payment_store_t *self, const payment_filter_t *filter,
                                  const char *cursor, int limit, payment_t *out, int *n,
                                  char next_cursor[PAYMENT_ID_MAX + 1]);

/* Payments that stayed pending (a crash between begin and
 * the gateway's answer), oldest first, up to max; for recovery. */
store_status_t payment_store_pending(payment_store_t *self, payment_t *out, int max, int *n);

/* A payment refunded in full whose order has not heard of it yet. The
 * refund end that brings a payment to refunded records it in the same
 * write; the service's follow-up (actors/payments/followup.h) tells the
 * order (order.payment_refunded) and then forgets it with
 * payment_store_told. So a crash between the refund and the telling
 * leaves the telling to do, never a paid order whose payment is
 * refunded. */
typedef struct {
    char payment_id[PAYMENT_ID_MAX + 1];
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
} payment_to_tell_t;

/* Up to max of them, by payment id, strictly after `after` ("" for the
 * first) into out[]; *n set. */
store_status_t payment_store_to_tell(payment_store_t *self, const char *after, int max,
                                     payment_to_tell_t *out, int *n);
/* Forgets one (its order has heard): one write, waited for; a payment
 * not among them is STORE_OK too. */
store_status_t payment_store_told(payment_store_t *self, const char *payment_id);

/* The refund of key, as stored (STORE_NOT_FOUND: none). */
store_status_t payment_store_refund_get(payment_store_t *self, const char *key, refund_t *out);
/* Refunds begun and not ended (a request gone with a crash, or one still
 * running: created_at_ms tells), by key, strictly after `after` ("" for
 * the first), up to max into out[]; *n set. Refunds begun before this
 * index was added to a data directory are not among them. The service's
 * follow-up has each that outlived its budget taken over
 * (refund.recover), as the same key asked again would. */
store_status_t payment_store_refunds_pending(payment_store_t *self, const char *after, int max,
                                             refund_t *out, int *n);

/* ---- the log ---- */

typedef enum {
    LOG_AUTHORIZE,
    LOG_CAPTURE,
    LOG_REFUND,
    LOG_VOID,
    LOG_FAIL,
} log_type_t;

/* "authorize", "capture", "refund", "void", "fail". */
const char *payment_log_type_name(log_type_t type);

typedef struct {
    uint64_t seq;
    log_type_t type;
    char payment_id[PAYMENT_ID_MAX + 1];
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
    int64_t amount_cents;
    char currency[PAYMENT_CURRENCY_MAX + 1];
    int64_t at_ms;
    const void *details; /* a msgpack map, into the store's read; valid in the callback only */
    size_t details_len;
    char prev_hash[PAYMENT_HASH_HEX + 1];
    char hash[PAYMENT_HASH_HEX + 1];
} log_entry_t;

/* Calls fn for each entry from seq `from` (1: all) in order, or, with
 * payment_id set, each entry of that payment (oldest first); stops when fn
 * returns non-zero. */
typedef int(log_entry_fn)(const log_entry_t *entry, void *arg);
store_status_t payment_log_each(payment_store_t *self, uint64_t from, const char *payment_id,
                                log_entry_fn *fn, void *arg);

typedef struct {
    bool ok;
    uint64_t entries;                /* entries checked */
    char head[PAYMENT_HASH_HEX + 1]; /* the last entry's hash ("" when empty) */
    uint64_t anchored_seq;           /* the newest signed head's seq (0: none) */
    uint64_t bad_seq;                /* when !ok: the first entry found wrong (or the
                                        seq the chain should reach) */
    char problem[160];               /* when !ok: what is wrong, in words */
} log_verify_t;

/* Re-checks the whole log: seq without gaps from 1, every prev_hash and
 * hash, the sums per payment (captured <= authorized, refunded <=
 * captured), every stored payment against its entries, and the newest
 * signed head (signature good, its entry present with its hash, nothing
 * missing before it). expected_head (64 hex, or NULL): a head kept
 * elsewhere that must be an entry's hash in the chain. STORE_OK with
 * out->ok false for a log that fails; an error status only when it
 * cannot be read. */
store_status_t payment_log_verify(payment_store_t *self, const char *expected_head,
                                  log_verify_t *out);

/* ---- the check of the books (ops.check) ---- */

#define PAYMENT_STATUS_COUNT 7

typedef struct {
    int64_t payments;
    int64_t by_status[PAYMENT_STATUS_COUNT]; /* indexed by payment_status_t */
    int64_t captured_cents, refunded_cents;  /* over all payments, whatever the currency */
    uint64_t log_entries;
    int64_t problems; /* all found, also those past the callback's limit */
    /* what a crash left for the follow-up (not problems: it finishes them) */
    int64_t refunds_pending; /* refunds begun and not ended */
    int64_t to_tell;         /* refunded in full, their orders not told yet */
} payment_counts_t;

/* One problem: check names what was checked ("amounts", "status",
 * "log_sums", "index", "record", "log"), id the payment ("" for the log
 * as a whole), message says what is wrong in words. */
typedef void(payment_problem_fn)(const char *check, const char *id, const char *message, void *arg);

/* Checks the books in one read snapshot: per payment, 0 <= refunded <=
 * captured <= amount ("amounts"); the status agrees with the amounts
 * ("status": pending nothing authorized or captured, authorized nothing
 * captured, captured all of the amount and nothing refunded,
 * partially_refunded some of it refunded, refunded all of it, failed and
 * voided nothing captured); captured, refunded and authorized equal what
 * its log entries sum to ("log_sums"); by_order and by_status name it
 * ("index"); and the log verifies as payment_log_verify does ("log").
 * fn is called for every problem (so the caller bounds what it keeps);
 * counts are filled. STORE_OK whatever was found; an error status only
 * when the store cannot be read. */
store_status_t payment_store_check(payment_store_t *self, payment_problem_fn *fn, void *arg,
                                   payment_counts_t *counts);

/* Signs and keeps the current head now (also done every
 * PAYMENT_LOG_ANCHOR_EVERY entries). */
store_status_t payment_store_anchor(payment_store_t *self);

#endif

/*  gateway_sim_ops.c - the simulated gateway's operations (gateway_sim_ops.h).
 *
 *  The rules. authorize checks the card (digits, Luhn, a month 1..12 and
 *  a four-digit year not past the end of that month in UTC, a CVC of 3 or
 *  4 digits: otherwise declined invalid_card or expired_card), then the
 *  contract's test cards (API.md): 4242424242424242 approved,
 *  4000000000000002 card_declined, 4000000000009995 insufficient_funds,
 *  4000000000000119 gateway_error every time, nothing recorded; any other
 *  valid card is approved. A wrongly typed or missing argument is
 *  invalid_argument instead, listing the fields (card.number, ...): that
 *  request can never succeed, and is no decline. capture takes at most
 *  the authorized amount, once, and not after a void; void only before a
 *  capture; refunds add up to at most what was captured. Breaking a rule
 *  is `conflict`; an unknown auth_id or capture_id is `not_found`.
 *
 *  Idempotency. Every operation that changes something first reads its
 *  key's record (gateway_record.h). Found with the same op and arguments
 *  (amount, currency, auth or capture id: never the card), its stored
 *  result is answered and nothing is done; found with others, `conflict`.
 *  A result (approved, declined, captured, voided, refunded) is stored
 *  under the key in the same transaction as the money it moved; an error
 *  (invalid argument, conflict, not found, gateway_error) stores nothing,
 *  so the key stays free for a later try.
 *
 *  Ids (auth_, cap_, ref_ and 24 hex digits) are libsodium random bytes:
 *  unique across restarts, which a seeded PRNG would not be; they are
 *  put with MDB_NOOVERWRITE all the same.
 *
 *  Card data. The number and CVC are read from the request, checked and
 *  forgotten: what is stored is the brand and the last four digits. No
 *  log line here prints a request or its arguments.
 */
#include "actors/payments/gateway_sim_ops.h"
#include "actors/payments/gateway_record.h"

#include <czmq.h>
#include <errno.h>
#include <sodium.h>
#include <string.h>
#include <time.h>

#define SIM_RECORD_MAX 4096
#define SIM_AMOUNT_MAX 100000000000LL /* a billion in major units */
#define SIM_NUMBER_MAX 64             /* longer is not a card at all */
#define SIM_CVC_MAX 16
#define SIM_ID_RANDOM_BYTES 12

struct gateway_sim_ops_t {
    kv_t *kv;
    mpout_t scratch; /* a record being encoded */
    mpout_t result;  /* an operation's result, stored and answered */
};

typedef bool s_op_fn(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call);

gateway_sim_ops_t *gateway_sim_ops_new(kv_t *kv)
{
    gateway_sim_ops_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->kv = kv;
    mpout_init(&self->scratch, SIM_RECORD_MAX);
    mpout_init(&self->result, SIM_RECORD_MAX);
    return self;
}

void gateway_sim_ops_destroy(gateway_sim_ops_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mpout_destroy(&(*self_p)->scratch);
    mpout_destroy(&(*self_p)->result);
    free(*self_p);
    *self_p = NULL;
}

/* ---- small helpers ---- */

static void s_new_id(const char *prefix, char out[GATEWAY_ID_MAX + 1])
{
    unsigned char bytes[SIM_ID_RANDOM_BYTES];
    char hex[SIM_ID_RANDOM_BYTES * 2 + 1];
    randombytes_buf(bytes, sizeof bytes);
    sodium_bin2hex(hex, sizeof hex, bytes, sizeof bytes);
    snprintf(out, GATEWAY_ID_MAX + 1, "%s%s", prefix, hex);
}

/* The record could not be read or written: the request's nested
 * transaction is undone, so nothing was done, which is what
 * gateway_error promises. */
bool gateway_sim_store_failed(call_t *call, const char *what, int rc)
{
    zsys_error("gateway(sim): %s: %s", what, mdb_strerror(rc));
    call_fail(call, ERR_GATEWAY_ERROR, "the gateway could not keep its record; nothing was done");
    return false;
}

static msgpack_packer s_result_packer(gateway_sim_ops_t *self)
{
    mpout_clear(&self->result);
    msgpack_packer pk;
    mpout_packer(&self->result, &pk);
    return pk;
}

/* ---- arguments ---- */

/* A required string argument of 1..max bytes without NUL, copied into
 * out[max + 1]. */
static bool s_arg_name(call_t *call, const char *name, size_t max, char *out)
{
    const char *s;
    size_t len;
    if (!call_arg_str(call, name, ARG_REQUIRED, max, &s, &len))
        return false;
    if (len == 0 || memchr(s, '\0', len)) {
        call_arg_invalid(call, name, len ? "must not contain NUL" : "must not be empty");
        return false;
    }
    call_copy_text(out, max + 1, s, len);
    return true;
}

static bool s_arg_amount(call_t *call, int64_t *out)
{
    return call_arg_int(call, "amount_cents", ARG_REQUIRED, 1, SIM_AMOUNT_MAX, out);
}

static bool s_arg_currency(call_t *call, char out[GATEWAY_CURRENCY_MAX + 1])
{
    const char *s;
    size_t len;
    if (!call_arg_str(call, "currency", ARG_REQUIRED, GATEWAY_CURRENCY_MAX, &s, &len))
        return false;
    bool upper = len == GATEWAY_CURRENCY_MAX;
    for (size_t i = 0; i < len && upper; i++)
        upper = s[i] >= 'A' && s[i] <= 'Z';
    if (!upper) {
        call_arg_invalid(call, "currency", "must be three capital letters (ISO 4217)");
        return false;
    }
    call_copy_text(out, GATEWAY_CURRENCY_MAX + 1, s, len);
    return true;
}

/* What authorize reads of card {number, exp_month, exp_year, cvc}. The
 * strings point into the request. */
typedef struct {
    const char *number, *cvc;
    size_t number_len, cvc_len;
    int64_t exp_month, exp_year;
} s_card_t;

/* card.<name>: present and not nil, or the problem recorded under label. */
static const msgpack_object *s_card_field(call_t *call, const msgpack_object *card,
                                          const char *name, const char *label)
{
    const msgpack_object *v = mp_map_get(card, name);
    if (!v || v->type == MSGPACK_OBJECT_NIL) {
        call_arg_invalid(call, label, "is required");
        return NULL;
    }
    return v;
}

static bool s_card_str(call_t *call, const msgpack_object *card, const char *name,
                       const char *label, size_t max, const char **out, size_t *out_len)
{
    const msgpack_object *v = s_card_field(call, card, name, label);
    if (!v)
        return false;
    if (v->type != MSGPACK_OBJECT_STR) {
        call_arg_invalid(call, label, "must be a string");
        return false;
    }
    if (v->via.str.size > max) {
        call_arg_invalid(call, label, "is too long");
        return false;
    }
    *out = v->via.str.ptr;
    *out_len = v->via.str.size;
    return true;
}

/* Any int64; whether it makes sense for a card is the card check's. */
static bool s_card_int(call_t *call, const msgpack_object *card, const char *name,
                       const char *label, int64_t *out)
{
    const msgpack_object *v = s_card_field(call, card, name, label);
    if (!v)
        return false;
    if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *out = v->via.i64;
        return true;
    }
    if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        call_arg_invalid(call, label, "must be an integer");
        return false;
    }
    if (v->via.u64 > (uint64_t)INT64_MAX) {
        call_arg_invalid(call, label, "is out of range");
        return false;
    }
    *out = (int64_t)v->via.u64;
    return true;
}

static void s_arg_card(call_t *call, s_card_t *card)
{
    const msgpack_object *map;
    if (!call_arg_map(call, "card", ARG_REQUIRED, &map))
        return;
    s_card_str(call, map, "number", "card.number", SIM_NUMBER_MAX, &card->number,
               &card->number_len);
    s_card_int(call, map, "exp_month", "card.exp_month", &card->exp_month);
    s_card_int(call, map, "exp_year", "card.exp_year", &card->exp_year);
    s_card_str(call, map, "cvc", "card.cvc", SIM_CVC_MAX, &card->cvc, &card->cvc_len);
}

/* ---- card checks ---- */

static bool s_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* NULL for a card that may be charged, else the decline's reason. */
static const char *s_card_refusal(const s_card_t *card)
{
    if (!gateway_luhn_valid(card->number, card->number_len) || card->exp_month < 1 ||
        card->exp_month > 12 || card->exp_year < 1000 || card->exp_year > 9999 ||
        card->cvc_len < 3 || card->cvc_len > 4 || !s_digits(card->cvc, card->cvc_len))
        return "invalid_card";
    /* A card is good to the end of its month, UTC. */
    time_t now = time(NULL);
    struct tm utc;
    if (!gmtime_r(&now, &utc))
        return "expired_card"; /* no clock: refuse rather than guess */
    int64_t this_month = (int64_t)(utc.tm_year + 1900) * 12 + utc.tm_mon;
    int64_t card_month = card->exp_year * 12 + (card->exp_month - 1);
    return card_month < this_month ? "expired_card" : NULL;
}

static bool s_number_is(const s_card_t *card, const char *number)
{
    return card->number_len == strlen(number) &&
           memcmp(card->number, number, card->number_len) == 0;
}

static bool s_prefix_in(const char *number, size_t digits, int low, int high)
{
    int value = 0;
    for (size_t i = 0; i < digits; i++)
        value = value * 10 + (number[i] - '0');
    return value >= low && value <= high;
}

/* Brand names as the payments store keeps them. */
static const char *s_brand(const s_card_t *card)
{
    const char *n = card->number; /* digits only, 12 or more: checked */
    if (n[0] == '4')
        return "visa";
    if (s_prefix_in(n, 2, 34, 34) || s_prefix_in(n, 2, 37, 37))
        return "amex";
    if (s_prefix_in(n, 2, 51, 55) || s_prefix_in(n, 4, 2221, 2720))
        return "mastercard";
    return "card";
}

/* ---- idempotency ---- */

/* Looks key up: 0 when it is new; 1 when it was answered from the key's
 * record (its stored result, or conflict for other arguments); -1 when
 * the record could not be read (answered gateway_error). */
static int s_replay(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call, const char *key,
                    const gateway_key_record_t *want)
{
    gateway_key_record_t had;
    int rc = gateway_record_get(txn, kv_dbi(self->kv, GATEWAY_DB_KEYS), key, &gateway_key_table,
                                &had, sizeof had);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0) {
        gateway_sim_store_failed(call, "reading a key", rc);
        return -1;
    }
    if (had.op != want->op || had.amount_cents != want->amount_cents ||
        strcmp(had.currency, want->currency) != 0 || strcmp(had.ref, want->ref) != 0) {
        call_fail(call, ERR_CONFLICT,
                  "the key was used already, for another operation or other arguments");
        return 1;
    }
    mp_pack_raw(call_reply(call), had.result.ptr, had.result.len);
    return 1;
}

/* Stores what self->result holds under key (record gives the op and
 * arguments) and answers it. */
static bool s_finish(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call, const char *key,
                     gateway_key_record_t *record)
{
    if (self->result.failed)
        return gateway_sim_store_failed(call, "packing a result", ENOMEM);
    record->result = (record_view_t){.ptr = (const uint8_t *)self->result.buf.data,
                                     .len = self->result.buf.size};
    record->at_ms = call_now_ms();
    int rc = gateway_record_put(txn, kv_dbi(self->kv, GATEWAY_DB_KEYS), key, &gateway_key_table,
                                record, MDB_NOOVERWRITE, &self->scratch);
    if (rc != 0)
        return gateway_sim_store_failed(call, "writing a key", rc);
    mp_pack_raw(call_reply(call), self->result.buf.data, self->result.buf.size);
    return true;
}

/* ---- operations: each runs in its request's nested transaction and
 * returns true to keep what it wrote ---- */

static bool s_authorize(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call)
{
    char key[GATEWAY_KEY_MAX + 1];
    gateway_key_record_t record = {.op = GATEWAY_OP_AUTHORIZE};
    s_card_t card = {0};
    s_arg_name(call, "key", GATEWAY_KEY_MAX, key);
    s_arg_amount(call, &record.amount_cents);
    s_arg_currency(call, record.currency);
    s_arg_card(call, &card);
    if (!call_args_ok(call))
        return false;
    if (s_replay(self, txn, call, key, &record) != 0)
        return false;

    const char *reason = s_card_refusal(&card);
    if (!reason && s_number_is(&card, "4000000000000002"))
        reason = "card_declined";
    else if (!reason && s_number_is(&card, "4000000000009995"))
        reason = "insufficient_funds";
    else if (!reason && s_number_is(&card, "4000000000000119")) {
        call_fail(call, ERR_GATEWAY_ERROR, "the gateway failed (test card); nothing was done");
        return false;
    }

    msgpack_packer pk = s_result_packer(self);
    msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "outcome");
    if (reason) {
        mp_pack_str(&pk, "declined");
        mp_pack_str(&pk, "reason");
        mp_pack_str(&pk, reason);
        return s_finish(self, txn, call, key, &record);
    }
    char auth_id[GATEWAY_ID_MAX + 1];
    s_new_id("auth_", auth_id);
    mp_pack_str(&pk, "approved");
    mp_pack_str(&pk, "auth_id");
    mp_pack_str(&pk, auth_id);

    int64_t now = call_now_ms();
    gateway_auth_record_t auth = {.status = GATEWAY_AUTH_AUTHORIZED,
                                  .amount_cents = record.amount_cents,
                                  .created_ms = now,
                                  .updated_ms = now};
    memcpy(auth.currency, record.currency, sizeof auth.currency);
    snprintf(auth.brand, sizeof auth.brand, "%s", s_brand(&card));
    memcpy(auth.last4, card.number + card.number_len - 4, 4);
    snprintf(auth.key, sizeof auth.key, "%s", key);
    int rc = gateway_record_put(txn, kv_dbi(self->kv, GATEWAY_DB_AUTHS), auth_id,
                                &gateway_auth_table, &auth, MDB_NOOVERWRITE, &self->scratch);
    if (rc != 0)
        return gateway_sim_store_failed(call, "writing an authorization", rc);
    return s_finish(self, txn, call, key, &record);
}

/* Reads the authorization of auth_id into *auth; false when it is not
 * there or cannot be read (answered). */
static bool s_get_auth(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call, const char *auth_id,
                       gateway_auth_record_t *auth)
{
    int rc = gateway_record_get(txn, kv_dbi(self->kv, GATEWAY_DB_AUTHS), auth_id,
                                &gateway_auth_table, auth, sizeof *auth);
    if (rc == MDB_NOTFOUND) {
        char message[GATEWAY_ID_MAX + 32];
        snprintf(message, sizeof message, "no authorization %s", auth_id);
        call_fail(call, ERR_NOT_FOUND, message);
        return false;
    }
    if (rc != 0)
        return gateway_sim_store_failed(call, "reading an authorization", rc);
    return true;
}

static bool s_capture(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call)
{
    char key[GATEWAY_KEY_MAX + 1];
    gateway_key_record_t record = {.op = GATEWAY_OP_CAPTURE};
    s_arg_name(call, "key", GATEWAY_KEY_MAX, key);
    s_arg_name(call, "auth_id", GATEWAY_ID_MAX, record.ref);
    s_arg_amount(call, &record.amount_cents);
    if (!call_args_ok(call))
        return false;
    if (s_replay(self, txn, call, key, &record) != 0)
        return false;
    gateway_auth_record_t auth;
    if (!s_get_auth(self, txn, call, record.ref, &auth))
        return false;
    if (auth.status != GATEWAY_AUTH_AUTHORIZED) {
        call_fail(call, ERR_CONFLICT,
                  auth.status == GATEWAY_AUTH_VOIDED ? "the authorization was voided"
                                                     : "the authorization was captured already");
        return false;
    }
    if (record.amount_cents > auth.amount_cents) {
        call_fail(call, ERR_CONFLICT, "amount_cents is more than was authorized");
        return false;
    }

    int64_t now = call_now_ms();
    gateway_capture_record_t capture = {
        .amount_cents = record.amount_cents, .created_ms = now, .updated_ms = now};
    memcpy(capture.auth_id, record.ref, sizeof capture.auth_id);
    memcpy(capture.currency, auth.currency, sizeof capture.currency);
    s_new_id("cap_", auth.capture_id);
    int rc = gateway_record_put(txn, kv_dbi(self->kv, GATEWAY_DB_CAPTURES), auth.capture_id,
                                &gateway_capture_table, &capture, MDB_NOOVERWRITE, &self->scratch);
    if (rc != 0)
        return gateway_sim_store_failed(call, "writing a capture", rc);
    auth.status = GATEWAY_AUTH_CAPTURED;
    auth.captured_cents = record.amount_cents;
    auth.updated_ms = now;
    rc = gateway_record_put(txn, kv_dbi(self->kv, GATEWAY_DB_AUTHS), record.ref,
                            &gateway_auth_table, &auth, 0, &self->scratch);
    if (rc != 0)
        return gateway_sim_store_failed(call, "writing an authorization", rc);

    msgpack_packer pk = s_result_packer(self);
    msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "outcome");
    mp_pack_str(&pk, "captured");
    mp_pack_str(&pk, "capture_id");
    mp_pack_str(&pk, auth.capture_id);
    return s_finish(self, txn, call, key, &record);
}

static bool s_void(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call)
{
    char key[GATEWAY_KEY_MAX + 1];
    gateway_key_record_t record = {.op = GATEWAY_OP_VOID};
    s_arg_name(call, "key", GATEWAY_KEY_MAX, key);
    s_arg_name(call, "auth_id", GATEWAY_ID_MAX, record.ref);
    if (!call_args_ok(call))
        return false;
    if (s_replay(self, txn, call, key, &record) != 0)
        return false;
    gateway_auth_record_t auth;
    if (!s_get_auth(self, txn, call, record.ref, &auth))
        return false;
    if (auth.status != GATEWAY_AUTH_AUTHORIZED) {
        call_fail(call, ERR_CONFLICT,
                  auth.status == GATEWAY_AUTH_VOIDED ? "the authorization was voided already"
                                                     : "the authorization was captured");
        return false;
    }
    auth.status = GATEWAY_AUTH_VOIDED;
    auth.updated_ms = call_now_ms();
    int rc = gateway_record_put(txn, kv_dbi(self->kv, GATEWAY_DB_AUTHS), record.ref,
                                &gateway_auth_table, &auth, 0, &self->scratch);
    if (rc != 0)
        return gateway_sim_store_failed(call, "writing an authorization", rc);

    msgpack_packer pk = s_result_packer(self);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "outcome");
    mp_pack_str(&pk, "voided");
    return s_finish(self, txn, call, key, &record);
}

static bool s_refund(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call)
{
    char key[GATEWAY_KEY_MAX + 1];
    gateway_key_record_t record = {.op = GATEWAY_OP_REFUND};
    s_arg_name(call, "key", GATEWAY_KEY_MAX, key);
    s_arg_name(call, "capture_id", GATEWAY_ID_MAX, record.ref);
    s_arg_amount(call, &record.amount_cents);
    if (!call_args_ok(call))
        return false;
    if (s_replay(self, txn, call, key, &record) != 0)
        return false;
    gateway_capture_record_t capture;
    MDB_dbi captures = kv_dbi(self->kv, GATEWAY_DB_CAPTURES);
    int rc = gateway_record_get(txn, captures, record.ref, &gateway_capture_table, &capture,
                                sizeof capture);
    if (rc == MDB_NOTFOUND) {
        char message[GATEWAY_ID_MAX + 32];
        snprintf(message, sizeof message, "no capture %s", record.ref);
        call_fail(call, ERR_NOT_FOUND, message);
        return false;
    }
    if (rc != 0)
        return gateway_sim_store_failed(call, "reading a capture", rc);
    /* Both at most SIM_AMOUNT_MAX: the sum cannot overflow. */
    if (capture.refunded_cents + record.amount_cents > capture.amount_cents) {
        call_fail(call, ERR_CONFLICT, "the refunds would be more than was captured");
        return false;
    }

    int64_t now = call_now_ms();
    gateway_refund_record_t refund = {.amount_cents = record.amount_cents, .created_ms = now};
    memcpy(refund.capture_id, record.ref, sizeof refund.capture_id);
    memcpy(refund.currency, capture.currency, sizeof refund.currency);
    char refund_id[GATEWAY_ID_MAX + 1];
    s_new_id("ref_", refund_id);
    rc = gateway_record_put(txn, kv_dbi(self->kv, GATEWAY_DB_REFUNDS), refund_id,
                            &gateway_refund_table, &refund, MDB_NOOVERWRITE, &self->scratch);
    if (rc != 0)
        return gateway_sim_store_failed(call, "writing a refund", rc);
    capture.refunded_cents += record.amount_cents;
    capture.updated_ms = now;
    rc = gateway_record_put(txn, captures, record.ref, &gateway_capture_table, &capture, 0,
                            &self->scratch);
    if (rc != 0)
        return gateway_sim_store_failed(call, "writing a capture", rc);

    msgpack_packer pk = s_result_packer(self);
    msgpack_pack_map(&pk, 2);
    mp_pack_str(&pk, "outcome");
    mp_pack_str(&pk, "refunded");
    mp_pack_str(&pk, "refund_id");
    mp_pack_str(&pk, refund_id);
    return s_finish(self, txn, call, key, &record);
}

static bool s_lookup(gateway_sim_ops_t *self, MDB_txn *txn, call_t *call)
{
    char key[GATEWAY_KEY_MAX + 1];
    s_arg_name(call, "key", GATEWAY_KEY_MAX, key);
    if (!call_args_ok(call))
        return false;
    gateway_key_record_t had;
    int rc = gateway_record_get(txn, kv_dbi(self->kv, GATEWAY_DB_KEYS), key, &gateway_key_table,
                                &had, sizeof had);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return gateway_sim_store_failed(call, "reading a key", rc);
    msgpack_packer *pk = call_reply(call);
    if (rc == MDB_NOTFOUND) {
        msgpack_pack_map(pk, 1);
        mp_pack_str(pk, "found");
        msgpack_pack_false(pk);
        return false; /* nothing written either way */
    }
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "found");
    msgpack_pack_true(pk);
    mp_pack_str(pk, "op");
    mp_pack_str(pk, gateway_op_names[had.op]);
    mp_pack_str(pk, "result");
    mp_pack_raw(pk, had.result.ptr, had.result.len);
    return false;
}

static const struct {
    const char *op;
    s_op_fn *fn;
    bool changes; /* subject to simulated faults */
} s_ops[] = {
    {"authorize", s_authorize, true}, {"capture", s_capture, true}, {"void", s_void, true},
    {"refund", s_refund, true},       {"lookup", s_lookup, false},
};

int gateway_sim_op_find(const char *op, size_t len)
{
    for (size_t i = 0; i < sizeof s_ops / sizeof s_ops[0]; i++)
        if (strlen(s_ops[i].op) == len && memcmp(s_ops[i].op, op, len) == 0)
            return (int)i;
    return -1;
}

bool gateway_sim_op_changes(int op)
{
    return op >= 0 && (size_t)op < sizeof s_ops / sizeof s_ops[0] && s_ops[op].changes;
}

bool gateway_sim_ops_run(gateway_sim_ops_t *self, int op, MDB_txn *txn, call_t *call)
{
    if (op < 0 || (size_t)op >= sizeof s_ops / sizeof s_ops[0]) {
        call_fail(call, ERR_INTERNAL, "no such gateway operation");
        return false;
    }
    return s_ops[op].fn(self, txn, call);
}

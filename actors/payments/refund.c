/*  refund.c - payment.refund: full or partial, once per key, never past
 *  what was captured.
 *
 *      begin (store: under the caller's key, checks the sums with the
 *             refunds in progress and reserves the amount, in one write)
 *        -> refund (gateway, key "<payment>:refund:<hash of the caller's key>")
 *             refunded -> store: done (refunded += amount; log "refund")
 *             failed   -> store: failed (the reservation is given back;
 *                         log "fail"), 502 gateway_error
 *
 *  An admin's refund (not the orders service's own, which a cancel
 *  makes) that brings the payment to refunded makes its order refunded
 *  before the answer: order.payment_refunded, an ask of orders, which a
 *  paid, shipped or delivered order takes and any other leaves as it is.
 *  When orders does not answer, the refund stays done and the answer is
 *  unavailable: the same key asked again answers the refund and asks
 *  orders again. Whatever happens to this request after the refund's end
 *  write (orders silent, a crash), that write recorded the order as one
 *  to tell, and the service's follow-up (followup.h) tells it within a
 *  second or so: no paid order keeps a refunded payment.
 *
 *  The key is the caller's Idempotency-Key, scoped to the caller (the
 *  orders service, or the admin's user id), hashed to a fixed length so
 *  that the contract's 255 characters fit every key the gateway and the
 *  store keep. The same key again answers exactly what it answered first
 *  (the store keeps the payment as that refund left it), marked replayed
 *  (Idempotent-Replayed: true at the bridge), and does nothing more; with another amount or payment
 * it is 409 idempotency_key_reused; while the first is still running, 409 idempotency_key_in_use
 * with retry_after 1 (the bridge's Retry-After). Without a key, every request is a refund of its
 * own.
 *
 *  Tries and timeouts of the gateway step go as in charge.c: gateway_error
 *  is tried again (at most gateway_tries in all), no answer is looked up
 *  first, and when the budget runs out the refund stays pending for a
 *  retry with the same key to finish.
 *
 *  Both store writes (begin, end) are call_writes, as a charge's are: the
 *  prepared write and the refund and payment it fills live in the
 *  request's context (refund_ctx_t), the worker serves others meanwhile,
 *  and the step after each runs in its resume once it is on disk.
 */
#include "actors/payments/payments_impl.h"

#include <sodium.h>

#define AMOUNT_MAX 100000000000LL
#define KEY_MAX 255 /* API.md: 1 to 255 visible ASCII characters */
#define BACKOFF_MS 50
#define STORE_KEY_HEX 32 /* the store's key: a 16-byte hash, in hex */

typedef struct {
    char payment_id[PAYMENT_ID_MAX + 1];
    char store_key[STORE_KEY_HEX + 1];
    char capture_id[PAYMENT_GATEWAY_ID_MAX + 1];
    int64_t amount_cents;
    int64_t started_ms;
    int tries;
    bool looking_up;
    /* The store write out (call_write) and what it fills: alive until
     * its resume, as the context is. */
    payment_write_t write;
    refund_t refund;
    payment_t payment;
    bool created; /* begin: this request made the refund */
    /* An admin's refund (not the orders service's own, for a cancel) that
     * refunds the payment in full makes its order refunded: orders hears
     * of it before the answer (s_answer). */
    bool tell_orders;
    bool replayed;
    payment_t answer; /* the payment the answer shows */
} refund_ctx_t;

static void s_on_gateway(call_t *call, void *state, const call_answer_t *answer);

/* The store's key: 32 hex digits of a hash of scope and key. */
static void s_store_key(const char *scope, const char *key, size_t key_len,
                        char out[STORE_KEY_HEX + 1])
{
    unsigned char digest[16];
    crypto_generichash_state h;
    crypto_generichash_init(&h, NULL, 0, sizeof digest);
    crypto_generichash_update(&h, (const unsigned char *)scope, strlen(scope) + 1);
    crypto_generichash_update(&h, (const unsigned char *)key, key_len);
    crypto_generichash_final(&h, digest, sizeof digest);
    sodium_bin2hex(out, STORE_KEY_HEX + 1, digest, sizeof digest);
}

static void s_ask(call_t *call, payments_state_t *self, refund_ctx_t *r)
{
    char key[GATEWAY_KEY_MAX + 1];
    snprintf(key, sizeof key, "%s:refund:%s", r->payment_id, r->store_key);
    msgpack_packer *pk = call_ask_args(call);
    int timeout = payments_ask_timeout(self, r->started_ms);
    if (r->looking_up) {
        msgpack_pack_map(pk, 1);
        mp_pack_str(pk, "key");
        mp_pack_str(pk, key);
        call_ask_at(call, self->shared->gateway_endpoint, "lookup", timeout, s_on_gateway);
        return;
    }
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "key");
    mp_pack_str(pk, key);
    mp_pack_str(pk, "capture_id");
    mp_pack_str(pk, r->capture_id);
    mp_pack_str(pk, "amount_cents");
    msgpack_pack_int64(pk, r->amount_cents);
    call_ask_at(call, self->shared->gateway_endpoint, "refund", timeout, s_on_gateway);
}

static void s_retry(call_t *call, void *state, const call_answer_t *answer)
{
    (void)answer;
    s_ask(call, state, call_context(call, sizeof(refund_ctx_t)));
}

static void s_reply_payment(call_t *call, const refund_ctx_t *r)
{
    msgpack_packer *pk = r->replayed ? call_reply_replayed(call) : call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "payment");
    payments_pack_payment(pk, &r->answer);
}

/* orders' answer to order.payment_refunded. */
static void s_on_told(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    refund_ctx_t *r = call_context(call, sizeof(refund_ctx_t));
    if (!answer->ok && (answer->code == ERR_UNAVAILABLE || answer->code == ERR_TIMEOUT)) {
        call_fail(call, ERR_UNAVAILABLE,
                  "the refund is done, but its order is not marked refunded yet: ask again "
                  "with the same Idempotency-Key");
        return;
    }
    if (!answer->ok) /* not paid, shipped or delivered: the order goes its own way */
        zsys_warning("payments: refund of %s: order %s not marked refunded: %s", r->payment_id,
                     r->answer.order_id, answer->message ? answer->message : "");
    s_reply_payment(call, r);
}

/* Answers a refund that is done (r->answer set): first, when the payment
 * is refunded in full by an admin, its order becomes refunded. */
static void s_answer(call_t *call, refund_ctx_t *r)
{
    if (!r->tell_orders || r->answer.status != PAYMENT_REFUNDED) {
        s_reply_payment(call, r);
        return;
    }
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, r->answer.order_id);
    call_ask(call, "orders", "order.payment_refunded", 2000, s_on_told);
}

/* The refund's end is on disk: answers it. */
static void s_on_ended(call_t *call, void *state, const call_answer_t *answer)
{
    (void)state;
    refund_ctx_t *r = call_context(call, sizeof(refund_ctx_t));
    store_status_t st = payment_write_end(&r->write, answer->ok, answer->result);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "refund");
        return;
    }
    if (r->refund.state == REFUND_DONE) {
        r->answer = r->payment;
        s_answer(call, r);
    } else
        call_fail(call, ERR_GATEWAY_ERROR, "the payment gateway failed; nothing was refunded");
}

/* Ends the refund in the store; s_on_ended answers once it is on disk. */
static void s_end(call_t *call, payments_state_t *self, refund_ctx_t *r, bool done,
                  const char *refund_id)
{
    if (!payment_write_refund_end(&r->write, self->store, r->store_key, done, refund_id, &r->refund,
                                  &r->payment)) {
        payments_fail_store(call, STORE_ERROR, "refund"); /* payment_store_refund_end's */
        return;
    }
    call_write(call, payment_store_kv(self->store), payment_write_txn, &r->write, s_on_ended);
}

static void s_try_again(call_t *call, payments_state_t *self, refund_ctx_t *r)
{
    r->tries++;
    int pause = BACKOFF_MS << (r->tries - 1);
    if (r->tries >= self->shared->settings.gateway_tries) {
        s_end(call, self, r, false, NULL);
        return;
    }
    if (payments_budget_left(self, r->started_ms) <= pause + 1) {
        call_fail(call, ERR_TIMEOUT,
                  "the gateway did not answer in time; retry with the same Idempotency-Key");
        return;
    }
    call_after(call, pause, s_retry);
}

static void s_on_result(call_t *call, payments_state_t *self, refund_ctx_t *r,
                        const msgpack_object *data)
{
    const msgpack_object *id = mp_map_get(data, "refund_id");
    char refund_id[PAYMENT_GATEWAY_ID_MAX + 1] = "";
    if (!mp_str_eq(mp_map_get(data, "outcome"), "refunded") || !id ||
        id->type != MSGPACK_OBJECT_STR) {
        call_fail(call, ERR_GATEWAY_ERROR, "the gateway answered something unexpected");
        return;
    }
    call_copy_text(refund_id, sizeof refund_id, id->via.str.ptr, id->via.str.size);
    s_end(call, self, r, true, refund_id);
}

static void s_on_gateway(call_t *call, void *state, const call_answer_t *answer)
{
    payments_state_t *self = state;
    refund_ctx_t *r = call_context(call, sizeof(refund_ctx_t));
    if (r->looking_up) {
        r->looking_up = false;
        const msgpack_object *found = answer->ok ? mp_map_get(answer->data, "found") : NULL;
        const msgpack_object *result = answer->ok ? mp_map_get(answer->data, "result") : NULL;
        if (found && found->type == MSGPACK_OBJECT_BOOLEAN && found->via.boolean && result &&
            result->type == MSGPACK_OBJECT_MAP) {
            s_on_result(call, self, r, result);
            return;
        }
        s_try_again(call, self, r);
        return;
    }
    if (answer->ok) {
        s_on_result(call, self, r, answer->data);
        return;
    }
    if (answer->code == ERR_TIMEOUT || answer->code == ERR_UNAVAILABLE) {
        if (payments_budget_left(self, r->started_ms) <= 1) {
            call_fail(call, ERR_TIMEOUT,
                      "the gateway did not answer in time; retry with the same Idempotency-Key");
            return;
        }
        r->looking_up = true;
        s_ask(call, self, r);
        return;
    }
    if (answer->code == ERR_GATEWAY_ERROR) {
        s_try_again(call, self, r);
        return;
    }
    zsys_warning("payments: the gateway refused a refund of %s: %s", r->payment_id,
                 answer->message);
    s_end(call, self, r, false, NULL);
}

/* The refund's begin is on disk (or refused): asks the gateway, or
 * answers what the key already came to. */
static void s_on_begun(call_t *call, void *state, const call_answer_t *answer)
{
    payments_state_t *self = state;
    refund_ctx_t *r = call_context(call, sizeof(refund_ctx_t));
    store_status_t st = payment_write_end(&r->write, answer->ok, answer->result);
    const refund_t *refund = &r->refund;
    payment_t p = r->payment;
    if (st == STORE_EXISTS) {
        call_fail(call, ERR_IDEMPOTENCY_KEY_REUSED,
                  "this Idempotency-Key was used for another refund");
        return;
    }
    if (st == STORE_CONFLICT) {
        call_fail(call, ERR_CONFLICT,
                  p.status == PAYMENT_CAPTURED || p.status == PAYMENT_PARTIALLY_REFUNDED
                      ? "the refunded total would pass the captured amount"
                      : "only a captured payment can be refunded");
        return;
    }
    if (st != STORE_OK) {
        payments_fail_store(call, st, "payment");
        return;
    }
    r->amount_cents = refund->amount_cents;
    snprintf(r->capture_id, sizeof r->capture_id, "%s", p.capture_id);
    if (!r->created) {
        if (refund->state == REFUND_DONE) {
            /* the first answer again: the payment as that refund left it */
            p.status = refund->status_after;
            p.captured_cents = refund->captured_after_cents;
            p.refunded_cents = refund->refunded_after_cents;
            p.updated_at_ms = refund->updated_after_ms;
            r->answer = p;
            r->replayed = true;
            s_answer(call, r);
        } else if (refund->state == REFUND_FAILED)
            call_fail(call, ERR_GATEWAY_ERROR, "the payment gateway failed; nothing was refunded");
        else if (call_now_ms() - refund->created_at_ms > self->shared->settings.budget_ms) {
            /* Left pending by a request that is gone (a crash, or its
             * budget ran out): take it over, asking the gateway first. */
            r->looking_up = true;
            s_ask(call, self, r);
        } else {
            mpout_t details;
            mpout_init(&details, 64);
            msgpack_packer pk;
            mpout_packer(&details, &pk);
            msgpack_pack_map(&pk, 1);
            mp_pack_str(&pk, "retry_after");
            msgpack_pack_int(&pk, 1);
            call_fail_packed(call, ERR_IDEMPOTENCY_KEY_IN_USE,
                             "a refund with this Idempotency-Key is still running", &details);
            mpout_destroy(&details);
        }
        return;
    }
    s_ask(call, self, r);
}

void payments_refund(call_t *call, void *state)
{
    payments_state_t *self = state;
    char id[PAYMENT_ID_MAX + 1];
    const char *key = NULL;
    size_t key_len = 0;
    int64_t amount = 0;
    call_arg_text(call, "id", ARG_REQUIRED, PAYMENT_ID_MAX, id, sizeof id);
    call_arg_int(call, "amount_cents", ARG_OPTIONAL, 1, AMOUNT_MAX, &amount);
    if (call_arg_str(call, "idempotency_key", ARG_OPTIONAL, KEY_MAX, &key, &key_len)) {
        bool visible = key_len > 0;
        for (size_t i = 0; i < key_len; i++)
            visible = visible && key[i] > 0x20 && key[i] < 0x7f;
        if (!visible)
            call_arg_invalid(call, "idempotency_key", "must be 1 to 255 visible ASCII characters");
    }
    char scope[AUTH_SUB_MAX + 8];
    if (!call_args_ok(call) || !payments_caller_allowed_as(self, call, scope, sizeof scope))
        return;

    refund_ctx_t *r = call_context(call, sizeof(refund_ctx_t));
    if (!r) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    snprintf(r->payment_id, sizeof r->payment_id, "%s", id);
    r->started_ms = zclock_mono();
    r->tell_orders = !streq(scope, "orders");
    if (key)
        s_store_key(scope, key, key_len, r->store_key);
    else {
        unsigned char random[16];
        randombytes_buf(random, sizeof random);
        sodium_bin2hex(r->store_key, sizeof r->store_key, random, sizeof random);
    }

    if (!payment_write_refund_begin(&r->write, self->store, id, r->store_key, amount, &r->refund,
                                    &r->payment, &r->created)) {
        payments_fail_store(call, STORE_ERROR, "payment"); /* payment_store_refund_begin's */
        return;
    }
    call_write(call, payment_store_kv(self->store), payment_write_txn, &r->write, s_on_begun);
}

void payments_refund_recover(call_t *call, void *state)
{
    payments_state_t *self = state;
    if (!streq(call_caller(call), "payments")) {
        call_fail(call, ERR_FORBIDDEN, "refund.recover is the payments service's own");
        return;
    }
    char key[PAYMENT_KEY_MAX + 1];
    call_arg_text(call, "key", ARG_REQUIRED, PAYMENT_KEY_MAX, key, sizeof key);
    if (call_args_ok(call) && strlen(key) != STORE_KEY_HEX)
        call_arg_invalid(call, "key", "must be a refund's key in the store (32 hex digits)");
    if (!call_args_ok(call))
        return;
    refund_ctx_t *r = call_context(call, sizeof(refund_ctx_t));
    if (!r) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    payment_t p;
    store_status_t st = payment_store_refund_get(self->store, key, &r->refund);
    if (st == STORE_OK)
        st = payment_store_get(self->store, r->refund.payment_id, &p);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "refund");
        return;
    }
    if (r->refund.state != REFUND_PENDING) { /* ended meanwhile: nothing to do */
        r->answer = p;
        s_reply_payment(call, r);
        return;
    }
    if (call_now_ms() - r->refund.created_at_ms <= self->shared->settings.budget_ms) {
        call_fail(call, ERR_UNAVAILABLE, "the refund's own request may still run");
        return;
    }
    /* As the key asked again would: the gateway asked first (it may have
     * refunded before the crash), then the refund done or failed. Its
     * order, when refunded in full, hears of it from the follow-up. */
    snprintf(r->payment_id, sizeof r->payment_id, "%s", r->refund.payment_id);
    memcpy(r->store_key, key, sizeof r->store_key); /* STORE_KEY_HEX and its NUL */
    snprintf(r->capture_id, sizeof r->capture_id, "%s", p.capture_id);
    r->amount_cents = r->refund.amount_cents;
    r->started_ms = zclock_mono();
    r->tell_orders = false;
    r->looking_up = true;
    s_ask(call, self, r);
}

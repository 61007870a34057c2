/*  charge.c - payment.charge, payment.void and payment.settle: the steps,
 *  each waiting on the gateway or on the disk without blocking the worker.
 *
 *  A charge is one payment per order: the order id is its idempotency key.
 *
 *      begin (store: the order's payment, pending, made once)
 *        -> authorize (gateway, key "<order>:<attempt>:authorize")
 *             approved -> capture (key "...:capture")
 *                           captured -> store: authorized and captured (one
 *                                       write, two log entries), answer it
 *             declined -> store: failed, answer 402 payment_declined {reason}
 *
 *  The approval is not written alone: whatever follows it (the capture,
 *  or the failure after a capture that could not be made) is written
 *  together with it (payment_write_apply_two), which saves a disk flush
 *  per charge. A crash in between finds the payment pending, as one
 *  after the authorize's ask: a retry or a settle looks the authorization
 *  up under its key and goes on from it.
 *
 *  Every gateway step carries its key, so a retry is harmless: a gateway
 *  answers the same key with the first result and does it once. A step
 *  that answers gateway_error is tried again after a short backoff, at
 *  most gateway_tries times in all (API.md: 3), within budget_ms; a step
 *  that gets no answer in time (the gateway may have done it) is looked up
 *  under its key before anything else: found, its result is the answer;
 *  not found, that was a try. When the tries are spent: an authorize is
 *  failed (502 gateway_error); a capture is voided at the gateway (one
 *  try) and failed (502). When the budget is spent with the outcome
 *  unknown, the payment stays as it is (pending or authorized) and the
 *  caller hears timeout: its retry, with the same order id, takes the
 *  payment over from where it stands, asking lookup first.
 *
 *  A charge that finds the order's payment already there answers what
 *  that payment came to (the first result: a retry after success is not a
 *  second charge, one after a decline is the same decline). When it is
 *  still pending or authorized, another request is driving it, or a crash
 *  stopped one: this one waits (pausing, not blocking) until it settles,
 *  and after half its budget takes it over as above. Twenty at once with
 *  one order id so make one authorization and one capture: the store lets
 *  one begin, and the gateway keys make any step taken twice one.
 *
 *  A settle (payment.settle {order_id}, recovery's question for an order
 *  whose checkout died) finishes the order's payment without a card, with
 *  these same steps. A payment in a final state is answered as it is. One
 *  pending or authorized whose charge still runs in this process, inside
 *  its budget, is answered unavailable (retry later): every charge notes
 *  its order as running before its payment can exist
 *  (payments_running_begin) and ends the note with its answer (s_finish),
 *  so a settle that finds the payment pending finds the charge too.
 *  Otherwise the settle takes the payment over, noted as running itself
 *  (exclusively: two settles do not drive one payment):
 *    pending     lookup of "<order>:<attempt>:authorize", newest attempt
 *                first: approved -> authorize, then capture as a charge
 *                does (the same keys, so a replay is harmless); declined
 *                -> failed with its reason; found under no attempt ->
 *                failed "not_authorized" (log entry "fail"). No authorize
 *                is ever asked: there is no card.
 *    authorized  the capture's lookup, then the capture.
 *  Gateway errors and silences are tried again as a charge's are; when the
 *  tries or the budget are spent, a settle answers gateway_error and
 *  leaves the payment as it was, for a later settle (a charge would fail
 *  it, or answer timeout). A capture the gateway refuses outright is
 *  voided and failed, as in a charge. Every answer of a settle that ends
 *  the payment is the payment itself, failed ones included.
 *
 *  Every store write of these steps (begin, and each event applied) is a
 *  call_write (protocol/call.h): the write is prepared in the request's
 *  context (charge_t: the payment_write_t and the payment it fills, which
 *  must live until the write is back), the worker serves other requests
 *  while its commit goes to disk, and the step after it runs in the
 *  resume (s_on_begun, s_on_applied) once the commit is there, so nothing
 *  is answered or asked of the gateway before what it rests on is
 *  durable. Reads (a poll, the payment after a conflict) do not wait on
 *  the disk and stay direct.
 *
 *  The card (number, expiry, CVC) is read from the request's arguments at
 *  each authorize, passed to the gateway in process, and never stored,
 *  logged or answered: the payment keeps brand, last4, expiry and a keyed
 *  fingerprint.
 */
#include "actors/payments/payments_impl.h"

#include <ctype.h>
#include <time.h>

#define POLL_MS 20                /* between looks at a payment another request drives */
#define BACKOFF_MS 50             /* before the second try of a step; doubles */
#define AMOUNT_MAX 100000000000LL /* a billion in major units */

typedef enum { STEP_AUTHORIZE, STEP_CAPTURE, STEP_VOID } step_t;

/* What a charge or void carries from one resume to the next. */
typedef struct {
    char payment_id[PAYMENT_ID_MAX + 1];
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
    int64_t amount_cents;
    int64_t started_ms;
    int attempt;
    step_t step;
    int tries;       /* of the current step */
    bool looking_up; /* the ask out is the step's lookup */
    bool voiding;    /* payment.void, not a charge */
    bool driving;    /* this request takes the payment's steps (else it waits) */
    bool settling;   /* payment.settle: no card, authorize is only looked up */
    bool registered; /* noted as running (payments_running_begin) */
    char auth_id[PAYMENT_GATEWAY_ID_MAX + 1];
    /* The gateway approved auth_id, and the store does not have it yet:
     * the next write records it first (payment_write_apply_two). */
    bool authorize_unwritten;
    /* The store write out (call_write) and what it fills: alive until
     * its resume, as the context is. */
    payment_write_t write;
    payment_t payment; /* the payment the write left (begin: the order's) */
    bool created;      /* begin: this request made the payment */
} charge_t;

static void s_settle(call_t *call, payments_state_t *self, charge_t *c, const payment_t *p);

/* Every answer of a charge, void or settle goes through these three, so
 * that the request stops counting as running when it ends. */
static void s_finish(payments_state_t *self, charge_t *c)
{
    if (c->registered) {
        payments_running_end(self->shared, c->order_id);
        c->registered = false;
    }
}

static void s_fail(call_t *call, payments_state_t *self, charge_t *c, err_code_t code,
                   const char *message)
{
    s_finish(self, c);
    call_fail(call, code, message);
}

static void s_fail_store(call_t *call, payments_state_t *self, charge_t *c, store_status_t st)
{
    s_finish(self, c);
    payments_fail_store(call, st, "payment");
}

/* The outcome is not known and no try or time is left: a charge answers
 * code (the caller retries with the same order id); a settle leaves the
 * payment as it is and answers gateway_error, for a later settle. */
static void s_give_up(call_t *call, payments_state_t *self, charge_t *c, err_code_t code,
                      const char *message)
{
    if (c->settling)
        s_fail(call, self, c, ERR_GATEWAY_ERROR,
               "the gateway did not answer; the payment is left as it was (settle it again)");
    else
        s_fail(call, self, c, code, message);
}

/* ------------------------------------------------------------------ */
/* The card                                                            */

typedef struct {
    const char *number;
    size_t number_len;
    int64_t exp_month, exp_year;
    const char *cvc;
    size_t cvc_len;
} card_t;

static bool s_digits(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return len > 0;
}

/* Reads args.card; records every problem on the call. */
static bool s_card_read(call_t *call, card_t *card)
{
    const msgpack_object *map = NULL;
    if (!call_arg_map(call, "card", ARG_REQUIRED, &map))
        return false;
    const msgpack_object *number = mp_map_get(map, "number");
    const msgpack_object *cvc = mp_map_get(map, "cvc");
    const msgpack_object *month = mp_map_get(map, "exp_month");
    const msgpack_object *year = mp_map_get(map, "exp_year");
    bool ok = true;
    if (!number || number->type != MSGPACK_OBJECT_STR ||
        !s_digits(number->via.str.ptr, number->via.str.size) ||
        !gateway_luhn_valid(number->via.str.ptr, number->via.str.size)) {
        call_arg_invalid(call, "card.number", "is not a valid card number");
        ok = false;
    } else {
        card->number = number->via.str.ptr;
        card->number_len = number->via.str.size;
    }
    if (!cvc || cvc->type != MSGPACK_OBJECT_STR || cvc->via.str.size < 3 || cvc->via.str.size > 4 ||
        !s_digits(cvc->via.str.ptr, cvc->via.str.size)) {
        call_arg_invalid(call, "card.cvc", "must be 3 or 4 digits");
        ok = false;
    } else {
        card->cvc = cvc->via.str.ptr;
        card->cvc_len = cvc->via.str.size;
    }
    if (!month || month->type != MSGPACK_OBJECT_POSITIVE_INTEGER || month->via.u64 < 1 ||
        month->via.u64 > 12) {
        call_arg_invalid(call, "card.exp_month", "must be 1 to 12");
        ok = false;
    } else
        card->exp_month = (int64_t)month->via.u64;
    if (!year || year->type != MSGPACK_OBJECT_POSITIVE_INTEGER || year->via.u64 < 2000 ||
        year->via.u64 > 2200) {
        call_arg_invalid(call, "card.exp_year", "must be a four-digit year");
        ok = false;
    } else
        card->exp_year = (int64_t)year->via.u64;
    if (ok) {
        /* A card is good to the end of its expiry month (UTC). */
        time_t now = time(NULL);
        struct tm tm;
        gmtime_r(&now, &tm);
        int64_t this_month = (int64_t)(tm.tm_year + 1900) * 12 + tm.tm_mon;
        if (card->exp_year * 12 + (card->exp_month - 1) < this_month) {
            call_arg_invalid(call, "card", "has expired");
            ok = false;
        }
    }
    return ok;
}

/* The brand a card number's prefix names. */
static const char *s_brand(const char *number, size_t len)
{
    if (len >= 1 && number[0] == '4')
        return "visa";
    if (len >= 2 && number[0] == '3' && (number[1] == '4' || number[1] == '7'))
        return "amex";
    if (len >= 2 && number[0] == '5' && number[1] >= '1' && number[1] <= '5')
        return "mastercard";
    if (len >= 4) {
        int prefix = (number[0] - '0') * 1000 + (number[1] - '0') * 100 + (number[2] - '0') * 10 +
                     (number[3] - '0');
        if (prefix >= 2221 && prefix <= 2720)
            return "mastercard";
    }
    return "card";
}

/* ------------------------------------------------------------------ */
/* Asking the gateway                                                  */

static const char *const s_step_ops[] = {"authorize", "capture", "void"};

/* The key of the current step: "<order>:<attempt>:<op>". */
static void s_key(const charge_t *c, char out[GATEWAY_KEY_MAX + 1])
{
    snprintf(out, GATEWAY_KEY_MAX + 1, "%s:%d:%s", c->order_id, c->attempt, s_step_ops[c->step]);
}

static void s_on_gateway(call_t *call, void *state, const call_answer_t *answer);

/* Asks the gateway for the current step (or its lookup). */
static void s_ask_step(call_t *call, payments_state_t *self, charge_t *c)
{
    char key[GATEWAY_KEY_MAX + 1];
    s_key(c, key);
    msgpack_packer *pk = call_ask_args(call);
    if (c->settling && c->step == STEP_AUTHORIZE)
        c->looking_up = true; /* no card: an authorization is only ever looked up */
    if (c->looking_up) {
        msgpack_pack_map(pk, 1);
        mp_pack_str(pk, "key");
        mp_pack_str(pk, key);
        call_ask_at(call, self->shared->gateway_endpoint, "lookup",
                    payments_ask_timeout(self, c->started_ms), s_on_gateway);
        return;
    }
    if (c->step == STEP_AUTHORIZE) {
        card_t card = {0};
        const msgpack_object *currency = mp_map_get(call_args(call), "currency");
        s_card_read(call, &card); /* read and checked by the handler already */
        msgpack_pack_map(pk, 4);
        mp_pack_str(pk, "key");
        mp_pack_str(pk, key);
        mp_pack_str(pk, "amount_cents");
        msgpack_pack_int64(pk, c->amount_cents);
        mp_pack_str(pk, "currency");
        msgpack_pack_object(pk, *currency);
        mp_pack_str(pk, "card");
        msgpack_pack_map(pk, 4);
        mp_pack_str(pk, "number");
        mp_pack_strn(pk, card.number, card.number_len);
        mp_pack_str(pk, "exp_month");
        msgpack_pack_int64(pk, card.exp_month);
        mp_pack_str(pk, "exp_year");
        msgpack_pack_int64(pk, card.exp_year);
        mp_pack_str(pk, "cvc");
        mp_pack_strn(pk, card.cvc, card.cvc_len);
    } else {
        msgpack_pack_map(pk, c->step == STEP_CAPTURE ? 3 : 2);
        mp_pack_str(pk, "key");
        mp_pack_str(pk, key);
        mp_pack_str(pk, "auth_id");
        mp_pack_str(pk, c->auth_id);
        if (c->step == STEP_CAPTURE) {
            mp_pack_str(pk, "amount_cents");
            msgpack_pack_int64(pk, c->amount_cents);
        }
    }
    call_ask_at(call, self->shared->gateway_endpoint, s_step_ops[c->step],
                payments_ask_timeout(self, c->started_ms), s_on_gateway);
}

static void s_retry_after_pause(call_t *call, void *state, const call_answer_t *answer)
{
    (void)answer;
    payments_state_t *self = state;
    s_ask_step(call, self, call_context(call, sizeof(charge_t)));
}

/* The event is on disk (or refused): goes by what the store says the
 * payment came to. */
static void s_on_applied(call_t *call, void *state, const call_answer_t *answer)
{
    payments_state_t *self = state;
    charge_t *c = call_context(call, sizeof(charge_t));
    store_status_t st = payment_write_end(&c->write, answer->ok, answer->result);
    c->authorize_unwritten = false; /* written, or refused: the store's state rules now */
    if (st == STORE_CONFLICT)       /* another request moved it first: go by what it is */
        st = payment_store_get(self->store, c->payment_id, &c->payment);
    if (st != STORE_OK) {
        s_fail_store(call, self, c, st);
        return;
    }
    s_settle(call, self, c, &c->payment);
}

/* Records the event in the store; s_on_applied goes on once it is on
 * disk. */
static void s_apply(call_t *call, payments_state_t *self, charge_t *c, const payment_event_t *ev)
{
    payment_event_t authorize = {
        .type = PAYMENT_EVENT_AUTHORIZE, .amount_cents = c->amount_cents, .gateway_id = c->auth_id};
    bool prepared =
        c->authorize_unwritten
            ? payment_write_apply_two(&c->write, self->store, c->payment_id, &authorize, ev,
                                      &c->payment)
            : payment_write_apply(&c->write, self->store, c->payment_id, ev, &c->payment);
    if (!prepared) {
        s_fail_store(call, self, c, STORE_ERROR); /* payment_store_apply's answer */
        return;
    }
    call_write(call, payment_store_kv(self->store), payment_write_txn, &c->write, s_on_applied);
}

/* The step failed for good (tries or budget spent). */
static void s_step_failed(call_t *call, payments_state_t *self, charge_t *c, const char *why)
{
    if (c->step == STEP_CAPTURE && !c->voiding) {
        /* Let the authorization go (one try), then fail the payment. */
        c->step = STEP_VOID;
        c->tries = 0;
        c->looking_up = false;
        s_ask_step(call, self, c);
        return;
    }
    if (c->voiding) {
        s_fail(call, self, c, ERR_GATEWAY_ERROR, why);
        return;
    }
    payment_event_t ev = {.type = PAYMENT_EVENT_FAIL, .reason = "gateway_error"};
    s_apply(call, self, c, &ev);
}

/* One more try of the step, or its end. */
static void s_try_again(call_t *call, payments_state_t *self, charge_t *c, const char *why)
{
    c->tries++;
    int left = payments_budget_left(self, c->started_ms);
    int pause = BACKOFF_MS << (c->tries - 1);
    if (c->step == STEP_VOID && !c->voiding) {
        /* the void after a failed capture gets one try */
        payment_event_t ev = {.type = PAYMENT_EVENT_FAIL, .reason = "gateway_error"};
        s_apply(call, self, c, &ev);
        return;
    }
    if (c->tries >= self->shared->settings.gateway_tries) {
        if (c->settling) /* a settle leaves the payment for a later one */
            s_give_up(call, self, c, ERR_GATEWAY_ERROR, why);
        else
            s_step_failed(call, self, c, why);
        return;
    }
    if (left <= pause + 1) {
        /* No time for another try: the outcome is not known, and the
         * payment stays as it is for a retry to take over. */
        s_give_up(call, self, c, ERR_TIMEOUT,
                  "the gateway did not answer in time; retry with the same order id");
        return;
    }
    call_after(call, pause, s_retry_after_pause);
}

/* The data of a step's answer (or of a lookup that found it). */
static void s_on_result(call_t *call, payments_state_t *self, charge_t *c,
                        const msgpack_object *data)
{
    const msgpack_object *outcome = mp_map_get(data, "outcome");
    char text[PAYMENT_GATEWAY_ID_MAX + 1] = "";
    if (c->step == STEP_AUTHORIZE) {
        if (mp_str_eq(outcome, "approved")) {
            /* Straight to the capture: the authorization is written with
             * what the capture comes to, in one write (a crash before it
             * leaves the payment pending, and the lookup of this key
             * finds the approval again). */
            const msgpack_object *auth = mp_map_get(data, "auth_id");
            if (auth && auth->type == MSGPACK_OBJECT_STR)
                call_copy_text(c->auth_id, sizeof c->auth_id, auth->via.str.ptr,
                               auth->via.str.size);
            else
                c->auth_id[0] = '\0';
            c->authorize_unwritten = true;
            c->step = STEP_CAPTURE;
            c->tries = 0;
            c->looking_up = false;
            s_ask_step(call, self, c);
            return;
        }
        const msgpack_object *reason = mp_map_get(data, "reason");
        if (reason && reason->type == MSGPACK_OBJECT_STR)
            call_copy_text(text, sizeof text, reason->via.str.ptr, reason->via.str.size);
        payment_event_t ev = {.type = PAYMENT_EVENT_FAIL,
                              .reason = text[0] ? text : "card_declined"};
        s_apply(call, self, c, &ev);
        return;
    }
    if (c->step == STEP_CAPTURE && mp_str_eq(outcome, "captured")) {
        const msgpack_object *capture = mp_map_get(data, "capture_id");
        if (capture && capture->type == MSGPACK_OBJECT_STR)
            call_copy_text(text, sizeof text, capture->via.str.ptr, capture->via.str.size);
        payment_event_t ev = {
            .type = PAYMENT_EVENT_CAPTURE, .amount_cents = c->amount_cents, .gateway_id = text};
        s_apply(call, self, c, &ev);
        return;
    }
    if (c->step == STEP_VOID && mp_str_eq(outcome, "voided")) {
        payment_event_t ev =
            c->voiding ? (payment_event_t){.type = PAYMENT_EVENT_VOID}
                       : (payment_event_t){.type = PAYMENT_EVENT_FAIL, .reason = "gateway_error"};
        s_apply(call, self, c, &ev);
        return;
    }
    s_fail(call, self, c, ERR_GATEWAY_ERROR, "the gateway answered something unexpected");
}

static void s_on_gateway(call_t *call, void *state, const call_answer_t *answer)
{
    payments_state_t *self = state;
    charge_t *c = call_context(call, sizeof(charge_t));
    if (c->looking_up) {
        c->looking_up = false;
        const msgpack_object *found = answer->ok ? mp_map_get(answer->data, "found") : NULL;
        if (found && found->type == MSGPACK_OBJECT_BOOLEAN && found->via.boolean) {
            const msgpack_object *result = mp_map_get(answer->data, "result");
            if (result && result->type == MSGPACK_OBJECT_MAP) {
                s_on_result(call, self, c, result);
                return;
            }
        }
        if (c->settling && c->step == STEP_AUTHORIZE && found &&
            found->type == MSGPACK_OBJECT_BOOLEAN) {
            /* The gateway says no authorization under this attempt's key:
             * look at the attempts before it; none had one, so none will
             * (only a request with the card authorizes, and none runs). */
            if (c->attempt > 1) {
                c->attempt--;
                s_ask_step(call, self, c);
                return;
            }
            payment_event_t ev = {.type = PAYMENT_EVENT_FAIL, .reason = "not_authorized"};
            s_apply(call, self, c, &ev);
            return;
        }
        /* not done under that key (or the lookup failed): that was a try */
        s_try_again(call, self, c, "the gateway did not answer");
        return;
    }
    if (answer->ok) {
        s_on_result(call, self, c, answer->data);
        return;
    }
    if (answer->code == ERR_TIMEOUT || answer->code == ERR_UNAVAILABLE) {
        /* It may have been done: ask before trying again. */
        if (payments_budget_left(self, c->started_ms) <= 1) {
            s_give_up(call, self, c, ERR_TIMEOUT,
                      "the gateway did not answer in time; retry with the same order id");
            return;
        }
        c->looking_up = true;
        s_ask_step(call, self, c);
        return;
    }
    if (answer->code == ERR_GATEWAY_ERROR) {
        s_try_again(call, self, c, answer->message);
        return;
    }
    /* invalid_argument, conflict, not_found: a try again would get the same */
    zsys_warning("payments: the gateway refused %s of %s: %s", s_step_ops[c->step], c->payment_id,
                 answer->message);
    c->tries = self->shared->settings.gateway_tries;
    s_step_failed(call, self, c, "the gateway refused the request");
}

/* ------------------------------------------------------------------ */
/* Where a payment stands                                              */

static void s_on_poll(call_t *call, void *state, const call_answer_t *answer)
{
    (void)answer;
    payments_state_t *self = state;
    charge_t *c = call_context(call, sizeof(charge_t));
    payment_t p;
    store_status_t st = payment_store_get(self->store, c->payment_id, &p);
    if (st != STORE_OK) {
        s_fail_store(call, self, c, st);
        return;
    }
    s_settle(call, self, c, &p);
}

/* Answers what p came to, or goes on with it (drives it, or waits for the
 * request that drives it). */
static void s_settle(call_t *call, payments_state_t *self, charge_t *c, const payment_t *p)
{
    switch (p->status) {
    case PAYMENT_CAPTURED:
    case PAYMENT_PARTIALLY_REFUNDED:
    case PAYMENT_REFUNDED:
        if (c->voiding) {
            s_fail(call, self, c, ERR_CONFLICT, "the payment is captured: refund it instead");
            return;
        }
        /* fall through */
    case PAYMENT_VOIDED:
        s_finish(self, c);
        payments_pack_payment(call_reply(call), p);
        return;
    case PAYMENT_FAILED:
        if (c->voiding) {
            s_fail(call, self, c, ERR_CONFLICT, "the payment failed: there is nothing to void");
            return;
        }
        s_finish(self, c);
        if (c->settling) { /* a settle answers the payment as it ended */
            payments_pack_payment(call_reply(call), p);
            return;
        }
        if (streq(p->failure, "gateway_error")) {
            call_fail(call, ERR_GATEWAY_ERROR,
                      "the payment gateway failed; the card was not charged");
            return;
        }
        {
            mpout_t details;
            mpout_init(&details, 256);
            msgpack_packer pk;
            mpout_packer(&details, &pk);
            msgpack_pack_map(&pk, 1);
            mp_pack_str(&pk, "reason");
            mp_pack_str(&pk, p->failure);
            call_fail_packed(call, ERR_PAYMENT_DECLINED, "the card was declined", &details);
            mpout_destroy(&details);
        }
        return;
    case PAYMENT_PENDING:
    case PAYMENT_AUTHORIZED:
        break;
    }
    int left = payments_budget_left(self, c->started_ms);
    int budget = self->shared->settings.budget_ms;
    if (!c->driving && !c->settling && left > budget / 2) {
        /* Someone else drives it: look again soon. */
        call_after(call, POLL_MS, s_on_poll);
        return;
    }
    /* Ours, or left to us: go on from where it stands. A payment taken
     * over may have had its step done by the request that left it, so
     * the first ask is that step's lookup. */
    bool taken_over = !c->driving;
    c->driving = true;
    snprintf(c->auth_id, sizeof c->auth_id, "%s", p->auth_id);
    c->attempt = p->attempt;
    step_t next = c->voiding                     ? STEP_VOID
                  : p->status == PAYMENT_PENDING ? STEP_AUTHORIZE
                                                 : STEP_CAPTURE;
    if (next != c->step || taken_over) {
        c->step = next;
        c->tries = 0;
        c->looking_up = taken_over;
    }
    if (left <= 1) {
        s_give_up(call, self, c, ERR_TIMEOUT,
                  "the payment is still in progress; retry with the same order id");
        return;
    }
    s_ask_step(call, self, c);
}

/* ------------------------------------------------------------------ */
/* The operations                                                      */

/* The order's payment is on disk (made by this request, or found): its
 * first step, or what it came to. */
static void s_on_begun(call_t *call, void *state, const call_answer_t *answer)
{
    payments_state_t *self = state;
    charge_t *c = call_context(call, sizeof(charge_t));
    store_status_t st = payment_write_end(&c->write, answer->ok, answer->result);
    if (st != STORE_OK) {
        s_fail_store(call, self, c, st);
        return;
    }
    const payment_t *found = &c->payment;
    snprintf(c->payment_id, sizeof c->payment_id, "%s", found->id);
    snprintf(c->order_id, sizeof c->order_id, "%s", found->order_id);
    c->amount_cents = found->amount_cents;
    c->attempt = found->attempt;
    c->step = STEP_AUTHORIZE;
    c->driving = c->created;
    if (c->created)
        s_ask_step(call, self, c);
    else
        s_settle(call, self, c, found);
}

void payments_charge(call_t *call, void *state)
{
    payments_state_t *self = state;
    char order_id[PAYMENT_ORDER_ID_MAX + 1], currency[PAYMENT_CURRENCY_MAX + 1];
    int64_t amount = 0;
    card_t card = {0};
    call_arg_text(call, "order_id", ARG_REQUIRED, PAYMENT_ORDER_ID_MAX, order_id, sizeof order_id);
    call_arg_int(call, "amount_cents", ARG_REQUIRED, 1, AMOUNT_MAX, &amount);
    if (call_arg_text(call, "currency", ARG_REQUIRED, 3, currency, sizeof currency) &&
        (strlen(currency) != 3 || !isupper((unsigned char)currency[0]) ||
         !isupper((unsigned char)currency[1]) || !isupper((unsigned char)currency[2])))
        call_arg_invalid(call, "currency", "must be 3 upper-case letters (ISO 4217)");
    s_card_read(call, &card);
    if (!call_args_ok(call) || !payments_caller_allowed(self, call))
        return;

    payment_t p = {0}; /* p.id "": the store makes it (ids carry their time) */
    snprintf(p.order_id, sizeof p.order_id, "%s", order_id);
    p.status = PAYMENT_PENDING;
    p.amount_cents = amount;
    snprintf(p.currency, sizeof p.currency, "%s", currency);
    snprintf(p.brand, sizeof p.brand, "%s", s_brand(card.number, card.number_len));
    memcpy(p.last4, card.number + card.number_len - 4, 4);
    p.exp_month = (int)card.exp_month;
    p.exp_year = (int)card.exp_year;
    payment_card_fingerprint(self->shared->store, card.number, card.number_len, p.fingerprint);
    p.attempt = 1;
    charge_t *c = call_context(call, sizeof(charge_t));
    if (!c) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    /* Noted as running before the payment can exist, so that a settle
     * that finds it pending also finds this charge. */
    snprintf(c->order_id, sizeof c->order_id, "%s", order_id);
    c->started_ms = zclock_mono();
    if (payments_running_begin(self->shared, order_id,
                               c->started_ms + self->shared->settings.budget_ms, false) != 0) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    c->registered = true;
    if (!payment_write_begin(&c->write, self->store, &p, &c->payment, &c->created)) {
        s_fail_store(call, self, c, STORE_ERROR); /* payment_store_begin's answer */
        return;
    }
    call_write(call, payment_store_kv(self->store), payment_write_txn, &c->write, s_on_begun);
}

void payments_void(call_t *call, void *state)
{
    payments_state_t *self = state;
    char id[PAYMENT_ID_MAX + 1];
    call_arg_text(call, "id", ARG_REQUIRED, PAYMENT_ID_MAX, id, sizeof id);
    if (!call_args_ok(call) || !payments_caller_allowed(self, call))
        return;
    payment_t p;
    store_status_t st = payment_store_get(self->store, id, &p);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "payment");
        return;
    }
    if (p.status == PAYMENT_VOIDED) {
        payments_pack_payment(call_reply(call), &p);
        return;
    }
    if (p.status != PAYMENT_AUTHORIZED) {
        call_fail(call, ERR_CONFLICT, "only an authorized payment can be voided");
        return;
    }
    charge_t *c = call_context(call, sizeof(charge_t));
    if (!c) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    snprintf(c->payment_id, sizeof c->payment_id, "%s", p.id);
    snprintf(c->order_id, sizeof c->order_id, "%s", p.order_id);
    snprintf(c->auth_id, sizeof c->auth_id, "%s", p.auth_id);
    c->amount_cents = p.amount_cents;
    c->started_ms = zclock_mono();
    c->attempt = p.attempt;
    c->step = STEP_VOID;
    c->voiding = true;
    c->driving = true;
    c->tries = 0;
    s_ask_step(call, self, c);
}

/* payment.settle {order_id} -> payment: what recovery asks of an order
 * whose checkout died (see the top). */
void payments_settle(call_t *call, void *state)
{
    payments_state_t *self = state;
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
    if (call_arg_text(call, "order_id", ARG_REQUIRED, PAYMENT_ORDER_ID_MAX, order_id,
                      sizeof order_id) &&
        !order_id[0])
        call_arg_invalid(call, "order_id", "must not be empty");
    if (!call_args_ok(call) || !payments_caller_allowed(self, call))
        return;
    payment_t p;
    store_status_t st = payment_store_by_order(self->store, order_id, &p);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "payment for that order");
        return;
    }
    if (p.status != PAYMENT_PENDING && p.status != PAYMENT_AUTHORIZED) {
        payments_pack_payment(call_reply(call), &p); /* final: as it is */
        return;
    }
    charge_t *c = call_context(call, sizeof(charge_t));
    if (!c) {
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
        return;
    }
    c->started_ms = zclock_mono();
    int running = payments_running_begin(self->shared, p.order_id,
                                         c->started_ms + self->shared->settings.budget_ms, true);
    if (running != 0) {
        call_fail(call, ERR_UNAVAILABLE,
                  running > 0 ? "a charge of this order is still running; retry later"
                              : "out of memory");
        return;
    }
    c->registered = true;
    snprintf(c->payment_id, sizeof c->payment_id, "%s", p.id);
    snprintf(c->order_id, sizeof c->order_id, "%s", p.order_id);
    c->amount_cents = p.amount_cents;
    c->settling = true;
    c->step = p.status == PAYMENT_PENDING ? STEP_AUTHORIZE : STEP_CAPTURE;
    /* Not driving yet: s_settle takes it over, asking the step's lookup
     * first (the request that left it may have done the step). */
    s_settle(call, self, c, &p);
}

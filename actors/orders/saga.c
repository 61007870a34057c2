/*  saga.c - the checkout saga's steps, shared by checkout (checkout.c)
 *  and recovery (recovery.c, order.recover). The design, with its crash
 *  table, is in orders.h.
 *
 *  Every step is an ask of another service, keyed by the order id, which
 *  that service makes durable before it answers. The order itself is
 *  written twice on the way: pending before anything else (checkout.c),
 *  and at its end (paid, or payment_failed), with the steps taken in
 *  between in its journal, each with the time it happened. Each write
 *  reads the order inside it and refuses unless the saga still holds the
 *  lease and the order is pending, so a saga that lost its order to
 *  recovery writes nothing. Recovery (order.recover) never trusts the
 *  journal's silence: a pending order it takes over is settled with
 *  payments first (saga_drive), whatever steps it records:
 *
 *      journal has          next
 *      released             write payment_failed
 *      (checkout)           reserve, charge, commit, paid
 *      (recovery)           settle: captured -> commit -> paid;
 *                           failed or none -> release -> payment_failed
 *
 *  After a paid order is asked to cancel (cancel_asked): refund, release,
 *  cancelled. An order marked compensate: settle, refund if captured,
 *  then clear the mark.
 *
 *  A saga step's write that finds no room (ORDER_NO_SPACE: a full disk)
 *  answers unavailable "storage is full" with retry_after, saying that
 *  recovery finishes the order once writes succeed again (its todo entry
 *  was written with it).
 */
#include "actors/orders/orders_impl.h"

#include <fcntl.h>
#include <signal.h>
#include <sodium.h>
#include <string.h>
#include <unistd.h>

/* A change function refuses with this when the saga no longer owns the
 * order (another lease, or it is not pending any more). */
#define S_LOST 1

void saga_new_lease(const orders_shared_t *shared, char out[ORDER_LEASE_MAX + 1])
{
    uint8_t r[8];
    char hex[17];
    randombytes_buf(r, sizeof r);
    sodium_bin2hex(hex, sizeof hex, r, sizeof r);
    snprintf(out, ORDER_LEASE_MAX + 1, "%s-%s", shared->instance, hex);
}

bool saga_lease_is_ours(const orders_shared_t *shared, const char *lease)
{
    size_t n = strlen(shared->instance);
    return strncmp(lease, shared->instance, n) == 0 && lease[n] == '-';
}

void saga_crash_point(const orders_shared_t *shared, int step)
{
    if (!shared->test_ops || shared->crash_at != step)
        return;
    /* Once per data directory: the marker stops the restarted process
     * (same settings) from dying again at the same point. */
    int fd = open(shared->crash_marker, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return;
    close(fd);
    zsys_warning("orders: RETAIL_ORDERS_CRASH_AT=%s: killing the process",
                 step < STEP_COUNT ? order_step_name(step) : "paid");
    kill(getpid(), SIGKILL);
}

static saga_t *s_saga(call_t *call)
{
    return call_context(call, sizeof(saga_t));
}

static bool s_owned(const order_t *o, const saga_t *saga)
{
    return streq(o->lease, saga->lease);
}

static int s_unlease_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    const saga_t *saga = arg;
    if (!streq(o->lease, saga->lease))
        return 1;
    o->lease[0] = '\0';
    o->lease_until_ms = 0;
    return 0;
}

/* What the client's request, or recovery, hears when the saga cannot go
 * on now: the order stays as it is written, its lease given up so that
 * recovery's next pass takes it at once, and recovery finishes it. */
static void s_left_for_recovery(call_t *call, orders_state_t *self, saga_t *saga, const char *what)
{
    order_store_status_t status =
        order_store_change(self->orders, saga->order.id, s_unlease_fn, saga, NULL, NULL);
    if (status != ORDER_OK && status != ORDER_REFUSED)
        zsys_warning("orders: order %s: cannot give its lease up (%d); recovery waits for it",
                     saga->order.id, status);
    char message[200];
    snprintf(message, sizeof message,
             "%s: the order is pending and will be finished; ask again with the same "
             "Idempotency-Key",
             what);
    call_fail(call, ERR_UNAVAILABLE, message);
}

/* A write of a saga step after the order was created failed. No room
 * (a full disk) is said as such, and that the order is not left there:
 * the step's earlier ones are done and recovery finishes it (its todo
 * entry was written with the order) once writes succeed again. */
static void s_write_failed(call_t *call, order_store_status_t status, int refusal)
{
    if (status == ORDER_REFUSED && refusal == S_LOST)
        call_fail(call, ERR_UNAVAILABLE, "the order was taken over by recovery; ask again later");
    else if (status == ORDER_NO_SPACE)
        call_fail_retry(call, ERR_UNAVAILABLE,
                        "storage is full; recovery finishes the order once there is room: ask "
                        "again later with the same Idempotency-Key",
                        CALL_NO_SPACE_RETRY_S);
    else
        orders_fail_store(call, status);
}

/* ---- the final writes ---- */

/* The steps the saga took since the order was written, with their
 * times, and the payment it learned of, into the order as the write reads
 * it. */
static void s_take_journal(order_t *o, const saga_t *saga)
{
    const order_t *done = &saga->order;
    for (int i = 0; i < done->n_journal; i++)
        if (!order_has_step(o, done->journal[i].step))
            order_add_step(o, done->journal[i].step, done->journal[i].at_ms);
    if (done->payment_id[0]) {
        snprintf(o->payment_id, sizeof o->payment_id, "%s", done->payment_id);
        snprintf(o->payment_status, sizeof o->payment_status, "%s", done->payment_status);
        snprintf(o->brand, sizeof o->brand, "%s", done->brand);
        snprintf(o->last4, sizeof o->last4, "%s", done->last4);
    }
}

/* Runs on the orders environment's committer thread (saga is the call's
 * context, which the worker leaves alone while the write is out). */
static int s_paid_fn(order_t *o, order_change_t *change, void *arg)
{
    const saga_t *saga = arg;
    if (!s_owned(o, saga) || o->status != ORDER_PENDING)
        return S_LOST;
    s_take_journal(o, saga);
    o->status = ORDER_PAID;
    o->lease[0] = '\0';
    change->finish_key = true;
    change->code = "";
    change->body_of = order_view_bytes;
    return 0;
}

/* The paid write is back: answer the order. */
static void s_paid_written(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    int refusal = 0;
    order_store_status_t status = order_write_end(&saga->write, a->ok, a->result, &refusal);
    if (status != ORDER_OK) {
        s_write_failed(call, status, refusal);
        return;
    }
    if (saga->from_cart)
        (void)cart_store_clear(self->carts, saga->order.user_id);
    saga_crash_point(self->shared, STEP_COUNT);
    order_view_reply(call, &saga->order);
}

static void s_write_paid(call_t *call, orders_state_t *self, saga_t *saga)
{
    if (!order_write_change(&saga->write, self->orders, saga->order.id, s_paid_fn, saga,
                            &saga->order)) {
        orders_fail_store(call, ORDER_NOT_FOUND);
        return;
    }
    call_write(call, order_store_kv(self->orders), order_write_txn, &saga->write, s_paid_written);
}

/* The failure as the key keeps it: 402 with the decline's reason, 502,
 * or (an order recovery ended without a charge) 502 too. */
typedef struct {
    saga_t *saga;
    err_code_t code;
    char message[160];
    uint8_t details[64];
    size_t details_len;
} s_failure_t;

static void s_failure_details(s_failure_t *f, const char *reason)
{
    f->details_len = 0;
    if (!reason || !reason[0])
        return;
    size_t n = strlen(reason);
    if (n > 40)
        return;
    uint8_t *p = f->details;
    *p++ = 0x81; /* map of 1 */
    *p++ = 0xa6; /* "reason" */
    memcpy(p, "reason", 6);
    p += 6;
    *p++ = (uint8_t)(0xa0 | n);
    memcpy(p, reason, n);
    p += n;
    f->details_len = (size_t)(p - f->details);
}

static int s_failed_fn(order_t *o, order_change_t *change, void *arg)
{
    s_failure_t *f = arg;
    if (!s_owned(o, f->saga) || o->status != ORDER_PENDING)
        return S_LOST;
    if (!order_has_step(o, STEP_RELEASED))
        order_add_step(o, STEP_RELEASED, call_now_ms());
    o->status = ORDER_PAYMENT_FAILED;
    o->lease[0] = '\0';
    o->compensate = f->saga->order.compensate;
    snprintf(o->failure_code, sizeof o->failure_code, "%s", err_code_name(f->code));
    snprintf(o->failure_reason, sizeof o->failure_reason, "%s", f->saga->order.failure_reason);
    s_take_journal(o, f->saga);
    change->finish_key = true;
    change->code = err_code_name(f->code);
    change->message = f->message;
    change->body = f->details_len ? f->details : NULL;
    change->body_len = f->details_len;
    return 0;
}

static void s_write_failed_order(call_t *call, orders_state_t *self, saga_t *saga)
{
    s_failure_t f = {.saga = saga};
    f.code = err_code_from_name(saga->order.failure_code, strlen(saga->order.failure_code));
    if (f.code != ERR_PAYMENT_DECLINED)
        f.code = ERR_GATEWAY_ERROR;
    if (f.code == ERR_PAYMENT_DECLINED)
        snprintf(f.message, sizeof f.message, "the payment was declined");
    else if (streq(saga->order.failure_reason, "abandoned"))
        snprintf(f.message, sizeof f.message,
                 "the checkout did not finish and no payment was made");
    else if (streq(saga->order.failure_reason, "held_too_long"))
        snprintf(f.message, sizeof f.message,
                 "payments did not answer in time; the order was not paid");
    else
        snprintf(f.message, sizeof f.message, "the payment could not be made");
    s_failure_details(&f, f.code == ERR_PAYMENT_DECLINED ? saga->order.failure_reason : NULL);
    int refusal = 0;
    order_store_status_t status =
        order_store_change(self->orders, saga->order.id, s_failed_fn, &f, &saga->order, &refusal);
    if (status != ORDER_OK) {
        s_write_failed(call, status, refusal);
        return;
    }
    call_fail_details(call, f.code, f.message, f.details_len ? f.details : NULL, f.details_len);
}

/* ---- journal steps ---- */

/* ---- asks ---- */

static void s_ask_order_id(call_t *call, const char *service, const char *op, const char *id,
                           int timeout_ms, call_resume_fn *resume)
{
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, id);
    call_ask(call, service, op, timeout_ms, resume);
}

static void s_str(const msgpack_object *map, const char *key, char *out, size_t size)
{
    const msgpack_object *v = map ? mp_map_get(map, key) : NULL;
    if (v && v->type == MSGPACK_OBJECT_STR)
        call_copy_text(out, size, v->via.str.ptr, v->via.str.size);
}

/* The payment of a payments answer into the saga's order. */
static void s_take_payment(saga_t *saga, const msgpack_object *p)
{
    s_str(p, "id", saga->order.payment_id, sizeof saga->order.payment_id);
    s_str(p, "status", saga->order.payment_status, sizeof saga->order.payment_status);
    s_str(p, "brand", saga->order.brand, sizeof saga->order.brand);
    s_str(p, "last4", saga->order.last4, sizeof saga->order.last4);
}

static const msgpack_object *s_payment_of(const call_answer_t *a)
{
    if (!a->data || a->data->type != MSGPACK_OBJECT_MAP)
        return NULL;
    const msgpack_object *inner = mp_map_get(a->data, "payment");
    return inner && inner->type == MSGPACK_OBJECT_MAP ? inner : a->data;
}

static void s_commit(call_t *call, orders_state_t *self, saga_t *saga);
static void s_release_then_fail(call_t *call, orders_state_t *self, saga_t *saga);

static void s_released(call_t *call, void *state, const call_answer_t *a)
{
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    if (!a->ok && a->code != ERR_NOT_FOUND) {
        s_left_for_recovery(call, state, saga, "the catalog did not release the stock");
        return;
    }
    s_write_failed_order(call, state, saga);
}

static void s_release_then_fail(call_t *call, orders_state_t *self, saga_t *saga)
{
    (void)self;
    s_ask_order_id(call, "catalog", "stock.release", saga->order.id, ORDERS_STOCK_TIMEOUT_MS,
                   s_released);
}

/* Ends the order unpaid (payment_failed, gateway_error) for reason, with
 * step (-1: none) in its journal: its stock released first. */
static void s_end_unpaid(call_t *call, orders_state_t *self, saga_t *saga, const char *reason,
                         int step)
{
    order_t *o = &saga->order;
    snprintf(o->failure_code, sizeof o->failure_code, "gateway_error");
    if (reason != o->failure_reason)
        snprintf(o->failure_reason, sizeof o->failure_reason, "%s", reason);
    if (step >= 0 && !order_has_step(o, step))
        order_add_step(o, step, call_now_ms());
    s_release_then_fail(call, self, saga);
}

static void s_committed(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    if (a->ok) {
        if (!order_has_step(&saga->order, STEP_COMMITTED))
            order_add_step(&saga->order, STEP_COMMITTED, call_now_ms());
        saga_crash_point(self->shared, STEP_COMMITTED);
        s_write_paid(call, self, saga);
        return;
    }
    if (a->code == ERR_CONFLICT || a->code == ERR_NOT_FOUND) {
        /* The stock went back (or never was held) while the charge went
         * through: the order cannot be paid; its payment is refunded. */
        zsys_error("orders: order %s: commit refused (%s) after its charge; compensating",
                   saga->order.id, a->message);
        saga->order.compensate = true;
        s_end_unpaid(call, self, saga, "stock_lost", -1);
        return;
    }
    s_left_for_recovery(call, state, saga, "the catalog did not commit the stock");
}

static void s_commit(call_t *call, orders_state_t *self, saga_t *saga)
{
    (void)self;
    s_ask_order_id(call, "catalog", "stock.commit", saga->order.id, ORDERS_STOCK_TIMEOUT_MS,
                   s_committed);
}

/* A charge's (or a settle's) answer. */
static void s_charged(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    const msgpack_object *p = a->ok ? s_payment_of(a) : NULL;
    if (p) {
        s_take_payment(saga, p);
        const char *st = saga->order.payment_status;
        if (streq(st, "captured")) {
            if (!order_has_step(&saga->order, STEP_CHARGED))
                order_add_step(&saga->order, STEP_CHARGED, call_now_ms());
            saga_crash_point(self->shared, STEP_CHARGED);
            s_commit(call, self, saga);
            return;
        }
        if (streq(st, "failed") || streq(st, "voided")) {
            const char *reason = saga->order.failure_reason[0] ? saga->order.failure_reason
                                 : saga->has_card              ? ""
                                                               : "abandoned";
            s_end_unpaid(call, self, saga, reason, -1);
            return;
        }
        /* refunded or partly: a payment of an order that is not paid
         * (compensated already?): leave it to an operator. */
        zsys_error("orders: order %s: its payment is %s while the order is pending", saga->order.id,
                   st);
        s_left_for_recovery(call, state, saga, "the payment is in an unexpected state");
        return;
    }
    /* A settle's gateway_error leaves the payment as it was (pending or
     * authorized): like no answer, it is tried again later. */
    if (a->code == ERR_PAYMENT_DECLINED || (a->code == ERR_GATEWAY_ERROR && saga->has_card) ||
        a->code == ERR_INVALID_ARGUMENT) {
        snprintf(saga->order.failure_code, sizeof saga->order.failure_code, "%s",
                 err_code_name(a->code == ERR_PAYMENT_DECLINED ? ERR_PAYMENT_DECLINED
                                                               : ERR_GATEWAY_ERROR));
        const msgpack_object *details = a->error ? mp_map_get(a->error, "details") : NULL;
        s_str(details, "reason", saga->order.failure_reason, sizeof saga->order.failure_reason);
        s_release_then_fail(call, self, saga);
        return;
    }
    if (a->code == ERR_NOT_FOUND && !saga->has_card) {
        /* settle: no payment was ever made for the order */
        s_end_unpaid(call, self, saga, "abandoned", STEP_ABANDONED);
        return;
    }
    /* No answer: the charge may or may not have happened. */
    if (!saga->has_card &&
        call_now_ms() - saga->order.created_at_ms > self->shared->settings.hold_ms) {
        zsys_warning("orders: order %s pending past the hold with payments silent; ending it",
                     saga->order.id);
        saga->order.compensate = true;
        s_end_unpaid(call, self, saga, "held_too_long", STEP_HELD_TOO_LONG);
        return;
    }
    s_left_for_recovery(call, state, saga, "payments did not answer");
}

static void s_charge(call_t *call, orders_state_t *self, saga_t *saga)
{
    (void)self;
    const msgpack_object *payment = mp_map_get(call_args(call), "payment");
    const msgpack_object *number = payment ? mp_map_get(payment, "card_number") : NULL;
    char digits[32] = "";
    size_t n = 0;
    for (uint32_t i = 0; number && number->type == MSGPACK_OBJECT_STR && i < number->via.str.size &&
                         n < sizeof digits - 1;
         i++) {
        char c = number->via.str.ptr[i];
        if (c >= '0' && c <= '9')
            digits[n++] = c;
    }
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 4);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, saga->order.id);
    mp_pack_str(pk, "amount_cents");
    msgpack_pack_int64(pk, saga->order.total_cents);
    mp_pack_str(pk, "currency");
    mp_pack_str(pk, saga->order.currency);
    mp_pack_str(pk, "card");
    msgpack_pack_map(pk, 4);
    mp_pack_str(pk, "number");
    mp_pack_str(pk, digits);
    const char *keys[3] = {"exp_month", "exp_year", "cvc"};
    for (int i = 0; i < 3; i++) {
        mp_pack_str(pk, keys[i]);
        const msgpack_object *v = payment ? mp_map_get(payment, keys[i]) : NULL;
        if (v)
            msgpack_pack_object(pk, *v);
        else
            msgpack_pack_nil(pk);
    }
    sodium_memzero(digits, sizeof digits);
    call_ask(call, "payments", "payment.charge", ORDERS_CHARGE_TIMEOUT_MS, s_charged);
}

static void s_settle(call_t *call, orders_state_t *self, saga_t *saga)
{
    (void)self;
    s_ask_order_id(call, "payments", "payment.settle", saga->order.id, ORDERS_CHARGE_TIMEOUT_MS,
                   s_charged);
}

typedef struct {
    saga_t *saga;
    const char *code, *message;
    const void *details;
    size_t details_len;
} s_removal_t;

static int s_remove_fn(order_t *o, order_change_t *change, void *arg)
{
    s_removal_t *r = arg;
    if (!s_owned(o, r->saga) || o->status != ORDER_PENDING)
        return S_LOST;
    change->remove = true;
    change->finish_key = true;
    change->code = r->code;
    change->message = r->message;
    change->body = r->details;
    change->body_len = r->details_len;
    return 0;
}

/* The answer of stock.reserve. */
static void s_reserved(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    if (a->ok) {
        order_add_step(&saga->order, STEP_RESERVED, call_now_ms());
        saga_crash_point(self->shared, STEP_RESERVED);
        s_charge(call, self, saga);
        return;
    }
    if (a->code == ERR_OUT_OF_STOCK || a->code == ERR_NOT_FOUND) {
        /* Nothing was reserved: no order is left behind; the key keeps
         * the answer. */
        const msgpack_object *details = a->error ? mp_map_get(a->error, "details") : NULL;
        mpout_t packed;
        mpout_init(&packed, 4096);
        if (details) {
            msgpack_packer pk;
            mpout_packer(&packed, &pk);
            msgpack_pack_object(&pk, *details);
        }
        bool has = details && !packed.failed;
        const char *message = a->code == ERR_OUT_OF_STOCK ? "not enough stock" : "no such product";
        s_removal_t removal = {saga, err_code_name(a->code), message, has ? packed.buf.data : NULL,
                               has ? packed.buf.size : 0};
        int refusal = 0;
        order_store_status_t status =
            order_store_change(self->orders, saga->order.id, s_remove_fn, &removal, NULL, &refusal);
        if (status != ORDER_OK)
            s_write_failed(call, status, refusal);
        else
            call_fail_details(call, a->code, message, has ? packed.buf.data : NULL,
                              has ? packed.buf.size : 0);
        mpout_destroy(&packed);
        return;
    }
    s_left_for_recovery(call, state, saga, "the catalog did not answer");
}

static void s_reserve(call_t *call, orders_state_t *self, saga_t *saga)
{
    (void)self;
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, saga->order.id);
    mp_pack_str(pk, "lines");
    msgpack_pack_array(pk, (size_t)saga->order.n_items);
    for (int i = 0; i < saga->order.n_items; i++) {
        msgpack_pack_map(pk, 2);
        mp_pack_str(pk, "product_id");
        mp_pack_str(pk, saga->order.items[i].product_id);
        mp_pack_str(pk, "qty");
        msgpack_pack_int64(pk, saga->order.items[i].qty);
    }
    call_ask(call, "catalog", "stock.reserve", ORDERS_STOCK_TIMEOUT_MS, s_reserved);
}

/* ---- after the end: cancel and compensate ---- */

static int s_cancelled_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    saga_t *saga = arg;
    if (!s_owned(o, saga) || o->status != ORDER_PAID)
        return S_LOST;
    order_add_step(o, STEP_RELEASED, call_now_ms());
    o->status = ORDER_CANCELLED;
    o->lease[0] = '\0';
    return 0;
}

static void s_cancel_released(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    if (!a->ok && a->code != ERR_NOT_FOUND) {
        call_fail(call, ERR_UNAVAILABLE,
                  "the catalog did not take the stock back; the cancel will be finished");
        return;
    }
    int refusal = 0;
    order_store_status_t status = order_store_change(self->orders, saga->order.id, s_cancelled_fn,
                                                     saga, &saga->order, &refusal);
    if (status != ORDER_OK) {
        s_write_failed(call, status, refusal);
        return;
    }
    order_view_reply(call, &saga->order);
}

static int s_refunded_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    saga_t *saga = arg;
    if (!s_owned(o, saga))
        return S_LOST;
    if (!order_has_step(o, STEP_REFUNDED))
        order_add_step(o, STEP_REFUNDED, call_now_ms());
    snprintf(o->payment_status, sizeof o->payment_status, "%s", saga->order.payment_status);
    if (o->compensate) {
        o->compensate = false;
        order_add_step(o, STEP_COMPENSATED, call_now_ms());
        o->lease[0] = '\0';
    }
    return 0;
}

static void s_refunded(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    const msgpack_object *p = a->ok ? s_payment_of(a) : NULL;
    if (!p) {
        char message[200];
        snprintf(message, sizeof message, "payments did not refund: %s",
                 a->message ? a->message : "no answer");
        call_fail(call, a->code == ERR_CONFLICT ? ERR_CONFLICT : ERR_UNAVAILABLE, message);
        return;
    }
    s_str(p, "status", saga->order.payment_status, sizeof saga->order.payment_status);
    int refusal = 0;
    order_store_status_t status = order_store_change(self->orders, saga->order.id, s_refunded_fn,
                                                     saga, &saga->order, &refusal);
    if (status != ORDER_OK) {
        s_write_failed(call, status, refusal);
        return;
    }
    if (saga->order.status == ORDER_PAID)
        s_ask_order_id(call, "catalog", "stock.release", saga->order.id, ORDERS_STOCK_TIMEOUT_MS,
                       s_cancel_released);
    else
        order_view_reply(call, &saga->order);
}

static void s_refund(call_t *call, saga_t *saga, const char *why)
{
    char key[64];
    snprintf(key, sizeof key, "%s-%s", why, saga->order.id);
    msgpack_packer *pk = call_ask_args(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "id");
    mp_pack_str(pk, saga->order.payment_id);
    mp_pack_str(pk, "idempotency_key");
    mp_pack_str(pk, key);
    call_ask(call, "payments", "payment.refund", ORDERS_CHARGE_TIMEOUT_MS, s_refunded);
}

static int s_compensated_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    saga_t *saga = arg;
    if (!s_owned(o, saga))
        return S_LOST;
    o->compensate = false;
    order_add_step(o, STEP_COMPENSATED, call_now_ms());
    if (saga->order.payment_status[0])
        snprintf(o->payment_status, sizeof o->payment_status, "%s", saga->order.payment_status);
    o->lease[0] = '\0';
    return 0;
}

/* compensate: what became of the payment of an order that was not paid. */
static void s_compensate_settled(call_t *call, void *state, const call_answer_t *a)
{
    orders_state_t *self = state;
    saga_t *saga = s_saga(call);
    if (!saga)
        return;
    const msgpack_object *p = a->ok ? s_payment_of(a) : NULL;
    if (p) {
        s_take_payment(saga, p);
        if (streq(saga->order.payment_status, "captured") ||
            streq(saga->order.payment_status, "partially_refunded")) {
            s_refund(call, saga, "compensate");
            return;
        }
    } else if (a->code != ERR_NOT_FOUND) {
        call_fail(call, ERR_UNAVAILABLE, "payments did not answer; compensation will be retried");
        return;
    }
    int refusal = 0;
    order_store_status_t status = order_store_change(self->orders, saga->order.id, s_compensated_fn,
                                                     saga, &saga->order, &refusal);
    if (status != ORDER_OK) {
        s_write_failed(call, status, refusal);
        return;
    }
    order_view_reply(call, &saga->order);
}

void saga_drive(call_t *call, orders_state_t *self, saga_t *saga)
{
    const order_t *o = &saga->order;
    if (o->status == ORDER_PENDING) {
        if (order_has_step(o, STEP_RELEASED))
            s_write_failed_order(call, self, saga);
        else if (saga->has_card)
            s_reserve(call, self, saga);
        else {
            /* Recovery: whatever the journal holds, a charge may have
             * been made (the steps after `created` are written with the
             * order's end), so payments is asked first. */
            s_settle(call, self, saga);
        }
        return;
    }
    if (o->status == ORDER_PAID && order_has_step(o, STEP_CANCEL_ASKED)) {
        if (order_has_step(o, STEP_REFUNDED))
            s_ask_order_id(call, "catalog", "stock.release", o->id, ORDERS_STOCK_TIMEOUT_MS,
                           s_cancel_released);
        else
            s_refund(call, saga, "cancel");
        return;
    }
    if (o->compensate) {
        s_ask_order_id(call, "payments", "payment.settle", o->id, ORDERS_CHARGE_TIMEOUT_MS,
                       s_compensate_settled);
        return;
    }
    order_view_reply(call, o);
}

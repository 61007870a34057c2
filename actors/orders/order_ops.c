/*  order_ops.c - the orders service's ops after checkout: an order, a
 *  history, cancel, the admin's status changes, recovery's entry point
 *  and the check of the books.
 *
 *  Who may: a customer sees and cancels its own orders (another's is
 *  not_found, as if it did not exist); an admin sees all, may filter by
 *  user, cancels any and moves paid -> shipped -> delivered. The operator
 *  (the caller `retailctl`, by its certificate) reads as an admin for
 *  `retailctl check`. order.recover is for the caller `orders` only: the
 *  service's own recovery actor.
 *
 *  Every transition is decided inside the write that makes it
 *  (order_store_change), on the status it reads there: a cancel racing a
 *  shipment gets one of them, never both.
 *
 *  ORDER_NO_SPACE (a write found the disk or the map full) answers
 *  unavailable "storage is full" with retry_after (call_fail_no_space).
 */
#include "actors/orders/orders_impl.h"

#include <string.h>

enum { S_REFUSE_TRANSITION = 2, S_REFUSE_DONE, S_REFUSE_BUSY, S_REFUSE_NOT_YOURS };

bool orders_caller(call_t *call, orders_state_t *self, char user[AUTH_SUB_MAX + 1], bool *admin)
{
    auth_identity_t who;
    if (!auth_require(self->verifier, call, &who))
        return false;
    snprintf(user, AUTH_SUB_MAX + 1, "%s", who.sub);
    *admin = streq(who.role, "admin");
    return true;
}

/* A reader: a token's user, or the operator (as an admin). */
static bool s_reader(call_t *call, orders_state_t *self, char user[AUTH_SUB_MAX + 1], bool *admin)
{
    if (streq(call_caller(call), "retailctl") && !call_request(call)->token) {
        snprintf(user, AUTH_SUB_MAX + 1, "retailctl");
        *admin = true;
        return true;
    }
    return orders_caller(call, self, user, admin);
}

void orders_fail_store(call_t *call, order_store_status_t status)
{
    switch (status) {
    case ORDER_NOT_FOUND:
        call_fail(call, ERR_NOT_FOUND, "no such order");
        break;
    case ORDER_UNAVAILABLE:
        call_fail(call, ERR_UNAVAILABLE, "the orders store is unavailable");
        break;
    case ORDER_NO_SPACE:
        call_fail_no_space(call);
        break;
    default:
        call_fail(call, ERR_INTERNAL, "the orders store failed (see the log)");
        break;
    }
}

static saga_t *s_saga(call_t *call)
{
    saga_t *saga = call_context(call, sizeof(saga_t));
    if (!saga)
        call_fail(call, ERR_UNAVAILABLE, "out of memory");
    return saga;
}

static bool s_order_id(call_t *call, char id[ORDER_ID_MAX + 1])
{
    return call_arg_text(call, "id", ARG_REQUIRED, ORDER_ID_MAX, id, ORDER_ID_MAX + 1);
}

/* order.get {id} -> order */
void orders_order_get(call_t *call, void *state)
{
    orders_state_t *self = state;
    char id[ORDER_ID_MAX + 1] = "", user[AUTH_SUB_MAX + 1];
    bool admin;
    s_order_id(call, id);
    if (!call_args_ok(call) || !s_reader(call, self, user, &admin))
        return;
    order_store_status_t status = order_store_get(self->orders, id, self->scratch);
    if (status == ORDER_OK && !admin && !streq(self->scratch->user_id, user))
        status = ORDER_NOT_FOUND;
    if (status != ORDER_OK) {
        orders_fail_store(call, status);
        return;
    }
    order_view_reply(call, self->scratch);
}

/* order.list {status?, user_id?, limit?, cursor?} -> {items, next_cursor} */
void orders_order_list(call_t *call, void *state)
{
    orders_state_t *self = state;
    char status_name[24] = "", user_id[ORDER_USER_MAX + 1] = "", cursor[ORDER_ID_MAX + 1] = "";
    char user[AUTH_SUB_MAX + 1];
    bool admin;
    int64_t limit = 20;
    int status = -1;
    if (call_arg_text(call, "status", ARG_OPTIONAL, sizeof status_name - 1, status_name,
                      sizeof status_name) &&
        (status = order_status_parse(status_name)) < 0)
        call_arg_invalid(call, "status", "is no order status");
    call_arg_text(call, "user_id", ARG_OPTIONAL, ORDER_USER_MAX, user_id, sizeof user_id);
    call_arg_text(call, "cursor", ARG_OPTIONAL, ORDER_ID_MAX, cursor, sizeof cursor);
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, 100, &limit);
    if (!call_args_ok(call) || !s_reader(call, self, user, &admin))
        return;
    if (!admin) {
        if (user_id[0] && !streq(user_id, user)) {
            call_fail(call, ERR_FORBIDDEN, "a customer sees only its own orders");
            return;
        }
        snprintf(user_id, sizeof user_id, "%s", user);
    }
    char ids[100][ORDER_ID_MAX + 1];
    int count = 0;
    bool more = false;
    order_store_status_t st =
        order_store_list(self->orders, user_id, status, cursor, (int)limit, ids, &count, &more);
    if (st != ORDER_OK) {
        orders_fail_store(call, st);
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "items");
    /* An order removed between the list and its read is left out: count
     * those first, since the array's size goes before its items. */
    int live = 0;
    bool ok[100];
    for (int i = 0; i < count; i++)
        live += ok[i] = order_store_get(self->orders, ids[i], self->scratch) == ORDER_OK;
    msgpack_pack_array(pk, (size_t)live);
    for (int i = 0; i < count; i++)
        if (ok[i] && order_store_get(self->orders, ids[i], self->scratch) == ORDER_OK)
            order_view_pack(pk, self->scratch);
    mp_pack_str(pk, "next_cursor");
    if (more && count > 0)
        mp_pack_str(pk, ids[count - 1]);
    else
        msgpack_pack_nil(pk);
}

/* ---- cancel ---- */

typedef struct {
    saga_t *saga;
    int lease_ms;
    bool started; /* a paid order: the refund comes next */
} s_cancel_t;

static int s_cancel_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    s_cancel_t *c = arg;
    if (!c->saga->admin && !streq(o->user_id, c->saga->user))
        return S_REFUSE_NOT_YOURS;
    if (o->status == ORDER_PAYMENT_FAILED) {
        o->status = ORDER_CANCELLED;
        return 0;
    }
    if (o->status != ORDER_PAID)
        return S_REFUSE_TRANSITION;
    int64_t now = call_now_ms();
    if (order_has_step(o, STEP_CANCEL_ASKED) && o->lease[0] && o->lease_until_ms > now)
        return S_REFUSE_BUSY;
    if (!order_has_step(o, STEP_CANCEL_ASKED))
        order_add_step(o, STEP_CANCEL_ASKED, now);
    snprintf(o->lease, sizeof o->lease, "%s", c->saga->lease);
    o->lease_until_ms = now + c->lease_ms;
    c->started = true;
    return 0;
}

/* order.cancel {id} -> order */
void orders_order_cancel(call_t *call, void *state)
{
    orders_state_t *self = state;
    char id[ORDER_ID_MAX + 1] = "";
    s_order_id(call, id);
    saga_t *saga = s_saga(call);
    if (!saga || !call_args_ok(call) || !orders_caller(call, self, saga->user, &saga->admin))
        return;
    saga_new_lease(self->shared, saga->lease);
    s_cancel_t c = {saga, self->shared->settings.lease_ms, false};
    int refusal = 0;
    order_store_status_t status =
        order_store_change(self->orders, id, s_cancel_fn, &c, &saga->order, &refusal);
    if (status == ORDER_REFUSED) {
        if (refusal == S_REFUSE_TRANSITION)
            call_fail(call, ERR_INVALID_TRANSITION,
                      "only a paid or payment_failed order can be cancelled");
        else if (refusal == S_REFUSE_BUSY)
            call_fail(call, ERR_CONFLICT, "a cancel of this order is under way");
        else
            call_fail(call, ERR_NOT_FOUND, "no such order");
        return;
    }
    if (status != ORDER_OK) {
        orders_fail_store(call, status);
        return;
    }
    if (!c.started) {
        order_view_reply(call, &saga->order);
        return;
    }
    saga_drive(call, self, saga); /* refund, release, cancelled */
}

/* ---- the admin's transitions ---- */

static int s_ship_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    int to = *(const int *)arg;
    bool ok =
        (to == ORDER_SHIPPED && o->status == ORDER_PAID && !order_has_step(o, STEP_CANCEL_ASKED)) ||
        (to == ORDER_DELIVERED && o->status == ORDER_SHIPPED);
    if (!ok)
        return S_REFUSE_TRANSITION;
    o->status = to;
    return 0;
}

/* order.set_status {id, status} (admin) -> order */
void orders_order_set_status(call_t *call, void *state)
{
    orders_state_t *self = state;
    char id[ORDER_ID_MAX + 1] = "", name[24] = "", user[AUTH_SUB_MAX + 1];
    int to = -1;
    s_order_id(call, id);
    if (call_arg_text(call, "status", ARG_REQUIRED, sizeof name - 1, name, sizeof name) &&
        (to = order_status_parse(name)) < 0)
        call_arg_invalid(call, "status", "is no order status");
    auth_identity_t who;
    if (!call_args_ok(call) || !auth_require_admin(self->verifier, call, &who))
        return;
    (void)user;
    int refusal = 0;
    order_store_status_t status =
        order_store_change(self->orders, id, s_ship_fn, &to, self->scratch, &refusal);
    if (status == ORDER_REFUSED) {
        char message[96];
        snprintf(message, sizeof message, "an order cannot go to %s from where it is", name);
        call_fail(call, ERR_INVALID_TRANSITION, message);
        return;
    }
    if (status != ORDER_OK) {
        orders_fail_store(call, status);
        return;
    }
    order_view_reply(call, self->scratch);
}

/* ---- a refund made in payments ---- */

/* Only a paid, shipped or delivered order becomes refunded; one being
 * cancelled (its own refund) or cancelled already is left to the cancel;
 * one refunded already stays so (the refund's replay). */
static int s_refunded_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    (void)arg;
    if (o->status == ORDER_REFUNDED || o->status == ORDER_CANCELLED ||
        order_has_step(o, STEP_CANCEL_ASKED))
        return S_REFUSE_DONE;
    if (o->status != ORDER_PAID && o->status != ORDER_SHIPPED && o->status != ORDER_DELIVERED)
        return S_REFUSE_TRANSITION;
    o->status = ORDER_REFUNDED;
    return 0;
}

/* order.payment_refunded {order_id} (the caller payments, once an admin's
 * refund brought the order's payment to refunded in full) -> order */
void orders_order_payment_refunded(call_t *call, void *state)
{
    orders_state_t *self = state;
    if (!streq(call_caller(call), "payments")) {
        call_fail(call, ERR_FORBIDDEN, "order.payment_refunded is the payments service's");
        return;
    }
    char id[ORDER_ID_MAX + 1] = "";
    call_arg_text(call, "order_id", ARG_REQUIRED, ORDER_ID_MAX, id, sizeof id);
    if (!call_args_ok(call))
        return;
    int refusal = 0;
    order_store_status_t status =
        order_store_change(self->orders, id, s_refunded_fn, NULL, self->scratch, &refusal);
    if (status == ORDER_REFUSED && refusal == S_REFUSE_DONE)
        status = order_store_get(self->orders, id, self->scratch);
    else if (status == ORDER_REFUSED) {
        call_fail(call, ERR_INVALID_TRANSITION,
                  "only a paid, shipped or delivered order is refunded");
        return;
    }
    if (status != ORDER_OK) {
        orders_fail_store(call, status);
        return;
    }
    order_view_reply(call, self->scratch);
}

/* ---- recovery's entry ---- */

typedef struct {
    saga_t *saga;
    const orders_shared_t *shared;
} s_claim_t;

static int s_claim_fn(order_t *o, order_change_t *change, void *arg)
{
    (void)change;
    s_claim_t *c = arg;
    bool work = o->status == ORDER_PENDING || o->compensate ||
                (o->status == ORDER_PAID && order_has_step(o, STEP_CANCEL_ASKED));
    if (!work)
        return S_REFUSE_DONE;
    int64_t now = call_now_ms();
    if (o->lease[0] && saga_lease_is_ours(c->shared, o->lease) && o->lease_until_ms > now)
        return S_REFUSE_BUSY;
    snprintf(o->lease, sizeof o->lease, "%s", c->saga->lease);
    o->lease_until_ms = now + c->shared->settings.lease_ms;
    return 0;
}

/* order.recover {order_id} (the caller orders) -> order, once driven to
 * where it can go now; unavailable when it must be tried again later. */
void orders_order_recover(call_t *call, void *state)
{
    orders_state_t *self = state;
    if (!streq(call_caller(call), "orders")) {
        call_fail(call, ERR_FORBIDDEN, "order.recover is the orders service's own");
        return;
    }
    char id[ORDER_ID_MAX + 1] = "";
    call_arg_text(call, "order_id", ARG_REQUIRED, ORDER_ID_MAX, id, sizeof id);
    saga_t *saga = s_saga(call);
    if (!saga || !call_args_ok(call))
        return;
    saga->recovering = true;
    saga->admin = true;
    saga_new_lease(self->shared, saga->lease);
    s_claim_t c = {saga, self->shared};
    int refusal = 0;
    order_store_status_t status =
        order_store_change(self->orders, id, s_claim_fn, &c, &saga->order, &refusal);
    if (status == ORDER_REFUSED && refusal == S_REFUSE_DONE) {
        if (order_store_get(self->orders, id, self->scratch) == ORDER_OK)
            order_view_reply(call, self->scratch);
        else
            call_fail(call, ERR_NOT_FOUND, "no such order");
        return;
    }
    if (status == ORDER_REFUSED) {
        call_fail(call, ERR_UNAVAILABLE, "a live saga of this process holds the order");
        return;
    }
    if (status != ORDER_OK) {
        orders_fail_store(call, status);
        return;
    }
    saga_drive(call, self, saga);
}

/* ---- ops.check ---- */

typedef struct {
    msgpack_packer *pk;
    mpout_t out;
    int problems;
} s_problems_t;

static void s_problem(const char *check, const char *id, const char *message, void *arg)
{
    s_problems_t *p = arg;
    if (++p->problems > 100)
        return;
    msgpack_pack_map(p->pk, 3);
    mp_pack_str(p->pk, "check");
    mp_pack_str(p->pk, check);
    mp_pack_str(p->pk, "id");
    mp_pack_str(p->pk, id);
    mp_pack_str(p->pk, "message");
    mp_pack_str(p->pk, message);
}

/* ops.check {} (admin or the operator) -> {ok, problems, counts} */
void orders_ops_check(call_t *call, void *state)
{
    orders_state_t *self = state;
    char user[AUTH_SUB_MAX + 1];
    bool admin;
    if (!call_args_ok(call) || !s_reader(call, self, user, &admin))
        return;
    if (!admin) {
        call_fail(call, ERR_FORBIDDEN, "ops.check is for admins and the operator");
        return;
    }
    s_problems_t p = {0};
    mpout_init(&p.out, 0);
    msgpack_packer pk;
    mpout_packer(&p.out, &pk);
    p.pk = &pk;
    long counts[ORDER_STATUS_COUNT], keys = 0;
    order_store_status_t st = order_store_check(self->orders, s_problem, &p, counts, &keys);
    if (st != ORDER_OK || p.out.failed) {
        mpout_destroy(&p.out);
        orders_fail_store(call, st == ORDER_OK ? ORDER_UNAVAILABLE : st);
        return;
    }
    int shown = p.problems > 100 ? 100 : p.problems;
    msgpack_packer *r = call_reply(call);
    msgpack_pack_map(r, 3);
    mp_pack_str(r, "ok");
    if (p.problems == 0)
        msgpack_pack_true(r);
    else
        msgpack_pack_false(r);
    mp_pack_str(r, "problems");
    msgpack_pack_array(r, (size_t)shown);
    if (p.out.buf.size)
        mp_pack_raw(r, p.out.buf.data, p.out.buf.size);
    mp_pack_str(r, "counts");
    msgpack_pack_map(r, ORDER_STATUS_COUNT + 2);
    for (int i = 0; i < ORDER_STATUS_COUNT; i++) {
        mp_pack_str(r, order_status_name(i));
        msgpack_pack_int64(r, counts[i]);
    }
    mp_pack_str(r, "idempotency_keys");
    msgpack_pack_int64(r, keys);
    mp_pack_str(r, "problems");
    msgpack_pack_int64(r, p.problems);
    mpout_destroy(&p.out);
}

/*  payments.c - the `payments` service: its state, who may call it, the
 *  table of requests running, the reads, ops.check and the dispatch
 *  table. See payments.h; the charge, void and settle steps are in
 *  charge.c, refunds in refund.c.
 *
 *  Each worker owns a payment store handle and a token verifier; the
 *  store's environment and keys are shared (payments_shared_t, made by
 *  service.c). Every reply that shows a payment shows the contract's
 *  fields and nothing of the card but brand and last4.
 *
 *  The table of requests running (order id -> how many, and until when)
 *  is the process's, behind a mutex: a settle must know whether a charge
 *  of its order is under way in any worker. A request that a restarted
 *  worker drops never ends its note; the note's time (the end of its
 *  budget) makes it stop counting, and a sweep drops such notes once the
 *  table is large. ops.check reads the books in one snapshot
 *  (payment_store_check) and answers at most 100 problems, with the
 *  number of all of them in counts.problems.
 *
 *  STORE_NO_SPACE (a write found the disk or the map full) answers
 *  unavailable "storage is full" with retry_after (call_fail_no_space).
 */
#include "actors/payments/payments_impl.h"
#include "actors/events_since.h"

/* ------------------------------------------------------------------ */
/* State                                                               */

void *payments_state_new(void *shared_ptr)
{
    payments_shared_t *shared = shared_ptr;
    payments_state_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = shared;
    self->store = payment_store_open(shared->store);
    self->verifier = auth_verifier_new(shared->public_pem, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    if (!self->store || !self->verifier) {
        void *state = self;
        payments_state_destroy(&state);
        return NULL;
    }
    return self;
}

void payments_state_destroy(void **state)
{
    if (!state || !*state)
        return;
    payments_state_t *self = *state;
    payment_store_close(&self->store);
    auth_verifier_destroy(&self->verifier);
    free(self);
    *state = NULL;
}

/* ------------------------------------------------------------------ */
/* Shared helpers                                                      */

bool payments_caller_allowed_as(payments_state_t *self, call_t *call, char *scope,
                                size_t scope_size)
{
    if (streq(call_caller(call), "orders")) {
        snprintf(scope, scope_size, "orders");
        return true;
    }
    auth_identity_t who;
    if (!auth_require_admin(self->verifier, call, &who))
        return false;
    snprintf(scope, scope_size, "user:%s", who.sub);
    return true;
}

bool payments_caller_allowed(payments_state_t *self, call_t *call)
{
    char scope[AUTH_SUB_MAX + 8];
    return payments_caller_allowed_as(self, call, scope, sizeof scope);
}

bool payments_reader_allowed(payments_state_t *self, call_t *call)
{
    if (streq(call_caller(call), "retailctl") && !call_request(call)->token)
        return true;
    return payments_caller_allowed(self, call);
}

/* Entries left behind by requests that never ended (a worker restarted
 * with calls held) are dropped once the table holds this many. */
#define RUNNING_SWEEP_AT 4096

int payments_running_begin(payments_shared_t *shared, const char *order_id, int64_t until_ms,
                           bool exclusive)
{
    int64_t now = zclock_mono();
    int result = 0;
    pthread_mutex_lock(&shared->running_lock);
    payments_running_t *r = zhashx_lookup(shared->running, order_id);
    if (r && r->until_ms <= now)
        r->count = 0; /* every one of them is past its budget */
    if (r && exclusive && r->count > 0)
        result = 1;
    else if (r) {
        r->count++;
        if (until_ms > r->until_ms)
            r->until_ms = until_ms;
    } else {
        if (zhashx_size(shared->running) >= RUNNING_SWEEP_AT) {
            zlistx_t *keys = zhashx_keys(shared->running);
            for (const char *key = keys ? zlistx_first(keys) : NULL; key; key = zlistx_next(keys)) {
                payments_running_t *old = zhashx_lookup(shared->running, key);
                if (old && old->until_ms <= now)
                    zhashx_delete(shared->running, key);
            }
            zlistx_destroy(&keys);
        }
        r = malloc(sizeof *r);
        if (!r || zhashx_insert(shared->running, order_id, r) != 0) {
            free(r);
            result = -1;
        } else
            *r = (payments_running_t){.count = 1, .until_ms = until_ms};
    }
    pthread_mutex_unlock(&shared->running_lock);
    return result;
}

void payments_running_end(payments_shared_t *shared, const char *order_id)
{
    pthread_mutex_lock(&shared->running_lock);
    payments_running_t *r = zhashx_lookup(shared->running, order_id);
    if (r && --r->count <= 0)
        zhashx_delete(shared->running, order_id);
    pthread_mutex_unlock(&shared->running_lock);
}

void payments_pack_payment(msgpack_packer *pk, const payment_t *p)
{
    char created[32], updated[32];
    call_rfc3339(p->created_at_ms, created);
    call_rfc3339(p->updated_at_ms, updated);
    msgpack_pack_map(pk, 11);
    mp_pack_str(pk, "id");
    mp_pack_str(pk, p->id);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, p->order_id);
    mp_pack_str(pk, "status");
    mp_pack_str(pk, payment_status_name(p->status));
    mp_pack_str(pk, "amount_cents");
    msgpack_pack_int64(pk, p->amount_cents);
    mp_pack_str(pk, "captured_cents");
    msgpack_pack_int64(pk, p->captured_cents);
    mp_pack_str(pk, "refunded_cents");
    msgpack_pack_int64(pk, p->refunded_cents);
    mp_pack_str(pk, "currency");
    mp_pack_str(pk, p->currency);
    mp_pack_str(pk, "brand");
    mp_pack_str(pk, p->brand);
    mp_pack_str(pk, "last4");
    mp_pack_str(pk, p->last4);
    mp_pack_str(pk, "created_at");
    mp_pack_str(pk, created);
    mp_pack_str(pk, "updated_at");
    mp_pack_str(pk, updated);
}

void payments_fail_store(call_t *call, store_status_t status, const char *what)
{
    char message[96];
    switch (status) {
    case STORE_OK:
        call_fail(call, ERR_INTERNAL, "no error to report");
        break;
    case STORE_NOT_FOUND:
        snprintf(message, sizeof message, "no such %s", what);
        call_fail(call, ERR_NOT_FOUND, message);
        break;
    case STORE_CONFLICT:
    case STORE_EXISTS:
        snprintf(message, sizeof message, "the %s changed meanwhile; try again", what);
        call_fail(call, ERR_CONFLICT, message);
        break;
    case STORE_UNAVAILABLE:
        call_fail(call, ERR_UNAVAILABLE, "the payments store is unavailable");
        break;
    case STORE_NO_SPACE:
        call_fail_no_space(call);
        break;
    case STORE_ERROR:
        call_fail(call, ERR_INTERNAL, "the payments store failed (see the log)");
        break;
    }
}

int payments_budget_left(const payments_state_t *self, int64_t started_ms)
{
    int64_t left = started_ms + self->shared->settings.budget_ms - zclock_mono();
    return left > 1 ? (int)left : 1;
}

int payments_ask_timeout(const payments_state_t *self, int64_t started_ms)
{
    int left = payments_budget_left(self, started_ms);
    int timeout = self->shared->settings.gateway_timeout_ms;
    return timeout < left ? timeout : left;
}

/* ------------------------------------------------------------------ */
/* Reads                                                               */

static int s_pack_entry(const log_entry_t *e, void *arg)
{
    msgpack_packer *pk = arg;
    char at[32];
    call_rfc3339(e->at_ms, at);
    msgpack_pack_map(pk, 10);
    mp_pack_str(pk, "seq");
    msgpack_pack_uint64(pk, e->seq);
    mp_pack_str(pk, "type");
    mp_pack_str(pk, payment_log_type_name(e->type));
    mp_pack_str(pk, "payment_id");
    mp_pack_str(pk, e->payment_id);
    mp_pack_str(pk, "order_id");
    mp_pack_str(pk, e->order_id);
    mp_pack_str(pk, "amount_cents");
    msgpack_pack_int64(pk, e->amount_cents);
    mp_pack_str(pk, "currency");
    mp_pack_str(pk, e->currency);
    mp_pack_str(pk, "at");
    mp_pack_str(pk, at);
    mp_pack_str(pk, "details");
    if (e->details && e->details_len)
        mp_pack_raw(pk, e->details, e->details_len);
    else
        msgpack_pack_map(pk, 0);
    mp_pack_str(pk, "prev_hash");
    mp_pack_str(pk, e->prev_hash);
    mp_pack_str(pk, "hash");
    mp_pack_str(pk, e->hash);
    return 0;
}

static int s_count_entry(const log_entry_t *e, void *arg)
{
    (void)e;
    (*(uint32_t *)arg)++;
    return 0;
}

/* Packs entries until `left` are packed (the log only grows, so a second
 * pass finds at least as many as the first counted). */
typedef struct {
    msgpack_packer *pk;
    uint32_t left;
} bounded_t;

static int s_pack_bounded(const log_entry_t *e, void *arg)
{
    bounded_t *b = arg;
    if (b->left == 0)
        return 1;
    b->left--;
    return s_pack_entry(e, b->pk);
}

/* payment.get {id} -> {payment, entries: [entry, oldest first]} */
static void s_get(call_t *call, void *state)
{
    payments_state_t *self = state;
    char id[PAYMENT_ID_MAX + 1];
    call_arg_text(call, "id", ARG_REQUIRED, PAYMENT_ID_MAX, id, sizeof id);
    if (!call_args_ok(call) || !payments_reader_allowed(self, call))
        return;
    payment_t p;
    uint32_t entries = 0;
    store_status_t st = payment_store_get(self->store, id, &p);
    if (st == STORE_OK)
        st = payment_log_each(self->store, 1, id, s_count_entry, &entries);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "payment");
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "payment");
    payments_pack_payment(pk, &p);
    mp_pack_str(pk, "entries");
    msgpack_pack_array(pk, entries);
    bounded_t bounded = {pk, entries};
    st = payment_log_each(self->store, 1, id, s_pack_bounded, &bounded);
    if (st != STORE_OK || bounded.left != 0)
        payments_fail_store(call, st != STORE_OK ? st : STORE_ERROR, "payment");
}

/* payment.by_order {order_id} -> payment */
static void s_by_order(call_t *call, void *state)
{
    payments_state_t *self = state;
    char order_id[PAYMENT_ORDER_ID_MAX + 1];
    call_arg_text(call, "order_id", ARG_REQUIRED, PAYMENT_ORDER_ID_MAX, order_id, sizeof order_id);
    if (!call_args_ok(call) || !payments_reader_allowed(self, call))
        return;
    payment_t p;
    store_status_t st = payment_store_by_order(self->store, order_id, &p);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "payment for that order");
        return;
    }
    payments_pack_payment(call_reply(call), &p);
}

/* An RFC 3339 time argument ("2026-12-02T07:00:00Z", fractions allowed)
 * as unix ms; records a problem when malformed. */
static bool s_arg_time(call_t *call, const char *name, int64_t *out_ms)
{
    char text[40];
    if (!call_arg_text(call, name, ARG_OPTIONAL, 39, text, sizeof text))
        return false;
    struct tm tm = {0};
    char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    int64_t ms = 0;
    if (rest && *rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*rest - '0');
        while (digits > 0 && digits < 3) {
            ms *= 10;
            digits++;
        }
    }
    if (!rest || (strcmp(rest, "Z") != 0 && strcmp(rest, "+00:00") != 0)) {
        call_arg_invalid(call, name, "must be an RFC 3339 UTC time (2026-12-02T07:00:00Z)");
        return false;
    }
    *out_ms = (int64_t)timegm(&tm) * 1000 + ms;
    return true;
}

/* payment.list {order_id?, status?, from?, to?, limit?, cursor?}
 *   -> {items: [payment, newest first], next_cursor} */
static void s_list(call_t *call, void *state)
{
    payments_state_t *self = state;
    char order_id[PAYMENT_ORDER_ID_MAX + 1], status[24], cursor[PAYMENT_ID_MAX + 1] = "";
    int64_t limit = 20;
    payment_filter_t filter = {0};
    if (call_arg_text(call, "order_id", ARG_OPTIONAL, PAYMENT_ORDER_ID_MAX, order_id,
                      sizeof order_id))
        filter.order_id = order_id;
    if (call_arg_text(call, "status", ARG_OPTIONAL, sizeof status - 1, status, sizeof status)) {
        filter.has_status = payment_status_parse(status, strlen(status), &filter.status);
        if (!filter.has_status)
            call_arg_invalid(call, "status", "is not a payment status");
    }
    s_arg_time(call, "from", &filter.from_ms);
    s_arg_time(call, "to", &filter.to_ms);
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, 100, &limit);
    call_arg_text(call, "cursor", ARG_OPTIONAL, PAYMENT_ID_MAX, cursor, sizeof cursor);
    if (!call_args_ok(call) || !payments_reader_allowed(self, call))
        return;
    int n = 0;
    char next[PAYMENT_ID_MAX + 1] = "";
    store_status_t st =
        payment_store_list(self->store, &filter, cursor, (int)limit, self->page, &n, next);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "payment");
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, (uint32_t)n);
    for (int i = 0; i < n; i++)
        payments_pack_payment(pk, &self->page[i]);
    mp_pack_str(pk, "next_cursor");
    if (next[0])
        mp_pack_str(pk, next);
    else
        msgpack_pack_nil(pk);
}

/* log.verify {head?} -> {ok, entries, head, anchored_seq, bad_seq?, problem?} */
static void s_verify(call_t *call, void *state)
{
    payments_state_t *self = state;
    char head[PAYMENT_HASH_HEX + 1];
    bool has_head = call_arg_text(call, "head", ARG_OPTIONAL, PAYMENT_HASH_HEX, head, sizeof head);
    if (has_head && strlen(head) != PAYMENT_HASH_HEX)
        call_arg_invalid(call, "head", "must be 64 hex digits");
    if (!call_args_ok(call) || !payments_reader_allowed(self, call))
        return;
    log_verify_t v;
    store_status_t st = payment_log_verify(self->store, has_head ? head : NULL, &v);
    if (st != STORE_OK) {
        payments_fail_store(call, st, "log");
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, v.ok ? 4 : 6);
    mp_pack_str(pk, "ok");
    v.ok ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    mp_pack_str(pk, "entries");
    msgpack_pack_uint64(pk, v.entries);
    mp_pack_str(pk, "head");
    if (v.head[0])
        mp_pack_str(pk, v.head);
    else
        msgpack_pack_nil(pk);
    mp_pack_str(pk, "anchored_seq");
    msgpack_pack_uint64(pk, v.anchored_seq);
    if (!v.ok) {
        mp_pack_str(pk, "bad_seq");
        msgpack_pack_uint64(pk, v.bad_seq);
        mp_pack_str(pk, "problem");
        mp_pack_str(pk, v.problem);
    }
}

/* log.entries {from?, limit?} -> {items: [entry], next_from}: the log in
 * order from a seq, for retailctl payments export. */
typedef struct {
    msgpack_packer *pk;
    int left;
    uint64_t next;
    int packed;
} page_t;

static int s_page_entry(const log_entry_t *e, void *arg)
{
    page_t *page = arg;
    if (page->left == 0) {
        page->next = e->seq;
        return 1;
    }
    page->left--;
    page->packed++;
    return s_pack_entry(e, page->pk);
}

static void s_entries(call_t *call, void *state)
{
    payments_state_t *self = state;
    int64_t from = 1, limit = 100;
    call_arg_int(call, "from", ARG_OPTIONAL, 1, INT64_MAX, &from);
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, 1000, &limit);
    if (!call_args_ok(call) || !payments_reader_allowed(self, call))
        return;
    /* The entries go into a buffer first: their count leads the array. */
    mpout_t out;
    mpout_init(&out, ENVELOPE_MAX_BYTES / 2);
    msgpack_packer epk;
    mpout_packer(&out, &epk);
    page_t page = {.pk = &epk, .left = (int)limit};
    store_status_t st = payment_log_each(self->store, (uint64_t)from, NULL, s_page_entry, &page);
    if (st != STORE_OK || out.failed) {
        if (st == STORE_OK)
            call_fail(call, ERR_UNAVAILABLE, "out of memory");
        else
            payments_fail_store(call, st, "log");
        mpout_destroy(&out);
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, (uint32_t)page.packed);
    if (out.buf.size)
        mp_pack_raw(pk, out.buf.data, out.buf.size) /* several values, whole */;
    mp_pack_str(pk, "next_from");
    if (page.next)
        msgpack_pack_uint64(pk, page.next);
    else
        msgpack_pack_nil(pk);
    mpout_destroy(&out);
}

/* ops.check {} -> {ok, problems: [{check, message, id?}] (at most 100),
 * counts}: the store's books (payment_store_check), for an admin or the
 * operator. */
#define CHECK_PROBLEMS_MAX 100

typedef struct {
    mpout_t out;
    msgpack_packer pk;
    int kept;
} check_problems_t;

static void s_on_problem(const char *check, const char *id, const char *message, void *arg)
{
    check_problems_t *ps = arg;
    if (ps->kept == CHECK_PROBLEMS_MAX)
        return;
    ps->kept++;
    msgpack_pack_map(&ps->pk, id[0] ? 3 : 2);
    mp_pack_str(&ps->pk, "check");
    mp_pack_str(&ps->pk, check);
    mp_pack_str(&ps->pk, "message");
    mp_pack_str(&ps->pk, message);
    if (id[0]) {
        mp_pack_str(&ps->pk, "id");
        mp_pack_str(&ps->pk, id);
    }
}

static void s_ops_check(call_t *call, void *state)
{
    payments_state_t *self = state;
    if (!call_args_ok(call))
        return;
    auth_identity_t who;
    if (!(streq(call_caller(call), "retailctl") && !call_request(call)->token) &&
        !auth_require_admin(self->verifier, call, &who))
        return; /* not even the orders service: the check is an operator's */
    check_problems_t ps = {0};
    mpout_init(&ps.out, ENVELOPE_MAX_BYTES / 2);
    mpout_packer(&ps.out, &ps.pk);
    payment_counts_t counts;
    store_status_t st = payment_store_check(self->store, s_on_problem, &ps, &counts);
    if (st != STORE_OK || ps.out.failed) {
        if (st == STORE_OK)
            call_fail(call, ERR_UNAVAILABLE, "out of memory");
        else
            payments_fail_store(call, st, "payment");
        goto cleanup;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "ok");
    counts.problems == 0 ? msgpack_pack_true(pk) : msgpack_pack_false(pk);
    mp_pack_str(pk, "problems");
    msgpack_pack_array(pk, (uint32_t)ps.kept);
    if (ps.out.buf.size)
        mp_pack_raw(pk, ps.out.buf.data, ps.out.buf.size) /* several values, whole */;
    mp_pack_str(pk, "counts");
    msgpack_pack_map(pk, 7 + PAYMENT_STATUS_COUNT);
    mp_pack_str(pk, "payments");
    msgpack_pack_int64(pk, counts.payments);
    mp_pack_str(pk, "captured_cents");
    msgpack_pack_int64(pk, counts.captured_cents);
    mp_pack_str(pk, "refunded_cents");
    msgpack_pack_int64(pk, counts.refunded_cents);
    mp_pack_str(pk, "log_entries");
    msgpack_pack_uint64(pk, counts.log_entries);
    mp_pack_str(pk, "problems");
    msgpack_pack_int64(pk, counts.problems);
    mp_pack_str(pk, "refunds_pending");
    msgpack_pack_int64(pk, counts.refunds_pending);
    mp_pack_str(pk, "to_tell");
    msgpack_pack_int64(pk, counts.to_tell);
    for (int i = 0; i < PAYMENT_STATUS_COUNT; i++) {
        mp_pack_str(pk, payment_status_name((payment_status_t)i));
        msgpack_pack_int64(pk, counts.by_status[i]);
    }
cleanup:
    mpout_destroy(&ps.out);
}

static void s_events_since(call_t *call, void *state)
{
    events_since_reply(call, ((payments_state_t *)state)->shared->outbox);
}

static const worker_op_t s_ops[] = {
    {"payment.charge", payments_charge},
    {"payment.refund", payments_refund},
    {"refund.recover", payments_refund_recover},
    {"payment.void", payments_void},
    {"payment.get", s_get},
    {"payment.list", s_list},
    {"payment.by_order", s_by_order},
    {"payment.settle", payments_settle},
    {"ops.check", s_ops_check},
    {"log.verify", s_verify},
    {"log.entries", s_entries},
    {"events.since", s_events_since},
    {NULL, NULL},
};

const worker_op_t *payments_ops(bool with_test_ops)
{
    (void)with_test_ops;
    return s_ops;
}

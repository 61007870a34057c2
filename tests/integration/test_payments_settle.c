/*  test_payments_settle.c - payment.settle and ops.check of the payments
 *  service in a whole retaild, over MDP (as the orders service and the
 *  operator's retailctl call them), with the simulated gateway.
 *
 *  Settle of every state. Final ones are answered as they are (a captured
 *  payment is not captured again: still one capture entry); an order with
 *  no payment is not_found; a charge still running in the process makes
 *  a settle answer unavailable, and once it ended the settle answers what
 *  it came to. The states a crash leaves behind are made offline, the way
 *  a crash would leave them: retaild is stopped, the test runs the
 *  simulated gateway itself on the data directory and authorizes under
 *  the charge's own key ("<order>:<attempt>:authorize"), and writes the
 *  pending or authorized payment through the payment store's API; then
 *  retaild starts again on that data and is asked to settle:
 *    pending, authorized at the gateway         -> captured (one capture)
 *    pending, authorized under an older attempt -> captured
 *    pending, declined at the gateway           -> failed
 *    pending, nothing at the gateway            -> failed ("fail" entry)
 *    authorized                                 -> captured
 *  ops.check: green after all of that (asked by retailctl and by an
 *  admin; the orders service and a customer are refused); payment.list
 *  paged by retailctl through every captured payment; then, retaild
 *  stopped again, one payment record edited in the raw LMDB (captured
 *  above what its entries say) and ops.check after the restart is red,
 *  naming that payment.
 */
#include "tests/fixture.h"
#include "tests/testutil.h"

#include "actors/payments/gateway.h"
#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "storage/payments/payment_store_impl.h"

#include <msgpack.h>
#include <signal.h>
#include <sys/wait.h>

#define APPROVED "4242424242424242"
#define DECLINED "4000000000000002"
#define CVC "8317"

/* ---- MDP ---- */

static fixture_reply_t s_call(mdpcli_t *client, const char *op, const char *token, const char *args,
                              int timeout_ms)
{
    static uint64_t next_id = 1; /* test-local */
    uint64_t id = next_id++;
    assert_int_equal(fixture_send(client, "payments", id, op, token, args), 0);
    for (;;) {
        fixture_reply_t r = fixture_recv(client, timeout_ms);
        if (!r.answered || r.id == id)
            return r;
        fixture_reply_free(&r); /* a late one of an earlier call */
    }
}

static char *s_charge_args(const char *order, int amount, const char *number)
{
    return zsys_sprintf("{\"order_id\":\"%s\",\"amount_cents\":%d,\"currency\":\"EUR\","
                        "\"card\":{\"number\":\"%s\",\"exp_month\":12,\"exp_year\":2031,"
                        "\"cvc\":\"" CVC "\"}}",
                        order, amount, number);
}

static fixture_reply_t s_settle(mdpcli_t *client, const char *order)
{
    char *args = zsys_sprintf("{\"order_id\":\"%s\"}", order);
    fixture_reply_t r = s_call(client, "payment.settle", NULL, args, 10000);
    zstr_free(&args);
    return r;
}

static const char *s_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* Settles order and asserts the answer is its payment in status. */
static void s_assert_settles_to(mdpcli_t *client, const char *order, const char *status,
                                int64_t captured)
{
    fixture_reply_t r = s_settle(client, order);
    if (!r.answered || !r.ok)
        fail_msg("settle %s: answered %d, %s %s", order, r.answered, r.code,
                 r.error ? s_str(r.error, "message") : "");
    assert_string_equal(s_str(r.data, "order_id"), order);
    if (!streq(s_str(r.data, "status"), status))
        fail_msg("settle %s: %s, not %s", order, s_str(r.data, "status"), status);
    assert_int_equal(json_integer_value(json_object_get(r.data, "captured_cents")), captured);
    fixture_reply_free(&r);
}

/* How many entries of type the payment of order has. */
static int s_entries_of(mdpcli_t *client, const char *order, const char *type)
{
    char *args = zsys_sprintf("{\"order_id\":\"%s\"}", order);
    fixture_reply_t r = s_call(client, "payment.by_order", NULL, args, 5000);
    zstr_free(&args);
    assert_true(r.answered && r.ok);
    args = zsys_sprintf("{\"id\":\"%s\"}", s_str(r.data, "id"));
    fixture_reply_free(&r);
    r = s_call(client, "payment.get", NULL, args, 5000);
    zstr_free(&args);
    assert_true(r.answered && r.ok);
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r.data, "entries"), i, e) n += streq(s_str(e, "type"), type);
    fixture_reply_free(&r);
    return n;
}

/* ---- settle of what a running retaild makes ---- */

static void test_settle_final_states(void **state)
{
    (void)state;
    fixture_opts_t opts = {.name = "retail-settle", .accounts = true, .logs = true};
    fixture_t *f = fixture_new(&opts);
    assert_non_null(f);
    mdpcli_t *orders = fixture_client(f, "orders");
    char *args = s_charge_args("s-captured", 1500, APPROVED);
    fixture_reply_t r = s_call(orders, "payment.charge", NULL, args, 10000);
    zstr_free(&args);
    assert_true(r.ok);
    fixture_reply_free(&r);
    args = s_charge_args("s-declined", 900, DECLINED);
    r = s_call(orders, "payment.charge", NULL, args, 10000);
    zstr_free(&args);
    assert_string_equal(r.code, "payment_declined");
    fixture_reply_free(&r);

    s_assert_settles_to(orders, "s-captured", "captured", 1500);
    assert_int_equal(s_entries_of(orders, "s-captured", "capture"), 1); /* not captured again */
    s_assert_settles_to(orders, "s-declined", "failed", 0);
    r = s_settle(orders, "s-nothing");
    assert_string_equal(r.code, "not_found");
    fixture_reply_free(&r);
    r = s_settle(orders, "");
    assert_string_equal(r.code, "invalid_argument");
    fixture_reply_free(&r);
    /* another caller: not with a customer's token, but with an admin's */
    mdpcli_t *other = fixture_client(f, "sys");
    r = s_call(other, "payment.settle", f->customer_token, "{\"order_id\":\"s-captured\"}", 5000);
    assert_string_equal(r.code, "forbidden");
    fixture_reply_free(&r);
    r = s_call(other, "payment.settle", f->admin_token, "{\"order_id\":\"s-captured\"}", 5000);
    assert_true(r.ok);
    fixture_reply_free(&r);
    mdpcli_destroy(&other);
    mdpcli_destroy(&orders);
    assert_int_equal(fixture_stop(f), 0);
    fixture_destroy(&f);
}

static void test_settle_while_the_charge_runs(void **state)
{
    (void)state;
    /* a slow gateway: the charge takes two answers of 800 ms */
    static const char *const env[] = {
        "RETAIL_PAYMENTS_GATEWAY_LATENCY_MS=800", "RETAIL_PAYMENTS_GATEWAY_TIMEOUT_MS=2500",
        "RETAIL_PAYMENTS_BUDGET_MS=4500", "RETAIL_REQUEST_TIMEOUT_MS=8000", NULL};
    fixture_opts_t opts = {.name = "retail-settle-running", .env = env, .logs = true};
    fixture_t *f = fixture_new(&opts);
    assert_non_null(f);
    mdpcli_t *charger = fixture_client(f, "orders");
    mdpcli_t *orders = fixture_client(f, "orders");
    char *args = s_charge_args("s-running", 700, APPROVED);
    assert_int_equal(fixture_send(charger, "payments", 1, "payment.charge", NULL, args), 0);
    zstr_free(&args);
    /* until the charge's payment exists (pending, its authorization out) */
    fixture_reply_t r = {0};
    int64_t deadline = zclock_mono() + 5000;
    do {
        fixture_reply_free(&r);
        r = s_call(orders, "payment.by_order", NULL, "{\"order_id\":\"s-running\"}", 5000);
    } while (r.answered && streq(r.code, "not_found") && zclock_mono() < deadline);
    assert_true(r.ok);
    assert_string_equal(s_str(r.data, "status"), "pending");
    fixture_reply_free(&r);
    r = s_settle(orders, "s-running");
    assert_string_equal(r.code, "unavailable");
    fixture_reply_free(&r);
    r = fixture_recv(charger, 10000);
    assert_true(r.answered && r.ok);
    assert_string_equal(s_str(r.data, "status"), "captured");
    fixture_reply_free(&r);
    s_assert_settles_to(orders, "s-running", "captured", 700);
    mdpcli_destroy(&charger);
    mdpcli_destroy(&orders);
    assert_int_equal(fixture_stop(f), 0);
    fixture_destroy(&f);
}

/* ---- the states a crash leaves, made offline ---- */

/* One request to a gateway actor over a DEALER, as call_ask_at sends it;
 * the reply's data (ok) as JSON, the caller's to json_decref. */
static json_t *s_gateway_ask(zsock_t *dealer, const char *op, const char *args_json)
{
    static uint64_t next_id = 1;
    msgpack_sbuffer args, body;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&body);
    char err[128];
    assert_int_equal(jsonpack_from_json(args_json, strlen(args_json), &args, 16, err, sizeof err),
                     0);
    uint64_t id = next_id++;
    assert_int_equal(envelope_pack_request(&body, id, op, NULL, args.data, args.size), 0);
    zmsg_t *msg = zmsg_new();
    zmsg_addmem(msg, "", 0);
    zmsg_addmem(msg, body.data, body.size);
    assert_int_equal(zmsg_send(&msg, dealer), 0);
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&body);
    zpoller_t *poller = zpoller_new(dealer, NULL);
    assert_non_null(zpoller_wait(poller, 5000));
    zpoller_destroy(&poller);
    msg = zmsg_recv(dealer);
    assert_non_null(msg);
    assert_int_equal(zmsg_size(msg), 2);
    zframe_t *reply_body = zmsg_last(msg);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    envelope_reply_t reply;
    const char *why = "";
    assert_true(envelope_decode_reply(zframe_data(reply_body), zframe_size(reply_body), &zone,
                                      &reply, &why));
    assert_true(reply.ok);
    json_t *data = NULL;
    assert_int_equal(jsonpack_to_json(&reply.data, &data, err, sizeof err), 0);
    msgpack_zone_destroy(&zone);
    zmsg_destroy(&msg);
    return data;
}

/* Authorizes amount with card number at the gateway under key; the
 * auth_id (approved) or "" (declined) into auth_id. */
static void s_gateway_authorize(zsock_t *dealer, const char *key, int amount, const char *number,
                                char auth_id[GATEWAY_ID_MAX + 1])
{
    char *args = zsys_sprintf("{\"key\":\"%s\",\"amount_cents\":%d,\"currency\":\"EUR\","
                              "\"card\":{\"number\":\"%s\",\"exp_month\":12,\"exp_year\":2031,"
                              "\"cvc\":\"" CVC "\"}}",
                              key, amount, number);
    json_t *data = s_gateway_ask(dealer, "authorize", args);
    zstr_free(&args);
    snprintf(auth_id, GATEWAY_ID_MAX + 1, "%s", s_str(data, "auth_id"));
    json_decref(data);
}

/* A pending payment of order for amount (attempt 1, or 2 when `again`). */
static void s_pending(payment_store_shared_t *shared, payment_store_t *store, const char *order,
                      int amount, bool again, payment_t *out)
{
    payment_t p = {.status = PAYMENT_PENDING,
                   .amount_cents = amount,
                   .exp_month = 12,
                   .exp_year = 2031,
                   .attempt = 1};
    snprintf(p.order_id, sizeof p.order_id, "%s", order);
    memcpy(p.currency, "EUR", 4);
    memcpy(p.brand, "visa", 5);
    memcpy(p.last4, "4242", 5);
    payment_card_fingerprint(shared, APPROVED, strlen(APPROVED), p.fingerprint);
    bool created = false;
    assert_int_equal(payment_store_begin(store, &p, out, &created), STORE_OK);
    assert_true(created);
    if (again)
        assert_int_equal(payment_store_next_attempt(store, out->id, out), STORE_OK);
}

/* What a crash between the steps leaves, in f's data (retaild stopped). */
static void s_leave_crashed_charges(fixture_t *f)
{
    gateway_config_t config = {.kind = "sim",
                               .data_dir = f->dir,
                               .endpoint = "inproc://test-settle-gateway",
                               .sim = {.seed = 1}};
    char err[256] = "";
    zactor_t *gateway = gateway_new(&config, err, sizeof err);
    if (!gateway)
        fail_msg("gateway_new: %s", err);
    zsock_t *dealer = zsock_new(ZMQ_DEALER);
    assert_non_null(dealer);
    zsock_set_linger(dealer, 0);
    assert_int_equal(zsock_connect(dealer, "%s", config.endpoint), 0);
    payment_store_shared_t *shared = payment_store_shared_new(f->dir, f->keys, err, sizeof err);
    if (!shared)
        fail_msg("payment_store_shared_new: %s", err);
    payment_store_t *store = payment_store_open(shared);
    assert_non_null(store);

    char auth_id[GATEWAY_ID_MAX + 1];
    payment_t p;
    /* crashed after the gateway authorized, before the store heard */
    s_pending(shared, store, "s-pending-auth", 1100, false, &p);
    s_gateway_authorize(dealer, "s-pending-auth:1:authorize", 1100, APPROVED, auth_id);
    assert_true(auth_id[0] != '\0');
    /* the same under an attempt before the payment's */
    s_pending(shared, store, "s-pending-old", 1200, true, &p);
    assert_int_equal(p.attempt, 2);
    s_gateway_authorize(dealer, "s-pending-old:1:authorize", 1200, APPROVED, auth_id);
    /* the gateway declined it, the store never heard */
    s_pending(shared, store, "s-pending-declined", 1300, false, &p);
    s_gateway_authorize(dealer, "s-pending-declined:1:authorize", 1300, DECLINED, auth_id);
    assert_string_equal(auth_id, "");
    /* crashed before the authorization was asked */
    s_pending(shared, store, "s-pending-none", 1400, false, &p);
    /* crashed after the authorization was stored, before the capture */
    s_pending(shared, store, "s-authorized", 1600, false, &p);
    s_gateway_authorize(dealer, "s-authorized:1:authorize", 1600, APPROVED, auth_id);
    payment_event_t ev = {
        .type = PAYMENT_EVENT_AUTHORIZE, .amount_cents = 1600, .gateway_id = auth_id};
    assert_int_equal(payment_store_apply(store, p.id, &ev, &p), STORE_OK);
    assert_int_equal(p.status, PAYMENT_AUTHORIZED);

    payment_store_close(&store);
    payment_store_shared_destroy(&shared);
    zsock_destroy(&dealer);
    gateway_destroy(&gateway);
}

/* ops.check by client (token NULL: none); the reply. */
static fixture_reply_t s_check(mdpcli_t *client, const char *token)
{
    return s_call(client, "ops.check", token, "{}", 20000);
}

/* Whether the check's problems name payment id under check. */
static bool s_problem_of(json_t *data, const char *check, const char *id)
{
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(data, "problems"), i, p)
    {
        if (streq(s_str(p, "check"), check) && streq(s_str(p, "id"), id))
            return true;
    }
    return false;
}

/* Every payment of status through retailctl's pages of limit 2; how many. */
static int s_list_all(mdpcli_t *operator, const char * status, json_t *ids)
{
    char cursor[64] = "";
    int n = 0;
    for (int pages = 0; pages < 100; pages++) {
        char *args = cursor[0] ? zsys_sprintf("{\"status\":\"%s\",\"limit\":2,\"cursor\":\"%s\"}",
                                              status, cursor)
                               : zsys_sprintf("{\"status\":\"%s\",\"limit\":2}", status);
        fixture_reply_t r = s_call(operator, "payment.list", NULL, args, 5000);
        zstr_free(&args);
        assert_true(r.answered && r.ok);
        size_t i;
        json_t *p;
        json_array_foreach(json_object_get(r.data, "items"), i, p)
        {
            assert_string_equal(s_str(p, "status"), status);
            json_array_append_new(ids, json_string(s_str(p, "order_id")));
            n++;
        }
        json_t *next = json_object_get(r.data, "next_cursor");
        bool more = json_is_string(next);
        if (more)
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        fixture_reply_free(&r);
        if (!more)
            return n;
    }
    fail_msg("payment.list did not end");
    return n;
}

static bool s_holds(json_t *array, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v) if (streq(json_string_value(v), s)) return true;
    return false;
}

/* The payment record of order's payment, in the raw LMDB of f (retaild
 * stopped), with captured_cents set to captured. */
static void s_damage(fixture_t *f, const char *payment_id, int64_t captured)
{
    char path[FIXTURE_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/payments", f->dir);
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    assert_int_equal(mdb_env_create(&env), 0);
    assert_int_equal(mdb_env_set_maxdbs(env, PAYMENT_STORE_DBS), 0);
    assert_int_equal(mdb_env_set_mapsize(env, (size_t)16 << 30), 0);
    assert_int_equal(mdb_env_open(env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(env, NULL, 0, &txn), 0);
    assert_int_equal(mdb_dbi_open(txn, payment_store_names[PAYMENT_DB_PAYMENTS], 0, &dbi), 0);
    MDB_val key = {strlen(payment_id), (void *)payment_id}, val;
    assert_int_equal(mdb_get(txn, dbi, &key, &val), 0);
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    assert_int_equal(msgpack_unpack_next(&msg, val.mv_data, val.mv_size, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(msg.data.type, MSGPACK_OBJECT_MAP);
    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &out, msgpack_sbuffer_write);
    msgpack_object_map *map = &msg.data.via.map;
    msgpack_pack_map(&pk, map->size);
    bool found = false;
    for (uint32_t i = 0; i < map->size; i++) {
        msgpack_object *k = &map->ptr[i].key;
        msgpack_pack_object(&pk, *k);
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen("captured_cents") &&
            memcmp(k->via.str.ptr, "captured_cents", k->via.str.size) == 0) {
            msgpack_pack_int64(&pk, captured);
            found = true;
        } else
            msgpack_pack_object(&pk, map->ptr[i].val);
    }
    assert_true(found);
    MDB_val edited = {out.size, out.data};
    assert_int_equal(mdb_put(txn, dbi, &key, &edited, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    msgpack_sbuffer_destroy(&out);
    msgpack_unpacked_destroy(&msg);
}

static void test_settle_after_a_crash_and_check(void **state)
{
    (void)state;
    fixture_opts_t opts = {.name = "retail-settle-crash", .accounts = true, .logs = true};
    fixture_t *f = fixture_new(&opts);
    assert_non_null(f);
    mdpcli_t *orders = fixture_client(f, "orders");
    char *args = s_charge_args("s-normal", 1000, APPROVED);
    fixture_reply_t r = s_call(orders, "payment.charge", NULL, args, 10000);
    zstr_free(&args);
    assert_true(r.ok);
    fixture_reply_free(&r);
    mdpcli_destroy(&orders);
    mdpcli_t *operator= fixture_client(f, "retailctl"); /* its certificate, before the stop */
    mdpcli_destroy(&operator);

    assert_true(WIFEXITED(fixture_kill(f, f->pid, SIGTERM)));
    s_leave_crashed_charges(f);
    assert_int_equal(fixture_restart(f), 0);

    orders = fixture_client(f, "orders");
    s_assert_settles_to(orders, "s-pending-auth", "captured", 1100);
    s_assert_settles_to(orders, "s-pending-old", "captured", 1200);
    s_assert_settles_to(orders, "s-pending-declined", "failed", 0);
    s_assert_settles_to(orders, "s-pending-none", "failed", 0);
    s_assert_settles_to(orders, "s-authorized", "captured", 1600);
    /* each once: asked again, the same, and no second capture */
    s_assert_settles_to(orders, "s-pending-auth", "captured", 1100);
    s_assert_settles_to(orders, "s-authorized", "captured", 1600);
    s_assert_settles_to(orders, "s-pending-none", "failed", 0);
    assert_int_equal(s_entries_of(orders, "s-pending-auth", "authorize"), 1);
    assert_int_equal(s_entries_of(orders, "s-pending-auth", "capture"), 1);
    assert_int_equal(s_entries_of(orders, "s-authorized", "capture"), 1);
    assert_int_equal(s_entries_of(orders, "s-pending-none", "fail"), 1);
    assert_int_equal(s_entries_of(orders, "s-pending-none", "authorize"), 0);

    /* the books: green, for the operator and an admin; not for orders */
    operator= fixture_client(f, "retailctl");
    r = s_check(operator, NULL);
    if (!r.ok || !json_is_true(json_object_get(r.data, "ok")))
        fail_msg("ops.check: %s %s", r.code, r.data ? json_dumps(r.data, 0) : "");
    json_t *counts = json_object_get(r.data, "counts");
    assert_int_equal(json_integer_value(json_object_get(counts, "payments")), 6);
    assert_int_equal(json_integer_value(json_object_get(counts, "captured")), 4);
    assert_int_equal(json_integer_value(json_object_get(counts, "failed")), 2);
    assert_int_equal(json_integer_value(json_object_get(counts, "pending")), 0);
    assert_int_equal(json_integer_value(json_object_get(counts, "captured_cents")),
                     1000 + 1100 + 1200 + 1600);
    assert_int_equal(json_array_size(json_object_get(r.data, "problems")), 0);
    fixture_reply_free(&r);
    r = s_check(orders, f->admin_token);
    assert_true(r.ok && json_is_true(json_object_get(r.data, "ok")));
    fixture_reply_free(&r);
    r = s_check(orders, NULL);
    assert_string_equal(r.code, "unauthenticated");
    fixture_reply_free(&r);
    r = s_check(orders, f->customer_token);
    assert_string_equal(r.code, "forbidden");
    fixture_reply_free(&r);
    /* the operator pages through every captured payment */
    json_t *ids = json_array();
    assert_int_equal(s_list_all(operator, "captured", ids), 4);
    assert_true(s_holds(ids, "s-normal") && s_holds(ids, "s-pending-auth") &&
                s_holds(ids, "s-pending-old") && s_holds(ids, "s-authorized"));
    json_decref(ids);
    /* ...but moves no money */
    r = s_settle(operator, "s-normal");
    assert_true(streq(r.code, "unauthenticated") || streq(r.code, "forbidden"));
    fixture_reply_free(&r);

    /* damage: a payment that says it captured more than its entries */
    r = s_call(orders, "payment.by_order", NULL, "{\"order_id\":\"s-normal\"}", 5000);
    assert_true(r.ok);
    char damaged[64];
    snprintf(damaged, sizeof damaged, "%s", s_str(r.data, "id"));
    fixture_reply_free(&r);
    mdpcli_destroy(&orders);
    mdpcli_destroy(&operator);
    assert_true(WIFEXITED(fixture_kill(f, f->pid, SIGTERM)));
    s_damage(f, damaged, 1001);
    assert_int_equal(fixture_restart(f), 0);
    operator= fixture_client(f, "retailctl");
    r = s_check(operator, NULL);
    assert_true(r.ok);
    assert_true(json_is_false(json_object_get(r.data, "ok")));
    assert_true(s_problem_of(r.data, "amounts", damaged));
    assert_true(s_problem_of(r.data, "log_sums", damaged));
    assert_true(s_problem_of(r.data, "status", damaged));
    assert_true(s_problem_of(r.data, "log", ""));
    assert_true(
        json_integer_value(json_object_get(json_object_get(r.data, "counts"), "problems")) >= 4);
    fixture_reply_free(&r);
    mdpcli_destroy(&operator);
    assert_int_equal(fixture_stop(f), 0);
    fixture_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_settle_final_states),
        cmocka_unit_test(test_settle_while_the_charge_runs),
        cmocka_unit_test(test_settle_after_a_crash_and_check),
    };
    return cmocka_run_group_tests_name("payments settle and check", tests, NULL, NULL);
}

/*  test_payments.c - the payments service in a whole retaild, over MDP (as
 *  the orders service calls it: a CURVE client named "orders") and through
 *  the bridge (an admin), with the simulated gateway.
 *
 *  Covered: every test card's outcome; a charge retried and sent 20 times
 *  at once with one order id makes one authorization and one capture; a
 *  gateway that drops answers (it did the step, the caller never heard)
 *  followed by retries charges once; partial refunds up to the captured
 *  amount and the 409 beyond; refund idempotency by key, and the key
 *  reused for another amount; callers other than orders or an admin
 *  refused (a customer's token, the bridge on a customer's behalf, another
 *  service's name); the log verifies; no card number or CVC anywhere in
 *  the data directory or the logs.
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <sys/wait.h>
#include <pthread.h>
#include <sys/stat.h>

#define APPROVED "4242424242424242"
#define DECLINED "4000000000000002"
#define NO_FUNDS "4000000000009995"
#define GATEWAY_FAILS "4000000000000119"
#define CVC "8317"

static fixture_t *s_start(const char *const *env)
{
    fixture_opts_t opts = {.name = "retail-payments", .env = env, .accounts = true, .logs = true};
    fixture_t *f = fixture_new(&opts);
    assert_non_null(f);
    return f;
}

static int s_setup(void **state)
{
    /* the access log on: it too must never show a card */
    static const char *const env[] = {"RETAIL_PAYMENTS_GATEWAY_TIMEOUT_MS=500",
                                      "RETAIL_ACCESS_LOG=1", NULL};
    *state = s_start(env);
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    fixture_destroy(&f);
    return 0;
}

/* The args of a charge of order for amount with card number. */
static char *s_charge_args(const char *order, int amount, const char *number)
{
    return zsys_sprintf("{\"order_id\":\"%s\",\"amount_cents\":%d,\"currency\":\"EUR\","
                        "\"card\":{\"number\":\"%s\",\"exp_month\":12,\"exp_year\":2031,"
                        "\"cvc\":\"" CVC "\"}}",
                        order, amount, number);
}

/* One call over client; the reply (the caller frees it). */
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

static fixture_reply_t s_charge(mdpcli_t *client, const char *order, int amount, const char *number)
{
    char *args = s_charge_args(order, amount, number);
    fixture_reply_t r = s_call(client, "payment.charge", NULL, args, 10000);
    zstr_free(&args);
    return r;
}

/* How many entries of type the payment's log has (payment.get). */
static int s_entries_of(mdpcli_t *client, const char *payment_id, const char *type)
{
    char *args = zsys_sprintf("{\"id\":\"%s\"}", payment_id);
    fixture_reply_t r = s_call(client, "payment.get", NULL, args, 5000);
    zstr_free(&args);
    assert_true(r.answered && r.ok);
    json_t *entries = json_object_get(r.data, "entries");
    int n = 0;
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e) n +=
        streq(json_string_value(json_object_get(e, "type")), type);
    fixture_reply_free(&r);
    return n;
}

static void test_test_cards(void **state)
{
    fixture_t *f = *state;
    mdpcli_t *orders = fixture_client(f, "orders");

    fixture_reply_t r = s_charge(orders, "o-approved", 1999, APPROVED);
    assert_true(r.answered);
    assert_true(r.ok);
    assert_string_equal(json_string_value(json_object_get(r.data, "status")), "captured");
    assert_int_equal(json_integer_value(json_object_get(r.data, "captured_cents")), 1999);
    assert_string_equal(json_string_value(json_object_get(r.data, "last4")), "4242");
    assert_string_equal(json_string_value(json_object_get(r.data, "brand")), "visa");
    assert_null(json_object_get(r.data, "fingerprint")); /* the contract's fields only */
    fixture_reply_free(&r);

    const char *declined[][2] = {{DECLINED, "card_declined"}, {NO_FUNDS, "insufficient_funds"}};
    for (int i = 0; i < 2; i++) {
        char order[32];
        snprintf(order, sizeof order, "o-declined-%d", i);
        r = s_charge(orders, order, 500, declined[i][0]);
        assert_true(r.answered);
        assert_false(r.ok);
        assert_string_equal(r.code, "payment_declined");
        assert_string_equal(
            json_string_value(json_object_get(json_object_get(r.error, "details"), "reason")),
            declined[i][1]);
        fixture_reply_free(&r);
        /* the same order again: the same decline, no second try */
        r = s_charge(orders, order, 500, declined[i][0]);
        assert_string_equal(r.code, "payment_declined");
        fixture_reply_free(&r);
    }

    r = s_charge(orders, "o-gateway", 700, GATEWAY_FAILS);
    assert_true(r.answered);
    assert_string_equal(r.code, "gateway_error");
    fixture_reply_free(&r);
    r = s_call(orders, "payment.by_order", NULL, "{\"order_id\":\"o-gateway\"}", 5000);
    assert_true(r.ok);
    assert_string_equal(json_string_value(json_object_get(r.data, "status")), "failed");
    fixture_reply_free(&r);

    /* bad input changes nothing */
    r = s_charge(orders, "o-luhn", 700, "4242424242424241");
    assert_string_equal(r.code, "invalid_argument");
    fixture_reply_free(&r);
    r = s_call(orders, "payment.by_order", NULL, "{\"order_id\":\"o-luhn\"}", 5000);
    assert_string_equal(r.code, "not_found");
    fixture_reply_free(&r);
    mdpcli_destroy(&orders);
}

typedef struct {
    fixture_t *f;
    char payment_id[64];
    bool ok;
} racer_t;

static void *s_racer(void *arg)
{
    racer_t *racer = arg;
    mdpcli_t *client = fixture_client(racer->f, "orders");
    char *args = s_charge_args("o-race", 4200, APPROVED);
    int64_t start = zclock_mono();
    int sent = fixture_send(client, "payments", 1, "payment.charge", NULL, args);
    zstr_free(&args);
    fixture_reply_t r = fixture_recv(client, 10000);
    if (!r.answered)
        print_message("racer: sent %d, nothing after %lld ms\n", sent,
                      (long long)(zclock_mono() - start));
    racer->ok = r.answered && r.ok &&
                streq(json_string_value(json_object_get(r.data, "status")), "captured");
    if (!racer->ok)
        print_message("racer: answered %d, code %s\n", r.answered, r.code);
    if (racer->ok)
        snprintf(racer->payment_id, sizeof racer->payment_id, "%s",
                 json_string_value(json_object_get(r.data, "id")));
    fixture_reply_free(&r);
    mdpcli_destroy(&client);
    return NULL;
}

static void test_twenty_charges_at_once_charge_once(void **state)
{
    fixture_t *f = *state;
    enum { N = 20 };
    /* the certificate first: twenty threads making it at once would race */
    mdpcli_t *first = fixture_client(f, "orders");
    mdpcli_destroy(&first);
    racer_t racers[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        racers[i] = (racer_t){.f = f};
        assert_int_equal(pthread_create(&threads[i], NULL, s_racer, &racers[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < N; i++) {
        assert_true(racers[i].ok);
        assert_string_equal(racers[i].payment_id, racers[0].payment_id);
    }
    mdpcli_t *orders = fixture_client(f, "orders");
    assert_int_equal(s_entries_of(orders, racers[0].payment_id, "authorize"), 1);
    assert_int_equal(s_entries_of(orders, racers[0].payment_id, "capture"), 1);
    mdpcli_destroy(&orders);
}

static void test_refunds(void **state)
{
    fixture_t *f = *state;
    mdpcli_t *orders = fixture_client(f, "orders");
    fixture_reply_t r = s_charge(orders, "o-refund", 1000, APPROVED);
    assert_true(r.ok);
    char id[64];
    snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.data, "id")));
    fixture_reply_free(&r);

    /* through the bridge, as an admin, with an Idempotency-Key */
    char path[128];
    snprintf(path, sizeof path, "/v1/payments/%s/refund", id);
    hc_response_t h = hc_request(f->base, "POST", path, f->admin_token, "{\"amount_cents\":300}",
                                 "Idempotency-Key: refund-one");
    if (h.status != 200)
        print_message("refund: %ld %s\n", h.status, h.text);
    assert_int_equal(h.status, 200);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(h.body, "payment"), "refunded_cents")),
        300);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(h.body, "payment"), "status")),
        "partially_refunded");
    char *first = json_dumps(h.body, JSON_SORT_KEYS);
    assert_string_equal(h.replayed, "");
    hc_response_free(&h);
    /* the same key: the same refund, not a second */
    h = hc_request(f->base, "POST", path, f->admin_token, "{\"amount_cents\":300}",
                   "Idempotency-Key: refund-one");
    assert_int_equal(h.status, 200);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(h.body, "payment"), "refunded_cents")),
        300);
    assert_string_equal(h.replayed, "true");
    hc_response_free(&h);
    /* the same key, another amount */
    h = hc_request(f->base, "POST", path, f->admin_token, "{\"amount_cents\":301}",
                   "Idempotency-Key: refund-one");
    assert_int_equal(h.status, 409);
    assert_string_equal(hc_error_code(&h), "idempotency_key_reused");
    hc_response_free(&h);
    /* beyond what was captured */
    h = hc_request(f->base, "POST", path, f->admin_token, "{\"amount_cents\":701}",
                   "Idempotency-Key: refund-two");
    assert_int_equal(h.status, 409);
    assert_string_equal(hc_error_code(&h), "conflict");
    hc_response_free(&h);
    /* the rest */
    h = hc_request(f->base, "POST", path, f->admin_token, "{}", "Idempotency-Key: refund-three");
    assert_int_equal(h.status, 200);
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(h.body, "payment"), "status")),
        "refunded");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(h.body, "payment"), "refunded_cents")),
        1000);
    hc_response_free(&h);
    h = hc_request(f->base, "POST", path, f->admin_token, "{\"amount_cents\":1}", NULL);
    assert_int_equal(h.status, 409);
    hc_response_free(&h);
    /* after later refunds, the first key still answers its first answer */
    h = hc_request(f->base, "POST", path, f->admin_token, "{\"amount_cents\":300}",
                   "Idempotency-Key: refund-one");
    assert_int_equal(h.status, 200);
    assert_string_equal(h.replayed, "true");
    char *again = json_dumps(h.body, JSON_SORT_KEYS);
    assert_string_equal(again, first);
    free(again);
    free(first);
    hc_response_free(&h);
    assert_int_equal(s_entries_of(orders, id, "refund"), 2);

    /* the admin's views */
    h = hc_request(f->base, "GET", "/v1/payments?order_id=o-refund", f->admin_token, NULL, NULL);
    assert_int_equal(h.status, 200);
    assert_int_equal(json_array_size(json_object_get(h.body, "items")), 1);
    hc_response_free(&h);
    snprintf(path, sizeof path, "/v1/payments/%s", id);
    h = hc_request(f->base, "GET", path, f->admin_token, NULL, NULL);
    assert_int_equal(h.status, 200);
    json_t *entries = json_object_get(h.body, "entries");
    assert_int_equal(json_array_size(entries), 4); /* authorize, capture, refund, refund */
    size_t i;
    json_t *e;
    json_array_foreach(entries, i, e)
    {
        /* oldest first, each entry holding its predecessor's hash (of this
         * payment's entries, the log's own chain runs through all) */
        assert_int_equal(strlen(json_string_value(json_object_get(e, "hash"))), 64);
        if (i > 0)
            assert_true(json_integer_value(json_object_get(e, "seq")) >
                        json_integer_value(json_object_get(json_array_get(entries, i - 1), "seq")));
    }
    hc_response_free(&h);
    mdpcli_destroy(&orders);
}

static void test_callers_refused(void **state)
{
    fixture_t *f = *state;
    char *args = s_charge_args("o-stranger", 100, APPROVED);
    /* another service's name, and a customer's token */
    mdpcli_t *sys = fixture_client(f, "sys");
    fixture_reply_t r = s_call(sys, "payment.charge", NULL, args, 5000);
    assert_false(r.ok);
    assert_true(streq(r.code, "unauthenticated") || streq(r.code, "forbidden"));
    fixture_reply_free(&r);
    r = s_call(sys, "payment.charge", f->customer_token, args, 5000);
    assert_string_equal(r.code, "forbidden");
    fixture_reply_free(&r);
    mdpcli_destroy(&sys);
    zstr_free(&args);
    /* the bridge on a customer's behalf */
    hc_response_t h = hc_request(f->base, "GET", "/v1/payments", f->customer_token, NULL, NULL);
    assert_int_equal(h.status, 403);
    hc_response_free(&h);
    h = hc_request(f->base, "GET", "/v1/payments/log/verify", NULL, NULL, NULL);
    assert_int_equal(h.status, 401);
    hc_response_free(&h);
    mdpcli_t *orders = fixture_client(f, "orders");
    r = s_call(orders, "payment.by_order", NULL, "{\"order_id\":\"o-stranger\"}", 5000);
    assert_string_equal(r.code, "not_found"); /* nothing was charged */
    fixture_reply_free(&r);
    mdpcli_destroy(&orders);
}

/* True when a file under dir holds needle. */
static bool s_tree_holds(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    if (!d)
        return false;
    bool found = false;
    struct dirent *entry;
    while (!found && (entry = readdir(d))) {
        if (streq(entry->d_name, ".") || streq(entry->d_name, ".."))
            continue;
        char *path = zsys_sprintf("%s/%s", dir, entry->d_name);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            found = s_tree_holds(path, needle);
        else {
            size_t len = 0;
            char *bytes = tu_slurp(path, &len);
            if (bytes)
                found = memmem(bytes, len, needle, strlen(needle)) != NULL;
            free(bytes);
        }
        zstr_free(&path);
    }
    closedir(d);
    return found;
}

static void test_log_verifies_and_no_card_anywhere(void **state)
{
    fixture_t *f = *state;
    hc_response_t h =
        hc_request(f->base, "GET", "/v1/payments/log/verify", f->admin_token, NULL, NULL);
    assert_int_equal(h.status, 200);
    assert_true(json_is_true(json_object_get(h.body, "ok")));
    assert_true(json_integer_value(json_object_get(h.body, "entries")) >= 6);
    hc_response_free(&h);
    assert_int_equal(fixture_stop(f), 0); /* the logs are whole now */
    /* retailctl reads the log straight from the data directory */
    char *out = zsys_sprintf("%s/verify.out", f->dir);
    const char *verify[] = {"--data-dir", f->dir, "payments", "verify", NULL};
    tu_spawn_t how = {.program = "retailctl", .argv = verify, .clean = true, .out_path = out};
    assert_int_equal(tu_wait(tu_spawn(&how), 20000), 0);
    char *text = tu_slurp(out, NULL);
    assert_non_null(text);
    json_t *verdict = json_loads(text, 0, NULL);
    assert_true(json_is_true(json_object_get(verdict, "ok")));
    int64_t entries = json_integer_value(json_object_get(verdict, "entries"));
    char head[72];
    snprintf(head, sizeof head, "%s", json_string_value(json_object_get(verdict, "head")));
    json_decref(verdict);
    free(text);
    const char *with_head[] = {"--data-dir", f->dir, "payments", "verify", "--head", head, NULL};
    how.argv = with_head;
    assert_int_equal(tu_wait(tu_spawn(&how), 20000), 0);
    const char *bad_head[] = {
        "--data-dir", f->dir,   "payments",
        "verify",     "--head", "0000000000000000000000000000000000000000000000000000000000000000",
        NULL};
    how.argv = bad_head;
    int status = tu_wait(tu_spawn(&how), 20000);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    /* the export: an action line and the entry, per entry, in order */
    char *ndjson = zsys_sprintf("%s/export.ndjson", f->dir);
    const char *export[] = {"--data-dir", f->dir, "payments", "export", NULL};
    how.argv = export;
    how.out_path = ndjson;
    assert_int_equal(tu_wait(tu_spawn(&how), 20000), 0);
    text = tu_slurp(ndjson, NULL);
    assert_non_null(text);
    int64_t lines = 0, seq = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_t *doc = json_loads(line, 0, NULL);
        assert_non_null(doc);
        if (lines % 2 == 0)
            assert_string_equal(
                json_string_value(json_object_get(json_object_get(doc, "index"), "_index")),
                "retail-payments-log");
        else {
            assert_int_equal(json_integer_value(json_object_get(doc, "seq")), ++seq);
            assert_non_null(json_object_get(doc, "prev_hash"));
        }
        json_decref(doc);
    }
    assert_int_equal(lines, 2 * entries);
    free(text);
    zstr_free(&ndjson);
    zstr_free(&out);

    /* The card numbers anywhere; the CVC as a string would be stored or
     * logged (JSON, or msgpack's 4-byte string): its bare digits turn up
     * by chance in hex ids and hashes. */
    const char *secrets[] = {APPROVED,      DECLINED,      NO_FUNDS,
                             GATEWAY_FAILS, "\"" CVC "\"", "\xa4" CVC};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        if (s_tree_holds(f->dir, secrets[i]))
            fail_msg("%s is in the data directory or a log", secrets[i]);
    }
}

/* A gateway that drops a third of its answers (it did the step; the
 * service never heard): charges retried until they end charge once. */
static void test_dropped_answers_charge_once(void **state)
{
    (void)state;
    static const char *const env[] = {"RETAIL_PAYMENTS_GATEWAY_DROP_PERCENT=30",
                                      "RETAIL_PAYMENTS_GATEWAY_TIMEOUT_MS=150", NULL};
    fixture_t *f = s_start(env);
    mdpcli_t *orders = fixture_client(f, "orders");
    for (int i = 0; i < 10; i++) {
        char order[32];
        snprintf(order, sizeof order, "o-drop-%d", i);
        fixture_reply_t r = {0};
        for (int tries = 0; tries < 20; tries++) {
            fixture_reply_free(&r);
            r = s_charge(orders, order, 100 + i, APPROVED);
            if (r.answered && (r.ok || !streq(r.code, "timeout")))
                break;
        }
        assert_true(r.ok);
        char id[64];
        snprintf(id, sizeof id, "%s", json_string_value(json_object_get(r.data, "id")));
        fixture_reply_free(&r);
        assert_int_equal(s_entries_of(orders, id, "authorize"), 1);
        assert_int_equal(s_entries_of(orders, id, "capture"), 1);
    }
    mdpcli_destroy(&orders);
    assert_int_equal(fixture_stop(f), 0);
    fixture_destroy(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_test_cards),
        cmocka_unit_test(test_twenty_charges_at_once_charge_once),
        cmocka_unit_test(test_refunds),
        cmocka_unit_test(test_callers_refused),
        cmocka_unit_test(test_log_verifies_and_no_card_anywhere),
    };
    const struct CMUnitTest alone[] = {
        cmocka_unit_test(test_dropped_answers_charge_once),
    };
    int failed = cmocka_run_group_tests_name("payments", tests, s_setup, s_teardown);
    return failed + cmocka_run_group_tests_name("payments with a lossy gateway", alone, NULL, NULL);
}

/*  test_gateway.c - the simulated payment gateway (actors/payments/gateway.h).
 *
 *  Each test starts the real gateway actor on a private inproc endpoint
 *  with a fresh data directory and talks to it as the payments service
 *  does (call_ask_at): a plain DEALER sending [empty][envelope] and
 *  reading [empty][reply envelope]. Arguments are written as JSON and
 *  replies read back as JSON (protocol/jsonpack.h), so a test reads like
 *  the contract. Every reply's id is checked against the request's.
 */
#include "tests/testutil.h"

#include "actors/payments/gateway.h"
#include "protocol/envelope.h"
#include "protocol/jsonpack.h"

#include <czmq.h>
#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define VISA_OK "4242424242424242"
#define VISA_DECLINED "4000000000000002"
#define VISA_NO_FUNDS "4000000000009995"
#define VISA_ERROR "4000000000000119"
#define MASTERCARD_OK "5555555555554444"
#define AMEX_OK "378282246310005"
/* CVCs the tests send; none may reach the data directory. */
#define CVC_3 "737"
#define CVC_4 "9183"
#define EXPIRY "\"exp_month\":12,\"exp_year\":2099"

typedef struct {
    char *dir;
    char endpoint[64];
    gateway_config_t config;
    zactor_t *gateway;
    zsock_t *client;
    uint64_t next_id;
} fixture_t;

typedef struct {
    bool answered;
    bool ok;
    char code[32];
    json_t *data;  /* ok: the data */
    json_t *error; /* !ok: the error map */
} reply_t;

static void s_reply_free(reply_t *r)
{
    json_decref(r->data);
    json_decref(r->error);
    *r = (reply_t){0};
}

static void s_start(fixture_t *f)
{
    char err[256] = "";
    f->gateway = gateway_new(&f->config, err, sizeof err);
    if (!f->gateway)
        fail_msg("gateway_new: %s", err);
}

static void s_stop(fixture_t *f)
{
    gateway_destroy(&f->gateway);
    assert_null(f->gateway);
}

/* A new client: one connected before a restart may not find the new
 * gateway's endpoint (inproc does not reconnect). */
static void s_connect(fixture_t *f)
{
    zsock_destroy(&f->client);
    f->client = zsock_new(ZMQ_DEALER);
    assert_non_null(f->client);
    zsock_set_linger(f->client, 0);
    zsock_set_sndtimeo(f->client, 5000); /* a send with no peer fails, not hangs */
    assert_int_equal(zsock_connect(f->client, "%s", f->endpoint), 0);
}

static fixture_t *s_fixture(gateway_sim_config_t sim)
{
    static int counter = 0;
    fixture_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_tempdir("test-gateway");
    snprintf(f->endpoint, sizeof f->endpoint, "inproc://test-gateway-%d", ++counter);
    f->config =
        (gateway_config_t){.kind = "sim", .data_dir = f->dir, .endpoint = f->endpoint, .sim = sim};
    s_start(f);
    s_connect(f);
    f->next_id = 1;
    return f;
}

static int s_setup(void **state)
{
    *state = s_fixture((gateway_sim_config_t){.seed = 1});
    return 0;
}

static int s_teardown(void **state)
{
    fixture_t *f = *state;
    zsock_destroy(&f->client);
    gateway_destroy(&f->gateway);
    tu_rmtree(f->dir);
    zstr_free(&f->dir);
    free(f);
    return 0;
}

/* Sends op with args (JSON text of an object, or NULL) under id. */
static void s_send(fixture_t *f, uint64_t id, const char *op, const char *args_json)
{
    msgpack_sbuffer args, body;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&body);
    char err[128];
    if (args_json &&
        jsonpack_from_json(args_json, strlen(args_json), &args, 16, err, sizeof err) != 0)
        fail_msg("bad test JSON %s: %s", args_json, err);
    assert_int_equal(envelope_pack_request(&body, id, op, NULL, args_json ? args.data : NULL,
                                           args_json ? args.size : 0),
                     0);
    zmsg_t *msg = zmsg_new();
    zmsg_addmem(msg, "", 0);
    zmsg_addmem(msg, body.data, body.size);
    assert_int_equal(zmsg_send(&msg, f->client), 0);
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&body);
}

/* Receives one reply within timeout_ms; its id into *id (0 for nil). */
static reply_t s_recv(fixture_t *f, int timeout_ms, uint64_t *id)
{
    reply_t r = {0};
    zpoller_t *poller = zpoller_new(f->client, NULL);
    void *ready = zpoller_wait(poller, timeout_ms);
    zpoller_destroy(&poller);
    if (!ready)
        return r;
    zmsg_t *msg = zmsg_recv(f->client);
    assert_non_null(msg);
    assert_int_equal(zmsg_size(msg), 2);
    zframe_t *empty = zmsg_first(msg);
    assert_int_equal(zframe_size(empty), 0);
    zframe_t *body = zmsg_next(msg);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    envelope_reply_t reply;
    const char *why = "";
    if (!envelope_decode_reply(zframe_data(body), zframe_size(body), &zone, &reply, &why))
        fail_msg("the reply does not decode: %s", why);
    *id = reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER ? reply.id.via.u64 : 0;
    r.answered = true;
    r.ok = reply.ok;
    char err[128];
    if (reply.ok)
        assert_int_equal(jsonpack_to_json(&reply.data, &r.data, err, sizeof err), 0);
    else {
        snprintf(r.code, sizeof r.code, "%s", err_code_name(reply.code));
        assert_int_equal(jsonpack_to_json(&reply.error, &r.error, err, sizeof err), 0);
    }
    msgpack_zone_destroy(&zone);
    zmsg_destroy(&msg);
    return r;
}

/* Asks op with args made from fmt and waits for its answer (which must
 * echo the id). */
static reply_t s_ask(fixture_t *f, const char *op, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    assert_true(n > 0 && (size_t)n < sizeof args);
    uint64_t id = f->next_id++;
    s_send(f, id, op, args);
    uint64_t got = 0;
    reply_t r = s_recv(f, 5000, &got);
    if (!r.answered)
        fail_msg("no answer to %s %s", op, args);
    assert_int_equal(got, id);
    return r;
}

static const char *s_str(json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : "";
}

/* authorize of amount under key with the card number (and CVC_3). */
static reply_t s_authorize(fixture_t *f, const char *key, const char *number, int amount)
{
    return s_ask(f, "authorize",
                 "{\"key\":\"%s\",\"amount_cents\":%d,\"currency\":\"EUR\","
                 "\"card\":{\"number\":\"%s\"," EXPIRY ",\"cvc\":\"" CVC_3 "\"}}",
                 key, amount, number);
}

/* An approved authorization's auth_id (copied into out). */
static void s_approved(fixture_t *f, const char *key, int amount, char out[GATEWAY_ID_MAX + 1])
{
    reply_t r = s_authorize(f, key, VISA_OK, amount);
    assert_true(r.ok);
    assert_string_equal(s_str(r.data, "outcome"), "approved");
    snprintf(out, GATEWAY_ID_MAX + 1, "%s", s_str(r.data, "auth_id"));
    assert_int_equal(strncmp(out, "auth_", 5), 0);
    s_reply_free(&r);
}

static void s_captured(fixture_t *f, const char *key, const char *auth_id, int amount,
                       char out[GATEWAY_ID_MAX + 1])
{
    reply_t r = s_ask(f, "capture", "{\"key\":\"%s\",\"auth_id\":\"%s\",\"amount_cents\":%d}", key,
                      auth_id, amount);
    assert_true(r.ok);
    assert_string_equal(s_str(r.data, "outcome"), "captured");
    snprintf(out, GATEWAY_ID_MAX + 1, "%s", s_str(r.data, "capture_id"));
    assert_int_equal(strncmp(out, "cap_", 4), 0);
    s_reply_free(&r);
}

static reply_t s_refund(fixture_t *f, const char *key, const char *capture_id, int amount)
{
    return s_ask(f, "refund", "{\"key\":\"%s\",\"capture_id\":\"%s\",\"amount_cents\":%d}", key,
                 capture_id, amount);
}

static void s_assert_error(reply_t *r, const char *code)
{
    assert_true(r->answered);
    if (r->ok)
        fail_msg("expected %s, got an ok reply", code);
    assert_string_equal(r->code, code);
    s_reply_free(r);
}

static void s_assert_declined(reply_t *r, const char *reason)
{
    assert_true(r->ok);
    assert_string_equal(s_str(r->data, "outcome"), "declined");
    assert_string_equal(s_str(r->data, "reason"), reason);
    assert_null(json_object_get(r->data, "auth_id"));
    s_reply_free(r);
}

/* ---- the factory and the card check ---- */

static void test_unknown_kind_is_named(void **state)
{
    fixture_t *f = *state;
    char err[256] = "";
    gateway_config_t config = f->config;
    config.kind = "acme-pay";
    config.endpoint = "inproc://test-gateway-unknown";
    assert_null(gateway_new(&config, err, sizeof err));
    assert_non_null(strstr(err, "acme-pay"));
    config.kind = "sim";
    config.sim.fail_percent = 101;
    assert_null(gateway_new(&config, err, sizeof err));
    assert_non_null(strstr(err, "fail_percent"));
    /* The endpoint is taken by the fixture's gateway. */
    config.sim.fail_percent = 0;
    config.endpoint = f->endpoint;
    assert_null(gateway_new(&config, err, sizeof err));
    assert_non_null(strstr(err, f->endpoint));
}

static void test_luhn(void **state)
{
    (void)state;
    const char *good[] = {VISA_OK,       VISA_DECLINED, VISA_NO_FUNDS,      VISA_ERROR,
                          MASTERCARD_OK, AMEX_OK,       "4111111111111111", "6011111111111117"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_true(gateway_luhn_valid(good[i], strlen(good[i])));
    const char *bad[] = {"4242424242424241", "4242 4242 4242 4242",  "424242424242424a",
                         "00000000000",      "42424242424242424242", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_false(gateway_luhn_valid(bad[i], strlen(bad[i])));
    assert_true(gateway_luhn_valid("000000000000", 12)); /* 12 zeros: sum 0 */
}

/* ---- authorize ---- */

static void test_test_cards(void **state)
{
    fixture_t *f = *state;
    char auth_id[GATEWAY_ID_MAX + 1], other[GATEWAY_ID_MAX + 1];
    s_approved(f, "o1:1:authorize", 1000, auth_id);
    reply_t r = s_authorize(f, "o2:1:authorize", VISA_DECLINED, 1000);
    s_assert_declined(&r, "card_declined");
    r = s_authorize(f, "o3:1:authorize", VISA_NO_FUNDS, 1000);
    s_assert_declined(&r, "insufficient_funds");
    /* Any other valid card is approved; ids are unique. */
    r = s_authorize(f, "o4:1:authorize", MASTERCARD_OK, 1000);
    assert_string_equal(s_str(r.data, "outcome"), "approved");
    snprintf(other, sizeof other, "%s", s_str(r.data, "auth_id"));
    assert_string_not_equal(other, auth_id);
    s_reply_free(&r);
    r = s_authorize(f, "o5:1:authorize", AMEX_OK, 1000);
    assert_string_equal(s_str(r.data, "outcome"), "approved");
    s_reply_free(&r);

    /* The error card fails every time, and nothing is kept under its key. */
    for (int i = 0; i < 3; i++) {
        r = s_authorize(f, "o6:1:authorize", VISA_ERROR, 1000);
        s_assert_error(&r, "gateway_error");
    }
    r = s_ask(f, "lookup", "{\"key\":\"o6:1:authorize\"}");
    assert_true(r.ok);
    assert_false(json_is_true(json_object_get(r.data, "found")));
    s_reply_free(&r);
}

static reply_t s_authorize_card(fixture_t *f, const char *key, const char *card_json)
{
    return s_ask(f, "authorize",
                 "{\"key\":\"%s\",\"amount_cents\":500,\"currency\":\"USD\",\"card\":%s}", key,
                 card_json);
}

static void test_card_checks(void **state)
{
    fixture_t *f = *state;
    static const char *const invalid[] = {
        "{\"number\":\"4242424242424241\"," EXPIRY ",\"cvc\":\"123\"}",    /* Luhn */
        "{\"number\":\"4242-4242-4242-4242\"," EXPIRY ",\"cvc\":\"123\"}", /* digits */
        "{\"number\":\"42424242\"," EXPIRY ",\"cvc\":\"123\"}",            /* too short */
        "{\"number\":\"" VISA_OK "\",\"exp_month\":13,\"exp_year\":2099,\"cvc\":\"123\"}",
        "{\"number\":\"" VISA_OK "\",\"exp_month\":0,\"exp_year\":2099,\"cvc\":\"123\"}",
        "{\"number\":\"" VISA_OK "\",\"exp_month\":12,\"exp_year\":99,\"cvc\":\"123\"}",
        "{\"number\":\"" VISA_OK "\"," EXPIRY ",\"cvc\":\"12\"}",
        "{\"number\":\"" VISA_OK "\"," EXPIRY ",\"cvc\":\"12345\"}",
        "{\"number\":\"" VISA_OK "\"," EXPIRY ",\"cvc\":\"12a\"}",
    };
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        char key[32];
        snprintf(key, sizeof key, "invalid:%zu", i);
        reply_t r = s_authorize_card(f, key, invalid[i]);
        s_assert_declined(&r, "invalid_card");
    }

    /* Good to the end of its month (UTC): this month passes, the last
     * one has expired. */
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    int year = utc.tm_year + 1900, month = utc.tm_mon + 1;
    int last_year = month == 1 ? year - 1 : year, last_month = month == 1 ? 12 : month - 1;
    char card[256];
    snprintf(card, sizeof card,
             "{\"number\":\"" VISA_OK "\",\"exp_month\":%d,\"exp_year\":%d,\"cvc\":\"" CVC_4 "\"}",
             month, year);
    reply_t r = s_authorize_card(f, "expiry:this-month", card);
    assert_string_equal(s_str(r.data, "outcome"), "approved");
    s_reply_free(&r);
    snprintf(card, sizeof card,
             "{\"number\":\"" VISA_OK "\",\"exp_month\":%d,\"exp_year\":%d,\"cvc\":\"" CVC_4 "\"}",
             last_month, last_year);
    r = s_authorize_card(f, "expiry:last-month", card);
    s_assert_declined(&r, "expired_card");
    r = s_authorize_card(f, "expiry:2020",
                         "{\"number\":\"" VISA_OK
                         "\",\"exp_month\":1,\"exp_year\":2020,\"cvc\":\"" CVC_3 "\"}");
    s_assert_declined(&r, "expired_card");
}

static bool s_lists_field(json_t *error, const char *field)
{
    json_t *fields = json_object_get(json_object_get(error, "details"), "fields");
    size_t i;
    json_t *item;
    json_array_foreach(fields, i, item)
    {
        if (strcmp(s_str(item, "field"), field) == 0)
            return true;
    }
    return false;
}

static void test_invalid_arguments_list_fields(void **state)
{
    fixture_t *f = *state;
    reply_t r = s_ask(f, "authorize",
                      "{\"key\":\"\",\"amount_cents\":\"ten\",\"currency\":\"eur\","
                      "\"card\":{\"number\":4242,\"exp_month\":\"12\",\"cvc\":null}}");
    assert_false(r.ok);
    assert_string_equal(r.code, "invalid_argument");
    const char *fields[] = {"key",         "amount_cents",   "currency",
                            "card.number", "card.exp_month", "card.exp_year",
                            "card.cvc"};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (!s_lists_field(r.error, fields[i]))
            fail_msg("%s is not among the fields", fields[i]);
    s_reply_free(&r);

    r = s_ask(f, "capture", "{\"key\":\"k\",\"amount_cents\":0}");
    assert_string_equal(r.code, "invalid_argument");
    assert_true(s_lists_field(r.error, "auth_id"));
    assert_true(s_lists_field(r.error, "amount_cents"));
    s_reply_free(&r);
    r = s_ask(f, "refund", "{\"key\":\"k\",\"capture_id\":\"cap_x\"}");
    assert_string_equal(r.code, "invalid_argument");
    assert_true(s_lists_field(r.error, "amount_cents"));
    s_reply_free(&r);
    r = s_ask(f, "lookup", "{}");
    assert_string_equal(r.code, "invalid_argument");
    assert_true(s_lists_field(r.error, "key"));
    s_reply_free(&r);
}

static void test_malformed_and_unknown_op(void **state)
{
    fixture_t *f = *state;
    zmsg_t *msg = zmsg_new();
    zmsg_addmem(msg, "", 0);
    zmsg_addstr(msg, "not msgpack at all");
    assert_int_equal(zmsg_send(&msg, f->client), 0);
    uint64_t id = 99;
    reply_t r = s_recv(f, 5000, &id);
    assert_true(r.answered);
    assert_int_equal(id, 0); /* nil: nothing to echo */
    s_assert_error(&r, "malformed_body");

    r = s_ask(f, "charge", "{}");
    s_assert_error(&r, "not_found");
}

/* ---- capture, void, refund ---- */

static void test_capture_void_refund_rules(void **state)
{
    fixture_t *f = *state;
    char auth_id[GATEWAY_ID_MAX + 1], capture_id[GATEWAY_ID_MAX + 1];
    s_approved(f, "a:1:authorize", 1000, auth_id);
    reply_t r = s_ask(f, "capture",
                      "{\"key\":\"a:1:capture\",\"auth_id\":\"%s\","
                      "\"amount_cents\":1001}",
                      auth_id);
    s_assert_error(&r, "conflict"); /* over-capture */
    s_captured(f, "a:1:capture:2", auth_id, 600, capture_id);
    r = s_ask(f, "capture", "{\"key\":\"a:1:capture:3\",\"auth_id\":\"%s\",\"amount_cents\":100}",
              auth_id);
    s_assert_error(&r, "conflict"); /* once */
    r = s_ask(f, "void", "{\"key\":\"a:1:void\",\"auth_id\":\"%s\"}", auth_id);
    s_assert_error(&r, "conflict"); /* void after capture */

    /* Refunds up to what was captured (600), not what was authorized. */
    r = s_refund(f, "a:r1", capture_id, 300);
    assert_string_equal(s_str(r.data, "outcome"), "refunded");
    char first[GATEWAY_ID_MAX + 1];
    snprintf(first, sizeof first, "%s", s_str(r.data, "refund_id"));
    assert_int_equal(strncmp(first, "ref_", 4), 0);
    s_reply_free(&r);
    r = s_refund(f, "a:r2", capture_id, 301);
    s_assert_error(&r, "conflict");
    r = s_refund(f, "a:r3", capture_id, 300);
    assert_string_equal(s_str(r.data, "outcome"), "refunded");
    assert_string_not_equal(s_str(r.data, "refund_id"), first);
    s_reply_free(&r);
    r = s_refund(f, "a:r4", capture_id, 1);
    s_assert_error(&r, "conflict");

    /* Unknown ids. */
    r = s_ask(f, "capture", "{\"key\":\"x:capture\",\"auth_id\":\"auth_nope\",\"amount_cents\":1}");
    s_assert_error(&r, "not_found");
    r = s_ask(f, "void", "{\"key\":\"x:void\",\"auth_id\":\"auth_nope\"}");
    s_assert_error(&r, "not_found");
    r = s_refund(f, "x:refund", "cap_nope", 1);
    s_assert_error(&r, "not_found");

    /* A void before any capture; then neither capture nor void again. */
    char voided[GATEWAY_ID_MAX + 1];
    s_approved(f, "b:1:authorize", 700, voided);
    r = s_ask(f, "void", "{\"key\":\"b:1:void\",\"auth_id\":\"%s\"}", voided);
    assert_true(r.ok);
    assert_string_equal(s_str(r.data, "outcome"), "voided");
    s_reply_free(&r);
    r = s_ask(f, "capture", "{\"key\":\"b:1:capture\",\"auth_id\":\"%s\",\"amount_cents\":700}",
              voided);
    s_assert_error(&r, "conflict");
    r = s_ask(f, "void", "{\"key\":\"b:2:void\",\"auth_id\":\"%s\"}", voided);
    s_assert_error(&r, "conflict");
}

/* ---- idempotency ---- */

static void s_assert_same_data(reply_t *a, reply_t *b)
{
    assert_true(a->ok && b->ok);
    if (!json_equal(a->data, b->data))
        fail_msg("a replay answered other data");
}

/* lookup of key finds op with result equal to what r answered. */
static void s_assert_lookup(fixture_t *f, const char *key, const char *op, reply_t *r)
{
    reply_t l = s_ask(f, "lookup", "{\"key\":\"%s\"}", key);
    assert_true(l.ok);
    assert_true(json_is_true(json_object_get(l.data, "found")));
    assert_string_equal(s_str(l.data, "op"), op);
    if (!json_equal(json_object_get(l.data, "result"), r->data))
        fail_msg("lookup of %s answered another result", key);
    s_reply_free(&l);
}

static void test_replays_do_nothing_twice(void **state)
{
    fixture_t *f = *state;
    /* authorize: the same auth_id; a decline stays a decline. */
    reply_t a1 = s_authorize(f, "i:1:authorize", VISA_OK, 1000);
    reply_t a2 = s_authorize(f, "i:1:authorize", VISA_OK, 1000);
    s_assert_same_data(&a1, &a2);
    s_assert_lookup(f, "i:1:authorize", "authorize", &a1);
    char auth_id[GATEWAY_ID_MAX + 1];
    snprintf(auth_id, sizeof auth_id, "%s", s_str(a1.data, "auth_id"));
    s_reply_free(&a2);
    reply_t d1 = s_authorize(f, "i:2:authorize", VISA_DECLINED, 1000);
    reply_t d2 = s_authorize(f, "i:2:authorize", VISA_DECLINED, 1000);
    s_assert_same_data(&d1, &d2);
    s_reply_free(&d1);
    s_reply_free(&d2);

    /* capture: the same capture_id, captured once. */
    const char *capture = "{\"key\":\"i:1:capture\",\"auth_id\":\"%s\",\"amount_cents\":1000}";
    reply_t c1 = s_ask(f, "capture", capture, auth_id);
    reply_t c2 = s_ask(f, "capture", capture, auth_id);
    s_assert_same_data(&c1, &c2);
    s_assert_lookup(f, "i:1:capture", "capture", &c1);
    char capture_id[GATEWAY_ID_MAX + 1];
    snprintf(capture_id, sizeof capture_id, "%s", s_str(c1.data, "capture_id"));
    s_reply_free(&c2);

    /* refund twice with one key: refunded once, so 400 more still fit
     * into the 1000 captured, and then nothing does. */
    reply_t r1 = s_refund(f, "i:1:refund:1", capture_id, 600);
    reply_t r2 = s_refund(f, "i:1:refund:1", capture_id, 600);
    s_assert_same_data(&r1, &r2);
    s_assert_lookup(f, "i:1:refund:1", "refund", &r1);
    s_reply_free(&r2);
    r2 = s_refund(f, "i:1:refund:2", capture_id, 400);
    assert_string_equal(s_str(r2.data, "outcome"), "refunded");
    s_reply_free(&r2);
    r2 = s_refund(f, "i:1:refund:3", capture_id, 1);
    s_assert_error(&r2, "conflict");

    /* void: replayed after it voided. */
    char other[GATEWAY_ID_MAX + 1];
    s_approved(f, "i:3:authorize", 50, other);
    const char *void_args = "{\"key\":\"i:3:void\",\"auth_id\":\"%s\"}";
    reply_t v1 = s_ask(f, "void", void_args, other);
    reply_t v2 = s_ask(f, "void", void_args, other);
    s_assert_same_data(&v1, &v2);
    s_assert_lookup(f, "i:3:void", "void", &v1);
    s_reply_free(&v1);
    s_reply_free(&v2);

    /* The same key with other arguments, or for another operation. */
    reply_t x = s_authorize(f, "i:1:authorize", VISA_OK, 999);
    s_assert_error(&x, "conflict");
    x = s_ask(f, "capture", "{\"key\":\"i:1:capture\",\"auth_id\":\"%s\",\"amount_cents\":900}",
              auth_id);
    s_assert_error(&x, "conflict");
    x = s_refund(f, "i:1:refund:1", capture_id, 500);
    s_assert_error(&x, "conflict");
    x = s_ask(f, "void", "{\"key\":\"i:1:authorize\",\"auth_id\":\"%s\"}", auth_id);
    s_assert_error(&x, "conflict");
    /* A replay is judged by its key's record, not by what happened since:
     * the capture replays although the authorization is captured now. */
    c2 = s_ask(f, "capture", capture, auth_id);
    s_assert_same_data(&c1, &c2);
    s_reply_free(&c2);

    s_reply_free(&a1);
    s_reply_free(&c1);
    s_reply_free(&r1);
}

static void test_lookup(void **state)
{
    fixture_t *f = *state;
    reply_t r = s_ask(f, "lookup", "{\"key\":\"never:1:authorize\"}");
    assert_true(r.ok);
    assert_true(json_is_false(json_object_get(r.data, "found")));
    assert_int_equal(json_object_size(r.data), 1);
    s_reply_free(&r);
    reply_t a = s_authorize(f, "l:1:authorize", VISA_NO_FUNDS, 10);
    s_assert_lookup(f, "l:1:authorize", "authorize", &a);
    s_reply_free(&a);
}

/* ---- durability ---- */

static void test_restart_keeps_everything(void **state)
{
    fixture_t *f = *state;
    char auth_id[GATEWAY_ID_MAX + 1], capture_id[GATEWAY_ID_MAX + 1];
    s_approved(f, "s:1:authorize", 800, auth_id);
    s_captured(f, "s:1:capture", auth_id, 800, capture_id);
    reply_t r1 = s_refund(f, "s:1:refund", capture_id, 500);
    assert_true(r1.ok);

    s_stop(f);
    s_start(f); /* same directory, same endpoint */
    s_connect(f);

    reply_t l = s_ask(f, "lookup", "{\"key\":\"s:1:authorize\"}");
    assert_true(json_is_true(json_object_get(l.data, "found")));
    assert_string_equal(s_str(json_object_get(l.data, "result"), "auth_id"), auth_id);
    s_reply_free(&l);
    s_assert_lookup(f, "s:1:refund", "refund", &r1);
    /* The money survived too: captured once, 500 of 800 refunded. */
    reply_t r = s_ask(f, "capture",
                      "{\"key\":\"s:2:capture\",\"auth_id\":\"%s\","
                      "\"amount_cents\":1}",
                      auth_id);
    s_assert_error(&r, "conflict");
    r = s_refund(f, "s:2:refund", capture_id, 301);
    s_assert_error(&r, "conflict");
    r = s_refund(f, "s:3:refund", capture_id, 300);
    assert_true(r.ok);
    s_reply_free(&r);
    reply_t r2 = s_refund(f, "s:1:refund", capture_id, 500);
    s_assert_same_data(&r1, &r2);
    s_reply_free(&r1);
    s_reply_free(&r2);
}

/* ---- faults and latency ---- */

static void s_restart_with(fixture_t *f, gateway_sim_config_t sim)
{
    s_stop(f);
    f->config.sim = sim;
    s_start(f);
    s_connect(f);
}

static void test_dropped_answer_is_done(void **state)
{
    fixture_t *f = *state;
    s_restart_with(f, (gateway_sim_config_t){.drop_percent = 100, .seed = 7});
    s_send(f, 1000, "authorize",
           "{\"key\":\"d:1:authorize\",\"amount_cents\":100,\"currency\":\"EUR\","
           "\"card\":{\"number\":\"" VISA_OK "\"," EXPIRY ",\"cvc\":\"" CVC_3 "\"}}");
    /* The lookup is sent after the authorize, so it is applied after it
     * and answered after it (one actor, answers in order): s_ask fails on
     * any answer with another id, so the authorize's was dropped, and
     * nothing more waits behind the lookup's. */
    reply_t l = s_ask(f, "lookup", "{\"key\":\"d:1:authorize\"}");
    assert_true(json_is_true(json_object_get(l.data, "found")));
    assert_string_equal(s_str(l.data, "op"), "authorize");
    json_t *result = json_object_get(l.data, "result");
    assert_string_equal(s_str(result, "outcome"), "approved");
    s_reply_free(&l);
    uint64_t id = 0;
    reply_t none = s_recv(f, 0, &id);
    assert_false(none.answered);
}

static void test_failed_request_does_nothing(void **state)
{
    fixture_t *f = *state;
    s_restart_with(f, (gateway_sim_config_t){.fail_percent = 100, .seed = 7});
    reply_t r = s_authorize(f, "e:1:authorize", VISA_OK, 100);
    s_assert_error(&r, "gateway_error");
    r = s_ask(f, "lookup", "{\"key\":\"e:1:authorize\"}");
    assert_true(json_is_false(json_object_get(r.data, "found")));
    s_reply_free(&r);
    /* Without faults the same key then succeeds: nothing held it. */
    s_restart_with(f, (gateway_sim_config_t){.seed = 7});
    char auth_id[GATEWAY_ID_MAX + 1];
    s_approved(f, "e:1:authorize", 100, auth_id);
}

static void test_latency_waits_together(void **state)
{
    fixture_t *f = *state;
    const int latency = 50, n = 64;
    s_restart_with(f, (gateway_sim_config_t){.latency_ms = latency, .seed = 3});
    int64_t start = zclock_mono();
    for (int i = 0; i < n; i++) {
        char args[512];
        snprintf(args, sizeof args,
                 "{\"key\":\"t:%d:authorize\",\"amount_cents\":100,\"currency\":\"EUR\","
                 "\"card\":{\"number\":\"" VISA_OK "\"," EXPIRY ",\"cvc\":\"" CVC_4 "\"}}",
                 i);
        s_send(f, (uint64_t)(5000 + i), "authorize", args);
    }
    bool seen[64] = {false};
    for (int i = 0; i < n; i++) {
        uint64_t id = 0;
        reply_t r = s_recv(f, 5000, &id);
        assert_true(r.answered);
        assert_true(r.ok);
        assert_true(id >= 5000 && id < 5000 + (uint64_t)n);
        assert_false(seen[id - 5000]);
        seen[id - 5000] = true;
        s_reply_free(&r);
    }
    int64_t elapsed = zclock_mono() - start;
    assert_true(elapsed >= latency); /* each waited its latency */
    assert_true(elapsed < 1000);     /* but together: 64 x 50 ms would be 3.2 s */
}

/* ---- card data ---- */

/* What must never be in the data directory: the card numbers as text
 * anywhere, and the CVCs and the names of the card's secret fields as
 * msgpack strs, the form a record would keep them in. (Bare CVC digits
 * are not looked for: three hex digits turn up in random ids.) */
static const char *const s_numbers[] = {VISA_OK,    VISA_DECLINED, VISA_NO_FUNDS,
                                        VISA_ERROR, MASTERCARD_OK, AMEX_OK};
static const char *const s_packed[] = {CVC_3, CVC_4, "123", "cvc", "number"};

typedef struct {
    int files;
    char found[512]; /* the first hit, "" for none */
} s_scan_t;

static void s_scan_bytes(s_scan_t *scan, const char *path, const char *bytes, size_t len)
{
    for (size_t i = 0; i < sizeof s_numbers / sizeof s_numbers[0] && !scan->found[0]; i++)
        if (memmem(bytes, len, s_numbers[i], strlen(s_numbers[i])))
            snprintf(scan->found, sizeof scan->found, "%s holds %s", path, s_numbers[i]);
    for (size_t i = 0; i < sizeof s_packed / sizeof s_packed[0] && !scan->found[0]; i++) {
        msgpack_sbuffer str;
        msgpack_sbuffer_init(&str);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &str, msgpack_sbuffer_write);
        assert_int_equal(mp_pack_str(&pk, s_packed[i]), 0);
        if (memmem(bytes, len, str.data, str.size))
            snprintf(scan->found, sizeof scan->found, "%s holds the str %s", path, s_packed[i]);
        msgpack_sbuffer_destroy(&str);
    }
}

/* Every regular file under dir, recursively. */
static void s_scan_dir(s_scan_t *scan, const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *entry;
    while ((entry = readdir(d))) {
        if (streq(entry->d_name, ".") || streq(entry->d_name, ".."))
            continue;
        char *path = zsys_sprintf("%s/%s", dir, entry->d_name);
        struct stat st;
        assert_int_equal(lstat(path, &st), 0);
        if (S_ISDIR(st.st_mode))
            s_scan_dir(scan, path);
        else if (S_ISREG(st.st_mode)) {
            size_t len = 0;
            char *bytes = tu_slurp(path, &len);
            assert_non_null(bytes);
            scan->files++;
            s_scan_bytes(scan, path, bytes, len);
            free(bytes);
        }
        zstr_free(&path);
    }
    closedir(d);
}

static void test_no_card_data_in_the_directory(void **state)
{
    fixture_t *f = *state;
    /* Every test card and both CVCs go through, approved or not. */
    test_test_cards(state);
    test_card_checks(state);
    char auth_id[GATEWAY_ID_MAX + 1], capture_id[GATEWAY_ID_MAX + 1];
    s_approved(f, "c:1:authorize", 100, auth_id);
    s_captured(f, "c:1:capture", auth_id, 100, capture_id);
    s_stop(f); /* everything written and closed */

    s_scan_t scan = {0};
    s_scan_dir(&scan, f->dir);
    assert_true(scan.files >= 2); /* data.mdb and lock.mdb at least */
    if (scan.found[0])
        fail_msg("card data in the data directory: %s", scan.found);

    /* The record does hold what it may, so the scan read real records:
     * "last4" and the str "4242" (0xa4 = octal 244 is its header). */
    char *data = zsys_sprintf("%s/gateway-sim/data.mdb", f->dir);
    size_t len = 0;
    char *bytes = tu_slurp(data, &len);
    assert_non_null(bytes);
    assert_non_null(memmem(bytes, len, "last4\2444242", 10));
    free(bytes);
    zstr_free(&data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unknown_kind_is_named, s_setup, s_teardown),
        cmocka_unit_test(test_luhn),
        cmocka_unit_test_setup_teardown(test_test_cards, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_card_checks, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_invalid_arguments_list_fields, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_malformed_and_unknown_op, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_capture_void_refund_rules, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_replays_do_nothing_twice, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_lookup, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_restart_keeps_everything, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_dropped_answer_is_done, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_failed_request_does_nothing, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_latency_waits_together, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_card_data_in_the_directory, s_setup, s_teardown),
    };
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("gateway", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

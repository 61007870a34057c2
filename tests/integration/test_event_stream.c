/*  test_event_stream.c - the event stream end to end (API.md "Events";
 *  protocol/SPEC.md "Events"): the outboxes, the relays, the proxy in
 *  retaild, events.since and retailctl watch.
 *
 *  - Every type: a shop's day through HTTP (products made, changed,
 *    deleted; orders paid, declined, cancelled, shipped, delivered and
 *    refunded) seen by a subscriber over CURVE TCP with an allowed
 *    certificate. Each change's event arrives once, with its data; a
 *    write that fails (a taken sku) publishes nothing; per source the
 *    seqs run 1, 2, 3... with no gap, and events.since from 1 returns
 *    exactly what the stream delivered. A stranger's certificate gets
 *    nothing at all.
 *  - Replay: events.since from a seq in the middle, and retailctl watch
 *    --since SOURCE:SEQ printing the same events as JSON lines.
 *  - A crash between commit and publish (RETAIL_EVENTS_CRASH_BEFORE_PUBLISH,
 *    a test hook: the relay SIGKILLs the process the first time it is
 *    about to send): after the restart the event is there with its seq,
 *    once, and nothing is missing.
 *  - The events role apart: relays publish over CURVE TCP to a proxy in
 *    another process, and what was committed before it ran still comes.
 *  - Trimming: with RETAIL_EVENTS_KEEP_COUNT=3 the outbox keeps the three
 *    newest published events, and a watch that needs older ones says so
 *    (exit status 4).
 *
 *  The subscriber is known to be connected once it has received an event
 *  made for that purpose (a product), never after a sleep.
 */
#include "protocol/jsonpack.h"
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <jansson.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <string.h>

#define WAIT_MS 20000
#define CARD_OK "4242424242424242"
#define CARD_DECLINED "4000000000000002"

/* ---- HTTP ---- */

static hc_response_t s_send(const fixture_t *s, const char *method, const char *path,
                            const char *token, json_t *body, const char *header)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    hc_request_t q = {.url = s->base,
                      .path = path,
                      .method = method,
                      .token = token,
                      .body = text,
                      .header = header,
                      .timeout_ms = 20000};
    hc_response_t r = hc_try(&q);
    free(text);
    return r;
}

static void s_category(fixture_t *s, char id[64])
{
    hc_response_t r = s_send(s, "POST", "/v1/categories", s->admin_token,
                             json_pack("{s:s}", "name", "Events"), NULL);
    hc_expect(&r, 201, "create category");
    snprintf(id, 64, "%s", hc_str(r.body, "category.id"));
    hc_response_free(&r);
}

/* A product; the status it was answered, and its id when 201. */
static long s_product(fixture_t *s, const char *category, const char *sku, json_int_t stock,
                      json_t *attributes, char id[64])
{
    json_t *body = json_pack("{s:s, s:s, s:s, s:i, s:s, s:s, s:I}", "sku", sku, "name", sku,
                             "description", "an event test product", "price_cents", 250, "currency",
                             "EUR", "category_id", category, "stock", stock);
    if (attributes)
        json_object_set_new(body, "attributes", attributes);
    hc_response_t r = s_send(s, "POST", "/v1/products", s->admin_token, body, NULL);
    long status = r.status;
    if (status == 201 && id)
        snprintf(id, 64, "%s", hc_str(r.body, "product.id"));
    hc_response_free(&r);
    return status;
}

static json_t *s_order_body(const char *product, int qty, const char *card)
{
    return json_pack("{s:[{s:s, s:i}], s:{s:s, s:i, s:i, s:s}, s:{s:s, s:s, s:s, s:s, s:s}}",
                     "items", "product_id", product, "qty", qty, "payment", "card_number", card,
                     "exp_month", 12, "exp_year", 2099, "cvc", "123", "shipping_address", "name",
                     "Eve", "line1", "1 Stream St", "city", "Paris", "postal_code", "75001",
                     "country", "FR");
}

/* An order; its status, and its id into id when one was made. */
static long s_order(fixture_t *s, const char *product, int qty, const char *card, char id[64])
{
    hc_response_t r =
        s_send(s, "POST", "/v1/orders", s->customer_token, s_order_body(product, qty, card), NULL);
    long status = r.status;
    const char *oid = r.status == 201 ? hc_str(r.body, "order.id") : NULL;
    snprintf(id, 64, "%s", oid ? oid : "");
    hc_response_free(&r);
    return status;
}

/* ---- the stream ---- */

static zsock_t *s_subscriber(fixture_t *s, zcert_t *cert)
{
    zsock_t *sub = zsock_new(ZMQ_SUB);
    assert_non_null(sub);
    keys_apply_client(sub, cert, s->broker_key);
    zsock_set_subscribe(sub, "");
    assert_int_equal(zsock_connect(sub, "%s", s->events_endpoint), 0);
    return sub;
}

/* The next event within timeout_ms as JSON {type, seq, at, source, data}
 * (the topic checked against type), or NULL. */
static json_t *s_next(zsock_t *sub, int timeout_ms)
{
    zpoller_t *poller = zpoller_new(sub, NULL);
    void *ready = zpoller_wait(poller, timeout_ms);
    zpoller_destroy(&poller);
    if (!ready)
        return NULL;
    zmsg_t *msg = zmsg_recv(sub);
    assert_non_null(msg);
    assert_int_equal(zmsg_size(msg), 2);
    char *topic = zmsg_popstr(msg);
    zframe_t *body = zmsg_pop(msg);
    char err[128];
    char *text = jsonpack_bytes_to_json_text(zframe_data(body), zframe_size(body), JSON_COMPACT,
                                             err, sizeof err);
    assert_non_null(text);
    json_t *event = json_loads(text, 0, NULL);
    assert_non_null(event);
    assert_string_equal(hc_str(event, "type"), topic);
    free(text);
    zstr_free(&topic);
    zframe_destroy(&body);
    zmsg_destroy(&msg);
    return event;
}

/* Makes products until sub receives the product.created of one: then the
 * subscription is in place end to end. */
static void s_sync(fixture_t *s, zsock_t *sub, const char *category, int *made)
{
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (zclock_mono() < deadline) {
        char sku[32];
        snprintf(sku, sizeof sku, "SYNC-%d", (*made)++);
        assert_int_equal(s_product(s, category, sku, 100, NULL, NULL), 201);
        json_t *event = s_next(sub, 300);
        if (event) {
            json_decref(event);
            /* drain the other sync events */
            while ((event = s_next(sub, 300)) != NULL)
                json_decref(event);
            return;
        }
    }
    fail_msg("the subscriber never received an event");
}

/* Collects events from sub into list until want of them are there, or
 * fails after WAIT_MS. */
static void s_collect(zsock_t *sub, json_t *list, size_t want)
{
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (json_array_size(list) < want && zclock_mono() < deadline) {
        json_t *event = s_next(sub, 500);
        if (event)
            json_array_append_new(list, event);
    }
    if (json_array_size(list) < want) {
        char *text = json_dumps(list, JSON_INDENT(1));
        print_error("got %zu events of %zu:\n%s\n", json_array_size(list), want, text);
        free(text);
    }
    assert_int_equal(json_array_size(list), want);
}

/* How many events of list have type and, when key is set, data.key ==
 * value. */
static int s_count(json_t *list, const char *type, const char *key, const char *value)
{
    int n = 0;
    size_t i;
    json_t *event;
    json_array_foreach(list, i, event)
    {
        if (!streq(hc_str(event, "type"), type))
            continue;
        if (key) {
            const char *v = json_string_value(json_object_get(json_object_get(event, "data"), key));
            if (!v || !streq(v, value))
                continue;
        }
        n++;
    }
    return n;
}

/* The event of list with type and data.key == value; asserts there is one. */
static json_t *s_find(json_t *list, const char *type, const char *key, const char *value)
{
    size_t i;
    json_t *event;
    json_array_foreach(list, i, event)
    {
        const char *v = json_string_value(json_object_get(json_object_get(event, "data"), key));
        if (streq(hc_str(event, "type"), type) && v && streq(v, value))
            return json_object_get(event, "data");
    }
    print_error("no %s with %s %s\n", type, key, value);
    fail();
    return NULL;
}

static json_int_t s_data_int(json_t *data, const char *key)
{
    json_t *v = json_object_get(data, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* ---- events.since ---- */

/* events.since of service from seq since: the reply's data (the caller
 * decrefs). */
static json_t *s_since(mdpcli_t *client, const char *service, json_int_t since)
{
    char args[64];
    snprintf(args, sizeof args, "{\"since\": %lld, \"limit\": 1000}", (long long)since);
    assert_int_equal(fixture_send(client, service, 1, "events.since", NULL, args), 0);
    fixture_reply_t reply = fixture_recv(client, WAIT_MS);
    if (!reply.ok)
        print_error("events.since of %s: %s\n", service, reply.code);
    assert_true(reply.ok);
    json_t *data = json_incref(reply.data);
    fixture_reply_free(&reply);
    return data;
}

/* Every event of source in list, in stream order, has seq one above the
 * one before, from 1, and events.since from 1 returns the same events. */
static void s_check_source(mdpcli_t *client, json_t *list, const char *source, json_int_t first)
{
    json_t *since = s_since(client, source, 1);
    json_t *kept = json_object_get(since, "events");
    json_int_t want = first;
    size_t i, k = 0;
    json_t *event;
    json_array_foreach(list, i, event)
    {
        if (!streq(hc_str(event, "source"), source))
            continue;
        assert_int_equal(hc_int(event, "seq"), want);
        want++;
        /* the outbox's copy is the one the stream carried */
        while (k < json_array_size(kept) &&
               hc_int(json_array_get(kept, k), "seq") < hc_int(event, "seq"))
            k++;
        assert_true(k < json_array_size(kept));
        assert_true(json_equal(json_array_get(kept, k), event));
    }
    /* nothing the stream did not carry */
    assert_int_equal(hc_int(since, "next"), want);
    json_decref(since);
}

/* ---- retailctl watch ---- */

/* Runs retailctl watch with args; its exit status (-1: no exit), its output into *out
 * (the caller frees). */
static int s_watch(fixture_t *s, const char *const *args, char **out)
{
    char *path = zsys_sprintf("%s/watch.out", s->dir);
    const char *argv[16] = {"--data-dir", s->dir, "--broker", s->broker_endpoint, "watch"};
    int n = 5;
    for (int i = 0; args[i] && n < 15; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    char events_env[128];
    snprintf(events_env, sizeof events_env, "RETAIL_EVENTS_ENDPOINT=%s", s->events_endpoint);
    const char *env[] = {events_env, NULL};
    tu_spawn_t how = {
        .program = "retailctl", .argv = argv, .env = env, .clean = true, .out_path = path};
    int status = tu_wait(tu_spawn(&how), 60000);
    *out = tu_slurp(path, NULL);
    zstr_free(&path);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Asserts that text (Prometheus text format) gives each metric family's
 * samples in one group, as its parsers require: a family, once left,
 * never comes back. */
static void s_metrics_grouped(const char *text)
{
    zhashx_t *done = zhashx_new();
    char current[128] = "";
    const char *line = text;
    while (*line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > 0 && line[0] != '#') {
            size_t name_len = strcspn(line, "{ ");
            char name[128];
            snprintf(name, sizeof name, "%.*s", (int)(name_len < len ? name_len : len), line);
            /* a histogram's series are one family */
            const char *suffixes[] = {"_bucket", "_sum", "_count"};
            for (int k = 0; k < 3; k++) {
                size_t n = strlen(name), m = strlen(suffixes[k]);
                if (n > m && streq(name + n - m, suffixes[k]))
                    name[n - m] = '\0';
            }
            if (!streq(name, current)) {
                if (zhashx_lookup(done, name))
                    fail_msg("/metrics: %s comes in two groups", name);
                if (current[0])
                    zhashx_insert(done, current, "");
                snprintf(current, sizeof current, "%s", name);
            }
        }
        line += len + (end ? 1 : 0);
    }
    zhashx_destroy(&done);
}

/* ---- the tests ---- */

static void test_every_type(void **state)
{
    (void)state;
    fixture_opts_t opts = {.name = "retail-events", .accounts = true, .logs = true};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    mdpcli_t *client = fixture_client(s, "events-test");
    zcert_t *cert = keys_ensure(s->keys, "events-sub");
    assert_non_null(cert);
    assert_int_equal(keys_allow(s->keys, cert, "events-sub"), 0);
    zcert_t *stranger_cert = zcert_new(); /* on no allow-list */
    zsock_t *sub = s_subscriber(s, cert);
    zsock_t *stranger = s_subscriber(s, stranger_cert);

    char category[64];
    s_category(s, category);
    int synced = 0;
    s_sync(s, sub, category, &synced);

    /* products: made (one with a threshold of its own), changed, a taken
     * sku refused */
    char lamp[64], chair[64];
    assert_int_equal(
        s_product(s, category, "LAMP", 10, json_pack("{s:i}", "low_stock_threshold", 3), lamp),
        201);
    assert_int_equal(s_product(s, category, "CHAIR", 6, NULL, chair), 201);
    assert_int_equal(s_product(s, category, "LAMP", 10, NULL, NULL), 409);
    char path[128];
    hc_response_t r;
    snprintf(path, sizeof path, "/v1/products/%s", chair);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:i}", "price_cents", 300), NULL);
    hc_expect(&r, 200, "patch chair");
    hc_response_free(&r);

    /* orders: paid (lamp 10 -> 3: at its threshold), declined, cancelled,
     * shipped, delivered and refunded */
    char paid[64], declined[64], later[64];
    assert_int_equal(s_order(s, lamp, 7, CARD_OK, paid), 201);
    assert_int_equal(s_order(s, lamp, 1, CARD_DECLINED, declined), 402);
    r = s_send(s, "GET", "/v1/orders?status=payment_failed", s->admin_token, NULL, NULL);
    hc_expect(&r, 200, "the declined order");
    assert_int_equal(json_array_size(json_object_get(r.body, "items")), 1);
    snprintf(declined, sizeof declined, "%s",
             hc_str(json_array_get(json_object_get(r.body, "items"), 0), "id"));
    hc_response_free(&r);
    snprintf(path, sizeof path, "/v1/orders/%s/cancel", paid);
    r = s_send(s, "POST", path, s->customer_token, NULL, NULL);
    hc_expect(&r, 200, "cancel the paid order");
    hc_response_free(&r);
    assert_int_equal(s_order(s, chair, 1, CARD_OK, later), 201);
    snprintf(path, sizeof path, "/v1/orders/%s/status", later);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "status", "shipped"), NULL);
    hc_expect(&r, 200, "ship");
    hc_response_free(&r);
    r = s_send(s, "PATCH", path, s->admin_token, json_pack("{s:s}", "status", "delivered"), NULL);
    hc_expect(&r, 200, "deliver");
    hc_response_free(&r);
    snprintf(path, sizeof path, "/v1/orders/%s", later);
    r = s_send(s, "GET", path, s->admin_token, NULL, NULL);
    hc_expect(&r, 200, "get the delivered order");
    char payment[64];
    snprintf(payment, sizeof payment, "%s", hc_str(r.body, "order.payment.id"));
    hc_response_free(&r);
    snprintf(path, sizeof path, "/v1/payments/%s/refund", payment);
    r = s_send(s, "POST", path, s->admin_token, json_pack("{}"), NULL);
    hc_expect(&r, 200, "refund in full");
    hc_response_free(&r);
    snprintf(path, sizeof path, "/v1/products/%s", chair);
    r = s_send(s, "DELETE", path, s->admin_token, NULL, NULL);
    hc_expect(&r, 204, "delete chair");
    hc_response_free(&r);

    /* What each change must have published. */
    struct {
        const char *type;
        const char *key;
        const char *value;
        int n;
    } want[] = {
        {"product.created", "id", lamp, 1},
        {"product.created", "id", chair, 1},
        {"product.updated", "id", chair, 1},
        {"product.deleted", "id", chair, 1},
        {"stock.low", "product_id", lamp, 1},
        {"stock.low", "product_id", chair, 1},
        {"order.created", "order_id", paid, 1},
        {"order.paid", "order_id", paid, 1},
        {"order.cancelled", "order_id", paid, 1},
        {"order.created", "order_id", declined, 1},
        {"order.payment_failed", "order_id", declined, 1},
        {"order.created", "order_id", later, 1},
        {"order.paid", "order_id", later, 1},
        {"order.shipped", "order_id", later, 1},
        {"order.delivered", "order_id", later, 1},
        {"order.refunded", "order_id", later, 1},
        {"payment.captured", "order_id", paid, 1},
        {"payment.refunded", "order_id", paid, 1},
        {"payment.failed", "order_id", declined, 1},
        {"payment.captured", "order_id", later, 1},
        {"payment.refunded", "order_id", later, 1},
    };
    size_t total = 0;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        total += (size_t)want[i].n;
    json_t *list = json_array();
    s_collect(sub, list, total);
    /* and nothing more comes */
    json_t *extra = s_next(sub, 500);
    if (extra) {
        char *text = json_dumps(extra, 0);
        print_error("an event beyond those of the changes: %s\n", text);
        free(text);
    }
    assert_null(extra);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int n = s_count(list, want[i].type, want[i].key, want[i].value);
        if (n != want[i].n)
            print_error("%s with %s %s: %d, expected %d\n", want[i].type, want[i].key,
                        want[i].value, n, want[i].n);
        assert_int_equal(n, want[i].n);
    }

    /* the data */
    json_t *d = s_find(list, "product.created", "id", lamp);
    assert_string_equal(hc_str(d, "sku"), "LAMP");
    assert_int_equal(s_data_int(d, "stock"), 10);
    assert_int_equal(s_data_int(d, "price_cents"), 250);
    d = s_find(list, "product.updated", "id", chair);
    assert_int_equal(s_data_int(d, "price_cents"), 300);
    d = s_find(list, "stock.low", "product_id", lamp);
    assert_int_equal(s_data_int(d, "stock"), 3);
    assert_int_equal(s_data_int(d, "threshold"), 3);
    d = s_find(list, "stock.low", "product_id", chair);
    assert_int_equal(s_data_int(d, "stock"), 5);
    assert_int_equal(s_data_int(d, "threshold"), 5); /* the setting's default */
    d = s_find(list, "order.created", "order_id", paid);
    assert_string_equal(hc_str(d, "status"), "pending");
    assert_int_equal(s_data_int(d, "total_cents"), 7 * 250);
    assert_int_equal(json_array_size(json_object_get(d, "items")), 1);
    d = s_find(list, "order.paid", "order_id", paid);
    assert_string_equal(hc_str(d, "from"), "pending");
    assert_string_equal(hc_str(d, "currency"), "EUR");
    d = s_find(list, "order.cancelled", "order_id", paid);
    assert_string_equal(hc_str(d, "from"), "paid");
    d = s_find(list, "order.refunded", "order_id", later);
    assert_string_equal(hc_str(d, "from"), "delivered");
    d = s_find(list, "payment.captured", "order_id", paid);
    assert_int_equal(s_data_int(d, "amount_cents"), 7 * 250);
    assert_string_equal(hc_str(d, "last4"), "4242");
    d = s_find(list, "payment.refunded", "order_id", later);
    assert_string_equal(hc_str(d, "status"), "refunded");
    assert_int_equal(s_data_int(d, "refunded_cents"), 300);
    d = s_find(list, "payment.failed", "order_id", declined);
    assert_string_equal(hc_str(d, "reason"), "card_declined");
    /* no card number anywhere */
    char *text = json_dumps(list, 0);
    assert_null(strstr(text, CARD_OK));
    assert_null(strstr(text, CARD_DECLINED));
    free(text);

    /* per source, no gap, and the outbox holds what the stream carried
     * (the catalog's began with the sync products) */
    s_check_source(client, list, "orders", 1);
    s_check_source(client, list, "payments", 1);
    s_check_source(client, list, "catalog", synced + 1);

    /* the stranger got nothing */
    json_t *leaked = s_next(stranger, 200);
    assert_null(leaked);

    /* /metrics counts them */
    r = s_send(s, "GET", "/metrics", NULL, NULL, NULL);
    hc_expect(&r, 200, "metrics");
    assert_non_null(
        strstr(r.text, "retail_events_published_total{service=\"orders\",type=\"order.paid\"} 2"));
    assert_non_null(strstr(r.text, "retail_outbox_depth{service=\"payments\"} 0"));
    assert_non_null(strstr(r.text, "retail_outbox_oldest_unpublished_seconds{service=\"orders\"}"));
    s_metrics_grouped(r.text);
    hc_response_free(&r);

    json_decref(list);
    zsock_destroy(&sub);
    zsock_destroy(&stranger);
    zcert_destroy(&cert);
    zcert_destroy(&stranger_cert);
    mdpcli_destroy(&client);
    assert_int_equal(fixture_stop(s), 0);
    fixture_destroy(&s);
}

static void test_replay_and_watch(void **state)
{
    (void)state;
    fixture_opts_t opts = {.name = "retail-events-replay", .accounts = true, .logs = true};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    mdpcli_t *client = fixture_client(s, "events-test");
    char category[64], ids[5][64];
    s_category(s, category);
    for (int i = 0; i < 5; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "R-%d", i);
        assert_int_equal(s_product(s, category, sku, 50, NULL, ids[i]), 201);
    }
    /* from the middle: seq 3, 4, 5 */
    json_t *since = s_since(client, "catalog", 3);
    json_t *events = json_object_get(since, "events");
    assert_int_equal(json_array_size(events), 3);
    for (int i = 0; i < 3; i++) {
        json_t *e = json_array_get(events, (size_t)i);
        assert_int_equal(hc_int(e, "seq"), 3 + i);
        assert_string_equal(hc_str(e, "type"), "product.created");
        assert_string_equal(hc_str(e, "source"), "catalog");
        assert_string_equal(hc_str(e, "data.id"), ids[2 + i]);
    }
    assert_int_equal(hc_int(since, "first"), 1);
    assert_int_equal(hc_int(since, "next"), 6);
    json_decref(since);
    /* past the end: none yet */
    since = s_since(client, "catalog", 6);
    assert_int_equal(json_array_size(json_object_get(since, "events")), 0);
    json_decref(since);

    /* retailctl watch: the same three as JSON lines, then it stops */
    char *out = NULL;
    const char *args[] = {"product.", "--since", "catalog:3", "--count", "3", NULL};
    int status = s_watch(s, args, &out);
    if (status != 0)
        print_error("watch exited %d:\n%s\n", status, out ? out : "");
    assert_int_equal(status, 0);
    int lines = 0;
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
        json_t *e = json_loads(line, 0, NULL);
        assert_non_null(e);
        assert_int_equal(hc_int(e, "seq"), 3 + lines);
        assert_string_equal(hc_str(e, "data.id"), ids[2 + lines]);
        json_decref(e);
        lines++;
    }
    assert_int_equal(lines, 3);
    free(out);
    mdpcli_destroy(&client);
    assert_int_equal(fixture_stop(s), 0);
    fixture_destroy(&s);
}

static void test_crash_before_publish(void **state)
{
    (void)state;
    const char *env[] = {"RETAIL_TEST_OPS=1", "RETAIL_EVENTS_CRASH_BEFORE_PUBLISH=1", NULL};
    fixture_opts_t opts = {
        .name = "retail-events-crash", .accounts = true, .logs = true, .env = env};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    char category[64];
    s_category(s, category);
    /* committed, then the relay kills the process before it sends */
    char id[64] = "";
    long status = s_product(s, category, "CRASH-1", 5, NULL, id);
    int wait = fixture_kill(s, s->pid, 0);
    assert_true(WIFSIGNALED(wait) && WTERMSIG(wait) == SIGKILL);
    assert_int_equal(fixture_restart(s), 0);
    assert_true(status == 201 || status == 0 || status >= 500);
    /* the one product made is in the catalog, whether or not its answer
     * left before the crash, and its event is seq 1, once */
    hc_response_t r = s_send(s, "GET", "/v1/products?q=CRASH", NULL, NULL, NULL);
    hc_expect(&r, 200, "search");
    json_t *items = json_object_get(r.body, "items");
    assert_int_equal(json_array_size(items), 1);
    snprintf(id, sizeof id, "%s", hc_str(json_array_get(items, 0), "id"));
    hc_response_free(&r);

    mdpcli_t *client = fixture_client(s, "events-test");
    /* a subscriber after the restart, synced by a second product */
    zcert_t *cert = keys_ensure(s->keys, "events-sub");
    assert_int_equal(keys_allow(s->keys, cert, "events-sub"), 0);
    zsock_t *sub = s_subscriber(s, cert);
    int synced = 0;
    s_sync(s, sub, category, &synced);
    json_t *since = s_since(client, "catalog", 1);
    json_t *events = json_object_get(since, "events");
    assert_int_equal(json_array_size(events), 1 + (size_t)synced);
    json_t *first = json_array_get(events, 0);
    assert_int_equal(hc_int(first, "seq"), 1);
    assert_string_equal(hc_str(first, "type"), "product.created");
    assert_string_equal(hc_str(first, "data.id"), id);
    for (size_t i = 0; i < json_array_size(events); i++)
        assert_int_equal(hc_int(json_array_get(events, i), "seq"), (json_int_t)i + 1);
    json_decref(since);

    /* and watch from 1 shows it, then the sync products, in order */
    char *out = NULL;
    char count[16];
    snprintf(count, sizeof count, "%d", 1 + synced);
    const char *args[] = {"--since", "catalog:1", "--count", count, NULL};
    assert_int_equal(s_watch(s, args, &out), 0);
    json_t *line = json_loads(out, JSON_DISABLE_EOF_CHECK, NULL);
    assert_non_null(line);
    assert_int_equal(hc_int(line, "seq"), 1);
    assert_string_equal(hc_str(line, "data.id"), id);
    json_decref(line);
    free(out);

    zsock_destroy(&sub);
    zcert_destroy(&cert);
    mdpcli_destroy(&client);
    assert_int_equal(fixture_stop(s), 0);
    fixture_destroy(&s);
}

static void test_trimmed(void **state)
{
    (void)state;
    const char *env[] = {"RETAIL_EVENTS_KEEP_COUNT=3", NULL};
    fixture_opts_t opts = {
        .name = "retail-events-trim", .accounts = true, .logs = true, .env = env};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    mdpcli_t *client = fixture_client(s, "events-test");
    char category[64];
    s_category(s, category);
    for (int i = 0; i < 6; i++) {
        char sku[16];
        snprintf(sku, sizeof sku, "T-%d", i);
        assert_int_equal(s_product(s, category, sku, 50, NULL, NULL), 201);
    }
    /* the relay trims once it has published them (every second) */
    int64_t deadline = zclock_mono() + WAIT_MS;
    json_int_t first = 0;
    while (zclock_mono() < deadline) {
        json_t *since = s_since(client, "catalog", 1);
        first = hc_int(since, "first");
        size_t kept = json_array_size(json_object_get(since, "events"));
        json_decref(since);
        if (first == 4 && kept == 3)
            break;
        zclock_sleep(50);
    }
    assert_int_equal(first, 4);
    /* a watch that needs seq 1 cannot have it */
    char *out = NULL;
    const char *args[] = {"--since", "catalog:1", "--count", "6", NULL};
    assert_int_equal(s_watch(s, args, &out), 4);
    free(out);
    mdpcli_destroy(&client);
    assert_int_equal(fixture_stop(s), 0);
    fixture_destroy(&s);
}

/* The events role in a process of its own: the services' relays reach it
 * over CURVE TCP with their own certificates (the proxy checks each
 * event's source against them), and events committed while it was not
 * running are published once it is. */
static void test_events_apart(void **state)
{
    (void)state;
    const char *roles[] = {"broker",  "bridge",   "sys",    "users",
                           "catalog", "payments", "orders", NULL};
    fixture_opts_t opts = {
        .name = "retail-events-apart", .accounts = true, .logs = true, .roles = roles};
    fixture_t *s = fixture_new(&opts);
    assert_non_null(s);
    char category[64], early[64];
    s_category(s, category);
    /* before any proxy runs: kept, not lost */
    assert_int_equal(s_product(s, category, "EARLY", 5, NULL, early), 201);
    const char *events_role[] = {"events", NULL};
    assert_true(fixture_spawn(s, events_role) > 0);
    zcert_t *cert = keys_ensure(s->keys, "events-sub");
    assert_int_equal(keys_allow(s->keys, cert, "events-sub"), 0);
    zsock_t *sub = s_subscriber(s, cert);
    int synced = 0;
    s_sync(s, sub, category, &synced);
    mdpcli_t *client = fixture_client(s, "events-test");
    json_t *since = s_since(client, "catalog", 1);
    json_t *events = json_object_get(since, "events");
    assert_int_equal(json_array_size(events), 1 + (size_t)synced);
    assert_string_equal(hc_str(json_array_get(events, 0), "data.id"), early);
    json_decref(since);
    /* and the relay sent it: every product.created, EARLY's included */
    char want[128];
    snprintf(want, sizeof want,
             "retail_events_published_total{service=\"catalog\",type=\"product.created\"} %d\n",
             1 + synced);
    hc_response_t r = s_send(s, "GET", "/metrics", NULL, NULL, NULL);
    hc_expect(&r, 200, "metrics");
    if (!strstr(r.text, want))
        print_error("no %s in\n%s\n", want, r.text);
    assert_non_null(strstr(r.text, want));
    hc_response_free(&r);
    zsock_destroy(&sub);
    zcert_destroy(&cert);
    mdpcli_destroy(&client);
    assert_int_equal(fixture_stop(s), 0);
    fixture_destroy(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type),           cmocka_unit_test(test_replay_and_watch),
        cmocka_unit_test(test_crash_before_publish), cmocka_unit_test(test_trimmed),
        cmocka_unit_test(test_events_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*  test_events.c - the event stream's proxy (router/events.h) on its own.
 *
 *  Each test starts the proxy on two free TCP ports with a fresh keys
 *  directory (its own zauth, as when no broker runs in the process) and
 *  talks to it as relays and subscribers do: an XPUB publisher over inproc
 *  (trusted) or over CURVE TCP as some certificate, SUB sockets over CURVE
 *  TCP. What is checked:
 *    - an allowed subscriber receives what an in-process publisher sends,
 *      in order, and a prefix subscription gets only its prefix; a
 *      stranger's certificate (not in clients/) gets nothing while they do;
 *    - over TCP, only a service's certificate publishing its own events is
 *      forwarded ("orders" as "orders"); "alice" (allowed to connect, not a
 *      service), "orders" claiming "payments", and malformed messages are
 *      dropped and counted; a stranger never completes the handshake;
 *    - events_counts counts both.
 *  Every wait is a condition polled against a deadline. A subscriber's
 *  subscription reaches the proxy some time after it connects, so before
 *  the real events each test sends probes until every subscriber that
 *  should see them has seen one.
 */
#include "tests/testutil.h"

#include "protocol/keys.h"
#include "router/events.h"

#include <czmq.h>
#include <msgpack.h>
#include <sodium.h>
#include <zmq.h>

#define WAIT_MS 10000 /* a deadline for what should happen (sanitizer builds too) */
#define QUIET_MS 500  /* how long "receives nothing" is watched after the rest */

typedef struct {
    char *dir; /* the keys directory */
    zactor_t *events;
    char publish[64], subscribe[64];
    char server_key[KEYS_Z85_LEN + 1];
    zcert_t *watcher, *alice, *orders, *stranger;
} fx_t;

/* Services in these tests: the ones whose certificates may publish. */
static bool s_allowed(const char *name)
{
    return streq(name, "orders") || streq(name, "payments");
}

static zcert_t *s_listed(const char *dir, const char *name)
{
    zcert_t *cert = keys_ensure(dir, name);
    assert_non_null(cert);
    assert_int_equal(keys_allow(dir, cert, name), 0);
    return cert;
}

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->dir = tu_tempdir("test-events");
    /* On the allow-list before the proxy starts: the watcher (a
     * subscriber), alice (anyone's certificate) and orders (a service's). */
    f->watcher = s_listed(f->dir, "watcher");
    f->alice = s_listed(f->dir, "alice");
    f->orders = s_listed(f->dir, "orders");
    f->stranger = zcert_new(); /* nowhere on disk */
    assert_non_null(f->stranger);
    zcert_set_meta(f->stranger, "name", "watcher"); /* a name proves nothing */
    int pub_port = tu_free_port(), sub_port;
    do
        sub_port = tu_free_port();
    while (sub_port == pub_port);
    snprintf(f->publish, sizeof f->publish, "tcp://127.0.0.1:%d", pub_port);
    snprintf(f->subscribe, sizeof f->subscribe, "tcp://127.0.0.1:%d", sub_port);
    events_config_t c = {.publish_tcp = f->publish,
                         .subscribe_tcp = f->subscribe,
                         .keys_dir = f->dir,
                         .start_auth = true,
                         .publisher_allowed = s_allowed};
    f->events = events_new(&c);
    assert_non_null(f->events);
    assert_int_equal(keys_broker_public(f->dir, f->server_key), 0);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    events_destroy(&f->events);
    assert_null(f->events);
    zcert_destroy(&f->watcher);
    zcert_destroy(&f->alice);
    zcert_destroy(&f->orders);
    zcert_destroy(&f->stranger);
    tu_rmtree(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ */
/* Sockets and messages                                                */

static zsock_t *s_subscriber(fx_t *f, zcert_t *cert, const char *prefix)
{
    zsock_t *sub = zsock_new(ZMQ_SUB);
    assert_non_null(sub);
    zsock_set_linger(sub, 0);
    keys_apply_client(sub, cert, f->server_key);
    zsock_set_subscribe(sub, prefix);
    assert_int_equal(zsock_connect(sub, "%s", f->subscribe), 0);
    return sub;
}

/* A publisher as a relay makes one: an XPUB, so that the proxy's
 * subscription arriving says the connection is up. cert NULL: inproc. */
static zsock_t *s_publisher(fx_t *f, zcert_t *cert)
{
    zsock_t *pub = zsock_new(ZMQ_XPUB);
    assert_non_null(pub);
    zsock_set_linger(pub, 0);
    if (cert)
        keys_apply_client(pub, cert, f->server_key);
    assert_int_equal(zsock_connect(pub, "%s", cert ? f->publish : EVENTS_INPROC_PUBLISH), 0);
    return pub;
}

/* Whether the proxy's subscribe-to-everything reaches pub within ms. */
static bool s_subscribed(zsock_t *pub, int ms)
{
    zsock_set_rcvtimeo(pub, ms);
    zframe_t *frame = zframe_recv(pub);
    bool all = frame && zframe_size(frame) == 1 && zframe_data(frame)[0] == 1;
    zframe_destroy(&frame);
    return all;
}

/* The msgpack event {type, seq, at, source, data: {n: seq}}. */
static void s_pack_event(msgpack_sbuffer *out, const char *type, uint64_t seq, const char *source)
{
    msgpack_sbuffer_init(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 5);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, type, strlen(type));
    msgpack_pack_str_with_body(&pk, "seq", 3);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_str_with_body(&pk, "at", 2);
    msgpack_pack_int64(&pk, zclock_time());
    msgpack_pack_str_with_body(&pk, "source", 6);
    msgpack_pack_str_with_body(&pk, source, strlen(source));
    msgpack_pack_str_with_body(&pk, "data", 4);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str_with_body(&pk, "n", 1);
    msgpack_pack_uint64(&pk, seq);
}

static void s_send_raw(zsock_t *pub, const char *topic, const void *body, size_t len)
{
    zmsg_t *msg = zmsg_new();
    assert_non_null(msg);
    assert_int_equal(zmsg_addstr(msg, topic), 0);
    assert_int_equal(zmsg_addmem(msg, body, len), 0);
    assert_int_equal(zmsg_send(&msg, pub), 0);
}

static void s_send_event(zsock_t *pub, const char *type, uint64_t seq, const char *source)
{
    msgpack_sbuffer body;
    s_pack_event(&body, type, seq, source);
    s_send_raw(pub, type, body.data, body.size);
    msgpack_sbuffer_destroy(&body);
}

/* One event from sub within ms: its topic (frame 1) and seq; false when
 * none came. Asserts that the two frames agree with what was sent. */
static bool s_recv_event(zsock_t *sub, int ms, char *topic, size_t topic_size, uint64_t *seq)
{
    zsock_set_rcvtimeo(sub, ms);
    zmsg_t *msg = zmsg_recv(sub);
    if (!msg)
        return false;
    assert_int_equal(zmsg_size(msg), 2);
    char *t = zmsg_popstr(msg);
    zframe_t *body = zmsg_pop(msg);
    assert_non_null(t);
    assert_non_null(body);
    snprintf(topic, topic_size, "%s", t);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(
        msgpack_unpack_next(&u, (const char *)zframe_data(body), zframe_size(body), NULL),
        MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    *seq = 0;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        msgpack_object_kv *kv = &u.data.via.map.ptr[i];
        if (kv->key.via.str.size == 3 && memcmp(kv->key.via.str.ptr, "seq", 3) == 0)
            *seq = kv->val.via.u64;
        if (kv->key.via.str.size == 4 && memcmp(kv->key.via.str.ptr, "type", 4) == 0)
            assert_true(kv->val.via.str.size == strlen(t) &&
                        memcmp(kv->val.via.str.ptr, t, strlen(t)) == 0);
    }
    msgpack_unpacked_destroy(&u);
    zstr_free(&t);
    zframe_destroy(&body);
    zmsg_destroy(&msg);
    return true;
}

/* Sends probe events (type PROBE, seq 0) on pub every 50 ms until each of
 * subs[0..n) has received one, then drains every probe still coming, so
 * that the test's own events are the next each subscriber sees. Asserts
 * within WAIT_MS. */
#define PROBE "order.probe"
static void s_until_subscribed(zsock_t *pub, zsock_t **subs, int n)
{
    bool seen[8] = {false};
    assert_true(n <= 8);
    int64_t deadline = zclock_mono() + WAIT_MS;
    int missing = n;
    while (missing > 0) {
        assert_true(zclock_mono() < deadline);
        s_send_event(pub, PROBE, 0, "orders");
        for (int i = 0; i < n; i++) {
            char topic[64];
            uint64_t seq;
            while (!seen[i] && s_recv_event(subs[i], i == 0 ? 50 : 0, topic, sizeof topic, &seq))
                if (streq(topic, PROBE)) {
                    seen[i] = true;
                    missing--;
                }
        }
    }
    /* Probes sent before every subscriber was in may still be on their
     * way: a marker that all see, after them, ends them. */
    s_send_event(pub, "order.marker", 0, "orders");
    for (int i = 0; i < n; i++) {
        char topic[64] = "";
        uint64_t seq;
        while (!streq(topic, "order.marker")) {
            assert_true(s_recv_event(subs[i], WAIT_MS, topic, sizeof topic, &seq));
            assert_true(streq(topic, PROBE) || streq(topic, "order.marker"));
        }
    }
}

/* Polls events_counts until both reach what is wanted (within WAIT_MS),
 * then asserts that they are exactly that. */
static void s_wait_counts(fx_t *f, uint64_t want_forwarded, uint64_t want_refused)
{
    uint64_t forwarded = 0, refused = 0;
    int64_t deadline = zclock_mono() + WAIT_MS;
    while (zclock_mono() < deadline) {
        assert_int_equal(events_counts(f->events, &forwarded, &refused), 0);
        if (forwarded >= want_forwarded && refused >= want_refused)
            break;
        zclock_sleep(20); /* the interval between two looks, not a wait for it */
    }
    if (forwarded != want_forwarded || refused != want_refused)
        fail_msg("counts: forwarded %llu (want %llu), refused %llu (want %llu)",
                 (unsigned long long)forwarded, (unsigned long long)want_forwarded,
                 (unsigned long long)refused, (unsigned long long)want_refused);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

/* In order, filtered by prefix, and nothing for a stranger. */
static void test_inproc_publisher_curve_subscribers(void **state)
{
    fx_t *f = *state;
    zsock_t *pub = s_publisher(f, NULL);
    assert_true(s_subscribed(pub, WAIT_MS));
    zsock_t *all = s_subscriber(f, f->watcher, "");
    zsock_t *orders_only = s_subscriber(f, f->watcher, "order.");
    zsock_t *stranger = s_subscriber(f, f->stranger, "");
    zsock_t *subs[] = {all, orders_only};
    s_until_subscribed(pub, subs, 2);
    uint64_t forwarded_before = 0;
    assert_int_equal(events_counts(f->events, &forwarded_before, NULL), 0);

    static const char *const types[] = {"order.created", "payment.captured", "order.paid",
                                        "product.updated", "order.shipped"};
    const int N = 200;
    for (int i = 0; i < N; i++)
        s_send_event(pub, types[i % 5], (uint64_t)i + 1, "orders");

    /* Everything, in order. */
    for (int i = 0; i < N; i++) {
        char topic[64];
        uint64_t seq;
        assert_true(s_recv_event(all, WAIT_MS, topic, sizeof topic, &seq));
        assert_int_equal(seq, (uint64_t)i + 1);
        assert_string_equal(topic, types[i % 5]);
    }
    /* The prefix: order.* only, still in order. */
    for (int i = 0; i < N; i++) {
        if (strncmp(types[i % 5], "order.", 6) != 0)
            continue;
        char topic[64];
        uint64_t seq;
        assert_true(s_recv_event(orders_only, WAIT_MS, topic, sizeof topic, &seq));
        assert_int_equal(seq, (uint64_t)i + 1);
        assert_string_equal(topic, types[i % 5]);
    }
    char topic[64];
    uint64_t seq;
    assert_false(s_recv_event(orders_only, QUIET_MS, topic, sizeof topic, &seq));
    /* The stranger got nothing all along: not a probe, not an event. */
    assert_false(s_recv_event(stranger, QUIET_MS, topic, sizeof topic, &seq));

    uint64_t forwarded = 0, refused = 1;
    assert_int_equal(events_counts(f->events, &forwarded, &refused), 0);
    assert_int_equal(forwarded - forwarded_before, N);
    assert_int_equal(refused, 0);

    zsock_destroy(&stranger);
    zsock_destroy(&orders_only);
    zsock_destroy(&all);
    zsock_destroy(&pub);
}

/* Over TCP: a service's own events pass, everything else is counted. */
static void test_tcp_publishers_checked(void **state)
{
    fx_t *f = *state;
    zsock_t *orders = s_publisher(f, f->orders);
    zsock_t *alice = s_publisher(f, f->alice);
    zsock_t *stranger = s_publisher(f, f->stranger);
    assert_true(s_subscribed(orders, WAIT_MS));
    assert_true(s_subscribed(alice, WAIT_MS));
    zsock_t *sub = s_subscriber(f, f->watcher, "");
    zsock_t *subs[] = {sub};
    s_until_subscribed(orders, subs, 1); /* the probes are orders' own: they pass */
    uint64_t base_forwarded = 0, base_refused = 0;
    assert_int_equal(events_counts(f->events, &base_forwarded, &base_refused), 0);
    assert_int_equal(base_refused, 0);

    /* alice may connect (she is on the allow-list) but is no service. */
    s_send_event(alice, "order.paid", 1, "alice");
    s_send_event(alice, "order.paid", 2, "orders");
    /* orders in another's name, and malformed messages in its own */
    s_send_event(orders, "payment.captured", 1, "payments");
    s_send_raw(orders, "order.paid", "\x81\xa6source\xa6orders", 15); /* fine: passes */
    const uint64_t bad_orders = 11;
    zstr_send(orders, "one frame");
    zstr_sendx(orders, "order.paid", "\x81\xa6source\xa6orders", "third", NULL);
    s_send_raw(orders, "order.paid", "", 0);
    s_send_raw(orders, "order.paid", "\x92\xa6source\xa6orders", 15); /* an array */
    s_send_raw(orders, "order.paid", "\x81\xa6source\xa5order", 14);  /* another name */
    s_send_raw(orders, "order.paid", "\x81\xa6source\xa6orde", 13);   /* truncated */
    s_send_raw(orders, "order.paid", "\x82\xa6source\xa6orders\xa6source\xa6orders", 29);
    s_send_raw(orders, "order.paid", "\x81\xa6source\xa6orders\xc0", 16); /* trailing */
    s_send_raw(orders, "order.paid", "\xdf\xff\xff\xff\xff", 5);          /* 4G entries */
    s_send_raw(orders, "order.paid",
               "\x81\xa4"
               "data"
               "\xdd\xff\xff\xff\xff",
               11);                                            /* 4G items */
    s_send_raw(orders, "order.paid", "\x81\xc1\xa6orders", 9); /* 0xc1 key */
    /* Random bytes behind a map header: cheap, and never a pass. */
    const int RANDOM = 200;
    for (int i = 0; i < RANDOM; i++) {
        uint8_t junk[64];
        junk[0] = 0x80 | (uint8_t)(i & 0x0f);
        for (size_t k = 1; k < sizeof junk; k++)
            junk[k] = (uint8_t)randombytes_random();
        s_send_raw(orders, "order.junk", junk, 1 + (size_t)i % (sizeof junk - 1));
    }
    /* A last good one from orders: when it arrives, every message orders
     * sent before it was handled (one connection keeps its order). */
    s_send_event(orders, "order.shipped", 7, "orders");

    char topic[64];
    uint64_t seq;
    assert_true(s_recv_event(sub, WAIT_MS, topic, sizeof topic, &seq));
    assert_string_equal(topic, "order.paid"); /* the bare {source: orders} */
    assert_true(s_recv_event(sub, WAIT_MS, topic, sizeof topic, &seq));
    assert_string_equal(topic, "order.shipped");
    assert_int_equal(seq, 7);
    /* alice's two are refused, not forwarded, and orders' in another name
     * too; the count says so once alice's connection has been read. */
    s_wait_counts(f, base_forwarded + 2, 2 + 1 + bad_orders + RANDOM);
    assert_false(s_recv_event(sub, QUIET_MS, topic, sizeof topic, &seq));

    /* The stranger's handshake never completed: no subscription came. */
    assert_false(s_subscribed(stranger, QUIET_MS));

    zsock_destroy(&sub);
    zsock_destroy(&stranger);
    zsock_destroy(&alice);
    zsock_destroy(&orders);
}

/* Nothing may publish over TCP without publisher_allowed, and a proxy
 * with no TCP side at all still serves in-process subscribers. */
static void test_inproc_only(void **state)
{
    (void)state;
    events_config_t c = {.verbose = false};
    zactor_t *events = events_new(&c);
    assert_non_null(events);
    zsock_t *pub = zsock_new(ZMQ_XPUB);
    zsock_t *sub = zsock_new(ZMQ_SUB);
    assert_non_null(pub);
    assert_non_null(sub);
    assert_int_equal(zsock_connect(pub, "%s", EVENTS_INPROC_PUBLISH), 0);
    zsock_set_subscribe(sub, "");
    assert_int_equal(zsock_connect(sub, "%s", EVENTS_INPROC_SUBSCRIBE), 0);
    assert_true(s_subscribed(pub, WAIT_MS));
    zsock_t *subs[] = {sub};
    s_until_subscribed(pub, subs, 1);
    s_send_event(pub, "stock.low", 3, "catalog");
    char topic[64];
    uint64_t seq;
    assert_true(s_recv_event(sub, WAIT_MS, topic, sizeof topic, &seq));
    assert_string_equal(topic, "stock.low");
    assert_int_equal(seq, 3);
    zsock_destroy(&sub);
    zsock_destroy(&pub);
    events_destroy(&events);
    assert_int_equal(events_counts(NULL, NULL, NULL), -1);

    /* TCP without a keys directory is refused at start. */
    c.subscribe_tcp = "tcp://127.0.0.1:1";
    assert_null(events_new(&c));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_inproc_publisher_curve_subscribers, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_tcp_publishers_checked, s_setup, s_teardown),
        cmocka_unit_test(test_inproc_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

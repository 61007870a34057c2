/*  test_relay.c - the relay (actors/relay.h) between an outbox and a
 *  stand-in for the proxy: an XSUB socket bound in process.
 *
 *  What matters is what a subscriber can count on: every committed event
 *  arrives, in seq order, as the two frames the contract gives; events
 *  committed before the proxy was there are sent once it subscribes (a
 *  PUB would have dropped them); a relay started again after a clean stop
 *  sends nothing twice and carries on where it was; the published mark
 *  is written; and the stats count what was sent, by type.
 */
#include "actors/relay.h"
#include "storage/kv.h"
#include "storage/outbox.h"
#include "tests/testutil.h"

#include <czmq.h>

typedef struct {
    char *root;
    kv_t *kv;
    outbox_t *outbox;
} s_fixture_t;

static int s_setup(void **state)
{
    s_fixture_t *f = calloc(1, sizeof *f);
    f->root = tu_tempdir("test-relay");
    const char *names[] = {OUTBOX_DB_EVENTS, OUTBOX_DB_META};
    char err[256];
    f->kv = kv_open(f->root, 16 << 20, names, NULL, 2, err, sizeof err);
    assert_non_null(f->kv);
    outbox_config_t config = {.source = "orders"};
    f->outbox = outbox_new(f->kv, 0, 1, &config, err, sizeof err);
    assert_non_null(f->outbox);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    s_fixture_t *f = *state;
    outbox_destroy(&f->outbox);
    kv_close(&f->kv);
    tu_rmtree(f->root);
    zstr_free(&f->root);
    free(f);
    return 0;
}

typedef struct {
    outbox_t *outbox;
    const char *type;
    int64_t n;
} s_append_t;

static int s_append_txn(MDB_txn *txn, void *arg)
{
    s_append_t *a = arg;
    msgpack_packer *pk = outbox_event(a->outbox, a->type);
    if (!pk)
        return -1;
    msgpack_pack_map(pk, 1);
    msgpack_pack_str(pk, 1);
    msgpack_pack_str_body(pk, "n", 1);
    msgpack_pack_int64(pk, a->n);
    return outbox_event_put(a->outbox, txn);
}

static void s_append(s_fixture_t *f, const char *type, int64_t n)
{
    s_append_t a = {f->outbox, type, n};
    int result = -1;
    assert_int_equal(kv_write(f->kv, s_append_txn, &a, &result), 0);
    assert_int_equal(result, 0);
}

static zsock_t *s_proxy(const char *endpoint)
{
    zsock_t *xsub = zsock_new(ZMQ_XSUB);
    assert_non_null(xsub);
    zsock_set_rcvtimeo(xsub, 5000);
    assert_int_equal(zsock_bind(xsub, "%s", endpoint), 0);
    /* subscribe to everything, as the proxy does */
    uint8_t all = 1;
    assert_int_equal(zmq_send(zsock_resolve(xsub), &all, 1, 0), 1);
    return xsub;
}

/* Receives one event and checks its frames: the topic is its type, and
 * the map's seq, type, source and data.n are as expected. */
static void s_expect(zsock_t *xsub, uint64_t seq, const char *type, int64_t n)
{
    zmsg_t *msg = zmsg_recv(xsub);
    assert_non_null(msg);
    assert_int_equal(zmsg_size(msg), 2);
    char *topic = zmsg_popstr(msg);
    assert_string_equal(topic, type);
    zstr_free(&topic);
    zframe_t *body = zmsg_pop(msg);
    msgpack_unpacked u;
    msgpack_unpacked_init(&u);
    assert_int_equal(
        msgpack_unpack_next(&u, (const char *)zframe_data(body), zframe_size(body), NULL),
        MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(u.data.type, MSGPACK_OBJECT_MAP);
    int found = 0;
    for (uint32_t i = 0; i < u.data.via.map.size; i++) {
        msgpack_object_kv *p = &u.data.via.map.ptr[i];
        const char *key = p->key.via.str.ptr;
        size_t klen = p->key.via.str.size;
        if (klen == 3 && memcmp(key, "seq", 3) == 0) {
            assert_int_equal(p->val.via.u64, seq);
            found++;
        } else if (klen == 4 && memcmp(key, "type", 4) == 0) {
            assert_int_equal(p->val.via.str.size, strlen(type));
            assert_memory_equal(p->val.via.str.ptr, type, strlen(type));
            found++;
        } else if (klen == 6 && memcmp(key, "source", 6) == 0) {
            assert_memory_equal(p->val.via.str.ptr, "orders", 6);
            found++;
        } else if (klen == 2 && memcmp(key, "at", 2) == 0) {
            assert_true(p->val.via.i64 > 0);
            found++;
        } else if (klen == 4 && memcmp(key, "data", 4) == 0) {
            assert_int_equal(p->val.type, MSGPACK_OBJECT_MAP);
            assert_int_equal(p->val.via.map.ptr[0].val.via.i64, n);
            found++;
        }
    }
    assert_int_equal(found, 5);
    msgpack_unpacked_destroy(&u);
    zframe_destroy(&body);
    zmsg_destroy(&msg);
}

static void s_count(const char *type, uint64_t count, void *arg)
{
    if (streq(type, "order.paid"))
        *(uint64_t *)arg = count;
}

static void test_publishes_in_order_after_subscription(void **state)
{
    s_fixture_t *f = *state;
    /* committed before there is anyone to send to */
    s_append(f, "order.created", 1);
    s_append(f, "order.paid", 2);
    relay_stats_t *stats = relay_stats_new();
    relay_config_t rc = {.outbox = f->outbox,
                         .endpoint = "inproc://test-relay-1",
                         .mark_every_ms = 10,
                         .stats = stats};
    /* the relay connects first: inproc allows it, and nothing may be lost */
    zactor_t *relay = relay_new(&rc);
    assert_non_null(relay);
    zsock_t *xsub = s_proxy("inproc://test-relay-1");
    s_expect(xsub, 1, "order.created", 1);
    s_expect(xsub, 2, "order.paid", 2);
    /* committed while it runs: woken by the commit */
    for (int i = 3; i <= 50; i++)
        s_append(f, i % 2 ? "order.created" : "order.paid", i);
    for (int i = 3; i <= 50; i++)
        s_expect(xsub, (uint64_t)i, i % 2 ? "order.created" : "order.paid", i);
    assert_int_equal(relay_stats_sent(stats), 50);
    uint64_t paid = 0;
    relay_stats_each(stats, s_count, &paid);
    assert_int_equal(paid, 25);
    relay_destroy(&relay);
    outbox_state_t st;
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.published, 50); /* a clean stop marks all */
    assert_int_equal(st.next, 51);

    /* Started again: it carries on after the mark, sending nothing twice. */
    s_append(f, "order.paid", 51);
    relay = relay_new(&rc);
    assert_non_null(relay);
    s_expect(xsub, 51, "order.paid", 51);
    zsock_set_rcvtimeo(xsub, 200);
    zmsg_t *extra = zmsg_recv(xsub);
    assert_null(extra);
    relay_destroy(&relay);
    relay_stats_destroy(&stats);
    zsock_destroy(&xsub);
}

static void test_mark_follows_while_running(void **state)
{
    s_fixture_t *f = *state;
    relay_config_t rc = {
        .outbox = f->outbox, .endpoint = "inproc://test-relay-2", .mark_every_ms = 10};
    zsock_t *xsub = s_proxy("inproc://test-relay-2");
    zactor_t *relay = relay_new(&rc);
    assert_non_null(relay);
    for (int i = 1; i <= 5; i++)
        s_append(f, "order.created", i);
    for (int i = 1; i <= 5; i++)
        s_expect(xsub, (uint64_t)i, "order.created", i);
    /* the mark is written on its period, not only at the stop */
    int64_t deadline = zclock_mono() + 5000;
    outbox_state_t st = {0};
    while (zclock_mono() < deadline) {
        assert_int_equal(outbox_state(f->outbox, &st), 0);
        if (st.published == 5)
            break;
        zclock_sleep(5);
    }
    assert_int_equal(st.published, 5);
    relay_destroy(&relay);
    zsock_destroy(&xsub);
}

static void test_bad_endpoint(void **state)
{
    s_fixture_t *f = *state;
    relay_config_t rc = {.outbox = f->outbox, .endpoint = "nowhere://x"};
    zactor_t *relay = relay_new(&rc);
    assert_null(relay);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_publishes_in_order_after_subscription, s_setup,
                                        s_teardown),
        cmocka_unit_test_setup_teardown(test_mark_follows_while_running, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_endpoint, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

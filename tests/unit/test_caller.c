/*  test_caller.c - who the broker says is calling, for in-process parts.
 *
 *  A real broker and a real HTTP bridge in this process, on a private
 *  inproc endpoint, and a hand-made MDP worker for "sys" that reads the
 *  caller frame of each REQUEST. The bridge must reach services as
 *  "bridge", never as a name that every in-process caller shares (before,
 *  all were "inproc", which the catalog trusted with stock).
 */
#include "tests/testutil.h"
#include "tests/httpc.h"

#include "protocol/envelope.h"
#include "protocol/mdp.h"
#include "router/bridge.h"
#include "router/broker.h"

#include <czmq.h>
#include <pthread.h>

typedef struct {
    char url[64];
    hc_response_t response;
} fetch_t;

static void *s_fetch(void *arg)
{
    fetch_t *f = arg;
    hc_request_t q = {.url = f->url, .path = "/v1/sys/ping", .timeout_ms = 5000};
    f->response = hc_try(&q);
    return NULL;
}

static void test_bridge_calls_as_bridge(void **state)
{
    (void)state;
    const char *endpoint = "inproc://test-caller";
    broker_config_t bc = {.inproc_endpoint = endpoint, .heartbeat_ms = 1000};
    zactor_t *broker = broker_new(&bc);
    assert_non_null(broker);
    zsock_t *worker = zsock_new_dealer(endpoint);
    assert_non_null(worker);
    zsock_set_rcvtimeo(worker, 5000);
    zstr_sendx(worker, "", MDP_WORKER, "\x01", "sys", NULL);
    bridge_config_t hc = {.port = 0, .broker_endpoint = endpoint, .timeout_ms = 4000};
    zactor_t *bridge = bridge_new(&hc);
    assert_non_null(bridge);

    fetch_t fetch = {0};
    snprintf(fetch.url, sizeof fetch.url, "http://127.0.0.1:%d", bridge_port(bridge));
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, s_fetch, &fetch), 0);

    /* [empty][MDPW01][REQUEST][client][empty][body][caller][tag], heartbeats skipped */
    zmsg_t *request = NULL;
    while (!request) {
        zmsg_t *msg = zmsg_recv(worker);
        assert_non_null(msg);
        if (zmsg_size(msg) == 8)
            request = msg;
        else
            zmsg_destroy(&msg);
    }
    zframe_t *frame = zmsg_first(request);
    for (int i = 0; i < 6; i++)
        frame = zmsg_next(request);
    char *caller = zframe_strdup(frame);
    assert_string_equal(caller, "bridge");
    zstr_free(&caller);

    zmsg_first(request);
    zmsg_next(request);
    zmsg_next(request);
    zframe_t *client = zframe_dup(zmsg_next(request));
    zframe_t *body = zmsg_next(request);
    body = zmsg_next(request);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    envelope_request_t rq;
    const char *why;
    assert_true(envelope_decode_request(zframe_data(body), zframe_size(body), &zone, &rq, &why));
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    envelope_reply_ok_begin(&pk, &rq.id);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, "pong");
    msgpack_pack_true(&pk);
    zmsg_t *reply = zmsg_new();
    zmsg_addmem(reply, "", 0);
    zmsg_addstr(reply, MDP_WORKER);
    zmsg_addmem(reply, "\x03", 1);
    zmsg_append(reply, &client);
    zmsg_addmem(reply, "", 0);
    zmsg_addmem(reply, buf.data, buf.size);
    assert_int_equal(zmsg_send(&reply, worker), 0);
    msgpack_sbuffer_destroy(&buf);
    msgpack_zone_destroy(&zone);
    zmsg_destroy(&request);

    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(fetch.response.rc, CURLE_OK);
    assert_int_equal(fetch.response.status, 200);
    hc_response_free(&fetch.response);

    bridge_destroy(&bridge);
    zsock_destroy(&worker);
    broker_destroy(&broker);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bridge_calls_as_bridge),
    };
    zsys_init();
    zsys_set_linger(0);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int failed = cmocka_run_group_tests_name("caller", tests, NULL, NULL);
    curl_global_cleanup();
    zsys_shutdown();
    return failed;
}

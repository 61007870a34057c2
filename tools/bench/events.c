/*  events.c - the event stream's own ceiling (make bench-events):
 *  outbox -> relay -> proxy -> a CURVE TCP subscriber, in one process.
 *
 *      events-stream-bench [--events N] [--batch B]
 *
 *  A fresh LMDB environment in a temporary directory holds an outbox;
 *  the proxy (router/events.h) runs with its own zauth on free TCP ports;
 *  a relay (actors/relay.h) publishes over inproc as in retaild; the
 *  subscriber is a SUB socket over CURVE TCP with an allowed certificate,
 *  on its own thread. Writers commit N events (default 200,000) in
 *  writes of B events each (default 1: an event per write, as a service
 *  makes them; several writers' writes share commits through group
 *  commit), from 4 threads. Printed: events per second from the first
 *  commit to the last event received, and the latency of each event from
 *  its `at` (set in the write, before its commit) to its receipt, p50 and
 *  p99 in ms (`at` is whole ms: up to 1 ms high), and gaps seen.
 */
#include "actors/relay.h"
#include "protocol/keys.h"
#include "router/events.h"
#include "storage/kv.h"
#include "storage/outbox.h"

#include <czmq.h>
#include <getopt.h>
#include <pthread.h>
#include <time.h>

#define S_WRITERS 4

static double s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static int s_port(void)
{
    zsock_t *s = zsock_new(ZMQ_PAIR);
    int port = zsock_bind(s, "tcp://127.0.0.1:*");
    zsock_destroy(&s);
    return port;
}

static bool s_allowed(const char *name)
{
    return streq(name, "orders");
}

typedef struct {
    outbox_t *outbox;
    kv_t *kv;
    long events;
    int batch;
} s_writer_t;

static int s_write_txn(MDB_txn *txn, void *arg)
{
    s_writer_t *w = arg;
    for (int i = 0; i < w->batch; i++) {
        msgpack_packer *pk = outbox_event(w->outbox, "order.paid");
        if (!pk)
            return -1;
        msgpack_pack_map(pk, 2);
        msgpack_pack_str(pk, 8);
        msgpack_pack_str_body(pk, "order_id", 8);
        msgpack_pack_str(pk, 20);
        msgpack_pack_str_body(pk, "o0123456789abcdef012", 20);
        msgpack_pack_str(pk, 11);
        msgpack_pack_str_body(pk, "total_cents", 11);
        msgpack_pack_int64(pk, 4200);
        int rc = outbox_event_put(w->outbox, txn);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static void *s_writer(void *arg)
{
    s_writer_t *w = arg;
    for (long n = 0; n < w->events; n += w->batch) {
        int result = 0;
        if (kv_write(w->kv, s_write_txn, w, &result) != 0 || result != 0) {
            fprintf(stderr, "events-stream-bench: a write failed\n");
            exit(1);
        }
    }
    return NULL;
}

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    long events = 200000;
    int batch = 1;
    static const struct option options[] = {
        {"events", required_argument, NULL, 'n'}, {"batch", required_argument, NULL, 'b'}, {0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "n:b:", options, NULL)) != -1) {
        if (opt == 'n')
            events = atol(optarg);
        else if (opt == 'b')
            batch = atoi(optarg);
        else {
            fprintf(stderr, "usage: events-stream-bench [--events N] [--batch B]\n");
            return 2;
        }
    }
    if (events < S_WRITERS || batch < 1 || batch > 1000)
        return 2;
    zsys_init();
    char dir[] = "/tmp/retail-events-bench.XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    char *keys = zsys_sprintf("%s/keys", dir), *store = zsys_sprintf("%s/store", dir);
    zcert_t *cert = keys_ensure(keys, "bench-sub");
    zcert_t *broker = keys_ensure(keys, "broker");
    if (!cert || !broker || keys_allow(keys, cert, "bench-sub") != 0)
        return 1;
    char subscribe[64], publish[64];
    events_config_t ec = {.publish_tcp = publish,
                          .subscribe_tcp = subscribe,
                          .keys_dir = keys,
                          .start_auth = true,
                          .publisher_allowed = s_allowed};
    zactor_t *proxy = NULL;
    /* a port found free may be taken before the bind: try others */
    for (int tries = 0; !proxy && tries < 10; tries++) {
        snprintf(subscribe, sizeof subscribe, "tcp://127.0.0.1:%d", s_port());
        snprintf(publish, sizeof publish, "tcp://127.0.0.1:%d", s_port());
        proxy = events_new(&ec);
    }
    const char *names[] = {OUTBOX_DB_EVENTS, OUTBOX_DB_META};
    char err[256];
    kv_t *kv = kv_open(store, 1UL << 30, names, NULL, 2, err, sizeof err);
    outbox_config_t oc = {.source = "orders"};
    outbox_t *outbox = kv ? outbox_new(kv, 0, 1, &oc, err, sizeof err) : NULL;
    if (!proxy || !outbox) {
        fprintf(stderr, "events-stream-bench: %s\n", proxy ? err : "the proxy did not start");
        return 1;
    }
    relay_config_t rc = {.outbox = outbox, .endpoint = EVENTS_INPROC_PUBLISH};
    zactor_t *relay = relay_new(&rc);

    zsock_t *sub = zsock_new(ZMQ_SUB);
    keys_apply_client(sub, cert, zcert_public_txt(broker));
    zsock_set_rcvhwm(sub, 0); /* measure the stream, not a subscriber's limit */
    zsock_set_subscribe(sub, "");
    zsock_set_rcvtimeo(sub, 100);
    zsock_connect(sub, "%s", subscribe);
    /* until the subscription is through: one probe event, received */
    s_writer_t probe = {outbox, kv, 1, 1};
    for (int tries = 0;; tries++) {
        s_writer(&probe);
        zmsg_t *msg = zmsg_recv(sub);
        if (msg) {
            zmsg_destroy(&msg);
            break;
        }
        if (tries == 100) {
            fprintf(stderr, "events-stream-bench: the subscriber never got an event\n");
            return 1;
        }
    }
    zmsg_t *msg;
    while ((msg = zmsg_recv(sub)) != NULL) /* the other probes */
        zmsg_destroy(&msg);

    double *lat = malloc((size_t)events * sizeof *lat);
    s_writer_t writers[S_WRITERS];
    pthread_t threads[S_WRITERS];
    double start = s_now_ms();
    for (int i = 0; i < S_WRITERS; i++) {
        writers[i] = (s_writer_t){outbox, kv, events / S_WRITERS, batch};
        pthread_create(&threads[i], NULL, s_writer, &writers[i]);
    }
    long want = (events / S_WRITERS / batch) * batch * S_WRITERS, got = 0;
    zsock_set_rcvtimeo(sub, 10000);
    double last = start;
    while (got < want && (msg = zmsg_recv(sub)) != NULL) {
        double now = s_now_ms();
        zframe_t *body = zmsg_last(msg);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        if (msgpack_unpack_next(&u, (const char *)zframe_data(body), zframe_size(body), NULL) ==
                MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_MAP) {
            for (uint32_t i = 0; i < u.data.via.map.size; i++) {
                msgpack_object_kv *p = &u.data.via.map.ptr[i];
                if (p->key.via.str.size == 2 && memcmp(p->key.via.str.ptr, "at", 2) == 0)
                    lat[got] = now - (double)p->val.via.i64;
            }
        }
        msgpack_unpacked_destroy(&u);
        zmsg_destroy(&msg);
        got++;
        last = now;
    }
    for (int i = 0; i < S_WRITERS; i++)
        pthread_join(threads[i], NULL);
    unsigned long writes, commits;
    kv_write_stats(kv, &writes, &commits);
    qsort(lat, (size_t)got, sizeof *lat, s_cmp);
    printf("events %ld of %ld, %.0f events/s, latency p50 %.2f ms p99 %.2f ms, "
           "%lu writes in %lu commits (batch %d)\n",
           got, want, (double)got / ((last - start) / 1000.0), got ? lat[got / 2] : 0,
           got ? lat[(got * 99) / 100] : 0, writes, commits, batch);
    free(lat);
    zsock_destroy(&sub);
    relay_destroy(&relay);
    events_destroy(&proxy);
    outbox_destroy(&outbox);
    kv_close(&kv);
    zcert_destroy(&cert);
    zcert_destroy(&broker);
    char *rm = zsys_sprintf("rm -rf '%s'", dir);
    if (system(rm) != 0)
        fprintf(stderr, "events-stream-bench: could not remove %s\n", dir);
    zstr_free(&rm);
    zstr_free(&keys);
    zstr_free(&store);
    return got == want ? 0 : 1;
}

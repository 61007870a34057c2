/*  events_sub.c - a subscriber that measures the event stream
 *  (tools/bench/checkout.sh's "subscribed" configuration).
 *
 *      events-bench ENDPOINT KEYS_DIR NAME SECONDS
 *
 *  Connects a SUB socket with CURVE (KEYS_DIR/NAME.cert_secret, trusting
 *  KEYS_DIR/broker.cert) to the events endpoint, subscribes to everything,
 *  waits for the first event, then for SECONDS counts what arrives, and
 *  prints one line: "events_per_s p50_ms p99_ms events gaps duplicates".
 *
 *  Latency is the receive time minus the event's `at`, which the outbox
 *  sets inside the write, just before the commit: so it covers the
 *  commit (a disk flush), the relay's wake and read, the proxy and the
 *  socket, and is an upper bound of commit-to-delivery. `at` is in whole
 *  milliseconds, so each figure may be up to 1 ms above the truth; the
 *  receive time is taken in microseconds. Gaps and duplicates are counted
 *  per source from `seq` (a gap is an event this subscriber never got on
 *  the stream; events.since would fill it).
 */
#include "protocol/keys.h"

#include <czmq.h>
#include <msgpack.h>
#include <time.h>

#define S_SOURCES 8

typedef struct {
    char name[32];
    uint64_t last;
} s_source_t;

static int s_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

static bool s_field(const msgpack_object *map, const char *name, const msgpack_object **out)
{
    size_t len = strlen(name);
    for (uint32_t i = 0; i < map->via.map.size; i++) {
        const msgpack_object *k = &map->via.map.ptr[i].key;
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == len &&
            memcmp(k->via.str.ptr, name, len) == 0) {
            *out = &map->via.map.ptr[i].val;
            return true;
        }
    }
    return false;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: events-bench ENDPOINT KEYS_DIR NAME SECONDS\n");
        return 2;
    }
    const char *endpoint = argv[1], *keys_dir = argv[2], *name = argv[3];
    int seconds = atoi(argv[4]);
    zcert_t *cert = keys_load(keys_dir, name);
    char server[KEYS_Z85_LEN + 1];
    if (!cert || keys_broker_public(keys_dir, server) != 0) {
        fprintf(stderr, "events-bench: no certificate %s or broker.cert in %s\n", name, keys_dir);
        zcert_destroy(&cert);
        return 1;
    }
    zsock_t *sub = zsock_new(ZMQ_SUB);
    keys_apply_client(sub, cert, server);
    zsock_set_rcvhwm(sub, 1000000);
    zsock_set_subscribe(sub, "");
    zsock_set_rcvtimeo(sub, 10000);
    if (zsock_connect(sub, "%s", endpoint) != 0) {
        fprintf(stderr, "events-bench: cannot connect to %s\n", endpoint);
        return 1;
    }
    size_t cap = 1 << 20, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    s_source_t sources[S_SOURCES] = {{{0}, 0}};
    int n_sources = 0;
    uint64_t gaps = 0, dups = 0;
    double start = 0, end = 0, last_at = 0;
    for (;;) {
        zmsg_t *msg = zmsg_recv(sub);
        if (!msg)
            break; /* the timeout: the load is over */
        double now = s_now_ms();
        if (start == 0) {
            start = now;
            end = start + seconds * 1000.0;
        }
        if (now > end) {
            zmsg_destroy(&msg);
            break;
        }
        last_at = now;
        zframe_t *topic = zmsg_first(msg), *body = zmsg_next(msg);
        msgpack_unpacked u;
        msgpack_unpacked_init(&u);
        const msgpack_object *at, *seq, *src;
        if (topic && body &&
            msgpack_unpack_next(&u, (const char *)zframe_data(body), zframe_size(body), NULL) ==
                MSGPACK_UNPACK_SUCCESS &&
            u.data.type == MSGPACK_OBJECT_MAP && s_field(&u.data, "at", &at) &&
            s_field(&u.data, "seq", &seq) && s_field(&u.data, "source", &src) &&
            src->type == MSGPACK_OBJECT_STR && src->via.str.size < 32) {
            if (n == cap) {
                cap *= 2;
                lat = realloc(lat, cap * sizeof *lat);
            }
            lat[n++] = now - (double)at->via.i64;
            int i = 0;
            while (i < n_sources &&
                   !(strlen(sources[i].name) == src->via.str.size &&
                     memcmp(sources[i].name, src->via.str.ptr, src->via.str.size) == 0))
                i++;
            if (i == n_sources && n_sources < S_SOURCES) {
                memcpy(sources[i].name, src->via.str.ptr, src->via.str.size);
                sources[i].last = seq->via.u64 - 1;
                n_sources++;
            }
            if (i < n_sources) {
                if (seq->via.u64 <= sources[i].last)
                    dups++;
                else {
                    gaps += seq->via.u64 - sources[i].last - 1;
                    sources[i].last = seq->via.u64;
                }
            }
        }
        msgpack_unpacked_destroy(&u);
        zmsg_destroy(&msg);
    }
    double took = (last_at - start) / 1000.0;
    if (n == 0 || took <= 0) {
        fprintf(stderr, "events-bench: no event arrived\n");
        return 1;
    }
    qsort(lat, n, sizeof *lat, s_cmp);
    printf("%.0f %.2f %.2f %zu %llu %llu\n", (double)n / took, lat[n / 2], lat[(n * 99) / 100], n,
           (unsigned long long)gaps, (unsigned long long)dups);
    free(lat);
    zsock_destroy(&sub);
    zcert_destroy(&cert);
    return 0;
}

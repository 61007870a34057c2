/*  test_watch.c - `retailctl watch` against the stream's proxy and a fake
 *  source, before the services have events of their own.
 *
 *  The test process runs a broker (CURVE TCP, its zauth serving the proxy
 *  too, as in retaild), the events proxy (router/events.h) on a free TCP
 *  port, a fake "orders" worker whose events.since serves an outbox held
 *  in memory (the contract: {events, first, next}, at most `limit` from
 *  `since`), and an in-process publisher on EVENTS_INPROC_PUBLISH. The
 *  real build/retailctl runs as a child with its output in a file, which
 *  the test reads until what it waits for is there (every wait polls with
 *  a deadline). Covered:
 *    - --since replays, then live events follow; a live event beyond a
 *      gap has the gap filled from events.since first (probes from another
 *      source keep the watch from ever being idle, so the idle check
 *      cannot be what filled it); duplicates, live or replayed, are
 *      printed once; SIGTERM ends it with 0;
 *    - events that reach the outbox but never the stream show up through
 *      the idle check; --count stops it with 0;
 *    - PREFIX filters what is printed, never the positions;
 *    - --idle-exit: 1; a source that does not answer: 3; events trimmed
 *      before what --since asks: 4; usage errors: 2.
 *  The line format is checked too: {"type","seq","at","source","data"} in
 *  that order.
 */
#include "tests/testutil.h"

#include "actors/worker.h"
#include "protocol/call.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "router/broker.h"
#include "router/events.h"

#include <czmq.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>

#define WAIT_MS 20000
#define OUTBOX_MAX 64

/* The fake orders outbox: seq i at events[i], kept from first to next - 1. */
typedef struct {
    pthread_mutex_t lock;
    uint64_t first, next; /* first 0: none kept */
    char types[OUTBOX_MAX][32];
    uint64_t asked[256]; /* the `since` of each events.since, in order */
    int n_asked;
} outbox_t;

typedef struct {
    char *dir, *keys;
    char broker_endpoint[64], events_endpoint[64];
    zactor_t *broker, *events, *worker;
    zsock_t *pub;
    outbox_t outbox;
    pid_t watch;
    char out_path[1200], err_path[1200];
    uint64_t probe_seq;
} fx_t;

/* ------------------------------------------------------------------ */
/* The fake source                                                     */

static void s_pack_event(msgpack_packer *pk, const char *type, uint64_t seq, const char *source)
{
    msgpack_pack_map(pk, 5);
    mp_pack_str(pk, "type");
    mp_pack_str(pk, type);
    mp_pack_str(pk, "seq");
    msgpack_pack_uint64(pk, seq);
    mp_pack_str(pk, "at");
    msgpack_pack_int64(pk, 1700000000000 + (int64_t)seq);
    mp_pack_str(pk, "source");
    mp_pack_str(pk, source);
    mp_pack_str(pk, "data");
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "n");
    msgpack_pack_uint64(pk, seq);
}

static void s_events_since(call_t *call, void *state)
{
    outbox_t *o = state;
    int64_t since = 1, limit = 500;
    call_arg_int(call, "since", ARG_REQUIRED, 1, INT64_MAX, &since);
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, 500, &limit);
    if (!call_args_ok(call))
        return;
    pthread_mutex_lock(&o->lock);
    if (o->n_asked < 256)
        o->asked[o->n_asked++] = (uint64_t)since;
    uint64_t from = (uint64_t)since;
    if (o->first > from)
        from = o->first;
    uint64_t to = o->first == 0 ? from : o->next; /* none kept: none sent */
    if (to > from + (uint64_t)limit)
        to = from + (uint64_t)limit;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "events");
    msgpack_pack_array(pk, to > from ? (uint32_t)(to - from) : 0);
    for (uint64_t s = from; s < to; s++)
        s_pack_event(pk, o->types[s], s, "orders");
    mp_pack_str(pk, "first");
    msgpack_pack_uint64(pk, o->first);
    mp_pack_str(pk, "next");
    msgpack_pack_uint64(pk, o->next);
    pthread_mutex_unlock(&o->lock);
}

static const worker_op_t s_ops[] = {{"events.since", s_events_since}, {NULL, NULL}};

static void *s_state_new(void *shared)
{
    return shared;
}

static void s_state_destroy(void **state)
{
    *state = NULL;
}

/* Appends events of type to the outbox until its next is `upto` + 1. */
static void s_commit(fx_t *f, const char *type, uint64_t upto)
{
    pthread_mutex_lock(&f->outbox.lock);
    assert_true(upto < OUTBOX_MAX);
    if (f->outbox.first == 0)
        f->outbox.first = f->outbox.next;
    while (f->outbox.next <= upto) {
        snprintf(f->outbox.types[f->outbox.next], sizeof f->outbox.types[0], "%s", type);
        f->outbox.next++;
    }
    pthread_mutex_unlock(&f->outbox.lock);
}

/* Keeps only first..next-1 (what a trim leaves). */
static void s_trim(fx_t *f, uint64_t first)
{
    pthread_mutex_lock(&f->outbox.lock);
    f->outbox.first = first < f->outbox.next ? first : 0;
    pthread_mutex_unlock(&f->outbox.lock);
}

static bool s_asked(fx_t *f, uint64_t since)
{
    pthread_mutex_lock(&f->outbox.lock);
    bool found = false;
    for (int i = 0; i < f->outbox.n_asked; i++)
        found = found || f->outbox.asked[i] == since;
    pthread_mutex_unlock(&f->outbox.lock);
    return found;
}

/* ------------------------------------------------------------------ */
/* Set-up                                                              */

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    assert_non_null(f);
    pthread_mutex_init(&f->outbox.lock, NULL);
    f->outbox.next = 1;
    f->dir = tu_tempdir("test-watch");
    f->keys = zsys_sprintf("%s/keys", f->dir);
    int broker_port = tu_free_port(), events_port;
    do
        events_port = tu_free_port();
    while (events_port == broker_port);
    snprintf(f->broker_endpoint, sizeof f->broker_endpoint, "tcp://127.0.0.1:%d", broker_port);
    snprintf(f->events_endpoint, sizeof f->events_endpoint, "tcp://127.0.0.1:%d", events_port);
    broker_config_t bc = {.tcp_endpoint = f->broker_endpoint, .keys_dir = f->keys};
    f->broker = broker_new(&bc);
    assert_non_null(f->broker);
    events_config_t ec = {.subscribe_tcp = f->events_endpoint, .keys_dir = f->keys};
    f->events = events_new(&ec);
    assert_non_null(f->events);
    worker_config_t wc = {.service = "orders",
                          .ops = s_ops,
                          .endpoint = MDP_INPROC_ENDPOINT,
                          .state_new = s_state_new,
                          .state_destroy = s_state_destroy,
                          .shared = &f->outbox};
    f->worker = worker_new(&wc);
    assert_non_null(f->worker);
    f->pub = zsock_new(ZMQ_XPUB);
    assert_non_null(f->pub);
    zsock_set_linger(f->pub, 0);
    assert_int_equal(zsock_connect(f->pub, "%s", EVENTS_INPROC_PUBLISH), 0);
    zsock_set_rcvtimeo(f->pub, WAIT_MS);
    zframe_t *subscribed = zframe_recv(f->pub); /* the proxy's catch-all */
    assert_non_null(subscribed);
    zframe_destroy(&subscribed);
    snprintf(f->out_path, sizeof f->out_path, "%s/watch.out", f->dir);
    snprintf(f->err_path, sizeof f->err_path, "%s/watch.err", f->dir);
    *state = f;
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    if (f->watch > 0)
        tu_stop(f->watch, SIGKILL, 5000);
    zsock_destroy(&f->pub);
    worker_destroy(&f->worker);
    events_destroy(&f->events);
    broker_destroy(&f->broker);
    pthread_mutex_destroy(&f->outbox.lock);
    tu_rmtree(f->dir);
    free(f->dir);
    zstr_free(&f->keys);
    free(f);
    return 0;
}

/* ------------------------------------------------------------------ */
/* The watch process and its output                                    */

/* Starts retailctl watch with the arguments after "watch". */
static void s_watch(fx_t *f, const char *const *args)
{
    const char *argv[16] = {"--data-dir", f->dir, "--broker", f->broker_endpoint, "watch"};
    int n = 5;
    for (int i = 0; args[i]; i++) {
        assert_true(n < 14);
        argv[n++] = args[i];
    }
    argv[n++] = "--timeout";
    argv[n++] = "5000";
    argv[n] = NULL;
    char env_events[128];
    snprintf(env_events, sizeof env_events, "RETAIL_EVENTS_ENDPOINT=%s", f->events_endpoint);
    const char *const env[] = {env_events, NULL};
    tu_spawn_t how = {.program = "retailctl",
                      .argv = argv,
                      .env = env,
                      .clean = true,
                      .out_path = f->out_path,
                      .err_path = f->err_path};
    f->watch = tu_spawn(&how);
    assert_true(f->watch > 0);
}

/* Its exit status once it exits by itself within ms (-1: it did not). */
static int s_watch_exit(fx_t *f, int ms)
{
    int status = tu_wait(f->watch, ms);
    f->watch = 0;
    if (status == -1 || !WIFEXITED(status)) {
        char *err = tu_slurp(f->err_path, NULL);
        print_error("watch did not exit by itself (%d); stderr:\n%s\n", status, err ? err : "");
        free(err);
        return -1;
    }
    return WEXITSTATUS(status);
}

/* Every line printed so far, parsed (the caller json_decrefs); asserts
 * each is an event object with its keys in the contract's order. */
static json_t *s_lines(fx_t *f)
{
    json_t *lines = json_array();
    char *text = tu_slurp(f->out_path, NULL);
    for (char *line = text, *end; line && *line; line = end + 1) {
        end = strchr(line, '\n');
        if (!end)
            break; /* a line being written */
        *end = '\0';
        json_error_t error;
        json_t *event = json_loads(line, 0, &error);
        if (!event)
            fail_msg("not a JSON line: %s", line);
        const char *order = "{\"type\":";
        assert_int_equal(strncmp(line, order, strlen(order)), 0);
        const char *a = strstr(line, "\"seq\":"), *b = strstr(line, "\"at\":"),
                   *c = strstr(line, "\"source\":"), *d = strstr(line, "\"data\":");
        assert_true(a && b && c && d && a < b && b < c && c < d);
        json_array_append_new(lines, event);
    }
    free(text);
    return lines;
}

/* The seqs printed for source, in order, into seqs[max]; how many. */
static int s_seqs(fx_t *f, const char *source, uint64_t *seqs, int max)
{
    json_t *lines = s_lines(f);
    int n = 0;
    size_t i;
    json_t *event;
    json_array_foreach(lines, i, event)
    {
        const char *s = json_string_value(json_object_get(event, "source"));
        if (s && streq(s, source) && n < max)
            seqs[n++] = (uint64_t)json_integer_value(json_object_get(event, "seq"));
    }
    json_decref(lines);
    return n;
}

static void s_publish(fx_t *f, const char *type, uint64_t seq, const char *source)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &body, msgpack_sbuffer_write);
    s_pack_event(&pk, type, seq, source);
    zmsg_t *msg = zmsg_new();
    zmsg_addstr(msg, type);
    zmsg_addmem(msg, body.data, body.size);
    assert_int_equal(zmsg_send(&msg, f->pub), 0);
    msgpack_sbuffer_destroy(&body);
}

/* A probe from "sys" (no outbox): it keeps the watch from being idle. */
static void s_probe(fx_t *f)
{
    s_publish(f, "sys.probe", ++f->probe_seq, "sys");
}

/* Waits, probing every 100 ms when asked, until at least want events of
 * source are printed (and, with probes, one probe: the stream reaches the
 * watch). Asserts within WAIT_MS. */
static void s_wait_printed(fx_t *f, const char *source, int want, bool probing)
{
    int64_t deadline = zclock_mono() + WAIT_MS;
    uint64_t seqs[OUTBOX_MAX];
    while (true) {
        if (probing)
            s_probe(f);
        bool probed = !probing || s_seqs(f, "sys", seqs, OUTBOX_MAX) > 0;
        if (probed && s_seqs(f, source, seqs, OUTBOX_MAX) >= want)
            return;
        if (zclock_mono() > deadline) {
            char *err = tu_slurp(f->err_path, NULL);
            fail_msg("fewer than %d events of %s printed; stderr:\n%s", want, source,
                     err ? err : "");
        }
        zclock_sleep(100); /* the probes' pace (and the file's look) */
    }
}

/* The events of source printed are exactly from..to, in order. */
static void s_assert_seqs(fx_t *f, const char *source, uint64_t from, uint64_t to)
{
    uint64_t seqs[OUTBOX_MAX];
    int n = s_seqs(f, source, seqs, OUTBOX_MAX);
    for (int i = 0; i < n; i++)
        if (seqs[i] != from + (uint64_t)i)
            fail_msg("%s: printed seq %llu at %d, expected %llu", source,
                     (unsigned long long)seqs[i], i, (unsigned long long)(from + (uint64_t)i));
    assert_int_equal(n, (int)(to - from + 1));
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */

static void test_replay_then_live_gap_filled(void **state)
{
    fx_t *f = *state;
    s_commit(f, "order.created", 3);
    const char *const args[] = {"--since", "orders:1", NULL};
    s_watch(f, args);
    s_wait_printed(f, "orders", 3, true); /* replayed 1..3, and the stream is live */

    /* 4..6 commit; only 6 and some duplicates reach the stream. */
    s_commit(f, "order.paid", 6);
    s_publish(f, "order.paid", 6, "orders");
    s_publish(f, "order.paid", 6, "orders");
    s_publish(f, "order.created", 2, "orders");
    s_wait_printed(f, "orders", 6, true);
    assert_true(s_asked(f, 4)); /* the gap, asked for at once */
    s_commit(f, "order.shipped", 7);
    s_publish(f, "order.shipped", 7, "orders");
    s_wait_printed(f, "orders", 7, true);
    s_probe(f);
    s_probe(f);
    s_assert_seqs(f, "orders", 1, 7);

    int status = tu_stop(f->watch, SIGTERM, WAIT_MS);
    f->watch = 0;
    assert_true(status != -1 && WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    s_assert_seqs(f, "orders", 1, 7); /* still nothing twice */
}

static void test_idle_check_finds_lost_events(void **state)
{
    fx_t *f = *state;
    s_commit(f, "order.created", 2);
    const char *const args[] = {"--since", "orders:1", "--count", "4", NULL};
    s_watch(f, args);
    s_wait_printed(f, "orders", 2, false);
    s_commit(f, "order.paid", 4); /* never published: only events.since has them */
    assert_int_equal(s_watch_exit(f, WAIT_MS), 0);
    s_assert_seqs(f, "orders", 1, 4);
}

static void test_prefix(void **state)
{
    fx_t *f = *state;
    s_commit(f, "order.created", 1);
    s_commit(f, "order.paid", 2);
    s_commit(f, "order.shipped", 3);
    s_commit(f, "order.paid", 4);
    const char *const args[] = {"order.pa", "--since", "orders:1", "--count", "2", NULL};
    s_watch(f, args);
    assert_int_equal(s_watch_exit(f, WAIT_MS), 0);
    uint64_t seqs[8];
    assert_int_equal(s_seqs(f, "orders", seqs, 8), 2);
    assert_int_equal(seqs[0], 2);
    assert_int_equal(seqs[1], 4);
}

static void test_exit_statuses(void **state)
{
    fx_t *f = *state;
    s_commit(f, "order.created", 7);
    s_trim(f, 5);

    /* From 5, what is kept: printed, then idle for a second: 1. */
    const char *const kept[] = {"--since", "orders:5", "--idle-exit", "1", NULL};
    s_watch(f, kept);
    assert_int_equal(s_watch_exit(f, WAIT_MS), 1);
    s_assert_seqs(f, "orders", 5, 7);

    /* From 2: trimmed: 4, and says so. */
    const char *const trimmed[] = {"--since", "orders:2", NULL};
    s_watch(f, trimmed);
    assert_int_equal(s_watch_exit(f, WAIT_MS), 4);
    char *err = tu_slurp(f->err_path, NULL);
    assert_non_null(err);
    assert_non_null(strstr(err, "trimmed"));
    free(err);

    /* A source without a worker: the broker answers unavailable: 3. */
    const char *const nobody[] = {"--since", "payments:1", NULL};
    s_watch(f, nobody);
    assert_int_equal(s_watch_exit(f, WAIT_MS), 3);

    /* Usage. */
    static const char *const bad[][4] = {{"--since", "orders", NULL},
                                         {"--since", "orders:0", NULL},
                                         {"--since", ":3", NULL},
                                         {"--count", "0", NULL},
                                         {"--idle-exit", "x", NULL},
                                         {"a", "b", NULL},
                                         {"--nope", NULL}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s_watch(f, bad[i]);
        assert_int_equal(s_watch_exit(f, WAIT_MS), 2);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replay_then_live_gap_filled, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_idle_check_finds_lost_events, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_prefix, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_exit_statuses, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

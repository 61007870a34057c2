/*  test_strangers.c - strangers and rogues on the broker's CURVE endpoint
 *  (docs/RELIABILITY.md section 5; tools/reliability/strangers.sh runs it
 *  and prints its figures).
 *
 *  One retaild on free ports (tests/fixture.h). A "victim" client with an
 *  allowed certificate calls sys.echo {n} throughout, and every answer
 *  must be its own (its id, its n) and come within the broker's deadline.
 *
 *  Strangers get nothing: a freshly made certificate that is not on the
 *  allow-list, one that carries a service's name ("users"), one with the
 *  victim's own name but another key, and a client without CURVE at all
 *  each send valid requests (sys.ping, mmi.services) and receive nothing
 *  within STRANGER_WAIT_MS, while the victim is answered meanwhile.
 *
 *  An allowed rogue sends malformed MDP: frames missing or too many, a
 *  wrong header, an empty or over-long service name, garbage and huge
 *  bodies (3 MiB: over the envelope's limit), and worker commands it has
 *  no business sending (READY for the real services sys and users, READY
 *  without a service or for mmi.*, REPLY for requests it does not hold,
 *  with and without a tag, HEARTBEAT and DISCONNECT unregistered,
 *  unknown commands, REQUEST, the broker's own command). After each message the victim is answered; then
 *  the whole list again ROUNDS times without a pause, and the victim
 *  again. A READY for sys must be refused outright (the rogue's own
 *  mmi.services, asked right after on the same connection and so read
 *  after it, shows sys's workers unchanged): over TCP only a certificate
 *  named after a service may serve it. A rogue that registers for its own
 *  name and then replies for a tag it does not hold is dropped, as is one
 *  that says READY twice. A frame over BROKER_MAX_FRAME_BYTES (a body
 *  twice that long) gets its sender disconnected (its socket's monitor sees it)
 *  instead of being buffered, the victim is answered meanwhile, and the
 *  sender's socket, connected again, is answered as before. At the end
 *  every real service has the workers it had and has lost none
 *  (mmi.services), and retaild exits 0 on SIGTERM.
 */
#include "tests/fixture.h"
#include "tests/testutil.h"

#include "protocol/envelope.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/mdpcli.h"
#include "router/broker.h"

#include <czmq.h>
#include <msgpack.h>

#define STRANGER_WAIT_MS 2000
#define ANSWER_MS 5000 /* the broker's deadline */
#define ROUNDS 20
#define HUGE_BYTES (3 * 1024 * 1024) /* over the envelope's limit, under the frame's */
#define SERVICES_MAX 16

typedef struct {
    fixture_t *f;
    mdpcli_t *victim;
    uint64_t next_id;
    int answered;     /* the victim's answers, all checked */
    int64_t worst_us; /* the victim's slowest answer */
} system_t;

/* What mmi.services says of each service. */
typedef struct {
    int n;
    struct {
        char name[64];
        int64_t workers, lost;
    } s[SERVICES_MAX];
} services_t;

static const char *const s_env[] = {"RETAIL_WORKERS=2", NULL};

static int s_setup(void **state)
{
    system_t *s = calloc(1, sizeof *s);
    assert_non_null(s);
    fixture_opts_t opts = {.name = "retail-strangers", .env = s_env};
    s->f = fixture_new(&opts);
    assert_non_null(s->f);
    s->victim = fixture_client(s->f, "victim");
    assert_true(fixture_wait_workers(s->victim, "sys", 2, 20000) >= 0);
    s->next_id = 1;
    *state = s;
    return 0;
}

static int s_teardown(void **state)
{
    system_t *s = *state;
    mdpcli_destroy(&s->victim);
    fixture_destroy(&s->f);
    free(s);
    return 0;
}

/* The victim's request: sys.echo {n} must come back as its own. */
static void s_victim_ok(system_t *s)
{
    uint64_t id = s->next_id++;
    char args[64];
    snprintf(args, sizeof args, "{\"n\": %" PRIu64 "}", id);
    int64_t start = zclock_usecs();
    assert_int_equal(fixture_send(s->victim, "sys", id, "echo", NULL, args), 0);
    fixture_reply_t r = fixture_recv(s->victim, ANSWER_MS);
    int64_t took = zclock_usecs() - start;
    if (!r.answered || !r.ok || r.id != id ||
        json_integer_value(json_object_get(r.data, "n")) != (json_int_t)id)
        fail_msg("the victim's request %" PRIu64
                 " was answered wrongly (answered %d ok %d id %" PRIu64 " code %s)",
                 id, r.answered, r.ok, r.id, r.code);
    fixture_reply_free(&r);
    s->answered++;
    if (took > s->worst_us)
        s->worst_us = took;
}

/* A message waiting on sock, or NULL at once. */
static zmsg_t *s_take(zsock_t *sock)
{
    return (zsock_events(sock) & ZMQ_POLLIN) ? zmsg_recv(sock) : NULL;
}

/* An mmi.services answer: each service's workers and workers lost. */
static services_t s_parse_services(zframe_t *frame)
{
    services_t out = {0};
    assert_non_null(frame);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object list;
    size_t off = 0;
    assert_int_equal(
        msgpack_unpack((char *)zframe_data(frame), zframe_size(frame), &off, &zone, &list),
        MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(list.type, MSGPACK_OBJECT_ARRAY);
    for (uint32_t i = 0; i < list.via.array.size && out.n < SERVICES_MAX; i++) {
        const msgpack_object *entry = &list.via.array.ptr[i];
        const msgpack_object *name = mp_map_get(entry, "name");
        const msgpack_object *workers = mp_map_get(entry, "workers");
        const msgpack_object *lost = mp_map_get(entry, "workers_lost");
        assert_true(name && name->type == MSGPACK_OBJECT_STR && workers && lost);
        snprintf(out.s[out.n].name, sizeof out.s[out.n].name, "%.*s", (int)name->via.str.size,
                 name->via.str.ptr);
        out.s[out.n].workers = (int64_t)workers->via.u64;
        out.s[out.n].lost = (int64_t)lost->via.u64;
        out.n++;
    }
    msgpack_zone_destroy(&zone);
    return out;
}

/* mmi.services asked by the victim. */
static services_t s_services(system_t *s)
{
    assert_int_equal(mdpcli_send(s->victim, "mmi.services", "", 0), 0);
    zframe_t *frame = mdpcli_recv(s->victim, ANSWER_MS, NULL);
    services_t out = s_parse_services(frame);
    zframe_destroy(&frame);
    return out;
}

/* mmi.services asked on a raw DEALER, which may have other answers (to
 * its garbage) waiting before this one: those are skipped. Asked on the
 * same connection as what it sent before, it is answered after those
 * were handled. */
static services_t s_services_over(zsock_t *sock)
{
    assert_int_equal(zstr_sendx(sock, "", MDP_CLIENT, "mmi.services", "", NULL), 0);
    zframe_t *frame = NULL;
    zpoller_t *poller = zpoller_new(sock, NULL);
    assert_non_null(poller);
    int64_t deadline = zclock_mono() + ANSWER_MS;
    while (!frame && zclock_mono() < deadline) {
        if (!zpoller_wait(poller, (int)(deadline - zclock_mono())))
            break;
        zmsg_t *msg = zmsg_recv(sock);
        if (msg && zmsg_size(msg) == 4) {
            zmsg_first(msg);
            zmsg_next(msg);
            if (zframe_streq(zmsg_next(msg), "mmi.services")) {
                frame = zmsg_last(msg);
                zmsg_remove(msg, frame);
            }
        }
        zmsg_destroy(&msg);
    }
    zpoller_destroy(&poller);
    services_t out = s_parse_services(frame);
    zframe_destroy(&frame);
    return out;
}

static int64_t s_workers_of(const services_t *all, const char *name, int64_t *lost)
{
    for (int i = 0; i < all->n; i++)
        if (strcmp(all->s[i].name, name) == 0) {
            if (lost)
                *lost = all->s[i].lost;
            return all->s[i].workers;
        }
    if (lost)
        *lost = 0;
    return 0;
}

/* Every service that had workers before has the same now, none lost. */
static void s_assert_services_kept(const services_t *before, const services_t *after)
{
    int real = 0;
    for (int i = 0; i < before->n; i++) {
        if (before->s[i].workers == 0)
            continue;
        real++;
        int64_t lost;
        int64_t workers = s_workers_of(after, before->s[i].name, &lost);
        if (workers != before->s[i].workers || lost != before->s[i].lost)
            fail_msg("%s: %" PRId64 " workers (%" PRId64 " lost), had %" PRId64 " (%" PRId64
                     " lost)",
                     before->s[i].name, workers, lost, before->s[i].workers, before->s[i].lost);
    }
    assert_true(real >= 5); /* sys, users, catalog, orders, payments at least */
}

/* A valid request body: op with no args. */
static void s_body(msgpack_sbuffer *body, uint64_t id, const char *op)
{
    msgpack_sbuffer_init(body);
    assert_int_equal(envelope_pack_request(body, id, op, NULL, NULL, 0), 0);
}

/* ---- strangers ---------------------------------------------------------- */

static void test_strangers_get_nothing(void **state)
{
    system_t *s = *state;
    enum { N = 4 };
    const char *what[N] = {"a new unnamed certificate", "a new certificate named users",
                           "a new key named victim", "no CURVE at all"};
    zcert_t *certs[3] = {zcert_new(), zcert_new(), zcert_new()};
    for (int i = 0; i < 3; i++)
        assert_non_null(certs[i]);
    zcert_set_meta(certs[1], "name", "%s", "users");
    zcert_set_meta(certs[2], "name", "%s", "victim");
    zsock_t *socks[N];
    for (int i = 0; i < N; i++) {
        socks[i] = zsock_new(ZMQ_DEALER);
        assert_non_null(socks[i]);
        zsock_set_linger(socks[i], 0);
        zsock_set_sndtimeo(socks[i], STRANGER_WAIT_MS);
        if (i < 3)
            keys_apply_client(socks[i], certs[i], s->f->broker_key);
        assert_int_equal(zsock_connect(socks[i], "%s", s->f->broker_endpoint), 0);
    }

    /* Each sends a valid request and an mmi one. A send may fail: a
     * refused handshake leaves no connection to send on. */
    msgpack_sbuffer body;
    s_body(&body, 7, "ping");
    int sent = 0;
    for (int i = 0; i < N; i++) {
        zmsg_t *msg = zmsg_new();
        zmsg_addmem(msg, "", 0);
        zmsg_addstr(msg, MDP_CLIENT);
        zmsg_addstr(msg, "sys");
        zmsg_addmem(msg, body.data, body.size);
        if (zmsg_send(&msg, socks[i]) == 0)
            sent++;
        zmsg_destroy(&msg);
        if (zstr_sendx(socks[i], "", MDP_CLIENT, "mmi.services", "", NULL) == 0)
            sent++;
    }
    msgpack_sbuffer_destroy(&body);

    /* For STRANGER_WAIT_MS none of them hears anything, while the victim
     * is answered over and over. */
    int64_t end = zclock_mono() + STRANGER_WAIT_MS;
    int victim_before = s->answered;
    while (zclock_mono() < end) {
        s_victim_ok(s);
        for (int i = 0; i < N; i++) {
            zmsg_t *msg = s_take(socks[i]);
            if (msg)
                fail_msg("%s got an answer", what[i]);
        }
        zclock_sleep(20); /* pacing the victim, not waiting for a condition */
    }
    for (int i = 0; i < N; i++) {
        zpoller_t *poller = zpoller_new(socks[i], NULL);
        void *which = zpoller_wait(poller, 0);
        zpoller_destroy(&poller);
        if (which)
            fail_msg("%s got an answer", what[i]);
    }
    printf("strangers: %d kinds, %d of %d requests sent (a refused handshake may leave no "
           "connection to send on), 0 answers in %d ms; the victim meanwhile: %d answers, all "
           "right\n",
           N, sent, 2 * N, STRANGER_WAIT_MS, s->answered - victim_before);
    assert_true(s->answered > victim_before);
    for (int i = 0; i < N; i++)
        zsock_destroy(&socks[i]);
    for (int i = 0; i < 3; i++)
        zcert_destroy(&certs[i]);
}

/* ---- a rogue with an allowed certificate ------------------------------- */

/* A message to send: its frames, up to the first with data NULL. */
typedef struct {
    const char *what;
    struct {
        const void *data;
        size_t len;
    } frames[13];
} bad_t;

#define F(s)                                                                                       \
    {                                                                                              \
        s, sizeof s - 1                                                                            \
    }

/* An allowed CURVE DEALER named `name`, admitted (it has been answered). */
static zsock_t *s_rogue(system_t *s, const char *name)
{
    zcert_t *cert = keys_ensure(s->f->keys, name);
    assert_non_null(cert);
    assert_int_equal(keys_allow(s->f->keys, cert, name), 0);
    zsock_t *sock = zsock_new(ZMQ_DEALER);
    assert_non_null(sock);
    zsock_set_linger(sock, 0);
    zsock_set_sndtimeo(sock, ANSWER_MS);
    keys_apply_client(sock, cert, s->f->broker_key);
    zcert_destroy(&cert);
    assert_int_equal(zsock_connect(sock, "%s", s->f->broker_endpoint), 0);
    services_t seen = s_services_over(sock);
    assert_true(seen.n > 0);
    return sock;
}

/* Sends one message of frames; drains whatever the rogue was sent. */
static void s_send_bad(zsock_t *rogue, const bad_t *bad)
{
    zmsg_t *msg = zmsg_new();
    assert_non_null(msg);
    for (int i = 0; bad->frames[i].data; i++)
        assert_int_equal(zmsg_addmem(msg, bad->frames[i].data, bad->frames[i].len), 0);
    if (zmsg_send(&msg, rogue) != 0)
        fail_msg("the rogue could not send: %s", bad->what);
    zmsg_t *answer;
    while ((answer = s_take(rogue)))
        zmsg_destroy(&answer);
}

static void test_malformed_frames(void **state)
{
    system_t *s = *state;
    services_t before = s_services(s);
    int64_t sys_workers = s_workers_of(&before, "sys", NULL);
    int64_t users_workers = s_workers_of(&before, "users", NULL);
    assert_true(sys_workers > 0 && users_workers > 0);
    zsock_t *rogue = s_rogue(s, "rogue");

    msgpack_sbuffer ping;
    s_body(&ping, 1, "ping");
    char *huge = malloc(HUGE_BYTES);
    assert_non_null(huge);
    memset(huge, 0x81, HUGE_BYTES); /* fixmap after fixmap: no valid envelope */
    char garbage[64];
    for (size_t i = 0; i < sizeof garbage; i++)
        garbage[i] = (char)(0xc1 ^ (i * 37));
    char long_name[300];
    memset(long_name, 's', sizeof long_name);
    const char tag[MDP_TAG_LEN] = "12345678";
    const char client_id[5] = {0, 1, 2, 3, 4};

    const bad_t bad[] = {
        {"one empty frame", {F("")}},
        {"no empty frame", {F(MDP_CLIENT), F("sys"), {ping.data, ping.size}}},
        {"a wrong header", {F(""), F("MDPC02"), F("sys"), {ping.data, ping.size}}},
        {"a header only", {F(""), F(MDP_CLIENT)}},
        {"no body", {F(""), F(MDP_CLIENT), F("sys")}},
        {"too many frames",
         {F(""), F(MDP_CLIENT), F("sys"), {ping.data, ping.size}, F("x"), F("y"), F("z")}},
        {"twelve frames",
         {F(""), F(MDP_CLIENT), F("sys"), F("1"), F("2"), F("3"), F("4"), F("5"), F("6"), F("7"),
          F("8"), F("9")}},
        {"an empty service", {F(""), F(MDP_CLIENT), F(""), {ping.data, ping.size}}},
        {"a 300-byte service",
         {F(""), F(MDP_CLIENT), {long_name, sizeof long_name}, {ping.data, ping.size}}},
        {"a garbage body", {F(""), F(MDP_CLIENT), F("sys"), {garbage, sizeof garbage}}},
        {"an empty body", {F(""), F(MDP_CLIENT), F("sys"), F("")}},
        {"a 3 MiB body", {F(""), F(MDP_CLIENT), F("sys"), {huge, HUGE_BYTES}}},
        {"garbage to users", {F(""), F(MDP_CLIENT), F("users"), {garbage, sizeof garbage}}},
        {"a service nobody serves", {F(""), F(MDP_CLIENT), F("nosuch"), {ping.data, ping.size}}},
        {"garbage to mmi.service", {F(""), F(MDP_CLIENT), F("mmi.service"), {huge, 100000}}},
        {"an unknown mmi service", {F(""), F(MDP_CLIENT), F("mmi.bogus"), F("")}},
        {"a worker header only", {F(""), F(MDP_WORKER)}},
        {"a two-byte command", {F(""), F(MDP_WORKER), F("\x01\x01")}},
        {"READY without a service", {F(""), F(MDP_WORKER), F("\x01")}},
        {"READY for sys", {F(""), F(MDP_WORKER), F("\x01"), F("sys")}},
        {"READY for users, capacity 1024",
         {F(""), F(MDP_WORKER), F("\x01"), F("users"), F("1024")}},
        {"READY for mmi.service", {F(""), F(MDP_WORKER), F("\x01"), F("mmi.service")}},
        {"READY for a 300-byte service",
         {F(""), F(MDP_WORKER), F("\x01"), {long_name, sizeof long_name}}},
        {"REPLY unregistered",
         {F(""),
          F(MDP_WORKER),
          F("\x03"),
          {client_id, sizeof client_id},
          F(""),
          {ping.data, ping.size}}},
        {"REPLY with a tag, unregistered",
         {F(""),
          F(MDP_WORKER),
          F("\x03"),
          {client_id, sizeof client_id},
          F(""),
          {ping.data, ping.size},
          {tag, sizeof tag}}},
        {"HEARTBEAT unregistered", {F(""), F(MDP_WORKER), F("\x04")}},
        {"DISCONNECT unregistered", {F(""), F(MDP_WORKER), F("\x05")}},
        {"REQUEST, the broker's command",
         {F(""),
          F(MDP_WORKER),
          F("\x02"),
          {client_id, sizeof client_id},
          F(""),
          {ping.data, ping.size},
          F("x"),
          {tag, sizeof tag}}},
        {"an unknown command", {F(""), F(MDP_WORKER), F("\x09")}},
        {"command zero", {F(""), F(MDP_WORKER), {"\0", 1}}},
    };
    const int n_bad = (int)(sizeof bad / sizeof bad[0]);

    /* One at a time, the victim answered after each; and no message made
     * the rogue a worker of sys or users, not even for a moment: the
     * rogue's own mmi.services, on the same connection, is answered
     * after the message was handled. */
    services_t seen;
    for (int i = 0; i < n_bad; i++) {
        s_send_bad(rogue, &bad[i]);
        s_victim_ok(s);
        seen = s_services_over(rogue);
        if (s_workers_of(&seen, "sys", NULL) != sys_workers ||
            s_workers_of(&seen, "users", NULL) != users_workers)
            fail_msg("after %s: sys has %" PRId64 " workers, users %" PRId64, bad[i].what,
                     s_workers_of(&seen, "sys", NULL), s_workers_of(&seen, "users", NULL));
    }

    /* All of it again, ROUNDS times over without a pause. */
    int64_t burst_start = zclock_mono();
    for (int r = 0; r < ROUNDS; r++)
        for (int i = 0; i < n_bad; i++)
            s_send_bad(rogue, &bad[i]);
    int64_t burst_ms = zclock_mono() - burst_start;
    for (int i = 0; i < 50; i++)
        s_victim_ok(s);

    /* A rogue worker of its own name is taken, and dropped when it
     * replies for a request it does not hold, or says READY twice. */
    const bad_t own_ready = {"READY for rogue", {F(""), F(MDP_WORKER), F("\x01"), F("rogue")}};
    const bad_t bogus_reply = {"REPLY with a tag it does not hold",
                               {F(""),
                                F(MDP_WORKER),
                                F("\x03"),
                                {client_id, sizeof client_id},
                                F(""),
                                {ping.data, ping.size},
                                {tag, sizeof tag}}};
    s_send_bad(rogue, &own_ready);
    seen = s_services_over(rogue);
    assert_int_equal(s_workers_of(&seen, "rogue", NULL), 1);
    s_send_bad(rogue, &bogus_reply);
    seen = s_services_over(rogue);
    assert_int_equal(s_workers_of(&seen, "rogue", NULL), 0);
    s_send_bad(rogue, &own_ready);
    s_send_bad(rogue, &own_ready);
    seen = s_services_over(rogue);
    assert_int_equal(s_workers_of(&seen, "rogue", NULL), 0);
    s_victim_ok(s);

    services_t after = s_services(s);
    s_assert_services_kept(&before, &after);
    printf("malformed: %d kinds of message, %d sent (%d in a burst of %" PRId64
           " ms); the victim: %d answers, all right, the slowest %.1f ms; every real service kept "
           "its workers and lost none\n",
           n_bad, n_bad * (ROUNDS + 1) + 4, n_bad * ROUNDS, burst_ms, s->answered,
           (double)s->worst_us / 1000.0);

    zsock_destroy(&rogue);
    free(huge);
    msgpack_sbuffer_destroy(&ping);
}

/* A frame over the broker's limit: libzmq disconnects its sender when
 * the frame's header arrives, and nobody else notices. */
static void test_oversized_frame(void **state)
{
    system_t *s = *state;
    services_t before = s_services(s);
    zsock_t *rogue = s_rogue(s, "rogue-big");
    zactor_t *monitor = zactor_new(zmonitor, rogue);
    assert_non_null(monitor);
    zstr_sendx(monitor, "LISTEN", "DISCONNECTED", NULL);
    zstr_sendx(monitor, "START", NULL);
    assert_int_equal(zsock_wait(monitor), 0);

    size_t big_len = 2 * (size_t)BROKER_MAX_FRAME_BYTES;
    char *big = malloc(big_len);
    assert_non_null(big);
    memset(big, 0x81, big_len);
    const bad_t over = {"a body over the frame limit",
                        {F(""), F(MDP_CLIENT), F("sys"), {big, big_len}}};
    s_send_bad(rogue, &over);
    free(big);

    /* The disconnect, while the victim is answered. */
    zpoller_t *poller = zpoller_new(monitor, NULL);
    assert_non_null(poller);
    bool disconnected = false;
    int64_t deadline = zclock_mono() + ANSWER_MS;
    while (!disconnected && zclock_mono() < deadline) {
        s_victim_ok(s);
        if (zpoller_wait(poller, 50) == monitor) {
            /* [event] [value] [address] */
            zmsg_t *event = zmsg_recv(monitor);
            char *name = event ? zmsg_popstr(event) : NULL;
            disconnected = name && streq(name, "DISCONNECTED");
            zstr_free(&name);
            zmsg_destroy(&event);
        }
    }
    zpoller_destroy(&poller);
    if (!disconnected)
        fail_msg("a %zu-byte frame did not get its sender disconnected within %d ms", big_len,
                 ANSWER_MS);

    /* Connected again (libzmq does that itself), the same socket is
     * served, and every real service kept its workers. */
    services_t seen = s_services_over(rogue);
    assert_true(seen.n > 0);
    s_victim_ok(s);
    services_t after = s_services(s);
    s_assert_services_kept(&before, &after);
    printf("oversized: %zu MiB in one frame disconnected its sender (the limit: %d MiB), which was "
           "served again once connected; the victim: %d answers, all right\n",
           big_len >> 20, BROKER_MAX_FRAME_BYTES >> 20, s->answered);

    zactor_destroy(&monitor);
    zsock_destroy(&rogue);
}

static void test_stop(void **state)
{
    system_t *s = *state;
    assert_int_equal(fixture_stop(s->f), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_strangers_get_nothing),
        cmocka_unit_test(test_malformed_frames),
        cmocka_unit_test(test_oversized_frame),
        cmocka_unit_test(test_stop),
    };
    return cmocka_run_group_tests_name("strangers", tests, s_setup, s_teardown);
}

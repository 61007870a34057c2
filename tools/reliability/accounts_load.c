/*  accounts_load.c - login and registration load with a timeline of every
 *  answer, for the lost-database test (tools/reliability/lost_db.sh).
 *
 *      accounts-load --out FILE [--logins N] [--registers N] [--pause-ms MS]
 *                    [--timeout-ms MS] [--endpoint E] [--data-dir DIR]
 *
 *  Why not loadgen: loadgen reports a run's totals and percentiles, and
 *  the lost-database test needs each answer placed in time against the
 *  moments PostgreSQL stopped and came back (what was answered while it
 *  was down, how soon the first login succeeded after it returned).
 *
 *  How it works. N login clients and M registration clients, each with
 *  one request in flight at a time (a closed loop) and a pause of
 *  --pause-ms (20) between its answer and its next request, so that fast
 *  refusals during an outage do not turn into a spin. Every client's
 *  requests go through one CURVE DEALER to the broker (certificate
 *  "accounts-load" in the keys directory, made and allow-listed on first
 *  use, as loadgen does), and an answer is matched to its client by the
 *  envelope id (client index in the high 32 bits, a sequence number in
 *  the low ones, so a late answer to a request given up on matches
 *  nothing). Each login client first registers its own account (retried
 *  until it works, for up to 30 s); registrations use fresh emails.
 *
 *  It runs until SIGINT or SIGTERM and writes one line per answer to
 *  FILE, flushed as it goes:
 *
 *      CLIENT OP SENT_US ANSWERED_US CODE RETRY
 *
 *  OP is login or register; the times are CLOCK_REALTIME in microseconds
 *  (comparable with `date +%s%6N` in the script); CODE is "ok", an error
 *  code of protocol/errors.h, "no_reply" (nothing within --timeout-ms,
 *  8000: past the broker's 5 s deadline, so a hang), or "pending" (still
 *  unanswered when the run was stopped); RETRY is 1 when the error
 *  carried details.retry_after (the hashing gate's "busy", not an
 *  outage), else 0. Exit status 0 after a stop, 1 when the setup failed,
 *  2 for bad usage.
 */
#include "protocol/envelope.h"
#include "protocol/errors.h"
#include "protocol/keys.h"
#include "protocol/mdpcli.h"
#include "protocol/settings.h"

#include <czmq.h>
#include <getopt.h>
#include <inttypes.h>
#include <msgpack.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLIENTS_MAX 256
#define SETUP_MS 30000
#define PASSWORD "lost-db-password"

typedef enum { OP_LOGIN, OP_REGISTER } op_t;

typedef struct {
    op_t op;
    char email[96];    /* a login client's account */
    uint32_t seq;      /* of the request in flight, or of the last one */
    bool in_flight;    /* a request is out */
    int64_t sent_us;   /* CLOCK_REALTIME */
    int64_t sent_mono; /* zclock_mono, for the deadline */
    int64_t next_mono; /* when the next request may leave */
} client_t;

typedef struct {
    const char *out;
    const char *endpoint;
    const char *data_dir;
    int logins, registers, pause_ms, timeout_ms;
} options_t;

static int64_t s_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Packs an auth.register or auth.login request for client c (index i). */
static int s_pack(msgpack_sbuffer *body, const char *run, int i, client_t *c)
{
    char email[96];
    if (c->op == OP_REGISTER)
        snprintf(email, sizeof email, "lostdb-%s-r%d-%" PRIu32 "@shop.test", run, i, c->seq);
    else
        snprintf(email, sizeof email, "%s", c->email);
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, c->op == OP_REGISTER ? 3 : 2);
    rc |= mp_pack_str(&pk, "email");
    rc |= mp_pack_str(&pk, email);
    rc |= mp_pack_str(&pk, "password");
    rc |= mp_pack_str(&pk, PASSWORD);
    if (c->op == OP_REGISTER) {
        rc |= mp_pack_str(&pk, "name");
        rc |= mp_pack_str(&pk, "Lost DB");
    }
    uint64_t id = ((uint64_t)(uint32_t)i << 32) | c->seq;
    if (rc == 0)
        rc = envelope_pack_request(body, id, c->op == OP_LOGIN ? "auth.login" : "auth.register",
                                   NULL, args.data, args.size);
    msgpack_sbuffer_destroy(&args);
    return rc == 0 ? 0 : -1;
}

static int s_send(mdpcli_t *cli, const char *run, int i, client_t *c)
{
    msgpack_sbuffer body;
    msgpack_sbuffer_init(&body);
    int rc = s_pack(&body, run, i, c);
    if (rc == 0)
        rc = mdpcli_send(cli, "users", body.data, body.size);
    msgpack_sbuffer_destroy(&body);
    if (rc == 0) {
        c->in_flight = true;
        c->sent_us = s_now_us();
        c->sent_mono = zclock_mono();
    }
    return rc;
}

/* Decodes an answer: its id, "ok" or the code, and whether the error
 * carried retry_after. false for a body that is no envelope reply. */
static bool s_decode(zframe_t *frame, uint64_t *id, const char **code, bool *retry)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    envelope_reply_t reply;
    const char *why = NULL;
    bool ok = envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why) &&
              reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    if (ok) {
        *id = reply.id.via.u64;
        *code = reply.ok ? "ok" : err_code_name(reply.code);
        const msgpack_object *details = reply.ok ? NULL : mp_map_get(&reply.error, "details");
        *retry = details && details->type == MSGPACK_OBJECT_MAP &&
                 mp_map_get(details, "retry_after") != NULL;
    }
    msgpack_zone_destroy(&zone);
    return ok;
}

static void s_line(FILE *out, int i, const client_t *c, int64_t answered_us, const char *code,
                   bool retry)
{
    fprintf(out, "%d %s %" PRId64 " %" PRId64 " %s %d\n", i,
            c->op == OP_LOGIN ? "login" : "register", c->sent_us, answered_us, code, retry);
    fflush(out);
}

/* Registers each login client's account, one at a time, until each got
 * ok (the allow-list may take a moment to list a new certificate). */
static int s_setup(mdpcli_t *cli, const char *run, client_t *clients, int n)
{
    int64_t deadline = zclock_mono() + SETUP_MS;
    for (int i = 0; i < n; i++) {
        if (clients[i].op != OP_LOGIN)
            continue;
        client_t reg = {.op = OP_REGISTER};
        bool done = false;
        while (!done && !zsys_interrupted && zclock_mono() < deadline) {
            reg.seq++;
            if (s_send(cli, run, CLIENTS_MAX + i, &reg) != 0)
                continue; /* no connection yet: mdpcli_send waited */
            zframe_t *frame = mdpcli_recv(cli, 5000, NULL);
            uint64_t id;
            const char *code;
            bool retry;
            done = frame && s_decode(frame, &id, &code, &retry) &&
                   id == (((uint64_t)(CLIENTS_MAX + i) << 32) | reg.seq) && strcmp(code, "ok") == 0;
            zframe_destroy(&frame);
            if (!done)
                zclock_sleep(100); /* pacing a retry, not waiting for a condition */
        }
        if (!done)
            return -1;
        snprintf(clients[i].email, sizeof clients[i].email, "lostdb-%s-r%d-%" PRIu32 "@shop.test",
                 run, CLIENTS_MAX + i, reg.seq);
    }
    return 0;
}

static void s_run(mdpcli_t *cli, const char *run, client_t *clients, int n, const options_t *opt,
                  FILE *out)
{
    while (!zsys_interrupted) {
        int64_t now = zclock_mono();
        int64_t wake = now + 100;
        for (int i = 0; i < n; i++) {
            client_t *c = &clients[i];
            if (c->in_flight && now - c->sent_mono >= opt->timeout_ms) {
                s_line(out, i, c, s_now_us(), "no_reply", false);
                c->in_flight = false;
                c->next_mono = now + opt->pause_ms;
            }
            if (!c->in_flight && now >= c->next_mono) {
                c->seq++;
                if (s_send(cli, run, i, c) != 0) {
                    fprintf(stderr, "accounts-load: cannot send; retrying\n");
                    c->next_mono = now + opt->pause_ms;
                }
            }
            int64_t due = c->in_flight ? c->sent_mono + opt->timeout_ms : c->next_mono;
            if (due < wake)
                wake = due;
        }
        int wait = (int)(wake - zclock_mono());
        zframe_t *frame = mdpcli_recv(cli, wait > 0 ? wait : 0, NULL);
        if (!frame)
            continue;
        int64_t answered = s_now_us();
        uint64_t id;
        const char *code;
        bool retry;
        if (s_decode(frame, &id, &code, &retry)) {
            uint32_t i = (uint32_t)(id >> 32);
            if ((int)i < n && clients[i].in_flight && clients[i].seq == (uint32_t)id) {
                s_line(out, (int)i, &clients[i], answered, code, retry);
                clients[i].in_flight = false;
                clients[i].next_mono = zclock_mono() + opt->pause_ms;
            }
        }
        zframe_destroy(&frame);
    }
    for (int i = 0; i < n; i++)
        if (clients[i].in_flight)
            s_line(out, i, &clients[i], s_now_us(), "pending", false);
}

static void s_usage(FILE *to)
{
    fprintf(to, "usage: accounts-load --out FILE [--logins N] [--registers N] [--pause-ms MS]\n"
                "                     [--timeout-ms MS] [--endpoint E] [--data-dir DIR]\n");
}

static bool s_int(const char *text, int min, int max, int *out)
{
    char *end = NULL;
    long v = strtol(text, &end, 10);
    if (!*text || *end || v < min || v > max)
        return false;
    *out = (int)v;
    return true;
}

int main(int argc, char **argv)
{
    options_t opt = {.logins = 2, .registers = 2, .pause_ms = 20, .timeout_ms = 8000};
    static const struct option longs[] = {
        {"out", required_argument, NULL, 'o'},
        {"logins", required_argument, NULL, 'l'},
        {"registers", required_argument, NULL, 'r'},
        {"pause-ms", required_argument, NULL, 'p'},
        {"timeout-ms", required_argument, NULL, 't'},
        {"endpoint", required_argument, NULL, 'e'},
        {"data-dir", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longs, NULL)) != -1) {
        bool good = true;
        switch (ch) {
        case 'o':
            opt.out = optarg;
            break;
        case 'l':
            good = s_int(optarg, 0, CLIENTS_MAX / 2, &opt.logins);
            break;
        case 'r':
            good = s_int(optarg, 0, CLIENTS_MAX / 2, &opt.registers);
            break;
        case 'p':
            good = s_int(optarg, 0, 60000, &opt.pause_ms);
            break;
        case 't':
            good = s_int(optarg, 1, 600000, &opt.timeout_ms);
            break;
        case 'e':
            opt.endpoint = optarg;
            break;
        case 'd':
            opt.data_dir = optarg;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
        if (!good) {
            fprintf(stderr, "accounts-load: bad value '%s'\n", optarg);
            return 2;
        }
    }
    int n = opt.logins + opt.registers;
    if (optind != argc || !opt.out || n == 0) {
        s_usage(stderr);
        return 2;
    }

    settings_t settings;
    char err[512];
    if (settings_load(&settings, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "accounts-load: %s\n", err);
        return 2;
    }
    if (opt.data_dir) {
        if (!*opt.data_dir || strlen(opt.data_dir) + 6 >= sizeof settings.data_dir) {
            fprintf(stderr, "accounts-load: --data-dir is empty or too long\n");
            return 2;
        }
        snprintf(settings.data_dir, sizeof settings.data_dir, "%s", opt.data_dir);
        settings_derive(&settings);
    }
    if (!opt.endpoint)
        opt.endpoint = settings.broker_endpoint;

    int status = 1;
    zcert_t *cert = NULL;
    mdpcli_t *cli = NULL;
    FILE *out = NULL;
    client_t *clients = calloc((size_t)n, sizeof *clients);
    char server_public[KEYS_Z85_LEN + 1];
    if (!clients)
        goto cleanup;
    /* Allow-listed only when made here, as loadgen does: a removed
     * clients/ entry stays removed. */
    cert = keys_load(settings.keys_dir, "accounts-load");
    if (!cert) {
        cert = keys_ensure(settings.keys_dir, "accounts-load");
        if (cert && keys_allow(settings.keys_dir, cert, "accounts-load") != 0)
            zcert_destroy(&cert);
    }
    if (!cert || keys_broker_public(settings.keys_dir, server_public) != 0) {
        fprintf(stderr, "accounts-load: no certificate or broker key in %s\n", settings.keys_dir);
        goto cleanup;
    }
    cli = mdpcli_new(opt.endpoint, cert, server_public);
    out = fopen(opt.out, "w");
    if (!cli || !out) {
        fprintf(stderr, "accounts-load: cannot connect to %s or write %s\n", opt.endpoint, opt.out);
        goto cleanup;
    }
    char run[9];
    snprintf(run, sizeof run, "%08" PRIx32, (uint32_t)randombytes_random());
    for (int i = 0; i < n; i++)
        clients[i].op = i < opt.logins ? OP_LOGIN : OP_REGISTER;
    if (s_setup(cli, run, clients, n) != 0) {
        fprintf(stderr, "accounts-load: the login clients' accounts could not be registered\n");
        goto cleanup;
    }
    fprintf(stderr, "accounts-load: %d login and %d registration clients running\n", opt.logins,
            opt.registers);
    s_run(cli, run, clients, n, &opt, out);
    status = 0;
cleanup:
    if (out && fclose(out) != 0) {
        fprintf(stderr, "accounts-load: cannot write %s\n", opt.out);
        status = 1;
    }
    mdpcli_destroy(&cli);
    zcert_destroy(&cert);
    free(clients);
    return status;
}

/*  loadgen.c - the load harness: runs a scenario's virtual users against
 *  the broker for D seconds and reports throughput and latency, per step
 *  and overall.
 *
 *      loadgen [--scenario FILE [--file NAME=PATH]...] [--service S --op O --size N]
 *              [-c USERS] [-d SECONDS] [--rate R] [--warmup SECONDS]
 *              [--sockets N] [--timeout MS] [--seed N] [--record FILE]
 *              [--endpoint E] [--data-dir DIR] [--server-cert NAME] [--json] [-q]
 *
 *  Without --scenario it sends one operation (sys.echo by default) with
 *  args {"pad": "<N bytes>"}, as a one-step scenario. With it, the
 *  scenario file (tools/harness/scenario.h; examples in tools/scenarios/)
 *  says what each virtual user does. -c is the number of virtual users:
 *  the requests in flight in the closed loop (the default), the most in
 *  flight in the open loop (--rate R: R requests/s, latency from when each
 *  was due; tools/harness/runner.h).
 *
 *  Requests are the real thing: [empty]["MDPC01"][service][body] with the
 *  msgpack envelope, over CurveZMQ for any endpoint that leaves the
 *  process. The client certificate is keys_dir/loadgen.cert, made and
 *  allow-listed on first use (only then, so removing it from clients/
 *  revokes it); the server's public key comes from keys_dir/NAME.cert
 *  (--server-cert, "broker" by default; the bare relay uses "relay").
 *
 *  Latencies go into log-linear histograms (tools/harness/histogram.h),
 *  within 0.78% of the exact percentile. Exit status 0 when at least one
 *  reply said ok (and the record, if any, was written whole), 1
 *  otherwise, 2 for bad usage.
 */
#include "tools/harness/histogram.h"
#include "tools/harness/record.h"
#include "tools/harness/runner.h"
#include "tools/harness/scenario.h"

#include <czmq.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/errors.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/settings.h"

/* Upper bounds that keep a typo from allocating the machine away. */
#define USERS_MAX 100000
#define SOCKETS_MAX 1024
#define PAD_MAX (1024 * 1024)
#define FILES_MAX 32

typedef struct {
    const char *endpoint;
    const char *scenario;
    scenario_file_override_t files[FILES_MAX];
    size_t nfiles;
    const char *service;
    const char *op;
    size_t pad;
    size_t users;
    size_t sockets;
    double seconds;
    double warmup;
    double rate;
    size_t timeout_ms;
    size_t seed;
    const char *record;
    const char *data_dir; /* NULL: from settings */
    const char *server_cert;
    bool json;
    bool quiet;
} options_t;

static int s_server_public(const char *keys_dir, const char *name, char out[KEYS_Z85_LEN + 1])
{
    char *path = zsys_sprintf("%s/%s.cert", keys_dir, name);
    if (!path)
        return -1;
    zcert_t *cert = zcert_load(path);
    zstr_free(&path);
    if (!cert)
        return -1;
    snprintf(out, KEYS_Z85_LEN + 1, "%s", zcert_public_txt(cert));
    zcert_destroy(&cert);
    return 0;
}

static double s_us(const histogram_t *h, double p)
{
    return (double)histogram_percentile(h, p) / 1000.0;
}

static void s_print_stats_line(const char *name, const runner_stats_t *st)
{
    printf("%-22s %9" PRIu64 " %9" PRIu64 " %7" PRIu64 " %9.0f %9.0f %9.0f %9.0f %9.0f\n", name,
           st->replies, st->ok + st->accepted, runner_stats_errors(st), s_us(st->latency, 50),
           s_us(st->latency, 90), s_us(st->latency, 99), s_us(st->latency, 99.9),
           s_us(st->latency, 100));
}

static void s_print_errors(const char *name, const runner_stats_t *st)
{
    for (int c = 0; c < ERR__COUNT; c++)
        if (st->errors[c])
            printf("  %s: error %s %" PRIu64 "\n", name, err_code_name((err_code_t)c),
                   st->errors[c]);
    if (st->accepted)
        printf("  %s: accepted errors %" PRIu64 "\n", name, st->accepted);
    if (st->no_reply)
        printf("  %s: no reply %" PRIu64 "\n", name, st->no_reply);
    if (st->capture)
        printf("  %s: capture found nothing %" PRIu64 "\n", name, st->capture);
    if (st->missing_var)
        printf("  %s: not sent, a variable was not set %" PRIu64 "\n", name, st->missing_var);
}

static json_t *s_stats_json(const char *name, const scenario_step_t *step, const runner_stats_t *st,
                            double window)
{
    json_t *by_code = json_object();
    for (int c = 0; c < ERR__COUNT; c++)
        if (st->errors[c])
            json_object_set_new(by_code, err_code_name((err_code_t)c),
                                json_integer((json_int_t)st->errors[c]));
    if (st->no_reply)
        json_object_set_new(by_code, "no_reply", json_integer((json_int_t)st->no_reply));
    if (st->capture)
        json_object_set_new(by_code, "capture", json_integer((json_int_t)st->capture));
    if (st->missing_var)
        json_object_set_new(by_code, "missing_var", json_integer((json_int_t)st->missing_var));
    json_t *o = json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:f, s:f, s:f, s:o}",
                          "name", name, "requests", (json_int_t)st->requests, "replies",
                          (json_int_t)st->replies, "ok", (json_int_t)st->ok, "accepted",
                          (json_int_t)st->accepted, "errors", (json_int_t)runner_stats_errors(st),
                          "rps", window > 0 ? (double)st->replies / window : 0.0, "p50_us",
                          s_us(st->latency, 50), "p90_us", s_us(st->latency, 90), "p99_us",
                          s_us(st->latency, 99), "p999_us", s_us(st->latency, 99.9), "max_us",
                          s_us(st->latency, 100), "errors_by_code", by_code);
    if (o && step) {
        json_object_set_new(o, "service", json_string(step->service));
        json_object_set_new(o, "op", json_string(step->op));
    }
    return o;
}

static void s_report(const options_t *opt, const scenario_t *sc, const runner_result_t *r,
                     bool curve)
{
    double rps = r->window_s > 0 ? (double)r->in_window / r->window_s : 0;
    const runner_stats_t *t = &r->total;
    printf("scenario %s via %s%s, %zu virtual users over %zu socket%s, ", scenario_name(sc),
           opt->endpoint, curve ? " (CURVE)" : "", opt->users, opt->sockets,
           opt->sockets == 1 ? "" : "s");
    if (opt->rate > 0)
        printf("open loop at %.0f requests/s\n", opt->rate);
    else
        printf("closed loop\n");
    printf("window      %.2f s after %.1f s warmup%s\n", r->window_s, opt->warmup,
           r->interrupted ? " (interrupted)" : "");
    printf("requests/s  %.0f\n", rps);
    printf("latency us  p50 %.0f  p90 %.0f  p99 %.0f  p99.9 %.0f  max %.0f\n", s_us(t->latency, 50),
           s_us(t->latency, 90), s_us(t->latency, 99), s_us(t->latency, 99.9),
           s_us(t->latency, 100));
    printf("total       %" PRIu64 " replies, %" PRIu64 " ok, %" PRIu64 " errors, %" PRIu64
           " no reply\n",
           t->replies, t->ok + t->accepted, runner_stats_errors(t), t->no_reply);
    double cpu_us = r->replies_all ? r->cpu_s * 1e6 / (double)r->replies_all : 0;
    printf("harness     %.1f us of CPU per reply (%.0f%% of a core)\n", cpu_us,
           r->window_s > 0 ? 100 * r->cpu_s / (r->window_s + opt->warmup) : 0);
    if (opt->rate > 0)
        printf("schedule    at most %" PRIu64 " requests were due and not yet sent\n",
               r->due_late_max);
    if (r->nsteps > 1) {
        printf("\n%-22s %9s %9s %7s %9s %9s %9s %9s %9s\n", "step (latency us)", "replies", "ok",
               "errors", "p50", "p90", "p99", "p99.9", "max");
        for (size_t i = 0; i < r->nsteps; i++)
            if (r->steps[i].requests || r->steps[i].replies || r->steps[i].missing_var)
                s_print_stats_line(scenario_step(sc, i)->name, &r->steps[i]);
        s_print_stats_line("all", t);
    }
    for (size_t i = 0; i < r->nsteps; i++)
        s_print_errors(scenario_step(sc, i)->name, &r->steps[i]);
    if (r->malformed)
        printf("  malformed replies      %" PRIu64 "\n", r->malformed);
    if (r->unmatched)
        printf("  unmatched replies      %" PRIu64 "\n", r->unmatched);

    if (!opt->json)
        return;
    json_t *steps = json_array();
    for (size_t i = 0; i < r->nsteps; i++)
        json_array_append_new(steps, s_stats_json(scenario_step(sc, i)->name, scenario_step(sc, i),
                                                  &r->steps[i], r->window_s));
    json_t *total = s_stats_json("all", NULL, t, r->window_s);
    /* The whole run's figures also at the top, where a single-op run's
     * reader has always found them. */
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:b, s:s, s:f, s:I, s:I, s:I, s:f, s:f, s:I, s:f, s:f, s:f, s:f, s:f, "
        "s:f, s:I, s:I, s:O, s:I, s:I, s:I, s:I, s:b, s:o, s:o}",
        "scenario", scenario_name(sc), "run", r->run_id, "endpoint", opt->endpoint, "curve", curve,
        "model", opt->rate > 0 ? "open" : "closed", "rate", opt->rate, "concurrency",
        (json_int_t)opt->users, "sockets", (json_int_t)opt->sockets, "request_bytes",
        (json_int_t)r->request_bytes_max, "seconds", r->window_s, "warmup", opt->warmup, "requests",
        (json_int_t)r->in_window, "rps", rps, "p50_us", s_us(t->latency, 50), "p90_us",
        s_us(t->latency, 90), "p99_us", s_us(t->latency, 99), "p999_us", s_us(t->latency, 99.9),
        "max_us", s_us(t->latency, 100), "replies", (json_int_t)t->replies, "errors",
        (json_int_t)runner_stats_errors(t), "errors_by_code",
        json_object_get(total, "errors_by_code"), "malformed", (json_int_t)r->malformed,
        "unmatched", (json_int_t)r->unmatched, "lost", (json_int_t)t->no_reply, "due_late_max",
        (json_int_t)r->due_late_max, "interrupted", r->interrupted, "total", total, "steps", steps);
    if (doc)
        json_object_set_new(doc, "cpu_us_per_reply", json_real(cpu_us));
    if (doc && r->nsteps == 1) {
        /* one op: named at the top, where its readers have always found it */
        json_object_set_new(doc, "service", json_string(scenario_step(sc, 0)->service));
        json_object_set_new(doc, "op", json_string(scenario_step(sc, 0)->op));
    }
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_REAL_PRECISION(10)) : NULL;
    if (text)
        printf("%s\n", text);
    else
        zsys_error("loadgen: cannot build the JSON result");
    free(text);
    json_decref(doc);
}

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: loadgen [options]\n"
            "  --scenario FILE    a scenario (tools/scenarios/*.json); without it one op:\n"
            "  --service S        service name (default sys)\n"
            "  --op O             operation (default echo)\n"
            "  --size N           args are {\"pad\": \"<N bytes>\"} (default 35: ~64-byte body)\n"
            "  --file NAME=PATH   the scenario's file NAME is PATH instead\n"
            "  -c, --concurrency K  virtual users: requests in flight (default 64)\n"
            "  -d, --duration S   measured seconds (default 10)\n"
            "  --rate R           open loop: R requests/s, latency from when each was due\n"
            "  --warmup S         seconds before measuring (default 1)\n"
            "  --sockets N        DEALER sockets the users share (default 1)\n"
            "  --timeout MS       a request's wait for its reply (default 10000)\n"
            "  --seed N           the random draws' seed (default: from the clock)\n"
            "  --record FILE      NDJSON of what was acknowledged (tools/harness/record.h)\n"
            "  --endpoint E       broker endpoint (default: settings broker_endpoint)\n"
            "  --data-dir DIR     data directory; keys are in DIR/keys\n"
            "  --server-cert NAME server certificate NAME.cert in the keys dir (default broker)\n"
            "  --json             also print the result as one JSON line\n"
            "  -q, --quiet        no progress line\n");
}

static int s_parse_size(const char *text, size_t min, size_t max, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v < min || v > max)
        return -1;
    *out = (size_t)v;
    return 0;
}

static int s_parse_seconds(const char *text, double min, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(v) || v < min || v > 86400)
        return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    options_t opt = {.service = "sys",
                     .op = "echo",
                     .pad = 35,
                     .users = 64,
                     .sockets = 1,
                     .seconds = 10,
                     .warmup = 1,
                     .timeout_ms = 10000,
                     .server_cert = "broker"};
    enum {
        OPT_ENDPOINT = 256,
        OPT_SCENARIO,
        OPT_FILE,
        OPT_SERVICE,
        OPT_OP,
        OPT_SIZE,
        OPT_RATE,
        OPT_WARMUP,
        OPT_SOCKETS,
        OPT_TIMEOUT,
        OPT_SEED,
        OPT_RECORD,
        OPT_DATA_DIR,
        OPT_SERVER_CERT,
        OPT_JSON
    };
    static const struct option longopts[] = {
        {"endpoint", required_argument, NULL, OPT_ENDPOINT},
        {"scenario", required_argument, NULL, OPT_SCENARIO},
        {"file", required_argument, NULL, OPT_FILE},
        {"service", required_argument, NULL, OPT_SERVICE},
        {"op", required_argument, NULL, OPT_OP},
        {"size", required_argument, NULL, OPT_SIZE},
        {"concurrency", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"rate", required_argument, NULL, OPT_RATE},
        {"warmup", required_argument, NULL, OPT_WARMUP},
        {"sockets", required_argument, NULL, OPT_SOCKETS},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"seed", required_argument, NULL, OPT_SEED},
        {"record", required_argument, NULL, OPT_RECORD},
        {"data-dir", required_argument, NULL, OPT_DATA_DIR},
        {"server-cert", required_argument, NULL, OPT_SERVER_CERT},
        {"json", no_argument, NULL, OPT_JSON},
        {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "c:d:qh", longopts, NULL)) != -1) {
        int bad = 0;
        switch (c) {
        case OPT_ENDPOINT:
            opt.endpoint = optarg;
            break;
        case OPT_SCENARIO:
            opt.scenario = optarg;
            break;
        case OPT_FILE: {
            char *eq = strchr(optarg, '=');
            bad = !eq || eq == optarg || !eq[1] || opt.nfiles == FILES_MAX;
            if (!bad) {
                *eq = '\0';
                opt.files[opt.nfiles++] = (scenario_file_override_t){optarg, eq + 1};
            }
            break;
        }
        case OPT_SERVICE:
            opt.service = optarg;
            bad = strlen(optarg) == 0 || strlen(optarg) > MDP_SERVICE_MAX;
            break;
        case OPT_OP:
            opt.op = optarg;
            bad = strlen(optarg) == 0 || strlen(optarg) > ENVELOPE_MAX_OP;
            break;
        case OPT_SIZE:
            bad = s_parse_size(optarg, 0, PAD_MAX, &opt.pad);
            break;
        case 'c':
            bad = s_parse_size(optarg, 1, USERS_MAX, &opt.users);
            break;
        case 'd':
            bad = s_parse_seconds(optarg, 0.001, &opt.seconds);
            break;
        case OPT_RATE:
            bad = s_parse_seconds(optarg, 0.001, &opt.rate) || opt.rate > 10000000;
            break;
        case OPT_WARMUP:
            bad = s_parse_seconds(optarg, 0, &opt.warmup);
            break;
        case OPT_SOCKETS:
            bad = s_parse_size(optarg, 1, SOCKETS_MAX, &opt.sockets);
            break;
        case OPT_TIMEOUT:
            bad = s_parse_size(optarg, 1, 3600000, &opt.timeout_ms);
            break;
        case OPT_SEED:
            bad = s_parse_size(optarg, 1, SIZE_MAX, &opt.seed);
            break;
        case OPT_RECORD:
            opt.record = optarg;
            break;
        case OPT_DATA_DIR:
            opt.data_dir = optarg;
            break;
        case OPT_SERVER_CERT:
            opt.server_cert = optarg;
            break;
        case OPT_JSON:
            opt.json = true;
            break;
        case 'q':
            opt.quiet = true;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
        if (bad) {
            fprintf(stderr, "loadgen: bad value '%s' for an option\n", optarg);
            return 2;
        }
    }
    if (optind != argc) {
        s_usage(stderr);
        return 2;
    }
    if (opt.sockets > opt.users) {
        fprintf(stderr, "loadgen: --sockets must not exceed -c\n");
        return 2;
    }
    if (opt.nfiles && !opt.scenario) {
        fprintf(stderr, "loadgen: --file needs --scenario\n");
        return 2;
    }

    settings_t settings;
    char err[512];
    if (settings_load(&settings, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 2;
    }
    if (opt.data_dir) {
        /* keys_dir is data_dir + "/keys" and must fit too. */
        if (!*opt.data_dir || strlen(opt.data_dir) + 6 >= sizeof settings.data_dir) {
            fprintf(stderr, "loadgen: --data-dir is empty or too long\n");
            return 2;
        }
        snprintf(settings.data_dir, sizeof settings.data_dir, "%s", opt.data_dir);
        settings_derive(&settings);
    }
    if (!opt.endpoint)
        opt.endpoint = settings.broker_endpoint;

    scenario_t *sc = opt.scenario ? scenario_load(opt.scenario, settings.data_dir, opt.files,
                                                  opt.nfiles, err, sizeof err)
                                  : scenario_single(opt.service, opt.op, opt.pad, err, sizeof err);
    if (!sc) {
        fprintf(stderr, "loadgen: %s\n", err);
        return 2;
    }

    int status = 2;
    zcert_t *cert = NULL;
    record_t *record = NULL;
    runner_t *runner = NULL;
    char server_public[KEYS_Z85_LEN + 1] = "";
    if (keys_endpoint_needs_curve(opt.endpoint)) {
        /* Allow-listed only when made here: an operator who removed
         * clients/loadgen.cert has revoked it, and that must stand. */
        cert = keys_load(settings.keys_dir, "loadgen");
        bool made = false;
        if (!cert) {
            cert = keys_ensure(settings.keys_dir, "loadgen");
            made = cert != NULL;
        }
        if (!cert || (made && keys_allow(settings.keys_dir, cert, "loadgen") != 0)) {
            fprintf(stderr, "loadgen: cannot create or allow-list %s/loadgen.cert\n",
                    settings.keys_dir);
            goto cleanup;
        }
        if (s_server_public(settings.keys_dir, opt.server_cert, server_public) != 0) {
            fprintf(stderr, "loadgen: cannot read %s/%s.cert\n", settings.keys_dir,
                    opt.server_cert);
            goto cleanup;
        }
    }
    runner_options_t ro = {.endpoint = opt.endpoint,
                           .cert = cert,
                           .server_public = cert ? server_public : NULL,
                           .vus = opt.users,
                           .sockets = opt.sockets,
                           .seconds = opt.seconds,
                           .warmup = opt.warmup,
                           .rate = opt.rate,
                           .timeout_ms = (int)opt.timeout_ms,
                           .seed = opt.seed,
                           .progress = opt.quiet ? NULL : stderr};
    runner = runner_new(&ro, sc, err, sizeof err);
    if (!runner) {
        fprintf(stderr, "loadgen: %s\n", err);
        goto cleanup;
    }
    if (opt.record) {
        record = record_new(opt.record, runner_result(runner)->run_id, scenario_name(sc), err,
                            sizeof err);
        if (!record) {
            fprintf(stderr, "loadgen: %s\n", err);
            goto cleanup;
        }
        runner_set_record(runner, record);
    }
    int rc = runner_run(runner);
    const runner_result_t *result = runner_result(runner);
    s_report(&opt, sc, result, cert != NULL);
    status = rc == 0 && result->total.ok > 0 ? 0 : 1;
    if (record && record_close(&record, err, sizeof err) != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", opt.record, err);
        status = 1;
    }
cleanup:
    runner_destroy(&runner);
    record_destroy(&record);
    zcert_destroy(&cert);
    scenario_destroy(&sc);
    return status;
}

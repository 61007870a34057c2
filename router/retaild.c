/*  retaild.c - the daemon: runs the broker and service pools, in any mix.
 *
 *      retaild                        everything on this machine
 *      retaild broker bridge          the broker and the HTTP bridge
 *      retaild sys --broker tcp://host:5555 --workers 8
 *                                     one service's pool, elsewhere
 *
 *  Roles are "broker", "bridge", "events" and the names of the services that
 *  actors/services.h lists: retaild knows a service only as an entry of
 *  that list (actors/service.h says what an entry holds and how it starts),
 *  so nothing here changes when one is added. Pools in the same process as
 *  the broker attach over inproc (no CURVE needed, and about twice the
 *  throughput); pools without a local broker connect over TCP with CURVE,
 *  using a certificate named after their service that is made on first
 *  start (and allow-listed when the keys directory is the broker's own, as
 *  on one machine; elsewhere copy NAME.cert into the broker's
 *  keys/clients/).
 *
 *  The events role is the event stream's proxy (router/events.h): started
 *  after the broker and before the services, so that their relays find it
 *  (over inproc here, else over TCP with CURVE as the service's
 *  certificate, to RETAIL_EVENTS_PUBLISH_ENDPOINT), and stopped after
 *  them, so that it forwards their last events; subscribers connect to
 *  RETAIL_EVENTS_ENDPOINT (CURVE, the broker's allow-list). Only a
 *  service's certificate may publish over TCP, and only its own events.
 *
 *  Shutdown drains: SIGINT and SIGTERM are blocked in every thread and
 *  taken by sigwait() here, so no handler runs in an arbitrary thread.
 *  Within one drain deadline (RETAIL_DRAIN_MS, 3 s by default): the bridge
 *  stops accepting connections and waits for the HTTP requests in flight;
 *  then the broker keeps handing queued and held requests to the live
 *  workers (services still call each other meanwhile) until none is left
 *  (broker_drain). Only then do the services stop, in the reverse of the
 *  list's order (each its pool, whose workers answer what they were given
 *  and say DISCONNECT, then its background actor and its shared state),
 *  then the events proxy, and the broker last, its socket lingering to
 *  deliver the final replies.
 *  What is still unanswered at the deadline, and only that, is answered
 *  unavailable.
 */
#include "actors/events_metrics.h"
#include "actors/services.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/settings.h"
#include "router/bridge.h"
#include "router/broker.h"
#include "router/events.h"

#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>

/* This process's services, for the bridge's /metrics: how often a worker
 * of each was restarted (actors/worker.h). Pools run on other hosts count
 * in their own process only. */
typedef struct {
    service_t *const *running; /* n entries, NULL when not running here */
    size_t n;
    /* The proxy when the events role runs here, else NULL. Only the
     * bridge's thread talks to it (an actor's pipe is one thread's) while
     * both run: main starts it before the bridge and stops it after. */
    zactor_t *events;
} pool_metrics_t;

/* The proxy's counts as Prometheus text at text + n (size bytes in all);
 * the new length. */
static int s_events_metrics(const pool_metrics_t *m, char *text, int n, size_t size)
{
    uint64_t forwarded = 0, refused = 0;
    if (!m->events || events_counts(m->events, &forwarded, &refused) != 0)
        return n;
    n += snprintf(text + n, size - (size_t)n,
                  "# HELP retail_events_forwarded_total Events the stream's proxy handed to "
                  "subscribers.\n"
                  "# TYPE retail_events_forwarded_total counter\n"
                  "retail_events_forwarded_total %llu\n"
                  "# HELP retail_events_refused_total Messages the proxy dropped from "
                  "publishers that may not publish them.\n"
                  "# TYPE retail_events_refused_total counter\n"
                  "retail_events_refused_total %llu\n",
                  (unsigned long long)forwarded, (unsigned long long)refused);
    return n;
}

static char *s_pool_metrics(void *arg)
{
    const pool_metrics_t *m = arg;
    size_t size = 1024 + m->n * (MDP_SERVICE_MAX + 64);
    char *text = malloc(size);
    if (!text)
        return NULL;
    int n = snprintf(text, size,
                     "# HELP retail_worker_restarts_total Workers started over after their "
                     "session failed.\n"
                     "# TYPE retail_worker_restarts_total counter\n");
    for (size_t i = 0; i < m->n; i++)
        if (m->running[i])
            n += snprintf(text + n, size - (size_t)n,
                          "retail_worker_restarts_total{service=\"%s\"} %llu\n",
                          service_def(m->running[i])->name,
                          (unsigned long long)pool_restarts(service_pool(m->running[i])));
    n = s_events_metrics(m, text, n, size);
    /* the outboxes' series: events published per type, depth, the oldest
     * unpublished event's age, per running service */
    char *outboxes = events_metrics(m->running, m->n);
    if (!outboxes)
        return text;
    char *all = zsys_sprintf("%s%s", text, outboxes);
    free(outboxes);
    if (!all)
        return text;
    free(text);
    return all;
}

/* Who may publish on the stream over TCP: a service's certificate (the
 * proxy also checks that each event's source is that name). */
static bool s_publisher_allowed(const char *name)
{
    return services_find(name) != NULL;
}

static void s_usage(FILE *out)
{
    size_t count;
    const service_def_t *const *services = services_all(&count);
    fprintf(out, "usage: retaild [ROLE...] [--broker ENDPOINT] [--workers N] [--config FILE]\n"
                 "               [--data-dir DIR] [--verbose]\n"
                 "roles: broker bridge events");
    for (size_t i = 0; i < count; i++)
        fprintf(out, " %s", services[i]->name);
    fprintf(out, " (none: all of them)\n"
                 "environment: RETAIL_DATA_DIR RETAIL_BROKER_ENDPOINT RETAIL_HTTP_PORT\n"
                 "             RETAIL_HTTP_ADDRESS RETAIL_HTTP_TIMEOUT_MS RETAIL_TLS_CERT\n"
                 "             RETAIL_TLS_KEY RETAIL_ACCESS_LOG\n"
                 "             RETAIL_WORKERS RETAIL_HEARTBEAT_MS RETAIL_REQUEST_TIMEOUT_MS\n"
                 "             RETAIL_QUEUE_LIMIT RETAIL_WORKER_CAPACITY RETAIL_DRAIN_MS\n"
                 "             RETAIL_EVENTS_ENDPOINT RETAIL_EVENTS_PUBLISH_ENDPOINT\n"
                 "             RETAIL_EVENTS_KEEP_MS RETAIL_EVENTS_KEEP_COUNT\n"
                 "             RETAIL_EVENTS_OUTBOX\n"
                 "             RETAIL_CONFIG\n"
                 "             RETAIL_TEST_OPS\n");
    /* each service's own, with the older names it still reads */
    for (size_t i = 0; i < count; i++) {
        const service_def_t *def = services[i];
        char label[MDP_SERVICE_MAX + 2];
        snprintf(label, sizeof label, "%s:", def->name);
        for (size_t k = 0; k < def->n_settings; k++) {
            const setting_t *t = &def->settings[k];
            fprintf(out, "%-13s%s", k == 0 ? label : "", t->env);
            if (t->old_env)
                fprintf(out, " (or %s)", t->old_env);
            fprintf(out, "\n");
        }
    }
}

/* Whether the command line asks for the role name: all roles when it
 * names none (getopt has moved the roles to the end, from optind). */
static bool s_role(int argc, char **argv, const char *name)
{
    if (optind == argc)
        return true;
    for (int i = optind; i < argc; i++)
        if (streq(argv[i], name))
            return true;
    return false;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {{"broker", required_argument, NULL, 'b'},
                                            {"workers", required_argument, NULL, 'w'},
                                            {"config", required_argument, NULL, 'c'},
                                            {"data-dir", required_argument, NULL, 'd'},
                                            {"verbose", no_argument, NULL, 'v'},
                                            {"help", no_argument, NULL, 'h'},
                                            {NULL, 0, NULL, 0}};
    const char *config_path = NULL, *broker_flag = NULL, *data_dir_flag = NULL;
    int workers_flag = 0;
    bool verbose = false;
    int opt;
    while ((opt = getopt_long(argc, argv, "b:w:c:d:vh", options, NULL)) != -1) {
        switch (opt) {
        case 'b':
            broker_flag = optarg;
            break;
        case 'w':
            workers_flag = atoi(optarg);
            break;
        case 'c':
            config_path = optarg;
            break;
        case 'd':
            data_dir_flag = optarg;
            break;
        case 'v':
            verbose = true;
            break;
        case 'h':
            s_usage(stdout);
            return 0;
        default:
            s_usage(stderr);
            return 2;
        }
    }
    if (workers_flag < 0 || workers_flag > 256) {
        fprintf(stderr, "retaild: --workers must be 1..256\n");
        return 2;
    }

    /* Which roles: none named means all. */
    bool run_broker = s_role(argc, argv, "broker");
    bool run_bridge = s_role(argc, argv, "bridge");
    bool run_events = s_role(argc, argv, "events");
    for (int i = optind; i < argc; i++) {
        if (!streq(argv[i], "broker") && !streq(argv[i], "bridge") && !streq(argv[i], "events") &&
            !services_find(argv[i])) {
            fprintf(stderr, "retaild: unknown role '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        }
    }

    /* The shared settings now; each service reads its own from the same
     * source when it starts. */
    settings_t settings;
    char err[256];
    settings_source_t *source = settings_source_new(config_path, err, sizeof err);
    if (!source || settings_load_from(&settings, source, err, sizeof err) != 0) {
        fprintf(stderr, "retaild: %s\n", err);
        settings_source_destroy(&source);
        return 2;
    }
    if (data_dir_flag) {
        /* room for "/keys" after it, as settings_load enforces */
        if (!*data_dir_flag || strlen(data_dir_flag) >= sizeof settings.data_dir - 5) {
            fprintf(stderr, "retaild: --data-dir is empty or too long\n");
            settings_source_destroy(&source);
            return 2;
        }
        snprintf(settings.data_dir, sizeof settings.data_dir, "%s", data_dir_flag);
        settings_derive(&settings);
    }
    if (broker_flag)
        snprintf(settings.broker_endpoint, sizeof settings.broker_endpoint, "%s", broker_flag);
    if (workers_flag)
        settings.workers = workers_flag;
    const char *test_ops_env = getenv("RETAIL_TEST_OPS");
    bool test_ops = test_ops_env && streq(test_ops_env, "1");

    /* Signals: block them before any thread exists so that every thread
     * inherits the mask, and take them with sigwait() below. */
    zsys_handler_set(NULL);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    setvbuf(stdout, NULL, _IOLBF, 0); /* access log lines leave whole */
    /* Every HTTP connection is a descriptor: allow as many as we may. */
    struct rlimit files;
    if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
        files.rlim_cur = files.rlim_max;
        setrlimit(RLIMIT_NOFILE, &files);
    }

    if (zsys_dir_create("%s", settings.data_dir) != 0) {
        fprintf(stderr, "retaild: cannot create data directory %s\n", settings.data_dir);
        settings_source_destroy(&source);
        return 1;
    }

    int rc = 1;
    zactor_t *broker = NULL;
    zactor_t *events = NULL;
    zactor_t *bridge = NULL;
    zcert_t *bridge_cert = NULL;
    size_t n_services;
    const service_def_t *const *services = services_all(&n_services);
    service_t **running = calloc(n_services, sizeof *running);
    zcert_t **certs = calloc(n_services, sizeof *certs);
    pool_metrics_t pool_metrics = {.running = running, .n = n_services};
    if (!running || !certs) {
        fprintf(stderr, "retaild: out of memory\n");
        goto cleanup;
    }

    if (run_broker) {
        broker_config_t bc = {
            .tcp_endpoint = settings.broker_endpoint,
            .keys_dir = settings.keys_dir,
            .heartbeat_ms = settings.heartbeat_ms,
            .request_timeout_ms = settings.request_timeout_ms,
            .queue_limit = settings.queue_limit,
            .verbose = verbose,
        };
        broker = broker_new(&bc);
        if (!broker) {
            fprintf(stderr, "retaild: the broker could not start on %s\n",
                    settings.broker_endpoint);
            goto cleanup;
        }
        zsys_info("retaild: broker on %s (keys in %s)", settings.broker_endpoint,
                  settings.keys_dir);
    }

    if (run_events) {
        events_config_t ec = {
            .publish_tcp = settings.events_publish_endpoint,
            .subscribe_tcp = settings.events_endpoint,
            .keys_dir = settings.keys_dir,
            .start_auth = !run_broker, /* the broker's zauth serves both */
            .publisher_allowed = s_publisher_allowed,
            .verbose = verbose,
        };
        events = events_new(&ec);
        if (!events) {
            fprintf(stderr, "retaild: the event stream could not start on %s and %s\n",
                    settings.events_endpoint, settings.events_publish_endpoint);
            goto cleanup;
        }
        pool_metrics.events = events;
        zsys_info("retaild: events for subscribers on %s, publishers on %s",
                  settings.events_endpoint, settings.events_publish_endpoint);
    }

    /* The broker's public key: the broker's and the proxy's (they share
     * the certificate), for whatever reaches either over TCP. */
    char broker_key[KEYS_Z85_LEN + 1] = "";
    if ((!run_broker || !run_events) && keys_broker_public(settings.keys_dir, broker_key) != 0) {
        fprintf(stderr, "retaild: no broker certificate at %s/broker.cert\n", settings.keys_dir);
        goto cleanup;
    }
    /* Each service named (or all): its settings, shared state, background
     * actor and pool (actors/service.h), in the list's order. */
    for (size_t i = 0; i < n_services; i++) {
        const service_def_t *def = services[i];
        if (!s_role(argc, argv, def->name))
            continue;
        service_env_t env = {
            .common = &settings,
            .source = source,
            .broker_endpoint = run_broker ? MDP_INPROC_ENDPOINT : settings.broker_endpoint,
            .test_ops = test_ops,
            .verbose = verbose,
            .events_endpoint =
                run_events ? EVENTS_INPROC_PUBLISH : settings.events_publish_endpoint,
        };
        if (!run_broker || !run_events) {
            certs[i] = keys_ensure(settings.keys_dir, def->name);
            if (!certs[i] || keys_allow(settings.keys_dir, certs[i], def->name) != 0) {
                fprintf(stderr, "retaild: cannot make the %s certificate in %s\n", def->name,
                        settings.keys_dir);
                goto cleanup;
            }
        }
        if (!run_broker) {
            env.cert = certs[i];
            env.server_key = broker_key;
        }
        if (!run_events) {
            env.events_cert = certs[i];
            env.events_server_key = broker_key;
        }
        running[i] = service_start(def, &env, err, sizeof err);
        if (!running[i]) {
            fprintf(stderr, "retaild: the %s service cannot start: %s\n", def->name, err);
            goto cleanup;
        }
        zsys_info("retaild: %s pool of %d workers on %s", def->name, service_workers(running[i]),
                  env.broker_endpoint);
    }

    if (run_bridge) {
        bridge_config_t hc = {
            .drain_ms = settings.drain_ms > 0 ? settings.drain_ms : -1,
            .metrics_extra = s_pool_metrics,
            .metrics_extra_arg = &pool_metrics,
            .bind_address = settings.http_address,
            .port = settings.http_port,
            .broker_endpoint = run_broker ? MDP_INPROC_ENDPOINT : settings.broker_endpoint,
            .timeout_ms = settings.http_timeout_ms,
            .tls_cert_file = settings.tls_cert[0] ? settings.tls_cert : NULL,
            .tls_key_file = settings.tls_key[0] ? settings.tls_key : NULL,
            .access_log = settings.access_log == 1,
        };
        if (!run_broker) {
            bridge_cert = keys_ensure(settings.keys_dir, "bridge");
            if (!bridge_cert || keys_allow(settings.keys_dir, bridge_cert, "bridge") != 0) {
                fprintf(stderr, "retaild: cannot make the bridge certificate in %s\n",
                        settings.keys_dir);
                goto cleanup;
            }
            hc.cert = bridge_cert;
            hc.server_key = broker_key;
        }
        if ((hc.tls_cert_file != NULL) != (hc.tls_key_file != NULL)) {
            fprintf(stderr, "retaild: RETAIL_TLS_CERT and RETAIL_TLS_KEY go together\n");
            goto cleanup;
        }
        bridge = bridge_new(&hc);
        if (!bridge) {
            fprintf(stderr, "retaild: the HTTP bridge could not start on %s:%d\n",
                    settings.http_address, settings.http_port);
            goto cleanup;
        }
        zsys_info("retaild: HTTP bridge on %s://%s:%d", hc.tls_cert_file ? "https" : "http",
                  settings.http_address, bridge_port(bridge));
    }

    int sig = 0;
    sigwait(&stop_signals, &sig);
    zsys_info("retaild: %s, draining (up to %d ms)", sig == SIGINT ? "SIGINT" : "SIGTERM",
              settings.drain_ms);
    rc = 0;
    int64_t drain_end = zclock_mono() + settings.drain_ms;
    bridge_destroy(&bridge); /* waits for HTTP requests in flight */
    if (broker) {
        int64_t left_ms = drain_end - zclock_mono();
        int unanswered = broker_drain(broker, left_ms > 0 ? (int)left_ms : 0);
        if (unanswered != 0)
            zsys_warning("retaild: %d requests were still unanswered at the drain deadline",
                         unanswered);
    }

cleanup:
    bridge_destroy(&bridge);
    zcert_destroy(&bridge_cert);
    /* the reverse of the start order: callers stop before what they call */
    for (size_t i = n_services; i-- > 0;) {
        if (running)
            service_stop(&running[i]);
        if (certs)
            zcert_destroy(&certs[i]);
    }
    events_destroy(&events); /* after the relays, before the broker's zauth */
    broker_destroy(&broker);
    free(running);
    free(certs);
    settings_source_destroy(&source);
    zsys_shutdown();
    return rc;
}

/*  retaild.c - the daemon: runs the broker and service pools, in any mix.
 *
 *      retaild                        everything on this machine
 *      retaild broker bridge          the broker and the HTTP bridge
 *      retaild sys --broker tcp://host:5555 --workers 8
 *                                     one service's pool, elsewhere
 *
 *  Roles are "broker", "bridge" and the service names of s_services below. Pools in
 *  the same process as the broker attach over inproc (no CURVE needed, and
 *  about twice the throughput); pools without a local broker connect over
 *  TCP with CURVE, using a certificate named after their service that is
 *  made on first start (and allow-listed when the keys directory is the
 *  broker's own, as on one machine; elsewhere copy NAME.cert into the
 *  broker's keys/clients/).
 *
 *  Shutdown drains: SIGINT and SIGTERM are blocked in every thread and
 *  taken by sigwait() here, so no handler runs in an arbitrary thread.
 *  Within one drain deadline (RETAIL_DRAIN_MS, 3 s by default): the bridge
 *  stops accepting connections and waits for the HTTP requests in flight;
 *  then the broker keeps handing queued and held requests to the live
 *  workers (services still call each other meanwhile) until none is left
 *  (broker_drain). Only then do the pools stop (each worker answers what it
 *  was given and says DISCONNECT), and the broker last, its socket
 *  lingering to deliver the final replies. What is still unanswered at the
 *  deadline, and only that, is answered unavailable.
 */
#include "actors/pool.h"
#include "actors/sys/sys.h"
#include "actors/catalog/catalog.h"
#include "actors/users/users.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/settings.h"
#include "router/bridge.h"
#include "router/broker.h"

#include <getopt.h>
#include <signal.h>
#include <sys/resource.h>

/* Process-wide state of a service, made before its pool (NULL: none). */
typedef void *(shared_new_fn)(const settings_t *settings, char *err, size_t errlen);

static void *s_users_new(const settings_t *settings, char *err, size_t errlen)
{
    users_config_t uc = {
        .data_dir = settings->data_dir, .keys_dir = settings->keys_dir, .pg_dsn = settings->pg_dsn};
    users_shared_t *users = users_shared_new(&uc, err, errlen);
    if (users && settings->admin_email[0]) {
        int made = users_create_admin(users, settings->admin_email, settings->admin_password, NULL,
                                      err, errlen);
        if (made < 0)
            users_shared_destroy(&users);
        else
            zsys_info("retaild: admin %s %s", settings->admin_email,
                      made == 0 ? "created" : "exists");
    }
    return users;
}

static void s_users_destroy(void **shared)
{
    users_shared_destroy((users_shared_t **)shared);
}

static int s_users_extra_workers(void *shared)
{
    /* workers beyond those that may be hashing keep fast ops fast */
    return users_shared_hash_admission(shared);
}

static void *s_catalog_new(const settings_t *settings, char *err, size_t errlen)
{
    return catalog_shared_new(settings->data_dir, settings->keys_dir, err, errlen);
}

static void s_catalog_destroy(void **shared)
{
    catalog_shared_destroy((catalog_shared_t **)shared);
}

static int s_catalog_extra_workers(void *shared)
{
    /* A worker waiting for a disk flush uses no CPU, and every write that
     * waits joins the next commit (group commit): more workers, more
     * writes per flush (docs/BENCHMARKS.md, bench-catalog-writes). */
    (void)shared;
    return CATALOG_WRITE_WORKERS;
}

/* Every service this daemon can run: its dispatch table, its shared state
 * and per-worker state. capacity 0 takes the configured worker capacity.
 * users takes 2: one request may wait behind an Argon2id hash (about 70
 * ms) on the same worker, but only when every worker is busy (dispatch
 * prefers the least recently served), and it saves the round trip that
 * made /users/me 1.3x a ping at 1. */
typedef struct {
    const char *name;
    const worker_op_t *(*ops)(bool with_test_ops);
    int capacity;
    shared_new_fn *shared_new;
    void (*shared_destroy)(void **shared);
    void *(*state_new)(void *shared);
    void (*state_destroy)(void **state);
    int (*extra_workers)(void *shared);
} service_def_t;

static const service_def_t s_services[] = {
    {"sys", sys_ops, 0, NULL, NULL, NULL, NULL, NULL},
    {"users", users_ops, 2, s_users_new, s_users_destroy, users_state_new, users_state_destroy,
     s_users_extra_workers},
    {"catalog", catalog_ops, 0, s_catalog_new, s_catalog_destroy, catalog_state_new,
     catalog_state_destroy, s_catalog_extra_workers},
};
#define SERVICE_COUNT (sizeof s_services / sizeof s_services[0])

/* This process's pools, for the bridge's /metrics: how often a worker of
 * each was restarted (actors/worker.h). Pools run on other hosts count
 * in their own process only. */
typedef struct {
    pool_t *const *pools; /* SERVICE_COUNT entries, NULL when not running */
} pool_metrics_t;

static char *s_pool_metrics(void *arg)
{
    const pool_metrics_t *m = arg;
    size_t size = 256 + SERVICE_COUNT * (MDP_SERVICE_MAX + 64);
    char *text = malloc(size);
    if (!text)
        return NULL;
    int n = snprintf(text, size,
                     "# HELP retail_worker_restarts_total Workers started over after their "
                     "session failed.\n"
                     "# TYPE retail_worker_restarts_total counter\n");
    for (size_t i = 0; i < SERVICE_COUNT; i++)
        if (m->pools[i])
            n += snprintf(text + n, size - (size_t)n,
                          "retail_worker_restarts_total{service=\"%s\"} %llu\n", s_services[i].name,
                          (unsigned long long)pool_restarts(m->pools[i]));
    return text;
}

static void s_usage(FILE *out)
{
    fprintf(out, "usage: retaild [ROLE...] [--broker ENDPOINT] [--workers N] [--config FILE]\n"
                 "               [--data-dir DIR] [--verbose]\n"
                 "roles: broker bridge");
    for (size_t i = 0; i < SERVICE_COUNT; i++)
        fprintf(out, " %s", s_services[i].name);
    fprintf(out, " (none: all of them)\n"
                 "environment: RETAIL_DATA_DIR RETAIL_BROKER_ENDPOINT RETAIL_HTTP_PORT\n"
                 "             RETAIL_HTTP_ADDRESS RETAIL_HTTP_TIMEOUT_MS RETAIL_TLS_CERT\n"
                 "             RETAIL_TLS_KEY RETAIL_ACCESS_LOG\n"
                 "             RETAIL_WORKERS RETAIL_HEARTBEAT_MS RETAIL_REQUEST_TIMEOUT_MS\n"
                 "             RETAIL_QUEUE_LIMIT RETAIL_WORKER_CAPACITY RETAIL_DRAIN_MS\n"
                 "             RETAIL_CONFIG\n"
                 "             RETAIL_TEST_OPS\n");
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
    bool run_broker = optind == argc;
    bool run_bridge = optind == argc;
    bool run_service[SERVICE_COUNT];
    for (size_t i = 0; i < SERVICE_COUNT; i++)
        run_service[i] = optind == argc;
    for (int i = optind; i < argc; i++) {
        bool known = false;
        if (streq(argv[i], "broker"))
            run_broker = known = true;
        if (streq(argv[i], "bridge"))
            run_bridge = known = true;
        for (size_t k = 0; k < SERVICE_COUNT; k++)
            if (streq(argv[i], s_services[k].name))
                run_service[k] = known = true;
        if (!known) {
            fprintf(stderr, "retaild: unknown role '%s'\n", argv[i]);
            s_usage(stderr);
            return 2;
        }
    }

    settings_t settings;
    char err[256];
    if (settings_load(&settings, config_path, err, sizeof err) != 0) {
        fprintf(stderr, "retaild: %s\n", err);
        return 2;
    }
    if (data_dir_flag) {
        /* room for "/keys" after it, as settings_load enforces */
        if (!*data_dir_flag || strlen(data_dir_flag) >= sizeof settings.data_dir - 5) {
            fprintf(stderr, "retaild: --data-dir is empty or too long\n");
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
        return 1;
    }

    int rc = 1;
    zactor_t *broker = NULL;
    zactor_t *bridge = NULL;
    zcert_t *bridge_cert = NULL;
    pool_t *pools[SERVICE_COUNT] = {NULL};
    pool_metrics_t pool_metrics = {.pools = pools};
    zcert_t *certs[SERVICE_COUNT] = {NULL};
    void *shared[SERVICE_COUNT] = {NULL};

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

    char broker_key[KEYS_Z85_LEN + 1] = "";
    if (!run_broker && keys_broker_public(settings.keys_dir, broker_key) != 0) {
        fprintf(stderr, "retaild: no broker certificate at %s/broker.cert\n", settings.keys_dir);
        goto cleanup;
    }
    for (size_t i = 0; i < SERVICE_COUNT; i++) {
        if (!run_service[i])
            continue;
        worker_config_t wc = {
            .service = s_services[i].name,
            .ops = s_services[i].ops(test_ops),
            .endpoint = run_broker ? MDP_INPROC_ENDPOINT : settings.broker_endpoint,
            .heartbeat_ms = settings.heartbeat_ms,
            .capacity = s_services[i].capacity ? s_services[i].capacity : settings.worker_capacity,
            .verbose = verbose,
        };
        int pool_size = settings.workers;
        const service_def_t *def = &s_services[i];
        if (def->shared_new) {
            shared[i] = def->shared_new(&settings, err, sizeof err);
            if (!shared[i]) {
                fprintf(stderr, "retaild: the %s service cannot start: %s\n", def->name, err);
                goto cleanup;
            }
            wc.shared = shared[i];
        }
        wc.state_new = def->state_new;
        wc.state_destroy = def->state_destroy;
        if (def->extra_workers)
            pool_size += def->extra_workers(shared[i]);
        if (!run_broker) {
            certs[i] = keys_ensure(settings.keys_dir, s_services[i].name);
            if (!certs[i] || keys_allow(settings.keys_dir, certs[i], s_services[i].name) != 0) {
                fprintf(stderr, "retaild: cannot make the %s certificate in %s\n",
                        s_services[i].name, settings.keys_dir);
                goto cleanup;
            }
            wc.cert = certs[i];
            wc.server_key = broker_key;
        }
        pools[i] = pool_new(&wc, pool_size);
        if (!pools[i]) {
            fprintf(stderr, "retaild: the %s pool could not start\n", s_services[i].name);
            goto cleanup;
        }
        zsys_info("retaild: %s pool of %d workers on %s", s_services[i].name, pool_size,
                  wc.endpoint);
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
    for (size_t i = 0; i < SERVICE_COUNT; i++) {
        pool_destroy(&pools[i]);
        zcert_destroy(&certs[i]);
    }
    broker_destroy(&broker);
    for (size_t i = 0; i < SERVICE_COUNT; i++)
        if (shared[i])
            s_services[i].shared_destroy(&shared[i]);
    zsys_shutdown();
    return rc;
}

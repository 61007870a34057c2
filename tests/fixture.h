/*  fixture.h - a real retaild for an integration test, started and stopped
 *  the same way by every test.
 *
 *  What it is for: each integration test needs a retaild on free ports with
 *  a fresh data directory, waited for until it serves, often an admin and a
 *  customer with their access tokens, and at the end a stop whose exit
 *  status is checked. Each test used to carry its own copy of that; this is
 *  the one copy, with options for what a test needs beyond it (more
 *  environment, some roles only, PostgreSQL, TLS, logs to read, a second
 *  process on the same directory).
 *
 *  How it works: fixture_new makes a directory under /tmp, takes four free
 *  ports (HTTP, the broker's CURVE endpoint, and the event stream's two:
 *  subscribers' and publishers', all on 127.0.0.1), builds the
 *  environment, starts retaild with tu_spawn and waits until it is ready,
 *  by the strongest condition its roles allow:
 *    - with the bridge: GET ready_path (/readyz: every service has a live
 *      worker) answers 200, over HTTPS verified against tls_cert when TLS
 *      is on;
 *    - with the broker but no bridge: the broker answers mmi.services to a
 *      CURVE client (certificate "fixture");
 *    - service pools alone: nothing to ask, so not waited for (the test
 *      waits for their workers with fixture_wait_workers).
 *  Every wait polls a condition, gives up at an overall deadline
 *  (FIXTURE_READY_MS) and stops at once when the process exits. With
 *  accounts, the admin of RETAIL_ADMIN_EMAIL is then logged in and a
 *  customer registered (an email unique to the run, so a PostgreSQL that
 *  outlives the run does not refuse it) and logged in.
 *
 *  The environment: the caller's RETAIL_* variables are not passed on, so
 *  only the fixture and its options steer the daemon. The fixture sets
 *  RETAIL_DATA_DIR, RETAIL_BROKER_ENDPOINT, RETAIL_HTTP_PORT,
 *  RETAIL_EVENTS_ENDPOINT, RETAIL_EVENTS_PUBLISH_ENDPOINT,
 *  RETAIL_WORKERS=2, RETAIL_ACCESS_LOG=0, and RETAIL_PG_DSN, RETAIL_TLS_*
 *  and RETAIL_ADMIN_* when their options ask; opts.env comes last and its
 *  entries replace the fixture's of the same name (RETAIL_WORKERS=4,
 *  RETAIL_TEST_OPS=1, RETAIL_DRAIN_MS=500, LSAN_OPTIONS=...).
 *
 *  More processes: fixture_spawn starts another retaild with other roles on
 *  the same directory, ports and environment (a broker in one process,
 *  worker pools in others). fixture_kill signals one and reaps it;
 *  fixture_restart starts the first one again on the same data.
 *  fixture_stop ends them all with SIGTERM and says whether each exited 0
 *  (and, with logs, no sanitizer wrote a report): a test asserts that, since
 *  the failure of a cmocka group teardown does not fail the run.
 *  fixture_destroy stops whatever still runs and removes the directory.
 *  Every process dies with the test process too (PR_SET_PDEATHSIG), so a
 *  test that crashes leaves no daemon behind.
 *
 *  MDP: fixture_client makes a CURVE client of the broker; fixture_send
 *  and fixture_recv carry a request with JSON arguments and its reply in
 *  JSON (what most tests judge); fixture_workers counts a service's live
 *  workers by mmi.services.
 *
 *  Threads: the fields may be read on any thread, and fixture_workers,
 *  fixture_wait_workers, fixture_send, fixture_recv and fixture_reply_free
 *  may run on any; every other function belongs on the cmocka thread (they
 *  assert, or report through cmocka's printing).
 *
 *  Ownership: a fixture_t is the caller's, freed by fixture_destroy; its
 *  fields (tokens included) are the fixture's, read-only to the test and
 *  valid until then. The options' strings are copied by fixture_new.
 *  fixture_login's document, a client, a certificate and a reply are the
 *  caller's.
 */
#ifndef RETAIL_FIXTURE_H
#define RETAIL_FIXTURE_H

#include "protocol/keys.h"
#include "protocol/mdpcli.h"

#include <czmq.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define FIXTURE_ADMIN_EMAIL "admin@shop.test"
#define FIXTURE_ADMIN_PASSWORD "fixture admin password"
#define FIXTURE_CUSTOMER_PASSWORD "fixture customer password"

#define FIXTURE_READY_MS 30000 /* a start, in a sanitizer build too */
#define FIXTURE_STOP_MS 10000  /* a SIGTERM, drain included */
#define FIXTURE_PROCESSES 8    /* processes of one fixture at a time */
#define FIXTURE_PATH_MAX 1100

/* What a test wants beyond the defaults; zeroed (or NULL) for none. */
typedef struct {
    const char *name;         /* the directory's prefix under /tmp; NULL: "retail-fixture" */
    const char *const *roles; /* the first process's roles; NULL: all of them */
    const char *const *env;   /* more "KEY=VALUE" entries, NULL-terminated */
    const char *pg_dsn;       /* RETAIL_PG_DSN: accounts in this PostgreSQL; NULL: LMDB */
    const char *tls_cert;     /* RETAIL_TLS_CERT; with tls_key: HTTPS, trusting tls_cert */
    const char *tls_key;      /* RETAIL_TLS_KEY */
    const char *ready_path;   /* what answers 200 once ready; NULL: "/readyz" */
    bool accounts;            /* the admin and a customer, and their access tokens */
    bool logs;                /* stdout and stderr to out_path and err_path */
    bool no_wait;             /* do not wait for readiness: the process is
                                 expected to exit by itself (fixture_kill, sig 0) */
} fixture_opts_t;

/* A running system. The test reads the fields and changes none. */
typedef struct {
    char *dir;                         /* the data directory, removed by fixture_destroy */
    char keys[FIXTURE_PATH_MAX];       /* dir/keys: certificates and the allow-list */
    int http_port;                     /* the bridge's */
    int broker_port;                   /* the broker's CURVE endpoint's */
    char base[64];                     /* "http://127.0.0.1:PORT" (https:// with TLS) */
    char broker_endpoint[64];          /* "tcp://127.0.0.1:PORT" */
    int events_port;                   /* the event stream's subscribers' side */
    char events_endpoint[64];          /* "tcp://127.0.0.1:PORT" */
    int events_publish_port;           /* its publishers' side (relays elsewhere) */
    char events_publish_endpoint[64];  /* "tcp://127.0.0.1:PORT" */
    char broker_key[KEYS_Z85_LEN + 1]; /* the broker's public key; "" until it is known */
    pid_t pid;                         /* the first process; 0 once it is not running */
    char *admin_token;                 /* access tokens with opts.accounts, else NULL */
    char *customer_token;
    char customer_email[128];        /* the customer's login, with FIXTURE_CUSTOMER_PASSWORD */
    char out_path[FIXTURE_PATH_MAX]; /* with opts.logs: dir/retaild.out, else "" */
    char err_path[FIXTURE_PATH_MAX]; /* with opts.logs: dir/retaild.err, else "" */

    /* the fixture's own */
    char **roles; /* opts.roles, copied; NULL: all */
    char **env;   /* its entries for tu_spawn (on top of the clean inherited ones) */
    char *ready_path;
    char *cainfo; /* the certificate HTTPS is verified with */
    bool no_wait;
    pid_t others[FIXTURE_PROCESSES]; /* fixture_spawn's, 0 in free slots */
} fixture_t;

/* Starts a system as opts says (NULL: the defaults) and waits until it is
 * ready. NULL when it did not start or become ready, or an account could
 * not be made (what went wrong is printed, with the logs' ends). */
fixture_t *fixture_new(const fixture_opts_t *opts);

/* Stops every process still running (SIGTERM, then SIGKILL after
 * FIXTURE_STOP_MS), removes the directory (kept when TEST_KEEP_DIR is set
 * in the environment: its path is printed) and frees the fixture. */
void fixture_destroy(fixture_t **self_p);

/* Starts one more retaild with roles (NULL: all) on the fixture's
 * directory, ports and environment, and waits for it as fixture_new does.
 * Its pid, or -1 when it did not start or become ready. */
pid_t fixture_spawn(fixture_t *self, const char *const *roles);

/* Sends sig (0: none) to one of the fixture's processes and waits up to
 * FIXTURE_STOP_MS for it to exit; returns its wait status, or -1 when it
 * did not exit (it is then SIGKILLed). The process is reaped and
 * forgotten (pid 0 when it was the first). */
int fixture_kill(fixture_t *self, pid_t pid, int sig);

/* Starts the first process again (its roles, the same data) after it was
 * killed, and waits until it is ready. 0, or -1 (said why). */
int fixture_restart(fixture_t *self);

/* Stops every process with SIGTERM and waits for each. 0 when every one
 * exited with status 0 and, with logs, no sanitizer report is in them;
 * -1 otherwise (said why, with the logs' ends). The directory stays. */
int fixture_stop(fixture_t *self);

/* A cmocka test to end a group whose state is a fixture_t: fixture_stop
 * must return 0 (every process exits 0 on SIGTERM, no sanitizer report). */
void fixture_test_stop(void **state);

/* True when an AddressSanitizer, LeakSanitizer or UBSan report is in the
 * error log (then it is printed); false without logs. */
bool fixture_sanitizer_report(const fixture_t *self);

/* Prints the last part of each log (the context of a failure). */
void fixture_show_logs(const fixture_t *self);

/* A CURVE client of the broker as `name`: its certificate made in the
 * fixture's keys directory when absent and put on the allow-list. Waits
 * for the broker's certificate; asserts that the client was made. */
mdpcli_t *fixture_client(fixture_t *self, const char *name);

/* A CURVE client of the broker with cert as it is (from anywhere, listed
 * or not: the broker decides). Asserts as fixture_client does. */
mdpcli_t *fixture_client_with(fixture_t *self, zcert_t *cert);

/* How many live workers the broker has for service, by mmi.services over
 * client (service NULL: 0 whenever it answers); -1 when it did not answer
 * within timeout_ms. */
int fixture_workers(mdpcli_t *client, const char *service, int timeout_ms);

/* Polls until the broker has `want` live workers for service; the ms it
 * took, or -1 after timeout_ms (what the broker last said is printed). */
int64_t fixture_wait_workers(mdpcli_t *client, const char *service, int want, int timeout_ms);

/* One reply to an MDP request, in JSON. */
typedef struct {
    char service[64]; /* who replied ("mmi.services" too); "" when nothing came */
    bool answered;    /* a well-formed envelope reply came */
    bool ok;
    uint64_t id;   /* the envelope's id; 0 unless an unsigned integer */
    char code[40]; /* error.code when !ok */
    json_t *data;  /* when ok */
    json_t *error; /* the error map when !ok */
} fixture_reply_t;

/* Sends request id: op of service with token (NULL: none) and the JSON
 * object args_json as args (NULL: none). 0, or -1 when args_json is no
 * JSON object or the request could not be sent. */
int fixture_send(mdpcli_t *client, const char *service, uint64_t id, const char *op,
                 const char *token, const char *args_json);

/* The next reply within timeout_ms; answered is false when none came or
 * it was no envelope (an mmi.* answer, say: service tells). The caller
 * frees it with fixture_reply_free. */
fixture_reply_t fixture_recv(mdpcli_t *client, int timeout_ms);

void fixture_reply_free(fixture_reply_t *reply);

/* POST /v1/auth/login; asserts 200 and returns the token pair document
 * (the caller's to json_decref). */
json_t *fixture_login(fixture_t *self, const char *email, const char *password);

/* POST /v1/auth/register; the status it was answered (0: no answer). */
long fixture_register(fixture_t *self, const char *email, const char *password, const char *name);

#endif

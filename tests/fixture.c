/*  fixture.c - see fixture.h. */
#include "tests/fixture.h"

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define POLL_MS 20          /* between two looks at a condition */
#define ASK_TIMEOUT_MS 2000 /* one readiness request */
#define LOG_TAIL 4096       /* what fixture_show_logs prints of a log */
#define ENV_ENTRIES 16      /* the fixture's own environment entries */

/* ------------------------------------------------------------------ */
/* Strings                                                             */

/* A NULL-terminated copy of a NULL-terminated list (NULL stays NULL). */
static char **s_list_copy(const char *const *list)
{
    if (!list)
        return NULL;
    size_t n = 0;
    while (list[n])
        n++;
    char **copy = calloc(n + 1, sizeof *copy);
    for (size_t i = 0; copy && i < n; i++)
        if (!(copy[i] = strdup(list[i]))) {
            while (i > 0)
                free(copy[--i]);
            free(copy);
            return NULL;
        }
    return copy;
}

static void s_list_free(char ***list_p)
{
    char **list = *list_p;
    for (size_t i = 0; list && list[i]; i++)
        free(list[i]);
    free(list);
    *list_p = NULL;
}

/* Do roles (NULL: all of them) name role? */
static bool s_runs(const char *const *roles, const char *role)
{
    if (!roles)
        return true;
    for (size_t i = 0; roles[i]; i++)
        if (strcmp(roles[i], role) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------ */
/* Processes                                                           */

/* Has pid exited? Then it is reaped and *status says how. */
static bool s_exited(pid_t pid, int *status)
{
    return pid > 0 && waitpid(pid, status, WNOHANG) == pid;
}

static void s_say_exit(const char *what, pid_t pid, int status)
{
    if (status == -1)
        print_error("%s (pid %d) did not exit within %d ms: killed\n", what, (int)pid,
                    FIXTURE_STOP_MS);
    else if (WIFEXITED(status))
        print_error("%s (pid %d) exited with status %d\n", what, (int)pid, WEXITSTATUS(status));
    else
        print_error("%s (pid %d) was ended by signal %d\n", what, (int)pid,
                    WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

static pid_t s_start(fixture_t *self, const char *const *roles)
{
    tu_spawn_t how = {.program = "retaild",
                      .argv = roles,
                      .env = (const char *const *)self->env,
                      .clean = true,
                      .out_path = self->out_path[0] ? self->out_path : NULL,
                      .err_path = self->err_path[0] ? self->err_path : NULL};
    return tu_spawn(&how);
}

/* The slot of pid among the fixture's processes: &self->pid or one of
 * others; NULL when it is none of them. */
static pid_t *s_slot(fixture_t *self, pid_t pid)
{
    if (pid <= 0)
        return NULL;
    if (self->pid == pid)
        return &self->pid;
    for (int i = 0; i < FIXTURE_PROCESSES; i++)
        if (self->others[i] == pid)
            return &self->others[i];
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Readiness                                                           */

/* GET ready_path once: its status, 0 when none came. */
static long s_ask_ready(const fixture_t *self, char *error, size_t error_size)
{
    hc_request_t q = {.url = self->base,
                      .path = self->ready_path,
                      .timeout_ms = ASK_TIMEOUT_MS,
                      .cainfo = self->cainfo};
    hc_response_t r = hc_try(&q);
    long status = r.rc == CURLE_OK ? r.status : 0;
    snprintf(error, error_size, "%s", r.rc == CURLE_OK ? r.text : r.error);
    hc_response_free(&r);
    return status;
}

/* The broker's public key into self->broker_key; false until the broker
 * has written its certificate. */
static bool s_broker_key(fixture_t *self)
{
    if (self->broker_key[0] || keys_broker_public(self->keys, self->broker_key) == 0)
        return true;
    self->broker_key[0] = '\0'; /* nothing half-read stays */
    return false;
}

/* A client with cert, or NULL (no broker certificate by deadline). */
static mdpcli_t *s_client(fixture_t *self, zcert_t *cert, int64_t deadline)
{
    while (!s_broker_key(self) && zclock_mono() < deadline)
        zclock_sleep(POLL_MS);
    if (!s_broker_key(self)) {
        print_error("no broker certificate in %s\n", self->keys);
        return NULL;
    }
    return mdpcli_new(self->broker_endpoint, cert, self->broker_key);
}

/* Waits until pid, started with roles, is ready (fixture.h says by
 * what). 0, or -1: it exited (then it is reaped and *slot cleared) or the
 * deadline passed; said why. */
static int s_wait_ready(fixture_t *self, pid_t *slot, const char *const *roles)
{
    bool bridge = s_runs(roles, "bridge"), broker = s_runs(roles, "broker");
    if (self->no_wait || (!bridge && !broker))
        return 0;
    int64_t deadline = zclock_mono() + FIXTURE_READY_MS;
    char last[256] = "";
    long status = 0;
    int workers = -1;
    mdpcli_t *client = NULL;
    zcert_t *cert = NULL;
    bool ready = false;
    while (!ready && zclock_mono() < deadline) {
        int wstatus;
        if (s_exited(*slot, &wstatus)) {
            s_say_exit("retaild, starting", *slot, wstatus);
            *slot = 0;
            break;
        }
        if (bridge) {
            status = s_ask_ready(self, last, sizeof last);
            ready = status == 200;
        } else {
            if (!cert && !(cert = keys_ensure(self->keys, "fixture"))) {
                print_error("cannot make a certificate in %s\n", self->keys);
                break;
            }
            if (!client && keys_allow(self->keys, cert, "fixture") == 0)
                client = s_client(self, cert, deadline);
            workers = client ? fixture_workers(client, NULL, ASK_TIMEOUT_MS) : -1;
            ready = workers >= 0;
        }
        if (!ready)
            zclock_sleep(POLL_MS);
    }
    mdpcli_destroy(&client);
    zcert_destroy(&cert);
    if (ready) {
        s_broker_key(self); /* known now, when this process has the broker */
        return 0;
    }
    if (*slot > 0 && bridge)
        print_error("retaild not ready within %d ms: GET %s%s answered %ld %.200s\n",
                    FIXTURE_READY_MS, self->base, self->ready_path, status, last);
    else if (*slot > 0)
        print_error("retaild's broker did not answer mmi.services within %d ms\n",
                    FIXTURE_READY_MS);
    fixture_show_logs(self);
    return -1;
}

/* ------------------------------------------------------------------ */
/* Accounts                                                            */

/* POST path with a JSON object of the (key, value) pairs; *r is the
 * caller's to free. */
static void s_post(fixture_t *self, const char *path, json_t *body, hc_response_t *r)
{
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    hc_request_t q = {
        .url = self->base, .path = path, .method = "POST", .body = text, .cainfo = self->cainfo};
    *r = hc_try(&q);
    free(text);
}

/* The access token of a login (malloc'd), or NULL (said why). */
static char *s_token(fixture_t *self, const char *email, const char *password)
{
    hc_response_t r;
    s_post(self, "/v1/auth/login", json_pack("{s:s, s:s}", "email", email, "password", password),
           &r);
    const char *token = r.status == 200 ? hc_str(r.body, "access_token") : NULL;
    char *copy = token ? strdup(token) : NULL;
    if (!copy)
        print_error("login of %s: %ld %s %.200s\n", email, r.status, r.error, r.text);
    hc_response_free(&r);
    return copy;
}

/* The admin's token, and a new customer's. 0, or -1 (said why). */
static int s_accounts(fixture_t *self)
{
    self->admin_token = s_token(self, FIXTURE_ADMIN_EMAIL, FIXTURE_ADMIN_PASSWORD);
    snprintf(self->customer_email, sizeof self->customer_email, "customer.%d.%lld@shop.test",
             (int)getpid(), (long long)zclock_time());
    long status =
        fixture_register(self, self->customer_email, FIXTURE_CUSTOMER_PASSWORD, "Fixture Customer");
    if (status != 201)
        print_error("registering %s: %ld\n", self->customer_email, status);
    else
        self->customer_token = s_token(self, self->customer_email, FIXTURE_CUSTOMER_PASSWORD);
    return self->admin_token && self->customer_token ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* The fixture                                                         */

/* The whole environment of the fixture's processes into self->env: the
 * fixture's entries first, then opts->env (tu_spawn lets the last entry of
 * a name win). 0, or -1 when out of memory. */
static int s_env(fixture_t *self, const fixture_opts_t *opts)
{
    size_t extra = 0;
    while (opts->env && opts->env[extra])
        extra++;
    self->env = calloc(ENV_ENTRIES + extra + 1, sizeof *self->env);
    if (!self->env)
        return -1;
    char **e = self->env;
    *e++ = zsys_sprintf("RETAIL_DATA_DIR=%s", self->dir);
    *e++ = zsys_sprintf("RETAIL_BROKER_ENDPOINT=%s", self->broker_endpoint);
    *e++ = zsys_sprintf("RETAIL_HTTP_PORT=%d", self->http_port);
    *e++ = zsys_sprintf("RETAIL_EVENTS_ENDPOINT=%s", self->events_endpoint);
    *e++ = zsys_sprintf("RETAIL_EVENTS_PUBLISH_ENDPOINT=%s", self->events_publish_endpoint);
    *e++ = strdup("RETAIL_WORKERS=2");
    *e++ = strdup("RETAIL_ACCESS_LOG=0");
    if (opts->pg_dsn)
        *e++ = zsys_sprintf("RETAIL_PG_DSN=%s", opts->pg_dsn);
    if (opts->tls_cert)
        *e++ = zsys_sprintf("RETAIL_TLS_CERT=%s", opts->tls_cert);
    if (opts->tls_key)
        *e++ = zsys_sprintf("RETAIL_TLS_KEY=%s", opts->tls_key);
    if (opts->accounts) {
        *e++ = strdup("RETAIL_ADMIN_EMAIL=" FIXTURE_ADMIN_EMAIL);
        *e++ = strdup("RETAIL_ADMIN_PASSWORD=" FIXTURE_ADMIN_PASSWORD);
    }
    for (size_t i = 0; i < extra; i++)
        *e++ = strdup(opts->env[i]);
    /* a NULL before the end is an allocation that failed */
    for (char **p = self->env; p < e; p++)
        if (!*p) {
            for (char **q = self->env; q < e; q++)
                free(*q);
            free(self->env);
            self->env = NULL;
            return -1;
        }
    return 0;
}

fixture_t *fixture_new(const fixture_opts_t *opts)
{
    fixture_opts_t none = {0};
    if (!opts)
        opts = &none;
    fixture_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->dir = tu_tempdir(opts->name ? opts->name : "retail-fixture");
    snprintf(self->keys, sizeof self->keys, "%s/keys", self->dir);
    self->http_port = tu_free_port();
    do
        self->broker_port = tu_free_port();
    while (self->broker_port == self->http_port);
    do
        self->events_port = tu_free_port();
    while (self->events_port == self->http_port || self->events_port == self->broker_port);
    do
        self->events_publish_port = tu_free_port();
    while (self->events_publish_port == self->http_port ||
           self->events_publish_port == self->broker_port ||
           self->events_publish_port == self->events_port);
    bool tls = opts->tls_cert && opts->tls_key;
    snprintf(self->base, sizeof self->base, "%s://127.0.0.1:%d", tls ? "https" : "http",
             self->http_port);
    snprintf(self->broker_endpoint, sizeof self->broker_endpoint, "tcp://127.0.0.1:%d",
             self->broker_port);
    snprintf(self->events_endpoint, sizeof self->events_endpoint, "tcp://127.0.0.1:%d",
             self->events_port);
    snprintf(self->events_publish_endpoint, sizeof self->events_publish_endpoint,
             "tcp://127.0.0.1:%d", self->events_publish_port);
    if (opts->logs) {
        snprintf(self->out_path, sizeof self->out_path, "%s/retaild.out", self->dir);
        snprintf(self->err_path, sizeof self->err_path, "%s/retaild.err", self->dir);
    }
    self->ready_path = strdup(opts->ready_path ? opts->ready_path : "/readyz");
    self->cainfo = tls ? strdup(opts->tls_cert) : NULL;
    self->roles = s_list_copy(opts->roles);
    self->no_wait = opts->no_wait;
    if (!self->ready_path || (tls && !self->cainfo) || (opts->roles && !self->roles) ||
        s_env(self, opts) != 0) {
        print_error("fixture: out of memory\n");
        fixture_destroy(&self);
        return NULL;
    }
    if (fixture_restart(self) != 0 || (opts->accounts && s_accounts(self) != 0)) {
        fixture_destroy(&self);
        return NULL;
    }
    return self;
}

void fixture_destroy(fixture_t **self_p)
{
    fixture_t *self = *self_p;
    if (!self)
        return;
    for (int i = 0; i < FIXTURE_PROCESSES; i++)
        if (self->others[i] > 0)
            tu_stop(self->others[i], SIGTERM, FIXTURE_STOP_MS);
    if (self->pid > 0)
        tu_stop(self->pid, SIGTERM, FIXTURE_STOP_MS);
    if (getenv("TEST_KEEP_DIR"))
        print_message("      kept %s\n", self->dir);
    else
        tu_rmtree(self->dir);
    free(self->dir);
    free(self->admin_token);
    free(self->customer_token);
    s_list_free(&self->roles);
    s_list_free(&self->env);
    free(self->ready_path);
    free(self->cainfo);
    free(self);
    *self_p = NULL;
}

pid_t fixture_spawn(fixture_t *self, const char *const *roles)
{
    pid_t *slot = NULL;
    for (int i = 0; !slot && i < FIXTURE_PROCESSES; i++)
        if (self->others[i] == 0)
            slot = &self->others[i];
    if (!slot) {
        print_error("fixture: more than %d processes\n", FIXTURE_PROCESSES);
        return -1;
    }
    *slot = s_start(self, roles);
    if (*slot <= 0) {
        *slot = 0;
        return -1;
    }
    pid_t pid = *slot;
    return s_wait_ready(self, slot, roles) == 0 ? pid : -1;
}

int fixture_kill(fixture_t *self, pid_t pid, int sig)
{
    pid_t *slot = s_slot(self, pid);
    if (!slot) {
        print_error("fixture: pid %d is not one of its processes\n", (int)pid);
        return -1;
    }
    int status = sig ? tu_stop(pid, sig, FIXTURE_STOP_MS) : tu_wait(pid, FIXTURE_STOP_MS);
    *slot = 0;
    return status;
}

int fixture_restart(fixture_t *self)
{
    if (self->pid > 0) {
        print_error("fixture: the first process still runs\n");
        return -1;
    }
    self->pid = s_start(self, (const char *const *)self->roles);
    if (self->pid <= 0) {
        self->pid = 0;
        return -1;
    }
    return s_wait_ready(self, &self->pid, (const char *const *)self->roles);
}

int fixture_stop(fixture_t *self)
{
    int rc = 0;
    /* the first process last: it may hold the broker the others talk to */
    for (int i = 0; i <= FIXTURE_PROCESSES; i++) {
        pid_t pid = i < FIXTURE_PROCESSES ? self->others[i] : self->pid;
        if (pid <= 0)
            continue;
        int status = fixture_kill(self, pid, SIGTERM);
        if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            s_say_exit("retaild, stopped with SIGTERM", pid, status);
            rc = -1;
        }
    }
    if (fixture_sanitizer_report(self))
        rc = -1;
    else if (rc != 0)
        fixture_show_logs(self);
    return rc;
}

void fixture_test_stop(void **state)
{
    assert_int_equal(fixture_stop(*state), 0);
}

/* ------------------------------------------------------------------ */
/* Logs                                                                */

bool fixture_sanitizer_report(const fixture_t *self)
{
    if (!self->err_path[0])
        return false;
    char *err = tu_slurp(self->err_path, NULL);
    /* "...Sanitizer" covers ASan's and LSan's reports and summaries;
     * UBSan's start with "runtime error" */
    bool report = err && (strstr(err, "Sanitizer") || strstr(err, "runtime error"));
    if (report)
        print_error("a sanitizer report in %s:\n%s\n", self->err_path, err);
    free(err);
    return report;
}

void fixture_show_logs(const fixture_t *self)
{
    const char *paths[] = {self->out_path, self->err_path};
    for (size_t i = 0; i < 2; i++) {
        if (!paths[i][0])
            continue;
        size_t len = 0;
        char *text = tu_slurp(paths[i], &len);
        if (text)
            print_message("      --- the end of %s:\n%s\n", paths[i],
                          len > LOG_TAIL ? text + len - LOG_TAIL : text);
        free(text);
    }
}

/* ------------------------------------------------------------------ */
/* MDP                                                                 */

mdpcli_t *fixture_client(fixture_t *self, const char *name)
{
    zcert_t *cert = keys_ensure(self->keys, name);
    assert_non_null(cert);
    assert_int_equal(keys_allow(self->keys, cert, name), 0);
    mdpcli_t *client = fixture_client_with(self, cert);
    zcert_destroy(&cert);
    return client;
}

mdpcli_t *fixture_client_with(fixture_t *self, zcert_t *cert)
{
    mdpcli_t *client = s_client(self, cert, zclock_mono() + FIXTURE_READY_MS);
    assert_non_null(client);
    return client;
}

int fixture_workers(mdpcli_t *client, const char *service, int timeout_ms)
{
    if (mdpcli_send(client, "mmi.services", "", 0) != 0)
        return -1;
    zframe_t *frame = mdpcli_recv(client, timeout_ms, NULL);
    if (!frame)
        return -1;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 256);
    msgpack_object list;
    size_t off = 0;
    int workers = -1;
    if (msgpack_unpack((char *)zframe_data(frame), zframe_size(frame), &off, &zone, &list) ==
            MSGPACK_UNPACK_SUCCESS &&
        list.type == MSGPACK_OBJECT_ARRAY) {
        /* answered: a service the broker does not list has no worker */
        workers = 0;
        for (uint32_t i = 0; i < list.via.array.size; i++) {
            const msgpack_object *entry = &list.via.array.ptr[i];
            const msgpack_object *count = mp_map_get(entry, "workers");
            if (service && mp_str_eq(mp_map_get(entry, "name"), service) && count &&
                count->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
                workers = (int)count->via.u64;
        }
    }
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return workers;
}

int64_t fixture_wait_workers(mdpcli_t *client, const char *service, int want, int timeout_ms)
{
    int64_t start = zclock_mono();
    int seen = -1;
    while (zclock_mono() - start < timeout_ms) {
        if ((seen = fixture_workers(client, service, 500)) == want)
            return zclock_mono() - start;
        zclock_sleep(POLL_MS / 2);
    }
    print_error("waited %d ms for %d %s workers; the broker last said %d\n", timeout_ms, want,
                service, seen);
    return -1;
}

int fixture_send(mdpcli_t *client, const char *service, uint64_t id, const char *op,
                 const char *token, const char *args_json)
{
    msgpack_sbuffer args, request;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&request);
    char err[256];
    int rc = args_json
                 ? jsonpack_from_json(args_json, strlen(args_json), &args, 16, err, sizeof err)
                 : 0;
    if (rc == 0 && args_json && !jsonpack_is_map(args.data, args.size))
        rc = -1;
    if (rc == 0 && envelope_pack_request(&request, id, op, token, args_json ? args.data : NULL,
                                         args_json ? args.size : 0) != 0)
        rc = -1;
    if (rc == 0)
        rc = mdpcli_send(client, service, request.data, request.size);
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&request);
    return rc;
}

fixture_reply_t fixture_recv(mdpcli_t *client, int timeout_ms)
{
    fixture_reply_t out = {0};
    char *service = NULL;
    zframe_t *frame = mdpcli_recv(client, timeout_ms, &service);
    if (!frame)
        return out;
    snprintf(out.service, sizeof out.service, "%s", service ? service : "");
    zstr_free(&service);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    envelope_reply_t reply;
    const char *why;
    char err[256];
    if (envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why)) {
        out.answered = true;
        out.ok = reply.ok;
        out.id = reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER ? reply.id.via.u64 : 0;
        if (reply.ok)
            jsonpack_to_json(&reply.data, &out.data, err, sizeof err);
        else {
            jsonpack_to_json(&reply.error, &out.error, err, sizeof err);
            const char *code = hc_str(out.error, "code");
            snprintf(out.code, sizeof out.code, "%s", code ? code : "");
        }
    }
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    return out;
}

void fixture_reply_free(fixture_reply_t *reply)
{
    json_decref(reply->data);
    json_decref(reply->error);
    reply->data = reply->error = NULL;
}

/* ------------------------------------------------------------------ */
/* HTTP accounts                                                       */

json_t *fixture_login(fixture_t *self, const char *email, const char *password)
{
    hc_response_t r;
    s_post(self, "/v1/auth/login", json_pack("{s:s, s:s}", "email", email, "password", password),
           &r);
    if (r.status != 200)
        print_error("login %s: %ld %s %s\n", email, r.status, r.error, r.text);
    assert_int_equal(r.status, 200);
    json_t *pair = json_incref(r.body);
    hc_response_free(&r);
    return pair;
}

long fixture_register(fixture_t *self, const char *email, const char *password, const char *name)
{
    hc_response_t r;
    s_post(self, "/v1/auth/register",
           json_pack("{s:s, s:s, s:s}", "email", email, "password", password, "name", name), &r);
    long status = r.rc == CURLE_OK ? r.status : 0;
    hc_response_free(&r);
    return status;
}

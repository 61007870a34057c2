/*  retailctl.c - the operator's command line: keys, calls, service discovery.
 *
 *      retailctl [--config FILE] [--broker ENDPOINT] [--data-dir DIR] COMMAND ...
 *
 *  keygen NAME writes a CurveZMQ key pair into the keys directory and puts
 *  its public half on the broker's allow-list (API.md section 4).
 *
 *  call SERVICE OP [JSON] turns the JSON arguments into msgpack (through
 *  protocol/jsonpack, the same strict converter the HTTP bridge uses), sends
 *  one request envelope over MDP with CURVE, waits for the reply carrying
 *  the same id, and prints the whole reply envelope as indented JSON.
 *
 *  services asks the broker's mmi.service for each service named, or each
 *  of the one list (actors/services.h) when none is, one at a
 *  time, because an mmi reply body ("200"/"404") does not say which name
 *  it answers; sequential requests on one DEALER keep that unambiguous.
 *
 *  watch [PREFIX] prints the event stream as JSON lines, filling every gap
 *  in a source's seq from its events.since (tools/retailctl_watch.h).
 *
 *  retailctl runs on the broker's machine as the operator who owns the data
 *  directory, so for call and services it makes its own client certificate
 *  (and allow-lists it) the first time. It never prints a token or a secret
 *  key: only paths and public keys.
 *
 *  Exit status: 0 success (call: the reply said ok:true), 1 the reply said
 *  ok:false, 2 usage or configuration error, 3 no usable reply (timeout,
 *  broker unreachable, unreadable reply) or a local I/O failure; watch
 *  has its own (0 stopped by a signal or --count, 1 --idle-exit, 4 events
 *  trimmed before it caught up; see the usage).
 */
#include "actors/services.h"
#include "tools/retailctl_check.h"
#include "tools/retailctl_payments.h"
#include "tools/retailctl_stock.h"
#include "tools/retailctl_record.h"
#include "tools/retailctl_watch.h"
#include "actors/users/settings.h"
#include "actors/users/users.h"
#include <sodium.h>
#include <unistd.h>
#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"
#include "protocol/mdpcli.h"
#include "protocol/settings.h"

#include <czmq.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

enum {
    EXIT_REPLY_OK = 0,
    EXIT_REPLY_ERROR = 1,
    EXIT_USAGE = 2,
    EXIT_UNREACHABLE = 3,
};

#define DEFAULT_TIMEOUT_MS 10000
#define MAX_TIMEOUT_MS 3600000
#define DEFAULT_CERT "retailctl"
#define NAME_MAX_LEN KEYS_NAME_MAX
#define MMI_SERVICE "mmi.service"

/* Global options; the strings are borrowed from argv. */
typedef struct {
    const char *config;
    const char *broker;
    const char *data_dir;
} globals_t;

/* The most names `services` takes. */
#define SERVICES_MAX_NAMES 16

/* Options of call and services; strings borrowed from argv or environ. */
typedef struct {
    const char *token; /* never printed */
    int timeout_ms;
    const char *cert_name;
} conn_opts_t;

static void s_usage(FILE *out)
{
    fprintf(out,
            "usage: retailctl [GLOBAL OPTIONS] COMMAND [ARGS]\n"
            "\n"
            "commands:\n"
            "  keygen NAME             create the key pair NAME in the keys directory (or\n"
            "                          show it, if it exists) and add its public certificate\n"
            "                          to the broker's allow-list\n"
            "  keygen --service NAME   the same for a service's or the bridge's pair (NAME\n"
            "                          one of: bridge events sys users catalog orders\n"
            "                          payments); a plain keygen refuses these names\n"
            "  call SERVICE OP [JSON]  call one operation with JSON arguments (an object,\n"
            "                          default {}) and print the reply envelope as JSON\n"
            "      --token TOKEN       access token for the envelope (default $RETAIL_TOKEN;\n"
            "                          prefer the variable: command lines are visible to\n"
            "                          other users)\n"
            "      --timeout MS        how long to wait for the reply (default %d)\n"
            "      --cert NAME         client certificate in the keys directory (default\n"
            "                          %s; created and allow-listed when absent)\n"
            "  services [NAME...]      say which services (all: every one this build has)\n"
            "                          have a live worker\n"
            "                          (options --timeout and --cert as for call)\n"
            "  check                   every service's ops.check, then the invariants across\n"
            "                          them (reservations of pending orders only, a captured\n"
            "                          payment for every paid order and back); prints what\n"
            "                          is wrong, exit 1 if anything is (--timeout, --cert)\n"
            "  user create --admin EMAIL [--name NAME]\n"
            "                          create an admin account directly in the account\n"
            "                          store (the users service's pg_dsn setting:\n"
            "                          $RETAIL_USERS_PG_DSN or $RETAIL_PG_DSN, or LMDB under\n"
            "                          the data directory); the password comes from\n"
            "                          $RETAIL_USERS_ADMIN_PASSWORD, $RETAIL_ADMIN_PASSWORD\n"
            "                          or the first line of stdin\n"
            "  check-record [--stock LEDGER] FILE...\n"
            "                          is everything `loadgen --record FILE` runs got\n"
            "                          acknowledged there (users, orders, cancels, refunds,\n"
            "                          carts, products), and did nothing happen twice (one\n"
            "                          order per idempotency key, one payment per order\n"
            "                          captured once, its reservation as its status says;\n"
            "                          with LEDGER, every product's units as they were)?\n"
            "                          exit 1 if not (--timeout, --cert)\n"
            "  stock-ledger            print every product's units (stock + reserved +\n"
            "                          sold) as JSON: the LEDGER of check-record --stock\n"
            "  watch [PREFIX] [--since SOURCE:SEQ] [--count N] [--idle-exit SECONDS]\n"
            "                          print events as JSON lines {type, seq, at, source,\n"
            "                          data}, those whose type starts with PREFIX (default:\n"
            "                          all), from $RETAIL_EVENTS_ENDPOINT (default\n"
            "                          tcp://127.0.0.1:5556); a duplicate (same seq again)\n"
            "                          is skipped and a gap in a source's seq is filled\n"
            "                          from its events.since, so none is missing\n"
            "      --since SOURCE:SEQ  first replay SOURCE (orders, payments, catalog) from\n"
            "                          SEQ, then go on live\n"
            "      --count N           stop after N events printed\n"
            "      --idle-exit SECONDS stop (status 1) after SECONDS without an event\n"
            "                          (and --timeout, --cert, --token as for call)\n"
            "  payments verify [--head HASH]\n"
            "                          re-check the payments transaction log in the data\n"
            "                          directory (chain, sums, signed head; HASH: a head\n"
            "                          kept elsewhere); exit 1 when it does not verify\n"
            "  payments export [--from SEQ]\n"
            "                          the log as NDJSON in the Elasticsearch bulk format\n"
            "  help                    this text\n"
            "\n"
            "global options (before COMMAND):\n"
            "  --config FILE           ZPL configuration file (default $RETAIL_CONFIG)\n"
            "  --broker ENDPOINT       broker endpoint (default $RETAIL_BROKER_ENDPOINT or\n"
            "                          tcp://127.0.0.1:5555)\n"
            "  --data-dir DIR          data directory; keys live in DIR/keys (default\n"
            "                          $RETAIL_DATA_DIR or ./var)\n"
            "\n"
            "NAME: 1 to %d characters of A-Z a-z 0-9 _ . -, not starting with '.', and\n"
            "not \"broker\". --cert never creates a pair with a service's name.\n"
            "\n"
            "exit status: 0 success (call: the reply said ok:true), 1 the reply said\n"
            "ok:false, 2 usage or configuration error, 3 no usable reply (timeout, broker\n"
            "unreachable) or a local I/O failure.\n"
            "watch: 0 stopped by SIGINT/SIGTERM or after --count events, 1 --idle-exit\n"
            "passed without an event, 2 usage error, 3 the broker or a source did not\n"
            "answer events.since, 4 events it needed were trimmed from the source's\n"
            "outbox before it could catch up.\n",
            DEFAULT_TIMEOUT_MS, DEFAULT_CERT, NAME_MAX_LEN);
}

/* A usage error: one line naming the problem, then a pointer to help. */
static int s_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int s_usage_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "retailctl: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see 'retailctl help')\n");
    va_end(ap);
    return EXIT_USAGE;
}

/* Matches argv[*i] against option `name` in the forms "--name VALUE" and
 * "--name=VALUE". Returns 1 and sets *value (advancing *i past a separate
 * value), 0 when argv[*i] is another option, -1 when the value is missing. */
static int s_take_option(int argc, char **argv, int *i, const char *name, const char **value)
{
    const char *arg = argv[*i];
    size_t n = strlen(name);
    if (strncmp(arg, name, n) != 0)
        return 0;
    if (arg[n] == '=') {
        *value = arg + n + 1;
        return 1;
    }
    if (arg[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return -1;
    *i += 1;
    *value = argv[*i];
    return 1;
}

/* A leading dot would make a hidden file (or "." and ".."); "broker" is
 * the broker's own pair, which a client must never overwrite or share. */
static bool s_valid_name(const char *name)
{
    return keys_name_valid(name, strlen(name)) && strcmp(name, "broker") != 0;
}

static int s_parse_timeout(const char *text, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < 1 || v > MAX_TIMEOUT_MS)
        return -1;
    *out = (int)v;
    return 0;
}

/* One of the options call and watch share (--token when allow_token,
 * --timeout, --cert) at argv[*i]: 1 when taken (*i moved past its
 * value), 0 when argv[*i] is none of them, or -1 when its value is bad
 * (message printed). */
static int s_conn_option(int argc, char **argv, int *i, bool allow_token, conn_opts_t *o)
{
    const char *value = NULL;
    int rc;
    if (allow_token && (rc = s_take_option(argc, argv, i, "--token", &value)) != 0) {
        if (rc < 0) {
            s_usage_error("%s needs a value", "--token");
            return -1;
        }
        o->token = value;
    } else if ((rc = s_take_option(argc, argv, i, "--timeout", &value)) != 0) {
        if (rc < 0 || s_parse_timeout(value, &o->timeout_ms) != 0) {
            s_usage_error("--timeout needs a number of milliseconds in 1..%d", MAX_TIMEOUT_MS);
            return -1;
        }
    } else if ((rc = s_take_option(argc, argv, i, "--cert", &value)) != 0) {
        if (rc < 0) {
            s_usage_error("%s needs a value", "--cert");
            return -1;
        }
        if (!s_valid_name(value)) {
            s_usage_error("invalid certificate name '%s'", value);
            return -1;
        }
        o->cert_name = value;
    } else
        return 0;
    return 1;
}

/* Parses the options of call and services from argv[first..argc) and
 * collects up to max_pos positional arguments. Options may come anywhere
 * among them; "--" ends options. Returns 0 or EXIT_USAGE (message printed). */
static int s_parse_conn_opts(int argc, char **argv, int first, bool allow_token, conn_opts_t *o,
                             const char **pos, int max_pos, int *npos)
{
    o->token = NULL;
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->cert_name = DEFAULT_CERT;
    *npos = 0;
    bool options_done = false;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || strncmp(arg, "--", 2) != 0) {
            if (*npos >= max_pos)
                return s_usage_error("unexpected argument '%s'", arg);
            pos[(*npos)++] = arg;
            continue;
        }
        int rc = s_conn_option(argc, argv, &i, allow_token, o);
        if (rc < 0)
            return EXIT_USAGE;
        if (rc == 0)
            return s_usage_error("unknown option '%s'", arg);
    }
    if (allow_token && !o->token) {
        const char *env = getenv("RETAIL_TOKEN");
        if (env && *env)
            o->token = env;
    }
    if (o->token && strlen(o->token) > ENVELOPE_MAX_TOKEN)
        return s_usage_error("the token is longer than %d bytes", ENVELOPE_MAX_TOKEN);
    return 0;
}

/* Loads settings, then applies the global options over them. */
static int s_load_settings(settings_t *s, const globals_t *g)
{
    char err[256];
    if (settings_load(s, g->config, err, sizeof err) != 0) {
        fprintf(stderr, "retailctl: %s\n", err);
        return EXIT_USAGE;
    }
    if (g->broker) {
        if (!*g->broker || strlen(g->broker) >= sizeof s->broker_endpoint)
            return s_usage_error("--broker: endpoint is empty or too long");
        snprintf(s->broker_endpoint, sizeof s->broker_endpoint, "%s", g->broker);
    }
    if (g->data_dir) {
        /* keys_dir is data_dir + "/keys" and must fit too. */
        if (!*g->data_dir || strlen(g->data_dir) + 6 >= sizeof s->data_dir)
            return s_usage_error("--data-dir: path is empty or too long");
        snprintf(s->data_dir, sizeof s->data_dir, "%s", g->data_dir);
        settings_derive(s);
    }
    return 0;
}

/* ---------------------------------------------------------------------
 *  keygen
 */

/* True when NAME.cert exists without its secret: keys_ensure() would
 * replace it with a new pair, which is never what the operator meant. */
static bool s_public_only(const char *keys_dir, const char *name)
{
    char *pub = zsys_sprintf("%s/%s.cert", keys_dir, name);
    char *sec = zsys_sprintf("%s/%s.cert_secret", keys_dir, name);
    bool only = pub && sec && zsys_file_exists(pub) && !zsys_file_exists(sec);
    zstr_free(&pub);
    zstr_free(&sec);
    return only;
}

static int s_cmd_keygen(const settings_t *s, const char *name)
{
    if (s_public_only(s->keys_dir, name)) {
        fprintf(stderr,
                "retailctl: %s/%s.cert exists but %s.cert_secret does not; "
                "refusing to replace it\n",
                s->keys_dir, name, name);
        return EXIT_UNREACHABLE;
    }
    zcert_t *cert = keys_load(s->keys_dir, name);
    bool existed = cert != NULL;
    if (!cert)
        cert = keys_ensure(s->keys_dir, name);
    if (!cert) {
        fprintf(stderr, "retailctl: cannot create the key pair %s in %s\n", name, s->keys_dir);
        return EXIT_UNREACHABLE;
    }
    int status = EXIT_REPLY_OK;
    /* Allow-listed again even when it existed: keygen is the operator's
     * explicit way to (re)admit a name. */
    if (keys_allow(s->keys_dir, cert, name) != 0) {
        fprintf(stderr, "retailctl: cannot write %s/clients/%s.cert\n", s->keys_dir, name);
        status = EXIT_UNREACHABLE;
    } else {
        printf("%s key pair \"%s\"\n", existed ? "existing" : "created", name);
        printf("  public certificate: %s/%s.cert\n", s->keys_dir, name);
        printf("  secret certificate: %s/%s.cert_secret (mode 0600; keep it private)\n",
               s->keys_dir, name);
        printf("  allow-list entry:   %s/clients/%s.cert\n", s->keys_dir, name);
        printf("  public key:         %s\n", zcert_public_txt(cert));
    }
    zcert_destroy(&cert);
    return status;
}

/* ---------------------------------------------------------------------
 *  Talking to the broker
 */

/* The client certificate NAME, made and allow-listed on first use. */
static zcert_t *s_client_cert(const char *keys_dir, const char *name)
{
    zcert_t *cert = keys_load(keys_dir, name);
    if (cert)
        return cert;
    if (s_public_only(keys_dir, name)) {
        fprintf(stderr, "retailctl: %s/%s.cert has no secret file; use another --cert\n", keys_dir,
                name);
        return NULL;
    }
    /* A pair named after a part of the system is trusted as that part: an
     * existing one may be used (the operator owns the keys), but only
     * keygen --service makes one. */
    if (keys_name_reserved(name)) {
        fprintf(stderr,
                "retailctl: there is no pair %s in %s, and %s names a part of the system; "
                "make it with 'retailctl keygen --service %s' if it is for that part\n",
                name, keys_dir, name, name);
        return NULL;
    }
    /* Only a pair we create is allow-listed here: if the operator removed an
     * existing one from clients/, that revocation must stand. */
    cert = keys_ensure(keys_dir, name);
    if (!cert) {
        fprintf(stderr, "retailctl: cannot create the client certificate %s in %s\n", name,
                keys_dir);
        return NULL;
    }
    if (keys_allow(keys_dir, cert, name) != 0) {
        fprintf(stderr, "retailctl: cannot write %s/clients/%s.cert\n", keys_dir, name);
        zcert_destroy(&cert);
        return NULL;
    }
    fprintf(stderr, "retailctl: created client certificate %s/%s.cert and allow-listed it\n",
            keys_dir, name);
    return cert;
}

/* A CURVE client connected to the broker, or NULL (message printed). */
static mdpcli_t *s_connect(const settings_t *s, const conn_opts_t *o)
{
    if (!keys_endpoint_needs_curve(s->broker_endpoint)) {
        fprintf(stderr, "retailctl: %s is inside another process; use the tcp:// endpoint\n",
                s->broker_endpoint);
        return NULL;
    }
    char broker_public[KEYS_Z85_LEN + 1];
    if (keys_broker_public(s->keys_dir, broker_public) != 0) {
        fprintf(stderr,
                "retailctl: no broker certificate at %s/broker.cert: start retaild first "
                "(with the same data directory)\n",
                s->keys_dir);
        return NULL;
    }
    zcert_t *cert = s_client_cert(s->keys_dir, o->cert_name);
    if (!cert)
        return NULL;
    /* The socket takes a copy of the keys; the cert is not needed after. */
    mdpcli_t *cli = mdpcli_new(s->broker_endpoint, cert, broker_public);
    zcert_destroy(&cert);
    if (!cli)
        fprintf(stderr, "retailctl: cannot connect to %s\n", s->broker_endpoint);
    return cli;
}

/* Waits until deadline for a reply from `service`; other services' replies
 * are dropped. NULL on timeout or interruption (message printed). */
static zframe_t *s_recv_from(mdpcli_t *cli, const char *service, int64_t deadline,
                             const settings_t *s, const conn_opts_t *o)
{
    while (true) {
        int64_t left = deadline - zclock_mono();
        zframe_t *body = NULL;
        char *from = NULL;
        if (left > 0)
            body = mdpcli_recv(cli, (int)left, &from);
        if (!body) {
            if (zsys_interrupted)
                fprintf(stderr, "retailctl: interrupted\n");
            else
                fprintf(stderr,
                        "retailctl: no reply from %s within %d ms (is retaild running, and is "
                        "certificate \"%s\" on its allow-list?)\n",
                        s->broker_endpoint, o->timeout_ms, o->cert_name);
            return NULL;
        }
        bool mine = from && strcmp(from, service) == 0;
        zstr_free(&from);
        if (mine)
            return body;
        zframe_destroy(&body);
    }
}

/* Whether body is the reply to request `id`: 1 yes (*ok set), 0 another
 * request's reply, -1 not a reply envelope (message in err). */
static int s_match_reply(zframe_t *body, uint64_t id, bool *ok, char *err, size_t errlen)
{
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 1024)) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    envelope_reply_t reply;
    const char *why = NULL;
    int rc;
    if (!envelope_decode_reply(zframe_data(body), zframe_size(body), &zone, &reply, &why)) {
        snprintf(err, errlen, "%s", why ? why : "not a reply envelope");
        rc = -1;
    } else if (reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER && reply.id.via.u64 == id) {
        rc = 1;
    } else if (reply.id.type == MSGPACK_OBJECT_NIL && !reply.ok) {
        /* The broker answers with a nil id when it could not read the
         * request's; on this fresh socket that can only be ours. */
        rc = 1;
    } else
        rc = 0;
    if (rc == 1)
        *ok = reply.ok;
    msgpack_zone_destroy(&zone);
    return rc;
}

/* A fresh request id. Random so that separate invocations are told apart
 * in logs; 63 bits so that it prints as a JSON integer (jsonpack refuses
 * unsigned values above INT64_MAX). */
static uint64_t s_request_id(void)
{
    uint64_t id = 0;
    if (getrandom(&id, sizeof id, 0) != (ssize_t)sizeof id)
        id = (uint64_t)zclock_usecs() ^ ((uint64_t)getpid() << 32);
    return id & (uint64_t)INT64_MAX;
}

/* ---------------------------------------------------------------------
 *  call
 */

static int s_cmd_call(const settings_t *s, const conn_opts_t *o, const char *service,
                      const char *op, const char *json)
{
    int status = EXIT_UNREACHABLE;
    char err[256];
    msgpack_sbuffer args, request;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&request);
    mdpcli_t *cli = NULL;
    zframe_t *body = NULL;
    char *text = NULL;

    /* The envelope map and args are two levels of ENVELOPE_MAX_DEPTH; the
     * args object is one of them. */
    if (jsonpack_from_json(json, strlen(json), &args, ENVELOPE_MAX_DEPTH - 1, err, sizeof err) !=
        0) {
        status = s_usage_error("arguments: %s", err);
        goto cleanup;
    }
    if (!jsonpack_is_map(args.data, args.size)) {
        status = s_usage_error("arguments must be a JSON object");
        goto cleanup;
    }
    uint64_t id = s_request_id();
    if (envelope_pack_request(&request, id, op, o->token, args.data, args.size) != 0) {
        fprintf(stderr, "retailctl: out of memory packing the request\n");
        goto cleanup;
    }
    if (request.size > ENVELOPE_MAX_BYTES) {
        status = s_usage_error("the request is larger than the broker accepts (%d bytes)",
                               ENVELOPE_MAX_BYTES);
        goto cleanup;
    }

    cli = s_connect(s, o);
    if (!cli)
        goto cleanup;
    if (mdpcli_send(cli, service, request.data, request.size) != 0) {
        fprintf(stderr, "retailctl: cannot send to %s\n", s->broker_endpoint);
        goto cleanup;
    }
    int64_t deadline = zclock_mono() + o->timeout_ms;
    bool ok = false;
    while (true) {
        body = s_recv_from(cli, service, deadline, s, o);
        if (!body)
            goto cleanup;
        int match = s_match_reply(body, id, &ok, err, sizeof err);
        if (match < 0) {
            fprintf(stderr, "retailctl: malformed reply from %s: %s\n", service, err);
            goto cleanup;
        }
        if (match > 0)
            break;
        zframe_destroy(&body);
    }
    text = jsonpack_bytes_to_json_text(zframe_data(body), zframe_size(body), JSON_INDENT(2), err,
                                       sizeof err);
    if (!text) {
        fprintf(stderr, "retailctl: the reply cannot be shown as JSON: %s\n", err);
        goto cleanup;
    }
    if (printf("%s\n", text) < 0) {
        fprintf(stderr, "retailctl: cannot write the reply: %s\n", strerror(errno));
        goto cleanup;
    }
    status = ok ? EXIT_REPLY_OK : EXIT_REPLY_ERROR;

cleanup:
    free(text);
    zframe_destroy(&body);
    mdpcli_destroy(&cli);
    msgpack_sbuffer_destroy(&request);
    msgpack_sbuffer_destroy(&args);
    return status;
}

/* ---------------------------------------------------------------------
 *  services
 */

static int s_cmd_services(const settings_t *s, const conn_opts_t *o, const char *const *names,
                          int n_names)
{
    mdpcli_t *cli = s_connect(s, o);
    if (!cli)
        return EXIT_UNREACHABLE;
    int status = EXIT_REPLY_OK;
    int64_t deadline = zclock_mono() + o->timeout_ms;
    /* The names given, or every service of the one list (actors/services.h). */
    size_t n;
    const service_def_t *const *all = services_all(&n);
    if (n_names > 0)
        n = (size_t)n_names;
    for (size_t i = 0; i < n && status == EXIT_REPLY_OK; i++) {
        const char *name = n_names > 0 ? names[i] : all[i]->name;
        /* An mmi.service body is the bare service name, not msgpack. */
        if (mdpcli_send(cli, MMI_SERVICE, name, strlen(name)) != 0) {
            fprintf(stderr, "retailctl: cannot send to %s\n", s->broker_endpoint);
            status = EXIT_UNREACHABLE;
            break;
        }
        zframe_t *body = s_recv_from(cli, MMI_SERVICE, deadline, s, o);
        if (!body) {
            status = EXIT_UNREACHABLE;
            break;
        }
        const char *state = zframe_streq(body, "200")   ? "up"
                            : zframe_streq(body, "404") ? "down"
                                                        : "unknown";
        zframe_destroy(&body);
        if (printf("%s %s\n", name, state) < 0 || fflush(stdout) != 0) {
            fprintf(stderr, "retailctl: cannot write output: %s\n", strerror(errno));
            status = EXIT_UNREACHABLE;
        }
    }
    mdpcli_destroy(&cli);
    return status;
}

/* ---------------------------------------------------------------------
 *  watch
 */

static int s_parse_count(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

/* SOURCE:SEQ, SOURCE a service name, SEQ 1.. */
static int s_parse_since(const char *text, char *source, size_t size, uint64_t *seq)
{
    const char *colon = strrchr(text, ':');
    if (!colon || colon == text || (size_t)(colon - text) >= size ||
        (size_t)(colon - text) > MDP_SERVICE_MAX)
        return -1;
    memcpy(source, text, (size_t)(colon - text));
    source[colon - text] = '\0';
    if (!keys_name_valid(source, strlen(source)))
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || v < 1 || colon[1] == '-')
        return -1;
    *seq = v;
    return 0;
}

/* Parses watch's arguments from argv[first..argc) into w and o. */
static int s_parse_watch(int argc, char **argv, int first, watch_config_t *w, conn_opts_t *o,
                         char *since_source, size_t since_size)
{
    o->token = NULL;
    o->timeout_ms = DEFAULT_TIMEOUT_MS;
    o->cert_name = DEFAULT_CERT;
    w->prefix = "";
    bool have_prefix = false, options_done = false;
    for (int i = first; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (options_done || strncmp(arg, "--", 2) != 0) {
            if (have_prefix)
                return s_usage_error("watch takes one PREFIX; unexpected '%s'", arg);
            w->prefix = arg;
            have_prefix = true;
            continue;
        }
        const char *value = NULL;
        int rc;
        long n;
        if ((rc = s_take_option(argc, argv, &i, "--since", &value)) != 0) {
            if (rc < 0 || s_parse_since(value, since_source, since_size, &w->since_seq) != 0)
                return s_usage_error("--since needs SOURCE:SEQ (a service and a seq from 1)");
            w->since_source = since_source;
        } else if ((rc = s_take_option(argc, argv, &i, "--count", &value)) != 0) {
            if (rc < 0 || s_parse_count(value, 1, LONG_MAX, &n) != 0)
                return s_usage_error("--count needs a number of events from 1");
            w->count = n;
        } else if ((rc = s_take_option(argc, argv, &i, "--idle-exit", &value)) != 0) {
            if (rc < 0 || s_parse_count(value, 1, 86400 * 365, &n) != 0)
                return s_usage_error("--idle-exit needs a number of seconds from 1");
            w->idle_exit_s = (int)n;
        } else if ((rc = s_conn_option(argc, argv, &i, true, o)) != 1) {
            return rc < 0 ? EXIT_USAGE : s_usage_error("unknown option '%s'", arg);
        }
    }
    if (!o->token) {
        const char *env = getenv("RETAIL_TOKEN");
        if (env && *env)
            o->token = env;
    }
    if (o->token && strlen(o->token) > ENVELOPE_MAX_TOKEN)
        return s_usage_error("the token is longer than %d bytes", ENVELOPE_MAX_TOKEN);
    return 0;
}

/* The stream as retailctl's certificate, and a broker client for the
 * replays (the same certificate and key as call). */
static int s_cmd_watch(const settings_t *s, const conn_opts_t *o, watch_config_t *w)
{
    if (!keys_endpoint_needs_curve(s->events_endpoint))
        return s_usage_error("the events endpoint %s is inside another process; use the "
                             "tcp:// one",
                             s->events_endpoint);
    mdpcli_t *cli = s_connect(s, o);
    if (!cli)
        return EXIT_UNREACHABLE;
    char broker_public[KEYS_Z85_LEN + 1];
    zcert_t *cert = keys_broker_public(s->keys_dir, broker_public) == 0
                        ? s_client_cert(s->keys_dir, o->cert_name)
                        : NULL;
    int status = EXIT_UNREACHABLE;
    if (cert) {
        w->events_endpoint = s->events_endpoint;
        w->cert = cert;
        w->server_key = broker_public;
        w->client = cli;
        w->token = o->token;
        w->timeout_ms = o->timeout_ms;
        status = retailctl_watch(w);
    }
    zcert_destroy(&cert);
    mdpcli_destroy(&cli);
    return status;
}

/* ---------------------------------------------------------------------
 *  main
 */

/* Parses the command and its arguments, then loads settings and runs it. */
/* The account store the users service uses (its own settings say which:
 * LMDB in the data directory, or PostgreSQL), for the commands that read
 * or write it directly. NULL after saying why. */
static users_shared_t *s_open_users(const settings_t *s, const globals_t *g)
{
    char err[256] = "";
    users_settings_t own = {0};
    settings_source_t *source = settings_source_new(g->config, err, sizeof err);
    if (!source || settings_read(source, users_service.settings, users_service.n_settings, &own,
                                 err, sizeof err) != 0) {
        fprintf(stderr, "retailctl: %s\n", err);
        settings_source_destroy(&source);
        return NULL;
    }
    settings_source_destroy(&source);
    sodium_memzero(own.admin_password, sizeof own.admin_password); /* not this command's */
    users_config_t uc = {.data_dir = s->data_dir, .keys_dir = s->keys_dir, .pg_dsn = own.pg_dsn};
    users_shared_t *users = users_shared_new(&uc, err, sizeof err);
    if (!users)
        fprintf(stderr, "retailctl: the account store: %s\n", err);
    return users;
}

/* `check-record [--stock LEDGER] FILE...` (and the connection options):
 * --stock is taken out first, the rest parsed as for call. */
static int s_cmd_check_record(int argc, char **argv, int first, const globals_t *g)
{
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    const char **records = calloc((size_t)argc + 1, sizeof *records);
    const char *ledger = NULL;
    int status = EXIT_UNREACHABLE, nrest = 0, nrecords = 0;
    users_shared_t *users = NULL;
    mdpcli_t *cli = NULL;
    if (!rest || !records) {
        fprintf(stderr, "retailctl: out of memory\n");
        goto done;
    }
    for (int i = first; i < argc; i++) {
        int rc = s_take_option(argc, argv, &i, "--stock", &ledger);
        if (rc < 0) {
            status = s_usage_error("%s needs a value", "--stock");
            goto done;
        }
        if (rc == 0)
            rest[nrest++] = argv[i];
    }
    conn_opts_t o;
    if ((status = s_parse_conn_opts(nrest, rest, 0, false, &o, records, nrest, &nrecords)) != 0)
        goto done;
    if (nrecords == 0) {
        status = s_usage_error("check-record takes the records' files: check-record FILE...");
        goto done;
    }
    settings_t s;
    if ((status = s_load_settings(&s, g)) != 0)
        goto done;
    char gateway[sizeof s.data_dir + 16];
    snprintf(gateway, sizeof gateway, "%s/gateway-sim", s.data_dir);
    users = s_open_users(&s, g);
    cli = s_connect(&s, &o);
    if (!cli) {
        status = EXIT_UNREACHABLE;
        goto done;
    }
    record_check_opts_t opts = {.timeout_ms = o.timeout_ms,
                                .users = users,
                                .gateway_dir = gateway,
                                .stock_ledger = ledger,
                                .records = records,
                                .nrecords = (size_t)nrecords};
    status = retailctl_check_record(cli, &opts);
done:
    mdpcli_destroy(&cli);
    users_shared_destroy(&users);
    free(rest);
    free(records);
    return status;
}

/* `user create --admin EMAIL [--name NAME]`: straight into the store, the
 * way the first admin must come (never from an open endpoint). */
static int s_cmd_user(int argc, char **argv, int first, const globals_t *g)
{
    const char *email = NULL, *name = NULL;
    if (first >= argc || strcmp(argv[first], "create") != 0)
        return s_usage_error("user takes: create --admin EMAIL [--name NAME]");
    bool admin = false;
    for (int i = first + 1; i < argc; i++) {
        if (strcmp(argv[i], "--admin") == 0 && i + 1 < argc) {
            admin = true;
            email = argv[++i];
        } else if (strcmp(argv[i], "--name") == 0 && i + 1 < argc)
            name = argv[++i];
        else
            return s_usage_error("user create: unexpected '%s'", argv[i]);
    }
    if (!admin || !email)
        return s_usage_error("user create needs --admin EMAIL (customers register over HTTP)");
    settings_t s;
    int status = s_load_settings(&s, g);
    if (status != 0)
        return status;
    char password[256] = "";
    const char *from_env = getenv("RETAIL_USERS_ADMIN_PASSWORD");
    if (!from_env || !*from_env)
        from_env = getenv("RETAIL_ADMIN_PASSWORD");
    if (from_env && *from_env)
        snprintf(password, sizeof password, "%s", from_env);
    else {
        if (isatty(STDIN_FILENO))
            fprintf(stderr, "password for %s: ", email);
        if (!fgets(password, sizeof password, stdin)) {
            fprintf(stderr, "retailctl: no password given\n");
            return EXIT_USAGE;
        }
        password[strcspn(password, "\r\n")] = '\0';
    }
    users_shared_t *users = s_open_users(&s, g);
    if (!users) {
        sodium_memzero(password, sizeof password);
        return EXIT_UNREACHABLE;
    }
    char err[256] = "";
    int made = users_create_admin(users, email, password, name, err, sizeof err);
    users_shared_destroy(&users);
    sodium_memzero(password, sizeof password);
    if (made < 0) {
        fprintf(stderr, "retailctl: cannot create the admin: %s\n", err);
        return EXIT_UNREACHABLE;
    }
    printf("%s %s\n", email, made == 0 ? "created (admin)" : "exists already; unchanged");
    return EXIT_REPLY_OK;
}

static int s_run(int argc, char **argv, int first, const globals_t *g)
{
    const char *command = argv[first];
    settings_t s;
    int status;

    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 ||
        strcmp(command, "-h") == 0) {
        s_usage(stdout);
        return EXIT_REPLY_OK;
    }
    if (strcmp(command, "keygen") == 0) {
        bool for_service = argc - first == 3 && strcmp(argv[first + 1], "--service") == 0;
        if (argc - first != 2 && !for_service)
            return s_usage_error("keygen takes exactly one NAME (after --service for a service)");
        const char *name = argv[argc - 1];
        if (!s_valid_name(name))
            return s_usage_error("invalid key name '%s'", name);
        /* Whoever holds a certificate named "orders" moves stock. */
        if (keys_name_reserved(name) && !for_service)
            return s_usage_error("'%s' is the name of a part of the system; a certificate "
                                 "with it is trusted as that part: say 'keygen --service %s' "
                                 "if that is what it is for",
                                 name, name);
        if (!keys_name_reserved(name) && for_service)
            return s_usage_error("'%s' is not the name of a service or the bridge", name);
        if ((status = s_load_settings(&s, g)) != 0)
            return status;
        return s_cmd_keygen(&s, name);
    }

    conn_opts_t o;
    const char *pos[3];
    int npos = 0;
    if (strcmp(command, "call") == 0) {
        if ((status = s_parse_conn_opts(argc, argv, first + 1, true, &o, pos, 3, &npos)) != 0)
            return status;
        if (npos < 2)
            return s_usage_error("call needs SERVICE and OP");
        if (strlen(pos[0]) == 0 || strlen(pos[0]) > MDP_SERVICE_MAX)
            return s_usage_error("invalid service name '%s'", pos[0]);
        if (strlen(pos[1]) == 0 || strlen(pos[1]) > ENVELOPE_MAX_OP)
            return s_usage_error("invalid operation name '%s'", pos[1]);
        if ((status = s_load_settings(&s, g)) != 0)
            return status;
        return s_cmd_call(&s, &o, pos[0], pos[1], npos == 3 ? pos[2] : "{}");
    }
    if (strcmp(command, "services") == 0) {
        const char *names[SERVICES_MAX_NAMES];
        if ((status = s_parse_conn_opts(argc, argv, first + 1, false, &o, names, SERVICES_MAX_NAMES,
                                        &npos)) != 0)
            return status;
        for (int i = 0; i < npos; i++)
            if (strlen(names[i]) == 0 || strlen(names[i]) > MDP_SERVICE_MAX)
                return s_usage_error("invalid service name '%s'", names[i]);
        if ((status = s_load_settings(&s, g)) != 0)
            return status;
        return s_cmd_services(&s, &o, names, npos);
    }
    if (strcmp(command, "check") == 0) {
        if ((status = s_parse_conn_opts(argc, argv, first + 1, false, &o, pos, 0, &npos)) != 0)
            return status;
        if ((status = s_load_settings(&s, g)) != 0)
            return status;
        mdpcli_t *cli = s_connect(&s, &o);
        if (!cli)
            return EXIT_UNREACHABLE;
        status = retailctl_check(cli, o.timeout_ms);
        mdpcli_destroy(&cli);
        return status;
    }
    if (strcmp(command, "check-record") == 0)
        return s_cmd_check_record(argc, argv, first + 1, g);
    if (strcmp(command, "stock-ledger") == 0) {
        if ((status = s_parse_conn_opts(argc, argv, first + 1, false, &o, pos, 0, &npos)) != 0)
            return status;
        if ((status = s_load_settings(&s, g)) != 0)
            return status;
        mdpcli_t *cli = s_connect(&s, &o);
        if (!cli)
            return EXIT_UNREACHABLE;
        status = retailctl_stock_ledger(cli, o.timeout_ms);
        mdpcli_destroy(&cli);
        return status;
    }
    if (strcmp(command, "watch") == 0) {
        watch_config_t w = {0};
        char since_source[MDP_SERVICE_MAX + 1] = "";
        if ((status = s_parse_watch(argc, argv, first + 1, &w, &o, since_source,
                                    sizeof since_source)) != 0)
            return status;
        if ((status = s_load_settings(&s, g)) != 0)
            return status;
        return s_cmd_watch(&s, &o, &w);
    }
    if (strcmp(command, "user") == 0)
        return s_cmd_user(argc, argv, first + 1, g);
    if (strcmp(command, "payments") == 0) {
        if ((status = s_load_settings(&s, g)) != 0)
            return status;
        return retailctl_payments(argc, argv, first + 1, &s);
    }
    return s_usage_error("unknown command '%s'", command);
}

int main(int argc, char **argv)
{
    globals_t g = {0};
    int i = 1;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char **slot = NULL;
        const char *name = NULL;
        if (strncmp(argv[i], "--config", 8) == 0) {
            slot = &g.config;
            name = "--config";
        } else if (strncmp(argv[i], "--broker", 8) == 0) {
            slot = &g.broker;
            name = "--broker";
        } else if (strncmp(argv[i], "--data-dir", 10) == 0) {
            slot = &g.data_dir;
            name = "--data-dir";
        } else if (strcmp(argv[i], "--help") == 0)
            break;
        else
            return s_usage_error("unknown option '%s'", argv[i]);
        int rc = s_take_option(argc, argv, &i, name, slot);
        if (rc == 0)
            return s_usage_error("unknown option '%s'", argv[i]);
        if (rc < 0)
            return s_usage_error("%s needs a value", name);
    }
    if (i >= argc) {
        s_usage(stderr);
        return EXIT_USAGE;
    }
    int status = s_run(argc, argv, i, &g);
    /* Output is the point of this tool: a failed write must not exit 0. */
    if (fflush(stdout) != 0 && status == EXIT_REPLY_OK) {
        fprintf(stderr, "retailctl: cannot write output: %s\n", strerror(errno));
        status = EXIT_UNREACHABLE;
    }
    return status;
}

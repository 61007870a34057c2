/*  settings.h - how a process of this system is configured (API.md section 4).
 *
 *  Precedence, lowest first: built-in defaults, a ZPL configuration file
 *  (retaild --config FILE, or $RETAIL_CONFIG), the RETAIL_* environment
 *  variables, then command-line flags (applied by the caller).
 *
 *  ZPL keys (all optional):
 *      retail
 *          data_dir = "./var"
 *          http_port = 8080
 *          http_address = "127.0.0.1"
 *          http_timeout_ms = 5000
 *          tls_cert = ""            (RETAIL_TLS_CERT)
 *          tls_key = ""             (RETAIL_TLS_KEY)
 *          access_log = 1
 *          broker
 *              endpoint = "tcp://127.0.0.1:5555"
 *              heartbeat_ms = 1000
 *              request_timeout_ms = 5000
 *              queue_limit = 1024
 *          workers = 4
 *          worker_capacity = 4
 *          drain_ms = 3000          (RETAIL_DRAIN_MS: at a stop signal, how long
 *                                    requests in flight may take to finish)
 *          pg_dsn = ""              (RETAIL_PG_DSN)
 *          admin_email = ""         (RETAIL_ADMIN_EMAIL)
 *          admin_password = ""      (RETAIL_ADMIN_PASSWORD)
 */
#ifndef RETAIL_SETTINGS_H
#define RETAIL_SETTINGS_H

#include <stddef.h>

#define SETTINGS_PATH_MAX 1024

typedef struct {
    char data_dir[SETTINGS_PATH_MAX];
    char keys_dir[SETTINGS_PATH_MAX]; /* data_dir/keys, derived */
    char broker_endpoint[256];
    int http_port;
    char http_address[64];            /* the bridge listens here */
    int http_timeout_ms;              /* the bridge's deadline per request */
    char tls_cert[SETTINGS_PATH_MAX]; /* PEM files; both set: HTTPS */
    char tls_key[SETTINGS_PATH_MAX];
    int access_log; /* 1: a JSON line per request on stdout */
    int heartbeat_ms;
    int request_timeout_ms;
    int queue_limit;
    int workers;
    int worker_capacity;            /* requests a worker may hold at once (READY credit) */
    int drain_ms;                   /* at SIGINT/SIGTERM: time left to requests in flight */
    char pg_dsn[SETTINGS_PATH_MAX]; /* set: user accounts in PostgreSQL */
    char admin_email[256];          /* set: create this admin at start */
    char admin_password[256];
} settings_t;

/* Fills s from defaults, the file (may be NULL) and the environment.
 * Returns 0, or -1 with a reason in err. */
int settings_load(settings_t *s, const char *config_path, char *err, size_t errlen);

/* Recomputes derived fields after a caller changed data_dir. */
void settings_derive(settings_t *s);

#endif

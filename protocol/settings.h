/*  settings.h - how a process of this system is configured (API.md section 4).
 *
 *  Precedence, lowest first: built-in defaults, a ZPL configuration file
 *  (retaild --config FILE, or $RETAIL_CONFIG), the RETAIL_* environment
 *  variables, then command-line flags (applied by the caller).
 *
 *  The settings every process shares are settings_t below. A service's own
 *  settings are its own: it describes them with a table of setting_t rows
 *  (its ZPL section retail/<service>/... and its RETAIL_<SERVICE>_*
 *  variables; see actors/service.h), and settings_read() fills its struct
 *  from the same source, so no service's field is known here.
 *
 *  ZPL keys of settings_t (all optional):
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
 *          events                   (the event stream: router/events.h)
 *              endpoint = "tcp://127.0.0.1:5556"
 *                                   (RETAIL_EVENTS_ENDPOINT: where subscribers
 *                                    connect, CURVE; retailctl watch too)
 *              publish_endpoint = "tcp://127.0.0.1:5557"
 *                                   (RETAIL_EVENTS_PUBLISH_ENDPOINT: where relays
 *                                    of services in other processes publish)
 *              keep_ms = 604800000  (RETAIL_EVENTS_KEEP_MS: published events are
 *                                    kept in a service's outbox this long, 7 days;
 *                                    0: no age limit; at most 2147483647, ~24 days)
 *              keep_count = 1000000 (RETAIL_EVENTS_KEEP_COUNT: and at most this
 *                                    many per service; 0: no limit)
 *              outbox = 1           (RETAIL_EVENTS_OUTBOX: 0 turns the outboxes
 *                                    off, no events at all: for a benchmark of
 *                                    what they cost)
 *
 *  A value from the file or the environment is parsed strictly (a whole
 *  integer in range, a string that is not empty and fits) and refused with
 *  its key or variable named, even when a later source would override it.
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
    int worker_capacity;               /* requests a worker may hold at once (READY credit) */
    int drain_ms;                      /* at SIGINT/SIGTERM: time left to requests in flight */
    char events_endpoint[256];         /* the stream's subscriber side (tcp) */
    char events_publish_endpoint[256]; /* its publisher side, for other processes */
    int events_keep_ms;                /* outbox retention of published events; 0: no limit */
    int events_keep_count;             /* outbox size per service; 0: no limit */
    int events_outbox;                 /* 0: outboxes off (benchmarks) */
} settings_t;

/* Where settings come from: the ZPL file (if any) and the environment. */
typedef struct settings_source_t settings_source_t;

/* Reads the file at config_path, or at $RETAIL_CONFIG when config_path is
 * NULL; with neither, the source is the environment alone. NULL when the
 * file cannot be read (reason in err). */
settings_source_t *settings_source_new(const char *config_path, char *err, size_t errlen);
void settings_source_destroy(settings_source_t **self_p);

/* One setting of a struct: its names and where it goes. A row is data, so
 * a table of them can be static and describe a struct that does not exist
 * yet (settings_read fills one). */
typedef enum { SETTING_STR = 1, SETTING_INT } setting_type_t;

typedef struct {
    const char *zpl;     /* "retail/users/pg_dsn" */
    const char *env;     /* "RETAIL_USERS_PG_DSN" */
    setting_type_t type; /* STR: a char array; INT: an int */
    size_t offset;       /* of the field in the struct (offsetof) */
    size_t size;         /* STR: a value must be shorter than this */
    int min, max;        /* INT: the range, both included */
    /* An older name of the same setting, still read (a public contract
     * may promise it), or NULL. Within one source the current name wins;
     * the environment still wins over the file, whichever name each uses:
     *     file old_zpl < file zpl < env old_env < env env */
    const char *old_zpl;
    const char *old_env;
} setting_t;

/* Fills the fields of `into` that table[0..n) describes from the source,
 * in the order above; fields no source sets are left as they are (the
 * caller's defaults). Returns 0, or -1 with the first refused value named
 * in err (fields before it may have been set). */
int settings_read(const settings_source_t *source, const setting_t *table, size_t n, void *into,
                  char *err, size_t errlen);

/* Fills s from defaults, the source and the environment. Returns 0, or -1
 * with a reason in err. */
int settings_load_from(settings_t *s, const settings_source_t *source, char *err, size_t errlen);

/* The same with a source of its own (see settings_source_new). */
int settings_load(settings_t *s, const char *config_path, char *err, size_t errlen);

/* Recomputes derived fields after a caller changed data_dir. */
void settings_derive(settings_t *s);

#endif

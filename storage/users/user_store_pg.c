/*  user_store_pg.c - the user store in PostgreSQL, through libpq.
 *
 *  One connection per handle (one per worker). Every statement that
 *  carries data is a prepared statement with text parameters, prepared
 *  once per connection; the fixed schema statements run with
 *  PQexecParams (one statement per call, no string building).
 *
 *  Schema. At the first use of each new connection, in one transaction
 *  holding an advisory lock (so that the workers starting together do not
 *  race on CREATE TABLE): create schema_version(version, applied_at) if
 *  missing, read the highest version, run the migrations above it, record
 *  them. Version 1 creates users. Its id column is COLLATE "C" so that
 *  "ORDER BY id" and "id > $1" compare bytes, as LMDB does: ids sort in
 *  creation order in any database locale. created_at is a timestamptz,
 *  written as 'epoch' + ms milliseconds and read back as
 *  extract(epoch) * 1000 (numeric in PostgreSQL 14+, so exact).
 *
 *  Email uniqueness is the users_email_key unique constraint: an insert
 *  that violates it fails with SQLSTATE 23505 naming that constraint,
 *  which is STORE_EXISTS. Of two concurrent creates the second waits for
 *  the first to commit and then fails, so exactly one wins. The insert
 *  says ON CONFLICT (id) DO NOTHING so that the id is checked first and
 *  deterministically: a taken id (a caller reusing a record) inserts no
 *  row and is STORE_ERROR, in both stores.
 *
 *  A patch is one UPDATE ... RETURNING of the row: the columns not given
 *  keep their value as the row has it when the UPDATE runs (coalesce of a
 *  NULL parameter), and a password change's compare-and-set is in its
 *  WHERE, so the check and the write are one atomic statement.
 *
 *  Connection loss. Before each call uses its session, it reads what the
 *  server sent meanwhile without waiting (PQconsumeInput: libpq's socket
 *  is non-blocking): a server that stops, restarts or runs
 *  pg_terminate_backend sends the session a FATAL before it closes the
 *  socket, so the session is known dead before a statement is sent on
 *  it, and the call goes straight to a new session. A call that finds the connection
 *  broken while it runs (PQstatus bad, or SQLSTATE class 08 or 57P: the
 *  server went away in the middle, or silently) marks the handle not
 *  ready and answers STORE_UNAVAILABLE; the next call runs PQreset first,
 *  and on a new session checks the schema and prepares the statements
 *  again. Reads and patch are idempotent (a password change accepts a
 *  stored hash that is already its new one), so a call that loses its
 *  connection reconnects and retries once at once. A create is never
 *  retried, since its insert may have committed before the connection
 *  broke; after a restart it fails only if its statement was in flight.
 *  While the server is down every call tries one PQreset and answers
 *  STORE_UNAVAILABLE; the outage is logged once, not per call. A stopped
 *  server refuses at once (no socket file, or a TCP reset), so that
 *  answer comes in microseconds; only a host that drops packets makes
 *  the PQreset wait, up to connect_timeout (3 s unless the DSN says
 *  otherwise), inside the broker's 5 s request deadline.
 *  user_store_available runs the same readiness step without a
 *  statement, so a registration finds an outage before it hashes.
 *
 *  The connection's application_name is retail-users unless the DSN (or
 *  PGAPPNAME) names another, so the service's sessions can be found in
 *  pg_stat_activity.
 */
#include "storage/users/user_store_impl.h"

#include <czmq.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Any constant works; it names "the users schema" among advisory locks. */
#define S_SCHEMA_LOCK "7243100001"

typedef struct {
    PGconn *conn;
    bool fresh; /* a new session: nothing prepared on it yet */
    bool ready; /* schema checked and statements prepared on this session */
    bool down;  /* the outage was logged; log the recovery */
    bool ended; /* the server said FATAL: it is closing this session */
} s_pg_t;

/* Migration i creates schema version i + 1; append, never edit. */
static const char *const s_migration_1[] = {
    "CREATE TABLE users ("
    " id text COLLATE \"C\" PRIMARY KEY,"
    " email text NOT NULL CONSTRAINT users_email_key UNIQUE,"
    " name text NOT NULL,"
    " role text NOT NULL CHECK (role IN ('customer', 'admin')),"
    " password_hash text NOT NULL,"
    " created_at timestamptz NOT NULL)",
    NULL,
};
static const char *const *const s_migrations[] = {s_migration_1};
#define S_SCHEMA_VERSION ((int)(sizeof s_migrations / sizeof s_migrations[0]))

#define S_COLUMNS                                                                                  \
    "id, email, name, role, password_hash, (extract(epoch FROM created_at) * 1000)::bigint"

/* The prepared statements: name, text, number of parameters. */
enum { S_CREATE, S_GET_ID, S_GET_EMAIL, S_PATCH, S_LIST, S_STATEMENTS };
static const struct {
    const char *name;
    const char *sql;
    int params;
} s_statements[S_STATEMENTS] = {
    [S_CREATE] = {"users_create",
                  "INSERT INTO users (id, email, name, role, password_hash, created_at)"
                  " VALUES ($1, $2, $3, $4, $5,"
                  " timestamptz 'epoch' + $6::bigint * interval '1 millisecond')"
                  " ON CONFLICT (id) DO NOTHING",
                  6},
    [S_GET_ID] = {"users_get_id", "SELECT " S_COLUMNS " FROM users WHERE id = $1", 1},
    [S_GET_EMAIL] = {"users_get_email", "SELECT " S_COLUMNS " FROM users WHERE email = $1", 1},
    /* A NULL parameter keeps the column: coalesce reads the row this
     * UPDATE locks, which under READ COMMITTED is the latest committed
     * version (re-read after waiting for a concurrent writer), so a field
     * not in the patch is never set from a stale copy. $5 is the hash a
     * password change expects (or NULL); the stored hash being the new
     * one already is this same change retried after a lost connection. */
    [S_PATCH] = {"users_patch",
                 "UPDATE users SET name = coalesce($2, name), role = coalesce($3, role),"
                 " password_hash = coalesce($4, password_hash)"
                 " WHERE id = $1 AND ($5::text IS NULL OR password_hash = $5"
                 " OR password_hash = $4)"
                 " RETURNING " S_COLUMNS,
                 5},
    [S_LIST] = {"users_list", "SELECT " S_COLUMNS " FROM users WHERE id > $1 ORDER BY id LIMIT $2",
                2},
};

/* The length of msg's first line: libpq's messages end with a newline
 * and add hint lines, and a log entry is one line. */
static int s_line_len(const char *msg)
{
    return (int)strcspn(msg, "\n");
}

/* Server notices (e.g. "relation already exists, skipping") would go to
 * stderr by default; warnings are worth a log line, the rest is noise.
 * libpq also hands over here the FATAL a server sends to an idle session
 * as it ends it (a shutdown, pg_terminate_backend): the socket may not
 * have reached its end yet, so that message is what says the session is
 * over. */
static void s_notice(void *arg, const PGresult *res)
{
    s_pg_t *self = arg;
    const char *severity = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
    if (severity && strcmp(severity, "WARNING") == 0)
        zsys_warning("user_store(pg): %s", PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY));
    else if (severity && (strcmp(severity, "FATAL") == 0 || strcmp(severity, "PANIC") == 0))
        self->ended = true;
}

/* True when a failed statement means the session is gone. */
static bool s_connection_lost(s_pg_t *self, const PGresult *res)
{
    if (PQstatus(self->conn) != CONNECTION_OK)
        return true;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    return state && (strncmp(state, "08", 2) == 0 || strncmp(state, "57P", 3) == 0);
}

static void s_log_down(s_pg_t *self)
{
    if (self->down)
        return;
    const char *msg = PQerrorMessage(self->conn);
    zsys_warning("user_store(pg): database unavailable: %.*s", s_line_len(msg), msg);
    self->down = true;
}

/* Logs a failed statement: SQLSTATE and primary message only, since the
 * detail lines may quote row values (emails). */
static void s_log_failure(const char *what, const PGresult *res, PGconn *conn)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    const char *msg = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    if (!msg)
        msg = PQerrorMessage(conn);
    zsys_error("user_store(pg): %s: %s %.*s", what, state ? state : "-", s_line_len(msg), msg);
}

/* Runs one fixed statement (n params) and checks its result status. */
static int s_run(s_pg_t *self, const char *sql, int n, const char *const *params,
                 ExecStatusType want, PGresult **out)
{
    PGresult *res = PQexecParams(self->conn, sql, n, NULL, params, NULL, NULL, 0);
    if (res && PQresultStatus(res) == want) {
        if (out)
            *out = res;
        else
            PQclear(res);
        return 0;
    }
    if (!s_connection_lost(self, res))
        s_log_failure(sql, res, self->conn);
    PQclear(res);
    return -1;
}

/* Brings the schema to S_SCHEMA_VERSION, in one transaction. */
static int s_migrate(s_pg_t *self)
{
    PGresult *res = NULL;
    if (s_run(self, "BEGIN", 0, NULL, PGRES_COMMAND_OK, NULL) != 0)
        return -1;
    int rc = -1;
    if (s_run(self, "SELECT pg_advisory_xact_lock(" S_SCHEMA_LOCK ")", 0, NULL, PGRES_TUPLES_OK,
              NULL) != 0 ||
        s_run(self,
              "CREATE TABLE IF NOT EXISTS schema_version ("
              " version integer PRIMARY KEY,"
              " applied_at timestamptz NOT NULL DEFAULT now())",
              0, NULL, PGRES_COMMAND_OK, NULL) != 0 ||
        s_run(self, "SELECT coalesce(max(version), 0) FROM schema_version", 0, NULL,
              PGRES_TUPLES_OK, &res) != 0)
        goto cleanup;
    int current = PQntuples(res) == 1 ? atoi(PQgetvalue(res, 0, 0)) : -1;
    PQclear(res);
    if (current < 0)
        goto cleanup;
    /* A newer schema than this program knows: a newer version ran here
     * and we were rolled back. Migrations only add, so carry on. */
    if (current > S_SCHEMA_VERSION)
        zsys_warning("user_store(pg): schema version %d is newer than this program's %d", current,
                     S_SCHEMA_VERSION);
    for (int version = current + 1; version <= S_SCHEMA_VERSION; version++) {
        for (const char *const *sql = s_migrations[version - 1]; *sql; sql++)
            if (s_run(self, *sql, 0, NULL, PGRES_COMMAND_OK, NULL) != 0)
                goto cleanup;
        char text[16];
        snprintf(text, sizeof text, "%d", version);
        const char *params[] = {text};
        if (s_run(self, "INSERT INTO schema_version (version) VALUES ($1)", 1, params,
                  PGRES_COMMAND_OK, NULL) != 0)
            goto cleanup;
        zsys_info("user_store(pg): schema migrated to version %d", version);
    }
    if (s_run(self, "COMMIT", 0, NULL, PGRES_COMMAND_OK, NULL) != 0)
        return -1; /* a failed COMMIT has ended the transaction */
    rc = 0;
cleanup:
    /* A failed ROLLBACK is logged by s_run; the session is then reset by
     * the next call anyway (fresh is false). */
    if (rc != 0 && PQstatus(self->conn) == CONNECTION_OK)
        (void)s_run(self, "ROLLBACK", 0, NULL, PGRES_COMMAND_OK, NULL);
    return rc;
}

static int s_prepare(s_pg_t *self)
{
    for (int i = 0; i < S_STATEMENTS; i++) {
        PGresult *res = PQprepare(self->conn, s_statements[i].name, s_statements[i].sql,
                                  s_statements[i].params, NULL);
        bool ok = res && PQresultStatus(res) == PGRES_COMMAND_OK;
        if (!ok && !s_connection_lost(self, res))
            s_log_failure(s_statements[i].name, res, self->conn);
        PQclear(res);
        if (!ok)
            return -1;
    }
    return 0;
}

/* Makes the handle usable: a new session if the last one broke or was
 * left half set up, then the schema check and the statements. */
static store_status_t s_ready(s_pg_t *self)
{
    /* Reading what came costs one recv that does not wait; PQisBusy
     * parses it, which hands a FATAL to s_notice. That finds a session
     * the server closed (see the top of the file). */
    if (self->ready) {
        if (PQconsumeInput(self->conn) && !PQisBusy(self->conn) &&
            PQstatus(self->conn) == CONNECTION_OK && !self->ended)
            return STORE_OK;
        zsys_info("user_store(pg): the server ended the session; reconnecting");
        self->ready = false;
    }
    if (!self->fresh || PQstatus(self->conn) != CONNECTION_OK) {
        PQreset(self->conn);
        if (PQstatus(self->conn) != CONNECTION_OK) {
            s_log_down(self);
            return STORE_UNAVAILABLE;
        }
        self->ended = false;
    }
    self->fresh = false;
    if (s_migrate(self) != 0 || s_prepare(self) != 0) {
        if (s_connection_lost(self, NULL)) {
            s_log_down(self);
            return STORE_UNAVAILABLE;
        }
        return STORE_ERROR;
    }
    if (self->down)
        zsys_info("user_store(pg): database reachable again");
    self->down = false;
    self->ready = true;
    return STORE_OK;
}

/* Runs prepared statement `which`. On STORE_OK *out is its result (the
 * caller PQclears it). idempotent: retry once on a new session when the
 * connection turns out to be lost (see the top of the file). */
static store_status_t s_exec(s_pg_t *self, int which, const char *const *params, bool idempotent,
                             ExecStatusType want, PGresult **out)
{
    *out = NULL;
    for (int attempt = 0;; attempt++) {
        store_status_t status = s_ready(self);
        if (status != STORE_OK)
            return status;
        PGresult *res = PQexecPrepared(self->conn, s_statements[which].name,
                                       s_statements[which].params, params, NULL, NULL, 0);
        if (res && PQresultStatus(res) == want) {
            *out = res;
            return STORE_OK;
        }
        if (s_connection_lost(self, res)) {
            PQclear(res);
            self->ready = false;
            if (idempotent && attempt == 0)
                continue;
            s_log_down(self);
            return STORE_UNAVAILABLE;
        }
        const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
        const char *constraint = res ? PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME) : NULL;
        if (state && strcmp(state, "23505") == 0 && constraint &&
            strcmp(constraint, "users_email_key") == 0)
            status = STORE_EXISTS;
        else {
            s_log_failure(s_statements[which].name, res, self->conn);
            status = STORE_ERROR;
        }
        PQclear(res);
        return status;
    }
}

/* Copies row `row` of a S_COLUMNS result into *out. */
static store_status_t s_row(const PGresult *res, int row, user_record_t *out)
{
    user_record_t user = {0};
    struct {
        char *dst;
        size_t cap;
    } fields[] = {
        {user.id, USER_ID_MAX},     {user.email, USER_EMAIL_MAX},        {user.name, USER_NAME_MAX},
        {user.role, USER_ROLE_MAX}, {user.password_hash, USER_HASH_MAX},
    };
    for (int col = 0; col < 5; col++)
        if (!user_store_copy_field(fields[col].dst, fields[col].cap, PQgetvalue(res, row, col),
                                   (size_t)PQgetlength(res, row, col))) {
            zsys_error("user_store(pg): row with an over-long field %d", col);
            return STORE_ERROR;
        }
    const char *ms = PQgetvalue(res, row, 5);
    char *end = NULL;
    errno = 0;
    long long value = strtoll(ms, &end, 10);
    if (errno != 0 || end == ms || *end != '\0') {
        zsys_error("user_store(pg): bad created_at %s", ms);
        return STORE_ERROR;
    }
    user.created_at_ms = value;
    *out = user;
    return STORE_OK;
}

/* The single row of a lookup, or STORE_NOT_FOUND. */
static store_status_t s_lookup(s_pg_t *self, int which, const char *key, user_record_t *out)
{
    const char *params[] = {key};
    PGresult *res = NULL;
    store_status_t status = s_exec(self, which, params, true, PGRES_TUPLES_OK, &res);
    if (status != STORE_OK)
        return status;
    status = PQntuples(res) == 0 ? STORE_NOT_FOUND : s_row(res, 0, out);
    PQclear(res);
    return status;
}

static store_status_t s_create(void *impl, const user_record_t *user)
{
    char ms[32];
    snprintf(ms, sizeof ms, "%" PRId64, user->created_at_ms);
    const char *params[] = {user->id, user->email, user->name, user->role, user->password_hash, ms};
    PGresult *res = NULL;
    store_status_t status = s_exec(impl, S_CREATE, params, false, PGRES_COMMAND_OK, &res);
    if (status != STORE_OK)
        return status;
    /* "0": ON CONFLICT (id) found the id taken (checked before the email,
     * so a repeated record is an id collision, as in LMDB). Not
     * STORE_EXISTS: the caller would tell a client the email is taken. */
    if (strcmp(PQcmdTuples(res), "1") != 0) {
        zsys_error("user_store(pg): create: id %s exists", user->id);
        status = STORE_ERROR;
    }
    PQclear(res);
    return status;
}

static store_status_t s_get_by_id(void *impl, const char *id, user_record_t *out)
{
    return s_lookup(impl, S_GET_ID, id, out);
}

static store_status_t s_get_by_email(void *impl, const char *email, user_record_t *out)
{
    return s_lookup(impl, S_GET_EMAIL, email, out);
}

static store_status_t s_patch(void *impl, const char *id, const user_patch_t *patch,
                              user_record_t *out)
{
    const char *params[] = {id, patch->name, patch->role, patch->password_hash,
                            patch->expected_hash};
    PGresult *res = NULL;
    store_status_t status = s_exec(impl, S_PATCH, params, true, PGRES_TUPLES_OK, &res);
    if (status != STORE_OK)
        return status;
    int rows = PQntuples(res);
    status = rows == 1 ? s_row(res, 0, out) : STORE_NOT_FOUND;
    PQclear(res);
    /* No row: no such id, or (with an expected hash) a hash that changed.
     * Which one only shapes the answer; the write was not made either way. */
    if (rows == 0 && patch->expected_hash) {
        status = s_lookup(impl, S_GET_ID, id, out);
        if (status == STORE_OK)
            status = STORE_CONFLICT;
    }
    return status;
}

static store_status_t s_list(void *impl, const char *after, int limit, user_record_t *out,
                             int *count)
{
    char text[16];
    snprintf(text, sizeof text, "%d", limit);
    const char *params[] = {after, text};
    PGresult *res = NULL;
    store_status_t status = s_exec(impl, S_LIST, params, true, PGRES_TUPLES_OK, &res);
    if (status != STORE_OK)
        return status;
    int rows = PQntuples(res);
    for (int i = 0; i < rows && i < limit && status == STORE_OK; i++)
        status = s_row(res, i, &out[i]);
    if (status == STORE_OK)
        *count = rows < limit ? rows : limit;
    PQclear(res);
    return status;
}

static store_status_t s_available(void *impl)
{
    store_status_t status = s_ready(impl);
    /* A schema that cannot be set up is not an outage: the call itself
     * will say so. */
    return status == STORE_UNAVAILABLE ? STORE_UNAVAILABLE : STORE_OK;
}

static void s_destroy(void *impl)
{
    s_pg_t *self = impl;
    PQfinish(self->conn);
    free(self);
}

static const user_store_ops_t s_ops = {
    .name = "pg",
    .create = s_create,
    .get_by_id = s_get_by_id,
    .get_by_email = s_get_by_email,
    .patch = s_patch,
    .list = s_list,
    .available = s_available,
    .destroy = s_destroy,
};

user_store_t *user_store_open_pg(const char *dsn, char *err, size_t errlen)
{
    if (!dsn) {
        snprintf(err, errlen, "no DSN");
        return NULL;
    }
    /* A malformed DSN is a configuration error to report now; libpq would
     * only say so as a failed connection, like a server that is down. */
    char *parse_error = NULL;
    PQconninfoOption *options = PQconninfoParse(dsn, &parse_error);
    if (!options) {
        const char *why = parse_error ? parse_error : "out of memory";
        snprintf(err, errlen, "bad PostgreSQL DSN: %.*s", s_line_len(why), why);
        PQfreemem(parse_error);
        return NULL;
    }
    PQconninfoFree(options);

    s_pg_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* Defaults first: the DSN, expanded in place of "dbname", overrides
     * them (later keywords win). */
    const char *const keywords[] = {"fallback_application_name", "connect_timeout",
                                    "client_encoding", "dbname", NULL};
    const char *const values[] = {"retail-users", "3", "UTF8", dsn, NULL};
    self->conn = PQconnectdbParams(keywords, values, 1);
    if (!self->conn) {
        snprintf(err, errlen, "out of memory");
        free(self);
        return NULL;
    }
    PQsetNoticeReceiver(self->conn, s_notice, self);
    self->fresh = true;
    /* Set up now when the server is there, so that a broken schema shows
     * at start; when it is not, the first call tries again. */
    if (s_ready(self) == STORE_ERROR)
        zsys_error("user_store(pg): cannot set up the schema; will retry");
    return user_store_wrap(&s_ops, self);
}

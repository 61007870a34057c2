/*  users.c - the `users` service. See users.h for the shape; the ops'
 *  contracts are in protocol/SPEC.md.
 *
 *  Secrets: passwords exist only in the request being handled and are
 *  never copied into logs or replies; refresh tokens are stored as hashes;
 *  the private key stays in the token signer.
 *
 *  Account changes (update_me, set_role) are patches the store applies
 *  atomically (user_store_patch): only the fields the request changes,
 *  so a rename and an admin's role change at once both take effect.
 *
 *  Login costs the same for unknown and known emails: an unknown email is
 *  verified against a dummy Argon2id hash made at start, so response time
 *  does not tell which emails have accounts.
 *
 *  An account store that cannot be reached is found before any Argon2id
 *  work: a login looks the account up first, a registration asks the
 *  store whether it is available (user_store_available) before it
 *  hashes. Both are then answered `unavailable` in well under a
 *  millisecond, so an outage of PostgreSQL neither fills the hashing
 *  gate nor costs 64 MiB per request.
 *
 *  Login writes (a session, or a failure counted): when the store finds
 *  no room for that write (STORE_NO_SPACE: the disk or the map is full),
 *  login answers unavailable "storage is full" (call_fail_no_space), for
 *  a wrong password too, whose failure could not be counted.
 */
#include "actors/users/users.h"
#include "actors/users/tokens.h"
#include "protocol/auth.h"
#include "protocol/jsonpack.h"
#include "storage/users/sessions.h"

#include <semaphore.h>
#include <sodium.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#define PASSWORD_MIN_CHARS 8
#define PASSWORD_MAX_BYTES 1024
#define USERS_MAP_SIZE ((size_t)1 << 30)

enum { DBI_USERS = 0, DBI_SESSIONS = USER_STORE_LMDB_DBS };

struct users_shared_t {
    users_config_t config;
    char data_dir[1024], keys_dir[1024], pg_dsn[1024];
    char private_pem[1100], public_pem[1100];
    kv_t *env;
    atomic_int admitted; /* hashing or waiting to */
    int max_admitted;
    sem_t slots; /* hashing now */
    char dummy_hash[crypto_pwhash_STRBYTES];
};

typedef struct {
    users_shared_t *shared;
    user_store_t *store;
    sessions_t *sessions;
    token_signer_t *signer;
    auth_verifier_t *verifier;
    char *jwks; /* msgpack of the JWK Set, made on first use */
    size_t jwks_len;
} users_state_t;

/* ------------------------------------------------------------------ */
/* Shared state                                                        */

users_shared_t *users_shared_new(const users_config_t *config, char *err, size_t errlen)
{
    users_shared_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->config = *config;
    snprintf(self->data_dir, sizeof self->data_dir, "%s", config->data_dir);
    snprintf(self->keys_dir, sizeof self->keys_dir, "%s", config->keys_dir);
    snprintf(self->pg_dsn, sizeof self->pg_dsn, "%s", config->pg_dsn ? config->pg_dsn : "");
    snprintf(self->private_pem, sizeof self->private_pem, "%s/jwt.key.pem", self->keys_dir);
    snprintf(self->public_pem, sizeof self->public_pem, "%s/jwt.pub.pem", self->keys_dir);
    if (self->config.token_ttl_s <= 0)
        self->config.token_ttl_s = 900;
    if (self->config.refresh_ttl_s <= 0)
        self->config.refresh_ttl_s = 30 * 24 * 3600;
    if (self->config.login_limit <= 0)
        self->config.login_limit = 5;
    if (self->config.login_ip_limit <= 0)
        self->config.login_ip_limit = 20;
    if (self->config.login_window_s <= 0)
        self->config.login_window_s = 900;
    int slots = config->hash_slots > 0 ? config->hash_slots : (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (slots < 1)
        slots = 1;
    self->max_admitted = 2 * slots;
    atomic_init(&self->admitted, 0);
    if (sem_init(&self->slots, 0, (unsigned)slots) != 0) {
        snprintf(err, errlen, "cannot make the hashing semaphore");
        free(self);
        return NULL;
    }

    const char *names[USER_STORE_LMDB_DBS + SESSIONS_LMDB_DBS];
    for (int i = 0; i < USER_STORE_LMDB_DBS; i++)
        names[DBI_USERS + i] = user_store_lmdb_names[i];
    for (int i = 0; i < SESSIONS_LMDB_DBS; i++)
        names[DBI_SESSIONS + i] = sessions_lmdb_names[i];
    char *path = zsys_sprintf("%s/users", self->data_dir);
    self->env = kv_open(path, USERS_MAP_SIZE, names, NULL, USER_STORE_LMDB_DBS + SESSIONS_LMDB_DBS,
                        err, errlen);
    zstr_free(&path);
    if (!self->env || auth_keys_ensure(self->keys_dir, err, errlen) != 0)
        goto fail;
    /* The dummy hash for unknown emails: same cost as a real one. */
    unsigned char random[16];
    randombytes_buf(random, sizeof random);
    if (crypto_pwhash_str(self->dummy_hash, (const char *)random, sizeof random,
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        snprintf(err, errlen, "cannot hash (out of memory?)");
        goto fail;
    }
    return self;
fail:
    users_shared_destroy(&self);
    return NULL;
}

void users_shared_destroy(users_shared_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    users_shared_t *self = *self_p;
    kv_close(&self->env);
    sem_destroy(&self->slots);
    free(self);
    *self_p = NULL;
}

int users_shared_hash_admission(const users_shared_t *self)
{
    return self->max_admitted;
}

/* Admits one password hash or verify; false when too many are running or
 * waiting already. */
static bool s_gate_enter(users_shared_t *self)
{
    if (atomic_fetch_add(&self->admitted, 1) >= self->max_admitted) {
        atomic_fetch_sub(&self->admitted, 1);
        return false;
    }
    while (sem_wait(&self->slots) != 0)
        ; /* EINTR: signals are blocked in workers, but be safe */
    return true;
}

static void s_gate_leave(users_shared_t *self)
{
    sem_post(&self->slots);
    atomic_fetch_sub(&self->admitted, 1);
}

/* ------------------------------------------------------------------ */
/* Worker state                                                        */

static user_store_t *s_store_open(users_shared_t *shared, char *err, size_t errlen)
{
    if (shared->pg_dsn[0])
        return user_store_open_pg(shared->pg_dsn, err, errlen);
    return user_store_open_lmdb(shared->env, DBI_USERS);
}

void *users_state_new(void *shared_ptr)
{
    users_shared_t *shared = shared_ptr;
    users_state_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->shared = shared;
    char err[256] = "";
    self->store = s_store_open(shared, err, sizeof err);
    self->sessions = sessions_open(shared->env, DBI_SESSIONS);
    self->signer = token_signer_new(shared->private_pem, AUTH_ISSUER, AUTH_AUDIENCE,
                                    shared->config.token_ttl_s, err, sizeof err);
    self->verifier = auth_verifier_new(shared->public_pem, AUTH_ISSUER, AUTH_AUDIENCE, 0);
    if (!self->store || !self->sessions || !self->signer || !self->verifier) {
        zsys_error("users: worker cannot start: %s", err[0] ? err : "out of memory");
        void *state = self;
        users_state_destroy(&state);
        return NULL;
    }
    return self;
}

void users_state_destroy(void **state)
{
    if (!state || !*state)
        return;
    users_state_t *self = *state;
    user_store_close(&self->store);
    sessions_close(&self->sessions);
    token_signer_destroy(&self->signer);
    auth_verifier_destroy(&self->verifier);
    free(self->jwks);
    free(self);
    *state = NULL;
}

/* ------------------------------------------------------------------ */
/* Helpers                                                             */

bool users_email_normalise(char *email)
{
    size_t start = strspn(email, " \t\r\n");
    size_t len = strlen(email + start);
    memmove(email, email + start, len + 1);
    while (len > 0 && strchr(" \t\r\n", email[len - 1]))
        email[--len] = '\0';
    if (len < 3 || len > USER_EMAIL_MAX)
        return false;
    const char *at = NULL;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)email[i];
        if (c <= ' ' || c >= 0x7f || strchr("\"(),:;<>[\\]", c))
            return false;
        if (c >= 'A' && c <= 'Z')
            email[i] = (char)(c - 'A' + 'a');
        if (c == '@') {
            if (at)
                return false;
            at = email + i;
        }
    }
    if (!at || at == email || at - email > 64 || strstr(email, ".."))
        return false;
    const char *domain = at + 1;
    const char *dot = strrchr(domain, '.');
    return *domain && *domain != '.' && dot && dot > domain && dot[1] != '\0';
}

static size_t s_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        if (((unsigned char)s[i] & 0xc0) != 0x80)
            n++;
    return n;
}

/* {id, email, name, role, created_at}: never the hash. */
static void s_pack_user(msgpack_packer *pk, const user_record_t *u)
{
    char when[32];
    call_rfc3339(u->created_at_ms, when);
    msgpack_pack_map(pk, 5);
    mp_pack_str(pk, "id");
    mp_pack_str(pk, u->id);
    mp_pack_str(pk, "email");
    mp_pack_str(pk, u->email);
    mp_pack_str(pk, "name");
    mp_pack_str(pk, u->name);
    mp_pack_str(pk, "role");
    mp_pack_str(pk, u->role);
    mp_pack_str(pk, "created_at");
    mp_pack_str(pk, when);
}

static void s_reply_user(call_t *call, const user_record_t *u)
{
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 1);
    mp_pack_str(pk, "user");
    s_pack_user(pk, u);
}

/* Answers a store failure; true when status was STORE_OK. */
static bool s_store_ok(call_t *call, store_status_t status)
{
    switch (status) {
    case STORE_OK:
        return true;
    case STORE_NOT_FOUND:
        call_fail(call, ERR_NOT_FOUND, "no such user");
        break;
    case STORE_EXISTS:
        call_fail(call, ERR_EMAIL_TAKEN, "an account with this email exists");
        break;
    case STORE_UNAVAILABLE:
        call_fail(call, ERR_UNAVAILABLE, "the account database is not reachable");
        break;
    case STORE_NO_SPACE:
        call_fail_no_space(call);
        break;
    default:
        call_fail(call, ERR_INTERNAL, "the account database failed");
    }
    return false;
}

static void s_fail_busy(call_t *call)
{
    call_fail_retry(call, ERR_UNAVAILABLE, "too many password checks in progress; retry shortly",
                    1);
}

/* Hashes a password through the gate. 1 ok, 0 gate closed (answered),
 * -1 failure (answered). */
static int s_hash(users_state_t *self, call_t *call, const char *password, size_t len,
                  char out[crypto_pwhash_STRBYTES])
{
    if (!s_gate_enter(self->shared)) {
        s_fail_busy(call);
        return 0;
    }
    int rc = crypto_pwhash_str(out, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                               crypto_pwhash_MEMLIMIT_INTERACTIVE);
    s_gate_leave(self->shared);
    if (rc != 0) {
        call_fail(call, ERR_UNAVAILABLE, "cannot hash the password now (out of memory)");
        return -1;
    }
    return 1;
}

/* Checks a new password; records the problem under `field`. */
static void s_check_password(call_t *call, const char *field, const char *p, size_t len)
{
    if (s_utf8_chars(p, len) < PASSWORD_MIN_CHARS)
        call_arg_invalid(call, field, "must have at least 8 characters");
    else if (memchr(p, '\0', len))
        call_arg_invalid(call, field, "must not contain NUL");
}

/* Issues the token pair of a login or refresh and replies with it. The
 * refresh token was stored by the caller (hash in `refresh`). */
static void s_reply_tokens(users_state_t *self, call_t *call, const user_record_t *user,
                           const char *refresh)
{
    char *access = NULL;
    int expires_in = 0;
    if (token_sign(self->signer, user->id, user->role, &access, &expires_in) != 0) {
        call_fail(call, ERR_INTERNAL, "cannot sign a token");
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 5);
    mp_pack_str(pk, "access_token");
    mp_pack_str(pk, access);
    mp_pack_str(pk, "token_type");
    mp_pack_str(pk, "Bearer");
    mp_pack_str(pk, "expires_in");
    msgpack_pack_int(pk, expires_in);
    mp_pack_str(pk, "refresh_token");
    mp_pack_str(pk, refresh);
    mp_pack_str(pk, "user");
    s_pack_user(pk, user);
    sodium_memzero(access, strlen(access));
    free(access);
}

/* ------------------------------------------------------------------ */
/* Ops                                                                 */

static void s_register(call_t *call, void *state)
{
    users_state_t *self = state;
    const char *email, *password, *name;
    size_t email_len, password_len, name_len;
    char normal[USER_EMAIL_MAX + 64];
    if (call_arg_str(call, "email", ARG_REQUIRED, USER_EMAIL_MAX + 32, &email, &email_len)) {
        call_copy_text(normal, sizeof normal, email, email_len);
        if (!users_email_normalise(normal))
            call_arg_invalid(call, "email", "is not a valid email address");
    }
    if (call_arg_str(call, "password", ARG_REQUIRED, PASSWORD_MAX_BYTES, &password, &password_len))
        s_check_password(call, "password", password, password_len);
    if (call_arg_str(call, "name", ARG_REQUIRED, USER_NAME_MAX, &name, &name_len) &&
        s_utf8_chars(name, name_len) == 0)
        call_arg_invalid(call, "name", "must not be empty");
    if (!call_args_ok(call))
        return;

    user_record_t user = {0};
    user_store_new_id(user.id);
    call_copy_text(user.email, sizeof user.email, normal, strlen(normal)); /* normalised: fits */
    call_copy_text(user.name, sizeof user.name, name, name_len);
    snprintf(user.role, sizeof user.role, "customer");
    user.created_at_ms = call_now_ms();
    /* An outage is found before the hash, whose 100 ms and 64 MiB would
     * buy nothing (the check costs no round trip while the store is up). */
    if (!s_store_ok(call, user_store_available(self->store)))
        return;
    if (s_hash(self, call, password, password_len, user.password_hash) != 1)
        return;
    if (s_store_ok(call, user_store_create(self->store, &user)))
        s_reply_user(call, &user);
}

static void s_login(call_t *call, void *state)
{
    users_state_t *self = state;
    users_shared_t *shared = self->shared;
    const char *email, *password, *ip = NULL;
    size_t email_len, password_len, ip_len = 0;
    call_arg_str(call, "email", ARG_REQUIRED, USER_EMAIL_MAX + 32, &email, &email_len);
    call_arg_str(call, "password", ARG_REQUIRED, PASSWORD_MAX_BYTES, &password, &password_len);
    call_arg_str(call, "client_ip", ARG_OPTIONAL, 64, &ip, &ip_len);
    if (!call_args_ok(call))
        return;
    char normal[USER_EMAIL_MAX + 64];
    call_copy_text(normal, sizeof normal, email, email_len);
    bool plausible = users_email_normalise(normal);

    char email_key[USER_EMAIL_MAX + 80], ip_key[80] = "";
    snprintf(email_key, sizeof email_key, "email:%s", normal);
    if (ip && ip_len)
        snprintf(ip_key, sizeof ip_key, "ip:%.*s", (int)ip_len, ip);
    int64_t now = call_now_ms() / 1000;
    const int window = shared->config.login_window_s;
    int wait =
        sessions_login_blocked(self->sessions, email_key, now, shared->config.login_limit, window);
    if (ip_key[0] && !wait)
        wait = sessions_login_blocked(self->sessions, ip_key, now, shared->config.login_ip_limit,
                                      window);
    if (wait > 0) {
        call_fail_retry(call, ERR_RATE_LIMITED, "too many failed logins; wait before trying again",
                        wait);
        return;
    }

    user_record_t user;
    store_status_t found =
        plausible ? user_store_get_by_email(self->store, normal, &user) : STORE_NOT_FOUND;
    if (found != STORE_OK && found != STORE_NOT_FOUND) {
        s_store_ok(call, found);
        return;
    }
    if (!s_gate_enter(shared)) {
        s_fail_busy(call);
        return;
    }
    /* The same Argon2id work whether or not the account exists. */
    const char *hash = found == STORE_OK ? user.password_hash : shared->dummy_hash;
    bool match = crypto_pwhash_str_verify(hash, password, password_len) == 0;
    s_gate_leave(shared);
    if (!match || found != STORE_OK) {
        store_status_t counted = sessions_login_failed(self->sessions, email_key, now, window);
        if (ip_key[0] &&
            sessions_login_failed(self->sessions, ip_key, now, window) == STORE_NO_SPACE)
            counted = STORE_NO_SPACE;
        /* A failure the limit cannot count (the disk is full) is not
         * answered as one: the answer would be a guess outside the limit.
         * A right password finds no room for its session either. */
        if (counted == STORE_NO_SPACE)
            call_fail_no_space(call);
        else
            call_fail(call, ERR_INVALID_CREDENTIALS, "wrong email or password");
        return;
    }
    sessions_login_clear(self->sessions, email_key);

    char refresh[REFRESH_TOKEN_MAX + 1];
    uint8_t refresh_hash[REFRESH_HASH_BYTES];
    refresh_token_new(refresh);
    refresh_token_hash(refresh, strlen(refresh), refresh_hash);
    store_status_t issued = sessions_issue(self->sessions, refresh_hash, user.id, NULL,
                                           now + shared->config.refresh_ttl_s);
    if (issued == STORE_NO_SPACE) {
        call_fail_no_space(call);
        return;
    }
    if (issued != STORE_OK) {
        call_fail(call, ERR_UNAVAILABLE, "cannot store the session");
        return;
    }
    s_reply_tokens(self, call, &user, refresh);
    sodium_memzero(refresh, sizeof refresh);
}

static void s_refresh(call_t *call, void *state)
{
    users_state_t *self = state;
    const char *token;
    size_t len;
    call_arg_str(call, "refresh_token", ARG_REQUIRED, 256, &token, &len);
    if (!call_args_ok(call))
        return;
    uint8_t old_hash[REFRESH_HASH_BYTES], new_hash[REFRESH_HASH_BYTES];
    char refresh[REFRESH_TOKEN_MAX + 1];
    refresh_token_hash(token, len, old_hash);
    refresh_token_new(refresh);
    refresh_token_hash(refresh, strlen(refresh), new_hash);
    int64_t now = call_now_ms() / 1000;
    char user_id[USER_ID_MAX + 1] = "";
    rotate_result_t r = sessions_rotate(self->sessions, old_hash, new_hash, now,
                                        now + self->shared->config.refresh_ttl_s, user_id);
    const char *why = NULL;
    switch (r) {
    case ROTATE_OK:
        break;
    case ROTATE_UNKNOWN:
        why = "unknown refresh token";
        break;
    case ROTATE_EXPIRED:
        why = "the refresh token has expired";
        break;
    case ROTATE_REVOKED:
        why = "the refresh token was revoked";
        break;
    case ROTATE_REUSED:
        why = "the refresh token was already used; its session is revoked";
        break;
    case ROTATE_FAILED:
        call_fail(call, ERR_UNAVAILABLE, "cannot update the session");
        return;
    case ROTATE_NO_SPACE:
        call_fail_no_space(call);
        return;
    }
    if (why) {
        call_fail(call, ERR_UNAUTHENTICATED, why);
        return;
    }
    user_record_t user;
    store_status_t status = user_store_get_by_id(self->store, user_id, &user);
    if (status == STORE_NOT_FOUND)
        call_fail(call, ERR_UNAUTHENTICATED, "the account no longer exists");
    else if (s_store_ok(call, status))
        s_reply_tokens(self, call, &user, refresh);
    sodium_memzero(refresh, sizeof refresh);
}

static void s_logout(call_t *call, void *state)
{
    users_state_t *self = state;
    auth_identity_t who;
    if (!auth_require(self->verifier, call, &who))
        return;
    const char *token;
    size_t len;
    call_arg_str(call, "refresh_token", ARG_REQUIRED, 256, &token, &len);
    if (!call_args_ok(call))
        return;
    uint8_t hash[REFRESH_HASH_BYTES];
    refresh_token_hash(token, len, hash);
    store_status_t status = sessions_revoke(self->sessions, hash, who.sub);
    if (status == STORE_NOT_FOUND)
        call_fail(call, ERR_NOT_FOUND, "no such refresh token for this user");
    else if (status == STORE_NO_SPACE)
        call_fail_no_space(call);
    else if (status != STORE_OK)
        call_fail(call, ERR_UNAVAILABLE, "cannot update the session");
    else
        msgpack_pack_nil(call_reply(call));
}

static void s_jwks(call_t *call, void *state)
{
    users_state_t *self = state;
    if (!self->jwks) {
        char err[160];
        char *json = auth_jwks_json(self->shared->public_pem, err, sizeof err);
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        if (json && jsonpack_from_json(json, strlen(json), &buf, 4, err, sizeof err) == 0) {
            self->jwks = buf.data; /* keep the bytes; the sbuffer is not destroyed */
            self->jwks_len = buf.size;
        } else
            msgpack_sbuffer_destroy(&buf);
        free(json);
        if (!self->jwks) {
            call_fail(call, ERR_INTERNAL, "cannot read the public key");
            return;
        }
    }
    msgpack_packer *pk = call_reply(call);
    mp_pack_raw(pk, self->jwks, self->jwks_len);
}

static void s_me(call_t *call, void *state)
{
    users_state_t *self = state;
    auth_identity_t who;
    if (!auth_require(self->verifier, call, &who))
        return;
    user_record_t user;
    if (s_store_ok(call, user_store_get_by_id(self->store, who.sub, &user)))
        s_reply_user(call, &user);
}

static void s_update_me(call_t *call, void *state)
{
    users_state_t *self = state;
    auth_identity_t who;
    if (!auth_require(self->verifier, call, &who))
        return;
    const char *name = NULL, *password = NULL, *current = NULL;
    size_t name_len = 0, password_len = 0, current_len = 0;
    bool has_name = call_arg_str(call, "name", ARG_OPTIONAL, USER_NAME_MAX, &name, &name_len);
    if (has_name && s_utf8_chars(name, name_len) == 0)
        call_arg_invalid(call, "name", "must not be empty");
    bool has_password =
        call_arg_str(call, "password", ARG_OPTIONAL, PASSWORD_MAX_BYTES, &password, &password_len);
    if (has_password)
        s_check_password(call, "password", password, password_len);
    bool has_current = call_arg_str(call, "current_password", ARG_OPTIONAL, PASSWORD_MAX_BYTES,
                                    &current, &current_len);
    if (has_password && !has_current)
        call_arg_invalid(call, "current_password", "is required to change the password");
    if (!call_args_ok(call))
        return;

    char new_name[USER_NAME_MAX + 1] = "";
    if (has_name)
        call_copy_text(new_name, sizeof new_name, name, name_len);
    user_patch_t patch = {.name = has_name ? new_name : NULL};
    user_record_t user;
    if (!has_password) {
        store_status_t status = has_name ? user_store_patch(self->store, who.sub, &patch, &user)
                                         : user_store_get_by_id(self->store, who.sub, &user);
        if (s_store_ok(call, status))
            s_reply_user(call, &user);
        return;
    }
    /* The Argon2id verify is far too slow to run inside a write, so the
     * write is a compare-and-set on the hash it verified: a password that
     * changed meanwhile is not overwritten, and the current password is
     * checked again against the new hash (a few times at most). */
    char new_hash[crypto_pwhash_STRBYTES] = "";
    for (int attempt = 0;; attempt++) {
        if (attempt == 3) {
            call_fail(call, ERR_CONFLICT, "the password is being changed elsewhere; try again");
            return;
        }
        if (!s_store_ok(call, user_store_get_by_id(self->store, who.sub, &user)))
            return;
        if (!s_gate_enter(self->shared)) {
            s_fail_busy(call);
            return;
        }
        bool match = crypto_pwhash_str_verify(user.password_hash, current, current_len) == 0;
        s_gate_leave(self->shared);
        if (!match) {
            call_fail(call, ERR_INVALID_CREDENTIALS, "the current password is wrong");
            return;
        }
        if (!new_hash[0] && s_hash(self, call, password, password_len, new_hash) != 1)
            return;
        char verified[USER_HASH_MAX + 1];
        memcpy(verified, user.password_hash, sizeof verified);
        patch.password_hash = new_hash;
        patch.expected_hash = verified;
        store_status_t status = user_store_patch(self->store, who.sub, &patch, &user);
        if (status == STORE_CONFLICT)
            continue;
        if (s_store_ok(call, status))
            s_reply_user(call, &user);
        return;
    }
}

static void s_list(call_t *call, void *state)
{
    users_state_t *self = state;
    auth_identity_t who;
    if (!auth_require_admin(self->verifier, call, &who))
        return;
    int64_t limit = 20;
    const char *cursor = NULL;
    size_t cursor_len = 0;
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, 100, &limit);
    call_arg_str(call, "cursor", ARG_OPTIONAL, USER_ID_MAX, &cursor, &cursor_len);
    if (!call_args_ok(call))
        return;
    char after[USER_ID_MAX + 1] = "";
    if (cursor)
        call_copy_text(after, sizeof after, cursor, cursor_len);
    user_record_t users[101];
    int count = 0;
    if (!s_store_ok(call, user_store_list(self->store, after, (int)limit + 1, users, &count)))
        return;
    bool more = count > limit;
    if (more)
        count = (int)limit;
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 2);
    mp_pack_str(pk, "items");
    msgpack_pack_array(pk, (size_t)count);
    for (int i = 0; i < count; i++)
        s_pack_user(pk, &users[i]);
    mp_pack_str(pk, "next_cursor");
    if (more)
        mp_pack_str(pk, users[count - 1].id);
    else
        msgpack_pack_nil(pk);
}

static void s_set_role(call_t *call, void *state)
{
    users_state_t *self = state;
    auth_identity_t who;
    if (!auth_require_admin(self->verifier, call, &who))
        return;
    const char *id, *role;
    size_t id_len, role_len;
    call_arg_str(call, "id", ARG_REQUIRED, USER_ID_MAX, &id, &id_len);
    if (call_arg_str(call, "role", ARG_REQUIRED, USER_ROLE_MAX, &role, &role_len) &&
        !(role_len == 8 && memcmp(role, "customer", 8) == 0) &&
        !(role_len == 5 && memcmp(role, "admin", 5) == 0))
        call_arg_invalid(call, "role", "must be customer or admin");
    if (!call_args_ok(call))
        return;
    char key[USER_ID_MAX + 1], new_role[USER_ROLE_MAX + 1];
    call_copy_text(key, sizeof key, id, id_len);
    call_copy_text(new_role, sizeof new_role, role, role_len);
    /* The role alone: the store changes it in the account as it is now. */
    user_record_t user;
    if (s_store_ok(call,
                   user_store_patch(self->store, key, &(user_patch_t){.role = new_role}, &user)))
        s_reply_user(call, &user);
}

static const worker_op_t s_ops[] = {
    {"auth.register", s_register},   {"auth.login", s_login},
    {"auth.refresh", s_refresh},     {"auth.logout", s_logout},
    {"auth.jwks", s_jwks},           {"user.me", s_me},
    {"user.update_me", s_update_me}, {"user.list", s_list},
    {"user.set_role", s_set_role},   {NULL, NULL},
};

const worker_op_t *users_ops(bool with_test_ops)
{
    (void)with_test_ops;
    return s_ops;
}

int users_create_admin(users_shared_t *shared, const char *email, const char *password,
                       const char *name, char *err, size_t errlen)
{
    char normal[USER_EMAIL_MAX + 64];
    snprintf(normal, sizeof normal, "%s", email);
    if (!users_email_normalise(normal)) {
        snprintf(err, errlen, "not a valid email address");
        return -1;
    }
    if (s_utf8_chars(password, strlen(password)) < PASSWORD_MIN_CHARS) {
        snprintf(err, errlen, "the password must have at least 8 characters");
        return -1;
    }
    user_store_t *store = s_store_open(shared, err, errlen);
    if (!store)
        return -1;
    int result = -1;
    user_record_t user = {0};
    store_status_t status = user_store_get_by_email(store, normal, &user);
    if (status == STORE_OK) {
        result = 1;
        goto cleanup;
    }
    if (status != STORE_NOT_FOUND) {
        snprintf(err, errlen, "the account database is not reachable");
        goto cleanup;
    }
    user_store_new_id(user.id);
    call_copy_text(user.email, sizeof user.email, normal, strlen(normal)); /* normalised: fits */
    snprintf(user.name, sizeof user.name, "%s", name && *name ? name : "Administrator");
    snprintf(user.role, sizeof user.role, "admin");
    user.created_at_ms = call_now_ms();
    if (crypto_pwhash_str(user.password_hash, password, strlen(password),
                          crypto_pwhash_OPSLIMIT_INTERACTIVE,
                          crypto_pwhash_MEMLIMIT_INTERACTIVE) != 0) {
        snprintf(err, errlen, "cannot hash the password");
        goto cleanup;
    }
    status = user_store_create(store, &user);
    if (status == STORE_OK)
        result = 0;
    else if (status == STORE_EXISTS)
        result = 1;
    else
        snprintf(err, errlen, "cannot store the account");
cleanup:
    user_store_close(&store);
    return result;
}

int users_find_by_email(users_shared_t *shared, const char *email, char *id, size_t id_size,
                        char *err, size_t errlen)
{
    char normal[USER_EMAIL_MAX + 64];
    snprintf(normal, sizeof normal, "%s", email);
    if (!users_email_normalise(normal))
        return 0; /* no account can have it */
    user_store_t *store = s_store_open(shared, err, errlen);
    if (!store)
        return -1;
    user_record_t user = {0};
    store_status_t status = user_store_get_by_email(store, normal, &user);
    int result = -1;
    if (status == STORE_OK) {
        snprintf(id, id_size, "%s", user.id);
        result = 1;
    } else if (status == STORE_NOT_FOUND)
        result = 0;
    else
        snprintf(err, errlen, "the account database is not reachable");
    sodium_memzero(&user, sizeof user); /* it holds the password hash */
    user_store_close(&store);
    return result;
}

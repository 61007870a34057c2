/*  users.h - the `users` service: accounts, login, tokens, roles.
 *
 *  Ops (protocol/SPEC.md has arguments and results):
 *    auth.register auth.login auth.refresh auth.logout auth.jwks
 *    user.me user.update_me user.list user.set_role
 *
 *  Process-wide state (users_shared_t, made once by retaild): the users
 *  LMDB environment (accounts when no PostgreSQL DSN is given; refresh
 *  tokens and login-failure windows always), the JWT key pair, and the
 *  gate that bounds concurrent Argon2id hashing. Each worker has its own
 *  store handle (its own PostgreSQL connection), token signer and token
 *  verifier, made in its own thread by users_state_new.
 *
 *  Argon2id takes about 100 ms and 64 MiB per hash, on purpose. At most
 *  `hash_slots` hashes run at once (one per core), at most `hash_slots`
 *  more wait; beyond that a login, registration or password change is
 *  answered unavailable with Retry-After 1 instead of occupying a worker.
 *  Since the pool has more workers than the gate admits, the fast ops
 *  (me, refresh, jwks, lists) always find a free worker.
 */
#ifndef RETAIL_USERS_H
#define RETAIL_USERS_H

#include "actors/service.h"
#include "actors/worker.h"
#include "storage/users/user_store.h"

typedef struct users_shared_t users_shared_t;

typedef struct {
    const char *data_dir; /* LMDB under data_dir/users */
    const char *keys_dir; /* jwt.key.pem, jwt.pub.pem */
    const char *pg_dsn;   /* NULL or "": accounts in LMDB */
    int hash_slots;       /* concurrent Argon2id hashes; 0: number of cores */
    int token_ttl_s;      /* access token lifetime; 0: 900 */
    int refresh_ttl_s;    /* refresh token lifetime; 0: 30 days */
    int login_limit;      /* failed logins per email per window; 0: 5 */
    int login_ip_limit;   /* failed logins per client address per window; 0: 20 */
    int login_window_s;   /* 0: 900 */
} users_config_t;

/* Opens the environment, makes the key pair if missing. NULL on error
 * (reason in err). */
users_shared_t *users_shared_new(const users_config_t *config, char *err, size_t errlen);
void users_shared_destroy(users_shared_t **self_p);

/* How many requests users workers can hash at once plus wait for: retaild
 * adds this many workers to the users pool so fast ops always find one. */
int users_shared_hash_admission(const users_shared_t *self);

/* Worker state, for worker_config_t.state_new / state_destroy (shared is
 * the users_shared_t). */
void *users_state_new(void *shared);
void users_state_destroy(void **state);

const worker_op_t *users_ops(bool with_test_ops);

/* The service's definition (service.c): what retaild runs and the bridge
 * routes; its settings are users_settings_t (settings.h). */
extern const service_def_t users_service;

/* Creates an admin (email, password, name) unless the email exists: used
 * at start (users_service, from its admin_email / admin_password) and by
 * `retailctl user create --admin`. 0 created, 1 existed, -1 error (err). */
int users_create_admin(users_shared_t *shared, const char *email, const char *password,
                       const char *name, char *err, size_t errlen);

/* Looks an account up by email, straight in the store (for `retailctl
 * check-record`, which runs where the accounts are). 1 found (its id in
 * id), 0 not found,
 * -1 error (err). */
int users_find_by_email(users_shared_t *shared, const char *email, char *id, size_t id_size,
                        char *err, size_t errlen);

/* Normalises an email in place (trim, lower-case ASCII) and checks it;
 * false when it is not a plausible address. */
bool users_email_normalise(char *email);

#endif

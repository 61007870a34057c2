/*  sessions.c - refresh-token families and login-failure windows on LMDB.
 *
 *  Databases (names in sessions_lmdb_names, in this order):
 *    refresh:   token hash (32 bytes) -> refresh_rec_t
 *    families:  family id (16 bytes)  -> one byte, 1 = revoked
 *    failures:  key (text)            -> failure_rec_t
 *  Records are fixed-size structs in the machine's byte order: the
 *  environment never leaves the machine that wrote it.
 *
 *  Writes go through kv_write (kv.h, group commit): each public write
 *  checks its arguments, then hands a function of the transaction
 *  (s_*_txn, with a small context struct) to kv_write, which may run it
 *  on another handle's thread, in its own nested transaction inside one
 *  transaction shared with concurrent writes, all made durable by one
 *  commit; the caller returns only once that commit is on disk. Such a
 *  function therefore touches only the transaction and its context (the
 *  only handle fields it reads, the dbis, never change after open), and
 *  returns 0 to keep its changes, anything else to have them undone.
 *  Refusals (unknown token, wrong owner) change nothing, so they return
 *  nonzero; a rotation of a spent token keeps the family's revocation and
 *  reports ROTATE_REUSED through its context.
 *
 *  Reads that decide a write (rotation, revocation, a failure count)
 *  happen in the same transaction as the write, so two refreshes racing
 *  with one token cannot both succeed: writes run one after another, also
 *  within a batch (a nested transaction sees those committed before it in
 *  the batch), and the second sees the token already rotated (and revokes
 *  the family, as it should).
 *
 *  A write that finds no room (the disk or the map full, kv.h) changes
 *  nothing and answers STORE_NO_SPACE (ROTATE_NO_SPACE for a rotation):
 *  the token presented stays valid, so the client may refresh again once
 *  space is freed.
 */
#include "storage/users/sessions.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

const char *const sessions_lmdb_names[SESSIONS_LMDB_DBS] = {"refresh", "families", "failures"};

enum { DB_REFRESH, DB_FAMILIES, DB_FAILURES };
enum { STATE_ACTIVE = 0, STATE_ROTATED = 1 };

typedef struct {
    uint8_t state;
    uint8_t family[SESSION_FAMILY_BYTES];
    int64_t expires_at;
    char user_id[USER_ID_MAX + 1];
} refresh_rec_t;

typedef struct {
    int64_t window_start;
    uint32_t count;
} failure_rec_t;

struct sessions_t {
    kv_t *env;
    MDB_dbi dbi[SESSIONS_LMDB_DBS];
};

sessions_t *sessions_open(kv_t *env, int first_dbi_index)
{
    sessions_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->env = env;
    for (int i = 0; i < SESSIONS_LMDB_DBS; i++)
        self->dbi[i] = kv_dbi(env, first_dbi_index + i);
    return self;
}

void sessions_close(sessions_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

/* A write's outcome: fn's status (STORE_OK = 0 = keep), or kv_write's
 * error as a status (STORE_NO_SPACE when it found no room, kv.h). */
static store_status_t s_write(sessions_t *self, kv_write_fn *fn, void *arg)
{
    int result = STORE_ERROR;
    int rc = kv_write(self->env, fn, arg, &result);
    return rc == 0 ? (store_status_t)result : kv_status(rc);
}

typedef struct {
    const sessions_t *self;
    const uint8_t *hash;
    const refresh_rec_t *rec;
    bool new_family;
} s_issue_t;

static int s_issue_txn(MDB_txn *txn, void *arg)
{
    const s_issue_t *w = arg;
    MDB_val key = {SESSION_HASH_BYTES, (void *)w->hash};
    MDB_val val = {sizeof *w->rec, (void *)w->rec};
    int rc = mdb_put(txn, w->self->dbi[DB_REFRESH], &key, &val, MDB_NOOVERWRITE);
    if (rc == 0 && w->new_family) {
        uint8_t revoked = 0;
        MDB_val fkey = {SESSION_FAMILY_BYTES, (void *)w->rec->family};
        MDB_val fval = {1, &revoked};
        rc = mdb_put(txn, w->self->dbi[DB_FAMILIES], &fkey, &fval, 0);
    }
    return kv_status(rc);
}

store_status_t sessions_issue(sessions_t *self, const uint8_t hash[SESSION_HASH_BYTES],
                              const char *user_id, const uint8_t *family, int64_t expires_at)
{
    refresh_rec_t rec = {.state = STATE_ACTIVE, .expires_at = expires_at};
    if (strlen(user_id) > USER_ID_MAX)
        return STORE_ERROR;
    snprintf(rec.user_id, sizeof rec.user_id, "%s", user_id);
    if (family)
        memcpy(rec.family, family, SESSION_FAMILY_BYTES);
    else
        randombytes_buf(rec.family, SESSION_FAMILY_BYTES);
    return s_write(self, s_issue_txn,
                   &(s_issue_t){.self = self, .hash = hash, .rec = &rec, .new_family = !family});
}

/* Reads a token's record inside txn; false when absent or malformed. */
static bool s_get_refresh(const sessions_t *self, MDB_txn *txn, const uint8_t *hash,
                          refresh_rec_t *rec)
{
    MDB_val key = {SESSION_HASH_BYTES, (void *)hash}, val;
    if (mdb_get(txn, self->dbi[DB_REFRESH], &key, &val) != 0 || val.mv_size != sizeof *rec)
        return false;
    memcpy(rec, val.mv_data, sizeof *rec);
    rec->user_id[USER_ID_MAX] = '\0';
    return true;
}

static bool s_family_revoked(const sessions_t *self, MDB_txn *txn, const uint8_t *family)
{
    MDB_val key = {SESSION_FAMILY_BYTES, (void *)family}, val;
    if (mdb_get(txn, self->dbi[DB_FAMILIES], &key, &val) != 0 || val.mv_size != 1)
        return true; /* no family record: treat as revoked */
    return *(uint8_t *)val.mv_data != 0;
}

static int s_revoke_family(const sessions_t *self, MDB_txn *txn, const uint8_t *family)
{
    uint8_t revoked = 1;
    MDB_val key = {SESSION_FAMILY_BYTES, (void *)family};
    MDB_val val = {1, &revoked};
    return mdb_put(txn, self->dbi[DB_FAMILIES], &key, &val, 0);
}

typedef struct {
    const sessions_t *self;
    const uint8_t *old_hash, *new_hash;
    int64_t now, new_expires_at;
    char *user_id;          /* the caller's, USER_ID_MAX + 1 */
    rotate_result_t result; /* set by s_rotate_txn */
} s_rotate_t;

/* Keeps its writes (returns 0) for ROTATE_OK and for ROTATE_REUSED,
 * whose revocation of the family must stay: w->result tells them apart.
 * Every other outcome changed nothing and is undone. */
static int s_rotate_txn(MDB_txn *txn, void *arg)
{
    s_rotate_t *w = arg;
    const sessions_t *self = w->self;
    refresh_rec_t rec;
    if (!s_get_refresh(self, txn, w->old_hash, &rec)) {
        w->result = ROTATE_UNKNOWN;
        return -1;
    }
    snprintf(w->user_id, USER_ID_MAX + 1, "%s", rec.user_id);
    if (s_family_revoked(self, txn, rec.family)) {
        w->result = ROTATE_REVOKED;
        return -1;
    }
    if (rec.state == STATE_ROTATED) {
        /* Replay of a spent token: end the whole family. */
        int rc = s_revoke_family(self, txn, rec.family);
        if (rc != 0) {
            w->result = kv_no_space(rc) ? ROTATE_NO_SPACE : ROTATE_FAILED;
            return -1;
        }
        w->result = ROTATE_REUSED;
        return 0;
    }
    if (rec.expires_at <= w->now) {
        w->result = ROTATE_EXPIRED;
        return -1;
    }
    rec.state = STATE_ROTATED;
    MDB_val key = {SESSION_HASH_BYTES, (void *)w->old_hash};
    MDB_val val = {sizeof rec, &rec};
    refresh_rec_t next = rec;
    next.state = STATE_ACTIVE;
    next.expires_at = w->new_expires_at;
    MDB_val nkey = {SESSION_HASH_BYTES, (void *)w->new_hash};
    MDB_val nval = {sizeof next, &next};
    int rc = mdb_put(txn, self->dbi[DB_REFRESH], &key, &val, 0);
    if (rc == 0)
        rc = mdb_put(txn, self->dbi[DB_REFRESH], &nkey, &nval, MDB_NOOVERWRITE);
    if (rc != 0) {
        w->result = kv_no_space(rc) ? ROTATE_NO_SPACE : ROTATE_FAILED;
        return -1;
    }
    w->result = ROTATE_OK;
    return 0;
}

rotate_result_t sessions_rotate(sessions_t *self, const uint8_t old_hash[SESSION_HASH_BYTES],
                                const uint8_t new_hash[SESSION_HASH_BYTES], int64_t now,
                                int64_t new_expires_at, char user_id[USER_ID_MAX + 1])
{
    s_rotate_t w = {.self = self,
                    .old_hash = old_hash,
                    .new_hash = new_hash,
                    .now = now,
                    .new_expires_at = new_expires_at,
                    .user_id = user_id,
                    .result = ROTATE_FAILED};
    int result;
    /* A failed commit loses the REUSED revocation too: FAILED (NO_SPACE
     * for want of room), as before group commit. */
    int rc = kv_write(self->env, s_rotate_txn, &w, &result);
    if (rc != 0)
        return kv_no_space(rc) ? ROTATE_NO_SPACE : ROTATE_FAILED;
    return w.result;
}

typedef struct {
    const sessions_t *self;
    const uint8_t *hash;
    const char *owner;
} s_revoke_t;

static int s_revoke_txn(MDB_txn *txn, void *arg)
{
    const s_revoke_t *w = arg;
    refresh_rec_t rec;
    if (!s_get_refresh(w->self, txn, w->hash, &rec) || strcmp(rec.user_id, w->owner) != 0)
        return STORE_NOT_FOUND;
    return kv_status(s_revoke_family(w->self, txn, rec.family));
}

store_status_t sessions_revoke(sessions_t *self, const uint8_t hash[SESSION_HASH_BYTES],
                               const char *owner)
{
    return s_write(self, s_revoke_txn, &(s_revoke_t){.self = self, .hash = hash, .owner = owner});
}

/* ---- failed logins ---- */

static bool s_get_failures(const sessions_t *self, MDB_txn *txn, const char *key,
                           failure_rec_t *rec)
{
    MDB_val k = {strlen(key), (void *)key}, v;
    if (mdb_get(txn, self->dbi[DB_FAILURES], &k, &v) != 0 || v.mv_size != sizeof *rec)
        return false;
    memcpy(rec, v.mv_data, sizeof *rec);
    return true;
}

int sessions_login_blocked(sessions_t *self, const char *key, int64_t now, int limit, int window_s)
{
    MDB_txn *txn;
    if (strlen(key) == 0 || strlen(key) > 500 ||
        mdb_txn_begin(kv_mdb(self->env), NULL, MDB_RDONLY, &txn) != 0)
        return 0;
    failure_rec_t rec;
    int wait = 0;
    if (s_get_failures(self, txn, key, &rec) && now < rec.window_start + window_s &&
        rec.count >= (uint32_t)limit)
        wait = (int)(rec.window_start + window_s - now);
    mdb_txn_abort(txn);
    return wait;
}

typedef struct {
    const sessions_t *self;
    const char *key;
    int64_t now;
    int window_s;
} s_failure_t;

static int s_login_failed_txn(MDB_txn *txn, void *arg)
{
    const s_failure_t *w = arg;
    failure_rec_t rec;
    /* Read here, in the write: concurrent failures of one key, even in
     * one batch, each count on top of the one before. */
    if (!s_get_failures(w->self, txn, w->key, &rec) || w->now >= rec.window_start + w->window_s)
        rec = (failure_rec_t){.window_start = w->now, .count = 0};
    rec.count++;
    MDB_val k = {strlen(w->key), (void *)w->key};
    MDB_val v = {sizeof rec, &rec};
    return kv_status(mdb_put(txn, w->self->dbi[DB_FAILURES], &k, &v, 0));
}

store_status_t sessions_login_failed(sessions_t *self, const char *key, int64_t now, int window_s)
{
    if (strlen(key) == 0 || strlen(key) > 500)
        return STORE_ERROR;
    return s_write(self, s_login_failed_txn,
                   &(s_failure_t){.self = self, .key = key, .now = now, .window_s = window_s});
}

static int s_login_clear_txn(MDB_txn *txn, void *arg)
{
    const s_failure_t *w = arg;
    MDB_val k = {strlen(w->key), (void *)w->key};
    int rc = mdb_del(txn, w->self->dbi[DB_FAILURES], &k, NULL);
    return rc == MDB_NOTFOUND ? STORE_OK : kv_status(rc);
}

store_status_t sessions_login_clear(sessions_t *self, const char *key)
{
    if (strlen(key) == 0 || strlen(key) > 500)
        return STORE_ERROR;
    return s_write(self, s_login_clear_txn, &(s_failure_t){.self = self, .key = key});
}

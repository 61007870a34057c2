/*  sessions.c - refresh-token families and login-failure windows on LMDB.
 *
 *  Databases (names in sessions_lmdb_names, in this order):
 *    refresh:   token hash (32 bytes) -> refresh_rec_t
 *    families:  family id (16 bytes)  -> one byte, 1 = revoked
 *    failures:  key (text)            -> failure_rec_t
 *  Records are fixed-size structs in the machine's byte order: the
 *  environment never leaves the machine that wrote it.
 *
 *  Reads that decide a write (rotation, revocation) happen in the same
 *  write transaction as the write, so two refreshes racing with one token
 *  cannot both succeed: LMDB serialises writers, and the second sees the
 *  token already rotated (and revokes the family, as it should).
 */
#include "storage/sessions.h"

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

static store_status_t s_commit(MDB_txn *txn)
{
    int rc = mdb_txn_commit(txn);
    if (rc != 0)
        return STORE_ERROR;
    return STORE_OK;
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

    MDB_txn *txn;
    if (mdb_txn_begin(kv_mdb(self->env), NULL, 0, &txn) != 0)
        return STORE_ERROR;
    MDB_val key = {SESSION_HASH_BYTES, (void *)hash};
    MDB_val val = {sizeof rec, &rec};
    int rc = mdb_put(txn, self->dbi[DB_REFRESH], &key, &val, MDB_NOOVERWRITE);
    if (rc == 0 && !family) {
        uint8_t revoked = 0;
        MDB_val fkey = {SESSION_FAMILY_BYTES, rec.family};
        MDB_val fval = {1, &revoked};
        rc = mdb_put(txn, self->dbi[DB_FAMILIES], &fkey, &fval, 0);
    }
    if (rc != 0) {
        mdb_txn_abort(txn);
        return STORE_ERROR;
    }
    return s_commit(txn);
}

/* Reads a token's record inside txn; false when absent or malformed. */
static bool s_get_refresh(sessions_t *self, MDB_txn *txn, const uint8_t *hash, refresh_rec_t *rec)
{
    MDB_val key = {SESSION_HASH_BYTES, (void *)hash}, val;
    if (mdb_get(txn, self->dbi[DB_REFRESH], &key, &val) != 0 || val.mv_size != sizeof *rec)
        return false;
    memcpy(rec, val.mv_data, sizeof *rec);
    rec->user_id[USER_ID_MAX] = '\0';
    return true;
}

static bool s_family_revoked(sessions_t *self, MDB_txn *txn, const uint8_t *family)
{
    MDB_val key = {SESSION_FAMILY_BYTES, (void *)family}, val;
    if (mdb_get(txn, self->dbi[DB_FAMILIES], &key, &val) != 0 || val.mv_size != 1)
        return true; /* no family record: treat as revoked */
    return *(uint8_t *)val.mv_data != 0;
}

static int s_revoke_family(sessions_t *self, MDB_txn *txn, const uint8_t *family)
{
    uint8_t revoked = 1;
    MDB_val key = {SESSION_FAMILY_BYTES, (void *)family};
    MDB_val val = {1, &revoked};
    return mdb_put(txn, self->dbi[DB_FAMILIES], &key, &val, 0);
}

rotate_result_t sessions_rotate(sessions_t *self, const uint8_t old_hash[SESSION_HASH_BYTES],
                                const uint8_t new_hash[SESSION_HASH_BYTES], int64_t now,
                                int64_t new_expires_at, char user_id[USER_ID_MAX + 1])
{
    MDB_txn *txn;
    if (mdb_txn_begin(kv_mdb(self->env), NULL, 0, &txn) != 0)
        return ROTATE_FAILED;
    rotate_result_t result;
    refresh_rec_t rec;
    if (!s_get_refresh(self, txn, old_hash, &rec)) {
        result = ROTATE_UNKNOWN;
        goto abort;
    }
    snprintf(user_id, USER_ID_MAX + 1, "%s", rec.user_id);
    if (s_family_revoked(self, txn, rec.family)) {
        result = ROTATE_REVOKED;
        goto abort;
    }
    if (rec.state == STATE_ROTATED) {
        /* Replay of a spent token: end the whole family. */
        if (s_revoke_family(self, txn, rec.family) != 0) {
            result = ROTATE_FAILED;
            goto abort;
        }
        return mdb_txn_commit(txn) == 0 ? ROTATE_REUSED : ROTATE_FAILED;
    }
    if (rec.expires_at <= now) {
        result = ROTATE_EXPIRED;
        goto abort;
    }
    rec.state = STATE_ROTATED;
    MDB_val key = {SESSION_HASH_BYTES, (void *)old_hash};
    MDB_val val = {sizeof rec, &rec};
    refresh_rec_t next = rec;
    next.state = STATE_ACTIVE;
    next.expires_at = new_expires_at;
    MDB_val nkey = {SESSION_HASH_BYTES, (void *)new_hash};
    MDB_val nval = {sizeof next, &next};
    if (mdb_put(txn, self->dbi[DB_REFRESH], &key, &val, 0) != 0 ||
        mdb_put(txn, self->dbi[DB_REFRESH], &nkey, &nval, MDB_NOOVERWRITE) != 0) {
        result = ROTATE_FAILED;
        goto abort;
    }
    return mdb_txn_commit(txn) == 0 ? ROTATE_OK : ROTATE_FAILED;
abort:
    mdb_txn_abort(txn);
    return result;
}

store_status_t sessions_revoke(sessions_t *self, const uint8_t hash[SESSION_HASH_BYTES],
                               const char *owner)
{
    MDB_txn *txn;
    if (mdb_txn_begin(kv_mdb(self->env), NULL, 0, &txn) != 0)
        return STORE_ERROR;
    refresh_rec_t rec;
    if (!s_get_refresh(self, txn, hash, &rec) || strcmp(rec.user_id, owner) != 0) {
        mdb_txn_abort(txn);
        return STORE_NOT_FOUND;
    }
    if (s_revoke_family(self, txn, rec.family) != 0) {
        mdb_txn_abort(txn);
        return STORE_ERROR;
    }
    return s_commit(txn);
}

/* ---- failed logins ---- */

static bool s_get_failures(sessions_t *self, MDB_txn *txn, const char *key, failure_rec_t *rec)
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

store_status_t sessions_login_failed(sessions_t *self, const char *key, int64_t now, int window_s)
{
    if (strlen(key) == 0 || strlen(key) > 500)
        return STORE_ERROR;
    MDB_txn *txn;
    if (mdb_txn_begin(kv_mdb(self->env), NULL, 0, &txn) != 0)
        return STORE_ERROR;
    failure_rec_t rec;
    if (!s_get_failures(self, txn, key, &rec) || now >= rec.window_start + window_s)
        rec = (failure_rec_t){.window_start = now, .count = 0};
    rec.count++;
    MDB_val k = {strlen(key), (void *)key};
    MDB_val v = {sizeof rec, &rec};
    if (mdb_put(txn, self->dbi[DB_FAILURES], &k, &v, 0) != 0) {
        mdb_txn_abort(txn);
        return STORE_ERROR;
    }
    return s_commit(txn);
}

store_status_t sessions_login_clear(sessions_t *self, const char *key)
{
    MDB_txn *txn;
    if (strlen(key) == 0 || strlen(key) > 500 ||
        mdb_txn_begin(kv_mdb(self->env), NULL, 0, &txn) != 0)
        return STORE_ERROR;
    MDB_val k = {strlen(key), (void *)key};
    int rc = mdb_del(txn, self->dbi[DB_FAILURES], &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return STORE_ERROR;
    }
    return s_commit(txn);
}

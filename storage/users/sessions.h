/*  sessions.h - refresh tokens, their families, failed-login counters.
 *
 *  Hot state of the users service, always in its LMDB environment (also
 *  when accounts live in PostgreSQL). Only hashes of refresh tokens are
 *  stored. A login starts a family; each refresh rotates the presented
 *  token (it becomes "rotated") and issues the next one in the same
 *  family. Presenting a rotated token again means it was stolen or
 *  replayed: the whole family is revoked, so the thief's and the owner's
 *  tokens stop working together. Logout revokes the family.
 *
 *  Every change is one write through kv_write (kv.h): atomic, and durable
 *  on return. Concurrent changes from the handles of several threads may
 *  share one durable commit (group commit); each is acknowledged only once
 *  that commit is on disk. A sessions_t is used by one thread at a time;
 *  the kv_t is shared.
 */
#ifndef RETAIL_SESSIONS_H
#define RETAIL_SESSIONS_H

#include <stdint.h>

#include "storage/kv.h"
#include "storage/users/user_store.h"

#define SESSIONS_LMDB_DBS 3
extern const char *const sessions_lmdb_names[SESSIONS_LMDB_DBS];

#define SESSION_HASH_BYTES 32
#define SESSION_FAMILY_BYTES 16

typedef struct sessions_t sessions_t;

sessions_t *sessions_open(kv_t *env, int first_dbi_index);
void sessions_close(sessions_t **self_p);

/* Stores a new refresh token hash for user_id in a new family (family is
 * NULL) or in the given one; expires_at in unix seconds. */
store_status_t sessions_issue(sessions_t *self, const uint8_t hash[SESSION_HASH_BYTES],
                              const char *user_id, const uint8_t *family, int64_t expires_at);

typedef enum {
    ROTATE_OK,      /* old rotated, new stored in its family; user_id set */
    ROTATE_UNKNOWN, /* no such token */
    ROTATE_EXPIRED,
    ROTATE_REVOKED, /* its family was revoked (logout, or reuse earlier) */
    ROTATE_REUSED,  /* already rotated: the family is revoked now */
    ROTATE_FAILED,  /* storage error */
    /* no room for the write (kv.h): nothing changed, the old token still works */
    ROTATE_NO_SPACE,
} rotate_result_t;

/* Rotates old into new in one transaction (see above). */
rotate_result_t sessions_rotate(sessions_t *self, const uint8_t old_hash[SESSION_HASH_BYTES],
                                const uint8_t new_hash[SESSION_HASH_BYTES], int64_t now,
                                int64_t new_expires_at, char user_id[USER_ID_MAX + 1]);

/* Revokes the family of a token that belongs to owner (logout). STORE_OK,
 * or STORE_NOT_FOUND when there is no such token for that owner. */
store_status_t sessions_revoke(sessions_t *self, const uint8_t hash[SESSION_HASH_BYTES],
                               const char *owner);

/* Failed logins in a fixed window per key ("email:...", "ip:..."). Returns
 * the seconds to wait when key has `limit` failures or more in the current
 * window, else 0. */
int sessions_login_blocked(sessions_t *self, const char *key, int64_t now, int limit, int window_s);
/* Counts one failure for key. */
store_status_t sessions_login_failed(sessions_t *self, const char *key, int64_t now, int window_s);
/* Forgets the failures of key (after a successful login). */
store_status_t sessions_login_clear(sessions_t *self, const char *key);

#endif

/*  user_store.h - user accounts behind one interface, two implementations.
 *
 *  PostgreSQL (libpq, prepared statements only; a connection per store
 *  handle, so one per actor) when RETAIL_PG_DSN is set; LMDB otherwise
 *  (the embedded default). The same contract tests run against both
 *  (tests/unit/test_user_store.c).
 *
 *  A store handle is used by one thread at a time (one per worker). The
 *  LMDB implementation shares the domain's kv_t between handles.
 *
 *  Emails are stored as given: callers normalise them first (trimmed,
 *  lower-cased). Uniqueness of email is enforced by the store (PostgreSQL:
 *  a unique index; LMDB: the email index, in the same write transaction).
 *
 *  Ids are "u" + the scheme of storage/ids.h: unique, opaque to clients,
 *  and in creation order (to the microsecond), so listing by id is
 *  listing by age and a cursor is the last id seen.
 *
 *  Updates are patches applied by the store (user_store_patch), never a
 *  whole record read earlier and written back: that would undo whatever
 *  committed in between (an admin's role change under a user's rename).
 *
 *  Both implementations answer alike (the contract tests): a malformed
 *  record (a field not terminated within its array, an empty id, email or
 *  hash, a role other than customer/admin, a negative created_at) is
 *  STORE_ERROR; so is a create whose id exists (the id is checked before
 *  the email). A lookup by an empty or over-long key is STORE_NOT_FOUND.
 */
#ifndef RETAIL_USER_STORE_H
#define RETAIL_USER_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "storage/kv.h"
#include "storage/status.h"

#define USER_ID_MAX 32
#define USER_EMAIL_MAX 254
#define USER_NAME_MAX 200
#define USER_ROLE_MAX 16
#define USER_HASH_MAX 128 /* crypto_pwhash_STRBYTES */

typedef struct {
    char id[USER_ID_MAX + 1];
    char email[USER_EMAIL_MAX + 1];
    char name[USER_NAME_MAX + 1];
    char role[USER_ROLE_MAX + 1]; /* "customer" or "admin" */
    char password_hash[USER_HASH_MAX + 1];
    int64_t created_at_ms; /* unix time in milliseconds */
} user_record_t;

typedef struct user_store_t user_store_t;

/* The databases the LMDB store needs in the users environment; pass them
 * (with any others) to kv_open, and their first index to open_lmdb. */
#define USER_STORE_LMDB_DBS 2
extern const char *const user_store_lmdb_names[USER_STORE_LMDB_DBS];

user_store_t *user_store_open_lmdb(kv_t *env, int first_dbi_index);

/* Connects to PostgreSQL and creates or migrates the schema. Returns a
 * handle even when the server is down (calls then answer
 * STORE_UNAVAILABLE and reconnect); NULL only for a malformed DSN or out
 * of memory, with a message in err. */
user_store_t *user_store_open_pg(const char *dsn, char *err, size_t errlen);

void user_store_close(user_store_t **self_p);

/* Makes a new user id (see above) into out[USER_ID_MAX + 1]. */
void user_store_new_id(char *out);

store_status_t user_store_create(user_store_t *self, const user_record_t *user);
store_status_t user_store_get_by_id(user_store_t *self, const char *id, user_record_t *out);
store_status_t user_store_get_by_email(user_store_t *self, const char *email, user_record_t *out);
/* A change of some fields of one account; NULL members stay as stored.
 * Email and created_at never change. */
typedef struct {
    const char *name;
    const char *role; /* "customer" or "admin" */
    const char *password_hash;
    /* With password_hash, NULL or the hash the caller checked the current
     * password against: then the change is made only while that is still
     * the stored hash (or the stored hash is password_hash already, which
     * makes a retry of the same change succeed), else STORE_CONFLICT and
     * nothing changes. A compare-and-set: the slow verify runs before the
     * write, and a password changed meanwhile is not overwritten. */
    const char *expected_hash;
} user_patch_t;

/* Applies patch to the user with this id atomically: the store reads the
 * account and writes the fields given in one step (LMDB: one write
 * transaction; PostgreSQL: one UPDATE of the current row), so concurrent
 * patches of other fields (a rename, a role change) are never undone.
 * out (may be NULL) gets the account as written. STORE_NOT_FOUND when
 * there is no such user; STORE_ERROR for a malformed patch (a bad role,
 * an over-long or empty-hash field, expected_hash without password_hash). */
store_status_t user_store_patch(user_store_t *self, const char *id, const user_patch_t *patch,
                                user_record_t *out);
/* Up to limit users with id > after (after "" or NULL = from the start),
 * in id order (bytewise), into out[limit] (caller's array); *count
 * receives how many (0 on any error). limit 0 is an empty page. */
store_status_t user_store_list(user_store_t *self, const char *after, int limit, user_record_t *out,
                               int *count);

/* STORE_OK when the store can be reached now, else STORE_UNAVAILABLE;
 * cheap (no round trip while the store is known to be up), so that a
 * caller about to do slow work for a write (an Argon2id hash for a
 * registration) can find an outage first. LMDB: always STORE_OK.
 * PostgreSQL: a session the server has closed (a shutdown, a restart) is
 * noticed without a round trip and replaced by a new one; a session
 * that broke silently (a network cut) is found only by the next call. */
store_status_t user_store_available(user_store_t *self);

#endif

/*  user_store_lmdb.c - the embedded user store: two LMDB databases in the
 *  users environment (kv.h).
 *
 *  "users"          id -> record
 *  "users_by_email" email -> id
 *
 *  Keys are the strings' bytes without a terminator, compared bytewise
 *  (LMDB's default), so the users database is in id order and id order is
 *  creation order (user_store.h): listing is a cursor walk from `after`.
 *
 *  A record is a msgpack map with str keys, read and written by the
 *  record codec (storage/record.h) through the table s_user_fields:
 *      "email": str, "name": str, "role": str, "hash": str,
 *      "created_at": int (unix ms)
 *  The id is the key and is not repeated in the value. A map rather than
 *  a fixed layout because that is how every LMDB value of the project is
 *  stored, and because a later field is then added without rewriting old
 *  records: the codec skips keys it does not know and requires the five
 *  above. A record at most 1 KiB (the longest fields, 254 + 200 + 16 + 128
 *  bytes, take about 650).
 *
 *  Writes (create, patch) go through kv_write (kv.h, group commit): the
 *  public function checks and encodes, then hands a function of the
 *  transaction (s_create_txn, s_patch_txn) to kv_write, which may run it
 *  on another handle's thread, in its own nested transaction inside one
 *  transaction shared with concurrent writes, all made durable by one
 *  commit; the caller returns only once that commit is on disk. Such a
 *  function touches only the transaction and its context (the dbis of the
 *  handle, which never change, and the caller's record), never the
 *  handle's read transaction, and returns STORE_OK (0) to keep its
 *  changes; any other status undoes them alone.
 *
 *  create puts the record and the email index entry, both with
 *  MDB_NOOVERWRITE, in one such write: writes run one after another (also
 *  within a batch, where a nested transaction sees those committed before
 *  it), so of two creates with the same email exactly one is kept and the
 *  other sees MDB_KEYEXIST (STORE_EXISTS, its record undone with it), and
 *  no reader ever sees a user without its index entry or the reverse.
 *
 *  patch reads the record in its write transaction, changes only the
 *  fields given and puts it back; the compare-and-set of a password
 *  change compares the hash read there. Since writes run one at a time,
 *  no other write can come between that read and the put.
 *
 *  Reads: each handle keeps one read-only transaction, reset between calls
 *  and renewed at the start of the next (store_reader_t, storage/reader.h);
 *  a page of users is store_page's walk from `after`.
 *
 *  A write that finds no room (the disk or the map full, storage/kv.h)
 *  is STORE_NO_SPACE, not logged here (the environment logs running out
 *  of room once): nothing of it is stored, the email stays free, and it
 *  succeeds once space is freed.
 */
#include "storage/users/user_store_impl.h"
#include "storage/reader.h"
#include "storage/record.h"

#include <czmq.h>
#include <string.h>

const char *const user_store_lmdb_names[USER_STORE_LMDB_DBS] = {"users", "users_by_email"};

#define S_RECORD_MAX 1024

typedef struct {
    kv_t *kv; /* writes: kv_write */
    MDB_dbi users;
    MDB_dbi by_email;
    store_reader_t reader; /* reset between calls */
} s_lmdb_t;

/* The record's fields (storage/record.h). All are required: every
 * record ever written has the five. */
static const record_field_t s_user_fields[] = {
    RECORD_STR_FIELD(user_record_t, email, "email", RECORD_REQUIRED),
    RECORD_STR_FIELD(user_record_t, name, "name", RECORD_REQUIRED),
    RECORD_STR_FIELD(user_record_t, role, "role", RECORD_REQUIRED),
    RECORD_STR_FIELD(user_record_t, password_hash, "hash", RECORD_REQUIRED),
    RECORD_INT64_FIELD(user_record_t, created_at_ms, "created_at", RECORD_REQUIRED),
};
static const record_table_t s_user_table = RECORD_TABLE(s_user_fields);

/* Encodes everything of user but its id into out; -1 if it does not
 * fit S_RECORD_MAX, which the field limits rule out. */
static int s_encode(const user_record_t *user, mpout_t *out)
{
    return record_pack(&s_user_table, user, out);
}

/* Decodes the record stored under key into *out, which is left as it was
 * unless the record is well-formed (not corruption, nor a value of
 * another program); why not otherwise. */
static record_status_t s_decode(const MDB_val *key, const MDB_val *val, user_record_t *out)
{
    user_record_t user = {0};
    if (!user_store_copy_field(user.id, USER_ID_MAX, key->mv_data, key->mv_size))
        return RECORD_BAD_VALUE;
    record_status_t status = record_decode(&s_user_table, val->mv_data, val->mv_size, &user);
    if (status == RECORD_OK)
        *out = user;
    return status;
}

static MDB_val s_val(const char *s)
{
    return (MDB_val){.mv_size = strlen(s), .mv_data = (void *)s};
}

/* A failed LMDB call as a status: STORE_NO_SPACE (not logged: the
 * environment logs running out of room) or STORE_ERROR (logged). */
static store_status_t s_fail(const char *what, int rc)
{
    if (kv_no_space(rc))
        return STORE_NO_SPACE;
    zsys_error("user_store(lmdb): %s: %s", what, mdb_strerror(rc));
    return STORE_ERROR;
}

/* The user stored under key, within txn. */
static store_status_t s_get(MDB_txn *txn, MDB_dbi dbi, MDB_val *key, user_record_t *out)
{
    MDB_val val;
    int rc = mdb_get(txn, dbi, key, &val);
    if (rc == MDB_NOTFOUND)
        return STORE_NOT_FOUND;
    if (rc != 0)
        return s_fail("mdb_get users", rc);
    record_status_t decoded = s_decode(key, &val, out);
    if (decoded != RECORD_OK) {
        zsys_error("user_store(lmdb): malformed record for %.*s: %s", (int)key->mv_size,
                   (const char *)key->mv_data, record_strerror(decoded));
        return STORE_ERROR;
    }
    return STORE_OK;
}

/* Runs fn(txn, arg) through kv_write: fn's status (STORE_OK = 0 keeps
 * its changes), or STORE_ERROR when the transaction failed
 * (STORE_NO_SPACE when it found no room). */
static store_status_t s_write(s_lmdb_t *self, kv_write_fn *fn, void *arg)
{
    int result = STORE_ERROR;
    int rc = kv_write(self->kv, fn, arg, &result);
    return rc == 0 ? (store_status_t)result : s_fail("write transaction", rc);
}

typedef struct {
    const s_lmdb_t *self;
    const user_record_t *user;
    const mpout_t *buf; /* create: the encoded record */
} s_write_t;

static int s_create_txn(MDB_txn *txn, void *arg)
{
    const s_write_t *w = arg;
    MDB_val email = s_val(w->user->email);
    MDB_val id = s_val(w->user->id);
    MDB_val record = {.mv_size = w->buf->buf.size, .mv_data = w->buf->buf.data};
    /* The id first, so that a create that repeats an existing record is
     * an id collision, as in PostgreSQL (user_store_pg.c). */
    int rc = mdb_put(txn, w->self->users, &id, &record, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        /* Not STORE_EXISTS: the caller would tell a client the email is
         * taken. Ids collide only by a caller reusing a record. */
        zsys_error("user_store(lmdb): create: id %s exists", w->user->id);
        return STORE_ERROR;
    }
    if (rc != 0)
        return s_fail("mdb_put users", rc);
    rc = mdb_put(txn, w->self->by_email, &email, &id, MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST)
        return STORE_EXISTS; /* undone: the record put above goes too */
    if (rc != 0)
        return s_fail("mdb_put users_by_email", rc);
    return STORE_OK;
}

static store_status_t s_create(void *impl, const user_record_t *user)
{
    s_lmdb_t *self = impl;
    mpout_t buf;
    mpout_init(&buf, S_RECORD_MAX);
    store_status_t status = STORE_ERROR;
    if (s_encode(user, &buf) != 0)
        zsys_error("user_store(lmdb): create: record does not encode");
    else
        status = s_write(self, s_create_txn, &(s_write_t){.self = self, .user = user, .buf = &buf});
    mpout_destroy(&buf);
    return status;
}

static store_status_t s_get_by_id(void *impl, const char *id, user_record_t *out)
{
    s_lmdb_t *self = impl;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    MDB_val key = s_val(id);
    store_status_t status = s_get(txn, self->users, &key, out);
    store_reader_end(&self->reader);
    return status;
}

static store_status_t s_get_by_email(void *impl, const char *email, user_record_t *out)
{
    s_lmdb_t *self = impl;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    MDB_val key = s_val(email);
    MDB_val id;
    store_status_t status = STORE_OK;
    int rc = mdb_get(txn, self->by_email, &key, &id);
    if (rc == MDB_NOTFOUND)
        status = STORE_NOT_FOUND;
    else if (rc != 0)
        status = s_fail("mdb_get users_by_email", rc);
    else {
        status = s_get(txn, self->users, &id, out);
        /* Both are written in one transaction; one without the other is
         * damage, not a missing user. */
        if (status == STORE_NOT_FOUND) {
            zsys_error("user_store(lmdb): email index points to missing id %.*s", (int)id.mv_size,
                       (const char *)id.mv_data);
            status = STORE_ERROR;
        }
    }
    store_reader_end(&self->reader);
    return status;
}

typedef struct {
    const s_lmdb_t *self;
    const char *id;
    const user_patch_t *patch;
    user_record_t *out;
} s_patch_t;

/* The account is read inside the write transaction and only the fields
 * of the patch change: a rename cannot write back a role that an admin
 * changed since the caller last read it, nor the reverse. */
static int s_patch_txn(MDB_txn *txn, void *arg)
{
    const s_patch_t *w = arg;
    const user_patch_t *patch = w->patch;
    MDB_val id = s_val(w->id);
    user_record_t *user = w->out;
    store_status_t status = s_get(txn, w->self->users, &id, user);
    if (status != STORE_OK)
        return status;
    if (patch->expected_hash && strcmp(user->password_hash, patch->expected_hash) != 0 &&
        strcmp(user->password_hash, patch->password_hash) != 0)
        return STORE_CONFLICT;
    if (patch->name)
        snprintf(user->name, sizeof user->name, "%s", patch->name);
    if (patch->role)
        snprintf(user->role, sizeof user->role, "%s", patch->role);
    if (patch->password_hash)
        snprintf(user->password_hash, sizeof user->password_hash, "%s", patch->password_hash);
    mpout_t buf;
    mpout_init(&buf, S_RECORD_MAX);
    if (s_encode(user, &buf) != 0) {
        zsys_error("user_store(lmdb): patch: record does not encode");
        status = STORE_ERROR;
    } else {
        MDB_val record = {.mv_size = buf.buf.size, .mv_data = buf.buf.data};
        int rc = mdb_put(txn, w->self->users, &id, &record, 0);
        if (rc != 0)
            status = s_fail("mdb_put users", rc);
    }
    mpout_destroy(&buf);
    return status;
}

static store_status_t s_patch(void *impl, const char *id, const user_patch_t *patch,
                              user_record_t *out)
{
    s_lmdb_t *self = impl;
    return s_write(self, s_patch_txn,
                   &(s_patch_t){.self = self, .id = id, .patch = patch, .out = out});
}

/* store_page's callback: the user of one entry into out[index]. */
static int s_list_entry(const MDB_val *key, const MDB_val *val, int index, void *arg)
{
    user_record_t *out = arg;
    record_status_t decoded = s_decode(key, val, &out[index]);
    if (decoded != RECORD_OK) {
        zsys_error("user_store(lmdb): malformed record for %.*s: %s", (int)key->mv_size,
                   (const char *)key->mv_data, record_strerror(decoded));
        return -1;
    }
    return 0;
}

static store_status_t s_list(void *impl, const char *after, int limit, user_record_t *out,
                             int *count)
{
    s_lmdb_t *self = impl;
    MDB_txn *txn = store_reader_begin(&self->reader);
    if (!txn)
        return STORE_ERROR;
    int rc = store_page(txn, self->users, after, USER_ID_MAX, limit, s_list_entry, out, count, NULL,
                        "user_store(lmdb)", "users page");
    store_reader_end(&self->reader);
    return rc == 0 ? STORE_OK : STORE_ERROR;
}

static void s_destroy(void *impl)
{
    s_lmdb_t *self = impl;
    store_reader_close(&self->reader);
    free(self);
}

static const user_store_ops_t s_ops = {
    .name = "lmdb",
    .create = s_create,
    .get_by_id = s_get_by_id,
    .get_by_email = s_get_by_email,
    .patch = s_patch,
    .list = s_list,
    .destroy = s_destroy,
};

user_store_t *user_store_open_lmdb(kv_t *env, int first_dbi_index)
{
    if (!env || first_dbi_index < 0)
        return NULL;
    s_lmdb_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->kv = env;
    self->users = kv_dbi(env, first_dbi_index);
    self->by_email = kv_dbi(env, first_dbi_index + 1);
    /* Fails with MDB_READERS_FULL for more handles than the environment's
     * reader slots (126 by default). */
    if (!store_reader_open(&self->reader, env, "user_store(lmdb)")) {
        free(self);
        return NULL;
    }
    return user_store_wrap(&s_ops, self);
}

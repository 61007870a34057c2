/*  user_store_impl.h - the private interface between user_store.c and its
 *  two implementations (user_store_lmdb.c, user_store_pg.c). Not for
 *  callers outside storage/users/.
 *
 *  user_store.c checks the arguments of every call (lengths, roles, NULLs)
 *  once, so an implementation receives only well-formed records: every
 *  string terminated within its field, ids and emails non-empty, role
 *  "customer" or "admin", limit >= 0 and after non-NULL; a patch's
 *  fields are terminated within their limits, its hashes non-empty, its
 *  id non-empty, and expected_hash comes only with password_hash; out is
 *  never NULL (user_store.c passes a scratch record).
 */
#ifndef RETAIL_USER_STORE_IMPL_H
#define RETAIL_USER_STORE_IMPL_H

#include "storage/users/user_store.h"

typedef struct {
    const char *name; /* for log lines: "lmdb", "pg" */
    store_status_t (*create)(void *impl, const user_record_t *user);
    store_status_t (*get_by_id)(void *impl, const char *id, user_record_t *out);
    store_status_t (*get_by_email)(void *impl, const char *email, user_record_t *out);
    store_status_t (*patch)(void *impl, const char *id, const user_patch_t *patch,
                            user_record_t *out);
    store_status_t (*list)(void *impl, const char *after, int limit, user_record_t *out,
                           int *count);
    /* Whether a call could reach the store now (user_store_available);
     * NULL: always (an embedded store). */
    store_status_t (*available)(void *impl);
    /* Frees impl and everything it owns. */
    void (*destroy)(void *impl);
} user_store_ops_t;

/* Wraps an implementation in a handle that owns impl from now on (on
 * failure impl is destroyed with ops->destroy and NULL is returned). */
user_store_t *user_store_wrap(const user_store_ops_t *ops, void *impl);

/* Copies src (len bytes, not necessarily terminated) into dst[cap + 1];
 * false when it does not fit (a corrupt or foreign record). */
bool user_store_copy_field(char *dst, size_t cap, const char *src, size_t len);

#endif

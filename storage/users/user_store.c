/*  user_store.c - the user store front: argument checks, id making, and
 *  dispatch to the LMDB or PostgreSQL implementation (user_store_impl.h).
 *
 *  Every check that does not depend on the backend lives here, so both
 *  backends refuse the same records in the same way (STORE_ERROR for a
 *  malformed record, STORE_NOT_FOUND for a key that no stored user can
 *  have) and the contract tests hold for both.
 *
 *  Ids: "u" + storage/ids.h's scheme; a collision is refused by the store.
 */
#include "storage/users/user_store_impl.h"
#include "storage/ids.h"

#include <czmq.h>
#include <stdio.h>
#include <string.h>

struct user_store_t {
    const user_store_ops_t *ops;
    void *impl;
};

user_store_t *user_store_wrap(const user_store_ops_t *ops, void *impl)
{
    user_store_t *self = calloc(1, sizeof *self);
    if (!self) {
        ops->destroy(impl);
        return NULL;
    }
    self->ops = ops;
    self->impl = impl;
    return self;
}

void user_store_close(user_store_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    user_store_t *self = *self_p;
    self->ops->destroy(self->impl);
    free(self);
    *self_p = NULL;
}

bool user_store_copy_field(char *dst, size_t cap, const char *src, size_t len)
{
    if (len > cap || memchr(src, '\0', len))
        return false;
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

void user_store_new_id(char *out)
{
    store_new_id('u', out);
}

/* True when s is terminated within field[cap + 1] (its length <= cap). */
static bool s_fits(const char *s, size_t cap)
{
    return memchr(s, '\0', cap + 1) != NULL;
}

static bool s_role_ok(const char *role)
{
    return strcmp(role, "customer") == 0 || strcmp(role, "admin") == 0;
}

/* What a created record needs besides its email. */
static bool s_record_ok(const user_record_t *user)
{
    return s_fits(user->id, USER_ID_MAX) && user->id[0] && s_fits(user->email, USER_EMAIL_MAX) &&
           s_fits(user->name, USER_NAME_MAX) && s_fits(user->role, USER_ROLE_MAX) &&
           s_role_ok(user->role) && s_fits(user->password_hash, USER_HASH_MAX) &&
           user->password_hash[0];
}

store_status_t user_store_create(user_store_t *self, const user_record_t *user)
{
    if (!self || !user)
        return STORE_ERROR;
    if (!s_record_ok(user) || !user->email[0] || user->created_at_ms < 0) {
        zsys_error("user_store(%s): create: malformed record", self->ops->name);
        return STORE_ERROR;
    }
    return self->ops->create(self->impl, user);
}

store_status_t user_store_get_by_id(user_store_t *self, const char *id, user_record_t *out)
{
    if (!self || !id || !out)
        return STORE_ERROR;
    /* No stored user has such an id; LMDB would refuse an empty key. */
    if (!*id || strlen(id) > USER_ID_MAX)
        return STORE_NOT_FOUND;
    return self->ops->get_by_id(self->impl, id, out);
}

store_status_t user_store_get_by_email(user_store_t *self, const char *email, user_record_t *out)
{
    if (!self || !email || !out)
        return STORE_ERROR;
    if (!*email || strlen(email) > USER_EMAIL_MAX)
        return STORE_NOT_FOUND;
    return self->ops->get_by_email(self->impl, email, out);
}

store_status_t user_store_patch(user_store_t *self, const char *id, const user_patch_t *patch,
                                user_record_t *out)
{
    if (!self || !id || !patch)
        return STORE_ERROR;
    if ((patch->name && !s_fits(patch->name, USER_NAME_MAX)) ||
        (patch->role && (!s_fits(patch->role, USER_ROLE_MAX) || !s_role_ok(patch->role))) ||
        (patch->password_hash &&
         (!s_fits(patch->password_hash, USER_HASH_MAX) || !patch->password_hash[0])) ||
        (patch->expected_hash &&
         (!patch->password_hash || !s_fits(patch->expected_hash, USER_HASH_MAX) ||
          !patch->expected_hash[0]))) {
        zsys_error("user_store(%s): patch: malformed", self->ops->name);
        return STORE_ERROR;
    }
    /* No stored user has such an id. */
    if (!*id || strlen(id) > USER_ID_MAX)
        return STORE_NOT_FOUND;
    user_record_t scratch;
    return self->ops->patch(self->impl, id, patch, out ? out : &scratch);
}

store_status_t user_store_list(user_store_t *self, const char *after, int limit, user_record_t *out,
                               int *count)
{
    if (count)
        *count = 0;
    if (!self || !count || limit < 0 || (limit > 0 && !out))
        return STORE_ERROR;
    if (limit == 0)
        return STORE_OK;
    return self->ops->list(self->impl, after ? after : "", limit, out, count);
}

store_status_t user_store_available(user_store_t *self)
{
    if (!self)
        return STORE_ERROR;
    return self->ops->available ? self->ops->available(self->impl) : STORE_OK;
}

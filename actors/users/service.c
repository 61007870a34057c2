/*  service.c - the definition of the `users` service (actors/service.h).
 *
 *  Its settings are users_settings_t (settings.h). Its shared state is
 *  users_shared_t, made with the process's data and keys directories and
 *  its own pg_dsn; when admin_email is set, the admin is created there
 *  (once: an existing account is left as it is). Its OpenAPI part is
 *  openapi.json beside this file, compiled in by the Makefile as
 *  actors_users_openapi_json.
 *
 *  Capacity 2: one request may wait behind an Argon2id hash (about 70 ms)
 *  on the same worker, but only when every worker is busy (dispatch
 *  prefers the least recently served), and it saves the round trip that
 *  made /users/me 1.3x a ping at 1.
 */
#include "actors/users/settings.h"
#include "actors/users/users.h"

#include <stddef.h>

extern const char actors_users_openapi_json[];

static const setting_t s_settings[] = {
    {"retail/users/pg_dsn", "RETAIL_USERS_PG_DSN", SETTING_STR, offsetof(users_settings_t, pg_dsn),
     sizeof((users_settings_t *)0)->pg_dsn, 0, 0, "retail/pg_dsn", "RETAIL_PG_DSN"},
    {"retail/users/admin_email", "RETAIL_USERS_ADMIN_EMAIL", SETTING_STR,
     offsetof(users_settings_t, admin_email), sizeof((users_settings_t *)0)->admin_email, 0, 0,
     "retail/admin_email", "RETAIL_ADMIN_EMAIL"},
    {"retail/users/admin_password", "RETAIL_USERS_ADMIN_PASSWORD", SETTING_STR,
     offsetof(users_settings_t, admin_password), sizeof((users_settings_t *)0)->admin_password, 0,
     0, "retail/admin_password", "RETAIL_ADMIN_PASSWORD"},
};

/* clang-format off */
static const route_t s_routes[] = {
    /* method  path                 service  op               ok   query  headers body  local */
    {"POST",  "/v1/auth/register",  "users", "auth.register",  201, NULL, NULL, true,  LOCAL_NONE},
    {"POST",  "/v1/auth/login",     "users", "auth.login",     200, NULL, "@client_ip>client_ip", true, LOCAL_NONE},
    {"POST",  "/v1/auth/refresh",   "users", "auth.refresh",   200, NULL, NULL, true,  LOCAL_NONE},
    {"POST",  "/v1/auth/logout",    "users", "auth.logout",    204, NULL, NULL, true,  LOCAL_NONE},
    {"GET",   "/v1/auth/jwks.json", "users", "auth.jwks",      200, NULL, NULL, false, LOCAL_NONE},
    {"GET",   "/v1/users/me",       "users", "user.me",        200, NULL, NULL, false, LOCAL_NONE},
    {"PATCH", "/v1/users/me",       "users", "user.update_me", 200, NULL, NULL, true,  LOCAL_NONE},
    {"GET",   "/v1/users",          "users", "user.list",      200, "limit:int,cursor", NULL, false, LOCAL_NONE},
    {"PATCH", "/v1/users/{id}",     "users", "user.set_role",  200, NULL, NULL, true,  LOCAL_NONE},
};
/* clang-format on */

static void *s_shared_new(const service_env_t *env, const void *settings, char *err, size_t errlen)
{
    const users_settings_t *own = settings;
    users_config_t uc = {.data_dir = env->common->data_dir,
                         .keys_dir = env->common->keys_dir,
                         .pg_dsn = own->pg_dsn};
    users_shared_t *users = users_shared_new(&uc, err, errlen);
    if (users && own->admin_email[0]) {
        int made =
            users_create_admin(users, own->admin_email, own->admin_password, NULL, err, errlen);
        if (made < 0)
            users_shared_destroy(&users);
        else
            zsys_info("users: admin %s %s", own->admin_email, made == 0 ? "created" : "exists");
    }
    return users;
}

static void s_shared_destroy(void **shared)
{
    users_shared_destroy((users_shared_t **)shared);
}

static int s_extra_workers(void *shared)
{
    /* workers beyond those that may be hashing keep fast ops fast */
    return users_shared_hash_admission(shared);
}

const service_def_t users_service = {
    .name = "users",
    .ops = users_ops,
    .capacity = 2,
    .routes = s_routes,
    .n_routes = sizeof s_routes / sizeof s_routes[0],
    .openapi = actors_users_openapi_json,
    .settings = s_settings,
    .n_settings = sizeof s_settings / sizeof s_settings[0],
    .settings_size = sizeof(users_settings_t),
    .shared_new = s_shared_new,
    .shared_destroy = s_shared_destroy,
    .state_new = users_state_new,
    .state_destroy = users_state_destroy,
    .extra_workers = s_extra_workers,
};

/*  settings.h - the users service's own settings.
 *
 *  Read by users_service (service.c) from its own section of the
 *  configuration and its own variables; the older names that API.md
 *  section 4 promises are read too, and lose to the current name in the
 *  same source (the environment still wins over the file):
 *
 *      ZPL                          variable                     older names
 *      retail/users/pg_dsn          RETAIL_USERS_PG_DSN          retail/pg_dsn, RETAIL_PG_DSN
 *      retail/users/admin_email     RETAIL_USERS_ADMIN_EMAIL     retail/admin_email,
 *                                                                RETAIL_ADMIN_EMAIL
 *      retail/users/admin_password  RETAIL_USERS_ADMIN_PASSWORD  retail/admin_password,
 *                                                                RETAIL_ADMIN_PASSWORD
 *
 *  pg_dsn set: accounts in that PostgreSQL database (libpq DSN), else in
 *  LMDB. admin_email set: that admin is created at start if missing.
 */
#ifndef RETAIL_USERS_SETTINGS_H
#define RETAIL_USERS_SETTINGS_H

#include "protocol/settings.h"

typedef struct {
    char pg_dsn[SETTINGS_PATH_MAX];
    char admin_email[256];
    char admin_password[256];
} users_settings_t;

#endif

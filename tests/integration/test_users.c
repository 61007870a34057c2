/*  test_users.c - accounts and auth through HTTP and MDP, on LMDB and on
 *  PostgreSQL.
 *
 *  Starts a real retaild (tests/fixture.h: bridge, broker, users and sys
 *  pools) with an admin from RETAIL_ADMIN_EMAIL, and walks API.md "Users
 *  and auth" as a client would: register, login, refresh rotation and
 *  reuse detection, logout, /users/me, password change, admin-only routes,
 *  failed-login limits with Retry-After, the JWK Set, the same op over
 *  MDP, and an admin's demotion racing the user's own renames (the
 *  demotion sticks); last, SIGTERM stops it with exit 0. The whole group
 *  runs twice: accounts in LMDB, then in the PostgreSQL given by
 *  RETAIL_TEST_PG_DSN (tests/run.sh starts one).
 */
#include "tests/fixture.h"
#include "tests/httpc.h"
#include "tests/testutil.h"

#include "protocol/mdpcli.h"

#include <curl/curl.h>
#include <czmq.h>
#include <jansson.h>
#include <pthread.h>

static void s_register(fixture_t *s, const char *email, const char *password, long expect)
{
    assert_int_equal(fixture_register(s, email, password, "Test User"), expect);
}

/* ---- fixture ---- */

static int s_start(void **state, const char *pg_dsn)
{
    fixture_opts_t opts = {.name = "retail-users", .pg_dsn = pg_dsn, .accounts = true};
    *state = fixture_new(&opts);
    return *state ? 0 : -1;
}

static int s_setup_lmdb(void **state)
{
    return s_start(state, NULL);
}

static int s_setup_pg(void **state)
{
    const char *dsn = getenv("RETAIL_TEST_PG_DSN");
    if (!dsn || !*dsn) {
        print_error("RETAIL_TEST_PG_DSN is not set (tests/run.sh starts a PostgreSQL)\n");
        return -1;
    }
    return s_start(state, dsn);
}

static int s_teardown(void **state)
{
    fixture_destroy((fixture_t **)state);
    return 0;
}

/* Emails unique per run, so the PostgreSQL group can run on a database
 * that outlives it. */
static void s_email(char *out, size_t size, const char *who)
{
    static int counter = 0; /* test-local */
    snprintf(out, size, "%s.%d.%lld@shop.test", who, ++counter, (long long)zclock_time());
}

/* ---- tests ---- */

static void test_register_and_login(void **state)
{
    fixture_t *s = *state;
    char email[128];
    s_email(email, sizeof email, "Alice");
    s_register(s, email, "s3cret-password", 201);
    s_register(s, email, "s3cret-password", 409);

    hc_response_t r = hc_request(
        s->base, "POST", "/v1/auth/register", NULL,
        "{\"email\":\"not-an-email\",\"password\":\"long enough\",\"name\":\"x\"}", NULL);
    assert_int_equal(r.status, 400);
    assert_string_equal(hc_error_code(&r), "invalid_argument");
    hc_response_free(&r);
    r = hc_request(s->base, "POST", "/v1/auth/register", NULL,
                   "{\"email\":\"short@shop.test\",\"password\":\"1234567\",\"name\":\"x\"}", NULL);
    assert_int_equal(r.status, 400);
    hc_response_free(&r);

    /* emails are normalised: upper case and spaces still log in */
    char shouted[160];
    snprintf(shouted, sizeof shouted, "  %s ", email);
    for (char *c = shouted; *c; c++)
        *c = (char)toupper((unsigned char)*c);
    json_t *pair = fixture_login(s, shouted, "s3cret-password");
    assert_string_equal(hc_str(pair, "token_type"), "Bearer");
    assert_non_null(hc_str(pair, "access_token"));
    assert_non_null(hc_str(pair, "refresh_token"));
    assert_int_equal(json_integer_value(json_object_get(pair, "expires_in")), 900);
    assert_string_equal(hc_str(pair, "user.role"), "customer");
    assert_null(json_object_get(json_object_get(pair, "user"), "password_hash"));

    r = hc_request(s->base, "GET", "/v1/users/me", hc_str(pair, "access_token"), NULL, NULL);
    assert_int_equal(r.status, 200);
    char lower[128];
    snprintf(lower, sizeof lower, "%s", email);
    for (char *c = lower; *c; c++)
        *c = (char)tolower((unsigned char)*c);
    assert_string_equal(hc_str(r.body, "user.email"), lower);
    hc_response_free(&r);

    r = hc_request(s->base, "GET", "/v1/users/me", NULL, NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_string_equal(hc_error_code(&r), "unauthenticated");
    hc_response_free(&r);

    r = hc_request(s->base, "POST", "/v1/auth/login", NULL,
                   "{\"email\":\"nobody@shop.test\",\"password\":\"whatever-it-is\"}", NULL);
    assert_int_equal(r.status, 401);
    assert_string_equal(hc_error_code(&r), "invalid_credentials");
    hc_response_free(&r);
    json_decref(pair);
}

static void test_refresh_rotation_and_reuse(void **state)
{
    fixture_t *s = *state;
    char email[128], body[256];
    s_email(email, sizeof email, "bob");
    s_register(s, email, "bobs-password", 201);
    json_t *first = fixture_login(s, email, "bobs-password");

    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", hc_str(first, "refresh_token"));
    hc_response_t second = hc_request(s->base, "POST", "/v1/auth/refresh", NULL, body, NULL);
    assert_int_equal(second.status, 200);
    assert_string_not_equal(hc_str(second.body, "refresh_token"), hc_str(first, "refresh_token"));

    /* the old one again: refused, and the whole family is revoked */
    hc_response_t replay = hc_request(s->base, "POST", "/v1/auth/refresh", NULL, body, NULL);
    assert_int_equal(replay.status, 401);
    hc_response_free(&replay);
    char body2[256];
    snprintf(body2, sizeof body2, "{\"refresh_token\":\"%s\"}",
             hc_str(second.body, "refresh_token"));
    hc_response_t after = hc_request(s->base, "POST", "/v1/auth/refresh", NULL, body2, NULL);
    assert_int_equal(after.status, 401);
    hc_response_free(&after);
    hc_response_free(&second);
    json_decref(first);

    /* logout ends a session */
    json_t *pair = fixture_login(s, email, "bobs-password");
    snprintf(body, sizeof body, "{\"refresh_token\":\"%s\"}", hc_str(pair, "refresh_token"));
    hc_response_t out = hc_request(s->base, "POST", "/v1/auth/logout", NULL, body, NULL);
    assert_int_equal(out.status, 401); /* logout needs the access token */
    hc_response_free(&out);
    out = hc_request(s->base, "POST", "/v1/auth/logout", hc_str(pair, "access_token"), body, NULL);
    assert_int_equal(out.status, 204);
    hc_response_free(&out);
    hc_response_t dead = hc_request(s->base, "POST", "/v1/auth/refresh", NULL, body, NULL);
    assert_int_equal(dead.status, 401);
    hc_response_free(&dead);
    json_decref(pair);
}

static void test_password_change(void **state)
{
    fixture_t *s = *state;
    char email[128];
    s_email(email, sizeof email, "carol");
    s_register(s, email, "first-password", 201);
    json_t *pair = fixture_login(s, email, "first-password");
    const char *token = hc_str(pair, "access_token");
    hc_response_t r = hc_request(s->base, "PATCH", "/v1/users/me", token,
                                 "{\"password\":\"second-password\"}", NULL);
    assert_int_equal(r.status, 400); /* current_password is required */
    hc_response_free(&r);
    r = hc_request(s->base, "PATCH", "/v1/users/me", token,
                   "{\"password\":\"second-password\",\"current_password\":\"wrong-one!\"}", NULL);
    assert_int_equal(r.status, 401);
    hc_response_free(&r);
    r = hc_request(s->base, "PATCH", "/v1/users/me", token,
                   "{\"password\":\"second-password\",\"current_password\":\"first-password\","
                   "\"name\":\"Carol C\"}",
                   NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(hc_str(r.body, "user.name"), "Carol C");
    hc_response_free(&r);
    json_decref(pair);
    pair = fixture_login(s, email, "second-password");
    json_decref(pair);
}

static void test_admin_routes(void **state)
{
    fixture_t *s = *state;
    char email[128];
    s_email(email, sizeof email, "dave");
    s_register(s, email, "daves-password", 201);
    json_t *customer = fixture_login(s, email, "daves-password");
    json_t *admin = fixture_login(s, FIXTURE_ADMIN_EMAIL, FIXTURE_ADMIN_PASSWORD);
    assert_string_equal(hc_str(admin, "user.role"), "admin");

    hc_response_t r =
        hc_request(s->base, "GET", "/v1/users", hc_str(customer, "access_token"), NULL, NULL);
    assert_int_equal(r.status, 403);
    assert_string_equal(hc_error_code(&r), "forbidden");
    hc_response_free(&r);

    r = hc_request(s->base, "GET", "/v1/users?limit=1", hc_str(admin, "access_token"), NULL, NULL);
    assert_int_equal(r.status, 200);
    assert_int_equal(json_array_size(json_object_get(r.body, "items")), 1);
    assert_non_null(hc_str(r.body, "next_cursor"));
    hc_response_free(&r);

    char path[128];
    snprintf(path, sizeof path, "/v1/users/%s", hc_str(customer, "user.id"));
    r = hc_request(s->base, "PATCH", path, hc_str(admin, "access_token"), "{\"role\":\"admin\"}",
                   NULL);
    assert_int_equal(r.status, 200);
    assert_string_equal(hc_str(r.body, "user.role"), "admin");
    hc_response_free(&r);
    r = hc_request(s->base, "PATCH", path, hc_str(admin, "access_token"), "{\"role\":\"king\"}",
                   NULL);
    assert_int_equal(r.status, 400);
    hc_response_free(&r);
    r = hc_request(s->base, "PATCH", "/v1/users/u000000000000deadbeef",
                   hc_str(admin, "access_token"), "{\"role\":\"admin\"}", NULL);
    assert_int_equal(r.status, 404);
    hc_response_free(&r);
    json_decref(customer);
    json_decref(admin);
}

static void test_failed_logins_are_limited(void **state)
{
    fixture_t *s = *state;
    char email[128], body[256];
    s_email(email, sizeof email, "eve");
    s_register(s, email, "eves-password", 201);
    snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"not-her-password\"}", email);
    for (int i = 0; i < 5; i++) {
        hc_response_t r = hc_request(s->base, "POST", "/v1/auth/login", NULL, body, NULL);
        assert_int_equal(r.status, 401);
        hc_response_free(&r);
    }
    /* now even the right password waits */
    snprintf(body, sizeof body, "{\"email\":\"%s\",\"password\":\"eves-password\"}", email);
    hc_response_t r = hc_request(s->base, "POST", "/v1/auth/login", NULL, body, NULL);
    assert_int_equal(r.status, 429);
    assert_string_equal(hc_error_code(&r), "rate_limited");
    assert_true(atoi(r.retry_after) > 0);
    hc_response_free(&r);
}

static void test_jwks_and_mdp(void **state)
{
    fixture_t *s = *state;
    hc_response_t r = hc_request(s->base, "GET", "/v1/auth/jwks.json", NULL, NULL, NULL);
    assert_int_equal(r.status, 200);
    json_t *key = json_array_get(json_object_get(r.body, "keys"), 0);
    assert_string_equal(json_string_value(json_object_get(key, "kty")), "EC");
    assert_string_equal(json_string_value(json_object_get(key, "alg")), "ES256");
    assert_null(json_object_get(key, "d")); /* never the private part */
    hc_response_free(&r);

    /* the same op over MDP, with the token in the envelope */
    json_t *admin = fixture_login(s, FIXTURE_ADMIN_EMAIL, FIXTURE_ADMIN_PASSWORD);
    mdpcli_t *client = fixture_client(s, "tester");
    assert_int_equal(
        fixture_send(client, "users", 7, "user.me", hc_str(admin, "access_token"), NULL), 0);
    fixture_reply_t reply = fixture_recv(client, 5000);
    assert_true(reply.answered);
    assert_true(reply.ok);
    assert_int_equal(reply.id, 7);
    assert_string_equal(hc_str(reply.data, "user.email"), FIXTURE_ADMIN_EMAIL);
    fixture_reply_free(&reply);
    mdpcli_destroy(&client);
    json_decref(admin);
}

#define RENAME_THREADS 3
#define RENAMES_EACH 8
#define DEMOTE_ROUNDS 8

typedef struct {
    fixture_t *s;
    const char *token;
    const char *path; /* demoter: /v1/users/{id} */
    bool demote;
    int index;
    int round;
    int failed; /* requests not answered 200 */
} patch_thread_t;

/* Renames through PATCH /v1/users/me, or demotes through PATCH
 * /v1/users/{id}, and counts what was not a 200 (no cmocka asserts off
 * the main thread). */
static void *s_patch_thread(void *arg)
{
    patch_thread_t *t = arg;
    int n = t->demote ? 3 : RENAMES_EACH;
    for (int i = 0; i < n; i++) {
        char body[96];
        if (t->demote)
            snprintf(body, sizeof body, "{\"role\":\"customer\"}");
        else
            snprintf(body, sizeof body, "{\"name\":\"r%d round %d step %d\"}", t->index, t->round,
                     i);
        hc_request_t q = {.url = t->s->base,
                          .path = t->demote ? t->path : "/v1/users/me",
                          .method = "PATCH",
                          .token = t->token,
                          .body = body};
        if (hc_status(&q) != 200)
            t->failed++;
    }
    return NULL;
}

/* An admin demotes a user who is renaming themselves: the demotion must
 * stick (update_me read the account, changed the name and wrote all of
 * it back, so a rename that read before the demotion made the user an
 * admin again). */
static void test_rename_while_demoted(void **state)
{
    fixture_t *s = *state;
    char email[128], path[128];
    s_email(email, sizeof email, "frank");
    s_register(s, email, "franks-password", 201);
    json_t *user = fixture_login(s, email, "franks-password");
    json_t *admin = fixture_login(s, FIXTURE_ADMIN_EMAIL, FIXTURE_ADMIN_PASSWORD);
    const char *admin_token = hc_str(admin, "access_token");
    snprintf(path, sizeof path, "/v1/users/%s", hc_str(user, "user.id"));
    int lost = 0;
    for (int round = 0; round < DEMOTE_ROUNDS; round++) {
        hc_response_t r =
            hc_request(s->base, "PATCH", path, admin_token, "{\"role\":\"admin\"}", NULL);
        assert_int_equal(r.status, 200);
        hc_response_free(&r);
        patch_thread_t t[RENAME_THREADS + 1];
        pthread_t threads[RENAME_THREADS + 1];
        for (int i = 0; i <= RENAME_THREADS; i++) {
            bool demote = i == RENAME_THREADS;
            /* the user's token still says admin: update_me needs only a
             * user, and set_role reads the role from the store */
            t[i] = (patch_thread_t){.s = s,
                                    .token = demote ? admin_token : hc_str(user, "access_token"),
                                    .path = path,
                                    .demote = demote,
                                    .index = i,
                                    .round = round};
            assert_int_equal(pthread_create(&threads[i], NULL, s_patch_thread, &t[i]), 0);
        }
        for (int i = 0; i <= RENAME_THREADS; i++)
            pthread_join(threads[i], NULL);
        for (int i = 0; i <= RENAME_THREADS; i++)
            assert_int_equal(t[i].failed, 0);
        r = hc_request(s->base, "GET", "/v1/users/me", hc_str(user, "access_token"), NULL, NULL);
        assert_int_equal(r.status, 200);
        if (strcmp(hc_str(r.body, "user.role"), "customer") != 0)
            lost++;
        /* the name is one renamer's last of this round */
        int who = -1, in_round = -1, step = -1;
        const char *name = hc_str(r.body, "user.name");
        if (sscanf(name, "r%d round %d step %d", &who, &in_round, &step) != 3 ||
            in_round != round || step != RENAMES_EACH - 1)
            fail_msg("round %d: name '%s' is no renamer's last", round, name);
        hc_response_free(&r);
    }
    if (lost)
        print_error("the demotion was undone in %d of %d rounds\n", lost, DEMOTE_ROUNDS);
    assert_int_equal(lost, 0);
    json_decref(user);
    json_decref(admin);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_register_and_login),
        cmocka_unit_test(test_refresh_rotation_and_reuse),
        cmocka_unit_test(test_password_change),
        cmocka_unit_test(test_admin_routes),
        cmocka_unit_test(test_failed_logins_are_limited),
        cmocka_unit_test(test_jwks_and_mdp),
        cmocka_unit_test(test_rename_while_demoted),
        cmocka_unit_test(fixture_test_stop), /* last: SIGTERM, and exit 0 */
    };
    curl_global_init(CURL_GLOBAL_DEFAULT);
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("users on LMDB", tests, s_setup_lmdb, s_teardown);
    failed += cmocka_run_group_tests_name("users on PostgreSQL", tests, s_setup_pg, s_teardown);
    zsys_shutdown();
    curl_global_cleanup();
    return failed;
}

/*  test_api.c - api_new(): the route table and the OpenAPI document assembled.
 *
 *  On small fake services, each with a route or two and an OpenAPI part
 *  written here, the test sees that:
 *    - the table is the bridge's routes then each service's, in order;
 *    - each part's paths and components land in the document, and the
 *      base document's instructions ("x-bridge-responses") are applied and
 *      dropped: the bridge's answers on every operation, 503 and 504 on a
 *      service's only, an operation's own answer kept, responses in order;
 *    - every conflict and malformed part is refused with a reason that
 *      names the part: a path or a component defined twice (by two
 *      services, or by a service and the base document), a part with more
 *      than paths and components, a part that is not JSON or not an
 *      object or missing, a route to another service.
 *  test_openapi.c checks the real services' assembly as a whole.
 */
#include "actors/services.h"
#include "router/api.h"
#include "tests/testutil.h"

#include <jansson.h>
#include <string.h>

static const worker_op_t s_no_ops[] = {{NULL, NULL}};

static const worker_op_t *s_ops(bool with_test_ops)
{
    (void)with_test_ops;
    return s_no_ops;
}

static const route_t s_one_routes[] = {
    {"GET", "/v1/one", "one", "get", 200, NULL, NULL, false, LOCAL_NONE},
    {"POST", "/v1/one", "one", "make", 201, NULL, NULL, true, LOCAL_NONE},
};
static const route_t s_two_routes[] = {
    {"GET", "/v1/two/{id}", "two", "get", 200, NULL, NULL, false, LOCAL_NONE},
};

static const char s_one_part[] =
    "{\"paths\": {\"/v1/one\": {"
    "  \"get\": {\"operationId\": \"one.get\", \"security\": [],"
    "    \"responses\": {\"200\": {\"description\": \"a One\"},"
    "                  \"404\": {\"$ref\": \"#/components/responses/NotFound\"}}},"
    "  \"post\": {\"operationId\": \"one.make\", \"security\": [],"
    /* its own 503, which the bridge's must not replace */
    "    \"responses\": {\"503\": {\"description\": \"one's own 503\"},"
    "                  \"201\": {\"description\": \"made\"}}}}},"
    " \"components\": {\"schemas\": {\"One\": {\"type\": \"object\"}}}}";

static const char s_two_part[] =
    "{\"paths\": {\"/v1/two/{id}\": {\"get\": {\"operationId\": \"two.get\", \"security\": [],"
    "    \"responses\": {\"200\": {\"description\": \"a Two\"}}}}},"
    " \"components\": {\"schemas\": {\"Two\": {\"type\": \"object\"}},"
    "                \"parameters\": {\"Id\": {\"name\": \"id\", \"in\": \"path\","
    "                   \"required\": true, \"schema\": {\"type\": \"string\"}}}}}";

static service_def_t s_def(const char *name, const route_t *routes, size_t n, const char *part)
{
    return (service_def_t){
        .name = name, .ops = s_ops, .routes = routes, .n_routes = n, .openapi = part};
}

/* Assembles defs and parses the document. */
static json_t *s_assemble(const service_def_t *const *defs, size_t n, api_t **api)
{
    char err[256] = "";
    *api = api_new(defs, n, err, sizeof err);
    if (!*api)
        fail_msg("did not assemble: %s", err);
    size_t len;
    const char *text = api_openapi(*api, &len);
    assert_int_equal(strlen(text), len);
    json_error_t error;
    json_t *doc = json_loadb(text, len, 0, &error);
    if (!doc)
        fail_msg("the assembled document, line %d: %s", error.line, error.text);
    return doc;
}

static json_t *s_responses(json_t *doc, const char *path, const char *method)
{
    return json_object_get(
        json_object_get(json_object_get(json_object_get(doc, "paths"), path), method), "responses");
}

static void test_assembles_in_order(void **state)
{
    (void)state;
    service_def_t one = s_def("one", s_one_routes, 2, s_one_part);
    service_def_t two = s_def("two", s_two_routes, 1, s_two_part);
    const service_def_t *defs[] = {&one, &two};
    api_t *api;
    json_t *doc = s_assemble(defs, 2, &api);

    /* the table: the bridge's, then one's, then two's */
    size_t n_bridge, n;
    const route_t *bridge = routes_bridge(&n_bridge);
    const route_t *table = api_routes(api, &n);
    assert_int_equal(n, n_bridge + 3);
    for (size_t i = 0; i < n_bridge; i++)
        assert_string_equal(table[i].path, bridge[i].path);
    assert_string_equal(table[n_bridge].op, "get");
    assert_string_equal(table[n_bridge + 1].op, "make");
    assert_string_equal(table[n_bridge + 2].path, "/v1/two/{id}");

    /* the parts' paths and components, beside the base's */
    json_t *paths = json_object_get(doc, "paths");
    assert_non_null(json_object_get(paths, "/healthz"));
    assert_non_null(json_object_get(paths, "/v1/one"));
    assert_non_null(json_object_get(paths, "/v1/two/{id}"));
    json_t *components = json_object_get(doc, "components");
    json_t *schemas = json_object_get(components, "schemas");
    assert_non_null(json_object_get(schemas, "Error"));
    assert_non_null(json_object_get(schemas, "One"));
    assert_non_null(json_object_get(schemas, "Two"));
    assert_non_null(json_object_get(json_object_get(components, "parameters"), "Id"));
    assert_non_null(json_object_get(json_object_get(components, "responses"), "NotFound"));
    assert_null(json_object_get(doc, "x-bridge-responses"));

    /* the bridge's answers: everywhere, and 503 and 504 on services */
    json_t *healthz = s_responses(doc, "/healthz", "get");
    json_t *get_one = s_responses(doc, "/v1/one", "get");
    json_t *make_one = s_responses(doc, "/v1/one", "post");
    static const char *const everywhere[] = {"400", "413", "414", "415", "431"};
    for (size_t i = 0; i < sizeof everywhere / sizeof everywhere[0]; i++) {
        assert_non_null(json_object_get(healthz, everywhere[i]));
        assert_non_null(json_object_get(get_one, everywhere[i]));
    }
    assert_null(json_object_get(healthz, "504"));
    assert_non_null(json_object_get(get_one, "503"));
    assert_non_null(json_object_get(get_one, "504"));
    assert_non_null(json_object_get(get_one, "404")); /* its own */
    assert_string_equal(
        json_string_value(json_object_get(json_object_get(make_one, "503"), "description")),
        "one's own 503");
    /* listed in status order, whoever added them */
    const char *previous = "";
    const char *status;
    json_t *response;
    json_object_foreach(make_one, status, response)
    {
        if (strcmp(previous, status) >= 0)
            fail_msg("POST /v1/one lists %s after %s", status, previous);
        previous = status;
    }
    json_decref(doc);
    api_destroy(&api);
    assert_null(api);
    api_destroy(&api); /* NULL: nothing */
}

/* Asserts that defs do not assemble, with every string of want in err. */
static void s_assert_refused(const service_def_t *const *defs, size_t n, const char *const *want)
{
    char err[256] = "";
    api_t *api = api_new(defs, n, err, sizeof err);
    if (api)
        fail_msg("assembled, though it should say \"%s\"", want[0]);
    for (size_t i = 0; want[i]; i++)
        if (!strstr(err, want[i]))
            fail_msg("\"%s\" does not say \"%s\"", err, want[i]);
}

static void test_refuses_conflicts_and_bad_parts(void **state)
{
    (void)state;
    service_def_t one = s_def("one", s_one_routes, 2, s_one_part);

    /* the same path from two services */
    service_def_t again = s_def("again", NULL, 0, "{\"paths\": {\"/v1/one\": {}}}");
    const service_def_t *paths_twice[] = {&one, &again};
    s_assert_refused(paths_twice, 2,
                     (const char *[]){"path /v1/one of again", "defined by one", NULL});

    /* a path of the base document */
    service_def_t health = s_def("health", NULL, 0, "{\"paths\": {\"/healthz\": {}}}");
    const service_def_t *base_path[] = {&health};
    s_assert_refused(base_path, 1,
                     (const char *[]){"path /healthz of health", "the base document", NULL});

    /* the same component from two services, and one of the base's */
    service_def_t schema =
        s_def("schema", NULL, 0, "{\"components\": {\"schemas\": {\"One\": {}}}}");
    const service_def_t *schema_twice[] = {&one, &schema};
    s_assert_refused(schema_twice, 2,
                     (const char *[]){"components.schemas One of schema", "by one", NULL});
    service_def_t error =
        s_def("error", NULL, 0, "{\"components\": {\"responses\": {\"NotFound\": {}}}}");
    const service_def_t *base_component[] = {&error};
    s_assert_refused(base_component, 1,
                     (const char *[]){"components.responses NotFound of error", "base", NULL});

    /* more than paths and components; not an object; not JSON; none */
    static const struct {
        const char *part;
        const char *want;
    } bad[] = {
        {"{\"paths\": {}, \"info\": {\"title\": \"mine\"}}", "has \"info\""},
        {"{\"paths\": []}", "paths is not an object"},
        {"{\"components\": {\"schemas\": []}}", "components.schemas is not an object"},
        {"[]", "is not a JSON object"},
        {"{\"paths\": {", "line 1"},
        {NULL, "has no OpenAPI part"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        service_def_t def = s_def("broken", NULL, 0, bad[i].part);
        const service_def_t *defs[] = {&def};
        s_assert_refused(defs, 1, (const char *[]){"broken", bad[i].want, NULL});
    }

    /* a route that names another service, or none */
    static const route_t elsewhere[] = {
        {"GET", "/v1/x", "other", "get", 200, NULL, NULL, false, LOCAL_NONE}};
    static const route_t local[] = {
        {"GET", "/v1/y", NULL, NULL, 200, NULL, NULL, false, LOCAL_HEALTHZ}};
    service_def_t thief = s_def("thief", elsewhere, 1, "{}");
    service_def_t bridge = s_def("bridgey", local, 1, "{}");
    const service_def_t *to_other[] = {&thief};
    const service_def_t *to_bridge[] = {&bridge};
    s_assert_refused(to_other, 1, (const char *[]){"GET /v1/x of thief goes to other", NULL});
    s_assert_refused(to_bridge, 1, (const char *[]){"goes to the bridge", NULL});
}

static void test_the_real_services_assemble(void **state)
{
    (void)state;
    size_t n;
    const service_def_t *const *all = services_all(&n);
    assert_true(n >= 3);
    for (size_t i = 0; i < n; i++) {
        assert_ptr_equal(services_find(all[i]->name), all[i]);
        assert_non_null(all[i]->ops(false));
    }
    assert_null(services_find("nothing"));
    api_t *api;
    json_t *doc = s_assemble(all, n, &api);
    json_decref(doc);
    api_destroy(&api);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_assembles_in_order),
        cmocka_unit_test(test_refuses_conflicts_and_bad_parts),
        cmocka_unit_test(test_the_real_services_assemble),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}

/*  openapi.c - retail-openapi: prints the OpenAPI document the bridge serves.
 *
 *      retail-openapi > openapi.json
 *
 *  The document is assembled at start from router/openapi.json and each
 *  service's part (router/api.h); this prints the same assembly, from the
 *  same list of services, so that `make lint` checks exactly what
 *  /openapi.json answers without starting a server. Exit status 0, or 1
 *  with the reason on stderr when the parts do not assemble.
 */
#include "actors/services.h"
#include "router/api.h"

#include <stdio.h>

int main(int argc, char **argv)
{
    (void)argv;
    if (argc != 1) {
        fprintf(stderr, "usage: retail-openapi > openapi.json\n");
        return 2;
    }
    size_t n;
    const service_def_t *const *all = services_all(&n);
    char err[256];
    api_t *api = api_new(all, n, err, sizeof err);
    if (!api) {
        fprintf(stderr, "retail-openapi: %s\n", err);
        return 1;
    }
    size_t len;
    const char *doc = api_openapi(api, &len);
    int rc = fwrite(doc, 1, len, stdout) == len && fputc('\n', stdout) != EOF && fflush(stdout) == 0
                 ? 0
                 : 1;
    if (rc != 0)
        fprintf(stderr, "retail-openapi: cannot write the document\n");
    api_destroy(&api);
    return rc;
}

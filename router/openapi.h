/*  openapi.h - the base OpenAPI document (router/openapi.json), compiled in.
 *
 *  The Makefile turns every openapi.json of the repository into a C
 *  string at build time (router/openapi.json -> router_openapi_json,
 *  actors/users/openapi.json -> actors_users_openapi_json, ...), so the
 *  bridge serves exactly the documents in the repository, wherever
 *  retaild runs from. router/api.h assembles the base and the services'
 *  parts into the document served at /openapi.json.
 */
#ifndef RETAIL_OPENAPI_H
#define RETAIL_OPENAPI_H

/* NUL-terminated JSON text. */
extern const char router_openapi_json[];

#endif

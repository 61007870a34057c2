/*  openapi.h - the OpenAPI document (router/openapi.json), compiled in.
 *
 *  The Makefile turns openapi.json into a C array at build time, so the
 *  bridge serves exactly the document in the repository, wherever retaild
 *  runs from. tests/unit/test_openapi.c checks it against the route table.
 */
#ifndef RETAIL_OPENAPI_H
#define RETAIL_OPENAPI_H

#include <stddef.h>

extern const char openapi_json[];
extern const size_t openapi_json_len;

#endif

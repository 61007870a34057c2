/*  fuzz_json.c - the JSON reader (jsonpack_from_json, jsonpack_body_map)
 *  on any bytes, as an HTTP body or a retailctl argument could carry them.
 *
 *  Beyond not crashing, what it accepts must go round: the msgpack it
 *  wrote passes mpcheck, converts back to JSON text, and that text reads
 *  again into the very same msgpack bytes (a value is never changed on
 *  the way, reals included: they are written with 17 digits). The body
 *  reader must agree with the plain reader on what is an object.
 */
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "protocol/mpcheck.h"

/* mpcheck's nesting limit is lower than the reader's: ask for no more,
 * so that everything read can be checked and written back. */
#define DEPTH 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    msgpack_sbuffer first, second;
    msgpack_sbuffer_init(&first);
    msgpack_sbuffer_init(&second);
    int rc = jsonpack_from_json((const char *)data, size, &first, DEPTH, err, sizeof err);
    if (rc != 0 && err[0] == '\0')
        abort(); /* a refusal always says why */
    if (rc == 0) {
        if (mpcheck((const uint8_t *)first.data, first.size, ENVELOPE_MAX_BYTES * 2, DEPTH) !=
            MP_OK)
            abort();
        char *text = jsonpack_bytes_to_json_text(first.data, first.size, 0, err, sizeof err);
        if (!text && first.size <= ENVELOPE_MAX_BYTES)
            abort(); /* read, yet cannot be written back */
        if (text) {
            if (jsonpack_from_json(text, strlen(text), &second, DEPTH, err, sizeof err) != 0)
                abort();
            if (second.size != first.size || memcmp(second.data, first.data, first.size) != 0)
                abort(); /* the round trip changed a value */
            free(text);
        }
    }

    msgpack_sbuffer converted;
    msgpack_sbuffer_init(&converted);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    msgpack_object map;
    jsonpack_body_t body = jsonpack_body_map((const char *)data, size, false, ENVELOPE_MAX_BYTES,
                                             DEPTH, &converted, &zone, &map, err, sizeof err);
    bool object = rc == 0 && jsonpack_is_map(first.data, first.size);
    if ((body == JSONPACK_BODY_OK) != object && body != JSONPACK_BODY_OUT_OF_MEMORY &&
        size <= ENVELOPE_MAX_BYTES)
        abort();
    if (body == JSONPACK_BODY_OK && map.type != MSGPACK_OBJECT_MAP)
        abort();
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&converted);
    msgpack_sbuffer_destroy(&first);
    msgpack_sbuffer_destroy(&second);
    return 0;
}

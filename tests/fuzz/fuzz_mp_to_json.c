/*  fuzz_mp_to_json.c - the msgpack-to-JSON writer on any bytes, as a
 *  service's reply or an HTTP client's msgpack body could carry them.
 *
 *  The first byte picks json_dumps flags (indent, ASCII, sorted keys); the
 *  rest is the msgpack. Whatever the writer turns into text must be JSON
 *  that the reader takes back; the body reader (msgpack bodies) must
 *  accept only maps that mpcheck accepts.
 */
#include <jansson.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "protocol/mpcheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t flags = 0;
    if (data[0] & 1)
        flags |= JSON_INDENT(2);
    if (data[0] & 2)
        flags |= JSON_ENSURE_ASCII;
    if (data[0] & 4)
        flags |= JSON_SORT_KEYS;
    const uint8_t *mp = data + 1;
    size_t len = size - 1;
    char err[256];
    char *text = jsonpack_bytes_to_json_text(mp, len, flags, err, sizeof err);
    if (!text && err[0] == '\0')
        abort();
    if (text) {
        msgpack_sbuffer back;
        msgpack_sbuffer_init(&back);
        if (jsonpack_from_json(text, strlen(text), &back, JSONPACK_DEPTH_LIMIT, err, sizeof err) !=
            0)
            abort(); /* the writer wrote what the reader refuses */
        msgpack_sbuffer_destroy(&back);
        free(text);
    }

    msgpack_sbuffer converted;
    msgpack_sbuffer_init(&converted);
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    msgpack_object map;
    jsonpack_body_t body =
        jsonpack_body_map((const char *)mp, len, true, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH,
                          &converted, &zone, &map, err, sizeof err);
    if (body == JSONPACK_BODY_OK) {
        if (map.type != MSGPACK_OBJECT_MAP ||
            mpcheck(mp, len, ENVELOPE_MAX_BYTES, ENVELOPE_MAX_DEPTH) != MP_OK)
            abort();
    }
    msgpack_zone_destroy(&zone);
    msgpack_sbuffer_destroy(&converted);
    return 0;
}

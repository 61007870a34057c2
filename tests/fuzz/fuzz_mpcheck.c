/*  fuzz_mpcheck.c - the msgpack checker (protocol/mpcheck.h) on any bytes.
 *
 *  The first byte picks max_depth (0..MPCHECK_DEPTH_LIMIT+3, so limits
 *  past the hard one are tried too); the rest is the input. What mpcheck
 *  promises is checked, not only that it does not crash: whatever it
 *  accepts unpacks with msgpack-c into exactly one value that uses every
 *  byte, and nests no deeper than asked.
 */
#include <msgpack.h>
#include <stdlib.h>

#include "protocol/mpcheck.h"

static int s_depth(const msgpack_object *o)
{
    int deepest = 0;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            int d = s_depth(&o->via.array.ptr[i]) + 1;
            deepest = d > deepest ? d : deepest;
        }
        return deepest ? deepest : 1;
    }
    if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (o->via.map.ptr[i].key.type != MSGPACK_OBJECT_STR)
                abort(); /* mpcheck refuses non-str keys */
            int d = s_depth(&o->via.map.ptr[i].val) + 1;
            deepest = d > deepest ? d : deepest;
        }
        return deepest ? deepest : 1;
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    int max_depth = data[0] % (MPCHECK_DEPTH_LIMIT + 4);
    const uint8_t *buf = data + 1;
    size_t len = size - 1;
    mp_status_t status = mpcheck(buf, len, 1 << 20, max_depth);
    if (mpcheck_strerror(status)[0] == '\0')
        abort();
    if (status != MP_OK)
        return 0;
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object obj;
    size_t off = 0;
    msgpack_unpack_return rc = msgpack_unpack((const char *)buf, len, &off, &zone, &obj);
    if (rc != MSGPACK_UNPACK_SUCCESS || off != len)
        abort(); /* accepted, yet msgpack-c cannot read it whole */
    int limit = max_depth < MPCHECK_DEPTH_LIMIT ? max_depth : MPCHECK_DEPTH_LIMIT;
    if (s_depth(&obj) > limit)
        abort();
    msgpack_zone_destroy(&zone);
    return 0;
}

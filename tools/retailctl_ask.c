/*  retailctl_ask.c - retailctl_ask (retailctl_ask.h). */
#include "tools/retailctl_ask.h"

#include <czmq.h>
#include <stdio.h>

bool retailctl_ask(mdpcli_t *client, int timeout_ms, uint64_t id, const char *service,
                   const char *op, const void *args, size_t args_len, msgpack_zone *zone,
                   zframe_t **frame, envelope_reply_t *reply, const char *who)
{
    zframe_destroy(frame);
    msgpack_zone_clear(zone);
    msgpack_sbuffer request;
    msgpack_sbuffer_init(&request);
    bool sent = envelope_pack_request(&request, id, op, NULL, args, args_len) == 0 &&
                mdpcli_send(client, service, request.data, request.size) == 0;
    msgpack_sbuffer_destroy(&request);
    int64_t deadline = zclock_mono() + timeout_ms;
    while (sent) {
        int64_t left = deadline - zclock_mono();
        *frame = left > 0 ? mdpcli_recv(client, (int)left, NULL) : NULL;
        if (!*frame)
            break;
        const char *why;
        if (envelope_decode_reply(zframe_data(*frame), zframe_size(*frame), zone, reply, &why) &&
            reply->id.type == MSGPACK_OBJECT_POSITIVE_INTEGER && reply->id.via.u64 == id)
            return true;
        zframe_destroy(frame);
    }
    fprintf(stderr, "%s: no answer from %s to %s\n", who, service, op);
    return false;
}

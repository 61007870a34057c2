/*  fuzz_envelope.c - the envelope decoders (protocol/envelope.h) on any
 *  bytes: a request body as a worker receives it from the broker, a reply
 *  as a client receives it, and the broker's error for a request it does
 *  not decode. A decoded request keeps the envelope's promises (op of
 *  1..ENVELOPE_MAX_OP bytes, args a map, a token within its limit), and
 *  every error the broker makes up is itself a reply that decodes.
 */
#include <msgpack.h>
#include <stdlib.h>

#include "protocol/envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 2048);
    const char *message = NULL;
    envelope_request_t request;
    if (envelope_decode_request(data, size, &zone, &request, &message)) {
        if (request.op_len < 1 || request.op_len > ENVELOPE_MAX_OP ||
            request.args.type != MSGPACK_OBJECT_MAP ||
            (request.token && request.token_len > ENVELOPE_MAX_TOKEN))
            abort();
    } else if (!message || !message[0])
        abort();

    envelope_reply_t reply;
    message = NULL;
    if (!envelope_decode_reply(data, size, &zone, &reply, &message) && (!message || !message[0]))
        abort();

    msgpack_sbuffer out;
    msgpack_sbuffer_init(&out);
    if (envelope_error_for(&out, data, size, ERR_TIMEOUT, "the deadline passed") == 0) {
        if (!envelope_decode_reply(out.data, out.size, &zone, &reply, &message) || reply.ok ||
            reply.code != ERR_TIMEOUT)
            abort();
    }
    msgpack_sbuffer_destroy(&out);
    msgpack_zone_destroy(&zone);
    return 0;
}

/*  events_since.c - events.since (events_since.h).
 *
 *  The events are read in one read transaction and packed into a buffer
 *  first, because the reply's array needs its count before its items;
 *  each stored event is already the msgpack map the stream carries, so it
 *  goes into the reply as it is.
 */
#include "actors/events_since.h"

#include <czmq.h>
#include "protocol/envelope.h"
#include "protocol/errors.h"
#include "protocol/mdp.h"
#include "protocol/mpout.h"

#define S_LIMIT_DEFAULT 100
#define S_LIMIT_MAX 1000
#define S_BYTES_MAX (512 * 1024)

typedef struct {
    mpout_t out;
    int count;
} s_page_t;

static int s_add(const outbox_event_t *event, void *arg)
{
    s_page_t *page = arg;
    if (page->count > 0 && page->out.buf.size + event->message_len > S_BYTES_MAX)
        return 1; /* full: the caller asks again from the next seq */
    if (mpout_write(&page->out, (const char *)event->message, event->message_len) != 0)
        return -1;
    page->count++;
    return 0;
}

void events_since_reply(call_t *call, outbox_t *outbox)
{
    const char *caller = call_caller(call);
    if (streq(caller, "bridge") || streq(caller, MDP_CALLER_UNNAMED)) {
        call_fail(call, ERR_FORBIDDEN, "events.since is for holders of an allowed certificate");
        return;
    }
    int64_t since = 0, limit = S_LIMIT_DEFAULT;
    call_arg_int(call, "since", ARG_REQUIRED, 1, INT64_MAX, &since);
    call_arg_int(call, "limit", ARG_OPTIONAL, 1, S_LIMIT_MAX, &limit);
    if (!call_args_ok(call))
        return;
    if (!outbox) {
        call_fail(call, ERR_UNAVAILABLE, "this service keeps no events");
        return;
    }
    outbox_state_t state;
    s_page_t page = {.count = 0};
    mpout_init(&page.out, 0);
    /* the state after the events: next must be past every event in the
     * page, and one may have committed between the two reads */
    int rc = outbox_read(outbox, (uint64_t)since, (int)limit, s_add, &page);
    if (rc == 1)
        rc = 0;
    if (rc == 0)
        rc = outbox_state(outbox, &state);
    if (rc != 0 || page.out.failed) {
        mpout_destroy(&page.out);
        call_fail(call, ERR_UNAVAILABLE, "the events could not be read (see the log)");
        return;
    }
    msgpack_packer *pk = call_reply(call);
    msgpack_pack_map(pk, 3);
    mp_pack_str(pk, "events");
    msgpack_pack_array(pk, (size_t)page.count);
    if (page.out.buf.size)
        mp_pack_raw(pk, page.out.buf.data, page.out.buf.size);
    mp_pack_str(pk, "first");
    msgpack_pack_uint64(pk, state.first);
    mp_pack_str(pk, "next");
    msgpack_pack_uint64(pk, state.next);
    mpout_destroy(&page.out);
}

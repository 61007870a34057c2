/*  frames.c - see frames.h. */
#include "protocol/frames.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

int frames_recv(void *socket, zmq_msg_t *frames, int max, int flags)
{
    int count = 0;
    while (true) {
        zmq_msg_init(&frames[count]);
        if (zmq_msg_recv(&frames[count], socket, count == 0 ? flags : 0) < 0) {
            int why = errno; /* for the caller, past the closes */
            frames_close(frames, count + 1);
            errno = why;
            return 0;
        }
        bool more = zmq_msg_more(&frames[count]);
        count++;
        if (!more)
            return count;
        if (count == max)
            break;
    }
    zmq_msg_t extra;
    bool more = true;
    while (more) {
        zmq_msg_init(&extra);
        more = zmq_msg_recv(&extra, socket, 0) >= 0 && zmq_msg_more(&extra);
        zmq_msg_close(&extra);
    }
    frames_close(frames, count);
    return -1;
}

void frames_close(zmq_msg_t *frames, int count)
{
    for (int i = 0; i < count; i++)
        zmq_msg_close(&frames[i]);
}

int frames_is(zmq_msg_t *frame, const char *text)
{
    size_t n = strlen(text);
    return zmq_msg_size(frame) == n && memcmp(zmq_msg_data(frame), text, n) == 0;
}

/*  frames.h - receiving a multipart message as raw zmq_msg_t frames.
 *
 *  The broker, the workers, the bridge and the load tools (loadgen, the
 *  bench relay) read every message this way: no allocation per message,
 *  and a message with more frames than the caller expects is swallowed
 *  whole instead of desynchronising the socket.
 */
#ifndef RETAIL_FRAMES_H
#define RETAIL_FRAMES_H

#include <zmq.h>

/* Receives one message into frames[0..max). Returns the frame count, 0 if
 * nothing was received (EAGAIN with ZMQ_DONTWAIT, or an error; zmq_errno()
 * then says which), or -1 when the message had more than max frames (then
 * it is dropped whole, so the socket stays in step: a caller that expects
 * exactly max frames treats it as malformed). flags apply to the first
 * frame only. On a positive return the caller closes the frames with
 * frames_close(). */
int frames_recv(void *socket, zmq_msg_t *frames, int max, int flags);

void frames_close(zmq_msg_t *frames, int count);

/* True when frame holds exactly the bytes of text. */
int frames_is(zmq_msg_t *frame, const char *text);

#endif

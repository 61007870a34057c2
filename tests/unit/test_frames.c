/*  test_frames.c - frames_recv, the raw multipart reader (protocol/frames.h).
 *
 *  Over an inproc PAIR: a message of up to max frames arrives whole; one
 *  of more frames is dropped whole (-1) and the next message still reads
 *  as sent, so the socket stays in step; with nothing waiting under
 *  ZMQ_DONTWAIT the answer is 0 with EAGAIN in zmq_errno(), which is how
 *  the load tools tell "no message" from a socket error. Receives have a
 *  timeout, so a message that never comes fails the test instead of
 *  hanging it.
 */
#include "tests/testutil.h"

#include "protocol/frames.h"

#include <czmq.h>
#include <errno.h>

typedef struct {
    zsock_t *in, *out;
} pair_t;

static int s_setup(void **state)
{
    static int serial = 0; /* test-local: one endpoint per test */
    char endpoint[64];
    snprintf(endpoint, sizeof endpoint, "inproc://test-frames-%d", ++serial);
    pair_t *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->in = zsock_new(ZMQ_PAIR);
    p->out = zsock_new(ZMQ_PAIR);
    assert_true(p->in && p->out);
    assert_int_equal(zsock_bind(p->in, "%s", endpoint), 0);
    assert_int_equal(zsock_connect(p->out, "%s", endpoint), 0);
    zsock_set_rcvtimeo(p->in, 2000);
    *state = p;
    return 0;
}

static int s_teardown(void **state)
{
    pair_t *p = *state;
    zsock_destroy(&p->in);
    zsock_destroy(&p->out);
    free(p);
    return 0;
}

/* Sends the strings of parts (NULL-terminated) as one message. */
static void s_send(zsock_t *sock, const char *const *parts)
{
    for (size_t i = 0; parts[i]; i++)
        assert_int_equal(parts[i + 1] ? zstr_sendm(sock, parts[i]) : zstr_send(sock, parts[i]), 0);
}

static void test_whole_message(void **state)
{
    pair_t *p = *state;
    s_send(p->out, (const char *const[]){"a", "", "ccc", NULL});
    zmq_msg_t frames[3];
    assert_int_equal(frames_recv(zsock_resolve(p->in), frames, 3, 0), 3);
    assert_true(frames_is(&frames[0], "a"));
    assert_true(frames_is(&frames[1], ""));
    assert_true(frames_is(&frames[2], "ccc"));
    assert_false(frames_is(&frames[2], "cc"));
    frames_close(frames, 3);

    /* fewer frames than max: the count says how many */
    s_send(p->out, (const char *const[]){"one", NULL});
    assert_int_equal(frames_recv(zsock_resolve(p->in), frames, 3, 0), 1);
    assert_true(frames_is(&frames[0], "one"));
    frames_close(frames, 1);
}

static void test_too_many_frames_dropped_whole(void **state)
{
    pair_t *p = *state;
    s_send(p->out, (const char *const[]){"1", "2", "3", "4", "5", NULL});
    s_send(p->out, (const char *const[]){"next", "message", NULL});
    zmq_msg_t frames[3];
    assert_int_equal(frames_recv(zsock_resolve(p->in), frames, 3, 0), -1);
    /* in step: the next message, not frames 4 and 5 of the last */
    assert_int_equal(frames_recv(zsock_resolve(p->in), frames, 3, 0), 2);
    assert_true(frames_is(&frames[0], "next"));
    assert_true(frames_is(&frames[1], "message"));
    frames_close(frames, 2);
}

static void test_nothing_waiting_is_eagain(void **state)
{
    pair_t *p = *state;
    zmq_msg_t frames[3];
    errno = 0;
    assert_int_equal(frames_recv(zsock_resolve(p->in), frames, 3, ZMQ_DONTWAIT), 0);
    assert_int_equal(zmq_errno(), EAGAIN);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_whole_message, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_too_many_frames_dropped_whole, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_nothing_waiting_is_eagain, s_setup, s_teardown),
    };
    zsys_init();
    zsys_set_linger(0);
    int failed = cmocka_run_group_tests_name("frames", tests, NULL, NULL);
    zsys_shutdown();
    return failed;
}

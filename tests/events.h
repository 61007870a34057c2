/*  events.h - helpers for the tests of the outbox and of the events the
 *  stores append to it (storage/outbox.h).
 *
 *  te_events_read reads an outbox's committed events into memory and
 *  decodes each one as a subscriber would: the message must be the map
 *  {type, seq, at, source, data} with exactly those five keys, and its
 *  type and seq must be the ones outbox_read reports for it (ok says
 *  whether all of that held; a test asserts it). The data is kept as a
 *  msgpack object for te_event_* to look into.
 *
 *  te_gate holds an environment's committer in a write of its own until
 *  released, so that writes submitted meanwhile (kv_submit) make one
 *  batch of known content, each in its nested transaction (storage/kv.h).
 *  The gate waits on a condition variable, never a sleep.
 */
#ifndef RETAIL_TESTS_EVENTS_H
#define RETAIL_TESTS_EVENTS_H

#include <msgpack.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/kv.h"
#include "storage/outbox.h"

typedef struct {
    uint64_t seq;
    char type[OUTBOX_TYPE_MAX + 1];
    char source[OUTBOX_SOURCE_MAX + 1];
    int64_t at_ms;
    bool ok;                    /* the message decoded as described above */
    const msgpack_object *data; /* the data (into unpacked), NULL when !ok */
    char *bytes;                /* a copy of the message */
    size_t bytes_len;
    msgpack_unpacked unpacked;
} te_event_t;

typedef struct {
    int n, cap;
    te_event_t *items;
    int rc; /* outbox_read's (-1: out of memory) */
} te_events_t;

/* Every committed event from seq `from` on (at most 100000). */
te_events_t *te_events_read(outbox_t *outbox, uint64_t from);
void te_events_destroy(te_events_t **self_p);
/* The committed events, asserted to be exactly n, seq 1..n, each decoded
 * and of source, none mentioning any string of never (NULL-terminated;
 * secrets, say). */
te_events_t *te_events_expect(outbox_t *outbox, int n, const char *source,
                              const char *const *never);
/* How many events of that type. */
int te_events_count(const te_events_t *self, const char *type);
/* The nth (0-based) event of that type, or NULL. */
const te_event_t *te_events_find(const te_events_t *self, const char *type, int nth);

/* The data's value under key, or NULL. */
const msgpack_object *te_event_field(const te_event_t *event, const char *key);
/* How many keys the data has (-1: not a map). */
int te_event_fields(const te_event_t *event);
/* Whether the value under key is the string want. */
bool te_event_str_is(const te_event_t *event, const char *key, const char *want);
/* The integer under key, or INT64_MIN when there is none. */
int64_t te_event_int(const te_event_t *event, const char *key);
/* Whether the message's bytes anywhere hold the string needle (a secret
 * must not be there). */
bool te_event_mentions(const te_event_t *event, const char *needle);

/* Makes the outbox in kv's database meta_db fail every append (its
 * counter made malformed: outbox_event_put answers MDB_CORRUPTED) when
 * broken, or mends it (the counter put back as it was). For the tests
 * that a write whose event cannot be stored fails and leaves nothing.
 * 0, or an LMDB error. */
int te_outbox_break(kv_t *kv, int meta_db, bool broken);

typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool running, released;
    kv_job_t job;
} te_gate_t;

/* Submits the gate's write to kv (its job comes back to inbox) and waits
 * until the committer runs it. */
void te_gate_hold(te_gate_t *gate, kv_t *kv, kv_inbox_t *inbox);
/* Lets the gate's write return. */
void te_gate_release(te_gate_t *gate);
void te_gate_destroy(te_gate_t *gate);

/* Waits (poll(2) on the inbox, bounded) until n jobs are back; false when
 * they did not come within 10 s. */
bool te_inbox_wait(kv_inbox_t *inbox, int n);

#endif

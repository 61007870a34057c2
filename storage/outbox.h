/*  outbox.h - a service's transactional outbox: the events of its
 *  committed changes, numbered, in its own LMDB environment.
 *
 *  Why: an event must be published for every committed change and for
 *  committed changes only, even across a crash. A write function that
 *  published directly could announce a change whose batch then failed to
 *  commit (kv.h: group commit), and a crash after a commit would lose the
 *  event of a change that stays. So a write function only appends its
 *  events here, inside its own (nested) transaction; they are stored or
 *  undone with the change they describe. A relay (actors/relay.h) reads
 *  what has committed and publishes it, in order, afterwards.
 *
 *  Numbering: every event of a source (the service, e.g. "orders") gets
 *  the next `seq`, starting at 1, with no gaps: the counter lives in the
 *  environment and is read and advanced inside the appending transaction,
 *  so a write that is undone takes its numbers back with it, and writes
 *  run one at a time on the environment's committer (kv.h).
 *
 *  Databases, opened by the environment's owner among its own (their
 *  names are OUTBOX_DB_EVENTS and OUTBOX_DB_META) and handed over by
 *  index:
 *    events  seq (8 bytes, big-endian) -> the event as published: a
 *            msgpack map {type, seq, at, source, data}
 *    meta    "next"      -> the seq the next event gets (8 bytes, BE)
 *            "published" -> the highest seq the relay has handed to the
 *                           stream (8 bytes, BE); a crash may publish
 *                           again what follows it, never skip it
 *
 *  Trimming: events the relay has published are kept for keep_ms and at
 *  most keep_count of them (outbox_trim, called by the relay); an event
 *  not yet published is never trimmed, whatever its age.
 *
 *  Threads: outbox_event_* run inside write functions, on the
 *  environment's committer thread, and share one scratch buffer that only
 *  that thread touches. Reads (outbox_read, outbox_state) open their own
 *  read transaction and may run on any thread. outbox_mark_published and
 *  outbox_trim wait for their commit (kv_write): for the relay's thread.
 *
 *  Ownership: the kv_t is the caller's and must outlive the outbox.
 *  Event bytes handed to an outbox_each_fn live in the environment's map
 *  and are valid only during that call.
 */
#ifndef RETAIL_OUTBOX_H
#define RETAIL_OUTBOX_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "storage/kv.h"

#define OUTBOX_DB_EVENTS "outbox"
#define OUTBOX_DB_META "outbox_meta"

#define OUTBOX_SOURCE_MAX 31
#define OUTBOX_TYPE_MAX 63
/* An event's data is at most this many msgpack bytes. */
#define OUTBOX_DATA_MAX                                                                            \
    (64 * 1024) /* an order of 100 items with the longest skus needs about 15 KiB */

typedef struct {
    const char *source; /* the service's name: every event's `source` */
    int64_t keep_ms;    /* published events older than this are trimmed; 0: no limit */
    long keep_count;    /* published events beyond the newest keep_count are trimmed; 0: no limit */
    bool off;           /* append nothing (benchmarks: what the outbox costs) */
} outbox_config_t;

typedef struct outbox_t outbox_t;

/* The outbox in kv's databases at indexes events_db and meta_db. The
 * config is copied. NULL with a reason in err. */
outbox_t *outbox_new(kv_t *kv, int events_db, int meta_db, const outbox_config_t *config, char *err,
                     size_t errlen);
void outbox_destroy(outbox_t **self_p);

const char *outbox_source(const outbox_t *self);
kv_t *outbox_kv(outbox_t *self);

/* ---- appending, inside a write function ----
 *
 *      msgpack_packer *pk = outbox_event(outbox, "order.paid");
 *      msgpack_pack_map(pk, 2); ...                  // exactly one value: the data
 *      int rc = outbox_event_put(outbox, txn);       // 0, or undo the write
 *
 * outbox_event starts an event of that type (NULL: the outbox is off or
 * the type is too long; then pack nothing and skip the put).
 * outbox_event_put numbers it and stores it in txn; it returns 0, or an
 * LMDB error (or -1: data over OUTBOX_DATA_MAX or not one msgpack value)
 * that the write function must return so that its change is undone too. */
msgpack_packer *outbox_event(outbox_t *self, const char *type);
int outbox_event_put(outbox_t *self, MDB_txn *txn);

/* For packing an event's data map: a key and a string or integer value. */
void outbox_pack_str(msgpack_packer *pk, const char *key, const char *value);
void outbox_pack_int(msgpack_packer *pk, const char *key, int64_t value);

/* ---- reading ---- */

typedef struct {
    uint64_t seq;
    int64_t at_ms;    /* when it was appended (unix ms) */
    const char *type; /* not NUL-terminated: type_len bytes */
    size_t type_len;
    const uint8_t *message; /* the whole event as published (msgpack map) */
    size_t message_len;
} outbox_event_t;

/* Non-zero stops the walk (and is returned by outbox_read). */
typedef int outbox_each_fn(const outbox_event_t *event, void *arg);

/* Calls fn for the committed events from seq `from` on, in order, at most
 * max of them, in one read transaction. Returns 0 (or fn's non-zero), or
 * an LMDB error. */
int outbox_read(outbox_t *self, uint64_t from, int max, outbox_each_fn *fn, void *arg);

typedef struct {
    uint64_t first;                /* the oldest event kept; 0 when none is */
    uint64_t next;                 /* the seq the next event will get (last committed + 1) */
    uint64_t published;            /* the highest seq handed to the stream; 0: none */
    int64_t oldest_unpublished_ms; /* at_ms of published + 1; 0 when all are */
} outbox_state_t;

/* The outbox as committed now, in one read transaction. 0 or an LMDB error. */
int outbox_state(outbox_t *self, outbox_state_t *out);

/* ---- the relay's writes (each waits for its commit) ---- */

/* Records that every event up to seq was handed to the stream (a lower
 * seq than the one stored changes nothing). 0 or an LMDB error. */
int outbox_mark_published(outbox_t *self, uint64_t seq);

/* Deletes, oldest first, at most max published events that the config's
 * limits no longer keep at now_ms; *trimmed (may be NULL) gets how many.
 * 0 or an LMDB error. */
int outbox_trim(outbox_t *self, int64_t now_ms, int max, int *trimmed);

#endif

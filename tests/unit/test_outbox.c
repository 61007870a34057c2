/*  test_outbox.c - the transactional outbox (storage/outbox.h), on a
 *  fresh environment per test.
 *
 *  Numbering: events get seq 1, 2, 3... with no gap, also inside one
 *  group-committed batch where a write that appended its event is then
 *  refused (its nested transaction undone, its number given back): the
 *  batch is made by holding the committer in a gate write while the
 *  others are submitted (kv_submit), so its content is known. The
 *  counter lives in the environment: a reopen goes on from it. Each
 *  stored event is the map {type, seq, at, source, data} with the data
 *  exactly as packed.
 *
 *  Reading: outbox_read from a seq, with a max, and a callback that
 *  stops it; outbox_state before anything, after appends, and as the
 *  relay marks events published (a lower mark changes nothing).
 *  Trimming: by count and by age (the time is an argument: no waiting),
 *  at most max per call, and never an event not yet published, whatever
 *  the limits say. Off: nothing is appended and no number is used. Bad
 *  input: a source too long or missing, a type too long, a put with no
 *  data or too much of it.
 */
#include "storage/outbox.h"
#include "protocol/clock.h"
#include "tests/events.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { S_DB_DATA, S_DB_EVENTS, S_DB_META, S_DBS };

typedef struct {
    char *dir;
    kv_t *kv;
    outbox_t *outbox;
} fx_t;

static kv_t *s_kv_open(const char *dir)
{
    const char *names[S_DBS] = {"data", OUTBOX_DB_EVENTS, OUTBOX_DB_META};
    char err[256] = "";
    kv_t *kv = kv_open(dir, (size_t)1 << 26, names, NULL, S_DBS, err, sizeof err);
    if (!kv)
        print_error("kv_open: %s\n", err);
    assert_non_null(kv);
    return kv;
}

static outbox_t *s_outbox(kv_t *kv, const outbox_config_t *config)
{
    char err[256] = "";
    outbox_t *outbox = outbox_new(kv, S_DB_EVENTS, S_DB_META, config, err, sizeof err);
    if (!outbox)
        print_error("outbox_new: %s\n", err);
    assert_non_null(outbox);
    return outbox;
}

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    *state = f;
    f->dir = tu_tempdir("test-outbox");
    f->kv = s_kv_open(f->dir);
    f->outbox = s_outbox(f->kv, &(outbox_config_t){.source = "tests"});
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    outbox_destroy(&f->outbox);
    assert_null(f->outbox);
    kv_close(&f->kv);
    tu_rmtree(f->dir);
    zstr_free(&f->dir);
    free(f);
    return 0;
}

/* One write: puts key n into data, appends the event `type` {n} and then
 * keeps it, or refuses (answer non-zero) after appending. */
typedef struct {
    outbox_t *outbox;
    MDB_dbi data;
    const char *type;
    int64_t n;
    int answer;
    int put_rc; /* outbox_event_put's */
} s_append_t;

static int s_append_txn(MDB_txn *txn, void *arg)
{
    s_append_t *a = arg;
    char key[32];
    snprintf(key, sizeof key, "k%lld", (long long)a->n);
    MDB_val k = {strlen(key), key}, v = {0, ""};
    int rc = mdb_put(txn, a->data, &k, &v, 0);
    if (rc != 0)
        return rc;
    msgpack_packer *pk = outbox_event(a->outbox, a->type);
    if (pk) {
        msgpack_pack_map(pk, 1);
        msgpack_pack_str_with_body(pk, "n", 1);
        msgpack_pack_int64(pk, a->n);
        if ((a->put_rc = outbox_event_put(a->outbox, txn)) != 0)
            return a->put_rc;
    }
    return a->answer;
}

/* Appends events "t.<n>" {n} for n in [from, to], one write each. */
static void s_append(fx_t *f, int64_t from, int64_t to)
{
    for (int64_t n = from; n <= to; n++) {
        char type[16];
        snprintf(type, sizeof type, "t.%lld", (long long)n);
        s_append_t a = {f->outbox, kv_dbi(f->kv, S_DB_DATA), type, n, 0, -99};
        int result = -1;
        assert_int_equal(kv_write(f->kv, s_append_txn, &a, &result), 0);
        assert_int_equal(result, 0);
        assert_int_equal(a.put_rc, 0);
    }
}

static bool s_has_key(kv_t *kv, int64_t n)
{
    char key[32];
    snprintf(key, sizeof key, "k%lld", (long long)n);
    MDB_txn *txn;
    assert_int_equal(mdb_txn_begin(kv_mdb(kv), NULL, MDB_RDONLY, &txn), 0);
    MDB_val k = {strlen(key), key}, v;
    int rc = mdb_get(txn, kv_dbi(kv, S_DB_DATA), &k, &v);
    mdb_txn_abort(txn);
    return rc == 0;
}

/* The events read from seq `from` are exactly seq first, first + 1, ...
 * with data {n: ns[i]}, type "t.<n>", source "tests". */
static void s_expect_at(fx_t *f, uint64_t from, uint64_t first, int count, const int64_t *ns)
{
    te_events_t *es = te_events_read(f->outbox, from);
    assert_non_null(es);
    assert_int_equal(es->rc, 0);
    assert_int_equal(es->n, count);
    for (int i = 0; i < count; i++) {
        const te_event_t *e = &es->items[i];
        char type[16];
        snprintf(type, sizeof type, "t.%lld", (long long)ns[i]);
        assert_true(e->ok);
        assert_int_equal(e->seq, first + (uint64_t)i);
        assert_string_equal(e->type, type);
        assert_string_equal(e->source, "tests");
        assert_int_equal(te_event_fields(e), 1);
        assert_int_equal(te_event_int(e, "n"), ns[i]);
    }
    te_events_destroy(&es);
}

/* The same, read from the first expected. */
static void s_expect(fx_t *f, uint64_t from, int count, const int64_t *ns)
{
    s_expect_at(f, from, from, count, ns);
}

/* ---- numbering ---- */

static void test_numbers_from_one(void **state)
{
    fx_t *f = *state;
    assert_string_equal(outbox_source(f->outbox), "tests");
    assert_ptr_equal(outbox_kv(f->outbox), f->kv);
    int64_t before = clock_now_ms();
    s_append(f, 1, 3);
    s_expect(f, 1, 3, (int64_t[]){1, 2, 3});
    te_events_t *es = te_events_read(f->outbox, 1);
    for (int i = 0; i < es->n; i++) {
        assert_true(es->items[i].at_ms >= before);
        assert_true(es->items[i].at_ms <= clock_now_ms());
    }
    te_events_destroy(&es);

    /* a refused write takes its event and its number with it */
    s_append_t refused = {f->outbox, kv_dbi(f->kv, S_DB_DATA), "t.99", 99, 7, -99};
    int result = 0;
    assert_int_equal(kv_write(f->kv, s_append_txn, &refused, &result), 0);
    assert_int_equal(result, 7);
    assert_int_equal(refused.put_rc, 0); /* it was appended, then undone */
    assert_false(s_has_key(f->kv, 99));
    s_append(f, 4, 4);
    s_expect(f, 1, 4, (int64_t[]){1, 2, 3, 4});

    /* the counter is in the environment: a reopen goes on from it */
    outbox_destroy(&f->outbox);
    kv_close(&f->kv);
    f->kv = s_kv_open(f->dir);
    f->outbox = s_outbox(f->kv, &(outbox_config_t){.source = "tests"});
    s_append(f, 5, 5);
    s_expect(f, 1, 5, (int64_t[]){1, 2, 3, 4, 5});
}

#define S_BATCH 6

static void test_batch_without_gaps(void **state)
{
    fx_t *f = *state;
    s_append(f, 1, 1);
    kv_inbox_t *inbox = kv_inbox_new();
    assert_non_null(inbox);
    te_gate_t gate;
    te_gate_hold(&gate, f->kv, inbox);
    unsigned long writes0, commits0;
    kv_write_stats(f->kv, &writes0, &commits0);

    /* one batch of six, the third and the fifth refused after appending */
    s_append_t a[S_BATCH];
    kv_job_t jobs[S_BATCH];
    char types[S_BATCH][16];
    for (int i = 0; i < S_BATCH; i++) {
        snprintf(types[i], sizeof types[i], "t.%d", 10 + i);
        a[i] = (s_append_t){f->outbox, kv_dbi(f->kv, S_DB_DATA), types[i],
                            10 + i,    i == 2 || i == 4 ? 5 : 0, -99};
        jobs[i] = (kv_job_t){.fn = s_append_txn, .arg = &a[i]};
        kv_submit(f->kv, &jobs[i], inbox);
    }
    assert_int_equal(kv_write_pending(f->kv), S_BATCH);
    te_gate_release(&gate);
    assert_true(te_inbox_wait(inbox, 1 + S_BATCH));
    for (int i = 0; i < S_BATCH; i++) {
        assert_int_equal(jobs[i].rc, 0);
        assert_int_equal(jobs[i].result, i == 2 || i == 4 ? 5 : 0);
        assert_int_equal(a[i].put_rc, 0);
        assert_int_equal(s_has_key(f->kv, 10 + i), !(i == 2 || i == 4));
    }
    /* a write waited for runs in a later batch: once it is back, the
     * counters hold the gate's batch, the six's (one commit for all six)
     * and its own */
    int result = 0;
    assert_int_equal(kv_write(f->kv, s_append_txn,
                              &(s_append_t){f->outbox, kv_dbi(f->kv, S_DB_DATA), "t.20", 20, 0, 0},
                              &result),
                     0);
    unsigned long writes1, commits1;
    kv_write_stats(f->kv, &writes1, &commits1);
    assert_int_equal(writes1 - writes0, 1 + S_BATCH + 1);
    assert_int_equal(commits1 - commits0, 3);
    s_expect(f, 1, 6, (int64_t[]){1, 10, 11, 13, 15, 20});
    outbox_state_t st;
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.next, 7);
    te_gate_destroy(&gate);
    kv_inbox_destroy(&inbox);
}

/* ---- reading ---- */

static int s_stop_at_3(const outbox_event_t *event, void *arg)
{
    int *seen = arg;
    (*seen)++;
    return event->seq == 3 ? 42 : 0;
}

static void test_read_from(void **state)
{
    fx_t *f = *state;
    s_expect(f, 1, 0, NULL);
    s_append(f, 1, 5);
    s_expect(f, 3, 3, (int64_t[]){3, 4, 5});
    s_expect(f, 5, 1, (int64_t[]){5});
    s_expect(f, 6, 0, NULL);
    s_expect(f, 1000, 0, NULL);
    int seen = 0;
    assert_int_equal(outbox_read(f->outbox, 2, 2, s_stop_at_3, &seen), 42);
    assert_int_equal(seen, 2);
    seen = 0;
    assert_int_equal(outbox_read(f->outbox, 4, 1, s_stop_at_3, &seen), 0);
    assert_int_equal(seen, 1); /* max */
}

static void test_state_and_marks(void **state)
{
    fx_t *f = *state;
    outbox_state_t st;
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.first, 0);
    assert_int_equal(st.next, 1);
    assert_int_equal(st.published, 0);
    assert_int_equal(st.oldest_unpublished_ms, 0);

    s_append(f, 1, 5);
    te_events_t *es = te_events_read(f->outbox, 1);
    assert_int_equal(es->n, 5);
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.first, 1);
    assert_int_equal(st.next, 6);
    assert_int_equal(st.published, 0);
    assert_int_equal(st.oldest_unpublished_ms, es->items[0].at_ms);

    assert_int_equal(outbox_mark_published(f->outbox, 3), 0);
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.published, 3);
    assert_int_equal(st.oldest_unpublished_ms, es->items[3].at_ms);
    /* a lower mark (a relay behind another) changes nothing */
    assert_int_equal(outbox_mark_published(f->outbox, 2), 0);
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.published, 3);

    assert_int_equal(outbox_mark_published(f->outbox, 5), 0);
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.published, 5);
    assert_int_equal(st.oldest_unpublished_ms, 0);
    assert_int_equal(st.first, 1); /* published is not trimmed */
    te_events_destroy(&es);
}

/* ---- trimming ---- */

static void test_trim_by_count(void **state)
{
    fx_t *f = *state;
    outbox_destroy(&f->outbox);
    f->outbox = s_outbox(f->kv, &(outbox_config_t){.source = "tests", .keep_count = 2});
    s_append(f, 1, 6);
    int64_t now = clock_now_ms();
    int trimmed = -1;
    /* nothing published: nothing goes, however many there are */
    assert_int_equal(outbox_trim(f->outbox, now, 100, &trimmed), 0);
    assert_int_equal(trimmed, 0);
    s_expect(f, 1, 6, (int64_t[]){1, 2, 3, 4, 5, 6});

    /* published up to 2: those two go, 3 and 4 wait for the relay */
    assert_int_equal(outbox_mark_published(f->outbox, 2), 0);
    assert_int_equal(outbox_trim(f->outbox, now, 100, &trimmed), 0);
    assert_int_equal(trimmed, 2);
    s_expect_at(f, 1, 3, 4, (int64_t[]){3, 4, 5, 6});
    outbox_state_t st;
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.first, 3);
    assert_int_equal(st.next, 7);

    /* all published: the newest two stay, at most max per call */
    assert_int_equal(outbox_mark_published(f->outbox, 6), 0);
    assert_int_equal(outbox_trim(f->outbox, now, 1, &trimmed), 0);
    assert_int_equal(trimmed, 1);
    assert_int_equal(outbox_trim(f->outbox, now, 100, &trimmed), 0);
    assert_int_equal(trimmed, 1);
    assert_int_equal(outbox_trim(f->outbox, now, 100, NULL), 0);
    s_expect_at(f, 1, 5, 2, (int64_t[]){5, 6});
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.first, 5);

    /* numbering goes on after a trim */
    s_append(f, 7, 7);
    s_expect(f, 5, 3, (int64_t[]){5, 6, 7});
}

static void test_trim_by_age(void **state)
{
    fx_t *f = *state;
    outbox_destroy(&f->outbox);
    f->outbox = s_outbox(f->kv, &(outbox_config_t){.source = "tests", .keep_ms = 1000});
    s_append(f, 1, 4);
    te_events_t *es = te_events_read(f->outbox, 1);
    assert_int_equal(es->n, 4);
    int64_t first = es->items[0].at_ms, last = es->items[3].at_ms;
    te_events_destroy(&es);
    assert_int_equal(outbox_mark_published(f->outbox, 3), 0);
    int trimmed = -1;
    /* the oldest is exactly keep_ms old: all kept */
    assert_int_equal(outbox_trim(f->outbox, first + 1000, 100, &trimmed), 0);
    assert_int_equal(trimmed, 0);
    s_expect(f, 1, 4, (int64_t[]){1, 2, 3, 4});
    /* older than keep_ms: the published ones go, never the fourth */
    assert_int_equal(outbox_trim(f->outbox, last + 100000, 100, &trimmed), 0);
    assert_int_equal(trimmed, 3);
    s_expect_at(f, 1, 4, 1, (int64_t[]){4});
    outbox_state_t st;
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.first, 4);
    assert_int_equal(st.oldest_unpublished_ms, last);
    assert_int_equal(outbox_mark_published(f->outbox, 4), 0);
    assert_int_equal(outbox_trim(f->outbox, last + 100000, 100, &trimmed), 0);
    assert_int_equal(trimmed, 1);
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.first, 0);
    assert_int_equal(st.next, 5);
}

static void test_no_limits_keep_all(void **state)
{
    fx_t *f = *state;
    s_append(f, 1, 3);
    assert_int_equal(outbox_mark_published(f->outbox, 3), 0);
    int trimmed = -1;
    assert_int_equal(outbox_trim(f->outbox, clock_now_ms() + 86400000, 100, &trimmed), 0);
    assert_int_equal(trimmed, 0);
    s_expect(f, 1, 3, (int64_t[]){1, 2, 3});
}

/* ---- off, and bad input ---- */

static void test_off(void **state)
{
    fx_t *f = *state;
    outbox_destroy(&f->outbox);
    f->outbox = s_outbox(f->kv, &(outbox_config_t){.source = "tests", .off = true});
    assert_null(outbox_event(f->outbox, "t.1"));
    s_append_t a = {f->outbox, kv_dbi(f->kv, S_DB_DATA), "t.1", 1, 0, -99};
    int result = -1;
    assert_int_equal(kv_write(f->kv, s_append_txn, &a, &result), 0);
    assert_int_equal(result, 0);
    assert_int_equal(a.put_rc, -99);  /* nothing to put */
    assert_true(s_has_key(f->kv, 1)); /* the change itself stands */
    outbox_state_t st;
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.next, 1);
    assert_int_equal(st.first, 0);
    s_expect(f, 1, 0, NULL);
    /* a NULL outbox is no outbox */
    assert_null(outbox_event(NULL, "t.1"));
}

typedef struct {
    outbox_t *outbox;
    bool begin;      /* outbox_event first */
    size_t data_len; /* bytes of a bin to pack; 0: pack nothing */
    bool began;
    int put_rc;
} s_bad_put_t;

/* Runs on the committer's thread: records, the test thread asserts. */
static int s_bad_put_txn(MDB_txn *txn, void *arg)
{
    s_bad_put_t *b = arg;
    msgpack_packer *pk = b->begin ? outbox_event(b->outbox, "t.bad") : NULL;
    b->began = pk != NULL;
    if (pk && b->data_len) {
        char *bytes = calloc(1, b->data_len);
        if (bytes)
            msgpack_pack_bin_with_body(pk, bytes, b->data_len);
        free(bytes);
    }
    b->put_rc = outbox_event_put(b->outbox, txn);
    return b->put_rc;
}

static void test_bad_input(void **state)
{
    fx_t *f = *state;
    char err[256] = "";
    assert_null(outbox_new(f->kv, S_DB_EVENTS, S_DB_META, &(outbox_config_t){.source = ""}, err,
                           sizeof err));
    assert_true(strlen(err) > 0);
    err[0] = '\0';
    assert_null(outbox_new(f->kv, S_DB_EVENTS, S_DB_META, &(outbox_config_t){0}, err, sizeof err));
    assert_true(strlen(err) > 0);
    char long_name[OUTBOX_SOURCE_MAX + 2];
    memset(long_name, 'a', sizeof long_name - 1);
    long_name[sizeof long_name - 1] = '\0';
    assert_null(outbox_new(f->kv, S_DB_EVENTS, S_DB_META, &(outbox_config_t){.source = long_name},
                           err, sizeof err));
    assert_null(outbox_new(NULL, S_DB_EVENTS, S_DB_META, &(outbox_config_t){.source = "x"}, err,
                           sizeof err));

    char long_type[OUTBOX_TYPE_MAX + 2];
    memset(long_type, 't', sizeof long_type - 1);
    long_type[sizeof long_type - 1] = '\0';
    assert_null(outbox_event(f->outbox, long_type));
    assert_null(outbox_event(f->outbox, ""));
    assert_null(outbox_event(f->outbox, NULL));

    /* a put with no event begun, with no data or with too much fails,
     * and the write with it */
    s_bad_put_t none = {.outbox = f->outbox, .begin = true},
                big = {.outbox = f->outbox, .begin = true, .data_len = OUTBOX_DATA_MAX + 1},
                unbegun = {.outbox = f->outbox};
    int result = 0;
    assert_int_equal(kv_write(f->kv, s_bad_put_txn, &none, &result), 0);
    assert_true(none.began);
    assert_int_equal(none.put_rc, -1);
    assert_int_equal(result, -1);
    assert_int_equal(kv_write(f->kv, s_bad_put_txn, &big, &result), 0);
    assert_true(big.began);
    assert_int_equal(big.put_rc, -1);
    assert_int_equal(kv_write(f->kv, s_bad_put_txn, &unbegun, &result), 0);
    assert_int_equal(unbegun.put_rc, -1);
    outbox_state_t st;
    assert_int_equal(outbox_state(f->outbox, &st), 0);
    assert_int_equal(st.next, 1);
    /* none of it used a number */
    s_append(f, 1, 1);
    s_expect(f, 1, 1, (int64_t[]){1});
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_numbers_from_one, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_batch_without_gaps, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_read_from, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_state_and_marks, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_trim_by_count, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_trim_by_age, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_no_limits_keep_all, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_off, s_setup, s_teardown),
        cmocka_unit_test_setup_teardown(test_bad_input, s_setup, s_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

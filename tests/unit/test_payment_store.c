/*  test_payment_store.c - the payment store and its transaction log
 *  (storage/payments/payment_store.h), on a fresh data and key directory
 *  per test.
 *
 *  Charges: begin is one payment per order, also from 20 threads at once;
 *  every event is tried from every status, and a refused one must change
 *  nothing and append nothing. Refunds: partial ones up to the captured
 *  amount, 20 threads racing 10 cents each on 100, one refund per key,
 *  ends and their repeats. Prepared writes (payment_write_t) of two
 *  payments submitted at once (kv_submit, an inbox polled): one batch
 *  behind a write that holds the committer, outcomes filled in the
 *  callers' structs, refusals that leave nothing, one chain. Reads: lists by order, status and time
 * range, newest first, across pages; pending payments; entries per payment and from a seq. The
 * check of the books (payment_store_check): clean, then two payments damaged on disk, each problem
 * named by check and id.
 *
 *  The log's hashes are recomputed here from the header's definition, not
 *  the store's code. Tampering is done on the real bytes: the store is
 *  closed, the test opens the LMDB environment itself and edits, deletes,
 *  swaps or forges records in the layout payment_store_impl.h documents
 *  (records re-encoded with msgpack-c here), reopens, and verify must
 *  name the entry that is wrong. A reopen keeps everything; no card number
 *  reaches the data directory, and fingerprints depend on the key file.
 *
 *  Events (payment_store_shared_set_outbox), read back from the outbox as
 *  a subscriber would (tests/events.h): payment.captured (also from a
 *  pair of events in one write), payment.failed (declined, gateway
 *  error) and payment.refunded (partial, then the rest) once each with
 *  exactly their fields and no card data; none for a begin, an
 *  authorization, a void, a new attempt, a refund begun or failed, a
 *  repeat or a refusal. A write whose event cannot be stored (the counter
 *  broken on purpose) fails with its log entry.
 */
#include "storage/payments/payment_store_impl.h"
#include "tests/events.h"
#include "tests/testutil.h"

#include <czmq.h>
#include <dirent.h>
#include <inttypes.h>
#include <msgpack.h>
#include <poll.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define S_CARD "4242424242424242"

typedef struct {
    char *dir;
    char data[512], keys[512];
    payment_store_shared_t *shared;
    payment_store_t *store;
    outbox_t *outbox; /* the events' tests' */
} fx_t;

static void s_open(fx_t *f)
{
    char err[256] = "";
    f->shared = payment_store_shared_new(f->data, f->keys, err, sizeof err);
    if (!f->shared)
        print_error("payment_store_shared_new: %s\n", err);
    assert_non_null(f->shared);
    f->store = payment_store_open(f->shared);
    assert_non_null(f->store);
}

static void s_close(fx_t *f)
{
    payment_store_close(&f->store);
    payment_store_shared_destroy(&f->shared);
    assert_null(f->shared);
}

static int s_setup(void **state)
{
    fx_t *f = calloc(1, sizeof *f);
    *state = f;
    f->dir = tu_tempdir("test-payment-store");
    snprintf(f->data, sizeof f->data, "%s/data", f->dir);
    snprintf(f->keys, sizeof f->keys, "%s/keys", f->dir);
    s_open(f);
    return 0;
}

static int s_teardown(void **state)
{
    fx_t *f = *state;
    s_close(f);
    outbox_destroy(&f->outbox);
    tu_rmtree(f->dir);
    zstr_free(&f->dir);
    free(f);
    return 0;
}

/* ---- helpers ---- */

static payment_t s_new(fx_t *f, const char *order, int64_t amount)
{
    payment_t p = {.amount_cents = amount, .exp_month = 12, .exp_year = 2031};
    snprintf(p.order_id, sizeof p.order_id, "%s", order);
    memcpy(p.currency, "EUR", 4);
    memcpy(p.brand, "visa", 5);
    memcpy(p.last4, "4242", 5);
    payment_card_fingerprint(f->shared, S_CARD, strlen(S_CARD), p.fingerprint);
    return p;
}

static void s_begin(fx_t *f, const char *order, int64_t amount, payment_t *out)
{
    payment_t p = s_new(f, order, amount);
    bool created = false;
    assert_int_equal(payment_store_begin(f->store, &p, out, &created), STORE_OK);
    assert_true(created);
}

static store_status_t s_event(fx_t *f, const char *id, payment_event_type_t type, int64_t amount,
                              payment_t *out)
{
    payment_event_t e = {.type = type,
                         .amount_cents = amount,
                         .gateway_id = type == PAYMENT_EVENT_AUTHORIZE ? "auth-1"
                                       : type == PAYMENT_EVENT_CAPTURE ? "cap-1"
                                                                       : NULL,
                         .reason = type == PAYMENT_EVENT_FAIL ? "card_declined" : NULL};
    return payment_store_apply(f->store, id, &e, out);
}

/* A payment of order, authorized and captured for amount. */
static void s_charge(fx_t *f, const char *order, int64_t amount, payment_t *out)
{
    s_begin(f, order, amount, out);
    char id[PAYMENT_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", out->id);
    assert_int_equal(s_event(f, id, PAYMENT_EVENT_AUTHORIZE, amount, out), STORE_OK);
    assert_int_equal(s_event(f, id, PAYMENT_EVENT_CAPTURE, amount, out), STORE_OK);
    assert_int_equal(out->status, PAYMENT_CAPTURED);
}

/* A refund of amount under key, begun and ended done. */
static void s_refund(fx_t *f, const char *id, const char *key, int64_t amount, payment_t *out)
{
    refund_t r;
    bool created = false;
    assert_int_equal(payment_store_refund_begin(f->store, id, key, amount, &r, out, &created),
                     STORE_OK);
    assert_true(created);
    assert_int_equal(payment_store_refund_end(f->store, key, true, "re-1", &r, out), STORE_OK);
    assert_int_equal(r.state, REFUND_DONE);
}

/* The entries, as log_each gives them (details copied). */
typedef struct {
    int count;
    log_entry_t e[1024];
    uint8_t details[1024][128];
    int stop_after; /* 0: never */
} s_entries_t;

static int s_collect(const log_entry_t *entry, void *arg)
{
    s_entries_t *es = arg;
    if (es->count < 1024) {
        es->e[es->count] = *entry;
        size_t n = entry->details_len < 128 ? entry->details_len : 128;
        memcpy(es->details[es->count], entry->details, n);
        es->e[es->count].details = es->details[es->count];
        es->e[es->count].details_len = n;
    }
    es->count++;
    return es->stop_after && es->count >= es->stop_after;
}

/* Field by field: padding bytes of a struct copy are not compared. */
static void s_assert_same(const payment_t *a, const payment_t *b)
{
    assert_string_equal(a->id, b->id);
    assert_string_equal(a->order_id, b->order_id);
    assert_int_equal(a->status, b->status);
    assert_int_equal(a->amount_cents, b->amount_cents);
    assert_int_equal(a->authorized_cents, b->authorized_cents);
    assert_int_equal(a->captured_cents, b->captured_cents);
    assert_int_equal(a->refunded_cents, b->refunded_cents);
    assert_int_equal(a->refunding_cents, b->refunding_cents);
    assert_string_equal(a->currency, b->currency);
    assert_string_equal(a->brand, b->brand);
    assert_string_equal(a->last4, b->last4);
    assert_int_equal(a->exp_month, b->exp_month);
    assert_int_equal(a->exp_year, b->exp_year);
    assert_string_equal(a->fingerprint, b->fingerprint);
    assert_string_equal(a->auth_id, b->auth_id);
    assert_string_equal(a->capture_id, b->capture_id);
    assert_string_equal(a->failure, b->failure);
    assert_int_equal(a->attempt, b->attempt);
    assert_int_equal(a->created_at_ms, b->created_at_ms);
    assert_int_equal(a->updated_at_ms, b->updated_at_ms);
}

static s_entries_t *s_entries(fx_t *f, uint64_t from, const char *payment_id)
{
    s_entries_t *es = calloc(1, sizeof *es);
    assert_int_equal(payment_log_each(f->store, from, payment_id, s_collect, es), STORE_OK);
    return es;
}

static int s_entry_count(fx_t *f)
{
    s_entries_t *es = s_entries(f, 1, NULL);
    int n = es->count;
    free(es);
    return n;
}

static void s_verify(fx_t *f, const char *expected, log_verify_t *v)
{
    assert_int_equal(payment_log_verify(f->store, expected, v), STORE_OK);
    if (!v->ok)
        print_message("      verify: bad_seq %" PRIu64 ": %s\n", v->bad_seq, v->problem);
}

static void s_assert_verify_fails(fx_t *f, const char *expected, uint64_t bad_seq,
                                  const char *words)
{
    log_verify_t v;
    s_verify(f, expected, &v);
    assert_false(v.ok);
    assert_int_equal(v.bad_seq, bad_seq);
    if (!strstr(v.problem, words))
        print_error("problem \"%s\" lacks \"%s\"\n", v.problem, words);
    assert_non_null(strstr(v.problem, words));
}

/* The hash of an entry, computed from payment_store.h's definition. */
static void s_hash_of(uint64_t seq, const char *type, const char *payment_id, const char *order_id,
                      int64_t amount, const char *currency, int64_t at, const void *details,
                      size_t details_len, const uint8_t prev[32], uint8_t out[32])
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_array(&pk, 8);
    msgpack_pack_uint64(&pk, seq);
    msgpack_pack_str_with_body(&pk, type, strlen(type));
    msgpack_pack_str_with_body(&pk, payment_id, strlen(payment_id));
    msgpack_pack_str_with_body(&pk, order_id, strlen(order_id));
    msgpack_pack_int64(&pk, amount);
    msgpack_pack_str_with_body(&pk, currency, strlen(currency));
    msgpack_pack_int64(&pk, at);
    msgpack_sbuffer_write(&buf, details, details_len);
    uint8_t *input = malloc(32 + buf.size);
    memcpy(input, prev, 32);
    memcpy(input + 32, buf.data, buf.size);
    crypto_generichash(out, 32, input, 32 + buf.size, NULL, 0);
    free(input);
    msgpack_sbuffer_destroy(&buf);
}

/* A log of n payments, each authorized and captured for 100 and refunded
 * 30 (3 entries each: seq 3i+1 .. 3i+3 for payment i); ids into ids. */
static void s_populate(fx_t *f, int n, char ids[][PAYMENT_ID_MAX + 1])
{
    for (int i = 0; i < n; i++) {
        char order[32], key[32];
        snprintf(order, sizeof order, "o-%d", i);
        snprintf(key, sizeof key, "r-%d", i);
        payment_t p;
        s_charge(f, order, 100, &p);
        s_refund(f, p.id, key, 30, &p);
        snprintf(ids[i], PAYMENT_ID_MAX + 1, "%s", p.id);
    }
    assert_int_equal(s_entry_count(f), 3 * n);
}

/* ---- raw LMDB, for tampering (the store is closed meanwhile) ---- */

typedef struct {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi[PAYMENT_STORE_DBS];
} s_raw_t;

static void s_raw_open(fx_t *f, s_raw_t *raw)
{
    s_close(f);
    char path[600];
    snprintf(path, sizeof path, "%s/payments", f->data);
    assert_int_equal(mdb_env_create(&raw->env), 0);
    assert_int_equal(mdb_env_set_maxdbs(raw->env, PAYMENT_STORE_DBS), 0);
    assert_int_equal(mdb_env_set_mapsize(raw->env, (size_t)16 << 30), 0);
    assert_int_equal(mdb_env_open(raw->env, path, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(raw->env, NULL, 0, &raw->txn), 0);
    for (int i = 0; i < PAYMENT_STORE_DBS; i++)
        assert_int_equal(mdb_dbi_open(raw->txn, payment_store_names[i], 0, &raw->dbi[i]), 0);
}

/* Commits the tampering and opens the store again. */
static void s_raw_close(fx_t *f, s_raw_t *raw)
{
    assert_int_equal(mdb_txn_commit(raw->txn), 0);
    mdb_env_close(raw->env);
    s_open(f);
}

static MDB_val s_seq_key(uint64_t seq, uint8_t buf[8])
{
    for (int i = 7; i >= 0; i--, seq >>= 8)
        buf[i] = (uint8_t)seq;
    return (MDB_val){8, buf};
}

/* The raw record of entry seq, copied into out (its size). */
static size_t s_raw_get(s_raw_t *raw, int db, MDB_val key, uint8_t *out, size_t cap)
{
    MDB_val val;
    assert_int_equal(mdb_get(raw->txn, raw->dbi[db], &key, &val), 0);
    assert_true(val.mv_size <= cap);
    memcpy(out, val.mv_data, val.mv_size);
    return val.mv_size;
}

static void s_raw_put(s_raw_t *raw, int db, MDB_val key, const void *data, size_t len)
{
    MDB_val val = {len, (void *)data};
    assert_int_equal(mdb_put(raw->txn, raw->dbi[db], &key, &val, 0), 0);
}

/* The record map with the value of `key` replaced by the str s, or the
 * int v when s is NULL (every other pair re-packed as it is); into out. */
static void s_map_set(const uint8_t *data, size_t len, const char *key, const char *s, int64_t v,
                      msgpack_sbuffer *out)
{
    msgpack_unpacked msg;
    msgpack_unpacked_init(&msg);
    assert_int_equal(msgpack_unpack_next(&msg, (const char *)data, len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    assert_int_equal(msg.data.type, MSGPACK_OBJECT_MAP);
    msgpack_sbuffer_init(out);
    msgpack_packer pk;
    msgpack_packer_init(&pk, out, msgpack_sbuffer_write);
    msgpack_object_map *map = &msg.data.via.map;
    msgpack_pack_map(&pk, map->size);
    bool found = false;
    for (uint32_t i = 0; i < map->size; i++) {
        msgpack_object *k = &map->ptr[i].key;
        msgpack_pack_object(&pk, *k);
        if (k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(key) &&
            memcmp(k->via.str.ptr, key, k->via.str.size) == 0) {
            if (s)
                msgpack_pack_str_with_body(&pk, s, strlen(s));
            else
                msgpack_pack_int64(&pk, v);
            found = true;
        } else
            msgpack_pack_object(&pk, map->ptr[i].val);
    }
    assert_true(found);
    msgpack_unpacked_destroy(&msg);
}

/* The int, str or bin value of key in a record map. */
static msgpack_object s_map_get(msgpack_unpacked *msg, const uint8_t *data, size_t len,
                                const char *key)
{
    msgpack_unpacked_init(msg);
    assert_int_equal(msgpack_unpack_next(msg, (const char *)data, len, NULL),
                     MSGPACK_UNPACK_SUCCESS);
    msgpack_object_map *map = &msg->data.via.map;
    for (uint32_t i = 0; i < map->size; i++) {
        msgpack_object *k = &map->ptr[i].key;
        if (k->via.str.size == strlen(key) && memcmp(k->via.str.ptr, key, k->via.str.size) == 0)
            return map->ptr[i].val;
    }
    fail_msg("no %s in the record", key);
    return msg->data;
}

/* Forges entry seq (a refund of amount for payment p, with prev as its
 * prev_hash and the hash computed properly over it) with its index key,
 * the way someone with the file but without the store would. */
static void s_raw_forge(s_raw_t *raw, uint64_t seq, const payment_t *p, int64_t amount,
                        const uint8_t prev[32])
{
    msgpack_sbuffer details;
    msgpack_sbuffer_init(&details);
    msgpack_packer dk;
    msgpack_packer_init(&dk, &details, msgpack_sbuffer_write);
    msgpack_pack_map(&dk, 1);
    msgpack_pack_str_with_body(&dk, "refund", 6);
    msgpack_pack_str_with_body(&dk, "forged", 6);
    int64_t at = 1700000000000;
    uint8_t hash[32];
    s_hash_of(seq, "refund", p->id, p->order_id, amount, p->currency, at, details.data,
              details.size, prev, hash);
    msgpack_sbuffer rec;
    msgpack_sbuffer_init(&rec);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &rec, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 9);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, "refund", 6);
    msgpack_pack_str_with_body(&pk, "payment_id", 10);
    msgpack_pack_str_with_body(&pk, p->id, strlen(p->id));
    msgpack_pack_str_with_body(&pk, "order_id", 8);
    msgpack_pack_str_with_body(&pk, p->order_id, strlen(p->order_id));
    msgpack_pack_str_with_body(&pk, "amount_cents", 12);
    msgpack_pack_int64(&pk, amount);
    msgpack_pack_str_with_body(&pk, "currency", 8);
    msgpack_pack_str_with_body(&pk, p->currency, strlen(p->currency));
    msgpack_pack_str_with_body(&pk, "at", 2);
    msgpack_pack_int64(&pk, at);
    msgpack_pack_str_with_body(&pk, "details", 7);
    msgpack_sbuffer_write(&rec, details.data, details.size);
    msgpack_pack_str_with_body(&pk, "prev_hash", 9);
    msgpack_pack_bin_with_body(&pk, prev, 32);
    msgpack_pack_str_with_body(&pk, "hash", 4);
    msgpack_pack_bin_with_body(&pk, hash, 32);
    uint8_t kb[8];
    s_raw_put(raw, PAYMENT_DB_LOG, s_seq_key(seq, kb), rec.data, rec.size);
    uint8_t ik[PAYMENT_INDEX_KEY_MAX];
    size_t id_len = strlen(p->id);
    memcpy(ik, p->id, id_len);
    ik[id_len] = 0;
    memcpy(ik + id_len + 1, s_seq_key(seq, kb).mv_data, 8);
    s_raw_put(raw, PAYMENT_DB_LOG_BY_PAYMENT, (MDB_val){id_len + 9, ik}, "", 0);
    msgpack_sbuffer_destroy(&rec);
    msgpack_sbuffer_destroy(&details);
}

/* ---- charges ---- */

static void test_begin_once(void **state)
{
    fx_t *f = *state;
    payment_t first, again;
    s_begin(f, "o-1", 1500, &first);
    assert_int_equal(first.status, PAYMENT_PENDING);
    assert_int_equal(first.attempt, 1);
    assert_int_equal(strlen(first.id), 21);
    assert_int_equal(first.id[0], 'p');
    /* Asked again, even for another amount: the first charge, unchanged. */
    payment_t other = s_new(f, "o-1", 999);
    bool created = true;
    assert_int_equal(payment_store_begin(f->store, &other, &again, &created), STORE_OK);
    assert_false(created);
    assert_string_equal(again.id, first.id);
    assert_int_equal(again.amount_cents, 1500);
    payment_t got;
    assert_int_equal(payment_store_by_order(f->store, "o-1", &got), STORE_OK);
    assert_string_equal(got.id, first.id);
    assert_int_equal(payment_store_get(f->store, first.id, &got), STORE_OK);
    assert_string_equal(got.order_id, "o-1");
    assert_string_equal(got.brand, "visa");
    assert_string_equal(got.last4, "4242");
    assert_string_equal(got.fingerprint, first.fingerprint);
    assert_int_equal(got.exp_year, 2031);
    assert_int_equal(payment_store_by_order(f->store, "o-2", &got), STORE_NOT_FOUND);
    assert_int_equal(payment_store_get(f->store, "pnothere", &got), STORE_NOT_FOUND);
    assert_int_equal(s_entry_count(f), 0); /* begin writes no entry */
    /* Arguments the store refuses. */
    payment_t bad = s_new(f, "o-3", 0);
    assert_int_equal(payment_store_begin(f->store, &bad, &got, &created), STORE_ERROR);
    bad = s_new(f, "o-3", 10);
    memcpy(bad.currency, "eu", 3);
    assert_int_equal(payment_store_begin(f->store, &bad, &got, &created), STORE_ERROR);
    bad = s_new(f, "o-3", 10);
    snprintf(bad.id, sizeof bad.id, "not-an-id");
    assert_int_equal(payment_store_begin(f->store, &bad, &got, &created), STORE_ERROR);
    /* No field takes a card number by mistake. */
    bad = s_new(f, "o-3", 10);
    snprintf(bad.fingerprint, sizeof bad.fingerprint, "%s", S_CARD);
    assert_int_equal(payment_store_begin(f->store, &bad, &got, &created), STORE_ERROR);
    bad = s_new(f, "o-3", 10);
    snprintf(bad.brand, sizeof bad.brand, "%s", S_CARD);
    assert_int_equal(payment_store_begin(f->store, &bad, &got, &created), STORE_ERROR);
    bad = s_new(f, "o-3", 10);
    snprintf(bad.last4, sizeof bad.last4, "42x2");
    assert_int_equal(payment_store_begin(f->store, &bad, &got, &created), STORE_ERROR);
    assert_int_equal(payment_store_by_order(f->store, "o-3", &got), STORE_NOT_FOUND);
}

typedef struct {
    payment_store_shared_t *shared;
    pthread_barrier_t *barrier;
    const char *order;
    int64_t amount;
    const char *key;
    char payment_id[PAYMENT_ID_MAX + 1];
    store_status_t status;
    bool created;
    char id[PAYMENT_ID_MAX + 1];
} s_racer_t;

static void *s_begin_racer(void *arg)
{
    s_racer_t *r = arg;
    payment_store_t *store = payment_store_open(r->shared);
    payment_t p = {.amount_cents = r->amount, .exp_month = 1, .exp_year = 2030};
    snprintf(p.order_id, sizeof p.order_id, "%s", r->order);
    memcpy(p.currency, "EUR", 4);
    payment_t out;
    pthread_barrier_wait(r->barrier);
    r->status = store ? payment_store_begin(store, &p, &out, &r->created) : STORE_ERROR;
    if (r->status == STORE_OK)
        snprintf(r->id, sizeof r->id, "%s", out.id);
    payment_store_close(&store);
    return NULL;
}

static void test_begin_concurrent(void **state)
{
    fx_t *f = *state;
    enum { N = 20 };
    s_racer_t racers[N];
    pthread_t threads[N];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N);
    for (int i = 0; i < N; i++) {
        racers[i] = (s_racer_t){
            .shared = f->shared, .barrier = &barrier, .order = "o-race", .amount = 100 + i};
        assert_int_equal(pthread_create(&threads[i], NULL, s_begin_racer, &racers[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);
    int created = 0, winner = -1;
    for (int i = 0; i < N; i++) {
        assert_int_equal(racers[i].status, STORE_OK);
        if (racers[i].created) {
            created++;
            winner = i;
        }
    }
    assert_int_equal(created, 1);
    for (int i = 0; i < N; i++)
        assert_string_equal(racers[i].id, racers[winner].id);
    payment_t p;
    assert_int_equal(payment_store_by_order(f->store, "o-race", &p), STORE_OK);
    assert_string_equal(p.id, racers[winner].id);
    assert_int_equal(p.amount_cents, racers[winner].amount);
    int n = 0;
    char next[PAYMENT_ID_MAX + 1];
    payment_t page[100];
    assert_int_equal(payment_store_list(f->store, &(payment_filter_t){0}, "", 100, page, &n, next),
                     STORE_OK);
    assert_int_equal(n, 1);
}

/* A fresh payment in status s (order named after tag). */
static void s_in_status(fx_t *f, payment_status_t s, const char *tag, payment_t *p)
{
    char order[64], key[64];
    snprintf(order, sizeof order, "o-%s", tag);
    snprintf(key, sizeof key, "k-%s", tag);
    switch (s) {
    case PAYMENT_PENDING:
        s_begin(f, order, 100, p);
        break;
    case PAYMENT_AUTHORIZED:
        s_begin(f, order, 100, p);
        assert_int_equal(s_event(f, p->id, PAYMENT_EVENT_AUTHORIZE, 100, p), STORE_OK);
        break;
    case PAYMENT_CAPTURED:
        s_charge(f, order, 100, p);
        break;
    case PAYMENT_PARTIALLY_REFUNDED:
        s_charge(f, order, 100, p);
        s_refund(f, p->id, key, 30, p);
        break;
    case PAYMENT_REFUNDED:
        s_charge(f, order, 100, p);
        s_refund(f, p->id, key, 0, p);
        break;
    case PAYMENT_FAILED:
        s_begin(f, order, 100, p);
        assert_int_equal(s_event(f, p->id, PAYMENT_EVENT_FAIL, 0, p), STORE_OK);
        break;
    case PAYMENT_VOIDED:
        s_begin(f, order, 100, p);
        assert_int_equal(s_event(f, p->id, PAYMENT_EVENT_AUTHORIZE, 100, p), STORE_OK);
        assert_int_equal(s_event(f, p->id, PAYMENT_EVENT_VOID, 0, p), STORE_OK);
        break;
    }
    assert_int_equal(p->status, s);
}

static void test_transitions(void **state)
{
    fx_t *f = *state;
    /* The header's table: which event each status allows, and where to. */
    static const payment_status_t to[4] = {PAYMENT_AUTHORIZED, PAYMENT_CAPTURED, PAYMENT_VOIDED,
                                           PAYMENT_FAILED};
    static const log_type_t entry[4] = {LOG_AUTHORIZE, LOG_CAPTURE, LOG_VOID, LOG_FAIL};
    static const bool allowed[7][4] = {
        [PAYMENT_PENDING] = {true, false, false, true},
        [PAYMENT_AUTHORIZED] = {false, true, true, true},
    };
    for (int s = PAYMENT_PENDING; s <= PAYMENT_VOIDED; s++)
        for (int e = PAYMENT_EVENT_AUTHORIZE; e <= PAYMENT_EVENT_FAIL; e++) {
            char tag[32];
            snprintf(tag, sizeof tag, "t-%d-%d", s, e);
            payment_t before, after;
            s_in_status(f, (payment_status_t)s, tag, &before);
            int entries = s_entry_count(f);
            store_status_t status = s_event(f, before.id, (payment_event_type_t)e, 100, &after);
            payment_t stored;
            assert_int_equal(payment_store_get(f->store, before.id, &stored), STORE_OK);
            if (!allowed[s][e]) {
                assert_int_equal(status, STORE_CONFLICT);
                s_assert_same(&stored, &before);
                assert_int_equal(s_entry_count(f), entries);
                continue;
            }
            assert_int_equal(status, STORE_OK);
            assert_int_equal(after.status, to[e]);
            s_assert_same(&stored, &after);
            s_entries_t *es = s_entries(f, 1, NULL);
            assert_int_equal(es->count, entries + 1);
            const log_entry_t *last = &es->e[es->count - 1];
            assert_int_equal(last->type, entry[e]);
            assert_string_equal(last->payment_id, before.id);
            assert_string_equal(last->order_id, before.order_id);
            assert_string_equal(last->currency, "EUR");
            free(es);
        }
    /* The sums: no authorization above the charge, no capture above the
     * authorization, none of nothing. */
    payment_t p;
    s_begin(f, "o-sums", 100, &p);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_AUTHORIZE, 101, &p), STORE_CONFLICT);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_AUTHORIZE, 0, &p), STORE_CONFLICT);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_AUTHORIZE, 80, &p), STORE_OK);
    assert_int_equal(p.authorized_cents, 80);
    assert_string_equal(p.auth_id, "auth-1");
    int entries = s_entry_count(f);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_CAPTURE, 81, &p), STORE_CONFLICT);
    assert_int_equal(s_entry_count(f), entries);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_CAPTURE, 80, &p), STORE_OK);
    assert_int_equal(p.captured_cents, 80);
    assert_string_equal(p.capture_id, "cap-1");
    assert_int_equal(s_event(f, "pnothere", PAYMENT_EVENT_AUTHORIZE, 1, &p), STORE_NOT_FOUND);
    payment_event_t no_reason = {.type = PAYMENT_EVENT_FAIL};
    assert_int_equal(payment_store_apply(f->store, p.id, &no_reason, &p), STORE_ERROR);
    /* Refunds begin only on a captured payment. */
    for (int s = PAYMENT_PENDING; s <= PAYMENT_VOIDED; s++) {
        char tag[32], key[32];
        snprintf(tag, sizeof tag, "rf-%d", s);
        snprintf(key, sizeof key, "rk-%d", s);
        s_in_status(f, (payment_status_t)s, tag, &p);
        refund_t r;
        payment_t out;
        bool created;
        store_status_t status =
            payment_store_refund_begin(f->store, p.id, key, 10, &r, &out, &created);
        bool can = s == PAYMENT_CAPTURED || s == PAYMENT_PARTIALLY_REFUNDED;
        assert_int_equal(status, can ? STORE_OK : STORE_CONFLICT);
    }
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
}

static void test_next_attempt(void **state)
{
    fx_t *f = *state;
    payment_t p;
    s_begin(f, "o-1", 100, &p);
    assert_int_equal(payment_store_next_attempt(f->store, p.id, &p), STORE_OK);
    assert_int_equal(p.attempt, 2);
    assert_int_equal(payment_store_get(f->store, p.id, &p), STORE_OK);
    assert_int_equal(p.attempt, 2);
    assert_int_equal(p.status, PAYMENT_PENDING);
    assert_int_equal(s_entry_count(f), 0);
    assert_int_equal(payment_store_next_attempt(f->store, "pnothere", &p), STORE_NOT_FOUND);
}

/* ---- refunds ---- */

static void test_refund_partial(void **state)
{
    fx_t *f = *state;
    payment_t p;
    s_charge(f, "o-1", 100, &p);
    refund_t r;
    bool created;
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "k1", 30, &r, &p, &created),
                     STORE_OK);
    assert_true(created);
    assert_int_equal(r.state, REFUND_PENDING);
    assert_int_equal(p.refunding_cents, 30);
    assert_int_equal(p.status, PAYMENT_CAPTURED); /* until it is done */
    assert_int_equal(payment_store_refund_end(f->store, "k1", true, "re-1", &r, &p), STORE_OK);
    assert_int_equal(p.refunded_cents, 30);
    assert_int_equal(p.refunding_cents, 0);
    assert_int_equal(p.status, PAYMENT_PARTIALLY_REFUNDED);
    /* 70 left: 70 begun leaves nothing for another, even before it ends. */
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "k2", 70, &r, &p, &created),
                     STORE_OK);
    int entries = s_entry_count(f);
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "k3", 1, &r, &p, &created),
                     STORE_CONFLICT);
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "k3", 0, &r, &p, &created),
                     STORE_CONFLICT);
    assert_int_equal(s_entry_count(f), entries);
    assert_int_equal(payment_store_get(f->store, p.id, &p), STORE_OK);
    assert_int_equal(p.refunding_cents, 70);
    assert_int_equal(payment_store_refund_end(f->store, "k2", true, "re-2", &r, &p), STORE_OK);
    assert_int_equal(p.refunded_cents, 100);
    assert_int_equal(p.status, PAYMENT_REFUNDED);
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "k4", 1, &r, &p, &created),
                     STORE_CONFLICT);
    /* Amount 0 is the rest. */
    payment_t q;
    s_charge(f, "o-2", 250, &q);
    assert_int_equal(payment_store_refund_begin(f->store, q.id, "k5", 50, &r, &q, &created),
                     STORE_OK);
    assert_int_equal(payment_store_refund_begin(f->store, q.id, "k6", 0, &r, &q, &created),
                     STORE_OK);
    assert_int_equal(r.amount_cents, 200);
    assert_int_equal(q.refunding_cents, 250);
    assert_int_equal(payment_store_refund_begin(f->store, q.id, "k7", -5, &r, &q, &created),
                     STORE_ERROR);
    assert_int_equal(payment_store_refund_begin(f->store, "pnothere", "k8", 5, &r, &q, &created),
                     STORE_NOT_FOUND);
}

static void *s_refund_racer(void *arg)
{
    s_racer_t *r = arg;
    payment_store_t *store = payment_store_open(r->shared);
    refund_t refund;
    payment_t p;
    pthread_barrier_wait(r->barrier);
    r->status = store ? payment_store_refund_begin(store, r->payment_id, r->key, r->amount, &refund,
                                                   &p, &r->created)
                      : STORE_ERROR;
    if (r->status == STORE_OK)
        r->status = payment_store_refund_end(store, r->key, true, "re", &refund, &p);
    payment_store_close(&store);
    return NULL;
}

static void test_refund_concurrent(void **state)
{
    fx_t *f = *state;
    payment_t p;
    s_charge(f, "o-1", 100, &p);
    enum { N = 20 };
    s_racer_t racers[N];
    char keys[N][16];
    pthread_t threads[N];
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, N);
    for (int i = 0; i < N; i++) {
        snprintf(keys[i], sizeof keys[i], "key-%d", i);
        racers[i] =
            (s_racer_t){.shared = f->shared, .barrier = &barrier, .amount = 10, .key = keys[i]};
        snprintf(racers[i].payment_id, sizeof racers[i].payment_id, "%s", p.id);
        assert_int_equal(pthread_create(&threads[i], NULL, s_refund_racer, &racers[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&barrier);
    int ok = 0;
    for (int i = 0; i < N; i++) {
        if (racers[i].status == STORE_OK)
            ok++;
        else
            assert_int_equal(racers[i].status, STORE_CONFLICT);
    }
    assert_int_equal(ok, 10);
    assert_int_equal(payment_store_get(f->store, p.id, &p), STORE_OK);
    assert_int_equal(p.refunded_cents, 100);
    assert_int_equal(p.refunding_cents, 0);
    assert_int_equal(p.status, PAYMENT_REFUNDED);
    s_entries_t *es = s_entries(f, 1, p.id);
    assert_int_equal(es->count, 2 + 10);
    free(es);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
}

static void test_refund_idempotent(void **state)
{
    fx_t *f = *state;
    payment_t p, q;
    s_charge(f, "o-1", 100, &p);
    s_charge(f, "o-2", 100, &q);
    refund_t r, again;
    bool created;
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "same", 40, &r, &p, &created),
                     STORE_OK);
    assert_true(created);
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "same", 40, &again, &p, &created),
                     STORE_OK);
    assert_false(created);
    assert_memory_equal(&again, &r, sizeof r);
    assert_int_equal(p.refunding_cents, 40);
    /* "The rest" again is the same request. */
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "same", 0, &again, &p, &created),
                     STORE_OK);
    assert_int_equal(again.amount_cents, 40);
    /* A key is one refund: another amount or payment is refused, as a
     * key reused (not as the sums refusing). */
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "same", 41, &again, &p, &created),
                     STORE_EXISTS);
    assert_int_equal(payment_store_refund_begin(f->store, q.id, "same", 40, &again, &q, &created),
                     STORE_EXISTS);
    assert_int_equal(payment_store_get(f->store, q.id, &q), STORE_OK);
    assert_int_equal(q.refunding_cents, 0);
    /* Done, then asked again: still the one refund. */
    assert_int_equal(payment_store_refund_end(f->store, "same", true, "re-1", &r, &p), STORE_OK);
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "same", 40, &again, &p, &created),
                     STORE_OK);
    assert_false(created);
    assert_int_equal(again.state, REFUND_DONE);
    assert_int_equal(p.refunded_cents, 40);
    assert_int_equal(p.refunding_cents, 0);
}

static void test_refund_end(void **state)
{
    fx_t *f = *state;
    payment_t p;
    s_charge(f, "o-1", 100, &p);
    refund_t r;
    bool created;
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "ok", 25, &r, &p, &created),
                     STORE_OK);
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "bad", 35, &r, &p, &created),
                     STORE_OK);
    assert_int_equal(p.refunding_cents, 60);
    assert_int_equal(payment_store_refund_end(f->store, "ok", true, "re-ok", &r, &p), STORE_OK);
    assert_int_equal(r.state, REFUND_DONE);
    assert_string_equal(r.refund_id, "re-ok");
    assert_int_equal(p.refunded_cents, 25);
    assert_int_equal(p.refunding_cents, 35);
    int entries = s_entry_count(f);
    /* Ended already: nothing changes, the refund as stored. */
    payment_t before = p;
    assert_int_equal(payment_store_refund_end(f->store, "ok", true, "re-other", &r, &p), STORE_OK);
    assert_string_equal(r.refund_id, "re-ok");
    s_assert_same(&p, &before);
    assert_int_equal(payment_store_refund_end(f->store, "ok", false, NULL, &r, &p), STORE_OK);
    assert_int_equal(r.state, REFUND_DONE);
    assert_int_equal(s_entry_count(f), entries);
    /* Failed: the amount is free again; the status stays. */
    assert_int_equal(payment_store_refund_end(f->store, "bad", false, NULL, &r, &p), STORE_OK);
    assert_int_equal(r.state, REFUND_FAILED);
    assert_int_equal(p.refunding_cents, 0);
    assert_int_equal(p.refunded_cents, 25);
    assert_int_equal(p.status, PAYMENT_PARTIALLY_REFUNDED);
    s_entries_t *es = s_entries(f, 1, NULL);
    assert_int_equal(es->count, entries + 1);
    const log_entry_t *last = &es->e[es->count - 1];
    assert_int_equal(last->type, LOG_FAIL);
    assert_int_equal(last->amount_cents, 35);
    /* details {refund: "bad"} */
    static const uint8_t want[] = {0x81, 0xa6, 'r', 'e', 'f', 'u', 'n', 'd', 0xa3, 'b', 'a', 'd'};
    assert_int_equal(last->details_len, sizeof want);
    assert_memory_equal(last->details, want, sizeof want);
    free(es);
    assert_int_equal(payment_store_refund_end(f->store, "bad", true, "re", &r, &p), STORE_OK);
    assert_int_equal(r.state, REFUND_FAILED);
    assert_int_equal(s_entry_count(f), entries + 1);
    assert_int_equal(payment_store_refund_end(f->store, "unknown", true, "re", &r, &p),
                     STORE_NOT_FOUND);
    assert_int_equal(payment_store_refund_end(f->store, "ok", true, NULL, &r, &p), STORE_ERROR);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
}

/* ---- prepared writes, submitted without waiting ---- */

/* A write that holds the committer until released, so that the writes
 * submitted meanwhile queue up and make one batch (one commit, each in a
 * nested transaction). It refuses: it writes nothing. */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool running, released;
} s_gate_t;

static int s_gate_txn(MDB_txn *txn, void *arg)
{
    (void)txn;
    s_gate_t *g = arg;
    pthread_mutex_lock(&g->lock);
    g->running = true;
    pthread_cond_broadcast(&g->changed);
    while (!g->released)
        pthread_cond_wait(&g->changed, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return 1;
}

/* Writes nothing. */
static int s_refuse_txn(MDB_txn *txn, void *arg)
{
    (void)txn;
    (void)arg;
    return 1;
}

static void s_gate_wait_running(s_gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    while (!g->running)
        pthread_cond_wait(&g->changed, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void s_gate_release(s_gate_t *g)
{
    pthread_mutex_lock(&g->lock);
    g->released = true;
    pthread_cond_broadcast(&g->changed);
    pthread_mutex_unlock(&g->lock);
}

/* Waits on the inbox's descriptor (poll(2)) until n jobs are back; each
 * job's transaction must have committed. */
static void s_inbox_wait(kv_inbox_t *inbox, int n)
{
    int back = 0;
    while (back < n) {
        struct pollfd item = {.fd = kv_inbox_fd(inbox), .events = POLLIN};
        int ready = poll(&item, 1, 10000); /* a bound on a hang, not a wait for luck */
        assert_true(ready > 0);
        for (kv_job_t *job = kv_inbox_take(inbox); job; job = job->next) {
            assert_int_equal(job->rc, 0);
            back++;
        }
    }
    assert_int_equal(back, n);
}

/* Whether the log's entries (seq 1 ...) are chained as the header says,
 * each of type types[i] and payment ids[i]. */
static void s_assert_log(fx_t *f, int n, const log_type_t *types, const char *const *ids)
{
    s_entries_t *es = s_entries(f, 1, NULL);
    assert_int_equal(es->count, n);
    uint8_t prev[32] = {0};
    for (int i = 0; i < n; i++) {
        const log_entry_t *e = &es->e[i];
        assert_int_equal(e->seq, (uint64_t)i + 1);
        assert_int_equal(e->type, types[i]);
        assert_string_equal(e->payment_id, ids[i]);
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, prev, 32);
        assert_string_equal(e->prev_hash, hex);
        s_hash_of(e->seq, payment_log_type_name(e->type), e->payment_id, e->order_id,
                  e->amount_cents, e->currency, e->at_ms, e->details, e->details_len, prev, prev);
        sodium_bin2hex(hex, sizeof hex, prev, 32);
        assert_string_equal(e->hash, hex);
    }
    free(es);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
    assert_int_equal(v.entries, (uint64_t)n);
}

#define S_WRITES 9

/* Two payments' charges as prepared writes, all out at once: begun,
 * authorized and captured (one voided), with a second begin of one order
 * and two refused events among them, in one batch behind a gate; then a
 * refund begun and ended, both out at once. The outcomes are what the
 * waiting forms answer, filled in the callers' structs, and the log is
 * one chain through the batch. */
static void test_prepared_writes(void **state)
{
    fx_t *f = *state;
    kv_t *kv = payment_store_kv(f->store);
    kv_inbox_t *inbox = kv_inbox_new();
    assert_non_null(inbox);
    s_gate_t gate = {.running = false};
    pthread_mutex_init(&gate.lock, NULL);
    pthread_cond_init(&gate.changed, NULL);
    kv_job_t gate_job = {.fn = s_gate_txn, .arg = &gate};
    kv_submit(kv, &gate_job, inbox);
    s_gate_wait_running(&gate);
    unsigned long writes0, commits0;
    kv_write_stats(kv, &writes0, &commits0);

    payment_write_t *w = calloc(S_WRITES, sizeof *w);
    payment_t out[S_WRITES];
    bool created[3] = {true, true, true}; /* the prepares clear them */
    payment_t a = s_new(f, "o-a", 1000), b = s_new(f, "o-b", 500), again = s_new(f, "o-a", 7);
    assert_true(payment_write_begin(&w[0], f->store, &a, &out[0], &created[0]));
    assert_true(payment_write_begin(&w[1], f->store, &b, &out[1], &created[1]));
    assert_true(payment_write_begin(&w[2], f->store, &again, &out[2], &created[2]));
    assert_false(created[0] || created[1] || created[2]);
    /* The ids are made by the prepares, so the events can be prepared
     * before the payments exist; the event strings are copied. */
    char a_id[PAYMENT_ID_MAX + 1], b_id[PAYMENT_ID_MAX + 1], text[PAYMENT_GATEWAY_ID_MAX + 1];
    snprintf(a_id, sizeof a_id, "%s", w[0].want.id);
    snprintf(b_id, sizeof b_id, "%s", w[1].want.id);
    assert_string_not_equal(a_id, b_id);
    snprintf(text, sizeof text, "auth-a");
    payment_event_t ev = {
        .type = PAYMENT_EVENT_AUTHORIZE, .amount_cents = 1000, .gateway_id = text};
    assert_true(payment_write_apply(&w[3], f->store, a_id, &ev, &out[3]));
    snprintf(text, sizeof text, "auth-b");
    ev.amount_cents = 500;
    assert_true(payment_write_apply(&w[4], f->store, b_id, &ev, &out[4]));
    snprintf(text, sizeof text, "cap-a");
    ev = (payment_event_t){.type = PAYMENT_EVENT_CAPTURE, .amount_cents = 1000, .gateway_id = text};
    assert_true(payment_write_apply(&w[5], f->store, a_id, &ev, &out[5]));
    memset(text, 'x', sizeof text - 1); /* the prepared writes hold their own copies */
    ev = (payment_event_t){.type = PAYMENT_EVENT_VOID};
    assert_true(payment_write_apply(&w[6], f->store, b_id, &ev, &out[6]));
    ev = (payment_event_t){.type = PAYMENT_EVENT_CAPTURE, .amount_cents = 500, .gateway_id = "c"};
    assert_true(payment_write_apply(&w[7], f->store, b_id, &ev, &out[7]));
    ev = (payment_event_t){.type = PAYMENT_EVENT_FAIL, .reason = "card_declined"};
    assert_true(payment_write_apply(&w[8], f->store, a_id, &ev, &out[8]));
    /* A bad one is refused at the prepare, as the waiting form refuses it. */
    payment_write_t bad;
    ev.reason = NULL;
    assert_false(payment_write_apply(&bad, f->store, a_id, &ev, &out[8]));

    kv_job_t jobs[S_WRITES];
    for (int i = 0; i < S_WRITES; i++) {
        jobs[i] = (kv_job_t){.fn = payment_write_txn, .arg = &w[i]};
        kv_submit(kv, &jobs[i], inbox);
    }
    assert_int_equal(kv_write_pending(kv), S_WRITES);
    s_gate_release(&gate);
    s_inbox_wait(inbox, 1 + S_WRITES);
    /* The committer counts a batch after handing its jobs back; a write
     * waited for runs in a later batch, so once it is back the counts
     * hold every batch before it. */
    int result = 0;
    assert_int_equal(kv_write(kv, s_refuse_txn, NULL, &result), 0);
    assert_int_equal(result, 1);
    unsigned long writes1, commits1;
    kv_write_stats(kv, &writes1, &commits1);
    assert_int_equal(writes1 - writes0, 1 + S_WRITES + 1); /* the gate, the nine, the barrier */
    assert_int_equal(commits1 - commits0, 1); /* all nine in one transaction; the others refused */

    static const store_status_t want[S_WRITES] = {STORE_OK, STORE_OK,       STORE_OK,
                                                  STORE_OK, STORE_OK,       STORE_OK,
                                                  STORE_OK, STORE_CONFLICT, STORE_CONFLICT};
    store_status_t got[S_WRITES];
    for (int i = 0; i < S_WRITES; i++)
        got[i] = payment_write_end(&w[i], jobs[i].rc == 0, jobs[i].result);
    for (int i = 0; i < S_WRITES; i++)
        assert_int_equal(got[i], want[i]);
    assert_true(created[0] && created[1]);
    assert_false(created[2]); /* the order had its payment: the first is the answer */
    assert_string_equal(out[0].id, a_id);
    assert_string_equal(out[2].id, a_id);
    assert_int_equal(out[2].amount_cents, 1000);
    assert_int_equal(out[2].status, PAYMENT_PENDING); /* as it was when that write ran */
    assert_int_equal(out[3].status, PAYMENT_AUTHORIZED);
    assert_string_equal(out[3].auth_id, "auth-a");
    assert_string_equal(out[4].auth_id, "auth-b");
    assert_int_equal(out[5].status, PAYMENT_CAPTURED);
    assert_int_equal(out[5].captured_cents, 1000);
    assert_string_equal(out[5].capture_id, "cap-a");
    assert_int_equal(out[6].status, PAYMENT_VOIDED);
    /* The refused ones changed nothing and appended nothing. */
    payment_t stored;
    assert_int_equal(payment_store_get(f->store, a_id, &stored), STORE_OK);
    s_assert_same(&stored, &out[5]);
    assert_int_equal(payment_store_get(f->store, b_id, &stored), STORE_OK);
    s_assert_same(&stored, &out[6]);
    static const log_type_t types[] = {LOG_AUTHORIZE, LOG_AUTHORIZE, LOG_CAPTURE, LOG_VOID,
                                       LOG_REFUND};
    const char *ids[] = {a_id, b_id, a_id, b_id, a_id};
    s_assert_log(f, 4, types, ids);

    /* A refund begun and ended, both out at once: the end runs after the
     * begin (the queue keeps its order) and sees its reservation. */
    refund_t refunds[2];
    payment_t after[2];
    bool refund_created = true;
    assert_true(payment_write_refund_begin(&w[0], f->store, a_id, "r-1", 300, &refunds[0],
                                           &after[0], &refund_created));
    assert_false(refund_created);
    assert_true(
        payment_write_refund_end(&w[1], f->store, "r-1", true, "re-1", &refunds[1], &after[1]));
    for (int i = 0; i < 2; i++) {
        jobs[i] = (kv_job_t){.fn = payment_write_txn, .arg = &w[i]};
        kv_submit(kv, &jobs[i], inbox);
    }
    s_inbox_wait(inbox, 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(payment_write_end(&w[i], jobs[i].rc == 0, jobs[i].result), STORE_OK);
    assert_true(refund_created);
    assert_int_equal(refunds[0].state, REFUND_PENDING);
    assert_int_equal(after[0].refunding_cents, 300);
    assert_int_equal(refunds[1].state, REFUND_DONE);
    assert_string_equal(refunds[1].refund_id, "re-1");
    assert_int_equal(after[1].status, PAYMENT_PARTIALLY_REFUNDED);
    assert_int_equal(after[1].refunded_cents, 300);
    assert_int_equal(after[1].refunding_cents, 0);
    assert_int_equal(payment_store_get(f->store, a_id, &stored), STORE_OK);
    s_assert_same(&stored, &after[1]);
    s_assert_log(f, 5, types, ids);

    free(w);
    kv_inbox_destroy(&inbox);
    pthread_cond_destroy(&gate.changed);
    pthread_mutex_destroy(&gate.lock);
}

/* ---- reads ---- */

/* Ten payments with ids of times 1000, 2000, ... 10000 ms: i % 3 == 0
 * pending, 1 authorized, 2 captured; order "o-list-i". */
static void s_list_fixture(fx_t *f, payment_t ps[10])
{
    for (int i = 0; i < 10; i++) {
        char order[32];
        snprintf(order, sizeof order, "o-list-%d", i);
        payment_t want = s_new(f, order, 100);
        snprintf(want.id, sizeof want.id, "p%012" PRIx64 "%08x", (uint64_t)(1000 * (i + 1)),
                 (unsigned)(0xabc000 + i));
        bool created;
        assert_int_equal(payment_store_begin(f->store, &want, &ps[i], &created), STORE_OK);
        assert_true(created);
        assert_string_equal(ps[i].id, want.id);
        assert_int_equal(ps[i].created_at_ms, 1000 * (i + 1));
        if (i % 3 >= 1)
            assert_int_equal(s_event(f, ps[i].id, PAYMENT_EVENT_AUTHORIZE, 100, &ps[i]), STORE_OK);
        if (i % 3 == 2)
            assert_int_equal(s_event(f, ps[i].id, PAYMENT_EVENT_CAPTURE, 100, &ps[i]), STORE_OK);
    }
}

/* Every page of filter at limit, concatenated: the indexes into ps of
 * what came, newest first; the count. */
static int s_list_all(fx_t *f, const payment_filter_t *filter, int limit, const payment_t ps[10],
                      int got[16])
{
    char cursor[PAYMENT_ID_MAX + 1] = "";
    int total = 0;
    payment_t page[100];
    for (int pages = 0; pages < 20; pages++) {
        int n = -1;
        char next[PAYMENT_ID_MAX + 1];
        assert_int_equal(payment_store_list(f->store, filter, cursor, limit, page, &n, next),
                         STORE_OK);
        assert_true(n >= 0 && n <= limit);
        if (next[0])
            assert_int_equal(n, limit);
        for (int i = 0; i < n; i++) {
            int which = -1;
            for (int j = 0; j < 10; j++)
                if (strcmp(page[i].id, ps[j].id) == 0)
                    which = j;
            assert_true(which >= 0 && total < 16);
            s_assert_same(&page[i], &ps[which]);
            got[total++] = which;
        }
        if (!next[0])
            return total;
        assert_string_equal(next, page[n - 1].id);
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    fail_msg("the pages never end");
    return -1;
}

static void s_assert_list(fx_t *f, const payment_filter_t *filter, const payment_t ps[10],
                          const int *want, int n_want)
{
    for (int limit = 1; limit <= 4; limit++) {
        int got[16];
        int n = s_list_all(f, filter, limit, ps, got);
        assert_int_equal(n, n_want);
        for (int i = 0; i < n; i++)
            assert_int_equal(got[i], want[i]);
    }
}

static void test_list(void **state)
{
    fx_t *f = *state;
    payment_t ps[10];
    s_list_fixture(f, ps);
    static const int all[] = {9, 8, 7, 6, 5, 4, 3, 2, 1, 0};
    s_assert_list(f, &(payment_filter_t){0}, ps, all, 10);
    static const int authorized[] = {7, 4, 1};
    s_assert_list(f, &(payment_filter_t){.has_status = true, .status = PAYMENT_AUTHORIZED}, ps,
                  authorized, 3);
    static const int pending[] = {9, 6, 3, 0};
    s_assert_list(f, &(payment_filter_t){.has_status = true, .status = PAYMENT_PENDING}, ps,
                  pending, 4);
    s_assert_list(f, &(payment_filter_t){.has_status = true, .status = PAYMENT_VOIDED}, ps, NULL,
                  0);
    /* [3000, 7000): the payments of 3000, 4000, 5000 and 6000 ms. */
    static const int range[] = {5, 4, 3, 2};
    s_assert_list(f, &(payment_filter_t){.from_ms = 3000, .to_ms = 7000}, ps, range, 4);
    static const int from[] = {9, 8, 7};
    s_assert_list(f, &(payment_filter_t){.from_ms = 7500}, ps, from, 3);
    static const int to[] = {1, 0};
    s_assert_list(f, &(payment_filter_t){.to_ms = 2001}, ps, to, 2);
    static const int captured_range[] = {5, 2};
    s_assert_list(
        f,
        &(payment_filter_t){
            .has_status = true, .status = PAYMENT_CAPTURED, .from_ms = 3000, .to_ms = 7000},
        ps, captured_range, 2);
    static const int order[] = {4};
    s_assert_list(f, &(payment_filter_t){.order_id = "o-list-4"}, ps, order, 1);
    /* Payment 4 is of 5000 ms: in [5000, 5001), not in [0, 5000). */
    s_assert_list(f, &(payment_filter_t){.order_id = "o-list-4", .from_ms = 5000, .to_ms = 5001},
                  ps, order, 1);
    s_assert_list(f, &(payment_filter_t){.order_id = "o-list-4", .to_ms = 5000}, ps, NULL, 0);
    s_assert_list(f, &(payment_filter_t){.from_ms = 5000, .to_ms = 5001}, ps, order, 1);
    s_assert_list(f, &(payment_filter_t){.from_ms = 5001, .to_ms = 6000}, ps, NULL, 0);
    s_assert_list(
        f,
        &(payment_filter_t){.order_id = "o-list-4", .has_status = true, .status = PAYMENT_PENDING},
        ps, NULL, 0);
    s_assert_list(f, &(payment_filter_t){.order_id = "o-none"}, ps, NULL, 0);
    /* An exact page: no cursor after it. */
    payment_t page[100];
    int n;
    char next[PAYMENT_ID_MAX + 1];
    assert_int_equal(
        payment_store_list(f->store,
                           &(payment_filter_t){.has_status = true, .status = PAYMENT_AUTHORIZED},
                           "", 3, page, &n, next),
        STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(next, "");
    /* A payment created between pages (newer) does not disturb the walk. */
    assert_int_equal(payment_store_list(f->store, &(payment_filter_t){0}, "", 4, page, &n, next),
                     STORE_OK);
    char cursor[PAYMENT_ID_MAX + 1];
    snprintf(cursor, sizeof cursor, "%s", next);
    payment_t newer;
    s_begin(f, "o-newer", 100, &newer);
    assert_int_equal(
        payment_store_list(f->store, &(payment_filter_t){0}, cursor, 100, page, &n, next),
        STORE_OK);
    assert_int_equal(n, 6);
    assert_string_equal(page[0].id, ps[5].id);
    assert_int_equal(payment_store_list(f->store, &(payment_filter_t){0}, "", 0, page, &n, next),
                     STORE_ERROR);
    assert_int_equal(payment_store_list(f->store, &(payment_filter_t){0}, "", 101, page, &n, next),
                     STORE_ERROR);
}

static void test_pending(void **state)
{
    fx_t *f = *state;
    payment_t ps[10];
    s_list_fixture(f, ps);
    payment_t out[10];
    int n = -1;
    assert_int_equal(payment_store_pending(f->store, out, 10, &n), STORE_OK);
    assert_int_equal(n, 4);
    static const int oldest_first[] = {0, 3, 6, 9};
    for (int i = 0; i < n; i++)
        assert_string_equal(out[i].id, ps[oldest_first[i]].id);
    assert_int_equal(payment_store_pending(f->store, out, 2, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(out[1].id, ps[3].id);
    /* One that gets its answer leaves the list. */
    assert_int_equal(s_event(f, ps[0].id, PAYMENT_EVENT_FAIL, 0, &ps[0]), STORE_OK);
    assert_int_equal(payment_store_pending(f->store, out, 10, &n), STORE_OK);
    assert_int_equal(n, 3);
    assert_string_equal(out[0].id, ps[3].id);
}

/* What a crash would leave undone after a refund: a refund begun is
 * pending until it ends (either way); one that brings its payment to
 * refunded in full is "to tell" until told, a partial one never is. */
static void test_refunds_left_to_finish(void **state)
{
    fx_t *f = *state;
    payment_t a, b;
    s_charge(f, "o-tell-a", 500, &a);
    s_charge(f, "o-tell-b", 500, &b);
    refund_t r, pending[4];
    payment_to_tell_t tell[4];
    bool created = false;
    int n = -1;
    assert_int_equal(payment_store_refund_begin(f->store, a.id, "ka", 0, &r, &a, &created),
                     STORE_OK);
    assert_int_equal(payment_store_refund_begin(f->store, b.id, "kb", 100, &r, &b, &created),
                     STORE_OK);
    assert_int_equal(payment_store_refunds_pending(f->store, "", 4, pending, &n), STORE_OK);
    assert_int_equal(n, 2);
    assert_string_equal(pending[0].key, "ka");
    assert_string_equal(pending[0].payment_id, a.id);
    assert_int_equal(pending[0].state, REFUND_PENDING);
    assert_int_equal(payment_store_refunds_pending(f->store, "ka", 4, pending, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(pending[0].key, "kb");
    assert_int_equal(payment_store_to_tell(f->store, "", 4, tell, &n), STORE_OK);
    assert_int_equal(n, 0);

    /* a's in full: to tell; b's in part: not; neither pending any more */
    assert_int_equal(payment_store_refund_end(f->store, "ka", true, "re-a", &r, &a), STORE_OK);
    assert_int_equal(a.status, PAYMENT_REFUNDED);
    assert_int_equal(payment_store_refund_end(f->store, "kb", true, "re-b", &r, &b), STORE_OK);
    assert_int_equal(b.status, PAYMENT_PARTIALLY_REFUNDED);
    assert_int_equal(payment_store_refunds_pending(f->store, "", 4, pending, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(payment_store_to_tell(f->store, "", 4, tell, &n), STORE_OK);
    assert_int_equal(n, 1);
    assert_string_equal(tell[0].payment_id, a.id);
    assert_string_equal(tell[0].order_id, "o-tell-a");
    assert_int_equal(payment_store_refund_get(f->store, "kb", &r), STORE_OK);
    assert_int_equal(r.state, REFUND_DONE);
    assert_int_equal(payment_store_refund_get(f->store, "nope", &r), STORE_NOT_FOUND);

    /* told: forgotten (twice is fine); a failed refund leaves the index too */
    assert_int_equal(payment_store_told(f->store, a.id), STORE_OK);
    assert_int_equal(payment_store_told(f->store, a.id), STORE_OK);
    assert_int_equal(payment_store_to_tell(f->store, "", 4, tell, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(payment_store_refund_begin(f->store, b.id, "kc", 0, &r, &b, &created),
                     STORE_OK);
    assert_int_equal(payment_store_refund_end(f->store, "kc", false, NULL, &r, &b), STORE_OK);
    assert_int_equal(payment_store_refunds_pending(f->store, "", 4, pending, &n), STORE_OK);
    assert_int_equal(n, 0);
    assert_int_equal(payment_store_to_tell(f->store, "", 4, tell, &n), STORE_OK);
    assert_int_equal(n, 0);
}

static void test_entries(void **state)
{
    fx_t *f = *state;
    payment_t a, b;
    s_begin(f, "o-a", 100, &a);
    s_begin(f, "o-b", 200, &b);
    /* Interleaved: a authorize (1), b authorize (2), a capture (3), b fail
     * (4), a refund (5). */
    assert_int_equal(s_event(f, a.id, PAYMENT_EVENT_AUTHORIZE, 100, &a), STORE_OK);
    assert_int_equal(s_event(f, b.id, PAYMENT_EVENT_AUTHORIZE, 200, &b), STORE_OK);
    assert_int_equal(s_event(f, a.id, PAYMENT_EVENT_CAPTURE, 100, &a), STORE_OK);
    assert_int_equal(s_event(f, b.id, PAYMENT_EVENT_FAIL, 0, &b), STORE_OK);
    s_refund(f, a.id, "ra", 40, &a);
    s_entries_t *es = s_entries(f, 1, a.id);
    assert_int_equal(es->count, 3);
    static const log_type_t a_types[] = {LOG_AUTHORIZE, LOG_CAPTURE, LOG_REFUND};
    static const uint64_t a_seqs[] = {1, 3, 5};
    static const int64_t a_amounts[] = {100, 100, 40};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(es->e[i].seq, a_seqs[i]);
        assert_int_equal(es->e[i].type, a_types[i]);
        assert_int_equal(es->e[i].amount_cents, a_amounts[i]);
        assert_string_equal(es->e[i].payment_id, a.id);
    }
    free(es);
    es = s_entries(f, 1, b.id);
    assert_int_equal(es->count, 2);
    assert_int_equal(es->e[0].seq, 2);
    assert_int_equal(es->e[1].seq, 4);
    assert_int_equal(es->e[1].type, LOG_FAIL);
    free(es);
    es = s_entries(f, 1, "pnone");
    assert_int_equal(es->count, 0);
    free(es);
    /* From a seq on, in order; the hashes chained as the header says. */
    es = s_entries(f, 3, NULL);
    assert_int_equal(es->count, 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(es->e[i].seq, 3 + i);
    free(es);
    es = s_entries(f, 1, NULL);
    assert_int_equal(es->count, 5);
    uint8_t prev[32] = {0};
    for (int i = 0; i < es->count; i++) {
        const log_entry_t *e = &es->e[i];
        char prev_hex[65];
        sodium_bin2hex(prev_hex, sizeof prev_hex, prev, 32);
        assert_string_equal(e->prev_hash, prev_hex);
        uint8_t hash[32];
        s_hash_of(e->seq, payment_log_type_name(e->type), e->payment_id, e->order_id,
                  e->amount_cents, e->currency, e->at_ms, e->details, e->details_len, prev, hash);
        char hex[65];
        sodium_bin2hex(hex, sizeof hex, hash, 32);
        assert_string_equal(e->hash, hex);
        memcpy(prev, hash, 32);
    }
    free(es);
    /* fn stops the walk. */
    es = calloc(1, sizeof *es);
    es->stop_after = 2;
    assert_int_equal(payment_log_each(f->store, 1, NULL, s_collect, es), STORE_OK);
    assert_int_equal(es->count, 2);
    free(es);
}

/* ---- the log: verify ---- */

static void test_verify_clean(void **state)
{
    fx_t *f = *state;
    /* 60 payments, 340 entries of every type. */
    for (int i = 0; i < 60; i++) {
        char order[32], key[32];
        snprintf(order, sizeof order, "o-%d", i);
        payment_t p;
        if (i % 6 == 5) {
            s_begin(f, order, 500, &p);
            assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_FAIL, 0, &p), STORE_OK);
            continue;
        }
        if (i % 6 == 4) {
            s_begin(f, order, 500, &p);
            assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_AUTHORIZE, 500, &p), STORE_OK);
            assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_VOID, 0, &p), STORE_OK);
            continue;
        }
        s_charge(f, order, 500, &p);
        for (int k = 0; k < 3; k++) {
            snprintf(key, sizeof key, "r-%d-%d", i, k);
            refund_t r;
            bool created;
            assert_int_equal(payment_store_refund_begin(f->store, p.id, key, 100, &r, &p, &created),
                             STORE_OK);
            assert_int_equal(payment_store_refund_end(f->store, key, k != 1, "re", &r, &p),
                             STORE_OK);
        }
    }
    int count = s_entry_count(f);
    assert_int_equal(count, 40 * 5 + 10 * 2 + 10 * 1);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
    assert_int_equal(v.entries, (uint64_t)count);
    assert_int_equal(v.anchored_seq, 192); /* the periodic anchors: 64, 128, 192 */
    s_entries_t *es = s_entries(f, 1, NULL);
    assert_string_equal(v.head, es->e[count - 1].hash);
    /* A head kept elsewhere earlier is in the chain. */
    char earlier[65];
    snprintf(earlier, sizeof earlier, "%s", es->e[100].hash);
    free(es);
    s_verify(f, earlier, &v);
    assert_true(v.ok);
    /* Anchored on demand: the head itself. */
    assert_int_equal(payment_store_anchor(f->store), STORE_OK);
    s_verify(f, NULL, &v);
    assert_true(v.ok);
    assert_int_equal(v.anchored_seq, (uint64_t)count);
}

static void test_tamper_edit(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t kb[8], rec[1024];
    size_t len = s_raw_get(&raw, PAYMENT_DB_LOG, s_seq_key(11, kb), rec, sizeof rec);
    msgpack_sbuffer edited;
    s_map_set(rec, len, "amount_cents", NULL, 99, &edited); /* entry 11: a capture of 100 */
    s_raw_put(&raw, PAYMENT_DB_LOG, s_seq_key(11, kb), edited.data, edited.size);
    msgpack_sbuffer_destroy(&edited);
    s_raw_close(f, &raw);
    s_assert_verify_fails(f, NULL, 11, "hash does not match");
}

static void test_tamper_delete(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t kb[8];
    MDB_val key = s_seq_key(9, kb);
    assert_int_equal(mdb_del(raw.txn, raw.dbi[PAYMENT_DB_LOG], &key, NULL), 0);
    s_raw_close(f, &raw);
    s_assert_verify_fails(f, NULL, 9, "missing");
}

static void test_tamper_swap(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t kb[8], a[1024], b[1024];
    size_t a_len = s_raw_get(&raw, PAYMENT_DB_LOG, s_seq_key(14, kb), a, sizeof a);
    size_t b_len = s_raw_get(&raw, PAYMENT_DB_LOG, s_seq_key(15, kb), b, sizeof b);
    s_raw_put(&raw, PAYMENT_DB_LOG, s_seq_key(14, kb), b, b_len);
    s_raw_put(&raw, PAYMENT_DB_LOG, s_seq_key(15, kb), a, a_len);
    s_raw_close(f, &raw);
    s_assert_verify_fails(f, NULL, 14, "does not follow");
}

/* The last entry's hash, from the raw file. */
static void s_raw_head(s_raw_t *raw, uint64_t seq, uint8_t hash[32])
{
    uint8_t kb[8], rec[1024];
    size_t len = s_raw_get(raw, PAYMENT_DB_LOG, s_seq_key(seq, kb), rec, sizeof rec);
    msgpack_unpacked msg;
    msgpack_object o = s_map_get(&msg, rec, len, "hash");
    assert_int_equal(o.type, MSGPACK_OBJECT_BIN);
    assert_int_equal(o.via.bin.size, 32);
    memcpy(hash, o.via.bin.ptr, 32);
    msgpack_unpacked_destroy(&msg);
}

static void test_tamper_append_unchained(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    payment_t p;
    assert_int_equal(payment_store_get(f->store, ids[2], &p), STORE_OK);
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t prev[32];
    randombytes_buf(prev, sizeof prev);
    s_raw_forge(&raw, 25, &p, 10, prev);
    s_raw_close(f, &raw);
    s_assert_verify_fails(f, NULL, 25, "does not follow");
}

static void test_tamper_append_sums(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    payment_t p;
    assert_int_equal(payment_store_get(f->store, ids[2], &p), STORE_OK);
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t prev[32];
    s_raw_head(&raw, 24, prev);
    /* Chained properly, but refunding 100 of a payment with 30 refunded of
     * 100 captured. */
    s_raw_forge(&raw, 25, &p, 100, prev);
    s_raw_close(f, &raw);
    s_assert_verify_fails(f, NULL, 25, "would pass the 100 captured");
}

static void test_tamper_cut_tail(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    assert_int_equal(payment_store_anchor(f->store), STORE_OK); /* signed head: 24 */
    s_raw_t raw;
    s_raw_open(f, &raw);
    /* The last 4 entries go, with their index keys, as a careful
     * attacker would; the chain that is left is whole. */
    for (uint64_t seq = 21; seq <= 24; seq++) {
        uint8_t kb[8], rec[1024];
        size_t len = s_raw_get(&raw, PAYMENT_DB_LOG, s_seq_key(seq, kb), rec, sizeof rec);
        msgpack_unpacked msg;
        msgpack_object pid = s_map_get(&msg, rec, len, "payment_id");
        uint8_t ik[PAYMENT_INDEX_KEY_MAX];
        memcpy(ik, pid.via.str.ptr, pid.via.str.size);
        ik[pid.via.str.size] = 0;
        memcpy(ik + pid.via.str.size + 1, kb, 8);
        MDB_val index = {pid.via.str.size + 9, ik}, key = s_seq_key(seq, kb);
        assert_int_equal(mdb_del(raw.txn, raw.dbi[PAYMENT_DB_LOG_BY_PAYMENT], &index, NULL), 0);
        assert_int_equal(mdb_del(raw.txn, raw.dbi[PAYMENT_DB_LOG], &key, NULL), 0);
        msgpack_unpacked_destroy(&msg);
    }
    s_raw_close(f, &raw);
    s_assert_verify_fails(f, NULL, 24, "beyond the log's end");
}

static void test_tamper_payment(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t rec[2048];
    MDB_val key = {strlen(ids[5]), ids[5]};
    size_t len = s_raw_get(&raw, PAYMENT_DB_PAYMENTS, key, rec, sizeof rec);
    msgpack_sbuffer edited;
    s_map_set(rec, len, "captured_cents", NULL, 90, &edited);
    s_raw_put(&raw, PAYMENT_DB_PAYMENTS, key, edited.data, edited.size);
    msgpack_sbuffer_destroy(&edited);
    s_raw_close(f, &raw);
    /* Payment 5's entries are 16, 17 and 18: the last names it. */
    s_assert_verify_fails(f, NULL, 18, "stores");
}

static void test_tamper_anchor(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    s_raw_t raw;
    s_raw_open(f, &raw); /* closing signed the head, 24 */
    uint8_t kb[8], rec[256];
    size_t len = s_raw_get(&raw, PAYMENT_DB_ANCHORS, s_seq_key(24, kb), rec, sizeof rec);
    msgpack_unpacked msg;
    msgpack_object sig = s_map_get(&msg, rec, len, "sig");
    assert_int_equal(sig.via.bin.size, 64);
    uint8_t *at = memmem(rec, len, sig.via.bin.ptr, 64);
    msgpack_unpacked_destroy(&msg);
    assert_non_null(at);
    at[10] ^= 1;
    s_raw_put(&raw, PAYMENT_DB_ANCHORS, s_seq_key(24, kb), rec, len);
    s_raw_close(f, &raw);
    s_assert_verify_fails(f, NULL, 24, "bad signature");
}

static void test_expected_head(void **state)
{
    fx_t *f = *state;
    char ids[8][PAYMENT_ID_MAX + 1];
    s_populate(f, 8, ids);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
    char head[65];
    snprintf(head, sizeof head, "%s", v.head);
    s_verify(f, head, &v);
    assert_true(v.ok);
    /* A hash of no entry. */
    uint8_t random[32];
    char hex[65];
    randombytes_buf(random, sizeof random);
    sodium_bin2hex(hex, sizeof hex, random, sizeof random);
    s_assert_verify_fails(f, hex, 25, "hash of no entry");
    s_assert_verify_fails(f, "abc", 0, "not 64 hex digits");
    /* The head kept elsewhere is what catches a tail cut together with
     * its signed heads: the chain left is whole and its anchors too. */
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t kb[8];
    MDB_val key = s_seq_key(24, kb);
    assert_int_equal(mdb_del(raw.txn, raw.dbi[PAYMENT_DB_ANCHORS], &key, NULL), 0);
    key = s_seq_key(24, kb);
    assert_int_equal(mdb_del(raw.txn, raw.dbi[PAYMENT_DB_LOG], &key, NULL), 0);
    uint8_t ik[PAYMENT_INDEX_KEY_MAX];
    size_t id_len = strlen(ids[7]);
    memcpy(ik, ids[7], id_len);
    ik[id_len] = 0;
    memcpy(ik + id_len + 1, kb, 8);
    MDB_val index = {id_len + 9, ik};
    assert_int_equal(mdb_del(raw.txn, raw.dbi[PAYMENT_DB_LOG_BY_PAYMENT], &index, NULL), 0);
    /* ...and payment 7's refund undone, so the payments agree too. */
    uint8_t rec[2048];
    MDB_val pkey = {id_len, ids[7]};
    size_t len = s_raw_get(&raw, PAYMENT_DB_PAYMENTS, pkey, rec, sizeof rec);
    msgpack_sbuffer edited, again;
    s_map_set(rec, len, "refunded_cents", NULL, 0, &edited);
    s_map_set((uint8_t *)edited.data, edited.size, "status", "captured", 0, &again);
    msgpack_sbuffer_destroy(&edited);
    s_raw_put(&raw, PAYMENT_DB_PAYMENTS, pkey, again.data, again.size);
    msgpack_sbuffer_destroy(&again);
    s_raw_close(f, &raw);
    /* What is left is a whole, consistent log: only the head kept
     * elsewhere shows what is gone. */
    s_verify(f, NULL, &v);
    assert_true(v.ok);
    assert_int_equal(v.entries, 23);
    s_assert_verify_fails(f, head, 24, "hash of no entry");
}

/* ---- the check of the books ---- */

typedef struct {
    int n;
    char check[8][16];
    char id[8][PAYMENT_ID_MAX + 1];
} s_problems_t;

static void s_on_problem(const char *check, const char *id, const char *message, void *arg)
{
    s_problems_t *ps = arg;
    assert_true(message[0] != '\0');
    if (ps->n < 8) {
        snprintf(ps->check[ps->n], sizeof ps->check[0], "%s", check);
        snprintf(ps->id[ps->n], sizeof ps->id[0], "%s", id);
    }
    ps->n++;
}

/* Whether the problems hold one of check for id. */
static bool s_has_problem(const s_problems_t *ps, const char *check, const char *id)
{
    for (int i = 0; i < ps->n && i < 8; i++)
        if (streq(ps->check[i], check) && streq(ps->id[i], id))
            return true;
    return false;
}

static void test_check(void **state)
{
    fx_t *f = *state;
    char ids[6][PAYMENT_ID_MAX + 1];
    s_populate(f, 6, ids); /* each captured 100, refunded 30 */
    payment_t pending, failed;
    s_begin(f, "o-pending", 50, &pending);
    s_begin(f, "o-failed", 70, &failed);
    assert_int_equal(s_event(f, failed.id, PAYMENT_EVENT_FAIL, 0, &failed), STORE_OK);

    s_problems_t ps = {0};
    payment_counts_t counts;
    assert_int_equal(payment_store_check(f->store, s_on_problem, &ps, &counts), STORE_OK);
    assert_int_equal(ps.n, 0);
    assert_int_equal(counts.problems, 0);
    assert_int_equal(counts.payments, 8);
    assert_int_equal(counts.by_status[PAYMENT_PARTIALLY_REFUNDED], 6);
    assert_int_equal(counts.by_status[PAYMENT_PENDING], 1);
    assert_int_equal(counts.by_status[PAYMENT_FAILED], 1);
    assert_int_equal(counts.captured_cents, 600);
    assert_int_equal(counts.refunded_cents, 180);
    assert_int_equal(counts.log_entries, 19);

    /* Damage two payments: one refunds more than it captured (its
     * entries disagree too), one says captured while nothing was. */
    s_raw_t raw;
    s_raw_open(f, &raw);
    uint8_t rec[2048];
    msgpack_sbuffer edited;
    MDB_val key = {strlen(ids[2]), ids[2]};
    size_t len = s_raw_get(&raw, PAYMENT_DB_PAYMENTS, key, rec, sizeof rec);
    s_map_set(rec, len, "refunded_cents", NULL, 130, &edited);
    s_raw_put(&raw, PAYMENT_DB_PAYMENTS, key, edited.data, edited.size);
    msgpack_sbuffer_destroy(&edited);
    key = (MDB_val){strlen(failed.id), failed.id};
    len = s_raw_get(&raw, PAYMENT_DB_PAYMENTS, key, rec, sizeof rec);
    s_map_set(rec, len, "status", "captured", 0, &edited);
    s_raw_put(&raw, PAYMENT_DB_PAYMENTS, key, edited.data, edited.size);
    msgpack_sbuffer_destroy(&edited);
    s_raw_close(f, &raw);

    ps = (s_problems_t){0};
    assert_int_equal(payment_store_check(f->store, s_on_problem, &ps, &counts), STORE_OK);
    assert_int_equal(counts.problems, ps.n);
    assert_true(s_has_problem(&ps, "amounts", ids[2]));
    assert_true(s_has_problem(&ps, "status", ids[2]));
    assert_true(s_has_problem(&ps, "log_sums", ids[2]));
    assert_true(s_has_problem(&ps, "status", failed.id));
    assert_true(s_has_problem(&ps, "index", failed.id)); /* by_status lists it as failed */
    assert_true(s_has_problem(&ps, "log", ""));
    assert_false(s_has_problem(&ps, "amounts", ids[1])); /* the others are as they were */
    assert_int_equal(counts.payments, 8);
}

/* ---- durability and card data ---- */

static void test_reopen(void **state)
{
    fx_t *f = *state;
    char ids[4][PAYMENT_ID_MAX + 1];
    s_populate(f, 4, ids);
    payment_t pending, before[4];
    s_begin(f, "o-pending", 700, &pending);
    refund_t r;
    payment_t p;
    bool created;
    assert_int_equal(payment_store_refund_begin(f->store, ids[1], "open", 20, &r, &p, &created),
                     STORE_OK);
    for (int i = 0; i < 4; i++)
        assert_int_equal(payment_store_get(f->store, ids[i], &before[i]), STORE_OK);
    s_entries_t *entries = s_entries(f, 1, NULL);
    s_close(f);
    s_open(f);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(payment_store_get(f->store, ids[i], &p), STORE_OK);
        s_assert_same(&p, &before[i]);
    }
    assert_int_equal(payment_store_by_order(f->store, "o-pending", &p), STORE_OK);
    s_assert_same(&p, &pending);
    int n;
    assert_int_equal(payment_store_pending(f->store, &p, 1, &n), STORE_OK);
    assert_int_equal(n, 1);
    s_entries_t *after = s_entries(f, 1, NULL);
    assert_int_equal(after->count, entries->count);
    for (int i = 0; i < after->count; i++) {
        assert_string_equal(after->e[i].hash, entries->e[i].hash);
        assert_int_equal(after->e[i].amount_cents, entries->e[i].amount_cents);
    }
    /* The refund begun before goes on, and the log on from 13. */
    assert_int_equal(payment_store_refund_end(f->store, "open", true, "re", &r, &p), STORE_OK);
    assert_int_equal(p.refunded_cents, 50);
    free(after);
    after = s_entries(f, 13, NULL);
    assert_int_equal(after->count, 1);
    assert_int_equal(after->e[0].seq, 13);
    assert_string_equal(after->e[0].prev_hash, entries->e[11].hash);
    free(after);
    free(entries);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
    assert_int_equal(v.anchored_seq, 12); /* signed at the close */
}

static mode_t s_mode(const char *dir, const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_mode & 0777;
}

/* Whether any file under dir holds needle. */
static bool s_tree_holds(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    bool found = false;
    struct dirent *ent;
    while (!found && (ent = readdir(d))) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, ent->d_name);
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        if (S_ISDIR(st.st_mode)) {
            found = s_tree_holds(path, needle);
            continue;
        }
        size_t len = 0;
        char *data = tu_slurp(path, &len);
        assert_non_null(data);
        found = memmem(data, len, needle, strlen(needle)) != NULL;
        free(data);
    }
    closedir(d);
    return found;
}

static void test_card_data(void **state)
{
    fx_t *f = *state;
    char ids[4][PAYMENT_ID_MAX + 1];
    s_populate(f, 4, ids);
    char fp[65], again[65], other[65];
    payment_card_fingerprint(f->shared, S_CARD, strlen(S_CARD), fp);
    payment_card_fingerprint(f->shared, S_CARD, strlen(S_CARD), again);
    assert_string_equal(fp, again);
    assert_int_equal(strlen(fp), 64);
    payment_card_fingerprint(f->shared, "4000000000000002", 16, other);
    assert_string_not_equal(fp, other);
    /* Keyed: not the plain hash of the number, and another key file gives
     * another fingerprint. */
    uint8_t plain[32];
    char plain_hex[65];
    crypto_generichash(plain, 32, (const uint8_t *)S_CARD, strlen(S_CARD), NULL, 0);
    sodium_bin2hex(plain_hex, sizeof plain_hex, plain, 32);
    assert_string_not_equal(fp, plain_hex);
    char other_keys[600], other_data[600], err[256];
    snprintf(other_keys, sizeof other_keys, "%s/other-keys", f->dir);
    snprintf(other_data, sizeof other_data, "%s/other-data", f->dir);
    payment_store_shared_t *shared =
        payment_store_shared_new(other_data, other_keys, err, sizeof err);
    assert_non_null(shared);
    payment_card_fingerprint(shared, S_CARD, strlen(S_CARD), other);
    assert_string_not_equal(fp, other);
    payment_store_shared_destroy(&shared);
    /* The key files: private, and loaded (not made again) on reopen. */
    assert_int_equal(s_mode(f->keys, "payments-log.key"), 0600);
    assert_int_equal(s_mode(f->keys, "payments-log.pub"), 0600);
    assert_int_equal(s_mode(f->keys, "card-fingerprint.key"), 0600);
    s_close(f);
    s_open(f);
    payment_card_fingerprint(f->shared, S_CARD, strlen(S_CARD), again);
    assert_string_equal(fp, again);
    log_verify_t v;
    s_verify(f, NULL, &v); /* the signatures still check: the same signing key */
    assert_true(v.ok);
    /* The number is nowhere in the data or the keys; the fingerprint is. */
    s_close(f);
    assert_false(s_tree_holds(f->data, S_CARD));
    assert_false(s_tree_holds(f->keys, S_CARD));
    assert_true(s_tree_holds(f->data, fp));
    s_open(f);
}

/* Two events in one write (a charge's authorization with its capture):
 * both kept with their log entries in order, or, when the second is
 * refused, neither. */
static void test_apply_two(void **state)
{
    fx_t *f = *state;
    payment_t p;
    s_begin(f, "o-two", 700, &p);
    char id[PAYMENT_ID_MAX + 1];
    snprintf(id, sizeof id, "%s", p.id);
    int before = s_entry_count(f);
    payment_event_t authorize = {
        .type = PAYMENT_EVENT_AUTHORIZE, .amount_cents = 700, .gateway_id = "auth-2"};
    payment_event_t too_much = {
        .type = PAYMENT_EVENT_CAPTURE, .amount_cents = 701, .gateway_id = "cap-2"};
    payment_write_t w;
    assert_true(payment_write_apply_two(&w, f->store, id, &authorize, &too_much, &p));
    int result = -1;
    assert_int_equal(kv_write(payment_store_kv(f->store), payment_write_txn, &w, &result), 0);
    assert_int_equal(payment_write_end(&w, true, result), STORE_CONFLICT);
    assert_int_equal(payment_store_get(f->store, id, &p), STORE_OK);
    assert_int_equal(p.status, PAYMENT_PENDING); /* the authorization went too */
    assert_int_equal(s_entry_count(f), before);

    payment_event_t capture = {
        .type = PAYMENT_EVENT_CAPTURE, .amount_cents = 700, .gateway_id = "cap-2"};
    assert_true(payment_write_apply_two(&w, f->store, id, &authorize, &capture, &p));
    assert_int_equal(kv_write(payment_store_kv(f->store), payment_write_txn, &w, &result), 0);
    assert_int_equal(payment_write_end(&w, true, result), STORE_OK);
    assert_int_equal(p.status, PAYMENT_CAPTURED);
    assert_string_equal(p.auth_id, "auth-2");
    assert_string_equal(p.capture_id, "cap-2");
    assert_int_equal(p.captured_cents, 700);
    s_entries_t *es = s_entries(f, 1, id);
    assert_int_equal(es->count, 2);
    assert_int_equal(es->e[0].type, LOG_AUTHORIZE);
    assert_int_equal(es->e[1].type, LOG_CAPTURE);
    free(es);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
}

/* ---- events (payment_store_shared_set_outbox) ---- */

/* The fixture with the outbox in the payments environment, as the
 * service makes it. */
static int s_setup_events(void **state)
{
    s_setup(state);
    fx_t *f = *state;
    char err[256] = "";
    f->outbox = outbox_new(payment_store_shared_kv(f->shared), PAYMENT_STORE_DB_OUTBOX,
                           PAYMENT_STORE_DB_OUTBOX_META, &(outbox_config_t){.source = "payments"},
                           err, sizeof err);
    if (!f->outbox) {
        print_error("outbox_new: %s\n", err);
        return -1;
    }
    payment_store_shared_set_outbox(f->shared, f->outbox);
    return 0;
}

/* The events: n of them, seq 1..n, each ok, of source payments, and
 * with no card data but what the payment shows (brand, last4). */
static te_events_t *s_events(fx_t *f, int n)
{
    char fingerprint[PAYMENT_HASH_HEX + 1];
    payment_card_fingerprint(f->shared, S_CARD, strlen(S_CARD), fingerprint);
    /* no card data but what the payment shows (brand, last4), no gateway ids */
    const char *never[] = {S_CARD, fingerprint, "auth-1", "cap-1", NULL};
    return te_events_expect(f->outbox, n, "payments", never);
}

static void s_expect_captured(const te_event_t *e, const payment_t *p, int64_t amount)
{
    assert_non_null(e);
    assert_string_equal(e->type, "payment.captured");
    assert_int_equal(te_event_fields(e), 7);
    assert_true(te_event_str_is(e, "payment_id", p->id));
    assert_true(te_event_str_is(e, "order_id", p->order_id));
    assert_int_equal(te_event_int(e, "amount_cents"), amount);
    assert_int_equal(te_event_int(e, "captured_cents"), p->captured_cents);
    assert_true(te_event_str_is(e, "currency", "EUR"));
    assert_true(te_event_str_is(e, "brand", "visa"));
    assert_true(te_event_str_is(e, "last4", "4242"));
}

static void s_expect_failed(const te_event_t *e, const payment_t *p, const char *reason)
{
    assert_non_null(e);
    assert_string_equal(e->type, "payment.failed");
    assert_int_equal(te_event_fields(e), 5);
    assert_true(te_event_str_is(e, "payment_id", p->id));
    assert_true(te_event_str_is(e, "order_id", p->order_id));
    assert_int_equal(te_event_int(e, "amount_cents"), p->amount_cents);
    assert_true(te_event_str_is(e, "currency", "EUR"));
    assert_true(te_event_str_is(e, "reason", reason));
}

static void s_expect_refunded(const te_event_t *e, const payment_t *p, int64_t amount,
                              int64_t refunded, const char *status)
{
    assert_non_null(e);
    assert_string_equal(e->type, "payment.refunded");
    assert_int_equal(te_event_fields(e), 6);
    assert_true(te_event_str_is(e, "payment_id", p->id));
    assert_true(te_event_str_is(e, "order_id", p->order_id));
    assert_int_equal(te_event_int(e, "amount_cents"), amount);
    assert_int_equal(te_event_int(e, "refunded_cents"), refunded);
    assert_true(te_event_str_is(e, "status", status));
    assert_true(te_event_str_is(e, "currency", "EUR"));
}

static void test_events_charges(void **state)
{
    fx_t *f = *state;
    payment_t a, b, c, d, out;
    /* captured: begin and authorize are no events */
    s_begin(f, "o-ev-a", 1000, &a);
    assert_int_equal(s_event(f, a.id, PAYMENT_EVENT_AUTHORIZE, 1000, &a), STORE_OK);
    assert_int_equal(s_event(f, a.id, PAYMENT_EVENT_CAPTURE, 1000, &a), STORE_OK);
    /* refused: a second capture, a failure after it, a void of it */
    assert_int_equal(s_event(f, a.id, PAYMENT_EVENT_CAPTURE, 1000, &out), STORE_CONFLICT);
    assert_int_equal(s_event(f, a.id, PAYMENT_EVENT_FAIL, 0, &out), STORE_CONFLICT);
    assert_int_equal(s_event(f, a.id, PAYMENT_EVENT_VOID, 0, &out), STORE_CONFLICT);
    /* a begin again is the first charge's answer */
    payment_t again = s_new(f, "o-ev-a", 1000);
    bool created = true;
    assert_int_equal(payment_store_begin(f->store, &again, &out, &created), STORE_OK);
    assert_false(created);
    /* declined */
    s_begin(f, "o-ev-b", 500, &b);
    assert_int_equal(s_event(f, b.id, PAYMENT_EVENT_FAIL, 0, &b), STORE_OK);
    /* authorized then voided: no event type */
    s_begin(f, "o-ev-c", 300, &c);
    assert_int_equal(s_event(f, c.id, PAYMENT_EVENT_AUTHORIZE, 300, &c), STORE_OK);
    assert_int_equal(s_event(f, c.id, PAYMENT_EVENT_VOID, 0, &c), STORE_OK);
    /* a capture refused by the gateway for good: failed gateway_error */
    s_begin(f, "o-ev-d", 200, &d);
    assert_int_equal(s_event(f, d.id, PAYMENT_EVENT_AUTHORIZE, 200, &d), STORE_OK);
    payment_event_t gateway = {.type = PAYMENT_EVENT_FAIL, .reason = "gateway_error"};
    assert_int_equal(payment_store_apply(f->store, d.id, &gateway, &d), STORE_OK);
    assert_int_equal(payment_store_next_attempt(f->store, d.id, &d), STORE_OK); /* no event */

    te_events_t *es = s_events(f, 3);
    s_expect_captured(&es->items[0], &a, 1000);
    s_expect_failed(&es->items[1], &b, "card_declined");
    s_expect_failed(&es->items[2], &d, "gateway_error");
    assert_int_equal(te_events_count(es, "payment.captured"), 1);
    te_events_destroy(&es);

    /* both events in one write: one event, for the capture; the pair
     * refused: none, and no number taken */
    payment_t e;
    s_begin(f, "o-ev-e", 700, &e);
    payment_event_t authorize = {
        .type = PAYMENT_EVENT_AUTHORIZE, .amount_cents = 700, .gateway_id = "auth-2"};
    payment_event_t too_much = {
        .type = PAYMENT_EVENT_CAPTURE, .amount_cents = 701, .gateway_id = "cap-2"};
    payment_event_t capture = {
        .type = PAYMENT_EVENT_CAPTURE, .amount_cents = 700, .gateway_id = "cap-2"};
    payment_write_t w;
    int result = -1;
    assert_true(payment_write_apply_two(&w, f->store, e.id, &authorize, &too_much, &out));
    assert_int_equal(kv_write(payment_store_kv(f->store), payment_write_txn, &w, &result), 0);
    assert_int_equal(payment_write_end(&w, true, result), STORE_CONFLICT);
    assert_true(payment_write_apply_two(&w, f->store, e.id, &authorize, &capture, &out));
    assert_int_equal(kv_write(payment_store_kv(f->store), payment_write_txn, &w, &result), 0);
    assert_int_equal(payment_write_end(&w, true, result), STORE_OK);
    es = s_events(f, 4);
    s_expect_captured(&es->items[3], &out, 700);
    te_events_destroy(&es);
}

static void test_events_refunds(void **state)
{
    fx_t *f = *state;
    payment_t p, out;
    s_charge(f, "o-ev-r", 1000, &p);
    s_refund(f, p.id, "r-1", 300, &out);
    /* begun and failed: no event (the payment shows no new status) */
    refund_t r;
    bool created = false;
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "r-2", 200, &r, &out, &created),
                     STORE_OK);
    assert_int_equal(payment_store_refund_end(f->store, "r-2", false, NULL, &r, &out), STORE_OK);
    assert_int_equal(r.state, REFUND_FAILED);
    /* repeats: a key begun again, an end again; past the captured amount */
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "r-1", 300, &r, &out, &created),
                     STORE_OK);
    assert_false(created);
    assert_int_equal(payment_store_refund_end(f->store, "r-1", true, "re-1", &r, &out), STORE_OK);
    assert_int_equal(payment_store_refund_begin(f->store, p.id, "r-3", 800, &r, &out, &created),
                     STORE_CONFLICT);
    /* the rest */
    s_refund(f, p.id, "r-4", 0, &out);
    assert_int_equal(out.status, PAYMENT_REFUNDED);

    te_events_t *es = s_events(f, 3);
    s_expect_captured(&es->items[0], &p, 1000);
    s_expect_refunded(&es->items[1], &p, 300, 300, "partially_refunded");
    s_expect_refunded(&es->items[2], &p, 700, 1000, "refunded");
    te_events_destroy(&es);
}

static void test_events_failed_append(void **state)
{
    fx_t *f = *state;
    payment_t p, out;
    s_begin(f, "o-ev-f", 1000, &p);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_AUTHORIZE, 1000, &p), STORE_OK);
    int entries = s_entry_count(f);
    kv_t *kv = payment_store_shared_kv(f->shared);
    assert_int_equal(te_outbox_break(kv, PAYMENT_STORE_DB_OUTBOX_META, true), 0);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_CAPTURE, 1000, &out), STORE_ERROR);
    assert_int_equal(payment_store_get(f->store, p.id, &out), STORE_OK);
    assert_int_equal(out.status, PAYMENT_AUTHORIZED);
    assert_int_equal(s_entry_count(f), entries); /* nor its log entry */
    assert_int_equal(te_outbox_break(kv, PAYMENT_STORE_DB_OUTBOX_META, false), 0);
    assert_int_equal(s_event(f, p.id, PAYMENT_EVENT_CAPTURE, 1000, &out), STORE_OK);
    te_events_t *es = s_events(f, 1);
    s_expect_captured(&es->items[0], &out, 1000);
    te_events_destroy(&es);
    log_verify_t v;
    s_verify(f, NULL, &v);
    assert_true(v.ok);
}

#define TEST(fn) cmocka_unit_test_setup_teardown(fn, s_setup, s_teardown)
#define TEST_EVENTS(fn) cmocka_unit_test_setup_teardown(fn, s_setup_events, s_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        TEST(test_begin_once),
        TEST(test_begin_concurrent),
        TEST(test_transitions),
        TEST(test_next_attempt),
        TEST(test_refund_partial),
        TEST(test_refund_concurrent),
        TEST(test_refund_idempotent),
        TEST(test_refund_end),
        TEST(test_prepared_writes),
        TEST(test_apply_two),
        TEST_EVENTS(test_events_charges),
        TEST_EVENTS(test_events_refunds),
        TEST_EVENTS(test_events_failed_append),
        TEST(test_list),
        TEST(test_pending),
        TEST(test_refunds_left_to_finish),
        TEST(test_entries),
        TEST(test_verify_clean),
        TEST(test_tamper_edit),
        TEST(test_tamper_delete),
        TEST(test_tamper_swap),
        TEST(test_tamper_append_unchained),
        TEST(test_tamper_append_sums),
        TEST(test_tamper_cut_tail),
        TEST(test_tamper_payment),
        TEST(test_tamper_anchor),
        TEST(test_expected_head),
        TEST(test_check),
        TEST(test_reopen),
        TEST(test_card_data),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

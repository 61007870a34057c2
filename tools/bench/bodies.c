/*  bodies.c - the worst 1 MiB request bodies, timed in process
 *  (build/bodies-bench, make bench-bodies).
 *
 *      bodies-bench [-n RUNS] [--only NAME,NAME...] [--list]
 *      bodies-bench --write DIR [--only NAME,...]
 *
 *  Why: every parser of outside bytes must be linear in its input, and the
 *  HTTP bridge converts bodies on its one thread, so a body that costs
 *  more than its size stalls every other request (issue 9, point 4). This
 *  builds the bodies that push each parser hardest within the bridge's
 *  1 MiB limit: the most keys (a flat map of the shortest distinct keys),
 *  the deepest nesting allowed and one level beyond, containers at that
 *  depth filling the body, the longest strings (plain, escaped, multibyte,
 *  control characters), the largest arrays of small ints and of reals,
 *  many small maps, and the longest numbers; in JSON and in msgpack.
 *
 *  How: each body goes through the calls the bridge and a worker make for
 *  POST /v1/sys/echo, in their order (router/bridge.c s_build_envelope,
 *  actors/worker.c, router/bridge.c s_on_reply), and each of the three
 *  stages is timed on its own:
 *    request  the bridge: JSON -> jsonpack_from_json; msgpack -> mpcheck
 *             then jsonpack_bytes_to_json_text (the check that the body
 *             holds only what JSON can), then msgpack_unpack and the
 *             envelope packed around the body;
 *    worker   envelope_decode_request and the echo reply packed;
 *    reply    envelope_decode_reply and jsonpack_to_json_text (the reply
 *             of a client that did not ask for msgpack).
 *  A body refused at the request stage has no worker or reply time. The
 *  glue between the calls is copied from those files, the calls are the
 *  library's own. Each body runs RUNS times (5); the medians are printed
 *  as a Markdown table, progress goes to stderr.
 *
 *  --write DIR writes each body to DIR/NAME.json or DIR/NAME.msgpack, for
 *  the end-to-end half of the benchmark (tools/bench/bodies.sh).
 */
#include "protocol/envelope.h"
#include "protocol/jsonpack.h"
#include "protocol/mpcheck.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define S_BODY_MAX (1024 * 1024) /* the bridge's BODY_MAX */
#define S_JSON_MAX_DEPTH 20      /* the bridge's JSON_MAX_DEPTH, for msgpack too */
#define S_RUNS_MAX 1000

/* ---- building bodies ---- */

/* A body being built: bytes, a packer over them, and whether any write
 * failed (then the body is not used). */
typedef struct {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    bool failed;
} out_t;

static void s_check(out_t *o, int rc)
{
    if (rc != 0)
        o->failed = true;
}

static void s_raw(out_t *o, const char *bytes, size_t n)
{
    s_check(o, msgpack_sbuffer_write(&o->sb, bytes, n));
}

static void s_text(out_t *o, const char *text)
{
    s_raw(o, text, strlen(text));
}

static void s_repeat(out_t *o, const char *unit, size_t unit_len, size_t times)
{
    for (size_t i = 0; i < times && !o->failed; i++)
        s_raw(o, unit, unit_len);
}

static void s_key_mp(out_t *o, const char *key, size_t n)
{
    s_check(o, msgpack_pack_str(&o->pk, n));
    s_check(o, msgpack_pack_str_body(&o->pk, key, n));
}

/* The index-th shortest key of printable ASCII that needs no JSON escape
 * (93 characters: 0x20..0x7e but '"' and '\\'): 93 keys of one byte, then
 * 93^2 of two, ... So a flat map of n keys is as small as n distinct keys
 * can be. Returns the length written into key (at most 7). */
static size_t s_key(uint64_t index, char key[8])
{
    static const char alphabet[] = " !#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ["
                                   "]^_`abcdefghijklmnopqrstuvwxyz{|}~";
    const uint64_t base = sizeof alphabet - 1;
    size_t len = 1;
    uint64_t span = base;
    while (index >= span && len < 7) {
        index -= span;
        span *= base;
        len++;
    }
    for (size_t i = len; i-- > 0;) {
        key[i] = alphabet[index % base];
        index /= base;
    }
    return len;
}

/* Keys that fit a flat map within the limit, each entry costing its key
 * plus `extra` bytes, after `header` bytes. */
static uint64_t s_keys_that_fit(size_t header, size_t extra)
{
    size_t used = header;
    uint64_t n = 0;
    char key[8];
    while (used + s_key(n, key) + extra <= S_BODY_MAX)
        used += s_key(n++, key) + extra;
    return n;
}

/* Flat maps: param > 0 is that many keys, 0 as many as fit; a negative
 * param fills the body likewise but makes the last key a copy of the
 * first, so the map is refused only at its end. */
static void s_json_keys(out_t *o, long param)
{
    /* "key":0, per key: 5 bytes besides the key; '{' and '}' around. */
    uint64_t n = param > 0 ? (uint64_t)param : s_keys_that_fit(2, 5);
    s_text(o, "{");
    char key[8];
    for (uint64_t i = 0; i < n && !o->failed; i++) {
        size_t len = s_key(param < 0 && i == n - 1 ? 0 : i, key);
        if (i)
            s_text(o, ",");
        s_text(o, "\"");
        s_raw(o, key, len);
        s_text(o, "\":0");
    }
    s_text(o, "}");
}

static void s_mp_keys(out_t *o, long param)
{
    /* str header, key, fixint 0; a map32 header in front. */
    uint64_t n = param > 0 ? (uint64_t)param : s_keys_that_fit(5, 2);
    s_check(o, msgpack_pack_map(&o->pk, (size_t)n));
    char key[8];
    for (uint64_t i = 0; i < n && !o->failed; i++) {
        size_t len = s_key(param < 0 && i == n - 1 ? 0 : i, key);
        s_key_mp(o, key, len);
        s_check(o, msgpack_pack_uint8(&o->pk, 0));
    }
}

/* {"a": param-1 arrays deep around 0}: depth param. */
static void s_json_depth(out_t *o, long param)
{
    s_text(o, "{\"a\":");
    s_repeat(o, "[", 1, (size_t)param - 1);
    s_text(o, "0");
    s_repeat(o, "]", 1, (size_t)param - 1);
    s_text(o, "}");
}

static void s_mp_depth(out_t *o, long param)
{
    s_check(o, msgpack_pack_map(&o->pk, 1));
    s_key_mp(o, "a", 1);
    for (long i = 0; i < param - 1; i++)
        s_check(o, msgpack_pack_array(&o->pk, 1));
    s_check(o, msgpack_pack_uint8(&o->pk, 0));
}

/* {"a": [X, X, ...]} with X 18 arrays deep: the whole body at depth 20,
 * the most containers the bridge accepts. */
static void s_json_nests(out_t *o, long param)
{
    (void)param;
    const char *x = "[[[[[[[[[[[[[[[[[[0]]]]]]]]]]]]]]]]]]";
    size_t n = (S_BODY_MAX - 8) / (strlen(x) + 1);
    s_text(o, "{\"a\":[");
    for (size_t i = 0; i < n && !o->failed; i++) {
        if (i)
            s_text(o, ",");
        s_text(o, x);
    }
    s_text(o, "]}");
}

static void s_mp_nests(out_t *o, long param)
{
    (void)param;
    size_t n = (S_BODY_MAX - 8) / 19;
    s_check(o, msgpack_pack_map(&o->pk, 1));
    s_key_mp(o, "a", 1);
    s_check(o, msgpack_pack_array(&o->pk, n));
    static const char x[19] = {(char)0x91, (char)0x91, (char)0x91, (char)0x91, (char)0x91,
                               (char)0x91, (char)0x91, (char)0x91, (char)0x91, (char)0x91,
                               (char)0x91, (char)0x91, (char)0x91, (char)0x91, (char)0x91,
                               (char)0x91, (char)0x91, (char)0x91, 0};
    s_repeat(o, x, sizeof x, n);
}

/* {"a": followed by nothing but openers up to 1 MiB: refused. */
static void s_json_open(out_t *o, long param)
{
    (void)param;
    s_text(o, "{\"a\":");
    s_repeat(o, "[", 1, S_BODY_MAX - 5);
}

static void s_mp_open(out_t *o, long param)
{
    (void)param;
    s_check(o, msgpack_pack_map(&o->pk, 1));
    s_key_mp(o, "a", 1);
    s_repeat(o, "\x91", 1, S_BODY_MAX - 3);
}

/* One string filling the body: param selects its content. */
enum { S_PLAIN, S_ESCAPED, S_UTF8, S_CONTROL };

static void s_json_string(out_t *o, long param)
{
    static const char *units[] = {"a", "\\u00e9", "\xe2\x82\xac", "\\n"};
    const char *unit = units[param];
    s_text(o, "{\"s\":\"");
    s_repeat(o, unit, strlen(unit), (S_BODY_MAX - 8) / strlen(unit));
    s_text(o, "\"}");
}

static void s_mp_string(out_t *o, long param)
{
    /* msgpack has no escapes: S_ESCAPED is not built. */
    static const char *units[] = {"a", NULL, "\xe2\x82\xac", "\x01"};
    const char *unit = units[param];
    size_t times = (S_BODY_MAX - 8) / strlen(unit);
    s_check(o, msgpack_pack_map(&o->pk, 1));
    s_key_mp(o, "s", 1);
    s_check(o, msgpack_pack_str(&o->pk, times * strlen(unit)));
    s_repeat(o, unit, strlen(unit), times);
}

/* {"a": [0, 0, ...]} (param 0) or [1.1, 1.1, ...] (param 1). */
static void s_json_array(out_t *o, long param)
{
    const char *item = param ? "1.1" : "0";
    size_t n = (S_BODY_MAX - 8) / (strlen(item) + 1);
    s_text(o, "{\"a\":[");
    for (size_t i = 0; i < n && !o->failed; i++) {
        if (i)
            s_text(o, ",");
        s_text(o, item);
    }
    s_text(o, "]}");
}

static void s_mp_array(out_t *o, long param)
{
    size_t n = (S_BODY_MAX - 16) / (param ? 9 : 1);
    s_check(o, msgpack_pack_map(&o->pk, 1));
    s_key_mp(o, "a", 1);
    s_check(o, msgpack_pack_array(&o->pk, n));
    for (size_t i = 0; i < n && !o->failed; i++)
        s_check(o, param ? msgpack_pack_double(&o->pk, 1.1) : msgpack_pack_uint8(&o->pk, 0));
}

/* {"a": [{...}, {...}, ...]}, maps of param one-letter keys. */
static void s_json_maps(out_t *o, long param)
{
    size_t map_len = 2 + (size_t)param * 6 - 1; /* {"a":0,...} */
    size_t n = (S_BODY_MAX - 8) / (map_len + 1);
    s_text(o, "{\"a\":[");
    for (size_t i = 0; i < n && !o->failed; i++) {
        s_text(o, i ? ",{" : "{");
        for (long k = 0; k < param; k++) {
            char entry[8];
            snprintf(entry, sizeof entry, "%s\"%c\":0", k ? "," : "", (char)('a' + k));
            s_text(o, entry);
        }
        s_text(o, "}");
    }
    s_text(o, "]}");
}

static void s_mp_maps(out_t *o, long param)
{
    size_t n = (S_BODY_MAX - 16) / (1 + (size_t)param * 3);
    s_check(o, msgpack_pack_map(&o->pk, 1));
    s_key_mp(o, "a", 1);
    s_check(o, msgpack_pack_array(&o->pk, n));
    for (size_t i = 0; i < n && !o->failed; i++) {
        s_check(o, msgpack_pack_map(&o->pk, (size_t)param));
        for (long k = 0; k < param; k++) {
            char key = (char)('a' + k);
            s_key_mp(o, &key, 1);
            s_check(o, msgpack_pack_uint8(&o->pk, 0));
        }
    }
}

/* {"n": 0.111...} (param 0, strtod's worst) or 111... (param 1, an
 * integer far past int64: refused). */
static void s_json_number(out_t *o, long param)
{
    s_text(o, param ? "{\"n\":" : "{\"n\":0.");
    s_repeat(o, "1", 1, S_BODY_MAX - 8);
    s_text(o, "}");
}

typedef struct {
    const char *name;
    bool msgpack;
    void (*build)(out_t *o, long param);
    long param;
} body_t;

static const body_t s_bodies[] = {
    {"json-keys-40k", false, s_json_keys, 40000},
    {"json-keys-120k", false, s_json_keys, 120000},
    {"json-keys-max", false, s_json_keys, 0},
    {"json-keys-max-dup", false, s_json_keys, -1},
    {"json-depth-20", false, s_json_depth, 20},
    {"json-depth-21", false, s_json_depth, 21},
    {"json-nests-20", false, s_json_nests, 0},
    {"json-open-1m", false, s_json_open, 0},
    {"json-string", false, s_json_string, S_PLAIN},
    {"json-string-escaped", false, s_json_string, S_ESCAPED},
    {"json-string-utf8", false, s_json_string, S_UTF8},
    {"json-string-newlines", false, s_json_string, S_CONTROL},
    {"json-ints", false, s_json_array, 0},
    {"json-reals", false, s_json_array, 1},
    {"json-maps-2", false, s_json_maps, 2},
    {"json-maps-9", false, s_json_maps, 9},
    {"json-long-real", false, s_json_number, 0},
    {"json-long-int", false, s_json_number, 1},
    {"mp-keys-40k", true, s_mp_keys, 40000},
    {"mp-keys-120k", true, s_mp_keys, 120000},
    {"mp-keys-max", true, s_mp_keys, 0},
    {"mp-keys-max-dup", true, s_mp_keys, -1},
    {"mp-depth-20", true, s_mp_depth, 20},
    {"mp-depth-21", true, s_mp_depth, 21},
    {"mp-nests-20", true, s_mp_nests, 0},
    {"mp-open-1m", true, s_mp_open, 0},
    {"mp-string", true, s_mp_string, S_PLAIN},
    {"mp-string-utf8", true, s_mp_string, S_UTF8},
    {"mp-string-control", true, s_mp_string, S_CONTROL},
    {"mp-ints", true, s_mp_array, 0},
    {"mp-reals", true, s_mp_array, 1},
    {"mp-maps-2", true, s_mp_maps, 2},
    {"mp-maps-9", true, s_mp_maps, 9},
};

#define S_BODY_COUNT (sizeof s_bodies / sizeof s_bodies[0])

/* ---- running one body through the bridge's calls ---- */

typedef struct {
    int64_t request_ns, worker_ns, reply_ns; /* 0: the stage was not reached */
    const char *refused_by;                  /* "bridge", "worker", "reply"; NULL: accepted */
    char message[200];                       /* why it was refused */
    size_t reply_bytes;
} run_t;

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The bridge's request stage: body -> an envelope in env, or false with
 * the refusal in run->message. */
static bool s_request(const body_t *b, const char *data, size_t len, msgpack_zone *zone,
                      msgpack_sbuffer *env, run_t *run)
{
    msgpack_sbuffer converted;
    msgpack_sbuffer_init(&converted);
    char err[160] = "";
    msgpack_object body;
    bool ok = jsonpack_body_map(data, len, b->msgpack, S_BODY_MAX, S_JSON_MAX_DEPTH, &converted,
                                zone, &body, err, sizeof err) == JSONPACK_BODY_OK;
    if (ok) {
        /* As s_build_envelope packs it for a route without arguments. */
        msgpack_packer pk;
        msgpack_packer_init(&pk, env, msgpack_sbuffer_write);
        int rc = msgpack_pack_map(&pk, 3);
        rc |= msgpack_pack_str_with_body(&pk, "id", 2);
        rc |= msgpack_pack_array(&pk, 2);
        rc |= msgpack_pack_uint64(&pk, 1);
        rc |= msgpack_pack_str_with_body(&pk, "bench-1", 7);
        rc |= msgpack_pack_str_with_body(&pk, "op", 2);
        rc |= msgpack_pack_str_with_body(&pk, "echo", 4);
        rc |= msgpack_pack_str_with_body(&pk, "args", 4);
        rc |= msgpack_pack_map(&pk, body.via.map.size);
        for (uint32_t i = 0; i < body.via.map.size && rc == 0; i++) {
            rc |= msgpack_pack_object(&pk, body.via.map.ptr[i].key);
            rc |= msgpack_pack_object(&pk, body.via.map.ptr[i].val);
        }
        if (rc != 0) {
            snprintf(err, sizeof err, "out of memory packing the envelope");
            ok = false;
        }
    }
    msgpack_sbuffer_destroy(&converted);
    if (!ok)
        snprintf(run->message, sizeof run->message, "%s", err);
    return ok;
}

/* The worker's decode and echo reply, then the bridge's reply stage. A
 * refusal in either is noted in run: a worker refuses an envelope over
 * ENVELOPE_MAX_BYTES, which a JSON body can grow into (1.1 is 3 bytes of
 * JSON, 9 of msgpack). */
static void s_worker_and_reply(const msgpack_sbuffer *env, run_t *run)
{
    char *text = NULL;
    msgpack_zone zone;
    msgpack_sbuffer reply;
    msgpack_sbuffer_init(&reply);
    run->refused_by = "worker";
    if (!msgpack_zone_init(&zone, 4096)) {
        snprintf(run->message, sizeof run->message, "out of memory");
        goto cleanup;
    }
    int64_t t0 = s_now_ns();
    envelope_request_t rq;
    const char *why = NULL;
    bool decoded = envelope_decode_request(env->data, env->size, &zone, &rq, &why);
    /* The reply as envelope_reply_ok_begin writes it, by hand so that
     * every write's status is seen. */
    msgpack_packer pk;
    msgpack_packer_init(&pk, &reply, msgpack_sbuffer_write);
    bool packed =
        decoded && msgpack_pack_map(&pk, 3) == 0 && msgpack_pack_str_with_body(&pk, "id", 2) == 0 &&
        msgpack_pack_object(&pk, rq.id) == 0 && msgpack_pack_str_with_body(&pk, "ok", 2) == 0 &&
        msgpack_pack_true(&pk) == 0 && msgpack_pack_str_with_body(&pk, "data", 4) == 0 &&
        msgpack_pack_object(&pk, rq.args) == 0;
    run->worker_ns = s_now_ns() - t0;
    if (!packed) {
        snprintf(run->message, sizeof run->message, "%s", decoded ? "out of memory" : why);
        goto cleanup_zone;
    }

    /* The bridge's zone is cleared, not remade, between messages. */
    msgpack_zone_clear(&zone);
    run->refused_by = "reply";
    t0 = s_now_ns();
    envelope_reply_t r;
    char err[160] = "";
    if (envelope_decode_reply(reply.data, reply.size, &zone, &r, &why))
        text = jsonpack_to_json_text(&r.data, 0, err, sizeof err);
    else
        snprintf(err, sizeof err, "%s", why);
    run->reply_ns = s_now_ns() - t0;
    if (!text) {
        snprintf(run->message, sizeof run->message, "%s", err);
        goto cleanup_zone;
    }
    run->reply_bytes = strlen(text);
    run->refused_by = NULL;
cleanup_zone:
    msgpack_zone_destroy(&zone);
cleanup:
    free(text);
    msgpack_sbuffer_destroy(&reply);
}

static int s_run(const body_t *b, const msgpack_sbuffer *data, run_t *run)
{
    memset(run, 0, sizeof *run);
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 4096))
        return -1;
    msgpack_sbuffer env;
    msgpack_sbuffer_init(&env);
    int64_t t0 = s_now_ns();
    bool accepted = s_request(b, data->data, data->size, &zone, &env, run);
    run->request_ns = s_now_ns() - t0;
    if (accepted)
        s_worker_and_reply(&env, run);
    else
        run->refused_by = "bridge";
    msgpack_sbuffer_destroy(&env);
    msgpack_zone_destroy(&zone);
    return 0;
}

/* ---- the program ---- */

static int s_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static double s_median_ms(int64_t *ns, int n)
{
    qsort(ns, (size_t)n, sizeof *ns, s_cmp_i64);
    return (n % 2 ? (double)ns[n / 2] : ((double)ns[n / 2 - 1] + (double)ns[n / 2]) / 2) / 1e6;
}

static bool s_selected(const char *only, const char *name)
{
    if (!only)
        return true;
    size_t n = strlen(name);
    for (const char *p = only; *p;) {
        size_t len = strcspn(p, ",");
        if (len == n && memcmp(p, name, n) == 0)
            return true;
        p += len;
        if (*p == ',')
            p++;
    }
    return false;
}

static int s_build(const body_t *b, out_t *o)
{
    msgpack_sbuffer_init(&o->sb);
    msgpack_packer_init(&o->pk, &o->sb, msgpack_sbuffer_write);
    o->failed = false;
    b->build(o, b->param);
    if (o->failed || o->sb.size > S_BODY_MAX) {
        fprintf(stderr, "bodies-bench: %s: %s\n", b->name,
                o->failed ? "out of memory" : "built over 1 MiB");
        msgpack_sbuffer_destroy(&o->sb);
        return -1;
    }
    return 0;
}

static int s_write_file(const char *dir, const body_t *b, const msgpack_sbuffer *sb)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.%s", dir, b->name, b->msgpack ? "msgpack" : "json");
    FILE *f = fopen(path, "wb");
    if (!f) {
        fprintf(stderr, "bodies-bench: %s: %s\n", path, strerror(errno));
        return -1;
    }
    bool ok = fwrite(sb->data, 1, sb->size, f) == sb->size;
    if (fclose(f) != 0)
        ok = false;
    if (!ok)
        fprintf(stderr, "bodies-bench: could not write %s\n", path);
    return ok ? 0 : -1;
}

/* Runs one body `runs` times and prints its row. */
static int s_measure(const body_t *b, const msgpack_sbuffer *sb, int runs)
{
    int64_t req[S_RUNS_MAX], work[S_RUNS_MAX], rep[S_RUNS_MAX], total[S_RUNS_MAX];
    run_t run;
    for (int i = 0; i < runs; i++) {
        if (s_run(b, sb, &run) != 0) {
            fprintf(stderr, "bodies-bench: %s: out of memory\n", b->name);
            return -1;
        }
        req[i] = run.request_ns;
        work[i] = run.worker_ns;
        rep[i] = run.reply_ns;
        total[i] = run.request_ns + run.worker_ns + run.reply_ns;
        fprintf(stderr, "bodies-bench: %s run %d: %.3f ms\n", b->name, i + 1,
                (double)total[i] / 1e6);
    }
    char verdict[240];
    if (!run.refused_by)
        snprintf(verdict, sizeof verdict, "accepted, reply %zu B", run.reply_bytes);
    else
        snprintf(verdict, sizeof verdict, "refused by the %s: %s", run.refused_by, run.message);
    printf("| %s | %zu | %s | %.3f |", b->name, sb->size, verdict, s_median_ms(req, runs));
    /* The same stages are reached in every run: the code has no state. */
    if (run.worker_ns)
        printf(" %.3f |", s_median_ms(work, runs));
    else
        printf(" - |");
    if (run.reply_ns)
        printf(" %.3f |", s_median_ms(rep, runs));
    else
        printf(" - |");
    printf(" %.3f |\n", s_median_ms(total, runs));
    fflush(stdout);
    return 0;
}

static int s_usage(void)
{
    fprintf(stderr, "usage: bodies-bench [-n RUNS] [--only NAME,...] [--list]\n"
                    "       bodies-bench --write DIR [--only NAME,...]\n");
    return 2;
}

int main(int argc, char **argv)
{
    int runs = 5;
    const char *only = NULL, *write_dir = NULL;
    bool list = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-n") == 0 && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > S_RUNS_MAX)
                return s_usage();
            runs = (int)v;
        } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc)
            only = argv[++i];
        else if (strcmp(argv[i], "--write") == 0 && i + 1 < argc)
            write_dir = argv[++i];
        else if (strcmp(argv[i], "--list") == 0)
            list = true;
        else
            return s_usage();
    }
    if (list) {
        for (size_t i = 0; i < S_BODY_COUNT; i++)
            printf("%s\n", s_bodies[i].name);
        return 0;
    }
    if (!write_dir) {
        printf("| body | bytes | result | request ms | worker ms | reply ms | total ms |\n");
        printf("|---|---:|---|---:|---:|---:|---:|\n");
    }
    int status = 0, matched = 0;
    for (size_t i = 0; i < S_BODY_COUNT; i++) {
        const body_t *b = &s_bodies[i];
        if (!s_selected(only, b->name))
            continue;
        matched++;
        out_t o;
        if (s_build(b, &o) != 0) {
            status = 1;
            continue;
        }
        int rc = write_dir ? s_write_file(write_dir, b, &o.sb) : s_measure(b, &o.sb, runs);
        if (rc != 0)
            status = 1;
        msgpack_sbuffer_destroy(&o.sb);
    }
    if (matched == 0) {
        fprintf(stderr, "bodies-bench: no body matches (see --list)\n");
        return 2;
    }
    return status;
}

/*  retailctl_payments.c - `retailctl payments verify|export`. See
 *  retailctl_payments.h.
 *
 *  Entries become JSON with jansson (every string escaped as JSON needs,
 *  order ids being the callers'), their msgpack details through jsonpack.
 *  A write that fails (a full disk, a closed pipe) stops the export with
 *  status 1: an export cut short must not look whole.
 */
#include "tools/retailctl_payments.h"
#include "protocol/call.h"
#include "protocol/jsonpack.h"
#include "storage/payments/payment_store.h"

#include <czmq.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT_INDEX "retail-payments-log"

static int s_usage(const char *why)
{
    fprintf(stderr,
            "retailctl: %s\nusage: retailctl payments verify [--head HASH]\n"
            "       retailctl payments export [--from SEQ]\n",
            why);
    return 2;
}

/* The entry as the API shows it (API.md, Payments). NULL out of memory
 * or for details that are not msgpack. */
static json_t *s_entry_json(const log_entry_t *e)
{
    char at[32], err[128];
    call_rfc3339(e->at_ms, at);
    json_t *details = NULL;
    if (e->details && e->details_len) {
        msgpack_zone zone;
        msgpack_zone_init(&zone, 256);
        msgpack_object obj;
        size_t off = 0;
        if (msgpack_unpack(e->details, e->details_len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS)
            jsonpack_to_json(&obj, &details, err, sizeof err);
        msgpack_zone_destroy(&zone);
        if (!details)
            return NULL;
    } else
        details = json_object();
    return json_pack("{s:I, s:s, s:s, s:s, s:I, s:s, s:s, s:o, s:s, s:s}", "seq",
                     (json_int_t)e->seq, "type", payment_log_type_name(e->type), "payment_id",
                     e->payment_id, "order_id", e->order_id, "amount_cents",
                     (json_int_t)e->amount_cents, "currency", e->currency, "at", at, "details",
                     details, "prev_hash", e->prev_hash, "hash", e->hash);
}

typedef struct {
    FILE *out;
    int status; /* 0 while every line went out */
} export_t;

static int s_export_entry(const log_entry_t *e, void *arg)
{
    export_t *x = arg;
    json_t *entry = s_entry_json(e);
    char *text = entry ? json_dumps(entry, JSON_COMPACT) : NULL;
    json_decref(entry);
    if (!text) {
        fprintf(stderr, "retailctl: entry %llu cannot be written as JSON\n",
                (unsigned long long)e->seq);
        x->status = 1;
        return 1;
    }
    int rc = fprintf(x->out, "{\"index\":{\"_index\":\"" EXPORT_INDEX "\",\"_id\":\"%llu\"}}\n%s\n",
                     (unsigned long long)e->seq, text);
    free(text);
    if (rc < 0) {
        fprintf(stderr, "retailctl: cannot write the export: %s\n", strerror(errno));
        x->status = 1;
        return 1;
    }
    return 0;
}

static int s_verify(payment_store_t *store, const char *head)
{
    log_verify_t v;
    store_status_t st = payment_log_verify(store, head, &v);
    if (st != STORE_OK) {
        fprintf(stderr, "retailctl: the payments log cannot be read\n");
        return 1;
    }
    json_t *verdict =
        json_pack("{s:b, s:I, s:s?, s:I}", "ok", v.ok, "entries", (json_int_t)v.entries, "head",
                  v.head[0] ? v.head : NULL, "anchored_seq", (json_int_t)v.anchored_seq);
    if (verdict && !v.ok) {
        json_object_set_new(verdict, "bad_seq", json_integer((json_int_t)v.bad_seq));
        json_object_set_new(verdict, "problem", json_string(v.problem));
    }
    char *text = verdict ? json_dumps(verdict, JSON_INDENT(2)) : NULL;
    json_decref(verdict);
    if (!text || printf("%s\n", text) < 0 || fflush(stdout) != 0) {
        free(text);
        fprintf(stderr, "retailctl: cannot write the verdict\n");
        return 1;
    }
    free(text);
    return v.ok ? 0 : 1;
}

int retailctl_payments(int argc, char **argv, int first, const settings_t *settings)
{
    if (first >= argc)
        return s_usage("payments takes: verify or export");
    const char *command = argv[first];
    const char *head = NULL;
    unsigned long long from = 1;
    for (int i = first + 1; i < argc; i++) {
        if (streq(command, "verify") && streq(argv[i], "--head") && i + 1 < argc) {
            head = argv[++i];
            if (strlen(head) != PAYMENT_HASH_HEX || strspn(head, "0123456789abcdef") != 64)
                return s_usage("--head takes 64 lower-case hex digits");
        } else if (streq(command, "export") && streq(argv[i], "--from") && i + 1 < argc) {
            char *end;
            errno = 0;
            from = strtoull(argv[++i], &end, 10);
            if (errno || *end || from < 1)
                return s_usage("--from takes a sequence number from 1");
        } else
            return s_usage("unexpected argument");
    }
    if (!streq(command, "verify") && !streq(command, "export"))
        return s_usage("payments takes: verify or export");

    char err[256];
    int status = 1;
    payment_store_t *store = NULL;
    payment_store_shared_t *shared =
        payment_store_shared_new(settings->data_dir, settings->keys_dir, err, sizeof err);
    if (!shared) {
        fprintf(stderr, "retailctl: %s\n", err);
        goto cleanup;
    }
    store = payment_store_open(shared);
    if (!store) {
        fprintf(stderr, "retailctl: the payments store cannot be opened\n");
        goto cleanup;
    }
    if (streq(command, "verify"))
        status = s_verify(store, head);
    else {
        export_t x = {.out = stdout};
        if (payment_log_each(store, from, NULL, s_export_entry, &x) != STORE_OK) {
            fprintf(stderr, "retailctl: the payments log cannot be read\n");
            x.status = 1;
        }
        if (fflush(stdout) != 0)
            x.status = 1;
        status = x.status;
    }
cleanup:
    payment_store_close(&store);
    payment_store_shared_destroy(&shared);
    return status;
}

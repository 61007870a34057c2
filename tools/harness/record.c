/*  record.c - writes a load run's record (record.h).
 *
 *  One line per recorded reply, built with jansson from the request's args
 *  and the reply's data by a table keyed by service and op: which args are
 *  the keys and which data fields are the ids. The lines go through stdio's
 *  buffer; record_close flushes and reports a failed write, so a record
 *  that is short is never mistaken for a complete one.
 */
#include "tools/harness/record.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "protocol/envelope.h"
#include "protocol/jsonpack.h"

struct record_t {
    FILE *file;
    bool failed;
};

/* A path into args or data, and the name it has in the record. */
typedef struct {
    const char *name, *path; /* path: dot-separated keys */
} field_t;

typedef struct {
    const char *service, *op;
    field_t keys[4];
    field_t ids[4];
} kind_t;

static const kind_t s_kinds[] = {
    {"users", "auth.register", {{"email", "email"}}, {{"user_id", "user.id"}}},
    {"users", "auth.login", {{"email", "email"}}, {{"user_id", "user.id"}}},
    {"orders", "cart.set_item", {{"product_id", "product_id"}, {"qty", "qty"}}, {{NULL, NULL}}},
    {"orders", "cart.remove_item", {{"product_id", "product_id"}}, {{NULL, NULL}}},
    {"orders", "cart.clear", {{NULL, NULL}}, {{NULL, NULL}}},
    {"orders",
     "cart.checkout",
     {{"idempotency_key", "idempotency_key"}},
     {{"order_id", "order.id"},
      {"status", "order.status"},
      {"total_cents", "order.total_cents"},
      {"payment_id", "order.payment.id"}}},
    {"orders",
     "order.create",
     {{"idempotency_key", "idempotency_key"}},
     {{"order_id", "order.id"},
      {"status", "order.status"},
      {"total_cents", "order.total_cents"},
      {"payment_id", "order.payment.id"}}},
    {"orders", "order.cancel", {{"order_id", "id"}}, {{"status", "order.status"}}},
    {"payments",
     "payment.refund",
     {{"payment_id", "id"},
      {"idempotency_key", "idempotency_key"},
      {"amount_cents", "amount_cents"}},
     {{"refunded_cents", "payment.refunded_cents"}, {"status", "payment.status"}}},
    {"catalog",
     "product.create",
     {{"sku", "sku"}, {"name", "name"}, {"price_cents", "price_cents"}, {"stock", "stock"}},
     {{"product_id", "product.id"}, {"version", "product.version"}}},
    {"catalog",
     "product.update",
     {{"product_id", "id"}, {"name", "name"}, {"price_cents", "price_cents"}, {"stock", "stock"}},
     {{"version", "product.version"}}},
    {"catalog",
     "product.set_stock",
     {{"product_id", "id"}, {"stock", "stock"}},
     {{"version", "product.version"}}},
    {"catalog", "product.delete", {{"product_id", "id"}}, {{NULL, NULL}}},
};

static const kind_t *s_kind(const char *service, const char *op)
{
    for (size_t i = 0; i < sizeof s_kinds / sizeof *s_kinds; i++)
        if (strcmp(s_kinds[i].service, service) == 0 && strcmp(s_kinds[i].op, op) == 0)
            return &s_kinds[i];
    return NULL;
}

bool record_wants(const char *service, const char *op)
{
    return s_kind(service, op) != NULL;
}

bool record_code_unknown(const char *code)
{
    return strcmp(code, "unavailable") == 0 || strcmp(code, "timeout") == 0 ||
           strcmp(code, "gateway_error") == 0 || strcmp(code, "internal") == 0 ||
           strcmp(code, "no_reply") == 0;
}

/* The object at a dot-separated path of map keys, or NULL. */
static const msgpack_object *s_find(const msgpack_object *at, const char *path)
{
    char key[64];
    while (at && *path) {
        size_t n = strcspn(path, ".");
        if (n >= sizeof key || at->type != MSGPACK_OBJECT_MAP)
            return NULL;
        memcpy(key, path, n);
        key[n] = '\0';
        at = mp_map_get(at, key);
        path += n + (path[n] == '.');
    }
    return at;
}

/* Adds each field found (nil ones left out) to obj. */
static int s_add_fields(json_t *obj, const field_t *fields, size_t max, const msgpack_object *from)
{
    for (size_t i = 0; i < max && fields[i].name; i++) {
        const msgpack_object *o = from ? s_find(from, fields[i].path) : NULL;
        if (!o || o->type == MSGPACK_OBJECT_NIL)
            continue;
        json_t *value = NULL;
        char err[128];
        if (jsonpack_to_json(o, &value, err, sizeof err) != 0 ||
            json_object_set_new(obj, fields[i].name, value) != 0)
            return -1;
    }
    return 0;
}

record_t *record_new(const char *path, const char *run, const char *scenario, char *err,
                     size_t errlen)
{
    record_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->file = fopen(path, "w");
    if (!self->file) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        free(self);
        return NULL;
    }
    char started[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(started, sizeof started, "%Y-%m-%dT%H:%M:%SZ", &tm);
    json_t *header =
        json_pack("{s:s, s:i, s:s, s:s, s:s}", "record", "loadgen", "version", RECORD_VERSION,
                  "run", run, "scenario", scenario, "started", started);
    char *line = header ? json_dumps(header, JSON_COMPACT) : NULL;
    json_decref(header);
    if (!line || fprintf(self->file, "%s\n", line) < 0) {
        snprintf(err, errlen, "cannot write %s", path);
        free(line);
        fclose(self->file);
        free(self);
        return NULL;
    }
    free(line);
    return self;
}

int record_write(record_t *self, const record_entry_t *e)
{
    const kind_t *kind = s_kind(e->service, e->op);
    if (!kind || self->failed)
        return self->failed ? -1 : 0;
    json_t *keys = json_object();
    json_t *ids = e->ack ? json_object() : NULL;
    json_t *line = json_pack("{s:I, s:s, s:s, s:s, s:b}", "vu", (json_int_t)e->vu, "step", e->step,
                             "service", e->service, "op", e->op, "ack", e->ack);
    int rc = -1;
    char *text = NULL;
    if (!keys || !line || (e->ack && !ids))
        goto done;
    if (!e->ack && json_object_set_new(line, "code", json_string(e->code)) != 0)
        goto done;
    if (e->user_id && json_object_set_new(line, "user_id", json_string(e->user_id)) != 0)
        goto done;
    if (e->email && json_object_set_new(line, "email", json_string(e->email)) != 0)
        goto done;
    if (s_add_fields(keys, kind->keys, 4, e->args) != 0 || json_object_set(line, "keys", keys) != 0)
        goto done;
    if (e->ack &&
        (s_add_fields(ids, kind->ids, 4, e->data) != 0 || json_object_set(line, "ids", ids) != 0))
        goto done;
    text = json_dumps(line, JSON_COMPACT);
    if (text && fprintf(self->file, "%s\n", text) >= 0)
        rc = 0;
done:
    free(text);
    json_decref(keys);
    json_decref(ids);
    json_decref(line);
    if (rc != 0)
        self->failed = true;
    return rc;
}

int record_close(record_t **self_p, char *err, size_t errlen)
{
    if (!self_p || !*self_p)
        return 0;
    record_t *self = *self_p;
    bool failed = self->failed;
    if (fflush(self->file) != 0)
        failed = true;
    if (fclose(self->file) != 0)
        failed = true;
    free(self);
    *self_p = NULL;
    if (failed) {
        snprintf(err, errlen, "the record is incomplete: a write failed");
        return -1;
    }
    return 0;
}

void record_destroy(record_t **self_p)
{
    char err[64];
    record_close(self_p, err, sizeof err);
}

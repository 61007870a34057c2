/*  retailctl_check.c - `retailctl check` (retailctl_check.h).
 *
 *  One request at a time on the client (each reply matched by its id);
 *  every reply is decoded into a zone that lives for that step only. The
 *  cross-service checks keep the ids that look wrong (at most
 *  S_SUSPECTS), wait a second and look at each again.
 */
#include "tools/retailctl_check.h"
#include "tools/retailctl_ask.h"
#include "protocol/envelope.h"

#include <czmq.h>
#include <inttypes.h>
#include <msgpack.h>
#include <stdio.h>
#include <string.h>

#define S_SUSPECTS 1000
#define S_ID_MAX 64

typedef struct {
    mdpcli_t *client;
    int timeout_ms;
    uint64_t next_id;
    int problems;
    bool unreachable;
    msgpack_zone zone;
    zframe_t *frame;
    envelope_reply_t reply;
} check_t;

/* Sends op with args (msgpack map bytes, NULL: none) to service and
 * waits for its reply into self->reply (valid until the next ask). false
 * when no reply came (self->unreachable). */
static bool s_ask(check_t *self, const char *service, const char *op, const void *args,
                  size_t args_len)
{
    if (retailctl_ask(self->client, self->timeout_ms, ++self->next_id, service, op, args, args_len,
                      &self->zone, &self->frame, &self->reply, "retailctl check"))
        return true;
    self->unreachable = true;
    return false;
}

static void s_problem(check_t *self, const char *service, const char *check, const char *id,
                      const char *message)
{
    self->problems++;
    printf("%s %s %s: %s\n", service, check, id && id[0] ? id : "-", message);
}

static void s_text(const msgpack_object *map, const char *key, char *out, size_t size)
{
    const msgpack_object *v = map && map->type == MSGPACK_OBJECT_MAP ? mp_map_get(map, key) : NULL;
    if (v && v->type == MSGPACK_OBJECT_STR)
        snprintf(out, size, "%.*s", (int)v->via.str.size, v->via.str.ptr);
    else
        out[0] = '\0';
}

static int64_t s_int(const msgpack_object *map, const char *key)
{
    const msgpack_object *v = map && map->type == MSGPACK_OBJECT_MAP ? mp_map_get(map, key) : NULL;
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER)
        return (int64_t)v->via.u64;
    if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        return v->via.i64;
    return -1;
}

static const char *s_error_message(const envelope_reply_t *r)
{
    static char text[200]; /* retailctl is one thread */
    s_text(&r->error, "message", text, sizeof text);
    return text;
}

/* ops.check of one service: its problems, and its counts as a line. */
static void s_books(check_t *self, const char *service)
{
    if (!s_ask(self, service, "ops.check", NULL, 0))
        return;
    if (!self->reply.ok) {
        s_problem(self, service, "ops.check", NULL, s_error_message(&self->reply));
        return;
    }
    const msgpack_object *data = &self->reply.data;
    const msgpack_object *problems = mp_map_get(data, "problems");
    for (uint32_t i = 0;
         problems && problems->type == MSGPACK_OBJECT_ARRAY && i < problems->via.array.size; i++) {
        char check[64], id[S_ID_MAX], message[256];
        s_text(&problems->via.array.ptr[i], "check", check, sizeof check);
        s_text(&problems->via.array.ptr[i], "id", id, sizeof id);
        s_text(&problems->via.array.ptr[i], "message", message, sizeof message);
        s_problem(self, service, check, id, message);
    }
    const msgpack_object *ok = mp_map_get(data, "ok");
    if (!ok || ok->type != MSGPACK_OBJECT_BOOLEAN ||
        (!ok->via.boolean && (!problems || problems->via.array.size == 0)))
        s_problem(self, service, "ops.check", NULL, "the answer says not ok, and not why");
    const msgpack_object *counts = mp_map_get(data, "counts");
    printf("%s: %s", service,
           ok && ok->type == MSGPACK_OBJECT_BOOLEAN && ok->via.boolean ? "ok" : "PROBLEMS");
    for (uint32_t i = 0; counts && counts->type == MSGPACK_OBJECT_MAP && i < counts->via.map.size;
         i++) {
        const msgpack_object_kv *kv = &counts->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            printf(" %.*s=%" PRIu64, (int)kv->key.via.str.size, kv->key.via.str.ptr,
                   kv->val.via.u64);
    }
    printf("\n");
}

/* Args {key: value, cursor?, limit} packed into buf. */
static void s_page_args(msgpack_sbuffer *buf, const char *key, const char *value,
                        const char *cursor, int limit)
{
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, cursor[0] ? 3 : 2);
    mp_pack_str(&pk, key);
    mp_pack_str(&pk, value);
    mp_pack_str(&pk, "limit");
    msgpack_pack_int(&pk, limit);
    if (cursor[0]) {
        mp_pack_str(&pk, "cursor");
        mp_pack_str(&pk, cursor);
    }
}

static void s_one_arg(msgpack_sbuffer *buf, const char *key, const char *value)
{
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    mp_pack_str(&pk, key);
    mp_pack_str(&pk, value);
}

/* The order of an order.get answer ({order}). */
static const msgpack_object *s_order(const envelope_reply_t *r)
{
    const msgpack_object *o =
        r->data.type == MSGPACK_OBJECT_MAP ? mp_map_get(&r->data, "order") : NULL;
    return o && o->type == MSGPACK_OBJECT_MAP ? o : NULL;
}

/* ---- the cross checks, each as "is this id right?" ---- */

typedef enum { S_RESERVATION, S_PAID_ORDER, S_CAPTURED } s_kind_t;

/* NULL when the id is as it should be, else what is wrong (static). */
static const char *s_wrong(check_t *self, s_kind_t kind, const char *id)
{
    static char why[200];
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    const char *result = NULL;
    char status[32];
    if (kind == S_RESERVATION || kind == S_CAPTURED) {
        s_one_arg(&args, "id", id);
        if (!s_ask(self, "orders", "order.get", args.data, args.size))
            goto done;
        if (!self->reply.ok) {
            result = kind == S_RESERVATION ? "stock is reserved for an order that does not exist"
                                           : "a captured payment's order does not exist";
            goto done;
        }
        s_text(s_order(&self->reply), "status", status, sizeof status);
        bool right = kind == S_RESERVATION ? streq(status, "pending")
                                           : streq(status, "paid") || streq(status, "shipped") ||
                                                 streq(status, "delivered");
        if (!right) {
            snprintf(why, sizeof why, "%s for an order that is %s",
                     kind == S_RESERVATION ? "stock is reserved" : "a payment is captured", status);
            result = why;
        }
        goto done;
    }
    /* a paid order: its payment, captured for its total */
    s_one_arg(&args, "id", id);
    if (!s_ask(self, "orders", "order.get", args.data, args.size) || !self->reply.ok)
        goto done; /* gone since: nothing to say */
    s_text(s_order(&self->reply), "status", status, sizeof status);
    if (!streq(status, "paid") && !streq(status, "shipped") && !streq(status, "delivered"))
        goto done;
    int64_t total = s_int(s_order(&self->reply), "total_cents");
    s_one_arg(&args, "order_id", id);
    if (!s_ask(self, "payments", "payment.by_order", args.data, args.size))
        goto done;
    if (!self->reply.ok) {
        result = "a paid order has no payment";
        goto done;
    }
    const msgpack_object *p = &self->reply.data;
    const msgpack_object *inner = mp_map_get(p, "payment");
    if (inner && inner->type == MSGPACK_OBJECT_MAP)
        p = inner;
    s_text(p, "status", status, sizeof status);
    int64_t captured = s_int(p, "captured_cents");
    if (!streq(status, "captured") && !streq(status, "partially_refunded")) {
        snprintf(why, sizeof why, "a paid order's payment is %s", status);
        result = why;
    } else if (captured != total) {
        snprintf(why, sizeof why, "a paid order of %lld has %lld captured", (long long)total,
                 (long long)captured);
        result = why;
    }
done:
    msgpack_sbuffer_destroy(&args);
    return result;
}

typedef struct {
    int n;
    char ids[S_SUSPECTS][S_ID_MAX];
    s_kind_t kinds[S_SUSPECTS];
} s_suspects_t;

static void s_suspect(check_t *self, s_suspects_t *sus, s_kind_t kind, const char *id)
{
    if (!s_wrong(self, kind, id))
        return;
    if (sus->n == S_SUSPECTS) {
        s_problem(self, "cross", "suspects", id, "too many to look at again; more follow");
        return;
    }
    snprintf(sus->ids[sus->n], S_ID_MAX, "%s", id);
    sus->kinds[sus->n++] = kind;
}

/* Walks every page of service op filtered by key=value, calling
 * s_suspect on each item's id_key. */
static void s_walk(check_t *self, s_suspects_t *sus, const char *service, const char *op,
                   const char *key, const char *value, const char *id_key, s_kind_t kind)
{
    char cursor[512] = "";
    msgpack_sbuffer args;
    msgpack_sbuffer_init(&args);
    for (int page = 0; page < 100000; page++) {
        s_page_args(&args, key, value, cursor, 100);
        if (!s_ask(self, service, op, args.data, args.size))
            break;
        if (!self->reply.ok) {
            s_problem(self, service, op, NULL, s_error_message(&self->reply));
            break;
        }
        const msgpack_object *items = mp_map_get(&self->reply.data, "items");
        char next[512];
        s_text(&self->reply.data, "next_cursor", next, sizeof next);
        /* copy the page's ids: the asks below reuse the reply's zone */
        int n = items && items->type == MSGPACK_OBJECT_ARRAY ? (int)items->via.array.size : 0;
        char(*ids)[S_ID_MAX] = n ? calloc((size_t)n, S_ID_MAX) : NULL;
        for (int i = 0; ids && i < n; i++)
            s_text(&items->via.array.ptr[i], id_key, ids[i], S_ID_MAX);
        for (int i = 0; ids && i < n; i++)
            if (ids[i][0])
                s_suspect(self, sus, kind, ids[i]);
        free(ids);
        if (!next[0] || self->unreachable)
            break;
        snprintf(cursor, sizeof cursor, "%s", next);
    }
    msgpack_sbuffer_destroy(&args);
}

int retailctl_check(mdpcli_t *client, int timeout_ms)
{
    check_t self = {.client = client, .timeout_ms = timeout_ms};
    msgpack_zone_init(&self.zone, 4096);
    s_books(&self, "catalog");
    s_books(&self, "payments");
    s_books(&self, "orders");
    s_suspects_t *sus = calloc(1, sizeof *sus);
    if (sus && !self.unreachable) {
        s_walk(&self, sus, "catalog", "stock.reservations", "state", "reserved", "order_id",
               S_RESERVATION);
        static const char *const paid[] = {"paid", "shipped", "delivered"};
        for (int i = 0; i < 3 && !self.unreachable; i++)
            s_walk(&self, sus, "orders", "order.list", "status", paid[i], "id", S_PAID_ORDER);
        if (!self.unreachable)
            s_walk(&self, sus, "payments", "payment.list", "status", "captured", "order_id",
                   S_CAPTURED);
        if (sus->n > 0 && !self.unreachable) {
            zclock_sleep(1000); /* checkouts in flight finish meanwhile */
            for (int i = 0; i < sus->n && !self.unreachable; i++) {
                const char *why = s_wrong(&self, sus->kinds[i], sus->ids[i]);
                if (why)
                    s_problem(&self, "cross",
                              sus->kinds[i] == S_RESERVATION  ? "reservation"
                              : sus->kinds[i] == S_PAID_ORDER ? "paid_order"
                                                              : "captured_payment",
                              sus->ids[i], why);
            }
        }
    }
    free(sus);
    zframe_destroy(&self.frame);
    msgpack_zone_destroy(&self.zone);
    if (self.unreachable) {
        printf("check: incomplete (a service did not answer)\n");
        return 3;
    }
    printf("check: %s (%d problem%s)\n", self.problems ? "FAILED" : "ok", self.problems,
           self.problems == 1 ? "" : "s");
    return self.problems ? 1 : 0;
}

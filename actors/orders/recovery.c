/*  recovery.c - finds the orders that need driving on and asks the
 *  service to drive them (recovery.h).
 *
 *  It holds no saga logic: every recover_every_ms it reads the store's
 *  todo index (every pending order, every one marked to compensate or
 *  being cancelled), leaving out those whose lease a live saga of this
 *  process holds, and sends `order.recover {order_id}` through the broker
 *  as the caller `orders` (its routing id in process, the pool's
 *  certificate over TCP). A worker then claims the order's lease in a
 *  write and takes the saga on from its journal (saga.c), with asks that
 *  never block it. So recovery walks exactly the paths a checkout walks,
 *  and an order is never driven by two at once.
 *
 *  At start every order of a process that died is taken at once: its
 *  lease carries the dead process's instance, not this one's. A pass sends
 *  at most S_BATCH requests and waits for their answers (or
 *  S_ANSWER_WAIT_MS) before the next, so a crowd of stuck orders is worked
 *  through at the workers' pace without flooding them. An order that
 *  cannot move (payments down) answers unavailable and is asked again on
 *  a later pass; after the hold the saga ends it (saga.c).
 */
#include "actors/orders/recovery.h"
#include "actors/orders/orders_impl.h"
#include "protocol/clock.h"
#include "protocol/mdpcli.h"

#include <czmq.h>
#include <string.h>

#define S_BATCH 32
#define S_ANSWER_WAIT_MS 15000
#define S_SWEEP_EVERY_MS 60000
#define S_SWEEP_MAX 1000

typedef struct {
    char *endpoint;
    zcert_t *cert;
    char *server_key;
    orders_shared_t *shared;
} s_args_t;

typedef struct {
    s_args_t *args;
    zsock_t *pipe;
    mdpcli_t *client;
    order_store_t *store;
    zpoller_t *poller;
    uint64_t next_id;
    int in_flight;
    int64_t wait_until;
    int64_t next_pass;
    int64_t next_sweep;
    char after[ORDER_ID_MAX + 1];
} recovery_t;

static void s_args_destroy(s_args_t **self_p)
{
    s_args_t *self = *self_p;
    if (!self)
        return;
    zstr_free(&self->endpoint);
    zstr_free(&self->server_key);
    zcert_destroy(&self->cert);
    free(self);
    *self_p = NULL;
}

static void s_send_recover(recovery_t *self, const char *id)
{
    msgpack_sbuffer args, body;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    int rc = msgpack_pack_map(&pk, 1) | mp_pack_str(&pk, "order_id") | mp_pack_str(&pk, id);
    if (rc == 0 &&
        envelope_pack_request(&body, ++self->next_id, "order.recover", NULL, args.data,
                              args.size) == 0 &&
        mdpcli_send(self->client, "orders", body.data, body.size) == 0)
        self->in_flight++;
    else
        zsys_warning("orders recovery: cannot ask for order %s; next pass", id);
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&body);
}

static void s_pass(recovery_t *self, int64_t now)
{
    char ids[S_BATCH][ORDER_ID_MAX + 1];
    int count = 0;
    bool end = true;
    order_store_status_t st =
        order_store_todo(self->store, self->after, S_BATCH, self->args->shared->instance,
                         clock_now_ms(), ids, &count, &end);
    if (st != ORDER_OK) {
        zsys_warning("orders recovery: cannot read the todo index (%d)", st);
        return;
    }
    for (int i = 0; i < count; i++)
        s_send_recover(self, ids[i]);
    if (end || count == 0)
        self->after[0] = '\0';
    else
        snprintf(self->after, sizeof self->after, "%s", ids[count - 1]);
    self->wait_until = now + S_ANSWER_WAIT_MS;
    /* more to do right away when the batch was full */
    self->next_pass = end ? now + self->args->shared->settings.recover_every_ms : now;
}

static void s_on_reply(recovery_t *self)
{
    zframe_t *frame = mdpcli_recv(self->client, 0, NULL);
    if (!frame)
        return;
    if (self->in_flight > 0)
        self->in_flight--;
    if (self->args->shared->test_ops) {
        msgpack_zone zone;
        msgpack_zone_init(&zone, 1024);
        envelope_reply_t reply;
        const char *why;
        if (envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why) &&
            !reply.ok) {
            const msgpack_object *m = mp_map_get(&reply.error, "message");
            zsys_info("orders recovery: %.*s",
                      m && m->type == MSGPACK_OBJECT_STR ? (int)m->via.str.size : 0,
                      m && m->type == MSGPACK_OBJECT_STR ? m->via.str.ptr : "");
        }
        msgpack_zone_destroy(&zone);
    }
    zframe_destroy(&frame);
}

static int s_setup(recovery_t *self, char *err, size_t errlen)
{
    s_args_t *a = self->args;
    self->client = a->cert ? mdpcli_new(a->endpoint, a->cert, a->server_key)
                           : mdpcli_new_inproc(a->endpoint, "orders");
    self->store = order_store_open(a->shared->orders);
    if (!self->client || !self->store) {
        snprintf(err, errlen, "orders recovery: cannot connect to %s or open the store",
                 a->endpoint);
        return -1;
    }
    self->poller = zpoller_new(self->pipe, mdpcli_sock(self->client), NULL);
    if (!self->poller) {
        snprintf(err, errlen, "orders recovery: out of memory");
        return -1;
    }
    return 0;
}

static void s_actor(zsock_t *pipe, void *args_p)
{
    recovery_t self = {.args = args_p, .pipe = pipe};
    zsock_signal(pipe, 0); /* zactor_new returns; the setup's status follows */
    char err[256] = "";
    int rc = s_setup(&self, err, sizeof err);
    zsock_send(pipe, "is", rc, err);
    while (rc == 0) {
        int64_t now = zclock_mono();
        if (self.in_flight > 0 && now >= self.wait_until)
            self.in_flight = 0; /* answers lost (a broker restart): go on */
        if (self.in_flight == 0 && now >= self.next_pass)
            s_pass(&self, now);
        if (now >= self.next_sweep) {
            int deleted = 0;
            if (order_store_sweep_keys(self.store, clock_now_ms(), S_SWEEP_MAX, &deleted) ==
                    ORDER_OK &&
                deleted > 0)
                zsys_info("orders recovery: %d idempotency keys expired", deleted);
            self.next_sweep = now + (deleted == S_SWEEP_MAX ? 1000 : S_SWEEP_EVERY_MS);
        }
        int64_t wake = self.in_flight > 0 ? self.wait_until : self.next_pass;
        if (self.next_sweep < wake)
            wake = self.next_sweep;
        int64_t wait = wake - zclock_mono();
        void *ready = zpoller_wait(self.poller, wait < 0 ? 0 : wait > 60000 ? 60000 : (int)wait);
        if (ready == pipe) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                break;
        } else if (ready)
            s_on_reply(&self);
        else if (!zpoller_expired(self.poller))
            break; /* the context is ending */
    }
    zpoller_destroy(&self.poller);
    order_store_close(&self.store);
    mdpcli_destroy(&self.client);
    s_args_t *a = self.args;
    s_args_destroy(&a);
}

zactor_t *recovery_new(const service_env_t *env, void *shared, char *err, size_t errlen)
{
    s_args_t *args = calloc(1, sizeof *args);
    if (!args) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    args->shared = shared;
    args->endpoint = strdup(env->broker_endpoint);
    args->server_key = env->server_key ? strdup(env->server_key) : NULL;
    args->cert = env->cert ? zcert_dup(env->cert) : NULL;
    if (!args->endpoint || (env->server_key && !args->server_key) || (env->cert && !args->cert)) {
        s_args_destroy(&args);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* The actor owns args from here, also when its setup fails. */
    zactor_t *actor = zactor_new(s_actor, args);
    if (!actor) {
        s_args_destroy(&args);
        snprintf(err, errlen, "orders recovery: cannot start its thread");
        return NULL;
    }
    int status = -1;
    char *message = NULL;
    if (zsock_recv(actor, "is", &status, &message) != 0)
        snprintf(err, errlen, "orders recovery: no answer from its thread");
    else if (status != 0)
        snprintf(err, errlen, "%s", message ? message : "orders recovery: cannot start");
    zstr_free(&message);
    if (status != 0)
        zactor_destroy(&actor);
    return actor;
}

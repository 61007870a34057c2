/*  followup.c - the payments service's background actor (followup.h).
 *
 *  One thread: the gateway actor it started (its own thread, reached by
 *  the workers at shared->gateway_endpoint), and a loop over a poller of
 *  the pipe and an MDP client of the broker. A pass sends at most S_BATCH
 *  asks, each remembered by its request id with its payment, and the next
 *  pass waits until they are answered (or S_ANSWER_WAIT_MS went by: a
 *  broker restart loses them, and the next pass asks again).
 */
#include "actors/payments/followup.h"

#include <string.h>

#include "protocol/clock.h"
#include "protocol/envelope.h"
#include "protocol/mdpcli.h"

#define S_BATCH 32 /* asks of one pass, of each kind */
#define S_EVERY_MS 1000
#define S_ANSWER_WAIT_MS 10000

typedef struct {
    char *endpoint;
    zcert_t *cert;
    char *server_key;
    gateway_config_t gw;
    char *gw_kind, *gw_data_dir, *gw_endpoint;
    payments_shared_t *shared;
} s_args_t;

typedef struct {
    uint64_t id; /* the ask's request id; 0: answered */
    bool tell;   /* order.payment_refunded (else refund.recover) */
    char payment_id[PAYMENT_ID_MAX + 1];
} s_ask_t;

typedef struct {
    s_args_t *args;
    zsock_t *pipe;
    zactor_t *gateway;
    mdpcli_t *client;
    payment_store_t *store;
    zpoller_t *poller;
    uint64_t next_id;
    s_ask_t asks[2 * S_BATCH];
    int in_flight;
    int64_t wait_until, next_pass;
    char after[PAYMENT_ID_MAX + 1];
    char after_refund[PAYMENT_KEY_MAX + 1];
} followup_t;

static void s_args_destroy(s_args_t **self_p)
{
    s_args_t *self = *self_p;
    if (!self)
        return;
    zstr_free(&self->endpoint);
    zstr_free(&self->server_key);
    zstr_free(&self->gw_kind);
    zstr_free(&self->gw_data_dir);
    zstr_free(&self->gw_endpoint);
    zcert_destroy(&self->cert);
    free(self);
    *self_p = NULL;
}

/* Sends op {key: value} to service, remembered as ask `tell` of payment. */
static void s_ask(followup_t *self, const char *service, const char *op, const char *key,
                  const char *value, bool tell, const char *payment)
{
    msgpack_sbuffer args, body;
    msgpack_sbuffer_init(&args);
    msgpack_sbuffer_init(&body);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &args, msgpack_sbuffer_write);
    uint64_t id = ++self->next_id;
    int rc = msgpack_pack_map(&pk, 1) | mp_pack_str(&pk, key) | mp_pack_str(&pk, value);
    if (rc == 0 && envelope_pack_request(&body, id, op, NULL, args.data, args.size) == 0 &&
        mdpcli_send(self->client, service, body.data, body.size) == 0) {
        s_ask_t *a = &self->asks[self->in_flight++];
        a->id = id;
        a->tell = tell;
        snprintf(a->payment_id, sizeof a->payment_id, "%.*s", PAYMENT_ID_MAX, payment);
    } else
        zsys_warning("payments follow-up: cannot ask %s %s about %s; next pass", service, op,
                     value);
    msgpack_sbuffer_destroy(&args);
    msgpack_sbuffer_destroy(&body);
}

static void s_pass(followup_t *self, int64_t now)
{
    payment_to_tell_t tell[S_BATCH];
    refund_t pending[S_BATCH];
    int n = 0, m = 0;
    self->next_pass = now + S_EVERY_MS;
    self->in_flight = 0;
    store_status_t st = payment_store_to_tell(self->store, self->after, S_BATCH, tell, &n);
    if (st != STORE_OK)
        zsys_warning("payments follow-up: cannot read what is to tell (%d)", st);
    st = payment_store_refunds_pending(self->store, self->after_refund, S_BATCH, pending, &m);
    if (st != STORE_OK)
        zsys_warning("payments follow-up: cannot read the refunds pending (%d)", st);
    for (int i = 0; i < n; i++)
        s_ask(self, "orders", "order.payment_refunded", "order_id", tell[i].order_id, true,
              tell[i].payment_id);
    /* only those whose own request is over (its budget spent):
     * refund.recover refuses the others anyway */
    int64_t wall = clock_now_ms();
    for (int i = 0; i < m; i++)
        if (wall - pending[i].created_at_ms > self->args->shared->settings.budget_ms)
            s_ask(self, "payments", "refund.recover", "key", pending[i].key, false,
                  pending[i].payment_id);
    /* a full batch: the rest right after its answers; else from the start
     * next time */
    if (n == S_BATCH)
        memcpy(self->after, tell[n - 1].payment_id, sizeof self->after); /* same size */
    else
        self->after[0] = '\0';
    if (m == S_BATCH)
        memcpy(self->after_refund, pending[m - 1].key, sizeof self->after_refund);
    else
        self->after_refund[0] = '\0';
    if (n == S_BATCH || m == S_BATCH)
        self->next_pass = now;
    self->wait_until = now + S_ANSWER_WAIT_MS;
}

static void s_on_reply(followup_t *self)
{
    zframe_t *frame = mdpcli_recv(self->client, 0, NULL);
    if (!frame)
        return;
    msgpack_zone zone;
    if (!msgpack_zone_init(&zone, 1024)) {
        zframe_destroy(&frame);
        return;
    }
    envelope_reply_t reply;
    const char *why;
    if (envelope_decode_reply(zframe_data(frame), zframe_size(frame), &zone, &reply, &why) &&
        reply.id.type == MSGPACK_OBJECT_POSITIVE_INTEGER) {
        for (int i = 0; i < self->in_flight; i++) {
            s_ask_t *a = &self->asks[i];
            if (a->id != reply.id.via.u64)
                continue;
            a->id = 0;
            if (!a->tell) {
                /* ended (its end left the index), or asked again next pass */
                if (!reply.ok)
                    zsys_info("payments follow-up: a refund of %s left pending: %s", a->payment_id,
                              err_code_name(reply.code));
                continue;
            }
            /* settled: told, or an order with nothing to hear (not paid,
             * or gone); anything else is asked again next pass */
            bool settled =
                reply.ok || reply.code == ERR_INVALID_TRANSITION || reply.code == ERR_NOT_FOUND;
            if (settled && payment_store_told(self->store, a->payment_id) != STORE_OK)
                zsys_warning("payments follow-up: %s told, but not forgotten; told again later",
                             a->payment_id);
            else if (!settled)
                zsys_info("payments follow-up: the order of %s did not hear yet (%s)",
                          a->payment_id, err_code_name(reply.code));
        }
    }
    msgpack_zone_destroy(&zone);
    zframe_destroy(&frame);
    bool waiting = false;
    for (int i = 0; i < self->in_flight; i++)
        waiting |= self->asks[i].id != 0;
    if (!waiting)
        self->in_flight = 0;
}

static int s_setup(followup_t *self, char *err, size_t errlen)
{
    s_args_t *a = self->args;
    self->gateway = gateway_new(&a->gw, err, errlen);
    if (!self->gateway)
        return -1;
    self->client = a->cert ? mdpcli_new(a->endpoint, a->cert, a->server_key)
                           : mdpcli_new_inproc(a->endpoint, "payments");
    self->store = payment_store_open(a->shared->store);
    if (!self->client || !self->store) {
        snprintf(err, errlen, "payments follow-up: cannot connect to %s or open the store",
                 a->endpoint);
        return -1;
    }
    self->poller = zpoller_new(self->pipe, mdpcli_sock(self->client), NULL);
    if (!self->poller) {
        snprintf(err, errlen, "payments follow-up: out of memory");
        return -1;
    }
    return 0;
}

static void s_actor(zsock_t *pipe, void *args_p)
{
    followup_t self = {.args = args_p, .pipe = pipe};
    zsock_signal(pipe, 0); /* zactor_new returns; the setup's status follows */
    char err[256] = "";
    int rc = s_setup(&self, err, sizeof err);
    zsock_send(pipe, "is", rc, err);
    while (rc == 0) {
        int64_t now = zclock_mono();
        if (self.in_flight > 0 && now >= self.wait_until)
            self.in_flight = 0; /* answers lost: ask again */
        if (self.in_flight == 0 && now >= self.next_pass)
            s_pass(&self, now);
        int64_t wake = self.in_flight > 0 ? self.wait_until : self.next_pass;
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
    payment_store_close(&self.store);
    mdpcli_destroy(&self.client);
    gateway_destroy(&self.gateway);
    s_args_t *a = self.args;
    s_args_destroy(&a);
}

zactor_t *followup_new(const service_env_t *env, const gateway_config_t *gw,
                       payments_shared_t *shared, char *err, size_t errlen)
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
    /* the gateway's config, its strings copied: the actor starts it */
    args->gw = *gw;
    args->gw_kind = gw->kind ? strdup(gw->kind) : NULL;
    args->gw_data_dir = gw->data_dir ? strdup(gw->data_dir) : NULL;
    args->gw_endpoint = gw->endpoint ? strdup(gw->endpoint) : NULL;
    args->gw.kind = args->gw_kind;
    args->gw.data_dir = args->gw_data_dir;
    args->gw.endpoint = args->gw_endpoint;
    if (!args->endpoint || (env->server_key && !args->server_key) || (env->cert && !args->cert) ||
        (gw->kind && !args->gw_kind) || (gw->data_dir && !args->gw_data_dir) ||
        (gw->endpoint && !args->gw_endpoint)) {
        s_args_destroy(&args);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    /* The actor owns args from here, also when its setup fails. */
    zactor_t *actor = zactor_new(s_actor, args);
    if (!actor) {
        s_args_destroy(&args);
        snprintf(err, errlen, "payments follow-up: cannot start its thread");
        return NULL;
    }
    int status = -1;
    char *message = NULL;
    if (zsock_recv(actor, "is", &status, &message) != 0)
        snprintf(err, errlen, "payments follow-up: no answer from its thread");
    else if (status != 0)
        snprintf(err, errlen, "%s", message ? message : "payments follow-up: cannot start");
    zstr_free(&message);
    if (status != 0)
        zactor_destroy(&actor);
    return actor;
}

void followup_destroy(zactor_t **self_p)
{
    zactor_destroy(self_p);
}

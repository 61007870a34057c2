/*  runner.c - the load loop of runner.h.
 *
 *  Each virtual user is a small state machine over its scenario: where it
 *  is (setup or a flow, which step, how many repeats are left), what it
 *  captured, and its one request in flight. s_next picks its next step;
 *  s_send fills the step's templates and sends it; s_on_reply measures the
 *  reply, applies its captures, records it, and decides whether the flow
 *  goes on. In the closed loop a user sends again at once; in the open
 *  loop it joins the idle queue and s_dispatch hands it the next due slot.
 *
 *  The hot path is raw libzmq (zmq_send, and zmq_msg_recv through
 *  frames_recv): CZMQ's zmsg costs allocations per frame, and the harness
 *  must be cheaper than what it measures. Constant args (the common case)
 *  are copied, not filled, and replies are decoded into one reused zone.
 */
#include "tools/harness/runner.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "protocol/envelope.h"
#include "protocol/frames.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"

#define NS_PER_S 1000000000LL
#define NS_PER_MS 1000000LL
#define REPLY_FRAMES 4
#define S_TIMEOUT_SCAN_NS (100 * NS_PER_MS)
/* A user that cannot fill this many steps in a row without sending has
 * nothing it can send (a variable no step ever captures in time). */
#define S_FILL_TRIES 64
#define S_BACK_OFF_MAX_NS (10 * NS_PER_S)
/* A setup step that failed without a retry_after is asked again after
 * this: setup errors are usually the system being busy (password hashes). */
#define S_SETUP_BACK_OFF_NS (200 * NS_PER_MS)

typedef struct {
    uint64_t id; /* the request in flight; id % vus is this user */
    int64_t sent_ns, due_ns;
    bool busy, idle_queued, dead;
    bool sleeping; /* backing off until wake_ns */
    int64_t wake_ns;
    bool set_up, in_setup;
    bool flow_failed;            /* a step of the current flow failed */
    const scenario_flow_t *flow; /* NULL: none begun */
    size_t pos;                  /* the step within flow */
    uint32_t left;               /* repeats of that step still to send */
    uint64_t flows_begun, unique, rng;
    size_t step; /* the step in flight */
    template_value_t *vars;
    msgpack_sbuffer *var_bufs;
    msgpack_sbuffer sent; /* the request in flight, when the record wants it */
    char user_id[128], email[256];
} vu_t;

struct runner_t {
    runner_options_t opt;
    const scenario_t *scenario;
    bool curve;
    zsock_t **socks;
    void **raw;
    zpoller_t *poller;
    vu_t *vus;
    size_t *idle; /* open loop: a FIFO ring of idle users */
    size_t idle_head, idle_count;
    size_t outstanding;
    uint64_t seq;
    char run_id[40];
    msgpack_sbuffer args, token, body;
    msgpack_zone zone;
    runner_result_t result;
    int64_t start, window_from, window_to;
    double interval_ns;   /* open loop: between two due requests */
    uint64_t due_count;   /* open loop: requests sent against the schedule */
    uint64_t replies_all; /* every matched reply, warmup included */
    bool sending;         /* the window is open: users send */
    bool record_failed;
    bool failed;
};

static int64_t s_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

static int s_stats_init(runner_stats_t *stats)
{
    memset(stats, 0, sizeof *stats);
    stats->latency = histogram_new();
    return stats->latency ? 0 : -1;
}

uint64_t runner_stats_errors(const runner_stats_t *stats)
{
    uint64_t n = stats->no_reply + stats->capture + stats->missing_var;
    for (int c = 0; c < ERR__COUNT; c++)
        n += stats->errors[c];
    return n;
}

void runner_destroy(runner_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    runner_t *self = *self_p;
    zpoller_destroy(&self->poller);
    if (self->socks)
        for (size_t i = 0; i < self->opt.sockets; i++)
            zsock_destroy(&self->socks[i]);
    free(self->socks);
    free(self->raw);
    if (self->vus)
        for (size_t v = 0; v < self->opt.vus; v++) {
            vu_t *vu = &self->vus[v];
            if (vu->var_bufs)
                for (size_t i = 0; i < scenario_var_count(self->scenario); i++)
                    msgpack_sbuffer_destroy(&vu->var_bufs[i]);
            free(vu->var_bufs);
            free(vu->vars);
            msgpack_sbuffer_destroy(&vu->sent);
        }
    free(self->vus);
    free(self->idle);
    histogram_destroy(&self->result.total.latency);
    if (self->result.steps)
        for (size_t i = 0; i < self->result.nsteps; i++)
            histogram_destroy(&self->result.steps[i].latency);
    free(self->result.steps);
    msgpack_sbuffer_destroy(&self->args);
    msgpack_sbuffer_destroy(&self->token);
    msgpack_sbuffer_destroy(&self->body);
    msgpack_zone_destroy(&self->zone);
    free(self);
    *self_p = NULL;
}

runner_t *runner_new(const runner_options_t *options, const scenario_t *scenario, char *err,
                     size_t errlen)
{
    runner_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    self->opt = *options;
    self->scenario = scenario;
    self->curve = options->cert != NULL;
    msgpack_sbuffer_init(&self->args);
    msgpack_sbuffer_init(&self->token);
    msgpack_sbuffer_init(&self->body);
    bool zone_ok = msgpack_zone_init(&self->zone, 4096);
    if (options->run_id)
        snprintf(self->run_id, sizeof self->run_id, "%s", options->run_id);
    else {
        /* Unique enough across runs on one machine: the wall clock in ms
         * and the process. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        snprintf(self->run_id, sizeof self->run_id, "r%" PRIx64 "p%x",
                 (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000, (unsigned)getpid());
    }
    self->result.run_id = self->run_id;
    size_t nvars = scenario_var_count(scenario);
    size_t nsteps = scenario_step_count(scenario);
    self->socks = calloc(options->sockets, sizeof *self->socks);
    self->raw = calloc(options->sockets, sizeof *self->raw);
    self->vus = calloc(options->vus, sizeof *self->vus);
    self->idle = calloc(options->vus, sizeof *self->idle);
    self->result.steps = calloc(nsteps ? nsteps : 1, sizeof *self->result.steps);
    if (!zone_ok || !self->socks || !self->raw || !self->vus || !self->idle ||
        !self->result.steps || s_stats_init(&self->result.total) != 0)
        goto oom;
    self->result.nsteps = nsteps;
    for (size_t i = 0; i < nsteps; i++)
        if (s_stats_init(&self->result.steps[i]) != 0)
            goto oom;

    uint64_t seed = options->seed;
    if (!seed) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
    }
    const template_value_t *constants = scenario_constants(scenario);
    for (size_t v = 0; v < options->vus; v++) {
        vu_t *vu = &self->vus[v];
        msgpack_sbuffer_init(&vu->sent);
        vu->id = v;
        /* Distinct, never-zero streams per user. */
        vu->rng = (seed + 0x9E3779B97F4A7C15ULL * (v + 1)) | 1;
        vu->vars = calloc(nvars ? nvars : 1, sizeof *vu->vars);
        vu->var_bufs = calloc(nvars ? nvars : 1, sizeof *vu->var_bufs);
        if (!vu->vars || !vu->var_bufs)
            goto oom;
        for (size_t i = 0; i < nvars; i++) {
            msgpack_sbuffer_init(&vu->var_bufs[i]);
            vu->vars[i] = constants[i];
        }
    }

    for (size_t i = 0; i < options->sockets; i++) {
        zsock_t *sock = zsock_new(ZMQ_DEALER);
        if (!sock)
            goto oom;
        self->socks[i] = sock;
        self->raw[i] = zsock_resolve(sock);
        zsock_set_linger(sock, 0);
        /* No high-water mark: the runner bounds what is in flight itself,
         * and a send must never block or drop. */
        zsock_set_sndhwm(sock, 0);
        zsock_set_rcvhwm(sock, 0);
        if (options->cert)
            keys_apply_client(sock, options->cert, options->server_public);
        if (zsock_connect(sock, "%s", options->endpoint) != 0) {
            snprintf(err, errlen, "cannot connect to %s", options->endpoint);
            runner_destroy(&self);
            return NULL;
        }
        if (i == 0)
            self->poller = zpoller_new(sock, NULL);
        else if (zpoller_add(self->poller, sock) != 0)
            goto oom;
        if (!self->poller)
            goto oom;
    }
    return self;
oom:
    snprintf(err, errlen, "out of memory setting up %zu users", options->vus);
    runner_destroy(&self);
    return NULL;
}

void runner_set_record(runner_t *self, record_t *record)
{
    self->opt.record = record;
}

const runner_result_t *runner_result(const runner_t *self)
{
    return &self->result;
}

/* A step of the setup that did not succeed is asked again (after a
 * back-off), keeping what the setup captured before it: a login that met
 * a busy password hasher must not register another user. */
static void s_retry_step(vu_t *vu)
{
    vu->left++;
    vu->flow_failed = false;
}

/* Ends the user's current flow after a failed step: its next step begins
 * another (the setup again, if that was the setup). */
static void s_fail_flow(vu_t *vu)
{
    if (vu->flow)
        vu->pos = vu->flow->count;
    vu->left = 0;
    vu->flow_failed = true;
}

/* The user's next step, or NULL when its scenario gives it none. */
static const scenario_step_t *s_next(runner_t *self, vu_t *vu)
{
    const scenario_t *sc = self->scenario;
    /* Bounded: a scenario whose every step has chance 0 or repeat 0 would
     * otherwise spin here. */
    for (size_t guard = 0; guard < 4 * (scenario_step_count(sc) + 2); guard++) {
        if (vu->left > 0) {
            vu->left--;
            return scenario_step(sc, vu->flow->first + vu->pos);
        }
        if (vu->flow)
            vu->pos++;
        if (!vu->flow || vu->pos >= vu->flow->count) {
            if (vu->in_setup && !vu->flow_failed)
                vu->set_up = true;
            vu->flow_failed = false;
            const scenario_flow_t *setup = scenario_setup(sc);
            if (!vu->set_up && setup->count > 0) {
                vu->flow = setup;
                vu->in_setup = true;
            } else {
                vu->set_up = true;
                vu->flow = scenario_flow(sc, scenario_pick_flow(sc, &vu->rng));
                vu->in_setup = false;
                vu->flows_begun++;
            }
            vu->pos = 0;
        }
        const scenario_step_t *step = scenario_step(sc, vu->flow->first + vu->pos);
        if (step->chance < 1 &&
            (double)(template_random(&vu->rng) >> 11) / 9007199254740992.0 >= step->chance)
            continue;
        uint32_t span = step->repeat_max - step->repeat_min;
        vu->left = step->repeat_min +
                   (span ? (uint32_t)(template_random(&vu->rng) % ((uint64_t)span + 1)) : 0);
    }
    return NULL;
}

static runner_stats_t *s_step_stats(runner_t *self, size_t step)
{
    return &self->result.steps[step];
}

/* Counts something that happened to step, in the step's and the total's
 * figures, when it happened in the measured part of the run. */
#define S_COUNT(self, step, now, field)                                                            \
    do {                                                                                           \
        if ((now) >= (self)->window_from) {                                                        \
            s_step_stats(self, step)->field++;                                                     \
            (self)->result.total.field++;                                                          \
        }                                                                                          \
    } while (0)

/* Fills step's templates for user v and sends the request. 1 when sent,
 * 0 when a template could not be filled (counted; the flow failed), -1
 * on a fatal error. */
static int s_send_step(runner_t *self, size_t v, const scenario_step_t *step, int64_t now,
                       int64_t due)
{
    vu_t *vu = &self->vus[v];
    template_ctx_t ctx = {.seq = self->seq,
                          .vu = v,
                          .iter = vu->flows_begun ? vu->flows_begun - 1 : 0,
                          .run = self->run_id,
                          .unique = &vu->unique,
                          .rng = &vu->rng,
                          .vars = vu->vars,
                          .files = scenario_files(self->scenario)};
    int missing;
    const char *why;
    msgpack_packer pk;
    /* lets first: args and token may use what they set. Each is filled
     * aside and then copied, so a let may read the variable it sets. */
    for (size_t l = 0; l < step->nlets; l++) {
        msgpack_sbuffer_clear(&self->args);
        msgpack_packer_init(&pk, &self->args, msgpack_sbuffer_write);
        int rc = template_fill(step->lets[l].value, &ctx, &pk, &missing, &why);
        if (rc == -2)
            goto oom;
        if (rc != 0) {
            S_COUNT(self, step->index, now, missing_var);
            s_fail_flow(vu);
            return 0;
        }
        msgpack_sbuffer *buf = &vu->var_bufs[step->lets[l].var];
        msgpack_sbuffer_clear(buf);
        if (msgpack_sbuffer_write(buf, self->args.data, self->args.size) != 0)
            goto oom;
        vu->vars[step->lets[l].var] = (template_value_t){buf->data, buf->size};
    }
    msgpack_sbuffer_clear(&self->args);
    if (step->args) {
        msgpack_packer_init(&pk, &self->args, msgpack_sbuffer_write);
        int rc = template_fill(step->args, &ctx, &pk, &missing, &why);
        if (rc == -2)
            goto oom;
        if (rc != 0) {
            S_COUNT(self, step->index, now, missing_var);
            s_fail_flow(vu);
            return 0;
        }
    }
    char token[ENVELOPE_MAX_TOKEN + 1];
    bool have_token = false;
    if (step->token) {
        msgpack_sbuffer_clear(&self->token);
        msgpack_packer_init(&pk, &self->token, msgpack_sbuffer_write);
        int rc = template_fill(step->token, &ctx, &pk, &missing, &why);
        if (rc == -2)
            goto oom;
        msgpack_unpacked one;
        msgpack_unpacked_init(&one);
        bool is_str = rc == 0 &&
                      msgpack_unpack_next(&one, self->token.data, self->token.size, NULL) ==
                          MSGPACK_UNPACK_SUCCESS &&
                      one.data.type == MSGPACK_OBJECT_STR &&
                      one.data.via.str.size <= ENVELOPE_MAX_TOKEN;
        if (is_str) {
            memcpy(token, one.data.via.str.ptr, one.data.via.str.size);
            token[one.data.via.str.size] = '\0';
            have_token = true;
        }
        msgpack_unpacked_destroy(&one);
        if (!is_str) {
            S_COUNT(self, step->index, now, missing_var);
            s_fail_flow(vu);
            return 0;
        }
    }
    msgpack_sbuffer_clear(&self->body);
    if (envelope_pack_request(&self->body, vu->id, step->op, have_token ? token : NULL,
                              step->args ? self->args.data : NULL, self->args.size) != 0)
        goto oom;
    if (self->body.size > self->result.request_bytes_max)
        self->result.request_bytes_max = self->body.size;
    if (self->opt.record && record_wants(step->service, step->op)) {
        msgpack_sbuffer_clear(&vu->sent);
        if (msgpack_sbuffer_write(&vu->sent, self->body.data, self->body.size) != 0)
            goto oom;
    }
    void *sock = self->raw[v % self->opt.sockets];
    /* Nothing can block here (no HWM, and a connected DEALER always has a
     * pipe), so a failure is a real error rather than back-pressure. */
    if (zmq_send(sock, "", 0, ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send(sock, MDP_CLIENT, strlen(MDP_CLIENT), ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send(sock, step->service, strlen(step->service), ZMQ_SNDMORE | ZMQ_DONTWAIT) == -1 ||
        zmq_send(sock, self->body.data, self->body.size, ZMQ_DONTWAIT) == -1) {
        zsys_error("loadgen: send failed: %s", zmq_strerror(zmq_errno()));
        self->failed = true;
        return -1;
    }
    self->seq++;
    vu->busy = true;
    vu->sent_ns = now;
    vu->due_ns = due;
    vu->step = step->index;
    self->outstanding++;
    S_COUNT(self, step->index, now, requests);
    return 1;
oom:
    zsys_error("loadgen: out of memory filling a request");
    self->failed = true;
    return -1;
}

/* Sends user v's next request. 1 sent, 0 when the user has nothing left
 * it can send (it is dead from then on), -1 fatal. */
static int s_send_next(runner_t *self, size_t v, int64_t now, int64_t due)
{
    vu_t *vu = &self->vus[v];
    for (int tries = 0; tries < S_FILL_TRIES && !vu->dead; tries++) {
        const scenario_step_t *step = s_next(self, vu);
        if (!step)
            break;
        int rc = s_send_step(self, v, step, now, due);
        if (rc != 0)
            return rc;
    }
    if (!vu->dead)
        zsys_warning("loadgen: virtual user %zu has nothing it can send (a variable never "
                     "captured?); it stops",
                     v);
    vu->dead = true;
    return 0;
}

static void s_idle_push(runner_t *self, size_t v)
{
    vu_t *vu = &self->vus[v];
    if (vu->dead || vu->idle_queued)
        return;
    self->idle[(self->idle_head + self->idle_count) % self->opt.vus] = v;
    self->idle_count++;
    vu->idle_queued = true;
}

static size_t s_idle_pop(runner_t *self)
{
    size_t v = self->idle[self->idle_head];
    self->idle_head = (self->idle_head + 1) % self->opt.vus;
    self->idle_count--;
    self->vus[v].idle_queued = false;
    return v;
}

/* After a user's request ended (replied or given up): its next one, or
 * a sleep until its back-off ends (s_wake). */
static int s_continue(runner_t *self, size_t v, int64_t now)
{
    if (!self->sending)
        return 0;
    if (self->vus[v].wake_ns > now) {
        self->vus[v].sleeping = true;
        return 0;
    }
    if (self->opt.rate > 0) {
        s_idle_push(self, v);
        return 0;
    }
    return s_send_next(self, v, now, now) < 0 ? -1 : 0;
}

static void s_record(runner_t *self, vu_t *vu, const scenario_step_t *step, bool ack,
                     const char *code, const msgpack_object *data)
{
    if (!self->opt.record || !record_wants(step->service, step->op))
        return;
    envelope_request_t request;
    const char *why;
    const msgpack_object *args = NULL;
    if (envelope_decode_request(vu->sent.data, vu->sent.size, &self->zone, &request, &why))
        args = &request.args;
    record_entry_t entry = {.vu = (uint64_t)(vu - self->vus),
                            .step = step->name,
                            .service = step->service,
                            .op = step->op,
                            .ack = ack,
                            .code = code,
                            .user_id = vu->user_id[0] ? vu->user_id : NULL,
                            .email = vu->email[0] ? vu->email : NULL,
                            .args = args,
                            .data = data};
    if (record_write(self->opt.record, &entry) != 0 && !self->record_failed) {
        zsys_error("loadgen: cannot write the record");
        self->record_failed = true;
    }
}

static void s_copy_str(char *out, size_t size, const msgpack_object *o)
{
    if (o && o->type == MSGPACK_OBJECT_STR && o->via.str.size < size) {
        memcpy(out, o->via.str.ptr, o->via.str.size);
        out[o->via.str.size] = '\0';
    }
}

/* Gives up on user v's request in flight: it is counted no_reply. */
static int s_give_up(runner_t *self, size_t v, int64_t now, bool go_on)
{
    vu_t *vu = &self->vus[v];
    const scenario_step_t *step = scenario_step(self->scenario, vu->step);
    vu->busy = false;
    self->outstanding--;
    vu->id += self->opt.vus; /* a late reply is unmatched */
    S_COUNT(self, step->index, now, no_reply);
    s_record(self, vu, step, false, "no_reply", NULL);
    msgpack_zone_clear(&self->zone);
    if (vu->in_setup)
        s_retry_step(vu);
    else
        s_fail_flow(vu);
    return go_on ? s_continue(self, v, now) : 0;
}

/* details.retry_after (seconds) of an error, in ns (at most
 * S_BACK_OFF_MAX_NS); 0 when there is none. */
static int64_t s_retry_after_ns(const msgpack_object *error)
{
    const msgpack_object *details = mp_map_get(error, "details");
    const msgpack_object *after =
        details && details->type == MSGPACK_OBJECT_MAP ? mp_map_get(details, "retry_after") : NULL;
    if (!after || after->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        return 0;
    uint64_t s = after->via.u64;
    return s * NS_PER_S > S_BACK_OFF_MAX_NS ? S_BACK_OFF_MAX_NS : (int64_t)(s * NS_PER_S);
}

/* Wakes the users whose back-off is over. */
static int s_wake(runner_t *self, int64_t now)
{
    for (size_t v = 0; v < self->opt.vus; v++) {
        vu_t *vu = &self->vus[v];
        if (!vu->sleeping || vu->wake_ns > now)
            continue;
        vu->sleeping = false;
        if (s_continue(self, v, now) != 0)
            return -1;
    }
    return 0;
}

/* Handles one reply body. 0, or -1 on a fatal error. */
static int s_on_reply(runner_t *self, const void *body, size_t len, int64_t now)
{
    envelope_reply_t reply;
    const char *why;
    if (!envelope_decode_reply(body, len, &self->zone, &reply, &why)) {
        msgpack_zone_clear(&self->zone);
        self->result.malformed++;
        return 0;
    }
    if (reply.id.type != MSGPACK_OBJECT_POSITIVE_INTEGER) {
        msgpack_zone_clear(&self->zone);
        self->result.unmatched++;
        return 0;
    }
    uint64_t id = reply.id.via.u64;
    size_t v = (size_t)(id % self->opt.vus);
    vu_t *vu = &self->vus[v];
    if (!vu->busy || vu->id != id) {
        msgpack_zone_clear(&self->zone);
        self->result.unmatched++;
        return 0;
    }
    vu->busy = false;
    self->outstanding--;
    vu->id += self->opt.vus;
    self->replies_all++;
    const scenario_step_t *step = scenario_step(self->scenario, vu->step);
    bool measured = now >= self->window_from;
    if (measured) {
        int64_t from = self->opt.rate > 0 ? vu->due_ns : vu->sent_ns;
        uint64_t ns = now > from ? (uint64_t)(now - from) : 0;
        runner_stats_t *stats = s_step_stats(self, step->index);
        histogram_record(stats->latency, ns);
        histogram_record(self->result.total.latency, ns);
        stats->replies++;
        self->result.total.replies++;
        if (now < self->window_to)
            self->result.in_window++;
    }
    if (reply.ok) {
        S_COUNT(self, step->index, now, ok);
        for (size_t c = 0; c < step->ncaptures; c++) {
            const msgpack_object *found = template_path_find(step->captures[c].path, &reply.data);
            if (!found) {
                S_COUNT(self, step->index, now, capture);
                s_fail_flow(vu);
                break;
            }
            int var = step->captures[c].var;
            msgpack_sbuffer *buf = &vu->var_bufs[var];
            msgpack_sbuffer_clear(buf);
            msgpack_packer pk;
            msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
            if (msgpack_pack_object(&pk, *found) != 0) {
                zsys_error("loadgen: out of memory capturing a value");
                self->failed = true;
                msgpack_zone_clear(&self->zone);
                return -1;
            }
            vu->vars[var].data = buf->data;
            vu->vars[var].len = buf->size;
        }
        if (strcmp(step->service, "users") == 0 &&
            (strcmp(step->op, "auth.register") == 0 || strcmp(step->op, "auth.login") == 0)) {
            const msgpack_object *user = mp_map_get(&reply.data, "user");
            if (user && user->type == MSGPACK_OBJECT_MAP) {
                s_copy_str(vu->user_id, sizeof vu->user_id, mp_map_get(user, "id"));
                s_copy_str(vu->email, sizeof vu->email, mp_map_get(user, "email"));
            }
        }
        s_record(self, vu, step, true, NULL, &reply.data);
    } else {
        const char *code = err_code_name(reply.code);
        /* An accepted code is an expected outcome (an item sold out): not
         * an error, but the flow cannot go on without its reply either. */
        if (step->accept[reply.code])
            S_COUNT(self, step->index, now, accepted);
        else if (measured) {
            s_step_stats(self, step->index)->errors[reply.code]++;
            self->result.total.errors[reply.code]++;
        }
        /* A client that is told when to come back waits that long, as a
         * well-behaved one would; a setup step is then asked again. */
        int64_t back_off = s_retry_after_ns(&reply.error);
        if (vu->in_setup) {
            s_retry_step(vu);
            if (back_off < S_SETUP_BACK_OFF_NS)
                back_off = S_SETUP_BACK_OFF_NS;
        } else
            s_fail_flow(vu);
        if (back_off > 0)
            vu->wake_ns = now + back_off;
        if (record_code_unknown(code))
            s_record(self, vu, step, false, code, NULL);
    }
    msgpack_zone_clear(&self->zone);
    return s_continue(self, v, now);
}

/* Receives one message from socket i without waiting. 1 when a message
 * was handled, 0 when there was none, -1 on a fatal error. */
static int s_recv_one(runner_t *self, size_t i)
{
    zmq_msg_t part[REPLY_FRAMES];
    int n = frames_recv(self->raw[i], part, REPLY_FRAMES, ZMQ_DONTWAIT);
    if (n == 0) {
        int err = zmq_errno();
        /* Later frames of a message are always there once the first is,
         * so EAGAIN can only mean "no message". */
        if (err == EAGAIN)
            return 0;
        zsys_error("loadgen: receive failed: %s", zmq_strerror(err));
        self->failed = true;
        return -1;
    }
    int64_t now = s_now_ns();
    int rc = 1;
    /* one with more frames than a reply (-1, dropped already) is malformed too */
    if (n != REPLY_FRAMES || zmq_msg_size(&part[0]) != 0 || !frames_is(&part[1], MDP_CLIENT))
        self->result.malformed++;
    else if (s_on_reply(self, zmq_msg_data(&part[3]), zmq_msg_size(&part[3]), now) != 0)
        rc = -1;
    if (n > 0)
        frames_close(part, n);
    return rc;
}

/* Reads what every socket has ready, at most vus messages from each per
 * sweep so that a busy one cannot starve the others or the clock. */
static int s_sweep(runner_t *self)
{
    for (size_t i = 0; i < self->opt.sockets; i++)
        for (size_t k = 0; k < self->opt.vus; k++) {
            int rc = s_recv_one(self, i);
            if (rc < 0)
                return -1;
            if (rc == 0)
                break;
        }
    return 0;
}

static int s_scan_timeouts(runner_t *self, int64_t now)
{
    int64_t limit = (int64_t)self->opt.timeout_ms * NS_PER_MS;
    for (size_t v = 0; v < self->opt.vus; v++)
        if (self->vus[v].busy && now - self->vus[v].sent_ns >= limit &&
            s_give_up(self, v, now, true) != 0)
            return -1;
    return 0;
}

/* Open loop: gives every request due by now to an idle user. */
static int s_dispatch(runner_t *self, int64_t now)
{
    /* The backlog is measured before it is handed out: what was due and
     * waited for a free user. */
    int64_t first_due = self->start + (int64_t)((double)self->due_count * self->interval_ns);
    if (first_due <= now && first_due < self->window_to) {
        int64_t until = now < self->window_to ? now : self->window_to - 1;
        uint64_t late = (uint64_t)((double)(until - first_due) / self->interval_ns) + 1;
        if (late > self->result.due_late_max)
            self->result.due_late_max = late;
    }
    while (self->idle_count > 0) {
        int64_t due = self->start + (int64_t)((double)self->due_count * self->interval_ns);
        if (due > now || due >= self->window_to)
            break;
        size_t v = s_idle_pop(self);
        int rc = s_send_next(self, v, now, due);
        if (rc < 0)
            return -1;
        if (rc > 0)
            self->due_count++;
    }
    return 0;
}

/* Waits until deadline or a reply; false when interrupted. */
static bool s_wait(runner_t *self, int64_t deadline)
{
    int64_t left = deadline - s_now_ns();
    int ms = left <= 0 ? 0 : (int)((left + NS_PER_MS - 1) / NS_PER_MS);
    void *which = zpoller_wait(self->poller, ms);
    if (!which && zpoller_terminated(self->poller)) {
        self->result.interrupted = true;
        return false;
    }
    return true;
}

static bool s_any_alive(const runner_t *self)
{
    for (size_t v = 0; v < self->opt.vus; v++)
        if (!self->vus[v].dead)
            return true;
    return false;
}

static void s_progress(runner_t *self, int64_t now, uint64_t *last_replies, int64_t *last_ns)
{
    double elapsed = (double)(now - self->start) / NS_PER_S;
    double rate = (double)(self->replies_all - *last_replies) * NS_PER_S / (double)(now - *last_ns);
    const char *phase = now < self->window_from ? "warmup" : "run";
    double p99 = (double)histogram_percentile(self->result.total.latency, 99) / NS_PER_MS;
    fprintf(self->opt.progress,
            "%-6s %6.1f s %9.0f req/s %8" PRIu64 " errors  p99 %8.2f ms %6zu in flight\n", phase,
            elapsed, rate, runner_stats_errors(&self->result.total), p99, self->outstanding);
    fflush(self->opt.progress);
    *last_replies = self->replies_all;
    *last_ns = now;
}

static double s_cpu_s(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

int runner_run(runner_t *self)
{
    const runner_options_t *opt = &self->opt;
    double cpu_from = s_cpu_s();
    int64_t now = s_now_ns();
    self->start = now;
    self->window_from = now + (int64_t)(opt->warmup * NS_PER_S);
    self->window_to = self->window_from + (int64_t)(opt->seconds * NS_PER_S);
    self->interval_ns = opt->rate > 0 ? NS_PER_S / opt->rate : 0;
    self->sending = true;
    if (opt->rate > 0)
        for (size_t v = 0; v < opt->vus; v++)
            s_idle_push(self, v);
    else
        for (size_t v = 0; v < opt->vus && !self->failed; v++)
            if (s_send_next(self, v, now, now) < 0)
                break;

    int64_t next_tick = now + NS_PER_S, next_scan = now + S_TIMEOUT_SCAN_NS;
    uint64_t last_replies = 0;
    int64_t last_ns = now;
    while (now < self->window_to && !self->failed) {
        if (opt->rate > 0 && s_dispatch(self, now) != 0)
            break;
        int64_t deadline = next_tick < next_scan ? next_tick : next_scan;
        if (self->window_to < deadline)
            deadline = self->window_to;
        if (opt->rate > 0 && self->idle_count > 0) {
            int64_t due = self->start + (int64_t)((double)self->due_count * self->interval_ns);
            if (due < deadline)
                deadline = due;
        }
        if (!s_wait(self, deadline) || s_sweep(self) != 0)
            break;
        now = s_now_ns();
        if (now >= next_scan) {
            if (s_scan_timeouts(self, now) != 0 || s_wake(self, now) != 0)
                break;
            next_scan = now + S_TIMEOUT_SCAN_NS;
        }
        if (now >= next_tick) {
            if (opt->progress)
                s_progress(self, now, &last_replies, &last_ns);
            next_tick += NS_PER_S;
        }
        if (self->outstanding == 0 && !s_any_alive(self))
            break; /* nobody has anything to send */
    }
    self->sending = false;
    int64_t stopped = now < self->window_to ? now : self->window_to;
    if (stopped < self->window_from)
        stopped = self->window_from; /* interrupted during the warmup */
    self->result.window_s = (double)(stopped - self->window_from) / NS_PER_S;

    /* Drain: no new requests; collect what is still in flight, each until
     * its own timeout. */
    while (self->outstanding > 0 && !self->result.interrupted && !self->failed) {
        now = s_now_ns();
        if (!s_wait(self, now + S_TIMEOUT_SCAN_NS) || s_sweep(self) != 0)
            break;
        if (s_scan_timeouts(self, s_now_ns()) != 0)
            break;
    }
    /* Interrupted: what is still out has no reply. */
    now = s_now_ns();
    for (size_t v = 0; v < opt->vus; v++)
        if (self->vus[v].busy)
            s_give_up(self, v, now, false);
    self->result.cpu_s = s_cpu_s() - cpu_from;
    self->result.replies_all = self->replies_all;
    return self->failed ? -1 : 0;
}

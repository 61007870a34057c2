/*  relay.c - publishes committed events in order (relay.h says how).
 *
 *  One loop, zmq_poll on three things: the actor's pipe ($TERM), the
 *  XPUB socket (the proxy's subscription and, when it goes away, the
 *  unsubscription that libzmq reports for it) and the environment's
 *  commit eventfd. Each turn that may have something to do reads the
 *  outbox from `next` in pages and sends until it has sent everything
 *  committed or a send would block (a full pipe: ZMQ_XPUB_NODROP makes
 *  that an EAGAIN instead of a silent drop); then it waits. A timer turn
 *  (every 100 ms while something is left, else every 500 ms) retries, and
 *  writes the published mark and trims on their own periods, so neither
 *  costs a write per event.
 */
#include "actors/relay.h"
#include "protocol/keys.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <zmq.h>

struct relay_stats_t {
    pthread_mutex_t lock;
    int n;
    struct {
        char type[OUTBOX_TYPE_MAX + 1];
        uint64_t count;
    } types[RELAY_TYPES_MAX];
    uint64_t sent;
    uint64_t other; /* types beyond RELAY_TYPES_MAX, which the contract does not reach */
};

relay_stats_t *relay_stats_new(void)
{
    relay_stats_t *self = calloc(1, sizeof *self);
    if (self)
        pthread_mutex_init(&self->lock, NULL);
    return self;
}

void relay_stats_destroy(relay_stats_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    pthread_mutex_destroy(&(*self_p)->lock);
    free(*self_p);
    *self_p = NULL;
}

static void s_stats_add(relay_stats_t *self, uint64_t seq, const char *type, size_t len)
{
    if (!self)
        return;
    pthread_mutex_lock(&self->lock);
    self->sent = seq;
    int i = 0;
    while (i < self->n &&
           !(strlen(self->types[i].type) == len && memcmp(self->types[i].type, type, len) == 0))
        i++;
    if (i == self->n && self->n < RELAY_TYPES_MAX && len <= OUTBOX_TYPE_MAX) {
        memcpy(self->types[i].type, type, len);
        self->types[i].type[len] = '\0';
        self->n++;
    }
    if (i < self->n)
        self->types[i].count++;
    else
        self->other++;
    pthread_mutex_unlock(&self->lock);
}

uint64_t relay_stats_sent(relay_stats_t *self)
{
    pthread_mutex_lock(&self->lock);
    uint64_t sent = self->sent;
    pthread_mutex_unlock(&self->lock);
    return sent;
}

void relay_stats_each(relay_stats_t *self, void (*fn)(const char *type, uint64_t count, void *arg),
                      void *arg)
{
    pthread_mutex_lock(&self->lock);
    for (int i = 0; i < self->n; i++)
        fn(self->types[i].type, self->types[i].count, arg);
    if (self->other)
        fn("other", self->other, arg);
    pthread_mutex_unlock(&self->lock);
}

/* ---- the actor ---- */

typedef struct {
    relay_config_t config;
    zcert_t *cert; /* the config's copy */
    char server_key[KEYS_Z85_LEN + 1];
    char endpoint[256];
    char crash_marker[1100];
    zsock_t *pipe;
    zsock_t *sock; /* XPUB */
    void *handle;
    int commit_fd; /* eventfd signalled by the environment's committer */
    int subscribers;
    uint64_t next;   /* the first seq not yet sent */
    uint64_t marked; /* the highest seq written as published */
    bool blocked;    /* the last turn stopped at a full pipe */
    bool more;       /* the last turn stopped at the end of a page */
    int64_t mark_at, trim_at;
} s_relay_t;

#define S_PAGE 256

/* Makes the marker; true when this process made it (and may crash). */
static bool s_crash_marked(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static int s_send(const outbox_event_t *event, void *arg)
{
    s_relay_t *self = arg;
    if (event->seq != self->next) {
        /* a gap can only be corruption: never skip past it silently */
        zsys_error("relay %s: expected seq %llu, found %llu", outbox_source(self->config.outbox),
                   (unsigned long long)self->next, (unsigned long long)event->seq);
        return -1;
    }
    if (self->crash_marker[0] && s_crash_marked(self->crash_marker)) {
        zsys_warning("relay %s: crash_before_publish: killing the process before seq %llu",
                     outbox_source(self->config.outbox), (unsigned long long)event->seq);
        kill(getpid(), SIGKILL);
    }
    if (zmq_send(self->handle, event->type, event->type_len, ZMQ_SNDMORE | ZMQ_DONTWAIT) < 0) {
        if (zmq_errno() == EAGAIN) {
            self->blocked = true;
            return 1;
        }
        zsys_error("relay %s: send: %s", outbox_source(self->config.outbox),
                   zmq_strerror(zmq_errno()));
        return -1;
    }
    /* The second part cannot meet the high-water mark the first passed
     * (it is counted per message), so this does not block. */
    if (zmq_send(self->handle, event->message, event->message_len, 0) < 0) {
        zsys_error("relay %s: send: %s", outbox_source(self->config.outbox),
                   zmq_strerror(zmq_errno()));
        return -1;
    }
    s_stats_add(self->config.stats, event->seq, event->type, event->type_len);
    self->next++;
    return 0;
}

/* Sends what has committed, page by page, until done or blocked. */
static void s_publish(s_relay_t *self)
{
    self->blocked = false;
    self->more = false;
    if (self->subscribers <= 0)
        return;
    for (int pages = 0; pages < 16; pages++) {
        uint64_t before = self->next;
        int rc = outbox_read(self->config.outbox, self->next, S_PAGE, s_send, self);
        if (rc != 0 && rc != 1)
            return; /* logged; the timer tries again */
        if (self->blocked || self->next - before < S_PAGE)
            return;
    }
    self->more = true; /* let the pipe and the socket have a turn */
}

static void s_mark(s_relay_t *self, bool force)
{
    int64_t now = zclock_mono();
    if (self->next - 1 <= self->marked || (!force && now < self->mark_at))
        return;
    uint64_t seq = self->next - 1;
    int rc = outbox_mark_published(self->config.outbox, seq);
    if (rc == 0)
        self->marked = seq;
    else
        zsys_error("relay %s: cannot write the published mark: %s",
                   outbox_source(self->config.outbox), mdb_strerror(rc));
    self->mark_at = now + self->config.mark_every_ms;
}

static void s_trim(s_relay_t *self)
{
    int64_t now = zclock_mono();
    if (now < self->trim_at)
        return;
    self->trim_at = now + self->config.trim_every_ms;
    int trimmed = 0;
    do {
        int rc = outbox_trim(self->config.outbox, zclock_time(), 1000, &trimmed);
        if (rc != 0) {
            zsys_error("relay %s: cannot trim: %s", outbox_source(self->config.outbox),
                       mdb_strerror(rc));
            return;
        }
    } while (trimmed == 1000);
}

/* The proxy's (un)subscriptions: a first byte of 1 or 0, then a topic.
 * Only "everything" matters: the proxy subscribes to it for all of its
 * subscribers. */
static void s_subscriptions(s_relay_t *self)
{
    for (;;) {
        zmq_msg_t msg;
        zmq_msg_init(&msg);
        if (zmq_msg_recv(&msg, self->handle, ZMQ_DONTWAIT) < 0) {
            zmq_msg_close(&msg);
            return;
        }
        const uint8_t *data = zmq_msg_data(&msg);
        if (zmq_msg_size(&msg) >= 1) {
            if (data[0] == 1)
                self->subscribers++;
            else if (data[0] == 0)
                self->subscribers--;
        }
        zmq_msg_close(&msg);
    }
}

static int s_init(s_relay_t *self)
{
    self->commit_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->commit_fd < 0) {
        zsys_error("relay: eventfd: %s", strerror(errno));
        return -1;
    }
    outbox_state_t state;
    int rc = outbox_state(self->config.outbox, &state);
    if (rc != 0) {
        zsys_error("relay %s: cannot read the outbox: %s", outbox_source(self->config.outbox),
                   mdb_strerror(rc));
        return -1;
    }
    self->next = state.published + 1;
    self->marked = state.published;
    if (self->config.stats) {
        pthread_mutex_lock(&self->config.stats->lock);
        self->config.stats->sent = state.published;
        pthread_mutex_unlock(&self->config.stats->lock);
    }
    self->sock = zsock_new(ZMQ_XPUB);
    if (!self->sock)
        return -1;
    self->handle = zsock_resolve(self->sock);
    zsock_set_xpub_nodrop(self->sock, 1);
    zsock_set_sndhwm(self->sock, 10000);
    zsock_set_linger(self->sock, 1000);
    if (self->cert)
        keys_apply_client(self->sock, self->cert, self->server_key);
    if (zsock_connect(self->sock, "%s", self->endpoint) != 0) {
        zsys_error("relay %s: cannot connect to %s", outbox_source(self->config.outbox),
                   self->endpoint);
        return -1;
    }
    kv_notify(outbox_kv(self->config.outbox), self->commit_fd);
    return 0;
}

static void s_relay_actor(zsock_t *pipe, void *args)
{
    s_relay_t *self = args;
    self->pipe = pipe;
    zsock_signal(pipe, 0); /* zactor_new's handshake; relay_new waits for the next */
    if (s_init(self) != 0) {
        zsock_signal(pipe, 1);
        goto cleanup;
    }
    zsock_signal(pipe, 0);
    if (self->config.verbose)
        zsys_info("relay %s: from seq %llu to %s", outbox_source(self->config.outbox),
                  (unsigned long long)self->next, self->endpoint);
    for (;;) {
        zmq_pollitem_t items[] = {
            {zsock_resolve(pipe), 0, ZMQ_POLLIN, 0},
            {self->handle, 0, ZMQ_POLLIN, 0},
            {NULL, self->commit_fd, ZMQ_POLLIN, 0},
        };
        long timeout = self->more ? 0 : self->blocked ? 100 : 500;
        if (zmq_poll(items, 3, timeout) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(pipe);
            bool term = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (term)
                break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            s_subscriptions(self);
        if (items[2].revents & ZMQ_POLLIN) {
            uint64_t count;
            if (read(self->commit_fd, &count, sizeof count) < 0 && errno != EAGAIN)
                zsys_error("relay: read eventfd: %s", strerror(errno));
        }
        s_publish(self);
        s_mark(self, false);
        s_trim(self);
    }
    s_mark(self, true); /* a clean stop publishes nothing twice */
cleanup:
    if (self->commit_fd >= 0) {
        kv_notify(outbox_kv(self->config.outbox), -1);
        close(self->commit_fd);
    }
    zsock_destroy(&self->sock);
    zcert_destroy(&self->cert);
    free(self);
}

zactor_t *relay_new(const relay_config_t *config)
{
    if (!config || !config->outbox || !config->endpoint)
        return NULL;
    s_relay_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->config = *config;
    self->commit_fd = -1;
    if (!self->config.mark_every_ms)
        self->config.mark_every_ms = 100;
    if (!self->config.trim_every_ms)
        self->config.trim_every_ms = 1000;
    if (config->cert) {
        self->cert = zcert_dup(config->cert);
        snprintf(self->server_key, sizeof self->server_key, "%s",
                 config->server_key ? config->server_key : "");
    }
    self->config.cert = NULL;
    self->config.server_key = NULL;
    snprintf(self->endpoint, sizeof self->endpoint, "%s", config->endpoint);
    snprintf(self->crash_marker, sizeof self->crash_marker, "%s",
             config->crash_marker ? config->crash_marker : "");
    self->config.crash_marker = NULL;
    self->config.endpoint = self->endpoint;
    zactor_t *actor = zactor_new(s_relay_actor, self);
    if (!actor) {
        zcert_destroy(&self->cert);
        free(self);
        return NULL;
    }
    /* from here the actor owns self */
    if (zsock_wait(actor) != 0)
        zactor_destroy(&actor);
    return actor;
}

void relay_destroy(zactor_t **self_p)
{
    zactor_destroy(self_p);
}

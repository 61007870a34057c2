/*  mdpcli.c - MDP client over a DEALER socket.
 *
 *  With a DEALER the client sends [empty][MDPC01][service][body] itself;
 *  the broker's reply arrives as [empty][MDPC01][service][body].
 */
#include "protocol/mdpcli.h"
#include "protocol/keys.h"
#include "protocol/mdp.h"

struct mdpcli_t {
    zsock_t *sock;
    zpoller_t *poller;
};

static mdpcli_t *s_new(const char *endpoint, zcert_t *cert, const char *server_public,
                       const char *inproc_name)
{
    mdpcli_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->sock = zsock_new(ZMQ_DEALER);
    if (!self->sock)
        goto fail;
    zsock_set_linger(self->sock, 0);
    zsock_set_rcvhwm(self->sock, 0);
    zsock_set_sndhwm(self->sock, 0);
    /* A DEALER with no connection blocks a send until one comes, and a
     * handshake the broker refused (a certificate not on its allow-list)
     * leaves none: a send gives up after this instead of hanging. */
    zsock_set_sndtimeo(self->sock, MDPCLI_SEND_TIMEOUT_MS);
    if (cert && server_public)
        keys_apply_client(self->sock, cert, server_public);
    if (inproc_name && keys_name_inproc(self->sock, inproc_name) != 0)
        goto fail;
    if (zsock_connect(self->sock, "%s", endpoint) != 0)
        goto fail;
    self->poller = zpoller_new(self->sock, NULL);
    if (!self->poller)
        goto fail;
    return self;
fail:
    mdpcli_destroy(&self);
    return NULL;
}

mdpcli_t *mdpcli_new(const char *endpoint, zcert_t *cert, const char *server_public)
{
    return s_new(endpoint, cert, server_public, NULL);
}

mdpcli_t *mdpcli_new_inproc(const char *endpoint, const char *name)
{
    return s_new(endpoint, NULL, NULL, name);
}

void mdpcli_destroy(mdpcli_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    mdpcli_t *self = *self_p;
    zpoller_destroy(&self->poller);
    zsock_destroy(&self->sock);
    free(self);
    *self_p = NULL;
}

int mdpcli_send(mdpcli_t *self, const char *service, const void *body, size_t len)
{
    zmsg_t *msg = zmsg_new();
    zmsg_addmem(msg, NULL, 0);
    zmsg_addstr(msg, MDP_CLIENT);
    zmsg_addstr(msg, service);
    zmsg_addmem(msg, body, len);
    return zmsg_send(&msg, self->sock);
}

zframe_t *mdpcli_recv(mdpcli_t *self, int timeout_ms, char **service)
{
    int64_t deadline = timeout_ms < 0 ? -1 : zclock_mono() + timeout_ms;
    while (true) {
        int wait = -1;
        if (deadline >= 0) {
            /* 0 (or the deadline passed): take what is there now */
            int64_t left = deadline - zclock_mono();
            wait = left > 0 ? (int)left : 0;
        }
        if (!zpoller_wait(self->poller, wait))
            return NULL;
        zmsg_t *msg = zmsg_recv(self->sock);
        if (!msg)
            return NULL;
        zframe_t *empty = zmsg_pop(msg);
        zframe_t *proto = zmsg_pop(msg);
        char *name = zmsg_popstr(msg);
        zframe_t *body = zmsg_pop(msg);
        bool valid = empty && zframe_size(empty) == 0 && proto && zframe_streq(proto, MDP_CLIENT) &&
                     name && body && zmsg_size(msg) == 0;
        zframe_destroy(&empty);
        zframe_destroy(&proto);
        zmsg_destroy(&msg);
        if (valid) {
            if (service)
                *service = name;
            else
                zstr_free(&name);
            return body;
        }
        zstr_free(&name);
        zframe_destroy(&body);
    }
}

zsock_t *mdpcli_sock(mdpcli_t *self)
{
    return self->sock;
}

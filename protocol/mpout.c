/*  mpout.c - a checked msgpack output (see mpout.h).
 *
 *  The limit is tested before msgpack_sbuffer_write so that a reply headed
 *  over it never grows the buffer to hold it; msgpack_sbuffer_write itself
 *  appends nothing when its realloc fails, so a refused write always
 *  leaves the bytes as they were before it.
 */
#include "protocol/mpout.h"

void mpout_init(mpout_t *self, size_t limit)
{
    msgpack_sbuffer_init(&self->buf);
    self->limit = limit;
    self->failed = false;
    self->over_limit = false;
}

void mpout_clear(mpout_t *self)
{
    msgpack_sbuffer_clear(&self->buf);
    self->failed = false;
    self->over_limit = false;
}

void mpout_destroy(mpout_t *self)
{
    msgpack_sbuffer_destroy(&self->buf);
    self->failed = false;
    self->over_limit = false;
}

int mpout_write(void *data, const char *buf, size_t len)
{
    mpout_t *self = data;
    /* Once one value is missing, anything after it would be misread: the
     * bytes stay as they were at the first failure. */
    if (self->failed)
        return -1;
    /* buf.size never exceeds the limit, so the subtraction cannot wrap. */
    if (self->limit && len > self->limit - self->buf.size) {
        self->failed = true;
        self->over_limit = true;
        return -1;
    }
    if (msgpack_sbuffer_write(&self->buf, buf, len) != 0) {
        self->failed = true;
        return -1;
    }
    return 0;
}

void mpout_packer(mpout_t *self, msgpack_packer *pk)
{
    msgpack_packer_init(pk, self, mpout_write);
}

/*  histogram.c - the log-linear histogram (histogram.h says how).
 *
 *  Bucket index of v: v itself below 2 * SUB; above, with msb the index
 *  of v's highest set bit and shift = msb - log2(SUB), the top log2(SUB)+1
 *  bits of v (in [SUB, 2 * SUB)) plus shift * SUB. So every shift has SUB
 *  buckets of width 2^shift, directly after the previous shift's, and a
 *  64-bit value needs (64 - log2(SUB) + 1) * SUB buckets in all.
 */
#include "tools/harness/histogram.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define S_BITS 7 /* log2(HISTOGRAM_SUB) */
#define S_BUCKETS ((64 - S_BITS + 1) * HISTOGRAM_SUB)

_Static_assert(1 << S_BITS == HISTOGRAM_SUB, "HISTOGRAM_SUB is 2^S_BITS");

struct histogram_t {
    uint64_t count, min, max;
    uint64_t buckets[S_BUCKETS];
};

static int s_index(uint64_t v)
{
    if (v < 2 * HISTOGRAM_SUB)
        return (int)v;
    int msb = 63 - __builtin_clzll(v);
    int shift = msb - S_BITS;
    return shift * HISTOGRAM_SUB + (int)(v >> shift);
}

/* The highest value that falls into bucket i. */
static uint64_t s_highest(int i)
{
    if (i < 2 * HISTOGRAM_SUB)
        return (uint64_t)i;
    int shift = i / HISTOGRAM_SUB - 1;
    uint64_t top = (uint64_t)(i - shift * HISTOGRAM_SUB);
    return (top << shift) + (((uint64_t)1 << shift) - 1);
}

histogram_t *histogram_new(void)
{
    return calloc(1, sizeof(histogram_t));
}

void histogram_destroy(histogram_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    free(*self_p);
    *self_p = NULL;
}

void histogram_record(histogram_t *self, uint64_t value)
{
    self->buckets[s_index(value)]++;
    if (self->count == 0 || value < self->min)
        self->min = value;
    if (value > self->max)
        self->max = value;
    self->count++;
}

void histogram_merge(histogram_t *self, const histogram_t *from)
{
    if (from->count == 0)
        return;
    for (int i = 0; i < S_BUCKETS; i++)
        self->buckets[i] += from->buckets[i];
    if (self->count == 0 || from->min < self->min)
        self->min = from->min;
    if (from->max > self->max)
        self->max = from->max;
    self->count += from->count;
}

void histogram_reset(histogram_t *self)
{
    memset(self, 0, sizeof *self);
}

uint64_t histogram_count(const histogram_t *self)
{
    return self->count;
}

uint64_t histogram_min(const histogram_t *self)
{
    return self->min;
}

uint64_t histogram_max(const histogram_t *self)
{
    return self->max;
}

uint64_t histogram_percentile(const histogram_t *self, double p)
{
    if (self->count == 0 || !(p > 0))
        return self->count ? self->min : 0;
    if (p >= 100)
        return self->max;
    uint64_t rank = (uint64_t)ceil(p / 100.0 * (double)self->count);
    if (rank < 1)
        rank = 1;
    uint64_t seen = 0;
    for (int i = 0; i < S_BUCKETS; i++) {
        seen += self->buckets[i];
        if (seen >= rank) {
            uint64_t v = s_highest(i);
            return v > self->max ? self->max : v;
        }
    }
    return self->max;
}

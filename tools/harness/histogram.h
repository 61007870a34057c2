/*  histogram.h - a log-linear latency histogram with a bounded error, for
 *  the load harness (issue 14: p50, p90, p99, p99.9, max per step).
 *
 *  Why not keep every sample and sort: a constant-rate run of minutes at
 *  tens of thousands of requests per second is tens of millions of
 *  samples per step; a histogram is fixed memory (about 60 KiB), O(1) per
 *  sample, and two of them add up (histogram_merge: per thread, per step,
 *  overall).
 *
 *  How: values below 2 * HISTOGRAM_SUB are counted exactly; above, each
 *  power-of-two range [2^k, 2^(k+1)) is cut into HISTOGRAM_SUB equal
 *  buckets, so a bucket is never wider than 1/HISTOGRAM_SUB of the values
 *  it holds. A percentile is the nearest-rank sample's bucket, reported as
 *  the bucket's highest value (never below the true one), clamped to the
 *  largest value recorded: reported - exact <= exact / HISTOGRAM_SUB
 *  (0.78%), whatever the distribution. Units are the caller's (the
 *  harness records microseconds).
 *
 *  Ownership: a histogram_t is its creator's; one thread at a time.
 */
#ifndef RETAIL_HISTOGRAM_H
#define RETAIL_HISTOGRAM_H

#include <stdbool.h>
#include <stdint.h>

#define HISTOGRAM_SUB 128 /* buckets per power of two: the error bound is 1/HISTOGRAM_SUB */

typedef struct histogram_t histogram_t;

/* An empty histogram, or NULL when out of memory. */
histogram_t *histogram_new(void);
void histogram_destroy(histogram_t **self_p);

void histogram_record(histogram_t *self, uint64_t value);
/* Adds every sample of from to self. */
void histogram_merge(histogram_t *self, const histogram_t *from);
void histogram_reset(histogram_t *self);

uint64_t histogram_count(const histogram_t *self);
/* 0 when empty, as the others. */
uint64_t histogram_min(const histogram_t *self);
uint64_t histogram_max(const histogram_t *self);
/* The p-th percentile (0 < p <= 100) by nearest rank: the value of the
 * ceil(p / 100 * count)-th smallest sample, to within the bound above. */
uint64_t histogram_percentile(const histogram_t *self, double p);

#endif

/*  test_histogram.c - the harness's latency histogram
 *  (tools/harness/histogram.h) against exact percentiles.
 *
 *  The promise is an error bound that holds for any distribution, so the
 *  test draws samples from several shapes (uniform, a long exponential
 *  tail, two far-apart modes, values across the whole 64-bit range),
 *  sorts a copy for the exact nearest-rank percentiles, and checks
 *  exact <= reported <= exact + exact / HISTOGRAM_SUB at every percentile
 *  the harness prints and more. Then: small values are exact, merging two
 *  histograms equals recording into one, an empty one answers 0, and the
 *  largest 64-bit value is counted without overflow.
 */
#include "tests/testutil.h"
#include "tools/harness/histogram.h"

#include <math.h>
#include <stdlib.h>

#define N 200000

static uint64_t s_rng = 0x9E3779B97F4A7C15ULL;

static uint64_t s_next(void)
{
    /* xorshift64*: reproducible, no libc state */
    s_rng ^= s_rng >> 12;
    s_rng ^= s_rng << 25;
    s_rng ^= s_rng >> 27;
    return s_rng * 0x2545F4914F6CDD1DULL;
}

static double s_unit(void)
{
    return (double)(s_next() >> 11) / (double)(1ULL << 53);
}

static int s_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void s_check(uint64_t *v, size_t n, const char *shape)
{
    histogram_t *h = histogram_new();
    assert_non_null(h);
    for (size_t i = 0; i < n; i++)
        histogram_record(h, v[i]);
    qsort(v, n, sizeof *v, s_cmp);
    assert_int_equal(histogram_count(h), n);
    assert_int_equal(histogram_min(h), v[0]);
    assert_int_equal(histogram_max(h), v[n - 1]);
    const double ps[] = {0.1, 1, 10, 25, 50, 75, 90, 99, 99.9, 99.99, 100};
    for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
        size_t rank = (size_t)ceil(ps[k] / 100.0 * (double)n);
        uint64_t exact = v[(rank ? rank : 1) - 1];
        uint64_t got = histogram_percentile(h, ps[k]);
        if (got < exact || got - exact > exact / HISTOGRAM_SUB)
            print_error("%s p%g: exact %llu, histogram %llu\n", shape, ps[k],
                        (unsigned long long)exact, (unsigned long long)got);
        assert_true(got >= exact);
        assert_true(got - exact <= exact / HISTOGRAM_SUB);
    }
    histogram_destroy(&h);
    assert_null(h);
}

static void test_bound_on_many_shapes(void **state)
{
    (void)state;
    uint64_t *v = malloc(N * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < N; i++)
        v[i] = 1 + s_next() % 1000000; /* uniform, microseconds up to 1 s */
    s_check(v, N, "uniform");
    for (size_t i = 0; i < N; i++)
        v[i] = (uint64_t)(-log(1.0 - s_unit()) * 2000.0); /* exponential, 2 ms mean */
    s_check(v, N, "exponential");
    for (size_t i = 0; i < N; i++) /* 99% fast, 1% a 200 ms stall */
        v[i] = s_next() % 100 ? 300 + s_next() % 200 : 200000 + s_next() % 5000;
    s_check(v, N, "bimodal");
    for (size_t i = 0; i < N; i++)
        v[i] = s_next() >> (s_next() % 64); /* every magnitude */
    s_check(v, N, "all magnitudes");
    free(v);
}

static void test_small_values_exact(void **state)
{
    (void)state;
    histogram_t *h = histogram_new();
    for (uint64_t v = 0; v < 2 * HISTOGRAM_SUB; v++)
        histogram_record(h, v);
    /* 256 samples 0..255: the p-th percentile is rank ceil(p * 2.56) - 1 */
    assert_int_equal(histogram_percentile(h, 50), 127);
    assert_int_equal(histogram_percentile(h, 100), 255);
    assert_int_equal(histogram_percentile(h, 1), 2);
    histogram_destroy(&h);
}

static void test_merge_and_edges(void **state)
{
    (void)state;
    histogram_t *a = histogram_new(), *b = histogram_new(), *all = histogram_new();
    assert_int_equal(histogram_percentile(a, 99), 0);
    assert_int_equal(histogram_max(a), 0);
    for (int i = 0; i < 10000; i++) {
        uint64_t v = s_next() % 100000;
        histogram_record(i % 3 ? a : b, v);
        histogram_record(all, v);
    }
    histogram_merge(a, b);
    assert_int_equal(histogram_count(a), histogram_count(all));
    assert_int_equal(histogram_min(a), histogram_min(all));
    assert_int_equal(histogram_max(a), histogram_max(all));
    for (double p = 1; p <= 100; p += 0.5)
        assert_int_equal(histogram_percentile(a, p), histogram_percentile(all, p));
    histogram_reset(a);
    assert_int_equal(histogram_count(a), 0);
    histogram_record(a, UINT64_MAX);
    histogram_record(a, 1);
    assert_int_equal(histogram_percentile(a, 100), UINT64_MAX);
    assert_int_equal(histogram_percentile(a, 50), 1);
    histogram_destroy(&a);
    histogram_destroy(&b);
    histogram_destroy(&all);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_on_many_shapes),
        cmocka_unit_test(test_small_values_exact),
        cmocka_unit_test(test_merge_and_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

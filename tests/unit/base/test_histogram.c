/*
 * test_histogram.c: the bucket layout, the documented error bound (1/256 of the value) on
 * single values and on known distributions, exact min/max/count/mean, merge, reset, clamping,
 * and concurrent recording.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/histogram.h"

#include <pthread.h>
#include <stdlib.h>

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* exact_percentile: the value of rank ceil(q * n) in sorted v (the definition documented). */
static uint64_t exact_percentile(const uint64_t *sorted, size_t n, double q)
{
    size_t rank = (size_t)(q * (double)n + 0.999999999);
    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void assert_within_bound(uint64_t got, uint64_t want)
{
    uint64_t diff = got > want ? got - want : want - got;
    if ((double)diff > (double)want / 256.0)
        fail_msg("got %llu, exact %llu: error above 1/256", (unsigned long long)got,
            (unsigned long long)want);
}

static tern_histogram *new_histogram(void)
{
    tern_histogram *h = malloc(sizeof *h);
    assert_non_null(h);
    tern_histogram_init(h);
    return h;
}

static void test_layout(void **state)
{
    (void)state;
    /* Exact below 256; index is monotonic; each value lies in its bucket. */
    unsigned prev = 0;
    for (uint64_t v = 0; v < 300000; v += (v < 1024 ? 1 : 37)) {
        unsigned i = tern_histogram_bucket_index(v);
        assert_true(i >= prev);
        prev = i;
        uint64_t width;
        uint64_t low = tern_histogram_bucket_low(i, &width);
        assert_true(low <= v && v < low + width);
        if (v < 256)
            assert_int_equal(width, 1);
        else
            assert_true(width * 128 <= low);
    }
    assert_int_equal(tern_histogram_bucket_index(TERN_HISTOGRAM_MAX), TERN_HISTOGRAM_N_BUCKETS - 1);
    assert_int_equal(tern_histogram_bucket_index(UINT64_MAX), TERN_HISTOGRAM_N_BUCKETS - 1);
}

static void test_empty_and_single(void **state)
{
    (void)state;
    tern_histogram *h = new_histogram();
    assert_int_equal(tern_histogram_count(h), 0);
    assert_int_equal(tern_histogram_min(h), 0);
    assert_int_equal(tern_histogram_max(h), 0);
    assert_true(tern_histogram_mean(h) == 0.0);
    assert_int_equal(tern_histogram_percentile(h, 0.5), 0);
    /* Any single value comes back within the bound at every quantile. */
    for (uint64_t v = 1; v < TERN_HISTOGRAM_MAX; v = v * 3 + 1) {
        tern_histogram_reset(h);
        tern_histogram_record(h, v);
        assert_int_equal(tern_histogram_percentile(h, 0.0), v);
        assert_int_equal(tern_histogram_percentile(h, 1.0), v);
        assert_int_equal(tern_histogram_percentile(h, 0.5), v); /* clamped to [min, max] */
    }
    tern_histogram_reset(h);
    tern_histogram_record(h, 1000);
    tern_histogram_record(h, 1000000);
    assert_within_bound(tern_histogram_percentile(h, 0.5), 1000);
    assert_int_equal(tern_histogram_percentile(h, 0.51), 1000000);
    assert_int_equal(tern_histogram_percentile(h, -3), 1000);
    assert_int_equal(tern_histogram_percentile(h, 7), 1000000);
    free(h);
}

static void check_distribution(uint64_t *vals, size_t n)
{
    tern_histogram *h = new_histogram();
    uint64_t sum = 0;
    for (size_t i = 0; i < n; i++) {
        tern_histogram_record(h, vals[i]);
        sum += vals[i];
    }
    qsort(vals, n, sizeof vals[0], cmp_u64);
    assert_int_equal(tern_histogram_count(h), n);
    assert_int_equal(tern_histogram_min(h), vals[0]);
    assert_int_equal(tern_histogram_max(h), vals[n - 1]);
    assert_int_equal(tern_histogram_sum(h), sum);
    assert_true(tern_histogram_mean(h) == (double)sum / (double)n);
    static const double qs[] = { 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 0.9999 };
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        assert_within_bound(tern_histogram_percentile(h, qs[i]), exact_percentile(vals, n, qs[i]));
    free(h);
}

static void test_uniform_distribution(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint64_t *vals = malloc(N * sizeof *vals);
    assert_non_null(vals);
    /* 1 us .. 100 ms in ns */
    srand(1);
    for (size_t i = 0; i < N; i++)
        vals[i] = 1000 + ((uint64_t)(unsigned)rand() * 7919u) % 100000000u;
    check_distribution(vals, N);
    free(vals);
}

static void test_long_tail_distribution(void **state)
{
    (void)state;
    enum { N = 100000 };
    uint64_t *vals = malloc(N * sizeof *vals);
    assert_non_null(vals);
    /* Log-uniform from 1 us to 1 hour (ns): every bucket size is exercised. */
    srand(2);
    for (size_t i = 0; i < N; i++) {
        unsigned shift = 10 + (unsigned)(rand() % 32); /* 2^10 .. 2^41 */
        vals[i] = (1ull << shift) + ((uint64_t)(unsigned)rand() % (1ull << shift));
    }
    check_distribution(vals, N);
    free(vals);
}

static void test_merge_reset_clamp(void **state)
{
    (void)state;
    tern_histogram *a = new_histogram(), *b = new_histogram(), *both = new_histogram();
    for (uint64_t v = 1; v <= 1000; v++) {
        tern_histogram_record(a, v);
        tern_histogram_record_n(b, v * 1000, 2);
        tern_histogram_record(both, v);
        tern_histogram_record_n(both, v * 1000, 2);
    }
    tern_histogram_record_n(b, 5, 0); /* n = 0 records nothing */
    tern_histogram_merge(a, b);
    assert_int_equal(tern_histogram_count(a), 3000);
    assert_int_equal(tern_histogram_min(a), 1);
    assert_int_equal(tern_histogram_max(a), 1000000);
    assert_int_equal(tern_histogram_sum(a), tern_histogram_sum(both));
    for (double q = 0.05; q < 1.0; q += 0.05)
        assert_int_equal(tern_histogram_percentile(a, q), tern_histogram_percentile(both, q));
    tern_histogram_reset(a);
    assert_int_equal(tern_histogram_count(a), 0);
    assert_int_equal(tern_histogram_percentile(a, 0.99), 0);
    /* Merging an empty histogram changes nothing. */
    tern_histogram_merge(b, a);
    assert_int_equal(tern_histogram_count(b), 2000);
    assert_int_equal(tern_histogram_min(b), 1000);
    /* Values above the range land in the top bucket; max stays exact. */
    tern_histogram_record(a, UINT64_MAX / 4);
    tern_histogram_record(a, 10);
    assert_int_equal(tern_histogram_max(a), UINT64_MAX / 4);
    assert_int_equal(tern_histogram_percentile(a, 1.0), UINT64_MAX / 4);
    free(a);
    free(b);
    free(both);
}

static void *record_many(void *arg)
{
    tern_histogram *h = arg;
    for (uint64_t i = 0; i < 100000; i++)
        tern_histogram_record(h, i % 5000 + 1);
    return NULL;
}

static void test_concurrent_record(void **state)
{
    (void)state;
    tern_histogram *h = new_histogram();
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, record_many, h), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(tern_histogram_count(h), 200000);
    assert_int_equal(tern_histogram_min(h), 1);
    assert_int_equal(tern_histogram_max(h), 5000);
    uint64_t total = 0;
    for (unsigned i = 0; i < TERN_HISTOGRAM_N_BUCKETS; i++)
        total += h->buckets[i];
    assert_int_equal(total, 200000);
    free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_empty_and_single),
        cmocka_unit_test(test_uniform_distribution),
        cmocka_unit_test(test_long_tail_distribution),
        cmocka_unit_test(test_merge_reset_clamp),
        cmocka_unit_test(test_concurrent_record),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

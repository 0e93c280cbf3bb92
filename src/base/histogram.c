/*
 * histogram.c: log-linear buckets with atomic counters.
 */
#include "base/histogram.h"

#include "base/error.h"

#include <math.h>

#define FULL (2u << TERN_HISTOGRAM_SUB_BITS)
#define HALF (1u << TERN_HISTOGRAM_SUB_BITS)

_Static_assert(TERN_HISTOGRAM_N_BUCKETS == 4736, "bucket layout changed");

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

void tern_histogram_init(tern_histogram *h)
{
    for (unsigned i = 0; i < TERN_HISTOGRAM_N_BUCKETS; i++)
        __atomic_store_n(&h->buckets[i], 0, __ATOMIC_RELAXED);
    __atomic_store_n(&h->count, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&h->sum, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&h->min, UINT64_MAX, __ATOMIC_RELAXED);
    __atomic_store_n(&h->max, 0, __ATOMIC_RELAXED);
}

void tern_histogram_reset(tern_histogram *h)
{
    tern_histogram_init(h);
}

unsigned tern_histogram_bucket_index(uint64_t value)
{
    if (value > TERN_HISTOGRAM_MAX)
        value = TERN_HISTOGRAM_MAX;
    if (value < FULL)
        return (unsigned)value;
    unsigned msb = 63u - (unsigned)__builtin_clzll(value);
    unsigned e = msb - TERN_HISTOGRAM_SUB_BITS; /* >= 1 */
    unsigned mantissa = (unsigned)(value >> e); /* in [HALF, FULL) */
    return FULL + (e - 1) * HALF + (mantissa - HALF);
}

uint64_t tern_histogram_bucket_low(unsigned index, uint64_t *width_out)
{
    TERN_ASSERT(index < TERN_HISTOGRAM_N_BUCKETS);
    if (index < FULL) {
        *width_out = 1;
        return index;
    }
    unsigned j = index - FULL;
    unsigned e = j / HALF + 1;
    uint64_t mantissa = HALF + j % HALF;
    *width_out = UINT64_C(1) << e;
    return mantissa << e;
}

static void update_min_max(tern_histogram *h, uint64_t lo, uint64_t hi)
{
    uint64_t cur = load(&h->min);
    while (lo < cur
        && !__atomic_compare_exchange_n(&h->min, &cur, lo, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    cur = load(&h->max);
    while (hi > cur
        && !__atomic_compare_exchange_n(&h->max, &cur, hi, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

void tern_histogram_record_n(tern_histogram *h, uint64_t value, uint64_t n)
{
    if (n == 0)
        return;
    __atomic_fetch_add(&h->buckets[tern_histogram_bucket_index(value)], n, __ATOMIC_RELAXED);
    __atomic_fetch_add(&h->sum, value * n, __ATOMIC_RELAXED);
    update_min_max(h, value, value);
    __atomic_fetch_add(&h->count, n, __ATOMIC_RELAXED);
}

void tern_histogram_record(tern_histogram *h, uint64_t value)
{
    tern_histogram_record_n(h, value, 1);
}

void tern_histogram_merge(tern_histogram *dst, const tern_histogram *src)
{
    uint64_t n = load(&src->count);
    if (n == 0)
        return;
    for (unsigned i = 0; i < TERN_HISTOGRAM_N_BUCKETS; i++) {
        uint64_t c = load(&src->buckets[i]);
        if (c)
            __atomic_fetch_add(&dst->buckets[i], c, __ATOMIC_RELAXED);
    }
    __atomic_fetch_add(&dst->sum, load(&src->sum), __ATOMIC_RELAXED);
    update_min_max(dst, load(&src->min), load(&src->max));
    __atomic_fetch_add(&dst->count, n, __ATOMIC_RELAXED);
}

uint64_t tern_histogram_count(const tern_histogram *h)
{
    return load(&h->count);
}

uint64_t tern_histogram_min(const tern_histogram *h)
{
    return load(&h->count) ? load(&h->min) : 0;
}

uint64_t tern_histogram_max(const tern_histogram *h)
{
    return load(&h->max);
}

uint64_t tern_histogram_sum(const tern_histogram *h)
{
    return load(&h->sum);
}

double tern_histogram_mean(const tern_histogram *h)
{
    uint64_t n = load(&h->count);
    return n ? (double)load(&h->sum) / (double)n : 0.0;
}

uint64_t tern_histogram_percentile(const tern_histogram *h, double q)
{
    uint64_t n = load(&h->count);
    if (n == 0)
        return 0;
    uint64_t lo = load(&h->min), hi = load(&h->max);
    if (!(q > 0.0)) /* also NaN */
        return lo;
    if (q >= 1.0)
        return hi;
    double r = ceil(q * (double)n);
    uint64_t rank = r < 1.0 ? 1 : (r >= (double)n ? n : (uint64_t)r);
    uint64_t seen = 0;
    for (unsigned i = 0; i < TERN_HISTOGRAM_N_BUCKETS; i++) {
        seen += load(&h->buckets[i]);
        if (seen >= rank) {
            uint64_t width;
            uint64_t low = tern_histogram_bucket_low(i, &width);
            uint64_t mid = low + (width - 1) / 2;
            return mid < lo ? lo : (mid > hi ? hi : mid);
        }
    }
    return hi; /* buckets lag count while records are in flight */
}

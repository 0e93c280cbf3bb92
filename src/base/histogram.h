/*
 * histogram.h: a fixed-size log-linear histogram (HdrHistogram-like) for latencies and sizes.
 *
 * Values are unsigned integers in the caller's unit (tern records latencies in ns). Values
 * below 256 are counted exactly; above, each power-of-two range [2^k, 2^(k+1)) is cut into 128
 * equal buckets, so a bucket's width is at most 1/128 of its smallest value ("2 significant
 * digits", like HdrHistogram with 2 digits). Values from 0 to TERN_HISTOGRAM_MAX (2^43 - 1:
 * about 2.4 hours in ns) are tracked; larger ones are counted in the top bucket (count, sum,
 * min and max stay exact).
 *
 * Error bound: tern_histogram_percentile(h, q) returns the midpoint of the bucket that holds
 * the value of rank ceil(q * count) (clamped to [min, max]), so it differs from the exact
 * sample percentile by at most 1/256 (0.4%) of that value. q = 0 gives min and q = 1 max,
 * exactly.
 *
 * Memory: one struct of about 37 KiB, no allocation; tern_histogram_record is O(1).
 * Threading: record/record_n/merge-into may run concurrently with each other (relaxed atomic
 * adds); readers may run concurrently too and see a snapshot that is consistent per field, not
 * across fields (count may run ahead of the buckets by the records in flight). reset must not
 * race with record if an exact zero matters.
 */
#ifndef TERN_BASE_HISTOGRAM_H
#define TERN_BASE_HISTOGRAM_H

#include <stdint.h>

#define TERN_HISTOGRAM_MAX_BITS 43
#define TERN_HISTOGRAM_MAX ((UINT64_C(1) << TERN_HISTOGRAM_MAX_BITS) - 1)
#define TERN_HISTOGRAM_SUB_BITS 7 /* 128 buckets per power of two */
#define TERN_HISTOGRAM_N_BUCKETS                                                                   \
    ((2u << TERN_HISTOGRAM_SUB_BITS)                                                               \
        + (TERN_HISTOGRAM_MAX_BITS - TERN_HISTOGRAM_SUB_BITS - 1)                                  \
            * (1u << TERN_HISTOGRAM_SUB_BITS))

/* The fields are private: use the functions below. */
typedef struct tern_histogram {
    uint64_t count;
    uint64_t sum; /* wraps after 2^64 (584 years of ns) */
    uint64_t min; /* UINT64_MAX while empty */
    uint64_t max;
    uint64_t buckets[TERN_HISTOGRAM_N_BUCKETS];
} tern_histogram;

/* tern_histogram_init makes h empty. A zeroed struct is NOT valid: call this first. */
void tern_histogram_init(tern_histogram *h);
/* tern_histogram_reset empties h (same as init). */
void tern_histogram_reset(tern_histogram *h);
/* tern_histogram_record counts one value. O(1), no allocation, thread-safe. */
void tern_histogram_record(tern_histogram *h, uint64_t value);
/* tern_histogram_record_n counts n occurrences of value. */
void tern_histogram_record_n(tern_histogram *h, uint64_t value, uint64_t n);
/* tern_histogram_merge adds every value recorded in src into dst (src is only read). */
void tern_histogram_merge(tern_histogram *dst, const tern_histogram *src);

uint64_t tern_histogram_count(const tern_histogram *h);
/* tern_histogram_min/max return 0 for an empty histogram. */
uint64_t tern_histogram_min(const tern_histogram *h);
uint64_t tern_histogram_max(const tern_histogram *h);
uint64_t tern_histogram_sum(const tern_histogram *h);
/* tern_histogram_mean returns sum / count, or 0 for an empty histogram. */
double tern_histogram_mean(const tern_histogram *h);
/*
 * tern_histogram_percentile returns the q-quantile (q in [0, 1]; 0.99 = p99) within the error
 * bound above, or 0 for an empty histogram. q outside [0, 1] is clamped.
 */
uint64_t tern_histogram_percentile(const tern_histogram *h, double q);

/* tern_histogram_bucket_index and _bucket_low expose the layout for tests and exporters. */
unsigned tern_histogram_bucket_index(uint64_t value);
/* tern_histogram_bucket_low returns the smallest value of a bucket; *width_out its width. */
uint64_t tern_histogram_bucket_low(unsigned index, uint64_t *width_out);

#endif

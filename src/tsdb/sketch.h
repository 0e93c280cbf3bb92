/*
 * sketch.h: a mergeable quantile sketch with relative-error guarantees (the DDSketch idea), for
 * the warm tier's p95 over 1-minute aggregates, merged across minutes and series.
 *
 * A value x != 0 is counted in bucket i = ceil(log_gamma(|x|)) of the positive or the negative
 * store, gamma = (1 + a) / (1 - a) for relative accuracy a (default 1%); 0 (and |x| below
 * DBL_MIN, i.e. subnormals) in a zero count. A quantile is answered with the midpoint
 * 2 gamma^i / (gamma + 1) of the bucket holding the element of rank floor(q (n - 1)) of the
 * sorted input, so it is within a * |exact| of that element, unless buckets were collapsed:
 * each store keeps at most max_buckets consecutive buckets; when a value would stretch it
 * further, the buckets of the smallest magnitudes are folded into the lowest kept one (the
 * extremes, which p95 needs, stay accurate). NaN is not counted (it is tallied apart in
 * nan_count); +-Inf is counted in the bucket of +-DBL_MAX. Quantile answers are finite.
 *
 * Merging two sketches of the same accuracy gives the sketch of the union of their inputs
 * (exactly, bucket for bucket, when nothing was collapsed). The encoding is canonical and
 * compact (a varint-coded sparse list of buckets: a 6-value minute takes about 10-20 bytes);
 * it is specified at the top of sketch.c. Decoding treats the bytes as untrusted.
 *
 * The struct is visible so callers can embed it; its fields are private. Not thread-safe: one
 * sketch, one thread at a time (distinct sketches are independent).
 */
#ifndef TERN_TSDB_SKETCH_H
#define TERN_TSDB_SKETCH_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_SKETCH_DEFAULT_ACCURACY 0.01
#define TERN_SKETCH_DEFAULT_MAX_BUCKETS 2048u
/* Accuracy is kept in parts per million; accepted range [1e-4, 0.5]. */
#define TERN_SKETCH_MIN_ACCURACY_PPM 100u
#define TERN_SKETCH_MAX_ACCURACY_PPM 500000u

typedef struct tern_sketch_store {
    uint64_t *counts; /* counts[k] is bucket lo + k */
    int32_t lo;
    uint32_t len; /* buckets in the window (0: empty) */
    uint32_t cap; /* allocated entries */
} tern_sketch_store;

typedef struct tern_sketch {
    uint32_t accuracy_ppm;
    uint32_t max_buckets; /* per store */
    double gamma;
    double inv_ln_gamma; /* 1 / ln(gamma) */
    double ln_gamma;
    int32_t min_index, max_index; /* buckets of DBL_MIN and DBL_MAX */
    tern_sketch_store pos, neg;
    uint64_t zero_count;
    uint64_t count; /* zero_count + all bucket counts */
    uint64_t nan_count;
} tern_sketch;

/*
 * tern_sketch_init makes an empty sketch with relative accuracy rel_accuracy (rounded to whole
 * parts per million) and TERN_SKETCH_DEFAULT_MAX_BUCKETS. Allocates nothing; pair with
 * tern_sketch_free. Returns 0 or TERN_EINVAL (accuracy outside [1e-4, 0.5], or NaN).
 */
int tern_sketch_init(tern_sketch *s, double rel_accuracy);
/* tern_sketch_init_ex is tern_sketch_init with a bucket limit per store (16 .. 65536). */
int tern_sketch_init_ex(tern_sketch *s, double rel_accuracy, uint32_t max_buckets);
/* tern_sketch_free releases the buckets; s is then empty and still usable (NULL is a no-op). */
void tern_sketch_free(tern_sketch *s);
/* tern_sketch_reset empties s (keeps its accuracy and its memory). */
void tern_sketch_reset(tern_sketch *s);

/*
 * tern_sketch_add counts v (see the header comment for NaN, +-Inf, subnormals). Returns 0 or
 * TERN_ENOMEM (s unchanged).
 */
int tern_sketch_add(tern_sketch *s, double v);
/* tern_sketch_add_n counts v n times (n may be 0). Same results as tern_sketch_add. */
int tern_sketch_add_n(tern_sketch *s, double v, uint64_t n);

/*
 * tern_sketch_merge adds src's counts to dst (src is unchanged; dst == src doubles it).
 * Returns 0, TERN_EINVAL (different accuracies: dst unchanged), TERN_ERANGE (a count would
 * pass 2^64: dst unchanged) or TERN_ENOMEM (dst unchanged).
 */
int tern_sketch_merge(tern_sketch *dst, const tern_sketch *src);

/*
 * tern_sketch_quantile sets *out to the estimate of quantile q in [0, 1] (0 = smallest value,
 * 1 = largest). Returns 0, TERN_ENOENT (no value counted) or TERN_EINVAL (q outside [0, 1]).
 */
int tern_sketch_quantile(const tern_sketch *s, double q, double *out);

/* tern_sketch_count returns how many values were counted (NaN excluded). */
uint64_t tern_sketch_count(const tern_sketch *s);
/* tern_sketch_nan_count returns how many NaNs were given to add (and not counted). */
uint64_t tern_sketch_nan_count(const tern_sketch *s);
/* tern_sketch_accuracy returns the relative accuracy (as rounded by init). */
double tern_sketch_accuracy(const tern_sketch *s);

/*
 * tern_sketch_equal says whether a and b have the same accuracy and the same counts in every
 * bucket (their encodings are then identical).
 */
bool tern_sketch_equal(const tern_sketch *a, const tern_sketch *b);

/* tern_sketch_encode appends the canonical encoding of s to out. Returns 0 or TERN_ENOMEM. */
int tern_sketch_encode(const tern_sketch *s, tern_buf *out);

/*
 * tern_sketch_decode reads a whole encoding from p[0..len) (untrusted) into s, which it
 * initializes (s need not be initialized before; on success free it with tern_sketch_free; on
 * failure s holds nothing to free). Buckets beyond TERN_SKETCH_DEFAULT_MAX_BUCKETS are
 * collapsed as add would. Errors: TERN_ECORRUPT (truncated, trailing bytes, impossible
 * accuracy, bucket index or count, zero counts, counts summing past 2^64), TERN_EVERSION
 * (unknown format version), TERN_ENOMEM.
 */
int tern_sketch_decode(tern_sketch *s, const uint8_t *p, size_t len);

#endif

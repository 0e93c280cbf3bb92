/*
 * sketch.c: the relative-error quantile sketch of sketch.h.
 *
 * Each store is a dense window of counts over consecutive bucket indexes [lo, lo + len), at
 * most max_buckets wide; widening it past that folds the lowest indexes (smallest magnitudes)
 * into the lowest kept bucket. Index of x > 0: ceil(ln(x) / ln(gamma)), clamped to the indexes
 * of DBL_MIN and DBL_MAX. Value of bucket i: (1 - a) gamma^i, the point within a relative
 * distance a of both ends of (gamma^(i-1), gamma^i].
 *
 * Encoding, version 1 (this comment is its specification; blocks that embed it say so).
 * Varints are unsigned LEB128, "zigzag" the signed form (base/varint.h):
 *
 *     u8      version = 1
 *     varint  accuracy_ppm            100 .. 500000
 *     varint  zero_count
 *     varint  nan_count
 *     store   positive                values > 0
 *     store   negative                values < 0, by |x|
 *   store:
 *     varint  n_buckets               non-empty buckets, ascending index
 *     if n_buckets > 0:
 *       zigzag first_index            within [index(DBL_MIN), index(DBL_MAX)] for the accuracy
 *       varint count                  >= 1
 *       (n_buckets - 1) times:
 *         varint gap                  >= 1: index = previous index + gap (stays in range)
 *         varint count                >= 1
 *
 * Nothing may follow. All counts together (zero_count + buckets) must fit a u64. The encoding
 * of a sketch is canonical: equal sketches (tern_sketch_equal) encode to equal bytes.
 */
#include "tsdb/sketch.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/varint.h"

#include <float.h>
#include <math.h>
#include <string.h>

#define SKETCH_VERSION 1u
#define SKETCH_MIN_MAX_BUCKETS 16u
#define SKETCH_MAX_MAX_BUCKETS 65536u

static int32_t index_of(const tern_sketch *s, double mag)
{
    return (int32_t)ceil(log(mag) * s->inv_ln_gamma);
}

static double value_of(const tern_sketch *s, int32_t index)
{
    double v = exp((double)index * s->ln_gamma + log1p(-(double)s->accuracy_ppm / 1e6));
    return v > DBL_MAX ? DBL_MAX : v;
}

int tern_sketch_init_ex(tern_sketch *s, double rel_accuracy, uint32_t max_buckets)
{
    if (!(rel_accuracy >= 1e-6 * TERN_SKETCH_MIN_ACCURACY_PPM - 5e-7
            && rel_accuracy <= 1e-6 * TERN_SKETCH_MAX_ACCURACY_PPM + 5e-7))
        return TERN_EINVAL;
    if (max_buckets < SKETCH_MIN_MAX_BUCKETS || max_buckets > SKETCH_MAX_MAX_BUCKETS)
        return TERN_EINVAL;
    long ppm = lround(rel_accuracy * 1e6);
    if (ppm < (long)TERN_SKETCH_MIN_ACCURACY_PPM || ppm > (long)TERN_SKETCH_MAX_ACCURACY_PPM)
        return TERN_EINVAL;
    memset(s, 0, sizeof *s);
    s->accuracy_ppm = (uint32_t)ppm;
    s->max_buckets = max_buckets;
    double a = (double)ppm / 1e6;
    s->gamma = (1 + a) / (1 - a);
    s->ln_gamma = log1p(2 * a / (1 - a));
    s->inv_ln_gamma = 1 / s->ln_gamma;
    s->min_index = index_of(s, DBL_MIN);
    s->max_index = index_of(s, DBL_MAX);
    return 0;
}

int tern_sketch_init(tern_sketch *s, double rel_accuracy)
{
    return tern_sketch_init_ex(s, rel_accuracy, TERN_SKETCH_DEFAULT_MAX_BUCKETS);
}

void tern_sketch_free(tern_sketch *s)
{
    if (!s)
        return;
    tern_free(s->pos.counts);
    tern_free(s->neg.counts);
    memset(&s->pos, 0, sizeof s->pos);
    memset(&s->neg, 0, sizeof s->neg);
    s->zero_count = s->count = s->nan_count = 0;
}

void tern_sketch_reset(tern_sketch *s)
{
    s->pos.len = s->neg.len = 0;
    s->zero_count = s->count = s->nan_count = 0;
}

/*
 * store_cover makes indexes [a, b] addressable: the window grows to include them, and if it
 * would be wider than max, its low end moves up and the counts below fold into the new lowest
 * bucket. Afterwards an index below lo means "folded into lo". 0 or TERN_ENOMEM (unchanged).
 */
static int store_cover(tern_sketch_store *st, int32_t a, int32_t b, uint32_t max)
{
    int64_t lo, hi;
    if (st->len == 0) {
        lo = a;
        hi = b;
    } else {
        int64_t cur_hi = (int64_t)st->lo + st->len - 1;
        lo = a < st->lo ? a : st->lo;
        hi = b > cur_hi ? b : cur_hi;
        if (lo == st->lo && hi == cur_hi)
            return 0;
    }
    if (hi - lo + 1 > (int64_t)max)
        lo = hi - (int64_t)max + 1;
    uint32_t n = (uint32_t)(hi - lo + 1);
    if (st->len == 0 && st->cap >= n) {
        memset(st->counts, 0, n * sizeof *st->counts);
        st->lo = (int32_t)lo;
        st->len = n;
        return 0;
    }
    if (st->len > 0 && lo == st->lo && st->cap >= n) {
        memset(st->counts + st->len, 0, (n - st->len) * sizeof *st->counts);
        st->len = n;
        return 0;
    }
    uint32_t cap = n;
    if (st->len > 0 && hi > (int64_t)st->lo + st->len - 1 && lo == st->lo) {
        /* growing upward only: leave room to grow again without copying */
        cap = n * 2 < max ? n * 2 : max;
        if (cap < n)
            cap = n;
    }
    uint64_t *counts = tern_calloc(cap, sizeof *counts);
    if (!counts)
        return TERN_ENOMEM;
    for (uint32_t k = 0; k < st->len; k++) {
        int64_t idx = (int64_t)st->lo + k;
        counts[(idx < lo ? lo : idx) - lo] += st->counts[k];
    }
    tern_free(st->counts);
    st->counts = counts;
    st->cap = cap;
    st->lo = (int32_t)lo;
    st->len = n;
    return 0;
}

static void store_put(tern_sketch_store *st, int32_t index, uint64_t n)
{
    st->counts[index < st->lo ? 0 : (uint32_t)(index - st->lo)] += n;
}

int tern_sketch_add_n(tern_sketch *s, double v, uint64_t n)
{
    if (isnan(v)) {
        s->nan_count += n;
        return 0;
    }
    if (n == 0)
        return 0;
    if (s->count > UINT64_MAX - n)
        return TERN_ERANGE;
    double mag = fabs(v);
    if (mag < DBL_MIN) {
        s->zero_count += n;
        s->count += n;
        return 0;
    }
    int32_t index = mag > DBL_MAX ? s->max_index : index_of(s, mag);
    if (index < s->min_index)
        index = s->min_index;
    if (index > s->max_index)
        index = s->max_index;
    tern_sketch_store *st = v > 0 ? &s->pos : &s->neg;
    int rc = store_cover(st, index, index, s->max_buckets);
    if (rc != 0)
        return rc;
    store_put(st, index, n);
    s->count += n;
    return 0;
}

int tern_sketch_add(tern_sketch *s, double v)
{
    return tern_sketch_add_n(s, v, 1);
}

static int store_merge(tern_sketch_store *dst, const tern_sketch_store *src, uint32_t max)
{
    if (src->len == 0)
        return 0;
    int rc = store_cover(dst, src->lo, (int32_t)((int64_t)src->lo + src->len - 1), max);
    if (rc != 0)
        return rc;
    for (uint32_t k = 0; k < src->len; k++)
        if (src->counts[k])
            store_put(dst, (int32_t)((int64_t)src->lo + k), src->counts[k]);
    return 0;
}

int tern_sketch_merge(tern_sketch *dst, const tern_sketch *src)
{
    if (dst->accuracy_ppm != src->accuracy_ppm)
        return TERN_EINVAL;
    if (dst->count > UINT64_MAX - src->count)
        return TERN_ERANGE;
    if (dst == src) {
        for (uint32_t k = 0; k < dst->pos.len; k++)
            dst->pos.counts[k] *= 2;
        for (uint32_t k = 0; k < dst->neg.len; k++)
            dst->neg.counts[k] *= 2;
        dst->zero_count *= 2;
        dst->count *= 2;
        dst->nan_count *= 2;
        return 0;
    }
    /* Widen both windows first so that a failed allocation leaves no count of src behind. */
    int rc = 0;
    if (src->pos.len)
        rc = store_cover(&dst->pos, src->pos.lo, (int32_t)((int64_t)src->pos.lo + src->pos.len - 1),
            dst->max_buckets);
    if (rc == 0 && src->neg.len)
        rc = store_cover(&dst->neg, src->neg.lo, (int32_t)((int64_t)src->neg.lo + src->neg.len - 1),
            dst->max_buckets);
    if (rc != 0)
        return rc;
    store_merge(&dst->pos, &src->pos, dst->max_buckets);
    store_merge(&dst->neg, &src->neg, dst->max_buckets);
    dst->zero_count += src->zero_count;
    dst->count += src->count;
    dst->nan_count += src->nan_count;
    return 0;
}

int tern_sketch_quantile(const tern_sketch *s, double q, double *out)
{
    if (!(q >= 0 && q <= 1))
        return TERN_EINVAL;
    if (s->count == 0)
        return TERN_ENOENT;
    double rank = q * (double)(s->count - 1);
    uint64_t cum = 0;
    for (uint32_t k = s->neg.len; k-- > 0;) {
        cum += s->neg.counts[k];
        if ((double)cum > rank) {
            *out = -value_of(s, (int32_t)((int64_t)s->neg.lo + k));
            return 0;
        }
    }
    cum += s->zero_count;
    if ((double)cum > rank) {
        *out = 0;
        return 0;
    }
    int32_t last = 0;
    bool have_last = false;
    for (uint32_t k = 0; k < s->pos.len; k++) {
        if (!s->pos.counts[k])
            continue;
        cum += s->pos.counts[k];
        last = (int32_t)((int64_t)s->pos.lo + k);
        have_last = true;
        if ((double)cum > rank) {
            *out = value_of(s, last);
            return 0;
        }
    }
    /* Rounding of rank near count - 1: answer the largest value counted. */
    *out = have_last ? value_of(s, last) : 0;
    return 0;
}

uint64_t tern_sketch_count(const tern_sketch *s)
{
    return s->count;
}

uint64_t tern_sketch_nan_count(const tern_sketch *s)
{
    return s->nan_count;
}

double tern_sketch_accuracy(const tern_sketch *s)
{
    return (double)s->accuracy_ppm / 1e6;
}

/* store_span finds the first and last non-empty slot; false if there is none. */
static bool store_span(const tern_sketch_store *st, uint32_t *first, uint32_t *last)
{
    uint32_t a = 0, b = st->len;
    while (a < st->len && st->counts[a] == 0)
        a++;
    if (a == st->len)
        return false;
    while (st->counts[b - 1] == 0)
        b--;
    *first = a;
    *last = b - 1;
    return true;
}

static bool store_equal(const tern_sketch_store *x, const tern_sketch_store *y)
{
    uint32_t xa, xb, ya, yb;
    bool xe = !store_span(x, &xa, &xb), ye = !store_span(y, &ya, &yb);
    if (xe || ye)
        return xe && ye;
    if ((int64_t)x->lo + xa != (int64_t)y->lo + ya || xb - xa != yb - ya)
        return false;
    return memcmp(x->counts + xa, y->counts + ya, (xb - xa + 1) * sizeof *x->counts) == 0;
}

bool tern_sketch_equal(const tern_sketch *a, const tern_sketch *b)
{
    return a->accuracy_ppm == b->accuracy_ppm && a->zero_count == b->zero_count
        && a->count == b->count && a->nan_count == b->nan_count && store_equal(&a->pos, &b->pos)
        && store_equal(&a->neg, &b->neg);
}

static int encode_store(const tern_sketch_store *st, tern_buf *out)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < st->len; k++)
        n += st->counts[k] != 0;
    int rc = tern_varint_append_u64(out, n);
    int64_t prev = 0;
    bool first = true;
    for (uint32_t k = 0; rc == 0 && k < st->len; k++) {
        if (!st->counts[k])
            continue;
        int64_t idx = (int64_t)st->lo + k;
        rc = first ? tern_varint_append_s64(out, idx)
                   : tern_varint_append_u64(out, (uint64_t)(idx - prev));
        if (rc == 0)
            rc = tern_varint_append_u64(out, st->counts[k]);
        prev = idx;
        first = false;
    }
    return rc;
}

int tern_sketch_encode(const tern_sketch *s, tern_buf *out)
{
    size_t start = out->len;
    int rc = tern_buf_append_u8(out, SKETCH_VERSION);
    if (rc == 0)
        rc = tern_varint_append_u64(out, s->accuracy_ppm);
    if (rc == 0)
        rc = tern_varint_append_u64(out, s->zero_count);
    if (rc == 0)
        rc = tern_varint_append_u64(out, s->nan_count);
    if (rc == 0)
        rc = encode_store(&s->pos, out);
    if (rc == 0)
        rc = encode_store(&s->neg, out);
    if (rc != 0)
        out->len = start;
    return rc;
}

/*
 * decode_store reads one store. With into == NULL it only validates (and reports the index
 * range and the sum of counts); otherwise it adds the buckets to into (window already made).
 */
static int decode_store(const tern_sketch *s, tern_reader *r, tern_sketch_store *into,
    int32_t *lo_out, int32_t *hi_out, uint64_t *sum)
{
    uint64_t n;
    if (tern_varint_read_u64(r, &n) != 0)
        return TERN_ECORRUPT;
    if (n > (uint64_t)((int64_t)s->max_index - s->min_index + 1) || n > tern_reader_left(r) / 2)
        return TERN_ECORRUPT;
    int64_t idx = 0;
    for (uint64_t i = 0; i < n; i++) {
        if (i == 0) {
            int64_t first;
            if (tern_varint_read_s64(r, &first) != 0)
                return TERN_ECORRUPT;
            if (first < s->min_index || first > s->max_index)
                return TERN_ECORRUPT;
            idx = first;
            *lo_out = (int32_t)first;
        } else {
            uint64_t gap;
            if (tern_varint_read_u64(r, &gap) != 0)
                return TERN_ECORRUPT;
            if (gap == 0 || gap > (uint64_t)((int64_t)s->max_index - idx))
                return TERN_ECORRUPT;
            idx += (int64_t)gap;
        }
        uint64_t c;
        if (tern_varint_read_u64(r, &c) != 0 || c == 0 || *sum > UINT64_MAX - c)
            return TERN_ECORRUPT;
        *sum += c;
        if (into)
            store_put(into, (int32_t)idx, c);
    }
    if (n > 0)
        *hi_out = (int32_t)idx;
    return 0;
}

int tern_sketch_decode(tern_sketch *s, const uint8_t *p, size_t len)
{
    tern_reader r;
    tern_reader_init(&r, p, len);
    uint8_t version;
    uint32_t ppm;
    uint64_t zero, nan;
    if (tern_reader_u8(&r, &version) != 0)
        return TERN_ECORRUPT;
    if (version != SKETCH_VERSION)
        return TERN_EVERSION;
    if (tern_varint_read_u32(&r, &ppm) != 0 || ppm < TERN_SKETCH_MIN_ACCURACY_PPM
        || ppm > TERN_SKETCH_MAX_ACCURACY_PPM)
        return TERN_ECORRUPT;
    if (tern_varint_read_u64(&r, &zero) != 0 || tern_varint_read_u64(&r, &nan) != 0)
        return TERN_ECORRUPT;
    tern_sketch t;
    if (tern_sketch_init(&t, (double)ppm / 1e6) != 0 || t.accuracy_ppm != ppm)
        return TERN_ECORRUPT;

    /* Pass 1: validate everything and find each store's index range. */
    size_t stores_at = r.pos;
    int32_t plo = 0, phi = -1, nlo = 0, nhi = -1;
    uint64_t sum = zero;
    int rc = decode_store(&t, &r, NULL, &plo, &phi, &sum);
    if (rc == 0)
        rc = decode_store(&t, &r, NULL, &nlo, &nhi, &sum);
    if (rc == 0 && tern_reader_left(&r) != 0)
        rc = TERN_ECORRUPT;
    if (rc != 0)
        return rc;
    /* Pass 2: size the windows once, then fill them. */
    if (phi >= plo)
        rc = store_cover(&t.pos, plo, phi, t.max_buckets);
    if (rc == 0 && nhi >= nlo)
        rc = store_cover(&t.neg, nlo, nhi, t.max_buckets);
    if (rc != 0) {
        tern_sketch_free(&t);
        return rc;
    }
    r.pos = stores_at;
    uint64_t sum2 = zero;
    decode_store(&t, &r, &t.pos, &plo, &phi, &sum2);
    decode_store(&t, &r, &t.neg, &nlo, &nhi, &sum2);
    t.zero_count = zero;
    t.nan_count = nan;
    t.count = sum;
    *s = t;
    return 0;
}

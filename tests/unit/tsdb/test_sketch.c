/*
 * test_sketch.c: the relative-error quantile sketch. Quantiles against exact sorted quantiles
 * on uniform, lognormal, negative, mixed-sign, constant and tiny data sets at several
 * accuracies; NaN, +-Inf, -0.0 and subnormals; merge == sketch of the union (bucket for bucket
 * and byte for byte); bucket collapsing keeps the high quantiles; encode/decode round trips;
 * hostile encodings (every truncation, trailing bytes, bad version, accuracy, index, gap,
 * zero and overflowing counts, random bytes); the size of a 6-point minute; allocation failure.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tsdb/sketch.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/varint.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;

static uint64_t rng_next(void)
{
    uint64_t x = rng_state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    rng_state = x;
    return x;
}

static double rng_unit(void) /* [0, 1) */
{
    return (double)(rng_next() >> 11) / 9007199254740992.0;
}

static double rng_normal(void)
{
    double u = rng_unit(), v = rng_unit();
    return sqrt(-2 * log(1 - u)) * cos(2 * M_PI * v);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static const double qs[] = { 0, 0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1 };

/* check_quantiles asserts every estimate is within a * |exact| of sorted[floor(q (n-1))]. */
static void check_quantiles(const tern_sketch *s, double *vals, size_t n, double a)
{
    qsort(vals, n, sizeof *vals, cmp_double);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
        double est;
        assert_int_equal(tern_sketch_quantile(s, qs[i], &est), 0);
        double exact = vals[(size_t)floor(qs[i] * (double)(n - 1))];
        double tol = a * fabs(exact) * (1 + 1e-9);
        if (fabs(est - exact) > tol) {
            fprintf(stderr, "q=%g est=%.17g exact=%.17g a=%g\n", qs[i], est, exact, a);
            fail();
        }
    }
}

typedef double (*gen_fn)(size_t i);

static double gen_uniform(size_t i)
{
    (void)i;
    return rng_unit() * 1000;
}
static double gen_lognormal(size_t i)
{
    (void)i;
    return exp(rng_normal() * 2 + 1);
}
static double gen_negative(size_t i)
{
    (void)i;
    return -(rng_unit() * 1e6 + 1e-3);
}
static double gen_mixed(size_t i)
{
    if (i % 17 == 0)
        return 0;
    return (rng_unit() - 0.5) * 2 * pow(10, rng_unit() * 8 - 4);
}
static double gen_constant(size_t i)
{
    (void)i;
    return 21.37;
}
static double gen_decimal_sensor(size_t i)
{
    return round((20 + 5 * sin((double)i / 50) + rng_normal() * 0.3) * 10) / 10;
}

static void run_dataset(gen_fn gen, size_t n, double a)
{
    rng_state = 0x9E3779B97F4A7C15ull ^ n;
    double *vals = malloc(n * sizeof *vals);
    tern_sketch s;
    /* room for every bucket: collapsing has its own test */
    assert_int_equal(tern_sketch_init_ex(&s, a, 65536), 0);
    for (size_t i = 0; i < n; i++) {
        vals[i] = gen(i);
        assert_int_equal(tern_sketch_add(&s, vals[i]), 0);
    }
    assert_int_equal(tern_sketch_count(&s), n);
    check_quantiles(&s, vals, n, a);
    free(vals);
    tern_sketch_free(&s);
}

static void test_quantiles_within_relative_error(void **state)
{
    (void)state;
    static const gen_fn gens[]
        = { gen_uniform, gen_lognormal, gen_negative, gen_mixed, gen_constant, gen_decimal_sensor };
    static const double accs[] = { 0.01, 0.02, 0.001, 0.05 };
    static const size_t sizes[] = { 1, 2, 6, 100, 20000 };
    for (size_t g = 0; g < sizeof gens / sizeof gens[0]; g++)
        for (size_t a = 0; a < sizeof accs / sizeof accs[0]; a++)
            for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
                run_dataset(gens[g], sizes[k], accs[a]);
}

static void test_special_values(void **state)
{
    (void)state;
    tern_sketch s;
    assert_int_equal(tern_sketch_init(&s, 0.01), 0);
    double out = 7;
    assert_int_equal(tern_sketch_quantile(&s, 0.5, &out), TERN_ENOENT);
    assert_int_equal(out, 7);
    assert_int_equal(tern_sketch_add(&s, NAN), 0);
    assert_int_equal(tern_sketch_count(&s), 0);
    assert_int_equal(tern_sketch_nan_count(&s), 1);
    assert_int_equal(tern_sketch_quantile(&s, 0.5, &out), TERN_ENOENT);
    assert_int_equal(tern_sketch_add(&s, -0.0), 0);
    assert_int_equal(tern_sketch_add(&s, 4.9e-324), 0); /* subnormal: counted as zero */
    assert_int_equal(tern_sketch_add(&s, INFINITY), 0);
    assert_int_equal(tern_sketch_add(&s, -INFINITY), 0);
    assert_int_equal(tern_sketch_add(&s, DBL_MAX), 0);
    assert_int_equal(tern_sketch_add(&s, 1e-300), 0);
    assert_int_equal(tern_sketch_count(&s), 6);
    assert_int_equal(tern_sketch_quantile(&s, 1, &out), 0);
    assert_true(isfinite(out) && out > 1e307);
    assert_int_equal(tern_sketch_quantile(&s, 0, &out), 0);
    assert_true(isfinite(out) && out < -1e307);
    assert_int_equal(tern_sketch_quantile(&s, 0.3, &out), 0); /* rank 1.5: a zero */
    assert_true(out == 0);
    assert_int_equal(tern_sketch_quantile(&s, 0.5, &out), 0); /* rank 2.5: a zero */
    assert_true(out == 0);
    /* rank 3: 1e-300, folded (with DBL_MAX in the same store) into the lowest kept bucket */
    assert_int_equal(tern_sketch_quantile(&s, 0.6, &out), 0);
    assert_true(out >= 1e-300 && out <= DBL_MAX);
    tern_sketch_free(&s);
    /* the extremes of the finite range alone */
    assert_int_equal(tern_sketch_init(&s, 0.01), 0);
    assert_int_equal(tern_sketch_add(&s, DBL_MIN), 0);
    assert_int_equal(tern_sketch_add(&s, -DBL_MIN), 0);
    assert_int_equal(tern_sketch_quantile(&s, 1, &out), 0);
    assert_true(fabs(out - DBL_MIN) <= 0.01 * DBL_MIN);
    assert_int_equal(tern_sketch_quantile(&s, 0, &out), 0);
    assert_true(fabs(out + DBL_MIN) <= 0.01 * DBL_MIN);
    assert_int_equal(tern_sketch_quantile(&s, -0.1, &out), TERN_EINVAL);
    assert_int_equal(tern_sketch_quantile(&s, 1.1, &out), TERN_EINVAL);
    assert_int_equal(tern_sketch_quantile(&s, NAN, &out), TERN_EINVAL);
    tern_sketch_free(&s);

    assert_int_equal(tern_sketch_init(&s, 0), TERN_EINVAL);
    assert_int_equal(tern_sketch_init(&s, 0.6), TERN_EINVAL);
    assert_int_equal(tern_sketch_init(&s, NAN), TERN_EINVAL);
    assert_int_equal(tern_sketch_init(&s, 0.00001), TERN_EINVAL);
    assert_int_equal(tern_sketch_init_ex(&s, 0.01, 4), TERN_EINVAL);
    assert_int_equal(tern_sketch_init(&s, 0.0123456), 0);
    assert_true(fabs(tern_sketch_accuracy(&s) - 0.012346) < 1e-12);
    tern_sketch_free(&s);
}

static void encode_to(const tern_sketch *s, tern_buf *b)
{
    tern_buf_reset(b);
    assert_int_equal(tern_sketch_encode(s, b), 0);
}

static void test_merge_equals_union(void **state)
{
    (void)state;
    static const gen_fn gens[] = { gen_uniform, gen_lognormal, gen_mixed, gen_decimal_sensor };
    tern_buf eu = TERN_BUF_INIT, em = TERN_BUF_INIT;
    for (size_t g = 0; g < sizeof gens / sizeof gens[0]; g++) {
        rng_state = 12345 + g;
        tern_sketch a, b, all;
        assert_int_equal(tern_sketch_init(&a, 0.01), 0);
        assert_int_equal(tern_sketch_init(&b, 0.01), 0);
        assert_int_equal(tern_sketch_init(&all, 0.01), 0);
        for (size_t i = 0; i < 5000; i++) {
            double v = gens[g](i);
            assert_int_equal(tern_sketch_add((i * 7919) % 3 ? &a : &b, v), 0);
            assert_int_equal(tern_sketch_add(&all, v), 0);
        }
        tern_sketch_add(&a, NAN);
        tern_sketch_add(&all, NAN);
        assert_int_equal(tern_sketch_merge(&a, &b), 0);
        assert_true(tern_sketch_equal(&a, &all));
        encode_to(&a, &em);
        encode_to(&all, &eu);
        assert_int_equal(em.len, eu.len);
        assert_memory_equal(em.data, eu.data, eu.len);
        /* merging an empty sketch changes nothing; merging into an empty one copies */
        tern_sketch empty;
        assert_int_equal(tern_sketch_init(&empty, 0.01), 0);
        assert_int_equal(tern_sketch_merge(&a, &empty), 0);
        assert_true(tern_sketch_equal(&a, &all));
        assert_int_equal(tern_sketch_merge(&empty, &all), 0);
        assert_true(tern_sketch_equal(&empty, &all));
        /* self-merge doubles every count */
        assert_int_equal(tern_sketch_merge(&empty, &empty), 0);
        assert_int_equal(tern_sketch_merge(&all, &a), 0);
        assert_true(tern_sketch_equal(&empty, &all));
        assert_int_equal(tern_sketch_count(&all), 10000);
        tern_sketch_free(&empty);
        tern_sketch_free(&a);
        tern_sketch_free(&b);
        tern_sketch_free(&all);
    }
    tern_sketch x, y;
    assert_int_equal(tern_sketch_init(&x, 0.01), 0);
    assert_int_equal(tern_sketch_init(&y, 0.02), 0);
    tern_sketch_add(&y, 1);
    assert_int_equal(tern_sketch_merge(&x, &y), TERN_EINVAL);
    assert_int_equal(tern_sketch_count(&x), 0);
    tern_sketch_free(&x);
    tern_sketch_free(&y);
    tern_buf_free(&eu);
    tern_buf_free(&em);
}

/* Many one-minute sketches merged in any order give the same result (p95 of an hour). */
static void test_merge_minutes_any_order(void **state)
{
    (void)state;
    enum { MINUTES = 60 };
    tern_sketch mins[MINUTES], fwd, rev, direct;
    rng_state = 99;
    double vals[MINUTES * 6];
    assert_int_equal(tern_sketch_init(&direct, 0.01), 0);
    for (int m = 0; m < MINUTES; m++) {
        assert_int_equal(tern_sketch_init(&mins[m], 0.01), 0);
        for (int k = 0; k < 6; k++) {
            double v = gen_decimal_sensor((size_t)(m * 6 + k));
            vals[m * 6 + k] = v;
            tern_sketch_add(&mins[m], v);
            tern_sketch_add(&direct, v);
        }
    }
    assert_int_equal(tern_sketch_init(&fwd, 0.01), 0);
    assert_int_equal(tern_sketch_init(&rev, 0.01), 0);
    for (int m = 0; m < MINUTES; m++) {
        assert_int_equal(tern_sketch_merge(&fwd, &mins[m]), 0);
        assert_int_equal(tern_sketch_merge(&rev, &mins[MINUTES - 1 - m]), 0);
    }
    assert_true(tern_sketch_equal(&fwd, &direct));
    assert_true(tern_sketch_equal(&rev, &direct));
    check_quantiles(&fwd, vals, MINUTES * 6, 0.01);
    for (int m = 0; m < MINUTES; m++)
        tern_sketch_free(&mins[m]);
    tern_sketch_free(&fwd);
    tern_sketch_free(&rev);
    tern_sketch_free(&direct);
}

static void test_collapse_keeps_high_quantiles(void **state)
{
    (void)state;
    tern_sketch s, big;
    assert_int_equal(tern_sketch_init_ex(&s, 0.01, 64), 0);
    assert_int_equal(tern_sketch_init(&big, 0.01), 0);
    size_t n = 20000;
    double *vals = malloc(n * sizeof *vals);
    rng_state = 7;
    for (size_t i = 0; i < n; i++) {
        vals[i] = 1 + rng_unit() * 1e6;
        assert_int_equal(tern_sketch_add(&s, vals[i]), 0);
        assert_int_equal(tern_sketch_add(&big, vals[i]), 0);
    }
    assert_true(s.pos.len <= 64);
    assert_int_equal(tern_sketch_count(&s), n);
    qsort(vals, n, sizeof *vals, cmp_double);
    static const double high[] = { 0.95, 0.99, 1 };
    for (size_t i = 0; i < 3; i++) {
        double est, exact = vals[(size_t)floor(high[i] * (double)(n - 1))];
        assert_int_equal(tern_sketch_quantile(&s, high[i], &est), 0);
        assert_true(fabs(est - exact) <= 0.01 * exact * (1 + 1e-9));
    }
    /* low quantiles are folded into the lowest kept bucket: over-estimated, never below */
    double est;
    assert_int_equal(tern_sketch_quantile(&s, 0, &est), 0);
    assert_true(est >= vals[0]);
    /* merging a wide sketch into a narrow one collapses the same way */
    tern_sketch narrow;
    assert_int_equal(tern_sketch_init_ex(&narrow, 0.01, 64), 0);
    assert_int_equal(tern_sketch_merge(&narrow, &big), 0);
    assert_true(narrow.pos.len <= 64);
    assert_true(tern_sketch_equal(&narrow, &s));
    tern_sketch_free(&narrow);
    /* a decoded wide encoding is collapsed to the default limit */
    tern_sketch wide;
    assert_int_equal(tern_sketch_init(&wide, 0.01), 0);
    for (int e = -300; e <= 300; e++)
        tern_sketch_add(&wide, pow(10, e));
    assert_true(wide.pos.len <= TERN_SKETCH_DEFAULT_MAX_BUCKETS);
    assert_int_equal(tern_sketch_quantile(&wide, 1, &est), 0);
    assert_true(fabs(est - 1e300) <= 0.01 * 1e300);
    free(vals);
    tern_sketch_free(&s);
    tern_sketch_free(&big);
    tern_sketch_free(&wide);
}

static void test_encode_decode_round_trip(void **state)
{
    (void)state;
    static const gen_fn gens[]
        = { gen_uniform, gen_lognormal, gen_negative, gen_mixed, gen_constant, gen_decimal_sensor };
    tern_buf b = TERN_BUF_INIT, b2 = TERN_BUF_INIT;
    for (size_t g = 0; g < sizeof gens / sizeof gens[0]; g++) {
        rng_state = 5 + g;
        tern_sketch s, d;
        assert_int_equal(tern_sketch_init(&s, g % 2 ? 0.01 : 0.005), 0);
        for (size_t i = 0; i < 3000; i++)
            tern_sketch_add(&s, gens[g](i));
        tern_sketch_add(&s, NAN);
        encode_to(&s, &b);
        assert_int_equal(tern_sketch_decode(&d, b.data, b.len), 0);
        assert_true(tern_sketch_equal(&s, &d));
        assert_int_equal(tern_sketch_nan_count(&d), 1);
        for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++) {
            double x, y;
            assert_int_equal(tern_sketch_quantile(&s, qs[i], &x), 0);
            assert_int_equal(tern_sketch_quantile(&d, qs[i], &y), 0);
            assert_true(x == y);
        }
        encode_to(&d, &b2);
        assert_int_equal(b.len, b2.len);
        assert_memory_equal(b.data, b2.data, b.len);
        /* decoded sketches keep working: add and merge */
        assert_int_equal(tern_sketch_add(&d, 1.5), 0);
        assert_int_equal(tern_sketch_merge(&d, &s), 0);
        assert_int_equal(tern_sketch_count(&d), 2 * tern_sketch_count(&s) + 1);
        tern_sketch_free(&s);
        tern_sketch_free(&d);
    }
    /* the empty sketch */
    tern_sketch e, d;
    assert_int_equal(tern_sketch_init(&e, 0.01), 0);
    encode_to(&e, &b);
    assert_int_equal(b.len, 7);
    assert_int_equal(tern_sketch_decode(&d, b.data, b.len), 0);
    assert_true(tern_sketch_equal(&e, &d));
    assert_int_equal(tern_sketch_count(&d), 0);
    tern_sketch_free(&d);
    tern_sketch_free(&e);
    tern_buf_free(&b);
    tern_buf_free(&b2);
}

static void test_six_point_minute_is_small(void **state)
{
    (void)state;
    static const double minute[6] = { 21.3, 21.4, 21.4, 21.6, 21.5, 21.9 };
    tern_sketch s;
    assert_int_equal(tern_sketch_init(&s, 0.01), 0);
    for (int i = 0; i < 6; i++)
        tern_sketch_add(&s, minute[i]);
    tern_buf b = TERN_BUF_INIT;
    encode_to(&s, &b);
    printf("# 6-point minute sketch: %zu bytes\n", b.len);
    assert_true(b.len <= 16);
    double p95;
    assert_int_equal(tern_sketch_quantile(&s, 0.95, &p95), 0);
    assert_true(fabs(p95 - 21.6) <= 0.01 * 21.6);
    tern_buf_free(&b);
    tern_sketch_free(&s);
}

/* hand-built encodings */
static void put_hdr(tern_buf *b, uint32_t ppm, uint64_t zero, uint64_t nan)
{
    tern_buf_reset(b);
    tern_buf_append_u8(b, 1);
    tern_varint_append_u64(b, ppm);
    tern_varint_append_u64(b, zero);
    tern_varint_append_u64(b, nan);
}

static int decode_buf(const tern_buf *b)
{
    tern_sketch d;
    int rc = tern_sketch_decode(&d, b->data, b->len);
    if (rc == 0)
        tern_sketch_free(&d);
    return rc;
}

static void test_decode_hostile(void **state)
{
    (void)state;
    tern_sketch s, d;
    assert_int_equal(tern_sketch_init(&s, 0.01), 0);
    rng_state = 3;
    for (int i = 0; i < 500; i++)
        tern_sketch_add(&s, gen_mixed((size_t)i));
    tern_buf b = TERN_BUF_INIT;
    encode_to(&s, &b);
    /* every strict prefix is refused, and so is a trailing byte */
    for (size_t n = 0; n < b.len; n++) {
        int rc = tern_sketch_decode(&d, b.data, n);
        assert_int_equal(rc, TERN_ECORRUPT);
    }
    tern_buf_append_u8(&b, 0);
    assert_int_equal(tern_sketch_decode(&d, b.data, b.len), TERN_ECORRUPT);
    b.data[0] = 2;
    assert_int_equal(tern_sketch_decode(&d, b.data, b.len), TERN_EVERSION);

    /* accuracy out of range */
    put_hdr(&b, 0, 0, 0);
    tern_buf_append(&b, "\0\0", 2);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);
    put_hdr(&b, 500001, 0, 0);
    tern_buf_append(&b, "\0\0", 2);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);
    /* a valid minimal one */
    put_hdr(&b, 10000, 3, 0);
    tern_buf_append(&b, "\0\0", 2);
    assert_int_equal(decode_buf(&b), 0);
    /* bucket count of zero */
    put_hdr(&b, 10000, 0, 0);
    tern_varint_append_u64(&b, 1);
    tern_varint_append_s64(&b, 5);
    tern_varint_append_u64(&b, 0);
    tern_buf_append_u8(&b, 0);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);
    /* gap of zero (a repeated index) */
    put_hdr(&b, 10000, 0, 0);
    tern_varint_append_u64(&b, 2);
    tern_varint_append_s64(&b, 5);
    tern_varint_append_u64(&b, 1);
    tern_varint_append_u64(&b, 0);
    tern_varint_append_u64(&b, 1);
    tern_buf_append_u8(&b, 0);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);
    /* index beyond DBL_MAX's bucket, and a gap that runs past it */
    put_hdr(&b, 10000, 0, 0);
    tern_varint_append_u64(&b, 1);
    tern_varint_append_s64(&b, 40000);
    tern_varint_append_u64(&b, 1);
    tern_buf_append_u8(&b, 0);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);
    put_hdr(&b, 10000, 0, 0);
    tern_varint_append_u64(&b, 2);
    tern_varint_append_s64(&b, 30000);
    tern_varint_append_u64(&b, 1);
    tern_varint_append_u64(&b, 10000);
    tern_varint_append_u64(&b, 1);
    tern_buf_append_u8(&b, 0);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);
    /* counts that sum past 2^64 */
    put_hdr(&b, 10000, UINT64_MAX, 0);
    tern_varint_append_u64(&b, 1);
    tern_varint_append_s64(&b, 5);
    tern_varint_append_u64(&b, 1);
    tern_buf_append_u8(&b, 0);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);
    /* more buckets announced than bytes could hold */
    put_hdr(&b, 10000, 0, 0);
    tern_varint_append_u64(&b, 1000000);
    assert_int_equal(decode_buf(&b), TERN_ECORRUPT);

    /* random bytes and random mutations of a valid encoding never crash */
    tern_buf good = TERN_BUF_INIT;
    encode_to(&s, &good);
    uint8_t junk[64];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n;
        const uint8_t *p;
        if (iter % 2) {
            n = rng_next() % sizeof junk;
            for (size_t i = 0; i < n; i++)
                junk[i] = (uint8_t)rng_next();
            if (n)
                junk[0] = 1;
            p = junk;
        } else {
            tern_buf_reset(&b);
            tern_buf_append(&b, good.data, good.len);
            b.data[rng_next() % b.len] ^= (uint8_t)(1u << (rng_next() % 8));
            n = b.len;
            p = b.data;
        }
        int rc = tern_sketch_decode(&d, p, n);
        if (rc == 0) {
            tern_buf e = TERN_BUF_INIT;
            assert_int_equal(tern_sketch_encode(&d, &e), 0);
            tern_sketch d2;
            assert_int_equal(tern_sketch_decode(&d2, e.data, e.len), 0);
            assert_true(tern_sketch_equal(&d, &d2));
            tern_sketch_free(&d2);
            tern_buf_free(&e);
            tern_sketch_free(&d);
        } else {
            assert_true(rc == TERN_ECORRUPT || rc == TERN_EVERSION);
        }
    }
    tern_buf_free(&good);
    tern_buf_free(&b);
    tern_sketch_free(&s);
}

static void test_allocation_failure(void **state)
{
    (void)state;
    tern_sketch s, t;
    assert_int_equal(tern_sketch_init(&s, 0.01), 0);
    assert_int_equal(tern_sketch_init(&t, 0.01), 0);
    tern_sketch_add(&s, 10);
    tern_sketch_add(&t, 1e9);
    tern_sketch_add(&t, -3);
    tern_alloc_fail_after(0);
    assert_int_equal(tern_sketch_add(&s, 1e6), TERN_ENOMEM);
    assert_int_equal(tern_sketch_merge(&s, &t), TERN_ENOMEM);
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_sketch_encode(&s, &b), TERN_ENOMEM);
    tern_alloc_fail_after(-1);
    assert_int_equal(tern_sketch_count(&s), 1);
    double out;
    assert_int_equal(tern_sketch_quantile(&s, 1, &out), 0);
    assert_true(fabs(out - 10) <= 0.1);
    assert_int_equal(tern_sketch_merge(&s, &t), 0);
    assert_int_equal(tern_sketch_count(&s), 3);
    /* reset keeps the accuracy and empties */
    tern_sketch_reset(&s);
    assert_int_equal(tern_sketch_count(&s), 0);
    assert_int_equal(tern_sketch_add(&s, 5), 0);
    assert_int_equal(tern_sketch_quantile(&s, 0.5, &out), 0);
    assert_true(fabs(out - 5) <= 0.05);
    tern_buf_free(&b);
    tern_sketch_free(&s);
    tern_sketch_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quantiles_within_relative_error),
        cmocka_unit_test(test_special_values),
        cmocka_unit_test(test_merge_equals_union),
        cmocka_unit_test(test_merge_minutes_any_order),
        cmocka_unit_test(test_collapse_keeps_high_quantiles),
        cmocka_unit_test(test_encode_decode_round_trip),
        cmocka_unit_test(test_six_point_minute_is_small),
        cmocka_unit_test(test_decode_hostile),
        cmocka_unit_test(test_allocation_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

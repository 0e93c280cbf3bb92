/*
 * test_codec.c: the TSDB chunk codec (src/tsdb/codec.h): bit-exact round trips on hostile values
 * and timestamps, decimal detection, the automatic choice of encodings, every forced encoding,
 * argument checks, allocation failure, and corrupt input (every truncation, byte flips, unknown
 * version) that must give an error and never a crash.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "tsdb/codec.h"
#include "tsdb/codec_int.h"

#include <stdbool.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state = 0x1234567;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static double bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

static void regular_ts(int64_t *ts, size_t n, int64_t t0, int64_t step)
{
    for (size_t i = 0; i < n; i++)
        ts[i] = t0 + (int64_t)i * step;
}

/* Encodes (forced encodings, 0 = auto; fast: the quick encoder, automatic), checks the header,
 * decodes, compares bit for bit; returns the chunk size and fills *info. */
static size_t rt_f64_enc(const int64_t *ts, const double *vals, size_t n, unsigned tse,
    unsigned vale, bool fast, tern_chunk_info *info)
{
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append_u8(&b, 0xAB), 0); /* appends after existing bytes */
    if (fast)
        assert_int_equal(tern_chunk_encode_f64_fast(&b, ts, vals, n), 0);
    else
        assert_int_equal(tern_chunk_encode_f64_with(&b, ts, vals, n, tse, vale), 0);
    assert_int_equal(b.data[0], 0xAB);
    const uint8_t *chunk = b.data + 1;
    size_t len = b.len - 1;
    tern_chunk_info ci;
    assert_int_equal(tern_chunk_info_read(chunk, len, &ci), 0);
    assert_int_equal(ci.count, n);
    assert_int_equal(ci.kind, TERN_VALUE_F64);
    assert_true(ci.min_ts == ts[0]);
    assert_true(ci.max_ts == ts[n - 1]);
    if (tse)
        assert_int_equal(ci.ts_encoding, tse);
    if (vale)
        assert_int_equal(ci.value_encoding, vale);
    int64_t *dts = malloc(n * sizeof *dts);
    double *dv = malloc(n * sizeof *dv);
    assert_non_null(dts);
    assert_non_null(dv);
    size_t got = 0;
    assert_int_equal(tern_chunk_decode_f64(chunk, len, dts, dv, n, &got), 0);
    assert_int_equal(got, n);
    assert_memory_equal(dts, ts, n * sizeof *ts);
    assert_memory_equal(dv, vals, n * sizeof *vals);
    /* The other kind is refused; a too small capacity is refused. */
    assert_int_equal(tern_chunk_decode_i64(chunk, len, dts, (int64_t *)dv, n, &got), TERN_EINVAL);
    if (n > 1)
        assert_int_equal(tern_chunk_decode_f64(chunk, len, dts, dv, n - 1, &got), TERN_EINVAL);
    free(dts);
    free(dv);
    if (info)
        *info = ci;
    tern_buf_free(&b);
    assert_true(len <= tern_chunk_bound(n));
    return len;
}

static size_t rt_f64_with(const int64_t *ts, const double *vals, size_t n, unsigned tse,
    unsigned vale, tern_chunk_info *info)
{
    return rt_f64_enc(ts, vals, n, tse, vale, false, info);
}

/* Automatic encodings: the quick encoder (head fragments), then the thorough one. */
static size_t rt_f64(const int64_t *ts, const double *vals, size_t n, tern_chunk_info *info)
{
    rt_f64_enc(ts, vals, n, 0, 0, true, NULL);
    return rt_f64_enc(ts, vals, n, 0, 0, false, info);
}

static size_t rt_i64(const int64_t *ts, const int64_t *vals, size_t n, tern_chunk_info *info)
{
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_chunk_encode_i64(&b, ts, vals, n), 0);
    tern_chunk_info ci;
    assert_int_equal(tern_chunk_info_read(b.data, b.len, &ci), 0);
    assert_int_equal(ci.count, n);
    assert_int_equal(ci.kind, TERN_VALUE_I64);
    assert_int_equal(ci.value_encoding, TERN_CHUNK_VAL_INT);
    int64_t *dts = malloc(n * sizeof *dts);
    int64_t *dv = malloc(n * sizeof *dv);
    assert_non_null(dts);
    assert_non_null(dv);
    size_t got = 0;
    assert_int_equal(tern_chunk_decode_i64(b.data, b.len, dts, dv, n, &got), 0);
    assert_int_equal(got, n);
    assert_memory_equal(dts, ts, n * sizeof *ts);
    assert_memory_equal(dv, vals, n * sizeof *vals);
    assert_int_equal(tern_chunk_decode_f64(b.data, b.len, dts, (double *)dv, n, &got), TERN_EINVAL);
    free(dts);
    free(dv);
    if (info)
        *info = ci;
    size_t len = b.len;
    tern_buf_free(&b);
    return len;
}

static void test_hostile_floats(void **state)
{
    (void)state;
    const double specials[] = {
        NAN,
        -NAN,
        bits_f64(0x7ff0000000000001u), /* signalling NaN payload */
        bits_f64(0x7ff8dead0000beefu), /* quiet NaN with payload */
        bits_f64(0xfff0000000c0ffeeu),
        INFINITY,
        -INFINITY,
        0.0,
        -0.0,
        DBL_MIN,
        DBL_TRUE_MIN,
        -DBL_TRUE_MIN,
        bits_f64(0x000fffffffffffffu), /* largest subnormal */
        DBL_MAX,
        -DBL_MAX,
        1e-300,
        0.1 + 0.2,
        9007199254740993.0,
        -1.5,
    };
    size_t ns = sizeof specials / sizeof specials[0];
    int64_t ts[64];
    double vals[64];
    regular_ts(ts, 64, 1700000000000, 10000);
    /* All specials, then each one alone, then each one inside a decimal series. */
    assert_true(rt_f64(ts, specials, ns, NULL) > 0);
    for (size_t k = 0; k < ns; k++) {
        rt_f64(ts, &specials[k], 1, NULL);
        for (size_t i = 0; i < 64; i++)
            vals[i] = (double)(int)(i * 7 % 50) / 10.0;
        vals[k % 64] = specials[k];
        vals[(k * 13 + 5) % 64] = specials[k];
        rt_f64(ts, vals, 64, NULL);
        for (size_t i = 0; i < 64; i++)
            vals[i] = specials[k];
        rt_f64(ts, vals, 64, NULL); /* constant special series */
    }
    /* Random bit patterns (any double at all). */
    for (size_t i = 0; i < 64; i++)
        vals[i] = bits_f64(rnd());
    tern_chunk_info ci;
    rt_f64(ts, vals, 64, &ci);
    assert_int_not_equal(ci.value_encoding, TERN_CHUNK_VAL_DECIMAL);
}

static void test_decimal_detection(void **state)
{
    (void)state;
    int64_t ts[256];
    double vals[256];
    regular_ts(ts, 256, 0, 1000);
    tern_chunk_info ci;

    /* 23.45 and 101.7 style sensor values are decimals. */
    for (size_t i = 0; i < 256; i++)
        vals[i] = (i % 2) ? 23.45 + (double)(i % 7) / 100.0 : 101.7;
    for (size_t i = 0; i < 256; i++)
        vals[i] = (double)llround(vals[i] * 100.0) / 100.0;
    rt_f64(ts, vals, 256, &ci);
    assert_int_equal(ci.value_encoding, TERN_CHUNK_VAL_DECIMAL);

    /* 0.1 + 0.2 is not the decimal 0.3: a series of it must still round-trip exactly. */
    for (size_t i = 0; i < 256; i++)
        vals[i] = (i % 3) ? 0.3 : 0.1 + 0.2;
    assert_true(vals[1] != vals[0]);
    rt_f64(ts, vals, 256, &ci);
    /* 0.1 + 0.2 is exactly the double nearest 0.30000000000000004 (17 decimals): a forced decimal
     * encoding holds it next to 0.3. */
    tern_buf b = TERN_BUF_INIT;
    rt_f64_with(ts, vals, 256, 0, TERN_CHUNK_VAL_DECIMAL, NULL);
    /* 1e-300 multiples are not decimals with <= 18 places: forced decimal is refused. */
    for (size_t i = 0; i < 256; i++)
        vals[i] = 1e-300 * (double)(i + 1);
    rt_f64(ts, vals, 256, &ci);
    assert_int_not_equal(ci.value_encoding, TERN_CHUNK_VAL_DECIMAL);
    assert_int_equal(
        tern_chunk_encode_f64_with(&b, ts, vals, 256, 0, TERN_CHUNK_VAL_DECIMAL), TERN_EINVAL);

    /* Large integers and large round numbers. */
    for (size_t i = 0; i < 256; i++)
        vals[i] = 1.5e15 + (double)(i * 1000);
    rt_f64(ts, vals, 256, &ci);
    assert_int_equal(ci.value_encoding, TERN_CHUNK_VAL_DECIMAL);

    /* Six decimals (GPS) and negatives. */
    for (size_t i = 0; i < 256; i++)
        vals[i] = (double)(-48858370 + (int64_t)i * 37) / 1e6;
    size_t len = rt_f64(ts, vals, 256, &ci);
    assert_int_equal(ci.value_encoding, TERN_CHUNK_VAL_DECIMAL);
    assert_true(len < 64); /* a straight line: delta-of-delta is all zeros */

    /* A decimal series with a few NaN / -0.0 / Inf keeps the decimal encoding (exceptions). */
    for (size_t i = 0; i < 256; i++)
        vals[i] = 20.0 + (double)(int)(i % 10) / 10.0;
    vals[0] = NAN;
    vals[77] = -0.0;
    vals[200] = -INFINITY;
    vals[255] = bits_f64(0x7ff4000000000123u);
    len = rt_f64(ts, vals, 256, &ci);
    assert_int_equal(ci.value_encoding, TERN_CHUNK_VAL_DECIMAL);
    assert_true(len < 256);
    tern_buf_free(&b);
}

/* A slowly varying 1-decimal signal on a 10 s grid costs less than a byte per point. */
static void test_encoding_choice_sensor(void **state)
{
    (void)state;
    enum { N = 720 };
    int64_t ts[N];
    double vals[N];
    regular_ts(ts, N, 1700000000000, 10000);
    int64_t m = 215; /* 21.5 degrees */
    for (size_t i = 0; i < N; i++) {
        m += (int64_t)(rnd() % 3) - 1;
        vals[i] = (double)m / 10.0;
    }
    tern_chunk_info ci;
    size_t len = rt_f64(ts, vals, N, &ci);
    assert_int_equal(ci.ts_encoding, TERN_CHUNK_TS_REGULAR);
    assert_int_equal(ci.value_encoding, TERN_CHUNK_VAL_DECIMAL);
    assert_true(len < N);
    assert_true(len < N / 3); /* about 2 bits per point */

    /* The same with +-5 ms clock jitter: irregular, still small. */
    for (size_t i = 0; i < N; i++)
        ts[i] += (int64_t)(rnd() % 11) - 5;
    len = rt_f64(ts, vals, N, &ci);
    assert_int_not_equal(ci.ts_encoding, TERN_CHUNK_TS_REGULAR);
    assert_true(len < N);

    /* Jitter around the grid with a constant value: the LINEAR predictor stores each offset
     * (0..10 after FOR) in 4 bits, where deltas would need 5. */
    regular_ts(ts, N, 1700000000000, 10000);
    for (size_t i = 0; i < N; i++) {
        ts[i] += (int64_t)(rnd() % 11) - 5;
        vals[i] = 7.25;
    }
    len = rt_f64(ts, vals, N, &ci);
    assert_int_equal(ci.ts_encoding, TERN_CHUNK_TS_INT);
    assert_true(len < N * 9 / 16);

    /* Constant series: a few bytes for the whole chunk. */
    regular_ts(ts, N, 1700000000000, 10000);
    for (size_t i = 0; i < N; i++)
        vals[i] = 42.5;
    len = rt_f64(ts, vals, N, &ci);
    assert_true(len < 32);
    int64_t iv[N];
    for (size_t i = 0; i < N; i++)
        iv[i] = 1000000 + (int64_t)i * 10; /* an uptime counter */
    assert_true(rt_i64(ts, iv, N, NULL) < 32);
}

static void test_timestamps(void **state)
{
    (void)state;
    enum { N = 1000 };
    static int64_t ts[N];
    static double vals[N];
    for (size_t i = 0; i < N; i++)
        vals[i] = (double)i;
    tern_chunk_info ci;
    /* Irregular random ascending, starting negative. */
    int64_t t = -5000000;
    for (size_t i = 0; i < N; i++) {
        t += 1 + (int64_t)(rnd() % 100000);
        ts[i] = t;
    }
    rt_f64(ts, vals, N, &ci);
    /* Huge gaps: the whole int64 range in a few points. */
    int64_t wide[] = { INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX };
    rt_f64(wide, vals, 7, &ci);
    int64_t two[] = { INT64_MIN, INT64_MAX };
    rt_f64(two, vals, 2, &ci);
    assert_int_equal(ci.ts_encoding, TERN_CHUNK_TS_REGULAR);
    int64_t last[] = { INT64_MAX };
    rt_f64(last, vals, 1, &ci);
    /* Regular with a negative start and a step of 1. */
    regular_ts(ts, N, -500, 1);
    rt_f64(ts, vals, N, &ci);
    assert_int_equal(ci.ts_encoding, TERN_CHUNK_TS_REGULAR);
    /* Every forced timestamp encoding round-trips irregular stamps. */
    t = -77;
    for (size_t i = 0; i < N; i++) {
        t += (i % 5 == 0) ? (int64_t)(rnd() % 10000000) + 1 : 10000 + (int64_t)(rnd() % 9) - 4;
        ts[i] = t;
    }
    rt_f64_with(ts, vals, N, TERN_CHUNK_TS_INT, 0, NULL);
    rt_f64_with(ts, vals, N, TERN_CHUNK_TS_GORILLA, 0, NULL);
    rt_f64_with(wide, vals, 7, TERN_CHUNK_TS_GORILLA, 0, NULL);
    rt_f64_with(wide, vals, 7, TERN_CHUNK_TS_INT, 0, NULL);
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(
        tern_chunk_encode_f64_with(&b, ts, vals, N, TERN_CHUNK_TS_REGULAR, 0), TERN_EINVAL);
    assert_int_equal(b.len, 0);
}

static void test_forced_encodings(void **state)
{
    (void)state;
    enum { N = 300 };
    int64_t ts[N];
    double vals[N];
    regular_ts(ts, N, 1600000000000, 15000);
    for (size_t i = 0; i < N; i++)
        vals[i] = (double)((int64_t)(rnd() % 20001) - 10000) / 100.0;
    static const unsigned tses[]
        = { TERN_CHUNK_TS_REGULAR, TERN_CHUNK_TS_INT, TERN_CHUNK_TS_GORILLA };
    static const unsigned vales[]
        = { TERN_CHUNK_VAL_DECIMAL, TERN_CHUNK_VAL_GORILLA, TERN_CHUNK_VAL_RAW };
    for (size_t a = 0; a < 3; a++)
        for (size_t v = 0; v < 3; v++)
            for (size_t n = 1; n <= N; n += 37)
                rt_f64_with(ts, vals, n, tses[a], vales[v], NULL);
    size_t raw = rt_f64_with(ts, vals, N, 0, TERN_CHUNK_VAL_RAW, NULL);
    size_t gor = rt_f64_with(ts, vals, N, 0, TERN_CHUNK_VAL_GORILLA, NULL);
    size_t dec = rt_f64_with(ts, vals, N, 0, TERN_CHUNK_VAL_DECIMAL, NULL);
    size_t aut = rt_f64(ts, vals, N, NULL);
    assert_true(dec < gor);
    assert_true(dec < raw / 3); /* ~16-bit deltas vs 64-bit raw */
    assert_true(aut == dec);
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(
        tern_chunk_encode_f64_with(&b, ts, vals, N, 0, TERN_CHUNK_VAL_INT), TERN_EINVAL);
    assert_int_equal(tern_chunk_encode_f64_with(&b, ts, vals, N, 9, 0), TERN_EINVAL);
    int64_t iv[N] = { 0 };
    assert_int_equal(
        tern_chunk_encode_i64_with(&b, ts, iv, N, 0, TERN_CHUNK_VAL_GORILLA), TERN_EINVAL);
    assert_int_equal(b.len, 0);
}

static void test_int64_extremes(void **state)
{
    (void)state;
    enum { N = 517 };
    int64_t ts[N], iv[N];
    regular_ts(ts, N, 0, 10);
    for (size_t i = 0; i < N; i++)
        iv[i] = (i % 2) ? INT64_MAX : INT64_MIN;
    rt_i64(ts, iv, N, NULL);
    for (size_t i = 0; i < N; i++)
        iv[i] = (int64_t)rnd();
    rt_i64(ts, iv, N, NULL);
    for (size_t i = 0; i < N; i++)
        iv[i] = (i % 3 == 0) ? INT64_MIN : (i % 3 == 1) ? 0 : INT64_MAX;
    rt_i64(ts, iv, N, NULL);
    for (size_t i = 0; i < N; i++)
        iv[i] = -(int64_t)i * 1000000007;
    size_t len = rt_i64(ts, iv, N, NULL);
    assert_true(len < 40); /* constant negative step */
    iv[0] = INT64_MIN;
    rt_i64(ts, iv, 1, NULL);
    /* Doubles with huge and negative deltas. */
    double dv[N];
    for (size_t i = 0; i < N; i++)
        dv[i] = (i % 2) ? 9.0e15 : -9.0e15 + (double)i;
    rt_f64(ts, dv, N, NULL);
    for (size_t i = 0; i < N; i++)
        dv[i] = (i % 2) ? DBL_MAX : -DBL_MAX;
    rt_f64(ts, dv, N, NULL);
}

static void test_max_points(void **state)
{
    (void)state;
    size_t n = TERN_CHUNK_MAX_POINTS;
    int64_t *ts = malloc(n * sizeof *ts);
    double *vals = malloc(n * sizeof *vals);
    int64_t *iv = malloc(n * sizeof *iv);
    assert_non_null(ts);
    assert_non_null(vals);
    assert_non_null(iv);
    regular_ts(ts, n, 1700000000000, 10000);
    int64_t m = 0;
    for (size_t i = 0; i < n; i++) {
        m += (int64_t)(rnd() % 201) - 100;
        vals[i] = (double)m / 100.0;
        iv[i] = m;
    }
    tern_chunk_info ci;
    rt_f64(ts, vals, n, &ci);
    assert_int_equal(ci.count, TERN_CHUNK_MAX_POINTS);
    rt_i64(ts, iv, n, NULL);
    int64_t t = INT64_MIN / 2;
    for (size_t i = 0; i < n; i++) {
        t += 1 + (int64_t)(rnd() % 1000);
        ts[i] = t;
    }
    rt_f64(ts, vals, n, NULL);
    /* One more point than the maximum is refused. */
    tern_buf b = TERN_BUF_INIT;
    int64_t *ts2 = malloc((n + 1) * sizeof *ts2);
    double *v2 = calloc(n + 1, sizeof *v2);
    assert_non_null(ts2);
    assert_non_null(v2);
    regular_ts(ts2, n + 1, 0, 1);
    assert_int_equal(tern_chunk_encode_f64(&b, ts2, v2, n + 1), TERN_EINVAL);
    assert_int_equal(b.len, 0);
    free(ts2);
    free(v2);
    free(ts);
    free(vals);
    free(iv);
}

static void test_invalid_arguments(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    int64_t ts[4] = { 1, 2, 2, 3 };
    double v[4] = { 0 };
    int64_t iv[4] = { 0 };
    assert_int_equal(tern_chunk_encode_f64(&b, ts, v, 0), TERN_EINVAL);
    assert_int_equal(tern_chunk_encode_f64(&b, ts, v, 4), TERN_EINVAL); /* duplicate */
    assert_int_equal(tern_chunk_encode_i64(&b, ts, iv, 4), TERN_EINVAL);
    int64_t desc[3] = { 5, 4, 3 };
    assert_int_equal(tern_chunk_encode_f64(&b, desc, v, 3), TERN_EINVAL);
    assert_int_equal(tern_chunk_encode_f64(&b, NULL, v, 3), TERN_EINVAL);
    assert_int_equal(tern_chunk_encode_f64(&b, desc, NULL, 1), TERN_EINVAL);
    assert_int_equal(b.len, 0);
    assert_int_equal(tern_chunk_encode_f64(&b, ts, v, 2), 0); /* the strictly ascending prefix */
    tern_chunk_info ci;
    assert_int_equal(tern_chunk_info_read(b.data, b.len, &ci), 0);
    assert_int_equal(ci.count, 2);
    tern_buf_free(&b);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    enum { N = 500 };
    int64_t ts[N];
    double vals[N];
    regular_ts(ts, N, 0, 10000);
    for (size_t i = 0; i < N; i++)
        vals[i] = (double)(i % 17) / 10.0;
    for (long k = 0; k < 4; k++) {
        tern_buf b = TERN_BUF_INIT;
        tern_alloc_fail_after(k);
        int rc = tern_chunk_encode_f64(&b, ts, vals, N);
        tern_alloc_fail_after(-1);
        if (rc == 0) {
            assert_true(b.len > 0);
        } else {
            assert_int_equal(rc, TERN_ENOMEM);
            assert_int_equal(b.len, 0);
        }
        tern_buf_free(&b);
    }
    tern_buf b = TERN_BUF_INIT;
    tern_alloc_fail_after(0);
    assert_int_equal(tern_chunk_encode_f64(&b, ts, vals, N), TERN_ENOMEM);
    tern_alloc_fail_after(-1);
    assert_int_equal(b.len, 0);
    tern_buf_free(&b);
}

/* Decoding any damaged chunk returns 0 (with sane output) or an error, never crashes. */
static void check_damaged(const uint8_t *data, size_t len, size_t cap)
{
    int64_t *ts = malloc((cap + 1) * sizeof *ts);
    double *v = malloc((cap + 1) * sizeof *v);
    assert_non_null(ts);
    assert_non_null(v);
    size_t got = 0;
    int rc = tern_chunk_decode_f64(data, len, ts, v, cap, &got);
    if (rc == 0) {
        assert_true(got >= 1 && got <= cap);
        for (size_t i = 1; i < got; i++)
            assert_true(ts[i] > ts[i - 1]);
    } else {
        assert_true(rc == TERN_ECORRUPT || rc == TERN_EPROTO || rc == TERN_EINVAL);
    }
    rc = tern_chunk_decode_i64(data, len, ts, (int64_t *)v, cap, &got);
    if (rc == 0)
        assert_true(got >= 1 && got <= cap);
    tern_chunk_info ci;
    rc = tern_chunk_info_read(data, len, &ci);
    if (rc == 0)
        assert_true(ci.count >= 1 && ci.min_ts <= ci.max_ts);
    free(ts);
    free(v);
}

static void corrupt_one(unsigned tse, unsigned vale, int irregular, int with_exc)
{
    enum { N = 200 };
    int64_t ts[N];
    double vals[N];
    regular_ts(ts, N, 1700000000000, 10000);
    if (irregular)
        for (size_t i = 0; i < N; i++)
            ts[i] += (int64_t)(rnd() % 7);
    for (size_t i = 0; i < N; i++)
        vals[i] = (double)((int64_t)(rnd() % 1000)) / 10.0;
    if (with_exc)
        vals[N / 2] = NAN;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_chunk_encode_f64_with(&b, ts, vals, N, tse, vale), 0);
    uint8_t *copy = malloc(b.len);
    assert_non_null(copy);
    /* Every strict prefix is an error. */
    for (size_t len = 0; len < b.len; len++) {
        memcpy(copy, b.data, len);
        size_t got;
        int64_t dts[N];
        double dv[N];
        int rc = tern_chunk_decode_f64(copy, len, dts, dv, N, &got);
        assert_int_equal(rc, TERN_ECORRUPT);
        check_damaged(copy, len, N);
    }
    /* Byte flips anywhere. */
    static const uint8_t masks[] = { 0x01, 0x80, 0xff, 0x10, 0x7f };
    for (size_t i = 0; i < b.len; i++) {
        for (size_t k = 0; k < sizeof masks; k++) {
            memcpy(copy, b.data, b.len);
            copy[i] ^= masks[k];
            check_damaged(copy, b.len, N);
            check_damaged(copy, b.len, N / 2);
        }
    }
    /* Trailing garbage is refused. */
    uint8_t *longer = malloc(b.len + 1);
    assert_non_null(longer);
    memcpy(longer, b.data, b.len);
    longer[b.len] = 0;
    size_t got;
    int64_t dts[N];
    double dv[N];
    assert_int_equal(tern_chunk_decode_f64(longer, b.len + 1, dts, dv, N, &got), TERN_ECORRUPT);
    /* An unknown version is a protocol error. */
    memcpy(copy, b.data, b.len);
    copy[0] = 2;
    tern_chunk_info ci;
    assert_int_equal(tern_chunk_info_read(copy, b.len, &ci), TERN_EPROTO);
    assert_int_equal(tern_chunk_decode_f64(copy, b.len, dts, dv, N, &got), TERN_EPROTO);
    free(longer);
    free(copy);
    tern_buf_free(&b);
}

static void test_corrupt_bytes(void **state)
{
    (void)state;
    corrupt_one(0, 0, 0, 0);
    corrupt_one(0, 0, 1, 1);
    corrupt_one(TERN_CHUNK_TS_GORILLA, TERN_CHUNK_VAL_GORILLA, 1, 0);
    corrupt_one(TERN_CHUNK_TS_INT, TERN_CHUNK_VAL_RAW, 1, 0);
    /* I64 chunks too. */
    enum { N = 100 };
    int64_t ts[N], iv[N];
    regular_ts(ts, N, -100000, 3);
    ts[50] += 1;
    for (size_t i = 0; i < N; i++)
        iv[i] = (int64_t)(rnd() % 5000) - 2500;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_chunk_encode_i64(&b, ts, iv, N), 0);
    for (size_t i = 0; i < b.len; i++) {
        for (unsigned mask = 1; mask < 256; mask <<= 1) {
            b.data[i] ^= (uint8_t)mask;
            check_damaged(b.data, b.len, N);
            b.data[i] ^= (uint8_t)mask;
        }
    }
    for (size_t len = 0; len < b.len; len++) {
        size_t got;
        int64_t dts[N], dv[N];
        assert_int_equal(tern_chunk_decode_i64(b.data, len, dts, dv, N, &got), TERN_ECORRUPT);
    }
    tern_buf_free(&b);
    /* Hand-made headers: a count beyond the maximum, a span that overflows, NULL. */
    static const uint8_t big_count[] = { 1, 1, 1, 3, 0xff, 0xff, 0x04, 0, 0 };
    /* count 2, min_ts INT64_MAX (zigzag 2^64 - 2), span 1 */
    static const uint8_t overflow[]
        = { 1, 1, 1, 3, 1, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x01 };
    tern_chunk_info ci;
    assert_int_equal(tern_chunk_info_read(big_count, sizeof big_count, &ci), TERN_ECORRUPT);
    assert_int_equal(tern_chunk_info_read(overflow, sizeof overflow, &ci), TERN_ECORRUPT);
    assert_int_equal(tern_chunk_info_read(NULL, 0, &ci), TERN_ECORRUPT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_floats),
        cmocka_unit_test(test_decimal_detection),
        cmocka_unit_test(test_encoding_choice_sensor),
        cmocka_unit_test(test_timestamps),
        cmocka_unit_test(test_forced_encodings),
        cmocka_unit_test(test_int64_extremes),
        cmocka_unit_test(test_max_points),
        cmocka_unit_test(test_invalid_arguments),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_corrupt_bytes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * fuzz_tsdb_chunk.c: the TSDB chunk codec (src/tsdb/codec.h) on arbitrary bytes.
 *
 * 1. The input as a chunk: every decoder must stay in bounds and return 0 or an error. A chunk
 *    that decodes is re-encoded (automatic encodings) and decoded again: the points must come
 *    back bit for bit, with strictly ascending timestamps, and agree with tern_chunk_info_read.
 * 2. The input as points: timestamps from accumulated 16-bit gaps, values from the raw bytes
 *    (any double / int64) and from small decimals built from them; each set is encoded as F64
 *    (by both encoders) and I64 and must decode bit for bit, within tern_chunk_bound.
 */
#include "base/buf.h"
#include "base/error.h"
#include "tsdb/codec.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_POINTS 4096u /* inputs are small; a chunk claiming more is refused by capacity */

static int64_t ts_a[MAX_POINTS], ts_b[MAX_POINTS];
static double fv_a[MAX_POINTS], fv_b[MAX_POINTS];
static int64_t iv_a[MAX_POINTS], iv_b[MAX_POINTS];

/* Both F64 encoders (thorough, and the head's quick one): bit for bit, within the bound. */
static void check_f64(const int64_t *ts, const double *vals, size_t n)
{
    for (int fast = 0; fast <= 1; fast++) {
        tern_buf b = TERN_BUF_INIT;
        int rc = fast ? tern_chunk_encode_f64_fast(&b, ts, vals, n)
                      : tern_chunk_encode_f64(&b, ts, vals, n);
        if (rc != 0 || b.len > tern_chunk_bound(n))
            abort();
        size_t got = 0;
        if (tern_chunk_decode_f64(b.data, b.len, ts_b, fv_b, MAX_POINTS, &got) != 0 || got != n)
            abort();
        if (memcmp(ts_b, ts, n * sizeof *ts) != 0 || memcmp(fv_b, vals, n * sizeof *vals) != 0)
            abort();
        tern_buf_free(&b);
    }
}

static void check_i64(const int64_t *ts, const int64_t *vals, size_t n)
{
    tern_buf b = TERN_BUF_INIT;
    if (tern_chunk_encode_i64(&b, ts, vals, n) != 0)
        abort();
    size_t got = 0;
    if (tern_chunk_decode_i64(b.data, b.len, ts_b, iv_b, MAX_POINTS, &got) != 0 || got != n)
        abort();
    if (memcmp(ts_b, ts, n * sizeof *ts) != 0 || memcmp(iv_b, vals, n * sizeof *vals) != 0)
        abort();
    tern_buf_free(&b);
}

static void check_ascending(const int64_t *ts, size_t n, const tern_chunk_info *ci)
{
    if (n != ci->count || ts[0] != ci->min_ts || ts[n - 1] != ci->max_ts)
        abort();
    for (size_t i = 1; i < n; i++)
        if (ts[i] <= ts[i - 1])
            abort();
}

static void as_chunk(const uint8_t *data, size_t size)
{
    tern_chunk_info ci;
    int info_rc = tern_chunk_info_read(data, size, &ci);
    size_t n = 0;
    int rc = tern_chunk_decode_f64(data, size, ts_a, fv_a, MAX_POINTS, &n);
    if (rc == 0) {
        if (info_rc != 0 || ci.kind != TERN_VALUE_F64)
            abort();
        check_ascending(ts_a, n, &ci);
        check_f64(ts_a, fv_a, n);
    } else if (rc != TERN_ECORRUPT && rc != TERN_EPROTO && rc != TERN_EINVAL) {
        abort();
    }
    rc = tern_chunk_decode_i64(data, size, ts_a, iv_a, MAX_POINTS, &n);
    if (rc == 0) {
        if (info_rc != 0 || ci.kind != TERN_VALUE_I64)
            abort();
        check_ascending(ts_a, n, &ci);
        check_i64(ts_a, iv_a, n);
    } else if (rc != TERN_ECORRUPT && rc != TERN_EPROTO && rc != TERN_EINVAL) {
        abort();
    }
}

static void as_points(const uint8_t *data, size_t size)
{
    size_t n = size / 10;
    if (n == 0)
        return;
    if (n > MAX_POINTS)
        n = MAX_POINTS;
    /* Start anywhere in the int64 range, gaps of 1..65536: ascending without overflow unless the
     * start is near the top, where the run is cut short. */
    uint64_t start = 0;
    memcpy(&start, data, size >= 8 ? 8 : size);
    int64_t t = (int64_t)(start >> 1) - (int64_t)(UINT64_C(1) << 61);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = data + i * 10;
        int64_t gap = 1 + (int64_t)(p[8] | (p[9] << 8));
        if (i > 0) {
            if (t > INT64_MAX - gap)
                break;
            t += gap;
        }
        ts_a[i] = t;
        uint64_t raw;
        memcpy(&raw, p, 8);
        memcpy(&fv_a[i], &raw, 8);
        iv_a[i] = (int64_t)raw;
        kept++;
    }
    check_f64(ts_a, fv_a, kept);
    check_i64(ts_a, iv_a, kept);
    /* Decimals: small mantissas with 0..3 places, so the decimal path is exercised. */
    for (size_t i = 0; i < kept; i++) {
        const uint8_t *p = data + i * 10;
        int16_t m = (int16_t)(p[0] | (p[1] << 8));
        static const double scale[4] = { 1, 10, 100, 1000 };
        fv_a[i] = (double)m / scale[p[2] & 3];
    }
    check_f64(ts_a, fv_a, kept);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    as_chunk(data, size);
    as_points(data, size);
    return 0;
}

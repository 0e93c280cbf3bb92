/*
 * warm.c: the warm tier's 1-minute windows: computing them from raw points, encoding a series'
 * windows as one warm chunk (docs/formats/tsdb-block.md, "Warm chunks"), decoding and merging.
 *
 * A window holds count, sum, min, max and last of the points whose timestamps fall in
 * [start, start + 1 min), and a mergeable quantile sketch of them (sketch.h, 1% relative
 * accuracy) so that p95 over any number of windows is one sketch merge away. The columns are
 * stored with the chunk codec (window starts on a regular grid cost nothing; the aggregates of
 * decimal telemetry are decimals), the sketches as length-prefixed bytes.
 */
#include "base/alloc.h"
#include "base/decsum.h"
#include "base/error.h"
#include "base/varint.h"
#include "tsdb/sketch.h"
#include "tsdb/tsdb_int.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <zstd.h>

#define WARM_VERSION 1u

/* ---- zstd contexts, one per thread ----
 * ZSTD_compress / ZSTD_decompress make and free a context per call: for warm chunks (a few
 * hundred bytes each, tens of thousands per block) that setup was most of the cost. Each thread
 * keeps one of each, freed when the thread exits. */

static pthread_key_t zkey_c, zkey_d;
static pthread_once_t zkeys_once = PTHREAD_ONCE_INIT;

static void free_cctx(void *p)
{
    ZSTD_freeCCtx(p);
}

static void free_dctx(void *p)
{
    ZSTD_freeDCtx(p);
}

static void zkeys_make(void)
{
    (void)pthread_key_create(&zkey_c, free_cctx);
    (void)pthread_key_create(&zkey_d, free_dctx);
}

/* The calling thread's compression context, or NULL when out of memory. */
static ZSTD_CCtx *thread_cctx(void)
{
    pthread_once(&zkeys_once, zkeys_make);
    ZSTD_CCtx *c = pthread_getspecific(zkey_c);
    if (!c && (c = ZSTD_createCCtx()) != NULL && pthread_setspecific(zkey_c, c) != 0) {
        ZSTD_freeCCtx(c);
        c = NULL;
    }
    return c;
}

static ZSTD_DCtx *thread_dctx(void)
{
    pthread_once(&zkeys_once, zkeys_make);
    ZSTD_DCtx *d = pthread_getspecific(zkey_d);
    if (!d && (d = ZSTD_createDCtx()) != NULL && pthread_setspecific(zkey_d, d) != 0) {
        ZSTD_freeDCtx(d);
        d = NULL;
    }
    return d;
}

void tsdb_windows_reset(tsdb_windows *ws)
{
    tern_buf_reset(&ws->w);
    tern_buf_reset(&ws->sk);
}

void tsdb_windows_free(tsdb_windows *ws)
{
    tern_buf_free(&ws->w);
    tern_buf_free(&ws->sk);
}

size_t tsdb_windows_count(const tsdb_windows *ws)
{
    return ws->w.len / sizeof(tsdb_window);
}

static double value_of(uint8_t kind, uint64_t bits)
{
    if (kind == TERN_VALUE_I64)
        return (double)(int64_t)bits;
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

static int64_t window_of(int64_t ts)
{
    int64_t r = ts % TSDB_WINDOW_MS;
    return r < 0 ? ts - r - TSDB_WINDOW_MS : ts - r;
}

bool tsdb_window_sketch_implied(const tsdb_window *w)
{
    if (w->min != w->min || w->max != w->max)
        return false; /* NaN: the sketch counts it apart */
    return w->count <= 2 || w->min == w->max;
}

int tsdb_window_sketch(const tsdb_window *w, const uint8_t *bytes, tern_sketch *out)
{
    if (w->sk_len)
        return tern_sketch_decode(out, bytes, w->sk_len);
    if (!tsdb_window_sketch_implied(w))
        return TERN_ECORRUPT;
    int rc = tern_sketch_init(out, TERN_SKETCH_DEFAULT_ACCURACY);
    if (rc)
        return rc;
    if (w->min == w->max)
        rc = tern_sketch_add_n(out, w->min, w->count);
    else if (w->count == 2) {
        rc = tern_sketch_add(out, w->min);
        if (rc == 0)
            rc = tern_sketch_add(out, w->max);
    } else {
        rc = tern_sketch_add(out, w->last);
    }
    if (rc)
        tern_sketch_free(out);
    return rc;
}

int tsdb_windows_from_points(const tsdb_point *p, size_t n, uint8_t kind, tsdb_windows *out)
{
    tern_sketch sk;
    int rc = tern_sketch_init(&sk, TERN_SKETCH_DEFAULT_ACCURACY);
    if (rc)
        return rc;
    for (size_t i = 0; i < n && rc == 0;) {
        tsdb_window w;
        memset(&w, 0, sizeof(w));
        w.start = window_of(p[i].ts);
        double v = value_of(kind, p[i].v);
        w.min = w.max = v;
        tern_sketch_reset(&sk);
        /* exact for decimals (base/decsum.h), as the stream's windows */
        tern_decsum sum;
        tern_decsum_init(&sum);
        for (; i < n && p[i].ts < w.start + TSDB_WINDOW_MS && rc == 0; i++) {
            v = value_of(kind, p[i].v);
            w.count++;
            tern_decsum_add(&sum, v);
            if (v < w.min || w.min != w.min)
                w.min = v;
            if (v > w.max || w.max != w.max)
                w.max = v;
            w.last = v;
            rc = tern_sketch_add(&sk, v);
        }
        w.sum = tern_decsum_value(&sum);
        w.sk_off = (uint32_t)out->sk.len;
        /* a window whose values its aggregates already give (all equal, or at most two: min
         * and max) stores no sketch: tsdb_window_sketch rebuilds it (parked devices' flat
         * signals are most windows) */
        if (rc == 0 && !tsdb_window_sketch_implied(&w))
            rc = tern_sketch_encode(&sk, &out->sk);
        w.sk_len = (uint32_t)(out->sk.len - w.sk_off);
        if (rc == 0)
            rc = tern_buf_append(&out->w, &w, sizeof(w));
    }
    tern_sketch_free(&sk);
    return rc;
}

static int warm_encode_body(const tsdb_windows *ws, tern_buf *out);

/* A warm chunk is a version byte, a flags byte (bit 0: the body is zstd-compressed, which it
 * is when that is smaller: sketches of neighbouring windows repeat their buckets) and the body:
 * n, the five columns, the sketches. */
int tsdb_warm_encode(const tsdb_windows *ws, tern_buf *out)
{
    tern_buf body = TERN_BUF_INIT;
    int rc = warm_encode_body(ws, &body);
    size_t bound = ZSTD_compressBound(body.len);
    size_t at = out->len;
    if (rc == 0)
        rc = tern_buf_reserve(out, 2 + TERN_VARINT_MAX_BYTES + bound);
    if (rc == 0) {
        out->data[at] = WARM_VERSION;
        uint8_t *dst = out->data + at + 2;
        size_t hl = tern_varint_encode(dst, body.len);
        ZSTD_CCtx *cc = thread_cctx();
        size_t z = cc ? ZSTD_compressCCtx(cc, dst + hl, bound, body.data, body.len, 3)
                      : ZSTD_compress(dst + hl, bound, body.data, body.len, 3);
        if (!ZSTD_isError(z) && hl + z < body.len) {
            out->data[at + 1] = 1;
            out->len = at + 2 + hl + z;
        } else {
            out->data[at + 1] = 0;
            memcpy(out->data + at + 2, body.data, body.len);
            out->len = at + 2 + body.len;
        }
    }
    tern_buf_free(&body);
    return rc;
}

static int warm_encode_body(const tsdb_windows *ws, tern_buf *out)
{
    size_t n = tsdb_windows_count(ws);
    const tsdb_window *w = (const tsdb_window *)(const void *)ws->w.data;
    if (n == 0 || n > TERN_CHUNK_MAX_POINTS)
        return TERN_EINVAL;
    int64_t *ts = tern_malloc(n * sizeof(*ts));
    int64_t *cnt = tern_malloc(n * sizeof(*cnt));
    double *col = tern_malloc(n * sizeof(*col));
    tern_buf chunk = TERN_BUF_INIT;
    int rc = ts && cnt && col ? 0 : TERN_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        ts[i] = w[i].start;
        cnt[i] = (int64_t)w[i].count;
    }
    if (rc == 0)
        rc = tern_varint_append_u64(out, n);
    if (rc == 0)
        rc = tern_chunk_encode_i64(&chunk, ts, cnt, n);
    if (rc == 0)
        rc = tern_varint_append_u64(out, chunk.len);
    if (rc == 0)
        rc = tern_buf_append(out, chunk.data, chunk.len);
    for (int c = 0; c < 4 && rc == 0; c++) {
        for (size_t i = 0; i < n; i++)
            col[i] = c == 0 ? w[i].sum : c == 1 ? w[i].min : c == 2 ? w[i].max : w[i].last;
        tern_buf_reset(&chunk);
        rc = tern_chunk_encode_f64(&chunk, ts, col, n);
        if (rc == 0)
            rc = tern_varint_append_u64(out, chunk.len);
        if (rc == 0)
            rc = tern_buf_append(out, chunk.data, chunk.len);
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        rc = tern_varint_append_u64(out, w[i].sk_len);
        if (rc == 0)
            rc = tern_buf_append(out, ws->sk.data + w[i].sk_off, w[i].sk_len);
    }
    tern_buf_free(&chunk);
    tern_free(ts);
    tern_free(cnt);
    tern_free(col);
    return rc;
}

/* Reads one length-prefixed codec chunk of n points from r into ts and vals (as bits). */
static int read_column(tern_reader *r, size_t n, int64_t *ts, void *vals, bool integer)
{
    uint64_t len;
    const uint8_t *p;
    if (tern_varint_read_u64(r, &len) || tern_reader_bytes(r, (size_t)len, &p))
        return TERN_ECORRUPT;
    size_t got = 0;
    int rc = integer ? tern_chunk_decode_i64(p, (size_t)len, ts, vals, n, &got)
                     : tern_chunk_decode_f64(p, (size_t)len, ts, vals, n, &got);
    if (rc == 0 && got != n)
        rc = TERN_ECORRUPT;
    return rc == TERN_EINVAL || rc == TERN_EPROTO ? TERN_ECORRUPT : rc;
}

static int warm_decode_body(
    const uint8_t *data, size_t len, int64_t lo, int64_t hi, tsdb_windows *out);

int tsdb_warm_decode(const uint8_t *data, size_t len, int64_t lo, int64_t hi, tsdb_windows *out)
{
    if (len < 2)
        return TERN_ECORRUPT;
    if (data[0] != WARM_VERSION)
        return TERN_EVERSION;
    if (data[1] > 1)
        return TERN_ECORRUPT;
    if (data[1] == 0)
        return warm_decode_body(data + 2, len - 2, lo, hi, out);
    uint64_t body_len;
    size_t hl;
    if (tern_varint_decode_u64(data + 2, len - 2, &body_len, &hl) != 0
        || body_len > 64u * TERN_CHUNK_MAX_POINTS * 8)
        return TERN_ECORRUPT;
    uint8_t *body = tern_malloc(body_len ? (size_t)body_len : 1);
    if (!body)
        return TERN_ENOMEM;
    ZSTD_DCtx *dc = thread_dctx();
    size_t got = dc ? ZSTD_decompressDCtx(dc, body, (size_t)body_len, data + 2 + hl, len - 2 - hl)
                    : ZSTD_decompress(body, (size_t)body_len, data + 2 + hl, len - 2 - hl);
    int rc = ZSTD_isError(got) || got != body_len
        ? TERN_ECORRUPT
        : warm_decode_body(body, (size_t)body_len, lo, hi, out);
    tern_free(body);
    return rc;
}

static int warm_decode_body(
    const uint8_t *data, size_t len, int64_t lo, int64_t hi, tsdb_windows *out)
{
    tern_reader r;
    tern_reader_init(&r, data, len);
    uint64_t n;
    if (tern_varint_read_u64(&r, &n))
        return TERN_ECORRUPT;
    if (n == 0 || n > TERN_CHUNK_MAX_POINTS)
        return TERN_ECORRUPT;
    int64_t *ts = tern_malloc((size_t)n * sizeof(*ts));
    int64_t *cnt = tern_malloc((size_t)n * sizeof(*cnt));
    double *cols = tern_malloc((size_t)n * 4 * sizeof(*cols));
    int rc = ts && cnt && cols ? 0 : TERN_ENOMEM;
    if (rc == 0)
        rc = read_column(&r, (size_t)n, ts, cnt, true);
    for (int c = 0; c < 4 && rc == 0; c++) {
        int64_t *ts2 = tern_malloc((size_t)n * sizeof(*ts2));
        rc = ts2 ? read_column(&r, (size_t)n, ts2, cols + (size_t)c * n, false) : TERN_ENOMEM;
        if (rc == 0 && memcmp(ts2, ts, (size_t)n * sizeof(*ts)) != 0)
            rc = TERN_ECORRUPT;
        tern_free(ts2);
    }
    for (size_t i = 0; i < n && rc == 0; i++)
        if (cnt[i] < 1 || (i > 0 && ts[i] <= ts[i - 1]))
            rc = TERN_ECORRUPT; /* windows are in start order and hold at least a point */
    for (size_t i = 0; i < n && rc == 0; i++) {
        uint64_t sl;
        const uint8_t *sp;
        if (tern_varint_read_u64(&r, &sl) || tern_reader_bytes(&r, (size_t)sl, &sp)) {
            rc = TERN_ECORRUPT;
            break;
        }
        if (ts[i] < lo || ts[i] >= hi)
            continue;
        tsdb_window w;
        w.start = ts[i];
        w.count = (uint64_t)cnt[i];
        w.sum = cols[i];
        w.min = cols[n + i];
        w.max = cols[2 * n + i];
        w.last = cols[3 * n + i];
        w.sk_off = (uint32_t)out->sk.len;
        w.sk_len = (uint32_t)sl;
        rc = tern_buf_append(&out->sk, sp, (size_t)sl);
        if (rc == 0)
            rc = tern_buf_append(&out->w, &w, sizeof(w));
    }
    tern_free(ts);
    tern_free(cnt);
    tern_free(cols);
    return rc;
}

int tsdb_windows_merge(tsdb_windows *a, const tsdb_windows *b)
{
    size_t na = tsdb_windows_count(a), nb = tsdb_windows_count(b);
    if (nb == 0)
        return 0;
    const tsdb_window *wa = (const tsdb_window *)(const void *)a->w.data;
    const tsdb_window *wb = (const tsdb_window *)(const void *)b->w.data;
    tsdb_windows m = { TERN_BUF_INIT, TERN_BUF_INIT };
    size_t i = 0, j = 0;
    int rc = 0;
    while (rc == 0 && (i < na || j < nb)) {
        const tsdb_window *take;
        const tern_buf *sk;
        if (j >= nb || (i < na && wa[i].start < wb[j].start)) {
            take = &wa[i++];
            sk = &a->sk;
        } else {
            if (i < na && wa[i].start == wb[j].start)
                i++; /* the same window again: the newer run wins */
            take = &wb[j++];
            sk = &b->sk;
        }
        tsdb_window w = *take;
        w.sk_off = (uint32_t)m.sk.len;
        rc = tern_buf_append(&m.sk, sk->data + take->sk_off, take->sk_len);
        if (rc == 0)
            rc = tern_buf_append(&m.w, &w, sizeof(w));
    }
    if (rc == 0) {
        tsdb_windows_free(a);
        *a = m;
    } else {
        tsdb_windows_free(&m);
    }
    return rc;
}

/*
 * test_window.c: the event-time window engine: closing at the watermark with exact aggregates,
 * out-of-order and late points, corrections, dedup and its capacity, idle partitions, the
 * minimum over partitions, callback failures, and a randomized run against a naive reference.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/error.h"
#include "stream/window.h"
#include "tsdb/sketch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- a recorder of everything the callbacks say ---- */

typedef struct rec_window {
    char device[32], metric[32];
    int64_t start, end;
    uint64_t count;
    double sum, min, max, last;
    int64_t last_ts;
    tern_sketch sk;
    int n_emits, n_corrections;
} rec_window;

typedef struct rec_point {
    char device[32], metric[32];
    int64_t ts;
    double v;
} rec_point;

typedef struct recorder {
    rec_window *w;
    size_t n_w, cap_w;
    rec_point *pts; /* on_point */
    size_t n_pts, cap_pts;
    size_t n_dup, n_late;
    int fail_windows; /* on_window fails this many more times */
} recorder;

static void name_copy(char *dst, const char *src, size_t len)
{
    assert_true(len < 32);
    memcpy(dst, src, len);
    dst[len] = 0;
}

static rec_window *rec_find(recorder *r, const char *dev, const char *met, int64_t start)
{
    for (size_t i = 0; i < r->n_w; i++)
        if (r->w[i].start == start && strcmp(r->w[i].device, dev) == 0
            && strcmp(r->w[i].metric, met) == 0)
            return &r->w[i];
    return NULL;
}

static int on_window(void *arg, const tern_window_result *w)
{
    recorder *r = arg;
    if (r->fail_windows > 0) {
        r->fail_windows--;
        return TERN_EIO;
    }
    char dev[32], met[32];
    name_copy(dev, w->device, w->device_len);
    name_copy(met, w->metric, w->metric_len);
    rec_window *x = rec_find(r, dev, met, w->start_ms);
    if (!x) {
        if (r->n_w == r->cap_w) {
            r->cap_w = r->cap_w ? r->cap_w * 2 : 64;
            r->w = realloc(r->w, r->cap_w * sizeof(*r->w));
            assert_non_null(r->w);
        }
        x = &r->w[r->n_w++];
        memset(x, 0, sizeof(*x));
        strcpy(x->device, dev);
        strcpy(x->metric, met);
        assert_int_equal(tern_sketch_init(&x->sk, TERN_SKETCH_DEFAULT_ACCURACY), 0);
    } else {
        assert_true(w->correction); /* a window is emitted once, then only corrected */
    }
    x->start = w->start_ms;
    x->end = w->end_ms;
    x->count = w->count;
    x->sum = w->sum;
    x->min = w->min;
    x->max = w->max;
    x->last = w->last;
    x->last_ts = w->last_ts_ms;
    tern_sketch_reset(&x->sk);
    assert_int_equal(tern_sketch_merge(&x->sk, w->sketch), 0);
    x->n_emits++;
    x->n_corrections += w->correction;
    return 0;
}

static int on_point(void *arg, const tern_window_point *p)
{
    recorder *r = arg;
    if (r->n_pts == r->cap_pts) {
        r->cap_pts = r->cap_pts ? r->cap_pts * 2 : 256;
        r->pts = realloc(r->pts, r->cap_pts * sizeof(*r->pts));
        assert_non_null(r->pts);
    }
    rec_point *x = &r->pts[r->n_pts++];
    name_copy(x->device, p->device, p->device_len);
    name_copy(x->metric, p->metric, p->metric_len);
    x->ts = p->ts_ms;
    x->v = p->value;
    return 0;
}

static int on_duplicate(void *arg, const tern_window_point *p)
{
    (void)p;
    ((recorder *)arg)->n_dup++;
    return 0;
}

static int on_late(void *arg, const tern_window_point *p)
{
    (void)p;
    ((recorder *)arg)->n_late++;
    return 0;
}

static void rec_free(recorder *r)
{
    for (size_t i = 0; i < r->n_w; i++)
        tern_sketch_free(&r->w[i].sk);
    free(r->w);
    free(r->pts);
    memset(r, 0, sizeof(*r));
}

static tern_window_engine *engine(const tern_window_config *c, recorder *r)
{
    tern_window_callbacks cb = { on_point, on_duplicate, on_late, on_window, r };
    tern_window_engine *e = NULL;
    assert_int_equal(tern_window_engine_new(c, &cb, &e), 0);
    return e;
}

static int add(tern_window_engine *e, uint32_t part, const char *dev, const char *met, int64_t ts,
    double v, int64_t now)
{
    return tern_window_add(e, part, dev, strlen(dev), met, strlen(met), ts, v, now);
}

/* ---- the naive reference: aggregates from scratch over a set of points ---- */

static int decimals(double v)
{
    static const double p10[10] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };
    for (int e = 0; e < 10; e++)
        if (nearbyint(v * p10[e]) / p10[e] == v)
            return e;
    return -1;
}

static int cmp_point_ts(const void *a, const void *b)
{
    const rec_point *x = a, *y = b;
    return (x->ts > y->ts) - (x->ts < y->ts);
}

/* Checks w against the points of its series and window among pts[0..n) (order ignored). */
static void check_against_scratch(const rec_window *w, const rec_point *pts, size_t n)
{
    rec_point *sel = calloc(n + 1, sizeof(*sel));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (pts[i].ts >= w->start && pts[i].ts < w->end && strcmp(pts[i].device, w->device) == 0
            && strcmp(pts[i].metric, w->metric) == 0)
            sel[k++] = pts[i];
    qsort(sel, k, sizeof(*sel), cmp_point_ts);
    assert_int_equal(w->count, k);
    int e = 0;
    for (size_t i = 0; i < k; i++) {
        int d = decimals(sel[i].v);
        assert_true(d >= 0);
        e = d > e ? d : e;
    }
    double m = 0, mn = INFINITY, mx = -INFINITY;
    tern_sketch sk;
    assert_int_equal(tern_sketch_init(&sk, TERN_SKETCH_DEFAULT_ACCURACY), 0);
    for (size_t i = 0; i < k; i++) {
        m += nearbyint(sel[i].v * pow(10, e));
        mn = fmin(mn, sel[i].v);
        mx = fmax(mx, sel[i].v);
        assert_int_equal(tern_sketch_add(&sk, sel[i].v), 0);
    }
    assert_true(w->sum == m / pow(10, e));
    assert_true(w->min == mn);
    assert_true(w->max == mx);
    assert_true(w->last == sel[k - 1].v);
    assert_int_equal(w->last_ts, sel[k - 1].ts);
    assert_true(tern_sketch_equal(&w->sk, &sk));
    tern_sketch_free(&sk);
    free(sel);
}

static tern_window_config config(uint32_t n_partitions)
{
    tern_window_config c;
    tern_window_config_default(&c);
    c.n_partitions = n_partitions;
    return c;
}

/* ---- tests ---- */

static void test_in_order_closes_at_watermark_exactly(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(1);
    tern_window_engine *e = engine(&c, &r);
    /* one point a second; values 0.01 .. 0.60 with 2 decimals (sum exact) */
    for (int64_t t = 0; t < 120000; t += 1000) {
        double v = (double)((t / 1000) % 60 + 1) / 100.0 + (double)(t / 60000) * 10;
        assert_int_equal(add(e, 0, "dev1", "soc", t, v, t), 0);
        /* watermark = t - 30 s: window [0, 60 s) closes when t reaches 90 s */
        assert_int_equal(r.n_w, t >= 90000 ? 1 : 0);
    }
    for (int64_t t = 120000; t < 150000; t += 1000)
        assert_int_equal(add(e, 0, "dev1", "soc", t, 20.5, t), 0);
    assert_int_equal(r.n_w, 1);
    rec_window *w = rec_find(&r, "dev1", "soc", 0);
    assert_non_null(w);
    assert_int_equal(w->end, 60000);
    assert_int_equal(w->count, 60);
    assert_true(w->sum == 18.3); /* (1 + .. + 60) / 100 */
    assert_true(w->min == 0.01);
    assert_true(w->max == 0.6);
    assert_true(w->last == 0.6);
    assert_int_equal(w->last_ts, 59000);
    double p95;
    assert_int_equal(tern_sketch_quantile(&w->sk, 0.95, &p95), 0);
    double exact = 0.57; /* element of rank floor(0.95 * 59) = 56: 0.57 */
    assert_true(fabs(p95 - exact) <= 0.01 * exact);
    assert_int_equal(add(e, 0, "dev1", "soc", 150000, 1, 150000), 0); /* wm 120 s */
    assert_int_equal(r.n_w, 2);
    w = rec_find(&r, "dev1", "soc", 60000);
    assert_non_null(w);
    check_against_scratch(w, r.pts, r.n_pts);
    assert_int_equal(w->n_corrections, 0);
    tern_window_stats st;
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, 120000);
    assert_int_equal(st.n_windows_emitted, 2);
    assert_int_equal(st.n_late + st.n_duplicates + st.n_corrections, 0);
    assert_int_equal(st.n_open_windows, 1);
    assert_int_equal(tern_window_flush(e), 0);
    assert_int_equal(r.n_w, 3);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_open_windows + st.n_closed_windows + st.n_series, 0);
    assert_int_equal(st.n_dedup_entries, 0);
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_out_of_order_within_lateness_joins_open_window(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(1);
    tern_window_engine *e = engine(&c, &r);
    assert_int_equal(add(e, 0, "d", "m", 10000, 1, 0), 0);
    assert_int_equal(add(e, 0, "d", "m", 80000, 2, 1), 0); /* wm 50 s */
    assert_int_equal(add(e, 0, "d", "m", 55000, 3, 2), 0); /* behind, window 0 still open */
    assert_int_equal(r.n_w, 0);
    assert_int_equal(add(e, 0, "d", "m", 95000, 4, 3), 0); /* wm 65 s: closes [0, 60 s) */
    rec_window *w = rec_find(&r, "d", "m", 0);
    assert_non_null(w);
    assert_int_equal(w->count, 2);
    assert_true(w->last == 3); /* by event time, not arrival */
    assert_int_equal(w->n_corrections, 0);
    tern_window_stats st;
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_out_of_order, 1);
    assert_int_equal(st.n_late, 0);
    assert_int_equal(r.n_late, 0);
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_late_point_corrects_emitted_window(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(1);
    tern_window_engine *e = engine(&c, &r);
    assert_int_equal(add(e, 0, "d", "m", 1000, 5.5, 0), 0);
    assert_int_equal(add(e, 0, "d", "m", 2000, 7.25, 0), 0);
    assert_int_equal(add(e, 0, "d", "m", 100000, 1, 0), 0); /* closes [0, 60 s) */
    rec_window *w = rec_find(&r, "d", "m", 0);
    assert_non_null(w);
    assert_int_equal(w->count, 2);
    /* late: into the emitted window, as the new max and the new last */
    assert_int_equal(add(e, 0, "d", "m", 59999, 99.9, 1), 0);
    assert_int_equal(r.n_late, 1);
    w = rec_find(&r, "d", "m", 0);
    assert_int_equal(w->n_emits, 2);
    assert_int_equal(w->n_corrections, 1);
    assert_int_equal(w->count, 3);
    assert_true(w->max == 99.9 && w->last == 99.9 && w->min == 5.5);
    check_against_scratch(w, r.pts, r.n_pts);
    /* late into a window this series never had: a new window, emitted as a correction */
    assert_int_equal(add(e, 0, "d", "m", -30000, 2, 2), 0);
    w = rec_find(&r, "d", "m", -60000);
    assert_non_null(w);
    assert_int_equal(w->n_corrections, 1);
    assert_int_equal(w->count, 1);
    /* beyond the retention (5 windows): late, uncorrected */
    assert_int_equal(add(e, 0, "d", "m", 500000, 1, 3), 0); /* closes up to 420 s, drops < 120 s */
    size_t n_w = r.n_w;
    assert_int_equal(add(e, 0, "d", "m", 3000, 1, 4), 0);
    assert_int_equal(r.n_w, n_w);
    assert_int_equal(rec_find(&r, "d", "m", 0)->n_emits, 2);
    tern_window_stats st;
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_late, 3);
    assert_int_equal(st.n_late_uncorrected, 1);
    assert_int_equal(st.n_corrections, 2);
    assert_int_equal(r.n_late, 3);
    assert_int_equal(st.n_accepted, r.n_pts); /* late points still reach on_point */
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_duplicates_dropped_and_counted(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(1);
    tern_window_engine *e = engine(&c, &r);
    assert_int_equal(add(e, 0, "d", "m", 1000, 1, 0), 0);
    assert_int_equal(add(e, 0, "d", "m", 1000, 2, 0), 0);   /* same key, other value: dropped */
    assert_int_equal(add(e, 0, "d", "n", 1000, 3, 0), 0);   /* other metric: kept */
    assert_int_equal(add(e, 0, "e", "m", 1000, 3, 0), 0);   /* other device: kept */
    assert_int_equal(add(e, 0, "d", "m", 100000, 1, 0), 0); /* closes [0, 60 s) */
    assert_int_equal(add(e, 0, "d", "m", 1000, 9, 0), 0);   /* dup of a closed, retained window */
    assert_int_equal(r.n_dup, 2);
    rec_window *w = rec_find(&r, "d", "m", 0);
    assert_int_equal(w->count, 1);
    assert_true(w->sum == 1);
    assert_int_equal(w->n_corrections, 0);
    tern_window_stats st;
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_duplicates, 2);
    assert_int_equal(st.n_accepted, 4);
    assert_int_equal(st.n_late, 0);
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_idle_partition_stops_holding_watermark(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(2);
    c.idle_timeout_ms = 10000;
    tern_window_engine *e = engine(&c, &r);
    assert_int_equal(add(e, 0, "a", "m", 1000, 1, 0), 0);
    assert_int_equal(add(e, 1, "b", "m", 1000, 1, 0), 0);
    /* partition 0 runs ahead; partition 1 is silent but not yet idle */
    for (int64_t t = 2000; t <= 300000; t += 1000)
        assert_int_equal(add(e, 0, "a", "m", t, 1, t / 100), 0);
    tern_window_stats st;
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, 1000 - 30000);
    assert_int_equal(r.n_w, 0);
    /* processing time passes the idle timeout of partition 1 (last data at 0 ms) */
    assert_int_equal(tern_window_tick(e, 9999), 0);
    assert_int_equal(r.n_w, 0);
    assert_int_equal(tern_window_tick(e, 10000), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_idle_partitions, 1);
    assert_int_equal(st.watermark_ms, 300000 - 30000);
    assert_non_null(rec_find(&r, "a", "m", 0));
    assert_non_null(rec_find(&r, "b", "m", 0));
    size_t n_w = r.n_w;
    /* partition 1 comes back, behind: it holds the watermark again (never moving it back) */
    assert_int_equal(add(e, 1, "b", "m", 280000, 1, 10001), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_idle_partitions, 0);
    assert_int_equal(st.watermark_ms, 270000);
    assert_int_equal(add(e, 0, "a", "m", 400000, 1, 10002), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, 270000); /* = min: partition 1's 280 s - 30 s = 250 s */
    assert_int_equal(r.n_w, n_w);
    assert_int_equal(add(e, 1, "b", "m", 390000, 1, 10003), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, 360000);
    assert_non_null(rec_find(&r, "a", "m", 300000));
    assert_null(rec_find(&r, "a", "m", 360000));
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_all_idle_closes_everything_seen(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(1);
    c.idle_timeout_ms = 5000;
    tern_window_engine *e = engine(&c, &r);
    assert_int_equal(add(e, 0, "a", "m", 61000, 1, 100), 0);
    assert_int_equal(add(e, 0, "a", "m", 62000, 2, 200), 0);
    assert_int_equal(tern_window_tick(e, 5199), 0);
    assert_int_equal(r.n_w, 0);
    assert_int_equal(tern_window_tick(e, 5200), 0);
    rec_window *w = rec_find(&r, "a", "m", 60000);
    assert_non_null(w);
    assert_int_equal(w->count, 2);
    /* data for that window after it closed is late and corrects it */
    assert_int_equal(add(e, 0, "a", "m", 63000, 3, 6000), 0);
    assert_int_equal(w->n_corrections, 1);
    assert_int_equal(w->count, 3);
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_watermark_is_min_over_partitions(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(3);
    c.idle_timeout_ms = 0; /* never idle */
    tern_window_engine *e = engine(&c, &r);
    tern_window_stats st;
    assert_int_equal(add(e, 0, "a", "m", 500000, 1, 0), 0);
    assert_int_equal(add(e, 1, "b", "m", 200000, 1, 0), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, INT64_MIN); /* partition 2 has not spoken */
    assert_int_equal(add(e, 2, "c", "m", 300000, 1, 1000000), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, 170000);
    assert_int_equal(add(e, 1, "b", "m", 400000, 1, 1000000), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, 270000);
    /* a point behind its own partition's watermark whose window is open is not late */
    assert_int_equal(add(e, 0, "a", "m", 300000, 1, 1000000), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_late, 0);
    assert_int_equal(add(e, 2, "c", "m", 600000, 1, 1000000), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.watermark_ms, 370000);
    assert_non_null(rec_find(&r, "b", "m", 180000));
    assert_non_null(rec_find(&r, "a", "m", 300000));
    assert_int_equal(add(e, 1, "b", "m", 250000, 1, 1000000), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_late, 1);
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_dedup_capacity_bounds_state(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(1);
    c.dedup_capacity = 64;
    tern_window_engine *e = engine(&c, &r);
    tern_window_stats st;
    for (int64_t t = 0; t < 600000; t += 1000) {
        assert_int_equal(add(e, 0, "d", "m", t, (double)(t % 7000) / 10, t), 0);
        assert_int_equal(add(e, 0, "d", "n", t, 1.5, t), 0);
        tern_window_get_stats(e, &st);
        assert_true(st.n_dedup_entries <= 64);
    }
    assert_true(st.n_dedup_evictions > 0);
    /* the aggregates stay exact through the folding */
    assert_int_equal(tern_window_flush(e), 0);
    for (size_t i = 0; i < r.n_w; i++)
        check_against_scratch(&r.w[i], r.pts, r.n_pts);
    assert_int_equal(r.n_w, 20);
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_failed_emission_is_retried(void **state)
{
    (void)state;
    recorder r = { 0 };
    tern_window_config c = config(1);
    tern_window_engine *e = engine(&c, &r);
    assert_int_equal(add(e, 0, "d", "m", 1000, 1, 0), 0);
    r.fail_windows = 1;
    assert_int_equal(add(e, 0, "d", "m", 100000, 1, 0), TERN_EIO);
    assert_int_equal(r.n_w, 0);
    assert_int_equal(tern_window_tick(e, 1), 0);
    assert_int_equal(r.n_w, 1);
    r.fail_windows = 1;
    assert_int_equal(add(e, 0, "d", "m", 2000, 2, 2), TERN_EIO); /* the correction failed */
    assert_int_equal(rec_find(&r, "d", "m", 0)->count, 1);
    assert_int_equal(tern_window_tick(e, 3), 0);
    assert_int_equal(rec_find(&r, "d", "m", 0)->count, 2);
    assert_int_equal(rec_find(&r, "d", "m", 0)->n_corrections, 1);
    tern_window_engine_free(e);
    rec_free(&r);
}

static void test_bad_input_rejected(void **state)
{
    (void)state;
    tern_window_config c = config(2);
    tern_window_engine *e = NULL;
    tern_window_config bad = c;
    bad.window_ms = 0;
    assert_int_equal(tern_window_engine_new(&bad, NULL, &e), TERN_EINVAL);
    bad = c;
    bad.n_partitions = 0;
    assert_int_equal(tern_window_engine_new(&bad, NULL, &e), TERN_EINVAL);
    bad = c;
    bad.allowed_lateness_ms = -1;
    assert_int_equal(tern_window_engine_new(&bad, NULL, &e), TERN_EINVAL);
    bad = c;
    bad.dedup_capacity = 0;
    assert_int_equal(tern_window_engine_new(&bad, NULL, &e), TERN_EINVAL);
    assert_null(e);
    assert_int_equal(tern_window_engine_new(&c, NULL, &e), 0);
    char big[TERN_WINDOW_MAX_NAME + 1];
    memset(big, 'x', sizeof(big));
    assert_int_equal(tern_window_add(e, 2, "d", 1, "m", 1, 0, 1, 0), TERN_EINVAL);
    assert_int_equal(tern_window_add(e, 0, "d", 0, "m", 1, 0, 1, 0), TERN_EINVAL);
    assert_int_equal(tern_window_add(e, 0, big, sizeof(big), "m", 1, 0, 1, 0), TERN_EINVAL);
    assert_int_equal(tern_window_add(e, 0, "d", 1, "m", 1, INT64_MAX, 1, 0), TERN_EINVAL);
    assert_int_equal(tern_window_add(e, 0, "d", 1, "m", 1, INT64_MIN, 1, 0), TERN_EINVAL);
    assert_int_equal(tern_window_add(e, 0, big, TERN_WINDOW_MAX_NAME, "m", 1, -1, NAN, 0), 0);
    tern_window_stats st;
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_points, 1);
    tern_window_engine_free(e);
}

/* Random arrivals: disorder within and beyond the lateness, duplicates, several partitions. */
static void test_randomized_against_reference(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 6; seed++) {
        srand(seed);
        recorder r = { 0 };
        tern_window_config c = config(3);
        c.window_ms = 10000;
        c.allowed_lateness_ms = 5000;
        c.idle_timeout_ms = 3000;
        c.retain_ms = 10000000; /* everything stays correctable */
        c.dedup_capacity = seed % 2 ? ((size_t)1 << 20) : 4096;
        tern_window_engine *e = engine(&c, &r);
        const char *devs[6] = { "d0", "d1", "d2", "d3", "d4", "d5" };
        const char *mets[3] = { "a", "b", "c" };
        int64_t now = 0, clock[6] = { 0 };
        typedef struct sent {
            int d, m;
            int64_t ts;
            double v;
        } sent;
        sent hist[64];
        for (int i = 0; i < 6000; i++) {
            int d = rand() % 6;
            int m = rand() % 3;
            clock[d] += rand() % 800;
            int64_t ts = clock[d];
            int k = rand() % 100;
            if (k < 10)
                ts -= rand() % 8000; /* within about the lateness */
            else if (k < 14)
                ts -= rand() % 60000; /* late */
            double v = (double)(rand() % 20001 - 10000) / 100.0;
            if (k >= 14 && k < 20 && i > 0) { /* a re-send of an earlier point */
                const sent *o = &hist[rand() % (i < 64 ? i : 64)];
                d = o->d;
                m = o->m;
                ts = o->ts;
                v = o->v;
            }
            hist[i % 64] = (sent) { d, m, ts, v };
            now += rand() % 50;
            if (d == 5 && (i / 1000) % 2 == 1)
                continue; /* device 5 (partition 2) goes quiet now and then */
            assert_int_equal(add(e, (uint32_t)d % 3, devs[d], mets[m], ts, v, now), 0);
            if (rand() % 50 == 0)
                assert_int_equal(tern_window_tick(e, now), 0);
        }
        assert_int_equal(tern_window_flush(e), 0);
        tern_window_stats st;
        tern_window_get_stats(e, &st);
        assert_int_equal(st.n_accepted, r.n_pts);
        assert_int_equal(st.n_duplicates, r.n_dup);
        assert_int_equal(st.n_late, r.n_late);
        assert_int_equal(st.n_late_uncorrected, 0);
        assert_true(st.n_late > 0);
        assert_true(st.n_duplicates > 0);
        assert_true(st.n_corrections > 0);
        /* exact dedup unless evicted: no (device, metric, ts) twice among accepted points */
        if (st.n_dedup_evictions == 0) {
            qsort(r.pts, r.n_pts, sizeof(*r.pts), cmp_point_ts);
            for (size_t i = 0; i < r.n_pts; i++)
                for (size_t j = i + 1; j < r.n_pts && r.pts[j].ts == r.pts[i].ts; j++)
                    assert_false(strcmp(r.pts[i].device, r.pts[j].device) == 0
                        && strcmp(r.pts[i].metric, r.pts[j].metric) == 0);
        } else {
            assert_true(seed % 2 == 0);
        }
        /* every window with points was emitted, and equals the from-scratch aggregate */
        size_t n_points_in_windows = 0;
        for (size_t i = 0; i < r.n_w; i++) {
            check_against_scratch(&r.w[i], r.pts, r.n_pts);
            n_points_in_windows += r.w[i].count;
        }
        assert_int_equal(n_points_in_windows, r.n_pts);
        tern_window_engine_free(e);
        rec_free(&r);
    }
}

/* State per open series in a realistic shape: 20 metrics a device, a sample every 10 s. */
static void test_state_bytes_per_series(void **state)
{
    (void)state;
    tern_window_config c = config(4);
    tern_window_engine *e = NULL;
    assert_int_equal(tern_window_engine_new(&c, NULL, &e), 0);
    char dev[16], met[16];
    const int n_dev = 500;
    for (int64_t t = 0; t < 600000; t += 10000) {
        for (int d = 0; d < n_dev; d++) {
            int dl = snprintf(dev, sizeof(dev), "ev-%06d", d);
            for (int m = 0; m < 20; m++) {
                int ml = snprintf(met, sizeof(met), "metric_%02d", m);
                double v = (double)((d * 31 + m * 7 + t / 10000) % 1000) / 10.0;
                assert_int_equal(tern_window_add(e, (uint32_t)d % 4, dev, (size_t)dl, met,
                                     (size_t)ml, t + d % 10, v, t),
                    0);
            }
        }
    }
    tern_window_stats st;
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_series, (uint64_t)n_dev * 20);
    double per_series = (double)st.state_bytes / (double)st.n_series;
    double per_window = (double)st.state_bytes / (double)(st.n_open_windows + st.n_closed_windows);
    print_message("state: %llu bytes, %llu series, %llu open + %llu retained windows, %llu points "
                  "held: %.0f bytes/series, %.0f bytes/window\n",
        (unsigned long long)st.state_bytes, (unsigned long long)st.n_series,
        (unsigned long long)st.n_open_windows, (unsigned long long)st.n_closed_windows,
        (unsigned long long)st.n_dedup_entries, per_series, per_window);
    assert_true(per_series < 2048);
    assert_int_equal(tern_window_flush(e), 0);
    tern_window_get_stats(e, &st);
    assert_int_equal(st.n_series, 0);
    tern_window_engine_free(e);
}

static void test_alloc_failures_leave_engine_usable(void **state)
{
    (void)state;
    for (long k = 0; k < 40; k++) {
        tern_window_config c = config(1);
        c.dedup_capacity = 8;
        tern_window_engine *e = NULL;
        assert_int_equal(tern_window_engine_new(&c, NULL, &e), 0);
        tern_alloc_fail_after(k);
        for (int64_t t = 0; t < 200000; t += 5000) {
            int rc = add(e, 0, "d", t % 10000 ? "m" : "n", t, 1.5, t);
            assert_true(rc == 0 || rc == TERN_ENOMEM);
        }
        tern_alloc_fail_after(-1);
        int rc = tern_window_flush(e);
        assert_true(rc == 0 || rc == TERN_ENOMEM);
        assert_int_equal(tern_window_flush(e), 0);
        tern_window_stats st;
        tern_window_get_stats(e, &st);
        assert_int_equal(st.n_series + st.n_open_windows + st.n_closed_windows, 0);
        assert_int_equal(st.n_dedup_entries, 0);
        tern_window_engine_free(e);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_in_order_closes_at_watermark_exactly),
        cmocka_unit_test(test_out_of_order_within_lateness_joins_open_window),
        cmocka_unit_test(test_late_point_corrects_emitted_window),
        cmocka_unit_test(test_duplicates_dropped_and_counted),
        cmocka_unit_test(test_idle_partition_stops_holding_watermark),
        cmocka_unit_test(test_all_idle_closes_everything_seen),
        cmocka_unit_test(test_watermark_is_min_over_partitions),
        cmocka_unit_test(test_dedup_capacity_bounds_state),
        cmocka_unit_test(test_failed_emission_is_retried),
        cmocka_unit_test(test_bad_input_rejected),
        cmocka_unit_test(test_randomized_against_reference),
        cmocka_unit_test(test_state_bytes_per_series),
        cmocka_unit_test(test_alloc_failures_leave_engine_usable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * query.c: answering queries. For each selected device: copy its head points and take a
 * snapshot of the blocks under one hold of the lock (so a concurrent cut can neither hide nor
 * double a point), then, without the lock, decode the blocks overlapping the range in sequence
 * order and merge (newer wins), head last. Points then go out raw, or into step buckets
 * (avg, min, max, sum, count, last, p95 computed exactly from the points), per series or per
 * (group value, metric) across series.
 */
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "tsdb/sketch.h"
#include "tsdb/tsdb_int.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BUCKETS (1u << 20)

static const char *const agg_names[] = { "avg", "min", "max", "sum", "count", "last", "p95" };
#define N_AGGS (sizeof(agg_names) / sizeof(agg_names[0]))

int tern_tsdb_agg_parse(const char *s, unsigned *mask, char *err, size_t err_cap)
{
    *mask = 0;
    const char *p = s;
    while (p && *p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        size_t i;
        for (i = 0; i < N_AGGS; i++)
            if (strlen(agg_names[i]) == l && memcmp(agg_names[i], p, l) == 0)
                break;
        if (i == N_AGGS) {
            if (err)
                snprintf(err, err_cap,
                    "unknown aggregate '%.*s' (one of avg, min, max, sum, count, last, p95)",
                    (int)l, p);
            return TERN_EINVAL;
        }
        *mask |= 1u << i;
        p = e ? e + 1 : NULL;
    }
    return 0;
}

const char *tern_tsdb_agg_name(unsigned one_bit)
{
    for (unsigned i = 0; i < N_AGGS; i++)
        if (one_bit == 1u << i)
            return agg_names[i];
    return "?";
}

/* ---- accumulators ---- */

typedef struct acc {
    uint64_t count;
    double sum, min, max, last;
    int64_t last_ts;
    double *vals; /* p95 only: raw values */
    size_t n_vals, cap_vals;
    tern_sketch *sk; /* p95 only, when warm windows fed the bucket: their merged sketches */
} acc;

static void acc_free(acc *a)
{
    tern_free(a->vals);
    if (a->sk) {
        tern_sketch_free(a->sk);
        tern_free(a->sk);
    }
    a->vals = NULL;
    a->sk = NULL;
}

/* acc_add_window folds a warm window (and, for p95, its sketch) into a. */
static int acc_add_window(acc *a, const tsdb_window *w, const uint8_t *sk, bool keep)
{
    if (w->count == 0)
        return 0;
    if (a->count == 0) {
        a->min = w->min;
        a->max = w->max;
        a->last_ts = INT64_MIN;
    }
    a->count += w->count;
    a->sum += w->sum;
    if (w->min < a->min || a->min != a->min)
        a->min = w->min;
    if (w->max > a->max || a->max != a->max)
        a->max = w->max;
    if (w->start >= a->last_ts) {
        a->last_ts = w->start;
        a->last = w->last;
    }
    if (!keep)
        return 0;
    tern_sketch one;
    int rc = tsdb_window_sketch(w, sk, &one);
    if (rc)
        return rc;
    if (!a->sk) {
        a->sk = tern_malloc(sizeof(*a->sk));
        if (!a->sk) {
            tern_sketch_free(&one);
            return TERN_ENOMEM;
        }
        *a->sk = one;
        return 0;
    }
    rc = tern_sketch_merge(a->sk, &one);
    tern_sketch_free(&one);
    return rc;
}

static int acc_add(acc *a, int64_t ts, double v, bool keep)
{
    if (a->count == 0) {
        a->min = a->max = v;
        a->last_ts = INT64_MIN;
    }
    a->count++;
    a->sum += v;
    if (v < a->min || isnan(a->min))
        a->min = v;
    if (v > a->max || isnan(a->max))
        a->max = v;
    if (ts >= a->last_ts) {
        a->last_ts = ts;
        a->last = v;
    }
    if (keep) {
        if (a->n_vals == a->cap_vals) {
            size_t cap = a->cap_vals ? a->cap_vals * 2 : 16;
            double *p = tern_realloc(a->vals, cap * sizeof(*p));
            if (!p)
                return TERN_ENOMEM;
            a->vals = p;
            a->cap_vals = cap;
        }
        a->vals[a->n_vals++] = v;
    }
    return 0;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* p95 by the nearest-rank method over the bucket's points. */
static double acc_p95(acc *a)
{
    if (a->sk) {
        /* windows fed this bucket: the raw values join their sketch (1% relative accuracy) */
        double q = NAN;
        for (size_t i = 0; i < a->n_vals; i++)
            if (tern_sketch_add(a->sk, a->vals[i]) != 0)
                return NAN;
        a->n_vals = 0;
        if (tern_sketch_quantile(a->sk, 0.95, &q) != 0)
            return NAN;
        return q;
    }
    if (a->n_vals == 0)
        return NAN;
    qsort(a->vals, a->n_vals, sizeof(double), dbl_cmp);
    size_t rank = (size_t)ceil(0.95 * (double)a->n_vals);
    if (rank == 0)
        rank = 1;
    return a->vals[rank - 1];
}

static void acc_fill(acc *a, unsigned aggs, tern_tsdb_row *row)
{
    size_t k = 0;
    row->count = a->count;
    for (unsigned i = 0; i < N_AGGS; i++) {
        if (!(aggs & (1u << i)))
            continue;
        double v = 0;
        switch (1u << i) {
        case TERN_AGG_AVG:
            v = a->sum / (double)a->count;
            break;
        case TERN_AGG_MIN:
            v = a->min;
            break;
        case TERN_AGG_MAX:
            v = a->max;
            break;
        case TERN_AGG_SUM:
            v = a->sum;
            break;
        case TERN_AGG_COUNT:
            v = (double)a->count;
            break;
        case TERN_AGG_LAST:
            v = a->last;
            break;
        case TERN_AGG_P95:
            v = acc_p95(a);
            break;
        default:
            break;
        }
        row->values[k++] = v;
    }
}

static void acc_reset(acc *a)
{
    double *vals = a->vals;
    size_t cap = a->cap_vals;
    if (a->sk) {
        tern_sketch_free(a->sk);
        tern_free(a->sk);
    }
    memset(a, 0, sizeof(*a));
    a->vals = vals;
    a->cap_vals = cap;
}

static double point_value(uint8_t kind, uint64_t bits)
{
    if (kind == TERN_VALUE_I64)
        return (double)(int64_t)bits;
    double d;
    memcpy(&d, &bits, sizeof(d));
    return d;
}

/* acc_add_run adds n time-ordered points that all fall in a's bucket: the common case of a
 * scan (one bucket per series), kept to a tight loop. Same results as n acc_add calls. */
static int acc_add_run(acc *a, const tsdb_point *p, size_t n, uint8_t kind, bool keep)
{
    if (n == 0)
        return 0;
    if (keep || a->count == 0) {
        int rc = acc_add(a, p[0].ts, point_value(kind, p[0].v), keep);
        for (size_t i = 1; rc == 0 && i < n && keep; i++)
            rc = acc_add(a, p[i].ts, point_value(kind, p[i].v), keep);
        if (keep || rc)
            return rc;
        p++;
        n--;
    }
    double sum = 0, mn = a->min, mx = a->max;
    if (kind == TERN_VALUE_I64) {
        for (size_t i = 0; i < n; i++) {
            double v = (double)(int64_t)p[i].v;
            sum += v;
            mn = v < mn || mn != mn ? v : mn;
            mx = v > mx || mx != mx ? v : mx;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            double v;
            memcpy(&v, &p[i].v, sizeof(v));
            sum += v;
            mn = v < mn || mn != mn ? v : mn;
            mx = v > mx || mx != mx ? v : mx;
        }
    }
    a->sum += sum;
    a->min = mn;
    a->max = mx;
    a->count += n;
    if (n && p[n - 1].ts >= a->last_ts) {
        a->last_ts = p[n - 1].ts;
        a->last = point_value(kind, p[n - 1].v);
    }
    return 0;
}

/* acc_merge folds b into a (b's values move to a). */
static int acc_merge(acc *a, acc *b)
{
    if (b->count == 0)
        return 0;
    if (a->count == 0) {
        acc_free(a);
        *a = *b;
        b->vals = NULL;
        b->n_vals = b->cap_vals = 0;
        b->sk = NULL;
        return 0;
    }
    if (b->sk) {
        if (!a->sk) {
            a->sk = b->sk;
            b->sk = NULL;
        } else {
            int rc = tern_sketch_merge(a->sk, b->sk);
            if (rc)
                return rc;
        }
    }
    a->count += b->count;
    a->sum += b->sum;
    if (b->min < a->min || a->min != a->min)
        a->min = b->min;
    if (b->max > a->max || a->max != a->max)
        a->max = b->max;
    if (b->last_ts >= a->last_ts) {
        a->last_ts = b->last_ts;
        a->last = b->last;
    }
    if (b->n_vals) {
        if (a->n_vals + b->n_vals > a->cap_vals) {
            double *p = tern_realloc(a->vals, (a->n_vals + b->n_vals) * sizeof(double));
            if (!p)
                return TERN_ENOMEM;
            a->vals = p;
            a->cap_vals = a->n_vals + b->n_vals;
        }
        memcpy(a->vals + a->n_vals, b->vals, b->n_vals * sizeof(double));
        a->n_vals += b->n_vals;
    }
    return 0;
}

/* ---- per-device gathering ---- */

typedef struct metric_pts {
    char *name; /* a NUL-terminated copy (block maps hold names without terminators) */
    size_t len, name_cap;
    uint8_t kind;
    tern_buf pts;     /* tsdb_point, merged from blocks */
    tern_buf head;    /* tsdb_point from the head, merged last */
    tsdb_windows win; /* warm windows, for the part of the range the warm tier answers */
} metric_pts;

/* One device's points, metric by metric. Entries and their buffers are kept from device to
 * device (reset, not freed), so a scan does not allocate per series. */
typedef struct dev_pts {
    metric_pts *m;
    size_t n, cap;
    tsdb_block **blocks; /* raw blocks, then (from n_blocks - n_warm) warm blocks */
    size_t n_blocks, cap_blocks, n_warm;
    tern_buf one, scratch;
    tsdb_windows w1;
    int64_t warm_end; /* [start, warm_end) from the warm tier, [warm_end, end) raw */
} dev_pts;

static bool metric_selected(const tern_tsdb_query *q, const char *name, size_t len)
{
    const char *m = q->sel.metric;
    if (!m || !*m || strcmp(m, "*") == 0)
        return true;
    return strlen(m) == len && memcmp(m, name, len) == 0;
}

static metric_pts *dev_metric(dev_pts *d, const char *name, size_t len, uint8_t kind)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->m[i].len == len && memcmp(d->m[i].name, name, len) == 0)
            return &d->m[i];
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 32;
        metric_pts *p = tern_realloc(d->m, cap * sizeof(*p));
        if (!p)
            return NULL;
        memset(p + d->cap, 0, (cap - d->cap) * sizeof(*p));
        d->m = p;
        d->cap = cap;
    }
    metric_pts *m = &d->m[d->n];
    tern_buf_reset(&m->pts);
    tern_buf_reset(&m->head);
    tsdb_windows_reset(&m->win);
    if (m->name_cap < len + 1) {
        char *p = tern_realloc(m->name, len + 1);
        if (!p)
            return NULL;
        m->name = p;
        m->name_cap = len + 1;
    }
    memcpy(m->name, name, len);
    m->name[len] = 0;
    m->len = len;
    m->kind = kind;
    d->n++;
    return m;
}

/* dev_pts_clear forgets the device (dropping its block references) but keeps the memory. */
static void dev_pts_clear(dev_pts *d)
{
    d->n = 0;
    for (size_t i = 0; i < d->n_blocks; i++)
        tsdb_block_unref(d->blocks[i]);
    d->n_blocks = 0;
    d->n_warm = 0;
}

static void dev_pts_free(dev_pts *d)
{
    dev_pts_clear(d);
    for (size_t i = 0; i < d->cap; i++) {
        tern_buf_free(&d->m[i].pts);
        tern_buf_free(&d->m[i].head);
        tsdb_windows_free(&d->m[i].win);
        tern_free(d->m[i].name);
    }
    tern_free(d->m);
    tern_free(d->blocks);
    tern_buf_free(&d->one);
    tern_buf_free(&d->scratch);
    tsdb_windows_free(&d->w1);
    memset(d, 0, sizeof(*d));
}

static int seq_cmp(const void *a, const void *b)
{
    const tsdb_block *x = *(tsdb_block *const *)a, *y = *(tsdb_block *const *)b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Where the raw part of q starts for the device: after the part the warm tier answers. */
static int64_t raw_start(const tern_tsdb_query *q, const dev_pts *d)
{
    return d->warm_end > q->start_ms ? d->warm_end : q->start_ms;
}

/* References the blocks of set overlapping the warm part of q (the caller made room). */
static void warm_refs(const tsdb_blockset *set, const tern_tsdb_query *q, dev_pts *d)
{
    for (size_t i = 0; i < set->n && d->warm_end > q->start_ms; i++) {
        tsdb_block *b = set->b[i];
        if (b->max_ts < q->start_ms || b->min_ts >= d->warm_end)
            continue;
        __atomic_add_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
        d->blocks[d->n_blocks++] = b;
        d->n_warm++;
    }
}

/* Under db->mu: copy the device's head points in the raw part of the range and reference the
 * overlapping raw blocks, then the warm blocks overlapping the warm part. */
static int gather_locked(
    tern_tsdb *db, const tsdb_device *dev, const tern_tsdb_query *q, dev_pts *d)
{
    int rc = 0;
    int64_t lo = raw_start(q, d);
    for (uint32_t i = 0; i < dev->n_series && rc == 0; i++) {
        const tsdb_series *s = db->series[dev->series[i]];
        const tsdb_metric *m = &db->metrics[s->metric];
        if (!metric_selected(q, m->name, m->len))
            continue;
        metric_pts *mp = dev_metric(d, m->name, m->len, s->kind);
        if (!mp)
            return TERN_ENOMEM;
        if (lo < q->end_ms)
            rc = tsdb_head_collect(s, lo, q->end_ms, &mp->head);
    }
    if (rc)
        return rc;
    const tsdb_blockset *sw = tsdb_swarm_blocks(db);
    size_t need = db->hot.n + db->warm.n + (sw ? sw->n : 0);
    if (d->cap_blocks < need) {
        tsdb_block **p = tern_realloc(d->blocks, need * sizeof(*p));
        if (!p)
            return TERN_ENOMEM;
        d->blocks = p;
        d->cap_blocks = need;
    }
    for (size_t i = 0; i < db->hot.n && lo < q->end_ms; i++) {
        tsdb_block *b = db->hot.b[i];
        if (b->max_ts < lo || b->min_ts >= q->end_ms)
            continue;
        __atomic_add_fetch(&b->refs, 1, __ATOMIC_ACQ_REL);
        d->blocks[d->n_blocks++] = b;
    }
    /* the warm blocks, then the stream's windows: sorted together by sequence (newest wins) */
    warm_refs(&db->warm, q, d);
    if (sw)
        warm_refs(sw, q, d);
    return 0;
}

static int gather_blocks(const char *dev_name, size_t dev_len, const tern_tsdb_query *q, dev_pts *d)
{
    size_t n_raw = d->n_blocks - d->n_warm;
    if (n_raw > 1)
        qsort(d->blocks, n_raw, sizeof(*d->blocks), seq_cmp);
    if (d->n_warm > 1)
        qsort(d->blocks + n_raw, d->n_warm, sizeof(*d->blocks), seq_cmp);
    int64_t lo = raw_start(q, d);
    int rc = 0;
    for (size_t i = 0; i < d->n_blocks && rc == 0; i++) {
        const tsdb_block *b = d->blocks[i];
        bool warm = i >= n_raw;
        int64_t blo = warm ? q->start_ms : lo, bhi = warm ? d->warm_end : q->end_ms;
        long idx = tsdb_block_find_device(b, dev_name, dev_len);
        if (idx < 0)
            continue;
        tsdb_block_dev bd;
        rc = tsdb_block_device(b, (uint32_t)idx, &bd);
        tsdb_block_series s;
        int got = 0;
        while (rc == 0 && (got = tsdb_block_next_series(b, &bd, &s)) == 1) {
            if (!metric_selected(q, s.metric, s.metric_len))
                continue;
            if (s.max_ts < blo || s.min_ts >= bhi || warm != (s.kind == TSDB_KIND_WARM))
                continue;
            metric_pts *mp = dev_metric(d, s.metric, s.metric_len, s.kind);
            if (!mp) {
                rc = TERN_ENOMEM;
                break;
            }
            if (warm) {
                tsdb_windows_reset(&d->w1);
                rc = tsdb_block_check(&s);
                if (rc == 0)
                    rc = tsdb_warm_decode(s.chunk, s.chunk_len, blo, bhi, &d->w1);
                if (rc == 0)
                    rc = tsdb_windows_merge(&mp->win, &d->w1);
                continue;
            }
            if (mp->pts.len == 0) {
                /* the first run of this series: decode in place, nothing to merge */
                rc = tsdb_block_decode(&s, blo, bhi, &mp->pts, &d->scratch);
                continue;
            }
            tern_buf_reset(&d->one);
            rc = tsdb_block_decode(&s, blo, bhi, &d->one, &d->scratch);
            if (rc == 0)
                rc = tsdb_merge_into(&mp->pts, (const tsdb_point *)(const void *)d->one.data,
                    d->one.len / sizeof(tsdb_point));
        }
        if (rc == 0 && got < 0)
            rc = got;
    }
    for (size_t i = 0; i < d->n && rc == 0; i++)
        rc = tsdb_merge_into(&d->m[i].pts, (const tsdb_point *)(const void *)d->m[i].head.data,
            d->m[i].head.len / sizeof(tsdb_point));
    return rc;
}

static int metric_pts_cmp(const void *a, const void *b)
{
    const metric_pts *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

/* ---- groups ---- */

typedef struct group {
    char *value;  /* the group-by tag value ("" when the device lacks the tag) */
    char *metric; /* metric name */
    acc *buckets;
} group;

typedef struct query_ctx {
    tern_tsdb *db;
    const tern_tsdb_query *q;
    tern_tsdb_row_fn fn;
    void *arg;
    uint64_t n_buckets;
    uint64_t rows;
    acc *series_acc;
    group *groups;
    size_t n_groups, cap_groups;
    char *err;
    size_t err_cap;
    int64_t warm_end;     /* [start, warm_end) is answered by the warm tier */
    int64_t rolled_until; /* of which windows recomputed from raw cover [start, rolled_until) */
} query_ctx;

static int emit(query_ctx *c, tern_tsdb_row *row)
{
    if (c->q->max_rows && ++c->rows > c->q->max_rows) {
        if (c->err)
            snprintf(c->err, c->err_cap,
                "the query returns more than %llu rows: narrow the range or aggregate with a step",
                (unsigned long long)c->q->max_rows);
        return TERN_ETOOBIG;
    }
    return c->fn(c->arg, row);
}

static group *find_group(
    query_ctx *c, const char *value, size_t vlen, const char *metric, size_t mlen)
{
    for (size_t i = 0; i < c->n_groups; i++) {
        group *g = &c->groups[i];
        if (strlen(g->value) == vlen && memcmp(g->value, value, vlen) == 0
            && strlen(g->metric) == mlen && memcmp(g->metric, metric, mlen) == 0)
            return g;
    }
    if (c->n_groups == c->cap_groups) {
        size_t cap = c->cap_groups ? c->cap_groups * 2 : 16;
        group *p = tern_realloc(c->groups, cap * sizeof(*p));
        if (!p)
            return NULL;
        c->groups = p;
        c->cap_groups = cap;
    }
    group *g = &c->groups[c->n_groups];
    g->value = tern_strndup(value, vlen);
    g->metric = tern_strndup(metric, mlen);
    g->buckets = tern_calloc(c->n_buckets, sizeof(acc));
    if (!g->value || !g->metric || !g->buckets) {
        tern_free(g->value);
        tern_free(g->metric);
        tern_free(g->buckets);
        return NULL;
    }
    c->n_groups++;
    return g;
}

static int group_cmp(const void *a, const void *b)
{
    const group *x = a, *y = b;
    int r = strcmp(x->value, y->value);
    return r ? r : strcmp(x->metric, y->metric);
}

static int64_t bucket_width(const tern_tsdb_query *q)
{
    return q->step_ms > 0 ? q->step_ms : q->end_ms - q->start_ms;
}

/* ---- the query ---- */

static int process_series(query_ctx *c, const tsdb_device *dev, const char *tags, metric_pts *m)
{
    const tern_tsdb_query *q = c->q;
    const tsdb_point *p = (const tsdb_point *)(const void *)m->pts.data;
    size_t n = m->pts.len / sizeof(tsdb_point);
    tern_tsdb_row row;
    memset(&row, 0, sizeof(row));
    row.device = dev->name;
    row.metric = m->name;
    row.tags = tags;
    if (q->aggs == 0) {
        row.kind = (tern_value_kind)m->kind;
        for (size_t i = 0; i < n; i++) {
            row.ts_ms = p[i].ts;
            if (m->kind == TERN_VALUE_I64)
                row.v.i = (int64_t)p[i].v;
            else
                memcpy(&row.v.f, &p[i].v, sizeof(double));
            int rc = emit(c, &row);
            if (rc)
                return rc;
        }
        return 0;
    }
    int64_t w = bucket_width(q);
    bool keep = (q->aggs & TERN_AGG_P95) != 0;
    acc *buckets;
    if (q->sel.group_by) {
        size_t vlen = 0;
        const char *val = "";
        if (strcmp(q->sel.group_by, "*") != 0) {
            val = tsdb_tag_value(tags, q->sel.group_by, &vlen);
            if (!val) {
                val = "";
                vlen = 0;
            }
        }
        group *g = find_group(c, val, vlen, m->name, m->len);
        if (!g)
            return TERN_ENOMEM;
        buckets = g->buckets;
    } else {
        buckets = c->series_acc;
        for (uint64_t i = 0; i < c->n_buckets; i++)
            acc_reset(&buckets[i]);
    }
    size_t nw = tsdb_windows_count(&m->win);
    const tsdb_window *win = (const tsdb_window *)(const void *)m->win.w.data;
    for (size_t i = 0; i < nw; i++) {
        uint64_t bi = (uint64_t)(win[i].start - q->start_ms) / (uint64_t)w;
        int rc = acc_add_window(&buckets[bi], &win[i], m->win.sk.data + win[i].sk_off, keep);
        if (rc)
            return rc;
    }
    uint64_t first = n ? (uint64_t)(p[0].ts - q->start_ms) / (uint64_t)w : 0;
    uint64_t last = n ? (uint64_t)(p[n - 1].ts - q->start_ms) / (uint64_t)w : 0;
    if (first == last) {
        int rc = acc_add_run(&buckets[first], p, n, m->kind, keep);
        if (rc)
            return rc;
    } else {
        for (size_t i = 0; i < n; i++) {
            uint64_t bi = (uint64_t)(p[i].ts - q->start_ms) / (uint64_t)w;
            int rc = acc_add(&buckets[bi], p[i].ts, point_value(m->kind, p[i].v), keep);
            if (rc)
                return rc;
        }
    }
    if (q->sel.group_by)
        return 0;
    for (uint64_t i = 0; i < c->n_buckets; i++) {
        if (buckets[i].count == 0)
            continue;
        row.ts_ms = q->start_ms + (int64_t)i * w;
        acc_fill(&buckets[i], q->aggs, &row);
        int rc = emit(c, &row);
        if (rc)
            return rc;
    }
    return 0;
}

/* Reads and processes devices ids[0..n), one at a time. */
static int scan_devices(tern_tsdb *db, query_ctx *c, const uint32_t *ids, uint32_t n, dev_pts *d)
{
    const tern_tsdb_query *q = c->q;
    char *tags = NULL;
    int rc = 0;
    for (uint32_t k = 0; k < n && rc == 0; k++) {
        pthread_mutex_lock(&db->mu);
        tsdb_device *dev = db->devices[ids[k]];
        /* Points that came late for a range already rolled up wait in the head until the next
         * cut recomputes its windows: a device holding such points is answered from raw. (The
         * stream's windows past the rolled-up part hold the head's points.) */
        int64_t rolled = c->rolled_until < c->warm_end ? c->rolled_until : c->warm_end;
        /* past the rolled-up part, the stream's windows: for the devices it writes */
        d->warm_end = dev->stream_windows ? c->warm_end : rolled;
        if (d->warm_end < q->start_ms)
            d->warm_end = q->start_ms;
        for (uint32_t i = 0; i < dev->n_series && d->warm_end > q->start_ms; i++)
            if (tsdb_head_min_ts(db->series[dev->series[i]]) < rolled)
                d->warm_end = q->start_ms;
        tern_free(tags);
        tags = dev->tags ? tern_strdup(dev->tags) : NULL;
        rc = dev->tags && !tags ? TERN_ENOMEM : gather_locked(db, dev, q, d);
        pthread_mutex_unlock(&db->mu);
        /* device records are never freed while the store is open: dev stays valid */
        if (rc == 0)
            rc = gather_blocks(dev->name, dev->name_len, q, d);
        if (rc == 0 && d->n > 1)
            qsort(d->m, d->n, sizeof(*d->m), metric_pts_cmp);
        for (size_t i = 0; i < d->n && rc == 0; i++)
            if (d->m[i].pts.len || d->m[i].win.w.len)
                rc = process_series(c, dev, tags, &d->m[i]);
        dev_pts_clear(d);
    }
    tern_free(tags);
    return rc;
}

typedef struct scan_part {
    query_ctx c;
    const uint32_t *ids;
    uint32_t n_ids;
    int rc;
} scan_part;

static void *scan_thread(void *arg)
{
    scan_part *p = arg;
    pthread_setname_np(pthread_self(), "tern-tsdb-scan"); /* top -H, bench CPU per stage */
    dev_pts d;
    memset(&d, 0, sizeof(d));
    p->rc = scan_devices(p->c.db, &p->c, p->ids, p->n_ids, &d);
    dev_pts_free(&d);
    return NULL;
}

int64_t tsdb_warm_covered_locked(const tern_tsdb *db)
{
    int64_t until = db->head_start == INT64_MIN ? INT64_MAX : db->head_start;
    for (size_t i = 0; i < db->n_rollups; i++)
        if (db->rollups[i].lo < until)
            until = db->rollups[i].lo;
    if (db->warm.n == 0)
        until = INT64_MIN;
    return until;
}

/*
 * Where the warm tier's windows are complete: everything cut into raw blocks and rolled up
 * (*rolled), then on through the stream's windows when they join it (they start no later).
 */
static int64_t warm_covered_until(tern_tsdb *db, int64_t *rolled)
{
    pthread_mutex_lock(&db->mu);
    int64_t until = tsdb_warm_covered_locked(db);
    /* nothing cut yet: the head holds everything from head_start on (older points are
     * backfill, which sends their device to raw) */
    if (until == INT64_MIN && db->hot.n == 0)
        until = db->head_start;
    *rolled = until;
    int64_t from, s_until;
    tsdb_swarm_range(db, &from, &s_until);
    if (until != INT64_MIN && s_until != INT64_MIN && s_until > until && from <= until)
        until = s_until;
    else if (db->warm.n == 0)
        until = *rolled = INT64_MIN; /* as before: no warm tier at all */
    pthread_mutex_unlock(&db->mu);
    return until;
}

/* Decides which part of q the warm tier answers (see tern_tsdb_tier). */
static int choose_tier(tern_tsdb *db, tern_tsdb_query *q, query_ctx *c, char *err, size_t err_cap)
{
    c->warm_end = c->rolled_until = q->start_ms;
    q->tier_used = TERN_TIER_HOT;
    if (q->aggs == 0 || q->tier == TERN_TIER_HOT) {
        if (q->aggs == 0 && q->tier == TERN_TIER_WARM) {
            if (err)
                snprintf(err, err_cap, "the warm tier holds aggregates: give agg=...");
            return TERN_EINVAL;
        }
        return 0;
    }
    int64_t w = bucket_width(q);
    bool aligned = q->start_ms % TSDB_WINDOW_MS == 0 && w % TSDB_WINDOW_MS == 0;
    if (q->tier == TERN_TIER_WARM && !aligned) {
        if (err)
            snprintf(err, err_cap,
                "the warm tier answers whole minutes: start and step (or the range) must be "
                "multiples of 1 minute");
        return TERN_EINVAL;
    }
    int64_t now = tern_clock_now_ms();
    /* p95 from raw points is exact, from windows within 1%: auto keeps it exact while the
     * raw points are there */
    bool raw_gone = db->opt.retention_ms > 0 && q->start_ms < now - db->opt.retention_ms;
    bool worth = q->tier == TERN_TIER_WARM || raw_gone
        || (w >= 10 * TSDB_WINDOW_MS && !(q->aggs & TERN_AGG_P95));
    if (!aligned || !worth)
        return 0;
    int64_t until = warm_covered_until(db, &c->rolled_until);
    if (until > q->end_ms)
        until = q->end_ms;
    if (until != INT64_MIN) {
        int64_t r = until % TSDB_WINDOW_MS;
        until -= r < 0 ? r + TSDB_WINDOW_MS : r;
    }
    if (until > q->start_ms) {
        c->warm_end = until;
        q->tier_used = until >= q->end_ms ? TERN_TIER_WARM : TERN_TIER_AUTO;
    }
    return 0;
}

int tern_tsdb_query_run(
    tern_tsdb *db, tern_tsdb_query *q, tern_tsdb_row_fn fn, void *arg, char *err, size_t err_cap)
{
    if (err && err_cap)
        err[0] = 0;
    if (q->end_ms <= q->start_ms) {
        if (err)
            snprintf(err, err_cap, "the range is empty: end must be after start");
        return TERN_EINVAL;
    }
    if (q->aggs == 0 && q->sel.group_by) {
        if (err)
            snprintf(err, err_cap, "group_by needs an aggregate (agg=avg, ...)");
        return TERN_EINVAL;
    }
    int64_t span_check;
    if (q->aggs && __builtin_sub_overflow(q->end_ms, q->start_ms, &span_check)) {
        if (err)
            snprintf(err, err_cap, "the range is too wide to aggregate");
        return TERN_EINVAL;
    }
    if (q->step_ms < 0) {
        if (err)
            snprintf(err, err_cap, "step must be positive");
        return TERN_EINVAL;
    }
    query_ctx c;
    memset(&c, 0, sizeof(c));
    c.db = db;
    c.q = q;
    c.fn = fn;
    c.arg = arg;
    c.err = err;
    c.err_cap = err_cap;
    int trc = choose_tier(db, q, &c, err, err_cap);
    if (trc)
        return trc;
    if (q->aggs) {
        uint64_t span = (uint64_t)q->end_ms - (uint64_t)q->start_ms;
        uint64_t w = (uint64_t)bucket_width(q);
        c.n_buckets = span / w + (span % w != 0);
        if (c.n_buckets > MAX_BUCKETS) {
            if (err)
                snprintf(err, err_cap, "too many steps (%llu > %u): use a larger step",
                    (unsigned long long)c.n_buckets, MAX_BUCKETS);
            return TERN_EINVAL;
        }
        if (!q->sel.group_by) {
            c.series_acc = tern_calloc(c.n_buckets, sizeof(acc));
            if (!c.series_acc)
                return TERN_ENOMEM;
        }
    }
    /* the devices, in name order */
    pthread_mutex_lock(&db->mu);
    uint32_t *ids = NULL;
    uint32_t n_ids = 0;
    int rc = 0;
    if (q->sel.device) {
        tsdb_device *d;
        rc = tsdb_device_get(db, q->sel.device, strlen(q->sel.device), false, &d);
        if (rc == 0) {
            ids = tern_malloc(sizeof(*ids));
            if (ids)
                ids[n_ids++] = d->id;
            else
                rc = TERN_ENOMEM;
        } else if (rc == TERN_ENOTFOUND) {
            rc = 0; /* an unknown device has no points */
        }
    } else {
        ids = tern_malloc((db->n_devices ? db->n_devices : 1) * sizeof(*ids));
        if (!ids)
            rc = TERN_ENOMEM;
        for (uint32_t i = 0; rc == 0 && i < db->n_devices; i++)
            if (db->devices[i] && tsdb_tags_match(db->devices[i]->tags, q->sel.tags))
                ids[n_ids++] = i;
        if (rc == 0)
            qsort_r(ids, n_ids, sizeof(*ids), tsdb_device_name_cmp, db);
    }
    pthread_mutex_unlock(&db->mu);

    if (rc == 0) {
        /* A grouped query over many devices runs on two threads (the machine's cores), each
         * folding half of the devices into its own groups, merged at the end. */
        bool parallel = q->sel.group_by && n_ids >= 64;
        scan_part part = { .c = c, .ids = ids + n_ids / 2, .n_ids = n_ids - n_ids / 2 };
        part.c.groups = NULL;
        part.c.n_groups = part.c.cap_groups = 0;
        pthread_t th;
        if (parallel && pthread_create(&th, NULL, scan_thread, &part) != 0)
            parallel = false;
        dev_pts d;
        memset(&d, 0, sizeof(d));
        rc = scan_devices(db, &c, ids, parallel ? n_ids / 2 : n_ids, &d);
        dev_pts_free(&d);
        if (parallel) {
            pthread_join(th, NULL);
            if (rc == 0)
                rc = part.rc;
            for (size_t g = 0; g < part.c.n_groups; g++) {
                group *pg = &part.c.groups[g];
                group *mg = rc == 0
                    ? find_group(&c, pg->value, strlen(pg->value), pg->metric, strlen(pg->metric))
                    : NULL;
                if (rc == 0 && !mg)
                    rc = TERN_ENOMEM;
                for (uint64_t i = 0; i < c.n_buckets; i++) {
                    if (rc == 0)
                        rc = acc_merge(&mg->buckets[i], &pg->buckets[i]);
                    acc_free(&pg->buckets[i]);
                }
                tern_free(pg->buckets);
                tern_free(pg->value);
                tern_free(pg->metric);
            }
            tern_free(part.c.groups);
        }
    }
    tern_free(ids);
    if (rc == 0 && q->sel.group_by) {
        qsort(c.groups, c.n_groups, sizeof(*c.groups), group_cmp);
        int64_t w = bucket_width(q);
        for (size_t g = 0; g < c.n_groups && rc == 0; g++) {
            for (uint64_t i = 0; i < c.n_buckets && rc == 0; i++) {
                acc *a = &c.groups[g].buckets[i];
                if (a->count == 0)
                    continue;
                tern_tsdb_row row;
                memset(&row, 0, sizeof(row));
                row.group = c.groups[g].value;
                row.metric = c.groups[g].metric;
                row.ts_ms = q->start_ms + (int64_t)i * w;
                acc_fill(a, q->aggs, &row);
                rc = emit(&c, &row);
            }
        }
    }
    for (size_t g = 0; g < c.n_groups; g++) {
        for (uint64_t i = 0; i < c.n_buckets; i++)
            acc_free(&c.groups[g].buckets[i]);
        tern_free(c.groups[g].buckets);
        tern_free(c.groups[g].value);
        tern_free(c.groups[g].metric);
    }
    tern_free(c.groups);
    if (c.series_acc)
        for (uint64_t i = 0; i < c.n_buckets; i++)
            acc_free(&c.series_acc[i]);
    tern_free(c.series_acc);
    if (rc && rc != TERN_ETOOBIG && err && !err[0])
        snprintf(err, err_cap, "query failed: %s", tern_strerror(rc));
    return rc;
}

int tern_tsdb_last(tern_tsdb *db, const char *device, tern_tsdb_row_fn fn, void *arg)
{
    tern_tsdb_query q;
    memset(&q, 0, sizeof(q));
    q.sel.device = device;
    q.start_ms = INT64_MIN;
    q.end_ms = INT64_MAX;
    pthread_mutex_lock(&db->mu);
    tsdb_device *dev;
    int rc = tsdb_device_get(db, device, strlen(device), false, &dev);
    if (rc) {
        pthread_mutex_unlock(&db->mu);
        return rc;
    }
    dev_pts d;
    memset(&d, 0, sizeof(d));
    /* the head's newest point of each series */
    for (uint32_t i = 0; i < dev->n_series && rc == 0; i++) {
        const tsdb_series *s = db->series[dev->series[i]];
        tsdb_point p;
        if (!tsdb_head_last(s, &p)) /* read under the series' stripe: writers change it */
            continue;
        const tsdb_metric *m = &db->metrics[s->metric];
        metric_pts *mp = dev_metric(&d, m->name, m->len, s->kind);
        rc = mp ? tern_buf_append(&mp->head, &p, sizeof(p)) : TERN_ENOMEM;
    }
    if (rc == 0) {
        d.blocks = tern_malloc((db->hot.n ? db->hot.n : 1) * sizeof(*d.blocks));
        d.cap_blocks = db->hot.n;
        if (!d.blocks)
            rc = TERN_ENOMEM;
        for (size_t i = 0; rc == 0 && i < db->hot.n; i++) {
            __atomic_add_fetch(&db->hot.b[i]->refs, 1, __ATOMIC_ACQ_REL);
            d.blocks[d.n_blocks++] = db->hot.b[i];
        }
    }
    pthread_mutex_unlock(&db->mu);
    /* blocks: the newest point of each series, newer sequence winning on equal timestamps */
    tern_buf one = TERN_BUF_INIT;
    size_t dev_len = strlen(device);
    qsort(d.blocks, d.n_blocks, sizeof(*d.blocks), seq_cmp);
    for (size_t i = 0; i < d.n_blocks && rc == 0; i++) {
        long idx = tsdb_block_find_device(d.blocks[i], device, dev_len);
        if (idx < 0)
            continue;
        tsdb_block_dev bd;
        rc = tsdb_block_device(d.blocks[i], (uint32_t)idx, &bd);
        tsdb_block_series s;
        int got = 0;
        while (rc == 0 && (got = tsdb_block_next_series(d.blocks[i], &bd, &s)) == 1) {
            metric_pts *mp = dev_metric(&d, s.metric, s.metric_len, s.kind);
            if (!mp) {
                rc = TERN_ENOMEM;
                break;
            }
            const tsdb_point *cur = (const tsdb_point *)(const void *)mp->pts.data;
            if (mp->pts.len && cur->ts > s.max_ts)
                continue;
            tern_buf_reset(&one);
            rc = tsdb_block_decode(&s, s.max_ts, INT64_MAX, &one, &d.scratch);
            if (rc == 0 && one.len) {
                tern_buf_reset(&mp->pts);
                rc = tern_buf_append(
                    &mp->pts, one.data + one.len - sizeof(tsdb_point), sizeof(tsdb_point));
            }
        }
        if (rc == 0 && got < 0)
            rc = got;
    }
    tern_buf_free(&one);
    if (rc == 0)
        qsort(d.m, d.n, sizeof(*d.m), metric_pts_cmp);
    for (size_t i = 0; i < d.n && rc == 0; i++) {
        metric_pts *m = &d.m[i];
        const tsdb_point *best = NULL;
        if (m->pts.len)
            best = (const tsdb_point *)(const void *)m->pts.data;
        if (m->head.len) {
            const tsdb_point *h = (const tsdb_point *)(const void *)m->head.data;
            if (!best || h->ts >= best->ts)
                best = h;
        }
        if (!best)
            continue;
        tern_tsdb_row row;
        memset(&row, 0, sizeof(row));
        row.device = device;
        row.metric = m->name;
        row.ts_ms = best->ts;
        row.kind = (tern_value_kind)m->kind;
        if (m->kind == TERN_VALUE_I64)
            row.v.i = (int64_t)best->v;
        else
            memcpy(&row.v.f, &best->v, sizeof(double));
        rc = fn(arg, &row);
    }
    dev_pts_free(&d);
    return rc;
}

int tsdb_rollup(tern_tsdb *db, int64_t lo, int64_t hi, uint64_t src_seq)
{
    tern_tsdb_query q;
    memset(&q, 0, sizeof(q));
    q.start_ms = lo;
    q.end_ms = hi;
    pthread_mutex_lock(&db->mu);
    uint32_t n_ids = 0;
    uint32_t *ids = tern_malloc((db->n_devices ? db->n_devices : 1) * sizeof(*ids));
    for (uint32_t i = 0; ids && i < db->n_devices; i++)
        if (db->devices[i])
            ids[n_ids++] = i;
    if (ids)
        qsort_r(ids, n_ids, sizeof(*ids), tsdb_device_name_cmp, db);
    pthread_mutex_unlock(&db->mu);
    if (!ids)
        return TERN_ENOMEM;
    tsdb_block_writer *w;
    int rc = tsdb_block_writer_open(db, "warm", lo, hi - 1, src_seq, &w);
    dev_pts d;
    memset(&d, 0, sizeof(d));
    d.warm_end = lo; /* everything raw */
    tsdb_windows ws = { TERN_BUF_INIT, TERN_BUF_INIT };
    tern_buf enc = TERN_BUF_INIT;
    size_t written = 0;
    for (uint32_t k = 0; k < n_ids && rc == 0; k++) {
        pthread_mutex_lock(&db->mu);
        tsdb_device *dev = db->devices[ids[k]];
        char *tags = dev->tags ? tern_strdup(dev->tags) : NULL;
        rc = dev->tags && !tags ? TERN_ENOMEM : gather_locked(db, dev, &q, &d);
        pthread_mutex_unlock(&db->mu);
        if (rc == 0)
            rc = gather_blocks(dev->name, dev->name_len, &q, &d);
        if (rc == 0 && d.n > 1)
            qsort(d.m, d.n, sizeof(*d.m), metric_pts_cmp);
        bool device_open = false;
        for (size_t i = 0; i < d.n && rc == 0; i++) {
            metric_pts *m = &d.m[i];
            size_t n = m->pts.len / sizeof(tsdb_point);
            if (n == 0)
                continue;
            tsdb_windows_reset(&ws);
            rc = tsdb_windows_from_points(
                (const tsdb_point *)(const void *)m->pts.data, n, m->kind, &ws);
            size_t nw = tsdb_windows_count(&ws);
            const tsdb_window *win = (const tsdb_window *)(const void *)ws.w.data;
            tern_buf_reset(&enc);
            if (rc == 0)
                rc = tsdb_warm_encode(&ws, &enc);
            if (rc == 0 && !device_open) {
                rc = tsdb_block_writer_device(w, dev->name, dev->name_len, tags);
                device_open = true;
            }
            if (rc == 0)
                rc = tsdb_block_writer_chunk(w, m->name, m->len, TSDB_KIND_WARM, enc.data, enc.len,
                    (uint32_t)nw, win[0].start, win[nw - 1].start);
            written++;
        }
        tern_free(tags);
        dev_pts_clear(&d);
    }
    dev_pts_free(&d);
    tsdb_windows_free(&ws);
    tern_buf_free(&enc);
    tern_free(ids);
    if (rc || written == 0) {
        if (w)
            tsdb_block_writer_abort(w);
        return rc;
    }
    tsdb_block *b;
    rc = tsdb_block_writer_finish(w, &b);
    if (rc == 0) {
        pthread_mutex_lock(&db->mu);
        rc = tsdb_blockset_add(db, &db->warm, b);
        pthread_mutex_unlock(&db->mu);
        if (rc)
            tsdb_block_unref(b);
    }
    return rc;
}

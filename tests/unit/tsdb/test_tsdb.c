/*
 * test_tsdb.c: the TSDB engine against a naive reference model. Random writes (out of order,
 * duplicates, backfill far behind the head, both value kinds), interleaved with maintenance,
 * flushes, compactions and reopenings (WAL replay), then every series' raw range and its
 * aggregates must equal what the model computes from the same writes. Plus the contract cases:
 * kind conflicts, the series limits (store-wide and per tenant), last values, tags and grouping,
 * bad queries, corrupt blocks.
 */
#include "base/error.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_test_dir.h"

#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define HOUR (3600 * 1000LL)
#define T0 (1767225600000LL) /* 2026-01-01 */

static tern_tsdb *open_db(const char *dir, uint64_t max_series)
{
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = dir;
    o.wal_fsync = false;
    o.retention_ms = 0;
    o.max_series = max_series;
    tern_tsdb *db = NULL;
    char err[256];
    int rc = tern_tsdb_open(&o, &db, err, sizeof err);
    if (rc)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return db;
}

/* ---- the reference model ---- */

#define N_DEV 6
#define N_MET 4
#define MAX_PTS 4096

typedef struct model_series {
    int64_t ts[MAX_PTS];
    uint64_t v[MAX_PTS];
    size_t n;
    int kind; /* 0 unset, else tern_value_kind */
} model_series;

static model_series model[N_DEV][N_MET];

static void model_put(int d, int m, int64_t ts, uint64_t v)
{
    model_series *s = &model[d][m];
    for (size_t i = 0; i < s->n; i++)
        if (s->ts[i] == ts) {
            s->v[i] = v;
            return;
        }
    assert_true(s->n < MAX_PTS);
    s->ts[s->n] = ts;
    s->v[s->n] = v;
    s->n++;
}

static void model_sort(model_series *s)
{
    for (size_t i = 1; i < s->n; i++)
        for (size_t j = i; j > 0 && s->ts[j - 1] > s->ts[j]; j--) {
            int64_t t = s->ts[j];
            s->ts[j] = s->ts[j - 1];
            s->ts[j - 1] = t;
            uint64_t v = s->v[j];
            s->v[j] = s->v[j - 1];
            s->v[j - 1] = v;
        }
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static const char *dev_name(int d)
{
    static char names[N_DEV][16];
    snprintf(names[d], sizeof names[d], "dev%03d", d);
    return names[d];
}

static const char *met_name(int m)
{
    static const char *names[N_MET] = { "soc", "speed", "odo", "temp" };
    return names[m];
}

/* metric 2 (odo) is an integer series, the others float */
static int met_kind(int m)
{
    return m == 2 ? TERN_VALUE_I64 : TERN_VALUE_F64;
}

typedef struct collect {
    int64_t ts[MAX_PTS];
    uint64_t v[MAX_PTS];
    double agg[MAX_PTS][8];
    uint64_t count[MAX_PTS];
    size_t n;
    char last_metric[64];
    char group[64][32];
} collect;

static int collect_row(void *arg, const tern_tsdb_row *row)
{
    collect *c = arg;
    assert_true(c->n < MAX_PTS);
    c->ts[c->n] = row->ts_ms;
    if (row->kind == TERN_VALUE_I64)
        c->v[c->n] = (uint64_t)row->v.i;
    else
        memcpy(&c->v[c->n], &row->v.f, 8);
    memcpy(c->agg[c->n], row->values, sizeof(row->values));
    c->count[c->n] = row->count;
    if (row->group && c->n < 64)
        snprintf(c->group[c->n], sizeof c->group[0], "%s", row->group);
    snprintf(c->last_metric, sizeof c->last_metric, "%s", row->metric);
    c->n++;
    return 0;
}

static collect got;

static void check_series(tern_tsdb *db, int d, int m)
{
    model_series *s = &model[d][m];
    model_sort(s);
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    q.sel.device = dev_name(d);
    q.sel.metric = met_name(m);
    q.start_ms = T0 - 100 * HOUR;
    q.end_ms = T0 + 100 * HOUR;
    got.n = 0;
    char err[256];
    assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
    assert_int_equal(got.n, s->n);
    for (size_t i = 0; i < s->n; i++) {
        assert_int_equal(got.ts[i], s->ts[i]);
        assert_int_equal(got.v[i], s->v[i]);
    }
    if (s->n == 0)
        return;
    /* aggregates over 1-hour steps, against the model, from each tier */
    for (int tier = TERN_TIER_AUTO; tier <= TERN_TIER_WARM; tier++) {
        q.aggs = TERN_AGG_COUNT | TERN_AGG_SUM | TERN_AGG_MIN | TERN_AGG_MAX | TERN_AGG_LAST;
        q.step_ms = HOUR;
        q.tier = (tern_tsdb_tier)tier;
        got.n = 0;
        assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
        size_t row = 0;
        for (size_t i = 0; i < s->n;) {
            int64_t b = q.start_ms + (s->ts[i] - q.start_ms) / HOUR * HOUR;
            double sum = 0, abs_sum = 0, mn = INFINITY, mx = -INFINITY, last = 0;
            uint64_t cnt = 0;
            for (; i < s->n && s->ts[i] < b + HOUR; i++) {
                double v = met_kind(m) == TERN_VALUE_I64 ? (double)(int64_t)s->v[i] : 0;
                if (met_kind(m) == TERN_VALUE_F64)
                    memcpy(&v, &s->v[i], 8);
                sum += v;
                abs_sum += fabs(v);
                mn = v < mn ? v : mn;
                mx = v > mx ? v : mx;
                last = v;
                cnt++;
            }
            assert_true(row < got.n);
            assert_int_equal(got.ts[row], b);
            /* values[] in bit order: min, max, sum, count, last; sums may add in another order */
            assert_true(got.agg[row][0] == mn);
            assert_true(got.agg[row][1] == mx);
            assert_true(
                got.agg[row][2] == sum || fabs(got.agg[row][2] - sum) <= 1e-12 * abs_sum + 1e-9);
            assert_true(got.agg[row][3] == (double)cnt);
            assert_true(got.agg[row][4] == last);
            row++;
        }
        assert_int_equal(row, got.n);
    }
    q.tier = TERN_TIER_AUTO;
}

static void write_random(tern_tsdb *db, int n_points, int64_t head_ts)
{
    tern_tsdb_batch *b;
    assert_int_equal(tern_tsdb_batch_new(&b), 0);
    for (int i = 0; i < n_points; i++) {
        int d = (int)(rnd() % N_DEV), m = (int)(rnd() % N_MET);
        int64_t ts;
        uint64_t r = rnd() % 100;
        if (r < 70)
            ts = head_ts - (int64_t)(rnd() % 60) * 1000; /* near the head, a bit out of order */
        else if (r < 85)
            ts = head_ts - (int64_t)(rnd() % (6 * HOUR)); /* late */
        else if (r < 95)
            ts = T0 + (int64_t)(rnd() % (48 * HOUR)) - 24 * HOUR; /* backfill anywhere */
        else
            ts = model[d][m].n ? model[d][m].ts[rnd() % model[d][m].n] : head_ts; /* duplicate */
        ts -= ts % 1000;
        char tags[64];
        snprintf(tags, sizeof tags, "region=r%d,fleet=f%d", d % 2, d % 3);
        assert_int_equal(
            tern_tsdb_batch_device(b, dev_name(d), strlen(dev_name(d)), tags, strlen(tags)), 0);
        uint64_t bits;
        if (met_kind(m) == TERN_VALUE_I64) {
            int64_t v = (int64_t)(rnd() % 2000000) - 1000000;
            if (rnd() % 50 == 0)
                v = rnd() % 2 ? INT64_MAX : INT64_MIN;
            assert_int_equal(
                tern_tsdb_batch_add_i64(b, met_name(m), strlen(met_name(m)), ts, v), 0);
            bits = (uint64_t)v;
        } else {
            double v = (double)(int64_t)(rnd() % 20001 - 10000) / 10.0;
            uint64_t k = rnd() % 100;
            if (k == 0)
                v = -0.0;
            else if (k == 1)
                v = INFINITY;
            else if (k == 2)
                v = 1e-310; /* subnormal */
            else if (k == 3)
                v = 0.1 + 0.2;
            assert_int_equal(
                tern_tsdb_batch_add_f64(b, met_name(m), strlen(met_name(m)), ts, v), 0);
            memcpy(&bits, &v, 8);
        }
        model_put(d, m, ts, bits);
        if (i % 50 == 49 || i == n_points - 1) {
            tern_tsdb_write_result res;
            uint64_t seq;
            assert_int_equal(tern_tsdb_write(db, b, &seq, &res), 0);
            assert_int_equal(res.refused, 0);
            assert_int_equal(tern_tsdb_wait(db, seq), 0);
            tern_tsdb_batch_reset(b);
        }
    }
    tern_tsdb_batch_free(b);
}

static void check_all(tern_tsdb *db)
{
    for (int d = 0; d < N_DEV; d++)
        for (int m = 0; m < N_MET; m++)
            check_series(db, d, m);
}

static void test_random_against_model(void **state)
{
    (void)state;
    memset(model, 0, sizeof model);
    char *dir = tsdb_test_tmpdir("tsdbtest");
    assert_non_null(dir);
    tern_tsdb *db = open_db(dir, 0);
    int64_t head = T0;
    for (int round = 0; round < 12; round++) {
        if (getenv("TSDB_TEST_VERBOSE"))
            fprintf(stderr, "round %d\n", round);
        write_random(db, 300, head);
        head += HOUR / 2 + (int64_t)(rnd() % HOUR);
        check_all(db);
        switch (round % 4) {
        case 0:
            assert_int_equal(tern_tsdb_maintain(db, head), 0);
            break;
        case 1: /* crash-like reopen: no flush, the WAL is replayed */
            assert_int_equal(tern_tsdb_close(db, false), 0);
            db = open_db(dir, 0);
            break;
        case 2:
            assert_int_equal(tern_tsdb_flush(db), 0);
            break;
        case 3:
            assert_int_equal(tern_tsdb_maintain(db, head), 0);
            assert_int_equal(tern_tsdb_compact(db), 0);
            break;
        }
        check_all(db);
    }
    tern_tsdb_stats st;
    tern_tsdb_get_stats(db, &st);
    assert_true(st.blocks > 0);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    db = open_db(dir, 0);
    check_all(db);
    assert_int_equal(tern_tsdb_compact(db), 0);
    check_all(db);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

/* One point of dev/metric, the device carrying tags; returns tern_tsdb_write's code. */
static int write_point(tern_tsdb *db, const char *dev, const char *tags, const char *metric,
    int64_t ts, double v, bool integer, tern_tsdb_write_result *res)
{
    tern_tsdb_batch *b;
    assert_int_equal(tern_tsdb_batch_new(&b), 0);
    assert_int_equal(tern_tsdb_batch_device(b, dev, strlen(dev), tags, strlen(tags)), 0);
    if (integer)
        assert_int_equal(tern_tsdb_batch_add_i64(b, metric, strlen(metric), ts, (int64_t)v), 0);
    else
        assert_int_equal(tern_tsdb_batch_add_f64(b, metric, strlen(metric), ts, v), 0);
    int rc = tern_tsdb_write(db, b, NULL, res);
    tern_tsdb_batch_free(b);
    return rc;
}

static int write_one(tern_tsdb *db, const char *dev, const char *metric, int64_t ts, double v,
    bool integer, tern_tsdb_write_result *res)
{
    return write_point(db, dev, "region=eu", metric, ts, v, integer, res);
}

static void test_conflicts_and_limits(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbtest");
    tern_tsdb *db = open_db(dir, 3);
    tern_tsdb_write_result res;
    assert_int_equal(write_one(db, "a", "x", T0, 1.5, false, &res), 0);
    assert_int_equal(res.accepted, 1);
    /* an integer point into a float series is refused with a clear reason */
    assert_int_equal(write_one(db, "a", "x", T0 + 1000, 2, true, &res), 0);
    assert_int_equal(res.refused, 1);
    assert_int_equal(res.first_error, TERN_EINVAL);
    assert_non_null(strstr(res.err, "type conflict"));
    assert_int_equal(write_one(db, "a", "y", T0, 1, false, &res), 0);
    assert_int_equal(write_one(db, "b", "y", T0, 1, false, &res), 0);
    assert_int_equal(res.accepted, 1);
    /* the fourth series is beyond the limit of 3 */
    assert_int_equal(write_one(db, "c", "y", T0, 1, false, &res), 0);
    assert_int_equal(res.refused, 1);
    assert_int_equal(res.first_error, TERN_EQUOTA);
    assert_non_null(strstr(res.err, "series limit"));
    /* existing series still take points */
    assert_int_equal(write_one(db, "b", "y", T0 + 10000, 2, false, &res), 0);
    assert_int_equal(res.accepted, 1);
    tern_tsdb_stats st;
    tern_tsdb_get_stats(db, &st);
    assert_int_equal(st.series, 3);
    assert_int_equal(st.series_refused, 1);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

static tern_tsdb *open_db_tenants(const char *dir, uint64_t per_tenant)
{
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = dir;
    o.wal_fsync = false;
    o.retention_ms = 0;
    o.max_series_per_tenant = per_tenant;
    o.tenant_tag = "fleet";
    tern_tsdb *db = NULL;
    char err[256];
    assert_int_equal(tern_tsdb_open(&o, &db, err, sizeof err), 0);
    return db;
}

/* One point of dev/metric with the given tags; returns the write's result. */
/* One point (1.5) of dev/metric with the given tags; returns the write's result. */
static tern_tsdb_write_result write_tagged(
    tern_tsdb *db, const char *dev, const char *tags, const char *metric, int64_t ts)
{
    tern_tsdb_write_result res;
    assert_int_equal(write_point(db, dev, tags, metric, ts, 1.5, false, &res), 0);
    return res;
}

static void test_series_limit_per_tenant(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbtenant");
    tern_tsdb *db = open_db_tenants(dir, 3);
    /* fleet acme: three series over two devices, the fourth refused with the tenant named */
    assert_int_equal(write_tagged(db, "a1", "fleet=acme,region=eu", "x", T0).accepted, 1);
    assert_int_equal(write_tagged(db, "a1", "fleet=acme,region=eu", "y", T0).accepted, 1);
    assert_int_equal(write_tagged(db, "a2", "fleet=acme", "x", T0).accepted, 1);
    tern_tsdb_write_result res = write_tagged(db, "a2", "fleet=acme", "y", T0);
    assert_int_equal(res.refused, 1);
    assert_int_equal(res.first_error, TERN_EQUOTA);
    assert_non_null(strstr(res.err, "tenant fleet=acme"));
    /* existing series still take points; another fleet and untagged devices have their own */
    assert_int_equal(write_tagged(db, "a1", "fleet=acme,region=eu", "x", T0 + 1000).accepted, 1);
    for (int m = 0; m < 3; m++) {
        char metric[16];
        snprintf(metric, sizeof metric, "m%d", m);
        assert_int_equal(write_tagged(db, "b1", "fleet=bolt", metric, T0).accepted, 1);
        assert_int_equal(write_tagged(db, "u1", "region=us", metric, T0).accepted, 1);
    }
    res = write_tagged(db, "u2", "region=us", "m0", T0);
    assert_int_equal(res.refused, 1);
    assert_non_null(strstr(res.err, "tenant fleet="));
    tern_tsdb_stats st;
    tern_tsdb_get_stats(db, &st);
    assert_int_equal(st.series, 9);
    assert_int_equal(st.series_refused, 2);
    /* after a restart (WAL replay) the counts are the same: acme is still full */
    assert_int_equal(tern_tsdb_close(db, false), 0);
    db = open_db_tenants(dir, 3);
    assert_int_equal(write_tagged(db, "a3", "fleet=acme", "x", T0).refused, 1);
    /* a device moving to another fleet takes its series along: a1 (2 series) leaves acme */
    assert_int_equal(write_tagged(db, "a1", "fleet=cargo", "x", T0 + 2000).accepted, 1);
    assert_int_equal(write_tagged(db, "a3", "fleet=acme", "x", T0).accepted, 1);
    assert_int_equal(write_tagged(db, "a3", "fleet=acme", "y", T0).accepted, 1);
    assert_int_equal(write_tagged(db, "a3", "fleet=acme", "z", T0).refused, 1);
    assert_int_equal(write_tagged(db, "c1", "fleet=cargo", "x", T0).accepted, 1);
    assert_int_equal(write_tagged(db, "c1", "fleet=cargo", "y", T0).refused, 1);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

/* A cut keeps a series' fragment buffer for the points to come, but one left with far less than
 * its buffer holds (a burst, then a gap) gives the memory back; either way the points are the
 * same after the cut. */
static void test_cut_gives_back_a_burst(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbburst");
    tern_tsdb *db = open_db(dir, 0);
    tern_tsdb_batch *b;
    assert_int_equal(tern_tsdb_batch_new(&b), 0);
    tern_tsdb_write_result res;
    /* 50 minutes at 1 s (3,000 points, hundreds of fragments), then one point at 91 minutes */
    for (int64_t i = 0; i < 3000; i += 500) {
        tern_tsdb_batch_reset(b);
        assert_int_equal(tern_tsdb_batch_device(b, "burst", 5, "", 0), 0);
        for (int64_t k = i; k < i + 500; k++)
            assert_int_equal(
                tern_tsdb_batch_add_f64(b, "v", 1, T0 + k * 1000, (double)(k * 7919 % 1000) / 10),
                0);
        assert_int_equal(tern_tsdb_write(db, b, NULL, &res), 0);
        assert_int_equal(res.accepted, 500);
    }
    tern_tsdb_stats before;
    tern_tsdb_get_stats(db, &before);
    /* 40 points from 91 minutes: after the cut they are all the head holds (in fragments) */
    tern_tsdb_batch_reset(b);
    assert_int_equal(tern_tsdb_batch_device(b, "burst", 5, "", 0), 0);
    for (int64_t k = 0; k < 40; k++)
        assert_int_equal(tern_tsdb_batch_add_f64(b, "v", 1, T0 + 91 * 60000 + k * 1000, 1.5), 0);
    assert_int_equal(tern_tsdb_write(db, b, NULL, &res), 0);
    assert_int_equal(tern_tsdb_maintain(db, INT64_MIN), 0);
    tern_tsdb_stats after;
    tern_tsdb_get_stats(db, &after);
    assert_int_equal(after.head_points, 40);
    /* the burst's buffer (about 1.3 bytes a point) is given back */
    assert_true(after.head_bytes + 3000 < before.head_bytes);
    /* every point is still there: 3,000 in blocks, the last one in the head */
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    q.sel.device = "burst";
    q.sel.metric = "v";
    q.start_ms = T0;
    q.end_ms = T0 + 92 * 60000;
    got.n = 0;
    char err[256];
    assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 3040);
    double first, mid, last;
    memcpy(&first, &got.v[0], 8);
    memcpy(&mid, &got.v[1234], 8);
    memcpy(&last, &got.v[3039], 8);
    assert_true(first == 0.0 && mid == (double)(1234 * 7919 % 1000) / 10 && last == 1.5);
    assert_int_equal(got.ts[3039], T0 + 91 * 60000 + 39 * 1000);
    tern_tsdb_batch_free(b);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

static void test_last_and_groups(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbtest");
    tern_tsdb *db = open_db(dir, 0);
    tern_tsdb_batch *b;
    assert_int_equal(tern_tsdb_batch_new(&b), 0);
    for (int d = 0; d < 4; d++) {
        char name[16], tags[32];
        snprintf(name, sizeof name, "d%d", d);
        snprintf(tags, sizeof tags, "model=m%d,region=%s", d, d < 2 ? "eu" : "us");
        assert_int_equal(tern_tsdb_batch_device(b, name, strlen(name), tags, strlen(tags)), 0);
        for (int i = 0; i < 100; i++) {
            assert_int_equal(tern_tsdb_batch_add_f64(b, "soc", 3, T0 + i * 10000, d * 100 + i), 0);
            assert_int_equal(tern_tsdb_batch_add_i64(b, "odo", 3, T0 + i * 10000, i), 0);
        }
    }
    assert_int_equal(tern_tsdb_write(db, b, NULL, NULL), 0);
    tern_tsdb_batch_free(b);
    for (int pass = 0; pass < 2; pass++) {
        got.n = 0;
        assert_int_equal(tern_tsdb_last(db, "d3", collect_row, &got), 0);
        assert_int_equal(got.n, 2); /* odo, soc in name order */
        assert_int_equal(got.ts[0], T0 + 99 * 10000);
        assert_int_equal((int64_t)got.v[0], 99);
        double v;
        memcpy(&v, &got.v[1], 8);
        assert_true(v == 399);
        assert_int_equal(tern_tsdb_last(db, "nope", collect_row, &got), TERN_ENOTFOUND);
        /* fleet-wide average of soc grouped by region */
        tern_tsdb_query q;
        memset(&q, 0, sizeof q);
        q.sel.metric = "soc";
        q.sel.group_by = "region";
        q.start_ms = T0;
        q.end_ms = T0 + HOUR;
        q.aggs = TERN_AGG_AVG | TERN_AGG_COUNT | TERN_AGG_P95;
        q.tier = TERN_TIER_HOT; /* exact p95 */
        got.n = 0;
        char err[200];
        assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
        assert_int_equal(got.n, 2);
        assert_string_equal(got.group[0], "eu");
        assert_true(fabs(got.agg[0][0] - 99.5) < 1e-9); /* avg of 0..199 */
        assert_true(got.agg[0][1] == 200);              /* count */
        assert_true(got.agg[0][2] == 189);              /* p95: nearest rank 190 of 0..199 */
        if (pass == 1) {
            /* from the warm tier's windows: the same avg and count, p95 from merged sketches
             * within their 1% relative accuracy */
            q.tier = TERN_TIER_WARM;
            q.end_ms = T0 + HOUR / 2; /* the flushed range: the head starts there */
            got.n = 0;
            assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
            assert_int_equal(q.tier_used, TERN_TIER_WARM);
            assert_int_equal(got.n, 2);
            assert_true(fabs(got.agg[0][0] - 99.5) < 1e-9);
            assert_true(got.agg[0][1] == 200);
            assert_true(fabs(got.agg[0][2] - 189) <= 0.02 * 189);
            /* a step that is not whole minutes cannot come from the warm tier */
            q.step_ms = 90 * 1000 + 1;
            assert_int_equal(
                tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), TERN_EINVAL);
            assert_non_null(strstr(err, "whole minutes"));
            q.step_ms = 0;
            q.tier = TERN_TIER_HOT;
        }
        /* tag filter */
        q.sel.group_by = NULL;
        q.sel.tags = "region=us,model=m2";
        q.aggs = TERN_AGG_COUNT;
        got.n = 0;
        assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
        assert_int_equal(got.n, 1);
        assert_true(got.agg[0][0] == 100);
        assert_int_equal(tern_tsdb_flush(db), 0); /* second pass reads blocks */
    }
    /* bad queries are refused with a reason */
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    q.start_ms = 10;
    q.end_ms = 5;
    char err[200];
    assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "empty"));
    q.end_ms = 10 + (int64_t)1e12;
    q.aggs = TERN_AGG_AVG;
    q.step_ms = 1;
    assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "step"));
    unsigned mask;
    assert_int_equal(tern_tsdb_agg_parse("avg,p95", &mask, err, sizeof err), 0);
    assert_int_equal(mask, TERN_AGG_AVG | TERN_AGG_P95);
    assert_int_equal(tern_tsdb_agg_parse("avg,median", &mask, err, sizeof err), TERN_EINVAL);
    assert_non_null(strstr(err, "median"));
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

/* A grouped scan over many devices runs on two threads; its groups must equal what one
 * thread computes from the same points (checked against sums known in closed form). */
static void test_parallel_grouped_scan(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbtest");
    tern_tsdb *db = open_db(dir, 0);
    tern_tsdb_batch *b;
    assert_int_equal(tern_tsdb_batch_new(&b), 0);
    for (int d = 0; d < 200; d++) {
        char name[16], tags[32];
        snprintf(name, sizeof name, "dev%03d", d);
        snprintf(tags, sizeof tags, "region=r%d", d % 3);
        assert_int_equal(tern_tsdb_batch_device(b, name, strlen(name), tags, strlen(tags)), 0);
        for (int i = 0; i < 50; i++)
            assert_int_equal(tern_tsdb_batch_add_i64(b, "v", 1, T0 + i * 1000, d * 1000 + i), 0);
    }
    assert_int_equal(tern_tsdb_write(db, b, NULL, NULL), 0);
    tern_tsdb_batch_free(b);
    for (int pass = 0; pass < 2; pass++) {
        tern_tsdb_query q;
        memset(&q, 0, sizeof q);
        q.sel.group_by = "region";
        q.start_ms = T0;
        q.end_ms = T0 + HOUR;
        q.aggs = TERN_AGG_SUM | TERN_AGG_COUNT | TERN_AGG_MAX | TERN_AGG_P95;
        got.n = 0;
        char err[200];
        assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
        assert_int_equal(got.n, 3);
        for (int r = 0; r < 3; r++) {
            double sum = 0, mx = 0;
            uint64_t cnt = 0;
            for (int d = r; d < 200; d += 3)
                for (int i = 0; i < 50; i++) {
                    sum += d * 1000 + i;
                    mx = d * 1000 + i;
                    cnt++;
                }
            /* values[]: max, sum, count, p95 */
            assert_true(got.agg[r][0] == mx);
            assert_true(got.agg[r][1] == sum);
            assert_true(got.agg[r][2] == (double)cnt);
            assert_true(got.agg[r][3] <= mx && got.agg[r][3] > 0.9 * mx);
        }
        assert_int_equal(tern_tsdb_flush(db), 0);
    }
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

/* The cold hook is offered every raw block leaving the hot tier; a refusal keeps the block. */
static int cold_calls, cold_refuse;
static int64_t cold_max_ts;

static int cold_hook(void *arg, const char *path, int64_t min_ts, int64_t max_ts)
{
    (void)arg;
    assert_non_null(strstr(path, "/blocks/"));
    assert_true(min_ts <= max_ts);
    cold_calls++;
    if (max_ts > cold_max_ts)
        cold_max_ts = max_ts;
    return cold_refuse;
}

static void test_retention_and_cold_hook(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbtest");
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = dir;
    o.wal_fsync = false;
    o.retention_ms = 24 * HOUR;
    o.warm_retention_ms = 48 * HOUR;
    o.cold_hook = cold_hook;
    tern_tsdb *db;
    char err[200];
    assert_int_equal(tern_tsdb_open(&o, &db, err, sizeof err), 0);
    tern_tsdb_write_result res;
    for (int h = 0; h < 6; h++) /* one point an hour over 6 hours */
        assert_int_equal(write_one(db, "a", "x", T0 + h * HOUR, h, false, &res), 0);
    assert_int_equal(tern_tsdb_flush(db), 0);
    tern_tsdb_stats st;
    tern_tsdb_get_stats(db, &st);
    uint64_t blocks = st.blocks;
    assert_true(blocks >= 1);
    assert_true(st.warm_blocks >= 1);
    /* a day and 3.5 hours later the first 3 hours are past the hot retention: the hook refuses,
     * nothing is dropped */
    cold_calls = 0;
    cold_refuse = 1;
    assert_int_equal(tern_tsdb_maintain(db, T0 + 27 * HOUR + HOUR / 2), 0);
    assert_true(cold_calls >= 1);
    tern_tsdb_get_stats(db, &st);
    assert_int_equal(st.blocks, blocks);
    /* the hook takes them: the raw blocks go, the warm windows stay (48 h) */
    cold_refuse = 0;
    cold_calls = 0;
    cold_max_ts = 0;
    assert_int_equal(tern_tsdb_maintain(db, T0 + 27 * HOUR + HOUR / 2), 0);
    assert_true(cold_calls >= 1);
    assert_true(cold_max_ts < T0 + 3 * HOUR + HOUR / 2);
    tern_tsdb_get_stats(db, &st);
    assert_true(st.blocks < blocks);
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    q.sel.device = "a";
    q.start_ms = T0;
    q.end_ms = T0 + 6 * HOUR;
    q.aggs = TERN_AGG_COUNT;
    q.step_ms = HOUR;
    q.tier = TERN_TIER_HOT;
    got.n = 0;
    assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
    size_t hot_rows = got.n;
    assert_true(hot_rows < 6);
    q.tier = TERN_TIER_WARM;
    got.n = 0;
    assert_int_equal(tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 6); /* the warm tier still answers for every hour */
    /* past the warm retention everything is gone */
    assert_int_equal(tern_tsdb_maintain(db, T0 + 60 * HOUR), 0);
    tern_tsdb_get_stats(db, &st);
    assert_int_equal(st.blocks, 0);
    assert_int_equal(st.warm_blocks, 0);
    assert_int_equal(tern_tsdb_close(db, false), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

static void test_corrupt_block_refused(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbtest");
    tern_tsdb *db = open_db(dir, 0);
    tern_tsdb_write_result res;
    for (int i = 0; i < 50; i++)
        assert_int_equal(write_one(db, "a", "x", T0 + i * 1000, i * 0.5, false, &res), 0);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    char path[600];
    snprintf(path, sizeof path, "%s/blocks/0000000000000001.blk", dir);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    /* a flipped byte in the index: the block is refused at open with a reason */
    fseek(f, -80, SEEK_END);
    int c = fgetc(f);
    fseek(f, -80, SEEK_END);
    fputc(c ^ 0x40, f);
    fclose(f);
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = dir;
    o.wal_fsync = false;
    tern_tsdb *bad = NULL;
    char err[300];
    assert_int_equal(tern_tsdb_open(&o, &bad, err, sizeof err), TERN_ECORRUPT);
    assert_non_null(strstr(err, "checksum"));
    /* restore it, then flip a byte inside the chunk data: the query fails, never lies */
    f = fopen(path, "r+b");
    fseek(f, -80, SEEK_END);
    fputc(c, f);
    fseek(f, 86, SEEK_SET);
    c = fgetc(f);
    fseek(f, 86, SEEK_SET);
    fputc(c ^ 0x01, f);
    fclose(f);
    db = open_db(dir, 0);
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    q.sel.device = "a";
    q.start_ms = T0;
    q.end_ms = T0 + HOUR;
    got.n = 0;
    assert_int_equal(
        tern_tsdb_query_run(db, &q, collect_row, &got, err, sizeof err), TERN_ECORRUPT);
    assert_int_equal(got.n, 0);
    assert_int_equal(tern_tsdb_close(db, false), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_random_against_model),
        cmocka_unit_test(test_conflicts_and_limits),
        cmocka_unit_test(test_series_limit_per_tenant),
        cmocka_unit_test(test_cut_gives_back_a_burst),
        cmocka_unit_test(test_last_and_groups),
        cmocka_unit_test(test_parallel_grouped_scan),
        cmocka_unit_test(test_retention_and_cold_hook),
        cmocka_unit_test(test_corrupt_block_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

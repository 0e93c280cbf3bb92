/*
 * test_warm_stream.c: the stream processor's windows in the warm tier (tern_tsdb_write_windows).
 * Written windows answer warm-tier queries for the range the head holds; a window written again
 * replaces the first; the windows recomputed from raw points at the cut replace them and their
 * blocks go; windows before valid_from (a stream resumed after a restart) are not used; a
 * malformed window is refused whole.
 */
#include "base/error.h"
#include "tsdb/sketch.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_test_dir.h"

#include <dirent.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#define MIN_MS 60000LL
#define T0 1767225600000LL /* 2026-01-01, a multiple of a minute */
#define N_MIN 20

typedef struct fixture {
    char *dir;
    tern_tsdb *db;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof(*f));
    f->dir = tsdb_test_tmpdir("warmstream");
    assert_non_null(f->dir);
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = f->dir;
    o.wal_fsync = false;
    o.retention_ms = 0;
    o.warm_retention_ms = 0;
    char err[256];
    assert_int_equal(tern_tsdb_open(&o, &f->db, err, sizeof err), 0);
    /* raw points: car1/soc every 10 s for N_MIN minutes, value = minute + 0.5 */
    tern_tsdb_batch *b;
    assert_int_equal(tern_tsdb_batch_new(&b), 0);
    /* and car2 the same, written only this way (as over HTTP): the stream has no windows of it */
    for (int d = 1; d <= 2; d++) {
        assert_int_equal(tern_tsdb_batch_device(b, d == 1 ? "car1" : "car2", 4, NULL, 0), 0);
        for (int m = 0; m < N_MIN; m++)
            for (int k = 0; k < 6; k++)
                assert_int_equal(
                    tern_tsdb_batch_add_f64(b, "soc", 3, T0 + m * MIN_MS + k * 10000, m + 0.5), 0);
    }
    tern_tsdb_write_result res;
    assert_int_equal(tern_tsdb_write(f->db, b, NULL, &res), 0);
    assert_int_equal(res.accepted, 2 * N_MIN * 6);
    tern_tsdb_batch_free(b);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    assert_int_equal(tern_tsdb_close(f->db, false), 0);
    tsdb_test_rm_rf(f->dir);
    free(f->dir);
    free(f);
    return 0;
}

/* A flat window (its aggregates imply its values: no sketch needed) with a marker count. */
static tern_tsdb_window flat(int minute, uint64_t count)
{
    double v = minute + 0.5;
    tern_tsdb_window w = {
        .device = "car1",
        .device_len = 4,
        .metric = "soc",
        .metric_len = 3,
        .start_ms = T0 + minute * MIN_MS,
        .count = count,
        .sum = v * (double)count,
        .min = v,
        .max = v,
        .last = v,
    };
    return w;
}

typedef struct counts {
    uint64_t c[N_MIN];
    int rows;
} counts;

static int on_row(void *arg, const tern_tsdb_row *row)
{
    counts *c = arg;
    int64_t m = (row->ts_ms - T0) / MIN_MS;
    assert_true(m >= 0 && m < N_MIN);
    c->c[m] = row->count;
    c->rows++;
    return 0;
}

/* Counts per minute of a device from the warm tier (forced), and which tier answered. */
static tern_tsdb_tier warm_counts_of(tern_tsdb *db, const char *device, counts *c)
{
    memset(c, 0, sizeof(*c));
    tern_tsdb_query q;
    memset(&q, 0, sizeof(q));
    q.sel.device = device;
    q.sel.metric = "soc";
    q.start_ms = T0;
    q.end_ms = T0 + N_MIN * MIN_MS;
    q.step_ms = MIN_MS;
    q.aggs = TERN_AGG_COUNT;
    q.tier = TERN_TIER_WARM;
    char err[200];
    assert_int_equal(tern_tsdb_query_run(db, &q, on_row, c, err, sizeof err), 0);
    return q.tier_used;
}

static tern_tsdb_tier warm_counts(tern_tsdb *db, counts *c)
{
    return warm_counts_of(db, "car1", c);
}

static int swarm_files(const char *dir)
{
    char path[600];
    snprintf(path, sizeof path, "%s/swarm", dir);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL)
        n += strstr(e->d_name, ".blk") != NULL;
    if (d)
        closedir(d);
    return n;
}

static void test_windows_answer_until_the_cut(void **state)
{
    fixture *f = *state;
    tern_tsdb_window ws[N_MIN];
    for (int m = 0; m < N_MIN; m++)
        ws[m] = flat(m, 100 + (uint64_t)m);
    assert_int_equal(tern_tsdb_write_windows(f->db, ws, N_MIN, T0 + N_MIN * MIN_MS, INT64_MIN), 0);
    /* a correction of minute 3, later */
    tern_tsdb_window fix = flat(3, 7);
    assert_int_equal(tern_tsdb_write_windows(f->db, &fix, 1, INT64_MIN, INT64_MIN), 0);
    assert_int_equal(tern_tsdb_flush_windows(f->db), 0);
    assert_true(swarm_files(f->dir) >= 1);

    counts c;
    assert_int_equal(warm_counts(f->db, &c), TERN_TIER_WARM);
    assert_int_equal(c.rows, N_MIN);
    for (int m = 0; m < N_MIN; m++)
        assert_int_equal(c.c[m], m == 3 ? 7 : 100 + (uint64_t)m);
    /* car2 has no stream windows: its minutes come from its raw points */
    warm_counts_of(f->db, "car2", &c);
    assert_int_equal(c.rows, N_MIN);
    for (int m = 0; m < N_MIN; m++)
        assert_int_equal(c.c[m], 6);

    /* the cut: windows recomputed from raw replace the stream's, whose blocks go */
    assert_int_equal(tern_tsdb_flush(f->db), 0);
    assert_int_equal(warm_counts(f->db, &c), TERN_TIER_WARM);
    assert_int_equal(c.rows, N_MIN);
    for (int m = 0; m < N_MIN; m++)
        assert_int_equal(c.c[m], 6);
    assert_int_equal(swarm_files(f->dir), 0);
}

static void test_windows_before_valid_from_are_not_used(void **state)
{
    fixture *f = *state;
    tern_tsdb_window ws[N_MIN];
    for (int m = 0; m < N_MIN; m++)
        ws[m] = flat(m, 100);
    /* a stream that resumed at minute 10: its windows before may be partial, and nothing
     * recomputed from raw joins them: the warm tier cannot answer, raw does */
    assert_int_equal(
        tern_tsdb_write_windows(f->db, ws, N_MIN, T0 + N_MIN * MIN_MS, T0 + 10 * MIN_MS), 0);
    assert_int_equal(tern_tsdb_flush_windows(f->db), 0);
    counts c;
    assert_int_equal(warm_counts(f->db, &c), TERN_TIER_HOT);
    for (int m = 0; m < N_MIN; m++)
        assert_int_equal(c.c[m], 6);
}

typedef struct p95_row {
    double p95, max;
    int n;
} p95_row;

static int on_p95(void *arg, const tern_tsdb_row *row)
{
    p95_row *g = arg;
    g->max = row->values[0]; /* MAX (bit 2) before P95 (bit 6) */
    g->p95 = row->values[1];
    g->n++;
    return 0;
}

static void test_windows_with_sketches_give_p95(void **state)
{
    fixture *f = *state;
    tern_sketch sk;
    assert_int_equal(tern_sketch_init(&sk, TERN_SKETCH_DEFAULT_ACCURACY), 0);
    for (int i = 1; i <= 100; i++)
        assert_int_equal(tern_sketch_add(&sk, (double)i), 0);
    tern_tsdb_window w = flat(0, 100);
    w.min = 1;
    w.max = 100;
    w.sum = 5050;
    w.last = 100;
    w.sketch = &sk;
    assert_int_equal(tern_tsdb_write_windows(f->db, &w, 1, T0 + MIN_MS, INT64_MIN), 0);
    assert_int_equal(tern_tsdb_flush_windows(f->db), 0);
    tern_tsdb_query q;
    memset(&q, 0, sizeof(q));
    q.sel.device = "car1";
    q.sel.metric = "soc";
    q.start_ms = T0;
    q.end_ms = T0 + MIN_MS;
    q.step_ms = MIN_MS;
    q.aggs = TERN_AGG_P95 | TERN_AGG_MAX;
    q.tier = TERN_TIER_WARM;
    p95_row got = { 0, 0, 0 };
    char err[200];
    assert_int_equal(tern_tsdb_query_run(f->db, &q, on_p95, &got, err, sizeof err), 0);
    assert_int_equal(got.n, 1);
    assert_true(got.p95 > 94 && got.p95 < 96.5); /* 1% relative accuracy */
    assert_true(got.max == 100);
    tern_sketch_free(&sk);
}

static void test_malformed_windows_refused_whole(void **state)
{
    fixture *f = *state;
    tern_tsdb_window ws[2] = { flat(0, 5), flat(1, 5) };
    ws[1].start_ms += 1; /* not a whole minute */
    assert_int_equal(tern_tsdb_write_windows(f->db, ws, 2, INT64_MIN, INT64_MIN), TERN_EINVAL);
    ws[1] = flat(1, 0); /* empty */
    assert_int_equal(tern_tsdb_write_windows(f->db, ws, 2, INT64_MIN, INT64_MIN), TERN_EINVAL);
    ws[1] = flat(1, 5);
    ws[1].max = 9; /* values not implied by the aggregates, and no sketch */
    assert_int_equal(tern_tsdb_write_windows(f->db, ws, 2, INT64_MIN, INT64_MIN), TERN_EINVAL);
    ws[1] = flat(1, 5);
    ws[1].device_len = 0;
    assert_int_equal(tern_tsdb_write_windows(f->db, ws, 2, INT64_MIN, INT64_MIN), TERN_EINVAL);
    /* nothing was taken: no block to flush */
    assert_int_equal(tern_tsdb_flush_windows(f->db), 0);
    assert_int_equal(swarm_files(f->dir), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_windows_answer_until_the_cut, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_windows_before_valid_from_are_not_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_windows_with_sketches_give_p95, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_windows_refused_whole, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

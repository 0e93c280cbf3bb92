/*
 * tsdb_query_bench.c: in-process query speed of a store made by `tern import`.
 *
 *   tsdb_query_bench --dir DATA/tsdb [--runs N] [--start MS] [--hours H]
 *
 * Measures (medians over runs; the store is warm in the page cache, as a server's would be):
 *   - a full scan: count and average of every point of every series (group_by=*), points/s;
 *   - one device, one day: every metric's raw points for a random device, p50/p99 latency.
 * Prints one JSON line.
 */
#include "base/clock.h"
#include "base/error.h"
#include "tsdb/tsdb.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct counter {
    uint64_t rows, points;
} counter;

static int count_row(void *arg, const tern_tsdb_row *row)
{
    counter *c = arg;
    c->rows++;
    c->points += row->count;
    return 0;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    const char *dir = NULL;
    int runs = 5;
    int64_t start = 1767225600000LL, hours = 24;
    long devices = 1000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--runs") == 0)
            runs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--start") == 0)
            start = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--hours") == 0)
            hours = atoll(argv[i + 1]);
        else if (strcmp(argv[i], "--devices") == 0)
            devices = atol(argv[i + 1]);
    }
    if (!dir) {
        fprintf(stderr, "usage: tsdb_query_bench --dir DATA/tsdb [--runs N] [--devices N]\n");
        return 2;
    }
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = dir;
    o.retention_ms = 0;
    tern_tsdb *db;
    char err[300];
    if (tern_tsdb_open(&o, &db, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    q.sel.metric = "*";
    q.sel.group_by = "*";
    q.start_ms = start;
    q.end_ms = start + hours * 3600 * 1000;
    q.aggs = TERN_AGG_COUNT | TERN_AGG_AVG;
    uint64_t *scan_ns = calloc((size_t)runs, sizeof(uint64_t));
    uint64_t points = 0;
    for (int r = 0; r < runs; r++) {
        counter c = { 0, 0 };
        uint64_t t0 = tern_clock_mono_ns();
        if (tern_tsdb_query_run(db, &q, count_row, &c, err, sizeof err) != 0) {
            fprintf(stderr, "scan: %s\n", err);
            return 1;
        }
        scan_ns[r] = tern_clock_mono_ns() - t0;
        points = c.points;
    }
    qsort(scan_ns, (size_t)runs, sizeof(uint64_t), cmp_u64);
    double scan_s = (double)scan_ns[runs / 2] / 1e9;
    int n_one = 400;
    uint64_t *one_ns = calloc((size_t)n_one, sizeof(uint64_t));
    uint64_t one_points = 0;
    srand(7);
    for (int r = 0; r < n_one; r++) {
        char dev[32];
        snprintf(dev, sizeof dev, "dev%06ld", 1 + (long)(rand() % devices));
        tern_tsdb_query one;
        memset(&one, 0, sizeof one);
        one.sel.device = dev;
        one.start_ms = start;
        one.end_ms = start + 24 * 3600 * 1000LL;
        counter c = { 0, 0 };
        uint64_t t0 = tern_clock_mono_ns();
        if (tern_tsdb_query_run(db, &one, count_row, &c, err, sizeof err) != 0) {
            fprintf(stderr, "one device: %s\n", err);
            return 1;
        }
        one_ns[r] = tern_clock_mono_ns() - t0;
        one_points += c.rows;
    }
    qsort(one_ns, (size_t)n_one, sizeof(uint64_t), cmp_u64);
    printf("{\"bench\":\"tsdb_query\",\"scan_points\":%llu,\"scan_seconds\":%.4f,"
           "\"scan_points_per_s\":%.0f,\"one_device_day_points\":%.0f,"
           "\"one_device_day_p50_ms\":%.3f,\"one_device_day_p99_ms\":%.3f}\n",
        (unsigned long long)points, scan_s, (double)points / scan_s, (double)one_points / n_one,
        (double)one_ns[n_one / 2] / 1e6, (double)one_ns[n_one * 99 / 100] / 1e6);
    tern_tsdb_close(db, false);
    free(scan_ns);
    free(one_ns);
    return 0;
}

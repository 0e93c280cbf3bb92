/*
 * tsdb_api_bench.c: the TSDB's C API write path and head memory, on the EV profile.
 *
 *   tsdb_api_bench [--devices N] [--minutes M] [--step S] [--wal on|off] [--dir DIR]
 *                  [--block-minutes B] [--threads T]
 *   tsdb_api_bench --series-json FILE [--devices N]
 *
 * Writes N devices x 20 metrics every S seconds for M minutes of event time through
 * tern_tsdb_write (batches of 1,000 devices x 20 metrics per time step) from T threads, each
 * writing its own disjoint share of the devices, then reports one JSON line: points/s through
 * the C API, and the head's memory per active series, both as the store counts it
 * (tern_tsdb_stats.head_bytes) and as the process's resident memory grew.
 * Blocks have the store's default length (30 minutes) unless --block-minutes says otherwise;
 * the default --minutes is 1.5 block lengths at 10 s, the head at its fullest (cuts happen at
 * 1.5 block lengths), so the memory figure is the worst case, not the average.
 * Each time step has two phases, separated by barriers: every thread builds its batches (the
 * values are generated; not counted), then every thread writes them; points/s is the points
 * over the wall time of the write phases. Maintenance runs after each step, not counted either.
 * --series-json writes the label sets of the same N x 20 series, one JSON object a line (the
 * input of `promtool tsdb bench write`, which bench/tsdb_api_bench.py runs as the peer).
 */
#include "base/clock.h"
#include "base/error.h"
#include "sim/profile.h"
#include "tsdb/tsdb.h"

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

typedef struct bench {
    tern_tsdb *db;
    tern_profile *prof;
    size_t nm;
    char names[64][64];
    size_t name_len[64];
    tern_sim_device **devs;
    char (*dev_names)[24];
    char (*dev_tags)[128];
    long devices, steps, step_s, threads;
    pthread_barrier_t bar;
    uint64_t points, write_ns, gen_ns;
    int failed;
} bench;

typedef struct worker {
    bench *bn;
    long t;
    uint64_t points, gen_ns, seq;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    bench *bn = w->bn;
    long lo = bn->devices * w->t / bn->threads, hi = bn->devices * (w->t + 1) / bn->threads;
    long n_batches = (hi - lo + 999) / 1000;
    tern_tsdb_batch **b = calloc((size_t)(n_batches ? n_batches : 1), sizeof(*b));
    for (long i = 0; i < n_batches; i++)
        tern_tsdb_batch_new(&b[i]);
    int64_t t0 = 1767225600000LL;
    double vals[64];
    for (long s = 0; s < bn->steps; s++) {
        int64_t ts = t0 + s * bn->step_s * 1000;
        uint64_t g0 = tern_clock_mono_ns();
        for (long i = 0; i < n_batches; i++) {
            tern_tsdb_batch_reset(b[i]);
            for (long d = lo + i * 1000; d < hi && d < lo + (i + 1) * 1000; d++) {
                tern_profile_step(bn->prof, bn->devs[d], ts, vals);
                tern_tsdb_batch_device(b[i], bn->dev_names[d], strlen(bn->dev_names[d]),
                    bn->dev_tags[d], strlen(bn->dev_tags[d]));
                for (size_t m = 0; m < bn->nm; m++) {
                    if (tern_profile_metric_decimals(bn->prof, m) < 0)
                        tern_tsdb_batch_add_i64(
                            b[i], bn->names[m], bn->name_len[m], ts, (int64_t)vals[m]);
                    else
                        tern_tsdb_batch_add_f64(b[i], bn->names[m], bn->name_len[m], ts, vals[m]);
                }
            }
        }
        w->gen_ns += tern_clock_mono_ns() - g0;
        pthread_barrier_wait(&bn->bar);
        uint64_t w0 = tern_clock_mono_ns();
        for (long i = 0; i < n_batches; i++) {
            tern_tsdb_write_result res;
            int rc = tern_tsdb_write(bn->db, b[i], &w->seq, &res);
            if (rc || res.refused) {
                fprintf(stderr, "write: %s %s\n", tern_strerror(rc), res.err);
                __atomic_store_n(&bn->failed, 1, __ATOMIC_RELAXED);
            }
            w->points += res.accepted;
        }
        pthread_barrier_wait(&bn->bar);
        if (w->t == 0) {
            bn->write_ns += tern_clock_mono_ns() - w0;
            /* maintenance runs after every step, as the background thread would (it runs every
             * second, a step is 10 s of a live fleet), but is timed apart. Run every 10 minutes
             * instead, it let heads grow to 55 minutes, past the fragment merge (24 x 14 points)
             * that a live store never reaches. */
            tern_tsdb_maintain(bn->db, INT64_MIN);
        }
    }
    tern_tsdb_wait(bn->db, w->seq);
    for (long i = 0; i < n_batches; i++)
        tern_tsdb_batch_free(b[i]);
    free(b);
    return NULL;
}

static int write_series_json(bench *bn, const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return 1;
    for (long d = 0; d < bn->devices; d++) {
        char fleet[32], region[32], model[32];
        tern_profile_device_tags(
            bn->prof, (uint64_t)d, fleet, sizeof fleet, region, sizeof region, model, sizeof model);
        for (size_t m = 0; m < bn->nm; m++)
            fprintf(f,
                "{\"__name__\":\"%s\",\"device_id\":\"%s\",\"fleet\":\"%s\","
                "\"region\":\"%s\",\"model\":\"%s\"}\n",
                bn->names[m], bn->dev_names[d], fleet, region, model);
    }
    return fclose(f) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    /* 0: the store's default block length, and 1.5 of them (the head at its fullest) */
    long devices = 10000, minutes = 0, step_s = 10, block_min = 0, threads = 1;
    const char *dir = "/tmp/tsdb_api_bench", *wal = "on", *series_json = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--devices") == 0)
            devices = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--minutes") == 0)
            minutes = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--step") == 0)
            step_s = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--wal") == 0)
            wal = argv[i + 1];
        else if (strcmp(argv[i], "--block-minutes") == 0)
            block_min = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--dir") == 0)
            dir = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--series-json") == 0)
            series_json = argv[i + 1];
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (threads < 1 || threads > 64 || devices < threads || step_s <= 0) {
        fprintf(stderr, "bad --threads, --devices or --step\n");
        return 2;
    }
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    if (block_min > 0)
        o.block_duration_ms = block_min * 60000;
    if (minutes <= 0)
        minutes = (long)(o.block_duration_ms * 3 / 2 / 60000);
    static bench bn;
    bn.devices = devices;
    bn.threads = threads;
    bn.step_s = step_s;
    bn.steps = minutes * 60 / step_s;
    if (tern_profile_open("ev", 1, &bn.prof) != 0)
        return 1;
    bn.nm = tern_profile_metric_count(bn.prof);
    for (size_t m = 0; m < bn.nm && m < 64; m++) {
        snprintf(bn.names[m], sizeof bn.names[m], "ev_%s", tern_profile_metric_name(bn.prof, m));
        bn.name_len[m] = strlen(bn.names[m]);
    }
    bn.devs = calloc((size_t)devices, sizeof(*bn.devs));
    bn.dev_names = calloc((size_t)devices, 24);
    bn.dev_tags = calloc((size_t)devices, 128);
    for (long d = 0; d < devices; d++) {
        tern_profile_device_init(bn.prof, (uint64_t)d, &bn.devs[d]);
        snprintf(bn.dev_names[d], 24, "dev%06ld", d + 1);
        char fleet[32], region[32], model[32];
        tern_profile_device_tags(
            bn.prof, (uint64_t)d, fleet, sizeof fleet, region, sizeof region, model, sizeof model);
        snprintf(bn.dev_tags[d], 128, "fleet=%s,region=%s,model=%s", fleet, region, model);
    }
    if (series_json)
        return write_series_json(&bn, series_json);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    long rss0 = rss_kb();
    o.dir = dir;
    o.retention_ms = 0;
    o.no_wal = strcmp(wal, "off") == 0;
    char err[256];
    if (tern_tsdb_open(&o, &bn.db, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    pthread_barrier_init(&bn.bar, NULL, (unsigned)threads);
    pthread_t *th = calloc((size_t)threads, sizeof(*th));
    worker *w = calloc((size_t)threads, sizeof(*w));
    for (long t = 0; t < threads; t++) {
        w[t].bn = &bn;
        w[t].t = t;
        if (pthread_create(&th[t], NULL, worker_main, &w[t]) != 0)
            return 1;
    }
    uint64_t points = 0, gen_ns = 0;
    for (long t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        points += w[t].points;
        gen_ns += w[t].gen_ns;
    }
    if (bn.failed)
        return 1;
    tern_tsdb_stats st;
    tern_tsdb_get_stats(bn.db, &st);
    long rss1 = rss_kb();
    double series = (double)st.series;
    printf("{\"bench\":\"tsdb_api_write\",\"devices\":%ld,\"series\":%llu,\"steps\":%ld,"
           "\"points\":%llu,\"threads\":%ld,\"wal\":\"%s\",\"points_per_s\":%.0f,"
           "\"head_points\":%llu,\"head_bytes_per_series\":%.0f,\"rss_bytes_per_series\":%.0f,"
           "\"write_s\":%.2f,\"gen_s\":%.2f}\n",
        devices, (unsigned long long)st.series, bn.steps, (unsigned long long)points, threads, wal,
        (double)points / ((double)bn.write_ns / 1e9), (unsigned long long)st.head_points,
        (double)st.head_bytes / series, (double)(rss1 - rss0) * 1024.0 / series,
        (double)bn.write_ns / 1e9, (double)gen_ns / 1e9);
    tern_tsdb_close(bn.db, false);
    pthread_barrier_destroy(&bn.bar);
    free(th);
    free(w);
    for (long d = 0; d < devices; d++)
        tern_profile_device_free(bn.devs[d]);
    free(bn.devs);
    free(bn.dev_names);
    free(bn.dev_tags);
    tern_profile_close(bn.prof);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

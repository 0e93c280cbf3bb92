/*
 * tsdb_api_bench.c: the TSDB's C API write path and head memory, on the EV profile.
 *
 *   tsdb_api_bench [--devices N] [--minutes M] [--step S] [--wal on|off] [--dir DIR]
 *                  [--block-minutes B]
 *
 * Writes N devices x 20 metrics every S seconds for M minutes of event time through
 * tern_tsdb_write (one batch per time step of 1,000 devices), on one thread, then reports one
 * JSON line: points/s through the C API, and the head's memory per active series, both as the
 * store counts it (tern_tsdb_stats.head_bytes) and as the process's resident memory grew.
 * The default 90 minutes at 10 s is the head at its fullest (cuts happen at 1.5 block lengths),
 * so the memory figure is the worst case, not the average.
 * Generating the values is timed apart and not counted.
 */
#include "base/clock.h"
#include "base/error.h"
#include "sim/profile.h"
#include "tsdb/tsdb.h"

#include <ftw.h>
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

int main(int argc, char **argv)
{
    long devices = 10000, minutes = 90, step_s = 10, block_min = 60;
    const char *dir = "/tmp/tsdb_api_bench", *wal = "on";
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
        else {
            fprintf(stderr, "unknown option %s\n", argv[i]);
            return 2;
        }
    }
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    tern_profile *prof;
    if (tern_profile_open("ev", 1, &prof) != 0)
        return 1;
    size_t nm = tern_profile_metric_count(prof);
    char names[64][64];
    size_t name_len[64];
    for (size_t m = 0; m < nm && m < 64; m++) {
        snprintf(names[m], sizeof names[m], "ev_%s", tern_profile_metric_name(prof, m));
        name_len[m] = strlen(names[m]);
    }
    tern_sim_device **devs = calloc((size_t)devices, sizeof(*devs));
    char(*dev_names)[24] = calloc((size_t)devices, 24);
    char(*dev_tags)[128] = calloc((size_t)devices, 128);
    for (long d = 0; d < devices; d++) {
        tern_profile_device_init(prof, (uint64_t)d, &devs[d]);
        snprintf(dev_names[d], 24, "dev%06ld", d + 1);
        char fleet[32], region[32], model[32];
        tern_profile_device_tags(
            prof, (uint64_t)d, fleet, sizeof fleet, region, sizeof region, model, sizeof model);
        snprintf(dev_tags[d], 128, "fleet=%s,region=%s,model=%s", fleet, region, model);
    }
    long rss0 = rss_kb();
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = dir;
    o.retention_ms = 0;
    o.no_wal = strcmp(wal, "off") == 0;
    o.block_duration_ms = block_min * 60000;
    tern_tsdb *db;
    char err[256];
    if (tern_tsdb_open(&o, &db, err, sizeof err) != 0) {
        fprintf(stderr, "open: %s\n", err);
        return 1;
    }
    tern_tsdb_batch *b;
    tern_tsdb_batch_new(&b);
    int64_t t0 = 1767225600000LL;
    long steps = minutes * 60 / step_s;
    double vals[64];
    uint64_t points = 0, gen_ns = 0, write_ns = 0;
    uint64_t seq = 0;
    for (long s = 0; s < steps; s++) {
        int64_t ts = t0 + s * step_s * 1000;
        for (long d0 = 0; d0 < devices; d0 += 1000) {
            uint64_t g0 = tern_clock_mono_ns();
            tern_tsdb_batch_reset(b);
            for (long d = d0; d < devices && d < d0 + 1000; d++) {
                tern_profile_step(prof, devs[d], ts, vals);
                tern_tsdb_batch_device(
                    b, dev_names[d], strlen(dev_names[d]), dev_tags[d], strlen(dev_tags[d]));
                for (size_t m = 0; m < nm; m++) {
                    if (tern_profile_metric_decimals(prof, m) < 0)
                        tern_tsdb_batch_add_i64(b, names[m], name_len[m], ts, (int64_t)vals[m]);
                    else
                        tern_tsdb_batch_add_f64(b, names[m], name_len[m], ts, vals[m]);
                }
            }
            uint64_t g1 = tern_clock_mono_ns();
            tern_tsdb_write_result res;
            int rc = tern_tsdb_write(db, b, &seq, &res);
            if (rc || res.refused) {
                fprintf(stderr, "write: %s %s\n", tern_strerror(rc), res.err);
                return 1;
            }
            points += res.accepted;
            write_ns += tern_clock_mono_ns() - g1;
            gen_ns += g1 - g0;
        }
        /* maintenance runs as the background thread would, but is timed apart */
        if (s % 60 == 59)
            tern_tsdb_maintain(db, INT64_MIN);
    }
    tern_tsdb_wait(db, seq);
    tern_tsdb_stats st;
    tern_tsdb_get_stats(db, &st);
    long rss1 = rss_kb();
    double series = (double)st.series;
    printf("{\"bench\":\"tsdb_api_write\",\"devices\":%ld,\"series\":%llu,\"points\":%llu,"
           "\"wal\":\"%s\",\"points_per_s\":%.0f,\"head_points\":%llu,"
           "\"head_bytes_per_series\":%.0f,\"rss_bytes_per_series\":%.0f,\"gen_s\":%.2f}\n",
        devices, (unsigned long long)st.series, (unsigned long long)points, wal,
        (double)points / ((double)write_ns / 1e9), (unsigned long long)st.head_points,
        (double)st.head_bytes / series, (double)(rss1 - rss0) * 1024.0 / series,
        (double)gen_ns / 1e9);
    tern_tsdb_close(db, false);
    tern_tsdb_batch_free(b);
    for (long d = 0; d < devices; d++)
        tern_profile_device_free(devs[d]);
    free(devs);
    free(dev_names);
    free(dev_tags);
    tern_profile_close(prof);
    nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

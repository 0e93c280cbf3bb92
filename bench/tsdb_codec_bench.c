/*
 * tsdb_codec_bench.c: bytes/point and encode/decode speed of the TSDB chunk codec
 * (src/tsdb/codec.h) on the EV profile (src/sim/profile.h), next to plain Gorilla (the same
 * codec with Gorilla delta-of-delta timestamps and Gorilla XOR values forced).
 *
 *   tsdb_codec_bench [--devices N] [--hours H] [--chunk P]... [--jitter-ms J] [--profile NAME]
 *                    [--seed S] [--per-metric]
 *
 * Data: N devices (1000) x every metric of the profile (ev: 20) x H hours (6) at one sample
 * per 10 s; timestamps on a regular 10 s grid, or with --jitter-ms J each one moved by a
 * uniform -J..+J ms (a device clock's scheduling jitter). Every value is stored as float64
 * (integer counters too: the codec finds they have no decimals). Series are cut into chunks of
 * P points (--chunk may repeat; default 720 and 2160, i.e. 2 h and 6 h).
 *
 * For each chunk size it prints ONE JSON line on stdout: points, the codec's bytes/point
 * (chunk bytes only: the container's index is not counted), encode and decode points/s on one
 * core (thread CPU time, so a busy machine does not distort it), the same for plain Gorilla, and
 * the ratio. Every chunk is decoded and compared bit for
 * bit before timing; a mismatch exits 1. --per-metric adds a per-metric bytes/point table on
 * stderr.
 */
#include "base/buf.h"
#include "base/error.h"
#include "sim/profile.h"
#include "tsdb/codec.h"
#include "tsdb/codec_int.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CHUNK_SIZES 4
#define STEP_MS 10000
#define DECODE_PASSES 3

typedef struct codec_run {
    const char *name;
    unsigned ts_enc, val_enc; /* 0, 0 = automatic */
    tern_buf chunks;          /* every chunk, back to back */
    size_t *offsets;          /* chunk i is chunks[offsets[i]..offsets[i+1]) */
    size_t n_chunks;
    uint64_t encode_ns;
    uint64_t decode_ns;
    uint64_t metric_bytes[TERN_PROFILE_MAX_METRICS];
} codec_run;

/* cpu_ns is this thread's CPU time: "points/s per core" that other processes on the machine
 * do not distort. */
static uint64_t cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static void usage(void)
{
    fprintf(stderr,
        "usage: tsdb_codec_bench [--devices N] [--hours H] [--chunk P]... "
        "[--jitter-ms J] [--profile NAME] [--seed S] [--per-metric]\n");
    exit(2);
}

/* run_one encodes, verifies and times one codec at one chunk size. Returns 0 or 1. */
static int run_one(codec_run *run, const tern_profile *prof, size_t n_dev, size_t n_steps,
    size_t chunk, int64_t jitter_ms, uint64_t seed)
{
    size_t n_metrics = tern_profile_metric_count(prof);
    size_t per_series = (n_steps + chunk - 1) / chunk;
    run->n_chunks = n_dev * n_metrics * per_series;
    run->offsets = calloc(run->n_chunks + 1, sizeof *run->offsets);
    int64_t *ts = malloc(n_steps * sizeof *ts);
    double *vals = malloc(n_steps * n_metrics * sizeof *vals); /* [metric][step] */
    double *series = malloc(n_steps * sizeof *series);
    int64_t *dts = malloc(chunk * sizeof *dts);
    double *dvals = malloc(chunk * sizeof *dvals);
    double row[TERN_PROFILE_MAX_METRICS];
    if (!run->offsets || !ts || !vals || !series || !dts || !dvals) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    memset(run->metric_bytes, 0, sizeof run->metric_bytes);
    size_t ci = 0;
    int failed = 0;
    for (size_t dev = 0; dev < n_dev && !failed; dev++) {
        tern_sim_device *d;
        if (tern_profile_device_init(prof, dev, &d) != 0) {
            fprintf(stderr, "device_init failed\n");
            exit(1);
        }
        uint64_t js = seed ^ (dev * 0x9e3779b97f4a7c15u);
        const int64_t t0 = INT64_C(1700000000000);
        for (size_t s = 0; s < n_steps; s++) {
            int64_t j = 0;
            if (jitter_ms > 0)
                j = (int64_t)(splitmix(&js) % (uint64_t)(2 * jitter_ms + 1)) - jitter_ms;
            ts[s] = t0 + (int64_t)s * STEP_MS + j;
            tern_profile_step(prof, d, ts[s], row);
            for (size_t m = 0; m < n_metrics; m++)
                vals[m * n_steps + s] = row[m];
        }
        tern_profile_device_free(d);
        for (size_t m = 0; m < n_metrics; m++) {
            memcpy(series, vals + m * n_steps, n_steps * sizeof *series);
            for (size_t at = 0; at < n_steps; at += chunk) {
                size_t n = n_steps - at < chunk ? n_steps - at : chunk;
                size_t before = run->chunks.len;
                uint64_t t_a = cpu_ns();
                int rc = tern_chunk_encode_f64_with(
                    &run->chunks, ts + at, series + at, n, run->ts_enc, run->val_enc);
                run->encode_ns += cpu_ns() - t_a;
                if (rc != 0) {
                    fprintf(stderr, "%s: encode failed: %s\n", run->name, tern_strerror(rc));
                    exit(1);
                }
                run->offsets[ci] = before;
                run->offsets[ci + 1] = run->chunks.len;
                run->metric_bytes[m] += run->chunks.len - before;
                size_t got = 0;
                rc = tern_chunk_decode_f64(
                    run->chunks.data + before, run->chunks.len - before, dts, dvals, chunk, &got);
                if (rc != 0 || got != n || memcmp(dts, ts + at, n * sizeof *dts) != 0
                    || memcmp(dvals, series + at, n * sizeof *dvals) != 0) {
                    fprintf(stderr, "%s: round trip mismatch (device %zu metric %zu)\n", run->name,
                        dev, m);
                    failed = 1;
                    break;
                }
                ci++;
            }
            if (failed)
                break;
        }
    }
    /* Decode everything, a few passes; the best pass counts (the data is in memory). */
    uint64_t best = UINT64_MAX;
    double sink = 0;
    for (int pass = 0; pass < DECODE_PASSES && !failed; pass++) {
        uint64_t t_a = cpu_ns();
        for (size_t i = 0; i < ci; i++) {
            size_t got;
            int rc = tern_chunk_decode_f64(run->chunks.data + run->offsets[i],
                run->offsets[i + 1] - run->offsets[i], dts, dvals, chunk, &got);
            if (rc != 0) {
                failed = 1;
                break;
            }
            sink += dvals[got - 1];
        }
        uint64_t el = cpu_ns() - t_a;
        best = el < best ? el : best;
    }
    run->decode_ns = best;
    if (sink == 12345.678)
        fprintf(stderr, " ");
    free(ts);
    free(vals);
    free(series);
    free(dts);
    free(dvals);
    return failed;
}

int main(int argc, char **argv)
{
    size_t n_dev = 1000, chunks[MAX_CHUNK_SIZES], n_chunk_sizes = 0;
    double hours = 6;
    int64_t jitter_ms = 0;
    uint64_t seed = 42;
    const char *profile = "ev";
    bool per_metric = false;
    static const struct option longopts[] = {
        { "devices", required_argument, NULL, 'd' },
        { "hours", required_argument, NULL, 'h' },
        { "chunk", required_argument, NULL, 'c' },
        { "jitter-ms", required_argument, NULL, 'j' },
        { "profile", required_argument, NULL, 'p' },
        { "seed", required_argument, NULL, 's' },
        { "per-metric", no_argument, NULL, 'm' },
        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            n_dev = strtoul(optarg, NULL, 10);
            break;
        case 'h':
            hours = strtod(optarg, NULL);
            break;
        case 'c':
            if (n_chunk_sizes == MAX_CHUNK_SIZES)
                usage();
            chunks[n_chunk_sizes++] = strtoul(optarg, NULL, 10);
            break;
        case 'j':
            jitter_ms = strtoll(optarg, NULL, 10);
            break;
        case 'p':
            profile = optarg;
            break;
        case 's':
            seed = strtoull(optarg, NULL, 10);
            break;
        case 'm':
            per_metric = true;
            break;
        default:
            usage();
        }
    }
    if (n_chunk_sizes == 0) {
        chunks[0] = 720;
        chunks[1] = 2160;
        n_chunk_sizes = 2;
    }
    size_t n_steps = (size_t)(hours * 3600.0 * 1000.0 / STEP_MS + 0.5);
    if (n_dev == 0 || n_steps == 0 || jitter_ms < 0 || jitter_ms >= STEP_MS / 2)
        usage();
    for (size_t i = 0; i < n_chunk_sizes; i++)
        if (chunks[i] == 0 || chunks[i] > TERN_CHUNK_MAX_POINTS)
            usage();
    tern_profile *prof;
    if (tern_profile_open(profile, seed, &prof) != 0) {
        fprintf(stderr, "unknown profile %s\n", profile);
        return 2;
    }
    size_t n_metrics = tern_profile_metric_count(prof);
    double points = (double)n_dev * (double)n_metrics * (double)n_steps;
    int failed = 0;
    for (size_t k = 0; k < n_chunk_sizes && !failed; k++) {
        codec_run runs[2] = {
            { .name = "tern", .chunks = TERN_BUF_INIT },
            { .name = "gorilla",
                .ts_enc = TERN_CHUNK_TS_GORILLA,
                .val_enc = TERN_CHUNK_VAL_GORILLA,
                .chunks = TERN_BUF_INIT },
        };
        for (int r = 0; r < 2 && !failed; r++)
            failed |= run_one(&runs[r], prof, n_dev, n_steps, chunks[k], jitter_ms, seed);
        if (failed)
            break;
        double bpp[2], enc[2], dec[2];
        for (int r = 0; r < 2; r++) {
            bpp[r] = (double)runs[r].chunks.len / points;
            enc[r] = points / ((double)runs[r].encode_ns / 1e9);
            dec[r] = points / ((double)runs[r].decode_ns / 1e9);
        }
        printf("{\"bench\":\"tsdb_codec\",\"profile\":\"%s\",\"devices\":%zu,\"metrics\":%zu,"
               "\"hours\":%g,\"interval_ms\":%d,\"jitter_ms\":%" PRId64 ",\"points\":%.0f,"
               "\"chunk_points\":%zu,\"chunks\":%zu,"
               "\"tern_bytes_per_point\":%.4f,\"tern_encode_points_per_s\":%.0f,"
               "\"tern_decode_points_per_s\":%.0f,"
               "\"gorilla_bytes_per_point\":%.4f,\"gorilla_encode_points_per_s\":%.0f,"
               "\"gorilla_decode_points_per_s\":%.0f,"
               "\"size_ratio_gorilla_over_tern\":%.2f,\"decode_ratio_tern_over_gorilla\":%.2f}\n",
            profile, n_dev, n_metrics, hours, STEP_MS, jitter_ms, points, chunks[k],
            runs[0].n_chunks, bpp[0], enc[0], dec[0], bpp[1], enc[1], dec[1], bpp[1] / bpp[0],
            dec[0] / dec[1]);
        fflush(stdout);
        if (per_metric) {
            double per_series = (double)n_dev * (double)n_steps;
            fprintf(stderr, "chunk %zu: metric decimals tern_B/pt gorilla_B/pt\n", chunks[k]);
            for (size_t m = 0; m < n_metrics; m++)
                fprintf(stderr, "  %-16s %3d %8.4f %8.4f\n", tern_profile_metric_name(prof, m),
                    tern_profile_metric_decimals(prof, m),
                    (double)runs[0].metric_bytes[m] / per_series,
                    (double)runs[1].metric_bytes[m] / per_series);
        }
        for (int r = 0; r < 2; r++) {
            tern_buf_free(&runs[r].chunks);
            free(runs[r].offsets);
        }
    }
    tern_profile_close(prof);
    return failed;
}

/*
 * cmd_import.c: `tern import`: load InfluxDB line protocol offline into a data directory.
 *
 *   tern import [--data DIR] [--precision ns|us|ms|s] [--device-tag K] [--json] [FILE|-]
 *
 * Reads FILE (or stdin), writes it into DATA/tsdb without a WAL, then flushes and compacts, so
 * the directory holds only blocks (nothing to replay). Shows progress on a terminal and ends
 * with a summary: points, series, bytes on disk, bytes/point (--json: one JSON line).
 * Bad lines are reported (the first one in full) and counted; they do not stop the import.
 */
#include "tern/commands.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "tsdb/lp_ingest.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_config.h"

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

const char tern_cmd_import_summary[] = "load line protocol offline into a data directory";

#define SLICE (8u << 20)

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern import [--data DIR] [--precision ns|us|ms|s] [--device-tag KEY] [--json]\n"
        "                   [--config FILE] [--set tsdb.KEY=VALUE]... [FILE|-]\n"
        "Loads InfluxDB line protocol (default precision ns) into DATA/tsdb and leaves it\n"
        "flushed and compacted. Metric names are {measurement}_{field}; the device is the\n"
        "tag device_id (tsdb.device_tag); other tags are device tags (docs/tsdb.md).\n");
}

static uint64_t dir_bytes;

static int add_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F)
        dir_bytes += (uint64_t)st->st_size;
    return 0;
}

int tern_cmd_import(int argc, char **argv)
{
    const char *precision = "ns", *file = NULL, *device_tag = NULL;
    bool json = false;
    int status = 1;
    tern_config *cfg = NULL;
    char **args = tern_calloc((size_t)argc * 2 + 1, sizeof(*args));
    char *owned[4] = { 0 };
    int n_owned = 0, n = 0;
    if (!args)
        return 1;
    args[n++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            tern_free(args);
            return 0;
        } else if (strcmp(a, "--precision") == 0 && i + 1 < argc) {
            precision = argv[++i];
        } else if (strcmp(a, "--device-tag") == 0 && i + 1 < argc) {
            device_tag = argv[++i];
        } else if (strcmp(a, "--json") == 0) {
            json = true;
        } else if (strcmp(a, "--data") == 0 && i + 1 < argc && n_owned < 4) {
            size_t l = strlen(argv[i + 1]) + 16;
            owned[n_owned] = tern_malloc(l);
            if (!owned[n_owned])
                goto out;
            snprintf(owned[n_owned], l, "data.dir=%s", argv[++i]);
            args[n++] = "--set";
            args[n++] = owned[n_owned++];
        } else if ((a[0] != '-' || strcmp(a, "-") == 0) && !file) {
            file = a;
        } else {
            args[n++] = argv[i];
            if ((strcmp(a, "--set") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc)
                args[n++] = argv[++i];
        }
    }
    tern_lp_precision prec;
    if (tern_lp_parse_precision(precision, &prec) != 0) {
        fprintf(stderr, "tern import: unknown precision '%s' (ns, us, ms or s)\n", precision);
        status = 2;
        goto out;
    }
    if (tern_config_create(&cfg) != 0 || tern_config_add_schema(cfg, tern_config_schema_core) != 0
        || tern_config_add_schema(cfg, tern_tsdb_config_schema) != 0)
        goto out;
    if (tern_config_parse_args(cfg, &n, args) != 0) {
        fprintf(stderr, "tern import: %s\n", tern_config_error(cfg));
        status = 2;
        goto out;
    }
    if (n > 1) {
        fprintf(stderr, "tern import: unexpected argument '%s'\n", args[1]);
        usage(stderr);
        status = 2;
        goto out;
    }
    tern_tsdb_options o;
    char dir[4096], err[512];
    if (tern_tsdb_config_load(cfg, &o, dir, sizeof dir, err, sizeof err) != 0) {
        fprintf(stderr, "tern import: %s\n", err);
        status = 2;
        goto out;
    }
    if (!device_tag)
        device_tag = tern_config_get_string(cfg, "tsdb.device_tag");
    o.no_wal = true;
    o.retention_ms = 0; /* an import of old data must not be dropped as it lands */
    o.warm_retention_ms = 0;
    struct stat st;
    if (stat(tern_config_get_string(cfg, "data.dir"), &st) != 0)
        (void)mkdir(tern_config_get_string(cfg, "data.dir"), 0755);
    FILE *in = stdin;
    if (file && strcmp(file, "-") != 0) {
        in = fopen(file, "rb");
        if (!in) {
            fprintf(stderr, "tern import: cannot open %s: %s\n", file, strerror(errno));
            goto out;
        }
    }
    tern_tsdb *db = NULL;
    int rc = tern_tsdb_open(&o, &db, err, sizeof err);
    if (rc) {
        fprintf(stderr, "tern import: %s\n", err);
        if (in != stdin)
            fclose(in);
        goto out;
    }
    tern_tsdb_batch *batch = NULL;
    char *buf = tern_malloc(SLICE + 1);
    if (!buf || tern_tsdb_batch_new(&batch) != 0) {
        rc = TERN_ENOMEM;
    }
    tern_lp_ingest_opts io = { device_tag, prec, tern_clock_now_ms() };
    uint64_t lines = 0, points = 0, bad = 0, refused = 0, skipped = 0, bytes_in = 0;
    char first_bad[700] = "";
    size_t have = 0;
    bool tty = isatty(2);
    uint64_t t0 = tern_clock_mono_ns(), last_progress = t0;
    while (rc == 0) {
        size_t got = fread(buf + have, 1, SLICE - have, in);
        bool eof = got == 0;
        have += got;
        bytes_in += got;
        if (have == 0)
            break;
        /* ingest up to the last complete line (everything at the end of the input) */
        size_t upto = have;
        if (!eof) {
            while (upto > 0 && buf[upto - 1] != '\n')
                upto--;
            if (upto == 0) {
                if (have < SLICE)
                    continue;
                fprintf(stderr, "tern import: a line longer than %u bytes\n", SLICE);
                rc = TERN_ETOOBIG;
                break;
            }
        }
        tern_lp_ingest_result res;
        rc = tern_lp_ingest(db, batch, buf, upto, &io, &res, NULL);
        if (rc)
            break;
        lines += res.lines;
        points += res.write.accepted;
        bad += res.bad_lines;
        refused += res.write.refused;
        skipped += res.skipped_fields;
        if (res.first_error && !first_bad[0])
            snprintf(first_bad, sizeof first_bad, "%s (line %llu of the input)",
                res.first_error_text, (unsigned long long)(lines - res.lines + 1));
        if (res.write.first_error && !first_bad[0])
            snprintf(first_bad, sizeof first_bad, "%s", res.write.err);
        memmove(buf, buf + upto, have - upto);
        have -= upto;
        rc = tern_tsdb_maintain(db, INT64_MIN);
        uint64_t now = tern_clock_mono_ns();
        if (tty && now - last_progress > 1000000000ull) {
            last_progress = now;
            double s = (double)(now - t0) / 1e9;
            fprintf(stderr, "\r%llu points, %llu lines, %.2f M points/s, %.0f MB read   ",
                (unsigned long long)points, (unsigned long long)lines, (double)points / s / 1e6,
                (double)bytes_in / 1e6);
        }
        if (eof)
            break;
    }
    if (tty)
        fprintf(stderr, "\r%*s\r", 70, "");
    if (in != stdin)
        fclose(in);
    double ingest_s = (double)(tern_clock_mono_ns() - t0) / 1e9;
    if (rc == 0)
        rc = tern_tsdb_flush(db);
    if (rc == 0)
        rc = tern_tsdb_compact(db);
    double total_s = (double)(tern_clock_mono_ns() - t0) / 1e9;
    tern_tsdb_stats ts;
    tern_tsdb_get_stats(db, &ts);
    int crc = tern_tsdb_close(db, true);
    if (rc == 0)
        rc = crc;
    tern_tsdb_batch_free(batch);
    tern_free(buf);
    if (rc) {
        fprintf(stderr, "tern import: %s\n", tern_strerror(rc));
        goto out;
    }
    dir_bytes = 0;
    nftw(dir, add_size, 16, FTW_PHYS);
    double bpp = points ? (double)dir_bytes / (double)points : 0;
    if (first_bad[0])
        fprintf(stderr, "tern import: first bad line: %s\n", first_bad);
    if (json) {
        printf("{\"points\":%llu,\"lines\":%llu,\"bad_lines\":%llu,\"refused\":%llu,"
               "\"skipped_fields\":%llu,\"series\":%llu,\"devices\":%llu,\"bytes\":%llu,"
               "\"bytes_per_point\":%.4f,\"ingest_seconds\":%.3f,\"total_seconds\":%.3f,"
               "\"points_per_s\":%.0f}\n",
            (unsigned long long)points, (unsigned long long)lines, (unsigned long long)bad,
            (unsigned long long)refused, (unsigned long long)skipped, (unsigned long long)ts.series,
            (unsigned long long)ts.devices, (unsigned long long)dir_bytes, bpp, ingest_s, total_s,
            ingest_s > 0 ? (double)points / ingest_s : 0);
    } else {
        printf("imported %llu points (%llu lines, %llu bad, %llu refused) into %llu series of "
               "%llu devices in %.1f s (%.2f M points/s)\n",
            (unsigned long long)points, (unsigned long long)lines, (unsigned long long)bad,
            (unsigned long long)refused, (unsigned long long)ts.series,
            (unsigned long long)ts.devices, total_s,
            total_s > 0 ? (double)points / total_s / 1e6 : 0);
        printf("on disk: %llu bytes in %s, %.3f bytes/point\n", (unsigned long long)dir_bytes, dir,
            bpp);
    }
    status = bad || refused ? 3 : 0;
out:
    tern_config_destroy(cfg);
    for (int i = 0; i < n_owned; i++)
        tern_free(owned[i]);
    tern_free(args);
    return status;
}

/*
 * cmd_query.c: `tern query`: query a data directory from the command line (the store must not
 * be open in another process; ask a running server over HTTP instead, docs/tsdb.md).
 *
 *   tern query [--data DIR] --device D [--metric M] [--from T] [--to T]            raw points
 *   tern query [--data DIR] [--device D|--tags k=v,..] [--metric M] --from T --to T
 *              --agg avg,max,... [--step DURATION] [--group-by TAG|*]              aggregates
 *   tern query [--data DIR] --last --device D                        newest point of each metric
 *
 * Times are ms since the epoch, RFC 3339 UTC, or now[-DURATION]. Prints one JSON object per
 * row (docs/tsdb.md); exit status 0, or 2 for a bad query (the reason on stderr).
 */
#include "tern/commands.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "tsdb/query_json.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_config.h"

#include <stdio.h>
#include <string.h>

const char tern_cmd_query_summary[] = "query the time-series store (raw, aggregates, last values)";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern query [--data DIR] --device D [--metric M] [--from T] [--to T]\n"
        "       tern query [--data DIR] [--device D | --tags k=v,...] [--metric M|*]\n"
        "                  --from T --to T --agg avg,min,max,sum,count,last,p95\n"
        "                  [--step DURATION] [--group-by TAG|*] [--tier auto|hot|warm]\n"
        "       tern query [--data DIR] --last --device D\n"
        "T: ms since the epoch, 2026-01-01T00:00:00Z, or now[-1h]. One JSON row per line.\n");
}

typedef struct out_ctx {
    tern_buf line;
    unsigned aggs;
    uint64_t rows;
} out_ctx;

static int print_row(void *arg, const tern_tsdb_row *row)
{
    out_ctx *o = arg;
    tern_buf_reset(&o->line);
    int rc = tern_tsdb_row_json(&o->line, o->aggs, row);
    if (rc)
        return rc;
    tern_buf_append_u8(&o->line, '\n');
    fwrite(o->line.data, 1, o->line.len, stdout);
    o->rows++;
    return 0;
}

int tern_cmd_query(int argc, char **argv)
{
    const char *device = NULL, *metric = NULL, *tags = NULL, *group_by = NULL, *from = NULL,
               *to = NULL, *step = NULL, *agg = NULL, *data = NULL, *tier = NULL;
    bool last = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else if (strcmp(a, "--last") == 0) {
            last = true;
            continue;
        } else if (strcmp(a, "--device") == 0) {
            slot = &device;
        } else if (strcmp(a, "--metric") == 0) {
            slot = &metric;
        } else if (strcmp(a, "--tags") == 0) {
            slot = &tags;
        } else if (strcmp(a, "--group-by") == 0) {
            slot = &group_by;
        } else if (strcmp(a, "--from") == 0) {
            slot = &from;
        } else if (strcmp(a, "--to") == 0) {
            slot = &to;
        } else if (strcmp(a, "--step") == 0) {
            slot = &step;
        } else if (strcmp(a, "--agg") == 0) {
            slot = &agg;
        } else if (strcmp(a, "--data") == 0) {
            slot = &data;
        } else if (strcmp(a, "--tier") == 0) {
            slot = &tier;
        }
        if (!slot || i + 1 >= argc) {
            fprintf(stderr, "tern query: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
        *slot = argv[++i];
    }
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    int64_t now = tern_clock_now_ms();
    q.start_ms = INT64_MIN;
    q.end_ms = INT64_MAX;
    char err[300] = "";
    if ((from && tern_tsdb_parse_time(from, now, &q.start_ms) != 0)
        || (to && tern_tsdb_parse_time(to, now, &q.end_ms) != 0)) {
        fprintf(stderr, "tern query: bad time '%s' (ms since the epoch, RFC 3339 UTC, now-1h)\n",
            from && tern_tsdb_parse_time(from, now, &q.start_ms) != 0 ? from : to);
        return 2;
    }
    if (step && tern_tsdb_parse_duration(step, &q.step_ms) != 0) {
        fprintf(stderr, "tern query: bad step '%s' (e.g. 60s, 5m, 1h)\n", step);
        return 2;
    }
    if (agg && tern_tsdb_agg_parse(agg, &q.aggs, err, sizeof err) != 0) {
        fprintf(stderr, "tern query: %s\n", err);
        return 2;
    }
    if ((last || !agg) && !device) {
        fprintf(stderr, "tern query: raw points and --last need --device\n");
        return 2;
    }
    if (tier) {
        if (strcmp(tier, "hot") == 0)
            q.tier = TERN_TIER_HOT;
        else if (strcmp(tier, "warm") == 0)
            q.tier = TERN_TIER_WARM;
        else if (strcmp(tier, "auto") != 0) {
            fprintf(stderr, "tern query: --tier is auto, hot or warm\n");
            return 2;
        }
    }
    q.sel.device = device;
    q.sel.metric = metric;
    q.sel.tags = tags;
    q.sel.group_by = group_by;
    tern_config *cfg = NULL;
    int status = 1;
    if (tern_config_create(&cfg) != 0 || tern_config_add_schema(cfg, tern_config_schema_core) != 0
        || tern_config_add_schema(cfg, tern_tsdb_config_schema) != 0)
        goto out;
    if (data && tern_config_set(cfg, "data.dir", data) != 0)
        goto out;
    tern_tsdb_options o;
    char dir[4096];
    if (tern_tsdb_config_load(cfg, &o, dir, sizeof dir, err, sizeof err) != 0) {
        fprintf(stderr, "tern query: %s\n", err);
        goto out;
    }
    o.retention_ms = 0;
    tern_tsdb *db;
    int rc = tern_tsdb_open(&o, &db, err, sizeof err);
    if (rc) {
        fprintf(stderr, "tern query: %s\n", err);
        goto out;
    }
    out_ctx oc = { TERN_BUF_INIT, q.aggs, 0 };
    if (last)
        rc = tern_tsdb_last(db, device, print_row, &oc);
    else
        rc = tern_tsdb_query_run(db, &q, print_row, &oc, err, sizeof err);
    tern_tsdb_close(db, false);
    tern_buf_free(&oc.line);
    if (rc == TERN_ENOTFOUND) {
        fprintf(stderr, "tern query: no device '%s'\n", device);
        status = 2;
    } else if (rc) {
        fprintf(stderr, "tern query: %s\n", err[0] ? err : tern_strerror(rc));
        status = rc == TERN_EINVAL ? 2 : 1;
    } else {
        status = 0;
    }
out:
    tern_config_destroy(cfg);
    return status;
}

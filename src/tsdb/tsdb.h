/*
 * tsdb.h: tern's time-series store. A pure library (no event loop, no network): it stores every
 * point tern receives and answers queries. Used in-process by `tern serve`, by the HTTP face
 * (src/api) and by the `tern import` / `tern query` commands.
 *
 * Model: a series is (device, metric). A device has tags (fleet, region, model, ...) stored once
 * per device, not per point. A series holds points (ts in ms since the epoch, value); its value
 * kind (float64 or int64) is fixed by its first point. The idempotency key is (series, ts): a
 * point written twice is stored once, the last write wins.
 *
 * Write path: tern_tsdb_write applies a batch to the in-memory head and appends it to the WAL;
 * the batch is durable (acknowledge it) once tern_tsdb_wait(seq) returns 0 or the
 * tern_tsdb_notify callback reports 0. kill -9 at any moment loses nothing that was reported
 * durable: the WAL is replayed on open. Points may arrive in any order and any lateness: points
 * behind the head go to a backfill buffer that becomes a block covering their own time range.
 * The head is cut into immutable blocks (one file each, read through mmap, format in
 * docs/formats/tsdb-block.md) per time range; compaction merges blocks; retention drops whole
 * blocks, handing them to the cold hook first.
 *
 * Threading: a tern_tsdb is thread-safe. Writers of different devices run in parallel: the
 * head is split into lock stripes by device (docs/tsdb.md, "Write path"); creating devices,
 * series or metrics briefly takes the store-wide lock. Concurrent writes of the same (series,
 * ts) are ordered alike in the head and the WAL, so a replay shows the value queries showed.
 * Queries read immutable blocks without locks and copy the head's part under its stripe. Block
 * cutting, compaction and retention run on the caller of tern_tsdb_maintain (a background
 * thread when options.background is set); a cut pauses writers while it runs.
 *
 * Errors: 0 or a negative TERN_E* code; messages for the user go to an err buffer where offered.
 */
#ifndef TERN_TSDB_TSDB_H
#define TERN_TSDB_TSDB_H

#include "tsdb/codec.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tern_tsdb tern_tsdb;

/* A block that leaves the hot tier is offered to the cold hook before it is deleted. The hook
 * reads the block through tern_tsdb_block_* (path given) and returns 0 to let deletion go on;
 * non-zero keeps the block and retries at the next maintenance pass. */
typedef int (*tern_tsdb_cold_hook)(
    void *arg, const char *block_path, int64_t min_ts, int64_t max_ts);

typedef struct tern_tsdb_options {
    const char *dir;              /* data directory (created); blocks/ and wal/ live under it */
    int64_t block_duration_ms;    /* the head is cut into blocks this long (default 30 min) */
    int64_t retention_ms;         /* hot tier: drop blocks entirely older than this (0: keep) */
    int64_t warm_retention_ms;    /* warm tier (1-minute windows): likewise (default 90 d) */
    uint32_t wal_group_commit_ms; /* longest wait before the fsync covering a write (default 5) */
    bool wal_fsync;               /* false: never fsync (import, tests); default true */
    bool no_wal; /* offline load: no WAL at all; nothing is durable before tern_tsdb_flush */
    uint64_t max_series; /* series limit: beyond it new series are refused (0: none) */
    /* per-tenant series limit: a tenant is a value of the device tag tenant_tag (devices
     * without it form the tenant ""); a device's series count toward the tenant its tags name
     * (moved along when they change). Beyond the limit the tenant's new series are refused
     * (0: none). tenant_tag is copied at open; NULL means "fleet". */
    uint64_t max_series_per_tenant;
    const char *tenant_tag;
    bool background; /* run maintenance (cut, compact, retention) on a thread */
    tern_tsdb_cold_hook cold_hook;
    void *cold_arg;
} tern_tsdb_options;

/* tern_tsdb_options_default fills the defaults named above. */
void tern_tsdb_options_default(tern_tsdb_options *o);

/* tern_tsdb_open opens or creates the store in o->dir, loads its blocks and replays its WAL.
 * One process at a time (an flock on DIR/LOCK): TERN_EAGAIN if another holds it. A corrupt
 * block is reported in err and refused (TERN_ECORRUPT) rather than silently dropped. */
int tern_tsdb_open(const tern_tsdb_options *o, tern_tsdb **out, char *err, size_t err_cap);

/* tern_tsdb_close flushes the head into blocks (so no WAL is left to replay) when flush is true,
 * syncs, and frees everything. Returns the first error met; the store is freed regardless. */
int tern_tsdb_close(tern_tsdb *db, bool flush);

/* ---- writing ---------------------------------------------------------------------------- */

/* A batch of points, grouped by device. Build it, write it, reset it, reuse it. Strings are
 * copied into the batch. Not thread-safe (one batch per thread). */
typedef struct tern_tsdb_batch tern_tsdb_batch;

int tern_tsdb_batch_new(tern_tsdb_batch **out);
void tern_tsdb_batch_free(tern_tsdb_batch *b);
void tern_tsdb_batch_reset(tern_tsdb_batch *b);
/* tern_tsdb_batch_device starts the points of one device. tags is "k=v,k=v" (sorted or not;
 * NULL or "" for none); they replace the device's stored tags when they differ. */
int tern_tsdb_batch_device(
    tern_tsdb_batch *b, const char *device, size_t device_len, const char *tags, size_t tags_len);
/* tern_tsdb_batch_add_f64 / _i64 add a point of the current device. TERN_EINVAL without a
 * current device or with an empty metric name. */
int tern_tsdb_batch_add_f64(
    tern_tsdb_batch *b, const char *metric, size_t metric_len, int64_t ts_ms, double v);
int tern_tsdb_batch_add_i64(
    tern_tsdb_batch *b, const char *metric, size_t metric_len, int64_t ts_ms, int64_t v);
size_t tern_tsdb_batch_points(const tern_tsdb_batch *b);

/* What tern_tsdb_write did with a batch. A point is refused (and counted) when it would create a
 * series beyond the series limit (TERN_EQUOTA) or its kind conflicts with its series'
 * (TERN_EINVAL: "field type conflict"). first_error_point is the index (in add order) of the
 * first refused point, with its reason in err. */
typedef struct tern_tsdb_write_result {
    size_t accepted, refused;
    size_t first_error_point;
    int first_error;
    char err[160];
} tern_tsdb_write_result;

/* tern_tsdb_write applies the batch and appends it to the WAL; *seq (may be NULL) is the WAL
 * sequence to wait for. The accepted points are visible to queries at once and durable after
 * tern_tsdb_wait(seq). Returns 0 (even when some points were refused: see res), or
 * TERN_EIO / TERN_ECLOSED when nothing was stored. */
int tern_tsdb_write(
    tern_tsdb *db, const tern_tsdb_batch *b, uint64_t *seq, tern_tsdb_write_result *res);
/* tern_tsdb_wait blocks until the WAL is durable up to seq. 0 or the I/O error. */
int tern_tsdb_wait(tern_tsdb *db, uint64_t seq);
/* tern_tsdb_notify calls cb(arg, rc) once, from the WAL's sync thread, when seq is durable. */
int tern_tsdb_notify(tern_tsdb *db, uint64_t seq, void (*cb)(void *arg, int rc), void *arg);

/* ---- maintenance ------------------------------------------------------------------------ */

/* tern_tsdb_maintain cuts head ranges that are complete into blocks, writes backfill blocks,
 * compacts, and applies retention (now_ms is the wall clock; retention compares against it).
 * Safe to call from any thread at any time; a no-op when there is nothing to do. */
int tern_tsdb_maintain(tern_tsdb *db, int64_t now_ms);
/* tern_tsdb_flush cuts the whole head (and backfill) into blocks now and truncates the WAL. */
int tern_tsdb_flush(tern_tsdb *db);
/* tern_tsdb_compact merges all blocks whose ranges overlap or that lie in one compaction window
 * (12 x block duration) into one block per window. */
int tern_tsdb_compact(tern_tsdb *db);

typedef struct tern_tsdb_stats {
    uint64_t devices, series, head_points, blocks, block_bytes, block_points, wal_bytes;
    uint64_t points_written, points_refused, series_refused, head_bytes;
    uint64_t warm_blocks, warm_bytes, warm_windows;
} tern_tsdb_stats;
void tern_tsdb_get_stats(tern_tsdb *db, tern_tsdb_stats *out);

/* ---- queries ---------------------------------------------------------------------------- */

typedef enum tern_tsdb_agg {
    TERN_AGG_NONE = 0, /* raw points */
    TERN_AGG_AVG = 1 << 0,
    TERN_AGG_MIN = 1 << 1,
    TERN_AGG_MAX = 1 << 2,
    TERN_AGG_SUM = 1 << 3,
    TERN_AGG_COUNT = 1 << 4,
    TERN_AGG_LAST = 1 << 5,
    TERN_AGG_P95 = 1 << 6,
} tern_tsdb_agg;

/* tern_tsdb_agg_parse reads "avg,max" into a mask. TERN_EINVAL names the bad word in err. */
int tern_tsdb_agg_parse(const char *s, unsigned *mask, char *err, size_t err_cap);
const char *tern_tsdb_agg_name(unsigned one_bit);

/*
 * Tiers: raw points (hot) or 1-minute windows (warm). AUTO answers an aggregate query from the
 * warm tier where that is exact enough and cheaper: when the buckets are whole minutes and
 * either the step is at least 10 minutes or the range reaches back past the hot tier's
 * retention; the part of the range not yet rolled up (the head) is read raw. p95 from warm
 * windows comes from merged sketches (1% relative accuracy); from raw points it is exact.
 */
typedef enum tern_tsdb_tier {
    TERN_TIER_AUTO = 0,
    TERN_TIER_HOT = 1,
    TERN_TIER_WARM = 2,
} tern_tsdb_tier;

/* Which series a query reads: one device or all devices whose tags match every tag filter;
 * one metric or every metric ("*" or NULL). */
typedef struct tern_tsdb_selector {
    const char *device;   /* NULL: every device (filtered by tags) */
    const char *metric;   /* NULL or "*": every metric */
    const char *tags;     /* "k=v,k=v": all must match; NULL: no filter */
    const char *group_by; /* tag key: aggregate across series per (group value, metric);
                           * "*": one group of every selected series per metric */
} tern_tsdb_selector;

typedef struct tern_tsdb_query {
    tern_tsdb_selector sel;
    int64_t start_ms, end_ms; /* [start, end) */
    int64_t step_ms;          /* with aggs: bucket width; 0: one bucket over the whole range */
    unsigned aggs;            /* 0: raw points */
    uint64_t max_rows;        /* stop with TERN_ETOOBIG beyond this many rows (0: no limit) */
    tern_tsdb_tier tier;      /* which tier answers (default auto) */
    tern_tsdb_tier tier_used; /* out: HOT, WARM, or AUTO for both */
} tern_tsdb_query;

/* One output row: a raw point, or a bucket's aggregates (values[i] for the i-th set bit of
 * aggs, low bit first). device is NULL for grouped rows (group holds the tag value). */
typedef struct tern_tsdb_row {
    const char *device, *metric, *group;
    const char *tags;
    int64_t ts_ms;
    tern_value_kind kind; /* raw rows */
    union {
        double f;
        int64_t i;
    } v;
    double values[8];
    uint64_t count;
} tern_tsdb_row;

/* The callback sees rows series by series (raw: in time order; grouped: group by group). A
 * non-zero return stops the query and is returned. */
typedef int (*tern_tsdb_row_fn)(void *arg, const tern_tsdb_row *row);

/* tern_tsdb_query_run answers q (and sets q->tier_used). TERN_EINVAL (err says why) for a
 * bad query. */
int tern_tsdb_query_run(
    tern_tsdb *db, tern_tsdb_query *q, tern_tsdb_row_fn fn, void *arg, char *err, size_t err_cap);

/* tern_tsdb_last reports the newest point of every metric of device (rows in metric name order).
 * TERN_ENOTFOUND for an unknown device. */
int tern_tsdb_last(tern_tsdb *db, const char *device, tern_tsdb_row_fn fn, void *arg);

/* ---- windows from the stream processor (the warm tier's recent part) -------------------- */

/* A closed 1-minute window of one series, as the stream processor computed it in event time. */
typedef struct tern_tsdb_window {
    const char *device;
    size_t device_len;
    const char *metric;
    size_t metric_len;
    int64_t start_ms; /* a multiple of 60,000: the warm tier's windows */
    uint64_t count;   /* >= 1 */
    double sum, min, max, last;
    /* the window's values for p95; may be NULL only when count <= 2 or min == max (the
     * aggregates imply them) */
    const struct tern_sketch *sketch;
} tern_tsdb_window;

/*
 * tern_tsdb_write_windows hands the store n windows the stream closed (or corrected: a window
 * written again replaces the earlier one). They are provisional: warm-tier queries read them
 * for the range the head still holds, and the windows recomputed from raw points at the cut
 * replace them (late points included). Not durable (the raw points are). complete_before:
 * every window starting before it has been written (the stream's closed frontier); valid_from:
 * windows from here on saw every point (after a restart the stream resumes from a committed
 * offset, and the windows before are partial); INT64_MIN for either: no news. Written as blocks
 * of a few minutes, in the caller's thread. Returns 0, TERN_EINVAL (a window is malformed:
 * nothing taken), TERN_ENOMEM or TERN_EIO.
 */
int tern_tsdb_write_windows(tern_tsdb *db, const tern_tsdb_window *w, size_t n,
    int64_t complete_before, int64_t valid_from);
/* tern_tsdb_flush_windows writes the buffered windows now (tests, shutdown). */
int tern_tsdb_flush_windows(tern_tsdb *db);

#endif

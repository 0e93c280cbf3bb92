/*
 * window.h: the stream processor's event-time core: dedup by (device, metric, event time),
 * per-partition watermarks with allowed lateness and idleness, tumbling windows per series,
 * a late side output and corrections of windows already emitted (docs/stream.md).
 *
 * A pure library: no I/O, no threads, no clock reads. The caller passes each point's arrival
 * (processing) time and calls tern_window_tick as processing time passes; results come back
 * through callbacks, synchronously, from the call that caused them.
 *
 * Promises:
 *   - Windows are by event time only: [start, start + window_ms) with start a multiple of
 *     window_ms (epoch aligned, as the TSDB's warm tier), one set per series (device, metric).
 *   - A partition's watermark is the largest event time it has delivered minus the allowed
 *     lateness. The engine's watermark is the minimum over the partitions that are not idle
 *     (no data for idle_timeout_ms of processing time); when every partition is idle it moves to
 *     the end of the newest window holding data. It never goes back.
 *   - A window is emitted once (correction = false) when the watermark reaches its end. A point
 *     whose window was already emitted is late: it is passed to on_point and on_late, and the
 *     window's aggregate, recomputed with it, is emitted again with correction = true, as long
 *     as the window is still retained (retain_ms after the closed frontier). Older points are
 *     late and uncorrected (counted): the TSDB recomputes warm windows from raw, so the end
 *     state never depends on this engine's retention.
 *   - Dedup is exact for every point the engine still holds (the points of open and retained
 *     windows) up to dedup_capacity points in all; beyond it the oldest windows' points are
 *     folded into their aggregates (counted as dedup evictions), so memory stays bounded.
 *   - Window aggregates equal those computed from scratch over the window's accepted points,
 *     whatever the arrival order: count, min, max, last (value at the largest event time), a
 *     sketch (tsdb/sketch.h, 1%) and a sum that is exact for decimal values (the TSDB's rule).
 *
 * Device and metric bytes are untrusted: lengths are checked, content is opaque. Not
 * thread-safe: one engine, one thread at a time.
 */
#ifndef TERN_STREAM_WINDOW_H
#define TERN_STREAM_WINDOW_H

#include "tsdb/sketch.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_WINDOW_MAX_NAME 256u /* device and metric lengths: 1 .. this many bytes */
#define TERN_WINDOW_MAX_PARTITIONS 65536u
/* Event times are accepted in [-TERN_WINDOW_TS_LIMIT, TERN_WINDOW_TS_LIMIT] ms. */
#define TERN_WINDOW_TS_LIMIT (INT64_C(1) << 53)

typedef struct tern_window_engine tern_window_engine;

typedef struct tern_window_config {
    int64_t window_ms;           /* window width, 1 .. 2^31 ms (default 60000) */
    int64_t allowed_lateness_ms; /* watermark lag behind the max event time (default 30000) */
    int64_t idle_timeout_ms;     /* processing time without data before a partition stops
                                    holding the watermark; 0 = never idle (default 60000) */
    int64_t retain_ms;           /* how long behind the closed frontier emitted windows stay
                                    correctable (default 5 windows) */
    uint32_t n_partitions;       /* 1 .. TERN_WINDOW_MAX_PARTITIONS (default 1) */
    size_t dedup_capacity;       /* points held for dedup, at least 1 (default 1 << 22) */
} tern_window_config;

/* An accepted, duplicate or late point, as passed to the callbacks (all fields borrowed). */
typedef struct tern_window_point {
    uint32_t partition;
    const char *device;
    size_t device_len;
    const char *metric;
    size_t metric_len;
    int64_t ts_ms; /* event time */
    double value;
    int64_t arrival_ms; /* processing time given to tern_window_add */
} tern_window_point;

/* A window's aggregate, as passed to on_window (all pointers borrowed for the call). */
typedef struct tern_window_result {
    const char *device;
    size_t device_len;
    const char *metric;
    size_t metric_len;
    int64_t start_ms, end_ms; /* [start, end) */
    uint64_t count;
    double sum, min, max; /* min and max skip NaN (NaN only when every value is) */
    double last;          /* the value at last_ts_ms, the window's largest event time */
    int64_t last_ts_ms;
    const tern_sketch *sketch; /* values of the window; valid only during the callback */
    bool correction; /* false: first emission at close; true: replaces an earlier emission (or
                        is the first emission of a window created by late data) */
} tern_window_result;

/*
 * Callbacks (any may be NULL). A nonzero return stops the call that invoked it and is returned
 * from it; see each function for what state it leaves. arg is passed through.
 */
typedef struct tern_window_callbacks {
    /* on_point: a point that is not a duplicate (late or not): for the hot tier. */
    int (*on_point)(void *arg, const tern_window_point *p);
    /* on_duplicate: a point whose (device, metric, ts) the engine holds: dropped. */
    int (*on_duplicate)(void *arg, const tern_window_point *p);
    /* on_late: a point whose window was already emitted (after its on_point): side output. */
    int (*on_late)(void *arg, const tern_window_point *p);
    /* on_window: a closed window or a correction. */
    int (*on_window)(void *arg, const tern_window_result *w);
    void *arg;
} tern_window_callbacks;

typedef struct tern_window_stats {
    /* state */
    uint64_t n_series;          /* series holding at least one window */
    uint64_t n_open_windows;    /* not yet emitted */
    uint64_t n_closed_windows;  /* emitted, retained for corrections */
    uint64_t n_dedup_entries;   /* points held (dedup keys) */
    uint64_t state_bytes;       /* heap bytes of all of the above, hash tables included */
    int64_t watermark_ms;       /* INT64_MIN before any */
    int64_t closed_before_ms;   /* windows starting before this are emitted (INT64_MIN: none) */
    uint32_t n_idle_partitions; /* at the last tick or add */
    /* counters */
    uint64_t n_points;           /* valid points given to add */
    uint64_t n_accepted;         /* passed to on_point */
    uint64_t n_duplicates;       /* dropped by dedup */
    uint64_t n_out_of_order;     /* accepted with ts below their partition's max event time */
    uint64_t n_late;             /* accepted after their window was emitted */
    uint64_t n_late_uncorrected; /* of those, too old to be retained: left to the TSDB rollup */
    uint64_t n_windows_emitted;  /* first emissions */
    uint64_t n_corrections;      /* correction emissions */
    uint64_t n_dedup_evictions;  /* points folded out of the dedup state by the capacity */
} tern_window_stats;

/* tern_window_config_default fills c with the defaults documented in tern_window_config. */
void tern_window_config_default(tern_window_config *c);

/*
 * tern_window_engine_new makes an engine for config c (copied) and callbacks cb (copied; cb
 * may be NULL for none). *out is set only on success; free with tern_window_engine_free.
 * Returns 0, TERN_EINVAL (a config value out of range) or TERN_ENOMEM.
 */
int tern_window_engine_new(
    const tern_window_config *c, const tern_window_callbacks *cb, tern_window_engine **out);

/* tern_window_engine_free releases e and all its state, emitting nothing (NULL is a no-op). */
void tern_window_engine_free(tern_window_engine *e);

/*
 * tern_window_add feeds one decoded point from partition, with event time ts_ms and value v,
 * that arrived at processing time now_ms (earlier than a previous now_ms counts as that one).
 * It first does what tern_window_tick(e, now_ms) does, then: a duplicate goes to on_duplicate;
 * otherwise on_point, then the point joins its window; if that window was emitted already,
 * on_late and, while it is retained, on_window with the corrected aggregate. Finally the
 * partition's watermark advances, which may emit closed windows.
 * Returns 0; TERN_EINVAL (partition out of range, a name empty or longer than
 * TERN_WINDOW_MAX_NAME, ts_ms beyond TERN_WINDOW_TS_LIMIT: nothing changed); TERN_ENOMEM (the
 * point was passed to on_point but is not in any window: the TSDB rollup covers it); or a
 * callback's nonzero return (from on_point: the point is not taken; from a later callback: the
 * point is taken, a failed window emission is retried by the next tick).
 */
int tern_window_add(tern_window_engine *e, uint32_t partition, const char *device, size_t dlen,
    const char *metric, size_t mlen, int64_t ts_ms, double v, int64_t now_ms);

/*
 * tern_window_tick advances processing time to now_ms: partitions silent for idle_timeout_ms
 * stop holding the watermark; windows whose end the watermark reached are emitted; windows
 * older than the retention are dropped. Returns 0 or on_window's nonzero return (the windows
 * not yet emitted are emitted by the next call).
 */
int tern_window_tick(tern_window_engine *e, int64_t now_ms);

/*
 * tern_window_flush emits every open window (as if the watermark were infinite) and then drops
 * all windows and dedup state; later points for the flushed windows are late and uncorrected.
 * For shutdown and tests. Returns 0 or on_window's nonzero return (state kept; call again).
 */
int tern_window_flush(tern_window_engine *e);

/* tern_window_get_stats fills *out with e's state sizes and counters. */
void tern_window_get_stats(const tern_window_engine *e, tern_window_stats *out);

#endif

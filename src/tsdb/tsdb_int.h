/*
 * tsdb_int.h: the TSDB engine's private structures, shared by tsdb.c (open, write, WAL glue),
 * index.c (devices, metrics, series), head.c (per-series in-memory points), block.c (immutable
 * block files), merge.c (combining sorted runs) and query.c. Not a public API.
 *
 * Memory layout of the head, chosen for <= 1 KB per active series at one point per 10 s:
 *   - a series keeps its newest points raw in a small sorted buffer (TSDB_HEAD_BUF points);
 *   - a full buffer is sealed into a compressed fragment (a codec chunk) appended to the series'
 *     fragment bytes; fragments stay until the head range is cut into a block;
 *   - points older than the buffer's first point (out of order, backfill) go to the series'
 *     sorted late list, which leaves at the next cut (merged into the block of its range, or a
 *     backfill block of its own that overlaps an older one until compaction merges them).
 * Values are kept as their 64 raw bits (float64 or int64 per the series' kind).
 */
#ifndef TERN_TSDB_TSDB_INT_H
#define TERN_TSDB_TSDB_INT_H

#include "base/buf.h"
#include "tsdb/tsdb.h"
#include "tsdb/sketch.h"
#include "tsdb/wal.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TSDB_HEAD_BUF 16u   /* raw points per series before sealing a fragment */
#define TSDB_HEAD_FRAGS 24u /* fragments per series before they are merged into one chunk */
#define TSDB_COMPACT_BLOCKS                                                                        \
    12u                   /* compaction merges the blocks of windows this many blocks long         \
                           */
#define TSDB_KIND_WARM 3u /* a block series entry holding 1-minute windows (warm.c) */
#define TSDB_WINDOW_MS 60000

typedef struct tsdb_point {
    int64_t ts;
    uint64_t v;
} tsdb_point;

typedef struct tsdb_series {
    uint32_t id;     /* global id: index in tern_tsdb.series, WAL reference */
    uint32_t device; /* device id */
    uint32_t metric; /* metric id */
    uint8_t kind;    /* tern_value_kind */
    uint8_t n_buf;   /* points in buf */
    uint8_t n_frags; /* chunks in frag */
    uint8_t pad;
    uint32_t n_frag_points;     /* points held in frag */
    struct tsdb_stripe *stripe; /* the lock stripe of its device: guards everything below */
    uint32_t frag_len, frag_cap;
    uint32_t n_late, cap_late;
    uint8_t *frag;    /* [varint chunk length][chunk] ... in time order */
    tsdb_point *late; /* sorted by ts, unique */
    int64_t last_ts;  /* newest point seen by the head (for last-value queries) */
    uint64_t last_v;
    tsdb_point buf[TSDB_HEAD_BUF]; /* sorted by ts, unique */
} tsdb_series;

typedef struct tsdb_device {
    char *name;
    char *tags; /* canonical "k=v,k=v" sorted by key, or NULL */
    uint32_t id;
    uint32_t name_len;
    uint32_t n_series, cap_series;
    uint32_t *series; /* series ids, sorted by metric name */
    uint32_t *metric; /* metric[i]: series[i]'s metric id (scanned without chasing pointers) */
    struct tsdb_series **sp; /* sp[i]: series[i] itself (writers use it without db->series) */
    uint32_t stripe;         /* index of its lock stripe (from the name's hash) */
    /* series known from blocks only (not in the head): metric id << 2 | kind, so that a new
     * point of the other kind is refused after a restart as before it */
    uint32_t *known;
    uint32_t n_known, cap_known;
    /* the stream writes its windows (warm_stream.c): warm queries may read them for the head's
     * range; a device written only over HTTP has none there (under mu) */
    bool stream_windows;
    /* with a per-tenant series limit: the tenant its series count toward (index into
     * db->tenants), set when its first series is made (under mu) */
    bool has_tenant;
    uint32_t tenant;
} tsdb_device;

typedef struct tsdb_metric {
    char *name;
    uint32_t len;
} tsdb_metric;

/* Open-addressing hash table of ids keyed by name (devices, metrics). */
typedef struct tsdb_name_map {
    uint32_t *slots; /* id + 1; 0 = empty */
    uint32_t cap;    /* power of two */
    uint32_t used;
} tsdb_name_map;

/* A tenant (a value of the tenant tag) and how many series its devices have. */
typedef struct tsdb_tenant {
    char *name;
    uint32_t len;
    uint64_t series;
} tsdb_tenant;

/*
 * Lock stripes. Devices are spread over TSDB_STRIPES stripes by the hash of their name; a
 * stripe's mutex guards the head of its devices' series (buffers, fragments, late lists, last
 * value), its device map and its counters. Writers of devices in different stripes run in
 * parallel. Lock order: db->mu, then stripes in ascending index; metric_mu and the WAL's
 * mutex are leaves. The index's shape (creating devices, metrics, series; changing tags;
 * db->devices / db->series / db->metrics arrays) changes only under db->mu AND the stripe of the
 * device concerned, so it may be read under either. Cutting, checkpointing and stats hold
 * db->mu and every stripe. A batch's WAL record is written per stripe, while that stripe is
 * held, so the WAL's order of the points of any one series is the head's order.
 */
#define TSDB_STRIPES 32u

typedef struct tsdb_stripe {
    pthread_mutex_t mu;
    struct tsdb_device **slots; /* open addressing by name hash, NULL = empty */
    uint32_t cap, used;
    /* counters, changed under mu */
    uint64_t head_points, late_points;
    uint64_t points_written, points_refused, series_refused;
    char pad[32]; /* 128 bytes: a stripe's lock and counters share no line with another's */
} tsdb_stripe;

/* A loaded block: one immutable file read through mmap. Refcounted so that queries keep using a
 * block that compaction or retention removes meanwhile. */
typedef struct tsdb_block {
    char *path;
    const uint8_t *map;
    size_t map_len;
    uint64_t seq;           /* higher sequence wins where blocks overlap */
    uint64_t src_seq;       /* warm blocks: the newest raw block their windows were computed from */
    int64_t min_ts, max_ts; /* of the points held */
    int64_t base_ts;        /* series entries' times are offsets from it */
    uint64_t n_points;
    uint32_t n_series, n_devices, n_metrics;
    const uint8_t *devices; /* fixed-size device entries, sorted by name */
    const uint8_t *series;  /* per-device series lists (varint-coded) */
    size_t series_len;
    const uint8_t *strings;
    size_t strings_len;
    const uint8_t *chunks;
    size_t chunks_len;
    uint32_t *metric_off; /* block-local metric index -> offset of "len name" in metric table */
    const uint8_t *metrics;
    size_t metrics_len;
    int refs;
    bool doomed; /* removed from the store: delete the file when the last reference goes */
} tsdb_block;

/* One series' entry in a block, decoded from the device's series list. */
typedef struct tsdb_block_series {
    const char *metric;
    uint32_t metric_len;
    uint8_t kind;
    uint32_t count;
    int64_t min_ts, max_ts;
    const uint8_t *chunk;
    uint32_t chunk_len;
    uint32_t crc;
} tsdb_block_series;

/* A tier's blocks, sorted by (min_ts, seq), with their files in DIR/subdir. */
typedef struct tsdb_blockset {
    const char *subdir;
    tsdb_block **b;
    size_t n, cap;
    uint64_t bytes, points;
} tsdb_blockset;

struct tern_tsdb {
    tern_tsdb_options opt;
    char *dir;
    int lock_fd;
    pthread_mutex_t mu;   /* the index's shape, the block lists, the head's range (see stripes) */
    tsdb_stripe *stripes; /* TSDB_STRIPES of them */
    pthread_mutex_t metric_mu; /* writers' metric lookups (creation also holds mu) */

    /* index */
    tsdb_device **devices; /* by id */
    uint32_t n_devices, cap_devices;
    tsdb_metric *metrics; /* by id */
    uint32_t n_metrics, cap_metrics;
    tsdb_name_map metric_map;
    tsdb_series **series; /* by id */
    uint32_t n_series, cap_series;
    tsdb_tenant *tenants; /* by id, only with a per-tenant series limit (under mu) */
    uint32_t n_tenants, cap_tenants;
    tsdb_name_map tenant_map;
    char *tenant_tag; /* opt.tenant_tag, owned */

    /* head */
    /* points < head_start are backfill; INT64_MIN until the first point. Written under mu
     * (and every stripe once set), read by writers with an atomic load. */
    int64_t head_start;
    int64_t head_max; /* newest ts seen (atomic max by writers) */

    /* blocks: raw points (hot) and 1-minute windows (warm) */
    tsdb_blockset hot, warm;
    /* the stream's provisional windows (warm_stream.c); NULL until used */
    struct tsdb_swarm *swarm;
    uint64_t next_block_seq;
    /* ranges cut into raw blocks whose windows are not computed yet (maintenance does it) */
    struct tsdb_rollup_job {
        int64_t lo, hi;
        uint64_t src_seq;
    } * rollups;
    size_t n_rollups, cap_rollups;

    /* WAL (NULL when disabled) */
    tern_wal *wal;
    tern_buf wal_rec;        /* checkpoint record being built (under mu and every stripe) */
    uint32_t wal_metrics_ok; /* metrics [0, n) already defined in the current WAL generation */
    uint32_t wal_devices_ok;
    uint32_t wal_series_ok;
    bool replaying;

    /* background maintenance */
    pthread_t bg;
    bool bg_running;
    pthread_mutex_t bg_mu;
    pthread_cond_t bg_cv;
    bool bg_stop;
    pthread_mutex_t maint_mu; /* one maintenance pass at a time */

    tern_tsdb_stats stats;
    bool closed;
};

/* A warm window: the aggregates of one series' points in [start, start + 1 min). */
typedef struct tsdb_window {
    int64_t start;
    uint64_t count;
    double sum, min, max, last;
    uint32_t sk_off, sk_len; /* its encoded sketch, in the owning tsdb_windows' sk */
} tsdb_window;

/* A time-ordered run of windows (tsdb_window in w) and their sketches' bytes. */
typedef struct tsdb_windows {
    tern_buf w, sk;
} tsdb_windows;

/* ---- warm.c ---- */
void tsdb_windows_reset(tsdb_windows *ws);
void tsdb_windows_free(tsdb_windows *ws);
size_t tsdb_windows_count(const tsdb_windows *ws);
/* A window of at most two values or of equal values stores no sketch: its aggregates imply it.
 * tsdb_window_sketch gives the window's sketch (decoded, or rebuilt; tern_sketch_free it). */
bool tsdb_window_sketch_implied(const tsdb_window *w);
int tsdb_window_sketch(const tsdb_window *w, const uint8_t *bytes, tern_sketch *out);
/* tsdb_windows_from_points appends the windows of sorted points (one series) to out. */
int tsdb_windows_from_points(const tsdb_point *p, size_t n, uint8_t kind, tsdb_windows *out);
/* tsdb_warm_encode appends ws as one warm chunk; tsdb_warm_decode appends the windows of a
 * warm chunk starting in [lo, hi). */
int tsdb_warm_encode(const tsdb_windows *ws, tern_buf *out);
int tsdb_warm_decode(const uint8_t *data, size_t len, int64_t lo, int64_t hi, tsdb_windows *out);
/* tsdb_windows_merge merges b into a; b wins for equal window starts. */
int tsdb_windows_merge(tsdb_windows *a, const tsdb_windows *b);

/* ---- warm_stream.c: the stream's provisional windows ---- */
typedef struct tsdb_swarm tsdb_swarm;
void tsdb_swarm_free(tern_tsdb *db);
/* Under db->mu: the range the flushed stream windows answer, [*from, *until) (INT64_MIN: none
 * or no bound), their blocks (NULL: none), and dropping the blocks before covered_until. */
void tsdb_swarm_range(const tern_tsdb *db, int64_t *from, int64_t *until);
const tsdb_blockset *tsdb_swarm_blocks(const tern_tsdb *db);
void tsdb_swarm_trim(tern_tsdb *db, int64_t covered_until);
/* Under db->mu: where windows recomputed from raw points cover the warm tier (query.c). */
int64_t tsdb_warm_covered_locked(const tern_tsdb *db);

/* ---- maint.c ---- */
int tsdb_blockset_add(tern_tsdb *db, tsdb_blockset *set, tsdb_block *b);
/* tsdb_blockset_remove drops b from the set; its file goes when its last reference does. */
void tsdb_blockset_remove(tsdb_blockset *set, tsdb_block *b);
void tsdb_blockset_free(tsdb_blockset *set);
int tsdb_blockset_load(tern_tsdb *db, tsdb_blockset *set, char *err, size_t err_cap);
/* tsdb_blockset_compact merges the blocks of every aligned window of width win that is before
 * the head (or every window, with force) and holds more than one block. */
int tsdb_blockset_compact(tern_tsdb *db, tsdb_blockset *set, int64_t win, bool force);
/* tsdb_blockset_retention drops blocks ending before cutoff (offering each to the cold hook
 * first when cold). */
int tsdb_blockset_retention(tern_tsdb *db, tsdb_blockset *set, int64_t cutoff, bool cold);
/* Rollups: ranges whose warm windows must be (re)computed. Caller holds mu to schedule. */
int tsdb_rollup_schedule(tern_tsdb *db, int64_t lo, int64_t hi, uint64_t src_seq);
int tsdb_rollup_schedule_block(tern_tsdb *db, const tsdb_block *b);
/* tsdb_rollup_schedule_missing schedules every raw block no warm block covers (at open). */
int tsdb_rollup_schedule_missing(tern_tsdb *db);
/* tsdb_rollup_run computes the scheduled rollups (caller holds maint_mu, not mu). */
int tsdb_rollup_run(tern_tsdb *db);

/* ---- query.c ---- */
/* tsdb_rollup recomputes, from the raw points, the warm windows of every series over [lo, hi)
 * (minute aligned) and writes them as one warm block recording src_seq. */
int tsdb_rollup(tern_tsdb *db, int64_t lo, int64_t hi, uint64_t src_seq);

/* ---- index.c ---- */
uint64_t tsdb_name_hash(const char *s, size_t len);
/* tsdb_stripe_of: the stripe index of a device name's hash. */
static inline uint32_t tsdb_stripe_of(uint64_t name_hash)
{
    return (uint32_t)(name_hash >> 59) & (TSDB_STRIPES - 1);
}
/* tsdb_device_get finds (or, with create, makes: caller holds mu and the device's stripe) the
 * device. Readers hold mu or the stripe. */
int tsdb_device_get(tern_tsdb *db, const char *name, size_t len, bool create, tsdb_device **out);
/* tsdb_device_find looks a device up by name and precomputed hash in its stripe's map (caller
 * holds that stripe or mu). NULL if absent. */
tsdb_device *tsdb_device_find(tern_tsdb *db, const char *name, size_t len, uint64_t hash);
/* tsdb_device_series finds the device's series of metric (hint: a likely position), or NULL. */
tsdb_series *tsdb_device_series(const tsdb_device *d, uint32_t metric, uint32_t *hint);
/* tsdb_device_known_kind: the kind blocks hold for the device's metric (0: none known). */
uint8_t tsdb_device_known_kind(const tsdb_device *d, uint32_t metric);
int tsdb_device_set_tags(
    tern_tsdb *db, tsdb_device *d, const char *tags, size_t len, bool *changed);
int tsdb_metric_get(tern_tsdb *db, const char *name, size_t len, bool create, uint32_t *out);
/* tsdb_device_know records that the device's metric holds kind in some block. */
int tsdb_device_know(tsdb_device *d, uint32_t metric, uint8_t kind);
/* tsdb_series_get finds or (create) makes the series (device, metric). TERN_EQUOTA beyond the
 * series limit, TERN_EINVAL on a kind conflict (kind 0 = any). */
int tsdb_series_get(
    tern_tsdb *db, tsdb_device *d, uint32_t metric, uint8_t kind, bool create, tsdb_series **out);
/* tsdb_tenant_over returns the device's tenant when it has reached the per-tenant series
 * limit (why a new series of it was refused), else NULL. Under mu. */
const tsdb_tenant *tsdb_tenant_over(const tern_tsdb *db, const tsdb_device *d);
/* tsdb_series_create_id makes a series with a given id (WAL replay). */
int tsdb_series_create_id(
    tern_tsdb *db, uint32_t id, uint32_t device, uint32_t metric, uint8_t kind);
int tsdb_device_create_id(tern_tsdb *db, uint32_t id, const char *name, size_t len);
int tsdb_metric_create_id(tern_tsdb *db, uint32_t id, const char *name, size_t len);
void tsdb_index_free(tern_tsdb *db);
/* tsdb_device_name_cmp orders device ids by device name (qsort_r, arg = the store). */
int tsdb_device_name_cmp(const void *a, const void *b, void *db);
/* tsdb_canonical_tags sorts "k=v,k=v" by key into out (NUL-terminated). TERN_EINVAL if malformed.
 */
int tsdb_canonical_tags(const char *tags, size_t len, tern_buf *out);
/* tsdb_tags_match: every k=v of filter is in tags (both canonical or not). */
bool tsdb_tags_match(const char *tags, const char *filter);
/* tsdb_tag_value finds key in tags; returns its value and length, or NULL. */
const char *tsdb_tag_value(const char *tags, const char *key, size_t *len);

/* ---- head.c ---- */
/* tsdb_head_add puts one point into the series (buffer, fragment seal, or late list). Caller
 * holds the series' stripe (or is alone, at open) and counts the outcome into the stripe's
 * head_points / late_points (not here: that would write the stripe's line per point).
 * Returns TSDB_HEAD_REPLACED (a point of that ts was there: the new value won), TSDB_HEAD_NEW,
 * TSDB_HEAD_NEW_LATE (into the late list), or TERN_ENOMEM / TERN_ECORRUPT. */
enum { TSDB_HEAD_REPLACED = 0, TSDB_HEAD_NEW = 1, TSDB_HEAD_NEW_LATE = 2 };
int tsdb_head_add(tsdb_series *s, int64_t ts, uint64_t v);
/* tsdb_head_collect appends the series' head points with ts in [lo, hi) to out (sorted, unique,
 * later writes winning): fragments, buffer and late list merged. It takes the series' stripe
 * itself: the caller must not hold it. */
int tsdb_head_collect(const tsdb_series *s, int64_t lo, int64_t hi, tern_buf *out);
/* tsdb_head_take removes and returns (like collect) every point with ts < before. Caller holds
 * the series' stripe. */
int tsdb_head_take(tsdb_series *s, int64_t before, tern_buf *out);
/* tsdb_head_min_ts: the series' oldest head point, INT64_MAX if none. It takes the series'
 * stripe itself; tsdb_head_min_ts_locked is for a caller that holds it. */
int64_t tsdb_head_min_ts(const tsdb_series *s);
int64_t tsdb_head_min_ts_locked(const tsdb_series *s);
/* tsdb_head_last reads the series' newest point (last_ts, last_v) under its stripe: false if it
 * has none. For queries (which hold db->mu, not the stripe): writers change it meanwhile. */
bool tsdb_head_last(const tsdb_series *s, tsdb_point *out);
/* tsdb_head_bytes: memory held by the series (caller holds its stripe). */
size_t tsdb_head_bytes(const tsdb_series *s);
void tsdb_series_free(tsdb_series *s);

/* ---- merge.c ---- */
/* tsdb_merge_into merges the sorted unique run b into the sorted unique run a (a tern_buf of
 * tsdb_point); on equal timestamps b wins. */
int tsdb_merge_into(tern_buf *a, const tsdb_point *b, size_t nb);

/* ---- block.c ---- */
typedef struct tsdb_block_writer tsdb_block_writer;
/* tsdb_block_writer_open starts a block in DIR/subdir ("blocks" or "warm"). */
int tsdb_block_writer_open(tern_tsdb *db, const char *subdir, int64_t min_ts, int64_t max_ts,
    uint64_t src_seq, tsdb_block_writer **out);
/* series must be added device by device in device-name order, and within a device in
 * metric-name order; points sorted unique, all within the block's range. */
int tsdb_block_writer_device(tsdb_block_writer *w, const char *name, size_t len, const char *tags);
int tsdb_block_writer_series(tsdb_block_writer *w, const char *metric, size_t metric_len,
    uint8_t kind, const tsdb_point *pts, size_t n);
/* tsdb_block_writer_chunk adds a series entry holding an already encoded chunk (kind, count
 * and its [lo, hi] range as the index records them). */
int tsdb_block_writer_chunk(tsdb_block_writer *w, const char *metric, size_t metric_len,
    uint8_t kind, const uint8_t *chunk, size_t len, uint32_t count, int64_t lo, int64_t hi);
/* tsdb_block_writer_finish writes the index, fsyncs, renames into place and loads the block. */
int tsdb_block_writer_finish(tsdb_block_writer *w, tsdb_block **out);
void tsdb_block_writer_abort(tsdb_block_writer *w);
int tsdb_block_load(const char *path, tsdb_block **out, char *err, size_t err_cap);
void tsdb_block_unref(tsdb_block *b);
/* tsdb_block_find_device: index of the device entry or -1. */
long tsdb_block_find_device(const tsdb_block *b, const char *name, size_t len);
/* tsdb_block_device reads entry i: name, tags, and a cursor over its series. */
typedef struct tsdb_block_dev {
    const char *name;
    uint32_t name_len;
    const char *tags;
    uint32_t tags_len;
    const uint8_t *series_pos, *series_end;
    uint32_t n_series;
    const uint8_t *chunk_pos;
} tsdb_block_dev;
int tsdb_block_device(const tsdb_block *b, uint32_t i, tsdb_block_dev *out);
/* tsdb_block_next_series reads the next series of the device cursor. 1 = got one, 0 = end. */
int tsdb_block_next_series(const tsdb_block *b, tsdb_block_dev *d, tsdb_block_series *out);
/* tsdb_block_check verifies the CRC of a series' chunk. 0 or TERN_ECORRUPT. */
int tsdb_block_check(const tsdb_block_series *s);
/* tsdb_block_decode appends the series' points in [lo, hi) to out (tsdb_point), after checking
 * the chunk's CRC. scratch (may be NULL) is reused working memory. */
int tsdb_block_decode(
    const tsdb_block_series *s, int64_t lo, int64_t hi, tern_buf *out, tern_buf *scratch);

#endif

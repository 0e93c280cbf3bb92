/*
 * tsdb.c: the store's life cycle and write path: open (lock, blocks, WAL replay), batches,
 * writes (head + WAL record), cutting the head into blocks, checkpointing the WAL, compaction,
 * retention, close. The WAL record payload is specified in docs/formats/tsdb-block.md
 * ("WAL records"); the segment framing around it in docs/formats/tsdb-wal.md.
 */
#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/varint.h"
#include "tsdb/tsdb_int.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* WAL record entries (docs/formats/tsdb-block.md). */
enum {
    REC_VERSION = 1,
    ENT_METRIC = 1,
    ENT_DEVICE = 2,
    ENT_TAGS = 3,
    ENT_SERIES = 4,
    ENT_POINT = 5,
    ENT_CHUNK = 6,
    ENT_HEAD_START = 7,
};

_Static_assert(sizeof(tsdb_stripe) % 64 == 0, "a stripe fills whole cache lines");

/* Late points held in memory before maintenance writes them out as backfill blocks. */
#define LATE_LIMIT (4u << 20)

void tern_tsdb_options_default(tern_tsdb_options *o)
{
    memset(o, 0, sizeof(*o));
    o->block_duration_ms = 30 * 60 * 1000;
    o->retention_ms = 7LL * 24 * 3600 * 1000;
    o->warm_retention_ms = 90LL * 24 * 3600 * 1000;
    o->wal_group_commit_ms = 5;
    o->wal_fsync = true;
}

static int64_t align_down(int64_t t, int64_t d)
{
    int64_t r = t % d;
    return r < 0 ? t - r - d : t - r;
}

/* ---- batches ---- */

typedef struct batch_device {
    uint32_t name_off, name_len, tags_off, tags_len;
} batch_device;

/* tern_tsdb_write's view of a batch device. */
typedef struct batch_dev_scratch {
    uint64_t hash;
    uint32_t first, end; /* its points */
    uint32_t next;       /* next batch device of the same stripe, UINT32_MAX at the end */
    uint32_t canon_off, canon_len;
    tsdb_device *dev;
} batch_dev_scratch;

typedef struct batch_point {
    uint32_t device;
    uint32_t metric; /* index into batch metrics */
    int64_t ts;
    uint64_t v;
    uint8_t kind;
} batch_point;

struct tern_tsdb_batch {
    tern_buf strings;
    batch_device *devs;
    size_t n_devs, cap_devs;
    batch_point *pts;
    size_t n_pts, cap_pts;
    uint32_t *metric_off, *metric_len; /* batch-local metric names (offsets in strings) */
    uint32_t n_metrics, cap_metrics;
    uint32_t *metric_slots; /* open hash: index + 1 */
    uint32_t slot_cap;
    /* tern_tsdb_write's scratch (a batch is written by one thread at a time) */
    uint32_t *resolved; /* batch metric -> db metric id + 1 */
    uint32_t *hint;     /* batch metric -> its position in the last device's series */
    uint32_t cap_resolved;
    batch_dev_scratch *ds; /* per batch device */
    size_t cap_ds;
    tsdb_series **ps; /* per point: its series, or a REFUSED_ sentinel */
    size_t cap_ps;
    uint32_t stripe_first[TSDB_STRIPES]; /* first batch device of each stripe (list in ds) */
    tern_buf canon, tmp;                 /* canonical tags of the devices */
    tern_buf rec;                        /* the WAL record being built */
    int64_t rec_prev_ts;                 /* its last point's ts (points store deltas) */
};

int tern_tsdb_batch_new(tern_tsdb_batch **out)
{
    *out = tern_calloc(1, sizeof(**out));
    return *out ? 0 : TERN_ENOMEM;
}

void tern_tsdb_batch_free(tern_tsdb_batch *b)
{
    if (!b)
        return;
    tern_buf_free(&b->strings);
    tern_free(b->devs);
    tern_free(b->pts);
    tern_free(b->metric_off);
    tern_free(b->metric_len);
    tern_free(b->metric_slots);
    tern_free(b->resolved);
    tern_free(b->hint);
    tern_free(b->ds);
    tern_free(b->ps);
    tern_buf_free(&b->canon);
    tern_buf_free(&b->tmp);
    tern_buf_free(&b->rec);
    tern_free(b);
}

void tern_tsdb_batch_reset(tern_tsdb_batch *b)
{
    tern_buf_reset(&b->strings);
    b->n_devs = 0;
    b->n_pts = 0;
    b->n_metrics = 0;
    if (b->metric_slots)
        memset(b->metric_slots, 0, b->slot_cap * sizeof(*b->metric_slots));
}

size_t tern_tsdb_batch_points(const tern_tsdb_batch *b)
{
    return b->n_pts;
}

int tern_tsdb_batch_device(
    tern_tsdb_batch *b, const char *device, size_t device_len, const char *tags, size_t tags_len)
{
    if (device_len == 0 || device_len > 65535 || tags_len > 65535)
        return TERN_EINVAL;
    if (b->n_devs == b->cap_devs) {
        size_t cap = b->cap_devs ? b->cap_devs * 2 : 64;
        batch_device *d = tern_realloc(b->devs, cap * sizeof(*d));
        if (!d)
            return TERN_ENOMEM;
        b->devs = d;
        b->cap_devs = cap;
    }
    batch_device *d = &b->devs[b->n_devs];
    d->name_off = (uint32_t)b->strings.len;
    d->name_len = (uint32_t)device_len;
    int rc = tern_buf_append(&b->strings, device, device_len);
    d->tags_off = (uint32_t)b->strings.len;
    d->tags_len = (uint32_t)tags_len;
    if (!rc && tags_len)
        rc = tern_buf_append(&b->strings, tags, tags_len);
    if (rc)
        return rc;
    b->n_devs++;
    return 0;
}

static int batch_metric(tern_tsdb_batch *b, const char *name, size_t len, uint32_t *out)
{
    if ((b->n_metrics + 1) * 2 > b->slot_cap) {
        uint32_t ncap = b->slot_cap ? b->slot_cap * 2 : 64;
        uint32_t *slots = tern_calloc(ncap, sizeof(*slots));
        if (!slots)
            return TERN_ENOMEM;
        for (uint32_t i = 0; i < b->n_metrics; i++) {
            uint32_t h = (uint32_t)tsdb_name_hash(
                             (const char *)b->strings.data + b->metric_off[i], b->metric_len[i])
                & (ncap - 1);
            while (slots[h])
                h = (h + 1) & (ncap - 1);
            slots[h] = i + 1;
        }
        tern_free(b->metric_slots);
        b->metric_slots = slots;
        b->slot_cap = ncap;
    }
    uint32_t mask = b->slot_cap - 1;
    uint32_t h = (uint32_t)tsdb_name_hash(name, len) & mask;
    for (; b->metric_slots[h]; h = (h + 1) & mask) {
        uint32_t i = b->metric_slots[h] - 1;
        if (b->metric_len[i] == len && memcmp(b->strings.data + b->metric_off[i], name, len) == 0) {
            *out = i;
            return 0;
        }
    }
    if (b->n_metrics == b->cap_metrics) {
        uint32_t cap = b->cap_metrics ? b->cap_metrics * 2 : 32;
        uint32_t *o = tern_realloc(b->metric_off, cap * sizeof(*o));
        if (!o)
            return TERN_ENOMEM;
        b->metric_off = o;
        uint32_t *l = tern_realloc(b->metric_len, cap * sizeof(*l));
        if (!l)
            return TERN_ENOMEM;
        b->metric_len = l;
        b->cap_metrics = cap;
    }
    uint32_t off = (uint32_t)b->strings.len;
    int rc = tern_buf_append(&b->strings, name, len);
    if (rc)
        return rc;
    b->metric_off[b->n_metrics] = off;
    b->metric_len[b->n_metrics] = (uint32_t)len;
    b->metric_slots[h] = b->n_metrics + 1;
    *out = b->n_metrics++;
    return 0;
}

static int batch_add(
    tern_tsdb_batch *b, const char *metric, size_t len, int64_t ts, uint64_t v, uint8_t kind)
{
    if (b->n_devs == 0 || len == 0 || len > 65535)
        return TERN_EINVAL;
    if (b->n_pts == b->cap_pts) {
        size_t cap = b->cap_pts ? b->cap_pts * 2 : 256;
        batch_point *p = tern_realloc(b->pts, cap * sizeof(*p));
        if (!p)
            return TERN_ENOMEM;
        b->pts = p;
        b->cap_pts = cap;
    }
    uint32_t mi;
    int rc = batch_metric(b, metric, len, &mi);
    if (rc)
        return rc;
    batch_point *p = &b->pts[b->n_pts++];
    p->device = (uint32_t)(b->n_devs - 1);
    p->metric = mi;
    p->ts = ts;
    p->v = v;
    p->kind = kind;
    return 0;
}

int tern_tsdb_batch_add_f64(
    tern_tsdb_batch *b, const char *metric, size_t metric_len, int64_t ts_ms, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    return batch_add(b, metric, metric_len, ts_ms, bits, TERN_VALUE_F64);
}

int tern_tsdb_batch_add_i64(
    tern_tsdb_batch *b, const char *metric, size_t metric_len, int64_t ts_ms, int64_t v)
{
    return batch_add(b, metric, metric_len, ts_ms, (uint64_t)v, TERN_VALUE_I64);
}

/* ---- WAL record building ---- */

static int rec_str(tern_buf *r, uint8_t ent, uint32_t id, const char *s, size_t len)
{
    int rc = tern_buf_append_u8(r, ent);
    if (!rc)
        rc = tern_varint_append_u64(r, id);
    if (!rc)
        rc = tern_varint_append_u64(r, len);
    if (!rc)
        rc = tern_buf_append(r, s, len);
    return rc;
}

static int rec_series(tern_buf *r, const tsdb_series *s)
{
    int rc = tern_buf_append_u8(r, ENT_SERIES);
    if (!rc)
        rc = tern_varint_append_u64(r, s->id);
    if (!rc)
        rc = tern_varint_append_u64(r, s->device);
    if (!rc)
        rc = tern_varint_append_u64(r, s->metric);
    if (!rc)
        rc = tern_buf_append_u8(r, s->kind);
    return rc;
}

static int rec_point(tern_buf *r, uint32_t series, int64_t ts, uint64_t v)
{
    int rc = tern_buf_append_u8(r, ENT_POINT);
    if (!rc)
        rc = tern_varint_append_u64(r, series);
    if (!rc)
        rc = tern_varint_append_s64(r, ts);
    if (!rc)
        rc = tern_buf_append_le64(r, v);
    return rc;
}

static int rec_device(tern_buf *r, const tsdb_device *d)
{
    int rc = rec_str(r, ENT_DEVICE, d->id, d->name, d->name_len);
    if (!rc && d->tags)
        rc = rec_str(r, ENT_TAGS, d->id, d->tags, strlen(d->tags));
    return rc;
}

/* A refused point: keeps the first one in add order (stripes are written in any order). */
static void refuse(tern_tsdb_write_result *res, size_t idx, int code, const char *a, size_t al,
    const char *m, size_t ml, const tern_tsdb *db, const tsdb_tenant *tenant)
{
    res->refused++;
    if (res->first_error != 0 && res->first_error_point < idx)
        return;
    res->first_error = code;
    res->first_error_point = idx;
    if (code == TERN_EQUOTA && tenant)
        snprintf(res->err, sizeof(res->err),
            "series limit of tenant %s=%.*s reached (%llu series): new series device %.*s "
            "metric %.*s refused",
            db->tenant_tag, (int)tenant->len, tenant->name, (unsigned long long)tenant->series,
            (int)al, a, (int)ml, m);
    else if (code == TERN_EQUOTA)
        snprintf(res->err, sizeof(res->err),
            "series limit reached: new series device %.*s metric %.*s refused", (int)al, a, (int)ml,
            m);
    else
        snprintf(res->err, sizeof(res->err),
            "field type conflict: device %.*s metric %.*s holds the other number kind", (int)al, a,
            (int)ml, m);
}

/* Sizes the batch's write scratch for its devices, points and metrics. */
static int scratch_reserve(tern_tsdb_batch *b)
{
    if (b->cap_resolved < b->n_metrics) {
        uint32_t *r = tern_realloc(b->resolved, b->n_metrics * sizeof(*r));
        if (!r)
            return TERN_ENOMEM;
        b->resolved = r;
        uint32_t *h = tern_realloc(b->hint, b->n_metrics * sizeof(*h));
        if (!h)
            return TERN_ENOMEM;
        b->hint = h;
        b->cap_resolved = b->n_metrics;
    }
    if (b->cap_ds < b->n_devs) {
        batch_dev_scratch *d = tern_realloc(b->ds, b->cap_devs * sizeof(*d));
        if (!d)
            return TERN_ENOMEM;
        b->ds = d;
        b->cap_ds = b->cap_devs;
    }
    if (b->cap_ps < b->n_pts) {
        tsdb_series **p = tern_realloc(b->ps, b->cap_pts * sizeof(*p));
        if (!p)
            return TERN_ENOMEM;
        b->ps = p;
        b->cap_ps = b->cap_pts;
    }
    memset(b->resolved, 0, b->n_metrics * sizeof(*b->resolved));
    memset(b->hint, 0, b->n_metrics * sizeof(*b->hint));
    return 0;
}

/* Resolves the batch's metric names to ids, creating new metrics. A new metric's definition is
 * in the WAL before any other writer can see its id (so before any record uses it). */
static int resolve_metrics(tern_tsdb *db, tern_tsdb_batch *b)
{
    bool missing = false;
    pthread_mutex_lock(&db->metric_mu);
    for (uint32_t m = 0; m < b->n_metrics; m++) {
        uint32_t id;
        if (tsdb_metric_get(
                db, (const char *)b->strings.data + b->metric_off[m], b->metric_len[m], false, &id)
            == 0)
            b->resolved[m] = id + 1;
        else
            missing = true;
    }
    pthread_mutex_unlock(&db->metric_mu);
    if (!missing)
        return 0;
    int rc = 0;
    pthread_mutex_lock(&db->mu);
    for (uint32_t m = 0; m < b->n_metrics && rc == 0; m++) {
        if (b->resolved[m])
            continue;
        const char *name = (const char *)b->strings.data + b->metric_off[m];
        uint32_t id;
        pthread_mutex_lock(&db->metric_mu);
        rc = tsdb_metric_get(db, name, b->metric_len[m], false, &id);
        pthread_mutex_unlock(&db->metric_mu);
        if (rc == 0) {
            b->resolved[m] = id + 1;
            continue;
        }
        id = db->n_metrics; /* stable: metrics are created under mu only */
        rc = 0;
        if (db->wal) {
            tern_buf *r = &b->rec;
            tern_buf_reset(r);
            uint64_t s;
            rc = tern_buf_append_u8(r, REC_VERSION);
            if (rc == 0)
                rc = rec_str(r, ENT_METRIC, id, name, b->metric_len[m]);
            if (rc == 0)
                rc = tern_wal_append(db->wal, r->data, r->len, &s);
        }
        if (rc == 0) {
            pthread_mutex_lock(&db->metric_mu);
            rc = tsdb_metric_create_id(db, id, name, b->metric_len[m]);
            pthread_mutex_unlock(&db->metric_mu);
        }
        if (rc == 0)
            b->resolved[m] = id + 1;
    }
    pthread_mutex_unlock(&db->mu);
    return rc;
}

/* Sentinels in the batch's per-point series scratch: the point is refused. */
#define REFUSED_KIND ((tsdb_series *)(uintptr_t)1)
#define REFUSED_QUOTA ((tsdb_series *)(uintptr_t)2)
/* stripe_write's "this needs the index changed: retry holding db->mu" */
#define NEED_GLOBAL 1

/* Appends one point entry to r, whose capacity the caller reserved. */
static void rec_point_fast(tern_buf *r, uint32_t series, int64_t dts, uint64_t v)
{
    uint8_t *p = r->data + r->len;
    *p++ = ENT_POINT;
    p += tern_varint_encode(p, series);
    p += tern_varint_encode(p, tern_varint_zigzag(dts));
    for (int i = 0; i < 8; i++)
        *p++ = (uint8_t)(v >> (8 * i));
    r->len = (size_t)(p - r->data);
}

/* Most bytes one point entry takes (entry byte, series id, ts delta, value). */
#define REC_POINT_MAX (1 + 5 + TERN_VARINT_MAX_BYTES + 8)

/*
 * Writes the batch's devices of stripe k (their list in b->stripe_first / ds[].next), which the
 * caller holds: resolves every point's series, then applies the points to the head and adds
 * their entries to the WAL record in b->rec (which the caller appends before it lets the stripe
 * go). Without `global` (db->mu) it changes nothing and returns NEED_GLOBAL when a device, tags,
 * series or the head's start must be created; with it, it creates them (their definitions
 * precede their points in the record).
 */
static int stripe_write(
    tern_tsdb *db, tern_tsdb_batch *b, uint32_t k, bool global, tern_tsdb_write_result *res)
{
    tsdb_stripe *st = &db->stripes[k];
    tern_buf *r = &b->rec;
    int rc = 0;
    size_t n_pts = 0;
    /* resolve */
    for (uint32_t di = b->stripe_first[k]; di != UINT32_MAX && rc == 0; di = b->ds[di].next) {
        batch_dev_scratch *x = &b->ds[di];
        const batch_device *bd = &b->devs[di];
        const char *dname = (const char *)b->strings.data + bd->name_off;
        tsdb_device *dev = tsdb_device_find(db, dname, bd->name_len, x->hash);
        if (!dev) {
            if (!global)
                return NEED_GLOBAL;
            rc = tsdb_device_get(db, dname, bd->name_len, true, &dev);
            if (rc == 0 && db->wal)
                rc = rec_str(r, ENT_DEVICE, dev->id, dev->name, dev->name_len);
            if (rc)
                break;
        }
        if (x->canon_len) {
            const char *t = (const char *)b->canon.data + x->canon_off;
            if (!dev->tags || strlen(dev->tags) != x->canon_len
                || memcmp(dev->tags, t, x->canon_len) != 0) {
                if (!global)
                    return NEED_GLOBAL;
                bool changed = false;
                rc = tsdb_device_set_tags(db, dev, t, x->canon_len, &changed);
                if (rc == 0 && changed && db->wal)
                    rc = rec_str(r, ENT_TAGS, dev->id, dev->tags, strlen(dev->tags));
                if (rc)
                    break;
            }
        }
        x->dev = dev;
        for (uint32_t i = x->first; i < x->end && rc == 0; i++) {
            const batch_point *p = &b->pts[i];
            uint32_t metric = b->resolved[p->metric] - 1;
            tsdb_series *s = tsdb_device_series(dev, metric, &b->hint[p->metric]);
            if (s) {
                b->ps[i] = s->kind == p->kind ? s : REFUSED_KIND;
            } else {
                uint8_t was = tsdb_device_known_kind(dev, metric);
                if (was && was != p->kind) {
                    b->ps[i] = REFUSED_KIND;
                    continue;
                }
                if (!global)
                    return NEED_GLOBAL;
                int src = tsdb_series_get(db, dev, metric, p->kind, true, &s);
                if (src == TERN_EQUOTA || src == TERN_EINVAL) {
                    b->ps[i] = src == TERN_EQUOTA ? REFUSED_QUOTA : REFUSED_KIND;
                    continue;
                }
                rc = src;
                if (rc == 0 && db->wal)
                    rc = rec_series(r, s);
                b->ps[i] = s;
            }
        }
        n_pts += x->end - x->first;
    }
    if (rc == 0 && __atomic_load_n(&db->head_start, __ATOMIC_ACQUIRE) == INT64_MIN) {
        /* the store's first point: it places the head */
        int64_t first = INT64_MAX;
        size_t first_idx = SIZE_MAX;
        for (uint32_t di = b->stripe_first[k]; di != UINT32_MAX; di = b->ds[di].next)
            for (uint32_t i = b->ds[di].first; i < b->ds[di].end; i++)
                if (b->ps[i] != REFUSED_KIND && b->ps[i] != REFUSED_QUOTA && i < first_idx) {
                    first_idx = i;
                    first = b->pts[i].ts;
                }
        if (first_idx != SIZE_MAX) {
            if (!global)
                return NEED_GLOBAL;
            __atomic_store_n(
                &db->head_start, align_down(first, db->opt.block_duration_ms), __ATOMIC_RELEASE);
        }
    }
    /* apply */
    if (rc == 0 && db->wal)
        rc = tern_buf_reserve(r, n_pts * REC_POINT_MAX);
    int64_t max_ts = INT64_MIN, prev_ts = b->rec_prev_ts;
    size_t accepted = 0, refused = 0, added = 0, late = 0;
    for (uint32_t di = b->stripe_first[k]; di != UINT32_MAX && rc == 0; di = b->ds[di].next) {
        const batch_dev_scratch *x = &b->ds[di];
        for (uint32_t i = x->first; i < x->end; i++) {
            const batch_point *p = &b->pts[i];
            tsdb_series *s = b->ps[i];
            if (s == REFUSED_KIND || s == REFUSED_QUOTA) {
                const batch_device *bd = &b->devs[di];
                int code = s == REFUSED_QUOTA ? TERN_EQUOTA : TERN_EINVAL;
                if (code == TERN_EQUOTA)
                    st->series_refused++;
                /* a refused new series only comes from the global pass, under mu */
                const tsdb_tenant *tenant
                    = code == TERN_EQUOTA && x->dev ? tsdb_tenant_over(db, x->dev) : NULL;
                refuse(res, i, code, (const char *)b->strings.data + bd->name_off, bd->name_len,
                    (const char *)b->strings.data + b->metric_off[p->metric],
                    b->metric_len[p->metric], db, tenant);
                refused++;
                continue;
            }
            rc = tsdb_head_add(s, p->ts, p->v);
            if (rc < 0)
                break;
            added += rc != TSDB_HEAD_REPLACED;
            late += rc == TSDB_HEAD_NEW_LATE;
            rc = 0;
            if (p->ts > max_ts)
                max_ts = p->ts;
            if (db->wal)
                rec_point_fast(r, s->id, p->ts - prev_ts, p->v);
            prev_ts = p->ts;
            accepted++;
        }
    }
    if (max_ts != INT64_MIN) {
        int64_t cur = __atomic_load_n(&db->head_max, __ATOMIC_RELAXED);
        while (max_ts > cur
            && !__atomic_compare_exchange_n(
                &db->head_max, &cur, max_ts, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
    }
    b->rec_prev_ts = prev_ts;
    res->accepted += accepted;
    st->head_points += added;
    st->late_points += late;
    st->points_written += accepted;
    st->points_refused += refused;
    return rc;
}

/* Starts the WAL record of a round of stripes. */
static int rec_begin(tern_tsdb *db, tern_tsdb_batch *b)
{
    tern_buf_reset(&b->rec);
    b->rec_prev_ts = 0; /* point timestamps are deltas within a record */
    return db->wal ? tern_buf_append_u8(&b->rec, REC_VERSION) : 0;
}

/* Appends the round's record (if it holds entries); the caller still holds its stripes. */
static int rec_end(tern_tsdb *db, tern_tsdb_batch *b, uint64_t *seq)
{
    if (!db->wal || b->rec.len <= 1)
        return 0;
    uint64_t s;
    int rc = tern_wal_append(db->wal, b->rec.data, b->rec.len, &s);
    if (rc == 0 && s > *seq)
        *seq = s;
    return rc;
}

/* Stripes written per round (per WAL record): few records, yet another writer finds free
 * stripes while this one holds a round's. */
#define ROUND_STRIPES (TSDB_STRIPES / 4)

int tern_tsdb_write(
    tern_tsdb *db, const tern_tsdb_batch *b, uint64_t *seq, tern_tsdb_write_result *res)
{
    tern_tsdb_write_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof(*res));
    if (b->n_pts == 0) {
        if (seq)
            *seq = 0;
        return 0;
    }
    if (__atomic_load_n(&db->closed, __ATOMIC_ACQUIRE))
        return TERN_ECLOSED;
    tern_tsdb_batch *mb = (tern_tsdb_batch *)b; /* write scratch only */
    int rc = scratch_reserve(mb);
    if (rc == 0)
        rc = resolve_metrics(db, mb);
    if (rc)
        return rc;
    /* devices: hash, stripe, point range, canonical tags; listed per stripe in batch order */
    uint32_t last[TSDB_STRIPES];
    for (uint32_t k = 0; k < TSDB_STRIPES; k++)
        mb->stripe_first[k] = last[k] = UINT32_MAX;
    tern_buf_reset(&mb->canon);
    uint32_t pending = 0;
    for (uint32_t d = 0; d < b->n_devs && rc == 0; d++) {
        batch_dev_scratch *x = &mb->ds[d];
        const batch_device *bd = &b->devs[d];
        x->hash = tsdb_name_hash((const char *)b->strings.data + bd->name_off, bd->name_len);
        x->first = x->end = 0;
        x->next = UINT32_MAX;
        x->canon_off = x->canon_len = 0;
        if (bd->tags_len
            && tsdb_canonical_tags(
                   (const char *)b->strings.data + bd->tags_off, bd->tags_len, &mb->tmp)
                == 0
            && mb->tmp.len) {
            x->canon_off = (uint32_t)mb->canon.len;
            x->canon_len = (uint32_t)mb->tmp.len;
            rc = tern_buf_append(&mb->canon, mb->tmp.data, mb->tmp.len);
        }
    }
    if (rc)
        return rc;
    for (uint32_t i = 0; i < b->n_pts;) {
        uint32_t d = b->pts[i].device, e = i;
        while (e < b->n_pts && b->pts[e].device == d)
            e++;
        batch_dev_scratch *x = &mb->ds[d];
        x->first = i;
        x->end = e;
        uint32_t k = tsdb_stripe_of(x->hash);
        if (last[k] == UINT32_MAX)
            mb->stripe_first[k] = d;
        else
            mb->ds[last[k]].next = d;
        last[k] = d;
        pending |= 1u << k;
        i = e;
    }
    /* stripes: take the free ones first, starting at a place of this batch's own */
    uint64_t s = 0;
    uint32_t start = (uint32_t)(((uintptr_t)b >> 6) * 0x9e3779b1u >> 27) & (TSDB_STRIPES - 1);
    while (pending && rc == 0) {
        /* a round: the free stripes (up to ROUND_STRIPES; or wait for one), one WAL record */
        uint32_t held = 0, n_held = 0, need = 0;
        for (uint32_t j = 0; j < TSDB_STRIPES && n_held < ROUND_STRIPES; j++) {
            uint32_t k = (start + j) & (TSDB_STRIPES - 1);
            if ((pending & (1u << k)) && pthread_mutex_trylock(&db->stripes[k].mu) == 0) {
                held |= 1u << k;
                n_held++;
            }
        }
        if (n_held == 0) {
            uint32_t k = (uint32_t)__builtin_ctz(pending);
            pthread_mutex_lock(&db->stripes[k].mu);
            held = 1u << k;
        }
        rc = rec_begin(db, mb);
        for (uint32_t k = 0; k < TSDB_STRIPES && rc == 0; k++) {
            if (!(held & (1u << k)))
                continue;
            int src = stripe_write(db, mb, k, false, res);
            if (src == NEED_GLOBAL)
                need |= 1u << k;
            else
                rc = src;
        }
        int arc = rec_end(db, mb, &s);
        if (rc == 0)
            rc = arc;
        for (uint32_t k = 0; k < TSDB_STRIPES; k++)
            if (held & (1u << k))
                pthread_mutex_unlock(&db->stripes[k].mu);
        pending &= ~held;
        /* the index must change: db->mu first (lock order), then the stripe, one at a time */
        for (uint32_t k = 0; k < TSDB_STRIPES && rc == 0; k++) {
            if (!(need & (1u << k)))
                continue;
            pthread_mutex_lock(&db->mu);
            pthread_mutex_lock(&db->stripes[k].mu);
            rc = rec_begin(db, mb);
            if (rc == 0)
                rc = stripe_write(db, mb, k, true, res);
            arc = rec_end(db, mb, &s);
            if (rc == 0)
                rc = arc;
            pthread_mutex_unlock(&db->stripes[k].mu);
            pthread_mutex_unlock(&db->mu);
        }
    }
    if (seq)
        *seq = s;
    return rc;
}

int tern_tsdb_wait(tern_tsdb *db, uint64_t seq)
{
    if (!db->wal || seq == 0)
        return 0;
    return tern_wal_wait(db->wal, seq);
}

int tern_tsdb_notify(tern_tsdb *db, uint64_t seq, void (*cb)(void *arg, int rc), void *arg)
{
    if (!db->wal || seq == 0) {
        cb(arg, 0);
        return 0;
    }
    return tern_wal_notify(db->wal, seq, cb, arg);
}

/* ---- WAL replay ---- */

/* WAL ids are the ids of the process that wrote the record; each definition entry says which
 * name an id means from there on, so replay maps WAL ids to this process's objects by name.
 * (The checkpoint written after every replay restates every definition with the new ids.) */
typedef struct replay_ctx {
    tern_tsdb *db;
    uint32_t *dev, *metric, *series; /* WAL id -> id + 1 here */
    uint32_t n_dev, n_metric, n_series;
} replay_ctx;

static int map_set(uint32_t **map, uint32_t *n, uint64_t wal_id, uint32_t id)
{
    if (wal_id >= UINT32_MAX)
        return TERN_ECORRUPT;
    if (wal_id >= *n) {
        uint32_t cap = *n ? *n : 64;
        while (cap <= wal_id)
            cap *= 2;
        uint32_t *p = tern_realloc(*map, cap * sizeof(*p));
        if (!p)
            return TERN_ENOMEM;
        memset(p + *n, 0, (cap - *n) * sizeof(*p));
        *map = p;
        *n = cap;
    }
    (*map)[wal_id] = id + 1;
    return 0;
}

static int map_get(const uint32_t *map, uint32_t n, uint64_t wal_id, uint32_t *id)
{
    if (wal_id >= n || map[wal_id] == 0)
        return TERN_ECORRUPT; /* used before its definition */
    *id = map[wal_id] - 1;
    return 0;
}

static int replay_points(tern_tsdb *db, uint32_t sid, const tsdb_point *p, size_t n)
{
    tsdb_series *s = db->series[sid];
    for (size_t i = 0; i < n; i++) {
        int rc = tsdb_head_add(s, p[i].ts, p[i].v);
        if (rc < 0)
            return rc;
        s->stripe->head_points += rc != TSDB_HEAD_REPLACED;
        s->stripe->late_points += rc == TSDB_HEAD_NEW_LATE;
        if (p[i].ts > db->head_max)
            db->head_max = p[i].ts;
        if (db->head_start == INT64_MIN)
            db->head_start = align_down(p[i].ts, db->opt.block_duration_ms);
    }
    return 0;
}

static int replay_chunk(tern_tsdb *db, uint32_t sid, const uint8_t *bytes, size_t len)
{
    tsdb_series *s = db->series[sid];
    tern_chunk_info info;
    int rc = tern_chunk_info_read(bytes, len, &info);
    if (rc)
        return rc;
    size_t n = info.count, got = 0;
    int64_t *ts = tern_malloc(n * sizeof(*ts));
    uint64_t *v = tern_malloc(n * sizeof(*v));
    tsdb_point *p = tern_malloc(n * sizeof(*p));
    if (!ts || !v || !p)
        rc = TERN_ENOMEM;
    else if ((uint8_t)info.kind != s->kind)
        rc = TERN_ECORRUPT;
    else if (s->kind == TERN_VALUE_F64)
        rc = tern_chunk_decode_f64(bytes, len, ts, (double *)(void *)v, n, &got);
    else
        rc = tern_chunk_decode_i64(bytes, len, ts, (int64_t *)(void *)v, n, &got);
    for (size_t i = 0; rc == 0 && i < got; i++) {
        p[i].ts = ts[i];
        p[i].v = v[i];
    }
    if (rc == 0)
        rc = replay_points(db, sid, p, got);
    tern_free(ts);
    tern_free(v);
    tern_free(p);
    return rc;
}

static int replay_record(void *arg, const uint8_t *rec, size_t len)
{
    replay_ctx *x = arg;
    tern_tsdb *db = x->db;
    tern_reader r;
    tern_reader_init(&r, rec, len);
    uint8_t ver;
    if (tern_reader_u8(&r, &ver))
        return TERN_ECORRUPT;
    if (ver != REC_VERSION)
        return TERN_EVERSION;
    int64_t prev_ts = 0;
    int rc = 0;
    while (rc == 0 && tern_reader_left(&r) > 0) {
        uint8_t ent;
        uint64_t id, a, b;
        uint32_t mid, did, sid;
        const uint8_t *bytes;
        if (tern_reader_u8(&r, &ent))
            return TERN_ECORRUPT;
        switch (ent) {
        case ENT_METRIC:
        case ENT_DEVICE:
        case ENT_TAGS:
            if (tern_varint_read_u64(&r, &id) || tern_varint_read_u64(&r, &a) || a > 65535
                || tern_reader_bytes(&r, (size_t)a, &bytes))
                return TERN_ECORRUPT;
            if (ent == ENT_METRIC) {
                rc = tsdb_metric_get(db, (const char *)bytes, (size_t)a, true, &mid);
                if (rc == 0)
                    rc = map_set(&x->metric, &x->n_metric, id, mid);
            } else if (ent == ENT_DEVICE) {
                tsdb_device *d;
                rc = tsdb_device_get(db, (const char *)bytes, (size_t)a, true, &d);
                if (rc == 0)
                    rc = map_set(&x->dev, &x->n_dev, id, d->id);
            } else {
                bool changed;
                rc = map_get(x->dev, x->n_dev, id, &did);
                if (rc == 0)
                    rc = tsdb_device_set_tags(
                        db, db->devices[did], (const char *)bytes, (size_t)a, &changed);
            }
            break;
        case ENT_SERIES: {
            uint8_t kind;
            if (tern_varint_read_u64(&r, &id) || tern_varint_read_u64(&r, &a)
                || tern_varint_read_u64(&r, &b) || tern_reader_u8(&r, &kind)
                || (kind != TERN_VALUE_F64 && kind != TERN_VALUE_I64))
                return TERN_ECORRUPT;
            rc = map_get(x->dev, x->n_dev, a, &did);
            if (rc == 0)
                rc = map_get(x->metric, x->n_metric, b, &mid);
            tsdb_series *s = NULL;
            if (rc == 0)
                rc = tsdb_series_get(db, db->devices[did], mid, kind, true, &s);
            if (rc == 0)
                rc = map_set(&x->series, &x->n_series, id, s->id);
            break;
        }
        case ENT_POINT: {
            int64_t dts;
            uint64_t v;
            if (tern_varint_read_u64(&r, &id) || tern_varint_read_s64(&r, &dts)
                || tern_reader_le64(&r, &v))
                return TERN_ECORRUPT;
            tsdb_point p = { (int64_t)((uint64_t)prev_ts + (uint64_t)dts), v };
            prev_ts = p.ts;
            rc = map_get(x->series, x->n_series, id, &sid);
            if (rc == 0)
                rc = replay_points(db, sid, &p, 1);
            break;
        }
        case ENT_CHUNK:
            if (tern_varint_read_u64(&r, &id) || tern_varint_read_u64(&r, &a)
                || tern_reader_bytes(&r, (size_t)a, &bytes))
                return TERN_ECORRUPT;
            rc = map_get(x->series, x->n_series, id, &sid);
            if (rc == 0)
                rc = replay_chunk(db, sid, bytes, (size_t)a);
            break;
        case ENT_HEAD_START: {
            int64_t hs;
            if (tern_varint_read_s64(&r, &hs))
                return TERN_ECORRUPT;
            if (db->head_start == INT64_MIN || hs > db->head_start)
                db->head_start = hs;
            break;
        }
        default:
            return TERN_ECORRUPT;
        }
    }
    return rc;
}

/* ---- cutting the head into blocks ---- */

/* A block being written during a cut, for one aligned range. */
typedef struct cut_writer {
    int64_t range;
    tsdb_block_writer *w;
    uint32_t last_device;
} cut_writer;

/* Writes the points of the head older than `before` into blocks, one per aligned range. */
static int cut_head(tern_tsdb *db, int64_t before)
{
    int64_t dur = db->opt.block_duration_ms;
    uint32_t *order = tern_malloc((db->n_devices ? db->n_devices : 1) * sizeof(*order));
    if (!order)
        return TERN_ENOMEM;
    uint32_t nd = 0;
    for (uint32_t i = 0; i < db->n_devices; i++)
        if (db->devices[i] && db->devices[i]->n_series)
            order[nd++] = i;
    qsort_r(order, nd, sizeof(*order), tsdb_device_name_cmp, db);
    cut_writer *cw = NULL;
    size_t n_cw = 0, cap_cw = 0;
    tern_buf pts = TERN_BUF_INIT;
    int rc = 0;
    for (uint32_t k = 0; k < nd && rc == 0; k++) {
        tsdb_device *d = db->devices[order[k]];
        for (uint32_t j = 0; j < d->n_series && rc == 0; j++) {
            tsdb_series *s = db->series[d->series[j]];
            tern_buf_reset(&pts);
            rc = tsdb_head_take(s, before, &pts);
            const tsdb_point *p = (const tsdb_point *)(const void *)pts.data;
            size_t n = pts.len / sizeof(tsdb_point);
            size_t i = 0;
            while (rc == 0 && i < n) {
                int64_t range = align_down(p[i].ts, dur);
                size_t e = i;
                while (e < n && p[e].ts < range + dur)
                    e++;
                size_t w;
                for (w = 0; w < n_cw && cw[w].range != range; w++)
                    ;
                if (w == n_cw) {
                    if (n_cw == cap_cw) {
                        size_t cap = cap_cw ? cap_cw * 2 : 4;
                        cut_writer *ncw = tern_realloc(cw, cap * sizeof(*ncw));
                        if (!ncw) {
                            rc = TERN_ENOMEM;
                            break;
                        }
                        cw = ncw;
                        cap_cw = cap;
                    }
                    cw[w].range = range;
                    cw[w].last_device = UINT32_MAX;
                    rc = tsdb_block_writer_open(db, "blocks", range, range + dur - 1, 0, &cw[w].w);
                    if (rc)
                        break;
                    n_cw++;
                }
                if (cw[w].last_device != d->id) {
                    rc = tsdb_block_writer_device(cw[w].w, d->name, d->name_len, d->tags);
                    cw[w].last_device = d->id;
                }
                if (rc == 0) {
                    const tsdb_metric *m = &db->metrics[s->metric];
                    rc = tsdb_block_writer_series(cw[w].w, m->name, m->len, s->kind, p + i, e - i);
                }
                i = e;
            }
        }
    }
    tern_buf_free(&pts);
    tern_free(order);
    for (size_t w = 0; w < n_cw; w++) {
        if (rc) {
            tsdb_block_writer_abort(cw[w].w);
            continue;
        }
        tsdb_block *b;
        rc = tsdb_block_writer_finish(cw[w].w, &b);
        if (rc == 0)
            rc = tsdb_blockset_add(db, &db->hot, b);
        if (rc == 0)
            rc = tsdb_rollup_schedule_block(db, b);
    }
    tern_free(cw);
    return rc;
}

/* Writes a checkpoint of the head (every definition and every point still held) as the first
 * record of a new WAL segment, then deletes the older segments: their data is in blocks or in
 * the checkpoint. */
/* A checkpoint is written as records of about this size (a WAL record is at most 128 MiB; a
 * store of millions of series restates far more than that). */
#define CKPT_RECORD_BYTES (8u << 20)

/* Appends the checkpoint record built so far once it is big enough (or at the end), and starts
 * the next one. Records are replayed in order, so definitions still precede their use. */
static int ckpt_flush(tern_tsdb *db, tern_buf *r, int64_t *prev_ts, bool last, uint64_t *seq)
{
    if (!last && r->len < CKPT_RECORD_BYTES)
        return 0;
    int rc = r->len > 1 ? tern_wal_append(db->wal, r->data, r->len, seq) : 0;
    tern_buf_reset(r);
    if (rc == 0)
        rc = tern_buf_append_u8(r, REC_VERSION);
    *prev_ts = 0; /* point timestamps are deltas within a record */
    return rc;
}

static int checkpoint_wal(tern_tsdb *db)
{
    if (!db->wal)
        return 0;
    uint32_t segno;
    int rc = tern_wal_cut(db->wal, &segno);
    if (rc)
        return rc;
    tern_buf *r = &db->wal_rec;
    tern_buf_reset(r);
    rc = tern_buf_append_u8(r, REC_VERSION);
    int64_t prev_ts = 0;
    uint64_t seq = 0;
    for (uint32_t i = 0; rc == 0 && i < db->n_metrics; i++) {
        rc = rec_str(r, ENT_METRIC, i, db->metrics[i].name, db->metrics[i].len);
        if (rc == 0)
            rc = ckpt_flush(db, r, &prev_ts, false, &seq);
    }
    for (uint32_t i = 0; rc == 0 && i < db->n_devices; i++) {
        if (db->devices[i])
            rc = rec_device(r, db->devices[i]);
        if (rc == 0)
            rc = ckpt_flush(db, r, &prev_ts, false, &seq);
    }
    if (rc == 0 && db->head_start != INT64_MIN) {
        rc = tern_buf_append_u8(r, ENT_HEAD_START);
        if (!rc)
            rc = tern_varint_append_s64(r, db->head_start);
    }
    for (uint32_t i = 0; rc == 0 && i < db->n_series; i++) {
        tsdb_series *s = db->series[i];
        if (!s)
            continue;
        rc = rec_series(r, s);
        size_t pos = 0;
        while (rc == 0 && pos < s->frag_len) {
            uint64_t len;
            size_t hl;
            if (tern_varint_decode_u64(s->frag + pos, s->frag_len - pos, &len, &hl) != 0) {
                rc = TERN_ECORRUPT;
                break;
            }
            rc = tern_buf_append_u8(r, ENT_CHUNK);
            if (!rc)
                rc = tern_varint_append_u64(r, s->id);
            if (!rc)
                rc = tern_buf_append(r, s->frag + pos, hl + (size_t)len);
            pos += hl + (size_t)len;
        }
        /* late points first: buffer points never share their timestamps */
        for (uint32_t k = 0; rc == 0 && k < s->n_late; k++) {
            rc = rec_point(r, s->id, s->late[k].ts - prev_ts, s->late[k].v);
            prev_ts = s->late[k].ts;
        }
        for (uint32_t k = 0; rc == 0 && k < s->n_buf; k++) {
            rc = rec_point(r, s->id, s->buf[k].ts - prev_ts, s->buf[k].v);
            prev_ts = s->buf[k].ts;
        }
        if (rc == 0)
            rc = ckpt_flush(db, r, &prev_ts, false, &seq);
    }
    if (rc == 0)
        rc = ckpt_flush(db, r, &prev_ts, true, &seq);
    if (rc == 0 && seq)
        rc = tern_wal_wait(db->wal, seq);
    if (rc == 0)
        rc = tern_wal_truncate_before(db->wal, segno);
    return rc;
}

static bool head_span_exceeds(const tern_tsdb *db, int64_t span)
{
    int64_t d;
    if (__builtin_sub_overflow(db->head_max, db->head_start, &d))
        return db->head_max > db->head_start;
    return d >= span;
}

static void stripes_lock_all(tern_tsdb *db)
{
    for (uint32_t k = 0; k < TSDB_STRIPES; k++)
        pthread_mutex_lock(&db->stripes[k].mu);
}

static void stripes_unlock_all(tern_tsdb *db)
{
    for (uint32_t k = TSDB_STRIPES; k-- > 0;)
        pthread_mutex_unlock(&db->stripes[k].mu);
}

/* Sums a stripe counter (caller holds every stripe, or is alone). */
static uint64_t stripes_sum(const tern_tsdb *db, size_t field_off)
{
    uint64_t n = 0;
    for (uint32_t k = 0; k < TSDB_STRIPES; k++)
        n += *(const uint64_t *)(const void *)((const char *)&db->stripes[k] + field_off);
    return n;
}

/* Cuts while the head spans more than 1.5 block durations (or holds too many late points):
 * the half duration of grace keeps slightly late points in the head's buffers. Caller holds
 * db->mu and every stripe. */
static int maybe_cut(tern_tsdb *db, bool all)
{
    int64_t dur = db->opt.block_duration_ms;
    int rc = 0;
    bool cut = false;
    if (db->head_start == INT64_MIN)
        return 0;
    if (all) {
        if (stripes_sum(db, offsetof(tsdb_stripe, head_points)) == 0)
            return 0;
        int64_t before = db->head_max == INT64_MAX ? INT64_MAX : db->head_max + 1;
        rc = cut_head(db, before);
        if (rc == 0) {
            __atomic_store_n(
                &db->head_start, align_down(db->head_max, dur) + dur, __ATOMIC_RELEASE);
            cut = true;
        }
    } else {
        while (rc == 0 && head_span_exceeds(db, dur + dur / 2)) {
            rc = cut_head(db, db->head_start + dur);
            cut = true;
            /* skip the empty ranges up to the oldest point left (a device clock far ahead
             * would otherwise make this loop walk every range in between) */
            int64_t oldest = INT64_MAX;
            for (uint32_t i = 0; i < db->n_series; i++)
                if (db->series[i]) {
                    int64_t m = tsdb_head_min_ts_locked(db->series[i]);
                    if (m < oldest)
                        oldest = m;
                }
            int64_t next = db->head_start + dur;
            if (oldest != INT64_MAX && align_down(oldest, dur) > next)
                next = align_down(oldest, dur);
            __atomic_store_n(&db->head_start, next, __ATOMIC_RELEASE);
        }
        if (rc == 0 && stripes_sum(db, offsetof(tsdb_stripe, late_points)) > LATE_LIMIT) {
            rc = cut_head(db, db->head_start);
            cut = true;
        }
    }
    if (rc == 0 && cut)
        rc = checkpoint_wal(db);
    return rc;
}

/* The warm tier's blocks are merged per day; a day of windows of one series is one chunk. */
#define WARM_COMPACT_WINDOW (24 * 3600 * 1000LL)

int tern_tsdb_maintain(tern_tsdb *db, int64_t now_ms)
{
    pthread_mutex_lock(&db->maint_mu);
    pthread_mutex_lock(&db->mu);
    stripes_lock_all(db);
    int rc = maybe_cut(db, false);
    stripes_unlock_all(db);
    pthread_mutex_unlock(&db->mu);
    if (rc == 0)
        rc = tsdb_rollup_run(db);
    if (rc == 0)
        rc = tsdb_blockset_compact(
            db, &db->hot, db->opt.block_duration_ms * TSDB_COMPACT_BLOCKS, false);
    if (rc == 0)
        rc = tsdb_blockset_compact(db, &db->warm, WARM_COMPACT_WINDOW, false);
    if (rc == 0 && db->opt.retention_ms > 0 && now_ms != INT64_MIN)
        rc = tsdb_blockset_retention(db, &db->hot, now_ms - db->opt.retention_ms, true);
    if (rc == 0 && db->opt.warm_retention_ms > 0 && now_ms != INT64_MIN)
        rc = tsdb_blockset_retention(db, &db->warm, now_ms - db->opt.warm_retention_ms, false);
    pthread_mutex_unlock(&db->maint_mu);
    if (rc)
        TERN_LOG_RATELIMITED(TERN_LOG_ERROR, "tsdb", "maintenance failed: %s", tern_strerror(rc));
    return rc;
}

int tern_tsdb_flush(tern_tsdb *db)
{
    pthread_mutex_lock(&db->maint_mu);
    pthread_mutex_lock(&db->mu);
    stripes_lock_all(db);
    int rc = maybe_cut(db, true);
    stripes_unlock_all(db);
    pthread_mutex_unlock(&db->mu);
    if (rc == 0)
        rc = tsdb_rollup_run(db);
    pthread_mutex_unlock(&db->maint_mu);
    return rc;
}

int tern_tsdb_compact(tern_tsdb *db)
{
    pthread_mutex_lock(&db->maint_mu);
    int rc = tsdb_rollup_run(db);
    if (rc == 0)
        rc = tsdb_blockset_compact(
            db, &db->hot, db->opt.block_duration_ms * TSDB_COMPACT_BLOCKS, true);
    if (rc == 0)
        rc = tsdb_blockset_compact(db, &db->warm, WARM_COMPACT_WINDOW, true);
    pthread_mutex_unlock(&db->maint_mu);
    return rc;
}

void tern_tsdb_get_stats(tern_tsdb *db, tern_tsdb_stats *out)
{
    pthread_mutex_lock(&db->mu);
    stripes_lock_all(db);
    *out = db->stats;
    out->head_points = stripes_sum(db, offsetof(tsdb_stripe, head_points));
    out->points_written += stripes_sum(db, offsetof(tsdb_stripe, points_written));
    out->points_refused += stripes_sum(db, offsetof(tsdb_stripe, points_refused));
    out->series_refused += stripes_sum(db, offsetof(tsdb_stripe, series_refused));
    out->blocks = db->hot.n;
    out->block_bytes = db->hot.bytes;
    out->block_points = db->hot.points;
    out->warm_blocks = db->warm.n;
    out->warm_bytes = db->warm.bytes;
    out->warm_windows = db->warm.points;
    uint64_t hb = 0;
    for (uint32_t i = 0; i < db->n_series; i++)
        if (db->series[i])
            hb += tsdb_head_bytes(db->series[i]);
    for (uint32_t i = 0; i < db->n_devices; i++)
        if (db->devices[i])
            hb += sizeof(tsdb_device) + db->devices[i]->name_len + 1
                + db->devices[i]->cap_series * (2 * sizeof(uint32_t) + sizeof(void *))
                + (db->devices[i]->tags ? strlen(db->devices[i]->tags) + 1 : 0);
    hb += (size_t)db->cap_series * sizeof(void *) + (size_t)db->cap_devices * sizeof(void *);
    for (uint32_t k = 0; k < TSDB_STRIPES; k++)
        hb += (size_t)db->stripes[k].cap * sizeof(void *);
    out->head_bytes = hb;
    stripes_unlock_all(db);
    pthread_mutex_unlock(&db->mu);
}

/* ---- open / close ---- */

static void *bg_main(void *arg)
{
    tern_tsdb *db = arg;
    pthread_setname_np(pthread_self(), "tern-tsdb-maint"); /* top -H, bench CPU per stage */
    pthread_mutex_lock(&db->bg_mu);
    while (!db->bg_stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += 1;
        pthread_cond_timedwait(&db->bg_cv, &db->bg_mu, &ts);
        if (db->bg_stop)
            break;
        pthread_mutex_unlock(&db->bg_mu);
        tern_tsdb_maintain(db, tern_clock_now_ms());
        pthread_mutex_lock(&db->bg_mu);
    }
    pthread_mutex_unlock(&db->bg_mu);
    return NULL;
}

int tern_tsdb_open(const tern_tsdb_options *o, tern_tsdb **out, char *err, size_t err_cap)
{
    if (err && err_cap)
        err[0] = 0;
    if (!o->dir || !*o->dir || o->block_duration_ms <= 0)
        return TERN_EINVAL;
    tern_tsdb *db = tern_calloc(1, sizeof(*db));
    if (!db)
        return TERN_ENOMEM;
    db->opt = *o;
    db->dir = tern_strdup(o->dir);
    db->tenant_tag = tern_strdup(o->tenant_tag && *o->tenant_tag ? o->tenant_tag : "fleet");
    db->opt.tenant_tag = db->tenant_tag;
    db->lock_fd = -1;
    db->head_start = INT64_MIN;
    db->head_max = INT64_MIN;
    db->next_block_seq = 1;
    db->hot.subdir = "blocks";
    db->warm.subdir = "warm";
    pthread_mutex_init(&db->mu, NULL);
    pthread_mutex_init(&db->metric_mu, NULL);
    pthread_mutex_init(&db->maint_mu, NULL);
    pthread_mutex_init(&db->bg_mu, NULL);
    pthread_cond_init(&db->bg_cv, NULL);
    db->stripes = tern_calloc(TSDB_STRIPES, sizeof(*db->stripes));
    if (db->stripes)
        for (uint32_t k = 0; k < TSDB_STRIPES; k++)
            pthread_mutex_init(&db->stripes[k].mu, NULL);
    int rc = db->dir && db->stripes ? 0 : TERN_ENOMEM;
    if (rc == 0 && mkdir(o->dir, 0755) != 0 && errno != EEXIST)
        rc = -errno;
    char path[4096];
    if (rc == 0) {
        snprintf(path, sizeof(path), "%s/LOCK", o->dir);
        db->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (db->lock_fd < 0)
            rc = -errno;
        else if (flock(db->lock_fd, LOCK_EX | LOCK_NB) != 0) {
            rc = errno == EWOULDBLOCK ? TERN_EAGAIN : -errno;
            if (err)
                snprintf(err, err_cap, "%s is in use by another tern process", o->dir);
        }
    }
    if (rc == 0)
        rc = tsdb_blockset_load(db, &db->hot, err, err_cap);
    if (rc == 0)
        rc = tsdb_blockset_load(db, &db->warm, err, err_cap);
    if (rc == 0)
        rc = tsdb_rollup_schedule_missing(db);
    snprintf(path, sizeof(path), "%s/wal", o->dir);
    if (rc == 0) {
        tern_wal_options wo;
        tern_wal_options_default(&wo);
        wo.group_commit_ms = o->wal_group_commit_ms;
        wo.fsync = o->wal_fsync;
        rc = tern_wal_open(path, &wo, &db->wal);
    }
    if (rc == 0) {
        db->replaying = true;
        tern_wal_replay_stats st;
        replay_ctx x = { .db = db };
        rc = tern_wal_replay(db->wal, replay_record, &x, &st);
        db->replaying = false;
        tern_free(x.dev);
        tern_free(x.metric);
        tern_free(x.series);
        /* restate every definition with this process's ids before the first new record */
        if (rc == 0 && st.n_segments > 0)
            rc = checkpoint_wal(db);
        if (rc && err && !err[0])
            snprintf(err, err_cap, "tsdb WAL replay: %s%s%s", tern_strerror(rc),
                st.message[0] ? ": " : "", st.message);
        if (rc == 0 && st.torn_tail)
            TERN_LOG(TERN_LOG_WARN, "tsdb", "WAL torn tail cut off (%llu bytes): %s",
                (unsigned long long)st.torn_bytes, st.message);
    }
    if (rc == 0 && o->no_wal) {
        /* offline writers: whatever an earlier run left in the WAL goes to blocks first */
        rc = tern_tsdb_flush(db);
        int wrc = tern_wal_close(db->wal);
        db->wal = NULL;
        if (rc == 0)
            rc = wrc;
    }
    if (rc == 0 && o->background) {
        if (pthread_create(&db->bg, NULL, bg_main, db) == 0)
            db->bg_running = true;
        else
            rc = TERN_ENOMEM;
    }
    if (rc) {
        if (err && !err[0])
            snprintf(err, err_cap, "opening tsdb %s: %s", o->dir, tern_strerror(rc));
        tern_tsdb_close(db, false);
        return rc;
    }
    *out = db;
    return 0;
}

int tern_tsdb_close(tern_tsdb *db, bool flush)
{
    if (!db)
        return 0;
    int rc = 0;
    if (db->bg_running) {
        pthread_mutex_lock(&db->bg_mu);
        db->bg_stop = true;
        pthread_cond_signal(&db->bg_cv);
        pthread_mutex_unlock(&db->bg_mu);
        pthread_join(db->bg, NULL);
    }
    if (flush)
        rc = tern_tsdb_flush(db);
    pthread_mutex_lock(&db->mu);
    __atomic_store_n(&db->closed, true, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&db->mu);
    if (db->wal) {
        int wrc = tern_wal_close(db->wal);
        if (rc == 0)
            rc = wrc;
    }
    tsdb_swarm_free(db);
    tsdb_blockset_free(&db->hot);
    tsdb_blockset_free(&db->warm);
    tern_free(db->rollups);
    tsdb_index_free(db);
    tern_buf_free(&db->wal_rec);
    if (db->lock_fd >= 0)
        close(db->lock_fd);
    if (db->stripes)
        for (uint32_t k = 0; k < TSDB_STRIPES; k++)
            pthread_mutex_destroy(&db->stripes[k].mu);
    tern_free(db->stripes);
    pthread_mutex_destroy(&db->mu);
    pthread_mutex_destroy(&db->metric_mu);
    pthread_mutex_destroy(&db->maint_mu);
    pthread_mutex_destroy(&db->bg_mu);
    pthread_cond_destroy(&db->bg_cv);
    tern_free(db->dir);
    tern_free(db->tenant_tag);
    tern_free(db);
    return rc;
}

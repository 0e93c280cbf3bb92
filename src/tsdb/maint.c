/*
 * maint.c: the store's block sets and what maintenance does to them: loading at open,
 * compaction (merging the blocks of a window into one, newer sequence winning), retention
 * (dropping whole blocks, the raw ones offered to the cold hook first), and the warm tier's
 * rollups (1-minute windows recomputed from raw points for every range cut into a raw block).
 *
 * Two block sets use the same machinery: the hot tier (blocks/, raw points) and the warm tier
 * (warm/, windows). Maintenance holds db->maint_mu, so cuts, rollups and compactions never run
 * at once; block lists change under db->mu; the heavy work (merging, writing) runs without it,
 * on blocks held by reference.
 */
#include "base/alloc.h"
#include "base/error.h"
#include "base/log.h"
#include "tsdb/tsdb_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int64_t align_down(int64_t t, int64_t d)
{
    int64_t r = t % d;
    return r < 0 ? t - r - d : t - r;
}

static int block_cmp(const void *a, const void *b)
{
    const tsdb_block *x = *(tsdb_block *const *)a, *y = *(tsdb_block *const *)b;
    if (x->min_ts != y->min_ts)
        return x->min_ts < y->min_ts ? -1 : 1;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

static int seq_cmp(const void *a, const void *b)
{
    const tsdb_block *x = *(tsdb_block *const *)a, *y = *(tsdb_block *const *)b;
    return (x->seq > y->seq) - (x->seq < y->seq);
}

int tsdb_blockset_add(tern_tsdb *db, tsdb_blockset *set, tsdb_block *b)
{
    if (set->n == set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 16;
        tsdb_block **p = tern_realloc(set->b, cap * sizeof(*p));
        if (!p)
            return TERN_ENOMEM;
        set->b = p;
        set->cap = cap;
    }
    set->b[set->n++] = b;
    qsort(set->b, set->n, sizeof(*set->b), block_cmp);
    /* atomic: block writers take sequences without db->mu (tsdb_block_writer_open) */
    uint64_t next = __atomic_load_n(&db->next_block_seq, __ATOMIC_RELAXED);
    while (b->seq >= next
        && !__atomic_compare_exchange_n(
            &db->next_block_seq, &next, b->seq + 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
    set->bytes += b->map_len;
    set->points += b->n_points;
    return 0;
}

void tsdb_blockset_remove(tsdb_blockset *set, tsdb_block *b)
{
    for (size_t i = 0; i < set->n; i++) {
        if (set->b[i] != b)
            continue;
        memmove(&set->b[i], &set->b[i + 1], (set->n - i - 1) * sizeof(*set->b));
        set->n--;
        set->bytes -= b->map_len;
        set->points -= b->n_points;
        b->doomed = true;
        tsdb_block_unref(b);
        return;
    }
}

void tsdb_blockset_free(tsdb_blockset *set)
{
    for (size_t i = 0; i < set->n; i++)
        tsdb_block_unref(set->b[i]);
    tern_free(set->b);
    memset(set, 0, sizeof(*set));
}

/* Registers the devices of a raw block (name, tags, and each series' metric and kind) in the
 * index, so that queries, tags and type checks know them after a restart without a WAL.
 * Newer blocks' tags and kinds win. */
static int index_block_devices(tern_tsdb *db, const tsdb_block *b)
{
    for (uint32_t i = 0; i < b->n_devices; i++) {
        tsdb_block_dev d;
        int rc = tsdb_block_device(b, i, &d);
        if (rc)
            return rc;
        tsdb_device *dev;
        rc = tsdb_device_get(db, d.name, d.name_len, true, &dev);
        if (rc)
            return rc;
        bool changed;
        if (d.tags_len && (rc = tsdb_device_set_tags(db, dev, d.tags, d.tags_len, &changed)))
            return rc;
        tsdb_block_series s;
        int got;
        while ((got = tsdb_block_next_series(b, &d, &s)) == 1) {
            uint32_t metric;
            rc = tsdb_metric_get(db, s.metric, s.metric_len, true, &metric);
            if (rc == 0)
                rc = tsdb_device_know(dev, metric, s.kind);
            if (rc)
                return rc;
        }
        if (got < 0)
            return got;
    }
    return 0;
}

int tsdb_blockset_load(tern_tsdb *db, tsdb_blockset *set, char *err, size_t err_cap)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", db->dir, set->subdir);
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return -errno;
    DIR *dir = opendir(path);
    if (!dir)
        return -errno;
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(dir))) {
        size_t l = strlen(de->d_name);
        char full[4400];
        snprintf(full, sizeof(full), "%s/%s", path, de->d_name);
        if (l > 4 && strcmp(de->d_name + l - 4, ".tmp") == 0) {
            unlink(full); /* an unfinished block write */
            continue;
        }
        if (l <= 4 || strcmp(de->d_name + l - 4, ".blk") != 0)
            continue;
        tsdb_block *b;
        rc = tsdb_block_load(full, &b, err, err_cap);
        if (rc == 0)
            rc = tsdb_blockset_add(db, set, b);
    }
    closedir(dir);
    /* oldest first, so that newer blocks' tags win */
    for (size_t i = 0; rc == 0 && set == &db->hot && i < set->n; i++)
        rc = index_block_devices(db, set->b[i]);
    return rc;
}

/* ---- merging blocks ---- */

typedef struct merge_src {
    const tsdb_block *b;
    tsdb_block_series s;
} merge_src;

static int merge_src_cmp(const void *a, const void *b)
{
    const merge_src *x = a, *y = b;
    size_t n = x->s.metric_len < y->s.metric_len ? x->s.metric_len : y->s.metric_len;
    int c = memcmp(x->s.metric, y->s.metric, n);
    if (c == 0)
        c = (x->s.metric_len > y->s.metric_len) - (x->s.metric_len < y->s.metric_len);
    if (c == 0)
        c = (x->b->seq > y->b->seq) - (x->b->seq < y->b->seq);
    if (c == 0)
        c = (x->s.min_ts > y->s.min_ts) - (x->s.min_ts < y->s.min_ts);
    return c;
}

typedef struct merge_bufs {
    tern_buf merged, one, scratch;
    tsdb_windows wm, w1;
} merge_bufs;

/* Writes the merge of srcs[0..n) (one metric of one device, in sequence order). */
static int merge_series(tsdb_block_writer *w, const merge_src *srcs, size_t n, merge_bufs *m)
{
    const tsdb_block_series *last = &srcs[n - 1].s;
    int rc = 0;
    if (last->kind == TSDB_KIND_WARM) {
        tsdb_windows_reset(&m->wm);
        for (size_t e = 0; e < n && rc == 0; e++) {
            if (srcs[e].s.kind != TSDB_KIND_WARM)
                continue;
            tsdb_windows_reset(&m->w1);
            rc = tsdb_block_check(&srcs[e].s);
            if (rc == 0)
                rc = tsdb_warm_decode(
                    srcs[e].s.chunk, srcs[e].s.chunk_len, INT64_MIN, INT64_MAX, &m->w1);
            if (rc == 0)
                rc = tsdb_windows_merge(&m->wm, &m->w1);
        }
        size_t nw = tsdb_windows_count(&m->wm);
        if (rc || nw == 0)
            return rc;
        const tsdb_window *win = (const tsdb_window *)(const void *)m->wm.w.data;
        tern_buf_reset(&m->one);
        rc = tsdb_warm_encode(&m->wm, &m->one);
        if (rc == 0)
            rc = tsdb_block_writer_chunk(w, last->metric, last->metric_len, TSDB_KIND_WARM,
                m->one.data, m->one.len, (uint32_t)nw, win[0].start, win[nw - 1].start);
        return rc;
    }
    tern_buf_reset(&m->merged);
    for (size_t e = 0; e < n && rc == 0; e++) {
        /* a kind change across blocks: only the newest kind's points are kept */
        if (srcs[e].s.kind != last->kind)
            continue;
        tern_buf_reset(&m->one);
        rc = tsdb_block_decode(&srcs[e].s, INT64_MIN, INT64_MAX, &m->one, &m->scratch);
        if (rc == 0)
            rc = tsdb_merge_into(&m->merged, (const tsdb_point *)(const void *)m->one.data,
                m->one.len / sizeof(tsdb_point));
    }
    if (rc == 0)
        rc = tsdb_block_writer_series(w, last->metric, last->metric_len, last->kind,
            (const tsdb_point *)(const void *)m->merged.data, m->merged.len / sizeof(tsdb_point));
    return rc;
}

/* Merges blocks in[0..n) (sorted by seq) of one set into one new block over [lo, hi]. */
static int merge_blocks(tern_tsdb *db, const tsdb_blockset *set, tsdb_block **in, size_t n,
    int64_t lo, int64_t hi, tsdb_block **out)
{
    uint64_t src_seq = UINT64_MAX;
    for (size_t i = 0; i < n; i++)
        if (in[i]->src_seq < src_seq)
            src_seq = in[i]->src_seq; /* the oldest: a rollup missing in between shows */
    tsdb_block_writer *w;
    int rc = tsdb_block_writer_open(db, set->subdir, lo, hi, src_seq, &w);
    if (rc)
        return rc;
    uint32_t *cursor = tern_calloc(n, sizeof(*cursor));
    merge_src *srcs = NULL;
    size_t n_srcs = 0, cap_srcs = 0;
    merge_bufs m;
    memset(&m, 0, sizeof(m));
    if (!cursor)
        rc = TERN_ENOMEM;
    for (;;) {
        if (rc)
            break;
        /* the smallest next device name among the blocks' cursors */
        const char *name = NULL;
        uint32_t name_len = 0;
        for (size_t i = 0; i < n; i++) {
            if (cursor[i] >= in[i]->n_devices)
                continue;
            tsdb_block_dev d;
            if ((rc = tsdb_block_device(in[i], cursor[i], &d)))
                break;
            size_t k = d.name_len < name_len ? d.name_len : name_len;
            int c = name ? memcmp(d.name, name, k) : -1;
            if (name && c == 0)
                c = (d.name_len > name_len) - (d.name_len < name_len);
            if (c < 0) {
                name = d.name;
                name_len = d.name_len;
            }
        }
        if (rc || !name)
            break;
        n_srcs = 0;
        const char *tags = NULL;
        uint32_t tags_len = 0;
        for (size_t i = 0; i < n && rc == 0; i++) {
            if (cursor[i] >= in[i]->n_devices)
                continue;
            tsdb_block_dev d;
            if ((rc = tsdb_block_device(in[i], cursor[i], &d)))
                break;
            if (d.name_len != name_len || memcmp(d.name, name, name_len) != 0)
                continue;
            cursor[i]++;
            if (d.tags_len) {
                tags = d.tags; /* blocks are in seq order: the newest tags win */
                tags_len = d.tags_len;
            }
            tsdb_block_series s;
            int got;
            while ((got = tsdb_block_next_series(in[i], &d, &s)) == 1) {
                if (n_srcs == cap_srcs) {
                    size_t cap = cap_srcs ? cap_srcs * 2 : 64;
                    merge_src *p = tern_realloc(srcs, cap * sizeof(*p));
                    if (!p) {
                        rc = TERN_ENOMEM;
                        break;
                    }
                    srcs = p;
                    cap_srcs = cap;
                }
                srcs[n_srcs].b = in[i];
                srcs[n_srcs].s = s;
                n_srcs++;
            }
            if (got < 0)
                rc = got;
        }
        if (rc)
            break;
        char tagbuf[4096];
        const char *tagz = NULL;
        if (tags_len && tags_len < sizeof(tagbuf)) {
            memcpy(tagbuf, tags, tags_len);
            tagbuf[tags_len] = 0;
            tagz = tagbuf;
        }
        rc = tsdb_block_writer_device(w, name, name_len, tagz);
        qsort(srcs, n_srcs, sizeof(*srcs), merge_src_cmp);
        for (size_t i = 0; i < n_srcs && rc == 0;) {
            size_t e = i;
            while (e < n_srcs && srcs[e].s.metric_len == srcs[i].s.metric_len
                && memcmp(srcs[e].s.metric, srcs[i].s.metric, srcs[i].s.metric_len) == 0)
                e++;
            rc = merge_series(w, srcs + i, e - i, &m);
            i = e;
        }
    }
    tern_buf_free(&m.merged);
    tern_buf_free(&m.one);
    tern_buf_free(&m.scratch);
    tsdb_windows_free(&m.wm);
    tsdb_windows_free(&m.w1);
    tern_free(srcs);
    tern_free(cursor);
    if (rc) {
        tsdb_block_writer_abort(w);
        return rc;
    }
    return tsdb_block_writer_finish(w, out);
}

int tsdb_blockset_compact(tern_tsdb *db, tsdb_blockset *set, int64_t win, bool force)
{
    int rc = 0;
    for (;;) {
        pthread_mutex_lock(&db->mu);
        tsdb_block **in = NULL;
        size_t n = 0;
        int64_t lo = 0;
        for (size_t i = 0; i < set->n && n == 0; i++) {
            int64_t w0 = align_down(set->b[i]->min_ts, win);
            bool complete = force || (db->head_start != INT64_MIN && db->head_start >= w0 + win);
            size_t cnt = 0;
            for (size_t j = 0; j < set->n; j++)
                if (set->b[j]->min_ts >= w0 && set->b[j]->max_ts < w0 + win)
                    cnt++;
            if (cnt < 2 || !complete)
                continue;
            in = tern_malloc(cnt * sizeof(*in));
            if (!in) {
                rc = TERN_ENOMEM;
                break;
            }
            for (size_t j = 0; j < set->n; j++)
                if (set->b[j]->min_ts >= w0 && set->b[j]->max_ts < w0 + win) {
                    in[n++] = set->b[j];
                    __atomic_add_fetch(&set->b[j]->refs, 1, __ATOMIC_ACQ_REL);
                }
            lo = w0;
        }
        pthread_mutex_unlock(&db->mu);
        if (rc || n == 0)
            break;
        qsort(in, n, sizeof(*in), seq_cmp);
        tsdb_block *out = NULL;
        rc = merge_blocks(db, set, in, n, lo, lo + win - 1, &out);
        pthread_mutex_lock(&db->mu);
        if (rc == 0)
            rc = tsdb_blockset_add(db, set, out);
        for (size_t i = 0; i < n; i++) {
            if (rc == 0)
                tsdb_blockset_remove(set, in[i]);
            tsdb_block_unref(in[i]);
        }
        pthread_mutex_unlock(&db->mu);
        tern_free(in);
        if (rc)
            break;
    }
    return rc;
}

int tsdb_blockset_retention(tern_tsdb *db, tsdb_blockset *set, int64_t cutoff, bool cold)
{
    for (;;) {
        tsdb_block *victim = NULL;
        pthread_mutex_lock(&db->mu);
        for (size_t i = 0; i < set->n; i++)
            if (set->b[i]->max_ts < cutoff) {
                victim = set->b[i];
                __atomic_add_fetch(&victim->refs, 1, __ATOMIC_ACQ_REL);
                break;
            }
        pthread_mutex_unlock(&db->mu);
        if (!victim)
            return 0;
        if (cold && db->opt.cold_hook
            && db->opt.cold_hook(db->opt.cold_arg, victim->path, victim->min_ts, victim->max_ts)
                != 0) {
            tsdb_block_unref(victim);
            return 0; /* the cold tier could not take it: keep it, retry next pass */
        }
        pthread_mutex_lock(&db->mu);
        tsdb_blockset_remove(set, victim);
        pthread_mutex_unlock(&db->mu);
        tsdb_block_unref(victim);
    }
}

/* ---- rollups ---- */

int tsdb_rollup_schedule(tern_tsdb *db, int64_t lo, int64_t hi, uint64_t src_seq)
{
    for (size_t i = 0; i < db->n_rollups; i++) {
        struct tsdb_rollup_job *t = &db->rollups[i];
        if (t->lo == lo && t->hi == hi) {
            if (src_seq > t->src_seq)
                t->src_seq = src_seq;
            return 0;
        }
    }
    if (db->n_rollups == db->cap_rollups) {
        size_t cap = db->cap_rollups ? db->cap_rollups * 2 : 8;
        struct tsdb_rollup_job *p = tern_realloc(db->rollups, cap * sizeof(*p));
        if (!p)
            return TERN_ENOMEM;
        db->rollups = p;
        db->cap_rollups = cap;
    }
    db->rollups[db->n_rollups].lo = lo;
    db->rollups[db->n_rollups].hi = hi;
    db->rollups[db->n_rollups].src_seq = src_seq;
    db->n_rollups++;
    return 0;
}

int tsdb_rollup_schedule_block(tern_tsdb *db, const tsdb_block *b)
{
    int64_t lo = align_down(b->min_ts, TSDB_WINDOW_MS);
    int64_t hi = align_down(b->max_ts, TSDB_WINDOW_MS) + TSDB_WINDOW_MS;
    return tsdb_rollup_schedule(db, lo, hi, b->seq);
}

int tsdb_rollup_schedule_missing(tern_tsdb *db)
{
    for (size_t i = 0; i < db->hot.n; i++) {
        const tsdb_block *h = db->hot.b[i];
        int64_t lo = align_down(h->min_ts, TSDB_WINDOW_MS);
        int64_t hi = align_down(h->max_ts, TSDB_WINDOW_MS);
        bool covered = false;
        for (size_t j = 0; j < db->warm.n && !covered; j++) {
            const tsdb_block *w = db->warm.b[j];
            covered = w->src_seq >= h->seq && w->min_ts <= lo && w->max_ts >= hi;
        }
        if (!covered) {
            int rc = tsdb_rollup_schedule_block(db, h);
            if (rc)
                return rc;
        }
    }
    return 0;
}

int tsdb_rollup_run(tern_tsdb *db)
{
    int rc = 0;
    for (;;) {
        pthread_mutex_lock(&db->mu);
        if (db->n_rollups == 0 || rc) {
            pthread_mutex_unlock(&db->mu);
            return rc;
        }
        struct tsdb_rollup_job t = db->rollups[0];
        pthread_mutex_unlock(&db->mu);
        rc = tsdb_rollup(db, t.lo, t.hi, t.src_seq);
        if (rc) {
            TERN_LOG_RATELIMITED(TERN_LOG_ERROR, "tsdb", "warm rollup of [%lld, %lld) failed: %s",
                (long long)t.lo, (long long)t.hi, tern_strerror(rc));
            return rc; /* kept: retried at the next maintenance pass */
        }
        pthread_mutex_lock(&db->mu);
        memmove(&db->rollups[0], &db->rollups[1], (db->n_rollups - 1) * sizeof(*db->rollups));
        db->n_rollups--;
        tsdb_swarm_trim(db, tsdb_warm_covered_locked(db)); /* replaced by windows from raw */
        pthread_mutex_unlock(&db->mu);
    }
}

/*
 * warm_stream.c: the stream processor's closed windows in the warm tier (tern_tsdb_write_windows).
 *
 * The warm tier has two sources. Windows recomputed from raw points at each cut (query.c,
 * tsdb_rollup) are the authority: they include every late point. Windows the stream closes in
 * event time arrive minutes after the data instead of at the cut (30 minutes and more), and are
 * provisional: they answer warm-tier queries for the range the head still holds, and are
 * dropped once a rollup covers their range.
 *
 * How: windows are buffered (names and sketches in arenas) and written as a warm block in
 * DATA/tsdb/swarm/ when the buffer spans TSDB_SWARM_FLUSH_MS of event time or holds
 * TSDB_SWARM_FLUSH_WINDOWS windows. The blocks are not part of the durable state: the raw points
 * are, and the files are removed when the store opens the tier again. A window written twice (a
 * correction) is replaced: the later write wins, in the buffer and across blocks (a later block
 * has a higher sequence, and queries merge warm blocks newest last).
 *
 * Which range they answer (tsdb_swarm_range): [valid_from, until), where until is the newest
 * complete_before among flushed writes, and valid_from the largest valid_from given: windows
 * before it may lack points the stream did not read (it resumed from a committed offset after a
 * restart). Queries use them only where that range joins the rolled-up part.
 *
 * Who writes: a thread of its own (tern-tsdb-warm), woken when the buffer is due, so encoding
 * and writing blocks stays off the stream's thread; a caller writes inline only when the buffer
 * has grown to TSDB_SWARM_INLINE_WINDOWS while that thread is busy (back-pressure, bounded
 * memory).
 *
 * Locks: sw->mu guards the buffer and the thread's state; sw->flush_mu serialises flushes; the
 * block list and the range are changed under db->mu (queries read them under it).
 */
#include "base/alloc.h"
#include "base/error.h"
#include "base/log.h"
#include "tsdb/sketch.h"
#include "tsdb/tsdb_int.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TSDB_SWARM_FLUSH_MS (5 * TSDB_WINDOW_MS)
#define TSDB_SWARM_FLUSH_WINDOWS ((size_t)1 << 20)
#define TSDB_SWARM_INLINE_WINDOWS ((size_t)4 << 20)
#define SWARM_MAX_NAME 4096u /* device and metric names, bytes */

/* A buffered window: its names in the name arena, its sketch in the sketch arena. */
typedef struct swin {
    uint64_t order; /* write order: the later of two equal windows wins */
    uint32_t name_off;
    uint16_t dlen, mlen;
    tsdb_window w; /* sk_off into the sketch arena */
} swin;

typedef struct swbuf {
    swin *w;
    size_t n, cap;
    tern_buf names, sk;
    int64_t lo, hi;   /* oldest and newest window start buffered */
    int64_t complete; /* the newest complete_before written with them */
} swbuf;

struct tsdb_swarm {
    tern_tsdb *db;
    pthread_mutex_t mu;
    pthread_mutex_t flush_mu;
    pthread_cond_t cv; /* the writer thread waits on it (with mu) */
    pthread_t thread;
    bool thread_running, stop;
    swbuf buf;
    uint64_t order;
    /* under db->mu */
    tsdb_blockset set;
    int64_t until;      /* flushed windows are complete before this (INT64_MIN: none) */
    int64_t valid_from; /* windows from here on hold every point (INT64_MIN: none given) */
};

static void swbuf_free(swbuf *b)
{
    tern_free(b->w);
    tern_buf_free(&b->names);
    tern_buf_free(&b->sk);
    memset(b, 0, sizeof(*b));
}

static void swbuf_init(swbuf *b)
{
    memset(b, 0, sizeof(*b));
    b->lo = INT64_MAX;
    b->hi = INT64_MIN;
    b->complete = INT64_MIN;
}

/* Removes the files of an earlier run (never loaded: provisional). */
static int swarm_dir_reset(tern_tsdb *db)
{
    size_t n = strlen(db->dir) + 300;
    char *path = tern_malloc(n);
    if (!path)
        return TERN_ENOMEM;
    snprintf(path, n, "%s/swarm", db->dir);
    int rc = 0;
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        rc = TERN_EIO;
    DIR *d = rc == 0 ? opendir(path) : NULL;
    if (rc == 0 && !d)
        rc = TERN_EIO;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char *full = tern_malloc(n + 256);
        if (!full)
            continue;
        snprintf(full, n + 256, "%s/%s", path, e->d_name);
        unlink(full);
        tern_free(full);
    }
    if (d)
        closedir(d);
    if (rc)
        TERN_LOG_RATELIMITED(TERN_LOG_ERROR, "tsdb", "%s: %s", path, strerror(errno));
    tern_free(path);
    return rc;
}

static bool buf_due(const swbuf *b)
{
    return b->n > 0 && (b->n >= TSDB_SWARM_FLUSH_WINDOWS || b->hi - b->lo >= TSDB_SWARM_FLUSH_MS);
}

static int swarm_flush(tern_tsdb *db, tsdb_swarm *sw, bool force);

static void *swarm_main(void *arg)
{
    tsdb_swarm *sw = arg;
    pthread_setname_np(pthread_self(), "tern-tsdb-warm"); /* top -H, bench CPU per stage */
    pthread_mutex_lock(&sw->mu);
    while (!sw->stop) {
        if (!buf_due(&sw->buf)) {
            pthread_cond_wait(&sw->cv, &sw->mu);
            continue;
        }
        pthread_mutex_unlock(&sw->mu);
        (void)swarm_flush(sw->db, sw, false); /* errors are logged: the windows are provisional */
        pthread_mutex_lock(&sw->mu);
    }
    pthread_mutex_unlock(&sw->mu);
    return NULL;
}

/* The store's stream-window state, made on first use. Returns NULL when out of memory. */
static tsdb_swarm *swarm_get(tern_tsdb *db)
{
    tsdb_swarm *sw = __atomic_load_n(&db->swarm, __ATOMIC_ACQUIRE);
    if (sw)
        return sw;
    pthread_mutex_lock(&db->mu);
    sw = db->swarm;
    if (!sw && swarm_dir_reset(db) == 0 && (sw = tern_calloc(1, sizeof(*sw))) != NULL) {
        sw->db = db;
        pthread_mutex_init(&sw->mu, NULL);
        pthread_mutex_init(&sw->flush_mu, NULL);
        pthread_cond_init(&sw->cv, NULL);
        swbuf_init(&sw->buf);
        sw->set.subdir = "swarm";
        sw->until = sw->valid_from = INT64_MIN;
        sw->thread_running = pthread_create(&sw->thread, NULL, swarm_main, sw) == 0;
        __atomic_store_n(&db->swarm, sw, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&db->mu);
    return sw;
}

void tsdb_swarm_free(tern_tsdb *db)
{
    tsdb_swarm *sw = db->swarm;
    if (!sw)
        return;
    if (sw->thread_running) {
        pthread_mutex_lock(&sw->mu);
        sw->stop = true;
        pthread_cond_signal(&sw->cv);
        pthread_mutex_unlock(&sw->mu);
        pthread_join(sw->thread, NULL);
    }
    pthread_cond_destroy(&sw->cv);
    for (size_t i = 0; i < sw->set.n; i++)
        sw->set.b[i]->doomed = true; /* provisional: gone with the store */
    tsdb_blockset_free(&sw->set);
    swbuf_free(&sw->buf);
    pthread_mutex_destroy(&sw->mu);
    pthread_mutex_destroy(&sw->flush_mu);
    tern_free(sw);
    db->swarm = NULL;
}

/* ---- flushing ---- */

static int swin_cmp(const void *pa, const void *pb, void *arg)
{
    const swin *a = pa, *b = pb;
    const char *names = arg;
    const char *na = names + a->name_off, *nb = names + b->name_off;
    size_t l = a->dlen < b->dlen ? a->dlen : b->dlen;
    int c = memcmp(na, nb, l);
    if (c == 0 && a->dlen != b->dlen)
        return a->dlen < b->dlen ? -1 : 1;
    if (c)
        return c;
    l = a->mlen < b->mlen ? a->mlen : b->mlen;
    c = memcmp(na + a->dlen, nb + b->dlen, l);
    if (c == 0 && a->mlen != b->mlen)
        return a->mlen < b->mlen ? -1 : 1;
    if (c)
        return c;
    if (a->w.start != b->w.start)
        return a->w.start < b->w.start ? -1 : 1;
    return a->order < b->order ? -1 : a->order > b->order;
}

static bool same_series(const swin *a, const swin *b, const char *names)
{
    return a->dlen == b->dlen && a->mlen == b->mlen
        && memcmp(names + a->name_off, names + b->name_off, (size_t)a->dlen + a->mlen) == 0;
}

/* Writes b's windows as one block into sw->set. b is consumed (left empty, reusable). */
static int swarm_write_block(tern_tsdb *db, tsdb_swarm *sw, swbuf *b)
{
    if (b->n == 0)
        return 0;
    const char *names = (const char *)b->names.data;
    qsort_r(b->w, b->n, sizeof(*b->w), swin_cmp, (void *)names);
    tsdb_block_writer *w = NULL;
    int rc = tsdb_block_writer_open(db, "swarm", b->lo, b->hi + TSDB_WINDOW_MS - 1, 0, &w);
    tsdb_windows ws = { TERN_BUF_INIT, TERN_BUF_INIT };
    tern_buf enc = TERN_BUF_INIT;
    size_t i = 0;
    const swin *dev = NULL;
    while (rc == 0 && i < b->n) {
        /* one series: [i, j), a correction replacing the window before it */
        size_t j = i;
        tsdb_windows_reset(&ws);
        while (rc == 0 && j < b->n && same_series(&b->w[i], &b->w[j], names)) {
            if (j + 1 < b->n && same_series(&b->w[j], &b->w[j + 1], names)
                && b->w[j + 1].w.start == b->w[j].w.start) {
                j++; /* the later write of this window follows */
                continue;
            }
            tsdb_window win = b->w[j].w;
            win.sk_off = (uint32_t)ws.sk.len;
            rc = tern_buf_append(&ws.sk, b->sk.data + b->w[j].w.sk_off, b->w[j].w.sk_len);
            if (rc == 0)
                rc = tern_buf_append(&ws.w, &win, sizeof(win));
            j++;
        }
        const swin *s = &b->w[i];
        if (rc == 0
            && (!dev || dev->dlen != s->dlen
                || memcmp(names + dev->name_off, names + s->name_off, s->dlen) != 0)) {
            rc = tsdb_block_writer_device(w, names + s->name_off, s->dlen, NULL);
            dev = s;
        }
        tern_buf_reset(&enc);
        if (rc == 0)
            rc = tsdb_warm_encode(&ws, &enc);
        size_t nw = tsdb_windows_count(&ws);
        const tsdb_window *first = (const tsdb_window *)(const void *)ws.w.data;
        if (rc == 0)
            rc = tsdb_block_writer_chunk(w, names + s->name_off + s->dlen, s->mlen, TSDB_KIND_WARM,
                enc.data, enc.len, (uint32_t)nw, first[0].start, first[nw - 1].start);
        i = j;
    }
    tsdb_windows_free(&ws);
    tern_buf_free(&enc);
    tsdb_block *blk = NULL;
    if (rc == 0)
        rc = tsdb_block_writer_finish(w, &blk);
    else if (w)
        tsdb_block_writer_abort(w);
    if (rc == 0) {
        pthread_mutex_lock(&db->mu);
        rc = tsdb_blockset_add(db, &sw->set, blk);
        if (rc == 0 && b->complete > sw->until)
            sw->until = b->complete;
        /* the devices with windows: warm queries read theirs for the head's range */
        for (size_t k = 0; rc == 0 && k < b->n; k++) {
            const swin *s = &b->w[k];
            if (k > 0 && b->w[k - 1].dlen == s->dlen
                && memcmp(names + b->w[k - 1].name_off, names + s->name_off, s->dlen) == 0)
                continue;
            tsdb_device *dv = tsdb_device_find(
                db, names + s->name_off, s->dlen, tsdb_name_hash(names + s->name_off, s->dlen));
            if (dv)
                dv->stream_windows = true;
        }
        pthread_mutex_unlock(&db->mu);
        if (rc) {
            blk->doomed = true;
            tsdb_block_unref(blk);
        }
    }
    if (rc)
        TERN_LOG_RATELIMITED(TERN_LOG_ERROR, "tsdb",
            "stream windows [%lld, %lld] not written (%s): queries read raw points there",
            (long long)b->lo, (long long)b->hi, tern_strerror(rc));
    b->n = 0;
    tern_buf_reset(&b->names);
    tern_buf_reset(&b->sk);
    b->lo = INT64_MAX;
    b->hi = INT64_MIN;
    b->complete = INT64_MIN;
    return rc;
}

/* Takes the buffer if it is due (or force) and writes it. */
static int swarm_flush(tern_tsdb *db, tsdb_swarm *sw, bool force)
{
    pthread_mutex_lock(&sw->flush_mu);
    pthread_mutex_lock(&sw->mu);
    swbuf mine;
    bool due = force ? sw->buf.n > 0 : buf_due(&sw->buf);
    if (due) {
        mine = sw->buf;
        swbuf_init(&sw->buf);
    }
    pthread_mutex_unlock(&sw->mu);
    int rc = 0;
    if (due) {
        rc = swarm_write_block(db, sw, &mine);
        swbuf_free(&mine);
    }
    pthread_mutex_unlock(&sw->flush_mu);
    return rc;
}

/* ---- the API ---- */

int tern_tsdb_write_windows(tern_tsdb *db, const tern_tsdb_window *ws, size_t n,
    int64_t complete_before, int64_t valid_from)
{
    for (size_t i = 0; i < n; i++) {
        const tern_tsdb_window *w = &ws[i];
        if (!w->device || w->device_len == 0 || w->device_len > SWARM_MAX_NAME || !w->metric
            || w->metric_len == 0 || w->metric_len > SWARM_MAX_NAME || w->count == 0
            || w->start_ms % TSDB_WINDOW_MS != 0)
            return TERN_EINVAL;
        tsdb_window agg = { .count = w->count, .min = w->min, .max = w->max };
        if (!w->sketch && !tsdb_window_sketch_implied(&agg))
            return TERN_EINVAL; /* its values are not implied by its aggregates */
    }
    tsdb_swarm *sw = swarm_get(db);
    if (!sw)
        return TERN_ENOMEM;
    pthread_mutex_lock(&sw->mu);
    swbuf *b = &sw->buf;
    int rc = 0;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->n + n)
            cap *= 2;
        swin *p = tern_realloc(b->w, cap * sizeof(*p));
        if (!p)
            rc = TERN_ENOMEM;
        else {
            b->w = p;
            b->cap = cap;
        }
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        const tern_tsdb_window *w = &ws[i];
        swin *s = &b->w[b->n];
        memset(s, 0, sizeof(*s));
        s->order = sw->order++;
        s->name_off = (uint32_t)b->names.len;
        s->dlen = (uint16_t)w->device_len;
        s->mlen = (uint16_t)w->metric_len;
        s->w.start = w->start_ms;
        s->w.count = w->count;
        s->w.sum = w->sum;
        s->w.min = w->min;
        s->w.max = w->max;
        s->w.last = w->last;
        s->w.sk_off = (uint32_t)b->sk.len;
        rc = tern_buf_append(&b->names, w->device, w->device_len);
        if (rc == 0)
            rc = tern_buf_append(&b->names, w->metric, w->metric_len);
        if (rc == 0 && !tsdb_window_sketch_implied(&s->w))
            rc = tern_sketch_encode(w->sketch, &b->sk);
        s->w.sk_len = (uint32_t)(b->sk.len - s->w.sk_off);
        if (rc)
            break;
        b->n++;
        if (w->start_ms < b->lo)
            b->lo = w->start_ms;
        if (w->start_ms > b->hi)
            b->hi = w->start_ms;
    }
    if (rc == 0 && complete_before > b->complete)
        b->complete = complete_before;
    bool due = buf_due(b);
    bool inline_flush = !sw->thread_running || b->n >= TSDB_SWARM_INLINE_WINDOWS;
    if (due && !inline_flush)
        pthread_cond_signal(&sw->cv);
    pthread_mutex_unlock(&sw->mu);
    if (rc == 0 && valid_from != INT64_MIN) {
        pthread_mutex_lock(&db->mu);
        if (valid_from > sw->valid_from)
            sw->valid_from = valid_from;
        pthread_mutex_unlock(&db->mu);
    }
    if (rc == 0 && due && inline_flush)
        rc = swarm_flush(db, sw, false);
    return rc;
}

int tern_tsdb_flush_windows(tern_tsdb *db)
{
    tsdb_swarm *sw = __atomic_load_n(&db->swarm, __ATOMIC_ACQUIRE);
    return sw ? swarm_flush(db, sw, true) : 0;
}

/* ---- for queries and maintenance (under db->mu) ---- */

void tsdb_swarm_range(const tern_tsdb *db, int64_t *from, int64_t *until)
{
    const tsdb_swarm *sw = db->swarm;
    *from = sw ? sw->valid_from : INT64_MIN;
    *until = sw && sw->set.n ? sw->until : INT64_MIN;
}

const tsdb_blockset *tsdb_swarm_blocks(const tern_tsdb *db)
{
    return db->swarm ? &db->swarm->set : NULL;
}

void tsdb_swarm_trim(tern_tsdb *db, int64_t covered_until)
{
    tsdb_swarm *sw = db->swarm;
    if (!sw)
        return;
    for (size_t i = 0; i < sw->set.n;) {
        tsdb_block *b = sw->set.b[i];
        if (b->max_ts < covered_until)
            tsdb_blockset_remove(&sw->set, b); /* the file goes with the last reference */
        else
            i++;
    }
}

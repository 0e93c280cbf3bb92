/*
 * window.c: the event-time window engine (window.h; semantics in docs/stream.md).
 *
 * State, and what each piece costs:
 *   - a series table (chained hash on device + metric): one series per (device, metric) that
 *     holds a window, with its name bytes and a small array of its windows, sorted by start;
 *   - windows: the points of the window not yet folded, as two parallel arrays sorted by event
 *     time (a u32 offset from the start and the value: 12 bytes a point). They are both the
 *     window's content (its aggregate is computed from them at emission, so any arrival order
 *     gives the from-scratch result) and its dedup keys. A window whose points were evicted by
 *     the dedup capacity keeps them folded in an aggregate with a sketch instead;
 *   - slots: every window of one start, in an array sorted by start. Closing, retention and
 *     eviction walk slots from the oldest, so a tick costs the windows it emits, not the series;
 *   - partitions: max event time, last arrival, idleness.
 * Bytes are counted as they are allocated (state_bytes in the stats).
 */
#include "stream/window.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/decsum.h"
#include "base/hash.h"

#include <math.h>
#include <string.h>

/* ---- window statistics (all but the sketch) ---- */

typedef struct wstat {
    uint64_t count;
    tern_decsum sum; /* exact for decimals, as the store's warm windows */
    double min, max, last;
    int64_t last_ts;
} wstat;

static void wstat_init(wstat *st)
{
    memset(st, 0, sizeof(*st));
    tern_decsum_init(&st->sum);
    st->min = st->max = st->last = NAN;
    st->last_ts = INT64_MIN;
}

/* Adds (ts, v); for equal ts the later call wins "last" (points held arrive after folded ones). */
static void wstat_add(wstat *st, int64_t ts, double v)
{
    st->count++;
    tern_decsum_add(&st->sum, v);
    if (v == v) {
        if (st->min != st->min || v < st->min)
            st->min = v;
        if (st->max != st->max || v > st->max)
            st->max = v;
    }
    if (ts >= st->last_ts) {
        st->last_ts = ts;
        st->last = v;
    }
}

/* ---- structures ---- */

typedef struct series series;

/* Points folded out of a window by the dedup capacity. */
typedef struct win_agg {
    wstat st;
    tern_sketch sk;
    size_t sk_bytes; /* counted in state_bytes */
} win_agg;

/* Points a window holds without a heap array: a minute at one point per 10 s. */
#define WIN_INLINE 8u

typedef struct win {
    series *s;
    int64_t start;
    uint32_t *off; /* event time - start, ascending (the dedup keys): off_in or the heap */
    double *val;   /* the values, in the same order: val_in or the heap */
    uint32_t n, cap;
    win_agg *agg; /* NULL until a fold */
    bool emitted; /* on_window succeeded at least once */
    bool dirty;   /* changed since a failed correction emission */
    uint32_t off_in[WIN_INLINE];
    double val_in[WIN_INLINE];
} win;

/* Windows kept for reuse when freed (one allocation fewer per window), at most this many. */
#define WIN_POOL_MAX 4096u

struct series {
    series *next;
    uint64_t hash;
    win **w; /* sorted by start */
    uint32_t n_w, cap_w;
    uint16_t dlen, mlen;
    char key[]; /* device bytes then metric bytes */
};

typedef struct slot {
    int64_t start;
    win **w;
    uint32_t n, cap;
    uint32_t n_dirty;
    uint64_t n_points; /* points held by its windows */
    bool closed;       /* every window emitted */
} slot;

typedef struct part {
    int64_t max_ts;
    int64_t last_arrival;
    bool has_data;
    bool idle; /* as of the last watermark computation */
} part;

struct tern_window_engine {
    tern_window_config c;
    tern_window_callbacks cb;
    series **buckets;
    size_t n_buckets, n_series;
    slot *slots;
    size_t n_slots, cap_slots;
    part *parts;
    bool started;
    int64_t now;
    int64_t wm;
    int64_t closed_before;  /* windows starting before this have been closed */
    int64_t retain_before;  /* windows starting before this are dropped */
    int64_t next_idle_at;   /* processing time at which idleness may next change */
    int64_t emitted_before; /* close_slots has emitted every window of the slots before this */
    uint64_t n_dirty;       /* windows whose correction is still to be emitted, all slots */
    uint32_t min_part;      /* the partition that set the watermark */
    uint32_t n_idle;
    uint64_t n_open, n_closed, n_points_held;
    size_t bytes;
    tern_sketch scratch;
    size_t scratch_bytes;
    win *pool; /* freed windows for reuse, linked through their s field */
    size_t n_pool;
    tern_window_stats st; /* counters */
};

/* The heap bytes a sketch's buckets take (reads the sketch's store capacities). */
static size_t sketch_bytes(const tern_sketch *s)
{
    return ((size_t)s->pos.cap + (size_t)s->neg.cap) * sizeof(uint64_t);
}

static int64_t win_floor(const tern_window_engine *e, int64_t ts)
{
    int64_t r = ts % e->c.window_ms;
    return r < 0 ? ts - r - e->c.window_ms : ts - r;
}

/* ---- config ---- */

void tern_window_config_default(tern_window_config *c)
{
    memset(c, 0, sizeof(*c));
    c->window_ms = 60000;
    c->allowed_lateness_ms = 30000;
    c->idle_timeout_ms = 60000;
    c->retain_ms = 5 * 60000;
    c->n_partitions = 1;
    c->dedup_capacity = (size_t)1 << 22;
}

static bool config_ok(const tern_window_config *c)
{
    const int64_t lim = TERN_WINDOW_TS_LIMIT;
    return c->window_ms >= 1 && c->window_ms <= (INT64_C(1) << 31) && c->allowed_lateness_ms >= 0
        && c->allowed_lateness_ms <= lim && c->idle_timeout_ms >= 0 && c->idle_timeout_ms <= lim
        && c->retain_ms >= 0 && c->retain_ms <= lim && c->n_partitions >= 1
        && c->n_partitions <= TERN_WINDOW_MAX_PARTITIONS && c->dedup_capacity >= 1;
}

int tern_window_engine_new(
    const tern_window_config *c, const tern_window_callbacks *cb, tern_window_engine **out)
{
    if (!c || !out || !config_ok(c))
        return TERN_EINVAL;
    tern_window_engine *e = tern_calloc(1, sizeof(*e));
    if (!e)
        return TERN_ENOMEM;
    e->c = *c;
    if (cb)
        e->cb = *cb;
    e->n_buckets = 64;
    e->buckets = tern_calloc(e->n_buckets, sizeof(*e->buckets));
    e->parts = tern_calloc(c->n_partitions, sizeof(*e->parts));
    if (!e->buckets || !e->parts) {
        tern_free(e->buckets);
        tern_free(e->parts);
        tern_free(e);
        return TERN_ENOMEM;
    }
    int rc = tern_sketch_init(&e->scratch, TERN_SKETCH_DEFAULT_ACCURACY);
    TERN_ASSERT(rc == 0);
    for (uint32_t i = 0; i < c->n_partitions; i++)
        e->parts[i].max_ts = INT64_MIN;
    e->wm = e->closed_before = e->retain_before = e->emitted_before = INT64_MIN;
    e->next_idle_at = INT64_MIN;
    e->bytes
        = sizeof(*e) + e->n_buckets * sizeof(*e->buckets) + c->n_partitions * sizeof(*e->parts);
    *out = e;
    return 0;
}

/* The heap bytes of w's point arrays (none while they are inline). */
static size_t win_heap_bytes(const win *w)
{
    return w->off == w->off_in ? 0 : (size_t)w->cap * (sizeof(*w->off) + sizeof(*w->val));
}

static void win_arrays_free(win *w)
{
    if (w->off != w->off_in) {
        tern_free(w->off);
        tern_free(w->val);
    }
    w->off = w->off_in;
    w->val = w->val_in;
    w->cap = WIN_INLINE;
    w->n = 0;
}

static void win_free(tern_window_engine *e, win *w)
{
    e->bytes -= win_heap_bytes(w);
    e->n_points_held -= w->n;
    if (w->agg) {
        e->bytes -= sizeof(*w->agg) + w->agg->sk_bytes;
        tern_sketch_free(&w->agg->sk);
        tern_free(w->agg);
    }
    if (w->emitted)
        e->n_closed--;
    else
        e->n_open--;
    win_arrays_free(w);
    if (e->n_pool < WIN_POOL_MAX) {
        w->s = (series *)(void *)e->pool; /* the pool's link; the bytes stay counted */
        e->pool = w;
        e->n_pool++;
        return;
    }
    e->bytes -= sizeof(*w);
    tern_free(w);
}

static size_t series_bytes(const series *s)
{
    return sizeof(*s) + (size_t)s->dlen + s->mlen + (size_t)s->cap_w * sizeof(*s->w);
}

void tern_window_engine_free(tern_window_engine *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n_slots; i++) {
        for (uint32_t j = 0; j < e->slots[i].n; j++)
            win_free(e, e->slots[i].w[j]);
        tern_free(e->slots[i].w);
    }
    for (size_t b = 0; b < e->n_buckets; b++) {
        for (series *s = e->buckets[b], *next; s; s = next) {
            next = s->next;
            tern_free(s->w);
            tern_free(s);
        }
    }
    while (e->pool) {
        win *w = e->pool;
        e->pool = (win *)(void *)w->s;
        tern_free(w);
    }
    tern_free(e->slots);
    tern_free(e->buckets);
    tern_free(e->parts);
    tern_sketch_free(&e->scratch);
    tern_free(e);
}

/* ---- series table ---- */

static uint64_t series_hash(const char *dev, size_t dlen, const char *met, size_t mlen)
{
    uint64_t h = tern_hash64(dev, dlen, 0x7465726eu);
    return tern_hash64(met, mlen, h ^ (uint64_t)dlen);
}

static series *series_find(const tern_window_engine *e, uint64_t h, const char *dev, size_t dlen,
    const char *met, size_t mlen)
{
    for (series *s = e->buckets[h & (e->n_buckets - 1)]; s; s = s->next)
        if (s->hash == h && s->dlen == dlen && s->mlen == mlen && memcmp(s->key, dev, dlen) == 0
            && memcmp(s->key + dlen, met, mlen) == 0)
            return s;
    return NULL;
}

static void series_grow_table(tern_window_engine *e)
{
    size_t nb = e->n_buckets * 2;
    series **b = tern_calloc(nb, sizeof(*b));
    if (!b)
        return; /* a longer chain, not a failure */
    for (size_t i = 0; i < e->n_buckets; i++) {
        for (series *s = e->buckets[i], *next; s; s = next) {
            next = s->next;
            s->next = b[s->hash & (nb - 1)];
            b[s->hash & (nb - 1)] = s;
        }
    }
    tern_free(e->buckets);
    e->bytes += (nb - e->n_buckets) * sizeof(*b);
    e->buckets = b;
    e->n_buckets = nb;
}

static series *series_new(
    tern_window_engine *e, uint64_t h, const char *dev, size_t dlen, const char *met, size_t mlen)
{
    series *s = tern_malloc(sizeof(*s) + dlen + mlen);
    if (!s)
        return NULL;
    memset(s, 0, sizeof(*s));
    s->hash = h;
    s->dlen = (uint16_t)dlen;
    s->mlen = (uint16_t)mlen;
    memcpy(s->key, dev, dlen);
    memcpy(s->key + dlen, met, mlen);
    if (e->n_series >= e->n_buckets)
        series_grow_table(e);
    s->next = e->buckets[h & (e->n_buckets - 1)];
    e->buckets[h & (e->n_buckets - 1)] = s;
    e->n_series++;
    e->bytes += series_bytes(s);
    return s;
}

static void series_remove(tern_window_engine *e, series *s)
{
    series **pp = &e->buckets[s->hash & (e->n_buckets - 1)];
    while (*pp != s)
        pp = &(*pp)->next;
    *pp = s->next;
    e->n_series--;
    e->bytes -= series_bytes(s);
    tern_free(s->w);
    tern_free(s);
}

static win *series_window(const series *s, int64_t start)
{
    /* newest first: points mostly arrive in order, so the window is usually the last one,
     * whatever the lateness allows to stay open behind it */
    for (uint32_t i = s->n_w; i-- > 0;) {
        int64_t ws = s->w[i]->start;
        if (ws == start)
            return s->w[i];
        if (ws < start)
            return NULL;
    }
    return NULL;
}

/* Drops w from its series' list (and the series once it holds no window). */
static void series_unlink(tern_window_engine *e, win *w)
{
    series *s = w->s;
    uint32_t i = 0;
    while (s->w[i] != w)
        i++;
    memmove(&s->w[i], &s->w[i + 1], (s->n_w - i - 1) * sizeof(*s->w));
    if (--s->n_w == 0)
        series_remove(e, s);
}

/* ---- slots ---- */

/* The index of the first slot whose start is >= start. */
static size_t slot_lower(const tern_window_engine *e, int64_t start)
{
    size_t lo = 0, hi = e->n_slots;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (e->slots[mid].start < start)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static slot *slot_get(tern_window_engine *e, int64_t start)
{
    size_t i = slot_lower(e, start);
    if (i < e->n_slots && e->slots[i].start == start)
        return &e->slots[i];
    if (e->n_slots == e->cap_slots) {
        size_t cap = e->cap_slots ? e->cap_slots * 2 : 8;
        slot *ns = tern_realloc(e->slots, cap * sizeof(*ns));
        if (!ns)
            return NULL;
        e->bytes += (cap - e->cap_slots) * sizeof(*ns);
        e->slots = ns;
        e->cap_slots = cap;
    }
    memmove(&e->slots[i + 1], &e->slots[i], (e->n_slots - i) * sizeof(*e->slots));
    e->n_slots++;
    memset(&e->slots[i], 0, sizeof(e->slots[i]));
    e->slots[i].start = start;
    e->slots[i].closed = start < e->closed_before;
    return &e->slots[i];
}

/* Creates the window (s, start) in its slot and its series' list. NULL: out of memory. */
static win *win_new(tern_window_engine *e, series *s, int64_t start)
{
    slot *sl = slot_get(e, start);
    if (!sl)
        return NULL;
    if (sl->n == sl->cap) {
        uint32_t cap = sl->cap ? sl->cap * 2 : 16;
        win **nw = tern_realloc(sl->w, cap * sizeof(*nw));
        if (!nw)
            return NULL;
        e->bytes += (size_t)(cap - sl->cap) * sizeof(*nw);
        sl->w = nw;
        sl->cap = cap;
    }
    if (s->n_w == s->cap_w) {
        uint32_t cap = s->cap_w ? s->cap_w * 2 : 2;
        win **nw = tern_realloc(s->w, cap * sizeof(*nw));
        if (!nw)
            return NULL;
        e->bytes += (size_t)(cap - s->cap_w) * sizeof(*nw);
        s->w = nw;
        s->cap_w = cap;
    }
    win *w = e->pool;
    if (w) {
        e->pool = (win *)(void *)w->s;
        e->n_pool--;
    } else {
        w = tern_malloc(sizeof(*w));
        if (!w)
            return NULL;
        e->bytes += sizeof(*w);
    }
    memset(w, 0, offsetof(win, off_in));
    w->off = w->off_in;
    w->val = w->val_in;
    w->cap = WIN_INLINE;
    w->s = s;
    w->start = start;
    uint32_t i = s->n_w;
    while (i > 0 && s->w[i - 1]->start > start)
        i--;
    memmove(&s->w[i + 1], &s->w[i], (s->n_w - i) * sizeof(*s->w));
    s->w[i] = w;
    s->n_w++;
    sl->w[sl->n++] = w;
    e->n_open++;
    return w;
}

/* Finds off among w's points: true if present; *pos is where it is or would go. */
static bool win_find(const win *w, uint32_t off, uint32_t *pos)
{
    uint32_t lo = 0, hi = w->n;
    if (hi > 0 && w->off[hi - 1] < off) { /* in order: the common case */
        *pos = hi;
        return false;
    }
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (w->off[mid] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    *pos = lo;
    return lo < w->n && w->off[lo] == off;
}

static int win_insert(tern_window_engine *e, win *w, uint32_t pos, uint32_t off, double v)
{
    if (w->n == w->cap) {
        uint32_t cap = w->cap * 2;
        uint32_t *no = tern_malloc(cap * sizeof(*no));
        double *nv = no ? tern_malloc(cap * sizeof(*nv)) : NULL;
        if (!nv) {
            tern_free(no);
            return TERN_ENOMEM;
        }
        memcpy(no, w->off, w->n * sizeof(*no));
        memcpy(nv, w->val, w->n * sizeof(*nv));
        e->bytes += cap * (sizeof(*no) + sizeof(*nv)) - win_heap_bytes(w);
        win_arrays_free(w); /* n back to 0: set again below */
        w->off = no;
        w->val = nv;
        w->cap = cap;
        w->n = cap / 2;
    }
    memmove(&w->off[pos + 1], &w->off[pos], (w->n - pos) * sizeof(*w->off));
    memmove(&w->val[pos + 1], &w->val[pos], (w->n - pos) * sizeof(*w->val));
    w->off[pos] = off;
    w->val[pos] = v;
    w->n++;
    e->n_points_held++;
    return 0;
}

/* ---- emission ---- */

static int win_emit(tern_window_engine *e, win *w, bool correction)
{
    wstat st;
    tern_sketch_reset(&e->scratch);
    int rc = 0;
    if (w->agg) {
        st = w->agg->st;
        rc = tern_sketch_merge(&e->scratch, &w->agg->sk);
    } else {
        wstat_init(&st);
    }
    for (uint32_t i = 0; i < w->n && rc == 0; i++) {
        wstat_add(&st, w->start + w->off[i], w->val[i]);
        rc = tern_sketch_add(&e->scratch, w->val[i]);
    }
    size_t sb = sketch_bytes(&e->scratch);
    e->bytes += sb - e->scratch_bytes;
    e->scratch_bytes = sb;
    if (rc)
        return rc;
    if (e->cb.on_window && st.count > 0) { /* a window left empty by ENOMEM is not emitted */
        const series *s = w->s;
        tern_window_result r = {
            .device = s->key,
            .device_len = s->dlen,
            .metric = s->key + s->dlen,
            .metric_len = s->mlen,
            .start_ms = w->start,
            .end_ms = w->start + e->c.window_ms,
            .count = st.count,
            .sum = tern_decsum_value(&st.sum),
            .min = st.min,
            .max = st.max,
            .last = st.last,
            .last_ts_ms = st.last_ts,
            .sketch = &e->scratch,
            .correction = correction,
        };
        rc = e->cb.on_window(e->cb.arg, &r);
        if (rc)
            return rc;
    }
    if (!w->emitted) {
        w->emitted = true;
        e->n_open--;
        e->n_closed++;
    }
    if (correction)
        e->st.n_corrections++;
    else
        e->st.n_windows_emitted++;
    return 0;
}

/* Emits every window of the slots that must be closed, and retries failed corrections. */
static int close_slots(tern_window_engine *e, int64_t before)
{
    if (before <= e->emitted_before && e->n_dirty == 0)
        return 0; /* nothing new to close (most calls: one per point) */
    for (size_t i = 0; i < e->n_slots && e->slots[i].start < before; i++) {
        slot *sl = &e->slots[i];
        if (!sl->closed) {
            for (uint32_t j = 0; j < sl->n; j++) {
                if (sl->w[j]->emitted)
                    continue;
                int rc = win_emit(e, sl->w[j], false);
                if (rc)
                    return rc;
            }
            sl->closed = true;
        }
        for (uint32_t j = 0; j < sl->n && sl->n_dirty > 0; j++) {
            win *w = sl->w[j];
            if (!w->dirty)
                continue;
            int rc = win_emit(e, w, true);
            if (rc)
                return rc;
            w->dirty = false;
            sl->n_dirty--;
            e->n_dirty--;
        }
    }
    if (before > e->emitted_before)
        e->emitted_before = before;
    return 0;
}

static void drop_slots(tern_window_engine *e, int64_t before)
{
    size_t k = 0;
    while (k < e->n_slots && e->slots[k].start < before) {
        slot *sl = &e->slots[k];
        for (uint32_t j = 0; j < sl->n; j++) {
            series_unlink(e, sl->w[j]);
            win_free(e, sl->w[j]);
        }
        e->bytes -= (size_t)sl->cap * sizeof(*sl->w);
        e->n_dirty -= sl->n_dirty;
        tern_free(sl->w);
        k++;
    }
    if (k == 0)
        return;
    memmove(&e->slots[0], &e->slots[k], (e->n_slots - k) * sizeof(*e->slots));
    e->n_slots -= k;
}

/* ---- watermarks ---- */

static void watermark_compute(tern_window_engine *e)
{
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    bool any_active = false;
    e->n_idle = 0;
    e->next_idle_at = INT64_MAX;
    for (uint32_t i = 0; i < e->c.n_partitions; i++) {
        part *p = &e->parts[i];
        if (p->has_data) {
            int64_t end = win_floor(e, p->max_ts) + e->c.window_ms;
            hi = end > hi ? end : hi;
        }
        p->idle = e->c.idle_timeout_ms > 0 && e->now - p->last_arrival >= e->c.idle_timeout_ms;
        if (p->idle) {
            e->n_idle++;
            continue;
        }
        if (e->c.idle_timeout_ms > 0 && p->last_arrival + e->c.idle_timeout_ms < e->next_idle_at)
            e->next_idle_at = p->last_arrival + e->c.idle_timeout_ms;
        int64_t wp = p->has_data ? p->max_ts - e->c.allowed_lateness_ms : INT64_MIN;
        if (!any_active || wp < lo) {
            lo = wp;
            e->min_part = i;
        }
        any_active = true;
    }
    int64_t w = any_active ? lo : hi;
    if (w > e->wm)
        e->wm = w;
}

/*
 * Moves processing time to now (force: a partition's watermark or activity changed), then
 * closes, retries and drops windows as the watermark allows.
 */
static int advance(tern_window_engine *e, int64_t now, bool force)
{
    if (!e->started) {
        e->started = true;
        e->now = now;
        for (uint32_t i = 0; i < e->c.n_partitions; i++)
            e->parts[i].last_arrival = now;
        force = true;
    }
    if (now > e->now)
        e->now = now;
    if (force || e->now >= e->next_idle_at)
        watermark_compute(e);
    if (e->wm != INT64_MIN) {
        int64_t f = win_floor(e, e->wm);
        if (f > e->closed_before)
            e->closed_before = f;
    }
    if (e->closed_before == INT64_MIN)
        return 0;
    int rc = close_slots(e, e->closed_before);
    if (rc)
        return rc;
    int64_t r = win_floor(e, e->closed_before - e->c.retain_ms);
    if (r > e->retain_before)
        e->retain_before = r;
    drop_slots(e, e->retain_before);
    return 0;
}

int tern_window_tick(tern_window_engine *e, int64_t now_ms)
{
    return advance(e, now_ms, false);
}

/* ---- dedup capacity ---- */

/* Folds w's points into its aggregate. Returns 0 or TERN_ENOMEM (w unchanged). */
static int win_fold(tern_window_engine *e, win *w)
{
    win_agg *a = w->agg;
    bool fresh = false;
    if (!a) {
        a = tern_calloc(1, sizeof(*a));
        if (!a)
            return TERN_ENOMEM;
        wstat_init(&a->st);
        int rc = tern_sketch_init(&a->sk, TERN_SKETCH_DEFAULT_ACCURACY);
        TERN_ASSERT(rc == 0);
        fresh = true;
    }
    tern_sketch sk;
    int rc = tern_sketch_init(&sk, TERN_SKETCH_DEFAULT_ACCURACY);
    TERN_ASSERT(rc == 0);
    rc = tern_sketch_merge(&sk, &a->sk);
    for (uint32_t i = 0; i < w->n && rc == 0; i++)
        rc = tern_sketch_add(&sk, w->val[i]);
    if (rc) {
        tern_sketch_free(&sk);
        if (fresh) {
            tern_sketch_free(&a->sk);
            tern_free(a);
        }
        return rc;
    }
    tern_sketch_free(&a->sk);
    a->sk = sk;
    for (uint32_t i = 0; i < w->n; i++)
        wstat_add(&a->st, w->start + w->off[i], w->val[i]);
    if (fresh) {
        w->agg = a;
        e->bytes += sizeof(*a);
    }
    e->bytes -= a->sk_bytes;
    a->sk_bytes = sketch_bytes(&a->sk);
    e->bytes += a->sk_bytes;
    e->bytes -= win_heap_bytes(w);
    e->st.n_dedup_evictions += w->n;
    e->n_points_held -= w->n;
    win_arrays_free(w);
    return 0;
}

/* Folds the oldest windows' points until at most 7/8 of the capacity is held. */
static int evict(tern_window_engine *e)
{
    if (e->n_points_held <= e->c.dedup_capacity)
        return 0;
    uint64_t low = e->c.dedup_capacity - e->c.dedup_capacity / 8;
    for (size_t i = 0; i < e->n_slots && e->n_points_held > low; i++) {
        slot *sl = &e->slots[i];
        for (uint32_t j = 0; j < sl->n && sl->n_points > 0 && e->n_points_held > low; j++) {
            win *w = sl->w[j];
            uint32_t n = w->n;
            if (n == 0)
                continue;
            int rc = win_fold(e, w);
            if (rc)
                return rc;
            sl->n_points -= n;
        }
    }
    return 0;
}

/* ---- add ---- */

int tern_window_add(tern_window_engine *e, uint32_t partition, const char *device, size_t dlen,
    const char *metric, size_t mlen, int64_t ts_ms, double v, int64_t now_ms)
{
    if (partition >= e->c.n_partitions || !device || !metric || dlen == 0
        || dlen > TERN_WINDOW_MAX_NAME || mlen == 0 || mlen > TERN_WINDOW_MAX_NAME
        || ts_ms < -TERN_WINDOW_TS_LIMIT || ts_ms > TERN_WINDOW_TS_LIMIT)
        return TERN_EINVAL;
    int rc = advance(e, now_ms, false);
    if (rc)
        return rc;
    part *p = &e->parts[partition];
    e->st.n_points++;
    tern_window_point pt = {
        .partition = partition,
        .device = device,
        .device_len = dlen,
        .metric = metric,
        .metric_len = mlen,
        .ts_ms = ts_ms,
        .value = v,
        .arrival_ms = e->now,
    };
    int64_t start = win_floor(e, ts_ms);
    uint32_t off = (uint32_t)(ts_ms - start);
    uint64_t h = 0;
    series *s = NULL;
    win *w = NULL;
    uint32_t pos = 0;
    bool too_old = start < e->retain_before;
    if (!too_old) {
        h = series_hash(device, dlen, metric, mlen);
        s = series_find(e, h, device, dlen, metric, mlen);
        w = s ? series_window(s, start) : NULL;
        if (w && win_find(w, off, &pos)) {
            e->st.n_duplicates++;
            rc = e->cb.on_duplicate ? e->cb.on_duplicate(e->cb.arg, &pt) : 0;
            goto arrived;
        }
    }
    if (e->cb.on_point && (rc = e->cb.on_point(e->cb.arg, &pt)) != 0)
        return rc; /* not taken: state as before (but for processing time) */
    e->st.n_accepted++;
    if (p->has_data && ts_ms < p->max_ts)
        e->st.n_out_of_order++;
    bool late = start < e->closed_before;
    if (late)
        e->st.n_late++;
    if (too_old) {
        e->st.n_late_uncorrected++;
        rc = e->cb.on_late ? e->cb.on_late(e->cb.arg, &pt) : 0;
        goto arrived;
    }
    if (!s && !(s = series_new(e, h, device, dlen, metric, mlen))) {
        rc = TERN_ENOMEM;
        goto arrived;
    }
    if (!w && !(w = win_new(e, s, start))) {
        if (s->n_w == 0)
            series_remove(e, s);
        rc = TERN_ENOMEM;
        goto arrived;
    }
    if ((rc = win_insert(e, w, pos, off, v)) != 0)
        goto arrived; /* an empty new window is emitted (count 0) or dropped in time: harmless */
    slot *sl = &e->slots[slot_lower(e, start)];
    sl->n_points++;
    if (late) {
        rc = e->cb.on_late ? e->cb.on_late(e->cb.arg, &pt) : 0;
        if (w->emitted || sl->closed) {
            int erc = win_emit(e, w, true);
            if (erc && !w->dirty) {
                w->dirty = true;
                sl->n_dirty++;
                e->n_dirty++;
            }
            rc = rc ? rc : erc;
        }
    }
    if (rc == 0)
        rc = evict(e);
arrived:;
    bool force = p->idle || (!p->has_data) || (ts_ms > p->max_ts && partition == e->min_part);
    if (!p->has_data || ts_ms > p->max_ts)
        p->max_ts = ts_ms;
    p->has_data = true;
    p->last_arrival = e->now;
    if (rc) {
        e->next_idle_at = INT64_MIN; /* the next tick recomputes the watermark */
        return rc;
    }
    return advance(e, e->now, force);
}

int tern_window_flush(tern_window_engine *e)
{
    if (e->n_slots == 0)
        return 0;
    int64_t end = e->slots[e->n_slots - 1].start + e->c.window_ms;
    int rc = close_slots(e, end);
    if (rc)
        return rc;
    if (end > e->closed_before)
        e->closed_before = end;
    if (end > e->wm)
        e->wm = end;
    e->retain_before = e->closed_before;
    drop_slots(e, e->retain_before);
    return 0;
}

void tern_window_get_stats(const tern_window_engine *e, tern_window_stats *out)
{
    *out = e->st;
    out->n_series = e->n_series;
    out->n_open_windows = e->n_open;
    out->n_closed_windows = e->n_closed;
    out->n_dedup_entries = e->n_points_held;
    out->state_bytes = e->bytes;
    out->watermark_ms = e->wm;
    out->closed_before_ms = e->closed_before;
    out->n_idle_partitions = e->n_idle;
}

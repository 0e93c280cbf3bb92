/*
 * head.c: a series' in-memory points (see tsdb_int.h for the layout and why).
 *
 * Invariants, which make merging cheap and keep "the last write wins" true:
 *   - fragments are in time order and every fragment point is older than every buffer point;
 *   - the buffer is sorted and unique; late points are sorted and unique and never share a
 *     timestamp with a buffer point (a buffer insert removes the late twin);
 *   - a late point may share a timestamp with a fragment point: the late one was written later,
 *     so it wins.
 * The series' stripe mutex guards all of it (tsdb_int.h, "Lock stripes"): writers and cuts
 * hold it when they call in; tsdb_head_collect and tsdb_head_min_ts take it themselves, for
 * queries, which hold only db->mu.
 */
#include "base/alloc.h"
#include "base/error.h"
#include "base/varint.h"
#include "tsdb/tsdb_int.h"

#include <string.h>

/* Points kept raw when the buffer is sealed, so a little reordering stays in the buffer. */
#define HEAD_KEEP 2u

static void split_points(const tsdb_point *p, size_t n, int64_t *ts, uint64_t *v)
{
    for (size_t i = 0; i < n; i++) {
        ts[i] = p[i].ts;
        v[i] = p[i].v;
    }
}

/* Encodes n points as one chunk appended to out. */
static int encode_points(uint8_t kind, const tsdb_point *p, size_t n, tern_buf *out)
{
    int64_t ts[TSDB_HEAD_BUF * 2];
    uint64_t v[TSDB_HEAD_BUF * 2];
    int64_t *pts = ts;
    uint64_t *pv = v;
    if (n > TSDB_HEAD_BUF * 2) {
        pts = tern_malloc(n * sizeof(*pts));
        pv = tern_malloc(n * sizeof(*pv));
        if (!pts || !pv) {
            tern_free(pts);
            tern_free(pv);
            return TERN_ENOMEM;
        }
    }
    split_points(p, n, pts, pv);
    int rc;
    if (kind == TERN_VALUE_F64) /* fragments are re-encoded at the cut: the quick search */
        rc = tern_chunk_encode_f64_fast(out, pts, (const double *)(const void *)pv, n);
    else
        rc = tern_chunk_encode_i64(out, pts, (const int64_t *)(const void *)pv, n);
    if (pts != ts) {
        tern_free(pts);
        tern_free(pv);
    }
    return rc;
}

/* Appends the points of one chunk to out (tsdb_point). */
static int decode_chunk(uint8_t kind, const uint8_t *c, size_t len, tern_buf *out)
{
    tern_chunk_info info;
    int rc = tern_chunk_info_read(c, len, &info);
    if (rc)
        return rc;
    if ((uint8_t)info.kind != kind)
        return TERN_ECORRUPT;
    size_t n = info.count;
    int64_t ts_stack[256];
    uint64_t v_stack[256];
    int64_t *ts = ts_stack;
    uint64_t *v = v_stack;
    if (n > 256) {
        ts = tern_malloc(n * sizeof(*ts));
        v = tern_malloc(n * sizeof(*v));
        if (!ts || !v) {
            tern_free(ts);
            tern_free(v);
            return TERN_ENOMEM;
        }
    }
    size_t got = 0;
    if (kind == TERN_VALUE_F64)
        rc = tern_chunk_decode_f64(c, len, ts, (double *)(void *)v, n, &got);
    else
        rc = tern_chunk_decode_i64(c, len, ts, (int64_t *)(void *)v, n, &got);
    if (rc == 0)
        rc = tern_buf_reserve(out, got * sizeof(tsdb_point));
    if (rc == 0) {
        tsdb_point *dst = (tsdb_point *)(void *)(out->data + out->len);
        for (size_t i = 0; i < got; i++) {
            dst[i].ts = ts[i];
            dst[i].v = v[i];
        }
        out->len += got * sizeof(tsdb_point);
    }
    if (ts != ts_stack) {
        tern_free(ts);
        tern_free(v);
    }
    return rc;
}

static int frag_append(tsdb_series *s, const uint8_t *chunk, size_t len)
{
    uint8_t hdr[TERN_VARINT_MAX_BYTES];
    size_t hl = tern_varint_encode(hdr, len);
    size_t need = s->frag_len + hl + len;
    if (need > s->frag_cap) {
        size_t cap = need + 24; /* small slack: a merge soon makes it exact again */
        uint8_t *p = tern_realloc(s->frag, cap);
        if (!p)
            return TERN_ENOMEM;
        s->frag = p;
        s->frag_cap = (uint32_t)cap;
    }
    memcpy(s->frag + s->frag_len, hdr, hl);
    memcpy(s->frag + s->frag_len + hl, chunk, len);
    s->frag_len = (uint32_t)need;
    return 0;
}

static int collect_frags(const tsdb_series *s, int64_t lo, int64_t hi, tern_buf *out);

/* Re-encodes every fragment of the series as one chunk: a chunk header costs ~15 bytes, a
 * fragment holds 14 points, so merging keeps a long-lived head near the codec's real
 * bytes/point (the <= 1 KB per series budget). It is rare: at one point per 10 s a 30-minute
 * block's head holds at most 19 fragments, so each point is encoded once on the write path. */
static int merge_frags(tsdb_series *s)
{
    tern_buf pts = TERN_BUF_INIT, enc = TERN_BUF_INIT;
    int rc = collect_frags(s, INT64_MIN, INT64_MAX, &pts);
    size_t n = pts.len / sizeof(tsdb_point);
    if (rc == 0 && n > TERN_CHUNK_MAX_POINTS) {
        tern_buf_free(&pts);
        return 0; /* a very fast series: keep its fragments as they are */
    }
    if (rc == 0)
        rc = encode_points(s->kind, (const tsdb_point *)(const void *)pts.data, n, &enc);
    uint8_t hdr[TERN_VARINT_MAX_BYTES];
    size_t hl = tern_varint_encode(hdr, enc.len);
    uint8_t *frag = rc == 0 ? tern_malloc(hl + enc.len) : NULL;
    if (rc == 0 && !frag)
        rc = TERN_ENOMEM;
    if (rc == 0) {
        memcpy(frag, hdr, hl);
        memcpy(frag + hl, enc.data, enc.len);
        tern_free(s->frag);
        s->frag = frag;
        s->frag_len = s->frag_cap = (uint32_t)(hl + enc.len);
        s->n_frags = 1;
    }
    tern_buf_free(&pts);
    tern_buf_free(&enc);
    return rc;
}

static int seal(tsdb_series *s)
{
    size_t n = s->n_buf - HEAD_KEEP;
    /* the fragment is encoded on the stack: room for the codec's bound never grows the view */
    uint8_t room[TERN_CHUNK_BOUND(TSDB_HEAD_BUF)];
    TERN_ASSERT(tern_chunk_bound(n) <= sizeof room);
    tern_buf enc = { room, 0, sizeof room };
    int rc = encode_points(s->kind, s->buf, n, &enc);
    TERN_ASSERT(enc.data == room);
    if (rc == 0)
        rc = frag_append(s, enc.data, enc.len);
    if (rc)
        return rc;
    s->n_frag_points += (uint32_t)n;
    memmove(s->buf, s->buf + n, HEAD_KEEP * sizeof(tsdb_point));
    s->n_buf = (uint8_t)HEAD_KEEP;
    if (++s->n_frags >= TSDB_HEAD_FRAGS)
        return merge_frags(s);
    return 0;
}

/* Index of the first point with ts >= t in a sorted array. */
static size_t lower_bound(const tsdb_point *p, size_t n, int64_t t)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p[mid].ts < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int64_t frag_max_ts(const tsdb_series *s)
{
    /* The newest fragment point: the last fragment's max. Fragments are few; walk them. */
    size_t pos = 0;
    int64_t max = INT64_MIN;
    while (pos < s->frag_len) {
        uint64_t len;
        size_t hl;
        if (tern_varint_decode_u64(s->frag + pos, s->frag_len - pos, &len, &hl) != 0)
            break;
        tern_chunk_info info;
        if (tern_chunk_info_read(s->frag + pos + hl, (size_t)len, &info) == 0)
            max = info.max_ts;
        pos += hl + (size_t)len;
    }
    return max;
}

static void late_remove(tsdb_series *s, int64_t ts)
{
    if (s->n_late == 0)
        return;
    size_t i = lower_bound(s->late, s->n_late, ts);
    if (i < s->n_late && s->late[i].ts == ts) {
        memmove(&s->late[i], &s->late[i + 1], (s->n_late - i - 1) * sizeof(tsdb_point));
        s->n_late--;
    }
}

int tsdb_head_add(tsdb_series *s, int64_t ts, uint64_t v)
{
    if (ts >= s->last_ts) {
        s->last_ts = ts;
        s->last_v = v;
    }
    bool to_buf;
    if (s->n_buf > 0)
        to_buf = ts >= s->buf[0].ts;
    else if (s->n_frag_points > 0)
        to_buf = ts > frag_max_ts(s);
    else
        to_buf = true;
    if (to_buf) {
        size_t i = s->n_buf > 0 && ts > s->buf[s->n_buf - 1].ts ? s->n_buf
                                                                : lower_bound(s->buf, s->n_buf, ts);
        if (i < s->n_buf && s->buf[i].ts == ts) {
            s->buf[i].v = v; /* the same (series, ts) again: the last write wins */
            return TSDB_HEAD_REPLACED;
        }
        late_remove(s, ts);
        memmove(&s->buf[i + 1], &s->buf[i], (s->n_buf - i) * sizeof(tsdb_point));
        s->buf[i].ts = ts;
        s->buf[i].v = v;
        s->n_buf++;
        if (s->n_buf == TSDB_HEAD_BUF) {
            int rc = seal(s);
            if (rc)
                return rc;
        }
        return TSDB_HEAD_NEW;
    }
    size_t i = lower_bound(s->late, s->n_late, ts);
    if (i < s->n_late && s->late[i].ts == ts) {
        s->late[i].v = v;
        return TSDB_HEAD_REPLACED;
    }
    if (s->n_late == s->cap_late) {
        uint32_t cap = s->cap_late ? s->cap_late * 2 : 8;
        tsdb_point *p = tern_realloc(s->late, cap * sizeof(*p));
        if (!p)
            return TERN_ENOMEM;
        s->late = p;
        s->cap_late = cap;
    }
    memmove(&s->late[i + 1], &s->late[i], (s->n_late - i) * sizeof(tsdb_point));
    s->late[i].ts = ts;
    s->late[i].v = v;
    s->n_late++;
    return TSDB_HEAD_NEW_LATE;
}

/* Appends the points of every fragment overlapping [lo, hi) to out, unfiltered. */
static int collect_frags(const tsdb_series *s, int64_t lo, int64_t hi, tern_buf *out)
{
    size_t pos = 0;
    while (pos < s->frag_len) {
        uint64_t len;
        size_t hl;
        int rc = tern_varint_decode_u64(s->frag + pos, s->frag_len - pos, &len, &hl);
        if (rc)
            return TERN_ECORRUPT;
        const uint8_t *c = s->frag + pos + hl;
        pos += hl + (size_t)len;
        tern_chunk_info info;
        rc = tern_chunk_info_read(c, (size_t)len, &info);
        if (rc)
            return rc;
        if (info.max_ts < lo || info.min_ts >= hi)
            continue;
        rc = decode_chunk(s->kind, c, (size_t)len, out);
        if (rc)
            return rc;
    }
    return 0;
}

/* Keeps only the points of buf (tsdb_point, sorted) in [lo, hi), from index `from`. */
static void filter_range(tern_buf *b, size_t from, int64_t lo, int64_t hi)
{
    tsdb_point *p = (tsdb_point *)(void *)(b->data + from * sizeof(tsdb_point));
    size_t n = b->len / sizeof(tsdb_point) - from;
    size_t a = lower_bound(p, n, lo);
    size_t z = lower_bound(p, n, hi);
    if (a > 0 && z > a)
        memmove(p, p + a, (z - a) * sizeof(tsdb_point));
    b->len = (from + (z > a ? z - a : 0)) * sizeof(tsdb_point);
}

int tsdb_head_collect(const tsdb_series *s, int64_t lo, int64_t hi, tern_buf *out)
{
    tern_buf tmp = TERN_BUF_INIT;
    pthread_mutex_lock(&s->stripe->mu);
    int rc = collect_frags(s, lo, hi, &tmp);
    if (rc == 0) {
        filter_range(&tmp, 0, lo, hi);
        if (s->n_late) {
            size_t a = lower_bound(s->late, s->n_late, lo);
            size_t z = lower_bound(s->late, s->n_late, hi);
            if (z > a)
                rc = tsdb_merge_into(&tmp, s->late + a, z - a);
        }
    }
    if (rc == 0 && s->n_buf) {
        size_t a = lower_bound(s->buf, s->n_buf, lo);
        size_t z = lower_bound(s->buf, s->n_buf, hi);
        if (z > a)
            rc = tsdb_merge_into(&tmp, s->buf + a, z - a);
    }
    pthread_mutex_unlock(&s->stripe->mu);
    if (rc == 0)
        rc = tern_buf_append(out, tmp.data, tmp.len);
    tern_buf_free(&tmp);
    return rc;
}

int tsdb_head_take(tsdb_series *s, int64_t before, tern_buf *out)
{
    size_t out_from = out->len;
    size_t took = 0;
    int rc = 0;
    /* fragments */
    if (s->frag_len) {
        tern_buf keep = TERN_BUF_INIT;
        tern_buf pts = TERN_BUF_INIT;
        uint32_t kept_points = 0;
        size_t pos = 0;
        while (rc == 0 && pos < s->frag_len) {
            uint64_t len;
            size_t hl;
            if (tern_varint_decode_u64(s->frag + pos, s->frag_len - pos, &len, &hl) != 0) {
                rc = TERN_ECORRUPT;
                break;
            }
            const uint8_t *c = s->frag + pos + hl;
            size_t whole = hl + (size_t)len;
            tern_chunk_info info;
            rc = tern_chunk_info_read(c, (size_t)len, &info);
            if (rc)
                break;
            if (info.min_ts >= before) {
                rc = tern_buf_append(&keep, s->frag + pos, whole);
                kept_points += info.count;
            } else if (info.max_ts < before) {
                rc = decode_chunk(s->kind, c, (size_t)len, out);
                took += info.count;
            } else {
                tern_buf_reset(&pts);
                rc = decode_chunk(s->kind, c, (size_t)len, &pts);
                if (rc == 0) {
                    tsdb_point *p = (tsdb_point *)(void *)pts.data;
                    size_t n = pts.len / sizeof(tsdb_point);
                    size_t cut = lower_bound(p, n, before);
                    rc = tern_buf_append(out, p, cut * sizeof(tsdb_point));
                    took += cut;
                    if (rc == 0 && n > cut) {
                        tern_buf enc = TERN_BUF_INIT;
                        rc = encode_points(s->kind, p + cut, n - cut, &enc);
                        uint8_t hdr[TERN_VARINT_MAX_BYTES];
                        size_t l = tern_varint_encode(hdr, enc.len);
                        if (rc == 0)
                            rc = tern_buf_append(&keep, hdr, l);
                        if (rc == 0)
                            rc = tern_buf_append(&keep, enc.data, enc.len);
                        kept_points += (uint32_t)(n - cut);
                        tern_buf_free(&enc);
                    }
                }
            }
            pos += whole;
        }
        tern_buf_free(&pts);
        if (rc) {
            tern_buf_free(&keep);
            out->len = out_from;
            return rc;
        }
        if (kept_points && keep.len <= s->frag_cap && s->frag_cap <= 4 * keep.len + 256) {
            /* In place: the buffer keeps the capacity its writer grew it to, which the points to
             * come fill again (a head at its fullest is what the memory budget counts), and it
             * stays in the writer's malloc arena. Cuts run on the maintenance thread: a buffer
             * allocated there made every later realloc by the writer take that arena's lock,
             * against the maintenance thread and the other writers (10% of the CPU of a
             * 2-writer run went to futex calls). A series with nothing left, or with far less
             * than its buffer holds (after a backfill burst), gives the memory back. */
            memcpy(s->frag, keep.data, keep.len);
            s->frag_len = (uint32_t)keep.len;
            tern_buf_free(&keep);
        } else {
            tern_free(s->frag);
            s->frag_len = (uint32_t)keep.len;
            s->frag_cap = (uint32_t)keep.cap;
            s->frag = tern_buf_steal(&keep, NULL);
        }
        s->n_frag_points = kept_points;
        s->n_frags = kept_points ? 1 : 0; /* at most a few; recounted below */
        for (size_t p = 0, k = 0; p < s->frag_len; k++) {
            uint64_t l;
            size_t h;
            if (tern_varint_decode_u64(s->frag + p, s->frag_len - p, &l, &h) != 0)
                break;
            p += h + (size_t)l;
            s->n_frags = (uint8_t)(k + 1);
        }
    }
    /* buffer: every buffer point is newer than every fragment point */
    size_t nb = lower_bound(s->buf, s->n_buf, before);
    if (nb) {
        rc = tern_buf_append(out, s->buf, nb * sizeof(tsdb_point));
        if (rc)
            return rc;
        memmove(s->buf, s->buf + nb, (s->n_buf - nb) * sizeof(tsdb_point));
        s->n_buf = (uint8_t)(s->n_buf - nb);
        took += nb;
    }
    /* late points win over fragment points of the same timestamp */
    size_t nl = lower_bound(s->late, s->n_late, before);
    if (nl) {
        tern_buf mine = TERN_BUF_INIT;
        rc = tern_buf_append(&mine, out->data + out_from, out->len - out_from);
        if (rc == 0)
            rc = tsdb_merge_into(&mine, s->late, nl);
        if (rc == 0) {
            out->len = out_from;
            rc = tern_buf_append(out, mine.data, mine.len);
        }
        tern_buf_free(&mine);
        if (rc)
            return rc;
        memmove(s->late, s->late + nl, (s->n_late - nl) * sizeof(tsdb_point));
        s->n_late -= (uint32_t)nl;
        s->stripe->late_points -= nl;
        took += nl;
        if (s->n_late == 0) {
            tern_free(s->late);
            s->late = NULL;
            s->cap_late = 0;
        }
    }
    uint64_t *hp = &s->stripe->head_points;
    *hp -= took < *hp ? took : *hp;
    return 0;
}

int64_t tsdb_head_min_ts(const tsdb_series *s)
{
    pthread_mutex_lock(&s->stripe->mu);
    int64_t m = tsdb_head_min_ts_locked(s);
    pthread_mutex_unlock(&s->stripe->mu);
    return m;
}

int64_t tsdb_head_min_ts_locked(const tsdb_series *s)
{
    int64_t m = INT64_MAX;
    if (s->frag_len) {
        uint64_t len;
        size_t hl;
        tern_chunk_info info;
        if (tern_varint_decode_u64(s->frag, s->frag_len, &len, &hl) == 0
            && tern_chunk_info_read(s->frag + hl, (size_t)len, &info) == 0)
            m = info.min_ts;
    } else if (s->n_buf) {
        m = s->buf[0].ts;
    }
    if (s->n_late && s->late[0].ts < m)
        m = s->late[0].ts;
    return m;
}

bool tsdb_head_last(const tsdb_series *s, tsdb_point *out)
{
    pthread_mutex_lock(&s->stripe->mu);
    bool any = s->last_ts != INT64_MIN;
    out->ts = s->last_ts;
    out->v = s->last_v;
    pthread_mutex_unlock(&s->stripe->mu);
    return any;
}

size_t tsdb_head_bytes(const tsdb_series *s)
{
    return sizeof(*s) + s->frag_cap + (size_t)s->cap_late * sizeof(tsdb_point);
}

void tsdb_series_free(tsdb_series *s)
{
    tern_free(s->frag);
    tern_free(s->late);
    tern_free(s);
}

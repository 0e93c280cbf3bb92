/*
 * codec.c: the TSDB chunk codec (see codec.h; byte layout in docs/formats/tsdb-chunk.md).
 *
 * Encoding plans every section with dry runs (a writer with no memory only counts bytes), picks
 * the smallest, reserves the exact size in the caller's buffer and writes it. Decoding reads
 * untrusted bytes through a bounded reader; bit-packed frames are unpacked straight from the
 * input when 8 bytes of slack follow them, else from a zero-padded copy, so no load ever passes
 * len. All integer arithmetic on values is uint64 (wrapping), so int64 extremes are exact.
 */
#include "tsdb/codec.h"
#include "tsdb/codec_int.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/varint.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

#define CHUNK_VERSION 1
#define IP_DELTA 0u
#define IP_DOD 1u
#define IP_LINEAR 2u
#define IP_MAX_FRAME 256u
#define DEC_MAX_EXP 18

static const double pow10_tab[DEC_MAX_EXP + 1] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9,
    1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18 };

/* ---------------------------------------------------------------- small helpers */

static inline uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline void store_le64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    memcpy(p, &v, 8);
}

static inline unsigned bit_width(uint64_t v)
{
    return v ? 64u - (unsigned)__builtin_clzll(v) : 0u;
}

static inline uint64_t f64_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

static inline double bits_f64(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* ---------------------------------------------------------------- writer (or byte counter) */

typedef struct wr {
    uint8_t *p; /* NULL: dry run, only pos advances */
    size_t pos;
} wr;

static inline void wr_u8(wr *w, uint8_t v)
{
    if (w->p)
        w->p[w->pos] = v;
    w->pos++;
}

static void wr_varint(wr *w, uint64_t v)
{
    if (!w->p) {
        w->pos += tern_varint_len(v);
        return;
    }
    while (v >= 0x80) {
        w->p[w->pos++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    w->p[w->pos++] = (uint8_t)v;
}

static void wr_le64(wr *w, uint64_t v)
{
    if (w->p)
        store_le64(w->p + w->pos, v);
    w->pos += 8;
}

/* Bit writer, least significant bit first; flush pads the last byte with zeros. */
typedef struct bw {
    wr *w;
    uint64_t acc;
    unsigned n; /* bits in acc, < 8 between calls */
    size_t bits;
} bw;

static void bw_put(bw *b, uint64_t v, unsigned width)
{
    b->bits += width;
    if (!b->w->p)
        return;
    if (width > 32) {
        bw_put(b, v & 0xffffffffu, 32);
        b->bits -= 32;
        v >>= 32;
        width -= 32;
    }
    if (width == 0)
        return;
    b->acc |= v << b->n;
    b->n += width;
    while (b->n >= 8) {
        b->w->p[b->w->pos++] = (uint8_t)b->acc;
        b->acc >>= 8;
        b->n -= 8;
    }
}

static void bw_flush(bw *b)
{
    if (!b->w->p) {
        b->w->pos += (b->bits + 7) / 8;
    } else if (b->n) {
        b->w->p[b->w->pos++] = (uint8_t)b->acc;
    }
    b->acc = 0;
    b->n = 0;
    b->bits = 0;
}

/* ---------------------------------------------------------------- reader */

typedef struct rd {
    const uint8_t *p;
    size_t len;
    size_t pos;
} rd;

static int rd_u8(rd *r, uint8_t *out)
{
    if (r->pos >= r->len)
        return TERN_ECORRUPT;
    *out = r->p[r->pos++];
    return 0;
}

static int rd_varint(rd *r, uint64_t *out)
{
    size_t n_read;
    if (tern_varint_decode_u64(r->p + r->pos, r->len - r->pos, out, &n_read) != 0)
        return TERN_ECORRUPT;
    r->pos += n_read;
    return 0;
}

/* Bounded bit reader over data[start..end), least significant bit first. */
typedef struct br {
    const uint8_t *p;
    size_t nbits;
    size_t pos;
} br;

static inline int br_get(br *b, unsigned width, uint64_t *out)
{
    if (width == 0) {
        *out = 0;
        return 0;
    }
    if (width > b->nbits - b->pos)
        return TERN_ECORRUPT;
    size_t byte = b->pos >> 3;
    unsigned sh = (unsigned)(b->pos & 7);
    size_t have = (b->nbits + 7) / 8 - byte;
    uint64_t lo;
    if (have >= 8) {
        lo = load_le64(b->p + byte);
    } else {
        uint8_t tmp[8] = { 0 };
        memcpy(tmp, b->p + byte, have);
        lo = load_le64(tmp);
    }
    uint64_t v = lo >> sh;
    if (sh && width + sh > 64)
        v |= (uint64_t)b->p[byte + 8] << (64 - sh);
    if (width < 64)
        v &= (UINT64_C(1) << width) - 1;
    b->pos += width;
    *out = v;
    return 0;
}

/* ---------------------------------------------------------------- integer pipeline: encode */

/*
 * The integer pipeline stores x[0..n): a header byte (mode | log2(frame/32) << 2), x[0] as a
 * zigzag varint unless the container knows it, for delta-of-delta x[1]-x[0] as a zigzag varint,
 * then the residuals (deltas or deltas of deltas) in frames. A frame is a byte (width | FOR
 * flag << 7), for FOR a zigzag varint base, then count * width bits: zigzag(residual), or with
 * FOR residual - base as unsigned.
 */

/* Fills r[0..cnt) with the residuals starting at index i (mode decides which). */
static inline void ip_residuals(
    const int64_t *x, size_t i, size_t cnt, unsigned mode, uint64_t step, uint64_t *r)
{
    if (mode == IP_LINEAR) {
        for (size_t k = 0; k < cnt; k++)
            r[k] = (uint64_t)x[i + k] - (uint64_t)x[0] - step * (uint64_t)(i + k);
    } else if (mode == IP_DELTA) {
        for (size_t k = 0; k < cnt; k++)
            r[k] = (uint64_t)x[i + k] - (uint64_t)x[i + k - 1];
    } else {
        for (size_t k = 0; k < cnt; k++) {
            uint64_t d1 = (uint64_t)x[i + k] - (uint64_t)x[i + k - 1];
            uint64_t d0 = (uint64_t)x[i + k - 1] - (uint64_t)x[i + k - 2];
            r[k] = d1 - d0;
        }
    }
}

/* The linear mode's step (n >= 2): the average slope, rounded to nearest (any value decodes
 * exactly; this one keeps residuals small, where truncating would let a grid of 9999.9 ms
 * drift by i ms). */
static uint64_t linear_step(const int64_t *x, size_t n)
{
    int64_t span = (int64_t)((uint64_t)x[n - 1] - (uint64_t)x[0]);
    int64_t div = (int64_t)(n - 1), q = span / div, rem = span % div;
    if (rem > 0 && rem >= div - rem)
        q++;
    else if (rem < 0 && -rem >= div + rem)
        q--;
    return (uint64_t)q;
}

/* What the pipeline writes before its frames (header byte, x[0] unless known, the mode's
 * varint), written to w (or measured, w->p NULL); returns the index of the first residual and
 * sets *step (LINEAR). */
static size_t ip_write_head(
    wr *w, const int64_t *x, size_t n, int x0_known, unsigned mode, unsigned fshift, uint64_t *step)
{
    *step = 0;
    wr_u8(w, (uint8_t)(mode | (fshift << 2)));
    if (!x0_known)
        wr_varint(w, tern_varint_zigzag(x[0]));
    if (mode == IP_DOD) {
        if (n >= 2)
            wr_varint(w, tern_varint_zigzag((int64_t)((uint64_t)x[1] - (uint64_t)x[0])));
        return 2;
    }
    if (mode == IP_LINEAR && n >= 2) {
        *step = linear_step(x, n);
        wr_varint(w, tern_varint_zigzag((int64_t)*step));
    }
    return 1;
}

/* Running stats of a frame's residuals: OR of their zigzags, min, max, count. */
typedef struct ip_stats {
    uint64_t zz_or;
    int64_t lo, hi;
    size_t cnt;
} ip_stats;

#define IP_STATS_EMPTY ((ip_stats) { 0, INT64_MAX, INT64_MIN, 0 })

static inline void ip_stats_add(ip_stats *st, uint64_t r)
{
    int64_t v = (int64_t)r;
    st->zz_or |= tern_varint_zigzag(v);
    st->lo = v < st->lo ? v : st->lo;
    st->hi = v > st->hi ? v : st->hi;
    st->cnt++;
}

static inline ip_stats ip_stats_of(const uint64_t *r, size_t cnt)
{
    ip_stats st = IP_STATS_EMPTY;
    for (size_t k = 0; k < cnt; k++)
        ip_stats_add(&st, r[k]);
    return st;
}

static inline void ip_stats_merge(ip_stats *into, const ip_stats *from)
{
    into->zz_or |= from->zz_or;
    into->lo = from->lo < into->lo ? from->lo : into->lo;
    into->hi = from->hi > into->hi ? from->hi : into->hi;
    into->cnt += from->cnt;
}

/* A frame's layout: zigzag at a common width, or frame of reference (FOR: residual - lo). */
static inline bool ip_use_for(const ip_stats *st, unsigned *width)
{
    unsigned wz = bit_width(st->zz_or);
    unsigned wf = bit_width((uint64_t)st->hi - (uint64_t)st->lo);
    size_t cost_z = (st->cnt * wz + 7) / 8;
    size_t cost_f = tern_varint_len(tern_varint_zigzag(st->lo)) + (st->cnt * wf + 7) / 8;
    bool use_for = cost_f < cost_z;
    *width = use_for ? wf : wz;
    return use_for;
}

/* Size of one frame with the given stats, as ip_write lays it out. */
static inline size_t ip_frame_cost(const ip_stats *st)
{
    unsigned width;
    bool use_for = ip_use_for(st, &width);
    return 1 + (use_for ? tern_varint_len(tern_varint_zigzag(st->lo)) : 0)
        + (st->cnt * width + 7) / 8;
}

static void ip_write(
    wr *w, const int64_t *x, size_t n, int x0_known, unsigned mode, unsigned fshift)
{
    const size_t frame = (size_t)32 << fshift;
    uint64_t r[IP_MAX_FRAME];
    uint64_t step;
    size_t start = ip_write_head(w, x, n, x0_known, mode, fshift, &step);
    for (size_t i = start; i < n; i += frame) {
        size_t cnt = n - i < frame ? n - i : frame;
        ip_residuals(x, i, cnt, mode, step, r);
        ip_stats st = ip_stats_of(r, cnt);
        unsigned width;
        bool use_for = ip_use_for(&st, &width);
        wr_u8(w, (uint8_t)(width | (use_for ? 0x80u : 0u)));
        if (use_for)
            wr_varint(w, tern_varint_zigzag(st.lo));
        if (!w->p) {
            w->pos += (cnt * width + 7) / 8;
            continue;
        }
        bw b = { w, 0, 0, 0 };
        for (size_t k = 0; k < cnt; k++) {
            uint64_t u = use_for ? r[k] - (uint64_t)st.lo : tern_varint_zigzag((int64_t)r[k]);
            bw_put(&b, u, width);
        }
        bw_flush(&b);
    }
}

/*
 * ip_plan for n <= 33, where every mode has at most 32 residuals, so one frame whatever its
 * size: the three modes' stats in one pass. It returns what ip_plan's general loop returns
 * (the same mode on ties, frame shift 0); head fragments of 14 points are planned here.
 */
static size_t ip_plan_one_frame(
    const int64_t *x, size_t n, int x0_known, unsigned *mode_out, unsigned *fshift_out)
{
    size_t cost[3];
    uint64_t step = 0;
    for (unsigned m = IP_DELTA; m <= IP_LINEAR; m++) {
        wr head = { NULL, 0 };
        uint64_t st_m;
        ip_write_head(&head, x, n, x0_known, m, 0, &st_m);
        cost[m] = head.pos;
        if (m == IP_LINEAR)
            step = st_m;
    }
    ip_stats st[3] = { IP_STATS_EMPTY, IP_STATS_EMPTY, IP_STATS_EMPTY };
    uint64_t d0 = 0;
    for (size_t i = 1; i < n; i++) {
        uint64_t d1 = (uint64_t)x[i] - (uint64_t)x[i - 1];
        ip_stats_add(&st[IP_DELTA], d1);
        ip_stats_add(&st[IP_LINEAR], (uint64_t)x[i] - (uint64_t)x[0] - step * (uint64_t)i);
        if (i >= 2)
            ip_stats_add(&st[IP_DOD], d1 - d0);
        d0 = d1;
    }
    size_t best = SIZE_MAX;
    for (unsigned m = IP_DELTA; m <= IP_LINEAR; m++) {
        if (st[m].cnt)
            cost[m] += ip_frame_cost(&st[m]);
        if (cost[m] < best) {
            best = cost[m];
            *mode_out = m;
        }
    }
    *fshift_out = 0;
    return best;
}

/*
 * ip_plan picks the mode and frame size that give the fewest bytes; returns that size. It
 * computes, per mode, the residuals' stats once per 32-value block; a frame of 64, 128 or 256
 * values combines its blocks' stats, so the 12 layouts cost three passes over the data instead
 * of twelve encodings.
 */
static size_t ip_plan(
    const int64_t *x, size_t n, int x0_known, unsigned *mode_out, unsigned *fshift_out)
{
    if (n <= 33)
        return ip_plan_one_frame(x, n, x0_known, mode_out, fshift_out);
    size_t best = SIZE_MAX;
    uint64_t r[32];
    for (unsigned mode = IP_DELTA; mode <= IP_LINEAR; mode++) {
        wr head = { NULL, 0 };
        uint64_t step;
        size_t start = ip_write_head(&head, x, n, x0_known, mode, 0, &step);
        size_t cost[4] = { head.pos, head.pos, head.pos, head.pos };
        ip_stats open[4] = { IP_STATS_EMPTY, IP_STATS_EMPTY, IP_STATS_EMPTY, IP_STATS_EMPTY };
        size_t block = 0;
        for (size_t i = start; i < n; i += 32, block++) {
            size_t cnt = n - i < 32 ? n - i : 32;
            ip_residuals(x, i, cnt, mode, step, r);
            ip_stats blk = ip_stats_of(r, cnt);
            for (unsigned f = 0; f < 4; f++) {
                ip_stats_merge(&open[f], &blk);
                bool frame_full = ((block + 1) & ((1u << f) - 1)) == 0;
                if (frame_full || i + cnt >= n) {
                    cost[f] += ip_frame_cost(&open[f]);
                    open[f] = IP_STATS_EMPTY;
                }
            }
        }
        for (unsigned f = 0; f < 4; f++) {
            if (cost[f] < best) {
                best = cost[f];
                *mode_out = mode;
                *fshift_out = f;
            }
        }
    }
    return best;
}

/* ---------------------------------------------------------------- integer pipeline: decode */

static inline __attribute__((always_inline)) void unpack_w(
    const uint8_t *p, uint64_t *out, size_t cnt, unsigned w)
{
    const uint64_t mask = (UINT64_C(1) << w) - 1;
    for (size_t i = 0; i < cnt; i++) {
        size_t bit = i * w;
        out[i] = (load_le64(p + (bit >> 3)) >> (bit & 7)) & mask;
    }
}

static void unpack_wide(const uint8_t *p, uint64_t *out, size_t cnt, unsigned w)
{
    const uint64_t mask = w == 64 ? ~UINT64_C(0) : (UINT64_C(1) << w) - 1;
    for (size_t i = 0; i < cnt; i++) {
        size_t bit = i * w;
        size_t byte = bit >> 3;
        unsigned sh = (unsigned)(bit & 7);
        uint64_t v = load_le64(p + byte) >> sh;
        if (sh)
            v |= (uint64_t)p[byte + 8] << (64 - sh);
        out[i] = v & mask;
    }
}

/* unpack reads cnt values of w bits (w <= 64) from p, which has 8 readable bytes of slack. */
static void unpack(const uint8_t *p, uint64_t *out, size_t cnt, unsigned w)
{
#define U(W)                                                                                       \
    case W:                                                                                        \
        unpack_w(p, out, cnt, W);                                                                  \
        break
#define U8(B)                                                                                      \
    U(B);                                                                                          \
    U(B + 1);                                                                                      \
    U(B + 2);                                                                                      \
    U(B + 3);                                                                                      \
    U(B + 4);                                                                                      \
    U(B + 5);                                                                                      \
    U(B + 6);                                                                                      \
    U(B + 7)
    switch (w) {
    case 0:
        memset(out, 0, cnt * sizeof *out);
        break;
        U8(1);
        U8(9);
        U8(17);
        U8(25);
        U8(33);
        U8(41);
        U8(49);
    default:
        unpack_wide(p, out, cnt, w);
        break;
    }
#undef U8
#undef U
}

/* Where decoded integers go: int64 array, or doubles m / 10^e. */
typedef struct ip_sink {
    int64_t *iout;
    double *fout;
    double div;
} ip_sink;

static inline void sink_put(const ip_sink *s, size_t at, const uint64_t *v, size_t cnt)
{
    if (s->iout) {
        for (size_t k = 0; k < cnt; k++)
            s->iout[at + k] = (int64_t)v[k];
    } else if (s->div == 1.0) {
        for (size_t k = 0; k < cnt; k++)
            s->fout[at + k] = (double)(int64_t)v[k];
    } else {
        const double div = s->div;
        for (size_t k = 0; k < cnt; k++)
            s->fout[at + k] = (double)(int64_t)v[k] / div;
    }
}

static int ip_read(rd *r, size_t n, int x0_known, int64_t x0_value, const ip_sink *sink)
{
    uint8_t hdr;
    if (rd_u8(r, &hdr) != 0)
        return TERN_ECORRUPT;
    unsigned mode = hdr & 3u, fshift = (hdr >> 2) & 3u;
    if (mode > IP_LINEAR || (hdr >> 4) != 0)
        return TERN_ECORRUPT;
    const size_t frame = (size_t)32 << fshift;
    uint64_t x = (uint64_t)x0_value, d = 0, step = 0;
    if (!x0_known) {
        uint64_t z;
        if (rd_varint(r, &z) != 0)
            return TERN_ECORRUPT;
        x = (uint64_t)tern_varint_unzigzag(z);
    }
    uint64_t head[2] = { x, 0 };
    size_t start = 1;
    if (mode == IP_DOD) {
        start = 2;
        if (n >= 2) {
            uint64_t z;
            if (rd_varint(r, &z) != 0)
                return TERN_ECORRUPT;
            d = (uint64_t)tern_varint_unzigzag(z);
            x += d;
            head[1] = x;
        }
    } else if (mode == IP_LINEAR && n >= 2) {
        uint64_t z;
        if (rd_varint(r, &z) != 0)
            return TERN_ECORRUPT;
        step = (uint64_t)tern_varint_unzigzag(z);
    }
    const uint64_t x0 = x;
    sink_put(sink, 0, head, n < start ? n : start);

    uint64_t v[IP_MAX_FRAME];
    uint8_t pad[IP_MAX_FRAME * 8 + 8];
    for (size_t i = start; i < n; i += frame) {
        size_t cnt = n - i < frame ? n - i : frame;
        uint8_t fh;
        if (rd_u8(r, &fh) != 0)
            return TERN_ECORRUPT;
        unsigned width = fh & 0x7fu;
        int use_for = (fh & 0x80u) != 0;
        if (width > 64)
            return TERN_ECORRUPT;
        uint64_t base = 0;
        if (use_for) {
            uint64_t z;
            if (rd_varint(r, &z) != 0)
                return TERN_ECORRUPT;
            base = (uint64_t)tern_varint_unzigzag(z);
        }
        size_t nbytes = (cnt * width + 7) / 8;
        if (nbytes > r->len - r->pos)
            return TERN_ECORRUPT;
        const uint8_t *src = r->p + r->pos;
        if (r->len - r->pos - nbytes < 8) {
            memcpy(pad, src, nbytes);
            memset(pad + nbytes, 0, 8);
            src = pad;
        }
        unpack(src, v, cnt, width);
        r->pos += nbytes;
        if (mode == IP_LINEAR) {
            uint64_t add = use_for ? base : 0;
            for (size_t k = 0; k < cnt; k++) {
                uint64_t res = use_for ? v[k] : (uint64_t)tern_varint_unzigzag(v[k]);
                v[k] = x0 + step * (uint64_t)(i + k) + res + add;
            }
        } else if (use_for) {
            if (mode == IP_DELTA) {
                for (size_t k = 0; k < cnt; k++) {
                    x += v[k] + base;
                    v[k] = x;
                }
            } else {
                for (size_t k = 0; k < cnt; k++) {
                    d += v[k] + base;
                    x += d;
                    v[k] = x;
                }
            }
        } else {
            if (mode == IP_DELTA) {
                for (size_t k = 0; k < cnt; k++) {
                    x += (uint64_t)tern_varint_unzigzag(v[k]);
                    v[k] = x;
                }
            } else {
                for (size_t k = 0; k < cnt; k++) {
                    d += (uint64_t)tern_varint_unzigzag(v[k]);
                    x += d;
                    v[k] = x;
                }
            }
        }
        sink_put(sink, i, v, cnt);
    }
    return 0;
}

/* ---------------------------------------------------------------- timestamps */

/* Gorilla's delta-of-delta buckets over zigzag(dod): '0' | '10'+7 | '110'+9 | '1110'+12 |
 * '1111'+64. */
static void gts_write(wr *w, const int64_t *ts, size_t n)
{
    if (n < 2)
        return;
    uint64_t prev_d = (uint64_t)ts[1] - (uint64_t)ts[0];
    wr_varint(w, prev_d);
    bw b = { w, 0, 0, 0 };
    for (size_t i = 2; i < n; i++) {
        uint64_t d = (uint64_t)ts[i] - (uint64_t)ts[i - 1];
        uint64_t z = tern_varint_zigzag((int64_t)(d - prev_d));
        prev_d = d;
        if (z == 0) {
            bw_put(&b, 0, 1);
        } else if (z < (1u << 7)) {
            bw_put(&b, 1, 2); /* bits 1,0 */
            bw_put(&b, z, 7);
        } else if (z < (1u << 9)) {
            bw_put(&b, 3, 3); /* bits 1,1,0 */
            bw_put(&b, z, 9);
        } else if (z < (1u << 12)) {
            bw_put(&b, 7, 4); /* bits 1,1,1,0 */
            bw_put(&b, z, 12);
        } else {
            bw_put(&b, 15, 4);
            bw_put(&b, z, 64);
        }
    }
    bw_flush(&b);
}

static int gts_read(rd *r, int64_t *ts, size_t n)
{
    if (n < 2)
        return 0;
    uint64_t d;
    if (rd_varint(r, &d) != 0)
        return TERN_ECORRUPT;
    uint64_t t = (uint64_t)ts[0] + d;
    ts[1] = (int64_t)t;
    /* The stream is byte-aligned at its end; it may not extend past the chunk. */
    br b = { r->p + r->pos, (r->len - r->pos) * 8, 0 };
    for (size_t i = 2; i < n; i++) {
        uint64_t bit, z = 0;
        unsigned ones = 0;
        while (ones < 4) {
            if (br_get(&b, 1, &bit) != 0)
                return TERN_ECORRUPT;
            if (!bit)
                break;
            ones++;
        }
        static const unsigned widths[5] = { 0, 7, 9, 12, 64 };
        if (br_get(&b, widths[ones], &z) != 0)
            return TERN_ECORRUPT;
        if (ones > 0 && z == 0)
            return TERN_ECORRUPT; /* a zero dod has its own code */
        d += (uint64_t)tern_varint_unzigzag(z);
        t += d;
        ts[i] = (int64_t)t;
    }
    r->pos += (b.pos + 7) / 8;
    return 0;
}

static int ts_is_regular(const int64_t *ts, size_t n)
{
    if (n < 3)
        return 1;
    uint64_t step = (uint64_t)ts[1] - (uint64_t)ts[0];
    for (size_t i = 2; i < n; i++)
        if ((uint64_t)ts[i] - (uint64_t)ts[i - 1] != step)
            return 0;
    return 1;
}

/* ---------------------------------------------------------------- float values */

/* dec_min_exp returns the smallest e in 0..DEC_MAX_EXP with (double)m / 10^e == v bit for bit
 * (setting *m), or -1. */
/* Round to nearest (even), as llrint in the default mode, without a libm call for the common
 * magnitudes: adding 1.5 * 2^52 pushes the fraction bits out of a double. */
static inline int64_t fast_rint(double s)
{
    if (fabs(s) < 2251799813685248.0) /* 2^51 */
        return (int64_t)((s + 6755399441055744.0) - 6755399441055744.0);
    return (int64_t)llrint(s);
}

/* Whether v is exactly the double nearest m / 10^e for m = rint(v * 10^e). */
static inline int dec_try(double v, int e, int64_t *m_out)
{
    double s = v * pow10_tab[e];
    if (!(fabs(s) < 4.0e18))
        return 0;
    int64_t m = fast_rint(s);
    if (f64_bits((double)m / pow10_tab[e]) != f64_bits(v))
        return 0;
    *m_out = m;
    return 1;
}

static int dec_min_exp(double v, int64_t *m_out)
{
    if (!isfinite(v) || (v == 0.0 && signbit(v)))
        return -1;
    const uint64_t want = f64_bits(v);
    for (int e = 0; e <= DEC_MAX_EXP; e++) {
        double s = v * pow10_tab[e];
        if (!(fabs(s) < 4.0e18))
            return -1;
        int64_t m = fast_rint(s);
        if (f64_bits((double)m / pow10_tab[e]) == want) {
            *m_out = m;
            return e;
        }
    }
    return -1;
}

static int dec_fits(double v, int e, int64_t *m_out)
{
    if (!isfinite(v))
        return 0;
    return dec_try(v, e, m_out);
}

/*
 * dec_analyse chooses the decimal exponent for vals (cost model: each extra decimal costs about
 * log2(10) bits per point, each exception about 9 bytes), fills m[] (exceptions take the
 * previous mantissa) and exc[] (1 = stored raw). Returns the exponent, or -1 when too many
 * values are not decimals for the exponent to pay.
 */
static int dec_analyse(
    const double *vals, size_t n, int64_t *m, uint8_t *exc, size_t *n_exc_out, bool thorough)
{
    size_t hist[DEC_MAX_EXP + 2] = { 0 }; /* last slot: no exponent fits */
    size_t bad = 0;
    int guess = -1;
    for (size_t i = 0; i < n; i++) {
        int64_t mi = 0;
        int e;
        /* neighbours share their precision: the last exponent is the minimum again when it
         * fits and the one below does not (two checks instead of up to DEC_MAX_EXP + 1).
         * Without thorough, a value that fits the last exponent takes it, minimal or not: the
         * chosen exponent may then be higher than needed, which costs bits, never exactness. */
        if (guess >= 0 && isfinite(vals[i]) && !(vals[i] == 0.0 && signbit(vals[i]))
            && dec_try(vals[i], guess, &mi)
            && (!thorough || guess == 0 || !dec_try(vals[i], guess - 1, &mi)))
            e = guess;
        else
            e = dec_min_exp(vals[i], &mi);
        guess = e;
        /* remembered for the second pass: the mantissa at this exponent is already known */
        m[i] = mi;
        exc[i] = e < 0 ? UINT8_MAX : (uint8_t)e;
        if (e < 0) {
            hist[DEC_MAX_EXP + 1]++;
            if (++bad > n / 4 + 1)
                return -1;
        } else {
            hist[e]++;
        }
    }
    int best_e = -1;
    double best_cost = 0;
    size_t cum = 0;
    for (int e = 0; e <= DEC_MAX_EXP; e++) {
        cum += hist[e];
        if (hist[e] == 0 && e > 0)
            continue;
        size_t n_exc = n - cum;
        if (n_exc > n / 4 + 1)
            continue;
        double cost = (double)n * 3.33 * e + (double)n_exc * 76.0;
        if (best_e < 0 || cost < best_cost) {
            best_e = e;
            best_cost = cost;
        }
    }
    if (best_e < 0)
        return -1;
    size_t n_exc = 0;
    int64_t prev = 0;
    int have_prev = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t mi = m[i];
        if (exc[i] == best_e || dec_fits(vals[i], best_e, &mi)) {
            exc[i] = 0;
            m[i] = mi;
            if (!have_prev) {
                for (size_t k = 0; k < i; k++)
                    m[k] = mi; /* leading exceptions copy the first mantissa */
                have_prev = 1;
            }
            prev = mi;
        } else {
            exc[i] = 1;
            m[i] = prev;
            n_exc++;
        }
    }
    *n_exc_out = n_exc;
    return best_e;
}

static void dec_write(wr *w, const double *vals, size_t n, int e, const int64_t *m,
    const uint8_t *exc, size_t n_exc, unsigned mode, unsigned fshift)
{
    wr_u8(w, (uint8_t)e);
    ip_write(w, m, n, 0, mode, fshift);
    wr_varint(w, n_exc);
    size_t last = 0;
    int first = 1;
    for (size_t i = 0; i < n && n_exc; i++) {
        if (!exc[i])
            continue;
        wr_varint(w, first ? i : i - last - 1);
        wr_le64(w, f64_bits(vals[i]));
        last = i;
        first = 0;
    }
}

static int dec_read(rd *r, size_t n, double *vals)
{
    uint8_t e;
    if (rd_u8(r, &e) != 0 || e > DEC_MAX_EXP)
        return TERN_ECORRUPT;
    ip_sink s = { NULL, vals, pow10_tab[e] };
    int rc = ip_read(r, n, 0, 0, &s);
    if (rc != 0)
        return rc;
    uint64_t n_exc;
    if (rd_varint(r, &n_exc) != 0 || n_exc > n)
        return TERN_ECORRUPT;
    size_t at = 0;
    for (uint64_t k = 0; k < n_exc; k++) {
        uint64_t gap;
        if (rd_varint(r, &gap) != 0 || gap >= n - at)
            return TERN_ECORRUPT;
        at += (size_t)gap;
        if (r->len - r->pos < 8)
            return TERN_ECORRUPT;
        vals[at] = bits_f64(load_le64(r->p + r->pos));
        r->pos += 8;
        at++;
    }
    return 0;
}

/* Gorilla XOR: first value raw (64 bits); then '0' for an equal value, '10' + the meaningful bits
 * inside the previous window, or '11' + 5 bits leading zeros + 6 bits length (0 = 64) + bits. */
static void gor_write(wr *w, const double *vals, size_t n)
{
    bw b = { w, 0, 0, 0 };
    uint64_t prev = f64_bits(vals[0]);
    bw_put(&b, prev, 64);
    unsigned pl = 65, pt = 0; /* no window yet */
    for (size_t i = 1; i < n; i++) {
        uint64_t cur = f64_bits(vals[i]);
        uint64_t x = cur ^ prev;
        prev = cur;
        if (x == 0) {
            bw_put(&b, 0, 1);
            continue;
        }
        unsigned lead = (unsigned)__builtin_clzll(x), trail = (unsigned)__builtin_ctzll(x);
        if (lead > 31)
            lead = 31;
        if (pl <= 64 && lead >= pl && trail >= pt) {
            bw_put(&b, 1, 2); /* bits 1,0 */
            bw_put(&b, x >> pt, 64 - pl - pt);
        } else {
            unsigned sig = 64 - lead - trail;
            bw_put(&b, 3, 2); /* bits 1,1 */
            bw_put(&b, lead, 5);
            bw_put(&b, sig & 63u, 6);
            bw_put(&b, x >> trail, sig);
            pl = lead;
            pt = trail;
        }
    }
    bw_flush(&b);
}

static int gor_read(rd *r, size_t n, double *vals)
{
    br b = { r->p + r->pos, (r->len - r->pos) * 8, 0 };
    uint64_t prev, bit, bits;
    if (br_get(&b, 64, &prev) != 0)
        return TERN_ECORRUPT;
    vals[0] = bits_f64(prev);
    unsigned pl = 65, pt = 0;
    for (size_t i = 1; i < n; i++) {
        if (br_get(&b, 1, &bit) != 0)
            return TERN_ECORRUPT;
        if (bit) {
            if (br_get(&b, 1, &bit) != 0)
                return TERN_ECORRUPT;
            if (bit) {
                uint64_t lead, sig;
                if (br_get(&b, 5, &lead) != 0 || br_get(&b, 6, &sig) != 0)
                    return TERN_ECORRUPT;
                if (sig == 0)
                    sig = 64;
                if (lead + sig > 64)
                    return TERN_ECORRUPT;
                pl = (unsigned)lead;
                pt = (unsigned)(64 - lead - sig);
            } else if (pl > 64) {
                return TERN_ECORRUPT; /* window reuse before any window */
            }
            if (br_get(&b, 64 - pl - pt, &bits) != 0)
                return TERN_ECORRUPT;
            prev ^= bits << pt;
        }
        vals[i] = bits_f64(prev);
    }
    r->pos += (b.pos + 7) / 8;
    return 0;
}

/* ---------------------------------------------------------------- header */

typedef struct hdr {
    tern_chunk_info info;
    size_t len; /* header bytes */
} hdr;

static int hdr_read(const uint8_t *data, size_t len, hdr *h)
{
    if (!data || len < 4)
        return TERN_ECORRUPT;
    if (data[0] != CHUNK_VERSION)
        return TERN_EPROTO;
    unsigned kind = data[1], tse = data[2], vale = data[3];
    if (kind != TERN_VALUE_F64 && kind != TERN_VALUE_I64)
        return TERN_ECORRUPT;
    if (tse < TERN_CHUNK_TS_REGULAR || tse > TERN_CHUNK_TS_GORILLA)
        return TERN_ECORRUPT;
    if (kind == TERN_VALUE_F64 && (vale < TERN_CHUNK_VAL_DECIMAL || vale > TERN_CHUNK_VAL_RAW))
        return TERN_ECORRUPT;
    if (kind == TERN_VALUE_I64 && vale != TERN_CHUNK_VAL_INT)
        return TERN_ECORRUPT;
    rd r = { data, len, 4 };
    uint64_t cm1, zmin, span;
    if (rd_varint(&r, &cm1) != 0 || cm1 >= TERN_CHUNK_MAX_POINTS)
        return TERN_ECORRUPT;
    if (rd_varint(&r, &zmin) != 0 || rd_varint(&r, &span) != 0)
        return TERN_ECORRUPT;
    int64_t min_ts = tern_varint_unzigzag(zmin);
    if ((cm1 == 0) != (span == 0) || span < cm1)
        return TERN_ECORRUPT;
    if (span > (uint64_t)INT64_MAX - (uint64_t)min_ts)
        return TERN_ECORRUPT; /* max_ts would overflow int64 */
    h->info.count = (uint32_t)(cm1 + 1);
    h->info.min_ts = min_ts;
    h->info.max_ts = (int64_t)((uint64_t)min_ts + span);
    h->info.kind = (tern_value_kind)kind;
    h->info.ts_encoding = (uint8_t)tse;
    h->info.value_encoding = (uint8_t)vale;
    h->len = r.pos;
    return 0;
}

int tern_chunk_info_read(const uint8_t *data, size_t len, tern_chunk_info *out)
{
    hdr h;
    int rc = hdr_read(data, len, &h);
    if (rc == 0)
        *out = h.info;
    return rc;
}

/* ---------------------------------------------------------------- encode */

typedef struct plan {
    unsigned kind, tse, vale;
    unsigned ts_mode, ts_fshift;
    unsigned v_mode, v_fshift;
    int dec_e;
    size_t n_exc;
    int64_t *m;   /* mantissas (owned by the caller of plan) */
    uint8_t *exc; /* exception flags */
} plan;

static int check_ts(const int64_t *ts, size_t n)
{
    if (!ts || n == 0 || n > TERN_CHUNK_MAX_POINTS)
        return TERN_EINVAL;
    for (size_t i = 1; i < n; i++)
        if (ts[i] <= ts[i - 1])
            return TERN_EINVAL;
    return 0;
}

/* plan_ts picks (or checks the forced) timestamp encoding; returns 0 or TERN_EINVAL. */
static int plan_ts(plan *p, const int64_t *ts, size_t n, unsigned forced)
{
    int regular = ts_is_regular(ts, n);
    if (forced == TERN_CHUNK_TS_REGULAR && !regular)
        return TERN_EINVAL;
    if (forced == TERN_CHUNK_TS_REGULAR || (forced == 0 && regular)) {
        p->tse = TERN_CHUNK_TS_REGULAR;
        return 0;
    }
    if (forced == TERN_CHUNK_TS_GORILLA) {
        p->tse = TERN_CHUNK_TS_GORILLA;
        return 0;
    }
    if (forced != 0 && forced != TERN_CHUNK_TS_INT)
        return TERN_EINVAL;
    size_t int_size = ip_plan(ts, n, 1, &p->ts_mode, &p->ts_fshift);
    p->tse = TERN_CHUNK_TS_INT;
    if (forced == 0) {
        wr w = { NULL, 0 };
        gts_write(&w, ts, n);
        if (w.pos < int_size)
            p->tse = TERN_CHUNK_TS_GORILLA;
    }
    return 0;
}

static void write_chunk(wr *w, const plan *p, const int64_t *ts, const void *vals, size_t n)
{
    wr_u8(w, CHUNK_VERSION);
    wr_u8(w, (uint8_t)p->kind);
    wr_u8(w, (uint8_t)p->tse);
    wr_u8(w, (uint8_t)p->vale);
    wr_varint(w, n - 1);
    wr_varint(w, tern_varint_zigzag(ts[0]));
    wr_varint(w, (uint64_t)ts[n - 1] - (uint64_t)ts[0]);
    if (p->tse == TERN_CHUNK_TS_INT)
        ip_write(w, ts, n, 1, p->ts_mode, p->ts_fshift);
    else if (p->tse == TERN_CHUNK_TS_GORILLA)
        gts_write(w, ts, n);
    switch (p->vale) {
    case TERN_CHUNK_VAL_DECIMAL:
        dec_write(w, vals, n, p->dec_e, p->m, p->exc, p->n_exc, p->v_mode, p->v_fshift);
        break;
    case TERN_CHUNK_VAL_GORILLA:
        gor_write(w, vals, n);
        break;
    case TERN_CHUNK_VAL_RAW:
        for (size_t i = 0; i < n; i++)
            wr_le64(w, f64_bits(((const double *)vals)[i]));
        break;
    default: /* TERN_CHUNK_VAL_INT */
        ip_write(w, vals, n, 0, p->v_mode, p->v_fshift);
        break;
    }
}

/*
 * Up to this many points a chunk is written once into room for tern_chunk_bound bytes; larger
 * ones (block chunks) are measured by a dry run first, so a block writer's buffer does not
 * reserve 40 bytes a point for chunks that take a fraction of one.
 */
#define EMIT_BOUND_MAX 512

size_t tern_chunk_bound(size_t n)
{
    /* Per point at most 9 bytes of timestamp (a 64-bit residual, or Gorilla's 68 bits) and 19
     * of value (a 64-bit residual, plus for an exception its gap varint and 8 raw bytes;
     * Gorilla's worst is 77 bits); per 32 points a frame header (<= 11 bytes) for each; the
     * chunk header, the pipelines' headers and their varints stay under 128 bytes. */
    return TERN_CHUNK_BOUND(n);
}

static int emit(tern_buf *out, const plan *p, const int64_t *ts, const void *vals, size_t n)
{
    size_t room;
    if (n <= EMIT_BOUND_MAX) {
        room = tern_chunk_bound(n);
    } else {
        wr dry = { NULL, 0 };
        write_chunk(&dry, p, ts, vals, n);
        room = dry.pos;
    }
    if (tern_buf_reserve(out, room) != 0)
        return TERN_ENOMEM;
    wr w = { out->data + out->len, 0 };
    write_chunk(&w, p, ts, vals, n);
    TERN_ASSERT(w.pos <= room);
    out->len += w.pos;
    return 0;
}

/* thorough: compare the decimal pipeline's size with Gorilla's (and raw) and keep the smallest;
 * otherwise decimals are stored as decimals without trying Gorilla (see
 * tern_chunk_encode_f64_fast). */
static int encode_f64(tern_buf *out, const int64_t *ts, const double *vals, size_t n,
    unsigned ts_enc, unsigned val_enc, bool thorough)
{
    if (!out || !vals || check_ts(ts, n) != 0)
        return TERN_EINVAL;
    if (val_enc != 0 && (val_enc < TERN_CHUNK_VAL_DECIMAL || val_enc > TERN_CHUNK_VAL_RAW))
        return TERN_EINVAL;
    plan p;
    memset(&p, 0, sizeof p);
    p.kind = TERN_VALUE_F64;
    int rc = plan_ts(&p, ts, n, ts_enc);
    if (rc != 0)
        return rc;
    if (val_enc == TERN_CHUNK_VAL_GORILLA || val_enc == TERN_CHUNK_VAL_RAW) {
        p.vale = val_enc;
        return emit(out, &p, ts, vals, n);
    }
    /* small chunks (head fragments) work on the stack: no allocation on the write path */
    int64_t m_stack[512];
    uint8_t exc_stack[512];
    bool on_stack = n <= 512;
    p.m = on_stack ? m_stack : tern_malloc(n * sizeof *p.m);
    p.exc = on_stack ? exc_stack : tern_malloc(n);
    if (!p.m || !p.exc) {
        rc = TERN_ENOMEM;
        goto done;
    }
    p.dec_e = dec_analyse(vals, n, p.m, p.exc, &p.n_exc, thorough);
    if (p.dec_e < 0 && val_enc == TERN_CHUNK_VAL_DECIMAL) {
        rc = TERN_EINVAL;
        goto done;
    }
    size_t best = SIZE_MAX;
    if (p.dec_e >= 0) {
        if (val_enc == TERN_CHUNK_VAL_DECIMAL && p.n_exc > 0) {
            rc = TERN_EINVAL; /* forced decimal means every value is one */
            goto done;
        }
        p.vale = TERN_CHUNK_VAL_DECIMAL;
        size_t ip_bytes = ip_plan(p.m, n, 0, &p.v_mode, &p.v_fshift);
        if (!thorough) {
            rc = emit(out, &p, ts, vals, n);
            goto done;
        }
        /* Its exact size only matters when Gorilla is tried (below): without exceptions the
         * plan's estimate (plus the exponent and the exception count) tells whether it will be,
         * and a head fragment is then encoded once, not twice. */
        if (p.n_exc == 0 && ip_bytes + 4 <= n / 2) {
            best = ip_bytes + 4;
        } else {
            wr w = { NULL, 0 };
            dec_write(&w, vals, n, p.dec_e, p.m, p.exc, p.n_exc, p.v_mode, p.v_fshift);
            best = w.pos;
        }
    }
    /* Gorilla needs at least a bit per point and ~40 for a changed decimal: when the decimal
     * pipeline already costs under 4 bits per point, trying it is wasted work. */
    if (val_enc == 0 && !thorough) {
        p.vale = TERN_CHUNK_VAL_GORILLA;
    } else if (val_enc == 0 && !(p.dec_e >= 0 && best <= n / 2)) {
        wr w = { NULL, 0 };
        gor_write(&w, vals, n);
        if (w.pos < best) {
            best = w.pos;
            p.vale = TERN_CHUNK_VAL_GORILLA;
        }
        if (8 * n < best)
            p.vale = TERN_CHUNK_VAL_RAW;
    }
    rc = emit(out, &p, ts, vals, n);
done:
    if (!on_stack) {
        tern_free(p.m);
        tern_free(p.exc);
    }
    return rc;
}

int tern_chunk_encode_f64_with(tern_buf *out, const int64_t *ts, const double *vals, size_t n,
    unsigned ts_enc, unsigned val_enc)
{
    return encode_f64(out, ts, vals, n, ts_enc, val_enc, true);
}

int tern_chunk_encode_f64(tern_buf *out, const int64_t *ts, const double *vals, size_t n)
{
    return encode_f64(out, ts, vals, n, 0, 0, true);
}

int tern_chunk_encode_f64_fast(tern_buf *out, const int64_t *ts, const double *vals, size_t n)
{
    return encode_f64(out, ts, vals, n, 0, 0, false);
}

int tern_chunk_encode_i64_with(tern_buf *out, const int64_t *ts, const int64_t *vals, size_t n,
    unsigned ts_enc, unsigned val_enc)
{
    if (!out || !vals || check_ts(ts, n) != 0)
        return TERN_EINVAL;
    if (val_enc != 0 && val_enc != TERN_CHUNK_VAL_INT)
        return TERN_EINVAL;
    plan p;
    memset(&p, 0, sizeof p);
    p.kind = TERN_VALUE_I64;
    p.vale = TERN_CHUNK_VAL_INT;
    int rc = plan_ts(&p, ts, n, ts_enc);
    if (rc != 0)
        return rc;
    ip_plan(vals, n, 0, &p.v_mode, &p.v_fshift);
    return emit(out, &p, ts, vals, n);
}

int tern_chunk_encode_i64(tern_buf *out, const int64_t *ts, const int64_t *vals, size_t n)
{
    return tern_chunk_encode_i64_with(out, ts, vals, n, 0, 0);
}

/* ---------------------------------------------------------------- decode */

static int decode_ts(rd *r, const tern_chunk_info *info, int64_t *ts)
{
    size_t n = info->count;
    ts[0] = info->min_ts;
    if (info->ts_encoding == TERN_CHUNK_TS_REGULAR) {
        if (n == 1)
            return 0;
        uint64_t span = (uint64_t)info->max_ts - (uint64_t)info->min_ts;
        if (span % (n - 1) != 0)
            return TERN_ECORRUPT;
        uint64_t step = span / (n - 1), t = (uint64_t)info->min_ts;
        for (size_t i = 1; i < n; i++)
            ts[i] = (int64_t)(t + step * i);
        return 0;
    }
    int rc;
    if (info->ts_encoding == TERN_CHUNK_TS_INT) {
        ip_sink s = { ts, NULL, 1.0 };
        rc = ip_read(r, n, 1, info->min_ts, &s);
    } else {
        rc = gts_read(r, ts, n);
    }
    if (rc != 0)
        return rc;
    int bad = ts[n - 1] != info->max_ts;
    for (size_t i = 1; i < n; i++)
        bad |= ts[i] <= ts[i - 1];
    return bad ? TERN_ECORRUPT : 0;
}

static int decode_common(const uint8_t *data, size_t len, tern_value_kind kind, int64_t *ts,
    void *vals, size_t cap, size_t *n_out)
{
    hdr h;
    int rc = hdr_read(data, len, &h);
    if (rc != 0)
        return rc;
    if (h.info.kind != kind || h.info.count > cap || !ts || !vals)
        return TERN_EINVAL;
    rd r = { data, len, h.len };
    size_t n = h.info.count;
    rc = decode_ts(&r, &h.info, ts);
    if (rc != 0)
        return rc;
    switch (h.info.value_encoding) {
    case TERN_CHUNK_VAL_DECIMAL:
        rc = dec_read(&r, n, vals);
        break;
    case TERN_CHUNK_VAL_GORILLA:
        rc = gor_read(&r, n, vals);
        break;
    case TERN_CHUNK_VAL_RAW:
        if (r.len - r.pos < 8 * n)
            return TERN_ECORRUPT;
        for (size_t i = 0; i < n; i++)
            ((double *)vals)[i] = bits_f64(load_le64(r.p + r.pos + 8 * i));
        r.pos += 8 * n;
        break;
    default: { /* TERN_CHUNK_VAL_INT */
        ip_sink s = { vals, NULL, 1.0 };
        rc = ip_read(&r, n, 0, 0, &s);
        break;
    }
    }
    if (rc != 0)
        return rc;
    if (r.pos != r.len)
        return TERN_ECORRUPT; /* trailing bytes */
    *n_out = n;
    return 0;
}

int tern_chunk_decode_f64(
    const uint8_t *data, size_t len, int64_t *ts, double *vals, size_t cap, size_t *n)
{
    return decode_common(data, len, TERN_VALUE_F64, ts, vals, cap, n);
}

int tern_chunk_decode_i64(
    const uint8_t *data, size_t len, int64_t *ts, int64_t *vals, size_t cap, size_t *n)
{
    return decode_common(data, len, TERN_VALUE_I64, ts, vals, cap, n);
}

/*
 * sim_pure.c: the simulator's pure parts: schedule arithmetic, backoff with full jitter, the PRNG,
 * seq sets for accounting, one sample's payload, and the parser/judge of the verification
 * queries. No I/O and no global state (see sim.h).
 */
#include "sim/sim.h"

#include "base/alloc.h"
#include "base/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- schedule ---------------------------------------------------------------------------- */

bool tern_sim_schedule_rush(const tern_sim_schedule *s)
{
    return s->rush_x > 1 && s->rush_for_ms > 0 && s->rush_for_ms <= s->rush_every_ms;
}

bool tern_sim_schedule_valid(const tern_sim_schedule *s)
{
    if (s->interval_ms == 0 || !(s->accel > 0) || s->n_devices == 0)
        return false;
    if (s->rush_x <= 1)
        return true;
    return tern_sim_schedule_rush(s) && s->rush_x <= 1000 && s->interval_ms >= s->rush_x
        && s->rush_every_ms % s->interval_ms == 0 && s->rush_for_ms % s->interval_ms == 0;
}

/* Samples per rush and per rush period. */
static void rush_counts(const tern_sim_schedule *s, uint64_t *n_rush, uint64_t *n_period)
{
    *n_rush = s->rush_for_ms / s->interval_ms * s->rush_x;
    *n_period = *n_rush + (s->rush_every_ms - s->rush_for_ms) / s->interval_ms;
}

bool tern_sim_schedule_in_rush(const tern_sim_schedule *s, uint64_t seq)
{
    if (!tern_sim_schedule_rush(s) || seq == 0)
        return false;
    uint64_t n_rush, n_period;
    rush_counts(s, &n_rush, &n_period);
    return (seq - 1) % n_period < n_rush;
}

int64_t tern_sim_schedule_ts(const tern_sim_schedule *s, uint32_t dev, uint64_t seq)
{
    if (tern_sim_schedule_rush(s)) {
        uint64_t n_rush, n_period, iv = s->interval_ms, x = s->rush_x;
        rush_counts(s, &n_rush, &n_period);
        uint64_t k = (seq - 1) / n_period, r = (seq - 1) % n_period;
        int64_t base = s->start_ms + (int64_t)(k * s->rush_every_ms);
        if (r < n_rush)
            return base + (int64_t)((uint64_t)(dev - 1) * iv / (x * s->n_devices) + r * iv / x);
        return base + (int64_t)s->rush_for_ms
            + (int64_t)((uint64_t)(dev - 1) * s->interval_ms / s->n_devices
                + (r - n_rush) * s->interval_ms);
    }
    uint64_t offset = (uint64_t)(dev - 1) * s->interval_ms / s->n_devices;
    return s->start_ms + (int64_t)offset + (int64_t)(seq - 1) * (int64_t)s->interval_ms;
}

double tern_sim_drift_rate(const tern_sim_schedule *s, uint32_t dev)
{
    if (!(s->drift_max > 0))
        return 0.0;
    /* splitmix64 of (seed, dev): independent of the run's PRNG stream */
    uint64_t z = s->drift_seed + (uint64_t)dev * UINT64_C(0x9E3779B97F4A7C15);
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    z ^= z >> 31;
    double u = (double)(z >> 11) / 9007199254740992.0; /* [0, 1) */
    return (2.0 * u - 1.0) * s->drift_max;
}

int64_t tern_sim_schedule_stamp(const tern_sim_schedule *s, uint32_t dev, uint64_t seq)
{
    int64_t ts = tern_sim_schedule_ts(s, dev, seq);
    double rate = tern_sim_drift_rate(s, dev);
    if (rate == 0.0)
        return ts;
    return ts + (int64_t)llround(rate * (double)(ts - s->start_ms) / 3600000.0);
}

uint64_t tern_sim_schedule_wall_ms(const tern_sim_schedule *s, int64_t ts_ms)
{
    if (ts_ms <= s->start_ms)
        return 0;
    double w = (double)(ts_ms - s->start_ms) / s->accel;
    return (uint64_t)ceil(w - 1e-9);
}

uint64_t tern_sim_schedule_due(const tern_sim_schedule *s, uint32_t dev, uint64_t wall_ms)
{
    if (tern_sim_schedule_rush(s)) {
        /* samples are >= g = floor(interval / x) apart: ts(n) - start >= (n - 1) * g, so hi is
         * past the end */
        double reached = floor((double)wall_ms * s->accel + 1e-9);
        uint64_t lo = 0, hi = (uint64_t)(reached / (double)(s->interval_ms / s->rush_x)) + 2;
        while (hi - lo > 1) { /* invariant: lo is due, hi is not */
            uint64_t mid = lo + (hi - lo) / 2;
            if (tern_sim_schedule_wall_ms(s, tern_sim_schedule_ts(s, dev, mid)) <= wall_ms)
                lo = mid;
            else
                hi = mid;
        }
        return lo;
    }
    uint64_t offset = (uint64_t)(dev - 1) * s->interval_ms / s->n_devices;
    /* event time reached: floor(wall * accel); sample seq is due when offset + (seq-1)*iv <= it */
    double reached = floor((double)wall_ms * s->accel + 1e-9);
    if (reached < (double)offset)
        return 0;
    uint64_t n = (uint64_t)((reached - (double)offset) / (double)s->interval_ms) + 1;
    /* guard the float edge: make wall_ms(ts(n)) <= wall_ms and wall_ms(ts(n + 1)) > wall_ms */
    while (n > 0 && tern_sim_schedule_wall_ms(s, tern_sim_schedule_ts(s, dev, n)) > wall_ms)
        n--;
    while (tern_sim_schedule_wall_ms(s, tern_sim_schedule_ts(s, dev, n + 1)) <= wall_ms)
        n++;
    return n;
}

/* ---- backoff and PRNG -------------------------------------------------------------------- */

uint64_t tern_sim_backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms, uint64_t rnd)
{
    uint64_t ceil_ms = base_ms;
    for (uint32_t i = 1; i < attempt && ceil_ms < cap_ms; i++)
        ceil_ms *= 2;
    if (ceil_ms > cap_ms)
        ceil_ms = cap_ms;
    return rnd % (ceil_ms + 1);
}

uint64_t tern_sim_rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * UINT64_C(2685821657736338717);
}

double tern_sim_rng_unit(uint64_t *state)
{
    return (double)(tern_sim_rng_next(state) >> 11) * 0x1.0p-53;
}

/* ---- seq sets ---------------------------------------------------------------------------- */

int tern_sim_seqset_add(tern_sim_seqset *s, uint64_t seq, bool *added)
{
    if (seq == 0)
        return TERN_EINVAL;
    size_t need = (size_t)(seq / 64) + 1;
    if (need > s->n_words) {
        size_t n = s->n_words ? s->n_words : 4;
        while (n < need)
            n *= 2;
        uint64_t *w = tern_realloc(s->words, n * sizeof *w);
        if (!w)
            return TERN_ENOMEM;
        memset(w + s->n_words, 0, (n - s->n_words) * sizeof *w);
        s->words = w;
        s->n_words = n;
    }
    uint64_t bit = UINT64_C(1) << (seq % 64);
    bool is_new = (s->words[seq / 64] & bit) == 0;
    if (is_new) {
        s->words[seq / 64] |= bit;
        s->count++;
        if (seq > s->max)
            s->max = seq;
    }
    if (added)
        *added = is_new;
    return 0;
}

bool tern_sim_seqset_has(const tern_sim_seqset *s, uint64_t seq)
{
    return seq / 64 < s->n_words && ((s->words[seq / 64] >> (seq % 64)) & 1) != 0;
}

void tern_sim_seqset_free(tern_sim_seqset *s)
{
    tern_free(s->words);
    memset(s, 0, sizeof *s);
}

size_t tern_sim_seqset_ranges(
    const tern_sim_seqset *s, void (*fn)(uint64_t lo, uint64_t hi, void *arg), void *arg)
{
    size_t n = 0;
    uint64_t lo = 0;
    for (uint64_t q = 1; q <= s->max + 1; q++) {
        bool in = q <= s->max && tern_sim_seqset_has(s, q);
        if (in && lo == 0)
            lo = q;
        else if (!in && lo != 0) {
            if (fn)
                fn(lo, q - 1, arg);
            n++;
            lo = 0;
        }
    }
    return n;
}

uint64_t tern_sim_seqset_count_between(const tern_sim_seqset *s, uint64_t lo, uint64_t hi)
{
    uint64_t n = 0;
    if (lo == 0)
        lo = 1;
    for (uint64_t q = lo; q <= hi && q <= s->max; q++)
        n += tern_sim_seqset_has(s, q);
    return n;
}

int tern_sim_power_lose(
    tern_sim_seqset *lost, const tern_sim_seqset *acked, uint64_t seq, bool *counted)
{
    if (counted)
        *counted = false;
    if (seq == 0)
        return TERN_EINVAL;
    if (tern_sim_seqset_has(acked, seq))
        return 0;
    return tern_sim_seqset_add(lost, seq, counted);
}

uint32_t tern_sim_shuffle_pick(uint32_t q_len, uint32_t window, double p, uint64_t *rng)
{
    uint32_t n = q_len < window ? q_len : window;
    if (n < 2 || !(p > 0))
        return 0;
    if (tern_sim_rng_unit(rng) >= p)
        return 0;
    return 1 + (uint32_t)(tern_sim_rng_next(rng) % (n - 1));
}

/* ---- payloads ---------------------------------------------------------------------------- */

int tern_sim_encode_sample(tern_buf *out, const tern_profile *p, tern_sim_format fmt, int64_t ts_ms,
    uint64_t seq, const double *values)
{
    size_t n = tern_profile_metric_count(p);
    const char *names[TERN_PROFILE_MAX_METRICS];
    tern_payload_value vals[TERN_PROFILE_MAX_METRICS];
    for (size_t i = 0; i < n; i++) {
        names[i] = tern_profile_metric_name(p, i);
        if (!isfinite(values[i]))
            return TERN_EINVAL;
        if (tern_profile_metric_decimals(p, i) < 0) {
            vals[i].is_int = true;
            vals[i].i = (int64_t)values[i];
        } else {
            vals[i].is_int = false;
            vals[i].f = values[i];
        }
    }
    tern_payload_sample smp = { ts_ms, seq, n, names, vals };
    if (fmt == TERN_SIM_JSON)
        return tern_payload_encode_json(out, &smp, 1);
    const tern_payload_schema *schema = tern_payload_schema_by_name(tern_profile_name(p));
    if (!schema)
        return TERN_EINVAL;
    return tern_payload_encode_binary(out, schema, &smp, 1);
}

/* ---- the query answer -------------------------------------------------------------------- */

typedef struct jscan {
    const char *p, *end;
    int depth;
} jscan;

#define JSCAN_MAX_DEPTH 32

static void js_ws(jscan *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
        j->p++;
}

static bool js_lit(jscan *j, char c)
{
    js_ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return true;
    }
    return false;
}

/* Reads a string; *s and *len borrow its raw (still escaped) bytes. */
static bool js_string(jscan *j, const char **s, size_t *len)
{
    js_ws(j);
    if (j->p >= j->end || *j->p != '"')
        return false;
    const char *start = ++j->p;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\') {
            if (j->end - j->p < 2)
                return false;
            j->p++;
        }
        j->p++;
    }
    if (j->p >= j->end)
        return false;
    *s = start;
    *len = (size_t)(j->p - start);
    j->p++;
    return true;
}

static bool js_number(jscan *j, double *out)
{
    js_ws(j);
    char tmp[64];
    size_t n = 0;
    while (j->p + n < j->end && n < sizeof tmp - 1 && strchr("+-0123456789.eE", j->p[n]) != NULL
        && j->p[n] != '\0')
        n++;
    if (n == 0 || n == sizeof tmp - 1)
        return false;
    memcpy(tmp, j->p, n);
    tmp[n] = '\0';
    char *e;
    double v = strtod(tmp, &e);
    if ((size_t)(e - tmp) != n)
        return false;
    j->p += n;
    *out = v;
    return true;
}

static bool js_skip(jscan *j);

static bool js_skip_container(jscan *j, char close, bool object)
{
    if (++j->depth > JSCAN_MAX_DEPTH)
        return false;
    if (js_lit(j, close)) {
        j->depth--;
        return true;
    }
    for (;;) {
        if (object) {
            const char *k;
            size_t kl;
            if (!js_string(j, &k, &kl) || !js_lit(j, ':'))
                return false;
        }
        if (!js_skip(j))
            return false;
        if (js_lit(j, ','))
            continue;
        if (js_lit(j, close)) {
            j->depth--;
            return true;
        }
        return false;
    }
}

static bool js_skip(jscan *j)
{
    js_ws(j);
    if (j->p >= j->end)
        return false;
    char c = *j->p;
    if (c == '{') {
        j->p++;
        return js_skip_container(j, '}', true);
    }
    if (c == '[') {
        j->p++;
        return js_skip_container(j, ']', false);
    }
    if (c == '"') {
        const char *s;
        size_t l;
        return js_string(j, &s, &l);
    }
    static const char *const words[] = { "true", "false", "null" };
    for (size_t i = 0; i < 3; i++) {
        size_t wl = strlen(words[i]);
        if ((size_t)(j->end - j->p) >= wl && memcmp(j->p, words[i], wl) == 0) {
            j->p += wl;
            return true;
        }
    }
    double d;
    return js_number(j, &d);
}

static bool js_key_is(const char *k, size_t kl, const char *want)
{
    return kl == strlen(want) && memcmp(k, want, kl) == 0;
}

/* Sums column col of a values array [[..],..] (positioned at its '['). */
static bool js_sum_column(jscan *j, long col, uint64_t *sum)
{
    if (!js_lit(j, '['))
        return false;
    if (js_lit(j, ']'))
        return true;
    for (;;) {
        if (!js_lit(j, '['))
            return false;
        for (long i = 0;; i++) {
            js_ws(j);
            if (i == col) {
                double v;
                if (!js_number(j, &v) || v < 0 || v > 1e18)
                    return false;
                *sum += (uint64_t)v;
            } else if (!js_skip(j)) {
                return false;
            }
            if (js_lit(j, ','))
                continue;
            if (js_lit(j, ']'))
                break;
            return false;
        }
        if (js_lit(j, ','))
            continue;
        if (js_lit(j, ']'))
            return true;
        return false;
    }
}

/* One series object (positioned after its '{'). */
static bool js_series(jscan *j, const char *const *names, size_t n_names, uint64_t *counts)
{
    const char *metric = NULL, *values_at = NULL;
    size_t metric_len = 0;
    long count_col = -1;
    if (!js_lit(j, '}')) {
        for (;;) {
            const char *k;
            size_t kl;
            if (!js_string(j, &k, &kl) || !js_lit(j, ':'))
                return false;
            if (js_key_is(k, kl, "metric")) {
                if (!js_string(j, &metric, &metric_len))
                    return false;
            } else if (js_key_is(k, kl, "columns")) {
                if (!js_lit(j, '['))
                    return false;
                for (long i = 0; !js_lit(j, ']'); i++) {
                    const char *c;
                    size_t cl;
                    if (i > 0 && !js_lit(j, ','))
                        return false;
                    if (!js_string(j, &c, &cl))
                        return false;
                    if (js_key_is(c, cl, "count"))
                        count_col = i;
                }
            } else if (js_key_is(k, kl, "values")) {
                js_ws(j);
                values_at = j->p;
                if (!js_skip(j))
                    return false;
            } else if (!js_skip(j)) {
                return false;
            }
            if (js_lit(j, ','))
                continue;
            if (js_lit(j, '}'))
                break;
            return false;
        }
    }
    if (!metric || !values_at || count_col < 0)
        return false;
    for (size_t i = 0; i < n_names; i++) {
        if (js_key_is(metric, metric_len, names[i])) {
            jscan v = { values_at, j->end, 0 };
            return js_sum_column(&v, count_col, &counts[i]);
        }
    }
    return true;
}

/*
 * The envelope of tern's query answers: one object whose member `key` is an array of row
 * objects, each passed to row (positioned after its '{'); other members are skipped. Returns
 * 0, or TERN_EPROTO when the JSON is malformed, the array is missing or a row is refused.
 */
static int js_answer_rows(
    const char *json, size_t len, const char *key, bool (*row)(jscan *j, void *ctx), void *ctx)
{
    jscan j = { json, json + len, 0 };
    bool seen = false;
    if (!js_lit(&j, '{'))
        return TERN_EPROTO;
    if (!js_lit(&j, '}')) {
        for (;;) {
            const char *k;
            size_t kl;
            if (!js_string(&j, &k, &kl) || !js_lit(&j, ':'))
                return TERN_EPROTO;
            if (js_key_is(k, kl, key)) {
                seen = true;
                if (!js_lit(&j, '['))
                    return TERN_EPROTO;
                if (!js_lit(&j, ']')) {
                    for (;;) {
                        if (!js_lit(&j, '{') || !row(&j, ctx))
                            return TERN_EPROTO;
                        if (js_lit(&j, ','))
                            continue;
                        if (js_lit(&j, ']'))
                            break;
                        return TERN_EPROTO;
                    }
                }
            } else if (!js_skip(&j)) {
                return TERN_EPROTO;
            }
            if (js_lit(&j, ','))
                continue;
            if (js_lit(&j, '}'))
                break;
            return TERN_EPROTO;
        }
    }
    js_ws(&j);
    if (!seen || j.p != j.end)
        return TERN_EPROTO;
    return 0;
}

typedef struct counts_ctx {
    const char *const *names;
    size_t n_names;
    uint64_t *counts;
} counts_ctx;

static bool counts_row(jscan *j, void *arg)
{
    counts_ctx *c = arg;
    return js_series(j, c->names, c->n_names, c->counts);
}

int tern_sim_parse_counts(
    const char *json, size_t len, const char *const *names, size_t n_names, uint64_t *counts)
{
    counts_ctx c = { names, n_names, counts };
    return js_answer_rows(json, len, "series", counts_row, &c);
}

/* One row object of a last-value answer (positioned after its '{'): *found and *ts_ms take the
 * row's ts if its metric is metric (the largest, over several rows). */
static bool js_last_row(jscan *j, const char *metric, bool *found, int64_t *ts_ms)
{
    const char *m = NULL;
    size_t ml = 0;
    bool has_ts = false;
    int64_t ts = 0;
    if (js_lit(j, '}'))
        return false;
    for (;;) {
        const char *k;
        size_t kl;
        if (!js_string(j, &k, &kl) || !js_lit(j, ':'))
            return false;
        if (js_key_is(k, kl, "metric")) {
            if (!js_string(j, &m, &ml))
                return false;
        } else if (js_key_is(k, kl, "ts")) {
            double v;
            /* ms since the epoch: integral, and exact in a double up to 2^53 */
            if (!js_number(j, &v) || !(v >= -9007199254740992.0 && v <= 9007199254740992.0)
                || v != floor(v))
                return false;
            ts = (int64_t)v;
            has_ts = true;
        } else if (!js_skip(j)) {
            return false;
        }
        if (js_lit(j, ','))
            continue;
        if (js_lit(j, '}'))
            break;
        return false;
    }
    if (!m || !has_ts)
        return false;
    if (js_key_is(m, ml, metric) && (!*found || ts > *ts_ms)) {
        *found = true;
        *ts_ms = ts;
    }
    return true;
}

typedef struct last_ctx {
    const char *metric;
    bool found;
    int64_t ts;
} last_ctx;

static bool last_row(jscan *j, void *arg)
{
    last_ctx *c = arg;
    return js_last_row(j, c->metric, &c->found, &c->ts);
}

int tern_sim_parse_last_ts(const char *json, size_t len, const char *metric, int64_t *ts_ms)
{
    last_ctx c = { metric, false, 0 };
    int rc = js_answer_rows(json, len, "rows", last_row, &c);
    if (rc)
        return rc;
    if (!c.found)
        return TERN_ENOTFOUND;
    *ts_ms = c.ts;
    return 0;
}

/* ---- HTTP response framing --------------------------------------------------------------- */

/* Case-insensitive prefix test of the header line [p, e) against name (with its ':'). */
static bool header_is(const char *p, const char *e, const char *name)
{
    size_t n = strlen(name);
    if ((size_t)(e - p) < n)
        return false;
    for (size_t i = 0; i < n; i++) {
        char a = p[i], b = name[i];
        if (a >= 'A' && a <= 'Z')
            a = (char)(a - 'A' + 'a');
        if (a != b)
            return false;
    }
    return true;
}

/* Whether the comma-separated header value [p, e) holds token (lower case), any case. */
static bool value_has_token(const char *p, const char *e, const char *token)
{
    size_t n = strlen(token);
    while (p < e) {
        while (p < e && (*p == ' ' || *p == '\t' || *p == ','))
            p++;
        const char *t = p;
        while (p < e && *p != ',' && *p != ' ' && *p != '\t')
            p++;
        if ((size_t)(p - t) == n) {
            bool eq = true;
            for (size_t i = 0; i < n && eq; i++) {
                char a = t[i];
                if (a >= 'A' && a <= 'Z')
                    a = (char)(a - 'A' + 'a');
                eq = a == token[i];
            }
            if (eq)
                return true;
        }
    }
    return false;
}

int tern_sim_http_frame(const char *data, size_t len, size_t max_head, size_t max_body, int *status,
    size_t *head_len, size_t *body_len, bool *keep_alive)
{
    /* the end of the headers: the first blank line */
    size_t end = 0;
    for (size_t i = 0; i + 3 < len && i + 4 <= max_head; i++) {
        if (data[i] == '\r' && data[i + 1] == '\n' && data[i + 2] == '\r' && data[i + 3] == '\n') {
            end = i + 4;
            break;
        }
    }
    if (end == 0)
        return len >= max_head ? TERN_EPROTO : TERN_EPARTIAL;
    /* "HTTP/1.x SSS " */
    if (end < 16 || memcmp(data, "HTTP/1.", 7) != 0 || (data[7] != '0' && data[7] != '1')
        || data[8] != ' ')
        return TERN_EPROTO;
    int code = 0;
    for (int i = 9; i < 12; i++) {
        if (data[i] < '0' || data[i] > '9')
            return TERN_EPROTO;
        code = code * 10 + (data[i] - '0');
    }
    if (code < 100 || (data[12] != ' ' && data[12] != '\r'))
        return TERN_EPROTO;
    bool minor1 = data[7] == '1';
    bool ka = minor1, has_len = false;
    uint64_t clen = 0;
    const char *p = memchr(data, '\n', end);
    const char *stop = data + end - 2; /* the blank line's CRLF */
    while (p && p + 1 < stop) {
        const char *line = p + 1;
        const char *nl = memchr(line, '\n', (size_t)(stop + 1 - line));
        if (!nl)
            return TERN_EPROTO;
        const char *e = nl > line && nl[-1] == '\r' ? nl - 1 : nl;
        const char *colon = memchr(line, ':', (size_t)(e - line));
        if (!colon || colon == line)
            return TERN_EPROTO;
        const char *v = colon + 1;
        if (header_is(line, e, "content-length:")) {
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            uint64_t n = 0;
            const char *d = v;
            while (d < e && *d >= '0' && *d <= '9' && n <= max_body)
                n = n * 10 + (uint64_t)(*d++ - '0');
            while (d < e && (*d == ' ' || *d == '\t'))
                d++;
            if (d == v || d != e || n > max_body || (has_len && n != clen))
                return TERN_EPROTO;
            clen = n;
            has_len = true;
        } else if (header_is(line, e, "transfer-encoding:")) {
            return TERN_EPROTO; /* a chunked (or otherwise encoded) body is not supported */
        } else if (header_is(line, e, "connection:")) {
            if (value_has_token(v, e, "close"))
                ka = false;
            else if (value_has_token(v, e, "keep-alive"))
                ka = true;
        }
        p = nl;
    }
    bool no_body = code < 200 || code == 204 || code == 304;
    if (!no_body && !has_len)
        return TERN_EPROTO; /* a body up to the end of the connection: not for keep-alive */
    *status = code;
    *head_len = end;
    *body_len = no_body ? 0 : (size_t)clen;
    *keep_alive = ka;
    return 0;
}

void tern_sim_judge(const uint64_t *stored, size_t n_metrics, uint64_t acked, uint64_t uncertain,
    tern_sim_verdict *v)
{
    for (size_t i = 0; i < n_metrics; i++) {
        v->acked_points += acked;
        v->stored_points += stored[i];
        v->uncertain_points += uncertain;
        if (stored[i] < acked)
            v->lost_points += acked - stored[i];
        else if (stored[i] > acked + uncertain)
            v->duplicated_points += stored[i] - acked - uncertain;
    }
}

/* ---- processes --------------------------------------------------------------------------- */

int tern_sim_processes_plan(uint32_t n_devices, uint32_t asked, uint64_t fd_limit, uint32_t *out)
{
    if (n_devices == 0 || fd_limit <= TERN_SIM_FD_RESERVE)
        return TERN_EINVAL;
    if (asked == 0) {
        uint64_t per = fd_limit / 4 * 3;
        uint64_t n = (n_devices + per - 1) / per;
        if (n > 1024 || n > n_devices)
            return TERN_EINVAL;
        *out = (uint32_t)n;
        return 0;
    }
    if (asked > 1024 || asked > n_devices)
        return TERN_EINVAL;
    uint64_t share = ((uint64_t)n_devices + asked - 1) / asked;
    if (share + TERN_SIM_FD_RESERVE > fd_limit)
        return TERN_EINVAL;
    *out = asked;
    return 0;
}

void tern_sim_slice(
    uint32_t n_devices, uint32_t n_procs, uint32_t k, uint32_t *first, uint32_t *count)
{
    uint64_t lo = (uint64_t)k * n_devices / n_procs;
    uint64_t hi = (uint64_t)(k + 1) * n_devices / n_procs;
    *first = (uint32_t)lo + 1;
    *count = (uint32_t)(hi - lo);
}

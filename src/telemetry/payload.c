/*
 * payload.c: the telemetry payload codecs behind payload.h (JSON, binary version 1, topics).
 *
 * The layout of every form is specified in docs/formats/telemetry-payload.md; this file follows
 * it section by section:
 *   1. errors and names: the reason strings (stable: the stream puts them on its dead-letter
 *      topic), metric-name and UTF-8 checks;
 *   2. schemas: the built-in EV / meter / industrial metric tables (the order and decimals of
 *      src/sim/profile.c);
 *   3. the decoder object and its reusable points array;
 *   4. a strict, bounded JSON reader (RFC 8259 grammar; integers exact as int64/uint64, floats by
 *      strtod on a copied NUL-terminated token) and the sample / single / summary decoders;
 *   5. the binary decoder (0xB1, flags, schema id, per-sample presence bitmaps, zigzag varint
 *      mantissas, delta-coded ts/seq in batches);
 *   6. the encoders (JSON prints the shortest decimal that parses back to the same double);
 *   7. topics.
 * A payload is decoded in one pass into the decoder's array; the points of a JSON sample get
 * their ts/seq when the sample's object closes (keys may come in any order). Any error empties
 * the array, so a payload is accepted whole or not at all.
 */
#include "telemetry/payload.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/varint.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ==== 1. errors and names ==== */

static void set_errv(tern_payload_error *err, int code, size_t offset, const char *prefix,
    const char *fmt, va_list ap) __attribute__((format(printf, 5, 0)));

static void set_errv(tern_payload_error *err, int code, size_t offset, const char *prefix,
    const char *fmt, va_list ap)
{
    err->code = code;
    err->offset = offset;
    int n = snprintf(err->reason, sizeof err->reason, "%s", prefix ? prefix : "");
    if (n < 0 || (size_t)n >= sizeof err->reason)
        return;
    vsnprintf(err->reason + n, sizeof err->reason - (size_t)n, fmt, ap);
}

static int set_err(tern_payload_error *err, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int set_err(tern_payload_error *err, int code, size_t offset, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_errv(err, code, offset, NULL, fmt, ap);
    va_end(ap);
    return code;
}

/*
 * quote copies at most 40 bytes of s into dst (cap >= 48) for a reason string: bytes outside
 * printable ASCII and quotes become '?', and "..." marks a cut.
 */
static const char *quote(char *dst, size_t cap, const void *s, size_t n)
{
    const uint8_t *b = s;
    size_t k = n > 40 ? 40 : n, o = 0;
    for (size_t i = 0; i < k && o + 1 < cap; i++)
        dst[o++] = (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\'' && b[i] != '"') ? (char)b[i] : '?';
    if (k < n && o + 4 < cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
    return dst;
}

static bool name_char(uint8_t c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
        || c == '.' || c == ':' || c == '-';
}

bool tern_payload_metric_name_check(const char *name, size_t len)
{
    if (len == 0 || len > TERN_PAYLOAD_MAX_NAME)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!name_char((uint8_t)name[i]))
            return false;
    return true;
}

/*
 * utf8_seq returns the length (1..4) of the well-formed UTF-8 sequence at s[0..n), or 0.
 * Refuses overlong forms, surrogates and code points above U+10FFFF.
 */
static size_t utf8_seq(const uint8_t *s, size_t n)
{
    uint8_t c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07u;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF))
        || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

/* ==== 2. schemas ==== */

static const tern_payload_schema_metric k_ev[] = {
    { "soc", 1 },
    { "speed", 1 },
    { "current", 1 },
    { "power", 2 },
    { "voltage", 1 },
    { "cell_temp", 1 },
    { "pack_temp", 1 },
    { "motor_temp", 1 },
    { "cabin_temp", 1 },
    { "ambient_temp", 1 },
    { "lat", 6 },
    { "lon", 6 },
    { "heading", 1 },
    { "odometer", 2 },
    { "tire_pressure", 2 },
    { "throttle", 0 },
    { "charge_power", 1 },
    { "uptime_s", -1 },
    { "trip_count", -1 },
    { "msg_seq", -1 },
};

static const tern_payload_schema_metric k_meter[] = {
    { "voltage", 1 },
    { "current", 2 },
    { "power_factor", 2 },
    { "active_power", 3 },
    { "reactive_power", 3 },
    { "frequency", 3 },
    { "energy_import", 3 },
    { "voltage_thd", 1 },
    { "meter_temp", 1 },
    { "msg_seq", -1 },
};

static const tern_payload_schema_metric k_industrial[] = {
    { "rpm", 0 },
    { "vibration_rms", 2 },
    { "bearing_temp", 1 },
    { "motor_temp", 1 },
    { "inlet_pressure", 2 },
    { "outlet_pressure", 2 },
    { "flow", 1 },
    { "power", 1 },
    { "run_seconds", -1 },
    { "start_count", -1 },
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const tern_payload_schema k_builtin[] = {
    { TERN_PAYLOAD_SCHEMA_EV, "ev", N_OF(k_ev), k_ev },
    { TERN_PAYLOAD_SCHEMA_METER, "meter", N_OF(k_meter), k_meter },
    { TERN_PAYLOAD_SCHEMA_INDUSTRIAL, "industrial", N_OF(k_industrial), k_industrial },
};

static const tern_payload_schema *const k_builtin_list[] = {
    &k_builtin[0],
    &k_builtin[1],
    &k_builtin[2],
};

const tern_payload_schema *tern_payload_schema_builtin(uint32_t id)
{
    for (size_t i = 0; i < N_OF(k_builtin); i++)
        if (k_builtin[i].id == id)
            return &k_builtin[i];
    return NULL;
}

const tern_payload_schema *tern_payload_schema_by_name(const char *name)
{
    for (size_t i = 0; name && i < N_OF(k_builtin); i++)
        if (strcmp(k_builtin[i].name, name) == 0)
            return &k_builtin[i];
    return NULL;
}

int tern_payload_schema_check(const tern_payload_schema *s)
{
    if (!s || !s->metrics || s->n_metrics == 0 || s->n_metrics > TERN_PAYLOAD_MAX_METRICS)
        return TERN_EINVAL;
    for (size_t i = 0; i < s->n_metrics; i++) {
        const tern_payload_schema_metric *m = &s->metrics[i];
        if (!m->name || !tern_payload_metric_name_check(m->name, strlen(m->name)))
            return TERN_EINVAL;
        if (m->decimals < -1 || m->decimals > TERN_PAYLOAD_MAX_DECIMALS)
            return TERN_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (strcmp(s->metrics[j].name, m->name) == 0)
                return TERN_EINVAL;
    }
    return 0;
}

int tern_payload_schema_find(const tern_payload_schema *s, const char *name, size_t len)
{
    for (size_t i = 0; i < s->n_metrics; i++) {
        const char *n = s->metrics[i].name;
        if (strncmp(n, name, len) == 0 && n[len] == '\0')
            return (int)i;
    }
    return -1;
}

/* ==== 3. the decoder ==== */

int tern_payload_decoder_init(
    tern_payload_decoder *d, const tern_payload_schema *const *schemas, size_t n_schemas)
{
    memset(d, 0, sizeof *d);
    if (!schemas) {
        d->schemas = k_builtin_list;
        d->n_schemas = N_OF(k_builtin_list);
        return 0;
    }
    for (size_t i = 0; i < n_schemas; i++) {
        if (tern_payload_schema_check(schemas[i]) != 0)
            return TERN_EINVAL;
        for (size_t j = 0; j < i; j++)
            if (schemas[j]->id == schemas[i]->id)
                return TERN_EINVAL;
    }
    d->schemas = schemas;
    d->n_schemas = n_schemas;
    return 0;
}

void tern_payload_decoder_free(tern_payload_decoder *d)
{
    tern_free(d->points);
    d->points = NULL;
    d->n_points = 0;
    d->cap_points = 0;
}

/* The state of one decode: the input, the output decoder and the error being built. */
typedef struct dctx {
    const uint8_t *p;
    size_t len;
    size_t pos;
    tern_payload_decoder *d;
    tern_payload_error *err;
    uint32_t sample;   /* index of the current sample */
    bool in_batch;     /* reasons get a "batch[i]: " prefix */
    size_t first_pt;   /* first point of the current sample */
    size_t sample_pts; /* points of the current sample so far */
} dctx;

static int fail_at(dctx *c, int code, size_t offset, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static int fail_at(dctx *c, int code, size_t offset, const char *fmt, ...)
{
    char prefix[32] = "";
    if (c->in_batch)
        snprintf(prefix, sizeof prefix, "batch[%" PRIu32 "]: ", c->sample);
    va_list ap;
    va_start(ap, fmt);
    set_errv(c->err, code, offset, prefix, fmt, ap);
    va_end(ap);
    return code;
}

#define FAIL(c, ...) fail_at((c), TERN_EPROTO, (c)->pos, __VA_ARGS__)

/* push_point appends a zeroed point named name[0..len) to the current sample; *out set. */
static int push_point(dctx *c, const char *name, size_t len, tern_payload_point **out)
{
    tern_payload_decoder *d = c->d;
    if (c->sample_pts >= TERN_PAYLOAD_MAX_METRICS)
        return FAIL(c, "sample has more than %d metrics", TERN_PAYLOAD_MAX_METRICS);
    if (d->n_points >= TERN_PAYLOAD_MAX_POINTS)
        return FAIL(c, "payload has more than %d points", TERN_PAYLOAD_MAX_POINTS);
    if (d->n_points == d->cap_points) {
        size_t cap = d->cap_points ? d->cap_points * 2 : 32;
        tern_payload_point *np = tern_realloc(d->points, cap * sizeof *np);
        if (!np)
            return fail_at(c, TERN_ENOMEM, c->pos, "out of memory");
        d->points = np;
        d->cap_points = cap;
    }
    tern_payload_point *pt = &d->points[d->n_points++];
    memset(pt, 0, sizeof *pt);
    pt->metric = name;
    pt->metric_len = len;
    pt->sample = c->sample;
    c->sample_pts++;
    *out = pt;
    return 0;
}

/* is_dup reports whether name[0..len) already names a point of the current sample. */
static bool is_dup(const dctx *c, const char *name, size_t len)
{
    const tern_payload_point *pts = c->d->points;
    for (size_t i = c->first_pt; i < c->d->n_points; i++)
        if (pts[i].metric_len == len && memcmp(pts[i].metric, name, len) == 0)
            return true;
    return false;
}

static void begin_sample(dctx *c, uint32_t index)
{
    c->sample = index;
    c->first_pt = c->d->n_points;
    c->sample_pts = 0;
}

/* finish_sample gives every point of the current sample its ts/seq (and window end). */
static void finish_sample(dctx *c, int64_t ts_ms, uint64_t seq, int64_t end_ms)
{
    for (size_t i = c->first_pt; i < c->d->n_points; i++) {
        c->d->points[i].ts_ms = ts_ms;
        c->d->points[i].seq = seq;
        c->d->points[i].end_ms = end_ms;
    }
}

/* ==== 4. JSON ==== */

static void j_ws(dctx *c)
{
    while (c->pos < c->len) {
        uint8_t b = c->p[c->pos];
        if (b != ' ' && b != '\t' && b != '\n' && b != '\r')
            break;
        c->pos++;
    }
}

/* j_peek skips whitespace and returns the next byte, or -1 at the end of the input. */
static int j_peek(dctx *c)
{
    j_ws(c);
    return c->pos < c->len ? c->p[c->pos] : -1;
}

static int j_expect(dctx *c, char ch)
{
    int b = j_peek(c);
    if (b < 0)
        return FAIL(c, "json: unexpected end of input, expected '%c'", ch);
    if (b != ch)
        return FAIL(c, "json: expected '%c'", ch);
    c->pos++;
    return 0;
}

static int hexval(uint8_t b)
{
    if (b >= '0' && b <= '9')
        return b - '0';
    if (b >= 'a' && b <= 'f')
        return b - 'a' + 10;
    if (b >= 'A' && b <= 'F')
        return b - 'A' + 10;
    return -1;
}

/* j_u4 reads the 4 hex digits after "\u" at c->pos into *cp. */
static int j_u4(dctx *c, uint32_t *cp)
{
    if (c->len - c->pos < 4)
        return FAIL(c, "json: unexpected end of input in string");
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(c->p[c->pos + (size_t)i]);
        if (h < 0)
            return FAIL(c, "json: invalid \\u escape");
        v = (v << 4) | (uint32_t)h;
    }
    c->pos += 4;
    *cp = v;
    return 0;
}

/*
 * j_string reads a string at c->pos (which must be '"'): the grammar, escapes (surrogates must
 * pair), no raw control characters, well-formed UTF-8. *s and *n are the raw bytes between the
 * quotes; *escaped says whether they contain a backslash.
 */
static int j_string(dctx *c, const uint8_t **s, size_t *n, bool *escaped)
{
    c->pos++; /* the opening quote */
    size_t start = c->pos;
    bool esc = false;
    for (;;) {
        if (c->pos >= c->len)
            return FAIL(c, "json: unexpected end of input in string");
        uint8_t b = c->p[c->pos];
        if (b == '"')
            break;
        if (b < 0x20)
            return FAIL(c, "json: control character in string");
        if (b == '\\') {
            esc = true;
            if (c->len - c->pos < 2)
                return FAIL(c, "json: unexpected end of input in string");
            uint8_t e = c->p[c->pos + 1];
            c->pos += 2;
            if (e == 'u') {
                uint32_t cp;
                int rc = j_u4(c, &cp);
                if (rc)
                    return rc;
                if (cp >= 0xDC00 && cp <= 0xDFFF)
                    return FAIL(c, "json: lone surrogate in string");
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (c->len - c->pos < 2 || c->p[c->pos] != '\\' || c->p[c->pos + 1] != 'u')
                        return FAIL(c, "json: lone surrogate in string");
                    c->pos += 2;
                    if ((rc = j_u4(c, &cp)) != 0)
                        return rc;
                    if (cp < 0xDC00 || cp > 0xDFFF)
                        return FAIL(c, "json: lone surrogate in string");
                }
            } else if (!strchr("\"\\/bfnrt", e) || e == '\0') {
                c->pos -= 2;
                return FAIL(c, "json: invalid escape in string");
            }
            continue;
        }
        size_t k = utf8_seq(c->p + c->pos, c->len - c->pos);
        if (k == 0)
            return FAIL(c, "json: invalid UTF-8 in string");
        c->pos += k;
    }
    *s = c->p + start;
    *n = c->pos - start;
    *escaped = esc;
    c->pos++; /* the closing quote */
    return 0;
}

/* A JSON number token: an integer (sign + magnitude, maybe beyond 64 bits) or a float. */
typedef struct jnum {
    bool is_int;
    bool neg;
    bool too_big; /* integer magnitude >= 2^64 */
    uint64_t mag;
    double f; /* float value (may be +-inf when out of range) */
} jnum;

static bool is_digit(int b)
{
    return b >= '0' && b <= '9';
}

/* j_number reads a number at c->pos by RFC 8259's grammar. */
static int j_number(dctx *c, jnum *out)
{
    size_t start = c->pos, i = c->pos;
    jnum t = { .is_int = true };
    if (i < c->len && c->p[i] == '-') {
        t.neg = true;
        i++;
    }
    if (i >= c->len || !is_digit(c->p[i]))
        return FAIL(c, "json: invalid number");
    if (c->p[i] == '0') {
        i++;
        if (i < c->len && is_digit(c->p[i]))
            return FAIL(c, "json: invalid number (leading zero)");
    } else {
        while (i < c->len && is_digit(c->p[i])) {
            uint64_t dgt = (uint64_t)(c->p[i] - '0');
            if (t.mag > (UINT64_MAX - dgt) / 10)
                t.too_big = true;
            else
                t.mag = t.mag * 10 + dgt;
            i++;
        }
    }
    if (i < c->len && c->p[i] == '.') {
        t.is_int = false;
        i++;
        if (i >= c->len || !is_digit(c->p[i]))
            return FAIL(c, "json: invalid number");
        while (i < c->len && is_digit(c->p[i]))
            i++;
    }
    if (i < c->len && (c->p[i] == 'e' || c->p[i] == 'E')) {
        t.is_int = false;
        i++;
        if (i < c->len && (c->p[i] == '+' || c->p[i] == '-'))
            i++;
        if (i >= c->len || !is_digit(c->p[i]))
            return FAIL(c, "json: invalid number");
        while (i < c->len && is_digit(c->p[i]))
            i++;
    }
    if (i - start > TERN_PAYLOAD_MAX_NUMBER)
        return FAIL(c, "json: number longer than %d characters", TERN_PAYLOAD_MAX_NUMBER);
    if (!t.is_int) {
        char tok[TERN_PAYLOAD_MAX_NUMBER + 1];
        memcpy(tok, c->p + start, i - start);
        tok[i - start] = '\0';
        char *end = NULL;
        t.f = strtod(tok, &end);
        if (end != tok + (i - start))
            return FAIL(c, "json: invalid number");
    }
    c->pos = i;
    *out = t;
    return 0;
}

/* what_is names the JSON value starting with byte b, for "... is a string" reasons. */
static const char *what_is(int b)
{
    switch (b) {
    case '"':
        return "a string";
    case '{':
        return "an object";
    case '[':
        return "an array";
    case 't':
    case 'f':
        return "a boolean";
    case 'n':
        return "null";
    case -1:
        return "missing";
    default:
        return "not a number";
    }
}

static int j_skip(dctx *c, int depth);

static int j_literal(dctx *c, const char *word)
{
    size_t n = strlen(word);
    if (c->len - c->pos < n || memcmp(c->p + c->pos, word, n) != 0)
        return FAIL(c, "json: invalid literal");
    c->pos += n;
    return 0;
}

/*
 * j_key reads the next member name of an object whose '{' was consumed, and the ':' after it.
 * *more is false at the closing '}' (consumed). *first tracks the first member (no ',').
 */
static int j_key(dctx *c, bool *first, const uint8_t **key, size_t *klen, bool *more)
{
    int b = j_peek(c);
    if (b < 0)
        return FAIL(c, "json: unexpected end of input in object");
    if (b == '}' && *first) {
        c->pos++;
        *more = false;
        return 0;
    }
    if (!*first) {
        if (b == '}') {
            c->pos++;
            *more = false;
            return 0;
        }
        if (b != ',')
            return FAIL(c, "json: expected ',' or '}'");
        c->pos++;
        b = j_peek(c);
    }
    if (b != '"')
        return FAIL(c, b < 0 ? "json: unexpected end of input in object" : "json: expected '\"'");
    size_t at = c->pos;
    bool esc;
    int rc = j_string(c, key, klen, &esc);
    if (rc)
        return rc;
    if (esc)
        return fail_at(c, TERN_EPROTO, at, "json: object key uses escapes");
    if ((rc = j_expect(c, ':')) != 0)
        return rc;
    *first = false;
    *more = true;
    return 0;
}

static int j_skip(dctx *c, int depth)
{
    if (depth > TERN_PAYLOAD_MAX_DEPTH)
        return FAIL(c, "json: nesting deeper than %d", TERN_PAYLOAD_MAX_DEPTH);
    int b = j_peek(c);
    const uint8_t *s;
    size_t n;
    bool esc, first = true, more;
    jnum num;
    int rc;
    switch (b) {
    case -1:
        return FAIL(c, "json: unexpected end of input");
    case '"':
        return j_string(c, &s, &n, &esc);
    case '{':
        c->pos++;
        for (;;) {
            if ((rc = j_key(c, &first, &s, &n, &more)) != 0)
                return rc;
            if (!more)
                return 0;
            if ((rc = j_skip(c, depth + 1)) != 0)
                return rc;
        }
    case '[':
        c->pos++;
        if (j_peek(c) == ']') {
            c->pos++;
            return 0;
        }
        for (;;) {
            if ((rc = j_skip(c, depth + 1)) != 0)
                return rc;
            b = j_peek(c);
            if (b == ']') {
                c->pos++;
                return 0;
            }
            if (b != ',')
                return FAIL(c,
                    b < 0 ? "json: unexpected end of input in array" : "json: expected ',' or ']'");
            c->pos++;
        }
    case 't':
        return j_literal(c, "true");
    case 'f':
        return j_literal(c, "false");
    case 'n':
        return j_literal(c, "null");
    default:
        return j_number(c, &num);
    }
}

static bool key_is(const uint8_t *k, size_t n, const char *lit)
{
    return strlen(lit) == n && memcmp(k, lit, n) == 0;
}

/*
 * j_value reads a metric value (what names it, e.g. "metric 'soc'", "'v'"): a JSON number, an
 * int64 if it is an integer token, else a finite float64.
 */
static int j_value(dctx *c, const char *what, tern_payload_value *out)
{
    int b = j_peek(c);
    if (b != '-' && !is_digit(b)) {
        if (b < 0)
            return FAIL(c, "json: unexpected end of input");
        return FAIL(c, "%s value is %s", what, what_is(b));
    }
    size_t at = c->pos;
    jnum t;
    int rc = j_number(c, &t);
    if (rc)
        return rc;
    if (t.is_int) {
        if (t.too_big || t.mag > (t.neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
            return fail_at(c, TERN_EPROTO, at, "%s integer out of int64 range", what);
        out->is_int = true;
        out->i = t.neg ? (int64_t)(0 - t.mag) : (int64_t)t.mag;
        return 0;
    }
    if (!isfinite(t.f))
        return fail_at(c, TERN_EPROTO, at, "%s value out of float64 range", what);
    out->is_int = false;
    out->f = t.f;
    return 0;
}

/* j_int reads an integer field ('ts', 'end', 'ver') as int64. */
static int j_int(dctx *c, const char *field, int64_t *out)
{
    int b = j_peek(c);
    if (b != '-' && !is_digit(b))
        return FAIL(c, "'%s' is %s", field, b < 0 ? "missing a value" : what_is(b));
    size_t at = c->pos;
    jnum t;
    int rc = j_number(c, &t);
    if (rc)
        return rc;
    if (!t.is_int)
        return fail_at(c, TERN_EPROTO, at, "'%s' is not an integer", field);
    if (t.too_big || t.mag > (t.neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX))
        return fail_at(c, TERN_EPROTO, at, "'%s' out of int64 range", field);
    *out = t.neg ? (int64_t)(0 - t.mag) : (int64_t)t.mag;
    return 0;
}

/* j_uint reads an unsigned integer field ('seq', 'count') as uint64. */
static int j_uint(dctx *c, const char *field, uint64_t *out)
{
    int b = j_peek(c);
    if (b != '-' && !is_digit(b))
        return FAIL(c, "'%s' is %s", field, b < 0 ? "missing a value" : what_is(b));
    size_t at = c->pos;
    jnum t;
    int rc = j_number(c, &t);
    if (rc)
        return rc;
    if (!t.is_int)
        return fail_at(c, TERN_EPROTO, at, "'%s' is not an integer", field);
    if (t.neg && t.mag != 0)
        return fail_at(c, TERN_EPROTO, at, "'%s' is negative", field);
    if (t.too_big)
        return fail_at(c, TERN_EPROTO, at, "'%s' out of uint64 range", field);
    *out = t.mag;
    return 0;
}

/* j_version reads "ver": 1 is accepted, another integer is TERN_EVERSION. */
static int j_version(dctx *c)
{
    size_t at = c->pos;
    int64_t ver;
    int rc = j_int(c, "ver", &ver);
    if (rc)
        return rc;
    if (ver != 1)
        return fail_at(c, TERN_EVERSION, at, "json: unsupported version %" PRId64, ver);
    return 0;
}

/* j_dup_key refuses a known key seen twice in one object. */
static int j_dup_key(dctx *c, bool *seen, const char *key)
{
    if (*seen)
        return FAIL(c, "duplicate key '%s'", key);
    *seen = true;
    return 0;
}

/* j_metric_name checks a member name of "m" and refuses a repeat within the sample. */
static int j_metric_name(dctx *c, size_t at, const uint8_t *k, size_t n)
{
    char q[48];
    if (!tern_payload_metric_name_check((const char *)k, n))
        return fail_at(c, TERN_EPROTO, at, "invalid metric name '%s'", quote(q, sizeof q, k, n));
    if (is_dup(c, (const char *)k, n))
        return fail_at(c, TERN_EPROTO, at, "duplicate metric '%s'", quote(q, sizeof q, k, n));
    return 0;
}

/* j_metrics reads the "m" object of a sample into points of the current sample. */
static int j_metrics(dctx *c)
{
    int b = j_peek(c);
    if (b != '{')
        return FAIL(c, "'m' is %s", b < 0 ? "missing a value" : what_is(b));
    c->pos++;
    bool first = true, more;
    for (;;) {
        const uint8_t *k;
        size_t n;
        size_t at = c->pos;
        int rc = j_key(c, &first, &k, &n, &more);
        if (rc)
            return rc;
        if (!more)
            break;
        if ((rc = j_metric_name(c, at, k, n)) != 0)
            return rc;
        char what[64], q[48];
        snprintf(what, sizeof what, "metric '%s'", quote(q, sizeof q, k, n));
        tern_payload_point *pt;
        if ((rc = push_point(c, (const char *)k, n, &pt)) != 0)
            return rc;
        if ((rc = j_value(c, what, &pt->v)) != 0)
            return rc;
    }
    if (c->sample_pts == 0)
        return FAIL(c, "'m' has no metrics");
    return 0;
}

/*
 * j_sample reads one sample object {"ts","seq","m"} (at the top level, also "ver" and "batch";
 * batch is set when a "batch" member was read instead).
 */
static int j_batch(dctx *c);

static int j_sample(dctx *c, bool top, bool *batch)
{
    size_t open = c->pos;
    int rc = j_expect(c, '{');
    if (rc)
        return rc;
    bool first = true, more;
    bool seen_ts = false, seen_seq = false, seen_m = false, seen_ver = false, seen_batch = false;
    int64_t ts = 0;
    uint64_t seq = 0;
    begin_sample(c, c->sample);
    for (;;) {
        const uint8_t *k;
        size_t n;
        if ((rc = j_key(c, &first, &k, &n, &more)) != 0)
            return rc;
        if (!more)
            break;
        if (key_is(k, n, "ts")) {
            if ((rc = j_dup_key(c, &seen_ts, "ts")) != 0 || (rc = j_int(c, "ts", &ts)) != 0)
                return rc;
        } else if (key_is(k, n, "seq")) {
            if ((rc = j_dup_key(c, &seen_seq, "seq")) != 0 || (rc = j_uint(c, "seq", &seq)) != 0)
                return rc;
        } else if (key_is(k, n, "m")) {
            if ((rc = j_dup_key(c, &seen_m, "m")) != 0 || (rc = j_metrics(c)) != 0)
                return rc;
        } else if (top && key_is(k, n, "ver")) {
            if ((rc = j_dup_key(c, &seen_ver, "ver")) != 0 || (rc = j_version(c)) != 0)
                return rc;
        } else if (top && key_is(k, n, "batch")) {
            if ((rc = j_dup_key(c, &seen_batch, "batch")) != 0 || (rc = j_batch(c)) != 0)
                return rc;
        } else if ((rc = j_skip(c, 2)) != 0) {
            return rc;
        }
    }
    if (seen_batch) {
        if (seen_ts || seen_seq || seen_m)
            return fail_at(
                c, TERN_EPROTO, open, "'batch' cannot be combined with 'ts', 'seq' or 'm'");
        *batch = true;
        return 0;
    }
    if (!seen_ts)
        return fail_at(c, TERN_EPROTO, open, "missing 'ts'");
    if (!seen_seq)
        return fail_at(c, TERN_EPROTO, open, "missing 'seq'");
    if (!seen_m)
        return fail_at(c, TERN_EPROTO, open, "missing 'm'");
    finish_sample(c, ts, seq, ts);
    return 0;
}

/* j_batch reads the array of a "batch" member: 1..4096 sample objects. */
static int j_batch(dctx *c)
{
    int b = j_peek(c);
    if (b != '[')
        return FAIL(c, "'batch' is %s, expected an array",
            b < 0 ? "missing a value" : (b == '{' ? "an object" : what_is(b)));
    c->pos++;
    if (j_peek(c) == ']')
        return FAIL(c, "'batch' is empty");
    bool dummy = false;
    c->in_batch = true;
    for (uint32_t i = 0;; i++) {
        if (i >= TERN_PAYLOAD_MAX_BATCH) {
            c->in_batch = false;
            return FAIL(c, "'batch' has more than %d samples", TERN_PAYLOAD_MAX_BATCH);
        }
        c->sample = i;
        if (j_peek(c) != '{')
            return FAIL(c, "sample is %s, expected an object", what_is(j_peek(c)));
        int rc = j_sample(c, false, &dummy);
        if (rc)
            return rc;
        b = j_peek(c);
        if (b == ']') {
            c->pos++;
            break;
        }
        if (b != ',')
            return FAIL(
                c, b < 0 ? "json: unexpected end of input in array" : "json: expected ',' or ']'");
        c->pos++;
    }
    c->in_batch = false;
    c->sample = 0;
    return 0;
}

static int j_end(dctx *c)
{
    if (j_peek(c) >= 0)
        return FAIL(c, "json: trailing bytes after the value");
    return 0;
}

static int decode_json_sample(dctx *c)
{
    bool batch = false;
    if (j_peek(c) != '{')
        return FAIL(c, "json: expected '{'");
    int rc = j_sample(c, true, &batch);
    return rc ? rc : j_end(c);
}

static int decode_json_single(dctx *c, const char *metric, size_t metric_len, int64_t arrival_ms)
{
    tern_payload_point *pt;
    int rc;
    int b = j_peek(c);
    begin_sample(c, 0);
    if (b == '-' || is_digit(b)) { /* a bare number: arrival time, no sequence */
        if ((rc = push_point(c, metric, metric_len, &pt)) != 0
            || (rc = j_value(c, "'v'", &pt->v)) != 0)
            return rc;
        finish_sample(c, arrival_ms, 0, arrival_ms);
        return j_end(c);
    }
    if (b != '{')
        return FAIL(c, "single value: expected an object or a number");
    size_t open = c->pos;
    c->pos++;
    bool first = true, more;
    bool seen_ts = false, seen_seq = false, seen_v = false, seen_ver = false;
    int64_t ts = 0;
    uint64_t seq = 0;
    tern_payload_value v = { .i = 0 };
    for (;;) {
        const uint8_t *k;
        size_t n;
        if ((rc = j_key(c, &first, &k, &n, &more)) != 0)
            return rc;
        if (!more)
            break;
        if (key_is(k, n, "ts")) {
            if ((rc = j_dup_key(c, &seen_ts, "ts")) != 0 || (rc = j_int(c, "ts", &ts)) != 0)
                return rc;
        } else if (key_is(k, n, "seq")) {
            if ((rc = j_dup_key(c, &seen_seq, "seq")) != 0 || (rc = j_uint(c, "seq", &seq)) != 0)
                return rc;
        } else if (key_is(k, n, "v")) {
            if ((rc = j_dup_key(c, &seen_v, "v")) != 0 || (rc = j_value(c, "'v'", &v)) != 0)
                return rc;
        } else if (key_is(k, n, "ver")) {
            if ((rc = j_dup_key(c, &seen_ver, "ver")) != 0 || (rc = j_version(c)) != 0)
                return rc;
        } else if ((rc = j_skip(c, 2)) != 0) {
            return rc;
        }
    }
    if (!seen_ts)
        return fail_at(c, TERN_EPROTO, open, "missing 'ts'");
    if (!seen_seq)
        return fail_at(c, TERN_EPROTO, open, "missing 'seq'");
    if (!seen_v)
        return fail_at(c, TERN_EPROTO, open, "missing 'v'");
    if ((rc = push_point(c, metric, metric_len, &pt)) != 0)
        return rc;
    pt->v = v;
    finish_sample(c, ts, seq, ts);
    return j_end(c);
}

/* j_agg_num reads one aggregate of a summary metric as a double. */
static int j_agg_num(dctx *c, const char *what, double *out)
{
    tern_payload_value v;
    int rc = j_value(c, what, &v);
    if (rc)
        return rc;
    *out = v.is_int ? (double)v.i : v.f;
    return 0;
}

/* j_agg reads {"min","max","sum","count","last"} of summary metric k[0..n). */
static int j_agg(dctx *c, const uint8_t *k, size_t n, tern_payload_agg *agg)
{
    char q[48], what[96];
    quote(q, sizeof q, k, n);
    int b = j_peek(c);
    if (b != '{')
        return FAIL(c, "summary metric '%s' is %s, expected an object", q,
            b < 0 ? "missing a value" : what_is(b));
    size_t open = c->pos;
    c->pos++;
    static const char *const fields[5] = { "min", "max", "sum", "count", "last" };
    bool seen[5] = { false, false, false, false, false };
    bool first = true, more;
    for (;;) {
        const uint8_t *f;
        size_t fn;
        int rc = j_key(c, &first, &f, &fn, &more);
        if (rc)
            return rc;
        if (!more)
            break;
        int idx = -1;
        for (int i = 0; i < 5; i++)
            if (key_is(f, fn, fields[i]))
                idx = i;
        char fq[48];
        if (idx < 0)
            return FAIL(
                c, "summary metric '%s': unknown field '%s'", q, quote(fq, sizeof fq, f, fn));
        if (seen[idx])
            return FAIL(c, "summary metric '%s': duplicate field '%s'", q, fields[idx]);
        seen[idx] = true;
        snprintf(what, sizeof what, "summary metric '%s' field '%s'", q, fields[idx]);
        switch (idx) {
        case 0:
            rc = j_agg_num(c, what, &agg->min);
            break;
        case 1:
            rc = j_agg_num(c, what, &agg->max);
            break;
        case 2:
            rc = j_agg_num(c, what, &agg->sum);
            break;
        case 3: {
            size_t at = c->pos;
            snprintf(what, sizeof what, "%s.count", q);
            if ((rc = j_uint(c, what, &agg->count)) == 0 && agg->count == 0)
                rc = fail_at(c, TERN_EPROTO, at, "summary metric '%s': count is 0", q);
            break;
        }
        default:
            rc = j_agg_num(c, what, &agg->last);
            break;
        }
        if (rc)
            return rc;
    }
    for (int i = 0; i < 5; i++)
        if (!seen[i])
            return fail_at(c, TERN_EPROTO, open, "summary metric '%s': missing '%s'", q, fields[i]);
    if (!(agg->min <= agg->last && agg->last <= agg->max))
        return fail_at(c, TERN_EPROTO, open, "summary metric '%s': not min <= last <= max", q);
    return 0;
}

static int decode_json_summary(dctx *c)
{
    int rc;
    size_t open = c->pos;
    if ((rc = j_expect(c, '{')) != 0)
        return rc;
    bool first = true, more;
    bool seen_ts = false, seen_end = false, seen_seq = false, seen_m = false, seen_ver = false;
    int64_t ts = 0, end = 0;
    uint64_t seq = 0;
    begin_sample(c, 0);
    for (;;) {
        const uint8_t *k;
        size_t n;
        if ((rc = j_key(c, &first, &k, &n, &more)) != 0)
            return rc;
        if (!more)
            break;
        if (key_is(k, n, "ts")) {
            if ((rc = j_dup_key(c, &seen_ts, "ts")) != 0 || (rc = j_int(c, "ts", &ts)) != 0)
                return rc;
        } else if (key_is(k, n, "end")) {
            if ((rc = j_dup_key(c, &seen_end, "end")) != 0 || (rc = j_int(c, "end", &end)) != 0)
                return rc;
        } else if (key_is(k, n, "seq")) {
            if ((rc = j_dup_key(c, &seen_seq, "seq")) != 0 || (rc = j_uint(c, "seq", &seq)) != 0)
                return rc;
        } else if (key_is(k, n, "ver")) {
            if ((rc = j_dup_key(c, &seen_ver, "ver")) != 0 || (rc = j_version(c)) != 0)
                return rc;
        } else if (key_is(k, n, "m")) {
            if ((rc = j_dup_key(c, &seen_m, "m")) != 0)
                return rc;
            int b = j_peek(c);
            if (b != '{')
                return FAIL(c, "'m' is %s", b < 0 ? "missing a value" : what_is(b));
            c->pos++;
            bool mfirst = true, mmore;
            for (;;) {
                const uint8_t *mk;
                size_t mn;
                size_t at = c->pos;
                if ((rc = j_key(c, &mfirst, &mk, &mn, &mmore)) != 0)
                    return rc;
                if (!mmore)
                    break;
                if ((rc = j_metric_name(c, at, mk, mn)) != 0)
                    return rc;
                tern_payload_point *pt;
                if ((rc = push_point(c, (const char *)mk, mn, &pt)) != 0)
                    return rc;
                if ((rc = j_agg(c, mk, mn, &pt->agg)) != 0)
                    return rc;
                pt->v.is_int = false;
                pt->v.f = pt->agg.last;
            }
            if (c->sample_pts == 0)
                return FAIL(c, "'m' has no metrics");
        } else if ((rc = j_skip(c, 2)) != 0) {
            return rc;
        }
    }
    if (!seen_ts)
        return fail_at(c, TERN_EPROTO, open, "missing 'ts'");
    if (!seen_end)
        return fail_at(c, TERN_EPROTO, open, "missing 'end'");
    if (!seen_seq)
        return fail_at(c, TERN_EPROTO, open, "missing 'seq'");
    if (!seen_m)
        return fail_at(c, TERN_EPROTO, open, "missing 'm'");
    if (end < ts)
        return fail_at(c, TERN_EPROTO, open, "summary 'end' is before 'ts'");
    finish_sample(c, ts, seq, end);
    return j_end(c);
}

/* ==== 5. binary ==== */

#define BIN_FLAG_BATCH 0x01u
#define BIN_FLAG_RAW 0x02u
#define BIN_RAW_F64 0u
#define BIN_RAW_I64 1u

static const double k_pow10[TERN_PAYLOAD_MAX_DECIMALS + 1]
    = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };

static int b_varint(dctx *c, uint64_t *out)
{
    size_t n;
    int rc = tern_varint_decode_u64(c->p + c->pos, c->len - c->pos, out, &n);
    if (rc == TERN_EPARTIAL)
        return FAIL(c, "binary: truncated");
    if (rc)
        return FAIL(c, "binary: invalid varint");
    c->pos += n;
    return 0;
}

static int b_svarint(dctx *c, int64_t *out)
{
    uint64_t u;
    int rc = b_varint(c, &u);
    if (rc == 0)
        *out = tern_varint_unzigzag(u);
    return rc;
}

static int b_bytes(dctx *c, size_t n, const uint8_t **out)
{
    if (c->len - c->pos < n)
        return FAIL(c, "binary: truncated");
    *out = c->p + c->pos;
    c->pos += n;
    return 0;
}

static const tern_payload_schema *find_schema(const tern_payload_decoder *d, uint64_t id)
{
    for (size_t i = 0; i < d->n_schemas; i++)
        if (d->schemas[i]->id == id)
            return d->schemas[i];
    return NULL;
}

static int decode_binary(dctx *c)
{
    uint8_t magic = c->p[0];
    if (magic != TERN_PAYLOAD_BINARY_V1)
        return fail_at(c, TERN_EVERSION, 0, "binary: unsupported version %u", magic & 0x0Fu);
    c->pos = 1;
    const uint8_t *fb = NULL;
    int rc = b_bytes(c, 1, &fb);
    if (rc)
        return rc;
    uint8_t flags = fb[0];
    if (flags & ~(BIN_FLAG_BATCH | BIN_FLAG_RAW))
        return fail_at(c, TERN_EPROTO, 1, "binary: reserved flag bits 0x%02x set",
            flags & ~(BIN_FLAG_BATCH | BIN_FLAG_RAW));
    uint64_t schema_id;
    size_t at = c->pos;
    if ((rc = b_varint(c, &schema_id)) != 0)
        return rc;
    const tern_payload_schema *s = find_schema(c->d, schema_id);
    if (!s)
        return fail_at(
            c, TERN_EPROTO, at, "binary: schema id %" PRIu64 " not registered", schema_id);
    uint64_t n_samples = 1;
    if (flags & BIN_FLAG_BATCH) {
        at = c->pos;
        if ((rc = b_varint(c, &n_samples)) != 0)
            return rc;
        if (n_samples == 0 || n_samples > TERN_PAYLOAD_MAX_BATCH)
            return fail_at(c, TERN_EPROTO, at, "binary: batch of %" PRIu64 " samples (1..%d)",
                n_samples, TERN_PAYLOAD_MAX_BATCH);
        c->in_batch = true;
    }
    size_t nb = (s->n_metrics + 7) / 8;
    int64_t ts = 0;
    uint64_t seq = 0;
    for (uint32_t si = 0; si < n_samples; si++) {
        begin_sample(c, si);
        int64_t dts;
        if ((rc = b_svarint(c, &dts)) != 0)
            return rc;
        ts = (int64_t)((uint64_t)ts + (uint64_t)dts); /* first: ts = 0 + absolute */
        if (si == 0) {
            if ((rc = b_varint(c, &seq)) != 0)
                return rc;
        } else {
            int64_t dseq;
            if ((rc = b_svarint(c, &dseq)) != 0)
                return rc;
            seq += (uint64_t)dseq;
        }
        size_t bm_at = c->pos;
        const uint8_t *present = NULL, *raw = NULL;
        if ((rc = b_bytes(c, nb, &present)) != 0)
            return rc;
        if ((flags & BIN_FLAG_RAW) && (rc = b_bytes(c, nb, &raw)) != 0)
            return rc;
        for (size_t id = s->n_metrics; id < nb * 8; id++)
            if ((unsigned)(present[id / 8] >> (id % 8)) & 1u)
                return fail_at(c, TERN_EPROTO, bm_at,
                    "binary: metric id %zu not in schema %" PRIu32, id, s->id);
        for (size_t id = 0; id < nb * 8; id++) {
            unsigned bit = 1u << (id % 8);
            bool p = present[id / 8] & bit;
            bool r = raw && (raw[id / 8] & bit);
            if (r && !p)
                return fail_at(
                    c, TERN_EPROTO, bm_at + nb, "binary: raw bit set for absent metric id %zu", id);
            if (!p)
                continue;
            const tern_payload_schema_metric *m = &s->metrics[id];
            tern_payload_point *pt;
            if ((rc = push_point(c, m->name, strlen(m->name), &pt)) != 0)
                return rc;
            if (!r) {
                int64_t mant;
                if ((rc = b_svarint(c, &mant)) != 0)
                    return rc;
                if (m->decimals < 0) {
                    pt->v.is_int = true;
                    pt->v.i = mant;
                } else {
                    pt->v.is_int = false;
                    pt->v.f = (double)mant / k_pow10[m->decimals];
                }
                continue;
            }
            const uint8_t *tag = NULL, *bits = NULL;
            at = c->pos;
            if ((rc = b_bytes(c, 1, &tag)) != 0)
                return rc;
            if (tag[0] == BIN_RAW_I64) {
                pt->v.is_int = true;
                if ((rc = b_svarint(c, &pt->v.i)) != 0)
                    return rc;
            } else if (tag[0] == BIN_RAW_F64) {
                if ((rc = b_bytes(c, 8, &bits)) != 0)
                    return rc;
                uint64_t u = 0;
                for (int k = 7; k >= 0; k--)
                    u = (u << 8) | bits[k];
                pt->v.is_int = false;
                memcpy(&pt->v.f, &u, sizeof u);
                if (!isfinite(pt->v.f))
                    return fail_at(
                        c, TERN_EPROTO, at, "binary: metric '%s' value is not finite", m->name);
            } else {
                return fail_at(c, TERN_EPROTO, at, "binary: metric '%s' has unknown raw tag %u",
                    m->name, tag[0]);
            }
        }
        if (c->sample_pts == 0)
            return fail_at(c, TERN_EPROTO, bm_at, "binary: sample has no metrics");
        finish_sample(c, ts, seq, ts);
    }
    c->in_batch = false;
    if (c->pos != c->len)
        return FAIL(c, "binary: %zu trailing bytes", c->len - c->pos);
    return 0;
}

/* ==== decode entry ==== */

int tern_payload_decode(tern_payload_decoder *d, tern_payload_kind kind, const uint8_t *data,
    size_t len, const char *topic_metric, size_t topic_metric_len, int64_t arrival_ms,
    tern_payload_error *err)
{
    tern_payload_error local;
    dctx c = { .p = data, .len = len, .d = d, .err = err ? err : &local };
    c.err->code = 0;
    c.err->offset = 0;
    c.err->reason[0] = '\0';
    d->n_points = 0;
    int rc;
    if (kind != TERN_PAYLOAD_SAMPLE && kind != TERN_PAYLOAD_SINGLE && kind != TERN_PAYLOAD_SUMMARY)
        return set_err(c.err, TERN_EINVAL, 0, "payload kind %d is not decoded", (int)kind);
    if (len == 0) {
        rc = set_err(c.err, TERN_EPROTO, 0, "payload is empty");
        goto fail;
    }
    if (len > TERN_PAYLOAD_MAX_BYTES) {
        rc = set_err(
            c.err, TERN_EPROTO, 0, "payload of %zu bytes exceeds %u", len, TERN_PAYLOAD_MAX_BYTES);
        goto fail;
    }
    bool binary = (data[0] & 0xF0u) == 0xB0u;
    if (binary && kind != TERN_PAYLOAD_SAMPLE) {
        rc = set_err(c.err, TERN_EPROTO, 0, "binary: only the telemetry topic takes binary");
        goto fail;
    }
    switch (kind) {
    case TERN_PAYLOAD_SAMPLE:
        rc = binary ? decode_binary(&c) : decode_json_sample(&c);
        break;
    case TERN_PAYLOAD_SINGLE:
        if (!topic_metric || !tern_payload_metric_name_check(topic_metric, topic_metric_len)) {
            char q[48];
            rc = set_err(c.err, TERN_EPROTO, 0, "invalid topic metric name '%s'",
                topic_metric ? quote(q, sizeof q, topic_metric, topic_metric_len) : "");
            break;
        }
        rc = decode_json_single(&c, topic_metric, topic_metric_len, arrival_ms);
        break;
    default:
        rc = decode_json_summary(&c);
        break;
    }
    if (rc == 0)
        return 0;
fail:
    d->n_points = 0;
    return rc;
}

/* ==== 6. encoders ==== */

/* decimal_mantissa: true if v == m / 10^d exactly (bitwise) for an int64 m with |m| < 2^53. */
static bool decimal_mantissa(double v, int d, int64_t *m)
{
    double k = v * k_pow10[d];
    if (!(k > -9007199254740992.0 && k < 9007199254740992.0))
        return false;
    int64_t r = (int64_t)(k < 0 ? k - 0.5 : k + 0.5);
    double back = (double)r / k_pow10[d];
    if (memcmp(&back, &v, sizeof v) != 0)
        return false;
    *m = r;
    return true;
}

static int append_u64(tern_buf *b, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof tmp - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return tern_buf_append(b, tmp + sizeof tmp - n, n);
}

static int append_i64(tern_buf *b, int64_t v)
{
    if (v < 0) {
        int rc = tern_buf_append_u8(b, '-');
        return rc ? rc : append_u64(b, 0 - (uint64_t)v);
    }
    return append_u64(b, (uint64_t)v);
}

/*
 * append_double prints finite v so that strtod gives back the same double and the token has a
 * '.' or an exponent: a short decimal m/10^d when one is exact, else the shortest %.{1..17}g.
 */
static int append_double(tern_buf *b, double v)
{
    char tmp[40];
    int64_t m;
    for (int d = 0; d <= 6; d++) {
        if (!decimal_mantissa(v, d, &m))
            continue;
        if (m == 0 && signbit(v))
            break;
        uint64_t mag = m < 0 ? 0 - (uint64_t)m : (uint64_t)m;
        char digits[24];
        int nd = snprintf(digits, sizeof digits, "%" PRIu64, mag);
        size_t o = 0;
        if (m < 0)
            tmp[o++] = '-';
        if (d == 0) {
            memcpy(tmp + o, digits, (size_t)nd);
            o += (size_t)nd;
            memcpy(tmp + o, ".0", 2);
            o += 2;
        } else if (nd > d) {
            memcpy(tmp + o, digits, (size_t)(nd - d));
            o += (size_t)(nd - d);
            tmp[o++] = '.';
            memcpy(tmp + o, digits + nd - d, (size_t)d);
            o += (size_t)d;
        } else {
            tmp[o++] = '0';
            tmp[o++] = '.';
            for (int z = 0; z < d - nd; z++)
                tmp[o++] = '0';
            memcpy(tmp + o, digits, (size_t)nd);
            o += (size_t)nd;
        }
        return tern_buf_append(b, tmp, o);
    }
    int n = 0;
    for (int prec = 1; prec <= 17; prec++) { /* rare values only: the shortest exact form */
        n = snprintf(tmp, sizeof tmp - 2, "%.*g", prec, v);
        double back = strtod(tmp, NULL);
        if (memcmp(&back, &v, sizeof v) == 0)
            break;
    }
    if (!strpbrk(tmp, ".eE")) {
        memcpy(tmp + n, ".0", 3);
        n += 2;
    }
    return tern_buf_append(b, tmp, (size_t)n);
}

static int append_value(tern_buf *b, tern_payload_value v)
{
    return v.is_int ? append_i64(b, v.i) : append_double(b, v.f);
}

static bool value_ok(tern_payload_value v)
{
    return v.is_int || isfinite(v.f);
}

static int append_lit(tern_buf *b, const char *s)
{
    return tern_buf_append(b, s, strlen(s));
}

/* check_names: n in 1..256 valid names, no repeats. */
static bool check_names(const char *const *names, size_t n)
{
    if (!names || n == 0 || n > TERN_PAYLOAD_MAX_METRICS)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (!names[i] || !tern_payload_metric_name_check(names[i], strlen(names[i])))
            return false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(names[i], names[j]) == 0)
                return false;
    }
    return true;
}

static int check_samples(const tern_payload_sample *samples, size_t n_samples, bool need_names)
{
    if (!samples || n_samples == 0 || n_samples > TERN_PAYLOAD_MAX_BATCH)
        return TERN_EINVAL;
    size_t total = 0;
    for (size_t s = 0; s < n_samples; s++) {
        const tern_payload_sample *sm = &samples[s];
        if (sm->n_values == 0 || sm->n_values > TERN_PAYLOAD_MAX_METRICS || !sm->values)
            return TERN_EINVAL;
        if ((need_names || sm->names) && !check_names(sm->names, sm->n_values))
            return TERN_EINVAL;
        for (size_t i = 0; i < sm->n_values; i++)
            if (!value_ok(sm->values[i]))
                return TERN_EINVAL;
        total += sm->n_values;
    }
    return total > TERN_PAYLOAD_MAX_POINTS ? TERN_EINVAL : 0;
}

static int append_sample_json(tern_buf *out, const tern_payload_sample *s)
{
    int rc = append_lit(out, "{\"ts\":");
    rc = rc ? rc : append_i64(out, s->ts_ms);
    rc = rc ? rc : append_lit(out, ",\"seq\":");
    rc = rc ? rc : append_u64(out, s->seq);
    rc = rc ? rc : append_lit(out, ",\"m\":{");
    for (size_t i = 0; rc == 0 && i < s->n_values; i++) {
        rc = append_lit(out, i ? ",\"" : "\"");
        rc = rc ? rc : append_lit(out, s->names[i]);
        rc = rc ? rc : append_lit(out, "\":");
        rc = rc ? rc : append_value(out, s->values[i]);
    }
    return rc ? rc : append_lit(out, "}}");
}

int tern_payload_encode_json(tern_buf *out, const tern_payload_sample *samples, size_t n_samples)
{
    int rc = check_samples(samples, n_samples, true);
    if (rc)
        return rc;
    size_t orig = out->len;
    if (n_samples == 1) {
        rc = append_sample_json(out, &samples[0]);
    } else {
        rc = append_lit(out, "{\"batch\":[");
        for (size_t i = 0; rc == 0 && i < n_samples; i++) {
            if (i)
                rc = tern_buf_append_u8(out, ',');
            rc = rc ? rc : append_sample_json(out, &samples[i]);
        }
        rc = rc ? rc : append_lit(out, "]}");
    }
    if (rc)
        out->len = orig;
    return rc;
}

int tern_payload_encode_single(tern_buf *out, int64_t ts_ms, uint64_t seq, tern_payload_value v)
{
    if (!value_ok(v))
        return TERN_EINVAL;
    size_t orig = out->len;
    int rc = append_lit(out, "{\"ts\":");
    rc = rc ? rc : append_i64(out, ts_ms);
    rc = rc ? rc : append_lit(out, ",\"seq\":");
    rc = rc ? rc : append_u64(out, seq);
    rc = rc ? rc : append_lit(out, ",\"v\":");
    rc = rc ? rc : append_value(out, v);
    rc = rc ? rc : tern_buf_append_u8(out, '}');
    if (rc)
        out->len = orig;
    return rc;
}

int tern_payload_encode_summary(tern_buf *out, int64_t start_ms, int64_t end_ms, uint64_t seq,
    const char *const *names, const tern_payload_agg *aggs, size_t n)
{
    if (end_ms < start_ms || !check_names(names, n) || !aggs)
        return TERN_EINVAL;
    for (size_t i = 0; i < n; i++) {
        const tern_payload_agg *a = &aggs[i];
        if (a->count == 0 || !isfinite(a->min) || !isfinite(a->max) || !isfinite(a->sum)
            || !isfinite(a->last) || !(a->min <= a->last && a->last <= a->max))
            return TERN_EINVAL;
    }
    size_t orig = out->len;
    int rc = append_lit(out, "{\"ts\":");
    rc = rc ? rc : append_i64(out, start_ms);
    rc = rc ? rc : append_lit(out, ",\"end\":");
    rc = rc ? rc : append_i64(out, end_ms);
    rc = rc ? rc : append_lit(out, ",\"seq\":");
    rc = rc ? rc : append_u64(out, seq);
    rc = rc ? rc : append_lit(out, ",\"m\":{");
    for (size_t i = 0; rc == 0 && i < n; i++) {
        rc = append_lit(out, i ? ",\"" : "\"");
        rc = rc ? rc : append_lit(out, names[i]);
        rc = rc ? rc : append_lit(out, "\":{\"min\":");
        rc = rc ? rc : append_double(out, aggs[i].min);
        rc = rc ? rc : append_lit(out, ",\"max\":");
        rc = rc ? rc : append_double(out, aggs[i].max);
        rc = rc ? rc : append_lit(out, ",\"sum\":");
        rc = rc ? rc : append_double(out, aggs[i].sum);
        rc = rc ? rc : append_lit(out, ",\"count\":");
        rc = rc ? rc : append_u64(out, aggs[i].count);
        rc = rc ? rc : append_lit(out, ",\"last\":");
        rc = rc ? rc : append_double(out, aggs[i].last);
        rc = rc ? rc : tern_buf_append_u8(out, '}');
    }
    rc = rc ? rc : append_lit(out, "}}");
    if (rc)
        out->len = orig;
    return rc;
}

/* A sample mapped onto schema ids: which are present, raw, and the value of each. */
typedef struct bin_sample {
    uint8_t present[TERN_PAYLOAD_MAX_METRICS / 8];
    uint8_t raw[TERN_PAYLOAD_MAX_METRICS / 8];
    tern_payload_value v[TERN_PAYLOAD_MAX_METRICS];
    int64_t mant[TERN_PAYLOAD_MAX_METRICS];
    bool any_raw;
} bin_sample;

/* bin_map maps one sample onto schema s; TERN_EINVAL for unknown or repeated names. */
static int bin_map(const tern_payload_schema *s, const tern_payload_sample *sm, bin_sample *out)
{
    memset(out->present, 0, sizeof out->present);
    memset(out->raw, 0, sizeof out->raw);
    out->any_raw = false;
    if (!sm->names && sm->n_values != s->n_metrics)
        return TERN_EINVAL;
    for (size_t i = 0; i < sm->n_values; i++) {
        int id = (int)i;
        if (sm->names) {
            id = tern_payload_schema_find(s, sm->names[i], strlen(sm->names[i]));
            if (id < 0)
                return TERN_EINVAL;
        }
        uint8_t bit = (uint8_t)(1u << (id % 8));
        if (out->present[id / 8] & bit)
            return TERN_EINVAL;
        out->present[id / 8] |= bit;
        tern_payload_value v = sm->values[i];
        int d = s->metrics[id].decimals;
        bool packed;
        if (d < 0) {
            packed = v.is_int;
            out->mant[id] = v.i;
        } else {
            packed = !v.is_int && decimal_mantissa(v.f, d, &out->mant[id]);
        }
        if (!packed) {
            out->raw[id / 8] |= bit;
            out->any_raw = true;
        }
        out->v[id] = v;
    }
    return 0;
}

static int bin_append_sample(
    tern_buf *out, const tern_payload_schema *s, const bin_sample *b, bool with_raw)
{
    size_t nb = (s->n_metrics + 7) / 8;
    int rc = tern_buf_append(out, b->present, nb);
    if (rc == 0 && with_raw)
        rc = tern_buf_append(out, b->raw, nb);
    for (size_t id = 0; rc == 0 && id < s->n_metrics; id++) {
        uint8_t bit = (uint8_t)(1u << (id % 8));
        if (!(b->present[id / 8] & bit))
            continue;
        if (!(b->raw[id / 8] & bit)) {
            rc = tern_varint_append_s64(out, b->mant[id]);
        } else if (b->v[id].is_int) {
            rc = tern_buf_append_u8(out, BIN_RAW_I64);
            rc = rc ? rc : tern_varint_append_s64(out, b->v[id].i);
        } else {
            uint64_t u;
            memcpy(&u, &b->v[id].f, sizeof u);
            rc = tern_buf_append_u8(out, BIN_RAW_F64);
            rc = rc ? rc : tern_buf_append_le64(out, u);
        }
    }
    return rc;
}

int tern_payload_encode_binary(tern_buf *out, const tern_payload_schema *s,
    const tern_payload_sample *samples, size_t n_samples)
{
    if (tern_payload_schema_check(s) != 0)
        return TERN_EINVAL;
    int rc = check_samples(samples, n_samples, false);
    if (rc)
        return rc;
    bin_sample scratch; /* ~6 KB on the stack: no allocation per payload */
    bin_sample *b = &scratch;
    bool any_raw = false;
    for (size_t i = 0; i < n_samples; i++) {
        if ((rc = bin_map(s, &samples[i], b)) != 0)
            return rc;
        any_raw = any_raw || b->any_raw;
    }
    size_t orig = out->len;
    uint8_t flags
        = (uint8_t)((n_samples > 1 ? BIN_FLAG_BATCH : 0u) | (any_raw ? BIN_FLAG_RAW : 0u));
    rc = tern_buf_append_u8(out, TERN_PAYLOAD_BINARY_V1);
    rc = rc ? rc : tern_buf_append_u8(out, flags);
    rc = rc ? rc : tern_varint_append_u64(out, s->id);
    if (rc == 0 && n_samples > 1)
        rc = tern_varint_append_u64(out, n_samples);
    for (size_t i = 0; rc == 0 && i < n_samples; i++) {
        const tern_payload_sample *sm = &samples[i];
        if (i == 0) {
            rc = tern_varint_append_s64(out, sm->ts_ms);
            rc = rc ? rc : tern_varint_append_u64(out, sm->seq);
        } else {
            rc = tern_varint_append_s64(
                out, (int64_t)((uint64_t)sm->ts_ms - (uint64_t)samples[i - 1].ts_ms));
            rc = rc ? rc : tern_varint_append_s64(out, (int64_t)(sm->seq - samples[i - 1].seq));
        }
        rc = rc ? rc : bin_map(s, sm, b);
        rc = rc ? rc : bin_append_sample(out, s, b, any_raw);
    }
    if (rc)
        out->len = orig;
    return rc;
}

/* ==== 7. topics ==== */

static const struct {
    const char *word;
    tern_payload_kind kind;
} k_kinds[] = {
    { "telemetry", TERN_PAYLOAD_SAMPLE },
    { "m", TERN_PAYLOAD_SINGLE },
    { "summary", TERN_PAYLOAD_SUMMARY },
    { "event", TERN_PAYLOAD_EVENT },
    { "cmd", TERN_PAYLOAD_CMD },
    { "config", TERN_PAYLOAD_CONFIG },
};

/* device_check: NULL if device[0..n) is a valid device id, else why not. */
static const char *device_check(const uint8_t *s, size_t n)
{
    if (n == 0)
        return "topic: empty device id";
    if (n > TERN_PAYLOAD_MAX_DEVICE)
        return "topic: device id longer than 64 bytes";
    for (size_t i = 0; i < n;) {
        if (s[i] < 0x20 || s[i] == 0x7f)
            return "topic: control character in device id";
        if (s[i] == '+' || s[i] == '#')
            return "topic: wildcard in device id";
        if (s[i] == '/')
            return "topic: '/' in device id";
        size_t k = utf8_seq(s + i, n - i);
        if (k == 0)
            return "topic: device id is not UTF-8";
        if (k == 2 && s[i] == 0xC2 && s[i + 1] < 0xA0)
            return "topic: control character in device id";
        i += k;
    }
    return NULL;
}

int tern_payload_topic_parse(const char *topic, size_t len, const char *root,
    tern_payload_topic *out, tern_payload_error *err)
{
    tern_payload_error local;
    if (!err)
        err = &local;
    if (!root)
        root = "fleet";
    size_t rl = strlen(root);
    const uint8_t *t = (const uint8_t *)topic;
    if (len <= rl || memcmp(topic, root, rl) != 0 || topic[rl] != '/')
        return set_err(err, TERN_EPROTO, 0, "topic: does not start with '%s/'", root);
    size_t dev = rl + 1;
    const uint8_t *slash = memchr(t + dev, '/', len - dev);
    size_t dev_end = slash ? (size_t)(slash - t) : len;
    const char *why = device_check(t + dev, dev_end - dev);
    if (why)
        return set_err(err, TERN_EPROTO, dev, "%s", why);
    if (!slash)
        return set_err(err, TERN_EPROTO, len, "topic: missing kind after the device id");
    size_t kb = dev_end + 1;
    const uint8_t *slash2 = memchr(t + kb, '/', len - kb);
    size_t ke = slash2 ? (size_t)(slash2 - t) : len;
    int found = -1;
    for (size_t i = 0; i < N_OF(k_kinds); i++)
        if (key_is(t + kb, ke - kb, k_kinds[i].word))
            found = (int)i;
    char q[48];
    if (found < 0)
        return set_err(
            err, TERN_EPROTO, kb, "topic: unknown kind '%s'", quote(q, sizeof q, t + kb, ke - kb));
    tern_payload_kind kind = k_kinds[found].kind;
    const char *rest = slash2 ? topic + ke + 1 : NULL;
    size_t rest_len = slash2 ? len - ke - 1 : 0;
    if (kind == TERN_PAYLOAD_SINGLE) {
        if (!slash2 || rest_len == 0)
            return set_err(err, TERN_EPROTO, ke, "topic: missing metric after 'm/'");
        if (memchr(rest, '/', rest_len))
            return set_err(err, TERN_EPROTO, ke + 1, "topic: levels after the metric");
        if (!tern_payload_metric_name_check(rest, rest_len))
            return set_err(err, TERN_EPROTO, ke + 1, "topic: invalid metric name '%s'",
                quote(q, sizeof q, rest, rest_len));
    } else if (kind == TERN_PAYLOAD_CMD) {
        if (!slash2 || rest_len == 0)
            return set_err(err, TERN_EPROTO, ke, "topic: missing levels after 'cmd/'");
        for (size_t i = 0; i < rest_len; i++)
            if ((rest[i] == '/' && (i == 0 || rest[i - 1] == '/' || i + 1 == rest_len))
                || rest[i] == '+' || rest[i] == '#')
                return set_err(
                    err, TERN_EPROTO, ke + 1 + i, "topic: empty level or wildcard after 'cmd/'");
    } else if (slash2) {
        return set_err(err, TERN_EPROTO, ke, "topic: levels after '%s'", k_kinds[found].word);
    }
    out->device = topic + dev;
    out->device_len = dev_end - dev;
    out->kind = kind;
    out->metric = rest;
    out->metric_len = rest_len;
    if (kind != TERN_PAYLOAD_SINGLE && kind != TERN_PAYLOAD_CMD) {
        out->metric = NULL;
        out->metric_len = 0;
    }
    return 0;
}

int tern_payload_topic_format(
    tern_buf *out, const char *root, const char *device, tern_payload_kind kind, const char *metric)
{
    if (!root)
        root = "fleet";
    if (!device || device_check((const uint8_t *)device, strlen(device)) != NULL)
        return TERN_EINVAL;
    const char *word = NULL;
    for (size_t i = 0; i < N_OF(k_kinds); i++)
        if (k_kinds[i].kind == kind)
            word = k_kinds[i].word;
    if (!word)
        return TERN_EINVAL;
    bool with_metric = kind == TERN_PAYLOAD_SINGLE || kind == TERN_PAYLOAD_CMD;
    if (with_metric) {
        size_t ml = metric ? strlen(metric) : 0;
        if (kind == TERN_PAYLOAD_SINGLE
            && !tern_payload_metric_name_check(metric ? metric : "", ml))
            return TERN_EINVAL;
        if (kind == TERN_PAYLOAD_CMD
            && (ml == 0 || metric[0] == '/' || metric[ml - 1] == '/' || strstr(metric, "//")
                || strpbrk(metric, "+#")))
            return TERN_EINVAL;
    }
    size_t orig = out->len;
    int rc = append_lit(out, root);
    rc = rc ? rc : tern_buf_append_u8(out, '/');
    rc = rc ? rc : append_lit(out, device);
    rc = rc ? rc : tern_buf_append_u8(out, '/');
    rc = rc ? rc : append_lit(out, word);
    if (rc == 0 && with_metric) {
        rc = tern_buf_append_u8(out, '/');
        rc = rc ? rc : append_lit(out, metric);
    }
    if (rc)
        out->len = orig;
    return rc;
}

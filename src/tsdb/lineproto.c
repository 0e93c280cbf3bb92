/*
 * lineproto.c: the InfluxDB line-protocol parser and writers declared in lineproto.h.
 *
 * Each call finds the end of the next line with memchr, then parses inside [start, end) only,
 * so a bad line can never make the parser lose its place: the next call starts after it.
 * Names are scanned with 256-byte stop tables (one branch per byte). Floats take an exact fast
 * path (Clinger's: a mantissa of at most 2^53 times or divided by an exact power of ten up to
 * 1e22 is one correctly rounded IEEE operation); anything else (more than 19 significant digits,
 * large exponents) is validated here and then converted by strtod on a bounded stack copy, so
 * strtod never sees hex, "inf" or "nan". tern never calls setlocale, so strtod reads '.'.
 */
#include "tsdb/lineproto.h"

#include "base/error.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Longest number the slow path converts (the token is copied to the stack). */
#define LP_MAX_SLOW_NUMBER 511

/* Bytes that end (or escape inside) a measurement: ',', ' ', '\'. */
static const uint8_t stop_meas[256] = { [','] = 1, [' '] = 1, ['\\'] = 1 };
/* Bytes that end (or escape inside) a tag key, tag value or field key: ',', '=', ' ', '\'. */
static const uint8_t stop_key[256] = { [','] = 1, ['='] = 1, [' '] = 1, ['\\'] = 1 };

static const double pow10_exact[23] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
    1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22 };

void tern_lp_init(tern_lp_parser *p, const char *data, size_t len, tern_lp_precision precision,
    int64_t now_ms, tern_lp_tag *tags, size_t max_tags, tern_lp_field *fields, size_t max_fields)
{
    static const int64_t ns_per[]
        = { 1, 1000, 1000000, 1000000000, 60000000000LL, 3600000000000LL };
    TERN_ASSERT(fields != NULL && max_fields >= 1);
    TERN_ASSERT(max_tags == 0 || tags != NULL);
    TERN_ASSERT((unsigned)precision <= TERN_LP_HOUR);
    TERN_ASSERT(data != NULL || len == 0);
    p->data = data;
    p->len = len;
    p->pos = 0;
    p->line_no = 0;
    p->now_ms = now_ms;
    p->ns_per_unit = ns_per[precision];
    p->tags = tags;
    p->max_tags = max_tags;
    p->fields = fields;
    p->max_fields = max_fields;
}

/* Scans a name from pos to the first unescaped byte of stop[]; a backslash skips the next byte. */
static size_t scan_name(const char *s, size_t pos, size_t end, const uint8_t *stop, bool *escaped)
{
    for (;;) {
        while (pos < end && !stop[(uint8_t)s[pos]])
            pos++;
        if (pos < end && s[pos] == '\\') {
            *escaped = true;
            pos += 2;
            if (pos > end)
                pos = end;
            continue;
        }
        return pos;
    }
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static size_t skip_blanks(const char *s, size_t pos, size_t end)
{
    while (pos < end && is_blank(s[pos]))
        pos++;
    return pos;
}

typedef struct lp_fail {
    int code;
    size_t at;
    const char *reason;
} lp_fail;

static int parse_int_token(const char *s, size_t n, tern_lp_field *f, lp_fail *why)
{
    /* s[0..n) without the 'i' */
    bool neg = n > 0 && s[0] == '-';
    size_t k = neg ? 1 : 0;
    if (k == n) {
        why->reason = "invalid integer";
        return TERN_EPROTO;
    }
    uint64_t v = 0;
    for (; k < n; k++) {
        unsigned d = (unsigned)(uint8_t)s[k] - '0';
        if (d > 9) {
            why->reason = "invalid integer";
            return TERN_EPROTO;
        }
        if (v > (UINT64_MAX - d) / 10) {
            why->reason = "integer value out of range";
            return TERN_ERANGE;
        }
        v = v * 10 + d;
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) {
            why->reason = "integer value out of range";
            return TERN_ERANGE;
        }
        f->v.i = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) {
            why->reason = "integer value out of range";
            return TERN_ERANGE;
        }
        f->v.i = (int64_t)v;
    }
    f->type = TERN_LP_INT;
    return 0;
}

static int parse_uint_token(const char *s, size_t n, tern_lp_field *f, lp_fail *why)
{
    if (n == 0) {
        why->reason = "invalid unsigned integer";
        return TERN_EPROTO;
    }
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) {
        unsigned d = (unsigned)(uint8_t)s[k] - '0';
        if (d > 9) {
            why->reason = "invalid unsigned integer";
            return TERN_EPROTO;
        }
        if (v > (UINT64_MAX - d) / 10) {
            why->reason = "unsigned value out of range";
            return TERN_ERANGE;
        }
        v = v * 10 + d;
    }
    f->type = TERN_LP_UINT;
    f->v.u = v;
    return 0;
}

static int parse_float_token(const char *s, size_t n, tern_lp_field *f, lp_fail *why)
{
    size_t k = 0;
    bool neg = s[0] == '-';
    if (neg)
        k = 1;
    uint64_t mant = 0;
    int n_sig = 0;
    long exp10 = 0;
    bool any_digit = false, inexact = false;
    for (; k < n && (unsigned)(uint8_t)s[k] - '0' <= 9; k++) {
        unsigned d = (unsigned)(uint8_t)s[k] - '0';
        any_digit = true;
        if (n_sig < 19) {
            mant = mant * 10 + d;
            if (mant)
                n_sig++;
        } else {
            if (exp10 < 100000)
                exp10++;
            inexact |= d != 0;
        }
    }
    if (k < n && s[k] == '.') {
        for (k++; k < n && (unsigned)(uint8_t)s[k] - '0' <= 9; k++) {
            unsigned d = (unsigned)(uint8_t)s[k] - '0';
            any_digit = true;
            if (n_sig < 19) {
                mant = mant * 10 + d;
                exp10--;
                if (mant)
                    n_sig++;
            } else {
                inexact |= d != 0;
            }
        }
    }
    if (!any_digit) {
        why->reason = "invalid number";
        return TERN_EPROTO;
    }
    if (k < n && (s[k] == 'e' || s[k] == 'E')) {
        k++;
        bool eneg = false;
        if (k < n && (s[k] == '+' || s[k] == '-'))
            eneg = s[k++] == '-';
        if (k == n) {
            why->reason = "invalid number";
            return TERN_EPROTO;
        }
        long e = 0;
        for (; k < n && (unsigned)(uint8_t)s[k] - '0' <= 9; k++)
            if (e < 100000)
                e = e * 10 + (s[k] - '0');
        exp10 += eneg ? -e : e;
    }
    if (k != n) {
        why->reason = "invalid number";
        return TERN_EPROTO;
    }
    double v;
    if (mant == 0 && !inexact) {
        v = 0.0;
    } else if (!inexact && mant <= (1ULL << 53) && exp10 >= -22 && exp10 <= 22) {
        v = (double)mant;
        v = exp10 < 0 ? v / pow10_exact[-exp10] : v * pow10_exact[exp10];
    } else {
        if (n > LP_MAX_SLOW_NUMBER) {
            why->reason = "invalid number: too long";
            return TERN_EPROTO;
        }
        char tmp[LP_MAX_SLOW_NUMBER + 1];
        memcpy(tmp, s + (neg ? 1 : 0), n - (neg ? 1 : 0));
        tmp[n - (neg ? 1 : 0)] = '\0';
        v = strtod(tmp, NULL);
        if (isinf(v)) {
            why->reason = "float value out of range";
            return TERN_ERANGE;
        }
    }
    f->type = TERN_LP_FLOAT;
    f->v.f = neg ? -v : v;
    return 0;
}

static bool token_is(const char *s, size_t n, const char *lit)
{
    size_t l = strlen(lit);
    return n == l && memcmp(s, lit, l) == 0;
}

/* Parses a non-string field value token s[0..n) (n >= 1). */
static int parse_value_token(const char *s, size_t n, tern_lp_field *f, lp_fail *why)
{
    char c = s[0];
    if (c == 't' || c == 'T' || c == 'f' || c == 'F') {
        static const char *const yes[] = { "t", "T", "true", "True", "TRUE" };
        static const char *const no[] = { "f", "F", "false", "False", "FALSE" };
        for (size_t k = 0; k < 5; k++) {
            if (token_is(s, n, yes[k]) || token_is(s, n, no[k])) {
                f->type = TERN_LP_BOOL;
                f->v.b = token_is(s, n, yes[k]);
                return 0;
            }
        }
        why->reason = "invalid boolean";
        return TERN_EPROTO;
    }
    if (c != '-' && c != '.' && (unsigned)(uint8_t)c - '0' > 9) {
        why->reason = "invalid field value";
        return TERN_EPROTO;
    }
    char last = s[n - 1];
    if (last == 'i')
        return parse_int_token(s, n - 1, f, why);
    if (last == 'u')
        return parse_uint_token(s, n - 1, f, why);
    return parse_float_token(s, n, f, why);
}

static int parse_timestamp(
    const char *s, size_t n, int64_t ns_per_unit, int64_t *ts_ms, lp_fail *why)
{
    bool neg = s[0] == '-';
    size_t k = neg ? 1 : 0;
    if (k == n) {
        why->reason = "bad timestamp";
        return TERN_EPROTO;
    }
    uint64_t v = 0;
    for (; k < n; k++) {
        unsigned d = (unsigned)(uint8_t)s[k] - '0';
        if (d > 9) {
            why->reason = "bad timestamp";
            return TERN_EPROTO;
        }
        if (v > (UINT64_MAX - d) / 10) {
            why->reason = "time outside range";
            return TERN_ERANGE;
        }
        v = v * 10 + d;
    }
    if (v > (uint64_t)INT64_MAX) {
        why->reason = "time outside range";
        return TERN_ERANGE;
    }
    int64_t sv = neg ? -(int64_t)v : (int64_t)v;
    int64_t ns;
    /* InfluxDB's representable range: [INT64_MIN + 2, INT64_MAX - 1] ns. */
    if (__builtin_mul_overflow(sv, ns_per_unit, &ns) || ns < INT64_MIN + 2 || ns > INT64_MAX - 1) {
        why->reason = "time outside range";
        return TERN_ERANGE;
    }
    int64_t ms = ns / 1000000;
    if (ns % 1000000 < 0)
        ms--; /* floor: toward negative infinity */
    *ts_ms = ms;
    return 0;
}

/* Field keys seen in this line, as a 64-bit filter: a repeat costs a scan only on a hit. */
static unsigned key_hash(const char *s, size_t n)
{
    return (unsigned)((n * 7u + (uint8_t)s[0] + (uint8_t)s[n - 1] * 3u) & 63u);
}

/* Parses ls[0..n). Returns 1 with *line set, 0 for a blank/comment line, or a negative code. */
static int parse_line(tern_lp_parser *p, const char *ls, size_t n, tern_lp_line *line, lp_fail *why)
{
    size_t i = skip_blanks(ls, 0, n);
    if (i == n || ls[i] == '#')
        return 0;

    /* measurement */
    size_t start = i;
    bool esc = false;
    i = scan_name(ls, i, n, stop_meas, &esc);
    if (i == start) {
        why->at = i;
        why->reason = "missing measurement";
        return TERN_EPROTO;
    }
    line->measurement = (tern_lp_str) { ls + start, i - start, esc ? TERN_LP_ESC_NAME : 0 };

    /* tags */
    size_t n_tags = 0;
    while (i < n && ls[i] == ',') {
        i++;
        start = i;
        esc = false;
        i = scan_name(ls, i, n, stop_key, &esc);
        if (i == start) {
            why->at = i;
            why->reason = "missing tag key";
            return TERN_EPROTO;
        }
        if (i == n || ls[i] != '=') {
            why->at = i;
            why->reason = "missing tag value";
            return TERN_EPROTO;
        }
        tern_lp_str key = { ls + start, i - start, esc ? TERN_LP_ESC_NAME : 0 };
        i++;
        start = i;
        esc = false;
        i = scan_name(ls, i, n, stop_key, &esc);
        if (i == start) {
            why->at = i;
            why->reason = "missing tag value";
            return TERN_EPROTO;
        }
        if (i < n && ls[i] == '=') {
            why->at = i;
            why->reason = "invalid tag format";
            return TERN_EPROTO;
        }
        if (n_tags == p->max_tags) {
            why->at = start;
            why->reason = "too many tags";
            return TERN_EQUOTA;
        }
        p->tags[n_tags].key = key;
        p->tags[n_tags].value = (tern_lp_str) { ls + start, i - start, esc ? TERN_LP_ESC_NAME : 0 };
        n_tags++;
    }
    i = skip_blanks(ls, i, n);
    if (i == n) {
        why->at = i;
        why->reason = "missing fields";
        return TERN_EPROTO;
    }

    /* fields */
    size_t n_fields = 0;
    uint64_t seen = 0;
    for (;;) {
        start = i;
        esc = false;
        i = scan_name(ls, i, n, stop_key, &esc);
        if (i == start) {
            why->at = i;
            why->reason = "missing field key";
            return TERN_EPROTO;
        }
        if (i == n || ls[i] != '=') {
            why->at = i;
            why->reason = "missing field value";
            return TERN_EPROTO;
        }
        tern_lp_field f;
        f.key = (tern_lp_str) { ls + start, i - start, esc ? TERN_LP_ESC_NAME : 0 };
        i++;
        if (i == n || ls[i] == ' ' || ls[i] == ',') {
            why->at = i;
            why->reason = "missing field value";
            return TERN_EPROTO;
        }
        if (ls[i] == '"') {
            size_t j = i + 1;
            bool sesc = false;
            for (;;) {
                while (j < n && ls[j] != '"' && ls[j] != '\\')
                    j++;
                if (j < n && ls[j] == '\\') {
                    sesc = true;
                    j += 2;
                    continue;
                }
                break;
            }
            if (j >= n) {
                why->at = i;
                why->reason = "unterminated string";
                return TERN_EPROTO;
            }
            f.type = TERN_LP_STRING;
            f.v.s = (tern_lp_str) { ls + i + 1, j - i - 1, sesc ? TERN_LP_ESC_STRING : 0 };
            i = j + 1;
            if (i < n && ls[i] != ',' && ls[i] != ' ') {
                why->at = i;
                why->reason = "invalid field format";
                return TERN_EPROTO;
            }
        } else {
            size_t j = i;
            while (j < n && ls[j] != ',' && ls[j] != ' ')
                j++;
            int rc = parse_value_token(ls + i, j - i, &f, why);
            if (rc < 0) {
                why->at = i;
                return rc;
            }
            i = j;
        }
        /* A repeated key: the last value wins, in the first one's slot. */
        unsigned h = key_hash(f.key.p, f.key.len);
        bool replaced = false;
        if (seen & (1ULL << h)) {
            for (size_t k = 0; k < n_fields; k++) {
                tern_lp_field *g = &p->fields[k];
                if (g->key.len == f.key.len && memcmp(g->key.p, f.key.p, f.key.len) == 0) {
                    *g = f;
                    replaced = true;
                    break;
                }
            }
        }
        if (!replaced) {
            if (n_fields == p->max_fields) {
                why->at = start;
                why->reason = "too many fields";
                return TERN_EQUOTA;
            }
            seen |= 1ULL << h;
            p->fields[n_fields++] = f;
        }
        if (i < n && ls[i] == ',') {
            i++;
            continue;
        }
        break;
    }

    /* timestamp */
    i = skip_blanks(ls, i, n);
    line->has_ts = false;
    line->ts_ms = p->now_ms;
    if (i < n) {
        start = i;
        while (i < n && !is_blank(ls[i]))
            i++;
        int rc = parse_timestamp(ls + start, i - start, p->ns_per_unit, &line->ts_ms, why);
        if (rc < 0) {
            why->at = start;
            return rc;
        }
        line->has_ts = true;
        i = skip_blanks(ls, i, n);
        if (i < n) {
            why->at = i;
            why->reason = "bad timestamp";
            return TERN_EPROTO;
        }
    }
    line->tags = p->tags;
    line->n_tags = n_tags;
    line->fields = p->fields;
    line->n_fields = n_fields;
    return 1;
}

int tern_lp_next(tern_lp_parser *p, tern_lp_line *line, tern_lp_error *err)
{
    while (p->pos < p->len) {
        const char *ls = p->data + p->pos;
        size_t left = p->len - p->pos;
        const char *nl = memchr(ls, '\n', left);
        size_t n = nl ? (size_t)(nl - ls) : left;
        p->pos += nl ? n + 1 : n;
        p->line_no++;
        if (n > 0 && ls[n - 1] == '\r')
            n--;
        tern_lp_line tmp;
        lp_fail why = { 0, 0, NULL };
        int rc = parse_line(p, ls, n, &tmp, &why);
        if (rc == 0)
            continue;
        tern_lp_str raw = { ls, n, TERN_LP_PLAIN };
        if (rc < 0) {
            err->code = rc;
            err->line_no = p->line_no;
            err->column = why.at + 1;
            err->reason = why.reason;
            err->raw = raw;
            return rc;
        }
        tmp.line_no = p->line_no;
        tmp.raw = raw;
        *line = tmp;
        return 1;
    }
    return 0;
}

/* The byte an escape "\c" stands for in kind, or -1 when the backslash is literal. */
static int unescaped_byte(uint8_t kind, char c)
{
    if (kind == TERN_LP_ESC_STRING)
        return c == '"' || c == '\\' ? c : -1;
    return c == ',' || c == '=' || c == ' ' || c == '\\' ? c : -1;
}

size_t tern_lp_unescape(tern_lp_str s, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t k = 0; k < s.len; k++) {
        char c = s.p[k];
        if (s.escaped && c == '\\' && k + 1 < s.len && unescaped_byte(s.escaped, s.p[k + 1]) >= 0)
            c = s.p[++k];
        if (n < cap)
            out[n] = c;
        n++;
    }
    return n;
}

bool tern_lp_str_eq(tern_lp_str s, const char *lit, size_t lit_len)
{
    if (!s.escaped)
        return s.len == lit_len && memcmp(s.p, lit, lit_len) == 0;
    size_t n = 0;
    for (size_t k = 0; k < s.len; k++) {
        char c = s.p[k];
        if (c == '\\' && k + 1 < s.len && unescaped_byte(s.escaped, s.p[k + 1]) >= 0)
            c = s.p[++k];
        if (n == lit_len || lit[n] != c)
            return false;
        n++;
    }
    return n == lit_len;
}

int tern_lp_parse_precision(const char *s, tern_lp_precision *out)
{
    static const struct {
        const char *name;
        tern_lp_precision p;
    } names[] = { { "ns", TERN_LP_NS }, { "n", TERN_LP_NS }, { "us", TERN_LP_US },
        { "u", TERN_LP_US }, { "ms", TERN_LP_MS }, { "s", TERN_LP_S }, { "m", TERN_LP_MINUTE },
        { "h", TERN_LP_HOUR } };
    if (!s)
        return TERN_EINVAL;
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        if (strcmp(s, names[k].name) == 0) {
            *out = names[k].p;
            return 0;
        }
    }
    return TERN_EINVAL;
}

int tern_lp_parse_precision_v2(const char *s, tern_lp_precision *out)
{
    if (!s
        || (strcmp(s, "ns") != 0 && strcmp(s, "us") != 0 && strcmp(s, "ms") != 0
            && strcmp(s, "s") != 0))
        return TERN_EINVAL;
    return tern_lp_parse_precision(s, out);
}

size_t tern_lp_error_format(const tern_lp_error *err, char *buf, size_t cap)
{
    size_t shown = err->raw.len > 256 ? 256 : err->raw.len;
    int n = snprintf(buf, cap, "unable to parse '%.*s%s': %s (line %zu, column %zu)", (int)shown,
        err->raw.p ? err->raw.p : "", shown < err->raw.len ? "..." : "",
        err->reason ? err->reason : "invalid line", err->line_no, err->column);
    return n < 0 ? 0 : (size_t)n;
}

int tern_lp_append_name(tern_buf *out, const char *s, size_t len, bool measurement)
{
    if (len == 0 || s[0] == '\t' || (measurement && s[0] == '#'))
        return TERN_EINVAL;
    if (memchr(s, '\n', len) || memchr(s, '\r', len))
        return TERN_EINVAL;
    int rc = tern_buf_reserve(out, 2 * len);
    if (rc != 0)
        return rc;
    uint8_t *w = out->data + out->len;
    for (size_t k = 0; k < len; k++) {
        char c = s[k];
        if (c == ',' || c == '=' || c == ' ' || c == '\\')
            *w++ = '\\';
        *w++ = (uint8_t)c;
    }
    out->len = (size_t)(w - out->data);
    return 0;
}

int tern_lp_append_field_value(tern_buf *out, const tern_lp_field *f)
{
    switch (f->type) {
    case TERN_LP_FLOAT:
        if (!isfinite(f->v.f))
            return TERN_EINVAL;
        return tern_buf_printf(out, "%.17g", f->v.f);
    case TERN_LP_INT:
        return tern_buf_printf(out, "%" PRId64 "i", f->v.i);
    case TERN_LP_UINT:
        return tern_buf_printf(out, "%" PRIu64 "u", f->v.u);
    case TERN_LP_BOOL:
        return tern_buf_append_str(out, f->v.b ? "true" : "false");
    case TERN_LP_STRING: {
        const char *s = f->v.s.p;
        size_t len = f->v.s.len;
        if (len && memchr(s, '\n', len))
            return TERN_EINVAL;
        int rc = tern_buf_reserve(out, 2 * len + 2);
        if (rc != 0)
            return rc;
        uint8_t *w = out->data + out->len;
        *w++ = '"';
        for (size_t k = 0; k < len; k++) {
            if (s[k] == '"' || s[k] == '\\')
                *w++ = '\\';
            *w++ = (uint8_t)s[k];
        }
        *w++ = '"';
        out->len = (size_t)(w - out->data);
        return 0;
    }
    }
    return TERN_EINVAL;
}

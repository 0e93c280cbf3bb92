/*
 * query_json.c: query rows as JSON (see query_json.h).
 */
#include "tsdb/query_json.h"

#include "base/error.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int tern_tsdb_parse_duration(const char *s, int64_t *out)
{
    char *end;
    if (!s || !*s || *s == '-')
        return TERN_EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s)
        return TERN_EINVAL;
    int64_t unit;
    if (*end == 0 || strcmp(end, "ms") == 0)
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    else
        return TERN_EINVAL;
    if (v > (unsigned long long)(INT64_MAX / unit))
        return TERN_EINVAL;
    *out = (int64_t)v * unit;
    return 0;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int tern_tsdb_parse_time(const char *s, int64_t now_ms, int64_t *out)
{
    if (!s || !*s)
        return TERN_EINVAL;
    if (strncmp(s, "now", 3) == 0) {
        if (s[3] == 0) {
            *out = now_ms;
            return 0;
        }
        int64_t d;
        if (s[3] != '-' || tern_tsdb_parse_duration(s + 4, &d) != 0)
            return TERN_EINVAL;
        *out = now_ms - d;
        return 0;
    }
    char *end;
    if (strchr(s, 'T') == NULL) {
        long long v = strtoll(s, &end, 10);
        if (end == s || *end)
            return TERN_EINVAL;
        *out = v;
        return 0;
    }
    int y, mo, d, h, mi, sec, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &y, &mo, &d, &h, &mi, &sec, &n) != 6 || mo < 1
        || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return TERN_EINVAL;
    const char *p = s + n;
    int64_t ms = 0;
    if (*p == '.') {
        int digits = 0;
        for (p++; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
        while (digits > 0 && digits < 3) {
            ms *= 10;
            digits++;
        }
    }
    if (strcmp(p, "Z") != 0)
        return TERN_EINVAL;
    int64_t days = days_from_civil(y, (unsigned)mo, (unsigned)d);
    *out = ((days * 24 + h) * 60 + mi) * 60000 + (int64_t)sec * 1000 + ms;
    return 0;
}

static const double json_pow10[10] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };

/* Writes u in decimal at p (no NUL); returns the length. */
static size_t u64_text(char *p, uint64_t u)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    for (size_t i = 0; i < n; i++)
        p[i] = tmp[n - 1 - i];
    return n;
}

int tern_tsdb_json_int(tern_buf *out, int64_t v)
{
    char s[24];
    size_t n = 0;
    uint64_t u = (uint64_t)v;
    if (v < 0) {
        s[n++] = '-';
        u = 0 - u;
    }
    n += u64_text(s + n, u);
    return tern_buf_append(out, s, n);
}

int tern_tsdb_json_double(tern_buf *out, double v)
{
    if (isnan(v))
        return tern_buf_append_str(out, "\"NaN\"");
    if (isinf(v))
        return tern_buf_append_str(out, v > 0 ? "\"+Inf\"" : "\"-Inf\"");
    if (v == 0)
        return tern_buf_append_str(out, signbit(v) ? "-0" : "0");
    /* Fast path, telemetry's case: a decimal with few digits, written from its scaled
     * integer when that reads back as exactly v (the shortest form, as %.17g then trimmed). */
    double a = fabs(v);
    if (a < 1e15) {
        for (int e = 0; e < 10; e++) {
            double scaled = a * json_pow10[e];
            if (scaled >= 9e15)
                break;
            double m = nearbyint(scaled);
            if (m / json_pow10[e] != a)
                continue;
            char s[40];
            size_t n = 0;
            if (v < 0)
                s[n++] = '-';
            char digits[24];
            size_t nd = u64_text(digits, (uint64_t)m);
            if (e == 0) {
                memcpy(s + n, digits, nd);
                n += nd;
            } else if ((size_t)e < nd) {
                memcpy(s + n, digits, nd - (size_t)e);
                n += nd - (size_t)e;
                s[n++] = '.';
                memcpy(s + n, digits + nd - (size_t)e, (size_t)e);
                n += (size_t)e;
            } else {
                s[n++] = '0';
                s[n++] = '.';
                for (size_t z = nd; z < (size_t)e; z++)
                    s[n++] = '0';
                memcpy(s + n, digits, nd);
                n += nd;
            }
            return tern_buf_append(out, s, n);
        }
    }
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    return tern_buf_append_str(out, s);
}

int tern_tsdb_json_string(tern_buf *out, const char *s)
{
    int rc = tern_buf_append_u8(out, '"');
    for (const unsigned char *p = (const unsigned char *)s; rc == 0 && *p; p++) {
        if (*p == '"' || *p == '\\') {
            rc = tern_buf_append_u8(out, '\\');
            if (rc == 0)
                rc = tern_buf_append_u8(out, *p);
        } else if (*p < 0x20) {
            rc = tern_buf_printf(out, "\\u%04x", *p);
        } else {
            rc = tern_buf_append_u8(out, *p);
        }
    }
    if (rc == 0)
        rc = tern_buf_append_u8(out, '"');
    return rc;
}

/* {"device":"d","metric":"m"  (or "group") */
static int row_prefix(tern_buf *out, const tern_tsdb_row *row)
{
    int rc = tern_buf_append_u8(out, '{');
    if (row->device) {
        rc |= tern_buf_append_str(out, "\"device\":");
        rc |= tern_tsdb_json_string(out, row->device);
    } else {
        rc |= tern_buf_append_str(out, "\"group\":");
        rc |= tern_tsdb_json_string(out, row->group ? row->group : "");
    }
    rc |= tern_buf_append_str(out, ",\"metric\":");
    rc |= tern_tsdb_json_string(out, row->metric);
    return rc ? TERN_ENOMEM : 0;
}

/* ,"ts":T,"value":V}  or  ,"ts":T,"avg":A,...} */
static int row_body(tern_buf *out, unsigned aggs, const tern_tsdb_row *row)
{
    int rc = tern_buf_append_str(out, ",\"ts\":");
    rc |= tern_tsdb_json_int(out, row->ts_ms);
    if (aggs == 0) {
        rc |= tern_buf_append_str(out, ",\"value\":");
        if (row->kind == TERN_VALUE_I64)
            rc |= tern_tsdb_json_int(out, row->v.i);
        else
            rc |= tern_tsdb_json_double(out, row->v.f);
    } else {
        size_t k = 0;
        for (unsigned bit = 1; bit <= TERN_AGG_P95; bit <<= 1) {
            if (!(aggs & bit))
                continue;
            rc |= tern_buf_printf(out, ",\"%s\":", tern_tsdb_agg_name(bit));
            if (bit == TERN_AGG_COUNT)
                rc |= tern_tsdb_json_int(out, (int64_t)row->count);
            else
                rc |= tern_tsdb_json_double(out, row->values[k]);
            k++;
        }
    }
    rc |= tern_buf_append_u8(out, '}');
    return rc ? TERN_ENOMEM : 0;
}

int tern_tsdb_row_json(tern_buf *out, unsigned aggs, const tern_tsdb_row *row)
{
    int rc = row_prefix(out, row);
    return rc ? rc : row_body(out, aggs, row);
}

int tern_tsdb_rows_json_add(tern_tsdb_json_rows *w, unsigned aggs, const tern_tsdb_row *row)
{
    /* rows come series by series: the {"device":..,"metric":.. prefix is rendered once */
    if (w->prefix.len == 0 || row->device != w->device || row->metric != w->metric
        || row->group != w->group) {
        tern_buf_reset(&w->prefix);
        int rc = row_prefix(&w->prefix, row);
        if (rc)
            return rc;
        w->device = row->device;
        w->metric = row->metric;
        w->group = row->group;
    }
    if (w->rows++ && tern_buf_append_u8(w->out, ',') != 0)
        return TERN_ENOMEM;
    int rc = tern_buf_append(w->out, w->prefix.data, w->prefix.len);
    return rc ? rc : row_body(w->out, aggs, row);
}

void tern_tsdb_rows_json_free(tern_tsdb_json_rows *w)
{
    tern_buf_free(&w->prefix);
}

int tern_tsdb_series_json_add(tern_tsdb_json_rows *w, unsigned aggs, const tern_tsdb_row *row)
{
    int rc = 0;
    if (w->rows == 0 || row->device != w->device || row->metric != w->metric
        || row->group != w->group) {
        if (w->rows)
            rc |= tern_buf_append_str(w->out, "]},");
        rc |= row_prefix(w->out, row);
        rc |= tern_buf_append_str(w->out, ",\"columns\":[\"ts\"");
        if (aggs == 0) {
            rc |= tern_buf_append_str(w->out, ",\"value\"");
        } else {
            for (unsigned bit = 1; bit <= TERN_AGG_P95; bit <<= 1)
                if (aggs & bit)
                    rc |= tern_buf_printf(w->out, ",\"%s\"", tern_tsdb_agg_name(bit));
        }
        rc |= tern_buf_append_str(w->out, "],\"values\":[");
        w->device = row->device;
        w->metric = row->metric;
        w->group = row->group;
        w->series++;
    } else {
        rc |= tern_buf_append_u8(w->out, ',');
    }
    w->rows++;
    rc |= tern_buf_append_u8(w->out, '[');
    rc |= tern_tsdb_json_int(w->out, row->ts_ms);
    if (aggs == 0) {
        rc |= tern_buf_append_u8(w->out, ',');
        if (row->kind == TERN_VALUE_I64)
            rc |= tern_tsdb_json_int(w->out, row->v.i);
        else
            rc |= tern_tsdb_json_double(w->out, row->v.f);
    } else {
        size_t k = 0;
        for (unsigned bit = 1; bit <= TERN_AGG_P95; bit <<= 1) {
            if (!(aggs & bit))
                continue;
            rc |= tern_buf_append_u8(w->out, ',');
            if (bit == TERN_AGG_COUNT)
                rc |= tern_tsdb_json_int(w->out, (int64_t)row->count);
            else
                rc |= tern_tsdb_json_double(w->out, row->values[k]);
            k++;
        }
    }
    rc |= tern_buf_append_u8(w->out, ']');
    return rc ? TERN_ENOMEM : 0;
}

int tern_tsdb_series_json_finish(tern_tsdb_json_rows *w)
{
    return w->rows ? tern_buf_append_str(w->out, "]}") : 0;
}

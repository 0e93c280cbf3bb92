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

int tern_tsdb_json_double(tern_buf *out, double v)
{
    if (isnan(v))
        return tern_buf_append_str(out, "\"NaN\"");
    if (isinf(v))
        return tern_buf_append_str(out, v > 0 ? "\"+Inf\"" : "\"-Inf\"");
    char s[40];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(s, sizeof s, "%.*g", prec, v);
        if (strtod(s, NULL) == v)
            break;
    }
    if (v == 0 && signbit(v))
        snprintf(s, sizeof s, "-0");
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

int tern_tsdb_row_json(tern_buf *out, unsigned aggs, const tern_tsdb_row *row)
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
    rc |= tern_buf_printf(out, ",\"ts\":%lld", (long long)row->ts_ms);
    if (aggs == 0) {
        rc |= tern_buf_append_str(out, ",\"value\":");
        if (row->kind == TERN_VALUE_I64)
            rc |= tern_buf_printf(out, "%lld", (long long)row->v.i);
        else
            rc |= tern_tsdb_json_double(out, row->v.f);
    } else {
        size_t k = 0;
        for (unsigned bit = 1; bit <= TERN_AGG_P95; bit <<= 1) {
            if (!(aggs & bit))
                continue;
            rc |= tern_buf_printf(out, ",\"%s\":", tern_tsdb_agg_name(bit));
            if (bit == TERN_AGG_COUNT)
                rc |= tern_buf_printf(out, "%llu", (unsigned long long)row->count);
            else
                rc |= tern_tsdb_json_double(out, row->values[k]);
            k++;
        }
    }
    rc |= tern_buf_append_u8(out, '}');
    return rc ? TERN_ENOMEM : 0;
}

/*
 * lp_ingest.c: line protocol -> batch -> store (see lp_ingest.h for the mapping).
 */
#include "tsdb/lp_ingest.h"

#include "base/error.h"

#include <stdio.h>
#include <string.h>

#define MAX_TAGS 64
#define MAX_FIELDS 256
#define NAME_MAX_BYTES 1024

/* Copies s (unescaped) into out; returns its length, or 0 if it does not fit. */
static size_t copy_str(tern_lp_str s, char *out, size_t cap)
{
    if (!s.escaped) {
        if (s.len >= cap)
            return 0;
        memcpy(out, s.p, s.len);
        out[s.len] = 0;
        return s.len;
    }
    size_t n = tern_lp_unescape(s, out, cap);
    if (n >= cap)
        return 0;
    out[n] = 0;
    return n;
}

static void bad_line(tern_lp_ingest_result *res, int code, tern_lp_str raw, const char *reason)
{
    res->bad_lines++;
    if (res->first_error)
        return;
    res->first_error = code;
    snprintf(res->first_error_text, sizeof res->first_error_text, "unable to parse '%.*s': %s",
        raw.len > 400 ? 400 : (int)raw.len, raw.p, reason);
}

int tern_lp_ingest(tern_tsdb *db, tern_tsdb_batch *batch, const char *data, size_t len,
    const tern_lp_ingest_opts *o, tern_lp_ingest_result *res, uint64_t *seq)
{
    memset(res, 0, sizeof(*res));
    if (seq)
        *seq = 0;
    tern_tsdb_batch_reset(batch);
    tern_lp_tag tags[MAX_TAGS];
    tern_lp_field fields[MAX_FIELDS];
    tern_lp_parser p;
    tern_lp_init(&p, data, len, o->precision, o->now_ms, tags, MAX_TAGS, fields, MAX_FIELDS);
    size_t dev_tag_len = strlen(o->device_tag);
    char device[NAME_MAX_BYTES], tagbuf[4096], metric[NAME_MAX_BYTES];
    tern_lp_line line;
    tern_lp_error perr;
    int rc;
    while ((rc = tern_lp_next(&p, &line, &perr)) != 0) {
        if (rc < 0) {
            res->lines++;
            char reason[200];
            snprintf(reason, sizeof reason, "%s (column %zu)", perr.reason, perr.column);
            bad_line(res, perr.code, perr.raw, reason);
            continue;
        }
        res->lines++;
        /* device and device tags */
        size_t dlen = 0, tlen = 0;
        bool ok = true;
        const char *why = NULL;
        for (size_t i = 0; i < line.n_tags && ok; i++) {
            char k[NAME_MAX_BYTES], v[NAME_MAX_BYTES];
            size_t kl = copy_str(line.tags[i].key, k, sizeof k);
            size_t vl = copy_str(line.tags[i].value, v, sizeof v);
            if (kl == 0 || vl == 0) {
                ok = false;
                why = "tag key or value too long";
            } else if (kl == dev_tag_len && memcmp(k, o->device_tag, kl) == 0) {
                memcpy(device, v, vl + 1);
                dlen = vl;
            } else if (memchr(k, ',', kl) || memchr(k, '=', kl) || memchr(v, ',', vl)
                || memchr(v, '=', vl)) {
                ok = false;
                why = "tag keys and values with ',' or '=' are not supported";
            } else if (tlen + kl + vl + 2 >= sizeof tagbuf) {
                ok = false;
                why = "device tags longer than 4 KiB";
            } else {
                if (tlen)
                    tagbuf[tlen++] = ',';
                memcpy(tagbuf + tlen, k, kl);
                tlen += kl;
                tagbuf[tlen++] = '=';
                memcpy(tagbuf + tlen, v, vl);
                tlen += vl;
            }
        }
        if (ok && dlen == 0) {
            ok = false;
            why = "missing the device tag";
        }
        if (!ok) {
            char reason[200];
            snprintf(reason, sizeof reason, "%s%s%s", why,
                strcmp(why, "missing the device tag") == 0 ? " " : "",
                strcmp(why, "missing the device tag") == 0 ? o->device_tag : "");
            bad_line(res, TERN_EINVAL, line.raw, reason);
            continue;
        }
        size_t ml = copy_str(line.measurement, metric, sizeof metric);
        if (ml == 0 || ml + 2 >= sizeof metric) {
            bad_line(res, TERN_EINVAL, line.raw, "measurement name too long");
            continue;
        }
        metric[ml++] = '_';
        int arc = tern_tsdb_batch_device(batch, device, dlen, tagbuf, tlen);
        if (arc)
            return arc;
        size_t stored = 0;
        for (size_t i = 0; i < line.n_fields; i++) {
            const tern_lp_field *f = &line.fields[i];
            size_t fl = copy_str(f->key, metric + ml, sizeof metric - ml);
            if (fl == 0) {
                res->skipped_fields++;
                continue;
            }
            switch (f->type) {
            case TERN_LP_FLOAT:
                arc = tern_tsdb_batch_add_f64(batch, metric, ml + fl, line.ts_ms, f->v.f);
                break;
            case TERN_LP_INT:
                arc = tern_tsdb_batch_add_i64(batch, metric, ml + fl, line.ts_ms, f->v.i);
                break;
            case TERN_LP_UINT:
                if (f->v.u > (uint64_t)INT64_MAX) {
                    res->skipped_fields++;
                    continue;
                }
                arc = tern_tsdb_batch_add_i64(batch, metric, ml + fl, line.ts_ms, (int64_t)f->v.u);
                break;
            case TERN_LP_BOOL:
                arc = tern_tsdb_batch_add_i64(batch, metric, ml + fl, line.ts_ms, f->v.b ? 1 : 0);
                break;
            case TERN_LP_STRING:
            default:
                res->skipped_fields++;
                continue;
            }
            if (arc)
                return arc;
            stored++;
        }
        if (stored == 0)
            bad_line(res, TERN_EINVAL, line.raw, "no numeric field (string fields are not stored)");
        res->points += stored;
    }
    return tern_tsdb_write(db, batch, seq, &res->write);
}

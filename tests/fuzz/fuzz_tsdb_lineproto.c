/*
 * fuzz_tsdb_lineproto.c: arbitrary bytes through the line-protocol parser.
 *
 * Promises checked on every input: the parser never crashes or reads outside the input; it
 * always terminates (each call consumes at least one line); every string it reports (names,
 * values, raw lines) lies inside the input; every error carries a reason, a line number and a
 * column inside the line. Each accepted line is then rewritten with the writers (unescaped, then
 * escaped again) and parsed back: the measurement, tags, fields (types and values, floats
 * bit-exact) and timestamp must come back the same. The writer may refuse only the names it
 * documents as unrepresentable (leading tab, '\r'/'\n' inside, '#' leading a measurement).
 */
#include "base/buf.h"
#include "base/error.h"
#include "tsdb/lineproto.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TAGS 16
#define MAX_FIELDS 16

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static const char *g_base;
static size_t g_size;

static void check_inside(tern_lp_str s)
{
    if (s.len == 0)
        return;
    check(s.p >= g_base && s.p + s.len <= g_base + g_size);
}

/* Unescaped copy of s into a malloc'd buffer (so ASan checks its bounds); *n set. */
static char *real_bytes(tern_lp_str s, size_t *n)
{
    char *out = malloc(s.len + 1);
    check(out != NULL);
    *n = tern_lp_unescape(s, out, s.len);
    check(*n <= s.len);
    return out;
}

static int append_name(tern_buf *b, tern_lp_str s, bool measurement)
{
    size_t n;
    char *bytes = real_bytes(s, &n);
    int rc = tern_lp_append_name(b, bytes, n, measurement);
    if (rc != 0) {
        bool documented = n == 0 || bytes[0] == '\t' || memchr(bytes, '\r', n)
            || memchr(bytes, '\n', n) || (measurement && bytes[0] == '#');
        check(rc == TERN_EINVAL && documented);
    }
    free(bytes);
    return rc;
}

static bool same_str(tern_lp_str a, tern_lp_str b)
{
    size_t na, nb;
    char *ba = real_bytes(a, &na);
    char *bb = real_bytes(b, &nb);
    bool same = na == nb && memcmp(ba, bb, na) == 0;
    check(tern_lp_str_eq(a, bb, nb) == same);
    free(ba);
    free(bb);
    return same;
}

static void round_trip(const tern_lp_line *line)
{
    tern_buf b = TERN_BUF_INIT;
    if (append_name(&b, line->measurement, true) != 0)
        goto done;
    for (size_t k = 0; k < line->n_tags; k++) {
        check(tern_buf_append_u8(&b, ',') == 0);
        if (append_name(&b, line->tags[k].key, false) != 0)
            goto done;
        check(tern_buf_append_u8(&b, '=') == 0);
        if (append_name(&b, line->tags[k].value, false) != 0)
            goto done;
    }
    for (size_t k = 0; k < line->n_fields; k++) {
        check(tern_buf_append_u8(&b, k ? ',' : ' ') == 0);
        if (append_name(&b, line->fields[k].key, false) != 0)
            goto done;
        check(tern_buf_append_u8(&b, '=') == 0);
        tern_lp_field f = line->fields[k];
        char *bytes = NULL;
        if (f.type == TERN_LP_STRING) {
            size_t n;
            bytes = real_bytes(f.v.s, &n);
            f.v.s = (tern_lp_str) { bytes, n, TERN_LP_PLAIN };
        }
        int rc = tern_lp_append_field_value(&b, &f);
        free(bytes);
        check(rc == 0); /* the parser never yields NaN/Inf, and strings hold no '\n' */
    }
    bool ts_kept = line->has_ts && line->ts_ms > -9000000000000LL && line->ts_ms < 9000000000000LL;
    if (ts_kept)
        check(tern_buf_printf(&b, " %lld", (long long)line->ts_ms) == 0);

    tern_lp_tag tags[MAX_TAGS];
    tern_lp_field fields[MAX_FIELDS];
    tern_lp_parser p;
    tern_lp_line again;
    tern_lp_error err;
    tern_lp_init(
        &p, (const char *)b.data, b.len, TERN_LP_MS, 7, tags, MAX_TAGS, fields, MAX_FIELDS);
    check(tern_lp_next(&p, &again, &err) == 1);
    check(same_str(line->measurement, again.measurement));
    check(again.n_tags == line->n_tags);
    for (size_t k = 0; k < line->n_tags; k++) {
        check(same_str(line->tags[k].key, again.tags[k].key));
        check(same_str(line->tags[k].value, again.tags[k].value));
    }
    check(again.n_fields == line->n_fields);
    for (size_t k = 0; k < line->n_fields; k++) {
        const tern_lp_field *a = &line->fields[k], *c = &again.fields[k];
        check(same_str(a->key, c->key));
        check(a->type == c->type);
        switch (a->type) {
        case TERN_LP_FLOAT:
            check(memcmp(&a->v.f, &c->v.f, sizeof a->v.f) == 0);
            break;
        case TERN_LP_INT:
            check(a->v.i == c->v.i);
            break;
        case TERN_LP_UINT:
            check(a->v.u == c->v.u);
            break;
        case TERN_LP_BOOL:
            check(a->v.b == c->v.b);
            break;
        case TERN_LP_STRING:
            check(same_str(a->v.s, c->v.s));
            break;
        }
    }
    if (ts_kept)
        check(again.has_ts && again.ts_ms == line->ts_ms);
    check(tern_lp_next(&p, &again, &err) == 0);
done:
    tern_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* The first byte picks the precision; the rest is the body. */
    tern_lp_precision prec = (tern_lp_precision)(data[0] % 6);
    g_base = (const char *)data + 1;
    g_size = size - 1;
    tern_lp_tag tags[MAX_TAGS];
    tern_lp_field fields[MAX_FIELDS];
    tern_lp_parser p;
    tern_lp_init(&p, g_base, g_size, prec, 42, tags, MAX_TAGS, fields, MAX_FIELDS);
    size_t last_line = 0;
    for (;;) {
        tern_lp_line line;
        tern_lp_error err;
        int rc = tern_lp_next(&p, &line, &err);
        if (rc == 0)
            break;
        if (rc < 0) {
            check(rc == TERN_EPROTO || rc == TERN_ERANGE || rc == TERN_EQUOTA);
            check(err.code == rc && err.reason != NULL);
            check(err.line_no > last_line);
            last_line = err.line_no;
            check_inside(err.raw);
            check(err.column >= 1 && err.column <= err.raw.len + 1);
            char msg[64];
            size_t n = tern_lp_error_format(&err, msg, sizeof msg);
            check(n > 0 && strlen(msg) < sizeof msg);
            continue;
        }
        check(rc == 1);
        check(line.line_no > last_line);
        last_line = line.line_no;
        check_inside(line.raw);
        check_inside(line.measurement);
        check(line.measurement.len > 0);
        check(line.n_tags <= MAX_TAGS && line.n_fields >= 1 && line.n_fields <= MAX_FIELDS);
        for (size_t k = 0; k < line.n_tags; k++) {
            check_inside(line.tags[k].key);
            check_inside(line.tags[k].value);
        }
        for (size_t k = 0; k < line.n_fields; k++) {
            check_inside(line.fields[k].key);
            if (line.fields[k].type == TERN_LP_STRING)
                check_inside(line.fields[k].v.s);
        }
        if (!line.has_ts)
            check(line.ts_ms == 42);
        round_trip(&line);
    }
    return 0;
}

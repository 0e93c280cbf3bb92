/*
 * alert.c: the rules file parser and the event-time alert engine (alert.h; file format and
 * semantics in docs/alerts.md).
 *
 * State, and what each piece costs:
 *   - a device table (chained hash on the device name): one entry per device seen, with its
 *     name and an array of states, one per rule whose device filter matches it (fixed when the
 *     device is first seen: the filters never change);
 *   - a state per (device, rule): last processed event time, condition-holding-since (threshold
 *     and rate) or firing time (absence), previous value (rate), flags; a fixed size;
 *   - a min-heap of the absence states that are waiting to fire, keyed by last data + duration,
 *     so a tick costs the states it fires, not the devices. Its capacity is reserved when a
 *     device is added, so updating it never allocates.
 * Bytes are counted as they are allocated (state_bytes in the stats).
 */
#include "stream/alert.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/hash.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- rules ---- */

enum rule_kind { KIND_THRESHOLD, KIND_RATE, KIND_ABSENCE };

#define MAX_DURATION_MS (INT64_C(1000) * 86400000) /* 1000 days */
#define MAX_LINE 4096u
#define MAX_WORDS 32u

typedef struct rule {
    char name[TERN_ALERT_MAX_RULE_NAME + 1];
    enum rule_kind kind;
    char *metric; /* NULL: any metric (absence only) */
    size_t metric_len;
    char *device_pat; /* NULL: every device */
    size_t pat_len;
    bool pat_prefix; /* the pattern ended with '*' (not counted in pat_len) */
    bool above;      /* threshold and rate: above (else below) */
    double x;        /* threshold and rate: the bound */
    int64_t for_ms;  /* threshold and rate: how long the condition must hold */
    int64_t per_ms;  /* rate: the unit of time the rate is scaled to */
    int64_t absent_ms;
    bool has_resolve; /* hysteresis: resolve only when the value passes resolve_y */
    double resolve_y;
    bool on_will;
    int line;
} rule;

struct tern_alert_rules {
    rule *rules;
    size_t n;
};

static bool rule_matches_device(const rule *r, const char *dev, size_t dlen)
{
    if (!r->device_pat)
        return true;
    if (r->pat_prefix)
        return dlen >= r->pat_len && memcmp(dev, r->device_pat, r->pat_len) == 0;
    return dlen == r->pat_len && memcmp(dev, r->device_pat, dlen) == 0;
}

static bool rule_matches_metric(const rule *r, const char *m, size_t mlen)
{
    if (!r->metric)
        return true;
    return mlen == r->metric_len && memcmp(m, r->metric, mlen) == 0;
}

/* ---- parsing ---- */

typedef struct parser {
    const char *file;
    int line;
    char *err;
    size_t err_cap;
} parser;

__attribute__((format(printf, 2, 3))) static int perr(parser *p, const char *fmt, ...)
{
    if (p->err && p->err_cap > 0) {
        int n = snprintf(p->err, p->err_cap, "%s:%d: ", p->file, p->line);
        if (n >= 0 && (size_t)n < p->err_cap) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(p->err + n, p->err_cap - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return TERN_ECONFIG;
}

static void set_err(char *err, size_t err_cap, const char *what, const char *detail)
{
    if (err && err_cap > 0)
        snprintf(err, err_cap, "%s: %s", what, detail);
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static bool is_name_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'
        || c == '-' || c == '.';
}

/* Durations as in config files: a whole number and ms, s, m, h or d; "0" alone. */
static bool parse_duration(const char *s, int64_t *out)
{
    if (strcmp(s, "0") == 0) {
        *out = 0;
        return true;
    }
    int64_t n = 0;
    size_t i = 0;
    while (s[i] >= '0' && s[i] <= '9') {
        if (n > MAX_DURATION_MS)
            return false;
        n = n * 10 + (s[i] - '0');
        i++;
    }
    if (i == 0)
        return false;
    int64_t unit;
    const char *u = s + i;
    if (strcmp(u, "ms") == 0)
        unit = 1;
    else if (strcmp(u, "s") == 0)
        unit = 1000;
    else if (strcmp(u, "m") == 0)
        unit = 60000;
    else if (strcmp(u, "h") == 0)
        unit = 3600000;
    else if (strcmp(u, "d") == 0)
        unit = 86400000;
    else
        return false;
    if (n > MAX_DURATION_MS / unit)
        return false;
    *out = n * unit;
    return true;
}

static bool parse_number(const char *s, double *out)
{
    if (!*s)
        return false;
    errno = 0;
    char *end = NULL;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static const char *const DURATION_HINT = "a duration such as 250ms, 10s, 5m, 2h or 7d";

/* Parses the words of one rule body into r (names still point into the line buffer). */
static int parse_body(
    parser *p, char **w, size_t nw, rule *r, const char **metric_tok, const char **device_tok)
{
    size_t i;
    *metric_tok = NULL;
    *device_tok = NULL;
    if (nw == 0)
        return perr(p, "rule '%s' has no condition", r->name);
    if (strcmp(w[0], "no") == 0 && nw >= 2 && strcmp(w[1], "data") == 0) {
        r->kind = KIND_ABSENCE;
        if (nw < 4 || strcmp(w[2], "for") != 0)
            return perr(p, "absence needs 'no data for DURATION'");
        if (!parse_duration(w[3], &r->absent_ms) || r->absent_ms == 0)
            return perr(p, "expected %s (not 0) after 'for', got '%s'", DURATION_HINT, w[3]);
        i = 4;
    } else {
        *metric_tok = w[0];
        if (strlen(w[0]) > TERN_ALERT_MAX_NAME)
            return perr(p, "metric name longer than %u bytes", TERN_ALERT_MAX_NAME);
        size_t k = 1;
        r->kind = KIND_THRESHOLD;
        if (nw > 1 && strcmp(w[1], "rate") == 0) {
            r->kind = KIND_RATE;
            k = 2;
        }
        const char *what = r->kind == KIND_RATE ? "rate" : "threshold";
        if (nw <= k || (strcmp(w[k], "above") != 0 && strcmp(w[k], "below") != 0))
            return perr(p, "%s needs 'above' or 'below'", what);
        r->above = strcmp(w[k], "above") == 0;
        if (nw <= k + 1 || !parse_number(w[k + 1], &r->x))
            return perr(
                p, "expected a number after '%s', got '%s'", w[k], nw <= k + 1 ? "" : w[k + 1]);
        i = k + 2;
    }
    bool seen_for = false, seen_per = false, seen_resolve = false, seen_metric = false,
         seen_will = false, seen_device = false;
    while (i < nw) {
        const char *key = w[i];
        const char *val = i + 1 < nw ? w[i + 1] : NULL;
        bool *seen;
        if (strcmp(key, "for") == 0 && r->kind != KIND_ABSENCE)
            seen = &seen_for;
        else if (strcmp(key, "per") == 0 && r->kind == KIND_RATE)
            seen = &seen_per;
        else if ((strcmp(key, "resolve_above") == 0 || strcmp(key, "resolve_below") == 0)
            && r->kind != KIND_ABSENCE)
            seen = &seen_resolve;
        else if (strcmp(key, "metric") == 0 && r->kind == KIND_ABSENCE)
            seen = &seen_metric;
        else if (strcmp(key, "on_will") == 0 && r->kind == KIND_ABSENCE)
            seen = &seen_will;
        else if (strcmp(key, "device") == 0)
            seen = &seen_device;
        else if (strcmp(key, "on_will") == 0 || strcmp(key, "metric") == 0)
            return perr(p, "'%s' applies only to absence rules ('no data for ...')", key);
        else if (strcmp(key, "per") == 0)
            return perr(p, "'per' applies only to rate rules");
        else if (strcmp(key, "for") == 0 || strcmp(key, "resolve_above") == 0
            || strcmp(key, "resolve_below") == 0)
            return perr(p, "'%s' does not apply to absence rules", key);
        else
            return perr(p, "unknown word '%s'", key);
        if (*seen)
            return perr(p, "'%s' given twice", key);
        *seen = true;
        if (seen == &seen_will) {
            r->on_will = true;
            i += 1;
            continue;
        }
        if (!val)
            return perr(p, "'%s' needs a value", key);
        if (seen == &seen_for) {
            if (!parse_duration(val, &r->for_ms))
                return perr(p, "expected %s after 'for', got '%s'", DURATION_HINT, val);
        } else if (seen == &seen_per) {
            if (!parse_duration(val, &r->per_ms) || r->per_ms == 0)
                return perr(p, "expected %s (not 0) after 'per', got '%s'", DURATION_HINT, val);
        } else if (seen == &seen_resolve) {
            bool res_above = strcmp(key, "resolve_above") == 0;
            if (res_above == r->above)
                return perr(p, "'%s' goes with '%s' rules", key, r->above ? "below" : "above");
            if (!parse_number(val, &r->resolve_y))
                return perr(p, "expected a number after '%s', got '%s'", key, val);
            if (res_above ? r->resolve_y < r->x : r->resolve_y > r->x)
                return perr(p, "%s %g is %s the bound %g", key, r->resolve_y,
                    res_above ? "below" : "above", r->x);
            r->has_resolve = true;
        } else if (seen == &seen_metric) {
            if (strlen(val) > TERN_ALERT_MAX_NAME)
                return perr(p, "metric name longer than %u bytes", TERN_ALERT_MAX_NAME);
            *metric_tok = val;
        } else {
            size_t n = strlen(val);
            const char *star = strchr(val, '*');
            if (n > TERN_ALERT_MAX_NAME || (star && star != val + n - 1))
                return perr(p, "bad device pattern '%s' (a name, or a prefix ending in '*')", val);
            *device_tok = val;
        }
        i += 2;
    }
    if (r->kind == KIND_RATE && !seen_per)
        return perr(p, "rate needs 'per DURATION'");
    return 0;
}

void tern_alert_rules_free(tern_alert_rules *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n; i++) {
        tern_free(r->rules[i].metric);
        tern_free(r->rules[i].device_pat);
    }
    tern_free(r->rules);
    tern_free(r);
}

size_t tern_alert_rules_count(const tern_alert_rules *r)
{
    return r ? r->n : 0;
}

/* Parses one line (NUL-terminated copy in buf, comments not yet stripped) into rs. */
static int parse_line(parser *p, char *buf, tern_alert_rules *rs, size_t *cap)
{
    /* strip a comment: '#' first or after a blank */
    for (size_t i = 0; buf[i]; i++) {
        if (buf[i] == '#' && (i == 0 || is_blank(buf[i - 1]))) {
            buf[i] = '\0';
            break;
        }
    }
    char *s = buf;
    while (is_blank(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1]))
        s[--n] = '\0';
    if (n == 0)
        return 0;
    char *eq = strchr(s, '=');
    if (!eq)
        return perr(p, "expected 'NAME = RULE', got '%.60s'", s);
    char *name_end = eq;
    while (name_end > s && is_blank(name_end[-1]))
        name_end--;
    size_t name_len = (size_t)(name_end - s);
    if (name_len == 0 || name_len > TERN_ALERT_MAX_RULE_NAME)
        return perr(p, "a rule name needs 1 to %u characters", TERN_ALERT_MAX_RULE_NAME);
    for (size_t i = 0; i < name_len; i++)
        if (!is_name_char(s[i]))
            return perr(
                p, "bad rule name '%.*s' (letters, digits, '_', '-', '.')", (int)name_len, s);
    *name_end = '\0';
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->rules[i].name, s) == 0)
            return perr(p, "rule '%s' already defined at line %d", s, rs->rules[i].line);
    if (rs->n >= TERN_ALERT_MAX_RULES)
        return perr(p, "more than %u rules", TERN_ALERT_MAX_RULES);

    char *w[MAX_WORDS];
    size_t nw = 0;
    char *q = eq + 1;
    for (;;) {
        while (is_blank(*q))
            q++;
        if (!*q)
            break;
        if (nw == MAX_WORDS)
            return perr(p, "too many words (at most %u)", MAX_WORDS);
        w[nw++] = q;
        while (*q && !is_blank(*q))
            q++;
        if (*q)
            *q++ = '\0';
    }

    rule r;
    memset(&r, 0, sizeof r);
    memcpy(r.name, s, name_len + 1);
    r.line = p->line;
    const char *metric_tok, *device_tok;
    int rc = parse_body(p, w, nw, &r, &metric_tok, &device_tok);
    if (rc != 0)
        return rc;
    if (metric_tok) {
        r.metric_len = strlen(metric_tok);
        r.metric = tern_strndup(metric_tok, r.metric_len);
        if (!r.metric)
            return TERN_ENOMEM;
    }
    if (device_tok && strcmp(device_tok, "*") != 0) {
        size_t dl = strlen(device_tok);
        r.pat_prefix = device_tok[dl - 1] == '*';
        r.pat_len = r.pat_prefix ? dl - 1 : dl;
        r.device_pat = tern_strndup(device_tok, r.pat_len);
        if (!r.device_pat) {
            tern_free(r.metric);
            return TERN_ENOMEM;
        }
    }
    if (rs->n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        rule *nr = tern_realloc(rs->rules, ncap * sizeof *nr);
        if (!nr) {
            tern_free(r.metric);
            tern_free(r.device_pat);
            return TERN_ENOMEM;
        }
        rs->rules = nr;
        *cap = ncap;
    }
    rs->rules[rs->n++] = r;
    return 0;
}

int tern_alert_rules_parse(const char *text, size_t len, const char *file_name,
    tern_alert_rules **out, char *err, size_t err_cap)
{
    parser p
        = { .file = file_name ? file_name : "rules", .line = 0, .err = err, .err_cap = err_cap };
    if (err && err_cap > 0)
        err[0] = '\0';
    tern_alert_rules *rs = tern_calloc(1, sizeof *rs);
    char *buf = tern_malloc(MAX_LINE + 1);
    size_t cap = 0;
    int rc = 0;
    if (!rs || !buf) {
        rc = TERN_ENOMEM;
        goto fail;
    }
    size_t pos = 0;
    while (pos < len) {
        p.line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t ll = end - pos;
        if (ll > 0 && text[pos + ll - 1] == '\r')
            ll--;
        if (memchr(text + pos, '\0', ll)) {
            rc = perr(&p, "NUL byte in the line");
            goto fail;
        }
        if (ll > MAX_LINE) {
            rc = perr(&p, "line longer than %u bytes", MAX_LINE);
            goto fail;
        }
        memcpy(buf, text + pos, ll);
        buf[ll] = '\0';
        rc = parse_line(&p, buf, rs, &cap);
        if (rc != 0)
            goto fail;
        pos = nl ? end + 1 : len;
    }
    tern_free(buf);
    *out = rs;
    return 0;
fail:
    if (rc == TERN_ENOMEM && err && err_cap > 0)
        snprintf(err, err_cap, "%s: out of memory", p.file);
    tern_free(buf);
    tern_alert_rules_free(rs);
    return rc;
}

int tern_alert_rules_load(const char *path, tern_alert_rules **out, char *err, size_t err_cap)
{
    int rc;
    FILE *f = fopen(path, "rb");
    char *data = NULL;
    if (!f) {
        rc = -errno;
        if (err && err_cap > 0)
            snprintf(err, err_cap, "%s: cannot read: %s", path, tern_strerror(rc));
        return rc;
    }
    data = tern_malloc(TERN_ALERT_MAX_FILE + 1);
    if (!data) {
        rc = TERN_ENOMEM;
        set_err(err, err_cap, path, "out of memory");
        goto done;
    }
    size_t n = fread(data, 1, TERN_ALERT_MAX_FILE + 1, f);
    if (ferror(f)) {
        rc = TERN_EIO;
        set_err(err, err_cap, path, "cannot read: read error");
        goto done;
    }
    if (n > TERN_ALERT_MAX_FILE) {
        rc = TERN_ECONFIG;
        if (err && err_cap > 0)
            snprintf(err, err_cap, "%s: larger than %u bytes", path, TERN_ALERT_MAX_FILE);
        goto done;
    }
    rc = tern_alert_rules_parse(data, n, path, out, err, err_cap);
done:
    tern_free(data);
    fclose(f);
    return rc;
}

/* ---- engine ---- */

#define NOT_IN_HEAP UINT32_MAX

typedef struct dev_entry dev_entry;

typedef struct rstate {
    int64_t last_ts;  /* last event time this rule processed for the device (INT64_MIN: none) */
    int64_t since_ts; /* threshold/rate: condition holding since (INT64_MIN: not holding);
                         absence: the event time it fired at */
    double prev_v;    /* rate: the value at last_ts */
    dev_entry *dev;
    uint32_t rule;
    uint32_t heap_idx; /* absence: position in the heap, or NOT_IN_HEAP */
    bool firing;
} rstate;

struct dev_entry {
    dev_entry *next; /* hash chain */
    uint64_t hash;
    rstate *states; /* n_states, for the rules whose device filter matches */
    uint32_t n_states;
    uint32_t name_len;
    char name[];
};

struct tern_alert_engine {
    const tern_alert_rules *rules;
    tern_alert_fn fn;
    void *arg;
    dev_entry **buckets;
    size_t n_buckets;
    rstate **heap; /* absence states waiting to fire, min-heap on deadline */
    size_t heap_len, heap_cap;
    size_t n_absence_states; /* heap_cap is kept >= this */
    tern_alert_stats st;
    char reason[640];
};

#define HASH_SEED UINT64_C(0x616c657274)

static int64_t deadline(const tern_alert_engine *e, const rstate *s)
{
    return s->last_ts + e->rules->rules[s->rule].absent_ms;
}

static void heap_set(tern_alert_engine *e, size_t i, rstate *s)
{
    e->heap[i] = s;
    s->heap_idx = (uint32_t)i;
}

static void heap_up(tern_alert_engine *e, size_t i)
{
    rstate *s = e->heap[i];
    int64_t d = deadline(e, s);
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (deadline(e, e->heap[parent]) <= d)
            break;
        heap_set(e, i, e->heap[parent]);
        i = parent;
    }
    heap_set(e, i, s);
}

static void heap_down(tern_alert_engine *e, size_t i)
{
    rstate *s = e->heap[i];
    int64_t d = deadline(e, s);
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= e->heap_len)
            break;
        if (c + 1 < e->heap_len && deadline(e, e->heap[c + 1]) < deadline(e, e->heap[c]))
            c++;
        if (deadline(e, e->heap[c]) >= d)
            break;
        heap_set(e, i, e->heap[c]);
        i = c;
    }
    heap_set(e, i, s);
}

static void heap_insert(tern_alert_engine *e, rstate *s)
{
    TERN_ASSERT(e->heap_len < e->heap_cap);
    heap_set(e, e->heap_len++, s);
    heap_up(e, e->heap_len - 1);
}

static void heap_remove(tern_alert_engine *e, rstate *s)
{
    size_t i = s->heap_idx;
    TERN_ASSERT(i < e->heap_len && e->heap[i] == s);
    s->heap_idx = NOT_IN_HEAP;
    e->heap_len--;
    if (i == e->heap_len)
        return;
    rstate *moved = e->heap[e->heap_len];
    heap_set(e, i, moved);
    heap_up(e, i);
    heap_down(e, moved->heap_idx);
}

int tern_alert_engine_new(
    const tern_alert_rules *rules, tern_alert_fn fn, void *arg, tern_alert_engine **out)
{
    TERN_ASSERT(rules && fn && out);
    tern_alert_engine *e = tern_calloc(1, sizeof *e);
    if (!e)
        return TERN_ENOMEM;
    e->rules = rules;
    e->fn = fn;
    e->arg = arg;
    e->n_buckets = 64;
    e->buckets = tern_calloc(e->n_buckets, sizeof *e->buckets);
    if (!e->buckets) {
        tern_free(e);
        return TERN_ENOMEM;
    }
    e->st.state_bytes = sizeof *e + e->n_buckets * sizeof *e->buckets;
    *out = e;
    return 0;
}

void tern_alert_engine_free(tern_alert_engine *e)
{
    if (!e)
        return;
    for (size_t b = 0; b < e->n_buckets; b++) {
        dev_entry *d = e->buckets[b];
        while (d) {
            dev_entry *next = d->next;
            tern_free(d->states);
            tern_free(d);
            d = next;
        }
    }
    tern_free(e->buckets);
    tern_free(e->heap);
    tern_free(e);
}

static dev_entry *find_device(const tern_alert_engine *e, const char *name, size_t len, uint64_t h)
{
    for (dev_entry *d = e->buckets[h & (e->n_buckets - 1)]; d; d = d->next)
        if (d->hash == h && d->name_len == len && memcmp(d->name, name, len) == 0)
            return d;
    return NULL;
}

static void grow_buckets(tern_alert_engine *e)
{
    size_t n = e->n_buckets * 2;
    dev_entry **nb = tern_calloc(n, sizeof *nb);
    if (!nb)
        return; /* longer chains, still correct */
    for (size_t b = 0; b < e->n_buckets; b++) {
        dev_entry *d = e->buckets[b];
        while (d) {
            dev_entry *next = d->next;
            d->next = nb[d->hash & (n - 1)];
            nb[d->hash & (n - 1)] = d;
            d = next;
        }
    }
    tern_free(e->buckets);
    e->st.state_bytes += (n - e->n_buckets) * sizeof *nb;
    e->buckets = nb;
    e->n_buckets = n;
}

/* Finds or makes the device's entry; NULL only for TERN_ENOMEM (nothing changed). */
static dev_entry *get_device(tern_alert_engine *e, const char *name, size_t len)
{
    uint64_t h = tern_hash64(name, len, HASH_SEED);
    dev_entry *d = find_device(e, name, len, h);
    if (d)
        return d;
    const tern_alert_rules *rs = e->rules;
    uint32_t n = 0, n_abs = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (rule_matches_device(&rs->rules[i], name, len)) {
            n++;
            n_abs += rs->rules[i].kind == KIND_ABSENCE;
        }
    }
    if (e->n_absence_states + n_abs > e->heap_cap) {
        size_t ncap = e->heap_cap ? e->heap_cap : 16;
        while (ncap < e->n_absence_states + n_abs)
            ncap *= 2;
        rstate **nh = tern_realloc(e->heap, ncap * sizeof *nh);
        if (!nh)
            return NULL;
        e->st.state_bytes += (ncap - e->heap_cap) * sizeof *nh;
        e->heap = nh;
        e->heap_cap = ncap;
    }
    d = tern_malloc(sizeof *d + len);
    rstate *states = n ? tern_calloc(n, sizeof *states) : NULL;
    if (!d || (n && !states)) {
        tern_free(d);
        tern_free(states);
        return NULL;
    }
    memcpy(d->name, name, len);
    d->name_len = (uint32_t)len;
    d->hash = h;
    d->states = states;
    d->n_states = n;
    uint32_t k = 0;
    for (size_t i = 0; i < rs->n; i++) {
        if (!rule_matches_device(&rs->rules[i], name, len))
            continue;
        rstate *s = &states[k++];
        s->last_ts = INT64_MIN;
        s->since_ts = INT64_MIN;
        s->dev = d;
        s->rule = (uint32_t)i;
        s->heap_idx = NOT_IN_HEAP;
    }
    size_t b = h & (e->n_buckets - 1);
    d->next = e->buckets[b];
    e->buckets[b] = d;
    e->n_absence_states += n_abs;
    e->st.n_devices++;
    e->st.n_states += n;
    e->st.state_bytes += sizeof *d + len + n * sizeof *states;
    if (e->st.n_devices > e->n_buckets)
        grow_buckets(e);
    return d;
}

/* A duration in the largest unit that writes it exactly. */
static void fmt_duration(char *buf, size_t cap, int64_t ms)
{
    static const struct {
        int64_t ms;
        const char *unit;
    } units[] = { { 86400000, "d" }, { 3600000, "h" }, { 60000, "m" }, { 1000, "s" } };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (ms != 0 && ms % units[i].ms == 0) {
            snprintf(buf, cap, "%lld%s", (long long)(ms / units[i].ms), units[i].unit);
            return;
        }
    }
    snprintf(buf, cap, "%lldms", (long long)ms);
}

static int deliver(tern_alert_engine *e, const rstate *s, bool firing, int64_t ts, double value)
{
    const rule *r = &e->rules->rules[s->rule];
    tern_alert_event ev = { .device = s->dev->name,
        .device_len = s->dev->name_len,
        .rule = r->name,
        .firing = firing,
        .ts_ms = ts,
        .value = value,
        .reason = e->reason };
    int rc = e->fn(e->arg, &ev);
    if (rc != 0)
        return rc;
    if (firing) {
        e->st.n_fired++;
        e->st.n_firing++;
    } else {
        e->st.n_resolved++;
        e->st.n_firing--;
    }
    return 0;
}

/* Threshold or rate: evaluate val (the value, or the per-unit rate) at event time ts. */
static int eval_value(tern_alert_engine *e, rstate *s, const rule *r, int64_t ts, double val,
    const char *metric, size_t mlen)
{
    bool cond = r->above ? val > r->x : val < r->x;
    const char *dir = r->above ? "above" : "below";
    const char *rate = r->kind == KIND_RATE ? " rate" : "";
    char per[32] = "";
    if (r->kind == KIND_RATE) {
        char d[24];
        fmt_duration(d, sizeof d, r->per_ms);
        snprintf(per, sizeof per, " per %s", d);
    }
    int mlen_i = (int)mlen;
    if (!s->firing) {
        int64_t since = cond ? (s->since_ts == INT64_MIN ? ts : s->since_ts) : INT64_MIN;
        if (cond && ts - since >= r->for_ms) {
            char d[24];
            fmt_duration(d, sizeof d, r->for_ms);
            if (r->for_ms > 0)
                snprintf(e->reason, sizeof e->reason, "%.*s%s %g%s %s %g for %s", mlen_i, metric,
                    rate, val, per, dir, r->x, d);
            else
                snprintf(e->reason, sizeof e->reason, "%.*s%s %g%s %s %g", mlen_i, metric, rate,
                    val, per, dir, r->x);
            int rc = deliver(e, s, true, ts, val);
            if (rc != 0)
                return rc;
            s->firing = true;
        }
        s->since_ts = since;
        return 0;
    }
    bool resolved;
    if (r->has_resolve) {
        resolved = r->above ? val < r->resolve_y : val > r->resolve_y;
        if (resolved)
            snprintf(e->reason, sizeof e->reason, "%.*s%s %g%s %s %g", mlen_i, metric, rate, val,
                per, r->above ? "below" : "above", r->resolve_y);
    } else {
        resolved = !cond;
        if (resolved)
            snprintf(e->reason, sizeof e->reason, "%.*s%s %g%s not %s %g", mlen_i, metric, rate,
                val, per, dir, r->x);
    }
    if (!resolved)
        return 0;
    int rc = deliver(e, s, false, ts, val);
    if (rc != 0)
        return rc;
    s->firing = false;
    s->since_ts = INT64_MIN;
    return 0;
}

static int point_state(
    tern_alert_engine *e, rstate *s, const char *metric, size_t mlen, int64_t ts, double v)
{
    const rule *r = &e->rules->rules[s->rule];
    if (!rule_matches_metric(r, metric, mlen))
        return 0;
    if (r->kind == KIND_ABSENCE) {
        if (ts <= s->last_ts)
            return 0; /* older data cannot shorten the silence already seen */
        if (s->firing && ts >= s->since_ts) {
            if (r->metric)
                snprintf(e->reason, sizeof e->reason, "%s data back", r->metric);
            else
                snprintf(e->reason, sizeof e->reason, "data back");
            int rc = deliver(e, s, false, ts, NAN);
            if (rc != 0)
                return rc;
            s->firing = false;
            s->last_ts = ts;
            heap_insert(e, s);
            return 0;
        }
        s->last_ts = ts;
        if (!s->firing) {
            if (s->heap_idx == NOT_IN_HEAP)
                heap_insert(e, s);
            else
                heap_down(e, s->heap_idx); /* the deadline only moves later */
        }
        return 0;
    }
    if (isnan(v))
        return 0;
    if (ts <= s->last_ts) {
        e->st.n_ignored_old++;
        return 0;
    }
    if (r->kind == KIND_RATE) {
        if (s->last_ts != INT64_MIN) {
            double rate = (v - s->prev_v) / (double)(ts - s->last_ts) * (double)r->per_ms;
            if (isfinite(rate)) {
                int rc = eval_value(e, s, r, ts, rate, metric, mlen);
                if (rc != 0)
                    return rc;
            }
        }
        s->prev_v = v;
    } else {
        int rc = eval_value(e, s, r, ts, v, metric, mlen);
        if (rc != 0)
            return rc;
    }
    s->last_ts = ts;
    return 0;
}

static bool valid_name(size_t len)
{
    return len >= 1 && len <= TERN_ALERT_MAX_NAME;
}

static bool valid_ts(int64_t ts)
{
    return ts >= -TERN_ALERT_TS_LIMIT && ts <= TERN_ALERT_TS_LIMIT;
}

int tern_alert_point(tern_alert_engine *e, const char *device, size_t dlen, const char *metric,
    size_t mlen, int64_t ts_ms, double v)
{
    if (!device || !metric || !valid_name(dlen) || !valid_name(mlen) || !valid_ts(ts_ms))
        return TERN_EINVAL;
    dev_entry *d = get_device(e, device, dlen);
    if (!d)
        return TERN_ENOMEM;
    e->st.n_points++;
    for (uint32_t i = 0; i < d->n_states; i++) {
        int rc = point_state(e, &d->states[i], metric, mlen, ts_ms, v);
        if (rc != 0)
            return rc;
    }
    return 0;
}

int tern_alert_tick(tern_alert_engine *e, int64_t watermark_ms)
{
    if (watermark_ms == INT64_MIN)
        return 0;
    if (!valid_ts(watermark_ms))
        return TERN_EINVAL;
    while (e->heap_len > 0) {
        rstate *s = e->heap[0];
        int64_t due = deadline(e, s);
        if (due > watermark_ms)
            break;
        const rule *r = &e->rules->rules[s->rule];
        char d[24];
        fmt_duration(d, sizeof d, r->absent_ms);
        if (r->metric)
            snprintf(e->reason, sizeof e->reason, "no %s data for %s", r->metric, d);
        else
            snprintf(e->reason, sizeof e->reason, "no data for %s", d);
        int rc = deliver(e, s, true, due, NAN);
        if (rc != 0)
            return rc;
        heap_remove(e, s);
        s->firing = true;
        s->since_ts = due;
    }
    return 0;
}

int tern_alert_will(tern_alert_engine *e, const char *device, size_t dlen, int64_t ts_ms)
{
    if (!device || !valid_name(dlen) || !valid_ts(ts_ms))
        return TERN_EINVAL;
    dev_entry *d = get_device(e, device, dlen);
    if (!d)
        return TERN_ENOMEM;
    for (uint32_t i = 0; i < d->n_states; i++) {
        rstate *s = &d->states[i];
        const rule *r = &e->rules->rules[s->rule];
        if (r->kind != KIND_ABSENCE || !r->on_will || s->firing)
            continue;
        snprintf(e->reason, sizeof e->reason, "last will");
        int rc = deliver(e, s, true, ts_ms, NAN);
        if (rc != 0)
            return rc;
        if (s->heap_idx != NOT_IN_HEAP)
            heap_remove(e, s);
        s->firing = true;
        s->since_ts = ts_ms;
    }
    return 0;
}

void tern_alert_get_stats(const tern_alert_engine *e, tern_alert_stats *out)
{
    *out = e->st;
}

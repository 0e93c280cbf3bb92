/*
 * metrics.c: metric families with labelled instances, atomic updates, Prometheus rendering.
 */
#include "base/metrics.h"

#include "base/alloc.h"
#include "base/error.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

enum metric_type { TYPE_COUNTER, TYPE_GAUGE, TYPE_HISTOGRAM };

struct tern_metrics_counter {
    uint64_t value;
};

struct tern_metrics_gauge {
    int64_t value;
};

struct tern_metrics_histogram {
    tern_histogram h;
};

typedef struct instance {
    struct instance *next;
    size_t n_labels;
    char *label_names[TERN_METRICS_MAX_LABELS];
    char *label_values[TERN_METRICS_MAX_LABELS];
    union {
        tern_metrics_counter counter;
        tern_metrics_gauge gauge;
        tern_metrics_histogram histogram;
    } u;
} instance;

typedef struct family {
    struct family *next;
    char *name;
    char *help;
    enum metric_type type;
    double divisor;
    instance *first, *last;
} family;

struct tern_metrics {
    pthread_mutex_t lock;
    family *first, *last;
};

static tern_metrics default_registry = { PTHREAD_MUTEX_INITIALIZER, NULL, NULL };

static const double quantiles[] = { 0.5, 0.9, 0.99, 0.999 };

tern_metrics *tern_metrics_default(void)
{
    return &default_registry;
}

int tern_metrics_create(tern_metrics **out)
{
    tern_metrics *m = tern_calloc(1, sizeof *m);
    if (!m)
        return TERN_ENOMEM;
    pthread_mutex_init(&m->lock, NULL);
    *out = m;
    return 0;
}

static void instance_free(instance *in)
{
    for (size_t i = 0; i < in->n_labels; i++) {
        tern_free(in->label_names[i]);
        tern_free(in->label_values[i]);
    }
    tern_free(in);
}

static void family_free(family *f)
{
    instance *in = f->first;
    while (in) {
        instance *next = in->next;
        instance_free(in);
        in = next;
    }
    tern_free(f->name);
    tern_free(f->help);
    tern_free(f);
}

void tern_metrics_destroy(tern_metrics *m)
{
    if (!m)
        return;
    TERN_ASSERT(m != &default_registry);
    family *f = m->first;
    while (f) {
        family *next = f->next;
        family_free(f);
        f = next;
    }
    pthread_mutex_destroy(&m->lock);
    tern_free(m);
}

static bool name_char(char c, bool first, bool colon_ok)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return true;
    if (c == ':')
        return colon_ok;
    return !first && c >= '0' && c <= '9';
}

bool tern_metrics_name_valid(const char *name)
{
    if (!name || !*name)
        return false;
    for (size_t i = 0; name[i]; i++) {
        if (!name_char(name[i], i == 0, true))
            return false;
    }
    return true;
}

bool tern_metrics_label_name_valid(const char *name)
{
    if (!name || !*name || (name[0] == '_' && name[1] == '_'))
        return false;
    for (size_t i = 0; name[i]; i++) {
        if (!name_char(name[i], i == 0, false))
            return false;
    }
    return true;
}

/* utf8_valid: well-formed UTF-8 (no overlongs, no surrogates, <= U+10FFFF). */
static bool utf8_valid(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p;
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            n = 1;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            n = 2;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xc0) != 0x80)
                return false; /* also stops at the NUL */
            cp = cp << 6 | (p[i] & 0x3f);
        }
        if ((n == 2 && cp < 0x800) || (n == 3 && (cp < 0x10000 || cp > 0x10ffff))
            || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        p += n + 1;
    }
    return true;
}

static int check_labels(const tern_metrics_label *labels, size_t n_labels, bool histogram)
{
    if (n_labels > TERN_METRICS_MAX_LABELS || (n_labels > 0 && !labels))
        return TERN_EINVAL;
    for (size_t i = 0; i < n_labels; i++) {
        if (!tern_metrics_label_name_valid(labels[i].name) || !labels[i].value
            || !utf8_valid(labels[i].value))
            return TERN_EINVAL;
        if (histogram && strcmp(labels[i].name, "quantile") == 0)
            return TERN_EINVAL;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(labels[i].name, labels[j].name) == 0)
                return TERN_EINVAL;
        }
    }
    return 0;
}

static bool same_labels(const instance *in, const tern_metrics_label *labels, size_t n_labels)
{
    if (in->n_labels != n_labels)
        return false;
    for (size_t i = 0; i < n_labels; i++) {
        if (strcmp(in->label_names[i], labels[i].name) != 0
            || strcmp(in->label_values[i], labels[i].value) != 0)
            return false;
    }
    return true;
}

static instance *instance_new(const tern_metrics_label *labels, size_t n_labels)
{
    instance *in = tern_calloc(1, sizeof *in);
    if (!in)
        return NULL;
    for (size_t i = 0; i < n_labels; i++) {
        in->label_names[i] = tern_strdup(labels[i].name);
        in->label_values[i] = tern_strdup(labels[i].value);
        in->n_labels = i + 1;
        if (!in->label_names[i] || !in->label_values[i]) {
            instance_free(in);
            return NULL;
        }
    }
    return in;
}

/* add finds or creates the instance; returns 0 and sets *out, or an error. */
static int add(tern_metrics *m, const char *name, const char *help, enum metric_type type,
    double divisor, const tern_metrics_label *labels, size_t n_labels, instance **out)
{
    if (!m)
        m = &default_registry;
    if (!tern_metrics_name_valid(name))
        return TERN_EINVAL;
    int rc = check_labels(labels, n_labels, type == TYPE_HISTOGRAM);
    if (rc)
        return rc;
    if (type == TYPE_HISTOGRAM && !(divisor > 0.0 && isfinite(divisor)))
        return TERN_EINVAL;

    pthread_mutex_lock(&m->lock);
    family *f = m->first;
    while (f && strcmp(f->name, name) != 0)
        f = f->next;
    family *new_family = NULL;
    instance *in = NULL;
    if (f) {
        if (f->type != type || (type == TYPE_HISTOGRAM && f->divisor != divisor)) {
            rc = TERN_EEXIST;
            goto done;
        }
        for (in = f->first; in; in = in->next) {
            if (same_labels(in, labels, n_labels))
                goto done;
        }
    } else {
        new_family = tern_calloc(1, sizeof *new_family);
        if (!new_family)
            goto nomem;
        new_family->name = tern_strdup(name);
        new_family->help = tern_strdup(help ? help : "");
        if (!new_family->name || !new_family->help)
            goto nomem;
        new_family->type = type;
        new_family->divisor = divisor;
        f = new_family;
    }
    in = instance_new(labels, n_labels);
    if (!in)
        goto nomem;
    if (type == TYPE_HISTOGRAM)
        tern_histogram_init(&in->u.histogram.h);
    if (f->last)
        f->last->next = in;
    else
        f->first = in;
    f->last = in;
    if (new_family) {
        if (m->last)
            m->last->next = new_family;
        else
            m->first = new_family;
        m->last = new_family;
    }
    goto done;
nomem:
    if (new_family)
        family_free(new_family);
    in = NULL;
    rc = TERN_ENOMEM;
done:
    pthread_mutex_unlock(&m->lock);
    if (rc == 0)
        *out = in;
    return rc;
}

int tern_metrics_add_counter(tern_metrics *m, const char *name, const char *help,
    const tern_metrics_label *labels, size_t n_labels, tern_metrics_counter **out)
{
    instance *in;
    int rc = add(m, name, help, TYPE_COUNTER, 0, labels, n_labels, &in);
    if (rc == 0)
        *out = &in->u.counter;
    return rc;
}

int tern_metrics_add_gauge(tern_metrics *m, const char *name, const char *help,
    const tern_metrics_label *labels, size_t n_labels, tern_metrics_gauge **out)
{
    instance *in;
    int rc = add(m, name, help, TYPE_GAUGE, 0, labels, n_labels, &in);
    if (rc == 0)
        *out = &in->u.gauge;
    return rc;
}

int tern_metrics_add_histogram(tern_metrics *m, const char *name, const char *help,
    const tern_metrics_label *labels, size_t n_labels, double divisor, tern_metrics_histogram **out)
{
    instance *in;
    int rc = add(m, name, help, TYPE_HISTOGRAM, divisor, labels, n_labels, &in);
    if (rc == 0)
        *out = &in->u.histogram;
    return rc;
}

void tern_metrics_counter_add(tern_metrics_counter *c, uint64_t n)
{
    __atomic_fetch_add(&c->value, n, __ATOMIC_RELAXED);
}

void tern_metrics_counter_inc(tern_metrics_counter *c)
{
    __atomic_fetch_add(&c->value, 1, __ATOMIC_RELAXED);
}

void tern_metrics_counter_follow(tern_metrics_counter *c, uint64_t *seen, uint64_t total)
{
    if (total > *seen)
        tern_metrics_counter_add(c, total - *seen);
    *seen = total;
}

uint64_t tern_metrics_counter_get(const tern_metrics_counter *c)
{
    return __atomic_load_n(&c->value, __ATOMIC_RELAXED);
}

void tern_metrics_gauge_set(tern_metrics_gauge *g, int64_t v)
{
    __atomic_store_n(&g->value, v, __ATOMIC_RELAXED);
}

void tern_metrics_gauge_add(tern_metrics_gauge *g, int64_t delta)
{
    __atomic_fetch_add(&g->value, delta, __ATOMIC_RELAXED);
}

int64_t tern_metrics_gauge_get(const tern_metrics_gauge *g)
{
    return __atomic_load_n(&g->value, __ATOMIC_RELAXED);
}

void tern_metrics_histogram_record(tern_metrics_histogram *h, uint64_t value)
{
    tern_histogram_record(&h->h, value);
}

const tern_histogram *tern_metrics_histogram_get(const tern_metrics_histogram *h)
{
    return &h->h;
}

/* append_escaped writes s with \ and newline escaped, and " too when quote is set. */
static int append_escaped(tern_buf *out, const char *s, bool quote)
{
    int rc = 0;
    for (; *s && rc == 0; s++) {
        if (*s == '\\')
            rc = tern_buf_append(out, "\\\\", 2);
        else if (*s == '\n')
            rc = tern_buf_append(out, "\\n", 2);
        else if (*s == '"' && quote)
            rc = tern_buf_append(out, "\\\"", 2);
        else
            rc = tern_buf_append_u8(out, (uint8_t)*s);
    }
    return rc;
}

/* append_series writes name[suffix]{labels[,quantile="q"]} followed by a space. */
static int append_series(
    tern_buf *out, const char *name, const char *suffix, const instance *in, const char *quantile)
{
    int rc = tern_buf_printf(out, "%s%s", name, suffix);
    if (rc)
        return rc;
    if (in->n_labels == 0 && !quantile)
        return tern_buf_append_u8(out, ' ');
    rc = tern_buf_append_u8(out, '{');
    for (size_t i = 0; i < in->n_labels && rc == 0; i++) {
        rc = tern_buf_printf(out, "%s%s=\"", i ? "," : "", in->label_names[i]);
        if (rc == 0)
            rc = append_escaped(out, in->label_values[i], true);
        if (rc == 0)
            rc = tern_buf_append_u8(out, '"');
    }
    if (rc == 0 && quantile)
        rc = tern_buf_printf(out, "%squantile=\"%s\"", in->n_labels ? "," : "", quantile);
    if (rc == 0)
        rc = tern_buf_append(out, "} ", 2);
    return rc;
}

static int render_instance(tern_buf *out, const family *f, const instance *in)
{
    int rc;
    switch (f->type) {
    case TYPE_COUNTER:
        rc = append_series(out, f->name, "", in, NULL);
        if (rc == 0)
            rc = tern_buf_printf(
                out, "%llu\n", (unsigned long long)tern_metrics_counter_get(&in->u.counter));
        return rc;
    case TYPE_GAUGE:
        rc = append_series(out, f->name, "", in, NULL);
        if (rc == 0)
            rc = tern_buf_printf(out, "%lld\n", (long long)tern_metrics_gauge_get(&in->u.gauge));
        return rc;
    case TYPE_HISTOGRAM:
    default:
        break;
    }
    const tern_histogram *h = &in->u.histogram.h;
    uint64_t count = tern_histogram_count(h);
    rc = 0;
    for (size_t i = 0; i < sizeof quantiles / sizeof quantiles[0] && rc == 0; i++) {
        char q[16];
        snprintf(q, sizeof q, "%g", quantiles[i]);
        rc = append_series(out, f->name, "", in, q);
        if (rc)
            break;
        if (count == 0)
            rc = tern_buf_append_str(out, "NaN\n");
        else
            rc = tern_buf_printf(
                out, "%.9g\n", (double)tern_histogram_percentile(h, quantiles[i]) / f->divisor);
    }
    if (rc == 0)
        rc = append_series(out, f->name, "_sum", in, NULL);
    if (rc == 0)
        rc = tern_buf_printf(out, "%.9g\n", (double)tern_histogram_sum(h) / f->divisor);
    if (rc == 0)
        rc = append_series(out, f->name, "_count", in, NULL);
    if (rc == 0)
        rc = tern_buf_printf(out, "%llu\n", (unsigned long long)count);
    return rc;
}

int tern_metrics_render(tern_metrics *m, tern_buf *out)
{
    static const char *const type_names[] = { "counter", "gauge", "summary" };
    if (!m)
        m = &default_registry;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (const family *f = m->first; f && rc == 0; f = f->next) {
        rc = tern_buf_printf(out, "# HELP %s ", f->name);
        if (rc == 0)
            rc = append_escaped(out, f->help, false);
        if (rc == 0)
            rc = tern_buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
        for (const instance *in = f->first; in && rc == 0; in = in->next)
            rc = render_instance(out, f, in);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

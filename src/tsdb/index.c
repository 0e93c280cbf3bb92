/*
 * index.c: the TSDB's in-memory index: metrics (interned names), devices (name -> record holding
 * its tags and its series), series (device, metric) by id. Hash maps are open addressing over
 * ids (metrics) or device records (one map per lock stripe), keyed by the name, so a name is
 * stored once. Locking (see tsdb_int.h, "Lock stripes"): lookups hold db->mu or the device's
 * stripe; every change holds db->mu and the device's stripe (or runs alone, at open).
 */
#include "base/alloc.h"
#include "base/error.h"
#include "base/hash.h"
#include "tsdb/tsdb_int.h"

#include <stdlib.h>
#include <string.h>

uint64_t tsdb_name_hash(const char *s, size_t len)
{
    return tern_hash64(s, len, 0x7465726e74736462ull);
}

typedef const char *(*name_of_fn)(const tern_tsdb *db, uint32_t id, uint32_t *len);

static const char *metric_name_of(const tern_tsdb *db, uint32_t id, uint32_t *len)
{
    *len = db->metrics[id].len;
    return db->metrics[id].name;
}

static long map_find(
    const tern_tsdb *db, const tsdb_name_map *m, name_of_fn name_of, const char *name, size_t len)
{
    if (m->cap == 0)
        return -1;
    uint32_t mask = m->cap - 1;
    for (uint32_t i = (uint32_t)tsdb_name_hash(name, len) & mask;; i = (i + 1) & mask) {
        uint32_t slot = m->slots[i];
        if (slot == 0)
            return -1;
        uint32_t nl;
        const char *n = name_of(db, slot - 1, &nl);
        if (nl == len && memcmp(n, name, len) == 0)
            return (long)(slot - 1);
    }
}

static void map_put_nogrow(const tern_tsdb *db, tsdb_name_map *m, name_of_fn name_of, uint32_t id)
{
    uint32_t nl;
    const char *n = name_of(db, id, &nl);
    uint32_t mask = m->cap - 1;
    uint32_t i = (uint32_t)tsdb_name_hash(n, nl) & mask;
    while (m->slots[i] != 0)
        i = (i + 1) & mask;
    m->slots[i] = id + 1;
    m->used++;
}

static int map_put(const tern_tsdb *db, tsdb_name_map *m, name_of_fn name_of, uint32_t id)
{
    if ((uint64_t)(m->used + 1) * 4 > (uint64_t)m->cap * 3) {
        uint32_t ncap = m->cap ? m->cap * 2 : 64;
        uint32_t *old = m->slots;
        uint32_t ocap = m->cap;
        uint32_t *slots = tern_calloc(ncap, sizeof(*slots));
        if (!slots)
            return TERN_ENOMEM;
        m->slots = slots;
        m->cap = ncap;
        m->used = 0;
        for (uint32_t i = 0; i < ocap; i++)
            if (old[i])
                map_put_nogrow(db, m, name_of, old[i] - 1);
        tern_free(old);
    }
    map_put_nogrow(db, m, name_of, id);
    return 0;
}

static int grow(void **arr, uint32_t *cap, uint32_t need, size_t item)
{
    if (need <= *cap)
        return 0;
    uint32_t ncap = *cap ? *cap : 16;
    while (ncap < need)
        ncap *= 2;
    void *p = tern_realloc(*arr, (size_t)ncap * item);
    if (!p)
        return TERN_ENOMEM;
    memset((char *)p + (size_t)*cap * item, 0, (size_t)(ncap - *cap) * item);
    *arr = p;
    *cap = ncap;
    return 0;
}

tsdb_device *tsdb_device_find(tern_tsdb *db, const char *name, size_t len, uint64_t hash)
{
    const tsdb_stripe *st = &db->stripes[tsdb_stripe_of(hash)];
    if (st->cap == 0)
        return NULL;
    uint32_t mask = st->cap - 1;
    for (uint32_t i = (uint32_t)hash & mask;; i = (i + 1) & mask) {
        tsdb_device *d = st->slots[i];
        if (!d)
            return NULL;
        if (d->name_len == len && memcmp(d->name, name, len) == 0)
            return d;
    }
}

static void dev_map_put_nogrow(tsdb_stripe *st, tsdb_device *d, uint64_t hash)
{
    uint32_t mask = st->cap - 1;
    uint32_t i = (uint32_t)hash & mask;
    while (st->slots[i])
        i = (i + 1) & mask;
    st->slots[i] = d;
    st->used++;
}

static int dev_map_put(tsdb_stripe *st, tsdb_device *d, uint64_t hash)
{
    if ((uint64_t)(st->used + 1) * 4 > (uint64_t)st->cap * 3) {
        uint32_t ncap = st->cap ? st->cap * 2 : 64;
        tsdb_device **old = st->slots;
        uint32_t ocap = st->cap;
        tsdb_device **slots = tern_calloc(ncap, sizeof(*slots));
        if (!slots)
            return TERN_ENOMEM;
        st->slots = slots;
        st->cap = ncap;
        st->used = 0;
        for (uint32_t i = 0; i < ocap; i++)
            if (old[i])
                dev_map_put_nogrow(st, old[i], tsdb_name_hash(old[i]->name, old[i]->name_len));
        tern_free(old);
    }
    dev_map_put_nogrow(st, d, hash);
    return 0;
}

int tsdb_device_create_id(tern_tsdb *db, uint32_t id, const char *name, size_t len)
{
    if (len == 0 || len > 65535)
        return TERN_EINVAL;
    if (id < db->n_devices && db->devices[id])
        return TERN_EEXIST;
    uint64_t hash = tsdb_name_hash(name, len);
    if (tsdb_device_find(db, name, len, hash))
        return TERN_EEXIST;
    int rc = grow((void **)&db->devices, &db->cap_devices, id + 1, sizeof(*db->devices));
    if (rc)
        return rc;
    tsdb_device *d = tern_calloc(1, sizeof(*d));
    if (!d)
        return TERN_ENOMEM;
    d->name = tern_strndup(name, len);
    if (!d->name) {
        tern_free(d);
        return TERN_ENOMEM;
    }
    d->name_len = (uint32_t)len;
    d->id = id;
    d->stripe = tsdb_stripe_of(hash);
    rc = dev_map_put(&db->stripes[d->stripe], d, hash);
    if (rc == 0) {
        db->devices[id] = d;
        if (id >= db->n_devices)
            db->n_devices = id + 1;
    } else {
        db->devices[id] = NULL;
        tern_free(d->name);
        tern_free(d);
        return rc;
    }
    db->stats.devices++;
    return 0;
}

int tsdb_device_get(tern_tsdb *db, const char *name, size_t len, bool create, tsdb_device **out)
{
    tsdb_device *found = tsdb_device_find(db, name, len, tsdb_name_hash(name, len));
    if (found) {
        *out = found;
        return 0;
    }
    if (!create)
        return TERN_ENOTFOUND;
    uint32_t nid = db->n_devices;
    int rc = tsdb_device_create_id(db, nid, name, len);
    if (rc)
        return rc;
    *out = db->devices[nid];
    return 0;
}

/* ---- tenants: with a per-tenant series limit, series are counted per value of one device tag */

static const char *tenant_name_of(const tern_tsdb *db, uint32_t id, uint32_t *len)
{
    *len = db->tenants[id].len;
    return db->tenants[id].name;
}

static bool tenants_on(const tern_tsdb *db)
{
    return db->opt.max_series_per_tenant != 0;
}

/* The tenant tag's value in canonical tags ("k=v,k=v", backslash escapes kept): "" if absent. */
static void tenant_value(const tern_tsdb *db, const char *tags, const char **v, size_t *vl)
{
    *v = "";
    *vl = 0;
    if (!tags)
        return;
    size_t kl = strlen(db->tenant_tag);
    const char *p = tags;
    while (*p) {
        const char *e = p;
        while (*e && *e != ',')
            e += (e[0] == '\\' && e[1]) ? 2 : 1;
        if ((size_t)(e - p) > kl && memcmp(p, db->tenant_tag, kl) == 0 && p[kl] == '=') {
            *v = p + kl + 1;
            *vl = (size_t)(e - *v);
            return;
        }
        p = *e ? e + 1 : e;
    }
}

/* The id of the tenant named by tags, made on first sight. */
static int tenant_of_tags(tern_tsdb *db, const char *tags, uint32_t *out)
{
    const char *v;
    size_t vl;
    tenant_value(db, tags, &v, &vl);
    long id = map_find(db, &db->tenant_map, tenant_name_of, v, vl);
    if (id >= 0) {
        *out = (uint32_t)id;
        return 0;
    }
    uint32_t nid = db->n_tenants;
    int rc = grow((void **)&db->tenants, &db->cap_tenants, nid + 1, sizeof(*db->tenants));
    if (rc)
        return rc;
    char *name = tern_strndup(v, vl);
    if (!name)
        return TERN_ENOMEM;
    db->tenants[nid] = (tsdb_tenant) { name, (uint32_t)vl, 0 };
    rc = map_put(db, &db->tenant_map, tenant_name_of, nid);
    if (rc) {
        tern_free(name);
        return rc;
    }
    db->n_tenants = nid + 1;
    *out = nid;
    return 0;
}

/* Settles which tenant the device's series count toward (its tags now), once. */
static int device_tenant(tern_tsdb *db, tsdb_device *d)
{
    if (d->has_tenant)
        return 0;
    int rc = tenant_of_tags(db, d->tags, &d->tenant);
    if (rc == 0)
        d->has_tenant = true;
    return rc;
}

const tsdb_tenant *tsdb_tenant_over(const tern_tsdb *db, const tsdb_device *d)
{
    if (!tenants_on(db) || !d->has_tenant)
        return NULL;
    const tsdb_tenant *t = &db->tenants[d->tenant];
    return t->series >= db->opt.max_series_per_tenant ? t : NULL;
}

int tsdb_device_set_tags(tern_tsdb *db, tsdb_device *d, const char *tags, size_t len, bool *changed)
{
    *changed = false;
    if (len == 0) {
        return 0; /* absent tags never erase stored ones */
    }
    if (d->tags && strlen(d->tags) == len && memcmp(d->tags, tags, len) == 0)
        return 0;
    char *t = tern_strndup(tags, len);
    if (!t)
        return TERN_ENOMEM;
    if (tenants_on(db) && d->has_tenant) {
        /* its series move along to the tenant the new tags name */
        uint32_t nt;
        int rc = tenant_of_tags(db, t, &nt);
        if (rc) {
            tern_free(t);
            return rc;
        }
        db->tenants[d->tenant].series -= d->n_series;
        db->tenants[nt].series += d->n_series;
        d->tenant = nt;
    }
    tern_free(d->tags);
    d->tags = t;
    *changed = true;
    return 0;
}

int tsdb_metric_create_id(tern_tsdb *db, uint32_t id, const char *name, size_t len)
{
    if (len == 0 || len > 65535)
        return TERN_EINVAL;
    if (id < db->n_metrics && db->metrics[id].name)
        return TERN_EEXIST;
    if (map_find(db, &db->metric_map, metric_name_of, name, len) >= 0)
        return TERN_EEXIST;
    int rc = grow((void **)&db->metrics, &db->cap_metrics, id + 1, sizeof(*db->metrics));
    if (rc)
        return rc;
    char *n = tern_strndup(name, len);
    if (!n)
        return TERN_ENOMEM;
    db->metrics[id].name = n;
    db->metrics[id].len = (uint32_t)len;
    if (id >= db->n_metrics)
        db->n_metrics = id + 1;
    rc = map_put(db, &db->metric_map, metric_name_of, id);
    if (rc) {
        db->metrics[id].name = NULL;
        tern_free(n);
    }
    return rc;
}

int tsdb_metric_get(tern_tsdb *db, const char *name, size_t len, bool create, uint32_t *out)
{
    long id = map_find(db, &db->metric_map, metric_name_of, name, len);
    if (id >= 0) {
        *out = (uint32_t)id;
        return 0;
    }
    if (!create)
        return TERN_ENOTFOUND;
    uint32_t nid = db->n_metrics;
    int rc = tsdb_metric_create_id(db, nid, name, len);
    if (rc == 0)
        *out = nid;
    return rc;
}

static int metric_cmp(const tern_tsdb *db, uint32_t a, uint32_t b)
{
    const tsdb_metric *ma = &db->metrics[a], *mb = &db->metrics[b];
    size_t n = ma->len < mb->len ? ma->len : mb->len;
    int c = memcmp(ma->name, mb->name, n);
    if (c)
        return c;
    return (ma->len > mb->len) - (ma->len < mb->len);
}

/* Position of metric in d's series (sorted by metric name); *found when present. */
static uint32_t device_series_pos(
    const tern_tsdb *db, const tsdb_device *d, uint32_t metric, bool *found)
{
    /* Most devices have tens of series: comparing ids is cheaper than comparing names. The
     * binary search by name (the sort order) then only runs to place a new series. */
    if (d->n_series <= 64) {
        for (uint32_t i = 0; i < d->n_series; i++)
            if (d->metric[i] == metric) {
                *found = true;
                return i;
            }
    }
    uint32_t lo = 0, hi = d->n_series;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        uint32_t m = d->metric[mid];
        if (m == metric) {
            *found = true;
            return mid;
        }
        if (metric_cmp(db, m, metric) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

int tsdb_series_create_id(
    tern_tsdb *db, uint32_t id, uint32_t device, uint32_t metric, uint8_t kind)
{
    if (device >= db->n_devices || !db->devices[device] || metric >= db->n_metrics
        || !db->metrics[metric].name || (kind != TERN_VALUE_F64 && kind != TERN_VALUE_I64))
        return TERN_EINVAL;
    if (id < db->n_series && db->series[id])
        return TERN_EEXIST;
    tsdb_device *d = db->devices[device];
    bool found;
    uint32_t pos = device_series_pos(db, d, metric, &found);
    if (found)
        return TERN_EEXIST;
    int rc = tenants_on(db) ? device_tenant(db, d) : 0;
    if (rc)
        return rc;
    rc = grow((void **)&db->series, &db->cap_series, id + 1, sizeof(*db->series));
    uint32_t cap = d->cap_series;
    if (!rc)
        rc = grow((void **)&d->series, &cap, d->n_series + 1, sizeof(*d->series));
    if (!rc && cap != d->cap_series) {
        uint32_t mcap = d->cap_series, pcap = d->cap_series;
        rc = grow((void **)&d->metric, &mcap, cap, sizeof(*d->metric));
        if (!rc)
            rc = grow((void **)&d->sp, &pcap, cap, sizeof(*d->sp));
        if (!rc)
            d->cap_series = cap;
    }
    if (rc)
        return rc;
    tsdb_series *s = tern_calloc(1, sizeof(*s));
    if (!s)
        return TERN_ENOMEM;
    s->id = id;
    s->device = device;
    s->metric = metric;
    s->kind = kind;
    s->last_ts = INT64_MIN;
    s->stripe = &db->stripes[d->stripe];
    db->series[id] = s;
    if (id >= db->n_series)
        db->n_series = id + 1;
    memmove(&d->series[pos + 1], &d->series[pos], (size_t)(d->n_series - pos) * sizeof(*d->series));
    memmove(&d->metric[pos + 1], &d->metric[pos], (size_t)(d->n_series - pos) * sizeof(*d->metric));
    memmove(&d->sp[pos + 1], &d->sp[pos], (size_t)(d->n_series - pos) * sizeof(*d->sp));
    d->series[pos] = id;
    d->metric[pos] = metric;
    d->sp[pos] = s;
    d->n_series++;
    db->stats.series++;
    if (tenants_on(db))
        db->tenants[d->tenant].series++;
    return 0;
}

int tsdb_device_know(tsdb_device *d, uint32_t metric, uint8_t kind)
{
    if (metric >= (1u << 30))
        return TERN_ERANGE;
    uint32_t e = metric << 2 | kind;
    for (uint32_t i = 0; i < d->n_known; i++)
        if (d->known[i] >> 2 == metric) {
            d->known[i] = e; /* newer blocks are indexed last: their kind wins */
            return 0;
        }
    int rc = grow((void **)&d->known, &d->cap_known, d->n_known + 1, sizeof(*d->known));
    if (rc)
        return rc;
    d->known[d->n_known++] = e;
    return 0;
}

tsdb_series *tsdb_device_series(const tsdb_device *d, uint32_t metric, uint32_t *hint)
{
    uint32_t h = *hint;
    if (h < d->n_series && d->metric[h] == metric)
        return d->sp[h];
    for (uint32_t i = 0; i < d->n_series; i++)
        if (d->metric[i] == metric) {
            *hint = i;
            return d->sp[i];
        }
    return NULL;
}

uint8_t tsdb_device_known_kind(const tsdb_device *d, uint32_t metric)
{
    for (uint32_t i = 0; i < d->n_known; i++)
        if (d->known[i] >> 2 == metric)
            return (uint8_t)(d->known[i] & 3);
    return 0;
}

int tsdb_series_get(
    tern_tsdb *db, tsdb_device *d, uint32_t metric, uint8_t kind, bool create, tsdb_series **out)
{
    bool found;
    uint32_t pos = device_series_pos(db, d, metric, &found);
    if (found) {
        tsdb_series *s = d->sp[pos];
        if (kind != 0 && s->kind != kind)
            return TERN_EINVAL;
        *out = s;
        return 0;
    }
    if (!create)
        return TERN_ENOTFOUND;
    uint8_t was = tsdb_device_known_kind(d, metric);
    if (was && kind != 0 && was != kind)
        return TERN_EINVAL;
    if (db->opt.max_series && !db->replaying && db->stats.series >= db->opt.max_series)
        return TERN_EQUOTA;
    if (tenants_on(db)) {
        int rc = device_tenant(db, d);
        if (rc)
            return rc;
        if (!db->replaying && tsdb_tenant_over(db, d))
            return TERN_EQUOTA;
    }
    uint32_t id = db->n_series;
    int rc = tsdb_series_create_id(db, id, d->id, metric, kind);
    if (rc)
        return rc;
    *out = db->series[id];
    return 0;
}

int tsdb_device_name_cmp(const void *a, const void *b, void *db_arg)
{
    const tern_tsdb *db = db_arg;
    const tsdb_device *x = db->devices[*(const uint32_t *)a];
    const tsdb_device *y = db->devices[*(const uint32_t *)b];
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    return c ? c : (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

void tsdb_index_free(tern_tsdb *db)
{
    for (uint32_t i = 0; i < db->n_series; i++)
        if (db->series[i])
            tsdb_series_free(db->series[i]);
    tern_free(db->series);
    for (uint32_t i = 0; i < db->n_devices; i++) {
        tsdb_device *d = db->devices[i];
        if (!d)
            continue;
        tern_free(d->name);
        tern_free(d->tags);
        tern_free(d->series);
        tern_free(d->metric);
        tern_free(d->sp);
        tern_free(d->known);
        tern_free(d);
    }
    tern_free(db->devices);
    for (uint32_t i = 0; i < db->n_metrics; i++)
        tern_free(db->metrics[i].name);
    tern_free(db->metrics);
    if (db->stripes)
        for (uint32_t i = 0; i < TSDB_STRIPES; i++)
            tern_free(db->stripes[i].slots);
    tern_free(db->metric_map.slots);
    for (uint32_t i = 0; i < db->n_tenants; i++)
        tern_free(db->tenants[i].name);
    tern_free(db->tenants);
    tern_free(db->tenant_map.slots);
}

/* ---- tags: "k=v,k=v" ---- */

typedef struct tag_span {
    const char *p;
    size_t len;    /* whole "k=v" */
    size_t keylen; /* up to '=' */
} tag_span;

static int tag_span_cmp(const void *a, const void *b)
{
    const tag_span *x = a, *y = b;
    size_t n = x->keylen < y->keylen ? x->keylen : y->keylen;
    int c = memcmp(x->p, y->p, n);
    if (c)
        return c;
    return (x->keylen > y->keylen) - (x->keylen < y->keylen);
}

int tsdb_canonical_tags(const char *tags, size_t len, tern_buf *out)
{
    tern_buf_reset(out);
    if (len == 0)
        return tern_buf_append_u8(out, 0) == 0 ? (out->len = 0, 0) : TERN_ENOMEM;
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += tags[i] == ',';
    tag_span stack_spans[32];
    tag_span *spans = n <= 32 ? stack_spans : tern_malloc(n * sizeof(*spans));
    if (!spans)
        return TERN_ENOMEM;
    size_t k = 0, start = 0;
    int rc = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && tags[i] != ',')
            continue;
        const char *p = tags + start;
        size_t l = i - start;
        const char *eq = memchr(p, '=', l);
        if (l == 0 || !eq || eq == p) {
            rc = TERN_EINVAL;
            break;
        }
        spans[k].p = p;
        spans[k].len = l;
        spans[k].keylen = (size_t)(eq - p);
        k++;
        start = i + 1;
    }
    if (rc == 0) {
        qsort(spans, k, sizeof(*spans), tag_span_cmp);
        for (size_t i = 0; i < k && rc == 0; i++) {
            if (i && tag_span_cmp(&spans[i - 1], &spans[i]) == 0) {
                /* duplicate key: the later one (after a stable sort, undefined) - refuse */
                rc = TERN_EINVAL;
                break;
            }
            if (i)
                rc = tern_buf_append_u8(out, ',');
            if (!rc)
                rc = tern_buf_append(out, spans[i].p, spans[i].len);
        }
        if (!rc)
            rc = tern_buf_append_u8(out, 0);
        if (!rc)
            out->len--;
    }
    if (spans != stack_spans)
        tern_free(spans);
    return rc;
}

const char *tsdb_tag_value(const char *tags, const char *key, size_t *len)
{
    if (!tags)
        return NULL;
    size_t kl = strlen(key);
    const char *p = tags;
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        if ((size_t)(end - p) > kl && memcmp(p, key, kl) == 0 && p[kl] == '=') {
            *len = (size_t)(end - p) - kl - 1;
            return p + kl + 1;
        }
        p = *end ? end + 1 : end;
    }
    return NULL;
}

bool tsdb_tags_match(const char *tags, const char *filter)
{
    if (!filter || !*filter)
        return true;
    const char *p = filter;
    char key[256];
    while (*p) {
        const char *end = strchr(p, ',');
        if (!end)
            end = p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(end - p));
        if (!eq || (size_t)(eq - p) >= sizeof(key))
            return false;
        memcpy(key, p, (size_t)(eq - p));
        key[eq - p] = 0;
        size_t vl;
        const char *v = tsdb_tag_value(tags, key, &vl);
        size_t want = (size_t)(end - eq - 1);
        if (!v || vl != want || memcmp(v, eq + 1, vl) != 0)
            return false;
        p = *end ? end + 1 : end;
    }
    return true;
}

/*
 * fuzz_telemetry_payload.c: arbitrary bytes through every telemetry payload decoder and the
 * topic parser (docs/formats/telemetry-payload.md).
 *
 * Each input is decoded as a sample (JSON or binary), a single value (JSON object or bare
 * number, topic metric "x") and a summary, and parsed as a topic. Promises checked on every
 * input: no crash and no read outside the input; an error leaves no points, carries a reason,
 * an offset inside the input and the code TERN_EPROTO or TERN_EVERSION; every point's metric is a
 * valid name lying inside the input, the schema or the topic metric. Whatever decodes is encoded
 * again and decoded back to the same points (names, ts, seq, sample index, window end, values and
 * aggregates bit for bit): samples in their own form and in the other one (binary with the EV
 * schema when every name is in it), single values and summaries in theirs.
 */
#include "base/buf.h"
#include "base/error.h"
#include "base/varint.h"
#include "telemetry/payload.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static tern_payload_decoder g_first, g_again;
static bool g_ready;

static bool inside(const char *p, size_t n, const void *base, size_t size)
{
    const char *b = base;
    return p >= b && p + n <= b + size;
}

static bool same_bits(double a, double b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

static void same_points(const tern_payload_decoder *a, const tern_payload_decoder *b)
{
    check(a->n_points == b->n_points);
    for (size_t i = 0; i < a->n_points; i++) {
        const tern_payload_point *p = &a->points[i], *q = &b->points[i];
        check(p->metric_len == q->metric_len && memcmp(p->metric, q->metric, p->metric_len) == 0);
        check(p->ts_ms == q->ts_ms && p->seq == q->seq && p->sample == q->sample);
        check(p->end_ms == q->end_ms);
        check(p->v.is_int == q->v.is_int);
        check(p->v.is_int ? p->v.i == q->v.i : same_bits(p->v.f, q->v.f));
        check(same_bits(p->agg.min, q->agg.min) && same_bits(p->agg.max, q->agg.max));
        check(same_bits(p->agg.sum, q->agg.sum) && same_bits(p->agg.last, q->agg.last));
        check(p->agg.count == q->agg.count);
    }
}

static void check_error(
    int rc, const tern_payload_error *e, const tern_payload_decoder *d, size_t size)
{
    check(rc == TERN_EPROTO || rc == TERN_EVERSION);
    check(e->code == rc && e->reason[0] != '\0' && e->offset <= size);
    check(strlen(e->reason) < sizeof e->reason);
    check(d->n_points == 0);
}

/* Copies of the decoded points as encoder input: samples, names (NUL-terminated) and values. */
typedef struct regroup {
    tern_payload_sample *samples;
    size_t n_samples;
    char **names;
    tern_payload_value *values;
    tern_payload_agg *aggs;
} regroup;

static void regroup_free(regroup *r, size_t n_points)
{
    for (size_t i = 0; i < n_points; i++)
        free(r->names[i]);
    free(r->names);
    free(r->values);
    free(r->aggs);
    free(r->samples);
}

static void regroup_make(regroup *r, const tern_payload_decoder *d)
{
    size_t n = d->n_points;
    r->names = calloc(n, sizeof *r->names);
    r->values = calloc(n, sizeof *r->values);
    r->aggs = calloc(n, sizeof *r->aggs);
    r->samples = calloc(n, sizeof *r->samples);
    check(r->names && r->values && r->aggs && r->samples);
    r->n_samples = 0;
    for (size_t i = 0; i < n; i++) {
        const tern_payload_point *p = &d->points[i];
        r->names[i] = malloc(p->metric_len + 1);
        check(r->names[i] != NULL);
        memcpy(r->names[i], p->metric, p->metric_len);
        r->names[i][p->metric_len] = '\0';
        r->values[i] = p->v;
        r->aggs[i] = p->agg;
        if (i == 0 || p->sample != d->points[i - 1].sample) {
            check(i == 0 || p->sample == d->points[i - 1].sample + 1);
            tern_payload_sample *s = &r->samples[r->n_samples++];
            s->ts_ms = p->ts_ms;
            s->seq = p->seq;
            s->names = (const char *const *)&r->names[i];
            s->values = &r->values[i];
        }
        r->samples[r->n_samples - 1].n_values++;
    }
}

static const char g_topic_metric[] = "x";

/* is_schema_name: name is (the storage of) a metric name of a built-in schema. */
static bool is_schema_name(const char *name)
{
    for (uint32_t id = 1; tern_payload_schema_builtin(id); id++) {
        const tern_payload_schema *s = tern_payload_schema_builtin(id);
        for (size_t i = 0; i < s->n_metrics; i++)
            if (s->metrics[i].name == name)
                return true;
    }
    return false;
}

static void check_points_valid(const tern_payload_decoder *d, const uint8_t *data, size_t size)
{
    check(d->n_points >= 1 && d->n_points <= TERN_PAYLOAD_MAX_POINTS);
    for (size_t i = 0; i < d->n_points; i++) {
        const tern_payload_point *p = &d->points[i];
        check(tern_payload_metric_name_check(p->metric, p->metric_len));
        check(inside(p->metric, p->metric_len, data, size) || p->metric == g_topic_metric
            || is_schema_name(p->metric));
        check(p->end_ms >= p->ts_ms);
    }
}

static void redecode(tern_buf *b, tern_payload_kind kind)
{
    tern_payload_error e;
    int rc = tern_payload_decode(&g_again, kind, b->data, b->len, g_topic_metric, 1, 123, &e);
    check(rc == 0);
    same_points(&g_first, &g_again);
}

static void fuzz_sample(const uint8_t *data, size_t size)
{
    tern_payload_error e;
    int rc = tern_payload_decode(&g_first, TERN_PAYLOAD_SAMPLE, data, size, NULL, 0, 0, &e);
    if (rc) {
        check_error(rc, &e, &g_first, size);
        return;
    }
    check_points_valid(&g_first, data, size);
    regroup r;
    regroup_make(&r, &g_first);
    tern_buf b = TERN_BUF_INIT;
    check(tern_payload_encode_json(&b, r.samples, r.n_samples) == 0);
    redecode(&b, TERN_PAYLOAD_SAMPLE);
    bool all_ev = true;
    const tern_payload_schema *ev = tern_payload_schema_builtin(TERN_PAYLOAD_SCHEMA_EV);
    for (size_t i = 0; i < g_first.n_points; i++)
        all_ev = all_ev && tern_payload_schema_find(ev, r.names[i], strlen(r.names[i])) >= 0;
    if (all_ev) {
        /* Binary orders each sample by metric id: compare after sorting the JSON order away. */
        tern_buf_reset(&b);
        check(tern_payload_encode_binary(&b, ev, r.samples, r.n_samples) == 0);
        rc = tern_payload_decode(&g_again, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e);
        check(rc == 0 && g_again.n_points == g_first.n_points);
        for (size_t i = 0; i < g_again.n_points; i++) {
            const tern_payload_point *q = &g_again.points[i];
            bool found = false;
            for (size_t k = 0; k < g_first.n_points && !found; k++) {
                const tern_payload_point *p = &g_first.points[k];
                if (p->sample != q->sample || p->metric_len != q->metric_len
                    || memcmp(p->metric, q->metric, p->metric_len) != 0)
                    continue;
                found = true;
                check(p->ts_ms == q->ts_ms && p->seq == q->seq && p->v.is_int == q->v.is_int);
                check(p->v.is_int ? p->v.i == q->v.i : same_bits(p->v.f, q->v.f));
            }
            check(found);
        }
    }
    /* Binary input: its own schema gives back the same points in the same order. */
    if (data[0] == TERN_PAYLOAD_BINARY_V1) {
        uint64_t id;
        size_t n;
        check(tern_varint_decode_u64(data + 2, size - 2, &id, &n) == 0);
        const tern_payload_schema *s = tern_payload_schema_builtin((uint32_t)id);
        check(s != NULL && s->id == id);
        tern_buf_reset(&b);
        check(tern_payload_encode_binary(&b, s, r.samples, r.n_samples) == 0);
        redecode(&b, TERN_PAYLOAD_SAMPLE);
    }
    tern_buf_free(&b);
    regroup_free(&r, g_first.n_points);
}

static void fuzz_single(const uint8_t *data, size_t size)
{
    tern_payload_error e;
    int rc = tern_payload_decode(
        &g_first, TERN_PAYLOAD_SINGLE, data, size, g_topic_metric, 1, 123, &e);
    if (rc) {
        check_error(rc, &e, &g_first, size);
        return;
    }
    check(g_first.n_points == 1);
    check_points_valid(&g_first, data, size);
    const tern_payload_point *p = &g_first.points[0];
    tern_buf b = TERN_BUF_INIT;
    check(tern_payload_encode_single(&b, p->ts_ms, p->seq, p->v) == 0);
    redecode(&b, TERN_PAYLOAD_SINGLE);
    tern_buf_free(&b);
}

static void fuzz_summary(const uint8_t *data, size_t size)
{
    tern_payload_error e;
    int rc = tern_payload_decode(&g_first, TERN_PAYLOAD_SUMMARY, data, size, NULL, 0, 0, &e);
    if (rc) {
        check_error(rc, &e, &g_first, size);
        return;
    }
    check_points_valid(&g_first, data, size);
    regroup r;
    regroup_make(&r, &g_first);
    check(r.n_samples == 1);
    const tern_payload_point *p = &g_first.points[0];
    tern_buf b = TERN_BUF_INIT;
    check(tern_payload_encode_summary(&b, p->ts_ms, p->end_ms, p->seq, (const char *const *)r.names,
              r.aggs, g_first.n_points)
        == 0);
    redecode(&b, TERN_PAYLOAD_SUMMARY);
    tern_buf_free(&b);
    regroup_free(&r, g_first.n_points);
}

static void fuzz_topic(const uint8_t *data, size_t size)
{
    tern_payload_topic t;
    tern_payload_error e;
    int rc = tern_payload_topic_parse((const char *)data, size, NULL, &t, &e);
    if (rc) {
        check(rc == TERN_EPROTO && e.reason[0] != '\0' && e.offset <= size);
        return;
    }
    check(inside(t.device, t.device_len, data, size) && t.device_len >= 1);
    check(t.device_len <= TERN_PAYLOAD_MAX_DEVICE);
    if (t.kind == TERN_PAYLOAD_SINGLE)
        check(tern_payload_metric_name_check(t.metric, t.metric_len));
    if (t.metric)
        check(inside(t.metric, t.metric_len, data, size));
    /* Formatting the parts gives the same topic back. */
    char *device = malloc(t.device_len + 1), *metric = malloc(t.metric_len + 1);
    check(device && metric);
    memcpy(device, t.device, t.device_len);
    device[t.device_len] = '\0';
    if (t.metric)
        memcpy(metric, t.metric, t.metric_len);
    metric[t.metric_len] = '\0';
    tern_buf b = TERN_BUF_INIT;
    if (memchr(device, '\0', t.device_len) == NULL && memchr(metric, '\0', t.metric_len) == NULL) {
        check(tern_payload_topic_format(&b, NULL, device, t.kind, metric) == 0);
        check(b.len == size && memcmp(b.data, data, size) == 0);
    }
    tern_buf_free(&b);
    free(device);
    free(metric);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_ready) {
        check(tern_payload_decoder_init(&g_first, NULL, 0) == 0);
        check(tern_payload_decoder_init(&g_again, NULL, 0) == 0);
        g_ready = true;
    }
    /* A heap copy of exactly size bytes, so ASan sees any read past the end. */
    uint8_t *copy = malloc(size ? size : 1);
    check(copy != NULL);
    if (size)
        memcpy(copy, data, size);
    fuzz_sample(copy, size);
    fuzz_single(copy, size);
    fuzz_summary(copy, size);
    fuzz_topic(copy, size);
    free(copy);
    return 0;
}

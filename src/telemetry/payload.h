/*
 * payload.h: tern's telemetry payload formats (JSON and compact binary) and their codecs.
 *
 * Devices publish on `{root}/{device}/telemetry` (one sample of many metrics, or a batch of
 * samples), `{root}/{device}/m/{metric}` (a single value) and `{root}/{device}/summary` (an edge
 * window aggregate). This module turns those payloads into points and back:
 *   - decoding (the stream processor): tern_payload_decode() reads an untrusted payload into a
 *     caller-owned, reusable tern_payload_decoder; every point carries its device timestamp in
 *     ms and its per-device sequence number. A payload is accepted whole or refused whole: on
 *     error no point is produced and the error says why, in a short stable sentence fit for a
 *     dead-letter record (e.g. "metric 'soc' value is a string").
 *   - encoding (the simulator, the edge agent): tern_payload_encode_json(),
 *     tern_payload_encode_binary(), tern_payload_encode_single(), tern_payload_encode_summary()
 *     append to a caller's tern_buf.
 *   - topics: tern_payload_topic_parse() splits a topic into device, kind and metric.
 *
 * The byte-level formats (version 1) are specified in docs/formats/telemetry-payload.md. A binary
 * payload starts with a byte 0xB0..0xBF (0xB1 = binary version 1), which can never start a JSON
 * text or any UTF-8 text, so one topic carries both forms.
 *
 * Every input byte is hostile: parsing is bounded (payload size, nesting depth, metrics per
 * sample, samples per batch, number length) and never asserts. Bad input is TERN_EPROTO (or
 * TERN_EVERSION for an unknown format version) with a reason; resource failure is TERN_ENOMEM.
 * No I/O, no global state: the functions are thread-safe on distinct decoders and buffers.
 * Floats are parsed with strtod and printed with snprintf, so LC_NUMERIC must be "C" (the
 * default of a process that never calls setlocale).
 */
#ifndef TERN_TELEMETRY_PAYLOAD_H
#define TERN_TELEMETRY_PAYLOAD_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits of version 1 (also in the format document). */
#define TERN_PAYLOAD_MAX_BYTES (1u << 20) /* a payload of more bytes is refused */
#define TERN_PAYLOAD_MAX_METRICS 256      /* metrics in one sample, and in one schema */
#define TERN_PAYLOAD_MAX_BATCH 4096       /* samples in one batch */
#define TERN_PAYLOAD_MAX_POINTS 65536     /* points in one payload, all samples together */
#define TERN_PAYLOAD_MAX_NAME 128         /* bytes in a metric name */
#define TERN_PAYLOAD_MAX_DEVICE 64        /* bytes in a device id */
#define TERN_PAYLOAD_MAX_DEPTH 16         /* JSON nesting, counting the top-level object */
#define TERN_PAYLOAD_MAX_NUMBER 128       /* characters in one JSON number */
#define TERN_PAYLOAD_MAX_DECIMALS 9       /* largest decimal exponent in a schema */
#define TERN_PAYLOAD_BINARY_V1 0xB1       /* first byte of a binary version 1 payload */

/* What a topic carries. Only SAMPLE, SINGLE and SUMMARY payloads are decoded here. */
typedef enum tern_payload_kind {
    TERN_PAYLOAD_SAMPLE = 1, /* {root}/{device}/telemetry */
    TERN_PAYLOAD_SINGLE,     /* {root}/{device}/m/{metric} */
    TERN_PAYLOAD_SUMMARY,    /* {root}/{device}/summary */
    TERN_PAYLOAD_EVENT,      /* {root}/{device}/event */
    TERN_PAYLOAD_CMD,        /* {root}/{device}/cmd/... (server to device) */
    TERN_PAYLOAD_CONFIG,     /* {root}/{device}/config */
} tern_payload_kind;

/* A metric value: an exact int64 (JSON integers, integer metrics) or a finite float64. */
typedef struct tern_payload_value {
    union {
        double f;
        int64_t i;
    };
    bool is_int;
} tern_payload_value;

/* An edge window aggregate of one metric (summary form). count >= 1, min <= last <= max. */
typedef struct tern_payload_agg {
    double min;
    double max;
    double sum;
    double last;
    uint64_t count;
} tern_payload_agg;

/*
 * One decoded point. metric is NOT NUL-terminated and is borrowed: it points into the payload
 * bytes (JSON), into the schema (binary) or into the caller's topic metric (SINGLE), so it is
 * valid as long as those are.
 */
typedef struct tern_payload_point {
    const char *metric;
    size_t metric_len;
    int64_t ts_ms;        /* device time in ms (SUMMARY: window start) */
    uint64_t seq;         /* per-device sequence number (0 for a bare-number single value) */
    uint32_t sample;      /* index of the sample inside a batch (0 when not a batch) */
    tern_payload_value v; /* SAMPLE, SINGLE; SUMMARY: the window's last value (as float) */
    int64_t end_ms;       /* SUMMARY: window end (>= ts_ms); otherwise ts_ms */
    tern_payload_agg agg; /* SUMMARY only; zero otherwise */
} tern_payload_point;

/* Why a payload or topic was refused. reason is NUL-terminated and stable across versions. */
typedef struct tern_payload_error {
    int code;      /* TERN_EPROTO, TERN_EVERSION, TERN_ENOMEM, TERN_EINVAL */
    size_t offset; /* byte offset in the payload (or topic) where the problem was found */
    char reason[160];
} tern_payload_error;

/* ---- schemas: metric ids of the binary form ---- */

typedef struct tern_payload_schema_metric {
    const char *name; /* NUL-terminated, a valid metric name (tern_payload_metric_name_check) */
    int decimals;     /* 0..TERN_PAYLOAD_MAX_DECIMALS: value = mantissa / 10^decimals (float);
                         -1: an integer metric (value = int64) */
} tern_payload_schema_metric;

/*
 * A schema numbers a profile's metrics 0..n_metrics-1 for the binary form. Callers may build
 * their own (the struct is public); ids 1..15 are tern's built-ins. Immutable once in use.
 */
typedef struct tern_payload_schema {
    uint32_t id;      /* written in every binary payload */
    const char *name; /* e.g. "ev" */
    size_t n_metrics; /* 1..TERN_PAYLOAD_MAX_METRICS */
    const tern_payload_schema_metric *metrics;
} tern_payload_schema;

#define TERN_PAYLOAD_SCHEMA_EV 1
#define TERN_PAYLOAD_SCHEMA_METER 2
#define TERN_PAYLOAD_SCHEMA_INDUSTRIAL 3

/*
 * tern_payload_schema_builtin returns the built-in schema with this id (EV, METER, INDUSTRIAL:
 * the metric names and decimals of src/sim/profile.h, in the same order), or NULL.
 * Static storage.
 */
const tern_payload_schema *tern_payload_schema_builtin(uint32_t id);

/* tern_payload_schema_by_name returns the built-in schema "ev", "meter" or "industrial", or NULL.
 */
const tern_payload_schema *tern_payload_schema_by_name(const char *name);

/*
 * tern_payload_schema_check validates a caller-built schema: 1..256 metrics, valid and distinct
 * names, decimals in -1..9. Returns 0 or TERN_EINVAL.
 */
int tern_payload_schema_check(const tern_payload_schema *s);

/* tern_payload_schema_find returns the id (index) of metric name[0..len) in s, or -1. */
int tern_payload_schema_find(const tern_payload_schema *s, const char *name, size_t len);

/*
 * tern_payload_metric_name_check returns true if name[0..len) is a valid metric name: 1..128
 * bytes of [A-Za-z0-9_.:-].
 */
bool tern_payload_metric_name_check(const char *name, size_t len);

/* ---- decoding ---- */

/*
 * A reusable decoder: the caller owns the struct; it owns the points array, which grows to the
 * largest payload seen and is reused (no allocation per payload in the steady state).
 * After a successful tern_payload_decode, points[0..n_points) are the payload's points, in
 * payload order (binary: by metric id within each sample).
 */
typedef struct tern_payload_decoder {
    const tern_payload_schema *const *schemas; /* borrowed; NULL: the built-in schemas */
    size_t n_schemas;
    tern_payload_point *points;
    size_t n_points;
    size_t cap_points;
} tern_payload_decoder;

/*
 * tern_payload_decoder_init prepares d. schemas[0..n_schemas) (borrowed, must outlive d) are the
 * schemas binary payloads may name; NULL (with 0) means the built-in ones. Returns 0, or
 * TERN_EINVAL if a schema fails tern_payload_schema_check or two share an id (d is then unusable
 * until a successful init).
 */
int tern_payload_decoder_init(
    tern_payload_decoder *d, const tern_payload_schema *const *schemas, size_t n_schemas);

/* tern_payload_decoder_free releases d's points array; d may be initialised again. */
void tern_payload_decoder_free(tern_payload_decoder *d);

/*
 * tern_payload_decode decodes one payload (data[0..len), borrowed) of the given kind into d.
 * kind SAMPLE: JSON sample or batch, or binary. SINGLE: JSON {"ts","seq","v"} or a bare JSON
 * number (then ts_ms = arrival_ms, seq = 0); the metric is topic_metric[0..topic_metric_len),
 * borrowed, which must be a valid metric name. SUMMARY: JSON window aggregate. arrival_ms is used
 * only by a bare single value.
 * On success returns 0 and sets d->points/d->n_points (n_points >= 1); metric names in the
 * points borrow from data, the schema or topic_metric. On error d->n_points is 0, *err (if not
 * NULL) says why, and the code is returned: TERN_EPROTO (malformed or out-of-limit payload, bad
 * topic metric), TERN_EVERSION (unknown format version), TERN_ENOMEM, TERN_EINVAL (kind is not
 * SAMPLE, SINGLE or SUMMARY).
 */
int tern_payload_decode(tern_payload_decoder *d, tern_payload_kind kind, const uint8_t *data,
    size_t len, const char *topic_metric, size_t topic_metric_len, int64_t arrival_ms,
    tern_payload_error *err);

/* ---- encoding ---- */

/*
 * One sample to encode: ts_ms, seq and n_values values. names[i] (NUL-terminated, borrowed) is
 * the name of values[i]. For the binary encoder names may be NULL: then values are in schema
 * order and n_values equals the schema's n_metrics.
 */
typedef struct tern_payload_sample {
    int64_t ts_ms;
    uint64_t seq;
    size_t n_values;
    const char *const *names;
    const tern_payload_value *values;
} tern_payload_sample;

/*
 * tern_payload_encode_json appends samples[0..n_samples) as JSON: one sample object when
 * n_samples is 1, a {"batch":[...]} object otherwise. Integers print exactly; floats print in
 * the shortest form that parses back to the same double, always with a '.' or an exponent so
 * they stay floats. Returns 0, TERN_EINVAL (n_samples 0 or > 4096, a sample with 0 or > 256
 * values, an invalid or repeated name, a non-finite float, more than 65536 points) or
 * TERN_ENOMEM; on error out is unchanged.
 */
int tern_payload_encode_json(tern_buf *out, const tern_payload_sample *samples, size_t n_samples);

/*
 * tern_payload_encode_binary appends samples[0..n_samples) in the binary form of schema s (a
 * batch when n_samples > 1). A value is stored as its decimal mantissa when that gives back the
 * same double (or the int of an integer metric); otherwise raw (float64 bits or an int64), so
 * every value round-trips exactly. Returns 0, TERN_EINVAL (as for JSON, plus a name not in s,
 * or names NULL with n_values != s->n_metrics) or TERN_ENOMEM; on error out is unchanged.
 */
int tern_payload_encode_binary(tern_buf *out, const tern_payload_schema *s,
    const tern_payload_sample *samples, size_t n_samples);

/*
 * tern_payload_encode_single appends {"ts":..,"seq":..,"v":..} (the single-value form).
 * Returns 0, TERN_EINVAL (non-finite float) or TERN_ENOMEM; on error out is unchanged.
 */
int tern_payload_encode_single(tern_buf *out, int64_t ts_ms, uint64_t seq, tern_payload_value v);

/*
 * tern_payload_encode_summary appends the summary form for the window [start_ms, end_ms]:
 * names[i] (NUL-terminated, borrowed) with aggs[i], i < n. Returns 0, TERN_EINVAL (end_ms <
 * start_ms, n 0 or > 256, an invalid or repeated name, count 0, a non-finite value, not min <=
 * last <= max) or TERN_ENOMEM; on error out is unchanged.
 */
int tern_payload_encode_summary(tern_buf *out, int64_t start_ms, int64_t end_ms, uint64_t seq,
    const char *const *names, const tern_payload_agg *aggs, size_t n);

/* ---- topics ---- */

typedef struct tern_payload_topic {
    const char *device; /* borrowed from the topic, not NUL-terminated */
    size_t device_len;
    tern_payload_kind kind;
    const char *metric; /* SINGLE: the metric; CMD: the levels after "cmd/"; else NULL, 0 */
    size_t metric_len;
} tern_payload_topic;

/*
 * tern_payload_topic_parse splits topic[0..len) = {root}/{device}/{kind}[/{rest}] where root is
 * the configured prefix (NULL means "fleet"; it may contain '/'), device is 1..64 bytes of
 * well-formed UTF-8 without control characters, '+' or '#', and kind is "telemetry", "summary",
 * "event", "config" (no more levels), "m" (exactly one more level: a valid metric name) or "cmd"
 * (one or more non-empty levels). *out is set only on success (its pointers borrow from topic).
 * Returns 0 or TERN_EPROTO with *err (if not NULL) saying why.
 */
int tern_payload_topic_parse(const char *topic, size_t len, const char *root,
    tern_payload_topic *out, tern_payload_error *err);

/*
 * tern_payload_topic_format appends {root}/{device}/{kind}[/{metric}] (root NULL means "fleet";
 * metric is required for SINGLE and CMD and ignored otherwise). Returns 0, TERN_EINVAL (a device
 * or metric the parser would refuse) or TERN_ENOMEM; on error out is unchanged.
 */
int tern_payload_topic_format(tern_buf *out, const char *root, const char *device,
    tern_payload_kind kind, const char *metric);

#endif

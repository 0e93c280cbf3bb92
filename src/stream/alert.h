/*
 * alert.h: alert rules evaluated in event time: threshold with a for-duration, rate of change,
 * and absence (no data for a duration against the stream's watermark, or the device's Last
 * Will). The rules file format is specified, with examples, in docs/alerts.md.
 *
 * A pure library: no I/O (except tern_alert_rules_load reading the rules file), no threads, no
 * clock reads. The stream feeds the engine the points it accepted (after dedup), its watermark,
 * and Last Will arrivals; transitions come back through one callback, synchronously, from the
 * call that caused them.
 *
 * Promises:
 *   - Each (device, rule) is either firing or not; the callback sees exactly one event per
 *     transition (fired, then resolved, then fired again ...), never two in a row of one kind.
 *   - Everything is in event time. A point whose event time is not newer than the last one a
 *     rule processed for that device (an out-of-order point or a duplicate) is ignored by that
 *     rule, so re-sends and reordering cannot make an alert flap.
 *   - State is a fixed number of bytes per (device, rule) that a device's points or Last Will
 *     touched, plus one entry per device; tern_alert_get_stats reports it.
 *   - If the callback returns nonzero, the transition is not recorded and that value is returned;
 *     the transition is attempted again at the rule's next evaluation (the next point, tick or
 *     Last Will), and giving the same point again is safe: rules that already took it ignore it.
 *
 * The rules file and device/metric bytes are untrusted: parsing is bounded and never asserts;
 * names are length-checked, content is opaque. Not thread-safe: one engine, one thread at a time.
 */
#ifndef TERN_STREAM_ALERT_H
#define TERN_STREAM_ALERT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_ALERT_MAX_NAME 256u       /* device and metric names: 1 .. this many bytes */
#define TERN_ALERT_MAX_RULE_NAME 64u   /* rule names: 1 .. this many bytes */
#define TERN_ALERT_MAX_RULES 1024u     /* rules in one file */
#define TERN_ALERT_MAX_FILE (1u << 20) /* bytes of one rules file */
/* Event times and watermarks are accepted in [-TERN_ALERT_TS_LIMIT, TERN_ALERT_TS_LIMIT] ms. */
#define TERN_ALERT_TS_LIMIT (INT64_C(1) << 53)

typedef struct tern_alert_rules tern_alert_rules;
typedef struct tern_alert_engine tern_alert_engine;

/* One transition, as passed to the callback (every pointer borrowed for the call). */
typedef struct tern_alert_event {
    const char *device; /* not NUL-terminated: device_len bytes */
    size_t device_len;
    const char *rule;   /* the rule's name, NUL-terminated (the {rule} of alerts/{device}/{rule}) */
    bool firing;        /* true: fired; false: resolved */
    int64_t ts_ms;      /* event time of the transition */
    double value;       /* the value (threshold) or per-unit rate (rate) that crossed; NAN for
                           absence */
    const char *reason; /* human text, NUL-terminated: "soc 12.5 below 15 for 5m" */
} tern_alert_event;

/* tern_alert_fn receives each transition; a nonzero return is passed back (see above). */
typedef int (*tern_alert_fn)(void *arg, const tern_alert_event *e);

typedef struct tern_alert_stats {
    uint64_t n_devices;     /* devices with state */
    uint64_t n_states;      /* (device, rule) states */
    uint64_t state_bytes;   /* heap bytes of all state, tables included (rules not counted) */
    uint64_t n_firing;      /* states firing now */
    uint64_t n_fired;       /* fired events delivered */
    uint64_t n_resolved;    /* resolved events delivered */
    uint64_t n_points;      /* valid points given to tern_alert_point */
    uint64_t n_ignored_old; /* (point, rule) pairs ignored as not newer than the rule's last */
} tern_alert_stats;

/*
 * tern_alert_rules_parse parses rules text[0..len) (need not be NUL-terminated), naming it
 * file_name in messages. On success *out owns the rules (free with tern_alert_rules_free).
 * Returns 0; TERN_ECONFIG with the first error written to err (always NUL-terminated,
 * truncated to err_cap; err may be NULL when err_cap is 0) as "FILE:LINE: what is wrong";
 * or TERN_ENOMEM. An empty file (no rules) is valid.
 */
int tern_alert_rules_parse(const char *text, size_t len, const char *file_name,
    tern_alert_rules **out, char *err, size_t err_cap);

/*
 * tern_alert_rules_load reads the file at path (at most TERN_ALERT_MAX_FILE bytes) and parses it
 * as tern_alert_rules_parse. Returns as that, or -errno when the file cannot be read (message
 * "PATH: cannot read: REASON"), or TERN_ECONFIG for a file that is too large.
 */
int tern_alert_rules_load(const char *path, tern_alert_rules **out, char *err, size_t err_cap);

/* tern_alert_rules_free frees r (NULL is a no-op). No engine may still use it. */
void tern_alert_rules_free(tern_alert_rules *r);

/* tern_alert_rules_count returns the number of rules in r. */
size_t tern_alert_rules_count(const tern_alert_rules *r);

/*
 * tern_alert_engine_new makes an engine evaluating rules (borrowed: it must outlive the engine)
 * that calls fn(arg, event) for each transition. *out is set only on success; free with
 * tern_alert_engine_free. Returns 0 or TERN_ENOMEM.
 */
int tern_alert_engine_new(
    const tern_alert_rules *rules, tern_alert_fn fn, void *arg, tern_alert_engine **out);

/* tern_alert_engine_free releases e and its state, delivering nothing (NULL is a no-op). */
void tern_alert_engine_free(tern_alert_engine *e);

/*
 * tern_alert_point gives the engine one accepted point: device[0..dlen), metric[0..mlen),
 * event time ts_ms, value v. Threshold and rate rules on that metric evaluate it; absence rules
 * note the data (and resolve if firing and ts_ms is at or after their firing time).
 * Returns 0; TERN_EINVAL (a name empty or longer than TERN_ALERT_MAX_NAME, ts_ms beyond
 * TERN_ALERT_TS_LIMIT: nothing changed); TERN_ENOMEM (state for a new device could not be made:
 * nothing changed); or the callback's nonzero return (rules evaluated before it keep the point,
 * the rest have not seen it).
 */
int tern_alert_point(tern_alert_engine *e, const char *device, size_t dlen, const char *metric,
    size_t mlen, int64_t ts_ms, double v);

/*
 * tern_alert_tick evaluates absence rules against the stream's watermark: a (device, rule) whose
 * last data is at least the rule's duration behind watermark_ms fires, with the event time
 * last data + duration. INT64_MIN (no watermark yet) does nothing; a watermark lower than an
 * earlier one is harmless. Returns 0, TERN_EINVAL (watermark beyond TERN_ALERT_TS_LIMIT other
 * than INT64_MIN), or the callback's nonzero return (states not yet fired are tried next tick).
 */
int tern_alert_tick(tern_alert_engine *e, int64_t watermark_ms);

/*
 * tern_alert_will tells the engine that the Last Will of device[0..dlen) arrived at event time
 * ts_ms: absence rules with on_will that match the device and are not firing fire now, with
 * that event time. Returns 0, TERN_EINVAL (bad name or ts_ms), TERN_ENOMEM (nothing changed),
 * or the callback's nonzero return.
 */
int tern_alert_will(tern_alert_engine *e, const char *device, size_t dlen, int64_t ts_ms);

/* tern_alert_get_stats fills *out with e's state sizes and counters. */
void tern_alert_get_stats(const tern_alert_engine *e, tern_alert_stats *out);

#endif

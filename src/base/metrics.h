/*
 * metrics.h: the registry every tern module reports its health into, rendered for Prometheus.
 *
 * A metric family has a name, help text and a type (counter, gauge, or histogram); each
 * instance of it has a small fixed label set, e.g.
 *     tern_broker_messages_received_total{qos="1"}
 * Registering returns a handle that stays valid as long as the registry; updating through it
 * is one relaxed atomic operation (no lock, no allocation), so it belongs on hot paths.
 * Registration and rendering take the registry's lock; they are for start-up and scrapes.
 * Registering the same name and label set again returns the same handle, so modules may
 * register idempotently.
 *
 * Names follow Prometheus: metric names [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* not starting with "__"; label values are any UTF-8 (escaped when
 * rendered). At most TERN_METRICS_MAX_LABELS labels per instance.
 *
 * Rendering is the Prometheus text exposition format 0.0.4: "# HELP" and "# TYPE" lines per
 * family (families and instances in registration order). Counters and gauges are integers.
 * Histograms are rendered as a Prometheus *summary*: quantiles 0.5, 0.9, 0.99 and 0.999 over
 * everything recorded since start (or the last reset), then _sum and _count; values are
 * divided by the family's divisor, so a latency recorded in ns with divisor 1e9 is rendered
 * in seconds, as Prometheus convention wants. A summary was chosen over buckets because
 * tern_histogram's quantiles are accurate to 0.4% and cost one line each; its limit is that
 * quantiles cannot be aggregated across instances (sum and count can).
 *
 * There is one process-wide registry (tern_metrics_default()) that lives until exit, and tests
 * can make private ones. All functions are thread-safe.
 */
#ifndef TERN_BASE_METRICS_H
#define TERN_BASE_METRICS_H

#include "base/buf.h"
#include "base/histogram.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_METRICS_MAX_LABELS 4

typedef struct tern_metrics tern_metrics;
typedef struct tern_metrics_counter tern_metrics_counter;
typedef struct tern_metrics_gauge tern_metrics_gauge;
typedef struct tern_metrics_histogram tern_metrics_histogram;

typedef struct tern_metrics_label {
    const char *name;
    const char *value;
} tern_metrics_label;

/* tern_metrics_default returns the process-wide registry (never NULL, never destroyed). */
tern_metrics *tern_metrics_default(void);

/* tern_metrics_create makes an empty registry in *out. Returns 0 or TERN_ENOMEM. */
int tern_metrics_create(tern_metrics **out);
/* tern_metrics_destroy frees a registry made by create and invalidates all its handles. */
void tern_metrics_destroy(tern_metrics *m);

/*
 * tern_metrics_add_counter registers (or finds) the counter `name` with labels[0..n_labels)
 * in m (NULL = the default registry) and sets *out. Strings are copied. Errors:
 * TERN_EINVAL (bad metric or label name, duplicate or reserved label name, label value not
 * UTF-8, too many labels), TERN_EEXIST (name already registered with another type or unit),
 * TERN_ENOMEM. *out is set only on success.
 */
int tern_metrics_add_counter(tern_metrics *m, const char *name, const char *help,
    const tern_metrics_label *labels, size_t n_labels, tern_metrics_counter **out);
/* tern_metrics_add_gauge: as add_counter, for a gauge (a signed integer that goes up and down). */
int tern_metrics_add_gauge(tern_metrics *m, const char *name, const char *help,
    const tern_metrics_label *labels, size_t n_labels, tern_metrics_gauge **out);
/*
 * tern_metrics_add_histogram: as add_counter, for a histogram whose recorded values are
 * divided by divisor (> 0) when rendered. The label name "quantile" is reserved (TERN_EINVAL).
 * Registering an existing name with another divisor is TERN_EEXIST.
 */
int tern_metrics_add_histogram(tern_metrics *m, const char *name, const char *help,
    const tern_metrics_label *labels, size_t n_labels, double divisor,
    tern_metrics_histogram **out);

/* Hot-path updates: one relaxed atomic operation each. */
void tern_metrics_counter_add(tern_metrics_counter *c, uint64_t n);
void tern_metrics_counter_inc(tern_metrics_counter *c);
/*
 * tern_metrics_counter_follow mirrors a total counted elsewhere (a module's plain stats field,
 * copied on a timer): it adds total - *seen when the total grew, and sets *seen = total. A
 * total that went down (its source was reset) adds nothing, and is followed from there.
 */
void tern_metrics_counter_follow(tern_metrics_counter *c, uint64_t *seen, uint64_t total);
uint64_t tern_metrics_counter_get(const tern_metrics_counter *c);
void tern_metrics_gauge_set(tern_metrics_gauge *g, int64_t v);
void tern_metrics_gauge_add(tern_metrics_gauge *g, int64_t delta);
int64_t tern_metrics_gauge_get(const tern_metrics_gauge *g);
void tern_metrics_histogram_record(tern_metrics_histogram *h, uint64_t value);
/* tern_metrics_histogram_get exposes the underlying histogram (for reading). */
const tern_histogram *tern_metrics_histogram_get(const tern_metrics_histogram *h);

/*
 * tern_metrics_render appends the whole registry (NULL = default) to out in the Prometheus
 * text format 0.0.4. Returns 0 or TERN_ENOMEM (out may then hold a partial rendering).
 */
int tern_metrics_render(tern_metrics *m, tern_buf *out);

/* tern_metrics_name_valid / _label_name_valid apply the Prometheus naming rules above. */
bool tern_metrics_name_valid(const char *name);
bool tern_metrics_label_name_valid(const char *name);

#endif

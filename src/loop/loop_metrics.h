/*
 * loop_metrics.h: an event loop's statistics (tern_loop_stats) in a metrics registry, so an
 * operator sees from Prometheus how busy each loop is: its iterations, the callbacks it runs,
 * its watchers and timers, and how often ready background watchers (handshakes) had to wait.
 *
 * Every family carries the label loop="<name>" (e.g. "broker-0", "door"):
 *   tern_loop_iterations_total, tern_loop_io_events_total, tern_loop_timers_fired_total,
 *   tern_loop_posts_run_total, tern_loop_stale_events_total,
 *   tern_loop_background_deferred_total (counters), and
 *   tern_loop_io_watchers, tern_loop_timers, tern_loop_tasks (gauges; the refresh timer itself
 *   counts among tern_loop_timers).
 *
 * The loop's counters are plain fields that only its own thread touches, so the copy runs on
 * that thread: a repeating timer on the loop refreshes the registry every second. That costs
 * nothing per iteration; the figures are up to a second old.
 *
 * Threading: start, refresh and stop run on the loop's thread, or before the loop's thread
 * starts / after it has been joined.
 */
#ifndef TERN_LOOP_METRICS_H
#define TERN_LOOP_METRICS_H

#include "base/metrics.h"
#include "loop/loop.h"

#define TERN_LOOP_METRICS_PERIOD_MS 1000

typedef struct tern_loop_metrics tern_loop_metrics;

/*
 * tern_loop_metrics_start registers loop's families under label loop=name in reg (NULL: the
 * process default), copies the current figures, and arms the refresh timer. Sets *out only on
 * success. Returns 0, TERN_EINVAL (a name that is not a valid label value), TERN_EEXIST (a family
 * already registered with another type) or TERN_ENOMEM. Registering a name again (a loop made
 * again under the same name) reuses its handles: the counters continue from where they were.
 */
int tern_loop_metrics_start(
    tern_loop *loop, tern_metrics *reg, const char *name, tern_loop_metrics **out);

/* tern_loop_metrics_refresh copies the loop's figures into the registry now. */
void tern_loop_metrics_refresh(tern_loop_metrics *lm);

/* tern_loop_metrics_stop refreshes once more, stops the timer and frees lm. NULL: no-op. */
void tern_loop_metrics_stop(tern_loop_metrics *lm);

#endif

/*
 * loop_metrics.c: copies a loop's statistics into the metrics registry on a timer
 * (loop_metrics.h). Counters are monotonic in the registry, so each refresh adds what the loop
 * counted since the previous one.
 */
#include "loop/loop_metrics.h"

#include "base/alloc.h"
#include "base/error.h"

#include <stddef.h>

typedef struct counter_figure {
    const char *name;
    const char *help;
    size_t offset; /* in tern_loop_stats */
} counter_figure;

static const counter_figure counters[] = {
    { "tern_loop_iterations_total", "event loop iterations completed",
        offsetof(tern_loop_stats, iterations) },
    { "tern_loop_io_events_total", "I/O callbacks run", offsetof(tern_loop_stats, io_events) },
    { "tern_loop_timers_fired_total", "timer callbacks run",
        offsetof(tern_loop_stats, timers_fired) },
    { "tern_loop_posts_run_total", "callbacks posted from other threads and run",
        offsetof(tern_loop_stats, posts_run) },
    { "tern_loop_stale_events_total", "events dropped because their watcher had stopped",
        offsetof(tern_loop_stats, stale_events) },
    { "tern_loop_background_deferred_total",
        "iterations that left ready background watchers (e.g. handshakes) for later",
        offsetof(tern_loop_stats, background_deferred) },
};
#define N_COUNTERS (sizeof counters / sizeof counters[0])

static const counter_figure gauges[] = {
    { "tern_loop_io_watchers", "active I/O watchers", offsetof(tern_loop_stats, n_io) },
    { "tern_loop_timers", "active timers", offsetof(tern_loop_stats, n_timers) },
    { "tern_loop_tasks", "deferred tasks waiting to run", offsetof(tern_loop_stats, n_tasks) },
};
#define N_GAUGES (sizeof gauges / sizeof gauges[0])

struct tern_loop_metrics {
    tern_loop *loop;
    tern_loop_timer timer;
    tern_metrics_counter *counter[N_COUNTERS];
    tern_metrics_gauge *gauge[N_GAUGES];
    uint64_t copied[N_COUNTERS]; /* the loop's counts already added to the registry */
};

static uint64_t field(const tern_loop_stats *st, size_t offset)
{
    return *(const uint64_t *)((const char *)st + offset);
}

void tern_loop_metrics_refresh(tern_loop_metrics *lm)
{
    tern_loop_stats st;
    tern_loop_get_stats(lm->loop, &st);
    for (size_t i = 0; i < N_COUNTERS; i++)
        tern_metrics_counter_follow(lm->counter[i], &lm->copied[i], field(&st, counters[i].offset));
    for (size_t i = 0; i < N_GAUGES; i++)
        tern_metrics_gauge_set(lm->gauge[i], (int64_t)field(&st, gauges[i].offset));
}

static void refresh_cb(tern_loop_timer *timer)
{
    tern_loop_metrics_refresh(timer->data);
}

int tern_loop_metrics_start(
    tern_loop *loop, tern_metrics *reg, const char *name, tern_loop_metrics **out)
{
    tern_loop_metrics *lm = tern_calloc(1, sizeof *lm);
    if (!lm)
        return TERN_ENOMEM;
    lm->loop = loop;
    const tern_metrics_label label = { "loop", name };
    for (size_t i = 0; i < N_COUNTERS; i++) {
        int rc = tern_metrics_add_counter(
            reg, counters[i].name, counters[i].help, &label, 1, &lm->counter[i]);
        if (rc != 0) {
            tern_free(lm);
            return rc;
        }
    }
    for (size_t i = 0; i < N_GAUGES; i++) {
        int rc
            = tern_metrics_add_gauge(reg, gauges[i].name, gauges[i].help, &label, 1, &lm->gauge[i]);
        if (rc != 0) {
            tern_free(lm);
            return rc;
        }
    }
    tern_loop_timer_init(loop, &lm->timer, refresh_cb, lm);
    tern_loop_timer_start(&lm->timer, TERN_LOOP_METRICS_PERIOD_MS, TERN_LOOP_METRICS_PERIOD_MS);
    tern_loop_metrics_refresh(lm);
    *out = lm;
    return 0;
}

void tern_loop_metrics_stop(tern_loop_metrics *lm)
{
    if (!lm)
        return;
    tern_loop_metrics_refresh(lm);
    tern_loop_timer_stop(&lm->timer);
    tern_free(lm);
}

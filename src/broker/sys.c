/*
 * sys.c: the broker's own figures, in two places: $SYS/broker/... topics (retained, refreshed
 * every sys_interval, as Mosquitto users expect) and the process's metrics registry (the
 * Prometheus /metrics of tern), refreshed every second from the same counters. The hot path
 * only bumps plain counters in b->stats; this file copies them out on a timer.
 */
#include "broker/broker_int.h"

#include "base/log.h"
#include "base/metrics.h"
#include "broker/retained.h"

#include <stdio.h>
#include <string.h>

#define METRICS_PERIOD_MS 1000

typedef struct sys_figure {
    const char *topic;  /* under $SYS/broker/ */
    const char *metric; /* Prometheus name */
    const char *help;
    bool counter;
    size_t offset; /* in tern_broker_stats */
} sys_figure;

#define FIG(topic, metric, help, counter, field)                                                   \
    {                                                                                              \
        topic, metric, help, counter, offsetof(tern_broker_stats, field)                           \
    }

static const sys_figure figures[] = {
    FIG("clients/connected", "tern_broker_connections", "open MQTT connections", false,
        connections),
    FIG("clients/total", "tern_broker_sessions", "sessions, online and offline", false, sessions),
    FIG("subscriptions/count", "tern_broker_subscriptions", "subscriptions", false, subscriptions),
    FIG("retained messages/count", "tern_broker_retained_messages", "retained messages", false,
        retained),
    FIG("clients/accepted", "tern_broker_connects_total", "CONNECTs accepted", true,
        connects_total),
    FIG("clients/refused", "tern_broker_connects_refused_total",
        "CONNECTs refused (any reason, admission included)", true, connects_refused),
    FIG("clients/admission refused", "tern_broker_admission_refused_total",
        "CONNECTs refused by the admission token bucket", true, admission_refused),
    FIG("messages/received", "tern_broker_messages_received_total", "PUBLISH packets received",
        true, msgs_received),
    FIG("messages/sent", "tern_broker_messages_sent_total", "PUBLISH packets sent", true,
        msgs_sent),
    FIG("bytes/received", "tern_broker_received_bytes_total", "bytes received", true,
        bytes_received),
    FIG("bytes/sent", "tern_broker_sent_bytes_total", "bytes sent", true, bytes_sent),
    FIG("messages/dropped qos0", "tern_broker_dropped_qos0_total",
        "QoS 0 messages shed (slow consumer, full queue)", true, dropped_qos0),
    FIG("messages/dropped queue full", "tern_broker_dropped_queue_full_total",
        "QoS 1/2 messages dropped because a session queue was full", true, dropped_queue_full),
    FIG("clients/throttled", "tern_broker_publishers_throttled_total",
        "times a publisher's reading paused on a full subscriber queue (push-back)", true,
        publishers_throttled),
    FIG("errors/protocol", "tern_broker_protocol_errors_total",
        "connections closed for malformed input or protocol errors", true, protocol_errors),
    FIG("ingest/submitted", "tern_broker_ingest_submitted_total",
        "publishes handed to the ingest sink", true, ingest_submitted),
    FIG("ingest/failed", "tern_broker_ingest_failed_total", "ingest refusals and failures", true,
        ingest_failed),
};

#define N_FIGURES (sizeof figures / sizeof figures[0])

struct broker_sys {
    tern_loop_timer timer;
    tern_broker *broker;
    void *handles[N_FIGURES]; /* tern_metrics_counter* or tern_metrics_gauge* */
    uint64_t last[N_FIGURES]; /* counters: value already added to the registry */
    uint64_t started_ms;
    uint64_t next_sys_ms;
};

static uint64_t figure_value(const tern_broker_stats *st, size_t i)
{
    uint64_t v;
    memcpy(&v, (const char *)st + figures[i].offset, sizeof v);
    return v;
}

static void publish_sys(tern_broker *b, const char *suffix, const char *value)
{
    char topic[128];
    snprintf(topic, sizeof topic, "$SYS/broker/%s", suffix);
    tern_mqtt_publish pub = { 0 };
    pub.qos = 0;
    pub.retain = true;
    pub.topic.p = (const uint8_t *)topic;
    pub.topic.len = (uint16_t)strlen(topic);
    pub.payload = (const uint8_t *)value;
    pub.payload_len = strlen(value);
    broker_msg *m = broker_msg_new(&pub, "", broker_now_ms(b));
    if (!m)
        return;
    /* Kept as retained for new subscribers, never journaled: it is rebuilt at every start. */
    broker_retained_set(b, m->topic, m->topic_len, m);
    broker_route(b, m, NULL);
    broker_msg_unref(m);
}

static void tick(tern_loop_timer *t)
{
    broker_sys *sys = t->data;
    tern_broker *b = sys->broker;
    broker_lock(b, b->workers[0]);
    tern_broker_stats st;
    broker_stats_snapshot(b, &st);
    for (size_t i = 0; i < N_FIGURES; i++) {
        uint64_t v = figure_value(&st, i);
        if (!sys->handles[i])
            continue;
        if (figures[i].counter) {
            tern_metrics_counter_follow(sys->handles[i], &sys->last[i], v);
        } else {
            tern_metrics_gauge_set(sys->handles[i], (int64_t)v);
        }
    }
    uint64_t now = broker_now_ms(b);
    if (b->cfg.sys_interval_ms && now >= sys->next_sys_ms) {
        sys->next_sys_ms = now + b->cfg.sys_interval_ms;
        char value[32];
        for (size_t i = 0; i < N_FIGURES; i++) {
            snprintf(value, sizeof value, "%llu", (unsigned long long)figure_value(&st, i));
            publish_sys(b, figures[i].topic, value);
        }
        snprintf(value, sizeof value, "%llu", (unsigned long long)((now - sys->started_ms) / 1000));
        publish_sys(b, "uptime", value);
        publish_sys(b, "version", "tern " TERN_BROKER_VERSION);
    }
    broker_unlock(b);
}

int broker_sys_start(tern_broker *b)
{
    broker_sys *sys = tern_calloc(1, sizeof *sys);
    if (!sys)
        return TERN_ENOMEM;
    sys->broker = b;
    sys->started_ms = broker_now_ms(b);
    tern_metrics *reg = b->cfg.metrics;
    for (size_t i = 0; i < N_FIGURES; i++) {
        int rc = figures[i].counter
            ? tern_metrics_add_counter(reg, figures[i].metric, figures[i].help, NULL, 0,
                (tern_metrics_counter **)&sys->handles[i])
            : tern_metrics_add_gauge(reg, figures[i].metric, figures[i].help, NULL, 0,
                (tern_metrics_gauge **)&sys->handles[i]);
        if (rc != 0 && rc != TERN_EEXIST) {
            tern_free(sys);
            return rc;
        }
    }
    tern_loop_timer_init(b->loop, &sys->timer, tick, sys);
    tern_loop_timer_start(&sys->timer, 0, METRICS_PERIOD_MS);
    b->sys = sys;
    return 0;
}

void broker_sys_stop(tern_broker *b)
{
    if (!b->sys)
        return;
    tern_loop_timer_stop(&b->sys->timer);
    tern_free(b->sys);
    b->sys = NULL;
}

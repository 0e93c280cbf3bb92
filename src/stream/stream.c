/*
 * stream.c: the stream processor's loop (see stream.h): poll, decode, window, store durably,
 * commit.
 */
#include "stream/stream.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"
#include "base/metrics.h"
#include "stream/alert.h"
#include "telemetry/payload.h"

#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct tern_stream {
    tern_log *log;
    tern_tsdb *db;
    tern_stream_config cfg;
    tern_log_consumer *consumer;
    tern_window_engine *windows;
    tern_alert_rules *rules;
    tern_alert_engine *alerts;
    tern_payload_decoder dec;
    tern_tsdb_batch *batch;
    tern_log_message *msgs;
    /* the point being fed to the window engine: on_point needs its exact kind (int64 values
     * do not survive the engine's double) */
    const tern_payload_point *cur;
    const char *cur_device;
    size_t cur_device_len;
    const char *last_batch_device; /* the batch's current device (pointer identity) */
    size_t last_batch_device_len;
    int pending_appends;
    int append_error;
    /* the warm tier's windows (written when the windows are the warm tier's minutes): complete
     * from valid_from on (the stream's first points plus the allowed lateness: earlier windows
     * may miss points read before a restart) */
    bool warm_windows;
    int64_t valid_from;
    bool valid_known; /* valid_from is set */
    bool *seen;       /* per partition: a record of it was read */
    uint32_t n_seen;
    bool resumed;       /* some partition was first read past its start: a restart or a rebalance */
    pthread_mutex_t mu; /* stats, append completions */
    /* the stats as counters of the process's registry (/metrics), advanced after each batch */
    tern_metrics_counter *m_counters[10];
    tern_stream_stats published;
    pthread_t thread;
    bool running, stop;
    tern_stream_stats st;
};

void tern_stream_config_default(tern_stream_config *c)
{
    memset(c, 0, sizeof(*c));
    c->topic = "telemetry";
    c->group = "tern-stream";
    c->dead_letter = "telemetry-dead";
    c->late = "late";
    c->root = "fleet";
    c->max_batch = 4096;
    c->alerts = "alerts";
    c->write_windows = true;
    tern_window_config_default(&c->window);
}

/* ---- window engine callbacks ---- */

static int on_point(void *arg, const tern_window_point *p)
{
    tern_stream *s = arg;
    if (s->last_batch_device != s->cur_device) {
        int rc = tern_tsdb_batch_device(s->batch, s->cur_device, s->cur_device_len, NULL, 0);
        if (rc)
            return rc;
        s->last_batch_device = s->cur_device;
    }
    const tern_payload_point *pp = s->cur;
    s->st.points++;
    if (s->alerts) {
        int arc = tern_alert_point(
            s->alerts, p->device, p->device_len, p->metric, p->metric_len, p->ts_ms, p->value);
        if (arc && arc != TERN_EINVAL)
            return arc;
    }
    if (pp->v.is_int)
        return tern_tsdb_batch_add_i64(s->batch, p->metric, p->metric_len, p->ts_ms, pp->v.i);
    return tern_tsdb_batch_add_f64(s->batch, p->metric, p->metric_len, p->ts_ms, p->value);
}

static int on_duplicate(void *arg, const tern_window_point *p)
{
    (void)p;
    tern_stream *s = arg;
    s->st.duplicates++;
    return 0;
}

static void append_done(void *opaque, int status, uint32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    tern_stream *s = opaque;
    pthread_mutex_lock(&s->mu);
    s->pending_appends--;
    if (status && !s->append_error)
        s->append_error = status;
    pthread_mutex_unlock(&s->mu);
}

/* Appends a side-output record (late point, dead letter); the batch is committed only once the
 * appends it made are durable (tern_log_flush). */
static int side_output(tern_stream *s, const char *topic, const char *key, size_t key_len,
    const void *value, size_t value_len, const tern_log_header *h, size_t n_h)
{
    tern_log_record rec;
    memset(&rec, 0, sizeof(rec));
    rec.key = (const uint8_t *)key;
    rec.key_len = key_len;
    rec.value = (const uint8_t *)value;
    rec.value_len = value_len;
    rec.ts_ms = tern_clock_now_ms();
    rec.headers = h;
    rec.n_headers = n_h;
    pthread_mutex_lock(&s->mu);
    s->pending_appends++;
    pthread_mutex_unlock(&s->mu);
    int rc = tern_log_append(s->log, topic, -1, &rec, append_done, s);
    if (rc) {
        pthread_mutex_lock(&s->mu);
        s->pending_appends--;
        pthread_mutex_unlock(&s->mu);
    }
    return rc;
}

static int on_late(void *arg, const tern_window_point *p)
{
    tern_stream *s = arg;
    s->st.late++;
    char json[512];
    int n = snprintf(json, sizeof json,
        "{\"metric\":\"%.*s\",\"ts\":%lld,\"value\":%.17g,\"arrival\":%lld}",
        (int)(p->metric_len > 200 ? 200 : p->metric_len), p->metric, (long long)p->ts_ms, p->value,
        (long long)p->arrival_ms);
    if (n < 0 || (size_t)n >= sizeof json)
        return 0;
    return side_output(s, s->cfg.late, p->device, p->device_len, json, (size_t)n, NULL, 0);
}

/* An alert fired or resolved: appended to the alerts topic (durable before the commit, like
 * the other side outputs) and handed to the publish hook. */
static int on_alert(void *arg, const tern_alert_event *e)
{
    tern_stream *s = arg;
    if (e->firing)
        s->st.alerts_fired++;
    else
        s->st.alerts_resolved++;
    char num[40] = "null"; /* absence alerts carry no value */
    if (e->value == e->value)
        snprintf(num, sizeof num, "%.17g", e->value);
    char json[768];
    int n = snprintf(json, sizeof json,
        "{\"device\":\"%.*s\",\"rule\":\"%s\",\"state\":\"%s\",\"ts\":%lld,\"value\":%s,"
        "\"reason\":\"%s\"}",
        (int)(e->device_len > 200 ? 200 : e->device_len), e->device, e->rule,
        e->firing ? "firing" : "resolved", (long long)e->ts_ms, num, e->reason ? e->reason : "");
    if (n < 0 || (size_t)n >= sizeof json)
        return 0;
    int rc = side_output(s, s->cfg.alerts, e->device, e->device_len, json, (size_t)n, NULL, 0);
    if (rc == 0 && s->cfg.publish) {
        char topic[400];
        snprintf(topic, sizeof topic, "alerts/%.*s/%s",
            (int)(e->device_len > 200 ? 200 : e->device_len), e->device, e->rule);
        s->cfg.publish(s->cfg.publish_arg, topic, (const uint8_t *)json, (size_t)n);
    }
    return rc;
}

/* The warm tier's window width (tsdb/warm.c): only windows of this width go there. */
#define WARM_WINDOW_MS 60000

static int on_window(void *arg, const tern_window_result *w)
{
    tern_stream *s = arg;
    s->st.windows++;
    if (!s->warm_windows)
        return 0;
    tern_tsdb_window tw = {
        .device = w->device,
        .device_len = w->device_len,
        .metric = w->metric,
        .metric_len = w->metric_len,
        .start_ms = w->start_ms,
        .count = w->count,
        .sum = w->sum,
        .min = w->min,
        .max = w->max,
        .last = w->last,
        .sketch = w->sketch,
    };
    int rc = tern_tsdb_write_windows(s->db, &tw, 1, INT64_MIN, s->valid_from);
    if (rc) {
        /* provisional data (the store recomputes windows from raw at the cut): never a
         * reason to hold the stream back */
        TERN_LOG_RATELIMITED(TERN_LOG_WARN, "stream",
            "a window for the warm tier was not "
            "written (%s): queries read raw points there",
            tern_strerror(rc));
    }
    return 0;
}

/* After a batch: the windows before the engine's closed frontier are all written. */
static void windows_complete(tern_stream *s)
{
    if (!s->warm_windows)
        return;
    tern_window_stats ws;
    tern_window_get_stats(s->windows, &ws);
    if (s->resumed && !s->valid_known && ws.watermark_ms != INT64_MIN) {
        /* reading resumed past a partition's start: windows from the minute after the newest
         * point seen plus the allowed lateness hold only points this stream read (every
         * partition read from its first record instead: complete from the start) */
        int64_t t = ws.watermark_ms + 2 * s->cfg.window.allowed_lateness_ms;
        s->valid_from = t - (t % WARM_WINDOW_MS + WARM_WINDOW_MS) % WARM_WINDOW_MS + WARM_WINDOW_MS;
        s->valid_known = true;
    }
    if (ws.closed_before_ms != INT64_MIN)
        (void)tern_tsdb_write_windows(s->db, NULL, 0, ws.closed_before_ms, s->valid_from);
}

/* ---- one record ---- */

static const char *header(const tern_log_message *m, const char *name, size_t *len)
{
    for (size_t i = 0; i < m->n_headers; i++)
        if (strcmp(m->headers[i].name, name) == 0) {
            *len = m->headers[i].value_len;
            return (const char *)m->headers[i].value;
        }
    return NULL;
}

static int dead_letter(tern_stream *s, const tern_log_message *m, const char *reason)
{
    s->st.bad_payloads++;
    TERN_LOG_RATELIMITED(TERN_LOG_WARN, "stream", "dead letter (partition %u offset %lld): %s",
        m->partition, (long long)m->offset, reason);
    size_t tl = 0;
    const char *topic = header(m, "topic", &tl);
    tern_log_header h[2];
    memset(h, 0, sizeof(h));
    h[0].name = "reason";
    h[0].value = (const uint8_t *)reason;
    h[0].value_len = strlen(reason);
    h[1].name = "topic";
    h[1].value = (const uint8_t *)(topic ? topic : "");
    h[1].value_len = topic ? tl : 0;
    return side_output(
        s, s->cfg.dead_letter, (const char *)m->key, m->key_len, m->value, m->value_len, h, 2);
}

/*
 * An edge summary: the device's own window aggregates (docs/formats/telemetry-payload.md). Its
 * windows are the edge's, not the warm tier's aligned minutes, so they are stored as raw series
 * beside the metric, at the window's start: {metric}:min, :max, :sum, :last (float64) and
 * :count (int64), as a Prometheus recording rule names its aggregates. They bypass the window
 * engine (they are aggregates already); the store keeps one per (series, start).
 */
static int store_summary(tern_stream *s, const tern_payload_topic *t)
{
    s->st.summaries++;
    int rc = tern_tsdb_batch_device(s->batch, t->device, t->device_len, NULL, 0);
    s->last_batch_device = t->device;
    static const char *const suffix[5] = { ":min", ":max", ":sum", ":last", ":count" };
    for (size_t i = 0; i < s->dec.n_points && rc == 0; i++) {
        const tern_payload_point *p = &s->dec.points[i];
        const double v[4] = { p->agg.min, p->agg.max, p->agg.sum, p->agg.last };
        char name[160];
        for (int k = 0; k < 5 && rc == 0; k++) {
            int n = snprintf(name, sizeof name, "%.*s%s", (int)p->metric_len, p->metric, suffix[k]);
            if (n < 0 || (size_t)n >= sizeof name)
                return TERN_EINVAL; /* metric names are at most 128 bytes: cannot happen */
            rc = k < 4 ? tern_tsdb_batch_add_f64(s->batch, name, (size_t)n, p->ts_ms, v[k])
                       : tern_tsdb_batch_add_i64(s->batch, name, (size_t)n, p->ts_ms,
                           p->agg.count > INT64_MAX ? INT64_MAX : (int64_t)p->agg.count);
        }
        s->st.points += rc == 0 ? 5 : 0;
    }
    return rc;
}

static int process(tern_stream *s, const tern_log_message *m, int64_t now)
{
    s->st.records++;
    if (m->partition < s->n_seen && !s->seen[m->partition]) {
        s->seen[m->partition] = true;
        s->resumed = s->resumed || m->offset != 0;
    }
    size_t tl = 0;
    const char *topic = header(m, "topic", &tl);
    if (!topic)
        return dead_letter(s, m, "no topic header");
    tern_payload_topic t;
    tern_payload_error err;
    if (tern_payload_topic_parse(topic, tl, s->cfg.root, &t, &err) != 0) {
        char reason[200];
        snprintf(reason, sizeof reason, "topic: %s", err.reason);
        return dead_letter(s, m, reason);
    }
    if (t.kind == TERN_PAYLOAD_EVENT) {
        s->st.events++;
        size_t wl = 0;
        if (s->alerts && header(m, "will", &wl) && wl == 1) {
            /* the device's Last Will: absence rules with on_will fire now, at the stream's
             * event time (its watermark), or the arrival time before there is one */
            tern_window_stats ws;
            tern_window_get_stats(s->windows, &ws);
            int64_t at = ws.watermark_ms != INT64_MIN ? ws.watermark_ms : m->ts_ms;
            int rc = tern_alert_will(s->alerts, t.device, t.device_len, at);
            if (rc && rc != TERN_EINVAL)
                return rc;
        }
        return 0; /* other device-side events: for rules on events (not yet) */
    }
    if (t.kind != TERN_PAYLOAD_SAMPLE && t.kind != TERN_PAYLOAD_SINGLE
        && t.kind != TERN_PAYLOAD_SUMMARY)
        return 0; /* commands and configs are not telemetry */
    int rc = tern_payload_decode(
        &s->dec, t.kind, m->value, m->value_len, t.metric, t.metric_len, m->ts_ms, &err);
    if (rc == TERN_ENOMEM)
        return rc;
    if (rc) {
        char reason[200];
        snprintf(reason, sizeof reason, "%s", err.reason);
        return dead_letter(s, m, reason);
    }
    if (t.kind == TERN_PAYLOAD_SUMMARY)
        return store_summary(s, &t);
    s->cur_device = t.device;
    s->cur_device_len = t.device_len;
    for (size_t i = 0; i < s->dec.n_points && rc == 0; i++) {
        const tern_payload_point *p = &s->dec.points[i];
        s->cur = p;
        double v = p->v.is_int ? (double)p->v.i : p->v.f;
        rc = tern_window_add(s->windows, m->partition, t.device, t.device_len, p->metric,
            p->metric_len, p->ts_ms, v, now);
        if (rc == TERN_EINVAL) {
            dead_letter(
                s, m, "a point the window engine refuses (empty or long name, time out of range)");
            rc = 0;
        }
    }
    return rc;
}

/* After a failed batch: every owned partition goes back to its committed offset. */
static void rewind_to_committed(tern_stream *s)
{
    tern_log_assignment a[256];
    size_t n = 0;
    if (tern_log_consumer_assignment(s->consumer, a, 256, &n) != 0)
        return;
    for (size_t i = 0; i < n && i < 256; i++)
        (void)tern_log_consumer_seek(
            s->consumer, a[i].topic, a[i].partition, TERN_LOG_OFFSET_COMMITTED);
}

int tern_stream_run_once(tern_stream *s, int timeout_ms)
{
    size_t n = 0;
    int rc = tern_log_consumer_poll(s->consumer, s->msgs, s->cfg.max_batch, timeout_ms, &n);
    int64_t now = tern_clock_now_ms();
    if (rc)
        return rc;
    if (n == 0)
        return tern_window_tick(s->windows, now);
    tern_tsdb_batch_reset(s->batch);
    s->last_batch_device = NULL;
    for (size_t i = 0; i < n && rc == 0; i++) {
        /* a device's records reuse pointers into the message: a new message is a new device
         * run for the batch, whatever its name */
        s->last_batch_device = NULL;
        rc = process(s, &s->msgs[i], now);
    }
    uint64_t seq = 0;
    tern_tsdb_write_result res;
    if (rc == 0 && tern_tsdb_batch_points(s->batch))
        rc = tern_tsdb_write(s->db, s->batch, &seq, &res);
    if (rc == 0)
        rc = tern_tsdb_wait(s->db, seq);
    if (rc == 0) {
        s->st.stored += tern_tsdb_batch_points(s->batch) ? res.accepted : 0;
        if (tern_tsdb_batch_points(s->batch) && res.refused)
            TERN_LOG_RATELIMITED(
                TERN_LOG_WARN, "stream", "the store refused %zu points: %s", res.refused, res.err);
    }
    /* side outputs of this batch (dead letters, late points) must be durable before the commit */
    if (rc == 0) {
        pthread_mutex_lock(&s->mu);
        bool pending = s->pending_appends > 0;
        pthread_mutex_unlock(&s->mu);
        if (pending)
            rc = tern_log_flush(s->log);
        pthread_mutex_lock(&s->mu);
        if (rc == 0 && s->append_error)
            rc = s->append_error;
        s->append_error = 0;
        pthread_mutex_unlock(&s->mu);
    }
    if (rc == 0)
        rc = tern_log_consumer_commit_all(s->consumer);
    if (rc == 0)
        rc = tern_window_tick(s->windows, now);
    if (rc == 0)
        windows_complete(s);
    if (rc == 0 && s->alerts) {
        /* absence rules fire against the watermark; their appends are durable with the next
         * batch's commit (a crash repeats the transition at worst: at-least-once) */
        tern_window_stats ws;
        tern_window_get_stats(s->windows, &ws);
        rc = tern_alert_tick(s->alerts, ws.watermark_ms);
    }
    pthread_mutex_lock(&s->mu);
    s->st.batches++;
    if (rc == 0)
        s->st.commits++;
    else
        s->st.errors++;
    pthread_mutex_unlock(&s->mu);
    if (rc) {
        /* not committed: the records are read again from the last commit (the store drops what
         * it already has as duplicates of (series, ts)) */
        TERN_LOG_RATELIMITED(
            TERN_LOG_ERROR, "stream", "batch not committed: %s", tern_strerror(rc));
        rewind_to_committed(s);
    }
    return rc;
}

static const struct {
    const char *name, *help;
    size_t offset;
} stream_counters[10] = {
    { "tern_stream_records_total", "log records consumed", offsetof(tern_stream_stats, records) },
    { "tern_stream_points_total", "points decoded and accepted by the window engine",
        offsetof(tern_stream_stats, points) },
    { "tern_stream_stored_points_total", "points the store accepted",
        offsetof(tern_stream_stats, stored) },
    { "tern_stream_dead_letters_total", "payloads sent to the dead-letter topic",
        offsetof(tern_stream_stats, bad_payloads) },
    { "tern_stream_duplicates_total", "points dropped as duplicates",
        offsetof(tern_stream_stats, duplicates) },
    { "tern_stream_late_points_total", "points later than the watermark (late topic)",
        offsetof(tern_stream_stats, late) },
    { "tern_stream_windows_total", "event-time windows closed or corrected",
        offsetof(tern_stream_stats, windows) },
    { "tern_stream_commits_total", "batches stored and committed",
        offsetof(tern_stream_stats, commits) },
    { "tern_stream_batch_errors_total", "batches not committed (read again)",
        offsetof(tern_stream_stats, errors) },
    { "tern_stream_alerts_fired_total", "alert transitions to firing",
        offsetof(tern_stream_stats, alerts_fired) },
};

/* Advances the registry's counters by what the stats gained since the last call. */
static void publish_metrics(tern_stream *s)
{
    pthread_mutex_lock(&s->mu);
    tern_stream_stats now = s->st;
    pthread_mutex_unlock(&s->mu);
    for (size_t i = 0; i < 10; i++) {
        if (!s->m_counters[i])
            continue;
        const uint64_t *total
            = (const uint64_t *)(const void *)((const char *)&now + stream_counters[i].offset);
        uint64_t *seen = (uint64_t *)(void *)((char *)&s->published + stream_counters[i].offset);
        tern_metrics_counter_follow(s->m_counters[i], seen, *total);
    }
}

static void *stream_main(void *arg)
{
    tern_stream *s = arg;
    pthread_setname_np(pthread_self(), "tern-stream"); /* top -H, bench CPU per stage */
    for (;;) {
        pthread_mutex_lock(&s->mu);
        bool stop = s->stop;
        pthread_mutex_unlock(&s->mu);
        if (stop)
            break;
        int rc = tern_stream_run_once(s, 100);
        publish_metrics(s);
        if (rc == TERN_ECLOSED)
            break;
        if (rc) {
            struct timespec ts = { 0, 100 * 1000 * 1000 };
            nanosleep(&ts, NULL); /* a failing store or log: retry without spinning */
        }
    }
    return NULL;
}

int tern_stream_new(tern_log *log, tern_tsdb *db, const tern_stream_config *c, tern_stream **out,
    char *err, size_t err_cap)
{
    if (err && err_cap)
        err[0] = 0;
    tern_stream *s = tern_calloc(1, sizeof(*s));
    if (!s)
        return TERN_ENOMEM;
    s->log = log;
    s->db = db;
    s->cfg = *c;
    s->valid_from = INT64_MIN;
    s->warm_windows = c->write_windows && c->window.window_ms == WARM_WINDOW_MS;
    pthread_mutex_init(&s->mu, NULL);
    uint32_t parts = 0;
    int rc = tern_log_partition_count(log, c->topic, &parts);
    /* the side outputs: as many partitions as the telemetry topic (an existing one with another
     * count is used as it is) */
    if (rc == 0) {
        rc = tern_log_create_topic(log, c->dead_letter, parts);
        if (rc == TERN_EEXIST)
            rc = 0;
    }
    if (rc == 0) {
        rc = tern_log_create_topic(log, c->late, parts);
        if (rc == TERN_EEXIST)
            rc = 0;
    }
    if (rc == 0 && c->rules && c->rules[0]) {
        char why[300] = "";
        rc = tern_alert_rules_load(c->rules, &s->rules, why, sizeof why);
        if (rc && err)
            snprintf(err, err_cap, "%s", why);
        if (rc)
            rc = TERN_ECONFIG;
        if (rc == 0)
            rc = tern_alert_engine_new(s->rules, on_alert, s, &s->alerts);
        if (rc == 0) {
            rc = tern_log_create_topic(log, c->alerts, parts);
            if (rc == TERN_EEXIST)
                rc = 0;
        }
        if (rc == 0)
            TERN_LOG(TERN_LOG_INFO, "stream", "%zu alert rules from %s",
                tern_alert_rules_count(s->rules), c->rules);
    }
    s->msgs = rc == 0 ? tern_calloc(c->max_batch ? c->max_batch : 1, sizeof(*s->msgs)) : NULL;
    if (rc == 0 && !s->msgs)
        rc = TERN_ENOMEM;
    if (rc == 0)
        rc = tern_tsdb_batch_new(&s->batch);
    if (rc == 0)
        rc = tern_payload_decoder_init(&s->dec, NULL, 0);
    if (rc == 0) {
        tern_window_config wc = c->window;
        if (wc.n_partitions < parts)
            wc.n_partitions = parts;
        tern_window_callbacks cb = { on_point, on_duplicate, on_late, on_window, s };
        rc = tern_window_engine_new(&wc, &cb, &s->windows);
        s->n_seen = wc.n_partitions;
        s->seen = rc == 0 ? tern_calloc(s->n_seen, sizeof(*s->seen)) : NULL;
        if (rc == 0 && !s->seen)
            rc = TERN_ENOMEM;
    }
    for (size_t i = 0; rc == 0 && i < 10; i++)
        (void)tern_metrics_add_counter(NULL, stream_counters[i].name, stream_counters[i].help, NULL,
            0, &s->m_counters[i]); /* a registry failure leaves that counter out */
    if (rc == 0) {
        const char *topics[1] = { c->topic };
        tern_log_consumer_config cc;
        memset(&cc, 0, sizeof(cc));
        cc.group = c->group;
        cc.topics = topics;
        cc.n_topics = 1;
        cc.start = TERN_LOG_OFFSET_EARLIEST;
        rc = tern_log_consumer_open(log, &cc, &s->consumer);
    }
    if (rc) {
        if (err && !err[0])
            snprintf(err, err_cap, "%s", tern_strerror(rc));
        tern_stream_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int tern_stream_start(tern_stream *s)
{
    if (pthread_create(&s->thread, NULL, stream_main, s) != 0)
        return TERN_ENOMEM;
    s->running = true;
    return 0;
}

void tern_stream_stop(tern_stream *s)
{
    if (!s->running)
        return;
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    s->running = false;
}

void tern_stream_get_stats(tern_stream *s, tern_stream_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    pthread_mutex_unlock(&s->mu);
}

void tern_stream_free(tern_stream *s)
{
    if (!s)
        return;
    tern_stream_stop(s);
    tern_log_consumer_close(s->consumer);
    tern_window_engine_free(s->windows);
    tern_free(s->seen);
    tern_alert_engine_free(s->alerts);
    tern_alert_rules_free(s->rules);
    tern_payload_decoder_free(&s->dec);
    tern_tsdb_batch_free(s->batch);
    tern_free(s->msgs);
    pthread_mutex_destroy(&s->mu);
    tern_free(s);
}

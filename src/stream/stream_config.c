/*
 * stream_config.c: the [stream] keys (see stream_config.h).
 */
#include "stream/stream_config.h"

const tern_config_schema tern_stream_config_schema[] = {
    { "stream.topic", TERN_CONFIG_STRING, "telemetry", "the log topic the stream consumes", 0, 0, 0,
        NULL },
    { "stream.group", TERN_CONFIG_STRING, "tern-stream",
        "consumer group: instances in one group share the topic's partitions", 0, 0, 0, NULL },
    { "stream.dead_letter_topic", TERN_CONFIG_STRING, "telemetry-dead",
        "where undecodable payloads go, with their reason", 0, 0, 0, NULL },
    { "stream.late_topic", TERN_CONFIG_STRING, "late",
        "where points later than the watermark also go", 0, 0, 0, NULL },
    { "stream.window", TERN_CONFIG_DURATION, "1m", "event-time window width", 1000,
        24LL * 3600 * 1000, 0, NULL },
    { "stream.allowed_lateness", TERN_CONFIG_DURATION, "30s",
        "the watermark lags the newest event time by this much", 0, 24LL * 3600 * 1000, 0, NULL },
    { "stream.idle_timeout", TERN_CONFIG_DURATION, "60s",
        "a partition without data this long stops holding the watermark back; 0: never", 0,
        24LL * 3600 * 1000, 0, NULL },
    { "stream.retain", TERN_CONFIG_DURATION, "5m",
        "closed windows stay correctable (and their points deduplicated) this long", 0,
        24LL * 3600 * 1000, 0, NULL },
    { "stream.rules", TERN_CONFIG_STRING, NULL,
        "alert rules file (docs/alerts.md); unset: no alerts", 0, 0, 0, NULL },
    { "stream.alerts_topic", TERN_CONFIG_STRING, "alerts",
        "log topic alert transitions are appended to", 0, 0, 0, NULL },
    { "stream.write_windows", TERN_CONFIG_BOOL, "true",
        "write closed 1-minute windows into the warm tier (provisional until the cut)", 0, 0, 0,
        NULL },
    { NULL, 0, NULL, NULL, 0, 0, 0, NULL },
};

void tern_stream_config_load(const tern_config *cfg, tern_stream_config *out)
{
    tern_stream_config_default(out);
    out->topic = tern_config_get_string(cfg, "stream.topic");
    out->group = tern_config_get_string(cfg, "stream.group");
    out->dead_letter = tern_config_get_string(cfg, "stream.dead_letter_topic");
    out->late = tern_config_get_string(cfg, "stream.late_topic");
    out->window.window_ms = tern_config_get_int(cfg, "stream.window");
    out->window.allowed_lateness_ms = tern_config_get_int(cfg, "stream.allowed_lateness");
    out->window.idle_timeout_ms = tern_config_get_int(cfg, "stream.idle_timeout");
    out->window.retain_ms = tern_config_get_int(cfg, "stream.retain");
    out->rules = tern_config_get_string(cfg, "stream.rules");
    out->alerts = tern_config_get_string(cfg, "stream.alerts_topic");
    out->write_windows = tern_config_get_bool(cfg, "stream.write_windows");
}

/*
 * stream.h: the stream processor: the stage between the log and the time-series store.
 *
 * It consumes the log's telemetry topic as a member of a consumer group (embedded log or
 * Kafka: it only sees src/log/log.h), and for every batch of records:
 *   - decodes each payload by its MQTT topic (the broker's `topic` header): samples (JSON or
 *     binary), single values, edge summaries (docs/formats/telemetry-payload.md); a payload
 *     that does not decode goes to the dead-letter topic with its reason as a header, is
 *     counted, and never stops the stream;
 *   - runs the points through the event-time window engine (window.h): duplicates of points it
 *     holds are dropped, points behind their partition's watermark go to the `late` topic as
 *     well, windows close on the watermark;
 *   - writes the points to the store in one batch and waits until the store reports it durable;
 *   - only then commits the consumer's offsets. At-least-once delivery plus the store's
 *     idempotent writes ((series, ts): last write wins) store each point exactly once, across
 *     crashes and rebalances.
 * Closed 1-minute windows (and their corrections) go to the store's warm tier as they close,
 * so warm queries see the last minutes; the store recomputes them from the raw points at each
 * cut (so they end equal to raw, late points included). Alert rules (alert.h) see every accepted
 * point in event time and the watermark; their transitions are appended to the alerts topic
 * and handed to the publish hook (MQTT alerts/{device}/{rule}).
 *
 * Threading: tern_stream_start runs the loop on its own thread; tern_stream_stop ends it after
 * the batch in hand is stored and committed. The log and the store must outlive the stream.
 */
#ifndef TERN_STREAM_STREAM_H
#define TERN_STREAM_STREAM_H

#include "log/log.h"
#include "stream/window.h"
#include "tsdb/tsdb.h"

#include <stdint.h>

typedef struct tern_stream tern_stream;

typedef struct tern_stream_config {
    const char *topic;       /* telemetry topic ("telemetry") */
    const char *group;       /* consumer group ("tern-stream") */
    const char *dead_letter; /* topic for undecodable payloads ("telemetry-dead") */
    const char *late;        /* topic for points later than the watermark ("late") */
    const char *root;        /* MQTT topic root ("fleet") */
    uint32_t max_batch;      /* records per poll (4096) */
    tern_window_config window;
    const char *rules;  /* alert rules file (docs/alerts.md); NULL or "": no alerts */
    const char *alerts; /* log topic alerts are appended to ("alerts") */
    /* write closed 1-minute windows into the store's warm tier (tern_tsdb_write_windows):
     * provisional until the store recomputes them from raw at the cut (default true) */
    bool write_windows;
    /* publish (may be NULL) is called from the stream's thread for every alert transition with
     * the MQTT topic alerts/{device}/{rule} and the alert as JSON; `tern serve` hands it to its
     * broker. */
    void (*publish)(void *arg, const char *topic, const uint8_t *payload, size_t len);
    void *publish_arg;
} tern_stream_config;

void tern_stream_config_default(tern_stream_config *c);

typedef struct tern_stream_stats {
    uint64_t records, points, stored, bad_payloads, duplicates, late, windows, summaries, events,
        batches, commits, errors, alerts_fired, alerts_resolved;
} tern_stream_stats;

/* tern_stream_new loads the alert rules (if any), creates the topics it writes (dead letter,
 * late, alerts) if missing and joins the group. Returns 0, TERN_ECONFIG (the rules file: err
 * says FILE:LINE and why), TERN_ENOTFOUND (no telemetry topic), TERN_ENOMEM, TERN_EIO. */
int tern_stream_new(tern_log *log, tern_tsdb *db, const tern_stream_config *c, tern_stream **out,
    char *err, size_t err_cap);
/* tern_stream_run_once polls one batch (waiting at most timeout_ms) and processes it fully:
 * decoded, stored durably, committed. Returns 0 or the error that stopped it (the batch is not
 * committed: it will be read again). */
int tern_stream_run_once(tern_stream *s, int timeout_ms);
int tern_stream_start(tern_stream *s);
void tern_stream_stop(tern_stream *s);
void tern_stream_get_stats(tern_stream *s, tern_stream_stats *out);
void tern_stream_free(tern_stream *s);

#endif

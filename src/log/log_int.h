/*
 * log_int.h: the backend interface behind log.h (private to src/log).
 *
 * log.c holds the public functions: argument checks, the partitioner, config defaults, and
 * dispatch to a backend through tern_log_ops. Each backend (log_embedded.c, log_kafka.c)
 * embeds struct tern_log as the first member of its own log struct and struct
 * tern_log_consumer as the first member of its consumer struct, and implements the ops with
 * the contracts of the matching public functions in log.h (arguments already validated).
 */
#ifndef TERN_LOG_INT_H
#define TERN_LOG_INT_H

#include "log/log.h"

#include <stdatomic.h>

typedef struct tern_log_ops {
    const char *name; /* "embedded", "kafka" */
    int (*open)(const tern_log_config *cfg, tern_log **out);
    void (*close)(tern_log *log);
    int (*create_topic)(tern_log *log, const char *topic, uint32_t n_partitions);
    int (*partition_count)(tern_log *log, const char *topic, uint32_t *n);
    int (*append)(tern_log *log, const char *topic, int32_t partition, const tern_log_record *rec,
        tern_log_append_cb cb, void *opaque);
    int (*flush)(tern_log *log);
    int (*offsets)(
        tern_log *log, const char *topic, uint32_t partition, int64_t *earliest, int64_t *latest);
    int (*consumer_open)(
        tern_log *log, const tern_log_consumer_config *cfg, tern_log_consumer **out);
    int (*consumer_poll)(
        tern_log_consumer *c, tern_log_message *msgs, size_t max, int timeout_ms, size_t *n_out);
    int (*consumer_commit)(
        tern_log_consumer *c, const char *topic, uint32_t partition, int64_t next_offset);
    int (*consumer_commit_all)(tern_log_consumer *c);
    int (*consumer_seek)(
        tern_log_consumer *c, const char *topic, uint32_t partition, int64_t offset);
    int (*consumer_assignment)(
        tern_log_consumer *c, tern_log_assignment *out, size_t max, size_t *n);
    void (*consumer_close)(tern_log_consumer *c);
    int (*committed)(
        tern_log *log, const char *group, const char *topic, uint32_t partition, int64_t *offset);
    /* Names of every topic, each allocated with tern_malloc, in an array from tern_malloc. */
    int (*list_topics)(tern_log *log, char ***names, size_t *n);
} tern_log_ops;

/* Counters every backend bumps (atomics: appends come from any thread). */
typedef struct tern_log_counters {
    _Atomic uint64_t records_appended;
    _Atomic uint64_t bytes_appended;
    _Atomic uint64_t batches_written;
    _Atomic uint64_t fsyncs;
    _Atomic uint64_t append_errors;
    _Atomic uint64_t quota_refusals;
    _Atomic uint64_t corrupt_batches;
} tern_log_counters;

struct tern_log {
    const tern_log_ops *ops;
    tern_log_counters counters;
};

struct tern_log_consumer {
    tern_log *log;
};

extern const tern_log_ops tern_log__embedded_ops;
extern const tern_log_ops tern_log__kafka_ops;

/* tern_log__valid_topic: Kafka's topic name rule (1..249 of [a-zA-Z0-9._-]). */
bool tern_log__valid_topic(const char *topic);

#endif

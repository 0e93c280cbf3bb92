/*
 * log.h: tern's durable, partitioned log: the reservoir between the broker and everything
 * downstream. One API, two backends:
 *   - embedded (the default): segment files under a data directory, no service needed
 *     (log_embedded.c; on-disk format in docs/formats/log.md);
 *   - Apache Kafka through librdkafka, for deployments that outgrow one machine (log_kafka.c).
 * Everything downstream (stream processor, tools) uses only this header, so it never knows
 * which backend is in use.
 *
 * Model (Kafka's): a log holds topics; a topic has N partitions; a record (key, value,
 * timestamp, headers) appended to a partition gets the next offset (0, 1, 2, ...); order is
 * kept per partition. A record without an explicit partition goes to
 * tern_log_partition_for_key(key), Kafka's default partitioner (murmur2), so a device lands on
 * the same partition index with either backend. Consumers read from an offset; consumers in a
 * group share a topic's partitions (each partition owned by one member, rebalanced when one
 * joins or leaves) and commit the next offset to read, durably.
 *
 * Durability: an append completes (its callback runs with status 0) only once the record is
 * durable under the configured policy: embedded, after the fsync that covers it (fsync each
 * batch, or group commit every N ms); Kafka, on the delivery report of an idempotent acks=all
 * producer. A status < 0 means the record is NOT stored (TERN_EQUOTA: the disk budget is
 * exhausted; TERN_EIO; TERN_ECLOSED). No record is ever reported stored that is not.
 *
 * Threading: a tern_log is thread-safe: any thread may append. Append callbacks run on the
 * log's own I/O thread, never inside tern_log_append; they must be short and must not call back
 * into the log (hand the result to your loop with tern_loop_post). A consumer belongs to one
 * thread at a time. Nothing here uses an event loop.
 *
 * Errors: 0 or a negative TERN_E* code (base/error.h). When a call returns an error, its
 * callback is never called.
 */
#ifndef TERN_LOG_LOG_H
#define TERN_LOG_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tern_log tern_log;
typedef struct tern_log_consumer tern_log_consumer;

typedef enum tern_log_backend {
    TERN_LOG_EMBEDDED = 0,
    TERN_LOG_KAFKA = 1,
} tern_log_backend;

typedef enum tern_log_fsync {
    TERN_LOG_FSYNC_ALWAYS = 0, /* fsync every batch before completing its appends */
    TERN_LOG_FSYNC_GROUP = 1,  /* one fsync every group_commit_ms covers all appends since */
} tern_log_fsync;

typedef struct tern_log_config {
    tern_log_backend backend;
    /* embedded */
    const char *dir; /* data directory; the log lives in DIR (created) */
    tern_log_fsync fsync;
    uint32_t group_commit_ms;   /* TERN_LOG_FSYNC_GROUP: longest wait before an fsync */
    uint64_t segment_bytes;     /* roll a new segment file past this size */
    int64_t retention_ms;       /* delete whole segments older than this; 0: keep */
    uint64_t retention_bytes;   /* per partition; delete oldest segments beyond; 0: keep */
    uint64_t disk_budget_bytes; /* all topics; appends beyond fail with TERN_EQUOTA; 0: none */
    bool compress;              /* zstd record batches */
    /* kafka */
    const char *kafka_brokers; /* bootstrap list "host:port,..." */
    const char *kafka_client_id;
    uint32_t kafka_linger_ms; /* producer batching delay */
} tern_log_config;

/* tern_log_config_defaults: embedded in ./tern-data/log, group commit 5 ms, 128 MiB segments,
 * no retention limit, zstd on; Kafka linger 5 ms. */
void tern_log_config_defaults(tern_log_config *cfg);

/*
 * tern_log_open opens (creating) the log described by cfg (strings are copied) and sets *out
 * only on success. Embedded: recovers every partition first (a torn tail is truncated to the
 * last whole batch; see docs/formats/log.md). Kafka: connects the producer (topics are created
 * on demand). Returns 0, TERN_EINVAL, TERN_ECORRUPT (a file that is not a tern log), TERN_EIO,
 * TERN_ENOMEM, or -errno.
 */
int tern_log_open(const tern_log_config *cfg, tern_log **out);

/*
 * tern_log_close waits for appends in flight to complete (their callbacks run, with status 0
 * or an error), then releases everything. Consumers must be closed first. NULL is a no-op.
 */
void tern_log_close(tern_log *log);

/*
 * tern_log_create_topic creates topic with n_partitions (>= 1). Creating an existing topic with
 * the same count is a no-op; with another count it is TERN_EEXIST. Topic names: 1..249 bytes
 * of [a-zA-Z0-9._-] (Kafka's rule), else TERN_EINVAL.
 */
int tern_log_create_topic(tern_log *log, const char *topic, uint32_t n_partitions);

/*
 * tern_log_list_topics sets *names to a new array of the *n topic names (sorted); release it
 * with tern_log_free_topics. Returns 0, TERN_ENOMEM or TERN_EIO.
 */
int tern_log_list_topics(tern_log *log, char ***names, size_t *n);
void tern_log_free_topics(char **names, size_t n);

/* tern_log_partition_count sets *n for an existing topic, or returns TERN_ENOTFOUND. */
int tern_log_partition_count(tern_log *log, const char *topic, uint32_t *n);

/* tern_log_partition_for_key: Kafka's default partitioner: (murmur2(key) & 0x7fffffff) % n. */
uint32_t tern_log_partition_for_key(const void *key, size_t key_len, uint32_t n_partitions);

typedef struct tern_log_header {
    const char *name;
    const uint8_t *value;
    size_t value_len;
} tern_log_header;

/* A record to append. Every pointer is borrowed for the call only (the log copies). */
typedef struct tern_log_record {
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    int64_t ts_ms; /* record timestamp (ms since the epoch); 0: the append time */
    const tern_log_header *headers;
    size_t n_headers;
} tern_log_record;

/*
 * The completion of one append: status 0 with the record's partition and offset once it is
 * durable, or a negative code (the record is not stored). Runs on the log's I/O thread.
 */
typedef void (*tern_log_append_cb)(void *opaque, int status, uint32_t partition, int64_t offset);

/*
 * tern_log_append queues rec for topic (which must exist) into partition, or, with
 * partition < 0, into tern_log_partition_for_key(rec->key) (a record without a key goes to a
 * round-robin partition). Records appended to one partition get offsets in the order of the
 * calls. The log batches appends internally (one write and one fsync for many records). cb
 * (may be NULL: fire and forget) is called exactly once, later, on success of this call.
 * Returns 0; TERN_ENOTFOUND (no such topic); TERN_EINVAL (bad partition, record over 16 MiB);
 * TERN_EQUOTA (disk budget exhausted: refused at once); TERN_EAGAIN (too much queued, the
 * caller should push back); TERN_ECLOSED; TERN_ENOMEM.
 */
int tern_log_append(tern_log *log, const char *topic, int32_t partition, const tern_log_record *rec,
    tern_log_append_cb cb, void *opaque);

/* tern_log_flush blocks until every append made before the call has completed. */
int tern_log_flush(tern_log *log);

/* Offsets of one partition: [earliest, latest) are readable; latest is the next to be written. */
int tern_log_offsets(
    tern_log *log, const char *topic, uint32_t partition, int64_t *earliest, int64_t *latest);

/* ---- consumers -------------------------------------------------------------------------- */

#define TERN_LOG_OFFSET_EARLIEST (-2)
#define TERN_LOG_OFFSET_LATEST (-1)
#define TERN_LOG_OFFSET_COMMITTED (-3)

/* A record read back. Pointers stay valid until the next poll or close of the consumer. */
typedef struct tern_log_message {
    const char *topic;
    uint32_t partition;
    int64_t offset;
    int64_t ts_ms;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    const tern_log_header *headers;
    size_t n_headers;
} tern_log_message;

typedef struct tern_log_consumer_config {
    const char *group; /* consumer group; NULL: no group (read every partition, no commits) */
    const char *const *topics;
    size_t n_topics;
    int64_t start; /* where a partition without a committed offset starts:
                      TERN_LOG_OFFSET_EARLIEST (default) or _LATEST */
} tern_log_consumer_config;

/*
 * tern_log_consumer_open joins cfg->group (or reads alone) on cfg->topics and sets *out.
 * Partitions are assigned to the group's members (range assignment per topic) and
 * reassigned when a member joins or leaves; a member that took a partition starts at the
 * group's committed offset for it. Returns 0, TERN_ENOTFOUND (a topic), TERN_ENOMEM, TERN_EIO.
 */
int tern_log_consumer_open(
    tern_log *log, const tern_log_consumer_config *cfg, tern_log_consumer **out);

/*
 * tern_log_consumer_poll reads up to max messages from the partitions this member owns,
 * waiting at most timeout_ms (0: do not wait) for the first one. Sets *n_out (0 on timeout).
 * Messages of one partition come in offset order. Returns 0, TERN_ECLOSED, TERN_EIO, or
 * TERN_ECORRUPT (bytes on disk fail their checksum: reading stops at the last good batch of
 * that partition and the error is reported once, with the partition, in the log).
 */
int tern_log_consumer_poll(
    tern_log_consumer *c, tern_log_message *msgs, size_t max, int timeout_ms, size_t *n_out);

/*
 * tern_log_consumer_commit durably records next_offset (the offset of the next message to read,
 * i.e. the last processed + 1) for the group on topic/partition. Commits for partitions this
 * member no longer owns are refused (TERN_EDENIED) so a stale member cannot rewind another's
 * progress. Returns 0, TERN_EDENIED, TERN_EINVAL (no group), TERN_EIO.
 */
int tern_log_consumer_commit(
    tern_log_consumer *c, const char *topic, uint32_t partition, int64_t next_offset);

/* tern_log_consumer_commit_all commits the position after the last message polled on every
 * owned partition. */
int tern_log_consumer_commit_all(tern_log_consumer *c);

/* tern_log_consumer_seek moves the read position of an owned partition to an offset or to
 * TERN_LOG_OFFSET_EARLIEST / _LATEST / _COMMITTED. */
int tern_log_consumer_seek(
    tern_log_consumer *c, const char *topic, uint32_t partition, int64_t offset);

/* One owned partition, as tern_log_consumer_assignment reports it. */
typedef struct tern_log_assignment {
    const char *topic;
    uint32_t partition;
} tern_log_assignment;

/* tern_log_consumer_assignment copies up to max owned partitions and sets *n (total owned). */
int tern_log_consumer_assignment(
    tern_log_consumer *c, tern_log_assignment *out, size_t max, size_t *n);

/* tern_log_consumer_close leaves the group (its partitions go to the other members) and frees
 * the consumer. Uncommitted progress is not committed. NULL is a no-op. */
void tern_log_consumer_close(tern_log_consumer *c);

/*
 * tern_log_committed sets *offset to group's committed offset for topic/partition
 * (TERN_LOG_OFFSET_EARLIEST if none), and tern_log_lag sets *lag = latest - committed.
 */
int tern_log_committed(
    tern_log *log, const char *group, const char *topic, uint32_t partition, int64_t *offset);
int tern_log_lag(
    tern_log *log, const char *group, const char *topic, uint32_t partition, int64_t *lag);

/* Counters for the metrics registry. */
typedef struct tern_log_stats {
    uint64_t records_appended;
    uint64_t bytes_appended;
    uint64_t batches_written;
    uint64_t fsyncs;
    uint64_t append_errors;
    uint64_t quota_refusals;
    uint64_t corrupt_batches; /* batches that failed their checksum on read or recovery */
} tern_log_stats;

void tern_log_get_stats(tern_log *log, tern_log_stats *out);

#endif

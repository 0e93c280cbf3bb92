/*
 * log.c: the public face of the log (log.h): defaults, argument checks, Kafka's partitioner,
 * statistics, and dispatch to the configured backend (log_int.h).
 */
#include "log/log_int.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/hash.h"

#include <stdlib.h>
#include <string.h>

void tern_log_config_defaults(tern_log_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->backend = TERN_LOG_EMBEDDED;
    cfg->dir = "./tern-data/log";
    cfg->fsync = TERN_LOG_FSYNC_GROUP;
    cfg->group_commit_ms = 5;
    cfg->segment_bytes = 128u << 20;
    cfg->compress = true;
    cfg->kafka_client_id = "tern";
    cfg->kafka_linger_ms = 5;
}

bool tern_log__valid_topic(const char *topic)
{
    size_t n = topic ? strlen(topic) : 0;
    if (n == 0 || n > 249 || strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = topic[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9')
            || ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

uint32_t tern_log_partition_for_key(const void *key, size_t key_len, uint32_t n_partitions)
{
    return tern_hash_partition(key, key_len, n_partitions);
}

int tern_log_open(const tern_log_config *cfg, tern_log **out)
{
    if (!cfg || !out)
        return TERN_EINVAL;
    switch (cfg->backend) {
    case TERN_LOG_EMBEDDED:
        if (!cfg->dir || !cfg->dir[0] || cfg->segment_bytes < 4096)
            return TERN_EINVAL;
        return tern_log__embedded_ops.open(cfg, out);
    case TERN_LOG_KAFKA:
        if (!cfg->kafka_brokers || !cfg->kafka_brokers[0])
            return TERN_EINVAL;
        return tern_log__kafka_ops.open(cfg, out);
    default:
        return TERN_EINVAL;
    }
}

void tern_log_close(tern_log *log)
{
    if (log)
        log->ops->close(log);
}

int tern_log_create_topic(tern_log *log, const char *topic, uint32_t n_partitions)
{
    if (!tern_log__valid_topic(topic) || n_partitions == 0 || n_partitions > 100000)
        return TERN_EINVAL;
    return log->ops->create_topic(log, topic, n_partitions);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int tern_log_list_topics(tern_log *log, char ***names, size_t *n)
{
    if (!names || !n || !log->ops->list_topics)
        return TERN_EINVAL;
    int rc = log->ops->list_topics(log, names, n);
    if (rc == 0 && *n > 1)
        qsort(*names, *n, sizeof **names, cmp_names);
    return rc;
}

void tern_log_free_topics(char **names, size_t n)
{
    for (size_t i = 0; names && i < n; i++)
        tern_free(names[i]);
    tern_free(names);
}

int tern_log_partition_count(tern_log *log, const char *topic, uint32_t *n)
{
    if (!tern_log__valid_topic(topic))
        return TERN_EINVAL;
    return log->ops->partition_count(log, topic, n);
}

int tern_log_append(tern_log *log, const char *topic, int32_t partition, const tern_log_record *rec,
    tern_log_append_cb cb, void *opaque)
{
    if (!tern_log__valid_topic(topic) || !rec || rec->value_len > (16u << 20)
        || rec->key_len > (16u << 20) || (rec->value_len && !rec->value)
        || (rec->key_len && !rec->key))
        return TERN_EINVAL;
    int rc = log->ops->append(log, topic, partition, rec, cb, opaque);
    if (rc == TERN_EQUOTA)
        atomic_fetch_add(&log->counters.quota_refusals, 1);
    else if (rc != 0)
        atomic_fetch_add(&log->counters.append_errors, 1);
    return rc;
}

int tern_log_flush(tern_log *log)
{
    return log->ops->flush(log);
}

int tern_log_offsets(
    tern_log *log, const char *topic, uint32_t partition, int64_t *earliest, int64_t *latest)
{
    if (!tern_log__valid_topic(topic))
        return TERN_EINVAL;
    return log->ops->offsets(log, topic, partition, earliest, latest);
}

int tern_log_consumer_open(
    tern_log *log, const tern_log_consumer_config *cfg, tern_log_consumer **out)
{
    if (!cfg || !out || cfg->n_topics == 0)
        return TERN_EINVAL;
    for (size_t i = 0; i < cfg->n_topics; i++)
        if (!tern_log__valid_topic(cfg->topics[i]))
            return TERN_EINVAL;
    if (cfg->start != TERN_LOG_OFFSET_EARLIEST && cfg->start != TERN_LOG_OFFSET_LATEST
        && cfg->start != 0)
        return TERN_EINVAL;
    return log->ops->consumer_open(log, cfg, out);
}

int tern_log_consumer_poll(
    tern_log_consumer *c, tern_log_message *msgs, size_t max, int timeout_ms, size_t *n_out)
{
    if (!msgs || !n_out || max == 0)
        return TERN_EINVAL;
    return c->log->ops->consumer_poll(c, msgs, max, timeout_ms, n_out);
}

int tern_log_consumer_commit(
    tern_log_consumer *c, const char *topic, uint32_t partition, int64_t next_offset)
{
    if (!tern_log__valid_topic(topic) || next_offset < 0)
        return TERN_EINVAL;
    return c->log->ops->consumer_commit(c, topic, partition, next_offset);
}

int tern_log_consumer_commit_all(tern_log_consumer *c)
{
    return c->log->ops->consumer_commit_all(c);
}

int tern_log_consumer_seek(
    tern_log_consumer *c, const char *topic, uint32_t partition, int64_t offset)
{
    if (!tern_log__valid_topic(topic) || offset < TERN_LOG_OFFSET_COMMITTED)
        return TERN_EINVAL;
    return c->log->ops->consumer_seek(c, topic, partition, offset);
}

int tern_log_consumer_assignment(
    tern_log_consumer *c, tern_log_assignment *out, size_t max, size_t *n)
{
    if (!n || (max && !out))
        return TERN_EINVAL;
    return c->log->ops->consumer_assignment(c, out, max, n);
}

void tern_log_consumer_close(tern_log_consumer *c)
{
    if (c)
        c->log->ops->consumer_close(c);
}

int tern_log_committed(
    tern_log *log, const char *group, const char *topic, uint32_t partition, int64_t *offset)
{
    if (!group || !group[0] || !tern_log__valid_topic(topic) || !offset)
        return TERN_EINVAL;
    return log->ops->committed(log, group, topic, partition, offset);
}

int tern_log_lag(
    tern_log *log, const char *group, const char *topic, uint32_t partition, int64_t *lag)
{
    int64_t committed, earliest, latest;
    int rc = tern_log_committed(log, group, topic, partition, &committed);
    if (rc == 0)
        rc = tern_log_offsets(log, topic, partition, &earliest, &latest);
    if (rc != 0)
        return rc;
    if (committed < 0 || committed < earliest)
        committed = earliest;
    *lag = latest > committed ? latest - committed : 0;
    return 0;
}

void tern_log_get_stats(tern_log *log, tern_log_stats *out)
{
    out->records_appended = atomic_load(&log->counters.records_appended);
    out->bytes_appended = atomic_load(&log->counters.bytes_appended);
    out->batches_written = atomic_load(&log->counters.batches_written);
    out->fsyncs = atomic_load(&log->counters.fsyncs);
    out->append_errors = atomic_load(&log->counters.append_errors);
    out->quota_refusals = atomic_load(&log->counters.quota_refusals);
    out->corrupt_batches = atomic_load(&log->counters.corrupt_batches);
}

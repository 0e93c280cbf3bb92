/*
 * log_config.c: the [log] keys (see log_config.h).
 */
#include "log/log_config.h"

#include "base/error.h"

#include <stdio.h>
#include <string.h>

const tern_config_schema tern_log_config_schema[] = {
    { "log.backend", TERN_CONFIG_ENUM, "embedded",
        "embedded (files under the data directory) or kafka", 0, 0, 0, "embedded|kafka" },
    { "log.dir", TERN_CONFIG_STRING, NULL, "embedded log directory; unset: DATA/log", 0, 0, 0,
        NULL },
    { "log.fsync", TERN_CONFIG_ENUM, "group",
        "always: fsync every batch; group: one fsync per group_commit", 0, 0, 0, "always|group" },
    { "log.group_commit", TERN_CONFIG_DURATION, "5ms",
        "longest wait for the fsync that covers an append", 0, 10000, 0, NULL },
    { "log.segment_size", TERN_CONFIG_SIZE, "128MiB", "roll a new segment file past this size",
        65536, 17179869184, 0, NULL },
    { "log.retention", TERN_CONFIG_DURATION, "0", "delete whole segments older than this; 0: keep",
        0, 0, 0, NULL },
    { "log.retention_size", TERN_CONFIG_SIZE, "0",
        "per partition, delete the oldest segments beyond this; 0: keep", 0, 0, 0, NULL },
    { "log.disk_budget", TERN_CONFIG_SIZE, "0",
        "all topics; beyond it QoS 0 is shed and QoS 1/2 refused (0x97); 0: none", 0, 0, 0, NULL },
    { "log.compress", TERN_CONFIG_BOOL, "true", "zstd-compress record batches", 0, 0, 0, NULL },
    { "log.partitions", TERN_CONFIG_INT, "16", "partitions of the topics tern creates", 1, 100000,
        0, NULL },
    { "log.kafka_brokers", TERN_CONFIG_STRING, NULL,
        "Kafka bootstrap servers host:port,... (backend kafka)", 0, 0, 0, NULL },
    { "log.kafka_linger", TERN_CONFIG_DURATION, "5ms", "Kafka producer batching delay", 0, 10000, 0,
        NULL },
    { NULL, 0, NULL, NULL, 0, 0, 0, NULL },
};

int tern_log_config_load(const tern_config *cfg, tern_log_config *out, uint32_t *n_partitions,
    char *dir_buf, size_t dir_cap, char *err, size_t err_cap)
{
    tern_log_config c;
    tern_log_config_defaults(&c);
    const char *backend = tern_config_get_string(cfg, "log.backend");
    c.backend = strcmp(backend, "kafka") == 0 ? TERN_LOG_KAFKA : TERN_LOG_EMBEDDED;
    const char *dir = tern_config_get_string(cfg, "log.dir");
    int n = dir ? snprintf(dir_buf, dir_cap, "%s", dir)
                : snprintf(dir_buf, dir_cap, "%s/log", tern_config_get_string(cfg, "data.dir"));
    if (n < 0 || (size_t)n >= dir_cap) {
        snprintf(err, err_cap, "log.dir: path too long");
        return TERN_ECONFIG;
    }
    c.dir = dir_buf;
    c.fsync = strcmp(tern_config_get_string(cfg, "log.fsync"), "always") == 0
        ? TERN_LOG_FSYNC_ALWAYS
        : TERN_LOG_FSYNC_GROUP;
    c.group_commit_ms = (uint32_t)tern_config_get_int(cfg, "log.group_commit");
    c.segment_bytes = (uint64_t)tern_config_get_int(cfg, "log.segment_size");
    c.retention_ms = tern_config_get_int(cfg, "log.retention");
    c.retention_bytes = (uint64_t)tern_config_get_int(cfg, "log.retention_size");
    c.disk_budget_bytes = (uint64_t)tern_config_get_int(cfg, "log.disk_budget");
    c.compress = tern_config_get_bool(cfg, "log.compress");
    c.kafka_brokers = tern_config_get_string(cfg, "log.kafka_brokers");
    c.kafka_linger_ms = (uint32_t)tern_config_get_int(cfg, "log.kafka_linger");
    if (c.backend == TERN_LOG_KAFKA && (!c.kafka_brokers || !c.kafka_brokers[0])) {
        snprintf(err, err_cap, "log.backend = kafka needs log.kafka_brokers");
        return TERN_ECONFIG;
    }
    *n_partitions = (uint32_t)tern_config_get_int(cfg, "log.partitions");
    *out = c;
    return 0;
}

/*
 * tsdb_config.c: the [tsdb] keys (see tsdb_config.h).
 */
#include "tsdb/tsdb_config.h"

#include "base/error.h"

#include <stdio.h>
#include <string.h>

const tern_config_schema tern_tsdb_config_schema[] = {
    { "tsdb.dir", TERN_CONFIG_STRING, NULL, "time-series store directory; unset: DATA/tsdb", 0, 0,
        0, NULL },
    { "tsdb.block_duration", TERN_CONFIG_DURATION, "30m",
        "the head is cut into blocks this long; compaction merges 12 of them", 60000,
        7LL * 24 * 3600 * 1000, 0, NULL },
    { "tsdb.retention", TERN_CONFIG_DURATION, "7d",
        "hot tier: blocks older than this go to the cold hook, then away; 0: keep", 0, 0, 0, NULL },
    { "tsdb.warm_retention", TERN_CONFIG_DURATION, "90d",
        "warm tier (1-minute windows per series): blocks older than this go away; 0: keep", 0, 0, 0,
        NULL },
    { "tsdb.fsync", TERN_CONFIG_BOOL, "true",
        "fsync the WAL before acknowledging a write (off: a crash may lose the last writes)", 0, 0,
        0, NULL },
    { "tsdb.group_commit", TERN_CONFIG_DURATION, "5ms",
        "longest wait for the WAL fsync that covers a write", 0, 10000, 0, NULL },
    { "tsdb.max_series", TERN_CONFIG_INT, "0",
        "series limit: new series beyond it are refused (counted); 0: none", 0, 1000000000000LL, 0,
        NULL },
    { "tsdb.max_series_per_tenant", TERN_CONFIG_INT, "0",
        "series limit per tenant (devices sharing a value of tsdb.tenant_tag): the tenant's new "
        "series beyond it are refused (counted); 0: none",
        0, 1000000000000LL, 0, NULL },
    { "tsdb.tenant_tag", TERN_CONFIG_STRING, "fleet",
        "the device tag naming a device's tenant (for tsdb.max_series_per_tenant)", 0, 0, 0, NULL },
    { "tsdb.device_tag", TERN_CONFIG_STRING, "device_id",
        "line protocol: the tag naming the device; the other tags are device tags", 0, 0, 0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, 0, NULL },
};

int tern_tsdb_config_load(const tern_config *cfg, tern_tsdb_options *out, char *dir_buf,
    size_t dir_cap, char *err, size_t err_cap)
{
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    const char *dir = tern_config_get_string(cfg, "tsdb.dir");
    int n = dir ? snprintf(dir_buf, dir_cap, "%s", dir)
                : snprintf(dir_buf, dir_cap, "%s/tsdb", tern_config_get_string(cfg, "data.dir"));
    if (n < 0 || (size_t)n >= dir_cap) {
        snprintf(err, err_cap, "tsdb.dir: path too long");
        return TERN_ECONFIG;
    }
    o.dir = dir_buf;
    o.block_duration_ms = tern_config_get_int(cfg, "tsdb.block_duration");
    o.retention_ms = tern_config_get_int(cfg, "tsdb.retention");
    o.warm_retention_ms = tern_config_get_int(cfg, "tsdb.warm_retention");
    o.wal_fsync = tern_config_get_bool(cfg, "tsdb.fsync");
    o.wal_group_commit_ms = (uint32_t)tern_config_get_int(cfg, "tsdb.group_commit");
    o.max_series = (uint64_t)tern_config_get_int(cfg, "tsdb.max_series");
    o.max_series_per_tenant = (uint64_t)tern_config_get_int(cfg, "tsdb.max_series_per_tenant");
    o.tenant_tag = tern_config_get_string(cfg, "tsdb.tenant_tag");
    if (!o.tenant_tag || !*o.tenant_tag) {
        snprintf(err, err_cap, "tsdb.tenant_tag must name a tag");
        return TERN_ECONFIG;
    }
    const char *tag = tern_config_get_string(cfg, "tsdb.device_tag");
    if (!tag || !*tag) {
        snprintf(err, err_cap, "tsdb.device_tag must name a tag");
        return TERN_ECONFIG;
    }
    *out = o;
    return 0;
}

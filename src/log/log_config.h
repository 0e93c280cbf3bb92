/*
 * log_config.h: the [log] section of tern's config file and its translation into a
 * tern_log_config (keys documented in docs/log.md).
 */
#ifndef TERN_LOG_CONFIG_H
#define TERN_LOG_CONFIG_H

#include "base/config.h"
#include "log/log.h"

extern const tern_config_schema tern_log_config_schema[];

/*
 * tern_log_config_load fills *out from cfg (holding tern_log_config_schema and the core
 * schema). The log directory defaults to DATA/log. Strings are borrowed from cfg, except the
 * directory, which is written into dir_buf (dir_cap bytes). Also sets *n_partitions (the
 * partition count of topics tern creates). Returns 0 or TERN_ECONFIG (message in err).
 */
int tern_log_config_load(const tern_config *cfg, tern_log_config *out, uint32_t *n_partitions,
    char *dir_buf, size_t dir_cap, char *err, size_t err_cap);

#endif

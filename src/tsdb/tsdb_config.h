/*
 * tsdb_config.h: the [tsdb] keys of tern's config file (docs/tsdb.md lists them) and how they
 * become tern_tsdb_options.
 */
#ifndef TERN_TSDB_TSDB_CONFIG_H
#define TERN_TSDB_TSDB_CONFIG_H

#include "base/config.h"
#include "tsdb/tsdb.h"

#include <stddef.h>

extern const tern_config_schema tern_tsdb_config_schema[];

/*
 * tern_tsdb_config_load fills *out from cfg (holding tern_tsdb_config_schema and the core
 * schema). The store's directory is tsdb.dir, or DATA/tsdb; it is written into dir_buf. Returns
 * 0 or TERN_ECONFIG with the reason in err.
 */
int tern_tsdb_config_load(const tern_config *cfg, tern_tsdb_options *out, char *dir_buf,
    size_t dir_cap, char *err, size_t err_cap);

#endif

/*
 * api_config.h: the [http] keys: where tern's HTTP API listens and its request limits.
 */
#ifndef TERN_API_API_CONFIG_H
#define TERN_API_API_CONFIG_H

#include "api/http.h"
#include "base/config.h"

extern const tern_config_schema tern_api_config_schema[];

/* tern_api_config_load fills *http from the [http] keys and returns the listen address (owned
 * by cfg). */
const char *tern_api_config_load(const tern_config *cfg, tern_http_config *http);

#endif

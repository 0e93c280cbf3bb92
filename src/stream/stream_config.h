/*
 * stream_config.h: the [stream] keys of tern's config file and how they become a
 * tern_stream_config.
 */
#ifndef TERN_STREAM_STREAM_CONFIG_H
#define TERN_STREAM_STREAM_CONFIG_H

#include "base/config.h"
#include "stream/stream.h"

extern const tern_config_schema tern_stream_config_schema[];

/* tern_stream_config_load fills *out from cfg (strings are borrowed from cfg). */
void tern_stream_config_load(const tern_config *cfg, tern_stream_config *out);

#endif

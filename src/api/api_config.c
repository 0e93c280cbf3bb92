/*
 * api_config.c: the [http] keys (see api_config.h).
 */
#include "api/api_config.h"

const tern_config_schema tern_api_config_schema[] = {
    { "http.listen", TERN_CONFIG_STRING, "127.0.0.1:8086",
        "HTTP API address (InfluxDB-compatible writes, queries, /metrics)", 0, 0, 0, NULL },
    { "http.max_body", TERN_CONFIG_SIZE, "64MiB", "largest request body (after gzip); more: 413",
        1024, 1LL << 32, 0, NULL },
    { "http.max_connections", TERN_CONFIG_INT, "1024", "beyond it new connections get 503", 1,
        100000, 0, NULL },
    { NULL, 0, NULL, NULL, 0, 0, 0, NULL },
};

const char *tern_api_config_load(const tern_config *cfg, tern_http_config *http)
{
    tern_http_config_default(http);
    http->max_body_bytes = (size_t)tern_config_get_int(cfg, "http.max_body");
    http->max_connections = (size_t)tern_config_get_int(cfg, "http.max_connections");
    return tern_config_get_string(cfg, "http.listen");
}

/*
 * fuzz_base_config.c: arbitrary bytes as a config file. The parser must never crash, read out
 * of bounds or leak; a rejection must come with a FILE:LINE message; an accepted file must
 * leave every typed value readable.
 */
#include "base/config.h"
#include "base/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const tern_config_schema schema[] = {
    { .key = "broker.listen", .type = TERN_CONFIG_STRING, .flags = TERN_CONFIG_LIST },
    { .key = "broker.max_connections", .type = TERN_CONFIG_INT, .min = 1, .max = 1000000 },
    { .key = "broker.tls", .type = TERN_CONFIG_BOOL, .default_value = "off" },
    { .key = "log.segment_size", .type = TERN_CONFIG_SIZE, .default_value = "64MiB" },
    { .key = "log.flush_interval", .type = TERN_CONFIG_DURATION, .default_value = "10ms" },
    { .key = "log.ports", .type = TERN_CONFIG_INT, .flags = TERN_CONFIG_LIST },
    { .key = "log.level", .type = TERN_CONFIG_ENUM, .choices = "error|warn|info|debug" },
    { .key = "tsdb.retention.hot", .type = TERN_CONFIG_DURATION, .flags = TERN_CONFIG_LIST },
    { .key = "name", .type = TERN_CONFIG_STRING },
    { .key = NULL },
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tern_config *cfg;
    if (tern_config_create(&cfg))
        return 0;
    if (tern_config_add_schema(cfg, schema))
        abort();
    int rc = tern_config_parse_string(cfg, "fuzz.conf", (const char *)data, size);
    if (rc == TERN_ECONFIG) {
        if (strncmp(tern_config_error(cfg), "fuzz.conf:", 10) != 0)
            abort();
    } else if (rc == 0) {
        size_t n = tern_config_list_len(cfg, "broker.listen");
        for (size_t i = 0; i < n; i++)
            (void)strlen(tern_config_list_string(cfg, "broker.listen", i));
        int64_t max_conn = tern_config_get_int(cfg, "broker.max_connections");
        if (tern_config_has(cfg, "broker.max_connections") && (max_conn < 1 || max_conn > 1000000))
            abort();
        (void)tern_config_get_bool(cfg, "broker.tls");
        if (tern_config_get_int(cfg, "log.segment_size") < 0)
            abort();
        const char *level = tern_config_get_string(cfg, "log.level");
        if (level && strcmp(level, "error") && strcmp(level, "warn") && strcmp(level, "info")
            && strcmp(level, "debug"))
            abort();
        n = tern_config_list_len(cfg, "log.ports");
        for (size_t i = 0; i < n; i++)
            (void)tern_config_list_int(cfg, "log.ports", i);
    } else if (rc != TERN_ENOMEM) {
        abort();
    }
    tern_config_destroy(cfg);
    return 0;
}

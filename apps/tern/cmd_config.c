/*
 * cmd_config.c: `tern config`, the tool for tern's config files (format: docs/config.md).
 *
 *   tern config check FILE [--set KEY=VALUE ...]   parse FILE against every known schema;
 *                                                 print "ok" (exit 0) or the error (exit 2)
 *   tern config keys                              print every known key as a sample file
 */
#include "tern/commands.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/config.h"
#include "broker/broker_config.h"
#include "log/log_config.h"
#include "tsdb/tsdb_config.h"
#include "api/api_config.h"
#include "stream/stream_config.h"
#include "base/error.h"

#include <stdio.h>
#include <string.h>

const char tern_cmd_config_summary[] = "check a config file, list the config keys";

/*
 * Every schema a tern program may read. Each module adds its table here when it gains config
 * keys (declared in its public header), so `tern config check` knows the whole key space.
 */
static const tern_config_schema *const schemas[] = {
    tern_config_schema_core,
    tern_broker_config_schema,
    tern_log_config_schema,
    tern_tsdb_config_schema,
    tern_api_config_schema,
    tern_stream_config_schema,
    NULL,
};

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern config check FILE [--set KEY=VALUE ...]\n"
        "       tern config keys\n\n"
        "check: parse FILE against every key tern knows; print 'ok' or the first error\n"
        "       as FILE:LINE: message (exit status 2). --set/--KEY=VALUE overrides are\n"
        "       checked too.\n"
        "keys:  print every key, its type, default and help, as a sample config file.\n"
        "The format is described in docs/config.md.\n");
}

static int make_config(tern_config **out)
{
    tern_config *cfg;
    int rc = tern_config_create(&cfg);
    for (size_t i = 0; rc == 0 && schemas[i]; i++)
        rc = tern_config_add_schema(cfg, schemas[i]);
    if (rc) {
        fprintf(stderr, "tern config: %s\n",
            rc == TERN_ENOMEM || !cfg ? tern_strerror(rc) : tern_config_error(cfg));
        tern_config_destroy(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

static int check(int argc, char **argv)
{
    /* argv: "check" FILE [overrides...] */
    if (argc < 2 || argv[1][0] == '-') {
        usage(stderr);
        return 2;
    }
    tern_config *cfg;
    if (make_config(&cfg))
        return 1;
    /* Rewrite as: check --config FILE overrides..., the form tern_config_parse_args reads. */
    char **args = tern_calloc((size_t)argc + 2, sizeof *args);
    if (!args) {
        tern_config_destroy(cfg);
        fprintf(stderr, "tern config check: %s\n", tern_strerror(TERN_ENOMEM));
        return 1;
    }
    char config_opt[] = "--config";
    args[0] = argv[0];
    args[1] = config_opt;
    for (int i = 1; i < argc; i++)
        args[i + 1] = argv[i];
    int n_args = argc + 1;
    int rc = tern_config_parse_args(cfg, &n_args, args);
    int status = 0;
    if (rc == 0 && n_args > 1) {
        fprintf(stderr, "tern config check: unexpected argument '%s'\n", args[1]);
        status = 2;
    } else if (rc == TERN_ENOMEM) {
        fprintf(stderr, "tern config check: %s\n", tern_strerror(rc));
        status = 1;
    } else if (rc) {
        fprintf(stderr, "%s\n", tern_config_error(cfg));
        status = 2;
    } else {
        printf("ok\n");
    }
    tern_free(args);
    tern_config_destroy(cfg);
    return status;
}

static int keys(void)
{
    tern_config *cfg;
    if (make_config(&cfg))
        return 1;
    tern_buf b = TERN_BUF_INIT;
    int rc = tern_config_describe(cfg, &b);
    if (rc == 0)
        fwrite(b.data, 1, b.len, stdout);
    else
        fprintf(stderr, "tern config keys: %s\n", tern_strerror(rc));
    tern_buf_free(&b);
    tern_config_destroy(cfg);
    return rc ? 1 : 0;
}

int tern_cmd_config(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0
        || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "check") == 0)
        return check(argc - 1, argv + 1);
    if (strcmp(argv[1], "keys") == 0 && argc == 2)
        return keys();
    fprintf(stderr, "tern config: unknown subcommand '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}

/*
 * cmd_tsdb.c: `tern tsdb`: the time-series store with its HTTP face, on its own (until
 * `tern serve` runs every stage in one process).
 *
 *   tern tsdb [--data DIR] [--http HOST:PORT] [--config FILE] [--set KEY=VALUE]...
 *
 * Accepts InfluxDB line protocol at /write and /api/v2/write and answers queries
 * (docs/tsdb.md). A write is answered once durable. SIGINT/SIGTERM: stop, flush the head into
 * blocks, exit. Logs "ready" with the address once it listens.
 */
#include "tern/commands.h"
#include "tern/role.h"

#include "api/api_config.h"
#include "api/api_tsdb.h"
#include "api/http.h"
#include "base/alloc.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "loop/loop.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char tern_cmd_tsdb_summary[] = "run the time-series store with its HTTP API";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern tsdb [--data DIR] [--http HOST:PORT] [--config FILE] [--set KEY=VALUE]...\n"
        "Every [tsdb] and [http] key (docs/tsdb.md) can be set with --set.\n");
}

static void on_signal(tern_loop_signal *sig, int signum)
{
    tern_logf(TERN_LOG_INFO, "tsdb", "signal %d: shutting down", signum);
    tern_loop_stop(sig->data);
}

static const tern_role_flag tsdb_flags[] = {
    { "--data", "data.dir", NULL },
    { "--http", "http.listen", NULL },
};

int tern_cmd_tsdb(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    int status = 1;
    tern_config *cfg = NULL;
    tern_loop *loop = NULL;
    tern_http_server *srv = NULL;
    tern_api_tsdb *api = NULL;
    tern_tsdb *db = NULL;
    tern_loop_signal sigs[2];
    static const tern_config_schema *const schemas[]
        = { tern_tsdb_config_schema, tern_api_config_schema, NULL };
    int st = tern_role_config("tsdb", argc, argv, tsdb_flags,
        sizeof(tsdb_flags) / sizeof(tsdb_flags[0]), schemas, usage, &cfg);
    if (st)
        return st;
    /* the loop before the store starts its threads (role.h) */
    if (tern_role_loop(&loop, sigs, on_signal, NULL) != 0)
        goto out;
    if ((status = tern_role_store("tsdb", cfg, &db)) != 0)
        goto out;
    status = 1;
    uint16_t port = 0;
    if (tern_role_http("tsdb", cfg, loop, db, &srv, &api, &port) != 0)
        goto out;
    tern_logf(TERN_LOG_INFO, "tsdb", "ready http=%s port=%u data=%s",
        tern_config_get_string(cfg, "http.listen"), port, tern_config_get_string(cfg, "data.dir"));
    int rc = tern_loop_run(loop);
    status = rc == 0 ? 0 : 1;
out:
    /* The store first: closing the WAL answers every pending durability callback, whose
     * answers the loop then runs before the server goes. */
    if (db) {
        int crc = tern_tsdb_close(db, true);
        if (crc)
            fprintf(stderr, "tern tsdb: closing the store: %s\n", tern_strerror(crc));
    }
    if (loop)
        (void)tern_loop_run_once(loop, 0);
    tern_http_server_free(srv);
    tern_api_tsdb_free(api);
    tern_loop_free(loop);
    tern_config_destroy(cfg);
    return status;
}

/*
 * cmd_stream.c: `tern stream`: the stream processor and its store on their own, for scale-out.
 *
 *   tern stream [--data DIR] [--http HOST:PORT] [--config FILE] [--set KEY=VALUE]...
 *
 * Consumes the log's telemetry topic (log.backend = kafka with log.kafka_brokers for scale-out)
 * as a member of stream.group and stores the points of the partitions it owns in its own store
 * (DATA/tsdb: this instance's shard), served over HTTP like `tern tsdb`. Several instances in
 * one group share the partitions; when one dies, Kafka gives its partitions to the others,
 * which resume from the last committed offsets (the dead one committed only what its store
 * held), so every acknowledged point ends up stored in the union of the shards.
 * SIGINT/SIGTERM: stop, store and commit the batch in hand, flush, exit. Logs "ready".
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
#include "log/log.h"
#include "log/log_config.h"
#include "loop/loop.h"
#include "stream/stream.h"
#include "stream/stream_config.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_config.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

const char tern_cmd_stream_summary[]
    = "run the stream processor and its store (one shard of a consumer group)";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern stream [--data DIR] [--http HOST:PORT] [--config FILE] [--set KEY=VALUE]...\n"
        "Every [stream], [log], [tsdb] and [http] key can be set with --set; for scale-out:\n"
        "  --set log.backend=kafka --set log.kafka_brokers=HOST:PORT --set stream.group=G\n");
}

static void on_signal(tern_loop_signal *sig, int signum)
{
    tern_logf(TERN_LOG_INFO, "stream", "signal %d: shutting down", signum);
    tern_loop_stop(sig->data);
}

int tern_cmd_stream(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    int status = 1, rc;
    tern_config *cfg = NULL;
    tern_loop *loop = NULL;
    tern_log *log = NULL;
    tern_tsdb *db = NULL;
    tern_http_server *srv = NULL;
    tern_api_tsdb *api = NULL;
    tern_stream *stream = NULL;
    tern_loop_signal sigs[2];
    static const tern_role_flag flags[] = {
        { "--data", "data.dir", NULL },
        { "--http", "http.listen", NULL },
    };
    static const tern_config_schema *const schemas[] = { tern_log_config_schema,
        tern_tsdb_config_schema, tern_api_config_schema, tern_stream_config_schema, NULL };
    int st = tern_role_config(
        "stream", argc, argv, flags, sizeof(flags) / sizeof(flags[0]), schemas, usage, &cfg);
    if (st)
        return st;
    (void)mkdir(tern_config_get_string(cfg, "data.dir"), 0755);
    if (tern_role_loop(&loop, sigs, on_signal, NULL) != 0)
        goto out;

    tern_log_config lcfg;
    uint32_t n_partitions = 0;
    char log_dir[4096], err[512];
    if (tern_log_config_load(cfg, &lcfg, &n_partitions, log_dir, sizeof log_dir, err, sizeof err)
        != 0) {
        fprintf(stderr, "tern stream: %s\n", err);
        status = 2;
        goto out;
    }
    tern_stream_config scfg;
    tern_stream_config_load(cfg, &scfg);
    rc = tern_log_open(&lcfg, &log);
    if (rc == 0)
        rc = tern_log_create_topic(log, scfg.topic, n_partitions);
    if (rc == TERN_EEXIST)
        rc = 0; /* created by the brokers with their count */
    if (rc != 0) {
        fprintf(stderr, "tern stream: cannot open the log (%s): %s\n",
            lcfg.backend == TERN_LOG_KAFKA ? lcfg.kafka_brokers : log_dir, tern_strerror(rc));
        goto out;
    }
    if ((status = tern_role_store("stream", cfg, &db)) != 0)
        goto out;
    status = 1;
    rc = tern_stream_new(log, db, &scfg, &stream, err, sizeof err);
    if (rc == 0)
        rc = tern_stream_start(stream);
    if (rc) {
        fprintf(stderr, "tern stream: cannot start: %s\n", err[0] ? err : tern_strerror(rc));
        status = rc == TERN_ECONFIG ? 2 : 1;
        goto out;
    }
    uint16_t http_port = 0;
    if (tern_role_http("stream", cfg, loop, db, &srv, &api, &http_port) != 0)
        goto out;
    tern_logf(TERN_LOG_INFO, "stream", "ready (group %s, topic %s, http port %u, data %s)",
        scfg.group, scfg.topic, http_port, tern_config_get_string(cfg, "data.dir"));
    rc = tern_loop_run(loop);
    status = rc == 0 ? 0 : 1;
out:
    tern_stream_free(stream); /* stores and commits the batch in hand */
    if (db) {
        int crc = tern_tsdb_close(db, true);
        if (crc)
            fprintf(stderr, "tern stream: closing the store: %s\n", tern_strerror(crc));
    }
    tern_log_close(log);
    if (loop)
        (void)tern_loop_run_once(loop, 0);
    tern_http_server_free(srv);
    tern_api_tsdb_free(api);
    tern_loop_free(loop);
    tern_config_destroy(cfg);
    return status;
}

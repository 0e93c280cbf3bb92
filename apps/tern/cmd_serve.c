/*
 * cmd_serve.c: `tern serve`: the whole pipeline in one process, one config, one data directory.
 *
 *   tern serve [--data DIR] [--listen HOST:PORT]... [--http HOST:PORT] [--allow-anonymous]
 *              [--config FILE] [--set KEY=VALUE]...
 *
 * MQTT broker -> embedded log (DATA/log) -> stream processor -> time-series store (DATA/tsdb),
 * and the HTTP API (line-protocol writes, queries, /metrics) on the broker's event loop. A QoS
 * 1/2 publish is acknowledged once the log holds it; the stream commits its offsets only once
 * the store holds the points, so kill -9 at any moment loses nothing acknowledged.
 * SIGINT/SIGTERM: the broker stops taking connections, the stream stores what the log holds
 * (up to 10 s), the store flushes its head into blocks, everything closes. Logs "ready" with the
 * addresses once it serves.
 */
#include "tern/commands.h"
#include "tern/role.h"

#include "api/api_config.h"
#include "api/api_tsdb.h"
#include "api/http.h"
#include "base/alloc.h"
#include "base/clock.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "broker/broker.h"
#include "broker/broker_config.h"
#include "broker/log_sink.h"
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

const char tern_cmd_serve_summary[]
    = "run the whole pipeline: broker, log, stream, time-series store, HTTP API";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern serve [--data DIR] [--listen HOST:PORT]... [--http HOST:PORT]\n"
        "                  [--allow-anonymous] [--config FILE] [--set KEY=VALUE]...\n"
        "Every [broker], [log], [stream], [tsdb] and [http] key can be set with --set.\n");
}

typedef struct serve_main {
    tern_loop *loop;
    tern_broker *broker;
} serve_main;

/* An alert to publish, handed from the stream's thread to the broker's loop. */
typedef struct alert_msg {
    serve_main *m;
    size_t len;
    char topic[400];
    uint8_t payload[];
} alert_msg;

static void publish_on_loop(tern_loop *loop, void *arg)
{
    (void)loop;
    alert_msg *a = arg;
    if (a->m->broker)
        (void)tern_broker_publish(a->m->broker, a->topic, a->payload, a->len, 1, true);
    tern_free(a);
}

/* The stream's publish hook: alerts/{device}/{rule}, QoS 1, retained (the current state). */
static void publish_alert(void *arg, const char *topic, const uint8_t *payload, size_t len)
{
    serve_main *m = arg;
    alert_msg *a = tern_malloc(sizeof(*a) + len);
    if (!a)
        return;
    a->m = m;
    a->len = len;
    snprintf(a->topic, sizeof a->topic, "%s", topic);
    memcpy(a->payload, payload, len);
    if (tern_loop_post(m->loop, publish_on_loop, a) != 0)
        tern_free(a);
}

static void on_signal(tern_loop_signal *sig, int signum)
{
    serve_main *m = sig->data;
    tern_logf(TERN_LOG_INFO, "serve", "signal %d: shutting down", signum);
    tern_broker_shutdown(m->broker);
    tern_loop_stop(m->loop);
}

static const tern_role_flag flags[] = {
    { "--data", "data.dir", NULL },
    { "--listen", "broker.listen", NULL },
    { "--http", "http.listen", NULL },
    { "--allow-anonymous", "broker.allow_anonymous", "true" },
};

int tern_cmd_serve(int argc, char **argv)
{
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    int status = 1, rc;
    tern_config *cfg = NULL;
    tern_loop *loop = NULL;
    tern_broker *broker = NULL;
    tern_log *log = NULL;
    tern_broker_log_sink *sink = NULL;
    tern_tsdb *db = NULL;
    tern_http_server *srv = NULL;
    tern_api_tsdb *api = NULL;
    tern_stream *stream = NULL;
    tern_broker_config bcfg;
    memset(&bcfg, 0, sizeof bcfg);
    tern_loop_signal sigs[2];
    serve_main m = { NULL, NULL };
    static const tern_config_schema *const schemas[]
        = { tern_broker_config_schema, tern_log_config_schema, tern_tsdb_config_schema,
              tern_api_config_schema, tern_stream_config_schema, NULL };
    int st = tern_role_config(
        "serve", argc, argv, flags, sizeof(flags) / sizeof(flags[0]), schemas, usage, &cfg);
    if (st)
        return st;
    (void)mkdir(tern_config_get_string(cfg, "data.dir"), 0755);

    /* signals first: every thread started later inherits the blocked mask (role.h) */
    if (tern_broker_config_load(cfg, &bcfg) != 0 || tern_role_loop(&loop, sigs, on_signal, &m) != 0)
        goto out;
    m.loop = loop;

    /* the log */
    tern_log_config lcfg;
    uint32_t n_partitions = 0;
    char log_dir[4096], err[512];
    if (tern_log_config_load(cfg, &lcfg, &n_partitions, log_dir, sizeof log_dir, err, sizeof err)
        != 0) {
        fprintf(stderr, "tern serve: %s\n", err);
        status = 2;
        goto out;
    }
    const char *log_topic = tern_config_get_string(cfg, "broker.ingest_topic");
    rc = tern_log_open(&lcfg, &log);
    if (rc == 0)
        rc = tern_log_create_topic(log, log_topic, n_partitions);
    if (rc != 0) {
        fprintf(stderr, "tern serve: cannot open the log (%s): %s\n",
            lcfg.backend == TERN_LOG_KAFKA ? lcfg.kafka_brokers : log_dir, tern_strerror(rc));
        goto out;
    }

    /* the store */
    if ((status = tern_role_store("serve", cfg, &db)) != 0)
        goto out;
    status = 1;

    /* the stream between them */
    tern_stream_config scfg;
    tern_stream_config_load(cfg, &scfg);
    scfg.topic = log_topic; /* what the broker feeds */
    scfg.publish = publish_alert;
    scfg.publish_arg = &m;
    rc = tern_stream_new(log, db, &scfg, &stream, err, sizeof err);
    if (rc == 0)
        rc = tern_stream_start(stream);
    if (rc) {
        fprintf(
            stderr, "tern serve: cannot start the stream: %s\n", err[0] ? err : tern_strerror(rc));
        status = rc == TERN_ECONFIG ? 2 : 1;
        goto out;
    }

    /* the HTTP API and the broker, on the loop */
    uint16_t http_port = 0;
    if (tern_role_http("serve", cfg, loop, db, &srv, &api, &http_port) != 0)
        goto out;
    rc = tern_broker_new(loop, &bcfg, &broker);
    if (rc != 0) {
        fprintf(stderr, "tern serve: cannot start the broker: %s\n", tern_strerror(rc));
        status = rc == TERN_ECONFIG ? 2 : 1;
        goto out;
    }
    m.broker = broker;
    unsigned key_level = (unsigned)tern_config_get_int(cfg, "broker.ingest_key_level");
    if (tern_broker_log_sink_new(broker, loop, log, log_topic, key_level, &sink) != 0)
        goto out;
    tern_broker_set_sink(broker, tern_broker_log_sink_get(sink));
    tern_logf(TERN_LOG_INFO, "serve", "ready (http port %u, data %s, anonymous access %s)",
        http_port, tern_config_get_string(cfg, "data.dir"),
        bcfg.allow_anonymous ? "allowed" : "refused");
    rc = tern_loop_run(loop);
    tern_broker_shutdown(broker);
    status = rc == 0 ? 0 : 1;

    /* drain: what the broker acknowledged is in the log; store it before stopping (bounded) */
    tern_log_flush(log);
    tern_stream_stop(stream);
    uint64_t t0 = tern_clock_mono_ms();
    tern_stream_stats before, after;
    do {
        tern_stream_get_stats(stream, &before);
        if (tern_stream_run_once(stream, 200) != 0)
            break;
        tern_stream_get_stats(stream, &after);
    } while (after.records != before.records && tern_clock_mono_ms() - t0 < 10000);
out:
    /* Order: the stream (it writes to the store and reads the log), the store (its WAL answers
     * pending HTTP writes, run by the loop), the log (completes the broker's appends, posted to
     * the loop), then the loop runs those completions and the broker and server go. */
    tern_stream_free(stream);
    if (db) {
        int crc = tern_tsdb_close(db, true);
        if (crc)
            fprintf(stderr, "tern serve: closing the store: %s\n", tern_strerror(crc));
    }
    tern_log_close(log);
    if (loop)
        (void)tern_loop_run_once(loop, 0);
    tern_broker_free(broker);
    tern_broker_log_sink_free(sink);
    tern_http_server_free(srv);
    tern_api_tsdb_free(api);
    tern_loop_free(loop);
    tern_broker_config_release(&bcfg);
    tern_config_destroy(cfg);
    return status;
}

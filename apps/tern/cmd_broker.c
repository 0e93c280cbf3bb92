/*
 * cmd_broker.c: `tern broker`: the MQTT broker on its own.
 *
 *   tern broker [--listen HOST:PORT]... [--data DIR] [--allow-anonymous] [--config FILE]
 *               [--set KEY=VALUE]...
 *
 * Runs with defaults and no file. SIGINT/SIGTERM shut it down cleanly. When it is ready it
 * logs "ready" with its listeners, which scripts and tests wait for.
 */
#include "tern/commands.h"

#include "base/alloc.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "broker/broker.h"
#include "broker/broker_config.h"
#include "broker/log_sink.h"
#include "log/log.h"
#include "log/log_config.h"
#include "loop/loop.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

const char tern_cmd_broker_summary[] = "run the MQTT broker (3.1.1 and 5.0)";

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern broker [--listen HOST:PORT]... [--data DIR] [--allow-anonymous]\n"
        "                   [--config FILE] [--set KEY=VALUE]...\n"
        "Every [broker] key of the config file (docs/broker.md) can be set with --set.\n");
}

typedef struct broker_main {
    tern_loop *loop;
    tern_broker *broker;
} broker_main;

static void on_signal(tern_loop_signal *sig, int signum)
{
    broker_main *m = sig->data;
    tern_logf(TERN_LOG_INFO, "broker", "signal %d: shutting down", signum);
    tern_broker_shutdown(m->broker);
    tern_loop_stop(m->loop);
}

/* Rewrites the broker's own short options into --set KEY=VALUE for the config parser. */
static char **translate_args(int argc, char **argv, int *out_argc, char ***owned, int *n_owned)
{
    char **v = tern_calloc((size_t)argc * 2 + 1, sizeof *v);
    char **own = tern_calloc((size_t)argc + 1, sizeof *own);
    if (!v || !own) {
        tern_free(v);
        tern_free(own);
        return NULL;
    }
    int n = 0, k = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *key = NULL, *val = NULL;
        if (strcmp(a, "--listen") == 0 && i + 1 < argc) {
            key = "broker.listen";
            val = argv[++i];
        } else if (strncmp(a, "--listen=", 9) == 0) {
            key = "broker.listen";
            val = a + 9;
        } else if (strcmp(a, "--data") == 0 && i + 1 < argc) {
            key = "data.dir";
            val = argv[++i];
        } else if (strncmp(a, "--data=", 7) == 0) {
            key = "data.dir";
            val = a + 7;
        } else if (strcmp(a, "--allow-anonymous") == 0) {
            key = "broker.allow_anonymous";
            val = "true";
        }
        if (!key) {
            v[n++] = argv[i];
            continue;
        }
        size_t len = strlen(key) + strlen(val) + 2;
        char *kv = tern_malloc(len);
        if (!kv)
            break;
        snprintf(kv, len, "%s=%s", key, val);
        own[k++] = kv;
        v[n++] = "--set";
        v[n++] = kv;
    }
    *out_argc = n;
    *owned = own;
    *n_owned = k;
    return v;
}

int tern_cmd_broker(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        }
    }
    int status = 1;
    tern_config *cfg = NULL;
    tern_loop *loop = NULL;
    tern_broker *broker = NULL;
    tern_log *log = NULL;
    tern_broker_log_sink *sink = NULL;
    tern_broker_config bcfg;
    memset(&bcfg, 0, sizeof bcfg);
    char **owned = NULL;
    int n_owned = 0, targc = 0;
    char **targv = translate_args(argc, argv, &targc, &owned, &n_owned);
    if (!targv || tern_config_create(&cfg) != 0)
        goto out;
    if (tern_config_add_schema(cfg, tern_config_schema_core) != 0
        || tern_config_add_schema(cfg, tern_broker_config_schema) != 0
        || tern_config_add_schema(cfg, tern_log_config_schema) != 0)
        goto out;
    if (tern_config_parse_args(cfg, &targc, targv) != 0) {
        fprintf(stderr, "tern broker: %s\n", tern_config_error(cfg));
        status = 2;
        goto out;
    }
    if (targc > 1) {
        fprintf(stderr, "tern broker: unexpected argument '%s'\n", targv[1]);
        usage(stderr);
        status = 2;
        goto out;
    }
    tern_log_level level;
    if (tern_log_level_parse(tern_config_get_string(cfg, "logging.level"), &level) == 0)
        tern_log_set_level(level);
    if (tern_broker_config_load(cfg, &bcfg) != 0 || tern_loop_new(&loop) != 0)
        goto out;
    broker_main m = { loop, NULL };
    tern_loop_signal sigint, sigterm;
    tern_loop_signal_init(loop, &sigint, on_signal, &m);
    tern_loop_signal_init(loop, &sigterm, on_signal, &m);
    if (tern_loop_signal_start(&sigint, SIGINT) != 0
        || tern_loop_signal_start(&sigterm, SIGTERM) != 0)
        goto out;
    signal(SIGPIPE, SIG_IGN);
    int rc = tern_broker_new(loop, &bcfg, &broker);
    if (rc != 0) {
        fprintf(stderr, "tern broker: cannot start: %s\n", tern_strerror(rc));
        status = rc == TERN_ECONFIG ? 2 : 1;
        goto out;
    }
    m.broker = broker;

    /* The durable log the broker feeds: QoS 1/2 telemetry is acknowledged once it holds it. */
    tern_log_config lcfg;
    uint32_t n_partitions = 0;
    char log_dir[4096], err[256];
    if (tern_log_config_load(cfg, &lcfg, &n_partitions, log_dir, sizeof log_dir, err, sizeof err)
        != 0) {
        fprintf(stderr, "tern broker: %s\n", err);
        status = 2;
        goto out;
    }
    const char *log_topic = tern_config_get_string(cfg, "broker.ingest_topic");
    rc = tern_log_open(&lcfg, &log);
    if (rc == 0)
        rc = tern_log_create_topic(log, log_topic, n_partitions);
    if (rc != 0) {
        fprintf(stderr, "tern broker: cannot open the log (%s): %s\n",
            lcfg.backend == TERN_LOG_KAFKA ? lcfg.kafka_brokers : log_dir, tern_strerror(rc));
        goto out;
    }
    unsigned key_level = (unsigned)tern_config_get_int(cfg, "broker.ingest_key_level");
    if (tern_broker_log_sink_new(broker, loop, log, log_topic, key_level, &sink) != 0)
        goto out;
    tern_broker_set_sink(broker, tern_broker_log_sink_get(sink));
    tern_logf(TERN_LOG_INFO, "broker", "ready (anonymous access %s)",
        bcfg.allow_anonymous ? "allowed" : "refused");
    rc = tern_loop_run(loop);
    tern_broker_shutdown(broker);
    status = rc == 0 ? 0 : 1;
out:
    /* Order matters: the log completes every append in flight (their completions are posted
     * to the loop), the loop runs them, then the broker and the sink can go. */
    tern_log_close(log);
    if (loop)
        (void)tern_loop_run_once(loop, 0);
    tern_broker_free(broker);
    tern_broker_log_sink_free(sink);
    tern_loop_free(loop);
    tern_broker_config_release(&bcfg);
    tern_config_destroy(cfg);
    for (int i = 0; i < n_owned; i++)
        tern_free(owned[i]);
    tern_free(owned);
    tern_free(targv);
    return status;
}

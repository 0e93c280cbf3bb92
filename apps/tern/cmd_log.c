/*
 * cmd_log.c: `tern log`: look into the durable log from the command line.
 *
 *   tern log topics  [--data DIR | --set log.dir=DIR | --set log.backend=kafka ...]
 *   tern log offsets --topic T [--group G] [...]
 *   tern log tail    --topic T [--from earliest|latest|OFFSET] [--count N] [--follow] [...]
 *
 * Every [log] key of the config file can be given with --set, and --config FILE works, so the
 * same command reads an embedded log or a Kafka cluster. `tail` prints one JSON object per
 * record: {"topic","partition","offset","ts","key","value","headers"}; key, value and header
 * values are JSON strings when they are valid UTF-8, else {"base64": "..."}.
 */
#include "tern/commands.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/config.h"
#include "base/error.h"
#include "log/log.h"
#include "log/log_config.h"
#include "mqtt/mqtt.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char tern_cmd_log_summary[]
    = "inspect the durable log: topics, offsets and lag, tail records";

static volatile sig_atomic_t stop_requested;

static void on_sigint(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern log topics  [--data DIR] [--config FILE] [--set log.KEY=VALUE]...\n"
        "       tern log offsets --topic T [--group G] [--data DIR] ...\n"
        "       tern log tail    --topic T [--from earliest|latest|OFFSET] [--count N]\n"
        "                        [--follow] [--data DIR] ...\n"
        "The log is DATA/log (--data, default ./tern-data) unless log.dir or\n"
        "log.backend=kafka with log.kafka_brokers say otherwise (docs/log.md).\n");
}

static void json_string(tern_buf *out, const uint8_t *p, size_t n)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (tern_mqtt_utf8_validate(p, n) != 0 && n > 0) {
        tern_buf_append_str(out, "{\"base64\":\"");
        for (size_t i = 0; i < n; i += 3) {
            uint32_t v = (uint32_t)p[i] << 16;
            if (i + 1 < n)
                v |= (uint32_t)p[i + 1] << 8;
            if (i + 2 < n)
                v |= p[i + 2];
            char q[4] = { b64[(v >> 18) & 63], b64[(v >> 12) & 63],
                i + 1 < n ? b64[(v >> 6) & 63] : '=', i + 2 < n ? b64[v & 63] : '=' };
            tern_buf_append(out, q, 4);
        }
        tern_buf_append_str(out, "\"}");
        return;
    }
    tern_buf_append_u8(out, '"');
    for (size_t i = 0; i < n; i++) {
        uint8_t ch = p[i];
        if (ch == '"' || ch == '\\') {
            tern_buf_append_u8(out, '\\');
            tern_buf_append_u8(out, ch);
        } else if (ch < 0x20) {
            tern_buf_printf(out, "\\u%04x", ch);
        } else {
            tern_buf_append_u8(out, ch);
        }
    }
    tern_buf_append_u8(out, '"');
}

static void print_message(tern_buf *out, const tern_log_message *m)
{
    tern_buf_reset(out);
    tern_buf_printf(out,
        "{\"topic\":\"%s\",\"partition\":%" PRIu32 ",\"offset\":%" PRId64 ",\"ts\":%" PRId64
        ",\"key\":",
        m->topic, m->partition, m->offset, m->ts_ms);
    if (m->key)
        json_string(out, m->key, m->key_len);
    else
        tern_buf_append_str(out, "null");
    tern_buf_append_str(out, ",\"value\":");
    json_string(out, m->value, m->value_len);
    tern_buf_append_str(out, ",\"headers\":{");
    for (size_t i = 0; i < m->n_headers; i++) {
        if (i)
            tern_buf_append_u8(out, ',');
        json_string(out, (const uint8_t *)m->headers[i].name, strlen(m->headers[i].name));
        tern_buf_append_u8(out, ':');
        json_string(out, m->headers[i].value, m->headers[i].value_len);
    }
    tern_buf_append_str(out, "}}\n");
    fwrite(out->data, 1, out->len, stdout);
}

typedef struct opts {
    const char *topic;
    const char *group;
    const char *from;
    long long count;
    bool follow;
} opts;

/* Takes tern log's own options out of argv (the rest goes to the config parser). */
static int take_opts(int *argc, char **argv, opts *o)
{
    int n = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        const char **dst = NULL;
        if (strcmp(a, "--topic") == 0)
            dst = &o->topic;
        else if (strcmp(a, "--group") == 0)
            dst = &o->group;
        else if (strcmp(a, "--from") == 0)
            dst = &o->from;
        if (dst) {
            if (i + 1 >= *argc)
                return -1;
            *dst = argv[++i];
            continue;
        }
        if (strcmp(a, "--count") == 0) {
            if (i + 1 >= *argc)
                return -1;
            char *end;
            o->count = strtoll(argv[++i], &end, 10);
            if (*end || o->count < 0)
                return -1;
            continue;
        }
        if (strcmp(a, "--follow") == 0 || strcmp(a, "-f") == 0) {
            o->follow = true;
            continue;
        }
        argv[n++] = argv[i];
    }
    *argc = n;
    argv[n] = NULL;
    return 0;
}

static int cmd_offsets(tern_log *log, const opts *o)
{
    uint32_t n;
    int rc = tern_log_partition_count(log, o->topic, &n);
    if (rc != 0) {
        fprintf(stderr, "tern log: topic '%s': %s\n", o->topic, tern_strerror(rc));
        return 1;
    }
    printf("%-9s %12s %12s", "partition", "earliest", "latest");
    if (o->group)
        printf(" %12s %10s", "committed", "lag");
    printf("\n");
    int64_t total_lag = 0;
    for (uint32_t p = 0; p < n; p++) {
        int64_t earliest, latest;
        rc = tern_log_offsets(log, o->topic, p, &earliest, &latest);
        if (rc != 0) {
            fprintf(stderr, "tern log: partition %u: %s\n", p, tern_strerror(rc));
            return 1;
        }
        printf("%-9u %12" PRId64 " %12" PRId64, p, earliest, latest);
        if (o->group) {
            int64_t committed, lag;
            if (tern_log_committed(log, o->group, o->topic, p, &committed) == 0
                && tern_log_lag(log, o->group, o->topic, p, &lag) == 0) {
                printf(" %12" PRId64 " %10" PRId64, committed, lag);
                total_lag += lag;
            }
        }
        printf("\n");
    }
    if (o->group)
        printf("total lag of group '%s': %" PRId64 "\n", o->group, total_lag);
    return 0;
}

static int cmd_tail(tern_log *log, const opts *o)
{
    int64_t start = TERN_LOG_OFFSET_EARLIEST, seek_to = -1;
    if (o->from && strcmp(o->from, "latest") == 0) {
        start = TERN_LOG_OFFSET_LATEST;
    } else if (o->from && strcmp(o->from, "earliest") != 0) {
        char *end;
        seek_to = strtoll(o->from, &end, 10);
        if (*end || seek_to < 0) {
            fprintf(stderr, "tern log: --from takes earliest, latest or an offset\n");
            return 2;
        }
    }
    const char *topics[1] = { o->topic };
    tern_log_consumer_config cc
        = { .group = NULL, .topics = topics, .n_topics = 1, .start = start };
    tern_log_consumer *c;
    int rc = tern_log_consumer_open(log, &cc, &c);
    if (rc != 0) {
        fprintf(stderr, "tern log: topic '%s': %s\n", o->topic, tern_strerror(rc));
        return 1;
    }
    if (seek_to >= 0) {
        uint32_t n = 0;
        (void)tern_log_partition_count(log, o->topic, &n);
        for (uint32_t p = 0; p < n; p++)
            (void)tern_log_consumer_seek(c, o->topic, p, seek_to);
    }
    signal(SIGINT, on_sigint);
    signal(SIGPIPE, SIG_DFL);
    tern_buf line = TERN_BUF_INIT;
    tern_log_message msgs[256];
    long long printed = 0;
    int status = 0;
    while (!stop_requested && (o->count == 0 || printed < o->count)) {
        size_t n = 0;
        rc = tern_log_consumer_poll(c, msgs, 256, o->follow ? 200 : 500, &n);
        if (rc != 0) {
            fprintf(stderr, "tern log: %s\n", tern_strerror(rc));
            status = 1;
            break;
        }
        if (n == 0 && !o->follow)
            break;
        for (size_t i = 0; i < n && (o->count == 0 || printed < o->count); i++, printed++)
            print_message(&line, &msgs[i]);
        fflush(stdout);
    }
    tern_buf_free(&line);
    tern_log_consumer_close(c);
    return status;
}

int tern_cmd_log(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1];
    argc--;
    argv++;
    opts o = { 0 };
    int status = 2;
    tern_config *cfg = NULL;
    tern_log *log = NULL;
    /* --data DIR is the short form of --set data.dir=DIR. */
    char **v = tern_calloc((size_t)argc + 2, sizeof *v);
    char *data_kv = NULL;
    if (!v)
        return 1;
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 && i + 1 < argc) {
            size_t len = strlen(argv[i + 1]) + 10;
            tern_free(data_kv);
            data_kv = tern_malloc(len);
            if (!data_kv)
                goto out;
            snprintf(data_kv, len, "data.dir=%s", argv[++i]);
            v[n++] = "--set";
            v[n++] = data_kv;
        } else {
            v[n++] = argv[i];
        }
    }
    if (take_opts(&n, v, &o) != 0) {
        usage(stderr);
        goto out;
    }
    if (tern_config_create(&cfg) != 0 || tern_config_add_schema(cfg, tern_config_schema_core) != 0
        || tern_config_add_schema(cfg, tern_log_config_schema) != 0) {
        status = 1;
        goto out;
    }
    if (tern_config_parse_args(cfg, &n, v) != 0) {
        fprintf(stderr, "tern log: %s\n", tern_config_error(cfg));
        goto out;
    }
    if (n > 1) {
        fprintf(stderr, "tern log: unexpected argument '%s'\n", v[1]);
        goto out;
    }
    tern_log_config lc;
    uint32_t n_partitions;
    char dir[4096], err[256];
    if (tern_log_config_load(cfg, &lc, &n_partitions, dir, sizeof dir, err, sizeof err) != 0) {
        fprintf(stderr, "tern log: %s\n", err);
        goto out;
    }
    bool needs_topic = strcmp(sub, "offsets") == 0 || strcmp(sub, "tail") == 0;
    if (!needs_topic && strcmp(sub, "topics") != 0) {
        fprintf(stderr, "tern log: unknown subcommand '%s'\n", sub);
        usage(stderr);
        goto out;
    }
    if (needs_topic && !o.topic) {
        fprintf(stderr, "tern log %s: --topic is required\n", sub);
        goto out;
    }
    int rc = tern_log_open(&lc, &log);
    if (rc != 0) {
        fprintf(stderr, "tern log: cannot open %s: %s\n",
            lc.backend == TERN_LOG_KAFKA ? lc.kafka_brokers : dir,
            rc == -EWOULDBLOCK ? "in use by another process (stop it first)" : tern_strerror(rc));
        status = 1;
        goto out;
    }
    if (strcmp(sub, "offsets") == 0) {
        status = cmd_offsets(log, &o);
    } else if (strcmp(sub, "tail") == 0) {
        status = cmd_tail(log, &o);
    } else {
        char **names = NULL;
        size_t n_names = 0;
        rc = tern_log_list_topics(log, &names, &n_names);
        if (rc != 0) {
            fprintf(stderr, "tern log: %s\n", tern_strerror(rc));
            status = 1;
            goto out;
        }
        for (size_t i = 0; i < n_names; i++) {
            uint32_t parts = 0;
            (void)tern_log_partition_count(log, names[i], &parts);
            printf("%s\t%u partitions\n", names[i], parts);
        }
        tern_log_free_topics(names, n_names);
        status = 0;
    }
out:
    tern_log_close(log);
    tern_config_destroy(cfg);
    tern_free(data_kv);
    tern_free(v);
    return status;
}

/*
 * log_sink.c: the broker's ingest sink onto the durable log (src/log): each publish on an
 * ingest topic becomes one log record in the configured log topic, keyed by the device id so
 * that a device's records stay in one partition, in order.
 *
 *   key     = the device id: topic level key_level (fleet/{device}/telemetry -> level 1), or
 *             the client id when the topic has no such level
 *   value   = the MQTT payload, unchanged
 *   ts      = the arrival time at the broker (ms); event time lives in the payload
 *   headers = "topic" (the MQTT topic), "client_id", "qos"
 *
 * The log completes appends on its own I/O thread; completions cross back to the loop of the
 * publishing connection (rec->loop) with tern_loop_post, where tern_broker_ingest_done acknowledges
 * the QoS 1/2 publish. A QoS 0 publish is appended without a completion (best effort). When the log
 * refuses (disk budget: TERN_EQUOTA) the broker sheds QoS 0 and refuses QoS 1/2 with reason 0x97.
 */
#include "broker/log_sink.h"

#include "base/alloc.h"
#include "base/error.h"
#include "base/log.h"

#include <stdio.h>
#include <string.h>

struct tern_broker_log_sink {
    tern_broker_sink sink; /* first: the broker sees only this */
    tern_broker *broker;
    tern_loop *loop;
    tern_log *log;
    char *topic;
    unsigned key_level;
};

typedef struct completion {
    tern_broker_log_sink *ls;
    tern_loop *loop; /* the broker loop of the publishing connection */
    void *token;
    int status;
} completion;

static void on_loop(tern_loop *loop, void *arg)
{
    (void)loop;
    completion *c = arg;
    tern_broker_ingest_done(c->ls->broker, c->token, c->status);
    tern_free(c);
}

/* Runs on the log's I/O thread. */
static void on_appended(void *opaque, int status, uint32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    completion *c = opaque;
    c->status = status;
    if (tern_loop_post(c->loop, on_loop, c) != 0) {
        /* Cannot reach the loop (out of memory): the publish stays unacknowledged, so the
         * client will send it again; nothing is claimed that is not true. */
        TERN_LOG_RATELIMITED(TERN_LOG_ERROR, "broker", "log completion lost: out of memory");
        tern_free(c);
    }
}

/* The device id: level key_level of the topic (levels split by '/'). */
static bool topic_level(
    const uint8_t *topic, size_t len, unsigned level, const uint8_t **p, size_t *n)
{
    size_t start = 0;
    unsigned i = 0;
    for (size_t k = 0; k <= len; k++) {
        if (k == len || topic[k] == '/') {
            if (i == level) {
                *p = topic + start;
                *n = k - start;
                return *n > 0;
            }
            i++;
            start = k + 1;
        }
    }
    return false;
}

static int submit(void *ctx, const tern_broker_ingest *rec, void *token)
{
    tern_broker_log_sink *ls = ctx;
    const uint8_t *key;
    size_t key_len;
    if (!topic_level(rec->topic, rec->topic_len, ls->key_level, &key, &key_len)) {
        key = (const uint8_t *)rec->client_id;
        key_len = strlen(rec->client_id);
    }
    char qos[2] = { (char)('0' + rec->qos), '\0' };
    tern_log_header headers[4] = {
        { "topic", rec->topic, rec->topic_len },
        { "client_id", (const uint8_t *)rec->client_id, strlen(rec->client_id) },
        { "qos", (const uint8_t *)qos, 1 },
        { "will", (const uint8_t *)"1", 1 },
    };
    tern_log_record r = {
        .key = key,
        .key_len = key_len,
        .value = rec->payload,
        .value_len = rec->payload_len,
        .ts_ms = (int64_t)rec->arrival_ms,
        .headers = headers,
        .n_headers = rec->will ? 4 : 3, /* "will: 1" marks a Last Will */
    };
    completion *c = NULL;
    if (token) {
        c = tern_malloc(sizeof *c);
        if (!c)
            return TERN_ENOMEM;
        c->ls = ls;
        c->loop = rec->loop ? rec->loop : ls->loop;
        c->token = token;
        c->status = 0;
    }
    int rc = tern_log_append(ls->log, ls->topic, -1, &r, c ? on_appended : NULL, c);
    if (rc != 0)
        tern_free(c);
    return rc;
}

int tern_broker_log_sink_new(tern_broker *broker, tern_loop *loop, tern_log *log,
    const char *log_topic, unsigned key_level, tern_broker_log_sink **out)
{
    tern_broker_log_sink *ls = tern_calloc(1, sizeof *ls);
    if (!ls)
        return TERN_ENOMEM;
    ls->topic = tern_strdup(log_topic);
    if (!ls->topic) {
        tern_free(ls);
        return TERN_ENOMEM;
    }
    ls->broker = broker;
    ls->loop = loop;
    ls->log = log;
    ls->key_level = key_level;
    ls->sink.ctx = ls;
    ls->sink.submit = submit;
    *out = ls;
    return 0;
}

const tern_broker_sink *tern_broker_log_sink_get(tern_broker_log_sink *ls)
{
    return &ls->sink;
}

void tern_broker_log_sink_free(tern_broker_log_sink *ls)
{
    if (!ls)
        return;
    tern_free(ls->topic);
    tern_free(ls);
}

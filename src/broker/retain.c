/*
 * retain.c: the broker's use of the retained store (retained.h): setting and clearing on
 * PUBLISH with RETAIN, journaling, and sending matching retained messages after a SUBACK.
 */
#include "broker/broker_int.h"

#include "base/log.h"
#include "broker/retained.h"
#include "broker/store.h"

static void release_msg(void *ctx, void *msg)
{
    (void)ctx;
    broker_msg_unref(msg);
}

static size_t msg_bytes(void *ctx, const void *msg)
{
    (void)ctx;
    const broker_msg *m = msg;
    return m->topic_len + m->payload_len;
}

int broker_retained_init(tern_broker *b)
{
    tern_broker_retained_ops ops = { release_msg, msg_bytes, NULL };
    return tern_broker_retained_new(&ops, &b->retained);
}

void broker_retained_free(tern_broker *b)
{
    tern_broker_retained_free(b->retained);
    b->retained = NULL;
}

void broker_retained_set(tern_broker *b, const char *topic, size_t len, broker_msg *m)
{
    if (m)
        broker_msg_ref(m);
    int rc = tern_broker_retained_set(b->retained, topic, len, m);
    if (rc != 0 && m)
        broker_msg_unref(m);
    if (rc != 0 && rc != TERN_ENOTFOUND)
        TERN_LOG_RATELIMITED(
            TERN_LOG_WARN, "broker", "retained '%.*s': %s", (int)len, topic, tern_strerror(rc));
    b->stats.retained = tern_broker_retained_count(b->retained);
}

void broker_retain(tern_broker *b, broker_msg *m)
{
    /* A retained PUBLISH with an empty payload clears the topic (MQTT-3.3.1-10). */
    broker_msg *keep = m->payload_len ? m : NULL;
    broker_retained_set(b, m->topic, m->topic_len, keep);
    broker_store_retain(b, m->topic, m->topic_len, keep);
}

typedef struct foreach_ctx {
    void (*fn)(void *ctx, const char *topic, size_t len, broker_msg *m);
    void *ctx;
} foreach_ctx;

static int foreach_cb(void *ctx, void *msg)
{
    foreach_ctx *fc = ctx;
    broker_msg *m = msg;
    fc->fn(fc->ctx, m->topic, m->topic_len, m);
    return 0;
}

void broker_retained_foreach(
    tern_broker *b, void (*fn)(void *ctx, const char *topic, size_t len, broker_msg *m), void *ctx)
{
    /* Clients cannot publish to $-topics, so "#" reaches every retained message they made. */
    foreach_ctx fc = { fn, ctx };
    (void)tern_broker_retained_match(b->retained, "#", 1, foreach_cb, &fc);
}

typedef struct send_ctx {
    tern_broker *b;
    broker_session *s;
    uint8_t granted_qos;
    uint32_t sub_id;
} send_ctx;

static int send_one(void *ctx, void *msg)
{
    send_ctx *sc = ctx;
    broker_msg *m = msg;
    if (broker_msg_expired(m, broker_now_ms(sc->b)))
        return 0;
    uint8_t qos = m->qos < sc->granted_qos ? m->qos : sc->granted_qos;
    /* Retained messages sent because of a new subscription carry RETAIN = 1 (MQTT-3.3.1-8). */
    broker_session_deliver(
        sc->b, sc->s, m, qos, true, sc->sub_id ? &sc->sub_id : NULL, sc->sub_id ? 1 : 0);
    return 0;
}

void broker_send_retained(tern_broker *b, broker_session *s, const uint8_t *filter,
    size_t filter_len, uint8_t granted_qos, uint32_t sub_id)
{
    send_ctx sc = { b, s, granted_qos, sub_id };
    (void)tern_broker_retained_match(b->retained, (const char *)filter, filter_len, send_one, &sc);
    if (s->conn)
        broker_conn_mark_dirty(s->conn);
}

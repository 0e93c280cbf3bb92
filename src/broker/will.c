/*
 * will.c: the Last Will, and the server's own publishes (tern_broker_publish), which take the
 * same path: retained if asked, routed to every matching subscription.
 *
 * The Last Will: Published when a connection ends without a normal DISCONNECT
 * (keepalive timeout, socket error, protocol error, DISCONNECT 0x04, takeover), never after a
 * normal DISCONNECT. A 5.0 Will Delay Interval postpones it while the session lives on: if the
 * client reconnects to the session first, the will is dropped; if the session ends first, the
 * will is published then.
 */
#include "broker/broker_int.h"

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <string.h>

static void publish_now(tern_broker *b, broker_msg *m)
{
    if (m->retain)
        broker_retain(b, m);
    broker_route(b, m, NULL);
}

/* A will on an ingest topic (fleet/{device}/event by convention) also goes to the ingest sink,
 * marked as a will, so the stream learns that the device went away (absence alerts with
 * on_will). Best effort, like QoS 0: nobody waits for an acknowledgement. */
static void ingest_will(tern_broker *b, broker_msg *m)
{
    if (!b->sink || !broker_is_ingest_topic(b, (const uint8_t *)m->topic, m->topic_len))
        return;
    tern_broker_ingest rec = {
        .client_id = m->publisher_id ? m->publisher_id : "",
        .topic = (const uint8_t *)m->topic,
        .topic_len = m->topic_len,
        .payload = m->payload,
        .payload_len = m->payload_len,
        .qos = m->qos,
        .arrival_ms = (uint64_t)tern_clock_now_ms(),
        .will = true,
        .loop = b->holder ? b->holder->loop : b->loop, /* no completion is asked for */
    };
    b->stats.ingest_submitted++;
    if (b->sink->submit(b->sink->ctx, &rec, NULL) != 0)
        b->stats.ingest_failed++;
}

static void publish_will(tern_broker *b, broker_msg *m)
{
    publish_now(b, m);
    ingest_will(b, m);
}

static void will_timer_cb(broker_deadline *d)
{
    broker_session *s = d->data;
    broker_msg *m = s->pending_will;
    s->pending_will = NULL;
    if (m) {
        publish_will(s->broker, m);
        broker_msg_unref(m);
    }
}

void broker_will_publish(tern_broker *b, broker_conn *c)
{
    broker_msg *m = c->will;
    c->will = NULL;
    broker_session *s = c->session;
    bool delayed = c->will_delay_s > 0 && s && !s->clean && s->expiry_s > 0;
    if (!delayed) {
        publish_will(b, m);
        broker_msg_unref(m);
        return;
    }
    /* Held by the session; sent when the delay or the session ends, whichever is first. */
    uint32_t delay_s = c->will_delay_s < s->expiry_s ? c->will_delay_s : s->expiry_s;
    broker_will_cancel(s);
    if (broker_deadline_arm(&b->deadlines, &s->will_due,
            broker_now_ms(b) + (uint64_t)delay_s * 1000u, will_timer_cb, s)
        != 0) {
        publish_will(b, m); /* cannot wait: send it now rather than never */
        broker_msg_unref(m);
        return;
    }
    s->pending_will = m;
}

void broker_will_cancel(broker_session *s)
{
    if (!s->pending_will)
        return;
    broker_deadline_disarm(&s->broker->deadlines, &s->will_due);
    broker_msg_unref(s->pending_will);
    s->pending_will = NULL;
}

void broker_will_session_end(tern_broker *b, broker_session *s)
{
    if (!s->pending_will)
        return;
    broker_deadline_disarm(&b->deadlines, &s->will_due);
    broker_msg *m = s->pending_will;
    s->pending_will = NULL;
    publish_will(b, m);
    broker_msg_unref(m);
}

int tern_broker_publish(
    tern_broker *b, const char *topic, const void *payload, size_t len, uint8_t qos, bool retain)
{
    size_t tl = topic ? strlen(topic) : 0;
    if (tl == 0 || tl > 65535 || strpbrk(topic, "+#") || qos > 2)
        return TERN_EINVAL;
    tern_mqtt_publish pub;
    memset(&pub, 0, sizeof(pub));
    pub.qos = qos;
    pub.retain = retain;
    pub.topic.p = (const uint8_t *)topic;
    pub.topic.len = (uint16_t)tl;
    pub.payload = payload;
    pub.payload_len = len;
    int rc = TERN_ENOMEM;
    broker_lock(b, b->workers[0]);
    broker_msg *m = broker_msg_new(&pub, "", broker_now_ms(b));
    if (m) {
        publish_now(b, m);
        broker_msg_unref(m);
        rc = 0;
    }
    broker_unlock(b);
    return rc;
}

/*
 * handle_publish.c: PUBLISH from a client and the acknowledgements in both directions.
 *
 * Incoming QoS 1 is acknowledged with PUBACK and QoS 2 with PUBREC once the message is routed
 * and, when its topic matches an ingest filter, once the ingest sink reports it stored. A QoS 2
 * packet id stays in the session's set between PUBREC and PUBREL, so a re-sent PUBLISH (DUP) is
 * acknowledged again but routed only once (exactly once).
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "mqtt/topic.h"

#include <string.h>

/* A QoS 1/2 acknowledgement waiting for the ingest sink. */
typedef struct ingest_wait {
    broker_conn *conn;
    uint16_t packet_id;
    uint8_t qos;
} ingest_wait;

static int send_ack(broker_conn *c, uint8_t type, uint16_t packet_id, uint8_t reason)
{
    tern_mqtt_packet a = { .type = type };
    a.u.ack.packet_id = packet_id;
    a.u.ack.reason = c->version == TERN_MQTT_V5 ? reason : 0;
    return broker_conn_send(c, &a) == 0 ? 0 : TERN_MQTT_RC_IMPLEMENTATION_ERROR;
}

/*
 * Acknowledge an incoming QoS 1/2 publish with reason (0 = success). Against the Receive
 * Maximum (5.0 4.9) a QoS 1 publish counts until its PUBACK, a QoS 2 one until its PUBCOMP,
 * or until a PUBREC that refuses it.
 */
static int ack_publish(broker_conn *c, uint8_t qos, uint16_t packet_id, uint8_t reason)
{
    if (c->n_unacked_in && (qos == 1 || reason >= 0x80))
        c->n_unacked_in--;
    if (qos == 1)
        return send_ack(c, TERN_MQTT_PUBACK, packet_id, reason);
    if (reason < 0x80 && broker_session_qos2_set(c->session, packet_id, true) != 0)
        return TERN_MQTT_RC_IMPLEMENTATION_ERROR;
    return send_ack(c, TERN_MQTT_PUBREC, packet_id, reason);
}

bool broker_is_ingest_topic(const tern_broker *b, const uint8_t *topic, size_t len)
{
    for (size_t i = 0; i < b->cfg.n_ingest_filters; i++) {
        const char *f = b->cfg.ingest_filters[i];
        if (tern_mqtt_topic_matches((const uint8_t *)f, b->ingest_len[i], topic, len))
            return true;
    }
    return false;
}

void tern_broker_ingest_done(tern_broker *b, void *token, int status)
{
    ingest_wait *w = token;
    if (!w)
        return;
    broker_conn *c = w->conn;
    broker_lock(b, c->w);
    c->n_pending--;
    if (status != 0)
        b->stats.ingest_failed++;
    if (c->state != CONN_CLOSED) {
        uint8_t reason = status == 0 ? 0
            : status == TERN_EQUOTA  ? TERN_MQTT_RC_QUOTA_EXCEEDED
                                     : TERN_MQTT_RC_UNSPECIFIED;
        if (status != 0 && c->version != TERN_MQTT_V5) {
            /* 3.1.1 has no way to refuse a PUBLISH: not acknowledging makes the client resend
             * it later; closing tells it now. Never acknowledge what was not stored. */
            broker_conn_close(c, 0, true);
        } else if (ack_publish(c, w->qos, w->packet_id, reason) != 0) {
            broker_conn_close(c, TERN_MQTT_RC_IMPLEMENTATION_ERROR, true);
        } else {
            broker_conn_mark_dirty(c);
        }
    } else if (c->n_pending == 0 && c->finished) {
        broker_conn_release(c);
    }
    broker_unlock(b);
    tern_free(w);
}

/* Resolve a 5.0 topic alias. Sets *topic. 0 or a reason code. */
static int resolve_alias(broker_conn *c, const tern_mqtt_publish *p, tern_mqtt_str *topic)
{
    tern_broker *b = c->broker;
    *topic = p->topic;
    if (!TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_TOPIC_ALIAS))
        return p->topic.len ? 0 : TERN_MQTT_RC_PROTOCOL_ERROR;
    uint16_t alias = p->props.topic_alias;
    if (alias == 0 || alias > b->cfg.topic_alias_max)
        return TERN_MQTT_RC_TOPIC_ALIAS_INVALID;
    if (!c->alias_in) {
        c->alias_in = tern_calloc((size_t)b->cfg.topic_alias_max + 1, sizeof(char *));
        if (!c->alias_in)
            return TERN_MQTT_RC_IMPLEMENTATION_ERROR;
    }
    if (p->topic.len) {
        char *copy = tern_strndup((const char *)p->topic.p, p->topic.len);
        if (!copy)
            return TERN_MQTT_RC_IMPLEMENTATION_ERROR;
        tern_free(c->alias_in[alias]);
        c->alias_in[alias] = copy;
        return 0;
    }
    if (!c->alias_in[alias])
        return TERN_MQTT_RC_PROTOCOL_ERROR; /* an alias that was never set */
    topic->p = (const uint8_t *)c->alias_in[alias];
    topic->len = (uint16_t)strlen(c->alias_in[alias]);
    return 0;
}

static size_t count_levels(const uint8_t *t, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += t[i] == '/';
    return n;
}

int broker_handle_publish(broker_conn *c, const tern_mqtt_publish *p)
{
    tern_broker *b = c->broker;
    broker_session *s = c->session;
    b->stats.msgs_received++;

    if (p->qos > 0 && c->version == TERN_MQTT_V5 && c->n_unacked_in >= b->cfg.receive_max)
        return TERN_MQTT_RC_RECEIVE_MAX_EXCEEDED;

    tern_mqtt_str topic;
    int rc = resolve_alias(c, p, &topic);
    if (rc)
        return rc;
    if (topic.len > b->cfg.max_topic_bytes
        || count_levels(topic.p, topic.len) > b->cfg.max_topic_levels)
        return TERN_MQTT_RC_TOPIC_NAME_INVALID;
    if (p->qos > 0)
        c->n_unacked_in++;

    /* QoS 2 re-sent before PUBREL: acknowledge again, do not route twice. */
    if (p->qos == 2 && broker_session_qos2_has(s, p->packet_id)) {
        c->n_unacked_in--;
        return send_ack(c, TERN_MQTT_PUBREC, p->packet_id, 0);
    }

    /* 5.0: a payload declared UTF-8 must be UTF-8. */
    if (TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_PAYLOAD_FORMAT) && p->props.payload_format == 1
        && tern_mqtt_utf8_validate(p->payload, p->payload_len) != 0) {
        if (p->qos == 0)
            return TERN_MQTT_RC_PAYLOAD_FORMAT_INVALID;
        return ack_publish(c, p->qos, p->packet_id, TERN_MQTT_RC_PAYLOAD_FORMAT_INVALID);
    }

    /* Authorization: $-topics are the broker's; otherwise the ACL decides. */
    if (topic.p[0] == '$'
        || !broker_security_may_publish(b, s->client_id, c->username, topic.p, topic.len)) {
        TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "client '%s': publish to '%.*s' denied",
            s->client_id, (int)topic.len, (const char *)topic.p);
        if (p->qos == 0)
            return 0;
        return ack_publish(c, p->qos, p->packet_id, TERN_MQTT_RC_NOT_AUTHORIZED);
    }

    tern_mqtt_publish routed = *p;
    routed.topic = topic;
    broker_msg *m = broker_msg_new(&routed, s->client_id, broker_now_ms(b));
    if (!m)
        return TERN_MQTT_RC_IMPLEMENTATION_ERROR;
    if (m->retain)
        broker_retain(b, m);
    b->origin = c; /* a full subscriber queue throttles c (push-back, conn.c) */
    broker_route(b, m, s);
    b->origin = NULL;
    broker_msg_unref(m);

    /* Ingest: hand telemetry to the sink; acknowledge QoS 1/2 only once it is stored. */
    if (b->sink && broker_is_ingest_topic(b, topic.p, topic.len)) {
        tern_broker_ingest rec = {
            .client_id = s->client_id,
            .topic = topic.p,
            .topic_len = topic.len,
            .payload = p->payload,
            .payload_len = p->payload_len,
            .qos = p->qos,
            .arrival_ms = (uint64_t)tern_clock_now_ms(),
            .loop = c->w->loop,
        };
        ingest_wait *w = NULL;
        if (p->qos > 0) {
            w = tern_malloc(sizeof *w);
            if (!w)
                return ack_publish(c, p->qos, p->packet_id, TERN_MQTT_RC_UNSPECIFIED);
            w->conn = c;
            w->packet_id = p->packet_id;
            w->qos = p->qos;
        }
        b->stats.ingest_submitted++;
        rc = b->sink->submit(b->sink->ctx, &rec, w);
        if (rc == 0 && w) {
            c->n_pending++;
            return 0;
        }
        if (rc != 0) {
            b->stats.ingest_failed++;
            tern_free(w);
            if (p->qos == 0)
                return 0; /* QoS 0 is best effort: shed, counted */
            if (c->version != TERN_MQTT_V5)
                return TERN_MQTT_RC_UNSPECIFIED; /* close: never ack what was not stored */
            return ack_publish(c, p->qos, p->packet_id,
                rc == TERN_EQUOTA ? TERN_MQTT_RC_QUOTA_EXCEEDED : TERN_MQTT_RC_UNSPECIFIED);
        }
        return 0;
    }
    if (p->qos == 0)
        return 0;
    return ack_publish(c, p->qos, p->packet_id, 0);
}

int broker_handle_ack(broker_conn *c, uint8_t type, const tern_mqtt_ack *p)
{
    tern_broker *b = c->broker;
    broker_session *s = c->session;
    if (type == TERN_MQTT_PUBREL) {
        bool known = broker_session_qos2_has(s, p->packet_id);
        (void)broker_session_qos2_set(s, p->packet_id, false);
        if (known && c->n_unacked_in)
            c->n_unacked_in--; /* the QoS 2 flow ends with this PUBCOMP */
        return send_ack(
            c, TERN_MQTT_PUBCOMP, p->packet_id, known ? 0 : TERN_MQTT_RC_PACKET_ID_NOT_FOUND);
    }
    return broker_session_acked(b, s, type, p->packet_id, p->reason);
}

/*
 * session.c: MQTT sessions: the table by client id, the outgoing QoS 1/2 window and queue,
 * incoming QoS 2 state, and expiry of offline sessions.
 *
 * Outgoing messages of a session form one list in send order: first the in-flight ones
 * (sent, awaiting PUBACK / PUBREC / PUBCOMP), then the queued ones. The window is the client's
 * Receive Maximum (5.0) capped by max_inflight; queued beyond it up to max_queued. When the
 * queue is full, QoS 0 messages are dropped first (every drop counted), then the new message.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/hash.h"
#include "base/log.h"
#include "broker/store.h"

#include <string.h>

static void release_pressure(tern_broker *b, broker_session *s);

static uint32_t bucket_of(const tern_broker *b, const char *client_id)
{
    return (uint32_t)(tern_hash64(client_id, strlen(client_id), 0) % b->n_session_buckets);
}

broker_session *broker_session_find(tern_broker *b, const char *client_id)
{
    for (broker_session *s = b->sessions[bucket_of(b, client_id)]; s; s = s->hash_next)
        if (strcmp(s->client_id, client_id) == 0)
            return s;
    return NULL;
}

static int grow_table(tern_broker *b)
{
    uint32_t n = b->n_session_buckets * 2;
    broker_session **t = tern_calloc(n, sizeof *t);
    if (!t)
        return TERN_ENOMEM;
    uint32_t old_n = b->n_session_buckets;
    broker_session **old = b->sessions;
    b->sessions = t;
    b->n_session_buckets = n;
    for (uint32_t i = 0; i < old_n; i++) {
        broker_session *s = old[i];
        while (s) {
            broker_session *next = s->hash_next;
            uint32_t k = bucket_of(b, s->client_id);
            s->hash_next = t[k];
            t[k] = s;
            s = next;
        }
    }
    tern_free(old);
    return 0;
}

static void expiry_cb(broker_deadline *d)
{
    broker_session *s = d->data;
    TERN_LOG(TERN_LOG_DEBUG, "broker", "session '%s' expired", s->client_id);
    broker_session_destroy(s->broker, s);
}

int broker_session_create(tern_broker *b, const char *client_id, broker_session **out)
{
    if (b->n_sessions >= b->n_session_buckets && grow_table(b) != 0)
        return TERN_ENOMEM;
    broker_session *s = tern_calloc(1, sizeof *s);
    if (!s)
        return TERN_ENOMEM;
    s->client_id = tern_strdup(client_id);
    if (!s->client_id) {
        tern_free(s);
        return TERN_ENOMEM;
    }
    s->broker = b;
    s->subscriber.ctx = s;
    s->next_packet_id = 1;
    tern_list_init(&s->out);
    uint32_t k = bucket_of(b, client_id);
    s->hash_next = b->sessions[k];
    b->sessions[k] = s;
    b->n_sessions++;
    b->stats.sessions = b->n_sessions;
    *out = s;
    return 0;
}

static void out_unlink(broker_session *s, broker_out *o)
{
    broker_store_out_del(s->broker, o);
    tern_list_unlink(&o->link);
    if (o->state == OUT_QUEUED)
        s->n_queued--;
    else
        s->n_inflight--;
}

static void out_free(broker_out *o)
{
    broker_msg_unref(o->msg);
    tern_free(o);
}

void broker_session_destroy(tern_broker *b, broker_session *s)
{
    broker_session **pp = &b->sessions[bucket_of(b, s->client_id)];
    while (*pp && *pp != s)
        pp = &(*pp)->hash_next;
    if (*pp)
        *pp = s->hash_next;
    b->n_sessions--;
    b->stats.sessions = b->n_sessions;
    if (s->pressured)
        release_pressure(b, s);
    broker_store_session_del(b, s);
    broker_will_session_end(b, s);
    tern_topic_tree_remove_all(b->subs, &s->subscriber);
    b->stats.subscriptions = tern_topic_tree_count(b->subs);
    broker_deadline_disarm(&b->deadlines, &s->expiry);
    for (broker_out *o = out_first(s), *next; o; o = next) {
        next = out_next(s, o);
        out_free(o);
    }
    tern_free(s->qos2_in);
    tern_free(s->client_id);
    tern_free(s);
}

void broker_session_detach(tern_broker *b, broker_session *s)
{
    if (s->pressured)
        release_pressure(b, s); /* it will not drain while offline */
    if (s->clean || s->expiry_s == 0) {
        broker_session_destroy(b, s);
        return;
    }
    s->offline_since_ms = broker_now_ms(b);
    if (s->expiry_s != UINT32_MAX
        && broker_deadline_arm(&b->deadlines, &s->expiry,
               s->offline_since_ms + (uint64_t)s->expiry_s * 1000u, expiry_cb, s)
            != 0)
        TERN_LOG_RATELIMITED(TERN_LOG_ERROR, "broker",
            "session '%s': out of memory arming its expiry; kept until a restart", s->client_id);
}

void broker_session_free_all(tern_broker *b)
{
    for (uint32_t i = 0; i < b->n_session_buckets; i++) {
        while (b->sessions[i])
            broker_session_destroy(b, b->sessions[i]);
    }
}

static uint32_t window_of(const tern_broker *b, const broker_session *s)
{
    uint32_t w = b->cfg.max_inflight;
    if (s->conn && s->conn->client_receive_max < w)
        w = s->conn->client_receive_max;
    return w ? w : 1;
}

static uint16_t next_packet_id(broker_session *s)
{
    /* Skip ids still in flight: with a window far below 65535 the scan is short. */
    for (;;) {
        uint16_t id = s->next_packet_id++;
        if (s->next_packet_id == 0)
            s->next_packet_id = 1;
        bool used = false;
        for (broker_out *o = out_first(s); o && o->state != OUT_QUEUED; o = out_next(s, o)) {
            if (o->packet_id == id) {
                used = true;
                break;
            }
        }
        if (!used)
            return id;
    }
}

/*
 * Outbound topic aliases (5.0): a topic hashes to one of n_alias_out slots; if the slot
 * already maps that topic the PUBLISH carries only the alias, otherwise the slot is re-mapped
 * by sending topic and alias together. O(1) per message, no eviction bookkeeping.
 */
#define MAX_ALIAS_OUT 32
static void apply_alias(broker_conn *c, const broker_msg *m, tern_mqtt_publish *p)
{
    if (c->client_topic_alias_max == 0)
        return;
    if (!c->alias_out) {
        uint16_t n
            = c->client_topic_alias_max < MAX_ALIAS_OUT ? c->client_topic_alias_max : MAX_ALIAS_OUT;
        c->alias_out = tern_calloc(n, sizeof(char *));
        if (!c->alias_out)
            return; /* no alias: always correct, only larger */
        c->n_alias_out = n;
    }
    size_t slot = (size_t)(tern_hash64(m->topic, m->topic_len, 0) % c->n_alias_out);
    p->props.present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS);
    p->props.topic_alias = (uint16_t)(slot + 1);
    char *known = c->alias_out[slot];
    if (known && strcmp(known, m->topic) == 0) {
        p->topic.len = 0; /* the client knows this alias */
        return;
    }
    char *copy = tern_strdup(m->topic);
    if (!copy) {
        p->props.present &= ~TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS);
        return;
    }
    tern_free(known);
    c->alias_out[slot] = copy;
}

/* Encode and queue one PUBLISH to the session's connection. */
static int send_publish(tern_broker *b, broker_conn *c, const broker_msg *m, uint8_t qos,
    bool retain, bool dup, uint16_t packet_id, const uint32_t *sub_ids, uint32_t n_sub_ids)
{
    tern_mqtt_packet pkt = { .type = TERN_MQTT_PUBLISH };
    tern_mqtt_publish *p = &pkt.u.publish;
    p->dup = dup;
    p->qos = qos;
    p->retain = retain;
    p->packet_id = packet_id;
    p->topic.p = (const uint8_t *)m->topic;
    p->topic.len = (uint16_t)m->topic_len;
    p->payload = m->payload;
    p->payload_len = m->payload_len;
    if (c->version == TERN_MQTT_V5) {
        tern_mqtt_props *pr = &p->props;
        apply_alias(c, m, p);
        if (m->has_payload_format) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_PAYLOAD_FORMAT);
            pr->payload_format = m->payload_format;
        }
        if (m->has_expiry) {
            uint64_t now = broker_now_ms(b);
            uint64_t left_ms = m->expire_at_ms > now ? m->expire_at_ms - now : 0;
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MESSAGE_EXPIRY);
            pr->message_expiry_s = (uint32_t)((left_ms + 999) / 1000);
        }
        if (m->content_type.p) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CONTENT_TYPE);
            pr->content_type = m->content_type;
        }
        if (m->response_topic.p) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RESPONSE_TOPIC);
            pr->response_topic = m->response_topic;
        }
        if (m->correlation_data.p) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CORRELATION_DATA);
            pr->correlation_data = m->correlation_data;
        }
        if (m->n_user) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_USER);
            pr->raw = m->user_raw;
            pr->raw_len = m->user_raw_len;
            pr->n_user = m->n_user;
        }
        if (n_sub_ids) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SUBSCRIPTION_ID);
            pr->sub_ids = sub_ids;
            pr->n_sub_ids = n_sub_ids;
            pr->subscription_id = sub_ids[0];
        }
    }
    size_t before = c->out.len;
    int rc = tern_mqtt_encode(&c->out, c->version, &pkt);
    if (rc != 0)
        return rc;
    if (c->client_max_packet && c->out.len - before > c->client_max_packet) {
        /* MQTT 5 3.1.2.11.4: a message too large for the client is discarded, not sent. */
        c->out.len = before;
        if (p->topic.len && TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_TOPIC_ALIAS)) {
            /* The client never saw this alias mapping: forget it. */
            size_t slot = (size_t)p->props.topic_alias - 1;
            tern_free(c->alias_out[slot]);
            c->alias_out[slot] = NULL;
        }
        return TERN_ETOOBIG;
    }
    b->stats.msgs_sent++;
    b->stats.bytes_sent += c->out.len - before;
    return 0;
}

static void send_out(tern_broker *b, broker_session *s, broker_out *o, bool dup)
{
    broker_conn *c = s->conn;
    uint8_t state = o->qos == 1 ? OUT_WAIT_PUBACK : OUT_WAIT_PUBREC;
    if (o->state == OUT_QUEUED) {
        s->n_queued--;
        s->n_inflight++;
        o->packet_id = next_packet_id(s);
        o->state = state;
        broker_store_out_state(b, o);
    }
    if (o->state == OUT_WAIT_PUBCOMP) {
        /* Redelivery after reconnect: the PUBLISH was received, repeat the PUBREL. */
        tern_mqtt_packet rel = { .type = TERN_MQTT_PUBREL };
        rel.u.ack.packet_id = o->packet_id;
        (void)broker_conn_send(c, &rel);
        return;
    }
    int rc = send_publish(
        b, c, o->msg, o->qos, o->retain, dup, o->packet_id, o->sub_ids, o->n_sub_ids);
    if (rc == TERN_ETOOBIG) {
        out_unlink(s, o);
        out_free(o);
    }
}

/* The publishers throttled by s's full queue may go on (conn.c, push-back). */
static void release_pressure(tern_broker *b, broker_session *s)
{
    s->pressured = false;
    broker_conn_unthrottle_all(b);
}

void broker_session_pump(tern_broker *b, broker_session *s)
{
    if (!s->conn || s->conn->state != CONN_ACTIVE)
        return;
    uint32_t window = window_of(b, s);
    uint64_t now = broker_now_ms(b);
    broker_out *o = out_first(s);
    while (o && o->state != OUT_QUEUED)
        o = out_next(s, o);
    while (o && s->n_inflight < window) {
        broker_out *next = out_next(s, o);
        if (broker_msg_expired(o->msg, now)) {
            out_unlink(s, o);
            out_free(o);
        } else if (o->qos == 0) {
            /* QoS 0 kept while offline: sent once, nothing to wait for. */
            out_unlink(s, o);
            (void)send_publish(
                b, s->conn, o->msg, 0, o->retain, false, 0, o->sub_ids, o->n_sub_ids);
            out_free(o);
        } else {
            send_out(b, s, o, false);
        }
        o = next;
    }
    if (s->pressured && s->n_queued <= b->cfg.max_queued / 2)
        release_pressure(b, s);
}

void broker_session_resend(tern_broker *b, broker_session *s)
{
    for (broker_out *o = out_first(s); o && o->state != OUT_QUEUED;) {
        broker_out *next = out_next(s, o);
        send_out(b, s, o, true);
        o = next;
    }
}

/* Make room in a full queue: drop the oldest queued QoS 0 message. */
static bool drop_one_qos0(tern_broker *b, broker_session *s)
{
    for (broker_out *o = out_first(s); o; o = out_next(s, o)) {
        if (o->state == OUT_QUEUED && o->qos == 0) {
            out_unlink(s, o);
            out_free(o);
            b->stats.dropped_qos0++;
            return true;
        }
    }
    return false;
}

void broker_session_deliver(tern_broker *b, broker_session *s, broker_msg *m, uint8_t qos,
    bool retain, const uint32_t *sub_ids, uint32_t n_sub_ids)
{
    broker_conn *c = s->conn;
    bool online = c && c->state == CONN_ACTIVE;
    if (qos == 0 && online) {
        if (broker_conn_out_pending(c) > b->cfg.max_out_buffer_bytes) {
            b->stats.dropped_qos0++; /* slow consumer: shed QoS 0 first */
            return;
        }
        (void)send_publish(b, c, m, 0, retain, false, 0, sub_ids, n_sub_ids);
        return;
    }
    if (!online && s->clean)
        return;
    if (s->n_queued >= b->cfg.max_queued && !drop_one_qos0(b, s)) {
        /* Push back on the publisher rather than drop what it will be acknowledged for, up to
         * twice the bound (conn.c, push-back). */
        broker_conn *from = b->origin;
        if (qos > 0 && online && from && from->state == CONN_ACTIVE
            && s->n_queued < 2 * (uint64_t)b->cfg.max_queued) {
            s->pressured = true;
            broker_conn_throttle(from);
            goto queue;
        }
        if (qos == 0)
            b->stats.dropped_qos0++;
        else
            b->stats.dropped_queue_full++;
        TERN_LOG_RATELIMITED(
            TERN_LOG_WARN, "broker", "session '%s': queue full, message dropped", s->client_id);
        return;
    }
queue:;
    broker_out *o = broker_session_restore_out(s, m, qos, retain, sub_ids, n_sub_ids);
    if (!o) {
        b->stats.dropped_queue_full++;
        return;
    }
    broker_store_out(b, s, o);
    if (online)
        broker_session_pump(b, s);
}

bool broker_session_qos2_has(const broker_session *s, uint16_t id)
{
    return s->qos2_in && (s->qos2_in[id >> 3] & (1u << (id & 7)));
}

int broker_session_qos2_set(broker_session *s, uint16_t id, bool on)
{
    if (!s->qos2_in) {
        if (!on)
            return 0;
        s->qos2_in = tern_calloc(8192, 1);
        if (!s->qos2_in)
            return TERN_ENOMEM;
    }
    bool was = broker_session_qos2_has(s, id);
    if (on == was)
        return 0;
    if (on) {
        s->qos2_in[id >> 3] |= (uint8_t)(1u << (id & 7));
        s->n_qos2_in++;
    } else {
        s->qos2_in[id >> 3] &= (uint8_t) ~(1u << (id & 7));
        if (--s->n_qos2_in == 0) {
            tern_free(s->qos2_in);
            s->qos2_in = NULL;
        }
    }
    broker_store_qos2(s->broker, s, id, on);
    return 0;
}

broker_out *broker_session_restore_out(broker_session *s, broker_msg *m, uint8_t qos, bool retain,
    const uint32_t *sub_ids, uint32_t n_sub_ids)
{
    if (n_sub_ids > BROKER_MAX_SUB_IDS)
        n_sub_ids = BROKER_MAX_SUB_IDS;
    broker_out *o = tern_calloc(1, sizeof *o + n_sub_ids * sizeof o->sub_ids[0]);
    if (!o)
        return NULL;
    broker_msg_ref(m);
    o->msg = m;
    o->qos = qos;
    o->retain = retain;
    o->state = OUT_QUEUED;
    o->n_sub_ids = n_sub_ids;
    for (uint32_t i = 0; i < o->n_sub_ids; i++)
        o->sub_ids[i] = sub_ids[i];
    tern_list_push_back(&s->out, &o->link);
    s->n_queued++;
    return o;
}

void broker_session_restore_out_state(
    broker_session *s, broker_out *o, uint8_t state, uint16_t packet_id)
{
    if (o->state == OUT_QUEUED) {
        s->n_queued--;
        s->n_inflight++;
    }
    o->state = state;
    o->packet_id = packet_id;
}

void broker_session_drop_out(broker_session *s, broker_out *o)
{
    out_unlink(s, o);
    out_free(o);
}

int broker_session_acked(
    tern_broker *b, broker_session *s, uint8_t type, uint16_t packet_id, uint8_t reason)
{
    for (broker_out *o = out_first(s); o && o->state != OUT_QUEUED; o = out_next(s, o)) {
        if (o->packet_id != packet_id)
            continue;
        if (type == TERN_MQTT_PUBACK && o->state == OUT_WAIT_PUBACK) {
            out_unlink(s, o);
            out_free(o);
        } else if (type == TERN_MQTT_PUBREC && o->state == OUT_WAIT_PUBREC) {
            if (reason >= 0x80) { /* 5.0: the receiver refused it: the flow ends here */
                out_unlink(s, o);
                out_free(o);
            } else {
                o->state = OUT_WAIT_PUBCOMP;
                broker_store_out_state(b, o);
                tern_mqtt_packet rel = { .type = TERN_MQTT_PUBREL };
                rel.u.ack.packet_id = packet_id;
                (void)broker_conn_send(s->conn, &rel);
                return 0;
            }
        } else if (type == TERN_MQTT_PUBREC && o->state == OUT_WAIT_PUBCOMP) {
            /* A repeated PUBREC: repeat the PUBREL. */
            tern_mqtt_packet rel = { .type = TERN_MQTT_PUBREL };
            rel.u.ack.packet_id = packet_id;
            (void)broker_conn_send(s->conn, &rel);
            return 0;
        } else if (type == TERN_MQTT_PUBCOMP && o->state == OUT_WAIT_PUBCOMP) {
            out_unlink(s, o);
            out_free(o);
        } else {
            return TERN_MQTT_RC_PROTOCOL_ERROR;
        }
        broker_session_pump(b, s);
        return 0;
    }
    /* An ack for an unknown id: harmless after a redelivery; 3.1.1 and 5.0 both tolerate it. */
    return 0;
}

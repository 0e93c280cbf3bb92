/*
 * handle_connect.c: CONNECT -> CONNACK. Admission control, client id rules, authentication,
 * session creation / resumption / takeover, the Last Will, and the 5.0 limits each side
 * announces. Every refusal answers with the CONNACK code of the client's protocol version.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "broker/store.h"
#include "mqtt/topic.h"

#include <stdio.h>
#include <string.h>

#define MAX_CLIENT_ID_BYTES 128

bool broker_connack_refusal(tern_mqtt_packet *ack, uint8_t version, uint8_t reason_v5)
{
    memset(ack, 0, sizeof *ack);
    ack->type = TERN_MQTT_CONNACK;
    if (version == TERN_MQTT_V5) {
        ack->u.connack.reason = reason_v5;
        const char *why = tern_mqtt_reason_str(reason_v5, TERN_MQTT_CONNACK);
        ack->u.connack.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REASON_STRING);
        ack->u.connack.props.reason_string.p = (const uint8_t *)why;
        ack->u.connack.props.reason_string.len = (uint16_t)strlen(why);
        return true;
    }
    int rc = tern_mqtt_reason_v311_connack(reason_v5);
    if (rc < 0)
        return false;
    ack->u.connack.reason = (uint8_t)rc;
    return true;
}

/* Answer CONNACK with a refusal and close. The 5.0 code is mapped for 3.1.1 clients. */
static int refuse(broker_conn *c, uint8_t reason_v5)
{
    tern_broker *b = c->broker;
    tern_mqtt_packet ack;
    if (!broker_connack_refusal(&ack, c->version, reason_v5)) {
        broker_conn_close(c, 0, false);
        return 0;
    }
    (void)broker_conn_send(c, &ack);
    b->stats.connects_refused++;
    broker_conn_close(c, 0, false);
    return 0;
}

/* Whether the CONNACK, shed of what it may lose, fits the client's Maximum Packet Size. */
static bool connack_fits(broker_conn *c, const tern_mqtt_packet *ack)
{
    tern_buf probe;
    tern_buf_init(&probe);
    int rc = broker_encode_within(&probe, c->version, c->client_max_packet, ack);
    tern_buf_free(&probe);
    return rc != TERN_ETOOBIG;
}

static int make_will(broker_conn *c, const tern_mqtt_connect *p, const char *client_id)
{
    tern_mqtt_publish will = { 0 };
    will.qos = p->will_qos;
    will.retain = p->will_retain;
    will.topic = p->will_topic;
    will.payload = p->will_payload.p;
    will.payload_len = p->will_payload.len;
    will.props = p->will_props;
    broker_msg *m = broker_msg_new(&will, client_id, broker_now_ms(c->broker));
    if (!m)
        return TERN_ENOMEM;
    c->will = m;
    c->will_delay_s = TERN_MQTT_HAS_PROP(&p->will_props, TERN_MQTT_PROP_WILL_DELAY)
        ? p->will_props.will_delay_s
        : 0;
    return 0;
}

int broker_handle_connect(broker_conn *c, const tern_mqtt_connect *p)
{
    tern_broker *b = c->broker;
    c->version = p->version;
    if (c->version == TERN_MQTT_V5 && TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_MAX_PACKET_SIZE))
        c->client_max_packet = p->props.max_packet_size; /* refusals too must fit (3.1.2-24) */

    if (b->shutting_down || b->store_failed)
        return refuse(c, TERN_MQTT_RC_SERVER_UNAVAILABLE);
    /* Admission: a token bucket on new sessions protects established connections from a
     * reconnect storm. The refusal is cheap: no session, no auth, one small CONNACK. The door
     * (door.c) takes the token for plain TCP connections; TLS ones take it here. */
    if (!c->admitted && !c->auth_verdict_ready && !broker_admit(b)) {
        b->stats.admission_refused++;
        TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "connection rate exceeded: refusing");
        return refuse(c, TERN_MQTT_RC_CONNECTION_RATE_EXCEEDED);
    }
    if (b->cfg.max_connections && b->stats.connections >= b->cfg.max_connections)
        return refuse(c, TERN_MQTT_RC_SERVER_BUSY);

    /* 5.0 enhanced authentication: tern offers no method, so any is a bad one (4.12). */
    if (c->version == TERN_MQTT_V5 && TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_AUTH_METHOD))
        return refuse(c, TERN_MQTT_RC_BAD_AUTH_METHOD);

    /* Client identifier. */
    char client_id[MAX_CLIENT_ID_BYTES + 1];
    bool assigned = false;
    if (p->client_id.len == 0) {
        if (c->version != TERN_MQTT_V5 && !p->clean_start)
            return refuse(c, TERN_MQTT_RC_CLIENT_ID_INVALID); /* MQTT-3.1.3-8 */
        snprintf(client_id, sizeof client_id, "tern-%llu-%llu",
            (unsigned long long)tern_clock_now_ms(), (unsigned long long)++b->next_client_id);
        assigned = true;
    } else {
        if (tern_mqtt_client_id_check(p->client_id.p, p->client_id.len, MAX_CLIENT_ID_BYTES) != 0) {
            TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "refusing an invalid client id");
            return refuse(c, TERN_MQTT_RC_CLIENT_ID_INVALID);
        }
        memcpy(client_id, p->client_id.p, p->client_id.len);
        client_id[p->client_id.len] = '\0';
    }

    /* Authentication. */
    int auth_reason = broker_security_authenticate(b, c, p);
    if (auth_reason == BROKER_AUTH_PARKED)
        return 0; /* handled again when the verdict arrives */
    if (auth_reason)
        return refuse(c, (uint8_t)auth_reason);
    if (c->tls_identity) {
        c->username = tern_strdup(c->tls_identity);
        if (!c->username)
            return refuse(c, TERN_MQTT_RC_SERVER_UNAVAILABLE);
    } else if (p->has_username) {
        c->username = tern_strndup((const char *)p->username.p, p->username.len);
        if (!c->username)
            return refuse(c, TERN_MQTT_RC_SERVER_UNAVAILABLE);
    }

    /* The will topic must be one this client may publish to. */
    if (p->has_will) {
        if (!broker_security_may_publish(
                b, client_id, c->username, p->will_topic.p, p->will_topic.len))
            return refuse(c, TERN_MQTT_RC_NOT_AUTHORIZED);
        if (make_will(c, p, client_id) != 0)
            return refuse(c, TERN_MQTT_RC_SERVER_UNAVAILABLE);
    }

    /* Session expiry: 3.1.1 clean session = 0, persistent = until the broker's maximum. */
    uint32_t expiry_s = 0;
    if (c->version == TERN_MQTT_V5) {
        if (TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_SESSION_EXPIRY))
            expiry_s = p->props.session_expiry_s;
    } else if (!p->clean_start) {
        expiry_s = UINT32_MAX;
    }
    if (expiry_s > b->cfg.max_session_expiry_s)
        expiry_s = b->cfg.max_session_expiry_s;

    /* What the client announced (5.0). */
    c->keepalive_s = p->keep_alive_s;
    bool server_keepalive = false;
    if (c->version == TERN_MQTT_V5 && b->cfg.max_keepalive_s
        && (c->keepalive_s == 0 || c->keepalive_s > b->cfg.max_keepalive_s)) {
        c->keepalive_s = b->cfg.max_keepalive_s; /* told to the client in CONNACK */
        server_keepalive = true;
    }
    if (c->version == TERN_MQTT_V5) {
        if (TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_RECEIVE_MAX))
            c->client_receive_max = p->props.receive_max;
        if (TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_TOPIC_ALIAS_MAX))
            c->client_topic_alias_max = p->props.topic_alias_max;
        c->request_problem_info
            = !TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_REQUEST_PROBLEM_INFO)
            || p->props.request_problem_info;
    }

    /* CONNACK. */
    tern_mqtt_packet ack = { .type = TERN_MQTT_CONNACK };
    ack.u.connack.reason = 0;
    if (c->version == TERN_MQTT_V5) {
        tern_mqtt_props *pr = &ack.u.connack.props;
        pr->present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RECEIVE_MAX)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS_MAX)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MAX_PACKET_SIZE);
        pr->receive_max = b->cfg.receive_max;
        pr->topic_alias_max = b->cfg.topic_alias_max;
        pr->max_packet_size = b->cfg.max_packet_bytes;
        if (assigned) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_ASSIGNED_CLIENT_ID);
            pr->assigned_client_id.p = (const uint8_t *)client_id;
            pr->assigned_client_id.len = (uint16_t)strlen(client_id);
        }
        if (server_keepalive) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SERVER_KEEP_ALIVE);
            pr->server_keep_alive_s = c->keepalive_s;
        }
        if (b->cfg.response_information
            && TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_REQUEST_RESPONSE_INFO)
            && p->props.request_response_info) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RESPONSE_INFO);
            pr->response_info.p = (const uint8_t *)b->cfg.response_information;
            pr->response_info.len = (uint16_t)strlen(b->cfg.response_information);
        }
        if (TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_SESSION_EXPIRY)
            && p->props.session_expiry_s != expiry_s) {
            pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SESSION_EXPIRY);
            pr->session_expiry_s = expiry_s;
        }
    }
    /* Refused before any session is touched if even its lean form is too long for the client
     * (5.0 3.1.2.11.4); its session_present flag, set below, does not change its length. */
    if (c->client_max_packet && !connack_fits(c, &ack))
        return refuse(c, TERN_MQTT_RC_PACKET_TOO_LARGE);

    /* Session: take over an online one, resume or discard an offline one. */
    broker_session *s = broker_session_find(b, client_id);
    if (s && s->conn) {
        TERN_LOG(TERN_LOG_DEBUG, "broker", "client '%s' taken over by a new connection", client_id);
        broker_conn *old = s->conn;
        broker_conn_close(old, TERN_MQTT_RC_SESSION_TAKEN_OVER, true);
        s = broker_session_find(b, client_id); /* a clean session was destroyed by the close */
    }
    bool session_present = false;
    if (s && p->clean_start) {
        broker_session_destroy(b, s);
        s = NULL;
    }
    if (s) {
        session_present = true;
        broker_deadline_disarm(&b->deadlines, &s->expiry);
        broker_will_cancel(s);
    } else if (broker_session_create(b, client_id, &s) != 0) {
        return refuse(c, TERN_MQTT_RC_SERVER_UNAVAILABLE);
    }
    s->expiry_s = expiry_s;
    s->clean = expiry_s == 0;
    s->conn = c;
    c->session = s;
    broker_store_session(b, s); /* a persistent session is journaled from its CONNECT on */
    ack.u.connack.session_present = session_present;

    /* Established: its events now come before any handshake's (see conn.c, accept). */
    if (tern_loop_io_set_background(&c->io, false) != 0 || broker_conn_send(c, &ack) != 0)
        return TERN_MQTT_RC_IMPLEMENTATION_ERROR;

    c->state = CONN_ACTIVE;
    b->stats.connections++;
    b->stats.connects_total++;
    broker_conn_reset_keepalive(c);
    if (session_present) {
        broker_session_resend(b, s);
        broker_session_pump(b, s);
    }
    return 0;
}

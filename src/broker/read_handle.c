/*
 * read_handle.c: the dispatcher. One decoded packet goes to its handler; which packets a
 * client may send in which state is decided here, once. A handler returns 0, or an MQTT 5
 * reason code (>= 0x80) with which conn.c closes the connection (sent as DISCONNECT to a 5.0
 * client; a 3.1.1 connection is simply closed, as that version requires).
 */
#include "broker/broker_int.h"

#include "base/log.h"
#include "broker/store.h"

int broker_handle_packet(broker_conn *c, const tern_mqtt_packet *pkt)
{
    if (c->state == CONN_NEW && pkt->type != TERN_MQTT_CONNECT) {
        /* The first packet from a client must be CONNECT (MQTT-3.1.0-1). */
        return TERN_MQTT_RC_PROTOCOL_ERROR;
    }
    switch (pkt->type) {
    case TERN_MQTT_CONNECT:
        if (c->state != CONN_NEW)
            return TERN_MQTT_RC_PROTOCOL_ERROR; /* a second CONNECT (MQTT-3.1.0-2) */
        return broker_handle_connect(c, &pkt->u.connect);
    case TERN_MQTT_PUBLISH:
        return broker_handle_publish(c, &pkt->u.publish);
    case TERN_MQTT_PUBACK:
    case TERN_MQTT_PUBREC:
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_PUBCOMP:
        return broker_handle_ack(c, pkt->type, &pkt->u.ack);
    case TERN_MQTT_SUBSCRIBE:
        return broker_handle_subscribe(c, &pkt->u.subscribe);
    case TERN_MQTT_UNSUBSCRIBE:
        return broker_handle_unsubscribe(c, &pkt->u.subscribe);
    case TERN_MQTT_PINGREQ: {
        tern_mqtt_packet resp = { .type = TERN_MQTT_PINGRESP };
        return broker_conn_send(c, &resp) == 0 ? 0 : TERN_MQTT_RC_IMPLEMENTATION_ERROR;
    }
    case TERN_MQTT_DISCONNECT: {
        uint8_t reason = pkt->u.disconnect.reason;
        if (c->version == TERN_MQTT_V5 && c->session
            && TERN_MQTT_HAS_PROP(&pkt->u.disconnect.props, TERN_MQTT_PROP_SESSION_EXPIRY)) {
            /* 5.0 3.14.2.2.2: a client may not set a non-zero expiry if CONNECT had zero. */
            uint32_t e = pkt->u.disconnect.props.session_expiry_s;
            if (c->session->expiry_s == 0 && e != 0)
                return TERN_MQTT_RC_PROTOCOL_ERROR;
            c->session->expiry_s
                = e < c->broker->cfg.max_session_expiry_s ? e : c->broker->cfg.max_session_expiry_s;
            c->session->clean = c->session->expiry_s == 0;
            broker_store_session(c->broker, c->session);
        }
        /* Only a normal disconnection (0x00) discards the will (5.0 3.14.4-3): 0x04 asks
         * for it, and a client that reports an error (0x80 and up) gets it published too. */
        broker_conn_close(c, 0, reason != TERN_MQTT_RC_SUCCESS);
        return 0;
    }
    case TERN_MQTT_AUTH:
        /* No enhanced authentication method is offered, so AUTH is never expected. */
        return TERN_MQTT_RC_PROTOCOL_ERROR;
    default:
        /* CONNACK, SUBACK, UNSUBACK, PINGRESP are server-to-client only. */
        return TERN_MQTT_RC_PROTOCOL_ERROR;
    }
}

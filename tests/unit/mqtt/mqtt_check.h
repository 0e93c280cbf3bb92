/*
 * mqtt_check.h: field-by-field comparison of decoded MQTT packets and the decode -> encode ->
 * decode round trip, shared by the cmocka tests and the fuzz targets (no cmocka dependency).
 *
 * mqtt_check_diff returns NULL when two packets carry the same fields (lists compared through
 * the public iterators, so a decoded packet equals the caller-built one it came from), or the
 * name of the first field that differs.
 */
#ifndef TERN_TESTS_MQTT_CHECK_H
#define TERN_TESTS_MQTT_CHECK_H

#include "base/buf.h"
#include "base/error.h"
#include "mqtt/mqtt.h"

#include <stdbool.h>
#include <string.h>

/* S("lit") is a tern_mqtt_str view of a string literal; SI("lit") the same as an initializer. */
#define SI(lit)                                                                                    \
    {                                                                                              \
        (const uint8_t *)(lit), (uint16_t)(sizeof(lit) - 1)                                        \
    }
#define S(lit) ((tern_mqtt_str)SI(lit))

static inline bool mqtt_check_str_eq(tern_mqtt_str a, tern_mqtt_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline const char *mqtt_check_props(const tern_mqtt_props *a, const tern_mqtt_props *b)
{
    uint64_t mask = ~(TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_USER)
        | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SUBSCRIPTION_ID));
    if ((a->present & mask) != (b->present & mask))
        return "props.present";
#define NUM(id, f)                                                                                 \
    if (TERN_MQTT_HAS_PROP(a, id) && a->f != b->f)                                                 \
    return "props." #f
#define STR(id, f)                                                                                 \
    if (TERN_MQTT_HAS_PROP(a, id) && !mqtt_check_str_eq(a->f, b->f))                               \
    return "props." #f
    NUM(TERN_MQTT_PROP_PAYLOAD_FORMAT, payload_format);
    NUM(TERN_MQTT_PROP_MESSAGE_EXPIRY, message_expiry_s);
    STR(TERN_MQTT_PROP_CONTENT_TYPE, content_type);
    STR(TERN_MQTT_PROP_RESPONSE_TOPIC, response_topic);
    STR(TERN_MQTT_PROP_CORRELATION_DATA, correlation_data);
    NUM(TERN_MQTT_PROP_SESSION_EXPIRY, session_expiry_s);
    STR(TERN_MQTT_PROP_ASSIGNED_CLIENT_ID, assigned_client_id);
    NUM(TERN_MQTT_PROP_SERVER_KEEP_ALIVE, server_keep_alive_s);
    STR(TERN_MQTT_PROP_AUTH_METHOD, auth_method);
    STR(TERN_MQTT_PROP_AUTH_DATA, auth_data);
    NUM(TERN_MQTT_PROP_REQUEST_PROBLEM_INFO, request_problem_info);
    NUM(TERN_MQTT_PROP_WILL_DELAY, will_delay_s);
    NUM(TERN_MQTT_PROP_REQUEST_RESPONSE_INFO, request_response_info);
    STR(TERN_MQTT_PROP_RESPONSE_INFO, response_info);
    STR(TERN_MQTT_PROP_SERVER_REFERENCE, server_reference);
    STR(TERN_MQTT_PROP_REASON_STRING, reason_string);
    NUM(TERN_MQTT_PROP_RECEIVE_MAX, receive_max);
    NUM(TERN_MQTT_PROP_TOPIC_ALIAS_MAX, topic_alias_max);
    NUM(TERN_MQTT_PROP_TOPIC_ALIAS, topic_alias);
    NUM(TERN_MQTT_PROP_MAX_QOS, max_qos);
    NUM(TERN_MQTT_PROP_RETAIN_AVAILABLE, retain_available);
    NUM(TERN_MQTT_PROP_MAX_PACKET_SIZE, max_packet_size);
    NUM(TERN_MQTT_PROP_WILDCARD_SUB_AVAILABLE, wildcard_sub_available);
    NUM(TERN_MQTT_PROP_SUB_ID_AVAILABLE, sub_id_available);
    NUM(TERN_MQTT_PROP_SHARED_SUB_AVAILABLE, shared_sub_available);
#undef NUM
#undef STR
    tern_mqtt_iter ia, ib;
    tern_mqtt_user_prop ua, ub;
    tern_mqtt_props_user_begin(a, &ia);
    tern_mqtt_props_user_begin(b, &ib);
    for (;;) {
        bool ha = tern_mqtt_props_user_next(&ia, &ua);
        bool hb = tern_mqtt_props_user_next(&ib, &ub);
        if (ha != hb)
            return "props.user (count)";
        if (!ha)
            break;
        if (!mqtt_check_str_eq(ua.key, ub.key) || !mqtt_check_str_eq(ua.value, ub.value))
            return "props.user";
    }
    uint32_t sa, sb;
    tern_mqtt_props_sub_id_begin(a, &ia);
    tern_mqtt_props_sub_id_begin(b, &ib);
    for (;;) {
        bool ha = tern_mqtt_props_sub_id_next(&ia, &sa);
        bool hb = tern_mqtt_props_sub_id_next(&ib, &sb);
        if (ha != hb)
            return "props.sub_ids (count)";
        if (!ha)
            break;
        if (sa != sb)
            return "props.sub_ids";
    }
    return NULL;
}

static inline const char *mqtt_check_diff(const tern_mqtt_packet *a, const tern_mqtt_packet *b)
{
    const char *d;
    if (a->type != b->type)
        return "type";
    switch (a->type) {
    case TERN_MQTT_CONNECT: {
        const tern_mqtt_connect *x = &a->u.connect, *y = &b->u.connect;
        if (x->version != y->version || x->clean_start != y->clean_start
            || x->has_will != y->has_will || x->will_qos != y->will_qos
            || x->will_retain != y->will_retain || x->has_username != y->has_username
            || x->has_password != y->has_password || x->keep_alive_s != y->keep_alive_s)
            return "connect header";
        if (!mqtt_check_str_eq(x->client_id, y->client_id))
            return "connect.client_id";
        if ((d = mqtt_check_props(&x->props, &y->props)) != NULL)
            return d;
        if (x->has_will
            && (!mqtt_check_str_eq(x->will_topic, y->will_topic)
                || !mqtt_check_str_eq(x->will_payload, y->will_payload)))
            return "connect.will";
        if (x->has_will && (d = mqtt_check_props(&x->will_props, &y->will_props)) != NULL)
            return d;
        if (x->has_username && !mqtt_check_str_eq(x->username, y->username))
            return "connect.username";
        if (x->has_password && !mqtt_check_str_eq(x->password, y->password))
            return "connect.password";
        return NULL;
    }
    case TERN_MQTT_CONNACK:
        if (a->u.connack.session_present != b->u.connack.session_present
            || a->u.connack.reason != b->u.connack.reason)
            return "connack";
        return mqtt_check_props(&a->u.connack.props, &b->u.connack.props);
    case TERN_MQTT_PUBLISH: {
        const tern_mqtt_publish *x = &a->u.publish, *y = &b->u.publish;
        if (x->dup != y->dup || x->qos != y->qos || x->retain != y->retain)
            return "publish flags";
        if (x->qos && x->packet_id != y->packet_id)
            return "publish.packet_id";
        if (!mqtt_check_str_eq(x->topic, y->topic))
            return "publish.topic";
        if (x->payload_len != y->payload_len
            || (x->payload_len && memcmp(x->payload, y->payload, x->payload_len) != 0))
            return "publish.payload";
        return mqtt_check_props(&x->props, &y->props);
    }
    case TERN_MQTT_PUBACK:
    case TERN_MQTT_PUBREC:
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_PUBCOMP:
        if (a->u.ack.packet_id != b->u.ack.packet_id || a->u.ack.reason != b->u.ack.reason)
            return "ack";
        return mqtt_check_props(&a->u.ack.props, &b->u.ack.props);
    case TERN_MQTT_SUBSCRIBE:
    case TERN_MQTT_UNSUBSCRIBE: {
        if (a->u.subscribe.packet_id != b->u.subscribe.packet_id)
            return "subscribe.packet_id";
        if ((d = mqtt_check_props(&a->u.subscribe.props, &b->u.subscribe.props)) != NULL)
            return d;
        tern_mqtt_iter ia, ib;
        tern_mqtt_subscription sa, sb;
        tern_mqtt_sub_iter_init(&ia, a->type, &a->u.subscribe);
        tern_mqtt_sub_iter_init(&ib, b->type, &b->u.subscribe);
        for (;;) {
            bool ha = tern_mqtt_sub_iter_next(&ia, &sa);
            bool hb = tern_mqtt_sub_iter_next(&ib, &sb);
            if (ha != hb)
                return "subscribe list length";
            if (!ha)
                return NULL;
            if (!mqtt_check_str_eq(sa.filter, sb.filter))
                return "subscribe filter";
            if (a->type == TERN_MQTT_SUBSCRIBE
                && (sa.qos != sb.qos || sa.no_local != sb.no_local
                    || sa.retain_as_published != sb.retain_as_published
                    || sa.retain_handling != sb.retain_handling))
                return "subscribe options";
        }
    }
    case TERN_MQTT_SUBACK:
    case TERN_MQTT_UNSUBACK:
        if (a->u.suback.packet_id != b->u.suback.packet_id
            || a->u.suback.n_reasons != b->u.suback.n_reasons
            || (a->u.suback.n_reasons
                && memcmp(a->u.suback.reasons, b->u.suback.reasons, a->u.suback.n_reasons) != 0))
            return "suback";
        return mqtt_check_props(&a->u.suback.props, &b->u.suback.props);
    case TERN_MQTT_DISCONNECT:
    case TERN_MQTT_AUTH:
        if (a->u.disconnect.reason != b->u.disconnect.reason)
            return "reason";
        return mqtt_check_props(&a->u.disconnect.props, &b->u.disconnect.props);
    default:
        return NULL;
    }
}

/*
 * mqtt_check_roundtrip decodes data with version; if that succeeds, re-encodes the packet,
 * decodes the encoding, compares the fields, encodes again and compares the bytes of both
 * encodings. Returns NULL when the input did not decode or everything agreed, else what differed.
 */
static inline const char *mqtt_check_roundtrip(const uint8_t *data, size_t len, uint8_t version)
{
    tern_mqtt_packet p1, p2, p3;
    size_t used = 0, used2 = 0;
    tern_mqtt_status st;
    int rc = tern_mqtt_decode(data, len, version, &p1, &used, &st);
    if (rc != 0) {
        if (rc != TERN_EPARTIAL && st.reason < 0x80)
            return "failed decode without an error reason code";
        if (rc != TERN_EPARTIAL && st.what == NULL)
            return "failed decode without a description";
        return NULL;
    }
    if (used == 0 || used > len)
        return "consumed out of range";
    uint8_t v = p1.type == TERN_MQTT_CONNECT ? p1.u.connect.version : version;
    const char *diff = NULL;
    tern_buf e1 = TERN_BUF_INIT, e2 = TERN_BUF_INIT;
    if (tern_mqtt_encode(&e1, v, &p1) != 0) {
        diff = "re-encode failed";
        goto out;
    }
    if (tern_mqtt_decode(e1.data, e1.len, v, &p2, &used2, &st) != 0) {
        diff = "re-decode failed";
        goto out;
    }
    if (used2 != e1.len) {
        diff = "re-decode consumed a different length";
        goto out;
    }
    if ((diff = mqtt_check_diff(&p1, &p2)) != NULL)
        goto out;
    if (tern_mqtt_encode(&e2, v, &p2) != 0 || e1.len != e2.len
        || memcmp(e1.data, e2.data, e1.len) != 0) {
        diff = "second encoding differs";
        goto out;
    }
    if (tern_mqtt_decode(e2.data, e2.len, v, &p3, &used2, &st) != 0
        || (diff = mqtt_check_diff(&p2, &p3)) != NULL)
        diff = diff ? diff : "third decode failed";
out:
    tern_buf_free(&e1);
    tern_buf_free(&e2);
    return diff;
}

/* mqtt_check_decode decodes a buffer that must hold exactly one packet; a packet that decodes
 * but consumes fewer bytes than len returns TERN_ERANGE. */
static inline int mqtt_check_decode(
    const uint8_t *data, size_t len, uint8_t version, tern_mqtt_packet *pkt, tern_mqtt_status *st)
{
    size_t used = 0;
    int rc = tern_mqtt_decode(data, len, version, pkt, &used, st);
    if (rc == 0 && used != len)
        return TERN_ERANGE;
    return rc;
}

#endif

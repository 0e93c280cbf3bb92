/*
 * message.c: refcounted broker messages. One allocation holds the header, topic, payload and
 * the 5.0 properties that are forwarded to subscribers (payload format, expiry, content type,
 * response topic, correlation data, user properties), so a message fanned out to thousands of
 * sessions costs one copy.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"

#include <string.h>

static tern_mqtt_str copy_str(uint8_t **cursor, tern_mqtt_str s)
{
    tern_mqtt_str out = { *cursor, s.len };
    if (s.len)
        memcpy(*cursor, s.p, s.len);
    *cursor += s.len;
    return out;
}

broker_msg *broker_msg_new(const tern_mqtt_publish *pub, const char *publisher_id, uint64_t now_ms)
{
    const tern_mqtt_props *pr = &pub->props;
    bool has_ct = TERN_MQTT_HAS_PROP(pr, TERN_MQTT_PROP_CONTENT_TYPE);
    bool has_rt = TERN_MQTT_HAS_PROP(pr, TERN_MQTT_PROP_RESPONSE_TOPIC);
    bool has_cd = TERN_MQTT_HAS_PROP(pr, TERN_MQTT_PROP_CORRELATION_DATA);
    size_t id_len = publisher_id ? strlen(publisher_id) : 0;
    size_t extra = (size_t)pub->topic.len + 1 + pub->payload_len + id_len + 1;
    if (has_ct)
        extra += pr->content_type.len;
    if (has_rt)
        extra += pr->response_topic.len;
    if (has_cd)
        extra += pr->correlation_data.len;
    if (pr->n_user)
        extra += pr->raw_len;
    broker_msg *m = tern_malloc(sizeof *m + extra);
    if (!m)
        return NULL;
    memset(m, 0, sizeof *m);
    m->refs = 1;
    m->qos = pub->qos;
    m->retain = pub->retain;
    m->created_ms = now_ms;
    m->topic_len = pub->topic.len;
    m->payload_len = (uint32_t)pub->payload_len;
    memcpy(m->topic, pub->topic.p, pub->topic.len);
    m->topic[pub->topic.len] = '\0';
    uint8_t *cursor = (uint8_t *)m->topic + pub->topic.len + 1;
    m->payload = cursor;
    if (pub->payload_len)
        memcpy(cursor, pub->payload, pub->payload_len);
    cursor += pub->payload_len;
    char *id = (char *)cursor;
    if (id_len)
        memcpy(id, publisher_id, id_len);
    id[id_len] = '\0';
    m->publisher_id = id;
    cursor += id_len + 1;
    if (TERN_MQTT_HAS_PROP(pr, TERN_MQTT_PROP_PAYLOAD_FORMAT)) {
        m->has_payload_format = true;
        m->payload_format = pr->payload_format;
        m->has_props = true;
    }
    if (TERN_MQTT_HAS_PROP(pr, TERN_MQTT_PROP_MESSAGE_EXPIRY)) {
        m->has_expiry = true;
        m->expire_at_ms = now_ms + (uint64_t)pr->message_expiry_s * 1000u;
        m->has_props = true;
    }
    if (has_ct) {
        m->content_type = copy_str(&cursor, pr->content_type);
        m->has_props = true;
    }
    if (has_rt) {
        m->response_topic = copy_str(&cursor, pr->response_topic);
        m->has_props = true;
    }
    if (has_cd) {
        m->correlation_data = copy_str(&cursor, pr->correlation_data);
        m->has_props = true;
    }
    if (pr->n_user) {
        /* Keep the raw property block: the encoder copies only the user properties from it. */
        memcpy(cursor, pr->raw, pr->raw_len);
        m->user_raw = cursor;
        m->user_raw_len = pr->raw_len;
        m->n_user = pr->n_user;
        m->has_props = true;
    }
    return m;
}

void broker_msg_ref(broker_msg *m)
{
    m->refs++;
}

void broker_msg_unref(broker_msg *m)
{
    if (m && --m->refs == 0)
        tern_free(m);
}

bool broker_msg_expired(const broker_msg *m, uint64_t now_ms)
{
    return m->has_expiry && now_ms >= m->expire_at_ms;
}

/*
 * encode.c: encoding of every MQTT 3.1.1 / 5.0 control packet into a caller's tern_buf.
 *
 * Each packet body is produced by one function run twice: first with a counting writer to learn
 * the remaining length, then with the real buffer. The fixed header's flags come from the packet
 * type (PUBREL, SUBSCRIBE, UNSUBSCRIBE: 0b0010; PUBLISH: dup/qos/retain), Variable Byte Integers
 * are minimal, and 5.0 acks/DISCONNECT/AUTH use the short forms the specification allows.
 */
#include "mqtt/mqtt_int.h"

#include "base/error.h"

#include <string.h>

static bool has_user(const tern_mqtt_props *p)
{
    return p->n_user > 0 && (p->user || p->raw);
}

static bool has_sub_ids(const tern_mqtt_props *p)
{
    return p->n_sub_ids > 0 && (p->sub_ids || p->raw);
}

/* Returns TERN_EINVAL if props carries a property not allowed in context ctx. */
static int check_props(const tern_mqtt_props *p, unsigned ctx)
{
    uint64_t present = p->present;
    if (has_user(p))
        present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_USER);
    if (has_sub_ids(p))
        present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SUBSCRIPTION_ID);
    if (!present)
        return 0; /* the common case (PUBACK, a plain PUBLISH): no table to build */
    return (present & ~tern_mqtt__prop_allowed_mask(ctx)) ? TERN_EINVAL : 0;
}

static bool props_empty(const tern_mqtt_props *p)
{
    return tern_mqtt__props_size(p) == 0;
}

static int check_packet(uint8_t version, const tern_mqtt_packet *pkt)
{
    if (version != TERN_MQTT_V311 && version != TERN_MQTT_V5)
        return TERN_EINVAL;
    bool v5 = version == TERN_MQTT_V5;
    int rc = 0;
    switch (pkt->type) {
    case TERN_MQTT_CONNECT: {
        const tern_mqtt_connect *c = &pkt->u.connect;
        if (c->will_qos > 2 || (!c->has_will && (c->will_qos || c->will_retain)))
            return TERN_EINVAL;
        if (!v5 && c->has_password && !c->has_username)
            return TERN_EINVAL;
        if (v5) {
            rc = check_props(&c->props, TERN_MQTT_CONNECT);
            if (rc == 0 && c->has_will)
                rc = check_props(&c->will_props, TERN_MQTT__CTX_WILL);
        }
        return rc;
    }
    case TERN_MQTT_PUBLISH:
        if (pkt->u.publish.qos > 2 || (pkt->u.publish.qos > 0 && pkt->u.publish.packet_id == 0))
            return TERN_EINVAL;
        return v5 ? check_props(&pkt->u.publish.props, TERN_MQTT_PUBLISH) : 0;
    case TERN_MQTT_SUBSCRIBE:
    case TERN_MQTT_UNSUBSCRIBE: {
        tern_mqtt_iter it;
        tern_mqtt_subscription s;
        size_t n = 0;
        tern_mqtt_sub_iter_init(&it, pkt->type, &pkt->u.subscribe);
        while (tern_mqtt_sub_iter_next(&it, &s)) {
            if (s.qos > 2 || s.retain_handling > 2)
                return TERN_EINVAL;
            n++;
        }
        if (n == 0 || pkt->u.subscribe.packet_id == 0)
            return TERN_EINVAL;
        return v5 ? check_props(&pkt->u.subscribe.props, pkt->type) : 0;
    }
    case TERN_MQTT_CONNACK:
        return v5 ? check_props(&pkt->u.connack.props, pkt->type) : 0;
    case TERN_MQTT_PUBACK:
    case TERN_MQTT_PUBREC:
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_PUBCOMP:
        if (pkt->u.ack.packet_id == 0)
            return TERN_EINVAL;
        return v5 ? check_props(&pkt->u.ack.props, pkt->type) : 0;
    case TERN_MQTT_SUBACK:
    case TERN_MQTT_UNSUBACK:
        if (pkt->u.suback.packet_id == 0)
            return TERN_EINVAL;
        /* One reason code per filter; a 3.1.1 UNSUBACK has none. */
        if (pkt->u.suback.n_reasons == 0 && (v5 || pkt->type == TERN_MQTT_SUBACK))
            return TERN_EINVAL;
        return v5 ? check_props(&pkt->u.suback.props, pkt->type) : 0;
    case TERN_MQTT_PINGREQ:
    case TERN_MQTT_PINGRESP:
        return 0;
    case TERN_MQTT_DISCONNECT:
        return v5 ? check_props(&pkt->u.disconnect.props, pkt->type) : 0;
    case TERN_MQTT_AUTH:
        return v5 ? check_props(&pkt->u.auth.props, pkt->type) : TERN_EINVAL;
    default:
        return TERN_EINVAL;
    }
}

static uint8_t first_byte(const tern_mqtt_packet *pkt)
{
    uint8_t t = (uint8_t)(pkt->type << 4);
    switch (pkt->type) {
    case TERN_MQTT_PUBLISH: {
        const tern_mqtt_publish *p = &pkt->u.publish;
        return (uint8_t)(t | (p->dup ? 0x08 : 0) | (p->qos << 1) | (p->retain ? 0x01 : 0));
    }
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_SUBSCRIBE:
    case TERN_MQTT_UNSUBSCRIBE:
        return (uint8_t)(t | 0x02);
    default:
        return t;
    }
}

static void body_connect(tern_mqtt__w *w, const tern_mqtt_connect *c)
{
    static const tern_mqtt_str name = { (const uint8_t *)"MQTT", 4 };
    bool v5 = c->version == TERN_MQTT_V5;
    tern_mqtt__w_str(w, name);
    tern_mqtt__w_u8(w, c->version);
    uint8_t flags = (uint8_t)((c->clean_start ? 0x02 : 0) | (c->has_will ? 0x04 : 0)
        | (c->will_qos << 3) | (c->will_retain ? 0x20 : 0) | (c->has_password ? 0x40 : 0)
        | (c->has_username ? 0x80 : 0));
    tern_mqtt__w_u8(w, flags);
    tern_mqtt__w_u16(w, c->keep_alive_s);
    if (v5)
        tern_mqtt__props_write(w, &c->props);
    tern_mqtt__w_str(w, c->client_id);
    if (c->has_will) {
        if (v5)
            tern_mqtt__props_write(w, &c->will_props);
        tern_mqtt__w_str(w, c->will_topic);
        tern_mqtt__w_str(w, c->will_payload);
    }
    if (c->has_username)
        tern_mqtt__w_str(w, c->username);
    if (c->has_password)
        tern_mqtt__w_str(w, c->password);
}

/* Writes reason code and properties in the shortest form 5.0 allows. */
static void reason_and_props(tern_mqtt__w *w, uint8_t reason, const tern_mqtt_props *props)
{
    bool empty = props_empty(props);
    if (reason == 0 && empty)
        return;
    tern_mqtt__w_u8(w, reason);
    if (!empty)
        tern_mqtt__props_write(w, props);
}

/* Writes everything after the fixed header except a PUBLISH payload. */
static void body(tern_mqtt__w *w, uint8_t version, const tern_mqtt_packet *pkt)
{
    bool v5 = version == TERN_MQTT_V5;
    switch (pkt->type) {
    case TERN_MQTT_CONNECT:
        body_connect(w, &pkt->u.connect);
        break;
    case TERN_MQTT_CONNACK:
        tern_mqtt__w_u8(w, pkt->u.connack.session_present ? 1 : 0);
        tern_mqtt__w_u8(w, pkt->u.connack.reason);
        if (v5)
            tern_mqtt__props_write(w, &pkt->u.connack.props);
        break;
    case TERN_MQTT_PUBLISH: {
        const tern_mqtt_publish *p = &pkt->u.publish;
        tern_mqtt__w_str(w, p->topic);
        if (p->qos > 0)
            tern_mqtt__w_u16(w, p->packet_id);
        if (v5)
            tern_mqtt__props_write(w, &p->props);
        break;
    }
    case TERN_MQTT_PUBACK:
    case TERN_MQTT_PUBREC:
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_PUBCOMP:
        tern_mqtt__w_u16(w, pkt->u.ack.packet_id);
        if (v5)
            reason_and_props(w, pkt->u.ack.reason, &pkt->u.ack.props);
        break;
    case TERN_MQTT_SUBSCRIBE:
    case TERN_MQTT_UNSUBSCRIBE: {
        const tern_mqtt_subscribe *s = &pkt->u.subscribe;
        tern_mqtt__w_u16(w, s->packet_id);
        if (v5)
            tern_mqtt__props_write(w, &s->props);
        tern_mqtt_iter it;
        tern_mqtt_subscription sub;
        tern_mqtt_sub_iter_init(&it, pkt->type, s);
        while (tern_mqtt_sub_iter_next(&it, &sub)) {
            tern_mqtt__w_str(w, sub.filter);
            if (pkt->type != TERN_MQTT_SUBSCRIBE)
                continue;
            uint8_t opts = sub.qos;
            if (v5)
                opts = (uint8_t)(opts | (sub.no_local ? 0x04 : 0)
                    | (sub.retain_as_published ? 0x08 : 0) | (sub.retain_handling << 4));
            tern_mqtt__w_u8(w, opts);
        }
        break;
    }
    case TERN_MQTT_SUBACK:
    case TERN_MQTT_UNSUBACK: {
        const tern_mqtt_suback *s = &pkt->u.suback;
        tern_mqtt__w_u16(w, s->packet_id);
        if (!v5 && pkt->type == TERN_MQTT_UNSUBACK)
            break;
        if (v5)
            tern_mqtt__props_write(w, &s->props);
        if (s->n_reasons)
            tern_mqtt__w_bytes(w, s->reasons, s->n_reasons);
        break;
    }
    case TERN_MQTT_DISCONNECT:
        if (v5)
            reason_and_props(w, pkt->u.disconnect.reason, &pkt->u.disconnect.props);
        break;
    case TERN_MQTT_AUTH:
        reason_and_props(w, pkt->u.auth.reason, &pkt->u.auth.props);
        break;
    default:
        break;
    }
}

static int encode(tern_buf *out, uint8_t version, const tern_mqtt_packet *pkt, bool with_payload)
{
    if (pkt->type == TERN_MQTT_CONNECT)
        version = pkt->u.connect.version;
    int rc = check_packet(version, pkt);
    if (rc)
        return rc;
    tern_mqtt__w counter = { NULL, 0, 0 };
    body(&counter, version, pkt);
    if (counter.err)
        return counter.err;
    size_t payload_len = pkt->type == TERN_MQTT_PUBLISH ? pkt->u.publish.payload_len : 0;
    if (counter.n > TERN_MQTT_VBI_MAX || payload_len > TERN_MQTT_VBI_MAX - counter.n)
        return TERN_ETOOBIG;
    uint32_t remaining = (uint32_t)(counter.n + payload_len);
    uint8_t header[5];
    header[0] = first_byte(pkt);
    int n_vbi = tern_mqtt_vbi_encode(remaining, header + 1);
    TERN_ASSERT(n_vbi > 0);
    size_t total = 1 + (size_t)n_vbi + counter.n + (with_payload ? payload_len : 0);
    size_t start = out->len;
    rc = tern_buf_reserve(out, total);
    if (rc)
        return rc;
    tern_mqtt__w w = { out, 0, 0 };
    tern_mqtt__w_bytes(&w, header, 1 + (size_t)n_vbi);
    body(&w, version, pkt);
    if (with_payload && payload_len)
        tern_mqtt__w_bytes(&w, pkt->u.publish.payload, payload_len);
    if (w.err) {
        out->len = start;
        return w.err;
    }
    TERN_ASSERT(out->len - start == total);
    return 0;
}

int tern_mqtt_encode(tern_buf *out, uint8_t version, const tern_mqtt_packet *pkt)
{
    return encode(out, version, pkt, true);
}

int tern_mqtt_encode_publish_header(tern_buf *out, uint8_t version, const tern_mqtt_publish *pub)
{
    tern_mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_PUBLISH;
    pkt.u.publish = *pub;
    return encode(out, version, &pkt, false);
}

/*
 * decode.c: framing and decoding of every MQTT 3.1.1 / 5.0 control packet.
 *
 * Wire layout (both versions): fixed header = one byte (type << 4 | flags) and the Remaining
 * Length as a Variable Byte Integer, then Remaining Length bytes of variable header and payload.
 * Each decoder reads inside that frame through a bounded cursor and requires it to be consumed
 * exactly. Reason codes: Malformed Packet (0x81) for bytes that cannot be parsed per the
 * specification (bad flags, lengths, UTF-8, reserved bits, identifiers not allowed), Protocol
 * Error (0x82) for parsed values the protocol forbids (packet id 0, duplicates, zero maxima).
 */
#include "mqtt/mqtt_int.h"

#include "base/error.h"
#include "mqtt/topic.h"

#include <string.h>

int tern_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet_bytes, size_t *packet_len)
{
    if (len < 2)
        return TERN_EPARTIAL;
    uint32_t remaining;
    size_t n;
    int rc = tern_mqtt_vbi_decode(buf + 1, len - 1, &remaining, &n);
    if (rc)
        return rc;
    size_t total = 1 + n + (size_t)remaining;
    if (max_packet_bytes && total > max_packet_bytes)
        return TERN_ETOOBIG;
    if (len < total)
        return TERN_EPARTIAL;
    *packet_len = total;
    return 0;
}

static int malformed(tern_mqtt__r *r, const char *what)
{
    return tern_mqtt__fail(r, TERN_EPROTO, TERN_MQTT_RC_MALFORMED, what);
}

static int proto_err(tern_mqtt__r *r, const char *what)
{
    return tern_mqtt__fail(r, TERN_EPROTO, TERN_MQTT_RC_PROTOCOL_ERROR, what);
}

static size_t left(const tern_mqtt__r *r)
{
    return r->len - r->pos;
}

static int read_packet_id(tern_mqtt__r *r, uint16_t *id)
{
    int rc = tern_mqtt__r_u16(r, id);
    if (rc)
        return rc;
    if (*id == 0)
        return proto_err(r, "packet identifier 0");
    return 0;
}

static int decode_connect(tern_mqtt__r *r, tern_mqtt_connect *c)
{
    tern_mqtt_str name;
    uint8_t level, flags;
    int rc = tern_mqtt__r_bin(r, &name);
    if (rc)
        return rc;
    rc = tern_mqtt__r_u8(r, &level);
    if (rc)
        return rc;
    if (name.len == 6 && memcmp(name.p, "MQIsdp", 6) == 0)
        return tern_mqtt__fail(r, TERN_EVERSION, TERN_MQTT_RC_UNSUPPORTED_VERSION,
            "MQTT 3.1 (MQIsdp) is not supported");
    if (name.len != 4 || memcmp(name.p, "MQTT", 4) != 0)
        return tern_mqtt__fail(
            r, TERN_EPROTO, TERN_MQTT_RC_UNSUPPORTED_VERSION, "protocol name is not MQTT");
    if (level != TERN_MQTT_V311 && level != TERN_MQTT_V5)
        return tern_mqtt__fail(
            r, TERN_EVERSION, TERN_MQTT_RC_UNSUPPORTED_VERSION, "unsupported protocol level");
    c->version = level;
    rc = tern_mqtt__r_u8(r, &flags);
    if (rc)
        return rc;
    if (flags & 0x01)
        return malformed(r, "CONNECT reserved flag is set");
    c->clean_start = (flags & 0x02) != 0;
    c->has_will = (flags & 0x04) != 0;
    c->will_qos = (uint8_t)((flags >> 3) & 0x03);
    c->will_retain = (flags & 0x20) != 0;
    c->has_password = (flags & 0x40) != 0;
    c->has_username = (flags & 0x80) != 0;
    if (c->will_qos == 3)
        return malformed(r, "will QoS 3");
    if (!c->has_will && (c->will_qos != 0 || c->will_retain))
        return malformed(r, "will QoS or retain without will flag");
    if (level == TERN_MQTT_V311 && c->has_password && !c->has_username)
        return malformed(r, "password without user name");
    rc = tern_mqtt__r_u16(r, &c->keep_alive_s);
    if (rc)
        return rc;
    if (level == TERN_MQTT_V5) {
        rc = tern_mqtt__props_decode(r, TERN_MQTT_CONNECT, &c->props);
        if (rc)
            return rc;
    }
    rc = tern_mqtt__r_utf8(r, &c->client_id);
    if (rc)
        return rc;
    if (c->has_will) {
        if (level == TERN_MQTT_V5) {
            rc = tern_mqtt__props_decode(r, TERN_MQTT__CTX_WILL, &c->will_props);
            if (rc)
                return rc;
        }
        rc = tern_mqtt__r_utf8(r, &c->will_topic);
        if (rc)
            return rc;
        if (tern_mqtt_topic_validate_name(c->will_topic.p, c->will_topic.len) != 0)
            return tern_mqtt__fail(r, TERN_EPROTO, TERN_MQTT_RC_TOPIC_NAME_INVALID,
                "will topic is not a valid topic name");
        rc = tern_mqtt__r_bin(r, &c->will_payload);
        if (rc)
            return rc;
    }
    if (c->has_username) {
        rc = tern_mqtt__r_utf8(r, &c->username);
        if (rc)
            return rc;
    }
    if (c->has_password) {
        rc = tern_mqtt__r_bin(r, &c->password);
        if (rc)
            return rc;
    }
    return 0;
}

static int decode_connack(tern_mqtt__r *r, uint8_t version, tern_mqtt_connack *c)
{
    uint8_t flags;
    int rc = tern_mqtt__r_u8(r, &flags);
    if (rc == 0)
        rc = tern_mqtt__r_u8(r, &c->reason);
    if (rc)
        return rc;
    if (flags & 0xFE)
        return malformed(r, "CONNACK reserved flags are set");
    c->session_present = (flags & 0x01) != 0;
    if (!tern_mqtt__reason_allowed(version, TERN_MQTT_CONNACK, c->reason))
        return malformed(r, "CONNACK reason code not allowed");
    if (c->session_present && c->reason != 0)
        return proto_err(r, "session present with a failure reason code");
    if (version == TERN_MQTT_V5)
        return tern_mqtt__props_decode(r, TERN_MQTT_CONNACK, &c->props);
    return 0;
}

static int decode_publish(tern_mqtt__r *r, uint8_t version, uint8_t flags, tern_mqtt_publish *p)
{
    p->dup = (flags & 0x08) != 0;
    p->qos = (uint8_t)((flags >> 1) & 0x03);
    p->retain = (flags & 0x01) != 0;
    int rc = tern_mqtt__r_utf8(r, &p->topic);
    if (rc)
        return rc;
    if (p->qos > 0) {
        rc = read_packet_id(r, &p->packet_id);
        if (rc)
            return rc;
    }
    if (version == TERN_MQTT_V5) {
        rc = tern_mqtt__props_decode(r, TERN_MQTT_PUBLISH, &p->props);
        if (rc)
            return rc;
    }
    if (p->topic.len == 0) {
        if (version != TERN_MQTT_V5 || !TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_TOPIC_ALIAS))
            return proto_err(r, "empty topic name without topic alias");
    } else if (memchr(p->topic.p, '+', p->topic.len) || memchr(p->topic.p, '#', p->topic.len)) {
        return tern_mqtt__fail(
            r, TERN_EPROTO, TERN_MQTT_RC_TOPIC_NAME_INVALID, "wildcard in a topic name");
    }
    p->payload = r->p + r->pos;
    p->payload_len = left(r);
    r->pos = r->len;
    return 0;
}

/* PUBACK, PUBREC, PUBREL, PUBCOMP. */
static int decode_ack(tern_mqtt__r *r, uint8_t version, uint8_t type, tern_mqtt_ack *a)
{
    int rc = read_packet_id(r, &a->packet_id);
    if (rc)
        return rc;
    if (version != TERN_MQTT_V5 || left(r) == 0)
        return 0;
    rc = tern_mqtt__r_u8(r, &a->reason);
    if (rc)
        return rc;
    if (!tern_mqtt__reason_allowed(version, type, a->reason))
        return malformed(r, "reason code not allowed in this packet");
    if (left(r) == 0)
        return 0;
    return tern_mqtt__props_decode(r, type, &a->props);
}

/* SUBSCRIBE and UNSUBSCRIBE. */
static int decode_subscribe(tern_mqtt__r *r, uint8_t version, uint8_t type, tern_mqtt_subscribe *s)
{
    int rc = read_packet_id(r, &s->packet_id);
    if (rc)
        return rc;
    if (version == TERN_MQTT_V5) {
        rc = tern_mqtt__props_decode(r, type, &s->props);
        if (rc)
            return rc;
    }
    s->raw = r->p + r->pos;
    s->raw_len = (uint32_t)left(r);
    if (left(r) == 0)
        return proto_err(r,
            type == TERN_MQTT_SUBSCRIBE ? "SUBSCRIBE without topic filters"
                                        : "UNSUBSCRIBE without topic filters");
    while (left(r) > 0) {
        tern_mqtt_str filter;
        rc = tern_mqtt__r_utf8(r, &filter);
        if (rc)
            return rc;
        if (tern_mqtt_topic_validate_filter(filter.p, filter.len) != 0)
            return malformed(r, "invalid topic filter");
        s->n_subs++;
        if (type != TERN_MQTT_SUBSCRIBE)
            continue;
        uint8_t opts;
        rc = tern_mqtt__r_u8(r, &opts);
        if (rc)
            return rc;
        if ((opts & 0x03) == 3)
            return malformed(r, "subscription QoS 3");
        if (version == TERN_MQTT_V311 && (opts & 0xFC))
            return malformed(r, "subscription options reserved bits set");
        if (version == TERN_MQTT_V5) {
            if (opts & 0xC0)
                return malformed(r, "subscription options reserved bits set");
            if (((opts >> 4) & 0x03) == 3)
                return proto_err(r, "retain handling 3");
            const uint8_t *g, *in;
            size_t gl, il;
            if ((opts & 0x04)
                && tern_mqtt_topic_parse_shared(filter.p, filter.len, &g, &gl, &in, &il) == 1)
                return proto_err(r, "no local on a shared subscription");
        }
    }
    return 0;
}

/* SUBACK and UNSUBACK. */
static int decode_suback(tern_mqtt__r *r, uint8_t version, uint8_t type, tern_mqtt_suback *s)
{
    int rc = read_packet_id(r, &s->packet_id);
    if (rc)
        return rc;
    if (version == TERN_MQTT_V311 && type == TERN_MQTT_UNSUBACK)
        return 0;
    if (version == TERN_MQTT_V5) {
        rc = tern_mqtt__props_decode(r, type, &s->props);
        if (rc)
            return rc;
    }
    if (left(r) == 0)
        return malformed(r, "acknowledgement without reason codes");
    s->reasons = r->p + r->pos;
    s->n_reasons = (uint32_t)left(r);
    for (uint32_t i = 0; i < s->n_reasons; i++)
        if (!tern_mqtt__reason_allowed(version, type, s->reasons[i]))
            return malformed(r, "reason code not allowed in this packet");
    r->pos = r->len;
    return 0;
}

/* DISCONNECT and AUTH (5.0; a 3.1.1 DISCONNECT is empty). */
static int decode_reason_only(
    tern_mqtt__r *r, uint8_t version, uint8_t type, tern_mqtt_reason_only *d)
{
    if (version != TERN_MQTT_V5 || left(r) == 0)
        return 0;
    int rc = tern_mqtt__r_u8(r, &d->reason);
    if (rc)
        return rc;
    if (!tern_mqtt__reason_allowed(version, type, d->reason))
        return malformed(r, "reason code not allowed in this packet");
    if (left(r) == 0)
        return 0;
    return tern_mqtt__props_decode(r, type, &d->props);
}

static size_t body_size(uint8_t type)
{
    switch (type) {
    case TERN_MQTT_CONNECT:
        return sizeof(tern_mqtt_connect);
    case TERN_MQTT_CONNACK:
        return sizeof(tern_mqtt_connack);
    case TERN_MQTT_PUBLISH:
        return sizeof(tern_mqtt_publish);
    case TERN_MQTT_PUBACK:
    case TERN_MQTT_PUBREC:
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_PUBCOMP:
        return sizeof(tern_mqtt_ack);
    case TERN_MQTT_SUBSCRIBE:
    case TERN_MQTT_UNSUBSCRIBE:
        return sizeof(tern_mqtt_subscribe);
    case TERN_MQTT_SUBACK:
    case TERN_MQTT_UNSUBACK:
        return sizeof(tern_mqtt_suback);
    default:
        return sizeof(tern_mqtt_reason_only);
    }
}

/* The fixed header flags each type requires (PUBLISH is checked apart). */
static int check_flags(tern_mqtt__r *r, uint8_t version, uint8_t type, uint8_t flags)
{
    if (type == 0 || (type == TERN_MQTT_AUTH && version != TERN_MQTT_V5))
        return malformed(r, "reserved packet type");
    if (type == TERN_MQTT_PUBLISH) {
        uint8_t qos = (uint8_t)((flags >> 1) & 0x03);
        if (qos == 3)
            return malformed(r, "PUBLISH QoS 3");
        if (qos == 0 && (flags & 0x08))
            return malformed(r, "PUBLISH DUP set with QoS 0");
        return 0;
    }
    uint8_t want
        = (type == TERN_MQTT_PUBREL || type == TERN_MQTT_SUBSCRIBE || type == TERN_MQTT_UNSUBSCRIBE)
        ? 0x02
        : 0x00;
    if (flags != want)
        return malformed(r, "wrong fixed header flags for this packet type");
    return 0;
}

int tern_mqtt_decode(const uint8_t *buf, size_t len, uint8_t version, tern_mqtt_packet *pkt,
    size_t *consumed, tern_mqtt_status *st)
{
    TERN_ASSERT(version == 0 || version == TERN_MQTT_V311 || version == TERN_MQTT_V5);
    if (st) {
        st->reason = 0;
        st->what = NULL;
    }
    size_t packet_len;
    tern_mqtt__r r = { buf, len, 0, st };
    int rc = tern_mqtt_frame(buf, len, 0, &packet_len);
    if (rc == TERN_EPARTIAL)
        return rc;
    if (rc)
        return malformed(&r, "remaining length longer than 4 bytes");
    uint32_t remaining;
    size_t n_len;
    rc = tern_mqtt_vbi_decode(buf + 1, len - 1, &remaining, &n_len);
    TERN_ASSERT(rc == 0);
    r.len = packet_len;
    r.pos = 1 + n_len;

    uint8_t type = (uint8_t)(buf[0] >> 4);
    uint8_t flags = (uint8_t)(buf[0] & 0x0F);
    /* Clear only the union member this type uses: the CONNECT one is several times a PUBLISH. */
    memset(&pkt->u, 0, body_size(type));
    pkt->type = type;
    pkt->flags = flags;
    if (type == TERN_MQTT_CONNECT) {
        rc = check_flags(&r, TERN_MQTT_V5, type, flags);
        if (rc == 0)
            rc = decode_connect(&r, &pkt->u.connect);
        version = pkt->u.connect.version;
    } else if (version == 0) {
        return proto_err(&r, "first packet is not CONNECT");
    } else {
        rc = check_flags(&r, version, type, flags);
    }
    if (rc)
        return rc;
    switch (type) {
    case TERN_MQTT_CONNECT:
        break;
    case TERN_MQTT_CONNACK:
        rc = decode_connack(&r, version, &pkt->u.connack);
        break;
    case TERN_MQTT_PUBLISH:
        rc = decode_publish(&r, version, flags, &pkt->u.publish);
        break;
    case TERN_MQTT_PUBACK:
    case TERN_MQTT_PUBREC:
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_PUBCOMP:
        rc = decode_ack(&r, version, type, &pkt->u.ack);
        break;
    case TERN_MQTT_SUBSCRIBE:
    case TERN_MQTT_UNSUBSCRIBE:
        rc = decode_subscribe(&r, version, type, &pkt->u.subscribe);
        break;
    case TERN_MQTT_SUBACK:
    case TERN_MQTT_UNSUBACK:
        rc = decode_suback(&r, version, type, &pkt->u.suback);
        break;
    case TERN_MQTT_PINGREQ:
    case TERN_MQTT_PINGRESP:
        break;
    case TERN_MQTT_DISCONNECT:
        rc = decode_reason_only(&r, version, type, &pkt->u.disconnect);
        break;
    case TERN_MQTT_AUTH:
        rc = decode_reason_only(&r, version, type, &pkt->u.auth);
        break;
    default:
        rc = malformed(&r, "reserved packet type");
        break;
    }
    if (rc)
        return rc;
    if (r.pos != r.len)
        return malformed(&r, "bytes left over after the packet's fields");
    *consumed = packet_len;
    return 0;
}

/* ---- iteration over SUBSCRIBE / UNSUBSCRIBE lists ----------------------------------------- */

enum { IT_RAW_SUB = 16, IT_RAW_UNSUB, IT_ARR };

void tern_mqtt_sub_iter_init(tern_mqtt_iter *it, uint8_t type, const tern_mqtt_subscribe *s)
{
    memset(it, 0, sizeof *it);
    if (s->subs) {
        it->kind = IT_ARR;
        it->arr = s->subs;
        it->n = s->n_subs;
    } else if (s->raw) {
        it->kind = type == TERN_MQTT_SUBSCRIBE ? IT_RAW_SUB : IT_RAW_UNSUB;
        it->p = s->raw;
        it->end = s->raw + s->raw_len;
    }
}

bool tern_mqtt_sub_iter_next(tern_mqtt_iter *it, tern_mqtt_subscription *sub)
{
    if (it->kind == IT_ARR) {
        if (it->idx >= it->n)
            return false;
        *sub = ((const tern_mqtt_subscription *)it->arr)[it->idx++];
        return true;
    }
    if (it->kind != IT_RAW_SUB && it->kind != IT_RAW_UNSUB)
        return false;
    tern_mqtt__r r = { it->p, (size_t)(it->end - it->p), 0, NULL };
    tern_mqtt_subscription s;
    memset(&s, 0, sizeof s);
    uint8_t opts = 0;
    if (r.len == 0 || tern_mqtt__r_bin(&r, &s.filter) != 0
        || (it->kind == IT_RAW_SUB && tern_mqtt__r_u8(&r, &opts) != 0)) {
        it->p = it->end;
        return false;
    }
    s.qos = opts & 0x03;
    s.no_local = (opts & 0x04) != 0;
    s.retain_as_published = (opts & 0x08) != 0;
    s.retain_handling = (uint8_t)((opts >> 4) & 0x03);
    it->p += r.pos;
    *sub = s;
    return true;
}

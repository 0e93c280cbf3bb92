/*
 * props.c: MQTT 5 properties: the identifier table, decoding with every format check, encoding,
 * and iteration over user properties and subscription identifiers.
 *
 * Wire layout (MQTT 5.0 section 2.2.2): Property Length (VBI) then that many bytes of
 * { identifier (VBI), value } pairs. Checks on decode: identifier known and allowed in this
 * packet (else Malformed Packet 0x81), value of the right type and inside the packet (0x81),
 * strings valid UTF-8 (0x81), no duplicate but User Property and PUBLISH's Subscription
 * Identifier (Protocol Error 0x82), value ranges (0x82): byte flags 0/1, Receive Maximum,
 * Maximum Packet Size, Topic Alias and Subscription Identifier non-zero, Response Topic a valid
 * topic name, Authentication Data only with an Authentication Method.
 */
#include "mqtt/mqtt_int.h"

#include "base/error.h"
#include "mqtt/topic.h"

#include <string.h>

#define C(t) (UINT32_C(1) << (t))
#define WILL C(TERN_MQTT__CTX_WILL)
#define ACKS                                                                                       \
    (C(TERN_MQTT_PUBACK) | C(TERN_MQTT_PUBREC) | C(TERN_MQTT_PUBREL) | C(TERN_MQTT_PUBCOMP))

static const struct {
    uint8_t type;
    uint32_t ctx;
} prop_table[TERN_MQTT__PROP_MAX_ID + 1] = {
    [TERN_MQTT_PROP_PAYLOAD_FORMAT] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_PUBLISH) | WILL },
    [TERN_MQTT_PROP_MESSAGE_EXPIRY] = { TERN_MQTT__T_U32, C(TERN_MQTT_PUBLISH) | WILL },
    [TERN_MQTT_PROP_CONTENT_TYPE] = { TERN_MQTT__T_UTF8, C(TERN_MQTT_PUBLISH) | WILL },
    [TERN_MQTT_PROP_RESPONSE_TOPIC] = { TERN_MQTT__T_UTF8, C(TERN_MQTT_PUBLISH) | WILL },
    [TERN_MQTT_PROP_CORRELATION_DATA] = { TERN_MQTT__T_BIN, C(TERN_MQTT_PUBLISH) | WILL },
    [TERN_MQTT_PROP_SUBSCRIPTION_ID]
    = { TERN_MQTT__T_VBI, C(TERN_MQTT_PUBLISH) | C(TERN_MQTT_SUBSCRIBE) },
    [TERN_MQTT_PROP_SESSION_EXPIRY]
    = { TERN_MQTT__T_U32, C(TERN_MQTT_CONNECT) | C(TERN_MQTT_CONNACK) | C(TERN_MQTT_DISCONNECT) },
    [TERN_MQTT_PROP_ASSIGNED_CLIENT_ID] = { TERN_MQTT__T_UTF8, C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_SERVER_KEEP_ALIVE] = { TERN_MQTT__T_U16, C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_AUTH_METHOD]
    = { TERN_MQTT__T_UTF8, C(TERN_MQTT_CONNECT) | C(TERN_MQTT_CONNACK) | C(TERN_MQTT_AUTH) },
    [TERN_MQTT_PROP_AUTH_DATA]
    = { TERN_MQTT__T_BIN, C(TERN_MQTT_CONNECT) | C(TERN_MQTT_CONNACK) | C(TERN_MQTT_AUTH) },
    [TERN_MQTT_PROP_REQUEST_PROBLEM_INFO] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_CONNECT) },
    [TERN_MQTT_PROP_WILL_DELAY] = { TERN_MQTT__T_U32, WILL },
    [TERN_MQTT_PROP_REQUEST_RESPONSE_INFO] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_CONNECT) },
    [TERN_MQTT_PROP_RESPONSE_INFO] = { TERN_MQTT__T_UTF8, C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_SERVER_REFERENCE]
    = { TERN_MQTT__T_UTF8, C(TERN_MQTT_CONNACK) | C(TERN_MQTT_DISCONNECT) },
    [TERN_MQTT_PROP_REASON_STRING] = { TERN_MQTT__T_UTF8,
        C(TERN_MQTT_CONNACK) | ACKS | C(TERN_MQTT_SUBACK) | C(TERN_MQTT_UNSUBACK)
            | C(TERN_MQTT_DISCONNECT) | C(TERN_MQTT_AUTH) },
    [TERN_MQTT_PROP_RECEIVE_MAX]
    = { TERN_MQTT__T_U16, C(TERN_MQTT_CONNECT) | C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_TOPIC_ALIAS_MAX]
    = { TERN_MQTT__T_U16, C(TERN_MQTT_CONNECT) | C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_TOPIC_ALIAS] = { TERN_MQTT__T_U16, C(TERN_MQTT_PUBLISH) },
    [TERN_MQTT_PROP_MAX_QOS] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_RETAIN_AVAILABLE] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_USER] = { TERN_MQTT__T_PAIR,
        C(TERN_MQTT_CONNECT) | C(TERN_MQTT_CONNACK) | C(TERN_MQTT_PUBLISH) | WILL | ACKS
            | C(TERN_MQTT_SUBSCRIBE) | C(TERN_MQTT_SUBACK) | C(TERN_MQTT_UNSUBSCRIBE)
            | C(TERN_MQTT_UNSUBACK) | C(TERN_MQTT_DISCONNECT) | C(TERN_MQTT_AUTH) },
    [TERN_MQTT_PROP_MAX_PACKET_SIZE]
    = { TERN_MQTT__T_U32, C(TERN_MQTT_CONNECT) | C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_WILDCARD_SUB_AVAILABLE] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_SUB_ID_AVAILABLE] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_CONNACK) },
    [TERN_MQTT_PROP_SHARED_SUB_AVAILABLE] = { TERN_MQTT__T_BYTE, C(TERN_MQTT_CONNACK) },
};

uint8_t tern_mqtt__prop_type(uint32_t id)
{
    return id <= TERN_MQTT__PROP_MAX_ID ? prop_table[id].type : TERN_MQTT__T_NONE;
}

uint64_t tern_mqtt__prop_allowed_mask(unsigned ctx)
{
    uint64_t mask = 0;
    for (unsigned id = 1; id <= TERN_MQTT__PROP_MAX_ID; id++)
        if (prop_table[id].type != TERN_MQTT__T_NONE && (prop_table[id].ctx & C(ctx)))
            mask |= TERN_MQTT_PROP_BIT(id);
    return mask;
}

static int proto_err(tern_mqtt__r *r, const char *what)
{
    return tern_mqtt__fail(r, TERN_EPROTO, TERN_MQTT_RC_PROTOCOL_ERROR, what);
}

static int malformed(tern_mqtt__r *r, const char *what)
{
    return tern_mqtt__fail(r, TERN_EPROTO, TERN_MQTT_RC_MALFORMED, what);
}

/* Reads one property value of the given id into props. */
static int decode_one(tern_mqtt__r *r, uint32_t id, tern_mqtt_props *props)
{
    uint8_t b = 0;
    uint16_t u16 = 0;
    uint32_t u32 = 0;
    tern_mqtt_str s = { NULL, 0 };
    tern_mqtt_str s2 = { NULL, 0 };
    int rc = 0;
    switch (prop_table[id].type) {
    case TERN_MQTT__T_BYTE:
        rc = tern_mqtt__r_u8(r, &b);
        if (rc == 0 && b > 1)
            return proto_err(r, "property byte value is not 0 or 1");
        break;
    case TERN_MQTT__T_U16:
        rc = tern_mqtt__r_u16(r, &u16);
        break;
    case TERN_MQTT__T_U32:
        rc = tern_mqtt__r_u32(r, &u32);
        break;
    case TERN_MQTT__T_VBI:
        rc = tern_mqtt__r_vbi(r, &u32);
        break;
    case TERN_MQTT__T_UTF8:
        rc = tern_mqtt__r_utf8(r, &s);
        break;
    case TERN_MQTT__T_BIN:
        rc = tern_mqtt__r_bin(r, &s);
        break;
    case TERN_MQTT__T_PAIR:
        rc = tern_mqtt__r_utf8(r, &s);
        if (rc == 0)
            rc = tern_mqtt__r_utf8(r, &s2);
        break;
    default:
        return malformed(r, "unknown property identifier");
    }
    if (rc)
        return rc;
    switch (id) {
    case TERN_MQTT_PROP_PAYLOAD_FORMAT:
        props->payload_format = b;
        break;
    case TERN_MQTT_PROP_MESSAGE_EXPIRY:
        props->message_expiry_s = u32;
        break;
    case TERN_MQTT_PROP_CONTENT_TYPE:
        props->content_type = s;
        break;
    case TERN_MQTT_PROP_RESPONSE_TOPIC:
        if (tern_mqtt_topic_validate_name(s.p, s.len) != 0)
            return proto_err(r, "response topic is not a valid topic name");
        props->response_topic = s;
        break;
    case TERN_MQTT_PROP_CORRELATION_DATA:
        props->correlation_data = s;
        break;
    case TERN_MQTT_PROP_SUBSCRIPTION_ID:
        if (u32 == 0)
            return proto_err(r, "subscription identifier 0");
        if (props->n_sub_ids == 0)
            props->subscription_id = u32;
        props->n_sub_ids++;
        break;
    case TERN_MQTT_PROP_SESSION_EXPIRY:
        props->session_expiry_s = u32;
        break;
    case TERN_MQTT_PROP_ASSIGNED_CLIENT_ID:
        props->assigned_client_id = s;
        break;
    case TERN_MQTT_PROP_SERVER_KEEP_ALIVE:
        props->server_keep_alive_s = u16;
        break;
    case TERN_MQTT_PROP_AUTH_METHOD:
        props->auth_method = s;
        break;
    case TERN_MQTT_PROP_AUTH_DATA:
        props->auth_data = s;
        break;
    case TERN_MQTT_PROP_REQUEST_PROBLEM_INFO:
        props->request_problem_info = b;
        break;
    case TERN_MQTT_PROP_WILL_DELAY:
        props->will_delay_s = u32;
        break;
    case TERN_MQTT_PROP_REQUEST_RESPONSE_INFO:
        props->request_response_info = b;
        break;
    case TERN_MQTT_PROP_RESPONSE_INFO:
        props->response_info = s;
        break;
    case TERN_MQTT_PROP_SERVER_REFERENCE:
        props->server_reference = s;
        break;
    case TERN_MQTT_PROP_REASON_STRING:
        props->reason_string = s;
        break;
    case TERN_MQTT_PROP_RECEIVE_MAX:
        if (u16 == 0)
            return proto_err(r, "receive maximum 0");
        props->receive_max = u16;
        break;
    case TERN_MQTT_PROP_TOPIC_ALIAS_MAX:
        props->topic_alias_max = u16;
        break;
    case TERN_MQTT_PROP_TOPIC_ALIAS:
        if (u16 == 0)
            return proto_err(r, "topic alias 0");
        props->topic_alias = u16;
        break;
    case TERN_MQTT_PROP_MAX_QOS:
        props->max_qos = b;
        break;
    case TERN_MQTT_PROP_RETAIN_AVAILABLE:
        props->retain_available = b;
        break;
    case TERN_MQTT_PROP_USER:
        props->n_user++;
        break;
    case TERN_MQTT_PROP_MAX_PACKET_SIZE:
        if (u32 == 0)
            return proto_err(r, "maximum packet size 0");
        props->max_packet_size = u32;
        break;
    case TERN_MQTT_PROP_WILDCARD_SUB_AVAILABLE:
        props->wildcard_sub_available = b;
        break;
    case TERN_MQTT_PROP_SUB_ID_AVAILABLE:
        props->sub_id_available = b;
        break;
    case TERN_MQTT_PROP_SHARED_SUB_AVAILABLE:
        props->shared_sub_available = b;
        break;
    default:
        return malformed(r, "unknown property identifier");
    }
    return 0;
}

int tern_mqtt__props_decode(tern_mqtt__r *r, unsigned ctx, tern_mqtt_props *props)
{
    memset(props, 0, sizeof *props);
    uint32_t plen;
    int rc = tern_mqtt__r_vbi(r, &plen);
    if (rc)
        return rc;
    if (plen > r->len - r->pos)
        return malformed(r, "property length runs past the packet");
    /* A sub-cursor bounded by the property length. */
    tern_mqtt__r pr = { r->p, r->pos + plen, r->pos, r->st };
    props->raw = r->p + r->pos;
    props->raw_len = plen;
    while (pr.pos < pr.len) {
        uint32_t id;
        rc = tern_mqtt__r_vbi(&pr, &id);
        if (rc)
            return rc;
        if (tern_mqtt__prop_type(id) == TERN_MQTT__T_NONE)
            return malformed(&pr, "unknown property identifier");
        if ((prop_table[id].ctx & C(ctx)) == 0)
            return malformed(&pr, "property not allowed in this packet");
        uint64_t bit = TERN_MQTT_PROP_BIT(id);
        bool repeatable = id == TERN_MQTT_PROP_USER
            || (id == TERN_MQTT_PROP_SUBSCRIPTION_ID && ctx == TERN_MQTT_PUBLISH);
        if ((props->present & bit) && !repeatable)
            return proto_err(&pr, "property included more than once");
        rc = decode_one(&pr, id, props);
        if (rc)
            return rc;
        props->present |= bit;
    }
    if (TERN_MQTT_HAS_PROP(props, TERN_MQTT_PROP_AUTH_DATA)
        && !TERN_MQTT_HAS_PROP(props, TERN_MQTT_PROP_AUTH_METHOD))
        return proto_err(r, "authentication data without authentication method");
    r->pos = pr.pos;
    return 0;
}

/* ---- iteration over raw property bytes ---------------------------------------------------- */

enum {
    IT_NONE = 0,
    IT_RAW_USER,
    IT_ARR_USER,
    IT_RAW_SUBID,
    IT_ARR_SUBID,
    IT_ONE_SUBID,
};

/* Steps over the next raw property, returning its identifier and, for the two kinds iterated,
 * its value; returns false at the end or on bytes that do not parse (never read out of bounds). */
static bool raw_next(
    tern_mqtt_iter *it, uint32_t *id_out, tern_mqtt_user_prop *up, uint32_t *vbi_out)
{
    if (it->p >= it->end)
        return false;
    tern_mqtt__r r = { it->p, (size_t)(it->end - it->p), 0, NULL };
    uint32_t id, v32;
    uint8_t b;
    uint16_t v16;
    tern_mqtt_str s, s2;
    if (tern_mqtt__r_vbi(&r, &id) != 0)
        goto bad;
    int rc;
    switch (tern_mqtt__prop_type(id)) {
    case TERN_MQTT__T_BYTE:
        rc = tern_mqtt__r_u8(&r, &b);
        break;
    case TERN_MQTT__T_U16:
        rc = tern_mqtt__r_u16(&r, &v16);
        break;
    case TERN_MQTT__T_U32:
        rc = tern_mqtt__r_u32(&r, &v32);
        break;
    case TERN_MQTT__T_VBI:
        rc = tern_mqtt__r_vbi(&r, &v32);
        if (rc == 0 && vbi_out)
            *vbi_out = v32;
        break;
    case TERN_MQTT__T_UTF8:
    case TERN_MQTT__T_BIN:
        rc = tern_mqtt__r_bin(&r, &s);
        break;
    case TERN_MQTT__T_PAIR:
        rc = tern_mqtt__r_bin(&r, &s);
        if (rc == 0)
            rc = tern_mqtt__r_bin(&r, &s2);
        if (rc == 0 && up) {
            up->key = s;
            up->value = s2;
        }
        break;
    default:
        goto bad;
    }
    if (rc)
        goto bad;
    it->p += r.pos;
    *id_out = id;
    return true;
bad:
    it->p = it->end;
    return false;
}

void tern_mqtt_props_drop_optional(tern_mqtt_props *props)
{
    props->present &= ~TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REASON_STRING);
    props->user = NULL;
    props->n_user = 0;
    /* The encoder would copy user properties from a decoded packet's bytes; the packets this
     * is for keep nothing else there. */
    props->raw = NULL;
    props->raw_len = 0;
}

void tern_mqtt_props_user_begin(const tern_mqtt_props *props, tern_mqtt_iter *it)
{
    memset(it, 0, sizeof *it);
    if (props->user) {
        it->kind = IT_ARR_USER;
        it->arr = props->user;
        it->n = props->n_user;
    } else if (props->raw && props->n_user) {
        it->kind = IT_RAW_USER;
        it->p = props->raw;
        it->end = props->raw + props->raw_len;
    }
}

bool tern_mqtt_props_user_next(tern_mqtt_iter *it, tern_mqtt_user_prop *up)
{
    if (it->kind == IT_ARR_USER) {
        if (it->idx >= it->n)
            return false;
        *up = ((const tern_mqtt_user_prop *)it->arr)[it->idx++];
        return true;
    }
    if (it->kind != IT_RAW_USER)
        return false;
    uint32_t id;
    tern_mqtt_user_prop v;
    while (raw_next(it, &id, &v, NULL)) {
        if (id == TERN_MQTT_PROP_USER) {
            *up = v;
            return true;
        }
    }
    return false;
}

void tern_mqtt_props_sub_id_begin(const tern_mqtt_props *props, tern_mqtt_iter *it)
{
    memset(it, 0, sizeof *it);
    if (props->sub_ids) {
        it->kind = IT_ARR_SUBID;
        it->arr = props->sub_ids;
        it->n = props->n_sub_ids;
    } else if (props->raw && props->n_sub_ids) {
        it->kind = IT_RAW_SUBID;
        it->p = props->raw;
        it->end = props->raw + props->raw_len;
    } else if (TERN_MQTT_HAS_PROP(props, TERN_MQTT_PROP_SUBSCRIPTION_ID)) {
        it->kind = IT_ONE_SUBID;
        it->n = props->subscription_id;
    }
}

bool tern_mqtt_props_sub_id_next(tern_mqtt_iter *it, uint32_t *sub_id)
{
    switch (it->kind) {
    case IT_ARR_SUBID:
        if (it->idx >= it->n)
            return false;
        *sub_id = ((const uint32_t *)it->arr)[it->idx++];
        return true;
    case IT_ONE_SUBID:
        if (it->idx++ > 0)
            return false;
        *sub_id = it->n;
        return true;
    case IT_RAW_SUBID: {
        uint32_t id, v = 0;
        while (raw_next(it, &id, NULL, &v)) {
            if (id == TERN_MQTT_PROP_SUBSCRIPTION_ID) {
                *sub_id = v;
                return true;
            }
        }
        return false;
    }
    default:
        return false;
    }
}

/* ---- encoding ----------------------------------------------------------------------------- */

/*
 * Writes the properties in increasing id order, then the subscription identifiers and user
 * properties (the lists). Only the bits set in present are visited: most packets on the hot
 * path (PUBACK, a PUBLISH without properties) have none, and this runs two or three times per
 * encoded packet (size, then write).
 */
static void write_body(tern_mqtt__w *w, const tern_mqtt_props *props)
{
    uint64_t bits = props->present
        & ~(TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_USER)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SUBSCRIPTION_ID)
            | UINT64_C(1)); /* id 0 is not a property */
    for (; bits; bits &= bits - 1) {
        uint32_t id = (uint32_t)__builtin_ctzll(bits);
        if (id > TERN_MQTT__PROP_MAX_ID || prop_table[id].type == TERN_MQTT__T_NONE)
            continue;
        tern_mqtt__w_vbi(w, id);
        switch (id) {
        case TERN_MQTT_PROP_PAYLOAD_FORMAT:
            tern_mqtt__w_u8(w, props->payload_format);
            break;
        case TERN_MQTT_PROP_MESSAGE_EXPIRY:
            tern_mqtt__w_u32(w, props->message_expiry_s);
            break;
        case TERN_MQTT_PROP_CONTENT_TYPE:
            tern_mqtt__w_str(w, props->content_type);
            break;
        case TERN_MQTT_PROP_RESPONSE_TOPIC:
            tern_mqtt__w_str(w, props->response_topic);
            break;
        case TERN_MQTT_PROP_CORRELATION_DATA:
            tern_mqtt__w_str(w, props->correlation_data);
            break;
        case TERN_MQTT_PROP_SESSION_EXPIRY:
            tern_mqtt__w_u32(w, props->session_expiry_s);
            break;
        case TERN_MQTT_PROP_ASSIGNED_CLIENT_ID:
            tern_mqtt__w_str(w, props->assigned_client_id);
            break;
        case TERN_MQTT_PROP_SERVER_KEEP_ALIVE:
            tern_mqtt__w_u16(w, props->server_keep_alive_s);
            break;
        case TERN_MQTT_PROP_AUTH_METHOD:
            tern_mqtt__w_str(w, props->auth_method);
            break;
        case TERN_MQTT_PROP_AUTH_DATA:
            tern_mqtt__w_str(w, props->auth_data);
            break;
        case TERN_MQTT_PROP_REQUEST_PROBLEM_INFO:
            tern_mqtt__w_u8(w, props->request_problem_info);
            break;
        case TERN_MQTT_PROP_WILL_DELAY:
            tern_mqtt__w_u32(w, props->will_delay_s);
            break;
        case TERN_MQTT_PROP_REQUEST_RESPONSE_INFO:
            tern_mqtt__w_u8(w, props->request_response_info);
            break;
        case TERN_MQTT_PROP_RESPONSE_INFO:
            tern_mqtt__w_str(w, props->response_info);
            break;
        case TERN_MQTT_PROP_SERVER_REFERENCE:
            tern_mqtt__w_str(w, props->server_reference);
            break;
        case TERN_MQTT_PROP_REASON_STRING:
            tern_mqtt__w_str(w, props->reason_string);
            break;
        case TERN_MQTT_PROP_RECEIVE_MAX:
            tern_mqtt__w_u16(w, props->receive_max);
            break;
        case TERN_MQTT_PROP_TOPIC_ALIAS_MAX:
            tern_mqtt__w_u16(w, props->topic_alias_max);
            break;
        case TERN_MQTT_PROP_TOPIC_ALIAS:
            tern_mqtt__w_u16(w, props->topic_alias);
            break;
        case TERN_MQTT_PROP_MAX_QOS:
            tern_mqtt__w_u8(w, props->max_qos);
            break;
        case TERN_MQTT_PROP_RETAIN_AVAILABLE:
            tern_mqtt__w_u8(w, props->retain_available);
            break;
        case TERN_MQTT_PROP_MAX_PACKET_SIZE:
            tern_mqtt__w_u32(w, props->max_packet_size);
            break;
        case TERN_MQTT_PROP_WILDCARD_SUB_AVAILABLE:
            tern_mqtt__w_u8(w, props->wildcard_sub_available);
            break;
        case TERN_MQTT_PROP_SUB_ID_AVAILABLE:
            tern_mqtt__w_u8(w, props->sub_id_available);
            break;
        case TERN_MQTT_PROP_SHARED_SUB_AVAILABLE:
            tern_mqtt__w_u8(w, props->shared_sub_available);
            break;
        default:
            break;
        }
    }
    tern_mqtt_iter it;
    uint32_t sub_id;
    tern_mqtt_props_sub_id_begin(props, &it);
    while (tern_mqtt_props_sub_id_next(&it, &sub_id)) {
        tern_mqtt__w_vbi(w, TERN_MQTT_PROP_SUBSCRIPTION_ID);
        tern_mqtt__w_vbi(w, sub_id);
    }
    tern_mqtt_user_prop up;
    tern_mqtt_props_user_begin(props, &it);
    while (tern_mqtt_props_user_next(&it, &up)) {
        tern_mqtt__w_vbi(w, TERN_MQTT_PROP_USER);
        tern_mqtt__w_str(w, up.key);
        tern_mqtt__w_str(w, up.value);
    }
}

size_t tern_mqtt__props_size(const tern_mqtt_props *props)
{
    tern_mqtt__w counter = { NULL, 0, 0 };
    write_body(&counter, props);
    return counter.n;
}

void tern_mqtt__props_write(tern_mqtt__w *w, const tern_mqtt_props *props)
{
    size_t n = tern_mqtt__props_size(props);
    if (n > TERN_MQTT_VBI_MAX) {
        if (!w->err)
            w->err = TERN_ETOOBIG;
        return;
    }
    tern_mqtt__w_vbi(w, (uint32_t)n);
    write_body(w, props);
}

/*
 * mqtt.h: the MQTT 3.1.1 and 5.0 packet codec: framing, decoding, encoding, reason codes.
 *
 * A pure library: no I/O, no event loop, no global state, no allocation on decode. Every
 * function is reentrant; distinct objects may be used from distinct threads.
 *
 * Input bytes are untrusted. tern_mqtt_decode checks every MUST of the OASIS specifications
 * that concerns the format of one packet (fixed header flags, lengths, UTF-8, topic syntax,
 * property identifiers/types/duplicates/values, reserved bits, packet identifiers) and reports
 * the MQTT 5 reason code a server or client should send. Rules that need connection state (topic
 * alias ranges, receive maximum, which side may send which packet type, a client's PUBLISH
 * carrying a Subscription Identifier) belong to the caller.
 *
 * Decoded packets borrow: every tern_mqtt_str, payload and raw list in a decoded packet points
 * into the caller's input buffer and is valid only while that buffer is unchanged. Nothing is
 * copied and nothing needs freeing. See docs/mqtt-codec.md.
 *
 * Encoders append one whole packet to a caller's tern_buf (src/base/buf.h) and leave the buffer
 * unchanged on failure. They compute the remaining length (properties included) and always write
 * minimal Variable Byte Integers.
 */
#ifndef TERN_MQTT_MQTT_H
#define TERN_MQTT_MQTT_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Protocol levels as carried in CONNECT. 0 means "not negotiated yet" to the decoder. */
#define TERN_MQTT_V311 4
#define TERN_MQTT_V5 5

#define TERN_MQTT_VBI_MAX 268435455u                /* largest Variable Byte Integer */
#define TERN_MQTT_MAX_PACKET (1u + 4u + 268435455u) /* largest possible packet in bytes */

/* Control packet types (fixed header bits 7..4). */
enum {
    TERN_MQTT_CONNECT = 1,
    TERN_MQTT_CONNACK = 2,
    TERN_MQTT_PUBLISH = 3,
    TERN_MQTT_PUBACK = 4,
    TERN_MQTT_PUBREC = 5,
    TERN_MQTT_PUBREL = 6,
    TERN_MQTT_PUBCOMP = 7,
    TERN_MQTT_SUBSCRIBE = 8,
    TERN_MQTT_SUBACK = 9,
    TERN_MQTT_UNSUBSCRIBE = 10,
    TERN_MQTT_UNSUBACK = 11,
    TERN_MQTT_PINGREQ = 12,
    TERN_MQTT_PINGRESP = 13,
    TERN_MQTT_DISCONNECT = 14,
    TERN_MQTT_AUTH = 15, /* 5.0 only */
};

/* MQTT 5 property identifiers. */
enum {
    TERN_MQTT_PROP_PAYLOAD_FORMAT = 0x01,
    TERN_MQTT_PROP_MESSAGE_EXPIRY = 0x02,
    TERN_MQTT_PROP_CONTENT_TYPE = 0x03,
    TERN_MQTT_PROP_RESPONSE_TOPIC = 0x08,
    TERN_MQTT_PROP_CORRELATION_DATA = 0x09,
    TERN_MQTT_PROP_SUBSCRIPTION_ID = 0x0B,
    TERN_MQTT_PROP_SESSION_EXPIRY = 0x11,
    TERN_MQTT_PROP_ASSIGNED_CLIENT_ID = 0x12,
    TERN_MQTT_PROP_SERVER_KEEP_ALIVE = 0x13,
    TERN_MQTT_PROP_AUTH_METHOD = 0x15,
    TERN_MQTT_PROP_AUTH_DATA = 0x16,
    TERN_MQTT_PROP_REQUEST_PROBLEM_INFO = 0x17,
    TERN_MQTT_PROP_WILL_DELAY = 0x18,
    TERN_MQTT_PROP_REQUEST_RESPONSE_INFO = 0x19,
    TERN_MQTT_PROP_RESPONSE_INFO = 0x1A,
    TERN_MQTT_PROP_SERVER_REFERENCE = 0x1C,
    TERN_MQTT_PROP_REASON_STRING = 0x1F,
    TERN_MQTT_PROP_RECEIVE_MAX = 0x21,
    TERN_MQTT_PROP_TOPIC_ALIAS_MAX = 0x22,
    TERN_MQTT_PROP_TOPIC_ALIAS = 0x23,
    TERN_MQTT_PROP_MAX_QOS = 0x24,
    TERN_MQTT_PROP_RETAIN_AVAILABLE = 0x25,
    TERN_MQTT_PROP_USER = 0x26,
    TERN_MQTT_PROP_MAX_PACKET_SIZE = 0x27,
    TERN_MQTT_PROP_WILDCARD_SUB_AVAILABLE = 0x28,
    TERN_MQTT_PROP_SUB_ID_AVAILABLE = 0x29,
    TERN_MQTT_PROP_SHARED_SUB_AVAILABLE = 0x2A,
};

/* MQTT 5 reason codes (3.1.1 return codes are mapped from these, see tern_mqtt_reason_v311). */
enum {
    TERN_MQTT_RC_SUCCESS = 0x00, /* also Normal disconnection, Granted QoS 0 */
    TERN_MQTT_RC_GRANTED_QOS1 = 0x01,
    TERN_MQTT_RC_GRANTED_QOS2 = 0x02,
    TERN_MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    TERN_MQTT_RC_NO_MATCHING_SUBSCRIBERS = 0x10,
    TERN_MQTT_RC_NO_SUBSCRIPTION_EXISTED = 0x11,
    TERN_MQTT_RC_CONTINUE_AUTH = 0x18,
    TERN_MQTT_RC_REAUTHENTICATE = 0x19,
    TERN_MQTT_RC_UNSPECIFIED = 0x80,
    TERN_MQTT_RC_MALFORMED = 0x81,
    TERN_MQTT_RC_PROTOCOL_ERROR = 0x82,
    TERN_MQTT_RC_IMPLEMENTATION_ERROR = 0x83,
    TERN_MQTT_RC_UNSUPPORTED_VERSION = 0x84,
    TERN_MQTT_RC_CLIENT_ID_INVALID = 0x85,
    TERN_MQTT_RC_BAD_USERNAME_PASSWORD = 0x86,
    TERN_MQTT_RC_NOT_AUTHORIZED = 0x87,
    TERN_MQTT_RC_SERVER_UNAVAILABLE = 0x88,
    TERN_MQTT_RC_SERVER_BUSY = 0x89,
    TERN_MQTT_RC_BANNED = 0x8A,
    TERN_MQTT_RC_SERVER_SHUTTING_DOWN = 0x8B,
    TERN_MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    TERN_MQTT_RC_KEEP_ALIVE_TIMEOUT = 0x8D,
    TERN_MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    TERN_MQTT_RC_TOPIC_FILTER_INVALID = 0x8F,
    TERN_MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    TERN_MQTT_RC_PACKET_ID_IN_USE = 0x91,
    TERN_MQTT_RC_PACKET_ID_NOT_FOUND = 0x92,
    TERN_MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    TERN_MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    TERN_MQTT_RC_PACKET_TOO_LARGE = 0x95,
    TERN_MQTT_RC_MESSAGE_RATE_TOO_HIGH = 0x96,
    TERN_MQTT_RC_QUOTA_EXCEEDED = 0x97,
    TERN_MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    TERN_MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    TERN_MQTT_RC_RETAIN_NOT_SUPPORTED = 0x9A,
    TERN_MQTT_RC_QOS_NOT_SUPPORTED = 0x9B,
    TERN_MQTT_RC_USE_ANOTHER_SERVER = 0x9C,
    TERN_MQTT_RC_SERVER_MOVED = 0x9D,
    TERN_MQTT_RC_SHARED_SUBS_NOT_SUPPORTED = 0x9E,
    TERN_MQTT_RC_CONNECTION_RATE_EXCEEDED = 0x9F,
    TERN_MQTT_RC_MAXIMUM_CONNECT_TIME = 0xA0,
    TERN_MQTT_RC_SUB_IDS_NOT_SUPPORTED = 0xA1,
    TERN_MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED = 0xA2,
};

/* A borrowed view of a UTF-8 string or binary data (both have a two-byte length on the wire). */
typedef struct tern_mqtt_str {
    const uint8_t *p;
    uint16_t len;
} tern_mqtt_str;

typedef struct tern_mqtt_user_prop {
    tern_mqtt_str key;
    tern_mqtt_str value;
} tern_mqtt_user_prop;

/*
 * tern_mqtt_props: the properties of one MQTT 5 packet (or of a CONNECT's will).
 *
 * present has bit (1 << id) set for each property carried (TERN_MQTT_PROP_*); a field is
 * meaningful only when its bit is set. User properties (and PUBLISH's repeatable Subscription
 * Identifier) are read with tern_mqtt_props_user_next / _sub_id_next, which serve both sides:
 *  - decoded: raw/raw_len borrow the validated property bytes, user and sub_ids are NULL,
 *    n_user and n_sub_ids count the entries, subscription_id holds the first identifier;
 *  - to encode: set user/n_user and sub_ids/n_sub_ids to arrays (raw may stay NULL); when
 *    user (or sub_ids) is NULL but raw is set, the encoder copies those entries from raw, so a
 *    decoded PUBLISH can be forwarded with its user properties untouched.
 */
typedef struct tern_mqtt_props {
    uint64_t present;
    uint8_t payload_format;
    uint8_t request_problem_info;
    uint8_t request_response_info;
    uint8_t max_qos;
    uint8_t retain_available;
    uint8_t wildcard_sub_available;
    uint8_t sub_id_available;
    uint8_t shared_sub_available;
    uint16_t server_keep_alive_s;
    uint16_t receive_max;
    uint16_t topic_alias_max;
    uint16_t topic_alias;
    uint32_t message_expiry_s;
    uint32_t session_expiry_s;
    uint32_t will_delay_s;
    uint32_t max_packet_size;
    uint32_t subscription_id;
    tern_mqtt_str content_type;
    tern_mqtt_str response_topic;
    tern_mqtt_str correlation_data;
    tern_mqtt_str assigned_client_id;
    tern_mqtt_str auth_method;
    tern_mqtt_str auth_data;
    tern_mqtt_str response_info;
    tern_mqtt_str server_reference;
    tern_mqtt_str reason_string;
    const tern_mqtt_user_prop *user;
    uint32_t n_user;
    const uint32_t *sub_ids;
    uint32_t n_sub_ids;
    const uint8_t *raw;
    uint32_t raw_len;
} tern_mqtt_props;

#define TERN_MQTT_PROP_BIT(id) (UINT64_C(1) << (id))
#define TERN_MQTT_HAS_PROP(props, id) (((props)->present & TERN_MQTT_PROP_BIT(id)) != 0)

typedef struct tern_mqtt_connect {
    uint8_t version; /* TERN_MQTT_V311 or TERN_MQTT_V5 */
    bool clean_start;
    bool has_will;
    uint8_t will_qos;
    bool will_retain;
    bool has_username;
    bool has_password;
    uint16_t keep_alive_s;
    tern_mqtt_props props;
    tern_mqtt_str client_id;
    tern_mqtt_props will_props; /* 5.0 */
    tern_mqtt_str will_topic;
    tern_mqtt_str will_payload; /* binary */
    tern_mqtt_str username;
    tern_mqtt_str password; /* binary */
} tern_mqtt_connect;

typedef struct tern_mqtt_connack {
    bool session_present;
    uint8_t reason; /* 5.0 reason code, or the 3.1.1 return code 0..5 */
    tern_mqtt_props props;
} tern_mqtt_connack;

typedef struct tern_mqtt_publish {
    bool dup;
    uint8_t qos;
    bool retain;
    uint16_t packet_id; /* only when qos > 0 */
    tern_mqtt_str topic;
    tern_mqtt_props props;
    const uint8_t *payload;
    size_t payload_len;
} tern_mqtt_publish;

/* PUBACK, PUBREC, PUBREL, PUBCOMP. reason and props are 5.0 (reason 0 when omitted). */
typedef struct tern_mqtt_ack {
    uint16_t packet_id;
    uint8_t reason;
    tern_mqtt_props props;
} tern_mqtt_ack;

typedef struct tern_mqtt_subscription {
    tern_mqtt_str filter;
    uint8_t qos;
    bool no_local;            /* 5.0 */
    bool retain_as_published; /* 5.0 */
    uint8_t retain_handling;  /* 5.0: 0, 1 or 2 */
} tern_mqtt_subscription;

/*
 * SUBSCRIBE and UNSUBSCRIBE. To encode, set subs/n_subs (UNSUBSCRIBE uses only .filter).
 * Decoded: subs is NULL, n_subs counts the entries and raw/raw_len borrow the validated list;
 * read it with tern_mqtt_sub_iter_init/_next (no allocation, no bound to choose).
 */
typedef struct tern_mqtt_subscribe {
    uint16_t packet_id;
    tern_mqtt_props props;
    const tern_mqtt_subscription *subs;
    uint32_t n_subs;
    const uint8_t *raw;
    uint32_t raw_len;
} tern_mqtt_subscribe;

/* SUBACK and UNSUBACK: one reason (3.1.1 SUBACK: return) code per filter, borrowed bytes.
 * A 3.1.1 UNSUBACK carries none (n_reasons 0). */
typedef struct tern_mqtt_suback {
    uint16_t packet_id;
    tern_mqtt_props props;
    const uint8_t *reasons;
    uint32_t n_reasons;
} tern_mqtt_suback;

/* DISCONNECT and AUTH (reason 0 and no properties when omitted; always so for 3.1.1). */
typedef struct tern_mqtt_reason_only {
    uint8_t reason;
    tern_mqtt_props props;
} tern_mqtt_reason_only;

typedef struct tern_mqtt_packet {
    uint8_t type;  /* TERN_MQTT_CONNECT .. TERN_MQTT_AUTH */
    uint8_t flags; /* low nibble of the first byte, as on the wire */
    union {
        tern_mqtt_connect connect;
        tern_mqtt_connack connack;
        tern_mqtt_publish publish;
        tern_mqtt_ack ack;
        tern_mqtt_subscribe subscribe; /* and unsubscribe */
        tern_mqtt_suback suback;       /* and unsuback */
        tern_mqtt_reason_only disconnect;
        tern_mqtt_reason_only auth;
    } u;
} tern_mqtt_packet;

/* Why a decode failed: the reason code to send and a static phrase for the log line. */
typedef struct tern_mqtt_status {
    uint8_t reason;
    const char *what;
} tern_mqtt_status;

/* ---- framing ------------------------------------------------------------------------------ */

/*
 * tern_mqtt_frame tells whether buf[0..len) starts with a whole packet. On 0 it sets
 * *packet_len to the packet's total size (fixed header included). It returns TERN_EPARTIAL when
 * more bytes are needed, TERN_ETOOBIG as soon as the remaining length is known and the packet
 * would exceed max_packet_bytes (0: no limit but the protocol's; reason code 0x95), and
 * TERN_EPROTO when the remaining length has a fifth byte (0x81). Non-minimal remaining lengths
 * (e.g. 0x80 0x00) are accepted: see docs/mqtt-codec.md. It does not look at the packet type.
 */
int tern_mqtt_frame(const uint8_t *buf, size_t len, size_t max_packet_bytes, size_t *packet_len);

/* ---- decoding ----------------------------------------------------------------------------- */

/*
 * tern_mqtt_decode decodes the packet at the start of buf[0..len). version is the protocol level
 * negotiated on the connection (TERN_MQTT_V311 or TERN_MQTT_V5), or 0 before CONNECT, when only
 * a CONNECT is accepted; a CONNECT always decodes by the level it carries. Any other version is
 * a caller's bug (TERN_ASSERT). It enforces no size limit: call tern_mqtt_frame first for that.
 * On 0, *pkt is filled with views borrowed from buf and *consumed is the packet's size.
 * Errors (*consumed unchanged, *pkt unspecified): TERN_EPARTIAL (buf holds a prefix of a
 * packet: read more), TERN_EPROTO (malformed or protocol error), TERN_EUTF8 (bad UTF-8 string),
 * TERN_EVERSION (CONNECT of an unsupported protocol level or MQIsdp: answer CONNACK 0x01 in
 * 3.1.1 form, or 0x84). On every error but TERN_EPARTIAL, *st (if not NULL) receives the MQTT 5
 * reason code to send and a phrase for the log; on TERN_EPARTIAL st->reason is 0.
 */
int tern_mqtt_decode(const uint8_t *buf, size_t len, uint8_t version, tern_mqtt_packet *pkt,
    size_t *consumed, tern_mqtt_status *st);

/* Iteration over decoded (raw) or caller-built (array) lists. */
typedef struct tern_mqtt_iter {
    const uint8_t *p;
    const uint8_t *end;
    uint32_t idx;
    uint32_t n;
    const void *arr;
    uint8_t kind;
} tern_mqtt_iter;

/* tern_mqtt_props_user_begin starts an iteration over props' user properties. */
void tern_mqtt_props_user_begin(const tern_mqtt_props *props, tern_mqtt_iter *it);
/* tern_mqtt_props_user_next sets *up to the next user property and returns true, or returns
 * false at the end. The views borrow the same memory the props do. */
bool tern_mqtt_props_user_next(tern_mqtt_iter *it, tern_mqtt_user_prop *up);
/*
 * tern_mqtt_props_drop_optional removes the Reason String and the User Properties: what 5.0
 * lets a sender leave out of an ack, CONNACK, DISCONNECT or AUTH that would otherwise exceed the
 * receiver's Maximum Packet Size (3.1.2.11.4 and each packet's section). Not for PUBLISH, whose
 * user properties must be forwarded.
 */
void tern_mqtt_props_drop_optional(tern_mqtt_props *props);
/* tern_mqtt_props_sub_id_begin / _next iterate the Subscription Identifiers (PUBLISH). */
void tern_mqtt_props_sub_id_begin(const tern_mqtt_props *props, tern_mqtt_iter *it);
bool tern_mqtt_props_sub_id_next(tern_mqtt_iter *it, uint32_t *sub_id);

/* tern_mqtt_sub_iter_init starts an iteration over a SUBSCRIBE's (type TERN_MQTT_SUBSCRIBE) or
 * UNSUBSCRIBE's (TERN_MQTT_UNSUBSCRIBE) topic filters, decoded or built. */
void tern_mqtt_sub_iter_init(tern_mqtt_iter *it, uint8_t type, const tern_mqtt_subscribe *s);
/* tern_mqtt_sub_iter_next sets *sub to the next entry (options 0 for UNSUBSCRIBE) and returns
 * true, or returns false at the end. */
bool tern_mqtt_sub_iter_next(tern_mqtt_iter *it, tern_mqtt_subscription *sub);

/* ---- encoding ----------------------------------------------------------------------------- */

/*
 * tern_mqtt_encode appends pkt, encoded for protocol level version (a CONNECT uses its own
 * connect.version), to out. pkt->flags is ignored: the encoder derives the fixed header flags
 * (PUBLISH from dup/qos/retain). For 5.0, an ack/DISCONNECT/AUTH with reason 0 and no
 * properties is written in its short form. Returns 0, TERN_ENOMEM, TERN_ETOOBIG (remaining
 * length > 268,435,455) or TERN_EINVAL for a packet the decoder would reject for its structure:
 * unknown type, AUTH in 3.1.1, QoS > 2, will QoS/retain without will, 3.1.1 password without
 * user name, packet identifier 0 where one is required, an empty SUBSCRIBE/UNSUBSCRIBE/SUBACK
 * (5.0: UNSUBACK) list, retain handling 3, a property not allowed in this packet. Strings are not
 * re-validated (UTF-8, topic syntax): the caller encodes what it means to send.
 * out is unchanged on failure.
 */
int tern_mqtt_encode(tern_buf *out, uint8_t version, const tern_mqtt_packet *pkt);

/*
 * tern_mqtt_encode_publish_header appends everything of a PUBLISH but its payload: the fixed
 * header (whose remaining length counts pub->payload_len bytes), topic, packet id and
 * properties. pub->payload is not read, so one payload can be sent to many subscribers with an
 * iovec { header, payload } per subscriber. Errors as tern_mqtt_encode.
 */
int tern_mqtt_encode_publish_header(tern_buf *out, uint8_t version, const tern_mqtt_publish *pub);

/* ---- primitives --------------------------------------------------------------------------- */

/* tern_mqtt_vbi_decode reads a Variable Byte Integer from buf[0..len): 0 with *value and *n_bytes
 * set, TERN_EPARTIAL if it continues past len, TERN_EPROTO if it has a fifth byte. */
int tern_mqtt_vbi_decode(const uint8_t *buf, size_t len, uint32_t *value, size_t *n_bytes);
/* tern_mqtt_vbi_encode writes value (<= TERN_MQTT_VBI_MAX, else TERN_EINVAL) minimally into
 * out[4] and returns the byte count (1..4). */
int tern_mqtt_vbi_encode(uint32_t value, uint8_t out[4]);
/* tern_mqtt_vbi_size is the minimal encoded size of value (1..4), 0 if value is too large. */
size_t tern_mqtt_vbi_size(uint32_t value);

/* tern_mqtt_utf8_validate checks an MQTT UTF-8 string: well-formed (no overlong forms, no
 * surrogates, nothing above U+10FFFF) and without U+0000. Returns 0 or TERN_EUTF8. */
int tern_mqtt_utf8_validate(const uint8_t *p, size_t len);

/* tern_mqtt_client_id_check is tern's client id policy (not the spec's): 1..max_bytes bytes,
 * valid UTF-8, no control characters and none of '/', '+', '#' (the id becomes a topic level).
 * Returns 0 or TERN_EPROTO (send 0x85 / 3.1.1 return code 2). */
int tern_mqtt_client_id_check(const uint8_t *p, size_t len, size_t max_bytes);

/* ---- reason codes ------------------------------------------------------------------------- */

/* tern_mqtt_reason_str names a 5.0 reason code for logs ("malformed packet"); never NULL. The
 * packet type disambiguates codes with several meanings (0x00 is "granted QoS 0" in SUBACK,
 * "normal disconnection" in DISCONNECT); pass 0 for the generic name. */
const char *tern_mqtt_reason_str(uint8_t reason, uint8_t packet_type);

/* tern_mqtt_reason_v311_connack maps a 5.0 CONNACK reason code to the nearest 3.1.1 CONNACK
 * return code (0x84 -> 1, 0x85 -> 2, 0x88/0x89 -> 3, 0x86 -> 4, 0x87/0x8A -> 5, success -> 0); a
 * code with no 3.1.1 counterpart returns -1, meaning close the connection without CONNACK. */
int tern_mqtt_reason_v311_connack(uint8_t reason);

/* tern_mqtt_type_str names a packet type ("PUBLISH"), "?" for an unknown one. */
const char *tern_mqtt_type_str(uint8_t type);

#endif

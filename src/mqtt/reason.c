/*
 * reason.c: MQTT 5 reason codes: names for logs, which packets may carry each code (MQTT 5.0
 * section 2.4 and each packet's reason code table), and the 3.1.1 CONNACK mapping.
 */
#include "mqtt/mqtt_int.h"

#include <stddef.h>

#define P(t) (UINT32_C(1) << (t))
#define CA P(TERN_MQTT_CONNACK)
#define PA P(TERN_MQTT_PUBACK)
#define PRC P(TERN_MQTT_PUBREC)
#define PRL P(TERN_MQTT_PUBREL)
#define PC P(TERN_MQTT_PUBCOMP)
#define SA P(TERN_MQTT_SUBACK)
#define UA P(TERN_MQTT_UNSUBACK)
#define D P(TERN_MQTT_DISCONNECT)
#define A P(TERN_MQTT_AUTH)

static const struct {
    uint8_t code;
    uint32_t packets;
    const char *name;
} reasons[] = {
    { 0x00, CA | PA | PRC | PRL | PC | SA | UA | D | A, "success" },
    { 0x01, SA, "granted QoS 1" },
    { 0x02, SA, "granted QoS 2" },
    { 0x04, D, "disconnect with will message" },
    { 0x10, PA | PRC, "no matching subscribers" },
    { 0x11, UA, "no subscription existed" },
    { 0x18, A, "continue authentication" },
    { 0x19, A, "re-authenticate" },
    { 0x80, CA | PA | PRC | SA | UA | D, "unspecified error" },
    { 0x81, CA | D, "malformed packet" },
    { 0x82, CA | D, "protocol error" },
    { 0x83, CA | PA | PRC | SA | UA | D, "implementation specific error" },
    { 0x84, CA, "unsupported protocol version" },
    { 0x85, CA, "client identifier not valid" },
    { 0x86, CA, "bad user name or password" },
    { 0x87, CA | PA | PRC | SA | UA | D, "not authorized" },
    { 0x88, CA, "server unavailable" },
    { 0x89, CA | D, "server busy" },
    { 0x8A, CA, "banned" },
    { 0x8B, D, "server shutting down" },
    { 0x8C, CA, "bad authentication method" },
    { 0x8D, D, "keep alive timeout" },
    { 0x8E, D, "session taken over" },
    { 0x8F, SA | UA | D, "topic filter invalid" },
    { 0x90, CA | PA | PRC | D, "topic name invalid" },
    { 0x91, PA | PRC | SA | UA, "packet identifier in use" },
    { 0x92, PRL | PC, "packet identifier not found" },
    { 0x93, D, "receive maximum exceeded" },
    { 0x94, D, "topic alias invalid" },
    { 0x95, CA | D, "packet too large" },
    { 0x96, D, "message rate too high" },
    { 0x97, CA | PA | PRC | SA | D, "quota exceeded" },
    { 0x98, D, "administrative action" },
    { 0x99, CA | PA | PRC | D, "payload format invalid" },
    { 0x9A, CA | D, "retain not supported" },
    { 0x9B, CA | D, "QoS not supported" },
    { 0x9C, CA | D, "use another server" },
    { 0x9D, CA | D, "server moved" },
    { 0x9E, SA | D, "shared subscriptions not supported" },
    { 0x9F, CA | D, "connection rate exceeded" },
    { 0xA0, D, "maximum connect time" },
    { 0xA1, SA | D, "subscription identifiers not supported" },
    { 0xA2, SA | D, "wildcard subscriptions not supported" },
};

static int find(uint8_t code)
{
    for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
        if (reasons[i].code == code)
            return (int)i;
    return -1;
}

bool tern_mqtt__reason_allowed(uint8_t version, uint8_t type, uint8_t reason)
{
    if (version == TERN_MQTT_V311) {
        if (type == TERN_MQTT_CONNACK)
            return reason <= 5;
        if (type == TERN_MQTT_SUBACK)
            return reason <= 2 || reason == 0x80;
        return false;
    }
    int i = find(reason);
    return i >= 0 && type < 32 && (reasons[i].packets & P(type)) != 0;
}

const char *tern_mqtt_reason_str(uint8_t reason, uint8_t packet_type)
{
    if (reason == 0x00) {
        if (packet_type == TERN_MQTT_SUBACK)
            return "granted QoS 0";
        if (packet_type == TERN_MQTT_DISCONNECT)
            return "normal disconnection";
    }
    int i = find(reason);
    return i >= 0 ? reasons[i].name : "unknown reason code";
}

int tern_mqtt_reason_v311_connack(uint8_t reason)
{
    switch (reason) {
    case TERN_MQTT_RC_SUCCESS:
        return 0;
    case TERN_MQTT_RC_UNSUPPORTED_VERSION:
        return 1;
    case TERN_MQTT_RC_CLIENT_ID_INVALID:
        return 2;
    case TERN_MQTT_RC_SERVER_UNAVAILABLE:
    case TERN_MQTT_RC_SERVER_BUSY:
    case TERN_MQTT_RC_CONNECTION_RATE_EXCEEDED:
    case TERN_MQTT_RC_QUOTA_EXCEEDED:
    case TERN_MQTT_RC_SERVER_SHUTTING_DOWN:
        return 3; /* "server unavailable": the 3.1.1 way to say "not now, try later" */
    case TERN_MQTT_RC_BAD_USERNAME_PASSWORD:
        return 4;
    case TERN_MQTT_RC_NOT_AUTHORIZED:
    case TERN_MQTT_RC_BANNED:
        return 5;
    default:
        return -1;
    }
}

const char *tern_mqtt_type_str(uint8_t type)
{
    static const char *const names[16] = { "?", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC",
        "PUBREL", "PUBCOMP", "SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ",
        "PINGRESP", "DISCONNECT", "AUTH" };
    return type < 16 ? names[type] : "?";
}

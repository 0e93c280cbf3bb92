/*
 * fuzz_mqtt_publish.c: libFuzzer target for PUBLISH and its acknowledgements. The first byte's
 * top bits pick PUBLISH (most of the time) or PUBACK/PUBREC/PUBREL/PUBCOMP; the flags nibble stays
 * the fuzzer's. Decoded packets must round-trip; an accepted PUBLISH's topic must be a valid
 * name that matches itself and '#' (unless it starts with '$'), and the header-only encoder plus
 * the payload must equal the whole encoding.
 */
#define FUZZ_TARGET "fuzz_mqtt_publish"
#include "fuzz_mqtt.h"
#include "mqtt/topic.h"

static void one(const uint8_t *data, size_t size, uint8_t version)
{
    check_roundtrip(data, size, version);
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    size_t used;
    if (tern_mqtt_decode(data, size, version, &pkt, &used, &st) != 0)
        return;
    if (pkt.type != TERN_MQTT_PUBLISH)
        return;
    const tern_mqtt_publish *p = &pkt.u.publish;
    check(p->qos <= 2 && !(p->dup && p->qos == 0), "flags");
    check(p->qos == 0 || p->packet_id != 0, "packet id");
    if (p->topic.len > 0) {
        check(tern_mqtt_topic_validate_name(p->topic.p, p->topic.len) == 0, "topic name");
        check(tern_mqtt_topic_matches(p->topic.p, p->topic.len, p->topic.p, p->topic.len),
            "topic does not match itself");
        bool dollar = p->topic.p[0] == '$';
        check(tern_mqtt_topic_matches((const uint8_t *)"#", 1, p->topic.p, p->topic.len) == !dollar,
            "'#' and the '$' rule");
    } else {
        check(TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_TOPIC_ALIAS), "empty topic, no alias");
    }
    tern_buf whole = TERN_BUF_INIT, hdr = TERN_BUF_INIT;
    if (tern_mqtt_encode(&whole, version, &pkt) == 0
        && tern_mqtt_encode_publish_header(&hdr, version, p) == 0) {
        check(hdr.len + p->payload_len == whole.len, "header + payload length");
        check(memcmp(hdr.data, whole.data, hdr.len) == 0, "header bytes");
    }
    tern_buf_free(&whole);
    tern_buf_free(&hdr);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t types[8]
        = { TERN_MQTT_PUBLISH, TERN_MQTT_PUBLISH, TERN_MQTT_PUBLISH, TERN_MQTT_PUBLISH,
              TERN_MQTT_PUBACK, TERN_MQTT_PUBREC, TERN_MQTT_PUBREL, TERN_MQTT_PUBCOMP };
    return fuzz_mqtt_typed(data, size, types, one);
}

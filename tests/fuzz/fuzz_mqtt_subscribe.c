/*
 * fuzz_mqtt_subscribe.c: libFuzzer target for SUBSCRIBE, SUBACK, UNSUBSCRIBE and UNSUBACK. The
 * first byte's top bits pick the type; the flags nibble stays the fuzzer's. Decoded packets must
 * round-trip; every filter the iterator yields must be valid, its shared form must parse, and
 * matching it against names built from it must not misbehave.
 */
#define FUZZ_TARGET "fuzz_mqtt_subscribe"
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
    if (pkt.type != TERN_MQTT_SUBSCRIBE && pkt.type != TERN_MQTT_UNSUBSCRIBE)
        return;
    tern_mqtt_iter it;
    tern_mqtt_subscription s;
    uint32_t n = 0;
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    tern_mqtt_sub_iter_init(&it, pkt.type, &pkt.u.subscribe);
    while (tern_mqtt_sub_iter_next(&it, &s)) {
        n++;
        check(tern_mqtt_topic_validate_filter(s.filter.p, s.filter.len) == 0, "filter");
        check(s.qos <= 2 && s.retain_handling <= 2, "options");
        const uint8_t *g, *in;
        size_t gl, il;
        const uint8_t *f = s.filter.p;
        size_t fl = s.filter.len;
        if (tern_mqtt_topic_parse_shared(f, fl, &g, &gl, &in, &il) == 1) {
            check(gl > 0 && il > 0, "shared parts");
            f = in;
            fl = il;
        }
        if (tern_mqtt_topic_validate_name(f, fl) == 0)
            check(tern_mqtt_topic_matches(f, fl, f, fl), "name-like filter must match itself");
        if (prev && tern_mqtt_topic_validate_name(prev, prev_len) == 0)
            (void)tern_mqtt_topic_matches(f, fl, prev, prev_len);
        prev = f;
        prev_len = fl;
    }
    check(n == pkt.u.subscribe.n_subs && n > 0, "iterator count");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t types[8] = { TERN_MQTT_SUBSCRIBE, TERN_MQTT_SUBSCRIBE, TERN_MQTT_SUBACK,
        TERN_MQTT_SUBACK, TERN_MQTT_UNSUBSCRIBE, TERN_MQTT_UNSUBSCRIBE, TERN_MQTT_UNSUBACK,
        TERN_MQTT_UNSUBACK };
    return fuzz_mqtt_typed(data, size, types, one);
}

/*
 * fuzz_mqtt_connect.c: libFuzzer target for CONNECT (and CONNACK) decoding. The first byte's type
 * nibble is forced to CONNECT (or CONNACK when its high bit is set) so that every mutation lands
 * in those decoders; the flags nibble stays the fuzzer's. A CONNECT that decodes must re-encode,
 * decode to the same fields and re-encode to the same bytes; errors must carry a reason code.
 */
#define FUZZ_TARGET "fuzz_mqtt_connect"
#include "fuzz_mqtt.h"

static void one(const uint8_t *data, size_t size, uint8_t version)
{
    check_roundtrip(data, size, version);
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    size_t used;
    int rc = tern_mqtt_decode(data, size, version, &pkt, &used, &st);
    if (rc == TERN_EVERSION && st.reason != TERN_MQTT_RC_UNSUPPORTED_VERSION)
        abort();
    if (rc == 0 && pkt.type == TERN_MQTT_CONNECT) {
        const tern_mqtt_connect *c = &pkt.u.connect;
        /* Facts the decoder promises about an accepted CONNECT. */
        if (c->will_qos > 2 || (!c->has_will && (c->will_qos || c->will_retain)))
            abort();
        if (c->version == TERN_MQTT_V311 && c->has_password && !c->has_username)
            abort();
        if (tern_mqtt_utf8_validate(c->client_id.p, c->client_id.len) != 0)
            abort();
        (void)tern_mqtt_client_id_check(c->client_id.p, c->client_id.len, 64);
        (void)tern_mqtt_reason_v311_connack(st.reason);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* CONNECT, or CONNACK when the first byte's high bit is set. */
    static const uint8_t types[8]
        = { TERN_MQTT_CONNECT, TERN_MQTT_CONNECT, TERN_MQTT_CONNECT, TERN_MQTT_CONNECT,
              TERN_MQTT_CONNACK, TERN_MQTT_CONNACK, TERN_MQTT_CONNACK, TERN_MQTT_CONNACK };
    return fuzz_mqtt_typed(data, size, types, one);
}

/*
 * fuzz_mqtt_control.c: libFuzzer target for the packets that carry at most a reason and
 * properties: DISCONNECT, AUTH, PINGREQ and PINGRESP. The first byte's top bits pick the type;
 * the flags nibble stays the fuzzer's. Decoded packets must round-trip; a decoded reason must
 * have a name; and the packet re-encoded without its Reason String and User Properties (what
 * the broker sheds to fit a client's Maximum Packet Size) must decode to the same reason and
 * be no longer.
 */
#define FUZZ_TARGET "fuzz_mqtt_control"
#include "fuzz_mqtt.h"

static void one(const uint8_t *data, size_t size, uint8_t version)
{
    check_roundtrip(data, size, version);
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    size_t used;
    int rc = tern_mqtt_decode(data, size, version, &pkt, &used, &st);
    if (rc != 0) {
        check(rc == TERN_EPARTIAL || st.what != NULL, "a failed decode says why");
        return;
    }
    if (pkt.type != TERN_MQTT_DISCONNECT && pkt.type != TERN_MQTT_AUTH)
        return;
    tern_mqtt_reason_only *ro = pkt.type == TERN_MQTT_DISCONNECT ? &pkt.u.disconnect : &pkt.u.auth;
    check(tern_mqtt_reason_str(ro->reason, pkt.type) != NULL, "reason name");

    tern_buf full, lean;
    tern_buf_init(&full);
    tern_buf_init(&lean);
    check(tern_mqtt_encode(&full, version, &pkt) == 0, "re-encode");
    tern_mqtt_packet shed = pkt;
    tern_mqtt_props_drop_optional(
        pkt.type == TERN_MQTT_DISCONNECT ? &shed.u.disconnect.props : &shed.u.auth.props);
    check(tern_mqtt_encode(&lean, version, &shed) == 0, "encode without optional properties");
    check(lean.len <= full.len, "shedding properties made the packet longer");
    tern_mqtt_packet again;
    check(
        tern_mqtt_decode(lean.data, lean.len, version, &again, &used, &st) == 0 && used == lean.len,
        "shed packet decodes");
    const tern_mqtt_reason_only *ra
        = again.type == TERN_MQTT_DISCONNECT ? &again.u.disconnect : &again.u.auth;
    check(again.type == pkt.type && ra->reason == ro->reason, "shed packet keeps its reason");
    tern_buf_free(&full);
    tern_buf_free(&lean);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t types[8]
        = { TERN_MQTT_DISCONNECT, TERN_MQTT_DISCONNECT, TERN_MQTT_AUTH, TERN_MQTT_AUTH,
              TERN_MQTT_PINGREQ, TERN_MQTT_PINGREQ, TERN_MQTT_PINGRESP, TERN_MQTT_PINGRESP };
    return fuzz_mqtt_typed(data, size, types, one);
}

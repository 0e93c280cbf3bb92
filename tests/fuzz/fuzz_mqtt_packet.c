/*
 * fuzz_mqtt_packet.c: libFuzzer target for the MQTT codec as a connection sees it: a byte stream
 * framed and decoded packet after packet, in both protocol versions and before CONNECT. Every
 * packet that decodes is re-encoded, decoded again and compared field by field (and the two
 * encodings byte by byte); framing must agree with decoding on every packet's length.
 */
#define FUZZ_TARGET "fuzz_mqtt_packet"
#include "fuzz_mqtt.h"

static void stream(const uint8_t *data, size_t size, uint8_t version)
{
    size_t off = 0;
    for (int n = 0; n < 64 && off < size; n++) {
        size_t plen = 0, used = 0;
        int frc = tern_mqtt_frame(data + off, size - off, 0, &plen);
        tern_mqtt_packet pkt;
        tern_mqtt_status st;
        int rc = tern_mqtt_decode(data + off, size - off, version, &pkt, &used, &st);
        check(frc != TERN_EPARTIAL || rc == TERN_EPARTIAL, "frame partial but decode not");
        if (frc == 0) {
            check(rc != TERN_EPARTIAL, "whole frame but decode partial");
            /* A limit below the packet size is reported before decoding. */
            size_t p2;
            check(tern_mqtt_frame(data + off, size - off, plen - 1, &p2) == TERN_ETOOBIG,
                "max packet size not enforced");
        }
        check_roundtrip(data + off, size - off, version);
        if (rc != 0)
            return;
        check(used == plen, "decode consumed a length other than the frame's");
        if (pkt.type == TERN_MQTT_CONNECT)
            version = pkt.u.connect.version;
        if (version == 0)
            return;
        check(tern_mqtt_reason_str(
                  pkt.type == TERN_MQTT_DISCONNECT ? pkt.u.disconnect.reason : 0, pkt.type)
                != NULL,
            "reason name");
        off += used;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    stream(data, size, 0);
    stream(data, size, TERN_MQTT_V311);
    stream(data, size, TERN_MQTT_V5);
    return 0;
}

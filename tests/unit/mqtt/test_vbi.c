/*
 * test_vbi.c: Variable Byte Integers at every size boundary, the 5-byte and partial cases, and
 * tern_mqtt_frame (whole packet present, partial, oversize rejected before it arrives).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "mqtt/mqtt.h"

#include <string.h>

static const struct {
    uint32_t value;
    size_t n;
    uint8_t bytes[4];
} edges[] = {
    { 0, 1, { 0x00 } },
    { 127, 1, { 0x7F } },
    { 128, 2, { 0x80, 0x01 } },
    { 16383, 2, { 0xFF, 0x7F } },
    { 16384, 3, { 0x80, 0x80, 0x01 } },
    { 2097151, 3, { 0xFF, 0xFF, 0x7F } },
    { 2097152, 4, { 0x80, 0x80, 0x80, 0x01 } },
    { 268435455, 4, { 0xFF, 0xFF, 0xFF, 0x7F } },
};

static void test_edges_encode_decode(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        uint8_t out[4];
        int n = tern_mqtt_vbi_encode(edges[i].value, out);
        assert_int_equal(n, (int)edges[i].n);
        assert_memory_equal(out, edges[i].bytes, edges[i].n);
        assert_int_equal(tern_mqtt_vbi_size(edges[i].value), edges[i].n);
        uint32_t v = 12345;
        size_t used = 0;
        assert_int_equal(tern_mqtt_vbi_decode(edges[i].bytes, edges[i].n, &v, &used), 0);
        assert_int_equal(v, edges[i].value);
        assert_int_equal(used, edges[i].n);
        /* Every strict prefix is partial. */
        for (size_t k = 0; k < edges[i].n; k++)
            assert_int_equal(tern_mqtt_vbi_decode(edges[i].bytes, k, &v, &used), TERN_EPARTIAL);
    }
}

static void test_too_large_and_five_bytes(void **state)
{
    (void)state;
    uint8_t out[4];
    assert_int_equal(tern_mqtt_vbi_encode(268435456u, out), TERN_EINVAL);
    assert_int_equal(tern_mqtt_vbi_size(268435456u), 0);
    static const uint8_t five[] = { 0xFF, 0xFF, 0xFF, 0xFF, 0x7F };
    uint32_t v = 7;
    size_t used = 9;
    assert_int_equal(tern_mqtt_vbi_decode(five, sizeof five, &v, &used), TERN_EPROTO);
    assert_int_equal(v, 7);
    assert_int_equal(used, 9);
    /* Four continuation bytes are already invalid, whatever follows. */
    static const uint8_t four_cont[] = { 0x80, 0x80, 0x80, 0x80 };
    assert_int_equal(tern_mqtt_vbi_decode(four_cont, sizeof four_cont, &v, &used), TERN_EPROTO);
}

static void test_non_minimal_accepted(void **state)
{
    (void)state;
    /* MQTT 5.0 [MQTT-1.5.5-1] binds the sender; tern accepts non-minimal forms on decode. */
    static const uint8_t zero2[] = { 0x80, 0x00 };
    static const uint8_t one4[] = { 0x81, 0x80, 0x80, 0x00 };
    uint32_t v;
    size_t used;
    assert_int_equal(tern_mqtt_vbi_decode(zero2, sizeof zero2, &v, &used), 0);
    assert_int_equal(v, 0);
    assert_int_equal(used, 2);
    assert_int_equal(tern_mqtt_vbi_decode(one4, sizeof one4, &v, &used), 0);
    assert_int_equal(v, 1);
    assert_int_equal(used, 4);
    /* A PINGREQ with a non-minimal remaining length decodes. */
    static const uint8_t ping[] = { 0xC0, 0x80, 0x00 };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    size_t consumed;
    assert_int_equal(tern_mqtt_decode(ping, sizeof ping, TERN_MQTT_V311, &pkt, &consumed, &st), 0);
    assert_int_equal(pkt.type, TERN_MQTT_PINGREQ);
    assert_int_equal(consumed, 3);
}

static void test_frame(void **state)
{
    (void)state;
    size_t plen = 0;
    uint8_t buf[300];
    memset(buf, 0, sizeof buf);
    assert_int_equal(tern_mqtt_frame(buf, 0, 0, &plen), TERN_EPARTIAL);
    buf[0] = 0x30;
    assert_int_equal(tern_mqtt_frame(buf, 1, 0, &plen), TERN_EPARTIAL);
    /* Remaining length 200 = 0xC8 0x01: packet of 203 bytes. */
    buf[1] = 0xC8;
    assert_int_equal(tern_mqtt_frame(buf, 2, 0, &plen), TERN_EPARTIAL);
    buf[2] = 0x01;
    assert_int_equal(tern_mqtt_frame(buf, 3, 0, &plen), TERN_EPARTIAL);
    assert_int_equal(tern_mqtt_frame(buf, 202, 0, &plen), TERN_EPARTIAL);
    assert_int_equal(plen, 0);
    assert_int_equal(tern_mqtt_frame(buf, 203, 0, &plen), 0);
    assert_int_equal(plen, 203);
    assert_int_equal(tern_mqtt_frame(buf, 300, 203, &plen), 0);
    assert_int_equal(plen, 203);
    /* Too large is known from the first three bytes, long before the rest arrives. */
    plen = 0;
    assert_int_equal(tern_mqtt_frame(buf, 3, 202, &plen), TERN_ETOOBIG);
    assert_int_equal(plen, 0);
    /* A 5-byte remaining length is malformed. */
    static const uint8_t bad[] = { 0x30, 0x80, 0x80, 0x80, 0x80, 0x01 };
    assert_int_equal(tern_mqtt_frame(bad, sizeof bad, 0, &plen), TERN_EPROTO);
    /* The largest remaining length frames (as partial) without overflow. */
    static const uint8_t max[] = { 0x30, 0xFF, 0xFF, 0xFF, 0x7F };
    assert_int_equal(tern_mqtt_frame(max, sizeof max, 0, &plen), TERN_EPARTIAL);
    assert_int_equal(tern_mqtt_frame(max, sizeof max, 1000, &plen), TERN_ETOOBIG);
}

static void test_decode_five_byte_length_reason(void **state)
{
    (void)state;
    static const uint8_t bad[] = { 0x30, 0x80, 0x80, 0x80, 0x80, 0x01 };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    size_t consumed;
    assert_int_equal(
        tern_mqtt_decode(bad, sizeof bad, TERN_MQTT_V5, &pkt, &consumed, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    assert_non_null(st.what);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edges_encode_decode),
        cmocka_unit_test(test_too_large_and_five_bytes),
        cmocka_unit_test(test_non_minimal_accepted),
        cmocka_unit_test(test_frame),
        cmocka_unit_test(test_decode_five_byte_length_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

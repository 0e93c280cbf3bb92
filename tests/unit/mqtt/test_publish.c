/*
 * test_publish.c: PUBLISH and its acknowledgements (PUBACK, PUBREC, PUBREL, PUBCOMP) in both
 * versions: byte-exact encodings, the header-only encoder for shared payloads, and every
 * malformed case of the fixed header, packet identifier and topic name.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/error.h"
#include "mqtt/mqtt.h"
#include "mqtt_check.h"

#include <string.h>

static int dec(const uint8_t *b, size_t n, uint8_t v, tern_mqtt_packet *pkt, tern_mqtt_status *st)
{
    return mqtt_check_decode(b, n, v, pkt, st);
}

static void test_publish_v311_exact(void **state)
{
    (void)state;
    /* QoS 1, retain, topic "a/b", packet id 10, payload "hi" (spec 3.3.2 style). */
    static const uint8_t want[] = { 0x33, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0A, 'h', 'i' };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(dec(want, sizeof want, TERN_MQTT_V311, &pkt, &st), 0);
    const tern_mqtt_publish *p = &pkt.u.publish;
    assert_int_equal(pkt.type, TERN_MQTT_PUBLISH);
    assert_int_equal(p->qos, 1);
    assert_true(p->retain);
    assert_false(p->dup);
    assert_int_equal(p->packet_id, 10);
    assert_true(mqtt_check_str_eq(p->topic, S("a/b")));
    assert_int_equal(p->payload_len, 2);
    assert_ptr_equal(p->payload, want + 9);
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &pkt), 0);
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    /* QoS 0 has no packet id; empty payload allowed. */
    static const uint8_t q0[] = { 0x30, 0x03, 0x00, 0x01, 'x' };
    assert_int_equal(dec(q0, sizeof q0, TERN_MQTT_V311, &pkt, &st), 0);
    assert_int_equal(pkt.u.publish.payload_len, 0);
    tern_buf_reset(&b);
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &pkt), 0);
    assert_memory_equal(b.data, q0, sizeof q0);
    tern_buf_free(&b);
}

static void test_publish_v5_exact(void **state)
{
    (void)state;
    /* QoS 2, dup, topic "t", id 0x1234, props: payload format 1, message expiry 30, topic alias
     * 5, user "a"="b"; payload "{}". */
    static const uint8_t want[]
        = { 0x3C, 0x19, 0x00, 0x01, 't', 0x12, 0x34, 0x11, 0x01, 0x01, 0x02, 0x00, 0x00, 0x00, 0x1E,
              0x23, 0x00, 0x05, 0x26, 0x00, 0x01, 'a', 0x00, 0x01, 'b', '{', '}' };
    static const tern_mqtt_user_prop up[] = { { SI("a"), SI("b") } };
    tern_mqtt_packet built;
    memset(&built, 0, sizeof built);
    built.type = TERN_MQTT_PUBLISH;
    tern_mqtt_publish *p = &built.u.publish;
    p->dup = true;
    p->qos = 2;
    p->packet_id = 0x1234;
    p->topic = S("t");
    p->props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_PAYLOAD_FORMAT)
        | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MESSAGE_EXPIRY)
        | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS);
    p->props.payload_format = 1;
    p->props.message_expiry_s = 30;
    p->props.topic_alias = 5;
    p->props.user = up;
    p->props.n_user = 1;
    p->payload = (const uint8_t *)"{}";
    p->payload_len = 2;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &built), 0);
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(dec(want, sizeof want, TERN_MQTT_V5, &pkt, &st), 0);
    assert_null(mqtt_check_diff(&pkt, &built));
    /* The same bytes are not a valid 3.1.1 PUBLISH payload split: they decode differently. */
    assert_int_equal(dec(want, sizeof want, TERN_MQTT_V311, &pkt, &st), 0);
    assert_int_equal(pkt.u.publish.payload_len, sizeof want - 7);
    tern_buf_free(&b);
}

static void test_publish_header_shared_payload(void **state)
{
    (void)state;
    static uint8_t payload[300];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    tern_mqtt_publish pub;
    memset(&pub, 0, sizeof pub);
    pub.qos = 1;
    pub.packet_id = 7;
    pub.topic = S("fleet/ev-1/cmd/reboot");
    pub.payload = payload;
    pub.payload_len = sizeof payload;
    for (uint8_t v = TERN_MQTT_V311; v <= TERN_MQTT_V5; v++) {
        tern_buf full = TERN_BUF_INIT, hdr = TERN_BUF_INIT;
        tern_mqtt_packet pkt;
        memset(&pkt, 0, sizeof pkt);
        pkt.type = TERN_MQTT_PUBLISH;
        pkt.u.publish = pub;
        assert_int_equal(tern_mqtt_encode(&full, v, &pkt), 0);
        assert_int_equal(tern_mqtt_encode_publish_header(&hdr, v, &pub), 0);
        assert_int_equal(hdr.len + sizeof payload, full.len);
        assert_memory_equal(hdr.data, full.data, hdr.len);
        assert_memory_equal(full.data + hdr.len, payload, sizeof payload);
        /* The header alone is a partial packet. */
        tern_mqtt_status st;
        size_t used;
        assert_int_equal(tern_mqtt_decode(hdr.data, hdr.len, v, &pkt, &used, &st), TERN_EPARTIAL);
        tern_buf_free(&full);
        tern_buf_free(&hdr);
    }
    /* A payload too large for the remaining length is refused and the buffer is unchanged. */
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append_u8(&b, 0xAA), 0);
    pub.payload_len = TERN_MQTT_VBI_MAX;
    assert_int_equal(tern_mqtt_encode_publish_header(&b, TERN_MQTT_V311, &pub), TERN_ETOOBIG);
    assert_int_equal(b.len, 1);
    /* The largest allowed: header says 268,435,455. */
    pub.payload_len = TERN_MQTT_VBI_MAX - (2 + 21 + 2);
    assert_int_equal(tern_mqtt_encode_publish_header(&b, TERN_MQTT_V311, &pub), 0);
    static const uint8_t fh[] = { 0x32, 0xFF, 0xFF, 0xFF, 0x7F };
    assert_memory_equal(b.data + 1, fh, sizeof fh);
    tern_buf_free(&b);
}

static void test_publish_malformed(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    for (uint8_t v = TERN_MQTT_V311; v <= TERN_MQTT_V5; v++) {
        /* QoS 3. */
        uint8_t q3[] = { 0x36, 0x05, 0x00, 0x01, 'x', 0x00, 0x01 };
        assert_int_equal(dec(q3, sizeof q3, v, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
        /* DUP with QoS 0. */
        uint8_t dup0[] = { 0x38, 0x03, 0x00, 0x01, 'x' };
        assert_int_equal(dec(dup0, sizeof dup0, v, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
        bool v5 = v == TERN_MQTT_V5;
        /* Packet id 0 with QoS 1 (the 5.0 form has an empty property length). */
        uint8_t id0[] = { 0x32, (uint8_t)(v5 ? 6 : 5), 0x00, 0x01, 'x', 0x00, 0x00, 0x00 };
        assert_int_equal(dec(id0, v5 ? 8 : 7, v, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
        id0[6] = 1;
        assert_int_equal(dec(id0, v5 ? 8 : 7, v, &pkt, &st), 0);
        /* Wildcards in the topic name. */
        uint8_t wc[] = { 0x30, (uint8_t)(v5 ? 6 : 5), 0x00, 0x03, 'a', '/', '+', 0x00 };
        assert_int_equal(dec(wc, v5 ? 8 : 7, v, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_TOPIC_NAME_INVALID);
        wc[6] = '#';
        assert_int_equal(dec(wc, v5 ? 8 : 7, v, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_TOPIC_NAME_INVALID);
        wc[6] = 'c';
        assert_int_equal(dec(wc, v5 ? 8 : 7, v, &pkt, &st), 0);
        /* Topic length past the end. */
        uint8_t over[] = { 0x30, 0x03, 0x00, 0x05, 'x' };
        assert_int_equal(dec(over, sizeof over, v, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
        /* Remaining length 1: not even a topic length. */
        uint8_t tiny[] = { 0x30, 0x01, 0x00 };
        assert_int_equal(dec(tiny, sizeof tiny, v, &pkt, &st), TERN_EPROTO);
    }
}

static void test_empty_topic_and_alias(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    static const uint8_t e311[] = { 0x30, 0x02, 0x00, 0x00 };
    assert_int_equal(dec(e311, sizeof e311, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    static const uint8_t e5[] = { 0x30, 0x03, 0x00, 0x00, 0x00 };
    assert_int_equal(dec(e5, sizeof e5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
    static const uint8_t alias[] = { 0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x02, 'p' };
    assert_int_equal(dec(alias, sizeof alias, TERN_MQTT_V5, &pkt, &st), 0);
    assert_int_equal(pkt.u.publish.topic.len, 0);
    assert_int_equal(pkt.u.publish.props.topic_alias, 2);
    assert_int_equal(pkt.u.publish.payload_len, 1);
    static const uint8_t alias0[] = { 0x30, 0x07, 0x00, 0x00, 0x03, 0x23, 0x00, 0x00, 'p' };
    assert_int_equal(dec(alias0, sizeof alias0, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
}

static void test_acks(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    tern_buf b = TERN_BUF_INIT;
    static const uint8_t types[]
        = { TERN_MQTT_PUBACK, TERN_MQTT_PUBREC, TERN_MQTT_PUBREL, TERN_MQTT_PUBCOMP };
    for (size_t i = 0; i < 4; i++) {
        uint8_t t = types[i];
        uint8_t fb = (uint8_t)(t << 4 | (t == TERN_MQTT_PUBREL ? 2 : 0));
        uint8_t a311[] = { fb, 0x02, 0x00, 0x2A };
        assert_int_equal(dec(a311, sizeof a311, TERN_MQTT_V311, &pkt, &st), 0);
        assert_int_equal(pkt.type, t);
        assert_int_equal(pkt.u.ack.packet_id, 42);
        tern_buf_reset(&b);
        assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &pkt), 0);
        assert_memory_equal(b.data, a311, sizeof a311);
        /* 5.0 short form is the same bytes; reason 0 and no properties encode short. */
        assert_int_equal(dec(a311, sizeof a311, TERN_MQTT_V5, &pkt, &st), 0);
        tern_buf_reset(&b);
        assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), 0);
        assert_int_equal(b.len, 4);
        /* Wrong flags. */
        uint8_t bad_flags[] = { (uint8_t)(fb ^ 0x02), 0x02, 0x00, 0x2A };
        assert_int_equal(dec(bad_flags, 4, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
        /* 3.1.1 ack with a trailing byte; packet id 0. */
        uint8_t long311[] = { fb, 0x03, 0x00, 0x2A, 0x00 };
        assert_int_equal(dec(long311, 5, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
        uint8_t zero[] = { fb, 0x02, 0x00, 0x00 };
        assert_int_equal(dec(zero, 4, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
        /* 5.0 with a reason only, and with reason + reason string. */
        uint8_t rc = (t == TERN_MQTT_PUBACK || t == TERN_MQTT_PUBREC) ? 0x10 : 0x92;
        uint8_t a5[] = { fb, 0x03, 0x00, 0x2A, rc };
        assert_int_equal(dec(a5, 5, TERN_MQTT_V5, &pkt, &st), 0);
        assert_int_equal(pkt.u.ack.reason, rc);
        tern_buf_reset(&b);
        assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), 0);
        assert_int_equal(b.len, 5);
        assert_memory_equal(b.data, a5, 5);
        uint8_t a5p[] = { fb, 0x08, 0x00, 0x2A, rc, 0x04, 0x1F, 0x00, 0x01, 'e' };
        assert_int_equal(dec(a5p, sizeof a5p, TERN_MQTT_V5, &pkt, &st), 0);
        assert_true(mqtt_check_str_eq(pkt.u.ack.props.reason_string, S("e")));
        tern_buf_reset(&b);
        assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), 0);
        assert_memory_equal(b.data, a5p, sizeof a5p);
        /* A reason code that belongs to another packet. */
        uint8_t wrong_rc[] = { fb, 0x03, 0x00, 0x2A, 0x04 };
        assert_int_equal(dec(wrong_rc, 5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
        /* Property length past the end. */
        uint8_t plong[] = { fb, 0x05, 0x00, 0x2A, 0x00, 0x05, 0x1F };
        assert_int_equal(dec(plong, sizeof plong, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    }
    tern_buf_free(&b);
}

static void test_encode_enomem_leaves_buffer(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append(&b, "xyz", 3), 0);
    size_t cap = b.cap;
    static uint8_t big[4096];
    tern_mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_PUBLISH;
    pkt.u.publish.topic = S("t");
    pkt.u.publish.payload = big;
    pkt.u.publish.payload_len = sizeof big;
    tern_alloc_fail_after(0);
    int rc = tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt);
    tern_alloc_fail_after(-1);
    assert_int_equal(rc, TERN_ENOMEM);
    assert_int_equal(b.len, 3);
    assert_int_equal(b.cap, cap);
    assert_memory_equal(b.data, "xyz", 3);
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), 0);
    assert_memory_equal(b.data, "xyz", 3);
    assert_int_equal(b.len, 3 + 3 + 3 + 1 + sizeof big);
    /* Invalid fields are refused, buffer unchanged. */
    pkt.u.publish.qos = 3;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), TERN_EINVAL);
    assert_int_equal(b.len, 3 + 3 + 3 + 1 + sizeof big);
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_publish_v311_exact),
        cmocka_unit_test(test_publish_v5_exact),
        cmocka_unit_test(test_publish_header_shared_payload),
        cmocka_unit_test(test_publish_malformed),
        cmocka_unit_test(test_empty_topic_and_alias),
        cmocka_unit_test(test_acks),
        cmocka_unit_test(test_encode_enomem_leaves_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

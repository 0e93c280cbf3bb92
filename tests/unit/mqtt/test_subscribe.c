/*
 * test_subscribe.c: SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK of both versions: the spec's example
 * bytes, the list iterator, subscription options and their reserved bits, shared subscriptions,
 * and the malformed cases (flags, empty lists, bad filters, reason codes).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "mqtt/mqtt.h"
#include "mqtt_check.h"

#include <string.h>

static int dec(const uint8_t *b, size_t n, uint8_t v, tern_mqtt_packet *pkt, tern_mqtt_status *st)
{
    return mqtt_check_decode(b, n, v, pkt, st);
}

static const uint8_t sub311[]
    = { 0x82, 0x0E, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x01, 0x00, 0x03, 'c', '/', 'd', 0x02 };

static void test_subscribe_v311_exact(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(dec(sub311, sizeof sub311, TERN_MQTT_V311, &pkt, &st), 0);
    assert_int_equal(pkt.type, TERN_MQTT_SUBSCRIBE);
    assert_int_equal(pkt.u.subscribe.packet_id, 10);
    assert_int_equal(pkt.u.subscribe.n_subs, 2);
    tern_mqtt_iter it;
    tern_mqtt_subscription s;
    tern_mqtt_sub_iter_init(&it, pkt.type, &pkt.u.subscribe);
    assert_true(tern_mqtt_sub_iter_next(&it, &s));
    assert_true(mqtt_check_str_eq(s.filter, S("a/b")));
    assert_int_equal(s.qos, 1);
    assert_ptr_equal(s.filter.p, sub311 + 6);
    assert_true(tern_mqtt_sub_iter_next(&it, &s));
    assert_true(mqtt_check_str_eq(s.filter, S("c/d")));
    assert_int_equal(s.qos, 2);
    assert_false(tern_mqtt_sub_iter_next(&it, &s));
    assert_false(tern_mqtt_sub_iter_next(&it, &s));

    static const tern_mqtt_subscription subs[]
        = { { SI("a/b"), 1, false, false, 0 }, { SI("c/d"), 2, false, false, 0 } };
    tern_mqtt_packet built;
    memset(&built, 0, sizeof built);
    built.type = TERN_MQTT_SUBSCRIBE;
    built.u.subscribe.packet_id = 10;
    built.u.subscribe.subs = subs;
    built.u.subscribe.n_subs = 2;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &built), 0);
    assert_int_equal(b.len, sizeof sub311);
    assert_memory_equal(b.data, sub311, sizeof sub311);
    /* An empty list is refused by the encoder. */
    built.u.subscribe.n_subs = 0;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &built), TERN_EINVAL);
    assert_int_equal(b.len, sizeof sub311);
    tern_buf_free(&b);
}

static void test_subscribe_v5_options(void **state)
{
    (void)state;
    /* id 1, props: subscription id 300; "$share/g/x/#" QoS 2 RAP rh=2; "y" QoS 0 NL. */
    static const uint8_t want[] = { 0x82, 0x19, 0x00, 0x01, 0x03, 0x0B, 0xAC, 0x02, 0x00, 0x0C, '$',
        's', 'h', 'a', 'r', 'e', '/', 'g', '/', 'x', '/', '#', 0x2A, 0x00, 0x01, 'y', 0x04 };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(dec(want, sizeof want, TERN_MQTT_V5, &pkt, &st), 0);
    assert_int_equal(pkt.u.subscribe.props.subscription_id, 300);
    tern_mqtt_iter it;
    tern_mqtt_subscription s;
    tern_mqtt_sub_iter_init(&it, pkt.type, &pkt.u.subscribe);
    assert_true(tern_mqtt_sub_iter_next(&it, &s));
    assert_int_equal(s.qos, 2);
    assert_false(s.no_local);
    assert_true(s.retain_as_published);
    assert_int_equal(s.retain_handling, 2);
    assert_true(tern_mqtt_sub_iter_next(&it, &s));
    assert_int_equal(s.qos, 0);
    assert_true(s.no_local);
    assert_false(tern_mqtt_sub_iter_next(&it, &s));
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), 0);
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    tern_buf_free(&b);
}

static void test_subscribe_malformed(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    /* Flags must be 0b0010. */
    uint8_t f[sizeof sub311];
    memcpy(f, sub311, sizeof f);
    f[0] = 0x80;
    assert_int_equal(dec(f, sizeof f, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    f[0] = 0x83;
    assert_int_equal(dec(f, sizeof f, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    /* Requested QoS 3, and reserved bits in 3.1.1. */
    memcpy(f, sub311, sizeof f);
    f[9] = 0x03;
    assert_int_equal(dec(f, sizeof f, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    f[9] = 0x05;
    assert_int_equal(dec(f, sizeof f, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    /* Packet id 0. */
    memcpy(f, sub311, sizeof f);
    f[3] = 0;
    assert_int_equal(dec(f, sizeof f, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
    /* No filters. */
    static const uint8_t none311[] = { 0x82, 0x02, 0x00, 0x01 };
    assert_int_equal(dec(none311, sizeof none311, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
    static const uint8_t none5[] = { 0x82, 0x03, 0x00, 0x01, 0x00 };
    assert_int_equal(dec(none5, sizeof none5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    /* Filter without its options byte. */
    static const uint8_t noopt[] = { 0x82, 0x05, 0x00, 0x01, 0x00, 0x01, 'a' };
    assert_int_equal(dec(noopt, sizeof noopt, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    /* Bad filters: "a/#/b", "a+", "#a", "" and a shared one without group. */
    static const char *bad[] = { "a/#/b", "a+", "#a", "", "$share//x", "$share/g", "$share/g/" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint8_t b[32];
        size_t n = strlen(bad[i]);
        b[0] = 0x82;
        b[1] = (uint8_t)(2 + 2 + n + 1);
        b[2] = 0;
        b[3] = 1;
        b[4] = 0;
        b[5] = (uint8_t)n;
        memcpy(b + 6, bad[i], n);
        b[6 + n] = 0;
        assert_int_equal(dec(b, 7 + n, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
        assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    }
    /* 5.0 options: reserved bits 6/7, retain handling 3, no local on a shared subscription. */
    uint8_t o5[] = { 0x82, 0x07, 0x00, 0x01, 0x00, 0x00, 0x01, 'a', 0x40 };
    assert_int_equal(dec(o5, sizeof o5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    o5[8] = 0x80;
    assert_int_equal(dec(o5, sizeof o5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    o5[8] = 0x30;
    assert_int_equal(dec(o5, sizeof o5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
    o5[8] = 0x2E; /* rh 2, RAP, NL, QoS 2: fine on a plain filter */
    assert_int_equal(dec(o5, sizeof o5, TERN_MQTT_V5, &pkt, &st), 0);
    static const uint8_t nl_shared[] = { 0x82, 0x10, 0x00, 0x01, 0x00, 0x00, 0x0A, '$', 's', 'h',
        'a', 'r', 'e', '/', 'g', '/', 'a', 0x04 };
    assert_int_equal(dec(nl_shared, sizeof nl_shared, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
    /* Two subscription identifiers in a SUBSCRIBE. */
    static const uint8_t two_ids[]
        = { 0x82, 0x0B, 0x00, 0x01, 0x04, 0x0B, 0x01, 0x0B, 0x02, 0x00, 0x01, 'a', 0x00 };
    assert_int_equal(dec(two_ids, sizeof two_ids, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
}

static void test_unsubscribe(void **state)
{
    (void)state;
    static const uint8_t u311[]
        = { 0xA2, 0x0C, 0x00, 0x0A, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x03, 'c', '/', 'd' };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(dec(u311, sizeof u311, TERN_MQTT_V311, &pkt, &st), 0);
    assert_int_equal(pkt.type, TERN_MQTT_UNSUBSCRIBE);
    assert_int_equal(pkt.u.subscribe.n_subs, 2);
    tern_mqtt_iter it;
    tern_mqtt_subscription s;
    tern_mqtt_sub_iter_init(&it, pkt.type, &pkt.u.subscribe);
    assert_true(tern_mqtt_sub_iter_next(&it, &s));
    assert_true(mqtt_check_str_eq(s.filter, S("a/b")));
    assert_true(tern_mqtt_sub_iter_next(&it, &s));
    assert_true(mqtt_check_str_eq(s.filter, S("c/d")));
    assert_false(tern_mqtt_sub_iter_next(&it, &s));
    static const tern_mqtt_subscription subs[]
        = { { SI("a/b"), 0, false, false, 0 }, { SI("c/d"), 0, false, false, 0 } };
    tern_mqtt_packet built;
    memset(&built, 0, sizeof built);
    built.type = TERN_MQTT_UNSUBSCRIBE;
    built.u.subscribe.packet_id = 10;
    built.u.subscribe.subs = subs;
    built.u.subscribe.n_subs = 2;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &built), 0);
    assert_memory_equal(b.data, u311, sizeof u311);
    tern_buf_free(&b);
    /* Flags, empty list. */
    uint8_t f[sizeof u311];
    memcpy(f, u311, sizeof f);
    f[0] = 0xA0;
    assert_int_equal(dec(f, sizeof f, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    static const uint8_t none[] = { 0xA2, 0x03, 0x00, 0x01, 0x00 };
    assert_int_equal(dec(none, sizeof none, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_PROTOCOL_ERROR);
    /* A subscription identifier is not allowed in UNSUBSCRIBE. */
    static const uint8_t subid[] = { 0xA2, 0x07, 0x00, 0x01, 0x02, 0x0B, 0x01, 0x00, 0x00 };
    assert_int_equal(dec(subid, sizeof subid, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
}

static void test_acks(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    static const uint8_t sa311[] = { 0x90, 0x05, 0x00, 0x0A, 0x00, 0x02, 0x80 };
    assert_int_equal(dec(sa311, sizeof sa311, TERN_MQTT_V311, &pkt, &st), 0);
    assert_int_equal(pkt.u.suback.packet_id, 10);
    assert_int_equal(pkt.u.suback.n_reasons, 3);
    assert_int_equal(pkt.u.suback.reasons[2], 0x80);
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &pkt), 0);
    assert_memory_equal(b.data, sa311, sizeof sa311);
    uint8_t bad[sizeof sa311];
    memcpy(bad, sa311, sizeof bad);
    bad[5] = 0x03;
    assert_int_equal(dec(bad, sizeof bad, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    bad[5] = 0x8F; /* a 5.0 code, not a 3.1.1 return code */
    assert_int_equal(dec(bad, sizeof bad, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    /* As 5.0: property length 0, codes 0x8F and 0x80 (both SUBACK codes), then 0x04 (not). */
    assert_int_equal(dec(bad, sizeof bad, TERN_MQTT_V5, &pkt, &st), 0);
    bad[6] = 0x04;
    assert_int_equal(dec(bad, sizeof bad, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    static const uint8_t empty311[] = { 0x90, 0x02, 0x00, 0x0A };
    assert_int_equal(dec(empty311, sizeof empty311, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    /* 5.0 SUBACK: property length, then codes. */
    static const uint8_t sa5[] = { 0x90, 0x05, 0x00, 0x0A, 0x00, 0x01, 0xA2 };
    assert_int_equal(dec(sa5, sizeof sa5, TERN_MQTT_V5, &pkt, &st), 0);
    assert_int_equal(pkt.u.suback.n_reasons, 2);
    assert_int_equal(pkt.u.suback.reasons[1], TERN_MQTT_RC_WILDCARD_SUBS_NOT_SUPPORTED);
    /* 3.1.1 UNSUBACK: packet id only. 5.0: property length and one code per filter. */
    static const uint8_t ua311[] = { 0xB0, 0x02, 0x00, 0x0A };
    assert_int_equal(dec(ua311, sizeof ua311, TERN_MQTT_V311, &pkt, &st), 0);
    assert_int_equal(pkt.u.suback.n_reasons, 0);
    tern_buf_reset(&b);
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &pkt), 0);
    assert_memory_equal(b.data, ua311, sizeof ua311);
    static const uint8_t ua311_long[] = { 0xB0, 0x03, 0x00, 0x0A, 0x00 };
    assert_int_equal(dec(ua311_long, sizeof ua311_long, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    static const uint8_t ua5[] = { 0xB0, 0x05, 0x00, 0x0A, 0x00, 0x00, 0x11 };
    assert_int_equal(dec(ua5, sizeof ua5, TERN_MQTT_V5, &pkt, &st), 0);
    assert_int_equal(pkt.u.suback.n_reasons, 2);
    assert_int_equal(pkt.u.suback.reasons[1], TERN_MQTT_RC_NO_SUBSCRIPTION_EXISTED);
    tern_buf_reset(&b);
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), 0);
    assert_memory_equal(b.data, ua5, sizeof ua5);
    static const uint8_t ua5_bad[] = { 0xB0, 0x04, 0x00, 0x0A, 0x00, 0x01 };
    assert_int_equal(dec(ua5_bad, sizeof ua5_bad, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    static const uint8_t ua5_none[] = { 0xB0, 0x03, 0x00, 0x0A, 0x00 };
    assert_int_equal(dec(ua5_none, sizeof ua5_none, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    /* SUBACK flags must be 0. */
    static const uint8_t flags[] = { 0x92, 0x03, 0x00, 0x0A, 0x00 };
    assert_int_equal(dec(flags, sizeof flags, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_subscribe_v311_exact),
        cmocka_unit_test(test_subscribe_v5_options),
        cmocka_unit_test(test_subscribe_malformed),
        cmocka_unit_test(test_unsubscribe),
        cmocka_unit_test(test_acks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

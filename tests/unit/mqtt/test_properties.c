/*
 * test_properties.c: MQTT 5 properties: every identifier in the packets that allow it (round
 * trip), identifiers not allowed or unknown, duplicates, value ranges, UTF-8 in properties,
 * lengths that overrun, user properties kept in order, and forwarding them from decoded bytes.
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

/* Wraps property bytes (< 100) in a minimal 5.0 packet of the given type. Returns its size. */
static size_t wrap(uint8_t type, const uint8_t *props, size_t n, uint8_t *out)
{
    uint8_t body[256];
    size_t i = 0;
    switch (type) {
    case TERN_MQTT_CONNECT: {
        static const uint8_t h[] = { 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x02, 0x00, 0x1E };
        memcpy(body, h, sizeof h);
        i = sizeof h;
        break;
    }
    case TERN_MQTT_CONNACK:
        body[i++] = 0;
        body[i++] = 0;
        break;
    case TERN_MQTT_PUBLISH:
        body[i++] = 0;
        body[i++] = 1;
        body[i++] = 't';
        break;
    case TERN_MQTT_SUBSCRIBE:
        body[i++] = 0;
        body[i++] = 1;
        break;
    case TERN_MQTT_DISCONNECT:
    case TERN_MQTT_AUTH:
        body[i++] = type == TERN_MQTT_AUTH ? 0x18 : 0x00;
        break;
    default:
        fail();
    }
    body[i++] = (uint8_t)n;
    memcpy(body + i, props, n);
    i += n;
    if (type == TERN_MQTT_CONNECT) {
        body[i++] = 0;
        body[i++] = 1;
        body[i++] = 'c';
    } else if (type == TERN_MQTT_SUBSCRIBE) {
        body[i++] = 0;
        body[i++] = 1;
        body[i++] = 'a';
        body[i++] = 0;
    }
    uint8_t flags = type == TERN_MQTT_SUBSCRIBE ? 2 : 0;
    out[0] = (uint8_t)(type << 4 | flags);
    out[1] = (uint8_t)i;
    memcpy(out + 2, body, i);
    return i + 2;
}

static int dec_props(
    uint8_t type, const uint8_t *props, size_t n, tern_mqtt_packet *pkt, tern_mqtt_status *st)
{
    static uint8_t buf[300]; /* static: the decoded views borrow it after we return */
    size_t len = wrap(type, props, n, buf);
    int rc = mqtt_check_decode(buf, len, type == TERN_MQTT_CONNECT ? 0 : TERN_MQTT_V5, pkt, st);
    if (rc == 0)
        assert_null(mqtt_check_roundtrip(buf, len, type == TERN_MQTT_CONNECT ? 0 : TERN_MQTT_V5));
    return rc;
}

#define EXPECT(type, rc, want_reason, ...)                                                         \
    do {                                                                                           \
        static const uint8_t p_[] = { __VA_ARGS__ };                                               \
        tern_mqtt_packet pkt_;                                                                     \
        tern_mqtt_status st_;                                                                      \
        assert_int_equal(dec_props(type, p_, sizeof p_, &pkt_, &st_), rc);                         \
        if (rc)                                                                                    \
            assert_int_equal(st_.reason, want_reason);                                             \
    } while (0)

static void test_all_connack_properties(void **state)
{
    (void)state;
    static const uint8_t p[] = {
        0x11, 0x00, 0x00, 0x00, 0x3C,           /* session expiry 60 */
        0x21, 0x01, 0x00,                       /* receive maximum 256 */
        0x24, 0x01,                             /* maximum QoS 1 */
        0x25, 0x00,                             /* retain available 0 */
        0x27, 0x00, 0x01, 0x00, 0x00,           /* maximum packet size 65536 */
        0x12, 0x00, 0x02, 'i', 'd',             /* assigned client id */
        0x22, 0x00, 0x08,                       /* topic alias maximum 8 */
        0x1F, 0x00, 0x02, 'o', 'k',             /* reason string */
        0x26, 0x00, 0x01, 'k', 0x00, 0x01, 'v', /* user */
        0x28, 0x01, 0x29, 0x00, 0x2A, 0x01,     /* wildcard / sub id / shared available */
        0x13, 0x00, 0x0A,                       /* server keep alive 10 */
        0x1A, 0x00, 0x01, 'r',                  /* response information */
        0x1C, 0x00, 0x01, 's',                  /* server reference */
        0x15, 0x00, 0x01, 'm',                  /* authentication method */
        0x16, 0x00, 0x02, 0x00, 0xFF,           /* authentication data (binary) */
    };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(dec_props(TERN_MQTT_CONNACK, p, sizeof p, &pkt, &st), 0);
    const tern_mqtt_props *x = &pkt.u.connack.props;
    assert_int_equal(x->session_expiry_s, 60);
    assert_int_equal(x->receive_max, 256);
    assert_int_equal(x->max_qos, 1);
    assert_int_equal(x->retain_available, 0);
    assert_true(TERN_MQTT_HAS_PROP(x, TERN_MQTT_PROP_RETAIN_AVAILABLE));
    assert_int_equal(x->max_packet_size, 65536);
    assert_true(mqtt_check_str_eq(x->assigned_client_id, S("id")));
    assert_int_equal(x->topic_alias_max, 8);
    assert_true(mqtt_check_str_eq(x->reason_string, S("ok")));
    assert_int_equal(x->n_user, 1);
    assert_int_equal(x->wildcard_sub_available, 1);
    assert_int_equal(x->sub_id_available, 0);
    assert_int_equal(x->shared_sub_available, 1);
    assert_int_equal(x->server_keep_alive_s, 10);
    assert_true(mqtt_check_str_eq(x->response_info, S("r")));
    assert_true(mqtt_check_str_eq(x->server_reference, S("s")));
    assert_true(mqtt_check_str_eq(x->auth_method, S("m")));
    assert_int_equal(x->auth_data.len, 2);
    assert_false(TERN_MQTT_HAS_PROP(x, TERN_MQTT_PROP_TOPIC_ALIAS));
}

static void test_connect_and_will_properties(void **state)
{
    (void)state;
    /* CONNECT props: request problem/response info, topic alias max, max packet size, auth.
     * Will props: will delay, payload format, message expiry, content type, response topic,
     * correlation data, user. */
    static const uint8_t b[] = { 0x10, 0x52, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x0E, 0x00, 0x1E,
        0x16, 0x17, 0x00, 0x19, 0x01, 0x22, 0x00, 0x04, 0x27, 0x00, 0x00, 0x10, 0x00, 0x15, 0x00,
        0x04, 'S', 'C', 'R', 'A', 0x16, 0x00, 0x00, 0x00, 0x02, 'c', 'l', 0x23, 0x18, 0x00, 0x00,
        0x00, 0x05, 0x01, 0x01, 0x02, 0x00, 0x00, 0x01, 0x00, 0x03, 0x00, 0x04, 't', 'e', 'x', 't',
        0x08, 0x00, 0x03, 'r', '/', 't', 0x09, 0x00, 0x01, 0x07, 0x26, 0x00, 0x01, 'a', 0x00, 0x00,
        0x00, 0x03, 'w', '/', 't', 0x00, 0x02, 'o', 'k' };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(b, sizeof b, 0, &pkt, &st), 0);
    const tern_mqtt_connect *c = &pkt.u.connect;
    assert_int_equal(c->props.request_problem_info, 0);
    assert_int_equal(c->props.request_response_info, 1);
    assert_int_equal(c->props.topic_alias_max, 4);
    assert_int_equal(c->props.max_packet_size, 4096);
    assert_true(mqtt_check_str_eq(c->props.auth_method, S("SCRA")));
    assert_true(TERN_MQTT_HAS_PROP(&c->props, TERN_MQTT_PROP_AUTH_DATA));
    assert_int_equal(c->props.auth_data.len, 0);
    assert_true(c->has_will);
    assert_int_equal(c->will_qos, 1);
    assert_int_equal(c->will_props.will_delay_s, 5);
    assert_int_equal(c->will_props.payload_format, 1);
    assert_int_equal(c->will_props.message_expiry_s, 256);
    assert_true(mqtt_check_str_eq(c->will_props.content_type, S("text")));
    assert_true(mqtt_check_str_eq(c->will_props.response_topic, S("r/t")));
    assert_int_equal(c->will_props.correlation_data.len, 1);
    tern_mqtt_iter it;
    tern_mqtt_user_prop up;
    tern_mqtt_props_user_begin(&c->will_props, &it);
    assert_true(tern_mqtt_props_user_next(&it, &up));
    assert_true(mqtt_check_str_eq(up.key, S("a")));
    assert_int_equal(up.value.len, 0);
    assert_false(tern_mqtt_props_user_next(&it, &up));
    assert_true(mqtt_check_str_eq(c->will_topic, S("w/t")));
    assert_null(mqtt_check_roundtrip(b, sizeof b, 0));
}

static void test_not_allowed_and_unknown(void **state)
{
    (void)state;
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x81, 0x23, 0x00, 0x01); /* topic alias */
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x81, 0x18, 0, 0, 0, 1); /* will delay outside will */
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x81, 0x17, 0x01);       /* request problem info */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x11, 0, 0, 0, 1); /* session expiry */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x1F, 0x00, 0x00); /* reason string */
    EXPECT(TERN_MQTT_DISCONNECT, TERN_EPROTO, 0x81, 0x15, 0x00, 0x01, 'm');
    EXPECT(TERN_MQTT_AUTH, TERN_EPROTO, 0x81, 0x11, 0, 0, 0, 1);
    EXPECT(TERN_MQTT_SUBSCRIBE, TERN_EPROTO, 0x81, 0x1F, 0x00, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x04, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x7F, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x80, 0x01, 0x00); /* identifier 128 */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x81, 0x00);       /* 1 as a non-minimal VBI */
    /* A non-minimal VBI identifier for a real property is accepted like the remaining length. */
    EXPECT(TERN_MQTT_PUBLISH, 0, 0, 0x81, 0x00, 0x01);
}

static void test_duplicates(void **state)
{
    (void)state;
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x82, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x82, 0x03, 0x00, 0x01, 'a', 0x03, 0x00, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x82, 0x23, 0x00, 0x01, 0x23, 0x00, 0x01);
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x82, 0x24, 0x00, 0x24, 0x00);
    EXPECT(TERN_MQTT_DISCONNECT, TERN_EPROTO, 0x82, 0x1F, 0x00, 0x00, 0x1F, 0x00, 0x00);
    EXPECT(TERN_MQTT_AUTH, TERN_EPROTO, 0x82, 0x15, 0x00, 0x01, 'a', 0x15, 0x00, 0x01, 'a');
    /* Repeatable: user properties anywhere, subscription identifiers in PUBLISH. */
    static const uint8_t p[]
        = { 0x26, 0x00, 0x01, 'k', 0x00, 0x01, '1', 0x0B, 0x05, 0x26, 0x00, 0x01, 'k', 0x00, 0x01,
              '2', 0x0B, 0xFF, 0xFF, 0xFF, 0x7F, 0x26, 0x00, 0x01, 'j', 0x00, 0x00 };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(dec_props(TERN_MQTT_PUBLISH, p, sizeof p, &pkt, &st), 0);
    const tern_mqtt_props *x = &pkt.u.publish.props;
    assert_int_equal(x->n_user, 3);
    assert_int_equal(x->n_sub_ids, 2);
    assert_int_equal(x->subscription_id, 5);
    tern_mqtt_iter it;
    tern_mqtt_user_prop up;
    const char *want_v[] = { "1", "2", "" };
    const char *want_k[] = { "k", "k", "j" };
    tern_mqtt_props_user_begin(x, &it);
    for (int i = 0; i < 3; i++) {
        assert_true(tern_mqtt_props_user_next(&it, &up));
        assert_int_equal(up.key.len, 1);
        assert_memory_equal(up.key.p, want_k[i], 1);
        assert_int_equal(up.value.len, strlen(want_v[i]));
        assert_memory_equal(up.value.p, want_v[i], up.value.len);
    }
    assert_false(tern_mqtt_props_user_next(&it, &up));
    uint32_t id;
    tern_mqtt_props_sub_id_begin(x, &it);
    assert_true(tern_mqtt_props_sub_id_next(&it, &id));
    assert_int_equal(id, 5);
    assert_true(tern_mqtt_props_sub_id_next(&it, &id));
    assert_int_equal(id, 268435455);
    assert_false(tern_mqtt_props_sub_id_next(&it, &id));
}

static void test_value_ranges(void **state)
{
    (void)state;
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x82, 0x21, 0x00, 0x00); /* receive maximum 0 */
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x82, 0x21, 0x00, 0x00);
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x82, 0x27, 0, 0, 0, 0); /* max packet size 0 */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x82, 0x01, 0x02);       /* payload format 2 */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x82, 0x23, 0x00, 0x00); /* topic alias 0 */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x82, 0x0B, 0x00);       /* subscription id 0 */
    EXPECT(TERN_MQTT_SUBSCRIBE, TERN_EPROTO, 0x82, 0x0B, 0x00);
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x82, 0x17, 0x02); /* request problem info */
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x82, 0x19, 0x02); /* request response info */
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x82, 0x24, 0x02); /* maximum QoS 2 */
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x82, 0x25, 0x02);
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x82, 0x28, 0x02);
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x82, 0x29, 0xFF);
    EXPECT(TERN_MQTT_CONNACK, TERN_EPROTO, 0x82, 0x2A, 0x02);
    EXPECT(TERN_MQTT_CONNECT, TERN_EPROTO, 0x82, 0x16, 0x00, 0x01, 0x00); /* data, no method */
    EXPECT(TERN_MQTT_AUTH, TERN_EPROTO, 0x82, 0x16, 0x00, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x82, 0x08, 0x00, 0x03, 'a', '/', '#');
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x82, 0x08, 0x00, 0x00); /* empty response topic */
    /* The edges that are fine. */
    EXPECT(TERN_MQTT_CONNECT, 0, 0, 0x21, 0xFF, 0xFF, 0x27, 0xFF, 0xFF, 0xFF, 0xFF, 0x22, 0, 0);
    EXPECT(TERN_MQTT_PUBLISH, 0, 0, 0x01, 0x01, 0x23, 0xFF, 0xFF, 0x02, 0xFF, 0xFF, 0xFF, 0xFF);
    EXPECT(TERN_MQTT_CONNACK, 0, 0, 0x24, 0x00, 0x13, 0x00, 0x00);
    EXPECT(TERN_MQTT_AUTH, 0, 0, 0x15, 0x00, 0x01, 'm', 0x16, 0x00, 0x00);
}

static void test_lengths_and_utf8(void **state)
{
    (void)state;
    /* String running past the property block (declared 5, 1 present). */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x03, 0x00, 0x05, 'a');
    /* Fixed-size value cut by the property length. */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x02, 0x00, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x0B, 0x80);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x0B, 0x80, 0x80, 0x80, 0x80, 0x01);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EPROTO, 0x81, 0x26, 0x00, 0x01, 'k', 0x00);
    /* Bad UTF-8 in a string property and in a user property. */
    EXPECT(TERN_MQTT_PUBLISH, TERN_EUTF8, 0x81, 0x03, 0x00, 0x02, 0xC0, 0x80);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EUTF8, 0x81, 0x26, 0x00, 0x01, 0x00, 0x00, 0x00);
    EXPECT(TERN_MQTT_PUBLISH, TERN_EUTF8, 0x81, 0x26, 0x00, 0x00, 0x00, 0x03, 0xED, 0xA0, 0x80);
    /* Binary correlation data may hold anything. */
    EXPECT(TERN_MQTT_PUBLISH, 0, 0, 0x09, 0x00, 0x03, 0x00, 0xC0, 0xFF);
    /* Property length beyond the packet. */
    static const uint8_t over[] = { 0x30, 0x05, 0x00, 0x01, 't', 0x09, 0x01 };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(over, sizeof over, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
}

static void test_encoder_rejects_and_forwards(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    tern_mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_PUBACK;
    pkt.u.ack.packet_id = 1;
    pkt.u.ack.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS);
    pkt.u.ack.props.topic_alias = 3;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), TERN_EINVAL);
    assert_int_equal(b.len, 0);
    /* 3.1.1 ignores properties altogether. */
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &pkt), 0);
    assert_int_equal(b.len, 4);
    /* A subscription identifier array in a CONNACK is refused. */
    static const uint32_t ids[] = { 1, 2 };
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_CONNACK;
    pkt.u.connack.props.sub_ids = ids;
    pkt.u.connack.props.n_sub_ids = 2;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), TERN_EINVAL);

    /* Forwarding: decode a client's PUBLISH (alias + user properties), drop the alias, give it
     * the subscriber's subscription identifiers, re-encode: user properties are kept. */
    static const uint8_t in[] = { 0x30, 0x17, 0x00, 0x01, 't', 0x11, 0x23, 0x00, 0x01, 0x26, 0x00,
        0x01, 'a', 0x00, 0x01, '1', 0x26, 0x00, 0x01, 'b', 0x00, 0x01, '2', 'x', 'y' };
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(in, sizeof in, TERN_MQTT_V5, &pkt, &st), 0);
    tern_mqtt_packet out = pkt;
    out.u.publish.props.present &= ~TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS);
    out.u.publish.props.sub_ids = ids;
    out.u.publish.props.n_sub_ids = 2;
    tern_buf_reset(&b);
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &out), 0);
    tern_mqtt_packet back;
    assert_int_equal(mqtt_check_decode(b.data, b.len, TERN_MQTT_V5, &back, &st), 0);
    assert_false(TERN_MQTT_HAS_PROP(&back.u.publish.props, TERN_MQTT_PROP_TOPIC_ALIAS));
    assert_int_equal(back.u.publish.props.n_user, 2);
    assert_int_equal(back.u.publish.props.n_sub_ids, 2);
    assert_null(mqtt_check_diff(&back, &out));
    assert_int_equal(back.u.publish.payload_len, 2);
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_connack_properties),
        cmocka_unit_test(test_connect_and_will_properties),
        cmocka_unit_test(test_not_allowed_and_unknown),
        cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_value_ranges),
        cmocka_unit_test(test_lengths_and_utf8),
        cmocka_unit_test(test_encoder_rejects_and_forwards),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

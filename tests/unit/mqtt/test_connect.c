/*
 * test_connect.c: CONNECT and CONNACK of both versions: byte-exact encodings, the protocol name
 * and level rules (TERN_EVERSION), the connect flags rules, client id rules, and CONNACK checks.
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

/* The 3.1.1 specification's variable header example (flags 0xCE, keep alive 10) completed with
 * client id "c1", will topic "w/t", will message "bye", user "u", password "pw". */
/* clang-format off */
static const uint8_t connect_v311[] = {
    0x10, 0x1F,                                               /* CONNECT, remaining length 31 */
    0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xCE, 0x00, 0x0A,   /* name, level, flags, keep alive */
    0x00, 0x02, 'c', '1',                                     /* client id */
    0x00, 0x03, 'w', '/', 't',                                /* will topic */
    0x00, 0x03, 'b', 'y', 'e',                                /* will payload */
    0x00, 0x01, 'u',                                          /* user name */
    0x00, 0x02, 'p', 'w',                                     /* password */
};
/* clang-format on */

static void test_connect_v311_exact(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(connect_v311, sizeof connect_v311, 0, &pkt, &st), 0);
    const tern_mqtt_connect *c = &pkt.u.connect;
    assert_int_equal(pkt.type, TERN_MQTT_CONNECT);
    assert_int_equal(c->version, TERN_MQTT_V311);
    assert_true(c->clean_start);
    assert_true(c->has_will);
    assert_int_equal(c->will_qos, 1);
    assert_false(c->will_retain);
    assert_true(c->has_username);
    assert_true(c->has_password);
    assert_int_equal(c->keep_alive_s, 10);
    assert_true(mqtt_check_str_eq(c->client_id, S("c1")));
    assert_true(mqtt_check_str_eq(c->will_topic, S("w/t")));
    assert_true(mqtt_check_str_eq(c->will_payload, S("bye")));
    assert_true(mqtt_check_str_eq(c->username, S("u")));
    assert_true(mqtt_check_str_eq(c->password, S("pw")));
    /* Zero copy: views point into the input. */
    assert_ptr_equal(c->client_id.p, connect_v311 + 14);

    tern_mqtt_packet built;
    memset(&built, 0, sizeof built);
    built.type = TERN_MQTT_CONNECT;
    built.u.connect = (tern_mqtt_connect) { .version = TERN_MQTT_V311,
        .clean_start = true,
        .has_will = true,
        .will_qos = 1,
        .has_username = true,
        .has_password = true,
        .keep_alive_s = 10,
        .client_id = S("c1"),
        .will_topic = S("w/t"),
        .will_payload = S("bye"),
        .username = S("u"),
        .password = S("pw") };
    tern_buf b = TERN_BUF_INIT;
    /* The version argument is ignored for CONNECT: the packet says which. */
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &built), 0);
    assert_int_equal(b.len, sizeof connect_v311);
    assert_memory_equal(b.data, connect_v311, sizeof connect_v311);
    tern_buf_free(&b);
}

static void test_connect_v5_exact(void **state)
{
    (void)state;
    /* MQTT 5 CONNECT, clean start, keep alive 60, properties: session expiry 3600, receive max
     * 20, one user property; client id "ev-1"; no will, no credentials. */
    static const uint8_t want[] = {
        0x10,
        0x23,
        0x00,
        0x04,
        'M',
        'Q',
        'T',
        'T',
        0x05,
        0x02,
        0x00,
        0x3C,
        0x12, /* property length 18 */
        0x11,
        0x00,
        0x00,
        0x0E,
        0x10, /* session expiry 3600 */
        0x21,
        0x00,
        0x14, /* receive maximum 20 */
        0x26,
        0x00,
        0x02,
        'k',
        '1',
        0x00,
        0x03,
        'v',
        'a',
        'l', /* user property */
        0x00,
        0x04,
        'e',
        'v',
        '-',
        '1',
    };
    static const tern_mqtt_user_prop up[] = { { SI("k1"), SI("val") } };
    tern_mqtt_packet built;
    memset(&built, 0, sizeof built);
    built.type = TERN_MQTT_CONNECT;
    built.u.connect.version = TERN_MQTT_V5;
    built.u.connect.clean_start = true;
    built.u.connect.keep_alive_s = 60;
    built.u.connect.client_id = S("ev-1");
    built.u.connect.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SESSION_EXPIRY)
        | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RECEIVE_MAX);
    built.u.connect.props.session_expiry_s = 3600;
    built.u.connect.props.receive_max = 20;
    built.u.connect.props.user = up;
    built.u.connect.props.n_user = 1;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, 0, &built), 0);
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);

    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(want, sizeof want, 0, &pkt, &st), 0);
    assert_int_equal(pkt.u.connect.version, TERN_MQTT_V5);
    assert_int_equal(pkt.u.connect.props.session_expiry_s, 3600);
    assert_int_equal(pkt.u.connect.props.receive_max, 20);
    assert_int_equal(pkt.u.connect.props.n_user, 1);
    assert_null(mqtt_check_diff(&pkt, &built));
    tern_buf_free(&b);
}

/* Decodes buf as a first packet and checks the error and reason. */
static void expect_error(const uint8_t *buf, size_t len, int rc, uint8_t reason)
{
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(buf, len, 0, &pkt, &st), rc);
    assert_int_equal(st.reason, reason);
    assert_non_null(st.what);
}

/* A minimal CONNECT (clean, client id "c") with the given name, level and flags. */
static size_t make_connect(uint8_t *out, const char *name, uint8_t level, uint8_t flags)
{
    size_t n = strlen(name), i = 0;
    out[i++] = 0x10;
    out[i++] = (uint8_t)(2 + n + 4 + 3);
    out[i++] = 0;
    out[i++] = (uint8_t)n;
    memcpy(out + i, name, n);
    i += n;
    out[i++] = level;
    out[i++] = flags;
    out[i++] = 0;
    out[i++] = 30;
    out[i++] = 0;
    out[i++] = 1;
    out[i++] = 'c';
    return i;
}

static void test_protocol_name_and_level(void **state)
{
    (void)state;
    uint8_t b[64];
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    size_t n = make_connect(b, "MQTT", 4, 0x02);
    assert_int_equal(mqtt_check_decode(b, n, 0, &pkt, &st), 0);
    n = make_connect(b, "MQTT", 3, 0x02);
    expect_error(b, n, TERN_EVERSION, TERN_MQTT_RC_UNSUPPORTED_VERSION);
    n = make_connect(b, "MQTT", 6, 0x02);
    expect_error(b, n, TERN_EVERSION, TERN_MQTT_RC_UNSUPPORTED_VERSION);
    n = make_connect(b, "MQIsdp", 3, 0x02);
    expect_error(b, n, TERN_EVERSION, TERN_MQTT_RC_UNSUPPORTED_VERSION);
    assert_int_equal(tern_mqtt_reason_v311_connack(TERN_MQTT_RC_UNSUPPORTED_VERSION), 1);
    n = make_connect(b, "MQTX", 4, 0x02);
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_UNSUPPORTED_VERSION);
    n = make_connect(b, "mqtt", 5, 0x02);
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_UNSUPPORTED_VERSION);
}

static void test_connect_flags(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n;
    /* Reserved bit 0. */
    n = make_connect(b, "MQTT", 4, 0x03);
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
    /* Will QoS 3 (with will flag). */
    n = make_connect(b, "MQTT", 4, 0x02 | 0x04 | 0x18);
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
    /* Will QoS 1 without will flag. */
    n = make_connect(b, "MQTT", 4, 0x02 | 0x08);
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
    /* Will retain without will flag. */
    n = make_connect(b, "MQTT", 5, 0x02 | 0x20);
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
    /* Password without user name: invalid in 3.1.1. */
    n = make_connect(b, "MQTT", 4, 0x02 | 0x40);
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
    /* Fixed header flags must be 0. */
    n = make_connect(b, "MQTT", 4, 0x02);
    b[0] = 0x12;
    expect_error(b, n, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
}

static void test_password_without_username_v5(void **state)
{
    (void)state;
    /* 5.0 allows a password without a user name. */
    static const uint8_t b[] = { 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x42, 0x00, 0x1E,
        0x00, 0x00, 0x01, 'c', 0x00, 0x02, 'p', 'w' };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(b, sizeof b, 0, &pkt, &st), 0);
    assert_false(pkt.u.connect.has_username);
    assert_true(pkt.u.connect.has_password);
    assert_true(mqtt_check_str_eq(pkt.u.connect.password, S("pw")));
}

static void test_client_id_rules(void **state)
{
    (void)state;
    /* 3.1.1: an empty client id without clean session is well-formed; refusing it is the
     * server's policy, answered with CONNACK 0x02 (MQTT-3.1.3-8), so the decoder accepts it. */
    uint8_t b[]
        = { 0x10, 0x0C, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x00, 0x00, 0x1E, 0x00, 0x00 };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(b, sizeof b, 0, &pkt, &st), 0);
    assert_false(pkt.u.connect.clean_start);
    assert_int_equal(tern_mqtt_reason_v311_connack(TERN_MQTT_RC_CLIENT_ID_INVALID), 2);
    assert_int_equal(tern_mqtt_reason_v311_connack(TERN_MQTT_RC_CONNECTION_RATE_EXCEEDED), 3);
    b[9] = 0x02;
    assert_int_equal(mqtt_check_decode(b, sizeof b, 0, &pkt, &st), 0);
    assert_int_equal(pkt.u.connect.client_id.len, 0);
    /* 5.0: an empty client id is allowed either way (the server assigns one). */
    uint8_t b5[]
        = { 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x05, 0x00, 0x00, 0x1E, 0x00, 0x00, 0x00 };
    assert_int_equal(mqtt_check_decode(b5, sizeof b5, 0, &pkt, &st), 0);
}

static void test_will_rules(void **state)
{
    (void)state;
    /* Will topic with a wildcard: topic name invalid. */
    uint8_t b[] = { 0x10, 0x15, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x1E, 0x00, 0x01,
        'c', 0x00, 0x03, 'a', '/', '#', 0x00, 0x01, 'x' };
    expect_error(b, sizeof b, TERN_EPROTO, TERN_MQTT_RC_TOPIC_NAME_INVALID);
    b[19] = 'b';
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(b, sizeof b, 0, &pkt, &st), 0);
    assert_true(mqtt_check_str_eq(pkt.u.connect.will_topic, S("a/b")));
    /* Empty will topic. */
    uint8_t e[] = { 0x10, 0x12, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x1E, 0x00, 0x01,
        'c', 0x00, 0x00, 0x00, 0x01, 'x' };
    expect_error(e, sizeof e, TERN_EPROTO, TERN_MQTT_RC_TOPIC_NAME_INVALID);
    /* Will flag set but the will fields are missing: a field runs past the packet. */
    uint8_t m[]
        = { 0x10, 0x0D, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x06, 0x00, 0x1E, 0x00, 0x01, 'c' };
    expect_error(m, sizeof m, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
}

static void test_trailing_and_first_packet(void **state)
{
    (void)state;
    uint8_t b[64];
    size_t n = make_connect(b, "MQTT", 4, 0x02);
    /* One extra byte inside the remaining length. */
    b[1]++;
    b[n] = 'x';
    expect_error(b, n + 1, TERN_EPROTO, TERN_MQTT_RC_MALFORMED);
    /* Before CONNECT, nothing else decodes. */
    static const uint8_t ping[] = { 0xC0, 0x00 };
    expect_error(ping, sizeof ping, TERN_EPROTO, TERN_MQTT_RC_PROTOCOL_ERROR);
}

static void test_connack(void **state)
{
    (void)state;
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    static const uint8_t ok311[] = { 0x20, 0x02, 0x01, 0x00 };
    assert_int_equal(mqtt_check_decode(ok311, sizeof ok311, TERN_MQTT_V311, &pkt, &st), 0);
    assert_true(pkt.u.connack.session_present);
    assert_int_equal(pkt.u.connack.reason, 0);
    static const uint8_t rc5[] = { 0x20, 0x02, 0x00, 0x05 };
    assert_int_equal(mqtt_check_decode(rc5, sizeof rc5, TERN_MQTT_V311, &pkt, &st), 0);
    assert_int_equal(pkt.u.connack.reason, 5);
    static const uint8_t rc6[] = { 0x20, 0x02, 0x00, 0x06 };
    assert_int_equal(mqtt_check_decode(rc6, sizeof rc6, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    static const uint8_t flags[] = { 0x20, 0x02, 0x02, 0x00 };
    assert_int_equal(
        mqtt_check_decode(flags, sizeof flags, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    static const uint8_t sp_fail[] = { 0x20, 0x02, 0x01, 0x04 };
    assert_int_equal(
        mqtt_check_decode(sp_fail, sizeof sp_fail, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    static const uint8_t long311[] = { 0x20, 0x03, 0x00, 0x00, 0x00 };
    assert_int_equal(
        mqtt_check_decode(long311, sizeof long311, TERN_MQTT_V311, &pkt, &st), TERN_EPROTO);
    /* 5.0: flags, reason, properties (assigned client id "x", max QoS 1, topic alias max 10). */
    static const uint8_t v5[] = { 0x20, 0x0E, 0x00, 0x00, 0x0B, 0x12, 0x00, 0x01, 'x', 0x22, 0x00,
        0x0A, 0x24, 0x01, 0x2A, 0x00 };
    assert_int_equal(mqtt_check_decode(v5, sizeof v5, TERN_MQTT_V5, &pkt, &st), 0);
    assert_true(mqtt_check_str_eq(pkt.u.connack.props.assigned_client_id, S("x")));
    assert_int_equal(pkt.u.connack.props.max_qos, 1);
    assert_int_equal(pkt.u.connack.props.topic_alias_max, 10);
    assert_true(TERN_MQTT_HAS_PROP(&pkt.u.connack.props, TERN_MQTT_PROP_SHARED_SUB_AVAILABLE));
    assert_int_equal(pkt.u.connack.props.shared_sub_available, 0);
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &pkt), 0);
    assert_int_equal(b.len, sizeof v5);
    assert_memory_equal(b.data, v5, sizeof v5);
    tern_buf_free(&b);
    /* 5.0 reason not allowed in CONNACK (0x04 is DISCONNECT's). */
    static const uint8_t bad5[] = { 0x20, 0x03, 0x00, 0x04, 0x00 };
    assert_int_equal(mqtt_check_decode(bad5, sizeof bad5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
    static const uint8_t refused5[] = { 0x20, 0x03, 0x00, 0x87, 0x00 };
    assert_int_equal(mqtt_check_decode(refused5, sizeof refused5, TERN_MQTT_V5, &pkt, &st), 0);
    assert_int_equal(pkt.u.connack.reason, TERN_MQTT_RC_NOT_AUTHORIZED);
    /* 5.0 CONNACK without its property length is malformed. */
    static const uint8_t short5[] = { 0x20, 0x02, 0x00, 0x00 };
    assert_int_equal(
        mqtt_check_decode(short5, sizeof short5, TERN_MQTT_V5, &pkt, &st), TERN_EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_v311_exact),
        cmocka_unit_test(test_connect_v5_exact),
        cmocka_unit_test(test_protocol_name_and_level),
        cmocka_unit_test(test_connect_flags),
        cmocka_unit_test(test_password_without_username_v5),
        cmocka_unit_test(test_client_id_rules),
        cmocka_unit_test(test_will_rules),
        cmocka_unit_test(test_trailing_and_first_packet),
        cmocka_unit_test(test_connack),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

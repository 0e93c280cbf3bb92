/*
 * test_roundtrip.c: every packet type of both versions encodes, decodes back to the same fields,
 * re-encodes to the same bytes; every truncation of each encoding is TERN_EPARTIAL; a stream of
 * packets decodes one after the other; reason code and type names.
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

static const tern_mqtt_user_prop users[] = { { SI("site"), SI("lyon") }, { SI("k"), SI("") } };
static const uint32_t sub_ids[] = { 1, 128, 16384 };
static const tern_mqtt_subscription subs[] = {
    { SI("fleet/+/telemetry"), 1, false, false, 0 },
    { SI("$share/g/fleet/#"), 2, false, true, 1 },
    { SI("cmd/x"), 0, true, false, 2 },
};
static const uint8_t suback_codes[] = { 0x01, 0x02, 0x80 };
static const uint8_t unsuback_codes[] = { 0x00, 0x11, 0x87 };
static uint8_t big_payload[20000];

#define N_PACKETS 32

/* Builds one packet of each kind (some types twice: plain and with everything set). */
static size_t build_all(uint8_t v, tern_mqtt_packet *out)
{
    bool v5 = v == TERN_MQTT_V5;
    size_t n = 0;
    memset(out, 0, sizeof(tern_mqtt_packet) * N_PACKETS);
    tern_mqtt_packet *p;

    p = &out[n++]; /* minimal CONNECT */
    p->type = TERN_MQTT_CONNECT;
    p->u.connect.version = v;
    p->u.connect.clean_start = true;
    p->u.connect.client_id = S("dev-1");

    p = &out[n++]; /* full CONNECT */
    p->type = TERN_MQTT_CONNECT;
    tern_mqtt_connect *c = &p->u.connect;
    c->version = v;
    c->keep_alive_s = 65535;
    c->client_id = S("ev-000042");
    c->has_will = true;
    c->will_qos = 2;
    c->will_retain = true;
    c->will_topic = S("fleet/ev-000042/status");
    c->will_payload = S("offline");
    c->has_username = true;
    c->username = S("user");
    c->has_password = true;
    c->password = S("secret\x01\x02");
    if (v5) {
        c->props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SESSION_EXPIRY)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RECEIVE_MAX)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MAX_PACKET_SIZE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS_MAX)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REQUEST_RESPONSE_INFO)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REQUEST_PROBLEM_INFO)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_AUTH_METHOD)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_AUTH_DATA);
        c->props.session_expiry_s = 0xFFFFFFFF;
        c->props.receive_max = 100;
        c->props.max_packet_size = 1 << 20;
        c->props.topic_alias_max = 16;
        c->props.request_response_info = 1;
        c->props.request_problem_info = 0;
        c->props.auth_method = S("SCRAM-SHA-256");
        c->props.auth_data = S("\x00\x01");
        c->props.user = users;
        c->props.n_user = 2;
        c->will_props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_WILL_DELAY)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_PAYLOAD_FORMAT)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MESSAGE_EXPIRY)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CONTENT_TYPE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RESPONSE_TOPIC)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CORRELATION_DATA);
        c->will_props.will_delay_s = 30;
        c->will_props.payload_format = 1;
        c->will_props.message_expiry_s = 3600;
        c->will_props.content_type = S("text/plain");
        c->will_props.response_topic = S("r/1");
        c->will_props.correlation_data = S("\xFF");
        c->will_props.user = users;
        c->will_props.n_user = 1;
    }

    p = &out[n++];
    p->type = TERN_MQTT_CONNACK;
    p->u.connack.session_present = true;
    if (v5) {
        p->u.connack.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_ASSIGNED_CLIENT_ID)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SERVER_KEEP_ALIVE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MAX_QOS)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RETAIN_AVAILABLE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_WILDCARD_SUB_AVAILABLE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SUB_ID_AVAILABLE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SHARED_SUB_AVAILABLE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RESPONSE_INFO)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SERVER_REFERENCE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REASON_STRING);
        p->u.connack.props.assigned_client_id = S("auto-1");
        p->u.connack.props.server_keep_alive_s = 60;
        p->u.connack.props.max_qos = 1;
        p->u.connack.props.retain_available = 1;
        p->u.connack.props.response_info = S("resp/");
        p->u.connack.props.server_reference = S("other:1883");
        p->u.connack.props.reason_string = S("welcome");
    }

    p = &out[n++];
    p->type = TERN_MQTT_CONNACK;
    p->u.connack.reason = v5 ? TERN_MQTT_RC_BAD_USERNAME_PASSWORD : 4;

    p = &out[n++]; /* QoS 0 PUBLISH, empty payload */
    p->type = TERN_MQTT_PUBLISH;
    p->u.publish.topic = S("fleet/ev-1/m/soc");

    p = &out[n++]; /* QoS 1 retained, big payload (3-byte remaining length) */
    p->type = TERN_MQTT_PUBLISH;
    p->u.publish.qos = 1;
    p->u.publish.retain = true;
    p->u.publish.packet_id = 65535;
    p->u.publish.topic = S("fleet/ev-1/config");
    p->u.publish.payload = big_payload;
    p->u.publish.payload_len = sizeof big_payload;

    p = &out[n++]; /* QoS 2 dup with all PUBLISH properties */
    p->type = TERN_MQTT_PUBLISH;
    tern_mqtt_publish *pub = &p->u.publish;
    pub->qos = 2;
    pub->dup = true;
    pub->packet_id = 1;
    pub->topic = S("t");
    pub->payload = (const uint8_t *)"{\"soc\":81.5}";
    pub->payload_len = 12;
    if (v5) {
        pub->props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_PAYLOAD_FORMAT)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MESSAGE_EXPIRY)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CONTENT_TYPE)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RESPONSE_TOPIC)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CORRELATION_DATA)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_TOPIC_ALIAS);
        pub->props.payload_format = 1;
        pub->props.message_expiry_s = 10;
        pub->props.content_type = S("application/json");
        pub->props.response_topic = S("fleet/ev-1/reply");
        pub->props.correlation_data = S("42");
        pub->props.topic_alias = 7;
        pub->props.sub_ids = sub_ids;
        pub->props.n_sub_ids = 3;
        pub->props.user = users;
        pub->props.n_user = 2;
    }

    static const uint8_t ack_types[]
        = { TERN_MQTT_PUBACK, TERN_MQTT_PUBREC, TERN_MQTT_PUBREL, TERN_MQTT_PUBCOMP };
    for (size_t i = 0; i < 4; i++) {
        p = &out[n++];
        p->type = ack_types[i];
        p->u.ack.packet_id = (uint16_t)(1000 + i);
        p = &out[n++];
        p->type = ack_types[i];
        p->u.ack.packet_id = 7;
        if (v5) {
            p->u.ack.reason = ack_types[i] <= TERN_MQTT_PUBREC ? 0x97 : 0x92;
            p->u.ack.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REASON_STRING);
            p->u.ack.props.reason_string = S("why");
            p->u.ack.props.user = users + 1;
            p->u.ack.props.n_user = 1;
        }
    }

    p = &out[n++];
    p->type = TERN_MQTT_SUBSCRIBE;
    p->u.subscribe.packet_id = 2;
    p->u.subscribe.subs = subs;
    p->u.subscribe.n_subs = v5 ? 3 : 1;
    if (v5) {
        p->u.subscribe.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SUBSCRIPTION_ID);
        p->u.subscribe.props.subscription_id = TERN_MQTT_VBI_MAX;
        p->u.subscribe.props.user = users;
        p->u.subscribe.props.n_user = 1;
    }

    p = &out[n++];
    p->type = TERN_MQTT_SUBACK;
    p->u.suback.packet_id = 2;
    p->u.suback.reasons = suback_codes;
    p->u.suback.n_reasons = 3;
    if (v5) {
        p->u.suback.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REASON_STRING);
        p->u.suback.props.reason_string = S("partly");
    }

    p = &out[n++];
    p->type = TERN_MQTT_UNSUBSCRIBE;
    p->u.subscribe.packet_id = 3;
    p->u.subscribe.subs = subs;
    p->u.subscribe.n_subs = 3;
    if (v5) {
        p->u.subscribe.props.user = users;
        p->u.subscribe.props.n_user = 2;
    }

    p = &out[n++];
    p->type = TERN_MQTT_UNSUBACK;
    p->u.suback.packet_id = 3;
    if (v5) {
        p->u.suback.reasons = unsuback_codes;
        p->u.suback.n_reasons = 3;
    }

    p = &out[n++];
    p->type = TERN_MQTT_PINGREQ;
    p = &out[n++];
    p->type = TERN_MQTT_PINGRESP;

    p = &out[n++];
    p->type = TERN_MQTT_DISCONNECT;
    p = &out[n++];
    p->type = TERN_MQTT_DISCONNECT;
    if (v5) {
        p->u.disconnect.reason = TERN_MQTT_RC_DISCONNECT_WITH_WILL;
        p->u.disconnect.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SESSION_EXPIRY)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_SERVER_REFERENCE);
        p->u.disconnect.props.session_expiry_s = 0;
        p->u.disconnect.props.server_reference = S("b2");
    }

    if (v5) {
        p = &out[n++];
        p->type = TERN_MQTT_AUTH;
        p->u.auth.reason = TERN_MQTT_RC_CONTINUE_AUTH;
        p->u.auth.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_AUTH_METHOD)
            | TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_AUTH_DATA);
        p->u.auth.props.auth_method = S("SCRAM-SHA-256");
        p->u.auth.props.auth_data = S("nonce");
        p = &out[n++];
        p->type = TERN_MQTT_AUTH;
    }
    assert_true(n <= N_PACKETS);
    return n;
}

static void roundtrip_version(uint8_t v)
{
    tern_mqtt_packet pkts[N_PACKETS];
    size_t n = build_all(v, pkts);
    tern_buf stream = TERN_BUF_INIT;
    for (size_t i = 0; i < n; i++) {
        tern_buf b = TERN_BUF_INIT;
        assert_int_equal(tern_mqtt_encode(&b, v, &pkts[i]), 0);
        tern_mqtt_packet back;
        tern_mqtt_status st;
        size_t used = 0;
        uint8_t dv = pkts[i].type == TERN_MQTT_CONNECT ? 0 : v;
        int rc = tern_mqtt_decode(b.data, b.len, dv, &back, &used, &st);
        if (rc != 0)
            fail_msg("v%d %s: decode %d (%s)", v, tern_mqtt_type_str(pkts[i].type), rc,
                st.what ? st.what : "");
        assert_int_equal(used, b.len);
        const char *d = mqtt_check_diff(&pkts[i], &back);
        if (d)
            fail_msg("v%d %s: field %s differs", v, tern_mqtt_type_str(pkts[i].type), d);
        assert_null(mqtt_check_roundtrip(b.data, b.len, dv));
        /* Every truncation is partial, never an error or a crash. */
        for (size_t k = 0; k < b.len; k++) {
            /* Copy to an exact-size heap block so ASan sees any read past the prefix. */
            uint8_t *cut = test_malloc(k ? k : 1);
            memcpy(cut, b.data, k);
            assert_int_equal(tern_mqtt_decode(cut, k, dv, &back, &used, &st), TERN_EPARTIAL);
            assert_int_equal(st.reason, 0);
            test_free(cut);
        }
        if (pkts[i].type != TERN_MQTT_CONNECT)
            assert_int_equal(tern_buf_append(&stream, b.data, b.len), 0);
        tern_buf_free(&b);
    }
    /* The stream (without CONNECTs) decodes packet after packet. */
    size_t off = 0, k = 0;
    while (off < stream.len) {
        size_t plen;
        assert_int_equal(tern_mqtt_frame(stream.data + off, stream.len - off, 0, &plen), 0);
        tern_mqtt_packet back;
        size_t used;
        assert_int_equal(
            tern_mqtt_decode(stream.data + off, stream.len - off, v, &back, &used, NULL), 0);
        assert_int_equal(used, plen);
        while (pkts[k].type == TERN_MQTT_CONNECT)
            k++;
        assert_null(mqtt_check_diff(&pkts[k], &back));
        k++;
        off += used;
    }
    assert_int_equal(k, n);
    tern_buf_free(&stream);
}

static void test_roundtrip_v311(void **state)
{
    (void)state;
    roundtrip_version(TERN_MQTT_V311);
}

static void test_roundtrip_v5(void **state)
{
    (void)state;
    roundtrip_version(TERN_MQTT_V5);
}

static void test_version_specific(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    tern_mqtt_packet p;
    memset(&p, 0, sizeof p);
    p.type = TERN_MQTT_AUTH;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &p), TERN_EINVAL);
    static const uint8_t auth[] = { 0xF0, 0x00 };
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(auth, 2, TERN_MQTT_V311, &p, &st), TERN_EPROTO);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    assert_int_equal(mqtt_check_decode(auth, 2, TERN_MQTT_V5, &p, &st), 0);
    static const uint8_t auth_bad[] = { 0xF0, 0x01, 0x00 + 0x80 };
    assert_int_equal(mqtt_check_decode(auth_bad, 3, TERN_MQTT_V5, &p, &st), TERN_EPROTO);
    /* Reserved type 0; DISCONNECT with a body in 3.1.1; PINGREQ with a body. */
    static const uint8_t t0[] = { 0x00, 0x00 };
    assert_int_equal(mqtt_check_decode(t0, 2, TERN_MQTT_V5, &p, &st), TERN_EPROTO);
    static const uint8_t d311[] = { 0xE0, 0x01, 0x00 };
    assert_int_equal(mqtt_check_decode(d311, 3, TERN_MQTT_V311, &p, &st), TERN_EPROTO);
    assert_int_equal(mqtt_check_decode(d311, 3, TERN_MQTT_V5, &p, &st), 0);
    static const uint8_t d5bad[] = { 0xE0, 0x01, 0x01 };
    assert_int_equal(mqtt_check_decode(d5bad, 3, TERN_MQTT_V5, &p, &st), TERN_EPROTO);
    static const uint8_t ping[] = { 0xC0, 0x01, 0x00 };
    assert_int_equal(mqtt_check_decode(ping, 3, TERN_MQTT_V5, &p, &st), TERN_EPROTO);
    static const uint8_t ping_flags[] = { 0xC1, 0x00 };
    assert_int_equal(mqtt_check_decode(ping_flags, 2, TERN_MQTT_V5, &p, &st), TERN_EPROTO);
    /* Disconnect 5.0 byte-exact: reason 0x8E, no properties. */
    memset(&p, 0, sizeof p);
    p.type = TERN_MQTT_DISCONNECT;
    p.u.disconnect.reason = TERN_MQTT_RC_SESSION_TAKEN_OVER;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &p), 0);
    static const uint8_t want[] = { 0xE0, 0x01, 0x8E };
    assert_int_equal(b.len, 3);
    assert_memory_equal(b.data, want, 3);
    tern_buf_reset(&b);
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &p), 0);
    static const uint8_t want311[] = { 0xE0, 0x00 };
    assert_memory_equal(b.data, want311, 2);
    tern_buf_free(&b);
}

static void test_encoder_refuses(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append(&b, "q", 1), 0);
    tern_mqtt_packet p;
    for (uint8_t v = TERN_MQTT_V311; v <= TERN_MQTT_V5; v++) {
        memset(&p, 0, sizeof p);
        p.type = TERN_MQTT_PUBLISH;
        p.u.publish.topic = S("t");
        p.u.publish.qos = 1; /* packet id 0 */
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
        memset(&p, 0, sizeof p);
        p.type = TERN_MQTT_PUBACK;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
        memset(&p, 0, sizeof p);
        p.type = TERN_MQTT_SUBACK;
        p.u.suback.packet_id = 1;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
        memset(&p, 0, sizeof p);
        p.type = TERN_MQTT_SUBSCRIBE;
        p.u.subscribe.subs = subs;
        p.u.subscribe.n_subs = 1;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
        static const tern_mqtt_subscription rh3 = { SI("a"), 0, false, false, 3 };
        p.u.subscribe.packet_id = 1;
        p.u.subscribe.subs = &rh3;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
        memset(&p, 0, sizeof p);
        p.type = TERN_MQTT_CONNECT;
        p.u.connect.version = v;
        p.u.connect.will_retain = true;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
        p.u.connect.will_retain = false;
        p.u.connect.has_password = true;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), v == TERN_MQTT_V5 ? 0 : TERN_EINVAL);
        b.len = 1;
        p.u.connect.version = 3;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
        memset(&p, 0, sizeof p);
        p.type = 0;
        assert_int_equal(tern_mqtt_encode(&b, v, &p), TERN_EINVAL);
    }
    memset(&p, 0, sizeof p);
    p.type = TERN_MQTT_UNSUBACK;
    p.u.suback.packet_id = 1;
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V5, &p), TERN_EINVAL);
    assert_int_equal(b.len, 1);
    assert_int_equal(tern_mqtt_encode(&b, TERN_MQTT_V311, &p), 0);
    assert_int_equal(b.len, 5);
    tern_buf_free(&b);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(tern_mqtt_reason_str(0x81, 0), "malformed packet");
    assert_string_equal(tern_mqtt_reason_str(0x95, TERN_MQTT_DISCONNECT), "packet too large");
    assert_string_equal(tern_mqtt_reason_str(0x00, TERN_MQTT_DISCONNECT), "normal disconnection");
    assert_string_equal(tern_mqtt_reason_str(0x00, TERN_MQTT_SUBACK), "granted QoS 0");
    assert_string_equal(tern_mqtt_reason_str(0x00, 0), "success");
    assert_string_equal(tern_mqtt_reason_str(0x7F, 0), "unknown reason code");
    for (unsigned r = 0; r < 256; r++)
        assert_non_null(tern_mqtt_reason_str((uint8_t)r, 0));
    assert_string_equal(tern_mqtt_type_str(TERN_MQTT_PUBLISH), "PUBLISH");
    assert_string_equal(tern_mqtt_type_str(TERN_MQTT_AUTH), "AUTH");
    assert_string_equal(tern_mqtt_type_str(0), "?");
    assert_string_equal(tern_mqtt_type_str(200), "?");
    assert_int_equal(tern_mqtt_reason_v311_connack(0x00), 0);
    assert_int_equal(tern_mqtt_reason_v311_connack(0x89), 3);
    assert_int_equal(tern_mqtt_reason_v311_connack(0x86), 4);
    assert_int_equal(tern_mqtt_reason_v311_connack(0x87), 5);
    assert_int_equal(tern_mqtt_reason_v311_connack(0x81), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_v311),
        cmocka_unit_test(test_roundtrip_v5),
        cmocka_unit_test(test_version_specific),
        cmocka_unit_test(test_encoder_refuses),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_utf8.c: MQTT UTF-8 rules (U+0000, surrogates, overlong forms, 4-byte sequences, the
 * largest code point), their effect on decoding, and tern's client id policy.
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

#define OK(s) assert_int_equal(tern_mqtt_utf8_validate((const uint8_t *)(s), sizeof(s) - 1), 0)
#define BAD(s)                                                                                     \
    assert_int_equal(tern_mqtt_utf8_validate((const uint8_t *)(s), sizeof(s) - 1), TERN_EUTF8)

static void test_valid(void **state)
{
    (void)state;
    OK("");
    OK("fleet/ev-42/telemetry");
    OK("\xC2\x80");          /* U+0080, smallest 2-byte */
    OK("\xDF\xBF");          /* U+07FF */
    OK("\xE0\xA0\x80");      /* U+0800, smallest 3-byte */
    OK("\xED\x9F\xBF");      /* U+D7FF, just below the surrogates */
    OK("\xEE\x80\x80");      /* U+E000, just above them */
    OK("\xEF\xBB\xBF");      /* U+FEFF BOM: allowed, must not be stripped */
    OK("\xEF\xBF\xBF");      /* U+FFFF */
    OK("\xF0\x90\x80\x80");  /* U+10000, smallest 4-byte */
    OK("\xF0\x9F\x9A\x97");  /* U+1F697 a car */
    OK("\xF4\x8F\xBF\xBF");  /* U+10FFFF, the largest code point */
    OK("A\xF0\xAA\x9B\x94"); /* the spec's example U+2A6D4 */
    OK("\x01\x1F\x7F");      /* control characters are SHOULD NOT, accepted */
}

static void test_invalid(void **state)
{
    (void)state;
    BAD("\x00");
    BAD("ab\x00"
        "cd");
    BAD("\xC0\x80");             /* overlong U+0000 */
    BAD("\xC1\xBF");             /* overlong U+007F */
    BAD("\xE0\x80\x80");         /* overlong 3-byte */
    BAD("\xE0\x9F\xBF");         /* overlong U+07FF */
    BAD("\xF0\x80\x80\x80");     /* overlong 4-byte */
    BAD("\xF0\x8F\xBF\xBF");     /* overlong U+FFFF */
    BAD("\xED\xA0\x80");         /* U+D800 */
    BAD("\xED\xBF\xBF");         /* U+DFFF */
    BAD("\xF4\x90\x80\x80");     /* U+110000 */
    BAD("\xF7\xBF\xBF\xBF");     /* beyond U+10FFFF */
    BAD("\xF8\x88\x80\x80\x80"); /* 5-byte form */
    BAD("\xFF");
    BAD("\x80");         /* lone continuation */
    BAD("\xC2");         /* truncated 2-byte */
    BAD("\xE2\x82");     /* truncated 3-byte */
    BAD("\xF0\x9F\x9A"); /* truncated 4-byte */
    BAD("\xC2\x41");     /* bad continuation */
    BAD("\xE2\x28\xA1");
}

static void test_decode_rejects_bad_utf8(void **state)
{
    (void)state;
    /* 3.1.1 PUBLISH QoS 0, topic "a" U+D800 (surrogate) */
    static const uint8_t pub[] = { 0x30, 0x06, 0x00, 0x04, 'a', 0xED, 0xA0, 0x80 };
    tern_mqtt_packet pkt;
    tern_mqtt_status st;
    assert_int_equal(mqtt_check_decode(pub, sizeof pub, TERN_MQTT_V311, &pkt, &st), TERN_EUTF8);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    /* CONNECT with client id holding U+0000 */
    static const uint8_t con[] = { 0x10, 0x0F, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00,
        0x3C, 0x00, 0x03, 'a', 0x00, 'b' };
    assert_int_equal(mqtt_check_decode(con, sizeof con, 0, &pkt, &st), TERN_EUTF8);
    assert_int_equal(st.reason, TERN_MQTT_RC_MALFORMED);
    /* The same with a valid 4-byte character decodes. */
    static const uint8_t con_ok[] = { 0x10, 0x10, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0x02, 0x00,
        0x3C, 0x00, 0x04, 0xF0, 0x9F, 0x9A, 0x97 };
    assert_int_equal(mqtt_check_decode(con_ok, sizeof con_ok, 0, &pkt, &st), 0);
    assert_int_equal(pkt.u.connect.client_id.len, 4);
    /* Passwords are binary: any bytes. */
    static const uint8_t con_pw[] = { 0x10, 0x15, 0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xC2, 0x00,
        0x3C, 0x00, 0x01, 'c', 0x00, 0x01, 'u', 0x00, 0x03, 0x00, 0xFF, 0xED };
    assert_int_equal(mqtt_check_decode(con_pw, sizeof con_pw, 0, &pkt, &st), 0);
    assert_int_equal(pkt.u.connect.password.len, 3);
    assert_int_equal(pkt.u.connect.password.p[1], 0xFF);
}

static void test_client_id_policy(void **state)
{
    (void)state;
    const char *good = "ev-000042";
    assert_int_equal(tern_mqtt_client_id_check((const uint8_t *)good, strlen(good), 64), 0);
    assert_int_equal(
        tern_mqtt_client_id_check((const uint8_t *)good, strlen(good), 5), TERN_EPROTO);
    assert_int_equal(tern_mqtt_client_id_check((const uint8_t *)"", 0, 64), TERN_EPROTO);
    const char *bad[] = { "a/b", "a+b", "a#", "a\tb", "a\x7f", "\xC2\x85x", "\xED\xA0\x80" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(
            tern_mqtt_client_id_check((const uint8_t *)bad[i], strlen(bad[i]), 64), TERN_EPROTO);
    const char *utf = "v\xC3\xA9hicule";
    assert_int_equal(tern_mqtt_client_id_check((const uint8_t *)utf, strlen(utf), 64), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_invalid),
        cmocka_unit_test(test_decode_rejects_bad_utf8),
        cmocka_unit_test(test_client_id_policy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_topic.c: topic name and filter validation, shared subscription parsing, and matching
 * (single- and multi-level wildcards, empty levels, the '$' rule).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "mqtt/topic.h"

#include <string.h>

#define U(s) (const uint8_t *)(s), strlen(s)

static void test_names(void **state)
{
    (void)state;
    const char *good[] = { "a", "/", "a/b", "/a", "a/", "a//b", "$SYS/x", "fleet/ev-1/telemetry",
        " ", "caf\xC3\xA9" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(tern_mqtt_topic_validate_name(U(good[i])), 0);
    const char *bad[] = { "", "+", "#", "a/+", "a/#", "a+b", "a#" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tern_mqtt_topic_validate_name(U(bad[i])), TERN_EPROTO);
    assert_int_equal(tern_mqtt_topic_validate_name((const uint8_t *)"a\0b", 3), TERN_EUTF8);
    assert_int_equal(tern_mqtt_topic_validate_name(U("\xC0\xAF")), TERN_EUTF8);
}

static void test_filters(void **state)
{
    (void)state;
    const char *good[] = { "#", "+", "a", "a/b", "a/+", "a/#", "+/+", "+/#", "/+", "+/", "a//#",
        "sport/tennis/+/ranking", "$SYS/#", "/", "$share/g/a/#", "$share/g/+", "$share/g/#",
        "$share/g//", "$sharex/+", "$share" };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++)
        assert_int_equal(tern_mqtt_topic_validate_filter(U(good[i])), 0);
    const char *bad[]
        = { "", "a/#/b", "#/a", "a#", "a/b#", "a+", "+a", "a/+b", "##", "++", "sport+", "$share/",
              "$share//a", "$share/g", "$share/g/", "$share/g+/a", "$share/#/a", "$share/g/a#" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tern_mqtt_topic_validate_filter(U(bad[i])), TERN_EPROTO);
    assert_int_equal(tern_mqtt_topic_validate_filter(U("a/\xED\xA0\x80")), TERN_EUTF8);
}

static void test_parse_shared(void **state)
{
    (void)state;
    const uint8_t *g = NULL, *in = NULL;
    size_t gl = 0, il = 0;
    const char *f = "$share/workers/fleet/+/telemetry";
    assert_int_equal(tern_mqtt_topic_parse_shared(U(f), &g, &gl, &in, &il), 1);
    assert_int_equal(gl, 7);
    assert_memory_equal(g, "workers", 7);
    assert_int_equal(il, strlen("fleet/+/telemetry"));
    assert_memory_equal(in, "fleet/+/telemetry", il);
    g = NULL;
    assert_int_equal(tern_mqtt_topic_parse_shared(U("fleet/+/x"), &g, &gl, &in, &il), 0);
    assert_null(g);
    assert_int_equal(tern_mqtt_topic_parse_shared(U("$share//x"), &g, &gl, &in, &il), TERN_EPROTO);
    assert_int_equal(tern_mqtt_topic_parse_shared(U("$share/g"), &g, &gl, &in, &il), TERN_EPROTO);
    assert_int_equal(tern_mqtt_topic_parse_shared(U("$share/#/x"), &g, &gl, &in, &il), TERN_EPROTO);
}

static void test_matches(void **state)
{
    (void)state;
    static const struct {
        const char *filter, *name;
        bool match;
    } cases[] = {
        { "#", "a", true },
        { "#", "a/b/c", true },
        { "#", "/", true },
        { "a/#", "a", true }, /* '#' also matches the parent level */
        { "a/#", "a/b", true },
        { "a/#", "a/b/c", true },
        { "a/#", "ab", false },
        { "a/#", "b/a", false },
        { "+", "a", true },
        { "+", "a/b", false },
        { "+", "/", false },
        { "+/+", "/", true },
        { "/+", "/a", true },
        { "/+", "a", false },
        { "a/+", "a/", true }, /* '+' matches an empty level */
        { "a/+", "a", false },
        { "a/+/c", "a/b/c", true },
        { "a/+/c", "a/b/d", false },
        { "a/+/#", "a/b", true },
        { "sport/tennis/+", "sport/tennis/player1", true },
        { "sport/tennis/+", "sport/tennis/player1/ranking", false },
        { "sport/+", "sport", false },
        { "sport/+", "sport/", true },
        { "a/b", "a/b", true },
        { "a/b", "a/b/", false },
        { "a/b", "a/bc", false },
        { "a//b", "a//b", true },
        { "a/+/b", "a//b", true },
        { "#", "$SYS/x", false }, /* wildcards at the start do not match '$' topics */
        { "+/x", "$SYS/x", false },
        { "+/+", "$a/b", false },
        { "$SYS/#", "$SYS/x", true },
        { "$SYS/+", "$SYS/x", true },
        { "a/$b", "a/$b", true },
        { "+/$b", "a/$b", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool m = tern_mqtt_topic_matches(U(cases[i].filter), U(cases[i].name));
        if (m != cases[i].match)
            fail_msg("filter '%s' name '%s': expected %d", cases[i].filter, cases[i].name,
                cases[i].match);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_parse_shared),
        cmocka_unit_test(test_matches),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

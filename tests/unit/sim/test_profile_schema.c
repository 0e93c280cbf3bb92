/*
 * test_profile_schema.c: the payload module's built-in binary schemas (src/telemetry) must name
 * the simulator profiles' metrics (src/sim/profile.h) in the same order with the same decimals,
 * or a simulated device's binary payloads would decode into the wrong metrics.
 */
#include "sim/profile.h"
#include "telemetry/payload.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void check(const char *profile)
{
    tern_profile *p;
    assert_int_equal(tern_profile_open(profile, 1, &p), 0);
    const tern_payload_schema *s = tern_payload_schema_by_name(profile);
    assert_non_null(s);
    assert_int_equal(s->n_metrics, tern_profile_metric_count(p));
    for (size_t i = 0; i < s->n_metrics; i++) {
        assert_string_equal(s->metrics[i].name, tern_profile_metric_name(p, i));
        assert_int_equal(s->metrics[i].decimals, tern_profile_metric_decimals(p, i));
    }
    tern_profile_close(p);
}

static void test_ev(void **state)
{
    (void)state;
    check("ev");
}

static void test_meter(void **state)
{
    (void)state;
    check("meter");
}

static void test_industrial(void **state)
{
    (void)state;
    check("industrial");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ev),
        cmocka_unit_test(test_meter),
        cmocka_unit_test(test_industrial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_clock.c: real clocks move the right way; the fake freezes and advances both clocks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"

#include <stdlib.h>
#include <time.h>

static void test_real_clocks(void **state)
{
    (void)state;
    int64_t wall = tern_clock_now_ms();
    /* After 2020-01-01 and before 2200: a sane epoch-ms value. */
    assert_true(wall > 1577836800000LL);
    assert_true(wall < 7258118400000LL);
    assert_true(llabs(wall - (int64_t)time(NULL) * 1000) < 5000);
    uint64_t a = tern_clock_mono_ns();
    uint64_t b = tern_clock_mono_ns();
    assert_true(b >= a);
    uint64_t ms = tern_clock_mono_ms();
    assert_true(ms >= a / 1000000u);
}

static void test_fake_clock(void **state)
{
    (void)state;
    tern_clock_fake_set(1700000000123LL, 5000000000ull);
    assert_int_equal(tern_clock_now_ms(), 1700000000123LL);
    assert_int_equal(tern_clock_mono_ns(), 5000000000ull);
    assert_int_equal(tern_clock_mono_ms(), 5000);
    /* Sub-millisecond steps accumulate on the wall clock too. */
    for (int i = 0; i < 4; i++)
        tern_clock_fake_advance_ns(250000);
    assert_int_equal(tern_clock_now_ms(), 1700000000124LL);
    assert_int_equal(tern_clock_mono_ns(), 5001000000ull);
    tern_clock_fake_advance_ns(2000000000ull);
    assert_int_equal(tern_clock_mono_ms(), 7001);
    tern_clock_fake_off();
    assert_true(tern_clock_now_ms() > 1700000000124LL + 1000);
    /* Advancing while not faked does nothing visible and does not crash. */
    tern_clock_fake_advance_ns(1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_real_clocks),
        cmocka_unit_test(test_fake_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

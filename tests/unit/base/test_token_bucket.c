/*
 * test_token_bucket.c: a deterministic token bucket: burst, refill, caps, waits, bad arguments.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/token_bucket.h"

#define MS 1000000ull
#define S 1000000000ull

static void test_burst_then_refill(void **state)
{
    (void)state;
    tern_token_bucket tb;
    uint64_t t = 1000 * S;
    assert_int_equal(tern_token_bucket_init(&tb, 10, 5, t), 0);
    for (int i = 0; i < 5; i++)
        assert_true(tern_token_bucket_take(&tb, 1, t));
    assert_false(tern_token_bucket_take(&tb, 1, t));
    /* 10/s: one token every 100 ms, exactly. */
    assert_false(tern_token_bucket_take(&tb, 1, t + 99 * MS));
    assert_true(tern_token_bucket_take(&tb, 1, t + 100 * MS));
    assert_false(tern_token_bucket_take(&tb, 1, t + 150 * MS));
    /* Fractions accumulate: 100 steps of 1 ms make one token. */
    uint64_t now = t + 100 * MS;
    int got = 0;
    for (int i = 1; i <= 100; i++)
        got += tern_token_bucket_take(&tb, 1, now + (uint64_t)(unsigned)i * MS);
    assert_int_equal(got, 1);
}

static void test_caps_at_burst(void **state)
{
    (void)state;
    tern_token_bucket tb;
    assert_int_equal(tern_token_bucket_init(&tb, 1000, 3, 0), 0);
    assert_true(tern_token_bucket_take(&tb, 3, 0));
    /* A long idle period refills to burst, no more, and does not overflow. */
    assert_int_equal(tern_token_bucket_available(&tb, UINT64_MAX / 2), 3);
    assert_false(tern_token_bucket_take(&tb, 4, UINT64_MAX / 2));
    assert_true(tern_token_bucket_take(&tb, 3, UINT64_MAX / 2));
    assert_true(tern_token_bucket_take(&tb, 0, UINT64_MAX / 2));
}

static void test_clock_going_back_adds_nothing(void **state)
{
    (void)state;
    tern_token_bucket tb;
    assert_int_equal(tern_token_bucket_init(&tb, 1, 1, 10 * S), 0);
    assert_true(tern_token_bucket_take(&tb, 1, 10 * S));
    assert_false(tern_token_bucket_take(&tb, 1, 5 * S));
    assert_false(tern_token_bucket_take(&tb, 1, 10 * S + S - 1));
    assert_true(tern_token_bucket_take(&tb, 1, 11 * S));
}

static void test_wait_and_rate_change(void **state)
{
    (void)state;
    tern_token_bucket tb;
    assert_int_equal(tern_token_bucket_init(&tb, 4, 8, 0), 0);
    assert_int_equal(tern_token_bucket_wait_ns(&tb, 8, 0), 0);
    assert_true(tern_token_bucket_take(&tb, 8, 0));
    assert_int_equal(tern_token_bucket_wait_ns(&tb, 1, 0), 250 * MS);
    assert_int_equal(tern_token_bucket_wait_ns(&tb, 2, 100 * MS), 400 * MS);
    assert_int_equal(tern_token_bucket_wait_ns(&tb, 9, 0), UINT64_MAX);
    /* Lower the burst: tokens are capped; raise the rate: refills faster. */
    assert_int_equal(tern_token_bucket_set_rate(&tb, 100, 2, 10 * S), 0);
    assert_int_equal(tern_token_bucket_available(&tb, 10 * S), 2);
    assert_true(tern_token_bucket_take(&tb, 2, 10 * S));
    assert_true(tern_token_bucket_take(&tb, 1, 10 * S + 10 * MS));
    /* Rate 0: never refills. */
    assert_int_equal(tern_token_bucket_set_rate(&tb, 0, 2, 20 * S), 0);
    assert_true(tern_token_bucket_take(&tb, 2, 20 * S));
    assert_false(tern_token_bucket_take(&tb, 1, 1000 * S));
    assert_int_equal(tern_token_bucket_wait_ns(&tb, 1, 1000 * S), UINT64_MAX);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    tern_token_bucket tb;
    assert_int_equal(tern_token_bucket_init(&tb, 10, 0, 0), TERN_EINVAL);
    assert_int_equal(tern_token_bucket_init(&tb, TERN_TOKEN_BUCKET_MAX + 1, 1, 0), TERN_EINVAL);
    assert_int_equal(tern_token_bucket_init(&tb, 1, TERN_TOKEN_BUCKET_MAX + 1, 0), TERN_EINVAL);
    assert_int_equal(
        tern_token_bucket_init(&tb, TERN_TOKEN_BUCKET_MAX, TERN_TOKEN_BUCKET_MAX, 0), 0);
    assert_int_equal(tern_token_bucket_set_rate(&tb, 1, 0, 0), TERN_EINVAL);
    /* Unchanged after a rejected change: still the max bucket. */
    assert_true(tern_token_bucket_take(&tb, TERN_TOKEN_BUCKET_MAX, 0));
    /* Max rate for one second refills the max burst exactly. */
    assert_int_equal(tern_token_bucket_available(&tb, S), TERN_TOKEN_BUCKET_MAX);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_caps_at_burst),
        cmocka_unit_test(test_clock_going_back_adds_nothing),
        cmocka_unit_test(test_wait_and_rate_change),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_timer.c: the timing wheel: deadline order across wheel levels, reset (later and
 * earlier), stop (also from another timer's callback in the same tick), repeating timers, a
 * deadline beyond the wheel's span, 100k random timers with resets and stops against a fake
 * clock, the keepalive pattern, no starvation by a timer re-arming itself with 0, and real
 * sleeping up to the next timer (the poll timeout).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "loop/loop.h"

#include <stdlib.h>
#include <string.h>

#define MS 1000000ull           /* ns per ms, for the fake clock */
#define TERN_LOOP_TEST_LEVELS 5 /* the wheel's levels (loop.h); deadlines past 2^32 ms add one */

/* Fake clock: starts at an odd time so that wheel slots do not line up with 0. */
static uint64_t g_fake_ms;

static void clock_set(uint64_t ms)
{
    g_fake_ms = ms;
    tern_clock_fake_set(0, ms * MS);
}

static void clock_advance(uint64_t ms)
{
    clock_set(g_fake_ms + ms);
}

static int setup(void **state)
{
    clock_set(1000003);
    tern_loop *loop;
    if (tern_loop_new(&loop) != 0)
        return -1;
    *state = loop;
    return 0;
}

static int teardown(void **state)
{
    tern_loop_free(*state);
    tern_clock_fake_off();
    return 0;
}

/* A record of fired timers. */
typedef struct rec {
    tern_loop_timer t;
    int id;
    int n_fired;
    uint64_t fired_at;
} rec;

static int g_order[64];
static int g_n_order;

static void rec_cb(tern_loop_timer *t)
{
    rec *r = t->data;
    r->n_fired++;
    r->fired_at = tern_loop_now_ms(t->loop);
    if (g_n_order < 64)
        g_order[g_n_order++] = r->id;
}

static void run_to(tern_loop *loop, uint64_t ms)
{
    clock_set(ms);
    assert_true(tern_loop_run_once(loop, 0) >= 0);
}

static void test_deadline_order_across_levels(void **state)
{
    tern_loop *loop = *state;
    g_n_order = 0;
    /* Timeouts spanning level 0 (<256 ms), 1 (<16 s), 2 (<17 min) and 3. */
    static const uint64_t timeouts[] = { 30, 10, 300, 20, 70000, 255, 256, 16384, 5000000, 1 };
    enum { N = sizeof timeouts / sizeof timeouts[0] };
    rec r[N];
    uint64_t t0 = tern_loop_now_ms(loop);
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].id = i;
        tern_loop_timer_init(loop, &r[i].t, rec_cb, &r[i]);
        tern_loop_timer_start(&r[i].t, timeouts[i], 0);
        assert_true(tern_loop_timer_active(&r[i].t));
        assert_int_equal(tern_loop_timer_due_ms(&r[i].t), t0 + timeouts[i]);
    }
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_timers, N);
    /* One ms before each deadline nothing fires; at it, exactly that timer fires. */
    static const int sorted[] = { 9, 1, 3, 0, 5, 6, 2, 7, 4, 8 };
    for (int k = 0; k < N; k++) {
        int i = sorted[k];
        run_to(loop, t0 + timeouts[i] - 1);
        assert_int_equal(r[i].n_fired, 0);
        assert_int_equal(g_n_order, k);
        run_to(loop, t0 + timeouts[i]);
        assert_int_equal(r[i].n_fired, 1);
        assert_int_equal(r[i].fired_at, t0 + timeouts[i]);
        assert_false(tern_loop_timer_active(&r[i].t));
    }
    for (int k = 0; k < N; k++)
        assert_int_equal(g_order[k], sorted[k]);
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_timers, 0);
    assert_int_equal(st.timers_fired, N);
}

static void test_one_jump_fires_in_order(void **state)
{
    tern_loop *loop = *state;
    g_n_order = 0;
    static const uint64_t timeouts[] = { 900, 40000, 3, 260, 17000, 2000000, 600 };
    enum { N = sizeof timeouts / sizeof timeouts[0] };
    rec r[N];
    uint64_t t0 = tern_loop_now_ms(loop);
    for (int i = 0; i < N; i++) {
        memset(&r[i], 0, sizeof r[i]);
        r[i].id = i;
        tern_loop_timer_init(loop, &r[i].t, rec_cb, &r[i]);
        tern_loop_timer_start(&r[i].t, timeouts[i], 0);
    }
    run_to(loop, t0 + 3000000); /* everything is due: one iteration fires all, in order */
    assert_int_equal(g_n_order, N);
    static const int sorted[] = { 2, 3, 6, 0, 4, 1, 5 };
    for (int k = 0; k < N; k++)
        assert_int_equal(g_order[k], sorted[k]);
}

static void test_reset_postpones_and_advances(void **state)
{
    tern_loop *loop = *state;
    uint64_t t0 = tern_loop_now_ms(loop);
    rec late = { .id = 1 }, early = { .id = 2 };
    tern_loop_timer_init(loop, &late.t, rec_cb, &late);
    tern_loop_timer_init(loop, &early.t, rec_cb, &early);
    tern_loop_timer_start(&late.t, 100, 0);
    tern_loop_timer_start(&early.t, 100000, 0);
    run_to(loop, t0 + 50);
    tern_loop_timer_start(&late.t, 100, 0); /* postpone to t0 + 150 */
    tern_loop_timer_start(&early.t, 20, 0); /* advance to t0 + 70 */
    assert_int_equal(tern_loop_timer_due_ms(&late.t), t0 + 150);
    assert_int_equal(tern_loop_timer_due_ms(&early.t), t0 + 70);
    run_to(loop, t0 + 69);
    assert_int_equal(early.n_fired, 0);
    run_to(loop, t0 + 70);
    assert_int_equal(early.n_fired, 1);
    run_to(loop, t0 + 100); /* the original deadline passes: nothing */
    assert_int_equal(late.n_fired, 0);
    run_to(loop, t0 + 149);
    assert_int_equal(late.n_fired, 0);
    run_to(loop, t0 + 150);
    assert_int_equal(late.n_fired, 1);
    assert_int_equal(late.fired_at, t0 + 150);
    run_to(loop, t0 + 200000);
    assert_int_equal(early.n_fired, 1);
    assert_int_equal(late.n_fired, 1);
}

/* stopper_cb stops the timer in its data, which is due in the same tick. */
static void stopper_cb(tern_loop_timer *t)
{
    rec *victim = t->data;
    tern_loop_timer_stop(&victim->t);
    tern_loop_timer_stop(&victim->t); /* idempotent */
}

static void test_stop_cancels(void **state)
{
    tern_loop *loop = *state;
    uint64_t t0 = tern_loop_now_ms(loop);
    rec a = { .id = 1 }, b = { .id = 2 }, c = { .id = 3 };
    tern_loop_timer_init(loop, &a.t, rec_cb, &a);
    tern_loop_timer_init(loop, &b.t, rec_cb, &b);
    tern_loop_timer_start(&a.t, 10, 0);
    tern_loop_timer_start(&b.t, 5000, 0);
    tern_loop_timer_stop(&a.t);
    tern_loop_timer_stop(&b.t);
    assert_false(tern_loop_timer_active(&a.t));
    /* In the same tick, stopper's callback stops a, which is due in the same slot. */
    tern_loop_timer stopper;
    tern_loop_timer_init(loop, &stopper, stopper_cb, &a);
    tern_loop_timer_start(&stopper, 30, 0);
    tern_loop_timer_start(&a.t, 30, 0);
    tern_loop_timer_init(loop, &c.t, rec_cb, &c);
    tern_loop_timer_start(&c.t, 30, 0);
    run_to(loop, t0 + 10000);
    assert_int_equal(a.n_fired, 0);
    assert_int_equal(b.n_fired, 0);
    assert_int_equal(c.n_fired, 1);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_timers, 0);
}

typedef struct rep {
    tern_loop_timer t;
    int n;
    int stop_after;
    uint64_t at[16];
} rep;

static void rep_cb(tern_loop_timer *t)
{
    rep *r = t->data;
    if (r->n < 16)
        r->at[r->n] = tern_loop_now_ms(t->loop);
    r->n++;
    if (r->n == r->stop_after)
        tern_loop_timer_stop(t);
}

static void test_repeating(void **state)
{
    tern_loop *loop = *state;
    uint64_t t0 = tern_loop_now_ms(loop);
    rep r = { .stop_after = 5 };
    rep forever = { .stop_after = -1 };
    tern_loop_timer_init(loop, &r.t, rep_cb, &r);
    tern_loop_timer_init(loop, &forever.t, rep_cb, &forever);
    tern_loop_timer_start(&r.t, 7, 10);
    tern_loop_timer_start(&forever.t, 300, 300);
    for (uint64_t ms = 1; ms <= 1000; ms++)
        run_to(loop, t0 + ms);
    assert_int_equal(r.n, 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(r.at[i], t0 + 7 + 10 * (uint64_t)i);
    assert_false(tern_loop_timer_active(&r.t));
    assert_int_equal(forever.n, 3);
    assert_true(tern_loop_timer_active(&forever.t));
    assert_int_equal(tern_loop_timer_due_ms(&forever.t), t0 + 1200);
    /* Falling far behind skips missed periods instead of replaying them. */
    run_to(loop, t0 + 10000);
    assert_int_equal(forever.n, 4);
    assert_int_equal(tern_loop_timer_due_ms(&forever.t), t0 + 10300);
    tern_loop_timer_stop(&forever.t);
}

static void test_beyond_wheel_span(void **state)
{
    tern_loop *loop = *state;
    uint64_t t0 = tern_loop_now_ms(loop);
    const uint64_t far = (1ull << 33) + 12345; /* twice the wheel's span */
    rec r = { .id = 1 };
    tern_loop_timer_init(loop, &r.t, rec_cb, &r);
    tern_loop_timer_start(&r.t, far, 0);
    run_to(loop, t0 + (1ull << 32));
    assert_int_equal(r.n_fired, 0);
    run_to(loop, t0 + far - 1);
    assert_int_equal(r.n_fired, 0);
    run_to(loop, t0 + far);
    assert_int_equal(r.n_fired, 1);
    assert_int_equal(r.fired_at, t0 + far);
}

/* 100k timers with random deadlines, some reset, some stopped, clock moved in random steps. */
typedef struct big {
    tern_loop_timer t;
    uint64_t due;
    int n_fired;
    bool stopped;
} big;

static uint64_t g_prev_now, g_last_due;
static int g_big_fired, g_big_order_errors, g_big_late_errors;

static void big_cb(tern_loop_timer *t)
{
    big *b = t->data;
    uint64_t now = tern_loop_now_ms(t->loop);
    b->n_fired++;
    g_big_fired++;
    if (b->due < g_last_due)
        g_big_order_errors++;
    g_last_due = b->due;
    /* Fired in the first iteration after its deadline: not early, not late. */
    if (b->due > now || b->due <= g_prev_now)
        g_big_late_errors++;
}

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void test_100k_random_timers(void **state)
{
    tern_loop *loop = *state;
    enum { N = 100000 };
    big *bs = tern_calloc(N, sizeof *bs);
    assert_non_null(bs);
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    uint64_t t0 = tern_loop_now_ms(loop);
    for (int i = 0; i < N; i++) {
        tern_loop_timer_init(loop, &bs[i].t, big_cb, &bs[i]);
        uint64_t timeout = 1 + rnd(&seed) % 200000; /* 1 ms .. 200 s: levels 0-2 */
        tern_loop_timer_start(&bs[i].t, timeout, 0);
        bs[i].due = t0 + timeout;
    }
    /* Reset a third (half later, half earlier), stop a tenth. */
    for (int i = 0; i < N; i += 3) {
        uint64_t timeout = 1 + rnd(&seed) % 300000;
        tern_loop_timer_start(&bs[i].t, timeout, 0);
        bs[i].due = t0 + timeout;
    }
    int n_stopped = 0;
    for (int i = 1; i < N; i += 10) {
        tern_loop_timer_stop(&bs[i].t);
        bs[i].stopped = true;
        n_stopped++;
    }
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_timers, N - n_stopped);
    g_big_fired = g_big_order_errors = g_big_late_errors = 0;
    g_last_due = 0;
    uint64_t now = t0;
    while (now < t0 + 300001) {
        g_prev_now = now;
        now += 1 + rnd(&seed) % 700;
        run_to(loop, now);
    }
    assert_int_equal(g_big_fired, N - n_stopped);
    assert_int_equal(g_big_order_errors, 0);
    assert_int_equal(g_big_late_errors, 0);
    for (int i = 0; i < N; i++)
        assert_int_equal(bs[i].n_fired, bs[i].stopped ? 0 : 1);
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_timers, 0);
    tern_free(bs);
}

/* Keepalives: 1000 connections each reset their 60 s timer on every packet (once a second) for
   10 minutes; none expires; then the packets stop and each expires 60 s after its last one. */
static void test_keepalive_pattern(void **state)
{
    tern_loop *loop = *state;
    enum { N = 1000 };
    rec *cs = tern_calloc(N, sizeof *cs);
    uint64_t t0 = tern_loop_now_ms(loop);
    for (int i = 0; i < N; i++) {
        tern_loop_timer_init(loop, &cs[i].t, rec_cb, &cs[i]);
        tern_loop_timer_start(&cs[i].t, 60000, 0);
    }
    g_n_order = 0;
    for (uint64_t s = 1; s <= 600; s++) {
        run_to(loop, t0 + s * 1000);
        for (int i = 0; i < N; i++)
            tern_loop_timer_start(&cs[i].t, 60000, 0); /* "a packet arrived" */
    }
    for (int i = 0; i < N; i++)
        assert_int_equal(cs[i].n_fired, 0);
    run_to(loop, t0 + 600000 + 59999);
    for (int i = 0; i < N; i++)
        assert_int_equal(cs[i].n_fired, 0);
    run_to(loop, t0 + 600000 + 60000);
    for (int i = 0; i < N; i++) {
        assert_int_equal(cs[i].n_fired, 1);
        assert_int_equal(cs[i].fired_at, t0 + 660000);
    }
    tern_free(cs);
}

/* A timer that re-arms itself with timeout 0 runs once per tick, not forever in one tick. */
static int g_spin;

static void spin_cb(tern_loop_timer *t)
{
    g_spin++;
    tern_loop_timer_start(t, 0, 0);
}

static void test_rearm_zero_does_not_starve(void **state)
{
    tern_loop *loop = *state;
    tern_loop_timer t;
    tern_loop_timer_init(loop, &t, spin_cb, NULL);
    tern_loop_timer_start(&t, 0, 0);
    g_spin = 0;
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(g_spin, 1);
    /* 5 ms later: it fires at the tick it was re-armed for, re-arms for the new "now", fires
       there once more, and then waits for the clock to move. */
    clock_advance(5);
    assert_int_equal(tern_loop_run_once(loop, 0), 2);
    assert_int_equal(g_spin, 3);
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    assert_int_equal(g_spin, 3);
    tern_loop_timer_stop(&t);
}

/* With the real clock, run_once(-1) sleeps until the next timer (also one in level 1) and
   never busy-loops: a wrong poll timeout would either hang (caught by the ctest timeout) or
   spin through thousands of iterations. */
static void test_real_clock_sleeps_until_due(void **state)
{
    (void)state;
    tern_clock_fake_off();
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    rec r[3];
    static const uint64_t timeouts[] = { 3, 40, 300 };
    uint64_t t0 = tern_loop_now_ms(loop);
    for (int i = 0; i < 3; i++) {
        memset(&r[i], 0, sizeof r[i]);
        tern_loop_timer_init(loop, &r[i].t, rec_cb, &r[i]);
        tern_loop_timer_start(&r[i].t, timeouts[i], 0);
    }
    int iterations = 0;
    while (r[2].n_fired == 0 && iterations < 1000) {
        assert_true(tern_loop_run_once(loop, -1) >= 0);
        iterations++;
    }
    for (int i = 0; i < 3; i++) {
        assert_int_equal(r[i].n_fired, 1);
        assert_true(r[i].fired_at >= t0 + timeouts[i]);
    }
    assert_true(iterations < 100);
    tern_loop_free(loop);
}

/* The poll timeout follows the wheel: sleeping exactly as long as tern_loop_backend_timeout
   says, a timer fires exactly at its deadline after a few wake-ups (one per wheel level it
   cascades through), and the timeout is never 0 while nothing is due (no busy loop). The
   timeout 16383 from mid-block files a timer in the level-1 slot that was just cascaded, due
   only 64 blocks later. */
static void test_backend_timeout_schedule(void **state)
{
    tern_loop *loop = *state;
    assert_int_equal(tern_loop_backend_timeout(loop), -1);
    static const uint64_t timeouts[] = { 1, 7, 255, 256, 300, 16383, 16384, 20000, 999999, 1048577,
        70000000, 3000000000, 5000000000 };
    uint64_t seed = 12345;
    for (size_t k = 0; k < sizeof timeouts / sizeof timeouts[0]; k++) {
        clock_advance(1 + rnd(&seed) % 255); /* start from varied wheel positions */
        assert_int_equal(tern_loop_run_once(loop, 0), 0);
        rec r = { 0 };
        tern_loop_timer_init(loop, &r.t, rec_cb, &r);
        tern_loop_timer_start(&r.t, timeouts[k], 0);
        uint64_t due = tern_loop_timer_due_ms(&r.t);
        int wakeups = 0;
        while (r.n_fired == 0 && wakeups < 50) {
            int wait = tern_loop_backend_timeout(loop);
            uint64_t now = tern_loop_now_ms(loop);
            if (wait <= 0 || now + (uint64_t)wait > due)
                fail_msg("timeout %llu: wait %d at %llu, due %llu", (unsigned long long)timeouts[k],
                    wait, (unsigned long long)now, (unsigned long long)due);
            clock_advance((uint64_t)wait);
            assert_true(tern_loop_run_once(loop, 0) >= 0);
            wakeups++;
        }
        assert_int_equal(r.n_fired, 1);
        assert_int_equal(r.fired_at, due);
        assert_true(wakeups <= 2 + TERN_LOOP_TEST_LEVELS);
        assert_int_equal(tern_loop_backend_timeout(loop), -1);
    }
}

/* tern_loop_free drops armed timers and marks them stopped. */
static void test_free_with_active_timers(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    tern_loop_timer a, b;
    tern_loop_timer_init(loop, &a, rec_cb, NULL);
    tern_loop_timer_init(loop, &b, rec_cb, NULL);
    tern_loop_timer_start(&a, 5, 0);
    tern_loop_timer_start(&b, 500000, 0);
    tern_loop_free(loop);
    assert_false(tern_loop_timer_active(&a));
    assert_false(tern_loop_timer_active(&b));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_deadline_order_across_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_one_jump_fires_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reset_postpones_and_advances, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repeating, setup, teardown),
        cmocka_unit_test_setup_teardown(test_beyond_wheel_span, setup, teardown),
        cmocka_unit_test_setup_teardown(test_100k_random_timers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_pattern, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rearm_zero_does_not_starve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backend_timeout_schedule, setup, teardown),
        cmocka_unit_test(test_real_clock_sleeps_until_due),
        cmocka_unit_test(test_free_with_active_timers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_metrics.c: a loop's statistics in a metrics registry (loop_metrics.h): the figures after
 * start, an explicit refresh and the one-second timer (a fake clock moves it), gauges going up
 * and down, counters continuing across a stop and a new start under the same name, and a name
 * that is not a valid label value.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/metrics.h"
#include "loop/loop.h"
#include "loop/loop_metrics.h"

#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS 1000000ull /* ns per ms, for the fake clock */

typedef struct fixture {
    tern_metrics *reg;
    tern_loop *loop;
} fixture;

static int setup(void **state)
{
    tern_clock_fake_set(0, 5000 * MS);
    fixture *f = calloc(1, sizeof *f);
    if (!f || tern_metrics_create(&f->reg) != 0 || tern_loop_new(&f->loop) != 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tern_loop_free(f->loop);
    tern_metrics_destroy(f->reg);
    free(f);
    tern_clock_fake_off();
    return 0;
}

/* The registry's value of counter `name` for loop="t" (registering again finds the handle). */
static uint64_t counter(tern_metrics *reg, const char *name, const char *loop_name)
{
    const tern_metrics_label label = { "loop", loop_name };
    tern_metrics_counter *c;
    assert_int_equal(tern_metrics_add_counter(reg, name, "", &label, 1, &c), 0);
    return tern_metrics_counter_get(c);
}

static int64_t gauge(tern_metrics *reg, const char *name, const char *loop_name)
{
    const tern_metrics_label label = { "loop", loop_name };
    tern_metrics_gauge *g;
    assert_int_equal(tern_metrics_add_gauge(reg, name, "", &label, 1, &g), 0);
    return tern_metrics_gauge_get(g);
}

static void nop_io(tern_loop_io *io, unsigned events)
{
    (void)io;
    (void)events;
}

static void test_refresh_copies_the_loop_stats(void **state)
{
    fixture *f = *state;
    tern_loop_metrics *lm;
    assert_int_equal(tern_loop_metrics_start(f->loop, f->reg, "t", &lm), 0);
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 0);
    assert_int_equal(gauge(f->reg, "tern_loop_timers", "t"), 1); /* its own refresh timer */

    for (int i = 0; i < 5; i++)
        assert_true(tern_loop_run_once(f->loop, 0) >= 0);
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    tern_loop_io io;
    tern_loop_io_init(f->loop, &io, fds[0], nop_io, NULL);
    assert_int_equal(tern_loop_io_start(&io, TERN_LOOP_READ), 0);
    assert_int_equal(write(fds[1], "x", 1), 1);
    assert_true(tern_loop_run_once(f->loop, 0) >= 0);

    tern_loop_metrics_refresh(lm);
    tern_loop_stats st;
    tern_loop_get_stats(f->loop, &st);
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 6);
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), st.iterations);
    assert_int_equal(counter(f->reg, "tern_loop_io_events_total", "t"), st.io_events);
    assert_true(st.io_events >= 1);
    assert_int_equal(gauge(f->reg, "tern_loop_io_watchers", "t"), 1);

    tern_loop_io_stop(&io);
    close(fds[0]);
    close(fds[1]);
    tern_loop_metrics_refresh(lm);
    assert_int_equal(gauge(f->reg, "tern_loop_io_watchers", "t"), 0);
    /* a second refresh with nothing new adds nothing */
    tern_loop_metrics_refresh(lm);
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 6);

    tern_buf out = { 0 };
    assert_int_equal(tern_metrics_render(f->reg, &out), 0);
    assert_non_null(memmem(out.data, out.len, "tern_loop_iterations_total{loop=\"t\"} 6", 38));
    assert_non_null(memmem(out.data, out.len, "# TYPE tern_loop_io_watchers gauge", 34));
    tern_buf_free(&out);
    tern_loop_metrics_stop(lm);
}

static void test_timer_refreshes_every_second(void **state)
{
    fixture *f = *state;
    tern_loop_metrics *lm;
    assert_int_equal(tern_loop_metrics_start(f->loop, f->reg, "t", &lm), 0);
    for (int i = 0; i < 3; i++)
        assert_true(tern_loop_run_once(f->loop, 0) >= 0);
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 0); /* not yet */
    tern_clock_fake_advance_ns(TERN_LOOP_METRICS_PERIOD_MS * MS);
    assert_true(tern_loop_run_once(f->loop, 0) >= 0); /* the timer fires in this iteration */
    /* the copy ran inside the 4th iteration, before the iteration was counted (and after the
       timer's own firing was) */
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 3);
    assert_int_equal(counter(f->reg, "tern_loop_timers_fired_total", "t"), 1);
    tern_clock_fake_advance_ns(TERN_LOOP_METRICS_PERIOD_MS * MS);
    assert_true(tern_loop_run_once(f->loop, 0) >= 0);
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 4);
    assert_int_equal(counter(f->reg, "tern_loop_timers_fired_total", "t"), 2);
    tern_loop_metrics_stop(lm);
}

static void test_counters_continue_under_the_same_name(void **state)
{
    fixture *f = *state;
    tern_loop_metrics *lm;
    assert_int_equal(tern_loop_metrics_start(f->loop, f->reg, "t", &lm), 0);
    for (int i = 0; i < 4; i++)
        assert_true(tern_loop_run_once(f->loop, 0) >= 0);
    tern_loop_metrics_stop(lm); /* stop refreshes once more */
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 4);

    tern_loop *again;
    assert_int_equal(tern_loop_new(&again), 0);
    assert_int_equal(tern_loop_metrics_start(again, f->reg, "t", &lm), 0);
    for (int i = 0; i < 2; i++)
        assert_true(tern_loop_run_once(again, 0) >= 0);
    tern_loop_metrics_stop(lm);
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "t"), 6);
    /* another name is another instance */
    assert_int_equal(counter(f->reg, "tern_loop_iterations_total", "u"), 0);
    tern_loop_free(again);
}

static void test_bad_name(void **state)
{
    fixture *f = *state;
    tern_loop_metrics *lm = NULL;
    assert_int_equal(tern_loop_metrics_start(f->loop, f->reg, "\xff", &lm), TERN_EINVAL);
    assert_null(lm);
    tern_loop_stats st;
    tern_loop_get_stats(f->loop, &st);
    assert_int_equal(st.n_timers, 0); /* no timer left armed */
    tern_loop_metrics_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_refresh_copies_the_loop_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timer_refreshes_every_second, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_counters_continue_under_the_same_name, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_name, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_signal.c: signals as loop events: SIGUSR1/SIGHUP/SIGTERM/SIGINT raised at the process
 * reach their watchers through the loop (and do not kill it), several watchers of one signal
 * are all called, a watcher may stop another from its callback, stopping the last watcher
 * unblocks the signal, restarting moves a watcher, and bad signal numbers are refused.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "loop/loop.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>

typedef struct sigrec {
    tern_loop_signal s;
    int n;
    int last;
    tern_loop_signal *to_stop;
} sigrec;

static void sig_cb(tern_loop_signal *s, int signum)
{
    sigrec *r = s->data;
    r->n++;
    r->last = signum;
    if (r->to_stop) {
        tern_loop_signal_stop(r->to_stop);
        r->to_stop = NULL;
    }
}

static bool blocked(int signum)
{
    sigset_t cur;
    pthread_sigmask(SIG_BLOCK, NULL, &cur);
    return sigismember(&cur, signum) == 1;
}

static void test_signals_become_events(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    static const int sigs[] = { SIGUSR1, SIGHUP, SIGTERM, SIGINT };
    sigrec r[4];
    for (int i = 0; i < 4; i++) {
        memset(&r[i], 0, sizeof r[i]);
        assert_false(blocked(sigs[i]));
        tern_loop_signal_init(loop, &r[i].s, sig_cb, &r[i]);
        assert_int_equal(tern_loop_signal_start(&r[i].s, sigs[i]), 0);
        assert_int_equal(r[i].s.signum, sigs[i]);
        assert_true(blocked(sigs[i]));
    }
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_signals, 4);
    assert_int_equal(st.n_io, 0); /* the signalfd watcher is the loop's own */
    for (int i = 0; i < 4; i++) {
        /* Without the loop, SIGTERM and SIGINT would end this test program here. */
        assert_int_equal(raise(sigs[i]), 0);
        assert_int_equal(tern_loop_run_once(loop, 0), 1);
        for (int k = 0; k < 4; k++)
            assert_int_equal(r[k].n, k <= i ? 1 : 0);
        assert_int_equal(r[i].last, sigs[i]);
    }
    /* Two different signals pending together: both delivered in one iteration. */
    assert_int_equal(raise(SIGUSR1), 0);
    assert_int_equal(raise(SIGHUP), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 2);
    assert_int_equal(r[0].n, 2);
    assert_int_equal(r[1].n, 2);

    /* Stopping the last watcher unblocks the signal again and discards a pending one. */
    assert_int_equal(raise(SIGUSR1), 0);
    tern_loop_signal_stop(&r[0].s);
    assert_int_equal(r[0].s.signum, 0);
    assert_false(blocked(SIGUSR1));
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    assert_int_equal(r[0].n, 2);
    for (int i = 1; i < 4; i++)
        tern_loop_signal_stop(&r[i].s);
    for (int i = 0; i < 4; i++)
        assert_false(blocked(sigs[i]));
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_signals, 0);
    tern_loop_free(loop);
}

static void test_several_watchers_of_one_signal(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    sigrec a = { 0 }, b = { 0 }, c = { 0 };
    tern_loop_signal_init(loop, &a.s, sig_cb, &a);
    tern_loop_signal_init(loop, &b.s, sig_cb, &b);
    tern_loop_signal_init(loop, &c.s, sig_cb, &c);
    assert_int_equal(tern_loop_signal_start(&a.s, SIGUSR2), 0);
    assert_int_equal(tern_loop_signal_start(&b.s, SIGUSR2), 0);
    assert_int_equal(tern_loop_signal_start(&c.s, SIGUSR2), 0);
    assert_int_equal(raise(SIGUSR2), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 3);
    assert_int_equal(a.n + b.n + c.n, 3);
    /* a's callback stops c, which is behind it in the same delivery: c is not called. */
    a.to_stop = &c.s;
    assert_int_equal(raise(SIGUSR2), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 2);
    assert_int_equal(a.n, 2);
    assert_int_equal(b.n, 2);
    assert_int_equal(c.n, 1);
    assert_true(blocked(SIGUSR2)); /* a and b still watch it */
    /* Restarting b on SIGHUP moves it. */
    assert_int_equal(tern_loop_signal_start(&b.s, SIGHUP), 0);
    assert_int_equal(raise(SIGUSR2), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(a.n, 3);
    assert_int_equal(b.n, 2);
    assert_int_equal(raise(SIGHUP), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(b.n, 3);
    assert_int_equal(b.last, SIGHUP);
    /* Free with watchers still started: signals are unblocked, watchers marked stopped. */
    tern_loop_free(loop);
    assert_false(blocked(SIGUSR2));
    assert_false(blocked(SIGHUP));
    assert_int_equal(a.s.signum, 0);
    assert_int_equal(b.s.signum, 0);
}

static void test_bad_signal_numbers(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    sigrec r = { 0 };
    tern_loop_signal_init(loop, &r.s, sig_cb, &r);
    assert_int_equal(tern_loop_signal_start(&r.s, 0), TERN_EINVAL);
    assert_int_equal(tern_loop_signal_start(&r.s, -3), TERN_EINVAL);
    assert_int_equal(tern_loop_signal_start(&r.s, 1000), TERN_EINVAL);
    assert_int_equal(tern_loop_signal_start(&r.s, SIGKILL), TERN_EINVAL);
    assert_int_equal(tern_loop_signal_start(&r.s, SIGSTOP), TERN_EINVAL);
    assert_int_equal(r.s.signum, 0);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_signals, 0);
    tern_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_signals_become_events),
        cmocka_unit_test(test_several_watchers_of_one_signal),
        cmocka_unit_test(test_bad_signal_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

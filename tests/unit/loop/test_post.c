/*
 * test_post.c: running and stopping the loop, deferred tasks ("next tick"), and cross-thread
 * posts: a post from another thread wakes a blocked loop, posts run on the loop's thread in
 * order, a post can stop the loop, a failed post never calls its callback, and freeing a loop
 * drops what is still queued without leaking.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/error.h"
#include "loop/loop.h"

#include <pthread.h>
#include <stdatomic.h>
#include <time.h>
#include <string.h>

/* ---- stop and run ------------------------------------------------------------------------ */

typedef struct stopper {
    tern_loop_timer t;
    int n;
} stopper;

static void stop_cb(tern_loop_timer *t)
{
    stopper *s = t->data;
    s->n++;
    if (s->n == 3)
        tern_loop_stop(t->loop);
}

static void test_stop_from_callback(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    stopper s = { 0 };
    tern_loop_timer_init(loop, &s.t, stop_cb, &s);
    tern_loop_timer_start(&s.t, 1, 1);
    assert_int_equal(tern_loop_run(loop), 0);
    assert_int_equal(s.n, 3);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_true(st.iterations >= 3);
    assert_int_equal(st.timers_fired, 3);
    /* The stop was consumed: running again runs until the next stop. */
    s.n = 0;
    assert_int_equal(tern_loop_run(loop), 0);
    assert_int_equal(s.n, 3);
    /* A stop before run: one non-blocking iteration, then return. */
    tern_loop_timer_stop(&s.t);
    tern_loop_stop(loop);
    uint64_t before = st.iterations;
    assert_int_equal(tern_loop_run(loop), 0);
    tern_loop_get_stats(loop, &st);
    assert_true(st.iterations > before);
    tern_loop_free(loop);
}

/* ---- deferred tasks ---------------------------------------------------------------------- */

typedef struct task_rec {
    tern_loop_task task;
    int id;
} task_rec;

static int g_task_order[16];
static int g_n_tasks;
static task_rec *g_to_cancel;
static task_rec *g_to_requeue;

static void task_cb(tern_loop_task *task)
{
    task_rec *r = task->data;
    g_task_order[g_n_tasks++] = r->id;
    if (g_to_cancel) {
        tern_loop_cancel(&g_to_cancel->task);
        g_to_cancel = NULL;
    }
    if (g_to_requeue == r) {
        g_to_requeue = NULL;
        tern_loop_defer(r->task.loop, &r->task, task_cb, r); /* runs next iteration */
    }
}

static void test_deferred_tasks(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    task_rec t[4] = { { .id = 0 }, { .id = 1 }, { .id = 2 }, { .id = 3 } };
    g_n_tasks = 0;
    for (int i = 0; i < 4; i++)
        tern_loop_defer(loop, &t[i].task, task_cb, &t[i]);
    tern_loop_defer(loop, &t[1].task, task_cb, &t[1]); /* already queued: no duplicate */
    tern_loop_cancel(&t[3].task);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_tasks, 3);
    g_to_cancel = &t[2]; /* task 0 cancels task 2, queued behind it in the same pass */
    g_to_requeue = &t[1];
    /* Queued tasks make the poll non-blocking, even with timeout -1. */
    assert_int_equal(tern_loop_run_once(loop, -1), 2);
    assert_int_equal(g_n_tasks, 2);
    assert_int_equal(g_task_order[0], 0);
    assert_int_equal(g_task_order[1], 1);
    /* Task 1 re-deferred itself: it runs in the next iteration, once. */
    assert_int_equal(tern_loop_run_once(loop, -1), 1);
    assert_int_equal(g_n_tasks, 3);
    assert_int_equal(g_task_order[2], 1);
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_tasks, 0);
    /* A task still queued at free is dropped and marked unqueued. */
    tern_loop_defer(loop, &t[3].task, task_cb, &t[3]);
    tern_loop_free(loop);
    assert_false(t[3].task.queued);
    assert_int_equal(g_n_tasks, 3);
}

/* ---- cross-thread posts ------------------------------------------------------------------ */

enum { N_PER_THREAD = 2000, N_THREADS = 2 };

typedef struct post_state {
    tern_loop *loop;
    pthread_t loop_thread;
    int count;
    int next_seq[N_THREADS];
    int order_errors;
    int wrong_thread;
} post_state;

static post_state g_ps;

/* arg encodes (thread, seq) as thread * N_PER_THREAD + seq. */
static void counted_cb(tern_loop *loop, void *arg)
{
    int code = (int)(intptr_t)arg;
    int thread = code / N_PER_THREAD, seq = code % N_PER_THREAD;
    if (!pthread_equal(pthread_self(), g_ps.loop_thread))
        g_ps.wrong_thread++;
    if (seq != g_ps.next_seq[thread])
        g_ps.order_errors++;
    g_ps.next_seq[thread] = seq + 1;
    if (++g_ps.count == N_PER_THREAD * N_THREADS)
        tern_loop_stop(loop);
}

static void *poster(void *arg)
{
    int thread = (int)(intptr_t)arg;
    for (int seq = 0; seq < N_PER_THREAD; seq++) {
        int rc = tern_loop_post(
            g_ps.loop, counted_cb, (void *)(intptr_t)(thread * N_PER_THREAD + seq));
        if (rc != 0)
            return (void *)1;
    }
    return NULL;
}

static void test_posts_from_threads_wake_the_loop(void **state)
{
    (void)state;
    memset(&g_ps, 0, sizeof g_ps);
    assert_int_equal(tern_loop_new(&g_ps.loop), 0);
    g_ps.loop_thread = pthread_self();
    pthread_t th[N_THREADS];
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, poster, (void *)(intptr_t)i), 0);
    /* Nothing else is watched: only the posts can wake this loop, and only their last one
       stops it. */
    assert_int_equal(tern_loop_run(g_ps.loop), 0);
    for (int i = 0; i < N_THREADS; i++) {
        void *ret;
        assert_int_equal(pthread_join(th[i], &ret), 0);
        assert_null(ret);
    }
    assert_int_equal(g_ps.count, N_PER_THREAD * N_THREADS);
    assert_int_equal(g_ps.order_errors, 0);
    assert_int_equal(g_ps.wrong_thread, 0);
    tern_loop_stats st;
    tern_loop_get_stats(g_ps.loop, &st);
    assert_int_equal(st.posts_run, N_PER_THREAD * N_THREADS);
    assert_int_equal(st.n_io, 0); /* the wake-up watcher is the loop's own */
    tern_loop_free(g_ps.loop);
}

/* One post, made while the loop is blocked in tern_loop_run with nothing else to do. */
static atomic_int g_stopped_by_post;

static void stop_post_cb(tern_loop *loop, void *arg)
{
    (void)arg;
    atomic_store(&g_stopped_by_post, 1);
    tern_loop_stop(loop);
}

static void *late_poster(void *arg)
{
    tern_loop *loop = arg;
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL); /* let the loop block first (not required for correctness) */
    return (void *)(intptr_t)tern_loop_post(loop, stop_post_cb, NULL);
}

static void test_post_stops_blocked_loop(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    atomic_store(&g_stopped_by_post, 0);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, late_poster, loop), 0);
    assert_int_equal(tern_loop_run(loop), 0);
    void *ret;
    assert_int_equal(pthread_join(th, &ret), 0);
    assert_null(ret);
    assert_int_equal(atomic_load(&g_stopped_by_post), 1);
    tern_loop_free(loop);
}

static int g_never;

static void never_cb(tern_loop *loop, void *arg)
{
    (void)loop;
    (void)arg;
    g_never++;
}

static void test_post_enomem_never_calls_back(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    g_never = 0;
    tern_alloc_fail_after(0);
    int rc = tern_loop_post(loop, never_cb, NULL);
    tern_alloc_fail_after(-1);
    assert_int_equal(rc, TERN_ENOMEM);
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    assert_int_equal(g_never, 0);
    /* Posts still queued at free are dropped (ASan checks nothing leaks). */
    assert_int_equal(tern_loop_post(loop, never_cb, NULL), 0);
    assert_int_equal(tern_loop_post(loop, never_cb, NULL), 0);
    tern_loop_free(loop);
    assert_int_equal(g_never, 0);
}

static void test_new_enomem(void **state)
{
    (void)state;
    /* Every allocation tern_loop_new makes can fail cleanly. */
    for (long n = 0; n < 8; n++) {
        tern_loop *loop = (tern_loop *)(intptr_t)1;
        tern_alloc_fail_after(n);
        int rc = tern_loop_new(&loop);
        tern_alloc_fail_after(-1);
        if (rc == 0) {
            tern_loop_free(loop);
            return;
        }
        assert_int_equal(rc, TERN_ENOMEM);
        assert_true(loop == (tern_loop *)(intptr_t)1); /* not written on failure */
    }
    fail_msg("tern_loop_new makes more allocations than expected");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stop_from_callback),
        cmocka_unit_test(test_deferred_tasks),
        cmocka_unit_test(test_posts_from_threads_wake_the_loop),
        cmocka_unit_test(test_post_stops_blocked_loop),
        cmocka_unit_test(test_post_enomem_never_calls_back),
        cmocka_unit_test(test_new_enomem),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

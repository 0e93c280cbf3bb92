/*
 * test_io.c: I/O watchers: read/write readiness on a socketpair, interest changes, the
 * use-after-free guard (a callback stopping and freeing another watcher whose event is pending
 * in the same batch, or reusing its fd number), argument errors, batches larger than one poll,
 * and the background class (a bounded number per iteration, after every foreground watcher).
 * Run under ASan: a stale event delivered to a freed watcher would be a heap-use-after-free.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/error.h"
#include "loop/loop.h"

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct conn {
    tern_loop_io io;
    int peer_fd;
    int n_calls;
    unsigned last_events;
    struct conn *victim; /* for the batch tests: the connection this one kills */
    int *freed_calls;    /* counts calls made while "freed" (must stay 0) */
} conn;

static void make_pair(int fds[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
}

static void record_cb(tern_loop_io *io, unsigned events)
{
    conn *c = io->data;
    c->n_calls++;
    c->last_events = events;
}

static void test_socketpair_read_write(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    int fds[2];
    make_pair(fds);
    conn c = { 0 };
    tern_loop_io_init(loop, &c.io, fds[0], record_cb, &c);
    assert_false(tern_loop_io_active(&c.io));

    /* Writable at once, not readable. */
    assert_int_equal(tern_loop_io_start(&c.io, TERN_LOOP_READ | TERN_LOOP_WRITE), 0);
    assert_true(tern_loop_io_active(&c.io));
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(c.n_calls, 1);
    assert_int_equal(c.last_events, TERN_LOOP_WRITE);

    /* Data from the peer: readable and writable in one call. */
    assert_int_equal(write(fds[1], "hi", 2), 2);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(c.last_events, TERN_LOOP_READ | TERN_LOOP_WRITE);

    /* Drop WRITE (the broker's idle state): level-triggered READ keeps firing until drained. */
    assert_int_equal(tern_loop_io_start(&c.io, TERN_LOOP_READ), 0);
    assert_int_equal(c.io.interest, TERN_LOOP_READ);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(c.last_events, TERN_LOOP_READ);
    char buf[8];
    assert_int_equal(read(fds[0], buf, sizeof buf), 2);
    c.n_calls = 0;
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    assert_int_equal(c.n_calls, 0);

    /* The peer closes: READ fires (and read returns 0). */
    close(fds[1]);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_true(c.last_events & TERN_LOOP_READ);
    assert_false(c.last_events & TERN_LOOP_WRITE);
    assert_int_equal(read(fds[0], buf, sizeof buf), 0);

    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_io, 1);
    assert_int_equal(st.io_events, 4);
    tern_loop_io_stop(&c.io);
    tern_loop_io_stop(&c.io); /* a stopped watcher: no-op */
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_io, 0);
    c.n_calls = 0;
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    assert_int_equal(c.n_calls, 0);
    close(fds[0]);
    tern_loop_free(loop);
}

/* kill_cb: the first connection called stops, closes and frees its victim. */
static conn *g_survivor;

static void kill_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    conn *c = io->data;
    c->n_calls++;
    conn *v = c->victim;
    if (!v)
        return;
    tern_loop_io_stop(&v->io);
    close(v->io.fd);
    close(v->peer_fd);
    tern_free(v);
    c->victim = NULL;
    g_survivor = c;
}

static void test_stop_and_free_other_in_same_batch(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    conn *a = tern_calloc(1, sizeof *a), *b = tern_calloc(1, sizeof *b);
    int fa[2], fb[2];
    make_pair(fa);
    make_pair(fb);
    a->peer_fd = fa[1];
    b->peer_fd = fb[1];
    a->victim = b;
    b->victim = a;
    tern_loop_io_init(loop, &a->io, fa[0], kill_cb, a);
    tern_loop_io_init(loop, &b->io, fb[0], kill_cb, b);
    assert_int_equal(tern_loop_io_start(&a->io, TERN_LOOP_READ), 0);
    assert_int_equal(tern_loop_io_start(&b->io, TERN_LOOP_READ), 0);
    /* Both readable before the poll: both events are in the same batch. */
    assert_int_equal(write(fa[1], "x", 1), 1);
    assert_int_equal(write(fb[1], "x", 1), 1);
    /* Whichever runs first frees the other; the other's pending event must be dropped (under
       ASan, delivering it would be a heap-use-after-free). */
    g_survivor = NULL;
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_non_null(g_survivor);
    conn *survivor = g_survivor;
    assert_int_equal(survivor->n_calls, 1);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.stale_events, 1);
    assert_int_equal(st.n_io, 1);
    tern_loop_io_stop(&survivor->io);
    close(survivor->io.fd);
    close(survivor->peer_fd);
    tern_free(survivor);
    tern_loop_free(loop);
}

/* reuse_cb: the first one called stops and frees the other connection, then reuses its fd
   number for a new, idle connection, all while the other's event is pending in the batch. */
typedef struct reuse_ctx {
    conn *a, *b;
    conn *survivor;
    conn *fresh;
    int fresh_peer;
    tern_loop *loop;
} reuse_ctx;

static reuse_ctx g_reuse;

static void reuse_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    conn *c = io->data;
    c->n_calls++;
    if (g_reuse.survivor)
        return;
    g_reuse.survivor = c;
    conn *v = c == g_reuse.a ? g_reuse.b : g_reuse.a;
    int num = v->io.fd;
    tern_loop_io_stop(&v->io);
    close(v->peer_fd);
    tern_free(v);
    int p[2];
    make_pair(p);
    assert_int_equal(dup3(p[0], num, O_CLOEXEC), num); /* closes the victim's socket */
    close(p[0]);
    g_reuse.fresh_peer = p[1];
    g_reuse.fresh = tern_calloc(1, sizeof *g_reuse.fresh);
    tern_loop_io_init(g_reuse.loop, &g_reuse.fresh->io, num, record_cb, g_reuse.fresh);
    assert_int_equal(tern_loop_io_start(&g_reuse.fresh->io, TERN_LOOP_READ), 0);
}

static void test_fd_reuse_in_same_batch_gets_no_stale_event(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    memset(&g_reuse, 0, sizeof g_reuse);
    g_reuse.loop = loop;
    conn *a = tern_calloc(1, sizeof *a), *b = tern_calloc(1, sizeof *b);
    g_reuse.a = a;
    g_reuse.b = b;
    int fa[2], fb[2];
    make_pair(fa);
    make_pair(fb);
    a->peer_fd = fa[1];
    b->peer_fd = fb[1];
    tern_loop_io_init(loop, &a->io, fa[0], reuse_cb, a);
    tern_loop_io_init(loop, &b->io, fb[0], reuse_cb, b);
    assert_int_equal(tern_loop_io_start(&a->io, TERN_LOOP_READ), 0);
    assert_int_equal(tern_loop_io_start(&b->io, TERN_LOOP_READ), 0);
    assert_int_equal(write(fa[1], "x", 1), 1);
    assert_int_equal(write(fb[1], "x", 1), 1);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_non_null(g_reuse.fresh);
    /* The fresh watcher has the old fd number but is not readable: the old event for that
       number, still pending in the batch, must not reach it. */
    assert_int_equal(g_reuse.fresh->n_calls, 0);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.stale_events, 1);
    /* The fresh watcher does fire once its own peer writes. */
    assert_int_equal(write(g_reuse.fresh_peer, "y", 1), 1);
    assert_int_equal(tern_loop_io_start(&g_reuse.survivor->io, 0), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(g_reuse.fresh->n_calls, 1);

    conn *s = g_reuse.survivor;
    close(s->io.fd);
    close(s->peer_fd);
    tern_free(s);
    tern_loop_io_stop(&g_reuse.fresh->io);
    close(g_reuse.fresh->io.fd);
    close(g_reuse.fresh_peer);
    tern_free(g_reuse.fresh);
    tern_loop_free(loop);
}

static void self_free_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    conn *c = io->data;
    tern_loop_io_stop(io);
    close(io->fd);
    close(c->peer_fd);
    (*c->freed_calls)++;
    tern_free(c);
}

static void test_callback_frees_its_own_watcher(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    int calls = 0;
    conn *c = tern_calloc(1, sizeof *c);
    int p[2];
    make_pair(p);
    c->peer_fd = p[1];
    c->freed_calls = &calls;
    tern_loop_io_init(loop, &c->io, p[0], self_free_cb, c);
    assert_int_equal(tern_loop_io_start(&c->io, TERN_LOOP_READ | TERN_LOOP_WRITE), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 1);
    assert_int_equal(calls, 1);
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    tern_loop_free(loop);
}

static void test_start_errors_leave_watcher_unchanged(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    int p[2];
    make_pair(p);
    conn c1 = { 0 }, c2 = { 0 };
    tern_loop_io_init(loop, &c1.io, p[0], record_cb, &c1);
    tern_loop_io_init(loop, &c2.io, p[0], record_cb, &c2);
    assert_int_equal(tern_loop_io_start(&c1.io, 0x8), TERN_EINVAL);
    assert_false(tern_loop_io_active(&c1.io));
    assert_int_equal(tern_loop_io_start(&c1.io, TERN_LOOP_READ), 0);
    /* A second watcher on the same fd. */
    assert_int_equal(tern_loop_io_start(&c2.io, TERN_LOOP_READ), TERN_EEXIST);
    assert_false(tern_loop_io_active(&c2.io));
    /* A bad interest change keeps the old interest. */
    assert_int_equal(tern_loop_io_start(&c1.io, TERN_LOOP_READ | 0x10), TERN_EINVAL);
    assert_int_equal(c1.io.interest, TERN_LOOP_READ);
    /* events == 0 stops. */
    assert_int_equal(tern_loop_io_start(&c1.io, 0), 0);
    assert_false(tern_loop_io_active(&c1.io));
    /* Now the second may watch it. */
    assert_int_equal(tern_loop_io_start(&c2.io, TERN_LOOP_READ), 0);
    tern_loop_io_stop(&c2.io);

    conn bad = { 0 };
    tern_loop_io_init(loop, &bad.io, -1, record_cb, &bad);
    assert_int_equal(tern_loop_io_start(&bad.io, TERN_LOOP_READ), TERN_EINVAL);
    /* epoll refuses regular files with EPERM: the error is passed on, nothing is watched. */
    int fd = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    tern_loop_io_init(loop, &bad.io, fd, record_cb, &bad);
    assert_int_equal(tern_loop_io_start(&bad.io, TERN_LOOP_READ), -EPERM);
    assert_false(tern_loop_io_active(&bad.io));
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_io, 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    assert_int_equal(bad.n_calls, 0);
    close(fd);
    close(p[0]);
    close(p[1]);
    tern_loop_free(loop);
}

/* More ready descriptors than one poll returns: every one is served, over several polls. */
/* n watchers of one class, each with one byte to read; returns the array (fds open). */
static conn *ready_watchers(tern_loop *loop, size_t n, bool background)
{
    conn *cs = tern_calloc(n, sizeof *cs);
    for (size_t i = 0; i < n; i++) {
        int p[2];
        make_pair(p);
        cs[i].peer_fd = p[1];
        tern_loop_io_init(loop, &cs[i].io, p[0], record_cb, &cs[i]);
        assert_int_equal(tern_loop_io_set_background(&cs[i].io, background), 0);
        assert_int_equal(tern_loop_io_start(&cs[i].io, TERN_LOOP_READ), 0);
        assert_int_equal(write(p[1], "z", 1), 1);
    }
    return cs;
}

static void close_watchers(conn *cs, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        tern_loop_io_stop(&cs[k].io);
        close(cs[k].io.fd);
        close(cs[k].peer_fd);
    }
    tern_free(cs);
}

static int calls(const conn *cs, size_t n)
{
    int total = 0;
    for (size_t k = 0; k < n; k++)
        total += cs[k].n_calls;
    return total;
}

static void test_many_watchers_larger_than_a_batch(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    size_t n = 700;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 2 * n + 64)
        n = (size_t)(rl.rlim_cur - 64) / 2;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    conn *cs = ready_watchers(loop, n, false);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.n_io, n);
    size_t total = 0;
    for (int i = 0; i < 10 && total < n; i++) {
        /* Each callback drains nothing, so a served fd fires again: stop it after one call. */
        int ran = tern_loop_run_once(loop, 0);
        assert_true(ran >= 0);
        for (size_t k = 0; k < n; k++)
            if (cs[k].n_calls && tern_loop_io_active(&cs[k].io))
                tern_loop_io_stop(&cs[k].io);
        total += (size_t)ran;
    }
    assert_int_equal(total, n);
    for (size_t k = 0; k < n; k++)
        assert_int_equal(cs[k].n_calls, 1);
    close_watchers(cs, n);
    tern_loop_free(loop);
}

/* tern_loop_free drops started watchers and marks them stopped. */
static void test_free_with_active_watchers(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    int p[2];
    make_pair(p);
    conn c = { 0 };
    tern_loop_io_init(loop, &c.io, p[0], record_cb, &c);
    assert_int_equal(tern_loop_io_start(&c.io, TERN_LOOP_WRITE), 0);
    tern_loop_free(loop);
    assert_false(tern_loop_io_active(&c.io));
    close(p[0]);
    close(p[1]);
}

/*
 * However many background watchers are ready, an iteration runs every ready foreground one and
 * at most the budget of background ones; the rest come in the next iterations, which do not
 * block, and every background watcher gets its turn.
 */
static void test_background_budget_per_iteration(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    tern_loop_set_background_budget(loop, 3);
    const size_t n_bg = 10, n_fg = 5;
    conn *bg = ready_watchers(loop, n_bg, true);
    conn *fg = ready_watchers(loop, n_fg, false);
    for (size_t k = 0; k < n_bg; k++)
        assert_true(bg[k].io.background);

    /* The watchers never drain their input, so each fires every iteration it is polled. */
    assert_int_equal(tern_loop_run_once(loop, -1), (int)(n_fg + 3));
    assert_int_equal(calls(fg, n_fg), (int)n_fg);
    assert_int_equal(calls(bg, n_bg), 3);
    tern_loop_stats st;
    tern_loop_get_stats(loop, &st);
    assert_int_equal(st.background_deferred, 1);

    /* Foreground watchers stopped: the background ones keep coming, 3 per iteration, all of
     * them within four iterations (a level-triggered watcher goes back to the end of the
     * ready list once reported). */
    for (size_t k = 0; k < n_fg; k++)
        tern_loop_io_stop(&fg[k].io);
    for (int i = 0; i < 3; i++)
        assert_int_equal(tern_loop_run_once(loop, -1), 3);
    assert_int_equal(calls(bg, n_bg), 12);
    for (size_t k = 0; k < n_bg; k++)
        assert_true(bg[k].n_calls >= 1);

    /* Drained, the background set stops reporting and the loop can block again. */
    for (size_t k = 0; k < n_bg; k++) {
        char c;
        assert_int_equal(read(bg[k].io.fd, &c, 1), 1);
    }
    assert_int_equal(tern_loop_run_once(loop, 0), 0);
    close_watchers(bg, n_bg);
    close_watchers(fg, n_fg);
    tern_loop_free(loop);
}

/* A started watcher moves between the classes with its interest; a moved-back one is served in
 * full again; stop works in either class. */
static void test_background_move_started_watcher(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    tern_loop_set_background_budget(loop, 1);
    conn *cs = ready_watchers(loop, 4, false);
    assert_int_equal(tern_loop_run_once(loop, 0), 4);

    for (size_t k = 0; k < 4; k++)
        assert_int_equal(tern_loop_io_set_background(&cs[k].io, true), 0);
    assert_int_equal(cs[0].io.interest, TERN_LOOP_READ);
    assert_int_equal(tern_loop_run_once(loop, 0), 1); /* the budget: one */

    /* Back to the foreground (the promotion after a handshake): all served at once. */
    for (size_t k = 0; k < 4; k++)
        assert_int_equal(tern_loop_io_set_background(&cs[k].io, false), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 4);

    /* Stop a background watcher: it is gone from the background set, no stale event. */
    assert_int_equal(tern_loop_io_set_background(&cs[0].io, true), 0);
    tern_loop_io_stop(&cs[0].io);
    int before = cs[0].n_calls;
    assert_int_equal(tern_loop_run_once(loop, 0), 3);
    assert_int_equal(cs[0].n_calls, before);
    /* A stopped watcher changes class without a system call and starts in its new class. */
    assert_int_equal(tern_loop_io_set_background(&cs[0].io, false), 0);
    assert_int_equal(tern_loop_io_start(&cs[0].io, TERN_LOOP_READ), 0);
    assert_int_equal(tern_loop_run_once(loop, 0), 4);
    close_watchers(cs, 4);
    tern_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socketpair_read_write),
        cmocka_unit_test(test_stop_and_free_other_in_same_batch),
        cmocka_unit_test(test_fd_reuse_in_same_batch_gets_no_stale_event),
        cmocka_unit_test(test_callback_frees_its_own_watcher),
        cmocka_unit_test(test_start_errors_leave_watcher_unchanged),
        cmocka_unit_test(test_many_watchers_larger_than_a_batch),
        cmocka_unit_test(test_free_with_active_watchers),
        cmocka_unit_test(test_background_budget_per_iteration),
        cmocka_unit_test(test_background_move_started_watcher),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

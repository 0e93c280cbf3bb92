/*
 * loop.c: the generic core of tern's event loop: fd slots with generations, the timing wheel,
 * deferred tasks, the cross-thread post queue and signal dispatch. The OS-specific calls go
 * through the backend interface in loop_int.h. Contracts are in loop.h; the design is in
 * docs/loop.md.
 *
 * One iteration: compute the poll timeout (0 if tasks are queued or a stop is pending, else up
 * to the wheel's next possible expiry), poll, refresh the clock, dispatch the I/O batch (the
 * wake-up watcher runs posted callbacks, the signal watcher runs signal callbacks; then at most
 * a budget of background watchers, if the background set was reported), run expired timers,
 * run the tasks queued before that phase.
 */
#include "loop/loop_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"

#include <limits.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CONTAINER_OF(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

/* ---- intrusive lists --------------------------------------------------------------------- */

/* ---- clock ------------------------------------------------------------------------------- */

uint64_t tern_loop_now_ms(const tern_loop *loop)
{
    return loop->now_ms;
}

void tern_loop_update_time(tern_loop *loop)
{
    uint64_t now = tern_clock_mono_ms();
    if (now > loop->now_ms) /* never let the cached time go backwards */
        loop->now_ms = now;
}

/* ---- I/O watchers ------------------------------------------------------------------------ */

static uint64_t make_token(int fd, uint32_t gen)
{
    return ((uint64_t)gen << 32) | (uint32_t)fd;
}

static int ensure_slots(tern_loop *loop, int fd)
{
    size_t need = (size_t)fd + 1;
    if (need <= loop->n_slots)
        return 0;
    size_t n = loop->n_slots ? loop->n_slots : 64;
    while (n < need)
        n *= 2;
    tern_loop_slot *slots = tern_realloc(loop->slots, n * sizeof *slots);
    if (!slots)
        return TERN_ENOMEM;
    memset(slots + loop->n_slots, 0, (n - loop->n_slots) * sizeof *slots);
    loop->slots = slots;
    loop->n_slots = n;
    return 0;
}

void tern_loop_io_init(tern_loop *loop, tern_loop_io *io, int fd, tern_loop_io_cb cb, void *data)
{
    TERN_ASSERT(loop && io && cb);
    io->data = data;
    io->fd = fd;
    io->interest = 0;
    io->loop = loop;
    io->cb = cb;
    io->background = false;
}

int tern_loop_io_start(tern_loop_io *io, unsigned events)
{
    TERN_ASSERT(io->loop);
    if (events & ~(TERN_LOOP_READ | TERN_LOOP_WRITE))
        return TERN_EINVAL;
    if (events == 0) {
        tern_loop_io_stop(io);
        return 0;
    }
    if (io->fd < 0)
        return TERN_EINVAL;
    if (io->interest == events)
        return 0;
    tern_loop *loop = io->loop;
    int rc;
    if (io->interest == 0) {
        rc = ensure_slots(loop, io->fd);
        if (rc < 0)
            return rc;
        tern_loop_slot *slot = &loop->slots[io->fd];
        if (slot->io)
            return TERN_EEXIST;
        uint32_t gen = slot->gen + 1;
        rc = tern_loop_be_ctl(loop, io->background, io->fd, make_token(io->fd, gen), 0, events);
        if (rc < 0)
            return rc;
        slot->gen = gen;
        slot->io = io;
        loop->stats.n_io++;
    } else {
        TERN_ASSERT(loop->slots[io->fd].io == io);
        uint32_t gen = loop->slots[io->fd].gen;
        rc = tern_loop_be_ctl(
            loop, io->background, io->fd, make_token(io->fd, gen), io->interest, events);
        if (rc < 0)
            return rc;
    }
    io->interest = events;
    return 0;
}

void tern_loop_io_stop(tern_loop_io *io)
{
    if (io->interest == 0)
        return;
    tern_loop *loop = io->loop;
    TERN_ASSERT((size_t)io->fd < loop->n_slots && loop->slots[io->fd].io == io);
    tern_loop_be_ctl(loop, io->background, io->fd, 0, io->interest, 0);
    /* Clearing the slot is what makes an event still pending in this batch stale. */
    loop->slots[io->fd].io = NULL;
    io->interest = 0;
    loop->stats.n_io--;
}

bool tern_loop_io_active(const tern_loop_io *io)
{
    return io->interest != 0;
}

int tern_loop_io_set_background(tern_loop_io *io, bool background)
{
    if (io->background == background)
        return 0;
    if (io->interest) {
        /* Register in the new set before leaving the old one, so a failure changes nothing. */
        tern_loop *loop = io->loop;
        uint64_t token = make_token(io->fd, loop->slots[io->fd].gen);
        int rc = tern_loop_be_ctl(loop, background, io->fd, token, 0, io->interest);
        if (rc < 0)
            return rc;
        tern_loop_be_ctl(loop, io->background, io->fd, token, io->interest, 0);
    }
    io->background = background;
    return 0;
}

void tern_loop_set_background_budget(tern_loop *loop, int budget)
{
    loop->background_budget = budget < 1 ? 1 : budget;
}

static bool is_internal(const tern_loop *loop, const tern_loop_io *io)
{
    return io == &loop->wake_io || io == &loop->sig_io;
}

static uint64_t dispatch_io(tern_loop *loop, const tern_loop_fired *fired, int n)
{
    uint64_t ran = 0;
    for (int i = 0; i < n; i++) {
        if (fired[i].token == TERN_LOOP_BACKGROUND_TOKEN) {
            loop->background_ready = true; /* dispatched after the foreground batch */
            continue;
        }
        uint32_t fd = (uint32_t)fired[i].token;
        uint32_t gen = (uint32_t)(fired[i].token >> 32);
        /* Index afresh every time: a callback may have grown (moved) the slot table. */
        tern_loop_io *io = fd < loop->n_slots ? loop->slots[fd].io : NULL;
        if (!io || loop->slots[fd].gen != gen) {
            loop->stats.stale_events++;
            continue;
        }
        unsigned ev = fired[i].events & (io->interest | TERN_LOOP_ERROR);
        if (!(ev & io->interest))
            continue;
        if (!is_internal(loop, io)) {
            loop->stats.io_events++;
            ran++;
        }
        io->cb(io, ev); /* io may be freed from here on */
    }
    return ran;
}

/* ---- the timing wheel -------------------------------------------------------------------- */

static unsigned level_shift(int level)
{
    return TERN_LOOP_L0_BITS + (unsigned)(level - 1) * TERN_LOOP_LN_BITS;
}

/* wheel_file links t into the slot for its deadline due (clamped to the wheel's range). */
static void wheel_file(tern_loop *loop, tern_loop_timer *t, uint64_t due)
{
    uint64_t base = loop->wheel_ms;
    uint64_t e = due < base ? base : due;
    if (e - base >= TERN_LOOP_WHEEL_SPAN_MS)
        e = base + TERN_LOOP_WHEEL_SPAN_MS - 1; /* re-filed by due_ms when reached */
    uint64_t delta = e - base;
    t->filed_ms = e;
    if (delta < TERN_LOOP_L0_SLOTS) {
        unsigned i = (unsigned)(e & (TERN_LOOP_L0_SLOTS - 1));
        loop->l0_bits[i / 64] |= (uint64_t)1 << (i % 64);
        tern_list_push_back(&loop->l0[i], &t->link);
        return;
    }
    int level = 1;
    while (delta >= ((uint64_t)1 << (level_shift(level) + TERN_LOOP_LN_BITS)))
        level++;
    unsigned i = (unsigned)((e >> level_shift(level)) & (TERN_LOOP_LN_SLOTS - 1));
    loop->ln_bits[level - 1] |= (uint64_t)1 << i;
    tern_list_push_back(&loop->ln[level - 1][i], &t->link);
}

/*
 * l0_next returns the first non-empty level-0 slot at index >= from, or -1. Occupancy bits are
 * cleared lazily: a stop does not know its slot, so a set bit may cover an empty list.
 */
static int l0_next(tern_loop *loop, unsigned from)
{
    for (unsigned w = from / 64; w < TERN_LOOP_L0_SLOTS / 64; w++) {
        uint64_t bits = loop->l0_bits[w];
        if (w == from / 64)
            bits &= ~(uint64_t)0 << (from % 64);
        while (bits) {
            unsigned b = (unsigned)__builtin_ctzll(bits);
            unsigned i = w * 64 + b;
            if (!tern_list_empty(&loop->l0[i]))
                return (int)i;
            loop->l0_bits[w] &= ~((uint64_t)1 << b);
            bits &= bits - 1;
        }
    }
    return -1;
}

/* ln_next returns the first non-empty slot of level (1..4) at or after from, wrapping, or -1. */
static int ln_next(tern_loop *loop, int level, unsigned from)
{
    for (int pass = 0; pass < 2; pass++) {
        uint64_t bits = loop->ln_bits[level - 1];
        bits &= pass == 0 ? ~(uint64_t)0 << from : ~(~(uint64_t)0 << from);
        while (bits) {
            unsigned i = (unsigned)__builtin_ctzll(bits);
            if (!tern_list_empty(&loop->ln[level - 1][i]))
                return (int)i;
            loop->ln_bits[level - 1] &= ~((uint64_t)1 << i);
            bits &= bits - 1;
        }
    }
    return -1;
}

/*
 * next_wake returns the earliest tick at which the wheel has work (a level-0 slot to fire or a
 * higher slot to cascade), UINT64_MAX if no timer is active. Never later than the next deadline.
 */
static uint64_t next_wake(tern_loop *loop)
{
    if (loop->stats.n_timers == 0)
        return UINT64_MAX;
    uint64_t w = loop->wheel_ms;
    unsigned idx = (unsigned)(w & (TERN_LOOP_L0_SLOTS - 1));
    int j = l0_next(loop, idx);
    if (j >= 0)
        return w - idx + (unsigned)j;
    uint64_t best = UINT64_MAX;
    if (l0_next(loop, 0) >= 0) /* slots behind idx belong to the next round */
        best = (w | (TERN_LOOP_L0_SLOTS - 1)) + 1;
    for (int level = 1; level < TERN_LOOP_LEVELS; level++) {
        unsigned shift = level_shift(level);
        uint64_t block = w >> shift;
        unsigned cur = (unsigned)(block & (TERN_LOOP_LN_SLOTS - 1));
        bool at_start = (block << shift) == w; /* this block's cascade has not run yet */
        unsigned from = at_start ? cur : (cur + 1) % TERN_LOOP_LN_SLOTS;
        int s = ln_next(loop, level, from);
        if (s < 0)
            continue;
        uint64_t delta = ((unsigned)s - cur) % TERN_LOOP_LN_SLOTS;
        if (delta == 0 && !at_start)
            delta = TERN_LOOP_LN_SLOTS;
        uint64_t t = (block + delta) << shift;
        if (t < best)
            best = t;
    }
    return best;
}

/* cascade re-files the higher-level slots that come due at tick (a multiple of 256). */
static void cascade(tern_loop *loop, uint64_t tick)
{
    for (int level = 1; level < TERN_LOOP_LEVELS; level++) {
        unsigned i = (unsigned)((tick >> level_shift(level)) & (TERN_LOOP_LN_SLOTS - 1));
        tern_list local;
        tern_list_take(&loop->ln[level - 1][i], &local);
        loop->ln_bits[level - 1] &= ~((uint64_t)1 << i);
        while (!tern_list_empty(&local)) {
            tern_loop_timer *t = CONTAINER_OF(local.next, tern_loop_timer, link);
            tern_list_unlink(&t->link);
            wheel_file(loop, t, t->due_ms); /* the true deadline: lazy resets land here */
        }
        if (i != 0)
            break;
    }
}

/* fire_slot fires level-0 slot i for tick (wheel_ms is already tick + 1). */
static uint64_t fire_slot(tern_loop *loop, unsigned i, uint64_t tick, uint64_t now)
{
    uint64_t ran = 0;
    tern_list local;
    tern_list_take(&loop->l0[i], &local);
    loop->l0_bits[i / 64] &= ~((uint64_t)1 << (i % 64));
    /* Callbacks may stop (unlink) or reset any timer still on local: both are list-safe. */
    while (!tern_list_empty(&local)) {
        tern_loop_timer *t = CONTAINER_OF(local.next, tern_loop_timer, link);
        tern_list_unlink(&t->link);
        if (t->due_ms > tick) { /* reset to later since it was filed: re-file lazily */
            wheel_file(loop, t, t->due_ms);
            continue;
        }
        if (t->repeat_ms) {
            uint64_t next = t->due_ms + t->repeat_ms;
            if (next <= now)
                next = now + t->repeat_ms; /* fell behind: skip the missed periods */
            t->due_ms = next;
            wheel_file(loop, t, next); /* re-armed before the callback, which may stop it */
        } else {
            t->active = false;
            loop->stats.n_timers--;
        }
        loop->stats.timers_fired++;
        ran++;
        t->cb(t); /* t may be freed from here on */
    }
    return ran;
}

static uint64_t run_timers(tern_loop *loop)
{
    uint64_t now = loop->now_ms;
    uint64_t ran = 0;
    while (loop->wheel_ms <= now) {
        if (loop->stats.n_timers == 0) {
            loop->wheel_ms = now + 1;
            break;
        }
        uint64_t tick = loop->wheel_ms;
        unsigned idx = (unsigned)(tick & (TERN_LOOP_L0_SLOTS - 1));
        if (idx == 0)
            cascade(loop, tick);
        int j = l0_next(loop, idx);
        if (j < 0) {
            /* Nothing more in this block: skip the empty ticks and cascades up to the next
               point where the wheel has work, so a long sleep costs O(levels), not O(ms). */
            uint64_t next = next_wake(loop);
            if (next <= tick)
                next = tick + 1;
            if (next > now) {
                loop->wheel_ms = now + 1;
                break;
            }
            loop->wheel_ms = next;
            continue;
        }
        tick += (unsigned)j - idx;
        if (tick > now) {
            loop->wheel_ms = now + 1;
            break;
        }
        loop->wheel_ms = tick + 1;
        ran += fire_slot(loop, (unsigned)j, tick, now);
    }
    return ran;
}

void tern_loop_timer_init(
    tern_loop *loop, tern_loop_timer *timer, tern_loop_timer_cb cb, void *data)
{
    TERN_ASSERT(loop && timer && cb);
    memset(timer, 0, sizeof *timer);
    timer->data = data;
    timer->loop = loop;
    timer->cb = cb;
}

void tern_loop_timer_start(tern_loop_timer *timer, uint64_t timeout_ms, uint32_t repeat_ms)
{
    TERN_ASSERT(timer->loop);
    tern_loop *loop = timer->loop;
    uint64_t due = loop->now_ms + timeout_ms;
    if (due < loop->now_ms)
        due = UINT64_MAX; /* saturate */
    timer->repeat_ms = repeat_ms;
    if (timer->active) {
        if (due >= timer->filed_ms) { /* the keepalive reset: O(1), no list touched */
            timer->due_ms = due;
            return;
        }
        tern_list_unlink(&timer->link);
    } else {
        timer->active = true;
        loop->stats.n_timers++;
    }
    timer->due_ms = due;
    wheel_file(loop, timer, due);
}

void tern_loop_timer_stop(tern_loop_timer *timer)
{
    if (!timer->active)
        return;
    tern_list_unlink(&timer->link);
    timer->active = false;
    timer->loop->stats.n_timers--;
}

bool tern_loop_timer_active(const tern_loop_timer *timer)
{
    return timer->active;
}

uint64_t tern_loop_timer_due_ms(const tern_loop_timer *timer)
{
    return timer->due_ms;
}

/* ---- deferred tasks ---------------------------------------------------------------------- */

void tern_loop_defer(tern_loop *loop, tern_loop_task *task, tern_loop_task_cb cb, void *data)
{
    TERN_ASSERT(loop && task && cb);
    task->cb = cb;
    task->data = data;
    if (task->queued)
        return;
    task->loop = loop;
    task->queued = true;
    tern_list_push_back(&loop->tasks, &task->link);
    loop->stats.n_tasks++;
}

void tern_loop_cancel(tern_loop_task *task)
{
    if (!task->queued)
        return;
    tern_list_unlink(&task->link);
    task->queued = false;
    task->loop->stats.n_tasks--;
}

static uint64_t run_tasks(tern_loop *loop)
{
    uint64_t ran = 0;
    tern_list local;
    tern_list_take(&loop->tasks, &local); /* tasks deferred from here on wait for the next pass */
    while (!tern_list_empty(&local)) {
        tern_loop_task *task = CONTAINER_OF(local.next, tern_loop_task, link);
        tern_list_unlink(&task->link);
        task->queued = false;
        loop->stats.n_tasks--;
        ran++;
        task->cb(task);
    }
    return ran;
}

/* ---- cross-thread posts ------------------------------------------------------------------ */

int tern_loop_post(tern_loop *loop, tern_loop_post_cb fn, void *arg)
{
    tern_loop_post_node *node = tern_malloc(sizeof *node);
    if (!node)
        return TERN_ENOMEM;
    node->next = NULL;
    node->fn = fn;
    node->arg = arg;
    pthread_mutex_lock(&loop->post_mu);
    bool was_empty = loop->post_head == NULL;
    if (loop->post_tail)
        loop->post_tail->next = node;
    else
        loop->post_head = node;
    loop->post_tail = node;
    pthread_mutex_unlock(&loop->post_mu);
    /* Only the post that makes the queue non-empty needs to wake the loop: the loop takes the
       whole queue after draining the descriptor, so later posts ride on this wake-up. */
    if (was_empty)
        tern_loop_be_wake_signal(loop->wake_fd);
    return 0;
}

static uint64_t run_posts(tern_loop *loop)
{
    uint64_t ran = 0;
    tern_loop_be_wake_drain(loop->wake_fd);
    pthread_mutex_lock(&loop->post_mu);
    tern_loop_post_node *node = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_mu);
    while (node) {
        tern_loop_post_node *next = node->next;
        tern_loop_post_cb fn = node->fn;
        void *arg = node->arg;
        tern_free(node);
        loop->stats.posts_run++;
        ran++;
        fn(loop, arg);
        node = next;
    }
    return ran;
}

/* The wake-up watcher's callback; its count is carried out through loop->ran_internal. */
static void wake_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    tern_loop *loop = io->data;
    loop->ran_internal += run_posts(loop);
}

/* ---- signals ----------------------------------------------------------------------------- */

static void sig_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    tern_loop *loop = io->data;
    for (;;) {
        int signum = tern_loop_be_sig_read(loop->sig_fd);
        if (signum <= 0 || signum >= NSIG)
            break;
        /* Call each watcher once, moving it back before its callback so that it may stop
           itself or any other watcher, and a watcher started now waits for the next signal. */
        tern_list local;
        tern_list_take(&loop->sig_watchers[signum], &local);
        while (!tern_list_empty(&local)) {
            tern_list *link = local.next;
            tern_list_unlink(link);
            tern_list_push_back(&loop->sig_watchers[signum], link);
            tern_loop_signal *sig = CONTAINER_OF(link, tern_loop_signal, link);
            loop->ran_internal++;
            sig->cb(sig, signum);
        }
    }
}

static int sig_ensure_fd(tern_loop *loop)
{
    if (loop->sig_fd >= 0)
        return 0;
    sigset_t none;
    sigemptyset(&none);
    int fd = -1;
    int rc = tern_loop_be_sig_update(&fd, &none);
    if (rc < 0)
        return rc;
    tern_loop_io_init(loop, &loop->sig_io, fd, sig_cb, loop);
    rc = tern_loop_io_start(&loop->sig_io, TERN_LOOP_READ);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    loop->sig_fd = fd;
    loop->n_io_internal++;
    return 0;
}

/* sig_release forgets signum once its last watcher is gone. */
static void sig_release(tern_loop *loop, int signum)
{
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, signum);
    sigdelset(&loop->sig_mask, signum);
    tern_loop_be_sig_update(&loop->sig_fd, &loop->sig_mask);
    if (sigismember(&loop->sig_we_blocked, signum)) {
        /* Discard pending instances first: unblocking them would run the default action. */
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&one, NULL, &zero) > 0) { }
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        sigdelset(&loop->sig_we_blocked, signum);
    }
}

void tern_loop_signal_init(
    tern_loop *loop, tern_loop_signal *sig, tern_loop_signal_cb cb, void *data)
{
    TERN_ASSERT(loop && sig && cb);
    memset(sig, 0, sizeof *sig);
    sig->data = data;
    sig->loop = loop;
    sig->cb = cb;
}

int tern_loop_signal_start(tern_loop_signal *sig, int signum)
{
    TERN_ASSERT(sig->loop);
    tern_loop *loop = sig->loop;
    if (signum <= 0 || signum >= NSIG || signum == SIGKILL || signum == SIGSTOP)
        return TERN_EINVAL;
    if (sig->signum == signum)
        return 0;
    int rc = sig_ensure_fd(loop);
    if (rc < 0)
        return rc;
    if (loop->sig_count[signum] == 0) {
        sigset_t one, old, mask = loop->sig_mask;
        sigemptyset(&one);
        sigaddset(&one, signum);
        sigaddset(&mask, signum);
        rc = -pthread_sigmask(SIG_BLOCK, &one, &old);
        if (rc < 0)
            return rc;
        rc = tern_loop_be_sig_update(&loop->sig_fd, &mask);
        if (rc < 0) {
            if (!sigismember(&old, signum))
                pthread_sigmask(SIG_UNBLOCK, &one, NULL);
            return rc;
        }
        if (!sigismember(&old, signum))
            sigaddset(&loop->sig_we_blocked, signum);
        loop->sig_mask = mask;
    }
    tern_loop_signal_stop(sig); /* a restart moves the watcher to the new signal */
    tern_list_push_back(&loop->sig_watchers[signum], &sig->link);
    loop->sig_count[signum]++;
    sig->signum = signum;
    loop->stats.n_signals++;
    return 0;
}

void tern_loop_signal_stop(tern_loop_signal *sig)
{
    if (sig->signum == 0)
        return;
    tern_loop *loop = sig->loop;
    int signum = sig->signum;
    tern_list_unlink(&sig->link);
    sig->signum = 0;
    loop->stats.n_signals--;
    if (--loop->sig_count[signum] == 0)
        sig_release(loop, signum);
}

/* ---- the loop ---------------------------------------------------------------------------- */

int tern_loop_new(tern_loop **out)
{
    int rc;
    tern_loop *loop = tern_calloc(1, sizeof *loop);
    if (!loop)
        return TERN_ENOMEM;
    for (unsigned i = 0; i < TERN_LOOP_L0_SLOTS; i++)
        tern_list_init(&loop->l0[i]);
    for (int l = 0; l < TERN_LOOP_LEVELS - 1; l++)
        for (unsigned i = 0; i < TERN_LOOP_LN_SLOTS; i++)
            tern_list_init(&loop->ln[l][i]);
    tern_list_init(&loop->tasks);
    for (int s = 0; s < NSIG; s++)
        tern_list_init(&loop->sig_watchers[s]);
    sigemptyset(&loop->sig_mask);
    sigemptyset(&loop->sig_we_blocked);
    loop->wake_fd = -1;
    loop->sig_fd = -1;
    loop->background_budget = TERN_LOOP_BACKGROUND_BUDGET;
    rc = -pthread_mutex_init(&loop->post_mu, NULL);
    if (rc < 0) {
        tern_free(loop);
        return rc;
    }
    rc = tern_loop_be_init(loop);
    if (rc < 0)
        goto fail;
    rc = tern_loop_be_wake_open(&loop->wake_fd);
    if (rc < 0)
        goto fail;
    tern_loop_io_init(loop, &loop->wake_io, loop->wake_fd, wake_cb, loop);
    rc = tern_loop_io_start(&loop->wake_io, TERN_LOOP_READ);
    if (rc < 0)
        goto fail;
    loop->n_io_internal = 1;
    loop->now_ms = tern_clock_mono_ms();
    loop->wheel_ms = loop->now_ms;
    *out = loop;
    return 0;
fail:
    if (loop->wake_fd >= 0)
        close(loop->wake_fd);
    tern_loop_be_free(loop);
    tern_free(loop->slots);
    pthread_mutex_destroy(&loop->post_mu);
    tern_free(loop);
    return rc;
}

/* forget_timers marks every timer on list as stopped (tern_loop_free). */
static void forget_timers(tern_list *head)
{
    while (!tern_list_empty(head)) {
        tern_loop_timer *t = CONTAINER_OF(head->next, tern_loop_timer, link);
        tern_list_unlink(&t->link);
        t->active = false;
    }
}

void tern_loop_free(tern_loop *loop)
{
    if (!loop)
        return;
    for (int s = 1; s < NSIG; s++)
        while (!tern_list_empty(&loop->sig_watchers[s]))
            tern_loop_signal_stop(CONTAINER_OF(loop->sig_watchers[s].next, tern_loop_signal, link));
    for (size_t fd = 0; fd < loop->n_slots; fd++)
        if (loop->slots[fd].io)
            loop->slots[fd].io->interest = 0;
    for (unsigned i = 0; i < TERN_LOOP_L0_SLOTS; i++)
        forget_timers(&loop->l0[i]);
    for (int l = 0; l < TERN_LOOP_LEVELS - 1; l++)
        for (unsigned i = 0; i < TERN_LOOP_LN_SLOTS; i++)
            forget_timers(&loop->ln[l][i]);
    while (!tern_list_empty(&loop->tasks))
        tern_loop_cancel(CONTAINER_OF(loop->tasks.next, tern_loop_task, link));
    tern_loop_post_node *node = loop->post_head;
    while (node) {
        tern_loop_post_node *next = node->next;
        tern_free(node);
        node = next;
    }
    if (loop->sig_fd >= 0)
        close(loop->sig_fd);
    close(loop->wake_fd);
    tern_loop_be_free(loop);
    tern_free(loop->slots);
    pthread_mutex_destroy(&loop->post_mu);
    tern_free(loop);
}

static int poll_timeout(tern_loop *loop, int timeout_ms)
{
    if (loop->stop || !tern_list_empty(&loop->tasks))
        return 0;
    uint64_t wake = next_wake(loop);
    if (wake == UINT64_MAX)
        return timeout_ms;
    uint64_t wait = wake <= loop->now_ms ? 0 : wake - loop->now_ms;
    if (wait > INT_MAX)
        wait = INT_MAX;
    if (timeout_ms >= 0 && (uint64_t)timeout_ms < wait)
        return timeout_ms;
    return (int)wait;
}

int tern_loop_backend_timeout(tern_loop *loop)
{
    return poll_timeout(loop, -1);
}

int tern_loop_run_once(tern_loop *loop, int timeout_ms)
{
    tern_loop_fired fired[TERN_LOOP_BATCH];
    tern_loop_update_time(loop);
    int n = tern_loop_be_poll(loop, poll_timeout(loop, timeout_ms), fired, TERN_LOOP_BATCH);
    if (n < 0)
        return n;
    tern_loop_update_time(loop);
    loop->ran_internal = 0;
    loop->background_ready = false;
    uint64_t ran = dispatch_io(loop, fired, n);
    if (loop->background_ready) {
        int budget = loop->background_budget;
        int m = tern_loop_be_poll_background(loop, fired, budget);
        if (m < 0)
            return m;
        if (m == budget)
            loop->stats.background_deferred++; /* maybe more: the next poll will not block */
        ran += dispatch_io(loop, fired, m);
    }
    ran += loop->ran_internal;
    ran += run_timers(loop);
    ran += run_tasks(loop);
    loop->stats.iterations++;
    return ran > INT_MAX ? INT_MAX : (int)ran;
}

int tern_loop_run(tern_loop *loop)
{
    int rc;
    do {
        rc = tern_loop_run_once(loop, -1);
    } while (rc >= 0 && !loop->stop);
    loop->stop = false;
    return rc < 0 ? rc : 0;
}

void tern_loop_stop(tern_loop *loop)
{
    loop->stop = true;
}

void tern_loop_get_stats(const tern_loop *loop, tern_loop_stats *out)
{
    *out = loop->stats;
    out->n_io -= loop->n_io_internal;
}

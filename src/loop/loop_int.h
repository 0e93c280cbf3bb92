/*
 * loop_int.h: the loop's private state and the interface between the generic core (loop.c)
 * and a per-OS backend (loop_epoll.c on Linux). Nothing outside src/loop/ includes this.
 *
 * The backend knows nothing of watchers: the core hands it (fd, token, interest) and gets back
 * (token, events) pairs from a poll. The token is opaque to the backend; the core encodes the
 * fd and the fd slot's generation in it, which is how a stale event is recognised. The
 * backend also supplies the two OS-specific descriptors the core watches: a wake-up descriptor
 * for tern_loop_post and a signal descriptor. A kqueue backend would implement the same calls.
 */
#ifndef TERN_LOOP_LOOP_INT_H
#define TERN_LOOP_LOOP_INT_H

#include "loop/loop.h"

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>

/* Events the backend may report at once; a larger ready set is read over several polls. */
#define TERN_LOOP_BATCH 512

/* Background watchers dispatched per iteration unless tern_loop_set_background_budget says. */
#define TERN_LOOP_BACKGROUND_BUDGET 8

/*
 * The token a foreground poll reports when background watchers are ready. The core never makes
 * it: its tokens carry an fd (< 2^31) in the low half.
 */
#define TERN_LOOP_BACKGROUND_TOKEN UINT64_MAX

/* The timing wheel: level 0 has 2^8 slots of 1 ms, levels 1..4 have 2^6 slots each. */
#define TERN_LOOP_L0_BITS 8
#define TERN_LOOP_LN_BITS 6
#define TERN_LOOP_L0_SLOTS (1u << TERN_LOOP_L0_BITS)
#define TERN_LOOP_LN_SLOTS (1u << TERN_LOOP_LN_BITS)
#define TERN_LOOP_LEVELS 5
/* The farthest a timer is filed ahead of the wheel; beyond it a timer is re-filed later. */
#define TERN_LOOP_WHEEL_SPAN_MS ((uint64_t)1 << (TERN_LOOP_L0_BITS + 4 * TERN_LOOP_LN_BITS))

/* One readiness report from the backend. */
typedef struct tern_loop_fired {
    uint64_t token;  /* as passed to tern_loop_be_ctl */
    unsigned events; /* TERN_LOOP_READ | TERN_LOOP_WRITE | TERN_LOOP_ERROR */
} tern_loop_fired;

/* What the core keeps per fd number: the watcher, and a generation bumped at every start. */
typedef struct tern_loop_slot {
    tern_loop_io *io;
    uint32_t gen;
} tern_loop_slot;

typedef struct tern_loop_be tern_loop_be;

typedef struct tern_loop_post_node {
    struct tern_loop_post_node *next;
    tern_loop_post_cb fn;
    void *arg;
} tern_loop_post_node;

struct tern_loop {
    tern_loop_be *be;
    uint64_t now_ms;
    bool stop;

    /* I/O: slots[fd] for fd < n_slots. */
    tern_loop_slot *slots;
    size_t n_slots;

    /* Timers. wheel_ms is the next tick to process: every timer due before it has fired. */
    uint64_t wheel_ms;
    tern_list l0[TERN_LOOP_L0_SLOTS];
    tern_list ln[TERN_LOOP_LEVELS - 1][TERN_LOOP_LN_SLOTS];
    uint64_t l0_bits[TERN_LOOP_L0_SLOTS / 64]; /* bit set: that slot's list is not empty */
    uint64_t ln_bits[TERN_LOOP_LEVELS - 1];

    /* Deferred tasks. */
    tern_list tasks;

    /* Cross-thread posts: a mutex-protected FIFO plus the backend's wake-up descriptor. */
    pthread_mutex_t post_mu;
    tern_loop_post_node *post_head, *post_tail;
    int wake_fd;
    tern_loop_io wake_io;

    /* Signals: watchers per signal number, the signalfd's mask, and what we blocked. */
    int sig_fd;
    tern_loop_io sig_io;
    sigset_t sig_mask;
    sigset_t sig_we_blocked;
    tern_list sig_watchers[NSIG];
    uint32_t sig_count[NSIG]; /* watchers per signal, including any being called right now */

    /* Background watchers dispatched per iteration at most (tern_loop_set_background_budget),
     * and whether this iteration's foreground poll reported the background set ready. */
    int background_budget;
    bool background_ready;

    /* Counters; n_io_internal counts the loop's own watchers (wake, signals). */
    tern_loop_stats stats;
    uint64_t n_io_internal;
    /* User callbacks run by the loop's own watchers (posts, signals) in this iteration. */
    uint64_t ran_internal;
};

/* ---- backend interface (loop_epoll.c) ---------------------------------------------------- */

/* tern_loop_be_init creates loop->be. Returns 0, TERN_ENOMEM or -errno. */
int tern_loop_be_init(tern_loop *loop);
/* tern_loop_be_free releases loop->be (NULL-safe). */
void tern_loop_be_free(tern_loop *loop);
/*
 * The backend keeps two sets of registrations: the foreground set, which tern_loop_be_poll
 * waits on, and the background set (created on first use), which tern_loop_be_poll reports as
 * one event with TERN_LOOP_BACKGROUND_TOKEN while any of its descriptors is ready, and which
 * tern_loop_be_poll_background reads.
 *
 * tern_loop_be_ctl changes fd's registration in one set from old_events to new_events
 * (TERN_LOOP_READ|WRITE): old 0 adds, new 0 removes, otherwise modifies. token comes back with
 * each event. Returns 0 or -errno; a removal never fails (the fd may already be closed).
 */
int tern_loop_be_ctl(tern_loop *loop, bool background, int fd, uint64_t token, unsigned old_events,
    unsigned new_events);
/*
 * tern_loop_be_poll waits at most timeout_ms (-1: forever) for the foreground set and writes at
 * most max reports to fired. Returns their number (0 on timeout or EINTR) or -errno.
 */
int tern_loop_be_poll(tern_loop *loop, int timeout_ms, tern_loop_fired *fired, int max);
/* tern_loop_be_poll_background is the same for the background set, without blocking. */
int tern_loop_be_poll_background(tern_loop *loop, tern_loop_fired *fired, int max);
/* tern_loop_be_wake_open creates the non-blocking wake-up descriptor. 0 or -errno. */
int tern_loop_be_wake_open(int *out_fd);
/* tern_loop_be_wake_signal makes the wake-up descriptor readable (any thread). */
void tern_loop_be_wake_signal(int fd);
/* tern_loop_be_wake_drain makes it unreadable again. */
void tern_loop_be_wake_drain(int fd);
/*
 * tern_loop_be_sig_update points the signal descriptor *fd at mask, creating it when *fd < 0.
 * Returns 0 or -errno (*fd unchanged on error).
 */
int tern_loop_be_sig_update(int *fd, const sigset_t *mask);
/* tern_loop_be_sig_read reads one signal: returns its number, 0 when none is pending, or -errno. */
int tern_loop_be_sig_read(int fd);

#endif

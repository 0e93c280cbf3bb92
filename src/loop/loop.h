/*
 * loop.h: tern's event loop: I/O watchers, timers, deferred tasks, cross-thread posts, signals.
 *
 * One loop runs on one thread (the broker runs one per core). A generic core (loop.c) sits on a
 * per-OS backend (loop_epoll.c, behind loop_int.h), the Redis ae split; the contracts are
 * libuv's: the caller allocates every struct it can see (watchers and timers are embedded in
 * the caller's own connection struct, so a connection costs the loop no allocation), errors are
 * negative TERN_E* / -errno codes, and when a call returns an error its callback is never
 * called.
 *
 * Threading: every function here must be called on the loop's own thread, EXCEPT
 * tern_loop_post(), which is the one thread-safe entry point (use it to hand work back to a loop
 * from another thread, or to stop it: post a callback that calls tern_loop_stop()).
 *
 * I/O is level-triggered (epoll without EPOLLET). A watcher reports readiness for as long as it
 * lasts, so a callback may read only part of what is available. The usual broker pattern is:
 * READ always, WRITE only while output is queued (start WRITE when a write returns EAGAIN, drop it
 * when the queue drains), so an idle connection costs no wake-ups.
 *
 * Lifetime rule (use-after-free guard): once tern_loop_io_stop(), tern_loop_timer_stop(),
 * tern_loop_signal_stop() or tern_loop_cancel() returns, the loop never touches that struct
 * again, even if an event for it is still pending in the batch being dispatched. So a callback
 * may stop and free ANY struct, its own or another connection's, right away. Internally each fd
 * slot carries a generation number that is stored in the kernel's event token, so a stale event
 * (for a watcher stopped earlier in the same batch, or for a new connection that reused the fd
 * number) is recognised and dropped. A loop never reads a struct after that struct's own
 * callback returns, except a repeating timer, which is re-armed before its callback runs.
 *
 * Timers are a hierarchical timing wheel with lazy re-insertion; see the comment above
 * tern_loop_timer_start for the design and its complexity. Resolution is 1 ms.
 *
 * The loop's clock is tern_clock_mono_ms() from base/clock.h, read once per iteration and cached
 * (tern_loop_now_ms); tests can drive it with tern_clock_fake_set()/_advance_ns().
 */
#ifndef TERN_LOOP_LOOP_H
#define TERN_LOOP_LOOP_H

#include "base/list.h" /* the links of timers, tasks and signal watchers (private to the loop) */

#include <stdbool.h>
#include <stdint.h>

typedef struct tern_loop tern_loop;

/* ---- the loop ---------------------------------------------------------------------------- */

/*
 * tern_loop_new creates a loop (an epoll instance, an eventfd for posts) and sets *out only on
 * success. The loop belongs to the thread that runs it. Returns 0, TERN_ENOMEM or -errno
 * (e.g. -EMFILE).
 */
int tern_loop_new(tern_loop **out);

/*
 * tern_loop_free closes the loop's descriptors and frees it. Watchers, timers, signals and
 * tasks still started are dropped without their callbacks being called (the caller owns those
 * structs and may free them before or after). Posts still queued are dropped without being
 * called: stop every posting thread first. Blocked signals are unblocked. NULL is a no-op.
 */
void tern_loop_free(tern_loop *loop);

/*
 * tern_loop_run runs iterations until tern_loop_stop() is called, then returns 0 at the end of
 * that iteration (the stop request is consumed). It blocks in the kernel when there is nothing
 * to do; it does not return merely because nothing is being watched. Returns a negative -errno
 * if the backend fails (epoll_wait failing other than by EINTR).
 */
int tern_loop_run(tern_loop *loop);

/*
 * tern_loop_run_once runs one iteration: it waits for I/O at most timeout_ms (-1: until an
 * event or the next timer; 0: do not block), dispatches I/O, runs expired timers, then runs the
 * tasks deferred before this phase began. Returns the number of callbacks it ran (>= 0) or a
 * negative -errno from the backend. Meant for tests and for embedding in another loop.
 */
int tern_loop_run_once(tern_loop *loop, int timeout_ms);

/*
 * tern_loop_stop asks tern_loop_run to return at the end of the current iteration. Loop thread
 * only: from another thread, tern_loop_post() a callback that calls it.
 */
void tern_loop_stop(tern_loop *loop);

/*
 * tern_loop_backend_timeout returns how long (ms) the next iteration would block if nothing
 * happened: 0 when tasks are queued, a stop is pending or a timer is due; -1 when no timer is
 * armed; otherwise the time to the wheel's next possible expiry, which is never later than the
 * earliest deadline (it may be earlier, at a cascade point). For embedding and for tests.
 */
int tern_loop_backend_timeout(tern_loop *loop);

/* tern_loop_now_ms returns the monotonic time in ms cached at the start of this iteration. */
uint64_t tern_loop_now_ms(const tern_loop *loop);

/* tern_loop_update_time refreshes the cached time (after a long computation in a callback). */
void tern_loop_update_time(tern_loop *loop);

/* Counters for the metrics registry. Gauges are current values; the others only grow. */
typedef struct tern_loop_stats {
    uint64_t n_io;                /* gauge: active I/O watchers (the loop's own not counted) */
    uint64_t n_timers;            /* gauge: active timers */
    uint64_t n_signals;           /* gauge: active signal watchers */
    uint64_t n_tasks;             /* gauge: deferred tasks waiting to run */
    uint64_t iterations;          /* iterations completed */
    uint64_t io_events;           /* I/O callbacks called */
    uint64_t timers_fired;        /* timer callbacks called */
    uint64_t posts_run;           /* posted callbacks called */
    uint64_t stale_events;        /* events dropped because their watcher had stopped */
    uint64_t background_deferred; /* iterations that left ready background watchers waiting */
} tern_loop_stats;

/* tern_loop_get_stats copies the loop's counters into *out. */
void tern_loop_get_stats(const tern_loop *loop, tern_loop_stats *out);

/* ---- I/O watchers ------------------------------------------------------------------------ */

#define TERN_LOOP_READ 0x1u  /* readable, or the peer closed (read returns 0) */
#define TERN_LOOP_WRITE 0x2u /* writable */
#define TERN_LOOP_ERROR                                                                            \
    0x4u /* error or hang-up (EPOLLERR/EPOLLHUP): reported with READ/WRITE of                      \
            the interest set, so the next read or write returns the cause */

typedef struct tern_loop_io tern_loop_io;
/* Called with the events that fired, limited to the current interest (plus TERN_LOOP_ERROR). */
typedef void (*tern_loop_io_cb)(tern_loop_io *io, unsigned events);

struct tern_loop_io {
    void *data;        /* the caller's: the loop never reads it */
    int fd;            /* read-only: the watched descriptor */
    unsigned interest; /* read-only: TERN_LOOP_READ|WRITE currently watched, 0 when stopped */
    /* private */
    tern_loop *loop;
    tern_loop_io_cb cb;
    bool background; /* see tern_loop_io_set_background */
};

/*
 * tern_loop_io_init prepares io to watch fd (which the caller owns and keeps open while the
 * watcher is started). Makes no system call and cannot fail; io starts stopped. Do not call it
 * on a started watcher.
 */
void tern_loop_io_init(tern_loop *loop, tern_loop_io *io, int fd, tern_loop_io_cb cb, void *data);

/*
 * tern_loop_io_start sets the interest of io to events (a mix of TERN_LOOP_READ and
 * TERN_LOOP_WRITE): it starts a stopped watcher, or modifies a started one (no system call when
 * the interest is unchanged). events == 0 is tern_loop_io_stop. A started watcher keeps its
 * place in the current batch: an event already pending for it is delivered, filtered by the new
 * interest. Returns 0; TERN_EINVAL for bits other than READ|WRITE or a negative fd; TERN_EEXIST
 * if another watcher already watches this fd; TERN_ENOMEM; or -errno from epoll_ctl (e.g. EPERM
 * for a regular file). On error the watcher is as it was.
 */
int tern_loop_io_start(tern_loop_io *io, unsigned events);

/*
 * tern_loop_io_stop stops io: after it returns the loop never touches io again, so the caller
 * may free it at once, even from inside another watcher's callback whose batch holds an event
 * for io. Stop the watcher before closing its fd. A stopped watcher is a no-op.
 */
void tern_loop_io_stop(tern_loop_io *io);

/* tern_loop_io_active tells whether io is started. */
bool tern_loop_io_active(const tern_loop_io *io);

/*
 * Two classes of watchers. Every iteration dispatches every ready foreground watcher (the
 * default), then at most a budget of ready background watchers (tern_loop_set_background_budget,
 * default 8); the rest wait for the next iterations, which then do not block. However many
 * background watchers are ready, they delay the foreground ones by at most one budget's worth of
 * callbacks per iteration. Meant for work that may wait but must not hold up the rest: a
 * server's accepts and handshakes, so that established connections keep their latency during a
 * reconnect storm.
 *
 * tern_loop_io_set_background moves io to the background class (true) or back (false), started
 * or stopped; a started watcher keeps its interest and an event already pending in this batch is
 * still delivered. Returns 0, or -errno with io unchanged.
 */
int tern_loop_io_set_background(tern_loop_io *io, bool background);

/* tern_loop_set_background_budget sets how many background callbacks an iteration runs (>= 1). */
void tern_loop_set_background_budget(tern_loop *loop, int budget);

/* ---- timers ------------------------------------------------------------------------------ */

typedef struct tern_loop_timer tern_loop_timer;
typedef void (*tern_loop_timer_cb)(tern_loop_timer *timer);

struct tern_loop_timer {
    void *data; /* the caller's */
    /* private */
    tern_list link; /* in a wheel slot while active */
    tern_loop *loop;
    tern_loop_timer_cb cb;
    uint64_t due_ms;   /* the true deadline */
    uint64_t filed_ms; /* the deadline the wheel slot was chosen for: filed_ms <= due_ms */
    uint32_t repeat_ms;
    bool active;
};

/* tern_loop_timer_init prepares a stopped timer. No system call, cannot fail. */
void tern_loop_timer_init(
    tern_loop *loop, tern_loop_timer *timer, tern_loop_timer_cb cb, void *data);

/*
 * tern_loop_timer_start (re)arms timer to fire timeout_ms after tern_loop_now_ms(), then, if
 * repeat_ms > 0, every repeat_ms after its previous deadline (a repeating timer that falls
 * behind skips the missed periods: it is re-armed for now + repeat_ms). Calling it on an active
 * timer moves the deadline: this is the keepalive reset, meant to be called on every packet.
 *
 * Design. Timers live in a hierarchical timing wheel (Varghese & Lauck; the classic Linux
 * cascade): level 0 has 256 slots of 1 ms, levels 1-4 have 64 slots each covering 2^8, 2^14,
 * 2^20 and 2^26 ms, so 2^32 ms (49 days) is reachable; a later deadline is filed at the far end
 * and re-filed when reached. A timer sits in the slot for filed_ms; when that slot comes due the
 * wheel compares the true deadline due_ms: if it is still in the future the timer is re-filed
 * (lazy re-insertion), otherwise it fires. Costs, with n timers:
 *   - start / stop: O(1) (unlink + link);
 *   - reset to a later deadline (the keepalive case): O(1) and touches no list at all, it only
 *     stores due_ms; a reset to an earlier deadline relinks, O(1);
 *   - expiry: O(1) per timer plus at most 4 cascades/re-filings per timer per period, whatever
 *     the number of resets in between;
 *   - the loop's next wake-up: O(levels) with per-level occupancy bitmaps; it may be earlier
 *     than the next deadline (at a cascade point), never later.
 * A binary heap would cost O(log n) on every reset, i.e. on every packet of every connection.
 * Timers due in the same millisecond fire in an unspecified order; timers with different
 * deadlines fire in deadline order. A timer started from a callback with a deadline already
 * reached fires on a later tick, so a callback that re-arms itself with 0 cannot starve I/O.
 */
void tern_loop_timer_start(tern_loop_timer *timer, uint64_t timeout_ms, uint32_t repeat_ms);

/* tern_loop_timer_stop cancels timer; afterwards the loop never touches it. No-op if stopped. */
void tern_loop_timer_stop(tern_loop_timer *timer);

/* tern_loop_timer_active tells whether timer is armed. */
bool tern_loop_timer_active(const tern_loop_timer *timer);

/* tern_loop_timer_due_ms returns the armed deadline (loop time, ms); meaningless when stopped. */
uint64_t tern_loop_timer_due_ms(const tern_loop_timer *timer);

/* ---- deferred tasks ("next tick") -------------------------------------------------------- */

typedef struct tern_loop_task tern_loop_task;
typedef void (*tern_loop_task_cb)(tern_loop_task *task);

struct tern_loop_task {
    void *data; /* the caller's */
    /* private */
    tern_list link;
    tern_loop *loop;
    tern_loop_task_cb cb;
    bool queued;
};

/*
 * tern_loop_defer queues task to run cb once at the end of the current iteration (after I/O and
 * timers), in FIFO order; a task deferred while tasks are running runs in the next iteration,
 * and the loop does not block while tasks are queued. task is the caller's struct (embed it).
 * Use it to run work after the current callback unwinds, e.g. to free a connection once nothing
 * on the stack refers to it. If task is already queued this only replaces cb and data. Loop
 * thread only; cannot fail.
 */
void tern_loop_defer(tern_loop *loop, tern_loop_task *task, tern_loop_task_cb cb, void *data);

/* tern_loop_cancel unqueues task; afterwards the loop never touches it. No-op if not queued
   (a zero-initialized task counts as not queued). */
void tern_loop_cancel(tern_loop_task *task);

/* ---- cross-thread posts ------------------------------------------------------------------ */

typedef void (*tern_loop_post_cb)(tern_loop *loop, void *arg);

/*
 * tern_loop_post is THREAD-SAFE: any thread may call it. It queues fn(loop, arg) to run on the
 * loop's thread during a later iteration, and wakes the loop if it is blocked (an eventfd).
 * Posts run in FIFO order per posting thread. Returns 0, or TERN_ENOMEM (then fn is never
 * called and arg is still the caller's). Ownership of arg passes to fn only on success.
 */
int tern_loop_post(tern_loop *loop, tern_loop_post_cb fn, void *arg);

/* ---- signals ----------------------------------------------------------------------------- */

typedef struct tern_loop_signal tern_loop_signal;
typedef void (*tern_loop_signal_cb)(tern_loop_signal *sig, int signum);

struct tern_loop_signal {
    void *data; /* the caller's */
    int signum; /* read-only: the signal watched, 0 when stopped */
    /* private */
    tern_list link;
    tern_loop *loop;
    tern_loop_signal_cb cb;
};

/* tern_loop_signal_init prepares a stopped signal watcher. Cannot fail. */
void tern_loop_signal_init(
    tern_loop *loop, tern_loop_signal *sig, tern_loop_signal_cb cb, void *data);

/*
 * tern_loop_signal_start delivers signal signum (SIGINT, SIGTERM, SIGHUP, ...) to cb as an
 * ordinary loop event instead of an asynchronous handler. It blocks signum in the calling thread
 * and reads it from a signalfd. A signal is only routed this way if no thread has it unblocked,
 * so start signal watchers in the main thread BEFORE creating other threads (they inherit the
 * mask), and use them on one loop per process. Several watchers may watch the same signal; each
 * is called. Instances of one signal that arrive together may be merged into one call.
 * Restarting a started watcher moves it to the new signal. Returns 0, TERN_EINVAL (signum out
 * of range, SIGKILL or SIGSTOP), or -errno (signalfd).
 */
int tern_loop_signal_start(tern_loop_signal *sig, int signum);

/*
 * tern_loop_signal_stop stops sig. When the last watcher of a signal stops, pending instances
 * of it are discarded and the signal is unblocked again if the loop had blocked it.
 */
void tern_loop_signal_stop(tern_loop_signal *sig);

#endif

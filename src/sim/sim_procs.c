/*
 * sim_procs.c: tern-sim across several processes, for fleets larger than one process's
 * open-file limit (one connection = one descriptor).
 *
 * The parent forks n worker processes (no exec: same binary, same options). Worker k runs the
 * ordinary runner (tern_sim_run_slice) on the devices of tern_sim_slice(N, n, k): device ids,
 * the schedule (start_ms fixed by the parent, offsets over the whole fleet) and the payloads are
 * those of a one-process run; only the misbehaviour's random stream is the worker's own. Each
 * worker has a pipe to the parent and writes records on it (sim_int.h): once a second its
 * progress and the latency histogram of that second, at the end its summary (verdict included:
 * each worker verifies its own devices) and the histograms of every ack latency and of every
 * end-to-end latency its probe measured (with --api). The parent prints one progress line a
 * second for the fleet (counts summed, latency percentiles from the merged histograms), sums the
 * summaries and verdicts, takes the run's p50/p99 (ack and e2e) from the merged histograms, and
 * joins the workers' ack logs (PATH.partK) into PATH in device order.
 *
 * Failure: a worker that ends without its summary (killed, crashed) or with a nonzero status
 * is reported on stderr and counted in failed_processes; the others run to their end. A SIGINT
 * or SIGTERM to the parent is passed on to every worker as SIGTERM; each worker stops as
 * tern-sim does and still reports. Workers get SIGTERM if the parent dies (PR_SET_PDEATHSIG).
 */
#include "sim/sim_int.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct rec_hdr {
    uint32_t type;
    uint32_t len; /* payload bytes */
} rec_hdr;

typedef struct worker {
    pid_t pid; /* 0: not started */
    int fd;    /* read end of its pipe, -1 once closed */
    uint32_t first, count;
    bool has_progress, has_final, failed;
    uint64_t n_progress; /* progress records received */
    tern_sim_progress progress;
    tern_sim_report_final fin;
    tern_buf ack_part; /* NUL-ended path, empty without --ack-log */
} worker;

uint64_t tern_sim_fd_limit_raise(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 1024;
    if (rl.rlim_cur != rl.rlim_max) {
        struct rlimit want = { rl.rlim_max, rl.rlim_max };
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    return rl.rlim_cur == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_cur;
}

static int write_all(int fd, const void *p, size_t n)
{
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : TERN_EIO;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads exactly n bytes. Returns 0, TERN_ECLOSED (end of file before the first byte),
 * TERN_EPROTO (end of file inside) or -errno. */
static int read_all(int fd, void *p, size_t n)
{
    uint8_t *b = p;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, b + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return got == 0 ? TERN_ECLOSED : TERN_EPROTO;
        got += (size_t)r;
    }
    return 0;
}

int tern_sim_report_send(
    int fd, uint32_t type, const void *a, size_t a_len, const void *b, size_t b_len)
{
    TERN_ASSERT(a_len + b_len <= UINT32_MAX);
    rec_hdr h = { type, (uint32_t)(a_len + b_len) };
    int rc = write_all(fd, &h, sizeof h);
    if (rc == 0 && a_len > 0)
        rc = write_all(fd, a, a_len);
    if (rc == 0 && b_len > 0)
        rc = write_all(fd, b, b_len);
    return rc;
}

/* ---- worker ------------------------------------------------------------------------------ */

static volatile sig_atomic_t g_signal;

static void on_stop_signal(int signum)
{
    g_signal = signum;
}

static void install_stop_handlers(struct sigaction *old_int, struct sigaction *old_term)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    (void)sigaction(SIGINT, &sa, old_int);
    (void)sigaction(SIGTERM, &sa, old_term);
}

/* Runs in the child: simulates one slice, reports, exits. Never returns. */
static _Noreturn void worker_main(const tern_sim_options *o, const worker *w, int fd, pid_t parent)
{
    (void)prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent)
        _exit(4); /* the parent is gone already */
    /* SIGINT/SIGTERM stay blocked (inherited from the fork): the runner's loop reads them from a
     * signalfd, pending ones included. One that arrives after the loop is gone (a second Ctrl-C,
     * the parent passing one on) meets this handler, so it cannot kill the worker before it has
     * reported. */
    install_stop_handlers(NULL, NULL);
    tern_sim_options wo = *o;
    wo.ack_log = w->ack_part.len > 0 ? (const char *)w->ack_part.data : NULL;
    wo.progress_fd = -1;
    tern_sim_report_final *fin = tern_calloc(1, sizeof *fin);
    tern_histogram *lat = tern_malloc(2 * sizeof *lat); /* publish -> PUBACK, -> queryable */
    if (!fin || !lat)
        _exit(3);
    tern_histogram_init(&lat[0]);
    tern_histogram_init(&lat[1]);
    fin->rc = tern_sim_run_slice(&wo, w->first, w->count, fd, &fin->sum, &lat[0], &lat[1]);
    int rc
        = tern_sim_report_send(fd, TERN_SIM_REPORT_FINAL, fin, sizeof *fin, lat, 2 * sizeof *lat);
    _exit(rc == 0 ? 0 : 3);
}

/* ---- parent ------------------------------------------------------------------------------ */

/* Reads one record of w into w's state; merges its histograms into lat_sec, or lat_all and
 * e2e_all. Returns 0, TERN_ECLOSED (the worker closed its end) or another error (a broken
 * record). */
static int read_record(worker *w, tern_histogram *scratch, tern_histogram *lat_sec,
    tern_histogram *lat_all, tern_histogram *e2e_all)
{
    rec_hdr h;
    int rc = read_all(w->fd, &h, sizeof h);
    if (rc != 0)
        return rc;
    if (h.type == TERN_SIM_REPORT_PROGRESS && h.len == sizeof w->progress + sizeof *scratch) {
        rc = read_all(w->fd, &w->progress, sizeof w->progress);
        if (rc == 0)
            rc = read_all(w->fd, scratch, sizeof *scratch);
        if (rc != 0)
            return rc == TERN_ECLOSED ? TERN_EPROTO : rc;
        w->has_progress = true;
        w->n_progress++;
        tern_histogram_merge(lat_sec, scratch);
        return 0;
    }
    if (h.type == TERN_SIM_REPORT_FINAL && h.len == sizeof w->fin + 2 * sizeof *scratch
        && !w->has_final) {
        rc = read_all(w->fd, &w->fin, sizeof w->fin);
        if (rc == 0)
            rc = read_all(w->fd, scratch, sizeof *scratch);
        if (rc == 0 && w->fin.rc == 0)
            tern_histogram_merge(lat_all, scratch);
        if (rc == 0)
            rc = read_all(w->fd, scratch, sizeof *scratch);
        if (rc != 0)
            return rc == TERN_ECLOSED ? TERN_EPROTO : rc;
        w->has_final = true;
        if (w->fin.rc == 0)
            tern_histogram_merge(e2e_all, scratch);
        return 0;
    }
    return TERN_EPROTO;
}

static void describe_status(int status, char *buf, size_t cap)
{
    if (WIFSIGNALED(status))
        snprintf(buf, cap, "was killed by signal %d (%s)", WTERMSIG(status),
            strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status))
        snprintf(buf, cap, "exited with status %d", WEXITSTATUS(status));
    else
        snprintf(buf, cap, "ended (wait status %d)", status);
}

/* w's pipe is at its end (or broken): reap it and judge it. */
static void worker_end(const tern_sim_options *o, uint32_t k, worker *w, int read_rc)
{
    close(w->fd);
    w->fd = -1;
    int status = 0;
    pid_t r;
    do
        r = waitpid(w->pid, &status, 0);
    while (r < 0 && errno == EINTR);
    bool exit_ok = r == w->pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (w->has_final && exit_ok && read_rc == TERN_ECLOSED)
        return;
    w->failed = true;
    char how[160];
    if (r != w->pid)
        snprintf(how, sizeof how, "could not be waited for (%s)", strerror(errno));
    else
        describe_status(status, how, sizeof how);
    fprintf(stderr, "tern-sim: worker %u (devices %s%06u..%s%06u, pid %d) %s%s\n", k + 1,
        o->client_prefix, w->first, o->client_prefix, w->first + w->count - 1, (int)w->pid, how,
        w->has_final ? "" : " before reporting: its devices are missing from the summary");
}

static void print_progress(const tern_sim_options *o, const worker *ws, uint32_t n, uint64_t rel_ms,
    bool tty, bool final, uint64_t *last_published, tern_histogram *lat_sec)
{
    tern_sim_progress p = { rel_ms, 0, o->n_devices, TERN_SIM_PHASE_DONE, 0, 0, 0, 0, 0 };
    for (uint32_t k = 0; k < n; k++) {
        const worker *w = &ws[k];
        uint32_t phase = w->fd < 0 ? TERN_SIM_PHASE_DONE
            : w->has_progress      ? w->progress.phase
                                   : TERN_SIM_PHASE_RUN;
        if (phase < p.phase)
            p.phase = phase;
        if (!w->has_progress)
            continue;
        p.connected += w->progress.connected; /* as a worker last reported it */
        p.published += w->progress.published;
        p.acked += w->progress.acked;
        p.backlog += w->progress.backlog;
        p.inflight += w->progress.inflight;
        p.reconnects += w->progress.reconnects;
    }
    tern_sim_progress_write(o->progress_fd, tty, final, &p, p.published - *last_published, lat_sec);
    *last_published = p.published;
    tern_histogram_reset(lat_sec);
}

/* Adds b into a (a worker's summary into the fleet's). */
static void summary_add(tern_sim_summary *a, const tern_sim_summary *b)
{
    a->devices += b->devices;
    a->generated += b->generated;
    a->published += b->published;
    a->acked += b->acked;
    a->acked_points += b->acked_points;
    a->duplicates += b->duplicates;
    a->resent += b->resent;
    a->reconnects += b->reconnects;
    a->tunnels += b->tunnels;
    a->dropped_offline += b->dropped_offline;
    a->power_losses += b->power_losses;
    a->storm_drops += b->storm_drops;
    a->rush_generated += b->rush_generated;
    a->late_resends += b->late_resends;
    a->reordered += b->reordered;
    if (b->max_drift_ms > a->max_drift_ms)
        a->max_drift_ms = b->max_drift_ms;
    a->lost_power += b->lost_power;
    a->backpressure += b->backpressure;
    a->conn_errors += b->conn_errors;
    a->unacked += b->unacked;
    if (b->wall_s > a->wall_s)
        a->wall_s = b->wall_s;
    a->n_metrics = b->n_metrics;
    a->interrupted |= b->interrupted;
    a->verdict.acked_points += b->verdict.acked_points;
    a->verdict.stored_points += b->verdict.stored_points;
    a->verdict.lost_points += b->verdict.lost_points;
    a->verdict.duplicated_points += b->verdict.duplicated_points;
    a->verdict.uncertain_points += b->verdict.uncertain_points;
    a->verify_errors += b->verify_errors;
    a->e2e_measured |= b->e2e_measured;
    a->e2e_samples += b->e2e_samples;
    a->e2e_timeouts += b->e2e_timeouts;
}

/* Joins the workers' ack logs into o->ack_log: the header of the first, then every part's
 * device lines, in worker (= device) order. Removes the parts. Returns 0 or -errno. */
static int join_ack_logs(const tern_sim_options *o, worker *ws, uint32_t n)
{
    FILE *out = fopen(o->ack_log, "w");
    int rc = out ? 0 : -errno;
    for (uint32_t k = 0; k < n; k++) {
        const char *part = (const char *)ws[k].ack_part.data;
        FILE *in = rc == 0 ? fopen(part, "r") : NULL;
        if (rc == 0 && !in)
            rc = -errno;
        if (in) {
            bool header = true;
            int c;
            while ((c = getc(in)) != EOF) {
                if (!header || k == 0)
                    putc(c, out);
                if (c == '\n')
                    header = false;
            }
            if (ferror(in))
                rc = TERN_EIO;
            fclose(in);
        }
        (void)unlink(part);
    }
    if (out) {
        if (ferror(out) && rc == 0)
            rc = TERN_EIO;
        if (fclose(out) != 0 && rc == 0)
            rc = -errno;
    }
    return rc;
}

int tern_sim_run_procs(const tern_sim_options *o, uint32_t n_procs, tern_sim_summary *out)
{
    TERN_ASSERT(n_procs >= 2 && n_procs <= o->n_devices);
    int rc = 0;
    worker *ws = tern_calloc(n_procs, sizeof *ws);
    tern_histogram *h = tern_malloc(4 * sizeof *h); /* scratch, lat_sec, lat_all, e2e_all */
    struct pollfd *pfd = tern_calloc(n_procs, sizeof *pfd);
    uint32_t *pfd_worker = tern_calloc(n_procs, sizeof *pfd_worker);
    if (!ws || !h || !pfd || !pfd_worker) {
        rc = TERN_ENOMEM;
        goto done;
    }
    tern_histogram *scratch = &h[0], *lat_sec = &h[1], *lat_all = &h[2], *e2e_all = &h[3];
    for (int i = 0; i < 4; i++)
        tern_histogram_init(&h[i]);
    tern_sim_options wo = *o;
    wo.connect_rate = o->connect_rate / n_procs > 0 ? o->connect_rate / n_procs : 1;
    for (uint32_t k = 0; k < n_procs; k++) {
        ws[k].fd = -1;
        tern_buf_init(&ws[k].ack_part);
        tern_sim_slice(o->n_devices, n_procs, k, &ws[k].first, &ws[k].count);
        if (o->ack_log) {
            rc = tern_buf_printf(&ws[k].ack_part, "%s.part%u", o->ack_log, k);
            if (rc == 0)
                rc = tern_buf_append_u8(&ws[k].ack_part, 0);
            if (rc != 0)
                goto done;
            ws[k].ack_part.len--;
        }
    }

    /* Signals stay blocked while forking: a Ctrl-C then reaches the workers through their
     * loops and the parent once its handler is in place. */
    sigset_t stop, old_mask;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    (void)sigprocmask(SIG_BLOCK, &stop, &old_mask);
    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    uint32_t started = 0;
    for (uint32_t k = 0; k < n_procs; k++) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            rc = -errno;
            break;
        }
        pid_t pid = fork();
        if (pid < 0) {
            rc = -errno;
            close(p[0]);
            close(p[1]);
            break;
        }
        if (pid == 0) {
            close(p[0]);
            for (uint32_t j = 0; j < k; j++)
                close(ws[j].fd);
            worker_main(&wo, &ws[k], p[1], parent);
        }
        close(p[1]);
        ws[k].pid = pid;
        ws[k].fd = p[0];
        started++;
    }
    struct sigaction old_int, old_term;
    g_signal = 0;
    install_stop_handlers(&old_int, &old_term);
    (void)sigprocmask(SIG_SETMASK, &old_mask, NULL);
    if (rc != 0) {
        fprintf(stderr, "tern-sim: could not start worker %u of %u: %s\n", started + 1, n_procs,
            tern_strerror(rc));
        for (uint32_t k = 0; k < started; k++)
            kill(ws[k].pid, SIGTERM);
    }

    bool tty = !o->quiet && isatty(o->progress_fd) == 1;
    /* A line is printed when every running worker has sent its report of the next second (they
     * report once a second), or 1.5 s after the last line if one is late. */
    uint64_t t0 = tern_clock_mono_ms(), last_print_ms = 0, round = 0, last_published = 0;
    bool forwarded = false, fresh = false; /* fresh: reports came in since the last line */
    uint32_t alive = started;
    while (alive > 0) {
        if (g_signal != 0 && !forwarded) {
            for (uint32_t k = 0; k < n_procs; k++)
                if (ws[k].fd >= 0)
                    kill(ws[k].pid, SIGTERM);
            forwarded = true;
        }
        nfds_t n_pfd = 0;
        for (uint32_t k = 0; k < n_procs; k++) {
            if (ws[k].fd < 0)
                continue;
            pfd[n_pfd] = (struct pollfd) { ws[k].fd, POLLIN, 0 };
            pfd_worker[n_pfd++] = k;
        }
        uint64_t rel = tern_clock_mono_ms() - t0;
        uint64_t late_ms = last_print_ms + 1500;
        int timeout = o->quiet ? 1000 : rel >= late_ms ? 0 : (int)(late_ms - rel);
        int n = poll(pfd, n_pfd, timeout);
        if (n < 0 && errno != EINTR) {
            rc = -errno;
            break;
        }
        for (nfds_t i = 0; n > 0 && i < n_pfd; i++) {
            if (!(pfd[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            worker *w = &ws[pfd_worker[i]];
            uint64_t n_before = w->n_progress;
            int rrc = read_record(w, scratch, lat_sec, lat_all, e2e_all);
            fresh |= w->n_progress != n_before;
            if (rrc != 0) {
                worker_end(o, pfd_worker[i], w, rrc);
                alive--;
            }
        }
        if (o->quiet || alive == 0)
            continue;
        rel = tern_clock_mono_ms() - t0;
        bool round_done = true;
        uint64_t min_reports = UINT64_MAX;
        for (uint32_t k = 0; k < n_procs; k++) {
            if (ws[k].fd < 0)
                continue;
            round_done &= ws[k].n_progress > round;
            if (ws[k].n_progress < min_reports)
                min_reports = ws[k].n_progress;
        }
        if (round_done || rel >= last_print_ms + 1500) {
            print_progress(o, ws, n_procs, rel, tty, false, &last_published, lat_sec);
            last_print_ms = rel;
            fresh = false;
            round = min_reports > round ? min_reports : round + 1;
        }
    }
    if (!o->quiet && (fresh || tty)) /* the last line again, as "done", ending a terminal line */
        print_progress(
            o, ws, n_procs, tern_clock_mono_ms() - t0, tty, true, &last_published, lat_sec);
    (void)sigaction(SIGINT, &old_int, NULL);
    (void)sigaction(SIGTERM, &old_term, NULL);
    if (rc != 0)
        goto done;

    tern_sim_summary sum;
    memset(&sum, 0, sizeof sum);
    sum.processes = n_procs;
    sum.verified = o->verify;
    bool all_verified = true, all_ok = true;
    for (uint32_t k = 0; k < n_procs; k++) {
        worker *w = &ws[k];
        if (w->failed || !w->has_final) {
            sum.failed_processes++;
            all_ok = false;
            continue;
        }
        if (w->fin.rc != 0) {
            /* a worker could not run (e.g. the broker's address): the run's own error */
            if (rc == 0)
                rc = w->fin.rc;
            continue;
        }
        summary_add(&sum, &w->fin.sum);
        all_verified &= w->fin.sum.verified;
        all_ok &= w->fin.sum.verify_ok;
    }
    if (rc != 0)
        goto done;
    sum.interrupted |= g_signal != 0;
    sum.verified = o->verify && all_verified && sum.failed_processes < n_procs;
    sum.verify_ok = sum.verified && all_ok && sum.verify_errors == 0;
    sum.ack_p50_ms = (double)tern_histogram_percentile(lat_all, 0.5) / 1e6;
    sum.ack_p99_ms = (double)tern_histogram_percentile(lat_all, 0.99) / 1e6;
    /* end-to-end percentiles of all the workers' probes together, like the ack latency */
    sum.e2e_p50_ms = (double)tern_histogram_percentile(e2e_all, 0.5) / 1e6;
    sum.e2e_p99_ms = (double)tern_histogram_percentile(e2e_all, 0.99) / 1e6;
    if (o->ack_log && sum.failed_processes == 0)
        rc = join_ack_logs(o, ws, n_procs);
    if (rc == 0)
        *out = sum;

done:
    if (ws) {
        for (uint32_t k = 0; k < n_procs; k++) {
            if (ws[k].fd >= 0) {
                /* only after a failure of the parent itself: leave no worker behind */
                close(ws[k].fd);
                kill(ws[k].pid, SIGTERM);
                while (waitpid(ws[k].pid, NULL, 0) < 0 && errno == EINTR)
                    ;
            }
            if (ws[k].ack_part.len > 0)
                (void)unlink((const char *)ws[k].ack_part.data);
            tern_buf_free(&ws[k].ack_part);
        }
    }
    tern_free(ws);
    tern_free(h);
    tern_free(pfd);
    tern_free(pfd_worker);
    return rc;
}

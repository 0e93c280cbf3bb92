/*
 * sim_int.h: private declarations shared by the simulator's runner (sim.c) and its ack log and
 * verifier (sim_verify.c). Not part of the public API.
 */
#ifndef TERN_SIM_SIM_INT_H
#define TERN_SIM_SIM_INT_H

#include "base/histogram.h"
#include "sim/profile.h"
#include "sim/sim.h"

/* What one device sent and had acknowledged (seqs). */
typedef struct tern_sim_dev_acct {
    tern_sim_seqset sent;       /* published at least once (not counting duplicates) */
    tern_sim_seqset acked;      /* acknowledged (PUBACK) */
    tern_sim_seqset duplicated; /* re-sent on purpose after being acknowledged */
    tern_sim_seqset lost;       /* lost in a power loss (never acknowledged) */
} tern_sim_dev_acct;

/* tern_sim_acct_free releases a's sets. */
void tern_sim_acct_free(tern_sim_dev_acct *a);

/* What the ack log and the verifier need from a finished run (all borrowed). */
typedef struct tern_sim_run_info {
    const tern_sim_schedule *sched;
    const tern_profile *profile;
    const tern_sim_dev_acct *acct; /* [n_local], device dev_first + i */
    uint32_t dev_first;            /* 1-based, of sched->n_devices */
    uint32_t n_local;
    uint8_t qos;
    const char *client_prefix; /* device i is PREFIX%06u */
} tern_sim_run_info;

/* tern_sim_ack_log_write writes the ack log (docs/sim.md) to path: the header (devices: the whole
 * fleet) and the lines of devices dev_first .. dev_first + n_local - 1. Returns 0 or -errno. */
int tern_sim_ack_log_write(const char *path, const tern_sim_run_info *info);

/*
 * tern_sim_verify queries o->api for every device of info (retrying for up to o->verify_timeout_ms
 * while points are missing: the pipeline may still be catching up) and fills sum->verdict,
 * verify_errors, verified and verify_ok. Writes one line per problem device to stderr (the first
 * few).
 */
void tern_sim_verify(
    const tern_sim_options *o, const tern_sim_run_info *info, tern_sim_summary *sum);

/* ---- end-to-end latency probe (sim_probe.c) ---------------------------------------------- */

/*
 * The probe measures publish -> queryable latency on a sample of messages, in its own thread with
 * its own blocking keep-alive HTTP/1.1 connection to the query API, so the device loop never
 * waits for it. Whenever it is free it opens its mailbox; the loop hands it the next sample a
 * device publishes for the first time (tern_sim_probe_offer: device, stamp, publish time) and the
 * probe polls GET /api/v1/last for that device every TERN_SIM_PROBE_POLL_MS until one of its
 * metrics (round robin over the profile's) shows a point with ts >= the stamp, then records the
 * latency (ns) in its histogram; after o->e2e_timeout_ms it gives up and counts a timeout.
 * Threading: offer/wants from the loop thread, everything else from the thread that started it.
 */
#define TERN_SIM_PROBE_POLL_MS 2

typedef struct tern_sim_probe tern_sim_probe;

/*
 * tern_sim_probe_start starts the probe thread against api (HOST:PORT, resolved here) for devices
 * named PREFIX%06u with the metrics of profile (borrowed: both must outlive the probe). Sets *out
 * on success. Returns 0, TERN_ENOMEM, TERN_ENOTFOUND / -errno (api does not resolve) or the
 * error of pthread_create (negated).
 */
int tern_sim_probe_start(const char *api, const char *client_prefix, const tern_profile *profile,
    uint64_t timeout_ms, tern_sim_probe **out);

/* tern_sim_probe_wants tells whether the probe's mailbox is open (one relaxed atomic load: cheap
 * enough for every publish). p may be NULL (no probe: false). */
bool tern_sim_probe_wants(tern_sim_probe *p);

/* tern_sim_probe_offer hands the probe sample (dev, stamp_ms) published at pub_ns
 * (tern_clock_mono_ns) if its mailbox is still open; otherwise does nothing. */
void tern_sim_probe_offer(tern_sim_probe *p, uint32_t dev, int64_t stamp_ms, uint64_t pub_ns);

/* tern_sim_probe_stop tells the probe to take no new sample; with abort it also drops the one it
 * is polling for (not counted). Returns at once: the probe ends in tern_sim_probe_finish. */
void tern_sim_probe_stop(tern_sim_probe *p, bool abort);

/*
 * tern_sim_probe_finish stops the probe (as tern_sim_probe_stop(p, false) unless stopped
 * already), waits for its thread (at most the poll of its last sample, bounded by the timeout),
 * adds its latencies into lat (ns), sets *samples and *timeouts (each only if not NULL), and
 * frees p.
 */
void tern_sim_probe_finish(
    tern_sim_probe *p, tern_histogram *lat, uint64_t *samples, uint64_t *timeouts);

/* tern_sim_e2e_json appends the e2e_* members of s to out (no braces): e2e_samples, e2e_timeouts,
 * e2e_p50_ms, e2e_p99_ms; the percentiles are null without a probe or without samples. Returns 0
 * or TERN_ENOMEM. */
int tern_sim_e2e_json(tern_buf *out, const tern_sim_summary *s);

/* ---- progress, workers ------------------------------------------------------------------- */

enum { TERN_SIM_PHASE_RUN = 0, TERN_SIM_PHASE_DRAIN = 1, TERN_SIM_PHASE_DONE = 2 };

/* What the progress line shows, for one process or summed over the workers. */
typedef struct tern_sim_progress {
    uint64_t rel_ms; /* wall ms since the run's start */
    uint32_t connected, n_devices;
    uint32_t phase; /* TERN_SIM_PHASE_* */
    uint64_t published, acked, backlog, inflight, reconnects;
} tern_sim_progress;

/*
 * tern_sim_progress_write writes the progress line of p to fd: msgs_per_s is what was published
 * in the last second, lat the publish -> PUBACK latencies (ns) of the last second. On a terminal
 * (tty) the line rewrites itself ("\r...\x1b[K", a newline only when final), else one line each.
 */
void tern_sim_progress_write(int fd, bool tty, bool final, const tern_sim_progress *p,
    uint64_t msgs_per_s, const tern_histogram *lat);

/*
 * A worker reports to its parent through a pipe, in records: a header (type, payload bytes)
 * then the payload. Both ends are the same binary (fork without exec), so structs travel as
 * their bytes. PROGRESS: tern_sim_progress + tern_histogram (latencies of the last second),
 * once a second unless quiet. FINAL: tern_sim_report_final + tern_histogram (every publish ->
 * PUBACK latency of the run) + tern_histogram (every publish -> queryable latency the probe
 * measured), once, last.
 */
enum { TERN_SIM_REPORT_PROGRESS = 1, TERN_SIM_REPORT_FINAL = 2 };

typedef struct tern_sim_report_final {
    int32_t rc; /* what tern_sim_run_slice returned; sum is valid when 0 */
    uint32_t pad;
    tern_sim_summary sum;
} tern_sim_report_final;

/* tern_sim_report_send writes one record (a[0..a_len) then b[0..b_len)) to fd, whole, retrying
 * on EINTR. Returns 0 or -errno. */
int tern_sim_report_send(
    int fd, uint32_t type, const void *a, size_t a_len, const void *b, size_t b_len);

/*
 * tern_sim_run_slice is the runner: tern_sim_run for devices dev_first .. dev_first + n_local
 * - 1 of the fleet of o->n_devices (the schedule is the whole fleet's; o->start_ms must be set).
 * With report_fd >= 0 progress goes there as records instead of lines. Fills *out (devices =
 * n_local) and, if lat_out is not NULL, *lat_out with every publish -> PUBACK latency (ns), and if
 * e2e_out is not NULL, *e2e_out with every publish -> queryable latency the probe measured (ns;
 * empty without o->api). Returns as tern_sim_run.
 */
int tern_sim_run_slice(const tern_sim_options *o, uint32_t dev_first, uint32_t n_local,
    int report_fd, tern_sim_summary *out, tern_histogram *lat_out, tern_histogram *e2e_out);

/*
 * tern_sim_run_procs runs o (start_ms set, options checked) in n_procs worker processes (>= 2)
 * and merges their reports into *out (see tern_sim_run). Returns as tern_sim_run.
 */
int tern_sim_run_procs(const tern_sim_options *o, uint32_t n_procs, tern_sim_summary *out);

#endif

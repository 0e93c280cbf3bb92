/*
 * sim.h: tern-sim, the fleet simulator: N devices over real MQTT connections, time acceleration,
 * misbehaviour (tunnels, duplicates, power losses, clock drift, out-of-order sends, rush hours,
 * reconnect storms), exact accounting of what the broker
 * acknowledged, and a verifier that asks tern's query API whether every acknowledged point is
 * stored exactly once.
 *
 * Two layers:
 *   - pure parts (sim_pure.c), unit-tested alone: the event-time schedule and its acceleration,
 *     exponential backoff with full jitter, per-device acknowledgement accounting (seq bitmaps
 *     turned into ranges), one sample's payload, and the parser of the query API's answer;
 *   - the runner (sim.c, sim_verify.c): one thread, one tern event loop (src/loop), the MQTT
 *     codec (src/mqtt), one connection per device (client id = device id);
 *   - for more devices than one process's open-file limit allows, sim_procs.c forks worker
 *     processes, each running the runner on a disjoint slice of the device ids, and merges
 *     their progress, summaries, latency histograms, ack logs and verdicts.
 * Schedule: device d (1-based, of N) sends sample seq (1-based) at event time
 *   ts = start_ms + offset(d) + (seq - 1) * interval_ms,  offset(d) = (d - 1) * interval_ms / N,
 * due at wall time (ts - start_ms) / accel after the run starts. So ts is a function of
 * (device, seq) and the ack log needs only seq ranges. With clock drift a device stamps its samples
 * with tern_sim_schedule_stamp (still a function of (device, seq)); the schedule itself (when a
 * sample is due) follows the true time. Formats and CLI: docs/sim.md.
 * Threading: none of this is thread-safe; a run owns its loop and its thread.
 */
#ifndef TERN_SIM_SIM_H
#define TERN_SIM_SIM_H

#include "base/buf.h"
#include "sim/profile.h"
#include "telemetry/payload.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* ---- schedule ---------------------------------------------------------------------------- */

typedef struct tern_sim_schedule {
    int64_t start_ms;     /* event time of the run's start (ms since the epoch) */
    uint32_t interval_ms; /* event time between two samples of a device (> 0) */
    double accel;         /* event ms per wall ms (> 0) */
    uint32_t n_devices;   /* > 0 */
    double drift_max;     /* clock drift bound, ms per hour of event time (>= 0; 0: none) */
    uint64_t drift_seed;  /* picks each device's drift rate */
    uint32_t rush_x;      /* rush hour: X times as many samples (<= 1: no rush hour) */
    uint64_t rush_every_ms, rush_for_ms; /* a rush of rush_for_ms opens every rush_every_ms */
} tern_sim_schedule;

/*
 * tern_sim_schedule_ts returns the event time of sample seq (>= 1) of device dev (1..N).
 * With a rush hour (tern_sim_schedule_rush), event time is cut into periods of rush_every_ms
 * from start_ms; the first rush_for_ms of each is the rush, where rush sample r (0-based) is at
 * floor((dev - 1) * interval_ms / (rush_x * N)) + floor(r * interval_ms / rush_x), the rest every
 * interval_ms from offset (dev - 1) * interval_ms / N. Every period holds the same number of
 * samples, so ts stays a closed-form, strictly increasing function of (device, seq).
 */
int64_t tern_sim_schedule_ts(const tern_sim_schedule *s, uint32_t dev, uint64_t seq);

/* tern_sim_schedule_rush tells whether s has a rush hour: rush_x > 1, 0 < rush_for_ms <=
 * rush_every_ms (callers validate with tern_sim_schedule_valid). */
bool tern_sim_schedule_rush(const tern_sim_schedule *s);

/* tern_sim_schedule_valid checks s: interval_ms, accel and n_devices > 0, and with a rush hour
 * interval_ms >= rush_x <= 1000 and rush_every_ms, rush_for_ms multiples of interval_ms. */
bool tern_sim_schedule_valid(const tern_sim_schedule *s);

/* tern_sim_schedule_in_rush tells whether sample seq (of any device) falls in a rush. */
bool tern_sim_schedule_in_rush(const tern_sim_schedule *s, uint64_t seq);

/*
 * tern_sim_drift_rate returns device dev's clock drift in ms per hour of event time: uniform in
 * [-s->drift_max, s->drift_max], a pure function of (s->drift_seed, dev); 0 without drift.
 */
double tern_sim_drift_rate(const tern_sim_schedule *s, uint32_t dev);

/*
 * tern_sim_schedule_stamp returns the timestamp device dev writes into sample seq: its true
 * event time ts (tern_sim_schedule_ts) read on a clock that drifts from the run's start,
 * ts + llround(rate * (ts - start_ms) / 3600000) with rate = tern_sim_drift_rate. It is what the
 * store keys the point by. Without drift it is ts. A pure function of (device, seq).
 */
int64_t tern_sim_schedule_stamp(const tern_sim_schedule *s, uint32_t dev, uint64_t seq);

/* tern_sim_schedule_wall_ms returns the wall ms after the run's start when event time ts_ms is
 * reached: ceil((ts_ms - start_ms) / accel), 0 for ts_ms <= start_ms. */
uint64_t tern_sim_schedule_wall_ms(const tern_sim_schedule *s, int64_t ts_ms);

/* tern_sim_schedule_due returns how many samples of device dev are due wall_ms after the start
 * (the largest seq whose wall time is <= wall_ms; 0 if none). */
uint64_t tern_sim_schedule_due(const tern_sim_schedule *s, uint32_t dev, uint64_t wall_ms);

/* ---- backoff ----------------------------------------------------------------------------- */

/*
 * tern_sim_backoff_ms is exponential backoff with full jitter: the ceiling is
 * min(cap_ms, base_ms * 2^(attempt - 1)) (attempt 0 counts as 1) and the result is
 * rnd mod (ceiling + 1), i.e. uniform in [0, ceiling] for a uniform 64-bit rnd.
 */
uint64_t tern_sim_backoff_ms(uint32_t attempt, uint32_t base_ms, uint32_t cap_ms, uint64_t rnd);

/*
 * tern_sim_shuffle_pick chooses which of the first min(q_len, window) buffered samples to send
 * next: 0 (the oldest, FIFO order) with probability 1 - p, otherwise uniform among the others
 * (1 .. min(q_len, window) - 1). Always 0 when q_len or window is below 2 or p <= 0. Consumes
 * the PRNG only when a choice exists.
 */
uint32_t tern_sim_shuffle_pick(uint32_t q_len, uint32_t window, double p, uint64_t *rng);

/* tern_sim_rng_next is the simulator's PRNG (xorshift64*); *state must not be 0. */
uint64_t tern_sim_rng_next(uint64_t *state);

/* tern_sim_rng_unit returns a double uniform in [0, 1) from the PRNG. */
double tern_sim_rng_unit(uint64_t *state);

/* ---- accounting -------------------------------------------------------------------------- */

/* A set of sequence numbers (1-based), as a bitmap that grows. Zero-initialise it. */
typedef struct tern_sim_seqset {
    uint64_t *words;
    size_t n_words;
    uint64_t count; /* distinct seqs in the set */
    uint64_t max;   /* largest seq in the set, 0 when empty */
} tern_sim_seqset;

/* tern_sim_seqset_add adds seq (>= 1). Sets *added (if not NULL) to whether it was new.
 * Returns 0, TERN_EINVAL (seq 0) or TERN_ENOMEM (the set is unchanged). */
int tern_sim_seqset_add(tern_sim_seqset *s, uint64_t seq, bool *added);

/* tern_sim_seqset_has tells whether seq is in s. */
bool tern_sim_seqset_has(const tern_sim_seqset *s, uint64_t seq);

/* tern_sim_seqset_free releases s's memory and empties it. */
void tern_sim_seqset_free(tern_sim_seqset *s);

/* tern_sim_seqset_ranges calls fn(lo, hi, arg) for each maximal run [lo, hi] of s, in order,
 * and returns the number of runs. */
size_t tern_sim_seqset_ranges(
    const tern_sim_seqset *s, void (*fn)(uint64_t lo, uint64_t hi, void *arg), void *arg);

/* tern_sim_seqset_count_between counts the seqs of s in [lo, hi]. */
uint64_t tern_sim_seqset_count_between(const tern_sim_seqset *s, uint64_t lo, uint64_t hi);

/*
 * tern_sim_power_lose records that sample seq died in a power loss (it was buffered, in flight,
 * or due while the device was off): unless acked holds it (a queued duplicate of an acknowledged
 * sample loses nothing) it is added to lost and *counted (if not NULL) tells whether it is a new
 * loss. A lost sample is never acknowledged afterwards, so acked and lost stay disjoint.
 * Returns 0, TERN_EINVAL (seq 0) or TERN_ENOMEM (lost unchanged).
 */
int tern_sim_power_lose(
    tern_sim_seqset *lost, const tern_sim_seqset *acked, uint64_t seq, bool *counted);

/* ---- payloads ---------------------------------------------------------------------------- */

typedef enum tern_sim_format { TERN_SIM_JSON = 0, TERN_SIM_BINARY = 1 } tern_sim_format;

/*
 * tern_sim_encode_sample appends one sample (ts_ms, seq, values[0..metric_count) of profile p,
 * as tern_profile_step wrote them) to out in format fmt: JSON with the profile's metric names,
 * or binary with the built-in schema of the profile's name. Integer metrics (decimals -1) are
 * sent as integers. Returns 0, TERN_EINVAL (no built-in schema; a non-finite value) or
 * TERN_ENOMEM; out is unchanged on error.
 */
int tern_sim_encode_sample(tern_buf *out, const tern_profile *p, tern_sim_format fmt, int64_t ts_ms,
    uint64_t seq, const double *values);

/* ---- verification ------------------------------------------------------------------------ */

/*
 * tern_sim_parse_counts reads a query API answer in the series form with a count aggregate,
 * {"series":[{"device":..,"metric":"M","columns":["ts",..,"count",..],"values":[[..],..]},..]},
 * and for each series whose metric is names[i] adds the sum of its count column to counts[i]
 * (counts are not reset first). Series of other metrics are skipped. Untrusted input: bounded,
 * never asserts. Returns 0, or TERN_EPROTO (not that shape; counts may be partly updated).
 */
int tern_sim_parse_counts(
    const char *json, size_t len, const char *const *names, size_t n_names, uint64_t *counts);

/* The result of checking one device: what was acknowledged vs what the store holds. */
typedef struct tern_sim_verdict {
    uint64_t acked_points;      /* acknowledged samples x metrics */
    uint64_t stored_points;     /* counted by the store, all metrics */
    uint64_t lost_points;       /* acknowledged but missing */
    uint64_t duplicated_points; /* stored more often than can be explained */
    uint64_t uncertain_points;  /* published, never acknowledged: may or may not be stored */
} tern_sim_verdict;

/*
 * tern_sim_judge compares, for one device and its n_metrics metrics, stored[i] (the store's count
 * in the queried range) with acked (acknowledged samples in that range) and uncertain (published
 * but never acknowledged samples in that range): per metric, lost = acked - stored when stored <
 * acked, duplicated = stored - acked - uncertain when positive. Adds into *v.
 */
void tern_sim_judge(const uint64_t *stored, size_t n_metrics, uint64_t acked, uint64_t uncertain,
    tern_sim_verdict *v);

/* ---- end-to-end latency ------------------------------------------------------------------ */

/*
 * tern_sim_http_frame looks at the start of an HTTP/1.1 response, data[0..len) (untrusted, not
 * NUL-ended), and tells whether it is whole: on 0 *status is the status code, *head_len the bytes
 * of the status line and headers (blank line included), *body_len the bytes of the body (from
 * Content-Length; 0 for 1xx, 204 and 304) and *keep_alive whether the connection stays open
 * (HTTP/1.1 without "Connection: close", or HTTP/1.0 with "Connection: keep-alive"). A response
 * is whole when len >= *head_len + *body_len. Returns 0, TERN_EPARTIAL (the headers are not all
 * there yet; nothing is set) or TERN_EPROTO (not an HTTP/1.x response, a bad or missing
 * Content-Length, a chunked body, headers beyond max_head bytes, a body beyond max_body bytes).
 */
int tern_sim_http_frame(const char *data, size_t len, size_t max_head, size_t max_body, int *status,
    size_t *head_len, size_t *body_len, bool *keep_alive);

/*
 * tern_sim_parse_last_ts reads a last-value answer of the query API (docs/tsdb.md,
 * GET /api/v1/last: {"rows":[{"device":..,"metric":"M","ts":T,"value":V},..],..}) and sets *ts_ms
 * to the largest ts of the rows whose metric is metric. Untrusted input: bounded, never asserts.
 * Returns 0, TERN_ENOTFOUND (well formed, no row of that metric; *ts_ms unchanged) or TERN_EPROTO
 * (not that shape, or a ts that is not an integer).
 */
int tern_sim_parse_last_ts(const char *json, size_t len, const char *metric, int64_t *ts_ms);

/* ---- the run ----------------------------------------------------------------------------- */

typedef struct tern_sim_options {
    const char *broker;   /* HOST:PORT (required) */
    const char *api;      /* HOST:PORT of the query API (for verify) */
    uint32_t n_devices;   /* >= 1 */
    uint64_t duration_ms; /* wall time of sample generation */
    const char *profile;  /* "ev", "meter", "industrial" */
    uint8_t qos;          /* 0 or 1 */
    tern_sim_format format;
    uint32_t interval_ms; /* event time between samples */
    double accel;         /* event time per wall time */
    int64_t start_ms;     /* event time of the start; INT64_MIN: now, rounded to the interval */
    uint64_t seed;
    const char *client_prefix;         /* device ids are PREFIX%06u */
    const char *ack_log;               /* path or NULL */
    uint32_t connect_rate;             /* connections started per second */
    uint32_t window;                   /* QoS 1 in-flight messages per connection */
    uint32_t buffer;                   /* samples a device buffers while offline (oldest dropped) */
    double backfill_rate;              /* messages/s per device while backfilling; 0: auto */
    double tunnel_rate;                /* probability per sample that a connected device drops */
    double tunnel_min_s, tunnel_max_s; /* tunnel length, event time */
    double duplicates;                 /* probability to re-send an acknowledged sample */
    double power_loss;                 /* probability per device and interval of a power loss */
    double power_off_s;                /* reboot time after a power loss, event time */
    double clock_drift;                /* max clock drift, ms per hour (0..360000) */
    double out_of_order; /* probability of a late resend / of a shuffled backfill send */
    uint32_t rush_x;     /* rush hour: X times the sample rate (<= 1: none) */
    uint64_t rush_every_ms, rush_for_ms; /* event time */
    uint64_t storm_at_ms; /* wall ms after the start: every device reconnects at once (0: no) */
    uint32_t backoff_base_ms, backoff_cap_ms;
    uint64_t drain_ms; /* longest wait for acks after generation stops */
    bool verify;
    uint64_t verify_timeout_ms; /* keep re-checking while points are missing */
    bool quiet;                 /* no progress line */
    int progress_fd;            /* where the progress line goes (2) */
    uint32_t processes;         /* worker processes; 0: as few as the open-file limit allows */
    uint64_t e2e_timeout_ms;    /* with api: a latency probe gives up this long after the publish */
} tern_sim_options;

/* tern_sim_options_default fills o with the defaults of docs/sim.md (broker NULL). */
void tern_sim_options_default(tern_sim_options *o);

typedef struct tern_sim_summary {
    uint32_t devices;
    uint64_t generated;       /* samples generated */
    uint64_t published;       /* PUBLISH packets sent (re-sends and duplicates included) */
    uint64_t acked;           /* distinct samples acknowledged */
    uint64_t acked_points;    /* acked x metrics */
    uint64_t duplicates;      /* duplicates of acknowledged samples sent */
    uint64_t resent;          /* samples sent again after a disconnect */
    uint64_t reconnects;      /* successful connections after a device's first */
    uint64_t tunnels;         /* disconnects caused by --tunnel-rate */
    uint64_t dropped_offline; /* samples dropped because an offline buffer was full */
    uint64_t power_losses;    /* power losses (--power-loss) */
    uint64_t storm_drops;     /* connections dropped by --storm-at */
    uint64_t rush_generated;  /* samples generated during rush hours */
    uint64_t late_resends;    /* acknowledged samples queued again behind the buffer */
    uint64_t reordered;       /* backfill sends taken out of FIFO order */
    int64_t max_drift_ms;     /* largest |stamp - true ts| of a generated sample */
    uint64_t lost_power; /* samples lost to power losses (buffered, in flight, or due while off) */
    uint64_t backpressure; /* times a device had to wait for its in-flight window */
    uint64_t conn_errors;  /* failed connection attempts */
    uint64_t unacked;      /* samples left unacknowledged at the end */
    double ack_p50_ms, ack_p99_ms;
    double wall_s;
    size_t n_metrics;
    bool interrupted;
    /* verification (when asked) */
    bool verified;
    bool verify_ok;
    tern_sim_verdict verdict;
    uint64_t verify_errors;    /* devices whose query failed */
    uint32_t processes;        /* processes that simulated the fleet (1: no workers) */
    uint32_t failed_processes; /* workers that died without reporting: their devices are
                                  missing from every count, and the run failed */
    /* end-to-end latency (with o->api): publish -> queryable through GET /api/v1/last */
    bool e2e_measured;             /* a probe ran (api given): the e2e_* fields mean something */
    uint64_t e2e_samples;          /* probed samples that became queryable (in the percentiles) */
    uint64_t e2e_timeouts;         /* probed samples not queryable within o->e2e_timeout_ms */
    double e2e_p50_ms, e2e_p99_ms; /* over the e2e_samples; 0 when there are none */
} tern_sim_summary;

/* ---- processes --------------------------------------------------------------------------- */

/* Open files a process keeps for itself beyond its devices' connections (stdio, the event
 * loop, verification queries, a worker's pipe). */
#define TERN_SIM_FD_RESERVE 64

/*
 * tern_sim_processes_plan decides how many processes simulate n_devices with an open-file limit
 * of fd_limit per process. asked 0 (automatic): 1 if n_devices fits in 3/4 of fd_limit (head
 * room for the broker's side of a loopback run, sockets in TIME_WAIT and the reserve), else
 * ceil(n_devices / (fd_limit * 3 / 4)). asked > 0: asked, if 1 <= asked <= min(n_devices, 1024)
 * and each process's share, ceil(n_devices / asked), plus TERN_SIM_FD_RESERVE fits in fd_limit.
 * Sets *out on success. Returns 0 or TERN_EINVAL.
 */
int tern_sim_processes_plan(uint32_t n_devices, uint32_t asked, uint64_t fd_limit, uint32_t *out);

/*
 * tern_sim_slice gives worker k (0-based, of n_procs) its devices: the ids *first ..
 * *first + *count - 1 (1-based), with first = floor(k * n / n_procs) + 1. The slices of
 * k = 0 .. n_procs - 1 are disjoint, in order, and cover 1..n; their sizes differ by at most 1.
 * n_procs must be 1..n and k < n_procs.
 */
void tern_sim_slice(
    uint32_t n_devices, uint32_t n_procs, uint32_t k, uint32_t *first, uint32_t *count);

/* tern_sim_fd_limit_raise raises this process's soft open-file limit to its hard limit (best
 * effort) and returns the soft limit now in force (UINT64_MAX if unlimited). */
uint64_t tern_sim_fd_limit_raise(void);

/*
 * tern_sim_run runs the simulation described by o until its duration is over (then drains acks
 * for at most o->drain_ms) or SIGINT/SIGTERM arrives, writes the ack log if asked, verifies if
 * asked, and fills *out. Progress lines go to o->progress_fd. Raises the soft open-file limit
 * (tern_sim_fd_limit_raise) and plans the processes (tern_sim_processes_plan); with more than
 * one it forks the workers (each the runner on one tern_sim_slice, the device ids unchanged)
 * and merges what they report into *out and one progress line; a worker that dies without
 * reporting is counted in out->failed_processes (the others run to their end; a SIGINT or
 * SIGTERM to the parent is passed on to the workers). Returns 0 (the run happened; the verdict
 * is in *out), TERN_EINVAL (bad options, or too few processes for the open-file limit),
 * TERN_ENOMEM, or -errno / TERN_ENOTFOUND for an address that does not resolve, an ack log that
 * cannot be written or a worker that cannot be started.
 */
int tern_sim_run(const tern_sim_options *o, tern_sim_summary *out);

/* tern_sim_summary_json appends the summary as one JSON object (no newline) to out. */
int tern_sim_summary_json(tern_buf *out, const tern_sim_summary *s);

/* tern_sim_verdict_json appends the verification verdict as one JSON object (no newline). */
int tern_sim_verdict_json(tern_buf *out, const tern_sim_summary *s);

#endif

/*
 * sim.c: the simulator's runner: one event loop, one MQTT 3.1.1 connection per device.
 *
 * Each device has two timers: `tick` (generate the samples now due in event time, send what the
 * in-flight window and the backfill rate allow, keepalive) and `conn` (end of a tunnel, end of a
 * reconnect backoff). Samples wait in a per-device FIFO (the offline buffer, bounded: the oldest
 * is dropped and counted when full); a QoS 1 sample moves to the in-flight window when sent and
 * is acknowledged by its PUBACK. On a disconnect the in-flight samples go back to the front of
 * the FIFO in seq order, so a device (re)sends in seq order unless --out-of-order shuffles it. A
 * power loss empties the FIFO and the window (the samples are recorded as lost) and keeps the
 * device off for a while. Connections start from a FIFO paced at connect_rate per second with a
 * bounded number of handshakes open. Promises: see sim.h.
 */
#include "sim/sim.h"
#include "sim/sim_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/histogram.h"
#include "loop/loop.h"
#include "loop/net.h"
#include "mqtt/mqtt.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_HANDSHAKES 512
#define KEEPALIVE_S 60
#define HOUSEKEEPING_MS 100
#define OOO_WINDOW 8 /* --out-of-order shuffles among the next OOO_WINDOW buffered samples */

enum {
    DS_IDLE,
    DS_QUEUED,
    DS_TCP,
    DS_CONNACK,
    DS_READY,
    DS_TUNNEL,
    DS_BACKOFF,
    DS_POWEROFF,
    DS_DONE
};

typedef struct pending {
    uint64_t seq;
    uint8_t *data;
    uint32_t len;
    bool dup;
} pending;

typedef struct slot {
    uint64_t seq;
    uint64_t send_ns;
    uint8_t *data;
    uint32_t len;
    uint16_t pid; /* 0: free */
    bool dup;
} slot;

struct sim;

typedef struct device {
    tern_loop_io io;
    tern_loop_timer tick;
    tern_loop_timer conn;
    struct sim *s;
    uint32_t idx; /* 1-based */
    uint8_t state;
    bool ever_connected;
    bool blocked; /* waiting for the window (counted once per episode) */
    uint32_t attempts;
    char id[72];
    char topic[112];
    tern_sim_device *model;
    uint64_t generated; /* seqs 1..generated exist */
    pending *q;         /* ring of q_cap (allocated), grown on demand up to sim's q_max */
    uint32_t q_head, q_len, q_cap;
    slot *win;
    uint32_t n_inflight;
    uint16_t next_pid;
    double tokens;
    uint64_t tokens_ms;
    tern_buf in, out;
    size_t out_off;
    uint64_t last_tx_ms;
} device;

typedef struct sim {
    tern_sim_options o;
    uint32_t dev_first; /* devs[i] is device dev_first + i (1-based, of o.n_devices) */
    uint32_t n_local;   /* devices this process simulates */
    int report_fd;      /* a worker's pipe to its parent (sim_procs.c), -1 if none */
    uint32_t q_max;     /* a device's FIFO holds at most buffer + window + 1 samples */
    tern_loop *loop;
    tern_profile *profile;
    tern_sim_schedule sched;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint64_t rng;
    device *devs;
    tern_sim_dev_acct *acct;
    size_t n_metrics;
    double values[TERN_PROFILE_MAX_METRICS];
    double backfill_rate;

    device **cq; /* connect FIFO */
    size_t cq_head, cq_len, cq_cap;
    uint32_t n_handshakes;
    double connect_tokens;
    uint64_t connect_tokens_ms;
    tern_loop_timer pacer;

    tern_loop_timer housekeeping;
    tern_loop_signal sigint, sigterm;
    uint64_t start_ms; /* loop time of the run's start */
    uint64_t drain_start_ms;
    bool generating, draining, interrupted;
    bool stormed; /* --storm-at happened */
    uint64_t next_progress_ms;

    uint32_t n_ready;
    uint64_t backlog; /* samples waiting in FIFOs */
    tern_histogram lat_all, lat_sec;
    tern_sim_probe *probe; /* the end-to-end latency probe (with an api), or NULL */
    tern_histogram e2e;    /* what it measured (ns) */
    tern_sim_summary sum;
    uint64_t last_published, last_acked;
    tern_buf scratch;
    int fatal;
    bool tty;
} sim;

/* ---- helpers ----------------------------------------------------------------------------- */

static uint64_t rel_ms(const sim *s)
{
    return tern_loop_now_ms(s->loop) - s->start_ms;
}

static void set_fatal(sim *s, int rc);

/* Makes room for one more sample in d's FIFO (its callers keep it near q_max at most): rings
 * start small and double, so a device that never buffers much costs little memory. */
static bool q_reserve(device *d)
{
    if (d->q_len < d->q_cap)
        return true;
    uint32_t cap = d->q_cap < 4 ? 4 : d->q_cap * 2;
    if (cap > d->s->q_max && d->q_cap < d->s->q_max)
        cap = d->s->q_max; /* (beyond q_max it still grows rather than overwrite) */
    pending *q = tern_calloc(cap, sizeof *q);
    if (!q) {
        set_fatal(d->s, TERN_ENOMEM);
        return false;
    }
    for (uint32_t i = 0; i < d->q_len; i++)
        q[i] = d->q[(d->q_head + i) % d->q_cap];
    tern_free(d->q);
    d->q = q;
    d->q_cap = cap;
    d->q_head = 0;
    return true;
}

/* q_push_back and q_push_front take p.data; if the FIFO cannot grow they free it (the run is
 * failing with TERN_ENOMEM). */
static void q_push_back(device *d, pending p)
{
    if (!q_reserve(d)) {
        tern_free(p.data);
        return;
    }
    d->q[(d->q_head + d->q_len) % d->q_cap] = p;
    d->q_len++;
    d->s->backlog++;
}

static void q_push_front(device *d, pending p)
{
    if (!q_reserve(d)) {
        tern_free(p.data);
        return;
    }
    d->q_head = (d->q_head + d->q_cap - 1) % d->q_cap;
    d->q[d->q_head] = p;
    d->q_len++;
    d->s->backlog++;
}

static pending q_pop_front(device *d)
{
    pending p = d->q[d->q_head];
    d->q_head = (d->q_head + 1) % d->q_cap;
    d->q_len--;
    d->s->backlog--;
    return p;
}

static void set_fatal(sim *s, int rc)
{
    if (s->fatal == 0)
        s->fatal = rc;
    tern_loop_stop(s->loop);
}

static void conn_enqueue(device *d);
static void device_try_send(device *d);
static void device_rearm(device *d);

/* ---- connection life cycle --------------------------------------------------------------- */

static void device_close(device *d)
{
    if (d->io.fd >= 0) {
        tern_loop_io_stop(&d->io);
        close(d->io.fd);
        d->io.fd = -1;
    }
    tern_buf_reset(&d->in);
    tern_buf_reset(&d->out);
    d->out_off = 0;
}

/* Returns the in-flight samples to the front of the FIFO in seq order (duplicates are dropped:
 * the sample they repeat is acknowledged already). */
static void device_requeue_inflight(device *d)
{
    sim *s = d->s;
    for (;;) {
        slot *best = NULL;
        for (uint32_t i = 0; i < s->o.window; i++) {
            slot *w = &d->win[i];
            if (w->pid != 0 && (!best || w->seq > best->seq))
                best = w;
        }
        if (!best)
            break;
        if (best->dup)
            tern_free(best->data);
        else
            q_push_front(d, (pending) { best->seq, best->data, best->len, false });
        memset(best, 0, sizeof *best);
    }
    d->n_inflight = 0;
}

static bool in_handshake(uint8_t st)
{
    return st == DS_TCP || st == DS_CONNACK;
}

/* Leaves the current connection (if any) and waits delay_ms in state st before reconnecting. */
static void device_go_offline(device *d, uint8_t st, uint64_t delay_ms)
{
    sim *s = d->s;
    if (d->state == DS_READY)
        s->n_ready--;
    if (in_handshake(d->state))
        s->n_handshakes--;
    device_close(d);
    device_requeue_inflight(d);
    d->blocked = false;
    d->state = st;
    if (s->interrupted) {
        d->state = DS_DONE;
        return;
    }
    tern_loop_timer_start(&d->conn, delay_ms, 0);
}

static void device_fail(device *d, int why)
{
    sim *s = d->s;
    (void)why;
    if (d->state == DS_READY)
        d->attempts = 0;
    else
        s->sum.conn_errors++;
    d->attempts++;
    uint64_t delay = tern_sim_backoff_ms(
        d->attempts, s->o.backoff_base_ms, s->o.backoff_cap_ms, tern_sim_rng_next(&s->rng));
    device_go_offline(d, DS_BACKOFF, delay);
}

static void device_flush(device *d)
{
    while (d->out_off < d->out.len) {
        ssize_t n = send(d->io.fd, d->out.data + d->out_off, d->out.len - d->out_off,
            MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            d->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!(d->io.interest & TERN_LOOP_WRITE))
                (void)tern_loop_io_start(&d->io, TERN_LOOP_READ | TERN_LOOP_WRITE);
            return;
        }
        device_fail(d, n < 0 ? -errno : TERN_EIO);
        return;
    }
    tern_buf_reset(&d->out);
    d->out_off = 0;
    d->last_tx_ms = tern_loop_now_ms(d->s->loop);
    if (d->io.interest & TERN_LOOP_WRITE)
        (void)tern_loop_io_start(&d->io, TERN_LOOP_READ);
}

static int device_queue_packet(device *d, const tern_mqtt_packet *pkt)
{
    return tern_mqtt_encode(&d->out, TERN_MQTT_V311, pkt);
}

static void device_send_connect(device *d)
{
    tern_mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_CONNECT;
    pkt.u.connect.version = TERN_MQTT_V311;
    pkt.u.connect.clean_start = true;
    pkt.u.connect.keep_alive_s = KEEPALIVE_S;
    pkt.u.connect.client_id.p = (const uint8_t *)d->id;
    pkt.u.connect.client_id.len = (uint16_t)strlen(d->id);
    int rc = device_queue_packet(d, &pkt);
    if (rc != 0) {
        set_fatal(d->s, rc);
        return;
    }
    d->state = DS_CONNACK;
    device_flush(d);
}

static void device_ready(device *d)
{
    sim *s = d->s;
    s->n_handshakes--;
    s->n_ready++;
    d->state = DS_READY;
    d->attempts = 0;
    if (d->ever_connected)
        s->sum.reconnects++;
    d->ever_connected = true;
    d->tokens_ms = tern_loop_now_ms(s->loop);
    device_try_send(d);
    if (d->state == DS_READY)
        device_rearm(d);
}

/* ---- inbound ----------------------------------------------------------------------------- */

static void device_on_puback(device *d, const tern_mqtt_ack *ack)
{
    sim *s = d->s;
    for (uint32_t i = 0; i < s->o.window; i++) {
        slot *w = &d->win[i];
        if (w->pid != ack->packet_id)
            continue;
        uint64_t lat_ns = tern_clock_mono_ns() - w->send_ns;
        tern_histogram_record(&s->lat_all, lat_ns);
        tern_histogram_record(&s->lat_sec, lat_ns);
        bool keep = false;
        if (ack->reason < 0x80 && !w->dup) {
            bool added = false;
            if (tern_sim_seqset_add(&s->acct[d->idx - s->dev_first].acked, w->seq, &added) != 0) {
                set_fatal(s, TERN_ENOMEM);
            } else if (added) {
                s->sum.acked++;
                if (s->o.duplicates > 0 && !s->draining
                    && tern_sim_rng_unit(&s->rng) < s->o.duplicates && d->q_len < s->q_max) {
                    q_push_front(d, (pending) { w->seq, w->data, w->len, true });
                    keep = true;
                } else if (s->o.out_of_order > 0 && !s->draining
                    && tern_sim_rng_unit(&s->rng) < s->o.out_of_order && d->q_len < s->q_max) {
                    /* a late duplicate: behind everything buffered now */
                    q_push_back(d, (pending) { w->seq, w->data, w->len, true });
                    s->sum.late_resends++;
                    keep = true;
                }
            }
        } else if (ack->reason >= 0x80 && !w->dup) {
            /* refused by the broker: it is not stored; send it again later */
            if (d->q_len < s->q_max) {
                q_push_front(d, (pending) { w->seq, w->data, w->len, false });
                keep = true;
            }
        }
        if (!keep)
            tern_free(w->data);
        memset(w, 0, sizeof *w);
        d->n_inflight--;
        d->blocked = false;
        return;
    }
}

/* Returns false if d's connection was closed. */
static bool device_on_packet(device *d, const tern_mqtt_packet *pkt)
{
    switch (pkt->type) {
    case TERN_MQTT_CONNACK:
        if (d->state != DS_CONNACK)
            return true;
        if (pkt->u.connack.reason != 0) {
            device_fail(d, TERN_EDENIED);
            return false;
        }
        device_ready(d);
        return d->state == DS_READY;
    case TERN_MQTT_PUBACK:
        device_on_puback(d, &pkt->u.ack);
        return true;
    case TERN_MQTT_DISCONNECT:
        device_fail(d, TERN_ECLOSED);
        return false;
    default:
        return true;
    }
}

static void device_on_readable(device *d)
{
    uint8_t chunk[16384];
    for (int round = 0; round < 8; round++) {
        ssize_t n = recv(d->io.fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            device_fail(d, n == 0 ? TERN_ECLOSED : -errno);
            return;
        }
        if (tern_buf_append(&d->in, chunk, (size_t)n) != 0) {
            set_fatal(d->s, TERN_ENOMEM);
            return;
        }
        size_t off = 0;
        while (off < d->in.len) {
            size_t plen = 0;
            int rc = tern_mqtt_frame(d->in.data + off, d->in.len - off, 1u << 20, &plen);
            if (rc == TERN_EPARTIAL)
                break;
            tern_mqtt_packet pkt;
            size_t used = 0;
            if (rc == 0)
                rc = tern_mqtt_decode(d->in.data + off, plen, TERN_MQTT_V311, &pkt, &used, NULL);
            if (rc != 0) {
                device_fail(d, rc);
                return;
            }
            off += plen;
            if (!device_on_packet(d, &pkt))
                return;
        }
        tern_buf_consume(&d->in, off);
        if ((size_t)n < sizeof chunk)
            break;
    }
    if (d->state == DS_READY) {
        device_try_send(d);
        if (d->state == DS_READY)
            device_rearm(d);
    }
}

static void device_on_io(tern_loop_io *io, unsigned events)
{
    device *d = io->data;
    if (d->state == DS_TCP) {
        int rc = tern_net_connect_result(io->fd);
        if (rc != 0) {
            device_fail(d, rc);
            return;
        }
        (void)tern_net_set_nodelay(io->fd, true);
        (void)tern_loop_io_start(io, TERN_LOOP_READ);
        device_send_connect(d);
        return;
    }
    if (events & TERN_LOOP_WRITE) {
        device_flush(d);
        if (d->io.fd < 0)
            return;
    }
    if (events & (TERN_LOOP_READ | TERN_LOOP_ERROR))
        device_on_readable(d);
}

static void device_start_connect(device *d)
{
    sim *s = d->s;
    int fd = socket(s->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    s->n_handshakes++;
    d->state = DS_TCP;
    if (fd < 0) {
        device_fail(d, -errno);
        return;
    }
    tern_loop_io_init(s->loop, &d->io, fd, device_on_io, d);
    if (connect(fd, (const struct sockaddr *)&s->addr, s->addr_len) != 0 && errno != EINPROGRESS) {
        device_fail(d, -errno);
        return;
    }
    int rc = tern_loop_io_start(&d->io, TERN_LOOP_WRITE);
    if (rc != 0)
        device_fail(d, rc);
}

/* ---- connection pacing ------------------------------------------------------------------- */

static void pacer_cb(tern_loop_timer *t)
{
    sim *s = t->data;
    uint64_t now = tern_loop_now_ms(s->loop);
    s->connect_tokens += (double)(now - s->connect_tokens_ms) * s->o.connect_rate / 1000.0;
    s->connect_tokens_ms = now;
    double burst = s->o.connect_rate / 10.0 + 1;
    if (s->connect_tokens > burst)
        s->connect_tokens = burst;
    while (s->cq_len > 0 && s->connect_tokens >= 1 && s->n_handshakes < MAX_HANDSHAKES) {
        device *d = s->cq[s->cq_head];
        s->cq_head = (s->cq_head + 1) % s->cq_cap;
        s->cq_len--;
        if (d->state != DS_QUEUED)
            continue;
        s->connect_tokens -= 1;
        device_start_connect(d);
    }
    if (s->cq_len > 0)
        tern_loop_timer_start(&s->pacer, 5, 0);
}

static void conn_enqueue(device *d)
{
    sim *s = d->s;
    if (s->cq_len == s->cq_cap) {
        size_t cap = s->cq_cap ? s->cq_cap * 2 : 256;
        device **q = tern_calloc(cap, sizeof *q);
        if (!q) {
            set_fatal(s, TERN_ENOMEM);
            return;
        }
        for (size_t i = 0; i < s->cq_len; i++)
            q[i] = s->cq[(s->cq_head + i) % s->cq_cap];
        tern_free(s->cq);
        s->cq = q;
        s->cq_cap = cap;
        s->cq_head = 0;
    }
    s->cq[(s->cq_head + s->cq_len) % s->cq_cap] = d;
    s->cq_len++;
    d->state = DS_QUEUED;
    if (!tern_loop_timer_active(&s->pacer))
        tern_loop_timer_start(&s->pacer, 0, 0);
}

static void conn_timer_cb(tern_loop_timer *t)
{
    device *d = t->data;
    if (d->state == DS_TUNNEL || d->state == DS_BACKOFF || d->state == DS_POWEROFF)
        conn_enqueue(d);
}

/* ---- samples and sending ----------------------------------------------------------------- */

/* Records sample seq of d as lost to a power loss. */
static void device_lose(device *d, uint64_t seq)
{
    sim *s = d->s;
    tern_sim_dev_acct *a = &s->acct[d->idx - s->dev_first];
    bool counted = false;
    if (tern_sim_power_lose(&a->lost, &a->acked, seq, &counted) != 0)
        set_fatal(s, TERN_ENOMEM);
    else if (counted)
        s->sum.lost_power++;
}

/* A power loss: the connection, the in-flight window and the offline buffer are gone; the device
 * is off for power_off_s of event time, then reconnects. */
static void device_power_loss(device *d)
{
    sim *s = d->s;
    s->sum.power_losses++;
    tern_loop_timer_stop(&d->conn);
    uint64_t wall_ms = (uint64_t)(s->o.power_off_s * 1000.0 / s->o.accel);
    device_go_offline(d, DS_POWEROFF, wall_ms < 10 ? 10 : wall_ms);
    while (d->q_len > 0) {
        pending p = q_pop_front(d);
        if (!p.dup)
            device_lose(d, p.seq);
        tern_free(p.data);
    }
}

static void device_generate(device *d, uint64_t upto_wall_ms)
{
    sim *s = d->s;
    uint64_t due = tern_sim_schedule_due(&s->sched, d->idx, upto_wall_ms);
    while (d->generated < due && s->fatal == 0) {
        uint64_t seq = d->generated + 1;
        int64_t ts = tern_sim_schedule_ts(&s->sched, d->idx, seq);
        tern_profile_step(s->profile, d->model, ts, s->values);
        tern_buf_reset(&s->scratch);
        int64_t stamp = tern_sim_schedule_stamp(&s->sched, d->idx, seq);
        int64_t drift = stamp > ts ? stamp - ts : ts - stamp;
        if (drift > s->sum.max_drift_ms)
            s->sum.max_drift_ms = drift;
        int rc
            = tern_sim_encode_sample(&s->scratch, s->profile, s->o.format, stamp, seq, s->values);
        if (rc != 0) {
            set_fatal(s, rc);
            return;
        }
        size_t len;
        uint8_t *data = tern_buf_steal(&s->scratch, &len);
        d->generated = seq;
        s->sum.generated++;
        s->sum.rush_generated += tern_sim_schedule_in_rush(&s->sched, seq);
        if (d->state == DS_POWEROFF) {
            /* due while the device is off: never buffered */
            tern_free(data);
            device_lose(d, seq);
            continue;
        }
        if (d->q_len >= s->o.buffer) {
            pending old = q_pop_front(d);
            tern_free(old.data);
            if (!old.dup)
                s->sum.dropped_offline++;
        }
        q_push_back(d, (pending) { seq, data, (uint32_t)len, false });
        if (s->o.power_loss > 0 && !s->draining && d->state != DS_DONE
            && tern_sim_rng_unit(&s->rng) < s->o.power_loss) {
            device_power_loss(d);
            continue;
        }
        if (d->state == DS_READY && s->o.tunnel_rate > 0 && !s->draining
            && tern_sim_rng_unit(&s->rng) < s->o.tunnel_rate) {
            double ev_s = s->o.tunnel_min_s
                + tern_sim_rng_unit(&s->rng) * (s->o.tunnel_max_s - s->o.tunnel_min_s);
            uint64_t wall_ms = (uint64_t)(ev_s * 1000.0 / s->o.accel);
            s->sum.tunnels++;
            device_go_offline(d, DS_TUNNEL, wall_ms < 10 ? 10 : wall_ms);
        }
    }
}

static uint16_t take_pid(device *d)
{
    for (;;) {
        d->next_pid = (uint16_t)(d->next_pid == 65535 ? 1 : d->next_pid + 1);
        bool used = false;
        for (uint32_t i = 0; i < d->s->o.window; i++)
            used |= d->win[i].pid == d->next_pid;
        if (!used)
            return d->next_pid;
    }
}

static void device_try_send(device *d)
{
    sim *s = d->s;
    if (d->state != DS_READY)
        return;
    uint64_t now = tern_loop_now_ms(s->loop);
    d->tokens += (double)(now - d->tokens_ms) * s->backfill_rate / 1000.0;
    d->tokens_ms = now;
    double burst = s->o.qos ? (double)s->o.window : 16.0;
    if (d->tokens > burst)
        d->tokens = burst;
    bool sent_any = false;
    while (d->q_len > 0) {
        if (s->o.qos == 1 && d->n_inflight >= s->o.window) {
            if (!d->blocked)
                s->sum.backpressure++;
            d->blocked = true;
            break;
        }
        if (d->tokens < 1)
            break;
        if (s->o.out_of_order > 0 && d->q_len > 1) {
            /* backfilling: send one of the next few buffered samples first */
            uint32_t k = tern_sim_shuffle_pick(d->q_len, OOO_WINDOW, s->o.out_of_order, &s->rng);
            if (k > 0) {
                pending *a = &d->q[d->q_head], *b = &d->q[(d->q_head + k) % d->q_cap];
                pending tmp = *a;
                *a = *b;
                *b = tmp;
                s->sum.reordered++;
            }
        }
        pending p = q_pop_front(d);
        tern_mqtt_publish pub;
        memset(&pub, 0, sizeof pub);
        pub.qos = s->o.qos;
        pub.topic.p = (const uint8_t *)d->topic;
        pub.topic.len = (uint16_t)strlen(d->topic);
        pub.payload_len = p.len;
        if (s->o.qos == 1)
            pub.packet_id = take_pid(d);
        int rc = tern_mqtt_encode_publish_header(&d->out, TERN_MQTT_V311, &pub);
        if (rc == 0)
            rc = tern_buf_append(&d->out, p.data, p.len);
        if (rc != 0) {
            set_fatal(s, rc);
            tern_free(p.data);
            return;
        }
        d->tokens -= 1;
        s->sum.published++;
        sent_any = true;
        /* the publish time: the PUBLISH is in the output, flushed to the socket below */
        bool probe_wants = tern_sim_probe_wants(s->probe);
        uint64_t pub_ns = s->o.qos == 1 || probe_wants ? tern_clock_mono_ns() : 0;
        tern_sim_dev_acct *a = &s->acct[d->idx - s->dev_first];
        if (p.dup) {
            s->sum.duplicates++;
            if (tern_sim_seqset_add(&a->duplicated, p.seq, NULL) != 0)
                set_fatal(s, TERN_ENOMEM);
        } else {
            bool added = false;
            if (tern_sim_seqset_add(&a->sent, p.seq, &added) != 0)
                set_fatal(s, TERN_ENOMEM);
            if (!added)
                s->sum.resent++;
            else if (probe_wants) /* a sample's first publish: its latency can be probed */
                tern_sim_probe_offer(
                    s->probe, d->idx, tern_sim_schedule_stamp(&s->sched, d->idx, p.seq), pub_ns);
        }
        if (s->o.qos == 1) {
            for (uint32_t i = 0; i < s->o.window; i++) {
                if (d->win[i].pid == 0) {
                    d->win[i] = (slot) { p.seq, pub_ns, p.data, p.len, pub.packet_id, p.dup };
                    break;
                }
            }
            d->n_inflight++;
        } else {
            if (!p.dup && s->o.duplicates > 0 && !s->draining
                && tern_sim_rng_unit(&s->rng) < s->o.duplicates) {
                q_push_front(d, (pending) { p.seq, p.data, p.len, true });
            } else {
                tern_free(p.data);
            }
        }
    }
    if (sent_any)
        device_flush(d);
}

/* Arms d's tick for its next sample, its next backfill token, or a keepalive. */
static void device_rearm(device *d)
{
    sim *s = d->s;
    uint64_t now_rel = rel_ms(s);
    uint64_t wait = 10000;
    if (s->generating) {
        uint64_t next = tern_sim_schedule_wall_ms(
            &s->sched, tern_sim_schedule_ts(&s->sched, d->idx, d->generated + 1));
        if (next <= s->o.duration_ms)
            wait = next > now_rel ? next - now_rel : 0;
    }
    if (d->state == DS_READY && d->q_len > 0 && !d->blocked && d->tokens < 1) {
        uint64_t t = (uint64_t)ceil((1 - d->tokens) * 1000.0 / s->backfill_rate);
        if (t < wait)
            wait = t;
    }
    if (!tern_loop_timer_active(&d->tick)
        || tern_loop_timer_due_ms(&d->tick) > tern_loop_now_ms(s->loop) + wait)
        tern_loop_timer_start(&d->tick, wait, 0);
}

static void tick_cb(tern_loop_timer *t)
{
    device *d = t->data;
    sim *s = d->s;
    if (s->generating) {
        uint64_t now_rel = rel_ms(s);
        device_generate(d, now_rel < s->o.duration_ms ? now_rel : s->o.duration_ms);
    }
    if (d->state == DS_READY) {
        device_try_send(d);
        uint64_t now = tern_loop_now_ms(s->loop);
        if (d->state == DS_READY && now - d->last_tx_ms >= KEEPALIVE_S * 1000 / 2) {
            tern_mqtt_packet ping;
            memset(&ping, 0, sizeof ping);
            ping.type = TERN_MQTT_PINGREQ;
            if (device_queue_packet(d, &ping) == 0)
                device_flush(d);
        }
    }
    device_rearm(d);
}

/* ---- progress, phases -------------------------------------------------------------------- */

void tern_sim_progress_write(int fd, bool tty, bool final, const tern_sim_progress *p,
    uint64_t msgs_per_s, const tern_histogram *lat)
{
    double p50 = (double)tern_histogram_percentile(lat, 0.5) / 1e6;
    double p99 = (double)tern_histogram_percentile(lat, 0.99) / 1e6;
    static const char *const phases[] = { "run  ", "drain", "done " };
    char line[512];
    int n = snprintf(line, sizeof line,
        "tern-sim %6.1fs %s connected %u/%u  msgs/s %" PRIu64 "  published %" PRIu64
        "  acked %" PRIu64 "  backlog %" PRIu64 "  inflight %" PRIu64 "  ack p50 %.2fms p99 %.2fms"
        "  reconnects %" PRIu64,
        (double)p->rel_ms / 1000.0, phases[p->phase <= TERN_SIM_PHASE_DONE ? p->phase : 0],
        p->connected, p->n_devices, msgs_per_s, p->published, p->acked, p->backlog, p->inflight,
        p50, p99, p->reconnects);
    if (n < 0)
        return;
    char buf[600];
    int m = tty ? snprintf(buf, sizeof buf, "\r%s\x1b[K%s", line, final ? "\n" : "")
                : snprintf(buf, sizeof buf, "%s\n", line);
    if (m > 0)
        (void)!write(fd, buf, (size_t)m < sizeof buf ? (size_t)m : sizeof buf - 1);
}

static void progress(sim *s, bool final)
{
    if (s->o.quiet)
        return;
    tern_sim_progress p = { rel_ms(s), s->n_ready, s->n_local,
        s->generating     ? TERN_SIM_PHASE_RUN
            : s->draining ? TERN_SIM_PHASE_DRAIN
                          : TERN_SIM_PHASE_DONE,
        s->sum.published, s->sum.acked, s->backlog, 0, s->sum.reconnects };
    for (uint32_t i = 0; i < s->n_local; i++)
        p.inflight += s->devs[i].n_inflight;
    if (s->report_fd >= 0) {
        /* a worker: its parent prints one line for the whole fleet */
        if (tern_sim_report_send(s->report_fd, TERN_SIM_REPORT_PROGRESS, &p, sizeof p, &s->lat_sec,
                sizeof s->lat_sec)
            != 0)
            set_fatal(s, TERN_EIO);
    } else {
        tern_sim_progress_write(
            s->o.progress_fd, s->tty, final, &p, s->sum.published - s->last_published, &s->lat_sec);
    }
    s->last_published = s->sum.published;
    tern_histogram_reset(&s->lat_sec);
}

static bool all_drained(const sim *s)
{
    for (uint32_t i = 0; i < s->n_local; i++)
        if (s->devs[i].q_len > 0 || s->devs[i].n_inflight > 0)
            return false;
    return true;
}

/* --storm-at: every connected (or connecting) device drops its connection at once (no
 * DISCONNECT) and reconnects after a backoff with full jitter (first attempt). */
static void storm(sim *s)
{
    s->stormed = true;
    for (uint32_t i = 0; i < s->n_local; i++) {
        device *d = &s->devs[i];
        if (d->state != DS_READY && !in_handshake(d->state))
            continue;
        s->sum.storm_drops++;
        d->attempts = 1;
        uint64_t delay = tern_sim_backoff_ms(
            1, s->o.backoff_base_ms, s->o.backoff_cap_ms, tern_sim_rng_next(&s->rng));
        device_go_offline(d, DS_BACKOFF, delay);
    }
}

static void housekeeping_cb(tern_loop_timer *t)
{
    sim *s = t->data;
    uint64_t now_rel = rel_ms(s);
    if (s->o.storm_at_ms > 0 && !s->stormed && s->generating && now_rel >= s->o.storm_at_ms)
        storm(s);
    if (s->generating && now_rel >= s->o.duration_ms) {
        /* generate the very last samples, then drain: end tunnels, no new misbehaviour */
        for (uint32_t i = 0; i < s->n_local; i++)
            device_generate(&s->devs[i], s->o.duration_ms);
        s->generating = false;
        s->draining = true;
        s->drain_start_ms = now_rel;
        for (uint32_t i = 0; i < s->n_local; i++) {
            device *d = &s->devs[i];
            if (d->state == DS_TUNNEL || d->state == DS_POWEROFF) {
                tern_loop_timer_stop(&d->conn);
                conn_enqueue(d);
            }
            device_try_send(d);
        }
    }
    if (s->draining
        && (all_drained(s) || s->o.qos == 0 || now_rel - s->drain_start_ms >= s->o.drain_ms)) {
        tern_loop_stop(s->loop);
        return;
    }
    if (now_rel >= s->next_progress_ms) {
        progress(s, false);
        s->next_progress_ms += 1000;
    }
}

static void on_signal(tern_loop_signal *sig, int signum)
{
    sim *s = sig->data;
    (void)signum;
    s->interrupted = true;
    tern_loop_stop(s->loop);
}

/* ---- setup and teardown ------------------------------------------------------------------ */

void tern_sim_options_default(tern_sim_options *o)
{
    memset(o, 0, sizeof *o);
    o->n_devices = 10;
    o->duration_ms = 10000;
    o->profile = "ev";
    o->qos = 1;
    o->format = TERN_SIM_JSON;
    o->interval_ms = 10000;
    o->accel = 1.0;
    o->start_ms = INT64_MIN;
    o->seed = 1;
    o->client_prefix = "dev";
    o->connect_rate = 1000;
    o->window = 16;
    o->buffer = 4096;
    o->tunnel_min_s = 10;
    o->tunnel_max_s = 60;
    o->power_off_s = 30;
    o->backoff_base_ms = 100;
    o->backoff_cap_ms = 10000;
    o->drain_ms = 10000;
    o->verify_timeout_ms = 30000;
    o->e2e_timeout_ms = 10000;
    o->progress_fd = 2;
}

static int check_options(const tern_sim_options *o)
{
    if (!o->broker || o->n_devices == 0 || o->n_devices > 10000000 || o->qos > 1
        || o->interval_ms == 0 || !(o->accel > 0) || o->window == 0 || o->window > 1024
        || o->buffer == 0 || o->connect_rate == 0 || o->tunnel_rate < 0 || o->tunnel_rate > 1
        || o->duplicates < 0 || o->duplicates > 1 || !(o->power_loss >= 0) || o->power_loss > 1
        || !(o->power_off_s >= 0) || (o->storm_at_ms > 0 && o->storm_at_ms >= o->duration_ms)
        || !(o->out_of_order >= 0) || o->out_of_order > 1 || !(o->clock_drift >= 0)
        || o->clock_drift > 360000 || o->tunnel_min_s < 0 || o->tunnel_max_s < o->tunnel_min_s
        || o->backoff_cap_ms == 0 || o->backfill_rate < 0 || !o->client_prefix
        || strlen(o->client_prefix) > 48 || (o->verify && !o->api)
        || (o->api && o->e2e_timeout_ms == 0))
        return TERN_EINVAL;
    tern_sim_schedule sched = { 0, o->interval_ms, o->accel, o->n_devices, 0, 0, o->rush_x,
        o->rush_every_ms, o->rush_for_ms };
    if (!tern_sim_schedule_valid(&sched))
        return TERN_EINVAL;
    return 0;
}

static void sim_free(sim *s)
{
    if (s->probe) {
        /* only on a failure: a run that ended took its results already */
        tern_sim_probe_stop(s->probe, true);
        tern_sim_probe_finish(s->probe, NULL, NULL, NULL);
        s->probe = NULL;
    }
    if (s->devs) {
        for (uint32_t i = 0; i < s->n_local; i++) {
            device *d = &s->devs[i];
            if (s->loop) {
                tern_loop_timer_stop(&d->tick);
                tern_loop_timer_stop(&d->conn);
            }
            device_close(d);
            while (d->q && d->q_len > 0)
                tern_free(q_pop_front(d).data);
            for (uint32_t k = 0; d->win && k < s->o.window; k++)
                tern_free(d->win[k].data);
            tern_free(d->q);
            tern_free(d->win);
            tern_buf_free(&d->in);
            tern_buf_free(&d->out);
            tern_profile_device_free(d->model);
        }
        tern_free(s->devs);
    }
    if (s->acct) {
        for (uint32_t i = 0; i < s->n_local; i++)
            tern_sim_acct_free(&s->acct[i]);
        tern_free(s->acct);
    }
    if (s->loop) {
        tern_loop_signal_stop(&s->sigint);
        tern_loop_signal_stop(&s->sigterm);
        tern_loop_free(s->loop);
    }
    tern_free(s->cq);
    tern_buf_free(&s->scratch);
    tern_profile_close(s->profile);
}

static int sim_setup(sim *s)
{
    const tern_sim_options *o = &s->o;
    int rc = tern_profile_open(o->profile, o->seed, &s->profile);
    if (rc != 0)
        return rc;
    s->n_metrics = tern_profile_metric_count(s->profile);
    if (o->format == TERN_SIM_BINARY && !tern_payload_schema_by_name(tern_profile_name(s->profile)))
        return TERN_EINVAL;
    rc = tern_net_resolve(o->broker, &s->addr, &s->addr_len);
    if (rc != 0)
        return rc;
    rc = tern_loop_new(&s->loop);
    if (rc != 0)
        return rc;
    int64_t start = o->start_ms;
    if (start == INT64_MIN) {
        int64_t now = tern_clock_now_ms();
        start = now - now % (int64_t)o->interval_ms;
    }
    s->sched = (tern_sim_schedule) { start, o->interval_ms, o->accel, o->n_devices, o->clock_drift,
        o->seed ^ UINT64_C(0xD1F7C10C4D21F7ED), o->rush_x, o->rush_every_ms, o->rush_for_ms };
    double live = o->accel * 1000.0 / o->interval_ms;
    if (tern_sim_schedule_rush(&s->sched))
        live *= o->rush_x;
    s->backfill_rate = o->backfill_rate > 0 ? o->backfill_rate : fmax(20.0, 4.0 * live);
    s->rng = o->seed * UINT64_C(0x9E3779B97F4A7C15) + 0x1234567;
    if (s->rng == 0)
        s->rng = 1;
    if (s->dev_first > 1)
        s->rng ^= (uint64_t)s->dev_first * UINT64_C(0xBF58476D1CE4E5B9); /* a worker's own stream */
    if (s->rng == 0)
        s->rng = 1;
    s->q_max = o->buffer + o->window + 1;
    s->devs = tern_calloc(s->n_local, sizeof *s->devs);
    s->acct = tern_calloc(s->n_local, sizeof *s->acct);
    if (!s->devs || !s->acct)
        return TERN_ENOMEM;
    for (uint32_t i = 0; i < s->n_local; i++) {
        device *d = &s->devs[i];
        d->s = s;
        d->idx = s->dev_first + i;
        d->io.fd = -1;
        snprintf(d->id, sizeof d->id, "%s%06u", o->client_prefix, d->idx);
        tern_buf_init(&d->in);
        tern_buf_init(&d->out);
        tern_buf_reset(&s->scratch);
        rc = tern_payload_topic_format(&s->scratch, NULL, d->id, TERN_PAYLOAD_SAMPLE, NULL);
        if (rc != 0 || s->scratch.len >= sizeof d->topic)
            return rc != 0 ? rc : TERN_EINVAL;
        memcpy(d->topic, s->scratch.data, s->scratch.len);
        d->topic[s->scratch.len] = '\0';
        d->win = tern_calloc(o->window, sizeof *d->win);
        if (!d->win)
            return TERN_ENOMEM;
        rc = tern_profile_device_init(s->profile, d->idx, &d->model);
        if (rc != 0)
            return rc;
        tern_loop_timer_init(s->loop, &d->tick, tick_cb, d);
        tern_loop_timer_init(s->loop, &d->conn, conn_timer_cb, d);
    }
    tern_loop_timer_init(s->loop, &s->pacer, pacer_cb, s);
    tern_loop_timer_init(s->loop, &s->housekeeping, housekeeping_cb, s);
    tern_loop_signal_init(s->loop, &s->sigint, on_signal, s);
    tern_loop_signal_init(s->loop, &s->sigterm, on_signal, s);
    rc = tern_loop_signal_start(&s->sigint, SIGINT);
    if (rc == 0)
        rc = tern_loop_signal_start(&s->sigterm, SIGTERM);
    if (rc != 0)
        return rc;
    tern_histogram_init(&s->lat_all);
    tern_histogram_init(&s->lat_sec);
    tern_histogram_init(&s->e2e);
    s->tty = isatty(o->progress_fd) == 1;
    return 0;
}

/* Sends DISCONNECT on every live connection (best effort) and closes everything. */
static void sim_disconnect_all(sim *s)
{
    for (uint32_t i = 0; i < s->n_local; i++) {
        device *d = &s->devs[i];
        tern_loop_timer_stop(&d->tick);
        tern_loop_timer_stop(&d->conn);
        if (d->state == DS_READY) {
            tern_mqtt_packet pkt;
            memset(&pkt, 0, sizeof pkt);
            pkt.type = TERN_MQTT_DISCONNECT;
            if (device_queue_packet(d, &pkt) == 0 && d->out_off < d->out.len)
                (void)!send(d->io.fd, d->out.data + d->out_off, d->out.len - d->out_off,
                    MSG_NOSIGNAL | MSG_DONTWAIT);
            s->n_ready--;
        }
        device_close(d);
        d->state = DS_DONE;
    }
}

int tern_sim_run_slice(const tern_sim_options *o, uint32_t dev_first, uint32_t n_local,
    int report_fd, tern_sim_summary *out, tern_histogram *lat_out, tern_histogram *e2e_out)
{
    int rc = check_options(o);
    if (rc != 0)
        return rc;
    if (dev_first == 0 || n_local == 0 || dev_first - 1 > o->n_devices - n_local)
        return TERN_EINVAL;
    sim *s = tern_calloc(1, sizeof *s);
    if (!s)
        return TERN_ENOMEM;
    s->o = *o;
    s->dev_first = dev_first;
    s->n_local = n_local;
    s->report_fd = report_fd;
    tern_buf_init(&s->scratch);
    rc = sim_setup(s);
    if (rc == 0 && o->api) /* after sim_setup: the probe thread inherits the blocked signals */
        rc = tern_sim_probe_start(
            o->api, o->client_prefix, s->profile, o->e2e_timeout_ms, &s->probe);
    if (rc != 0)
        goto done;
    uint64_t t0_ns = tern_clock_mono_ns();
    tern_loop_update_time(s->loop);
    s->start_ms = tern_loop_now_ms(s->loop);
    s->generating = true;
    s->connect_tokens_ms = s->start_ms;
    s->connect_tokens = 1;
    s->next_progress_ms = 1000;
    for (uint32_t i = 0; i < s->n_local; i++) {
        conn_enqueue(&s->devs[i]);
        tern_loop_timer_start(&s->devs[i].tick, 0, 0);
    }
    tern_loop_timer_start(&s->housekeeping, HOUSEKEEPING_MS, HOUSEKEEPING_MS);
    rc = tern_loop_run(s->loop);
    if (s->probe) /* nothing is published any more; an interruption drops the last probe */
        tern_sim_probe_stop(s->probe, s->interrupted);
    if (rc == 0 && s->fatal != 0)
        rc = s->fatal;
    if (rc != 0)
        goto done;
    progress(s, true);
    sim_disconnect_all(s);

    tern_sim_summary *sum = &s->sum;
    sum->devices = s->n_local;
    sum->processes = 1;
    sum->n_metrics = s->n_metrics;
    sum->acked_points = sum->acked * s->n_metrics;
    sum->ack_p50_ms = (double)tern_histogram_percentile(&s->lat_all, 0.5) / 1e6;
    sum->ack_p99_ms = (double)tern_histogram_percentile(&s->lat_all, 0.99) / 1e6;
    sum->wall_s = (double)(tern_clock_mono_ns() - t0_ns) / 1e9;
    sum->interrupted = s->interrupted;
    for (uint32_t i = 0; i < s->n_local; i++) {
        device *d = &s->devs[i];
        for (uint32_t k = 0; k < d->q_len; k++)
            sum->unacked += !d->q[(d->q_head + k) % d->q_cap].dup;
        for (uint32_t k = 0; k < o->window; k++)
            sum->unacked += d->win[k].pid != 0 && !d->win[k].dup;
    }
    if (o->qos == 0)
        sum->unacked = 0;

    tern_sim_run_info info
        = { &s->sched, s->profile, s->acct, s->dev_first, s->n_local, o->qos, o->client_prefix };
    if (o->ack_log) {
        rc = tern_sim_ack_log_write(o->ack_log, &info);
        if (rc != 0)
            goto done;
    }
    if (o->verify && !s->interrupted)
        tern_sim_verify(o, &info, sum);
    if (s->probe) {
        /* its last sample was polled for while verification ran */
        tern_sim_probe_finish(s->probe, &s->e2e, &sum->e2e_samples, &sum->e2e_timeouts);
        s->probe = NULL;
        sum->e2e_measured = true;
        sum->e2e_p50_ms = (double)tern_histogram_percentile(&s->e2e, 0.5) / 1e6;
        sum->e2e_p99_ms = (double)tern_histogram_percentile(&s->e2e, 0.99) / 1e6;
    }
    *out = *sum;
    if (lat_out)
        *lat_out = s->lat_all;
    if (e2e_out)
        *e2e_out = s->e2e;
done:
    sim_free(s);
    tern_free(s);
    return rc;
}

int tern_sim_run(const tern_sim_options *o, tern_sim_summary *out)
{
    int rc = check_options(o);
    if (rc != 0)
        return rc;
    uint32_t procs = 0;
    rc = tern_sim_processes_plan(o->n_devices, o->processes, tern_sim_fd_limit_raise(), &procs);
    if (rc != 0)
        return rc;
    tern_sim_options one = *o;
    if (one.start_ms == INT64_MIN) {
        /* fixed here, so that every worker of a multi-process run shares one schedule */
        int64_t now = tern_clock_now_ms();
        one.start_ms = now - now % (int64_t)one.interval_ms;
    }
    if (procs > 1)
        return tern_sim_run_procs(&one, procs, out);
    return tern_sim_run_slice(&one, 1, one.n_devices, -1, out, NULL, NULL);
}

int tern_sim_e2e_json(tern_buf *out, const tern_sim_summary *s)
{
    if (!s->e2e_measured)
        return tern_buf_append_str(
            out, "\"e2e_samples\":0,\"e2e_timeouts\":0,\"e2e_p50_ms\":null,\"e2e_p99_ms\":null");
    if (s->e2e_samples == 0)
        return tern_buf_printf(out,
            "\"e2e_samples\":0,\"e2e_timeouts\":%" PRIu64
            ",\"e2e_p50_ms\":null,\"e2e_p99_ms\":null",
            s->e2e_timeouts);
    return tern_buf_printf(out,
        "\"e2e_samples\":%" PRIu64 ",\"e2e_timeouts\":%" PRIu64
        ",\"e2e_p50_ms\":%.3f,\"e2e_p99_ms\":%.3f",
        s->e2e_samples, s->e2e_timeouts, s->e2e_p50_ms, s->e2e_p99_ms);
}

int tern_sim_summary_json(tern_buf *out, const tern_sim_summary *s)
{
    size_t before = out->len;
    int rc = tern_buf_printf(out,
        "{\"devices\":%u,\"metrics\":%zu,\"generated\":%" PRIu64 ",\"published\":%" PRIu64
        ",\"acked\":%" PRIu64 ",\"acked_points\":%" PRIu64 ",\"duplicates\":%" PRIu64
        ",\"resent\":%" PRIu64 ",\"reconnects\":%" PRIu64 ",\"tunnels\":%" PRIu64
        ",\"dropped_offline\":%" PRIu64 ",\"power_losses\":%" PRIu64 ",\"lost_power\":%" PRIu64
        ",\"max_drift_ms\":%" PRId64 ",\"rush_generated\":%" PRIu64 ",\"storm_drops\":%" PRIu64
        ",\"late_resends\":%" PRIu64 ",\"reordered\":%" PRIu64 ",\"backpressure\":%" PRIu64
        ",\"conn_errors\":%" PRIu64 ",\"unacked\":%" PRIu64
        ",\"ack_p50_ms\":%.3f,\"ack_p99_ms\":%.3f,\"wall_s\":%.3f"
        ",\"msgs_per_s\":%.1f,\"interrupted\":%s,\"processes\":%u,\"failed_processes\":%u,",
        s->devices, s->n_metrics, s->generated, s->published, s->acked, s->acked_points,
        s->duplicates, s->resent, s->reconnects, s->tunnels, s->dropped_offline, s->power_losses,
        s->lost_power, s->max_drift_ms, s->rush_generated, s->storm_drops, s->late_resends,
        s->reordered, s->backpressure, s->conn_errors, s->unacked, s->ack_p50_ms, s->ack_p99_ms,
        s->wall_s, s->wall_s > 0 ? (double)s->published / s->wall_s : 0.0,
        s->interrupted ? "true" : "false", s->processes, s->failed_processes);
    if (rc == 0)
        rc = tern_sim_e2e_json(out, s);
    if (rc == 0)
        rc = tern_buf_append_u8(out, '}');
    if (rc != 0)
        out->len = before;
    return rc;
}

/*
 * mqtt_load.c: an MQTT load generator that drives thousands of connections from one process.
 *
 *   mqtt_load --mode fanin|idle|storm|qos1-overload [--addr HOST:PORT] [options]
 *
 * It is the broker benchmark's client (bench/broker_bench.py runs it against tern and Mosquitto
 * side by side) and the seed of tern's fleet simulator, so it speaks to any MQTT 3.1.1 / 5.0
 * broker and measures only what it can see from outside. Each run prints ONE JSON line on stdout;
 * progress and errors go to stderr. The modes (see bench/README.md for every figure):
 *
 *   fanin          P publishers at a total paced rate R (QoS 0 or 1 with a per-publisher
 *                  in-flight window) to fleet/dev{i}/telemetry; C consumers on the shared
 *                  subscription $share/bench/fleet/+/telemetry. Delivered/s, publish-to-deliver
 *                  latency, sent / acked / delivered / lost / duplicates.
 *   qos1-overload  fanin at QoS 1 with one plain subscriber at a fixed high rate: are acked
 *                  messages delivered?
 *   idle           N connections each subscribed to fleet/dev{i}/cmd/#, held; with --rss-pid
 *                  the broker's resident memory per connection.
 *   storm          100 QoS 1 publishers measure publish-to-PUBACK latency, then N clients
 *                  connect at once (refusals retried with exponential backoff and full jitter);
 *                  time until all are connected and the publishers' p99 before vs during.
 *                  --storm-addr sends the storm to another broker instead: a control run that
 *                  shows what the machine's own contention does to the publishers' latency.
 *
 * One thread, one tern event loop (src/loop), the codec of src/mqtt. Every payload carries a
 * global sequence number and its send time (CLOCK_MONOTONIC ns); both ends live in this process,
 * so latency needs no clock sync, and sequence bitmaps give losses and duplicates exactly.
 * Latencies include the generator's own scheduling delay: it shares the machine with the broker.
 */
#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/histogram.h"
#include "loop/loop.h"
#include "loop/net.h"
#include "mqtt/mqtt.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- options --------------------------------------------------------------------------- */

typedef enum mode { MODE_FANIN, MODE_QOS1_OVERLOAD, MODE_IDLE, MODE_STORM } mode;

typedef struct options {
    mode mode;
    const char *mode_name;
    const char *addr;
    const char *storm_addr;  /* storm: where the storm's clients connect (default: addr) */
    uint8_t version;         /* TERN_MQTT_V311 or TERN_MQTT_V5 */
    uint32_t publishers;     /* fanin, storm */
    uint32_t consumers;      /* fanin */
    double rate;             /* total offered msgs/s (fanin); per publisher in storm */
    uint8_t qos;             /* fanin publish and subscription QoS */
    uint32_t window;         /* QoS 1 messages in flight per publisher */
    bool shared;             /* consumers use $share/bench/... */
    uint32_t payload_bytes;  /* approximate payload size */
    double duration_s;       /* measured publishing time */
    double warmup_s;         /* publishing before the measurement starts */
    double drain_s;          /* longest wait for late deliveries and acks */
    uint32_t connections;    /* idle, storm */
    double hold_s;           /* idle: how long connections are held once all are up */
    double settle_s;         /* idle: wait before reading the broker's RSS */
    double calm_s;           /* storm: measured calm period before the storm */
    double storm_timeout_s;  /* storm: give up waiting for all connections */
    double storm_window_s;   /* storm: shortest "during" period for the publishers' latency */
    double setup_timeout_s;  /* connecting the publishers / consumers / idle clients */
    uint32_t connect_window; /* handshakes in progress at once (0: unlimited) */
    uint32_t backoff_base_ms;
    uint32_t backoff_cap_ms;
    uint16_t keepalive_s;
    int cpu_pid; /* broker pid: CPU time over the measured interval */
    int rss_pid; /* broker pid: VmRSS before/after (idle) */
    uint64_t seed;
    const char *id_prefix;
    bool verbose;
} options;

/* ---- clients --------------------------------------------------------------------------- */

typedef enum role { ROLE_PUB, ROLE_SUB, ROLE_IDLE, ROLE_STORM } role;

typedef enum cstate {
    CS_NEW,     /* never started */
    CS_QUEUED,  /* waiting for a connect slot */
    CS_TCP,     /* TCP connect in progress */
    CS_CONNACK, /* CONNECT sent */
    CS_SUBACK,  /* SUBSCRIBE sent */
    CS_READY,   /* connected (and subscribed) */
    CS_BACKOFF, /* refused or failed: waiting to retry */
    CS_DEAD,    /* closed for good (dropped by the broker or a fatal refusal) */
} cstate;

/* One QoS 1 message awaiting its PUBACK. */
typedef struct inflight {
    uint64_t gid;   /* global sequence number */
    uint64_t ts_ns; /* send time */
    uint16_t pid;   /* packet id, 0 = free slot */
} inflight;

struct gen;

#define TIMELINE_MS 250
#define TIMELINE_SLOTS 128

typedef struct client {
    tern_loop_io io;
    tern_loop_timer retry;
    struct gen *g;
    uint32_t idx; /* index within its role */
    uint8_t role;
    uint8_t state;
    uint16_t next_pid;
    uint32_t attempts; /* connection attempts so far */
    uint32_t n_inflight;
    inflight *win; /* window slots (QoS 1 publishers) */
    tern_buf in;   /* an incomplete packet left from the last read */
    tern_buf out;  /* bytes not yet written */
    size_t out_off;
    uint64_t last_tx_ms;
} client;

/* A bitmap indexed by global sequence number, grown as messages are sent. */
typedef struct seqmap {
    uint64_t *words;
    size_t n_words;
} seqmap;

typedef struct counters {
    uint64_t offered, sent, blocked, acked, ack_errors, delivered, delivered_unique;
    uint64_t delivered_in_window, duplicates, bad_payload, stray_acks;
    uint64_t refused, conn_errors, dropped, fatal, ready, retries, max_attempts;
    uint64_t pings;
} counters;

typedef struct gen {
    options opt;
    tern_loop *loop;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    uint64_t rng;

    client *pubs, *subs, *conns; /* conns: idle or storm clients */
    uint32_t n_pubs, n_subs, n_conns;

    /* connector: a FIFO of clients waiting to connect, and how many handshakes are open */
    client **queue;
    size_t q_head, q_len, q_cap;
    uint32_t n_handshakes;
    tern_loop_task pump_task;

    /* pacing */
    tern_loop_timer pacer;
    tern_loop_timer housekeeping;
    uint64_t pace_start_ns;
    double pace_rate;
    uint32_t rr;
    uint64_t next_gid;

    /* measurement */
    uint64_t window_start_ns, window_end_ns; /* deliveries / latencies counted in [start, end) */
    tern_histogram *lat;                     /* publish -> deliver */
    tern_histogram *ack_cur;                 /* publish -> PUBACK, the current phase's */
    tern_histogram *ack_all;
    /* storm: worst publish -> PUBACK latency per TIMELINE_MS slice since timeline_start_ns */
    uint64_t timeline_start_ns;
    uint64_t timeline_max_ns[TIMELINE_SLOTS];
    seqmap acked_map, delivered_map;
    counters n;
    uint64_t last_delivery_ns;

    tern_buf scratch; /* encoder output before it is queued on a client */
    char *filler;     /* payload padding */
    bool stopping;
} gen;

static volatile sig_atomic_t interrupted;

static void on_sigint(int signum)
{
    (void)signum;
    interrupted = 1;
}

static void die(const char *what, int rc)
{
    fprintf(stderr, "mqtt_load: %s: %s\n", what, tern_strerror(rc));
    exit(1);
}

static uint64_t rng_next(gen *g)
{
    /* xorshift64*: plenty for jitter */
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * UINT64_C(2685821657736338717);
}

static uint64_t now_ns(void)
{
    return tern_clock_mono_ns();
}

static double secs(uint64_t ns)
{
    return (double)ns / 1e9;
}

/* ---- /proc readers --------------------------------------------------------------------- */

/* Reads utime+stime of pid in seconds, or -1 when unreadable. */
static double proc_cpu_s(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = '\0';
    const char *p = strrchr(line, ')');
    if (!p)
        return -1;
    /* fields after ')': 3 state, 4 ppid ... 14 utime, 15 stime */
    unsigned long long utime = 0, stime = 0;
    if (sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    return (double)(utime + stime) / (double)(hz > 0 ? hz : 100);
}

/* Reads VmRSS of pid in kB, or -1. */
static long proc_rss_kb(int pid)
{
    if (pid <= 0)
        return -1;
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

static double self_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
        + (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

typedef struct cpu_mark {
    double broker_s, self_s;
    uint64_t t_ns;
} cpu_mark;

static cpu_mark cpu_now(const gen *g)
{
    cpu_mark m = { proc_cpu_s(g->opt.cpu_pid), self_cpu_s(), now_ns() };
    return m;
}

/* ---- sequence bitmaps ------------------------------------------------------------------ */

static void seqmap_ensure(seqmap *m, uint64_t gid)
{
    size_t need = (size_t)(gid / 64) + 1;
    if (need <= m->n_words)
        return;
    size_t n = m->n_words ? m->n_words : 1024;
    while (n < need)
        n *= 2;
    uint64_t *w = tern_realloc(m->words, n * sizeof *w);
    if (!w)
        die("seqmap", TERN_ENOMEM);
    memset(w + m->n_words, 0, (n - m->n_words) * sizeof *w);
    m->words = w;
    m->n_words = n;
}

/* Sets bit gid and returns its previous value. gid must be below a seqmap_ensure'd bound. */
static bool seqmap_set(seqmap *m, uint64_t gid)
{
    uint64_t *w = &m->words[gid / 64];
    uint64_t bit = UINT64_C(1) << (gid % 64);
    bool was = (*w & bit) != 0;
    *w |= bit;
    return was;
}

static bool seqmap_get(const seqmap *m, uint64_t gid)
{
    return gid / 64 < m->n_words && (m->words[gid / 64] >> (gid % 64) & 1) != 0;
}

/* ---- output ---------------------------------------------------------------------------- */

static void client_fail(client *c, int why);
static void pump(gen *g);

/* Queues bytes on c (nothing is written until client_flush). */
static void client_queue(client *c, const void *bytes, size_t n)
{
    if (tern_buf_append(&c->out, bytes, n) != 0)
        die("output buffer", TERN_ENOMEM);
}

/* Writes what c has queued; on EAGAIN it watches for WRITE until the queue drains. */
static void client_flush(client *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->io.fd, c->out.data + c->out_off, c->out.len - c->out_off,
            MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!(c->io.interest & TERN_LOOP_WRITE))
                (void)tern_loop_io_start(&c->io, TERN_LOOP_READ | TERN_LOOP_WRITE);
            if (c->out_off > 65536 && c->out_off * 2 > c->out.len) {
                tern_buf_consume(&c->out, c->out_off);
                c->out_off = 0;
            }
            return;
        }
        client_fail(c, n < 0 ? -errno : TERN_EIO);
        return;
    }
    tern_buf_reset(&c->out);
    c->out_off = 0;
    c->last_tx_ms = tern_loop_now_ms(c->g->loop);
    if (c->io.interest & TERN_LOOP_WRITE)
        (void)tern_loop_io_start(&c->io, TERN_LOOP_READ);
}

/* Encodes pkt into the scratch buffer and queues it on c. */
static void client_queue_packet(client *c, const tern_mqtt_packet *pkt)
{
    gen *g = c->g;
    tern_buf_reset(&g->scratch);
    int rc = tern_mqtt_encode(&g->scratch, g->opt.version, pkt);
    if (rc != 0)
        die("encode", rc);
    client_queue(c, g->scratch.data, g->scratch.len);
}

static size_t client_pending_out(const client *c)
{
    return c->out.len - c->out_off;
}

/* ---- connection life cycle ------------------------------------------------------------- */

static const char *role_name(uint8_t r)
{
    switch (r) {
    case ROLE_PUB:
        return "pub";
    case ROLE_SUB:
        return "sub";
    case ROLE_IDLE:
        return "idle";
    default:
        return "storm";
    }
}

static bool in_handshake(uint8_t state)
{
    return state == CS_TCP || state == CS_CONNACK || state == CS_SUBACK;
}

static void client_close_fd(client *c)
{
    if (c->io.fd >= 0) {
        tern_loop_io_stop(&c->io);
        close(c->io.fd);
        c->io.fd = -1;
    }
    tern_buf_free(&c->in);
    tern_buf_free(&c->out);
    c->out_off = 0;
    c->n_inflight = 0;
    if (c->win)
        memset(c->win, 0, c->g->opt.window * sizeof *c->win);
}

static void enqueue(gen *g, client *c)
{
    if (g->q_len == g->q_cap) {
        size_t cap = g->q_cap ? g->q_cap * 2 : 1024;
        client **q = tern_calloc(cap, sizeof *q);
        if (!q)
            die("connect queue", TERN_ENOMEM);
        for (size_t i = 0; i < g->q_len; i++)
            q[i] = g->queue[(g->q_head + i) % g->q_cap];
        tern_free(g->queue);
        g->queue = q;
        g->q_cap = cap;
        g->q_head = 0;
    }
    g->queue[(g->q_head + g->q_len) % g->q_cap] = c;
    g->q_len++;
    c->state = CS_QUEUED;
    pump(g);
}

static void on_retry(tern_loop_timer *t)
{
    client *c = t->data;
    c->g->n.retries++;
    enqueue(c->g, c);
}

/*
 * Ends a handshake that did not succeed: a refusal or a transport error is retried after an
 * exponential backoff with full jitter (random in [0, min(cap, base * 2^attempt)]); a fatal
 * refusal is not.
 */
static void client_backoff(client *c, bool retry)
{
    gen *g = c->g;
    bool was_handshake = in_handshake(c->state);
    client_close_fd(c);
    if (was_handshake)
        g->n_handshakes--;
    if (!retry || g->stopping) {
        c->state = CS_DEAD;
        if (!retry)
            g->n.fatal++;
    } else {
        uint64_t ceil_ms = g->opt.backoff_base_ms;
        for (uint32_t i = 1; i < c->attempts && ceil_ms < g->opt.backoff_cap_ms; i++)
            ceil_ms *= 2;
        if (ceil_ms > g->opt.backoff_cap_ms)
            ceil_ms = g->opt.backoff_cap_ms;
        uint64_t delay_ms = rng_next(g) % (ceil_ms + 1);
        c->state = CS_BACKOFF;
        tern_loop_timer_start(&c->retry, delay_ms, 0);
    }
    pump(g);
}

static void client_fail(client *c, int why)
{
    gen *g = c->g;
    if (c->state == CS_READY) {
        g->n.dropped++;
        g->n.ready--;
        if (g->opt.verbose || g->n.dropped <= 3)
            fprintf(stderr, "mqtt_load: %s %u dropped: %s\n", role_name(c->role), c->idx,
                tern_strerror(why));
        client_close_fd(c);
        c->state = CS_DEAD;
        return;
    }
    if (in_handshake(c->state)) {
        g->n.conn_errors++;
        if (g->opt.verbose)
            fprintf(stderr, "mqtt_load: %s %u connect failed: %s\n", role_name(c->role), c->idx,
                tern_strerror(why));
        client_backoff(c, true);
    }
}

static void client_send_connect(client *c)
{
    gen *g = c->g;
    char id[80];
    snprintf(id, sizeof id, "%s%s%u", g->opt.id_prefix,
        c->role == ROLE_SUB         ? "bench-c"
            : c->role == ROLE_STORM ? "storm"
                                    : "dev",
        c->idx);
    tern_mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_CONNECT;
    pkt.u.connect.version = g->opt.version;
    pkt.u.connect.clean_start = true;
    pkt.u.connect.keep_alive_s = g->opt.keepalive_s;
    pkt.u.connect.client_id.p = (const uint8_t *)id;
    pkt.u.connect.client_id.len = (uint16_t)strlen(id);
    client_queue_packet(c, &pkt);
    c->state = CS_CONNACK;
    client_flush(c);
}

static void client_send_subscribe(client *c)
{
    gen *g = c->g;
    char filter[128];
    uint8_t qos = 0;
    if (c->role == ROLE_SUB) {
        snprintf(
            filter, sizeof filter, "%sfleet/+/telemetry", g->opt.shared ? "$share/bench/" : "");
        qos = g->opt.qos;
    } else {
        snprintf(filter, sizeof filter, "fleet/%sdev%u/cmd/#", g->opt.id_prefix, c->idx);
        qos = 1;
    }
    tern_mqtt_subscription sub;
    memset(&sub, 0, sizeof sub);
    sub.filter.p = (const uint8_t *)filter;
    sub.filter.len = (uint16_t)strlen(filter);
    sub.qos = qos;
    tern_mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_SUBSCRIBE;
    pkt.u.subscribe.packet_id = 1;
    pkt.u.subscribe.subs = &sub;
    pkt.u.subscribe.n_subs = 1;
    client_queue_packet(c, &pkt);
    c->state = CS_SUBACK;
    client_flush(c);
}

static void client_ready(client *c)
{
    gen *g = c->g;
    c->state = CS_READY;
    g->n_handshakes--;
    g->n.ready++;
    if (c->attempts > g->n.max_attempts)
        g->n.max_attempts = c->attempts;
    pump(g);
}

/* ---- inbound packets ------------------------------------------------------------------- */

/* Reads a decimal number at *p (bounded by end); advances *p. Returns false if none. */
static bool parse_u64(const uint8_t **p, const uint8_t *end, uint64_t *out)
{
    const uint8_t *q = *p;
    uint64_t v = 0;
    while (q < end && *q >= '0' && *q <= '9' && q - *p < 20)
        v = v * 10 + (uint64_t)(*q++ - '0');
    if (q == *p)
        return false;
    *p = q;
    *out = v;
    return true;
}

static bool expect(const uint8_t **p, const uint8_t *end, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(end - *p) < n || memcmp(*p, lit, n) != 0)
        return false;
    *p += n;
    return true;
}

/* A message reached a consumer: account for it and acknowledge it. */
static void on_delivery(client *c, const tern_mqtt_publish *pub)
{
    gen *g = c->g;
    uint64_t t = now_ns();
    if (pub->qos > 0) {
        tern_mqtt_packet ack;
        memset(&ack, 0, sizeof ack);
        ack.type = TERN_MQTT_PUBACK;
        ack.u.ack.packet_id = pub->packet_id;
        client_queue_packet(c, &ack);
    }
    const uint8_t *p = pub->payload, *end = pub->payload + pub->payload_len;
    uint64_t gid = 0, ts = 0;
    if (!expect(&p, end, "{\"seq\":") || !parse_u64(&p, end, &gid) || !expect(&p, end, ",\"ts\":")
        || !parse_u64(&p, end, &ts) || gid >= g->next_gid) {
        g->n.bad_payload++;
        return;
    }
    g->n.delivered++;
    g->last_delivery_ns = t;
    if (seqmap_set(&g->delivered_map, gid)) {
        g->n.duplicates++;
        return;
    }
    g->n.delivered_unique++;
    if (t >= g->window_start_ns && t < g->window_end_ns)
        g->n.delivered_in_window++;
    if (ts >= g->window_start_ns && ts < g->window_end_ns && t >= ts)
        tern_histogram_record(g->lat, t - ts);
}

static void on_puback(client *c, const tern_mqtt_ack *ack)
{
    gen *g = c->g;
    for (uint32_t i = 0; c->win && i < g->opt.window; i++) {
        inflight *s = &c->win[i];
        if (s->pid != ack->packet_id)
            continue;
        if (ack->reason >= 0x80) {
            g->n.ack_errors++;
        } else {
            uint64_t lat = now_ns() - s->ts_ns;
            g->n.acked++;
            seqmap_set(&g->acked_map, s->gid);
            tern_histogram_record(g->ack_all, lat);
            if (g->ack_cur)
                tern_histogram_record(g->ack_cur, lat);
            if (g->timeline_start_ns) {
                uint64_t slot = (s->ts_ns - g->timeline_start_ns) / (TIMELINE_MS * 1000000u);
                if (s->ts_ns >= g->timeline_start_ns && slot < TIMELINE_SLOTS
                    && lat > g->timeline_max_ns[slot])
                    g->timeline_max_ns[slot] = lat;
            }
        }
        s->pid = 0;
        c->n_inflight--;
        return;
    }
    g->n.stray_acks++;
}

/* Handles one decoded packet. Returns false if c was closed. */
static bool on_packet(client *c, const tern_mqtt_packet *pkt)
{
    gen *g = c->g;
    switch (pkt->type) {
    case TERN_MQTT_CONNACK: {
        if (c->state != CS_CONNACK)
            break;
        uint8_t rc = pkt->u.connack.reason;
        bool v5 = g->opt.version == TERN_MQTT_V5;
        if (rc == 0) {
            if (c->role == ROLE_SUB || c->role == ROLE_IDLE)
                client_send_subscribe(c);
            else
                client_ready(c);
            return c->state != CS_BACKOFF && c->state != CS_DEAD;
        }
        /* 0x9F connection rate exceeded / 0x89 busy / 0x88 unavailable; 3.1.1: 3 */
        bool busy = v5 ? (rc == TERN_MQTT_RC_CONNECTION_RATE_EXCEEDED
                        || rc == TERN_MQTT_RC_SERVER_BUSY || rc == TERN_MQTT_RC_SERVER_UNAVAILABLE)
                       : rc == 3;
        if (busy) {
            g->n.refused++;
        } else if (g->n.fatal < 3) {
            fprintf(stderr, "mqtt_load: %s %u: CONNACK 0x%02x (%s)\n", role_name(c->role), c->idx,
                rc, v5 ? tern_mqtt_reason_str(rc, TERN_MQTT_CONNACK) : "3.1.1 return code");
        }
        client_backoff(c, busy);
        return false;
    }
    case TERN_MQTT_SUBACK:
        if (c->state != CS_SUBACK)
            break;
        if (pkt->u.suback.n_reasons < 1 || pkt->u.suback.reasons[0] >= 0x80) {
            if (g->n.fatal < 3)
                fprintf(stderr, "mqtt_load: %s %u: SUBACK refused (0x%02x)\n", role_name(c->role),
                    c->idx, pkt->u.suback.n_reasons ? pkt->u.suback.reasons[0] : 0);
            client_backoff(c, false);
            return false;
        }
        client_ready(c);
        break;
    case TERN_MQTT_PUBLISH:
        on_delivery(c, &pkt->u.publish);
        break;
    case TERN_MQTT_PUBACK:
        on_puback(c, &pkt->u.ack);
        break;
    case TERN_MQTT_DISCONNECT:
        if (g->opt.verbose || g->n.dropped < 3)
            fprintf(stderr, "mqtt_load: %s %u: DISCONNECT 0x%02x from the broker\n",
                role_name(c->role), c->idx, pkt->u.disconnect.reason);
        client_fail(c, TERN_ECLOSED);
        return false;
    default: /* PINGRESP and anything else: nothing to do */
        break;
    }
    return true;
}

/* Decodes the whole packets in buf[0..len); returns bytes consumed, or SIZE_MAX if c closed. */
static size_t parse_packets(client *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    while (off < len) {
        size_t plen = 0;
        int rc = tern_mqtt_frame(buf + off, len - off, 0, &plen);
        if (rc == TERN_EPARTIAL)
            break;
        tern_mqtt_packet pkt;
        size_t used = 0;
        tern_mqtt_status st;
        if (rc == 0)
            rc = tern_mqtt_decode(buf + off, plen, c->g->opt.version, &pkt, &used, &st);
        if (rc != 0) {
            fprintf(stderr, "mqtt_load: %s %u: bad packet from the broker: %s\n",
                role_name(c->role), c->idx, tern_strerror(rc));
            client_fail(c, rc);
            return SIZE_MAX;
        }
        off += plen;
        if (!on_packet(c, &pkt))
            return SIZE_MAX;
    }
    return off;
}

static void client_on_readable(client *c)
{
    static uint8_t chunk[1 << 16];
    for (int round = 0; round < 4; round++) {
        ssize_t n = recv(c->io.fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        if (n <= 0) {
            client_fail(c, n == 0 ? TERN_ECLOSED : -errno);
            return;
        }
        size_t used;
        if (c->in.len == 0) {
            used = parse_packets(c, chunk, (size_t)n);
            if (used == SIZE_MAX)
                return;
            if (used < (size_t)n && tern_buf_append(&c->in, chunk + used, (size_t)n - used) != 0)
                die("input buffer", TERN_ENOMEM);
        } else {
            if (tern_buf_append(&c->in, chunk, (size_t)n) != 0)
                die("input buffer", TERN_ENOMEM);
            used = parse_packets(c, c->in.data, c->in.len);
            if (used == SIZE_MAX)
                return;
            tern_buf_consume(&c->in, used);
        }
        if ((size_t)n < sizeof chunk)
            break;
    }
    if (client_pending_out(c) > 0)
        client_flush(c);
}

static void client_on_io(tern_loop_io *io, unsigned events)
{
    client *c = io->data;
    if (c->state == CS_TCP) {
        int rc = tern_net_connect_result(io->fd);
        if (rc != 0) {
            client_fail(c, rc);
            return;
        }
        (void)tern_net_set_nodelay(io->fd, true);
        (void)tern_loop_io_start(io, TERN_LOOP_READ);
        client_send_connect(c);
        return;
    }
    if (events & TERN_LOOP_WRITE) {
        client_flush(c);
        if (c->io.fd < 0)
            return;
    }
    if (events & TERN_LOOP_READ)
        client_on_readable(c);
}

/* Opens the TCP connection of a queued client. */
static void client_start(client *c)
{
    gen *g = c->g;
    c->attempts++;
    int fd = socket(g->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int err = -errno;
        fprintf(stderr, "mqtt_load: socket: %s (raise ulimit -n?)\n", tern_strerror(err));
        g->n_handshakes++;
        c->state = CS_TCP;
        g->n.conn_errors++;
        client_backoff(c, false);
        return;
    }
    g->n_handshakes++;
    c->state = CS_TCP;
    tern_loop_io_init(g->loop, &c->io, fd, client_on_io, c);
    if (connect(fd, (const struct sockaddr *)&g->addr, g->addr_len) != 0 && errno != EINPROGRESS) {
        int err = -errno;
        c->io.fd = fd; /* closed by client_fail */
        client_fail(c, err);
        return;
    }
    int rc = tern_loop_io_start(&c->io, TERN_LOOP_WRITE);
    if (rc != 0)
        die("watch socket", rc);
}

static void pump_cb(tern_loop_task *task)
{
    gen *g = task->data;
    uint32_t started = 0;
    uint32_t window = g->opt.connect_window;
    while (g->q_len > 0 && (window == 0 || g->n_handshakes < window) && started < 256) {
        client *c = g->queue[g->q_head];
        g->q_head = (g->q_head + 1) % g->q_cap;
        g->q_len--;
        if (c->state != CS_QUEUED)
            continue;
        client_start(c);
        started++;
    }
    if (g->q_len > 0 && (window == 0 || g->n_handshakes < window))
        tern_loop_defer(g->loop, &g->pump_task, pump_cb, g);
}

/* Starts queued connections from a deferred task (so callbacks never recurse into it). */
static void pump(gen *g)
{
    if (g->q_len > 0)
        tern_loop_defer(g->loop, &g->pump_task, pump_cb, g);
}

/* ---- publishing ------------------------------------------------------------------------ */

static uint16_t take_pid(client *c)
{
    for (;;) {
        c->next_pid = (uint16_t)(c->next_pid == 65535 ? 1 : c->next_pid + 1);
        bool used = false;
        for (uint32_t i = 0; i < c->g->opt.window; i++)
            used |= c->win[i].pid == c->next_pid;
        if (!used)
            return c->next_pid;
    }
}

/* Sends one message from publisher c. */
static void publish_one(client *c)
{
    gen *g = c->g;
    uint64_t gid = g->next_gid++;
    seqmap_ensure(&g->acked_map, gid);
    seqmap_ensure(&g->delivered_map, gid);
    uint64_t ts = now_ns();

    char payload[4096];
    int head = snprintf(payload, sizeof payload,
        "{\"seq\":%" PRIu64 ",\"ts\":%" PRIu64 ",\"dev\":\"dev%u\",\"m\":{"
        "\"soc\":71.5,\"speed_kmh\":42.1,\"odo_km\":123456.7,\"pack_v\":398.2,"
        "\"pack_t\":31.4,\"motor_t\":55.0,\"lat\":48.85661,\"lon\":2.35222},"
        "\"pad\":\"",
        gid, ts, c->idx);
    size_t len = (size_t)head;
    size_t want = g->opt.payload_bytes < sizeof payload ? g->opt.payload_bytes : sizeof payload;
    if (want < len + 3)
        want = len + 3;
    memcpy(payload + len, g->filler, want - len - 2);
    len = want - 2;
    payload[len++] = '"';
    payload[len++] = '}';

    char topic[96];
    snprintf(topic, sizeof topic, "fleet/%sdev%u/telemetry", g->opt.id_prefix, c->idx);
    tern_mqtt_packet pkt;
    memset(&pkt, 0, sizeof pkt);
    pkt.type = TERN_MQTT_PUBLISH;
    tern_mqtt_publish *pub = &pkt.u.publish;
    pub->qos = c->win ? 1 : 0;
    pub->topic.p = (const uint8_t *)topic;
    pub->topic.len = (uint16_t)strlen(topic);
    pub->payload = (const uint8_t *)payload;
    pub->payload_len = len;
    if (c->win) {
        pub->packet_id = take_pid(c);
        for (uint32_t i = 0; i < g->opt.window; i++) {
            if (c->win[i].pid == 0) {
                c->win[i] = (inflight) { gid, ts, pub->packet_id };
                break;
            }
        }
        c->n_inflight++;
    }
    g->n.sent++;
    client_queue_packet(c, &pkt);
    client_flush(c);
}

static bool can_publish(const client *c)
{
    if (c->state != CS_READY)
        return false;
    if (c->win)
        return c->n_inflight < c->g->opt.window;
    return client_pending_out(c) < (256u << 10); /* QoS 0: stop at 256 KiB unsent */
}

/* The pacer: every millisecond, sends what the offered rate owes, round robin. */
static void on_pace(tern_loop_timer *t)
{
    gen *g = t->data;
    uint64_t elapsed = now_ns() - g->pace_start_ns;
    uint64_t due = (uint64_t)((double)elapsed * g->pace_rate / 1e9);
    while (g->n.offered < due) {
        g->n.offered++;
        client *c = NULL;
        for (uint32_t k = 0; k < g->n_pubs; k++) {
            client *cand = &g->pubs[(g->rr + k) % g->n_pubs];
            if (can_publish(cand)) {
                c = cand;
                g->rr = (g->rr + k + 1) % g->n_pubs;
                break;
            }
        }
        if (!c) {
            /* nobody has room: the rest of this tick's share is blocked too */
            g->n.blocked += due - g->n.offered + 1;
            g->n.offered = due;
            break;
        }
        publish_one(c);
    }
}

static void pacer_start(gen *g, double rate)
{
    g->pace_rate = rate;
    g->pace_start_ns = now_ns();
    g->n.offered = 0;
    tern_loop_timer_start(&g->pacer, 1, 1);
}

/* Keepalive: a PINGREQ for every ready client that has sent nothing for keepalive/2. */
static void on_housekeeping(tern_loop_timer *t)
{
    gen *g = t->data;
    uint64_t now = tern_loop_now_ms(g->loop);
    uint64_t idle_ms = (uint64_t)g->opt.keepalive_s * 500;
    client *sets[3] = { g->pubs, g->subs, g->conns };
    uint32_t counts[3] = { g->n_pubs, g->n_subs, g->n_conns };
    if (idle_ms == 0)
        return;
    for (int s = 0; s < 3; s++) {
        for (uint32_t i = 0; i < counts[s]; i++) {
            client *c = &sets[s][i];
            if (c->state != CS_READY || now - c->last_tx_ms < idle_ms)
                continue;
            tern_mqtt_packet pkt;
            memset(&pkt, 0, sizeof pkt);
            pkt.type = TERN_MQTT_PINGREQ;
            client_queue_packet(c, &pkt);
            client_flush(c);
            g->n.pings++;
        }
    }
}

/* ---- phases ---------------------------------------------------------------------------- */

static client *clients_new(gen *g, uint32_t n, uint8_t r, bool with_window)
{
    client *cs = tern_calloc(n ? n : 1, sizeof *cs);
    if (!cs)
        die("clients", TERN_ENOMEM);
    for (uint32_t i = 0; i < n; i++) {
        client *c = &cs[i];
        c->g = g;
        c->idx = i;
        c->role = r;
        c->state = CS_NEW;
        c->io.fd = -1;
        tern_buf_init(&c->in);
        tern_buf_init(&c->out);
        tern_loop_timer_init(g->loop, &c->retry, on_retry, c);
        if (with_window) {
            c->win = tern_calloc(g->opt.window, sizeof *c->win);
            if (!c->win)
                die("window", TERN_ENOMEM);
        }
    }
    return cs;
}

static void clients_free(client *cs, uint32_t n)
{
    for (uint32_t i = 0; cs && i < n; i++) {
        tern_loop_timer_stop(&cs[i].retry);
        client_close_fd(&cs[i]);
        tern_free(cs[i].win);
    }
    tern_free(cs);
}

static uint32_t count_ready(const client *cs, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        k += cs[i].state == CS_READY;
    return k;
}

static uint32_t count_dead(const client *cs, uint32_t n)
{
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++)
        k += cs[i].state == CS_DEAD;
    return k;
}

typedef bool (*until_fn)(gen *g);

/* Runs the loop until pred(g) holds (if given) or deadline_ns passes. Returns pred's value. */
static bool run_until(gen *g, until_fn pred, uint64_t deadline_ns)
{
    for (;;) {
        if (pred && pred(g))
            return true;
        uint64_t t = now_ns();
        if (t >= deadline_ns || interrupted)
            return false;
        uint64_t left_ms = (deadline_ns - t) / 1000000 + 1;
        int rc = tern_loop_run_once(g->loop, left_ms < 10 ? (int)left_ms : 10);
        if (rc < 0)
            die("loop", rc);
    }
}

static void run_for(gen *g, double s)
{
    run_until(g, NULL, now_ns() + (uint64_t)(s * 1e9));
}

static bool subs_settled(gen *g)
{
    return count_ready(g->subs, g->n_subs) + count_dead(g->subs, g->n_subs) == g->n_subs;
}

static bool pubs_settled(gen *g)
{
    return count_ready(g->pubs, g->n_pubs) + count_dead(g->pubs, g->n_pubs) == g->n_pubs;
}

static bool conns_settled(gen *g)
{
    return count_ready(g->conns, g->n_conns) + count_dead(g->conns, g->n_conns) == g->n_conns;
}

static void connect_all(gen *g, client *cs, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        enqueue(g, &cs[i]);
}

static uint64_t deadline_in(double s)
{
    return now_ns() + (uint64_t)(s * 1e9);
}

static bool inflight_empty(gen *g)
{
    for (uint32_t i = 0; i < g->n_pubs; i++)
        if (g->pubs[i].n_inflight > 0 && g->pubs[i].state == CS_READY)
            return false;
    return true;
}

/* Drained: no PUBACK outstanding, every acked (QoS 1) or sent (QoS 0) message delivered, or
   no delivery for a second. */
static bool drained(gen *g)
{
    if (!inflight_empty(g))
        return false;
    uint64_t expected = g->opt.qos ? g->n.acked : g->n.sent;
    if (g->n_subs == 0 || g->n.delivered_unique >= expected)
        return true;
    return now_ns() - g->last_delivery_ns > 1000000000u;
}

static double us(uint64_t ns)
{
    return (double)ns / 1e3;
}

static void print_hist(const char *name, const tern_histogram *h)
{
    printf(",\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f,\"%s_p999_us\":%.1f,\"%s_max_us\":%.1f,"
           "\"%s_n\":%" PRIu64,
        name, us(tern_histogram_percentile(h, 0.50)), name, us(tern_histogram_percentile(h, 0.99)),
        name, us(tern_histogram_percentile(h, 0.999)), name, us(tern_histogram_max(h)), name,
        tern_histogram_count(h));
}

/* Prints the generator's and the broker's CPU between two marks; sep is "," or "" (first). */
static void print_cpu(const char *sep, const cpu_mark *a, const cpu_mark *b, uint64_t msgs)
{
    double wall = secs(b->t_ns - a->t_ns);
    double gen_cpu = b->self_s - a->self_s;
    printf("%s\"gen_cpu_s\":%.3f,\"gen_cpu_pct\":%.1f", sep, gen_cpu,
        wall > 0 ? 100 * gen_cpu / wall : 0);
    if (a->broker_s >= 0 && b->broker_s >= 0) {
        double cpu = b->broker_s - a->broker_s;
        printf(
            ",\"broker_cpu_s\":%.3f,\"broker_cpu_pct\":%.1f", cpu, wall > 0 ? 100 * cpu / wall : 0);
        if (msgs > 0)
            printf(",\"msgs_per_cpu_s\":%.0f", cpu > 0 ? (double)msgs / cpu : 0);
    }
}

static void print_conn_counters(const gen *g)
{
    printf(",\"refused\":%" PRIu64 ",\"conn_errors\":%" PRIu64 ",\"retries\":%" PRIu64
           ",\"max_attempts\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"fatal\":%" PRIu64,
        g->n.refused, g->n.conn_errors, g->n.retries, g->n.max_attempts, g->n.dropped, g->n.fatal);
}

static int run_fanin(gen *g)
{
    options *o = &g->opt;
    g->subs = clients_new(g, o->consumers, ROLE_SUB, false);
    g->n_subs = o->consumers;
    g->pubs = clients_new(g, o->publishers, ROLE_PUB, o->qos > 0);
    g->n_pubs = o->publishers;

    connect_all(g, g->subs, g->n_subs);
    run_until(g, subs_settled, deadline_in(o->setup_timeout_s));
    connect_all(g, g->pubs, g->n_pubs);
    run_until(g, pubs_settled, deadline_in(o->setup_timeout_s));
    uint32_t subs_up = count_ready(g->subs, g->n_subs);
    uint32_t pubs_up = count_ready(g->pubs, g->n_pubs);
    if (subs_up == 0 || pubs_up == 0) {
        fprintf(stderr, "mqtt_load: setup failed: %u/%u consumers, %u/%u publishers ready\n",
            subs_up, g->n_subs, pubs_up, g->n_pubs);
        return 1;
    }
    if (o->verbose)
        fprintf(stderr, "mqtt_load: %u consumers, %u publishers ready\n", subs_up, pubs_up);
    run_for(g, 0.3);

    uint64_t t0 = now_ns();
    g->window_start_ns = t0 + (uint64_t)(o->warmup_s * 1e9);
    g->window_end_ns = g->window_start_ns + (uint64_t)(o->duration_s * 1e9);
    pacer_start(g, o->rate);
    run_until(g, NULL, g->window_start_ns);
    counters at_start = g->n;
    cpu_mark c0 = cpu_now(g);
    run_until(g, NULL, g->window_end_ns);
    cpu_mark c1 = cpu_now(g);
    counters at_end = g->n;
    tern_loop_timer_stop(&g->pacer);
    run_until(g, drained, deadline_in(o->drain_s));

    uint64_t lost = 0, acked_undelivered = 0;
    for (uint64_t gid = 0; gid < g->next_gid; gid++) {
        bool delivered = seqmap_get(&g->delivered_map, gid);
        if (!delivered) {
            lost++;
            if (seqmap_get(&g->acked_map, gid))
                acked_undelivered++;
        }
    }
    double window_s = secs(c1.t_ns - c0.t_ns);
    uint64_t sent_in_window = at_end.sent - at_start.sent;
    printf("{\"tool\":\"mqtt_load\",\"mode\":\"%s\",\"mqtt\":%u,\"qos\":%u,\"publishers\":%u,"
           "\"consumers\":%u,\"shared\":%s,\"window\":%u,\"payload_bytes\":%u,\"rate\":%.0f,"
           "\"duration_s\":%.2f",
        o->mode_name, o->version == TERN_MQTT_V5 ? 5 : 3, o->qos, pubs_up, subs_up,
        o->shared ? "true" : "false", o->qos ? o->window : 0, o->payload_bytes, o->rate, window_s);
    printf(",\"offered\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"blocked\":%" PRIu64
           ",\"acked\":%" PRIu64 ",\"ack_errors\":%" PRIu64 ",\"delivered\":%" PRIu64
           ",\"duplicates\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"undelivered\":%" PRIu64
           ",\"bad_payload\":%" PRIu64,
        g->n.offered, g->n.sent, g->n.blocked, g->n.acked, g->n.ack_errors, g->n.delivered_unique,
        g->n.duplicates, o->qos ? acked_undelivered : lost, lost, g->n.bad_payload);
    printf(",\"sent_per_s\":%.0f,\"delivered_per_s\":%.0f",
        window_s > 0 ? (double)sent_in_window / window_s : 0,
        window_s > 0
            ? (double)(at_end.delivered_in_window - at_start.delivered_in_window) / window_s
            : 0);
    print_hist("lat", g->lat);
    if (o->qos)
        print_hist("ack", g->ack_all);
    print_cpu(",", &c0, &c1, at_end.delivered_in_window - at_start.delivered_in_window);
    print_conn_counters(g);
    printf("}\n");
    return 0;
}

static int run_idle(gen *g)
{
    options *o = &g->opt;
    long rss0 = proc_rss_kb(o->rss_pid);
    cpu_mark c0 = cpu_now(g);
    g->conns = clients_new(g, o->connections, ROLE_IDLE, false);
    g->n_conns = o->connections;
    uint64_t t0 = now_ns();
    connect_all(g, g->conns, g->n_conns);
    run_until(g, conns_settled, deadline_in(o->setup_timeout_s));
    uint64_t t1 = now_ns();
    cpu_mark c1 = cpu_now(g);
    uint32_t up = count_ready(g->conns, g->n_conns);
    if (o->verbose)
        fprintf(stderr, "mqtt_load: %u/%u idle connections up in %.2f s\n", up, g->n_conns,
            secs(t1 - t0));
    run_for(g, o->settle_s);
    long rss1 = proc_rss_kb(o->rss_pid);
    double rest = o->hold_s - o->settle_s;
    if (rest > 0)
        run_for(g, rest);
    uint32_t held = count_ready(g->conns, g->n_conns);
    long rss2 = proc_rss_kb(o->rss_pid);
    printf("{\"tool\":\"mqtt_load\",\"mode\":\"idle\",\"mqtt\":%u,\"connections\":%u,"
           "\"subscribed\":%u,\"held\":%u,\"connect_s\":%.3f,\"connects_per_s\":%.0f",
        o->version == TERN_MQTT_V5 ? 5 : 3, o->connections, up, held, secs(t1 - t0),
        secs(t1 - t0) > 0 ? (double)up / secs(t1 - t0) : 0);
    if (rss0 >= 0 && rss1 >= 0) {
        printf(",\"rss_before_kb\":%ld,\"rss_after_kb\":%ld,\"rss_end_kb\":%ld", rss0, rss1, rss2);
        if (up > 0)
            printf(",\"bytes_per_conn\":%.0f", (double)(rss1 - rss0) * 1024.0 / (double)up);
    }
    print_cpu(",", &c0, &c1, 0);
    print_conn_counters(g);
    printf("}\n");
    return 0;
}

/*
 * The storm's clients run in a child process with its own loop, so the publishers' latency
 * measures the broker, not this process's single thread opening thousands of sockets (the two
 * processes still share the machine with the broker). The child waits for one byte on go_fd,
 * connects every client, writes a storm_report on report_fd, and holds the connections until
 * go_fd reaches EOF.
 */
typedef struct storm_report {
    uint64_t t_done_ns; /* CLOCK_MONOTONIC is system-wide: comparable with the parent's */
    uint64_t connected, refused, conn_errors, retries, max_attempts, dropped, fatal;
    double cpu_s; /* the child's CPU from the go byte to t_done_ns */
    uint8_t all;
} storm_report;

static void on_go_eof(tern_loop_io *io, unsigned events)
{
    gen *g = io->data;
    (void)events;
    g->stopping = true;
    tern_loop_io_stop(io);
}

static bool stopping(gen *g)
{
    return g->stopping;
}

static _Noreturn void storm_child(gen *g, int go_fd, int report_fd)
{
    options *o = &g->opt;
    /* a fresh loop: the parent's epoll instance must not be touched from here */
    tern_loop_free(g->loop);
    int rc = tern_loop_new(&g->loop);
    if (rc != 0)
        die("storm loop", rc);
    tern_loop_timer_init(g->loop, &g->housekeeping, on_housekeeping, g);
    tern_loop_timer_start(&g->housekeeping, 1000, 1000);
    g->rng ^= (uint64_t)getpid() * UINT64_C(0x9E3779B97F4A7C15);
    if (o->storm_addr) {
        rc = tern_net_resolve(o->storm_addr, &g->addr, &g->addr_len);
        if (rc != 0)
            die(o->storm_addr, rc);
    }
    char go;
    if (read(go_fd, &go, 1) != 1)
        _exit(0); /* the parent gave up */
    double cpu0 = self_cpu_s();
    g->conns = clients_new(g, o->connections, ROLE_STORM, false);
    g->n_conns = o->connections;
    connect_all(g, g->conns, g->n_conns);
    bool all = run_until(g, conns_settled, deadline_in(o->storm_timeout_s));
    storm_report r;
    memset(&r, 0, sizeof r);
    r.t_done_ns = now_ns();
    r.cpu_s = self_cpu_s() - cpu0;
    r.all = all;
    r.connected = count_ready(g->conns, g->n_conns);
    r.refused = g->n.refused;
    r.conn_errors = g->n.conn_errors;
    r.retries = g->n.retries;
    r.max_attempts = g->n.max_attempts;
    r.dropped = g->n.dropped;
    r.fatal = g->n.fatal;
    if (write(report_fd, &r, sizeof r) != (ssize_t)sizeof r)
        _exit(1);
    tern_loop_io go_io;
    tern_loop_io_init(g->loop, &go_io, go_fd, on_go_eof, g);
    if (tern_loop_io_start(&go_io, TERN_LOOP_READ) == 0)
        run_until(g, stopping, deadline_in(3600));
    _exit(0);
}

typedef struct report_reader {
    tern_loop_io io;
    storm_report r;
    size_t got;
    bool done;
} report_reader;

static void on_report(tern_loop_io *io, unsigned events)
{
    report_reader *rr = io->data;
    (void)events;
    ssize_t n = read(io->fd, (char *)&rr->r + rr->got, sizeof rr->r - rr->got);
    if (n > 0)
        rr->got += (size_t)n;
    if (n <= 0 || rr->got == sizeof rr->r) {
        rr->done = rr->got == sizeof rr->r;
        tern_loop_io_stop(io);
        if (n <= 0)
            rr->got = SIZE_MAX; /* the child died */
    }
}

static report_reader *g_report; /* the parent's reader, for the predicate below */

static bool report_in(gen *g)
{
    (void)g;
    return g_report->done || g_report->got == SIZE_MAX;
}

static int run_storm(gen *g)
{
    options *o = &g->opt;
    int go[2], rep[2];
    if (pipe2(go, O_CLOEXEC) != 0 || pipe2(rep, O_CLOEXEC) != 0)
        die("pipe", -errno);
    fflush(stdout);
    fflush(stderr);
    pid_t child = fork();
    if (child < 0)
        die("fork", -errno);
    if (child == 0) {
        close(go[1]);
        close(rep[0]);
        storm_child(g, go[0], rep[1]);
    }
    close(go[0]);
    close(rep[1]);

    int status = 1;
    tern_histogram *before = tern_malloc(sizeof *before);
    tern_histogram *during = tern_malloc(sizeof *during);
    tern_histogram *after = tern_malloc(sizeof *after);
    tern_histogram *hangup = tern_malloc(sizeof *hangup);
    report_reader *rr = tern_calloc(1, sizeof *rr);
    if (!before || !during || !after || !hangup || !rr)
        die("histogram", TERN_ENOMEM);
    tern_histogram_init(before);
    tern_histogram_init(during);
    tern_histogram_init(after);
    tern_histogram_init(hangup);
    g_report = rr;

    g->pubs = clients_new(g, o->publishers, ROLE_PUB, true);
    g->n_pubs = o->publishers;
    connect_all(g, g->pubs, g->n_pubs);
    run_until(g, pubs_settled, deadline_in(o->setup_timeout_s));
    uint32_t pubs_up = count_ready(g->pubs, g->n_pubs);
    if (pubs_up == 0) {
        fprintf(stderr, "mqtt_load: storm: no publisher connected\n");
        goto out;
    }
    counters setup = g->n;
    memset(&g->n, 0, sizeof g->n);
    g->n.ready = setup.ready;

    pacer_start(g, o->rate * (double)pubs_up);
    run_for(g, o->warmup_s);
    g->ack_cur = before;
    cpu_mark cb0 = cpu_now(g);
    run_for(g, o->calm_s);
    cpu_mark cb1 = cpu_now(g);
    uint64_t acked_calm = g->n.acked;

    /* the storm: every client at once, from the child */
    tern_loop_io_init(g->loop, &rr->io, rep[0], on_report, rr);
    if (tern_loop_io_start(&rr->io, TERN_LOOP_READ) != 0)
        die("watch report pipe", TERN_EIO);
    g->ack_cur = during;
    uint64_t t0 = now_ns();
    g->timeline_start_ns = t0 - (uint64_t)TIMELINE_MS * 1000000u; /* one slot of calm first */
    cpu_mark cs0 = cpu_now(g);
    if (write(go[1], "g", 1) != 1)
        die("go pipe", -errno);
    run_until(g, report_in, deadline_in(o->storm_timeout_s + 10));
    if (!rr->done) {
        fprintf(stderr, "mqtt_load: storm: no report from the storm process\n");
        goto out;
    }
    uint64_t t1 = rr->r.t_done_ns > t0 ? rr->r.t_done_ns : now_ns();
    cpu_mark cs1 = cpu_now(g);
    uint64_t acked_storm = g->n.acked - acked_calm;
    /* "during" lasts at least storm_window_s, so a storm the broker absorbs in a few ms is
       judged on as many samples as a slow one */
    run_until(g, NULL, t0 + (uint64_t)(o->storm_window_s * 1e9));
    uint64_t t2 = now_ns();
    g->ack_cur = after;
    run_for(g, o->calm_s < 2 ? o->calm_s : 2);
    /* the hang-up: the storm's clients all drop at once (the child exits and the kernel closes
       its connections), as when a gateway in front of many devices restarts */
    g->ack_cur = hangup;
    close(go[1]);
    go[1] = -1;
    uint64_t t3 = now_ns();
    cpu_mark ch0 = cpu_now(g);
    run_for(g, 2);
    cpu_mark ch1 = cpu_now(g);
    tern_loop_timer_stop(&g->pacer);
    g->ack_cur = NULL;
    run_until(g, inflight_empty, deadline_in(o->drain_s));

    const storm_report *r = &rr->r;
    printf("{\"tool\":\"mqtt_load\",\"mode\":\"storm\",\"mqtt\":%u,\"publishers\":%u,"
           "\"pub_rate\":%.0f,\"connections\":%u,\"connected\":%" PRIu64 ",\"all_connected\":%s,"
           "\"storm_s\":%.3f,\"during_s\":%.3f,\"connects_per_s\":%.0f",
        o->version == TERN_MQTT_V5 ? 5 : 3, pubs_up, o->rate, o->connections, r->connected,
        r->all ? "true" : "false", secs(t1 - t0), secs(t2 - t0),
        secs(t1 - t0) > 0 ? (double)r->connected / secs(t1 - t0) : 0);
    printf(",\"pub_sent\":%" PRIu64 ",\"pub_acked\":%" PRIu64 ",\"pub_blocked\":%" PRIu64
           ",\"pub_dropped\":%" PRIu64 ",\"acked_per_s_calm\":%.0f,\"acked_per_s_storm\":%.0f",
        g->n.sent, g->n.acked, g->n.blocked, g->n.dropped,
        (double)acked_calm / (o->calm_s + o->warmup_s),
        secs(t1 - t0) > 0 ? (double)acked_storm / secs(t1 - t0) : 0);
    print_hist("before", before);
    print_hist("during", during);
    print_hist("after", after);
    print_hist("hangup", hangup);
    printf(",\"hangup_s\":%.3f", secs(now_ns() - t3));
    uint64_t slots = (now_ns() - g->timeline_start_ns) / (TIMELINE_MS * 1000000u);
    printf(",\"max_us_per_%ums\":[", TIMELINE_MS);
    for (uint64_t i = 0; i < slots && i < TIMELINE_SLOTS; i++)
        printf("%s%.0f", i ? "," : "", us(g->timeline_max_ns[i]));
    printf("]");
    printf(",\"calm\":{");
    print_cpu("", &cb0, &cb1, 0);
    printf("},\"storm\":{");
    print_cpu("", &cs0, &cs1, 0);
    printf(",\"storm_clients_cpu_s\":%.3f}", r->cpu_s);
    printf(",\"hangup\":{");
    print_cpu("", &ch0, &ch1, 0);
    printf("}");
    printf(",\"refused\":%" PRIu64 ",\"conn_errors\":%" PRIu64 ",\"retries\":%" PRIu64
           ",\"max_attempts\":%" PRIu64 ",\"dropped\":%" PRIu64 ",\"fatal\":%" PRIu64 "}\n",
        r->refused, r->conn_errors, r->retries, r->max_attempts, r->dropped, r->fatal);
    status = 0;
out:
    if (rr->io.fd == rep[0])
        tern_loop_io_stop(&rr->io);
    if (go[1] >= 0)
        close(go[1]); /* the child drops its connections and exits */
    close(rep[0]);
    int wstatus;
    while (waitpid(child, &wstatus, 0) < 0 && errno == EINTR) { }
    g_report = NULL;
    tern_free(rr);
    tern_free(before);
    tern_free(during);
    tern_free(after);
    tern_free(hangup);
    return status;
}

/* ---- main ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: mqtt_load --mode fanin|qos1-overload|idle|storm [--addr HOST:PORT] [options]\n"
        "  --publishers P   --consumers C   --rate MSGS_PER_S   --qos 0|1   --window W\n"
        "  --no-shared      --payload BYTES --duration S --warmup S --drain S\n"
        "  --connections N  --hold S --settle S            (idle)\n"
        "  --connections N  --calm S --storm-timeout S --storm-window S --storm-addr HOST:PORT\n"
        "                   (storm; --rate is per publisher)\n"
        "  --connect-window N (0: unlimited)  --backoff-base-ms MS --backoff-cap-ms MS\n"
        "  --mqtt 3|5  --keepalive S  --cpu-pid PID  --rss-pid PID  --seed N  --id-prefix S\n"
        "  --setup-timeout S  --verbose\n"
        "Prints one JSON line of results on stdout. See bench/README.md.\n");
}

static void defaults(options *o, mode m)
{
    memset(o, 0, sizeof *o);
    o->mode = m;
    o->addr = "127.0.0.1:1883";
    o->version = TERN_MQTT_V5;
    o->publishers = 1000;
    o->consumers = 2;
    o->rate = 10000;
    o->qos = 0;
    o->window = 10;
    o->shared = true;
    o->payload_bytes = 200;
    o->duration_s = 10;
    o->warmup_s = 1;
    o->drain_s = 5;
    o->connections = 10000;
    o->hold_s = 5;
    o->settle_s = 2;
    o->calm_s = 5;
    o->storm_timeout_s = 60;
    o->storm_window_s = 2;
    o->setup_timeout_s = 60;
    o->connect_window = 32;
    o->backoff_base_ms = 100;
    o->backoff_cap_ms = 5000;
    o->keepalive_s = 60;
    o->id_prefix = "";
    o->seed = 0;
    switch (m) {
    case MODE_FANIN:
        o->mode_name = "fanin";
        break;
    case MODE_QOS1_OVERLOAD:
        o->mode_name = "qos1-overload";
        o->qos = 1;
        o->publishers = 100;
        o->consumers = 1;
        o->shared = false;
        o->rate = 20000;
        break;
    case MODE_IDLE:
        o->mode_name = "idle";
        break;
    case MODE_STORM:
        o->mode_name = "storm";
        o->publishers = 100;
        o->rate = 100;
        o->qos = 1;
        o->connect_window = 0;
        break;
    }
}

static double arg_double(const char *name, const char *s, double lo, double hi)
{
    char *end = NULL;
    double v = strtod(s, &end);
    if (!end || *end || v < lo || v > hi) {
        fprintf(stderr, "mqtt_load: bad value for %s: '%s'\n", name, s);
        exit(2);
    }
    return v;
}

static uint32_t arg_u32(const char *name, const char *s, uint32_t lo, uint32_t hi)
{
    return (uint32_t)arg_double(name, s, lo, hi);
}

static int parse_mode(const char *s, mode *out)
{
    if (strcmp(s, "fanin") == 0)
        *out = MODE_FANIN;
    else if (strcmp(s, "qos1-overload") == 0)
        *out = MODE_QOS1_OVERLOAD;
    else if (strcmp(s, "idle") == 0)
        *out = MODE_IDLE;
    else if (strcmp(s, "storm") == 0)
        *out = MODE_STORM;
    else
        return TERN_EINVAL;
    return 0;
}

static void parse_args(options *o, int argc, char **argv)
{
    /* the mode decides the defaults, so find it first */
    mode m = MODE_FANIN;
    bool have_mode = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        if (strcmp(argv[i], "--mode") == 0 && i + 1 < argc)
            v = argv[i + 1];
        else if (strncmp(argv[i], "--mode=", 7) == 0)
            v = argv[i] + 7;
        if (v) {
            if (parse_mode(v, &m) != 0) {
                fprintf(stderr, "mqtt_load: unknown mode '%s'\n", v);
                exit(2);
            }
            have_mode = true;
        }
    }
    if (!have_mode) {
        usage(stderr);
        exit(2);
    }
    defaults(o, m);
    enum {
        O_MODE = 256,
        O_ADDR,
        O_PUBS,
        O_SUBS,
        O_RATE,
        O_QOS,
        O_WINDOW,
        O_NOSHARED,
        O_SHARED,
        O_PAYLOAD,
        O_DURATION,
        O_WARMUP,
        O_DRAIN,
        O_CONNS,
        O_HOLD,
        O_SETTLE,
        O_CALM,
        O_STORMT,
        O_SETUPT,
        O_STORMW,
        O_STORMA,
        O_CWIN,
        O_BBASE,
        O_BCAP,
        O_MQTT,
        O_KEEPALIVE,
        O_CPUPID,
        O_RSSPID,
        O_SEED,
        O_PREFIX,
        O_VERBOSE,
        O_HELP
    };
    static const struct option longopts[] = {
        { "mode", required_argument, NULL, O_MODE },
        { "addr", required_argument, NULL, O_ADDR },
        { "publishers", required_argument, NULL, O_PUBS },
        { "consumers", required_argument, NULL, O_SUBS },
        { "rate", required_argument, NULL, O_RATE },
        { "qos", required_argument, NULL, O_QOS },
        { "window", required_argument, NULL, O_WINDOW },
        { "no-shared", no_argument, NULL, O_NOSHARED },
        { "shared", no_argument, NULL, O_SHARED },
        { "payload", required_argument, NULL, O_PAYLOAD },
        { "duration", required_argument, NULL, O_DURATION },
        { "warmup", required_argument, NULL, O_WARMUP },
        { "drain", required_argument, NULL, O_DRAIN },
        { "connections", required_argument, NULL, O_CONNS },
        { "hold", required_argument, NULL, O_HOLD },
        { "settle", required_argument, NULL, O_SETTLE },
        { "calm", required_argument, NULL, O_CALM },
        { "storm-timeout", required_argument, NULL, O_STORMT },
        { "setup-timeout", required_argument, NULL, O_SETUPT },
        { "storm-window", required_argument, NULL, O_STORMW },
        { "storm-addr", required_argument, NULL, O_STORMA },
        { "connect-window", required_argument, NULL, O_CWIN },
        { "backoff-base-ms", required_argument, NULL, O_BBASE },
        { "backoff-cap-ms", required_argument, NULL, O_BCAP },
        { "mqtt", required_argument, NULL, O_MQTT },
        { "keepalive", required_argument, NULL, O_KEEPALIVE },
        { "cpu-pid", required_argument, NULL, O_CPUPID },
        { "rss-pid", required_argument, NULL, O_RSSPID },
        { "seed", required_argument, NULL, O_SEED },
        { "id-prefix", required_argument, NULL, O_PREFIX },
        { "verbose", no_argument, NULL, O_VERBOSE },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_MODE:
            break;
        case O_ADDR:
            o->addr = optarg;
            break;
        case O_PUBS:
            o->publishers = arg_u32("--publishers", optarg, 1, 1000000);
            break;
        case O_SUBS:
            o->consumers = arg_u32("--consumers", optarg, 1, 10000);
            break;
        case O_RATE:
            o->rate = arg_double("--rate", optarg, 0, 1e8);
            break;
        case O_QOS:
            o->qos = (uint8_t)arg_u32("--qos", optarg, 0, 1);
            break;
        case O_WINDOW:
            o->window = arg_u32("--window", optarg, 1, 65535);
            break;
        case O_NOSHARED:
            o->shared = false;
            break;
        case O_SHARED:
            o->shared = true;
            break;
        case O_PAYLOAD:
            o->payload_bytes = arg_u32("--payload", optarg, 0, 4000);
            break;
        case O_DURATION:
            o->duration_s = arg_double("--duration", optarg, 0.1, 86400);
            break;
        case O_WARMUP:
            o->warmup_s = arg_double("--warmup", optarg, 0, 3600);
            break;
        case O_DRAIN:
            o->drain_s = arg_double("--drain", optarg, 0, 3600);
            break;
        case O_CONNS:
            o->connections = arg_u32("--connections", optarg, 1, 1000000);
            break;
        case O_HOLD:
            o->hold_s = arg_double("--hold", optarg, 0, 86400);
            break;
        case O_SETTLE:
            o->settle_s = arg_double("--settle", optarg, 0, 3600);
            break;
        case O_CALM:
            o->calm_s = arg_double("--calm", optarg, 0.1, 3600);
            break;
        case O_STORMT:
            o->storm_timeout_s = arg_double("--storm-timeout", optarg, 0.1, 86400);
            break;
        case O_STORMA:
            o->storm_addr = optarg;
            break;
        case O_STORMW:
            o->storm_window_s = arg_double("--storm-window", optarg, 0, 3600);
            break;
        case O_SETUPT:
            o->setup_timeout_s = arg_double("--setup-timeout", optarg, 0.1, 86400);
            break;
        case O_CWIN:
            o->connect_window = arg_u32("--connect-window", optarg, 0, 10000000);
            break;
        case O_BBASE:
            o->backoff_base_ms = arg_u32("--backoff-base-ms", optarg, 1, 3600000);
            break;
        case O_BCAP:
            o->backoff_cap_ms = arg_u32("--backoff-cap-ms", optarg, 1, 3600000);
            break;
        case O_MQTT: {
            uint32_t v = arg_u32("--mqtt", optarg, 3, 5);
            if (v == 4)
                v = 3;
            o->version = v == 5 ? TERN_MQTT_V5 : TERN_MQTT_V311;
            break;
        }
        case O_KEEPALIVE:
            o->keepalive_s = (uint16_t)arg_u32("--keepalive", optarg, 0, 65535);
            break;
        case O_CPUPID:
            o->cpu_pid = (int)arg_u32("--cpu-pid", optarg, 1, 1u << 30);
            break;
        case O_RSSPID:
            o->rss_pid = (int)arg_u32("--rss-pid", optarg, 1, 1u << 30);
            break;
        case O_SEED:
            o->seed = (uint64_t)arg_double("--seed", optarg, 0, 1e18);
            break;
        case O_PREFIX:
            o->id_prefix = optarg;
            break;
        case O_VERBOSE:
            o->verbose = true;
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc) {
        fprintf(stderr, "mqtt_load: unexpected argument '%s'\n", argv[optind]);
        exit(2);
    }
    if (o->mode == MODE_STORM)
        o->qos = 1;
    if (!o->shared && o->consumers > 1
        && (o->mode == MODE_FANIN || o->mode == MODE_QOS1_OVERLOAD)) {
        fprintf(stderr,
            "mqtt_load: --no-shared needs --consumers 1 (each would get every "
            "message)\n");
        exit(2);
    }
    if (o->rss_pid == 0)
        o->rss_pid = o->cpu_pid;
}

/* Raises the soft descriptor limit to the hard one; returns the limit in force. */
static rlim_t raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
        (void)getrlimit(RLIMIT_NOFILE, &rl);
    }
    return rl.rlim_cur;
}

int main(int argc, char **argv)
{
    static gen g;
    parse_args(&g.opt, argc, argv);
    options *o = &g.opt;
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_sigint);
    signal(SIGTERM, on_sigint);

    rlim_t nofile = raise_nofile();
    uint64_t need = (uint64_t)o->connections * (o->mode == MODE_IDLE || o->mode == MODE_STORM)
        + o->publishers * (o->mode != MODE_IDLE) + o->consumers + 64;
    if (nofile != RLIM_INFINITY && need > nofile) {
        fprintf(stderr, "mqtt_load: needs %" PRIu64 " descriptors, the limit is %lu\n", need,
            (unsigned long)nofile);
        return 2;
    }
    int rc = tern_net_resolve(o->addr, &g.addr, &g.addr_len);
    if (rc != 0)
        die(o->addr, rc);
    rc = tern_loop_new(&g.loop);
    if (rc != 0)
        die("loop", rc);
    g.rng = o->seed ? o->seed : now_ns() ^ ((uint64_t)getpid() << 32);
    if (g.rng == 0)
        g.rng = 1;
    tern_buf_init(&g.scratch);
    g.filler = tern_malloc(4096);
    g.lat = tern_malloc(sizeof *g.lat);
    g.ack_all = tern_malloc(sizeof *g.ack_all);
    if (!g.filler || !g.lat || !g.ack_all)
        die("setup", TERN_ENOMEM);
    for (size_t i = 0; i < 4096; i++)
        g.filler[i] = (char)('a' + i % 26);
    tern_histogram_init(g.lat);
    tern_histogram_init(g.ack_all);
    g.window_end_ns = UINT64_MAX;
    tern_loop_timer_init(g.loop, &g.pacer, on_pace, &g);
    tern_loop_timer_init(g.loop, &g.housekeeping, on_housekeeping, &g);
    tern_loop_timer_start(&g.housekeeping, 1000, 1000);

    int status;
    switch (o->mode) {
    case MODE_IDLE:
        status = run_idle(&g);
        break;
    case MODE_STORM:
        status = run_storm(&g);
        break;
    default:
        status = run_fanin(&g);
        break;
    }
    fflush(stdout);

    g.stopping = true;
    tern_loop_timer_stop(&g.pacer);
    tern_loop_timer_stop(&g.housekeeping);
    tern_loop_cancel(&g.pump_task);
    clients_free(g.pubs, g.n_pubs);
    clients_free(g.subs, g.n_subs);
    clients_free(g.conns, g.n_conns);
    tern_loop_free(g.loop);
    tern_free(g.queue);
    tern_free(g.acked_map.words);
    tern_free(g.delivered_map.words);
    tern_free(g.lat);
    tern_free(g.ack_all);
    tern_free(g.filler);
    tern_buf_free(&g.scratch);
    return interrupted ? 130 : status;
}

/*
 * sim_probe.c: the end-to-end latency probe (docs/sim.md, "End-to-end latency"): how long a
 * published sample takes to become queryable through tern's HTTP API.
 *
 * One thread per simulator process. Whenever it is free it opens a mailbox; the device loop,
 * which checks the mailbox with one relaxed atomic load per publish, hands it the next sample
 * published for the first time (device, stamp, monotonic publish time taken when the PUBLISH was
 * written). The probe then polls GET /api/v1/last?device=D&metric=M on its own blocking
 * keep-alive HTTP/1.1 connection every TERN_SIM_PROBE_POLL_MS until metric M of D (round robin
 * over the profile's metrics) has a point with ts >= the stamp, and records now - publish time
 * in its histogram; past the timeout it counts a timeout instead. The answers are untrusted:
 * framed by tern_sim_http_frame, parsed by tern_sim_parse_last_ts, both bounded.
 * Promises: the device loop never blocks on the probe beyond one uncontended mutex when it hands
 * over a sample; the probe holds one connection; the latency is an upper bound of the true
 * publish -> queryable time by at most one poll period plus one request's round trip.
 */
#include "sim/sim_int.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "loop/net.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define PROBE_MAX_HEAD (16u << 10)
#define PROBE_MAX_BODY (1u << 20)
#define PROBE_IO_TIMEOUT_S 1
#define PROBE_ERROR_PAUSE_MS 50 /* after a failed request: do not hammer a server that is down */

enum { STOP_NONE = 0, STOP_NO_NEW = 1, STOP_ABORT = 2 };

struct tern_sim_probe {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    atomic_int open; /* the mailbox takes a sample */
    atomic_int stop; /* STOP_* */
    /* the mailbox, under mu */
    bool posted;
    uint32_t dev;
    int64_t stamp_ms;
    uint64_t pub_ns;

    /* the probe thread's own */
    char hostport[256];
    struct sockaddr_storage addr;
    socklen_t addr_len;
    const char *prefix;
    const tern_profile *profile;
    size_t n_metrics;
    uint64_t timeout_ns;
    int fd;
    tern_buf in, req, body;
    uint64_t next_metric;
    uint64_t samples, timeouts, errors;
    int first_err;
    tern_histogram lat;
};

bool tern_sim_probe_wants(tern_sim_probe *p)
{
    return p && atomic_load_explicit(&p->open, memory_order_relaxed) != 0;
}

void tern_sim_probe_offer(tern_sim_probe *p, uint32_t dev, int64_t stamp_ms, uint64_t pub_ns)
{
    pthread_mutex_lock(&p->mu);
    if (atomic_load_explicit(&p->open, memory_order_relaxed) && !p->posted) {
        p->dev = dev;
        p->stamp_ms = stamp_ms;
        p->pub_ns = pub_ns;
        p->posted = true;
        atomic_store_explicit(&p->open, 0, memory_order_relaxed);
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->mu);
}

/* ---- HTTP -------------------------------------------------------------------------------- */

static void probe_close(tern_sim_probe *p)
{
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
    tern_buf_reset(&p->in);
}

static int probe_connect(tern_sim_probe *p)
{
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = { PROBE_IO_TIMEOUT_S, 0 };
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (const struct sockaddr *)&p->addr, p->addr_len) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    p->fd = fd;
    tern_buf_reset(&p->in);
    return 0;
}

/* Sends p->req on the open connection and reads one whole response into p->body. *stale is set
 * when the peer closed the connection before answering (an idle keep-alive connection it timed
 * out): worth one retry on a new one. Returns 0 or an error (the connection is then closed). */
static int probe_exchange(tern_sim_probe *p, int *status, bool *stale)
{
    *stale = false;
    for (size_t off = 0; off < p->req.len;) {
        ssize_t n = send(p->fd, p->req.data + off, p->req.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *stale = n < 0 && (errno == EPIPE || errno == ECONNRESET);
            return n < 0 ? -errno : TERN_EIO;
        }
        off += (size_t)n;
    }
    for (;;) {
        int code = 0;
        size_t head = 0, body = 0;
        bool keep = false;
        int rc = tern_sim_http_frame((const char *)p->in.data, p->in.len, PROBE_MAX_HEAD,
            PROBE_MAX_BODY, &code, &head, &body, &keep);
        if (rc == 0 && p->in.len >= head + body) {
            tern_buf_reset(&p->body);
            rc = tern_buf_append(&p->body, p->in.data + head, body);
            if (rc != 0)
                return rc;
            tern_buf_consume(&p->in, head + body);
            if (!keep)
                probe_close(p);
            *status = code;
            return 0;
        }
        if (rc != 0 && rc != TERN_EPARTIAL)
            return rc;
        uint8_t chunk[8192];
        ssize_t n = recv(p->fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            *stale = p->in.len == 0 && (n == 0 || errno == ECONNRESET);
            return n < 0 ? -errno : TERN_ECLOSED;
        }
        rc = tern_buf_append(&p->in, chunk, (size_t)n);
        if (rc != 0)
            return rc;
    }
}

/* GETs p->req's request; on 0 *status is the status and p->body the body. */
static int probe_get(tern_sim_probe *p, int *status)
{
    for (int attempt = 0;; attempt++) {
        bool fresh = p->fd < 0;
        if (fresh) {
            int rc = probe_connect(p);
            if (rc != 0)
                return rc;
        }
        bool stale = false;
        int rc = probe_exchange(p, status, &stale);
        if (rc == 0)
            return 0;
        probe_close(p);
        if (!(stale && !fresh && attempt == 0))
            return rc;
    }
}

/* Appends s to out with every byte but RFC 3986's unreserved ones percent-encoded. */
static int append_query_value(tern_buf *out, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    int rc = 0;
    for (const unsigned char *c = (const unsigned char *)s; *c && rc == 0; c++) {
        bool plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')
            || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_' || *c == '.' || *c == '~';
        if (plain) {
            rc = tern_buf_append_u8(out, *c);
        } else {
            char e[3] = { '%', hex[*c >> 4], hex[*c & 15] };
            rc = tern_buf_append(out, e, 3);
        }
    }
    return rc;
}

/* ---- the probe --------------------------------------------------------------------------- */

static void sleep_until_ns(uint64_t t_ns)
{
    uint64_t now = tern_clock_mono_ns();
    if (t_ns <= now)
        return;
    uint64_t d = t_ns - now;
    struct timespec ts = { (time_t)(d / 1000000000u), (long)(d % 1000000000u) };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void note_error(tern_sim_probe *p, int rc)
{
    p->errors++;
    if (p->first_err == 0) {
        p->first_err = rc;
        fprintf(stderr,
            "tern-sim: e2e probe: a query to %s failed: %s (later failures are not logged)\n",
            p->hostport, tern_strerror(rc));
    }
}

/* Polls for one sample until it is queryable, the timeout passes or an abort. */
static void probe_measure(tern_sim_probe *p, uint32_t dev, int64_t stamp_ms, uint64_t pub_ns)
{
    const char *metric = tern_profile_metric_name(p->profile, p->next_metric++ % p->n_metrics);
    char id[72];
    snprintf(id, sizeof id, "%s%06u", p->prefix, dev);
    tern_buf_reset(&p->req);
    int rc = tern_buf_append_str(&p->req, "GET /api/v1/last?device=");
    if (rc == 0)
        rc = append_query_value(&p->req, id);
    if (rc == 0)
        rc = tern_buf_append_str(&p->req, "&metric=");
    if (rc == 0)
        rc = append_query_value(&p->req, metric);
    if (rc == 0)
        rc = tern_buf_printf(&p->req, " HTTP/1.1\r\nHost: %s\r\n\r\n", p->hostport);
    if (rc != 0) {
        note_error(p, rc);
        return;
    }
    uint64_t deadline = pub_ns + p->timeout_ns;
    for (;;) {
        if (atomic_load(&p->stop) == STOP_ABORT)
            return;
        uint64_t sent_ns = tern_clock_mono_ns();
        int status = 0;
        rc = probe_get(p, &status);
        uint64_t pause_ns = (uint64_t)TERN_SIM_PROBE_POLL_MS * 1000000u;
        if (rc == 0 && status == 200) {
            int64_t ts = 0;
            int prc = tern_sim_parse_last_ts((const char *)p->body.data, p->body.len, metric, &ts);
            if (prc == 0 && ts >= stamp_ms) {
                tern_histogram_record(&p->lat, tern_clock_mono_ns() - pub_ns);
                p->samples++;
                return;
            }
            if (prc != 0 && prc != TERN_ENOTFOUND)
                note_error(p, prc);
        } else if (rc == 0 && status != 404) {
            /* 404: the device is not stored yet */
            note_error(p, TERN_EPROTO);
        } else if (rc != 0) {
            note_error(p, rc);
            pause_ns = (uint64_t)PROBE_ERROR_PAUSE_MS * 1000000u;
        }
        if (tern_clock_mono_ns() >= deadline) {
            p->timeouts++;
            return;
        }
        uint64_t next = sent_ns + pause_ns;
        sleep_until_ns(next < deadline ? next : deadline);
    }
}

static void *probe_main(void *arg)
{
    tern_sim_probe *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        p->posted = false;
        if (atomic_load(&p->stop) == STOP_NONE)
            atomic_store_explicit(&p->open, 1, memory_order_relaxed);
        while (!p->posted && atomic_load(&p->stop) == STOP_NONE)
            pthread_cond_wait(&p->cond, &p->mu);
        atomic_store_explicit(&p->open, 0, memory_order_relaxed);
        bool got = p->posted;
        uint32_t dev = p->dev;
        int64_t stamp = p->stamp_ms;
        uint64_t pub_ns = p->pub_ns;
        pthread_mutex_unlock(&p->mu);
        if (!got)
            break;
        probe_measure(p, dev, stamp, pub_ns);
    }
    probe_close(p);
    return NULL;
}

static void probe_free(tern_sim_probe *p)
{
    tern_buf_free(&p->in);
    tern_buf_free(&p->req);
    tern_buf_free(&p->body);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->mu);
    tern_free(p);
}

int tern_sim_probe_start(const char *api, const char *client_prefix, const tern_profile *profile,
    uint64_t timeout_ms, tern_sim_probe **out)
{
    if (!api || strlen(api) >= sizeof((tern_sim_probe *)0)->hostport)
        return TERN_EINVAL;
    tern_sim_probe *p = tern_calloc(1, sizeof *p);
    if (!p)
        return TERN_ENOMEM;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    atomic_init(&p->open, 0);
    atomic_init(&p->stop, STOP_NONE);
    tern_buf_init(&p->in);
    tern_buf_init(&p->req);
    tern_buf_init(&p->body);
    tern_histogram_init(&p->lat);
    p->fd = -1;
    snprintf(p->hostport, sizeof p->hostport, "%s", api);
    p->prefix = client_prefix;
    p->profile = profile;
    p->n_metrics = tern_profile_metric_count(profile);
    p->timeout_ns = timeout_ms * 1000000u;
    int rc = p->n_metrics > 0 ? tern_net_resolve(api, &p->addr, &p->addr_len) : TERN_EINVAL;
    if (rc != 0) {
        probe_free(p);
        return rc;
    }
    /* the thread takes no signal: the runner's loop reads them (a signalfd) */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rc = -pthread_create(&p->thread, NULL, probe_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        probe_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

void tern_sim_probe_stop(tern_sim_probe *p, bool abort)
{
    pthread_mutex_lock(&p->mu);
    if (abort || atomic_load(&p->stop) == STOP_NONE)
        atomic_store(&p->stop, abort ? STOP_ABORT : STOP_NO_NEW);
    atomic_store_explicit(&p->open, 0, memory_order_relaxed);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->mu);
}

void tern_sim_probe_finish(
    tern_sim_probe *p, tern_histogram *lat, uint64_t *samples, uint64_t *timeouts)
{
    tern_sim_probe_stop(p, false);
    pthread_join(p->thread, NULL);
    if (lat)
        tern_histogram_merge(lat, &p->lat);
    if (samples)
        *samples = p->samples;
    if (timeouts)
        *timeouts = p->timeouts;
    probe_free(p);
}

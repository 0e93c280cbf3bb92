/*
 * sim_verify.c: what happens after a run: the ack log (JSON lines, docs/sim.md) and the
 * verifier, which asks the query API (docs/tsdb.md) how many points of each device and metric
 * are stored and judges them against what the broker acknowledged. The HTTP client here is a
 * minimal blocking HTTP/1.1 GET (Connection: close, Content-Length or chunked bodies), enough for
 * tern's own API; the answer is untrusted and parsed with bounds (tern_sim_parse_counts).
 */
#include "sim/sim_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"
#include "loop/net.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define HTTP_MAX_BODY (64u << 20)

void tern_sim_acct_free(tern_sim_dev_acct *a)
{
    tern_sim_seqset_free(&a->sent);
    tern_sim_seqset_free(&a->acked);
    tern_sim_seqset_free(&a->duplicated);
    tern_sim_seqset_free(&a->lost);
}

/* ---- ack log ----------------------------------------------------------------------------- */

typedef struct range_ctx {
    FILE *f;
    const tern_sim_schedule *sched;
    uint32_t dev;
    bool first;
} range_ctx;

static void write_range(uint64_t lo, uint64_t hi, void *arg)
{
    range_ctx *c = arg;
    fprintf(c->f, "%s[%" PRIu64 ",%" PRIu64 ",%" PRId64 ",%" PRId64 "]", c->first ? "" : ",", lo,
        hi, tern_sim_schedule_stamp(c->sched, c->dev, lo),
        tern_sim_schedule_stamp(c->sched, c->dev, hi));
    c->first = false;
}

static void write_set(FILE *f, const char *key, const tern_sim_seqset *set,
    const tern_sim_schedule *sched, uint32_t dev)
{
    range_ctx c = { f, sched, dev, true };
    fprintf(f, ",\"%s\":[", key);
    tern_sim_seqset_ranges(set, write_range, &c);
    fputc(']', f);
}

int tern_sim_ack_log_write(const char *path, const tern_sim_run_info *info)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -errno;
    const tern_profile *p = info->profile;
    fprintf(f,
        "{\"tern_sim_ack_log\":1,\"profile\":\"%s\",\"qos\":%u,\"start_ms\":%" PRId64
        ",\"interval_ms\":%u,\"devices\":%u,\"clock_drift\":%.17g,\"rush_x\":%u"
        ",\"rush_every_ms\":%" PRIu64 ",\"rush_for_ms\":%" PRIu64 ",\"metrics\":[",
        tern_profile_name(p), info->qos, info->sched->start_ms, info->sched->interval_ms,
        info->sched->n_devices, info->sched->drift_max,
        tern_sim_schedule_rush(info->sched) ? info->sched->rush_x : 1, info->sched->rush_every_ms,
        info->sched->rush_for_ms);
    for (size_t i = 0; i < tern_profile_metric_count(p); i++)
        fprintf(f, "%s\"%s\"", i ? "," : "", tern_profile_metric_name(p, i));
    fputs("]}\n", f);
    for (uint32_t d = info->dev_first; d - info->dev_first < info->n_local; d++) {
        const tern_sim_dev_acct *a = &info->acct[d - info->dev_first];
        /* sent but never acknowledged: may or may not be stored */
        tern_sim_seqset unacked = { 0 };
        for (uint64_t q = 1; q <= a->sent.max; q++)
            if (tern_sim_seqset_has(&a->sent, q) && !tern_sim_seqset_has(&a->acked, q))
                (void)tern_sim_seqset_add(&unacked, q, NULL);
        fprintf(f,
            "{\"device\":\"%s%06u\",\"acked\":%" PRIu64 ",\"sent\":%" PRIu64
            ",\"drift_ms_per_hour\":%.17g",
            info->client_prefix, d, a->acked.count, a->sent.count,
            tern_sim_drift_rate(info->sched, d));
        write_set(f, "acked_ranges", &a->acked, info->sched, d);
        write_set(f, "unacked_ranges", &unacked, info->sched, d);
        write_set(f, "duplicated_ranges", &a->duplicated, info->sched, d);
        write_set(f, "lost_ranges", &a->lost, info->sched, d);
        fputs("}\n", f);
        tern_sim_seqset_free(&unacked);
    }
    int rc = ferror(f) ? TERN_EIO : 0;
    if (fclose(f) != 0 && rc == 0)
        rc = -errno;
    return rc;
}

/* ---- HTTP GET ---------------------------------------------------------------------------- */

/* De-chunks body[0..len) in place. Returns the new length, or -1 if malformed. */
static long dechunk(char *body, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *e;
        if (in >= len)
            return -1;
        unsigned long n = strtoul(body + in, &e, 16);
        char *crlf = strstr(body + in, "\r\n");
        if (!crlf || e == body + in)
            return -1;
        in = (size_t)(crlf - body) + 2;
        if (n == 0)
            return (long)out;
        if (n > len - in)
            return -1;
        memmove(body + out, body + in, n);
        out += n;
        in += n + 2;
    }
}

/* GETs path from hostport; on 0 *status is the HTTP status and body holds the body (NUL-ended). */
static int http_get(const char *hostport, const char *path, int *status, tern_buf *body)
{
    struct sockaddr_storage addr;
    socklen_t alen;
    int rc = tern_net_resolve(hostport, &addr, &alen);
    if (rc != 0)
        return rc;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = { 10, 0 };
    (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    tern_buf req = TERN_BUF_INIT;
    tern_buf_reset(body);
    if (connect(fd, (const struct sockaddr *)&addr, alen) != 0) {
        rc = -errno;
        goto fail;
    }
    rc = tern_buf_printf(
        &req, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, hostport);
    if (rc != 0)
        goto fail;
    for (size_t off = 0; off < req.len;) {
        ssize_t n = send(fd, req.data + off, req.len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : TERN_EIO;
            goto fail;
        }
        off += (size_t)n;
    }
    for (;;) {
        char chunk[16384];
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = -errno;
            goto fail;
        }
        if (n == 0)
            break;
        if (body->len + (size_t)n > HTTP_MAX_BODY) {
            rc = TERN_ETOOBIG;
            goto fail;
        }
        rc = tern_buf_append(body, chunk, (size_t)n);
        if (rc != 0)
            goto fail;
    }
    rc = tern_buf_append_u8(body, 0);
    if (rc != 0)
        goto fail;
    body->len--;
    char *text = (char *)body->data;
    char *hdr_end = strstr(text, "\r\n\r\n");
    int code = 0;
    if (!hdr_end || sscanf(text, "HTTP/1.%*d %d", &code) != 1) {
        rc = TERN_EPROTO;
        goto fail;
    }
    *hdr_end = '\0';
    bool chunked = false;
    for (char *line = strstr(text, "\r\n"); line; line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, "transfer-encoding:", 18) == 0 && strstr(line + 2, "chunked"))
            chunked = true;
    }
    size_t hdr_len = (size_t)(hdr_end - text) + 4;
    tern_buf_consume(body, hdr_len);
    if (chunked) {
        long n = dechunk((char *)body->data, body->len);
        if (n < 0) {
            rc = TERN_EPROTO;
            goto fail;
        }
        body->len = (size_t)n;
    }
    rc = tern_buf_append_u8(body, 0);
    if (rc != 0)
        goto fail;
    body->len--;
    *status = code;
fail:
    tern_buf_free(&req);
    close(fd);
    return rc;
}

/* ---- verification ------------------------------------------------------------------------ */

/* Checks one device; adds to *v. Returns 0 or the error of the query. */
static int verify_device(const tern_sim_options *o, const tern_sim_run_info *info, uint32_t dev,
    tern_sim_verdict *v, tern_buf *body)
{
    const tern_sim_dev_acct *a = &info->acct[dev - info->dev_first];
    if (a->sent.count == 0)
        return 0;
    size_t n = tern_profile_metric_count(info->profile);
    const char *names[TERN_PROFILE_MAX_METRICS];
    uint64_t counts[TERN_PROFILE_MAX_METRICS] = { 0 };
    for (size_t i = 0; i < n; i++)
        names[i] = tern_profile_metric_name(info->profile, i);
    int64_t start = tern_sim_schedule_stamp(info->sched, dev, 1);
    int64_t end = tern_sim_schedule_stamp(info->sched, dev, a->sent.max) + 1;
    char path[512];
    snprintf(path, sizeof path,
        "/api/v1/query?device=%s%06u&metric=*&start=%" PRId64 "&end=%" PRId64
        "&agg=count&tier=hot&format=series",
        info->client_prefix, dev, start, end);
    int status = 0;
    int rc = http_get(o->api, path, &status, body);
    if (rc != 0)
        return rc;
    if (status == 404) {
        /* an unknown device: nothing stored */
    } else if (status != 200) {
        return TERN_EPROTO;
    } else {
        rc = tern_sim_parse_counts((const char *)body->data, body->len, names, n, counts);
        if (rc != 0)
            return rc;
    }
    uint64_t unacked = a->sent.count - tern_sim_seqset_count_between(&a->acked, 1, a->sent.max);
    tern_sim_judge(counts, n, a->acked.count, unacked, v);
    return 0;
}

void tern_sim_verify(
    const tern_sim_options *o, const tern_sim_run_info *info, tern_sim_summary *sum)
{
    tern_buf body = TERN_BUF_INIT;
    uint64_t deadline = tern_clock_mono_ms() + o->verify_timeout_ms;
    for (;;) {
        tern_sim_verdict v = { 0 };
        uint64_t errors = 0;
        int first_err = 0;
        for (uint32_t d = info->dev_first; d - info->dev_first < info->n_local; d++) {
            int rc = verify_device(o, info, d, &v, &body);
            if (rc != 0) {
                errors++;
                if (first_err == 0)
                    first_err = rc;
            }
        }
        sum->verdict = v;
        sum->verify_errors = errors;
        sum->verified = true;
        sum->verify_ok = errors == 0 && v.lost_points == 0 && v.duplicated_points == 0;
        if (errors > 0 && first_err != 0)
            fprintf(stderr, "tern-sim: verify: %" PRIu64 " device queries failed (first: %s)\n",
                errors, tern_strerror(first_err));
        /* duplicates never heal; missing points may still be on their way through the pipeline */
        if (sum->verify_ok || v.duplicated_points > 0 || tern_clock_mono_ms() >= deadline)
            break;
        struct timespec ts = { 0, 500000000 };
        nanosleep(&ts, NULL);
    }
    tern_buf_free(&body);
}

int tern_sim_verdict_json(tern_buf *out, const tern_sim_summary *s)
{
    const tern_sim_verdict *v = &s->verdict;
    size_t before = out->len;
    int rc = tern_buf_printf(out,
        "{\"verify\":\"%s\",\"sent\":%" PRIu64 ",\"acked\":%" PRIu64 ",\"acked_points\":%" PRIu64
        ",\"stored\":%" PRIu64 ",\"lost\":%" PRIu64 ",\"duplicated\":%" PRIu64
        ",\"uncertain\":%" PRIu64 ",\"query_errors\":%" PRIu64 ",",
        s->verify_ok ? "ok" : "failed", s->published, s->acked, v->acked_points, v->stored_points,
        v->lost_points, v->duplicated_points, v->uncertain_points, s->verify_errors);
    if (rc == 0)
        rc = tern_sim_e2e_json(out, s);
    if (rc == 0)
        rc = tern_buf_append_u8(out, '}');
    if (rc != 0)
        out->len = before;
    return rc;
}

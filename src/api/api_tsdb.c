/*
 * api_tsdb.c: the store's HTTP routes (see api_tsdb.h).
 */
#include "api/api_tsdb.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/metrics.h"
#include "tsdb/lp_ingest.h"
#include "tsdb/query_json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_ROWS 1000000u

struct tern_api_tsdb {
    tern_loop *loop;
    tern_tsdb *db;
    char *device_tag;
    tern_tsdb_batch *batch;
    tern_metrics_counter *points, *bad_lines, *refused, *writes;
};

/* A write waiting for its WAL fsync. */
typedef struct pending_write {
    tern_api_tsdb *api;
    tern_http_req *req;
    int status;
    int rc;
    char *body; /* the answer when not 204 */
    bool v2;
} pending_write;

static void write_answer(tern_loop *loop, void *arg)
{
    (void)loop;
    pending_write *pw = arg;
    if (pw->rc != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "the write could not be made durable: %s", tern_strerror(pw->rc));
        tern_http_respond_error(pw->req, 500, msg);
    } else if (pw->status == 204) {
        tern_http_respond(pw->req, 204, NULL, NULL, 0);
    } else {
        tern_http_respond_json(pw->req, pw->status, pw->body);
    }
    tern_free(pw->body);
    tern_free(pw);
}

/* Runs on the WAL's sync thread: hand the answer to the loop. */
static void write_durable(void *arg, int rc)
{
    pending_write *pw = arg;
    pw->rc = rc;
    if (tern_loop_post(pw->api->loop, write_answer, pw) != 0) {
        /* the loop is gone: nobody can be answered; the request died with its server */
        tern_free(pw->body);
        tern_free(pw);
    }
}

static char *error_json(bool v2, const char *msg)
{
    tern_buf b = TERN_BUF_INIT;
    if (v2)
        tern_buf_append_str(&b, "{\"code\":\"invalid\",\"message\":");
    else
        tern_buf_append_str(&b, "{\"error\":");
    tern_buf_append_u8(&b, '"');
    tern_http_json_escape(&b, msg, strlen(msg));
    tern_buf_append_str(&b, "\"}");
    tern_buf_append_u8(&b, 0);
    return (char *)tern_buf_steal(&b, NULL);
}

static void respond_invalid(tern_http_req *req, bool v2, int status, const char *msg)
{
    char *j = error_json(v2, msg);
    if (j)
        tern_http_respond_json(req, status, j);
    else
        tern_http_respond_error(req, 500, "out of memory");
    tern_free(j);
}

static void handle_write(tern_http_req *req, tern_api_tsdb *api, bool v2)
{
    const char *target = tern_http_req_param(req, v2 ? "bucket" : "db");
    if (!target || !*target) {
        respond_invalid(req, v2, 400, v2 ? "bucket is required" : "database is required");
        return;
    }
    const char *prec_s = tern_http_req_param(req, "precision");
    tern_lp_precision prec = TERN_LP_NS;
    if (prec_s && *prec_s
        && (v2 ? tern_lp_parse_precision_v2(prec_s, &prec) : tern_lp_parse_precision(prec_s, &prec))
            != 0) {
        char msg[160];
        snprintf(msg, sizeof msg, "invalid precision '%.40s'", prec_s);
        respond_invalid(req, v2, 400, msg);
        return;
    }
    size_t len;
    const uint8_t *body = tern_http_req_body(req, &len);
    tern_lp_ingest_opts o = { api->device_tag, prec, tern_clock_now_ms() };
    tern_lp_ingest_result res;
    uint64_t seq = 0;
    int rc = tern_lp_ingest(api->db, api->batch, (const char *)body, len, &o, &res, &seq);
    if (rc != 0) {
        char msg[200];
        snprintf(msg, sizeof msg, "the store refused the write: %s", tern_strerror(rc));
        tern_http_respond_error(req, rc == TERN_ECLOSED ? 503 : 500, msg);
        return;
    }
    tern_metrics_counter_inc(api->writes);
    tern_metrics_counter_add(api->points, res.write.accepted);
    tern_metrics_counter_add(api->bad_lines, res.bad_lines);
    tern_metrics_counter_add(api->refused, res.write.refused);
    pending_write *pw = tern_calloc(1, sizeof(*pw));
    if (!pw) {
        tern_http_respond_error(req, 500, "out of memory");
        return;
    }
    pw->api = api;
    pw->req = req;
    pw->v2 = v2;
    pw->status = 204;
    size_t dropped = res.bad_lines + res.write.refused;
    if (dropped) {
        char msg[900];
        const char *why = res.first_error ? res.first_error_text : res.write.err;
        snprintf(msg, sizeof msg, "partial write: %s dropped=%zu", why, dropped);
        pw->status = 400;
        pw->body = error_json(v2, msg);
        if (!pw->body) {
            tern_free(pw);
            tern_http_respond_error(req, 500, "out of memory");
            return;
        }
    }
    /* answer once durable, even a partial write: its good lines are stored */
    if (tern_tsdb_notify(api->db, seq, write_durable, pw) != 0) {
        tern_free(pw->body);
        tern_free(pw);
        tern_http_respond_error(req, 500, "the write could not be made durable");
    }
}

static void on_write_v1(tern_http_req *req, void *arg)
{
    handle_write(req, arg, false);
}

static void on_write_v2(tern_http_req *req, void *arg)
{
    handle_write(req, arg, true);
}

static void on_ping(tern_http_req *req, void *arg)
{
    (void)arg;
    tern_http_req_add_header(req, "X-Influxdb-Version", "1.8-tern");
    tern_http_respond(req, 204, NULL, NULL, 0);
}

static void on_health(tern_http_req *req, void *arg)
{
    (void)arg;
    tern_http_respond_json(req, 200, "{\"name\":\"tern\",\"status\":\"pass\"}");
}

static void on_metrics(tern_http_req *req, void *arg)
{
    (void)arg;
    tern_buf b = TERN_BUF_INIT;
    if (tern_metrics_render(NULL, &b) != 0) {
        tern_http_respond_error(req, 500, "out of memory");
    } else {
        tern_http_respond(req, 200, "text/plain; version=0.0.4", b.data, b.len);
    }
    tern_buf_free(&b);
}

typedef struct rows_ctx {
    tern_buf out;
    unsigned aggs;
    bool series; /* format=series */
    tern_tsdb_json_rows w;
} rows_ctx;

static int add_row(void *arg, const tern_tsdb_row *row)
{
    rows_ctx *c = arg;
    if (c->series)
        return tern_tsdb_series_json_add(&c->w, c->aggs, row);
    return tern_tsdb_rows_json_add(&c->w, c->aggs, row);
}

static const char *tier_name(tern_tsdb_tier t)
{
    return t == TERN_TIER_WARM ? "warm" : t == TERN_TIER_AUTO ? "warm+hot" : "hot";
}

static void respond_rows(
    tern_http_req *req, rows_ctx *c, int rc, const char *err, tern_tsdb_tier tier)
{
    if (rc == 0 && c->series)
        rc = tern_tsdb_series_json_finish(&c->w);
    if (rc == 0) {
        tern_buf_printf(&c->out, "],\"count\":%llu,\"tier\":\"%s\"}", (unsigned long long)c->w.rows,
            tier_name(tier));
        tern_http_respond(req, 200, "application/json", c->out.data, c->out.len);
    } else if (rc == TERN_EINVAL || rc == TERN_ETOOBIG) {
        tern_http_respond_error(req, 400, err);
    } else if (rc == TERN_ENOTFOUND) {
        tern_http_respond_error(req, 404, err);
    } else {
        tern_http_respond_error(req, 500, err[0] ? err : tern_strerror(rc));
    }
    tern_buf_free(&c->out);
    tern_tsdb_rows_json_free(&c->w);
}

static void on_query(tern_http_req *req, void *arg)
{
    tern_api_tsdb *api = arg;
    tern_tsdb_query q;
    memset(&q, 0, sizeof q);
    char err[300] = "";
    int64_t now = tern_clock_now_ms();
    const char *start = tern_http_req_param(req, "start"), *end = tern_http_req_param(req, "end");
    const char *step = tern_http_req_param(req, "step"), *agg = tern_http_req_param(req, "agg");
    const char *limit = tern_http_req_param(req, "limit");
    const char *tier = tern_http_req_param(req, "tier");
    if (tier && *tier) {
        if (strcmp(tier, "hot") == 0)
            q.tier = TERN_TIER_HOT;
        else if (strcmp(tier, "warm") == 0)
            q.tier = TERN_TIER_WARM;
        else if (strcmp(tier, "auto") != 0) {
            tern_http_respond_error(req, 400, "tier is auto, hot or warm");
            return;
        }
    }
    q.sel.metric = tern_http_req_param(req, "metric");
    q.sel.device = tern_http_req_param(req, "device");
    q.sel.tags = tern_http_req_param(req, "tags");
    q.sel.group_by = tern_http_req_param(req, "group_by");
    if (q.sel.device && !*q.sel.device)
        q.sel.device = NULL;
    if (q.sel.group_by && !*q.sel.group_by)
        q.sel.group_by = NULL;
    if (!start || !end) {
        tern_http_respond_error(req, 400, "start and end are required (ms, RFC 3339, now-1h)");
        return;
    }
    if (tern_tsdb_parse_time(start, now, &q.start_ms) != 0
        || tern_tsdb_parse_time(end, now, &q.end_ms) != 0) {
        tern_http_respond_error(req, 400, "bad start or end (ms, RFC 3339 UTC, now-1h)");
        return;
    }
    if (step && *step && tern_tsdb_parse_duration(step, &q.step_ms) != 0) {
        tern_http_respond_error(req, 400, "bad step (e.g. 60s, 5m, 1h)");
        return;
    }
    if (agg && *agg && tern_tsdb_agg_parse(agg, &q.aggs, err, sizeof err) != 0) {
        tern_http_respond_error(req, 400, err);
        return;
    }
    q.max_rows = DEFAULT_MAX_ROWS;
    if (limit && *limit) {
        char *e;
        unsigned long long l = strtoull(limit, &e, 10);
        if (*e || l == 0) {
            tern_http_respond_error(req, 400, "bad limit");
            return;
        }
        q.max_rows = l;
    }
    if (q.aggs == 0 && !q.sel.device) {
        tern_http_respond_error(req, 400, "raw points need a device (or aggregate with agg=...)");
        return;
    }
    const char *format = tern_http_req_param(req, "format");
    if (format && *format && strcmp(format, "rows") != 0 && strcmp(format, "series") != 0) {
        tern_http_respond_error(req, 400, "format is rows or series");
        return;
    }
    rows_ctx c;
    memset(&c, 0, sizeof c);
    c.aggs = q.aggs;
    c.series = format && strcmp(format, "series") == 0;
    c.w.out = &c.out;
    tern_buf_append_str(&c.out, c.series ? "{\"series\":[" : "{\"rows\":[");
    int rc = tern_tsdb_query_run(api->db, &q, add_row, &c, err, sizeof err);
    respond_rows(req, &c, rc, err, q.tier_used);
}

static void on_last(tern_http_req *req, void *arg)
{
    tern_api_tsdb *api = arg;
    const char *device = tern_http_req_param(req, "device");
    if (!device || !*device) {
        tern_http_respond_error(req, 400, "device is required");
        return;
    }
    rows_ctx c;
    memset(&c, 0, sizeof c);
    c.w.out = &c.out;
    tern_buf_append_str(&c.out, "{\"rows\":[");
    int rc = tern_tsdb_last(api->db, device, add_row, &c);
    char err[200] = "";
    if (rc == TERN_ENOTFOUND)
        snprintf(err, sizeof err, "no device '%.100s'", device);
    respond_rows(req, &c, rc, err, TERN_TIER_HOT);
}

int tern_api_tsdb_new(tern_loop *loop, tern_http_server *srv, tern_tsdb *db, const char *device_tag,
    tern_api_tsdb **out)
{
    tern_api_tsdb *api = tern_calloc(1, sizeof(*api));
    if (!api)
        return TERN_ENOMEM;
    api->loop = loop;
    api->db = db;
    api->device_tag = tern_strdup(device_tag);
    int rc = api->device_tag ? tern_tsdb_batch_new(&api->batch) : TERN_ENOMEM;
    tern_metrics *m = tern_metrics_default();
    if (rc == 0)
        rc = tern_metrics_add_counter(m, "tern_tsdb_http_writes_total",
            "line-protocol write requests", NULL, 0, &api->writes);
    if (rc == 0)
        rc = tern_metrics_add_counter(m, "tern_tsdb_http_points_total",
            "points stored from line protocol", NULL, 0, &api->points);
    if (rc == 0)
        rc = tern_metrics_add_counter(m, "tern_tsdb_http_bad_lines_total",
            "line-protocol lines refused as unparsable or unmappable", NULL, 0, &api->bad_lines);
    if (rc == 0)
        rc = tern_metrics_add_counter(m, "tern_tsdb_http_refused_points_total",
            "points refused by the store (series limit, type conflict)", NULL, 0, &api->refused);
    if (rc == 0)
        rc = tern_http_route(srv, "POST", "/write", on_write_v1, api);
    if (rc == 0)
        rc = tern_http_route(srv, "POST", "/api/v2/write", on_write_v2, api);
    if (rc == 0)
        rc = tern_http_route(srv, "GET", "/ping", on_ping, api);
    if (rc == 0)
        rc = tern_http_route(srv, "GET", "/health", on_health, api);
    if (rc == 0)
        rc = tern_http_route(srv, "GET", "/metrics", on_metrics, api);
    if (rc == 0)
        rc = tern_http_route(srv, "GET", "/api/v1/query", on_query, api);
    if (rc == 0)
        rc = tern_http_route(srv, "GET", "/api/v1/last", on_last, api);
    if (rc) {
        tern_api_tsdb_free(api);
        return rc;
    }
    *out = api;
    return 0;
}

void tern_api_tsdb_free(tern_api_tsdb *api)
{
    if (!api)
        return;
    tern_tsdb_batch_free(api->batch);
    tern_free(api->device_tag);
    tern_free(api);
}

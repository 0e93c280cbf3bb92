/*
 * http.c: the HTTP/1.1 server of http.h: accepting, per-connection buffering, the request state
 * machine (head -> body -> handler -> response), timers, routing, responses and counters.
 *
 * A connection holds one input buffer and one output buffer. Requests are handled one at a time
 * in arrival order: while a handler has not answered, later pipelined bytes stay buffered (and
 * reading stops once a bounded amount is buffered), so responses always leave in request order.
 * Reads are level-triggered; WRITE interest is armed only while output is pending. A connection
 * is freed on a deferred task, never on the stack of its own callbacks, and a request handle is
 * detached (not freed) when its connection closes, which is what makes late answers safe.
 */
#include "api/http.h"

#include "api/http_int.h"
#include "base/alloc.h"
#include "base/error.h"
#include "base/list.h"
#include "base/log.h"
#include "loop/net.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if TERN_HAVE_ZLIB
#include <zlib.h>
#endif

#define READ_CHUNK 16384
#define MAX_READS_PER_WAKE 4
#define MAX_ACCEPTS_PER_WAKE 64
#define OUT_HIGH_WATER (1u << 20) /* don't start the next request while this much is unsent */
#define ACCEPT_BACKOFF_MS 100

typedef struct http_kv {
    const char *key;
    const char *value;
} http_kv;

typedef struct http_route {
    char *method; /* NULL = any */
    char *path;   /* without the trailing "/\*" for a prefix route */
    size_t path_len;
    bool prefix;
    tern_http_handler handler;
    void *arg;
} http_route;

enum conn_state { C_HEAD, C_BODY_CL, C_BODY_CHUNKED, C_HANDLER, C_CLOSED };

typedef struct http_conn {
    tern_http_server *srv;
    int fd;
    tern_loop_io io;
    tern_loop_timer timer;
    tern_loop_task proc_task; /* continue with buffered input after an async answer */
    tern_loop_task free_task;
    tern_list link; /* srv->conns, then srv->closed */
    tern_buf in;
    size_t in_off;    /* bytes of in already consumed */
    size_t head_scan; /* bytes of the pending head already searched for its end */
    tern_buf out;
    size_t out_off;
    enum conn_state state;
    bool head_started; /* the header deadline is armed for the pending head */
    bool close_after;  /* close once the output drains */
    bool in_process;   /* conn_process is on the stack */
    tern_http_req *req;
    size_t route; /* index in srv->routes of the request in progress */
    uint64_t body_left;
    http_chunked chunked;
} http_conn;

struct tern_http_req {
    http_conn *conn; /* NULL once the client is gone */
    const char *method, *path, *query;
    http_kv *headers;
    size_t n_headers;
    http_kv *params;
    size_t n_params;
    tern_buf body;
    tern_buf resp_headers;
    int minor;
    bool keep_alive;
    bool is_head;
    bool gzip;
};

struct tern_http_server {
    tern_loop *loop;
    tern_http_config cfg;
    int listen_fd;
    tern_loop_io listen_io;
    tern_loop_timer backoff;
    http_route *routes;
    size_t n_routes;
    tern_list conns;  /* open connections (http_conn.link) */
    tern_list closed; /* closed, waiting for their deferred free */
    tern_http_stats stats;
    tern_metrics_counter *m_requests, *m_bytes_in, *m_bytes_out, *m_timeouts, *m_rejected;
    tern_metrics_gauge *m_conns;
    tern_metrics_counter *m_status[500]; /* by status 100..599, registered on first use */
};

static void conn_process(http_conn *c);
static void conn_close(http_conn *c);
static void conn_flush(http_conn *c);
static void proc_task_cb(tern_loop_task *t);

/* ---- configuration, server --------------------------------------------------------------- */

void tern_http_config_default(tern_http_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_header_bytes = 16 * 1024;
    cfg->max_headers = 100;
    cfg->max_body_bytes = 64u * 1024 * 1024;
    cfg->max_connections = 1024;
    cfg->idle_timeout_ms = 60000;
    cfg->header_timeout_ms = 10000;
}

static int add_counter(tern_http_server *s, const char *name, const char *help,
    const tern_metrics_label *labels, size_t n_labels, tern_metrics_counter **out)
{
    return tern_metrics_add_counter(s->cfg.metrics, name, help, labels, n_labels, out);
}

static void backoff_cb(tern_loop_timer *t)
{
    tern_http_server *s = t->data;
    if (s->listen_fd >= 0)
        (void)tern_loop_io_start(&s->listen_io, TERN_LOOP_READ);
}

int tern_http_server_new(tern_loop *loop, const tern_http_config *cfg, tern_http_server **out)
{
    tern_http_config c;
    if (cfg)
        c = *cfg;
    else
        tern_http_config_default(&c);
    if (!c.max_header_bytes || !c.max_headers || !c.max_body_bytes || !c.max_connections
        || !c.idle_timeout_ms || !c.header_timeout_ms)
        return TERN_EINVAL;
    if (c.max_headers > HTTP_MAX_HEADERS_HARD)
        c.max_headers = HTTP_MAX_HEADERS_HARD;
    if (!c.metrics)
        c.metrics = tern_metrics_default();
    tern_http_server *s = tern_calloc(1, sizeof *s);
    if (!s)
        return TERN_ENOMEM;
    s->loop = loop;
    s->cfg = c;
    tern_list_init(&s->conns);
    tern_list_init(&s->closed);
    s->listen_fd = -1;
    tern_loop_timer_init(loop, &s->backoff, backoff_cb, s);
    int rc = add_counter(
        s, "tern_http_requests_total", "HTTP requests parsed", NULL, 0, &s->m_requests);
    if (rc == 0)
        rc = add_counter(
            s, "tern_http_received_bytes_total", "HTTP bytes received", NULL, 0, &s->m_bytes_in);
    if (rc == 0)
        rc = add_counter(
            s, "tern_http_sent_bytes_total", "HTTP bytes sent", NULL, 0, &s->m_bytes_out);
    if (rc == 0)
        rc = add_counter(s, "tern_http_timeouts_total",
            "HTTP connections closed by the header or idle timeout", NULL, 0, &s->m_timeouts);
    if (rc == 0)
        rc = add_counter(s, "tern_http_connections_rejected_total",
            "HTTP connections refused with 503 at max_connections", NULL, 0, &s->m_rejected);
    if (rc == 0)
        rc = tern_metrics_add_gauge(
            c.metrics, "tern_http_connections", "Open HTTP connections", NULL, 0, &s->m_conns);
    if (rc != 0) {
        tern_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

static void conn_free(http_conn *c)
{
    tern_list_unlink(&c->link);
    tern_buf_free(&c->in);
    tern_buf_free(&c->out);
    tern_free(c);
}

void tern_http_server_free(tern_http_server *s)
{
    if (!s)
        return;
    for (tern_list *l; (l = tern_list_first(&s->conns)) != NULL;)
        conn_close(TERN_LIST_ENTRY(l, http_conn, link));
    for (tern_list *l; (l = tern_list_first(&s->closed)) != NULL;) {
        http_conn *c = TERN_LIST_ENTRY(l, http_conn, link);
        tern_loop_cancel(&c->free_task);
        conn_free(c);
    }
    if (s->listen_fd >= 0) {
        tern_loop_io_stop(&s->listen_io);
        close(s->listen_fd);
    }
    tern_loop_timer_stop(&s->backoff);
    for (size_t k = 0; k < s->n_routes; k++) {
        tern_free(s->routes[k].method);
        tern_free(s->routes[k].path);
    }
    tern_free(s->routes);
    tern_free(s);
}

void tern_http_get_stats(const tern_http_server *s, tern_http_stats *out)
{
    *out = s->stats;
}

/* ---- routes ------------------------------------------------------------------------------ */

int tern_http_route(
    tern_http_server *s, const char *method, const char *path, tern_http_handler handler, void *arg)
{
    if (!path || path[0] != '/' || !handler || (method && !method[0]))
        return TERN_EINVAL;
    size_t len = strlen(path);
    bool prefix = len >= 2 && strcmp(path + len - 2, "/*") == 0;
    if (prefix)
        len -= 2;
    http_route *grown = tern_realloc(s->routes, (s->n_routes + 1) * sizeof *grown);
    if (!grown)
        return TERN_ENOMEM;
    s->routes = grown;
    http_route *r = &s->routes[s->n_routes];
    r->method = method ? tern_strdup(method) : NULL;
    r->path = tern_strndup(path, len);
    if ((method && !r->method) || !r->path) {
        tern_free(r->method);
        tern_free(r->path);
        return TERN_ENOMEM;
    }
    r->path_len = len;
    r->prefix = prefix;
    r->handler = handler;
    r->arg = arg;
    s->n_routes++;
    return 0;
}

static bool route_path_matches(const http_route *r, const char *path)
{
    if (!r->prefix)
        return strcmp(r->path, path) == 0;
    if (strncmp(r->path, path, r->path_len) != 0)
        return false;
    return path[r->path_len] == '\0' || path[r->path_len] == '/' || r->path_len == 0;
}

/* Finds the route; on a miss returns NULL and *status 404 or 405 (with *allow filled). */
static const http_route *route_find(
    const tern_http_server *s, const char *method, const char *path, tern_buf *allow, int *status)
{
    bool is_head = strcmp(method, "HEAD") == 0;
    const http_route *get_route = NULL;
    bool path_seen = false;
    for (size_t k = 0; k < s->n_routes; k++) {
        const http_route *r = &s->routes[k];
        if (!route_path_matches(r, path))
            continue;
        path_seen = true;
        if (!r->method || strcmp(r->method, method) == 0)
            return r;
        if (is_head && !get_route && strcmp(r->method, "GET") == 0)
            get_route = r;
    }
    if (get_route)
        return get_route;
    *status = path_seen ? 405 : 404;
    if (path_seen) {
        for (size_t k = 0; k < s->n_routes; k++) {
            const http_route *r = &s->routes[k];
            if (!r->method || !route_path_matches(r, path))
                continue;
            (void)tern_buf_printf(allow, "%s%s", allow->len ? ", " : "", r->method);
        }
    }
    return NULL;
}

/* ---- the request handle ------------------------------------------------------------------ */

static void req_free(tern_http_req *r)
{
    tern_buf_free(&r->body);
    tern_buf_free(&r->resp_headers);
    tern_free(r);
}

/* Copies src[0..n) NUL-terminated at *arena and advances it. */
static const char *arena_put(char **arena, const char *src, size_t n)
{
    char *p = *arena;
    memcpy(p, src, n);
    p[n] = '\0';
    *arena += n + 1;
    return p;
}

/* Builds the handle from a parsed head. Returns it, or NULL with *status (400 or 500). */
static tern_http_req *req_new(const http_head *h, int *status)
{
    size_t n_params = 0;
    if (h->query_len) {
        n_params = 1;
        for (size_t k = 0; k < h->query_len; k++)
            n_params += h->query[k] == '&';
    }
    size_t need = h->method_len + h->path_len + 2 * h->query_len + 2 * n_params + 3;
    for (size_t k = 0; k < h->n_headers; k++)
        need += h->headers[k].name_len + h->headers[k].value_len + 2;
    size_t fixed = sizeof(tern_http_req) + (h->n_headers + n_params) * sizeof(http_kv);
    tern_http_req *r = tern_calloc(1, fixed + need);
    if (!r) {
        *status = 503;
        return NULL;
    }
    r->headers = (http_kv *)(r + 1);
    r->params = r->headers + h->n_headers;
    char *arena = (char *)(r->params + n_params);
    char *end = arena + need;
    r->method = arena_put(&arena, h->method, h->method_len);
    long n = http_pct_decode(h->path, h->path_len, false, arena);
    if (n < 0)
        goto bad;
    arena[n] = '\0';
    r->path = arena;
    arena += n + 1;
    r->query = arena_put(&arena, h->query, h->query_len);
    for (size_t k = 0; k < h->n_headers; k++) {
        r->headers[k].key = arena_put(&arena, h->headers[k].name, h->headers[k].name_len);
        r->headers[k].value = arena_put(&arena, h->headers[k].value, h->headers[k].value_len);
    }
    r->n_headers = h->n_headers;
    size_t pos = 0;
    while (pos < h->query_len) {
        const char *item = h->query + pos;
        const char *amp = memchr(item, '&', h->query_len - pos);
        size_t ilen = amp ? (size_t)(amp - item) : h->query_len - pos;
        pos += ilen + 1;
        if (ilen == 0)
            continue;
        const char *eq = memchr(item, '=', ilen);
        size_t klen = eq ? (size_t)(eq - item) : ilen;
        long kn = http_pct_decode(item, klen, true, arena);
        if (kn < 0)
            goto bad;
        arena[kn] = '\0';
        r->params[r->n_params].key = arena;
        arena += kn + 1;
        long vn = eq ? http_pct_decode(eq + 1, ilen - klen - 1, true, arena) : 0;
        if (vn < 0)
            goto bad;
        arena[vn] = '\0';
        r->params[r->n_params].value = arena;
        arena += vn + 1;
        r->n_params++;
    }
    TERN_ASSERT(arena <= end);
    r->minor = h->minor;
    r->keep_alive = h->keep_alive;
    r->is_head = strcmp(r->method, "HEAD") == 0;
    r->gzip = h->gzip;
    tern_buf_init(&r->body);
    tern_buf_init(&r->resp_headers);
    return r;
bad:
    tern_free(r);
    *status = 400;
    return NULL;
}

const char *tern_http_req_method(const tern_http_req *r)
{
    return r->method;
}

const char *tern_http_req_path(const tern_http_req *r)
{
    return r->path;
}

const char *tern_http_req_query(const tern_http_req *r)
{
    return r->query;
}

const char *tern_http_req_param(const tern_http_req *r, const char *key)
{
    for (size_t k = 0; k < r->n_params; k++)
        if (strcmp(r->params[k].key, key) == 0)
            return r->params[k].value;
    return NULL;
}

size_t tern_http_req_n_params(const tern_http_req *r)
{
    return r->n_params;
}

void tern_http_req_param_at(const tern_http_req *r, size_t i, const char **key, const char **value)
{
    TERN_ASSERT(i < r->n_params);
    *key = r->params[i].key;
    *value = r->params[i].value;
}

const char *tern_http_req_header(const tern_http_req *r, const char *name)
{
    for (size_t k = 0; k < r->n_headers; k++)
        if (http_token_eq(r->headers[k].key, strlen(r->headers[k].key), name))
            return r->headers[k].value;
    return NULL;
}

const uint8_t *tern_http_req_body(const tern_http_req *r, size_t *len)
{
    static const uint8_t empty[1] = { 0 };
    *len = r->body.len;
    return r->body.data ? r->body.data : empty;
}

bool tern_http_req_closed(const tern_http_req *r)
{
    return r->conn == NULL;
}

int tern_http_req_add_header(tern_http_req *r, const char *name, const char *value)
{
    size_t n = strlen(name);
    if (n == 0 || strpbrk(value, "\r\n") != NULL)
        return TERN_EINVAL;
    for (size_t k = 0; k < n; k++) {
        unsigned char c = (unsigned char)name[k];
        if (c <= 0x20 || c >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", c))
            return TERN_EINVAL;
    }
    return tern_buf_printf(&r->resp_headers, "%s: %s\r\n", name, value);
}

/* ---- responses --------------------------------------------------------------------------- */

const char *tern_http_status_text(int status)
{
    switch (status) {
    case 100:
        return "Continue";
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 206:
        return "Partial Content";
    case 301:
        return "Moved Permanently";
    case 302:
        return "Found";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 409:
        return "Conflict";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 414:
        return "URI Too Long";
    case 415:
        return "Unsupported Media Type";
    case 417:
        return "Expectation Failed";
    case 422:
        return "Unprocessable Content";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

int tern_http_json_escape(tern_buf *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    int rc = tern_buf_reserve(out, len + 16);
    for (size_t k = 0; k < len && rc == 0; k++) {
        unsigned char c = (unsigned char)s[k];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            rc = tern_buf_append(out, e, 2);
        } else if (c < 0x20 || c == 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
            rc = tern_buf_append(out, e, 6);
        } else if (c < 0x80) {
            rc = tern_buf_append_u8(out, c);
        } else {
            /* Copy a well-formed UTF-8 sequence; anything else becomes U+FFFD. */
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 ? 2 : 0;
            bool ok = n > 0 && c <= 0xf4 && k + n <= len;
            for (size_t j = 1; ok && j < n; j++)
                ok = ((unsigned char)s[k + j] & 0xc0) == 0x80;
            if (ok && n == 3) {
                unsigned char c1 = (unsigned char)s[k + 1];
                ok = !(c == 0xe0 && c1 < 0xa0) && !(c == 0xed && c1 >= 0xa0);
            } else if (ok && n == 4) {
                unsigned char c1 = (unsigned char)s[k + 1];
                ok = !(c == 0xf0 && c1 < 0x90) && !(c == 0xf4 && c1 >= 0x90);
            }
            if (ok) {
                rc = tern_buf_append(out, s + k, n);
                k += n - 1;
            } else {
                rc = tern_buf_append(out, "\xef\xbf\xbd", 3);
            }
        }
    }
    return rc;
}

static void count_status(tern_http_server *s, int status)
{
    if (status >= 500)
        s->stats.responses_5xx++;
    else if (status >= 400)
        s->stats.responses_4xx++;
    else if (status >= 300)
        s->stats.responses_3xx++;
    else if (status >= 200)
        s->stats.responses_2xx++;
    if (status < 100 || status > 599)
        return;
    tern_metrics_counter **slot = &s->m_status[status - 100];
    if (!*slot) {
        char code[8];
        snprintf(code, sizeof code, "%d", status);
        tern_metrics_label l = { "code", code };
        if (add_counter(s, "tern_http_responses_total", "HTTP responses by status", &l, 1, slot)
            != 0)
            return;
    }
    tern_metrics_counter_inc(*slot);
}

/* Appends a whole response to c->out. Returns 0 or TERN_ENOMEM (out is then as it was). */
static int append_response(http_conn *c, int status, const char *ctype, const tern_buf *extra,
    bool send_body, const void *body, size_t len, bool close_conn, bool keep_alive_10)
{
    size_t before = c->out.len;
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    int rc = tern_buf_printf(&c->out, "HTTP/1.1 %d %s\r\n", status, tern_http_status_text(status));
    if (rc == 0 && ctype && !no_body)
        rc = tern_buf_printf(&c->out, "Content-Type: %s\r\n", ctype);
    if (rc == 0 && !no_body)
        rc = tern_buf_printf(&c->out, "Content-Length: %zu\r\n", len);
    if (rc == 0 && extra && extra->len)
        rc = tern_buf_append(&c->out, extra->data, extra->len);
    if (rc == 0 && close_conn)
        rc = tern_buf_append_str(&c->out, "Connection: close\r\n");
    else if (rc == 0 && keep_alive_10)
        rc = tern_buf_append_str(&c->out, "Connection: keep-alive\r\n");
    if (rc == 0)
        rc = tern_buf_append(&c->out, "\r\n", 2);
    if (rc == 0 && send_body && !no_body && len)
        rc = tern_buf_append(&c->out, body, len);
    if (rc != 0) {
        c->out.len = before;
        return rc;
    }
    return 0;
}

static void json_error_body(tern_buf *b, const char *message)
{
    if (tern_buf_append_str(b, "{\"error\":\"") != 0
        || tern_http_json_escape(b, message, strlen(message)) != 0
        || tern_buf_append_str(b, "\"}") != 0)
        tern_buf_reset(b);
}

/*
 * Answers an error no handler saw (parse errors, limits, timeouts) and closes once it is sent
 * (or when the idle timeout gives up on a client that does not read it). Never in C_HANDLER.
 */
static void conn_fail(http_conn *c, int status, const char *message)
{
    TERN_ASSERT(c->state != C_HANDLER && c->state != C_CLOSED);
    if (c->req) {
        req_free(c->req);
        c->req = NULL;
    }
    c->state = C_HEAD;
    tern_buf body = TERN_BUF_INIT;
    json_error_body(&body, message);
    count_status(c->srv, status);
    int rc = append_response(
        c, status, "application/json", NULL, true, body.data, body.len, true, false);
    tern_buf_free(&body);
    if (rc != 0) {
        conn_close(c);
        return;
    }
    c->close_after = true;
    c->head_started = false;
    tern_loop_timer_start(&c->timer, c->srv->cfg.idle_timeout_ms, 0);
    conn_flush(c);
}

void tern_http_respond(
    tern_http_req *req, int status, const char *content_type, const void *body, size_t len)
{
    http_conn *c = req->conn;
    if (!c) {
        req_free(req);
        return;
    }
    TERN_ASSERT(c->req == req && c->state == C_HANDLER);
    TERN_ASSERT(status >= 100 && status <= 599 && status != 101);
    bool close_conn = !req->keep_alive || c->close_after;
    int rc = append_response(c, status, content_type, &req->resp_headers, !req->is_head, body, len,
        close_conn, req->keep_alive && req->minor == 0);
    count_status(c->srv, status);
    c->req = NULL;
    req_free(req);
    if (rc != 0) {
        conn_close(c);
        return;
    }
    if (close_conn)
        c->close_after = true;
    c->state = C_HEAD;
    tern_loop_timer_start(&c->timer, c->srv->cfg.idle_timeout_ms, 0);
    conn_flush(c);
    if (c->state != C_CLOSED && !c->in_process)
        tern_loop_defer(c->srv->loop, &c->proc_task, proc_task_cb, c);
}

void tern_http_respond_json(tern_http_req *req, int status, const char *json)
{
    tern_http_respond(req, status, "application/json", json, strlen(json));
}

void tern_http_respond_text(tern_http_req *req, int status, const char *text)
{
    tern_http_respond(req, status, "text/plain; charset=utf-8", text, strlen(text));
}

void tern_http_respond_error(tern_http_req *req, int status, const char *message)
{
    tern_buf b = TERN_BUF_INIT;
    json_error_body(&b, message);
    tern_http_respond(req, status, "application/json", b.data, b.len);
    tern_buf_free(&b);
}

/* ---- connections ------------------------------------------------------------------------- */

static void update_interest(http_conn *c)
{
    if (c->state == C_CLOSED)
        return;
    /* Reading stops once a bounded amount waits behind a pending request (or behind output
     * the client does not read); then a hang-up is noticed when the answer is written. */
    size_t buffered = c->in.len - c->in_off;
    bool want_read = buffered < c->srv->cfg.max_header_bytes + READ_CHUNK && !c->close_after;
    unsigned ev
        = (want_read ? TERN_LOOP_READ : 0u) | (c->out.len > c->out_off ? TERN_LOOP_WRITE : 0u);
    if (ev == 0)
        tern_loop_io_stop(&c->io);
    else if (tern_loop_io_start(&c->io, ev) != 0)
        conn_close(c);
}

static void conn_free_task(tern_loop_task *t)
{
    conn_free(t->data);
}

static void conn_close(http_conn *c)
{
    if (c->state == C_CLOSED)
        return;
    tern_http_server *s = c->srv;
    bool pending = c->state == C_HANDLER;
    c->state = C_CLOSED;
    tern_loop_io_stop(&c->io);
    tern_loop_timer_stop(&c->timer);
    tern_loop_cancel(&c->proc_task);
    close(c->fd);
    c->fd = -1;
    if (c->req) {
        if (pending)
            c->req->conn = NULL; /* the handler still owns it; answering it only frees it */
        else
            req_free(c->req);
        c->req = NULL;
    }
    tern_list_unlink(&c->link);
    s->stats.connections--;
    tern_metrics_gauge_add(s->m_conns, -1);
    tern_list_push_front(&s->closed, &c->link);
    tern_loop_defer(s->loop, &c->free_task, conn_free_task, c);
}

static void conn_flush(http_conn *c)
{
    tern_http_server *s = c->srv;
    while (c->out_off < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            s->stats.bytes_sent += (uint64_t)n;
            tern_metrics_counter_add(s->m_bytes_out, (uint64_t)n);
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            update_interest(c);
            return;
        }
        conn_close(c);
        return;
    }
    c->out.len = 0;
    c->out_off = 0;
    if (c->out.cap > 65536)
        tern_buf_free(&c->out);
    if (c->close_after) {
        conn_close(c);
        return;
    }
    update_interest(c);
}

static void conn_timer_cb(tern_loop_timer *t)
{
    http_conn *c = t->data;
    c->srv->stats.timeouts++;
    tern_metrics_counter_inc(c->srv->m_timeouts);
    if ((c->state == C_HEAD && c->head_started) || c->state == C_BODY_CL
        || c->state == C_BODY_CHUNKED) {
        conn_fail(c, 408, "request not received in time");
        return;
    }
    conn_close(c);
}

#if TERN_HAVE_ZLIB
/* Inflates a gzip body (several members allowed). Returns 0, 400, 413 or TERN_ENOMEM. */
static int gunzip_body(tern_buf *body, size_t max_body)
{
    tern_buf out = TERN_BUF_INIT;
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return TERN_ENOMEM;
    zs.next_in = body->data;
    zs.avail_in = (uInt)body->len; /* body->len <= max_body, checked below for > 4 GiB */
    int rc = 0;
    if (body->len > UINT32_MAX) {
        rc = 413;
        goto done;
    }
    for (;;) {
        if (tern_buf_reserve(&out, 65536) != 0) {
            rc = TERN_ENOMEM;
            goto done;
        }
        zs.next_out = out.data + out.len;
        zs.avail_out = (uInt)(out.cap - out.len);
        size_t before = zs.avail_out;
        int z = inflate(&zs, Z_NO_FLUSH);
        out.len += before - zs.avail_out;
        if (out.len > max_body) {
            rc = 413;
            goto done;
        }
        if (z == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            if (inflateReset(&zs) != Z_OK) {
                rc = 400;
                goto done;
            }
            continue;
        }
        if (z == Z_BUF_ERROR && zs.avail_in == 0) {
            rc = 400; /* truncated */
            goto done;
        }
        if (z != Z_OK && z != Z_BUF_ERROR) {
            rc = z == Z_MEM_ERROR ? TERN_ENOMEM : 400;
            goto done;
        }
    }
done:
    inflateEnd(&zs);
    if (rc == 0) {
        tern_buf_free(body);
        *body = out;
    } else {
        tern_buf_free(&out);
    }
    return rc;
}
#endif

/* The body is complete: decode it and call the handler. Returns false if c closed. */
static bool dispatch(http_conn *c)
{
    tern_http_req *r = c->req;
    const http_route *route = &c->srv->routes[c->route];
#if TERN_HAVE_ZLIB
    if (r->gzip) {
        int rc = gunzip_body(&r->body, c->srv->cfg.max_body_bytes);
        if (rc != 0) {
            conn_fail(c,
                rc == 413       ? 413
                    : rc == 400 ? 400
                                : 503,
                rc == 413       ? "request body too large"
                    : rc == 400 ? "invalid gzip body"
                                : "out of memory");
            return false;
        }
    }
#endif
    /* A NUL after the body, not counted: text parsers may rely on it. */
    if (tern_buf_append_u8(&r->body, 0) != 0) {
        conn_fail(c, 503, "out of memory");
        return false;
    }
    r->body.len--;
    c->state = C_HANDLER;
    tern_loop_timer_stop(&c->timer);
    route->handler(r, route->arg);
    return c->state != C_CLOSED;
}

/* Parses a complete head at in[in_off..+head_len) and starts the request. False if c closed. */
static bool start_request(http_conn *c, size_t head_len)
{
    tern_http_server *s = c->srv;
    const char *head = (const char *)c->in.data + c->in_off;
    http_head *h = tern_malloc(sizeof *h);
    if (!h) {
        conn_fail(c, 503, "out of memory");
        return false;
    }
    s->stats.requests++;
    tern_metrics_counter_inc(s->m_requests);
    int status = http_parse_head(head, head_len, s->cfg.max_headers, h);
    if (status != 0) {
        tern_free(h);
        static const char *why[] = { "malformed request", "too many headers",
            "unsupported transfer encoding", "unsupported HTTP version",
            "unsupported content encoding", "unsupported expectation" };
        const char *msg = status == 431 ? why[1]
            : status == 501             ? why[2]
            : status == 505             ? why[3]
            : status == 415             ? why[4]
            : status == 417             ? why[5]
                                        : why[0];
        TERN_LOG_RATELIMITED(TERN_LOG_INFO, "http", "fd %d: %d %s", c->fd, status, msg);
        conn_fail(c, status, msg);
        return false;
    }
    tern_http_req *r = req_new(h, &status);
    bool has_body = h->chunked || (h->has_content_length && h->content_length > 0);
    bool expect = h->expect_continue && h->minor == 1 && has_body;
    uint64_t cl = h->has_content_length ? h->content_length : 0;
    bool chunked = h->chunked;
    tern_free(h);
    if (!r) {
        conn_fail(c, status, status == 400 ? "malformed request target" : "out of memory");
        return false;
    }
    c->in_off += head_len;
    c->head_scan = 0;
    c->head_started = false;
    r->conn = c;
    c->req = r;
    c->state = C_HEAD; /* until the body starts */

    int rstatus = 0;
    tern_buf allow = TERN_BUF_INIT;
    const http_route *route = route_find(s, r->method, r->path, &allow, &rstatus);
    const char *refuse = NULL;
    if (!route) {
        refuse = rstatus == 404 ? "not found" : "method not allowed";
    } else if (cl > s->cfg.max_body_bytes) {
        rstatus = 413;
        refuse = "request body too large";
    }
#if !TERN_HAVE_ZLIB
    else if (r->gzip) {
        rstatus = 415;
        refuse = "gzip request bodies are not supported by this build (no zlib)";
    }
#endif
    if (refuse) {
        /* Answer without reading the body; a body left unread forces a close. */
        if (allow.len)
            (void)tern_http_req_add_header(r, "Allow", (const char *)allow.data);
        tern_buf_free(&allow);
        if (has_body)
            c->close_after = true;
        c->state = C_HANDLER;
        tern_http_respond_error(r, rstatus, refuse);
        return c->state != C_CLOSED;
    }
    tern_buf_free(&allow);
    if (expect && tern_buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n") == 0) {
        count_status(s, 100);
        conn_flush(c);
        if (c->state == C_CLOSED)
            return false;
    }
    if (chunked) {
        http_chunked_init(&c->chunked);
        c->state = C_BODY_CHUNKED;
    } else if (cl > 0) {
        c->body_left = cl;
        if (tern_buf_reserve(&r->body, cl < 1u << 20 ? (size_t)cl : 1u << 20) != 0) {
            conn_fail(c, 503, "out of memory");
            return false;
        }
        c->state = C_BODY_CL;
    }
    if (c->state != C_HEAD)
        tern_loop_timer_start(&c->timer, s->cfg.idle_timeout_ms, 0);
    c->route = (size_t)(route - s->routes);
    return true;
}

static void conn_process(http_conn *c)
{
    tern_http_server *s = c->srv;
    c->in_process = true;
    while (c->state != C_CLOSED) {
        size_t avail = c->in.len - c->in_off;
        const uint8_t *p = c->in.data + c->in_off;
        if (c->state == C_HANDLER || c->close_after)
            break;
        if (c->state == C_HEAD) {
            if (c->out.len - c->out_off > OUT_HIGH_WATER)
                break;
            if (!c->head_started) {
                size_t skip = 0; /* empty lines between requests are ignored */
                while (skip < avail && (p[skip] == '\r' || p[skip] == '\n'))
                    skip++;
                c->in_off += skip;
                avail -= skip;
                if (avail == 0)
                    break;
                c->head_started = true;
                tern_loop_timer_start(&c->timer, s->cfg.header_timeout_ms, 0);
            }
            size_t end = http_head_end((const char *)c->in.data + c->in_off, avail, c->head_scan);
            if (end == 0 && avail > s->cfg.max_header_bytes) {
                conn_fail(c, 431, "request header too large");
                break;
            }
            if (end == 0) {
                c->head_scan = avail;
                break;
            }
            if (end > s->cfg.max_header_bytes) {
                conn_fail(c, 431, "request header too large");
                break;
            }
            if (!start_request(c, end))
                break;
            if (c->state == C_HEAD && c->req) /* no body */
                dispatch(c);
            continue;
        }
        if (avail == 0)
            break;
        if (c->state == C_BODY_CL) {
            size_t take = avail < c->body_left ? avail : (size_t)c->body_left;
            if (tern_buf_append(&c->req->body, p, take) != 0) {
                conn_fail(c, 503, "out of memory");
                break;
            }
            c->in_off += take;
            c->body_left -= take;
            if (c->body_left == 0)
                dispatch(c);
            continue;
        }
        /* C_BODY_CHUNKED */
        size_t used = 0;
        int rc
            = http_chunked_feed(&c->chunked, p, avail, &c->req->body, s->cfg.max_body_bytes, &used);
        c->in_off += used;
        if (rc == 0)
            break;
        if (rc == 1) {
            dispatch(c);
            continue;
        }
        conn_fail(c,
            rc == 413       ? 413
                : rc == 400 ? 400
                            : 503,
            rc == 413       ? "request body too large"
                : rc == 400 ? "malformed chunked body"
                            : "out of memory");
        break;
    }
    c->in_process = false;
    if (c->state == C_CLOSED)
        return;
    /* Compact the input buffer. */
    if (c->in_off == c->in.len) {
        c->in.len = 0;
        c->in_off = 0;
        if (c->in.cap > 65536)
            tern_buf_free(&c->in);
    } else if (c->in_off > 65536 || c->in_off > c->in.len / 2) {
        tern_buf_consume(&c->in, c->in_off);
        c->in_off = 0;
    }
    update_interest(c);
}

/* Continues with pipelined input after an answer given outside conn_process. */
static void proc_task_cb(tern_loop_task *t)
{
    http_conn *c = t->data;
    if (c->state != C_CLOSED)
        conn_process(c);
}

static void conn_read(http_conn *c)
{
    tern_http_server *s = c->srv;
    for (int i = 0; i < MAX_READS_PER_WAKE && c->state != C_CLOSED; i++) {
        if (c->in.len - c->in_off >= s->cfg.max_header_bytes + READ_CHUNK)
            break; /* full: update_interest stops reading */
        if (tern_buf_reserve(&c->in, READ_CHUNK) != 0) {
            conn_close(c);
            return;
        }
        ssize_t n = recv(c->fd, c->in.data + c->in.len, c->in.cap - c->in.len, 0);
        if (n == 0) {
            conn_close(c); /* the client is gone: a pending request is detached */
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            conn_close(c);
            return;
        }
        c->in.len += (size_t)n;
        s->stats.bytes_received += (uint64_t)n;
        tern_metrics_counter_add(s->m_bytes_in, (uint64_t)n);
        if (c->state == C_BODY_CL || c->state == C_BODY_CHUNKED)
            tern_loop_timer_start(&c->timer, s->cfg.idle_timeout_ms, 0);
        if ((size_t)n < READ_CHUNK)
            break;
    }
    if (c->state == C_HANDLER)
        update_interest(c);
    else if (c->state != C_CLOSED)
        conn_process(c);
}

static void conn_io_cb(tern_loop_io *io, unsigned events)
{
    http_conn *c = io->data;
    if (events & TERN_LOOP_WRITE) {
        conn_flush(c);
        if (c->state == C_CLOSED)
            return;
        if (c->state == C_HEAD && c->in.len > c->in_off)
            conn_process(c); /* output drained below the high-water mark: continue */
    }
    if (c->state != C_CLOSED && (events & (TERN_LOOP_READ | TERN_LOOP_ERROR)))
        conn_read(c);
}

static void conn_new(tern_http_server *s, int fd)
{
    http_conn *c = tern_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->srv = s;
    c->fd = fd;
    c->state = C_HEAD;
    tern_buf_init(&c->in);
    tern_buf_init(&c->out);
    tern_loop_io_init(s->loop, &c->io, fd, conn_io_cb, c);
    tern_loop_timer_init(s->loop, &c->timer, conn_timer_cb, c);
    c->proc_task.data = c;
    if (tern_loop_io_start(&c->io, TERN_LOOP_READ) != 0) {
        close(fd);
        tern_free(c);
        return;
    }
    (void)tern_net_set_nodelay(fd, true);
    tern_loop_timer_start(&c->timer, s->cfg.idle_timeout_ms, 0);
    tern_list_push_front(&s->conns, &c->link);
    s->stats.connections++;
    s->stats.accepted++;
    tern_metrics_gauge_add(s->m_conns, 1);
}

static void listen_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    tern_http_server *s = io->data;
    for (int i = 0; i < MAX_ACCEPTS_PER_WAKE; i++) {
        int fd;
        int rc = tern_net_accept(s->listen_fd, &fd, NULL, NULL);
        if (rc == TERN_EAGAIN)
            return;
        if (rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM) {
            TERN_LOG_RATELIMITED(
                TERN_LOG_WARN, "http", "accept: %s, pausing accepts", tern_strerror(rc));
            tern_loop_io_stop(&s->listen_io);
            tern_loop_timer_start(&s->backoff, ACCEPT_BACKOFF_MS, 0);
            return;
        }
        if (rc != 0)
            return;
        if (s->stats.connections >= s->cfg.max_connections) {
            static const char busy_body[] = "{\"error\":\"too many connections\"}";
            char msg[256];
            int n = snprintf(msg, sizeof msg,
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                sizeof busy_body - 1, busy_body);
            /* Drain what the client already sent, so closing does not reset the answer away. */
            char sink[4096];
            (void)recv(fd, sink, sizeof sink, MSG_DONTWAIT);
            (void)send(fd, msg, (size_t)n, MSG_NOSIGNAL);
            close(fd);
            s->stats.rejected++;
            tern_metrics_counter_inc(s->m_rejected);
            count_status(s, 503);
            continue;
        }
        conn_new(s, fd);
    }
}

int tern_http_listen(tern_http_server *s, const char *hostport)
{
    if (s->listen_fd >= 0)
        return TERN_EEXIST;
    int fd;
    int rc = tern_net_listen(hostport, NULL, &fd);
    if (rc != 0)
        return rc;
    tern_loop_io_init(s->loop, &s->listen_io, fd, listen_cb, s);
    rc = tern_loop_io_start(&s->listen_io, TERN_LOOP_READ);
    if (rc != 0) {
        close(fd);
        return rc;
    }
    s->listen_fd = fd;
    return 0;
}

int tern_http_port(const tern_http_server *s, uint16_t *port)
{
    if (s->listen_fd < 0)
        return TERN_ENOENT;
    return tern_net_local_port(s->listen_fd, port);
}

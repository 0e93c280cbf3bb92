/*
 * test_http.c: the HTTP/1.1 server driven in-process on a tern_loop with real sockets on
 * 127.0.0.1 (port 0), a non-blocking client in the test pumping the loop: GET with decoded
 * parameters, HEAD, POST with Content-Length, chunked bodies, pipelining, a byte-by-byte trickled
 * request, keep-alive reuse, Expect: 100-continue, 431/413/400/404/405/415/505, HTTP/1.0, async
 * answers (in order behind pipelined requests), a client that leaves before its async answer,
 * the header deadline (408) and idle timeout on a fake clock, max connections (503), gzip bodies,
 * counters, JSON escaping, and random bytes through the pure parsers and into a live socket.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "api/http.h"
#include "api/http_int.h"
#include "base/clock.h"
#include "base/error.h"
#include "base/metrics.h"
#include "loop/loop.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MS 1000000ull

typedef struct env {
    tern_loop *loop;
    tern_http_server *srv;
    tern_metrics *metrics;
    uint16_t port;
    uint64_t fake_ms;
} env;

static env E;

/* ---- handlers ---------------------------------------------------------------------------- */

static void echo_handler(tern_http_req *req, void *arg)
{
    (void)arg;
    size_t len;
    const uint8_t *body = tern_http_req_body(req, &len);
    assert_int_equal(body[len], 0); /* NUL after the body */
    const char *q = tern_http_req_param(req, "q");
    const char *ua = tern_http_req_header(req, "x-test");
    char out[4096];
    int n = snprintf(out, sizeof out, "%s %s q=%s h=%s n=%zu body=%.*s", tern_http_req_method(req),
        tern_http_req_path(req), q ? q : "(none)", ua ? ua : "(none)", tern_http_req_n_params(req),
        (int)(len > 2000 ? 2000 : len), (const char *)body);
    assert_int_equal(tern_http_req_add_header(req, "X-Echo", "yes"), 0);
    tern_http_respond(req, 200, "text/plain", out, (size_t)n);
}

static void len_handler(tern_http_req *req, void *arg)
{
    (void)arg;
    size_t len;
    const uint8_t *body = tern_http_req_body(req, &len);
    unsigned long sum = 0;
    for (size_t k = 0; k < len; k++)
        sum += body[k];
    char out[64];
    snprintf(out, sizeof out, "%zu %lu", len, sum);
    tern_http_respond_text(req, 201, out);
}

static void nocontent_handler(tern_http_req *req, void *arg)
{
    (void)arg;
    tern_http_respond(req, 204, NULL, NULL, 0);
}

/* Async: the request is kept and answered by a timer (or by the test). */
static tern_http_req *g_pending[4];
static int g_n_pending;
static tern_loop_timer g_answer_timer;

static void answer_timer_cb(tern_loop_timer *t)
{
    (void)t;
    for (int k = 0; k < g_n_pending; k++)
        tern_http_respond_json(g_pending[k], 200, "{\"async\":true}");
    g_n_pending = 0;
}

static void async_handler(tern_http_req *req, void *arg)
{
    bool with_timer = arg != NULL;
    g_pending[g_n_pending++] = req;
    if (with_timer)
        tern_loop_timer_start(&g_answer_timer, 10, 0);
}

/* ---- set-up ------------------------------------------------------------------------------ */

static void advance_ms(uint64_t ms)
{
    E.fake_ms += ms;
    tern_clock_fake_set(0, E.fake_ms * MS);
}

static int setup_with(const tern_http_config *override)
{
    memset(&E, 0, sizeof E);
    E.fake_ms = 1000;
    tern_clock_fake_set(0, E.fake_ms * MS);
    assert_int_equal(tern_loop_new(&E.loop), 0);
    assert_int_equal(tern_metrics_create(&E.metrics), 0);
    tern_http_config cfg;
    if (override)
        cfg = *override;
    else
        tern_http_config_default(&cfg);
    cfg.metrics = E.metrics;
    assert_int_equal(tern_http_server_new(E.loop, &cfg, &E.srv), 0);
    assert_int_equal(tern_http_route(E.srv, "GET", "/echo", echo_handler, NULL), 0);
    assert_int_equal(tern_http_route(E.srv, "POST", "/echo", echo_handler, NULL), 0);
    assert_int_equal(tern_http_route(E.srv, "POST", "/len", len_handler, NULL), 0);
    assert_int_equal(tern_http_route(E.srv, NULL, "/any/*", echo_handler, NULL), 0);
    assert_int_equal(tern_http_route(E.srv, "POST", "/write", nocontent_handler, NULL), 0);
    assert_int_equal(tern_http_route(E.srv, "GET", "/async", async_handler, &E), 0);
    assert_int_equal(tern_http_route(E.srv, "GET", "/hold", async_handler, NULL), 0);
    assert_int_equal(tern_http_route(E.srv, "GET", "noslash", echo_handler, NULL), TERN_EINVAL);
    assert_int_equal(tern_http_route(E.srv, "", "/x", echo_handler, NULL), TERN_EINVAL);
    assert_int_equal(tern_http_port(E.srv, &E.port), TERN_ENOENT);
    assert_int_equal(tern_http_listen(E.srv, "127.0.0.1:0"), 0);
    assert_int_equal(tern_http_listen(E.srv, "127.0.0.1:0"), TERN_EEXIST);
    assert_int_equal(tern_http_port(E.srv, &E.port), 0);
    assert_true(E.port != 0);
    tern_loop_timer_init(E.loop, &g_answer_timer, answer_timer_cb, NULL);
    g_n_pending = 0;
    return 0;
}

static int setup(void **state)
{
    (void)state;
    return setup_with(NULL);
}

static int teardown(void **state)
{
    (void)state;
    tern_loop_timer_stop(&g_answer_timer);
    tern_http_server_free(E.srv);
    for (int k = 0; k < g_n_pending; k++) {
        assert_true(tern_http_req_closed(g_pending[k]));
        tern_http_respond_text(g_pending[k], 200, "late"); /* a no-op that frees it */
    }
    g_n_pending = 0;
    for (int k = 0; k < 3; k++)
        tern_loop_run_once(E.loop, 0);
    tern_loop_free(E.loop);
    tern_metrics_destroy(E.metrics);
    tern_clock_fake_off();
    return 0;
}

static void pump(int n)
{
    for (int k = 0; k < n; k++)
        assert_true(tern_loop_run_once(E.loop, 1) >= 0);
}

/* ---- the test client --------------------------------------------------------------------- */

typedef struct client {
    int fd;
    char buf[1 << 17];
    size_t len;
    bool eof;
} client;

typedef struct resp {
    int status;
    char head[4096];
    char body[1 << 16];
    size_t body_len;
} resp;

static client *client_open(void)
{
    client *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->fd >= 0);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(E.port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(c->fd, (struct sockaddr *)&sa, sizeof sa), 0);
    return c;
}

static void client_close(client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c);
}

static void client_send(client *c, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            pump(1); /* let the server drain */
            continue;
        }
        if (n < 0)
            return; /* the server closed: what it answered is still readable */
        p += n;
        len -= (size_t)n;
    }
}

static void client_sends(client *c, const char *s)
{
    client_send(c, s, strlen(s));
}

/* Reads what is available without blocking; marks eof. */
static void client_poll(client *c)
{
    for (;;) {
        if (c->len == sizeof c->buf)
            return;
        ssize_t n = recv(c->fd, c->buf + c->len, sizeof c->buf - c->len, MSG_DONTWAIT);
        if (n > 0) {
            c->len += (size_t)n;
            continue;
        }
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            c->eof = true;
        return;
    }
}

/* Parses one response from c->buf if complete (Content-Length or none). */
static bool take_response(client *c, resp *r)
{
    char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t head_len = (size_t)(end - c->buf) + 4;
    assert_true(head_len < sizeof r->head);
    memcpy(r->head, c->buf, head_len);
    r->head[head_len] = '\0';
    assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
    size_t body_len = 0;
    const char *cl = strcasestr(r->head, "\r\nContent-Length:");
    if (cl)
        body_len = (size_t)strtoul(cl + 17, NULL, 10);
    if (c->len < head_len + body_len)
        return false;
    assert_true(body_len < sizeof r->body);
    memcpy(r->body, c->buf + head_len, body_len);
    r->body[body_len] = '\0';
    r->body_len = body_len;
    memmove(c->buf, c->buf + head_len + body_len, c->len - head_len - body_len);
    c->len -= head_len + body_len;
    return true;
}

/* Pumps the loop until one response is complete. */
static void client_response(client *c, resp *r)
{
    for (int k = 0; k < 5000; k++) {
        if (take_response(c, r))
            return;
        if (c->eof)
            fail_msg("connection closed before a whole response (%zu bytes)", c->len);
        pump(1);
        client_poll(c);
    }
    fail_msg("no response");
}

/* A HEAD answer has a Content-Length but no body: read just the head. */
static void client_head_response(client *c, resp *r)
{
    for (int k = 0; k < 5000; k++) {
        char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
        if (end) {
            size_t n = (size_t)(end - c->buf) + 4;
            memcpy(r->head, c->buf, n);
            r->head[n] = '\0';
            assert_int_equal(sscanf(r->head, "HTTP/1.1 %d ", &r->status), 1);
            memmove(c->buf, c->buf + n, c->len - n);
            c->len -= n;
            return;
        }
        pump(1);
        client_poll(c);
    }
    fail_msg("no response");
}

static bool client_sees_eof(client *c)
{
    for (int k = 0; k < 2000 && !c->eof; k++) {
        pump(1);
        client_poll(c);
    }
    return c->eof;
}

/* One request on a fresh connection, one response. */
static void roundtrip(const char *request, resp *r)
{
    client *c = client_open();
    client_sends(c, request);
    client_response(c, r);
    client_close(c);
}

/* ---- tests ------------------------------------------------------------------------------- */

static void test_simple_get_and_head(void **state)
{
    (void)state;
    static resp r;
    roundtrip("GET /echo?q=a%20b+c&x&&y=%2F HTTP/1.1\r\nHost: t\r\nX-Test:  v1  \r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /echo q=a b c h=v1 n=3 body=");
    assert_non_null(strstr(r.head, "Content-Type: text/plain\r\n"));
    assert_non_null(strstr(r.head, "X-Echo: yes\r\n"));
    assert_null(strstr(r.head, "Connection: close"));

    /* percent-decoded path; absolute-form target */
    roundtrip("GET http://h:1/%65cho?q=1 HTTP/1.1\r\nHost: h\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "GET /echo q=1 h=(none) n=1 body=");

    /* HEAD is served by the GET route, without a body */
    client *c = client_open();
    client_sends(
        c, "HEAD /echo HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?q=2 HTTP/1.1\r\nHost: t\r\n\r\n");
    client_head_response(c, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Content-Length: 38"));
    client_response(c, &r); /* the next response follows directly: no body bytes in between */
    assert_string_equal(r.body, "GET /echo q=2 h=(none) n=1 body=");
    client_close(c);

    /* prefix route, any method */
    roundtrip("DELETE /any/thing/else HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "DELETE /any/thing/else q=(none) h=(none) n=0 body=");
    roundtrip("GET /any HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 200);
    roundtrip("GET /anything HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
}

static void test_post_content_length(void **state)
{
    (void)state;
    static resp r;
    roundtrip("POST /echo?q=z HTTP/1.1\r\nHost: t\r\nContent-Length: 11\r\n\r\nhello world", &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /echo q=z h=(none) n=1 body=hello world");

    /* a 1 MB body in pieces */
    static char big[1 << 20];
    unsigned long sum = 0;
    for (size_t k = 0; k < sizeof big; k++) {
        big[k] = (char)('a' + k % 26);
        sum += (unsigned char)big[k];
    }
    client *c = client_open();
    client_sends(c, "POST /len HTTP/1.1\r\nHost: t\r\nContent-Length: 1048576\r\n\r\n");
    client_send(c, big, sizeof big);
    client_response(c, &r);
    assert_int_equal(r.status, 201);
    char want[64];
    snprintf(want, sizeof want, "1048576 %lu", sum);
    assert_string_equal(r.body, want);
    client_close(c);

    /* 204: no Content-Length, no body */
    roundtrip("POST /write HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc", &r);
    assert_int_equal(r.status, 204);
    assert_null(strstr(r.head, "Content-Length"));
}

static void test_chunked_body(void **state)
{
    (void)state;
    static resp r;
    roundtrip("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
              "5\r\nhello\r\n1;ext=1\r\n \r\nA \r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n",
        &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /echo q=(none) h=(none) n=0 body=hello 0123456789");

    /* malformed chunk size -> 400 and close */
    client *c = client_open();
    client_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.head, "Connection: close"));
    assert_true(client_sees_eof(c));
    client_close(c);

    /* Transfer-Encoding other than chunked -> 501; with Content-Length -> 400 */
    roundtrip("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n", &r);
    assert_int_equal(r.status, 501);
    roundtrip("POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n"
              "Content-Length: 5\r\n\r\n0\r\n\r\n",
        &r);
    assert_int_equal(r.status, 400);
}

static void test_pipelined_and_keepalive(void **state)
{
    (void)state;
    static resp r;
    client *c = client_open();
    client_sends(c,
        "GET /echo?q=1 HTTP/1.1\r\nHost: t\r\n\r\n"
        "POST /echo?q=2 HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc"
        "\r\n" /* a stray empty line between requests is ignored */
        "GET /echo?q=3 HTTP/1.1\r\nHost: t\r\n\r\n");
    client_response(c, &r);
    assert_string_equal(r.body, "GET /echo q=1 h=(none) n=1 body=");
    client_response(c, &r);
    assert_string_equal(r.body, "POST /echo q=2 h=(none) n=1 body=abc");
    client_response(c, &r);
    assert_string_equal(r.body, "GET /echo q=3 h=(none) n=1 body=");
    /* keep-alive: the same connection serves more */
    for (int k = 0; k < 5; k++) {
        client_sends(c, "GET /echo?q=again HTTP/1.1\r\nHost: t\r\n\r\n");
        client_response(c, &r);
        assert_int_equal(r.status, 200);
    }
    tern_http_stats st;
    tern_http_get_stats(E.srv, &st);
    assert_int_equal(st.accepted, 1);
    assert_int_equal(st.requests, 8);
    assert_int_equal(st.responses_2xx, 8);
    /* Connection: close is honoured */
    client_sends(c, "GET /echo HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    client_response(c, &r);
    assert_non_null(strstr(r.head, "Connection: close"));
    assert_true(client_sees_eof(c));
    client_close(c);
}

static void test_trickled_request(void **state)
{
    (void)state;
    static resp r;
    const char *req = "POST /echo?q=slow HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
    client *c = client_open();
    for (size_t k = 0; req[k]; k++) {
        client_send(c, req + k, 1);
        pump(2);
    }
    client_response(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /echo q=slow h=(none) n=1 body=abcde");
    client_close(c);
}

static void test_expect_continue(void **state)
{
    (void)state;
    static resp r;
    client *c = client_open();
    client_sends(c,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
        "Expect: 100-continue\r\n\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 100);
    client_sends(c, "data");
    client_response(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "POST /echo q=(none) h=(none) n=0 body=data");
    /* refused before the body is sent: no 100, the error, and a close */
    client_sends(c,
        "POST /nowhere HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\n"
        "Expect: 100-continue\r\n\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 404);
    assert_true(client_sees_eof(c));
    client_close(c);
    roundtrip("POST /echo HTTP/1.1\r\nHost: t\r\nExpect: something\r\n\r\n", &r);
    assert_int_equal(r.status, 417);
}

static void test_limits(void **state)
{
    (void)state;
    tern_http_config cfg;
    tern_http_config_default(&cfg);
    cfg.max_header_bytes = 512;
    cfg.max_body_bytes = 100;
    cfg.max_headers = 4;
    teardown(NULL);
    setup_with(&cfg);
    static resp r;
    static char big[2048];
    snprintf(big, sizeof big, "GET /echo HTTP/1.1\r\nHost: t\r\nX-Big: %0600d\r\n\r\n", 7);
    client *c = client_open();
    client_sends(c, big);
    client_response(c, &r);
    assert_int_equal(r.status, 431);
    assert_true(client_sees_eof(c));
    client_close(c);
    /* a head that never ends is cut at the limit too */
    c = client_open();
    memset(big, 'a', sizeof big);
    memcpy(big, "GET /", 5);
    client_send(c, big, sizeof big);
    client_response(c, &r);
    assert_int_equal(r.status, 431);
    client_close(c);
    roundtrip("GET /echo HTTP/1.1\r\nHost: t\r\na: 1\r\nb: 2\r\nc: 3\r\nd: 4\r\n\r\n", &r);
    assert_int_equal(r.status, 431);
    roundtrip("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 101\r\n\r\n", &r);
    assert_int_equal(r.status, 413);
    assert_string_equal(r.body, "{\"error\":\"request body too large\"}");
    roundtrip("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n"
              "0123456789012345678901234567890123456789012345678901234567890123456789"
              "012345678901234567890123456789",
        &r);
    assert_int_equal(r.status, 200);
    c = client_open();
    client_sends(c,
        "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        "40\r\n");
    for (int k = 0; k < 64; k++)
        client_sends(c, "x");
    client_sends(c, "\r\n40\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 413);
    client_close(c);
}

static void test_bad_requests(void **state)
{
    (void)state;
    static resp r;
    static const char *bad[] = {
        "GARBAGE\r\n\r\n",
        "GET\r\n\r\n",
        "GET /echo\r\n\r\n",
        "GET /echo HTTP/1.1 extra\r\n\r\n",
        "GET /echo HTTX/1.1\r\nHost: t\r\n\r\n",
        "GET echo HTTP/1.1\r\nHost: t\r\n\r\n",
        "G(T /echo HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo HTTP/1.1\r\n\r\n", /* no Host */
        "GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost : t\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: t\r\n folded\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: t\r\nNoColon\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: t\r\nContent-Length: -1\r\n\r\n",
        "GET /ec%zzho HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo%00 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo?q=%4 HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo#frag HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /echo HTTP/1.1\r\nHost: t\x01\r\n\r\n",
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        client *c = client_open();
        client_sends(c, bad[k]);
        client_response(c, &r);
        if (r.status != 400)
            fail_msg("request %zu: status %d", k, r.status);
        assert_non_null(strstr(r.body, "{\"error\":\""));
        assert_true(client_sees_eof(c));
        client_close(c);
    }
    roundtrip("GET /echo HTTP/2.0\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 505);
    roundtrip("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 404);
    assert_string_equal(r.body, "{\"error\":\"not found\"}");
    roundtrip("PUT /echo HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    assert_int_equal(r.status, 405);
    assert_non_null(strstr(r.head, "Allow: GET, POST\r\n"));
    roundtrip("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Encoding: br\r\n\r\n", &r);
    assert_int_equal(r.status, 415);
}

static void test_http10(void **state)
{
    (void)state;
    static resp r;
    client *c = client_open();
    client_sends(c, "GET /echo HTTP/1.0\r\n\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.head, "Connection: close"));
    assert_true(client_sees_eof(c));
    client_close(c);
    c = client_open();
    client_sends(c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    client_response(c, &r);
    assert_non_null(strstr(r.head, "Connection: keep-alive"));
    client_sends(c, "GET /echo?q=b HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    client_response(c, &r);
    assert_string_equal(r.body, "GET /echo q=b h=(none) n=1 body=");
    client_close(c);
}

static void test_async_answer_in_order(void **state)
{
    (void)state;
    static resp r;
    client *c = client_open();
    /* the async request, then a pipelined one that must wait for it */
    client_sends(
        c, "GET /async HTTP/1.1\r\nHost: t\r\n\r\nGET /echo?q=after HTTP/1.1\r\nHost: t\r\n\r\n");
    pump(20);
    client_poll(c);
    assert_int_equal(c->len, 0);
    assert_int_equal(g_n_pending, 1);
    assert_false(tern_http_req_closed(g_pending[0]));
    advance_ms(20); /* the answer timer fires */
    client_response(c, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"async\":true}");
    assert_non_null(strstr(r.head, "application/json"));
    client_response(c, &r);
    assert_string_equal(r.body, "GET /echo q=after h=(none) n=1 body=");
    assert_int_equal(g_n_pending, 0);
    client_close(c);
}

static void test_disconnect_before_async_answer(void **state)
{
    (void)state;
    client *c = client_open();
    client_sends(c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int k = 0; k < 200 && g_n_pending == 0; k++)
        pump(1);
    assert_int_equal(g_n_pending, 1);
    tern_http_req *req = g_pending[0];
    client_close(c);
    for (int k = 0; k < 200 && !tern_http_req_closed(req); k++)
        pump(1);
    assert_true(tern_http_req_closed(req));
    pump(5); /* the connection is freed; the handle must survive it */
    assert_string_equal(tern_http_req_path(req), "/hold");
    tern_http_respond_json(req, 200, "{}"); /* safe no-op that frees req */
    g_n_pending = 0;
    tern_http_stats st;
    tern_http_get_stats(E.srv, &st);
    assert_int_equal(st.connections, 0);
    assert_int_equal(st.responses_2xx, 0);

    /* A request still pending when the server is freed: teardown answers it (a no-op). */
    c = client_open();
    client_sends(c, "GET /hold HTTP/1.1\r\nHost: t\r\n\r\n");
    for (int k = 0; k < 200 && g_n_pending == 0; k++)
        pump(1);
    assert_int_equal(g_n_pending, 1);
    client_close(c);
}

static void test_timeouts(void **state)
{
    (void)state;
    static resp r;
    /* slowloris: a head that keeps trickling in is cut at the header deadline */
    client *c = client_open();
    client_sends(c, "GET /echo HTTP/1.1\r\n");
    pump(5);
    for (int k = 0; k < 12 && c->len == 0; k++) {
        client_sends(c, "X-A: b\r\n");
        advance_ms(1000);
        pump(3);
        client_poll(c);
    }
    client_response(c, &r);
    assert_int_equal(r.status, 408);
    assert_true(client_sees_eof(c));
    client_close(c);

    /* an idle keep-alive connection is closed quietly */
    c = client_open();
    client_sends(c, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 200);
    advance_ms(61000);
    assert_true(client_sees_eof(c));
    assert_int_equal(c->len, 0);
    client_close(c);

    /* a body that stops arriving */
    c = client_open();
    client_sends(c, "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nabc");
    pump(5);
    advance_ms(61000);
    client_response(c, &r);
    assert_int_equal(r.status, 408);
    client_close(c);
    tern_http_stats st;
    tern_http_get_stats(E.srv, &st);
    assert_int_equal(st.timeouts, 3);
}

static void test_max_connections(void **state)
{
    (void)state;
    tern_http_config cfg;
    tern_http_config_default(&cfg);
    cfg.max_connections = 2;
    teardown(NULL);
    setup_with(&cfg);
    static resp r;
    client *a = client_open();
    client *b = client_open();
    pump(10);
    client *c = client_open();
    client_sends(c, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 503);
    assert_true(client_sees_eof(c));
    client_close(c);
    client_sends(a, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    client_response(a, &r);
    assert_int_equal(r.status, 200);
    client_close(b);
    for (int k = 0; k < 50; k++)
        pump(1);
    c = client_open();
    client_sends(c, "GET /echo HTTP/1.1\r\nHost: t\r\n\r\n");
    client_response(c, &r);
    assert_int_equal(r.status, 200);
    client_close(c);
    client_close(a);
    tern_http_stats st;
    tern_http_get_stats(E.srv, &st);
    assert_int_equal(st.rejected, 1);
}

static const uint8_t gz_lines[]
    = { 0x1f, 0x8b, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xff, 0x4b, 0x2e, 0x28, 0xd5, 0xc9,
          0xc8, 0x2f, 0x2e, 0xb1, 0x4d, 0x54, 0x28, 0xb3, 0x35, 0xe4, 0x4a, 0x86, 0x71, 0x93, 0x80,
          0x5c, 0x23, 0x2e, 0x00, 0xec, 0x58, 0xec, 0xdd, 0x1e, 0x00, 0x00, 0x00 };

static void test_gzip_body(void **state)
{
    (void)state;
    static resp r;
    client *c = client_open();
    char head[256];
    snprintf(head, sizeof head,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: %zu\r\n\r\n",
        sizeof gz_lines);
    client_sends(c, head);
    client_send(c, gz_lines, sizeof gz_lines);
    client_response(c, &r);
#if TERN_HAVE_ZLIB
    assert_int_equal(r.status, 200);
    assert_string_equal(
        r.body, "POST /echo q=(none) h=(none) n=0 body=cpu,host=a v=1\ncpu,host=b v=2\n");
    /* truncated gzip -> 400 */
    client_sends(c,
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Encoding: gzip\r\nContent-Length: 20\r\n\r\n");
    client_send(c, gz_lines, 20);
    client_response(c, &r);
    assert_int_equal(r.status, 400);
#else
    assert_int_equal(r.status, 415);
    assert_non_null(strstr(r.body, "zlib"));
#endif
    client_close(c);
}

static void test_metrics(void **state)
{
    (void)state;
    static resp r;
    roundtrip("GET /nope HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    roundtrip("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    roundtrip("GET /echo HTTP/1.1\r\nHost: t\r\n\r\n", &r);
    pump(10);
    tern_buf out = TERN_BUF_INIT;
    assert_int_equal(tern_metrics_render(E.metrics, &out), 0);
    assert_int_equal(tern_buf_append_u8(&out, 0), 0);
    const char *text = (const char *)out.data;
    assert_non_null(strstr(text, "tern_http_responses_total{code=\"404\"} 1\n"));
    assert_non_null(strstr(text, "tern_http_responses_total{code=\"200\"} 2\n"));
    assert_non_null(strstr(text, "tern_http_requests_total 3\n"));
    assert_non_null(strstr(text, "tern_http_connections 0\n"));
    tern_http_stats st;
    tern_http_get_stats(E.srv, &st);
    char want[64];
    snprintf(want, sizeof want, "tern_http_received_bytes_total %llu\n",
        (unsigned long long)st.bytes_received);
    assert_non_null(strstr(text, want));
    assert_true(st.bytes_sent > 0);
    tern_buf_free(&out);
}

static void test_json_escape(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    const char in[]
        = "a\"b\\c\n\x01\x7f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xff \xc3 \xed\xa0\x80";
    assert_int_equal(tern_http_json_escape(&b, in, sizeof in - 1), 0);
    assert_int_equal(tern_buf_append_u8(&b, 0), 0);
    assert_string_equal((const char *)b.data,
        "a\\\"b\\\\c\\u000a\\u0001\\u007f \xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xef\xbf\xbd "
        "\xef\xbf\xbd \xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    tern_buf_free(&b);
    assert_string_equal(tern_http_status_text(431), "Request Header Fields Too Large");
    assert_string_equal(tern_http_status_text(299), "Unknown");
}

static void test_pure_parsers(void **state)
{
    (void)state;
    static http_head h;
    const char *ok = "\r\nPOST /a%20b?x=1&y HTTP/1.1\nHost: h\nContent-Length: 5\n"
                     "Connection: close, foo\nExpect: 100-Continue\nContent-Encoding: gzip\n\n";
    assert_int_equal(http_head_end(ok, strlen(ok), 0), strlen(ok));
    assert_int_equal(http_head_end(ok, strlen(ok) - 1, 0), 0);
    assert_int_equal(http_parse_head(ok, strlen(ok), 100, &h), 0);
    assert_int_equal(h.method_len, 4);
    assert_memory_equal(h.path, "/a%20b", 6);
    assert_int_equal(h.path_len, 6);
    assert_int_equal(h.query_len, 5);
    assert_true(h.has_content_length && h.content_length == 5);
    assert_false(h.keep_alive);
    assert_true(h.expect_continue && h.gzip && !h.chunked);
    assert_int_equal(h.n_headers, 5);

    char out[32];
    assert_int_equal(http_pct_decode("a+b%41%7e", 9, true, out), 5);
    assert_memory_equal(out, "a bA~", 5);
    assert_int_equal(http_pct_decode("a+b", 3, false, out), 3);
    assert_memory_equal(out, "a+b", 3);
    assert_int_equal(http_pct_decode("%", 1, false, out), -1);
    assert_int_equal(http_pct_decode("%4", 2, false, out), -1);
    assert_int_equal(http_pct_decode("%g0", 3, false, out), -1);
    assert_int_equal(http_pct_decode("%00", 3, false, out), -1);

    /* the chunked decoder, fed one byte at a time, stops exactly at the body's end */
    const char *ch = "4\r\nWiki\r\n5;a=b\r\npedia\r\n0\r\n\r\nNEXT";
    http_chunked st;
    http_chunked_init(&st);
    tern_buf body = TERN_BUF_INIT;
    size_t k = 0;
    int rc = 0;
    while (rc == 0 && k < strlen(ch)) {
        size_t used;
        rc = http_chunked_feed(&st, (const uint8_t *)ch + k, 1, &body, 1000, &used);
        k += used;
    }
    assert_int_equal(rc, 1);
    assert_string_equal(ch + k, "NEXT");
    assert_int_equal(body.len, 9);
    assert_memory_equal(body.data, "Wikipedia", 9);
    tern_buf_free(&body);
    http_chunked_init(&st);
    size_t used;
    assert_int_equal(
        http_chunked_feed(&st, (const uint8_t *)"fffffffffffffffff\r\n", 19, &body, 1000, &used),
        413);
    http_chunked_init(&st);
    assert_int_equal(http_chunked_feed(&st, (const uint8_t *)"5x\r\n", 4, &body, 1000, &used), 400);
    http_chunked_init(&st);
    assert_int_equal(
        http_chunked_feed(&st, (const uint8_t *)"1\r\nab\r\n", 7, &body, 1000, &used), 400);
    tern_buf_free(&body);
}

/* xorshift, deterministic */
static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void test_random_bytes(void **state)
{
    (void)state;
    static http_head h;
    static const char alphabet[] = "GET POST /?=&%0aF\r\n:HTTP/1.1 Host Content-Length: chunked "
                                   "Transfer-Encoding 0123456789\t\x01\xff";
    static char buf[1024];
    for (int iter = 0; iter < 20000; iter++) {
        size_t n = rnd() % sizeof buf;
        bool from_alpha = iter % 2;
        for (size_t k = 0; k < n; k++)
            buf[k] = from_alpha ? alphabet[rnd() % (sizeof alphabet - 1)] : (char)rnd();
        size_t end = http_head_end(buf, n, rnd() % (n + 1));
        assert_true(end <= n);
        int status = http_parse_head(buf, end ? end : n, 64, &h);
        assert_true(status == 0 || (status >= 400 && status <= 505));
        if (status == 0) {
            assert_true(h.path >= buf && h.path + h.path_len <= buf + n);
            assert_true(h.n_headers <= 64);
        }
        http_chunked st;
        http_chunked_init(&st);
        tern_buf body = TERN_BUF_INIT;
        size_t used;
        int rc = http_chunked_feed(&st, (const uint8_t *)buf, n, &body, 4096, &used);
        assert_true(used <= n);
        assert_true(rc == 0 || rc == 1 || rc == 400 || rc == 413);
        assert_true(body.len <= 4096);
        tern_buf_free(&body);
    }
    /* and into the live server: it answers or closes, never crashes */
    for (int iter = 0; iter < 30; iter++) {
        client *c = client_open();
        size_t n = 1 + rnd() % 600;
        memcpy(buf, "POST /echo HTTP/1.1\r\nHost: t\r\n", 30);
        for (size_t k = 30; k < n + 30; k++)
            buf[k] = iter % 2 ? alphabet[rnd() % (sizeof alphabet - 1)] : (char)rnd();
        client_send(c, buf, n + 30);
        shutdown(c->fd, SHUT_WR);
        client_sees_eof(c);
        client_close(c);
    }
    pump(20);
    tern_http_stats st;
    tern_http_get_stats(E.srv, &st);
    assert_int_equal(st.connections, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_simple_get_and_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_content_length, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_and_keepalive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trickled_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expect_continue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_answer_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disconnect_before_async_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeouts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_max_connections, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gzip_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics, setup, teardown),
        cmocka_unit_test(test_json_escape),
        cmocka_unit_test(test_pure_parsers),
        cmocka_unit_test_setup_teardown(test_random_bytes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

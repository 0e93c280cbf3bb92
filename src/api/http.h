/*
 * http.h: a small HTTP/1.1 server on tern's event loop, for tern's own APIs (line-protocol
 * ingest, JSON queries, /metrics).
 *
 * What it does: listens on HOST:PORT, accepts, parses requests incrementally (request line,
 * headers, Content-Length and chunked bodies, keep-alive, pipelining, Expect: 100-continue,
 * Connection: close, HTTP/1.0), enforces limits (head size -> 431, body size -> 413, connections
 * -> 503, a header deadline against slowloris -> 408, an idle timeout), percent-decodes the path
 * and the query parameters, routes by method and path to the caller's handlers, and writes
 * responses. Bodies with Content-Encoding: gzip are inflated when tern is built with zlib
 * (TERN_HAVE_ZLIB), otherwise answered 415. Everything about the wire is documented in
 * docs/http.md.
 *
 * Threading: one server belongs to one loop; every function here runs on that loop's thread.
 * Handlers run on it too. A handler that must wait (for a WAL fsync, another thread) keeps the
 * request handle and answers later from the loop thread (use tern_loop_post to get back there).
 *
 * Request lifetime (the async contract): a handler receives a tern_http_req that stays valid
 * until tern_http_respond* is called on it, exactly once; responding frees it. If the client
 * disconnects before the answer, the handle stays valid and answering it is a safe no-op
 * (tern_http_req_closed tells the handler it may give up early). Requests of one connection are
 * answered in order: while one is waiting for its answer, the next pipelined request waits.
 * Every request must be answered, even after tern_http_server_free (then it only frees it).
 *
 * Input is hostile: malformed requests get 400 and the connection is closed; nothing a peer
 * sends can crash the server or make it allocate beyond the configured limits.
 */
#ifndef TERN_API_HTTP_H
#define TERN_API_HTTP_H

#include "base/metrics.h"
#include "loop/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tern_http_server tern_http_server;
typedef struct tern_http_req tern_http_req;

/* A handler answers req now or later (see the request lifetime above). arg is the route's. */
typedef void (*tern_http_handler)(tern_http_req *req, void *arg);

typedef struct tern_http_config {
    size_t max_header_bytes;    /* request line + headers; more -> 431 and close. 16 KiB */
    size_t max_headers;         /* header lines; more -> 431 and close. 100 */
    size_t max_body_bytes;      /* decoded body (after chunked and gzip); more -> 413. 64 MiB */
    size_t max_connections;     /* beyond it a new connection gets 503 and is closed. 1024 */
    uint32_t idle_timeout_ms;   /* keep-alive wait for the next request, and the longest pause
                                   while a body or a response is in flight. 60 s */
    uint32_t header_timeout_ms; /* from a request's first byte to the end of its headers:
                                   exceeded -> 408 and close (slowloris). 10 s */
    tern_metrics *metrics;      /* registry for the counters; NULL = tern_metrics_default() */
} tern_http_config;

/* tern_http_config_default fills cfg with the defaults listed above. */
void tern_http_config_default(tern_http_config *cfg);

/*
 * tern_http_server_new creates a server on loop (borrowed: it must outlive the server) with a
 * copy of cfg (NULL = defaults). It does not listen yet. Sets *out only on success. Returns 0,
 * TERN_EINVAL (a zero limit), TERN_ENOMEM, or an error from registering the metrics.
 */
int tern_http_server_new(tern_loop *loop, const tern_http_config *cfg, tern_http_server **out);

/*
 * tern_http_server_free closes the listener and every connection and frees the server. Requests
 * still waiting for an answer stay valid until they are answered (then they are only freed);
 * tern_http_req_closed returns true for them. NULL is a no-op.
 */
void tern_http_server_free(tern_http_server *srv);

/*
 * tern_http_listen starts listening on hostport ("HOST:PORT", "[V6]:PORT", ":PORT"; port 0
 * picks a free one, see tern_http_port). May block on DNS for a host name. A server listens on
 * one address: a second call is TERN_EEXIST. Returns 0, TERN_EEXIST, or tern_net_listen's errors.
 */
int tern_http_listen(tern_http_server *srv, const char *hostport);

/* tern_http_port sets *port to the bound port. Returns 0, TERN_ENOENT (not listening), -errno. */
int tern_http_port(const tern_http_server *srv, uint16_t *port);

/*
 * tern_http_route registers handler for method ("GET", "POST", ...; NULL = any method) and path.
 * path is matched exactly against the percent-decoded request path, or, when it ends in "/\*",
 * as a prefix ("/api/\*" matches "/api/x/y" and "/api"). The first registered match wins. A path
 * that matches a route under another method gets 405 with an Allow header; no match gets 404.
 * HEAD is served by the GET route (the body is not sent) unless a HEAD route exists. Strings
 * are copied. Returns 0, TERN_EINVAL (path not starting with '/', empty method) or TERN_ENOMEM.
 */
int tern_http_route(tern_http_server *srv, const char *method, const char *path,
    tern_http_handler handler, void *arg);

/* ---- the request ------------------------------------------------------------------------- */

/* tern_http_req_method returns the method as sent ("GET", "POST", ...), NUL-terminated. */
const char *tern_http_req_method(const tern_http_req *req);
/* tern_http_req_path returns the percent-decoded path without the query ("/api/v2/write"). */
const char *tern_http_req_path(const tern_http_req *req);
/* tern_http_req_query returns the raw query string without '?' ("" when there is none). */
const char *tern_http_req_query(const tern_http_req *req);

/*
 * tern_http_req_param returns the decoded value of the first query parameter named key ("db" in
 * "?db=x&precision=s": "x"), "" for a key given without '=', or NULL when absent. '+' is a
 * space; %XX is a byte. The string lives as long as req.
 */
const char *tern_http_req_param(const tern_http_req *req, const char *key);
/* tern_http_req_n_params / tern_http_req_param_at walk all parameters in order (i < n). */
size_t tern_http_req_n_params(const tern_http_req *req);
void tern_http_req_param_at(
    const tern_http_req *req, size_t i, const char **key, const char **value);

/* tern_http_req_header returns the value (trimmed) of the first header named name (any case),
   or NULL. */
const char *tern_http_req_header(const tern_http_req *req, const char *name);

/*
 * tern_http_req_body returns the decoded request body (de-chunked, inflated) and sets *len;
 * the bytes live as long as req and are followed by a NUL byte not counted in *len. Empty
 * bodies return a valid pointer and 0.
 */
const uint8_t *tern_http_req_body(const tern_http_req *req, size_t *len);

/* tern_http_req_closed tells whether the client is gone (answering is then a no-op). */
bool tern_http_req_closed(const tern_http_req *req);

/*
 * tern_http_req_add_header adds a response header (e.g. "X-Influxdb-Version") sent with the
 * answer. name must be a token and value free of CR/LF (TERN_EINVAL otherwise). Returns 0,
 * TERN_EINVAL or TERN_ENOMEM.
 */
int tern_http_req_add_header(tern_http_req *req, const char *name, const char *value);

/*
 * tern_http_respond answers req with status (100..599, not 101) and body[0..len) (copied) of
 * content_type (NULL: no Content-Type), and frees req: req must not be used afterwards. Call it
 * exactly once per request, on the loop thread, from the handler or later. If the client is
 * gone it only frees req. 204 and 304 are sent without a body; so is any answer to HEAD. If the
 * response cannot be built (no memory), the connection is closed instead.
 */
void tern_http_respond(
    tern_http_req *req, int status, const char *content_type, const void *body, size_t len);
/* tern_http_respond_json: tern_http_respond with "application/json" and a NUL-terminated body. */
void tern_http_respond_json(tern_http_req *req, int status, const char *json);
/* tern_http_respond_text: tern_http_respond with "text/plain; charset=utf-8". */
void tern_http_respond_text(tern_http_req *req, int status, const char *text);
/* tern_http_respond_error answers {"error":"message"} (message JSON-escaped) as JSON. */
void tern_http_respond_error(tern_http_req *req, int status, const char *message);

/* ---- helpers ----------------------------------------------------------------------------- */

/*
 * tern_http_json_escape appends s[0..len) to out as the inside of a JSON string: '"' '\\' and
 * control bytes escaped, bytes >= 0x80 copied (invalid UTF-8 is replaced by U+FFFD so the
 * output is always valid JSON). Returns 0 or TERN_ENOMEM.
 */
int tern_http_json_escape(tern_buf *out, const char *s, size_t len);

/* tern_http_status_text returns the reason phrase of status ("Not Found"), "Unknown" if none. */
const char *tern_http_status_text(int status);

/* Counters for tests and logs (the metrics registry carries the same numbers). */
typedef struct tern_http_stats {
    uint64_t connections; /* gauge: open connections */
    uint64_t accepted;    /* connections accepted */
    uint64_t rejected;    /* connections refused with 503 (max_connections) */
    uint64_t requests;    /* requests parsed (dispatched or refused) */
    uint64_t responses_2xx, responses_3xx, responses_4xx, responses_5xx;
    uint64_t bytes_received, bytes_sent;
    uint64_t timeouts; /* connections closed by the header or idle timeout */
} tern_http_stats;

/* tern_http_get_stats copies the server's counters into *out. */
void tern_http_get_stats(const tern_http_server *srv, tern_http_stats *out);

#endif

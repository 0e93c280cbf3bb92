/*
 * http_int.h: the pure parts of the HTTP server (no I/O, no allocation except into a caller's
 * tern_buf): finding the end of a request head, parsing it, decoding chunked bodies, percent-
 * decoding. They are what the fuzz target tests/fuzz/fuzz_api_http.c drives. Private to api.
 */
#ifndef TERN_API_HTTP_INT_H
#define TERN_API_HTTP_INT_H

#include "base/buf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS_HARD 256 /* the parser's array; the server's limit is lower */

typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* trimmed of surrounding blanks */
    size_t value_len;
} http_header;

typedef struct http_head {
    const char *method;
    size_t method_len;
    const char *path; /* raw (still percent-encoded) path of the target, before '?' */
    size_t path_len;
    const char *query; /* after '?', may be empty */
    size_t query_len;
    int minor; /* HTTP/1.minor: 0 or 1 */
    size_t n_headers;
    http_header headers[HTTP_MAX_HEADERS_HARD];
    /* derived from the headers */
    bool has_content_length;
    uint64_t content_length;
    bool chunked;
    bool keep_alive; /* the connection may serve another request after this one */
    bool expect_continue;
    bool gzip; /* Content-Encoding: gzip */
} http_head;

/*
 * http_head_end looks for the empty line that ends a request head in buf[0..len), searching from
 * `from` (pass the previous len to avoid rescanning). Lines may end in "\r\n" or "\n". Returns the
 * head's length including that empty line, or 0 if it has not arrived yet.
 */
size_t http_head_end(const char *buf, size_t len, size_t from);

/*
 * http_parse_head parses a complete head buf[0..len) (as delimited by http_head_end) into *h,
 * whose strings point into buf. At most max_headers header lines (<= HTTP_MAX_HEADERS_HARD).
 * Returns 0, or an HTTP status for the error: 400 (malformed: request line, header syntax,
 * obs-fold, bad or conflicting Content-Length, Content-Length with Transfer-Encoding, missing
 * Host in HTTP/1.1), 431 (too many headers), 501 (a Transfer-Encoding other than chunked),
 * 505 (an HTTP version other than 1.0/1.1), 415 (a Content-Encoding other than identity/gzip),
 * 417 (an Expect other than 100-continue).
 */
int http_parse_head(const char *buf, size_t len, size_t max_headers, http_head *h);

/* The chunked-body decoder's state; zero it (or call http_chunked_init) before the first feed. */
typedef struct http_chunked {
    int state;
    uint64_t remaining; /* bytes left in the current chunk */
    size_t line_bytes;  /* bytes of the current size/extension/trailer line */
    size_t trailer_bytes;
    int n_digits;
} http_chunked;

void http_chunked_init(http_chunked *c);

/*
 * http_chunked_feed decodes in[0..len) of a chunked body, appending the data to body, and sets
 * *used to the bytes consumed. Returns 0 when more input is needed (all of in was used), 1 when
 * the body ended (*used stops right after it: what follows is the next request), 400 for a
 * malformed encoding, 413 when body would exceed max_body bytes, or TERN_ENOMEM.
 */
int http_chunked_feed(
    http_chunked *c, const uint8_t *in, size_t len, tern_buf *body, size_t max_body, size_t *used);

/*
 * http_pct_decode decodes in[0..len) into out (which must hold len bytes): %XX becomes a byte,
 * and '+' a space when plus_is_space. Returns the decoded length, or -1 for a bad escape or a
 * decoded NUL byte.
 */
long http_pct_decode(const char *in, size_t len, bool plus_is_space, char *out);

/* http_token_eq compares s[0..len) with the NUL-terminated lit, ASCII case-insensitively. */
bool http_token_eq(const char *s, size_t len, const char *lit);

#endif

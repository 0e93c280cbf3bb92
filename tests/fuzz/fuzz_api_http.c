/*
 * fuzz_api_http.c: arbitrary bytes through the HTTP request parsing of api/http_int.h.
 *
 * Checked on every input: finding the head's end, parsing it, decoding a chunked body (fed whole
 * and fed in random-sized pieces, which must agree) and percent-decoding never crash, never read
 * outside the input, and keep their promises: the head end lies inside the input, every string
 * of a parsed head points into it, statuses are the documented ones, a chunked body never
 * exceeds its limit, and decoding is independent of how the input is split.
 */
#include "api/http_int.h"
#include "base/buf.h"
#include "base/error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool inside(const char *p, size_t n, const char *base, size_t len)
{
    return n == 0 || (p >= base && p + n <= base + len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *s = (const char *)data;
    static http_head h;

    size_t end = http_head_end(s, size, 0);
    check(end <= size);
    if (size > 8)
        check(http_head_end(s, size, size / 2) == 0 || http_head_end(s, size, size / 2) <= size);
    int status = http_parse_head(s, end ? end : size, 64, &h);
    check(status == 0 || status == 400 || status == 415 || status == 417 || status == 431
        || status == 501 || status == 505);
    if (status == 0) {
        check(h.method_len > 0 && inside(h.method, h.method_len, s, size));
        check(inside(h.path, h.path_len, s, size) && inside(h.query, h.query_len, s, size));
        check(h.minor == 0 || h.minor == 1);
        check(h.n_headers <= 64);
        for (size_t k = 0; k < h.n_headers; k++) {
            check(inside(h.headers[k].name, h.headers[k].name_len, s, size));
            check(inside(h.headers[k].value, h.headers[k].value_len, s, size));
        }
        check(!(h.chunked && h.has_content_length));
        char *out = malloc(h.path_len + h.query_len + 1);
        check(out != NULL);
        long n = http_pct_decode(h.path, h.path_len, false, out);
        check(n >= -1 && n <= (long)h.path_len);
        n = http_pct_decode(h.query, h.query_len, true, out);
        check(n >= -1 && n <= (long)h.query_len);
        free(out);
    }

    /* The body decoder: whole, then in pieces whose sizes come from the input itself. */
    const size_t max_body = 1024;
    http_chunked a, b;
    http_chunked_init(&a);
    http_chunked_init(&b);
    tern_buf body_a = TERN_BUF_INIT, body_b = TERN_BUF_INIT;
    size_t used_a = 0;
    int rc_a = http_chunked_feed(&a, data, size, &body_a, max_body, &used_a);
    check(rc_a == 0 || rc_a == 1 || rc_a == 400 || rc_a == 413);
    check(used_a <= size && body_a.len <= max_body);
    if (rc_a == 0)
        check(used_a == size);
    size_t off = 0, step_i = 0;
    int rc_b = 0;
    while (off < size && rc_b == 0) {
        size_t step = 1 + (size_t)data[step_i++ % size] % 7;
        if (step > size - off)
            step = size - off;
        size_t used = 0;
        rc_b = http_chunked_feed(&b, data + off, step, &body_b, max_body, &used);
        check(used <= step);
        if (rc_b == 0)
            check(used == step);
        off += used;
    }
    check(rc_a == rc_b);
    if (rc_a == 0 || rc_a == 1) {
        check(off == used_a);
        check(body_a.len == body_b.len);
        check(body_a.len == 0 || memcmp(body_a.data, body_b.data, body_a.len) == 0);
    }
    tern_buf_free(&body_a);
    tern_buf_free(&body_b);
    return 0;
}

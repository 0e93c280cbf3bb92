/*
 * http_parse.c: the pure HTTP/1.1 request parsing declared in http_int.h (RFC 9112).
 *
 * Strict where leniency lets requests be smuggled or misread: no whitespace between a header
 * name and its colon, no obs-fold, Content-Length digits only (repeats must agree), never both
 * Content-Length and Transfer-Encoding, Transfer-Encoding only "chunked". Lenient where it is
 * harmless: bare LF line ends, optional blanks around header values, chunk extensions (skipped).
 * Every loop is bounded by its input; nothing here reads outside [buf, buf + len).
 */
#include "api/http_int.h"

#include "base/error.h"

#include <string.h>

/* RFC 9110 tchar. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

bool http_token_eq(const char *s, size_t len, const char *lit)
{
    size_t n = strlen(lit);
    if (n != len)
        return false;
    for (size_t k = 0; k < n; k++) {
        unsigned char a = (unsigned char)s[k], b = (unsigned char)lit[k];
        if (a >= 'A' && a <= 'Z')
            a = (unsigned char)(a + 32);
        if (b >= 'A' && b <= 'Z')
            b = (unsigned char)(b + 32);
        if (a != b)
            return false;
    }
    return true;
}

size_t http_head_end(const char *buf, size_t len, size_t from)
{
    /* Back up so a terminator split across two reads is still found. */
    size_t k = from > 3 ? from - 3 : 0;
    while (k < len) {
        const char *nl = memchr(buf + k, '\n', len - k);
        if (!nl)
            return 0;
        size_t at = (size_t)(nl - buf);
        if (at + 1 < len && buf[at + 1] == '\n')
            return at + 2;
        if (at + 2 < len && buf[at + 1] == '\r' && buf[at + 2] == '\n')
            return at + 3;
        k = at + 1;
    }
    return 0;
}

/* The next line of buf[*pos..len) without its "\r\n"/"\n"; false at the end. */
static bool next_line(const char *buf, size_t len, size_t *pos, const char **line, size_t *n)
{
    if (*pos >= len)
        return false;
    const char *s = buf + *pos;
    const char *nl = memchr(s, '\n', len - *pos);
    size_t l = nl ? (size_t)(nl - s) : len - *pos;
    *pos += nl ? l + 1 : l;
    if (l > 0 && s[l - 1] == '\r')
        l--;
    *line = s;
    *n = l;
    return true;
}

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Walks a comma-separated header value: sets *tok and *tn to the next trimmed element. */
static bool next_list_item(const char *v, size_t n, size_t *pos, const char **tok, size_t *tn)
{
    while (*pos < n && (is_blank(v[*pos]) || v[*pos] == ','))
        (*pos)++;
    if (*pos >= n)
        return false;
    size_t start = *pos;
    while (*pos < n && v[*pos] != ',')
        (*pos)++;
    size_t end = *pos;
    while (end > start && is_blank(v[end - 1]))
        end--;
    *tok = v + start;
    *tn = end - start;
    return true;
}

static int parse_request_line(const char *s, size_t n, http_head *h)
{
    size_t k = 0;
    while (k < n && is_tchar((unsigned char)s[k]))
        k++;
    if (k == 0 || k == n || s[k] != ' ')
        return 400;
    h->method = s;
    h->method_len = k;
    size_t t0 = ++k;
    while (k < n && s[k] != ' ') {
        unsigned char c = (unsigned char)s[k];
        if (c <= 0x20 || c == 0x7f)
            return 400;
        k++;
    }
    if (k == t0 || k == n)
        return 400;
    const char *target = s + t0;
    size_t tlen = k - t0;
    k++;
    const char *ver = s + k;
    size_t vlen = n - k;
    if (vlen != 8 || memcmp(ver, "HTTP/", 5) != 0 || ver[6] != '.')
        return 400;
    if (ver[5] < '0' || ver[5] > '9' || ver[7] < '0' || ver[7] > '9')
        return 400;
    if (ver[5] != '1' || (ver[7] != '0' && ver[7] != '1'))
        return 505;
    h->minor = ver[7] - '0';
    /* absolute-form "http://host/path?q": keep the path */
    if (target[0] != '/') {
        if (tlen == 1 && target[0] == '*') {
            h->path = target;
            h->path_len = 1;
            h->query = target + tlen;
            h->query_len = 0;
            return 0;
        }
        const char *sep = NULL;
        if (tlen > 7 && http_token_eq(target, 7, "http://"))
            sep = target + 7;
        else if (tlen > 8 && http_token_eq(target, 8, "https://"))
            sep = target + 8;
        if (!sep)
            return 400;
        const char *slash = memchr(sep, '/', tlen - (size_t)(sep - target));
        if (!slash)
            return 400;
        tlen -= (size_t)(slash - target);
        target = slash;
    }
    const char *q = memchr(target, '?', tlen);
    const char *hash = memchr(target, '#', tlen);
    if (hash)
        return 400; /* a fragment is never sent to a server */
    h->path = target;
    h->path_len = q ? (size_t)(q - target) : tlen;
    h->query = q ? q + 1 : target + tlen;
    h->query_len = q ? tlen - h->path_len - 1 : 0;
    return 0;
}

int http_parse_head(const char *buf, size_t len, size_t max_headers, http_head *h)
{
    if (max_headers > HTTP_MAX_HEADERS_HARD)
        max_headers = HTTP_MAX_HEADERS_HARD;
    memset(h, 0, offsetof(http_head, headers));
    h->has_content_length = false;
    h->content_length = 0;
    h->chunked = false;
    h->expect_continue = false;
    h->gzip = false;
    size_t pos = 0;
    const char *line;
    size_t n;
    /* RFC 9112 2.2: ignore empty lines before the request line. */
    do {
        if (!next_line(buf, len, &pos, &line, &n))
            return 400;
    } while (n == 0);
    int rc = parse_request_line(line, n, h);
    if (rc != 0)
        return rc;

    bool have_host = false, have_te = false, conn_close = false, conn_keep = false;
    while (next_line(buf, len, &pos, &line, &n)) {
        if (n == 0)
            break; /* the end of the head */
        if (is_blank(line[0]))
            return 400; /* obs-fold */
        size_t k = 0;
        while (k < n && is_tchar((unsigned char)line[k]))
            k++;
        if (k == 0 || k == n || line[k] != ':')
            return 400;
        size_t v = k + 1;
        while (v < n && is_blank(line[v]))
            v++;
        size_t e = n;
        while (e > v && is_blank(line[e - 1]))
            e--;
        for (size_t j = v; j < e; j++) {
            unsigned char c = (unsigned char)line[j];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return 400;
        }
        if (h->n_headers == max_headers)
            return 431;
        http_header *hd = &h->headers[h->n_headers++];
        hd->name = line;
        hd->name_len = k;
        hd->value = line + v;
        hd->value_len = e - v;

        if (http_token_eq(hd->name, k, "content-length")) {
            if (hd->value_len == 0 || hd->value_len > 19)
                return 400;
            uint64_t cl = 0;
            for (size_t j = 0; j < hd->value_len; j++) {
                unsigned d = (unsigned)(unsigned char)hd->value[j] - '0';
                if (d > 9)
                    return 400;
                cl = cl * 10 + d;
            }
            if (h->has_content_length && cl != h->content_length)
                return 400;
            h->has_content_length = true;
            h->content_length = cl;
        } else if (http_token_eq(hd->name, k, "transfer-encoding")) {
            size_t p = 0;
            const char *tok;
            size_t tn;
            while (next_list_item(hd->value, hd->value_len, &p, &tok, &tn)) {
                if (h->chunked || !http_token_eq(tok, tn, "chunked"))
                    return 501; /* chunked must be the only coding, once */
                h->chunked = true;
            }
            have_te = true;
        } else if (http_token_eq(hd->name, k, "host")) {
            if (have_host)
                return 400;
            have_host = true;
        } else if (http_token_eq(hd->name, k, "connection")) {
            size_t p = 0;
            const char *tok;
            size_t tn;
            while (next_list_item(hd->value, hd->value_len, &p, &tok, &tn)) {
                if (http_token_eq(tok, tn, "close"))
                    conn_close = true;
                else if (http_token_eq(tok, tn, "keep-alive"))
                    conn_keep = true;
            }
        } else if (http_token_eq(hd->name, k, "expect")) {
            if (!http_token_eq(hd->value, hd->value_len, "100-continue"))
                return 417;
            h->expect_continue = true;
        } else if (http_token_eq(hd->name, k, "content-encoding")) {
            size_t p = 0;
            const char *tok;
            size_t tn;
            while (next_list_item(hd->value, hd->value_len, &p, &tok, &tn)) {
                if (http_token_eq(tok, tn, "gzip") && !h->gzip)
                    h->gzip = true;
                else if (!http_token_eq(tok, tn, "identity"))
                    return 415;
            }
        }
    }
    if (have_te && (!h->chunked || h->has_content_length || h->minor == 0))
        return have_te && !h->chunked ? 501 : 400;
    if (h->minor == 1 && !have_host)
        return 400;
    h->keep_alive = h->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    return 0;
}

enum {
    CH_SIZE = 0, /* hex digits of the chunk size */
    CH_EXT,      /* chunk extension up to the line end */
    CH_DATA,
    CH_DATA_CR, /* the CRLF after the chunk data */
    CH_DATA_LF,
    CH_TRAILER_START, /* at the start of a trailer line (empty line = end) */
    CH_TRAILER,
    CH_LAST_LF, /* "\r" seen on an empty trailer line */
};

/* Longest size line (with extensions) and all trailer lines together. */
#define CH_MAX_LINE 4096
#define CH_MAX_TRAILERS 16384

void http_chunked_init(http_chunked *c)
{
    memset(c, 0, sizeof *c);
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int http_chunked_feed(
    http_chunked *c, const uint8_t *in, size_t len, tern_buf *body, size_t max_body, size_t *used)
{
    size_t k = 0;
    int rc = 0;
    while (k < len) {
        unsigned char ch = in[k];
        switch (c->state) {
        case CH_SIZE: {
            int v = hexval(ch);
            if (v >= 0) {
                if (c->n_digits == 15) {
                    rc = 413;
                    goto out;
                }
                c->remaining = c->remaining * 16 + (uint64_t)v;
                c->n_digits++;
                k++;
                break;
            }
            /* after the size: the line end, or blanks and extensions (";name=value") */
            if (c->n_digits == 0
                || (ch != '\r' && ch != '\n' && ch != ';' && ch != ' ' && ch != '\t')) {
                rc = 400;
                goto out;
            }
            if (c->remaining > max_body - body->len) {
                rc = 413;
                goto out;
            }
            c->line_bytes = 0;
            c->state = CH_EXT;
            break; /* this byte is looked at again as part of the extension */
        }
        case CH_EXT:
            k++;
            if (ch == '\n') {
                c->n_digits = 0;
                c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
                c->line_bytes = 0;
                break;
            }
            if (++c->line_bytes > CH_MAX_LINE || (ch < 0x20 && ch != '\r' && ch != '\t')) {
                rc = 400;
                goto out;
            }
            break;
        case CH_DATA: {
            size_t take = len - k;
            if (take > c->remaining)
                take = (size_t)c->remaining;
            if (tern_buf_append(body, in + k, take) != 0) {
                rc = TERN_ENOMEM;
                goto out;
            }
            k += take;
            c->remaining -= take;
            if (c->remaining == 0)
                c->state = CH_DATA_CR;
            break;
        }
        case CH_DATA_CR:
            k++;
            if (ch == '\r')
                c->state = CH_DATA_LF;
            else if (ch == '\n')
                c->state = CH_SIZE;
            else {
                rc = 400;
                goto out;
            }
            break;
        case CH_DATA_LF:
            k++;
            if (ch != '\n') {
                rc = 400;
                goto out;
            }
            c->state = CH_SIZE;
            break;
        case CH_TRAILER_START:
            k++;
            if (ch == '\n') {
                rc = 1;
                goto out;
            }
            if (ch == '\r') {
                c->state = CH_LAST_LF;
                break;
            }
            c->state = CH_TRAILER;
            if (++c->trailer_bytes > CH_MAX_TRAILERS) {
                rc = 400;
                goto out;
            }
            break;
        case CH_LAST_LF:
            k++;
            if (ch != '\n') {
                rc = 400;
                goto out;
            }
            rc = 1;
            goto out;
        case CH_TRAILER:
            k++;
            if (++c->trailer_bytes > CH_MAX_TRAILERS) {
                rc = 400;
                goto out;
            }
            if (ch == '\n')
                c->state = CH_TRAILER_START;
            break;
        default:
            rc = 400;
            goto out;
        }
    }
out:
    *used = k;
    return rc;
}

long http_pct_decode(const char *in, size_t len, bool plus_is_space, char *out)
{
    size_t n = 0;
    for (size_t k = 0; k < len; k++) {
        char c = in[k];
        if (c == '%') {
            if (k + 2 >= len)
                return -1;
            int hi = hexval((unsigned char)in[k + 1]), lo = hexval((unsigned char)in[k + 2]);
            if (hi < 0 || lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            k += 2;
        } else if (c == '+' && plus_is_space) {
            c = ' ';
        }
        if (c == '\0')
            return -1;
        out[n++] = c;
    }
    return (long)n;
}

/*
 * buf.c: growable byte buffer and bounded reader.
 */
#include "base/buf.h"

#include "base/alloc.h"
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void tern_buf_init(tern_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void tern_buf_free(tern_buf *b)
{
    tern_free(b->data);
    tern_buf_init(b);
}

void tern_buf_reset(tern_buf *b)
{
    b->len = 0;
}

int tern_buf_reserve(tern_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len)
        return TERN_ENOMEM;
    size_t need = b->len + extra;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *grown = tern_realloc(b->data, cap);
    if (!grown)
        return TERN_ENOMEM;
    b->data = grown;
    b->cap = cap;
    return 0;
}

int tern_buf_append(tern_buf *b, const void *bytes, size_t n)
{
    if (n == 0)
        return 0;
    int rc = tern_buf_reserve(b, n);
    if (rc)
        return rc;
    memcpy(b->data + b->len, bytes, n);
    b->len += n;
    return 0;
}

int tern_buf_append_u8(tern_buf *b, uint8_t v)
{
    return tern_buf_append(b, &v, 1);
}

int tern_buf_append_be16(tern_buf *b, uint16_t v)
{
    uint8_t x[2] = { (uint8_t)(v >> 8), (uint8_t)v };
    return tern_buf_append(b, x, sizeof x);
}

int tern_buf_append_be32(tern_buf *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
    return tern_buf_append(b, x, sizeof x);
}

int tern_buf_append_be64(tern_buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (56 - 8 * i));
    return tern_buf_append(b, x, sizeof x);
}

int tern_buf_append_le32(tern_buf *b, uint32_t v)
{
    uint8_t x[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    return tern_buf_append(b, x, sizeof x);
}

int tern_buf_append_le64(tern_buf *b, uint64_t v)
{
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    return tern_buf_append(b, x, sizeof x);
}

int tern_buf_append_str(tern_buf *b, const char *s)
{
    return tern_buf_append(b, s, strlen(s));
}

int tern_buf_printf(tern_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return TERN_EINVAL;
    int rc = tern_buf_reserve(b, (size_t)n + 1);
    if (rc)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

void tern_buf_consume(tern_buf *b, size_t n)
{
    TERN_ASSERT(n <= b->len);
    if (n < b->len)
        memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

uint8_t *tern_buf_steal(tern_buf *b, size_t *len_out)
{
    uint8_t *data = b->data;
    if (len_out)
        *len_out = b->len;
    tern_buf_init(b);
    return data;
}

void tern_reader_init(tern_reader *r, const void *data, size_t len)
{
    r->data = data;
    r->len = len;
    r->pos = 0;
}

int tern_reader_bytes(tern_reader *r, size_t n, const uint8_t **out)
{
    if (tern_reader_left(r) < n)
        return TERN_EPARTIAL;
    *out = r->data + r->pos;
    r->pos += n;
    return 0;
}

int tern_reader_u8(tern_reader *r, uint8_t *out)
{
    if (tern_reader_left(r) < 1)
        return TERN_EPARTIAL;
    *out = r->data[r->pos++];
    return 0;
}

static int read_be(tern_reader *r, size_t n, uint64_t *out)
{
    if (tern_reader_left(r) < n)
        return TERN_EPARTIAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | r->data[r->pos + i];
    r->pos += n;
    *out = v;
    return 0;
}

static int read_le(tern_reader *r, size_t n, uint64_t *out)
{
    if (tern_reader_left(r) < n)
        return TERN_EPARTIAL;
    uint64_t v = 0;
    for (size_t i = n; i > 0; i--)
        v = (v << 8) | r->data[r->pos + i - 1];
    r->pos += n;
    *out = v;
    return 0;
}

int tern_reader_be16(tern_reader *r, uint16_t *out)
{
    uint64_t v;
    int rc = read_be(r, 2, &v);
    if (rc == 0)
        *out = (uint16_t)v;
    return rc;
}

int tern_reader_be32(tern_reader *r, uint32_t *out)
{
    uint64_t v;
    int rc = read_be(r, 4, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int tern_reader_be64(tern_reader *r, uint64_t *out)
{
    return read_be(r, 8, out);
}

int tern_reader_le32(tern_reader *r, uint32_t *out)
{
    uint64_t v;
    int rc = read_le(r, 4, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int tern_reader_le64(tern_reader *r, uint64_t *out)
{
    return read_le(r, 8, out);
}

/*
 * varint.c: LEB128 encode/decode with bounds and overflow checks.
 */
#include "base/varint.h"

#include "base/error.h"

size_t tern_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t tern_varint_encode(uint8_t out[TERN_VARINT_MAX_BYTES], uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        out[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    out[n++] = (uint8_t)v;
    return n;
}

int tern_varint_append_u64(tern_buf *b, uint64_t v)
{
    uint8_t tmp[TERN_VARINT_MAX_BYTES];
    return tern_buf_append(b, tmp, tern_varint_encode(tmp, v));
}

int tern_varint_append_s64(tern_buf *b, int64_t v)
{
    return tern_varint_append_u64(b, tern_varint_zigzag(v));
}

/* decode reads at most max_bytes bytes; value bits beyond value_bits are TERN_EPROTO. */
static int decode(const uint8_t *data, size_t len, size_t max_bytes, unsigned value_bits,
    uint64_t *out, size_t *n_read)
{
    uint64_t v = 0;
    for (size_t i = 0; i < max_bytes; i++) {
        if (i >= len)
            return TERN_EPARTIAL;
        uint64_t group = data[i] & 0x7f;
        unsigned shift = (unsigned)(7 * i);
        /* Bits of this group that land at or above value_bits must be zero. */
        if (shift + 7 > value_bits && (group >> (value_bits - shift)) != 0)
            return TERN_EPROTO;
        v |= group << shift;
        if (!(data[i] & 0x80)) {
            *out = v;
            *n_read = i + 1;
            return 0;
        }
    }
    return TERN_EPROTO;
}

int tern_varint_decode_u64(const uint8_t *data, size_t len, uint64_t *out, size_t *n_read)
{
    return decode(data, len, TERN_VARINT_MAX_BYTES, 64, out, n_read);
}

int tern_varint_decode_s64(const uint8_t *data, size_t len, int64_t *out, size_t *n_read)
{
    uint64_t u;
    int rc = decode(data, len, TERN_VARINT_MAX_BYTES, 64, &u, n_read);
    if (rc == 0)
        *out = tern_varint_unzigzag(u);
    return rc;
}

int tern_varint_decode_u32(const uint8_t *data, size_t len, uint32_t *out, size_t *n_read)
{
    uint64_t u;
    int rc = decode(data, len, TERN_VARINT32_MAX_BYTES, 32, &u, n_read);
    if (rc == 0)
        *out = (uint32_t)u;
    return rc;
}

int tern_varint_decode_s32(const uint8_t *data, size_t len, int32_t *out, size_t *n_read)
{
    uint32_t u;
    int rc = tern_varint_decode_u32(data, len, &u, n_read);
    if (rc == 0)
        *out = (int32_t)(u >> 1) ^ -(int32_t)(u & 1);
    return rc;
}

int tern_varint_read_u64(tern_reader *r, uint64_t *out)
{
    size_t n;
    int rc = tern_reader_left(r)
        ? tern_varint_decode_u64(r->data + r->pos, tern_reader_left(r), out, &n)
        : TERN_EPARTIAL;
    if (rc == 0)
        r->pos += n;
    return rc;
}

int tern_varint_read_s64(tern_reader *r, int64_t *out)
{
    size_t n;
    int rc = tern_reader_left(r)
        ? tern_varint_decode_s64(r->data + r->pos, tern_reader_left(r), out, &n)
        : TERN_EPARTIAL;
    if (rc == 0)
        r->pos += n;
    return rc;
}

int tern_varint_read_u32(tern_reader *r, uint32_t *out)
{
    size_t n;
    int rc = tern_reader_left(r)
        ? tern_varint_decode_u32(r->data + r->pos, tern_reader_left(r), out, &n)
        : TERN_EPARTIAL;
    if (rc == 0)
        r->pos += n;
    return rc;
}

int tern_varint_read_s32(tern_reader *r, int32_t *out)
{
    size_t n;
    int rc = tern_reader_left(r)
        ? tern_varint_decode_s32(r->data + r->pos, tern_reader_left(r), out, &n)
        : TERN_EPARTIAL;
    if (rc == 0)
        r->pos += n;
    return rc;
}

/*
 * buf.h: a growable byte buffer that encoders append to, and a bounded reader for parsers.
 *
 * tern_buf owns its bytes (data[0..len)). Appends grow it geometrically; on allocation failure
 * an append returns TERN_ENOMEM and the buffer is unchanged. Encoders take a caller's tern_buf
 * and append to it (the VictoriaMetrics habit), so one buffer can be reused across messages.
 *
 * tern_reader reads untrusted bytes: every read checks the remaining length first and returns
 * TERN_EPARTIAL when the input ends early; nothing reads past len. Big-endian getters are for
 * wire formats (MQTT, Kafka), little-endian ones for tern's on-disk formats.
 * Neither type is thread-safe.
 */
#ifndef TERN_BASE_BUF_H
#define TERN_BASE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct tern_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} tern_buf;

#define TERN_BUF_INIT                                                                              \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void tern_buf_init(tern_buf *b);
/* tern_buf_free releases the bytes; the buffer is empty and reusable afterwards. */
void tern_buf_free(tern_buf *b);
/* tern_buf_reset empties the buffer but keeps its capacity. */
void tern_buf_reset(tern_buf *b);
/* tern_buf_reserve makes room for extra more bytes. Returns 0 or TERN_ENOMEM. */
int tern_buf_reserve(tern_buf *b, size_t extra);
/* tern_buf_append copies n bytes. Returns 0 or TERN_ENOMEM (buffer unchanged). */
int tern_buf_append(tern_buf *b, const void *bytes, size_t n);
int tern_buf_append_u8(tern_buf *b, uint8_t v);
int tern_buf_append_be16(tern_buf *b, uint16_t v);
int tern_buf_append_be32(tern_buf *b, uint32_t v);
int tern_buf_append_be64(tern_buf *b, uint64_t v);
int tern_buf_append_le32(tern_buf *b, uint32_t v);
int tern_buf_append_le64(tern_buf *b, uint64_t v);
/* tern_buf_append_str appends the bytes of a NUL-terminated string, without the NUL. */
int tern_buf_append_str(tern_buf *b, const char *s);
/* tern_buf_printf appends formatted text (no NUL is counted in len; one is kept after it). */
int tern_buf_printf(tern_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* tern_buf_consume drops the first n bytes (n <= len), moving the rest to the front. */
void tern_buf_consume(tern_buf *b, size_t n);
/* tern_buf_steal hands the bytes to the caller (free with tern_free); the buffer is emptied. */
uint8_t *tern_buf_steal(tern_buf *b, size_t *len_out);

typedef struct tern_reader {
    const uint8_t *data;
    size_t len;
    size_t pos;
} tern_reader;

void tern_reader_init(tern_reader *r, const void *data, size_t len);
static inline size_t tern_reader_left(const tern_reader *r)
{
    return r->len - r->pos;
}
/* Each getter returns 0, or TERN_EPARTIAL with the reader and *out unchanged. */
int tern_reader_u8(tern_reader *r, uint8_t *out);
int tern_reader_be16(tern_reader *r, uint16_t *out);
int tern_reader_be32(tern_reader *r, uint32_t *out);
int tern_reader_be64(tern_reader *r, uint64_t *out);
int tern_reader_le32(tern_reader *r, uint32_t *out);
int tern_reader_le64(tern_reader *r, uint64_t *out);
/* tern_reader_bytes points *out at the next n bytes (borrowed from the input) and skips them. */
int tern_reader_bytes(tern_reader *r, size_t n, const uint8_t **out);

#endif

/*
 * varint.h: unsigned LEB128 varints and zigzag-encoded signed ones (the encoding of protobuf
 * and of Kafka's record fields).
 *
 * A varint stores 7 bits per byte, least significant group first; the high bit of each byte
 * says another byte follows. A u64 takes 1..10 bytes, a u32 1..5. Signed values are zigzag
 * mapped first (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) so small magnitudes stay short.
 *
 * Encoders append to a caller's tern_buf. Decoders read untrusted bytes and are bounded:
 * TERN_EPARTIAL when the input ends inside a varint (a valid prefix: wait for more bytes),
 * TERN_EPROTO when it can never be valid (longer than 10 bytes / 5 for u32, or a value that
 * overflows the type). Non-minimal encodings (e.g. 0x80 0x00 for 0) are accepted, as protobuf
 * and Kafka do. Pure functions, thread-safe.
 */
#ifndef TERN_BASE_VARINT_H
#define TERN_BASE_VARINT_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define TERN_VARINT_MAX_BYTES 10
#define TERN_VARINT32_MAX_BYTES 5

/* tern_varint_zigzag maps a signed value to the unsigned one that is encoded. */
static inline uint64_t tern_varint_zigzag(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}

/* tern_varint_unzigzag is the inverse of tern_varint_zigzag. */
static inline int64_t tern_varint_unzigzag(uint64_t u)
{
    return (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
}

/* tern_varint_len returns how many bytes tern_varint_append_u64(v) writes (1..10). */
size_t tern_varint_len(uint64_t v);

/*
 * tern_varint_encode writes v into out (which must hold TERN_VARINT_MAX_BYTES) and returns the
 * number of bytes written.
 */
size_t tern_varint_encode(uint8_t out[TERN_VARINT_MAX_BYTES], uint64_t v);

/* tern_varint_append_u64 appends v. Returns 0 or TERN_ENOMEM (b unchanged). */
int tern_varint_append_u64(tern_buf *b, uint64_t v);
/* tern_varint_append_s64 appends zigzag(v). Returns 0 or TERN_ENOMEM (b unchanged). */
int tern_varint_append_s64(tern_buf *b, int64_t v);

/*
 * tern_varint_decode_u64 reads one varint from data[0..len). On success returns 0, sets *out
 * and *n_read (bytes consumed). Errors: TERN_EPARTIAL (input ends inside the varint),
 * TERN_EPROTO (more than 10 bytes, or bits beyond 64). Outputs are untouched on error.
 */
int tern_varint_decode_u64(const uint8_t *data, size_t len, uint64_t *out, size_t *n_read);
/* tern_varint_decode_s64 is tern_varint_decode_u64 followed by unzigzag. */
int tern_varint_decode_s64(const uint8_t *data, size_t len, int64_t *out, size_t *n_read);
/*
 * tern_varint_decode_u32 reads a varint of at most 5 bytes whose value fits 32 bits; errors as
 * for u64 (TERN_EPROTO beyond 5 bytes or 32 bits).
 */
int tern_varint_decode_u32(const uint8_t *data, size_t len, uint32_t *out, size_t *n_read);
/* tern_varint_decode_s32 is tern_varint_decode_u32 followed by a 32-bit unzigzag. */
int tern_varint_decode_s32(const uint8_t *data, size_t len, int32_t *out, size_t *n_read);

/* Reader forms: same results; the reader advances only on success. */
int tern_varint_read_u64(tern_reader *r, uint64_t *out);
int tern_varint_read_s64(tern_reader *r, int64_t *out);
int tern_varint_read_u32(tern_reader *r, uint32_t *out);
int tern_varint_read_s32(tern_reader *r, int32_t *out);

#endif

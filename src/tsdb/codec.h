/*
 * codec.h: the TSDB chunk codec. One chunk holds 1..TERN_CHUNK_MAX_POINTS points of one series
 * (strictly ascending int64 timestamps and float64 or int64 values) as a self-describing byte
 * string: a version byte, the value kind and the encodings chosen for that chunk, then the
 * timestamp and value sections. The byte layout is specified in docs/formats/tsdb-chunk.md.
 *
 * Promises:
 *   - exact round trip: the timestamps and the bits of every value (NaN payloads, +/-Inf, -0.0,
 *     subnormals) come back as they were given;
 *   - encodings are chosen per chunk: regular timestamps cost a few bytes per chunk; decimal
 *     float values (sensor readings with a few decimals) are stored as scaled integers, delta or
 *     delta-of-delta coded and bit-packed in frames; other floats fall back to Gorilla XOR or raw;
 *     int64 values use the same integer pipeline;
 *   - decoders treat their input as untrusted: corrupt bytes give TERN_ECORRUPT, never a crash,
 *     an out-of-bounds access or more points than the caller's capacity.
 * The container (block file, head) records each chunk's exact length. Pure functions with no
 * shared state: thread-safe.
 */
#ifndef TERN_TSDB_CODEC_H
#define TERN_TSDB_CODEC_H

#include "base/buf.h"

#include <stddef.h>
#include <stdint.h>

#define TERN_CHUNK_MAX_POINTS 65536u

typedef enum { TERN_VALUE_F64 = 1, TERN_VALUE_I64 = 2 } tern_value_kind;

/* Timestamp encodings (tern_chunk_info.ts_encoding); docs/formats/tsdb-chunk.md names each. */
#define TERN_CHUNK_TS_REGULAR 1 /* min_ts + i * step: no per-point bytes */
#define TERN_CHUNK_TS_INT 2     /* the integer pipeline (delta / delta-of-delta, bit-packed) */
#define TERN_CHUNK_TS_GORILLA 3 /* Gorilla's delta-of-delta bit buckets */

/* Value encodings (tern_chunk_info.value_encoding). */
#define TERN_CHUNK_VAL_DECIMAL 1 /* f64: scaled integers m / 10^e through the integer pipeline */
#define TERN_CHUNK_VAL_GORILLA 2 /* f64: Gorilla XOR with leading/trailing zero reuse */
#define TERN_CHUNK_VAL_RAW 3     /* f64: 8 bytes little-endian per value */
#define TERN_CHUNK_VAL_INT 4     /* i64: the integer pipeline */

typedef struct tern_chunk_info {
    uint32_t count;                      /* points in the chunk, >= 1 */
    int64_t min_ts, max_ts;              /* first and last timestamp (ms since epoch) */
    tern_value_kind kind;                /* F64 or I64 */
    uint8_t ts_encoding, value_encoding; /* TERN_CHUNK_TS_* and TERN_CHUNK_VAL_* */
} tern_chunk_info;

/*
 * tern_chunk_encode_f64 appends ONE chunk holding the n points (ts[i], vals[i]) to out
 * (1 <= n <= TERN_CHUNK_MAX_POINTS). ts must be strictly ascending (the caller sorts and
 * dedups). The encodings are chosen automatically. ts and vals are borrowed.
 * Returns 0, TERN_EINVAL (n out of range, ts not strictly ascending, NULL arrays) or
 * TERN_ENOMEM; on error out->len is unchanged.
 */
int tern_chunk_encode_f64(tern_buf *out, const int64_t *ts, const double *vals, size_t n);

/* tern_chunk_encode_i64 is tern_chunk_encode_f64 for int64 values (same contract). */
int tern_chunk_encode_i64(tern_buf *out, const int64_t *ts, const int64_t *vals, size_t n);

/*
 * tern_chunk_encode_f64_fast is tern_chunk_encode_f64 with less search, for chunks that are
 * re-encoded later (the head's fragments, written for every 14 points): values that are decimals
 * are stored as decimals without measuring Gorilla against them, and others as Gorilla without
 * measuring raw. Same format, same contract; the chunk may be larger than the thorough one.
 */
int tern_chunk_encode_f64_fast(tern_buf *out, const int64_t *ts, const double *vals, size_t n);

/*
 * tern_chunk_bound is an upper bound of the bytes one chunk of n points takes, whatever its
 * values: with tern_buf_reserve(out, tern_chunk_bound(n)) done, encoding n points never grows
 * out (so out may be a view of caller storage of that size). TERN_CHUNK_BOUND is the same as a
 * constant expression, to size such storage.
 */
#define TERN_CHUNK_BOUND(n) (128 + 40 * (size_t)(n))
size_t tern_chunk_bound(size_t n);

/*
 * tern_chunk_info_read parses the header of the chunk in data[0..len) (len = the chunk's exact
 * length, as recorded by the container) into *out (set only on success).
 * Returns 0, TERN_EPROTO (unknown format version) or TERN_ECORRUPT (malformed header).
 * It checks the header only; the decoders check the rest.
 */
int tern_chunk_info_read(const uint8_t *data, size_t len, tern_chunk_info *out);

/*
 * tern_chunk_decode_f64 decodes every point of an F64 chunk into ts[0..count) and
 * vals[0..count) (caller arrays of capacity cap) and sets *n = count. The outputs are
 * meaningful only on success (the arrays may be partly written on error; *n is set only on
 * success). Returns 0, TERN_EINVAL (the chunk holds I64 values, or cap < count),
 * TERN_EPROTO (unknown version) or TERN_ECORRUPT (malformed or trailing bytes).
 */
int tern_chunk_decode_f64(
    const uint8_t *data, size_t len, int64_t *ts, double *vals, size_t cap, size_t *n);

/* tern_chunk_decode_i64 is tern_chunk_decode_f64 for I64 chunks (TERN_EINVAL on an F64 chunk). */
int tern_chunk_decode_i64(
    const uint8_t *data, size_t len, int64_t *ts, int64_t *vals, size_t cap, size_t *n);

#endif

/*
 * codec_int.h: private entry points of the chunk codec, for tests and benchmarks only.
 * They encode with a forced encoding instead of the automatic choice, so a benchmark can
 * measure plain Gorilla (TERN_CHUNK_TS_GORILLA + TERN_CHUNK_VAL_GORILLA) next to the default.
 */
#ifndef TERN_TSDB_CODEC_INT_H
#define TERN_TSDB_CODEC_INT_H

#include "tsdb/codec.h"

/*
 * tern_chunk_encode_f64_with is tern_chunk_encode_f64 with the timestamp encoding ts_enc
 * (TERN_CHUNK_TS_*) and the value encoding val_enc (TERN_CHUNK_VAL_*) forced; 0 for either
 * means automatic. Returns TERN_EINVAL also when the forced encoding cannot hold the data
 * (TS_REGULAR on irregular timestamps, VAL_DECIMAL on values that are not all decimals,
 * VAL_INT on floats).
 */
int tern_chunk_encode_f64_with(tern_buf *out, const int64_t *ts, const double *vals, size_t n,
    unsigned ts_enc, unsigned val_enc);

/* tern_chunk_encode_i64_with is the same for int64 values (val_enc 0 or TERN_CHUNK_VAL_INT). */
int tern_chunk_encode_i64_with(tern_buf *out, const int64_t *ts, const int64_t *vals, size_t n,
    unsigned ts_enc, unsigned val_enc);

#endif

/*
 * fuzz_tsdb_sketch.c: arbitrary bytes as an encoded quantile sketch. Decoding must never crash;
 * when it succeeds, encode -> decode must give an equal sketch whose encoding is byte-for-byte
 * the same (the encoding is canonical), and quantiles, adds and a self-merge must work.
 */
#include "tsdb/sketch.h"

#include "base/buf.h"
#include "base/error.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size);

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
    tern_sketch s;
    int rc = tern_sketch_decode(&s, input, input_size);
    if (rc != 0) {
        if (rc != TERN_ECORRUPT && rc != TERN_EVERSION && rc != TERN_ENOMEM)
            abort();
        return 0;
    }
    tern_buf e1 = TERN_BUF_INIT, e2 = TERN_BUF_INIT;
    tern_sketch t;
    if (tern_sketch_encode(&s, &e1) != 0 || tern_sketch_decode(&t, e1.data, e1.len) != 0)
        abort();
    if (!tern_sketch_equal(&s, &t) || tern_sketch_encode(&t, &e2) != 0 || e1.len != e2.len
        || memcmp(e1.data, e2.data, e1.len) != 0)
        abort();
    double prev = -__builtin_inf();
    for (int i = 0; i <= 20; i++) {
        double v;
        rc = tern_sketch_quantile(&s, i / 20.0, &v);
        if (rc == TERN_ENOENT && tern_sketch_count(&s) == 0)
            break;
        if (rc != 0 || v < prev || v != v)
            abort();
        prev = v;
    }
    uint64_t n = tern_sketch_count(&s);
    if (tern_sketch_merge(&t, &s) == 0 && tern_sketch_count(&t) != 2 * n)
        abort();
    tern_sketch_add(&s, 1.0);
    tern_sketch_free(&s);
    tern_sketch_free(&t);
    tern_buf_free(&e1);
    tern_buf_free(&e2);
    return 0;
}

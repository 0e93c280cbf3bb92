/*
 * fuzz_tsdb_warm.c: arbitrary bytes as a warm chunk (1-minute windows). Decoding must stay in
 * bounds and fail cleanly; what decodes must re-encode to a chunk that decodes to the same
 * windows (starts, counts, aggregates bit for bit, sketch bytes).
 */
#include "base/error.h"
#include "tsdb/tsdb_int.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tsdb_windows a = { TERN_BUF_INIT, TERN_BUF_INIT }, b = { TERN_BUF_INIT, TERN_BUF_INIT };
    tern_buf enc = TERN_BUF_INIT;
    int rc = tsdb_warm_decode(data, size, INT64_MIN, INT64_MAX, &a);
    if (rc == 0 && tsdb_windows_count(&a) > 0) {
        if (tsdb_warm_encode(&a, &enc) != 0)
            abort();
        if (tsdb_warm_decode(enc.data, enc.len, INT64_MIN, INT64_MAX, &b) != 0)
            abort();
        size_t n = tsdb_windows_count(&a);
        if (tsdb_windows_count(&b) != n)
            abort();
        const tsdb_window *wa = (const tsdb_window *)(const void *)a.w.data;
        const tsdb_window *wb = (const tsdb_window *)(const void *)b.w.data;
        for (size_t i = 0; i < n; i++) {
            if (wa[i].start != wb[i].start || wa[i].count != wb[i].count
                || memcmp(&wa[i].sum, &wb[i].sum, sizeof(double)) != 0
                || memcmp(&wa[i].min, &wb[i].min, sizeof(double)) != 0
                || memcmp(&wa[i].max, &wb[i].max, sizeof(double)) != 0
                || memcmp(&wa[i].last, &wb[i].last, sizeof(double)) != 0
                || wa[i].sk_len != wb[i].sk_len
                || memcmp(a.sk.data + wa[i].sk_off, b.sk.data + wb[i].sk_off, wa[i].sk_len) != 0)
                abort();
        }
    } else if (rc != 0 && rc != TERN_ECORRUPT && rc != TERN_EVERSION && rc != TERN_ENOMEM) {
        abort();
    }
    tsdb_windows_free(&a);
    tsdb_windows_free(&b);
    tern_buf_free(&enc);
    return 0;
}

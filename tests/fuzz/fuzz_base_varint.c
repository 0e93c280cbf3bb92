/*
 * fuzz_base_varint.c: arbitrary bytes as a sequence of varints. Every decoder must stay in
 * bounds and agree with the others; every decoded value must re-encode to a varint that
 * decodes to the same value in tern_varint_len bytes, no longer than what was read.
 */
#include "base/buf.h"
#include "base/error.h"
#include "base/varint.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    tern_reader r;
    tern_reader_init(&r, data, size);
    tern_buf b = TERN_BUF_INIT;
    while (tern_reader_left(&r) > 0) {
        const uint8_t *p = r.data + r.pos;
        size_t left = tern_reader_left(&r);
        uint64_t u;
        size_t n;
        int rc = tern_varint_decode_u64(p, left, &u, &n);
        if (rc == TERN_EPARTIAL && left >= TERN_VARINT_MAX_BYTES)
            abort();
        if (rc != 0) {
            if (rc != TERN_EPARTIAL && rc != TERN_EPROTO)
                abort();
            break;
        }
        if (n == 0 || n > left || tern_varint_len(u) > n)
            abort();
        /* The signed and 32-bit decoders agree with the unsigned one. */
        int64_t s;
        size_t ns;
        if (tern_varint_decode_s64(p, left, &s, &ns) != 0 || ns != n
            || s != tern_varint_unzigzag(u))
            abort();
        uint32_t u32;
        size_t n32;
        rc = tern_varint_decode_u32(p, left, &u32, &n32);
        if (rc == 0 && (u32 != u || n32 != n))
            abort();
        if (rc != 0 && (u <= UINT32_MAX && n <= TERN_VARINT32_MAX_BYTES))
            abort();
        /* Re-encode and decode again. */
        tern_buf_reset(&b);
        if (tern_varint_append_u64(&b, u) != 0)
            break;
        uint64_t again;
        size_t n_again;
        if (tern_varint_decode_u64(b.data, b.len, &again, &n_again) != 0 || again != u
            || n_again != b.len || b.len != tern_varint_len(u))
            abort();
        if (tern_varint_read_u64(&r, &again) != 0 || again != u)
            abort();
    }
    tern_buf_free(&b);
    return 0;
}

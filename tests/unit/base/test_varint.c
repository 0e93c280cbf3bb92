/*
 * test_varint.c: LEB128 and zigzag round trips at every boundary, known encodings, and the
 * bounded decoder's errors (partial, too long, overflow), for 64- and 32-bit forms.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/error.h"
#include "base/varint.h"

#include <string.h>

static void test_known_encodings(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_varint_append_u64(&b, 0), 0);
    assert_int_equal(tern_varint_append_u64(&b, 1), 0);
    assert_int_equal(tern_varint_append_u64(&b, 127), 0);
    assert_int_equal(tern_varint_append_u64(&b, 128), 0);
    assert_int_equal(tern_varint_append_u64(&b, 300), 0);
    assert_int_equal(tern_varint_append_s64(&b, -1), 0);
    assert_int_equal(tern_varint_append_s64(&b, 1), 0);
    assert_int_equal(tern_varint_append_s64(&b, -64), 0);
    static const uint8_t want[] = { 0x00, 0x01, 0x7f, 0x80, 0x01, 0xac, 0x02, 0x01, 0x02, 0x7f };
    assert_int_equal(b.len, sizeof want);
    assert_memory_equal(b.data, want, sizeof want);
    tern_buf_reset(&b);
    assert_int_equal(tern_varint_append_u64(&b, UINT64_MAX), 0);
    static const uint8_t max[] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    assert_int_equal(b.len, 10);
    assert_memory_equal(b.data, max, 10);
    tern_buf_free(&b);
}

static void test_zigzag(void **state)
{
    (void)state;
    assert_int_equal(tern_varint_zigzag(0), 0);
    assert_int_equal(tern_varint_zigzag(-1), 1);
    assert_int_equal(tern_varint_zigzag(1), 2);
    assert_int_equal(tern_varint_zigzag(-2), 3);
    assert_true(tern_varint_zigzag(INT64_MAX) == UINT64_MAX - 1);
    assert_true(tern_varint_zigzag(INT64_MIN) == UINT64_MAX);
    assert_true(tern_varint_unzigzag(UINT64_MAX) == INT64_MIN);
    assert_true(tern_varint_unzigzag(UINT64_MAX - 1) == INT64_MAX);
}

static void test_round_trip_boundaries(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    for (unsigned bit = 0; bit < 64; bit++) {
        uint64_t vals[3] = { (1ull << bit) - 1, 1ull << bit, (1ull << bit) + 1 };
        for (int j = 0; j < 3; j++) {
            uint64_t v = vals[j];
            tern_buf_reset(&b);
            assert_int_equal(tern_varint_append_u64(&b, v), 0);
            assert_int_equal(b.len, tern_varint_len(v));
            uint64_t got;
            size_t n;
            assert_int_equal(tern_varint_decode_u64(b.data, b.len, &got, &n), 0);
            assert_true(got == v);
            assert_int_equal(n, b.len);
            /* Every proper prefix is partial. */
            for (size_t cut = 0; cut < b.len; cut++)
                assert_int_equal(tern_varint_decode_u64(b.data, cut, &got, &n), TERN_EPARTIAL);
            int64_t s = (int64_t)v, sgot;
            tern_buf_reset(&b);
            assert_int_equal(tern_varint_append_s64(&b, s), 0);
            assert_int_equal(tern_varint_decode_s64(b.data, b.len, &sgot, &n), 0);
            assert_true(sgot == s);
            if (s == INT64_MIN)
                continue; /* -s would overflow */
            tern_buf_reset(&b);
            assert_int_equal(tern_varint_append_s64(&b, -s), 0);
            assert_int_equal(tern_varint_decode_s64(b.data, b.len, &sgot, &n), 0);
            assert_true(sgot == -s);
        }
    }
    tern_buf_free(&b);
}

static void test_decode_errors(void **state)
{
    (void)state;
    uint64_t v = 42;
    size_t n = 99;
    /* 11 continuation bytes: too long, even though more might follow. */
    uint8_t eleven[11];
    memset(eleven, 0x80, sizeof eleven);
    assert_int_equal(tern_varint_decode_u64(eleven, 11, &v, &n), TERN_EPROTO);
    assert_int_equal(tern_varint_decode_u64(eleven, 10, &v, &n), TERN_EPROTO);
    assert_int_equal(tern_varint_decode_u64(eleven, 9, &v, &n), TERN_EPARTIAL);
    /* 10th byte carrying more than the 64th bit: overflow. */
    uint8_t over[10] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02 };
    assert_int_equal(tern_varint_decode_u64(over, 10, &v, &n), TERN_EPROTO);
    assert_int_equal(v, 42); /* untouched on error */
    assert_int_equal(n, 99);
    assert_int_equal(tern_varint_decode_u64(NULL, 0, &v, &n), TERN_EPARTIAL);
    /* Non-minimal but in range is accepted. */
    uint8_t padded[3] = { 0x81, 0x80, 0x00 };
    assert_int_equal(tern_varint_decode_u64(padded, 3, &v, &n), 0);
    assert_int_equal(v, 1);
    assert_int_equal(n, 3);
}

static void test_u32_forms(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    uint32_t u;
    int32_t s;
    size_t n;
    assert_int_equal(tern_varint_append_u64(&b, UINT32_MAX), 0);
    assert_int_equal(b.len, 5);
    assert_int_equal(tern_varint_decode_u32(b.data, b.len, &u, &n), 0);
    assert_int_equal(u, UINT32_MAX);
    tern_buf_reset(&b);
    assert_int_equal(tern_varint_append_u64(&b, (uint64_t)UINT32_MAX + 1), 0);
    assert_int_equal(tern_varint_decode_u32(b.data, b.len, &u, &n), TERN_EPROTO);
    tern_buf_reset(&b);
    assert_int_equal(tern_varint_append_s64(&b, INT32_MIN), 0);
    assert_int_equal(tern_varint_decode_s32(b.data, b.len, &s, &n), 0);
    assert_int_equal(s, INT32_MIN);
    tern_buf_reset(&b);
    assert_int_equal(tern_varint_append_s64(&b, -300), 0);
    assert_int_equal(tern_varint_decode_s32(b.data, b.len, &s, &n), 0);
    assert_int_equal(s, -300);
    uint8_t six[6] = { 0x80, 0x80, 0x80, 0x80, 0x80, 0x00 };
    assert_int_equal(tern_varint_decode_u32(six, 6, &u, &n), TERN_EPROTO);
    assert_int_equal(tern_varint_decode_u32(six, 4, &u, &n), TERN_EPARTIAL);
    tern_buf_free(&b);
}

static void test_reader_forms(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_varint_append_u64(&b, 5), 0);
    assert_int_equal(tern_varint_append_s64(&b, -5), 0);
    assert_int_equal(tern_varint_append_u64(&b, 70000), 0);
    assert_int_equal(tern_varint_append_s64(&b, -70000), 0);
    assert_int_equal(tern_buf_append_u8(&b, 0x80), 0); /* a truncated varint */
    tern_reader r;
    tern_reader_init(&r, b.data, b.len);
    uint64_t u64;
    int64_t s64;
    uint32_t u32;
    int32_t s32;
    assert_int_equal(tern_varint_read_u64(&r, &u64), 0);
    assert_int_equal(u64, 5);
    assert_int_equal(tern_varint_read_s64(&r, &s64), 0);
    assert_int_equal(s64, -5);
    assert_int_equal(tern_varint_read_u32(&r, &u32), 0);
    assert_int_equal(u32, 70000);
    assert_int_equal(tern_varint_read_s32(&r, &s32), 0);
    assert_int_equal(s32, -70000);
    size_t pos = r.pos;
    assert_int_equal(tern_varint_read_u64(&r, &u64), TERN_EPARTIAL);
    assert_int_equal(r.pos, pos); /* not advanced */
    r.pos = r.len;
    assert_int_equal(tern_varint_read_s32(&r, &s32), TERN_EPARTIAL);
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known_encodings),
        cmocka_unit_test(test_zigzag),
        cmocka_unit_test(test_round_trip_boundaries),
        cmocka_unit_test(test_decode_errors),
        cmocka_unit_test(test_u32_forms),
        cmocka_unit_test(test_reader_forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

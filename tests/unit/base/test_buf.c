/*
 * test_buf.c: tern_buf growth, endian appends, consume/steal, and the bounded reader.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"

#include <string.h>

static void test_append_grows_and_keeps_bytes(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    for (int i = 0; i < 1000; i++)
        assert_int_equal(tern_buf_append_u8(&b, (uint8_t)i), 0);
    assert_int_equal(b.len, 1000);
    assert_true(b.cap >= 1000);
    for (int i = 0; i < 1000; i++)
        assert_int_equal(b.data[i], (uint8_t)i);
    tern_buf_free(&b);
    assert_null(b.data);
    assert_int_equal(b.len, 0);
}

static void test_endian_round_trip(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append_be16(&b, 0x0102), 0);
    assert_int_equal(tern_buf_append_be32(&b, 0x03040506), 0);
    assert_int_equal(tern_buf_append_be64(&b, 0x0708090a0b0c0d0eULL), 0);
    assert_int_equal(tern_buf_append_le32(&b, 0x11223344), 0);
    assert_int_equal(tern_buf_append_le64(&b, 0x5566778899aabbccULL), 0);
    static const uint8_t want_prefix[] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 0x44 };
    assert_memory_equal(b.data, want_prefix, sizeof want_prefix);

    tern_reader r;
    tern_reader_init(&r, b.data, b.len);
    uint16_t v16;
    uint32_t v32;
    uint64_t v64;
    assert_int_equal(tern_reader_be16(&r, &v16), 0);
    assert_int_equal(v16, 0x0102);
    assert_int_equal(tern_reader_be32(&r, &v32), 0);
    assert_int_equal(v32, 0x03040506);
    assert_int_equal(tern_reader_be64(&r, &v64), 0);
    assert_true(v64 == 0x0708090a0b0c0d0eULL);
    assert_int_equal(tern_reader_le32(&r, &v32), 0);
    assert_int_equal(v32, 0x11223344);
    assert_int_equal(tern_reader_le64(&r, &v64), 0);
    assert_true(v64 == 0x5566778899aabbccULL);
    assert_int_equal(tern_reader_left(&r), 0);
    tern_buf_free(&b);
}

static void test_reader_never_reads_past_end(void **state)
{
    (void)state;
    const uint8_t three[3] = { 1, 2, 3 };
    tern_reader r;
    tern_reader_init(&r, three, sizeof three);
    uint32_t v32 = 77;
    assert_int_equal(tern_reader_be32(&r, &v32), TERN_EPARTIAL);
    assert_int_equal(v32, 77); /* unchanged on failure */
    assert_int_equal(r.pos, 0);
    const uint8_t *p = NULL;
    assert_int_equal(tern_reader_bytes(&r, 4, &p), TERN_EPARTIAL);
    assert_int_equal(tern_reader_bytes(&r, 3, &p), 0);
    assert_ptr_equal(p, three);
    uint8_t v8;
    assert_int_equal(tern_reader_u8(&r, &v8), TERN_EPARTIAL);
}

static void test_consume_printf_steal(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_printf(&b, "%s-%d", "abc", 42), 0);
    assert_int_equal(b.len, 6);
    assert_memory_equal(b.data, "abc-42", 6);
    tern_buf_consume(&b, 4);
    assert_int_equal(b.len, 2);
    assert_memory_equal(b.data, "42", 2);
    size_t len = 0;
    uint8_t *bytes = tern_buf_steal(&b, &len);
    assert_int_equal(len, 2);
    assert_null(b.data);
    tern_free(bytes);
}

static void test_append_failure_leaves_buffer_unchanged(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append_str(&b, "keep"), 0);
    char big[1000];
    memset(big, 'x', sizeof big);
    tern_alloc_fail_after(0);
    int rc = tern_buf_append(&b, big, sizeof big);
    tern_alloc_fail_after(-1);
    assert_int_equal(rc, TERN_ENOMEM);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "keep", 4);
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_append_grows_and_keeps_bytes),
        cmocka_unit_test(test_endian_round_trip),
        cmocka_unit_test(test_reader_never_reads_past_end),
        cmocka_unit_test(test_consume_printf_steal),
        cmocka_unit_test(test_append_failure_leaves_buffer_unchanged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

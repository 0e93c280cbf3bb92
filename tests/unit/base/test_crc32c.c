/*
 * test_crc32c.c: CRC-32C against published vectors (the check value and RFC 3720 B.4), the
 * incremental API, and agreement of the hardware and table paths on every length and alignment.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/crc32c.h"

#include <stdlib.h>
#include <string.h>

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn fn)
{
    uint8_t buf[48];
    assert_int_equal(fn(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(fn(0, "", 0), 0);
    /* RFC 3720 B.4: 32 bytes of zeros, of ones, incrementing, decrementing. */
    memset(buf, 0, 32);
    assert_int_equal(fn(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xff, 32);
    assert_int_equal(fn(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(fn(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(fn(0, buf, 32), 0x113FDB5Cu);
    /* RFC 3720 B.4: an iSCSI SCSI Read (10) command PDU. */
    static const uint8_t pdu[48] = {
        0x01,
        0xc0,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x14,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x04,
        0x00,
        0x00,
        0x00,
        0x00,
        0x14,
        0x00,
        0x00,
        0x00,
        0x18,
        0x28,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x02,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
        0x00,
    };
    assert_int_equal(fn(0, pdu, sizeof pdu), 0xD9963A56u);
}

static void test_vectors_default(void **state)
{
    (void)state;
    check_vectors(tern_crc32c_update);
    assert_int_equal(tern_crc32c("123456789", 9), 0xE3069283u);
}

static void test_vectors_sw(void **state)
{
    (void)state;
    check_vectors(tern_crc32c_update_sw);
}

static void test_vectors_hw(void **state)
{
    (void)state;
    /* Without SSE4.2 this runs the fallback: still must be right. */
    check_vectors(tern_crc32c_update_hw);
}

static void test_incremental(void **state)
{
    (void)state;
    const char *s = "The quick brown fox jumps over the lazy dog";
    size_t n = strlen(s);
    uint32_t whole = tern_crc32c(s, n);
    for (size_t cut = 0; cut <= n; cut++) {
        uint32_t c = tern_crc32c_update(0, s, cut);
        c = tern_crc32c_update(c, s + cut, n - cut);
        assert_int_equal(c, whole);
        uint32_t c2 = tern_crc32c_update_sw(0, s, cut);
        assert_int_equal(tern_crc32c_update_hw(c2, s + cut, n - cut), whole);
    }
}

static void test_paths_agree(void **state)
{
    (void)state;
    enum { MAX = 1024, ALIGN = 16 };
    uint8_t *buf = malloc(MAX + ALIGN);
    assert_non_null(buf);
    srand(12345);
    for (size_t i = 0; i < MAX + ALIGN; i++)
        buf[i] = (uint8_t)rand();
    for (size_t off = 0; off < ALIGN; off++) {
        for (size_t len = 0; len <= MAX; len++) {
            uint32_t sw = tern_crc32c_update_sw(0x12345678u, buf + off, len);
            uint32_t hw = tern_crc32c_update_hw(0x12345678u, buf + off, len);
            if (sw != hw)
                fail_msg("paths disagree at offset %zu length %zu", off, len);
        }
    }
    free(buf);
}

/* Long buffers (three chains at once in the hw path, 3 x 4 KiB rounds): lengths around the
 * round size and a few rounds plus tails, from unaligned starts, seeded with a non-zero CRC. */
static void test_long_buffers_agree(void **state)
{
    (void)state;
    enum { MAX = 5 * 12288 + 64 };
    uint8_t *buf = malloc(MAX + 8);
    assert_non_null(buf);
    srand(777);
    for (size_t i = 0; i < MAX + 8; i++)
        buf[i] = (uint8_t)rand();
    const size_t lens[] = { 12287, 12288, 12289, 12295, 12296, 24575, 24576, 24583, 36864,
        4 * 12288 + 7, 5 * 12288 + 64, 1 << 15, 50000 };
    for (size_t off = 0; off < 8; off++) {
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            uint32_t sw = tern_crc32c_update_sw(0xdeadbeefu, buf + off, lens[k]);
            uint32_t hw = tern_crc32c_update_hw(0xdeadbeefu, buf + off, lens[k]);
            if (sw != hw)
                fail_msg("paths disagree at offset %zu length %zu", off, lens[k]);
        }
    }
    /* and split anywhere, the running CRC continues across the long path */
    uint32_t whole = tern_crc32c_update_sw(0, buf, MAX);
    for (size_t cut = 0; cut <= MAX; cut += 4093)
        assert_int_equal(
            tern_crc32c_update_hw(tern_crc32c_update_hw(0, buf, cut), buf + cut, MAX - cut), whole);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_default),
        cmocka_unit_test(test_vectors_sw),
        cmocka_unit_test(test_vectors_hw),
        cmocka_unit_test(test_incremental),
        cmocka_unit_test(test_paths_agree),
        cmocka_unit_test(test_long_buffers_agree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

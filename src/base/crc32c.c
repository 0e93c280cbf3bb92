/*
 * crc32c.c: CRC-32C by slicing-by-8 tables, or by the SSE4.2 crc32 instruction on x86-64.
 */
#include "base/crc32c.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#define HAVE_X86_CRC 1
#endif

#define POLY 0x82F63B78u

static uint32_t table[8][256];
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ POLY : c >> 1;
        table[0][i] = c;
    }
    for (uint32_t i = 0; i < 256; i++) {
        for (int t = 1; t < 8; t++)
            table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
    }
}

static uint64_t load_le64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

uint32_t tern_crc32c_update_sw(uint32_t crc, const void *data, size_t len)
{
    pthread_once(&table_once, table_init);
    const uint8_t *p = data;
    uint32_t c = ~crc;
    while (len >= 8) {
        uint64_t v = load_le64(p) ^ c;
        c = table[7][v & 0xff] ^ table[6][(v >> 8) & 0xff] ^ table[5][(v >> 16) & 0xff]
            ^ table[4][(v >> 24) & 0xff] ^ table[3][(v >> 32) & 0xff] ^ table[2][(v >> 40) & 0xff]
            ^ table[1][(v >> 48) & 0xff] ^ table[0][v >> 56];
        p += 8;
        len -= 8;
    }
    while (len--)
        c = (c >> 8) ^ table[0][(c ^ *p++) & 0xff];
    return ~c;
}

#if defined(HAVE_X86_CRC)
__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
    while (len >= 8) {
        uint64_t v;
        memcpy(&v, p, 8);
        c = _mm_crc32_u64(c, v);
        p += 8;
        len -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (len--)
        c32 = _mm_crc32_u8(c32, *p++);
    return ~c32;
}
#endif

/* -1: not probed yet; 0: no; 1: yes. */
static atomic_int hw_state = -1;

bool tern_crc32c_hw_available(void)
{
    int s = atomic_load_explicit(&hw_state, memory_order_relaxed);
    if (s < 0) {
#if defined(HAVE_X86_CRC)
        __builtin_cpu_init();
        s = __builtin_cpu_supports("sse4.2") ? 1 : 0;
#else
        s = 0;
#endif
        atomic_store_explicit(&hw_state, s, memory_order_relaxed);
    }
    return s == 1;
}

uint32_t tern_crc32c_update_hw(uint32_t crc, const void *data, size_t len)
{
#if defined(HAVE_X86_CRC)
    if (tern_crc32c_hw_available())
        return crc_hw(crc, data, len);
#endif
    return tern_crc32c_update_sw(crc, data, len);
}

uint32_t tern_crc32c_update(uint32_t crc, const void *data, size_t len)
{
    return tern_crc32c_update_hw(crc, data, len);
}

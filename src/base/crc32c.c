/*
 * crc32c.c: CRC-32C by slicing-by-8 tables, or by the SSE4.2 crc32 instruction on x86-64
 * (three chains at once on long buffers).
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
/*
 * Long buffers run three independent crc32 chains at once: the instruction has a latency of 3
 * cycles and a throughput of 1, so one chain uses a third of the unit. Each round takes
 * 3 x LANE bytes; lanes b and c start from state 0, and the round's state is
 * shift(shift(a) ^ b) ^ c, where shift(x) is the state after LANE zero bytes from x. The
 * register update is linear in the state, so shift is a table lookup per state byte
 * (lane_shift, built once by running the instruction over zeros from each byte value).
 */
#define LANE 4096u

static uint32_t lane_shift[4][256];
static pthread_once_t lane_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2"))) static uint32_t zeros_from(uint32_t state, size_t n)
{
    uint64_t c = state;
    for (size_t i = 0; i < n / 8; i++)
        c = _mm_crc32_u64(c, 0);
    return (uint32_t)c;
}

static void lane_init(void)
{
    for (uint32_t k = 0; k < 4; k++)
        for (uint32_t b = 0; b < 256; b++)
            lane_shift[k][b] = zeros_from(b << (8 * k), LANE);
}

static inline uint32_t shift_lane(uint32_t x)
{
    return lane_shift[0][x & 0xff] ^ lane_shift[1][(x >> 8) & 0xff]
        ^ lane_shift[2][(x >> 16) & 0xff] ^ lane_shift[3][x >> 24];
}

__attribute__((target("sse4.2"))) static uint32_t crc_hw(uint32_t crc, const uint8_t *p, size_t len)
{
    uint64_t c = ~crc;
    if (len >= 3 * LANE) {
        pthread_once(&lane_once, lane_init);
        do {
            uint64_t b = 0, d = 0;
            for (size_t i = 0; i < LANE; i += 8) {
                uint64_t va, vb, vc;
                memcpy(&va, p + i, 8);
                memcpy(&vb, p + LANE + i, 8);
                memcpy(&vc, p + 2 * LANE + i, 8);
                c = _mm_crc32_u64(c, va);
                b = _mm_crc32_u64(b, vb);
                d = _mm_crc32_u64(d, vc);
            }
            c = shift_lane(shift_lane((uint32_t)c) ^ (uint32_t)b) ^ (uint32_t)d;
            p += 3 * LANE;
            len -= 3 * LANE;
        } while (len >= 3 * LANE);
    }
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

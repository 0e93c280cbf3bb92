/*
 * hash.c: Kafka's murmur2, its partitioner, and a multiply-fold 64-bit hash.
 */
#include "base/hash.h"

#include "base/error.h"

#include <string.h>

uint32_t tern_hash_murmur2(const void *key, size_t len)
{
    const uint8_t *data = key;
    const uint32_t m = 0x5bd1e995u;
    const uint32_t seed = 0x9747b28cu;
    /* Java's length is an int; the hash uses its low 32 bits. */
    uint32_t h = seed ^ (uint32_t)len;
    size_t n_words = len / 4;
    for (size_t i = 0; i < n_words; i++) {
        const uint8_t *p = data + 4 * i;
        uint32_t k
            = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    const uint8_t *tail = data + (len & ~(size_t)3);
    switch (len & 3) {
    case 3:
        h ^= (uint32_t)tail[2] << 16;
        __attribute__((fallthrough));
    case 2:
        h ^= (uint32_t)tail[1] << 8;
        __attribute__((fallthrough));
    case 1:
        h ^= tail[0];
        h *= m;
        break;
    default:
        break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

uint32_t tern_hash_partition(const void *key, size_t len, uint32_t n_partitions)
{
    TERN_ASSERT(n_partitions > 0);
    return (tern_hash_murmur2(key, len) & 0x7fffffffu) % n_partitions;
}

/* Odd constants with well-spread bits (digits of pi and e, forced odd). */
#define K0 0x243f6a8885a308d3ull
#define K1 0xb7e151628aed2a6bull
#define K2 0x9e3779b97f4a7c15ull

__extension__ typedef unsigned __int128 u128;

/* fold multiplies a by b as 128 bits and xors the halves: every input bit reaches the output. */
static inline uint64_t fold(uint64_t a, uint64_t b)
{
    u128 r = (u128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t rd64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    v = __builtin_bswap64(v);
#endif
    return v;
}

static inline uint64_t rd32(const uint8_t *p)
{
    return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 | (uint64_t)p[3] << 24;
}

uint64_t tern_hash64(const void *data, size_t len, uint64_t seed)
{
    const uint8_t *p = data;
    uint64_t s = fold(seed ^ K0, K1);
    uint64_t a, b;
    if (len <= 16) {
        if (len >= 8) {
            a = rd64(p);
            b = rd64(p + len - 8);
        } else if (len >= 4) {
            a = rd32(p);
            b = rd32(p + len - 4);
        } else if (len > 0) {
            a = (uint64_t)p[0] << 16 | (uint64_t)p[len / 2] << 8 | p[len - 1];
            b = 0;
        } else {
            a = b = 0;
        }
    } else {
        size_t left = len;
        uint64_t s2 = s;
        while (left > 32) {
            s = fold(rd64(p) ^ K1, rd64(p + 8) ^ s);
            s2 = fold(rd64(p + 16) ^ K2, rd64(p + 24) ^ s2);
            p += 32;
            left -= 32;
        }
        s = fold(s ^ K2, s2 ^ K0);
        if (left > 16) {
            s = fold(rd64(p) ^ K1, rd64(p + 8) ^ s);
            p += 16;
            left -= 16;
        }
        /* The last 16 bytes, overlapping what came before when left < 16. */
        a = rd64(p + left - 16);
        b = rd64(p + left - 8);
    }
    return fold(K1 ^ (uint64_t)len, fold(a ^ K1, b ^ s));
}

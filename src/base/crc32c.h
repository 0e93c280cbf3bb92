/*
 * crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of tern's
 * on-disk records (and of iSCSI, ext4, Kafka record batches).
 *
 * The CRC is the standard one: initial value ~0, final xor ~0, so tern_crc32c("123456789")
 * is 0xE3069283. tern_crc32c_update() continues a finished CRC, so
 * update(update(0, a), b) == crc32c(a || b). On x86-64 CPUs with SSE4.2 the hardware crc32
 * instruction is used (detected once at run time); elsewhere a slicing-by-8 table. Both give
 * identical results. Thread-safe; no allocation.
 */
#ifndef TERN_BASE_CRC32C_H
#define TERN_BASE_CRC32C_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* tern_crc32c_update returns the CRC-32C of (the bytes crc was computed over) || data[0..len). */
uint32_t tern_crc32c_update(uint32_t crc, const void *data, size_t len);

/* tern_crc32c returns the CRC-32C of data[0..len) (= tern_crc32c_update(0, data, len)). */
static inline uint32_t tern_crc32c(const void *data, size_t len)
{
    return tern_crc32c_update(0, data, len);
}

/* tern_crc32c_update_sw is the table-driven path, for tests and benchmarks. */
uint32_t tern_crc32c_update_sw(uint32_t crc, const void *data, size_t len);
/*
 * tern_crc32c_update_hw is the SSE4.2 path, for tests and benchmarks; it falls back to the
 * table when tern_crc32c_hw_available() is false.
 */
uint32_t tern_crc32c_update_hw(uint32_t crc, const void *data, size_t len);
/* tern_crc32c_hw_available says whether this CPU has the SSE4.2 crc32 instruction. */
bool tern_crc32c_hw_available(void);

#endif

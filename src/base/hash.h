/*
 * hash.h: the hashes tern depends on for placement, and a fast one for hash tables.
 *
 * tern_hash_murmur2() is bit-for-bit the murmur2 of Kafka's Java client (Utils.murmur2, seed
 * 0x9747b28c), and tern_hash_partition() is its default partitioner for keyed records
 * (toPositive(murmur2(key)) % n, with toPositive = & 0x7fffffff). tern therefore places a
 * device's records on the same partition as any Kafka producer (Java, librdkafka's
 * "murmur2_random") keyed by the device id, and the embedded log uses the same placement.
 * These are stable: changing them would move data between partitions.
 *
 * tern_hash64() is a fast 64-bit hash for in-memory tables (a multiply-fold design in the
 * style of wyhash): its values may change between tern versions and must never be stored.
 * All functions are pure and thread-safe.
 */
#ifndef TERN_BASE_HASH_H
#define TERN_BASE_HASH_H

#include <stddef.h>
#include <stdint.h>

/* tern_hash_murmur2 returns Kafka's murmur2 of key[0..len) as an unsigned 32-bit value. */
uint32_t tern_hash_murmur2(const void *key, size_t len);

/*
 * tern_hash_partition returns the partition, in [0, n_partitions), of a record with this key
 * under Kafka's default partitioner. n_partitions must be > 0 (a BUG otherwise).
 */
uint32_t tern_hash_partition(const void *key, size_t len, uint32_t n_partitions);

/* tern_hash64 returns a well-mixed 64-bit hash of data[0..len) under seed. */
uint64_t tern_hash64(const void *data, size_t len, uint64_t seed);

#endif

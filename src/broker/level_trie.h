/*
 * level_trie.h: the trie node shared by the subscription index and the retained store
 * (private to src/broker).
 *
 * A node holds one topic level (bytes, not NUL-terminated, stored inline after the header so a
 * node is one allocation), a parent pointer, one opaque payload pointer owned by the user of the
 * trie, and its children. Children live in the smallest form that fits: none (NULL), one child
 * (the pointer itself), a small array scanned linearly (up to TRIE_ARRAY_MAX), or an
 * open-addressing hash table with linear probing and backward-shift deletion (no tombstones).
 * Each node caches the hash of its level so lookups and rehashes rarely touch other memory.
 *
 * Memory is accounted into a caller's counter with an estimate of glibc's real footprint
 * (chunk header and 16-byte rounding), so metrics report what the process pays, not what was
 * asked for. Not thread-safe; no I/O.
 */
#ifndef TERN_BROKER_LEVEL_TRIE_H
#define TERN_BROKER_LEVEL_TRIE_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* The longest topic MQTT can carry is 65535 bytes, so a level length fits in 16 bits. */
#define TERN_TRIE_LEVEL_MAX 65535u

/* Node flags; TERN_TRIE_F_USER* are free for the owner of the trie. */
#define TERN_TRIE_F_ONE_KID 0x01u  /* kids is a tern_trie_node *, not a table */
#define TERN_TRIE_F_PLUS_KID 0x02u /* maintained by the trie: a child "+" exists */
#define TERN_TRIE_F_HASH_KID 0x04u /* maintained by the trie: a child "#" exists */
#define TERN_TRIE_F_USER1 0x10u
#define TERN_TRIE_F_USER2 0x20u
#define TERN_TRIE_F_USER3 0x40u

typedef struct tern_trie_node {
    struct tern_trie_node *parent;
    void *kids;    /* NULL, one node (TERN_TRIE_F_ONE_KID) or a private table */
    void *payload; /* owned by the trie's user */
    uint32_t hash; /* tern_broker_trie_hash(level) */
    uint16_t level_len;
    uint8_t flags;
    char level[];
} tern_trie_node;

/*
 * tern_broker_topic_next_level splits off the level of s[pos..len) that starts at pos: sets
 * *level_len and returns where the next level starts (len + 1 after the last one). Shared by
 * every file of the broker that walks topics and filters level by level.
 */
static inline size_t tern_broker_topic_next_level(
    const char *s, size_t len, size_t pos, size_t *level_len)
{
    const char *slash = memchr(s + pos, '/', len - pos);
    size_t end = slash ? (size_t)(slash - s) : len;
    *level_len = end - pos;
    return end + 1;
}

/* tern_broker_trie_hash hashes one level's bytes. */
uint32_t tern_broker_trie_hash(const char *level, size_t len);

/* tern_broker_trie_alloc_cost estimates the heap bytes glibc spends on an n-byte request. */
size_t tern_broker_trie_alloc_cost(size_t n_bytes);

/* tern_broker_trie_root_new allocates an empty root (level ""). NULL on allocation failure. */
tern_trie_node *tern_broker_trie_root_new(size_t *mem_bytes);

/* tern_broker_trie_find returns n's child for level (hash = its hash), or NULL. */
tern_trie_node *tern_broker_trie_find(
    const tern_trie_node *n, const char *level, size_t len, uint32_t hash);

/*
 * tern_broker_trie_find_or_add returns n's child for level, creating it (payload NULL) if
 * missing. Returns 0 and sets *out, or TERN_ENOMEM (trie unchanged) or TERN_EINVAL (level
 * longer than TERN_TRIE_LEVEL_MAX).
 */
int tern_broker_trie_find_or_add(
    tern_trie_node *n, const char *level, size_t len, tern_trie_node **out, size_t *mem_bytes);

/* tern_broker_trie_n_kids returns how many children n has. */
size_t tern_broker_trie_n_kids(const tern_trie_node *n);

/*
 * tern_broker_trie_next_kid iterates n's children: start with *cursor = 0, call until it
 * returns NULL. The trie must not change during the iteration.
 */
tern_trie_node *tern_broker_trie_next_kid(const tern_trie_node *n, size_t *cursor);

/*
 * tern_broker_trie_prune frees n and then each ancestor in turn while the node has no payload
 * and no children; it stops at the root (a node with no parent), which it never frees.
 * Never fails (shrinking a table that cannot be reallocated keeps the larger table).
 */
void tern_broker_trie_prune(tern_trie_node *n, size_t *mem_bytes);

/*
 * tern_broker_trie_destroy frees n and its whole subtree, calling on_payload(ctx, node) first
 * for each node whose payload is not NULL (on_payload may be NULL).
 */
void tern_broker_trie_destroy(
    tern_trie_node *n, void (*on_payload)(void *ctx, tern_trie_node *), void *ctx);

#endif

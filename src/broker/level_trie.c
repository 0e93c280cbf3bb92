/*
 * level_trie.c: trie nodes with one-kid / small-array / hash-table children (see level_trie.h).
 */
#include "broker/level_trie.h"

#include "base/alloc.h"
#include "base/error.h"

#include <string.h>

/* A node with up to this many children keeps them in an array scanned linearly. */
#define TRIE_ARRAY_MAX 8u

typedef struct kids_table {
    uint32_t n;
    uint32_t cap; /* array capacity, or table size (a power of two) when hashed */
    uint32_t hashed;
    tern_trie_node *slot[];
} kids_table;

uint32_t tern_broker_trie_hash(const char *level, size_t len)
{
    /* FNV-1a over the bytes, then a murmur3 finalizer so the low bits mix well. */
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (uint8_t)level[i];
        h *= 16777619u;
    }
    h ^= h >> 16;
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return h;
}

size_t tern_broker_trie_alloc_cost(size_t n_bytes)
{
    size_t chunk = (n_bytes + 8 + 15) & ~(size_t)15;
    return chunk < 32 ? 32 : chunk;
}

static size_t table_bytes(uint32_t cap)
{
    return sizeof(kids_table) + (size_t)cap * sizeof(tern_trie_node *);
}

static size_t node_bytes(size_t level_len)
{
    return offsetof(tern_trie_node, level) + level_len;
}

static tern_trie_node *node_new(const char *level, size_t len, uint32_t hash, size_t *mem_bytes)
{
    tern_trie_node *n = tern_malloc(node_bytes(len));
    if (!n)
        return NULL;
    n->parent = NULL;
    n->kids = NULL;
    n->payload = NULL;
    n->hash = hash;
    n->level_len = (uint16_t)len;
    n->flags = 0;
    if (len)
        memcpy(n->level, level, len);
    *mem_bytes += tern_broker_trie_alloc_cost(node_bytes(len));
    return n;
}

static void node_free(tern_trie_node *n, size_t *mem_bytes)
{
    *mem_bytes -= tern_broker_trie_alloc_cost(node_bytes(n->level_len));
    tern_free(n);
}

tern_trie_node *tern_broker_trie_root_new(size_t *mem_bytes)
{
    return node_new("", 0, tern_broker_trie_hash("", 0), mem_bytes);
}

static int same_level(const tern_trie_node *k, const char *level, size_t len, uint32_t hash)
{
    return k->hash == hash && k->level_len == len && memcmp(k->level, level, len) == 0;
}

tern_trie_node *tern_broker_trie_find(
    const tern_trie_node *n, const char *level, size_t len, uint32_t hash)
{
    if (!n->kids)
        return NULL;
    if (n->flags & TERN_TRIE_F_ONE_KID) {
        tern_trie_node *k = n->kids;
        return same_level(k, level, len, hash) ? k : NULL;
    }
    const kids_table *t = n->kids;
    if (!t->hashed) {
        for (uint32_t i = 0; i < t->n; i++) {
            if (same_level(t->slot[i], level, len, hash))
                return t->slot[i];
        }
        return NULL;
    }
    uint32_t mask = t->cap - 1;
    for (uint32_t i = hash & mask;; i = (i + 1) & mask) {
        tern_trie_node *k = t->slot[i];
        if (!k)
            return NULL;
        if (same_level(k, level, len, hash))
            return k;
    }
}

static void table_insert_hashed(kids_table *t, tern_trie_node *k)
{
    uint32_t mask = t->cap - 1;
    uint32_t i = k->hash & mask;
    while (t->slot[i])
        i = (i + 1) & mask;
    t->slot[i] = k;
    t->n++;
}

/* Rebuild n's children as a table of cap slots (hashed when cap > TRIE_ARRAY_MAX). */
static int table_rebuild(tern_trie_node *n, uint32_t cap, size_t *mem_bytes)
{
    kids_table *t = tern_calloc(1, table_bytes(cap));
    if (!t)
        return TERN_ENOMEM;
    t->cap = cap;
    t->hashed = cap > TRIE_ARRAY_MAX;
    *mem_bytes += tern_broker_trie_alloc_cost(table_bytes(cap));
    size_t cursor = 0;
    tern_trie_node *k;
    while ((k = tern_broker_trie_next_kid(n, &cursor)) != NULL) {
        if (t->hashed)
            table_insert_hashed(t, k);
        else
            t->slot[t->n++] = k;
    }
    if (n->kids && !(n->flags & TERN_TRIE_F_ONE_KID)) {
        kids_table *old = n->kids;
        *mem_bytes -= tern_broker_trie_alloc_cost(table_bytes(old->cap));
        tern_free(old);
    }
    n->kids = t;
    n->flags &= (uint8_t)~TERN_TRIE_F_ONE_KID;
    return 0;
}

/* The flag a child k sets on its parent when its level is a wildcard, else 0. */
static uint8_t wildcard_flag(const tern_trie_node *k)
{
    if (k->level_len != 1)
        return 0;
    if (k->level[0] == '+')
        return TERN_TRIE_F_PLUS_KID;
    if (k->level[0] == '#')
        return TERN_TRIE_F_HASH_KID;
    return 0;
}

static int add_kid_slot(tern_trie_node *n, tern_trie_node *k, size_t *mem_bytes)
{
    if (!n->kids) {
        n->kids = k;
        n->flags |= TERN_TRIE_F_ONE_KID;
        return 0;
    }
    if (n->flags & TERN_TRIE_F_ONE_KID) {
        int rc = table_rebuild(n, 2, mem_bytes);
        if (rc)
            return rc;
    }
    kids_table *t = n->kids;
    if (!t->hashed && t->n == t->cap) {
        int rc = table_rebuild(
            n, t->cap < TRIE_ARRAY_MAX ? t->cap * 2 : TRIE_ARRAY_MAX * 4, mem_bytes);
        if (rc)
            return rc;
        t = n->kids;
    } else if (t->hashed && (t->n + 1) * 4 > t->cap * 3) {
        int rc = table_rebuild(n, t->cap * 2, mem_bytes);
        if (rc)
            return rc;
        t = n->kids;
    }
    if (t->hashed)
        table_insert_hashed(t, k);
    else
        t->slot[t->n++] = k;
    return 0;
}

static int add_kid(tern_trie_node *n, tern_trie_node *k, size_t *mem_bytes)
{
    int rc = add_kid_slot(n, k, mem_bytes);
    if (rc == 0)
        n->flags |= wildcard_flag(k);
    return rc;
}

int tern_broker_trie_find_or_add(
    tern_trie_node *n, const char *level, size_t len, tern_trie_node **out, size_t *mem_bytes)
{
    if (len > TERN_TRIE_LEVEL_MAX)
        return TERN_EINVAL;
    uint32_t hash = tern_broker_trie_hash(level, len);
    tern_trie_node *k = tern_broker_trie_find(n, level, len, hash);
    if (k) {
        *out = k;
        return 0;
    }
    k = node_new(level, len, hash, mem_bytes);
    if (!k)
        return TERN_ENOMEM;
    int rc = add_kid(n, k, mem_bytes);
    if (rc) {
        node_free(k, mem_bytes);
        return rc;
    }
    k->parent = n;
    *out = k;
    return 0;
}

size_t tern_broker_trie_n_kids(const tern_trie_node *n)
{
    if (!n->kids)
        return 0;
    if (n->flags & TERN_TRIE_F_ONE_KID)
        return 1;
    return ((const kids_table *)n->kids)->n;
}

tern_trie_node *tern_broker_trie_next_kid(const tern_trie_node *n, size_t *cursor)
{
    if (!n->kids)
        return NULL;
    if (n->flags & TERN_TRIE_F_ONE_KID)
        return (*cursor)++ == 0 ? n->kids : NULL;
    const kids_table *t = n->kids;
    size_t end = t->hashed ? t->cap : t->n;
    while (*cursor < end) {
        tern_trie_node *k = t->slot[(*cursor)++];
        if (k)
            return k;
    }
    return NULL;
}

/* Remove child k from n's children, shrinking the container when it gets sparse. */
static void remove_kid(tern_trie_node *n, tern_trie_node *k, size_t *mem_bytes)
{
    n->flags &= (uint8_t)~wildcard_flag(k);
    if (n->flags & TERN_TRIE_F_ONE_KID) {
        TERN_ASSERT(n->kids == k);
        n->kids = NULL;
        n->flags &= (uint8_t)~TERN_TRIE_F_ONE_KID;
        return;
    }
    kids_table *t = n->kids;
    if (!t->hashed) {
        uint32_t i = 0;
        while (i < t->n && t->slot[i] != k)
            i++;
        TERN_ASSERT(i < t->n);
        t->slot[i] = t->slot[--t->n];
    } else {
        uint32_t mask = t->cap - 1;
        uint32_t i = k->hash & mask;
        while (t->slot[i] != k) {
            TERN_ASSERT(t->slot[i] != NULL);
            i = (i + 1) & mask;
        }
        /* Backward-shift deletion: pull later members of the probe run into the hole. */
        uint32_t hole = i;
        for (uint32_t j = (i + 1) & mask; t->slot[j]; j = (j + 1) & mask) {
            uint32_t home = t->slot[j]->hash & mask;
            /* Move slot j to the hole unless its home lies cyclically in (hole, j]. */
            int home_after_hole
                = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!home_after_hole) {
                t->slot[hole] = t->slot[j];
                hole = j;
            }
        }
        t->slot[hole] = NULL;
        t->n--;
    }
    if (t->n == 1) {
        size_t cursor = 0;
        tern_trie_node *only = tern_broker_trie_next_kid(n, &cursor);
        *mem_bytes -= tern_broker_trie_alloc_cost(table_bytes(t->cap));
        tern_free(t);
        n->kids = only;
        n->flags |= TERN_TRIE_F_ONE_KID;
    } else if (t->n == 0) {
        *mem_bytes -= tern_broker_trie_alloc_cost(table_bytes(t->cap));
        tern_free(t);
        n->kids = NULL;
    } else if (t->hashed && t->n * 8 < t->cap) {
        uint32_t cap = t->cap / 2;
        while (cap > TRIE_ARRAY_MAX * 4 && t->n * 8 < cap)
            cap /= 2;
        if (t->n <= TRIE_ARRAY_MAX)
            cap = TRIE_ARRAY_MAX;
        (void)table_rebuild(n, cap, mem_bytes); /* on failure the larger table stays valid */
    }
}

void tern_broker_trie_prune(tern_trie_node *n, size_t *mem_bytes)
{
    while (n->parent && !n->payload && !n->kids) {
        tern_trie_node *parent = n->parent;
        remove_kid(parent, n, mem_bytes);
        node_free(n, mem_bytes);
        n = parent;
    }
}

void tern_broker_trie_destroy(
    tern_trie_node *n, void (*on_payload)(void *ctx, tern_trie_node *), void *ctx)
{
    /* Topics can be deep and levels wide, the stack is small: keep a work list threaded
     * through the parent pointers of the nodes still to free. */
    n->parent = NULL;
    tern_trie_node *walk = n;
    while (walk) {
        tern_trie_node *cur = walk;
        walk = cur->parent;
        size_t cursor = 0;
        tern_trie_node *k;
        while ((k = tern_broker_trie_next_kid(cur, &cursor)) != NULL) {
            k->parent = walk;
            walk = k;
        }
        if (cur->payload && on_payload)
            on_payload(ctx, cur);
        if (cur->kids && !(cur->flags & TERN_TRIE_F_ONE_KID))
            tern_free(cur->kids);
        tern_free(cur);
    }
}

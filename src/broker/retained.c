/*
 * retained.c: retained messages in a level trie, matched by walking the filter (retained.h).
 */
#include "broker/retained.h"

#include "base/alloc.h"
#include "base/error.h"
#include "broker/level_trie.h"
#include "broker/topic_tree.h"

#include <stdbool.h>
#include <string.h>

struct tern_broker_retained {
    tern_broker_retained_ops ops;
    tern_trie_node *root;
    size_t count;
    size_t msg_bytes;
    size_t mem_bytes;
};

int tern_broker_retained_new(const tern_broker_retained_ops *ops, tern_broker_retained **out)
{
    tern_broker_retained *r = tern_calloc(1, sizeof *r);
    if (!r)
        return TERN_ENOMEM;
    r->ops = *ops;
    r->mem_bytes = tern_broker_trie_alloc_cost(sizeof *r);
    r->root = tern_broker_trie_root_new(&r->mem_bytes);
    if (!r->root) {
        tern_free(r);
        return TERN_ENOMEM;
    }
    *out = r;
    return 0;
}

static void release(tern_broker_retained *r, void *msg)
{
    if (r->ops.msg_bytes)
        r->msg_bytes -= r->ops.msg_bytes(r->ops.ctx, msg);
    r->count--;
    if (r->ops.release)
        r->ops.release(r->ops.ctx, msg);
}

static void release_node(void *ctx, tern_trie_node *n)
{
    release(ctx, n->payload);
    n->payload = NULL;
}

void tern_broker_retained_free(tern_broker_retained *r)
{
    if (!r)
        return;
    tern_broker_trie_destroy(r->root, release_node, r);
    tern_free(r);
}

static int check_topic(const char *topic, size_t len)
{
    if (len == 0 || memchr(topic, '+', len) || memchr(topic, '#', len))
        return TERN_EINVAL;
    size_t n_levels = 0;
    for (size_t pos = 0; pos <= len;) {
        size_t ll;
        pos = tern_broker_topic_next_level(topic, len, pos, &ll);
        if (ll > TERN_TRIE_LEVEL_MAX || ++n_levels > TERN_TOPIC_MAX_LEVELS)
            return TERN_EINVAL;
    }
    return 0;
}

static tern_trie_node *find_topic(const tern_broker_retained *r, const char *topic, size_t len)
{
    tern_trie_node *n = r->root;
    for (size_t pos = 0; n && pos <= len;) {
        size_t ll;
        size_t next = tern_broker_topic_next_level(topic, len, pos, &ll);
        n = tern_broker_trie_find(n, topic + pos, ll, tern_broker_trie_hash(topic + pos, ll));
        pos = next;
    }
    return n;
}

int tern_broker_retained_clear(tern_broker_retained *r, const char *topic, size_t topic_len)
{
    tern_trie_node *n = find_topic(r, topic, topic_len);
    if (!n || !n->payload || n == r->root)
        return TERN_ENOTFOUND;
    release(r, n->payload);
    n->payload = NULL;
    tern_broker_trie_prune(n, &r->mem_bytes);
    return 0;
}

int tern_broker_retained_set(
    tern_broker_retained *r, const char *topic, size_t topic_len, void *msg)
{
    int rc = check_topic(topic, topic_len);
    if (rc)
        return rc;
    if (!msg) {
        rc = tern_broker_retained_clear(r, topic, topic_len);
        return rc == TERN_ENOTFOUND ? 0 : rc;
    }
    tern_trie_node *n = r->root;
    for (size_t pos = 0; pos <= topic_len;) {
        size_t ll;
        size_t next = tern_broker_topic_next_level(topic, topic_len, pos, &ll);
        rc = tern_broker_trie_find_or_add(n, topic + pos, ll, &n, &r->mem_bytes);
        if (rc) {
            if (!n->payload)
                tern_broker_trie_prune(n, &r->mem_bytes);
            return rc;
        }
        pos = next;
    }
    if (n->payload)
        release(r, n->payload);
    n->payload = msg;
    r->count++;
    if (r->ops.msg_bytes)
        r->msg_bytes += r->ops.msg_bytes(r->ops.ctx, msg);
    return 0;
}

void *tern_broker_retained_get(const tern_broker_retained *r, const char *topic, size_t topic_len)
{
    if (topic_len == 0)
        return NULL;
    tern_trie_node *n = find_topic(r, topic, topic_len);
    return n ? n->payload : NULL;
}

static bool is_dollar(const tern_trie_node *n)
{
    return n->level_len > 0 && n->level[0] == '$';
}

/* Every message at n and below. Depth is bounded by TERN_TOPIC_MAX_LEVELS. */
static int walk_all(const tern_trie_node *n, int (*cb)(void *, void *), void *ctx)
{
    if (n->payload) {
        int rc = cb(ctx, n->payload);
        if (rc)
            return rc;
    }
    size_t cursor = 0;
    tern_trie_node *k;
    while ((k = tern_broker_trie_next_kid(n, &cursor)) != NULL) {
        int rc = walk_all(k, cb, ctx);
        if (rc)
            return rc;
    }
    return 0;
}

static int match_from(const tern_trie_node *n, const char *f, size_t len, size_t pos,
    int (*cb)(void *, void *), void *ctx)
{
    if (pos > len)
        return n->payload ? cb(ctx, n->payload) : 0;
    size_t ll;
    size_t next = tern_broker_topic_next_level(f, len, pos, &ll);
    const char *lv = f + pos;
    bool root = n->parent == NULL;
    if (ll == 1 && lv[0] == '#') {
        if (!root)
            return walk_all(n, cb, ctx); /* "a/#" matches "a" too */
        size_t cursor = 0;
        tern_trie_node *k;
        while ((k = tern_broker_trie_next_kid(n, &cursor)) != NULL) {
            int rc = is_dollar(k) ? 0 : walk_all(k, cb, ctx);
            if (rc)
                return rc;
        }
        return 0;
    }
    if (ll == 1 && lv[0] == '+') {
        size_t cursor = 0;
        tern_trie_node *k;
        while ((k = tern_broker_trie_next_kid(n, &cursor)) != NULL) {
            int rc = root && is_dollar(k) ? 0 : match_from(k, f, len, next, cb, ctx);
            if (rc)
                return rc;
        }
        return 0;
    }
    const tern_trie_node *k = tern_broker_trie_find(n, lv, ll, tern_broker_trie_hash(lv, ll));
    return k ? match_from(k, f, len, next, cb, ctx) : 0;
}

int tern_broker_retained_match(const tern_broker_retained *r, const char *filter, size_t filter_len,
    int (*cb)(void *ctx, void *msg), void *ctx)
{
    if (filter_len == 0)
        return 0;
    /* Refuse malformed filters: a wildcard must be a whole level, '#' only the last one. */
    size_t n_levels = 0;
    for (size_t pos = 0; pos <= filter_len;) {
        size_t ll;
        size_t next = tern_broker_topic_next_level(filter, filter_len, pos, &ll);
        const char *lv = filter + pos;
        if (++n_levels > TERN_TOPIC_MAX_LEVELS + 1)
            return 0;
        for (size_t i = 0; i < ll; i++) {
            if ((lv[i] == '+' || lv[i] == '#') && ll != 1)
                return 0;
        }
        if (ll == 1 && lv[0] == '#' && next <= filter_len)
            return 0;
        pos = next;
    }
    return match_from(r->root, filter, filter_len, 0, cb, ctx);
}

size_t tern_broker_retained_count(const tern_broker_retained *r)
{
    return r->count;
}

size_t tern_broker_retained_bytes(const tern_broker_retained *r)
{
    return r->msg_bytes;
}

size_t tern_broker_retained_memory_bytes(const tern_broker_retained *r)
{
    return r->mem_bytes;
}

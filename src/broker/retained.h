/*
 * retained.h: the broker's retained-message store.
 *
 * One retained message per topic, kept in a trie keyed by topic level (level_trie.h) so that
 * a SUBSCRIBE walks the trie along its filter instead of scanning every retained message:
 * `+` visits the children of one level, `#` a whole subtree. The MQTT matching rules are the
 * same as the subscription index's (topic_tree.h): `sport/#` matches `sport`, `+` matches an
 * empty level, and a filter starting with `+` or `#` matches no topic that starts with `$`.
 *
 * Messages are opaque handles owned by the caller's reference counting: the store holds one
 * reference per stored message and gives it back through ops.release when the message is
 * replaced, cleared, or the store is freed. ops.msg_bytes gives a message's size for the
 * bytes gauge; it must return the same value for the whole life of a message.
 * Topics come from validated PUBLISH packets (no wildcards); deeper than
 * TERN_TOPIC_MAX_LEVELS levels is refused. Shared subscriptions never receive retained
 * messages (MQTT 5 4.8.2): the caller does not call match for them.
 *
 * Not thread-safe; no I/O.
 */
#ifndef TERN_BROKER_RETAINED_H
#define TERN_BROKER_RETAINED_H

#include <stddef.h>

typedef struct tern_broker_retained tern_broker_retained;

typedef struct tern_broker_retained_ops {
    void (*release)(void *ctx, void *msg);           /* drop the store's reference */
    size_t (*msg_bytes)(void *ctx, const void *msg); /* may be NULL: bytes gauge stays 0 */
    void *ctx;
} tern_broker_retained_ops;

/* tern_broker_retained_new creates an empty store (ops is copied). 0 or TERN_ENOMEM. */
int tern_broker_retained_new(const tern_broker_retained_ops *ops, tern_broker_retained **out);

/* tern_broker_retained_free releases every stored message and frees the store. */
void tern_broker_retained_free(tern_broker_retained *r);

/*
 * tern_broker_retained_set stores msg as topic's retained message, releasing the one it
 * replaces. msg NULL clears the topic (what a retained PUBLISH with an empty payload asks).
 * On 0 the store owns the caller's reference to msg; on error the caller still does.
 * Returns 0, TERN_EINVAL (empty topic, a wildcard level, too many levels, a level over 65535
 * bytes) or TERN_ENOMEM (store unchanged).
 */
int tern_broker_retained_set(
    tern_broker_retained *r, const char *topic, size_t topic_len, void *msg);

/* tern_broker_retained_clear releases topic's retained message: 0 or TERN_ENOTFOUND. */
int tern_broker_retained_clear(tern_broker_retained *r, const char *topic, size_t topic_len);

/* tern_broker_retained_get returns topic's retained message (borrowed) or NULL. */
void *tern_broker_retained_get(const tern_broker_retained *r, const char *topic, size_t topic_len);

/*
 * tern_broker_retained_match calls cb(ctx, msg) for every retained message whose topic
 * matches filter (borrowed: take a reference to keep it), in no particular order. If cb
 * returns non-zero the walk stops and that value is returned; otherwise returns 0.
 * A malformed filter matches nothing. cb must not modify the store.
 */
int tern_broker_retained_match(const tern_broker_retained *r, const char *filter, size_t filter_len,
    int (*cb)(void *ctx, void *msg), void *ctx);

/* Gauges: stored messages, the sum of their msg_bytes, and the store's own heap estimate. */
size_t tern_broker_retained_count(const tern_broker_retained *r);
size_t tern_broker_retained_bytes(const tern_broker_retained *r);
size_t tern_broker_retained_memory_bytes(const tern_broker_retained *r);

#endif

/*
 * topic_tree.h: the broker's subscription index.
 *
 * A trie keyed by topic level (see level_trie.h) whose nodes hold the subscriptions of one
 * filter: plain subscriptions, and shared-subscription groups ($share/{group}/{filter}) whose
 * members receive each message one at a time. Built for millions of subscriptions: one
 * allocation per trie node and one per subscription, children in hash tables only where a
 * level is wide, empty nodes pruned on removal. tern_topic_tree_memory_bytes reports the
 * footprint (the unit test prints the bytes per subscription for 1M fleet/{id}/cmd/#).
 *
 * Matching follows MQTT 3.1.1/5.0 4.7: `+` matches exactly one level (an empty one too), `#`
 * matches the parent level and any number of levels below (`sport/#` matches `sport`), and a
 * filter whose first level is `+` or `#` does not match a topic that starts with `$`.
 *
 * Subscribers are caller-allocated tern_topic_subscriber records (one per session), so that
 * removing everything a session subscribed to walks only that session's subscriptions, and so
 * that a match can fold several subscriptions of one client into one delivery in O(1) each
 * (a generation counter in the record). Filters and topics are taken already validated by the
 * codec (UTF-8, no NUL), but the tree still refuses malformed wildcards with TERN_EINVAL so it
 * can never hold an inconsistent filter. Filters may have at most TERN_TOPIC_MAX_LEVELS levels.
 *
 * Not thread-safe: one thread owns a tree (or the caller locks). No I/O.
 */
#ifndef TERN_BROKER_TOPIC_TREE_H
#define TERN_BROKER_TOPIC_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_TOPIC_MAX_LEVELS 256

typedef struct tern_topic_tree tern_topic_tree;
typedef struct tern_topic_group tern_topic_group;
typedef struct tern_topic_sub tern_topic_sub;

/* The options of one subscription (MQTT 5 SUBSCRIBE options; 3.1.1 uses qos only). */
typedef struct tern_topic_sub_opts {
    uint8_t qos;              /* granted QoS 0..2 */
    bool no_local;            /* do not deliver the subscriber's own publications */
    bool retain_as_published; /* keep the RETAIN flag on forwarded messages */
    uint8_t retain_handling;  /* 0, 1 or 2: used by the caller at SUBSCRIBE time */
    uint32_t subscription_id; /* 0 = none, else 1..268435455 */
} tern_topic_sub_opts;

/*
 * One subscriber (a session). The caller allocates it, sets ctx, zeroes the rest (or uses
 * TERN_TOPIC_SUBSCRIBER_INIT), and keeps it alive while it has subscriptions in the tree.
 * The other fields belong to the tree. A record may be used with one tree only.
 */
typedef struct tern_topic_subscriber {
    void *ctx;            /* the caller's (its session) */
    tern_topic_sub *subs; /* private: this subscriber's subscriptions */
    size_t n_subs;        /* read-only for the caller */
    uint64_t match_gen;   /* private: last collect() that saw this subscriber */
    uint32_t match_slot;  /* private: its delivery index in that collect() */
} tern_topic_subscriber;

#define TERN_TOPIC_SUBSCRIBER_INIT(c)                                                              \
    {                                                                                              \
        (c), NULL, 0, 0, 0                                                                         \
    }

/* tern_topic_tree_new allocates an empty tree. Returns 0 and sets *out, or TERN_ENOMEM. */
int tern_topic_tree_new(tern_topic_tree **out);

/*
 * tern_topic_tree_free frees the tree and all its subscriptions. The subscriber records are
 * the caller's; their subscription lists are reset to empty.
 */
void tern_topic_tree_free(tern_topic_tree *t);

/*
 * tern_topic_tree_add subscribes who to filter (filter_len bytes, may be $share/{group}/...).
 * If who already has this exact subscription (same filter, same share group), its options
 * are replaced and *existed (may be NULL) is set true; otherwise it is added and *existed is
 * false. Returns 0, TERN_EINVAL (empty filter, misplaced wildcard, empty or wildcard share
 * group, more than TERN_TOPIC_MAX_LEVELS levels, level over 65535 bytes) or TERN_ENOMEM (the
 * tree is unchanged on any error). Cost: O(levels) plus a scan of the shorter of who's
 * subscriptions and the subscriptions already on that filter.
 */
int tern_topic_tree_add(tern_topic_tree *t, const char *filter, size_t filter_len,
    tern_topic_subscriber *who, const tern_topic_sub_opts *opts, bool *existed);

/*
 * tern_topic_tree_remove unsubscribes who from filter (same spelling as in add). Returns 0 or
 * TERN_ENOTFOUND (also for a malformed filter). Empty nodes are pruned.
 */
int tern_topic_tree_remove(
    tern_topic_tree *t, const char *filter, size_t filter_len, tern_topic_subscriber *who);

/*
 * tern_topic_tree_remove_all removes every subscription of who (session end), in
 * O(who->n_subs x levels). Never fails.
 */
void tern_topic_tree_remove_all(tern_topic_tree *t, tern_topic_subscriber *who);

/* tern_topic_tree_count returns the number of subscriptions (plain + shared members). */
size_t tern_topic_tree_count(const tern_topic_tree *t);

/* tern_topic_tree_memory_bytes estimates the heap bytes the tree uses (glibc chunk sizes). */
size_t tern_topic_tree_memory_bytes(const tern_topic_tree *t);

/*
 * Low-level matching. on_sub is called once per matching plain subscription (a subscriber
 * with overlapping filters is reported once per filter); on_group once per matching shared
 * group, in which the caller chooses a member with tern_topic_group_pick. The callbacks must
 * not modify the tree.
 */
typedef struct tern_topic_match_ops {
    void (*on_sub)(void *ctx, tern_topic_subscriber *who, const tern_topic_sub_opts *opts);
    void (*on_group)(void *ctx, tern_topic_group *group);
} tern_topic_match_ops;

/*
 * tern_topic_tree_match reports every subscription whose filter matches topic (topic_len
 * bytes, a PUBLISH topic name with no wildcards). Topics deeper than the deepest filter
 * simply match nothing deeper. Never fails; O(matching nodes).
 */
void tern_topic_tree_match(const tern_topic_tree *t, const char *topic, size_t topic_len,
    const tern_topic_match_ops *ops, void *ctx);

/*
 * A member chooser: return < 0 if who cannot take the message now (offline, queue full),
 * else its load (0 when plain round robin is wanted; lower is preferred).
 */
typedef int64_t (*tern_topic_weigh_fn)(void *ctx, const tern_topic_subscriber *who);

/*
 * tern_topic_group_pick chooses one member of group for one message: starting after the
 * member chosen last time (round robin), the first member with the lowest load; members for
 * which weigh returns < 0 are skipped. weigh may be NULL (every member available, load 0).
 * Returns the member and sets *opts_out (may be NULL) to its options, or returns NULL when
 * no member is available (the caller may then queue, or pick again with a laxer weigh).
 * A load of 0 stops the search at once, so round robin costs O(1) per message when the next
 * member is available.
 */
tern_topic_subscriber *tern_topic_group_pick(
    tern_topic_group *group, tern_topic_weigh_fn weigh, void *ctx, tern_topic_sub_opts *opts_out);

/* tern_topic_group_name returns the share name (not NUL-terminated) and sets *len. */
const char *tern_topic_group_name(const tern_topic_group *group, size_t *len);

/* tern_topic_group_size returns the number of members of group. */
size_t tern_topic_group_size(const tern_topic_group *group);

/*
 * High-level matching: one delivery per client per message, as MQTT 5 3.3.4 asks.
 *
 * A tern_topic_matches is a reusable result buffer (init with TERN_TOPIC_MATCHES_INIT, free
 * with tern_topic_matches_free). tern_topic_tree_collect fills it with one item per client
 * that has a matching plain subscription (qos = the highest granted QoS,
 * retain_as_published = true if any of them asks for it, the subscription identifiers of all
 * of them), followed by one item per matching shared group (the picked member, shared =
 * true; MQTT 5 4.8.2 sends such a copy in addition to a plain one). Subscriptions with
 * no_local are skipped when their subscriber is publisher (NULL: nobody). Groups with no
 * available member give an item with who = NULL and group set, so the caller can decide.
 * Returns 0 or TERN_ENOMEM (the buffer then holds a partial result and must not be used).
 * The subscriber and group pointers in m stay valid until the tree is next modified.
 */
typedef struct tern_topic_delivery {
    tern_topic_subscriber *who;
    tern_topic_group *group; /* shared deliveries only */
    uint8_t qos;
    bool retain_as_published;
    bool shared;
    uint32_t n_ids; /* subscription identifiers: tern_topic_delivery_ids */
    uint32_t first_id;
} tern_topic_delivery;

typedef struct tern_topic_matches {
    tern_topic_delivery *items;
    size_t n_items;
    size_t cap_items;
    uint32_t *ids; /* pairs (id, next index or UINT32_MAX) */
    size_t n_ids;
    size_t cap_ids;
    tern_topic_group **groups; /* scratch */
    size_t n_groups;
    size_t cap_groups;
} tern_topic_matches;

#define TERN_TOPIC_MATCHES_INIT                                                                    \
    {                                                                                              \
        NULL, 0, 0, NULL, 0, 0, NULL, 0, 0                                                         \
    }

int tern_topic_tree_collect(tern_topic_tree *t, const char *topic, size_t topic_len,
    const tern_topic_subscriber *publisher, tern_topic_weigh_fn weigh, void *weigh_ctx,
    tern_topic_matches *m);

/*
 * tern_topic_delivery_ids copies up to max of d's subscription identifiers into ids (in the
 * order the subscriptions were found) and returns how many d has.
 */
size_t tern_topic_delivery_ids(
    const tern_topic_matches *m, const tern_topic_delivery *d, uint32_t *ids, size_t max);

void tern_topic_matches_free(tern_topic_matches *m);

/*
 * tern_topic_subscriber_foreach calls fn once per subscription of who with its filter as
 * subscribed (a shared one as "$share/{group}/{filter}"; borrowed for the call) and options,
 * e.g. to persist or list a session's subscriptions. fn must not modify the tree. Returns 0 or
 * TERN_ENOMEM (the walk stops).
 */
int tern_topic_subscriber_foreach(const tern_topic_subscriber *who,
    void (*fn)(void *ctx, const char *filter, size_t len, const tern_topic_sub_opts *opts),
    void *ctx);

#endif

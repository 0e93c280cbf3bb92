/*
 * test_topic_tree.c: the subscription index: MQTT matching rules ($ topics, `+`, `#`),
 * replace/remove/remove_all with pruning, shared groups (round robin, skipping, least loaded),
 * per-client aggregation (highest QoS, all subscription ids, no_local), allocation failures,
 * wide levels (hash-table children), and the memory figure for 1M device subscriptions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/error.h"
#include "broker/topic_tree.h"

#include <malloc.h>
#include <stdio.h>
#include <string.h>

#define S(str) (str), strlen(str)

static const tern_topic_sub_opts qos0 = { 0, false, false, 0, 0 };
static const tern_topic_sub_opts qos1 = { 1, false, false, 0, 0 };

/* Records every on_sub call (subscriber, qos) and every group. */
typedef struct hits {
    tern_topic_subscriber *who[64];
    uint8_t qos[64];
    size_t n;
    tern_topic_group *groups[8];
    size_t n_groups;
} hits;

static void hit_sub(void *ctx, tern_topic_subscriber *who, const tern_topic_sub_opts *o)
{
    hits *h = ctx;
    assert_true(h->n < 64);
    h->who[h->n] = who;
    h->qos[h->n++] = o->qos;
}

static void hit_group(void *ctx, tern_topic_group *g)
{
    hits *h = ctx;
    assert_true(h->n_groups < 8);
    h->groups[h->n_groups++] = g;
}

static const tern_topic_match_ops hit_ops = { hit_sub, hit_group };

static size_t count_matches(tern_topic_tree *t, const char *topic)
{
    hits h = { 0 };
    tern_topic_tree_match(t, topic, strlen(topic), &hit_ops, &h);
    return h.n + h.n_groups;
}

/* Does a tree holding only `filter` match `topic`? */
static bool matches(const char *filter, const char *topic)
{
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber who = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    assert_int_equal(tern_topic_tree_add(t, S(filter), &who, &qos0, NULL), 0);
    size_t n = count_matches(t, topic);
    tern_topic_tree_free(t);
    assert_true(n <= 1);
    return n == 1;
}

static void test_matching_rules(void **state)
{
    (void)state;
    assert_true(matches("a/b/c", "a/b/c"));
    assert_false(matches("a/b/c", "a/b"));
    assert_false(matches("a/b", "a/b/c"));
    assert_true(matches("a/+/c", "a/x/c"));
    assert_false(matches("a/+/c", "a/x/y/c"));
    assert_true(matches("a/+", "a/")); /* + matches an empty level */
    assert_true(matches("+/+", "/x"));
    assert_true(matches("a//c", "a//c"));
    assert_false(matches("a//c", "a/b/c"));
    assert_true(matches("sport/#", "sport")); /* # matches the parent */
    assert_true(matches("sport/#", "sport/tennis/player1"));
    assert_true(matches("sport/#", "sport/"));
    assert_false(matches("sport/#", "sports"));
    assert_true(matches("#", "a/b/c"));
    assert_true(matches("+", "a"));
    assert_false(matches("+", "a/b"));
    assert_true(matches("+/#", "a"));
    assert_true(matches("/+", "/x"));
    assert_false(matches("a/b", "A/b")); /* case-sensitive */
}

static void test_dollar_topics(void **state)
{
    (void)state;
    assert_false(matches("#", "$SYS/broker/uptime"));
    assert_false(matches("+/broker/uptime", "$SYS/broker/uptime"));
    assert_false(matches("+/#", "$SYS"));
    assert_true(matches("$SYS/#", "$SYS/broker/uptime"));
    assert_true(matches("$SYS/+/uptime", "$SYS/broker/uptime"));
    assert_true(matches("$SYS/#", "$SYS"));
    assert_true(matches("a/+", "a/$x")); /* the rule is about the first level only */
    assert_true(matches("a/#", "a/$x/y"));
    assert_true(matches("#", "x$/y"));
}

static void test_literal_wildcards_in_topic_match_no_wildcard_twice(void **state)
{
    (void)state;
    /* Topics are validated upstream; even so a "+" level must not double count. */
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    assert_int_equal(tern_topic_tree_add(t, S("a/+"), &a, &qos0, NULL), 0);
    assert_int_equal(count_matches(t, "a/+"), 1);
    tern_topic_tree_free(t);
}

static void test_invalid_filters(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    const char *bad[] = { "", "a/#/b", "a#", "a/b+", "+a", "$share/g", "$share//a", "$share/g/",
        "$share/g+/a", "$share/#/a", "##" };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tern_topic_tree_add(t, S(bad[i]), &a, &qos0, NULL), TERN_EINVAL);
    char deep[2 * TERN_TOPIC_MAX_LEVELS + 4];
    size_t n = 0;
    for (int i = 0; i <= TERN_TOPIC_MAX_LEVELS; i++) {
        deep[n++] = 'x';
        deep[n++] = '/';
    }
    deep[n - 1] = '\0';
    assert_int_equal(tern_topic_tree_add(t, S(deep), &a, &qos0, NULL), TERN_EINVAL);
    deep[2 * TERN_TOPIC_MAX_LEVELS - 1] = '\0'; /* exactly the limit */
    assert_int_equal(tern_topic_tree_add(t, S(deep), &a, &qos0, NULL), 0);
    assert_int_equal(tern_topic_tree_count(t), 1);
    assert_int_equal(a.n_subs, 1);
    tern_topic_tree_free(t);
    assert_null(a.subs);
    assert_int_equal(a.n_subs, 0);
}

static void test_replace_and_remove_prune(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    size_t empty_bytes = tern_topic_tree_memory_bytes(t);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    tern_topic_subscriber b = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    bool existed = true;
    assert_int_equal(tern_topic_tree_add(t, S("x/y/z"), &a, &qos0, &existed), 0);
    assert_false(existed);
    assert_int_equal(tern_topic_tree_add(t, S("x/y/z"), &b, &qos0, &existed), 0);
    assert_false(existed);
    assert_int_equal(tern_topic_tree_add(t, S("x/y/z"), &a, &qos1, &existed), 0);
    assert_true(existed);
    assert_int_equal(tern_topic_tree_count(t), 2);
    assert_int_equal(a.n_subs, 1);

    hits h = { 0 };
    tern_topic_tree_match(t, S("x/y/z"), &hit_ops, &h);
    assert_int_equal(h.n, 2);
    for (size_t i = 0; i < h.n; i++)
        assert_int_equal(h.qos[i], h.who[i] == &a ? 1 : 0); /* options were replaced */

    assert_int_equal(tern_topic_tree_remove(t, S("x/y"), &a), TERN_ENOTFOUND);
    assert_int_equal(tern_topic_tree_remove(t, S("x/y/z/w"), &a), TERN_ENOTFOUND);
    assert_int_equal(tern_topic_tree_remove(t, S("x/y/z"), &a), 0);
    assert_int_equal(tern_topic_tree_remove(t, S("x/y/z"), &a), TERN_ENOTFOUND);
    assert_int_equal(count_matches(t, "x/y/z"), 1);
    assert_int_equal(tern_topic_tree_remove(t, S("x/y/z"), &b), 0);
    assert_int_equal(count_matches(t, "x/y/z"), 0);
    assert_int_equal(tern_topic_tree_count(t), 0);
    /* Every node was pruned: the footprint is back to the empty tree's. */
    assert_int_equal(tern_topic_tree_memory_bytes(t), empty_bytes);
    tern_topic_tree_free(t);
}

static void test_remove_all(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    size_t empty_bytes = tern_topic_tree_memory_bytes(t);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    tern_topic_subscriber b = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    const char *filters[] = { "fleet/a/cmd/#", "fleet/a/config", "fleet/+/x", "#",
        "$share/g/fleet/+/x", "$share/h/#" };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(tern_topic_tree_add(t, S(filters[i]), &a, &qos0, NULL), 0);
    assert_int_equal(tern_topic_tree_add(t, S("fleet/+/x"), &b, &qos0, NULL), 0);
    assert_int_equal(a.n_subs, 6);
    assert_int_equal(count_matches(t, "fleet/z/x"), 5); /* a: +/x, #, g, h; b: +/x */
    tern_topic_tree_remove_all(t, &a);
    assert_int_equal(a.n_subs, 0);
    assert_null(a.subs);
    assert_int_equal(tern_topic_tree_count(t), 1);
    assert_int_equal(count_matches(t, "fleet/z/x"), 1);
    assert_int_equal(count_matches(t, "fleet/a/config"), 0);
    tern_topic_tree_remove_all(t, &b);
    assert_int_equal(tern_topic_tree_memory_bytes(t), empty_bytes);
    tern_topic_tree_remove_all(t, &b); /* nothing left: a no-op */
    tern_topic_tree_free(t);
}

/* weigh: members listed in ctx as offline are unavailable. */
typedef struct avail {
    tern_topic_subscriber *offline;
    int64_t load[3];
    tern_topic_subscriber *members;
} avail;

static int64_t weigh_offline(void *ctx, const tern_topic_subscriber *who)
{
    avail *a = ctx;
    return who == a->offline ? -1 : 0;
}

static int64_t weigh_load(void *ctx, const tern_topic_subscriber *who)
{
    avail *a = ctx;
    return a->load[who - a->members];
}

static void test_shared_round_robin(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber m[3] = { TERN_TOPIC_SUBSCRIBER_INIT(NULL),
        TERN_TOPIC_SUBSCRIBER_INIT(NULL), TERN_TOPIC_SUBSCRIBER_INIT(NULL) };
    for (int i = 0; i < 3; i++)
        assert_int_equal(tern_topic_tree_add(t, S("$share/workers/jobs/+"), &m[i], &qos1, NULL), 0);
    hits h = { 0 };
    tern_topic_tree_match(t, S("jobs/1"), &hit_ops, &h);
    assert_int_equal(h.n, 0); /* members are not plain subscribers */
    assert_int_equal(h.n_groups, 1);
    tern_topic_group *g = h.groups[0];
    size_t glen;
    const char *gname = tern_topic_group_name(g, &glen);
    assert_int_equal(glen, 7);
    assert_memory_equal(gname, "workers", 7);
    assert_int_equal(tern_topic_group_size(g), 3);

    /* 9 messages: each member gets 3, and no member twice in a row. */
    int got[3] = { 0 };
    tern_topic_subscriber *prev = NULL;
    for (int i = 0; i < 9; i++) {
        tern_topic_sub_opts o;
        tern_topic_subscriber *w = tern_topic_group_pick(g, NULL, NULL, &o);
        assert_non_null(w);
        assert_int_equal(o.qos, 1);
        assert_ptr_not_equal(w, prev);
        got[w - m]++;
        prev = w;
    }
    assert_int_equal(got[0], 3);
    assert_int_equal(got[1], 3);
    assert_int_equal(got[2], 3);

    /* Skip an offline member: the other two alternate. */
    avail av = { &m[1], { 0 }, m };
    memset(got, 0, sizeof got);
    for (int i = 0; i < 6; i++)
        got[tern_topic_group_pick(g, weigh_offline, &av, NULL) - m]++;
    assert_int_equal(got[0], 3);
    assert_int_equal(got[1], 0);
    assert_int_equal(got[2], 3);

    /* Least loaded. */
    av.load[0] = 5;
    av.load[1] = 2;
    av.load[2] = 9;
    assert_ptr_equal(tern_topic_group_pick(g, weigh_load, &av, NULL), &m[1]);
    av.load[1] = -1;
    assert_ptr_equal(tern_topic_group_pick(g, weigh_load, &av, NULL), &m[0]);

    /* Remove a member, then the one the cursor points at: the rest still rotate. */
    assert_int_equal(tern_topic_tree_remove(t, S("$share/workers/jobs/+"), &m[0]), 0);
    assert_int_equal(tern_topic_group_size(g), 2);
    memset(got, 0, sizeof got);
    for (int i = 0; i < 4; i++)
        got[tern_topic_group_pick(g, NULL, NULL, NULL) - m]++;
    assert_int_equal(got[0], 0);
    assert_int_equal(got[1], 2);
    assert_int_equal(got[2], 2);
    tern_topic_subscriber *next = tern_topic_group_pick(g, NULL, NULL, NULL);
    tern_topic_tree_remove_all(t, next);
    for (int i = 0; i < 3; i++) {
        tern_topic_subscriber *w = tern_topic_group_pick(g, NULL, NULL, NULL);
        assert_ptr_not_equal(w, next);
        assert_ptr_not_equal(w, &m[0]);
    }
    /* Nobody available. */
    tern_topic_subscriber *last = tern_topic_group_pick(g, NULL, NULL, NULL);
    av.offline = last;
    assert_null(tern_topic_group_pick(g, weigh_offline, &av, NULL));
    /* The last member leaves: the group and its nodes go. */
    assert_int_equal(tern_topic_tree_remove(t, S("$share/workers/jobs/+"), last), 0);
    assert_int_equal(count_matches(t, "jobs/1"), 0);
    assert_int_equal(tern_topic_tree_count(t), 0);
    tern_topic_tree_free(t);
}

static void test_shared_groups_are_separate(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    tern_topic_subscriber b = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    bool existed;
    assert_int_equal(tern_topic_tree_add(t, S("$share/g1/s/#"), &a, &qos0, &existed), 0);
    assert_int_equal(tern_topic_tree_add(t, S("$share/g2/s/#"), &a, &qos0, &existed), 0);
    assert_false(existed);
    assert_int_equal(tern_topic_tree_add(t, S("$share/g1/s/#"), &a, &qos1, &existed), 0);
    assert_true(existed);
    assert_int_equal(tern_topic_tree_add(t, S("s/#"), &a, &qos0, &existed), 0);
    assert_false(existed);
    assert_int_equal(tern_topic_tree_add(t, S("$share/g1/s/#"), &b, &qos0, NULL), 0);
    hits h = { 0 };
    tern_topic_tree_match(t, S("s/1"), &hit_ops, &h);
    assert_int_equal(h.n, 1);
    assert_int_equal(h.n_groups, 2);
    assert_int_equal(tern_topic_tree_count(t), 4);
    /* A plain unsubscribe does not touch the shared ones, and vice versa. */
    assert_int_equal(tern_topic_tree_remove(t, S("s/#"), &a), 0);
    assert_int_equal(tern_topic_tree_remove(t, S("s/#"), &b), TERN_ENOTFOUND);
    assert_int_equal(tern_topic_tree_remove(t, S("$share/g3/s/#"), &a), TERN_ENOTFOUND);
    assert_int_equal(count_matches(t, "s/1"), 2);
    tern_topic_tree_free(t);
}

static void test_collect_aggregates_per_client(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    tern_topic_subscriber b = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    tern_topic_subscriber c = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    tern_topic_sub_opts o1 = { 0, false, false, 0, 11 };
    tern_topic_sub_opts o2 = { 2, false, true, 0, 22 };
    tern_topic_sub_opts o3 = { 1, false, false, 0, 0 };
    tern_topic_sub_opts nl = { 1, true, false, 0, 33 };
    assert_int_equal(tern_topic_tree_add(t, S("f/+/t"), &a, &o1, NULL), 0);
    assert_int_equal(tern_topic_tree_add(t, S("f/#"), &a, &o2, NULL), 0);
    assert_int_equal(tern_topic_tree_add(t, S("f/d/t"), &a, &o3, NULL), 0);
    assert_int_equal(tern_topic_tree_add(t, S("f/d/t"), &b, &nl, NULL), 0);
    assert_int_equal(tern_topic_tree_add(t, S("$share/g/f/d/t"), &c, &o3, NULL), 0);
    assert_int_equal(tern_topic_tree_add(t, S("f/d/+"), &c, &o1, NULL), 0);

    tern_topic_matches m = TERN_TOPIC_MATCHES_INIT;
    for (int round = 0; round < 2; round++) { /* the buffer is reusable */
        assert_int_equal(tern_topic_tree_collect(t, S("f/d/t"), &b, NULL, NULL, &m), 0);
        assert_int_equal(m.n_items, 2 + 1); /* a, c plain (b is the publisher), c shared */
        bool seen_a = false, seen_c = false;
        for (size_t i = 0; i < 2; i++) {
            tern_topic_delivery *d = &m.items[i];
            assert_false(d->shared);
            uint32_t ids[4];
            size_t n = tern_topic_delivery_ids(&m, d, ids, 4);
            if (d->who == &a) {
                seen_a = true;
                assert_int_equal(d->qos, 2);
                assert_true(d->retain_as_published);
                assert_int_equal(n, 2);
                assert_int_equal(d->n_ids, 2);
                assert_true((ids[0] == 11 && ids[1] == 22) || (ids[0] == 22 && ids[1] == 11));
            } else {
                assert_ptr_equal(d->who, &c);
                seen_c = true;
                assert_int_equal(d->qos, 0);
                assert_int_equal(n, 1);
                assert_int_equal(ids[0], 11);
            }
        }
        assert_true(seen_a && seen_c);
        assert_true(m.items[2].shared);
        assert_ptr_equal(m.items[2].who, &c);
        assert_int_equal(m.items[2].qos, 1);
        assert_int_equal(m.items[2].n_ids, 0);
    }
    /* Publisher a: b's no_local subscription does deliver; a's own (no no_local) too. */
    assert_int_equal(tern_topic_tree_collect(t, S("f/d/t"), &a, NULL, NULL, &m), 0);
    assert_int_equal(m.n_items, 4);
    /* A group with no available member yields who == NULL. */
    avail av = { &c, { 0 }, NULL };
    assert_int_equal(tern_topic_tree_collect(t, S("f/d/t"), NULL, weigh_offline, &av, &m), 0);
    assert_int_equal(m.n_items, 4);
    assert_true(m.items[3].shared);
    assert_null(m.items[3].who);
    assert_non_null(m.items[3].group);
    tern_topic_matches_free(&m);
    tern_topic_tree_free(t);
}

static void test_wide_level_hash_children(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    size_t empty_bytes = tern_topic_tree_memory_bytes(t);
    enum { N = 3000 };
    static tern_topic_subscriber subs[N];
    char f[64];
    for (int i = 0; i < N; i++) {
        subs[i] = (tern_topic_subscriber)TERN_TOPIC_SUBSCRIBER_INIT(NULL);
        snprintf(f, sizeof f, "w/%d/x", i);
        assert_int_equal(tern_topic_tree_add(t, S(f), &subs[i], &qos0, NULL), 0);
    }
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof f, "w/%d/x", i);
        hits h = { 0 };
        tern_topic_tree_match(t, S(f), &hit_ops, &h);
        assert_int_equal(h.n, 1);
        assert_ptr_equal(h.who[0], &subs[i]);
    }
    for (int i = 0; i < N; i += 2)
        tern_topic_tree_remove_all(t, &subs[i]);
    for (int i = 0; i < N; i++) {
        snprintf(f, sizeof f, "w/%d/x", i);
        assert_int_equal(count_matches(t, f), (size_t)(i % 2));
    }
    for (int i = 1; i < N; i += 2) {
        snprintf(f, sizeof f, "w/%d/x", i);
        assert_int_equal(tern_topic_tree_remove(t, S(f), &subs[i]), 0);
    }
    assert_int_equal(tern_topic_tree_count(t), 0);
    assert_int_equal(tern_topic_tree_memory_bytes(t), empty_bytes);
    tern_topic_tree_free(t);
}

static void test_alloc_failure_leaves_tree_unchanged(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    assert_int_equal(tern_topic_tree_add(t, S("p/q"), &a, &qos0, NULL), 0);
    size_t bytes = tern_topic_tree_memory_bytes(t);
    int failures = 0;
    for (long n = 0; n < 20; n++) {
        tern_alloc_fail_after(n);
        int rc = tern_topic_tree_add(t, S("$share/g/p/q/r/s/t"), &a, &qos0, NULL);
        tern_alloc_fail_after(-1);
        if (rc == 0) {
            assert_int_equal(tern_topic_tree_count(t), 2);
            assert_int_equal(tern_topic_tree_remove(t, S("$share/g/p/q/r/s/t"), &a), 0);
            break;
        }
        failures++;
        assert_int_equal(rc, TERN_ENOMEM);
        assert_int_equal(tern_topic_tree_count(t), 1);
        assert_int_equal(a.n_subs, 1);
        assert_int_equal(tern_topic_tree_memory_bytes(t), bytes);
        assert_int_equal(count_matches(t, "p/q/r/s/t"), 0);
    }
    assert_true(failures >= 5);
    assert_int_equal(tern_topic_tree_memory_bytes(t), bytes);
    tern_topic_matches m = TERN_TOPIC_MATCHES_INIT;
    tern_alloc_fail_after(0);
    assert_int_equal(tern_topic_tree_collect(t, S("p/q"), NULL, NULL, NULL, &m), TERN_ENOMEM);
    tern_alloc_fail_after(-1);
    tern_topic_matches_free(&m);
    tern_topic_tree_free(t);
}

typedef struct listed {
    char filters[8][64];
    uint8_t qos[8];
    size_t n;
} listed;

static void list_one(void *ctx, const char *filter, size_t len, const tern_topic_sub_opts *o)
{
    listed *l = ctx;
    assert_true(l->n < 8 && len < 64);
    memcpy(l->filters[l->n], filter, len);
    l->filters[l->n][len] = '\0';
    l->qos[l->n++] = o->qos;
}

static bool listed_has(const listed *l, const char *filter, uint8_t qos)
{
    for (size_t i = 0; i < l->n; i++) {
        if (strcmp(l->filters[i], filter) == 0 && l->qos[i] == qos)
            return true;
    }
    return false;
}

static void test_subscriber_foreach_lists_filters(void **state)
{
    (void)state;
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber a = TERN_TOPIC_SUBSCRIBER_INIT(NULL);
    const char *filters[] = { "a/+/c", "$share/g/x/#", "/lead", "#", "a//", "sport" };
    for (size_t i = 0; i < 6; i++)
        assert_int_equal(tern_topic_tree_add(t, S(filters[i]), &a, i % 2 ? &qos1 : &qos0, NULL), 0);
    listed l = { .n = 0 };
    assert_int_equal(tern_topic_subscriber_foreach(&a, list_one, &l), 0);
    assert_int_equal(l.n, 6);
    for (size_t i = 0; i < 6; i++)
        assert_true(listed_has(&l, filters[i], i % 2 ? 1 : 0));
    tern_topic_tree_free(t);
}

#ifndef __SANITIZE_ADDRESS__
static size_t heap_now(void)
{
    struct mallinfo2 mi = mallinfo2();
    return mi.uordblks + mi.hblkhd;
}
#endif

/* Prints (does not assert) the footprint of 1M distinct fleet/{id}/cmd/# subscriptions. */
static void test_memory_per_subscription(void **state)
{
    (void)state;
    enum { N = 1000000 };
    tern_topic_tree *t;
    assert_int_equal(tern_topic_tree_new(&t), 0);
    tern_topic_subscriber *subs = tern_calloc(N, sizeof *subs);
    assert_non_null(subs);
    size_t before = tern_topic_tree_memory_bytes(t);
#ifndef __SANITIZE_ADDRESS__
    size_t heap_before = heap_now();
#endif
    char f[64];
    for (int i = 0; i < N; i++) {
        int n = snprintf(f, sizeof f, "fleet/dev%07d/cmd/#", i);
        assert_int_equal(tern_topic_tree_add(t, f, (size_t)n, &subs[i], &qos1, NULL), 0);
    }
    size_t used = tern_topic_tree_memory_bytes(t) - before;
    printf("topic_tree: %d subscriptions fleet/devNNNNNNN/cmd/#: %zu bytes, %.1f bytes per "
           "subscription (glibc chunk estimate; plus %zu bytes of caller subscriber record)\n",
        N, used, (double)used / N, sizeof(tern_topic_subscriber));
#ifndef __SANITIZE_ADDRESS__
    /* Without ASan the allocator is glibc's own: print what it really handed out. */
    printf("topic_tree: glibc mallinfo2 (heap + mmap) says %.1f bytes per subscription\n",
        (double)(heap_now() - heap_before) / N);
#endif
    assert_int_equal(tern_topic_tree_count(t), N);
    assert_int_equal(count_matches(t, "fleet/dev0123456/cmd/reboot"), 1);
    assert_int_equal(count_matches(t, "fleet/dev0123456/cmd"), 1);
    assert_int_equal(count_matches(t, "fleet/dev0123456/x"), 0);
    tern_topic_tree_free(t);
    tern_free(subs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matching_rules),
        cmocka_unit_test(test_dollar_topics),
        cmocka_unit_test(test_literal_wildcards_in_topic_match_no_wildcard_twice),
        cmocka_unit_test(test_invalid_filters),
        cmocka_unit_test(test_replace_and_remove_prune),
        cmocka_unit_test(test_remove_all),
        cmocka_unit_test(test_shared_round_robin),
        cmocka_unit_test(test_shared_groups_are_separate),
        cmocka_unit_test(test_collect_aggregates_per_client),
        cmocka_unit_test(test_wide_level_hash_children),
        cmocka_unit_test(test_alloc_failure_leaves_tree_unchanged),
        cmocka_unit_test(test_subscriber_foreach_lists_filters),
        cmocka_unit_test(test_memory_per_subscription),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

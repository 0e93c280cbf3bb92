/*
 * topic_tree.c: the subscription index (see topic_tree.h).
 *
 * Each trie node's payload is the head of a doubly linked list of entries: first the shared
 * groups of that filter (few), then the plain subscriptions. A group holds its members in its
 * own doubly linked list plus a round-robin cursor. Every subscription is also on its
 * subscriber's doubly linked list, so a session's subscriptions can be removed without search
 * and an unsubscribe never scans a node that a million clients share.
 */
#include "broker/topic_tree.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "broker/level_trie.h"

#include <string.h>

enum { KIND_SUB = 1, KIND_GROUP = 2 };

#define SUB_F_NO_LOCAL 0x01u
#define SUB_F_RAP 0x02u
#define SUB_F_SHARED 0x04u
#define SUB_RH_SHIFT 4

/* The common head of the list entries; qos/flags/sub_id are a subscription's (they sit here
 * so that a subscription is 56 bytes, one 64-byte glibc chunk). */
typedef struct entry {
    struct entry *prev;
    struct entry *next;
    uint8_t kind;
    uint8_t qos;
    uint8_t flags;
    uint32_t sub_id;
} entry;

struct tern_topic_sub {
    entry e;     /* on the node's list, or on the group's member list when shared */
    void *owner; /* tern_trie_node (plain) or tern_topic_group (shared) */
    tern_topic_subscriber *who;
    tern_topic_sub *who_prev;
    tern_topic_sub *who_next;
};

_Static_assert(sizeof(struct tern_topic_sub) == 56, "a subscription is one 64-byte glibc chunk");

struct tern_topic_group {
    entry e; /* on the node's list */
    tern_trie_node *node;
    entry *members;
    entry *cursor; /* the member to try first next time; NULL = the head */
    size_t n_members;
    uint16_t name_len;
    char name[];
};

struct tern_topic_tree {
    tern_trie_node *root;
    size_t n_subs;
    size_t mem_bytes;
    uint64_t gen;
};

static const char share_prefix[] = "$share/";

int tern_topic_tree_new(tern_topic_tree **out)
{
    tern_topic_tree *t = tern_calloc(1, sizeof *t);
    if (!t)
        return TERN_ENOMEM;
    t->mem_bytes = tern_broker_trie_alloc_cost(sizeof *t);
    t->root = tern_broker_trie_root_new(&t->mem_bytes);
    if (!t->root) {
        tern_free(t);
        return TERN_ENOMEM;
    }
    *out = t;
    return 0;
}

static void detach_subscriber(tern_topic_sub *s)
{
    s->who->subs = NULL;
    s->who->n_subs = 0;
}

static void free_node_entries(void *ctx, tern_trie_node *n)
{
    (void)ctx;
    entry *e = n->payload;
    while (e) {
        entry *next = e->next;
        if (e->kind == KIND_GROUP) {
            tern_topic_group *g = (tern_topic_group *)e;
            entry *m = g->members;
            while (m) {
                entry *mn = m->next;
                detach_subscriber((tern_topic_sub *)m);
                tern_free(m);
                m = mn;
            }
        } else {
            detach_subscriber((tern_topic_sub *)e);
        }
        tern_free(e);
        e = next;
    }
    n->payload = NULL;
}

void tern_topic_tree_free(tern_topic_tree *t)
{
    if (!t)
        return;
    tern_broker_trie_destroy(t->root, free_node_entries, NULL);
    tern_free(t);
}

/* Parse a SUBSCRIBE filter: sets the plain filter and the share group (NULL when plain). */
static int parse_filter(const char *f, size_t len, const char **filter, size_t *filter_len,
    const char **group, size_t *group_len)
{
    *group = NULL;
    *group_len = 0;
    size_t plen = sizeof share_prefix - 1;
    if (len >= plen && memcmp(f, share_prefix, plen) == 0) {
        const char *g = f + plen;
        const char *slash = memchr(g, '/', len - plen);
        if (!slash || slash == g)
            return TERN_EINVAL;
        size_t glen = (size_t)(slash - g);
        if (glen > TERN_TRIE_LEVEL_MAX || memchr(g, '+', glen) || memchr(g, '#', glen))
            return TERN_EINVAL;
        *group = g;
        *group_len = glen;
        f = slash + 1;
        len = len - plen - glen - 1;
    }
    if (len == 0)
        return TERN_EINVAL;
    size_t n_levels = 0;
    for (size_t pos = 0; pos <= len;) {
        size_t ll;
        size_t next = tern_broker_topic_next_level(f, len, pos, &ll);
        const char *lv = f + pos;
        if (ll > TERN_TRIE_LEVEL_MAX || ++n_levels > TERN_TOPIC_MAX_LEVELS)
            return TERN_EINVAL;
        for (size_t i = 0; i < ll; i++) {
            if ((lv[i] == '+' || lv[i] == '#') && ll != 1)
                return TERN_EINVAL;
        }
        if (ll == 1 && lv[0] == '#' && next <= len)
            return TERN_EINVAL; /* '#' must be the last level */
        pos = next;
    }
    *filter = f;
    *filter_len = len;
    return 0;
}

/* Find the node of a plain filter, or NULL. */
static tern_trie_node *find_node(const tern_topic_tree *t, const char *f, size_t len)
{
    tern_trie_node *n = t->root;
    for (size_t pos = 0; n && pos <= len;) {
        size_t ll;
        size_t next = tern_broker_topic_next_level(f, len, pos, &ll);
        n = tern_broker_trie_find(n, f + pos, ll, tern_broker_trie_hash(f + pos, ll));
        pos = next;
    }
    return n;
}

static tern_topic_group *find_group(const tern_trie_node *n, const char *g, size_t glen)
{
    for (entry *e = n->payload; e && e->kind == KIND_GROUP; e = e->next) {
        tern_topic_group *grp = (tern_topic_group *)e;
        if (grp->name_len == glen && memcmp(grp->name, g, glen) == 0)
            return grp;
    }
    return NULL;
}

/* Find who's subscription owned by owner (list = owner's entries), stepping through who's
 * list and owner's list in turn so the cost is bounded by the shorter one. */
static tern_topic_sub *find_sub(const tern_topic_subscriber *who, const void *owner, entry *list)
{
    tern_topic_sub *a = who->subs;
    entry *b = list;
    while (a && b) {
        if (a->owner == owner)
            return a;
        a = a->who_next;
        if (b->kind == KIND_SUB && ((tern_topic_sub *)b)->who == who)
            return (tern_topic_sub *)b;
        b = b->next;
    }
    return NULL;
}

static void set_opts(tern_topic_sub *s, const tern_topic_sub_opts *o)
{
    s->e.qos = o->qos > 2 ? 2 : o->qos;
    s->e.flags = (uint8_t)((s->e.flags & SUB_F_SHARED) | (o->no_local ? SUB_F_NO_LOCAL : 0)
        | (o->retain_as_published ? SUB_F_RAP : 0) | ((o->retain_handling & 3u) << SUB_RH_SHIFT));
    s->e.sub_id = o->subscription_id;
}

static void get_opts(const tern_topic_sub *s, tern_topic_sub_opts *o)
{
    o->qos = s->e.qos;
    o->no_local = (s->e.flags & SUB_F_NO_LOCAL) != 0;
    o->retain_as_published = (s->e.flags & SUB_F_RAP) != 0;
    o->retain_handling = (uint8_t)((s->e.flags >> SUB_RH_SHIFT) & 3u);
    o->subscription_id = s->e.sub_id;
}

/* A node's entries are a NULL-terminated list behind one pointer, not base/list.h's two-pointer
 * sentinel: there is a node per topic level, and their size is part of every connection's. */
static void list_unlink(entry **head, entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        *head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    e->prev = e->next = NULL;
}

static void list_insert_after(entry **head, entry *after, entry *e)
{
    e->prev = after;
    e->next = after ? after->next : *head;
    if (e->next)
        e->next->prev = e;
    if (after)
        after->next = e;
    else
        *head = e;
}

/* The last group entry of a node's list (groups come first), or NULL. */
static entry *last_group(const tern_trie_node *n)
{
    entry *last = NULL;
    for (entry *e = n->payload; e && e->kind == KIND_GROUP; e = e->next)
        last = e;
    return last;
}

int tern_topic_tree_add(tern_topic_tree *t, const char *filter, size_t filter_len,
    tern_topic_subscriber *who, const tern_topic_sub_opts *opts, bool *existed)
{
    const char *f, *g;
    size_t flen, glen;
    int rc = parse_filter(filter, filter_len, &f, &flen, &g, &glen);
    if (rc)
        return rc;
    tern_trie_node *n = t->root;
    for (size_t pos = 0; pos <= flen;) {
        size_t ll;
        size_t next = tern_broker_topic_next_level(f, flen, pos, &ll);
        rc = tern_broker_trie_find_or_add(n, f + pos, ll, &n, &t->mem_bytes);
        if (rc)
            goto fail;
        pos = next;
    }

    tern_topic_group *grp = NULL;
    tern_topic_sub *s;
    if (g) {
        grp = find_group(n, g, glen);
        s = grp ? find_sub(who, grp, grp->members) : NULL;
    } else {
        s = find_sub(who, n, n->payload);
    }
    if (s) {
        set_opts(s, opts);
        if (existed)
            *existed = true;
        return 0;
    }

    bool new_group = false;
    if (g && !grp) {
        size_t gbytes = offsetof(tern_topic_group, name) + glen;
        grp = tern_calloc(1, gbytes);
        if (!grp) {
            rc = TERN_ENOMEM;
            goto fail;
        }
        grp->e.kind = KIND_GROUP;
        grp->node = n;
        grp->name_len = (uint16_t)glen;
        memcpy(grp->name, g, glen);
        new_group = true;
    }
    s = tern_calloc(1, sizeof *s);
    if (!s) {
        if (new_group)
            tern_free(grp);
        rc = TERN_ENOMEM;
        goto fail;
    }
    s->e.kind = KIND_SUB;
    s->who = who;
    set_opts(s, opts);
    if (grp) {
        s->e.flags |= SUB_F_SHARED;
        s->owner = grp;
        list_insert_after(&grp->members, NULL, &s->e);
        grp->n_members++;
        if (new_group) {
            entry *head = n->payload;
            list_insert_after(&head, NULL, &grp->e);
            n->payload = head;
            t->mem_bytes += tern_broker_trie_alloc_cost(offsetof(tern_topic_group, name) + glen);
        }
    } else {
        s->owner = n;
        entry *head = n->payload;
        list_insert_after(&head, last_group(n), &s->e);
        n->payload = head;
    }
    s->who_next = who->subs;
    if (who->subs)
        who->subs->who_prev = s;
    who->subs = s;
    who->n_subs++;
    t->n_subs++;
    t->mem_bytes += tern_broker_trie_alloc_cost(sizeof *s);
    if (existed)
        *existed = false;
    return 0;

fail:
    if (!n->payload)
        tern_broker_trie_prune(n, &t->mem_bytes);
    return rc;
}

/* Unlink s from its owner and from its subscriber, free it, prune what became empty. */
static void drop_sub(tern_topic_tree *t, tern_topic_sub *s)
{
    tern_topic_subscriber *who = s->who;
    if (s->who_prev)
        s->who_prev->who_next = s->who_next;
    else
        who->subs = s->who_next;
    if (s->who_next)
        s->who_next->who_prev = s->who_prev;
    who->n_subs--;
    t->n_subs--;
    t->mem_bytes -= tern_broker_trie_alloc_cost(sizeof *s);

    tern_trie_node *n;
    if (s->e.flags & SUB_F_SHARED) {
        tern_topic_group *grp = s->owner;
        if (grp->cursor == &s->e)
            grp->cursor = s->e.next;
        list_unlink(&grp->members, &s->e);
        grp->n_members--;
        n = grp->node;
        if (grp->n_members == 0) {
            entry *head = n->payload;
            list_unlink(&head, &grp->e);
            n->payload = head;
            t->mem_bytes
                -= tern_broker_trie_alloc_cost(offsetof(tern_topic_group, name) + grp->name_len);
            tern_free(grp);
        }
    } else {
        n = s->owner;
        entry *head = n->payload;
        list_unlink(&head, &s->e);
        n->payload = head;
    }
    tern_free(s);
    if (!n->payload)
        tern_broker_trie_prune(n, &t->mem_bytes);
}

int tern_topic_tree_remove(
    tern_topic_tree *t, const char *filter, size_t filter_len, tern_topic_subscriber *who)
{
    const char *f, *g;
    size_t flen, glen;
    if (parse_filter(filter, filter_len, &f, &flen, &g, &glen) != 0)
        return TERN_ENOTFOUND;
    tern_trie_node *n = find_node(t, f, flen);
    if (!n)
        return TERN_ENOTFOUND;
    tern_topic_sub *s;
    if (g) {
        tern_topic_group *grp = find_group(n, g, glen);
        s = grp ? find_sub(who, grp, grp->members) : NULL;
    } else {
        s = find_sub(who, n, n->payload);
    }
    if (!s)
        return TERN_ENOTFOUND;
    drop_sub(t, s);
    return 0;
}

void tern_topic_tree_remove_all(tern_topic_tree *t, tern_topic_subscriber *who)
{
    while (who->subs)
        drop_sub(t, who->subs);
}

size_t tern_topic_tree_count(const tern_topic_tree *t)
{
    return t->n_subs;
}

size_t tern_topic_tree_memory_bytes(const tern_topic_tree *t)
{
    return t->mem_bytes;
}

static void deliver(const tern_trie_node *n, const tern_topic_match_ops *ops, void *ctx)
{
    for (entry *e = n->payload; e; e = e->next) {
        if (e->kind == KIND_GROUP) {
            if (ops->on_group)
                ops->on_group(ctx, (tern_topic_group *)e);
        } else if (ops->on_sub) {
            tern_topic_sub *s = (tern_topic_sub *)e;
            tern_topic_sub_opts o;
            get_opts(s, &o);
            ops->on_sub(ctx, s->who, &o);
        }
    }
}

static const char plus_level[] = "+";
static const char hash_level[] = "#";

static const tern_trie_node *wild_kid(const tern_trie_node *n, const char *w)
{
    return tern_broker_trie_find(n, w, 1, tern_broker_trie_hash(w, 1));
}

/* Match the levels of topic from pos (len + 1: none left) below node n. Recursion depth is
 * bounded by the deepest filter (TERN_TOPIC_MAX_LEVELS). */
static void match_from(const tern_trie_node *n, const char *topic, size_t len, size_t pos,
    const tern_topic_match_ops *ops, void *ctx)
{
    if (pos > len) {
        deliver(n, ops, ctx);
        if (n->flags & TERN_TRIE_F_HASH_KID)
            deliver(wild_kid(n, hash_level), ops, ctx); /* "a/#" matches "a" */
        return;
    }
    size_t ll;
    size_t next = tern_broker_topic_next_level(topic, len, pos, &ll);
    const char *lv = topic + pos;
    bool wild_literal = ll == 1 && (lv[0] == '+' || lv[0] == '#');
    if (!wild_literal) {
        const tern_trie_node *k = tern_broker_trie_find(n, lv, ll, tern_broker_trie_hash(lv, ll));
        if (k)
            match_from(k, topic, len, next, ops, ctx);
    }
    bool dollar = pos == 0 && len > 0 && topic[0] == '$';
    if (dollar)
        return;
    if (n->flags & TERN_TRIE_F_PLUS_KID)
        match_from(wild_kid(n, plus_level), topic, len, next, ops, ctx);
    if (n->flags & TERN_TRIE_F_HASH_KID)
        deliver(wild_kid(n, hash_level), ops, ctx);
}

void tern_topic_tree_match(const tern_topic_tree *t, const char *topic, size_t topic_len,
    const tern_topic_match_ops *ops, void *ctx)
{
    match_from(t->root, topic, topic_len, 0, ops, ctx);
}

tern_topic_subscriber *tern_topic_group_pick(
    tern_topic_group *group, tern_topic_weigh_fn weigh, void *ctx, tern_topic_sub_opts *opts_out)
{
    entry *start = group->cursor ? group->cursor : group->members;
    entry *best = NULL;
    int64_t best_load = 0;
    entry *e = start;
    for (size_t i = 0; e && i < group->n_members; i++) {
        tern_topic_sub *s = (tern_topic_sub *)e;
        int64_t load = weigh ? weigh(ctx, s->who) : 0;
        if (load >= 0 && (!best || load < best_load)) {
            best = e;
            best_load = load;
            if (load == 0)
                break;
        }
        e = e->next ? e->next : group->members;
    }
    if (!best)
        return NULL;
    group->cursor = best->next;
    tern_topic_sub *s = (tern_topic_sub *)best;
    if (opts_out)
        get_opts(s, opts_out);
    return s->who;
}

const char *tern_topic_group_name(const tern_topic_group *group, size_t *len)
{
    *len = group->name_len;
    return group->name;
}

size_t tern_topic_group_size(const tern_topic_group *group)
{
    return group->n_members;
}

typedef struct collect_ctx {
    tern_topic_tree *tree;
    tern_topic_matches *m;
    const tern_topic_subscriber *publisher;
    int rc;
} collect_ctx;

static int grow(void **p, size_t *cap, size_t need, size_t item_bytes)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    while (ncap < need)
        ncap *= 2;
    void *np = tern_realloc(*p, ncap * item_bytes);
    if (!np)
        return TERN_ENOMEM;
    *p = np;
    *cap = ncap;
    return 0;
}

static tern_topic_delivery *new_item(collect_ctx *c)
{
    tern_topic_matches *m = c->m;
    if (m->n_items >= UINT32_MAX
        || grow((void **)&m->items, &m->cap_items, m->n_items + 1, sizeof *m->items)) {
        c->rc = TERN_ENOMEM;
        return NULL;
    }
    tern_topic_delivery *d = &m->items[m->n_items++];
    memset(d, 0, sizeof *d);
    d->first_id = UINT32_MAX;
    return d;
}

static void add_id(collect_ctx *c, tern_topic_delivery *d, uint32_t id)
{
    tern_topic_matches *m = c->m;
    if (id == 0)
        return;
    if (m->n_ids + 2 >= UINT32_MAX
        || grow((void **)&m->ids, &m->cap_ids, m->n_ids + 2, sizeof *m->ids)) {
        c->rc = TERN_ENOMEM;
        return;
    }
    m->ids[m->n_ids] = id;
    m->ids[m->n_ids + 1] = d->first_id;
    d->first_id = (uint32_t)m->n_ids;
    m->n_ids += 2;
    d->n_ids++;
}

static void collect_sub(void *ctx, tern_topic_subscriber *who, const tern_topic_sub_opts *o)
{
    collect_ctx *c = ctx;
    if (c->rc || (o->no_local && who == c->publisher))
        return;
    tern_topic_delivery *d;
    if (who->match_gen == c->tree->gen) {
        d = &c->m->items[who->match_slot];
        if (o->qos > d->qos)
            d->qos = o->qos;
        d->retain_as_published = d->retain_as_published || o->retain_as_published;
    } else {
        d = new_item(c);
        if (!d)
            return;
        who->match_gen = c->tree->gen;
        who->match_slot = (uint32_t)(c->m->n_items - 1);
        d->who = who;
        d->qos = o->qos;
        d->retain_as_published = o->retain_as_published;
    }
    add_id(c, d, o->subscription_id);
}

static void collect_group(void *ctx, tern_topic_group *group)
{
    collect_ctx *c = ctx;
    tern_topic_matches *m = c->m;
    if (c->rc)
        return;
    /* Groups are picked once every plain subscription is folded, so they come last. */
    if (grow((void **)&m->groups, &m->cap_groups, m->n_groups + 1, sizeof *m->groups)) {
        c->rc = TERN_ENOMEM;
        return;
    }
    m->groups[m->n_groups++] = group;
}

int tern_topic_tree_collect(tern_topic_tree *t, const char *topic, size_t topic_len,
    const tern_topic_subscriber *publisher, tern_topic_weigh_fn weigh, void *weigh_ctx,
    tern_topic_matches *m)
{
    m->n_items = 0;
    m->n_ids = 0;
    m->n_groups = 0;
    t->gen++;
    collect_ctx c = { t, m, publisher, 0 };
    static const tern_topic_match_ops ops = { collect_sub, collect_group };
    tern_topic_tree_match(t, topic, topic_len, &ops, &c);
    for (size_t i = 0; !c.rc && i < m->n_groups; i++) {
        tern_topic_delivery *d = new_item(&c);
        if (!d)
            break;
        tern_topic_sub_opts o;
        d->group = m->groups[i];
        d->shared = true;
        d->who = tern_topic_group_pick(d->group, weigh, weigh_ctx, &o);
        if (!d->who)
            continue;
        d->qos = o.qos;
        d->retain_as_published = o.retain_as_published;
        add_id(&c, d, o.subscription_id);
    }
    return c.rc;
}

size_t tern_topic_delivery_ids(
    const tern_topic_matches *m, const tern_topic_delivery *d, uint32_t *ids, size_t max)
{
    size_t n = 0;
    for (uint32_t i = d->first_id; i != UINT32_MAX; i = m->ids[i + 1]) {
        if (n < max)
            ids[n] = m->ids[i];
        n++;
    }
    return n;
}

void tern_topic_matches_free(tern_topic_matches *m)
{
    tern_free(m->items);
    tern_free(m->ids);
    tern_free(m->groups);
    memset(m, 0, sizeof *m);
}

/* Appends the filter of trie node n (its levels from the root, '/'-separated) to out. */
static int append_filter(const tern_trie_node *n, tern_buf *out)
{
    if (!n->parent)
        return 0;
    int rc = append_filter(n->parent, out);
    if (rc == 0 && n->parent->parent)
        rc = tern_buf_append_u8(out, '/');
    if (rc == 0)
        rc = tern_buf_append(out, n->level, n->level_len);
    return rc;
}

int tern_topic_subscriber_foreach(const tern_topic_subscriber *who,
    void (*fn)(void *ctx, const char *filter, size_t len, const tern_topic_sub_opts *opts),
    void *ctx)
{
    tern_buf filter = TERN_BUF_INIT;
    int rc = 0;
    for (tern_topic_sub *s = who->subs; s && rc == 0; s = s->who_next) {
        tern_buf_reset(&filter);
        const tern_trie_node *node;
        if (s->e.flags & SUB_F_SHARED) {
            const tern_topic_group *g = s->owner;
            node = g->node;
            rc = tern_buf_append_str(&filter, "$share/");
            if (rc == 0)
                rc = tern_buf_append(&filter, g->name, g->name_len);
            if (rc == 0)
                rc = tern_buf_append_u8(&filter, '/');
        } else {
            node = s->owner;
        }
        if (rc == 0)
            rc = append_filter(node, &filter);
        if (rc == 0) {
            tern_topic_sub_opts o;
            get_opts(s, &o);
            fn(ctx, (const char *)filter.data, filter.len, &o);
        }
    }
    tern_buf_free(&filter);
    return rc;
}

/*
 * list.h: an intrusive doubly linked list with a sentinel head (the Linux kernel's list_head).
 *
 * A tern_list node is embedded in the struct it links, and a head is a node that links to the
 * first and the last one. Linking and unlinking are O(1) and need no head: a node knows its
 * neighbours, so a struct on one of several lists (a connection on some loop's list) leaves it
 * without knowing which. An unlinked node has next == NULL, so zeroed memory (calloc) is a node
 * that is on no list, and tern_list_linked() tells membership. A head must be initialized
 * (tern_list_init) before use; an empty head links to itself.
 *
 * Nothing here allocates or locks: the owner of the list serializes access to it.
 */
#ifndef TERN_BASE_LIST_H
#define TERN_BASE_LIST_H

#include <stdbool.h>
#include <stddef.h>

typedef struct tern_list {
    struct tern_list *prev, *next;
} tern_list;

/* TERN_LIST_ENTRY: the struct of type `type` whose member `member` is node. */
#define TERN_LIST_ENTRY(node, type, member)                                                        \
    ((type *)(void *)((char *)(node)-offsetof(type, member)))

static inline void tern_list_init(tern_list *head)
{
    head->prev = head->next = head;
}

static inline bool tern_list_empty(const tern_list *head)
{
    return head->next == head;
}

/* tern_list_linked: node is on a list (for a node, not a head). */
static inline bool tern_list_linked(const tern_list *node)
{
    return node->next != NULL;
}

/* tern_list_push_back links an unlinked node last. */
static inline void tern_list_push_back(tern_list *head, tern_list *node)
{
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

/* tern_list_push_front links an unlinked node first. */
static inline void tern_list_push_front(tern_list *head, tern_list *node)
{
    node->next = head->next;
    node->prev = head;
    head->next->prev = node;
    head->next = node;
}

/* tern_list_unlink takes node off its list; a no-op if it is on none. */
static inline void tern_list_unlink(tern_list *node)
{
    if (!node->next)
        return;
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->prev = node->next = NULL;
}

/* tern_list_take moves every node of from, in order, onto to (which it initializes); from is
   left empty. */
static inline void tern_list_take(tern_list *from, tern_list *to)
{
    tern_list_init(to);
    if (tern_list_empty(from))
        return;
    to->next = from->next;
    to->prev = from->prev;
    to->next->prev = to;
    to->prev->next = to;
    tern_list_init(from);
}

/* tern_list_first: the first node, or NULL if the list is empty. */
static inline tern_list *tern_list_first(const tern_list *head)
{
    return head->next == head ? NULL : head->next;
}

/* tern_list_next: the node after node on head's list, or NULL at the end. */
static inline tern_list *tern_list_next(const tern_list *head, const tern_list *node)
{
    return node->next == head ? NULL : node->next;
}

#endif

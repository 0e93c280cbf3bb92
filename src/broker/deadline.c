/*
 * deadline.c: a binary min-heap of deadlines keyed by due time; each entry knows its slot, so
 * disarming one is O(log n) without a search.
 */
#include "broker/deadline.h"

#include "base/alloc.h"
#include "base/error.h"

static void place(broker_deadlines *h, uint32_t i, broker_deadline *d)
{
    h->heap[i] = d;
    d->slot = i + 1;
}

static void sift_up(broker_deadlines *h, uint32_t i)
{
    broker_deadline *d = h->heap[i];
    while (i > 0) {
        uint32_t parent = (i - 1) / 2;
        if (h->heap[parent]->due_ms <= d->due_ms)
            break;
        place(h, i, h->heap[parent]);
        i = parent;
    }
    place(h, i, d);
}

static void sift_down(broker_deadlines *h, uint32_t i)
{
    broker_deadline *d = h->heap[i];
    for (;;) {
        uint32_t child = 2 * i + 1;
        if (child >= h->n)
            break;
        if (child + 1 < h->n && h->heap[child + 1]->due_ms < h->heap[child]->due_ms)
            child++;
        if (d->due_ms <= h->heap[child]->due_ms)
            break;
        place(h, i, h->heap[child]);
        i = child;
    }
    place(h, i, d);
}

void broker_deadline_disarm(broker_deadlines *h, broker_deadline *d)
{
    if (!d->slot)
        return;
    uint32_t i = d->slot - 1;
    d->slot = 0;
    broker_deadline *last = h->heap[--h->n];
    if (i == h->n)
        return;
    place(h, i, last);
    sift_up(h, i);
    sift_down(h, last->slot - 1);
}

int broker_deadline_arm(
    broker_deadlines *h, broker_deadline *d, uint64_t due_ms, broker_deadline_cb cb, void *data)
{
    if (!d->slot && h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        broker_deadline **heap = tern_realloc(h->heap, (size_t)cap * sizeof *heap);
        if (!heap)
            return TERN_ENOMEM;
        h->heap = heap;
        h->cap = cap;
    }
    broker_deadline_disarm(h, d);
    d->due_ms = due_ms;
    d->cb = cb;
    d->data = data;
    place(h, h->n++, d);
    sift_up(h, h->n - 1);
    return 0;
}

void broker_deadline_fire_due(broker_deadlines *h, uint64_t now_ms)
{
    while (h->n && h->heap[0]->due_ms <= now_ms) {
        broker_deadline *d = h->heap[0];
        broker_deadline_disarm(h, d);
        d->cb(d);
    }
}

void broker_deadlines_free(broker_deadlines *h)
{
    for (uint32_t i = 0; i < h->n; i++)
        h->heap[i]->slot = 0;
    tern_free(h->heap);
    h->heap = NULL;
    h->n = h->cap = 0;
}

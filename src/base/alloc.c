/*
 * alloc.c: allocation wrappers with a process-wide fault-injection countdown.
 */
#include "base/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* -1: injection off. >= 0: number of allocations still allowed to succeed. */
static _Atomic long fail_countdown = -1;

void tern_alloc_fail_after(long n)
{
    atomic_store(&fail_countdown, n);
}

static int should_fail(void)
{
    long left = atomic_load_explicit(&fail_countdown, memory_order_relaxed);
    if (left < 0)
        return 0;
    while (left > 0) {
        if (atomic_compare_exchange_weak(&fail_countdown, &left, left - 1))
            return 0;
        if (left < 0)
            return 0;
    }
    return 1;
}

void *tern_malloc(size_t n_bytes)
{
    if (should_fail())
        return NULL;
    return malloc(n_bytes ? n_bytes : 1);
}

void *tern_calloc(size_t n_items, size_t item_bytes)
{
    if (should_fail())
        return NULL;
    if (n_items == 0 || item_bytes == 0)
        return calloc(1, 1);
    return calloc(n_items, item_bytes);
}

void *tern_realloc(void *ptr, size_t n_bytes)
{
    if (should_fail())
        return NULL;
    return realloc(ptr, n_bytes ? n_bytes : 1);
}

void tern_free(void *ptr)
{
    free(ptr);
}

char *tern_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *copy = tern_malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, s, len);
    copy[len] = '\0';
    return copy;
}

char *tern_strdup(const char *s)
{
    return tern_strndup(s, strlen(s));
}

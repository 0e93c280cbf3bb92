/*
 * alloc.h: tern's allocation entry points, with fault injection for tests.
 *
 * All tern code allocates through these so that a test can make the Nth allocation fail and
 * prove the caller propagates TERN_ENOMEM and leaks nothing (the SQLite habit). They behave
 * like malloc/calloc/realloc/free otherwise. Thread-safe; the fault counter is process-wide.
 */
#ifndef TERN_BASE_ALLOC_H
#define TERN_BASE_ALLOC_H

#include <stddef.h>

void *tern_malloc(size_t n_bytes);
void *tern_calloc(size_t n_items, size_t item_bytes);
/* tern_realloc: on failure returns NULL and leaves ptr untouched (still owned by the caller). */
void *tern_realloc(void *ptr, size_t n_bytes);
void tern_free(void *ptr);
/* tern_strndup copies at most n bytes of s and NUL-terminates the copy. */
char *tern_strndup(const char *s, size_t n);
char *tern_strdup(const char *s);

/*
 * tern_alloc_fail_after makes allocations fail once n more have succeeded (n = 0 fails the next
 * one); every allocation after that fails too until tern_alloc_fail_after(-1) turns it off.
 * For tests only.
 */
void tern_alloc_fail_after(long n);

#endif

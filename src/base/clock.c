/*
 * clock.c: clock_gettime wrappers with a process-wide fake for tests.
 */
#include "base/clock.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <time.h>

/* The fake's state. wall is kept in ns so that advancing by less than 1 ms accumulates. */
static atomic_bool fake_on;
static _Atomic int64_t fake_wall_ns;
static _Atomic uint64_t fake_mono_ns;

int64_t tern_clock_now_ms(void)
{
    if (atomic_load_explicit(&fake_on, memory_order_acquire))
        return atomic_load(&fake_wall_ns) / 1000000;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t tern_clock_mono_ns(void)
{
    if (atomic_load_explicit(&fake_on, memory_order_acquire))
        return atomic_load(&fake_mono_ns);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

uint64_t tern_clock_mono_ms(void)
{
    return tern_clock_mono_ns() / 1000000u;
}

void tern_clock_fake_set(int64_t wall_ms, uint64_t mono_ns)
{
    atomic_store(&fake_wall_ns, wall_ms * 1000000);
    atomic_store(&fake_mono_ns, mono_ns);
    atomic_store_explicit(&fake_on, true, memory_order_release);
}

void tern_clock_fake_advance_ns(uint64_t ns)
{
    if (!atomic_load(&fake_on))
        return;
    atomic_fetch_add(&fake_wall_ns, (int64_t)ns);
    atomic_fetch_add(&fake_mono_ns, ns);
}

void tern_clock_fake_off(void)
{
    atomic_store_explicit(&fake_on, false, memory_order_release);
}

/*
 * clock.h: the two clocks tern reads, and a fake for tests.
 *
 * tern_clock_now_ms() is wall time (CLOCK_REALTIME, ms since the Unix epoch): use it for
 * timestamps that leave the process (log lines, arrival times). tern_clock_mono_ns()/_ms() is
 * CLOCK_MONOTONIC: use it for intervals, timeouts and rate limits, because it never jumps.
 *
 * Tests may freeze both clocks with tern_clock_fake_set() and move them with
 * tern_clock_fake_advance_ns(); every reader in the process then sees the fake values until
 * tern_clock_fake_off(). All functions are thread-safe.
 */
#ifndef TERN_BASE_CLOCK_H
#define TERN_BASE_CLOCK_H

#include <stdint.h>

/* tern_clock_now_ms returns wall-clock milliseconds since 1970-01-01T00:00:00Z. */
int64_t tern_clock_now_ms(void);
/* tern_clock_mono_ns returns monotonic nanoseconds from an arbitrary fixed origin. */
uint64_t tern_clock_mono_ns(void);
/* tern_clock_mono_ms returns tern_clock_mono_ns() / 1000000. */
uint64_t tern_clock_mono_ms(void);

/*
 * tern_clock_fake_set freezes the clocks: the wall clock reads wall_ms and the monotonic one
 * mono_ns until changed. For tests only.
 */
void tern_clock_fake_set(int64_t wall_ms, uint64_t mono_ns);
/* tern_clock_fake_advance_ns moves both fake clocks forward by ns (no effect when not faked). */
void tern_clock_fake_advance_ns(uint64_t ns);
/* tern_clock_fake_off returns to the real clocks. */
void tern_clock_fake_off(void);

#endif

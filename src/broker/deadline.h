/*
 * deadline.h: the broker's timers that belong to no one loop (private to src/broker).
 *
 * A session outlives its connections and may come back on another loop, so its expiry and its
 * delayed will cannot be timers of one loop: a loop's timers may only be touched from its own
 * thread. They are deadlines instead: entries in one min-heap of the broker, armed and disarmed
 * by whichever loop holds the broker lock, and fired by the first loop's sweep (a repeating
 * timer every BROKER_DEADLINE_TICK_MS), so a deadline fires at most one tick late.
 */
#ifndef TERN_BROKER_DEADLINE_H
#define TERN_BROKER_DEADLINE_H

#include <stdbool.h>
#include <stdint.h>

#define BROKER_DEADLINE_TICK_MS 100

typedef struct broker_deadline broker_deadline;
typedef void (*broker_deadline_cb)(broker_deadline *d);

/* Embedded in its owner (zero-initialized counts as disarmed). */
struct broker_deadline {
    uint64_t due_ms; /* monotonic ms (tern_clock_mono_ms / tern_loop_now_ms) */
    uint32_t slot;   /* heap position + 1; 0 while disarmed */
    broker_deadline_cb cb;
    void *data;
};

typedef struct broker_deadlines {
    broker_deadline **heap;
    uint32_t n, cap;
} broker_deadlines;

/* broker_deadline_arm (re)arms d to call cb(d) at due_ms. 0 or TERN_ENOMEM (d unchanged). */
int broker_deadline_arm(
    broker_deadlines *h, broker_deadline *d, uint64_t due_ms, broker_deadline_cb cb, void *data);
/* broker_deadline_disarm: no-op when d is not armed. */
void broker_deadline_disarm(broker_deadlines *h, broker_deadline *d);
static inline bool broker_deadline_armed(const broker_deadline *d)
{
    return d->slot != 0;
}
/* broker_deadline_fire_due disarms and calls every deadline due at now_ms, earliest first.
 * A callback may arm or disarm any deadline, its own included. */
void broker_deadline_fire_due(broker_deadlines *h, uint64_t now_ms);
void broker_deadlines_free(broker_deadlines *h);

#endif

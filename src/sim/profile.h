/*
 * profile.h: realistic, deterministic device signals for the simulator and the benchmarks.
 *
 * A profile is a fixed list of metrics (name, unit, decimals) and a model that produces one value
 * per metric each time a device is stepped to a new timestamp. Three profiles exist:
 *   "ev"         (the default) 20 physically coupled metrics of an electric vehicle: a
 *                drive/park/charge state machine drives speed, pack current and power, pack
 *                voltage (sags with current, rises with SoC), SoC, temperatures, GPS position and
 *                heading, odometer, tire pressure, and integer counters;
 *   "meter"      a three-phase-less household smart meter: voltage, current, power factor,
 *                active/reactive power, frequency, an energy counter;
 *   "industrial" a pump/motor sensor: rpm, vibration, temperatures, pressure, flow, power,
 *                run-time and start counters.
 *
 * Promises:
 *   - Deterministic: the same (profile name, seed, device_index, sequence of timestamps) gives
 *     bit-identical values on any machine. The model uses its own PRNG (splitmix64 and
 *     xoshiro256**), no libc rand and no libm (sin/cos/atan are small polynomials built from
 *     + - * /, which IEEE 754 rounds identically everywhere); every output is rounded to its
 *     metric's decimals, so a last-ulp difference in the model could only show at a rounding tie.
 *   - Every value is finite and is exactly round(v * 10^d) / 10^d for its metric's d decimals,
 *     so printing it with "%.*f" and d gives back the same double; integer counters (decimals
 *     -1) hold integral doubles.
 *   - Physically sane: SoC stays in [0, 100], the odometer and counters never decrease, speed is 0
 *     while parked or charging.
 * Threading: a tern_profile is immutable after open and may be shared by threads; a device is
 * owned by one thread at a time.
 */
#ifndef TERN_SIM_PROFILE_H
#define TERN_SIM_PROFILE_H

#include <stddef.h>
#include <stdint.h>

typedef struct tern_profile tern_profile;
typedef struct tern_sim_device tern_sim_device;

/* Largest number of metrics any profile has (sizing for callers' value arrays). */
#define TERN_PROFILE_MAX_METRICS 32

/*
 * tern_profile_open opens the profile called name ("ev", "meter" or "industrial"; NULL means
 * "ev") with the given seed. *out is set only on success and is owned by the caller
 * (tern_profile_close). Returns 0, TERN_EINVAL for an unknown name, TERN_ENOMEM.
 */
int tern_profile_open(const char *name, uint64_t seed, tern_profile **out);

/* tern_profile_close frees p (NULL is allowed). Devices made from p must not outlive it. */
void tern_profile_close(tern_profile *p);

/* tern_profile_name returns the profile's canonical name ("ev", "meter", "industrial"). */
const char *tern_profile_name(const tern_profile *p);

/* tern_profile_metric_count returns the number of metrics (ev: 20). */
size_t tern_profile_metric_count(const tern_profile *p);

/* tern_profile_metric_name returns metric i's name (static storage), e.g. "soc". i < count. */
const char *tern_profile_metric_name(const tern_profile *p, size_t i);

/* tern_profile_metric_decimals returns metric i's decimals, 0..6, or -1 for an integer counter. */
int tern_profile_metric_decimals(const tern_profile *p, size_t i);

/* tern_profile_metric_unit returns metric i's unit (static storage), e.g. "km/h", "%", "1". */
const char *tern_profile_metric_unit(const tern_profile *p, size_t i);

/*
 * tern_profile_device_init makes the simulated device number device_index of profile p; its
 * initial state (state machine, SoC, position, ...) depends only on p's seed and device_index.
 * *out is set only on success and is owned by the caller (tern_profile_device_free).
 * Returns 0 or TERN_ENOMEM.
 */
int tern_profile_device_init(const tern_profile *p, uint64_t device_index, tern_sim_device **out);

/* tern_profile_device_free frees d (NULL is allowed). */
void tern_profile_device_free(tern_sim_device *d);

/*
 * tern_profile_step advances d to ts_ms and writes one value per metric into
 * values[0..metric_count), each rounded to its metric's decimals. The first call sets the
 * device's clock; later calls must not go back in time (an earlier ts_ms is treated as equal to
 * the last one: the state does not move, counters such as the message sequence still count).
 * Long gaps are simulated in steps of at most 10 s.
 */
void tern_profile_step(const tern_profile *p, tern_sim_device *d, int64_t ts_ms, double *values);

/*
 * tern_profile_device_tags writes device device_index's tags (fleet, region, model) as
 * NUL-terminated strings, truncated to the given capacities (each capacity must be > 0). They
 * depend only on p's seed and device_index and are stable for the device's life.
 */
void tern_profile_device_tags(const tern_profile *p, uint64_t device_index, char *fleet,
    size_t fcap, char *region, size_t rcap, char *model, size_t mcap);

#endif

/*
 * decsum.h: sums of decimal values that are exact.
 *
 * Telemetry values are decimals (a sensor's 1-2 decimals), but as doubles 0.1 + 0.2 is not 0.3:
 * a naive float sum picks up binary noise, which costs ~40 bits a window in the warm tier and
 * makes the same window summed in another order differ. Summed as scaled integers (each value
 * times 10^e, e the most decimals seen) the sum is exact and comes out as the double nearest the
 * true decimal sum, whatever the order. The stream's windows and the store's warm windows both
 * use this, so a window computed by either is the same.
 *
 * Promises: while every value has at most 9 decimals and the scaled sum stays below 9e15 in
 * magnitude (exact in a double), tern_decsum_value is the double nearest the decimal sum;
 * otherwise it is the plain float sum of the values in the order they were added. NaN and
 * infinities make the sum inexact (the float sum carries them).
 */
#ifndef TERN_BASE_DECSUM_H
#define TERN_BASE_DECSUM_H

#include <stdbool.h>
#include <stdint.h>

typedef struct tern_decsum {
    int64_t m;   /* the sum of the values scaled by 10^e, while exact */
    int32_t e;   /* the most decimals seen */
    bool exact;  /* every value so far is a decimal with <= 9 places and m fits */
    double fsum; /* the plain float sum: the answer once not exact */
} tern_decsum;

/* tern_decsum_init empties s. */
void tern_decsum_init(tern_decsum *s);
/* tern_decsum_add adds v. */
void tern_decsum_add(tern_decsum *s, double v);
/* tern_decsum_value is the sum so far (0 when empty). */
double tern_decsum_value(const tern_decsum *s);

/* tern_decimals_of is the fewest decimals (0..9) that write v exactly (v is the double nearest
 * m / 10^e for an integer m below 9e15), or -1. */
int tern_decimals_of(double v);

#endif

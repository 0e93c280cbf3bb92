/*
 * decsum.c: exact sums of decimal values (see decsum.h).
 */
#include "base/decsum.h"

#include <math.h>

#define SUM_LIMIT INT64_C(9000000000000000) /* 9e15: scaled integers stay exact in a double */

static const double pow10_tab[10] = { 1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9 };

int tern_decimals_of(double v)
{
    for (int e = 0; e < 10; e++) {
        double scaled = v * pow10_tab[e];
        if (!(fabs(scaled) < 9e15))
            return -1;
        if (nearbyint(scaled) / pow10_tab[e] == v)
            return e;
    }
    return -1;
}

void tern_decsum_init(tern_decsum *s)
{
    s->m = 0;
    s->e = 0;
    s->exact = true;
    s->fsum = 0;
}

void tern_decsum_add(tern_decsum *s, double v)
{
    s->fsum += v;
    if (!s->exact)
        return;
    int d = tern_decimals_of(v);
    if (d < 0) {
        s->exact = false;
        return;
    }
    for (; s->e < d; s->e++) {
        if (s->m > SUM_LIMIT / 10 || s->m < -SUM_LIMIT / 10) {
            s->exact = false;
            return;
        }
        s->m *= 10;
    }
    double t = nearbyint(v * pow10_tab[s->e]);
    if (!(fabs(t) < 9e15)) {
        s->exact = false;
        return;
    }
    int64_t m = s->m + (int64_t)t;
    if (m >= SUM_LIMIT || m <= -SUM_LIMIT) {
        s->exact = false;
        return;
    }
    s->m = m;
}

double tern_decsum_value(const tern_decsum *s)
{
    return s->exact ? (double)s->m / pow10_tab[s->e] : s->fsum;
}

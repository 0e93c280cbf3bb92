/*
 * token_bucket.h: a token bucket (rate per second, burst) driven by the caller's clock.
 *
 * The bucket holds up to `burst` tokens and refills at `rate_per_s` tokens per second; a take
 * of n tokens succeeds only if n are there. It starts full. Time is passed in by the caller
 * (monotonic ns, e.g. tern_clock_mono_ns()), so behaviour is exact and deterministic: the
 * arithmetic is in integer nano-tokens, with no rounding drift. A clock that goes backwards
 * adds nothing. Not thread-safe: a bucket belongs to one thread or is used under its owner's
 * lock. Used by broker admission control and the edge agent's backfill rate.
 */
#ifndef TERN_BASE_TOKEN_BUCKET_H
#define TERN_BASE_TOKEN_BUCKET_H

#include <stdbool.h>
#include <stdint.h>

/* Largest burst and rate accepted: keeps nano-token arithmetic within 64 bits. */
#define TERN_TOKEN_BUCKET_MAX 1000000000ull

typedef struct tern_token_bucket {
    uint64_t rate_per_s; /* tokens added per second; nano-tokens added per ns */
    uint64_t burst_nt;   /* capacity, in nano-tokens */
    uint64_t tokens_nt;  /* current content, in nano-tokens */
    uint64_t last_ns;    /* time of the last refill */
} tern_token_bucket;

/*
 * tern_token_bucket_init makes a full bucket at time now_ns. rate_per_s may be 0 (the bucket
 * never refills); burst must be >= 1. Returns 0, or TERN_EINVAL if burst is 0 or either value
 * exceeds TERN_TOKEN_BUCKET_MAX (tb is then untouched).
 */
int tern_token_bucket_init(
    tern_token_bucket *tb, uint64_t rate_per_s, uint64_t burst, uint64_t now_ns);

/*
 * tern_token_bucket_set_rate changes rate and burst at now_ns, keeping the tokens already there
 * (capped at the new burst). Same errors as init; tb is unchanged on error.
 */
int tern_token_bucket_set_rate(
    tern_token_bucket *tb, uint64_t rate_per_s, uint64_t burst, uint64_t now_ns);

/*
 * tern_token_bucket_take refills to now_ns, then removes n tokens and returns true if at least
 * n are available; otherwise removes nothing and returns false. n = 0 always succeeds.
 */
bool tern_token_bucket_take(tern_token_bucket *tb, uint64_t n, uint64_t now_ns);

/* tern_token_bucket_available returns the whole tokens available at now_ns (refilling). */
uint64_t tern_token_bucket_available(tern_token_bucket *tb, uint64_t now_ns);

/*
 * tern_token_bucket_wait_ns returns how many ns from now_ns until n tokens are available
 * (0 if they are now), or UINT64_MAX if they never will be (n > burst, or rate 0).
 */
uint64_t tern_token_bucket_wait_ns(tern_token_bucket *tb, uint64_t n, uint64_t now_ns);

#endif

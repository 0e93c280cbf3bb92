/*
 * token_bucket.c: integer token bucket. One token is 1e9 nano-tokens, so a rate of r tokens
 * per second adds exactly r nano-tokens per nanosecond.
 */
#include "base/token_bucket.h"

#include "base/error.h"

#define NT_PER_TOKEN 1000000000ull

static int check(uint64_t rate_per_s, uint64_t burst)
{
    if (burst == 0 || burst > TERN_TOKEN_BUCKET_MAX || rate_per_s > TERN_TOKEN_BUCKET_MAX)
        return TERN_EINVAL;
    return 0;
}

int tern_token_bucket_init(
    tern_token_bucket *tb, uint64_t rate_per_s, uint64_t burst, uint64_t now_ns)
{
    int rc = check(rate_per_s, burst);
    if (rc)
        return rc;
    tb->rate_per_s = rate_per_s;
    tb->burst_nt = burst * NT_PER_TOKEN;
    tb->tokens_nt = tb->burst_nt;
    tb->last_ns = now_ns;
    return 0;
}

static void refill(tern_token_bucket *tb, uint64_t now_ns)
{
    if (now_ns <= tb->last_ns)
        return;
    uint64_t elapsed_ns = now_ns - tb->last_ns;
    tb->last_ns = now_ns;
    if (tb->rate_per_s == 0 || tb->tokens_nt >= tb->burst_nt)
        return;
    uint64_t missing_nt = tb->burst_nt - tb->tokens_nt;
    /* elapsed * rate overflows only when far more than enough time has passed. */
    if (elapsed_ns >= missing_nt / tb->rate_per_s + 1)
        tb->tokens_nt = tb->burst_nt;
    else
        tb->tokens_nt += elapsed_ns * tb->rate_per_s;
    if (tb->tokens_nt > tb->burst_nt)
        tb->tokens_nt = tb->burst_nt;
}

int tern_token_bucket_set_rate(
    tern_token_bucket *tb, uint64_t rate_per_s, uint64_t burst, uint64_t now_ns)
{
    int rc = check(rate_per_s, burst);
    if (rc)
        return rc;
    refill(tb, now_ns);
    tb->rate_per_s = rate_per_s;
    tb->burst_nt = burst * NT_PER_TOKEN;
    if (tb->tokens_nt > tb->burst_nt)
        tb->tokens_nt = tb->burst_nt;
    return 0;
}

bool tern_token_bucket_take(tern_token_bucket *tb, uint64_t n, uint64_t now_ns)
{
    refill(tb, now_ns);
    if (n == 0)
        return true;
    if (n > tb->tokens_nt / NT_PER_TOKEN)
        return false;
    tb->tokens_nt -= n * NT_PER_TOKEN;
    return true;
}

uint64_t tern_token_bucket_available(tern_token_bucket *tb, uint64_t now_ns)
{
    refill(tb, now_ns);
    return tb->tokens_nt / NT_PER_TOKEN;
}

uint64_t tern_token_bucket_wait_ns(tern_token_bucket *tb, uint64_t n, uint64_t now_ns)
{
    refill(tb, now_ns);
    if (n <= tb->tokens_nt / NT_PER_TOKEN)
        return 0;
    if (n > tb->burst_nt / NT_PER_TOKEN || tb->rate_per_s == 0)
        return UINT64_MAX;
    uint64_t missing_nt = n * NT_PER_TOKEN - tb->tokens_nt;
    return (missing_nt + tb->rate_per_s - 1) / tb->rate_per_s;
}

/*
 * kafka_diag.c: the Kafka backend's log lines through base/log.h, with one shared rate limiter
 * (kafka_diag.h).
 */
#include "log/kafka_diag.h"

#include "base/clock.h"
#include "base/log.h"

#include <stdarg.h>
#include <stdio.h>

static tern_log_ratelimit kafka_limiter = TERN_LOG_RATELIMIT_INIT(20, 5000);

bool tern_log__kafka_enabled(tern_log__kafka_level level)
{
    return tern_log_enabled((tern_log_level)level);
}

void tern_log__kafka_say(tern_log__kafka_level level, bool limited, const char *fmt, ...)
{
    if (!tern_log_enabled((tern_log_level)level))
        return;
    uint64_t n_suppressed = 0;
    if (limited && !tern_log_ratelimit_allow(&kafka_limiter, tern_clock_mono_ms(), &n_suppressed))
        return;
    char line[TERN_LOG_MAX_MESSAGE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n_suppressed)
        tern_logf((tern_log_level)level, "log", "kafka: %s (%llu similar messages suppressed)",
            line, (unsigned long long)n_suppressed);
    else
        tern_logf((tern_log_level)level, "log", "kafka: %s", line);
}

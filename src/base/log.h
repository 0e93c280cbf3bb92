/*
 * log.h: tern's log lines, with a process-wide level and per-call-site rate limiting.
 *
 * Every line is written whole (one write under a lock, so lines from threads never interleave)
 * to stderr, or to the FILE or callback a test installed, in the form
 *
 *     2024-05-01T12:34:56.789Z warn mqtt: client 'x' sent a malformed CONNECT
 *
 * i.e. ISO-8601 UTC time with milliseconds, level, module, message. The message is one line:
 * control bytes (newlines included) and DEL are written as \xNN, so text taken from hostile
 * input cannot forge extra lines, and a message longer than TERN_LOG_MAX_MESSAGE bytes is cut
 * and ends in "...".
 *
 * Messages caused by untrusted input must go through TERN_LOG_RATELIMITED (or an explicit
 * tern_log_ratelimit): at most `burst` lines per interval pass per call site, the rest are
 * counted, and the first line let through after that carries " (N similar messages
 * suppressed)". Rate limits use the monotonic clock of base/clock.h, so tests can fake it.
 * Everything here is thread-safe.
 */
#ifndef TERN_BASE_LOG_H
#define TERN_BASE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum tern_log_level {
    TERN_LOG_ERROR = 0,
    TERN_LOG_WARN = 1,
    TERN_LOG_INFO = 2,
    TERN_LOG_DEBUG = 3,
} tern_log_level;

/* Longest message kept (bytes after escaping); longer ones are cut and end in "...". */
#define TERN_LOG_MAX_MESSAGE 1024

/* tern_log_set_level sets the process-wide level: lines above it are dropped. Default: info. */
void tern_log_set_level(tern_log_level level);
tern_log_level tern_log_get_level(void);
/* tern_log_enabled says whether a line at level would be written now. */
bool tern_log_enabled(tern_log_level level);
/* tern_log_level_name returns "error", "warn", "info" or "debug". */
const char *tern_log_level_name(tern_log_level level);
/*
 * tern_log_level_parse reads one of those names (case-insensitive; "warning" is accepted too).
 * Returns 0 and sets *out, or TERN_EINVAL and leaves *out alone.
 */
int tern_log_level_parse(const char *name, tern_log_level *out);

/*
 * tern_log_set_file sends lines to f (borrowed: the caller keeps it open until another call
 * changes the output); NULL restores stderr. It removes any callback.
 */
void tern_log_set_file(FILE *f);
/*
 * tern_log_callback receives each finished line (NUL-terminated, len bytes, with the final
 * newline) while the log lock is held: it must not log itself.
 */
typedef void (*tern_log_callback)(void *opaque, tern_log_level level, const char *line, size_t len);
/* tern_log_set_callback sends lines to fn instead of a FILE; fn = NULL restores stderr. */
void tern_log_set_callback(tern_log_callback fn, void *opaque);

/* tern_logf writes one line if level is enabled. module is a short name such as "mqtt". */
void tern_logf(tern_log_level level, const char *module, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tern_logf_v(tern_log_level level, const char *module, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

/*
 * tern_log_ratelimit is the state of one rate-limited call site. Initialize it statically with
 * TERN_LOG_RATELIMIT_INIT(burst, interval_ms); the fields are private.
 */
typedef struct tern_log_ratelimit {
    uint32_t burst;
    uint32_t interval_ms;
    uint64_t window_start_ms;
    uint32_t n_in_window;
    uint64_t n_suppressed;
    bool started;
} tern_log_ratelimit;

#define TERN_LOG_RATELIMIT_INIT(burst, interval_ms)                                                \
    {                                                                                              \
        (burst), (interval_ms), 0, 0, 0, false                                                     \
    }

/* Defaults of TERN_LOG_RATELIMITED: 10 lines per 5 seconds per call site. */
#define TERN_LOG_RATELIMIT_BURST 10
#define TERN_LOG_RATELIMIT_INTERVAL_MS 5000

/*
 * tern_log_ratelimit_allow decides for one event at now_ms (monotonic ms): returns true if the
 * line may be written and sets *n_suppressed_out to the number of events suppressed since the
 * last line let through (0 usually), or returns false and counts this event as suppressed.
 * Thread-safe. Exposed so that tests can drive it with explicit times.
 */
bool tern_log_ratelimit_allow(tern_log_ratelimit *rl, uint64_t now_ms, uint64_t *n_suppressed_out);

/* tern_logf_rl writes one line through rl if level is enabled and rl lets it through. */
void tern_logf_rl(tern_log_ratelimit *rl, tern_log_level level, const char *module, const char *fmt,
    ...) __attribute__((format(printf, 4, 5)));

/* TERN_LOG checks the level before evaluating the arguments. */
#define TERN_LOG(level, module, ...)                                                               \
    do {                                                                                           \
        if (tern_log_enabled(level))                                                               \
            tern_logf((level), (module), __VA_ARGS__);                                             \
    } while (0)

/* TERN_LOG_RATELIMITED gives its call site its own limiter with the default limits. */
#define TERN_LOG_RATELIMITED(level, module, ...)                                                   \
    do {                                                                                           \
        static tern_log_ratelimit tern_rl_site_                                                    \
            = TERN_LOG_RATELIMIT_INIT(TERN_LOG_RATELIMIT_BURST, TERN_LOG_RATELIMIT_INTERVAL_MS);   \
        if (tern_log_enabled(level))                                                               \
            tern_logf_rl(&tern_rl_site_, (level), (module), __VA_ARGS__);                          \
    } while (0)

#endif

/*
 * log.c: one-line log records to stderr, a FILE or a callback; per-site rate limiting.
 */
#include "base/log.h"

#include "base/clock.h"
#include "base/error.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static _Atomic int log_level = TERN_LOG_INFO;

/* The output and the lock that keeps lines whole. */
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static FILE *out_file; /* NULL: stderr */
static tern_log_callback out_fn;
static void *out_opaque;

/* One lock for every rate limiter: they are touched only when a line is about to be logged. */
static pthread_mutex_t rl_lock = PTHREAD_MUTEX_INITIALIZER;

#define MODULE_MAX 32
#define LINE_MAX_BYTES (64 + MODULE_MAX + TERN_LOG_MAX_MESSAGE + 64)

static const char *const level_names[] = { "error", "warn", "info", "debug" };

void tern_log_set_level(tern_log_level level)
{
    TERN_ASSERT(level >= TERN_LOG_ERROR && level <= TERN_LOG_DEBUG);
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

tern_log_level tern_log_get_level(void)
{
    return (tern_log_level)atomic_load_explicit(&log_level, memory_order_relaxed);
}

bool tern_log_enabled(tern_log_level level)
{
    return (int)level <= atomic_load_explicit(&log_level, memory_order_relaxed);
}

const char *tern_log_level_name(tern_log_level level)
{
    if (level < TERN_LOG_ERROR || level > TERN_LOG_DEBUG)
        return "?";
    return level_names[level];
}

int tern_log_level_parse(const char *name, tern_log_level *out)
{
    for (int i = 0; i <= TERN_LOG_DEBUG; i++) {
        if (strcasecmp(name, level_names[i]) == 0) {
            *out = (tern_log_level)i;
            return 0;
        }
    }
    if (strcasecmp(name, "warning") == 0) {
        *out = TERN_LOG_WARN;
        return 0;
    }
    return TERN_EINVAL;
}

void tern_log_set_file(FILE *f)
{
    pthread_mutex_lock(&out_lock);
    out_file = f;
    out_fn = NULL;
    out_opaque = NULL;
    pthread_mutex_unlock(&out_lock);
}

void tern_log_set_callback(tern_log_callback fn, void *opaque)
{
    pthread_mutex_lock(&out_lock);
    out_file = NULL;
    out_fn = fn;
    out_opaque = opaque;
    pthread_mutex_unlock(&out_lock);
}

/*
 * escape_into copies src into dst (capacity cap, always NUL-terminated), writing control bytes
 * and DEL as \xNN. If src does not fit within max_out bytes it is cut and "..." appended.
 * Returns the length written.
 */
static size_t escape_into(char *dst, size_t cap, const char *src, size_t max_out)
{
    static const char hex[] = "0123456789abcdef";
    size_t limit = max_out < cap - 4 ? max_out : cap - 4; /* room for "..." and the NUL */
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
        bool ctl = *p < 0x20 || *p == 0x7f;
        size_t need = ctl ? 4 : 1;
        if (n + need > limit) {
            memcpy(dst + n, "...", 3);
            n += 3;
            break;
        }
        if (ctl) {
            dst[n++] = '\\';
            dst[n++] = 'x';
            dst[n++] = hex[*p >> 4];
            dst[n++] = hex[*p & 15];
        } else {
            dst[n++] = (char)*p;
        }
    }
    dst[n] = '\0';
    return n;
}

static void emit(tern_log_level level, const char *module, uint64_t n_suppressed, const char *fmt,
    va_list ap) __attribute__((format(printf, 4, 0)));

static void emit(
    tern_log_level level, const char *module, uint64_t n_suppressed, const char *fmt, va_list ap)
{
    char raw[TERN_LOG_MAX_MESSAGE * 2];
    vsnprintf(raw, sizeof raw, fmt, ap);

    char line[LINE_MAX_BYTES];
    int64_t now_ms = tern_clock_now_ms();
    time_t secs = (time_t)(now_ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ %s ",
        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
        (int)(now_ms % 1000), tern_log_level_name(level));
    size_t len = n > 0 ? (size_t)n : 0;
    len += escape_into(line + len, sizeof line - len, module ? module : "-", MODULE_MAX);
    line[len++] = ':';
    line[len++] = ' ';
    len += escape_into(line + len, sizeof line - len, raw, TERN_LOG_MAX_MESSAGE);
    if (n_suppressed > 0) {
        n = snprintf(line + len, sizeof line - len, " (%llu similar messages suppressed)",
            (unsigned long long)n_suppressed);
        if (n > 0)
            len += (size_t)n;
    }
    line[len++] = '\n';
    line[len] = '\0';

    pthread_mutex_lock(&out_lock);
    if (out_fn) {
        out_fn(out_opaque, level, line, len);
    } else {
        FILE *f = out_file ? out_file : stderr;
        fwrite(line, 1, len, f);
        fflush(f);
    }
    pthread_mutex_unlock(&out_lock);
}

void tern_logf_v(tern_log_level level, const char *module, const char *fmt, va_list ap)
{
    if (!tern_log_enabled(level))
        return;
    emit(level, module, 0, fmt, ap);
}

void tern_logf(tern_log_level level, const char *module, const char *fmt, ...)
{
    if (!tern_log_enabled(level))
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, module, 0, fmt, ap);
    va_end(ap);
}

bool tern_log_ratelimit_allow(tern_log_ratelimit *rl, uint64_t now_ms, uint64_t *n_suppressed_out)
{
    bool allow;
    pthread_mutex_lock(&rl_lock);
    if (!rl->started || now_ms < rl->window_start_ms
        || now_ms - rl->window_start_ms >= rl->interval_ms) {
        rl->started = true;
        rl->window_start_ms = now_ms;
        rl->n_in_window = 0;
    }
    if (rl->n_in_window < rl->burst) {
        rl->n_in_window++;
        *n_suppressed_out = rl->n_suppressed;
        rl->n_suppressed = 0;
        allow = true;
    } else {
        rl->n_suppressed++;
        allow = false;
    }
    pthread_mutex_unlock(&rl_lock);
    return allow;
}

void tern_logf_rl(
    tern_log_ratelimit *rl, tern_log_level level, const char *module, const char *fmt, ...)
{
    if (!tern_log_enabled(level))
        return;
    uint64_t n_suppressed = 0;
    if (!tern_log_ratelimit_allow(rl, tern_clock_mono_ms(), &n_suppressed))
        return;
    va_list ap;
    va_start(ap, fmt);
    emit(level, module, n_suppressed, fmt, ap);
    va_end(ap);
}

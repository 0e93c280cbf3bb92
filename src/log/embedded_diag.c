/*
 * embedded_diag.c: the embedded log's log lines (module "log").
 *
 * base/log.h declares the function tern_logf() while log/log.h declares the type tern_log, so no
 * file can include both: this file includes only base/log.h and gives the rest of src/log
 * printf-style entry points. Their prototypes are repeated here (they live in embedded_int.h,
 * which includes log/log.h) and must stay identical.
 */
#include "base/log.h"

#include <stdarg.h>

void tern_log__warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tern_log__error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tern_log__info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void tern_log__warn(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tern_logf_v(TERN_LOG_WARN, "log", fmt, ap);
    va_end(ap);
}

void tern_log__error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tern_logf_v(TERN_LOG_ERROR, "log", fmt, ap);
    va_end(ap);
}

void tern_log__info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    tern_logf_v(TERN_LOG_INFO, "log", fmt, ap);
    va_end(ap);
}

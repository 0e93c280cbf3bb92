/*
 * kafka_diag.h: log lines for the Kafka backend (log_kafka.c).
 *
 * One entry point for every line the backend writes (module "log", prefix "kafka: "), so that
 * the warnings and errors a broken cluster repeats share one rate limiter (20 lines per 5 s)
 * across the backend and librdkafka's own log callback. Thread-safe (librdkafka's threads call
 * it).
 */
#ifndef TERN_LOG_KAFKA_DIAG_H
#define TERN_LOG_KAFKA_DIAG_H

#include <stdbool.h>

typedef enum tern_log__kafka_level {
    TERN_LOG__KAFKA_ERROR = 0,
    TERN_LOG__KAFKA_WARN = 1,
    TERN_LOG__KAFKA_INFO = 2,
    TERN_LOG__KAFKA_DEBUG = 3,
} tern_log__kafka_level;

/* tern_log__kafka_say writes one line at level; limited lines go through the shared limiter. */
void tern_log__kafka_say(tern_log__kafka_level level, bool limited, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* tern_log__kafka_enabled says whether a line at level would be written (skip formatting). */
bool tern_log__kafka_enabled(tern_log__kafka_level level);

#endif

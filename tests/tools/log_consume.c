/*
 * log_consume.c: a consumer-group member held to a fixed rate, for tests of the log as a
 * reservoir (peak shaving): it reads a topic through the log API (either backend), never faster
 * than --rate records per second, commits every --commit-ms, prints every record's value on
 * its own line, and stops after --count records or --idle-ms without any. Printing blocks when
 * stdout is a pipe nobody reads: then it stops polling and committing too, so a caller that
 * watches the group's lag must drain stdout as it goes (or point it at a file).
 *
 *   log_consume --backend embedded --dir DIR | --backend kafka --brokers HOST:PORT
 *               --topic T --group G --rate N [--count N] [--idle-ms MS] [--commit-ms MS]
 */
#include "base/clock.h"
#include "base/error.h"
#include "log/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_CREDIT_MS 100 /* longest lag behind the rate's schedule that is made up */

static void sleep_ms(uint64_t ms)
{
    struct timespec ts = { (time_t)(ms / 1000), (long)(ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    const char *topic = NULL, *group = NULL;
    double rate = 100;
    long long count = 0;
    uint64_t idle_ms = 5000, commit_ms = 200;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (!strcmp(k, "--backend"))
            cfg.backend = strcmp(v, "kafka") == 0 ? TERN_LOG_KAFKA : TERN_LOG_EMBEDDED;
        else if (!strcmp(k, "--dir"))
            cfg.dir = v;
        else if (!strcmp(k, "--brokers"))
            cfg.kafka_brokers = v;
        else if (!strcmp(k, "--topic"))
            topic = v;
        else if (!strcmp(k, "--group"))
            group = v;
        else if (!strcmp(k, "--rate"))
            rate = atof(v);
        else if (!strcmp(k, "--count"))
            count = atoll(v);
        else if (!strcmp(k, "--idle-ms"))
            idle_ms = (uint64_t)atoll(v);
        else if (!strcmp(k, "--commit-ms"))
            commit_ms = (uint64_t)atoll(v);
        else {
            fprintf(stderr, "log_consume: unknown option %s\n", k);
            return 2;
        }
    }
    if (!topic || !group || rate <= 0) {
        fprintf(stderr, "log_consume: --topic, --group and --rate are required\n");
        return 2;
    }
    tern_log *log;
    int rc = tern_log_open(&cfg, &log);
    if (rc != 0) {
        fprintf(stderr, "log_consume: open: %s\n", tern_strerror(rc));
        return 1;
    }
    const char *topics[1] = { topic };
    tern_log_consumer_config cc = { group, topics, 1, TERN_LOG_OFFSET_EARLIEST };
    tern_log_consumer *c;
    /* A topic created a moment ago may not be in every client's metadata yet. */
    for (int tries = 0;
         (rc = tern_log_consumer_open(log, &cc, &c)) == TERN_ENOTFOUND && tries < 100; tries++)
        sleep_ms(100);
    if (rc != 0) {
        fprintf(stderr, "log_consume: consumer: %s\n", tern_strerror(rc));
        tern_log_close(log);
        return 1;
    }
    uint64_t start = tern_clock_mono_ms(), last_record = start, last_commit = start;
    long long n = 0, n_committed = 0;
    int status = 0;
    while (count == 0 || n < count) {
        /* Held to the rate: never ahead of start + n / rate. Time lost elsewhere (a slow
         * commit, a stdout reader that fell behind) is banked as at most MAX_CREDIT_MS of
         * catch-up, never as a burst through the backlog at full speed. */
        uint64_t due = start + (uint64_t)((double)n * 1000.0 / rate);
        uint64_t now = tern_clock_mono_ms();
        if (now > due + MAX_CREDIT_MS)
            start += now - due - MAX_CREDIT_MS;
        else if (due > now)
            sleep_ms(due - now);
        tern_log_message m;
        size_t got = 0;
        if ((rc = tern_log_consumer_poll(c, &m, 1, 100, &got)) != 0) {
            fprintf(stderr, "log_consume: poll: %s\n", tern_strerror(rc));
            status = 1;
            break;
        }
        now = tern_clock_mono_ms();
        if (got == 0) {
            if (n > n_committed) { /* caught up: commit now, not at the next record */
                if ((rc = tern_log_consumer_commit_all(c)) != 0)
                    fprintf(stderr, "log_consume: commit: %s\n", tern_strerror(rc));
                else
                    n_committed = n;
                last_commit = now;
            }
            if (now - last_record > idle_ms)
                break;
            start += 100; /* do not bank idle time as credit for a later burst */
            continue;
        }
        last_record = now;
        printf("%.*s\n", (int)m.value_len, (const char *)m.value);
        n++;
        if (now - last_commit >= commit_ms) {
            if ((rc = tern_log_consumer_commit_all(c)) != 0)
                fprintf(stderr, "log_consume: commit: %s\n", tern_strerror(rc));
            else
                n_committed = n;
            last_commit = now;
        }
    }
    (void)tern_log_consumer_commit_all(c);
    fflush(stdout);
    fprintf(stderr, "log_consume: %lld records\n", n);
    tern_log_consumer_close(c);
    tern_log_close(log);
    return status;
}

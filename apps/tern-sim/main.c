/*
 * main.c: `tern-sim`, the fleet simulator's command line (docs/sim.md). It parses options,
 * runs src/sim, and prints one summary JSON line on stdout (and, with --verify, a verdict JSON
 * line; with --api both carry the end-to-end latency the probe measured). Exit status: 0 success
 * (and verification held), 1 verification failed, 2 usage or setup error, 3 a worker process died
 * (the summary covers the others).
 */
#include "base/buf.h"
#include "base/error.h"
#include "sim/sim.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void usage(FILE *f)
{
    fputs(
        "usage: tern-sim --broker HOST:PORT --devices N --duration D [options]\n"
        "  --profile ev|meter|industrial   signals (default ev)\n"
        "  --qos 0|1                       publish QoS (default 1)\n"
        "  --format json|binary            payload (default json)\n"
        "  --interval D                    event time between samples (default 10s)\n"
        "  --accel X                       event time runs X times faster (default 1)\n"
        "  --start RFC3339|ms              event time of the start (default now)\n"
        "  --seed S                        (default 1)\n"
        "  --client-prefix P               device ids P000001.. (default dev)\n"
        "  --connect-rate R                connections started per second (default 1000)\n"
        "  --window N                      QoS 1 in flight per connection (default 16)\n"
        "  --buffer N                      offline buffer per device, samples (default 4096)\n"
        "  --backfill-rate R               msgs/s per device when backfilling (default auto)\n"
        "  --tunnel-rate P                 per sample: probability to drop the connection\n"
        "  --tunnel-min D --tunnel-max D   tunnel length, event time (default 10s..60s)\n"
        "  --duplicates P                  probability to re-send an acknowledged sample\n"
        "  --power-loss P                  per device and interval: probability of a power loss\n"
        "  --power-off D                   power-loss reboot time, event time (default 30s)\n"
        "  --out-of-order P                late re-sends of acked samples; shuffled backfill\n"
        "  --rush-hour X --rush-every D --rush-for D  X times the sample rate for D every D\n"
        "  --storm-at D                    at wall time D every device reconnects at once\n"
        "  --clock-drift MS                max clock drift per device, ms per hour (random sign)\n"
        "  --backoff-base D --backoff-cap D  reconnect backoff (default 100ms, 10s)\n"
        "  --drain D                       longest wait for acks at the end (default 10s)\n"
        "  --ack-log FILE                  write acknowledged seq ranges (JSON lines)\n"
        "  --verify --api HOST:PORT        check the store holds every acked point once\n"
        "  --verify-timeout D              re-check missing points this long (default 30s)\n"
        "  --api HOST:PORT                 (also without --verify) measure end-to-end latency:\n"
        "                                  publish -> queryable, on a sample of messages\n"
        "  --e2e-timeout D                 a latency probe gives up after D (default 10s)\n"
        "  --processes P                   worker processes (default: as the open-file limit "
        "needs)\n"
        "  --quiet                         no progress line\n"
        "D is a duration: 500ms, 30s, 5m, 6h, 1d (a bare number is seconds).\n",
        f);
}

/* Parses a duration into ms. */
static bool parse_duration_ms(const char *s, uint64_t *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || !(v >= 0))
        return false;
    double mul = 1000;
    if (strcmp(e, "ms") == 0)
        mul = 1;
    else if (strcmp(e, "s") == 0 || *e == '\0')
        mul = 1000;
    else if (strcmp(e, "m") == 0)
        mul = 60000;
    else if (strcmp(e, "h") == 0)
        mul = 3600000;
    else if (strcmp(e, "d") == 0)
        mul = 86400000;
    else
        return false;
    double ms = v * mul;
    if (ms > 1e15)
        return false;
    *out = (uint64_t)(ms + 0.5);
    return true;
}

/* Parses ms since the epoch or RFC 3339 UTC (2026-01-01T00:00:00Z, optional .fff, Z only). */
static bool parse_time_ms(const char *s, int64_t *out)
{
    char *e;
    long long v = strtoll(s, &e, 10);
    if (*e == '\0' && e != s) {
        *out = v;
        return true;
    }
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    int ms = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
            &tm.tm_min, &tm.tm_sec, &n)
        != 6)
        return false;
    const char *p = s + n;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        if (digits == 0)
            return false;
        for (; digits < 3; digits++)
            ms *= 10;
    }
    if (strcmp(p, "Z") != 0)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = (int64_t)t * 1000 + ms;
    return true;
}

static bool parse_prob(const char *s, double *out)
{
    char *e;
    double v = strtod(s, &e);
    if (e == s || *e || !(v >= 0 && v <= 1))
        return false;
    *out = v;
    return true;
}

static bool parse_u32(const char *s, uint32_t *out)
{
    char *e;
    unsigned long long v = strtoull(s, &e, 10);
    if (e == s || *e || v > UINT32_MAX || s[0] == '-')
        return false;
    *out = (uint32_t)v;
    return true;
}

enum {
    OPT_BROKER = 256,
    OPT_API,
    OPT_DEVICES,
    OPT_DURATION,
    OPT_PROFILE,
    OPT_QOS,
    OPT_FORMAT,
    OPT_INTERVAL,
    OPT_ACCEL,
    OPT_START,
    OPT_SEED,
    OPT_PREFIX,
    OPT_ACK_LOG,
    OPT_CONNECT_RATE,
    OPT_WINDOW,
    OPT_BUFFER,
    OPT_BACKFILL,
    OPT_TUNNEL_RATE,
    OPT_TUNNEL_MIN,
    OPT_TUNNEL_MAX,
    OPT_DUPLICATES,
    OPT_POWER_LOSS,
    OPT_POWER_OFF,
    OPT_CLOCK_DRIFT,
    OPT_OUT_OF_ORDER,
    OPT_RUSH_HOUR,
    OPT_RUSH_EVERY,
    OPT_RUSH_FOR,
    OPT_STORM_AT,
    OPT_BACKOFF_BASE,
    OPT_BACKOFF_CAP,
    OPT_DRAIN,
    OPT_VERIFY,
    OPT_VERIFY_TIMEOUT,
    OPT_QUIET,
    OPT_PROCESSES,
    OPT_E2E_TIMEOUT,
    OPT_HELP,
};

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        { "broker", required_argument, NULL, OPT_BROKER },
        { "api", required_argument, NULL, OPT_API },
        { "devices", required_argument, NULL, OPT_DEVICES },
        { "duration", required_argument, NULL, OPT_DURATION },
        { "profile", required_argument, NULL, OPT_PROFILE },
        { "qos", required_argument, NULL, OPT_QOS },
        { "format", required_argument, NULL, OPT_FORMAT },
        { "interval", required_argument, NULL, OPT_INTERVAL },
        { "accel", required_argument, NULL, OPT_ACCEL },
        { "start", required_argument, NULL, OPT_START },
        { "seed", required_argument, NULL, OPT_SEED },
        { "client-prefix", required_argument, NULL, OPT_PREFIX },
        { "ack-log", required_argument, NULL, OPT_ACK_LOG },
        { "connect-rate", required_argument, NULL, OPT_CONNECT_RATE },
        { "window", required_argument, NULL, OPT_WINDOW },
        { "buffer", required_argument, NULL, OPT_BUFFER },
        { "backfill-rate", required_argument, NULL, OPT_BACKFILL },
        { "tunnel-rate", required_argument, NULL, OPT_TUNNEL_RATE },
        { "tunnel-min", required_argument, NULL, OPT_TUNNEL_MIN },
        { "tunnel-max", required_argument, NULL, OPT_TUNNEL_MAX },
        { "duplicates", required_argument, NULL, OPT_DUPLICATES },
        { "power-loss", required_argument, NULL, OPT_POWER_LOSS },
        { "power-off", required_argument, NULL, OPT_POWER_OFF },
        { "clock-drift", required_argument, NULL, OPT_CLOCK_DRIFT },
        { "out-of-order", required_argument, NULL, OPT_OUT_OF_ORDER },
        { "rush-hour", required_argument, NULL, OPT_RUSH_HOUR },
        { "rush-every", required_argument, NULL, OPT_RUSH_EVERY },
        { "rush-for", required_argument, NULL, OPT_RUSH_FOR },
        { "storm-at", required_argument, NULL, OPT_STORM_AT },
        { "backoff-base", required_argument, NULL, OPT_BACKOFF_BASE },
        { "backoff-cap", required_argument, NULL, OPT_BACKOFF_CAP },
        { "drain", required_argument, NULL, OPT_DRAIN },
        { "verify", no_argument, NULL, OPT_VERIFY },
        { "verify-timeout", required_argument, NULL, OPT_VERIFY_TIMEOUT },
        { "quiet", no_argument, NULL, OPT_QUIET },
        { "processes", required_argument, NULL, OPT_PROCESSES },
        { "e2e-timeout", required_argument, NULL, OPT_E2E_TIMEOUT },
        { "help", no_argument, NULL, OPT_HELP },
        { NULL, 0, NULL, 0 },
    };
    tern_sim_options o;
    tern_sim_options_default(&o);
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        bool ok = true;
        uint64_t ms = 0;
        char *e = NULL;
        switch (c) {
        case OPT_BROKER:
            o.broker = optarg;
            break;
        case OPT_API:
            o.api = optarg;
            break;
        case OPT_DEVICES:
            ok = parse_u32(optarg, &o.n_devices) && o.n_devices > 0;
            break;
        case OPT_DURATION:
            ok = parse_duration_ms(optarg, &o.duration_ms);
            break;
        case OPT_PROFILE:
            o.profile = optarg;
            break;
        case OPT_QOS:
            ok = strcmp(optarg, "0") == 0 || strcmp(optarg, "1") == 0;
            o.qos = (uint8_t)(optarg[0] - '0');
            break;
        case OPT_FORMAT:
            ok = strcmp(optarg, "json") == 0 || strcmp(optarg, "binary") == 0;
            o.format = strcmp(optarg, "binary") == 0 ? TERN_SIM_BINARY : TERN_SIM_JSON;
            break;
        case OPT_INTERVAL:
            ok = parse_duration_ms(optarg, &ms) && ms > 0 && ms <= UINT32_MAX;
            o.interval_ms = (uint32_t)ms;
            break;
        case OPT_ACCEL:
            o.accel = strtod(optarg, &e);
            ok = e != optarg && *e == '\0' && o.accel > 0 && o.accel <= 1e6;
            break;
        case OPT_START:
            ok = parse_time_ms(optarg, &o.start_ms);
            break;
        case OPT_SEED:
            o.seed = strtoull(optarg, &e, 10);
            ok = e != optarg && *e == '\0';
            break;
        case OPT_PREFIX:
            o.client_prefix = optarg;
            break;
        case OPT_ACK_LOG:
            o.ack_log = optarg;
            break;
        case OPT_CONNECT_RATE:
            ok = parse_u32(optarg, &o.connect_rate) && o.connect_rate > 0;
            break;
        case OPT_WINDOW:
            ok = parse_u32(optarg, &o.window) && o.window > 0 && o.window <= 1024;
            break;
        case OPT_BUFFER:
            ok = parse_u32(optarg, &o.buffer) && o.buffer > 0 && o.buffer <= 10000000;
            break;
        case OPT_BACKFILL:
            o.backfill_rate = strtod(optarg, &e);
            ok = e != optarg && *e == '\0' && o.backfill_rate > 0;
            break;
        case OPT_TUNNEL_RATE:
            ok = parse_prob(optarg, &o.tunnel_rate);
            break;
        case OPT_TUNNEL_MIN:
            ok = parse_duration_ms(optarg, &ms);
            o.tunnel_min_s = (double)ms / 1000.0;
            break;
        case OPT_TUNNEL_MAX:
            ok = parse_duration_ms(optarg, &ms);
            o.tunnel_max_s = (double)ms / 1000.0;
            break;
        case OPT_DUPLICATES:
            ok = parse_prob(optarg, &o.duplicates);
            break;
        case OPT_POWER_LOSS:
            ok = parse_prob(optarg, &o.power_loss);
            break;
        case OPT_POWER_OFF:
            ok = parse_duration_ms(optarg, &ms);
            o.power_off_s = (double)ms / 1000.0;
            break;
        case OPT_STORM_AT:
            ok = parse_duration_ms(optarg, &o.storm_at_ms) && o.storm_at_ms > 0;
            break;
        case OPT_RUSH_HOUR:
            ok = parse_u32(optarg, &o.rush_x) && o.rush_x >= 1 && o.rush_x <= 1000;
            break;
        case OPT_RUSH_EVERY:
            ok = parse_duration_ms(optarg, &o.rush_every_ms);
            break;
        case OPT_RUSH_FOR:
            ok = parse_duration_ms(optarg, &o.rush_for_ms);
            break;
        case OPT_OUT_OF_ORDER:
            ok = parse_prob(optarg, &o.out_of_order);
            break;
        case OPT_CLOCK_DRIFT:
            o.clock_drift = strtod(optarg, &e);
            ok = e != optarg && *e == '\0' && o.clock_drift >= 0 && o.clock_drift <= 360000;
            break;
        case OPT_BACKOFF_BASE:
            ok = parse_duration_ms(optarg, &ms) && ms <= UINT32_MAX;
            o.backoff_base_ms = (uint32_t)ms;
            break;
        case OPT_BACKOFF_CAP:
            ok = parse_duration_ms(optarg, &ms) && ms > 0 && ms <= UINT32_MAX;
            o.backoff_cap_ms = (uint32_t)ms;
            break;
        case OPT_DRAIN:
            ok = parse_duration_ms(optarg, &o.drain_ms);
            break;
        case OPT_VERIFY:
            o.verify = true;
            break;
        case OPT_VERIFY_TIMEOUT:
            ok = parse_duration_ms(optarg, &o.verify_timeout_ms);
            break;
        case OPT_QUIET:
            o.quiet = true;
            break;
        case OPT_PROCESSES:
            ok = parse_u32(optarg, &o.processes) && o.processes > 0;
            break;
        case OPT_E2E_TIMEOUT:
            ok = parse_duration_ms(optarg, &o.e2e_timeout_ms) && o.e2e_timeout_ms > 0;
            break;
        case OPT_HELP:
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "tern-sim: bad value for --%s: '%s'\n", longopts[c - OPT_BROKER].name,
                optarg);
            return 2;
        }
    }
    if (optind < argc || !o.broker) {
        fprintf(
            stderr, "tern-sim: %s\n", o.broker ? "unexpected argument" : "--broker is required");
        usage(stderr);
        return 2;
    }
    if (o.verify && !o.api) {
        fputs("tern-sim: --verify needs --api HOST:PORT\n", stderr);
        return 2;
    }
    if (o.tunnel_max_s < o.tunnel_min_s) {
        fputs("tern-sim: --tunnel-max is below --tunnel-min\n", stderr);
        return 2;
    }
    uint64_t fd_limit = tern_sim_fd_limit_raise();
    uint32_t n_procs = 0;
    if (tern_sim_processes_plan(o.n_devices, o.processes, fd_limit, &n_procs) != 0) {
        fprintf(stderr,
            "tern-sim: --processes %u cannot run %u devices: each process holds at most %llu "
            "connections (open-file limit %llu, %d kept for itself) and at least one device\n",
            o.processes, o.n_devices,
            (unsigned long long)(fd_limit > TERN_SIM_FD_RESERVE ? fd_limit - TERN_SIM_FD_RESERVE
                                                                : 0),
            (unsigned long long)fd_limit, TERN_SIM_FD_RESERVE);
        return 2;
    }
    tern_sim_summary sum;
    int rc = tern_sim_run(&o, &sum);
    if (rc != 0) {
        fprintf(stderr, "tern-sim: %s\n", tern_strerror(rc));
        return 2;
    }
    tern_buf line = TERN_BUF_INIT;
    if (tern_sim_summary_json(&line, &sum) == 0)
        printf("%.*s\n", (int)line.len, (const char *)line.data);
    int status = 0;
    if (sum.verified) {
        tern_buf_reset(&line);
        if (tern_sim_verdict_json(&line, &sum) == 0)
            printf("%.*s\n", (int)line.len, (const char *)line.data);
        status = sum.verify_ok ? 0 : 1;
    }
    if (sum.failed_processes > 0) {
        fprintf(stderr,
            "tern-sim: %u of %u worker processes died; the summary lacks their devices\n",
            sum.failed_processes, sum.processes);
        status = 3;
    }
    fflush(stdout);
    tern_buf_free(&line);
    return status;
}

/*
 * log_bench.c: the log benchmark's load generator: appends telemetry-sized records through the
 * log API (src/log/log.h) as fast as the log takes them, then reads them all back.
 *
 *   log_bench [--backend embedded|kafka] [--dir DIR | --brokers HOST:PORT] [options]
 *
 * Records: keys are device ids "dev00000".."dev09999" (--devices), values are JSON-like
 * telemetry samples of exactly --value-bytes bytes (random metric values, so compression sees
 * realistic bytes), drawn from a pool built before the clock starts. One topic with
 * --partitions partitions (8), records keyed so the log's murmur2 partitioner spreads them.
 * --threads producer threads (1 or 2) append in a tight loop (or paced at --rate records/s) for
 * --seconds or until --records; one append in --lat-sample carries its send time, and the append
 * callback records its append-to-durable latency in a histogram (base/histogram.h); every
 * callback counts a completion or an error. TERN_EAGAIN (the log holds too much not yet durable)
 * is counted and retried after a short sleep. The run ends when tern_log_flush returns:
 * throughput counts only records reported durable, over the time from the first append to the
 * last completion. In a tight loop the latency is mostly queueing behind the log's pending
 * limit (64 MiB embedded, 1M messages in librdkafka); --rate measures it below saturation.
 *
 * Then one consumer without a group reads every partition from the earliest offset until it has
 * seen as many records as were stored, and the read is timed (the data is in the page cache).
 *
 * Output: ONE JSON line on stdout (fields in bench/README.md); progress and errors on stderr.
 * Exit status 0 when every record was stored and read back, 1 otherwise, 2 on bad usage.
 * bench/log_bench.py runs it next to dd and Apache Kafka.
 */
#include "base/clock.h"
#include "base/error.h"
#include "base/histogram.h"
#include "log/log.h"

#include <ftw.h>
#include <getopt.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#define VALUE_POOL 65536u /* distinct values, cycled through; a power of two */
#define KEY_BYTES 8       /* "dev01234" */
#define POLL_BATCH 1024
#define CONSUME_IDLE_MS 15000 /* give up reading after this long without a message */
#define MAX_THREADS 2

typedef struct options {
    tern_log_backend backend;
    const char *dir;
    const char *brokers;
    const char *topic;
    uint32_t partitions;
    tern_log_fsync fsync;
    uint32_t group_commit_ms;
    uint32_t linger_ms;
    bool compress;
    size_t value_bytes;
    uint32_t devices;
    unsigned threads;
    double seconds;
    uint64_t records; /* 0: run for seconds */
    uint64_t max_pending;
    uint64_t rate;       /* records/s over all threads; 0: as fast as the log takes them */
    uint32_t lat_sample; /* time one append in lat_sample (a power of two) */
    bool consume;
} options;

/* Shared by the producers and the callbacks (which run on the log's I/O thread). */
typedef struct bench {
    const options *opt;
    tern_log *log;
    uint8_t *values; /* VALUE_POOL x value_bytes */
    char (*keys)[KEY_BYTES + 1];
    tern_histogram lat_ns;
    _Atomic uint64_t appended;  /* accepted by tern_log_append */
    _Atomic uint64_t completed; /* callbacks run */
    _Atomic uint64_t cb_errors; /* callbacks with status < 0: not stored */
    _Atomic uint64_t errors;    /* appends refused for good */
    _Atomic uint64_t eagain;
    _Atomic uint64_t claimed; /* --records: the next record number to take */
    _Atomic int first_error;
    uint64_t start_ns;
    uint64_t deadline_ns;
} bench;

typedef struct producer {
    bench *b;
    unsigned index;
    pthread_t thread;
} producer;

/* ---- records ------------------------------------------------------------------------------ */

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64*: fast and good enough to vary metric values and device order. */
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * UINT64_C(2685821657736338717);
}

/* rng_range returns a value in [lo, hi) with 3 decimals of resolution. */
static double rng_range(uint64_t *s, double lo, double hi)
{
    return lo + (hi - lo) * (double)(rng_next(s) % 1000000u) / 1e6;
}

/* make_value writes one telemetry sample of exactly n bytes into out: a JSON object of metrics,
 * padded with spaces (JSON whitespace) or cut short when n is too small for a whole object. */
static void make_value(uint8_t *out, size_t n, uint32_t device, uint64_t seq, uint64_t *rng)
{
    static const struct {
        const char *name;
        double lo, hi;
        int decimals;
    } metrics[] = {
        { "soc", 5, 100, 1 },
        { "v_pack", 320, 420, 2 },
        { "i_pack", -150, 250, 1 },
        { "t_bat", -10, 45, 1 },
        { "t_motor", 20, 110, 1 },
        { "speed", 0, 140, 1 },
        { "odo", 1000, 250000, 1 },
        { "lat", 47, 55, 5 },
        { "lon", 5, 15, 5 },
        { "power_kw", -60, 180, 2 },
        { "tire_fl", 2.1, 2.7, 2 },
        { "tire_fr", 2.1, 2.7, 2 },
        { "tire_rl", 2.1, 2.7, 2 },
        { "tire_rr", 2.1, 2.7, 2 },
        { "hvac_kw", 0, 6, 2 },
        { "range_km", 10, 520, 0 },
        { "cell_min", 3.1, 4.2, 3 },
        { "cell_max", 3.1, 4.2, 3 },
        { "charge", 0, 2, 0 },
        { "gear", 0, 4, 0 },
    };
    char buf[1024];
    int len = snprintf(buf, sizeof buf,
        "{\"dev\":\"dev%05" PRIu32 "\",\"seq\":%" PRIu64 ",\"ts\":%" PRIu64 ",\"m\":{", device, seq,
        UINT64_C(1764000000000) + seq * 10000u);
    size_t used = (size_t)len;
    bool first = true;
    for (size_t i = 0; i < sizeof metrics / sizeof metrics[0]; i++) {
        char one[64];
        int m = snprintf(one, sizeof one, "%s\"%s\":%.*f", first ? "" : ",", metrics[i].name,
            metrics[i].decimals, rng_range(rng, metrics[i].lo, metrics[i].hi));
        if (used + (size_t)m + 2 > n)
            break;
        memcpy(buf + used, one, (size_t)m);
        used += (size_t)m;
        first = false;
    }
    if (used + 2 > n) {
        memcpy(out, buf, n); /* too small for a whole object: its first n bytes */
        return;
    }
    memcpy(out, buf, used);
    memset(out + used, ' ', n - used - 2);
    out[n - 2] = '}';
    out[n - 1] = '}';
}

static int build_pool(bench *b)
{
    const options *o = b->opt;
    b->values = malloc((size_t)VALUE_POOL * (o->value_bytes ? o->value_bytes : 1));
    b->keys = malloc((size_t)o->devices * sizeof *b->keys);
    if (!b->values || !b->keys)
        return TERN_ENOMEM;
    for (uint32_t d = 0; d < o->devices; d++)
        snprintf(b->keys[d], sizeof b->keys[d], "dev%05" PRIu32, d % 100000u);
    uint64_t rng = UINT64_C(0x9e3779b97f4a7c15);
    for (uint32_t i = 0; i < VALUE_POOL; i++)
        make_value(b->values + (size_t)i * o->value_bytes, o->value_bytes, i % o->devices, i, &rng);
    return 0;
}

/* ---- append ------------------------------------------------------------------------------- */

/*
 * on_durable runs on the log's I/O thread, so whatever it costs slows the log down: it counts,
 * and only for the sampled appends (opaque != NULL carries the append's CLOCK_MONOTONIC ns)
 * reads the clock and records the latency. Sampling one append in 16 keeps the clock reads and
 * atomic histogram updates (~13% of the embedded I/O thread's CPU when every append was timed)
 * out of the measurement while still giving ~100k samples per second.
 */
static bench *g_bench;

static void on_durable(void *opaque, int status, uint32_t partition, int64_t offset)
{
    (void)partition;
    (void)offset;
    bench *b = g_bench;
    if (status == 0) {
        if (opaque) {
            uint64_t sent = (uint64_t)(uintptr_t)opaque;
            uint64_t now = tern_clock_mono_ns();
            tern_histogram_record(&b->lat_ns, now > sent ? now - sent : 0);
        }
    } else {
        atomic_fetch_add_explicit(&b->cb_errors, 1, memory_order_relaxed);
        int none = 0;
        atomic_compare_exchange_strong(&b->first_error, &none, status);
    }
    atomic_fetch_add_explicit(&b->completed, 1, memory_order_release);
}

static void sleep_us(long us)
{
    struct timespec ts = { 0, us * 1000L };
    nanosleep(&ts, NULL);
}

static void *producer_main(void *arg)
{
    producer *p = arg;
    bench *b = p->b;
    const options *o = b->opt;
    uint64_t rng = UINT64_C(0x2545f4914f6cdd1d) + p->index * UINT64_C(0x9e3779b97f4a7c15);
    uint64_t i = p->index;
    for (uint64_t n = 0;; n++) {
        if (o->records) {
            if (atomic_fetch_add_explicit(&b->claimed, 1, memory_order_relaxed) >= o->records)
                break;
        } else if ((n & 255u) == 0 && tern_clock_mono_ns() >= b->deadline_ns) {
            break;
        }
        if (o->rate) {
            /* Open loop: this thread's share of the rate, checked against the clock. */
            for (;;) {
                uint64_t now = tern_clock_mono_ns();
                double due = (double)(now - b->start_ns) * 1e-9 * (double)o->rate / o->threads;
                if ((double)n < due || (!o->records && now >= b->deadline_ns))
                    break;
                sleep_us(50);
            }
            if (!o->records && tern_clock_mono_ns() >= b->deadline_ns)
                break;
        }
        while (o->max_pending
            && atomic_load_explicit(&b->appended, memory_order_relaxed)
                    - atomic_load_explicit(&b->completed, memory_order_acquire)
                >= o->max_pending)
            sleep_us(20);
        uint32_t device = (uint32_t)(rng_next(&rng) % o->devices);
        tern_log_record rec = {
            .key = (const uint8_t *)b->keys[device],
            .key_len = KEY_BYTES,
            .value = b->values + (size_t)(i & (VALUE_POOL - 1)) * o->value_bytes,
            .value_len = o->value_bytes,
        };
        i += o->threads;
        bool timed = (n & (o->lat_sample - 1u)) == 0;
        for (;;) {
            uint64_t sent = timed ? tern_clock_mono_ns() : 0;
            int rc
                = tern_log_append(b->log, o->topic, -1, &rec, on_durable, (void *)(uintptr_t)sent);
            if (rc == 0) {
                atomic_fetch_add_explicit(&b->appended, 1, memory_order_relaxed);
                break;
            }
            if (rc == TERN_EAGAIN) {
                atomic_fetch_add_explicit(&b->eagain, 1, memory_order_relaxed);
                sleep_us(100);
                if (!o->records && tern_clock_mono_ns() >= b->deadline_ns + UINT64_C(5000000000))
                    return NULL; /* stuck for 5 s past the end: give up */
                continue;
            }
            atomic_fetch_add_explicit(&b->errors, 1, memory_order_relaxed);
            int none = 0;
            atomic_compare_exchange_strong(&b->first_error, &none, rc);
            return NULL;
        }
    }
    return NULL;
}

/* ---- disk usage --------------------------------------------------------------------------- */

static uint64_t g_du_bytes;

static int du_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path;
    (void)ftw;
    if (flag == FTW_F)
        g_du_bytes += (uint64_t)st->st_blocks * 512u;
    return 0;
}

/* du returns the bytes allocated to the regular files under dir (like du -s --bytes of blocks). */
static uint64_t du(const char *dir)
{
    g_du_bytes = 0;
    if (nftw(dir, du_one, 16, FTW_PHYS) != 0)
        return 0;
    return g_du_bytes;
}

/* ---- consume ------------------------------------------------------------------------------ */

typedef struct consume_result {
    uint64_t records;
    uint64_t bytes;
    double seconds;   /* from opening the consumer to the last message */
    double startup_s; /* from opening the consumer to the first message */
    double per_s;     /* records/s from the first message to the last */
    double mb_per_s;  /* key + value bytes, the same interval */
    int error;
} consume_result;

/* consume_all reads the topic from the earliest offsets until expect records came back (or
 * nothing came for CONSUME_IDLE_MS) and times it. The rates leave out the consumer's startup
 * (a Kafka consumer fetches metadata and offsets first), which startup_s reports. */
static void consume_all(bench *b, uint64_t expect, consume_result *r)
{
    const options *o = b->opt;
    memset(r, 0, sizeof *r);
    const char *topics[] = { o->topic };
    tern_log_consumer_config cc = {
        .group = NULL,
        .topics = topics,
        .n_topics = 1,
        .start = TERN_LOG_OFFSET_EARLIEST,
    };
    static tern_log_message msgs[POLL_BATCH];
    uint64_t t0 = tern_clock_mono_ns(), t_last = t0, t_first = 0;
    uint64_t first_n = 0, first_bytes = 0;
    tern_log_consumer *c = NULL;
    int rc = tern_log_consumer_open(b->log, &cc, &c);
    if (rc != 0) {
        r->error = rc;
        return;
    }
    while (r->records < expect) {
        size_t n = 0;
        rc = tern_log_consumer_poll(c, msgs, POLL_BATCH, 200, &n);
        if (rc != 0) {
            r->error = rc;
            break;
        }
        uint64_t now = tern_clock_mono_ns();
        if (n == 0) {
            if (now - t_last > (uint64_t)CONSUME_IDLE_MS * 1000000u)
                break;
            continue;
        }
        for (size_t k = 0; k < n; k++)
            r->bytes += msgs[k].key_len + msgs[k].value_len;
        r->records += n;
        t_last = now;
        if (!t_first) {
            t_first = now;
            first_n = r->records;
            first_bytes = r->bytes;
        }
    }
    r->seconds = (double)(t_last - t0) / 1e9;
    if (t_first) {
        r->startup_s = (double)(t_first - t0) / 1e9;
        double span = (double)(t_last - t_first) / 1e9;
        if (span > 0) {
            r->per_s = (double)(r->records - first_n) / span;
            r->mb_per_s = (double)(r->bytes - first_bytes) / span / 1e6;
        }
    }
    tern_log_consumer_close(c);
}

/* ---- options ------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fprintf(out,
        "usage: log_bench [options]\n"
        "  --backend embedded|kafka  which log backend (embedded)\n"
        "  --dir DIR                 embedded: data directory (./log-bench-data)\n"
        "  --brokers HOST:PORT       kafka: bootstrap servers (127.0.0.1:9092)\n"
        "  --topic NAME              topic to create and fill (bench)\n"
        "  --partitions N            partitions of the topic (8)\n"
        "  --fsync always|group      embedded durability policy (group)\n"
        "  --group-commit-ms N       embedded group commit interval (5)\n"
        "  --linger-ms N             kafka producer linger (5)\n"
        "  --compress 0|1            embedded zstd batches (0); kafka always uses zstd\n"
        "  --value-bytes N           bytes per record value (200)\n"
        "  --devices N               distinct keys (10000)\n"
        "  --threads 1|2             producer threads (1)\n"
        "  --seconds S               append for S seconds (10)\n"
        "  --records N               append exactly N records instead\n"
        "  --max-pending N           at most N appends not yet durable (0: the log's limit)\n"
        "  --rate N                  append N records/s in all (paced; 0: tight loop)\n"
        "  --lat-sample N            time one append in N, a power of two (16)\n"
        "  --no-consume              skip the read-back phase\n");
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || !end || *end || end == s || s[0] == '-' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options) {
        .backend = TERN_LOG_EMBEDDED,
        .dir = "./log-bench-data",
        .brokers = "127.0.0.1:9092",
        .topic = "bench",
        .partitions = 8,
        .fsync = TERN_LOG_FSYNC_GROUP,
        .group_commit_ms = 5,
        .linger_ms = 5,
        .compress = false,
        .value_bytes = 200,
        .devices = 10000,
        .threads = 1,
        .seconds = 10,
        .lat_sample = 16,
        .consume = true,
    };
    enum {
        O_BACKEND = 256,
        O_DIR,
        O_BROKERS,
        O_TOPIC,
        O_PARTITIONS,
        O_FSYNC,
        O_GROUP_MS,
        O_LINGER,
        O_COMPRESS,
        O_VALUE,
        O_DEVICES,
        O_THREADS,
        O_SECONDS,
        O_RECORDS,
        O_MAX_PENDING,
        O_LAT_SAMPLE,
        O_RATE,
        O_NO_CONSUME,
        O_HELP,
    };
    static const struct option longopts[] = {
        { "backend", required_argument, NULL, O_BACKEND },
        { "dir", required_argument, NULL, O_DIR },
        { "brokers", required_argument, NULL, O_BROKERS },
        { "topic", required_argument, NULL, O_TOPIC },
        { "partitions", required_argument, NULL, O_PARTITIONS },
        { "fsync", required_argument, NULL, O_FSYNC },
        { "group-commit-ms", required_argument, NULL, O_GROUP_MS },
        { "linger-ms", required_argument, NULL, O_LINGER },
        { "compress", required_argument, NULL, O_COMPRESS },
        { "value-bytes", required_argument, NULL, O_VALUE },
        { "devices", required_argument, NULL, O_DEVICES },
        { "threads", required_argument, NULL, O_THREADS },
        { "seconds", required_argument, NULL, O_SECONDS },
        { "records", required_argument, NULL, O_RECORDS },
        { "max-pending", required_argument, NULL, O_MAX_PENDING },
        { "lat-sample", required_argument, NULL, O_LAT_SAMPLE },
        { "rate", required_argument, NULL, O_RATE },
        { "no-consume", no_argument, NULL, O_NO_CONSUME },
        { "help", no_argument, NULL, O_HELP },
        { NULL, 0, NULL, 0 },
    };
    int ch;
    uint64_t v;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case O_BACKEND:
            if (strcmp(optarg, "embedded") == 0)
                o->backend = TERN_LOG_EMBEDDED;
            else if (strcmp(optarg, "kafka") == 0)
                o->backend = TERN_LOG_KAFKA;
            else
                goto bad;
            break;
        case O_DIR:
            o->dir = optarg;
            break;
        case O_BROKERS:
            o->brokers = optarg;
            break;
        case O_TOPIC:
            o->topic = optarg;
            break;
        case O_PARTITIONS:
            if (!parse_u64(optarg, 1, 1024, &v))
                goto bad;
            o->partitions = (uint32_t)v;
            break;
        case O_FSYNC:
            if (strcmp(optarg, "always") == 0)
                o->fsync = TERN_LOG_FSYNC_ALWAYS;
            else if (strcmp(optarg, "group") == 0)
                o->fsync = TERN_LOG_FSYNC_GROUP;
            else
                goto bad;
            break;
        case O_GROUP_MS:
            if (!parse_u64(optarg, 0, 60000, &v))
                goto bad;
            o->group_commit_ms = (uint32_t)v;
            break;
        case O_LINGER:
            if (!parse_u64(optarg, 0, 10000, &v))
                goto bad;
            o->linger_ms = (uint32_t)v;
            break;
        case O_COMPRESS:
            if (!parse_u64(optarg, 0, 1, &v))
                goto bad;
            o->compress = v == 1;
            break;
        case O_VALUE:
            if (!parse_u64(optarg, 1, 1u << 20, &v))
                goto bad;
            o->value_bytes = (size_t)v;
            break;
        case O_DEVICES:
            if (!parse_u64(optarg, 1, 99999, &v))
                goto bad;
            o->devices = (uint32_t)v;
            break;
        case O_THREADS:
            if (!parse_u64(optarg, 1, MAX_THREADS, &v))
                goto bad;
            o->threads = (unsigned)v;
            break;
        case O_SECONDS: {
            char *end = NULL;
            o->seconds = strtod(optarg, &end);
            if (!end || *end || !(o->seconds > 0 && o->seconds <= 86400))
                goto bad;
            break;
        }
        case O_RECORDS:
            if (!parse_u64(optarg, 1, UINT64_C(1) << 40, &v))
                goto bad;
            o->records = v;
            break;
        case O_MAX_PENDING:
            if (!parse_u64(optarg, 0, UINT64_C(1) << 30, &v))
                goto bad;
            o->max_pending = v;
            break;
        case O_LAT_SAMPLE:
            if (!parse_u64(optarg, 1, 1u << 20, &v) || (v & (v - 1)) != 0)
                goto bad;
            o->lat_sample = (uint32_t)v;
            break;
        case O_RATE:
            if (!parse_u64(optarg, 0, UINT64_C(1) << 32, &v))
                goto bad;
            o->rate = v;
            break;
        case O_NO_CONSUME:
            o->consume = false;
            break;
        case O_HELP:
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            return -1;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "log_bench: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return -1;
    }
    return 0;
bad:
    fprintf(stderr, "log_bench: bad value '%s' for --%s\n", optarg, longopts[ch - O_BACKEND].name);
    return -1;
}

/* ---- main --------------------------------------------------------------------------------- */

static double cpu_seconds(const struct timeval *tv)
{
    return (double)tv->tv_sec + (double)tv->tv_usec / 1e6;
}

static double us(uint64_t ns)
{
    return (double)ns / 1000.0;
}

int main(int argc, char **argv)
{
    options o;
    if (parse_options(argc, argv, &o) != 0)
        return 2;
    static bench b;
    b.opt = &o;
    g_bench = &b;
    tern_histogram_init(&b.lat_ns);
    int rc = build_pool(&b);
    if (rc != 0) {
        fprintf(stderr, "log_bench: %s\n", tern_strerror(rc));
        return 1;
    }

    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.backend = o.backend;
    cfg.dir = o.dir;
    cfg.fsync = o.fsync;
    cfg.group_commit_ms = o.group_commit_ms;
    cfg.compress = o.compress;
    cfg.kafka_brokers = o.brokers;
    cfg.kafka_client_id = "tern-log-bench";
    cfg.kafka_linger_ms = o.linger_ms;
    rc = tern_log_open(&cfg, &b.log);
    if (rc != 0) {
        fprintf(stderr, "log_bench: cannot open the log: %s\n", tern_strerror(rc));
        return 1;
    }
    rc = tern_log_create_topic(b.log, o.topic, o.partitions);
    if (rc != 0) {
        fprintf(stderr, "log_bench: cannot create topic %s: %s\n", o.topic, tern_strerror(rc));
        tern_log_close(b.log);
        return 1;
    }

    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    uint64_t t0 = tern_clock_mono_ns();
    b.start_ns = t0;
    b.deadline_ns = t0 + (uint64_t)(o.seconds * 1e9);
    producer prods[MAX_THREADS];
    unsigned started = 0;
    for (unsigned t = 0; t < o.threads; t++) {
        prods[t] = (producer) { .b = &b, .index = t };
        int prc = pthread_create(&prods[t].thread, NULL, producer_main, &prods[t]);
        if (prc != 0) {
            fprintf(stderr, "log_bench: pthread_create: %s\n", strerror(prc));
            break;
        }
        started++;
    }
    for (unsigned t = 0; t < started; t++)
        pthread_join(prods[t].thread, NULL);
    uint64_t t_appended = tern_clock_mono_ns();
    int frc = tern_log_flush(b.log);
    uint64_t t_durable = tern_clock_mono_ns();
    getrusage(RUSAGE_SELF, &ru1);
    if (frc != 0)
        fprintf(stderr, "log_bench: flush: %s\n", tern_strerror(frc));

    tern_log_stats st;
    tern_log_get_stats(b.log, &st);
    uint64_t appended = atomic_load(&b.appended);
    uint64_t completed = atomic_load(&b.completed);
    uint64_t cb_errors = atomic_load(&b.cb_errors);
    uint64_t durable = completed - cb_errors;
    double append_s = (double)(t_appended - t0) / 1e9;
    double total_s = (double)(t_durable - t0) / 1e9;
    double rec_bytes = (double)(o.value_bytes + KEY_BYTES);

    consume_result cr = { 0 };
    if (o.consume && durable > 0)
        consume_all(&b, durable, &cr);
    tern_log_close(b.log);
    uint64_t disk = o.backend == TERN_LOG_EMBEDDED ? du(o.dir) : 0;

    uint64_t errors = atomic_load(&b.errors) + cb_errors + (appended - completed);
    int first_error = atomic_load(&b.first_error);
    if (cr.error) {
        errors++;
        fprintf(stderr, "log_bench: consumer: %s\n", tern_strerror(cr.error));
    }
    if (first_error)
        fprintf(stderr, "log_bench: first append error: %s\n", tern_strerror(first_error));
    const char *err_name = first_error ? tern_strerror(first_error) : "";

    printf("{\"bench\":\"log\",\"backend\":\"%s\",\"fsync\":\"%s\",\"group_commit_ms\":%" PRIu32
           ",\"compress\":%d,\"threads\":%u,\"partitions\":%" PRIu32 ",\"value_bytes\":%zu"
           ",\"key_bytes\":%d,\"devices\":%" PRIu32 ",\"max_pending\":%" PRIu64 ",\"rate\":%" PRIu64
           ",\"lat_sample\":%" PRIu32,
        o.backend == TERN_LOG_KAFKA ? "kafka" : "embedded",
        o.fsync == TERN_LOG_FSYNC_ALWAYS ? "always" : "group", o.group_commit_ms,
        o.backend == TERN_LOG_KAFKA ? 1 : (int)o.compress, o.threads, o.partitions, o.value_bytes,
        KEY_BYTES, o.devices, o.max_pending, o.rate, o.lat_sample);
    printf(",\"appended\":%" PRIu64 ",\"records\":%" PRIu64 ",\"errors\":%" PRIu64
           ",\"first_error\":\"%s\",\"eagain\":%" PRIu64 ",\"append_s\":%.3f,\"seconds\":%.3f",
        appended, durable, errors, err_name, atomic_load(&b.eagain), append_s, total_s);
    printf(",\"records_per_s\":%.0f,\"mb_per_s\":%.2f,\"append_calls_per_s\":%.0f",
        total_s > 0 ? (double)durable / total_s : 0,
        total_s > 0 ? (double)durable * rec_bytes / total_s / 1e6 : 0,
        append_s > 0 ? (double)appended / append_s : 0);
    printf(",\"lat_p50_us\":%.1f,\"lat_p99_us\":%.1f,\"lat_p999_us\":%.1f,\"lat_max_us\":%.1f",
        us(tern_histogram_percentile(&b.lat_ns, 0.50)),
        us(tern_histogram_percentile(&b.lat_ns, 0.99)),
        us(tern_histogram_percentile(&b.lat_ns, 0.999)), us(tern_histogram_max(&b.lat_ns)));
    if (o.backend == TERN_LOG_EMBEDDED) /* what the log wrote: batches with their framing */
        printf(",\"log_bytes\":%" PRIu64 ",\"write_mb_per_s\":%.2f,\"batches\":%" PRIu64
               ",\"fsyncs\":%" PRIu64 ",\"avg_batch_bytes\":%.0f,\"disk_bytes\":%" PRIu64,
            st.bytes_appended, total_s > 0 ? (double)st.bytes_appended / total_s / 1e6 : 0,
            st.batches_written, st.fsyncs,
            st.batches_written ? (double)st.bytes_appended / (double)st.batches_written : 0, disk);
    printf(",\"consume_records\":%" PRIu64 ",\"consume_s\":%.3f,\"consume_startup_ms\":%.1f"
           ",\"consume_records_per_s\":%.0f,\"consume_mb_per_s\":%.2f",
        cr.records, cr.seconds, cr.startup_s * 1e3, cr.per_s, cr.mb_per_s);
    printf(",\"cpu_user_s\":%.2f,\"cpu_sys_s\":%.2f}\n",
        cpu_seconds(&ru1.ru_utime) - cpu_seconds(&ru0.ru_utime),
        cpu_seconds(&ru1.ru_stime) - cpu_seconds(&ru0.ru_stime));
    fflush(stdout);

    free(b.values);
    free(b.keys);
    bool ok = errors == 0 && completed == appended && durable == appended
        && (!o.consume || cr.records == durable);
    return ok ? 0 : 1;
}

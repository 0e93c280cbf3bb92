/*
 * log_conformance.c: one behaviour suite for the log API (log.h), run against either backend:
 *
 *     log_conformance --backend embedded --dir DIR [--topic-prefix P]
 *     log_conformance --backend kafka --brokers HOST:PORT --topic-prefix UNIQUE
 *
 * It prints "ok N - what" per check and stops at the first failure with "not ok N - what" and
 * the reason (exit status 1; 2 for bad arguments). Every check goes through log.h only, so a
 * difference between the backends shows as a failing check. Waits for asynchronous work (Kafka
 * group rebalances) poll in loops bounded by a deadline; nothing here is a timed assertion.
 * tests/integration/test_log_conformance.py runs it against both backends.
 */
#include "log/log.h"

#include "base/error.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_SENT 1024
#define MAX_PARTITIONS 8
#define DEADLINE_MS 60000 /* bound on any wait for a rebalance or for records to arrive */
#define LARGE_BYTES (2u << 20)

/* ---- reporting ---------------------------------------------------------------------------- */

static int g_n_checks;
static const char *g_check = "setup";

static void begin(const char *what)
{
    g_check = what;
    g_n_checks++;
}

static void pass(void)
{
    printf("ok %d - %s\n", g_n_checks, g_check);
    fflush(stdout);
}

__attribute__((format(printf, 2, 3))) static _Noreturn void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    printf("not ok %d - %s\n  line %d: ", g_n_checks, g_check, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    exit(1);
}

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail_at(__LINE__, "check failed: " #cond ": " __VA_ARGS__);                            \
    } while (0)

/* RC checks that a call returned want, naming both codes. */
#define RC(call, want)                                                                             \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_ != (want))                                                                         \
            fail_at(__LINE__, "%s returned %d (%s), want %d (%s)", #call, rc_, tern_strerror(rc_), \
                (want), tern_strerror(want));                                                      \
    } while (0)

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- records sent, and their completions ------------------------------------------------- */

typedef struct sent {
    const char *topic;
    uint8_t key[32];
    size_t key_len;
    uint8_t *value; /* owned */
    size_t value_len;
    int64_t ts_ms;       /* as appended; 0: the append time */
    int64_t appended_ms; /* wall clock at the append, for ts_ms == 0 */
    char seq[16];        /* value of the "seq" header */
    bool headers;
    /* set by the completion callback */
    _Atomic int calls;
    int status;
    uint32_t partition;
    int64_t offset;
    bool on_caller_thread;
} sent;

static sent g_sent[MAX_SENT];
static size_t g_n_sent;
static pthread_t g_main_thread;
static _Atomic int g_calls_total;

static void on_append(void *opaque, int status, uint32_t partition, int64_t offset)
{
    sent *s = opaque;
    s->status = status;
    s->partition = partition;
    s->offset = offset;
    s->on_caller_thread = pthread_equal(pthread_self(), g_main_thread) != 0;
    atomic_fetch_add(&s->calls, 1); /* seq_cst: publishes the fields above */
    atomic_fetch_add(&g_calls_total, 1);
}

/* append appends one record (key may be NULL) and returns its entry; fails on an error. */
static sent *append(tern_log *log, const char *topic, int32_t partition, const char *key,
    size_t value_len, int64_t ts_ms, bool headers)
{
    CHECK(g_n_sent < MAX_SENT, "too many records");
    sent *s = &g_sent[g_n_sent];
    size_t idx = g_n_sent++;
    s->topic = topic;
    s->key_len = key ? strlen(key) : 0;
    if (key)
        memcpy(s->key, key, s->key_len);
    s->value_len = value_len;
    s->value = malloc(value_len ? value_len : 1);
    CHECK(s->value != NULL, "out of memory");
    int n = snprintf((char *)s->value, value_len, "value %zu of %s:", idx, topic);
    for (size_t i = n > 0 ? (size_t)n : 0; i < value_len; i++)
        s->value[i] = (uint8_t)((i * 31u + idx) & 0xff);
    s->ts_ms = ts_ms;
    s->headers = headers;
    snprintf(s->seq, sizeof s->seq, "%zu", idx);
    tern_log_header hdrs[3] = {
        { "seq", (const uint8_t *)s->seq, strlen(s->seq) },
        { "source", (const uint8_t *)"conformance", 11 },
        { "empty", NULL, 0 },
    };
    tern_log_record rec = {
        .key = key ? s->key : NULL,
        .key_len = s->key_len,
        .value = s->value,
        .value_len = s->value_len,
        .ts_ms = ts_ms,
        .headers = headers ? hdrs : NULL,
        .n_headers = headers ? 3 : 0,
    };
    s->appended_ms = wall_ms();
    RC(tern_log_append(log, topic, partition, &rec, on_append, s), 0);
    return s;
}

/* completed checks that s completed exactly once with status 0 off the caller's thread. */
static void completed(const sent *s)
{
    int calls = atomic_load(&((sent *)s)->calls);
    CHECK(calls == 1, "record %s of %s completed %d times", s->seq, s->topic, calls);
    CHECK(s->status == 0, "record %s: status %d (%s)", s->seq, s->status, tern_strerror(s->status));
    CHECK(!s->on_caller_thread, "record %s: callback ran on the appending thread", s->seq);
}

/* find returns the record appended to topic/partition/offset, or NULL. */
static const sent *find(const char *topic, uint32_t partition, int64_t offset)
{
    for (size_t i = 0; i < g_n_sent; i++) {
        const sent *s = &g_sent[i];
        if (atomic_load(&((sent *)s)->calls) == 1 && s->status == 0 && s->partition == partition
            && s->offset == offset && strcmp(s->topic, topic) == 0)
            return s;
    }
    return NULL;
}

/* verify checks that m is exactly one of the records appended, intact. */
static void verify(const tern_log_message *m)
{
    const sent *s = find(m->topic, m->partition, m->offset);
    CHECK(s != NULL, "message %s/%" PRIu32 "@%" PRId64 " was never appended", m->topic,
        m->partition, m->offset);
    CHECK(m->key_len == s->key_len && (s->key_len == 0 || memcmp(m->key, s->key, s->key_len) == 0),
        "record %s: key differs (%zu bytes, want %zu)", s->seq, m->key_len, s->key_len);
    CHECK(m->value_len == s->value_len && memcmp(m->value, s->value, s->value_len) == 0,
        "record %s: value differs (%zu bytes, want %zu)", s->seq, m->value_len, s->value_len);
    if (s->ts_ms)
        CHECK(m->ts_ms == s->ts_ms, "record %s: ts %" PRId64 ", want %" PRId64, s->seq, m->ts_ms,
            s->ts_ms);
    else
        CHECK(m->ts_ms >= s->appended_ms - 5000 && m->ts_ms <= s->appended_ms + 60000,
            "record %s: ts %" PRId64 " is not the append time %" PRId64, s->seq, m->ts_ms,
            s->appended_ms);
    if (!s->headers) {
        CHECK(m->n_headers == 0, "record %s: %zu headers, want none", s->seq, m->n_headers);
        return;
    }
    CHECK(m->n_headers == 3, "record %s: %zu headers, want 3", s->seq, m->n_headers);
    const tern_log_header *h = m->headers;
    CHECK(strcmp(h[0].name, "seq") == 0 && h[0].value_len == strlen(s->seq)
            && memcmp(h[0].value, s->seq, h[0].value_len) == 0,
        "record %s: header 0 is %s (%zu bytes)", s->seq, h[0].name, h[0].value_len);
    CHECK(strcmp(h[1].name, "source") == 0 && h[1].value_len == 11
            && memcmp(h[1].value, "conformance", 11) == 0,
        "record %s: header 1 is %s (%zu bytes)", s->seq, h[1].name, h[1].value_len);
    CHECK(strcmp(h[2].name, "empty") == 0 && h[2].value_len == 0,
        "record %s: header 2 is %s (%zu bytes)", s->seq, h[2].name, h[2].value_len);
}

/* ---- what a reader expects ---------------------------------------------------------------- */

/* For one topic: the next offset each partition must deliver, and where to stop. */
typedef struct expect {
    const char *topic;
    uint32_t n_partitions;
    int64_t next[MAX_PARTITIONS];
    int64_t end[MAX_PARTITIONS];
    size_t n_read;
} expect;

static void expect_init(
    expect *e, const char *topic, uint32_t n_partitions, const int64_t *from, const int64_t *end)
{
    memset(e, 0, sizeof *e);
    e->topic = topic;
    e->n_partitions = n_partitions;
    for (uint32_t p = 0; p < n_partitions; p++) {
        e->next[p] = from ? from[p] : 0;
        e->end[p] = end[p];
    }
}

static bool reached(const expect *e)
{
    for (uint32_t p = 0; p < e->n_partitions; p++)
        if (e->next[p] != e->end[p])
            return false;
    return true;
}

/*
 * take checks one message against e: an allowed partition (allowed may be NULL), exactly the
 * next offset of its partition (so: in order, no gap, no duplicate), not beyond the end, intact.
 */
static void take(expect *e, const bool *allowed, const tern_log_message *m, const char *who)
{
    CHECK(m->partition < e->n_partitions, "%s: partition %" PRIu32, who, m->partition);
    CHECK(!allowed || allowed[m->partition],
        "%s: got a message of partition %" PRIu32 " that it does not own", who, m->partition);
    CHECK(m->offset == e->next[m->partition],
        "%s: %s/%" PRIu32 " gave offset %" PRId64 ", expected %" PRId64, who, e->topic,
        m->partition, m->offset, e->next[m->partition]);
    CHECK(m->offset < e->end[m->partition],
        "%s: %s/%" PRIu32 " gave offset %" PRId64 " past the expected end %" PRId64, who, e->topic,
        m->partition, m->offset, e->end[m->partition]);
    verify(m);
    e->next[m->partition]++;
    e->n_read++;
}

/* poll_topics polls c once and hands each message to the expect of its topic (take). */
static size_t poll_topics(
    tern_log_consumer *c, expect *const *es, size_t n_es, int timeout_ms, const char *who)
{
    tern_log_message msgs[64];
    size_t n = 99;
    RC(tern_log_consumer_poll(c, msgs, 64, timeout_ms, &n), 0);
    CHECK(n <= 64, "%s: poll set n = %zu", who, n);
    for (size_t i = 0; i < n; i++) {
        expect *e = NULL;
        for (size_t k = 0; k < n_es && !e; k++)
            if (strcmp(msgs[i].topic, es[k]->topic) == 0)
                e = es[k];
        CHECK(e != NULL, "%s: message of topic %s", who, msgs[i].topic);
        take(e, NULL, &msgs[i], who);
    }
    return n;
}

/* poll_into polls c once and checks every message against e (take). Returns how many. */
static size_t poll_into(
    tern_log_consumer *c, expect *e, const bool *allowed, int timeout_ms, const char *who)
{
    tern_log_message msgs[64];
    size_t n = 99;
    RC(tern_log_consumer_poll(c, msgs, 64, timeout_ms, &n), 0);
    CHECK(n <= 64, "%s: poll set n = %zu", who, n);
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(msgs[i].topic, e->topic) == 0, "%s: message of topic %s", who, msgs[i].topic);
        take(e, allowed, &msgs[i], who);
    }
    return n;
}

static void describe(const expect *e, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = 0;
    for (uint32_t p = 0; p < e->n_partitions && used < len; p++) {
        int w = snprintf(
            buf + used, len - used, " p%" PRIu32 ":%" PRId64 "/%" PRId64, p, e->next[p], e->end[p]);
        if (w < 0)
            break;
        used += (size_t)w;
    }
}

/* drain polls c until e is reached (bounded), then makes sure nothing more arrives. */
static void drain(tern_log_consumer *c, expect *e, const char *who)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    while (!reached(e)) {
        char buf[256];
        describe(e, buf, sizeof buf);
        CHECK(now_ms() < deadline, "%s: records missing after %d ms (next/end:%s)", who,
            DEADLINE_MS, buf);
        poll_into(c, e, NULL, 200, who);
    }
    size_t extra = poll_into(c, e, NULL, 300, who);
    CHECK(extra == 0, "%s: more messages than appended", who);
}

/* poll_one polls c for at most one message (bounded wait) and checks it against e (take). */
static void poll_one(tern_log_consumer *c, expect *e, const char *who)
{
    uint64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        tern_log_message m;
        size_t n = 99;
        RC(tern_log_consumer_poll(c, &m, 1, 200, &n), 0);
        CHECK(n <= 1, "%s: poll of at most 1 set n = %zu", who, n);
        if (n == 1) {
            CHECK(strcmp(m.topic, e->topic) == 0, "%s: message of topic %s", who, m.topic);
            take(e, NULL, &m, who);
            return;
        }
        char buf[256];
        describe(e, buf, sizeof buf);
        CHECK(
            now_ms() < deadline, "%s: no message after %d ms (next/end:%s)", who, DEADLINE_MS, buf);
    }
}

/* commit_all_checked runs commit_all on c and checks that the group's committed offset of every
 * partition of e is now exactly the position after the last message taken from it. */
static void commit_all_checked(
    tern_log *log, tern_log_consumer *c, const char *group, const expect *e, const char *who)
{
    RC(tern_log_consumer_commit_all(c), 0);
    for (uint32_t p = 0; p < e->n_partitions; p++) {
        int64_t off = -7;
        RC(tern_log_committed(log, group, e->topic, p, &off), 0);
        int64_t want = e->next[p] > 0 ? e->next[p] : TERN_LOG_OFFSET_EARLIEST;
        CHECK(off == want,
            "%s: after commit_all, %s/%" PRIu32 " committed %" PRId64 ", want %" PRId64 " (%zu "
            "read in all)",
            who, e->topic, p, off, want, e->n_read);
    }
}

/* owned lists c's assignment into mask (for topic) and returns how many partitions it owns. */
static size_t owned(tern_log_consumer *c, const char *topic, bool *mask, uint32_t n_partitions)
{
    tern_log_assignment a[MAX_PARTITIONS * 2];
    size_t n = 0;
    RC(tern_log_consumer_assignment(c, a, MAX_PARTITIONS * 2, &n), 0);
    CHECK(n <= MAX_PARTITIONS * 2, "assignment of %zu partitions", n);
    for (uint32_t p = 0; p < n_partitions; p++)
        mask[p] = false;
    for (size_t i = 0; i < n; i++) {
        CHECK(strcmp(a[i].topic, topic) == 0, "assigned a partition of %s", a[i].topic);
        CHECK(a[i].partition < n_partitions, "assigned partition %" PRIu32, a[i].partition);
        CHECK(!mask[a[i].partition], "partition %" PRIu32 " assigned twice", a[i].partition);
        mask[a[i].partition] = true;
    }
    return n;
}

static tern_log_consumer *consumer(
    tern_log *log, const char *group, const char *topic, int64_t start)
{
    const char *topics[1] = { topic };
    tern_log_consumer_config cfg = { group, topics, 1, start };
    tern_log_consumer *c = NULL;
    RC(tern_log_consumer_open(log, &cfg, &c), 0);
    CHECK(c != NULL, "no consumer");
    return c;
}

/* ---- the suite ---------------------------------------------------------------------------- */

typedef struct options {
    const char *backend;
    const char *dir;
    const char *brokers;
    const char *prefix;
} options;

static tern_log *open_log(const options *o)
{
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    if (strcmp(o->backend, "kafka") == 0) {
        cfg.backend = TERN_LOG_KAFKA;
        cfg.kafka_brokers = o->brokers;
        cfg.kafka_client_id = "tern-conformance";
        cfg.kafka_linger_ms = 2;
    } else {
        cfg.backend = TERN_LOG_EMBEDDED;
        cfg.dir = o->dir;
        cfg.group_commit_ms = 2;
    }
    tern_log *log = NULL;
    RC(tern_log_open(&cfg, &log), 0);
    CHECK(log != NULL, "no log");
    return log;
}

static void usage(void)
{
    fprintf(stderr,
        "usage: log_conformance --backend embedded --dir DIR [--topic-prefix P]\n"
        "       log_conformance --backend kafka --brokers HOST:PORT "
        "--topic-prefix UNIQUE\n");
    exit(2);
}

int main(int argc, char **argv)
{
    options o = { 0 };
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--backend") == 0)
            o.backend = argv[i + 1];
        else if (strcmp(argv[i], "--dir") == 0)
            o.dir = argv[i + 1];
        else if (strcmp(argv[i], "--brokers") == 0)
            o.brokers = argv[i + 1];
        else if (strcmp(argv[i], "--topic-prefix") == 0)
            o.prefix = argv[i + 1];
        else
            usage();
    }
    if (argc % 2 == 0 || !o.backend)
        usage();
    if (strcmp(o.backend, "kafka") == 0 ? !o.brokers || !o.prefix
                                        : strcmp(o.backend, "embedded") != 0 || !o.dir)
        usage();
    if (!o.prefix)
        o.prefix = "conf";
    g_main_thread = pthread_self();
    printf("# log conformance: backend %s\n", o.backend);

    char topic[128], nokey[128], pair[128], missing[128], g1[128], g2[128], g3[128], g4[128];
    char never[128], trickle[128], g5[128];
    snprintf(topic, sizeof topic, "%s-main", o.prefix);
    snprintf(nokey, sizeof nokey, "%s-nokey", o.prefix);
    snprintf(pair, sizeof pair, "%s-pair", o.prefix);
    snprintf(missing, sizeof missing, "%s-missing", o.prefix);
    snprintf(g1, sizeof g1, "%s-g1", o.prefix);
    snprintf(g2, sizeof g2, "%s-g2", o.prefix);
    snprintf(g3, sizeof g3, "%s-g3", o.prefix);
    snprintf(g4, sizeof g4, "%s-g4", o.prefix);
    snprintf(never, sizeof never, "%s-never", o.prefix);
    snprintf(trickle, sizeof trickle, "%s-trickle", o.prefix);
    snprintf(g5, sizeof g5, "%s-g5", o.prefix);
    const uint32_t np = 4;
    uint32_t n = 0;

    begin("open the log");
    tern_log *log = open_log(&o);
    pass();

    begin("create_topic makes a topic with its partition count");
    RC(tern_log_create_topic(log, topic, np), 0);
    RC(tern_log_partition_count(log, topic, &n), 0);
    CHECK(n == np, "partition_count %" PRIu32 ", want %" PRIu32, n, np);
    pass();

    begin("create_topic again with the same count is a no-op");
    RC(tern_log_create_topic(log, topic, np), 0);
    RC(tern_log_partition_count(log, topic, &n), 0);
    CHECK(n == np, "partition_count %" PRIu32, n);
    pass();

    begin("create_topic with another count is TERN_EEXIST and changes nothing");
    RC(tern_log_create_topic(log, topic, np + 1), TERN_EEXIST);
    RC(tern_log_create_topic(log, topic, 1), TERN_EEXIST);
    RC(tern_log_partition_count(log, topic, &n), 0);
    CHECK(n == np, "partition_count %" PRIu32, n);
    pass();

    begin("bad topic names and counts are TERN_EINVAL");
    RC(tern_log_create_topic(log, "bad/name", 1), TERN_EINVAL);
    RC(tern_log_create_topic(log, "", 1), TERN_EINVAL);
    RC(tern_log_create_topic(log, missing, 0), TERN_EINVAL);
    pass();

    begin("an unknown topic is TERN_ENOTFOUND everywhere and is not created by looking");
    {
        int64_t lo, hi;
        uint8_t v = 1;
        tern_log_record rec = { .value = &v, .value_len = 1 };
        RC(tern_log_partition_count(log, missing, &n), TERN_ENOTFOUND);
        RC(tern_log_append(log, missing, -1, &rec, NULL, NULL), TERN_ENOTFOUND);
        RC(tern_log_append(log, missing, 0, &rec, NULL, NULL), TERN_ENOTFOUND);
        RC(tern_log_offsets(log, missing, 0, &lo, &hi), TERN_ENOTFOUND);
        const char *topics[1] = { missing };
        tern_log_consumer_config cfg = { g1, topics, 1, TERN_LOG_OFFSET_EARLIEST };
        tern_log_consumer *c = NULL;
        RC(tern_log_consumer_open(log, &cfg, &c), TERN_ENOTFOUND);
        CHECK(c == NULL, "consumer set on failure");
        RC(tern_log_partition_count(log, missing, &n), TERN_ENOTFOUND);
    }
    pass();

    /* Keyed records: the key picks the partition. */
    const size_t n_keyed = 200;
    /* Explicit timestamps an hour in the past: distinct from the append time, yet recent, so
     * that retention by age (Kafka's default: 7 days) never deletes what the checks read. */
    const int64_t ts0 = wall_ms() - 3600 * 1000;
    size_t first_keyed = g_n_sent;
    begin("keyed appends complete once, off the caller's thread, with status 0");
    for (size_t i = 0; i < n_keyed; i++) {
        char key[32];
        snprintf(key, sizeof key, "device-%zu", i % 23);
        append(log, topic, -1, key, 20 + i % 50, ts0 + (int64_t)i, true);
    }
    RC(tern_log_flush(log), 0);
    for (size_t i = first_keyed; i < g_n_sent; i++)
        completed(&g_sent[i]); /* flush returned: every callback has run */
    pass();

    int64_t count[MAX_PARTITIONS] = { 0 };
    begin("a keyed record lands on tern_log_partition_for_key(key)");
    for (size_t i = first_keyed; i < g_n_sent; i++) {
        const sent *s = &g_sent[i];
        uint32_t want = tern_log_partition_for_key(s->key, s->key_len, np);
        CHECK(s->partition == want, "key %.*s: partition %" PRIu32 ", want %" PRIu32,
            (int)s->key_len, (const char *)s->key, s->partition, want);
    }
    pass();

    begin("offsets are 0, 1, 2, ... per partition in the order of the appends");
    for (size_t i = first_keyed; i < g_n_sent; i++) {
        const sent *s = &g_sent[i];
        CHECK(s->offset == count[s->partition],
            "record %s on partition %" PRIu32 ": offset %" PRId64 ", want %" PRId64, s->seq,
            s->partition, s->offset, count[s->partition]);
        count[s->partition]++;
    }
    for (uint32_t p = 0; p < np; p++)
        CHECK(count[p] > 0, "partition %" PRIu32 " got no keyed record", p);
    pass();

    begin("an explicit partition overrides the key; a partition out of range is TERN_EINVAL");
    {
        const uint32_t target = 3;
        size_t first = g_n_sent;
        for (size_t i = 0; i < 12; i++) {
            char key[32];
            snprintf(key, sizeof key, "device-%zu", i);
            append(log, topic, (int32_t)target, key, 33, ts0 + 1000 + (int64_t)i, i % 2 == 0);
        }
        uint8_t v = 1;
        tern_log_record rec = { .value = &v, .value_len = 1 };
        RC(tern_log_append(log, topic, (int32_t)np, &rec, NULL, NULL), TERN_EINVAL);
        RC(tern_log_append(log, topic, 1000, &rec, NULL, NULL), TERN_EINVAL);
        RC(tern_log_flush(log), 0);
        for (size_t i = first; i < g_n_sent; i++) {
            const sent *s = &g_sent[i];
            completed(s);
            CHECK(s->partition == target, "partition %" PRIu32, s->partition);
            CHECK(s->offset == count[target], "offset %" PRId64 ", want %" PRId64, s->offset,
                count[target]);
            count[target]++;
        }
    }
    pass();

    begin("offsets: earliest 0, latest = records appended, per partition");
    for (uint32_t p = 0; p < np; p++) {
        int64_t lo = -7, hi = -7;
        RC(tern_log_offsets(log, topic, p, &lo, &hi), 0);
        CHECK(lo == 0 && hi == count[p],
            "partition %" PRIu32 ": [%" PRId64 ", %" PRId64 "), want [0, %" PRId64 ")", p, lo, hi,
            count[p]);
    }
    {
        int64_t lo, hi;
        CHECK(tern_log_offsets(log, topic, np, &lo, &hi) != 0, "offsets of partition %" PRIu32, np);
    }
    pass();

    begin("records without key, with the append time, and a 2 MiB record");
    RC(tern_log_create_topic(log, nokey, 2), 0);
    int64_t nokey_count[MAX_PARTITIONS] = { 0 };
    {
        size_t first = g_n_sent;
        for (size_t i = 0; i < 6; i++)
            append(log, nokey, -1, NULL, 10, 0, false);
        append(log, nokey, 0, "big", LARGE_BYTES, ts0, true);
        RC(tern_log_flush(log), 0);
        for (size_t i = first; i < g_n_sent; i++) {
            const sent *s = &g_sent[i];
            completed(s);
            CHECK(s->partition < 2, "partition %" PRIu32, s->partition);
            CHECK(s->offset == nokey_count[s->partition], "offset %" PRId64 ", want %" PRId64,
                s->offset, nokey_count[s->partition]);
            nokey_count[s->partition]++;
        }
        /* round robin: six keyless appends in a row cannot all land on one partition */
        CHECK(nokey_count[1] > 0 && nokey_count[0] > 1, "keyless records: %" PRId64 " and %" PRId64,
            nokey_count[0], nokey_count[1]);
    }
    pass();

    begin("a group consumer reads every record once, in order per partition, intact");
    expect e;
    tern_log_consumer *c = consumer(log, g1, topic, TERN_LOG_OFFSET_EARLIEST);
    expect_init(&e, topic, np, NULL, count);
    drain(c, &e, "g1 consumer");
    {
        bool mask[MAX_PARTITIONS];
        CHECK(owned(c, topic, mask, np) == np, "a lone member must own every partition");
    }
    pass();

    begin("commit records the next offset; committed and lag report it");
    int64_t half[MAX_PARTITIONS];
    for (uint32_t p = 0; p < np; p++) {
        half[p] = count[p] / 2;
        RC(tern_log_consumer_commit(c, topic, p, half[p]), 0);
    }
    for (uint32_t p = 0; p < np; p++) {
        int64_t off = -7, lag = -7;
        RC(tern_log_committed(log, g1, topic, p, &off), 0);
        CHECK(off == half[p] || (half[p] == 0 && off == TERN_LOG_OFFSET_EARLIEST),
            "partition %" PRIu32 ": committed %" PRId64 ", want %" PRId64, p, off, half[p]);
        RC(tern_log_lag(log, g1, topic, p, &lag), 0);
        CHECK(lag == count[p] - half[p], "partition %" PRIu32 ": lag %" PRId64 ", want %" PRId64, p,
            lag, count[p] - half[p]);
    }
    pass();

    begin("a new member of the group resumes right after the commits");
    tern_log_consumer_close(c);
    c = consumer(log, g1, topic, TERN_LOG_OFFSET_EARLIEST);
    expect_init(&e, topic, np, half, count);
    drain(c, &e, "second g1 consumer");
    pass();

    begin("commit_all commits the position after the last polled message");
    RC(tern_log_consumer_commit_all(c), 0);
    for (uint32_t p = 0; p < np; p++) {
        int64_t off = -7, lag = -7;
        RC(tern_log_committed(log, g1, topic, p, &off), 0);
        CHECK(off == count[p], "partition %" PRIu32 ": committed %" PRId64 ", want %" PRId64, p,
            off, count[p]);
        RC(tern_log_lag(log, g1, topic, p, &lag), 0);
        CHECK(lag == 0, "partition %" PRIu32 ": lag %" PRId64, p, lag);
    }
    pass();

    const uint32_t sp = 3; /* the partition with the explicit records: it has the most */
    begin("seek to earliest re-reads a partition from its first record");
    RC(tern_log_consumer_seek(c, topic, sp, TERN_LOG_OFFSET_EARLIEST), 0);
    {
        int64_t from[MAX_PARTITIONS];
        memcpy(from, count, sizeof from);
        from[sp] = 0;
        expect_init(&e, topic, np, from, count);
        drain(c, &e, "after seek earliest");
    }
    pass();

    begin("seek to an offset, and to the committed offset");
    RC(tern_log_consumer_seek(c, topic, sp, count[sp] - 2), 0);
    {
        int64_t from[MAX_PARTITIONS];
        memcpy(from, count, sizeof from);
        from[sp] = count[sp] - 2;
        expect_init(&e, topic, np, from, count);
        drain(c, &e, "after seek to an offset");
        RC(tern_log_consumer_commit(c, topic, sp, 5), 0);
        RC(tern_log_consumer_seek(c, topic, sp, TERN_LOG_OFFSET_COMMITTED), 0);
        from[sp] = 5;
        expect_init(&e, topic, np, from, count);
        drain(c, &e, "after seek to committed");
    }
    pass();

    begin("seek to latest skips what is there; the consumer then sees new appends");
    RC(tern_log_consumer_seek(c, topic, sp, 0), 0);
    RC(tern_log_consumer_seek(c, topic, sp, TERN_LOG_OFFSET_LATEST), 0);
    {
        tern_log_message m[4];
        size_t got = 9;
        RC(tern_log_consumer_poll(c, m, 4, 300, &got), 0);
        CHECK(got == 0, "%zu messages after seek to latest (first at offset %" PRId64 ")", got,
            m[0].offset);
        const sent *s = append(log, topic, (int32_t)sp, "late", 8, ts0 + 5000, true);
        RC(tern_log_flush(log), 0);
        completed(s);
        CHECK(s->offset == count[sp], "late record at offset %" PRId64 ", want %" PRId64, s->offset,
            count[sp]);
        int64_t from[MAX_PARTITIONS];
        memcpy(from, count, sizeof from);
        count[sp]++;
        expect_init(&e, topic, np, from, count);
        drain(c, &e, "after seek to latest");
        RC(tern_log_consumer_commit_all(c), 0);
    }
    int64_t g1_committed[MAX_PARTITIONS];
    memcpy(g1_committed, count, sizeof g1_committed);
    tern_log_consumer_close(c);
    pass();

    begin("a group that never committed: committed is earliest, lag is everything");
    for (uint32_t p = 0; p < np; p++) {
        int64_t off = -7, lag = -7;
        RC(tern_log_committed(log, never, topic, p, &off), 0);
        CHECK(off == TERN_LOG_OFFSET_EARLIEST, "committed %" PRId64, off);
        RC(tern_log_lag(log, never, topic, p, &lag), 0);
        CHECK(lag == count[p], "partition %" PRIu32 ": lag %" PRId64 ", want %" PRId64, p, lag,
            count[p]);
    }
    pass();

    begin("a consumer without a group reads every partition and cannot commit");
    c = consumer(log, NULL, topic, TERN_LOG_OFFSET_EARLIEST);
    expect_init(&e, topic, np, NULL, count);
    drain(c, &e, "groupless consumer");
    {
        bool mask[MAX_PARTITIONS];
        CHECK(owned(c, topic, mask, np) == np, "a groupless consumer reads every partition");
    }
    RC(tern_log_consumer_commit(c, topic, 0, 1), TERN_EINVAL);
    RC(tern_log_consumer_commit_all(c), TERN_EINVAL);
    tern_log_consumer_close(c);
    c = consumer(log, NULL, nokey, TERN_LOG_OFFSET_EARLIEST);
    expect_init(&e, nokey, 2, NULL, nokey_count);
    drain(c, &e, "groupless consumer of the keyless topic");
    tern_log_consumer_close(c);
    pass();

    begin("a consumer that starts at latest sees only new records");
    c = consumer(log, NULL, topic, TERN_LOG_OFFSET_LATEST);
    {
        tern_log_message m[4];
        size_t got = 9;
        RC(tern_log_consumer_poll(c, m, 4, 1500, &got), 0);
        CHECK(got == 0, "%zu old messages (first at offset %" PRId64 ")", got, m[0].offset);
        const sent *s = append(log, topic, 0, "newest", 8, ts0 + 6000, false);
        RC(tern_log_flush(log), 0);
        completed(s);
        int64_t from[MAX_PARTITIONS];
        memcpy(from, count, sizeof from);
        count[0]++;
        expect_init(&e, topic, np, from, count);
        drain(c, &e, "consumer from latest");
    }
    tern_log_consumer_close(c);
    pass();

    begin("one consumer reads several topics");
    {
        const char *both[2] = { topic, nokey };
        tern_log_consumer_config cfg = { g3, both, 2, TERN_LOG_OFFSET_EARLIEST };
        c = NULL;
        RC(tern_log_consumer_open(log, &cfg, &c), 0);
        expect e_main, e_nokey;
        expect_init(&e_main, topic, np, NULL, count);
        expect_init(&e_nokey, nokey, 2, NULL, nokey_count);
        expect *es[2] = { &e_main, &e_nokey };
        uint64_t deadline = now_ms() + DEADLINE_MS;
        while (!reached(&e_main) || !reached(&e_nokey)) {
            char buf[256], buf2[256];
            describe(&e_main, buf, sizeof buf);
            describe(&e_nokey, buf2, sizeof buf2);
            CHECK(now_ms() < deadline, "records missing (next/end:%s |%s)", buf, buf2);
            poll_topics(c, es, 2, 200, "two-topic consumer");
        }
        CHECK(poll_topics(c, es, 2, 300, "two-topic consumer") == 0, "read too much");
        tern_log_assignment asg[16];
        size_t n_asg = 0;
        RC(tern_log_consumer_assignment(c, asg, 16, &n_asg), 0);
        CHECK(n_asg == np + 2, "owns %zu partitions, want %" PRIu32, n_asg, np + 2);
        size_t n_main = 0, n_nokey = 0;
        for (size_t i = 0; i < n_asg; i++) {
            n_main += strcmp(asg[i].topic, topic) == 0;
            n_nokey += strcmp(asg[i].topic, nokey) == 0;
        }
        CHECK(n_main == np && n_nokey == 2, "owns %zu + %zu partitions", n_main, n_nokey);
        tern_log_consumer_close(c);
    }
    pass();

    begin("a new group that starts at latest sees only what is appended after it joined");
    c = consumer(log, g4, nokey, TERN_LOG_OFFSET_LATEST);
    {
        bool mask[MAX_PARTITIONS];
        expect_init(&e, nokey, 2, nokey_count, nokey_count); /* any message is a failure */
        uint64_t deadline = now_ms() + DEADLINE_MS;
        while (owned(c, nokey, mask, 2) != 2) {
            CHECK(now_ms() < deadline, "not assigned after %d ms", DEADLINE_MS);
            poll_into(c, &e, NULL, 100, "consumer from latest");
        }
        poll_into(c, &e, NULL, 1000, "consumer from latest");
        const sent *s = append(log, nokey, 1, "after", 8, ts0 + 7000, true);
        RC(tern_log_flush(log), 0);
        completed(s);
        int64_t from[MAX_PARTITIONS];
        memcpy(from, nokey_count, sizeof from);
        nokey_count[1]++;
        expect_init(&e, nokey, 2, from, nokey_count);
        drain(c, &e, "group consumer from latest");
    }
    tern_log_consumer_close(c);
    pass();

    begin("two members of one group split the partitions");
    RC(tern_log_create_topic(log, pair, np), 0);
    int64_t pair_count[MAX_PARTITIONS] = { 0 };
    tern_log_consumer *a = consumer(log, g2, pair, TERN_LOG_OFFSET_EARLIEST);
    tern_log_consumer *b = consumer(log, g2, pair, TERN_LOG_OFFSET_EARLIEST);
    bool mine_a[MAX_PARTITIONS], mine_b[MAX_PARTITIONS];
    expect_init(&e, pair, np, NULL, pair_count); /* empty: any message is a failure */
    {
        uint64_t deadline = now_ms() + DEADLINE_MS;
        for (;;) {
            poll_into(a, &e, NULL, 100, "member a");
            poll_into(b, &e, NULL, 100, "member b");
            size_t na = owned(a, pair, mine_a, np), nb = owned(b, pair, mine_b, np);
            bool disjoint = true;
            for (uint32_t p = 0; p < np; p++)
                disjoint = disjoint && !(mine_a[p] && mine_b[p]);
            if (na == np / 2 && nb == np / 2 && disjoint)
                break;
            CHECK(now_ms() < deadline, "after %d ms member a owns %zu, b owns %zu partitions",
                DEADLINE_MS, na, nb);
        }
    }
    pass();

    begin("each member reads only its own partitions, every record once");
    {
        size_t first = g_n_sent;
        for (size_t i = 0; i < 60; i++) {
            char key[32];
            snprintf(key, sizeof key, "sensor-%zu", i % 20);
            append(log, pair, -1, key, 16, ts0 + 10000 + (int64_t)i, true);
        }
        RC(tern_log_flush(log), 0);
        for (size_t i = first; i < g_n_sent; i++) {
            completed(&g_sent[i]);
            pair_count[g_sent[i].partition]++;
        }
        for (uint32_t p = 0; p < np; p++)
            CHECK(pair_count[p] > 0, "partition %" PRIu32 " got no record", p);
        expect_init(&e, pair, np, NULL, pair_count);
        uint64_t deadline = now_ms() + DEADLINE_MS;
        while (!reached(&e)) {
            char buf[256];
            describe(&e, buf, sizeof buf);
            CHECK(now_ms() < deadline, "records missing (next/end:%s)", buf);
            poll_into(a, &e, mine_a, 100, "member a");
            poll_into(b, &e, mine_b, 100, "member b");
        }
        CHECK(poll_into(a, &e, mine_a, 100, "member a") == 0, "member a read too much");
        CHECK(poll_into(b, &e, mine_b, 100, "member b") == 0, "member b read too much");
    }
    pass();

    begin("a commit for a partition another member owns is TERN_EDENIED");
    {
        uint32_t of_b = 0;
        while (!mine_b[of_b])
            of_b++;
        RC(tern_log_consumer_commit(a, pair, of_b, 1), TERN_EDENIED);
        int64_t off = -7;
        RC(tern_log_committed(log, g2, pair, of_b, &off), 0);
        CHECK(off == TERN_LOG_OFFSET_EARLIEST, "the refused commit moved the offset to %" PRId64,
            off);
    }
    pass();

    begin("when a member leaves, the other owns every partition and resumes from the commits");
    {
        int64_t from[MAX_PARTITIONS];
        for (uint32_t p = 0; p < np; p++) {
            if (mine_a[p]) {
                from[p] = pair_count[p] / 2;
                RC(tern_log_consumer_commit(a, pair, p, from[p]), 0);
            } else {
                from[p] = pair_count[p];
            }
        }
        RC(tern_log_consumer_commit_all(b), 0);
        tern_log_consumer_close(a);
        expect_init(&e, pair, np, from, pair_count);
        uint64_t deadline = now_ms() + DEADLINE_MS;
        for (;;) {
            poll_into(b, &e, NULL, 200, "member b");
            size_t nb = owned(b, pair, mine_b, np);
            if (nb == np && reached(&e))
                break;
            char buf[256];
            describe(&e, buf, sizeof buf);
            CHECK(now_ms() < deadline, "member b owns %zu partitions (next/end:%s)", nb, buf);
        }
        CHECK(poll_into(b, &e, NULL, 300, "member b") == 0, "member b read too much");
        RC(tern_log_consumer_commit_all(b), 0);
        for (uint32_t p = 0; p < np; p++) {
            int64_t lag = -7;
            RC(tern_log_lag(log, g2, pair, p, &lag), 0);
            CHECK(lag == 0, "partition %" PRIu32 ": lag %" PRId64 " after commit_all", p, lag);
        }
        tern_log_consumer_close(b);
    }
    pass();

    begin("a one-at-a-time poller behind a busy producer: commit_all keeps up with every "
          "partition, every record is read exactly once");
    {
        /* The peak-shaving shape: records keep arriving faster than the consumer reads them, most
         * on one hot partition; the consumer polls one message at a time and commits every few.
         * Each commit_all must move every partition's committed offset to the position after its
         * last message, however far the fetcher has read ahead. */
        const uint32_t hot = 2;
        const size_t waves = 8, per_wave = 40, commit_every = 10;
        RC(tern_log_create_topic(log, trickle, np), 0);
        int64_t trickle_count[MAX_PARTITIONS] = { 0 };
        expect_init(&e, trickle, np, NULL, trickle_count);
        c = consumer(log, g5, trickle, TERN_LOG_OFFSET_EARLIEST);
        size_t since_commit = 0;
        for (size_t w = 0; w < waves; w++) {
            size_t first = g_n_sent;
            for (size_t i = 0; i < per_wave; i++) {
                uint32_t p = i % 8 != 0 ? hot : (uint32_t)((w + i / 8) % np);
                append(log, trickle, (int32_t)p, "trickle", 12 + i % 7,
                    ts0 + 30000 + (int64_t)(w * per_wave + i), i % 3 == 0);
            }
            RC(tern_log_flush(log), 0);
            for (size_t i = first; i < g_n_sent; i++) {
                completed(&g_sent[i]);
                CHECK(g_sent[i].offset == trickle_count[g_sent[i].partition],
                    "offset %" PRId64 ", want %" PRId64, g_sent[i].offset,
                    trickle_count[g_sent[i].partition]);
                trickle_count[g_sent[i].partition]++;
                e.end[g_sent[i].partition] = trickle_count[g_sent[i].partition];
            }
            /* read only half of the backlog: the consumer falls behind wave after wave */
            int64_t backlog = 0;
            for (uint32_t p = 0; p < np; p++)
                backlog += e.end[p] - e.next[p];
            for (int64_t k = 0; k < backlog / 2; k++) {
                poll_one(c, &e, "one-at-a-time poller");
                if (++since_commit == commit_every) {
                    commit_all_checked(log, c, g5, &e, "one-at-a-time poller");
                    since_commit = 0;
                }
            }
        }
        while (!reached(&e)) { /* the producer stopped: the consumer drains the backlog */
            poll_one(c, &e, "one-at-a-time poller");
            if (++since_commit == commit_every) {
                commit_all_checked(log, c, g5, &e, "one-at-a-time poller");
                since_commit = 0;
            }
        }
        CHECK(poll_into(c, &e, NULL, 300, "one-at-a-time poller") == 0, "read too much");
        commit_all_checked(log, c, g5, &e, "one-at-a-time poller, drained");
        for (uint32_t p = 0; p < np; p++) {
            int64_t lag = -7;
            RC(tern_log_lag(log, g5, trickle, p, &lag), 0);
            CHECK(lag == 0, "partition %" PRIu32 ": lag %" PRId64 " after draining", p, lag);
        }
        CHECK(
            e.n_read == waves * per_wave, "read %zu records, want %zu", e.n_read, waves * per_wave);
        tern_log_consumer_close(c);
    }
    pass();

    begin("statistics count the stored records");
    {
        tern_log_stats st;
        tern_log_get_stats(log, &st);
        CHECK(st.records_appended >= g_n_sent, "records_appended %" PRIu64 " < %zu",
            st.records_appended, g_n_sent);
        CHECK(st.bytes_appended > 0, "bytes_appended %" PRIu64, st.bytes_appended);
    }
    pass();

    begin("close completes the appends in flight; they are there after reopening");
    {
        size_t first = g_n_sent;
        for (size_t i = 0; i < 50; i++) {
            char key[32];
            snprintf(key, sizeof key, "device-%zu", i % 23);
            append(log, topic, -1, key, 24, ts0 + 20000 + (int64_t)i, true);
        }
        tern_log_close(log);
        for (size_t i = first; i < g_n_sent; i++) {
            const sent *s = &g_sent[i];
            completed(s);
            CHECK(s->offset == count[s->partition], "offset %" PRId64 ", want %" PRId64, s->offset,
                count[s->partition]);
            count[s->partition]++;
        }
        log = open_log(&o);
        RC(tern_log_partition_count(log, topic, &n), 0);
        CHECK(n == np, "partition_count %" PRIu32 " after reopening", n);
        for (uint32_t p = 0; p < np; p++) {
            int64_t lo = -7, hi = -7, off = -7;
            RC(tern_log_offsets(log, topic, p, &lo, &hi), 0);
            CHECK(lo == 0 && hi == count[p],
                "partition %" PRIu32 ": [%" PRId64 ", %" PRId64 ") after reopening, want [0, "
                "%" PRId64 ")",
                p, lo, hi, count[p]);
            RC(tern_log_committed(log, g2, pair, p, &off), 0);
            CHECK(off == pair_count[p], "commit of g2 lost on reopening: %" PRId64, off);
        }
        c = consumer(log, g1, topic, TERN_LOG_OFFSET_EARLIEST);
        expect_init(&e, topic, np, g1_committed, count); /* g1 resumes at its commits */
        drain(c, &e, "g1 after reopening");
        tern_log_consumer_close(c);
    }
    pass();

    tern_log_close(log);
    for (size_t i = 0; i < g_n_sent; i++)
        free(g_sent[i].value);
    printf("# all %d checks passed (backend %s)\n", g_n_checks, o.backend);
    return 0;
}

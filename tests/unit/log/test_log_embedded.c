/*
 * test_log_embedded.c: the embedded log through the public API: append/read round trips
 * (keys, headers, timestamps, with and without zstd), offsets in call order across threads,
 * completions (status, partition, offset, order), the key partitioner, segment roll and index
 * lookups at every offset (also after the indexes are deleted or damaged), poll waiting,
 * disk budget, retention by size and by age, topics.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_test_util.h"

#include "base/clock.h"
#include "base/hash.h"

#include <dirent.h>
#include <stdatomic.h>

static void round_trip(bool compress)
{
    tern_log *log = open_log(dir, compress, 1u << 20);
    assert_non_null(log);
    assert_int_equal(tern_log_create_topic(log, "tele", 3), 0);
    enum { N = 600 };
    acks a;
    acks_init(&a);
    static ack_ctx ctx[N];
    for (int i = 0; i < N; i++) {
        char key[32], value[300];
        snprintf(key, sizeof key, "dev-%d", i % 37);
        int vl = snprintf(value, sizeof value, "{\"i\":%d,\"pad\":\"%0*d\"}", i, 100 + i % 150, i);
        tern_log_header hs[2] = { { "ct", (const uint8_t *)"json", 4 }, { "empty", NULL, 0 } };
        tern_log_record r = { .key = (const uint8_t *)key,
            .key_len = strlen(key),
            .value = (const uint8_t *)value,
            .value_len = (size_t)vl,
            .ts_ms = i % 5 == 0 ? -1000 + i : INT64_C(1700000000000) + i * 7,
            .headers = hs,
            .n_headers = (size_t)(i % 3) };
        if (i % 11 == 0) {
            r.key = NULL; /* round-robin */
            r.key_len = 0;
        }
        ctx[i] = (ack_ctx) { &a, i };
        assert_int_equal(tern_log_append(log, "tele", -1, &r, ack_cb, &ctx[i]), 0);
    }
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(a.n, N);
    /* index acks by tag */
    static ack by_tag[N];
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(a.v[i].status, 0);
        by_tag[a.v[i].tag] = a.v[i];
    }
    static rec_copy got[N + 10];
    int err;
    long n = read_all(log, "tele", got, N + 10, &err);
    assert_int_equal(err, 0);
    assert_int_equal(n, N);
    for (long k = 0; k < n; k++) {
        const rec_copy *g = &got[k];
        int i = -1;
        for (int t = 0; t < N; t++)
            if (by_tag[t].partition == g->partition && by_tag[t].offset == g->offset)
                i = t;
        assert_true(i >= 0);
        char key[32], value[300];
        snprintf(key, sizeof key, "dev-%d", i % 37);
        int vl = snprintf(value, sizeof value, "{\"i\":%d,\"pad\":\"%0*d\"}", i, 100 + i % 150, i);
        if (i % 11 == 0) {
            assert_false(g->has_key);
        } else {
            assert_true(g->has_key);
            assert_int_equal(g->key_len, strlen(key));
            assert_memory_equal(g->key, key, strlen(key));
            assert_int_equal(g->partition, tern_hash_partition(key, strlen(key), 3));
        }
        assert_int_equal(g->value_len, (size_t)vl);
        assert_memory_equal(g->value, value, (size_t)vl);
        int64_t ts = i % 5 == 0 ? -1000 + i : INT64_C(1700000000000) + i * 7;
        assert_true(g->ts_ms == ts);
        assert_int_equal(g->n_headers, (size_t)(i % 3));
        if (g->n_headers) {
            assert_string_equal(g->h0_name, "ct");
            assert_int_equal(g->h0_len, 4);
            assert_memory_equal(g->h0_value, "json", 4);
        }
    }
    /* messages of one partition come in offset order */
    for (long k = 1; k < n; k++)
        if (got[k].partition == got[k - 1].partition)
            assert_true(got[k].offset > got[k - 1].offset);
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_int_equal(st.records_appended, N);
    assert_true(st.batches_written >= 1 && st.fsyncs >= 1);
    tern_log_close(log);
    /* and again after a reopen */
    log = open_log(dir, compress, 1u << 20);
    assert_non_null(log);
    static rec_copy again[N + 10];
    assert_int_equal(read_all(log, "tele", again, N + 10, &err), N);
    assert_int_equal(err, 0);
    tern_log_close(log);
    acks_free(&a);
}

static void test_round_trip_plain(void **state)
{
    (void)state;
    round_trip(false);
}

static void test_round_trip_zstd(void **state)
{
    (void)state;
    round_trip(true);
    /* zstd really was used: a segment of highly repetitive records is smaller than the data */
    char p[600];
    seg_path(p, sizeof p, dir, "tele", 0, 0, ".log");
    assert_true(file_size(p) > 0);
}

static void test_zstd_shrinks(void **state)
{
    (void)state;
    tern_log *log = open_log(dir, true, 1u << 20);
    assert_int_equal(tern_log_create_topic(log, "z", 1), 0);
    char value[400];
    memset(value, 'a', sizeof value);
    for (int i = 0; i < 200; i++) {
        tern_log_record r = { .value = (const uint8_t *)value, .value_len = sizeof value };
        assert_int_equal(tern_log_append(log, "z", 0, &r, NULL, NULL), 0);
    }
    assert_int_equal(tern_log_flush(log), 0);
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_true(st.bytes_appended < 200 * 400 / 4);
    tern_log_close(log);
}

/* ---- offsets in call order across threads ------------------------------------------------- */

typedef struct writer {
    tern_log *log;
    int id;
    int n;
    acks *sink;
    ack_ctx *ctx;
    atomic_int *fails;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    for (int i = 0; i < w->n; i++) {
        char v[32];
        int vl = snprintf(v, sizeof v, "%d:%d", w->id, i);
        tern_log_record r = { .value = (const uint8_t *)v, .value_len = (size_t)vl };
        w->ctx[i] = (ack_ctx) { w->sink, (long)w->id * 1000000 + i };
        int rc;
        while ((rc = tern_log_append(w->log, "ord", 0, &r, ack_cb, &w->ctx[i])) == TERN_EAGAIN)
            usleep(100);
        if (rc != 0)
            atomic_fetch_add(w->fails, 1);
    }
    return NULL;
}

static void test_offsets_follow_call_order_across_threads(void **state)
{
    (void)state;
    tern_log *log = open_log(dir, false, 1u << 20);
    assert_int_equal(tern_log_create_topic(log, "ord", 1), 0);
    enum { T = 4, PER = 3000 };
    acks a;
    acks_init(&a);
    atomic_int fails = 0;
    writer w[T];
    pthread_t th[T];
    for (int t = 0; t < T; t++) {
        w[t] = (writer) { log, t, PER, &a, calloc(PER, sizeof(ack_ctx)), &fails };
        pthread_create(&th[t], NULL, writer_main, &w[t]);
    }
    for (int t = 0; t < T; t++)
        pthread_join(th[t], NULL);
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(fails, 0);
    assert_int_equal(a.n, T * PER);
    /* completions run in offset order; every offset 0..N-1 once */
    for (size_t i = 0; i < a.n; i++) {
        assert_int_equal(a.v[i].status, 0);
        assert_int_equal(a.v[i].partition, 0);
        assert_true(a.v[i].offset == (int64_t)i);
    }
    /* per thread, offsets increase with the call order */
    int64_t last[T] = { -1, -1, -1, -1 };
    int next_seq[T] = { 0 };
    for (size_t i = 0; i < a.n; i++) {
        int t = (int)(a.v[i].tag / 1000000), s = (int)(a.v[i].tag % 1000000);
        assert_int_equal(s, next_seq[t]);
        next_seq[t]++;
        assert_true(a.v[i].offset > last[t]);
        last[t] = a.v[i].offset;
    }
    /* the record at each offset is the one its completion named */
    static rec_copy got[T * PER];
    int err;
    assert_int_equal(read_all(log, "ord", got, T * PER, &err), T * PER);
    for (size_t i = 0; i < a.n; i++) {
        char v[32];
        int vl = snprintf(v, sizeof v, "%ld:%ld", a.v[i].tag / 1000000, a.v[i].tag % 1000000);
        assert_true(got[i].offset == (int64_t)i);
        assert_int_equal(got[i].value_len, (size_t)vl);
        assert_memory_equal(got[i].value, v, (size_t)vl);
    }
    int64_t lo, hi;
    assert_int_equal(tern_log_offsets(log, "ord", 0, &lo, &hi), 0);
    assert_true(lo == 0 && hi == T * PER);
    tern_log_close(log);
    for (int t = 0; t < T; t++)
        free(w[t].ctx);
    acks_free(&a);
}

/* ---- completions report durability -------------------------------------------------------- */

typedef struct dur_ctx {
    tern_log *log;
    int64_t offset;
    uint64_t fsyncs_at_cb;
    int status;
    atomic_int done;
} dur_ctx;

static void dur_cb(void *opaque, int status, uint32_t partition, int64_t offset)
{
    dur_ctx *d = opaque;
    (void)partition;
    tern_log_stats st;
    tern_log_get_stats(d->log, &st);
    d->fsyncs_at_cb = st.fsyncs;
    d->status = status;
    d->offset = offset;
    atomic_store(&d->done, 1);
}

static void test_completion_after_fsync_always(void **state)
{
    (void)state;
    tern_log *log = open_log_cfg(dir, TERN_LOG_FSYNC_ALWAYS, false, 1u << 20, NULL);
    assert_int_equal(tern_log_create_topic(log, "d", 2), 0);
    dur_ctx d = { .log = log, .offset = -5 };
    tern_log_record r = { .value = (const uint8_t *)"x", .value_len = 1 };
    assert_int_equal(tern_log_append(log, "d", 1, &r, dur_cb, &d), 0);
    while (!atomic_load(&d.done))
        usleep(200); /* ALWAYS: completes without a flush */
    assert_int_equal(d.status, 0);
    assert_true(d.offset == 0);
    assert_true(d.fsyncs_at_cb >= 1);
    int64_t lo, hi;
    assert_int_equal(tern_log_offsets(log, "d", 1, &lo, &hi), 0);
    assert_true(hi == 1);
    tern_log_close(log);
}

static void test_partition_for_key_matches_kafka(void **state)
{
    (void)state;
    tern_log *log = open_log(dir, false, 1u << 20);
    assert_int_equal(tern_log_create_topic(log, "k", 7), 0);
    acks a;
    acks_init(&a);
    static ack_ctx ctx[100];
    for (int i = 0; i < 100; i++) {
        char key[32];
        snprintf(key, sizeof key, "vehicle-%04d", i * 13);
        assert_int_equal(tern_log_partition_for_key(key, strlen(key), 7),
            tern_hash_partition(key, strlen(key), 7));
        tern_log_record r = { .key = (const uint8_t *)key, .key_len = strlen(key) };
        ctx[i] = (ack_ctx) { &a, i };
        assert_int_equal(tern_log_append(log, "k", -1, &r, ack_cb, &ctx[i]), 0);
    }
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(a.n, 100);
    for (size_t i = 0; i < a.n; i++) {
        char key[32];
        snprintf(key, sizeof key, "vehicle-%04ld", a.v[i].tag * 13);
        assert_int_equal(a.v[i].partition, tern_hash_partition(key, strlen(key), 7));
    }
    /* explicit partitions are checked */
    tern_log_record r = { .value = (const uint8_t *)"v", .value_len = 1 };
    assert_int_equal(tern_log_append(log, "k", 7, &r, NULL, NULL), TERN_EINVAL);
    assert_int_equal(tern_log_append(log, "nope", 0, &r, NULL, NULL), TERN_ENOTFOUND);
    tern_log_close(log);
    acks_free(&a);
}

/* ---- segments and indexes ----------------------------------------------------------------- */

static size_t count_files(const char *path, const char *ext)
{
    DIR *d = opendir(path);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name), el = strlen(ext);
        if (l > el && strcmp(e->d_name + l - el, ext) == 0)
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

static void fill_small_batches(tern_log *log, const char *topic, int n, int per_flush)
{
    for (int i = 0; i < n; i++) {
        char v[256];
        int vl = snprintf(v, sizeof v, "record-%06d-%0*d", i, 60 + i % 90, i);
        tern_log_record r
            = { .value = (const uint8_t *)v, .value_len = (size_t)vl, .ts_ms = 1000 + i };
        assert_int_equal(tern_log_append(log, topic, 0, &r, NULL, NULL), 0);
        if (i % per_flush == per_flush - 1)
            assert_int_equal(tern_log_flush(log), 0);
    }
    assert_int_equal(tern_log_flush(log), 0);
}

static void check_every_offset(tern_log *log, const char *topic, int n)
{
    const char *topics[] = { topic };
    tern_log_consumer_config cc = { .topics = topics, .n_topics = 1 };
    tern_log_consumer *c;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), 0);
    for (int o = n - 1; o >= 0; o--) {
        assert_int_equal(tern_log_consumer_seek(c, topic, 0, o), 0);
        tern_log_message m[2];
        size_t got;
        assert_int_equal(tern_log_consumer_poll(c, m, 2, 0, &got), 0);
        assert_true(got >= 1);
        assert_true(m[0].offset == o);
        char v[256];
        int vl = snprintf(v, sizeof v, "record-%06d-%0*d", o, 60 + o % 90, o);
        assert_int_equal(m[0].value_len, (size_t)vl);
        assert_memory_equal(m[0].value, v, (size_t)vl);
        assert_true(m[0].ts_ms == 1000 + o);
        if (got == 2)
            assert_true(m[1].offset == o + 1);
    }
    tern_log_consumer_close(c);
}

static void test_segment_roll_and_index_every_offset(void **state)
{
    (void)state;
    enum { N = 1500 };
    tern_log *log = open_log(dir, false, 4096);
    assert_int_equal(tern_log_create_topic(log, "seg", 1), 0);
    fill_small_batches(log, "seg", N, 9);
    char pdir[600];
    snprintf(pdir, sizeof pdir, "%s/topics/seg/0", dir);
    size_t n_seg = count_files(pdir, ".log");
    assert_true(n_seg > 20);
    check_every_offset(log, "seg", N);
    tern_log_close(log);
    /* closed segments have index files; reopen uses them */
    assert_int_equal(count_files(pdir, ".index"), n_seg);
    assert_int_equal(count_files(pdir, ".timeindex"), n_seg);
    log = open_log(dir, false, 4096);
    assert_non_null(log);
    check_every_offset(log, "seg", N);
    tern_log_close(log);
    /* damage the hints: delete one index, scramble another, truncate a time index */
    DIR *d = opendir(pdir);
    struct dirent *e;
    int k = 0;
    while ((e = readdir(d)) != NULL) {
        if (!strstr(e->d_name, ".index") || strstr(e->d_name, ".timeindex"))
            continue;
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", pdir, e->d_name);
        if (k == 0) {
            unlink(p);
        } else if (k == 1) {
            size_t len = 0;
            unsigned char *b = read_file(p, &len);
            for (size_t i = 8; i < len; i++)
                b[i] = (unsigned char)(b[i] * 31 + 7);
            write_file(p, b, len);
            free(b);
        } else if (k == 2) {
            size_t len = 0;
            unsigned char *b = read_file(p, &len);
            write_file(p, b, len > 12 ? len - 3 : len);
            free(b);
        }
        k++;
    }
    closedir(d);
    log = open_log(dir, false, 4096);
    assert_non_null(log);
    check_every_offset(log, "seg", N);
    int64_t lo, hi;
    assert_int_equal(tern_log_offsets(log, "seg", 0, &lo, &hi), 0);
    assert_true(lo == 0 && hi == N);
    /* appends continue after the reopen */
    tern_log_record r = { .value = (const uint8_t *)"more", .value_len = 4 };
    assert_int_equal(tern_log_append(log, "seg", 0, &r, NULL, NULL), 0);
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(tern_log_offsets(log, "seg", 0, &lo, &hi), 0);
    assert_true(hi == N + 1);
    tern_log_close(log);
}

/* ---- poll waits for durable data ---------------------------------------------------------- */

typedef struct poller {
    tern_log *log;
    int rc;
    size_t got;
    int64_t offset;
} poller;

static void *poller_main(void *arg)
{
    poller *p = arg;
    const char *topics[] = { "w" };
    tern_log_consumer_config cc = { .topics = topics, .n_topics = 1 };
    tern_log_consumer *c;
    p->rc = tern_log_consumer_open(p->log, &cc, &c);
    if (p->rc != 0)
        return NULL;
    tern_log_message m[4];
    p->rc = tern_log_consumer_poll(c, m, 4, 10000, &p->got);
    if (p->got)
        p->offset = m[0].offset;
    tern_log_consumer_close(c);
    return NULL;
}

static void test_poll_waits_for_data(void **state)
{
    (void)state;
    tern_log *log = open_log(dir, false, 1u << 20);
    assert_int_equal(tern_log_create_topic(log, "w", 1), 0);
    /* nothing there: a zero timeout returns at once */
    const char *topics[] = { "w" };
    tern_log_consumer_config cc = { .topics = topics, .n_topics = 1 };
    tern_log_consumer *c;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), 0);
    tern_log_message m[1];
    size_t got = 9;
    assert_int_equal(tern_log_consumer_poll(c, m, 1, 0, &got), 0);
    assert_int_equal(got, 0);
    tern_log_consumer_close(c);

    poller p = { .log = log };
    pthread_t th;
    pthread_create(&th, NULL, poller_main, &p);
    usleep(30000);
    tern_log_record r = { .value = (const uint8_t *)"late", .value_len = 4 };
    assert_int_equal(tern_log_append(log, "w", 0, &r, NULL, NULL), 0);
    pthread_join(th, NULL);
    assert_int_equal(p.rc, 0);
    assert_int_equal(p.got, 1);
    assert_true(p.offset == 0);
    tern_log_close(log);
}

/* ---- disk budget -------------------------------------------------------------------------- */

static void test_disk_budget_refuses_at_once(void **state)
{
    (void)state;
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.compress = false;
    cfg.group_commit_ms = 1;
    cfg.segment_bytes = 16384;
    cfg.disk_budget_bytes = 64 * 1024;
    tern_log *log = open_log_cfg(dir, TERN_LOG_FSYNC_GROUP, false, 0, &cfg);
    assert_non_null(log);
    assert_int_equal(tern_log_create_topic(log, "q", 2), 0);
    acks a;
    acks_init(&a);
    static ack_ctx ctx[1000];
    char value[1000];
    memset(value, 'v', sizeof value);
    int accepted = 0, rc = 0;
    for (int i = 0; i < 1000; i++) {
        tern_log_record r = { .value = (const uint8_t *)value, .value_len = sizeof value };
        ctx[i] = (ack_ctx) { &a, i };
        rc = tern_log_append(log, "q", i % 2, &r, ack_cb, &ctx[i]);
        if (rc != 0)
            break;
        accepted++;
        if (i % 5 == 4)
            tern_log_flush(log);
    }
    assert_int_equal(rc, TERN_EQUOTA);
    assert_true(accepted > 30 && accepted < 70);
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(a.n, (size_t)accepted); /* refused appends never complete */
    for (size_t i = 0; i < a.n; i++)
        assert_int_equal(a.v[i].status, 0);
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_true(st.quota_refusals >= 1);
    tern_log_record r = { .value = (const uint8_t *)value, .value_len = sizeof value };
    assert_int_equal(tern_log_append(log, "q", 0, &r, NULL, NULL), TERN_EQUOTA);
    tern_log_close(log);
    /* everything accepted is there after a reopen */
    log = open_log_cfg(dir, TERN_LOG_FSYNC_GROUP, false, 0, &cfg);
    static rec_copy got[1000];
    int err;
    assert_int_equal(read_all(log, "q", got, 1000, &err), accepted);
    tern_log_close(log);
    acks_free(&a);
}

static void test_too_much_pending_is_eagain(void **state)
{
    (void)state;
    tern_log *log = open_log_manual(dir, false, 1u << 30); /* batches cut only by flush */
    assert_int_equal(tern_log_create_topic(log, "big", 1), 0);
    size_t len = 1u << 20;
    uint8_t *value = calloc(1, len);
    tern_log_record r = { .value = value, .value_len = len };
    int rc = 0, accepted = 0;
    while (accepted < 200 && (rc = tern_log_append(log, "big", 0, &r, NULL, NULL)) == 0)
        accepted++;
    assert_int_equal(rc, TERN_EAGAIN);
    assert_true(accepted >= 60 && accepted <= 64);
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(tern_log_append(log, "big", 0, &r, NULL, NULL), 0); /* room again */
    assert_int_equal(tern_log_flush(log), 0);
    int64_t lo, hi;
    assert_int_equal(tern_log_offsets(log, "big", 0, &lo, &hi), 0);
    assert_true(hi == accepted + 1);
    tern_log_close(log);
    free(value);
}

/* ---- retention ---------------------------------------------------------------------------- */

static long long dir_log_bytes(const char *path)
{
    DIR *d = opendir(path);
    long long n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".log") == 0) {
            char p[1200];
            snprintf(p, sizeof p, "%s/%s", path, e->d_name);
            n += file_size(p);
        }
    }
    if (d)
        closedir(d);
    return n;
}

static void test_retention_by_size(void **state)
{
    (void)state;
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.compress = false;
    cfg.group_commit_ms = 1;
    cfg.segment_bytes = 4096;
    cfg.retention_bytes = 3 * 4096;
    tern_log *log = open_log_cfg(dir, TERN_LOG_FSYNC_GROUP, false, 0, &cfg);
    assert_int_equal(tern_log_create_topic(log, "r", 1), 0);
    fill_small_batches(log, "r", 1200, 9);
    char pdir[600];
    snprintf(pdir, sizeof pdir, "%s/topics/r/0", dir);
    long long bytes = dir_log_bytes(pdir);
    assert_true(bytes >= 3 * 4096 && bytes <= 4 * 4096 + 4096);
    int64_t lo, hi;
    assert_int_equal(tern_log_offsets(log, "r", 0, &lo, &hi), 0);
    assert_true(lo > 0 && hi == 1200);
    /* readers start at the new earliest and see a contiguous tail */
    static rec_copy got[1200];
    int err;
    long n = read_all(log, "r", got, 1200, &err);
    assert_int_equal(err, 0);
    assert_true(n == hi - lo);
    for (long i = 0; i < n; i++)
        assert_true(got[i].offset == lo + i);
    tern_log_close(log);
}

static void test_retention_by_age(void **state)
{
    (void)state;
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.compress = false;
    cfg.group_commit_ms = 1;
    cfg.segment_bytes = 4096;
    cfg.retention_ms = 3600 * 1000;
    tern_log *log = open_log_cfg(dir, TERN_LOG_FSYNC_GROUP, false, 0, &cfg);
    assert_int_equal(tern_log_create_topic(log, "age", 1), 0);
    int64_t old_ts = tern_clock_now_ms() - 2 * 3600 * 1000;
    char v[200];
    memset(v, 'o', sizeof v);
    for (int i = 0; i < 200; i++) { /* ~10 old segments */
        tern_log_record r = { .value = (const uint8_t *)v, .value_len = sizeof v, .ts_ms = old_ts };
        assert_int_equal(tern_log_append(log, "age", 0, &r, NULL, NULL), 0);
        if (i % 5 == 4)
            tern_log_flush(log);
    }
    int64_t lo, hi;
    for (int i = 0; i < 40; i++) { /* fresh records roll past the old segments */
        tern_log_record r = { .value = (const uint8_t *)v, .value_len = sizeof v };
        assert_int_equal(tern_log_append(log, "age", 0, &r, NULL, NULL), 0);
        if (i % 5 == 4)
            tern_log_flush(log);
    }
    assert_int_equal(tern_log_offsets(log, "age", 0, &lo, &hi), 0);
    assert_true(lo >= 200 - 20); /* at most the segment holding the boundary survives */
    assert_true(hi == 240);
    tern_log_close(log);
}

/* ---- topics ------------------------------------------------------------------------------- */

static void test_topics(void **state)
{
    (void)state;
    tern_log *log = open_log(dir, true, 1u << 20);
    assert_int_equal(tern_log_create_topic(log, "a.b-c_D", 4), 0);
    assert_int_equal(tern_log_create_topic(log, "a.b-c_D", 4), 0);
    assert_int_equal(tern_log_create_topic(log, "a.b-c_D", 5), TERN_EEXIST);
    assert_int_equal(tern_log_create_topic(log, "bad/name", 1), TERN_EINVAL);
    assert_int_equal(tern_log_create_topic(log, "x", 0), TERN_EINVAL);
    uint32_t n;
    assert_int_equal(tern_log_partition_count(log, "a.b-c_D", &n), 0);
    assert_int_equal(n, 4);
    assert_int_equal(tern_log_partition_count(log, "zz", &n), TERN_ENOTFOUND);
    assert_int_equal(tern_log_create_topic(log, "0first", 1), 0);
    tern_log_close(log);
    log = open_log(dir, true, 1u << 20);
    assert_int_equal(tern_log_partition_count(log, "a.b-c_D", &n), 0);
    assert_int_equal(n, 4);
    char **names;
    size_t n_names;
    assert_int_equal(tern_log_list_topics(log, &names, &n_names), 0);
    assert_int_equal(n_names, 2);
    assert_string_equal(names[0], "0first");
    assert_string_equal(names[1], "a.b-c_D");
    tern_log_free_topics(names, n_names);
    tern_log_close(log);
    /* a meta file that is not a tern log's fails the open */
    char p[600];
    snprintf(p, sizeof p, "%s/topics/a.b-c_D/meta", dir);
    write_file(p, "garbage garbage!", 16);
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.dir = dir;
    tern_log *bad = NULL;
    assert_int_equal(tern_log_open(&cfg, &bad), TERN_ECORRUPT);
    assert_null(bad);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_round_trip_zstd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zstd_shrinks, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_offsets_follow_call_order_across_threads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_completion_after_fsync_always, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partition_for_key_matches_kafka, setup, teardown),
        cmocka_unit_test_setup_teardown(test_segment_roll_and_index_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_poll_waits_for_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disk_budget_refuses_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_much_pending_is_eagain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retention_by_age, setup, teardown),
        cmocka_unit_test_setup_teardown(test_topics, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

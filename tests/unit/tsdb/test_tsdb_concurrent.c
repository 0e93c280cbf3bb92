/*
 * test_tsdb_concurrent.c: several threads writing one store at once, against a reference model.
 * Each writer owns a disjoint set of devices (written with duplicates, out-of-order, late and
 * backfill points, both value kinds), and every writer also writes the same shared series at
 * the same timestamps (each with its own value), while another thread runs maintenance (cuts,
 * checkpoints, compaction) and another queries. After the writers join: every owned series
 * equals the model; every shared point holds the value of one of the writers that wrote it.
 * After a reopen that replays the WAL, and after one from blocks, every series reads exactly as
 * before: the WAL orders the points of a series as the head applied them.
 */
#include "base/error.h"
#include "tsdb/tsdb.h"
#include "tsdb/tsdb_test_dir.h"

#include <ftw.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#define N_THREADS 4
#define N_SHARED 4 /* devices 0..3 are written by every thread */
#define N_DEV 64
#define N_MET 4
#define N_SLOTS 3600 /* timestamps T0 + slot * 10 s: 10 hours */
#define SLOT_MS 10000LL
#define T0 1767225600000LL
#define BATCHES 120
#define BATCH_POINTS 150

static tern_tsdb *open_db(const char *dir)
{
    tern_tsdb_options o;
    tern_tsdb_options_default(&o);
    o.dir = dir;
    o.wal_fsync = false;
    o.retention_ms = 0;
    o.block_duration_ms = 3600 * 1000LL;
    tern_tsdb *db = NULL;
    char err[256];
    int rc = tern_tsdb_open(&o, &db, err, sizeof err);
    if (rc)
        fprintf(stderr, "open: %s\n", err);
    assert_int_equal(rc, 0);
    return db;
}

/* The model: owned series hold the value last written; shared series which writers wrote. */
typedef struct model_series {
    uint64_t v[N_SLOTS];
    uint8_t set[N_SLOTS];
    uint32_t writers[N_SLOTS]; /* shared: bit t = thread t wrote the slot */
} model_series;

static model_series model[N_DEV][N_MET];
static uint64_t seen[N_DEV][N_MET][N_SLOTS]; /* values read after the writers joined */

static const char *met_name(int m)
{
    static const char *names[N_MET] = { "soc", "speed", "odo", "temp" };
    return names[m];
}

static bool met_int(int m)
{
    return m == 2;
}

static void dev_name(int d, char out[16])
{
    snprintf(out, 16, "dev%03d", d);
}

static uint64_t rnd(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A shared point's value names its writer and slot, so a read tells who won. */
static uint64_t shared_value(int m, int t, int slot, double *f)
{
    int64_t i = (int64_t)t * 100000 + slot;
    *f = (double)i + 0.5;
    if (met_int(m))
        return (uint64_t)i;
    uint64_t bits;
    memcpy(&bits, f, 8);
    return bits;
}

static int shared_writer(int m, uint64_t v, int slot)
{
    int64_t i;
    if (met_int(m)) {
        i = (int64_t)v;
    } else {
        double f;
        memcpy(&f, &v, 8);
        i = (int64_t)(f - 0.5);
    }
    if (i % 100000 != slot)
        return -1;
    return (int)(i / 100000);
}

typedef struct writer {
    tern_tsdb *db;
    int t;
    int rc;
} writer;

static void *writer_main(void *arg)
{
    writer *w = arg;
    uint64_t rng = 0x1234567u * ((uint64_t)w->t + 1u);
    tern_tsdb_batch *b;
    if (tern_tsdb_batch_new(&b) != 0) {
        w->rc = TERN_ENOMEM;
        return NULL;
    }
    int shared_next[N_SHARED][N_MET] = { { 0 } };
    uint64_t seq = 0;
    for (int batch = 0; batch < BATCHES && w->rc == 0; batch++) {
        int cursor = 1800 + batch * 10; /* the head moves on: 5 h to 8.3 h */
        tern_tsdb_batch_reset(b);
        for (int j = 0; j < BATCH_POINTS && w->rc == 0; j++) {
            int m = (int)(rnd(&rng) % N_MET), d, slot;
            uint64_t v;
            double f;
            bool shared = rnd(&rng) % 4 == 0;
            if (shared) {
                d = (int)(rnd(&rng) % N_SHARED);
                int k = shared_next[d][m]++;
                if (k >= 600)
                    continue;
                /* odd threads walk the shared slots backwards: late points there too */
                slot = 1800 + (w->t % 2 ? 599 - k : k);
                v = shared_value(m, w->t, slot, &f);
            } else {
                int own = (N_DEV - N_SHARED) / N_THREADS;
                d = N_SHARED + w->t * own + (int)(rnd(&rng) % (uint64_t)own);
                uint64_t r = rnd(&rng) % 100;
                if (r < 60)
                    slot = cursor - (int)(rnd(&rng) % 6); /* near the head, a bit out of order */
                else if (r < 80)
                    slot = cursor - (int)(rnd(&rng) % 720); /* up to 2 h late */
                else if (r < 90)
                    slot = (int)(rnd(&rng) % 1800); /* backfill, hours behind */
                else
                    slot = cursor - (int)(rnd(&rng) % 3); /* likely a duplicate */
                f = (double)(int64_t)(rnd(&rng) % 20001 - 10000) / 10.0;
                if (met_int(m)) {
                    v = (uint64_t)(int64_t)f * 7;
                } else {
                    memcpy(&v, &f, 8);
                }
            }
            char name[16];
            dev_name(d, name);
            char tags[32];
            snprintf(tags, sizeof tags, "fleet=f%d,region=r%d", d % 3, d % 2);
            int rc = tern_tsdb_batch_device(b, name, strlen(name), tags, strlen(tags));
            int64_t ts = T0 + slot * SLOT_MS;
            if (rc == 0 && met_int(m))
                rc = tern_tsdb_batch_add_i64(b, met_name(m), strlen(met_name(m)), ts, (int64_t)v);
            else if (rc == 0)
                rc = tern_tsdb_batch_add_f64(b, met_name(m), strlen(met_name(m)), ts, f);
            if (rc) {
                w->rc = rc;
                break;
            }
            model_series *s = &model[d][m];
            if (shared) {
                __atomic_fetch_or(&s->writers[slot], 1u << w->t, __ATOMIC_RELAXED);
            } else {
                s->v[slot] = v;
                s->set[slot] = 1;
            }
        }
        tern_tsdb_write_result res;
        int rc = tern_tsdb_write(w->db, b, &seq, &res);
        if (rc == 0 && res.refused)
            rc = res.first_error;
        if (rc == 0)
            rc = tern_tsdb_wait(w->db, seq);
        if (rc)
            w->rc = rc;
    }
    tern_tsdb_batch_free(b);
    return NULL;
}

static int stop_flag;

static void *maint_main(void *arg)
{
    tern_tsdb *db = arg;
    int rc = 0;
    for (int i = 0; rc == 0 && !__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE); i++) {
        rc = tern_tsdb_maintain(db, INT64_MIN);
        if (rc == 0 && i % 8 == 7)
            rc = tern_tsdb_compact(db);
        usleep(2000);
    }
    return (void *)(intptr_t)rc;
}

static int count_row(void *arg, const tern_tsdb_row *row)
{
    (void)row;
    (*(size_t *)arg)++;
    return 0;
}

static void *query_main(void *arg)
{
    tern_tsdb *db = arg;
    int rc = 0;
    while (rc == 0 && !__atomic_load_n(&stop_flag, __ATOMIC_ACQUIRE)) {
        tern_tsdb_query q;
        memset(&q, 0, sizeof q);
        q.sel.device = "dev001";
        q.start_ms = T0;
        q.end_ms = T0 + N_SLOTS * SLOT_MS;
        size_t n = 0;
        char err[128];
        rc = tern_tsdb_query_run(db, &q, count_row, &n, err, sizeof err);
        q.sel.device = NULL;
        q.sel.metric = "soc";
        q.aggs = TERN_AGG_COUNT | TERN_AGG_MAX;
        q.step_ms = 3600 * 1000LL;
        if (rc == 0)
            rc = tern_tsdb_query_run(db, &q, count_row, &n, err, sizeof err);
        usleep(1000);
    }
    return (void *)(intptr_t)rc;
}

typedef struct reader {
    int d, m;
    uint64_t v[N_SLOTS];
    uint8_t set[N_SLOTS];
    int bad; /* a point outside the grid or read twice */
} reader;

static int read_row(void *arg, const tern_tsdb_row *row)
{
    reader *r = arg;
    int64_t off = row->ts_ms - T0;
    if (off < 0 || off % SLOT_MS || off / SLOT_MS >= N_SLOTS) {
        r->bad++;
        return 0;
    }
    int slot = (int)(off / SLOT_MS);
    if (r->set[slot])
        r->bad++;
    r->set[slot] = 1;
    if (row->kind == TERN_VALUE_I64)
        r->v[slot] = (uint64_t)row->v.i;
    else
        memcpy(&r->v[slot], &row->v.f, 8);
    return 0;
}

static reader rd;

/* Reads every series; first (`first`) checks it against the model and records what it read,
 * later checks it reads exactly the same again. */
static void check_all(tern_tsdb *db, bool first)
{
    for (int d = 0; d < N_DEV; d++) {
        for (int m = 0; m < N_MET; m++) {
            memset(&rd, 0, sizeof rd);
            char name[16];
            dev_name(d, name);
            tern_tsdb_query q;
            memset(&q, 0, sizeof q);
            q.sel.device = name;
            q.sel.metric = met_name(m);
            q.start_ms = T0 - 3600 * 1000LL;
            q.end_ms = T0 + (N_SLOTS + 360) * SLOT_MS;
            char err[128];
            assert_int_equal(tern_tsdb_query_run(db, &q, read_row, &rd, err, sizeof err), 0);
            assert_int_equal(rd.bad, 0);
            const model_series *s = &model[d][m];
            for (int slot = 0; slot < N_SLOTS; slot++) {
                if (d < N_SHARED) {
                    assert_int_equal(rd.set[slot], s->writers[slot] != 0);
                    if (!rd.set[slot])
                        continue;
                    int t = shared_writer(m, rd.v[slot], slot);
                    assert_true(t >= 0 && t < N_THREADS);
                    assert_true(s->writers[slot] & (1u << t));
                } else {
                    assert_int_equal(rd.set[slot], s->set[slot]);
                    if (rd.set[slot])
                        assert_int_equal(rd.v[slot], s->v[slot]);
                }
                if (first)
                    seen[d][m][slot] = rd.v[slot];
                else if (rd.set[slot])
                    assert_int_equal(rd.v[slot], seen[d][m][slot]);
            }
        }
    }
}

static void test_concurrent_writers(void **state)
{
    (void)state;
    memset(model, 0, sizeof model);
    char *dir = tsdb_test_tmpdir("tsdbconc");
    assert_non_null(dir);
    tern_tsdb *db = open_db(dir);
    __atomic_store_n(&stop_flag, 0, __ATOMIC_RELEASE);
    pthread_t th[N_THREADS], maint, query;
    writer w[N_THREADS];
    assert_int_equal(pthread_create(&maint, NULL, maint_main, db), 0);
    assert_int_equal(pthread_create(&query, NULL, query_main, db), 0);
    for (int t = 0; t < N_THREADS; t++) {
        w[t] = (writer) { .db = db, .t = t, .rc = 0 };
        assert_int_equal(pthread_create(&th[t], NULL, writer_main, &w[t]), 0);
    }
    for (int t = 0; t < N_THREADS; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].rc, 0);
    }
    __atomic_store_n(&stop_flag, 1, __ATOMIC_RELEASE);
    void *mrc, *qrc;
    pthread_join(maint, &mrc);
    pthread_join(query, &qrc);
    assert_int_equal((intptr_t)mrc, 0);
    assert_int_equal((intptr_t)qrc, 0);

    tern_tsdb_stats st;
    tern_tsdb_get_stats(db, &st);
    assert_int_equal(st.devices, N_DEV);
    assert_int_equal(st.series, N_DEV * N_MET);
    assert_int_equal(st.points_refused, 0);
    check_all(db, true);

    /* crash-like: no flush, the WAL (records of every writer, interleaved) is replayed */
    assert_int_equal(tern_tsdb_close(db, false), 0);
    db = open_db(dir);
    check_all(db, false);
    /* from blocks only */
    assert_int_equal(tern_tsdb_close(db, true), 0);
    db = open_db(dir);
    check_all(db, false);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

/* Two threads create the same new devices, metrics and series at once: each is created once,
 * and the WAL replays (a definition never follows its use). */
static void *creator_main(void *arg)
{
    writer *w = arg;
    tern_tsdb_batch *b;
    if (tern_tsdb_batch_new(&b) != 0) {
        w->rc = TERN_ENOMEM;
        return NULL;
    }
    for (int i = 0; i < 200 && w->rc == 0; i++) {
        tern_tsdb_batch_reset(b);
        char name[16], metric[16];
        snprintf(name, sizeof name, "new%03d", i);
        snprintf(metric, sizeof metric, "m%d", i % 37);
        w->rc = tern_tsdb_batch_device(b, name, strlen(name), NULL, 0);
        if (w->rc == 0)
            w->rc = tern_tsdb_batch_add_f64(b, metric, strlen(metric), T0 + i, 1.0);
        tern_tsdb_write_result res;
        if (w->rc == 0)
            w->rc = tern_tsdb_write(w->db, b, NULL, &res);
        if (w->rc == 0 && res.accepted != 1)
            w->rc = TERN_EINVAL;
    }
    tern_tsdb_batch_free(b);
    return NULL;
}

static void test_concurrent_creation(void **state)
{
    (void)state;
    char *dir = tsdb_test_tmpdir("tsdbconc");
    assert_non_null(dir);
    tern_tsdb *db = open_db(dir);
    pthread_t th[2];
    writer w[2];
    for (int t = 0; t < 2; t++) {
        w[t] = (writer) { .db = db, .t = t, .rc = 0 };
        assert_int_equal(pthread_create(&th[t], NULL, creator_main, &w[t]), 0);
    }
    for (int t = 0; t < 2; t++) {
        pthread_join(th[t], NULL);
        assert_int_equal(w[t].rc, 0);
    }
    tern_tsdb_stats st;
    tern_tsdb_get_stats(db, &st);
    assert_int_equal(st.devices, 200);
    assert_int_equal(st.series, 200);
    assert_int_equal(st.head_points, 200);
    assert_int_equal(tern_tsdb_close(db, false), 0);
    db = open_db(dir);
    tern_tsdb_get_stats(db, &st);
    assert_int_equal(st.devices, 200);
    assert_int_equal(st.series, 200);
    assert_int_equal(st.head_points, 200);
    assert_int_equal(tern_tsdb_close(db, true), 0);
    tsdb_test_rm_rf(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_concurrent_writers),
        cmocka_unit_test(test_concurrent_creation),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

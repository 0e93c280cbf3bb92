/* WRAP: write pwrite fsync fdatasync */
/*
 * test_log_fault_wrap.c: the embedded log under injected I/O failures. pwrite and fdatasync of
 * segment files (*.log) fail on demand (also a short write followed by a failure); fsync fails
 * on demand for the consumer-group offsets file. Affected appends complete with TERN_EIO, the
 * segment is truncated back, the log keeps working, and a reopen shows exactly what was
 * acknowledged; a failed commit leaves the committed offset unchanged. A gate on segment pwrites
 * holds the I/O thread inside one cycle's write until the test has queued the next cycle, so the
 * next cycle is written while the first is being synced (the overlap of writing and syncing):
 * when the first cycle's fsync fails, the batch written behind it on the same partition fails
 * too, and the other partitions' batches stay durable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_test_util.h"

#include <sched.h>
#include <stdatomic.h>

ssize_t __real_write(int fd, const void *buf, size_t n);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
int __real_fsync(int fd);
int __real_fdatasync(int fd);
ssize_t __wrap_write(int fd, const void *buf, size_t n);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);
int __wrap_fsync(int fd);
int __wrap_fdatasync(int fd);

static atomic_int fail_seg_pwrite;    /* fail the next N segment pwrites */
static atomic_int short_seg_pwrite;   /* write half of the next segment pwrite, then fail */
static atomic_int fail_seg_fdatasync; /* fail the next N segment fdatasyncs */
static atomic_int fail_fsync;         /* fail the next N fsyncs of any file */
static atomic_int gate_seg_pwrite;    /* hold the next segment pwrite until gate_open */
static atomic_bool gate_entered;      /* a segment pwrite is held at the gate */
static atomic_bool gate_open;

static bool is_segment(int fd)
{
    char link[64], target[1024];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 4)
        return false;
    target[n] = 0;
    return strcmp(target + n - 4, ".log") == 0;
}

static bool take(atomic_int *counter)
{
    int v = atomic_load(counter);
    while (v > 0)
        if (atomic_compare_exchange_weak(counter, &v, v - 1))
            return true;
    return false;
}

ssize_t __wrap_write(int fd, const void *buf, size_t n)
{
    return __real_write(fd, buf, n);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (is_segment(fd)) {
        if (take(&gate_seg_pwrite)) {
            atomic_store(&gate_entered, true);
            while (!atomic_load(&gate_open))
                sched_yield();
        }
        if (take(&short_seg_pwrite) && n > 1) {
            atomic_fetch_add(&fail_seg_pwrite, 1);
            return __real_pwrite(fd, buf, n / 2, off);
        }
        if (take(&fail_seg_pwrite)) {
            errno = EIO;
            return -1;
        }
    }
    return __real_pwrite(fd, buf, n, off);
}

int __wrap_fsync(int fd)
{
    if (take(&fail_fsync)) {
        errno = EIO;
        return -1;
    }
    return __real_fsync(fd);
}

int __wrap_fdatasync(int fd)
{
    if (is_segment(fd) && take(&fail_seg_fdatasync)) {
        errno = EIO;
        return -1;
    }
    return __real_fdatasync(fd);
}

/* append_round appends n records tagged from tag, flushes, and returns the completions. */
static void append_round(tern_log *log, acks *a, ack_ctx *ctx, int *tag, int n)
{
    for (int i = 0; i < n; i++, (*tag)++) {
        char v[64];
        int vl = snprintf(v, sizeof v, "rec-%05d-xxxxxxxxxxxxxxxxxxxxxxxx", *tag);
        tern_log_record r = { .value = (const uint8_t *)v, .value_len = (size_t)vl };
        ctx[*tag] = (ack_ctx) { a, *tag };
        assert_int_equal(tern_log_append(log, "f", 0, &r, ack_cb, &ctx[*tag]), 0);
    }
    assert_int_equal(tern_log_flush(log), 0);
}

static void run_faults(bool compress)
{
    tern_log *log = open_log_manual(dir, compress, 1u << 20);
    assert_non_null(log);
    assert_int_equal(tern_log_create_topic(log, "f", 1), 0);
    acks a;
    acks_init(&a);
    static ack_ctx ctx[200];
    int tag = 0;
    append_round(log, &a, ctx, &tag, 10); /* ok */
    atomic_store(&fail_seg_pwrite, 1);
    append_round(log, &a, ctx, &tag, 7);  /* write fails */
    append_round(log, &a, ctx, &tag, 10); /* ok again */
    atomic_store(&short_seg_pwrite, 1);
    append_round(log, &a, ctx, &tag, 9);  /* half written, then fails */
    append_round(log, &a, ctx, &tag, 10); /* ok */
    atomic_store(&fail_seg_fdatasync, 1);
    append_round(log, &a, ctx, &tag, 8);  /* written but fsync fails */
    append_round(log, &a, ctx, &tag, 10); /* ok */
    assert_int_equal(a.n, (size_t)tag);
    int n_ok = 0, n_eio = 0;
    for (size_t i = 0; i < a.n; i++) {
        long t = a.v[i].tag;
        bool should_fail = (t >= 10 && t < 17) || (t >= 27 && t < 36) || (t >= 46 && t < 54);
        if (should_fail) {
            assert_int_equal(a.v[i].status, TERN_EIO);
            n_eio++;
        } else {
            assert_int_equal(a.v[i].status, 0);
            n_ok++;
        }
    }
    assert_int_equal(n_ok, 40);
    assert_int_equal(n_eio, 24);
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_true(st.append_errors >= 24);
    /* live readers see exactly the acknowledged records */
    static rec_copy got[200];
    int err;
    assert_int_equal(read_all(log, "f", got, 200, &err), 40);
    assert_int_equal(err, 0);
    tern_log_close(log);

    /* and so does a reopen: acknowledged records, their offsets, nothing else */
    log = open_log_manual(dir, compress, 1u << 20);
    assert_non_null(log);
    long n = read_all(log, "f", got, 200, &err);
    assert_int_equal(err, 0);
    assert_int_equal(n, 40);
    size_t k = 0;
    for (size_t i = 0; i < a.n; i++) {
        if (a.v[i].status != 0)
            continue;
        char v[64];
        int vl = snprintf(v, sizeof v, "rec-%05ld-xxxxxxxxxxxxxxxxxxxxxxxx", a.v[i].tag);
        assert_true(got[k].offset == a.v[i].offset);
        assert_int_equal(got[k].value_len, (size_t)vl);
        assert_memory_equal(got[k].value, v, (size_t)vl);
        k++;
    }
    tern_log_stats st2;
    tern_log_get_stats(log, &st2);
    assert_int_equal(st2.corrupt_batches, 0);
    tern_log_close(log);
    acks_free(&a);
}

static void test_write_and_fsync_failures_plain(void **state)
{
    (void)state;
    run_faults(false);
}

static void test_write_and_fsync_failures_zstd(void **state)
{
    (void)state;
    run_faults(true);
}

/* append_tagged appends n records tagged from *tag to partition part, without flushing. */
static void append_tagged(tern_log *log, ack_ctx *ctx, acks *a, int *tag, int32_t part, int n)
{
    for (int i = 0; i < n; i++, (*tag)++) {
        char v[64];
        int vl = snprintf(v, sizeof v, "ovl-%05d", *tag);
        tern_log_record r = { .value = (const uint8_t *)v, .value_len = (size_t)vl };
        ctx[*tag] = (ack_ctx) { a, *tag };
        assert_int_equal(tern_log_append(log, "o", part, &r, ack_cb, &ctx[*tag]), 0);
    }
}

/*
 * run_overlap: cycle 1 = tags 0..9 on partition 0. Its pwrite is held until cycle 2 (tags
 * 10..19 on partition 0, 20..29 on partition 1) is queued, so cycle 2 is written while cycle 1
 * is being synced. With fail_first_sync, cycle 1's fsync fails: tags 0..19 fail (10..19 were
 * written behind the failed batch and cut by its truncation), 20..29 are durable. Then tags
 * 30..39 (partition 0) are appended normally. Callbacks run in order; readers and a reopen see
 * exactly the acknowledged records. fsync always: the next cycle is due as soon as it is queued
 * (with group commit it might wait for its deadline and not overlap).
 */
static void run_overlap(tern_log_fsync fsync, bool fail_first_sync)
{
    tern_log *log = open_log_cfg(dir, fsync, false, 1u << 20, NULL);
    assert_non_null(log);
    assert_int_equal(tern_log_create_topic(log, "o", 2), 0);
    acks a;
    acks_init(&a);
    static ack_ctx ctx[64];
    int tag = 0;
    atomic_store(&gate_entered, false);
    atomic_store(&gate_open, false);
    atomic_store(&gate_seg_pwrite, 1);
    if (fail_first_sync)
        atomic_store(&fail_seg_fdatasync, 1);
    append_tagged(log, ctx, &a, &tag, 0, 10);
    while (!atomic_load(&gate_entered)) /* the I/O thread took cycle 1 and is writing it */
        sched_yield();
    append_tagged(log, ctx, &a, &tag, 0, 10);
    append_tagged(log, ctx, &a, &tag, 1, 10);
    atomic_store(&gate_open, true);
    assert_int_equal(tern_log_flush(log), 0);
    append_tagged(log, ctx, &a, &tag, 0, 10);
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(atomic_load(&fail_seg_fdatasync), 0);

    assert_int_equal(a.n, 40);
    int n_ok = 0;
    for (size_t i = 0; i < a.n; i++) {
        long t = a.v[i].tag;
        if (i > 0 && a.v[i].partition == a.v[i - 1].partition && a.v[i].status == 0
            && a.v[i - 1].status == 0)
            assert_true(a.v[i].offset > a.v[i - 1].offset);
        if (fail_first_sync && t < 20) {
            assert_int_equal(a.v[i].status, TERN_EIO);
        } else {
            assert_int_equal(a.v[i].status, 0);
            assert_int_equal(a.v[i].partition, t >= 20 && t < 30 ? 1 : 0);
            n_ok++;
        }
    }
    assert_int_equal(n_ok, fail_first_sync ? 20 : 40);
    for (int round = 0; round < 2; round++) {
        static rec_copy got[64];
        int err;
        assert_int_equal(read_all(log, "o", got, 64, &err), n_ok);
        assert_int_equal(err, 0);
        /* every acknowledged record is there, at its offset, with its value */
        for (size_t i = 0; i < a.n; i++) {
            if (a.v[i].status != 0)
                continue;
            char v[64];
            int vl = snprintf(v, sizeof v, "ovl-%05ld", a.v[i].tag);
            bool found = false;
            for (int k = 0; k < n_ok && !found; k++)
                found = got[k].partition == a.v[i].partition && got[k].offset == a.v[i].offset
                    && got[k].value_len == (size_t)vl && memcmp(got[k].value, v, (size_t)vl) == 0;
            assert_true(found);
        }
        tern_log_close(log);
        if (round == 0) {
            log = open_log_cfg(dir, fsync, false, 1u << 20, NULL);
            assert_non_null(log);
            tern_log_stats st;
            tern_log_get_stats(log, &st);
            assert_int_equal(st.corrupt_batches, 0);
        }
    }
    acks_free(&a);
}

static void test_overlapped_cycle_fsync_failure_always(void **state)
{
    (void)state;
    run_overlap(TERN_LOG_FSYNC_ALWAYS, true);
}

static void test_overlapped_cycle_ok(void **state)
{
    (void)state;
    run_overlap(TERN_LOG_FSYNC_ALWAYS, false);
}

static void test_failed_commit_keeps_old_offset(void **state)
{
    (void)state;
    tern_log *log = open_log(dir, false, 1u << 20);
    assert_int_equal(tern_log_create_topic(log, "f", 1), 0);
    const char *topics[] = { "f" };
    tern_log_consumer_config cc = { .group = "g", .topics = topics, .n_topics = 1 };
    tern_log_consumer *c;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), 0);
    assert_int_equal(tern_log_consumer_commit(c, "f", 0, 5), 0);
    atomic_store(&fail_fsync, 1);
    assert_int_equal(tern_log_consumer_commit(c, "f", 0, 9), TERN_EIO);
    int64_t off;
    assert_int_equal(tern_log_committed(log, "g", "f", 0, &off), 0);
    assert_true(off == 5);
    tern_log_consumer_close(c);
    tern_log_close(log);
    log = open_log(dir, false, 1u << 20);
    assert_int_equal(tern_log_committed(log, "g", "f", 0, &off), 0);
    assert_true(off == 5);
    tern_log_close(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_and_fsync_failures_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_and_fsync_failures_zstd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_commit_keeps_old_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_overlapped_cycle_fsync_failure_always, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlapped_cycle_ok, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* WRAP: write pwrite fsync fdatasync */
/*
 * test_log_fault_wrap.c: the embedded log under injected I/O failures. pwrite and fdatasync of
 * segment files (*.log) fail on demand (also a short write followed by a failure); fsync fails
 * on demand for the consumer-group offsets file. Affected appends complete with TERN_EIO, the
 * segment is truncated back, the log keeps working, and a reopen shows exactly what was
 * acknowledged; a failed commit leaves the committed offset unchanged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_test_util.h"

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
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

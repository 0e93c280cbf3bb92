/*
 * test_log_recovery.c: reopening damaged embedded logs. A torn tail cut at every byte of the
 * last batch leaves exactly the whole batches; a zero-filled tail is dropped; a flipped byte
 * in the middle of a segment (in the records, in a length field, in a closed segment) stops
 * reads at the last good batch with TERN_ECORRUPT, counted, never returning garbage, while
 * appends go on and a seek past the damage reads the good data behind it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "log_test_util.h"

static int value_of(char *v, size_t n, int64_t offset)
{
    return snprintf(v, n, "value-%06lld-%0*d", (long long)offset, (int)(10 + offset % 40), 7);
}

/* write_batches appends batches of the given sizes (one flush each) to t/0 and closes. */
static int64_t write_batches(bool compress, uint64_t segment_bytes, const int *sizes, int n)
{
    tern_log *log = open_log_manual(dir, compress, segment_bytes);
    assert_non_null(log);
    tern_log_create_topic(log, "t", 1);
    int64_t lo, next;
    assert_int_equal(tern_log_offsets(log, "t", 0, &lo, &next), 0);
    for (int b = 0; b < n; b++) {
        for (int i = 0; i < sizes[b]; i++) {
            char v[128];
            int vl = value_of(v, sizeof v, next);
            tern_log_record r = { .key = (const uint8_t *)"k",
                .key_len = 1,
                .value = (const uint8_t *)v,
                .value_len = (size_t)vl,
                .ts_ms = 5000 + next };
            assert_int_equal(tern_log_append(log, "t", 0, &r, NULL, NULL), 0);
            next++;
        }
        assert_int_equal(tern_log_flush(log), 0);
    }
    tern_log_close(log);
    return next;
}

/* check_prefix: reading t/0 from the start gives offsets 0..n-1 with their values. */
static void check_prefix(tern_log *log, long n, int want_err)
{
    static rec_copy got[4096];
    int err;
    long k = read_all(log, "t", got, 4096, &err);
    assert_int_equal(err, want_err);
    assert_int_equal(k, n);
    for (long i = 0; i < k; i++) {
        char v[128];
        int vl = value_of(v, sizeof v, i);
        assert_true(got[i].offset == i);
        assert_int_equal(got[i].value_len, (size_t)vl);
        assert_memory_equal(got[i].value, v, (size_t)vl);
        assert_true(got[i].ts_ms == 5000 + i);
    }
}

static void torn_tail_every_cut(bool compress)
{
    static const int sizes[] = { 20, 20, 20, 20, 3 };
    int64_t total = write_batches(compress, 1u << 20, sizes, 5);
    assert_true(total == 83);
    char seg[600], idx[600], tidx[600];
    seg_path(seg, sizeof seg, dir, "t", 0, 0, ".log");
    seg_path(idx, sizeof idx, dir, "t", 0, 0, ".index");
    seg_path(tidx, sizeof tidx, dir, "t", 0, 0, ".timeindex");
    size_t len = 0;
    unsigned char *image = read_file(seg, &len);
    assert_non_null(image);
    size_t starts[8];
    assert_int_equal(batch_starts(image, len, starts, 8), 5);
    for (size_t cut = starts[4]; cut < len; cut++) {
        assert_int_equal(write_file(seg, image, cut), 0);
        unlink(idx);
        unlink(tidx);
        tern_log *log = open_log(dir, compress, 1u << 20);
        assert_non_null(log);
        int64_t lo, hi;
        assert_int_equal(tern_log_offsets(log, "t", 0, &lo, &hi), 0);
        assert_true(lo == 0 && hi == 80);
        assert_true(file_size(seg) == (long long)starts[4]);
        check_prefix(log, 80, 0);
        tern_log_stats st;
        tern_log_get_stats(log, &st);
        assert_int_equal(st.corrupt_batches, 0);
        if (cut % 16 == 0) { /* the log goes on at the right offset */
            acks a;
            acks_init(&a);
            ack_ctx ctx = { &a, 0 };
            char v[128];
            int vl = value_of(v, sizeof v, 80);
            tern_log_record r
                = { .value = (const uint8_t *)v, .value_len = (size_t)vl, .ts_ms = 5080 };
            assert_int_equal(tern_log_append(log, "t", 0, &r, ack_cb, &ctx), 0);
            assert_int_equal(tern_log_flush(log), 0);
            assert_int_equal(a.n, 1);
            assert_true(a.v[0].offset == 80);
            check_prefix(log, 81, 0);
            acks_free(&a);
        }
        tern_log_close(log);
    }
    free(image);
}

static void test_torn_tail_every_cut_plain(void **state)
{
    (void)state;
    torn_tail_every_cut(false);
}

static void test_torn_tail_every_cut_zstd(void **state)
{
    (void)state;
    torn_tail_every_cut(true);
}

static void test_zero_filled_tail_dropped(void **state)
{
    (void)state;
    static const int sizes[] = { 10, 10 };
    write_batches(false, 1u << 20, sizes, 2);
    char seg[600];
    seg_path(seg, sizeof seg, dir, "t", 0, 0, ".log");
    size_t len = 0;
    unsigned char *image = read_file(seg, &len);
    unsigned char *big = calloc(1, len + 5000);
    memcpy(big, image, len);
    write_file(seg, big, len + 5000);
    tern_log *log = open_log(dir, false, 1u << 20);
    assert_non_null(log);
    assert_true(file_size(seg) == (long long)len);
    check_prefix(log, 20, 0);
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_int_equal(st.corrupt_batches, 0);
    tern_log_close(log);
    free(image);
    free(big);
}

/* flip one byte of the active segment at pos and reopen */
static tern_log *flip_and_open(const char *seg, size_t pos, unsigned char mask, size_t *len_out)
{
    size_t len = 0;
    unsigned char *image = read_file(seg, &len);
    assert_non_null(image);
    image[pos] ^= mask;
    write_file(seg, image, len);
    free(image);
    *len_out = len;
    return open_log(dir, false, 1u << 20);
}

static void test_flipped_byte_in_middle_stops_reads(void **state)
{
    (void)state;
    static const int sizes[] = { 20, 20, 20, 20, 3 };
    write_batches(false, 1u << 20, sizes, 5);
    char seg[600];
    seg_path(seg, sizeof seg, dir, "t", 0, 0, ".log");
    size_t len = 0;
    unsigned char *image = read_file(seg, &len);
    size_t starts[8];
    batch_starts(image, len, starts, 8);
    free(image);
    tern_log *log = flip_and_open(seg, starts[2] + 60, 0x10, &len);
    assert_non_null(log);
    assert_true(file_size(seg) == (long long)len); /* kept, not truncated */
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_true(st.corrupt_batches >= 1); /* found by recovery */
    int64_t lo, hi;
    assert_int_equal(tern_log_offsets(log, "t", 0, &lo, &hi), 0);
    assert_true(hi == 83); /* the batches behind the damage were found */
    check_prefix(log, 40, TERN_ECORRUPT);

    /* the error is reported once per reader; then the partition just yields nothing */
    const char *topics[] = { "t" };
    tern_log_consumer_config cc = { .topics = topics, .n_topics = 1 };
    tern_log_consumer *c;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), 0);
    assert_int_equal(tern_log_consumer_seek(c, "t", 0, 40), 0);
    tern_log_message m[8];
    size_t got = 1;
    assert_int_equal(tern_log_consumer_poll(c, m, 8, 0, &got), TERN_ECORRUPT);
    assert_int_equal(got, 0);
    assert_int_equal(tern_log_consumer_poll(c, m, 8, 0, &got), 0);
    assert_int_equal(got, 0);
    /* a seek past the damage reads the good batches behind it */
    assert_int_equal(tern_log_consumer_seek(c, "t", 0, 60), 0);
    assert_int_equal(tern_log_consumer_poll(c, m, 8, 0, &got), 0);
    assert_true(got >= 1 && m[0].offset == 60);
    char v[128];
    int vl = value_of(v, sizeof v, 60);
    assert_memory_equal(m[0].value, v, (size_t)vl);
    tern_log_consumer_close(c);

    /* appends continue (in a new segment) at the next offset */
    acks a;
    acks_init(&a);
    ack_ctx ctx = { &a, 0 };
    tern_log_record r = { .value = (const uint8_t *)"after", .value_len = 5 };
    assert_int_equal(tern_log_append(log, "t", 0, &r, ack_cb, &ctx), 0);
    assert_int_equal(tern_log_flush(log), 0);
    assert_int_equal(a.n, 1);
    assert_int_equal(a.v[0].status, 0);
    assert_true(a.v[0].offset == 83);
    tern_log_close(log);
    acks_free(&a);
    log = open_log(dir, false, 1u << 20);
    assert_non_null(log);
    assert_int_equal(tern_log_offsets(log, "t", 0, &lo, &hi), 0);
    assert_true(hi == 84);
    check_prefix(log, 40, TERN_ECORRUPT);
    tern_log_close(log);
}

static void test_flipped_length_field_in_middle(void **state)
{
    (void)state;
    static const int sizes[] = { 20, 20, 20, 20, 3 };
    write_batches(false, 1u << 20, sizes, 5);
    char seg[600];
    seg_path(seg, sizeof seg, dir, "t", 0, 0, ".log");
    size_t len = 0;
    unsigned char *image = read_file(seg, &len);
    size_t starts[8];
    batch_starts(image, len, starts, 8);
    free(image);
    for (int k = 0; k < 2; k++) { /* the high byte: huge; the low byte: a bit off */
        tern_log *log
            = flip_and_open(seg, starts[1] + (k == 0 ? 3 : 0), k == 0 ? 0x40 : 0x04, &len);
        assert_non_null(log);
        assert_true(file_size(seg) == (long long)len);
        check_prefix(log, 20, TERN_ECORRUPT);
        tern_log_close(log);
        log = flip_and_open(seg, starts[1] + (k == 0 ? 3 : 0), k == 0 ? 0x40 : 0x04, &len);
        check_prefix(log, 83, 0); /* flipped back: whole again */
        tern_log_close(log);
    }
}

static void test_flipped_byte_in_closed_segment(void **state)
{
    (void)state;
    int sizes[40];
    for (int i = 0; i < 40; i++)
        sizes[i] = 10;
    write_batches(false, 4096, sizes, 40);
    char seg[600];
    seg_path(seg, sizeof seg, dir, "t", 0, 0, ".log");
    size_t len = 0;
    unsigned char *image = read_file(seg, &len);
    size_t starts[64];
    size_t nb = batch_starts(image, len, starts, 64);
    assert_true(nb >= 3);
    image[starts[1] + 50] ^= 0x01;
    write_file(seg, image, len);
    free(image);
    tern_log *log = open_log(dir, false, 4096);
    assert_non_null(log);
    check_prefix(log, 10, TERN_ECORRUPT);
    tern_log_stats st;
    tern_log_get_stats(log, &st);
    assert_true(st.corrupt_batches >= 1);
    /* everything after the damaged batch is still readable by seeking */
    const char *topics[] = { "t" };
    tern_log_consumer_config cc = { .topics = topics, .n_topics = 1 };
    tern_log_consumer *c;
    assert_int_equal(tern_log_consumer_open(log, &cc, &c), 0);
    assert_int_equal(tern_log_consumer_seek(c, "t", 0, 20), 0);
    long n = 0;
    for (;;) {
        tern_log_message m[64];
        size_t got;
        assert_int_equal(tern_log_consumer_poll(c, m, 64, 0, &got), 0);
        if (got == 0)
            break;
        for (size_t i = 0; i < got; i++) {
            assert_true(m[i].offset == 20 + n);
            n++;
        }
    }
    assert_int_equal(n, 400 - 20);
    tern_log_consumer_close(c);
    tern_log_close(log);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_torn_tail_every_cut_plain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_cut_zstd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_filled_tail_dropped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_in_middle_stops_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_length_field_in_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_byte_in_closed_segment, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

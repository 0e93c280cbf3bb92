/* WRAP: pwritev fdatasync ftruncate */
/*
 * test_wal.c: the TSDB write-ahead log. Round trips across segment rotation, replay order,
 * reopen, torn tails cut at every byte of the last record, corruption in the middle (refused
 * with the segment and offset named, or skipped on request, never returned), unfinished and
 * foreign segment files, fsync failure (waiters and callbacks get the error, appends stop, and
 * nothing after the last good sync is called durable), write failure and ENOSPC (the partial
 * record is cut off), concurrent appenders (each record replayed exactly once, in order per
 * thread), notify callbacks from the sync thread, cut/truncate_before, and kill -9 of a child
 * process in the middle of appending (every acknowledged record is replayed).
 * pwritev, fdatasync and ftruncate are wrapped to inject faults on *.wal files.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "tsdb/wal.h"

#include "base/crc32c.h"
#include "base/error.h"
#include "base/log.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

ssize_t __real_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off);
int __real_fdatasync(int fd);
int __real_ftruncate(int fd, off_t len);
ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off);
int __wrap_fdatasync(int fd);
int __wrap_ftruncate(int fd, off_t len);

static atomic_int fail_pwritev;       /* fail the next N pwritev on a .wal file */
static atomic_int fail_pwritev_errno; /* ... with this errno */
static atomic_int short_pwritev;      /* write half of the next one, then fail the rest */
static atomic_int fail_fdatasync;     /* fail the next N fdatasync on a .wal file */
static atomic_int fail_ftruncate;     /* fail the next N ftruncate */
static atomic_long n_fdatasync;       /* fdatasyncs of .wal files done */

static bool is_wal(int fd)
{
    char link[64], target[1024];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    if (n < 4)
        return false;
    target[n] = 0;
    return strcmp(target + n - 4, ".wal") == 0;
}

static bool take(atomic_int *counter)
{
    int v = atomic_load(counter);
    while (v > 0)
        if (atomic_compare_exchange_weak(counter, &v, v - 1))
            return true;
    return false;
}

ssize_t __wrap_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off)
{
    if (is_wal(fd)) {
        if (take(&short_pwritev) && iovcnt > 0 && iov[0].iov_len > 1) {
            atomic_fetch_add(&fail_pwritev, 1);
            struct iovec half = { iov[0].iov_base, iov[0].iov_len / 2 };
            return __real_pwritev(fd, &half, 1, off);
        }
        if (take(&fail_pwritev)) {
            int e = atomic_load(&fail_pwritev_errno);
            errno = e ? e : EIO;
            return -1;
        }
    }
    return __real_pwritev(fd, iov, iovcnt, off);
}

int __wrap_fdatasync(int fd)
{
    if (is_wal(fd)) {
        if (take(&fail_fdatasync)) {
            errno = EIO;
            return -1;
        }
        atomic_fetch_add(&n_fdatasync, 1);
    }
    return __real_fdatasync(fd);
}

int __wrap_ftruncate(int fd, off_t len)
{
    if (take(&fail_ftruncate)) {
        errno = EIO;
        return -1;
    }
    return __real_ftruncate(fd, len);
}

/* ---- helpers ------------------------------------------------------------------------------ */

static char *g_root;

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    const char *base = getenv("TERN_TEST_TMP");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/waltestXXXXXX", base && base[0] ? base : "/tmp");
    char *d = mkdtemp(buf);
    assert_non_null(d);
    g_root = strdup(d);
    *state = g_root;
    atomic_store(&fail_pwritev, 0);
    atomic_store(&fail_pwritev_errno, 0);
    atomic_store(&short_pwritev, 0);
    atomic_store(&fail_fdatasync, 0);
    atomic_store(&fail_ftruncate, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(g_root);
    g_root = NULL;
    return 0;
}

static void wal_dir(char *out, size_t cap)
{
    snprintf(out, cap, "%s/wal", g_root);
}

static void seg_file(uint32_t segno, char *out, size_t cap)
{
    snprintf(out, cap, "%s/wal/%08u.wal", g_root, segno);
}

static tern_wal *open_wal(uint64_t segment_bytes, uint32_t group_ms, bool fsync, bool skip)
{
    char dir[600];
    wal_dir(dir, sizeof dir);
    tern_wal_options o;
    tern_wal_options_default(&o);
    o.segment_bytes = segment_bytes;
    o.group_commit_ms = group_ms;
    o.fsync = fsync;
    o.skip_corrupt = skip;
    tern_wal *w = NULL;
    assert_int_equal(tern_wal_open(dir, &o, &w), 0);
    return w;
}

/* make_rec fills buf with record number i: "r<i>:" then a pattern; returns its length. */
static size_t make_rec(uint8_t *buf, size_t cap, uint32_t i)
{
    int n = snprintf((char *)buf, cap, "r%u:", i);
    size_t len = (size_t)n + (i * 37u) % 200u;
    assert_true(len <= cap);
    for (size_t k = (size_t)n; k < len; k++)
        buf[k] = (uint8_t)(i + k);
    return len;
}

typedef struct collected {
    uint32_t n;
    uint32_t cap;
    uint8_t **recs;
    size_t *lens;
    int fail_at; /* fn returns -77 at this record (or -1: never) */
} collected;

static int collect_fn(void *arg, const uint8_t *rec, size_t len)
{
    collected *c = arg;
    if (c->fail_at >= 0 && c->n == (uint32_t)c->fail_at)
        return -77;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->recs = realloc(c->recs, c->cap * sizeof *c->recs);
        c->lens = realloc(c->lens, c->cap * sizeof *c->lens);
        assert_non_null(c->recs);
        assert_non_null(c->lens);
    }
    c->recs[c->n] = malloc(len);
    memcpy(c->recs[c->n], rec, len);
    c->lens[c->n] = len;
    c->n++;
    return 0;
}

static void collected_free(collected *c)
{
    for (uint32_t i = 0; i < c->n; i++)
        free(c->recs[i]);
    free(c->recs);
    free(c->lens);
    memset(c, 0, sizeof *c);
}

/* expect_recs asserts that c holds exactly records first .. first+n-1 of make_rec. */
static void expect_recs(const collected *c, uint32_t first, uint32_t n)
{
    assert_int_equal(c->n, n);
    uint8_t want[512];
    for (uint32_t i = 0; i < n; i++) {
        size_t len = make_rec(want, sizeof want, first + i);
        assert_int_equal(c->lens[i], len);
        assert_memory_equal(c->recs[i], want, len);
    }
}

static void append_recs(tern_wal *w, uint32_t first, uint32_t n)
{
    uint8_t buf[512];
    for (uint32_t i = first; i < first + n; i++) {
        size_t len = make_rec(buf, sizeof buf, i);
        uint64_t seq = 0;
        assert_int_equal(tern_wal_append(w, buf, len, &seq), 0);
        assert_true(seq > 0);
    }
}

/* replay_all opens the WAL, replays into c and returns replay's result (w stays open). */
static int replay_all(tern_wal **wp, collected *c, tern_wal_replay_stats *st, bool skip)
{
    *wp = open_wal(0, 1, false, skip);
    memset(c, 0, sizeof *c);
    c->fail_at = -1;
    return tern_wal_replay(*wp, collect_fn, c, st);
}

static off_t file_size(const char *path)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    return sb.st_size;
}

static void flip_byte(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, off), 1);
    b ^= 0x5a;
    assert_int_equal(pwrite(fd, &b, 1, off), 1);
    close(fd);
}

/* ---- tests -------------------------------------------------------------------------------- */

static void test_round_trip_across_rotation(void **state)
{
    (void)state;
    tern_wal *w = open_wal(4096, 1, false, false);
    collected c = { .fail_at = -1 };
    tern_wal_replay_stats st;
    assert_int_equal(tern_wal_replay(w, collect_fn, &c, &st), 0); /* empty dir */
    assert_int_equal(c.n, 0);
    assert_int_equal(st.n_segments, 0);
    append_recs(w, 0, 2000);
    uint32_t segs[256];
    size_t n_segs = tern_wal_segments(w, segs, 256);
    assert_true(n_segs > 20);
    for (size_t i = 1; i < n_segs && i < 256; i++)
        assert_int_equal(segs[i], segs[i - 1] + 1);
    assert_int_equal(tern_wal_close(w), 0);
    /* No segment passes its size unless one record alone does. */
    for (size_t i = 0; i < n_segs; i++) {
        char p[700];
        seg_file(segs[i], p, sizeof p);
        assert_true(file_size(p) <= 4096);
    }

    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    expect_recs(&c, 0, 2000);
    assert_int_equal(st.n_records, 2000);
    assert_int_equal(st.n_segments, n_segs);
    assert_int_equal(st.first_segno, 1);
    assert_int_equal(st.last_segno, n_segs);
    assert_false(st.torn_tail);
    assert_string_equal(st.message, "");
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

static void test_reopen_appends_to_new_segment(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, true, false);
    assert_int_equal(tern_wal_replay(w, collect_fn, &(collected) { .fail_at = -1 }, NULL), 0);
    append_recs(w, 0, 10);
    assert_int_equal(tern_wal_close(w), 0);
    char p1[700];
    seg_file(1, p1, sizeof p1);
    off_t size1 = file_size(p1);

    /* Appending before replaying existing segments is refused. */
    w = open_wal(0, 1, true, false);
    uint64_t seq;
    assert_int_equal(tern_wal_append(w, "x", 1, &seq), TERN_EINVAL);
    collected c = { .fail_at = -1 };
    assert_int_equal(tern_wal_replay(w, collect_fn, &c, NULL), 0);
    expect_recs(&c, 0, 10);
    collected_free(&c);
    /* A second replay is a misuse. */
    assert_int_equal(tern_wal_replay(w, collect_fn, &c, NULL), TERN_EINVAL);
    append_recs(w, 10, 5);
    uint32_t segs[8];
    assert_int_equal(tern_wal_segments(w, segs, 8), 2);
    assert_int_equal(segs[1], 2);
    assert_int_equal(tern_wal_close(w), 0);
    assert_int_equal(file_size(p1), size1); /* the old segment was not touched */

    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    expect_recs(&c, 0, 15);
    assert_int_equal(st.n_segments, 2);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

static void test_replay_callback_error_stops(void **state)
{
    (void)state;
    tern_wal *w = open_wal(4096, 1, false, false);
    append_recs(w, 0, 100);
    assert_int_equal(tern_wal_close(w), 0);
    w = open_wal(0, 1, false, false);
    collected c = { .fail_at = 42 };
    assert_int_equal(tern_wal_replay(w, collect_fn, &c, NULL), -77);
    expect_recs(&c, 0, 42);
    uint64_t seq;
    assert_int_equal(tern_wal_append(w, "x", 1, &seq), TERN_EINVAL); /* not replayed */
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

static void test_append_rejects_bad_lengths(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, false, false);
    uint64_t seq = 99;
    assert_int_equal(tern_wal_append(w, "", 0, &seq), TERN_EINVAL);
    static uint8_t one;
    assert_int_equal(
        tern_wal_append(w, &one, (size_t)TERN_WAL_MAX_RECORD_BYTES + 1, &seq), TERN_ETOOBIG);
    assert_int_equal(seq, 99);
    assert_int_equal(tern_wal_wait(w, 1), TERN_EINVAL); /* never handed out */
    assert_int_equal(tern_wal_wait(w, 0), 0);
    assert_int_equal(tern_wal_close(w), 0);
}

/* Every cut inside the last record (and CRC damage to it) is a torn tail. */
static void test_torn_tail_every_offset(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, false, false);
    append_recs(w, 0, 6);
    assert_int_equal(tern_wal_close(w), 0);
    char p[700];
    seg_file(1, p, sizeof p);
    off_t full = file_size(p);
    uint8_t last[512];
    off_t last_len = (off_t)(8 + make_rec(last, sizeof last, 5));
    uint8_t *orig = malloc((size_t)full);
    int fd = open(p, O_RDONLY);
    assert_int_equal(read(fd, orig, (size_t)full), full);
    close(fd);

    for (off_t cut = full - last_len; cut <= full; cut++) {
        /* cut == full: the last record's CRC is damaged instead of cut */
        fd = open(p, O_WRONLY | O_TRUNC);
        assert_int_equal(write(fd, orig, (size_t)cut), cut);
        close(fd);
        if (cut == full)
            flip_byte(p, full - 1);
        collected c;
        tern_wal_replay_stats st;
        assert_int_equal(replay_all(&w, &c, &st, false), 0);
        expect_recs(&c, 0, 5);
        bool clean = cut == full - last_len;
        assert_int_equal(st.torn_tail, !clean);
        if (!clean) {
            assert_int_equal(st.torn_segno, 1);
            assert_int_equal(st.torn_offset, full - last_len);
            assert_int_equal(st.torn_bytes, cut - (full - last_len));
            assert_non_null(strstr(st.message, "00000001.wal"));
            assert_non_null(strstr(st.message, "torn tail"));
        }
        assert_int_equal(file_size(p), full - last_len); /* truncated away */
        assert_int_equal(tern_wal_close(w), 0);
        collected_free(&c);
        /* the files are left as replay repaired them: a second replay is clean */
        assert_int_equal(replay_all(&w, &c, &st, false), 0);
        assert_false(st.torn_tail);
        expect_recs(&c, 0, 5);
        assert_int_equal(tern_wal_close(w), 0);
        collected_free(&c);
    }
    free(orig);
}

/* A torn tail, then more appends in a new segment: everything acknowledged comes back. */
static void test_torn_tail_then_append(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, false, false);
    append_recs(w, 0, 4);
    assert_int_equal(tern_wal_close(w), 0);
    char p[700];
    seg_file(1, p, sizeof p);
    assert_int_equal(truncate(p, file_size(p) - 3), 0);
    collected c;
    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    expect_recs(&c, 0, 3);
    assert_true(st.torn_tail);
    append_recs(w, 3, 4);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    expect_recs(&c, 0, 7);
    assert_false(st.torn_tail);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

/* A zero-filled tail (file size grew, data never landed) is a torn tail too. */
static void test_zero_tail_is_torn(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, false, false);
    append_recs(w, 0, 3);
    assert_int_equal(tern_wal_close(w), 0);
    char p[700];
    seg_file(1, p, sizeof p);
    off_t size = file_size(p);
    assert_int_equal(truncate(p, size + 4096), 0);
    collected c;
    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    expect_recs(&c, 0, 3);
    assert_true(st.torn_tail);
    assert_int_equal(st.torn_bytes, 4096);
    assert_int_equal(file_size(p), size);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

static void write_file(const char *path, const void *bytes, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, bytes, n), (ssize_t)n);
    close(fd);
}

/* A last segment whose header never landed is removed; a foreign one is refused. */
static void test_unfinished_and_foreign_segments(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, false, false);
    append_recs(w, 0, 3);
    assert_int_equal(tern_wal_close(w), 0);
    char p2[700];
    seg_file(2, p2, sizeof p2);
    write_file(p2, "TWA", 3);
    collected c;
    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    expect_recs(&c, 0, 3);
    assert_true(st.torn_tail);
    assert_int_equal(st.torn_segno, 2);
    assert_int_equal(access(p2, F_OK), -1);
    uint32_t segs[4];
    assert_int_equal(tern_wal_segments(w, segs, 4), 1);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);

    /* a whole header of zeros in the last segment: also unfinished */
    static const uint8_t zeros[16];
    write_file(p2, zeros, sizeof zeros);
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    assert_true(st.torn_tail);
    assert_int_equal(access(p2, F_OK), -1);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);

    /* a foreign file named like a segment */
    write_file(p2, "this is not a WAL segment at all", 32);
    assert_int_equal(replay_all(&w, &c, &st, false), TERN_ECORRUPT);
    assert_non_null(strstr(st.message, "00000002.wal"));
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);

    /* a future format version */
    uint8_t hdr[16] = { 'T', 'W', 'A', 'L', 2 };
    write_file(p2, hdr, sizeof hdr);
    assert_int_equal(replay_all(&w, &c, &st, false), TERN_EVERSION);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);

    /* a short file that is not the last segment is corruption */
    char p3[700];
    seg_file(3, p3, sizeof p3);
    write_file(p2, "TWAL", 4);
    write_file(p3, zeros, 0);
    assert_int_equal(replay_all(&w, &c, &st, false), TERN_ECORRUPT);
    assert_non_null(strstr(st.message, "00000002.wal"));
    expect_recs(&c, 0, 3);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

static char g_log[4096];
static void capture_log(void *opaque, tern_log_level level, const char *line, size_t len)
{
    (void)opaque;
    (void)level;
    size_t have = strlen(g_log);
    if (have + len < sizeof g_log)
        memcpy(g_log + have, line, len + 1);
}

/* Damage in the middle: refused with the segment and offset named, records before it only. */
static void test_corrupt_middle(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, false, false);
    append_recs(w, 0, 10);
    assert_int_equal(tern_wal_close(w), 0);
    char p[700];
    seg_file(1, p, sizeof p);
    off_t off3 = 16;
    uint8_t buf[512];
    for (uint32_t i = 0; i < 3; i++)
        off3 += (off_t)(8 + make_rec(buf, sizeof buf, i));
    off_t len3 = (off_t)(8 + make_rec(buf, sizeof buf, 3));

    /* every byte of record 3 (length, CRC, payload): flip, check, flip back */
    for (off_t b = off3; b < off3 + len3; b++) {
        flip_byte(p, b);
        collected c;
        tern_wal_replay_stats st;
        g_log[0] = 0;
        tern_log_set_callback(capture_log, NULL);
        assert_int_equal(replay_all(&w, &c, &st, false), TERN_ECORRUPT);
        tern_log_set_callback(NULL, NULL);
        expect_recs(&c, 0, 3);
        char want[64];
        snprintf(want, sizeof want, "offset %lld:", (long long)off3);
        assert_non_null(strstr(st.message, want));
        assert_non_null(strstr(st.message, "00000001.wal"));
        assert_non_null(strstr(g_log, want));
        assert_false(st.torn_tail);
        /* nothing was truncated and appends stay refused */
        uint64_t seq;
        assert_int_equal(tern_wal_append(w, "x", 1, &seq), TERN_EINVAL);
        assert_int_equal(tern_wal_close(w), 0);
        collected_free(&c);
        flip_byte(p, b);
    }

    /* skip_corrupt: record 3 is skipped, the rest comes back */
    flip_byte(p, off3 + 10);
    collected c;
    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, true), 0);
    assert_int_equal(c.n, 9);
    for (uint32_t i = 0, k = 0; i < 10; i++) {
        if (i == 3)
            continue;
        size_t len = make_rec(buf, sizeof buf, i);
        assert_int_equal(c.lens[k], len);
        assert_memory_equal(c.recs[k], buf, len);
        k++;
    }
    assert_int_equal(st.n_corrupt, 1);
    assert_int_equal(st.corrupt_bytes, len3);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

/* A damaged tail of a segment that is not the last is corruption, not a torn tail. */
static void test_corrupt_tail_of_older_segment(void **state)
{
    (void)state;
    tern_wal *w = open_wal(4096, 1, false, false);
    append_recs(w, 0, 100);
    assert_int_equal(tern_wal_close(w), 0);
    char p[700];
    seg_file(1, p, sizeof p);
    assert_int_equal(truncate(p, file_size(p) - 1), 0);
    collected c;
    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, false), TERN_ECORRUPT);
    assert_non_null(strstr(st.message, "00000001.wal"));
    assert_int_equal(tern_wal_close(w), 0);
    uint32_t n_first = c.n;
    collected_free(&c);
    /* skipping: only the damaged last record of segment 1 is lost */
    assert_true(n_first >= 1 && n_first < 99);
    assert_int_equal(replay_all(&w, &c, &st, true), 0);
    assert_int_equal(c.n, 99);
    assert_int_equal(st.n_corrupt, 1);
    uint8_t buf[512];
    for (uint32_t i = 0; i < 100; i++) { /* record n_first was the damaged one */
        if (i == n_first)
            continue;
        uint32_t k = i < n_first ? i : i - 1;
        size_t len = make_rec(buf, sizeof buf, i);
        assert_int_equal(c.lens[k], len);
        assert_memory_equal(c.recs[k], buf, len);
    }
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

typedef struct note_rec {
    atomic_int calls;
    atomic_int rc;
    pthread_t thread;
} note_rec;

static void note_cb(void *arg, int rc)
{
    note_rec *n = arg;
    n->thread = pthread_self();
    atomic_store(&n->rc, rc);
    atomic_fetch_add(&n->calls, 1);
}

static void wait_calls(note_rec *n, int want)
{
    for (int i = 0; i < 10000 && atomic_load(&n->calls) < want; i++)
        usleep(1000);
    assert_int_equal(atomic_load(&n->calls), want);
}

static void test_fsync_failure_is_sticky(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, true, false);
    uint64_t a, b, c_seq;
    assert_int_equal(tern_wal_append(w, "aaaa", 4, &a), 0);
    assert_int_equal(tern_wal_wait(w, a), 0);
    atomic_store(&fail_fdatasync, 1);
    assert_int_equal(tern_wal_append(w, "bbbb", 4, &b), 0);
    assert_int_equal(tern_wal_wait(w, b), TERN_EIO);
    assert_int_equal(tern_wal_wait(w, b), TERN_EIO); /* and stays so */
    assert_int_equal(tern_wal_wait(w, a), 0);        /* durable before the failure */
    note_rec nb = { 0 }, na = { 0 };
    assert_int_equal(tern_wal_notify(w, b, note_cb, &nb), 0);
    assert_int_equal(tern_wal_notify(w, a, note_cb, &na), 0);
    wait_calls(&nb, 1);
    wait_calls(&na, 1);
    assert_int_equal(atomic_load(&nb.rc), TERN_EIO);
    assert_int_equal(atomic_load(&na.rc), 0);
    assert_false(pthread_equal(nb.thread, pthread_self()));
    assert_int_equal(tern_wal_append(w, "cccc", 4, &c_seq), TERN_EIO);
    uint32_t segno;
    assert_int_equal(tern_wal_cut(w, &segno), TERN_EIO);
    assert_int_equal(tern_wal_close(w), TERN_EIO);
    atomic_store(&fail_fdatasync, 0);

    /* A reopened WAL works again; what was durable is there. */
    collected col;
    assert_int_equal(replay_all(&w, &col, NULL, false), 0);
    assert_true(col.n >= 1);
    assert_int_equal(col.lens[0], 4);
    assert_memory_equal(col.recs[0], "aaaa", 4);
    assert_int_equal(tern_wal_append(w, "dddd", 4, &c_seq), 0);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&col);
}

/* group_commit_ms 0: append itself waits, so a failed fsync is its own error. */
static void test_sync_each_append(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 0, true, false);
    long before = atomic_load(&n_fdatasync);
    uint64_t seq;
    assert_int_equal(tern_wal_append(w, "one", 3, &seq), 0);
    assert_true(atomic_load(&n_fdatasync) > before);
    atomic_store(&fail_fdatasync, 1);
    uint64_t seq2 = 1234;
    assert_int_equal(tern_wal_append(w, "two", 3, &seq2), TERN_EIO);
    assert_int_equal(seq2, 1234);
    assert_int_equal(tern_wal_close(w), TERN_EIO);
}

static void test_write_failure_and_enospc(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 1, true, false);
    append_recs(w, 0, 3);
    atomic_store(&fail_pwritev_errno, ENOSPC);
    atomic_store(&fail_pwritev, 1);
    uint8_t buf[512];
    size_t len = make_rec(buf, sizeof buf, 999);
    uint64_t seq;
    assert_int_equal(tern_wal_append(w, buf, len, &seq), TERN_ENOSPC);
    append_recs(w, 3, 2);
    atomic_store(&fail_pwritev_errno, EIO);
    atomic_store(&short_pwritev, 1); /* half written, then EIO: the half is cut off */
    assert_int_equal(tern_wal_append(w, buf, len, &seq), TERN_EIO);
    append_recs(w, 5, 2);
    assert_int_equal(tern_wal_append(w, "x", 1, &seq), 0);
    assert_int_equal(seq, 8); /* failed appends took no sequence number */
    assert_int_equal(tern_wal_wait(w, seq), 0);
    assert_int_equal(tern_wal_close(w), 0);

    collected c;
    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    assert_int_equal(c.n, 8);
    c.n = 7;
    free(c.recs[7]);
    expect_recs(&c, 0, 7);
    assert_false(st.torn_tail);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);

    /* If the partial record cannot be cut off, the WAL stops accepting appends. */
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    collected_free(&c);
    assert_int_equal(tern_wal_append(w, "y", 1, &seq), 0); /* segment 2 exists */
    atomic_store(&short_pwritev, 1);
    atomic_store(&fail_ftruncate, 1);
    assert_int_equal(tern_wal_append(w, buf, len, &seq), TERN_EIO);
    assert_int_equal(tern_wal_append(w, "z", 1, &seq), TERN_EIO); /* sticky */
    assert_int_equal(tern_wal_close(w), TERN_EIO);
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    assert_int_equal(st.torn_segno, 2);
    assert_int_equal(st.torn_bytes, 4); /* half of the record header */
    assert_int_equal(c.n, 9);           /* the half record was a torn tail of the last segment */
    assert_true(st.torn_tail);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

typedef struct writer_arg {
    tern_wal *w;
    uint32_t thread_id;
    uint32_t n;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *a = p;
    for (uint32_t i = 0; i < a->n; i++) {
        uint32_t rec[3] = { a->thread_id, i, a->thread_id * 7919u + i };
        uint64_t seq;
        if (tern_wal_append(a->w, rec, sizeof rec, &seq) != 0)
            return (void *)1;
        if (i % 8 == 7 && tern_wal_wait(a->w, seq) != 0)
            return (void *)1;
    }
    return NULL;
}

typedef struct per_thread {
    uint32_t next[4];
    int bad;
} per_thread;

static int check_fn(void *arg, const uint8_t *rec, size_t len)
{
    per_thread *pt = arg;
    uint32_t r[3];
    if (len != sizeof r) {
        pt->bad++;
        return 0;
    }
    memcpy(r, rec, sizeof r);
    if (r[0] >= 4 || r[1] != pt->next[r[0]] || r[2] != r[0] * 7919u + r[1])
        pt->bad++;
    else
        pt->next[r[0]]++;
    return 0;
}

static void test_concurrent_appenders(void **state)
{
    (void)state;
    enum { N = 600 };
    tern_wal *w = open_wal(8192, 2, true, false);
    long before = atomic_load(&n_fdatasync);
    pthread_t th[4];
    writer_arg args[4];
    for (uint32_t t = 0; t < 4; t++) {
        args[t] = (writer_arg) { w, t, N };
        assert_int_equal(pthread_create(&th[t], NULL, writer_main, &args[t]), 0);
    }
    for (int t = 0; t < 4; t++) {
        void *res;
        pthread_join(th[t], &res);
        assert_null(res);
    }
    assert_int_equal(tern_wal_close(w), 0);
    printf("# concurrent: %d appends, %ld fdatasyncs\n", 4 * N, atomic_load(&n_fdatasync) - before);

    w = open_wal(0, 1, false, false);
    per_thread pt = { { 0 }, 0 };
    assert_int_equal(tern_wal_replay(w, check_fn, &pt, NULL), 0);
    assert_int_equal(pt.bad, 0);
    for (int t = 0; t < 4; t++)
        assert_int_equal(pt.next[t], N);
    assert_int_equal(tern_wal_close(w), 0);
}

static void test_notify_from_sync_thread(void **state)
{
    (void)state;
    tern_wal *w = open_wal(0, 50, true, false);
    uint64_t seq = 0;
    note_rec n[3] = { { 0 }, { 0 }, { 0 } };
    for (int i = 0; i < 3; i++) {
        assert_int_equal(tern_wal_append(w, "rec", 3, &seq), 0);
        assert_int_equal(tern_wal_notify(w, seq, note_cb, &n[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        wait_calls(&n[i], 1);
        assert_int_equal(atomic_load(&n[i].rc), 0);
        assert_false(pthread_equal(n[i].thread, pthread_self()));
    }
    assert_int_equal(tern_wal_notify(w, seq + 1, note_cb, &n[0]), TERN_EINVAL);
    /* pending callbacks are answered by close */
    note_rec last = { 0 };
    assert_int_equal(tern_wal_append(w, "rec", 3, &seq), 0);
    assert_int_equal(tern_wal_notify(w, seq, note_cb, &last), 0);
    assert_int_equal(tern_wal_close(w), 0);
    assert_int_equal(atomic_load(&last.calls), 1);
    assert_int_equal(atomic_load(&last.rc), 0);
    /* fsync off: callbacks still come from the sync thread */
    nftw(g_root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    assert_int_equal(mkdir(g_root, 0755), 0);
    w = open_wal(0, 50, false, false);
    note_rec off = { 0 };
    assert_int_equal(tern_wal_append(w, "rec", 3, &seq), 0);
    assert_int_equal(tern_wal_notify(w, seq, note_cb, &off), 0);
    wait_calls(&off, 1);
    assert_false(pthread_equal(off.thread, pthread_self()));
    assert_int_equal(tern_wal_close(w), 0);
}

static void test_cut_and_truncate_before(void **state)
{
    (void)state;
    tern_wal *w = open_wal(4096, 1, true, false);
    append_recs(w, 0, 200);
    uint32_t segs[64];
    size_t n = tern_wal_segments(w, segs, 64);
    assert_true(n >= 5);
    uint32_t cut;
    assert_int_equal(tern_wal_cut(w, &cut), 0);
    assert_int_equal(cut, segs[n - 1] + 1);
    append_recs(w, 200, 3);
    assert_int_equal(tern_wal_truncate_before(w, 3), 0);
    assert_int_equal(tern_wal_segments(w, segs, 64), n + 1 - 2);
    assert_int_equal(segs[0], 3);
    char p[700];
    seg_file(1, p, sizeof p);
    assert_int_equal(access(p, F_OK), -1);
    seg_file(2, p, sizeof p);
    assert_int_equal(access(p, F_OK), -1);
    seg_file(3, p, sizeof p);
    assert_int_equal(access(p, F_OK), 0);
    assert_int_equal(tern_wal_truncate_before(w, cut), 0);
    assert_int_equal(tern_wal_segments(w, segs, 64), 1);
    assert_int_equal(segs[0], cut);
    /* the segment being appended to is never deleted */
    assert_int_equal(tern_wal_truncate_before(w, cut + 100), 0);
    assert_int_equal(tern_wal_segments(w, segs, 64), 1);
    assert_int_equal(tern_wal_close(w), 0);

    collected c;
    assert_int_equal(replay_all(&w, &c, NULL, false), 0);
    expect_recs(&c, 200, 3);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

/* kill -9 of a process in the middle of appending loses nothing it acknowledged. */
static void test_kill9_loses_nothing_acknowledged(void **state)
{
    (void)state;
    int pfd[2];
    assert_int_equal(pipe(pfd), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(pfd[0]);
        tern_wal *w = open_wal(16384, 1, true, false);
        uint8_t buf[512];
        for (uint32_t i = 0;; i++) {
            size_t len = make_rec(buf, sizeof buf, i);
            uint64_t seq;
            if (tern_wal_append(w, buf, len, &seq) != 0 || tern_wal_wait(w, seq) != 0)
                _exit(3);
            if (write(pfd[1], &i, sizeof i) != sizeof i)
                _exit(4);
        }
    }
    close(pfd[1]);
    uint32_t acked = 0, got;
    while (acked < 300 && read(pfd[0], &got, sizeof got) == sizeof got)
        acked = got + 1;
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    while (read(pfd[0], &got, sizeof got) == sizeof got)
        acked = got + 1;
    close(pfd[0]);
    assert_true(acked >= 300);

    tern_wal *w;
    collected c;
    tern_wal_replay_stats st;
    assert_int_equal(replay_all(&w, &c, &st, false), 0);
    assert_true(c.n >= acked);
    expect_recs(&c, 0, c.n);
    assert_int_equal(tern_wal_close(w), 0);
    collected_free(&c);
}

int main(void)
{
    tern_log_set_level(TERN_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip_across_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_appends_to_new_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_callback_error_stops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_append_rejects_bad_lengths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_every_offset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn_tail_then_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_tail_is_torn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unfinished_and_foreign_segments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_middle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_tail_of_older_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_failure_is_sticky, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sync_each_append, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_and_enospc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_appenders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notify_from_sync_thread, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cut_and_truncate_before, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill9_loses_nothing_acknowledged, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * wal.c: the TSDB write-ahead log (see wal.h for the contract, docs/formats/tsdb-wal.md for
 * the bytes).
 *
 * Appends are written (pwritev, under the WAL mutex) straight into the page cache of the
 * current segment. A sync thread makes them durable: one round captures the highest sequence
 * number written, fdatasyncs the segments retired since the last round (then closes them),
 * fsyncs the directory if a segment was created, fdatasyncs the current segment, and only then
 * publishes the captured number as durable. Appends keep going while a round runs, so many
 * threads' records share one fdatasync. A round starts at once when someone waits (or asked to
 * be notified), otherwise group_commit_ms after the first unsynced write. File descriptors are
 * closed only by the sync thread (or by close after joining it), so a round never syncs a
 * descriptor that was closed and reused under it.
 */
#include "tsdb/wal.h"

#include "base/alloc.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#define WAL_HDR_BYTES 16u
#define WAL_REC_HDR_BYTES 8u
#define WAL_VERSION 1u
#define WAL_MIN_SEGMENT_BYTES 4096u
#define WAL_DEFAULT_GROUP_MS 10u
/* Most bytes one resync scan may checksum before it gives up (and reports corruption). */
#define WAL_RESYNC_BUDGET_BYTES (256ull << 20)

static const uint8_t wal_magic[4] = { 'T', 'W', 'A', 'L' };

typedef struct wal_note {
    uint64_t seq;
    void (*cb)(void *arg, int rc);
    void *arg;
} wal_note;

struct tern_wal {
    char *dir;
    int dir_fd;
    tern_wal_options opt;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;    /* the sync thread waits here */
    pthread_cond_t durable_cv; /* tern_wal_wait callers wait here */
    pthread_t thread;
    bool thread_started;

    uint32_t *segs; /* numbers of the segment files present, ascending */
    size_t n_segs, cap_segs;
    bool replayed; /* appends allowed: replay returned 0, or there was nothing to replay */
    bool replay_called;

    int cur_fd; /* segment appended to, -1 before the first append / cut */
    uint32_t cur_segno;
    uint64_t cur_size;
    int *retired; /* descriptors of ended segments, to be synced and closed by the sync thread */
    size_t n_retired, cap_retired;
    bool dir_dirty; /* a segment was created since the last directory fsync */

    uint64_t written_seq;
    uint64_t durable_seq;
    uint64_t first_unsynced_ms; /* when written_seq first passed durable_seq */
    int err;                    /* sticky I/O error: no append, no further durability */
    unsigned n_waiters;
    wal_note *notes;
    size_t n_notes, cap_notes;
    bool stop;
};

void tern_wal_options_default(tern_wal_options *o)
{
    memset(o, 0, sizeof *o);
    o->segment_bytes = TERN_WAL_DEFAULT_SEGMENT_BYTES;
    o->group_commit_ms = WAL_DEFAULT_GROUP_MS;
    o->fsync = true;
    o->skip_corrupt = false;
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void seg_path(const tern_wal *w, uint32_t segno, char *out, size_t cap)
{
    snprintf(out, cap, "%s/%08" PRIu32 ".wal", w->dir, segno);
}

/* write_all_at writes every byte of iov at off, resuming after short writes. 0 or -errno. */
static int write_all_at(int fd, struct iovec *iov, int iovcnt, uint64_t off)
{
    while (iovcnt > 0) {
        ssize_t n = pwritev(fd, iov, iovcnt, (off_t)off);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return TERN_EIO;
        off += (uint64_t)n;
        size_t left = (size_t)n;
        while (iovcnt > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

static int fsync_path_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

static int push_u32(uint32_t **arr, size_t *n, size_t *cap, uint32_t v)
{
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 16;
        uint32_t *bigger = tern_realloc(*arr, ncap * sizeof **arr);
        if (!bigger)
            return TERN_ENOMEM;
        *arr = bigger;
        *cap = ncap;
    }
    (*arr)[(*n)++] = v;
    return 0;
}

static void remove_seg(tern_wal *w, uint32_t segno)
{
    for (size_t i = 0; i < w->n_segs; i++) {
        if (w->segs[i] == segno) {
            memmove(&w->segs[i], &w->segs[i + 1], (w->n_segs - i - 1) * sizeof *w->segs);
            w->n_segs--;
            return;
        }
    }
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- the sync thread ---------------------------------------------------------------------- */

/* fire_notes runs (with mu released) every callback whose outcome is known. mu is held. */
static void fire_notes(tern_wal *w)
{
    for (;;) {
        wal_note ready;
        int rc = 1;
        for (size_t i = 0; i < w->n_notes; i++) {
            if (w->notes[i].seq <= w->durable_seq)
                rc = 0;
            else if (w->err)
                rc = w->err;
            else
                continue;
            ready = w->notes[i];
            w->notes[i] = w->notes[--w->n_notes];
            break;
        }
        if (rc == 1)
            return;
        pthread_mutex_unlock(&w->mu);
        ready.cb(ready.arg, rc);
        pthread_mutex_lock(&w->mu);
    }
}

static bool notes_pending(const tern_wal *w)
{
    for (size_t i = 0; i < w->n_notes; i++)
        if (w->notes[i].seq > w->durable_seq)
            return true;
    return false;
}

static void *sync_main(void *p)
{
    tern_wal *w = p;
    pthread_setname_np(pthread_self(), "tern-tsdb-wal"); /* top -H, bench CPU per stage */
    pthread_mutex_lock(&w->mu);
    for (;;) {
        fire_notes(w);
        bool need_sync
            = !w->err && (w->written_seq > w->durable_seq || w->dir_dirty || w->n_retired > 0);
        bool need_close = w->err && w->n_retired > 0;
        if (!need_sync && !need_close) {
            if (w->stop)
                break;
            pthread_cond_wait(&w->work_cv, &w->mu);
            continue;
        }
        bool urgent = w->stop || need_close || w->n_waiters > 0 || notes_pending(w)
            || w->opt.group_commit_ms == 0 || !w->opt.fsync;
        if (!urgent && w->written_seq > w->durable_seq) {
            uint64_t due = w->first_unsynced_ms + w->opt.group_commit_ms;
            uint64_t now = mono_ms();
            if (now < due) {
                struct timespec ts;
                clock_gettime(CLOCK_MONOTONIC, &ts);
                uint64_t ns = (uint64_t)ts.tv_nsec + (due - now) * 1000000u;
                ts.tv_sec += (time_t)(ns / 1000000000u);
                ts.tv_nsec = (long)(ns % 1000000000u);
                pthread_cond_timedwait(&w->work_cv, &w->mu, &ts);
                continue;
            }
        }
        /* One round: capture, sync without the lock, publish. */
        uint64_t target = w->written_seq;
        size_t n_retired = w->n_retired;
        int retired_local[64];
        if (n_retired > sizeof retired_local / sizeof retired_local[0])
            n_retired = sizeof retired_local / sizeof retired_local[0];
        memcpy(retired_local, w->retired, n_retired * sizeof(int));
        memmove(w->retired, w->retired + n_retired, (w->n_retired - n_retired) * sizeof(int));
        w->n_retired -= n_retired;
        bool more_retired = w->n_retired > 0;
        bool dir_sync = w->dir_dirty;
        w->dir_dirty = false;
        int cur_fd = w->cur_fd;
        bool do_sync = w->opt.fsync && !w->err;
        pthread_mutex_unlock(&w->mu);

        int rc = 0;
        for (size_t i = 0; i < n_retired; i++) {
            if (do_sync && rc == 0 && fdatasync(retired_local[i]) != 0)
                rc = -errno;
            close(retired_local[i]);
        }
        if (do_sync && rc == 0 && dir_sync && fsync(w->dir_fd) != 0)
            rc = -errno;
        /* If older segments are still queued, the current one is synced in a later round. */
        if (do_sync && rc == 0 && !more_retired && cur_fd >= 0 && fdatasync(cur_fd) != 0)
            rc = -errno;

        pthread_mutex_lock(&w->mu);
        if (rc != 0 && !w->err) {
            w->err = rc;
            tern_logf(TERN_LOG_ERROR, "tsdb",
                "wal %s: fsync failed (%s): records after #%" PRIu64
                " are not durable, the WAL refuses appends until reopened",
                w->dir, tern_strerror(rc), w->durable_seq);
            pthread_cond_broadcast(&w->durable_cv);
        } else if (rc == 0 && do_sync == w->opt.fsync && !more_retired && target > w->durable_seq) {
            w->durable_seq = target;
            if (w->written_seq > w->durable_seq)
                w->first_unsynced_ms = mono_ms();
            pthread_cond_broadcast(&w->durable_cv);
        }
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

/* ---- open / close ------------------------------------------------------------------------- */

static int parse_segno(const char *name, uint32_t *out)
{
    size_t n = strlen(name);
    if (n < 5 || n > 14 || strcmp(name + n - 4, ".wal") != 0)
        return TERN_EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n - 4; i++) {
        if (name[i] < '0' || name[i] > '9')
            return TERN_EINVAL;
        v = v * 10 + (uint64_t)(name[i] - '0');
    }
    if (v == 0 || v >= UINT32_MAX)
        return TERN_ERANGE;
    *out = (uint32_t)v;
    return 0;
}

static int list_segments(tern_wal *w)
{
    DIR *d = opendir(w->dir);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        uint32_t segno;
        int prc = parse_segno(e->d_name, &segno);
        if (prc == TERN_ERANGE)
            tern_logf(TERN_LOG_WARN, "tsdb", "wal %s: ignoring %s (segment number out of range)",
                w->dir, e->d_name);
        if (prc != 0)
            continue;
        rc = push_u32(&w->segs, &w->n_segs, &w->cap_segs, segno);
        if (rc != 0)
            break;
    }
    closedir(d);
    if (rc == 0 && w->n_segs > 1)
        qsort(w->segs, w->n_segs, sizeof *w->segs, cmp_u32);
    return rc;
}

static void wal_free(tern_wal *w)
{
    if (w->dir_fd >= 0)
        close(w->dir_fd);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->work_cv);
    pthread_cond_destroy(&w->durable_cv);
    tern_free(w->segs);
    tern_free(w->retired);
    tern_free(w->notes);
    tern_free(w->dir);
    tern_free(w);
}

int tern_wal_open(const char *dir, const tern_wal_options *opt, tern_wal **out)
{
    tern_wal_options o;
    if (opt)
        o = *opt;
    else
        tern_wal_options_default(&o);
    if (o.segment_bytes == 0)
        o.segment_bytes = TERN_WAL_DEFAULT_SEGMENT_BYTES;
    if (!dir || !dir[0] || o.segment_bytes < WAL_MIN_SEGMENT_BYTES)
        return TERN_EINVAL;

    tern_wal *w = tern_calloc(1, sizeof *w);
    if (!w)
        return TERN_ENOMEM;
    w->dir_fd = -1;
    w->cur_fd = -1;
    w->opt = o;
    pthread_mutex_init(&w->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->work_cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&w->durable_cv, NULL);
    int rc = 0;
    w->dir = tern_strdup(dir);
    if (!w->dir) {
        rc = TERN_ENOMEM;
        goto fail;
    }
    if (mkdir(dir, 0755) == 0) {
        if (o.fsync) {
            /* Make the new folder's entry durable in its parent. */
            char parent[PATH_MAX];
            snprintf(parent, sizeof parent, "%s", dir);
            char *slash = strrchr(parent, '/');
            if (slash == parent)
                slash[1] = 0;
            else if (slash)
                *slash = 0;
            else
                snprintf(parent, sizeof parent, ".");
            rc = fsync_path_dir(parent);
            if (rc != 0)
                goto fail;
        }
    } else if (errno != EEXIST) {
        rc = -errno;
        goto fail;
    }
    w->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (w->dir_fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = list_segments(w);
    if (rc != 0)
        goto fail;
    w->replayed = w->n_segs == 0;
    rc = -pthread_create(&w->thread, NULL, sync_main, w);
    if (rc != 0)
        goto fail;
    w->thread_started = true;
    *out = w;
    return 0;
fail:
    wal_free(w);
    return rc;
}

int tern_wal_close(tern_wal *w)
{
    if (!w)
        return 0;
    pthread_mutex_lock(&w->mu);
    w->stop = true;
    pthread_cond_signal(&w->work_cv);
    pthread_mutex_unlock(&w->mu);
    if (w->thread_started)
        pthread_join(w->thread, NULL);
    int rc = w->err;
    if (rc == 0 && w->durable_seq < w->written_seq)
        rc = TERN_EIO;
    for (size_t i = 0; i < w->n_retired; i++)
        close(w->retired[i]);
    if (w->cur_fd >= 0)
        close(w->cur_fd);
    /* Callbacks registered concurrently with close (a misuse) still get an answer. */
    for (size_t i = 0; i < w->n_notes; i++)
        w->notes[i].cb(w->notes[i].arg, w->notes[i].seq <= w->durable_seq ? 0 : TERN_ECLOSED);
    wal_free(w);
    return rc;
}

/* ---- append path -------------------------------------------------------------------------- */

/* start_segment_locked creates the next segment and makes it current. mu is held. */
static int start_segment_locked(tern_wal *w)
{
    uint32_t last = w->n_segs ? w->segs[w->n_segs - 1] : 0;
    if (last >= UINT32_MAX - 1)
        return TERN_ERANGE;
    uint32_t segno = last + 1;
    int rc = 0;
    if (w->n_retired == w->cap_retired) {
        size_t ncap = w->cap_retired ? w->cap_retired * 2 : 8;
        int *bigger = tern_realloc(w->retired, ncap * sizeof *bigger);
        if (!bigger)
            return TERN_ENOMEM;
        w->retired = bigger;
        w->cap_retired = ncap;
    }
    if (w->n_segs == w->cap_segs) {
        /* reserve so that the push below cannot fail after the file exists */
        rc = push_u32(&w->segs, &w->n_segs, &w->cap_segs, 0);
        if (rc != 0)
            return rc;
        w->n_segs--;
    }
    char path[PATH_MAX];
    seg_path(w, segno, path, sizeof path);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return -errno;
    uint8_t hdr[WAL_HDR_BYTES] = { 0 };
    memcpy(hdr, wal_magic, 4);
    hdr[4] = WAL_VERSION;
    put_le32(hdr + 8, segno);
    put_le32(hdr + 12, tern_crc32c(hdr, 12));
    struct iovec iov = { hdr, sizeof hdr };
    rc = write_all_at(fd, &iov, 1, 0);
    if (rc != 0) {
        close(fd);
        unlink(path);
        return rc;
    }
    w->segs[w->n_segs++] = segno;
    if (w->cur_fd >= 0)
        w->retired[w->n_retired++] = w->cur_fd;
    w->cur_fd = fd;
    w->cur_segno = segno;
    w->cur_size = WAL_HDR_BYTES;
    w->dir_dirty = true;
    return 0;
}

int tern_wal_append(tern_wal *w, const void *rec, size_t len, uint64_t *seq)
{
    if (len == 0)
        return TERN_EINVAL;
    if (len > TERN_WAL_MAX_RECORD_BYTES)
        return TERN_ETOOBIG;
    uint8_t hdr[WAL_REC_HDR_BYTES];
    put_le32(hdr, (uint32_t)len);
    put_le32(hdr + 4, tern_crc32c_update(tern_crc32c(hdr, 4), rec, len));

    pthread_mutex_lock(&w->mu);
    int rc = w->err;
    if (rc == 0 && !w->replayed)
        rc = TERN_EINVAL;
    if (rc == 0 && w->stop)
        rc = TERN_ECLOSED;
    uint64_t rec_bytes = WAL_REC_HDR_BYTES + (uint64_t)len;
    if (rc == 0
        && (w->cur_fd < 0
            || (w->cur_size > WAL_HDR_BYTES && w->cur_size + rec_bytes > w->opt.segment_bytes)))
        rc = start_segment_locked(w);
    if (rc == 0) {
        struct iovec iov[2] = { { hdr, sizeof hdr }, { (void *)(uintptr_t)rec, len } };
        rc = write_all_at(w->cur_fd, iov, 2, w->cur_size);
        if (rc != 0) {
            /* Cut the partial record off again; if even that fails the file is suspect. */
            if (ftruncate(w->cur_fd, (off_t)w->cur_size) != 0) {
                w->err = TERN_EIO;
                tern_logf(TERN_LOG_ERROR, "tsdb",
                    "wal %s: write failed (%s) and the partial record could not be cut off"
                    " (%s): the WAL refuses appends until reopened",
                    w->dir, tern_strerror(rc), tern_strerror(-errno));
                pthread_cond_broadcast(&w->durable_cv);
                pthread_cond_signal(&w->work_cv);
            }
        }
    }
    uint64_t my_seq = 0;
    if (rc == 0) {
        w->cur_size += rec_bytes;
        my_seq = ++w->written_seq;
        /* The sync thread sleeps without a deadline only when nothing is unsynced (or after a
         * segment change): waking it for every append of a group costs more than the append. */
        bool wake = my_seq == w->durable_seq + 1 || w->dir_dirty || w->n_retired > 0;
        if (!w->opt.fsync)
            w->durable_seq = w->written_seq;
        else if (my_seq == w->durable_seq + 1)
            w->first_unsynced_ms = mono_ms();
        if (wake)
            pthread_cond_signal(&w->work_cv);
    }
    pthread_mutex_unlock(&w->mu);
    if (rc == 0 && w->opt.fsync && w->opt.group_commit_ms == 0)
        rc = tern_wal_wait(w, my_seq);
    if (rc == 0)
        *seq = my_seq;
    return rc;
}

int tern_wal_wait(tern_wal *w, uint64_t seq)
{
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    if (seq > w->written_seq) {
        rc = TERN_EINVAL;
    } else if (seq > w->durable_seq) {
        w->n_waiters++;
        pthread_cond_signal(&w->work_cv);
        while (seq > w->durable_seq && !w->err)
            pthread_cond_wait(&w->durable_cv, &w->mu);
        w->n_waiters--;
        rc = seq <= w->durable_seq ? 0 : w->err;
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int tern_wal_notify(tern_wal *w, uint64_t seq, void (*cb)(void *arg, int rc), void *arg)
{
    TERN_ASSERT(cb != NULL);
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    if (seq > w->written_seq) {
        rc = TERN_EINVAL;
    } else if (w->n_notes == w->cap_notes) {
        size_t ncap = w->cap_notes ? w->cap_notes * 2 : 16;
        wal_note *bigger = tern_realloc(w->notes, ncap * sizeof *bigger);
        if (!bigger)
            rc = TERN_ENOMEM;
        else {
            w->notes = bigger;
            w->cap_notes = ncap;
        }
    }
    if (rc == 0) {
        w->notes[w->n_notes++] = (wal_note) { seq, cb, arg };
        pthread_cond_signal(&w->work_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int tern_wal_cut(tern_wal *w, uint32_t *new_segno)
{
    pthread_mutex_lock(&w->mu);
    int rc = w->err;
    if (rc == 0 && !w->replayed)
        rc = TERN_EINVAL;
    if (rc == 0)
        rc = start_segment_locked(w);
    if (rc == 0) {
        *new_segno = w->cur_segno;
        pthread_cond_signal(&w->work_cv);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

int tern_wal_truncate_before(tern_wal *w, uint32_t segno)
{
    pthread_mutex_lock(&w->mu);
    int rc = 0;
    while (rc == 0 && w->n_segs > 0 && w->segs[0] < segno) {
        uint32_t victim = w->segs[0];
        if (w->cur_fd >= 0 && victim == w->cur_segno)
            break;
        char path[PATH_MAX];
        seg_path(w, victim, path, sizeof path);
        if (unlink(path) != 0 && errno != ENOENT) {
            rc = -errno;
            break;
        }
        remove_seg(w, victim);
    }
    pthread_mutex_unlock(&w->mu);
    return rc;
}

size_t tern_wal_segments(tern_wal *w, uint32_t *out, size_t max)
{
    pthread_mutex_lock(&w->mu);
    size_t n = w->n_segs;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = w->segs[i];
    pthread_mutex_unlock(&w->mu);
    return n;
}

/* ---- replay ------------------------------------------------------------------------------- */

/* record_at checks the record at off: returns its total size, or 0 and a reason if broken. */
static size_t record_at(const uint8_t *p, size_t size, size_t off, const char **why)
{
    size_t left = size - off;
    if (left < WAL_REC_HDR_BYTES) {
        *why = "incomplete record header";
        return 0;
    }
    uint32_t len = get_le32(p + off);
    if (len == 0 || len > TERN_WAL_MAX_RECORD_BYTES) {
        *why = "impossible record length";
        return 0;
    }
    if (len > left - WAL_REC_HDR_BYTES) {
        *why = "record runs past the end of the file";
        return 0;
    }
    uint32_t crc = tern_crc32c_update(tern_crc32c(p + off, 4), p + off + WAL_REC_HDR_BYTES, len);
    if (crc != get_le32(p + off + 4)) {
        *why = "record CRC-32C mismatch";
        return 0;
    }
    return WAL_REC_HDR_BYTES + len;
}

/*
 * next_intact returns the first offset >= from where an intact record starts, or size if
 * there is none; *gave_up is set if the checksum budget ran out before the end was reached.
 */
static size_t next_intact(const uint8_t *p, size_t size, size_t from, bool *gave_up)
{
    uint64_t budget = WAL_RESYNC_BUDGET_BYTES;
    *gave_up = false;
    for (size_t off = from; off + WAL_REC_HDR_BYTES < size; off++) {
        uint32_t len = get_le32(p + off);
        if (len == 0 || len > size - off - WAL_REC_HDR_BYTES)
            continue;
        if (len > budget) {
            *gave_up = true;
            return size;
        }
        budget -= len;
        const char *why;
        if (record_at(p, size, off, &why) != 0)
            return off;
    }
    return size;
}

static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return false;
    return true;
}

static void set_msg(tern_wal_replay_stats *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void set_msg(tern_wal_replay_stats *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->message, sizeof st->message, fmt, ap);
    va_end(ap);
}

/* drop_unfinished removes a last segment whose header was never completely written. */
static int drop_unfinished(
    tern_wal *w, const char *path, uint32_t segno, size_t size, tern_wal_replay_stats *st)
{
    if (unlink(path) != 0)
        return -errno;
    if (w->opt.fsync && fsync(w->dir_fd) != 0)
        return -errno;
    pthread_mutex_lock(&w->mu);
    remove_seg(w, segno);
    pthread_mutex_unlock(&w->mu);
    st->torn_tail = true;
    st->torn_segno = segno;
    st->torn_offset = 0;
    st->torn_bytes = size;
    set_msg(
        st, "segment %s: unfinished segment (%zu bytes, no complete header) removed", path, size);
    tern_logf(TERN_LOG_WARN, "tsdb", "wal %s", st->message);
    return 0;
}

static int cut_tail(tern_wal *w, const char *path, uint64_t keep)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = 0;
    if (ftruncate(fd, (off_t)keep) != 0)
        rc = -errno;
    else if (w->opt.fsync && fdatasync(fd) != 0)
        rc = -errno;
    close(fd);
    return rc;
}

static int replay_segment(tern_wal *w, uint32_t segno, bool last, tern_wal_replay_fn fn, void *arg,
    tern_wal_replay_stats *st)
{
    char path[PATH_MAX];
    seg_path(w, segno, path, sizeof path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    size_t size = (size_t)sb.st_size;
    if (st->n_segments++ == 0)
        st->first_segno = segno;
    st->last_segno = segno;
    if (size < WAL_HDR_BYTES) {
        close(fd);
        if (last)
            return drop_unfinished(w, path, segno, size, st);
        set_msg(st, "segment %s offset 0: file of %zu bytes is shorter than a segment header", path,
            size);
        tern_logf(TERN_LOG_ERROR, "tsdb", "wal %s", st->message);
        return TERN_ECORRUPT;
    }
    const uint8_t *p = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int rc = p == MAP_FAILED ? -errno : 0;
    close(fd);
    if (rc != 0)
        return rc;

    size_t cut_at = SIZE_MAX; /* torn tail: keep bytes [0, cut_at) */
    bool magic_ok = memcmp(p, wal_magic, 4) == 0;
    if (magic_ok && p[4] != WAL_VERSION) {
        set_msg(st, "segment %s offset 4: unsupported format version %u", path, p[4]);
        tern_logf(TERN_LOG_ERROR, "tsdb", "wal %s", st->message);
        rc = TERN_EVERSION;
        goto done;
    }
    if (!magic_ok || get_le32(p + 12) != tern_crc32c(p, 12) || get_le32(p + 8) != segno) {
        if (last && all_zero(p, size)) {
            munmap((void *)(uintptr_t)p, size);
            return drop_unfinished(w, path, segno, size, st);
        }
        set_msg(st, "segment %s offset 0: bad segment header (magic, CRC-32C or number)", path);
        tern_logf(TERN_LOG_ERROR, "tsdb", "wal %s", st->message);
        rc = TERN_ECORRUPT;
        goto done;
    }
    size_t off = WAL_HDR_BYTES;
    while (off < size) {
        const char *why = NULL;
        size_t n = record_at(p, size, off, &why);
        if (n != 0) {
            rc = fn(arg, p + off + WAL_REC_HDR_BYTES, n - WAL_REC_HDR_BYTES);
            if (rc != 0)
                goto done;
            st->n_records++;
            st->n_payload_bytes += n - WAL_REC_HDR_BYTES;
            off += n;
            continue;
        }
        bool gave_up;
        size_t next = next_intact(p, size, off + 1, &gave_up);
        if (last && next == size && !gave_up) {
            st->torn_tail = true;
            st->torn_segno = segno;
            st->torn_offset = off;
            st->torn_bytes = size - off;
            set_msg(st, "segment %s offset %zu: torn tail (%s), %zu bytes cut off", path, off, why,
                size - off);
            tern_logf(TERN_LOG_WARN, "tsdb", "wal %s", st->message);
            cut_at = off;
            break;
        }
        if (!w->opt.skip_corrupt) {
            const char *where = !last ? "in a segment that is not the last one"
                : gave_up             ? "and the rest of the file is too damaged to check"
                                      : "and intact records follow it";
            set_msg(st,
                "segment %s offset %zu: %s, %s: the WAL is corrupt in the middle (set"
                " skip_corrupt to skip damaged records)",
                path, off, why, where);
            tern_logf(TERN_LOG_ERROR, "tsdb", "wal %s", st->message);
            rc = TERN_ECORRUPT;
            goto done;
        }
        st->n_corrupt++;
        st->corrupt_bytes += next - off;
        set_msg(
            st, "segment %s offset %zu: %s: %zu damaged bytes skipped", path, off, why, next - off);
        tern_logf(TERN_LOG_WARN, "tsdb", "wal %s", st->message);
        off = next;
    }
done:
    munmap((void *)(uintptr_t)p, size);
    if (rc == 0 && cut_at != SIZE_MAX)
        rc = cut_tail(w, path, cut_at);
    return rc;
}

int tern_wal_replay(tern_wal *w, tern_wal_replay_fn fn, void *arg, tern_wal_replay_stats *stats)
{
    tern_wal_replay_stats st;
    memset(&st, 0, sizeof st);
    pthread_mutex_lock(&w->mu);
    bool misuse = w->replay_called || w->cur_fd >= 0;
    w->replay_called = true;
    size_t n = w->n_segs;
    uint32_t *segs = n ? tern_malloc(n * sizeof *segs) : NULL;
    if (segs)
        memcpy(segs, w->segs, n * sizeof *segs);
    pthread_mutex_unlock(&w->mu);
    int rc = 0;
    if (misuse)
        rc = TERN_EINVAL;
    else if (n && !segs)
        rc = TERN_ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = replay_segment(w, segs[i], i + 1 == n, fn, arg, &st);
    tern_free(segs);
    if (rc == 0) {
        pthread_mutex_lock(&w->mu);
        w->replayed = true;
        pthread_mutex_unlock(&w->mu);
    }
    if (stats)
        *stats = st;
    return rc;
}

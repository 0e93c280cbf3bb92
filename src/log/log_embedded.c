/*
 * log_embedded.c: the embedded backend of the log API (log.h): partitioned segment files under
 * one data directory, a log I/O thread that batches appends, and an in-process consumer-group
 * coordinator. On-disk format: docs/formats/log.md.
 *
 * Write path: tern_log_append encodes the record into its partition's pending batch under the
 * partition's mutex (the offset is assigned there, so offsets follow call order) and returns.
 * The I/O thread runs a cycle at most every group_commit_ms (GROUP) or as soon as something is
 * pending (ALWAYS): it takes every pending batch and writes each with one pwrite, then hands
 * the cycle to the sync thread (tern-log-sync), which fdatasyncs each written partition while
 * the I/O thread goes on writing the next cycle. Before handing on cycle N+1, the I/O thread
 * waits for cycle N's fsyncs; only then does it publish cycle N's batches to readers and run
 * its callbacks, in cycle and offset order, so a callback still means "after the fsync that
 * covers it" (with ALWAYS too: every batch gets its own partition fsync before its callbacks).
 * A failed write or fsync completes that batch's appends with TERN_EIO and truncates the
 * segment back to its durable size; a batch of the next cycle already written behind a batch
 * whose fsync failed is cut by that truncation and fails with TERN_EIO too (never reported
 * durable). The next cycle writes normally. Anything that needs the partition quiet (rolling
 * a segment, a truncation) first waits for the cycle being synced; a flush or close waits for
 * both cycles.
 * Limits: pending bytes above 64 MiB -> TERN_EAGAIN; segments + pending above
 * disk_budget_bytes -> TERN_EQUOTA, refused at once.
 *
 * Reads: consumers pread batches through the sparse index, verify the CRC, decode into a
 * per-partition buffer and return messages that stay valid until the next poll. Only durable
 * records are visible; a poll waits on a condition variable the I/O thread signals.
 *
 * Groups: members join on consumer_open and leave on close; every change bumps the group's
 * generation and each member recomputes its range assignment on its next call. Committed
 * offsets are rewritten atomically to DIR/groups/<group>.
 *
 * Lock order: topics_lock -> gmu -> pmu / smu; mu, sync_mu and data_mu are leaves.
 */
#include "log/embedded_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/hash.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>
#include <zstd.h>

#define PENDING_LIMIT_BYTES (64u << 20)
#define MAX_RECORD_BYTES (40u << 20)
#define MAX_SEGMENT_BYTES (UINT64_C(1) << 30)
#define RETENTION_EVERY_MS 1000
#define ZSTD_LEVEL 1

typedef struct emb_topic {
    char *name;
    char *dir;
    uint32_t n_partitions;
    tern_emb_part *parts;
    _Atomic uint32_t rr; /* round-robin partition for records without a key */
} emb_topic;

struct emb_consumer;

typedef struct emb_group {
    char *name;
    struct emb_consumer **members; /* in join order */
    size_t n_members, cap_members;
    tern_emb_commit *commits;
    size_t n_commits, cap_commits;
    uint64_t generation;
} emb_group;

/* One batch taken from a partition by an I/O cycle. */
typedef struct emb_inflight {
    tern_emb_part *part;
    tern_buf buf;
    uint32_t count;
    int64_t base, first_ts, max_ts;
    uint64_t pend_bytes;
    tern_emb_cb *cbs;
    size_t n_cbs, cap_cbs;
    tern_emb_seg *seg;
    uint64_t pos;
    tern_emb_batch_hdr h;
    int status; /* write, then fsync (set by the sync thread while the cycle is synced) */
    bool rolled;
    bool syncing; /* written and handed to the sync thread: status holds the fsync's result */
} emb_inflight;

/* The batches of one I/O cycle (two of them: one being written, one being synced). */
typedef struct emb_cycle {
    emb_inflight *f;
    size_t n, cap;
} emb_cycle;

typedef struct emb_log {
    struct tern_log base;
    tern_log_config cfg;
    char *dir, *topics_dir, *groups_dir;

    pthread_rwlock_t topics_lock;
    emb_topic **topics;
    size_t n_topics, cap_topics;
    _Atomic(emb_topic *) last_topic; /* find_topic's last hit (never freed before the log) */

    /* I/O thread control */
    pthread_mutex_t mu;
    pthread_cond_t io_cv, done_cv;
    uint64_t flush_req, flush_done;
    bool io_exited;
    atomic_bool kicked;
    atomic_bool closing;
    pthread_t io_thread;
    int lock_fd; /* DIR/lock, held with flock(LOCK_EX) while open: one process per log */
    _Atomic uint64_t pending_bytes;
    _Atomic uint64_t disk_bytes;
    emb_cycle cycles[2]; /* I/O thread only, except the one handed to the sync thread */
    emb_cycle *syncing;  /* the cycle whose fsyncs were handed on, NULL: none */

    /* The sync thread fdatasyncs the job's batches while the I/O thread writes the next. */
    pthread_mutex_t sync_mu;
    pthread_cond_t sync_cv;
    emb_cycle *sync_job; /* set by the I/O thread, cleared by the sync thread when done */
    bool sync_quit;
    bool have_sync_thread; /* false: the I/O thread syncs itself (thread creation failed) */
    pthread_t sync_thread;
    tern_buf zbuf;
    ZSTD_CCtx *zctx;
    uint64_t last_retention_ms;

    /* readers wait here for durable data */
    pthread_mutex_t data_mu;
    pthread_cond_t data_cv;
    uint64_t data_seq;

    /* groups */
    pthread_mutex_t gmu;
    emb_group **groups;
    size_t n_groups, cap_groups;
} emb_log;

typedef struct emb_cursor {
    emb_topic *topic;
    tern_emb_part *part;
    bool owned, stuck;
    int64_t pos; /* next offset to return */
    tern_emb_hint hint;
    bool have_batch;
    uint64_t used_in_poll; /* poll number that returned messages pointing into raw/dec */
    tern_buf raw, dec;
    tern_emb_batch_hdr h;
    tern_reader rd;
    uint32_t next_index;
} emb_cursor;

typedef struct emb_consumer {
    struct tern_log_consumer base;
    emb_log *log;
    emb_group *group;
    int64_t start;
    emb_cursor *cursors;
    size_t n_cursors;
    emb_topic **topics;
    size_t n_topics;
    uint64_t seen_generation;
    uint64_t poll_no;
    tern_buf *retired;
    size_t n_retired, cap_retired;
    tern_log_header *hdrs;
    size_t n_hdrs, cap_hdrs;
    size_t rr;
    int deferred_err;
} emb_consumer;

/* ---- helpers ----------------------------------------------------------------------------------
 */

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void deadline_ts(struct timespec *ts, uint64_t at_ms)
{
    ts->tv_sec = (time_t)(at_ms / 1000u);
    ts->tv_nsec = (long)(at_ms % 1000u) * 1000000L;
}

static int cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    int rc = pthread_cond_init(cv, &a);
    pthread_condattr_destroy(&a);
    return rc == 0 ? 0 : TERN_ENOMEM;
}

static int mkdir_p(const char *path)
{
    char *p = tern_strdup(path);
    if (!p)
        return TERN_ENOMEM;
    int rc = 0;
    for (char *s = p + 1; *s && rc == 0; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        rc = tern_log__mkdir(p);
        *s = '/';
    }
    if (rc == 0)
        rc = tern_log__mkdir(p);
    tern_free(p);
    return rc;
}

static emb_topic *find_topic_locked(emb_log *L, const char *name)
{
    for (size_t i = 0; i < L->n_topics; i++)
        if (strcmp(L->topics[i]->name, name) == 0)
            return L->topics[i];
    return NULL;
}

/* Topics are never freed before the log, so the pointer stays valid after the lock. The last
 * topic found is remembered: appends mostly go to one topic, and its name never changes, so a
 * hit needs no lock (the read lock per append was 6% of a producer's CPU). */
static emb_topic *find_topic(emb_log *L, const char *name)
{
    emb_topic *last = atomic_load_explicit(&L->last_topic, memory_order_acquire);
    if (last && strcmp(last->name, name) == 0)
        return last;
    pthread_rwlock_rdlock(&L->topics_lock);
    emb_topic *t = find_topic_locked(L, name);
    pthread_rwlock_unlock(&L->topics_lock);
    if (t)
        atomic_store_explicit(&L->last_topic, t, memory_order_release);
    return t;
}

static void notify_readers(emb_log *L)
{
    pthread_mutex_lock(&L->data_mu);
    L->data_seq++;
    pthread_cond_broadcast(&L->data_cv);
    pthread_mutex_unlock(&L->data_mu);
}

/* ---- topics -----------------------------------------------------------------------------------
 */

#define META_BYTES 16

static void topic_free(emb_topic *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; t->parts && i < t->n_partitions; i++) {
        tern_emb_part *p = &t->parts[i];
        tern_log__part_close(p);
        tern_buf_free(&p->pend);
        tern_free(p->pend_cbs);
        tern_free(p->dir);
        pthread_mutex_destroy(&p->pmu);
        pthread_mutex_destroy(&p->smu);
    }
    tern_free(t->parts);
    tern_free(t->dir);
    tern_free(t->name);
    tern_free(t);
}

/* topic_load opens every partition of a topic whose folder and meta exist (or were just made). */
static int topic_load(emb_log *L, const char *name, uint32_t n_partitions, emb_topic **out)
{
    emb_topic *t = tern_calloc(1, sizeof *t);
    if (!t)
        return TERN_ENOMEM;
    int rc = TERN_ENOMEM;
    t->name = tern_strdup(name);
    t->dir = tern_log__path(L->topics_dir, name);
    t->parts = tern_calloc(n_partitions, sizeof *t->parts);
    if (!t->name || !t->dir || !t->parts)
        goto fail;
    t->n_partitions = 0;
    for (uint32_t i = 0; i < n_partitions; i++) {
        tern_emb_part *p = &t->parts[i];
        char num[16];
        snprintf(num, sizeof num, "%" PRIu32, i);
        p->topic = (struct tern_emb_topic *)t;
        p->id = i;
        p->counters = &L->base.counters;
        p->disk_bytes = &L->disk_bytes;
        pthread_mutex_init(&p->pmu, NULL);
        pthread_mutex_init(&p->smu, NULL);
        t->n_partitions = i + 1;
        p->dir = tern_log__path(t->dir, num);
        if (!p->dir) {
            rc = TERN_ENOMEM;
            goto fail;
        }
        rc = tern_log__part_open(p, p->dir);
        if (rc != 0) {
            tern_log__error("cannot open partition %s: %s", p->dir, tern_strerror(rc));
            goto fail;
        }
    }
    *out = t;
    return 0;
fail:
    topic_free(t);
    return rc;
}

static int topics_push(emb_log *L, emb_topic *t)
{
    if (L->n_topics == L->cap_topics) {
        size_t cap = L->cap_topics ? L->cap_topics * 2 : 8;
        emb_topic **n = tern_realloc(L->topics, cap * sizeof *n);
        if (!n)
            return TERN_ENOMEM;
        L->topics = n;
        L->cap_topics = cap;
    }
    L->topics[L->n_topics++] = t;
    return 0;
}

static int read_meta(const char *topic_dir, uint32_t *n_partitions)
{
    char *path = tern_log__path(topic_dir, "meta");
    if (!path)
        return TERN_ENOMEM;
    uint8_t m[META_BYTES + 1];
    FILE *f = fopen(path, "rb");
    tern_free(path);
    if (!f)
        return -errno;
    size_t n = fread(m, 1, sizeof m, f);
    fclose(f);
    tern_reader r;
    uint32_t crc, np;
    tern_reader_init(&r, m + 8, 8);
    tern_reader_le32(&r, &np);
    tern_reader_le32(&r, &crc);
    if (n != META_BYTES || memcmp(m, "TLTM", 4) != 0 || crc != tern_crc32c(m, 12) || np == 0
        || np > 100000)
        return TERN_ECORRUPT;
    if (m[4] != 1)
        return TERN_EVERSION;
    *n_partitions = np;
    return 0;
}

static int write_meta(const char *topic_dir, uint32_t n_partitions)
{
    uint8_t m[META_BYTES] = { 'T', 'L', 'T', 'M', 1, 0, 0, 0 };
    for (int i = 0; i < 4; i++)
        m[8 + i] = (uint8_t)(n_partitions >> (8 * i));
    uint32_t crc = tern_crc32c(m, 12);
    for (int i = 0; i < 4; i++)
        m[12 + i] = (uint8_t)(crc >> (8 * i));
    char *path = tern_log__path(topic_dir, "meta");
    if (!path)
        return TERN_ENOMEM;
    int rc = tern_log__write_atomic(topic_dir, path, m, sizeof m);
    tern_free(path);
    return rc;
}

static int e_create_topic(tern_log *log, const char *topic, uint32_t n_partitions)
{
    emb_log *L = (emb_log *)log;
    pthread_rwlock_wrlock(&L->topics_lock);
    emb_topic *t = find_topic_locked(L, topic);
    int rc = 0;
    char *dir = NULL;
    if (t) {
        rc = t->n_partitions == n_partitions ? 0 : TERN_EEXIST;
        goto out;
    }
    dir = tern_log__path(L->topics_dir, topic);
    if (!dir) {
        rc = TERN_ENOMEM;
        goto out;
    }
    if ((rc = tern_log__mkdir(dir)) != 0)
        goto out;
    if ((rc = topic_load(L, topic, n_partitions, &t)) != 0)
        goto out;
    rc = write_meta(dir, n_partitions);
    if (rc == 0)
        rc = tern_log__fsync_dir(L->topics_dir);
    if (rc == 0)
        rc = topics_push(L, t);
    if (rc != 0)
        topic_free(t);
out:
    pthread_rwlock_unlock(&L->topics_lock);
    tern_free(dir);
    return rc;
}

static int e_list_topics(tern_log *log, char ***names, size_t *n)
{
    emb_log *L = (emb_log *)log;
    int rc = 0;
    pthread_rwlock_rdlock(&L->topics_lock);
    size_t count = L->n_topics;
    char **v = tern_calloc(count ? count : 1, sizeof *v);
    for (size_t i = 0; v && i < count; i++) {
        if (!(v[i] = tern_strdup(L->topics[i]->name))) {
            tern_log_free_topics(v, i);
            v = NULL;
        }
    }
    pthread_rwlock_unlock(&L->topics_lock);
    if (!v)
        rc = TERN_ENOMEM;
    else {
        *names = v;
        *n = count;
    }
    return rc;
}

static int e_partition_count(tern_log *log, const char *topic, uint32_t *n)
{
    emb_topic *t = find_topic((emb_log *)log, topic);
    if (!t)
        return TERN_ENOTFOUND;
    *n = t->n_partitions;
    return 0;
}

static int e_offsets(
    tern_log *log, const char *topic, uint32_t partition, int64_t *earliest, int64_t *latest)
{
    emb_topic *t = find_topic((emb_log *)log, topic);
    if (!t)
        return TERN_ENOTFOUND;
    if (partition >= t->n_partitions)
        return TERN_EINVAL;
    int64_t lo, hi;
    tern_log__part_offsets(&t->parts[partition], &lo, &hi);
    if (earliest)
        *earliest = lo;
    if (latest)
        *latest = hi;
    return 0;
}

/* ---- append -----------------------------------------------------------------------------------
 */

static int e_append(tern_log *log, const char *topic, int32_t partition, const tern_log_record *rec,
    tern_log_append_cb cb, void *opaque)
{
    emb_log *L = (emb_log *)log;
    if (atomic_load(&L->closing))
        return TERN_ECLOSED;
    emb_topic *t = find_topic(L, topic);
    if (!t)
        return TERN_ENOTFOUND;
    for (size_t i = 0; i < rec->n_headers; i++)
        if (!rec->headers || !rec->headers[i].name
            || (rec->headers[i].value_len && !rec->headers[i].value))
            return TERN_EINVAL;
    uint32_t pid;
    if (partition >= 0) {
        if ((uint32_t)partition >= t->n_partitions)
            return TERN_EINVAL;
        pid = (uint32_t)partition;
    } else if (rec->key) {
        pid = tern_log_partition_for_key(rec->key, rec->key_len, t->n_partitions);
    } else {
        pid = atomic_fetch_add(&t->rr, 1) % t->n_partitions;
    }
    tern_emb_part *p = &t->parts[pid];
    int64_t ts = rec->ts_ms ? rec->ts_ms : tern_clock_now_ms();
    int rc = 0;

    pthread_mutex_lock(&p->pmu);
    if (atomic_load(&L->closing)) {
        rc = TERN_ECLOSED;
        goto out;
    }
    uint32_t delta = p->pend_count;
    int64_t ts_delta = delta ? (int64_t)((uint64_t)ts - (uint64_t)p->pend_first_ts) : 0;
    size_t size = tern_log__record_size(rec, delta, ts_delta);
    if (size > MAX_RECORD_BYTES) {
        rc = TERN_EINVAL;
        goto out;
    }
    uint64_t extra = size + (delta == 0 ? TERN_EMB_BATCH_HDR : 0);
    uint64_t before = atomic_fetch_add(&L->pending_bytes, extra);
    if (L->cfg.disk_budget_bytes
        && atomic_load(&L->disk_bytes) + before + extra > L->cfg.disk_budget_bytes) {
        rc = TERN_EQUOTA;
    } else if (before + extra > PENDING_LIMIT_BYTES) {
        rc = TERN_EAGAIN;
    } else if (cb && p->n_pend_cbs == p->cap_pend_cbs) {
        size_t cap = p->cap_pend_cbs ? p->cap_pend_cbs * 2 : 64;
        tern_emb_cb *n = tern_realloc(p->pend_cbs, cap * sizeof *n);
        if (!n)
            rc = TERN_ENOMEM;
        else {
            p->pend_cbs = n;
            p->cap_pend_cbs = cap;
        }
    }
    if (rc == 0 && delta == 0) {
        static const uint8_t zero[TERN_EMB_BATCH_HDR];
        tern_buf_reset(&p->pend);
        if (tern_buf_append(&p->pend, zero, sizeof zero) != 0)
            rc = TERN_ENOMEM;
        p->pend_base = p->next_offset;
        p->pend_first_ts = p->pend_max_ts = ts;
    }
    size_t old_len = p->pend.len;
    if (rc == 0 && tern_log__record_encode(&p->pend, rec, delta, ts_delta) != 0) {
        p->pend.len = old_len;
        rc = TERN_ENOMEM;
    }
    if (rc != 0) {
        atomic_fetch_sub(&L->pending_bytes, extra);
        goto out;
    }
    if (cb)
        p->pend_cbs[p->n_pend_cbs++] = (tern_emb_cb) { cb, opaque, p->next_offset };
    p->next_offset++;
    p->pend_count++;
    p->pend_bytes += extra;
    if (ts > p->pend_max_ts)
        p->pend_max_ts = ts;
out:
    pthread_mutex_unlock(&p->pmu);
    if (rc == 0 && !atomic_load(&L->kicked) && !atomic_exchange(&L->kicked, true)) {
        pthread_mutex_lock(&L->mu);
        pthread_cond_signal(&L->io_cv);
        pthread_mutex_unlock(&L->mu);
    }
    return rc;
}

/* ---- the I/O thread ---------------------------------------------------------------------------
 */

static int inflight_reserve(emb_cycle *c, size_t n)
{
    if (n <= c->cap)
        return 0;
    emb_inflight *a = tern_realloc(c->f, n * sizeof *a);
    if (!a)
        return TERN_ENOMEM;
    memset(a + c->cap, 0, (n - c->cap) * sizeof *a);
    c->f = a;
    c->cap = n;
    return 0;
}

/* take_pending moves every partition's pending batch into c; returns how many. */
static size_t take_pending(emb_log *L, emb_cycle *c)
{
    size_t n = 0;
    pthread_rwlock_rdlock(&L->topics_lock);
    size_t total = 0;
    for (size_t i = 0; i < L->n_topics; i++)
        total += L->topics[i]->n_partitions;
    if (inflight_reserve(c, total) != 0) {
        pthread_rwlock_unlock(&L->topics_lock);
        return 0; /* retried next cycle */
    }
    for (size_t i = 0; i < L->n_topics; i++) {
        emb_topic *t = L->topics[i];
        for (uint32_t j = 0; j < t->n_partitions; j++) {
            tern_emb_part *p = &t->parts[j];
            pthread_mutex_lock(&p->pmu);
            if (p->pend_count == 0) {
                pthread_mutex_unlock(&p->pmu);
                continue;
            }
            emb_inflight *f = &c->f[n++];
            tern_buf spare = f->buf;
            tern_emb_cb *spare_cbs = f->cbs;
            size_t spare_cap = f->cap_cbs;
            f->part = p;
            f->buf = p->pend;
            f->count = p->pend_count;
            f->base = p->pend_base;
            f->first_ts = p->pend_first_ts;
            f->max_ts = p->pend_max_ts;
            f->pend_bytes = p->pend_bytes;
            f->cbs = p->pend_cbs;
            f->n_cbs = p->n_pend_cbs;
            f->cap_cbs = p->cap_pend_cbs;
            tern_buf_reset(&spare);
            p->pend = spare;
            p->pend_cbs = spare_cbs;
            p->cap_pend_cbs = spare_cap;
            p->n_pend_cbs = 0;
            p->pend_count = 0;
            p->pend_bytes = 0;
            pthread_mutex_unlock(&p->pmu);
        }
    }
    pthread_rwlock_unlock(&L->topics_lock);
    return n;
}

/* seal_batch fills the header (compressing the records when that saves bytes) and returns the
 * bytes to write. */
static const uint8_t *seal_batch(emb_log *L, emb_inflight *f)
{
    size_t rlen = f->buf.len - TERN_EMB_BATCH_HDR;
    tern_emb_batch_hdr *h = &f->h;
    memset(h, 0, sizeof *h);
    h->base_offset = f->base;
    h->count = f->count;
    h->first_ts_ms = f->first_ts;
    h->max_ts_ms = f->max_ts;
    h->records_len = (uint32_t)rlen;
    uint8_t *out = f->buf.data;
    h->attributes = 0;
    h->length = (uint32_t)(rlen + TERN_EMB_BATCH_OVERHEAD);
    if (L->cfg.compress && L->zctx) {
        size_t bound = ZSTD_compressBound(rlen);
        tern_buf_reset(&L->zbuf);
        if (tern_buf_reserve(&L->zbuf, TERN_EMB_BATCH_HDR + bound) == 0) {
            size_t clen = ZSTD_compressCCtx(L->zctx, L->zbuf.data + TERN_EMB_BATCH_HDR, bound,
                f->buf.data + TERN_EMB_BATCH_HDR, rlen, ZSTD_LEVEL);
            if (!ZSTD_isError(clen) && clen < rlen) {
                out = L->zbuf.data;
                h->attributes = TERN_EMB_ATTR_ZSTD;
                h->length = (uint32_t)(clen + TERN_EMB_BATCH_OVERHEAD);
            }
        }
    }
    tern_log__batch_put_header(out, h);
    return out;
}

static void complete(emb_log *L, emb_inflight *f)
{
    tern_emb_part *p = f->part;
    for (size_t i = 0; i < f->n_cbs; i++)
        f->cbs[i].cb(f->cbs[i].opaque, f->status == 0 ? 0 : TERN_EIO, p->id,
            f->status == 0 ? f->cbs[i].offset : -1);
    if (f->status != 0)
        atomic_fetch_add(&L->base.counters.append_errors, f->count);
    atomic_fetch_sub(&L->pending_bytes, f->pend_bytes);
    f->n_cbs = 0;
    /* Hand the buffers back to the partition if it has none yet (saves regrowing them). */
    pthread_mutex_lock(&p->pmu);
    if (!p->pend.data) {
        tern_buf_reset(&f->buf);
        p->pend = f->buf;
        f->buf = (tern_buf)TERN_BUF_INIT;
    }
    pthread_mutex_unlock(&p->pmu);
}

static void run_retention(emb_log *L)
{
    if (L->cfg.retention_ms <= 0 && L->cfg.retention_bytes == 0)
        return;
    int64_t now = tern_clock_now_ms();
    pthread_rwlock_rdlock(&L->topics_lock);
    for (size_t i = 0; i < L->n_topics; i++)
        for (uint32_t j = 0; j < L->topics[i]->n_partitions; j++)
            tern_log__part_retention(
                &L->topics[i]->parts[j], now, L->cfg.retention_ms, L->cfg.retention_bytes);
    pthread_rwlock_unlock(&L->topics_lock);
}

/* sync_batches fdatasyncs every batch of c handed on (syncing). */
static void sync_batches(emb_cycle *c)
{
    for (size_t i = 0; i < c->n; i++) {
        emb_inflight *f = &c->f[i];
        if (f->syncing)
            f->status = tern_log__part_sync(f->part, f->seg);
    }
}

static void *sync_main(void *arg)
{
    emb_log *L = arg;
    pthread_setname_np(pthread_self(), "tern-log-sync");
    pthread_mutex_lock(&L->sync_mu);
    for (;;) {
        while (!L->sync_job && !L->sync_quit)
            pthread_cond_wait(&L->sync_cv, &L->sync_mu);
        if (!L->sync_job)
            break;
        emb_cycle *c = L->sync_job;
        pthread_mutex_unlock(&L->sync_mu);
        sync_batches(c);
        pthread_mutex_lock(&L->sync_mu);
        L->sync_job = NULL;
        pthread_cond_broadcast(&L->sync_cv);
    }
    pthread_mutex_unlock(&L->sync_mu);
    return NULL;
}

/* hand_on gives the written batches of c to the sync thread (or syncs them here when there is
 * no sync thread). c must not be touched until finish_synced returns. */
static void hand_on(emb_log *L, emb_cycle *c)
{
    TERN_ASSERT(!L->syncing);
    for (size_t i = 0; i < c->n; i++)
        c->f[i].syncing = c->f[i].status == 0;
    L->syncing = c;
    if (!L->have_sync_thread) {
        sync_batches(c);
        return;
    }
    pthread_mutex_lock(&L->sync_mu);
    L->sync_job = c;
    pthread_cond_broadcast(&L->sync_cv);
    pthread_mutex_unlock(&L->sync_mu);
}

/*
 * finish_synced waits for the fsyncs of the cycle handed on (if any), then commits its durable
 * batches, publishes them, and runs its callbacks in order. A partition whose fsync failed is
 * truncated back to its durable size: that also cuts the batch of that partition that the
 * current cycle (cur, its first n_written batches written) may already hold, which then fails.
 */
static void finish_synced(emb_log *L, emb_cycle *cur, size_t n_written)
{
    emb_cycle *c = L->syncing;
    if (!c)
        return;
    if (L->have_sync_thread) {
        pthread_mutex_lock(&L->sync_mu);
        while (L->sync_job)
            pthread_cond_wait(&L->sync_cv, &L->sync_mu);
        pthread_mutex_unlock(&L->sync_mu);
    }
    L->syncing = NULL;
    bool any_rolled = false, any_durable = false;
    for (size_t i = 0; i < c->n; i++) {
        emb_inflight *f = &c->f[i];
        any_rolled |= f->rolled;
        if (!f->syncing)
            continue; /* the write failed (truncated then) */
        f->syncing = false;
        if (f->status != 0) {
            tern_log__error("%s: fsync of offsets %" PRId64 "..%" PRId64 " failed: %s",
                f->part->dir, f->base, f->base + f->count - 1, tern_strerror(f->status));
            tern_log__part_truncate(f->part);
            for (size_t j = 0; cur && j < n_written; j++) {
                emb_inflight *g = &cur->f[j];
                if (g->part == f->part && g->status == 0) {
                    g->status = TERN_EIO;
                    tern_log__error("%s: offsets %" PRId64 "..%" PRId64
                                    " were written behind a failed fsync: dropped",
                        g->part->dir, g->base, g->base + g->count - 1);
                }
            }
            continue;
        }
        atomic_fetch_add(&L->base.counters.fsyncs, 1);
        tern_log__part_commit(f->part, f->seg, f->pos, &f->h);
        atomic_fetch_add(&L->base.counters.batches_written, 1);
        atomic_fetch_add(&L->base.counters.records_appended, f->count);
        atomic_fetch_add(&L->base.counters.bytes_appended, 4u + (uint64_t)f->h.length);
        any_durable = true;
    }
    if (any_durable)
        notify_readers(L);
    uint64_t now = mono_ms();
    if (any_rolled || now - L->last_retention_ms >= RETENTION_EVERY_MS) {
        L->last_retention_ms = now;
        run_retention(L);
    }
    for (size_t i = 0; i < c->n; i++)
        complete(L, &c->f[i]);
    c->n = 0;
}

/*
 * io_cycle takes every pending batch and writes it while the previous cycle is being synced,
 * then finishes the previous cycle and hands this one on. Retention deletes only closed
 * segments, and a segment is closed (rolled) only once nothing is being synced, so the sync
 * thread never sees a segment freed under it.
 */
static void io_cycle(emb_log *L)
{
    emb_cycle *c = L->syncing == &L->cycles[0] ? &L->cycles[1] : &L->cycles[0];
    size_t n = take_pending(L, c);
    c->n = n;
    for (size_t i = 0; i < n; i++) {
        emb_inflight *f = &c->f[i];
        tern_emb_part *p = f->part;
        const uint8_t *bytes = seal_batch(L, f);
        if (L->syncing && tern_log__part_write_barrier(p, &f->h, L->cfg.segment_bytes))
            finish_synced(L, c, i);
        size_t segs_before = p->n_segs;
        f->syncing = false;
        f->status = tern_log__part_write(p, bytes, &f->h, L->cfg.segment_bytes, &f->seg, &f->pos);
        f->rolled = p->n_segs != segs_before;
        /* Start its writeback at once, so the device works on this batch while the next ones
         * are copied in; each fdatasync then mostly waits for I/O already in flight. */
        if (f->status == 0)
            tern_log__part_start_writeback(f->seg, f->pos, 4u + (uint64_t)f->h.length);
        if (f->status != 0) {
            tern_log__error("%s: write of offsets %" PRId64 "..%" PRId64 " failed: %s", p->dir,
                f->base, f->base + f->count - 1, tern_strerror(f->status));
            finish_synced(L, c, i); /* the truncation may cut only what is not being synced */
            tern_log__part_truncate(p);
        }
    }
    finish_synced(L, c, n);
    if (n > 0)
        hand_on(L, c);
}

static void *io_main(void *arg)
{
    emb_log *L = arg;
    pthread_setname_np(pthread_self(), "tern-log-io"); /* top -H, bench CPU per stage */
    /* Without a sync thread the log still works: the I/O thread then syncs each cycle itself. */
    L->have_sync_thread = pthread_create(&L->sync_thread, NULL, sync_main, L) == 0;
    if (!L->have_sync_thread)
        tern_log__warn("cannot start the log sync thread: syncing on the I/O thread");
    uint64_t last_cycle = mono_ms();
    pthread_mutex_lock(&L->mu);
    for (;;) {
        bool closing = atomic_load(&L->closing);
        uint64_t now = mono_ms();
        bool due = closing || L->flush_req > L->flush_done;
        bool kicked = atomic_load(&L->kicked);
        if (!due && kicked
            && (L->cfg.fsync == TERN_LOG_FSYNC_ALWAYS
                || now >= last_cycle + L->cfg.group_commit_ms))
            due = true;
        if (!due && L->syncing) {
            /* Nothing to write right now: finish the cycle being synced (its callbacks). */
            pthread_mutex_unlock(&L->mu);
            finish_synced(L, NULL, 0);
            pthread_mutex_lock(&L->mu);
            continue;
        }
        if (!due && kicked) {
            struct timespec ts;
            deadline_ts(&ts, last_cycle + L->cfg.group_commit_ms);
            pthread_cond_timedwait(&L->io_cv, &L->mu, &ts);
            continue;
        }
        if (!due) {
            struct timespec ts;
            deadline_ts(&ts, now + RETENTION_EVERY_MS);
            if (pthread_cond_timedwait(&L->io_cv, &L->mu, &ts) == ETIMEDOUT) {
                pthread_mutex_unlock(&L->mu);
                L->last_retention_ms = mono_ms();
                run_retention(L);
                pthread_mutex_lock(&L->mu);
            }
            continue;
        }
        uint64_t req = L->flush_req;
        bool flushing = closing || req > L->flush_done;
        atomic_store(&L->kicked, false);
        last_cycle = now;
        pthread_mutex_unlock(&L->mu);
        io_cycle(L);
        if (flushing)
            finish_synced(L, NULL, 0); /* a flush returns once both cycles are durable */
        pthread_mutex_lock(&L->mu);
        L->flush_done = req;
        pthread_cond_broadcast(&L->done_cv);
        if (closing)
            break;
    }
    L->io_exited = true;
    pthread_cond_broadcast(&L->done_cv);
    pthread_mutex_unlock(&L->mu);
    if (L->have_sync_thread) {
        pthread_mutex_lock(&L->sync_mu);
        L->sync_quit = true;
        pthread_cond_broadcast(&L->sync_cv);
        pthread_mutex_unlock(&L->sync_mu);
        pthread_join(L->sync_thread, NULL);
    }
    return NULL;
}

static int e_flush(tern_log *log)
{
    emb_log *L = (emb_log *)log;
    pthread_mutex_lock(&L->mu);
    if (L->io_exited) {
        pthread_mutex_unlock(&L->mu);
        return TERN_ECLOSED;
    }
    uint64_t target = ++L->flush_req;
    pthread_cond_signal(&L->io_cv);
    while (L->flush_done < target && !L->io_exited)
        pthread_cond_wait(&L->done_cv, &L->mu);
    pthread_mutex_unlock(&L->mu);
    return 0;
}

/* ---- groups (under gmu) -----------------------------------------------------------------------
 */

static void group_free(emb_group *g)
{
    for (size_t i = 0; i < g->n_commits; i++)
        tern_free(g->commits[i].topic);
    tern_free(g->commits);
    tern_free(g->members);
    tern_free(g->name);
    tern_free(g);
}

static emb_group *group_find(emb_log *L, const char *name)
{
    for (size_t i = 0; i < L->n_groups; i++)
        if (strcmp(L->groups[i]->name, name) == 0)
            return L->groups[i];
    return NULL;
}

static emb_group *group_add(emb_log *L, const char *name)
{
    if (L->n_groups == L->cap_groups) {
        size_t cap = L->cap_groups ? L->cap_groups * 2 : 8;
        emb_group **n = tern_realloc(L->groups, cap * sizeof *n);
        if (!n)
            return NULL;
        L->groups = n;
        L->cap_groups = cap;
    }
    emb_group *g = tern_calloc(1, sizeof *g);
    if (!g || !(g->name = tern_strdup(name))) {
        tern_free(g);
        return NULL;
    }
    L->groups[L->n_groups++] = g;
    return g;
}

static tern_emb_commit *commit_find(emb_group *g, const char *topic, uint32_t partition)
{
    for (size_t i = 0; i < g->n_commits; i++)
        if (g->commits[i].partition == partition && strcmp(g->commits[i].topic, topic) == 0)
            return &g->commits[i];
    return NULL;
}

/* commit_set updates or adds an entry in memory; *added says it was new (to undo). */
static int commit_set(
    emb_group *g, const char *topic, uint32_t partition, int64_t offset, int64_t *old, bool *added)
{
    tern_emb_commit *c = commit_find(g, topic, partition);
    if (c) {
        *old = c->offset;
        *added = false;
        c->offset = offset;
        return 0;
    }
    if (g->n_commits == g->cap_commits) {
        size_t cap = g->cap_commits ? g->cap_commits * 2 : 16;
        tern_emb_commit *n = tern_realloc(g->commits, cap * sizeof *n);
        if (!n)
            return TERN_ENOMEM;
        g->commits = n;
        g->cap_commits = cap;
    }
    char *t = tern_strdup(topic);
    if (!t)
        return TERN_ENOMEM;
    g->commits[g->n_commits++] = (tern_emb_commit) { t, partition, offset };
    *added = true;
    return 0;
}

static void commit_undo(
    emb_group *g, const char *topic, uint32_t partition, int64_t old, bool added)
{
    tern_emb_commit *c = commit_find(g, topic, partition);
    if (!c)
        return;
    if (!added) {
        c->offset = old;
        return;
    }
    tern_free(c->topic);
    *c = g->commits[--g->n_commits];
}

static bool subscribes(const emb_consumer *c, const emb_topic *t)
{
    for (size_t i = 0; i < c->n_topics; i++)
        if (c->topics[i] == t)
            return true;
    return false;
}

/* owns (under gmu) says whether member c owns t/partition in the group's current state. */
static bool owns(const emb_consumer *c, const emb_topic *t, uint32_t partition)
{
    if (!c->group)
        return true;
    const emb_group *g = c->group;
    size_t k = 0, me = SIZE_MAX;
    for (size_t i = 0; i < g->n_members; i++) {
        if (!subscribes(g->members[i], t))
            continue;
        if (g->members[i] == c)
            me = k;
        k++;
    }
    if (me == SIZE_MAX)
        return false;
    uint32_t first, count;
    tern_log__range_assign(t->n_partitions, k, me, &first, &count);
    return partition >= first && partition < first + count;
}

static int64_t resolve_start(emb_consumer *c, emb_cursor *cur, int64_t where)
{
    int64_t lo, hi;
    tern_log__part_offsets(cur->part, &lo, &hi);
    if (where == TERN_LOG_OFFSET_COMMITTED) {
        tern_emb_commit *e
            = c->group ? commit_find(c->group, cur->topic->name, cur->part->id) : NULL;
        if (e)
            return e->offset;
        where = c->start;
    }
    if (where == TERN_LOG_OFFSET_LATEST)
        return hi;
    if (where == TERN_LOG_OFFSET_EARLIEST || where < 0)
        return lo;
    return where;
}

static void cursor_reset(emb_cursor *cur, int64_t pos)
{
    cur->pos = pos;
    cur->have_batch = false;
    cur->stuck = false;
    cur->hint.next_offset = -1;
}

/* refresh (under gmu) applies the group's current assignment to this member's cursors. */
static void refresh_locked(emb_consumer *c)
{
    if (!c->group || c->seen_generation == c->group->generation)
        return;
    c->seen_generation = c->group->generation;
    for (size_t i = 0; i < c->n_cursors; i++) {
        emb_cursor *cur = &c->cursors[i];
        bool now = owns(c, cur->topic, cur->part->id);
        if (now && !cur->owned)
            cursor_reset(cur, resolve_start(c, cur, TERN_LOG_OFFSET_COMMITTED));
        cur->owned = now;
    }
}

static void refresh(emb_consumer *c)
{
    if (!c->group)
        return;
    pthread_mutex_lock(&c->log->gmu);
    refresh_locked(c);
    pthread_mutex_unlock(&c->log->gmu);
}

/* ---- consumers --------------------------------------------------------------------------------
 */

static void consumer_free(emb_consumer *c)
{
    for (size_t i = 0; i < c->n_cursors; i++) {
        tern_buf_free(&c->cursors[i].raw);
        tern_buf_free(&c->cursors[i].dec);
    }
    for (size_t i = 0; i < c->n_retired; i++)
        tern_buf_free(&c->retired[i]);
    tern_free(c->retired);
    tern_free(c->cursors);
    tern_free(c->topics);
    tern_free(c->hdrs);
    tern_free(c);
}

static int e_consumer_open(
    tern_log *log, const tern_log_consumer_config *cfg, tern_log_consumer **out)
{
    emb_log *L = (emb_log *)log;
    if (cfg->group && !tern_log__valid_topic(cfg->group))
        return TERN_EINVAL;
    emb_consumer *c = tern_calloc(1, sizeof *c);
    if (!c)
        return TERN_ENOMEM;
    int rc = TERN_ENOMEM;
    c->base.log = log;
    c->log = L;
    c->start
        = cfg->start == TERN_LOG_OFFSET_LATEST ? TERN_LOG_OFFSET_LATEST : TERN_LOG_OFFSET_EARLIEST;
    c->topics = tern_calloc(cfg->n_topics, sizeof *c->topics);
    if (!c->topics)
        goto fail;
    size_t n_cursors = 0;
    for (size_t i = 0; i < cfg->n_topics; i++) {
        emb_topic *t = find_topic(L, cfg->topics[i]);
        if (!t) {
            rc = TERN_ENOTFOUND;
            goto fail;
        }
        if (subscribes(c, t))
            continue;
        c->topics[c->n_topics++] = t;
        n_cursors += t->n_partitions;
    }
    c->cursors = tern_calloc(n_cursors, sizeof *c->cursors);
    if (!c->cursors)
        goto fail;
    for (size_t i = 0; i < c->n_topics; i++) {
        for (uint32_t j = 0; j < c->topics[i]->n_partitions; j++) {
            emb_cursor *cur = &c->cursors[c->n_cursors++];
            cur->topic = c->topics[i];
            cur->part = &c->topics[i]->parts[j];
            cur->hint.next_offset = -1;
            if (!cfg->group) {
                cur->owned = true;
                cursor_reset(cur, resolve_start(c, cur, c->start));
            }
        }
    }
    if (cfg->group) {
        pthread_mutex_lock(&L->gmu);
        emb_group *g = group_find(L, cfg->group);
        if (!g)
            g = group_add(L, cfg->group);
        if (g && g->n_members == g->cap_members) {
            size_t cap = g->cap_members ? g->cap_members * 2 : 4;
            emb_consumer **m = tern_realloc(g->members, cap * sizeof *m);
            if (m) {
                g->members = m;
                g->cap_members = cap;
            }
        }
        if (!g || g->n_members == g->cap_members) {
            pthread_mutex_unlock(&L->gmu);
            goto fail;
        }
        g->members[g->n_members++] = c;
        g->generation++;
        c->group = g;
        refresh_locked(c);
        pthread_mutex_unlock(&L->gmu);
        notify_readers(L); /* other members pick up the new assignment */
    }
    *out = &c->base;
    return 0;
fail:
    consumer_free(c);
    return rc;
}

static void e_consumer_close(tern_log_consumer *base)
{
    emb_consumer *c = (emb_consumer *)base;
    emb_log *L = c->log;
    if (c->group) {
        pthread_mutex_lock(&L->gmu);
        emb_group *g = c->group;
        for (size_t i = 0; i < g->n_members; i++) {
            if (g->members[i] == c) {
                memmove(g->members + i, g->members + i + 1,
                    (g->n_members - i - 1) * sizeof *g->members);
                g->n_members--;
                break;
            }
        }
        g->generation++;
        pthread_mutex_unlock(&L->gmu);
        notify_readers(L);
    }
    consumer_free(c);
}

static emb_cursor *cursor_find(emb_consumer *c, const char *topic, uint32_t partition)
{
    for (size_t i = 0; i < c->n_cursors; i++)
        if (c->cursors[i].part->id == partition && strcmp(c->cursors[i].topic->name, topic) == 0)
            return &c->cursors[i];
    return NULL;
}

/* retire keeps a cursor's buffers alive until the next poll (messages point into them). */
static int retire(emb_consumer *c, emb_cursor *cur)
{
    if (c->n_retired + 2 > c->cap_retired) {
        size_t cap = c->cap_retired ? c->cap_retired * 2 : 8;
        tern_buf *n = tern_realloc(c->retired, cap * sizeof *n);
        if (!n)
            return TERN_ENOMEM;
        c->retired = n;
        c->cap_retired = cap;
    }
    c->retired[c->n_retired++] = cur->raw;
    c->retired[c->n_retired++] = cur->dec;
    tern_buf_init(&cur->raw);
    tern_buf_init(&cur->dec);
    return 0;
}

/* hdrs_reserve grows the header arena, moving the header pointers of msgs[0..n). */
static int hdrs_reserve(emb_consumer *c, tern_log_message *msgs, size_t n, size_t extra)
{
    if (c->n_hdrs + extra <= c->cap_hdrs)
        return 0;
    size_t cap = c->cap_hdrs ? c->cap_hdrs : 64;
    while (cap < c->n_hdrs + extra)
        cap *= 2;
    size_t *idx = n ? tern_malloc(n * sizeof *idx) : NULL;
    if (n && !idx)
        return TERN_ENOMEM;
    for (size_t i = 0; i < n; i++)
        idx[i] = msgs[i].n_headers ? (size_t)(msgs[i].headers - c->hdrs) : 0;
    tern_log_header *h = tern_realloc(c->hdrs, cap * sizeof *h);
    if (h) {
        c->hdrs = h;
        c->cap_hdrs = cap;
    }
    for (size_t i = 0; i < n; i++)
        if (msgs[i].n_headers)
            msgs[i].headers = c->hdrs + idx[i];
    tern_free(idx);
    return h ? 0 : TERN_ENOMEM;
}

static void report_corrupt(emb_log *L, emb_cursor *cur, int rc, uint64_t bad_pos, int64_t bad_base)
{
    cur->stuck = true;
    cur->have_batch = false;
    atomic_fetch_add(&L->base.counters.corrupt_batches, 1);
    tern_log__error("topic %s partition %" PRIu32 ": %s in segment %020" PRId64 " at byte %" PRIu64
                    "; reads stop at offset %" PRId64,
        cur->topic->name, cur->part->id, tern_strerror(rc), bad_base, bad_pos, cur->pos);
}

/* read_cursor appends up to max - *n messages of one partition. Returns 0 or an error. */
static int read_cursor(
    emb_consumer *c, emb_cursor *cur, tern_log_message *msgs, size_t max, size_t *n)
{
    while (*n < max) {
        if (!cur->have_batch || cur->next_index >= cur->h.count) {
            if (cur->have_batch && cur->used_in_poll == c->poll_no && retire(c, cur) != 0)
                return TERN_ENOMEM;
            cur->have_batch = false;
            uint64_t bad_pos = 0;
            int64_t bad_base = 0;
            int rc = tern_log__part_fetch(
                cur->part, cur->pos, &cur->hint, &cur->raw, &cur->h, &bad_pos, &bad_base);
            if (rc == 0)
                return 0;
            const uint8_t *recs = NULL;
            size_t recs_len = 0;
            if (rc == 1)
                rc = tern_log__batch_records(cur->raw.data, &cur->h, &cur->dec, &recs, &recs_len);
            if (rc == TERN_ECORRUPT) {
                report_corrupt(c->log, cur, rc, bad_pos, bad_base);
                cur->hint.next_offset = -1;
                return rc;
            }
            if (rc != 0)
                return rc;
            tern_reader_init(&cur->rd, recs, recs_len);
            cur->next_index = 0;
            cur->have_batch = true;
        }
        tern_emb_record rec;
        if (tern_log__batch_next_record(&cur->rd, cur->h.first_ts_ms, &rec) != 0) {
            cur->have_batch = false; /* cannot happen: the batch was walked when loaded */
            return TERN_ECORRUPT;
        }
        int64_t offset = cur->h.base_offset + cur->next_index++;
        if (offset < cur->pos)
            continue;
        if (hdrs_reserve(c, msgs, *n, rec.n_headers) != 0)
            return TERN_ENOMEM;
        tern_log_message *m = &msgs[(*n)++];
        m->topic = cur->topic->name;
        m->partition = cur->part->id;
        m->offset = offset;
        m->ts_ms = rec.ts_ms;
        m->key = rec.key_len ? rec.key : NULL;
        m->key_len = rec.key_len;
        m->value = rec.value;
        m->value_len = rec.value_len;
        m->n_headers = rec.n_headers;
        m->headers = rec.n_headers ? c->hdrs + c->n_hdrs : NULL;
        tern_reader hr;
        tern_reader_init(&hr, rec.headers, rec.headers_len);
        for (size_t i = 0; i < rec.n_headers; i++)
            tern_log__batch_next_header(&hr, &c->hdrs[c->n_hdrs++]);
        cur->pos = offset + 1;
        cur->used_in_poll = c->poll_no;
    }
    return 0;
}

static int gather(emb_consumer *c, tern_log_message *msgs, size_t max, size_t *n)
{
    refresh(c);
    size_t nc = c->n_cursors;
    for (size_t k = 0; k < nc && *n < max; k++) {
        emb_cursor *cur = &c->cursors[(c->rr + k) % nc];
        if (!cur->owned || cur->stuck)
            continue;
        int rc = read_cursor(c, cur, msgs, max, n);
        if (rc == TERN_ECORRUPT && *n > 0) {
            c->deferred_err = rc;
            break;
        }
        if (rc != 0)
            return rc;
    }
    if (nc)
        c->rr = (c->rr + 1) % nc;
    return 0;
}

static int e_consumer_poll(
    tern_log_consumer *base, tern_log_message *msgs, size_t max, int timeout_ms, size_t *n_out)
{
    emb_consumer *c = (emb_consumer *)base;
    emb_log *L = c->log;
    *n_out = 0;
    c->poll_no++;
    for (size_t i = 0; i < c->n_retired; i++)
        tern_buf_free(&c->retired[i]);
    c->n_retired = 0;
    c->n_hdrs = 0;
    if (c->deferred_err) {
        int rc = c->deferred_err;
        c->deferred_err = 0;
        return rc;
    }
    uint64_t deadline = mono_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    for (;;) {
        pthread_mutex_lock(&L->data_mu);
        uint64_t seq = L->data_seq;
        pthread_mutex_unlock(&L->data_mu);
        size_t n = 0;
        int rc = gather(c, msgs, max, &n);
        if (rc != 0 || n > 0) {
            *n_out = n;
            return rc;
        }
        if (atomic_load(&L->closing))
            return TERN_ECLOSED;
        if (timeout_ms <= 0 || mono_ms() >= deadline)
            return 0;
        struct timespec ts;
        deadline_ts(&ts, deadline);
        pthread_mutex_lock(&L->data_mu);
        while (L->data_seq == seq && !atomic_load(&L->closing))
            if (pthread_cond_timedwait(&L->data_cv, &L->data_mu, &ts) == ETIMEDOUT)
                break;
        pthread_mutex_unlock(&L->data_mu);
    }
}

static int e_consumer_commit(
    tern_log_consumer *base, const char *topic, uint32_t partition, int64_t next_offset)
{
    emb_consumer *c = (emb_consumer *)base;
    emb_log *L = c->log;
    if (!c->group)
        return TERN_EINVAL;
    emb_topic *t = find_topic(L, topic);
    if (t && partition >= t->n_partitions)
        return TERN_EINVAL;
    if (!t || !subscribes(c, t))
        return TERN_EDENIED;
    pthread_mutex_lock(&L->gmu);
    int rc = TERN_EDENIED;
    if (owns(c, t, partition)) {
        int64_t old = 0;
        bool added = false;
        rc = commit_set(c->group, topic, partition, next_offset, &old, &added);
        if (rc == 0) {
            rc = tern_log__group_save(
                L->groups_dir, c->group->name, c->group->commits, c->group->n_commits);
            if (rc != 0) {
                commit_undo(c->group, topic, partition, old, added);
                tern_log__error(
                    "group %s: cannot save offsets: %s", c->group->name, tern_strerror(rc));
                rc = TERN_EIO;
            }
        }
    }
    pthread_mutex_unlock(&L->gmu);
    return rc;
}

static int e_consumer_commit_all(tern_log_consumer *base)
{
    emb_consumer *c = (emb_consumer *)base;
    emb_log *L = c->log;
    if (!c->group)
        return TERN_EINVAL;
    pthread_mutex_lock(&L->gmu);
    int rc = 0;
    size_t n_before = c->group->n_commits;
    int64_t *old = tern_malloc((c->n_cursors + 1) * sizeof *old);
    if (!old)
        rc = TERN_ENOMEM;
    for (size_t i = 0; i < c->n_cursors && rc == 0; i++) {
        emb_cursor *cur = &c->cursors[i];
        bool added = false;
        old[i] = INT64_MIN;
        if (cur->owned && owns(c, cur->topic, cur->part->id))
            rc = commit_set(c->group, cur->topic->name, cur->part->id, cur->pos, &old[i], &added);
    }
    if (rc == 0)
        rc = tern_log__group_save(
            L->groups_dir, c->group->name, c->group->commits, c->group->n_commits);
    if (rc != 0 && old) { /* put the previous values back */
        for (size_t i = 0; i < c->n_cursors; i++) {
            tern_emb_commit *e
                = commit_find(c->group, c->cursors[i].topic->name, c->cursors[i].part->id);
            if (e && old[i] != INT64_MIN)
                e->offset = old[i];
        }
        while (c->group->n_commits > n_before)
            tern_free(c->group->commits[--c->group->n_commits].topic);
        tern_log__error("group %s: cannot save offsets: %s", c->group->name, tern_strerror(rc));
        rc = rc == TERN_ENOMEM ? rc : TERN_EIO;
    }
    tern_free(old);
    pthread_mutex_unlock(&L->gmu);
    return rc;
}

static int e_consumer_seek(
    tern_log_consumer *base, const char *topic, uint32_t partition, int64_t offset)
{
    emb_consumer *c = (emb_consumer *)base;
    emb_cursor *cur = cursor_find(c, topic, partition);
    if (!cur)
        return TERN_ENOTFOUND;
    pthread_mutex_lock(&c->log->gmu);
    refresh_locked(c);
    int rc = TERN_EDENIED;
    if (cur->owned) {
        cursor_reset(cur, resolve_start(c, cur, offset));
        rc = 0;
    }
    pthread_mutex_unlock(&c->log->gmu);
    return rc;
}

static int e_consumer_assignment(
    tern_log_consumer *base, tern_log_assignment *out, size_t max, size_t *n)
{
    emb_consumer *c = (emb_consumer *)base;
    refresh(c);
    size_t k = 0;
    for (size_t i = 0; i < c->n_cursors; i++) {
        if (!c->cursors[i].owned)
            continue;
        if (k < max)
            out[k] = (tern_log_assignment) { c->cursors[i].topic->name, c->cursors[i].part->id };
        k++;
    }
    *n = k;
    return 0;
}

static int e_committed(
    tern_log *log, const char *group, const char *topic, uint32_t partition, int64_t *offset)
{
    emb_log *L = (emb_log *)log;
    emb_topic *t = find_topic(L, topic);
    if (!t)
        return TERN_ENOTFOUND;
    if (partition >= t->n_partitions)
        return TERN_EINVAL;
    pthread_mutex_lock(&L->gmu);
    emb_group *g = group_find(L, group);
    tern_emb_commit *e = g ? commit_find(g, topic, partition) : NULL;
    *offset = e ? e->offset : TERN_LOG_OFFSET_EARLIEST;
    pthread_mutex_unlock(&L->gmu);
    return 0;
}

/* ---- open / close -----------------------------------------------------------------------------
 */

static int load_topics(emb_log *L)
{
    DIR *d = opendir(L->topics_dir);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (!tern_log__valid_topic(e->d_name) || strcmp(e->d_name, ".") == 0
            || strcmp(e->d_name, "..") == 0)
            continue;
        char *dir = tern_log__path(L->topics_dir, e->d_name);
        if (!dir) {
            rc = TERN_ENOMEM;
            break;
        }
        uint32_t np = 0;
        rc = read_meta(dir, &np);
        tern_free(dir);
        if (rc == -ENOENT || rc == -ENOTDIR) {
            tern_log__warn("%s/%s has no meta file (an interrupted create?): ignored",
                L->topics_dir, e->d_name);
            rc = 0;
            continue;
        }
        if (rc != 0) {
            tern_log__error("%s/%s/meta: %s", L->topics_dir, e->d_name, tern_strerror(rc));
            break;
        }
        emb_topic *t;
        rc = topic_load(L, e->d_name, np, &t);
        if (rc == 0 && (rc = topics_push(L, t)) != 0)
            topic_free(t);
    }
    closedir(d);
    return rc;
}

static int load_groups(emb_log *L)
{
    DIR *d = opendir(L->groups_dir);
    if (!d)
        return -errno;
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        char *path = tern_log__path(L->groups_dir, e->d_name);
        if (!path) {
            rc = TERN_ENOMEM;
            break;
        }
        size_t len = strlen(e->d_name);
        if (len > 4 && strcmp(e->d_name + len - 4, "~tmp") == 0)
            unlink(path); /* an interrupted commit: the previous file is intact */
        if (!tern_log__valid_topic(e->d_name)) {
            tern_free(path);
            continue;
        }
        tern_emb_commit *c = NULL;
        size_t n = 0;
        int lrc = tern_log__group_load(path, &c, &n);
        if (lrc == TERN_ECORRUPT || lrc == TERN_EVERSION) {
            /* Keep the bytes for inspection; the group restarts from cfg->start. */
            char *moved = tern_malloc(strlen(path) + 9);
            if (moved) {
                sprintf(moved, "%s~corrupt", path);
                rename(path, moved);
            }
            tern_free(moved);
            atomic_fetch_add(&L->base.counters.corrupt_batches, 1);
            tern_log__error("group offsets %s: %s; moved aside, the group starts over", path,
                tern_strerror(lrc));
            lrc = 0;
        }
        tern_free(path);
        if (lrc != 0) {
            rc = lrc;
            break;
        }
        emb_group *g = group_add(L, e->d_name);
        if (!g) {
            for (size_t i = 0; i < n; i++)
                tern_free(c[i].topic);
            tern_free(c);
            rc = TERN_ENOMEM;
            break;
        }
        g->commits = c;
        g->n_commits = g->cap_commits = n;
    }
    closedir(d);
    return rc;
}

static void log_free(emb_log *L)
{
    if (L->lock_fd > 0)
        close(L->lock_fd); /* releases the flock */
    for (size_t i = 0; i < L->n_topics; i++)
        topic_free(L->topics[i]);
    tern_free(L->topics);
    for (size_t i = 0; i < L->n_groups; i++)
        group_free(L->groups[i]);
    tern_free(L->groups);
    for (int k = 0; k < 2; k++) {
        emb_cycle *c = &L->cycles[k];
        for (size_t i = 0; i < c->cap; i++) {
            tern_buf_free(&c->f[i].buf);
            tern_free(c->f[i].cbs);
        }
        tern_free(c->f);
    }
    tern_buf_free(&L->zbuf);
    ZSTD_freeCCtx(L->zctx);
    tern_free(L->dir);
    tern_free(L->topics_dir);
    tern_free(L->groups_dir);
    pthread_rwlock_destroy(&L->topics_lock);
    pthread_mutex_destroy(&L->mu);
    pthread_mutex_destroy(&L->sync_mu);
    pthread_cond_destroy(&L->sync_cv);
    pthread_cond_destroy(&L->io_cv);
    pthread_cond_destroy(&L->done_cv);
    pthread_mutex_destroy(&L->data_mu);
    pthread_cond_destroy(&L->data_cv);
    pthread_mutex_destroy(&L->gmu);
    tern_free(L);
}

static int e_open(const tern_log_config *cfg, tern_log **out)
{
    if (cfg->segment_bytes > MAX_SEGMENT_BYTES
        || (cfg->fsync != TERN_LOG_FSYNC_ALWAYS && cfg->fsync != TERN_LOG_FSYNC_GROUP))
        return TERN_EINVAL;
    emb_log *L = tern_calloc(1, sizeof *L);
    if (!L)
        return TERN_ENOMEM;
    L->base.ops = &tern_log__embedded_ops;
    L->cfg = *cfg;
    L->cfg.kafka_brokers = L->cfg.kafka_client_id = NULL;
    pthread_rwlock_init(&L->topics_lock, NULL);
    pthread_mutex_init(&L->mu, NULL);
    pthread_mutex_init(&L->sync_mu, NULL);
    pthread_cond_init(&L->sync_cv, NULL);
    pthread_mutex_init(&L->data_mu, NULL);
    pthread_mutex_init(&L->gmu, NULL);
    int rc = cond_init_mono(&L->io_cv);
    if (rc == 0)
        rc = cond_init_mono(&L->done_cv);
    if (rc == 0)
        rc = cond_init_mono(&L->data_cv);
    if (rc != 0) {
        tern_free(L);
        return rc;
    }
    L->dir = tern_strdup(cfg->dir);
    L->cfg.dir = L->dir;
    L->topics_dir = L->dir ? tern_log__path(L->dir, "topics") : NULL;
    L->groups_dir = L->dir ? tern_log__path(L->dir, "groups") : NULL;
    rc = TERN_ENOMEM;
    if (!L->dir || !L->topics_dir || !L->groups_dir)
        goto fail;
    if (cfg->compress && !(L->zctx = ZSTD_createCCtx()))
        goto fail;
    if ((rc = mkdir_p(L->dir)) != 0)
        goto fail;
    /* One process at a time: recovery truncates torn tails, which would cut into batches
     * another live process is writing. A second opener gets -EWOULDBLOCK at once. */
    char *lock_path = tern_log__path(L->dir, "lock");
    if (!lock_path) {
        rc = TERN_ENOMEM;
        goto fail;
    }
    L->lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    tern_free(lock_path);
    if (L->lock_fd < 0 || flock(L->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = tern_log__mkdir(L->topics_dir)) != 0 || (rc = tern_log__mkdir(L->groups_dir)) != 0)
        goto fail;
    if ((rc = load_topics(L)) != 0 || (rc = load_groups(L)) != 0)
        goto fail;
    L->last_retention_ms = mono_ms();
    run_retention(L);
    if (pthread_create(&L->io_thread, NULL, io_main, L) != 0) {
        rc = TERN_ENOMEM;
        goto fail;
    }
    *out = &L->base;
    return 0;
fail:
    log_free(L);
    return rc;
}

static void e_close(tern_log *log)
{
    emb_log *L = (emb_log *)log;
    pthread_mutex_lock(&L->mu);
    atomic_store(&L->closing, true);
    pthread_cond_signal(&L->io_cv);
    pthread_mutex_unlock(&L->mu);
    pthread_join(L->io_thread, NULL);
    for (size_t i = 0; i < L->n_groups; i++)
        TERN_ASSERT(L->groups[i]->n_members == 0); /* consumers must be closed first */
    log_free(L);
}

const tern_log_ops tern_log__embedded_ops = {
    .name = "embedded",
    .open = e_open,
    .close = e_close,
    .create_topic = e_create_topic,
    .partition_count = e_partition_count,
    .append = e_append,
    .flush = e_flush,
    .offsets = e_offsets,
    .consumer_open = e_consumer_open,
    .consumer_poll = e_consumer_poll,
    .consumer_commit = e_consumer_commit,
    .consumer_commit_all = e_consumer_commit_all,
    .consumer_seek = e_consumer_seek,
    .consumer_assignment = e_consumer_assignment,
    .consumer_close = e_consumer_close,
    .committed = e_committed,
    .list_topics = e_list_topics,
};

/*
 * log_test_util.h: shared helpers of the embedded log's unit tests: temp folders, opening a
 * log with a given policy, an append-completion recorder, and reading a whole partition.
 * Callbacks run on the log's I/O thread, so they only record; tests assert on the main thread.
 */
#ifndef TERN_TEST_LOG_UTIL_H
#define TERN_TEST_LOG_UTIL_H

#include "log/log.h"

#include "base/error.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* tmpdir_make returns a fresh folder under $TERN_TEST_TMP (or /tmp); free() it. */
static inline char *tmpdir_make(void)
{
    const char *root = getenv("TERN_TEST_TMP");
    char buf[512];
    snprintf(buf, sizeof buf, "%s/logtestXXXXXX", root && root[0] ? root : "/tmp");
    char *d = mkdtemp(buf);
    return d ? strdup(d) : NULL;
}

static inline int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static inline void rm_rf(const char *path)
{
    nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static inline tern_log *open_log_cfg(const char *dir, tern_log_fsync fsync, bool compress,
    uint64_t segment_bytes, tern_log_config *override)
{
    tern_log_config cfg;
    if (override) {
        cfg = *override;
    } else {
        tern_log_config_defaults(&cfg);
        cfg.fsync = fsync;
        cfg.group_commit_ms = 2;
        cfg.compress = compress;
        cfg.segment_bytes = segment_bytes;
    }
    cfg.dir = dir;
    tern_log *log = NULL;
    int rc = tern_log_open(&cfg, &log);
    if (rc != 0) {
        fprintf(stderr, "tern_log_open(%s): %s\n", dir, tern_strerror(rc));
        return NULL;
    }
    return log;
}

static inline tern_log *open_log(const char *dir, bool compress, uint64_t segment_bytes)
{
    return open_log_cfg(dir, TERN_LOG_FSYNC_GROUP, compress, segment_bytes, NULL);
}

/* open_log_manual: group commit so slow that batches are cut only by tern_log_flush (tests that
 * depend on batch boundaries). */
static inline tern_log *open_log_manual(const char *dir, bool compress, uint64_t segment_bytes)
{
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.group_commit_ms = 600000;
    cfg.compress = compress;
    cfg.segment_bytes = segment_bytes;
    return open_log_cfg(dir, TERN_LOG_FSYNC_GROUP, compress, segment_bytes, &cfg);
}

/* Completions, in the order the I/O thread ran them. */
typedef struct ack {
    int status;
    uint32_t partition;
    int64_t offset;
    long tag;
} ack;

typedef struct acks {
    pthread_mutex_t mu;
    ack *v;
    size_t n, cap;
} acks;

typedef struct ack_ctx {
    acks *sink;
    long tag;
} ack_ctx;

static inline void acks_init(acks *a)
{
    pthread_mutex_init(&a->mu, NULL);
    a->v = NULL;
    a->n = a->cap = 0;
}

static inline void acks_free(acks *a)
{
    free(a->v);
    pthread_mutex_destroy(&a->mu);
}

/* ack_cb: opaque is an ack_ctx that lives until the completion ran. */
static inline void ack_cb(void *opaque, int status, uint32_t partition, int64_t offset)
{
    ack_ctx *ctx = opaque;
    acks *a = ctx->sink;
    pthread_mutex_lock(&a->mu);
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 256;
        a->v = realloc(a->v, a->cap * sizeof *a->v);
        if (!a->v)
            abort();
    }
    a->v[a->n++] = (ack) { status, partition, offset, ctx->tag };
    pthread_mutex_unlock(&a->mu);
}

/* A message copied out of a poll. */
typedef struct rec_copy {
    uint32_t partition;
    int64_t offset;
    int64_t ts_ms;
    char key[64];
    size_t key_len;
    bool has_key;
    char value[1024];
    size_t value_len;
    size_t n_headers;
    char h0_name[32];
    char h0_value[32];
    size_t h0_len;
} rec_copy;

static inline void copy_msg(rec_copy *r, const tern_log_message *m)
{
    memset(r, 0, sizeof *r);
    r->partition = m->partition;
    r->offset = m->offset;
    r->ts_ms = m->ts_ms;
    r->has_key = m->key != NULL;
    r->key_len = m->key_len < sizeof r->key ? m->key_len : sizeof r->key;
    if (m->key_len)
        memcpy(r->key, m->key, r->key_len);
    r->value_len = m->value_len < sizeof r->value ? m->value_len : sizeof r->value;
    if (m->value_len)
        memcpy(r->value, m->value, r->value_len);
    r->n_headers = m->n_headers;
    if (m->n_headers) {
        snprintf(r->h0_name, sizeof r->h0_name, "%s", m->headers[0].name);
        r->h0_len = m->headers[0].value_len < sizeof r->h0_value ? m->headers[0].value_len
                                                                 : sizeof r->h0_value;
        memcpy(r->h0_value, m->headers[0].value, r->h0_len);
    }
}

/*
 * read_all polls a groupless consumer on topic from the earliest offset until a poll returns
 * nothing, copying up to max messages into out. Returns the count, or a negative code if a
 * poll failed (*first_err keeps it; reading goes on past the error while records come).
 */
static inline long read_all(
    tern_log *log, const char *topic, rec_copy *out, size_t max, int *first_err)
{
    const char *topics[] = { topic };
    tern_log_consumer_config cc
        = { .topics = topics, .n_topics = 1, .start = TERN_LOG_OFFSET_EARLIEST };
    tern_log_consumer *c;
    int rc = tern_log_consumer_open(log, &cc, &c);
    if (rc != 0)
        return rc;
    long n = 0;
    *first_err = 0;
    for (int idle = 0; idle < 2;) {
        tern_log_message msgs[64];
        size_t got = 0;
        rc = tern_log_consumer_poll(c, msgs, 64, 0, &got);
        if (rc != 0 && *first_err == 0)
            *first_err = rc;
        if (rc == 0 && got == 0)
            idle++;
        for (size_t i = 0; i < got; i++)
            if ((size_t)n < max)
                copy_msg(&out[n++], &msgs[i]);
    }
    tern_log_consumer_close(c);
    return n;
}

/* file_size returns the size of path or -1. */
static inline long long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

/* seg_path formats DIR/topics/<topic>/<partition>/<base>.log */
static inline void seg_path(char *out, size_t n, const char *dir, const char *topic,
    unsigned partition, long long base, const char *ext)
{
    snprintf(out, n, "%s/topics/%s/%u/%020lld%s", dir, topic, partition, base, ext);
}

/* read_file / write_file: whole-file helpers (malloc'd buffer). */
static inline unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(n > 0 ? (size_t)n : 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return b;
}

static inline int write_file(const char *path, const void *b, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(b, 1, len, f);
    fclose(f);
    return w == len ? 0 : -1;
}

/* batch_starts lists the byte positions of the batches in a segment image (length-walk). */
static inline size_t batch_starts(const unsigned char *b, size_t len, size_t *pos, size_t max)
{
    size_t n = 0, p = 0;
    while (p + 4 <= len && n < max) {
        size_t l = (size_t)b[p] | (size_t)b[p + 1] << 8 | (size_t)b[p + 2] << 16
            | (size_t)b[p + 3] << 24;
        pos[n++] = p;
        p += 4 + l;
    }
    return n;
}

/* Every test runs in a fresh folder `dir`, made by setup and removed by teardown. */
static char *dir;

static inline int setup(void **state)
{
    (void)state;
    dir = tmpdir_make();
    return dir ? 0 : -1;
}

static inline int teardown(void **state)
{
    (void)state;
    rm_rf(dir);
    free(dir);
    return 0;
}

#endif

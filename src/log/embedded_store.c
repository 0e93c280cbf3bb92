/*
 * embedded_store.c: one partition of the embedded log on disk (docs/formats/log.md).
 *
 * A partition folder holds segment files <base offset, 20 digits>.log of record batches, each
 * with a sparse offset index (.index: relative offset -> byte position, about every 4 KiB) and
 * a time index (.timeindex: largest timestamp so far -> relative offset). The .log file is the
 * truth; the indexes are hints, written when a segment is closed (rolled, or the log closed),
 * checked on open and rebuilt from the segment if missing or inconsistent.
 *
 * Promises:
 *   - recovery scans the last segment batch by batch: a torn tail (short batch, or a bad CRC
 *     on the last batch) is truncated to the last whole batch; a bad batch followed by more
 *     data is corruption: it is logged and counted, the bytes are kept, the segment is sealed
 *     (new batches go to a new segment) and reads stop there with TERN_ECORRUPT;
 *   - readers see only durable bytes (size, hwm advance in tern_log__part_commit after the
 *     fsync) and only batches whose CRC verified;
 *   - retention deletes whole closed segments; a segment a reader is inside stays open until
 *     the reader leaves it.
 * Threading: the I/O thread is the only writer; readers take smu briefly and pread unlocked.
 */
#include "log/embedded_int.h"

#include "base/alloc.h"
#include "base/error.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define INDEX_INTERVAL_BYTES 4096u
#define INDEX_HDR 8
#define INDEX_ENTRY 8
#define TINDEX_ENTRY 12
#define INDEX_VERSION 1

/* ---- small file helpers -----------------------------------------------------------------------
 */

char *tern_log__path(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = tern_malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

int tern_log__mkdir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return -errno;
}

int tern_log__fsync_dir(const char *path)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int tern_log__pwrite_all(int fd, const void *bytes, size_t len, uint64_t pos)
{
    const uint8_t *p = bytes;
    while (len > 0) {
        ssize_t n = pwrite(fd, p, len, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return TERN_EIO;
        p += n;
        len -= (size_t)n;
        pos += (uint64_t)n;
    }
    return 0;
}

int tern_log__pread_all(int fd, void *bytes, size_t len, uint64_t pos)
{
    uint8_t *p = bytes;
    while (len > 0) {
        ssize_t n = pread(fd, p, len, (off_t)pos);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return TERN_EPARTIAL;
        p += n;
        len -= (size_t)n;
        pos += (uint64_t)n;
    }
    return 0;
}

int tern_log__write_atomic(const char *dir, const char *path, const void *bytes, size_t len)
{
    size_t n = strlen(path) + 5;
    char *tmp = tern_malloc(n);
    if (!tmp)
        return TERN_ENOMEM;
    snprintf(tmp, n, "%s~tmp", path);
    int rc = 0;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        goto out;
    }
    rc = tern_log__pwrite_all(fd, bytes, len, 0);
    if (rc == 0 && fsync(fd) != 0)
        rc = -errno;
    if (close(fd) != 0 && rc == 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) != 0)
        rc = -errno;
    if (rc == 0)
        rc = tern_log__fsync_dir(dir);
    if (rc != 0)
        unlink(tmp);
out:
    tern_free(tmp);
    return rc;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static char *seg_file(const char *dir, int64_t base, const char *ext)
{
    char name[48];
    snprintf(name, sizeof name, "%020" PRId64 "%s", base, ext);
    return tern_log__path(dir, name);
}

/* ---- segments and their in-memory indexes ---------------------------------------------------- */

static tern_emb_seg *seg_new(const char *dir, int64_t base, int fd)
{
    tern_emb_seg *s = tern_calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->path = seg_file(dir, base, ".log");
    if (!s->path) {
        tern_free(s);
        return NULL;
    }
    s->base = base;
    s->fd = fd;
    s->end_offset = base;
    s->max_ts_ms = INT64_MIN;
    return s;
}

static void seg_free(tern_emb_seg *s)
{
    if (s->fd >= 0)
        close(s->fd);
    tern_free(s->index);
    tern_free(s->tindex);
    tern_free(s->path);
    tern_free(s);
}

static void seg_reset_index(tern_emb_seg *s)
{
    s->n_index = s->n_tindex = 0;
    s->bytes_since_index = s->bytes_since_tindex = 0;
    s->max_ts_ms = INT64_MIN;
    s->end_offset = s->base;
    s->last_rel = 0;
}

static int index_push(tern_emb_seg *s, uint32_t rel, uint32_t pos)
{
    if (s->n_index == s->cap_index) {
        size_t cap = s->cap_index ? s->cap_index * 2 : 64;
        tern_emb_index_entry *n = tern_realloc(s->index, cap * sizeof *n);
        if (!n)
            return TERN_ENOMEM;
        s->index = n;
        s->cap_index = cap;
    }
    s->index[s->n_index++] = (tern_emb_index_entry) { rel, pos };
    return 0;
}

static int tindex_push(tern_emb_seg *s, int64_t ts, uint32_t rel)
{
    if (s->n_tindex == s->cap_tindex) {
        size_t cap = s->cap_tindex ? s->cap_tindex * 2 : 16;
        tern_emb_time_entry *n = tern_realloc(s->tindex, cap * sizeof *n);
        if (!n)
            return TERN_ENOMEM;
        s->tindex = n;
        s->cap_tindex = cap;
    }
    s->tindex[s->n_tindex++] = (tern_emb_time_entry) { ts, rel };
    return 0;
}

/* seg_note_batch records a whole batch at pos in the indexes. An index entry that cannot be
 * allocated is skipped: indexes are hints, lookups then scan a little further. */
static void seg_note_batch(tern_emb_seg *s, uint64_t pos, const tern_emb_batch_hdr *h)
{
    uint32_t rel = (uint32_t)(h->base_offset - s->base);
    uint64_t len = 4u + (uint64_t)h->length;
    if (s->n_index == 0 || s->bytes_since_index >= INDEX_INTERVAL_BYTES) {
        if (index_push(s, rel, (uint32_t)pos) == 0)
            s->bytes_since_index = 0;
    }
    s->bytes_since_index += len;
    if (h->max_ts_ms > s->max_ts_ms) {
        if (s->n_tindex == 0 || s->bytes_since_tindex >= INDEX_INTERVAL_BYTES) {
            if (tindex_push(s, h->max_ts_ms, rel) == 0)
                s->bytes_since_tindex = 0;
        }
        s->max_ts_ms = h->max_ts_ms;
    }
    s->bytes_since_tindex += len;
    s->last_rel = rel;
    if (h->base_offset + h->count > s->end_offset)
        s->end_offset = h->base_offset + h->count;
}

/* seg_lookup returns the position to start scanning from for offset (index entry at or
 * before it). */
static uint64_t seg_lookup(const tern_emb_seg *s, int64_t offset)
{
    if (offset <= s->base || s->n_index == 0)
        return 0;
    int64_t rel64 = offset - s->base;
    uint32_t rel = rel64 > UINT32_MAX ? UINT32_MAX : (uint32_t)rel64;
    size_t lo = 0, hi = s->n_index; /* find the last entry with rel_offset <= rel */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->index[mid].rel_offset <= rel)
            lo = mid;
        else
            hi = mid;
    }
    return s->index[lo].rel_offset <= rel ? s->index[lo].position : 0;
}

/* write_index_files writes the segment's .index and .timeindex (hints: no fsync). */
static void write_index_files(const char *dir, tern_emb_seg *s)
{
    if (s->deleted)
        return;
    size_t n_t = s->n_tindex;
    bool final_t
        = s->max_ts_ms != INT64_MIN && (n_t == 0 || s->tindex[n_t - 1].ts_ms < s->max_ts_ms);
    size_t ilen = INDEX_HDR + s->n_index * INDEX_ENTRY;
    size_t tlen = INDEX_HDR + (n_t + (final_t ? 1 : 0)) * TINDEX_ENTRY;
    uint8_t *ib = tern_malloc(ilen), *tb = tern_malloc(tlen);
    char *ip = seg_file(dir, s->base, ".index"), *tp = seg_file(dir, s->base, ".timeindex");
    if (!ib || !tb || !ip || !tp)
        goto out;
    memcpy(ib, "TLIX", 4);
    memcpy(tb, "TLTI", 4);
    ib[4] = tb[4] = INDEX_VERSION;
    ib[5] = ib[6] = ib[7] = tb[5] = tb[6] = tb[7] = 0;
    for (size_t i = 0; i < s->n_index; i++) {
        put_le32(ib + INDEX_HDR + i * INDEX_ENTRY, s->index[i].rel_offset);
        put_le32(ib + INDEX_HDR + i * INDEX_ENTRY + 4, s->index[i].position);
    }
    for (size_t i = 0; i < n_t + (final_t ? 1 : 0); i++) {
        uint8_t *e = tb + INDEX_HDR + i * TINDEX_ENTRY;
        int64_t ts = i < n_t ? s->tindex[i].ts_ms : s->max_ts_ms;
        uint32_t rel = i < n_t ? s->tindex[i].rel_offset : s->last_rel;
        put_le32(e, (uint32_t)(uint64_t)ts);
        put_le32(e + 4, (uint32_t)((uint64_t)ts >> 32));
        put_le32(e + 8, rel);
    }
    const char *paths[2] = { ip, tp };
    const uint8_t *bufs[2] = { ib, tb };
    size_t lens[2] = { ilen, tlen };
    for (int k = 0; k < 2; k++) {
        int fd = open(paths[k], O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0)
            continue;
        if (tern_log__pwrite_all(fd, bufs[k], lens[k], 0) != 0)
            tern_log__warn("could not write index %s", paths[k]);
        close(fd);
    }
out:
    tern_free(ib);
    tern_free(tb);
    tern_free(ip);
    tern_free(tp);
}

static int read_whole(const char *path, tern_buf *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? 0 : -errno;
    if (rc == 0 && st.st_size > (off_t)(64u << 20))
        rc = TERN_ECORRUPT;
    tern_buf_reset(out);
    if (rc == 0 && tern_buf_reserve(out, (size_t)st.st_size + 1) != 0)
        rc = TERN_ENOMEM;
    if (rc == 0)
        rc = tern_log__pread_all(fd, out->data, (size_t)st.st_size, 0);
    if (rc == 0)
        out->len = (size_t)st.st_size;
    close(fd);
    return rc;
}

/* load_indexes reads and checks a closed segment's index files. Returns 0 when both are
 * present and consistent with the segment, TERN_ECORRUPT (or -errno) otherwise. */
static int load_indexes(const char *dir, tern_emb_seg *s)
{
    tern_buf b = TERN_BUF_INIT;
    char *ip = seg_file(dir, s->base, ".index"), *tp = seg_file(dir, s->base, ".timeindex");
    int rc = (ip && tp) ? read_whole(ip, &b) : TERN_ENOMEM;
    seg_reset_index(s);
    if (rc != 0)
        goto out;
    rc = TERN_ECORRUPT;
    if (b.len < INDEX_HDR || memcmp(b.data, "TLIX", 4) != 0 || b.data[4] != INDEX_VERSION
        || (b.len - INDEX_HDR) % INDEX_ENTRY != 0)
        goto out;
    size_t n = (b.len - INDEX_HDR) / INDEX_ENTRY;
    if ((n == 0) != (s->size == 0))
        goto out;
    for (size_t i = 0; i < n; i++) {
        uint32_t rel = get_le32(b.data + INDEX_HDR + i * INDEX_ENTRY);
        uint32_t pos = get_le32(b.data + INDEX_HDR + i * INDEX_ENTRY + 4);
        if (pos >= s->size || (i == 0 && pos != 0))
            goto out;
        if (i > 0 && (rel <= s->index[i - 1].rel_offset || pos <= s->index[i - 1].position))
            goto out;
        if (index_push(s, rel, pos) != 0) {
            rc = TERN_ENOMEM;
            goto out;
        }
    }
    if (n > 0) { /* the last entry must point at a batch holding its offset */
        uint8_t hdr[TERN_EMB_BATCH_HDR];
        tern_emb_batch_hdr h;
        const tern_emb_index_entry *e = &s->index[n - 1];
        if (tern_log__pread_all(s->fd, hdr, sizeof hdr, e->position) != 0
            || tern_log__batch_parse_header(hdr, &h) != 0
            || h.base_offset != s->base + e->rel_offset)
            goto out;
    }
    if (read_whole(tp, &b) != 0)
        goto out;
    if (b.len < INDEX_HDR || memcmp(b.data, "TLTI", 4) != 0 || b.data[4] != INDEX_VERSION
        || (b.len - INDEX_HDR) % TINDEX_ENTRY != 0)
        goto out;
    n = (b.len - INDEX_HDR) / TINDEX_ENTRY;
    if ((n == 0) != (s->size == 0))
        goto out;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *e = b.data + INDEX_HDR + i * TINDEX_ENTRY;
        int64_t ts = (int64_t)((uint64_t)get_le32(e) | (uint64_t)get_le32(e + 4) << 32);
        uint32_t rel = get_le32(e + 8);
        if (i > 0 && (ts < s->tindex[i - 1].ts_ms || rel < s->tindex[i - 1].rel_offset))
            goto out;
        if (tindex_push(s, ts, rel) != 0) {
            rc = TERN_ENOMEM;
            goto out;
        }
        s->max_ts_ms = ts;
        s->last_rel = rel;
    }
    rc = 0;
out:
    if (rc != 0)
        seg_reset_index(s);
    tern_buf_free(&b);
    tern_free(ip);
    tern_free(tp);
    return rc;
}

/* ---- scanning a segment (recovery, index rebuild) ---------------------------------------------
 */

/* check_batch_at reads the batch at pos and checks structure, bounds and CRC. *parsed says
 * whether the header itself was sound (then *h is set). Returns 0, TERN_ECORRUPT, or -errno. */
static int check_batch_at(const tern_emb_seg *s, uint64_t pos, uint64_t size, int64_t expected,
    tern_buf *scratch, tern_emb_batch_hdr *h, bool *parsed)
{
    uint8_t hdr[TERN_EMB_BATCH_HDR];
    *parsed = false;
    if (size - pos < TERN_EMB_BATCH_HDR)
        return TERN_ECORRUPT;
    int rc = tern_log__pread_all(s->fd, hdr, sizeof hdr, pos);
    if (rc != 0)
        return rc == TERN_EPARTIAL ? TERN_ECORRUPT : rc;
    if (tern_log__batch_parse_header(hdr, h) != 0 || h->base_offset < expected
        || h->base_offset - s->base + (int64_t)h->count > (int64_t)UINT32_MAX)
        return TERN_ECORRUPT;
    *parsed = true;
    uint64_t len = 4u + (uint64_t)h->length;
    if (len > size - pos)
        return TERN_ECORRUPT;
    tern_buf_reset(scratch);
    if (tern_buf_reserve(scratch, len) != 0)
        return TERN_ENOMEM;
    rc = tern_log__pread_all(s->fd, scratch->data, len, pos);
    if (rc != 0)
        return rc == TERN_EPARTIAL ? TERN_ECORRUPT : rc;
    return tern_log__batch_crc_ok(scratch->data, h) ? 0 : TERN_ECORRUPT;
}

/* rest_is_zero says whether bytes [pos, size) are all zero (a zero-filled torn tail). */
static bool rest_is_zero(const tern_emb_seg *s, uint64_t pos, uint64_t size)
{
    uint8_t chunk[4096];
    while (pos < size) {
        size_t n = size - pos < sizeof chunk ? (size_t)(size - pos) : sizeof chunk;
        if (tern_log__pread_all(s->fd, chunk, n, pos) != 0)
            return false;
        for (size_t i = 0; i < n; i++)
            if (chunk[i])
                return false;
        pos += n;
    }
    return true;
}

/* resync looks for the next whole valid batch after a bad one, starting at from. Returns its
 * position, or UINT64_MAX if there is none. */
static uint64_t resync(
    const tern_emb_seg *s, uint64_t from, uint64_t size, int64_t expected, tern_buf *scratch)
{
    tern_buf rest = TERN_BUF_INIT;
    uint64_t found = UINT64_MAX;
    if (from >= size || size - from < TERN_EMB_BATCH_HDR || tern_buf_reserve(&rest, size - from))
        goto out;
    if (tern_log__pread_all(s->fd, rest.data, size - from, from) != 0)
        goto out;
    rest.len = size - from;
    for (size_t i = 0; i + TERN_EMB_BATCH_HDR <= rest.len; i++) {
        const uint8_t *p = rest.data + i;
        if (p[8] != TERN_EMB_BATCH_MAGIC || p[10] || p[11])
            continue;
        tern_emb_batch_hdr h;
        bool parsed;
        if (tern_log__batch_parse_header(p, &h) != 0 || 4u + (uint64_t)h.length > rest.len - i)
            continue;
        if (check_batch_at(s, from + i, size, expected, scratch, &h, &parsed) == 0) {
            found = from + i;
            break;
        }
    }
out:
    tern_buf_free(&rest);
    return found;
}

/*
 * scan_segment rebuilds the segment's indexes from its batches and returns the end of its
 * valid bytes in *valid_end. A bad batch is a torn tail when nothing valid follows it and it
 * is short, reaches exactly the end, or the rest is zeros; otherwise it is corruption: logged,
 * counted, the segment sealed, and the scan resumes at the next valid batch if one is found.
 * Returns 0 or -errno / TERN_ENOMEM.
 */
static int scan_segment(tern_emb_part *p, tern_emb_seg *s, uint64_t size, uint64_t *valid_end)
{
    tern_buf scratch = TERN_BUF_INIT;
    int64_t expected = s->base;
    uint64_t pos = 0;
    int rc = 0;
    seg_reset_index(s);
    *valid_end = size;
    while (pos < size) {
        tern_emb_batch_hdr h;
        bool parsed;
        rc = check_batch_at(s, pos, size, expected, &scratch, &h, &parsed);
        if (rc == 0) {
            seg_note_batch(s, pos, &h);
            pos += 4u + (uint64_t)h.length;
            expected = h.base_offset + h.count;
            continue;
        }
        if (rc != TERN_ECORRUPT)
            goto out;
        rc = 0;
        uint64_t next = UINT64_MAX;
        uint64_t after = parsed ? pos + 4u + (uint64_t)h.length : UINT64_MAX;
        if (size - pos < TERN_EMB_BATCH_HDR || (!parsed && rest_is_zero(s, pos, size))) {
            *valid_end = pos; /* short or zero-filled tail */
            break;
        }
        if (parsed && after < size) {
            bool ok;
            tern_emb_batch_hdr h2;
            if (check_batch_at(s, after, size, expected, &scratch, &h2, &ok) == 0)
                next = after;
        }
        if (next == UINT64_MAX)
            next = resync(s, pos + 1, size, expected, &scratch);
        if (next == UINT64_MAX && parsed && after >= size) {
            *valid_end = pos; /* the last batch is short or fails its CRC: torn */
            break;
        }
        tern_log__warn("%s: corrupt batch at byte %" PRIu64 " (after offset %" PRId64
                       "); reads stop there",
            s->path, pos, expected - 1);
        atomic_fetch_add(&p->counters->corrupt_batches, 1);
        s->sealed = true;
        if (parsed && h.base_offset + h.count > s->end_offset)
            s->end_offset = h.base_offset + h.count;
        if (s->end_offset <= s->base) /* the next segment needs a name of its own */
            s->end_offset = s->base + 1;
        if (next == UINT64_MAX)
            break;
        pos = next;
    }
out:
    tern_buf_free(&scratch);
    return rc;
}

/* ---- opening a partition ----------------------------------------------------------------------
 */

static int parse_seg_name(const char *name, int64_t *base)
{
    size_t n = strlen(name);
    if (n != 24 || strcmp(name + 20, ".log") != 0)
        return -1;
    int64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (INT64_C(1) << 58))
            return -1;
        v = v * 10 + (name[i] - '0');
    }
    if (v > (INT64_C(1) << 62))
        return -1;
    *base = v;
    return 0;
}

static int cmp_seg(const void *a, const void *b)
{
    const tern_emb_seg *x = *(tern_emb_seg *const *)a, *y = *(tern_emb_seg *const *)b;
    return x->base < y->base ? -1 : x->base > y->base;
}

static int segs_push(tern_emb_part *p, tern_emb_seg *s)
{
    if (p->n_segs == p->cap_segs) {
        size_t cap = p->cap_segs ? p->cap_segs * 2 : 8;
        tern_emb_seg **n = tern_realloc(p->segs, cap * sizeof *n);
        if (!n)
            return TERN_ENOMEM;
        p->segs = n;
        p->cap_segs = cap;
    }
    p->segs[p->n_segs++] = s;
    return 0;
}

int tern_log__part_open(tern_emb_part *p, const char *dir)
{
    int rc = tern_log__mkdir(dir);
    if (rc != 0)
        return rc;
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t base;
        if (parse_seg_name(e->d_name, &base) != 0)
            continue;
        tern_emb_seg *s = seg_new(dir, base, -1);
        if (!s || segs_push(p, s) != 0) {
            if (s)
                seg_free(s);
            rc = TERN_ENOMEM;
            break;
        }
    }
    closedir(d);
    if (rc != 0)
        return rc;
    if (p->n_segs > 1)
        qsort(p->segs, p->n_segs, sizeof *p->segs, cmp_seg);
    for (size_t i = 0; i < p->n_segs; i++) {
        tern_emb_seg *s = p->segs[i];
        bool last = i + 1 == p->n_segs;
        s->fd = open(s->path, O_RDWR | O_CLOEXEC);
        struct stat st;
        if (s->fd < 0 || fstat(s->fd, &st) != 0)
            return -errno;
        s->size = (uint64_t)st.st_size;
        if (s->size > (UINT64_C(4) << 30)) {
            tern_log__error("%s: segment larger than 4 GiB", s->path);
            return TERN_ECORRUPT;
        }
        if (!last && load_indexes(dir, s) == 0) {
            p->total_bytes += s->size;
            continue;
        }
        if (!last)
            tern_log__info(
                "%s: index files missing or inconsistent: rebuilt from the segment", s->path);
        uint64_t valid_end;
        rc = scan_segment(p, s, s->size, &valid_end);
        if (rc != 0)
            return rc;
        if (last && valid_end < s->size) {
            tern_log__warn("%s: torn tail: truncated %" PRIu64 " bytes after the last whole "
                           "batch (byte %" PRIu64 ")",
                s->path, s->size - valid_end, valid_end);
            if (ftruncate(s->fd, (off_t)valid_end) != 0 || fdatasync(s->fd) != 0)
                return -errno;
            s->size = valid_end;
        }
        if (!last)
            write_index_files(dir, s);
        p->total_bytes += s->size;
    }
    if (p->n_segs > 0) {
        tern_emb_seg *last = p->segs[p->n_segs - 1];
        p->hwm = last->end_offset > last->base ? last->end_offset : last->base;
    }
    p->next_offset = p->hwm;
    atomic_fetch_add(p->disk_bytes, p->total_bytes);
    p->loaded = true;
    return 0;
}

void tern_log__part_close(tern_emb_part *p)
{
    if (p->n_segs > 0 && p->loaded)
        write_index_files(p->dir, p->segs[p->n_segs - 1]);
    for (size_t i = 0; i < p->n_segs; i++)
        seg_free(p->segs[i]);
    tern_free(p->segs);
    p->segs = NULL;
    p->n_segs = p->cap_segs = 0;
}

/* ---- writing ----------------------------------------------------------------------------------
 */

static int roll(tern_emb_part *p, int64_t base)
{
    if (p->n_segs > 0)
        write_index_files(p->dir, p->segs[p->n_segs - 1]);
    tern_emb_seg *s = seg_new(p->dir, base, -1);
    if (!s)
        return TERN_ENOMEM;
    s->fd = open(s->path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int rc = s->fd < 0 ? -errno : tern_log__fsync_dir(p->dir);
    if (rc == 0) {
        pthread_mutex_lock(&p->smu);
        rc = segs_push(p, s);
        pthread_mutex_unlock(&p->smu);
    }
    if (rc != 0) {
        if (s->fd >= 0)
            unlink(s->path);
        seg_free(s);
        tern_log__error(
            "%s: cannot start segment %" PRId64 ": %s", p->dir, base, tern_strerror(rc));
    }
    return rc;
}

/* seg_written: where the next batch goes (after batches written but not yet committed). */
static uint64_t seg_written(const tern_emb_seg *s)
{
    return s->wsize > s->size ? s->wsize : s->size;
}

static bool needs_roll(const tern_emb_seg *s, const tern_emb_batch_hdr *h, uint64_t segment_bytes)
{
    uint64_t len = 4u + (uint64_t)h->length;
    uint64_t at = s ? seg_written(s) : 0;
    return !s || s->sealed || (at > 0 && at + len > segment_bytes)
        || h->base_offset - s->base + (int64_t)h->count > (int64_t)UINT32_MAX;
}

int tern_log__part_write(tern_emb_part *p, const uint8_t *batch, const tern_emb_batch_hdr *h,
    uint64_t segment_bytes, tern_emb_seg **seg_out, uint64_t *pos_out)
{
    int rc;
    if (p->need_truncate && (rc = tern_log__part_truncate(p)) != 0)
        return rc;
    size_t len = 4u + h->length;
    tern_emb_seg *s = p->n_segs ? p->segs[p->n_segs - 1] : NULL;
    if (needs_roll(s, h, segment_bytes)) {
        if ((rc = roll(p, h->base_offset)) != 0)
            return rc;
        s = p->segs[p->n_segs - 1];
    }
    uint64_t at = seg_written(s);
    rc = tern_log__pwrite_all(s->fd, batch, len, at);
    if (rc != 0)
        return rc;
    s->wsize = at + len;
    *seg_out = s;
    *pos_out = at;
    return 0;
}

bool tern_log__part_write_barrier(
    tern_emb_part *p, const tern_emb_batch_hdr *h, uint64_t segment_bytes)
{
    return p->need_truncate
        || needs_roll(p->n_segs ? p->segs[p->n_segs - 1] : NULL, h, segment_bytes);
}

void tern_log__part_start_writeback(tern_emb_seg *seg, uint64_t pos, uint64_t len)
{
    /* Advisory: a failure here only loses the overlap; fdatasync still decides durability. */
    (void)sync_file_range(seg->fd, (off_t)pos, (off_t)len, SYNC_FILE_RANGE_WRITE);
}

int tern_log__part_sync(tern_emb_part *p, tern_emb_seg *seg)
{
    (void)p;
    return fdatasync(seg->fd) == 0 ? 0 : -errno;
}

void tern_log__part_commit(
    tern_emb_part *p, tern_emb_seg *seg, uint64_t pos, const tern_emb_batch_hdr *h)
{
    uint64_t len = 4u + (uint64_t)h->length;
    pthread_mutex_lock(&p->smu);
    seg_note_batch(seg, pos, h);
    seg->size = pos + len;
    p->total_bytes += len;
    p->hwm = h->base_offset + h->count;
    pthread_mutex_unlock(&p->smu);
    atomic_fetch_add(p->disk_bytes, len);
}

int tern_log__part_truncate(tern_emb_part *p)
{
    p->need_truncate = true;
    if (p->n_segs == 0) {
        p->need_truncate = false;
        return 0;
    }
    tern_emb_seg *s = p->segs[p->n_segs - 1];
    s->wsize = s->size;
    if (ftruncate(s->fd, (off_t)s->size) != 0) {
        int rc = -errno;
        tern_log__error("%s: cannot truncate back to %" PRIu64 " bytes: %s", s->path, s->size,
            tern_strerror(rc));
        return rc;
    }
    p->need_truncate = false;
    return 0;
}

/* ---- reading ----------------------------------------------------------------------------------
 */

static void seg_release(tern_emb_part *p, tern_emb_seg *s)
{
    pthread_mutex_lock(&p->smu);
    bool gone = --s->refs == 0 && s->deleted;
    pthread_mutex_unlock(&p->smu);
    if (gone)
        seg_free(s);
}

/* next_seg (under smu) returns the first segment with base > base, or NULL. */
static tern_emb_seg *next_seg(tern_emb_part *p, int64_t base)
{
    for (size_t i = 0; i < p->n_segs; i++)
        if (p->segs[i]->base > base)
            return p->segs[i];
    return NULL;
}

int tern_log__part_fetch(tern_emb_part *p, int64_t offset, tern_emb_hint *hint, tern_buf *raw,
    tern_emb_batch_hdr *h, uint64_t *bad_pos, int64_t *bad_base)
{
    pthread_mutex_lock(&p->smu);
    int64_t hwm = p->hwm;
    if (offset >= hwm || p->n_segs == 0) {
        pthread_mutex_unlock(&p->smu);
        return 0;
    }
    tern_emb_seg *s = NULL;
    uint64_t pos = 0;
    if (hint && hint->next_offset == offset) {
        for (size_t i = 0; i < p->n_segs && !s; i++)
            if (p->segs[i]->base == hint->seg_base)
                s = p->segs[i];
        pos = hint->position;
    }
    if (!s) {
        size_t i = 0;
        while (i + 1 < p->n_segs && p->segs[i + 1]->base <= offset)
            i++;
        s = p->segs[i];
        pos = seg_lookup(s, offset);
    }
    s->refs++;
    uint64_t size = s->size;
    pthread_mutex_unlock(&p->smu);

    int rc;
    for (;;) {
        if (size - pos < TERN_EMB_BATCH_HDR || pos >= size) {
            if (pos < size) {
                rc = TERN_ECORRUPT; /* durable bytes end inside a header */
                break;
            }
            pthread_mutex_lock(&p->smu);
            tern_emb_seg *n = next_seg(p, s->base);
            if (n) {
                n->refs++;
                size = n->size;
            }
            pthread_mutex_unlock(&p->smu);
            seg_release(p, s);
            s = n;
            pos = 0;
            if (!s)
                return 0;
            continue;
        }
        uint8_t hdr[TERN_EMB_BATCH_HDR];
        rc = tern_log__pread_all(s->fd, hdr, sizeof hdr, pos);
        if (rc != 0) {
            rc = rc == TERN_EPARTIAL ? TERN_ECORRUPT : rc;
            break;
        }
        if (tern_log__batch_parse_header(hdr, h) != 0 || 4u + (uint64_t)h->length > size - pos) {
            rc = TERN_ECORRUPT;
            break;
        }
        uint64_t len = 4u + (uint64_t)h->length;
        if (h->base_offset + h->count <= offset) {
            pos += len;
            continue;
        }
        if (h->base_offset >= hwm) {
            rc = 0;
            break;
        }
        tern_buf_reset(raw);
        if (tern_buf_reserve(raw, len) != 0) {
            rc = TERN_ENOMEM;
            break;
        }
        rc = tern_log__pread_all(s->fd, raw->data, len, pos);
        if (rc != 0) {
            rc = rc == TERN_EPARTIAL ? TERN_ECORRUPT : rc;
            break;
        }
        raw->len = len;
        if (!tern_log__batch_crc_ok(raw->data, h)) {
            rc = TERN_ECORRUPT;
            break;
        }
        if (hint) {
            hint->seg_base = s->base;
            hint->position = pos + len;
            hint->next_offset = h->base_offset + h->count;
        }
        rc = 1;
        break;
    }
    if (rc == TERN_ECORRUPT) {
        *bad_pos = pos;
        *bad_base = s->base;
    }
    seg_release(p, s);
    return rc;
}

void tern_log__part_offsets(tern_emb_part *p, int64_t *earliest, int64_t *latest)
{
    pthread_mutex_lock(&p->smu);
    int64_t hi = p->hwm;
    int64_t lo = p->n_segs ? p->segs[0]->base : hi;
    pthread_mutex_unlock(&p->smu);
    *earliest = lo < hi ? lo : hi;
    *latest = hi;
}

/* ---- retention --------------------------------------------------------------------------------
 */

int tern_log__part_retention(
    tern_emb_part *p, int64_t now_ms, int64_t retention_ms, uint64_t retention_bytes)
{
    int n_deleted = 0;
    pthread_mutex_lock(&p->smu);
    while (p->n_segs > 1) {
        tern_emb_seg *s = p->segs[0];
        bool by_age
            = retention_ms > 0 && s->max_ts_ms != INT64_MIN && s->max_ts_ms < now_ms - retention_ms;
        bool by_size = retention_bytes > 0 && p->total_bytes - s->size >= retention_bytes;
        if (!by_age && !by_size)
            break;
        memmove(p->segs, p->segs + 1, (p->n_segs - 1) * sizeof *p->segs);
        p->n_segs--;
        p->total_bytes -= s->size;
        atomic_fetch_sub(p->disk_bytes, s->size);
        static const char *const exts[] = { ".index", ".timeindex" };
        for (int k = 0; k < 2; k++) {
            char *f = seg_file(p->dir, s->base, exts[k]);
            if (f)
                unlink(f);
            tern_free(f);
        }
        unlink(s->path);
        tern_log__info("%s: retention deleted segment %" PRId64 " (%" PRIu64 " bytes, %s)", p->dir,
            s->base, s->size, by_age ? "age" : "size");
        s->deleted = true;
        if (s->refs == 0)
            seg_free(s);
        n_deleted++;
    }
    pthread_mutex_unlock(&p->smu);
    return n_deleted;
}

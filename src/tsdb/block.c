/*
 * block.c: immutable block files (format: docs/formats/tsdb-block.md). A block holds every
 * series' points for one time range: the chunks (tsdb codec) device by device, then an index
 * read in place through mmap (a sorted table of fixed-size device entries, per-device varint
 * series lists, strings, metric names), a footer locating the sections and a CRC32C over the
 * header and index. Each chunk carries its own CRC in the index, checked before decoding, so a
 * flipped byte gives TERN_ECORRUPT, never a wrong answer.
 *
 * Writing goes to DIR/NNNN.tmp, fsync, rename to DIR/NNNN.blk (NNNN = the block's sequence in
 * hex; DIR is blocks/ for raw points, warm/ for 1-minute windows), fsync of the directory: a
 * block is either whole or absent.
 */
#include "base/alloc.h"
#include "base/crc32c.h"
#include "base/error.h"
#include "base/varint.h"
#include "tsdb/tsdb_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define BLOCK_MAGIC 0x424e5254u /* "TRNB" little-endian */
#define BLOCK_VERSION 1u
#define BLOCK_HEADER 80u
#define BLOCK_FOOTER 72u
#define DEVICE_ENTRY 32u

static void put_le16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static uint16_t get_le16(const uint8_t *p)
{
    return (uint16_t)(p[0] | (p[1] << 8));
}
static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

/* ---- writer ---- */

struct tsdb_block_writer {
    tern_tsdb *db;
    char *tmp_path, *final_path;
    FILE *f;
    uint64_t seq, src_seq;
    int64_t min_ts, max_ts;     /* declared range */
    int64_t seen_min, seen_max; /* actual points */
    uint64_t n_points, chunk_off;
    uint32_t n_devices, n_series;
    tern_buf devices, series, strings, metrics, chunk, scratch;
    /* block-local metric names: a small open hash of indexes into metric_names */
    char **metric_names;
    uint32_t *metric_lens;
    uint32_t n_metrics, cap_metrics;
    uint32_t *metric_slots;
    uint32_t metric_slot_cap;
    uint8_t *cur_device; /* the open device entry in devices.data (offset kept) */
    size_t cur_device_off;
    bool has_device;
};

static int writer_metric_index(tsdb_block_writer *w, const char *name, size_t len, uint32_t *out)
{
    if ((w->n_metrics + 1) * 2 > w->metric_slot_cap) {
        uint32_t ncap = w->metric_slot_cap ? w->metric_slot_cap * 2 : 64;
        uint32_t *slots = tern_calloc(ncap, sizeof(*slots));
        if (!slots)
            return TERN_ENOMEM;
        for (uint32_t i = 0; i < w->n_metrics; i++) {
            uint32_t h
                = (uint32_t)tsdb_name_hash(w->metric_names[i], w->metric_lens[i]) & (ncap - 1);
            while (slots[h])
                h = (h + 1) & (ncap - 1);
            slots[h] = i + 1;
        }
        tern_free(w->metric_slots);
        w->metric_slots = slots;
        w->metric_slot_cap = ncap;
    }
    uint32_t mask = w->metric_slot_cap - 1;
    uint32_t h = (uint32_t)tsdb_name_hash(name, len) & mask;
    for (; w->metric_slots[h]; h = (h + 1) & mask) {
        uint32_t i = w->metric_slots[h] - 1;
        if (w->metric_lens[i] == len && memcmp(w->metric_names[i], name, len) == 0) {
            *out = i;
            return 0;
        }
    }
    if (w->n_metrics == w->cap_metrics) {
        uint32_t ncap = w->cap_metrics ? w->cap_metrics * 2 : 32;
        char **names = tern_realloc(w->metric_names, ncap * sizeof(*names));
        if (!names)
            return TERN_ENOMEM;
        w->metric_names = names;
        uint32_t *lens = tern_realloc(w->metric_lens, ncap * sizeof(*lens));
        if (!lens)
            return TERN_ENOMEM;
        w->metric_lens = lens;
        w->cap_metrics = ncap;
    }
    char *copy = tern_strndup(name, len);
    if (!copy)
        return TERN_ENOMEM;
    int rc = tern_varint_append_u64(&w->metrics, len);
    if (!rc)
        rc = tern_buf_append(&w->metrics, name, len);
    if (rc) {
        tern_free(copy);
        return rc;
    }
    w->metric_names[w->n_metrics] = copy;
    w->metric_lens[w->n_metrics] = (uint32_t)len;
    w->metric_slots[h] = w->n_metrics + 1;
    *out = w->n_metrics++;
    return 0;
}

int tsdb_block_writer_open(tern_tsdb *db, const char *subdir, int64_t min_ts, int64_t max_ts,
    uint64_t src_seq, tsdb_block_writer **out)
{
    tsdb_block_writer *w = tern_calloc(1, sizeof(*w));
    if (!w)
        return TERN_ENOMEM;
    w->db = db;
    /* atomic: stream windows are written from the stream's thread beside maintenance */
    w->seq = __atomic_fetch_add(&db->next_block_seq, 1, __ATOMIC_RELAXED);
    w->min_ts = min_ts;
    w->max_ts = max_ts;
    w->src_seq = src_seq;
    w->seen_min = INT64_MAX;
    w->seen_max = INT64_MIN;
    size_t n = strlen(db->dir) + 64;
    w->tmp_path = tern_malloc(n);
    w->final_path = tern_malloc(n);
    if (!w->tmp_path || !w->final_path) {
        tsdb_block_writer_abort(w);
        return TERN_ENOMEM;
    }
    snprintf(w->tmp_path, n, "%s/%s/%016llx.tmp", db->dir, subdir, (unsigned long long)w->seq);
    snprintf(w->final_path, n, "%s/%s/%016llx.blk", db->dir, subdir, (unsigned long long)w->seq);
    w->f = fopen(w->tmp_path, "wb");
    if (!w->f) {
        int e = -errno;
        tsdb_block_writer_abort(w);
        return e;
    }
    setvbuf(w->f, NULL, _IOFBF, 1 << 20);
    uint8_t zero[BLOCK_HEADER] = { 0 };
    if (fwrite(zero, 1, sizeof(zero), w->f) != sizeof(zero)) {
        tsdb_block_writer_abort(w);
        return TERN_EIO;
    }
    w->chunk_off = BLOCK_HEADER;
    *out = w;
    return 0;
}

int tsdb_block_writer_device(tsdb_block_writer *w, const char *name, size_t len, const char *tags)
{
    if (len == 0 || len > 65535)
        return TERN_EINVAL;
    size_t tags_len = tags ? strlen(tags) : 0;
    uint8_t e[DEVICE_ENTRY] = { 0 };
    put_le32(e, (uint32_t)w->strings.len);
    put_le16(e + 4, (uint16_t)len);
    put_le32(e + 8, (uint32_t)(w->strings.len + len));
    put_le32(e + 12, (uint32_t)tags_len);
    put_le32(e + 16, (uint32_t)w->series.len);
    put_le32(e + 20, 0);
    put_le64(e + 24, w->chunk_off);
    int rc = tern_buf_append(&w->strings, name, len);
    if (!rc && tags_len)
        rc = tern_buf_append(&w->strings, tags, tags_len);
    if (!rc)
        rc = tern_buf_append(&w->devices, e, sizeof(e));
    if (rc)
        return rc;
    w->cur_device_off = w->devices.len - DEVICE_ENTRY;
    w->has_device = true;
    w->n_devices++;
    return 0;
}

int tsdb_block_writer_chunk(tsdb_block_writer *w, const char *metric, size_t metric_len,
    uint8_t kind, const uint8_t *chunk, size_t len, uint32_t count, int64_t lo, int64_t hi)
{
    if (!w->has_device || count == 0 || lo > hi || lo < w->min_ts || hi > w->max_ts)
        return TERN_EINVAL;
    uint32_t mi;
    int rc = writer_metric_index(w, metric, metric_len, &mi);
    if (rc)
        return rc;
    if (fwrite(chunk, 1, len, w->f) != len)
        return TERN_EIO;
    uint8_t crc[4];
    put_le32(crc, tern_crc32c_update(0, chunk, len));
    rc = tern_varint_append_u64(&w->series, mi);
    if (!rc)
        rc = tern_buf_append_u8(&w->series, kind);
    if (!rc)
        rc = tern_varint_append_u64(&w->series, count);
    if (!rc)
        rc = tern_varint_append_u64(&w->series, (uint64_t)lo - (uint64_t)w->min_ts);
    if (!rc)
        rc = tern_varint_append_u64(&w->series, (uint64_t)hi - (uint64_t)lo);
    if (!rc)
        rc = tern_varint_append_u64(&w->series, len);
    if (!rc)
        rc = tern_buf_append(&w->series, crc, 4);
    if (rc)
        return rc;
    w->chunk_off += len;
    uint8_t *e = w->devices.data + w->cur_device_off;
    put_le32(e + 20, get_le32(e + 20) + 1);
    w->n_series++;
    w->n_points += count;
    if (lo < w->seen_min)
        w->seen_min = lo;
    if (hi > w->seen_max)
        w->seen_max = hi;
    return 0;
}

int tsdb_block_writer_series(tsdb_block_writer *w, const char *metric, size_t metric_len,
    uint8_t kind, const tsdb_point *pts, size_t n)
{
    if (!w->has_device || n == 0)
        return n == 0 ? 0 : TERN_EINVAL;
    /* A series longer than a chunk holds is written as consecutive entries of one metric. */
    for (size_t off = 0; off < n;) {
        size_t take = n - off;
        if (take > TERN_CHUNK_MAX_POINTS)
            take = TERN_CHUNK_MAX_POINTS;
        const tsdb_point *p = pts + off;
        tern_buf_reset(&w->scratch);
        int rc = tern_buf_reserve(&w->scratch, take * 2 * sizeof(int64_t));
        if (rc)
            return rc;
        int64_t *ts = (int64_t *)(void *)w->scratch.data;
        uint64_t *v = (uint64_t *)(void *)(w->scratch.data + take * sizeof(int64_t));
        for (size_t i = 0; i < take; i++) {
            ts[i] = p[i].ts;
            v[i] = p[i].v;
        }
        tern_buf_reset(&w->chunk);
        if (kind == TERN_VALUE_F64)
            rc = tern_chunk_encode_f64(&w->chunk, ts, (const double *)(const void *)v, take);
        else
            rc = tern_chunk_encode_i64(&w->chunk, ts, (const int64_t *)(const void *)v, take);
        if (rc == 0)
            rc = tsdb_block_writer_chunk(w, metric, metric_len, kind, w->chunk.data, w->chunk.len,
                (uint32_t)take, p[0].ts, p[take - 1].ts);
        if (rc)
            return rc;
        off += take;
    }
    return 0;
}

void tsdb_block_writer_abort(tsdb_block_writer *w)
{
    if (!w)
        return;
    if (w->f) {
        fclose(w->f);
        unlink(w->tmp_path);
    }
    tern_free(w->tmp_path);
    tern_free(w->final_path);
    tern_buf_free(&w->devices);
    tern_buf_free(&w->series);
    tern_buf_free(&w->strings);
    tern_buf_free(&w->metrics);
    tern_buf_free(&w->chunk);
    tern_buf_free(&w->scratch);
    for (uint32_t i = 0; i < w->n_metrics; i++)
        tern_free(w->metric_names[i]);
    tern_free(w->metric_names);
    tern_free(w->metric_lens);
    tern_free(w->metric_slots);
    tern_free(w);
}

static int fsync_dir_of(const char *path)
{
    char dir[4096];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) == 0 ? 0 : -errno;
    close(fd);
    return rc;
}

int tsdb_block_writer_finish(tsdb_block_writer *w, tsdb_block **out)
{
    int rc = 0;
    uint64_t off = w->chunk_off;
    uint64_t sec_off[4], sec_len[4];
    tern_buf *secs[4] = { &w->metrics, &w->devices, &w->series, &w->strings };
    uint32_t crc = 0;
    uint8_t hdr[BLOCK_HEADER] = { 0 };
    put_le32(hdr, BLOCK_MAGIC);
    hdr[4] = BLOCK_VERSION;
    put_le32(hdr + 8, w->n_devices);
    put_le32(hdr + 12, w->n_series);
    put_le32(hdr + 16, w->n_metrics);
    put_le64(hdr + 24, (uint64_t)(w->n_points ? w->seen_min : w->min_ts));
    put_le64(hdr + 32, (uint64_t)(w->n_points ? w->seen_max : w->max_ts));
    put_le64(hdr + 40, w->n_points);
    put_le64(hdr + 48, w->seq);
    put_le64(hdr + 56, w->src_seq);
    put_le64(hdr + 64, (uint64_t)w->min_ts); /* the base series entries' times count from */
    crc = tern_crc32c_update(crc, hdr, sizeof(hdr));
    for (int i = 0; i < 4 && rc == 0; i++) {
        sec_off[i] = off;
        sec_len[i] = secs[i]->len;
        if (secs[i]->len && fwrite(secs[i]->data, 1, secs[i]->len, w->f) != secs[i]->len)
            rc = TERN_EIO;
        crc = tern_crc32c_update(crc, secs[i]->data, secs[i]->len);
        off += secs[i]->len;
    }
    uint8_t foot[BLOCK_FOOTER];
    for (int i = 0; i < 4; i++) {
        put_le64(foot + 16 * i, sec_off[i]);
        put_le64(foot + 16 * i + 8, sec_len[i]);
    }
    crc = tern_crc32c_update(crc, foot, 64);
    put_le32(foot + 64, crc);
    put_le32(foot + 68, BLOCK_MAGIC);
    if (rc == 0 && fwrite(foot, 1, sizeof(foot), w->f) != sizeof(foot))
        rc = TERN_EIO;
    if (rc == 0 && fseek(w->f, 0, SEEK_SET) != 0)
        rc = -errno;
    if (rc == 0 && fwrite(hdr, 1, sizeof(hdr), w->f) != sizeof(hdr))
        rc = TERN_EIO;
    if (rc == 0 && fflush(w->f) != 0)
        rc = TERN_EIO;
    if (rc == 0 && w->db->opt.wal_fsync && fdatasync(fileno(w->f)) != 0)
        rc = -errno;
    if (fclose(w->f) != 0 && rc == 0)
        rc = TERN_EIO;
    w->f = NULL;
    if (rc == 0 && rename(w->tmp_path, w->final_path) != 0)
        rc = -errno;
    if (rc == 0 && w->db->opt.wal_fsync)
        rc = fsync_dir_of(w->final_path);
    if (rc == 0) {
        char err[200];
        rc = tsdb_block_load(w->final_path, out, err, sizeof(err));
    } else {
        unlink(w->tmp_path);
    }
    tsdb_block_writer_abort(w);
    return rc;
}

/* ---- reader ---- */

static int corrupt(char *err, size_t cap, const char *path, const char *why)
{
    if (err)
        snprintf(err, cap, "block %s: %s", path, why);
    return TERN_ECORRUPT;
}

int tsdb_block_load(const char *path, tsdb_block **out, char *err, size_t err_cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = -errno;
        close(fd);
        return e;
    }
    size_t len = (size_t)st.st_size;
    if (len < BLOCK_HEADER + BLOCK_FOOTER) {
        close(fd);
        return corrupt(err, err_cap, path, "shorter than a header and footer");
    }
    void *map = mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -errno;
    const uint8_t *m = map;
    const uint8_t *foot = m + len - BLOCK_FOOTER;
    int rc = 0;
    tsdb_block *b = NULL;
    if (get_le32(m) != BLOCK_MAGIC || get_le32(foot + 68) != BLOCK_MAGIC) {
        rc = corrupt(err, err_cap, path, "bad magic (not a tern block, or torn)");
        goto fail;
    }
    if (m[4] != BLOCK_VERSION) {
        if (err)
            snprintf(err, err_cap, "block %s: format version %u is not supported (want %u)", path,
                m[4], BLOCK_VERSION);
        rc = TERN_EVERSION;
        goto fail;
    }
    uint64_t off[4], sl[4];
    uint32_t crc = tern_crc32c_update(0, m, BLOCK_HEADER);
    for (int i = 0; i < 4; i++) {
        off[i] = get_le64(foot + 16 * i);
        sl[i] = get_le64(foot + 16 * i + 8);
        if (off[i] < BLOCK_HEADER || off[i] > len - BLOCK_FOOTER
            || sl[i] > len - BLOCK_FOOTER - off[i]) {
            rc = corrupt(err, err_cap, path, "section outside the file");
            goto fail;
        }
        crc = tern_crc32c_update(crc, m + off[i], (size_t)sl[i]);
    }
    crc = tern_crc32c_update(crc, foot, 64);
    if (crc != get_le32(foot + 64)) {
        rc = corrupt(err, err_cap, path, "index checksum mismatch");
        goto fail;
    }
    b = tern_calloc(1, sizeof(*b));
    if (!b) {
        rc = TERN_ENOMEM;
        goto fail;
    }
    b->path = tern_strdup(path);
    b->map = m;
    b->map_len = len;
    b->n_devices = get_le32(m + 8);
    b->n_series = get_le32(m + 12);
    b->n_metrics = get_le32(m + 16);
    b->min_ts = (int64_t)get_le64(m + 24);
    b->max_ts = (int64_t)get_le64(m + 32);
    b->n_points = get_le64(m + 40);
    b->seq = get_le64(m + 48);
    b->src_seq = get_le64(m + 56);
    b->base_ts = (int64_t)get_le64(m + 64);
    b->metrics = m + off[0];
    b->metrics_len = (size_t)sl[0];
    b->devices = m + off[1];
    b->series = m + off[2];
    b->series_len = (size_t)sl[2];
    b->strings = m + off[3];
    b->strings_len = (size_t)sl[3];
    b->chunks = m + BLOCK_HEADER;
    b->chunks_len = (size_t)(off[0] - BLOCK_HEADER);
    b->refs = 1;
    if (!b->path || (uint64_t)b->n_devices * DEVICE_ENTRY != sl[1] || b->min_ts > b->max_ts) {
        rc = b->path ? corrupt(err, err_cap, path, "device table size or range mismatch")
                     : TERN_ENOMEM;
        goto fail;
    }
    b->metric_off = tern_calloc(b->n_metrics ? b->n_metrics : 1, sizeof(uint32_t));
    if (!b->metric_off) {
        rc = TERN_ENOMEM;
        goto fail;
    }
    size_t pos = 0;
    for (uint32_t i = 0; i < b->n_metrics; i++) {
        uint64_t l;
        size_t hl;
        if (tern_varint_decode_u64(b->metrics + pos, b->metrics_len - pos, &l, &hl) != 0 || l == 0
            || l > b->metrics_len - pos - hl) {
            rc = corrupt(err, err_cap, path, "metric table");
            goto fail;
        }
        b->metric_off[i] = (uint32_t)pos;
        pos += hl + (size_t)l;
    }
    *out = b;
    return 0;
fail:
    if (b) {
        tern_free(b->metric_off);
        tern_free(b->path);
        tern_free(b);
    }
    munmap(map, len);
    return rc;
}

void tsdb_block_unref(tsdb_block *b)
{
    if (!b || __atomic_sub_fetch(&b->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    munmap((void *)(uintptr_t)b->map, b->map_len);
    if (b->doomed)
        unlink(b->path);
    tern_free(b->metric_off);
    tern_free(b->path);
    tern_free(b);
}

int tsdb_block_device(const tsdb_block *b, uint32_t i, tsdb_block_dev *out)
{
    if (i >= b->n_devices)
        return TERN_EINVAL;
    const uint8_t *e = b->devices + (size_t)i * DEVICE_ENTRY;
    uint32_t name_off = get_le32(e), name_len = get_le16(e + 4);
    uint32_t tags_off = get_le32(e + 8), tags_len = get_le32(e + 12);
    uint32_t series_off = get_le32(e + 16), n_series = get_le32(e + 20);
    uint64_t chunk_off = get_le64(e + 24);
    if ((uint64_t)name_off + name_len > b->strings_len
        || (uint64_t)tags_off + tags_len > b->strings_len || series_off > b->series_len
        || chunk_off < BLOCK_HEADER || chunk_off - BLOCK_HEADER > b->chunks_len)
        return TERN_ECORRUPT;
    out->name = (const char *)b->strings + name_off;
    out->name_len = name_len;
    out->tags = (const char *)b->strings + tags_off;
    out->tags_len = tags_len;
    out->series_pos = b->series + series_off;
    out->series_end = b->series + b->series_len;
    out->n_series = n_series;
    out->chunk_pos = b->chunks + (chunk_off - BLOCK_HEADER);
    return 0;
}

long tsdb_block_find_device(const tsdb_block *b, const char *name, size_t len)
{
    uint32_t lo = 0, hi = b->n_devices;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        tsdb_block_dev d;
        if (tsdb_block_device(b, mid, &d) != 0)
            return -1;
        size_t n = d.name_len < len ? d.name_len : len;
        int c = memcmp(d.name, name, n);
        if (c == 0)
            c = (d.name_len > len) - (d.name_len < len);
        if (c == 0)
            return mid;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -1;
}

int tsdb_block_next_series(const tsdb_block *b, tsdb_block_dev *d, tsdb_block_series *out)
{
    if (d->n_series == 0)
        return 0;
    tern_reader r;
    tern_reader_init(&r, d->series_pos, (size_t)(d->series_end - d->series_pos));
    uint64_t mi, count, dlo, span, clen;
    uint8_t kind;
    if (tern_varint_read_u64(&r, &mi) || tern_reader_u8(&r, &kind)
        || tern_varint_read_u64(&r, &count) || tern_varint_read_u64(&r, &dlo)
        || tern_varint_read_u64(&r, &span) || tern_varint_read_u64(&r, &clen)
        || tern_reader_left(&r) < 4)
        return TERN_ECORRUPT;
    if (mi >= b->n_metrics
        || (kind != TERN_VALUE_F64 && kind != TERN_VALUE_I64 && kind != TSDB_KIND_WARM)
        || count == 0 || count > TERN_CHUNK_MAX_POINTS
        || clen > (size_t)(b->chunks + b->chunks_len - d->chunk_pos))
        return TERN_ECORRUPT;
    out->crc = get_le32(r.data + r.pos);
    r.pos += 4;
    uint64_t ml;
    size_t hl;
    const uint8_t *mp = b->metrics + b->metric_off[mi];
    if (tern_varint_decode_u64(mp, b->metrics_len - b->metric_off[mi], &ml, &hl) != 0)
        return TERN_ECORRUPT;
    out->metric = (const char *)mp + hl;
    out->metric_len = (uint32_t)ml;
    out->kind = kind;
    out->count = (uint32_t)count;
    out->min_ts = (int64_t)((uint64_t)b->base_ts + dlo);
    out->max_ts = (int64_t)((uint64_t)out->min_ts + span);
    out->chunk = d->chunk_pos;
    out->chunk_len = (uint32_t)clen;
    d->chunk_pos += clen;
    d->series_pos += r.pos;
    d->n_series--;
    return 1;
}

int tsdb_block_check(const tsdb_block_series *s)
{
    return tern_crc32c_update(0, s->chunk, s->chunk_len) == s->crc ? 0 : TERN_ECORRUPT;
}

int tsdb_block_decode(
    const tsdb_block_series *s, int64_t lo, int64_t hi, tern_buf *out, tern_buf *scratch)
{
    if (s->max_ts < lo || s->min_ts >= hi)
        return 0;
    if (s->kind != TERN_VALUE_F64 && s->kind != TERN_VALUE_I64)
        return TERN_EINVAL;
    if (tsdb_block_check(s) != 0)
        return TERN_ECORRUPT;
    size_t n = s->count;
    tern_buf own = TERN_BUF_INIT;
    tern_buf *tmp = scratch ? scratch : &own;
    tern_buf_reset(tmp);
    int rc = tern_buf_reserve(tmp, n * 2 * sizeof(int64_t));
    if (rc == 0)
        rc = tern_buf_reserve(out, n * sizeof(tsdb_point));
    if (rc) {
        tern_buf_free(&own);
        return rc;
    }
    int64_t *ts = (int64_t *)(void *)tmp->data;
    uint64_t *v = (uint64_t *)(void *)(tmp->data + n * sizeof(int64_t));
    size_t got = 0;
    if (s->kind == TERN_VALUE_F64)
        rc = tern_chunk_decode_f64(s->chunk, s->chunk_len, ts, (double *)(void *)v, n, &got);
    else
        rc = tern_chunk_decode_i64(s->chunk, s->chunk_len, ts, (int64_t *)(void *)v, n, &got);
    if (rc == 0 && got != n)
        rc = TERN_ECORRUPT;
    if (rc == 0) {
        tsdb_point *dst = (tsdb_point *)(void *)(out->data + out->len);
        size_t k = 0;
        if (s->min_ts >= lo && s->max_ts < hi) {
            for (size_t i = 0; i < n; i++) {
                dst[i].ts = ts[i];
                dst[i].v = v[i];
            }
            k = n;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (ts[i] < lo || ts[i] >= hi)
                    continue;
                dst[k].ts = ts[i];
                dst[k].v = v[i];
                k++;
            }
        }
        out->len += k * sizeof(tsdb_point);
    }
    tern_buf_free(&own);
    return rc;
}

/*
 * embedded_int.h: the private pieces of the embedded log backend (log_embedded.c), shared by
 * its files:
 *   - embedded_batch.c: the record batch format (encode the header, parse and verify a batch,
 *     walk its records); byte layout in docs/formats/log.md;
 *   - embedded_store.c: one partition on disk: segment files, sparse offset and time indexes,
 *     recovery (torn tail truncation, corruption detection), positional reads, retention;
 *   - embedded_group.c: consumer-group offset files (atomic rewrite) and range assignment;
 *   - embedded_diag.c: log lines (base/log.h cannot be included next to log/log.h, whose type
 *     tern_log has the name of base/log.h's function tern_log).
 * Nothing here is visible outside src/log.
 */
#ifndef TERN_LOG_EMBEDDED_INT_H
#define TERN_LOG_EMBEDDED_INT_H

#include "base/buf.h"
#include "log/log_int.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- record batch format (embedded_batch.c) ------------------------------------------------ */

#define TERN_EMB_BATCH_MAGIC 1          /* format version byte of a record batch */
#define TERN_EMB_BATCH_HDR 44           /* bytes of the fixed batch header */
#define TERN_EMB_BATCH_OVERHEAD 40      /* header bytes counted by the length field */
#define TERN_EMB_ATTR_ZSTD 1            /* attributes & 3: 0 none, 1 zstd */
#define TERN_EMB_MAX_BATCH (128u << 20) /* largest batch (stored or decompressed) accepted */

typedef struct tern_emb_batch_hdr {
    uint32_t length;      /* bytes after the length field */
    uint32_t crc;         /* CRC-32C of bytes [8, 4 + length) */
    uint8_t attributes;   /* compression in bits 0-1 */
    int64_t base_offset;  /* offset of the first record */
    uint32_t count;       /* records in the batch (>= 1) */
    int64_t first_ts_ms;  /* timestamp of the first record: the base of the deltas */
    int64_t max_ts_ms;    /* largest record timestamp */
    uint32_t records_len; /* uncompressed bytes of the records section */
} tern_emb_batch_hdr;

/* tern_log__batch_put_header writes h (with length and records_len set) into out[0..44) and
 * computes the CRC over out[8 .. 4 + h->length), which must already hold the records. */
void tern_log__batch_put_header(uint8_t *out, tern_emb_batch_hdr *h);

/* tern_log__batch_parse_header reads the 44-byte header at p and checks its structure (magic,
 * attributes, lengths, offsets). Returns 0 or TERN_ECORRUPT. Does not check the CRC. */
int tern_log__batch_parse_header(const uint8_t *p, tern_emb_batch_hdr *h);

/* tern_log__batch_crc_ok says whether batch[0 .. 4 + h->length) carries a correct CRC. */
bool tern_log__batch_crc_ok(const uint8_t *batch, const tern_emb_batch_hdr *h);

/*
 * tern_log__batch_records gives the uncompressed records section of a CRC-verified batch:
 * *out points into batch, or into scratch (decompressed). Then it walks every record to check
 * the framing (count, offset deltas 0..count-1, lengths, header names NUL-terminated). Returns
 * 0 or TERN_ECORRUPT, TERN_ENOMEM.
 */
int tern_log__batch_records(const uint8_t *batch, const tern_emb_batch_hdr *h, tern_buf *scratch,
    const uint8_t **out, size_t *out_len);

/* One record as tern_log__batch_next_record reads it; pointers borrow the records section. */
typedef struct tern_emb_record {
    uint32_t offset_delta;
    int64_t ts_ms;
    const uint8_t *key;
    size_t key_len;
    const uint8_t *value;
    size_t value_len;
    size_t n_headers;
    const uint8_t *headers; /* the encoded headers (n_headers of them) */
    size_t headers_len;
} tern_emb_record;

/* tern_log__batch_next_record reads the record at r (advancing it); first_ts_ms is the batch's
 * base timestamp. Returns 0 or TERN_ECORRUPT. */
int tern_log__batch_next_record(tern_reader *r, int64_t first_ts_ms, tern_emb_record *out);

/* tern_log__batch_next_header reads one header of a record (advancing r). */
int tern_log__batch_next_header(tern_reader *r, tern_log_header *out);

/* tern_log__record_size returns the encoded bytes of rec (framing included) for the offset
 * delta and timestamp delta given. */
size_t tern_log__record_size(const tern_log_record *rec, uint32_t offset_delta, int64_t ts_delta);

/* tern_log__record_encode appends rec to b (tern_log__record_size bytes). Returns 0 or
 * TERN_ENOMEM (b may hold a partial record: the caller restores its length). */
int tern_log__record_encode(
    tern_buf *b, const tern_log_record *rec, uint32_t offset_delta, int64_t ts_delta);

/* ---- one partition on disk (embedded_store.c) --------------------------------------------- */

typedef struct tern_emb_index_entry {
    uint32_t rel_offset; /* offset - segment base */
    uint32_t position;   /* byte position of the batch holding it */
} tern_emb_index_entry;

typedef struct tern_emb_time_entry {
    int64_t ts_ms;       /* largest timestamp up to this batch */
    uint32_t rel_offset; /* base offset of that batch - segment base */
} tern_emb_time_entry;

typedef struct tern_emb_seg {
    int64_t base; /* offset in the file name: all batches hold offsets >= base */
    int fd;
    char *path;         /* DIR/.../<base>.log */
    uint64_t size;      /* durable bytes (readers never look past) */
    uint64_t wsize;     /* written bytes (I/O thread only): >= size while a sync is pending;
                           0 until the first write after open */
    int64_t end_offset; /* offset after the last batch scanned or written */
    int64_t max_ts_ms;  /* largest record timestamp, INT64_MIN when empty */
    bool sealed;        /* holds corrupt bytes: never appended to again */
    tern_emb_index_entry *index;
    size_t n_index, cap_index;
    tern_emb_time_entry *tindex;
    size_t n_tindex, cap_tindex;
    uint64_t bytes_since_index;
    uint64_t bytes_since_tindex;
    uint32_t last_rel; /* base offset of the last batch - base */
    int refs;          /* readers inside a pread (under the partition's store lock) */
    bool deleted;      /* removed by retention: close the fd at refs == 0 */
} tern_emb_seg;

/* Where a consumer's last batch ended, so the next fetch skips the index lookup. */
typedef struct tern_emb_hint {
    int64_t seg_base;
    uint64_t position;
    int64_t next_offset; /* -1: no hint */
} tern_emb_hint;

struct tern_emb_topic;

typedef struct tern_emb_part {
    struct tern_emb_topic *topic;
    uint32_t id;
    char *dir;
    tern_log_counters *counters;
    _Atomic uint64_t *disk_bytes; /* the log's total segment bytes */

    /* Pending batch: appends copy encoded records here (under pmu). */
    pthread_mutex_t pmu;
    tern_buf pend; /* TERN_EMB_BATCH_HDR reserved bytes, then the records */
    uint32_t pend_count;
    uint64_t pend_bytes; /* what this batch adds to the log's pending bytes */
    int64_t pend_base;
    int64_t pend_first_ts;
    int64_t pend_max_ts;
    struct tern_emb_cb *pend_cbs;
    size_t n_pend_cbs, cap_pend_cbs;
    int64_t next_offset; /* next offset to assign */

    /* Storage (written by the I/O thread; read by consumers under smu). */
    pthread_mutex_t smu;
    tern_emb_seg **segs; /* sorted by base; the last one is active */
    size_t n_segs, cap_segs;
    int64_t hwm;          /* offset after the last durable record */
    uint64_t total_bytes; /* durable bytes of all segments */
    bool need_truncate;   /* a failed write left bytes past the durable size */
    bool loaded;          /* tern_log__part_open finished: the indexes may be written */
} tern_emb_part;

/* A completion waiting in a pending batch. */
typedef struct tern_emb_cb {
    tern_log_append_cb cb;
    void *opaque;
    int64_t offset;
} tern_emb_cb;

/*
 * tern_log__part_open loads (recovering) the partition in dir, creating the folder if needed.
 * The last segment is scanned batch by batch: a torn tail is truncated, corruption followed by
 * more data seals the segment. Indexes of closed segments are loaded, or rebuilt if missing or
 * inconsistent. Returns 0, TERN_EIO, TERN_ENOMEM or -errno.
 */
int tern_log__part_open(tern_emb_part *p, const char *dir);

/* tern_log__part_close writes the active segment's index files (hints) and frees storage. */
void tern_log__part_close(tern_emb_part *p);

/* tern_log__part_write writes one finished batch after the bytes already written to the
 * active segment (durable or still waiting for their fsync), rolling a new segment first when
 * full or sealed, and sets seg_out and pos_out. Does not fsync. Returns 0 or a negative code
 * (the caller truncates with tern_log__part_truncate). */
int tern_log__part_write(tern_emb_part *p, const uint8_t *batch, const tern_emb_batch_hdr *h,
    uint64_t segment_bytes, tern_emb_seg **seg_out, uint64_t *pos_out);

/* tern_log__part_write_barrier says whether writing a batch of len bytes (base offset and
 * count as in h) must wait until every batch already written to p is synced and committed:
 * a truncation is owed, or the write would roll a new segment (rolling writes the index files
 * of the active one). I/O thread only. */
bool tern_log__part_write_barrier(
    tern_emb_part *p, const tern_emb_batch_hdr *h, uint64_t segment_bytes);

/* tern_log__part_start_writeback starts (does not wait for) writeback of a written range. */
void tern_log__part_start_writeback(tern_emb_seg *seg, uint64_t pos, uint64_t len);

/* tern_log__part_sync fdatasyncs seg (a segment of p). It touches nothing but seg->fd, so the
 * log's sync thread may call it while the I/O thread writes the next batch to the same
 * segment. Returns 0 or -errno. */
int tern_log__part_sync(tern_emb_part *p, tern_emb_seg *seg);

/* tern_log__part_commit makes a written and synced batch visible: durable size, indexes, high
 * watermark. */
void tern_log__part_commit(
    tern_emb_part *p, tern_emb_seg *seg, uint64_t pos, const tern_emb_batch_hdr *h);

/* tern_log__part_truncate cuts the active segment back to its durable size (after a failed
 * write or fsync), dropping every written batch not yet committed. On failure need_truncate
 * stays set and the next write retries first. No sync of p may be in flight. */
int tern_log__part_truncate(tern_emb_part *p);

/*
 * tern_log__part_fetch reads the first durable batch that holds an offset >= offset into raw
 * (CRC verified) and sets *h. hint (may be NULL) speeds up sequential reads and is updated.
 * Returns 1 (a batch), 0 (nothing durable at or after offset yet), TERN_ECORRUPT (*bad_pos
 * and *bad_base say where), TERN_EIO, TERN_ENOMEM.
 */
int tern_log__part_fetch(tern_emb_part *p, int64_t offset, tern_emb_hint *hint, tern_buf *raw,
    tern_emb_batch_hdr *h, uint64_t *bad_pos, int64_t *bad_base);

/* tern_log__part_offsets: [earliest, latest) of the durable records. */
void tern_log__part_offsets(tern_emb_part *p, int64_t *earliest, int64_t *latest);

/* tern_log__part_retention deletes whole closed segments: those whose newest record is older
 * than retention_ms (0: no limit) and the oldest ones while the partition keeps at least
 * retention_bytes without them (0: no limit). Returns the number of segments deleted. */
int tern_log__part_retention(
    tern_emb_part *p, int64_t now_ms, int64_t retention_ms, uint64_t retention_bytes);

/* ---- consumer-group offsets (embedded_group.c) --------------------------------------------- */

typedef struct tern_emb_commit {
    char *topic;
    uint32_t partition;
    int64_t offset;
} tern_emb_commit;

/* tern_log__group_load reads DIR/groups/<group>. Sets *out (owned, tern_free each topic and the
 * array) and *n. A missing file is 0 entries. Returns 0, TERN_ECORRUPT, TERN_ENOMEM, -errno. */
int tern_log__group_load(const char *path, tern_emb_commit **out, size_t *n);

/* tern_log__group_save writes the entries atomically: temp file, fsync, rename, dir fsync. */
int tern_log__group_save(const char *dir, const char *group, const tern_emb_commit *c, size_t n);

/* tern_log__range_assign: the partitions [*first, *first + *count) that member index of
 * n_members gets of n_partitions under range assignment. */
void tern_log__range_assign(
    uint32_t n_partitions, size_t n_members, size_t index, uint32_t *first, uint32_t *count);

/* ---- file helpers and diagnostics ---------------------------------------------------------- */

/* tern_log__fsync_dir fsyncs the folder at path. Returns 0 or -errno. */
int tern_log__fsync_dir(const char *path);
/* tern_log__mkdir makes one folder (an existing one is fine). Returns 0 or -errno. */
int tern_log__mkdir(const char *path);
/* tern_log__write_atomic writes bytes to path through path~tmp, fsync, rename and dir fsync. */
int tern_log__write_atomic(const char *dir, const char *path, const void *bytes, size_t len);
/* tern_log__pwrite_all writes len bytes at pos (retrying short writes). Returns 0 or -errno. */
int tern_log__pwrite_all(int fd, const void *bytes, size_t len, uint64_t pos);
/* tern_log__pread_all reads exactly len bytes at pos. Returns 0, TERN_EPARTIAL (end of file
 * first) or -errno. */
int tern_log__pread_all(int fd, void *bytes, size_t len, uint64_t pos);
/* tern_log__path joins a folder and a name (tern_free the result); NULL on ENOMEM. */
char *tern_log__path(const char *dir, const char *name);

/* Log lines of the "log" module (warn: recovered damage; error: I/O failures). */
void tern_log__warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tern_log__error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void tern_log__info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

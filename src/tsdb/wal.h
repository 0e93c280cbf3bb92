/*
 * wal.h: the TSDB's write-ahead log: a directory of numbered segment files holding opaque
 * records, appended by many threads, made durable by group commit, replayed on start.
 *
 * What it promises:
 *   - A record is durable once tern_wal_wait(seq) returned 0 (or the tern_wal_notify callback
 *     got rc 0): every record with a sequence number <= seq has been written and fdatasync'ed,
 *     and the directory entry of its segment fsync'ed. kill -9 (or a power cut) at any moment
 *     loses no record reported durable.
 *   - Never a false "durable": after an fsync fails, nothing written since the last good fsync
 *     is reported durable; the WAL turns read-only (appends return TERN_EIO) until reopened.
 *   - Replay returns every intact record exactly once, in append order, from the oldest
 *     segment. A torn tail (a crash in the middle of the last write) is cut off; damage anywhere
 *     else is reported as TERN_ECORRUPT naming the segment and byte offset, never skipped
 *     silently (unless tern_wal_options.skip_corrupt says so) and never returned as a record.
 *   - Sequence numbers (1, 2, ...) are per open WAL, in memory only: they order appends and
 *     name what to wait for; they are not stored on disk.
 *
 * Threading: tern_wal_append, tern_wal_wait, tern_wal_notify, tern_wal_cut and
 * tern_wal_truncate_before may be called from any number of threads at once. tern_wal_replay
 * is called once, before any append; tern_wal_close is called once, after every other call
 * returned. A background sync thread does the fdatasyncs and runs the notify callbacks.
 *
 * Untrusted input: segment files are read as untrusted bytes (length and CRC checked before
 * use). The on-disk format is specified in docs/formats/tsdb-wal.md.
 */
#ifndef TERN_TSDB_WAL_H
#define TERN_TSDB_WAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tern_wal tern_wal;

/* Default segment size: a new segment is started when a record would take the current past it. */
#define TERN_WAL_DEFAULT_SEGMENT_BYTES (64u << 20)
/* Largest record payload accepted by tern_wal_append (and believed by replay). */
#define TERN_WAL_MAX_RECORD_BYTES (128u << 20)

typedef struct tern_wal_options {
    /* Rotate segments at this size (0 = TERN_WAL_DEFAULT_SEGMENT_BYTES; at least 4096). */
    uint64_t segment_bytes;
    /*
     * Longest time an appended record nobody waits for stays unsynced. 0 = every
     * tern_wal_append call waits for its own record to be durable before returning (appends of
     * many threads still share fdatasyncs). Waiters (tern_wal_wait / tern_wal_notify) never
     * wait for this timer: a sync starts as soon as one exists and the previous sync finished.
     */
    uint32_t group_commit_ms;
    /* false: never fsync (tests, offline import); records count as durable once written. */
    bool fsync;
    /*
     * Replay policy for corruption that is not a torn tail. false (the default and the safe
     * choice): replay stops with TERN_ECORRUPT and the caller decides. true: replay logs the
     * damage, skips to the next intact record (the next offset where a length and a CRC-32C
     * verify) and goes on; the skipped bytes are counted in the stats. Skipped bytes are never
     * returned as records either way.
     */
    bool skip_corrupt;
} tern_wal_options;

/* tern_wal_options_default fills o with: 64 MiB segments, group commit 10 ms, fsync on. */
void tern_wal_options_default(tern_wal_options *o);

typedef struct tern_wal_replay_stats {
    uint64_t n_records;       /* records passed to fn */
    uint64_t n_payload_bytes; /* sum of their lengths */
    uint32_t n_segments;      /* segment files read */
    uint32_t first_segno;     /* oldest segment read (0 if none) */
    uint32_t last_segno;      /* newest segment read (0 if none) */
    bool torn_tail;           /* a torn tail was found and cut off */
    uint32_t torn_segno;      /* ... in this segment */
    uint64_t torn_offset;     /* ... which now ends at this byte offset */
    uint64_t torn_bytes;      /* ... after dropping this many bytes */
    uint64_t n_corrupt;       /* corrupt regions skipped (only with skip_corrupt) */
    uint64_t corrupt_bytes;   /* bytes in them */
    /* The last problem in words ("" if none), e.g. "segment .../00000003.wal offset 4096: ..." */
    char message[320];
} tern_wal_replay_stats;

/*
 * tern_wal_open opens the WAL in dir, creating dir (one level) if it does not exist. It lists
 * the segments but neither reads them nor creates one. Does NOT replay: when segments exist,
 * call tern_wal_replay before appending. opt may be NULL (defaults). On success *out owns the
 * WAL (tern_wal_close frees it). Files named like segments whose number is 0 or too big are
 * ignored with a warning. Errors: TERN_EINVAL (bad options), TERN_ENOMEM, -errno from
 * mkdir/open/opendir (e.g. TERN_ENOENT if the parent of dir does not exist).
 */
int tern_wal_open(const char *dir, const tern_wal_options *opt, tern_wal **out);

/* tern_wal_replay_fn receives one record; rec is valid only during the call. */
typedef int (*tern_wal_replay_fn)(void *arg, const uint8_t *rec, size_t len);

/*
 * tern_wal_replay calls fn(arg, rec, len) for every intact record, oldest segment first, in
 * append order. A torn tail of the LAST segment (a partial or CRC-bad record after which no
 * intact record follows, or a last segment whose header was never completely written) is cut
 * off (the file is truncated and, with fsync, synced; an unfinished last segment file is
 * removed) and reported in *stats. Any other damage stops replay with TERN_ECORRUPT (after fn
 * saw every record before it), logs an error line naming the segment file and byte offset and
 * puts the same words in stats->message; with opt.skip_corrupt it is skipped instead (see
 * tern_wal_options). A segment of an unknown format version gives TERN_EVERSION. fn returning
 * non-zero stops replay, which returns that value. stats may be NULL; it is filled in on every
 * return. Must be called at most once, before the first append; appends are refused
 * (TERN_EINVAL) until a replay of existing segments returned 0. Other errors: TERN_ENOMEM,
 * -errno from open/mmap/ftruncate/fdatasync.
 */
int tern_wal_replay(tern_wal *w, tern_wal_replay_fn fn, void *arg, tern_wal_replay_stats *stats);

/*
 * tern_wal_append writes one record (rec[0..len), copied) and sets *seq to its sequence
 * number. With group_commit_ms > 0 (or fsync off) it returns once the record is in the page
 * cache; durability comes from tern_wal_wait(seq) or tern_wal_notify. With group_commit_ms == 0
 * and fsync on it returns only once the record is durable. The first append after open starts
 * a new segment (an existing segment is never appended to). Errors (*seq untouched, the record
 * is not in the WAL): TERN_EINVAL (len 0, or segments exist that were not replayed),
 * TERN_ETOOBIG (len > TERN_WAL_MAX_RECORD_BYTES), TERN_ENOSPC / TERN_EIO / -errno (the write
 * failed; the partial bytes are cut off again and the WAL stays usable), TERN_EIO (sticky: an
 * earlier fsync or repair failed), TERN_ENOMEM. With group_commit_ms == 0 an error of the
 * fsync is returned too; the record is then not acknowledged (it may or may not survive).
 */
int tern_wal_append(tern_wal *w, const void *rec, size_t len, uint64_t *seq);

/*
 * tern_wal_wait blocks until every record up to seq is durable. Returns 0, or the I/O error
 * that made that impossible (sticky: once an fsync failed, every wait for a record not yet
 * durable returns that error, and so do later appends). seq 0 returns 0 at once. Errors:
 * TERN_EINVAL (seq was never handed out), TERN_EIO / -errno of the failed fsync.
 */
int tern_wal_wait(tern_wal *w, uint64_t seq);

/*
 * tern_wal_notify is the asynchronous form of tern_wal_wait for event-loop callers: cb(arg, rc)
 * is called exactly once, from the WAL's sync thread (never from this call), once every
 * record up to seq is durable (rc 0) or cannot become durable (rc as tern_wal_wait would
 * return). tern_wal_close runs the callbacks still pending. cb runs on the sync thread, so it
 * must be quick and must not call tern_wal_wait, tern_wal_close, or tern_wal_append of a WAL
 * with group_commit_ms 0 (they would wait for the thread that runs them).
 * Returns 0, or TERN_EINVAL (seq never handed out) / TERN_ENOMEM, and then cb is never called.
 */
int tern_wal_notify(tern_wal *w, uint64_t seq, void (*cb)(void *arg, int rc), void *arg);

/*
 * tern_wal_cut ends the current segment and starts a new one (created and fsync'ed now), and
 * sets *new_segno to its number: every record appended before the call is in a segment
 * numbered below it, every record appended after in it or later ones. The checkpoint recipe:
 * n = cut; persist everything appended before; tern_wal_truncate_before(n). Errors: TERN_EINVAL
 * (segments not replayed), TERN_EIO (sticky), -errno creating the file.
 */
int tern_wal_cut(tern_wal *w, uint32_t *new_segno);

/*
 * tern_wal_truncate_before deletes every segment file numbered below segno, except the segment
 * currently appended to (which is never deleted). Returns 0, or the -errno of the first
 * unlink that failed (the files before it are gone, the rest remain and a later call retries).
 */
int tern_wal_truncate_before(tern_wal *w, uint32_t segno);

/*
 * tern_wal_segments copies the numbers of the segment files present, ascending, into
 * out[0..max) and returns how many exist (may exceed max). For tests and diagnostics.
 */
size_t tern_wal_segments(tern_wal *w, uint32_t *out, size_t max);

/*
 * tern_wal_close syncs what was written (with fsync on), runs pending notify callbacks, joins
 * the sync thread, closes the files and frees w (NULL is a no-op). Returns 0, or the sticky
 * I/O error / the error of the final sync (some records are then not durable).
 */
int tern_wal_close(tern_wal *w);

#endif

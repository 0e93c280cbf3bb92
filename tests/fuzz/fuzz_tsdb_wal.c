/*
 * fuzz_tsdb_wal.c: arbitrary bytes as a TSDB WAL segment. The first input byte is a mode:
 * bit 0 fixes the segment header and recomputes the CRC of every record found by walking the
 * length fields (so the fuzzer gets past the checksums), bit 1 sets skip_corrupt, bit 2 adds
 * a valid empty segment after it (so the damaged one is not the last). The rest is segment 1.
 * Replay must never crash, and every record it returns must be an intact record of the input
 * (length and CRC-32C verify at an offset past the previous record), in order; when replay
 * cuts a torn tail the file must end where it says.
 */
#include "tsdb/wal.h"

#include "base/crc32c.h"
#include "base/error.h"
#include "base/log.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size);

static char root[256];
static char wal_dir[300];

static void clear_dir(void)
{
    DIR *d = opendir(wal_dir);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", wal_dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
}

static void cleanup(void)
{
    clear_dir();
    rmdir(wal_dir);
    rmdir(root);
}

static void setup_once(void)
{
    if (root[0])
        return;
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/fuzz_tsdb_walXXXXXX", tmp && tmp[0] ? tmp : "/tmp");
    if (!mkdtemp(root))
        abort();
    snprintf(wal_dir, sizeof wal_dir, "%s/wal", root);
    if (mkdir(wal_dir, 0755) != 0)
        abort();
    atexit(cleanup);
    tern_log_set_file(fopen("/dev/null", "w"));
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static bool intact_at(const uint8_t *p, size_t size, size_t off, uint32_t *len_out)
{
    if (size - off < 8)
        return false;
    uint32_t len = le32(p + off);
    if (len == 0 || len > size - off - 8)
        return false;
    if (tern_crc32c_update(tern_crc32c(p + off, 4), p + off + 8, len) != le32(p + off + 4))
        return false;
    *len_out = len;
    return true;
}

typedef struct oracle {
    const uint8_t *seg;
    size_t size;
    size_t cursor; /* returned records must start at or after this offset */
} oracle;

static int check_rec(void *arg, const uint8_t *rec, size_t len)
{
    oracle *o = arg;
    for (size_t off = o->cursor; off + 8 <= o->size; off++) {
        uint32_t l;
        if (intact_at(o->seg, o->size, off, &l) && l == len
            && memcmp(o->seg + off + 8, rec, len) == 0) {
            o->cursor = off + 8 + len;
            return 0;
        }
    }
    abort(); /* a record that is not an intact record of the input */
}

static void write_file(const char *path, const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || (n && write(fd, p, n) != (ssize_t)n))
        abort();
    close(fd);
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
    if (input_size < 1)
        return 0;
    setup_once();
    clear_dir();
    uint8_t mode = input[0];
    size_t size = input_size - 1;
    uint8_t *seg = malloc(size ? size : 1);
    if (!seg)
        return 0;
    memcpy(seg, input + 1, size);
    if ((mode & 1) && size >= 16) {
        memcpy(seg, "TWAL", 4);
        seg[4] = 1;
        put_le32(seg + 8, 1);
        put_le32(seg + 12, tern_crc32c(seg, 12));
        for (size_t off = 16; size - off >= 8;) {
            uint32_t len = le32(seg + off);
            if (len == 0 || len > size - off - 8)
                break;
            put_le32(
                seg + off + 4, tern_crc32c_update(tern_crc32c(seg + off, 4), seg + off + 8, len));
            off += 8 + (size_t)len;
        }
    }
    char p1[400], p2[400];
    snprintf(p1, sizeof p1, "%s/00000001.wal", wal_dir);
    snprintf(p2, sizeof p2, "%s/00000002.wal", wal_dir);
    write_file(p1, seg, size);
    if (mode & 4) {
        uint8_t hdr[16] = { 'T', 'W', 'A', 'L', 1 };
        put_le32(hdr + 8, 2);
        put_le32(hdr + 12, tern_crc32c(hdr, 12));
        write_file(p2, hdr, sizeof hdr);
    }
    tern_wal_options opt;
    tern_wal_options_default(&opt);
    opt.fsync = false;
    opt.skip_corrupt = (mode & 2) != 0;
    tern_wal *w;
    if (tern_wal_open(wal_dir, &opt, &w) != 0)
        abort();
    oracle o = { seg, size, 16 };
    tern_wal_replay_stats st;
    int rc = tern_wal_replay(w, check_rec, &o, &st);
    if (rc == 0 && st.torn_tail && st.torn_segno == 1 && st.torn_offset > 0) {
        struct stat sb;
        if (stat(p1, &sb) != 0 || (uint64_t)sb.st_size != st.torn_offset)
            abort();
    }
    if (rc != 0 && rc != TERN_ECORRUPT && rc != TERN_EVERSION)
        abort();
    if (rc == 0) {
        uint64_t seq;
        if (tern_wal_append(w, "x", 1, &seq) != 0)
            abort();
    }
    tern_wal_close(w);
    free(seg);
    return 0;
}

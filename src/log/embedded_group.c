/*
 * embedded_group.c: durable committed offsets of the embedded log's consumer groups, and the
 * range assignor (docs/formats/log.md, "Group offsets").
 *
 * DIR/groups/<group> holds every committed offset of the group and is replaced atomically on
 * each commit (write <group>~tmp, fsync, rename, fsync the folder), so after a crash it is
 * either the old or the new content, never a mix. The file ends with a CRC-32C; a file that
 * fails it is reported as TERN_ECORRUPT. Pure functions apart from the file I/O; thread-safe.
 */
#include "log/embedded_int.h"

#include "base/alloc.h"
#include "base/crc32c.h"
#include "base/error.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GROUP_MAGIC "TLGO"
#define GROUP_VERSION 1
#define GROUP_HDR 12

void tern_log__range_assign(
    uint32_t n_partitions, size_t n_members, size_t index, uint32_t *first, uint32_t *count)
{
    TERN_ASSERT(index < n_members);
    uint32_t per = (uint32_t)(n_partitions / n_members);
    uint32_t extra = (uint32_t)(n_partitions % n_members);
    uint32_t i = (uint32_t)index;
    *first = i * per + (i < extra ? i : extra);
    *count = per + (i < extra ? 1 : 0);
}

int tern_log__group_save(const char *dir, const char *group, const tern_emb_commit *c, size_t n)
{
    tern_buf b = TERN_BUF_INIT;
    int rc = tern_buf_append(&b, GROUP_MAGIC, 4);
    uint8_t ver[4] = { GROUP_VERSION, 0, 0, 0 };
    if (rc == 0)
        rc = tern_buf_append(&b, ver, 4);
    if (rc == 0)
        rc = tern_buf_append_le32(&b, (uint32_t)n);
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t tl = strlen(c[i].topic);
        rc = tern_buf_append_u8(&b, (uint8_t)(tl & 0xff));
        if (rc == 0)
            rc = tern_buf_append_u8(&b, (uint8_t)(tl >> 8));
        if (rc == 0)
            rc = tern_buf_append(&b, c[i].topic, tl);
        if (rc == 0)
            rc = tern_buf_append_le32(&b, c[i].partition);
        if (rc == 0)
            rc = tern_buf_append_le64(&b, (uint64_t)c[i].offset);
    }
    if (rc == 0)
        rc = tern_buf_append_le32(&b, tern_crc32c(b.data, b.len));
    char *path = rc == 0 ? tern_log__path(dir, group) : NULL;
    if (rc == 0 && !path)
        rc = TERN_ENOMEM;
    if (rc == 0)
        rc = tern_log__write_atomic(dir, path, b.data, b.len);
    tern_free(path);
    tern_buf_free(&b);
    return rc;
}

static void free_commits(tern_emb_commit *c, size_t n)
{
    for (size_t i = 0; i < n; i++)
        tern_free(c[i].topic);
    tern_free(c);
}

int tern_log__group_load(const char *path, tern_emb_commit **out, size_t *n_out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        *out = NULL;
        *n_out = 0;
        return 0;
    }
    if (fd < 0)
        return -errno;
    tern_buf b = TERN_BUF_INIT;
    tern_emb_commit *c = NULL;
    size_t n = 0;
    struct stat st;
    int rc = fstat(fd, &st) == 0 ? 0 : -errno;
    if (rc == 0 && (st.st_size < GROUP_HDR + 4 || st.st_size > (off_t)(64u << 20)))
        rc = TERN_ECORRUPT;
    if (rc == 0 && tern_buf_reserve(&b, (size_t)st.st_size) != 0)
        rc = TERN_ENOMEM;
    if (rc == 0)
        rc = tern_log__pread_all(fd, b.data, (size_t)st.st_size, 0);
    close(fd);
    if (rc == TERN_EPARTIAL)
        rc = TERN_ECORRUPT;
    if (rc != 0)
        goto fail;
    b.len = (size_t)st.st_size;
    tern_reader r;
    uint32_t crc, count;
    tern_reader_init(&r, b.data + b.len - 4, 4);
    tern_reader_le32(&r, &crc);
    if (crc != tern_crc32c(b.data, b.len - 4) || memcmp(b.data, GROUP_MAGIC, 4) != 0) {
        rc = TERN_ECORRUPT;
        goto fail;
    }
    if (b.data[4] != GROUP_VERSION) {
        rc = TERN_EVERSION;
        goto fail;
    }
    tern_reader_init(&r, b.data + 8, b.len - 12);
    if (tern_reader_le32(&r, &count) != 0 || count > tern_reader_left(&r) / 15) {
        rc = TERN_ECORRUPT;
        goto fail;
    }
    if (count > 0 && !(c = tern_calloc(count, sizeof *c))) {
        rc = TERN_ENOMEM;
        goto fail;
    }
    for (n = 0; n < count; n++) {
        uint8_t lo, hi;
        const uint8_t *name;
        uint32_t partition;
        uint64_t offset;
        if (tern_reader_u8(&r, &lo) || tern_reader_u8(&r, &hi)
            || tern_reader_bytes(&r, (size_t)lo | (size_t)hi << 8, &name)
            || tern_reader_le32(&r, &partition) || tern_reader_le64(&r, &offset)) {
            rc = TERN_ECORRUPT;
            goto fail;
        }
        c[n].topic = tern_strndup((const char *)name, (size_t)lo | (size_t)hi << 8);
        if (!c[n].topic) {
            rc = TERN_ENOMEM;
            goto fail;
        }
        c[n].partition = partition;
        c[n].offset = (int64_t)offset;
    }
    if (tern_reader_left(&r) != 0) {
        rc = TERN_ECORRUPT;
        goto fail;
    }
    tern_buf_free(&b);
    *out = c;
    *n_out = n;
    return 0;
fail:
    free_commits(c, n);
    tern_buf_free(&b);
    return rc;
}

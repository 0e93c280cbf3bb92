/*
 * fuzz_log_segment.c: arbitrary bytes as the only segment file of a one-partition topic. The
 * first input byte is a mode: with bit 0 set, the batches found by walking the length fields
 * get their CRC recomputed first, so the fuzzer also reaches the record decoder. The
 * embedded log must open it (recovering or refusing it cleanly), and reading everything, by
 * polling from the start and by seeking to sampled offsets, must never crash and never return a
 * record outside a batch whose CRC verifies in the input (the oracle scans the input for every
 * CRC-valid batch header with the format's own parser).
 */
#include "log/embedded_int.h"
#include "log/log.h"

#include "base/crc32c.h"
#include "base/error.h"

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size);

static char root[256];
static char part_dir[512];

static void clear_dir(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", path, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
}

static void cleanup(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", root);
}

static int setup_once(void)
{
    if (root[0])
        return 0;
    snprintf(root, sizeof root, "/tmp/fuzz_log_segmentXXXXXX");
    if (!mkdtemp(root))
        abort();
    atexit(cleanup);
    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.dir = root;
    tern_log *log;
    if (tern_log_open(&cfg, &log) != 0 || tern_log_create_topic(log, "f", 1) != 0)
        abort();
    tern_log_close(log);
    snprintf(part_dir, sizeof part_dir, "%s/topics/f/0", root);
    return 0;
}

/* The oracle: [base, base + count) of every batch in the input whose CRC verifies. */
typedef struct range {
    int64_t lo, hi;
} range;

static size_t valid_batches(const uint8_t *data, size_t size, range *out, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i + TERN_EMB_BATCH_HDR <= size && n < max; i++) {
        tern_emb_batch_hdr h;
        if (tern_log__batch_parse_header(data + i, &h) != 0 || 4u + (uint64_t)h.length > size - i)
            continue;
        if (tern_log__batch_crc_ok(data + i, &h))
            out[n++] = (range) { h.base_offset, h.base_offset + h.count };
    }
    return n;
}

static void check_msg(const tern_log_message *m, const range *r, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (m->offset >= r[i].lo && m->offset < r[i].hi)
            return;
    fprintf(stderr, "record at offset %lld is not in any CRC-valid batch\n", (long long)m->offset);
    abort();
}

/* fix_crcs walks the batches by their length fields and rewrites each CRC. */
static void fix_crcs(uint8_t *b, size_t size)
{
    size_t p = 0;
    while (p + TERN_EMB_BATCH_HDR <= size) {
        uint32_t len = (uint32_t)b[p] | (uint32_t)b[p + 1] << 8 | (uint32_t)b[p + 2] << 16
            | (uint32_t)b[p + 3] << 24;
        if (len < 8 || len > size - p - 4)
            return;
        uint32_t crc = tern_crc32c(b + p + 8, len - 4);
        for (unsigned i = 0; i < 4; i++)
            b[p + 4 + i] = (uint8_t)(crc >> (8 * i));
        p += 4 + (size_t)len;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *input, size_t input_size)
{
    if (input_size == 0)
        return 0;
    static uint8_t data[1 << 20];
    size_t size = input_size - 1 < sizeof data ? input_size - 1 : sizeof data;
    memcpy(data, input + 1, size);
    if (input[0] & 1)
        fix_crcs(data, size);
    setup_once();
    clear_dir(part_dir);
    char seg[700];
    snprintf(seg, sizeof seg, "%s/00000000000000000000.log", part_dir);
    FILE *f = fopen(seg, "wb");
    if (!f || fwrite(data, 1, size, f) != size)
        abort();
    fclose(f);

    static range ranges[4096];
    size_t n_ranges = valid_batches(data, size, ranges, 4096);

    tern_log_config cfg;
    tern_log_config_defaults(&cfg);
    cfg.dir = root;
    tern_log *log;
    int rc = tern_log_open(&cfg, &log);
    if (rc != 0)
        return 0;
    const char *topics[] = { "f" };
    tern_log_consumer_config cc = { .topics = topics, .n_topics = 1 };
    tern_log_consumer *c;
    if (tern_log_consumer_open(log, &cc, &c) != 0)
        abort();
    tern_log_message msgs[32];
    size_t got;
    for (int idle = 0, rounds = 0; idle < 2 && rounds < 10000; rounds++) {
        rc = tern_log_consumer_poll(c, msgs, 32, 0, &got);
        if (rc != 0 && rc != TERN_ECORRUPT && rc != TERN_EIO)
            abort();
        if (rc == 0 && got == 0)
            idle++;
        for (size_t i = 0; rc == 0 && i < got; i++) {
            check_msg(&msgs[i], ranges, n_ranges);
            for (size_t k = 0; k < msgs[i].n_headers; k++)
                if (strlen(msgs[i].headers[k].name) > size)
                    abort();
        }
    }
    int64_t lo, hi;
    if (tern_log_offsets(log, "f", 0, &lo, &hi) != 0 || lo > hi)
        abort();
    for (int k = 0; k < 8 && hi > lo; k++) {
        int64_t at = lo + (hi - lo) * k / 8;
        if (tern_log_consumer_seek(c, "f", 0, at) != 0)
            abort();
        rc = tern_log_consumer_poll(c, msgs, 4, 0, &got);
        for (size_t i = 0; rc == 0 && i < got; i++)
            check_msg(&msgs[i], ranges, n_ranges);
    }
    /* appending after recovery must work on whatever was left */
    tern_log_record r = { .value = (const uint8_t *)"x", .value_len = 1 };
    if (tern_log_append(log, "f", 0, &r, NULL, NULL) != 0 || tern_log_flush(log) != 0)
        abort();
    int64_t lo2, hi2;
    if (tern_log_offsets(log, "f", 0, &lo2, &hi2) != 0 || hi2 <= hi) {
        fprintf(stderr, "append after recovery was not stored\n");
        abort();
    }
    tern_log_consumer_close(c);
    tern_log_close(log);
    return 0;
}

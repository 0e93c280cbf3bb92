/*
 * embedded_batch.c: the record batch of the embedded log (docs/formats/log.md, "Record batch").
 *
 * A batch is a 44-byte little-endian header (length, CRC-32C, magic/version, attributes, base
 * offset, record count, first and max timestamp, records length) followed by the records,
 * stored raw or as one zstd frame. Parsing treats every byte as untrusted: a header is checked
 * structurally before its length is used, a batch is used only after its CRC verifies, and the
 * records are walked once in full before any is handed out, so a reader never gets half a
 * batch. Pure functions, thread-safe; each thread that decompresses keeps one zstd
 * decompression context (a pthread key), freed when the thread exits.
 */
#include "log/embedded_int.h"

#include "base/crc32c.h"
#include "base/error.h"
#include "base/varint.h"

#include <pthread.h>
#include <string.h>
#include <zstd.h>

/* ---- one zstd decompression context per thread ----
 * ZSTD_decompress makes and frees a context per call; a consumer decompresses every batch. */

static pthread_key_t dctx_key;
static pthread_once_t dctx_once = PTHREAD_ONCE_INIT;
static bool dctx_key_ok;

static void free_dctx(void *d)
{
    ZSTD_freeDCtx(d);
}

static void dctx_key_make(void)
{
    dctx_key_ok = pthread_key_create(&dctx_key, free_dctx) == 0;
}

/* thread_dctx: the calling thread's decompression context, or NULL when out of memory (or
 * when no key could be made: the caller then decompresses with a context of its own). */
static ZSTD_DCtx *thread_dctx(void)
{
    pthread_once(&dctx_once, dctx_key_make);
    if (!dctx_key_ok)
        return NULL;
    ZSTD_DCtx *d = pthread_getspecific(dctx_key);
    if (!d && (d = ZSTD_createDCtx()) != NULL && pthread_setspecific(dctx_key, d) != 0) {
        ZSTD_freeDCtx(d);
        d = NULL;
    }
    return d;
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

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
    return (uint64_t)get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

void tern_log__batch_put_header(uint8_t *out, tern_emb_batch_hdr *h)
{
    put_le32(out + 0, h->length);
    out[8] = TERN_EMB_BATCH_MAGIC;
    out[9] = h->attributes;
    out[10] = 0;
    out[11] = 0;
    put_le64(out + 12, (uint64_t)h->base_offset);
    put_le32(out + 20, h->count);
    put_le64(out + 24, (uint64_t)h->first_ts_ms);
    put_le64(out + 32, (uint64_t)h->max_ts_ms);
    put_le32(out + 40, h->records_len);
    h->crc = tern_crc32c(out + 8, h->length - 4u);
    put_le32(out + 4, h->crc);
}

int tern_log__batch_parse_header(const uint8_t *p, tern_emb_batch_hdr *h)
{
    tern_emb_batch_hdr v;
    v.length = get_le32(p);
    v.crc = get_le32(p + 4);
    if (p[8] != TERN_EMB_BATCH_MAGIC || p[10] != 0 || p[11] != 0)
        return TERN_ECORRUPT;
    v.attributes = p[9];
    v.base_offset = (int64_t)get_le64(p + 12);
    v.count = get_le32(p + 20);
    v.first_ts_ms = (int64_t)get_le64(p + 24);
    v.max_ts_ms = (int64_t)get_le64(p + 32);
    v.records_len = get_le32(p + 40);
    if (v.attributes > TERN_EMB_ATTR_ZSTD)
        return TERN_ECORRUPT;
    if (v.length <= TERN_EMB_BATCH_OVERHEAD || v.length > TERN_EMB_MAX_BATCH)
        return TERN_ECORRUPT;
    if (v.count == 0 || v.records_len < v.count || v.records_len > TERN_EMB_MAX_BATCH)
        return TERN_ECORRUPT;
    if (v.base_offset < 0 || v.base_offset > (INT64_C(1) << 62))
        return TERN_ECORRUPT;
    if (v.attributes == 0 && v.records_len != v.length - TERN_EMB_BATCH_OVERHEAD)
        return TERN_ECORRUPT;
    *h = v;
    return 0;
}

bool tern_log__batch_crc_ok(const uint8_t *batch, const tern_emb_batch_hdr *h)
{
    return tern_crc32c(batch + 8, h->length - 4u) == h->crc;
}

static int read_len(tern_reader *r, size_t *out)
{
    uint64_t v;
    if (tern_varint_read_u64(r, &v) != 0 || v > tern_reader_left(r))
        return TERN_ECORRUPT;
    *out = (size_t)v;
    return 0;
}

int tern_log__batch_next_header(tern_reader *r, tern_log_header *out)
{
    size_t name_len, value_len;
    const uint8_t *name, *value;
    if (read_len(r, &name_len) != 0 || name_len == 0 || tern_reader_bytes(r, name_len, &name) != 0
        || name[name_len - 1] != 0)
        return TERN_ECORRUPT;
    if (read_len(r, &value_len) != 0 || tern_reader_bytes(r, value_len, &value) != 0)
        return TERN_ECORRUPT;
    out->name = (const char *)name;
    out->value = value;
    out->value_len = value_len;
    return 0;
}

int tern_log__batch_next_record(tern_reader *r, int64_t first_ts_ms, tern_emb_record *out)
{
    size_t body_len;
    const uint8_t *body;
    if (read_len(r, &body_len) != 0 || tern_reader_bytes(r, body_len, &body) != 0)
        return TERN_ECORRUPT;
    tern_reader b;
    tern_reader_init(&b, body, body_len);
    tern_emb_record rec;
    int64_t ts_delta;
    uint64_t n_headers;
    if (tern_varint_read_u32(&b, &rec.offset_delta) != 0
        || tern_varint_read_s64(&b, &ts_delta) != 0)
        return TERN_ECORRUPT;
    /* Deltas wrap like the encoder's subtraction, so any pair of int64 timestamps round-trips. */
    rec.ts_ms = (int64_t)((uint64_t)first_ts_ms + (uint64_t)ts_delta);
    if (read_len(&b, &rec.key_len) != 0 || tern_reader_bytes(&b, rec.key_len, &rec.key) != 0)
        return TERN_ECORRUPT;
    if (read_len(&b, &rec.value_len) != 0 || tern_reader_bytes(&b, rec.value_len, &rec.value) != 0)
        return TERN_ECORRUPT;
    if (tern_varint_read_u64(&b, &n_headers) != 0 || n_headers > tern_reader_left(&b) / 3)
        return TERN_ECORRUPT;
    rec.n_headers = (size_t)n_headers;
    rec.headers = b.data + b.pos;
    rec.headers_len = tern_reader_left(&b);
    for (size_t i = 0; i < rec.n_headers; i++) {
        tern_log_header h;
        if (tern_log__batch_next_header(&b, &h) != 0)
            return TERN_ECORRUPT;
    }
    if (tern_reader_left(&b) != 0)
        return TERN_ECORRUPT;
    *out = rec;
    return 0;
}

int tern_log__batch_records(const uint8_t *batch, const tern_emb_batch_hdr *h, tern_buf *scratch,
    const uint8_t **out, size_t *out_len)
{
    const uint8_t *stored = batch + TERN_EMB_BATCH_HDR;
    size_t stored_len = h->length - TERN_EMB_BATCH_OVERHEAD;
    const uint8_t *recs = stored;
    if (h->attributes == TERN_EMB_ATTR_ZSTD) {
        unsigned long long want = ZSTD_getFrameContentSize(stored, stored_len);
        if (want != h->records_len)
            return TERN_ECORRUPT;
        tern_buf_reset(scratch);
        if (tern_buf_reserve(scratch, h->records_len) != 0)
            return TERN_ENOMEM;
        ZSTD_DCtx *dctx = thread_dctx();
        size_t got = dctx
            ? ZSTD_decompressDCtx(dctx, scratch->data, h->records_len, stored, stored_len)
            : ZSTD_decompress(scratch->data, h->records_len, stored, stored_len);
        if (ZSTD_isError(got) || got != h->records_len)
            return TERN_ECORRUPT;
        scratch->len = got;
        recs = scratch->data;
    }
    tern_reader r;
    tern_reader_init(&r, recs, h->records_len);
    for (uint32_t i = 0; i < h->count; i++) {
        tern_emb_record rec;
        if (tern_log__batch_next_record(&r, h->first_ts_ms, &rec) != 0 || rec.offset_delta != i)
            return TERN_ECORRUPT;
    }
    if (tern_reader_left(&r) != 0)
        return TERN_ECORRUPT;
    *out = recs;
    *out_len = h->records_len;
    return 0;
}

static size_t bytes_len(size_t n)
{
    return tern_varint_len(n) + n;
}

static size_t body_size(const tern_log_record *rec, uint32_t offset_delta, int64_t ts_delta)
{
    size_t n = tern_varint_len(offset_delta) + tern_varint_len(tern_varint_zigzag(ts_delta));
    n += bytes_len(rec->key_len) + bytes_len(rec->value_len) + tern_varint_len(rec->n_headers);
    for (size_t i = 0; i < rec->n_headers; i++) {
        n += bytes_len(strlen(rec->headers[i].name) + 1);
        n += bytes_len(rec->headers[i].value_len);
    }
    return n;
}

size_t tern_log__record_size(const tern_log_record *rec, uint32_t offset_delta, int64_t ts_delta)
{
    return bytes_len(body_size(rec, offset_delta, ts_delta));
}

/* Writers into room already reserved (tern_buf_reserve): no capacity check, no call per byte. */
static inline void put_varint(tern_buf *b, uint64_t v)
{
    b->len += tern_varint_encode(b->data + b->len, v);
}

static inline void put_bytes(tern_buf *b, const void *p, size_t n)
{
    put_varint(b, n);
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

int tern_log__record_encode(
    tern_buf *b, const tern_log_record *rec, uint32_t offset_delta, int64_t ts_delta)
{
    size_t body = body_size(rec, offset_delta, ts_delta);
    if (tern_buf_reserve(b, bytes_len(body)) != 0)
        return TERN_ENOMEM;
    put_varint(b, body);
    put_varint(b, offset_delta);
    put_varint(b, tern_varint_zigzag(ts_delta));
    put_bytes(b, rec->key, rec->key_len);
    put_bytes(b, rec->value, rec->value_len);
    put_varint(b, rec->n_headers);
    for (size_t i = 0; i < rec->n_headers; i++) {
        put_bytes(b, rec->headers[i].name, strlen(rec->headers[i].name) + 1);
        put_bytes(b, rec->headers[i].value, rec->headers[i].value_len);
    }
    return 0;
}

/*
 * store.c: the broker's journal (see store.h and docs/formats/broker-store.md).
 */
#include "broker/store.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/crc32c.h"
#include "base/log.h"

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAGIC "TERNBRKJ"
#define HEADER_BYTES 16
#define VERSION 1
#define MAX_RECORD (16u << 20)
#define COMPACT_MIN_BYTES (64u << 20)

enum {
    REC_SESSION = 1,
    REC_SESSION_DEL,
    REC_SUB,
    REC_UNSUB,
    REC_MSG,
    REC_OUT,
    REC_OUT_STATE,
    REC_OUT_DEL,
    REC_RETAIN,
    REC_QOS2_IN,
};

/* A small open-addressing map u64 -> pointer, for replay only. */
typedef struct id_map {
    uint64_t *keys;
    void **vals;
    size_t cap, n;
} id_map;

typedef struct broker_store broker_store;

struct broker_store {
    int fd;
    int dir_fd;
    char path[PATH_MAX];
    char tmp_path[PATH_MAX];
    tern_buf pending;
    size_t record_start;
    uint64_t next_msg_id;
    uint64_t next_out_id;
    uint64_t file_bytes;
    uint64_t compacted_bytes;
    uint64_t snap_gen;
    int error;
};

/* ---- record encoding ------------------------------------------------------------------- */

static void rec_begin(tern_buf *out, size_t *start, uint8_t type)
{
    *start = out->len;
    uint8_t hdr[8] = { 0 };
    (void)tern_buf_append(out, hdr, sizeof hdr);
    (void)tern_buf_append_u8(out, type);
}

static void put_str(tern_buf *out, const void *p, size_t len)
{
    if (len > UINT16_MAX)
        len = UINT16_MAX;
    (void)tern_buf_append(out, (const uint8_t[]) { (uint8_t)len, (uint8_t)(len >> 8) }, 2);
    (void)tern_buf_append(out, p, len);
}

static void put_u16(tern_buf *out, uint16_t v)
{
    (void)tern_buf_append(out, (const uint8_t[]) { (uint8_t)v, (uint8_t)(v >> 8) }, 2);
}

/* Patches length and CRC. An allocation failure anywhere in the record drops the whole record
 * and marks the store failed, so no half record is ever written. */
static void rec_end(broker_store *st, tern_buf *out, size_t start, size_t len_before)
{
    if (out->len < start + 9 || st->error) {
        out->len = len_before;
        st->error = st->error ? st->error : TERN_ENOMEM;
        return;
    }
    size_t body = out->len - start - 8;
    uint32_t crc = tern_crc32c(out->data + start + 8, body);
    for (int i = 0; i < 4; i++) {
        out->data[start + (size_t)i] = (uint8_t)(body >> (8 * i));
        out->data[start + 4 + (size_t)i] = (uint8_t)(crc >> (8 * i));
    }
}

/* The buffer functions leave the buffer unchanged on ENOMEM; checking cap after the fact is
 * enough to know every append of a record succeeded: we reserve a generous size first. */
static bool reserve(broker_store *st, tern_buf *out, size_t n)
{
    if (tern_buf_reserve(out, n + 64) != 0) {
        st->error = TERN_ENOMEM;
        return false;
    }
    return true;
}

static uint64_t wall_deadline_ms(tern_broker *b, const broker_msg *m)
{
    if (!m->has_expiry)
        return 0;
    uint64_t now_mono = broker_now_ms(b);
    uint64_t left = m->expire_at_ms > now_mono ? m->expire_at_ms - now_mono : 0;
    return (uint64_t)tern_clock_now_ms() + left;
}

static void write_msg(tern_broker *b, tern_buf *out, broker_msg *m)
{
    broker_store *st = b->store;
    if (!m->store_id)
        m->store_id = st->next_msg_id++;
    if (!reserve(st, out,
            128 + m->topic_len + m->payload_len + m->user_raw_len + m->content_type.len
                + m->response_topic.len + m->correlation_data.len + strlen(m->publisher_id)))
        return;
    size_t before = out->len, start;
    rec_begin(out, &start, REC_MSG);
    (void)tern_buf_append_le64(out, m->store_id);
    (void)tern_buf_append_u8(out, m->qos);
    (void)tern_buf_append_u8(out, m->retain);
    (void)tern_buf_append_u8(
        out, (uint8_t)((m->has_payload_format ? 1 : 0) | (m->has_expiry ? 2 : 0)));
    (void)tern_buf_append_u8(out, m->payload_format);
    (void)tern_buf_append_le64(out, wall_deadline_ms(b, m));
    put_str(out, m->topic, m->topic_len);
    put_str(out, m->publisher_id, strlen(m->publisher_id));
    put_str(out, m->content_type.p, m->content_type.len);
    put_str(out, m->response_topic.p, m->response_topic.len);
    put_str(out, m->correlation_data.p, m->correlation_data.len);
    (void)tern_buf_append_le32(out, m->user_raw_len);
    (void)tern_buf_append(out, m->user_raw, m->user_raw_len);
    (void)tern_buf_append_le32(out, m->n_user);
    (void)tern_buf_append_le32(out, m->payload_len);
    (void)tern_buf_append(out, m->payload, m->payload_len);
    rec_end(st, out, start, before);
    m->snap_gen = st->snap_gen;
}

static void write_session(broker_store *st, tern_buf *out, const broker_session *s)
{
    if (!reserve(st, out, 32 + strlen(s->client_id)))
        return;
    size_t before = out->len, start;
    rec_begin(out, &start, REC_SESSION);
    put_str(out, s->client_id, strlen(s->client_id));
    (void)tern_buf_append_le32(out, s->expiry_s);
    rec_end(st, out, start, before);
}

static void write_sub(broker_store *st, tern_buf *out, const broker_session *s, const char *filter,
    size_t len, const tern_topic_sub_opts *o)
{
    if (!reserve(st, out, 32 + strlen(s->client_id) + len))
        return;
    size_t before = out->len, start;
    rec_begin(out, &start, REC_SUB);
    put_str(out, s->client_id, strlen(s->client_id));
    put_str(out, filter, len);
    (void)tern_buf_append_u8(out, o->qos);
    (void)tern_buf_append_u8(out,
        (uint8_t)((o->no_local ? 1 : 0) | (o->retain_as_published ? 2 : 0)
            | ((o->retain_handling & 3) << 2)));
    (void)tern_buf_append_le32(out, o->subscription_id);
    rec_end(st, out, start, before);
}

static void write_out(tern_broker *b, tern_buf *out, const broker_session *s, broker_out *o)
{
    broker_store *st = b->store;
    if (o->msg->snap_gen != st->snap_gen || !o->msg->store_id)
        write_msg(b, out, o->msg);
    if (!o->store_id)
        o->store_id = st->next_out_id++;
    if (!reserve(st, out, 64 + strlen(s->client_id) + 4 * (size_t)o->n_sub_ids))
        return;
    size_t before = out->len, start;
    rec_begin(out, &start, REC_OUT);
    (void)tern_buf_append_le64(out, o->store_id);
    put_str(out, s->client_id, strlen(s->client_id));
    (void)tern_buf_append_le64(out, o->msg->store_id);
    (void)tern_buf_append_u8(out, o->qos);
    (void)tern_buf_append_u8(out, o->retain);
    (void)tern_buf_append_u8(out, (uint8_t)o->n_sub_ids);
    for (uint32_t i = 0; i < o->n_sub_ids; i++)
        (void)tern_buf_append_le32(out, o->sub_ids[i]);
    rec_end(st, out, start, before);
}

static void write_out_state(broker_store *st, tern_buf *out, const broker_out *o)
{
    if (!reserve(st, out, 32))
        return;
    size_t before = out->len, start;
    rec_begin(out, &start, REC_OUT_STATE);
    (void)tern_buf_append_le64(out, o->store_id);
    (void)tern_buf_append_u8(out, o->state);
    put_u16(out, o->packet_id);
    rec_end(st, out, start, before);
}

static void write_qos2(
    broker_store *st, tern_buf *out, const broker_session *s, uint16_t id, bool on)
{
    if (!reserve(st, out, 32 + strlen(s->client_id)))
        return;
    size_t before = out->len, start;
    rec_begin(out, &start, REC_QOS2_IN);
    put_str(out, s->client_id, strlen(s->client_id));
    put_u16(out, id);
    (void)tern_buf_append_u8(out, on);
    rec_end(st, out, start, before);
}

static void write_retain(
    tern_broker *b, tern_buf *out, const char *topic, size_t len, broker_msg *m)
{
    broker_store *st = b->store;
    if (m && (m->snap_gen != st->snap_gen || !m->store_id))
        write_msg(b, out, m);
    if (!reserve(st, out, 32 + len))
        return;
    size_t before = out->len, start;
    rec_begin(out, &start, REC_RETAIN);
    put_str(out, topic, len);
    (void)tern_buf_append_le64(out, m ? m->store_id : 0);
    rec_end(st, out, start, before);
}

/* ---- logging API --------------------------------------------------------------------------- */

static bool persistent(const broker_session *s)
{
    return s->expiry_s > 0;
}

void broker_store_session(tern_broker *b, broker_session *s)
{
    if (!b->store || !persistent(s))
        return;
    write_session(b->store, &b->store->pending, s);
    s->journaled = true;
}

void broker_store_session_del(tern_broker *b, broker_session *s)
{
    if (!b->store || !s->journaled)
        return;
    broker_store *st = b->store;
    if (!reserve(st, &st->pending, 16 + strlen(s->client_id)))
        return;
    size_t before = st->pending.len, start;
    rec_begin(&st->pending, &start, REC_SESSION_DEL);
    put_str(&st->pending, s->client_id, strlen(s->client_id));
    rec_end(st, &st->pending, start, before);
    s->journaled = false;
}

void broker_store_sub(tern_broker *b, broker_session *s, const char *filter, size_t len,
    const tern_topic_sub_opts *opts)
{
    if (b->store && s->journaled)
        write_sub(b->store, &b->store->pending, s, filter, len, opts);
}

void broker_store_unsub(tern_broker *b, broker_session *s, const char *filter, size_t len)
{
    if (!b->store || !s->journaled)
        return;
    broker_store *st = b->store;
    if (!reserve(st, &st->pending, 16 + strlen(s->client_id) + len))
        return;
    size_t before = st->pending.len, start;
    rec_begin(&st->pending, &start, REC_UNSUB);
    put_str(&st->pending, s->client_id, strlen(s->client_id));
    put_str(&st->pending, filter, len);
    rec_end(st, &st->pending, start, before);
}

void broker_store_out(tern_broker *b, broker_session *s, broker_out *o)
{
    if (b->store && s->journaled && o->qos > 0)
        write_out(b, &b->store->pending, s, o);
}

void broker_store_out_state(tern_broker *b, broker_out *o)
{
    if (b->store && o->store_id)
        write_out_state(b->store, &b->store->pending, o);
}

void broker_store_out_del(tern_broker *b, broker_out *o)
{
    if (!b->store || !o->store_id)
        return;
    broker_store *st = b->store;
    if (!reserve(st, &st->pending, 16))
        return;
    size_t before = st->pending.len, start;
    rec_begin(&st->pending, &start, REC_OUT_DEL);
    (void)tern_buf_append_le64(&st->pending, o->store_id);
    rec_end(st, &st->pending, start, before);
    o->store_id = 0;
}

void broker_store_retain(tern_broker *b, const char *topic, size_t len, broker_msg *m)
{
    if (b->store)
        write_retain(b, &b->store->pending, topic, len, m);
}

void broker_store_qos2(tern_broker *b, broker_session *s, uint16_t packet_id, bool on)
{
    if (b->store && s->journaled)
        write_qos2(b->store, &b->store->pending, s, packet_id, on);
}

/* ---- snapshot (compaction) ----------------------------------------------------------------- */

typedef struct snap_ctx {
    tern_broker *b;
    tern_buf *out;
    broker_session *s;
} snap_ctx;

static void snap_sub(void *ctx, const char *filter, size_t len, const tern_topic_sub_opts *opts)
{
    snap_ctx *sc = ctx;
    write_sub(sc->b->store, sc->out, sc->s, filter, len, opts);
}

static void snap_retained(void *ctx, const char *topic, size_t len, broker_msg *m)
{
    snap_ctx *sc = ctx;
    write_retain(sc->b, sc->out, topic, len, m);
}

static int write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void put_header(tern_buf *out)
{
    uint8_t hdr[HEADER_BYTES] = { 0 };
    memcpy(hdr, MAGIC, 8);
    hdr[8] = VERSION;
    (void)tern_buf_append(out, hdr, sizeof hdr);
}

/* Write the live state to journal.tmp, sync, rename over journal, sync the folder. */
static int compact(tern_broker *b)
{
    broker_store *st = b->store;
    st->snap_gen++;
    tern_buf out = TERN_BUF_INIT;
    put_header(&out);
    snap_ctx sc = { b, &out, NULL };
    for (uint32_t i = 0; i < b->n_session_buckets; i++) {
        for (broker_session *s = b->sessions[i]; s; s = s->hash_next) {
            if (!persistent(s)) {
                s->journaled = false;
                continue;
            }
            write_session(st, &out, s);
            s->journaled = true;
            sc.s = s;
            tern_topic_subscriber_foreach(&s->subscriber, snap_sub, &sc);
            for (uint32_t id = 0; s->qos2_in && id <= UINT16_MAX; id++)
                if (s->qos2_in[id >> 3] & (1u << (id & 7)))
                    write_qos2(st, &out, s, (uint16_t)id, true);
            for (broker_out *o = out_first(s); o; o = out_next(s, o)) {
                if (o->qos == 0)
                    continue;
                write_out(b, &out, s, o);
                if (o->state != OUT_QUEUED)
                    write_out_state(st, &out, o);
            }
        }
    }
    broker_retained_foreach(b, snap_retained, &sc);
    int rc = st->error;
    int fd = -1;
    if (rc == 0) {
        fd = open(st->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        rc = fd < 0 ? -errno : 0;
    }
    if (rc == 0)
        rc = write_all(fd, out.data, out.len);
    if (rc == 0 && fdatasync(fd) != 0)
        rc = -errno;
    if (rc == 0 && rename(st->tmp_path, st->path) != 0)
        rc = -errno;
    if (rc == 0 && fsync(st->dir_fd) != 0)
        rc = -errno;
    if (rc == 0) {
        close(st->fd);
        st->fd = fd;
        fd = -1;
        st->file_bytes = out.len;
        st->compacted_bytes = out.len;
        if (lseek(st->fd, 0, SEEK_END) < 0)
            rc = -errno;
    }
    if (fd >= 0) {
        close(fd);
        unlink(st->tmp_path);
    }
    tern_buf_free(&out);
    return rc;
}

int broker_store_commit(tern_broker *b)
{
    broker_store *st = b->store;
    if (!st)
        return 0;
    if (st->error) {
        tern_logf(TERN_LOG_ERROR, "broker", "journal: %s", tern_strerror(st->error));
        return st->error;
    }
    if (st->pending.len == 0)
        return 0;
    int rc = write_all(st->fd, st->pending.data, st->pending.len);
    if (rc == 0 && fdatasync(st->fd) != 0)
        rc = -errno;
    if (rc != 0) {
        st->error = rc;
        tern_logf(
            TERN_LOG_ERROR, "broker", "journal %s: write failed: %s", st->path, tern_strerror(rc));
        return rc;
    }
    st->file_bytes += st->pending.len;
    tern_buf_reset(&st->pending);
    if (st->pending.cap > (4u << 20))
        tern_buf_free(&st->pending);
    if (st->file_bytes > COMPACT_MIN_BYTES && st->file_bytes > 4 * st->compacted_bytes) {
        rc = compact(b);
        if (rc != 0) {
            st->error = rc;
            tern_logf(TERN_LOG_ERROR, "broker", "journal compaction failed: %s", tern_strerror(rc));
        }
    }
    return rc;
}

/* ---- replay -------------------------------------------------------------------------------- */

static int map_put(id_map *m, uint64_t key, void *val)
{
    if ((m->n + 1) * 2 > m->cap) {
        size_t cap = m->cap ? m->cap * 2 : 256;
        uint64_t *keys = tern_calloc(cap, sizeof *keys);
        void **vals = tern_calloc(cap, sizeof *vals);
        if (!keys || !vals) {
            tern_free(keys);
            tern_free(vals);
            return TERN_ENOMEM;
        }
        for (size_t i = 0; i < m->cap; i++) {
            if (!m->keys[i])
                continue;
            size_t j = (size_t)(m->keys[i] * 0x9E3779B97F4A7C15ull) & (cap - 1);
            while (keys[j])
                j = (j + 1) & (cap - 1);
            keys[j] = m->keys[i];
            vals[j] = m->vals[i];
        }
        tern_free(m->keys);
        tern_free(m->vals);
        m->keys = keys;
        m->vals = vals;
        m->cap = cap;
    }
    size_t j = (size_t)(key * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->keys[j] && m->keys[j] != key)
        j = (j + 1) & (m->cap - 1);
    if (!m->keys[j])
        m->n++;
    m->keys[j] = key;
    m->vals[j] = val;
    return 0;
}

static void *map_get(const id_map *m, uint64_t key)
{
    if (!m->cap || !key)
        return NULL;
    size_t j = (size_t)(key * 0x9E3779B97F4A7C15ull) & (m->cap - 1);
    while (m->keys[j]) {
        if (m->keys[j] == key)
            return m->vals[j];
        j = (j + 1) & (m->cap - 1);
    }
    return NULL;
}

static void map_free(id_map *m)
{
    tern_free(m->keys);
    tern_free(m->vals);
    memset(m, 0, sizeof *m);
}

typedef struct replay {
    tern_broker *b;
    id_map msgs; /* msg_id -> broker_msg (one reference held by the map) */
    id_map outs; /* out_id -> broker_out */
    id_map out_sessions;
} replay;

static int get_str(tern_reader *r, tern_mqtt_str *s)
{
    uint8_t lo, hi;
    const uint8_t *p;
    if (tern_reader_u8(r, &lo) || tern_reader_u8(r, &hi))
        return TERN_ECORRUPT;
    uint16_t len = (uint16_t)(lo | (hi << 8));
    if (tern_reader_bytes(r, len, &p))
        return TERN_ECORRUPT;
    s->p = p;
    s->len = len;
    return 0;
}

static int get_u16(tern_reader *r, uint16_t *v)
{
    uint8_t lo, hi;
    if (tern_reader_u8(r, &lo) || tern_reader_u8(r, &hi))
        return TERN_ECORRUPT;
    *v = (uint16_t)(lo | (hi << 8));
    return 0;
}

/* A client id from the journal, NUL-terminated into buf. */
static int get_id(tern_reader *r, char *buf, size_t cap)
{
    tern_mqtt_str s;
    if (get_str(r, &s) || s.len == 0 || s.len >= cap)
        return TERN_ECORRUPT;
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    return 0;
}

static int replay_msg(replay *rp, tern_reader *r)
{
    tern_broker *b = rp->b;
    uint64_t id, deadline;
    uint8_t qos, retain, flags, pf;
    tern_mqtt_str topic, publisher, ct, rt, cd;
    uint32_t user_len, n_user, payload_len;
    const uint8_t *user = NULL, *payload = NULL;
    if (tern_reader_le64(r, &id) || tern_reader_u8(r, &qos) || tern_reader_u8(r, &retain)
        || tern_reader_u8(r, &flags) || tern_reader_u8(r, &pf) || tern_reader_le64(r, &deadline)
        || get_str(r, &topic) || get_str(r, &publisher) || get_str(r, &ct) || get_str(r, &rt)
        || get_str(r, &cd) || tern_reader_le32(r, &user_len)
        || tern_reader_bytes(r, user_len, &user) || tern_reader_le32(r, &n_user)
        || tern_reader_le32(r, &payload_len) || tern_reader_bytes(r, payload_len, &payload))
        return TERN_ECORRUPT;
    if (!id || qos > 2 || topic.len == 0)
        return TERN_ECORRUPT;
    tern_mqtt_publish pub = { 0 };
    pub.qos = qos;
    pub.retain = retain != 0;
    pub.topic = topic;
    pub.payload = payload;
    pub.payload_len = payload_len;
    tern_mqtt_props *pr = &pub.props;
    if (flags & 1) {
        pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_PAYLOAD_FORMAT);
        pr->payload_format = pf;
    }
    uint64_t now_wall = (uint64_t)tern_clock_now_ms();
    if (flags & 2) {
        pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_MESSAGE_EXPIRY);
        pr->message_expiry_s = deadline > now_wall ? (uint32_t)((deadline - now_wall) / 1000) : 0;
    }
    if (ct.len) {
        pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CONTENT_TYPE);
        pr->content_type = ct;
    }
    if (rt.len) {
        pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_RESPONSE_TOPIC);
        pr->response_topic = rt;
    }
    if (cd.len) {
        pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_CORRELATION_DATA);
        pr->correlation_data = cd;
    }
    if (n_user) {
        pr->present |= TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_USER);
        pr->raw = user;
        pr->raw_len = user_len;
        pr->n_user = n_user;
    }
    char pid[256];
    size_t plen = publisher.len < sizeof pid - 1 ? publisher.len : sizeof pid - 1;
    memcpy(pid, publisher.p, plen);
    pid[plen] = '\0';
    broker_msg *m = broker_msg_new(&pub, pid, broker_now_ms(b));
    if (!m)
        return TERN_ENOMEM;
    m->store_id = id;
    if (id >= b->store->next_msg_id)
        b->store->next_msg_id = id + 1;
    broker_msg *old = map_get(&rp->msgs, id);
    if (map_put(&rp->msgs, id, m) != 0) {
        broker_msg_unref(m);
        return TERN_ENOMEM;
    }
    broker_msg_unref(old);
    return 0;
}

static int replay_record(replay *rp, uint8_t type, tern_reader *r)
{
    tern_broker *b = rp->b;
    char id[256];
    broker_session *s;
    tern_mqtt_str filter;
    switch (type) {
    case REC_SESSION: {
        uint32_t expiry;
        if (get_id(r, id, sizeof id) || tern_reader_le32(r, &expiry))
            return TERN_ECORRUPT;
        s = broker_session_find(b, id);
        if (!s && broker_session_create(b, id, &s) != 0)
            return TERN_ENOMEM;
        s->expiry_s = expiry;
        s->clean = expiry == 0;
        s->journaled = true;
        return 0;
    }
    case REC_SESSION_DEL:
        if (get_id(r, id, sizeof id))
            return TERN_ECORRUPT;
        if ((s = broker_session_find(b, id)) != NULL) {
            s->journaled = false;
            broker_session_destroy(b, s);
        }
        return 0;
    case REC_SUB: {
        uint8_t qos, flags;
        uint32_t sub_id;
        if (get_id(r, id, sizeof id) || get_str(r, &filter) || tern_reader_u8(r, &qos)
            || tern_reader_u8(r, &flags) || tern_reader_le32(r, &sub_id))
            return TERN_ECORRUPT;
        if (!(s = broker_session_find(b, id)))
            return TERN_ECORRUPT;
        tern_topic_sub_opts o = { .qos = qos > 2 ? 2 : qos,
            .no_local = flags & 1,
            .retain_as_published = (flags & 2) != 0,
            .retain_handling = (uint8_t)((flags >> 2) & 3),
            .subscription_id = sub_id };
        int rc = tern_topic_tree_add(
            b->subs, (const char *)filter.p, filter.len, &s->subscriber, &o, NULL);
        return rc == TERN_EINVAL ? TERN_ECORRUPT : rc;
    }
    case REC_UNSUB:
        if (get_id(r, id, sizeof id) || get_str(r, &filter))
            return TERN_ECORRUPT;
        if ((s = broker_session_find(b, id)) != NULL)
            (void)tern_topic_tree_remove(
                b->subs, (const char *)filter.p, filter.len, &s->subscriber);
        return 0;
    case REC_MSG:
        return replay_msg(rp, r);
    case REC_OUT: {
        uint64_t out_id, msg_id;
        uint8_t qos, retain, n_ids;
        if (tern_reader_le64(r, &out_id) || get_id(r, id, sizeof id) || tern_reader_le64(r, &msg_id)
            || tern_reader_u8(r, &qos) || tern_reader_u8(r, &retain) || tern_reader_u8(r, &n_ids))
            return TERN_ECORRUPT;
        uint32_t ids[BROKER_MAX_SUB_IDS];
        for (uint8_t i = 0; i < n_ids; i++)
            if (tern_reader_le32(r, &ids[i]))
                return TERN_ECORRUPT;
        s = broker_session_find(b, id);
        broker_msg *m = map_get(&rp->msgs, msg_id);
        if (!s || !m || qos == 0 || qos > 2)
            return TERN_ECORRUPT;
        broker_out *o = broker_session_restore_out(s, m, qos, retain != 0, ids, n_ids);
        if (!o)
            return TERN_ENOMEM;
        o->store_id = out_id;
        if (out_id >= b->store->next_out_id)
            b->store->next_out_id = out_id + 1;
        if (map_put(&rp->outs, out_id, o) != 0 || map_put(&rp->out_sessions, out_id, s) != 0)
            return TERN_ENOMEM;
        return 0;
    }
    case REC_OUT_STATE: {
        uint64_t out_id;
        uint8_t state;
        uint16_t packet_id;
        if (tern_reader_le64(r, &out_id) || tern_reader_u8(r, &state) || get_u16(r, &packet_id)
            || state < OUT_WAIT_PUBACK || state > OUT_WAIT_PUBCOMP)
            return TERN_ECORRUPT;
        broker_out *o = map_get(&rp->outs, out_id);
        s = map_get(&rp->out_sessions, out_id);
        if (o && s)
            broker_session_restore_out_state(s, o, state, packet_id);
        return 0;
    }
    case REC_OUT_DEL: {
        uint64_t out_id;
        if (tern_reader_le64(r, &out_id))
            return TERN_ECORRUPT;
        broker_out *o = map_get(&rp->outs, out_id);
        s = map_get(&rp->out_sessions, out_id);
        if (o && s) {
            o->store_id = 0;
            broker_session_drop_out(s, o);
            (void)map_put(&rp->outs, out_id, NULL);
            (void)map_put(&rp->out_sessions, out_id, NULL);
        }
        return 0;
    }
    case REC_RETAIN: {
        tern_mqtt_str topic;
        uint64_t msg_id;
        if (get_str(r, &topic) || tern_reader_le64(r, &msg_id) || topic.len == 0)
            return TERN_ECORRUPT;
        broker_msg *m = msg_id ? map_get(&rp->msgs, msg_id) : NULL;
        if (msg_id && !m)
            return TERN_ECORRUPT;
        broker_retained_set(b, (const char *)topic.p, topic.len, m);
        return 0;
    }
    case REC_QOS2_IN: {
        uint16_t packet_id;
        uint8_t on;
        if (get_id(r, id, sizeof id) || get_u16(r, &packet_id) || tern_reader_u8(r, &on))
            return TERN_ECORRUPT;
        if ((s = broker_session_find(b, id)) != NULL)
            (void)broker_session_qos2_set(s, packet_id, on != 0);
        return 0;
    }
    default:
        return TERN_ECORRUPT;
    }
}

static int read_file(int fd, tern_buf *out)
{
    for (;;) {
        if (tern_buf_reserve(out, 1u << 20) != 0)
            return TERN_ENOMEM;
        ssize_t n = read(fd, out->data + out->len, out->cap - out->len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return 0;
        out->len += (size_t)n;
    }
}

static int replay_file(tern_broker *b, int fd)
{
    tern_buf data = TERN_BUF_INIT;
    replay rp = { .b = b };
    int rc = read_file(fd, &data);
    if (rc != 0)
        goto out;
    if (data.len == 0)
        goto out; /* new journal */
    if (data.len < HEADER_BYTES || memcmp(data.data, MAGIC, 8) != 0) {
        tern_logf(TERN_LOG_ERROR, "broker", "%s is not a tern broker journal", b->store->path);
        rc = TERN_ECORRUPT;
        goto out;
    }
    if (data.data[8] != VERSION) {
        tern_logf(TERN_LOG_ERROR, "broker", "%s: journal version %u is not supported",
            b->store->path, data.data[8]);
        rc = TERN_EVERSION;
        goto out;
    }
    size_t off = HEADER_BYTES;
    uint64_t n_records = 0;
    while (off + 8 <= data.len) {
        const uint8_t *h = data.data + off;
        uint32_t len
            = (uint32_t)h[0] | (uint32_t)h[1] << 8 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 24;
        uint32_t crc
            = (uint32_t)h[4] | (uint32_t)h[5] << 8 | (uint32_t)h[6] << 16 | (uint32_t)h[7] << 24;
        if (len == 0 || len > MAX_RECORD || off + 8 + len > data.len)
            break;
        if (tern_crc32c(h + 8, len) != crc)
            break;
        tern_reader r;
        tern_reader_init(&r, h + 9, len - 1);
        rc = replay_record(&rp, h[8], &r);
        if (rc == TERN_ECORRUPT) {
            tern_logf(TERN_LOG_ERROR, "broker",
                "%s: record at offset %zu is inconsistent; replay stops there", b->store->path,
                off);
            rc = 0;
            break;
        }
        if (rc != 0)
            goto out;
        off += 8 + len;
        n_records++;
    }
    if (off < data.len)
        tern_logf(TERN_LOG_WARN, "broker", "%s: dropped %zu bytes of torn or corrupt tail",
            b->store->path, data.len - off);
    tern_logf(TERN_LOG_INFO, "broker", "journal: replayed %llu records, %u sessions",
        (unsigned long long)n_records, b->n_sessions);
out:
    for (size_t i = 0; i < rp.msgs.cap; i++)
        if (rp.msgs.keys[i])
            broker_msg_unref(rp.msgs.vals[i]);
    map_free(&rp.msgs);
    map_free(&rp.outs);
    map_free(&rp.out_sessions);
    tern_buf_free(&data);
    return rc;
}

int broker_store_open(tern_broker *b, const char *data_dir)
{
    broker_store *st = tern_calloc(1, sizeof *st);
    if (!st)
        return TERN_ENOMEM;
    st->fd = -1;
    st->dir_fd = -1;
    st->next_msg_id = 1;
    st->next_out_id = 1;
    char dir[PATH_MAX];
    int rc = 0;
    if (snprintf(dir, sizeof dir, "%s/broker", data_dir) >= (int)sizeof dir
        || snprintf(st->path, sizeof st->path, "%s/journal", dir) >= (int)sizeof st->path
        || snprintf(st->tmp_path, sizeof st->tmp_path, "%s/journal.tmp", dir)
            >= (int)sizeof st->tmp_path) {
        tern_free(st);
        return TERN_EINVAL;
    }
    if ((mkdir(data_dir, 0755) != 0 && errno != EEXIST)
        || (mkdir(dir, 0700) != 0 && errno != EEXIST)) {
        rc = -errno;
        tern_logf(TERN_LOG_ERROR, "broker", "cannot create %s: %s", dir, tern_strerror(rc));
        tern_free(st);
        return rc;
    }
    st->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    st->fd = open(st->path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (st->dir_fd < 0 || st->fd < 0) {
        rc = -errno;
        tern_logf(TERN_LOG_ERROR, "broker", "cannot open %s: %s", st->path, tern_strerror(rc));
        goto fail;
    }
    b->store = st;
    if ((rc = replay_file(b, st->fd)) != 0)
        goto fail;
    /* Every restored session is offline: start its expiry clock now. */
    for (uint32_t i = 0; i < b->n_session_buckets; i++)
        for (broker_session *s = b->sessions[i]; s; s = s->hash_next)
            broker_session_detach(b, s);
    if ((rc = compact(b)) != 0) {
        tern_logf(TERN_LOG_ERROR, "broker", "cannot rewrite %s: %s", st->path, tern_strerror(rc));
        goto fail;
    }
    return 0;
fail:
    b->store = NULL;
    if (st->fd >= 0)
        close(st->fd);
    if (st->dir_fd >= 0)
        close(st->dir_fd);
    tern_buf_free(&st->pending);
    tern_free(st);
    return rc;
}

void broker_store_close(tern_broker *b)
{
    broker_store *st = b->store;
    if (!st)
        return;
    (void)broker_store_commit(b);
    close(st->fd);
    close(st->dir_fd);
    tern_buf_free(&st->pending);
    tern_free(st);
    b->store = NULL;
}

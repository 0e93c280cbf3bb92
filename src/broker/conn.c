/*
 * conn.c: one client connection: non-blocking reads into a buffer, framing and decoding, the
 * output buffer and its flushing, keepalive and CONNECT timeouts, and closing.
 *
 * Reads are level-triggered and bounded per wake-up (so one busy client cannot starve the
 * others); every whole packet in the buffer is handled before the output is flushed once, so a
 * burst of publishes costs one write. WRITE interest is armed only while output is pending.
 * A connection is freed on a deferred task, never on the stack of its own handlers.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/log.h"
#include "broker/store.h"
#include "loop/net.h"

#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_READS_PER_WAKE 4

static void conn_io_cb(tern_loop_io *io, unsigned events);
static void conn_timer_cb(tern_loop_timer *t);

static void conn_free_task(tern_loop_task *task)
{
    broker_conn *c = task->data;
    /* Completions (ingest, auth) still hold c: the last one frees it (broker_conn_release). */
    if (c->n_pending)
        return;
    broker_conn_release(c);
}

void broker_conn_release(broker_conn *c)
{
    /* A completion can release c in the loop pass that closed it, with its free task still
     * queued: the task must not run on freed memory. */
    tern_loop_cancel(&c->free_task);
    /* Off the broker's list of closed connections. */
    tern_broker *b = c->broker;
    if (c->prev)
        c->prev->next = c->next;
    else
        b->closed = c->next;
    if (c->next)
        c->next->prev = c->prev;
    tern_buf_free(&c->in);
    tern_buf_free(&c->out);
    if (c->alias_in) {
        for (uint32_t i = 0; i <= c->broker->cfg.topic_alias_max; i++)
            tern_free(c->alias_in[i]);
        tern_free(c->alias_in);
    }
    for (uint16_t i = 0; i < c->n_alias_out; i++)
        tern_free(c->alias_out[i]);
    tern_free(c->alias_out);
    broker_msg_unref(c->will);
    tern_free(c->username);
    tern_free(c->tls_identity);
    tern_free(c->parked_connect);
    tern_free(c);
}

void broker_conn_accept(tern_broker *b, int fd, bool tls)
{
    broker_conn *c = tern_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->broker = b;
    c->fd = fd;
    c->state = CONN_NEW;
    c->client_receive_max = 65535;
    tern_buf_init(&c->in);
    tern_buf_init(&c->out);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0
        || tern_net_format_addr((struct sockaddr *)&ss, c->peer, sizeof c->peer) != 0)
        snprintf(c->peer, sizeof c->peer, "fd %d", fd);
    if (tls && broker_tls_attach(c) != 0) {
        close(fd);
        tern_free(c);
        return;
    }
    tern_loop_io_init(b->loop, &c->io, fd, conn_io_cb, c);
    tern_loop_timer_init(b->loop, &c->timer, conn_timer_cb, c);
    if (tern_loop_io_start(&c->io, TERN_LOOP_READ) != 0) {
        broker_tls_detach(c);
        close(fd);
        tern_free(c);
        return;
    }
    tern_loop_timer_start(&c->timer, b->cfg.connect_timeout_ms, 0);
    c->next = b->conns;
    if (b->conns)
        b->conns->prev = c;
    b->conns = c;
    b->n_conns++;
}

size_t broker_conn_out_pending(const broker_conn *c)
{
    return c->out.len - c->out_off;
}

int broker_conn_send(broker_conn *c, const tern_mqtt_packet *pkt)
{
    if (c->state == CONN_CLOSED)
        return TERN_ECLOSED;
    size_t before = c->out.len;
    int rc = tern_mqtt_encode(&c->out, c->version ? c->version : TERN_MQTT_V311, pkt);
    if (rc == 0)
        c->broker->stats.bytes_sent += c->out.len - before;
    return rc;
}

/* The interest follows the state: READ unless paused, WRITE while output is pending. */
static void update_interest(broker_conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    unsigned ev = (c->paused ? 0u : TERN_LOOP_READ) | (c->writing ? TERN_LOOP_WRITE : 0u);
    if (ev == 0)
        tern_loop_io_stop(&c->io);
    else
        (void)tern_loop_io_start(&c->io, ev);
}

static void set_write_interest(broker_conn *c, bool on)
{
    if (c->writing == on || c->state == CONN_CLOSED)
        return;
    c->writing = on;
    update_interest(c);
}

/* Returns 0, or -1 when the socket failed (the caller closes). */
static int conn_write_now(broker_conn *c)
{
    while (c->out_off < c->out.len) {
        ssize_t n = broker_io_send(c, c->out.data + c->out_off, c->out.len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_write_interest(c, true);
            return 0;
        }
        return -1;
    }
    /* Drained: reuse the buffer from its start. Big buffers are released after a burst. */
    c->out.len = 0;
    c->out_off = 0;
    if (c->out.cap > 4096)
        tern_buf_free(&c->out);
    set_write_interest(c, false);
    return 0;
}

void broker_conn_flush(broker_conn *c)
{
    if (c->state == CONN_CLOSED || broker_conn_out_pending(c) == 0)
        return;
    if (conn_write_now(c) != 0)
        broker_conn_close(c, 0, true);
}

static void dirty_unlink(broker_conn *c)
{
    if (!c->dirty)
        return;
    if (c->dirty_prev)
        c->dirty_prev->dirty_next = c->dirty_next;
    else
        c->broker->dirty = c->dirty_next;
    if (c->dirty_next)
        c->dirty_next->dirty_prev = c->dirty_prev;
    c->dirty = false;
    c->dirty_prev = c->dirty_next = NULL;
}

/*
 * The write barrier: the journal is committed (written and synced) before any output of this
 * iteration leaves, so no acknowledgement ever precedes the state it acknowledges.
 */
static void flush_dirty_task(tern_loop_task *task)
{
    tern_broker *b = task->data;
    if (broker_store_commit(b) != 0) {
        /* The broker can no longer keep its promises: stop acknowledging anything. */
        tern_logf(TERN_LOG_ERROR, "broker", "journal failed: closing every connection");
        b->store_failed = true;
        while (b->conns)
            broker_conn_close(b->conns, TERN_MQTT_RC_UNSPECIFIED, false);
        return;
    }
    while (b->dirty) {
        broker_conn *c = b->dirty;
        dirty_unlink(c);
        broker_conn_flush(c);
    }
}

void broker_conn_mark_dirty(broker_conn *c)
{
    if (c->dirty || c->state == CONN_CLOSED)
        return;
    tern_broker *b = c->broker;
    c->dirty = true;
    c->dirty_prev = NULL;
    c->dirty_next = b->dirty;
    if (b->dirty)
        b->dirty->dirty_prev = c;
    b->dirty = c;
    tern_loop_defer(b->loop, &b->flush_task, flush_dirty_task, b);
}

void broker_conn_reset_keepalive(broker_conn *c)
{
    if (c->keepalive_s == 0) {
        tern_loop_timer_stop(&c->timer);
        return;
    }
    /* MQTT: the server disconnects after 1.5 times the keepalive without a packet. */
    tern_loop_timer_start(&c->timer, (uint64_t)c->keepalive_s * 1500u, 0);
}

static void conn_timer_cb(tern_loop_timer *t)
{
    broker_conn *c = t->data;
    if (c->state == CONN_NEW) {
        TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "%s: no CONNECT in time, closing", c->peer);
        broker_conn_close(c, 0, false);
        return;
    }
    TERN_LOG(TERN_LOG_DEBUG, "broker", "client '%s': keepalive timeout",
        c->session ? c->session->client_id : "?");
    broker_conn_close(c, TERN_MQTT_RC_KEEP_ALIVE_TIMEOUT, true);
}

void broker_conn_close(broker_conn *c, uint8_t reason, bool will)
{
    tern_broker *b = c->broker;
    if (c->state == CONN_CLOSED)
        return;
    bool was_active = c->state == CONN_ACTIVE;
    if (was_active && c->version == TERN_MQTT_V5 && reason >= 0x80) {
        tern_mqtt_packet d = { .type = TERN_MQTT_DISCONNECT };
        d.u.disconnect.reason = reason;
        /* A reason string says it in words (and makes the packet long enough for clients
         * that mishandle the short form). DISCONNECT may carry one whatever the client's
         * Request Problem Information (5.0 3.1.2.11.7). */
        const char *why = tern_mqtt_reason_str(reason, TERN_MQTT_DISCONNECT);
        d.u.disconnect.props.present = TERN_MQTT_PROP_BIT(TERN_MQTT_PROP_REASON_STRING);
        d.u.disconnect.props.reason_string.p = (const uint8_t *)why;
        d.u.disconnect.props.reason_string.len = (uint16_t)strlen(why);
        if (broker_conn_send(c, &d) == 0)
            (void)conn_write_now(c);
    } else if (broker_conn_out_pending(c)) {
        (void)conn_write_now(c); /* best effort: e.g. a CONNACK carrying a refusal */
    }
    c->state = CONN_CLOSED;
    dirty_unlink(c);
    tern_loop_io_stop(&c->io);
    tern_loop_timer_stop(&c->timer);
    broker_tls_detach(c);
    close(c->fd);
    c->fd = -1;
    if (c->prev)
        c->prev->next = c->next;
    else
        b->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    b->n_conns--;
    /* Kept on the closed list until freed, so tern_broker_free can reach it. */
    c->prev = NULL;
    c->next = b->closed;
    if (b->closed)
        b->closed->prev = c;
    b->closed = c;
    if (was_active) {
        b->stats.connections--;
        if (will && c->will)
            broker_will_publish(b, c);
        if (c->session) {
            broker_session *s = c->session;
            s->conn = NULL;
            c->session = NULL;
            broker_session_detach(b, s);
        }
    }
    tern_loop_defer(b->loop, &c->free_task, conn_free_task, c);
}

/*
 * Handles every whole packet in data[0..len). Returns the bytes consumed, or -1 if the
 * connection was closed (data must not be touched then).
 */
static long conn_process_input(broker_conn *c, const uint8_t *data, size_t len)
{
    tern_broker *b = c->broker;
    size_t off = 0;
    while (c->state != CONN_CLOSED && !c->paused && off < len) {
        size_t packet_len = 0;
        int rc = tern_mqtt_frame(data + off, len - off, b->cfg.max_packet_bytes, &packet_len);
        if (rc == TERN_EPARTIAL)
            break;
        if (rc != 0) {
            b->stats.protocol_errors++;
            TERN_LOG_RATELIMITED(TERN_LOG_WARN, "broker", "client '%s': %s, closing",
                c->session ? c->session->client_id : c->peer,
                rc == TERN_ETOOBIG ? "packet too large" : "malformed length");
            broker_conn_close(c,
                rc == TERN_ETOOBIG ? TERN_MQTT_RC_PACKET_TOO_LARGE : TERN_MQTT_RC_MALFORMED, true);
            return -1;
        }
        tern_mqtt_packet pkt;
        size_t used = 0;
        tern_mqtt_status st = { 0, NULL };
        rc = tern_mqtt_decode(data + off, packet_len, c->version, &pkt, &used, &st);
        if (rc == TERN_EVERSION && c->state == CONN_NEW) {
            /* Unsupported protocol level: answer in the 3.1.1 form any client can read. */
            tern_mqtt_packet ack = { .type = TERN_MQTT_CONNACK };
            ack.u.connack.reason = 1;
            c->version = TERN_MQTT_V311;
            (void)broker_conn_send(c, &ack);
            b->stats.connects_refused++;
            broker_conn_close(c, 0, false);
            return -1;
        }
        if (rc != 0) {
            b->stats.protocol_errors++;
            TERN_LOG_RATELIMITED(TERN_LOG_WARN, "broker", "client '%s': %s (%s), closing",
                c->session ? c->session->client_id : c->peer, st.what ? st.what : tern_strerror(rc),
                tern_mqtt_reason_str(st.reason, 0));
            broker_conn_close(c, st.reason ? st.reason : TERN_MQTT_RC_MALFORMED, true);
            return -1;
        }
        c->cur_packet = data + off;
        c->cur_packet_len = packet_len;
        off += packet_len;
        rc = broker_handle_packet(c, &pkt);
        c->cur_packet = NULL;
        if (rc != 0) {
            if (c->state != CONN_CLOSED) {
                b->stats.protocol_errors++;
                broker_conn_close(c, (uint8_t)rc, true);
            }
            return -1;
        }
    }
    if (c->state == CONN_CLOSED)
        return -1;
    return (long)off;
}

int broker_conn_park_connect(broker_conn *c)
{
    TERN_ASSERT(c->cur_packet != NULL);
    c->parked_connect = tern_malloc(c->cur_packet_len);
    if (!c->parked_connect)
        return TERN_ENOMEM;
    memcpy(c->parked_connect, c->cur_packet, c->cur_packet_len);
    c->parked_len = c->cur_packet_len;
    c->paused = true; /* bytes after the CONNECT wait in c->in until the verdict */
    update_interest(c);
    return 0;
}

void broker_conn_auth_done(broker_conn *c, int verdict)
{
    uint8_t *bytes = c->parked_connect;
    size_t len = c->parked_len;
    c->parked_connect = NULL;
    c->auth_verdict = verdict;
    c->auth_verdict_ready = true;
    c->paused = false;
    update_interest(c);
    tern_mqtt_packet pkt;
    size_t used;
    int rc = tern_mqtt_decode(bytes, len, 0, &pkt, &used, NULL);
    TERN_ASSERT(rc == 0); /* it decoded before it was parked */
    rc = broker_handle_connect(c, &pkt.u.connect);
    tern_free(bytes);
    if (rc != 0) {
        if (c->state != CONN_CLOSED)
            broker_conn_close(c, (uint8_t)rc, false);
        return;
    }
    if (c->state == CONN_CLOSED)
        return;
    /* Packets that arrived behind the CONNECT. */
    if (c->in.len) {
        long n = conn_process_input(c, c->in.data, c->in.len);
        if (n < 0)
            return;
        tern_buf_consume(&c->in, (size_t)n);
    }
    broker_conn_mark_dirty(c);
}

/*
 * Reads go to the broker's shared scratch buffer; only the tail of a packet that has not fully
 * arrived is copied into the connection's own buffer. So an idle connection holds no input
 * buffer at all, which is most of the memory an idle connection would otherwise cost.
 */
static void conn_read(broker_conn *c)
{
    tern_broker *b = c->broker;
    for (int i = 0; i < MAX_READS_PER_WAKE && c->state != CONN_CLOSED && !c->paused; i++) {
        ssize_t n = broker_io_recv(c, b->scratch, sizeof b->scratch);
        if (n == 0) {
            broker_conn_close(c, 0, true); /* peer closed without DISCONNECT: will is sent */
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (c->tls_want_write)
                    set_write_interest(c, true);
                break;
            }
            broker_conn_close(c, 0, true);
            return;
        }
        b->stats.bytes_received += (uint64_t)n;
        if (c->state == CONN_ACTIVE)
            broker_conn_reset_keepalive(c);
        const uint8_t *data = b->scratch;
        size_t len = (size_t)n;
        if (c->in.len) {
            if (tern_buf_append(&c->in, b->scratch, len) != 0) {
                broker_conn_close(c, TERN_MQTT_RC_IMPLEMENTATION_ERROR, true);
                return;
            }
            data = c->in.data;
            len = c->in.len;
        }
        long used = conn_process_input(c, data, len);
        if (used < 0)
            return;
        if (data == c->in.data) {
            tern_buf_consume(&c->in, (size_t)used);
            if (c->in.len == 0)
                tern_buf_free(&c->in);
        } else if ((size_t)used < len
            && tern_buf_append(&c->in, data + used, len - (size_t)used) != 0) {
            broker_conn_close(c, TERN_MQTT_RC_IMPLEMENTATION_ERROR, true);
            return;
        }
        if ((size_t)n < sizeof b->scratch && !broker_io_pending(c))
            break;
    }
}

static void conn_io_cb(tern_loop_io *io, unsigned events)
{
    broker_conn *c = io->data;
    /* A TLS connection may be waiting to write before it can read (tls_want_write). */
    if ((events & (TERN_LOOP_READ | TERN_LOOP_ERROR)) || (c->ssl && (events & TERN_LOOP_WRITE)))
        conn_read(c);
    if (c->state != CONN_CLOSED)
        broker_conn_mark_dirty(c);
}

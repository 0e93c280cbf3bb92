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
    tern_broker *b = c->broker;
    broker_lock(b, c->w);
    /* Completions (ingest, auth) still hold c: the last one frees it (broker_conn_release). */
    if (!c->n_pending)
        broker_conn_release(c);
    broker_unlock(b);
}

void broker_conn_release(broker_conn *c)
{
    /* A completion can release c in the loop pass that closed it, with its free task still
     * queued: the task must not run on freed memory. */
    tern_loop_cancel(&c->free_task);
    tern_list_unlink(&c->link); /* off the broker's list of closed connections */
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

static int conn_process_buffered(broker_conn *c);

void broker_conn_accept(
    tern_broker *b, broker_worker *w, int fd, bool tls, bool admitted, tern_buf *first)
{
    broker_conn *c = tern_calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    c->broker = b;
    c->w = w;
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
    tern_loop_io_init(w->loop, &c->io, fd, conn_io_cb, c);
    tern_loop_timer_init(w->loop, &c->timer, conn_timer_cb, c);
    /* Until its CONNACK the connection is background work for its loop (loop.h): a TLS
     * handshake or a CONNECT still arriving waits behind the established clients. */
    if (tern_loop_io_set_background(&c->io, true) != 0
        || tern_loop_io_start(&c->io, TERN_LOOP_READ) != 0) {
        broker_tls_detach(c);
        close(fd);
        tern_free(c);
        return;
    }
    tern_loop_timer_start(&c->timer, b->cfg.connect_timeout_ms, 0);
    tern_list_push_front(&b->conns, &c->link);
    b->n_conns++;
    c->admitted = admitted;
    if (first->len) {
        /* The door's bytes are this connection's first input, as if read here. */
        c->in = *first;
        tern_buf_init(first);
        if (conn_process_buffered(c) == 0 && c->state != CONN_CLOSED)
            broker_conn_mark_dirty(c);
    }
}

size_t broker_conn_out_pending(const broker_conn *c)
{
    return c->out.len - c->out_off;
}

/* The properties of pkt that it may shed to fit a limit (NULL: none, or not this packet). */
static tern_mqtt_props *sheddable_props(tern_mqtt_packet *pkt)
{
    switch (pkt->type) {
    case TERN_MQTT_CONNACK:
        return &pkt->u.connack.props;
    case TERN_MQTT_PUBACK:
    case TERN_MQTT_PUBREC:
    case TERN_MQTT_PUBREL:
    case TERN_MQTT_PUBCOMP:
        return &pkt->u.ack.props;
    case TERN_MQTT_SUBACK:
    case TERN_MQTT_UNSUBACK:
        return &pkt->u.suback.props;
    case TERN_MQTT_DISCONNECT:
        return &pkt->u.disconnect.props;
    case TERN_MQTT_AUTH:
        return &pkt->u.auth.props;
    default:
        return NULL;
    }
}

int broker_encode_within(
    tern_buf *out, uint8_t version, uint32_t limit, const tern_mqtt_packet *pkt)
{
    size_t before = out->len;
    int rc = tern_mqtt_encode(out, version, pkt);
    if (rc != 0 || limit == 0 || out->len - before <= limit)
        return rc;
    out->len = before;
    tern_mqtt_packet lean = *pkt;
    tern_mqtt_props *pr = sheddable_props(&lean);
    if (!pr)
        return TERN_ETOOBIG;
    tern_mqtt_props_drop_optional(pr);
    rc = tern_mqtt_encode(out, version, &lean);
    if (rc != 0 || out->len - before <= limit)
        return rc;
    out->len = before;
    return TERN_ETOOBIG;
}

int broker_conn_send(broker_conn *c, const tern_mqtt_packet *pkt)
{
    if (c->state == CONN_CLOSED)
        return TERN_ECLOSED;
    size_t before = c->out.len;
    int rc = broker_encode_within(
        &c->out, c->version ? c->version : TERN_MQTT_V311, c->client_max_packet, pkt);
    if (rc == 0)
        c->broker->stats.bytes_sent += c->out.len - before;
    return rc;
}

/* Which of its worker's lists c is on says what state it is in (under the lock). */
static bool conn_dirty(const broker_conn *c) /* output to flush, or a close to finish */
{
    return tern_list_linked(&c->dirty_link);
}

static bool close_queued(const broker_conn *c) /* hung up or timed out: closed soon */
{
    return tern_list_linked(&c->close_link);
}

/* The interest follows the state: READ unless paused, WRITE while output is pending. */
static void update_interest(broker_conn *c)
{
    if (c->state == CONN_CLOSED || close_queued(c)) /* not watched any more */
        return;
    unsigned ev
        = (c->paused || c->throttled ? 0u : TERN_LOOP_READ) | (c->writing ? TERN_LOOP_WRITE : 0u);
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

static void dirty_link(broker_conn *c, broker_worker *w);

/*
 * Returns 0, or -1 when the socket failed (the caller closes). Under the lock, on any loop for
 * a plain TCP connection whose socket is not full (see broker_conn_mark_dirty); a full socket
 * needs WRITE interest, which only c's own loop can arm, so c is handed to it.
 */
static int conn_write_now(broker_conn *c)
{
    if (c->w != c->broker->holder && (c->ssl || c->writing)) {
        dirty_link(c, c->w);
        return 0;
    }
    while (c->out_off < c->out.len) {
        ssize_t n = broker_io_send(c, c->out.data + c->out_off, c->out.len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (c->w == c->broker->holder)
                set_write_interest(c, true);
            else
                dirty_link(c, c->w); /* its own loop arms WRITE interest */
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
    tern_list_unlink(&c->dirty_link);
}

/* Puts c on w's list (off any other first) and makes sure w flushes it soon. */
static void dirty_link(broker_conn *c, broker_worker *w)
{
    if (conn_dirty(c) && c->dirty_on == w)
        return;
    dirty_unlink(c);
    c->dirty_on = w;
    tern_list_push_front(&w->dirty, &c->dirty_link);
    broker_worker_wake(c->broker, w);
}

static void conn_finish_close(broker_conn *c);
static void conn_resume(broker_conn *c);

/*
 * Closing a few at a time. When thousands of clients vanish at once (a gateway in front of them
 * restarts, a process holding thousands of connections exits, a cell goes dark and their
 * keepalives run out together), their EOFs or timeouts come due together, and closing each one
 * (the session, its will, the socket: on loopback the FIN exchange runs in the broker too) in the
 * iteration that saw it held established clients up for tens of milliseconds. So such a
 * connection stops being watched at once and goes on its worker's list with the reason it is
 * closed for, and a task closes at most CLOSES_PER_ITERATION of them per iteration, after that
 * iteration's I/O. A connection closed another way meanwhile (takeover, shutdown) leaves the
 * list in broker_conn_close.
 */
#define CLOSES_PER_ITERATION 32

static void close_task_cb(tern_loop_task *task)
{
    broker_worker *w = task->data;
    tern_broker *b = w->broker;
    broker_lock(b, w);
    tern_list *l;
    for (int i = 0; i < CLOSES_PER_ITERATION && (l = tern_list_first(&w->to_close)) != NULL; i++) {
        broker_conn *c = TERN_LIST_ENTRY(l, broker_conn, close_link);
        broker_conn_close(c, c->close_reason, c->close_will); /* unlinks it */
    }
    if (!tern_list_empty(&w->to_close))
        tern_loop_defer(w->loop, &w->close_task, close_task_cb, w); /* the next iteration */
    broker_unlock(b);
}

/* On c's own loop, under the lock: close c soon, as broker_conn_close(c, reason, will) would. */
static void conn_close_soon(broker_conn *c, uint8_t reason, bool will)
{
    broker_worker *w = c->w;
    if (close_queued(c) || c->state == CONN_CLOSED)
        return;
    tern_loop_io_stop(&c->io); /* an EOF would be reported again at every poll */
    c->close_reason = reason;
    c->close_will = will;
    tern_list_push_back(&w->to_close, &c->close_link);
    tern_loop_defer(w->loop, &w->close_task, close_task_cb, w);
}

void broker_closing_cancel(broker_worker *w)
{
    tern_loop_cancel(&w->close_task);
}

static long conn_process_input(broker_conn *c, const uint8_t *data, size_t len);

/*
 * The write barrier: the journal is committed (written and synced) before any output of this
 * iteration leaves, so no acknowledgement ever precedes the state it acknowledges. Every
 * worker commits before it flushes: whatever output it is about to send was queued, under the
 * lock, after the journal records it depends on.
 */
void broker_worker_flush(broker_worker *w)
{
    tern_broker *b = w->broker;
    if (broker_store_commit(b) != 0) {
        /* The broker can no longer keep its promises: stop acknowledging anything. */
        if (!b->store_failed)
            tern_logf(TERN_LOG_ERROR, "broker", "journal failed: closing every connection");
        b->store_failed = true;
        for (tern_list *l; (l = tern_list_first(&b->conns)) != NULL;)
            broker_conn_close(
                TERN_LIST_ENTRY(l, broker_conn, link), TERN_MQTT_RC_UNSPECIFIED, false);
    }
    for (tern_list *l; (l = tern_list_first(&w->dirty)) != NULL;) {
        broker_conn *c = TERN_LIST_ENTRY(l, broker_conn, dirty_link);
        dirty_unlink(c);
        if (c->state == CONN_CLOSED) {
            conn_finish_close(c); /* closed by another loop: its socket is this loop's */
            continue;
        }
        if (c->resume)
            conn_resume(c);
        if (c->state != CONN_CLOSED && !b->store_failed)
            broker_conn_flush(c);
    }
}

/*
 * A plain TCP connection is flushed by the loop that queued its output, at the end of that
 * loop's iteration: sending on a socket needs no more than the lock (which keeps the socket
 * open), and waking the owning loop for it would cost a post and a thread wake-up per message.
 * TLS connections (OpenSSL reads outside the lock on the owning loop), connections waiting
 * for WRITE readiness, and connections whose own loop is about to flush anyway are flushed by
 * their own loop.
 */
void broker_conn_mark_dirty(broker_conn *c)
{
    if (conn_dirty(c) || c->state == CONN_CLOSED)
        return;
    tern_broker *b = c->broker;
    /* A non-empty list means a flush of that loop is already due (every link wakes it, and a
     * flush empties the list): joining it costs nothing and sends c's output once. */
    bool own = c->ssl || c->writing || !b->holder || !tern_list_empty(&c->w->dirty);
    dirty_link(c, own ? c->w : b->holder);
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
    tern_broker *b = c->broker;
    broker_lock(b, c->w);
    if (c->state == CONN_NEW) {
        TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "%s: no CONNECT in time, closing", c->peer);
        conn_close_soon(c, 0, false);
    } else if (c->state == CONN_ACTIVE) {
        TERN_LOG(TERN_LOG_DEBUG, "broker", "client '%s': keepalive timeout",
            c->session ? c->session->client_id : "?");
        conn_close_soon(c, TERN_MQTT_RC_KEEP_ALIVE_TIMEOUT, true);
    }
    broker_unlock(b);
}

/* ---- push-back ----------------------------------------------------------------------------
 * A QoS 1/2 publish that meets an online subscriber's full queue is queued all the same (it will
 * be acknowledged: it must not be dropped) and its publisher stops being read: no more PUBACKs
 * until that queue drains to half, and TCP pushes back on the client. At most one message per
 * publisher goes past a queue's bound each time. So that one subscriber that never acknowledges
 * cannot stall every publisher, the throttled resume after BROKER_THROTTLE_MAX_MS at the latest,
 * and a queue at twice its bound drops (counted) instead of pushing back (session.c). */

static void throttle_unlink(broker_conn *c)
{
    if (!c->throttled)
        return;
    tern_list_unlink(&c->throttle_link);
    c->throttled = false;
    c->resume = false;
}

void broker_conn_throttle(broker_conn *c)
{
    tern_broker *b = c->broker;
    TERN_ASSERT(c->w == b->holder);
    if (c->throttled || c->state == CONN_CLOSED)
        return;
    c->throttled = true;
    if (tern_list_empty(&b->throttled))
        b->throttled_since_ms = broker_now_ms(b);
    tern_list_push_front(&b->throttled, &c->throttle_link);
    b->stats.publishers_throttled++;
    update_interest(c);
}

void broker_conn_unthrottle_all(tern_broker *b)
{
    b->throttled_since_ms = broker_now_ms(b);
    for (tern_list *l = tern_list_first(&b->throttled); l; l = tern_list_next(&b->throttled, l)) {
        broker_conn *c = TERN_LIST_ENTRY(l, broker_conn, throttle_link);
        if (c->resume)
            continue;
        c->resume = true;
        dirty_link(c, c->w); /* its own loop resumes it (interest, buffered input) */
    }
}

/*
 * Handles the packets already read into c->in while reading was stopped (a parked CONNECT,
 * a throttled publisher). 0, or -1 when c was closed.
 */
static int conn_process_buffered(broker_conn *c)
{
    if (!c->in.len)
        return 0;
    long n = conn_process_input(c, c->in.data, c->in.len);
    if (n < 0)
        return -1;
    tern_buf_consume(&c->in, (size_t)n);
    if (c->in.len == 0)
        tern_buf_free(&c->in);
    return 0;
}

/* On c's own loop: read again, and handle what was read before it stopped. */
static void conn_resume(broker_conn *c)
{
    throttle_unlink(c);
    update_interest(c);
    if (!c->paused)
        (void)conn_process_buffered(c);
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
        (void)broker_conn_send(c, &d); /* written when the socket is closed, below or later */
    }
    c->state = CONN_CLOSED;
    dirty_unlink(c);
    throttle_unlink(c);
    tern_list_unlink(&c->close_link);
    tern_list_unlink(&c->link); /* off the open connections */
    b->n_conns--;
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
    /* The socket, the timer and the I/O watcher belong to c's loop. */
    if (c->w == b->holder)
        conn_finish_close(c);
    else
        dirty_link(c, c->w);
}

/* The second half of closing, on c's own loop: last output, socket, watchers; free later. */
static void conn_finish_close(broker_conn *c)
{
    tern_broker *b = c->broker;
    if (broker_conn_out_pending(c))
        (void)conn_write_now(c); /* best effort: a DISCONNECT, or a CONNACK carrying a refusal */
    tern_loop_io_stop(&c->io);
    tern_loop_timer_stop(&c->timer);
    broker_tls_detach(c);
    close(c->fd);
    c->fd = -1;
    /* Kept on the closed list until freed, so tern_broker_free can reach it. */
    tern_list_push_front(&b->closed, &c->link);
    c->finished = true;
    tern_loop_defer(c->w->loop, &c->free_task, conn_free_task, c);
}

/*
 * Handles every whole packet in data[0..len). Returns the bytes consumed, or -1 if the
 * connection was closed (data must not be touched then).
 */
static long conn_process_input(broker_conn *c, const uint8_t *data, size_t len)
{
    tern_broker *b = c->broker;
    size_t off = 0;
    while (c->state != CONN_CLOSED && !c->paused && !c->throttled && off < len) {
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
    if (conn_process_buffered(c) != 0)
        return;
    broker_conn_mark_dirty(c);
}

/*
 * Takes the result of one read (n bytes in the worker's scratch buffer, 0 for EOF, -1 with
 * err). Under the lock. Returns true when another read may follow.
 */
static bool conn_input(broker_conn *c, ssize_t n, int err)
{
    tern_broker *b = c->broker;
    uint8_t *scratch = c->w->scratch;
    if (n == 0) {
        conn_close_soon(c, 0, true); /* peer closed without DISCONNECT: will is sent */
        return false;
    }
    if (n < 0) {
        if (err == EINTR)
            return true;
        if (err == EAGAIN || err == EWOULDBLOCK) {
            if (c->tls_want_write)
                set_write_interest(c, true);
            return false;
        }
        conn_close_soon(c, 0, true);
        return false;
    }
    b->stats.bytes_received += (uint64_t)n;
    if (c->state == CONN_ACTIVE)
        broker_conn_reset_keepalive(c);
    const uint8_t *data = scratch;
    size_t len = (size_t)n;
    if (c->in.len) {
        if (tern_buf_append(&c->in, scratch, len) != 0) {
            broker_conn_close(c, TERN_MQTT_RC_IMPLEMENTATION_ERROR, true);
            return false;
        }
        data = c->in.data;
        len = c->in.len;
    }
    long used = conn_process_input(c, data, len);
    if (used < 0)
        return false;
    if (data == c->in.data) {
        tern_buf_consume(&c->in, (size_t)used);
        if (c->in.len == 0)
            tern_buf_free(&c->in);
    } else if ((size_t)used < len
        && tern_buf_append(&c->in, data + used, len - (size_t)used) != 0) {
        broker_conn_close(c, TERN_MQTT_RC_IMPLEMENTATION_ERROR, true);
        return false;
    }
    if ((size_t)n < sizeof c->w->scratch && !broker_io_pending(c))
        return false;
    return c->state != CONN_CLOSED && !c->paused && !c->throttled;
}

/*
 * Reads go to the worker's scratch buffer, outside the broker lock (a read needs only the
 * socket, which is this loop's); only the tail of a packet that has not fully arrived is copied
 * into the connection's own buffer. So an idle connection holds no input buffer at all, which
 * is most of the memory an idle connection would otherwise cost. Handling what was read takes
 * the lock.
 */
static void conn_io_cb(tern_loop_io *io, unsigned events)
{
    broker_conn *c = io->data;
    broker_worker *w = c->w;
    tern_broker *b = c->broker;
    /* A TLS connection may be waiting to write before it can read (tls_want_write). */
    bool reading
        = (events & (TERN_LOOP_READ | TERN_LOOP_ERROR)) || (c->ssl && (events & TERN_LOOP_WRITE));
    for (int i = 0;; i++) {
        ssize_t n = 0;
        int err = 0;
        if (reading && !c->paused && !c->throttled) {
            n = broker_io_recv(c, w->scratch, sizeof w->scratch);
            err = n < 0 ? errno : 0;
        }
        broker_lock(b, w);
        bool again = false;
        if (c->state != CONN_CLOSED) {
            if (reading && !c->paused && !c->throttled)
                again = conn_input(c, n, err) && i + 1 < MAX_READS_PER_WAKE;
            if (!again && c->state != CONN_CLOSED)
                broker_conn_mark_dirty(c);
        }
        broker_unlock(b);
        if (!again)
            return;
    }
}

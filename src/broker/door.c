/*
 * door.c: the broker's front door. A thread of its own, with its own loop, owns the listeners:
 * it accepts, reads each plain TCP connection's first packet and applies admission control
 * (the connect token bucket), then hands the connection to a worker round robin, with the bytes
 * it has read. A reconnect storm's work (accepting, reading CONNECTs, refusing, closing) thus
 * runs beside the workers' loops instead of inside them, and the OS schedules it like any other
 * busy thread while the workers, mostly asleep between messages, get the CPU as soon as their
 * clients send. The door never takes the broker lock: the admission bucket has a lock of its own
 * and the door's counters are atomics that broker_stats_snapshot adds in.
 *
 * What the door decides alone is small on purpose: a well-formed CONNECT without a token is
 * refused (CONNACK 0x9F in 5.0, 3 in 3.1.1) and closed; everything else (an admitted CONNECT,
 * anything malformed or unexpected, a first packet larger than the door reads) goes to a worker,
 * whose connection code answers it exactly as if it had read the bytes itself. A TLS connection
 * is handed over at once: its handshake is its worker's background work (loop.h).
 */
#include "broker/broker_int.h"

#include "base/clock.h"
#include "base/log.h"
#include "loop/net.h"

#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Accepted per listener callback: the door's loop also reads the pending first packets. */
#define DOOR_ACCEPTS_PER_WAKE 64
/* A first packet longer than this goes to a worker unread (a CONNECT is rarely over 1 KiB). */
#define DOOR_MAX_FIRST_PACKET 16384
#define DOOR_EMFILE_BACKOFF_MS 100

/* A connection waiting for its first packet. */
typedef struct door_conn {
    tern_loop_io io;
    tern_loop_timer timer; /* the CONNECT timeout */
    broker_door *door;
    tern_list link; /* in door->pending */
    tern_buf in;
} door_conn;

struct broker_door {
    tern_broker *broker;
    tern_loop *loop;
    tern_loop_metrics *loop_metrics; /* loop="door" in the registry */
    pthread_t thread;
    bool has_thread;
    tern_list pending; /* connections waiting for their first packet (door_conn.link) */
    uint8_t scratch[DOOR_MAX_FIRST_PACKET];
};

/*
 * A connection on its way to the worker that will own it. The door queues it on the worker
 * (w->handoffs) and wakes the worker once; the worker takes at most HANDOFFS_PER_ITERATION per
 * iteration, since each may carry a CONNECT to handle (a session to attach, a CONNACK to send),
 * so the 2,000 connections of an admission burst do not hold up its established clients.
 */
#define HANDOFFS_PER_ITERATION 8

struct broker_handoff {
    broker_handoff *next;
    int fd;
    bool tls;
    bool admitted;
    tern_buf first; /* what the door read: the worker processes it as the connection's input */
};

static void handoffs_run(broker_worker *w);

static void handoffs_task_cb(tern_loop_task *task)
{
    handoffs_run(task->data);
}

static void handoffs_wake_cb(tern_loop *loop, void *arg)
{
    (void)loop;
    handoffs_run(arg);
}

/* On w's thread: accept a few queued connections; come back next iteration for the rest. */
static void handoffs_run(broker_worker *w)
{
    tern_broker *b = w->broker;
    broker_handoff *batch = NULL, **tail = &batch;
    pthread_mutex_lock(&w->handoff_mu);
    for (int i = 0; i < HANDOFFS_PER_ITERATION && w->handoffs; i++) {
        broker_handoff *h = w->handoffs;
        w->handoffs = h->next;
        h->next = NULL;
        *tail = h;
        tail = &h->next;
    }
    if (!w->handoffs)
        w->handoffs_last = NULL;
    bool more = w->handoffs != NULL;
    w->handoff_scheduled = more;
    pthread_mutex_unlock(&w->handoff_mu);
    if (more)
        tern_loop_defer(w->loop, &w->handoff_task, handoffs_task_cb, w); /* runs after I/O */
    broker_lock(b, w);
    while (batch) {
        broker_handoff *h = batch;
        batch = h->next;
        if (b->shutting_down)
            close(h->fd);
        else
            broker_conn_accept(b, w, h->fd, h->tls, h->admitted, &h->first);
        tern_buf_free(&h->first);
        tern_free(h);
    }
    broker_unlock(b);
}

void broker_handoffs_free(broker_worker *w)
{
    tern_loop_cancel(&w->handoff_task);
    while (w->handoffs) {
        broker_handoff *h = w->handoffs;
        w->handoffs = h->next;
        close(h->fd);
        tern_buf_free(&h->first);
        tern_free(h);
    }
    w->handoffs_last = NULL;
}

/* Round robin across the workers: an even spread, each loop's share known in advance (tests
 * rely on the order). Takes fd and *first (left empty). */
static void deal(tern_broker *b, int fd, bool tls, bool admitted, tern_buf *first)
{
    broker_worker *w = b->workers[b->next_worker++ % b->n_workers];
    broker_handoff *h = tern_malloc(sizeof *h);
    if (!h) {
        close(fd);
        return;
    }
    h->next = NULL;
    h->fd = fd;
    h->tls = tls;
    h->admitted = admitted;
    h->first = *first;
    tern_buf_init(first);
    pthread_mutex_lock(&w->handoff_mu);
    if (w->handoffs_last)
        w->handoffs_last->next = h;
    else
        w->handoffs = h;
    w->handoffs_last = h;
    bool wake = !w->handoff_scheduled;
    w->handoff_scheduled = true;
    pthread_mutex_unlock(&w->handoff_mu);
    if (wake)
        broker_post_surely(w->loop, handoffs_wake_cb, w); /* or the queue waits forever */
}

static void door_conn_unlink(door_conn *dc)
{
    tern_list_unlink(&dc->link);
    tern_loop_io_stop(&dc->io);
    tern_loop_timer_stop(&dc->timer);
}

/* Ends dc's stay at the door: handed to a worker (hand_over) or closed. */
static void door_conn_done(door_conn *dc, bool hand_over, bool admitted)
{
    tern_broker *b = dc->door->broker;
    int fd = dc->io.fd;
    door_conn_unlink(dc);
    if (hand_over)
        deal(b, fd, false, admitted, &dc->in); /* after a shutdown the worker closes it */
    else
        close(fd);
    tern_buf_free(&dc->in);
    tern_free(dc);
}

bool broker_admit(tern_broker *b)
{
    pthread_mutex_lock(&b->admission_mu);
    bool ok = tern_token_bucket_take(&b->admission, 1, tern_clock_mono_ns());
    pthread_mutex_unlock(&b->admission_mu);
    return ok;
}

/* Refuses an over-rate CONNECT: the CONNACK, sent straight to the socket, then close. */
static void door_refuse(door_conn *dc, const tern_mqtt_connect *connect)
{
    uint8_t version = connect->version;
    uint32_t limit = version == TERN_MQTT_V5
            && TERN_MQTT_HAS_PROP(&connect->props, TERN_MQTT_PROP_MAX_PACKET_SIZE)
        ? connect->props.max_packet_size
        : 0;
    tern_broker *b = dc->door->broker;
    tern_mqtt_packet ack;
    tern_buf out;
    tern_buf_init(&out);
    if (broker_connack_refusal(&ack, version, TERN_MQTT_RC_CONNECTION_RATE_EXCEEDED)
        && broker_encode_within(&out, version, limit, &ack) == 0) {
        /* A fresh socket's buffer takes a few bytes; if not, the client sees the close. */
        ssize_t n = send(dc->io.fd, out.data, out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0)
            atomic_fetch_add(&b->door_stats.bytes_sent, (uint64_t)n);
    }
    tern_buf_free(&out);
    atomic_fetch_add(&b->door_stats.admission_refused, 1);
    atomic_fetch_add(&b->door_stats.connects_refused, 1);
    TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "connection rate exceeded: refusing");
    door_conn_done(dc, false, false);
}

/* Looks at what has arrived: waits for more, refuses, or hands the connection over. */
static void door_conn_examine(door_conn *dc)
{
    tern_broker *b = dc->door->broker;
    size_t packet_len = 0;
    int rc = tern_mqtt_frame(dc->in.data, dc->in.len, b->cfg.max_packet_bytes, &packet_len);
    if (rc == TERN_EPARTIAL) {
        if (dc->in.len < DOOR_MAX_FIRST_PACKET)
            return;
        door_conn_done(dc, true, false); /* a long first packet: the worker reads the rest */
        return;
    }
    tern_mqtt_packet pkt;
    size_t used = 0;
    tern_mqtt_status st = { 0, NULL };
    if (rc != 0 || tern_mqtt_decode(dc->in.data, packet_len, 0, &pkt, &used, &st) != 0
        || pkt.type != TERN_MQTT_CONNECT) {
        door_conn_done(dc, true, false); /* the worker answers it with the right reason */
        return;
    }
    if (!broker_admit(b)) {
        door_refuse(dc, &pkt.u.connect);
        return;
    }
    door_conn_done(dc, true, true);
}

static void door_conn_io_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    door_conn *dc = io->data;
    broker_door *d = dc->door;
    size_t room = DOOR_MAX_FIRST_PACKET - dc->in.len;
    ssize_t n = recv(io->fd, d->scratch, room, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        door_conn_done(dc, false, false); /* gone before its CONNECT */
        return;
    }
    atomic_fetch_add(&d->broker->door_stats.bytes_received, (uint64_t)n);
    if (tern_buf_append(&dc->in, d->scratch, (size_t)n) != 0) {
        door_conn_done(dc, false, false);
        return;
    }
    door_conn_examine(dc);
}

static void door_conn_timer_cb(tern_loop_timer *t)
{
    door_conn *dc = t->data;
    TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker", "no CONNECT in time, closing");
    door_conn_done(dc, false, false);
}

/* A new plain TCP connection waits at the door for its first packet. */
static void door_conn_new(broker_door *d, int fd)
{
    door_conn *dc = tern_calloc(1, sizeof *dc);
    if (!dc) {
        close(fd);
        return;
    }
    dc->door = d;
    tern_buf_init(&dc->in);
    tern_loop_io_init(d->loop, &dc->io, fd, door_conn_io_cb, dc);
    tern_loop_timer_init(d->loop, &dc->timer, door_conn_timer_cb, dc);
    if (tern_loop_io_start(&dc->io, TERN_LOOP_READ) != 0) {
        close(fd);
        tern_free(dc);
        return;
    }
    tern_loop_timer_start(&dc->timer, d->broker->cfg.connect_timeout_ms, 0);
    tern_list_push_front(&d->pending, &dc->link);
}

static void listener_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    broker_listener *l = io->data;
    tern_broker *b = l->broker;
    for (int i = 0; i < DOOR_ACCEPTS_PER_WAKE; i++) {
        int fd = -1;
        int rc = tern_net_accept(l->fd, &fd, NULL, NULL);
        if (rc == TERN_EAGAIN)
            return;
        if (rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM) {
            /* Out of descriptors: pause accepting; established connections keep working. */
            TERN_LOG_RATELIMITED(TERN_LOG_WARN, "broker", "accept: %s; pausing %d ms",
                tern_strerror(rc), DOOR_EMFILE_BACKOFF_MS);
            tern_loop_io_stop(&l->io);
            tern_loop_timer_start(&l->pause, DOOR_EMFILE_BACKOFF_MS, 0);
            return;
        }
        if (rc != 0)
            return;
        (void)tern_net_set_nodelay(fd, true);
        if (l->tls) {
            tern_buf none;
            tern_buf_init(&none);
            deal(b, fd, true, false, &none);
        } else {
            door_conn_new(b->door, fd);
        }
    }
}

static void resume_accept_cb(tern_loop_timer *t)
{
    broker_listener *l = t->data;
    (void)tern_loop_io_start(&l->io, TERN_LOOP_READ);
}

int broker_door_new(tern_broker *b)
{
    broker_door *d = tern_calloc(1, sizeof *d);
    if (!d)
        return TERN_ENOMEM;
    d->broker = b;
    tern_list_init(&d->pending);
    int rc = tern_loop_new(&d->loop);
    if (rc == 0)
        rc = tern_loop_metrics_start(d->loop, b->cfg.metrics, "door", &d->loop_metrics);
    if (rc != 0) {
        if (d->loop)
            tern_loop_free(d->loop);
        tern_free(d);
        return rc;
    }
    b->door = d;
    return 0;
}

int broker_door_watch(tern_broker *b, broker_listener *l)
{
    tern_loop_io_init(b->door->loop, &l->io, l->fd, listener_cb, l);
    tern_loop_timer_init(b->door->loop, &l->pause, resume_accept_cb, l);
    return tern_loop_io_start(&l->io, TERN_LOOP_READ);
}

/*
 * The door's CPU priority (cfg.accept_priority). At SCHED_IDLE a worker woken by its client
 * preempts the door at once: measured on 2 cores with 10,000 clients connecting while 100
 * publishers run, the publishers' p99 went from ~3x their calm p99 (door at normal priority) to
 * ~1.7x (bench/README.md). The door holds no lock for longer than a queue operation, so running
 * it last cannot hold up a worker for long.
 */
static void door_set_priority(tern_broker_accept_priority prio)
{
    int rc = 0;
    if (prio == TERN_BROKER_ACCEPT_IDLE) {
        struct sched_param sp = { .sched_priority = 0 };
        rc = pthread_setschedparam(pthread_self(), SCHED_IDLE, &sp);
    } else if (prio == TERN_BROKER_ACCEPT_LOW) {
        /* On Linux a nice value belongs to a thread: PRIO_PROCESS with the thread's id. */
        rc = setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19) == 0 ? 0 : errno;
    }
    if (rc != 0)
        tern_logf(TERN_LOG_WARN, "broker", "cannot lower the accepting thread's priority: %s",
            tern_strerror(-rc));
}

static void *door_main(void *arg)
{
    broker_door *d = arg;
    pthread_setname_np(pthread_self(), "tern-door");
    door_set_priority(d->broker->cfg.accept_priority);
    (void)tern_loop_run(d->loop);
    return NULL;
}

int broker_door_start(tern_broker *b)
{
    broker_door *d = b->door;
    if (pthread_create(&d->thread, NULL, door_main, d) != 0)
        return TERN_ENOMEM;
    d->has_thread = true;
    return 0;
}

/* On the door's thread: close the listeners and every pending connection. */
static void door_close_cb(tern_loop *loop, void *arg)
{
    (void)loop;
    tern_broker *b = arg;
    broker_door *d = b->door;
    for (size_t i = 0; i < b->n_listeners; i++) {
        broker_listener *l = &b->listeners[i];
        tern_loop_io_stop(&l->io);
        tern_loop_timer_stop(&l->pause);
        if (l->fd >= 0)
            close(l->fd);
        l->fd = -1;
    }
    for (tern_list *l; (l = tern_list_first(&d->pending)) != NULL;)
        door_conn_done(TERN_LIST_ENTRY(l, door_conn, link), false, false);
}

static void door_stop_cb(tern_loop *loop, void *arg)
{
    door_close_cb(loop, arg);
    tern_loop_stop(loop);
}

void broker_door_close(tern_broker *b)
{
    broker_door *d = b->door;
    if (d->has_thread)
        broker_post_surely(d->loop, door_close_cb, b);
    else
        door_close_cb(d->loop, b); /* never started: this thread is the only one */
}

void broker_door_free(tern_broker *b)
{
    broker_door *d = b->door;
    if (!d)
        return;
    if (d->has_thread) {
        broker_post_surely(d->loop, door_stop_cb, b);
        pthread_join(d->thread, NULL);
        d->has_thread = false;
    } else {
        door_close_cb(d->loop, b);
    }
    tern_loop_metrics_stop(d->loop_metrics);
    tern_loop_free(d->loop);
    tern_free(d);
    b->door = NULL;
}

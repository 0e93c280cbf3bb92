/*
 * broker_int.h: the broker's private structures, shared by its files (private to src/broker).
 *
 *   broker.c           the broker object, listeners, workers, shutdown
 *   door.c             the front door's thread: accept, first packet, admission, hand-off
 *   conn.c             one client connection: reading, framing, writing, closing
 *   read_handle.c      the dispatcher: one decoded packet -> its handler; errors -> reason codes
 *   handle_connect.c   CONNECT / CONNACK, session takeover, auth
 *   handle_publish.c   PUBLISH in, PUBACK/PUBREC/PUBREL/PUBCOMP in both directions
 *   handle_subscribe.c SUBSCRIBE / UNSUBSCRIBE
 *   session.c          sessions: table, in-flight window, queue, expiry
 *   deliver.c          routing one message to the matching subscriptions
 *   message.c          refcounted messages
 *   will.c             Last Will
 *   deadline.c         session expiry and delayed wills: deadlines of no one loop
 *
 * Threads: the broker runs on one loop per core (broker_worker). A connection lives on one
 * worker for its whole life; its socket, its timer and its input are touched only by that
 * worker's thread. Everything shared (sessions, subscriptions, retained messages, the journal,
 * every connection's output buffer and state, statistics) is guarded by the broker lock
 * (b->lock), which every loop callback takes around its broker work; socket reads are made
 * outside it. b->holder names the worker holding the lock, so code under it knows which loop
 * it runs on (broker_now_ms, broker_conn_close, broker_conn_mark_dirty). One more thread, the
 * door (door.c), owns the listeners and hands new connections to the workers; it never takes
 * the broker lock.
 */
#ifndef TERN_BROKER_INT_H
#define TERN_BROKER_INT_H

#include "broker/broker.h"

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/list.h"
#include "base/token_bucket.h"
#include "broker/deadline.h"
#include "broker/topic_tree.h"
#include "loop/loop.h"
#include "loop/loop_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include "mqtt/mqtt.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct broker_conn broker_conn;
typedef struct broker_session broker_session;
typedef struct broker_auth_worker broker_auth_worker;
typedef struct broker_sys broker_sys;
typedef struct broker_worker broker_worker;
typedef struct broker_door broker_door;
typedef struct broker_handoff broker_handoff;

/* ---- messages ---------------------------------------------------------------------------- */

/*
 * A message as the broker keeps it: one allocation holding topic, payload and the 5.0
 * properties that travel with it, shared by every session it is queued for (refcounted).
 */
typedef struct broker_msg {
    uint32_t refs;
    uint8_t qos;    /* as published */
    bool retain;    /* as published */
    bool has_props; /* any 5.0 property to forward */
    uint8_t payload_format;
    bool has_payload_format;
    bool has_expiry;
    uint32_t topic_len;
    uint32_t payload_len;
    uint64_t expire_at_ms; /* loop time; meaningful when has_expiry */
    uint64_t created_ms;   /* loop time */
    uint64_t store_id;     /* id in the journal; 0 until journaled (store.c) */
    uint64_t snap_gen;     /* journal generation that holds this message's record */
    tern_mqtt_str content_type;
    tern_mqtt_str response_topic;
    tern_mqtt_str correlation_data;
    const uint8_t *user_raw; /* raw property bytes holding the user properties */
    uint32_t user_raw_len;
    uint32_t n_user;
    const char *publisher_id; /* client id of the publisher (for no-local), NUL-terminated */
    uint8_t *payload;
    char topic[]; /* NUL-terminated, then payload and the property bytes */
} broker_msg;

/* broker_is_ingest_topic: does topic match one of the ingest filters (handle_publish.c)? */
bool broker_is_ingest_topic(const tern_broker *b, const uint8_t *topic, size_t len);

/* broker_msg_new copies pub (borrowed) into a new message with one reference. NULL on ENOMEM. */
broker_msg *broker_msg_new(const tern_mqtt_publish *pub, const char *publisher_id, uint64_t now_ms);
void broker_msg_ref(broker_msg *m);
void broker_msg_unref(broker_msg *m);
/* broker_msg_expired: has a message expiry interval passed? */
bool broker_msg_expired(const broker_msg *m, uint64_t now_ms);

/* ---- sessions ---------------------------------------------------------------------------- */

/* One message waiting for, or in, the in-flight window towards a client. */
typedef struct broker_out {
    broker_msg *msg;
    uint8_t qos;   /* delivered QoS: min(published, granted) */
    bool retain;   /* retain flag as it will be sent */
    uint8_t state; /* OUT_QUEUED, OUT_WAIT_PUBACK, OUT_WAIT_PUBREC, OUT_WAIT_PUBCOMP */
    uint16_t packet_id;
    uint64_t store_id; /* journaled (persistent session, QoS > 0); 0 otherwise */
    tern_list link;    /* in its session's out list */
    uint32_t n_sub_ids;
    uint32_t sub_ids[]; /* subscription identifiers of the matching subscriptions (5.0) */
} broker_out;

/* The most subscription identifiers one delivery carries: a client's overlapping
 * subscriptions matching one topic, each with its own identifier (5.0 3.3.4). The store
 * journals the count in a byte (docs/formats/broker-store.md). */
#define BROKER_MAX_SUB_IDS 255u

enum { OUT_QUEUED = 0, OUT_WAIT_PUBACK, OUT_WAIT_PUBREC, OUT_WAIT_PUBCOMP };

struct broker_session {
    tern_broker *broker;
    char *client_id;
    broker_session *hash_next;
    broker_conn *conn; /* NULL while offline */
    bool clean;        /* discard at disconnect (3.1.1 clean session / 5.0 expiry 0) */
    bool journaled;    /* its state is kept in the journal (store.c) */
    uint32_t expiry_s;
    uint64_t offline_since_ms;
    tern_topic_subscriber subscriber; /* its subscriptions in the broker's topic tree */
    /* Outgoing QoS 1/2: in-flight in send order, then queued (broker_out.link; see out_first). */
    tern_list out;
    uint32_t n_inflight;
    uint32_t n_queued;
    uint16_t next_packet_id;
    /* Incoming QoS 2 packet ids that got PUBREC and wait for PUBREL (bitmap of 65536 ids,
     * allocated on first use). */
    uint8_t *qos2_in;
    uint32_t n_qos2_in;
    broker_deadline expiry;   /* armed while offline with a finite expiry */
    broker_msg *pending_will; /* a 5.0 will waiting out its delay */
    broker_deadline will_due;
    bool pressured; /* a publisher is throttled because this session's queue was full */
};

/* The first of s's outgoing messages, and the one after o: NULL at the end. */
static inline broker_out *out_first(const broker_session *s)
{
    tern_list *l = tern_list_first(&s->out);
    return l ? TERN_LIST_ENTRY(l, broker_out, link) : NULL;
}

static inline broker_out *out_next(const broker_session *s, const broker_out *o)
{
    tern_list *l = tern_list_next(&s->out, &o->link);
    return l ? TERN_LIST_ENTRY(l, broker_out, link) : NULL;
}

/* ---- connections ------------------------------------------------------------------------- */

enum { CONN_NEW = 0, CONN_ACTIVE, CONN_CLOSED };

struct broker_conn {
    tern_loop_io io;
    tern_loop_timer timer; /* CONNECT timeout, then keepalive */
    tern_loop_task free_task;
    tern_broker *broker;
    broker_worker *w; /* the worker (loop) that owns this connection, for its whole life */
    tern_list link;   /* in the broker's list of open (b->conns), then of closed connections */
    int fd;
    uint8_t state;
    uint8_t version; /* 0 until CONNECT */
    bool will_pending;
    bool writing; /* WRITE interest armed */
    bool paused;  /* reading stopped: a CONNECT waits for the auth worker */
    /* reading stopped: its QoS 1/2 publishes meet a full subscriber queue. A flag beside
       throttle_link, not derived from it: the owning loop reads it before taking the lock, and
       a neighbour's unlink rewrites the links under the lock. */
    bool throttled;
    bool resume;             /* throttled, to be resumed by its own loop's next flush */
    tern_list throttle_link; /* in the broker's list of throttled ones (b->throttled) */
    tern_list close_link;    /* on w->to_close: hung up or timed out, closed soon (conn.c) */
    bool close_will;         /* ... and how: broker_conn_close's arguments */
    uint8_t close_reason;
    bool admitted; /* the door took this connection's admission token (door.c) */
    bool auth_verdict_ready;
    int auth_verdict;        /* the auth worker's result for the parked CONNECT */
    uint8_t *parked_connect; /* bytes of the CONNECT being verified */
    size_t parked_len;
    const uint8_t *cur_packet; /* bytes of the packet being handled (borrowed) */
    size_t cur_packet_len;
    tern_list dirty_link;    /* on dirty_on->dirty: to flush (or, once CLOSED, finish closing) */
    broker_worker *dirty_on; /* whose dirty list c is on (while dirty) */
    uint16_t keepalive_s;
    char peer[48];
    tern_buf in;
    tern_buf out;
    size_t out_off; /* bytes of out already written */
    broker_session *session;
    char *username;
    /* what the client told us (5.0) */
    uint32_t client_max_packet;
    uint16_t client_receive_max;
    uint16_t client_topic_alias_max;
    bool request_problem_info;
    /* QoS 1/2 publishes received and not yet acknowledged (receive maximum accounting) */
    uint32_t n_unacked_in;
    /* topic aliases the client set (index 1..topic_alias_max) */
    char **alias_in;
    /* topic aliases the broker assigned towards the client (slot i is alias i + 1) */
    char **alias_out;
    uint16_t n_alias_out;
    /* Last Will */
    broker_msg *will;
    uint32_t will_delay_s;
    uint32_t n_pending;  /* completions outstanding (ingest sink, auth worker): c stays allocated */
    bool finished;       /* CLOSED and its socket closed (on its own loop): may be freed */
    struct ssl_st *ssl;  /* TLS listeners only */
    bool tls_want_write; /* OpenSSL must write before it can read further */
    bool tls_identity_checked;
    char *tls_identity; /* certificate CN, when used as the username */
};

/* ---- the broker -------------------------------------------------------------------------- */

/* One loop of the broker and its thread (none for worker 0: the caller's loop). */
struct broker_worker {
    tern_broker *broker;
    tern_loop *loop;
    unsigned index;
    pthread_t thread;
    bool has_thread;
    tern_list dirty;  /* under the lock: connections this loop flushes, or closes (its own) */
    bool wake_posted; /* under the lock: a wake-up post is on its way to this loop */
    tern_loop_task flush_task;       /* the end-of-iteration flush (this loop's thread only) */
    tern_loop_metrics *loop_metrics; /* loop="broker-<index>" in the registry */
    /* Its connections that hung up or timed out, closed a few per iteration (conn.c). Under
       the lock. */
    tern_list to_close;
    tern_loop_task close_task;
    /* New connections from the door, a few per iteration (door.c). */
    pthread_mutex_t handoff_mu;
    broker_handoff *handoffs, *handoffs_last;
    bool handoff_scheduled; /* a wake-up is posted or the task is deferred */
    tern_loop_task handoff_task;
    uint8_t scratch[65536]; /* every read of this loop lands here first (see conn.c) */
};

/* A listening socket: opened by broker.c, watched by the door's loop (door.c). */
typedef struct broker_listener {
    tern_loop_io io;
    tern_loop_timer pause; /* accepting paused while descriptors run out */
    tern_broker *broker;
    int fd;
    int port;
    bool tls;
} broker_listener;

struct tern_broker {
    tern_loop *loop; /* worker 0's: $SYS, deadlines, the auth worker's results */
    broker_worker **workers;
    unsigned n_workers;
    unsigned next_worker;  /* round robin of new connections (the door's thread only) */
    pthread_mutex_t lock;  /* the broker lock (see the top of this file) */
    broker_worker *holder; /* the worker whose thread holds the lock; NULL when free */
    broker_deadlines deadlines;
    tern_loop_timer deadline_tick;
    tern_broker_config cfg;
    char **listen_copy;
    char **tls_listen_copy;
    char **ingest_copy;
    size_t *ingest_len; /* ingest_copy[i]'s length: matched against every publish */
    broker_listener *listeners;
    size_t n_listeners;
    tern_list conns;             /* open connections (broker_conn.link) */
    tern_list closed;            /* closed, waiting for their deferred free (broker_conn.link) */
    tern_list throttled;         /* publishers paused by full subscriber queues (see session.c) */
    broker_conn *origin;         /* the connection whose publish is being routed; NULL otherwise */
    uint64_t throttled_since_ms; /* when the throttled list last became non-empty */
    uint32_t n_conns;
    broker_session **sessions; /* hash table by client id */
    uint32_t n_session_buckets;
    uint32_t n_sessions;
    tern_topic_tree *subs;      /* subscription index */
    struct broker_store *store; /* journal; NULL without a data directory */
    tern_topic_matches matches; /* reused by every routing */
    struct ssl_ctx_st *tls_ctx;
    broker_auth_worker *auth_worker;       /* verifies passwords off the loop (auth_worker.c) */
    broker_sys *sys;                       /* $SYS topics and metrics (sys.c) */
    struct tern_broker_retained *retained; /* retained store (retained.h) */
    struct tern_broker_auth *auth;         /* NULL without a password file */
    struct tern_broker_acl *acl;
    const tern_broker_sink *sink;
    broker_door *door;            /* accepts and admits (door.c) */
    pthread_mutex_t admission_mu; /* guards admission: the door and the workers (TLS) take tokens */
    tern_token_bucket admission;
    /* What the door counts (it never takes the broker lock); added in broker_stats_snapshot. */
    struct {
        _Atomic uint64_t admission_refused, connects_refused, bytes_received, bytes_sent;
    } door_stats;
    uint64_t next_client_id;
    bool started; /* tern_broker_new succeeded: the workers' loops are live */
    bool shutting_down;
    bool store_failed; /* the journal cannot be written: refuse everyone */
    tern_broker_stats stats;
};

/* broker_lock takes the broker lock on behalf of worker w (the calling thread's loop). */
void broker_lock(tern_broker *b, broker_worker *w);
void broker_unlock(tern_broker *b);
/* broker_now_ms: the monotonic time of the loop running the caller (under the lock). */
uint64_t broker_now_ms(const tern_broker *b);
/* broker_worker_wake asks w to flush its dirty list: now, at the end of this iteration, when
 * w is the caller's loop; otherwise by a post to w's loop. Under the lock. */
void broker_worker_wake(tern_broker *b, broker_worker *w);
/* broker_post_surely is tern_loop_post, retried until it succeeds (it fails only when out of
 * memory): for posts that must arrive, such as a stop, a verdict or a hand-off. Any thread. */
void broker_post_surely(tern_loop *loop, tern_loop_post_cb cb, void *arg);
/* broker_stats_snapshot: tern_broker_get_stats under the lock. */
void broker_stats_snapshot(const tern_broker *b, tern_broker_stats *out);

/* door.c: the door's thread, its loop and the listeners on it. broker_door_new before the
 * listeners are opened, broker_door_watch for each (before the door starts), broker_door_start
 * last. broker_door_close closes the listeners and the connections waiting at the door (from
 * any thread; asynchronous once started); broker_door_free stops the thread and frees the door,
 * after which nothing is handed to the workers any more. */
int broker_door_new(tern_broker *b);
int broker_door_watch(tern_broker *b, broker_listener *l);
int broker_door_start(tern_broker *b);
void broker_door_close(tern_broker *b);
void broker_door_free(tern_broker *b);
/* broker_handoffs_free closes the connections still queued for w (its loop stopped). */
void broker_handoffs_free(broker_worker *w);
/* broker_closing_cancel unqueues w's task that closes connections a few at a time (conn.c). */
void broker_closing_cancel(broker_worker *w);
/* broker_admit takes a token from the admission bucket (any thread). */
bool broker_admit(tern_broker *b);

/* conn.c */
/*
 * broker_conn_accept: a new connection on worker w (w's thread, under the lock). first holds
 * what the door already read from it (processed now, as its first input; emptied); admitted
 * says the door took its admission token for the CONNECT in it.
 */
void broker_conn_accept(
    tern_broker *b, broker_worker *w, int fd, bool tls, bool admitted, tern_buf *first);
/* broker_worker_flush commits the journal, then flushes w's dirty connections and finishes
 * closing the ones closed from other loops. w's thread, under the lock. */
void broker_worker_flush(broker_worker *w);
/*
 * broker_encode_within appends pkt to out in no more than limit bytes (0: no limit), the
 * client's Maximum Packet Size (5.0 3.1.2.11.4: the server never sends more). A packet too long
 * is written again without its Reason String and User Properties, the properties every packet
 * may leave out to fit; if it still does not fit, out is unchanged and the result is
 * TERN_ETOOBIG. Not for PUBLISH, which may not lose properties: one that does not fit is
 * discarded by its sender (session.c). Otherwise 0 or tern_mqtt_encode's error.
 */
int broker_encode_within(
    tern_buf *out, uint8_t version, uint32_t limit, const tern_mqtt_packet *pkt);
/* broker_conn_send appends a packet to the connection's output, within the client's Maximum
 * Packet Size (broker_encode_within): 0, TERN_ETOOBIG (not sent) or TERN_ENOMEM. */
int broker_conn_send(broker_conn *c, const tern_mqtt_packet *pkt);
/* broker_conn_mark_dirty schedules a flush of c at the end of this loop iteration. */
void broker_conn_mark_dirty(broker_conn *c);
/* broker_conn_throttle stops reading from c (the publisher being handled, on its own loop)
 * until broker_conn_unthrottle_all; broker_conn_unthrottle_all resumes every throttled
 * publisher, each on its own loop. Under the lock. */
#define BROKER_THROTTLE_MAX_MS 1000
void broker_conn_throttle(broker_conn *c);
void broker_conn_unthrottle_all(tern_broker *b);
/* broker_conn_flush writes what it can now and arms WRITE interest for the rest. */
void broker_conn_flush(broker_conn *c);
/* broker_conn_close closes c: reason >= 0x80 is sent in a 5.0 DISCONNECT first; the will is
 * published when will is true. Safe to call from any handler on any loop: c is CLOSED (its
 * session detached) at once; its socket is closed on its own loop, and c is freed later. */
void broker_conn_close(broker_conn *c, uint8_t reason, bool will);
void broker_conn_reset_keepalive(broker_conn *c);
size_t broker_conn_out_pending(const broker_conn *c);

/* read_handle.c: handle one decoded packet. 0, or a reason code >= 0x80 to close with. */
int broker_handle_packet(broker_conn *c, const tern_mqtt_packet *pkt);
int broker_handle_connect(broker_conn *c, const tern_mqtt_connect *p);
/* broker_connack_refusal fills ack with a refusing CONNACK for protocol level version: the
 * 5.0 reason with its reason string, or its 3.1.1 return code; false when 3.1.1 has none (then
 * the connection is closed without a CONNACK). handle_connect.c. */
bool broker_connack_refusal(tern_mqtt_packet *ack, uint8_t version, uint8_t reason_v5);
int broker_handle_publish(broker_conn *c, const tern_mqtt_publish *p);
int broker_handle_ack(broker_conn *c, uint8_t type, const tern_mqtt_ack *p);
int broker_handle_subscribe(broker_conn *c, const tern_mqtt_subscribe *p);
int broker_handle_unsubscribe(broker_conn *c, const tern_mqtt_subscribe *p);

/* session.c */
broker_session *broker_session_find(tern_broker *b, const char *client_id);
int broker_session_create(tern_broker *b, const char *client_id, broker_session **out);
void broker_session_destroy(tern_broker *b, broker_session *s);
/* A connection ended: destroy a clean session, or keep it offline until it expires. */
void broker_session_detach(tern_broker *b, broker_session *s);
/* Offer a message to a session at qos (already min'ed with the granted QoS). */
void broker_session_deliver(tern_broker *b, broker_session *s, broker_msg *m, uint8_t qos,
    bool retain, const uint32_t *sub_ids, uint32_t n_sub_ids);
/* Send queued messages while the in-flight window allows (after an ack or a reconnect). */
void broker_session_pump(tern_broker *b, broker_session *s);
/* Resend in-flight messages with DUP after a reconnect (session present). */
void broker_session_resend(tern_broker *b, broker_session *s);
/* Handle an incoming PUBACK / PUBREC / PUBCOMP for packet_id. 0 or a reason code. */
int broker_session_acked(
    tern_broker *b, broker_session *s, uint8_t type, uint16_t packet_id, uint8_t reason);
void broker_session_free_all(tern_broker *b);
/* Incoming QoS 2 ids between PUBREC and PUBREL (journaled for persistent sessions). */
bool broker_session_qos2_has(const broker_session *s, uint16_t id);
int broker_session_qos2_set(broker_session *s, uint16_t id, bool on);
/* broker_session_restore_out appends a queued message to s's out list (no send, no journal):
 * used by delivery and by journal replay. NULL on ENOMEM. */
broker_out *broker_session_restore_out(broker_session *s, broker_msg *m, uint8_t qos, bool retain,
    const uint32_t *sub_ids, uint32_t n_sub_ids);
void broker_session_restore_out_state(
    broker_session *s, broker_out *o, uint8_t state, uint16_t packet_id);
void broker_session_drop_out(broker_session *s, broker_out *o);

/* deliver.c */
/* Route m to every matching subscription (and store it if retained). from may be NULL. */
void broker_route(tern_broker *b, broker_msg *m, broker_session *from);
/* retain.c: send the retained messages matching filter to s (after a SUBACK). */
void broker_send_retained(tern_broker *b, broker_session *s, const uint8_t *filter,
    size_t filter_len, uint8_t granted_qos, uint32_t sub_id);

/* retain.c and security.c own their parts of the broker object. */
int broker_retained_init(tern_broker *b);
void broker_retained_free(tern_broker *b);
int broker_security_init(tern_broker *b);
void broker_security_free(tern_broker *b);

/* security.c: authentication and ACL decisions (auth.h / acl.h underneath). */
/* broker_security_authenticate returns 0, the 5.0 CONNACK reason to refuse with, or
 * BROKER_AUTH_PARKED when the password check went to the auth worker. */
#define BROKER_AUTH_PARKED (-1)
int broker_security_authenticate(tern_broker *b, broker_conn *c, const tern_mqtt_connect *p);
bool broker_security_may_publish(tern_broker *b, const char *client_id, const char *username,
    const uint8_t *topic, size_t topic_len);
bool broker_security_may_subscribe(tern_broker *b, const char *client_id, const char *username,
    const uint8_t *filter, size_t filter_len);

/* conn.c: free a closed connection whose last ingest completion arrived (c->finished; on c's
 * loop, under the lock). */
void broker_conn_release(broker_conn *c);

/* retain.c: store (or, with an empty payload, clear) a retained message, journaled. */
void broker_retain(tern_broker *b, broker_msg *m);
/* broker_retained_set sets (m != NULL, a new reference is taken) or clears topic, no journal. */
void broker_retained_set(tern_broker *b, const char *topic, size_t len, broker_msg *m);
/* broker_retained_foreach calls fn for every retained message. */
void broker_retained_foreach(
    tern_broker *b, void (*fn)(void *ctx, const char *topic, size_t len, broker_msg *m), void *ctx);

/* tls.c: TLS listeners; the io functions hide whether a connection is TLS. */
int broker_tls_init(tern_broker *b);
void broker_tls_free(tern_broker *b);
int broker_tls_attach(broker_conn *c);
void broker_tls_detach(broker_conn *c);
/* Socket semantics: > 0 bytes, 0 peer closed, -1 with errno (EAGAIN: try later). */
ssize_t broker_io_recv(broker_conn *c, void *buf, size_t len);
ssize_t broker_io_send(broker_conn *c, const void *buf, size_t len);
/* broker_io_pending: decrypted bytes wait inside OpenSSL (epoll will not report them). */
bool broker_io_pending(const broker_conn *c);

/* auth_worker.c */
int broker_auth_worker_start(tern_broker *b);
void broker_auth_worker_stop(tern_broker *b);
/* Queue a password check for c's CONNECT p; the verdict arrives in broker_conn_auth_done. */
int broker_auth_worker_submit(tern_broker *b, broker_conn *c, const tern_mqtt_connect *p);
/* conn.c: the verdict for a parked CONNECT: handle it again with the verdict, resume reading. */
void broker_conn_auth_done(broker_conn *c, int verdict);
/* conn.c: park the CONNECT being handled until its verdict arrives. 0 or TERN_ENOMEM. */
int broker_conn_park_connect(broker_conn *c);

/* sys.c */
#define TERN_BROKER_VERSION "0.1.0"
int broker_sys_start(tern_broker *b);
void broker_sys_stop(tern_broker *b);

/* will.c */
/* broker_will_publish publishes (or, with a will delay, schedules) c's will. Call it while
 * c->session is still attached. */
void broker_will_publish(tern_broker *b, broker_conn *c);
/* broker_will_cancel drops a delayed will (the client came back to its session). */
void broker_will_cancel(broker_session *s);
/* broker_will_session_end publishes a delayed will now: its session is ending. */
void broker_will_session_end(tern_broker *b, broker_session *s);

#endif

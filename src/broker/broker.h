/*
 * broker.h: tern's MQTT broker: connections, sessions, subscriptions, retained messages, wills,
 * QoS 0/1/2 state machines for MQTT 3.1.1 and 5.0, auth/ACL and admission control.
 *
 * The broker runs on event loops (src/loop), one per core by default: the caller's loop plus
 * loops of its own, each on its own thread (cfg.loops). New connections are dealt round robin
 * across them; a connection stays on its loop for its whole life. The caller's loop also runs
 * the listeners, $SYS and the session deadlines. The broker is internally locked; the public
 * calls below belong to the caller's loop thread unless they say otherwise. Bytes from clients are
 * untrusted: a malformed packet closes that connection with the reason code the specification names
 * (DISCONNECT for 5.0, a plain close for 3.1.1), costs one counter increment and one rate-limited
 * log line, and never affects another client.
 *
 * Ingest seam: publishes whose topic matches a configured ingest filter are handed to a sink
 * (tern_broker_sink) that may complete later; a QoS 1/2 publish is acknowledged (PUBACK /
 * PUBREC) only when the sink reports it stored. The log module provides the production sink.
 */
#ifndef TERN_BROKER_BROKER_H
#define TERN_BROKER_BROKER_H

#include "loop/loop.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tern_broker tern_broker;

/* One record handed to the ingest sink. Every pointer is borrowed for the call only. */
typedef struct tern_broker_ingest {
    const char *client_id;
    const uint8_t *topic;
    size_t topic_len;
    const uint8_t *payload;
    size_t payload_len;
    uint8_t qos;
    uint64_t arrival_ms; /* wall clock */
    bool will;           /* a Last Will the broker published for a client that went away */
    tern_loop *loop;     /* the broker loop to complete on (tern_broker_ingest_done) */
} tern_broker_ingest;

typedef struct tern_broker_sink {
    void *ctx;
    /*
     * submit offers one record (borrowed for the call). Return 0 when the sink takes it: then,
     * if token is not NULL (a QoS 1/2 publish waiting for its acknowledgement), the sink calls
     * tern_broker_ingest_done(broker, token, status) exactly once, later, on rec->loop's
     * thread (never from inside submit; tern_loop_post hands it there). Return a negative code to
     * refuse at once: token is then not used. QoS 0 records come with token NULL (best effort).
     */
    int (*submit)(void *ctx, const tern_broker_ingest *rec, void *token);
} tern_broker_sink;

/*
 * tern_broker_ingest_done completes a submit: status 0 means stored durably (the broker now
 * sends PUBACK / PUBREC), TERN_EQUOTA means refused for lack of space (5.0 reason 0x97), any
 * other negative code means not stored (0x80). A 3.1.1 client, which cannot be told of a
 * refusal, is disconnected instead: the broker never acknowledges what was not stored.
 */
void tern_broker_ingest_done(tern_broker *broker, void *token, int status);

/*
 * CPU priority of the thread that accepts connections, reads their CONNECT and refuses the
 * over-rate ones (door.c). IDLE (SCHED_IDLE, the default) runs it only when the loops and every
 * other normal thread leave a CPU free, so a reconnect storm cannot take CPU from established
 * clients; on a saturated machine new connections then wait. LOW is nice 19.
 */
typedef enum tern_broker_accept_priority {
    TERN_BROKER_ACCEPT_NORMAL,
    TERN_BROKER_ACCEPT_LOW,
    TERN_BROKER_ACCEPT_IDLE,
} tern_broker_accept_priority;

typedef struct tern_broker_config {
    const char *const *listen; /* "HOST:PORT" TCP listeners; n_listen of them */
    size_t n_listen;
    const char *const *tls_listen; /* "HOST:PORT" TLS listeners; n_tls_listen of them */
    size_t n_tls_listen;
    const char *tls_cert_file; /* PEM server certificate chain */
    const char *tls_key_file;  /* PEM private key */
    const char *tls_ca_file;   /* PEM CA for client certificates; NULL: none asked */
    bool tls_require_certificate;
    bool tls_use_identity_as_username; /* client certificate CN = username, no password */
    const char *data_dir; /* persistent state under DATA/broker/; NULL: nothing persists */
    bool allow_anonymous;
    const char *password_file; /* NULL: none (then only anonymous access, if allowed) */
    const char *acl_file;      /* NULL: tern's default device ACL (docs/security.md) */
    uint32_t max_connections;  /* 0: no limit but the process's descriptors */
    uint32_t max_packet_bytes; /* largest packet accepted from a client */
    uint16_t receive_max;      /* QoS 1/2 publishes a client may have unacknowledged (v5) */
    uint16_t max_inflight;     /* QoS 1/2 messages in flight to a client */
    uint32_t max_queued;       /* queued messages per session beyond the in-flight window */
    uint16_t topic_alias_max;  /* topic aliases a v5 client may use towards the broker */
    uint32_t max_topic_bytes;
    uint32_t max_topic_levels;
    uint32_t connect_timeout_ms; /* a connection must send CONNECT within this */
    uint32_t max_session_expiry_s;
    uint64_t connect_rate_per_s; /* admission token bucket: new connections per second */
    uint64_t connect_burst;
    size_t max_out_buffer_bytes; /* per connection: QoS 0 beyond this is dropped (counted) */
    uint32_t sys_interval_ms;    /* $SYS/broker/... refresh; 0: no $SYS topics */
    uint16_t max_keepalive_s;    /* 5.0: a longer (or 0) client keepalive is lowered to this via
                                    Server Keep Alive; 0: the client's own is used */
    const char *response_information;  /* 5.0: sent when a client requests it; NULL: none */
    struct tern_metrics *metrics;      /* registry to report into; NULL: the process default */
    const char *const *ingest_filters; /* topic filters whose publishes go to the sink */
    size_t n_ingest_filters;
    uint32_t loops; /* event loops: 1 = the caller's only (the struct's default), 0 = one per
                       online core but one, at least 1 (the config file's default); at most 64 */
    tern_broker_accept_priority accept_priority; /* the front door thread's (door.c) */
} tern_broker_config;

/* tern_broker_config_defaults fills cfg with tern's defaults (docs/broker.md). */
void tern_broker_config_defaults(tern_broker_config *cfg);

/*
 * tern_broker_new creates a broker on loop with a copy of cfg's scalar settings (string arrays
 * are copied too) and opens its listeners. Sets *out only on success. Returns 0,
 * TERN_ECONFIG (a bad listen address, password or ACL file: the reason is logged),
 * TERN_ENOMEM, or -errno from socket/bind/listen (e.g. -EADDRINUSE).
 */
int tern_broker_new(tern_loop *loop, const tern_broker_config *cfg, tern_broker **out);

/* tern_broker_set_sink installs the ingest sink (borrowed; it must outlive the broker). */
void tern_broker_set_sink(tern_broker *broker, const tern_broker_sink *sink);

/* tern_broker_port returns the TCP port of listener i (useful when it was configured as 0). */
int tern_broker_port(const tern_broker *broker, size_t i);

/*
 * tern_broker_shutdown stops accepting, sends DISCONNECT 0x8B (server shutting down) to every
 * v5 client, closes every connection (wills of clean disconnects are not sent) and stops its
 * listeners. The loop may then be stopped. Safe to call twice.
 */
void tern_broker_shutdown(tern_broker *broker);

/*
 * tern_broker_publish publishes a message from the server itself (alerts, commands) to every
 * matching subscription, as a client's PUBLISH would be routed (not through the ingest sink;
 * retained when retain). Loop thread only: other threads hand it over with tern_loop_post.
 * Returns 0, TERN_EINVAL (topic empty, over 65535 bytes, or with wildcards) or TERN_ENOMEM.
 */
int tern_broker_publish(tern_broker *broker, const char *topic, const void *payload, size_t len,
    uint8_t qos, bool retain);

/* tern_broker_free releases everything: it stops the broker's own loops and runs every loop
 * once more for completions still on their way. The broker must have been shut down. NULL is a
 * no-op. */
void tern_broker_free(tern_broker *broker);

/* Figures for $SYS topics and the metrics registry. */
typedef struct tern_broker_stats {
    uint64_t connections;       /* gauge: open connections (CONNECT accepted) */
    uint64_t sessions;          /* gauge: sessions, online and offline */
    uint64_t subscriptions;     /* gauge */
    uint64_t retained;          /* gauge: retained messages */
    uint64_t connects_total;    /* accepted CONNECTs */
    uint64_t connects_refused;  /* CONNACK with a failure code, or admission refusals */
    uint64_t admission_refused; /* refused by the token bucket (0x9F) */
    uint64_t msgs_received;     /* PUBLISH packets received */
    uint64_t msgs_sent;         /* PUBLISH packets sent */
    uint64_t bytes_received;
    uint64_t bytes_sent;
    uint64_t protocol_errors;      /* connections closed for malformed input or protocol errors */
    uint64_t dropped_qos0;         /* QoS 0 messages dropped (slow consumer / full queue) */
    uint64_t dropped_queue_full;   /* QoS 1/2 messages dropped because a session queue was full */
    uint64_t publishers_throttled; /* times a publisher was paused by a full subscriber queue */
    uint64_t ingest_submitted;
    uint64_t ingest_failed;
} tern_broker_stats;

/* tern_broker_get_stats: any thread. */
void tern_broker_get_stats(const tern_broker *broker, tern_broker_stats *out);

#endif

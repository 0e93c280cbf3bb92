/*
 * store.h: the broker's journal of persistent state (private to src/broker).
 *
 * An append-only file DATA/broker/journal of checksummed records (format:
 * docs/formats/broker-store.md). The broker logs every change to persistent sessions, their
 * subscriptions and queued/in-flight QoS 1/2 messages, incoming QoS 2 ids and retained
 * messages as it happens; broker_store_commit writes and syncs what was logged, and the broker
 * calls it before sending any output of that loop iteration, so no acknowledgement can leave
 * before the state it acknowledges is durable. Replay on open rebuilds that state; a torn tail
 * is truncated, never applied.
 *
 * No thread-safety: called on the broker's loop thread only. I/O is synchronous (the journal
 * is written once per loop iteration and only when something persistent changed).
 */
#ifndef TERN_BROKER_STORE_H
#define TERN_BROKER_STORE_H

#include "broker/broker_int.h"

/*
 * broker_store_open opens (creating) DIR/broker/journal, replays it into b's sessions,
 * subscriptions and retained messages, then compacts it. Returns 0, TERN_ECORRUPT (wrong magic
 * or version: the broker refuses to start rather than lose data), TERN_ENOMEM or -errno.
 */
int broker_store_open(tern_broker *b, const char *data_dir);
void broker_store_close(tern_broker *b);

/* Logging: each appends one record to the pending buffer (no I/O). No-ops without a store. */
void broker_store_session(tern_broker *b, broker_session *s);
void broker_store_session_del(tern_broker *b, broker_session *s);
void broker_store_sub(tern_broker *b, broker_session *s, const char *filter, size_t len,
    const tern_topic_sub_opts *opts);
void broker_store_unsub(tern_broker *b, broker_session *s, const char *filter, size_t len);
void broker_store_out(tern_broker *b, broker_session *s, broker_out *o);
void broker_store_out_state(tern_broker *b, broker_out *o);
void broker_store_out_del(tern_broker *b, broker_out *o);
void broker_store_retain(tern_broker *b, const char *topic, size_t len, broker_msg *m);
void broker_store_qos2(tern_broker *b, broker_session *s, uint16_t packet_id, bool on);

/*
 * broker_store_commit writes the pending records and syncs the file. On failure the broker
 * cannot keep its promises: it logs the error and returns it (the caller stops the broker).
 * Compacts the journal when it has grown large. Returns 0 or -errno.
 */
int broker_store_commit(tern_broker *b);

#endif

/*
 * log_sink.h: the ingest sink that appends the broker's telemetry to the durable log
 * (log_sink.c says the record layout). Created on the broker's loop thread; install it with
 * tern_broker_set_sink(broker, tern_broker_log_sink_get(ls)).
 */
#ifndef TERN_BROKER_LOG_SINK_H
#define TERN_BROKER_LOG_SINK_H

#include "broker/broker.h"
#include "log/log.h"
#include "loop/loop.h"

typedef struct tern_broker_log_sink tern_broker_log_sink;

/*
 * tern_broker_log_sink_new makes a sink appending to log_topic (which must exist) of log,
 * keyed by topic level key_level. broker, loop and log are borrowed and must outlive the sink;
 * close the log (which completes every append in flight) and run the loop once more before
 * freeing the sink. Returns 0 or TERN_ENOMEM.
 */
int tern_broker_log_sink_new(tern_broker *broker, tern_loop *loop, tern_log *log,
    const char *log_topic, unsigned key_level, tern_broker_log_sink **out);
const tern_broker_sink *tern_broker_log_sink_get(tern_broker_log_sink *ls);
void tern_broker_log_sink_free(tern_broker_log_sink *ls);

#endif

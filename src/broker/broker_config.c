/*
 * broker_config.c: the [broker] section of tern's config file and its translation into a
 * tern_broker_config. Keys and defaults are documented in docs/broker.md.
 */
#include "broker/broker_config.h"

#include "base/alloc.h"
#include "base/error.h"

#include <string.h>

const tern_config_schema tern_broker_config_schema[] = {
    { "broker.listen", TERN_CONFIG_STRING, "0.0.0.0:1883", "TCP listener HOST:PORT (repeatable)", 0,
        0, TERN_CONFIG_LIST, NULL },
    { "broker.loops", TERN_CONFIG_INT, "0",
        "event loops (threads) serving connections; 0: one per online core but one (at least 1)", 0,
        64, 0, NULL },
    { "broker.accept_priority", TERN_CONFIG_ENUM, "idle",
        "CPU priority of accepting and admitting new connections: idle (SCHED_IDLE: only CPU the "
        "established connections leave), low (nice 19) or normal",
        0, 0, 0, "idle|low|normal" },
    { "broker.tls_listen", TERN_CONFIG_STRING, NULL, "TLS listener HOST:PORT (repeatable)", 0, 0,
        TERN_CONFIG_LIST, NULL },
    { "broker.tls_cert_file", TERN_CONFIG_STRING, NULL, "PEM server certificate (chain)", 0, 0, 0,
        NULL },
    { "broker.tls_key_file", TERN_CONFIG_STRING, NULL, "PEM private key", 0, 0, 0, NULL },
    { "broker.tls_ca_file", TERN_CONFIG_STRING, NULL,
        "PEM CA that signs client certificates; unset: none asked", 0, 0, 0, NULL },
    { "broker.tls_require_certificate", TERN_CONFIG_BOOL, "false",
        "refuse TLS clients without a valid certificate", 0, 0, 0, NULL },
    { "broker.tls_use_identity_as_username", TERN_CONFIG_BOOL, "false",
        "the client certificate's CN is the username (no password)", 0, 0, 0, NULL },
    { "broker.allow_anonymous", TERN_CONFIG_BOOL, "false", "accept clients that send no username",
        0, 0, 0, NULL },
    { "broker.password_file", TERN_CONFIG_STRING, NULL, "password file managed by `tern passwd`", 0,
        0, 0, NULL },
    { "broker.acl_file", TERN_CONFIG_STRING, NULL,
        "ACL file; unset: devices may publish under fleet/{client id}/ only", 0, 0, 0, NULL },
    { "broker.max_connections", TERN_CONFIG_INT, "0", "0: limited only by descriptors", 0,
        100000000, 0, NULL },
    { "broker.max_packet_size", TERN_CONFIG_SIZE, "1MiB", "largest packet a client may send", 16,
        268435460, 0, NULL },
    { "broker.receive_maximum", TERN_CONFIG_INT, "1024",
        "unacknowledged QoS 1/2 publishes a client may send", 1, 65535, 0, NULL },
    { "broker.max_inflight", TERN_CONFIG_INT, "64", "QoS 1/2 messages in flight to a client", 1,
        65535, 0, NULL },
    { "broker.max_queued", TERN_CONFIG_INT, "1000",
        "messages queued per session beyond the in-flight window", 0, 100000000, 0, NULL },
    { "broker.topic_alias_maximum", TERN_CONFIG_INT, "16", "topic aliases a v5 client may use", 0,
        65535, 0, NULL },
    { "broker.max_topic_length", TERN_CONFIG_INT, "1024", "bytes in a topic name", 1, 65535, 0,
        NULL },
    { "broker.max_topic_levels", TERN_CONFIG_INT, "16", "levels in a topic name", 1, 256, 0, NULL },
    { "broker.connect_timeout", TERN_CONFIG_DURATION, "10s",
        "a new connection must send CONNECT within this", 100, 3600000, 0, NULL },
    { "broker.max_session_expiry", TERN_CONFIG_DURATION, "7d", "longest an offline session is kept",
        0, 4294967295000, 0, NULL },
    { "broker.connect_rate", TERN_CONFIG_INT, "2000",
        "admission: new connections accepted per second (token bucket)", 1, 100000000, 0, NULL },
    { "broker.connect_burst", TERN_CONFIG_INT, "2000", "admission: token bucket size", 1, 100000000,
        0, NULL },
    { "broker.max_output_buffer", TERN_CONFIG_SIZE, "4MiB",
        "per connection; QoS 0 beyond it is dropped (slow consumer)", 4096, 1073741824, 0, NULL },
    { "broker.sys_interval", TERN_CONFIG_DURATION, "10s",
        "how often $SYS/broker/... topics are refreshed; 0 turns them off", 0, 86400000, 0, NULL },
    { "broker.max_keepalive", TERN_CONFIG_INT, "0",
        "5.0: lower longer (or disabled) client keepalives to this many seconds; 0: no limit", 0,
        65535, 0, NULL },
    { "broker.response_information", TERN_CONFIG_STRING, NULL,
        "5.0: Response Information sent to clients that request it", 0, 0, 0, NULL },
    { "broker.ingest_topic", TERN_CONFIG_STRING, "telemetry",
        "log topic that ingest publishes are appended to", 0, 0, 0, NULL },
    { "broker.ingest_key_level", TERN_CONFIG_INT, "1",
        "topic level holding the device id (the record key): fleet/{device}/... is 1", 0, 255, 0,
        NULL },
    { "broker.ingest", TERN_CONFIG_STRING,
        "fleet/+/telemetry,fleet/+/m/#,fleet/+/summary,fleet/+/event",
        "topic filters whose publishes are appended to the log", 0, 0, TERN_CONFIG_LIST, NULL },
    { NULL, 0, NULL, NULL, 0, 0, 0, NULL },
};

static const char **list_of(const tern_config *cfg, const char *key, size_t *n)
{
    *n = tern_config_list_len(cfg, key);
    const char **v = tern_calloc(*n + 1, sizeof *v);
    if (!v)
        return NULL;
    for (size_t i = 0; i < *n; i++)
        v[i] = tern_config_list_string(cfg, key, i);
    return v;
}

int tern_broker_config_load(const tern_config *cfg, tern_broker_config *out)
{
    tern_broker_config c;
    tern_broker_config_defaults(&c);
    c.listen = list_of(cfg, "broker.listen", &c.n_listen);
    c.ingest_filters = list_of(cfg, "broker.ingest", &c.n_ingest_filters);
    c.tls_listen = list_of(cfg, "broker.tls_listen", &c.n_tls_listen);
    if (!c.listen || !c.ingest_filters || !c.tls_listen) {
        tern_free((void *)c.listen);
        tern_free((void *)c.tls_listen);
        tern_free((void *)c.ingest_filters);
        return TERN_ENOMEM;
    }
    c.data_dir = tern_config_get_string(cfg, "data.dir");
    c.loops = (uint32_t)tern_config_get_int(cfg, "broker.loops");
    const char *prio = tern_config_get_string(cfg, "broker.accept_priority");
    c.accept_priority = strcmp(prio, "normal") == 0 ? TERN_BROKER_ACCEPT_NORMAL
        : strcmp(prio, "low") == 0                  ? TERN_BROKER_ACCEPT_LOW
                                                    : TERN_BROKER_ACCEPT_IDLE;
    c.allow_anonymous = tern_config_get_bool(cfg, "broker.allow_anonymous");
    c.tls_cert_file = tern_config_get_string(cfg, "broker.tls_cert_file");
    c.tls_key_file = tern_config_get_string(cfg, "broker.tls_key_file");
    c.tls_ca_file = tern_config_get_string(cfg, "broker.tls_ca_file");
    c.tls_require_certificate = tern_config_get_bool(cfg, "broker.tls_require_certificate");
    c.tls_use_identity_as_username
        = tern_config_get_bool(cfg, "broker.tls_use_identity_as_username");
    c.password_file = tern_config_get_string(cfg, "broker.password_file");
    c.acl_file = tern_config_get_string(cfg, "broker.acl_file");
    c.max_connections = (uint32_t)tern_config_get_int(cfg, "broker.max_connections");
    c.max_packet_bytes = (uint32_t)tern_config_get_int(cfg, "broker.max_packet_size");
    c.receive_max = (uint16_t)tern_config_get_int(cfg, "broker.receive_maximum");
    c.max_inflight = (uint16_t)tern_config_get_int(cfg, "broker.max_inflight");
    c.max_queued = (uint32_t)tern_config_get_int(cfg, "broker.max_queued");
    c.topic_alias_max = (uint16_t)tern_config_get_int(cfg, "broker.topic_alias_maximum");
    c.max_topic_bytes = (uint32_t)tern_config_get_int(cfg, "broker.max_topic_length");
    c.max_topic_levels = (uint32_t)tern_config_get_int(cfg, "broker.max_topic_levels");
    c.connect_timeout_ms = (uint32_t)tern_config_get_int(cfg, "broker.connect_timeout");
    c.max_session_expiry_s
        = (uint32_t)(tern_config_get_int(cfg, "broker.max_session_expiry") / 1000);
    c.connect_rate_per_s = (uint64_t)tern_config_get_int(cfg, "broker.connect_rate");
    c.connect_burst = (uint64_t)tern_config_get_int(cfg, "broker.connect_burst");
    c.max_out_buffer_bytes = (size_t)tern_config_get_int(cfg, "broker.max_output_buffer");
    c.sys_interval_ms = (uint32_t)tern_config_get_int(cfg, "broker.sys_interval");
    c.max_keepalive_s = (uint16_t)tern_config_get_int(cfg, "broker.max_keepalive");
    c.response_information = tern_config_get_string(cfg, "broker.response_information");
    *out = c;
    return 0;
}

void tern_broker_config_release(tern_broker_config *c)
{
    tern_free((void *)c->listen);
    tern_free((void *)c->ingest_filters);
    tern_free((void *)c->tls_listen);
    c->tls_listen = NULL;
    c->listen = NULL;
    c->ingest_filters = NULL;
}

/*
 * broker.c: the broker object: configuration defaults, listeners and accepting, admission,
 * statistics, shutdown.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "broker/store.h"
#include "loop/net.h"

#include <string.h>
#include <unistd.h>

/* Accepted per listener wake-up, so a flood of SYNs cannot starve established clients. */
#define MAX_ACCEPTS_PER_WAKE 64
#define EMFILE_BACKOFF_MS 100

static const char *const default_listen[] = { "0.0.0.0:1883" };
static const char *const default_ingest[]
    = { "fleet/+/telemetry", "fleet/+/m/#", "fleet/+/summary", "fleet/+/event" };

void tern_broker_config_defaults(tern_broker_config *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->listen = default_listen;
    cfg->n_listen = 1;
    cfg->allow_anonymous = false;
    cfg->max_connections = 0;
    cfg->max_packet_bytes = 1u << 20;
    cfg->receive_max = 1024;
    cfg->max_inflight = 64;
    cfg->max_queued = 1000;
    cfg->topic_alias_max = 16;
    cfg->max_topic_bytes = 1024;
    cfg->max_topic_levels = 16;
    cfg->connect_timeout_ms = 10000;
    cfg->max_session_expiry_s = 7u * 24 * 3600;
    cfg->connect_rate_per_s = 2000;
    cfg->connect_burst = 2000;
    cfg->max_out_buffer_bytes = 4u << 20;
    cfg->sys_interval_ms = 10000;
    cfg->ingest_filters = default_ingest;
    cfg->n_ingest_filters = sizeof default_ingest / sizeof default_ingest[0];
}

static char **copy_strings(const char *const *src, size_t n)
{
    char **dst = tern_calloc(n + 1, sizeof *dst);
    if (!dst)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        dst[i] = tern_strdup(src[i]);
        if (!dst[i]) {
            for (size_t j = 0; j < i; j++)
                tern_free(dst[j]);
            tern_free(dst);
            return NULL;
        }
    }
    return dst;
}

static void free_strings(char **v)
{
    if (!v)
        return;
    for (size_t i = 0; v[i]; i++)
        tern_free(v[i]);
    tern_free(v);
}

static void resume_accept_cb(tern_loop_timer *t);

static void listener_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    broker_listener *l = io->data;
    tern_broker *b = l->broker;
    for (int i = 0; i < MAX_ACCEPTS_PER_WAKE; i++) {
        int fd = -1;
        int rc = tern_net_accept(l->fd, &fd, NULL, NULL);
        if (rc == TERN_EAGAIN)
            return;
        if (rc == -EMFILE || rc == -ENFILE || rc == -ENOBUFS || rc == -ENOMEM) {
            /* Out of descriptors: pause accepting; established connections keep working. */
            TERN_LOG_RATELIMITED(TERN_LOG_WARN, "broker", "accept: %s; pausing %d ms",
                tern_strerror(rc), EMFILE_BACKOFF_MS);
            tern_loop_io_stop(&l->io);
            tern_loop_timer_start(&l->pause, EMFILE_BACKOFF_MS, 0);
            return;
        }
        if (rc != 0)
            return;
        if (b->shutting_down) {
            close(fd);
            continue;
        }
        (void)tern_net_set_nodelay(fd, true);
        broker_conn_accept(b, fd, l->tls);
    }
}

static void resume_accept_cb(tern_loop_timer *t)
{
    broker_listener *l = t->data;
    if (!l->broker->shutting_down)
        (void)tern_loop_io_start(&l->io, TERN_LOOP_READ);
}

static int open_listener(tern_broker *b, const char *addr, bool tls)
{
    broker_listener *l = &b->listeners[b->n_listeners];
    l->broker = b;
    l->fd = -1;
    l->tls = tls;
    tern_net_listen_opts opts = { .backlog = 0, .reuseport = false };
    int rc = tern_net_listen(addr, &opts, &l->fd);
    if (rc != 0) {
        tern_logf(TERN_LOG_ERROR, "broker", "cannot listen on %s: %s", addr, tern_strerror(rc));
        return rc;
    }
    b->n_listeners++;
    uint16_t port = 0;
    (void)tern_net_local_port(l->fd, &port);
    l->port = port;
    tern_loop_io_init(b->loop, &l->io, l->fd, listener_cb, l);
    tern_loop_timer_init(b->loop, &l->pause, resume_accept_cb, l);
    if ((rc = tern_loop_io_start(&l->io, TERN_LOOP_READ)) != 0)
        return rc;
    tern_logf(TERN_LOG_INFO, "broker", "listening on %s (MQTT 3.1.1 and 5.0%s)", addr,
        tls ? " over TLS" : "");
    return 0;
}

int tern_broker_new(tern_loop *loop, const tern_broker_config *cfg, tern_broker **out)
{
    int rc = TERN_ENOMEM;
    tern_broker *b = tern_calloc(1, sizeof *b);
    if (!b)
        return TERN_ENOMEM;
    b->loop = loop;
    b->cfg = *cfg;
    b->listen_copy = copy_strings(cfg->listen, cfg->n_listen);
    b->tls_listen_copy = copy_strings(cfg->tls_listen, cfg->n_tls_listen);
    b->ingest_copy = copy_strings(cfg->ingest_filters, cfg->n_ingest_filters);
    b->ingest_len = tern_calloc(cfg->n_ingest_filters + 1, sizeof *b->ingest_len);
    for (size_t i = 0; b->ingest_copy && b->ingest_len && i < cfg->n_ingest_filters; i++)
        b->ingest_len[i] = strlen(b->ingest_copy[i]);
    b->n_session_buckets = 1024;
    b->sessions = tern_calloc(b->n_session_buckets, sizeof *b->sessions);
    b->listeners = tern_calloc(cfg->n_listen + cfg->n_tls_listen + 1, sizeof *b->listeners);
    if (!b->listen_copy || !b->tls_listen_copy || !b->ingest_copy || !b->ingest_len || !b->sessions
        || !b->listeners)
        goto fail;
    b->cfg.listen = (const char *const *)b->listen_copy;
    b->cfg.tls_listen = (const char *const *)b->tls_listen_copy;
    b->cfg.ingest_filters = (const char *const *)b->ingest_copy;
    if ((rc = tern_topic_tree_new(&b->subs)) != 0)
        goto fail;
    if ((rc = broker_retained_init(b)) != 0)
        goto fail;
    if ((rc = broker_security_init(b)) != 0)
        goto fail;
    if ((rc = broker_tls_init(b)) != 0)
        goto fail;
    if (b->auth && (rc = broker_auth_worker_start(b)) != 0)
        goto fail;
    if ((rc = broker_sys_start(b)) != 0)
        goto fail;
    if (cfg->data_dir && (rc = broker_store_open(b, cfg->data_dir)) != 0)
        goto fail;
    rc = tern_token_bucket_init(
        &b->admission, cfg->connect_rate_per_s, cfg->connect_burst, tern_clock_mono_ns());
    if (rc != 0)
        goto fail;
    for (size_t i = 0; i < cfg->n_listen + cfg->n_tls_listen; i++) {
        bool tls = i >= cfg->n_listen;
        const char *addr = tls ? cfg->tls_listen[i - cfg->n_listen] : cfg->listen[i];
        if ((rc = open_listener(b, addr, tls)) != 0)
            goto fail;
    }
    *out = b;
    return 0;
fail:
    b->shutting_down = true;
    tern_broker_free(b);
    return rc;
}

void tern_broker_set_sink(tern_broker *b, const tern_broker_sink *sink)
{
    b->sink = sink;
}

int tern_broker_port(const tern_broker *b, size_t i)
{
    return i < b->n_listeners ? b->listeners[i].port : -1;
}

void tern_broker_shutdown(tern_broker *b)
{
    if (!b || (b->shutting_down && b->n_listeners == 0))
        return;
    b->shutting_down = true;
    for (size_t i = 0; i < b->n_listeners; i++) {
        broker_listener *l = &b->listeners[i];
        tern_loop_io_stop(&l->io);
        tern_loop_timer_stop(&l->pause);
        close(l->fd);
        l->fd = -1;
    }
    b->n_listeners = 0;
    while (b->conns)
        broker_conn_close(b->conns, TERN_MQTT_RC_SERVER_SHUTTING_DOWN, false);
}

void tern_broker_free(tern_broker *b)
{
    if (!b)
        return;
    tern_broker_shutdown(b);
    tern_loop_cancel(&b->flush_task);
    broker_auth_worker_stop(b);
    broker_sys_stop(b);
    while (b->closed) {
        tern_loop_cancel(&b->closed->free_task);
        broker_conn_release(b->closed);
    }
    broker_store_close(b); /* before the sessions go: their destruction is not a deletion */
    if (b->sessions)
        broker_session_free_all(b);
    broker_retained_free(b);
    broker_security_free(b);
    tern_topic_tree_free(b->subs);
    tern_topic_matches_free(&b->matches);
    broker_tls_free(b);
    free_strings(b->listen_copy);
    free_strings(b->tls_listen_copy);
    free_strings(b->ingest_copy);
    tern_free(b->ingest_len);
    tern_free(b->sessions);
    tern_free(b->listeners);
    tern_free(b);
}

void tern_broker_get_stats(const tern_broker *b, tern_broker_stats *out)
{
    *out = b->stats;
    out->sessions = b->n_sessions;
    out->subscriptions = tern_topic_tree_count(b->subs);
}

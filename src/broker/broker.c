/*
 * broker.c: the broker object: configuration defaults, the workers (one loop each), opening the
 * listeners (door.c accepts on them), statistics, shutdown.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/log.h"
#include "broker/store.h"
#include "loop/net.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

/* The descriptor table reserved at start: max_connections plus the broker's own files, or the
 * open files limit, up to 1M slots (8 MiB of kernel memory). */
#define RESERVED_FDS 256
#define MAX_RESERVED_FDS (1u << 20)
#define MAX_LOOPS 64

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
    cfg->accept_priority = TERN_BROKER_ACCEPT_IDLE;
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
    cfg->loops = 1;
}

/* ---- the lock and the workers ------------------------------------------------------------- */

void broker_lock(tern_broker *b, broker_worker *w)
{
    pthread_mutex_lock(&b->lock);
    b->holder = w;
}

void broker_unlock(tern_broker *b)
{
    b->holder = NULL;
    pthread_mutex_unlock(&b->lock);
}

uint64_t broker_now_ms(const tern_broker *b)
{
    return tern_loop_now_ms(b->holder ? b->holder->loop : b->loop);
}

void broker_post_surely(tern_loop *loop, tern_loop_post_cb cb, void *arg)
{
    while (tern_loop_post(loop, cb, arg) != 0)
        usleep(1000); /* out of memory: wait for some to be freed */
}

static void worker_flush_task(tern_loop_task *task)
{
    broker_worker *w = task->data;
    broker_lock(w->broker, w);
    broker_worker_flush(w);
    broker_unlock(w->broker);
}

static void worker_wake_cb(tern_loop *loop, void *arg)
{
    (void)loop;
    broker_worker *w = arg;
    broker_lock(w->broker, w);
    w->wake_posted = false;
    broker_worker_flush(w);
    broker_unlock(w->broker);
}

void broker_worker_wake(tern_broker *b, broker_worker *w)
{
    if (w == b->holder) {
        tern_loop_defer(w->loop, &w->flush_task, worker_flush_task, w);
        return;
    }
    if (w->wake_posted)
        return;
    if (tern_loop_post(w->loop, worker_wake_cb, w) == 0)
        w->wake_posted = true;
    else
        TERN_LOG_RATELIMITED(TERN_LOG_ERROR, "broker",
            "cannot wake loop %u: out of memory; "
            "its output waits for its next event",
            w->index);
}

static void *worker_main(void *arg)
{
    broker_worker *w = arg;
    char name[16];
    snprintf(name, sizeof name, "tern-broker-%u", w->index % 100u);
    pthread_setname_np(pthread_self(), name); /* top -H, bench CPU per stage */
    (void)tern_loop_run(w->loop);
    return NULL;
}

static void stop_loop_cb(tern_loop *loop, void *arg)
{
    (void)arg;
    tern_loop_stop(loop);
}

/*
 * loops = 0: one per online core but one. Three quarters of the broker's CPU is the kernel's
 * TCP work, and the clients, the network stack's soft interrupts and (in tern serve) the log,
 * stream and store need a core too. Measured on 2 cores (bench/README.md, "Broker"): a second
 * loop there doubled the CPU per message at 20k msgs/s, because each loop sleeps and wakes on
 * its own; with more cores each added loop adds headroom.
 */
static unsigned loops_wanted(const tern_broker_config *cfg)
{
    long n = cfg->loops;
    if (n == 0)
        n = sysconf(_SC_NPROCESSORS_ONLN) - 1;
    if (n < 1)
        n = 1;
    return n > MAX_LOOPS ? MAX_LOOPS : (unsigned)n;
}

/* Worker 0 runs on the caller's loop; the others get a loop each (threads start later). */
static int workers_new(tern_broker *b, tern_loop *loop)
{
    unsigned n = loops_wanted(&b->cfg);
    b->workers = tern_calloc(n, sizeof *b->workers);
    if (!b->workers)
        return TERN_ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        broker_worker *w = tern_calloc(1, sizeof *w);
        if (!w)
            return TERN_ENOMEM;
        b->workers[i] = w;
        b->n_workers = i + 1;
        w->broker = b;
        w->index = i;
        pthread_mutex_init(&w->handoff_mu, NULL);
        tern_list_init(&w->dirty);
        tern_list_init(&w->to_close);
        if (i == 0) {
            w->loop = loop;
        } else {
            int rc = tern_loop_new(&w->loop);
            if (rc != 0)
                return rc;
        }
        /* before the loop's thread starts, or on it (worker 0: the caller's loop) */
        char name[32];
        snprintf(name, sizeof name, "broker-%u", i);
        int rc = tern_loop_metrics_start(w->loop, b->cfg.metrics, name, &w->loop_metrics);
        if (rc != 0)
            return rc;
    }
    return 0;
}

static int workers_start(tern_broker *b)
{
    for (unsigned i = 1; i < b->n_workers; i++) {
        broker_worker *w = b->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
            return TERN_ENOMEM;
        w->has_thread = true;
    }
    if (b->n_workers > 1)
        tern_logf(TERN_LOG_INFO, "broker", "%u event loops", b->n_workers);
    return 0;
}

/* Stops the workers' threads after what is already posted to them (FIFO), then runs every
 * loop once more on this thread for posts that came later (completions, hand-offs). */
static void workers_stop(tern_broker *b)
{
    for (unsigned i = 1; i < b->n_workers; i++) {
        broker_worker *w = b->workers[i];
        if (!w->has_thread)
            continue;
        broker_post_surely(w->loop, stop_loop_cb, NULL);
        pthread_join(w->thread, NULL);
        w->has_thread = false;
    }
}

static void workers_drain(tern_broker *b)
{
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < b->n_workers; i++)
            (void)tern_loop_run_once(b->workers[i]->loop, 0);
}

static void workers_free(tern_broker *b)
{
    for (unsigned i = 0; i < b->n_workers; i++) {
        broker_worker *w = b->workers[i];
        tern_loop_cancel(&w->flush_task);
        broker_closing_cancel(w);
        tern_loop_metrics_stop(w->loop_metrics);
        broker_handoffs_free(w);
        pthread_mutex_destroy(&w->handoff_mu);
        if (i > 0)
            tern_loop_free(w->loop);
        tern_free(w);
    }
    tern_free(b->workers);
    b->workers = NULL;
    b->n_workers = 0;
}

/* Deadlines (deadline.h) fire on worker 0's loop. */
static void deadline_tick_cb(tern_loop_timer *t)
{
    tern_broker *b = t->data;
    broker_lock(b, b->workers[0]);
    uint64_t now = tern_loop_now_ms(b->loop);
    broker_deadline_fire_due(&b->deadlines, now);
    if (!tern_list_empty(&b->throttled) && now - b->throttled_since_ms >= BROKER_THROTTLE_MAX_MS)
        broker_conn_unthrottle_all(b); /* push-back is bounded in time (conn.c) */
    broker_unlock(b);
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
    if ((rc = broker_door_watch(b, l)) != 0)
        return rc;
    tern_logf(TERN_LOG_INFO, "broker", "listening on %s (MQTT 3.1.1 and 5.0%s)", addr,
        tls ? " over TLS" : "");
    return 0;
}

/*
 * Grows the descriptor table up front to what the connections may need, so that accepting
 * never grows it: growing it in a threaded process stalls the loop for an RCU grace period
 * (loop/net.h). Best effort: a failure only means the table grows later.
 */
static void reserve_descriptors(const tern_broker_config *cfg)
{
    uint64_t want
        = cfg->max_connections ? (uint64_t)cfg->max_connections + RESERVED_FDS : MAX_RESERVED_FDS;
    if (want > MAX_RESERVED_FDS)
        want = MAX_RESERVED_FDS;
    unsigned got = 0;
    int rc = tern_net_reserve_descriptors((unsigned)want, &got);
    if (rc != 0)
        tern_logf(TERN_LOG_WARN, "broker", "reserving descriptors: %s", tern_strerror(rc));
    else
        tern_logf(TERN_LOG_DEBUG, "broker", "descriptor table reserved for %u", got);
}

int tern_broker_new(tern_loop *loop, const tern_broker_config *cfg, tern_broker **out)
{
    int rc = TERN_ENOMEM;
    tern_broker *b = tern_calloc(1, sizeof *b);
    if (!b)
        return TERN_ENOMEM;
    pthread_mutex_init(&b->lock, NULL);
    pthread_mutex_init(&b->admission_mu, NULL);
    tern_list_init(&b->conns);
    tern_list_init(&b->closed);
    tern_list_init(&b->throttled);
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
    if ((rc = workers_new(b, loop)) != 0)
        goto fail;
    tern_loop_timer_init(b->loop, &b->deadline_tick, deadline_tick_cb, b);
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
    if ((rc = broker_door_new(b)) != 0)
        goto fail;
    reserve_descriptors(cfg);
    for (size_t i = 0; i < cfg->n_listen + cfg->n_tls_listen; i++) {
        bool tls = i >= cfg->n_listen;
        const char *addr = tls ? cfg->tls_listen[i - cfg->n_listen] : cfg->listen[i];
        if ((rc = open_listener(b, addr, tls)) != 0)
            goto fail;
    }
    tern_loop_timer_start(&b->deadline_tick, BROKER_DEADLINE_TICK_MS, BROKER_DEADLINE_TICK_MS);
    if ((rc = workers_start(b)) != 0 || (rc = broker_door_start(b)) != 0)
        goto fail;
    b->started = true;
    *out = b;
    return 0;
fail:
    b->shutting_down = true;
    tern_broker_free(b);
    return rc;
}

void tern_broker_set_sink(tern_broker *b, const tern_broker_sink *sink)
{
    broker_lock(b, NULL);
    b->sink = sink;
    broker_unlock(b);
}

int tern_broker_port(const tern_broker *b, size_t i)
{
    return i < b->n_listeners ? b->listeners[i].port : -1;
}

void tern_broker_shutdown(tern_broker *b)
{
    if (!b)
        return;
    broker_lock(b, b->workers ? b->workers[0] : NULL);
    if (!b->shutting_down && b->door)
        broker_door_close(b); /* the listeners are the door's */
    b->shutting_down = true;
    for (tern_list *l; (l = tern_list_first(&b->conns)) != NULL;)
        broker_conn_close(
            TERN_LIST_ENTRY(l, broker_conn, link), TERN_MQTT_RC_SERVER_SHUTTING_DOWN, false);
    broker_unlock(b);
}

void tern_broker_free(tern_broker *b)
{
    if (!b)
        return;
    tern_broker_shutdown(b);
    broker_door_free(b); /* no more hand-offs after this */
    workers_stop(b);
    broker_auth_worker_stop(b);
    if (b->started)
        workers_drain(b);
    if (b->workers)
        tern_loop_timer_stop(&b->deadline_tick);
    broker_sys_stop(b);
    for (tern_list *l; (l = tern_list_first(&b->closed)) != NULL;) {
        broker_conn *c = TERN_LIST_ENTRY(l, broker_conn, link);
        tern_loop_cancel(&c->free_task);
        broker_conn_release(c);
    }
    broker_store_close(b); /* before the sessions go: their destruction is not a deletion */
    if (b->sessions)
        broker_session_free_all(b);
    broker_retained_free(b);
    broker_security_free(b);
    tern_topic_tree_free(b->subs);
    tern_topic_matches_free(&b->matches);
    broker_tls_free(b);
    broker_deadlines_free(&b->deadlines);
    if (b->workers)
        workers_free(b);
    pthread_mutex_destroy(&b->lock);
    pthread_mutex_destroy(&b->admission_mu);
    free_strings(b->listen_copy);
    free_strings(b->tls_listen_copy);
    free_strings(b->ingest_copy);
    tern_free(b->ingest_len);
    tern_free(b->sessions);
    tern_free(b->listeners);
    tern_free(b);
}

void broker_stats_snapshot(const tern_broker *b, tern_broker_stats *out)
{
    *out = b->stats;
    /* The door's figures (door.c) are atomics: it never takes the broker lock. */
    out->admission_refused += atomic_load(&b->door_stats.admission_refused);
    out->connects_refused += atomic_load(&b->door_stats.connects_refused);
    out->bytes_received += atomic_load(&b->door_stats.bytes_received);
    out->bytes_sent += atomic_load(&b->door_stats.bytes_sent);
    out->sessions = b->n_sessions;
    out->subscriptions = tern_topic_tree_count(b->subs);
}

void tern_broker_get_stats(const tern_broker *b, tern_broker_stats *out)
{
    tern_broker *mb = (tern_broker *)b; /* the lock is not part of the broker's value */
    broker_lock(mb, NULL);
    broker_stats_snapshot(b, out);
    broker_unlock(mb);
}

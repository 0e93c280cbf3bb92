/*
 * log_kafka.c: the Apache Kafka backend of the log API (log.h), through librdkafka.
 *
 * Producer: one idempotent producer per log (enable.idempotence, acks=all, zstd batches,
 * linger.ms from the config). tern picks every record's partition itself (the key's murmur2
 * partition, tern_log_partition_for_key, or round robin for a record without a key) and passes
 * it explicitly, so both backends place records identically. Delivery reports arrive as
 * RD_KAFKA_EVENT_DR events on the main queue, which only this backend's I/O thread serves: it
 * runs every append callback, with status 0 only for a message librdkafka reports persisted.
 * tern_log_flush is rd_kafka_flush (in event mode it returns once the I/O thread has handled
 * every report); close flushes, then stops the thread.
 *
 * Topics: created with the Admin API (replication factor -1: the broker's
 * default.replication.factor), then awaited until every partition has a leader. Partition
 * counts come from metadata (the producer never auto-creates topics) and are cached for
 * appends; watermarks give the offsets.
 *
 * Consumers: one librdkafka consumer each. With a group: a real Kafka consumer group
 * (subscribe, range assignment, eager rebalancing, no auto commit); without: every partition
 * of the topics assigned by hand (a private group.id is set only because librdkafka's consumer
 * queue needs one; nothing is committed). Messages returned by a poll are librdkafka's own,
 * held until the next poll or close. Commits are synchronous and refused (TERN_EDENIED) for a
 * partition outside the current assignment or when the broker says this member is stale.
 * tern_log_committed uses the Admin API (ListConsumerGroupOffsets), for any group.
 */
#include "log/log_int.h"

#include "log/kafka_diag.h"

#include "base/alloc.h"
#include "base/clock.h"
#include "base/error.h"

#include <librdkafka/rdkafka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define KAFKA_META_TIMEOUT_MS 10000      /* one metadata or watermark request */
#define KAFKA_ADMIN_TIMEOUT_MS 30000     /* one admin request (create topic, list offsets) */
#define KAFKA_READY_TIMEOUT_MS 30000     /* a new topic's partitions all get a leader */
#define KAFKA_MESSAGE_MAX_BYTES 17825792 /* 17 MiB: a 16 MiB record plus its batch framing */
#define KAFKA_MESSAGE_TIMEOUT_MS 120000  /* undelivered after this: the append fails (TERN_EIO) */

typedef struct kafka_topic {
    char *name;
    uint32_t n_partitions;
} kafka_topic;

typedef struct kafka_log {
    tern_log base; /* first: log.c sees a tern_log */
    rd_kafka_t *rk;
    rd_kafka_queue_t *mainq;
    char *brokers;
    char *client_id;
    pthread_t io_thread;
    _Atomic bool stop;
    _Atomic bool closing;
    _Atomic uint32_t round_robin;
    _Atomic uint32_t n_consumers; /* for unique private group ids */
    pthread_mutex_t topics_mu;    /* guards topics */
    kafka_topic *topics;
    size_t n_topics, cap_topics;
} kafka_log;

/* What an append needs back from its delivery report (msg_opaque). */
typedef struct kafka_append_ctx {
    tern_log_append_cb cb;
    void *opaque;
} kafka_append_ctx;

typedef struct kafka_consumer {
    tern_log_consumer base; /* first: log.c sees a tern_log_consumer */
    kafka_log *kl;
    rd_kafka_t *rk;
    bool has_group;
    int64_t start; /* TERN_LOG_OFFSET_EARLIEST or _LATEST */
    char **topics; /* copies of the configured names: assignment() points into them */
    size_t n_topics;
    rd_kafka_message_t **held; /* messages handed out by the last poll */
    size_t n_held, cap_held;
    tern_log_header *headers; /* headers of the messages of the last poll */
    size_t cap_headers;
} kafka_consumer;

/* ---- helpers ---------------------------------------------------------------------------- */

/* Log lines (kafka_diag.h): warnings and librdkafka's own errors are rate limited. */
#define K_ERROR(...) tern_log__kafka_say(TERN_LOG__KAFKA_ERROR, false, __VA_ARGS__)
#define K_ERROR_RL(...) tern_log__kafka_say(TERN_LOG__KAFKA_ERROR, true, __VA_ARGS__)
#define K_WARN(...) tern_log__kafka_say(TERN_LOG__KAFKA_WARN, true, __VA_ARGS__)
#define K_DEBUG(...)                                                                               \
    do {                                                                                           \
        if (tern_log__kafka_enabled(TERN_LOG__KAFKA_DEBUG))                                        \
            tern_log__kafka_say(TERN_LOG__KAFKA_DEBUG, false, __VA_ARGS__);                        \
    } while (0)

static void k_logger(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    if (level <= 2)
        K_ERROR_RL("%s: %s", fac, buf);
    else if (level <= 4)
        K_WARN("%s: %s", fac, buf);
    else
        K_DEBUG("%s: %s", fac, buf);
}

static void k_sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

/* k_conf_set sets one property, logging librdkafka's reason on failure. */
static int k_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof errstr) != RD_KAFKA_CONF_OK) {
        K_ERROR("cannot set %s=%s: %s", name, value, errstr);
        return TERN_EINVAL;
    }
    return 0;
}

/* k_sync_err maps an error of a call that failed at once (produce, commit, queries). */
static int k_sync_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        return 0;
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
        return TERN_EAGAIN;
    case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
    case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
        return TERN_ENOTFOUND;
    case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
    case RD_KAFKA_RESP_ERR__INVALID_ARG:
    case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
    case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
        return TERN_EINVAL;
    case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
    case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
        return TERN_EDENIED;
    case RD_KAFKA_RESP_ERR__DESTROY:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
        return TERN_ECLOSED;
    default:
        return TERN_EIO;
    }
}

/* k_delivery_err maps the error of a failed delivery report: the record is not stored. */
static int k_delivery_err(rd_kafka_resp_err_t err)
{
    int rc = k_sync_err(err);
    return rc == TERN_EAGAIN || rc == TERN_ENOTFOUND ? TERN_EIO : rc;
}

/* k_commit_err maps a commit error: a member the group no longer knows owns nothing. */
static int k_commit_err(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
    case RD_KAFKA_RESP_ERR__NO_OFFSET:
        return 0;
    case RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION:
    case RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID:
    case RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS:
    case RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID:
    case RD_KAFKA_RESP_ERR__ASSIGNMENT_LOST:
    case RD_KAFKA_RESP_ERR__STATE:
        return TERN_EDENIED;
    default:
        return k_sync_err(err);
    }
}

/* k_error_code consumes an rd_kafka_error_t (may be NULL) and returns its mapped code. */
static int k_error_code(rd_kafka_error_t *error, int (*map)(rd_kafka_resp_err_t))
{
    if (!error)
        return 0;
    rd_kafka_resp_err_t err = rd_kafka_error_code(error);
    K_WARN("%s", rd_kafka_error_string(error));
    rd_kafka_error_destroy(error);
    return map(err);
}

/* k_base_conf returns a configuration with what producers and consumers share, or NULL. */
static rd_kafka_conf_t *k_base_conf(kafka_log *kl)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (!conf)
        return NULL;
    rd_kafka_conf_set_log_cb(conf, k_logger);
    if (k_conf_set(conf, "bootstrap.servers", kl->brokers) != 0
        || k_conf_set(conf, "client.id", kl->client_id) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    return conf;
}

/* ---- topics ----------------------------------------------------------------------------- */

/*
 * k_metadata asks the cluster about topic: sets *n (its partition count) and *ready (every
 * partition has a leader). Returns 0, TERN_ENOTFOUND, or TERN_EIO. Never creates the topic.
 */
static int k_metadata(kafka_log *kl, const char *topic, uint32_t *n, bool *ready)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(kl->rk, topic, NULL);
    if (!rkt)
        return TERN_ENOMEM;
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(kl->rk, 0, rkt, &md, KAFKA_META_TIMEOUT_MS);
    rd_kafka_topic_destroy(rkt);
    if (err) {
        K_WARN("metadata of %s: %s", topic, rd_kafka_err2str(err));
        return TERN_EIO;
    }
    int rc = TERN_ENOTFOUND;
    for (int i = 0; i < md->topic_cnt; i++) {
        const rd_kafka_metadata_topic_t *t = &md->topics[i];
        if (strcmp(t->topic, topic) != 0)
            continue;
        if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
            || (t->err == RD_KAFKA_RESP_ERR_NO_ERROR && t->partition_cnt == 0))
            break;
        if (t->err != RD_KAFKA_RESP_ERR_NO_ERROR
            && t->err != RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE) {
            rc = k_sync_err(t->err);
            break;
        }
        bool all_led = t->err == RD_KAFKA_RESP_ERR_NO_ERROR;
        for (int p = 0; p < t->partition_cnt; p++)
            if (t->partitions[p].err || t->partitions[p].leader < 0)
                all_led = false;
        *n = (uint32_t)t->partition_cnt;
        *ready = all_led;
        rc = 0;
        break;
    }
    rd_kafka_metadata_destroy(md);
    return rc;
}

/* k_cache_put records topic's partition count for appends. */
static void k_cache_put(kafka_log *kl, const char *topic, uint32_t n)
{
    pthread_mutex_lock(&kl->topics_mu);
    for (size_t i = 0; i < kl->n_topics; i++) {
        if (strcmp(kl->topics[i].name, topic) == 0) {
            kl->topics[i].n_partitions = n;
            goto out;
        }
    }
    if (kl->n_topics == kl->cap_topics) {
        size_t cap = kl->cap_topics ? 2 * kl->cap_topics : 8;
        kafka_topic *grown = tern_realloc(kl->topics, cap * sizeof *grown);
        if (!grown)
            goto out; /* only a cache: the next lookup asks the cluster again */
        kl->topics = grown;
        kl->cap_topics = cap;
    }
    char *name = tern_strdup(topic);
    if (!name)
        goto out;
    kl->topics[kl->n_topics].name = name;
    kl->topics[kl->n_topics].n_partitions = n;
    kl->n_topics++;
out:
    pthread_mutex_unlock(&kl->topics_mu);
}

static bool k_cache_get(kafka_log *kl, const char *topic, uint32_t *n)
{
    bool found = false;
    pthread_mutex_lock(&kl->topics_mu);
    for (size_t i = 0; i < kl->n_topics && !found; i++) {
        if (strcmp(kl->topics[i].name, topic) == 0) {
            *n = kl->topics[i].n_partitions;
            found = true;
        }
    }
    pthread_mutex_unlock(&kl->topics_mu);
    return found;
}

/*
 * k_partitions sets *n for topic from the cache, or from the cluster when the cache does not
 * know the topic or `refresh` is set. Returns 0, TERN_ENOTFOUND, TERN_EIO.
 */
static int k_partitions(kafka_log *kl, const char *topic, bool refresh, uint32_t *n)
{
    if (!refresh && k_cache_get(kl, topic, n))
        return 0;
    uint32_t count = 0;
    bool ready = false;
    int rc = k_metadata(kl, topic, &count, &ready);
    if (rc != 0)
        return rc;
    k_cache_put(kl, topic, count);
    *n = count;
    return 0;
}

/* k_check_partition: 0 if topic exists and has partition, TERN_ENOTFOUND / TERN_EINVAL else. */
static int k_check_partition(kafka_log *kl, const char *topic, uint32_t partition)
{
    uint32_t n = 0;
    int rc = k_partitions(kl, topic, false, &n);
    if (rc == 0 && partition >= n)
        rc = k_partitions(kl, topic, true, &n); /* partitions may have been added */
    if (rc == 0 && partition >= n)
        rc = TERN_EINVAL;
    return rc;
}

/* k_wait_ready waits until topic has n led partitions (bounded); returns its count. */
static int k_wait_ready(kafka_log *kl, const char *topic, uint32_t want, uint32_t *n)
{
    uint64_t deadline = tern_clock_mono_ms() + KAFKA_READY_TIMEOUT_MS;
    for (;;) {
        uint32_t count = 0;
        bool ready = false;
        int rc = k_metadata(kl, topic, &count, &ready);
        if (rc == 0 && ready && (want == 0 || count == want)) {
            *n = count;
            return 0;
        }
        if (rc != 0 && rc != TERN_ENOTFOUND)
            return rc;
        if (tern_clock_mono_ms() >= deadline) {
            K_WARN("topic %s: partitions still without leader", topic);
            return TERN_EIO;
        }
        k_sleep_ms(50);
    }
}

static int k_create_topic(tern_log *log, const char *topic, uint32_t n_partitions)
{
    kafka_log *kl = (kafka_log *)log;
    char errstr[256];
    char max_bytes[24];
    int rc = TERN_EIO;
    rd_kafka_queue_t *q = rd_kafka_queue_new(kl->rk);
    rd_kafka_AdminOptions_t *opts
        = rd_kafka_AdminOptions_new(kl->rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    /* replication factor -1: the broker's default.replication.factor */
    rd_kafka_NewTopic_t *nt
        = rd_kafka_NewTopic_new(topic, (int)n_partitions, -1, errstr, sizeof errstr);
    rd_kafka_event_t *ev = NULL;
    if (!q || !opts || !nt) {
        rc = nt ? TERN_ENOMEM : TERN_EINVAL;
        goto done;
    }
    snprintf(max_bytes, sizeof max_bytes, "%d", KAFKA_MESSAGE_MAX_BYTES);
    if (rd_kafka_NewTopic_set_config(nt, "max.message.bytes", max_bytes)
        || rd_kafka_AdminOptions_set_operation_timeout(
            opts, KAFKA_ADMIN_TIMEOUT_MS, errstr, sizeof errstr)
        || rd_kafka_AdminOptions_set_request_timeout(
            opts, KAFKA_ADMIN_TIMEOUT_MS, errstr, sizeof errstr))
        goto done;
    rd_kafka_CreateTopics(kl->rk, &nt, 1, opts, q);
    ev = rd_kafka_queue_poll(q, KAFKA_ADMIN_TIMEOUT_MS + 5000);
    if (!ev)
        goto done;
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    if (!err) {
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        size_t cnt = 0;
        const rd_kafka_topic_result_t **results
            = res ? rd_kafka_CreateTopics_result_topics(res, &cnt) : NULL;
        err = cnt == 1 ? rd_kafka_topic_result_error(results[0]) : RD_KAFKA_RESP_ERR__FAIL;
    }
    uint32_t n = 0;
    switch (err) {
    case RD_KAFKA_RESP_ERR_NO_ERROR:
        rc = k_wait_ready(kl, topic, n_partitions, &n);
        break;
    case RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS:
        /* another creator may have just made it: wait until its partitions are visible */
        rc = k_wait_ready(kl, topic, 0, &n);
        if (rc == 0 && n != n_partitions)
            rc = TERN_EEXIST;
        break;
    case RD_KAFKA_RESP_ERR_INVALID_PARTITIONS:
    case RD_KAFKA_RESP_ERR_INVALID_REPLICATION_FACTOR:
    case RD_KAFKA_RESP_ERR_INVALID_CONFIG:
        K_WARN("creating topic %s: %s", topic, rd_kafka_err2str(err));
        rc = TERN_EINVAL;
        break;
    default:
        K_WARN("creating topic %s: %s", topic, rd_kafka_err2str(err));
        rc = k_sync_err(err);
        if (rc == 0 || rc == TERN_ENOTFOUND || rc == TERN_EAGAIN)
            rc = TERN_EIO;
        break;
    }
    if (rc == 0)
        k_cache_put(kl, topic, n);
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (nt)
        rd_kafka_NewTopic_destroy(nt);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (q)
        rd_kafka_queue_destroy(q);
    return rc;
}

static int k_partition_count(tern_log *log, const char *topic, uint32_t *n)
{
    return k_partitions((kafka_log *)log, topic, true, n);
}

static int k_offsets(
    tern_log *log, const char *topic, uint32_t partition, int64_t *earliest, int64_t *latest)
{
    kafka_log *kl = (kafka_log *)log;
    int rc = k_check_partition(kl, topic, partition);
    if (rc != 0)
        return rc;
    int64_t lo = 0, hi = 0;
    rd_kafka_resp_err_t err = rd_kafka_query_watermark_offsets(
        kl->rk, topic, (int32_t)partition, &lo, &hi, KAFKA_META_TIMEOUT_MS);
    if (err) {
        K_WARN("offsets of %s/%" PRIu32 ": %s", topic, partition, rd_kafka_err2str(err));
        return k_sync_err(err);
    }
    *earliest = lo;
    *latest = hi;
    return 0;
}

/* ---- producer --------------------------------------------------------------------------- */

/* k_handle_dr runs the callbacks of one delivery-report event (on the I/O thread). */
static void k_handle_dr(kafka_log *kl, rd_kafka_event_t *ev)
{
    const rd_kafka_message_t *m;
    while ((m = rd_kafka_event_message_next(ev)) != NULL) {
        /*
         * Success needs an offset too. librdkafka 2.0.2 reports messages as delivered, with no
         * offset, when it only infers their success ("implicit ack": a later batch of the
         * partition succeeded, so it assumes an earlier one that failed, e.g. with
         * NOT_LEADER_FOR_PARTITION, was stored after all). A broker without state for this
         * producer (a new partition) accepts the later batch anyway, so the inference can be
         * wrong: seen in tests, the records were lost. With acks=all a stored batch always
         * comes back with its offset, so a success without one is not proof: TERN_EIO.
         */
        int status = 0;
        if (m->err)
            status = k_delivery_err(m->err);
        else if (rd_kafka_message_status(m) != RD_KAFKA_MSG_STATUS_PERSISTED || m->offset < 0)
            status = TERN_EIO;
        if (status == 0) {
            atomic_fetch_add(&kl->base.counters.records_appended, 1);
            atomic_fetch_add(&kl->base.counters.bytes_appended, m->len + m->key_len);
        } else {
            atomic_fetch_add(&kl->base.counters.append_errors, 1);
            K_WARN("record to %s/%" PRId32 " not stored: %s", rd_kafka_topic_name(m->rkt),
                m->partition,
                m->err ? rd_kafka_err2str(m->err) : "reported delivered without an offset");
        }
        kafka_append_ctx *ctx = m->_private;
        if (ctx) {
            ctx->cb(ctx->opaque, status, m->partition >= 0 ? (uint32_t)m->partition : 0,
                status == 0 ? m->offset : -1);
            tern_free(ctx);
        }
    }
}

/* k_io_thread serves the producer's main queue: delivery reports and client errors. */
static void *k_io_thread(void *arg)
{
    kafka_log *kl = arg;
    pthread_setname_np(pthread_self(), "tern-kafka-io"); /* top -H, bench CPU per stage */
    while (!atomic_load(&kl->stop)) {
        rd_kafka_event_t *ev = rd_kafka_queue_poll(kl->mainq, 100);
        if (!ev)
            continue;
        switch (rd_kafka_event_type(ev)) {
        case RD_KAFKA_EVENT_DR:
            k_handle_dr(kl, ev);
            break;
        case RD_KAFKA_EVENT_ERROR:
            tern_log__kafka_say(
                rd_kafka_event_error_is_fatal(ev) ? TERN_LOG__KAFKA_ERROR : TERN_LOG__KAFKA_WARN,
                true, "producer: %s", rd_kafka_event_error_string(ev));
            break;
        default:
            break;
        }
        rd_kafka_event_destroy(ev);
    }
    return NULL;
}

static int k_open(const tern_log_config *cfg, tern_log **out)
{
    int rc = TERN_ENOMEM;
    char errstr[512];
    char value[32];
    kafka_log *kl = tern_calloc(1, sizeof *kl);
    if (!kl)
        return TERN_ENOMEM;
    kl->base.ops = &tern_log__kafka_ops;
    pthread_mutex_init(&kl->topics_mu, NULL);
    kl->brokers = tern_strdup(cfg->kafka_brokers);
    kl->client_id = tern_strdup(
        cfg->kafka_client_id && cfg->kafka_client_id[0] ? cfg->kafka_client_id : "tern");
    if (!kl->brokers || !kl->client_id)
        goto fail;
    rd_kafka_conf_t *conf = k_base_conf(kl);
    if (!conf) {
        rc = TERN_EINVAL;
        goto fail;
    }
    snprintf(value, sizeof value, "%" PRIu32, cfg->kafka_linger_ms);
    char max_bytes[24], timeout[24];
    snprintf(max_bytes, sizeof max_bytes, "%d", KAFKA_MESSAGE_MAX_BYTES);
    snprintf(timeout, sizeof timeout, "%d", KAFKA_MESSAGE_TIMEOUT_MS);
    const char *settings[][2] = {
        { "enable.idempotence", "true" },              /* no duplicates, no reordering on retry */
        { "acks", "all" },                             /* durable on every in-sync replica */
        { "compression.codec", "zstd" },               /* built into Debian's librdkafka */
        { "linger.ms", value },                        /* batching delay from the config */
        { "partitioner", "murmur2_random" },           /* tern passes partitions; agree anyway */
        { "allow.auto.create.topics", "false" },       /* metadata lookups never create topics */
        { "message.max.bytes", max_bytes },            /* records up to log.h's 16 MiB */
        { "message.timeout.ms", timeout },             /* bound on an undelivered append */
        { "queue.buffering.max.messages", "1000000" }, /* then TERN_EAGAIN */
        /* One request in flight per broker: a batch is never sent while an earlier batch of
         * its partition may still fail, so a failure is retried in order instead of being
         * "implicitly acked" by the later batch's success (see k_handle_dr). */
        { "max.in.flight.requests.per.connection", "1" },
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (k_conf_set(conf, settings[i][0], settings[i][1]) != 0) {
            rd_kafka_conf_destroy(conf);
            rc = TERN_EINVAL;
            goto fail;
        }
    }
    rd_kafka_conf_set_events(conf, RD_KAFKA_EVENT_DR | RD_KAFKA_EVENT_ERROR);
    kl->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (!kl->rk) {
        rd_kafka_conf_destroy(conf);
        K_ERROR("cannot create a producer: %s", errstr);
        rc = TERN_EINVAL;
        goto fail;
    }
    /* Reach the cluster once, so a wrong broker list fails here rather than at first use. */
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(kl->rk, 0, NULL, &md, KAFKA_META_TIMEOUT_MS);
    if (err) {
        K_ERROR("cannot reach %s: %s", kl->brokers, rd_kafka_err2str(err));
        rc = TERN_EIO;
        goto fail;
    }
    rd_kafka_metadata_destroy(md);
    kl->mainq = rd_kafka_queue_get_main(kl->rk);
    if (!kl->mainq)
        goto fail;
    int prc = pthread_create(&kl->io_thread, NULL, k_io_thread, kl);
    if (prc != 0) {
        rc = -prc;
        goto fail;
    }
    *out = &kl->base;
    return 0;
fail:
    if (kl->mainq)
        rd_kafka_queue_destroy(kl->mainq);
    if (kl->rk)
        rd_kafka_destroy(kl->rk);
    pthread_mutex_destroy(&kl->topics_mu);
    tern_free(kl->brokers);
    tern_free(kl->client_id);
    tern_free(kl);
    return rc;
}

static void k_close(tern_log *log)
{
    kafka_log *kl = (kafka_log *)log;
    atomic_store(&kl->closing, true);
    /* Every delivery report is handled (its callback run) before the count reaches zero. */
    while (rd_kafka_flush(kl->rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT)
        ;
    atomic_store(&kl->stop, true);
    pthread_join(kl->io_thread, NULL);
    rd_kafka_queue_destroy(kl->mainq);
    rd_kafka_destroy(kl->rk);
    for (size_t i = 0; i < kl->n_topics; i++)
        tern_free(kl->topics[i].name);
    tern_free(kl->topics);
    pthread_mutex_destroy(&kl->topics_mu);
    tern_free(kl->brokers);
    tern_free(kl->client_id);
    tern_free(kl);
}

static int k_append(tern_log *log, const char *topic, int32_t partition, const tern_log_record *rec,
    tern_log_append_cb cb, void *opaque)
{
    kafka_log *kl = (kafka_log *)log;
    if (atomic_load(&kl->closing))
        return TERN_ECLOSED;
    if (rec->ts_ms < 0 || (rec->n_headers && !rec->headers))
        return TERN_EINVAL;
    uint32_t n = 0;
    int rc = k_partitions(kl, topic, false, &n);
    if (rc != 0)
        return rc;
    if (partition >= 0 && (uint32_t)partition >= n) {
        rc = k_partitions(kl, topic, true, &n); /* partitions may have been added */
        if (rc != 0)
            return rc;
        if ((uint32_t)partition >= n)
            return TERN_EINVAL;
    }
    if (partition < 0) {
        if (rec->key_len > 0)
            partition = (int32_t)tern_log_partition_for_key(rec->key, rec->key_len, n);
        else
            partition = (int32_t)(atomic_fetch_add(&kl->round_robin, 1) % n);
    }
    rd_kafka_headers_t *hdrs = NULL;
    kafka_append_ctx *ctx = NULL;
    if (rec->n_headers) {
        hdrs = rd_kafka_headers_new(rec->n_headers);
        if (!hdrs)
            return TERN_ENOMEM;
        for (size_t i = 0; i < rec->n_headers; i++) {
            const tern_log_header *h = &rec->headers[i];
            if (!h->name || (h->value_len && !h->value)) {
                rc = TERN_EINVAL;
                goto fail;
            }
            if (rd_kafka_header_add(hdrs, h->name, -1, h->value, (ssize_t)h->value_len)) {
                rc = TERN_EINVAL;
                goto fail;
            }
        }
    }
    if (cb) {
        ctx = tern_malloc(sizeof *ctx);
        if (!ctx) {
            rc = TERN_ENOMEM;
            goto fail;
        }
        ctx->cb = cb;
        ctx->opaque = opaque;
    }
    /* rd_kafka_produceva rather than producev: its RD_KAFKA_V_* macros are GNU extensions. */
    rd_kafka_vu_t vu[8];
    size_t n_vu = 0;
    vu[n_vu].vtype = RD_KAFKA_VTYPE_TOPIC;
    vu[n_vu++].u.cstr = topic;
    vu[n_vu].vtype = RD_KAFKA_VTYPE_PARTITION;
    vu[n_vu++].u.i32 = partition;
    vu[n_vu].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
    vu[n_vu++].u.i = RD_KAFKA_MSG_F_COPY;
    if (rec->key_len) {
        vu[n_vu].vtype = RD_KAFKA_VTYPE_KEY;
        vu[n_vu].u.mem.ptr = (void *)(uintptr_t)rec->key; /* copied (RD_KAFKA_MSG_F_COPY) */
        vu[n_vu++].u.mem.size = rec->key_len;
    }
    vu[n_vu].vtype = RD_KAFKA_VTYPE_VALUE;
    vu[n_vu].u.mem.ptr = rec->value_len ? (void *)(uintptr_t)rec->value : NULL;
    vu[n_vu++].u.mem.size = rec->value_len;
    vu[n_vu].vtype = RD_KAFKA_VTYPE_TIMESTAMP; /* 0: librdkafka stamps the append time */
    vu[n_vu++].u.i64 = rec->ts_ms;
    if (hdrs) {
        vu[n_vu].vtype = RD_KAFKA_VTYPE_HEADERS;
        vu[n_vu++].u.headers = hdrs;
    }
    vu[n_vu].vtype = RD_KAFKA_VTYPE_OPAQUE;
    vu[n_vu++].u.ptr = ctx;
    rd_kafka_error_t *error = rd_kafka_produceva(kl->rk, vu, n_vu);
    if (error) {
        rd_kafka_resp_err_t err = rd_kafka_error_code(error);
        rc = k_sync_err(err);
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            K_WARN("append to %s/%" PRId32 ": %s", topic, partition, rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
        goto fail; /* hdrs are still ours */
    }
    return 0; /* librdkafka owns hdrs now */
fail:
    if (hdrs)
        rd_kafka_headers_destroy(hdrs);
    tern_free(ctx);
    return rc;
}

static int k_flush(tern_log *log)
{
    kafka_log *kl = (kafka_log *)log;
    /* Bounded overall by message.timeout.ms: every record completes, delivered or failed. */
    while (rd_kafka_flush(kl->rk, 1000) == RD_KAFKA_RESP_ERR__TIMED_OUT)
        ;
    return 0;
}

/* ---- consumers -------------------------------------------------------------------------- */

static void k_release(kafka_consumer *kc)
{
    for (size_t i = 0; i < kc->n_held; i++)
        rd_kafka_message_destroy(kc->held[i]);
    kc->n_held = 0;
}

static void k_consumer_free(kafka_consumer *kc)
{
    k_release(kc);
    if (kc->rk) {
        rd_kafka_consumer_close(kc->rk);
        rd_kafka_destroy(kc->rk);
    }
    for (size_t i = 0; i < kc->n_topics; i++)
        tern_free(kc->topics[i]);
    tern_free(kc->topics);
    tern_free(kc->held);
    tern_free(kc->headers);
    tern_free(kc);
}

/* k_assign_all assigns every partition of the consumer's topics (a consumer without group). */
static int k_assign_all(kafka_consumer *kc)
{
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(16);
    if (!list)
        return TERN_ENOMEM;
    int rc = 0;
    for (size_t i = 0; i < kc->n_topics && rc == 0; i++) {
        uint32_t n = 0;
        rc = k_partitions(kc->kl, kc->topics[i], true, &n);
        for (uint32_t p = 0; rc == 0 && p < n; p++)
            rd_kafka_topic_partition_list_add(list, kc->topics[i], (int32_t)p)->offset
                = kc->start == TERN_LOG_OFFSET_LATEST ? RD_KAFKA_OFFSET_END
                                                      : RD_KAFKA_OFFSET_BEGINNING;
    }
    if (rc == 0)
        rc = k_sync_err(rd_kafka_assign(kc->rk, list));
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

static int k_consumer_open(
    tern_log *log, const tern_log_consumer_config *cfg, tern_log_consumer **out)
{
    kafka_log *kl = (kafka_log *)log;
    char errstr[512];
    char group[128];
    int rc = TERN_ENOMEM;
    for (size_t i = 0; i < cfg->n_topics; i++) {
        uint32_t n = 0;
        rc = k_partitions(kl, cfg->topics[i], true, &n);
        if (rc != 0)
            return rc;
    }
    kafka_consumer *kc = tern_calloc(1, sizeof *kc);
    if (!kc)
        return TERN_ENOMEM;
    kc->base.log = log;
    kc->kl = kl;
    kc->has_group = cfg->group && cfg->group[0];
    kc->start
        = cfg->start == TERN_LOG_OFFSET_LATEST ? TERN_LOG_OFFSET_LATEST : TERN_LOG_OFFSET_EARLIEST;
    kc->topics = tern_calloc(cfg->n_topics, sizeof *kc->topics);
    if (!kc->topics)
        goto fail;
    for (size_t i = 0; i < cfg->n_topics; i++) {
        kc->topics[i] = tern_strdup(cfg->topics[i]);
        if (!kc->topics[i])
            goto fail;
        kc->n_topics++;
    }
    if (kc->has_group)
        snprintf(group, sizeof group, "%s", cfg->group);
    else /* librdkafka's consumer queue needs a group id; this one never joins or commits */
        snprintf(group, sizeof group, "tern-standalone-%ld-%" PRIu32, (long)getpid(),
            atomic_fetch_add(&kl->n_consumers, 1));
    rd_kafka_conf_t *conf = k_base_conf(kl);
    if (!conf) {
        rc = TERN_EINVAL;
        goto fail;
    }
    const char *settings[][2] = {
        { "group.id", kc->has_group ? cfg->group : group },
        { "enable.auto.commit", "false" }, /* commits are the caller's, after work */
        { "auto.offset.reset", kc->start == TERN_LOG_OFFSET_LATEST ? "latest" : "earliest" },
        { "partition.assignment.strategy", "range" }, /* log.h: range assignment per topic */
        { "session.timeout.ms", "10000" },            /* a dead member loses its partitions */
        { "heartbeat.interval.ms", "1000" },          /* members notice a rebalance quickly */
        { "fetch.wait.max.ms", "100" },               /* latency of new records when idle */
        { "allow.auto.create.topics", "false" },
    };
    for (size_t i = 0; i < sizeof settings / sizeof settings[0]; i++) {
        if (k_conf_set(conf, settings[i][0], settings[i][1]) != 0) {
            rd_kafka_conf_destroy(conf);
            rc = TERN_EINVAL;
            goto fail;
        }
    }
    kc->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!kc->rk) {
        rd_kafka_conf_destroy(conf);
        K_ERROR("cannot create a consumer: %s", errstr);
        rc = TERN_EIO;
        goto fail;
    }
    rd_kafka_poll_set_consumer(kc->rk);
    if (kc->has_group) {
        rd_kafka_topic_partition_list_t *list
            = rd_kafka_topic_partition_list_new((int)cfg->n_topics);
        if (!list)
            goto fail;
        for (size_t i = 0; i < kc->n_topics; i++)
            rd_kafka_topic_partition_list_add(list, kc->topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t err = rd_kafka_subscribe(kc->rk, list);
        rd_kafka_topic_partition_list_destroy(list);
        if (err) {
            K_WARN("subscribe: %s", rd_kafka_err2str(err));
            rc = k_sync_err(err);
            goto fail;
        }
    } else {
        rc = k_assign_all(kc);
        if (rc != 0)
            goto fail;
    }
    *out = &kc->base;
    return 0;
fail:
    k_consumer_free(kc);
    return rc;
}

static int k_consumer_poll(
    tern_log_consumer *c, tern_log_message *msgs, size_t max, int timeout_ms, size_t *n_out)
{
    kafka_consumer *kc = (kafka_consumer *)c;
    k_release(kc);
    if (max > kc->cap_held) {
        rd_kafka_message_t **grown = tern_realloc(kc->held, max * sizeof *grown);
        if (!grown)
            return TERN_ENOMEM;
        kc->held = grown;
        kc->cap_held = max;
    }
    int rc = 0;
    uint64_t deadline = tern_clock_mono_ms() + (timeout_ms > 0 ? (uint64_t)timeout_ms : 0);
    while (kc->n_held < max) {
        int wait = 0;
        if (kc->n_held == 0 && timeout_ms < 0) {
            wait = 1000;
        } else if (kc->n_held == 0) {
            uint64_t now = tern_clock_mono_ms();
            wait = now < deadline ? (int)(deadline - now) : 0;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(kc->rk, wait);
        if (!m) {
            if (kc->n_held > 0 || (wait == 0 && timeout_ms >= 0))
                break;
            continue;
        }
        if (m->err) {
            rd_kafka_resp_err_t err = m->err;
            K_WARN("consumer: %s", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (err == RD_KAFKA_RESP_ERR__FATAL
                || rd_kafka_fatal_error(kc->rk, NULL, 0) != RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = TERN_EIO;
                break;
            }
            continue;
        }
        kc->held[kc->n_held++] = m;
    }
    size_t n_headers = 0;
    for (size_t i = 0; i < kc->n_held; i++) {
        rd_kafka_headers_t *hdrs = NULL;
        if (rd_kafka_message_headers(kc->held[i], &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR)
            n_headers += rd_kafka_header_cnt(hdrs);
    }
    if (n_headers > kc->cap_headers) {
        tern_log_header *grown = tern_realloc(kc->headers, n_headers * sizeof *grown);
        if (!grown) {
            /* keep the position: hand nothing out, so these messages are fetched again */
            for (size_t i = 0; i < kc->n_held; i++) {
                rd_kafka_message_t *m = kc->held[i];
                rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
                if (list) {
                    rd_kafka_topic_partition_list_add(
                        list, rd_kafka_topic_name(m->rkt), m->partition)
                        ->offset
                        = m->offset;
                    rd_kafka_error_t *e = rd_kafka_seek_partitions(kc->rk, list, 0);
                    if (e)
                        rd_kafka_error_destroy(e);
                    rd_kafka_topic_partition_list_destroy(list);
                }
            }
            k_release(kc);
            return TERN_ENOMEM;
        }
        kc->headers = grown;
        kc->cap_headers = n_headers;
    }
    size_t h = 0;
    for (size_t i = 0; i < kc->n_held; i++) {
        const rd_kafka_message_t *m = kc->held[i];
        tern_log_message *out = &msgs[i];
        rd_kafka_timestamp_type_t ts_type;
        out->topic = rd_kafka_topic_name(m->rkt);
        out->partition = (uint32_t)m->partition;
        out->offset = m->offset;
        out->ts_ms = rd_kafka_message_timestamp(m, &ts_type);
        out->key = m->key;
        out->key_len = m->key ? m->key_len : 0;
        out->value = m->payload;
        out->value_len = m->payload ? m->len : 0;
        out->headers = kc->headers + h;
        out->n_headers = 0;
        rd_kafka_headers_t *hdrs = NULL;
        if (rd_kafka_message_headers(m, &hdrs) != RD_KAFKA_RESP_ERR_NO_ERROR)
            continue;
        const char *name;
        const void *value;
        size_t size;
        for (size_t j = 0;
             rd_kafka_header_get_all(hdrs, j, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR;
             j++) {
            kc->headers[h].name = name;
            kc->headers[h].value = value;
            kc->headers[h].value_len = value ? size : 0;
            h++;
            out->n_headers++;
        }
    }
    *n_out = kc->n_held;
    return kc->n_held > 0 ? 0 : rc;
}

/* k_owns says whether topic/partition is in the consumer's current assignment. */
static bool k_owns(kafka_consumer *kc, const char *topic, uint32_t partition)
{
    rd_kafka_topic_partition_list_t *list = NULL;
    if (rd_kafka_assignment(kc->rk, &list) != RD_KAFKA_RESP_ERR_NO_ERROR || !list)
        return false;
    bool owned = rd_kafka_topic_partition_list_find(list, topic, (int32_t)partition) != NULL
        && !rd_kafka_assignment_lost(kc->rk);
    rd_kafka_topic_partition_list_destroy(list);
    return owned;
}

/* k_commit_list commits list synchronously; a per-partition error counts too. */
static int k_commit_list(kafka_consumer *kc, rd_kafka_topic_partition_list_t *list)
{
    rd_kafka_resp_err_t err = rd_kafka_commit(kc->rk, list, 0);
    for (int i = 0; !err && i < list->cnt; i++)
        err = list->elems[i].err;
    if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
        K_WARN("commit: %s", rd_kafka_err2str(err));
    return k_commit_err(err);
}

static int k_consumer_commit(
    tern_log_consumer *c, const char *topic, uint32_t partition, int64_t next_offset)
{
    kafka_consumer *kc = (kafka_consumer *)c;
    if (!kc->has_group)
        return TERN_EINVAL;
    if (!k_owns(kc, topic, partition))
        return TERN_EDENIED;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    if (!list)
        return TERN_ENOMEM;
    rd_kafka_topic_partition_list_add(list, topic, (int32_t)partition)->offset = next_offset;
    int rc = k_commit_list(kc, list);
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

static int k_consumer_commit_all(tern_log_consumer *c)
{
    kafka_consumer *kc = (kafka_consumer *)c;
    if (!kc->has_group)
        return TERN_EINVAL;
    rd_kafka_topic_partition_list_t *assigned = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(kc->rk, &assigned);
    if (err)
        return k_commit_err(err);
    int rc = 0;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(assigned->cnt);
    if (!list) {
        rc = TERN_ENOMEM;
        goto done;
    }
    err = rd_kafka_position(kc->rk, assigned);
    if (err) {
        rc = k_sync_err(err);
        goto done;
    }
    for (int i = 0; i < assigned->cnt; i++) {
        const rd_kafka_topic_partition_t *tp = &assigned->elems[i];
        if (tp->err == RD_KAFKA_RESP_ERR_NO_ERROR && tp->offset >= 0)
            rd_kafka_topic_partition_list_add(list, tp->topic, tp->partition)->offset = tp->offset;
    }
    if (list->cnt > 0)
        rc = k_commit_list(kc, list);
done:
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    rd_kafka_topic_partition_list_destroy(assigned);
    return rc;
}

static int k_consumer_seek(
    tern_log_consumer *c, const char *topic, uint32_t partition, int64_t offset)
{
    kafka_consumer *kc = (kafka_consumer *)c;
    if (!k_owns(kc, topic, partition))
        return TERN_EDENIED;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    if (!list)
        return TERN_ENOMEM;
    rd_kafka_topic_partition_t *tp
        = rd_kafka_topic_partition_list_add(list, topic, (int32_t)partition);
    int rc = 0;
    if (offset == TERN_LOG_OFFSET_COMMITTED) {
        tp->offset = RD_KAFKA_OFFSET_INVALID;
        if (kc->has_group) {
            rd_kafka_resp_err_t err = rd_kafka_committed(kc->rk, list, KAFKA_META_TIMEOUT_MS);
            if (!err)
                err = tp->err;
            if (err) {
                rc = k_sync_err(err);
                goto done;
            }
        }
        if (tp->offset < 0) /* nothing committed: where a new partition starts */
            offset = kc->start;
        else
            offset = tp->offset;
    }
    if (offset == TERN_LOG_OFFSET_EARLIEST)
        tp->offset = RD_KAFKA_OFFSET_BEGINNING;
    else if (offset == TERN_LOG_OFFSET_LATEST)
        tp->offset = RD_KAFKA_OFFSET_END;
    else
        tp->offset = offset;
    rc = k_error_code(rd_kafka_seek_partitions(kc->rk, list, KAFKA_META_TIMEOUT_MS), k_sync_err);
    if (rc == 0 && tp->err) {
        K_WARN("seek %s/%" PRIu32 ": %s", topic, partition, rd_kafka_err2str(tp->err));
        rc = k_sync_err(tp->err);
    }
done:
    rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

static int k_assignment_cmp(const void *a, const void *b)
{
    const tern_log_assignment *x = a, *y = b;
    int c = strcmp(x->topic, y->topic);
    if (c != 0)
        return c;
    return x->partition < y->partition ? -1 : x->partition > y->partition;
}

static int k_consumer_assignment(
    tern_log_consumer *c, tern_log_assignment *out, size_t max, size_t *n)
{
    kafka_consumer *kc = (kafka_consumer *)c;
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_resp_err_t err = rd_kafka_assignment(kc->rk, &list);
    if (err)
        return k_sync_err(err);
    size_t total = 0;
    if (!rd_kafka_assignment_lost(kc->rk))
        total = (size_t)list->cnt;
    tern_log_assignment *all = total ? tern_calloc(total, sizeof *all) : NULL;
    if (total && !all) {
        rd_kafka_topic_partition_list_destroy(list);
        return TERN_ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < total; i++) {
        const rd_kafka_topic_partition_t *tp = &list->elems[i];
        for (size_t t = 0; t < kc->n_topics; t++) {
            if (strcmp(kc->topics[t], tp->topic) == 0) { /* stable copy of the name */
                all[k].topic = kc->topics[t];
                all[k].partition = (uint32_t)tp->partition;
                k++;
                break;
            }
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
    if (k > 1)
        qsort(all, k, sizeof *all, k_assignment_cmp);
    for (size_t i = 0; i < k && i < max; i++)
        out[i] = all[i];
    tern_free(all);
    *n = k;
    return 0;
}

static void k_consumer_close(tern_log_consumer *c)
{
    k_consumer_free((kafka_consumer *)c);
}

static int k_committed(
    tern_log *log, const char *group, const char *topic, uint32_t partition, int64_t *offset)
{
    kafka_log *kl = (kafka_log *)log;
    char errstr[256];
    int rc = k_check_partition(kl, topic, partition);
    if (rc != 0)
        return rc;
    rc = TERN_EIO;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_queue_t *q = rd_kafka_queue_new(kl->rk);
    rd_kafka_AdminOptions_t *opts
        = rd_kafka_AdminOptions_new(kl->rk, RD_KAFKA_ADMIN_OP_LISTCONSUMERGROUPOFFSETS);
    rd_kafka_ListConsumerGroupOffsets_t *req = NULL;
    rd_kafka_event_t *ev = NULL;
    if (!list || !q || !opts) {
        rc = TERN_ENOMEM;
        goto done;
    }
    rd_kafka_topic_partition_list_add(list, topic, (int32_t)partition);
    req = rd_kafka_ListConsumerGroupOffsets_new(group, list);
    if (!req) {
        rc = TERN_ENOMEM;
        goto done;
    }
    if (rd_kafka_AdminOptions_set_request_timeout(
            opts, KAFKA_ADMIN_TIMEOUT_MS, errstr, sizeof errstr))
        goto done;
    rd_kafka_ListConsumerGroupOffsets(kl->rk, &req, 1, opts, q);
    ev = rd_kafka_queue_poll(q, KAFKA_ADMIN_TIMEOUT_MS + 5000);
    if (!ev)
        goto done;
    rd_kafka_resp_err_t err = rd_kafka_event_error(ev);
    int64_t found = RD_KAFKA_OFFSET_INVALID;
    if (!err) {
        const rd_kafka_ListConsumerGroupOffsets_result_t *res
            = rd_kafka_event_ListConsumerGroupOffsets_result(ev);
        size_t cnt = 0;
        const rd_kafka_group_result_t **groups
            = res ? rd_kafka_ListConsumerGroupOffsets_result_groups(res, &cnt) : NULL;
        if (cnt != 1) {
            err = RD_KAFKA_RESP_ERR__FAIL;
        } else {
            const rd_kafka_error_t *gerr = rd_kafka_group_result_error(groups[0]);
            err = gerr ? rd_kafka_error_code(gerr) : RD_KAFKA_RESP_ERR_NO_ERROR;
            const rd_kafka_topic_partition_list_t *parts
                = rd_kafka_group_result_partitions(groups[0]);
            const rd_kafka_topic_partition_t *tp = !err && parts
                ? rd_kafka_topic_partition_list_find(parts, topic, (int32_t)partition)
                : NULL;
            if (tp) {
                err = tp->err;
                found = tp->offset;
            }
        }
    }
    if (err == RD_KAFKA_RESP_ERR_GROUP_ID_NOT_FOUND) /* a group that never committed */
        err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (err) {
        K_WARN("committed offset of %s on %s: %s", group, topic, rd_kafka_err2str(err));
        rc = k_sync_err(err);
        if (rc == TERN_EAGAIN)
            rc = TERN_EIO;
        goto done;
    }
    *offset = found >= 0 ? found : TERN_LOG_OFFSET_EARLIEST;
    rc = 0;
done:
    if (ev)
        rd_kafka_event_destroy(ev);
    if (req)
        rd_kafka_ListConsumerGroupOffsets_destroy(req);
    if (opts)
        rd_kafka_AdminOptions_destroy(opts);
    if (q)
        rd_kafka_queue_destroy(q);
    if (list)
        rd_kafka_topic_partition_list_destroy(list);
    return rc;
}

const tern_log_ops tern_log__kafka_ops = {
    .name = "kafka",
    .open = k_open,
    .close = k_close,
    .create_topic = k_create_topic,
    .partition_count = k_partition_count,
    .append = k_append,
    .flush = k_flush,
    .offsets = k_offsets,
    .consumer_open = k_consumer_open,
    .consumer_poll = k_consumer_poll,
    .consumer_commit = k_consumer_commit,
    .consumer_commit_all = k_consumer_commit_all,
    .consumer_seek = k_consumer_seek,
    .consumer_assignment = k_consumer_assignment,
    .consumer_close = k_consumer_close,
    .committed = k_committed,
};

/*
 * deliver.c: routing one message to the sessions whose subscriptions match its topic.
 *
 * The topic tree folds a client's overlapping subscriptions into one delivery at the highest
 * granted QoS with all their subscription identifiers (MQTT 5 3.3.4), and picks one member per
 * matching shared-subscription group, preferring members that are online with room in their
 * window (least loaded first, round robin among equals).
 */
#include "broker/broker_int.h"

#include "base/log.h"

static int64_t weigh_member(void *ctx, const tern_topic_subscriber *who)
{
    (void)ctx;
    const broker_session *s = who->ctx;
    if (!s->conn || s->conn->state != CONN_ACTIVE)
        return -1;
    return (int64_t)(s->n_inflight + s->n_queued);
}

/* Any member at all, for groups whose members are all offline: a persistent one queues it. */
static int64_t weigh_any(void *ctx, const tern_topic_subscriber *who)
{
    (void)ctx;
    const broker_session *s = who->ctx;
    return s->clean && !s->conn ? -1 : (int64_t)s->n_queued;
}

void broker_route(tern_broker *b, broker_msg *m, broker_session *from)
{
    tern_topic_matches *mt = &b->matches;
    int rc = tern_topic_tree_collect(
        b->subs, m->topic, m->topic_len, from ? &from->subscriber : NULL, weigh_member, NULL, mt);
    if (rc != 0) {
        TERN_LOG_RATELIMITED(
            TERN_LOG_ERROR, "broker", "routing '%s': %s", m->topic, tern_strerror(rc));
        return;
    }
    for (size_t i = 0; i < mt->n_items; i++) {
        tern_topic_delivery *d = &mt->items[i];
        tern_topic_subscriber *who = d->who;
        uint8_t granted = d->qos;
        if (!who && d->group) {
            tern_topic_sub_opts opts;
            who = tern_topic_group_pick(d->group, weigh_any, NULL, &opts);
            granted = opts.qos;
            if (!who) {
                if (m->qos == 0)
                    b->stats.dropped_qos0++;
                else
                    b->stats.dropped_queue_full++;
                continue;
            }
        }
        uint32_t ids[BROKER_MAX_SUB_IDS];
        size_t n_ids = d->n_ids ? tern_topic_delivery_ids(mt, d, ids, BROKER_MAX_SUB_IDS) : 0;
        if (n_ids > BROKER_MAX_SUB_IDS)
            n_ids = BROKER_MAX_SUB_IDS;
        uint8_t qos = m->qos < granted ? m->qos : granted;
        /* Retain is cleared on forwarding unless the subscription asked to keep it (shared
         * ones too: 5.0 3.3.1.3 makes no exception). */
        bool retain = d->retain_as_published ? m->retain : false;
        broker_session_deliver(b, who->ctx, m, qos, retain, ids, (uint32_t)n_ids);
    }
    /* Output is flushed once per loop iteration for every connection that got some. */
    for (size_t i = 0; i < mt->n_items; i++) {
        tern_topic_subscriber *who = mt->items[i].who;
        if (who && ((broker_session *)who->ctx)->conn)
            broker_conn_mark_dirty(((broker_session *)who->ctx)->conn);
    }
}

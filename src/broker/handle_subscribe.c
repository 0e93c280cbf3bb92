/*
 * handle_subscribe.c: SUBSCRIBE -> SUBACK and UNSUBSCRIBE -> UNSUBACK.
 *
 * Each filter is authorized on its own (a refused filter gets 0x87, or 0x80 for 3.1.1) and the
 * others still succeed. After the SUBACK, retained messages matching each new filter are sent
 * per its retain handling (5.0: 0 always, 1 only for a new subscription, 2 never; shared
 * subscriptions never get retained messages).
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/log.h"
#include "broker/store.h"
#include "mqtt/topic.h"

#include <string.h>

/* A SUBSCRIBE packet can list many filters; the retained pass needs them after the SUBACK. */
typedef struct granted_sub {
    tern_mqtt_subscription sub;
    uint8_t reason;
    bool existed;
} granted_sub;

int broker_handle_subscribe(broker_conn *c, const tern_mqtt_subscribe *p)
{
    tern_broker *b = c->broker;
    broker_session *s = c->session;
    uint32_t sub_id = 0;
    if (c->version == TERN_MQTT_V5 && TERN_MQTT_HAS_PROP(&p->props, TERN_MQTT_PROP_SUBSCRIPTION_ID))
        sub_id = p->props.subscription_id;

    granted_sub *g = tern_calloc(p->n_subs, sizeof *g);
    uint8_t *reasons = tern_calloc(p->n_subs, 1);
    if (!g || !reasons) {
        tern_free(g);
        tern_free(reasons);
        return TERN_MQTT_RC_IMPLEMENTATION_ERROR;
    }
    tern_mqtt_iter it;
    tern_mqtt_sub_iter_init(&it, TERN_MQTT_SUBSCRIBE, p);
    uint32_t n = 0;
    while (n < p->n_subs && tern_mqtt_sub_iter_next(&it, &g[n].sub)) {
        tern_mqtt_subscription *sub = &g[n].sub;
        const uint8_t *inner = sub->filter.p;
        size_t inner_len = sub->filter.len, glen = 0;
        const uint8_t *group = NULL;
        bool shared = tern_mqtt_topic_parse_shared(
                          sub->filter.p, sub->filter.len, &group, &glen, &inner, &inner_len)
            == 1;
        uint8_t reason;
        if (shared && sub->no_local && c->version == TERN_MQTT_V5) {
            /* MQTT-3.8.3-4: No Local on a shared subscription is a protocol error. */
            tern_free(g);
            tern_free(reasons);
            return TERN_MQTT_RC_PROTOCOL_ERROR;
        }
        if (!broker_security_may_subscribe(b, s->client_id, c->username, inner, inner_len)) {
            reason = c->version == TERN_MQTT_V5 ? TERN_MQTT_RC_NOT_AUTHORIZED : 0x80;
            TERN_LOG_RATELIMITED(TERN_LOG_INFO, "broker",
                "client '%s': subscription to '%.*s' denied", s->client_id, (int)sub->filter.len,
                (const char *)sub->filter.p);
        } else {
            tern_topic_sub_opts opts = {
                .qos = sub->qos > 2 ? 2 : sub->qos,
                .no_local = sub->no_local,
                .retain_as_published = sub->retain_as_published,
                .retain_handling = sub->retain_handling,
                .subscription_id = sub_id,
            };
            int rc = tern_topic_tree_add(b->subs, (const char *)sub->filter.p, sub->filter.len,
                &s->subscriber, &opts, &g[n].existed);
            if (rc == 0) {
                reason = opts.qos;
                broker_store_sub(b, s, (const char *)sub->filter.p, sub->filter.len, &opts);
            } else if (rc == TERN_EINVAL)
                reason = c->version == TERN_MQTT_V5 ? TERN_MQTT_RC_TOPIC_FILTER_INVALID : 0x80;
            else
                reason = c->version == TERN_MQTT_V5 ? TERN_MQTT_RC_UNSPECIFIED : 0x80;
        }
        g[n].reason = reason;
        reasons[n] = reason;
        n++;
    }
    b->stats.subscriptions = tern_topic_tree_count(b->subs);

    tern_mqtt_packet ack = { .type = TERN_MQTT_SUBACK };
    ack.u.suback.packet_id = p->packet_id;
    ack.u.suback.reasons = reasons;
    ack.u.suback.n_reasons = n;
    int rc = broker_conn_send(c, &ack);
    if (rc == 0) {
        for (uint32_t i = 0; i < n; i++) {
            if (g[i].reason >= 0x80)
                continue;
            const tern_mqtt_subscription *sub = &g[i].sub;
            if (sub->filter.len >= 7 && memcmp(sub->filter.p, "$share/", 7) == 0)
                continue;
            if (sub->retain_handling == 2 || (sub->retain_handling == 1 && g[i].existed))
                continue;
            broker_send_retained(b, s, sub->filter.p, sub->filter.len, g[i].reason, sub_id);
        }
    }
    tern_free(g);
    tern_free(reasons);
    return rc == 0 ? 0 : TERN_MQTT_RC_IMPLEMENTATION_ERROR;
}

int broker_handle_unsubscribe(broker_conn *c, const tern_mqtt_subscribe *p)
{
    tern_broker *b = c->broker;
    broker_session *s = c->session;
    uint8_t *reasons = tern_calloc(p->n_subs, 1);
    if (!reasons)
        return TERN_MQTT_RC_IMPLEMENTATION_ERROR;
    tern_mqtt_iter it;
    tern_mqtt_sub_iter_init(&it, TERN_MQTT_UNSUBSCRIBE, p);
    tern_mqtt_subscription sub;
    uint32_t n = 0;
    while (n < p->n_subs && tern_mqtt_sub_iter_next(&it, &sub)) {
        int rc = tern_topic_tree_remove(
            b->subs, (const char *)sub.filter.p, sub.filter.len, &s->subscriber);
        if (rc == 0)
            broker_store_unsub(b, s, (const char *)sub.filter.p, sub.filter.len);
        reasons[n++] = rc == 0 ? 0 : TERN_MQTT_RC_NO_SUBSCRIPTION_EXISTED;
    }
    b->stats.subscriptions = tern_topic_tree_count(b->subs);
    tern_mqtt_packet ack = { .type = TERN_MQTT_UNSUBACK };
    ack.u.suback.packet_id = p->packet_id;
    ack.u.suback.reasons = reasons;
    ack.u.suback.n_reasons = c->version == TERN_MQTT_V5 ? n : 0;
    int rc = broker_conn_send(c, &ack);
    tern_free(reasons);
    return rc == 0 ? 0 : TERN_MQTT_RC_IMPLEMENTATION_ERROR;
}

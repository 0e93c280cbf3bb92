/*
 * test_ingest_sink.c: the broker's ingest seam. Publishes on ingest topics go to the sink; a
 * QoS 1 publish is acknowledged only when the sink reports it stored, with the sink's verdict
 * as the reason code; QoS 0 is handed over without a token; other topics never reach the sink;
 * a client that goes away before the sink completes costs nothing (ASan watches).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "base/log.h"
#include "broker/broker.h"
#include "broker/broker_test_client.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_RECORDS 16

typedef struct test_sink {
    int n;
    void *tokens[MAX_RECORDS];
    char topics[MAX_RECORDS][64];
    uint8_t qos[MAX_RECORDS];
    int refuse_with; /* 0: accept */
} test_sink;

static int sink_submit(void *ctx, const tern_broker_ingest *rec, void *token)
{
    test_sink *s = ctx;
    if (s->refuse_with)
        return s->refuse_with;
    if (s->n < MAX_RECORDS) {
        s->tokens[s->n] = token;
        snprintf(s->topics[s->n], sizeof s->topics[0], "%.*s", (int)rec->topic_len,
            (const char *)rec->topic);
        s->qos[s->n] = rec->qos;
    }
    s->n++;
    return 0;
}

typedef struct fixture {
    tern_loop *loop;
    tern_broker *broker;
    test_sink sink_state;
    tern_broker_sink sink;
    int port;
} fixture;

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    tern_log_set_level(TERN_LOG_ERROR);
    assert_int_equal(tern_loop_new(&f->loop), 0);
    tern_broker_config cfg;
    tern_broker_config_defaults(&cfg);
    static const char *const listen[] = { "127.0.0.1:0" };
    cfg.listen = listen;
    cfg.n_listen = 1;
    cfg.allow_anonymous = true;
    assert_int_equal(tern_broker_new(f->loop, &cfg, &f->broker), 0);
    f->sink.ctx = &f->sink_state;
    f->sink.submit = sink_submit;
    tern_broker_set_sink(f->broker, &f->sink);
    f->port = tern_broker_port(f->broker, 0);
    assert_true(f->port > 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    tern_broker_shutdown(f->broker);
    tern_loop_run_once(f->loop, 0);
    tern_broker_free(f->broker);
    tern_loop_free(f->loop);
    free(f);
    return 0;
}

static void run_until_submitted(fixture *f, int n)
{
    for (int i = 0; i < 500 && f->sink_state.n < n; i++)
        tern_loop_run_once(f->loop, 10);
    assert_int_equal(f->sink_state.n, n);
}

static void test_qos1_acked_only_after_sink_done(void **state)
{
    fixture *f = *state;
    test_client c;
    assert_int_equal(test_client_open(&c, f->loop, f->port, TERN_MQTT_V5), 0);
    assert_int_equal(test_client_connect(&c, "d1", true), 0);
    assert_int_equal(test_client_publish(&c, "fleet/d1/telemetry", "{\"soc\":80.5}", 1, 7), 0);
    run_until_submitted(f, 1);
    assert_non_null(f->sink_state.tokens[0]);
    assert_string_equal(f->sink_state.topics[0], "fleet/d1/telemetry");
    assert_int_equal(f->sink_state.qos[0], 1);

    tern_mqtt_packet pkt;
    assert_int_equal(test_client_recv(&c, &pkt, 20), 0); /* no PUBACK before the sink is done */

    tern_broker_ingest_done(f->broker, f->sink_state.tokens[0], 0);
    assert_int_equal(test_client_recv(&c, &pkt, 200), 1);
    assert_int_equal(pkt.type, TERN_MQTT_PUBACK);
    assert_int_equal(pkt.u.ack.packet_id, 7);
    assert_int_equal(pkt.u.ack.reason, 0);

    /* A refusal for lack of space reaches a 5.0 client as reason 0x97. */
    assert_int_equal(test_client_publish(&c, "fleet/d1/telemetry", "{\"soc\":80.4}", 1, 8), 0);
    run_until_submitted(f, 2);
    tern_broker_ingest_done(f->broker, f->sink_state.tokens[1], TERN_EQUOTA);
    assert_int_equal(test_client_recv(&c, &pkt, 200), 1);
    assert_int_equal(pkt.type, TERN_MQTT_PUBACK);
    assert_int_equal(pkt.u.ack.packet_id, 8);
    assert_int_equal(pkt.u.ack.reason, TERN_MQTT_RC_QUOTA_EXCEEDED);
    test_client_close(&c);
}

static void test_qos0_and_other_topics(void **state)
{
    fixture *f = *state;
    test_client c;
    assert_int_equal(test_client_open(&c, f->loop, f->port, TERN_MQTT_V5), 0);
    assert_int_equal(test_client_connect(&c, "d2", true), 0);
    assert_int_equal(test_client_publish(&c, "fleet/d2/m/speed", "61.5", 0, 0), 0);
    run_until_submitted(f, 1);
    assert_null(f->sink_state.tokens[0]); /* QoS 0: best effort, nothing to complete */

    /* Not an ingest topic: acknowledged at once, never offered to the sink. */
    assert_int_equal(test_client_publish(&c, "fleet/d2/status", "ok", 1, 3), 0);
    tern_mqtt_packet pkt;
    assert_int_equal(test_client_recv(&c, &pkt, 200), 1);
    assert_int_equal(pkt.type, TERN_MQTT_PUBACK);
    assert_int_equal(pkt.u.ack.packet_id, 3);
    assert_int_equal(f->sink_state.n, 1);
    test_client_close(&c);
}

static void test_v311_refusal_closes_and_nothing_is_acked(void **state)
{
    fixture *f = *state;
    test_client c;
    assert_int_equal(test_client_open(&c, f->loop, f->port, TERN_MQTT_V311), 0);
    assert_int_equal(test_client_connect(&c, "d3", true), 0);
    assert_int_equal(test_client_publish(&c, "fleet/d3/telemetry", "{}", 1, 9), 0);
    run_until_submitted(f, 1);
    tern_broker_ingest_done(f->broker, f->sink_state.tokens[0], TERN_EIO);
    tern_mqtt_packet pkt;
    assert_int_equal(test_client_recv(&c, &pkt, 200), -1); /* closed, no PUBACK */
    test_client_close(&c);
}

static void test_sink_refusing_at_once(void **state)
{
    fixture *f = *state;
    f->sink_state.refuse_with = TERN_EQUOTA;
    test_client c;
    assert_int_equal(test_client_open(&c, f->loop, f->port, TERN_MQTT_V5), 0);
    assert_int_equal(test_client_connect(&c, "d4", true), 0);
    assert_int_equal(test_client_publish(&c, "fleet/d4/event", "{}", 1, 11), 0);
    tern_mqtt_packet pkt;
    assert_int_equal(test_client_recv(&c, &pkt, 200), 1);
    assert_int_equal(pkt.type, TERN_MQTT_PUBACK);
    assert_int_equal(pkt.u.ack.reason, TERN_MQTT_RC_QUOTA_EXCEEDED);
    test_client_close(&c);
}

static void test_client_gone_before_done(void **state)
{
    fixture *f = *state;
    test_client c;
    assert_int_equal(test_client_open(&c, f->loop, f->port, TERN_MQTT_V5), 0);
    assert_int_equal(test_client_connect(&c, "d5", true), 0);
    assert_int_equal(test_client_publish(&c, "fleet/d5/telemetry", "{}", 1, 12), 0);
    run_until_submitted(f, 1);
    test_client_close(&c);
    for (int i = 0; i < 20; i++)
        tern_loop_run_once(f->loop, 5); /* the broker notices the close and frees what it can */
    tern_broker_ingest_done(f->broker, f->sink_state.tokens[0], 0);
    tern_loop_run_once(f->loop, 0);
}

typedef struct done_post {
    tern_broker *broker;
    void *token;
} done_post;

static void post_done(tern_loop *loop, void *arg)
{
    (void)loop;
    done_post *d = arg;
    tern_broker_ingest_done(d->broker, d->token, 0);
}

/*
 * The completion lands in the same loop pass that notices the client is gone: the connection is
 * closed (its free task queued) and then released by the completion before the tasks run. The
 * queued task must not run on the freed connection (ASan watches; a real pipeline run found it).
 */
static void test_done_in_the_pass_that_closes(void **state)
{
    fixture *f = *state;
    test_client c;
    assert_int_equal(test_client_open(&c, f->loop, f->port, TERN_MQTT_V5), 0);
    assert_int_equal(test_client_connect(&c, "d6", true), 0);
    assert_int_equal(test_client_publish(&c, "fleet/d6/telemetry", "{}", 1, 13), 0);
    run_until_submitted(f, 1);
    test_client_close(&c);
    struct timespec ts = { 0, 20 * 1000 * 1000 };
    nanosleep(&ts, NULL); /* the EOF is ready before the post's wake-up: epoll reports it first */
    done_post d = { f->broker, f->sink_state.tokens[0] };
    assert_int_equal(tern_loop_post(f->loop, post_done, &d), 0);
    for (int i = 0; i < 5; i++)
        tern_loop_run_once(f->loop, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_qos1_acked_only_after_sink_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_qos0_and_other_topics, setup, teardown),
        cmocka_unit_test_setup_teardown(
            test_v311_refusal_closes_and_nothing_is_acked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_refusing_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_gone_before_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_done_in_the_pass_that_closes, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

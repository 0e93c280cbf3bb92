/*
 * broker_test_client.h: a minimal MQTT client for broker unit tests, driven from the same
 * thread as the broker's loop. Sending is a plain blocking send (small packets on loopback);
 * receiving runs loop iterations until a whole packet has arrived on the client's socket.
 * Header-only (static functions) so each test file stays self-contained.
 */
#ifndef TERN_TEST_BROKER_CLIENT_H
#define TERN_TEST_BROKER_CLIENT_H

#include "base/buf.h"
#include "loop/loop.h"
#include "mqtt/mqtt.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

typedef struct test_client {
    tern_loop *loop;
    int fd;
    uint8_t version;
    tern_buf in;
    tern_buf last; /* bytes of the last packet returned by test_client_recv */
    bool closed;
} test_client;

static int test_client_open(test_client *tc, tern_loop *loop, int port, uint8_t version)
{
    memset(tc, 0, sizeof *tc);
    tc->loop = loop;
    tc->version = version;
    tc->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (tc->fd < 0)
        return -1;
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(tc->fd, (struct sockaddr *)&sa, sizeof sa) != 0)
        return -1;
    fcntl(tc->fd, F_SETFL, fcntl(tc->fd, F_GETFL) | O_NONBLOCK);
    return 0;
}

static void test_client_close(test_client *tc)
{
    if (tc->fd >= 0)
        close(tc->fd);
    tc->fd = -1;
    tern_buf_free(&tc->in);
    tern_buf_free(&tc->last);
}

static int test_client_send(test_client *tc, const tern_mqtt_packet *pkt)
{
    tern_buf out = TERN_BUF_INIT;
    int rc = tern_mqtt_encode(&out, tc->version, pkt);
    if (rc == 0) {
        size_t off = 0;
        while (off < out.len) {
            ssize_t n = send(tc->fd, out.data + off, out.len - off, MSG_NOSIGNAL);
            if (n > 0)
                off += (size_t)n;
            else if (n < 0 && errno == EAGAIN)
                tern_loop_run_once(tc->loop, 0);
            else {
                rc = -1;
                break;
            }
        }
    }
    tern_buf_free(&out);
    return rc;
}

/*
 * test_client_recv runs up to max_iterations loop iterations (each waiting at most 10 ms)
 * until a whole packet arrived; returns 1 with *pkt decoded (views into tc->last), 0 if none
 * came, -1 if the broker closed the connection.
 */
static int test_client_recv(test_client *tc, tern_mqtt_packet *pkt, int max_iterations)
{
    for (int i = 0; i <= max_iterations; i++) {
        uint8_t chunk[4096];
        ssize_t n;
        while ((n = recv(tc->fd, chunk, sizeof chunk, 0)) > 0)
            tern_buf_append(&tc->in, chunk, (size_t)n);
        if (n == 0)
            tc->closed = true;
        size_t plen = 0;
        if (tc->in.len && tern_mqtt_frame(tc->in.data, tc->in.len, 0, &plen) == 0) {
            tern_buf_reset(&tc->last);
            tern_buf_append(&tc->last, tc->in.data, plen);
            tern_buf_consume(&tc->in, plen);
            size_t used = 0;
            if (tern_mqtt_decode(tc->last.data, tc->last.len, tc->version, pkt, &used, NULL) != 0)
                return -1;
            return 1;
        }
        if (tc->closed)
            return -1;
        if (i < max_iterations)
            tern_loop_run_once(tc->loop, 10);
    }
    return 0;
}

static int test_client_connect(test_client *tc, const char *client_id, bool clean)
{
    tern_mqtt_packet c = { .type = TERN_MQTT_CONNECT };
    c.u.connect.version = tc->version;
    c.u.connect.clean_start = clean;
    c.u.connect.keep_alive_s = 60;
    c.u.connect.client_id.p = (const uint8_t *)client_id;
    c.u.connect.client_id.len = (uint16_t)strlen(client_id);
    if (test_client_send(tc, &c) != 0)
        return -1;
    tern_mqtt_packet ack;
    if (test_client_recv(tc, &ack, 200) != 1 || ack.type != TERN_MQTT_CONNACK)
        return -1;
    return ack.u.connack.reason;
}

static int test_client_publish(
    test_client *tc, const char *topic, const char *payload, uint8_t qos, uint16_t packet_id)
{
    tern_mqtt_packet p = { .type = TERN_MQTT_PUBLISH };
    p.u.publish.qos = qos;
    p.u.publish.packet_id = packet_id;
    p.u.publish.topic.p = (const uint8_t *)topic;
    p.u.publish.topic.len = (uint16_t)strlen(topic);
    p.u.publish.payload = (const uint8_t *)payload;
    p.u.publish.payload_len = strlen(payload);
    return test_client_send(tc, &p);
}

#endif

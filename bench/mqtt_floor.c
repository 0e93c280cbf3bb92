/*
 * mqtt_floor: the cheapest possible "broker" for mqtt_load's fan-in scenario, a control for
 * broker_bench.py. It is not a broker, and must never be used as one.
 *
 * Why it exists: on loopback, every broker pays the kernel for each message it is sent (the
 * receive system call, the TCP acknowledgement that Linux sends from inside it, and on loopback
 * the publisher's side of that acknowledgement too) and for each batch it forwards. No broker
 * can cost less per message than a program that pays only that. mqtt_floor is that program, so
 * its messages per CPU-second, measured in the same run, is the ceiling for any broker on this
 * machine under this load, and it tells how much of a broker's cost is its own work.
 *
 * What it does, and nothing more: one thread, one epoll set, level-triggered. It answers CONNECT
 * with a success CONNACK and SUBSCRIBE with a SUBACK granting what was asked, and marks that
 * client a consumer. Each PUBLISH is forwarded byte for byte to the next consumer, round robin
 * (the fan-in's shared subscription); at QoS 1 the publisher gets its PUBACK at once. PINGREQ is
 * answered. Output is sent once per client per epoll iteration, as a broker that batches would.
 * No topic matching, no validation beyond framing, no sessions, no flow control: what a client
 * sends that it does not expect closes that client.
 *
 * Usage: mqtt_floor --listen PORT   (binds 127.0.0.1; runs until SIGTERM or SIGINT)
 */
#include "base/error.h"
#include "mqtt/mqtt.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define FLOOR_MAX_CLIENTS 65536
#define FLOOR_READ_CHUNK 65536

typedef struct {
    uint8_t *data;
    size_t len, cap;
} floor_buf;

typedef struct {
    int fd;
    bool v5;       /* protocol level 5: CONNACK and SUBACK carry a property length */
    bool consumer; /* subscribed: PUBLISHes are forwarded to it */
    bool dirty;    /* has output queued this iteration */
    floor_buf in, out;
} floor_client;

static floor_client *clients[FLOOR_MAX_CLIENTS]; /* by fd */
static int consumers[FLOOR_MAX_CLIENTS];
static size_t n_consumers, next_consumer;
static int dirty[FLOOR_MAX_CLIENTS];
static size_t n_dirty;
static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

static void buf_append(floor_buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) {
            fprintf(stderr, "mqtt_floor: out of memory\n");
            exit(1);
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void queue_out(floor_client *c, const void *p, size_t n)
{
    buf_append(&c->out, p, n);
    if (!c->dirty) {
        c->dirty = true;
        dirty[n_dirty++] = c->fd;
    }
}

static void client_close(floor_client *c)
{
    if (c->consumer) {
        for (size_t i = 0; i < n_consumers; i++)
            if (consumers[i] == c->fd) {
                consumers[i] = consumers[--n_consumers];
                break;
            }
    }
    for (size_t i = 0; i < n_dirty; i++)
        if (dirty[i] == c->fd)
            dirty[i] = -1;
    clients[c->fd] = NULL;
    close(c->fd);
    free(c->in.data);
    free(c->out.data);
    free(c);
}

/* Handles one whole packet p[0..n) (hdr bytes of fixed header); false: close the client. */
static bool on_packet(floor_client *c, const uint8_t *p, size_t n, size_t hdr)
{
    const uint8_t *body = p + hdr;
    size_t blen = n - hdr;
    switch (p[0] >> 4) {
    case 1: { /* CONNECT: protocol name (2 + 4 bytes), then the level */
        if (blen < 7)
            return false;
        c->v5 = body[6] == 5;
        static const uint8_t ack5[] = { 0x20, 3, 0, 0, 0 }, ack3[] = { 0x20, 2, 0, 0 };
        if (c->v5)
            queue_out(c, ack5, sizeof ack5);
        else
            queue_out(c, ack3, sizeof ack3);
        return true;
    }
    case 3: { /* PUBLISH: forward, and PUBACK at QoS 1 */
        unsigned qos = (p[0] >> 1) & 3;
        if (qos > 1 || blen < 2)
            return false;
        if (qos == 1) {
            size_t tlen = ((size_t)body[0] << 8) | body[1];
            if (blen < 2 + tlen + 2)
                return false;
            uint8_t ack[] = { 0x40, 2, body[2 + tlen], body[2 + tlen + 1] };
            queue_out(c, ack, sizeof ack);
        }
        if (n_consumers > 0) {
            floor_client *to = clients[consumers[next_consumer++ % n_consumers]];
            queue_out(to, p, n);
        }
        return true;
    }
    case 4: /* PUBACK from a consumer: nothing is tracked */
        return true;
    case 8: { /* SUBSCRIBE: packet id, (v5) properties, one filter + options byte */
        if (blen < 2)
            return false;
        size_t off = 2;
        if (c->v5) {
            uint32_t plen;
            size_t used;
            if (tern_mqtt_vbi_decode(body + off, blen - off, &plen, &used) != 0)
                return false;
            off += used + plen;
        }
        if (off + 2 > blen)
            return false;
        size_t flen = ((size_t)body[off] << 8) | body[off + 1];
        if (off + 2 + flen + 1 > blen)
            return false;
        uint8_t granted = body[off + 2 + flen] & 3;
        uint8_t ack5[] = { 0x90, 4, body[0], body[1], 0, granted };
        uint8_t ack3[] = { 0x90, 3, body[0], body[1], granted };
        if (c->v5)
            queue_out(c, ack5, sizeof ack5);
        else
            queue_out(c, ack3, sizeof ack3);
        if (!c->consumer) {
            c->consumer = true;
            consumers[n_consumers++] = c->fd;
        }
        return true;
    }
    case 12: { /* PINGREQ */
        static const uint8_t resp[] = { 0xd0, 0 };
        queue_out(c, resp, sizeof resp);
        return true;
    }
    default: /* DISCONNECT, and anything else */
        return false;
    }
}

/* Handles the whole packets in p[0..n); returns bytes used, or SIZE_MAX to close. */
static size_t on_bytes(floor_client *c, const uint8_t *p, size_t n)
{
    size_t off = 0;
    while (off < n) {
        size_t plen;
        int rc = tern_mqtt_frame(p + off, n - off, 0, &plen);
        if (rc == TERN_EPARTIAL)
            break;
        uint32_t body;
        size_t vbi;
        if (rc != 0 || tern_mqtt_vbi_decode(p + off + 1, plen - 1, &body, &vbi) != 0)
            return SIZE_MAX;
        if (!on_packet(c, p + off, plen, 1 + vbi))
            return SIZE_MAX;
        off += plen;
    }
    return off;
}

static void on_readable(floor_client *c)
{
    static uint8_t chunk[FLOOR_READ_CHUNK];
    ssize_t r = recv(c->fd, chunk, sizeof chunk, 0);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        client_close(c);
        return;
    }
    size_t used;
    if (c->in.len == 0) {
        used = on_bytes(c, chunk, (size_t)r);
        if (used != SIZE_MAX && used < (size_t)r)
            buf_append(&c->in, chunk + used, (size_t)r - used);
    } else {
        buf_append(&c->in, chunk, (size_t)r);
        used = on_bytes(c, c->in.data, c->in.len);
        if (used != SIZE_MAX) {
            memmove(c->in.data, c->in.data + used, c->in.len - used);
            c->in.len -= used;
        }
    }
    if (used == SIZE_MAX)
        client_close(c);
}

/* Sends every queued output once; a client whose socket did not take it all stays on the list
 * for the next iteration (a consumer that falls behind just accumulates: this is a control). */
static void flush_dirty(void)
{
    size_t keep = 0;
    for (size_t i = 0; i < n_dirty; i++) {
        if (dirty[i] < 0 || !clients[dirty[i]])
            continue;
        floor_client *c = clients[dirty[i]];
        ssize_t w = send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR) {
            client_close(c);
            continue;
        }
        size_t sent = w > 0 ? (size_t)w : 0;
        memmove(c->out.data, c->out.data + sent, c->out.len - sent);
        c->out.len -= sent;
        if (c->out.len > 0)
            dirty[keep++] = c->fd;
        else
            c->dirty = false;
    }
    n_dirty = keep;
}

int main(int argc, char **argv)
{
    if (argc != 3 || strcmp(argv[1], "--listen") != 0) {
        fprintf(stderr, "usage: mqtt_floor --listen PORT\n");
        return 2;
    }
    int port = atoi(argv[2]);
    if (port <= 0 || port > 65535) {
        fprintf(stderr, "mqtt_floor: bad port %s\n", argv[2]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);

    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = { .sin_family = AF_INET,
        .sin_port = htons((uint16_t)port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    if (bind(ls, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(ls, 4096) != 0) {
        perror("mqtt_floor: bind/listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = { .events = EPOLLIN, .data.fd = ls };
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    struct epoll_event evs[256];
    while (!stopping) {
        int n = epoll_wait(ep, evs, 256, n_dirty ? 1 : 1000);
        if (n < 0 && errno != EINTR) {
            perror("mqtt_floor: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int cfd;
                while ((cfd = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    if (cfd >= FLOOR_MAX_CLIENTS) {
                        close(cfd);
                        continue;
                    }
                    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    floor_client *c = calloc(1, sizeof *c);
                    if (!c) {
                        close(cfd);
                        continue;
                    }
                    c->fd = cfd;
                    clients[cfd] = c;
                    struct epoll_event ev = { .events = EPOLLIN, .data.fd = cfd };
                    epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev);
                }
                continue;
            }
            if (clients[fd])
                on_readable(clients[fd]);
        }
        flush_dirty();
    }
    return 0;
}

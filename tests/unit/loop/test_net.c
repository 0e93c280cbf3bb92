/*
 * test_net.c: the socket helpers: "HOST:PORT" parsing (good and bad forms), resolving, listening
 * on 127.0.0.1:0 and reading the port back, connecting and accepting through the loop,
 * TCP_NODELAY, SO_REUSEPORT sharing a port, IPv6 when the machine has it, connection refused,
 * and address formatting.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "loop/loop.h"
#include "loop/net.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

static void test_parse_good_forms(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *host;
        uint16_t port;
    } cases[] = {
        { "127.0.0.1:1883", "127.0.0.1", 1883 },
        { "[::1]:8080", "::1", 8080 },
        { "[fe80::1%eth0]:1", "fe80::1%eth0", 1 },
        { ":1883", "", 1883 },
        { "localhost:0", "localhost", 0 },
        { "broker.example.com:65535", "broker.example.com", 65535 },
        { "h:00080", "h", 80 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char host[64];
        uint16_t port = 1;
        assert_int_equal(tern_net_parse_hostport(cases[i].in, host, sizeof host, &port), 0);
        assert_string_equal(host, cases[i].host);
        assert_int_equal(port, cases[i].port);
    }
}

static void test_parse_bad_forms(void **state)
{
    (void)state;
    static const char *bad[] = {
        "nohost",
        "1.2.3.4:",
        "1.2.3.4:65536",
        "1.2.3.4:12a",
        "::1:80",
        "[::1]80",
        "[::1",
        "[]:80",
        "a b:1",
        "h:-1",
        "h:+1",
        "h:123456",
        "",
        ":",
        "[::1]:",
        "h:80\n",
        "[[::1]]:80",
        "]:80",
        "h]:80",
        "[::1]:80:90",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char host[64] = "unchanged";
        uint16_t port = 7;
        int rc = tern_net_parse_hostport(bad[i], host, sizeof host, &port);
        if (rc != TERN_EINVAL)
            fail_msg("\"%s\" gave %d, want TERN_EINVAL", bad[i], rc);
        assert_string_equal(host, "unchanged");
        assert_int_equal(port, 7);
    }
    char host[4];
    uint16_t port;
    assert_int_equal(tern_net_parse_hostport(NULL, host, sizeof host, &port), TERN_EINVAL);
    /* The host must fit the caller's buffer. */
    assert_int_equal(tern_net_parse_hostport("abcd:1", host, sizeof host, &port), TERN_EINVAL);
    assert_int_equal(tern_net_parse_hostport("abc:1", host, sizeof host, &port), 0);
    char big[TERN_NET_HOST_MAX + 16];
    char longname[TERN_NET_HOST_MAX + 8];
    memset(longname, 'a', TERN_NET_HOST_MAX + 1);
    longname[TERN_NET_HOST_MAX + 1] = '\0';
    char in[TERN_NET_HOST_MAX + 16];
    snprintf(in, sizeof in, "%s:1", longname);
    assert_int_equal(tern_net_parse_hostport(in, big, sizeof big, &port), TERN_EINVAL);
}

static void test_resolve(void **state)
{
    (void)state;
    struct sockaddr_storage ss;
    socklen_t len;
    char text[64];
    assert_int_equal(tern_net_resolve("127.0.0.1:1883", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET);
    assert_int_equal(len, sizeof(struct sockaddr_in));
    assert_int_equal(tern_net_format_addr((struct sockaddr *)&ss, text, sizeof text), 0);
    assert_string_equal(text, "127.0.0.1:1883");
    assert_int_equal(tern_net_resolve(":80", &ss, &len), 0);
    assert_int_equal(tern_net_format_addr((struct sockaddr *)&ss, text, sizeof text), 0);
    assert_string_equal(text, "0.0.0.0:80");
    assert_int_equal(tern_net_resolve("[::1]:9", &ss, &len), 0);
    assert_int_equal(ss.ss_family, AF_INET6);
    assert_int_equal(tern_net_format_addr((struct sockaddr *)&ss, text, sizeof text), 0);
    assert_string_equal(text, "[::1]:9");
    /* Too small a buffer. */
    assert_int_equal(tern_net_format_addr((struct sockaddr *)&ss, text, 5), TERN_ERANGE);
    assert_string_equal(text, "");
    /* Brackets hold a numeric IPv6 address only; bad strings are TERN_EINVAL. */
    assert_int_equal(tern_net_resolve("[localhost]:9", &ss, &len), TERN_ENOTFOUND);
    assert_int_equal(tern_net_resolve("[127.0.0.1]:9", &ss, &len), TERN_ENOTFOUND);
    assert_int_equal(tern_net_resolve("::1:9", &ss, &len), TERN_EINVAL);
}

/* Accept through the loop: the listener's READ fires when a connection waits. */
typedef struct server {
    tern_loop_io io;
    int accepted_fd;
    int n_accepted;
    int last_rc;
} server;

static void accept_cb(tern_loop_io *io, unsigned events)
{
    server *s = io->data;
    assert_true(events & TERN_LOOP_READ);
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    int fd;
    int rc;
    while ((rc = tern_net_accept(io->fd, &fd, &peer, &peer_len)) == 0) {
        assert_int_equal(peer.ss_family, AF_INET);
        s->accepted_fd = fd;
        s->n_accepted++;
        peer_len = sizeof peer;
    }
    s->last_rc = rc;
}

typedef struct client {
    tern_loop_io io;
    int n_writable;
    int connect_rc;
} client;

static void connect_cb(tern_loop_io *io, unsigned events)
{
    client *c = io->data;
    if (events & TERN_LOOP_WRITE) {
        c->n_writable++;
        c->connect_rc = tern_net_connect_result(io->fd);
        tern_loop_io_stop(io);
    }
}

static void test_listen_connect_accept(void **state)
{
    (void)state;
    tern_loop *loop;
    assert_int_equal(tern_loop_new(&loop), 0);
    int lfd = -1;
    assert_int_equal(tern_net_listen("127.0.0.1:0", NULL, &lfd), 0);
    uint16_t port = 0;
    assert_int_equal(tern_net_local_port(lfd, &port), 0);
    assert_true(port != 0);
    /* Nothing waiting yet. */
    int fd;
    assert_int_equal(tern_net_accept(lfd, &fd, NULL, NULL), TERN_EAGAIN);

    server s = { .accepted_fd = -1 };
    tern_loop_io_init(loop, &s.io, lfd, accept_cb, &s);
    assert_int_equal(tern_loop_io_start(&s.io, TERN_LOOP_READ), 0);

    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    int cfd = -1;
    assert_int_equal(tern_net_connect(addr, &cfd), 0);
    client c = { .connect_rc = 1 };
    tern_loop_io_init(loop, &c.io, cfd, connect_cb, &c);
    assert_int_equal(tern_loop_io_start(&c.io, TERN_LOOP_WRITE), 0);
    for (int i = 0; i < 100 && (s.n_accepted == 0 || c.n_writable == 0); i++)
        assert_true(tern_loop_run_once(loop, 1000) >= 0);
    assert_int_equal(s.n_accepted, 1);
    assert_int_equal(s.last_rc, TERN_EAGAIN);
    assert_int_equal(c.n_writable, 1);
    assert_int_equal(c.connect_rc, 0);

    /* The accepted socket is non-blocking; TCP_NODELAY reads back. */
    assert_int_equal(tern_net_set_nodelay(s.accepted_fd, true), 0);
    int on = 0;
    socklen_t on_len = sizeof on;
    assert_int_equal(getsockopt(s.accepted_fd, IPPROTO_TCP, TCP_NODELAY, &on, &on_len), 0);
    assert_int_equal(on, 1);
    char buf[8];
    assert_int_equal(read(s.accepted_fd, buf, sizeof buf), -1);
    assert_int_equal(errno, EAGAIN);
    assert_int_equal(write(cfd, "ping", 4), 4);
    ssize_t n = -1;
    for (int i = 0; i < 1000 && n < 0; i++)
        n = read(s.accepted_fd, buf, sizeof buf);
    assert_int_equal(n, 4);
    assert_memory_equal(buf, "ping", 4);

    /* A second listener on the same port without SO_REUSEPORT is refused. */
    int lfd2;
    assert_int_equal(tern_net_listen(addr, NULL, &lfd2), -EADDRINUSE);

    tern_loop_io_stop(&s.io);
    close(s.accepted_fd);
    close(cfd);
    close(lfd);
    tern_loop_free(loop);
}

static void test_reuseport_shares_a_port(void **state)
{
    (void)state;
    tern_net_listen_opts opts = { .backlog = 16, .reuseport = true };
    int a, b;
    assert_int_equal(tern_net_listen("127.0.0.1:0", &opts, &a), 0);
    uint16_t port;
    assert_int_equal(tern_net_local_port(a, &port), 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    assert_int_equal(tern_net_listen(addr, &opts, &b), 0);
    uint16_t port_b;
    assert_int_equal(tern_net_local_port(b, &port_b), 0);
    assert_int_equal(port_b, port);
    close(a);
    close(b);
}

static void test_ipv6_loopback(void **state)
{
    (void)state;
    int lfd;
    int rc = tern_net_listen("[::1]:0", NULL, &lfd);
    if (rc == -EADDRNOTAVAIL || rc == -EAFNOSUPPORT) {
        skip(); /* no IPv6 on this machine */
    }
    assert_int_equal(rc, 0);
    uint16_t port;
    assert_int_equal(tern_net_local_port(lfd, &port), 0);
    assert_true(port != 0);
    char addr[64];
    snprintf(addr, sizeof addr, "[::1]:%u", port);
    int cfd;
    assert_int_equal(tern_net_connect(addr, &cfd), 0);
    int afd = -1;
    struct sockaddr_storage peer;
    socklen_t peer_len = sizeof peer;
    for (int i = 0; i < 100000 && afd < 0; i++) {
        rc = tern_net_accept(lfd, &afd, &peer, &peer_len);
        if (rc != 0)
            assert_int_equal(rc, TERN_EAGAIN);
    }
    assert_true(afd >= 0);
    assert_int_equal(peer.ss_family, AF_INET6);
    char text[64];
    assert_int_equal(tern_net_format_addr((struct sockaddr *)&peer, text, sizeof text), 0);
    assert_true(strncmp(text, "[::1]:", 6) == 0);
    close(afd);
    close(cfd);
    close(lfd);
}

static void test_connect_refused(void **state)
{
    (void)state;
    /* Find a port nobody listens on: bind one, then close it. */
    int lfd;
    assert_int_equal(tern_net_listen("127.0.0.1:0", NULL, &lfd), 0);
    uint16_t port;
    assert_int_equal(tern_net_local_port(lfd, &port), 0);
    close(lfd);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", port);
    int cfd = -1;
    int rc = tern_net_connect(addr, &cfd);
    if (rc == 0) {
        /* In progress: the refusal shows up as the socket's error once it is writable. */
        tern_loop *loop;
        assert_int_equal(tern_loop_new(&loop), 0);
        client c = { .connect_rc = 1 };
        tern_loop_io_init(loop, &c.io, cfd, connect_cb, &c);
        assert_int_equal(tern_loop_io_start(&c.io, TERN_LOOP_WRITE), 0);
        for (int i = 0; i < 100 && c.n_writable == 0; i++)
            tern_loop_run_once(loop, 1000);
        rc = c.connect_rc;
        close(cfd);
        tern_loop_free(loop);
    }
    assert_int_equal(rc, -ECONNREFUSED);
    assert_int_equal(tern_net_listen("127.0.0.1:x", NULL, &lfd), TERN_EINVAL);
}

/* The kernel's descriptor table size, from /proc/self/status ("FDSize:"). */
static long fd_table_size(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    assert_non_null(f);
    char line[256];
    long size = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "FDSize: %ld", &size) == 1)
            break;
    fclose(f);
    return size;
}

/* The table grows to the reservation (clamped to the open files limit), and no descriptor is
 * left behind: the next one opened is a low number again. */
static void test_reserve_descriptors(void **state)
{
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    unsigned want = 4000;
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
        want = (unsigned)rl.rlim_cur;
    unsigned got = 0;
    assert_int_equal(tern_net_reserve_descriptors(want, &got), 0);
    assert_int_equal(got, want);
    assert_true(fd_table_size() >= (long)want);
    errno = 0;
    assert_int_equal(fcntl((int)want - 1, F_GETFD), -1);
    assert_int_equal(errno, EBADF);
    int fd = dup(STDERR_FILENO);
    assert_true(fd >= 0 && fd < 64);
    close(fd);

    /* Asking for more than the limit reserves the limit. */
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 1000000) {
        assert_int_equal(tern_net_reserve_descriptors(1000000, &got), 0);
        assert_int_equal(got, (unsigned)rl.rlim_cur);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_good_forms),
        cmocka_unit_test(test_parse_bad_forms),
        cmocka_unit_test(test_resolve),
        cmocka_unit_test(test_listen_connect_accept),
        cmocka_unit_test(test_reuseport_shares_a_port),
        cmocka_unit_test(test_ipv6_loopback),
        cmocka_unit_test(test_connect_refused),
        cmocka_unit_test(test_reserve_descriptors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

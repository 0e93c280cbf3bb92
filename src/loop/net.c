/*
 * net.c: TCP socket helpers for loop users (see net.h). Stateless; every descriptor created
 * here is non-blocking and close-on-exec.
 */
#include "loop/net.h"

#include "base/error.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* parse splits s; *bracketed tells whether the host was written as "[...]". */
static int parse(const char *s, char *host, size_t host_cap, uint16_t *port, bool *bracketed)
{
    if (!s || !host || !port)
        return TERN_EINVAL;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return TERN_EINVAL;
    const char *h, *colon;
    size_t h_len;
    bool br = false;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');
        if (!close || close == s + 1 || close[1] != ':')
            return TERN_EINVAL;
        h = s + 1;
        h_len = (size_t)(close - h);
        if (memchr(h, '[', h_len))
            return TERN_EINVAL;
        colon = close + 1;
        br = true;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return TERN_EINVAL;
        h = s;
        h_len = (size_t)(colon - s);
        if (memchr(h, ':', h_len) || memchr(h, '[', h_len) || memchr(h, ']', h_len))
            return TERN_EINVAL; /* a bare IPv6 address, or stray brackets */
    }
    const char *digits = colon + 1;
    size_t n_digits = strlen(digits);
    if (n_digits == 0 || n_digits > 5)
        return TERN_EINVAL;
    unsigned long value = 0;
    for (size_t i = 0; i < n_digits; i++) {
        if (digits[i] < '0' || digits[i] > '9')
            return TERN_EINVAL;
        value = value * 10 + (unsigned long)(digits[i] - '0');
    }
    if (value > 65535 || h_len > TERN_NET_HOST_MAX || h_len >= host_cap)
        return TERN_EINVAL;
    memcpy(host, h, h_len);
    host[h_len] = '\0';
    *port = (uint16_t)value;
    if (bracketed)
        *bracketed = br;
    return 0;
}

int tern_net_parse_hostport(const char *s, char *host, size_t host_cap, uint16_t *port)
{
    return parse(s, host, host_cap, port, NULL);
}

static int map_gai_error(int rc)
{
    switch (rc) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return TERN_ENOTFOUND;
    case EAI_AGAIN:
        return TERN_EAGAIN;
    case EAI_MEMORY:
        return TERN_ENOMEM;
    case EAI_SYSTEM:
        return errno ? -errno : TERN_EIO;
    default:
        return TERN_EINVAL;
    }
}

int tern_net_resolve(const char *hostport, struct sockaddr_storage *out, socklen_t *out_len)
{
    char host[TERN_NET_HOST_MAX + 1];
    uint16_t port;
    bool bracketed;
    int rc = parse(hostport, host, sizeof host, &port, &bracketed);
    if (rc < 0)
        return rc;
    if (host[0] == '\0') {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(port) };
        sin.sin_addr.s_addr = htonl(INADDR_ANY);
        memset(out, 0, sizeof *out);
        memcpy(out, &sin, sizeof sin);
        *out_len = sizeof sin;
        return 0;
    }
    struct addrinfo hints = { .ai_family = bracketed ? AF_INET6 : AF_UNSPEC,
        .ai_socktype = SOCK_STREAM,
        .ai_flags = bracketed ? AI_NUMERICHOST : 0 };
    struct addrinfo *res = NULL;
    rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0)
        return map_gai_error(rc);
    if (!res || res->ai_addrlen > sizeof *out) {
        freeaddrinfo(res);
        return TERN_ENOTFOUND;
    }
    memset(out, 0, sizeof *out);
    memcpy(out, res->ai_addr, res->ai_addrlen);
    *out_len = res->ai_addrlen;
    freeaddrinfo(res);
    if (out->ss_family == AF_INET)
        ((struct sockaddr_in *)(void *)out)->sin_port = htons(port);
    else if (out->ss_family == AF_INET6)
        ((struct sockaddr_in6 *)(void *)out)->sin6_port = htons(port);
    else
        return TERN_ENOTFOUND;
    return 0;
}

static int set_int_opt(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value) < 0 ? -errno : 0;
}

int tern_net_listen(const char *hostport, const tern_net_listen_opts *opts, int *out_fd)
{
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int rc = tern_net_resolve(hostport, &addr, &addr_len);
    if (rc < 0)
        return rc;
    int backlog = opts && opts->backlog > 0 ? opts->backlog : 4096;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEADDR, 1);
    if (rc < 0)
        goto fail;
    if (opts && opts->reuseport) {
        rc = set_int_opt(fd, SOL_SOCKET, SO_REUSEPORT, 1);
        if (rc < 0)
            goto fail;
    }
    if (bind(fd, (struct sockaddr *)&addr, addr_len) < 0 || listen(fd, backlog) < 0) {
        rc = -errno;
        goto fail;
    }
    *out_fd = fd;
    return 0;
fail:
    close(fd);
    return rc;
}

int tern_net_accept(int listen_fd, int *out_fd, struct sockaddr_storage *peer, socklen_t *peer_len)
{
    for (;;) {
        socklen_t len = peer_len ? *peer_len : 0;
        int fd = accept4(
            listen_fd, (struct sockaddr *)peer, peer ? &len : NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            if (peer_len)
                *peer_len = len;
            *out_fd = fd;
            return 0;
        }
        switch (errno) {
        case EAGAIN:
            return TERN_EAGAIN;
        /* The connection died before we took it (accept4(2) passes these on): take the next. */
        case EINTR:
        case ECONNABORTED:
        case EPROTO:
        case ENETDOWN:
        case ENOPROTOOPT:
        case EHOSTDOWN:
        case ENONET:
        case EHOSTUNREACH:
        case EOPNOTSUPP:
        case ENETUNREACH:
            continue;
        default:
            return -errno;
        }
    }
}

int tern_net_connect(const char *hostport, int *out_fd)
{
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int rc = tern_net_resolve(hostport, &addr, &addr_len);
    if (rc < 0)
        return rc;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&addr, addr_len) < 0 && errno != EINPROGRESS) {
        rc = -errno;
        close(fd);
        return rc;
    }
    *out_fd = fd;
    return 0;
}

int tern_net_connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

int tern_net_set_nodelay(int fd, bool on)
{
    return set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, on ? 1 : 0);
}

int tern_net_reserve_descriptors(unsigned want, unsigned *reserved)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -errno;
    rlim_t n = want;
    if (rl.rlim_cur != RLIM_INFINITY && n > rl.rlim_cur)
        n = rl.rlim_cur;
    if (n > 3) {
        /* The lowest free descriptor at or above n - 1: the kernel sizes the table to hold it. */
        int fd = fcntl(STDERR_FILENO, F_DUPFD_CLOEXEC, (int)(n - 1));
        if (fd < 0) {
            int fd0 = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (fd0 < 0)
                return -errno;
            fd = fcntl(fd0, F_DUPFD_CLOEXEC, (int)(n - 1));
            int err = errno;
            close(fd0);
            if (fd < 0)
                return -err;
        }
        close(fd);
    }
    *reserved = (unsigned)n;
    return 0;
}

int tern_net_local_port(int fd, uint16_t *port)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        return -errno;
    if (addr.ss_family == AF_INET)
        *port = ntohs(((struct sockaddr_in *)(void *)&addr)->sin_port);
    else if (addr.ss_family == AF_INET6)
        *port = ntohs(((struct sockaddr_in6 *)(void *)&addr)->sin6_port);
    else
        return TERN_EINVAL;
    return 0;
}

int tern_net_format_addr(const struct sockaddr *sa, char *buf, size_t cap)
{
    char ip[INET6_ADDRSTRLEN];
    unsigned port;
    int n;
    if (cap > 0)
        buf[0] = '\0';
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
        port = ntohs(sin->sin_port);
        n = snprintf(buf, cap, "%s:%u", ip, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
        port = ntohs(sin6->sin6_port);
        n = snprintf(buf, cap, "[%s]:%u", ip, port);
    } else {
        return TERN_EINVAL;
    }
    if (n < 0 || (size_t)n >= cap) {
        if (cap > 0)
            buf[0] = '\0';
        return TERN_ERANGE;
    }
    return 0;
}

/*
 * net.h: the TCP socket helpers every loop user needs: parse and resolve "HOST:PORT", listen
 * (IPv4/IPv6, SO_REUSEADDR, optional SO_REUSEPORT so that one loop per core can each accept on
 * the same port), accept non-blocking, connect non-blocking, TCP_NODELAY, the bound port.
 *
 * Every descriptor these functions create is non-blocking and close-on-exec, and belongs to the
 * caller (close it with close()). Errors are TERN_EINVAL for a malformed address string,
 * TERN_ENOTFOUND for a name that does not resolve, TERN_EAGAIN when nothing is ready, and -errno
 * from the system calls. Out-parameters are written only on success.
 *
 * Address strings come from configuration: "HOST:PORT", "[IPV6]:PORT" or ":PORT" (all IPv4
 * addresses). A bare IPv6 address without brackets is rejected as ambiguous. Resolving a name
 * (not a numeric address) may block on DNS: do it at start-up, not in a loop callback.
 * These functions are thread-safe (they keep no state).
 */
#ifndef TERN_LOOP_NET_H
#define TERN_LOOP_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Longest host part tern_net_parse_hostport accepts (a DNS name is at most 253 bytes). */
#define TERN_NET_HOST_MAX 255

/*
 * tern_net_parse_hostport splits s into host (copied NUL-terminated into host[host_cap], without
 * brackets; "" for ":PORT") and port (0..65535; 0 asks the kernel for an ephemeral port).
 * Returns 0 or TERN_EINVAL: NULL, no ':', an unbracketed IPv6 address, unbalanced or empty
 * brackets, an empty or non-decimal port or one above 65535, spaces or control bytes, or a host
 * that does not fit in host_cap (or is longer than TERN_NET_HOST_MAX).
 */
int tern_net_parse_hostport(const char *s, char *host, size_t host_cap, uint16_t *port);

/*
 * tern_net_resolve turns "HOST:PORT" into a socket address (the first one getaddrinfo gives;
 * a bracketed host must be a numeric IPv6 address; an empty host is 0.0.0.0). May block on DNS.
 * Returns 0, TERN_EINVAL, TERN_ENOTFOUND, TERN_EAGAIN (temporary DNS failure) or TERN_ENOMEM.
 */
int tern_net_resolve(const char *hostport, struct sockaddr_storage *out, socklen_t *out_len);

typedef struct tern_net_listen_opts {
    int backlog;    /* <= 0: 4096 (the kernel caps it at net.core.somaxconn) */
    bool reuseport; /* SO_REUSEPORT: several sockets (one per loop) share the port */
} tern_net_listen_opts;

/*
 * tern_net_listen creates a non-blocking listening TCP socket bound to hostport, with
 * SO_REUSEADDR, and SO_REUSEPORT if opts asks (opts may be NULL for defaults). An IPv6 socket
 * keeps the system's IPV6_V6ONLY default. Sets *out_fd only on success. Returns 0, the
 * tern_net_resolve errors, or -errno (e.g. -EADDRINUSE, -EADDRNOTAVAIL, -EACCES).
 */
int tern_net_listen(const char *hostport, const tern_net_listen_opts *opts, int *out_fd);

/*
 * tern_net_accept accepts one connection from listen_fd as a non-blocking close-on-exec socket.
 * peer/peer_len may be NULL; if given, *peer_len must be sizeof *peer. Connections that failed
 * before being accepted (ECONNABORTED and the network errors accept4(2) passes on) are skipped.
 * Returns 0, TERN_EAGAIN when no connection is waiting, or -errno. -EMFILE/-ENFILE/-ENOBUFS/
 * -ENOMEM leave the connection queued: with a level-triggered watcher the listener fires again
 * at once, so stop it (or back off with a timer) until descriptors are freed.
 */
int tern_net_accept(int listen_fd, int *out_fd, struct sockaddr_storage *peer, socklen_t *peer_len);

/*
 * tern_net_connect starts a non-blocking TCP connection to hostport (resolved as by
 * tern_net_resolve, so it may block on DNS for a name). On 0 the connection may still be in
 * progress: watch the fd for TERN_LOOP_WRITE, then call tern_net_connect_result. Returns 0, the
 * tern_net_resolve errors, or -errno (e.g. -ECONNREFUSED for an immediate refusal).
 */
int tern_net_connect(const char *hostport, int *out_fd);

/* tern_net_connect_result returns 0 when fd's connection succeeded, or its -errno (SO_ERROR). */
int tern_net_connect_result(int fd);

/* tern_net_set_nodelay turns TCP_NODELAY on or off. Returns 0 or -errno. */
int tern_net_set_nodelay(int fd, bool on);

/* tern_net_local_port sets *port to the port fd is bound to. Returns 0, TERN_EINVAL (not an
   IPv4/IPv6 socket) or -errno. */
int tern_net_local_port(int fd, uint16_t *port);

/*
 * tern_net_reserve_descriptors grows this process's descriptor table now to hold want
 * descriptors (at most the RLIMIT_NOFILE soft limit), so that later accepts never grow it. In a
 * multi-threaded process each growth of the table waits for an RCU grace period (expand_files
 * calls synchronize_rcu), which stalls the accepting thread for 10-30 ms on a busy machine: six
 * such stalls while 10,000 clients connect. The table is kernel memory (about 8.25 bytes per
 * slot) and never shrinks. Sets *reserved to the size reserved. Returns 0 or -errno.
 */
int tern_net_reserve_descriptors(unsigned want, unsigned *reserved);

/*
 * tern_net_format_addr writes sa as "1.2.3.4:5" or "[::1]:5" into buf[cap] (for log lines).
 * Returns 0, TERN_EINVAL (not IPv4/IPv6) or TERN_ERANGE (buf too small; buf is then "").
 */
int tern_net_format_addr(const struct sockaddr *sa, char *buf, size_t cap);

#endif

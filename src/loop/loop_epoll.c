/*
 * loop_epoll.c: the Linux backend of the event loop: level-triggered epoll for I/O, an eventfd
 * for cross-thread wake-ups and a signalfd for signals. It implements the interface declared
 * in loop_int.h and keeps no watcher state of its own.
 *
 * The background set is a second epoll instance registered in the first one (an epoll fd is
 * readable while its ready list is not empty). However many background descriptors are ready,
 * they take one place in the foreground poll, so they never push foreground events back.
 */
#include "loop/loop_int.h"

#include "base/alloc.h"
#include "base/error.h"

#include <errno.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <unistd.h>

struct tern_loop_be {
    int epfd;
    int bg_epfd; /* -1 until a background watcher is registered */
    struct epoll_event events[TERN_LOOP_BATCH];
};

int tern_loop_be_init(tern_loop *loop)
{
    tern_loop_be *be = tern_malloc(sizeof *be);
    if (!be)
        return TERN_ENOMEM;
    be->bg_epfd = -1;
    be->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (be->epfd < 0) {
        int err = -errno;
        tern_free(be);
        return err;
    }
    loop->be = be;
    return 0;
}

void tern_loop_be_free(tern_loop *loop)
{
    if (!loop->be)
        return;
    if (loop->be->bg_epfd >= 0)
        close(loop->be->bg_epfd);
    close(loop->be->epfd);
    tern_free(loop->be);
    loop->be = NULL;
}

static uint32_t to_epoll(unsigned events)
{
    uint32_t ev = 0;
    if (events & TERN_LOOP_READ)
        ev |= EPOLLIN;
    if (events & TERN_LOOP_WRITE)
        ev |= EPOLLOUT;
    return ev;
}

/* background_open creates the background set and registers it in the foreground one. */
static int background_open(tern_loop_be *be)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = TERN_LOOP_BACKGROUND_TOKEN };
    if (epoll_ctl(be->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    be->bg_epfd = fd;
    return 0;
}

int tern_loop_be_ctl(tern_loop *loop, bool background, int fd, uint64_t token, unsigned old_events,
    unsigned new_events)
{
    tern_loop_be *be = loop->be;
    struct epoll_event ev = { .events = to_epoll(new_events), .data.u64 = token };
    int op;
    if (new_events == 0)
        op = EPOLL_CTL_DEL;
    else if (old_events == 0)
        op = EPOLL_CTL_ADD;
    else
        op = EPOLL_CTL_MOD;
    if (background && be->bg_epfd < 0) {
        if (op == EPOLL_CTL_DEL)
            return 0;
        int rc = background_open(be);
        if (rc < 0)
            return rc;
    }
    if (epoll_ctl(background ? be->bg_epfd : be->epfd, op, fd, &ev) < 0) {
        if (op == EPOLL_CTL_DEL)
            return 0; /* already gone: the fd was closed, nothing is registered */
        return -errno;
    }
    return 0;
}

static int poll_set(tern_loop_be *be, int epfd, int timeout_ms, tern_loop_fired *fired, int max)
{
    if (max > TERN_LOOP_BATCH)
        max = TERN_LOOP_BATCH;
    int n = epoll_wait(epfd, be->events, max, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        uint32_t ev = be->events[i].events;
        unsigned out = 0;
        if (ev & EPOLLIN)
            out |= TERN_LOOP_READ;
        if (ev & EPOLLOUT)
            out |= TERN_LOOP_WRITE;
        if (ev & (EPOLLERR | EPOLLHUP))
            out |= TERN_LOOP_ERROR | TERN_LOOP_READ | TERN_LOOP_WRITE;
        fired[i].token = be->events[i].data.u64;
        fired[i].events = out;
    }
    return n;
}

int tern_loop_be_poll(tern_loop *loop, int timeout_ms, tern_loop_fired *fired, int max)
{
    return poll_set(loop->be, loop->be->epfd, timeout_ms, fired, max);
}

int tern_loop_be_poll_background(tern_loop *loop, tern_loop_fired *fired, int max)
{
    if (loop->be->bg_epfd < 0)
        return 0;
    return poll_set(loop->be, loop->be->bg_epfd, 0, fired, max);
}

int tern_loop_be_wake_open(int *out_fd)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return -errno;
    *out_fd = fd;
    return 0;
}

void tern_loop_be_wake_signal(int fd)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: the loop is already woken. */
    ssize_t n;
    do
        n = write(fd, &one, sizeof one);
    while (n < 0 && errno == EINTR);
}

void tern_loop_be_wake_drain(int fd)
{
    uint64_t value;
    ssize_t n;
    do
        n = read(fd, &value, sizeof value);
    while (n < 0 && errno == EINTR);
}

int tern_loop_be_sig_update(int *fd, const sigset_t *mask)
{
    int nfd = signalfd(*fd, mask, SFD_NONBLOCK | SFD_CLOEXEC);
    if (nfd < 0)
        return -errno;
    *fd = nfd;
    return 0;
}

int tern_loop_be_sig_read(int fd)
{
    struct signalfd_siginfo si;
    for (;;) {
        ssize_t n = read(fd, &si, sizeof si);
        if (n == (ssize_t)sizeof si)
            return (int)si.ssi_signo;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 0;
        return n < 0 ? -errno : TERN_EIO;
    }
}

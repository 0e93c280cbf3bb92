/*
 * auth_worker.c: password verification off the event loop.
 *
 * PBKDF2 with the default cost takes tens of milliseconds of CPU by design, so verifying on the
 * loop thread would stall every connection. A CONNECT that needs a password check is parked:
 * its bytes are copied, reading from that connection pauses, and a worker thread verifies.
 * The result comes back through an eventfd watched by the loop, which re-handles the parked
 * CONNECT with the verdict and resumes reading. The connection stays allocated while its job is
 * out (n_pending), so a client that goes away meanwhile costs nothing.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/log.h"
#include "broker/auth.h"

#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

typedef struct auth_job {
    struct auth_job *next;
    broker_conn *conn;
    char *username;
    size_t username_len;
    uint8_t *password;
    size_t password_len;
    bool has_password;
    int result;
} auth_job;

struct broker_auth_worker {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    auth_job *queue_head, *queue_tail;
    auth_job *done;
    bool stop;
    int event_fd;
    tern_loop_io io;
    tern_broker *broker;
};

static void job_free(auth_job *j)
{
    if (j->password)
        memset(j->password, 0, j->password_len);
    tern_free(j->password);
    tern_free(j->username);
    tern_free(j);
}

static void *worker_main(void *arg)
{
    broker_auth_worker *w = arg;
    pthread_setname_np(pthread_self(), "tern-auth"); /* top -H, bench CPU per stage */
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->queue_head && !w->stop)
            pthread_cond_wait(&w->wake, &w->lock);
        if (w->stop)
            break;
        auth_job *j = w->queue_head;
        w->queue_head = j->next;
        if (!w->queue_head)
            w->queue_tail = NULL;
        pthread_mutex_unlock(&w->lock);
        j->result = tern_broker_auth_verify(w->broker->auth, j->username, j->username_len,
            j->has_password ? j->password : NULL, j->password_len);
        pthread_mutex_lock(&w->lock);
        j->next = w->done;
        w->done = j;
        uint64_t one = 1;
        ssize_t n = write(w->event_fd, &one, sizeof one);
        (void)n;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void finish(broker_auth_worker *w, auth_job *j)
{
    broker_conn *c = j->conn;
    c->n_pending--;
    if (c->state == CONN_CLOSED) {
        if (c->n_pending == 0)
            broker_conn_release(c);
    } else {
        broker_conn_auth_done(c, j->result);
    }
    (void)w;
    job_free(j);
}

static void done_cb(tern_loop_io *io, unsigned events)
{
    (void)events;
    broker_auth_worker *w = io->data;
    uint64_t n;
    ssize_t r = read(w->event_fd, &n, sizeof n);
    (void)r;
    pthread_mutex_lock(&w->lock);
    auth_job *list = w->done;
    w->done = NULL;
    pthread_mutex_unlock(&w->lock);
    /* The list is newest first: reverse it to finish in completion order. */
    auth_job *ordered = NULL;
    while (list) {
        auth_job *next = list->next;
        list->next = ordered;
        ordered = list;
        list = next;
    }
    while (ordered) {
        auth_job *next = ordered->next;
        finish(w, ordered);
        ordered = next;
    }
}

int broker_auth_worker_start(tern_broker *b)
{
    broker_auth_worker *w = tern_calloc(1, sizeof *w);
    if (!w)
        return TERN_ENOMEM;
    w->broker = b;
    w->event_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->event_fd < 0) {
        int rc = -errno;
        tern_free(w);
        return rc;
    }
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    tern_loop_io_init(b->loop, &w->io, w->event_fd, done_cb, w);
    int rc = tern_loop_io_start(&w->io, TERN_LOOP_READ);
    if (rc == 0 && pthread_create(&w->thread, NULL, worker_main, w) != 0)
        rc = TERN_ENOMEM;
    if (rc != 0) {
        tern_loop_io_stop(&w->io);
        close(w->event_fd);
        pthread_mutex_destroy(&w->lock);
        pthread_cond_destroy(&w->wake);
        tern_free(w);
        return rc;
    }
    b->auth_worker = w;
    return 0;
}

void broker_auth_worker_stop(tern_broker *b)
{
    broker_auth_worker *w = b->auth_worker;
    if (!w)
        return;
    pthread_mutex_lock(&w->lock);
    w->stop = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    pthread_join(w->thread, NULL);
    tern_loop_io_stop(&w->io);
    close(w->event_fd);
    /* Jobs not started or not yet collected: their connections are released here. */
    auth_job *lists[2] = { w->queue_head, w->done };
    for (int i = 0; i < 2; i++) {
        auth_job *j = lists[i];
        while (j) {
            auth_job *next = j->next;
            j->conn->n_pending--;
            job_free(j);
            j = next;
        }
    }
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->wake);
    tern_free(w);
    b->auth_worker = NULL;
}

int broker_auth_worker_submit(tern_broker *b, broker_conn *c, const tern_mqtt_connect *p)
{
    broker_auth_worker *w = b->auth_worker;
    auth_job *j = tern_calloc(1, sizeof *j);
    if (!j)
        return TERN_ENOMEM;
    j->conn = c;
    j->username = tern_malloc(p->username.len + 1u);
    j->username_len = p->username.len;
    j->has_password = p->has_password;
    j->password_len = p->has_password ? p->password.len : 0;
    j->password = tern_malloc(j->password_len + 1u);
    if (!j->username || !j->password) {
        job_free(j);
        return TERN_ENOMEM;
    }
    memcpy(j->username, p->username.p, p->username.len);
    j->username[p->username.len] = '\0';
    if (j->password_len)
        memcpy(j->password, p->password.p, j->password_len);
    c->n_pending++;
    pthread_mutex_lock(&w->lock);
    if (w->queue_tail)
        w->queue_tail->next = j;
    else
        w->queue_head = j;
    w->queue_tail = j;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->lock);
    return 0;
}

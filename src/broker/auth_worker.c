/*
 * auth_worker.c: password verification off the event loop.
 *
 * PBKDF2 with the default cost takes tens of milliseconds of CPU by design, so verifying on the
 * loop thread would stall every connection. A CONNECT that needs a password check is parked:
 * its bytes are copied, reading from that connection pauses, and a worker thread verifies.
 * The result is posted back to the connection's own loop (tern_loop_post), which re-handles the
 * parked CONNECT with the verdict and resumes reading. The connection stays allocated while its job
 * is out (n_pending), so a client that goes away meanwhile costs nothing.
 */
#include "broker/broker_int.h"

#include "base/alloc.h"
#include "base/log.h"
#include "broker/auth.h"

#include <pthread.h>
#include <string.h>

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
    bool stop;
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

/* On the connection's loop: the verdict is in. */
static void job_done(tern_loop *loop, void *arg)
{
    (void)loop;
    auth_job *j = arg;
    broker_conn *c = j->conn;
    tern_broker *b = c->broker;
    broker_lock(b, c->w);
    c->n_pending--;
    if (c->state == CONN_CLOSED) {
        if (c->n_pending == 0 && c->finished)
            broker_conn_release(c);
    } else {
        broker_conn_auth_done(c, j->result);
    }
    broker_unlock(b);
    job_free(j);
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
        /* c->w never changes, and c stays allocated while its job is out (n_pending). */
        broker_post_surely(j->conn->w->loop, job_done, j); /* the verdict must arrive */
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

int broker_auth_worker_start(tern_broker *b)
{
    broker_auth_worker *w = tern_calloc(1, sizeof *w);
    if (!w)
        return TERN_ENOMEM;
    w->broker = b;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->wake, NULL);
    int rc = 0;
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        rc = TERN_ENOMEM;
    if (rc != 0) {
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
    /* Jobs not started: their connections are released with the broker. Verdicts already
     * posted run when the broker drains its loops. */
    auth_job *j = w->queue_head;
    while (j) {
        auth_job *next = j->next;
        j->conn->n_pending--;
        job_free(j);
        j = next;
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

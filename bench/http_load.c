/*
 * http_load.c: the one HTTP client that feeds line protocol to tern and to every peer TSDB.
 *
 *   http_load --url 'http://127.0.0.1:PORT/write?db=bench&precision=ns' --file data.lp
 *             [--threads 2] [--batch-lines 5000]
 *
 * The file is read into memory first (disk reads are not measured) and cut into bodies of
 * --batch-lines lines. Each thread holds one HTTP/1.1 keep-alive connection (plain sockets, a
 * minimal client: Content-Length bodies out; status line, headers, Content-Length or chunked
 * bodies in) and POSTs the next unsent body until none is left. A 2xx answer counts the body's
 * points (lines x fields); anything else stops the run and prints the status and the body.
 * Prints one JSON line on stdout:
 *   {"points":..,"lines":..,"batches":..,"seconds":..,"points_per_s":..,"errors":..}
 * and exits 1 when any request failed.
 */
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

typedef struct batch {
    size_t off, len;
    uint64_t lines, points;
} batch;

typedef struct load {
    char host[256];
    char port[16];
    char path[1024];
    char *data;
    size_t data_len;
    batch *batches;
    size_t n_batches;
    atomic_size_t next;
    atomic_int stop;
    atomic_uint_least64_t points_ok;
    atomic_uint_least64_t errors;
} load;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int parse_url(load *l, const char *url)
{
    const char *p = url;
    if (strncmp(p, "http://", 7) != 0) {
        fprintf(stderr, "http_load: only http:// URLs are supported\n");
        return -1;
    }
    p += 7;
    const char *slash = strchr(p, '/');
    const char *hostport_end = slash ? slash : p + strlen(p);
    const char *colon = memchr(p, ':', (size_t)(hostport_end - p));
    const char *host_end = colon ? colon : hostport_end;
    if (host_end == p || (size_t)(host_end - p) >= sizeof l->host)
        return -1;
    memcpy(l->host, p, (size_t)(host_end - p));
    l->host[host_end - p] = '\0';
    if (colon) {
        size_t n = (size_t)(hostport_end - colon - 1);
        if (n == 0 || n >= sizeof l->port)
            return -1;
        memcpy(l->port, colon + 1, n);
        l->port[n] = '\0';
    } else {
        strcpy(l->port, "80");
    }
    snprintf(l->path, sizeof l->path, "%s", slash ? slash : "/");
    return 0;
}

/* fields_in_line counts the fields of one line-protocol line (commas in its field set + 1). */
static uint64_t fields_in_line(const char *s, size_t len)
{
    size_t i = 0;
    while (i < len && s[i] != ' ') { /* measurement and tags; backslash escapes a space */
        if (s[i] == '\\')
            i++;
        i++;
    }
    uint64_t n = 1;
    int quoted = 0;
    for (i++; i < len; i++) {
        char c = s[i];
        if (c == '\\') {
            i++;
        } else if (c == '"') {
            quoted = !quoted;
        } else if (!quoted && c == ',') {
            n++;
        } else if (!quoted && c == ' ') {
            break;
        }
    }
    return n;
}

static int load_file(load *l, const char *path, uint64_t batch_lines)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        fprintf(stderr, "http_load: %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size <= 0) {
        fprintf(stderr, "http_load: %s is empty or unreadable\n", path);
        fclose(f);
        return -1;
    }
    l->data_len = (size_t)st.st_size;
    l->data = malloc(l->data_len);
    if (l->data == NULL || fread(l->data, 1, l->data_len, f) != l->data_len) {
        fprintf(stderr, "http_load: cannot read %s into memory\n", path);
        fclose(f);
        return -1;
    }
    fclose(f);
    size_t cap = 1024;
    l->batches = malloc(cap * sizeof *l->batches);
    if (l->batches == NULL)
        return -1;
    batch cur = { 0, 0, 0, 0 };
    size_t pos = 0;
    while (pos < l->data_len) {
        const char *nl = memchr(l->data + pos, '\n', l->data_len - pos);
        size_t end = nl ? (size_t)(nl - l->data) + 1 : l->data_len;
        size_t line_len = end - pos - (nl ? 1 : 0);
        if (line_len > 0 && l->data[pos] != '#') {
            cur.lines++;
            cur.points += fields_in_line(l->data + pos, line_len);
        }
        pos = end;
        if (cur.lines == batch_lines || pos == l->data_len) {
            cur.len = pos - cur.off;
            if (cur.lines > 0) {
                if (l->n_batches == cap) {
                    cap *= 2;
                    batch *nb = realloc(l->batches, cap * sizeof *nb);
                    if (nb == NULL)
                        return -1;
                    l->batches = nb;
                }
                l->batches[l->n_batches++] = cur;
            }
            cur = (batch) { pos, 0, 0, 0 };
        }
    }
    return 0;
}

static int connect_to(const load *l)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(l->host, l->port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "http_load: %s:%s: %s\n", l->host, l->port, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = res; a != NULL; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) == 0)
            break;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0) {
        fprintf(stderr, "http_load: connect %s:%s: %s\n", l->host, l->port, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static int send_all(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        size_t left = (size_t)w;
        while (n > 0 && left >= iov->iov_len) {
            left -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + left;
            iov->iov_len -= left;
        }
    }
    return 0;
}

/* A response reader over one connection's receive buffer. */
typedef struct conn {
    int fd;
    char buf[65536];
    size_t start, end;
} conn;

static int fill(conn *c)
{
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == sizeof c->buf)
        return -1; /* a header line longer than the buffer */
    for (;;) {
        ssize_t r = read(c->fd, c->buf + c->end, sizeof c->buf - c->end);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        c->end += (size_t)r;
        return 0;
    }
}

/* read_line returns the next CRLF-terminated line (NUL-terminated, without CRLF) or NULL. */
static char *read_line(conn *c)
{
    for (;;) {
        char *nl = memchr(c->buf + c->start, '\n', c->end - c->start);
        if (nl != NULL) {
            char *line = c->buf + c->start;
            size_t len = (size_t)(nl - line);
            if (len > 0 && line[len - 1] == '\r')
                len--;
            line[len] = '\0';
            c->start = (size_t)(nl - c->buf) + 1;
            return line;
        }
        if (fill(c) < 0)
            return NULL;
    }
}

/* read_body appends up to n body bytes to out (bounded by out_cap) and consumes them. */
static int read_body(conn *c, size_t n, char *out, size_t *out_len, size_t out_cap)
{
    while (n > 0) {
        if (c->start == c->end && fill(c) < 0)
            return -1;
        size_t take = c->end - c->start < n ? c->end - c->start : n;
        size_t room = out_cap - 1 - *out_len;
        size_t copy = take < room ? take : room;
        memcpy(out + *out_len, c->buf + c->start, copy);
        *out_len += copy;
        c->start += take;
        n -= take;
    }
    out[*out_len] = '\0';
    return 0;
}

/*
 * read_response reads one response; sets *status, the body (truncated to body_cap) and
 * *keep_alive. Returns 0, or -1 when the connection broke or the response is malformed.
 */
static int read_response(conn *c, int *status, char *body, size_t body_cap, int *keep_alive)
{
    char *line = read_line(c);
    if (line == NULL || strncmp(line, "HTTP/1.", 7) != 0 || strlen(line) < 12)
        return -1;
    *status = atoi(line + 9);
    *keep_alive = line[7] == '1';
    long long content_length = -1;
    int chunked = 0;
    while ((line = read_line(c)) != NULL && line[0] != '\0') {
        if (strncasecmp(line, "Content-Length:", 15) == 0)
            content_length = strtoll(line + 15, NULL, 10);
        else if (strncasecmp(line, "Transfer-Encoding:", 18) == 0 && strstr(line, "chunked"))
            chunked = 1;
        else if (strncasecmp(line, "Connection:", 11) == 0 && strcasestr(line, "close"))
            *keep_alive = 0;
    }
    if (line == NULL)
        return -1;
    size_t body_len = 0;
    body[0] = '\0';
    if (chunked) {
        for (;;) {
            char *size_line = read_line(c);
            if (size_line == NULL)
                return -1;
            size_t n = (size_t)strtoull(size_line, NULL, 16);
            if (n == 0) {
                while ((line = read_line(c)) != NULL && line[0] != '\0') { }
                return line == NULL ? -1 : 0;
            }
            if (read_body(c, n, body, &body_len, body_cap) < 0 || read_line(c) == NULL)
                return -1;
        }
    }
    if (content_length > 0)
        return read_body(c, (size_t)content_length, body, &body_len, body_cap);
    if (content_length < 0 && *status != 204 && *status != 304
        && !(*status >= 100 && *status < 200)) {
        *keep_alive = 0; /* body runs to end of connection */
        while (c->start < c->end || fill(c) == 0) {
            size_t take = c->end - c->start;
            read_body(c, take, body, &body_len, body_cap);
        }
    }
    return 0;
}

static void *worker(void *arg)
{
    load *l = arg;
    conn *c = calloc(1, sizeof *c);
    char *body = malloc(4096);
    char head[1400];
    if (c == NULL || body == NULL) {
        atomic_fetch_add(&l->errors, 1);
        atomic_store(&l->stop, 1);
        goto out;
    }
    c->fd = -1;
    while (!atomic_load(&l->stop)) {
        size_t i = atomic_fetch_add(&l->next, 1);
        if (i >= l->n_batches)
            break;
        const batch *b = &l->batches[i];
        int attempts = 0;
        for (;;) {
            if (c->fd < 0) {
                c->fd = connect_to(l);
                c->start = c->end = 0;
                if (c->fd < 0) {
                    atomic_fetch_add(&l->errors, 1);
                    atomic_store(&l->stop, 1);
                    goto out;
                }
            }
            int hn = snprintf(head, sizeof head,
                "POST %s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: tern-http_load\r\n"
                "Content-Type: text/plain; charset=utf-8\r\n"
                "Content-Length: %zu\r\n\r\n",
                l->path, l->host, l->port, b->len);
            struct iovec iov[2] = { { head, (size_t)hn }, { l->data + b->off, b->len } };
            int status = 0, keep_alive = 1;
            if (send_all(c->fd, iov, 2) == 0
                && read_response(c, &status, body, 4096, &keep_alive) == 0) {
                if (!keep_alive) {
                    close(c->fd);
                    c->fd = -1;
                }
                if (status >= 200 && status < 300) {
                    atomic_fetch_add(&l->points_ok, b->points);
                } else {
                    fprintf(stderr, "http_load: batch %zu: HTTP %d: %s\n", i, status, body);
                    atomic_fetch_add(&l->errors, 1);
                    atomic_store(&l->stop, 1);
                }
                break;
            }
            /* the server closed a keep-alive connection under us: reconnect and resend once */
            close(c->fd);
            c->fd = -1;
            if (++attempts > 1) {
                fprintf(
                    stderr, "http_load: batch %zu: connection failed: %s\n", i, strerror(errno));
                atomic_fetch_add(&l->errors, 1);
                atomic_store(&l->stop, 1);
                break;
            }
        }
    }
out:
    if (c != NULL && c->fd >= 0)
        close(c->fd);
    free(c);
    free(body);
    return NULL;
}

int main(int argc, char **argv)
{
    const char *url = NULL, *file = NULL;
    long threads = 2, batch_lines = 5000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--url") == 0)
            url = argv[i + 1];
        else if (strcmp(argv[i], "--file") == 0)
            file = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = strtol(argv[i + 1], NULL, 10);
        else if (strcmp(argv[i], "--batch-lines") == 0)
            batch_lines = strtol(argv[i + 1], NULL, 10);
        else {
            fprintf(stderr, "http_load: unknown option %s\n", argv[i]);
            url = NULL;
            break;
        }
    }
    if (argc % 2 == 0 || url == NULL || file == NULL || threads < 1 || threads > 256
        || batch_lines < 1) {
        fprintf(stderr,
            "usage: http_load --url http://HOST:PORT/PATH?QUERY --file FILE.lp "
            "[--threads 2] [--batch-lines 5000]\n");
        return 2;
    }
    load *l = calloc(1, sizeof *l);
    if (l == NULL || parse_url(l, url) < 0) {
        fprintf(stderr, "http_load: bad URL %s\n", url);
        return 2;
    }
    if (load_file(l, file, (uint64_t)batch_lines) < 0)
        return 1;
    uint64_t lines = 0, points = 0;
    for (size_t i = 0; i < l->n_batches; i++) {
        lines += l->batches[i].lines;
        points += l->batches[i].points;
    }
    pthread_t tids[256];
    double t0 = now_s();
    long started = 0;
    for (; started < threads; started++)
        if (pthread_create(&tids[started], NULL, worker, l) != 0)
            break;
    for (long i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    double secs = now_s() - t0;
    uint64_t ok = atomic_load(&l->points_ok), errors = atomic_load(&l->errors);
    if (started < threads)
        errors++;
    printf("{\"points\":%" PRIu64 ",\"points_file\":%" PRIu64 ",\"lines\":%" PRIu64
           ",\"batches\":%zu,\"threads\":%ld,\"batch_lines\":%ld,\"seconds\":%.3f,"
           "\"points_per_s\":%.0f,\"errors\":%" PRIu64 "}\n",
        ok, points, lines, l->n_batches, threads, batch_lines, secs,
        secs > 0 ? (double)ok / secs : 0.0, errors);
    free(l->data);
    free(l->batches);
    free(l);
    return errors ? 1 : 0;
}

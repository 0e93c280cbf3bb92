/*
 * cmd_passwd.c: `tern passwd`, which manages the broker's password file (like mosquitto_passwd).
 *
 *   tern passwd -f FILE [-c] [-I ITERATIONS] USER          asks for the password twice
 *   tern passwd -f FILE [-c] [-I ITERATIONS] -b USER PASSWORD
 *   tern passwd -f FILE -D USER
 *
 * -c creates (or truncates) the file; otherwise the file must exist and load cleanly, and the
 * user's line is replaced or appended, every other line kept as it is. Without -b the password
 * is read from the terminal with echo off, twice; when stdin is not a terminal, one line is
 * read from stdin instead (for scripts: keeps the password out of the process list). The file
 * is rewritten atomically (temporary file in the same folder, fsync, rename, fsync of the
 * folder) with mode 0600. Format: docs/security.md.
 */
#include "tern/commands.h"

#include "base/error.h"
#include "broker/auth.h"

#include <openssl/crypto.h>

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

const char tern_cmd_passwd_summary[] = "create or update a broker password file";

#define PASSWORD_MAX 1024

static void usage(FILE *out)
{
    fprintf(out,
        "usage: tern passwd -f FILE [-c] [-I ITERATIONS] USER\n"
        "       tern passwd -f FILE [-c] [-I ITERATIONS] -b USER PASSWORD\n"
        "       tern passwd -f FILE -D USER\n"
        "  -f FILE   the password file\n"
        "  -c        create the file (replacing any existing one)\n"
        "  -b        take the password from the command line (visible to other users\n"
        "            of this machine: prefer the prompt, or a pipe on stdin)\n"
        "  -D USER   delete USER\n"
        "  -I N      PBKDF2 iterations (default %u, at least %u)\n",
        TERN_BROKER_AUTH_DEFAULT_ITERATIONS, TERN_BROKER_AUTH_MIN_ITERATIONS);
}

/* Read one line from fd into buf (without the newline). Returns its length or -1. */
static ssize_t read_line(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t got = read(fd, &c, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return n ? (ssize_t)n : -1;
        if (c == '\n')
            break;
        if (n + 1 >= cap)
            return -1;
        buf[n++] = c;
    }
    if (n && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (ssize_t)n;
}

/* Prompt on the terminal with echo off. Returns the length or -1. */
static ssize_t prompt_tty(int fd, const char *prompt, char *buf, size_t cap)
{
    struct termios old, quiet;
    if (tcgetattr(fd, &old) != 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= (tcflag_t) ~(ECHO | ECHONL);
    quiet.c_lflag |= ICANON;
    if (write(fd, prompt, strlen(prompt)) < 0 || tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
        return -1;
    ssize_t n = read_line(fd, buf, cap);
    tcsetattr(fd, TCSAFLUSH, &old);
    if (write(fd, "\n", 1) < 0)
        n = -1;
    return n;
}

/* Get the password without -b. Returns its length, or -1 after printing why. */
static ssize_t get_password(char *buf, size_t cap)
{
    if (!isatty(STDIN_FILENO)) {
        ssize_t n = read_line(STDIN_FILENO, buf, cap);
        if (n < 0)
            fprintf(stderr, "tern passwd: no password on stdin\n");
        return n;
    }
    int fd = open("/dev/tty", O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "tern passwd: no terminal to ask for the password (use -b)\n");
        return -1;
    }
    char again[PASSWORD_MAX];
    ssize_t n = prompt_tty(fd, "Password: ", buf, cap);
    ssize_t m = n < 0 ? -1 : prompt_tty(fd, "Reenter password: ", again, sizeof again);
    close(fd);
    if (n < 0 || m < 0) {
        fprintf(stderr, "tern passwd: could not read the password\n");
        n = -1;
    } else if (n != m || memcmp(buf, again, (size_t)n) != 0) {
        fprintf(stderr, "tern passwd: passwords do not match\n");
        n = -1;
    }
    OPENSSL_cleanse(again, sizeof again);
    return n;
}

typedef struct lines {
    char **v;
    size_t n;
    size_t cap;
} lines;

static int lines_push(lines *l, char *s)
{
    if (l->n == l->cap) {
        size_t ncap = l->cap ? l->cap * 2 : 64;
        char **nv = realloc(l->v, ncap * sizeof *nv);
        if (!nv)
            return -1;
        l->v = nv;
        l->cap = ncap;
    }
    l->v[l->n++] = s;
    return 0;
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
}

/* Read every line of path (newline stripped). 0 or -1 after printing why. */
static int read_lines(const char *path, lines *out)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "tern passwd: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        if (got && line[got - 1] == '\n')
            line[got - 1] = '\0';
        char *copy = strdup(line);
        if (!copy || lines_push(out, copy) != 0) {
            free(copy);
            fprintf(stderr, "tern passwd: out of memory\n");
            rc = -1;
            break;
        }
    }
    free(line);
    fclose(f);
    return rc;
}

static bool is_user_line(const char *line, const char *user)
{
    size_t n = strlen(user);
    return strncmp(line, user, n) == 0 && line[n] == ':';
}

static int write_all(int fd, const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(fd, s, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -1;
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Replace path with the lines, atomically, mode 0600. 0 or -1 after printing why. */
static int write_atomically(const char *path, const lines *l)
{
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    char *dir_copy = strdup(path);
    int fd = -1, rc = -1;
    if (!tmp || !dir_copy) {
        fprintf(stderr, "tern passwd: out of memory\n");
        goto done;
    }
    snprintf(tmp, plen + 16, "%s.tmpXXXXXX", path);
    fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "tern passwd: %s: %s\n", tmp, strerror(errno));
        goto done;
    }
    if (fchmod(fd, 0600) != 0)
        goto io_fail;
    for (size_t i = 0; i < l->n; i++) {
        if (write_all(fd, l->v[i], strlen(l->v[i])) != 0 || write_all(fd, "\n", 1) != 0)
            goto io_fail;
    }
    if (fsync(fd) != 0)
        goto io_fail;
    if (close(fd) != 0) {
        fd = -1;
        goto io_fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0)
        goto io_fail;
    int dfd = open(dirname(dir_copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    rc = 0;
    goto done;
io_fail:
    fprintf(stderr, "tern passwd: writing %s: %s\n", path, strerror(errno));
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
done:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(dir_copy);
    return rc;
}

int tern_cmd_passwd(int argc, char **argv)
{
    const char *file = NULL, *del_user = NULL;
    bool create = false, batch = false;
    unsigned long iterations = TERN_BROKER_AUTH_DEFAULT_ITERATIONS;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt(argc, argv, "+f:cbD:I:h")) != -1) {
        switch (opt) {
        case 'f':
            file = optarg;
            break;
        case 'c':
            create = true;
            break;
        case 'b':
            batch = true;
            break;
        case 'D':
            del_user = optarg;
            break;
        case 'I': {
            char *end;
            errno = 0;
            iterations = strtoul(optarg, &end, 10);
            if (errno || *end || iterations < TERN_BROKER_AUTH_MIN_ITERATIONS
                || iterations > TERN_BROKER_AUTH_MAX_ITERATIONS) {
                fprintf(stderr, "tern passwd: -I wants %u..%u\n", TERN_BROKER_AUTH_MIN_ITERATIONS,
                    TERN_BROKER_AUTH_MAX_ITERATIONS);
                return 2;
            }
            break;
        }
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    int n_args = argc - optind;
    bool ok_args
        = del_user ? n_args == 0 && !create && !batch : (batch ? n_args == 2 : n_args == 1);
    if (!file || !ok_args) {
        usage(stderr);
        return 2;
    }
    const char *user = del_user ? del_user : argv[optind];
    if (!tern_broker_auth_valid_username(user, strlen(user))) {
        fprintf(stderr,
            "tern passwd: invalid username (empty, ':', control character or "
            "leading '#')\n");
        return 2;
    }

    lines l = { NULL, 0, 0 };
    int status = 1;
    if (!create) {
        /* Refuse to rewrite a file the broker could not load. */
        tern_broker_auth *check;
        char err[512];
        int rc = tern_broker_auth_load(file, &check, err, sizeof err);
        if (rc) {
            fprintf(stderr, "tern passwd: %s\n", err);
            return rc == TERN_ECONFIG ? 2 : 1;
        }
        tern_broker_auth_free(check);
        if (read_lines(file, &l) != 0)
            goto done;
    }

    if (del_user) {
        size_t kept = 0;
        for (size_t i = 0; i < l.n; i++) {
            if (is_user_line(l.v[i], user))
                free(l.v[i]);
            else
                l.v[kept++] = l.v[i];
        }
        if (kept == l.n) {
            fprintf(stderr, "tern passwd: user '%s' not found in %s\n", user, file);
            goto done;
        }
        l.n = kept;
    } else {
        char password[PASSWORD_MAX];
        ssize_t plen;
        if (batch) {
            plen = (ssize_t)strlen(argv[optind + 1]);
            if ((size_t)plen >= sizeof password) {
                fprintf(stderr, "tern passwd: password too long\n");
                goto done;
            }
            memcpy(password, argv[optind + 1], (size_t)plen + 1);
        } else {
            plen = get_password(password, sizeof password);
            if (plen < 0)
                goto done;
        }
        if (plen == 0) {
            fprintf(stderr, "tern passwd: empty password refused\n");
            goto done;
        }
        char hash[TERN_BROKER_AUTH_HASH_MAX];
        int rc = tern_broker_auth_hash(
            password, (size_t)plen, (uint32_t)iterations, hash, sizeof hash);
        OPENSSL_cleanse(password, sizeof password);
        if (rc) {
            fprintf(stderr, "tern passwd: hashing failed: %s\n", tern_strerror(rc));
            goto done;
        }
        size_t len = strlen(user) + 1 + strlen(hash) + 1;
        char *line = malloc(len);
        if (!line) {
            fprintf(stderr, "tern passwd: out of memory\n");
            goto done;
        }
        snprintf(line, len, "%s:%s", user, hash);
        bool replaced = false;
        for (size_t i = 0; i < l.n; i++) {
            if (is_user_line(l.v[i], user)) {
                free(l.v[i]);
                l.v[i] = line;
                replaced = true;
                break;
            }
        }
        if (!replaced && lines_push(&l, line) != 0) {
            free(line);
            fprintf(stderr, "tern passwd: out of memory\n");
            goto done;
        }
    }
    if (write_atomically(file, &l) == 0)
        status = 0;
done:
    lines_free(&l);
    return status;
}

/*
 * auth.c: password file parsing, PBKDF2-HMAC-SHA512 verification and its cache (auth.h).
 */
#include "broker/auth.h"

#include "base/alloc.h"
#include "base/error.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HASH_BYTES 64u
#define SALT_MIN 8u
#define SALT_MAX 64u
#define MAC_BYTES 32u

static const char scheme[] = "$pbkdf2-sha512$";

typedef struct auth_user {
    char *name;
    size_t name_len;
    uint32_t iterations;
    uint8_t salt_len;
    bool cached;
    uint8_t salt[SALT_MAX];
    uint8_t hash[HASH_BYTES];
    uint8_t mac[MAC_BYTES]; /* HMAC-SHA256(cache_key, password) once verified */
} auth_user;

struct tern_broker_auth {
    auth_user *users; /* sorted by name */
    size_t n_users;
    bool cache_on;
    pthread_mutex_t lock; /* guards cached/mac */
    uint8_t cache_key[32];
    auth_user dummy; /* verified against for unknown users, so they cost the same */
};

/* Strict standard base64 with padding. Returns the decoded length or -1. */
static long b64_decode(const char *in, size_t len, uint8_t *out, size_t out_cap)
{
    if (len == 0 || len % 4 != 0)
        return -1;
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    size_t pad = 0;
    for (size_t i = 0; i < len; i++) {
        char c = in[i];
        int v;
        if (c >= 'A' && c <= 'Z')
            v = c - 'A';
        else if (c >= 'a' && c <= 'z')
            v = c - 'a' + 26;
        else if (c >= '0' && c <= '9')
            v = c - '0' + 52;
        else if (c == '+')
            v = 62;
        else if (c == '/')
            v = 63;
        else if (c == '=' && i >= len - 2) {
            pad++;
            continue;
        } else
            return -1;
        if (pad)
            return -1; /* data after padding */
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n >= out_cap)
                return -1;
            out[n++] = (uint8_t)(acc >> bits);
        }
    }
    if (pad == 1 && bits != 2)
        return -1;
    if (pad == 2 && bits != 4)
        return -1;
    if ((acc & ((1u << bits) - 1)) != 0)
        return -1; /* non-canonical: leftover bits must be zero */
    return (long)n;
}

bool tern_broker_auth_valid_username(const char *name, size_t len)
{
    if (len == 0 || len > TERN_BROKER_AUTH_USER_MAX || name[0] == '#')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == ':' || c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Parse `$pbkdf2-sha512$ITER$SALT$HASH` into u. Returns NULL or a static reason. */
static const char *parse_hash(const char *s, size_t len, auth_user *u)
{
    size_t slen = sizeof scheme - 1;
    if (len < slen || memcmp(s, scheme, slen) != 0)
        return "unknown hash scheme (expected $pbkdf2-sha512$)";
    size_t pos = slen;
    uint64_t iter = 0;
    size_t digits = 0;
    while (pos < len && s[pos] >= '0' && s[pos] <= '9' && digits < 10) {
        iter = iter * 10 + (uint64_t)(s[pos] - '0');
        pos++;
        digits++;
    }
    if (digits == 0 || pos >= len || s[pos] != '$')
        return "bad iteration count";
    if (iter < TERN_BROKER_AUTH_MIN_ITERATIONS || iter > TERN_BROKER_AUTH_MAX_ITERATIONS)
        return "iteration count out of range (1000..100000000)";
    pos++;
    const char *salt = s + pos;
    const char *dollar = memchr(salt, '$', len - pos);
    if (!dollar)
        return "missing hash field";
    size_t salt_b64 = (size_t)(dollar - salt);
    long n = b64_decode(salt, salt_b64, u->salt, SALT_MAX);
    if (n < 0)
        return "salt is not valid base64";
    if (n < (long)SALT_MIN)
        return "salt must be 8 to 64 bytes";
    u->salt_len = (uint8_t)n;
    const char *hash = dollar + 1;
    size_t hash_b64 = len - (size_t)(hash - s);
    uint8_t tmp[HASH_BYTES + 3];
    n = b64_decode(hash, hash_b64, tmp, sizeof tmp);
    if (n < 0)
        return "hash is not valid base64";
    if (n != (long)HASH_BYTES)
        return "hash must be 64 bytes";
    memcpy(u->hash, tmp, HASH_BYTES);
    u->iterations = (uint32_t)iter;
    return NULL;
}

static int derive(
    const auth_user *u, const void *password, size_t password_len, uint8_t out[HASH_BYTES])
{
    static const char empty[1] = { 0 };
    if (password_len > INT32_MAX)
        return TERN_EDENIED;
    if (!PKCS5_PBKDF2_HMAC(password_len ? password : empty, (int)password_len, u->salt, u->salt_len,
            (int)u->iterations, EVP_sha512(), HASH_BYTES, out))
        return TERN_EIO;
    return 0;
}

static int check_user(const auth_user *u, const void *password, size_t password_len)
{
    uint8_t got[HASH_BYTES];
    int rc = derive(u, password, password_len, got);
    if (rc == 0 && CRYPTO_memcmp(got, u->hash, HASH_BYTES) != 0)
        rc = TERN_EDENIED;
    OPENSSL_cleanse(got, sizeof got);
    return rc;
}

int tern_broker_auth_check_hash(
    const char *encoded, size_t encoded_len, const void *password, size_t password_len)
{
    auth_user u;
    memset(&u, 0, sizeof u);
    if (parse_hash(encoded, encoded_len, &u))
        return TERN_ECONFIG;
    return check_user(&u, password, password_len);
}

static void b64_encode(const uint8_t *in, size_t n, char *out)
{
    EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

int tern_broker_auth_hash(
    const void *password, size_t password_len, uint32_t iterations, char *out, size_t out_len)
{
    if (iterations < TERN_BROKER_AUTH_MIN_ITERATIONS
        || iterations > TERN_BROKER_AUTH_MAX_ITERATIONS)
        return TERN_EINVAL;
    auth_user u;
    memset(&u, 0, sizeof u);
    u.iterations = iterations;
    u.salt_len = TERN_BROKER_AUTH_SALT_BYTES;
    if (RAND_bytes(u.salt, TERN_BROKER_AUTH_SALT_BYTES) != 1)
        return TERN_EIO;
    int rc = derive(&u, password, password_len, u.hash);
    if (rc)
        return rc == TERN_EDENIED ? TERN_EINVAL : rc;
    char salt_b64[4 * ((SALT_MAX + 2) / 3) + 1];
    char hash_b64[4 * ((HASH_BYTES + 2) / 3) + 1];
    b64_encode(u.salt, u.salt_len, salt_b64);
    b64_encode(u.hash, HASH_BYTES, hash_b64);
    OPENSSL_cleanse(&u, sizeof u);
    int n = snprintf(out, out_len, "%s%u$%s$%s", scheme, iterations, salt_b64, hash_b64);
    if (n < 0 || (size_t)n >= out_len) {
        if (out_len)
            out[0] = '\0';
        return TERN_ERANGE;
    }
    return 0;
}

static int cmp_user(const void *a, const void *b)
{
    const auth_user *x = a, *y = b;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = memcmp(x->name, y->name, n);
    if (c)
        return c;
    return (x->name_len > y->name_len) - (x->name_len < y->name_len);
}

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t err_len, const char *fmt, ...)
{
    if (!err || err_len == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

void tern_broker_auth_free(tern_broker_auth *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n_users; i++) {
        tern_free(a->users[i].name);
        OPENSSL_cleanse(&a->users[i], sizeof a->users[i]);
    }
    tern_free(a->users);
    OPENSSL_cleanse(a->cache_key, sizeof a->cache_key);
    pthread_mutex_destroy(&a->lock);
    tern_free(a);
}

int tern_broker_auth_load(const char *path, tern_broker_auth **out, char *err, size_t err_len)
{
    int rc = 0;
    char *line = NULL;
    size_t line_cap = 0;
    size_t cap = 0;
    tern_broker_auth *a = tern_calloc(1, sizeof *a);
    if (!a)
        return TERN_ENOMEM;
    pthread_mutex_init(&a->lock, NULL);
    a->cache_on = true;
    FILE *f = fopen(path, "r");
    if (!f) {
        rc = -errno;
        set_err(err, err_len, "%s: %s", path, tern_strerror(rc));
        goto fail;
    }
    if (RAND_bytes(a->cache_key, sizeof a->cache_key) != 1
        || RAND_bytes(a->dummy.salt, TERN_BROKER_AUTH_SALT_BYTES) != 1) {
        rc = TERN_EIO;
        set_err(err, err_len, "%s: no random bytes from OpenSSL", path);
        goto fail;
    }
    a->dummy.salt_len = TERN_BROKER_AUTH_SALT_BYTES;
    a->dummy.iterations = TERN_BROKER_AUTH_DEFAULT_ITERATIONS;

    ssize_t got;
    unsigned long lineno = 0;
    while ((got = getline(&line, &line_cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        if (len && line[len - 1] == '\n')
            len--;
        if (len && line[len - 1] == '\r')
            len--;
        if (len == 0 || line[0] == '#')
            continue;
        if (memchr(line, '\0', len)) {
            rc = TERN_ECONFIG;
            set_err(err, err_len, "%s:%lu: NUL byte in line", path, lineno);
            goto fail;
        }
        const char *colon = memchr(line, ':', len);
        if (!colon) {
            rc = TERN_ECONFIG;
            set_err(err, err_len, "%s:%lu: expected username:hash", path, lineno);
            goto fail;
        }
        size_t name_len = (size_t)(colon - line);
        if (!tern_broker_auth_valid_username(line, name_len)) {
            rc = TERN_ECONFIG;
            set_err(err, err_len, "%s:%lu: invalid username", path, lineno);
            goto fail;
        }
        auth_user u;
        memset(&u, 0, sizeof u);
        const char *why = parse_hash(colon + 1, len - name_len - 1, &u);
        if (why) {
            rc = TERN_ECONFIG;
            set_err(err, err_len, "%s:%lu: %s", path, lineno, why);
            goto fail;
        }
        if (a->n_users == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            auth_user *nu = tern_realloc(a->users, ncap * sizeof *nu);
            if (!nu) {
                rc = TERN_ENOMEM;
                goto fail;
            }
            a->users = nu;
            cap = ncap;
        }
        u.name = tern_strndup(line, name_len);
        if (!u.name) {
            rc = TERN_ENOMEM;
            goto fail;
        }
        u.name_len = name_len;
        a->users[a->n_users++] = u;
    }
    if (ferror(f)) {
        rc = TERN_EIO;
        set_err(err, err_len, "%s: read error", path);
        goto fail;
    }
    if (a->n_users)
        qsort(a->users, a->n_users, sizeof *a->users, cmp_user);
    for (size_t i = 1; i < a->n_users; i++) {
        if (cmp_user(&a->users[i - 1], &a->users[i]) == 0) {
            /* Report the later line: find it again for a precise message. */
            rc = TERN_ECONFIG;
            unsigned long dup_line = 0, seen = 0;
            rewind(f);
            lineno = 0;
            while ((got = getline(&line, &line_cap, f)) >= 0) {
                lineno++;
                size_t nl = a->users[i].name_len;
                if ((size_t)got > nl && memcmp(line, a->users[i].name, nl) == 0 && line[nl] == ':'
                    && ++seen == 2) {
                    dup_line = lineno;
                    break;
                }
            }
            set_err(err, err_len, "%s:%lu: duplicate user '%.*s'", path, dup_line,
                (int)(a->users[i].name_len > 64 ? 64 : a->users[i].name_len), a->users[i].name);
            goto fail;
        }
    }
    fclose(f);
    free(line);
    *out = a;
    return 0;

fail:
    if (f)
        fclose(f);
    free(line);
    tern_broker_auth_free(a);
    return rc;
}

size_t tern_broker_auth_count(const tern_broker_auth *a)
{
    return a->n_users;
}

void tern_broker_auth_set_cache(tern_broker_auth *a, bool on)
{
    pthread_mutex_lock(&a->lock);
    a->cache_on = on;
    if (!on) {
        for (size_t i = 0; i < a->n_users; i++) {
            a->users[i].cached = false;
            OPENSSL_cleanse(a->users[i].mac, MAC_BYTES);
        }
    }
    pthread_mutex_unlock(&a->lock);
}

static int cache_mac(
    const tern_broker_auth *a, const void *password, size_t password_len, uint8_t mac[MAC_BYTES])
{
    unsigned int mac_len = MAC_BYTES;
    static const uint8_t empty[1] = { 0 };
    if (!HMAC(EVP_sha256(), a->cache_key, sizeof a->cache_key, password_len ? password : empty,
            password_len, mac, &mac_len))
        return TERN_EIO;
    return 0;
}

int tern_broker_auth_verify(tern_broker_auth *a, const char *username, size_t username_len,
    const void *password, size_t password_len)
{
    auth_user key;
    key.name = (char *)(uintptr_t)username;
    key.name_len = username_len;
    auth_user *u = NULL;
    if (username && a->n_users)
        u = bsearch(&key, a->users, a->n_users, sizeof *a->users, cmp_user);
    if (!u || !password) {
        /* Spend the same time as a real check, then refuse. */
        (void)check_user(&a->dummy, password ? password : "", password ? password_len : 0);
        return TERN_EDENIED;
    }
    uint8_t mac[MAC_BYTES];
    bool use_cache = a->cache_on;
    if (use_cache) {
        int rc = cache_mac(a, password, password_len, mac);
        if (rc)
            return rc;
        pthread_mutex_lock(&a->lock);
        bool hit = u->cached && CRYPTO_memcmp(u->mac, mac, MAC_BYTES) == 0;
        pthread_mutex_unlock(&a->lock);
        if (hit)
            return 0;
    }
    int rc = check_user(u, password, password_len);
    if (rc == 0 && use_cache) {
        pthread_mutex_lock(&a->lock);
        if (a->cache_on) {
            memcpy(u->mac, mac, MAC_BYTES);
            u->cached = true;
        }
        pthread_mutex_unlock(&a->lock);
    }
    OPENSSL_cleanse(mac, sizeof mac);
    return rc;
}

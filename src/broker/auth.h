/*
 * auth.h: password authentication for the broker (the password file and PBKDF2).
 *
 * The password file holds one user per line, `username:$pbkdf2-sha512$ITER$SALT_B64$HASH_B64`
 * (format and choices documented in docs/security.md; written by `tern passwd`). Blank lines
 * and lines starting with '#' are ignored. A loaded tern_broker_auth is immutable apart from
 * its verification cache (mutex-protected), so tern_broker_auth_verify may run on several
 * worker threads at once.
 *
 * VERIFICATION IS SLOW BY DESIGN: one PBKDF2-HMAC-SHA512 with the default 100,000 iterations
 * costs ~75 ms of CPU on the reference machine. The broker must not call
 * tern_broker_auth_verify on its I/O loop thread: hand CONNECTs to a worker thread and
 * resume the connection when the result comes back. To survive reconnect storms (a fleet
 * reconnecting after a broker restart), a successful verification is cached per user as
 * HMAC-SHA256(per-process random key, password): a later CONNECT with the same password
 * costs about a microsecond. A wrong password always pays the full PBKDF2 (a mismatch with
 * the cache never answers "denied" quickly) and an unknown user pays it too (against a dummy
 * entry), so timing reveals neither which users exist nor which ones are cached. The cache
 * lives only in memory; tern_broker_auth_set_cache(a, false) turns it off.
 */
#ifndef TERN_BROKER_AUTH_H
#define TERN_BROKER_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TERN_BROKER_AUTH_DEFAULT_ITERATIONS 100000u
#define TERN_BROKER_AUTH_MIN_ITERATIONS 1000u
#define TERN_BROKER_AUTH_MAX_ITERATIONS 100000000u
#define TERN_BROKER_AUTH_SALT_BYTES 16u
/* Longest encoded hash tern_broker_auth_hash writes, with its NUL. */
#define TERN_BROKER_AUTH_HASH_MAX 160u
/* Longest username accepted (MQTT strings are at most 65535 bytes). */
#define TERN_BROKER_AUTH_USER_MAX 65535u

typedef struct tern_broker_auth tern_broker_auth;

/*
 * tern_broker_auth_load reads a password file. Returns 0 and sets *out; TERN_ECONFIG with
 * "FILE:LINE: reason" in err (err_len bytes, may be 0) for a malformed line, a bad username,
 * an unknown scheme, iterations outside [MIN, MAX], bad base64, a wrong salt (8..64 bytes) or
 * hash (64 bytes) length, or a duplicate user; -errno ("FILE: reason" in err) if the file
 * cannot be read; TERN_ENOMEM. An empty file is valid (no user can log in).
 */
int tern_broker_auth_load(const char *path, tern_broker_auth **out, char *err, size_t err_len);

/* tern_broker_auth_free frees a (NULL is fine), wiping the cache first. */
void tern_broker_auth_free(tern_broker_auth *a);

/* tern_broker_auth_count returns the number of users. */
size_t tern_broker_auth_count(const tern_broker_auth *a);

/*
 * tern_broker_auth_verify checks username/password (raw bytes, as MQTT carries them).
 * Returns 0 if the user exists and the password is right, TERN_EDENIED otherwise (including
 * for a NULL password), TERN_ENOMEM/TERN_EIO if OpenSSL fails. Slow: see the file comment.
 */
int tern_broker_auth_verify(tern_broker_auth *a, const char *username, size_t username_len,
    const void *password, size_t password_len);

/* tern_broker_auth_set_cache turns the verification cache on (the default) or off; turning
 * it off also wipes it. */
void tern_broker_auth_set_cache(tern_broker_auth *a, bool on);

/*
 * tern_broker_auth_hash encodes password as `$pbkdf2-sha512$ITER$SALT$HASH` with a fresh
 * 16-byte salt from RAND_bytes, NUL-terminated in out (out_len >= TERN_BROKER_AUTH_HASH_MAX
 * always suffices). Returns 0, TERN_EINVAL (iterations out of range), TERN_ERANGE (out too
 * small) or TERN_EIO (OpenSSL failed).
 */
int tern_broker_auth_hash(
    const void *password, size_t password_len, uint32_t iterations, char *out, size_t out_len);

/*
 * tern_broker_auth_check_hash verifies password against one encoded hash (what a line holds
 * after "username:"). Returns 0, TERN_EDENIED, or TERN_ECONFIG if encoded is malformed.
 */
int tern_broker_auth_check_hash(
    const char *encoded, size_t encoded_len, const void *password, size_t password_len);

/*
 * tern_broker_auth_valid_username says whether name can be stored in a password file:
 * 1..TERN_BROKER_AUTH_USER_MAX bytes, no ':', no control characters (bytes < 0x20, 0x7f).
 */
bool tern_broker_auth_valid_username(const char *name, size_t len);

#endif

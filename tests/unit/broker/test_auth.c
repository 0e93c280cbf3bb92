/*
 * test_auth.c: password hashing and the password file: encode/verify round trip, a line
 * built independently with OpenSSL, good/bad/unknown/empty passwords, the verification cache,
 * and malformed lines reported as FILE:LINE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "broker/auth.h"

#include <openssl/evp.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S(str) (str), strlen(str)
#define FAST 1000u /* the minimum iteration count keeps the tests quick */

static char path[512];

static void write_file(const char *text)
{
    const char *dir = getenv("TERN_TEST_TMP");
    snprintf(path, sizeof path, "%s/test_auth_%d.passwd", dir ? dir : "/tmp", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_hash_round_trip(void **state)
{
    (void)state;
    char h1[TERN_BROKER_AUTH_HASH_MAX], h2[TERN_BROKER_AUTH_HASH_MAX];
    assert_int_equal(tern_broker_auth_hash(S("s3cret"), FAST, h1, sizeof h1), 0);
    assert_int_equal(tern_broker_auth_hash(S("s3cret"), FAST, h2, sizeof h2), 0);
    assert_true(strncmp(h1, "$pbkdf2-sha512$1000$", 20) == 0);
    /* 16-byte salt = 24 base64 chars, 64-byte hash = 88. */
    assert_int_equal(strlen(h1), 20 + 24 + 1 + 88);
    assert_string_not_equal(h1, h2); /* fresh salt each time */
    assert_int_equal(tern_broker_auth_check_hash(S(h1), S("s3cret")), 0);
    assert_int_equal(tern_broker_auth_check_hash(S(h2), S("s3cret")), 0);
    assert_int_equal(tern_broker_auth_check_hash(S(h1), S("s3creT")), TERN_EDENIED);
    assert_int_equal(tern_broker_auth_check_hash(S(h1), S("")), TERN_EDENIED);
    assert_int_equal(tern_broker_auth_check_hash(S("$md5$x"), S("s3cret")), TERN_ECONFIG);
    /* Binary passwords (MQTT passwords are bytes) work, NULs included. */
    const char bin[] = { 'a', 0, 'b' };
    assert_int_equal(tern_broker_auth_hash(bin, 3, FAST, h1, sizeof h1), 0);
    assert_int_equal(tern_broker_auth_check_hash(S(h1), bin, 3), 0);
    assert_int_equal(tern_broker_auth_check_hash(S(h1), bin, 1), TERN_EDENIED);

    assert_int_equal(tern_broker_auth_hash(S("x"), 999, h1, sizeof h1), TERN_EINVAL);
    assert_int_equal(tern_broker_auth_hash(S("x"), FAST, h1, 40), TERN_ERANGE);
}

/* A line made with OpenSSL directly, to pin the format independently of the encoder. */
static void test_independent_line(void **state)
{
    (void)state;
    const unsigned char salt[16] = "0123456789abcdef";
    unsigned char dk[64];
    assert_int_equal(PKCS5_PBKDF2_HMAC("hunter2", 7, salt, 16, 2000, EVP_sha512(), 64, dk), 1);
    char salt_b64[32], dk_b64[100], text[300];
    EVP_EncodeBlock((unsigned char *)salt_b64, salt, 16);
    EVP_EncodeBlock((unsigned char *)dk_b64, dk, 64);
    snprintf(
        text, sizeof text, "# devices\n\ncar-17:$pbkdf2-sha512$2000$%s$%s\r\n", salt_b64, dk_b64);
    write_file(text);
    tern_broker_auth *a;
    char err[256] = "";
    assert_int_equal(tern_broker_auth_load(path, &a, err, sizeof err), 0);
    assert_int_equal(tern_broker_auth_count(a), 1);
    assert_int_equal(tern_broker_auth_verify(a, S("car-17"), S("hunter2")), 0);
    assert_int_equal(tern_broker_auth_verify(a, S("car-17"), S("hunter3")), TERN_EDENIED);
    tern_broker_auth_free(a);
    unlink(path);
}

static void test_verify_file(void **state)
{
    (void)state;
    char ha[TERN_BROKER_AUTH_HASH_MAX], hb[TERN_BROKER_AUTH_HASH_MAX],
        hc[TERN_BROKER_AUTH_HASH_MAX];
    assert_int_equal(tern_broker_auth_hash(S("pw-a"), FAST, ha, sizeof ha), 0);
    assert_int_equal(tern_broker_auth_hash(S("pw-b"), FAST, hb, sizeof hb), 0);
    assert_int_equal(tern_broker_auth_hash(S(""), FAST, hc, sizeof hc), 0);
    char text[1024];
    snprintf(text, sizeof text, "zed:%s\nalice:%s\nempty:%s\n", hb, ha, hc);
    write_file(text);
    tern_broker_auth *a;
    assert_int_equal(tern_broker_auth_load(path, &a, NULL, 0), 0);
    assert_int_equal(tern_broker_auth_count(a), 3);
    for (int round = 0; round < 2; round++) { /* the second round hits the cache */
        assert_int_equal(tern_broker_auth_verify(a, S("alice"), S("pw-a")), 0);
        assert_int_equal(tern_broker_auth_verify(a, S("zed"), S("pw-b")), 0);
        assert_int_equal(tern_broker_auth_verify(a, S("alice"), S("pw-b")), TERN_EDENIED);
        assert_int_equal(tern_broker_auth_verify(a, S("zed"), S("pw-a")), TERN_EDENIED);
        assert_int_equal(tern_broker_auth_verify(a, S("alice"), S("pw-a2")), TERN_EDENIED);
        assert_int_equal(tern_broker_auth_verify(a, S("alic"), S("pw-a")), TERN_EDENIED);
        assert_int_equal(tern_broker_auth_verify(a, S("empty"), S("")), 0);
        assert_int_equal(tern_broker_auth_verify(a, S("empty"), NULL, 0), TERN_EDENIED);
        assert_int_equal(tern_broker_auth_verify(a, S("alice"), NULL, 0), TERN_EDENIED);
    }
    tern_broker_auth_set_cache(a, false);
    assert_int_equal(tern_broker_auth_verify(a, S("alice"), S("pw-a")), 0);
    assert_int_equal(tern_broker_auth_verify(a, S("alice"), S("pw-x")), TERN_EDENIED);
    tern_broker_auth_free(a);
    unlink(path);
}

static void test_unknown_user_and_empty_file(void **state)
{
    (void)state;
    write_file("# nobody yet\n");
    tern_broker_auth *a;
    assert_int_equal(tern_broker_auth_load(path, &a, NULL, 0), 0);
    assert_int_equal(tern_broker_auth_count(a), 0);
    /* Costs a full default-iteration PBKDF2 (against the dummy), then refuses. */
    assert_int_equal(tern_broker_auth_verify(a, S("ghost"), S("x")), TERN_EDENIED);
    tern_broker_auth_free(a);
    unlink(path);
}

static void test_default_iterations(void **state)
{
    (void)state;
    char h[TERN_BROKER_AUTH_HASH_MAX];
    assert_int_equal(
        tern_broker_auth_hash(S("pw"), TERN_BROKER_AUTH_DEFAULT_ITERATIONS, h, sizeof h), 0);
    assert_true(strncmp(h, "$pbkdf2-sha512$100000$", 22) == 0);
    assert_int_equal(tern_broker_auth_check_hash(S(h), S("pw")), 0);
}

/* Each malformed file must fail with TERN_ECONFIG and the exact FILE:LINE: prefix. */
static void expect_error(const char *text, int line, const char *reason_part)
{
    write_file(text);
    tern_broker_auth *a = NULL;
    char err[512] = "";
    assert_int_equal(tern_broker_auth_load(path, &a, err, sizeof err), TERN_ECONFIG);
    assert_null(a);
    char want[600];
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, reason_part))
        fail_msg("for %s got '%s', want prefix '%s' and '%s'", text, err, want, reason_part);
    unlink(path);
}

static void test_malformed_lines(void **state)
{
    (void)state;
    char good[TERN_BROKER_AUTH_HASH_MAX];
    assert_int_equal(tern_broker_auth_hash(S("pw"), FAST, good, sizeof good), 0);
    const char *salt = good + 20; /* 24 chars */
    const char *hash = good + 20 + 25;
    char t[1024];

    snprintf(t, sizeof t, "a:%s\nno colon here\n", good);
    expect_error(t, 2, "expected username:hash");
    snprintf(t, sizeof t, "# c\n\n:%s\n", good);
    expect_error(t, 3, "invalid username");
    snprintf(t, sizeof t, "a\tb:%s\n", good);
    expect_error(t, 1, "invalid username");
    expect_error("u:$7$101$abc$def\n", 1, "unknown hash scheme");
    expect_error("u:pbkdf2-sha512$1000$x$y\n", 1, "unknown hash scheme");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$999$%s\n", salt);
    expect_error(t, 1, "out of range");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$100000001$%s\n", salt);
    expect_error(t, 1, "out of range");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$12a$%s\n", salt);
    expect_error(t, 1, "bad iteration count");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$$%s\n", salt);
    expect_error(t, 1, "bad iteration count");
    expect_error("u:$pbkdf2-sha512$1000$c2FsdHNhbHRzYWx0c2FsdA==\n", 1, "missing hash field");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$1000$c2Fs*HNhbHRzYWx0c2FsdA==$%s\n", hash);
    expect_error(t, 1, "salt is not valid base64");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$1000$c2FsdA==$%s\n", hash); /* 4 bytes */
    expect_error(t, 1, "salt must be 8 to 64 bytes");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$1000$c2FsdHNhbHRzYWx0c2FsdB==$%s\n", hash);
    expect_error(t, 1, "salt is not valid base64"); /* non-canonical padding bits */
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$1000$%.24s$c2hvcnQ=\n", salt);
    expect_error(t, 1, "hash must be 64 bytes");
    snprintf(t, sizeof t, "u:$pbkdf2-sha512$1000$%.24s$%.87s\n", salt, hash);
    expect_error(t, 1, "hash is not valid base64");
    snprintf(t, sizeof t, "bob:%s\nann:%s\nbob:%s\n", good, good, good);
    expect_error(t, 3, "duplicate user 'bob'");
}

static void test_missing_file(void **state)
{
    (void)state;
    tern_broker_auth *a = NULL;
    char err[256] = "";
    assert_int_equal(
        tern_broker_auth_load("/nonexistent/tern.passwd", &a, err, sizeof err), -ENOENT);
    assert_null(a);
    assert_true(strncmp(err, "/nonexistent/tern.passwd: ", 26) == 0);
}

static void test_valid_username(void **state)
{
    (void)state;
    assert_true(tern_broker_auth_valid_username(S("car-17")));
    assert_true(tern_broker_auth_valid_username(S("ünïcode name")));
    assert_false(tern_broker_auth_valid_username(S("")));
    assert_false(tern_broker_auth_valid_username(S("a:b")));
    assert_false(tern_broker_auth_valid_username(S("#admin")));
    assert_false(tern_broker_auth_valid_username(S("a\nb")));
    assert_false(tern_broker_auth_valid_username(S("a\x7f")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_round_trip),
        cmocka_unit_test(test_independent_line),
        cmocka_unit_test(test_verify_file),
        cmocka_unit_test(test_unknown_user_and_empty_file),
        cmocka_unit_test(test_default_iterations),
        cmocka_unit_test(test_malformed_lines),
        cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_valid_username),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

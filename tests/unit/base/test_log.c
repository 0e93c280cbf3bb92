/*
 * test_log.c: line format (UTC time, level, module, message), level filtering, escaping and
 * truncation of hostile text, rate limiting with its suppression count, redirection, threads.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/clock.h"
#include "base/error.h"
#include "base/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Captured lines. */
static char lines[64][2048];
static int n_lines;
static int n_total;

static void capture(void *opaque, tern_log_level level, const char *line, size_t len)
{
    (void)level;
    int *calls = opaque;
    (*calls)++;
    n_total++;
    assert_int_equal(strlen(line), len);
    if (n_lines < 64)
        snprintf(lines[n_lines++], sizeof lines[0], "%s", line);
}

static int calls;

static int setup(void **state)
{
    (void)state;
    n_lines = 0;
    n_total = 0;
    calls = 0;
    tern_log_set_level(TERN_LOG_INFO);
    tern_log_set_callback(capture, &calls);
    tern_clock_fake_set(1700000000123LL, 1000000000ull);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    tern_log_set_callback(NULL, NULL);
    tern_clock_fake_off();
    return 0;
}

static void test_format(void **state)
{
    (void)state;
    tern_logf(TERN_LOG_WARN, "mqtt", "client '%s' sent %d bad bytes", "dev-1", 3);
    assert_int_equal(n_lines, 1);
    assert_string_equal(
        lines[0], "2023-11-14T22:13:20.123Z warn mqtt: client 'dev-1' sent 3 bad bytes\n");
    TERN_LOG(TERN_LOG_ERROR, "log", "disk %s", "full");
    assert_string_equal(lines[1], "2023-11-14T22:13:20.123Z error log: disk full\n");
    assert_int_equal(calls, 2);
}

static int evaluated;

static int side_effect(void)
{
    return ++evaluated;
}

static void test_levels(void **state)
{
    (void)state;
    assert_true(tern_log_enabled(TERN_LOG_INFO));
    assert_false(tern_log_enabled(TERN_LOG_DEBUG));
    tern_logf(TERN_LOG_DEBUG, "x", "hidden");
    TERN_LOG(TERN_LOG_DEBUG, "x", "hidden %d", side_effect());
    assert_int_equal(n_lines, 0);
    assert_int_equal(evaluated, 0); /* arguments not evaluated when disabled */
    tern_log_set_level(TERN_LOG_DEBUG);
    TERN_LOG(TERN_LOG_DEBUG, "x", "shown %d", side_effect());
    assert_int_equal(n_lines, 1);
    assert_non_null(strstr(lines[0], " debug x: shown 1\n"));
    tern_log_set_level(TERN_LOG_ERROR);
    tern_logf(TERN_LOG_WARN, "x", "hidden");
    assert_int_equal(n_lines, 1);
    assert_int_equal(tern_log_get_level(), TERN_LOG_ERROR);

    tern_log_level lv = TERN_LOG_INFO;
    assert_int_equal(tern_log_level_parse("DEBUG", &lv), 0);
    assert_int_equal(lv, TERN_LOG_DEBUG);
    assert_int_equal(tern_log_level_parse("warning", &lv), 0);
    assert_int_equal(lv, TERN_LOG_WARN);
    assert_int_equal(tern_log_level_parse("loud", &lv), TERN_EINVAL);
    assert_int_equal(lv, TERN_LOG_WARN);
    assert_string_equal(tern_log_level_name(TERN_LOG_ERROR), "error");
}

static void test_escaping_and_truncation(void **state)
{
    (void)state;
    tern_logf(TERN_LOG_INFO, "mqtt", "topic '%s'", "a\nfake 2023 error line\r\x01\x7f");
    assert_int_equal(n_lines, 1);
    assert_non_null(strstr(lines[0], "topic 'a\\x0afake 2023 error line\\x0d\\x01\\x7f'\n"));
    assert_ptr_equal(strchr(lines[0], '\n'), lines[0] + strlen(lines[0]) - 1);

    char big[5000];
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    tern_logf(TERN_LOG_INFO, "m", "%s", big);
    size_t len = strlen(lines[1]);
    assert_true(len < TERN_LOG_MAX_MESSAGE + 100);
    assert_string_equal(lines[1] + len - 4, "...\n");

    /* Escapes that would cross the limit are cut whole, not split. */
    memset(big, '\n', 2000);
    big[2000] = '\0';
    tern_logf(TERN_LOG_INFO, "m", "%s", big);
    len = strlen(lines[2]);
    assert_string_equal(lines[2] + len - 4, "...\n");
    assert_true(lines[2][len - 5] == 'a'); /* the last whole "\x0a" */
}

static void test_ratelimit_allow(void **state)
{
    (void)state;
    tern_log_ratelimit rl = TERN_LOG_RATELIMIT_INIT(3, 1000);
    uint64_t sup = 99;
    for (int i = 0; i < 3; i++) {
        assert_true(tern_log_ratelimit_allow(&rl, 5000, &sup));
        assert_int_equal(sup, 0);
    }
    for (int i = 0; i < 7; i++)
        assert_false(tern_log_ratelimit_allow(&rl, 5999, &sup));
    assert_true(tern_log_ratelimit_allow(&rl, 6000, &sup));
    assert_int_equal(sup, 7);
    assert_true(tern_log_ratelimit_allow(&rl, 6001, &sup));
    assert_int_equal(sup, 0);
    /* A clock going backwards starts a new window rather than blocking forever. */
    assert_true(tern_log_ratelimit_allow(&rl, 10, &sup));
}

static void hostile_input(int i)
{
    TERN_LOG_RATELIMITED(TERN_LOG_WARN, "broker", "malformed packet %d", i);
}

static void test_ratelimited_macro(void **state)
{
    (void)state;
    for (int i = 0; i < 25; i++)
        hostile_input(i);
    assert_int_equal(n_lines, TERN_LOG_RATELIMIT_BURST);
    assert_non_null(strstr(lines[9], "malformed packet 9\n"));
    /* Not yet a new window. */
    tern_clock_fake_advance_ns((TERN_LOG_RATELIMIT_INTERVAL_MS - 1) * 1000000ull);
    hostile_input(25);
    assert_int_equal(n_lines, TERN_LOG_RATELIMIT_BURST);
    tern_clock_fake_advance_ns(1000000ull);
    hostile_input(26);
    assert_int_equal(n_lines, TERN_LOG_RATELIMIT_BURST + 1);
    assert_non_null(strstr(lines[10], "malformed packet 26 (16 similar messages suppressed)\n"));
    hostile_input(27);
    assert_non_null(strstr(lines[11], "malformed packet 27\n"));
    /* Disabled level: the limiter is not even consulted. */
    tern_log_set_level(TERN_LOG_ERROR);
    hostile_input(28);
    assert_int_equal(n_lines, 12);
}

static void test_file_output(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    tern_log_set_file(f);
    tern_logf(TERN_LOG_INFO, "api", "listening on %d", 8080);
    tern_log_set_file(NULL);
    rewind(f);
    char buf[256] = "";
    assert_non_null(fgets(buf, sizeof buf, f));
    assert_string_equal(buf, "2023-11-14T22:13:20.123Z info api: listening on 8080\n");
    fclose(f);
    assert_int_equal(n_lines, 0); /* set_file removed the callback */
}

static void *log_many(void *arg)
{
    (void)arg;
    for (int i = 0; i < 500; i++)
        tern_logf(TERN_LOG_INFO, "t", "line %d of a thread", i);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, log_many, NULL), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(n_total, 1000);
    assert_int_equal(calls, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping_and_truncation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimit_allow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ratelimited_macro, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_output, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

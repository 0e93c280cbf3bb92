/*
 * test_config.c: the config format (sections, comments, quotes, suffixes, lists), schema
 * defaults and validation, every error message with its line, command-line overrides and their
 * precedence, files (present, missing), and allocation failures.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/config.h"
#include "base/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const tern_config_schema schema[] = {
    { .key = "broker.listen",
        .type = TERN_CONFIG_STRING,
        .default_value = "tcp://0.0.0.0:1883",
        .flags = TERN_CONFIG_LIST,
        .help = "listeners" },
    { .key = "broker.max_connections",
        .type = TERN_CONFIG_INT,
        .default_value = "100000",
        .min = 1,
        .max = 10000000,
        .help = "connection limit" },
    { .key = "broker.name", .type = TERN_CONFIG_STRING, .help = "node name" },
    { .key = "broker.tls", .type = TERN_CONFIG_BOOL, .default_value = "false", .help = "TLS" },
    { .key = "log.segment_size", .type = TERN_CONFIG_SIZE, .default_value = "64MiB", .help = "s" },
    { .key = "log.flush_interval",
        .type = TERN_CONFIG_DURATION,
        .default_value = "10ms",
        .max = 60000,
        .help = "group commit" },
    { .key = "log.ports", .type = TERN_CONFIG_INT, .flags = TERN_CONFIG_LIST, .help = "ports" },
    { .key = "log.level",
        .type = TERN_CONFIG_ENUM,
        .default_value = "info",
        .choices = "error|warn|info|debug",
        .help = "level" },
    { .key = "tsdb.retention.hot", .type = TERN_CONFIG_DURATION, .default_value = "7d" },
    { .key = "tenant", .type = TERN_CONFIG_STRING, .help = "top-level key" },
    { .key = NULL },
};

static tern_config *cfg;

static int setup(void **state)
{
    (void)state;
    if (tern_config_create(&cfg))
        return -1;
    return tern_config_add_schema(cfg, schema);
}

static int teardown(void **state)
{
    (void)state;
    tern_config_destroy(cfg);
    cfg = NULL;
    return 0;
}

static int parse(const char *text)
{
    return tern_config_parse_string(cfg, "t.conf", text, strlen(text));
}

static void expect_error(const char *text, const char *message)
{
    assert_int_equal(parse(text), TERN_ECONFIG);
    assert_string_equal(tern_config_error(cfg), message);
}

static void test_defaults(void **state)
{
    (void)state;
    assert_int_equal(tern_config_list_len(cfg, "broker.listen"), 1);
    assert_string_equal(tern_config_list_string(cfg, "broker.listen", 0), "tcp://0.0.0.0:1883");
    assert_int_equal(tern_config_get_int(cfg, "broker.max_connections"), 100000);
    assert_int_equal(tern_config_get_int(cfg, "log.segment_size"), 64 << 20);
    assert_int_equal(tern_config_get_int(cfg, "log.flush_interval"), 10);
    assert_int_equal(tern_config_get_int(cfg, "tsdb.retention.hot"), 7 * 86400000LL);
    assert_false(tern_config_get_bool(cfg, "broker.tls"));
    assert_string_equal(tern_config_get_string(cfg, "log.level"), "info");
    assert_null(tern_config_get_string(cfg, "broker.name"));
    assert_false(tern_config_has(cfg, "broker.name"));
    assert_int_equal(tern_config_list_len(cfg, "log.ports"), 0);
    assert_int_equal(tern_config_get_source(cfg, "log.level"), TERN_CONFIG_FROM_DEFAULT);
    assert_int_equal(tern_config_get_source(cfg, "broker.name"), TERN_CONFIG_UNSET);
}

static void test_good_file(void **state)
{
    (void)state;
    const char *text = "# tern config\n"
                       "tenant = acme   # top-level, before any section\n"
                       "\n"
                       "[broker]\n"
                       "  listen = tcp://0.0.0.0:1883, \"tls://0.0.0.0:8883\"\r\n"
                       "listen = ws://[::]:8080\n"
                       "max_connections = 2000000\n"
                       "name = \"node \\\"one\\\" #1\"  # a comment\n"
                       "tls = yes\n"
                       "[log]\n"
                       "segment_size = 1 GiB\n"
                       "flush_interval = 2s\n"
                       "ports = 1883,8883 , 9000\n"
                       "level = debug\n"
                       "[tsdb.retention]\n"
                       "hot = 0\n";
    assert_int_equal(parse(text), 0);
    assert_string_equal(tern_config_error(cfg), "");
    assert_string_equal(tern_config_get_string(cfg, "tenant"), "acme");
    assert_int_equal(tern_config_list_len(cfg, "broker.listen"), 3);
    assert_string_equal(tern_config_list_string(cfg, "broker.listen", 0), "tcp://0.0.0.0:1883");
    assert_string_equal(tern_config_list_string(cfg, "broker.listen", 1), "tls://0.0.0.0:8883");
    assert_string_equal(tern_config_list_string(cfg, "broker.listen", 2), "ws://[::]:8080");
    assert_int_equal(tern_config_get_int(cfg, "broker.max_connections"), 2000000);
    assert_string_equal(tern_config_get_string(cfg, "broker.name"), "node \"one\" #1");
    assert_true(tern_config_get_bool(cfg, "broker.tls"));
    assert_int_equal(tern_config_get_int(cfg, "log.segment_size"), 1LL << 30);
    assert_int_equal(tern_config_get_int(cfg, "log.flush_interval"), 2000);
    assert_int_equal(tern_config_list_len(cfg, "log.ports"), 3);
    assert_int_equal(tern_config_list_int(cfg, "log.ports", 1), 8883);
    assert_int_equal(tern_config_list_int(cfg, "log.ports", 2), 9000);
    assert_string_equal(tern_config_get_string(cfg, "log.level"), "debug");
    assert_int_equal(tern_config_get_int(cfg, "tsdb.retention.hot"), 0);
    assert_int_equal(tern_config_get_source(cfg, "broker.tls"), TERN_CONFIG_FROM_FILE);
}

static void test_suffixes(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t bytes;
    } sizes[] = {
        { "512", 512 },
        { "512B", 512 },
        { "4KB", 4000 },
        { "4kib", 4096 },
        { "10MB", 10000000 },
        { "64MiB", 64LL << 20 },
        { "2GB", 2000000000 },
        { "3GiB", 3LL << 30 },
        { "1TiB", 1LL << 40 },
        { "1TB", 1000000000000LL },
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(tern_config_set(cfg, "log.segment_size", sizes[i].text), 0);
        assert_int_equal(tern_config_get_int(cfg, "log.segment_size"), sizes[i].bytes);
    }
    static const struct {
        const char *text;
        int64_t ms;
    } durations[] = { { "250ms", 250 }, { "10s", 10000 }, { "5m", 300000 }, { "0", 0 },
        { "1h", 3600000 }, { "60000ms", 60000 } };
    for (size_t i = 0; i < sizeof durations / sizeof durations[0]; i++) {
        assert_int_equal(tern_config_set(cfg, "tsdb.retention.hot", durations[i].text), 0);
        assert_int_equal(tern_config_get_int(cfg, "tsdb.retention.hot"), durations[i].ms);
    }
    assert_int_equal(tern_config_set(cfg, "tsdb.retention.hot", "90d"), 0);
    assert_int_equal(tern_config_get_int(cfg, "tsdb.retention.hot"), 90 * 86400000LL);
    static const char *const bools_true[] = { "true", "YES", "on", "1" };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(tern_config_set(cfg, "broker.tls", bools_true[i]), 0);
        assert_true(tern_config_get_bool(cfg, "broker.tls"));
        assert_int_equal(tern_config_set(cfg, "broker.tls", "off"), 0);
        assert_false(tern_config_get_bool(cfg, "broker.tls"));
    }
    assert_int_equal(tern_config_set(cfg, "broker.max_connections", "-0"), TERN_ECONFIG);
    assert_int_equal(tern_config_set(cfg, "broker.max_connections", "+7"), 0);
    assert_int_equal(tern_config_get_int(cfg, "broker.max_connections"), 7);
}

static void test_error_messages(void **state)
{
    (void)state;
    expect_error("[broker]\nfoo = 1\n", "t.conf:2: unknown key 'foo' in section [broker]");
    expect_error("\n\n[broker]\nmax_connections = abc\n",
        "t.conf:4: broker.max_connections: expected an integer, got 'abc'");
    expect_error("[broker]\nmax_connections = 0\n",
        "t.conf:2: broker.max_connections: '0' is out of range [1, 10000000]");
    expect_error("[broker]\nmax_connections = 99999999999999999999999\n",
        "t.conf:2: broker.max_connections: expected an integer, got "
        "'99999999999999999999999'");
    expect_error("[nope]\n", "t.conf:1: unknown section [nope]");
    expect_error("[broker\n", "t.conf:1: malformed section header '[broker'");
    expect_error("[]\n", "t.conf:1: malformed section header '[]'");
    expect_error("[broker] x\n", "t.conf:1: malformed section header '[broker] x'");
    expect_error("bogus = 1\n", "t.conf:1: unknown key 'bogus'");
    expect_error(
        "[log]\njust words\n", "t.conf:2: expected 'key = value' or '[section]', got 'just words'");
    expect_error("[log]\n= 3\n", "t.conf:2: expected 'key = value' or '[section]', got '= 3'");
    expect_error("[log]\nsegment_size = 12XB\n",
        "t.conf:2: log.segment_size: expected a size such as 4096, 64KiB or 1GB, got "
        "'12XB'");
    expect_error("[log]\nsegment_size = -1\n",
        "t.conf:2: log.segment_size: expected a size such as 4096, 64KiB or 1GB, got "
        "'-1'");
    expect_error("[log]\nsegment_size = 99999999TiB\n",
        "t.conf:2: log.segment_size: '99999999TiB' is too large");
    expect_error("[log]\nflush_interval = 10\n",
        "t.conf:2: log.flush_interval: expected a duration such as 250ms, 10s, 5m, 2h or "
        "7d, got '10'");
    expect_error("[log]\nflush_interval = 2m\n",
        "t.conf:2: log.flush_interval: '2m' is out of range [0, 60000] ms");
    expect_error("[broker]\ntls = maybe\n",
        "t.conf:2: broker.tls: expected a boolean (true or false), got 'maybe'");
    expect_error("[log]\nlevel = loud\n",
        "t.conf:2: log.level: expected one of error, warn, info, debug; got 'loud'");
    expect_error("[log]\nports = 1,,2\n", "t.conf:2: log.ports: empty list item");
    expect_error("[log]\nports = 1,\n", "t.conf:2: log.ports: empty list item");
    expect_error("[log]\nports = 1, x\n", "t.conf:2: log.ports: expected an integer, got 'x'");
    expect_error("[broker]\nname = \"abc\n", "t.conf:2: unterminated quoted string");
    expect_error("[broker]\nname = \"a\\qb\"\n", "t.conf:2: unknown escape '\\q' in quoted string");
    expect_error("[broker]\nname = \"a\" b\n",
        "t.conf:2: broker.name: unexpected text after quoted value: 'b'");
    expect_error(
        "[broker]\nname = a\nname = b\n", "t.conf:3: broker.name: set twice (first at line 2)");
    assert_int_equal(
        tern_config_parse_string(cfg, "t.conf", "[log]\nlevel = in\0fo\n", 19), TERN_ECONFIG);
    assert_string_equal(tern_config_error(cfg), "t.conf:2: NUL byte in line");
    /* Hostile text is shown cut and without control bytes. */
    char long_value[300];
    memset(long_value, 'z', sizeof long_value);
    memcpy(long_value, "[broker]\ntls = \x1b", 16);
    long_value[sizeof long_value - 1] = '\0';
    assert_int_equal(parse(long_value), TERN_ECONFIG);
    const char *msg = tern_config_error(cfg);
    assert_non_null(strstr(msg, "got '?zzz"));
    assert_non_null(strstr(msg, "z...'"));
    assert_true(strlen(msg) < 150);
}

static void test_command_line_overrides_file(void **state)
{
    (void)state;
    char path[] = "/tmp/tern_test_config_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "[broker]\nmax_connections = 5\nname = from-file\nlisten = a, b\n"
                       "[log]\nlevel = warn\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);

    char conf_arg[64];
    snprintf(conf_arg, sizeof conf_arg, "--config=%s", path);
    /* Overrides come before --config on purpose: they still win. */
    char *argv[] = { "prog", "--set", "broker.max_connections=7", "positional", "--log.level",
        "debug", "--broker.listen=x,y", conf_arg, "--other-flag", "--set=broker.listen=z", "--",
        "--set", NULL };
    int argc = 12;
    assert_int_equal(tern_config_parse_args(cfg, &argc, argv), 0);
    assert_int_equal(argc, 5);
    assert_string_equal(argv[0], "prog");
    assert_string_equal(argv[1], "positional");
    assert_string_equal(argv[2], "--other-flag");
    assert_string_equal(argv[3], "--");
    assert_string_equal(argv[4], "--set");
    assert_null(argv[5]);
    assert_int_equal(tern_config_get_int(cfg, "broker.max_connections"), 7);
    assert_int_equal(
        tern_config_get_source(cfg, "broker.max_connections"), TERN_CONFIG_FROM_COMMAND_LINE);
    assert_string_equal(tern_config_get_string(cfg, "broker.name"), "from-file");
    assert_string_equal(tern_config_get_string(cfg, "log.level"), "debug");
    /* The command line's list replaces the file's; its own items accumulate. */
    assert_int_equal(tern_config_list_len(cfg, "broker.listen"), 3);
    assert_string_equal(tern_config_list_string(cfg, "broker.listen", 0), "x");
    assert_string_equal(tern_config_list_string(cfg, "broker.listen", 2), "z");

    /* A file loaded after a set does not override it either; repeated sets: last wins. */
    assert_int_equal(tern_config_set(cfg, "broker.name", "cli"), 0);
    assert_int_equal(tern_config_set(cfg, "broker.name", "cli2"), 0);
    assert_int_equal(tern_config_load_file(cfg, path), 0);
    assert_string_equal(tern_config_get_string(cfg, "broker.name"), "cli2");
    teardown(state);
    setup(state);
    assert_int_equal(tern_config_set(cfg, "broker.name", "cli"), 0);
    assert_int_equal(tern_config_load_file(cfg, path), 0);
    assert_string_equal(tern_config_get_string(cfg, "broker.name"), "cli");
    assert_int_equal(tern_config_get_int(cfg, "broker.max_connections"), 5);
    unlink(path);
}

static void test_command_line_errors(void **state)
{
    (void)state;
    char *a1[] = { "p", "--set", "broker.max_connections=abc", NULL };
    int argc = 3;
    assert_int_equal(tern_config_parse_args(cfg, &argc, a1), TERN_ECONFIG);
    assert_string_equal(tern_config_error(cfg),
        "command line: broker.max_connections: expected an integer, got 'abc'");
    assert_int_equal(argc, 3); /* untouched on error */
    char *a2[] = { "p", "--broker.nope=1", NULL };
    argc = 2;
    assert_int_equal(tern_config_parse_args(cfg, &argc, a2), TERN_ECONFIG);
    assert_string_equal(tern_config_error(cfg), "command line: unknown key 'broker.nope'");
    char *a3[] = { "p", "--set", "novalue", NULL };
    argc = 3;
    assert_int_equal(tern_config_parse_args(cfg, &argc, a3), TERN_ECONFIG);
    assert_string_equal(
        tern_config_error(cfg), "command line: --set expects KEY=VALUE, got 'novalue'");
    char *a4[] = { "p", "--config", NULL };
    argc = 2;
    assert_int_equal(tern_config_parse_args(cfg, &argc, a4), TERN_ECONFIG);
    assert_string_equal(tern_config_error(cfg), "command line: --config needs a value");
    char *a5[] = { "p", "--config=a", "--config", "b", NULL };
    argc = 4;
    assert_int_equal(tern_config_parse_args(cfg, &argc, a5), TERN_ECONFIG);
    assert_string_equal(tern_config_error(cfg), "command line: --config given twice");
    char *a6[] = { "p", "--config", "/nonexistent/tern.conf", NULL };
    argc = 3;
    assert_int_equal(tern_config_parse_args(cfg, &argc, a6), TERN_ENOENT);
    assert_string_equal(
        tern_config_error(cfg), "/nonexistent/tern.conf: cannot read: No such file or directory");
    /* A top-level key without a dot is recognized because it is declared. */
    char *a7[] = { "p", "--tenant", "t1", "--verbose", NULL };
    argc = 4;
    assert_int_equal(tern_config_parse_args(cfg, &argc, a7), 0);
    assert_int_equal(argc, 2);
    assert_string_equal(a7[1], "--verbose");
    assert_string_equal(tern_config_get_string(cfg, "tenant"), "t1");
}

static void test_missing_file(void **state)
{
    (void)state;
    assert_int_equal(tern_config_load_file(cfg, "/nonexistent/x.conf"), TERN_ENOENT);
    assert_string_equal(
        tern_config_error(cfg), "/nonexistent/x.conf: cannot read: No such file or directory");
    /* A directory cannot be read as a file. */
    assert_true(tern_config_load_file(cfg, "/") < 0);
}

static void test_required_and_schema_errors(void **state)
{
    (void)state;
    static const tern_config_schema req[] = {
        { .key = "data.dir", .type = TERN_CONFIG_STRING, .flags = TERN_CONFIG_REQUIRED },
        { .key = NULL },
    };
    assert_int_equal(tern_config_add_schema(cfg, req), 0);
    assert_int_equal(tern_config_check_required(cfg), TERN_ECONFIG);
    assert_string_equal(tern_config_error(cfg), "data.dir: required but not set");
    assert_int_equal(parse("[data]\ndir = /var/lib/tern\n"), 0);
    assert_int_equal(tern_config_check_required(cfg), 0);

    static const tern_config_schema dup[] = {
        { .key = "x.ok", .type = TERN_CONFIG_INT },
        { .key = "broker.name", .type = TERN_CONFIG_STRING },
        { .key = NULL },
    };
    assert_int_equal(tern_config_add_schema(cfg, dup), TERN_EINVAL);
    assert_string_equal(tern_config_error(cfg), "schema: broker.name: declared twice");
    static const tern_config_schema bad_default[] = {
        { .key = "y.n", .type = TERN_CONFIG_INT, .default_value = "ten" },
        { .key = NULL },
    };
    assert_int_equal(tern_config_add_schema(cfg, bad_default), TERN_EINVAL);
    assert_string_equal(tern_config_error(cfg), "schema: y.n: expected an integer, got 'ten'");
    static const tern_config_schema bad_names[] = {
        { .key = "a..b", .type = TERN_CONFIG_INT },
        { .key = NULL },
    };
    assert_int_equal(tern_config_add_schema(cfg, bad_names), TERN_EINVAL);
    static const tern_config_schema no_choices[] = {
        { .key = "e.x", .type = TERN_CONFIG_ENUM },
        { .key = NULL },
    };
    assert_int_equal(tern_config_add_schema(cfg, no_choices), TERN_EINVAL);
    /* The failed tables left nothing behind: x.ok is not a section. */
    expect_error("[x]\n", "t.conf:1: unknown section [x]");
}

static void test_describe_and_core_schema(void **state)
{
    (void)state;
    tern_config *core;
    assert_int_equal(tern_config_create(&core), 0);
    assert_int_equal(tern_config_add_schema(core, tern_config_schema_core), 0);
    assert_string_equal(tern_config_get_string(core, "logging.level"), "info");
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_config_describe(core, &b), 0);
    assert_int_equal(tern_buf_append_u8(&b, 0), 0);
    const char *text = (const char *)b.data;
    assert_non_null(strstr(text, "[logging]\n"));
    assert_non_null(strstr(text, "# type: enum, one of error|warn|info|debug\n# level = info\n"));
    assert_non_null(strstr(text, "\n[data]\n"));
    /* What describe prints parses once uncommented: it is a valid sample. */
    tern_buf_free(&b);
    tern_config_destroy(core);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    const char *text = "[broker]\nlisten = a, b, c, d, e, f\nname = \"q\"\n[log]\nlevel = warn\n";
    for (long n = 0; n < 64; n++) {
        tern_config *c = NULL;
        tern_alloc_fail_after(n);
        int rc = tern_config_create(&c);
        if (rc == 0)
            rc = tern_config_add_schema(c, schema);
        if (rc == 0)
            rc = tern_config_parse_string(c, "t", text, strlen(text));
        tern_alloc_fail_after(-1);
        tern_config_destroy(c);
        if (rc == 0)
            return;
        assert_int_equal(rc, TERN_ENOMEM);
    }
    fail_msg("never succeeded");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_defaults, setup, teardown),
        cmocka_unit_test_setup_teardown(test_good_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_suffixes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_error_messages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_line_overrides_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_command_line_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_required_and_schema_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_describe_and_core_schema, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

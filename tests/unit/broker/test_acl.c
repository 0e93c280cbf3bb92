/*
 * test_acl.c: the broker ACL: default device rules, filter-covers-filter for SUBSCRIBE,
 * deny rules, user sections and anonymous clients, %c/%u substitution attacks, $ topics,
 * shared subscriptions, and file errors reported as FILE:LINE.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "broker/acl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S(str) (str), strlen(str)

static int check(
    const tern_broker_acl *acl, const char *cid, const char *user, const char *topic, int access)
{
    return tern_broker_acl_check(acl, S(cid), user, user ? strlen(user) : 0, S(topic), access);
}

#define ALLOW(acl, cid, user, topic, acc) assert_int_equal(check(acl, cid, user, topic, acc), 0)
#define DENY(acl, cid, user, topic, acc)                                                           \
    assert_int_equal(check(acl, cid, user, topic, acc), TERN_EDENIED)
#define R TERN_ACL_READ
#define W TERN_ACL_WRITE

static tern_broker_acl *defaults(void)
{
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    assert_int_equal(tern_broker_acl_add_defaults(acl), 0);
    assert_int_equal(tern_broker_acl_count(acl), 3);
    return acl;
}

static void test_empty_denies_everything(void **state)
{
    (void)state;
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    DENY(acl, "c1", NULL, "fleet/c1/telemetry", W);
    DENY(acl, "c1", "u", "fleet/c1/cmd/#", R);
    tern_broker_acl_free(acl);
}

static void test_default_rules(void **state)
{
    (void)state;
    tern_broker_acl *acl = defaults();
    ALLOW(acl, "c1", NULL, "fleet/c1/telemetry", W);
    ALLOW(acl, "c1", "someone", "fleet/c1/m/speed", W);
    ALLOW(acl, "c1", NULL, "fleet/c1/cmd/reboot", W);
    DENY(acl, "c1", NULL, "fleet/c2/telemetry", W);
    ALLOW(acl, "c1", NULL, "fleet/c1", W); /* fleet/c1/# matches its parent level */
    DENY(acl, "c1", NULL, "other/c1/telemetry", W);
    DENY(acl, "c1", NULL, "fleet/c1/+", W); /* wildcards never in a publish */

    ALLOW(acl, "c1", NULL, "fleet/c1/cmd/#", R);
    ALLOW(acl, "c1", NULL, "fleet/c1/cmd/+", R);
    ALLOW(acl, "c1", NULL, "fleet/c1/cmd/reboot", R);
    ALLOW(acl, "c1", NULL, "fleet/c1/cmd", R); /* cmd/# covers cmd */
    ALLOW(acl, "c1", NULL, "fleet/c1/config", R);
    DENY(acl, "c1", NULL, "fleet/c1/#", R); /* reaches telemetry too */
    DENY(acl, "c1", NULL, "fleet/c1/+", R);
    DENY(acl, "c1", NULL, "fleet/+/cmd/#", R); /* the brief's example */
    DENY(acl, "c1", NULL, "fleet/#", R);
    DENY(acl, "c1", NULL, "#", R);
    DENY(acl, "c1", NULL, "+/c1/cmd/#", R);
    DENY(acl, "c1", NULL, "fleet/c2/cmd/#", R);
    DENY(acl, "c1", NULL, "fleet/c1/telemetry", R);
    DENY(acl, "c1", NULL, "fleet/c1/config/x", R);
    tern_broker_acl_free(acl);
}

static void test_substitution_attacks(void **state)
{
    (void)state;
    tern_broker_acl *acl = defaults();
    /* A client id with wildcards or separators must not widen fleet/%c/...: no access. */
    const char *evil[] = { "+", "#", "a/+", "a/#", "x/y", "/", "" };
    for (size_t i = 0; i < sizeof evil / sizeof evil[0]; i++) {
        DENY(acl, evil[i], NULL, "fleet/a/cmd/#", R);
        DENY(acl, evil[i], NULL, "fleet/+/cmd/#", R);
        DENY(acl, evil[i], NULL, "fleet/a/telemetry", W);
        DENY(acl, evil[i], NULL, "fleet/x/y/telemetry", W);
        DENY(acl, evil[i], NULL, "fleet//telemetry", W);
    }
    /* A legitimate id with other punctuation works. */
    ALLOW(acl, "dev-1.2_$x%c", NULL, "fleet/dev-1.2_$x%c/t", W);
    DENY(acl, "dev-1.2_$x%c", NULL, "fleet/dev-1.2_$x%c/t", R);

    /* %u the same way, and a pattern using both. */
    assert_int_equal(tern_broker_acl_add_line(acl, S("pattern read users/%u/%c/#"), NULL, 0), 0);
    ALLOW(acl, "c1", "bob", "users/bob/c1/#", R);
    DENY(acl, "c1", "bob", "users/+/c1/#", R);
    DENY(acl, "c1", "b/+", "users/b/x/c1/#", R);
    DENY(acl, "c1", "+", "users/x/c1/a", R);
    DENY(acl, "c1", NULL, "users//c1/a", R); /* no username: %u patterns do not apply */
    DENY(acl, "c1", "", "users//c1/a", R);
    tern_broker_acl_free(acl);
}

static void test_deny_patterns_fail_closed(void **state)
{
    (void)state;
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    assert_int_equal(tern_broker_acl_add_line(acl, S("pattern readwrite pub/#"), NULL, 0), 0);
    assert_int_equal(tern_broker_acl_add_line(acl, S("pattern deny pub/%c/private"), NULL, 0), 0);
    ALLOW(acl, "c1", NULL, "pub/c2/private", W);
    DENY(acl, "c1", NULL, "pub/c1/private", W);
    DENY(acl, "c1", NULL, "pub/c1/#", R); /* intersects the denied topic */
    DENY(acl, "c1", NULL, "pub/+/private", R);
    ALLOW(acl, "c1", NULL, "pub/c1/public", R);
    ALLOW(acl, "c1", NULL, "pub/+/public", R);
    /* An id that cannot be substituted makes the deny pattern deny everything. */
    DENY(acl, "a/b", NULL, "pub/x/public", W);
    tern_broker_acl_free(acl);
}

static void test_user_sections_and_deny(void **state)
{
    (void)state;
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    const char *lines[] = {
        "# anonymous clients",
        "topic read public/#",
        "",
        "user admin",
        "topic readwrite #",
        "topic deny secret/#",
        "topic read $SYS/#",
        "user ops team",
        "topic write ops/cmd",
        "  topic   read   ops/status with spaces  ",
        "user admin", /* a second section for admin adds to the first */
        "topic write audit",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        assert_int_equal(tern_broker_acl_add_line(acl, S(lines[i]), NULL, 0), 0);
    assert_int_equal(tern_broker_acl_count(acl), 7);

    ALLOW(acl, "c", NULL, "public/news", R);
    ALLOW(acl, "c", NULL, "public/#", R);
    DENY(acl, "c", NULL, "public/news", W);
    DENY(acl, "c", "someone", "public/news", R); /* named users do not get anonymous rules */

    ALLOW(acl, "c", "admin", "anything/at/all", W);
    ALLOW(acl, "c", "admin", "a/#", R);
    DENY(acl, "c", "admin", "secret/x", W);
    DENY(acl, "c", "admin", "secret/x", R);
    DENY(acl, "c", "admin", "#", R);       /* would receive secret/... */
    DENY(acl, "c", "admin", "+/x", R);     /* could match secret/x */
    DENY(acl, "c", "admin", "+/x/y/z", R); /* could match secret/x/y/z */
    ALLOW(acl, "c", "admin", "a/+/y", R);
    ALLOW(acl, "c", "admin", "audit", W);
    ALLOW(acl, "c", "admin", "$SYS/x", R);
    tern_broker_acl_free(acl);
}

static void test_user_sections_dollar(void **state)
{
    (void)state;
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    const char *lines[] = { "user admin", "topic readwrite #", "topic read $SYS/#", "user ops team",
        "topic write ops/cmd", "topic read ops/status with spaces" };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        assert_int_equal(tern_broker_acl_add_line(acl, S(lines[i]), NULL, 0), 0);
    /* "#" covers neither $SYS topics nor $SYS filters. */
    ALLOW(acl, "c", "admin", "#", R);
    ALLOW(acl, "c", "admin", "+/#", R);
    ALLOW(acl, "c", "admin", "$SYS/broker/load", R); /* from the $SYS/# rule */
    ALLOW(acl, "c", "admin", "$SYS/#", R);
    DENY(acl, "c", "admin", "$SYS/broker/load", W);
    DENY(acl, "c", "admin", "$other/x", R);
    DENY(acl, "c", "admin", "$other/x", W);

    ALLOW(acl, "c", "ops team", "ops/cmd", W);
    DENY(acl, "c", "ops team", "ops/cmd", R);
    ALLOW(acl, "c", "ops team", "ops/status with spaces", R);
    DENY(acl, "c", "ops", "ops/cmd", W);
    tern_broker_acl_free(acl);
}

static void test_covers_edge_cases(void **state)
{
    (void)state;
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    const char *lines[]
        = { "topic read a/+/c", "topic read b/#", "topic read +/#", "topic write w/+" };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        assert_int_equal(tern_broker_acl_add_line(acl, S(lines[i]), NULL, 0), 0);
    /* "+/#" covers everything "#" reaches at the first level, but not $ topics. */
    ALLOW(acl, "c", NULL, "#", R);
    ALLOW(acl, "c", NULL, "x", R);
    ALLOW(acl, "c", NULL, "+", R);
    DENY(acl, "c", NULL, "$SYS/x", R);
    DENY(acl, "c", NULL, "$SYS/#", R);
    /* w/+ grants writes to one level, an empty one included. */
    ALLOW(acl, "c", NULL, "w/x", W);
    ALLOW(acl, "c", NULL, "w/", W);
    DENY(acl, "c", NULL, "w", W);
    DENY(acl, "c", NULL, "w/x/y", W);
    tern_broker_acl_free(acl);

    assert_int_equal(tern_broker_acl_new(&acl), 0);
    assert_int_equal(tern_broker_acl_add_line(acl, S("topic read a/+/c"), NULL, 0), 0);
    assert_int_equal(tern_broker_acl_add_line(acl, S("topic read b/#"), NULL, 0), 0);
    ALLOW(acl, "c", NULL, "a/x/c", R);
    ALLOW(acl, "c", NULL, "a/+/c", R);
    ALLOW(acl, "c", NULL, "a//c", R);
    DENY(acl, "c", NULL, "a/#", R);
    DENY(acl, "c", NULL, "a/+/#", R);
    DENY(acl, "c", NULL, "a/x/c/d", R);
    DENY(acl, "c", NULL, "a/x", R);
    ALLOW(acl, "c", NULL, "b", R);
    ALLOW(acl, "c", NULL, "b/#", R);
    ALLOW(acl, "c", NULL, "b/+/+/#", R);
    DENY(acl, "c", NULL, "#", R);
    DENY(acl, "c", NULL, "+/x", R);
    DENY(acl, "c", NULL, "bb/x", R);
    /* Malformed requests are refused. */
    DENY(acl, "c", NULL, "b/#/x", R);
    DENY(acl, "c", NULL, "b/x+", R);
    DENY(acl, "c", NULL, "", R);
    assert_int_equal(tern_broker_acl_check(acl, S("c"), NULL, 0, S("b/x"), 3), TERN_EDENIED);
    tern_broker_acl_free(acl);
}

static void test_shared_subscriptions(void **state)
{
    (void)state;
    tern_broker_acl *acl = defaults();
    ALLOW(acl, "c1", NULL, "$share/g/fleet/c1/cmd/#", R);
    DENY(acl, "c1", NULL, "$share/g/fleet/+/cmd/#", R);
    DENY(acl, "c1", NULL, "$share//fleet/c1/cmd/#", R);
    DENY(acl, "c1", NULL, "$share/g", R);
    DENY(acl, "c1", NULL, "$share/g/fleet/c1/cmd/x", W); /* only for SUBSCRIBE */
    tern_broker_acl_free(acl);
}

static char path[512];

static void write_file(const char *text)
{
    const char *dir = getenv("TERN_TEST_TMP");
    snprintf(path, sizeof path, "%s/test_acl_%d.acl", dir ? dir : "/tmp", (int)getpid());
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_file_error(const char *text, int line, const char *reason_part)
{
    write_file(text);
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    char err[512] = "";
    assert_int_equal(tern_broker_acl_load_file(acl, path, err, sizeof err), TERN_ECONFIG);
    char want[600];
    snprintf(want, sizeof want, "%s:%d: ", path, line);
    if (strncmp(err, want, strlen(want)) != 0 || !strstr(err, reason_part))
        fail_msg("for %s got '%s', want prefix '%s' and '%s'", text, err, want, reason_part);
    tern_broker_acl_free(acl);
    unlink(path);
}

static void test_file(void **state)
{
    (void)state;
    write_file("# tern acl\r\n"
               "pattern read fleet/%c/cmd/#\n"
               "topic read public/#\n"
               "user alice\n"
               "topic write alice/out\n");
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    /* A user section left open by add_line does not leak into the file's anonymous part. */
    assert_int_equal(tern_broker_acl_add_line(acl, S("user bob"), NULL, 0), 0);
    char err[256] = "";
    assert_int_equal(tern_broker_acl_load_file(acl, path, err, sizeof err), 0);
    assert_int_equal(tern_broker_acl_count(acl), 3);
    ALLOW(acl, "c1", NULL, "fleet/c1/cmd/#", R);
    ALLOW(acl, "c1", NULL, "public/x", R);
    DENY(acl, "c1", "bob", "public/x", R);
    ALLOW(acl, "c1", "alice", "alice/out", W);
    ALLOW(acl, "c1", "alice", "fleet/c1/cmd/x", R);
    DENY(acl, "c1", NULL, "fleet/c1/telemetry", W); /* a file replaces nothing: no defaults */
    tern_broker_acl_free(acl);
    unlink(path);

    expect_file_error("topic read ok\nbogus read x\n", 2, "unknown directive 'bogus'");
    expect_file_error("\n\n\ntopic read a/#/b\n", 4, "invalid topic filter");
    expect_file_error("pattern read x+\n", 1, "invalid topic filter");
    expect_file_error("user\n", 1, "user needs a name");
    expect_file_error("# c\ntopic\n", 2, "needs a topic filter");
    char err2[64] = "";
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    assert_int_equal(
        tern_broker_acl_add_line(acl, "topic read a\0b", 14, err2, sizeof err2), TERN_ECONFIG);
    assert_string_equal(err2, "NUL byte in line");
    assert_int_equal(tern_broker_acl_count(acl), 0);
    tern_broker_acl_free(acl);
}

static void test_missing_file(void **state)
{
    (void)state;
    tern_broker_acl *acl;
    assert_int_equal(tern_broker_acl_new(&acl), 0);
    char err[256] = "";
    assert_int_equal(tern_broker_acl_load_file(acl, "/nonexistent/acl", err, sizeof err), -ENOENT);
    assert_true(strncmp(err, "/nonexistent/acl: ", 18) == 0);
    tern_broker_acl_free(acl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_empty_denies_everything),
        cmocka_unit_test(test_default_rules),
        cmocka_unit_test(test_substitution_attacks),
        cmocka_unit_test(test_deny_patterns_fail_closed),
        cmocka_unit_test(test_user_sections_and_deny),
        cmocka_unit_test(test_user_sections_dollar),
        cmocka_unit_test(test_covers_edge_cases),
        cmocka_unit_test(test_shared_subscriptions),
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

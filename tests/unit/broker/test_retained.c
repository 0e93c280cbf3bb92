/*
 * test_retained.c: the retained store: set/replace/clear with reference release, matching by
 * filter ($ topics, `+`, `#`, parent match, empty levels), gauges, early stop, allocation
 * failure, pruning.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/error.h"
#include "broker/retained.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define S(str) (str), strlen(str)

/* A fake refcounted message: its topic (for checking matches) and a release counter. */
typedef struct msg {
    const char *topic;
    size_t bytes;
    int released;
} msg;

static void rel(void *ctx, void *m)
{
    (*(int *)ctx)++;
    ((msg *)m)->released++;
}

static size_t msg_bytes(void *ctx, const void *m)
{
    (void)ctx;
    return ((const msg *)m)->bytes;
}

typedef struct found {
    const char *topics[32];
    size_t n;
    size_t stop_after;
} found;

static int collect(void *ctx, void *m)
{
    found *f = ctx;
    assert_true(f->n < 32);
    f->topics[f->n++] = ((msg *)m)->topic;
    return f->stop_after && f->n == f->stop_after ? 7 : 0;
}

static bool has(const found *f, const char *topic)
{
    for (size_t i = 0; i < f->n; i++) {
        if (strcmp(f->topics[i], topic) == 0)
            return true;
    }
    return false;
}

static msg msgs[] = {
    { "sport", 5, 0 },
    { "sport/tennis", 10, 0 },
    { "sport/tennis/p1", 20, 0 },
    { "sport/golf", 30, 0 },
    { "$SYS/uptime", 40, 0 },
    { "a//b", 50, 0 },
    { "/lead", 60, 0 },
    { "fleet/d1/config", 70, 0 },
};
#define N_MSGS (sizeof msgs / sizeof msgs[0])

static int released;
static const tern_broker_retained_ops ops = { rel, msg_bytes, &released };

static tern_broker_retained *filled(void)
{
    tern_broker_retained *r;
    assert_int_equal(tern_broker_retained_new(&ops, &r), 0);
    released = 0;
    for (size_t i = 0; i < N_MSGS; i++) {
        msgs[i].released = 0;
        assert_int_equal(tern_broker_retained_set(r, S(msgs[i].topic), &msgs[i]), 0);
    }
    return r;
}

static found match(tern_broker_retained *r, const char *filter)
{
    found f = { { 0 }, 0, 0 };
    assert_int_equal(tern_broker_retained_match(r, S(filter), collect, &f), 0);
    return f;
}

static void test_match_by_filter(void **state)
{
    (void)state;
    tern_broker_retained *r = filled();
    found f = match(r, "sport/#");
    assert_int_equal(f.n, 4);
    assert_true(has(&f, "sport") && has(&f, "sport/tennis") && has(&f, "sport/tennis/p1")
        && has(&f, "sport/golf"));
    f = match(r, "sport/+");
    assert_int_equal(f.n, 2);
    assert_true(has(&f, "sport/tennis") && has(&f, "sport/golf"));
    f = match(r, "sport/tennis");
    assert_int_equal(f.n, 1);
    f = match(r, "sport/+/p1");
    assert_int_equal(f.n, 1);
    f = match(r, "+");
    assert_int_equal(f.n, 1);
    assert_true(has(&f, "sport"));
    f = match(r, "a/+/b"); /* + matches the empty level */
    assert_int_equal(f.n, 1);
    f = match(r, "+/lead");
    assert_int_equal(f.n, 1);
    f = match(r, "fleet/+/config");
    assert_int_equal(f.n, 1);
    f = match(r, "nothing/#");
    assert_int_equal(f.n, 0);
    f = match(r, "sport/tennis/p1/deeper");
    assert_int_equal(f.n, 0);
    tern_broker_retained_free(r);
    assert_int_equal(released, (int)N_MSGS);
}

static void test_dollar_rule(void **state)
{
    (void)state;
    tern_broker_retained *r = filled();
    found f = match(r, "#");
    assert_int_equal(f.n, N_MSGS - 1);
    assert_false(has(&f, "$SYS/uptime"));
    f = match(r, "+/uptime");
    assert_int_equal(f.n, 0);
    f = match(r, "$SYS/#");
    assert_int_equal(f.n, 1);
    f = match(r, "$SYS/+");
    assert_int_equal(f.n, 1);
    tern_broker_retained_free(r);
}

static void test_replace_clear_and_gauges(void **state)
{
    (void)state;
    tern_broker_retained *r;
    assert_int_equal(tern_broker_retained_new(&ops, &r), 0);
    size_t empty_mem = tern_broker_retained_memory_bytes(r);
    released = 0;
    msg a = { "x/y", 100, 0 }, b = { "x/y", 7, 0 };
    assert_int_equal(tern_broker_retained_set(r, S("x/y"), &a), 0);
    assert_int_equal(tern_broker_retained_count(r), 1);
    assert_int_equal(tern_broker_retained_bytes(r), 100);
    assert_true(tern_broker_retained_memory_bytes(r) > empty_mem);
    assert_int_equal(tern_broker_retained_set(r, S("x/y"), &b), 0); /* replace releases a */
    assert_int_equal(a.released, 1);
    assert_int_equal(b.released, 0);
    assert_ptr_equal(tern_broker_retained_get(r, S("x/y")), &b);
    assert_null(tern_broker_retained_get(r, S("x")));
    assert_int_equal(tern_broker_retained_count(r), 1);
    assert_int_equal(tern_broker_retained_bytes(r), 7);
    /* Empty payload: set NULL clears; clearing a missing topic is harmless. */
    assert_int_equal(tern_broker_retained_set(r, S("x/y"), NULL), 0);
    assert_int_equal(b.released, 1);
    assert_int_equal(tern_broker_retained_set(r, S("x/y"), NULL), 0);
    assert_int_equal(tern_broker_retained_clear(r, S("x/y")), TERN_ENOTFOUND);
    assert_int_equal(tern_broker_retained_count(r), 0);
    assert_int_equal(tern_broker_retained_bytes(r), 0);
    assert_int_equal(match(r, "#").n, 0);
    assert_int_equal(tern_broker_retained_memory_bytes(r), empty_mem); /* pruned */

    /* Clearing a parent keeps the children, and the other way round. */
    msg p = { "p", 1, 0 }, c = { "p/c", 1, 0 };
    assert_int_equal(tern_broker_retained_set(r, S("p"), &p), 0);
    assert_int_equal(tern_broker_retained_set(r, S("p/c"), &c), 0);
    assert_int_equal(tern_broker_retained_clear(r, S("p")), 0);
    assert_ptr_equal(tern_broker_retained_get(r, S("p/c")), &c);
    assert_int_equal(match(r, "p/#").n, 1);
    assert_int_equal(tern_broker_retained_set(r, S("p"), &p), 0);
    assert_int_equal(tern_broker_retained_clear(r, S("p/c")), 0);
    assert_int_equal(match(r, "p/#").n, 1);
    assert_int_equal(tern_broker_retained_clear(r, S("p")), 0);
    assert_int_equal(tern_broker_retained_memory_bytes(r), empty_mem);
    assert_int_equal(released, 5);
    tern_broker_retained_free(r);
    assert_int_equal(released, 5);
}

static void test_bad_topics_and_filters(void **state)
{
    (void)state;
    tern_broker_retained *r = filled();
    msg m = { "bad", 1, 0 };
    assert_int_equal(tern_broker_retained_set(r, S(""), &m), TERN_EINVAL);
    assert_int_equal(tern_broker_retained_set(r, S("a/+"), &m), TERN_EINVAL);
    assert_int_equal(tern_broker_retained_set(r, S("a/#"), &m), TERN_EINVAL);
    char deep[1024];
    size_t n = 0;
    for (int i = 0; i < 300; i++) {
        deep[n++] = 'd';
        deep[n++] = '/';
    }
    deep[n - 1] = '\0';
    assert_int_equal(tern_broker_retained_set(r, S(deep), &m), TERN_EINVAL);
    assert_int_equal(m.released, 0);
    assert_int_equal(match(r, "sport/#/x").n, 0);
    assert_int_equal(match(r, "spo+").n, 0);
    assert_int_equal(match(r, "").n, 0);
    assert_int_equal(tern_broker_retained_count(r), N_MSGS);
    tern_broker_retained_free(r);
}

static void test_match_stops_early(void **state)
{
    (void)state;
    tern_broker_retained *r = filled();
    found f = { { 0 }, 0, 2 };
    assert_int_equal(tern_broker_retained_match(r, S("#"), collect, &f), 7);
    assert_int_equal(f.n, 2);
    tern_broker_retained_free(r);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    tern_broker_retained *r = filled();
    size_t mem = tern_broker_retained_memory_bytes(r);
    msg m = { "new/deep/topic", 3, 0 };
    long n;
    for (n = 0; n < 10; n++) {
        tern_alloc_fail_after(n);
        int rc = tern_broker_retained_set(r, S("new/deep/topic"), &m);
        tern_alloc_fail_after(-1);
        if (rc == 0)
            break;
        assert_int_equal(rc, TERN_ENOMEM);
        assert_int_equal(tern_broker_retained_memory_bytes(r), mem);
        assert_int_equal(tern_broker_retained_count(r), N_MSGS);
    }
    assert_true(n >= 3);
    assert_int_equal(tern_broker_retained_count(r), N_MSGS + 1);
    tern_broker_retained_free(r);
    assert_int_equal(m.released, 1);
}

static void test_many_devices(void **state)
{
    (void)state;
    enum { N = 20000 };
    static msg ms[N];
    static char topics[N][32];
    tern_broker_retained *r;
    assert_int_equal(tern_broker_retained_new(&ops, &r), 0);
    released = 0;
    for (int i = 0; i < N; i++) {
        snprintf(topics[i], sizeof topics[i], "fleet/d%d/config", i);
        ms[i] = (msg) { topics[i], 10, 0 };
        assert_int_equal(tern_broker_retained_set(r, S(topics[i]), &ms[i]), 0);
    }
    assert_int_equal(tern_broker_retained_count(r), N);
    assert_int_equal(tern_broker_retained_bytes(r), 10 * N);
    found f = match(r, "fleet/d12345/config");
    assert_int_equal(f.n, 1);
    assert_string_equal(f.topics[0], "fleet/d12345/config");
    printf("retained: %d config messages: %.1f bytes of index each\n", N,
        (double)tern_broker_retained_memory_bytes(r) / N);
    tern_broker_retained_free(r);
    assert_int_equal(released, N);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_match_by_filter),
        cmocka_unit_test(test_dollar_rule),
        cmocka_unit_test(test_replace_clear_and_gauges),
        cmocka_unit_test(test_bad_topics_and_filters),
        cmocka_unit_test(test_match_stops_early),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_many_devices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_metrics.c: registration (idempotent, typed, validated), lock-free updates from threads,
 * and the exact Prometheus 0.0.4 text: HELP/TYPE, label escaping, summaries in seconds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/metrics.h"

#include <pthread.h>
#include <string.h>

static tern_metrics *reg;

static int setup(void **state)
{
    (void)state;
    return tern_metrics_create(&reg);
}

static int teardown(void **state)
{
    (void)state;
    tern_metrics_destroy(reg);
    reg = NULL;
    return 0;
}

/* render returns the registry's text (NUL-terminated, static storage). */
static const char *render(void)
{
    static char text[8192];
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_metrics_render(reg, &b), 0);
    assert_true(b.len < sizeof text);
    memcpy(text, b.data ? (const char *)b.data : "", b.len);
    text[b.len] = '\0';
    tern_buf_free(&b);
    return text;
}

static void test_counter_and_gauge_render(void **state)
{
    (void)state;
    tern_metrics_counter *q0, *q1, *again;
    tern_metrics_gauge *g;
    tern_metrics_label l0[] = { { "qos", "0" } };
    tern_metrics_label l1[] = { { "qos", "1" } };
    const char *name = "tern_broker_messages_received_total";
    assert_int_equal(tern_metrics_add_counter(reg, name, "Messages received.", l0, 1, &q0), 0);
    assert_int_equal(tern_metrics_add_counter(reg, name, "Messages received.", l1, 1, &q1), 0);
    assert_int_equal(tern_metrics_add_counter(reg, name, "ignored", l1, 1, &again), 0);
    assert_ptr_equal(again, q1);
    assert_int_equal(
        tern_metrics_add_gauge(reg, "tern_broker_connections", "Open connections.", NULL, 0, &g),
        0);
    tern_metrics_counter_add(q0, 41);
    tern_metrics_counter_inc(q0);
    tern_metrics_counter_inc(q1);
    tern_metrics_gauge_set(g, 10);
    tern_metrics_gauge_add(g, -13);
    assert_int_equal(tern_metrics_counter_get(q0), 42);
    assert_int_equal(tern_metrics_gauge_get(g), -3);
    assert_string_equal(render(),
        "# HELP tern_broker_messages_received_total Messages received.\n"
        "# TYPE tern_broker_messages_received_total counter\n"
        "tern_broker_messages_received_total{qos=\"0\"} 42\n"
        "tern_broker_messages_received_total{qos=\"1\"} 1\n"
        "# HELP tern_broker_connections Open connections.\n"
        "# TYPE tern_broker_connections gauge\n"
        "tern_broker_connections -3\n");
}

/* A counter following a total kept elsewhere: growth is added, a reset source adds nothing. */
static void test_counter_follow(void **state)
{
    (void)state;
    tern_metrics_counter *c;
    assert_int_equal(tern_metrics_add_counter(reg, "tern_x_total", "x", NULL, 0, &c), 0);
    uint64_t seen = 0;
    tern_metrics_counter_follow(c, &seen, 5);
    tern_metrics_counter_follow(c, &seen, 5);
    tern_metrics_counter_follow(c, &seen, 12);
    assert_int_equal(tern_metrics_counter_get(c), 12);
    assert_int_equal(seen, 12);
    tern_metrics_counter_follow(c, &seen, 3); /* the source started again */
    assert_int_equal(tern_metrics_counter_get(c), 12);
    tern_metrics_counter_follow(c, &seen, 4);
    assert_int_equal(tern_metrics_counter_get(c), 13);
}

static void test_escaping(void **state)
{
    (void)state;
    tern_metrics_counter *c;
    tern_metrics_label l[] = { { "path", "a\\b\"c\nd" }, { "node", "n1" } };
    assert_int_equal(
        tern_metrics_add_counter(reg, "x_total", "Help with \\ and\nnewline \"q\".", l, 2, &c), 0);
    assert_string_equal(render(),
        "# HELP x_total Help with \\\\ and\\nnewline \"q\".\n"
        "# TYPE x_total counter\n"
        "x_total{path=\"a\\\\b\\\"c\\nd\",node=\"n1\"} 0\n");
}

static void test_histogram_summary(void **state)
{
    (void)state;
    tern_metrics_histogram *h, *empty;
    tern_metrics_label l[] = { { "stage", "log" } };
    tern_metrics_label l2[] = { { "stage", "tsdb" } };
    assert_int_equal(
        tern_metrics_add_histogram(reg, "tern_append_seconds", "Append latency.", l, 1, 1e9, &h),
        0);
    assert_int_equal(tern_metrics_add_histogram(
                         reg, "tern_append_seconds", "Append latency.", l2, 1, 1e9, &empty),
        0);
    /* 1000 values: 1 ms .. 1000 ms, recorded in ns, rendered in seconds. */
    for (uint64_t i = 1; i <= 1000; i++)
        tern_metrics_histogram_record(h, i * 1000000u);
    assert_int_equal(tern_histogram_count(tern_metrics_histogram_get(h)), 1000);
    const char *text = render();
    assert_non_null(strstr(text, "# TYPE tern_append_seconds summary\n"));
    assert_non_null(strstr(text, "tern_append_seconds{stage=\"log\",quantile=\"0.5\"} 0.5"));
    assert_non_null(strstr(text, "tern_append_seconds{stage=\"log\",quantile=\"0.99\"} 0.99"));
    assert_non_null(strstr(text, "tern_append_seconds{stage=\"log\",quantile=\"0.999\"} 1\n"));
    assert_non_null(strstr(text, "tern_append_seconds_sum{stage=\"log\"} 500.5\n"));
    assert_non_null(strstr(text, "tern_append_seconds_count{stage=\"log\"} 1000\n"));
    assert_non_null(strstr(text, "tern_append_seconds{stage=\"tsdb\",quantile=\"0.9\"} NaN\n"));
    assert_non_null(strstr(text, "tern_append_seconds_count{stage=\"tsdb\"} 0\n"));
    /* Exactly one HELP/TYPE pair for the family. */
    int n_type = 0;
    for (const char *p = text; (p = strstr(p, "# TYPE")) != NULL; p++)
        n_type++;
    assert_int_equal(n_type, 1);
}

static void test_validation(void **state)
{
    (void)state;
    tern_metrics_counter *c = NULL;
    tern_metrics_gauge *g = NULL;
    tern_metrics_histogram *h = NULL;
    assert_int_equal(tern_metrics_add_counter(reg, "9lives", "", NULL, 0, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "", "", NULL, 0, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "a-b", "", NULL, 0, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "ns:ok_total", "", NULL, 0, &c), 0);
    tern_metrics_label reserved[] = { { "__name", "x" } };
    tern_metrics_label colon[] = { { "a:b", "x" } };
    tern_metrics_label dup[] = { { "a", "x" }, { "a", "y" } };
    tern_metrics_label bad_utf8[] = { { "a", "\xc3\x28" } };
    tern_metrics_label five[]
        = { { "a", "1" }, { "b", "2" }, { "c", "3" }, { "d", "4" }, { "e", "5" } };
    tern_metrics_label quantile[] = { { "quantile", "0.5" } };
    assert_int_equal(tern_metrics_add_counter(reg, "m", "", reserved, 1, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "m", "", colon, 1, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "m", "", dup, 2, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "m", "", bad_utf8, 1, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "m", "", five, 5, &c), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_counter(reg, "m", "", five, 4, &c), 0);
    assert_int_equal(tern_metrics_add_counter(reg, "q", "", quantile, 1, &c), 0);
    assert_int_equal(tern_metrics_add_histogram(reg, "h", "", quantile, 1, 1.0, &h), TERN_EINVAL);
    assert_int_equal(tern_metrics_add_histogram(reg, "h", "", NULL, 0, 0.0, &h), TERN_EINVAL);
    /* Same name, other type or unit. */
    assert_int_equal(tern_metrics_add_gauge(reg, "m", "", NULL, 0, &g), TERN_EEXIST);
    assert_int_equal(tern_metrics_add_histogram(reg, "h", "", NULL, 0, 1e3, &h), 0);
    assert_int_equal(tern_metrics_add_histogram(reg, "h", "", NULL, 0, 1e6, &h), TERN_EEXIST);
    assert_null(g);
    assert_true(tern_metrics_name_valid("tern_x:y_1"));
    assert_false(tern_metrics_label_name_valid("1a"));
    assert_true(tern_metrics_label_name_valid("_a"));
    assert_true(strstr(render(), "m{a=\"1\",b=\"2\",c=\"3\",d=\"4\"} 0\n") != NULL);
}

static void test_out_of_memory(void **state)
{
    (void)state;
    tern_metrics_counter *c = NULL;
    tern_metrics_label l[] = { { "a", "1" } };
    /* Fail each allocation of a registration in turn: no leak, no handle, then success. */
    for (long n = 0; n < 8; n++) {
        tern_alloc_fail_after(n);
        int rc = tern_metrics_add_counter(reg, "oom_total", "h", l, 1, &c);
        tern_alloc_fail_after(-1);
        if (rc == 0)
            break;
        assert_int_equal(rc, TERN_ENOMEM);
        assert_null(c);
    }
    assert_non_null(c);
    tern_buf b = TERN_BUF_INIT;
    tern_alloc_fail_after(0);
    assert_int_equal(tern_metrics_render(reg, &b), TERN_ENOMEM);
    tern_alloc_fail_after(-1);
    tern_buf_free(&b);
}

static void *bump(void *arg)
{
    tern_metrics_counter *c = arg;
    for (int i = 0; i < 100000; i++)
        tern_metrics_counter_inc(c);
    return NULL;
}

static void test_threads_and_default_registry(void **state)
{
    (void)state;
    tern_metrics_counter *c, *c2;
    assert_int_equal(
        tern_metrics_add_counter(NULL, "tern_test_bumps_total", "Bumps.", NULL, 0, &c), 0);
    assert_int_equal(tern_metrics_add_counter(
                         tern_metrics_default(), "tern_test_bumps_total", "Bumps.", NULL, 0, &c2),
        0);
    assert_ptr_equal(c, c2);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, bump, c), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(tern_metrics_counter_get(c), 200000);
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_metrics_render(NULL, &b), 0);
    assert_int_equal(tern_buf_append_u8(&b, 0), 0);
    assert_non_null(strstr((const char *)b.data, "tern_test_bumps_total 200000\n"));
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_counter_and_gauge_render, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counter_follow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escaping, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_summary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_memory, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_and_default_registry, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

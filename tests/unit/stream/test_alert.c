/*
 * test_alert.c: alert rules in event time (stream/alert.h): each rule kind fires and resolves
 * exactly once, for-duration boundaries, hysteresis, rate per unit, absence against the
 * watermark and via Last Will, device filters, no flapping on duplicate or out-of-order points,
 * callback failures retried, parse errors with file:line, and the reported state bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "stream/alert.h"

#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_EVENTS 64

typedef struct rec_event {
    char device[64];
    char rule[72];
    bool firing;
    int64_t ts_ms;
    double value;
    char reason[160];
} rec_event;

typedef struct recorder {
    rec_event ev[MAX_EVENTS];
    size_t n;
    int fail_next; /* returned (once) instead of recording, when nonzero */
} recorder;

static int record(void *arg, const tern_alert_event *e)
{
    recorder *r = arg;
    if (r->fail_next) {
        int rc = r->fail_next;
        r->fail_next = 0;
        return rc;
    }
    assert_true(r->n < MAX_EVENTS);
    rec_event *x = &r->ev[r->n++];
    snprintf(x->device, sizeof x->device, "%.*s", (int)e->device_len, e->device);
    snprintf(x->rule, sizeof x->rule, "%s", e->rule);
    x->firing = e->firing;
    x->ts_ms = e->ts_ms;
    x->value = e->value;
    snprintf(x->reason, sizeof x->reason, "%s", e->reason);
    return 0;
}

typedef struct fixture {
    tern_alert_rules *rules;
    tern_alert_engine *eng;
    recorder rec;
} fixture;

static fixture *setup_rules(const char *text)
{
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    char err[256];
    int rc = tern_alert_rules_parse(text, strlen(text), "t.rules", &f->rules, err, sizeof err);
    if (rc != 0)
        fail_msg("parse: %s", err);
    assert_int_equal(tern_alert_engine_new(f->rules, record, &f->rec, &f->eng), 0);
    return f;
}

static void teardown_rules(fixture *f)
{
    tern_alert_engine_free(f->eng);
    tern_alert_rules_free(f->rules);
    free(f);
}

static int pt(fixture *f, const char *dev, const char *metric, int64_t ts, double v)
{
    return tern_alert_point(f->eng, dev, strlen(dev), metric, strlen(metric), ts, v);
}

static void check_event(const rec_event *x, const char *dev, const char *rule, bool firing,
    int64_t ts, const char *reason)
{
    assert_string_equal(x->device, dev);
    assert_string_equal(x->rule, rule);
    assert_int_equal(x->firing, firing);
    assert_int_equal(x->ts_ms, ts);
    if (reason)
        assert_string_equal(x->reason, reason);
}

static void test_threshold_for_duration_boundary(void **state)
{
    (void)state;
    fixture *f = setup_rules("low = soc below 15 for 5m\n");
    assert_int_equal(pt(f, "ev1", "soc", 0, 10), 0);
    assert_int_equal(pt(f, "ev1", "soc", 299999, 11), 0); /* 1 ms short of 5m */
    assert_int_equal(f->rec.n, 0);
    assert_int_equal(pt(f, "ev1", "soc", 300000, 12.5), 0); /* exactly 5m */
    assert_int_equal(f->rec.n, 1);
    check_event(&f->rec.ev[0], "ev1", "low", true, 300000, "soc 12.5 below 15 for 5m");
    assert_true(f->rec.ev[0].value == 12.5);
    assert_int_equal(pt(f, "ev1", "soc", 310000, 9), 0);  /* still below: no second fire */
    assert_int_equal(pt(f, "ev1", "soc", 320000, 15), 0); /* not below 15: resolves */
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "ev1", "low", false, 320000, "soc 15 not below 15");
    assert_int_equal(pt(f, "ev1", "soc", 330000, 40), 0);
    assert_int_equal(f->rec.n, 2);

    /* the condition must hold continuously: a point above it restarts the clock */
    assert_int_equal(pt(f, "ev1", "soc", 400000, 10), 0);
    assert_int_equal(pt(f, "ev1", "soc", 500000, 20), 0);
    assert_int_equal(pt(f, "ev1", "soc", 600000, 10), 0);
    assert_int_equal(pt(f, "ev1", "soc", 700000, 10), 0); /* 100 s since the restart */
    assert_int_equal(f->rec.n, 2);
    assert_int_equal(pt(f, "ev1", "soc", 900000, 10), 0); /* 5m since 600000 */
    assert_int_equal(f->rec.n, 3);
    check_event(&f->rec.ev[2], "ev1", "low", true, 900000, NULL);

    tern_alert_stats st;
    tern_alert_get_stats(f->eng, &st);
    assert_int_equal(st.n_fired, 2);
    assert_int_equal(st.n_resolved, 1);
    assert_int_equal(st.n_firing, 1);
    teardown_rules(f);
}

static void test_threshold_above_other_metrics_ignored(void **state)
{
    (void)state;
    fixture *f = setup_rules("hot = temp above 60\n");
    assert_int_equal(pt(f, "d", "soc", 1, 99), 0);  /* another metric */
    assert_int_equal(pt(f, "d", "temp", 2, 60), 0); /* not strictly above */
    assert_int_equal(f->rec.n, 0);
    assert_int_equal(pt(f, "d", "temp", 3, 61), 0); /* for 0: fires at once */
    assert_int_equal(f->rec.n, 1);
    check_event(&f->rec.ev[0], "d", "hot", true, 3, "temp 61 above 60");
    assert_int_equal(pt(f, "d", "temp", 4, NAN), 0); /* NaN neither holds nor resolves */
    assert_int_equal(f->rec.n, 1);
    assert_int_equal(pt(f, "d", "temp", 5, 59), 0);
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "d", "hot", false, 5, NULL);
    teardown_rules(f);
}

static void test_hysteresis(void **state)
{
    (void)state;
    fixture *f = setup_rules("low = soc below 15 resolve_above 20\n"
                             "hot = temp above 80 for 10s resolve_below 70\n");
    assert_int_equal(pt(f, "d", "soc", 1000, 10), 0);
    assert_int_equal(f->rec.n, 1);
    assert_int_equal(pt(f, "d", "soc", 2000, 16), 0); /* not below 15, not above 20 */
    assert_int_equal(pt(f, "d", "soc", 3000, 20), 0); /* resolve_above is strict */
    assert_int_equal(pt(f, "d", "soc", 4000, 14), 0); /* still firing: no second fire */
    assert_int_equal(f->rec.n, 1);
    assert_int_equal(pt(f, "d", "soc", 5000, 20.5), 0);
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "d", "low", false, 5000, "soc 20.5 above 20");

    assert_int_equal(pt(f, "d", "temp", 0, 85), 0);
    assert_int_equal(pt(f, "d", "temp", 10000, 90), 0);
    assert_int_equal(f->rec.n, 3);
    check_event(&f->rec.ev[2], "d", "hot", true, 10000, "temp 90 above 80 for 10s");
    assert_int_equal(pt(f, "d", "temp", 11000, 75), 0);
    assert_int_equal(pt(f, "d", "temp", 12000, 70), 0);
    assert_int_equal(f->rec.n, 3);
    assert_int_equal(pt(f, "d", "temp", 13000, 69), 0);
    assert_int_equal(f->rec.n, 4);
    check_event(&f->rec.ev[3], "d", "hot", false, 13000, NULL);
    teardown_rules(f);
}

static void test_rate_per_unit(void **state)
{
    (void)state;
    fixture *f = setup_rules("drop = soc rate below -10 per 1m\n");
    assert_int_equal(pt(f, "d", "soc", 0, 80), 0);
    assert_int_equal(pt(f, "d", "soc", 30000, 76), 0); /* -4 in 30 s = -8 per minute */
    assert_int_equal(f->rec.n, 0);
    assert_int_equal(pt(f, "d", "soc", 60000, 70), 0); /* -6 in 30 s = -12 per minute */
    assert_int_equal(f->rec.n, 1);
    check_event(&f->rec.ev[0], "d", "drop", true, 60000, "soc rate -12 per 1m below -10");
    assert_float_equal(f->rec.ev[0].value, -12.0, 1e-9);
    assert_int_equal(pt(f, "d", "soc", 70000, 67), 0); /* -3 in 10 s = -18: still firing */
    assert_int_equal(f->rec.n, 1);
    assert_int_equal(pt(f, "d", "soc", 130000, 62), 0); /* -5 in 60 s */
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "d", "drop", false, 130000, "soc rate -5 per 1m not below -10");
    assert_float_equal(f->rec.ev[1].value, -5.0, 1e-9);
    teardown_rules(f);
}

static void test_absence_against_watermark(void **state)
{
    (void)state;
    fixture *f = setup_rules("silent = no data for 5m\n");
    assert_int_equal(tern_alert_tick(f->eng, INT64_MIN), 0);
    assert_int_equal(pt(f, "d", "soc", 1000, 50), 0);
    assert_int_equal(pt(f, "d", "temp", 900, 20), 0); /* older: the silence starts at 1000 */
    assert_int_equal(tern_alert_tick(f->eng, 300999), 0);
    assert_int_equal(f->rec.n, 0);
    assert_int_equal(tern_alert_tick(f->eng, 301000), 0);
    assert_int_equal(f->rec.n, 1);
    check_event(&f->rec.ev[0], "d", "silent", true, 301000, "no data for 5m");
    assert_true(isnan(f->rec.ev[0].value));
    assert_int_equal(tern_alert_tick(f->eng, 900000), 0); /* no second fire */
    assert_int_equal(tern_alert_tick(f->eng, 100), 0);    /* a lower watermark is harmless */
    assert_int_equal(f->rec.n, 1);
    /* backfill from inside the gap does not end it */
    assert_int_equal(pt(f, "d", "soc", 200000, 50), 0);
    assert_int_equal(f->rec.n, 1);
    assert_int_equal(pt(f, "d", "soc", 310000, 50), 0);
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "d", "silent", false, 310000, "data back");
    /* silent again: fires again, once */
    assert_int_equal(tern_alert_tick(f->eng, 609999), 0);
    assert_int_equal(f->rec.n, 2);
    assert_int_equal(tern_alert_tick(f->eng, 700000), 0);
    assert_int_equal(tern_alert_tick(f->eng, 800000), 0);
    assert_int_equal(f->rec.n, 3);
    check_event(&f->rec.ev[2], "d", "silent", true, 610000, NULL);
    teardown_rules(f);
}

static void test_absence_of_one_metric_many_devices(void **state)
{
    (void)state;
    fixture *f = setup_rules("gps_lost = no data for 1m metric gps on_will\n");
    /* d(i) last sent gps at ((i * 7) % 20) s: deadlines 60 s .. 79 s in a shuffled order */
    for (int i = 0; i < 20; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "d%02d", i);
        assert_int_equal(pt(f, dev, "gps", (int64_t)((i * 7) % 20) * 1000, 1), 0);
        assert_int_equal(pt(f, dev, "soc", 500000, 1), 0); /* other metrics do not count */
    }
    /* wills take d03 (deadline 61 s) and d06 (62 s) out of the waiting set */
    assert_int_equal(tern_alert_will(f->eng, "d03", 3, 1), 0);
    assert_int_equal(tern_alert_will(f->eng, "d06", 3, 2), 0);
    assert_int_equal(f->rec.n, 2);
    assert_int_equal(tern_alert_tick(f->eng, 60000 + 9999), 0);
    static const int64_t want_s[] = { 60, 63, 64, 65, 66, 67, 68, 69 };
    assert_int_equal(f->rec.n, 2 + 8);
    for (size_t k = 0; k < 8; k++) {
        assert_int_equal(f->rec.ev[2 + k].ts_ms, want_s[k] * 1000);
        assert_string_equal(f->rec.ev[2 + k].reason, "no gps data for 1m");
    }
    assert_int_equal(tern_alert_tick(f->eng, 200000), 0);
    assert_int_equal(f->rec.n, 20);
    int64_t prev = 0;
    for (size_t k = 2; k < 20; k++) {
        assert_true(f->rec.ev[k].ts_ms > prev);
        prev = f->rec.ev[k].ts_ms;
    }
    teardown_rules(f);
}

static void test_absence_via_will(void **state)
{
    (void)state;
    fixture *f = setup_rules("gone = no data for 10m on_will\n"
                             "quiet = no data for 10m\n");
    assert_int_equal(pt(f, "d", "soc", 1000, 50), 0);
    assert_int_equal(tern_alert_will(f->eng, "d", 1, 5000), 0);
    assert_int_equal(f->rec.n, 1);
    check_event(&f->rec.ev[0], "d", "gone", true, 5000, "last will");
    assert_true(isnan(f->rec.ev[0].value));
    assert_int_equal(tern_alert_will(f->eng, "d", 1, 6000), 0); /* already firing */
    assert_int_equal(tern_alert_tick(f->eng, 601000), 0);       /* quiet fires; gone does not */
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "d", "quiet", true, 601000, NULL);
    /* offline backfill older than the firing times resolves neither */
    assert_int_equal(pt(f, "d", "soc", 4000, 50), 0);
    assert_int_equal(f->rec.n, 2);
    assert_int_equal(pt(f, "d", "soc", 700000, 50), 0);
    assert_int_equal(f->rec.n, 4);
    assert_false(f->rec.ev[2].firing);
    assert_false(f->rec.ev[3].firing);
    assert_int_equal(f->rec.ev[2].ts_ms, 700000);

    /* a will from a device never seen still fires */
    assert_int_equal(tern_alert_will(f->eng, "new", 3, 42), 0);
    assert_int_equal(f->rec.n, 5);
    check_event(&f->rec.ev[4], "new", "gone", true, 42, "last will");
    assert_int_equal(tern_alert_will(f->eng, "", 0, 42), TERN_EINVAL);
    teardown_rules(f);
}

static void test_device_filter(void **state)
{
    (void)state;
    fixture *f = setup_rules("fleet = t above 50 device ev-*\n"
                             "one = t above 50 device ev-7\n"
                             "all = t above 50 device *\n");
    assert_int_equal(pt(f, "ev-1", "t", 1, 60), 0);
    assert_int_equal(pt(f, "ev-7", "t", 1, 60), 0);
    assert_int_equal(pt(f, "ev-77", "t", 1, 60), 0);
    assert_int_equal(pt(f, "meter-1", "t", 1, 60), 0);
    assert_int_equal(f->rec.n, 8);
    const char *want[][2]
        = { { "ev-1", "fleet" }, { "ev-1", "all" }, { "ev-7", "fleet" }, { "ev-7", "one" },
              { "ev-7", "all" }, { "ev-77", "fleet" }, { "ev-77", "all" }, { "meter-1", "all" } };
    for (size_t i = 0; i < 8; i++)
        check_event(&f->rec.ev[i], want[i][0], want[i][1], true, 1, NULL);
    tern_alert_stats st;
    tern_alert_get_stats(f->eng, &st);
    assert_int_equal(st.n_devices, 4);
    assert_int_equal(st.n_states, 8);
    teardown_rules(f);
}

static void test_duplicates_and_out_of_order_do_not_flap(void **state)
{
    (void)state;
    fixture *f = setup_rules("hot = t above 50 for 20s\n");
    assert_int_equal(pt(f, "d", "t", 10000, 60), 0);
    assert_int_equal(pt(f, "d", "t", 5000, 10), 0);  /* older and not above: ignored */
    assert_int_equal(pt(f, "d", "t", 10000, 10), 0); /* duplicate ts: ignored */
    assert_int_equal(pt(f, "d", "t", 30000, 60), 0); /* 20 s since 10000: fires */
    assert_int_equal(f->rec.n, 1);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(pt(f, "d", "t", 30000, 60), 0);    /* re-sends */
        assert_int_equal(pt(f, "d", "t", 20000 + i, 0), 0); /* stale values below */
    }
    assert_int_equal(f->rec.n, 1);
    assert_int_equal(pt(f, "d", "t", 40000, 10), 0);
    assert_int_equal(pt(f, "d", "t", 35000, 99), 0); /* stale value above: no re-fire */
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "d", "hot", false, 40000, NULL);
    tern_alert_stats st;
    tern_alert_get_stats(f->eng, &st);
    assert_int_equal(st.n_ignored_old, 13);
    assert_int_equal(st.n_fired, 1);
    assert_int_equal(st.n_resolved, 1);
    teardown_rules(f);
}

static void test_callback_failure_is_retried(void **state)
{
    (void)state;
    fixture *f = setup_rules("hot = t above 50\nsilent = no data for 1s\n");
    f->rec.fail_next = -77;
    assert_int_equal(pt(f, "d", "t", 100, 60), -77);
    assert_int_equal(f->rec.n, 0);
    assert_int_equal(pt(f, "d", "t", 100, 60), 0); /* the same point again */
    assert_int_equal(f->rec.n, 1);
    check_event(&f->rec.ev[0], "d", "hot", true, 100, NULL);
    f->rec.fail_next = -78;
    assert_int_equal(tern_alert_tick(f->eng, 5000), -78);
    assert_int_equal(tern_alert_tick(f->eng, 5000), 0);
    assert_int_equal(f->rec.n, 2);
    check_event(&f->rec.ev[1], "d", "silent", true, 1100, NULL);
    tern_alert_stats st;
    tern_alert_get_stats(f->eng, &st);
    assert_int_equal(st.n_fired, 2);
    assert_int_equal(tern_alert_point(f->eng, "d", 1, "t", 1, INT64_MAX, 1), TERN_EINVAL);
    assert_int_equal(tern_alert_point(f->eng, "d", 1, "", 0, 1, 1), TERN_EINVAL);
    assert_int_equal(tern_alert_tick(f->eng, INT64_MAX), TERN_EINVAL);
    teardown_rules(f);
}

static void test_state_bytes(void **state)
{
    (void)state;
    fixture *f = setup_rules("low = soc below 15 for 5m\n"
                             "drop = soc rate below -10 per 1m\n"
                             "silent = no data for 5m on_will\n");
    tern_alert_stats st0;
    tern_alert_get_stats(f->eng, &st0);
    assert_true(st0.state_bytes > 0);
    for (int i = 0; i < 1000; i++) {
        char dev[16];
        snprintf(dev, sizeof dev, "ev-%04d", i);
        for (int k = 0; k < 10; k++)
            assert_int_equal(pt(f, dev, "soc", k * 10000, 50), 0);
    }
    tern_alert_stats st;
    tern_alert_get_stats(f->eng, &st);
    assert_int_equal(st.n_devices, 1000);
    assert_int_equal(st.n_states, 3000);
    assert_int_equal(st.n_points, 10000);
    uint64_t per_device = (st.state_bytes - st0.state_bytes) / 1000;
    print_message(
        "alert state: %llu bytes per device with 3 rules\n", (unsigned long long)per_device);
    assert_true(per_device >= 3 * 40); /* at least the states themselves */
    assert_true(per_device <= 400);    /* bounded: fixed per (device, rule) */
    /* more points do not grow the state */
    for (int k = 10; k < 100; k++)
        assert_int_equal(pt(f, "ev-0001", "soc", k * 10000, 50), 0);
    tern_alert_stats st2;
    tern_alert_get_stats(f->eng, &st2);
    assert_int_equal(st2.state_bytes, st.state_bytes);
    teardown_rules(f);
}

static void test_parse_valid_file(void **state)
{
    (void)state;
    const char *text = "# rules\r\n"
                       "\n"
                       "   low_soc = soc below 15 for 5m resolve_above 20 device ev-*  # EVs\r\n"
                       "drop=soc rate above 2.5 per 1h for 10s\n"
                       "gone = no data for 2m metric gps on_will device ev-7\n"
                       "a.b-c = t above -1e3";
    tern_alert_rules *r = NULL;
    char err[128];
    assert_int_equal(tern_alert_rules_parse(text, strlen(text), "r", &r, err, sizeof err), 0);
    assert_int_equal(tern_alert_rules_count(r), 4);
    tern_alert_rules_free(r);
    assert_int_equal(tern_alert_rules_parse("", 0, "r", &r, err, sizeof err), 0);
    assert_int_equal(tern_alert_rules_count(r), 0);
    tern_alert_rules_free(r);
}

static void test_parse_errors_have_file_and_line(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *want;
    } cases[] = {
        { "low = soc under 15", "r.conf:3: threshold needs 'above' or 'below'" },
        { "x = soc below abc", "r.conf:3: expected a number after 'below', got 'abc'" },
        { "x = soc below", "r.conf:3: expected a number after 'below', got ''" },
        { "x = soc below 15 for 5min", "r.conf:3: expected a duration such as 250ms" },
        { "x = soc below 15 for -5s", "r.conf:3: expected a duration" },
        { "x = soc rate sideways 5 per 1m", "r.conf:3: rate needs 'above' or 'below'" },
        { "x = soc rate above 5", "r.conf:3: rate needs 'per DURATION'" },
        { "x = soc rate above 5 per 0",
            "r.conf:3: expected a duration such as 250ms, 10s, 5m, "
            "2h or 7d (not 0) after 'per', got '0'" },
        { "x = no data", "r.conf:3: absence needs 'no data for DURATION'" },
        { "x = no data for 0", "r.conf:3: expected a duration" },
        { "x = soc below 15 resolve_below 10",
            "r.conf:3: 'resolve_below' goes with 'above' rules" },
        { "x = soc below 15 resolve_above 10", "r.conf:3: resolve_above 10 is below the bound 15" },
        { "x = soc below 15 on_will", "r.conf:3: 'on_will' applies only to absence rules" },
        { "x = soc below 15 per 1m", "r.conf:3: 'per' applies only to rate rules" },
        { "x = no data for 5m for 1m", "r.conf:3: 'for' does not apply to absence rules" },
        { "x = soc below 15 colour red", "r.conf:3: unknown word 'colour'" },
        { "x = soc below 15 device a*b", "r.conf:3: bad device pattern 'a*b'" },
        { "x = soc below 15 device", "r.conf:3: 'device' needs a value" },
        { "x = soc below 15 for 1m for 2m", "r.conf:3: 'for' given twice" },
        { "soc below 15", "r.conf:3: expected 'NAME = RULE', got 'soc below 15'" },
        { "bad/name = soc below 1", "r.conf:3: bad rule name 'bad/name'" },
        { "ok = soc below 1", "r.conf:3: rule 'ok' already defined at line 2" },
        { "x =", "r.conf:3: rule 'x' has no condition" },
        { "= soc below 1", "r.conf:3: a rule name needs 1 to 64 characters" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char text[256];
        int n = snprintf(
            text, sizeof text, "# header\nok = t above 1\n%s\nlater = t above 2\n", cases[i].line);
        tern_alert_rules *r = (tern_alert_rules *)0x1;
        char err[256];
        int rc = tern_alert_rules_parse(text, (size_t)n, "r.conf", &r, err, sizeof err);
        if (rc != TERN_ECONFIG || strncmp(err, cases[i].want, strlen(cases[i].want)) != 0)
            fail_msg(
                "line '%s': rc %d, err '%s', want '%s'", cases[i].line, rc, err, cases[i].want);
        assert_ptr_equal(r, (tern_alert_rules *)0x1); /* out untouched on failure */
    }
    /* a NUL byte, and a line too long */
    static const char nul[] = "ok = t above 1\nx = t\0 above 1\n";
    tern_alert_rules *r = NULL;
    char err[128];
    assert_int_equal(
        tern_alert_rules_parse(nul, sizeof nul - 1, "n.rules", &r, err, sizeof err), TERN_ECONFIG);
    assert_string_equal(err, "n.rules:2: NUL byte in the line");
    char *big = malloc(10000);
    assert_non_null(big);
    memset(big, 'a', 10000);
    assert_int_equal(tern_alert_rules_parse(big, 10000, "b", &r, err, sizeof err), TERN_ECONFIG);
    assert_string_equal(err, "b:1: line longer than 4096 bytes");
    free(big);
    /* a tiny error buffer is truncated, still NUL-terminated */
    char tiny[8];
    assert_int_equal(tern_alert_rules_parse("x y", 3, "file", &r, tiny, sizeof tiny), TERN_ECONFIG);
    assert_string_equal(tiny, "file:1:");
}

static void test_load_file(void **state)
{
    (void)state;
    char path[] = "/tmp/tern_test_alert_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "low = soc below 15\nbroken = soc below\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    tern_alert_rules *r = NULL;
    char err[256], want[300];
    assert_int_equal(tern_alert_rules_load(path, &r, err, sizeof err), TERN_ECONFIG);
    snprintf(want, sizeof want, "%s:2: expected a number after 'below', got ''", path);
    assert_string_equal(err, want);
    fd = open(path, O_WRONLY | O_TRUNC);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, 19), 19);
    close(fd);
    assert_int_equal(tern_alert_rules_load(path, &r, err, sizeof err), 0);
    assert_int_equal(tern_alert_rules_count(r), 1);
    tern_alert_rules_free(r);
    unlink(path);
    assert_int_equal(tern_alert_rules_load(path, &r, err, sizeof err), TERN_ENOENT);
    assert_non_null(strstr(err, ": cannot read: "));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threshold_for_duration_boundary),
        cmocka_unit_test(test_threshold_above_other_metrics_ignored),
        cmocka_unit_test(test_hysteresis),
        cmocka_unit_test(test_rate_per_unit),
        cmocka_unit_test(test_absence_against_watermark),
        cmocka_unit_test(test_absence_of_one_metric_many_devices),
        cmocka_unit_test(test_absence_via_will),
        cmocka_unit_test(test_device_filter),
        cmocka_unit_test(test_duplicates_and_out_of_order_do_not_flap),
        cmocka_unit_test(test_callback_failure_is_retried),
        cmocka_unit_test(test_state_bytes),
        cmocka_unit_test(test_parse_valid_file),
        cmocka_unit_test(test_parse_errors_have_file_and_line),
        cmocka_unit_test(test_load_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

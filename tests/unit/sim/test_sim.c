/*
 * test_sim.c: the simulator's pure parts: schedule and acceleration arithmetic, backoff with full
 * jitter, seq-set accounting and its ranges, one sample's payload (decoded back with
 * tern_payload_decode), the query answer parser and the verdict, power-loss accounting, clock
 * drift stamps, the out-of-order shuffle pick, the rush-hour schedule, option checks.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/buf.h"
#include "base/error.h"
#include "sim/sim.h"

#include <string.h>

static void test_schedule_offsets_and_interval(void **state)
{
    (void)state;
    tern_sim_schedule s = { 1767225600000, 10000, 1.0, 4, 0, 0, 0, 0, 0 };
    /* devices spread over one interval, samples one interval apart */
    assert_int_equal(tern_sim_schedule_ts(&s, 1, 1), 1767225600000);
    assert_int_equal(tern_sim_schedule_ts(&s, 2, 1), 1767225602500);
    assert_int_equal(tern_sim_schedule_ts(&s, 4, 1), 1767225607500);
    assert_int_equal(tern_sim_schedule_ts(&s, 4, 3), 1767225627500);
    assert_int_equal(tern_sim_schedule_wall_ms(&s, 1767225600000), 0);
    assert_int_equal(tern_sim_schedule_wall_ms(&s, 1767225602500), 2500);
    /* due counts: device 1 has sample 1 at wall 0 */
    assert_int_equal(tern_sim_schedule_due(&s, 1, 0), 1);
    assert_int_equal(tern_sim_schedule_due(&s, 1, 9999), 1);
    assert_int_equal(tern_sim_schedule_due(&s, 1, 10000), 2);
    assert_int_equal(tern_sim_schedule_due(&s, 2, 2499), 0);
    assert_int_equal(tern_sim_schedule_due(&s, 2, 2500), 1);
}

static void test_schedule_acceleration(void **state)
{
    (void)state;
    /* accel 60: one event minute per wall second; 6 h of fleet time in 6 wall minutes */
    tern_sim_schedule s = { 0, 10000, 60.0, 1, 0, 0, 0, 0, 0 };
    assert_int_equal(tern_sim_schedule_wall_ms(&s, 60000), 1000);
    assert_int_equal(tern_sim_schedule_wall_ms(&s, 6 * 3600 * 1000), 360000);
    assert_int_equal(tern_sim_schedule_due(&s, 1, 1000), 7); /* ts 0,10s..60s */
    assert_int_equal(tern_sim_schedule_due(&s, 1, 360000), 2161);
    /* a non-integral ratio rounds the wall time up: ts 10 s at accel 3 is due at 3334 ms */
    tern_sim_schedule t = { 0, 10000, 3.0, 1, 0, 0, 0, 0, 0 };
    assert_int_equal(tern_sim_schedule_wall_ms(&t, 10000), 3334);
    assert_int_equal(tern_sim_schedule_due(&t, 1, 3333), 1);
    assert_int_equal(tern_sim_schedule_due(&t, 1, 3334), 2);
    /* consistency: for every wall ms, due(n) is exactly the samples whose wall time passed */
    tern_sim_schedule u = { 1000, 7000, 2.7, 13, 0, 0, 0, 0, 0 };
    for (uint32_t dev = 1; dev <= 13; dev += 4) {
        for (uint64_t w = 0; w < 20000; w += 37) {
            uint64_t n = tern_sim_schedule_due(&u, dev, w);
            if (n > 0)
                assert_true(tern_sim_schedule_wall_ms(&u, tern_sim_schedule_ts(&u, dev, n)) <= w);
            assert_true(tern_sim_schedule_wall_ms(&u, tern_sim_schedule_ts(&u, dev, n + 1)) > w);
        }
    }
}

static void test_clock_drift_stamps(void **state)
{
    (void)state;
    /* without drift the stamp is the schedule's ts */
    tern_sim_schedule plain = { 1767225600000, 10000, 60.0, 4, 0, 7, 0, 0, 0 };
    assert_true(tern_sim_drift_rate(&plain, 2) == 0.0);
    assert_int_equal(tern_sim_schedule_stamp(&plain, 2, 5), tern_sim_schedule_ts(&plain, 2, 5));
    tern_sim_schedule s = { 1767225600000, 10000, 60.0, 100, 3600.0, 7, 0, 0, 0 };
    bool pos = false, neg = false;
    for (uint32_t dev = 1; dev <= 100; dev++) {
        double r = tern_sim_drift_rate(&s, dev);
        assert_true(r >= -3600.0 && r <= 3600.0);
        assert_true(r == tern_sim_drift_rate(&s, dev)); /* pure */
        pos |= r > 0;
        neg |= r < 0;
        /* the drift grows with event time since the start: at one hour it is the rate */
        int64_t ts = tern_sim_schedule_ts(&s, dev, 361);
        int64_t stamp = tern_sim_schedule_stamp(&s, dev, 361);
        double expect = r * (double)(ts - s.start_ms) / 3600000.0;
        assert_true((double)(stamp - ts) >= expect - 0.5 && (double)(stamp - ts) <= expect + 0.5);
        /* stamps still increase with seq, one interval give or take the drift */
        int64_t prev = tern_sim_schedule_stamp(&s, dev, 360);
        assert_true(stamp > prev);
        assert_true(stamp - prev >= 9989 && stamp - prev <= 10011);
    }
    assert_true(pos && neg); /* random sign */
    /* another seed, other rates; the first sample of device 1 (ts = start) never drifts */
    tern_sim_schedule t = s;
    t.drift_seed = 8;
    assert_true(tern_sim_drift_rate(&t, 1) != tern_sim_drift_rate(&s, 1));
    assert_int_equal(tern_sim_schedule_stamp(&t, 1, 1), t.start_ms);
}

static void test_rush_hour_schedule(void **state)
{
    (void)state;
    /* 3x for 20 s every 60 s at a 10 s interval: 6 rush samples (every 3333.3 ms), then 4 */
    tern_sim_schedule s = { 1000000, 10000, 60.0, 4, 0, 0, 3, 60000, 20000 };
    assert_true(tern_sim_schedule_valid(&s) && tern_sim_schedule_rush(&s));
    assert_int_equal(tern_sim_schedule_ts(&s, 1, 1), 1000000);
    assert_int_equal(tern_sim_schedule_ts(&s, 1, 2), 1003333);
    assert_int_equal(tern_sim_schedule_ts(&s, 1, 6), 1016666);
    assert_int_equal(tern_sim_schedule_ts(&s, 1, 7), 1020000); /* the rush is over */
    assert_int_equal(tern_sim_schedule_ts(&s, 1, 10), 1050000);
    assert_int_equal(tern_sim_schedule_ts(&s, 1, 11), 1060000);       /* the next rush */
    assert_int_equal(tern_sim_schedule_ts(&s, 3, 1), 1000000 + 1666); /* offset 2/4 of 3333 */
    assert_int_equal(tern_sim_schedule_ts(&s, 3, 7), 1020000 + 5000);
    assert_true(tern_sim_schedule_in_rush(&s, 6) && !tern_sim_schedule_in_rush(&s, 7));
    assert_true(tern_sim_schedule_in_rush(&s, 11) && !tern_sim_schedule_in_rush(&s, 10));
    /* 10 samples a minute instead of 6; ts strictly increasing; due matches wall times */
    for (uint32_t dev = 1; dev <= 4; dev++) {
        for (uint64_t q = 1; q < 200; q++)
            assert_true(tern_sim_schedule_ts(&s, dev, q + 1) > tern_sim_schedule_ts(&s, dev, q));
        for (uint64_t w = 0; w < 20000; w += 29) {
            uint64_t n = tern_sim_schedule_due(&s, dev, w);
            if (n > 0)
                assert_true(tern_sim_schedule_wall_ms(&s, tern_sim_schedule_ts(&s, dev, n)) <= w);
            assert_true(tern_sim_schedule_wall_ms(&s, tern_sim_schedule_ts(&s, dev, n + 1)) > w);
        }
    }
    assert_int_equal(tern_sim_schedule_due(&s, 1, 999), 10); /* one event minute: 10 samples */
    assert_int_equal(tern_sim_schedule_due(&s, 1, 1000), 11);
    /* a rush that is not a whole number of intervals, or longer than its period, is refused */
    tern_sim_schedule bad = s;
    bad.rush_for_ms = 15000;
    assert_false(tern_sim_schedule_valid(&bad));
    bad.rush_for_ms = 120000;
    assert_false(tern_sim_schedule_valid(&bad));
    bad = s;
    bad.rush_x = 20000; /* more than one sample per ms */
    assert_false(tern_sim_schedule_valid(&bad));
    bad.rush_x = 1; /* no rush hour at all is fine */
    assert_true(tern_sim_schedule_valid(&bad) && !tern_sim_schedule_rush(&bad));
}

static void test_shuffle_pick(void **state)
{
    (void)state;
    uint64_t rng = 42;
    /* nothing to choose from, or no shuffling: FIFO order, PRNG untouched */
    assert_int_equal(tern_sim_shuffle_pick(1, 8, 1.0, &rng), 0);
    assert_int_equal(tern_sim_shuffle_pick(5, 1, 1.0, &rng), 0);
    assert_int_equal(tern_sim_shuffle_pick(5, 8, 0.0, &rng), 0);
    assert_int_equal(rng, 42);
    /* p = 1: never the oldest, always within the window, every other slot reachable */
    unsigned hits[8] = { 0 };
    for (int i = 0; i < 4000; i++) {
        uint32_t k = tern_sim_shuffle_pick(100, 8, 1.0, &rng);
        assert_true(k >= 1 && k < 8);
        hits[k]++;
    }
    assert_int_equal(hits[0], 0);
    for (int k = 1; k < 8; k++)
        assert_true(hits[k] > 400 && hits[k] < 750); /* ~571 each */
    /* a short queue bounds the choice; p = 0.25 keeps FIFO order about 3 times in 4 */
    unsigned fifo = 0;
    for (int i = 0; i < 4000; i++) {
        uint32_t k = tern_sim_shuffle_pick(3, 8, 0.25, &rng);
        assert_true(k < 3);
        fifo += k == 0;
    }
    assert_true(fifo > 2800 && fifo < 3200);
}

static void test_backoff_full_jitter_bounds(void **state)
{
    (void)state;
    /* ceiling = min(cap, base * 2^(attempt-1)); result = rnd mod (ceiling + 1) */
    assert_int_equal(tern_sim_backoff_ms(1, 100, 10000, UINT64_MAX - 0), UINT64_MAX % 101);
    assert_int_equal(tern_sim_backoff_ms(1, 100, 10000, 100), 100);
    assert_int_equal(tern_sim_backoff_ms(1, 100, 10000, 101), 0);
    assert_int_equal(tern_sim_backoff_ms(3, 100, 10000, 400), 400);
    assert_int_equal(tern_sim_backoff_ms(3, 100, 10000, 401), 0);
    assert_int_equal(tern_sim_backoff_ms(40, 100, 10000, 10000), 10000);
    assert_int_equal(tern_sim_backoff_ms(40, 100, 10000, 10001), 0);
    assert_int_equal(tern_sim_backoff_ms(0, 100, 10000, 100), 100);
    /* with the PRNG: always within [0, ceiling], and it spreads (full jitter, not lock-step) */
    uint64_t rng = 42;
    for (uint32_t attempt = 1; attempt < 20; attempt++) {
        uint64_t ceil_ms = attempt >= 8 ? 10000 : 100u << (attempt - 1);
        if (ceil_ms > 10000)
            ceil_ms = 10000;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < 2000; i++) {
            uint64_t d = tern_sim_backoff_ms(attempt, 100, 10000, tern_sim_rng_next(&rng));
            assert_true(d <= ceil_ms);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
        }
        assert_true(lo < ceil_ms / 10 + 1);
        assert_true(hi > ceil_ms * 9 / 10);
    }
    for (int i = 0; i < 1000; i++) {
        double u = tern_sim_rng_unit(&rng);
        assert_true(u >= 0 && u < 1);
    }
}

typedef struct ranges {
    uint64_t lo[16], hi[16];
    size_t n;
} ranges;

static void collect(uint64_t lo, uint64_t hi, void *arg)
{
    ranges *r = arg;
    r->lo[r->n] = lo;
    r->hi[r->n] = hi;
    r->n++;
}

static void test_seqset_accounting(void **state)
{
    (void)state;
    tern_sim_seqset s = { 0 };
    bool added = false;
    assert_int_equal(tern_sim_seqset_add(&s, 0, &added), TERN_EINVAL);
    uint64_t seqs[] = { 1, 2, 3, 5, 64, 65, 66, 200, 3, 2 };
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        assert_int_equal(tern_sim_seqset_add(&s, seqs[i], &added), 0);
        assert_int_equal(added, i < 8); /* the last two are duplicates */
    }
    assert_int_equal(s.count, 8);
    assert_int_equal(s.max, 200);
    assert_true(tern_sim_seqset_has(&s, 64));
    assert_false(tern_sim_seqset_has(&s, 4));
    assert_false(tern_sim_seqset_has(&s, 100000));
    ranges r = { .n = 0 };
    assert_int_equal(tern_sim_seqset_ranges(&s, collect, &r), 4);
    uint64_t want_lo[] = { 1, 5, 64, 200 }, want_hi[] = { 3, 5, 66, 200 };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(r.lo[i], want_lo[i]);
        assert_int_equal(r.hi[i], want_hi[i]);
    }
    assert_int_equal(tern_sim_seqset_count_between(&s, 2, 65), 5);
    assert_int_equal(tern_sim_seqset_count_between(&s, 0, 1000), 8);
    tern_sim_seqset_free(&s);
    assert_int_equal(s.count, 0);
    assert_int_equal(tern_sim_seqset_ranges(&s, collect, &r), 0);
}

static void check_sample_round_trip(const char *profile, tern_sim_format fmt)
{
    tern_profile *p = NULL;
    assert_int_equal(tern_profile_open(profile, 7, &p), 0);
    tern_sim_device *d = NULL;
    assert_int_equal(tern_profile_device_init(p, 3, &d), 0);
    size_t n = tern_profile_metric_count(p);
    double v[TERN_PROFILE_MAX_METRICS];
    tern_payload_decoder dec;
    assert_int_equal(tern_payload_decoder_init(&dec, NULL, 0), 0);
    tern_buf b = TERN_BUF_INIT;
    for (uint64_t seq = 1; seq <= 50; seq++) {
        int64_t ts = 1767225600000 + (int64_t)seq * 10000;
        tern_profile_step(p, d, ts, v);
        tern_buf_reset(&b);
        assert_int_equal(tern_sim_encode_sample(&b, p, fmt, ts, seq, v), 0);
        if (fmt == TERN_SIM_BINARY)
            assert_int_equal(b.data[0], TERN_PAYLOAD_BINARY_V1);
        else
            assert_int_equal(b.data[0], '{');
        tern_payload_error err;
        assert_int_equal(
            tern_payload_decode(&dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &err), 0);
        assert_int_equal(dec.n_points, n);
        for (size_t i = 0; i < dec.n_points; i++) {
            const tern_payload_point *pt = &dec.points[i];
            assert_int_equal(pt->ts_ms, ts);
            assert_int_equal(pt->seq, seq);
            size_t k = 0;
            while (k < n
                && !(strlen(tern_profile_metric_name(p, k)) == pt->metric_len
                    && memcmp(tern_profile_metric_name(p, k), pt->metric, pt->metric_len) == 0))
                k++;
            assert_true(k < n);
            if (tern_profile_metric_decimals(p, k) < 0) {
                assert_true(pt->v.is_int);
                assert_int_equal(pt->v.i, (int64_t)v[k]);
            } else {
                assert_false(pt->v.is_int);
                assert_true(pt->v.f == v[k]);
            }
        }
    }
    tern_buf_free(&b);
    tern_payload_decoder_free(&dec);
    tern_profile_device_free(d);
    tern_profile_close(p);
}

static void test_sample_payload_round_trip(void **state)
{
    (void)state;
    check_sample_round_trip("ev", TERN_SIM_JSON);
    check_sample_round_trip("ev", TERN_SIM_BINARY);
    check_sample_round_trip("meter", TERN_SIM_JSON);
    check_sample_round_trip("industrial", TERN_SIM_BINARY);
}

static void test_parse_counts(void **state)
{
    (void)state;
    const char *names[] = { "soc", "speed", "odo" };
    uint64_t c[3] = { 0 };
    const char *ok
        = "{\"series\":[{\"device\":\"dev000001\",\"metric\":\"soc\","
          "\"columns\":[\"ts\",\"count\"],\"values\":[[1000,12],[2000,3]]},"
          " {\"device\":\"dev000001\",\"metric\":\"other\",\"columns\":[\"ts\",\"count\"],"
          "\"values\":[[1,99]]},"
          "{\"metric\":\"speed\",\"device\":\"d\",\"values\":[[5,1.0,7]],"
          "\"columns\":[\"ts\",\"avg\",\"count\"]}],\"count\":3,\"tier\":\"hot\"}";
    assert_int_equal(tern_sim_parse_counts(ok, strlen(ok), names, 3, c), 0);
    assert_int_equal(c[0], 15);
    assert_int_equal(c[1], 7);
    assert_int_equal(c[2], 0);
    const char *empty = "{\"series\":[],\"count\":0}";
    assert_int_equal(tern_sim_parse_counts(empty, strlen(empty), names, 3, c), 0);
    assert_int_equal(c[0], 15);
    const char *bad[] = {
        "",
        "{}",
        "{\"rows\":[]}",
        "{\"series\":[{\"metric\":\"soc\",\"values\":[[1,2]]}]}", /* no count column */
        "{\"series\":[{\"metric\":\"soc\",\"columns\":[\"ts\",\"count\"],\"values\":[[1,\"x\"]]}]}",
        "{\"series\":[{\"metric\":\"soc\",\"columns\":[\"ts\",\"count\"],\"values\":[[1,2]]}",
        "{\"series\":[]} trailing",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_int_equal(tern_sim_parse_counts(bad[i], strlen(bad[i]), names, 3, c), TERN_EPROTO);
    /* deep nesting inside an unknown key is bounded */
    char deep[400] = "{\"x\":";
    for (int i = 0; i < 100; i++)
        strcat(deep, "[");
    assert_int_equal(tern_sim_parse_counts(deep, strlen(deep), names, 3, c), TERN_EPROTO);
}

static void test_judge(void **state)
{
    (void)state;
    tern_sim_verdict v = { 0 };
    uint64_t exact[3] = { 10, 10, 10 };
    tern_sim_judge(exact, 3, 10, 0, &v);
    assert_int_equal(v.acked_points, 30);
    assert_int_equal(v.stored_points, 30);
    assert_int_equal(v.lost_points, 0);
    assert_int_equal(v.duplicated_points, 0);
    /* one metric lost 2, one stored 1 too many that an unacked sample explains, one 3 too many */
    uint64_t mixed[3] = { 8, 11, 13 };
    tern_sim_verdict w = { 0 };
    tern_sim_judge(mixed, 3, 10, 1, &w);
    assert_int_equal(w.lost_points, 2);
    assert_int_equal(w.duplicated_points, 2);
    assert_int_equal(w.uncertain_points, 3);
}

static void test_power_lose_accounting(void **state)
{
    (void)state;
    tern_sim_seqset acked = { 0 }, lost = { 0 };
    bool counted = true;
    assert_int_equal(tern_sim_seqset_add(&acked, 3, NULL), 0);
    /* a queued duplicate of an acknowledged sample loses nothing */
    assert_int_equal(tern_sim_power_lose(&lost, &acked, 3, &counted), 0);
    assert_false(counted);
    assert_false(tern_sim_seqset_has(&lost, 3));
    /* an unacknowledged sample is lost once, however often it is reported */
    assert_int_equal(tern_sim_power_lose(&lost, &acked, 4, &counted), 0);
    assert_true(counted);
    assert_int_equal(tern_sim_power_lose(&lost, &acked, 4, &counted), 0);
    assert_false(counted);
    assert_int_equal(tern_sim_power_lose(&lost, &acked, 5, NULL), 0);
    assert_int_equal(lost.count, 2);
    assert_true(tern_sim_seqset_has(&lost, 4) && tern_sim_seqset_has(&lost, 5));
    assert_int_equal(tern_sim_power_lose(&lost, &acked, 0, &counted), TERN_EINVAL);
    assert_false(counted);
    tern_sim_seqset_free(&acked);
    tern_sim_seqset_free(&lost);
}

static void test_options_rejected(void **state)
{
    (void)state;
    tern_sim_options o;
    tern_sim_summary s;
    tern_sim_options_default(&o);
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL); /* no broker */
    o.broker = "127.0.0.1:1";
    o.qos = 2;
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.qos = 1;
    o.verify = true; /* without api */
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.verify = false;
    o.tunnel_rate = 1.5;
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.tunnel_rate = 0;
    o.power_loss = -0.1;
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.power_loss = 0.5;
    o.power_off_s = -1;
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.power_off_s = 30;
    o.clock_drift = 400000; /* more than 10 % */
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.clock_drift = 0;
    o.out_of_order = 2;
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.out_of_order = 0;
    o.rush_x = 3; /* without a period */
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.rush_x = 0;
    o.storm_at_ms = o.duration_ms; /* a storm after generation ends */
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
    o.storm_at_ms = 0;
    o.api = "127.0.0.1:1";
    o.e2e_timeout_ms = 0; /* a latency probe that gives up before it starts */
    assert_int_equal(tern_sim_run(&o, &s), TERN_EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_offsets_and_interval),
        cmocka_unit_test(test_schedule_acceleration),
        cmocka_unit_test(test_clock_drift_stamps),
        cmocka_unit_test(test_rush_hour_schedule),
        cmocka_unit_test(test_shuffle_pick),
        cmocka_unit_test(test_backoff_full_jitter_bounds),
        cmocka_unit_test(test_seqset_accounting),
        cmocka_unit_test(test_sample_payload_round_trip),
        cmocka_unit_test(test_parse_counts),
        cmocka_unit_test(test_judge),
        cmocka_unit_test(test_power_lose_accounting),
        cmocka_unit_test(test_options_rejected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_payload.c: the telemetry payload codecs (docs/formats/telemetry-payload.md): JSON and
 * binary round trips of EV samples and batches, exact values, the single-value and summary
 * forms, every refusal with its reason, truncation of binary payloads at every byte, limits,
 * allocation failure, schemas and topic parsing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/alloc.h"
#include "base/buf.h"
#include "base/error.h"
#include "telemetry/payload.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers ---- */

#define N_EV 20

static const char *const k_ev_names[N_EV] = { "soc", "speed", "current", "power", "voltage",
    "cell_temp", "pack_temp", "motor_temp", "cabin_temp", "ambient_temp", "lat", "lon", "heading",
    "odometer", "tire_pressure", "throttle", "charge_power", "uptime_s", "trip_count", "msg_seq" };

static tern_payload_value F(double f)
{
    tern_payload_value v = { .f = f, .is_int = false };
    return v;
}

static tern_payload_value I(int64_t i)
{
    tern_payload_value v = { .i = i, .is_int = true };
    return v;
}

/* A realistic EV sample, each value rounded to its metric's decimals (as src/sim/profile.c does).
 */
static void ev_values(tern_payload_value v[N_EV], int k)
{
    v[0] = F(52.7 - 0.1 * k);
    v[1] = F(33.2);
    v[2] = F(-85.3);
    v[3] = F(31.42);
    v[4] = F(368.4);
    v[5] = F(27.3);
    v[6] = F(26.8);
    v[7] = F(61.5);
    v[8] = F(21.0);
    v[9] = F(12.4);
    v[10] = F(48.856613);
    v[11] = F(2.352222);
    v[12] = F(187.5);
    v[13] = F(23456.78);
    v[14] = F(2.45);
    v[15] = F(23.0);
    v[16] = F(0.0);
    v[17] = I(228160 + 10 * k);
    v[18] = I(312);
    v[19] = I(22816 + k);
}

static bool same_value(tern_payload_value a, tern_payload_value b)
{
    if (a.is_int != b.is_int)
        return false;
    return a.is_int ? a.i == b.i : memcmp(&a.f, &b.f, sizeof a.f) == 0;
}

static bool name_is(const tern_payload_point *p, const char *name)
{
    return p->metric_len == strlen(name) && memcmp(p->metric, name, p->metric_len) == 0;
}

static int decode_str(
    tern_payload_decoder *d, tern_payload_kind kind, const char *s, tern_payload_error *e)
{
    return tern_payload_decode(d, kind, (const uint8_t *)s, strlen(s), "temp", 4, 777, e);
}

/* check_points asserts that d holds exactly the samples' points, in order. */
static void check_points(
    const tern_payload_decoder *d, const tern_payload_sample *samples, size_t n_samples)
{
    size_t k = 0;
    for (size_t s = 0; s < n_samples; s++) {
        for (size_t i = 0; i < samples[s].n_values; i++, k++) {
            assert_true(k < d->n_points);
            const tern_payload_point *p = &d->points[k];
            const char *name = samples[s].names ? samples[s].names[i] : k_ev_names[i];
            assert_true(name_is(p, name));
            assert_true(p->ts_ms == samples[s].ts_ms);
            assert_true(p->seq == samples[s].seq);
            assert_int_equal(p->sample, n_samples > 1 ? s : 0);
            assert_true(p->end_ms == p->ts_ms);
            assert_true(same_value(p->v, samples[s].values[i]));
        }
    }
    assert_int_equal(d->n_points, k);
}

static tern_payload_decoder g_dec;

static int setup(void **state)
{
    (void)state;
    return tern_payload_decoder_init(&g_dec, NULL, 0);
}

static int teardown(void **state)
{
    (void)state;
    tern_payload_decoder_free(&g_dec);
    return 0;
}

/* ---- JSON and binary samples ---- */

static void test_json_literal_sample(void **state)
{
    (void)state;
    tern_payload_error e;
    const char *s = " {\"seq\":42,\"m\":{\"soc\":52.7,\"speed\":33.2,\"uptime_s\":228160},"
                    "\"fw\":{\"v\":[1,2,{\"x\":null}],\"ok\":true},\"ts\":1767225600000}\r\n";
    assert_int_equal(decode_str(&g_dec, TERN_PAYLOAD_SAMPLE, s, &e), 0);
    assert_int_equal(g_dec.n_points, 3);
    const tern_payload_point *p = g_dec.points;
    assert_true(name_is(&p[0], "soc") && !p[0].v.is_int && p[0].v.f == 52.7);
    assert_true(name_is(&p[1], "speed") && p[1].v.f == 33.2);
    assert_true(name_is(&p[2], "uptime_s") && p[2].v.is_int && p[2].v.i == 228160);
    for (int i = 0; i < 3; i++) {
        assert_true(p[i].ts_ms == 1767225600000LL);
        assert_true(p[i].seq == 42);
        assert_int_equal(p[i].sample, 0);
    }
    /* The metric name borrows from the payload. */
    assert_true(p[0].metric > s && p[0].metric < s + strlen(s));
    /* An explicit version 1 is accepted. */
    assert_int_equal(decode_str(&g_dec, TERN_PAYLOAD_SAMPLE,
                         "{\"ver\":1,\"ts\":-5,\"seq\":0,\"m\":{\"a\":1e2,\"b\":-0}}", &e),
        0);
    assert_int_equal(g_dec.n_points, 2);
    assert_true(g_dec.points[0].ts_ms == -5);
    assert_true(!g_dec.points[0].v.is_int && g_dec.points[0].v.f == 100.0);
    assert_true(g_dec.points[1].v.is_int && g_dec.points[1].v.i == 0);
}

static void test_ev_round_trip_and_sizes(void **state)
{
    (void)state;
    tern_payload_value v[N_EV];
    ev_values(v, 0);
    tern_payload_sample s = { 1767225600000LL, 42, N_EV, k_ev_names, v };
    tern_buf json = TERN_BUF_INIT, bin = TERN_BUF_INIT, bin2 = TERN_BUF_INIT;
    assert_int_equal(tern_payload_encode_json(&json, &s, 1), 0);
    assert_int_equal(tern_payload_encode_binary(&bin, tern_payload_schema_builtin(1), &s, 1), 0);
    /* Values in schema order without names give the same bytes. */
    tern_payload_sample s2 = s;
    s2.names = NULL;
    assert_int_equal(
        tern_payload_encode_binary(&bin2, tern_payload_schema_by_name("ev"), &s2, 1), 0);
    assert_int_equal(bin.len, bin2.len);
    assert_memory_equal(bin.data, bin2.data, bin.len);
    assert_int_equal(bin.data[0], 0xB1);
    assert_int_equal(bin.data[1], 0); /* no batch, no raw values */

    tern_payload_error e;
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, json.data, json.len, NULL, 0, 0, &e), 0);
    check_points(&g_dec, &s, 1);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, bin.data, bin.len, NULL, 0, 0, &e), 0);
    check_points(&g_dec, &s, 1);
    print_message("EV sample: JSON %zu bytes, binary %zu bytes (%.1f%%)\n", json.len, bin.len,
        100.0 * (double)bin.len / (double)json.len);
    assert_true(bin.len * 4 < json.len);
    assert_true(bin.len <= 60);
    /* The JSON text is the documented one: short decimals, floats keep a '.', ints do not. */
    assert_non_null(strstr((const char *)json.data, "\"throttle\":23.0,"));
    assert_non_null(strstr((const char *)json.data, "\"lat\":48.856613,"));
    assert_non_null(strstr((const char *)json.data, "\"msg_seq\":22816}}"));
    assert_memory_equal(json.data, "{\"ts\":1767225600000,\"seq\":42,\"m\":{\"soc\":52.7,", 44);

    /* A batch of 10 EV samples (backfill): binary stays far below JSON. */
    tern_payload_value vals[10][N_EV];
    tern_payload_sample batch[10];
    for (int k = 0; k < 10; k++) {
        ev_values(vals[k], k);
        batch[k] = (tern_payload_sample) { 1767225600000LL + 10000 * k, 42 + (uint64_t)k, N_EV,
            NULL, vals[k] };
    }
    tern_buf_reset(&bin);
    assert_int_equal(
        tern_payload_encode_binary(&bin, tern_payload_schema_builtin(1), batch, 10), 0);
    for (int k = 0; k < 10; k++)
        batch[k].names = k_ev_names;
    tern_buf_reset(&json);
    assert_int_equal(tern_payload_encode_json(&json, batch, 10), 0);
    print_message("EV batch of 10: JSON %zu bytes, binary %zu bytes\n", json.len, bin.len);
    assert_true(bin.len * 4 < json.len);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, bin.data, bin.len, NULL, 0, 0, &e), 0);
    check_points(&g_dec, batch, 10);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, json.data, json.len, NULL, 0, 0, &e), 0);
    check_points(&g_dec, batch, 10);
    tern_buf_free(&json);
    tern_buf_free(&bin);
    tern_buf_free(&bin2);
}

/* Values that stress exactness, each in a metric whose schema packing does not fit it. */
static void test_exact_values(void **state)
{
    (void)state;
    const tern_payload_value vals[] = {
        F(0.1),
        F(-0.0),
        F(1e-300),
        F(5e-324),
        F(DBL_MAX),
        F(-DBL_MAX),
        F(0.1 + 0.2),
        F(1e20),
        F(9007199254740992.0),
        F(123456789.123),
        I(INT64_MIN),
        I(INT64_MAX),
        I((INT64_C(1) << 53) + 1),
        I(-1),
        F(52.7), /* in an integer metric: raw */
        I(7),    /* in a decimal metric: raw */
        F(3.0),
        F(-2.5e-7),
        F(48.8566131), /* 7 decimals in a 6-decimal metric: raw */
        I(0),
    };
    size_t n = sizeof vals / sizeof vals[0];
    TERN_ASSERT(n == N_EV);
    tern_payload_sample s = { INT64_MIN, UINT64_MAX, n, k_ev_names, vals };
    tern_payload_sample s2 = { INT64_MAX, 0, n, k_ev_names, vals };
    tern_payload_sample both[2] = { s, s2 };
    tern_buf b = TERN_BUF_INIT;
    tern_payload_error e;
    for (int form = 0; form < 2; form++) {
        for (size_t ns = 1; ns <= 2; ns++) {
            tern_buf_reset(&b);
            const tern_payload_sample *in = ns == 1 ? &s : both;
            if (form == 0)
                assert_int_equal(tern_payload_encode_json(&b, in, ns), 0);
            else
                assert_int_equal(
                    tern_payload_encode_binary(&b, tern_payload_schema_builtin(1), in, ns), 0);
            assert_int_equal(
                tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e), 0);
            check_points(&g_dec, in, ns);
            if (form == 1)
                assert_true(b.data[1] & 0x02); /* raw values flagged */
        }
    }
    /* The JSON text of a few of them. */
    tern_buf_reset(&b);
    tern_payload_sample one = { 0, 0, 5, k_ev_names, vals };
    assert_int_equal(tern_payload_encode_json(&b, &one, 1), 0);
    assert_int_equal(tern_buf_append_u8(&b, 0), 0);
    assert_string_equal((const char *)b.data,
        "{\"ts\":0,\"seq\":0,\"m\":{\"soc\":0.1,\"speed\":-0.0,\"current\":1e-300,"
        "\"power\":5e-324,\"voltage\":1.7976931348623157e+308}}");
    /* Parsing keeps 2^53+1 exact as an int, and near-limit ints. */
    assert_int_equal(decode_str(&g_dec, TERN_PAYLOAD_SAMPLE,
                         "{\"ts\":0,\"seq\":18446744073709551615,\"m\":{\"a\":9007199254740993,"
                         "\"b\":-9223372036854775808,\"c\":9223372036854775807,\"d\":0.1}}",
                         &e),
        0);
    assert_true(g_dec.points[0].seq == UINT64_MAX);
    assert_true(g_dec.points[0].v.is_int && g_dec.points[0].v.i == 9007199254740993LL);
    assert_true(g_dec.points[1].v.i == INT64_MIN);
    assert_true(g_dec.points[2].v.i == INT64_MAX);
    assert_true(g_dec.points[3].v.f == 0.1);
    tern_buf_free(&b);
}

static void test_batches(void **state)
{
    (void)state;
    tern_payload_error e;
    const char *s
        = "{\"batch\":[{\"ts\":30,\"seq\":3,\"m\":{\"a\":1}},"
          "{\"m\":{\"a\":2,\"b\":2.5},\"seq\":1,\"ts\":10},{\"ts\":20,\"seq\":2,\"m\":{\"a\":3}}]}";
    assert_int_equal(decode_str(&g_dec, TERN_PAYLOAD_SAMPLE, s, &e), 0);
    assert_int_equal(g_dec.n_points, 4);
    assert_true(g_dec.points[0].ts_ms == 30 && g_dec.points[0].sample == 0);
    assert_true(
        g_dec.points[1].ts_ms == 10 && g_dec.points[1].seq == 1 && g_dec.points[1].sample == 1);
    assert_true(g_dec.points[2].ts_ms == 10 && name_is(&g_dec.points[2], "b"));
    assert_true(g_dec.points[3].ts_ms == 20 && g_dec.points[3].sample == 2);
    /* The same metric may appear in every sample; binary deltas may go backwards and wrap. */
    tern_payload_value v1[2] = { F(1.5), I(-3) }, v2[1] = { F(2.25) }, v3[1] = { F(7.5) };
    const char *n1[2] = { "soc", "msg_seq" }, *n2[1] = { "soc" }, *n3[1] = { "speed" };
    tern_payload_sample in[3] = {
        { 100000, UINT64_MAX, 2, n1, v1 },
        { 50, 0, 1, n2, v2 },
        { INT64_MIN, 5, 1, n3, v3 },
    };
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_payload_encode_binary(&b, tern_payload_schema_builtin(1), in, 3), 0);
    assert_int_equal(b.data[1] & 0x01, 1);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e), 0);
    check_points(&g_dec, in, 3);
    tern_buf_reset(&b);
    assert_int_equal(tern_payload_encode_json(&b, in, 3), 0);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e), 0);
    check_points(&g_dec, in, 3);
    tern_buf_free(&b);
}

/* ---- refusals ---- */

typedef struct bad_case {
    tern_payload_kind kind;
    const char *payload;
    int code;
    const char *reason;
} bad_case;

static void test_json_errors(void **state)
{
    (void)state;
    const tern_payload_kind S = TERN_PAYLOAD_SAMPLE, V = TERN_PAYLOAD_SINGLE,
                            M = TERN_PAYLOAD_SUMMARY;
    const int P = TERN_EPROTO;
    static const char ok_m[] = "\"m\":{\"a\":1}";
    (void)ok_m;
    const bad_case cases[] = {
        { S, "", P, "payload is empty" },
        { S, "   ", P, "json: expected '{'" },
        { S, "[1]", P, "json: expected '{'" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":\"52.7\"}}", P, "metric 'soc' value is a string" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":{\"x\":1}}}", P,
            "metric 'soc' value is an object" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":[1]}}", P, "metric 'soc' value is an array" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":true}}", P, "metric 'soc' value is a boolean" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":null}}", P, "metric 'soc' value is null" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":NaN}}", P, "metric 'soc' value is not a number" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":Infinity}}", P,
            "metric 'soc' value is not a number" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":1e999}}", P,
            "metric 'soc' value out of float64 range" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":-1e999}}", P,
            "metric 'soc' value out of float64 range" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"n\":9223372036854775808}}", P,
            "metric 'n' integer out of int64 range" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"n\":-9223372036854775809}}", P,
            "metric 'n' integer out of int64 range" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"n\":99999999999999999999999}}", P,
            "metric 'n' integer out of int64 range" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"soc\":1,\"soc\":2}}", P, "duplicate metric 'soc'" },
        { S, "{\"ts\":1,\"seq\":1,\"ts\":2,\"m\":{\"a\":1}}", P, "duplicate key 'ts'" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":1},\"m\":{\"b\":1}}", P, "duplicate key 'm'" },
        { S, "{\"seq\":1,\"m\":{\"a\":1}}", P, "missing 'ts'" },
        { S, "{\"ts\":1,\"m\":{\"a\":1}}", P, "missing 'seq'" },
        { S, "{\"ts\":1,\"seq\":1}", P, "missing 'm'" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{}}", P, "'m' has no metrics" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":[1]}", P, "'m' is an array" },
        { S, "{\"ts\":1.5,\"seq\":1,\"m\":{\"a\":1}}", P, "'ts' is not an integer" },
        { S, "{\"ts\":\"1\",\"seq\":1,\"m\":{\"a\":1}}", P, "'ts' is a string" },
        { S, "{\"ts\":9223372036854775808,\"seq\":1,\"m\":{\"a\":1}}", P,
            "'ts' out of int64 range" },
        { S, "{\"ts\":1,\"seq\":-1,\"m\":{\"a\":1}}", P, "'seq' is negative" },
        { S, "{\"ts\":1,\"seq\":18446744073709551616,\"m\":{\"a\":1}}", P,
            "'seq' out of uint64 range" },
        { S, "{\"ts\":1,\"seq\":1e3,\"m\":{\"a\":1}}", P, "'seq' is not an integer" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a b\":1}}", P, "invalid metric name 'a b'" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"\":1}}", P, "invalid metric name ''" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a/b\":1}}", P, "invalid metric name 'a/b'" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"\\u0061\":1}}", P, "json: object key uses escapes" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":01}}", P, "json: invalid number (leading zero)" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":1.}}", P, "json: invalid number" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":.5}}", P, "metric 'a' value is not a number" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":+5}}", P, "metric 'a' value is not a number" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":-}}", P, "json: invalid number" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":1e}}", P, "json: invalid number" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":1,}}", P, "json: expected '\"'" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":1}", P, "json: unexpected end of input in object" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":1}} x", P, "json: trailing bytes after the value" },
        { S, "{\"ts\":1,\"seq\":1,\"m\":{\"a\" 1}}", P, "json: expected ':'" },
        { S, "{\"ts\":1 \"seq\":1}", P, "json: expected ',' or '}'" },
        { S, "{\"x\":\"a\x01\",\"ts\":1,\"seq\":1,\"m\":{\"a\":1}}", P,
            "json: control character in string" },
        { S, "{\"x\":\"\xff\",\"ts\":1,\"seq\":1,\"m\":{\"a\":1}}", P,
            "json: invalid UTF-8 in string" },
        { S, "{\"x\":\"\xc0\xaf\",\"ts\":1}", P, "json: invalid UTF-8 in string" },
        { S, "{\"x\":\"\\q\"}", P, "json: invalid escape in string" },
        { S, "{\"x\":\"\\ud800\"}", P, "json: lone surrogate in string" },
        { S, "{\"x\":\"\\udc00\"}", P, "json: lone surrogate in string" },
        { S, "{\"x\":\"\\u12g4\"}", P, "json: invalid \\u escape" },
        { S, "{\"x\":tru}", P, "json: invalid literal" },
        { S, "{\"x\":[1,2}", P, "json: expected ',' or ']'" },
        { S, "{\"x\":[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]}", P, "json: nesting deeper than 16" },
        { S, "{\"ver\":2,\"ts\":1,\"seq\":1,\"m\":{\"a\":1}}", TERN_EVERSION,
            "json: unsupported version 2" },
        { S, "{\"ver\":\"1\"}", P, "'ver' is a string" },
        { S, "{\"batch\":[]}", P, "'batch' is empty" },
        { S, "{\"batch\":{}}", P, "'batch' is an object, expected an array" },
        { S, "{\"batch\":[1]}", P, "batch[0]: sample is not a number, expected an object" },
        { S, "{\"batch\":[{\"ts\":1,\"seq\":1,\"m\":{\"a\":1}},{\"ts\":1,\"m\":{\"a\":1}}]}", P,
            "batch[1]: missing 'seq'" },
        { S, "{\"batch\":[{\"ts\":1,\"seq\":1,\"m\":{\"a\":\"x\"}}]}", P,
            "batch[0]: metric 'a' value is a string" },
        { S, "{\"ts\":1,\"batch\":[{\"ts\":1,\"seq\":1,\"m\":{\"a\":1}}]}", P,
            "'batch' cannot be combined with 'ts', 'seq' or 'm'" },
        { S, "{\"batch\":[{\"ver\":1,\"ts\":1,\"seq\":1,\"m\":{\"a\":1}}]}", 0, "" },
        { V, "{\"ts\":1,\"seq\":2}", P, "missing 'v'" },
        { V, "{\"ts\":1,\"seq\":2,\"v\":\"x\"}", P, "'v' value is a string" },
        { V, "\"12.5\"", P, "single value: expected an object or a number" },
        { V, "12.5 13", P, "json: trailing bytes after the value" },
        { V, "\xb1\x00\x01", P, "binary: only the telemetry topic takes binary" },
        { M,
            "{\"ts\":1,\"end\":2,\"seq\":3,\"m\":{\"a\":{\"min\":1,\"max\":2,\"sum\":3,\"count\":2}"
            "}}",
            P, "summary metric 'a': missing 'last'" },
        { M,
            "{\"ts\":1,\"end\":2,\"seq\":3,\"m\":{\"a\":{\"min\":1,\"max\":2,\"sum\":3,\"count\":0,"
            "\"last\":1}}}",
            P, "summary metric 'a': count is 0" },
        { M,
            "{\"ts\":1,\"end\":2,\"seq\":3,\"m\":{\"a\":{\"min\":1,\"max\":2,\"sum\":3,\"count\":2,"
            "\"last\":5}}}",
            P, "summary metric 'a': not min <= last <= max" },
        { M, "{\"ts\":1,\"end\":2,\"seq\":3,\"m\":{\"a\":{\"min\":1,\"p95\":2}}}", P,
            "summary metric 'a': unknown field 'p95'" },
        { M, "{\"ts\":1,\"end\":2,\"seq\":3,\"m\":{\"a\":{\"min\":1,\"min\":2}}}", P,
            "summary metric 'a': duplicate field 'min'" },
        { M, "{\"ts\":1,\"end\":2,\"seq\":3,\"m\":{\"a\":5}}", P,
            "summary metric 'a' is not a number, expected an object" },
        { M,
            "{\"ts\":5,\"end\":2,\"seq\":3,\"m\":{\"a\":{\"min\":1,\"max\":2,\"sum\":3,\"count\":2,"
            "\"last\":1}}}",
            P, "summary 'end' is before 'ts'" },
        { M, "{\"ts\":1,\"seq\":3,\"m\":{}}", P, "'m' has no metrics" },
        { M,
            "{\"ts\":1,\"seq\":3,\"m\":{\"a\":{\"min\":1,\"max\":2,\"sum\":3,\"count\":2,"
            "\"last\":1}}}",
            P, "missing 'end'" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        tern_payload_error e;
        int rc = decode_str(&g_dec, c->kind, c->payload, &e);
        if (rc != c->code || (c->code && strcmp(e.reason, c->reason) != 0)) {
            print_error("case %zu (%s): rc %d reason \"%s\", want %d \"%s\"\n", i, c->payload, rc,
                e.reason, c->code, c->reason);
            fail();
        }
        if (rc) {
            assert_int_equal(e.code, rc);
            assert_int_equal(g_dec.n_points, 0);
            assert_true(e.offset <= strlen(c->payload));
        }
    }
}

static void test_limits(void **state)
{
    (void)state;
    tern_payload_error e;
    tern_buf b = TERN_BUF_INIT;
    /* 256 metrics pass, 257 do not. */
    for (int n = 256; n <= 257; n++) {
        tern_buf_reset(&b);
        assert_int_equal(tern_buf_append_str(&b, "{\"ts\":1,\"seq\":1,\"m\":{"), 0);
        for (int i = 0; i < n; i++)
            assert_int_equal(tern_buf_printf(&b, "%s\"m%d\":%d", i ? "," : "", i, i), 0);
        assert_int_equal(tern_buf_append_str(&b, "}}"), 0);
        int rc = tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e);
        if (n == 256) {
            assert_int_equal(rc, 0);
            assert_int_equal(g_dec.n_points, 256);
        } else {
            assert_int_equal(rc, TERN_EPROTO);
            assert_string_equal(e.reason, "sample has more than 256 metrics");
        }
    }
    /* 4097 samples in a batch. */
    tern_buf_reset(&b);
    assert_int_equal(tern_buf_append_str(&b, "{\"batch\":["), 0);
    for (int i = 0; i < 4097; i++)
        assert_int_equal(
            tern_buf_printf(&b, "%s{\"ts\":%d,\"seq\":1,\"m\":{\"a\":1}}", i ? "," : "", i), 0);
    assert_int_equal(tern_buf_append_str(&b, "]}"), 0);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e),
        TERN_EPROTO);
    assert_string_equal(e.reason, "'batch' has more than 4096 samples");
    /* More than 65536 points over a batch. */
    tern_buf_reset(&b);
    assert_int_equal(tern_buf_append_str(&b, "{\"batch\":["), 0);
    for (int i = 0; i < 300; i++) {
        assert_int_equal(tern_buf_printf(&b, "%s{\"ts\":%d,\"seq\":1,\"m\":{", i ? "," : "", i), 0);
        for (int k = 0; k < 220; k++)
            assert_int_equal(tern_buf_printf(&b, "%s\"m%d\":1", k ? "," : "", k), 0);
        assert_int_equal(tern_buf_append_str(&b, "}}"), 0);
    }
    assert_int_equal(tern_buf_append_str(&b, "]}"), 0);
    assert_true(b.len < TERN_PAYLOAD_MAX_BYTES);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e),
        TERN_EPROTO);
    assert_string_equal(e.reason, "batch[297]: payload has more than 65536 points");
    /* Oversized payload. */
    tern_buf_reset(&b);
    assert_int_equal(tern_buf_reserve(&b, TERN_PAYLOAD_MAX_BYTES + 1), 0);
    memset(b.data, ' ', TERN_PAYLOAD_MAX_BYTES + 1);
    b.len = TERN_PAYLOAD_MAX_BYTES + 1;
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e),
        TERN_EPROTO);
    assert_string_equal(e.reason, "payload of 1048577 bytes exceeds 1048576");
    /* A number longer than 128 characters; 128 exactly is fine. */
    for (int n = 128; n <= 129; n++) {
        tern_buf_reset(&b);
        assert_int_equal(tern_buf_append_str(&b, "{\"ts\":1,\"seq\":1,\"m\":{\"a\":0."), 0);
        for (int i = 0; i < n - 2; i++)
            assert_int_equal(tern_buf_append_u8(&b, '1'), 0);
        assert_int_equal(tern_buf_append_str(&b, "}}"), 0);
        int rc = tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e);
        assert_int_equal(rc, n == 128 ? 0 : TERN_EPROTO);
        if (rc)
            assert_string_equal(e.reason, "json: number longer than 128 characters");
    }
    /* Metric names: 128 bytes ok, 129 refused. */
    char name[130];
    memset(name, 'x', sizeof name);
    assert_true(tern_payload_metric_name_check(name, 128));
    assert_false(tern_payload_metric_name_check(name, 129));
    assert_true(tern_payload_metric_name_check("a.b:c-d_E9", 10));
    assert_false(tern_payload_metric_name_check("a\xc3\xa9", 3));
    tern_buf_free(&b);
}

static void test_single_and_summary(void **state)
{
    (void)state;
    tern_payload_error e;
    assert_int_equal(
        decode_str(&g_dec, TERN_PAYLOAD_SINGLE, "{\"v\":12.5,\"ts\":9,\"seq\":3}", &e), 0);
    assert_int_equal(g_dec.n_points, 1);
    assert_true(name_is(&g_dec.points[0], "temp"));
    assert_true(g_dec.points[0].ts_ms == 9 && g_dec.points[0].seq == 3);
    assert_true(g_dec.points[0].v.f == 12.5);
    /* A bare number takes the arrival time and sequence 0. */
    assert_int_equal(decode_str(&g_dec, TERN_PAYLOAD_SINGLE, " -17\n", &e), 0);
    assert_true(g_dec.points[0].ts_ms == 777 && g_dec.points[0].seq == 0);
    assert_true(g_dec.points[0].v.is_int && g_dec.points[0].v.i == -17);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SINGLE, (const uint8_t *)"1", 1, "a/b", 3, 0, &e),
        TERN_EPROTO);
    assert_string_equal(e.reason, "invalid topic metric name 'a/b'");
    assert_int_equal(g_dec.n_points, 0);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_EVENT, (const uint8_t *)"1", 1, NULL, 0, 0, &e),
        TERN_EINVAL);

    tern_buf b = TERN_BUF_INIT;
    tern_payload_value vals[] = { F(-0.0), I(INT64_MIN), F(0.1), I(5) };
    for (size_t i = 0; i < 4; i++) {
        tern_buf_reset(&b);
        assert_int_equal(tern_payload_encode_single(&b, -1, UINT64_MAX, vals[i]), 0);
        assert_int_equal(
            tern_payload_decode(&g_dec, TERN_PAYLOAD_SINGLE, b.data, b.len, "x", 1, 0, &e), 0);
        assert_true(g_dec.points[0].ts_ms == -1 && g_dec.points[0].seq == UINT64_MAX);
        assert_true(same_value(g_dec.points[0].v, vals[i]));
    }
    assert_int_equal(tern_payload_encode_single(&b, 0, 0, F(NAN)), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_single(&b, 0, 0, F(INFINITY)), TERN_EINVAL);

    /* Summary round trip. */
    const char *names[2] = { "soc", "speed" };
    tern_payload_agg aggs[2] = {
        { 50.1, 52.7, 1545.3, 52.7, 30 },
        { -0.0, 88.5, 0.1 + 0.2, 0.0, UINT64_MAX },
    };
    tern_buf_reset(&b);
    assert_int_equal(
        tern_payload_encode_summary(&b, 1767225600000LL, 1767225660000LL, 9, names, aggs, 2), 0);
    assert_int_equal(
        tern_payload_decode(&g_dec, TERN_PAYLOAD_SUMMARY, b.data, b.len, NULL, 0, 0, &e), 0);
    assert_int_equal(g_dec.n_points, 2);
    for (int i = 0; i < 2; i++) {
        const tern_payload_point *p = &g_dec.points[i];
        assert_true(name_is(p, names[i]));
        assert_true(p->ts_ms == 1767225600000LL && p->end_ms == 1767225660000LL && p->seq == 9);
        assert_memory_equal(&p->agg.min, &aggs[i].min, sizeof(double));
        assert_memory_equal(&p->agg.max, &aggs[i].max, sizeof(double));
        assert_memory_equal(&p->agg.sum, &aggs[i].sum, sizeof(double));
        assert_memory_equal(&p->agg.last, &aggs[i].last, sizeof(double));
        assert_true(p->agg.count == aggs[i].count);
        assert_true(!p->v.is_int && p->v.f == aggs[i].last);
    }
    /* The documented example, with integer aggregates. */
    assert_int_equal(decode_str(&g_dec, TERN_PAYLOAD_SUMMARY,
                         "{\"ts\":0,\"end\":60000,\"seq\":1,\"m\":{\"trips\":{\"last\":3,\"max\":3,"
                         "\"min\":1,\"count\":6,\"sum\":12}}}",
                         &e),
        0);
    assert_true(g_dec.points[0].agg.sum == 12.0 && g_dec.points[0].agg.count == 6);
    /* Encoder refusals leave the buffer unchanged. */
    size_t len = b.len;
    tern_payload_agg bad = { 1, 2, 3, 5, 1 };
    assert_int_equal(tern_payload_encode_summary(&b, 0, 1, 0, names, &bad, 1), TERN_EINVAL);
    bad.last = 1.5;
    bad.count = 0;
    assert_int_equal(tern_payload_encode_summary(&b, 0, 1, 0, names, &bad, 1), TERN_EINVAL);
    bad.count = 1;
    assert_int_equal(tern_payload_encode_summary(&b, 2, 1, 0, names, &bad, 1), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_summary(&b, 0, 1, 0, names, &bad, 1), 0);
    assert_true(b.len > len);
    tern_buf_free(&b);
}

static void test_encoder_refusals(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append_str(&b, "keep"), 0);
    tern_payload_value v[2] = { F(1), F(2) };
    const char *dup[2] = { "soc", "soc" }, *bad[2] = { "soc", "a b" }, *unk[2] = { "soc", "nope" };
    const char *ok[2] = { "soc", "speed" };
    tern_payload_sample s = { 0, 0, 2, dup, v };
    const tern_payload_schema *ev = tern_payload_schema_builtin(1);
    assert_int_equal(tern_payload_encode_json(&b, &s, 1), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_binary(&b, ev, &s, 1), TERN_EINVAL);
    s.names = bad;
    assert_int_equal(tern_payload_encode_json(&b, &s, 1), TERN_EINVAL);
    s.names = unk;
    assert_int_equal(tern_payload_encode_binary(&b, ev, &s, 1), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_json(&b, &s, 1), 0); /* JSON takes any valid name */
    b.len = 4;
    s.names = NULL; /* values in schema order must cover the schema */
    assert_int_equal(tern_payload_encode_binary(&b, ev, &s, 1), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_json(&b, &s, 1), TERN_EINVAL);
    s.names = ok;
    v[1] = F(NAN);
    assert_int_equal(tern_payload_encode_json(&b, &s, 1), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_binary(&b, ev, &s, 1), TERN_EINVAL);
    v[1] = F(-INFINITY);
    assert_int_equal(tern_payload_encode_binary(&b, ev, &s, 1), TERN_EINVAL);
    s.n_values = 0;
    assert_int_equal(tern_payload_encode_json(&b, &s, 1), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_json(&b, &s, 0), TERN_EINVAL);
    assert_int_equal(b.len, 4);
    assert_memory_equal(b.data, "keep", 4);
    tern_buf_free(&b);
}

/* ---- binary refusals and truncation ---- */

static void expect_bin(const uint8_t *p, size_t n, int code, const char *reason)
{
    tern_payload_error e;
    int rc = tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, p, n, NULL, 0, 0, &e);
    if (rc != code || (code && strcmp(e.reason, reason) != 0)) {
        print_error("rc %d reason \"%s\", want %d \"%s\"\n", rc, e.reason, code, reason);
        fail();
    }
    if (code)
        assert_int_equal(g_dec.n_points, 0);
}

static void test_binary_errors(void **state)
{
    (void)state;
    /* A minimal valid payload: schema 1 (ev), ts 1 (zz 2), seq 5, only soc = 52.7 (zz(527)). */
    const uint8_t ok[] = { 0xB1, 0x00, 0x01, 0x02, 0x05, 0x01, 0x00, 0x00, 0x9e, 0x08 };
    expect_bin(ok, sizeof ok, 0, "");
    assert_int_equal(g_dec.n_points, 1);
    assert_true(name_is(&g_dec.points[0], "soc") && g_dec.points[0].v.f == 52.7);
    assert_true(g_dec.points[0].ts_ms == 1 && g_dec.points[0].seq == 5);

    uint8_t p[sizeof ok + 16];
    memcpy(p, ok, sizeof ok);
    p[0] = 0xB2;
    expect_bin(p, sizeof ok, TERN_EVERSION, "binary: unsupported version 2");
    p[0] = 0xB0;
    expect_bin(p, sizeof ok, TERN_EVERSION, "binary: unsupported version 0");
    memcpy(p, ok, sizeof ok);
    p[1] = 0x84;
    expect_bin(p, sizeof ok, TERN_EPROTO, "binary: reserved flag bits 0x84 set");
    memcpy(p, ok, sizeof ok);
    p[2] = 9;
    expect_bin(p, sizeof ok, TERN_EPROTO, "binary: schema id 9 not registered");
    memcpy(p, ok, sizeof ok);
    p[7] = 0x80; /* id 23 in a schema of 20 */
    expect_bin(p, sizeof ok, TERN_EPROTO, "binary: metric id 23 not in schema 1");
    memcpy(p, ok, sizeof ok);
    p[5] = 0;
    expect_bin(p, sizeof ok - 2, TERN_EPROTO, "binary: sample has no metrics");
    memcpy(p, ok, sizeof ok);
    p[sizeof ok] = 0;
    expect_bin(p, sizeof ok + 1, TERN_EPROTO, "binary: 1 trailing bytes");
    /* Raw values: tag 0 float64, tag 1 int64, anything else refused, non-finite refused. */
    const uint8_t raw_f[] = { 0xB1, 0x02, 0x01, 0x02, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf0, 0x3f };
    expect_bin(raw_f, sizeof raw_f, 0, "");
    assert_true(g_dec.points[0].v.f == 1.0 && !g_dec.points[0].v.is_int);
    const uint8_t raw_i[]
        = { 0xB1, 0x02, 0x01, 0x02, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x03 };
    expect_bin(raw_i, sizeof raw_i, 0, "");
    assert_true(g_dec.points[0].v.is_int && g_dec.points[0].v.i == -2);
    memcpy(p, raw_i, sizeof raw_i);
    p[11] = 7;
    expect_bin(p, sizeof raw_i, TERN_EPROTO, "binary: metric 'soc' has unknown raw tag 7");
    memcpy(p, raw_f, sizeof raw_f);
    p[19] = 0x7f; /* 0x7ff0000000000000 = +inf */
    expect_bin(p, sizeof raw_f, TERN_EPROTO, "binary: metric 'soc' value is not finite");
    memcpy(p, raw_i, sizeof raw_i);
    p[8] = 0x03; /* raw bit for speed, which is absent */
    expect_bin(p, sizeof raw_i, TERN_EPROTO, "binary: raw bit set for absent metric id 1");
    /* Batch counts. */
    const uint8_t batch0[] = { 0xB1, 0x01, 0x01, 0x00 };
    expect_bin(batch0, sizeof batch0, TERN_EPROTO, "binary: batch of 0 samples (1..4096)");
    const uint8_t batch_big[] = { 0xB1, 0x01, 0x01, 0x81, 0x20 };
    expect_bin(batch_big, sizeof batch_big, TERN_EPROTO, "binary: batch of 4097 samples (1..4096)");
    const uint8_t long_varint[]
        = { 0xB1, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01 };
    expect_bin(long_varint, sizeof long_varint, TERN_EPROTO, "binary: invalid varint");
    const uint8_t batch_trunc[]
        = { 0xB1, 0x01, 0x01, 0x02, 0x02, 0x05, 0x01, 0x00, 0x00, 0x9e, 0x08, 0x02 };
    expect_bin(batch_trunc, sizeof batch_trunc, TERN_EPROTO, "batch[1]: binary: truncated");
}

static void test_binary_truncation_every_byte(void **state)
{
    (void)state;
    tern_payload_value v[3][N_EV];
    tern_payload_sample s[3];
    for (int k = 0; k < 3; k++) {
        ev_values(v[k], k);
        s[k] = (tern_payload_sample) { 1767225600000LL + 10000 * k, 7 + (uint64_t)k, N_EV, NULL,
            v[k] };
    }
    v[1][0] = F(0.123456789); /* raw: 9 decimals in a 1-decimal metric */
    v[2][17] = F(1.5);        /* raw: a float in an integer metric */
    tern_buf b = TERN_BUF_INIT;
    for (size_t ns = 1; ns <= 3; ns += 2) {
        tern_buf_reset(&b);
        assert_int_equal(tern_payload_encode_binary(&b, tern_payload_schema_builtin(1), s, ns), 0);
        tern_payload_error e;
        assert_int_equal(
            tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e), 0);
        check_points(&g_dec, s, ns);
        for (size_t cut = 1; cut < b.len; cut++) {
            /* A heap copy of exactly cut bytes, so ASan catches any read past it. */
            uint8_t *copy = tern_malloc(cut);
            assert_non_null(copy);
            memcpy(copy, b.data, cut);
            int rc = tern_payload_decode(&g_dec, TERN_PAYLOAD_SAMPLE, copy, cut, NULL, 0, 0, &e);
            tern_free(copy);
            assert_int_equal(rc, TERN_EPROTO);
            assert_non_null(strstr(e.reason, "binary: truncated"));
            assert_int_equal(g_dec.n_points, 0);
        }
    }
    tern_buf_free(&b);
}

/* ---- schemas, decoder, allocation failure ---- */

static void test_schemas(void **state)
{
    (void)state;
    const tern_payload_schema *ev = tern_payload_schema_builtin(TERN_PAYLOAD_SCHEMA_EV);
    assert_non_null(ev);
    assert_int_equal(ev->n_metrics, 20);
    for (size_t i = 0; i < N_EV; i++)
        assert_string_equal(ev->metrics[i].name, k_ev_names[i]);
    assert_int_equal(ev->metrics[10].decimals, 6);
    assert_int_equal(ev->metrics[17].decimals, -1);
    assert_int_equal(tern_payload_schema_find(ev, "msg_seq", 7), 19);
    assert_int_equal(tern_payload_schema_find(ev, "msg", 3), -1);
    assert_int_equal(tern_payload_schema_by_name("meter")->n_metrics, 10);
    assert_int_equal(tern_payload_schema_by_name("industrial")->id, 3);
    assert_null(tern_payload_schema_by_name("boat"));
    assert_null(tern_payload_schema_builtin(4));
    for (uint32_t id = 1; id <= 3; id++)
        assert_int_equal(tern_payload_schema_check(tern_payload_schema_builtin(id)), 0);

    /* A custom schema; a decoder that knows only it refuses the built-in ids. */
    static const tern_payload_schema_metric m[] = { { "t", 2 }, { "n", -1 }, { "w", 9 } };
    const tern_payload_schema custom = { 4000, "custom", 3, m };
    const tern_payload_schema *list[1] = { &custom };
    tern_payload_decoder d;
    assert_int_equal(tern_payload_decoder_init(&d, list, 1), 0);
    tern_payload_value v[3] = { F(-12.34), I(-7), F(0.000000001) };
    tern_payload_sample s = { 5, 6, 3, NULL, v };
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_payload_encode_binary(&b, &custom, &s, 1), 0);
    assert_int_equal(b.data[1], 0); /* all packed, w as mantissa 1 with 9 decimals */
    tern_payload_error e;
    assert_int_equal(
        tern_payload_decode(&d, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e), 0);
    assert_int_equal(d.n_points, 3);
    assert_true(d.points[0].v.f == -12.34 && d.points[1].v.i == -7 && d.points[2].v.f == 1e-9);
    tern_buf_reset(&b);
    tern_payload_value ev_v[N_EV];
    ev_values(ev_v, 0);
    tern_payload_sample es = { 0, 0, N_EV, NULL, ev_v };
    assert_int_equal(tern_payload_encode_binary(&b, ev, &es, 1), 0);
    assert_int_equal(
        tern_payload_decode(&d, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e), TERN_EPROTO);
    assert_string_equal(e.reason, "binary: schema id 1 not registered");
    tern_payload_decoder_free(&d);

    /* Invalid schemas. */
    static const tern_payload_schema_metric dupm[] = { { "a", 1 }, { "a", 1 } };
    static const tern_payload_schema_metric badd[] = { { "a", 10 } };
    static const tern_payload_schema_metric badn[] = { { "a b", 1 } };
    const tern_payload_schema s_dup = { 9, "x", 2, dupm }, s_dec = { 9, "x", 1, badd },
                              s_name = { 9, "x", 1, badn }, s_empty = { 9, "x", 0, badd };
    assert_int_equal(tern_payload_schema_check(&s_dup), TERN_EINVAL);
    assert_int_equal(tern_payload_schema_check(&s_dec), TERN_EINVAL);
    assert_int_equal(tern_payload_schema_check(&s_name), TERN_EINVAL);
    assert_int_equal(tern_payload_schema_check(&s_empty), TERN_EINVAL);
    const tern_payload_schema *two[2] = { &custom, &custom };
    assert_int_equal(tern_payload_decoder_init(&d, two, 2), TERN_EINVAL);
    const tern_payload_schema *badlist[1] = { &s_dup };
    assert_int_equal(tern_payload_decoder_init(&d, badlist, 1), TERN_EINVAL);
    assert_int_equal(tern_payload_encode_binary(&b, &s_dup, &es, 1), TERN_EINVAL);
    tern_buf_free(&b);
}

static void test_alloc_failure(void **state)
{
    (void)state;
    tern_payload_decoder d;
    assert_int_equal(tern_payload_decoder_init(&d, NULL, 0), 0);
    tern_payload_error e;
    const char *s = "{\"ts\":1,\"seq\":1,\"m\":{\"a\":1}}";
    tern_alloc_fail_after(0);
    int rc = tern_payload_decode(
        &d, TERN_PAYLOAD_SAMPLE, (const uint8_t *)s, strlen(s), NULL, 0, 0, &e);
    tern_alloc_fail_after(-1);
    assert_int_equal(rc, TERN_ENOMEM);
    assert_int_equal(e.code, TERN_ENOMEM);
    assert_int_equal(d.n_points, 0);
    /* Growing past the first capacity fails cleanly too, and the decoder stays usable. */
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_buf_append_str(&b, "{\"ts\":1,\"seq\":1,\"m\":{"), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(tern_buf_printf(&b, "%s\"m%d\":%d", i ? "," : "", i, i), 0);
    assert_int_equal(tern_buf_append_str(&b, "}}"), 0);
    tern_alloc_fail_after(1);
    rc = tern_payload_decode(&d, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e);
    tern_alloc_fail_after(-1);
    assert_int_equal(rc, TERN_ENOMEM);
    assert_int_equal(d.n_points, 0);
    assert_int_equal(
        tern_payload_decode(&d, TERN_PAYLOAD_SAMPLE, b.data, b.len, NULL, 0, 0, &e), 0);
    assert_int_equal(d.n_points, 100);
    /* The array is reused: a smaller payload needs no allocation. */
    tern_alloc_fail_after(0);
    rc = tern_payload_decode(
        &d, TERN_PAYLOAD_SAMPLE, (const uint8_t *)s, strlen(s), NULL, 0, 0, &e);
    tern_alloc_fail_after(-1);
    assert_int_equal(rc, 0);
    tern_buf_free(&b);
    tern_payload_decoder_free(&d);
}

/* ---- topics ---- */

static void test_topics(void **state)
{
    (void)state;
    tern_payload_topic t;
    tern_payload_error e;
    const char *tp = "fleet/bus-\xc3\xbc-7/telemetry";
    assert_int_equal(tern_payload_topic_parse(tp, strlen(tp), NULL, &t, &e), 0);
    assert_int_equal(t.kind, TERN_PAYLOAD_SAMPLE);
    assert_int_equal(t.device_len, 8);
    assert_memory_equal(t.device, "bus-\xc3\xbc-7", 8);
    assert_null(t.metric);
    tp = "fleet/d/m/soc";
    assert_int_equal(tern_payload_topic_parse(tp, strlen(tp), NULL, &t, &e), 0);
    assert_int_equal(t.kind, TERN_PAYLOAD_SINGLE);
    assert_int_equal(t.metric_len, 3);
    assert_memory_equal(t.metric, "soc", 3);
    tp = "acme/fleet/\xe8\xbd\xa6\xe8\xbe\x86/summary";
    assert_int_equal(tern_payload_topic_parse(tp, strlen(tp), "acme/fleet", &t, &e), 0);
    assert_int_equal(t.kind, TERN_PAYLOAD_SUMMARY);
    assert_int_equal(t.device_len, 6);
    tp = "fleet/d/cmd/reboot/now";
    assert_int_equal(tern_payload_topic_parse(tp, strlen(tp), NULL, &t, &e), 0);
    assert_int_equal(t.kind, TERN_PAYLOAD_CMD);
    assert_int_equal(t.metric_len, 10);
    tp = "fleet/d/event";
    assert_int_equal(tern_payload_topic_parse(tp, strlen(tp), NULL, &t, &e), 0);
    assert_int_equal(t.kind, TERN_PAYLOAD_EVENT);
    tp = "fleet/d/config";
    assert_int_equal(tern_payload_topic_parse(tp, strlen(tp), NULL, &t, &e), 0);
    assert_int_equal(t.kind, TERN_PAYLOAD_CONFIG);
    char dev64[96] = "fleet/";
    memset(dev64 + 6, 'd', 64);
    strcpy(dev64 + 70, "/telemetry");
    assert_int_equal(tern_payload_topic_parse(dev64, strlen(dev64), NULL, &t, &e), 0);
    assert_int_equal(t.device_len, 64);

    static const struct {
        const char *topic, *reason;
    } bad[] = {
        { "fleet/d/m/", "topic: missing metric after 'm/'" },
        { "fleet/d/m", "topic: missing metric after 'm/'" },
        { "fleet/d/m/a/b", "topic: levels after the metric" },
        { "fleet/d/m/a b", "topic: invalid metric name 'a b'" },
        { "fleet//telemetry", "topic: empty device id" },
        { "fleet/", "topic: empty device id" },
        { "fleet/d", "topic: missing kind after the device id" },
        { "fleet/d/", "topic: unknown kind ''" },
        { "fleet/d/telemetry/", "topic: levels after 'telemetry'" },
        { "fleet/d/telemetry/x", "topic: levels after 'telemetry'" },
        { "fleet/d/tele", "topic: unknown kind 'tele'" },
        { "fleet/d/cmd", "topic: missing levels after 'cmd/'" },
        { "fleet/d/cmd/a//b", "topic: empty level or wildcard after 'cmd/'" },
        { "fleet/d/cmd/a/", "topic: empty level or wildcard after 'cmd/'" },
        { "fleet/+/telemetry", "topic: wildcard in device id" },
        { "fleet/#/telemetry", "topic: wildcard in device id" },
        { "fleet/a\x01/telemetry", "topic: control character in device id" },
        { "fleet/a\xc2\x85/telemetry", "topic: control character in device id" },
        { "fleet/a\xff/telemetry", "topic: device id is not UTF-8" },
        { "fleet/a\xed\xa0\x80/telemetry", "topic: device id is not UTF-8" },
        { "fleetx/d/telemetry", "topic: does not start with 'fleet/'" },
        { "other/d/telemetry", "topic: does not start with 'fleet/'" },
        { "fleet", "topic: does not start with 'fleet/'" },
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&t, 0x5a, sizeof t);
        tern_payload_topic before = t;
        int rc = tern_payload_topic_parse(bad[i].topic, strlen(bad[i].topic), NULL, &t, &e);
        if (rc != TERN_EPROTO || strcmp(e.reason, bad[i].reason) != 0) {
            print_error(
                "topic %s: rc %d \"%s\", want \"%s\"\n", bad[i].topic, rc, e.reason, bad[i].reason);
            fail();
        }
        assert_memory_equal(&t, &before, sizeof t); /* untouched on error */
    }
    dev64[70] = 'd';
    strcpy(dev64 + 71, "/telemetry");
    assert_int_equal(tern_payload_topic_parse(dev64, strlen(dev64), NULL, &t, &e), TERN_EPROTO);
    assert_string_equal(e.reason, "topic: device id longer than 64 bytes");

    /* Formatting builds what parsing accepts. */
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(
        tern_payload_topic_format(&b, NULL, "bus-\xc3\xbc-7", TERN_PAYLOAD_SINGLE, "soc"), 0);
    assert_int_equal(b.len, strlen("fleet/bus-\xc3\xbc-7/m/soc"));
    assert_memory_equal(b.data, "fleet/bus-\xc3\xbc-7/m/soc", b.len);
    assert_int_equal(tern_payload_topic_parse((const char *)b.data, b.len, NULL, &t, &e), 0);
    assert_int_equal(t.kind, TERN_PAYLOAD_SINGLE);
    tern_buf_reset(&b);
    assert_int_equal(tern_payload_topic_format(&b, "x", "d", TERN_PAYLOAD_SAMPLE, "ignored"), 0);
    assert_memory_equal(b.data, "x/d/telemetry", b.len);
    assert_int_equal(
        tern_payload_topic_format(&b, NULL, "a/b", TERN_PAYLOAD_SAMPLE, NULL), TERN_EINVAL);
    assert_int_equal(
        tern_payload_topic_format(&b, NULL, "d", TERN_PAYLOAD_SINGLE, NULL), TERN_EINVAL);
    assert_int_equal(
        tern_payload_topic_format(&b, NULL, "d", TERN_PAYLOAD_CMD, "a//b"), TERN_EINVAL);
    assert_int_equal(
        tern_payload_topic_format(&b, NULL, "", TERN_PAYLOAD_EVENT, NULL), TERN_EINVAL);
    assert_int_equal(b.len, strlen("x/d/telemetry"));
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_literal_sample),
        cmocka_unit_test(test_ev_round_trip_and_sizes),
        cmocka_unit_test(test_exact_values),
        cmocka_unit_test(test_batches),
        cmocka_unit_test(test_json_errors),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_single_and_summary),
        cmocka_unit_test(test_encoder_refusals),
        cmocka_unit_test(test_binary_errors),
        cmocka_unit_test(test_binary_truncation_every_byte),
        cmocka_unit_test(test_schemas),
        cmocka_unit_test(test_alloc_failure),
        cmocka_unit_test(test_topics),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}

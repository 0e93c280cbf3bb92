/*
 * test_sim_e2e.c: the pure parts of tern-sim's end-to-end latency probe: framing an HTTP/1.1
 * response on a keep-alive connection (tern_sim_http_frame), reading a sample's arrival from a
 * last-value answer (tern_sim_parse_last_ts), and the e2e_* members of the summary and verdict
 * JSON (null without a probe or without samples, numbers otherwise).
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

static int frame(const char *s, int *status, size_t *head, size_t *body, bool *keep)
{
    return tern_sim_http_frame(s, strlen(s), 16384, 1 << 20, status, head, body, keep);
}

static void test_http_frame_whole_and_partial(void **state)
{
    (void)state;
    const char *r = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    "Content-Length: 11\r\n\r\n{\"rows\":[]}HTTP/1.1 404";
    int status = 0;
    size_t head = 0, body = 0;
    bool keep = false;
    assert_int_equal(frame(r, &status, &head, &body, &keep), 0);
    assert_int_equal(status, 200);
    assert_int_equal(head,
        strlen("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
               "Content-Length: 11\r\n\r\n"));
    assert_int_equal(body, 11);
    assert_memory_equal(r + head, "{\"rows\":[]}", 11);
    assert_true(keep); /* HTTP/1.1 keeps the connection by default */
    /* every strict prefix of the headers asks for more, and sets nothing */
    for (size_t n = 0; n < head; n++) {
        status = -1;
        assert_int_equal(
            tern_sim_http_frame(r, n, 16384, 1 << 20, &status, &head, &body, &keep), TERN_EPARTIAL);
        assert_int_equal(status, -1);
    }
    /* the headers are whole before the body is: the caller compares len with head + body */
    assert_int_equal(
        tern_sim_http_frame(r, head + 3, 16384, 1 << 20, &status, &head, &body, &keep), 0);
    assert_int_equal(body, 11);
}

static void test_http_frame_connection_and_no_body(void **state)
{
    (void)state;
    int status = 0;
    size_t head = 0, body = 0;
    bool keep = true;
    assert_int_equal(frame("HTTP/1.1 404 Not Found\r\nconnection: Close\r\ncontent-length: 2\r\n"
                           "\r\n{}",
                         &status, &head, &body, &keep),
        0);
    assert_int_equal(status, 404);
    assert_int_equal(body, 2);
    assert_false(keep);
    assert_int_equal(
        frame("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", &status, &head, &body, &keep), 0);
    assert_false(keep); /* HTTP/1.0 closes unless asked */
    assert_int_equal(frame("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
                         &status, &head, &body, &keep),
        0);
    assert_true(keep);
    /* 204 has no body, with or without a length */
    assert_int_equal(frame("HTTP/1.1 204 No Content\r\n\r\n", &status, &head, &body, &keep), 0);
    assert_int_equal(status, 204);
    assert_int_equal(body, 0);
    assert_true(keep);
}

static void test_http_frame_rejects(void **state)
{
    (void)state;
    int status = 0;
    size_t head = 0, body = 0;
    bool keep = false;
    const char *bad[] = {
        "HTTP/2 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 099 Low\r\nContent-Length: 0\r\n\r\n",
        "SMTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
        "HTTP/1.1 200 OK\r\n\r\n",                            /* a body up to EOF */
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",      /* not a number */
        "HTTP/1.1 200 OK\r\nContent-Length: 12x\r\n\r\n",     /* trailing garbage */
        "HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",        /* empty */
        "HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n", /* beyond max_body */
        "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        status = -1;
        assert_int_equal(frame(bad[i], &status, &head, &body, &keep), TERN_EPROTO);
        assert_int_equal(status, -1);
    }
    /* headers that never end are refused once they pass max_head, not waited for */
    char big[600];
    memset(big, 'a', sizeof big);
    memcpy(big, "HTTP/1.1 200 OK\r\nX: ", 20);
    assert_int_equal(
        tern_sim_http_frame(big, sizeof big, 512, 1 << 20, &status, &head, &body, &keep),
        TERN_EPROTO);
    assert_int_equal(
        tern_sim_http_frame(big, 300, 512, 1 << 20, &status, &head, &body, &keep), TERN_EPARTIAL);
}

static void test_parse_last_ts(void **state)
{
    (void)state;
    const char *ok = "{\"rows\":[{\"device\":\"dev000001\",\"metric\":\"soc\",\"ts\":1767225600000,"
                     "\"value\":81.5},{\"device\":\"dev000001\",\"metric\":\"speed\","
                     "\"ts\":1767225610000,\"value\":42},"
                     " {\"metric\":\"soc\",\"device\":\"dev000001\",\"value\":80,"
                     "\"ts\":1767225620000}],\"count\":3,\"tier\":\"hot\"}";
    int64_t ts = -1;
    assert_int_equal(tern_sim_parse_last_ts(ok, strlen(ok), "speed", &ts), 0);
    assert_int_equal(ts, 1767225610000);
    /* two rows of one metric (head and block): the newest */
    assert_int_equal(tern_sim_parse_last_ts(ok, strlen(ok), "soc", &ts), 0);
    assert_int_equal(ts, 1767225620000);
    /* no row of that metric: not stored yet, ts untouched */
    ts = 7;
    assert_int_equal(tern_sim_parse_last_ts(ok, strlen(ok), "odometer", &ts), TERN_ENOTFOUND);
    assert_int_equal(ts, 7);
    assert_int_equal(tern_sim_parse_last_ts(ok, strlen(ok), "so", &ts), TERN_ENOTFOUND);
    const char *empty = "{\"rows\":[],\"count\":0,\"tier\":\"hot\"}";
    assert_int_equal(tern_sim_parse_last_ts(empty, strlen(empty), "soc", &ts), TERN_ENOTFOUND);
    /* negative and small timestamps are timestamps too */
    const char *neg = "{\"rows\":[{\"metric\":\"soc\",\"ts\":-5,\"value\":1}]}";
    assert_int_equal(tern_sim_parse_last_ts(neg, strlen(neg), "soc", &ts), 0);
    assert_int_equal(ts, -5);
    const char *bad[] = {
        "",
        "{}",                                                           /* no rows */
        "{\"series\":[]}",                                              /* another shape */
        "{\"rows\":[{\"metric\":\"soc\",\"value\":1}]}",                /* no ts */
        "{\"rows\":[{\"ts\":5,\"value\":1}]}",                          /* no metric */
        "{\"rows\":[{\"metric\":\"soc\",\"ts\":1.5,\"value\":1}]}",     /* not an integer */
        "{\"rows\":[{\"metric\":\"soc\",\"ts\":1e300,\"value\":1}]}",   /* out of range */
        "{\"rows\":[{\"metric\":\"soc\",\"ts\":\"5\",\"value\":1}]}",   /* a string */
        "{\"rows\":[{\"metric\":\"soc\",\"ts\":5,\"value\":1}]",        /* cut */
        "{\"rows\":[{\"metric\":\"soc\",\"ts\":5,\"value\":1}]} extra", /* trailing */
        "{\"rows\":[{}]}",
        "{\"rows\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ts = 7;
        assert_int_equal(tern_sim_parse_last_ts(bad[i], strlen(bad[i]), "soc", &ts), TERN_EPROTO);
        assert_int_equal(ts, 7);
    }
    /* deep nesting in a value is bounded */
    char deep[400] = "{\"rows\":[{\"metric\":\"soc\",\"ts\":5,\"value\":";
    for (int i = 0; i < 100; i++)
        strcat(deep, "[");
    assert_int_equal(tern_sim_parse_last_ts(deep, strlen(deep), "soc", &ts), TERN_EPROTO);
}

/* The text of key in a one-line JSON object, up to the next ',' or '}'. */
static void json_value(const tern_buf *b, const char *key, char *out, size_t cap)
{
    char pat[64], text[1024];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    assert_true(b->len < sizeof text);
    memcpy(text, b->data, b->len);
    text[b->len] = '\0';
    const char *p = strstr(text, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t n = strcspn(p, ",}");
    assert_true(n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
}

static void test_summary_and_verdict_e2e_fields(void **state)
{
    (void)state;
    tern_sim_summary s;
    memset(&s, 0, sizeof s);
    s.processes = 1;
    s.verified = true;
    s.verify_ok = true;
    char v[64];
    /* without a probe (no --api): null, in both lines */
    for (int line = 0; line < 2; line++) {
        tern_buf b = TERN_BUF_INIT;
        assert_int_equal(line ? tern_sim_verdict_json(&b, &s) : tern_sim_summary_json(&b, &s), 0);
        json_value(&b, "e2e_p50_ms", v, sizeof v);
        assert_string_equal(v, "null");
        json_value(&b, "e2e_p99_ms", v, sizeof v);
        assert_string_equal(v, "null");
        json_value(&b, "e2e_samples", v, sizeof v);
        assert_string_equal(v, "0");
        assert_int_equal(b.data[b.len - 1], '}');
        tern_buf_free(&b);
    }
    /* a probe that saw nothing arrive: still null, the timeouts say why */
    s.e2e_measured = true;
    s.e2e_timeouts = 4;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_sim_verdict_json(&b, &s), 0);
    json_value(&b, "e2e_p50_ms", v, sizeof v);
    assert_string_equal(v, "null");
    json_value(&b, "e2e_timeouts", v, sizeof v);
    assert_string_equal(v, "4");
    /* with samples: numbers */
    s.e2e_samples = 12;
    s.e2e_p50_ms = 3.25;
    s.e2e_p99_ms = 40.5;
    for (int line = 0; line < 2; line++) {
        tern_buf_reset(&b);
        assert_int_equal(line ? tern_sim_verdict_json(&b, &s) : tern_sim_summary_json(&b, &s), 0);
        json_value(&b, "e2e_samples", v, sizeof v);
        assert_string_equal(v, "12");
        json_value(&b, "e2e_p50_ms", v, sizeof v);
        assert_string_equal(v, "3.250");
        json_value(&b, "e2e_p99_ms", v, sizeof v);
        assert_string_equal(v, "40.500");
        assert_int_equal(b.data[0], '{');
        assert_int_equal(b.data[b.len - 1], '}');
    }
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_frame_whole_and_partial),
        cmocka_unit_test(test_http_frame_connection_and_no_body),
        cmocka_unit_test(test_http_frame_rejects),
        cmocka_unit_test(test_parse_last_ts),
        cmocka_unit_test(test_summary_and_verdict_e2e_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/*
 * test_lineproto.c: the InfluxDB line-protocol parser: every syntax element and escape, every
 * field type, every error with its line/column and recovery at the next line, CRLF, comments,
 * blank lines, precision scaling and floor-to-ms, timestamp range, limits on tags and fields,
 * duplicate fields, 1,000-line bodies, unescape/compare helpers and the writers' round trip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/error.h"
#include "tsdb/lineproto.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define MAX_TAGS 8
#define MAX_FIELDS 8
#define NOW_MS 1700000000000LL

typedef struct fixture {
    tern_lp_parser p;
    tern_lp_tag tags[MAX_TAGS];
    tern_lp_field fields[MAX_FIELDS];
    tern_lp_line line;
    tern_lp_error err;
} fixture;

static fixture fx;

static void start(const char *s, tern_lp_precision prec)
{
    memset(&fx, 0, sizeof fx);
    tern_lp_init(&fx.p, s, strlen(s), prec, NOW_MS, fx.tags, MAX_TAGS, fx.fields, MAX_FIELDS);
}

/* Parses s (one line expected) and returns tern_lp_next's result. */
static int parse1(const char *s)
{
    start(s, TERN_LP_NS);
    return tern_lp_next(&fx.p, &fx.line, &fx.err);
}

static void assert_str(tern_lp_str s, const char *want)
{
    char buf[256];
    size_t n = tern_lp_unescape(s, buf, sizeof buf);
    assert_true(n < sizeof buf);
    buf[n] = '\0';
    assert_string_equal(buf, want);
    assert_true(tern_lp_str_eq(s, want, strlen(want)));
}

static void test_minimal_line(void **state)
{
    (void)state;
    assert_int_equal(parse1("cpu value=1"), 1);
    assert_str(fx.line.measurement, "cpu");
    assert_int_equal(fx.line.measurement.escaped, TERN_LP_PLAIN);
    assert_int_equal(fx.line.n_tags, 0);
    assert_int_equal(fx.line.n_fields, 1);
    assert_str(fx.line.fields[0].key, "value");
    assert_int_equal(fx.line.fields[0].type, TERN_LP_FLOAT);
    assert_true(fx.line.fields[0].v.f == 1.0);
    assert_false(fx.line.has_ts);
    assert_true(fx.line.ts_ms == NOW_MS);
    assert_int_equal(fx.line.line_no, 1);
    assert_int_equal(fx.line.raw.len, strlen("cpu value=1"));
    assert_int_equal(tern_lp_next(&fx.p, &fx.line, &fx.err), 0);
    assert_int_equal(tern_lp_next(&fx.p, &fx.line, &fx.err), 0);
}

static void test_full_line(void **state)
{
    (void)state;
    assert_int_equal(parse1("ev,device_id=car-1,fleet=north soc=87.5,odo=12345i,ok=true,s=\"hi\" "
                            "1700000000123000000"),
        1);
    assert_str(fx.line.measurement, "ev");
    assert_int_equal(fx.line.n_tags, 2);
    assert_str(fx.line.tags[0].key, "device_id");
    assert_str(fx.line.tags[0].value, "car-1");
    assert_str(fx.line.tags[1].key, "fleet");
    assert_str(fx.line.tags[1].value, "north");
    assert_int_equal(fx.line.n_fields, 4);
    assert_true(fx.line.fields[0].v.f == 87.5);
    assert_int_equal(fx.line.fields[1].type, TERN_LP_INT);
    assert_true(fx.line.fields[1].v.i == 12345);
    assert_int_equal(fx.line.fields[2].type, TERN_LP_BOOL);
    assert_true(fx.line.fields[2].v.b);
    assert_int_equal(fx.line.fields[3].type, TERN_LP_STRING);
    assert_str(fx.line.fields[3].v.s, "hi");
    assert_true(fx.line.has_ts);
    assert_true(fx.line.ts_ms == 1700000000123LL);
}

static void test_escapes_in_names(void **state)
{
    (void)state;
    assert_int_equal(parse1("my\\ meas\\,x,t\\=k=v\\ a\\,b\\=c f\\ k\\,\\==1"), 1);
    assert_int_equal(fx.line.measurement.escaped, TERN_LP_ESC_NAME);
    assert_str(fx.line.measurement, "my meas,x");
    assert_str(fx.line.tags[0].key, "t=k");
    assert_str(fx.line.tags[0].value, "v a,b=c");
    assert_str(fx.line.fields[0].key, "f k,=");
    /* A backslash before any other byte is literal; "\\" is one backslash. */
    assert_int_equal(parse1("a\\b,k=x\\\\y f=1"), 1);
    assert_str(fx.line.measurement, "a\\b");
    assert_str(fx.line.tags[0].value, "x\\y");
    /* '=' needs no escape in a measurement. */
    assert_int_equal(parse1("m=x f=1"), 1);
    assert_str(fx.line.measurement, "m=x");
}

static void test_string_fields(void **state)
{
    (void)state;
    assert_int_equal(parse1("m s=\"a \\\"q\\\" b\\\\c, d=e\\n\",t=\"\" 5"), 1);
    assert_int_equal(fx.line.n_fields, 2);
    assert_int_equal(fx.line.fields[0].v.s.escaped, TERN_LP_ESC_STRING);
    assert_str(fx.line.fields[0].v.s, "a \"q\" b\\c, d=e\\n");
    assert_int_equal(fx.line.fields[1].type, TERN_LP_STRING);
    assert_int_equal(fx.line.fields[1].v.s.len, 0);
    assert_true(fx.line.ts_ms == 0); /* 5 ns floors to 0 ms */

    /* Unterminated strings, including one whose last quote is escaped. */
    assert_int_equal(parse1("m s=\"abc"), TERN_EPROTO);
    assert_string_equal(fx.err.reason, "unterminated string");
    assert_int_equal(fx.err.column, 5);
    assert_int_equal(parse1("m s=\"abc\\\""), TERN_EPROTO);
    assert_string_equal(fx.err.reason, "unterminated string");
    /* Bytes glued after the closing quote. */
    assert_int_equal(parse1("m s=\"abc\"x"), TERN_EPROTO);
    assert_string_equal(fx.err.reason, "invalid field format");
}

static void test_floats(void **state)
{
    (void)state;
    static const struct {
        const char *v;
        double want;
    } cases[] = {
        { "1", 1.0 },
        { "-1", -1.0 },
        { "1.5", 1.5 },
        { "-1e3", -1000.0 },
        { "1E-3", 0.001 },
        { "1e+2", 100.0 },
        { ".5", 0.5 },
        { "-.25", -0.25 },
        { "5.", 5.0 },
        { "0", 0.0 },
        { "00012.50", 12.5 },
        { "3.14159265358979", 3.14159265358979 },
        { "0.1", 0.1 },
        { "123456789012345678901234567890", 123456789012345678901234567890.0 },
        { "1.7976931348623157e308", 1.7976931348623157e308 },
        { "4.9406564584124654e-324", 4.9406564584124654e-324 },
        { "2.2250738585072014e-308", 2.2250738585072014e-308 },
        { "1e-400", 0.0 },
        { "9007199254740993", 9007199254740993.0 },
        { "0.30000000000000004", 0.30000000000000004 },
        { "1e22", 1e22 },
        { "1e23", 1e23 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char line[128];
        snprintf(line, sizeof line, "m v=%s", cases[k].v);
        int rc = parse1(line);
        if (rc != 1)
            fail_msg("%s: rc %d", line, rc);
        assert_int_equal(fx.line.fields[0].type, TERN_LP_FLOAT);
        if (fx.line.fields[0].v.f != cases[k].want)
            fail_msg("%s: got %.17g want %.17g", line, fx.line.fields[0].v.f, cases[k].want);
    }
    assert_int_equal(parse1("m v=-0"), 1);
    assert_true(signbit(fx.line.fields[0].v.f));
    assert_int_equal(parse1("m v=-0.0"), 1);
    assert_true(signbit(fx.line.fields[0].v.f) && fx.line.fields[0].v.f == 0.0);

    static const char *bad[] = { "m v=-", "m v=.", "m v=1e", "m v=1e+", "m v=1.2.3", "m v=1x",
        "m v=nan", "m v=NaN", "m v=inf", "m v=-inf", "m v=Infinity", "m v=0x10", "m v=+1",
        "m v=1..", "m v=e5", "m v=--1", "m v=1e5.5" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        int rc = parse1(bad[k]);
        if (rc != TERN_EPROTO)
            fail_msg("%s: rc %d", bad[k], rc);
        assert_int_equal(fx.err.column, 5);
    }
    assert_int_equal(parse1("m v=1e400"), TERN_ERANGE);
    assert_int_equal(parse1("m v=-1e309"), TERN_ERANGE);
}

static void test_integers(void **state)
{
    (void)state;
    assert_int_equal(
        parse1("m a=12i,b=-7i,c=9223372036854775807i,d=-9223372036854775808i,e=0i"), 1);
    assert_true(fx.line.fields[0].v.i == 12);
    assert_true(fx.line.fields[1].v.i == -7);
    assert_true(fx.line.fields[2].v.i == INT64_MAX);
    assert_true(fx.line.fields[3].v.i == INT64_MIN);
    assert_true(fx.line.fields[4].v.i == 0);
    for (int k = 0; k < 5; k++)
        assert_int_equal(fx.line.fields[k].type, TERN_LP_INT);
    assert_int_equal(parse1("m a=9223372036854775808i"), TERN_ERANGE);
    assert_int_equal(parse1("m a=-9223372036854775809i"), TERN_ERANGE);
    assert_int_equal(parse1("m a=99999999999999999999999i"), TERN_ERANGE);
    assert_int_equal(parse1("m a=1.5i"), TERN_EPROTO);
    assert_int_equal(parse1("m a=-i"), TERN_EPROTO);
    assert_int_equal(parse1("m a=1e3i"), TERN_EPROTO);

    assert_int_equal(parse1("m a=0u,b=18446744073709551615u"), 1);
    assert_int_equal(fx.line.fields[0].type, TERN_LP_UINT);
    assert_true(fx.line.fields[0].v.u == 0);
    assert_true(fx.line.fields[1].v.u == UINT64_MAX);
    assert_int_equal(parse1("m a=18446744073709551616u"), TERN_ERANGE);
    assert_int_equal(parse1("m a=-1u"), TERN_EPROTO);
    assert_int_equal(parse1("m a=u"), TERN_EPROTO);
}

static void test_booleans(void **state)
{
    (void)state;
    static const char *yes[] = { "t", "T", "true", "True", "TRUE" };
    static const char *no[] = { "f", "F", "false", "False", "FALSE" };
    char line[64];
    for (size_t k = 0; k < 5; k++) {
        snprintf(line, sizeof line, "m b=%s,c=%s", yes[k], no[k]);
        assert_int_equal(parse1(line), 1);
        assert_int_equal(fx.line.fields[0].type, TERN_LP_BOOL);
        assert_true(fx.line.fields[0].v.b);
        assert_int_equal(fx.line.fields[1].type, TERN_LP_BOOL);
        assert_false(fx.line.fields[1].v.b);
    }
    static const char *bad[] = { "m b=tRUE", "m b=yes", "m b=truee", "m b=fals", "m b=abc" };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++)
        assert_int_equal(parse1(bad[k]), TERN_EPROTO);
}

static void test_syntax_errors(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        const char *reason;
        size_t column;
    } cases[] = {
        { "cpu", "missing fields", 4 },
        { "cpu ", "missing fields", 5 },
        { "cpu,host=a", "missing fields", 11 },
        { ",host=a f=1", "missing measurement", 1 },
        { "cpu,=a f=1", "missing tag key", 5 },
        { "cpu,host f=1", "missing tag value", 9 },
        { "cpu,host= f=1", "missing tag value", 10 },
        { "cpu,host=a, f=1", "missing tag key", 12 },
        { "cpu,host=a=b f=1", "invalid tag format", 11 },
        { "cpu value", "missing field value", 10 },
        { "cpu value=", "missing field value", 11 },
        { "cpu value= 1", "missing field value", 11 },
        { "cpu =1", "missing field key", 5 },
        { "cpu a=1,", "missing field key", 9 },
        { "cpu a=1,,b=2", "missing field key", 9 },
        { "cpu a=1 12x", "bad timestamp", 9 },
        { "cpu a=1 12 13", "bad timestamp", 12 },
        { "cpu a=1 -", "bad timestamp", 9 },
        { "cpu a=1 1.5", "bad timestamp", 9 },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        int rc = parse1(cases[k].line);
        if (rc != TERN_EPROTO)
            fail_msg("'%s': rc %d", cases[k].line, rc);
        if (strcmp(fx.err.reason, cases[k].reason) != 0 || fx.err.column != cases[k].column)
            fail_msg("'%s': got '%s' at %zu, want '%s' at %zu", cases[k].line, fx.err.reason,
                fx.err.column, cases[k].reason, cases[k].column);
        assert_int_equal(fx.err.code, TERN_EPROTO);
        assert_int_equal(fx.err.line_no, 1);
        assert_int_equal(fx.err.raw.len, strlen(cases[k].line));
        assert_ptr_equal(fx.err.raw.p, cases[k].line);
    }
}

static void test_blank_comment_crlf(void **state)
{
    (void)state;
    const char *body = "\n# a comment\r\n   \t\n  # indented comment\ncpu a=1\r\n\r\n"
                       "  mem b=2i 1000000\r\n\n";
    start(body, TERN_LP_NS);
    assert_int_equal(tern_lp_next(&fx.p, &fx.line, &fx.err), 1);
    assert_str(fx.line.measurement, "cpu");
    assert_int_equal(fx.line.line_no, 5);
    assert_int_equal(fx.line.raw.len, 7); /* no '\r' */
    assert_true(fx.line.fields[0].v.f == 1.0);
    assert_int_equal(tern_lp_next(&fx.p, &fx.line, &fx.err), 1);
    assert_str(fx.line.measurement, "mem");
    assert_int_equal(fx.line.line_no, 7);
    assert_true(fx.line.ts_ms == 1);
    assert_int_equal(tern_lp_next(&fx.p, &fx.line, &fx.err), 0);
    assert_int_equal(fx.p.line_no, 8);

    /* A string value followed by CRLF; trailing blanks after the timestamp. */
    assert_int_equal(parse1("m s=\"x\"\r\n"), 1);
    assert_str(fx.line.fields[0].v.s, "x");
    assert_int_equal(parse1("m f=1 5000000  \t\r\n"), 1);
    assert_true(fx.line.ts_ms == 5);
    /* Several blanks between sections. */
    assert_int_equal(parse1("m,t=1   f=2  \t 3000000"), 1);
    assert_true(fx.line.ts_ms == 3);
    /* An empty input and an input of only comments. */
    assert_int_equal(parse1(""), 0);
    assert_int_equal(parse1("# x\n#y"), 0);
}

static void test_recovery_after_bad_lines(void **state)
{
    (void)state;
    const char *body = "good a=1\nbad\ngood b=2\nbad,x= y=1\r\ngood c=3";
    start(body, TERN_LP_NS);
    int n_good = 0, n_bad = 0;
    size_t bad_lines[2] = { 0, 0 };
    for (;;) {
        int rc = tern_lp_next(&fx.p, &fx.line, &fx.err);
        if (rc == 0)
            break;
        if (rc == 1) {
            n_good++;
            assert_str(fx.line.measurement, "good");
            continue;
        }
        assert_int_equal(rc, TERN_EPROTO);
        bad_lines[n_bad++] = fx.err.line_no;
    }
    assert_int_equal(n_good, 3);
    assert_int_equal(n_bad, 2);
    assert_int_equal(bad_lines[0], 2);
    assert_int_equal(bad_lines[1], 4);
    assert_int_equal(fx.err.raw.len, strlen("bad,x= y=1"));

    char msg[512];
    size_t n = tern_lp_error_format(&fx.err, msg, sizeof msg);
    assert_int_equal(n, strlen(msg));
    assert_string_equal(msg, "unable to parse 'bad,x= y=1': missing tag value (line 4, column 7)");
    /* Cut output reports the needed length. */
    char small[10];
    assert_int_equal(tern_lp_error_format(&fx.err, small, sizeof small), n);
    assert_int_equal(strlen(small), 9);
}

static void test_precision_and_range(void **state)
{
    (void)state;
    static const struct {
        tern_lp_precision p;
        const char *ts;
        int64_t want_ms;
    } cases[] = {
        { TERN_LP_NS, "1999999", 1 },
        { TERN_LP_NS, "-1", -1 },
        { TERN_LP_NS, "-1000000", -1 },
        { TERN_LP_NS, "-1000001", -2 },
        { TERN_LP_NS, "9223372036854775806", 9223372036854LL },
        { TERN_LP_NS, "-9223372036854775806", -9223372036855LL },
        { TERN_LP_US, "1500", 1 },
        { TERN_LP_US, "-1500", -2 },
        { TERN_LP_MS, "1700000000123", 1700000000123LL },
        { TERN_LP_MS, "-5", -5 },
        { TERN_LP_S, "1700000000", 1700000000000LL },
        { TERN_LP_MINUTE, "2", 120000 },
        { TERN_LP_HOUR, "-1", -3600000 },
        { TERN_LP_S, "9223372036", 9223372036000LL },
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char line[64];
        snprintf(line, sizeof line, "m f=1 %s", cases[k].ts);
        start(line, cases[k].p);
        assert_int_equal(tern_lp_next(&fx.p, &fx.line, &fx.err), 1);
        if (fx.line.ts_ms != cases[k].want_ms)
            fail_msg("%s (prec %d): %" PRId64 " != %" PRId64, line, cases[k].p, fx.line.ts_ms,
                cases[k].want_ms);
    }
    static const struct {
        tern_lp_precision p;
        const char *ts;
    } out_of_range[] = {
        { TERN_LP_NS, "9223372036854775807" },
        { TERN_LP_NS, "-9223372036854775807" },
        { TERN_LP_NS, "-9223372036854775808" },
        { TERN_LP_NS, "99999999999999999999999" },
        { TERN_LP_S, "9223372037" },
        { TERN_LP_MS, "-9223372036855" },
        { TERN_LP_HOUR, "2562048" },
    };
    for (size_t k = 0; k < sizeof out_of_range / sizeof out_of_range[0]; k++) {
        char line[64];
        snprintf(line, sizeof line, "m f=1 %s", out_of_range[k].ts);
        start(line, out_of_range[k].p);
        int rc = tern_lp_next(&fx.p, &fx.line, &fx.err);
        if (rc != TERN_ERANGE)
            fail_msg("%s: rc %d", line, rc);
        assert_string_equal(fx.err.reason, "time outside range");
    }

    tern_lp_precision p = TERN_LP_NS;
    static const struct {
        const char *s;
        tern_lp_precision p;
    } names[] = { { "ns", TERN_LP_NS }, { "n", TERN_LP_NS }, { "us", TERN_LP_US },
        { "u", TERN_LP_US }, { "ms", TERN_LP_MS }, { "s", TERN_LP_S }, { "m", TERN_LP_MINUTE },
        { "h", TERN_LP_HOUR } };
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        assert_int_equal(tern_lp_parse_precision(names[k].s, &p), 0);
        assert_int_equal(p, names[k].p);
    }
    p = TERN_LP_HOUR;
    assert_int_equal(tern_lp_parse_precision("x", &p), TERN_EINVAL);
    assert_int_equal(tern_lp_parse_precision("", &p), TERN_EINVAL);
    assert_int_equal(tern_lp_parse_precision(NULL, &p), TERN_EINVAL);
    assert_int_equal(tern_lp_parse_precision("NS", &p), TERN_EINVAL);
    assert_int_equal(p, TERN_LP_HOUR);
    assert_int_equal(tern_lp_parse_precision_v2("ms", &p), 0);
    assert_int_equal(p, TERN_LP_MS);
    assert_int_equal(tern_lp_parse_precision_v2("h", &p), TERN_EINVAL);
    assert_int_equal(tern_lp_parse_precision_v2("u", &p), TERN_EINVAL);
    assert_int_equal(p, TERN_LP_MS);
}

static void test_limits_and_duplicates(void **state)
{
    (void)state;
    /* Exactly the limit is fine, one more is TERN_EQUOTA. */
    assert_int_equal(parse1("m,a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8 f=1"), 1);
    assert_int_equal(fx.line.n_tags, 8);
    assert_int_equal(parse1("m,a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9 f=1"), TERN_EQUOTA);
    assert_string_equal(fx.err.reason, "too many tags");
    assert_int_equal(parse1("m a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8"), 1);
    assert_int_equal(fx.line.n_fields, 8);
    assert_int_equal(parse1("m a=1,b=2,c=3,d=4,e=5,f=6,g=7,h=8,i=9"), TERN_EQUOTA);
    assert_string_equal(fx.err.reason, "too many fields");

    /* A repeated field: last value (and type) wins, in the first one's position; duplicates do
     * not count against the limit. */
    assert_int_equal(parse1("m a=1,b=2,a=3i,a=\"x\",c=4,b=5,a=1,b=2,a=1,b=2,a=1,b=2,a=7i"), 1);
    assert_int_equal(fx.line.n_fields, 3);
    assert_str(fx.line.fields[0].key, "a");
    assert_int_equal(fx.line.fields[0].type, TERN_LP_INT);
    assert_true(fx.line.fields[0].v.i == 7);
    assert_str(fx.line.fields[1].key, "b");
    assert_true(fx.line.fields[1].v.f == 2.0);
    assert_str(fx.line.fields[2].key, "c");
    /* Keys that share length and first/last bytes but differ are kept apart. */
    assert_int_equal(parse1("m axb=1,ayb=2,axb=3"), 1);
    assert_int_equal(fx.line.n_fields, 2);
    assert_true(fx.line.fields[0].v.f == 3.0);
    assert_true(fx.line.fields[1].v.f == 2.0);

    /* Zero tags allowed by the caller: any tag is too many. */
    tern_lp_field fields[1];
    tern_lp_parser p;
    tern_lp_line line;
    tern_lp_error err;
    const char *s = "m,t=1 f=1\nm f=2";
    tern_lp_init(&p, s, strlen(s), TERN_LP_NS, 0, NULL, 0, fields, 1);
    assert_int_equal(tern_lp_next(&p, &line, &err), TERN_EQUOTA);
    assert_int_equal(tern_lp_next(&p, &line, &err), 1);
    assert_true(line.fields[0].v.f == 2.0);
}

static void test_thousand_lines(void **state)
{
    (void)state;
    static char body[1000 * 96];
    size_t off = 0;
    for (int k = 0; k < 1000; k++) {
        int n = snprintf(body + off, sizeof body - off,
            "ev,device_id=d%d,fleet=f%d soc=%d.%d,odo=%di,%s %d000000\n", k, k % 7, k % 100, k % 10,
            k * 3, k % 13 == 0 ? "bad" : "ok=t", k);
        off += (size_t)n;
    }
    start(body, TERN_LP_NS);
    int n_good = 0, n_bad = 0;
    for (;;) {
        int rc = tern_lp_next(&fx.p, &fx.line, &fx.err);
        if (rc == 0)
            break;
        if (rc < 0) {
            assert_int_equal((fx.err.line_no - 1) % 13, 0);
            n_bad++;
            continue;
        }
        int k = (int)fx.line.line_no - 1;
        char want[32];
        snprintf(want, sizeof want, "d%d", k);
        assert_str(fx.line.tags[0].value, want);
        assert_int_equal(fx.line.n_fields, 3);
        assert_true(fx.line.fields[0].v.f == (double)(k % 100) + (double)(k % 10) / 10.0);
        assert_true(fx.line.fields[1].v.i == k * 3);
        assert_true(fx.line.ts_ms == k);
        n_good++;
    }
    assert_int_equal(n_bad, 77);
    assert_int_equal(n_good, 923);
}

static void test_unescape_helpers(void **state)
{
    (void)state;
    tern_lp_str s = { "a\\,b\\=c\\ d\\\\e\\x", 15, TERN_LP_ESC_NAME };
    char out[32];
    size_t n = tern_lp_unescape(s, out, sizeof out);
    assert_int_equal(n, 11);
    assert_memory_equal(out, "a,b=c d\\e\\x", 11);
    /* A short buffer: the needed length is still returned, only cap bytes written. */
    memset(out, '#', sizeof out);
    assert_int_equal(tern_lp_unescape(s, out, 3), 11);
    assert_memory_equal(out, "a,b#", 4);
    assert_true(tern_lp_str_eq(s, "a,b=c d\\e\\x", 11));
    assert_false(tern_lp_str_eq(s, "a,b=c d\\e\\x", 10));
    assert_false(tern_lp_str_eq(s, "a,b=c d\\e\\y", 11));
    tern_lp_str st = { "q\\\"\\\\\\,", 7, TERN_LP_ESC_STRING };
    n = tern_lp_unescape(st, out, sizeof out);
    assert_int_equal(n, 5);
    assert_memory_equal(out, "q\"\\\\,", 5);
    assert_true(tern_lp_str_eq(st, "q\"\\\\,", 5));
    assert_false(tern_lp_str_eq(st, "q\"\\\\", 4));
    tern_lp_str plain = { "a\\,b", 4, TERN_LP_PLAIN };
    assert_int_equal(tern_lp_unescape(plain, out, sizeof out), 4);
    assert_true(tern_lp_str_eq(plain, "a\\,b", 4));
}

static void test_writers_round_trip(void **state)
{
    (void)state;
    tern_buf b = TERN_BUF_INIT;
    assert_int_equal(tern_lp_append_name(&b, "my meas,=\\", 10, true), 0);
    assert_int_equal(tern_buf_append_str(&b, ","), 0);
    assert_int_equal(tern_lp_append_name(&b, "k", 1, false), 0);
    assert_int_equal(tern_buf_append_str(&b, "="), 0);
    assert_int_equal(tern_lp_append_name(&b, "#v", 2, false), 0);
    assert_int_equal(tern_buf_append_str(&b, " "), 0);
    tern_lp_field fs[5] = {
        { .type = TERN_LP_FLOAT, .v.f = 0.1 },
        { .type = TERN_LP_INT, .v.i = INT64_MIN },
        { .type = TERN_LP_UINT, .v.u = UINT64_MAX },
        { .type = TERN_LP_BOOL, .v.b = false },
        { .type = TERN_LP_STRING, .v.s = { "say \"hi\" \\", 10, 0 } },
    };
    const char *keys[5] = { "f", "i", "u", "b", "s" };
    for (int k = 0; k < 5; k++) {
        if (k)
            assert_int_equal(tern_buf_append_str(&b, ","), 0);
        assert_int_equal(tern_lp_append_name(&b, keys[k], 1, false), 0);
        assert_int_equal(tern_buf_append_str(&b, "="), 0);
        assert_int_equal(tern_lp_append_field_value(&b, &fs[k]), 0);
    }
    assert_int_equal(tern_buf_append_str(&b, " 42"), 0);
    b.data[b.len] = '\0';
    assert_int_equal(parse1((const char *)b.data), 1);
    assert_str(fx.line.measurement, "my meas,=\\");
    assert_str(fx.line.tags[0].value, "#v");
    assert_true(fx.line.fields[0].v.f == 0.1);
    assert_true(fx.line.fields[1].v.i == INT64_MIN);
    assert_true(fx.line.fields[2].v.u == UINT64_MAX);
    assert_false(fx.line.fields[3].v.b);
    assert_str(fx.line.fields[4].v.s, "say \"hi\" \\");
    tern_buf_free(&b);

    assert_int_equal(tern_lp_append_name(&b, "", 0, false), TERN_EINVAL);
    assert_int_equal(tern_lp_append_name(&b, "#m", 2, true), TERN_EINVAL);
    assert_int_equal(tern_lp_append_name(&b, "\tk", 2, false), TERN_EINVAL);
    assert_int_equal(tern_lp_append_name(&b, "a\nb", 3, false), TERN_EINVAL);
    tern_lp_field nan = { .type = TERN_LP_FLOAT, .v.f = NAN };
    assert_int_equal(tern_lp_append_field_value(&b, &nan), TERN_EINVAL);
    tern_lp_field inf = { .type = TERN_LP_FLOAT, .v.f = -INFINITY };
    assert_int_equal(tern_lp_append_field_value(&b, &inf), TERN_EINVAL);
    tern_lp_field nl = { .type = TERN_LP_STRING, .v.s = { "a\nb", 3, 0 } };
    assert_int_equal(tern_lp_append_field_value(&b, &nl), TERN_EINVAL);
    tern_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_line),
        cmocka_unit_test(test_full_line),
        cmocka_unit_test(test_escapes_in_names),
        cmocka_unit_test(test_string_fields),
        cmocka_unit_test(test_floats),
        cmocka_unit_test(test_integers),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_syntax_errors),
        cmocka_unit_test(test_blank_comment_crlf),
        cmocka_unit_test(test_recovery_after_bad_lines),
        cmocka_unit_test(test_precision_and_range),
        cmocka_unit_test(test_limits_and_duplicates),
        cmocka_unit_test(test_thousand_lines),
        cmocka_unit_test(test_unescape_helpers),
        cmocka_unit_test(test_writers_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

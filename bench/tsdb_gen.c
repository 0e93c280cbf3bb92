/*
 * tsdb_gen.c: writes a deterministic simulated fleet (src/sim/profile.h) as InfluxDB line
 * protocol or as OpenMetrics text, so tern and every peer TSDB load exactly the same points.
 *
 *   tsdb_gen --devices 1000 --hours 6 --step 10 --format lp|openmetrics --out FILE
 *            [--start MS] [--seed N] [--profile ev] [--precision ns|ms|s] [--series-json FILE]
 *
 * Line protocol: one line per device per step, device tags in the series key:
 *   ev,device_id=dev000001,fleet=fleet-03,region=eu-west,model=sedan-75 soc=80.5,...,msg_seq=7i TS
 * OpenMetrics (for `promtool tsdb create-blocks-from openmetrics`): one family per metric, each
 * family contiguous with its `# TYPE` line, every series's samples in time order, `# EOF` last:
 *   ev_soc{device_id="dev000001",fleet="fleet-03",region="eu-west",model="sedan-75"} 80.5
 * 1767225600.000 Values are printed with exactly their metric's decimals (integer counters as
 * integers, with the `i` suffix in line protocol), from the same doubles in both formats.
 * --series-json writes the label sets of every series, one JSON object a line, the input `promtool
 * tsdb bench write` takes. The program prints one JSON summary line on stderr: lines, points,
 * bytes.
 */
#include "base/error.h"
#include "sim/profile.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_START_MS 1767225600000LL /* 2026-01-01T00:00:00Z */

typedef struct options {
    uint64_t devices;
    double hours;
    int64_t step_ms;
    int64_t start_ms;
    const char *format;
    const char *out;
    uint64_t seed;
    const char *profile;
    const char *precision;
    const char *series_json;
} options;

typedef struct out_buf {
    FILE *f;
    char *data;
    size_t len, cap;
    uint64_t bytes;
    int failed;
} out_buf;

static void out_flush(out_buf *o)
{
    if (o->len > 0 && fwrite(o->data, 1, o->len, o->f) != o->len)
        o->failed = 1;
    o->bytes += o->len;
    o->len = 0;
}

/* out_reserve makes room for n more bytes and returns where to write them. */
static char *out_reserve(out_buf *o, size_t n)
{
    if (o->len + n > o->cap)
        out_flush(o);
    return o->data + o->len;
}

static void out_str(out_buf *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(out_reserve(o, n), s, n);
    o->len += n;
}

/* fmt_int writes v in decimal at p and returns the bytes written. */
static size_t fmt_int(char *p, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        p[len++] = '-';
    while (n > 0)
        p[len++] = tmp[--n];
    return len;
}

/*
 * fmt_fixed writes v with exactly `decimals` digits after the point, as "%.*f" would for a value
 * that the profile rounded to those decimals (it is k / 10^d for an integer k), without printf's
 * cost. Returns the bytes written (at most 32).
 */
static size_t fmt_fixed(char *p, double v, int decimals)
{
    static const int64_t pow10[7] = { 1, 10, 100, 1000, 10000, 100000, 1000000 };
    int d = decimals < 0 ? 0 : decimals;
    double scaled = v * (double)pow10[d];
    int64_t k = (int64_t)(scaled + (scaled >= 0 ? 0.5 : -0.5));
    size_t len = 0;
    if (k < 0) {
        p[len++] = '-';
        k = -k;
    }
    len += fmt_int(p + len, k / pow10[d]);
    if (d > 0) {
        p[len++] = '.';
        int64_t frac = k % pow10[d];
        for (int i = d - 1; i >= 0; i--) {
            p[len + (size_t)i] = (char)('0' + frac % 10);
            frac /= 10;
        }
        len += (size_t)d;
    }
    return len;
}

typedef struct dev_tags {
    char id[32], fleet[32], region[32], model[32];
} dev_tags;

static void tags_for(const tern_profile *p, uint64_t i, dev_tags *t)
{
    snprintf(t->id, sizeof t->id, "dev%06" PRIu64, i + 1);
    tern_profile_device_tags(
        p, i, t->fleet, sizeof t->fleet, t->region, sizeof t->region, t->model, sizeof t->model);
}

static int write_lp(const options *o, const tern_profile *p, uint64_t n_steps, out_buf *out)
{
    size_t n = tern_profile_metric_count(p);
    int64_t ts_div = strcmp(o->precision, "s") == 0 ? 1000 : 1;
    int64_t ts_mul = strcmp(o->precision, "ns") == 0 ? 1000000 : 1;
    const char *meas = tern_profile_name(p);
    double values[TERN_PROFILE_MAX_METRICS];
    for (uint64_t i = 0; i < o->devices; i++) {
        dev_tags t;
        tags_for(p, i, &t);
        char key[256];
        int key_len = snprintf(key, sizeof key, "%s,device_id=%s,fleet=%s,region=%s,model=%s ",
            meas, t.id, t.fleet, t.region, t.model);
        tern_sim_device *d = NULL;
        int rc = tern_profile_device_init(p, i, &d);
        if (rc < 0)
            return rc;
        for (uint64_t s = 0; s < n_steps; s++) {
            int64_t ts_ms = o->start_ms + (int64_t)s * o->step_ms;
            tern_profile_step(p, d, ts_ms, values);
            char *w = out_reserve(out, (size_t)key_len + n * 64 + 64);
            size_t len = 0;
            memcpy(w, key, (size_t)key_len);
            len += (size_t)key_len;
            for (size_t m = 0; m < n; m++) {
                if (m > 0)
                    w[len++] = ',';
                const char *name = tern_profile_metric_name(p, m);
                size_t nl = strlen(name);
                memcpy(w + len, name, nl);
                len += nl;
                w[len++] = '=';
                int dec = tern_profile_metric_decimals(p, m);
                if (dec < 0) {
                    len += fmt_int(w + len, (int64_t)values[m]);
                    w[len++] = 'i';
                } else {
                    len += fmt_fixed(w + len, values[m], dec);
                }
            }
            w[len++] = ' ';
            len += fmt_int(w + len, ts_ms / ts_div * ts_mul);
            w[len++] = '\n';
            out->len += len;
        }
        tern_profile_device_free(d);
    }
    return 0;
}

/* Each family is written whole before the next, so every device is simulated once per metric. */
static int write_openmetrics(
    const options *o, const tern_profile *p, uint64_t n_steps, out_buf *out)
{
    size_t n = tern_profile_metric_count(p);
    const char *meas = tern_profile_name(p);
    double values[TERN_PROFILE_MAX_METRICS];
    for (size_t m = 0; m < n; m++) {
        char line[256];
        const char *name = tern_profile_metric_name(p, m);
        int dec = tern_profile_metric_decimals(p, m);
        snprintf(line, sizeof line, "# TYPE %s_%s gauge\n", meas, name);
        out_str(out, line);
        for (uint64_t i = 0; i < o->devices; i++) {
            dev_tags t;
            tags_for(p, i, &t);
            char key[320];
            int key_len = snprintf(key, sizeof key,
                "%s_%s{device_id=\"%s\",fleet=\"%s\",region=\"%s\",model=\"%s\"} ", meas, name,
                t.id, t.fleet, t.region, t.model);
            tern_sim_device *d = NULL;
            int rc = tern_profile_device_init(p, i, &d);
            if (rc < 0)
                return rc;
            for (uint64_t s = 0; s < n_steps; s++) {
                int64_t ts_ms = o->start_ms + (int64_t)s * o->step_ms;
                tern_profile_step(p, d, ts_ms, values);
                char *w = out_reserve(out, (size_t)key_len + 128);
                size_t len = 0;
                memcpy(w, key, (size_t)key_len);
                len += (size_t)key_len;
                len += fmt_fixed(w + len, values[m], dec);
                w[len++] = ' ';
                len += fmt_int(w + len, ts_ms / 1000);
                w[len++] = '.';
                int64_t ms = ts_ms % 1000;
                w[len++] = (char)('0' + ms / 100);
                w[len++] = (char)('0' + ms / 10 % 10);
                w[len++] = (char)('0' + ms % 10);
                w[len++] = '\n';
                out->len += len;
            }
            tern_profile_device_free(d);
        }
    }
    out_str(out, "# EOF\n");
    return 0;
}

static int write_series_json(const options *o, const tern_profile *p)
{
    FILE *f = fopen(o->series_json, "w");
    if (f == NULL)
        return -errno;
    for (uint64_t i = 0; i < o->devices; i++) {
        dev_tags t;
        tags_for(p, i, &t);
        for (size_t m = 0; m < tern_profile_metric_count(p); m++)
            fprintf(f,
                "{\"__name__\":\"%s_%s\",\"device_id\":\"%s\",\"fleet\":\"%s\","
                "\"region\":\"%s\",\"model\":\"%s\"}\n",
                tern_profile_name(p), tern_profile_metric_name(p, m), t.id, t.fleet, t.region,
                t.model);
    }
    return fclose(f) == 0 ? 0 : TERN_EIO;
}

static void usage(void)
{
    fprintf(stderr,
        "usage: tsdb_gen [--devices N] [--hours H] [--step SECONDS] [--start MS]\n"
        "                --format lp|openmetrics --out FILE|- [--seed N]\n"
        "                [--profile ev|meter|industrial] [--precision ns|ms|s]\n"
        "                [--series-json FILE]\n");
}

static int parse_args(int argc, char **argv, options *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
            return 1;
        if (v == NULL) {
            fprintf(stderr, "tsdb_gen: %s needs a value\n", a);
            return -1;
        }
        i++;
        if (strcmp(a, "--devices") == 0)
            o->devices = strtoull(v, NULL, 10);
        else if (strcmp(a, "--hours") == 0)
            o->hours = strtod(v, NULL);
        else if (strcmp(a, "--step") == 0)
            o->step_ms = (int64_t)(strtod(v, NULL) * 1000.0 + 0.5);
        else if (strcmp(a, "--start") == 0)
            o->start_ms = strtoll(v, NULL, 10);
        else if (strcmp(a, "--format") == 0)
            o->format = v;
        else if (strcmp(a, "--out") == 0)
            o->out = v;
        else if (strcmp(a, "--seed") == 0)
            o->seed = strtoull(v, NULL, 10);
        else if (strcmp(a, "--profile") == 0)
            o->profile = v;
        else if (strcmp(a, "--precision") == 0)
            o->precision = v;
        else if (strcmp(a, "--series-json") == 0)
            o->series_json = v;
        else {
            fprintf(stderr, "tsdb_gen: unknown option %s\n", a);
            return -1;
        }
    }
    if (strcmp(o->format, "lp") != 0 && strcmp(o->format, "openmetrics") != 0) {
        fprintf(stderr, "tsdb_gen: --format must be lp or openmetrics\n");
        return -1;
    }
    if (strcmp(o->precision, "ns") != 0 && strcmp(o->precision, "ms") != 0
        && strcmp(o->precision, "s") != 0) {
        fprintf(stderr, "tsdb_gen: --precision must be ns, ms or s\n");
        return -1;
    }
    if (o->devices == 0 || o->step_ms <= 0 || !(o->hours > 0)) {
        fprintf(stderr, "tsdb_gen: --devices, --hours and --step must be positive\n");
        return -1;
    }
    if (o->out == NULL && o->series_json == NULL) {
        fprintf(stderr, "tsdb_gen: --out is required\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o = { .devices = 1000,
        .hours = 6,
        .step_ms = 10000,
        .start_ms = DEFAULT_START_MS,
        .format = "lp",
        .seed = 1,
        .profile = "ev",
        .precision = "ns" };
    int rc = parse_args(argc, argv, &o);
    if (rc != 0) {
        usage();
        return rc > 0 ? 0 : 2;
    }
    tern_profile *p = NULL;
    rc = tern_profile_open(o.profile, o.seed, &p);
    if (rc < 0) {
        fprintf(stderr, "tsdb_gen: profile %s: %s\n", o.profile, tern_strerror(rc));
        return 2;
    }
    uint64_t n_steps = (uint64_t)(o.hours * 3600000.0 / (double)o.step_ms + 0.5);
    if (o.series_json != NULL) {
        rc = write_series_json(&o, p);
        if (rc < 0) {
            fprintf(stderr, "tsdb_gen: %s: %s\n", o.series_json, tern_strerror(rc));
            tern_profile_close(p);
            return 1;
        }
    }
    int status = 0;
    if (o.out != NULL) {
        out_buf out = { .cap = 1 << 20 };
        out.data = malloc(out.cap);
        out.f = strcmp(o.out, "-") == 0 ? stdout : fopen(o.out, "w");
        if (out.data == NULL || out.f == NULL) {
            fprintf(stderr, "tsdb_gen: cannot open %s\n", o.out);
            free(out.data);
            tern_profile_close(p);
            return 1;
        }
        rc = strcmp(o.format, "lp") == 0 ? write_lp(&o, p, n_steps, &out)
                                         : write_openmetrics(&o, p, n_steps, &out);
        out_flush(&out);
        if (out.f != stdout ? fclose(out.f) != 0 : fflush(out.f) != 0)
            out.failed = 1;
        if (rc < 0 || out.failed) {
            fprintf(stderr, "tsdb_gen: writing %s failed: %s\n", o.out,
                rc < 0 ? tern_strerror(rc) : "I/O error");
            status = 1;
        } else {
            uint64_t lines = o.devices * n_steps;
            fprintf(stderr,
                "{\"format\":\"%s\",\"devices\":%" PRIu64 ",\"steps\":%" PRIu64
                ",\"lines\":%" PRIu64 ",\"points\":%" PRIu64 ",\"bytes\":%" PRIu64
                ",\"start_ms\":%" PRId64 ",\"end_ms\":%" PRId64 "}\n",
                o.format, o.devices, n_steps,
                strcmp(o.format, "lp") == 0 ? lines : lines * tern_profile_metric_count(p),
                lines * tern_profile_metric_count(p), out.bytes, o.start_ms,
                o.start_ms + (int64_t)(n_steps - 1) * o.step_ms);
        }
        free(out.data);
    }
    tern_profile_close(p);
    return status;
}

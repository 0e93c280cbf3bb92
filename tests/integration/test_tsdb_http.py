"""Integration tests of `tern tsdb`'s HTTP face (docs/tsdb.md, src/api/api_tsdb.h) with real
InfluxDB clients from PyPI (the 1.x `influxdb` package and the 2.x `influxdb-client`, gzip on),
InfluxDB-compatible errors, and queries checked against values computed here from what was
written: raw points bit for bit, aggregates per step, group_by, tags, out-of-order and
duplicate writes, limits and bad queries.
"""
from __future__ import annotations

import gzip
import math
import random
import re

import pytest
from influxdb import InfluxDBClient as InfluxV1Client
from influxdb_client import InfluxDBClient as InfluxV2Client
from influxdb_client import Point, WritePrecision
from influxdb_client.client.write_api import SYNCHRONOUS
from influxdb_client.rest import ApiException

from tsdb_fixture import (HOUR_MS, bits, recent_base_ms, reference_aggs,  # noqa: F401
                          tsdb)

# Values that must come back bit for bit.
FLOATS = [0.1, 23.45, -0.0, 1e-300, 5e-324, -1.7976931348623157e308, 3.141592653589793,
          -273.15, 1e22, 0.30000000000000004]
INTS = [0, 1, -1, 2**63 - 1, -(2**63) + 1, 123456789012345678]


def assert_float_rows(rows, device, metric, expected):
    """rows (raw query rows of one series) hold exactly expected [(ts, float)] bit for bit."""
    got = [(r["ts"], r["value"]) for r in rows if r["metric"] == metric]
    assert [t for t, _ in got] == [t for t, _ in expected], f"{device}/{metric} timestamps"
    for (ts, v), (_, want) in zip(got, expected):
        assert bits(v) == bits(want), f"{device}/{metric}@{ts}: got {v!r}, wrote {want!r}"


def assert_int_rows(rows, metric, expected):
    got = [(r["ts"], r["value"]) for r in rows if r["metric"] == metric]
    assert got == expected
    assert all(isinstance(v, int) for _, v in got), f"{metric}: ints come back as ints"


# ---- real clients ---------------------------------------------------------------------------

def test_influxdb_v1_client_points_round_trip(tsdb):
    srv = tsdb()
    client = InfluxV1Client(host="127.0.0.1", port=srv.port, database="fleet", timeout=60)
    assert client.ping() == "1.8-tern"  # GET /ping answers 204 with the version header
    base = recent_base_ms()
    points = []
    for i, f in enumerate(FLOATS):
        points.append({"measurement": "env", "tags": {"device_id": "v1-a", "region": "eu"},
                       "time": base + i * 1000,
                       "fields": {"temp": f, "count": INTS[i % len(INTS)], "ok": i % 2 == 0}})
    assert client.write_points(points, time_precision="ms") is True

    # precision s, through write() with raw line protocol and an explicit database param
    lines = [f"env,device_id=v1-b,region=us temp={f!r} {base // 1000 + i}"
             for i, f in enumerate(FLOATS[:4])]
    assert client.write(lines, params={"db": "other", "precision": "s"}, protocol="line")
    # precision n (ns): stored as ms, floored
    ns_lines = [f"env,device_id=v1-c temp=1.5 {base * 1_000_000 + 999_999}",
                f"env,device_id=v1-c temp=2.5 {(base + 1) * 1_000_000}"]
    assert client.write_points(ns_lines, time_precision="n", protocol="line")

    end = base + HOUR_MS
    rows = srv.query_rows(device="v1-a", start=base, end=end)
    assert_float_rows(rows, "v1-a", "env_temp", [(base + i * 1000, f) for i, f in enumerate(FLOATS)])
    assert_int_rows(rows, "env_count", [(base + i * 1000, INTS[i % len(INTS)])
                                        for i in range(len(FLOATS))])
    assert_int_rows(rows, "env_ok", [(base + i * 1000, 1 if i % 2 == 0 else 0)
                                     for i in range(len(FLOATS))])
    assert sorted({r["metric"] for r in rows}) == ["env_count", "env_ok", "env_temp"]

    rows = srv.query_rows(device="v1-b", metric="env_temp", start=base, end=end)
    assert_float_rows(rows, "v1-b", "env_temp", [(base + i * 1000, f)
                                                 for i, f in enumerate(FLOATS[:4])])
    rows = srv.query_rows(device="v1-c", metric="env_temp", start=base, end=end)
    assert [(r["ts"], r["value"]) for r in rows] == [(base, 1.5), (base + 1, 2.5)]

    # /api/v1/last: the newest point of each metric
    r = srv.last("v1-a")
    assert r.status == 200, r.text
    last = {row["metric"]: row for row in r.json()["rows"]}
    n = len(FLOATS) - 1
    assert set(last) == {"env_count", "env_ok", "env_temp"}
    assert last["env_temp"]["ts"] == base + n * 1000
    assert bits(last["env_temp"]["value"]) == bits(FLOATS[n])
    assert last["env_count"]["value"] == INTS[n % len(INTS)]
    assert last["env_ok"]["value"] == (1 if n % 2 == 0 else 0)

    # the client's error path: a bad line answers 400 and the client raises with tern's text
    with pytest.raises(Exception) as exc:
        client.write(["env,device_id=v1-a temp= 1"], params={"db": "fleet"}, protocol="line")
    assert "partial write" in str(exc.value)
    client.close()


def test_influxdb_v2_client_gzip_round_trip(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    with InfluxV2Client(url=srv.url, token="not-checked", org="acme", enable_gzip=True,
                        timeout=60_000) as client:
        api = client.write_api(write_options=SYNCHRONOUS)
        recs = []
        for i, f in enumerate(FLOATS):
            recs.append(Point("batt").tag("device_id", "v2-a").tag("fleet", "north")
                        .field("volts", f).field("cycles", INTS[i % len(INTS)])
                        .field("charging", i % 3 == 0).time(base + i * 10, WritePrecision.MS))
        api.write(bucket="fleet", record=recs, write_precision=WritePrecision.MS)
        # raw line protocol, precision s and ns, bucket + org
        api.write(bucket="fleet", org="acme", write_precision=WritePrecision.S,
                  record=[f"batt,device_id=v2-b volts={f!r} {base // 1000 + i}"
                          for i, f in enumerate(FLOATS[:3])])
        api.write(bucket="fleet", write_precision=WritePrecision.NS,
                  record=f"batt,device_id=v2-c volts=7.25 {base * 1_000_000 + 5}")

        # a bad line: the client raises ApiException 400 with the v2 error shape
        with pytest.raises(ApiException) as exc:
            api.write(bucket="fleet", write_precision=WritePrecision.MS,
                      record=[f"batt,device_id=v2-d volts=1.5 {base}", "batt,device_id=v2-d volts="])
        assert exc.value.status == 400
        assert '"code":"invalid"' in exc.value.body.replace(" ", "")
        assert "partial write" in exc.value.body and "dropped=1" in exc.value.body

    end = base + HOUR_MS
    rows = srv.query_rows(device="v2-a", start=base, end=end)
    assert_float_rows(rows, "v2-a", "batt_volts", [(base + i * 10, f) for i, f in enumerate(FLOATS)])
    assert_int_rows(rows, "batt_cycles", [(base + i * 10, INTS[i % len(INTS)])
                                          for i in range(len(FLOATS))])
    assert_int_rows(rows, "batt_charging", [(base + i * 10, 1 if i % 3 == 0 else 0)
                                            for i in range(len(FLOATS))])
    rows = srv.query_rows(device="v2-b", start=base, end=end)
    assert_float_rows(rows, "v2-b", "batt_volts", [(base + i * 1000, f)
                                                   for i, f in enumerate(FLOATS[:3])])
    assert [(r["ts"], r["value"]) for r in srv.query_rows(device="v2-c", start=base, end=end)] \
        == [(base, 7.25)]
    # the good line of the partial write is stored
    assert [(r["ts"], r["value"]) for r in srv.query_rows(device="v2-d", start=base, end=end)] \
        == [(base, 1.5)]
    r = srv.last("v2-a")
    assert r.status == 200
    last = {row["metric"]: row for row in r.json()["rows"]}
    n = len(FLOATS) - 1
    assert last["batt_volts"]["ts"] == base + n * 10
    assert bits(last["batt_volts"]["value"]) == bits(FLOATS[n])
    assert last["batt_cycles"]["value"] == INTS[n % len(INTS)]


def test_gzip_body_by_hand_and_tags_of_v2_write(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    body = "\n".join(f"m,device_id=g{i % 3},site=s{i % 3} v={i}.5 {base + i}" for i in range(300))
    r = srv.req("POST", "/api/v2/write", {"bucket": "b", "org": "o", "precision": "ms"},
                gzip.compress(body.encode()),
                {"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    assert r.status == 204, r.text
    for d in range(3):
        rows = srv.query_rows(device=f"g{d}", metric="m_v", start=base, end=base + 1000)
        assert [(x["ts"], x["value"]) for x in rows] == [(base + i, i + 0.5)
                                                         for i in range(d, 300, 3)]
    rows = srv.query_rows(metric="m_v", tags="site=s1", agg="count", start=base, end=base + 1000)
    assert [(x["device"], x["count"]) for x in rows] == [("g1", 100)]


# ---- InfluxDB-compatible errors -------------------------------------------------------------

def test_partial_write_reports_first_bad_line_and_stores_the_good_ones(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    bad1 = "cpu,device_id=p1 usage= 5"
    body = "\n".join([
        f"cpu,device_id=p1 usage=1.5 {base}",
        bad1,
        f"cpu,device_id=p1 usage=2.5 {base + 1}",
        f"cpu,region=eu usage=3.5 {base + 2}",           # no device tag
        f"cpu,device_id=p2 usage=4.5,idle=9i {base + 3}",
        f"cpu,device_id=p2 usage=notanumber {base + 4}",
        "# a comment, not a line",
        "",
        f"cpu,device_id=p2 usage=5.5 {base + 5}",
    ]) + "\n"
    r = srv.write(body)
    assert r.status == 400
    msg = r.json()["error"]
    assert msg.startswith(f"partial write: unable to parse '{bad1}': "), msg
    assert msg.endswith(" dropped=3"), msg
    end = base + 1000
    assert srv.raw("p1", None, base, end) == [("cpu_usage", base, 1.5), ("cpu_usage", base + 1, 2.5)]
    assert srv.raw("p2", None, base, end) == [("cpu_idle", base + 3, 9),
                                              ("cpu_usage", base + 3, 4.5),
                                              ("cpu_usage", base + 5, 5.5)]

    # a body whose only problem is a missing device tag
    r = srv.write(f"cpu,host=h1 usage=1 {base}")
    assert r.status == 400
    msg = r.json()["error"]
    assert msg.startswith(f"partial write: unable to parse 'cpu,host=h1 usage=1 {base}': ")
    assert "device_id" in msg and msg.endswith("dropped=1")

    # v2: the same, with InfluxDB 2.x's error shape
    r = srv.req("POST", "/api/v2/write", {"bucket": "b", "precision": "ms"},
                f"cpu,device_id=p3 usage=1 {base}\ncpu,device_id=p3 usage=2 nope\n")
    assert r.status == 400
    doc = r.json()
    assert doc["code"] == "invalid"
    assert doc["message"].startswith(f"partial write: unable to parse 'cpu,device_id=p3 usage=2 nope'")
    assert doc["message"].endswith("dropped=1")
    assert srv.raw("p3", None, base, end) == [("cpu_usage", base, 1.0)]


def test_request_errors_and_service_routes(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    line = f"cpu,device_id=e1 usage=1 {base}"
    r = srv.req("POST", "/write", {"precision": "ms"}, line)
    assert r.status == 400 and r.json() == {"error": "database is required"}
    r = srv.req("POST", "/write", {"db": "", "precision": "ms"}, line)
    assert r.status == 400 and r.json() == {"error": "database is required"}
    r = srv.req("POST", "/api/v2/write", {"org": "o", "precision": "ms"}, line)
    assert r.status == 400
    assert r.json() == {"code": "invalid", "message": "bucket is required"}
    r = srv.req("POST", "/write", {"db": "d", "precision": "xs"}, line)
    assert r.status == 400 and "precision" in r.json()["error"]
    # 2.x knows only ns, us, ms, s
    r = srv.req("POST", "/api/v2/write", {"bucket": "b", "precision": "h"}, line)
    assert r.status == 400
    doc = r.json()
    assert doc["code"] == "invalid" and "precision" in doc["message"]
    # none of the refused requests stored anything
    r = srv.query(device="e1", start=base - HOUR_MS, end=base + HOUR_MS)
    assert r.status == 200 and r.json()["rows"] == []

    # 1.x precisions m and h
    srv.write_ok(f"cpu,device_id=e2 usage=1 {base // 60000}", precision="m")
    srv.write_ok(f"cpu,device_id=e3 usage=2 {base // HOUR_MS}", precision="h")
    assert srv.raw("e2", None, base, base + 1) == [("cpu_usage", base, 1.0)]
    assert srv.raw("e3", None, base, base + 1) == [("cpu_usage", base, 2.0)]

    assert srv.req("GET", "/nowhere").status == 404
    assert srv.req("POST", "/api/v1/query").status in (404, 405)
    r = srv.req("GET", "/write", {"db": "d"})
    assert r.status == 405
    r = srv.req("GET", "/ping")
    assert r.status == 204 and r.body == b""
    assert r.headers.get("x-influxdb-version")
    r = srv.req("GET", "/health")
    assert r.status == 200 and r.json()["status"] == "pass"
    r = srv.last("no-such-device")
    assert r.status == 404
    r = srv.req("GET", "/api/v1/last")
    assert r.status == 400


def test_metrics_count_stored_points(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    srv.write_ok("\n".join(f"m,device_id=c1 a={i},b={i}i {base + i}" for i in range(10)))
    r = srv.write(f"m,device_id=c1 a=1 {base + 100}\nm,device_id=c1 a=\n"
                  f"m,device_id=c1 b=2.5 {base + 101}\n")  # 1 stored, 1 bad line, 1 refused
    assert r.status == 400
    assert r.json()["error"].endswith("dropped=2")
    text = srv.metrics_text()

    def counter(name):
        m = re.search(rf"^{name}(?:\{{[^}}]*\}})? (\S+)$", text, re.M)
        assert m, f"{name} missing from /metrics"
        return float(m.group(1))
    assert counter("tern_tsdb_http_points_total") == 21
    assert counter("tern_tsdb_http_bad_lines_total") == 1
    assert counter("tern_tsdb_http_refused_points_total") == 1
    assert counter("tern_tsdb_http_writes_total") == 2


def test_field_type_conflict_keeps_the_first_kind(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    # float then int in the same body
    r = srv.write(f"t,device_id=k1 v=1.5 {base}\nt,device_id=k1 v=2i {base + 1}\n"
                  f"t,device_id=k1 v=3.5 {base + 2}\n")
    assert r.status == 400
    msg = r.json()["error"]
    assert msg.startswith("partial write: ") and "field type conflict" in msg, msg
    assert msg.endswith("dropped=1")
    # int then float across two requests
    srv.write_ok(f"t,device_id=k2 v=7i {base}")
    r = srv.write(f"t,device_id=k2 v=8.25 {base + 1}")
    assert r.status == 400 and "field type conflict" in r.json()["error"]
    # a bool is an int: refused in the float series
    r = srv.write(f"t,device_id=k1 v=true {base + 3}")
    assert r.status == 400 and "field type conflict" in r.json()["error"]

    rows = srv.query_rows(device="k1", start=base, end=base + 10)
    assert [(x["ts"], x["value"]) for x in rows] == [(base, 1.5), (base + 2, 3.5)]
    assert all(isinstance(x["value"], float) for x in rows)
    rows = srv.query_rows(device="k2", start=base, end=base + 10)
    assert [(x["ts"], x["value"]) for x in rows] == [(base, 7)]
    assert isinstance(rows[0]["value"], int)
    last = srv.last("k1").json()["rows"]
    assert [(x["metric"], x["ts"], x["value"]) for x in last] == [("t_v", base + 2, 3.5)]


# ---- queries --------------------------------------------------------------------------------

REGIONS = ["eu", "us", "ap"]


def fleet_points(base: int):
    """6 devices x (temp float, odo int) every 10 s for 2 h; device i is offset by i ms so
    that every timestamp of a group is distinct. Returns {(device, metric): {ts: value}}."""
    rnd = random.Random(42)
    data = {}
    for d in range(6):
        dev = f"dev{d}"
        temps, odos = {}, {}
        odo = 1000 * d
        for k in range(720):
            ts = base + k * 10_000 + d
            temps[ts] = round(20 + 5 * math.sin(k / 50 + d) + rnd.uniform(-0.5, 0.5), 2)
            odo += rnd.randint(0, 30)
            odos[ts] = odo
        data[(dev, "car_temp")] = temps
        data[(dev, "car_odo")] = odos
    return data


def tags_of(d: int) -> str:
    return f"region={REGIONS[d % 3]},fleet={'a' if d < 3 else 'b'}"


def lp_lines(data, order):
    lines = []
    for dev, metric, ts in order:
        d = int(dev[3:])
        field = metric.split("_", 1)[1]
        v = data[(dev, metric)][ts]
        val = f"{v}i" if isinstance(v, int) else repr(v)
        lines.append(f"car,device_id={dev},{tags_of(d)} {field}={val} {ts}")
    return lines


@pytest.fixture
def fleet(tsdb):
    """A server holding fleet_points, written out of order in many requests, with
    duplicates: every 7th point is first written with a wrong value, then corrected."""
    srv = tsdb()
    base = recent_base_ms(4)
    data = fleet_points(base)
    order = [(dev, metric, ts) for (dev, metric), pts in data.items() for ts in pts]
    rnd = random.Random(7)
    rnd.shuffle(order)
    wrong = [o for i, o in enumerate(order) if i % 7 == 0]
    bodies = []
    wdata = {k: {ts: (v + 1000 if isinstance(v, int) else v + 1000.5) for ts, v in pts.items()}
             for k, pts in data.items()}
    bodies += ["\n".join(lp_lines(wdata, wrong[i:i + 500])) for i in range(0, len(wrong), 500)]
    bodies += ["\n".join(lp_lines(data, order[i:i + 2000])) for i in range(0, len(order), 2000)]
    for b in bodies:
        srv.write_ok(b)
    return srv, base, data


def series_points(data, dev, metric, start, end):
    return sorted((ts, v) for ts, v in data[(dev, metric)].items() if start <= ts < end)


def check_agg_row(row, ref, aggs):
    for a in aggs:
        if a == "count":
            assert row["count"] == ref["count"]
        elif a in ("sum", "avg"):
            assert math.isclose(row[a], ref[a], rel_tol=1e-12, abs_tol=1e-9), (a, row, ref)
        else:
            assert row[a] == ref[a], (a, row, ref)


AGGS = ["avg", "min", "max", "sum", "count", "last", "p95"]


def test_raw_out_of_order_and_duplicates_last_write_wins(fleet):
    srv, base, data = fleet
    end = base + 2 * HOUR_MS + 1000
    for d in (0, 3, 5):
        rows = srv.query_rows(device=f"dev{d}", start=base, end=end)
        got = {}
        for r in rows:
            key = (r["metric"], r["ts"])
            assert key not in got, f"dev{d} {key} returned twice"
            got[key] = r["value"]
        want = {(m, ts): v for (dev, m), pts in data.items() if dev == f"dev{d}"
                for ts, v in pts.items()}
        assert got == want
        # rows of a series come out in time order, series in metric-name order
        assert [(r["metric"], r["ts"]) for r in rows] == sorted(want)

    # a duplicate inside one body: the later line wins
    ts = base + 5
    srv.write_ok(f"car,device_id=dup,region=eu temp=1.25 {ts}\n"
                 f"car,device_id=dup,region=eu temp=2.25 {ts}\n")
    assert srv.raw("dup", "car_temp", base, end) == [("car_temp", ts, 2.25)]
    srv.write_ok(f"car,device_id=dup,region=eu temp=3.25 {ts}")
    assert srv.raw("dup", "car_temp", base, end) == [("car_temp", ts, 3.25)]
    assert srv.query_rows(device="dup", agg="count", start=base, end=end)[0]["count"] == 1


def test_aggregates_with_step_match_python(fleet):
    srv, base, data = fleet
    start = base + 7_000  # not aligned: buckets count from start
    end = base + 2 * HOUR_MS - 3_000
    step_ms = 15 * 60_000
    for dev, metric in [("dev1", "car_temp"), ("dev4", "car_odo"), ("dev2", "car_temp")]:
        rows = srv.query_rows(device=dev, metric=metric, agg=",".join(AGGS), step="15m",
                              start=start, end=end)
        pts = series_points(data, dev, metric, start, end)
        buckets = {}
        for ts, v in pts:
            buckets.setdefault(start + (ts - start) // step_ms * step_ms, []).append((ts, v))
        assert [r["ts"] for r in rows] == sorted(buckets)
        for r in rows:
            assert r["device"] == dev and r["metric"] == metric
            check_agg_row(r, reference_aggs(buckets[r["ts"]]), AGGS)

    # no step: one bucket over the whole range, every metric of the device
    rows = srv.query_rows(device="dev5", agg="count,max,p95,last", start=base, end=end)
    assert [r["metric"] for r in rows] == ["car_odo", "car_temp"]
    for r in rows:
        assert r["ts"] == base
        check_agg_row(r, reference_aggs(series_points(data, "dev5", r["metric"], base, end)),
                      ["count", "max", "p95", "last"])


def test_group_by_tags_filter_and_star(fleet):
    srv, base, data = fleet
    start, end = base, base + 2 * HOUR_MS
    step_ms = 30 * 60_000
    aggs = ["count", "sum", "min", "max", "avg", "p95", "last"]

    def ref_groups(devs, metric):
        buckets = {}
        for dev in sorted(devs):
            for ts, v in series_points(data, dev, metric, start, end):
                buckets.setdefault(start + (ts - start) // step_ms * step_ms, []).append((ts, v))
        return buckets

    rows = srv.query_rows(metric="car_temp", agg=",".join(aggs), step="30m", group_by="region",
                          start=start, end=end)
    assert sorted({r["group"] for r in rows}) == sorted(REGIONS)
    assert all("device" not in r for r in rows)
    for region in REGIONS:
        devs = [f"dev{d}" for d in range(6) if REGIONS[d % 3] == region]
        ref = ref_groups(devs, "car_temp")
        got = [r for r in rows if r["group"] == region]
        assert [r["ts"] for r in got] == sorted(ref)
        for r in got:
            check_agg_row(r, reference_aggs(ref[r["ts"]]), aggs)

    # group_by=*: one group over every device
    rows = srv.query_rows(metric="car_odo", agg=",".join(aggs), step="30m", group_by="*",
                          start=start, end=end)
    ref = ref_groups([f"dev{d}" for d in range(6)], "car_odo")
    assert [r["ts"] for r in rows] == sorted(ref)
    for r in rows:
        check_agg_row(r, reference_aggs(ref[r["ts"]]), aggs)

    # tags filter: one tag, then two (AND), per series
    rows = srv.query_rows(metric="car_temp", tags="region=us", agg="count,avg", start=start,
                          end=end)
    assert [r["device"] for r in rows] == ["dev1", "dev4"]
    for r in rows:
        check_agg_row(r, reference_aggs(series_points(data, r["device"], "car_temp", start, end)),
                      ["count", "avg"])
    rows = srv.query_rows(metric="car_temp", tags="region=us,fleet=b", agg="count", start=start,
                          end=end)
    assert [(r["device"], r["count"]) for r in rows] == [("dev4", 720)]
    rows = srv.query_rows(metric="car_temp", tags="region=nowhere", agg="count", start=start,
                          end=end)
    assert rows == []
    # group_by with a tags filter
    rows = srv.query_rows(metric="car_temp", tags="fleet=a", agg="count", group_by="region",
                          start=start, end=end)
    assert [(r["group"], r["count"]) for r in rows] == [("ap", 720), ("eu", 720), ("us", 720)]


def test_query_errors_and_limit(fleet):
    srv, base, data = fleet
    start, end = base, base + HOUR_MS
    r = srv.query(metric="car_temp", start=start, end=end)  # raw without a device
    assert r.status == 400 and r.json()["error"]
    for bad in [{"start": "yesterday", "end": end}, {"start": start, "end": "12abc"},
                {"start": start}, {"start": "2026-13-01T00:00:00Z", "end": end},
                {"start": end, "end": start}, {"start": start, "end": start}]:
        r = srv.query(device="dev0", **bad)
        assert r.status == 400, (bad, r.status, r.text)
        assert r.json()["error"]
    r = srv.query(device="dev0", start=start, end=end, agg="median")
    assert r.status == 400 and "median" in r.json()["error"]
    r = srv.query(device="dev0", start=start, end=end, agg="avg", step="fast")
    assert r.status == 400
    r = srv.query(device="dev0", start=start, end=end, group_by="region")  # raw + group_by
    assert r.status == 400
    r = srv.query(device="dev0", start=start, end=end, limit="zero")
    assert r.status == 400

    # limit: exactly as many rows as allowed is fine, one more is a 400
    n = len(series_points(data, "dev0", "car_temp", start, end))
    rows = srv.query_rows(device="dev0", metric="car_temp", start=start, end=end, limit=n)
    assert len(rows) == n
    r = srv.query(device="dev0", metric="car_temp", start=start, end=end, limit=n - 1)
    assert r.status == 400 and str(n - 1) in r.json()["error"]

    # times as RFC 3339 UTC give the same answer as ms
    import datetime as dt

    def rfc(ms):
        return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    a = srv.query_rows(device="dev2", metric="car_odo", start=start + 500, end=end - 1500)
    b = srv.query_rows(device="dev2", metric="car_odo", start=rfc(start + 500), end=rfc(end - 1500))
    assert a == b and a
    # now-relative times: the whole fleet lies within the last 5 hours
    rows = srv.query_rows(device="dev3", metric="car_temp", agg="count", start="now-5h", end="now")
    assert rows[0]["count"] == 720
    # an unknown device has no points (not an error) in a query
    assert srv.query_rows(device="ghost", start=start, end=end) == []


# ---- names, odd values, configuration -------------------------------------------------------

def test_escaped_names_json_escaping_and_odd_values(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    body = "\n".join([
        rf"my\ meas,device_id=truck\ 7,fleet=n\ 1 speed\ kmh=88.5 {base}",
        f'q,device_id=say"hi"\\\\x v=1.25 {base}',
        f"u,device_id=big v=9223372036854775807u,w=9223372036854775808u {base}",
        f"u,device_id=big w=18446744073709551615u {base + 1}",   # only a too-big unsigned
        f"n,device_id=neg v=-2.5 -1500",                        # before 1970
        f"n,device_id=neg v=nan {base}",                        # NaN is refused, as InfluxDB
        f"s,device_id=strs note=\"only text\" {base}",           # only a string field
    ])
    r = srv.write(body)
    assert r.status == 400
    assert r.json()["error"].endswith("dropped=3"), r.text
    assert srv.raw("truck 7", None, base, base + 1) == [("my meas_speed kmh", base, 88.5)]
    rows = srv.query_rows(metric="my meas_speed kmh", tags="fleet=n 1", agg="count", start=base,
                          end=base + 1)
    assert [(x["device"], x["count"]) for x in rows] == [("truck 7", 1)]
    assert srv.raw('say"hi"\\x', None, base, base + 1) == [("q_v", base, 1.25)]
    assert srv.raw("big", None, base, base + 10) == [("u_v", base, 2**63 - 1)]
    assert srv.raw("neg", None, -10_000, 0) == [("n_v", -1500, -2.5)]
    assert srv.last("strs").status == 404
    # metric=* is every metric
    assert srv.raw("big", "*", base, base + 10) == [("u_v", base, 2**63 - 1)]


def test_series_limit_refuses_new_series(tsdb):
    srv = tsdb(None, "--set", "tsdb.max_series=3")
    base = recent_base_ms()
    srv.write_ok(f"m,device_id=a x=1,y=2 {base}\nm,device_id=b x=3 {base}")
    r = srv.write(f"m,device_id=b x=4 {base + 1}\nm,device_id=c x=5 {base}\n"
                  f"m,device_id=a z=6 {base}")
    assert r.status == 400
    msg = r.json()["error"]
    assert msg.startswith("partial write: ") and "series limit" in msg and msg.endswith("dropped=2")
    assert srv.raw("b", None, base, base + 10) == [("m_x", base, 3.0), ("m_x", base + 1, 4.0)]
    assert srv.raw("a", None, base, base + 10) == [("m_x", base, 1.0), ("m_y", base, 2.0)]
    assert srv.query_rows(device="c", start=base, end=base + 10) == []
    assert re.search(r"^tern_tsdb_http_refused_points_total(\{[^}]*\})? 2$", srv.metrics_text(),
                     re.M)


def test_series_limit_per_tenant(tsdb):
    """A tenant (devices sharing a fleet tag) past its series limit gets its new series refused
    with the tenant named; other tenants and existing series go on."""
    srv = tsdb(None, "--set", "tsdb.max_series_per_tenant=2")
    base = recent_base_ms()
    srv.write_ok(f"m,device_id=a,fleet=acme x=1,y=2 {base}\nm,device_id=b,fleet=bolt x=3 {base}")
    r = srv.write(f"m,device_id=c,fleet=acme x=4 {base}\nm,device_id=b,fleet=bolt y=5 {base}\n"
                  f"m,device_id=a,fleet=acme x=6 {base + 1}")
    assert r.status == 400
    msg = r.json()["error"]
    assert msg.startswith("partial write: ") and "tenant fleet=acme" in msg, msg
    assert msg.endswith("dropped=1")
    assert srv.raw("b", None, base, base + 10) == [("m_x", base, 3.0), ("m_y", base, 5.0)]
    assert srv.raw("a", None, base, base + 10) == [("m_x", base, 1.0), ("m_x", base + 1, 6.0),
                                                   ("m_y", base, 2.0)]
    assert srv.query_rows(device="c", start=base, end=base + 10) == []


def test_device_tag_setting_and_body_limit(tsdb):
    srv = tsdb(None, "--set", "tsdb.device_tag=host", "--set", "http.max_body=4KiB")
    base = recent_base_ms()
    r = srv.write(f"cpu,host=h1,device_id=ignored,dc=x usage=0.5 {base}\n"
                  f"cpu,device_id=d1 usage=0.7 {base}\n")
    assert r.status == 400 and "host" in r.json()["error"] and r.json()["error"].endswith("dropped=1")
    assert srv.raw("h1", None, base, base + 1) == [("cpu_usage", base, 0.5)]
    rows = srv.query_rows(metric="cpu_usage", tags="device_id=ignored,dc=x", agg="count",
                          start=base, end=base + 1)
    assert [(x["device"], x["count"]) for x in rows] == [("h1", 1)]
    big = "\n".join(f"cpu,host=h2 usage={i} {base + i}" for i in range(400))
    assert len(big) > 4096
    r = srv.write(big)
    assert r.status == 413
    assert srv.query_rows(device="h2", start=base, end=base + 1000) == []
    # a gzip body that inflates past the limit is refused too
    r = srv.write(big, gzip_body=True)
    assert r.status == 413
    assert srv.req("GET", "/ping").status == 204


# ---- the compact series form ----------------------------------------------------------------

def test_format_series_holds_the_same_points_as_rows(tsdb):
    srv = tsdb()
    base = recent_base_ms()
    lines = []
    for i in range(50):
        lines.append(f"ev,device_id=fs-a,region=eu soc={50 + i / 10!r},odo={1000 + i}i "
                     f"{base + i * 10_000}")
        lines.append(f"ev,device_id=fs-b,region=us soc={20 + i / 10!r} {base + i * 10_000}")
    srv.write_ok("\n".join(lines))
    rows = srv.query_rows(device="fs-a", start=base, end=base + HOUR_MS)
    r = srv.query(device="fs-a", start=base, end=base + HOUR_MS, format="series")
    assert r.status == 200, r.text()
    body = r.json()
    assert body["count"] == len(rows) == 100
    series = {s["metric"]: s for s in body["series"]}
    assert sorted(series) == ["ev_odo", "ev_soc"]
    for name, s in series.items():
        assert s["device"] == "fs-a" and s["columns"] == ["ts", "value"]
        want = [[x["ts"], x["value"]] for x in rows if x["metric"] == name]
        assert s["values"] == want
    # aggregates grouped by a tag: one series per (group, metric), one column per aggregate
    r = srv.query(metric="ev_soc", start=base, end=base + HOUR_MS, agg="count,max",
                  group_by="region", format="series")
    body = r.json()
    assert [(s["group"], s["columns"]) for s in body["series"]] == [
        ("eu", ["ts", "max", "count"]), ("us", ["ts", "max", "count"])]
    assert body["series"][0]["values"][0][1:] == [54.9, 50]
    assert srv.query(device="fs-a", start=base, end=base + 1, format="xml").status == 400

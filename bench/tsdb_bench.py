#!/usr/bin/env python3
"""tsdb_bench.py: tern's time-series store next to VictoriaMetrics, Prometheus and InfluxDB, in one run.

    python3 bench/tsdb_bench.py            # 1000 devices x 20 metrics x 6 h at 10 s = 43.2M points
    python3 bench/tsdb_bench.py --quick    # 100 devices x 1 h (720k points), ~1-2 min
    python3 bench/tsdb_bench.py --stores victoriametrics,influxdb --keep

Every store loads the same deterministic EV fleet (bench/tsdb_gen.c over src/sim/profile.c):
line protocol for tern, VictoriaMetrics and InfluxDB (all fed by bench/http_load.c, 2 threads,
5000-line bodies, keep-alive), OpenMetrics text for Prometheus (promtool's importer). Each store
runs alone on a free loopback port with its own temporary data directory, started and stopped by
this script (never a system service); the stores run one after another, never at once.

Measures (one JSON line each on stdout, with every store's figure and the ratios tern / peer):
  bytes_per_point       du of the data directory / points, after the store has settled:
                        tern: `tern import` (leaves the directory flushed, no WAL);
                        VictoriaMetrics: ingested over /write, then /internal/force_merge, waited
                        until no merge is active and the directory stops changing;
                        Prometheus: the blocks `promtool tsdb create-blocks-from openmetrics`
                        writes (2 h blocks, its default);
                        InfluxDB 1.6: ingested over /write with cache-snapshot-write-cold-duration
                        = 5s and compact-full-write-cold-duration = 10s (defaults 10m and 4h), so
                        the shard is snapshotted and fully compacted soon after the last write; the
                        script waits until /debug/vars shows a finished full compaction, no active
                        compaction, an empty cache, and the files stop changing. The index is
                        `inmem` (1.6's default): series keys live in the TSM files only.
  ingest_points_per_s   points acknowledged per second over HTTP by http_load (tern, VM, InfluxDB).
                        Prometheus has no line-protocol ingest: its column is the head-append rate
                        of `promtool tsdb bench write` (samples/s through the Go TSDB API, over the
                        same series labels and as many samples) and is marked as such.
  full_scan_count_points_per_s      points counted per second by one count-everything query;
  full_scan_count_avg_points_per_s  count and average of every point (VM and Prometheus: a count
                        query and a sum query, timed together; InfluxDB: SELECT count(*), mean(*);
                        tern: agg=count,avg). Median of --scan-reps runs; VM runs with nocache=1.
  one_device_p50_ms / one_device_p99_ms  all 20 metrics of one device, raw, over the whole
                        range (6 h by default: the range of a one-day query on this data set),
                        --device-reps runs over one keep-alive connection, body read in full.
The machine has 2 cores shared with other work: figures vary by 10-30% between runs.
Python 3 standard library only. Raw results go to raw.json in the work directory.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import pathlib
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parents[1]
STORES = ["tern", "victoriametrics", "prometheus", "influxdb"]
START_MS = 1767225600000  # 2026-01-01T00:00:00Z, tsdb_gen's default


def log(msg: str) -> None:
    print(f"[tsdb_bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def du_bytes(path: pathlib.Path) -> int:
    """du_bytes returns the bytes allocated to the files under path (st_blocks * 512, like du)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
            except OSError:
                pass
    return total


def tree_signature(path: pathlib.Path) -> tuple:
    sig = []
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = os.path.join(dirpath, name)
            try:
                sig.append((p, os.lstat(p).st_size))
            except OSError:
                pass
    return tuple(sorted(sig))


def http_req(method: str, port: int, path: str, body: bytes | None = None,
         timeout: float = 600) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def wait_http(port: int, path: str, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before answering {path}")
        try:
            status, _ = http_req("GET", port, path, timeout=2)
            if status < 500:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"no answer on 127.0.0.1:{port}{path} after {timeout}s")


class Server:
    """Server runs one store's process with its output in a log file, and stops it by its pid."""

    def __init__(self, name: str, argv: list[str], work: pathlib.Path):
        self.name = name
        self.log_path = work / f"{name}.log"
        self.log_file = open(self.log_path, "wb")
        log(f"start {name}: {' '.join(argv)}")
        self.proc = subprocess.Popen(argv, stdout=self.log_file, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


def run_http_load(args, url: str, lp: pathlib.Path) -> dict:
    cmd = [str(args.http_load), "--url", url, "--file", str(lp), "--threads", str(args.threads),
           "--batch-lines", str(args.batch_lines)]
    log("run " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"http_load failed: {r.stderr.strip()[-2000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def timed_get(conn: http.client.HTTPConnection, path: str) -> tuple[float, int, bytes]:
    t0 = time.perf_counter()
    conn.request("GET", path)
    r = conn.getresponse()
    body = r.read()
    return time.perf_counter() - t0, r.status, body


def latency_runs(port: int, path: str, reps: int, check) -> dict:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times = []
    try:
        for i in range(reps + 2):
            dt, status, body = timed_get(conn, path)
            if status != 200:
                raise RuntimeError(f"HTTP {status}: {body[:500]!r}")
            if i == 0:
                check(body)
            if i >= 2:  # two warm-up runs
                times.append(dt * 1000)
    finally:
        conn.close()
    times.sort()
    return {"p50_ms": percentile(times, 50), "p99_ms": percentile(times, 99),
            "runs": len(times)}


def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def scan_runs(reps: int, fn) -> dict:
    """scan_runs runs fn() reps times (fn returns (seconds, points)) and keeps the median."""
    secs, pts = [], None
    for _ in range(reps):
        s, n = fn()
        secs.append(s)
        pts = n
    med = statistics.median(secs)
    return {"seconds": med, "points": pts, "points_per_s": pts / med if med > 0 else None,
            "all_seconds": secs}


# ---------------------------------------------------------------------------------------------
# VictoriaMetrics


def promql_scan(port: int, ds: dict, extra: str, func: str) -> tuple[float, float]:
    # Window (T - rng, T] with T = end: one step wider than the data so the first sample is in.
    # One term per metric: count_over_time drops the metric name, and Prometheus refuses a
    # vector whose series then share a label set.
    rng = int(ds["range_s"] + 2 * ds["step_s"])
    q = " + ".join(f'sum({func}({ds["measurement"]}_{m}[{rng}s]))' for m in ds["metric_names"])
    path = "/api/v1/query?" + urllib.parse.urlencode(
        {"query": q, "time": f'{ds["end_ms"] / 1000:.3f}'}) + extra
    t0 = time.perf_counter()
    status, body = http_req("GET", port, path)
    dt = time.perf_counter() - t0
    if status != 200:
        raise RuntimeError(f"{q}: HTTP {status}: {body[:300]!r}")
    res = json.loads(body)["data"]["result"]
    return dt, float(res[0]["value"][1]) if res else 0.0


def promql_full_scans(port: int, ds: dict, reps: int, extra: str) -> dict:
    def count_only():
        dt, n = promql_scan(port, ds, extra, "count_over_time")
        if int(n) != ds["points"]:
            raise RuntimeError(f"count_over_time found {n} points, expected {ds['points']}")
        return dt, ds["points"]

    def count_avg():
        dt1, n = promql_scan(port, ds, extra, "count_over_time")
        dt2, total = promql_scan(port, ds, extra, "sum_over_time")
        if int(n) != ds["points"]:
            raise RuntimeError(f"count_over_time found {n} points, expected {ds['points']}")
        ds.setdefault("avg_seen", {})[extra or "prom"] = total / n
        return dt1 + dt2, ds["points"]

    return {"count": scan_runs(reps, count_only), "count_avg": scan_runs(reps, count_avg)}


def promql_one_device(port: int, ds: dict, reps: int, extra: str) -> dict:
    rng = int(ds["range_s"] + 2 * ds["step_s"])
    q = f'{{__name__=~"{ds["measurement"]}_.*",device_id="{ds["device"]}"}}[{rng}s]'
    path = "/api/v1/query?" + urllib.parse.urlencode(
        {"query": q, "time": f'{ds["end_ms"] / 1000:.3f}'}) + extra

    def check(body):
        res = json.loads(body)["data"]["result"]
        n = sum(len(s["values"]) for s in res)
        want = ds["steps"] * ds["metrics"]
        if n != want:
            raise RuntimeError(f"one-device query returned {n} samples, expected {want}")

    return latency_runs(port, path, reps, check)


def prom_metric_sum(text: str, prefix: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(prefix):
            try:
                total += float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return total


def bench_victoriametrics(args, ds: dict, work: pathlib.Path) -> dict:
    data = work / "vm-data"
    port = free_port()
    srv = Server("victoriametrics", [
        args.vm_bin, f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=100y", "-search.maxSamplesPerQuery=10000000000",
        "-search.maxUniqueTimeseries=10000000", "-search.disableCache",
        "-loggerLevel=WARN"], work)
    out: dict = {}
    try:
        wait_http(port, "/health", srv.proc)
        out["ingest"] = run_http_load(
            args, f"http://127.0.0.1:{port}/write?db=bench&precision=ns", ds["lp"])
        time.sleep(3)  # in-memory rows reach disk parts within ~1 s
        prefix = time.strftime("%Y_%m", time.gmtime(ds["start_ms"] / 1000))
        status, body = http_req("GET", port, f"/internal/force_merge?partition_prefix={prefix}")
        if status != 200:
            raise RuntimeError(f"force_merge: HTTP {status} {body[:200]!r}")
        out["settle_s"] = settle(data, lambda: vm_busy(port), args.settle_timeout)
        out["bytes"] = du_bytes(data)
        out["scan"] = promql_full_scans(port, ds, args.scan_reps, "&nocache=1")
        out["one_device"] = promql_one_device(port, ds, args.device_reps, "&nocache=1")
    finally:
        srv.stop()
    return out


def vm_busy(port: int) -> bool:
    status, body = http_req("GET", port, "/metrics", timeout=30)
    text = body.decode()
    return (prom_metric_sum(text, "vm_active_merges") > 0
            or prom_metric_sum(text, "vm_pending_rows") > 0)


def settle(path: pathlib.Path, busy, timeout: float, quiet_s: float = 10.0) -> float:
    """settle waits until busy() is false and path's files have not changed for quiet_s."""
    t0 = time.time()
    last_sig, since = None, time.time()
    while time.time() - t0 < timeout:
        sig = tree_signature(path)
        if sig != last_sig:
            last_sig, since = sig, time.time()
        if not busy() and time.time() - since >= quiet_s:
            return time.time() - t0
        time.sleep(1)
    log(f"warning: {path} did not settle within {timeout}s")
    return time.time() - t0


# ---------------------------------------------------------------------------------------------
# InfluxDB 1.6


def influx_config(work: pathlib.Path, port: int, rpc_port: int) -> pathlib.Path:
    root = work / "influx"
    conf = work / "influxdb.conf"
    conf.write_text(f"""reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{root}/meta"
[data]
  dir = "{root}/data"
  wal-dir = "{root}/wal"
  index-version = "inmem"
  query-log-enabled = false
  cache-snapshot-write-cold-duration = "5s"
  compact-full-write-cold-duration = "10s"
  max-series-per-database = 0
  max-values-per-tag = 0
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  log-enabled = false
  max-body-size = 0
[ifql]
  enabled = false
[continuous_queries]
  enabled = false
[logging]
  level = "warn"
""")
    return conf


def influx_stats(port: int) -> dict:
    status, body = http_req("GET", port, "/debug/vars", timeout=30)
    vars_ = json.loads(body)
    agg: dict = {}
    for key, v in vars_.items():
        if not isinstance(v, dict) or "values" not in v:
            continue
        name = v.get("name")
        if name in ("tsm1_engine", "tsm1_cache", "tsm1_filestore"):
            for k, x in v["values"].items():
                if isinstance(x, (int, float)):
                    agg[k] = agg.get(k, 0) + x
    return agg


def influx_busy(port: int) -> bool:
    s = influx_stats(port)
    active = sum(v for k, v in s.items() if k.endswith("Active"))
    # A shard whose cache was snapshotted into a single TSM file needs no full compaction.
    unmerged = s.get("tsmFullCompactions", 0) < 1 and s.get("numFiles", 0) > 1
    return active > 0 or s.get("memBytes", 0) > 0 or s.get("cacheCompactions", 0) < 1 or unmerged


def influx_query(port: int, q: str) -> tuple[float, bytes]:
    path = "/query?" + urllib.parse.urlencode({"db": "bench", "q": q, "epoch": "ms"})
    t0 = time.perf_counter()
    status, body = http_req("GET", port, path)
    dt = time.perf_counter() - t0
    if status != 200 or b'"error"' in body:
        raise RuntimeError(f"{q}: HTTP {status}: {body[:300]!r}")
    return dt, body


def bench_influxdb(args, ds: dict, work: pathlib.Path) -> dict:
    port, rpc = free_port(), free_port()
    conf = influx_config(work, port, rpc)
    srv = Server("influxdb", [args.influx_bin, "-config", str(conf)], work)
    out: dict = {}
    meas = ds["measurement"]
    where = f"time >= {ds['start_ms']}ms AND time < {ds['end_ms']}ms"
    try:
        wait_http(port, "/ping", srv.proc)
        status, body = http_req("POST", port, "/query?q=CREATE+DATABASE+bench")
        if status != 200:
            raise RuntimeError(f"CREATE DATABASE: HTTP {status} {body[:200]!r}")
        out["ingest"] = run_http_load(
            args, f"http://127.0.0.1:{port}/write?db=bench&precision=ns", ds["lp"])
        out["settle_s"] = settle(work / "influx", lambda: influx_busy(port), args.settle_timeout)
        out["bytes"] = du_bytes(work / "influx")
        out["engine"] = influx_stats(port)

        def count_only():
            dt, body = influx_query(port, f"SELECT count(*) FROM {meas} WHERE {where}")
            n = sum(v for v in json.loads(body)["results"][0]["series"][0]["values"][0][1:]
                    if v is not None)
            if n != ds["points"]:
                raise RuntimeError(f"count(*) found {n} points, expected {ds['points']}")
            return dt, n

        def count_avg():
            dt, _ = influx_query(port, f"SELECT count(*), mean(*) FROM {meas} WHERE {where}")
            return dt, ds["points"]

        out["scan"] = {"count": scan_runs(args.scan_reps, count_only),
                       "count_avg": scan_runs(args.scan_reps, count_avg)}
        q = f"SELECT * FROM {meas} WHERE device_id = '{ds['device']}' AND {where}"
        path = "/query?" + urllib.parse.urlencode({"db": "bench", "q": q, "epoch": "ms"})

        def check(body):
            rows = json.loads(body)["results"][0]["series"][0]["values"]
            if len(rows) != ds["steps"]:
                raise RuntimeError(f"one-device query returned {len(rows)} rows")

        out["one_device"] = latency_runs(port, path, args.device_reps, check)
    finally:
        srv.stop()
    return out


# ---------------------------------------------------------------------------------------------
# Prometheus


def bench_prometheus(args, ds: dict, work: pathlib.Path) -> dict:
    out: dict = {}
    blocks = work / "prom-data"
    cmd = [args.promtool_bin, "tsdb", "create-blocks-from", "openmetrics", "-q", str(ds["om"]),
           str(blocks)]
    log("run " + " ".join(cmd))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"create-blocks-from failed: {r.stderr[-2000:]}")
    out["create_blocks_s"] = time.perf_counter() - t0
    out["bytes"] = du_bytes(blocks)
    out["blocks"] = sum(1 for p in blocks.iterdir() if p.is_dir())

    bench_dir = work / "prom-benchwrite"
    cmd = [args.promtool_bin, "tsdb", "bench", "write", f"--out={bench_dir}",
           f"--metrics={ds['series']}", f"--scrapes={ds['steps']}", str(ds["series_json"])]
    log("run " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    m = re.search(r"samples/sec:\s*([0-9.e+]+)", r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"promtool tsdb bench write failed: {(r.stdout + r.stderr)[-2000:]}")
    out["bench_write_samples_per_s"] = float(m.group(1))
    n = re.search(r"total samples:\s*([0-9]+)", r.stdout + r.stderr)
    out["bench_write_samples"] = int(n.group(1)) if n else None
    shutil.rmtree(bench_dir, ignore_errors=True)

    port = free_port()
    conf = work / "prometheus.yml"
    conf.write_text("global:\n  scrape_interval: 1h\nscrape_configs: []\n")
    srv = Server("prometheus", [
        args.prometheus_bin, f"--config.file={conf}", f"--storage.tsdb.path={blocks}",
        f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y",
        "--query.max-samples=2000000000", "--query.timeout=10m", "--log.level=warn"], work)
    try:
        wait_http(port, "/-/ready", srv.proc)
        deadline = time.time() + 60
        while time.time() < deadline:  # ready once the blocks are loaded
            status, _ = http_req("GET", port, "/-/ready")
            if status == 200:
                break
            time.sleep(0.5)
        out["scan"] = promql_full_scans(port, ds, args.scan_reps, "")
        out["one_device"] = promql_one_device(port, ds, args.device_reps, "")
        out["bytes_after_start"] = du_bytes(blocks)
    finally:
        srv.stop()
    return out


# ---------------------------------------------------------------------------------------------
# tern


def tern_has(args, sub: str) -> bool:
    if not os.access(args.tern_bin, os.X_OK):
        return False
    r = subprocess.run([args.tern_bin, sub, "--help"], capture_output=True, text=True)
    text = (r.stdout + r.stderr).lower()
    return r.returncode == 0 and "--data" in text


def sum_counts(obj) -> float:
    """sum_counts adds every number stored under a key named "count" anywhere in a JSON value."""
    if isinstance(obj, dict):
        total = 0.0
        for k, v in obj.items():
            if k == "count" and isinstance(v, (int, float)):
                total += v
            else:
                total += sum_counts(v)
        return total
    if isinstance(obj, list):
        return sum(sum_counts(v) for v in obj)
    return 0.0


def bench_tern(args, ds: dict, work: pathlib.Path) -> dict:
    out: dict = {}
    if not tern_has(args, "import"):
        raise RuntimeError(f"{args.tern_bin} has no `import` subcommand yet")
    data = work / "tern-import"
    cmd = [args.tern_bin, "import", "--data", str(data), "--precision", "ns", str(ds["lp"])]
    log("run " + " ".join(cmd))
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"tern import failed: {(r.stdout + r.stderr)[-2000:]}")
    out["import_s"] = time.perf_counter() - t0
    out["import_summary"] = (r.stdout + r.stderr).strip()[-1000:]
    # the raw tier (blocks/, index and all) is what the peers store; the warm tier's 1-minute
    # windows (warm/) are tern's extra and reported apart
    out["bytes"] = du_bytes(data / "tsdb" / "blocks")
    out["bytes_with_warm"] = du_bytes(data)
    if not tern_has(args, "tsdb"):
        log("tern has no `tsdb` subcommand yet: only bytes/point for tern")
        return out

    port = free_port()
    ingest_dir = work / "tern-http"
    srv = Server("tern", [args.tern_bin, "tsdb", "--data", str(ingest_dir), "--http",
                          f"127.0.0.1:{port}"], work)
    try:
        wait_http(port, "/ping", srv.proc)
        out["ingest"] = run_http_load(
            args, f"http://127.0.0.1:{port}/write?db=bench&precision=ns", ds["lp"])
    finally:
        srv.stop()
    shutil.rmtree(ingest_dir, ignore_errors=True)

    port = free_port()
    srv = Server("tern-query", [args.tern_bin, "tsdb", "--data", str(data), "--http",
                                f"127.0.0.1:{port}"], work)
    try:
        wait_http(port, "/ping", srv.proc)
        base = {"start": ds["start_ms"], "end": ds["end_ms"] + 1}  # tern's end is exclusive

        def scan(agg):
            def fn():
                q = "/api/v1/query?" + urllib.parse.urlencode(
                    dict(base, metric="*", agg=agg, group_by="*", tier="hot"))
                t0 = time.perf_counter()
                status, body = http_req("GET", port, q)
                dt = time.perf_counter() - t0
                if status != 200:
                    raise RuntimeError(f"{q}: HTTP {status}: {body[:300]!r}")
                n = sum_counts(json.loads(body)["rows"])
                if int(n) != ds["points"]:
                    raise RuntimeError(f"tern counted {n} points, expected {ds['points']}")
                return dt, ds["points"]
            return fn

        out["scan"] = {"count": scan_runs(args.scan_reps, scan("count")),
                       "count_avg": scan_runs(args.scan_reps, scan("count,avg"))}
        path = "/api/v1/query?" + urllib.parse.urlencode(dict(base, metric="*", format="series",
                                                              device=ds["device"]))
        out["one_device"] = latency_runs(port, path, args.device_reps, lambda body: None)
    finally:
        srv.stop()
    return out


# ---------------------------------------------------------------------------------------------


def generate(args, work: pathlib.Path) -> dict:
    ds = {"devices": args.devices, "hours": args.hours, "step_s": args.step, "metrics": 20,
          "measurement": "ev", "start_ms": START_MS}
    ds["steps"] = int(round(args.hours * 3600 / args.step))
    ds["series"] = args.devices * ds["metrics"]
    ds["points"] = ds["series"] * ds["steps"]
    ds["range_s"] = (ds["steps"] - 1) * args.step
    ds["end_ms"] = START_MS + ds["steps"] * args.step * 1000  # exclusive
    ds["device"] = f"dev{min(42, args.devices):06d}"
    common = ["--devices", str(args.devices), "--hours", str(args.hours), "--step",
              str(args.step), "--seed", str(args.seed), "--profile", "ev"]
    for fmt, name in (("lp", "data.lp"), ("openmetrics", "data.om")):
        path = work / name
        key = "lp" if fmt == "lp" else "om"
        ds[key] = path
        cmd = [str(args.tsdb_gen)] + common + ["--format", fmt, "--out", str(path)]
        log("run " + " ".join(cmd))
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"tsdb_gen failed: {r.stderr}")
        ds[f"{key}_bytes"] = path.stat().st_size
    with open(ds["lp"]) as f:
        fields = f.readline().split(" ")[1]
    ds["metric_names"] = [kv.split("=")[0] for kv in fields.split(",")]
    ds["series_json"] = work / "series.json"
    subprocess.run([str(args.tsdb_gen)] + common + ["--series-json", str(ds["series_json"])],
                   check=True, capture_output=True)
    return ds


def ratio(a, b):
    return a / b if a is not None and b not in (None, 0) else None


def get(results: dict, store: str, *keys):
    v = results.get(store)
    for k in keys:
        if not isinstance(v, dict) or k not in v:
            return None
        v = v[k]
    return v


def emit(measure: str, vals: dict, **extra) -> None:
    line = {"bench": "tsdb", "measure": measure}
    for s in STORES:
        line[s] = vals.get(s)
    for peer, key in (("victoriametrics", "vm"), ("prometheus", "prometheus"),
                      ("influxdb", "influxdb")):
        line[f"ratio_vs_{key}"] = ratio(vals.get("tern"), vals.get(peer))
    line.update(extra)
    print(json.dumps(line), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 devices x 1 h")
    ap.add_argument("--devices", type=int, default=1000)
    ap.add_argument("--hours", type=float, default=6)
    ap.add_argument("--step", type=int, default=10, help="seconds between samples")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--stores", default=",".join(STORES))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-lines", type=int, default=5000)
    ap.add_argument("--scan-reps", type=int, default=3)
    ap.add_argument("--device-reps", type=int, default=50)
    ap.add_argument("--settle-timeout", type=float, default=1200)
    ap.add_argument("--bin-dir", default=str(ROOT / "build" / "bin"),
                    help="where tsdb_gen and http_load are (release build)")
    ap.add_argument("--tern-bin", default=str(ROOT / "build" / "bin" / "tern"))
    ap.add_argument("--vm-bin", default="/usr/bin/victoria-metrics")
    ap.add_argument("--prometheus-bin", default="/usr/bin/prometheus")
    ap.add_argument("--promtool-bin", default="/usr/bin/promtool")
    ap.add_argument("--influx-bin", default="/usr/bin/influxd")
    ap.add_argument("--work", help="work directory (default: a new temporary one)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if args.quick:
        args.devices, args.hours = 100, 1
    args.tsdb_gen = pathlib.Path(args.bin_dir) / "tsdb_gen"
    args.http_load = pathlib.Path(args.bin_dir) / "http_load"
    for p in (args.tsdb_gen, args.http_load):
        if not os.access(p, os.X_OK):
            log(f"{p} is missing: build it (cmake --build --preset release --target tsdb_gen "
                "http_load) or pass --bin-dir")
            return 2
    stores = [s for s in args.stores.split(",") if s]
    work = pathlib.Path(args.work) if args.work else pathlib.Path(
        tempfile.mkdtemp(prefix="tsdb_bench."))
    work.mkdir(parents=True, exist_ok=True)
    log(f"work directory {work}")
    results: dict = {}
    errors: dict = {}
    try:
        ds = generate(args, work)
        log(f"data set: {ds['points']} points, {ds['series']} series, line protocol "
            f"{ds['lp_bytes'] / 1e6:.0f} MB, OpenMetrics {ds['om_bytes'] / 1e6:.0f} MB")
        runners = {"tern": bench_tern, "victoriametrics": bench_victoriametrics,
                   "prometheus": bench_prometheus, "influxdb": bench_influxdb}
        for s in STORES:
            if s not in stores:
                continue
            try:
                results[s] = runners[s](args, ds, work)
            except Exception as e:  # a store that fails prints null and the others carry on
                errors[s] = str(e)
                log(f"{s}: {e}")
            for sub in ("vm-data", "influx", "prom-data", "tern-import"):
                if not args.keep:
                    shutil.rmtree(work / sub, ignore_errors=True)

        pts = ds["points"]
        bpp = {s: (get(results, s, "bytes") / pts if get(results, s, "bytes") else None)
               for s in STORES}
        emit("bytes_per_point", bpp, points=pts,
             tern_with_warm_tier=(get(results, "tern", "bytes_with_warm") / pts
                                  if get(results, "tern", "bytes_with_warm") else None),
             note="du of the data dir after settling (tern: the raw tier, blocks/); prometheus: "
                  "promtool create-blocks (2h blocks); influxdb: after full compaction, inmem index")
        ing = {s: get(results, s, "ingest", "points_per_s") for s in STORES}
        ing["prometheus"] = get(results, "prometheus", "bench_write_samples_per_s")
        emit("ingest_points_per_s", ing, threads=args.threads, batch_lines=args.batch_lines,
             note="HTTP line protocol via http_load; prometheus: promtool tsdb bench write "
                  "head-append samples/s (no line-protocol ingest)")
        for key, measure in (("count", "full_scan_count_points_per_s"),
                             ("count_avg", "full_scan_count_avg_points_per_s")):
            emit(measure, {s: get(results, s, "scan", key, "points_per_s") for s in STORES},
                 seconds={s: get(results, s, "scan", key, "seconds") for s in STORES})
        for key in ("p50_ms", "p99_ms"):
            emit(f"one_device_{key}", {s: get(results, s, "one_device", key) for s in STORES},
                 device=ds["device"], samples=ds["steps"] * ds["metrics"],
                 runs=args.device_reps)
        if errors:
            print(json.dumps({"bench": "tsdb", "measure": "errors", **errors}), flush=True)
        raw = {"dataset": {k: str(v) if isinstance(v, pathlib.Path) else v
                           for k, v in ds.items()}, "results": results, "errors": errors}
        (work / "raw.json").write_text(json.dumps(raw, indent=1, default=str))
        log(f"raw results in {work / 'raw.json'}")
    finally:
        if not args.keep:
            for name in ("data.lp", "data.om", "series.json"):
                try:
                    (work / name).unlink()
                except OSError:
                    pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

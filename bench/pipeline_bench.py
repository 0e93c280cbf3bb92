#!/usr/bin/env python3
"""pipeline_bench.py: tern's whole pipeline, end to end, in `tern serve` on this machine.

Starts `tern serve` (release build, embedded log, defaults except stream.allowed_lateness, see
below) on free loopback ports with a fresh data directory, drives it with `tern-sim` on the same
machine (QoS 1, binary payloads, EV profile, time accelerated so hours of fleet time pass), and
waits until the stream has stored every acknowledged point. Measured:

  - sustained points/s stored: acknowledged points / (time from the simulator's start until the
    last of them is stored in the TSDB), and the rate while the simulator ran;
  - the broker's acknowledged rate (points in the log, QoS 1 PUBACKs);
  - CPU seconds per stage, from the per-thread counters of the named threads
    (/proc/PID/task/*/stat: tern = broker loop + log appends, tern-log-io, tern-stream,
    tern-tsdb-wal, tern-tsdb-maint), and the simulator's CPU;
  - the simulator's acknowledgement latency (publish -> PUBACK, p50/p99) and its end-to-end
    latency (publish -> queryable over /api/v1/last, sampled by its probe: docs/sim.md);
  - exactly once: the stored count (a raw count query over every series) against the
    acknowledged points: fewer is a loss; more are points stored whose acknowledgement the
    simulator did not see before it stopped (the store keeps each (series, ts) once).

Prints ONE JSON line. There is no peer in this benchmark: the assembled stack it replaces
(Mosquitto + Kafka + Flink + a TSDB) is not installable here as one pipeline; the issue's goal,
1M points/s sustained with nothing acknowledged lost, is the bar ("goal" and "ratio" below).
Why allowed_lateness: at --accel 600, 30 s of event time is 50 ms of wall time, and every
device's send jitter would make its points "late" (they are still stored; the late side output
would just be busy). Python 3 standard library only; builds nothing (run `make release`).
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def log(msg):
    print(f"pipeline_bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def http_get(port, path, timeout=30):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def metric(port, name):
    for line in http_get(port, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def thread_cpu(pid):
    """CPU seconds per thread name of process pid (user + system)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return out
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/stat") as f:
                s = f.read()
        except FileNotFoundError:
            continue
        name = s[s.index("(") + 1:s.rindex(")")]
        fields = s[s.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def proc_cpu(pid):
    tick = os.sysconf("SC_CLK_TCK")
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / tick


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=3000)
    ap.add_argument("--duration", default="20s", help="simulator run time (wall)")
    ap.add_argument("--accel", type=int, default=600)
    ap.add_argument("--format", default="binary", choices=["binary", "json"])
    ap.add_argument("--bin", default=os.path.join(ROOT, "build", "bin"))
    ap.add_argument("--work", default=None, help="data and logs (default: a temp dir, removed)")
    ap.add_argument("--drain-timeout", type=float, default=600)
    ap.add_argument("--set", action="append", default=[], help="extra tern serve --set K=V")
    args = ap.parse_args()

    tern, sim = os.path.join(args.bin, "tern"), os.path.join(args.bin, "tern-sim")
    for b in (tern, sim):
        if not os.access(b, os.X_OK):
            sys.exit(f"pipeline_bench: {b} is missing: run `make release` first")
    work = args.work or tempfile.mkdtemp(prefix="tern-pipeline-bench-")
    os.makedirs(work, exist_ok=True)
    log(f"work directory {work}")
    mqtt, http = free_port(), free_port()
    sets = ["stream.allowed_lateness=1h"] + args.set
    cmd = [tern, "serve", "--data", os.path.join(work, "data"), "--listen", f"127.0.0.1:{mqtt}",
           "--http", f"127.0.0.1:{http}", "--allow-anonymous"]
    for kv in sets:
        cmd += ["--set", kv]
    serve_log = open(os.path.join(work, "serve.log"), "w")
    serve = subprocess.Popen(cmd, stdout=serve_log, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            try:
                http_get(http, "/ping")
                break
            except OSError:
                if serve.poll() is not None:
                    sys.exit("pipeline_bench: tern serve exited; see " + work)
                time.sleep(0.05)
        # event time starts in the past so accelerated fleet time ends near now (the hot tier
        # keeps 7 days; everything stays inside it)
        dur_s = float(args.duration.rstrip("s"))
        fleet_ms = int(dur_s * args.accel * 1000)
        start_ms = int(time.time() * 1000) - fleet_ms - 60_000
        cpu0 = thread_cpu(serve.pid)
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        simp = subprocess.Popen(
            [sim, "--broker", f"127.0.0.1:{mqtt}", "--devices", str(args.devices), "--duration",
             args.duration, "--accel", str(args.accel), "--qos", "1", "--format", args.format,
             "--start", str(start_ms), "--quiet", "--api", f"127.0.0.1:{http}"],
            stdout=subprocess.PIPE, stderr=open(os.path.join(work, "sim.log"), "w"), text=True)
        out, _ = simp.communicate()
        t_sim = time.perf_counter() - t0
        stored_at_sim_end = metric(http, "tern_stream_stored_points_total")
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        sim_cpu = round(ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime, 1)
        summary = json.loads(out.strip().splitlines()[-1])
        acked = summary["acked_points"]
        log(f"simulator: {summary['acked']} messages acked in {t_sim:.1f} s; draining")
        deadline = time.perf_counter() + args.drain_timeout
        stored, last_change, last = 0, time.perf_counter(), -1
        while time.perf_counter() < deadline:
            stored = metric(http, "tern_stream_stored_points_total") or 0
            if stored >= acked:
                break
            if stored != last:
                last, last_change = stored, time.perf_counter()
            elif time.perf_counter() - last_change > 60:
                break  # stuck: reported below
            time.sleep(0.05)
        t_all = time.perf_counter() - t0
        cpu1 = thread_cpu(serve.pid)
        q = json.loads(http_get(
            http, "/api/v1/query?metric=*&agg=count&group_by=*&tier=hot&start=0&end="
            + str(int(time.time() * 1000) + 30 * 86400_000),
            timeout=600))
        counted = sum(r["count"] for r in q["rows"])
        cpu = {k: round(cpu1.get(k, 0) - cpu0.get(k, 0), 2) for k in set(cpu1) | set(cpu0)}
        cpu = {k: v for k, v in sorted(cpu.items()) if v > 0}
        sustained = acked / t_all
        res = {
            "bench": "pipeline", "devices": args.devices, "metrics": 20,
            "sim_duration_s": round(t_sim, 1), "accel": args.accel, "qos": 1,
            "format": args.format,
            "tern": {
                "acked_points": acked,
                "broker_acked_points_per_s": round(summary["acked_points"] / t_sim),
                "stored_points_per_s_while_sim": round((stored_at_sim_end or 0) / t_sim),
                "sustained_points_per_s": round(sustained),
                "all_stored_after_s": round(t_all, 1),
                "stored_points": int(stored), "counted_points": counted,
                "lost": max(0, acked - counted),
                "stored_not_acked": max(0, counted - acked),
                "ack_p50_ms": summary.get("ack_p50_ms"), "ack_p99_ms": summary.get("ack_p99_ms"),
                "e2e_p50_ms": summary.get("e2e_p50_ms"), "e2e_p99_ms": summary.get("e2e_p99_ms"),
                "e2e_samples": summary.get("e2e_samples"),
                "cpu_s_per_stage": cpu, "serve_cpu_s": round(sum(cpu.values()), 1),
                "sim_cpu_s": sim_cpu,
            },
            "peer": None,
            "goal_points_per_s": 1_000_000,
            "ratio": round(sustained / 1_000_000, 3),
        }
        print(json.dumps(res), flush=True)
        return 0 if counted == acked else 1
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            serve.wait(60)
        except subprocess.TimeoutExpired:
            serve.kill()
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())

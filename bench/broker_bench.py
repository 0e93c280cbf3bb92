#!/usr/bin/env python3
"""broker_bench.py: tern's MQTT broker against Mosquitto, side by side, in one run.

For every scenario it starts a fresh broker on a free loopback port, drives it with
bench/mqtt_load (the C load generator), stops it, and does the same for the peer; each scenario
runs --reps times (default 3) with the broker order alternating, and the figures reported are
the medians. It prints ONE JSON line per scenario on stdout:

  {"bench":"broker","scenario":"fanin_qos0","reps":3,"tern":{...},"mosquitto":{...},
   "ratio":{"msgs_per_cpu_s":2.3,"delivered_per_s":1.0,"p99":0.8}}

A ratio is tern / mosquitto: above 1 is better for rates and counts per CPU-second, below 1 is
better for latencies, memory and times. It is the ratio of the two medians; "ratio_reps" adds the
ratios of each rep's pair (the two brokers ran back to back), and their median, for the first
ratio of the scenario, so that a reader sees how far one rep moves it.

The fan-in scenarios also run a control, bench/mqtt_floor: a program that only frames and
forwards bytes, the least any broker can cost per message on this machine (the kernel's receive
and send paths). Its line adds "floor":{...} and "floor_ratio": floor / mosquitto (the most any
broker could reach against Mosquitto here), tern / floor (how close tern is to that), and each
broker's CPU microseconds per message above the floor's: its own work (with their ratio).

Every raw mqtt_load line, with the broker logs, goes to a work directory named on stderr. Builds
nothing: run `make` (or `cmake --preset release && cmake --build --preset release`) first; see
bench/README.md. Python 3 standard library only.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Scenario -> mqtt_load arguments (full run / --quick). "admission": True keeps tern's default
# connect token bucket; otherwise it is raised out of the way (the storm is where it matters).
SCENARIOS = {
    "fanin_qos0": {
        "args": ["--mode", "fanin", "--qos", "0", "--publishers", "1000", "--consumers", "2",
                 "--rate", "20000"],
        "full": ["--duration", "8"], "quick": ["--duration", "2", "--warmup", "0.5"],
        "ratios": {"msgs_per_cpu_s": "msgs_per_cpu_s", "delivered_per_s": "delivered_per_s",
                   "p99": "lat_p99_us", "p50": "lat_p50_us"},
        "floor": True,
    },
    "fanin_qos1": {
        "args": ["--mode", "fanin", "--qos", "1", "--window", "10", "--publishers", "1000",
                 "--consumers", "2", "--rate", "20000"],
        "full": ["--duration", "8"], "quick": ["--duration", "2", "--warmup", "0.5"],
        "ratios": {"msgs_per_cpu_s": "msgs_per_cpu_s", "delivered_per_s": "delivered_per_s",
                   "p99": "lat_p99_us", "p50": "lat_p50_us", "ack_p99": "ack_p99_us"},
        "floor": True,
    },
    "fanin_qos0_max": {
        # Offered far above what either broker takes on 2 shared cores: delivered/s is the
        # ceiling. QoS 0 has no flow control, so latency here is queueing (reported, not rated);
        # a publisher stops at 256 KiB unsent and the rest counts as "blocked".
        "args": ["--mode", "fanin", "--qos", "0", "--publishers", "100", "--consumers", "2",
                 "--rate", "200000"],
        "full": ["--duration", "5"], "quick": ["--duration", "2", "--warmup", "0.5"],
        "ratios": {"msgs_per_cpu_s": "msgs_per_cpu_s", "delivered_per_s": "delivered_per_s"},
    },
    "qos1_overload": {
        # One QoS 1 subscriber (64 in flight on both brokers) and publishers offering 80,000
        # msgs/s: more than the subscriber's window lets through here (at mqtt_load's default
        # 20,000 neither broker is overloaded on this machine). Is every PUBACKed message
        # delivered?
        "args": ["--mode", "qos1-overload", "--rate", "80000"],
        "full": ["--duration", "8"], "quick": ["--duration", "2", "--warmup", "0.5"],
        "ratios": {"delivered": "delivered", "lost": "lost", "msgs_per_cpu_s": "msgs_per_cpu_s",
                   "ack_p99": "ack_p99_us"},
    },
    "idle": {
        "args": ["--mode", "idle", "--hold", "4", "--settle", "2"],
        "full": ["--connections", "10000"],
        "quick": ["--connections", "2000", "--hold", "2", "--settle", "1"],
        "ratios": {"bytes_per_conn": "bytes_per_conn", "connect_s": "connect_s"},
    },
    "storm": {
        "args": ["--mode", "storm", "--publishers", "100", "--rate", "100"],
        "full": ["--connections", "10000", "--calm", "5"],
        "quick": ["--connections", "2000", "--calm", "2", "--warmup", "0.5"],
        "admission": True,
        "ratios": {"storm_s": "storm_s", "before_p99": "before_p99_us",
                   "during_p99": "during_p99_us", "after_p99": "after_p99_us",
                   "hangup_p99": "hangup_p99_us"},
    },
}

# The fields reported (as medians) per scenario, in this order; the rest stay in the raw file.
FIELDS = {
    "fanin": ["sent_per_s", "delivered_per_s", "lat_p50_us", "lat_p99_us", "lat_p999_us",
              "ack_p99_us", "msgs_per_cpu_s", "broker_cpu_pct", "gen_cpu_pct", "sent", "acked",
              "delivered", "lost", "undelivered", "duplicates", "blocked", "dropped",
              "broker_hwm_kb"],
    "idle": ["subscribed", "held", "connect_s", "connects_per_s", "rss_before_kb",
             "rss_after_kb", "bytes_per_conn", "broker_cpu_s", "refused", "dropped"],
    "storm": ["connected", "storm_s", "connects_per_s", "refused", "conn_errors", "max_attempts",
              "before_p50_us", "before_p99_us", "during_p50_us", "during_p99_us",
              "during_max_us", "after_p99_us", "hangup_p99_us", "hangup_max_us",
              "acked_per_s_calm", "acked_per_s_storm",
              "storm_broker_cpu_s", "storm_storm_clients_cpu_s", "hangup_broker_cpu_s",
              "pub_dropped", "dropped"],
}


def log(msg):
    print(f"broker_bench: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def proc_status(pid, key):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def wait_port(port, proc, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """One broker process on a free loopback port, its log in the work directory."""

    def __init__(self, kind, args, workdir, tag):
        self.kind, self.args, self.workdir, self.tag = kind, args, workdir, tag
        self.port = free_port()
        self.proc = None
        self.log_path = os.path.join(workdir, f"{tag}.{kind}.log")

    def command(self, admission):
        if self.kind == "tern":
            acl = os.path.join(self.workdir, "tern.acl")
            data = os.path.join(self.workdir, f"{self.tag}.tern-data")
            os.makedirs(data, exist_ok=True)
            cmd = [self.args.tern, "broker", "--listen", f"127.0.0.1:{self.port}",
                   "--allow-anonymous", "--data", data, "--set", f"broker.acl_file={acl}"]
            if not self.args.with_log:
                # The broker alone, as Mosquitto runs: no durable log behind it. With the log
                # (--with-log) QoS 1 is acknowledged only once the log has fsynced it, which is
                # the pipeline's promise but not the same job; bench/log_bench.py measures it.
                cmd += ["--set", "broker.ingest="]
            if not admission:
                cmd += ["--set", "broker.connect_rate=1000000",
                        "--set", "broker.connect_burst=1000000"]
            for kv in self.args.tern_set:
                cmd += ["--set", kv]
            return cmd
        if self.kind == "floor":
            return [self.args.floor, "--listen", str(self.port)]
        conf = os.path.join(self.workdir, f"{self.tag}.mosquitto.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\n"
                    "allow_anonymous true\n"
                    "max_queued_messages 1000\n"
                    "max_inflight_messages 64\n"
                    "set_tcp_nodelay true\n"
                    # one log line per connect would tax the storm and idle scenarios
                    "connection_messages false\n")
        return [self.args.mosquitto, "-c", conf]

    def start(self, admission):
        cmd = self.command(admission)
        self.logf = open(self.log_path, "w")
        self.logf.write(" ".join(cmd) + "\n")
        self.logf.flush()
        self.proc = subprocess.Popen(cmd, stdout=self.logf, stderr=subprocess.STDOUT,
                                     preexec_fn=raise_nofile)
        if not wait_port(self.port, self.proc):
            self.stop()
            raise RuntimeError(f"{self.kind} did not start: see {self.log_path}")
        time.sleep(0.2)  # let it finish start-up before RSS / CPU baselines

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self):
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            rc = self.proc.returncode
        if getattr(self, "logf", None):
            self.logf.close()
        return rc

    def log_tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.readlines()[-n:]
        except OSError:
            return []


def run_once(args, scenario, kind, rep, workdir):
    spec = SCENARIOS[scenario]
    tag = f"{scenario}.r{rep}"
    broker = Broker(kind, args, workdir, tag)
    broker.start(spec.get("admission", False))
    cmd = [args.load, "--addr", f"127.0.0.1:{broker.port}", "--cpu-pid", str(broker.proc.pid)]
    cmd += spec["args"] + (spec["quick"] if args.quick else spec["full"])
    result = {"ok": False}
    err_path = os.path.join(workdir, f"{tag}.{kind}.load.err")
    try:
        with open(err_path, "w") as err:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=err, text=True,
                                 timeout=args.timeout, preexec_fn=raise_nofile)
        hwm = proc_status(broker.proc.pid, "VmHWM")
        alive = broker.alive()
        line = out.stdout.strip().splitlines()[-1] if out.stdout.strip() else ""
        if out.returncode == 0 and line:
            result = json.loads(line)
            result["ok"] = True
        else:
            result["error"] = f"mqtt_load exited {out.returncode}"
        if hwm is not None:
            result["broker_hwm_kb"] = hwm
        if not alive:
            result["ok"] = False
            result["error"] = f"{kind} exited during the run (status {broker.proc.returncode})"
    except subprocess.TimeoutExpired:
        result["error"] = f"mqtt_load timed out after {args.timeout}s"
    finally:
        rc = broker.stop()
    # flatten the storm's nested CPU objects
    for phase in ("calm", "storm", "hangup"):
        if isinstance(result.get(phase), dict):
            for k, v in result.pop(phase).items():
                result[f"{phase}_{k}"] = v
    result.update({"broker": kind, "scenario": scenario, "rep": rep, "broker_exit": rc})
    if not result["ok"]:
        result["broker_log_tail"] = broker.log_tail()
        try:
            with open(err_path, errors="replace") as f:
                result["load_stderr_tail"] = f.readlines()[-10:]
        except OSError:
            pass
        log(f"{scenario} rep {rep} {kind}: FAILED: {result.get('error')} (logs in {workdir})")
    return result


def median_fields(runs, fields):
    out = {}
    ok = [r for r in runs if r.get("ok")]
    for f in fields:
        vals = [r[f] for r in ok if isinstance(r.get(f), (int, float))]
        if vals:
            m = statistics.median(vals)
            out[f] = round(m, 3) if isinstance(m, float) else m
    out["runs_ok"] = len(ok)
    if len(ok) < len(runs):
        out["runs_failed"] = len(runs) - len(ok)
        out["errors"] = sorted({r.get("error", "?") for r in runs if not r.get("ok")})
    return out


def ratio(a, b):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or b == 0:
        return None
    return round(a / b, 3)


def paired_ratios(runs, ratios):
    """For the scenario's first ratio: tern / mosquitto of each rep whose two runs both
    succeeded, and the median of those."""
    name, f = next(iter(ratios.items()))
    pairs = [ratio(t.get(f), m.get(f)) for t, m in zip(runs["tern"], runs["mosquitto"])
             if t.get("ok") and m.get("ok")]
    pairs = [p for p in pairs if p is not None]
    out = {"figure": name, "reps": pairs}
    if pairs:
        out["median"] = round(statistics.median(pairs), 3)
    return out


def floor_ratios(line):
    """The control's figures: floor / mosquitto, tern / floor, and each broker's own CPU per
    message, the microseconds it spends above the floor's (tern's over Mosquitto's: below 1 is
    better)."""
    cpu = "msgs_per_cpu_s"
    per_s = {b: line.get(b, {}).get(cpu) for b in ("tern", "mosquitto", "floor")}
    out = {"floor_over_mosquitto": ratio(per_s["floor"], per_s["mosquitto"]),
           "tern_over_floor": ratio(per_s["tern"], per_s["floor"])}
    if not per_s["floor"]:
        return out
    floor_us = 1e6 / per_s["floor"]
    for b in ("tern", "mosquitto"):
        if per_s[b]:
            out[f"{b}_above_floor_us"] = round(1e6 / per_s[b] - floor_us, 3)
    out["above_floor"] = ratio(out.get("tern_above_floor_us"), out.get("mosquitto_above_floor_us"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="~1 minute smoke run (1 rep, small)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated subset of: " + ", ".join(SCENARIOS))
    ap.add_argument("--brokers", default="tern,mosquitto,floor",
                    help="of tern, mosquitto, floor (the control; fan-in scenarios only)")
    ap.add_argument("--tern", default=os.path.join(ROOT, "build/bin/tern"))
    ap.add_argument("--load", default=os.path.join(ROOT, "build/bin/mqtt_load"))
    ap.add_argument("--floor", default=os.path.join(ROOT, "build/bin/mqtt_floor"))
    ap.add_argument("--mosquitto", default=shutil.which("mosquitto") or "/usr/sbin/mosquitto")
    ap.add_argument("--with-log", action="store_true",
                    help="keep tern's default ingest of fleet/+/telemetry into its durable log")
    ap.add_argument("--tern-set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra --set for tern (repeatable)")
    ap.add_argument("--workdir", default=None, help="where raw results and logs go")
    ap.add_argument("--timeout", type=float, default=180, help="per mqtt_load run, seconds")
    args = ap.parse_args()
    reps = args.reps or (1 if args.quick else 3)
    scenarios = [s for s in args.scenarios.split(",") if s]
    brokers = [b for b in args.brokers.split(",") if b]
    for s in scenarios:
        if s not in SCENARIOS:
            ap.error(f"unknown scenario {s}")
    for b in brokers:
        if b not in ("tern", "mosquitto", "floor"):
            ap.error(f"unknown broker {b}")
    need = [args.load] + ([args.tern] if "tern" in brokers else []) + \
        ([args.mosquitto] if "mosquitto" in brokers else []) + \
        ([args.floor] if "floor" in brokers else [])
    for exe in need:
        if not os.access(exe, os.X_OK):
            sys.exit(f"broker_bench: {exe} is missing: build first (see bench/README.md)")
    raise_nofile()
    workdir = args.workdir or tempfile.mkdtemp(prefix="tern-broker-bench-")
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "tern.acl"), "w") as f:
        f.write("# broker_bench: every client may publish and subscribe anywhere\n"
                "topic readwrite #\n")
    raw_path = os.path.join(workdir, "raw.jsonl")
    log(f"work directory {workdir} (raw results: {raw_path}); {reps} rep(s) of "
        f"{', '.join(scenarios)} on {', '.join(brokers)}")
    t_start = time.monotonic()
    with open(raw_path, "w") as raw:
        for scenario in scenarios:
            here = [b for b in brokers if b != "floor" or SCENARIOS[scenario].get("floor")]
            runs = {b: [] for b in here}
            for rep in range(reps):
                order = here if rep % 2 == 0 else list(reversed(here))
                for kind in order:
                    r = run_once(args, scenario, kind, rep, workdir)
                    raw.write(json.dumps(r) + "\n")
                    raw.flush()
                    runs[kind].append(r)
            fields = FIELDS[SCENARIOS[scenario]["args"][1].replace("qos1-overload", "fanin")]
            line = {"bench": "broker", "scenario": scenario, "reps": reps}
            for b in here:
                line[b] = median_fields(runs[b], fields)
            if "tern" in here and "mosquitto" in here:
                line["ratio"] = {name: ratio(line["tern"].get(f), line["mosquitto"].get(f))
                                 for name, f in SCENARIOS[scenario]["ratios"].items()}
                line["ratio_reps"] = paired_ratios(runs, SCENARIOS[scenario]["ratios"])
            if "floor" in here:
                line["floor_ratio"] = floor_ratios(line)
            print(json.dumps(line), flush=True)
    log(f"done in {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()

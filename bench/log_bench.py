#!/usr/bin/env python3
"""log_bench.py: tern's log benchmark: the embedded log next to `dd` and Apache Kafka, in one run.

    python3 bench/log_bench.py            # full run: 3 reps of every scenario, ~5-7 min
    python3 bench/log_bench.py --quick    # smoke run, ~1 min (1 rep, short runs)

It drives `log_bench` (bench/log_bench.c) and prints ONE JSON line per scenario on stdout, with
tern's figures, the peers' figures measured in the same run, and the ratios tern / peer:

  disk              the disk's limit: `dd` writing as many bytes as the embedded log wrote, once
                    with one sync at the end (bs=1M conv=fdatasync, the disk's best case) and once
                    with a sync per write of tern's average batch size (oflag=dsync);
  embedded_group    tern's embedded log, group commit every 5 ms (the default), no compression,
                    against dd (conv=fdatasync) and Kafka;
  embedded_group_zstd  the same with zstd batches (tern's default), against dd and Kafka (which
                    compresses with zstd too);
  embedded_always   fsync after every batch, against dd (oflag=dsync at tern's batch size);
  kafka             Apache Kafka 3.9.1, one KRaft node on this machine, fed through tern's Kafka
                    backend (librdkafka, idempotent, acks=all, zstd, linger 5 ms). Kafka does not
                    fsync per batch: a record is "durable" once the leader and its in-sync
                    replicas (here: one) hold it in the page cache;
  latency_paced     append-to-durable latency at a fixed rate (100,000 records/s by default) that
                    neither backend is saturated by: tern group, tern always, Kafka.

Embedded throughput runs append a fixed number of records (--records); Kafka runs append for
--seconds (it is slower). Every write-heavy run (embedded, dd, Kafka) is preceded by writing and
deleting --prewarm-mb of page cache, because on this VM the first write to memory that sat free
for ~10 s costs ~2.5 s of CPU per GB (bench/README.md, "Memory warm-up"); without it, whichever
of tern or dd ran second looked 2-3x faster. Every rep runs each scenario once, in a rotating
order; the figures printed are medians over the reps (the machine is shared). Runs that failed are counted (runs_failed) with their errors.
Raw lines from every run go to raw.jsonl in the work directory (named on stderr). Standard
library only; Kafka is started and stopped with scripts/kafka (fetched first if needed).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import pathlib
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

ROOT = pathlib.Path(__file__).resolve().parents[1]
KAFKA_SCRIPT = ROOT / "scripts" / "kafka"
MB = 1e6  # every MB/s in this benchmark is 10^6 bytes per second
KAFKA_DURABILITY = (
    "Kafka acks=all with 1 replica: acknowledged once the leader holds the batch in the page "
    "cache; Kafka does not fsync per batch (log.flush.interval.messages unset), so a power cut "
    "can lose acknowledged records that tern's fsync policies would keep")


def log(msg: str) -> None:
    print(f"[log_bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def du_bytes(paths: list[pathlib.Path]) -> int:
    """du_bytes returns the bytes allocated to the regular files under paths (st_blocks * 512)."""
    total = 0
    for top in paths:
        for dirpath, _dirs, files in os.walk(top):
            for name in files:
                try:
                    total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
                except OSError:
                    pass
    return total


def proc_cpu_s(pid: int) -> float | None:
    """proc_cpu_s returns the user + system CPU seconds of process pid, or None if it is gone."""
    try:
        fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def median_of(runs: list[dict]) -> dict:
    """median_of returns, for every numeric field of the runs, its median (rounded sensibly)."""
    out: dict = {}
    if not runs:
        return out
    for key in runs[0]:
        values = [r[key] for r in runs if isinstance(r.get(key), (int, float))
                  and not isinstance(r.get(key), bool)]
        if len(values) != len(runs):
            if all(r.get(key) == runs[0][key] for r in runs):
                out[key] = runs[0][key]
            continue
        m = statistics.median(values)
        out[key] = int(round(m)) if all(isinstance(v, int) for v in values) or abs(m) >= 1000 \
            else round(m, 3)
    out["runs_ok"] = len(runs)
    return out


def ratio(a, b, digits: int = 3):
    if not isinstance(a, (int, float)) or not isinstance(b, (int, float)) or not b:
        return None
    return round(a / b, digits)


class Runner:
    """Runner runs log_bench, dd and Kafka and keeps every raw result (raw.jsonl)."""

    def __init__(self, args: argparse.Namespace, workdir: pathlib.Path) -> None:
        self.args = args
        self.workdir = workdir
        self.raw = open(workdir / "raw.jsonl", "a", encoding="utf-8")
        self.results: dict[str, list[dict]] = {}
        self.failures: dict[str, list[str]] = {}
        self.kafka_dir = workdir / "kafka"
        self.kafka_port: int | None = None
        self.kafka_pid: int | None = None
        self.load_start = round(os.getloadavg()[0], 2)

    def record(self, name: str, rep: int, result: dict | None, error: str | None) -> None:
        line = {"scenario": name, "rep": rep, "loadavg_1m": round(os.getloadavg()[0], 2),
                "result": result, "error": error}
        self.raw.write(json.dumps(line) + "\n")
        self.raw.flush()
        if result is not None and error is None:
            self.results.setdefault(name, []).append(result)
        else:
            self.failures.setdefault(name, []).append(error or "no result")
            log(f"{name} rep {rep} FAILED: {error}")

    # ---- log_bench -------------------------------------------------------------------------

    def log_bench(self, extra: list[str], seconds: float) -> tuple[dict | None, str | None]:
        cmd = [str(self.args.bin), "--seconds", str(seconds), "--threads", str(self.args.threads),
               *extra]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 180)
        except subprocess.TimeoutExpired:
            return None, f"timeout: {' '.join(cmd)}"
        result = None
        for line in reversed(proc.stdout.splitlines()):
            if line.startswith("{"):
                try:
                    result = json.loads(line)
                except ValueError:
                    pass
                break
        if proc.returncode != 0 or result is None:
            tail = " | ".join(proc.stderr.strip().splitlines()[-5:])
            return result, f"exit {proc.returncode}: {tail}"
        return result, None

    def prewarm(self) -> float:
        """prewarm writes --prewarm-mb of zeros to a file in the work directory (page cache only,
        no sync) and deletes it, so the run that follows writes into page-cache memory this VM
        has recently used (see bench/README.md, "Memory warm-up"). Returns its seconds."""
        if self.args.prewarm_mb <= 0:
            return 0.0
        path = self.workdir / "prewarm.out"
        t0 = time.monotonic()
        try:
            subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=1M",
                            f"count={self.args.prewarm_mb}"], capture_output=True, timeout=600,
                           check=False)
        finally:
            path.unlink(missing_ok=True)
        return round(time.monotonic() - t0, 2)

    def embedded(self, name: str, rep: int, extra: list[str], seconds: float,
                 warm: bool = False) -> dict | None:
        data = self.workdir / "embedded"
        shutil.rmtree(data, ignore_errors=True)
        warm_s = self.prewarm() if warm else None
        result, err = self.log_bench(["--backend", "embedded", "--dir", str(data), *extra],
                                     seconds)
        if result is not None and warm_s is not None:
            result["prewarm_s"] = warm_s
        shutil.rmtree(data, ignore_errors=True)
        self.record(name, rep, result, err)
        return result if err is None else None

    def kafka(self, name: str, rep: int, extra: list[str], seconds: float,
              warm: bool = False) -> dict | None:
        if self.kafka_port is None:
            self.record(name, rep, None, "Kafka is not running")
            return None
        topic = f"bench-{name}-{rep}-{uuid.uuid4().hex[:8]}"
        warm_s = self.prewarm() if warm else None
        cpu0 = proc_cpu_s(self.kafka_pid) if self.kafka_pid else None
        result, err = self.log_bench(
            ["--backend", "kafka", "--brokers", f"127.0.0.1:{self.kafka_port}", "--topic", topic,
             *extra], seconds)
        cpu1 = proc_cpu_s(self.kafka_pid) if self.kafka_pid else None
        if result is not None:
            parts = sorted((self.kafka_dir / "data").glob(f"{topic}-*"))
            result["disk_bytes"] = du_bytes(parts)
            if cpu0 is not None and cpu1 is not None:
                # The broker's CPU over the whole run (produce and consume phases).
                result["broker_cpu_s"] = round(cpu1 - cpu0, 2)
            if warm_s is not None:
                result["prewarm_s"] = warm_s
            # Free the disk for the next runs (the bytes were counted above).
            self.delete_topic(topic)
        self.record(name, rep, result, err)
        return result if err is None else None

    # ---- dd -------------------------------------------------------------------------------

    def dd(self, name: str, rep: int, total_bytes: int, bs: int, flag: str) -> dict | None:
        """dd writes about total_bytes of zeros in blocks of bs with flag (conv=fdatasync or
        oflag=dsync) to a file in the work directory and returns its MB/s."""
        bs = max(512, int(bs))
        count = max(1, math.ceil(total_bytes / bs))
        path = self.workdir / "dd.out"
        cmd = ["dd", "if=/dev/zero", f"of={path}", f"bs={bs}", f"count={count}", flag]
        warm_s = self.prewarm()
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        except subprocess.TimeoutExpired:
            self.record(name, rep, None, "dd timed out")
            return None
        finally:
            path.unlink(missing_ok=True)
        m = re.search(r"^(\d+) bytes .* copied, ([0-9.e+-]+) s", proc.stderr, re.M)
        if proc.returncode != 0 or not m:
            self.record(name, rep, None, f"dd exit {proc.returncode}: {proc.stderr.strip()}")
            return None
        n, secs = int(m.group(1)), float(m.group(2))
        result = {"bytes": n, "bs": bs, "count": count, "flag": flag, "seconds": round(secs, 3),
                  "mb_per_s": round(n / secs / MB, 1) if secs > 0 else None,
                  "prewarm_s": warm_s}
        self.record(name, rep, result, None)
        return result

    # ---- Kafka ----------------------------------------------------------------------------

    def kafka_start(self) -> None:
        fetch = subprocess.run([str(KAFKA_SCRIPT), "fetch"], capture_output=True, text=True,
                               timeout=1800)
        if fetch.returncode != 0:
            raise RuntimeError(f"scripts/kafka fetch failed:\n{fetch.stdout}{fetch.stderr}")
        port = free_port()
        env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()))
        t0 = time.monotonic()
        proc = subprocess.run([str(KAFKA_SCRIPT), "start", str(self.kafka_dir), str(port)],
                              capture_output=True, text=True, timeout=300, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"scripts/kafka start failed:\n{proc.stderr}")
        self.kafka_port = port
        self.kafka_pid = int(proc.stdout.strip().splitlines()[-1])
        log(f"Kafka pid {self.kafka_pid} on 127.0.0.1:{port}, up in {time.monotonic() - t0:.1f} s")

    def kafka_stop(self) -> None:
        if self.kafka_port is None:
            return
        subprocess.run([str(KAFKA_SCRIPT), "stop", str(self.kafka_dir)], timeout=120,
                       check=False)
        self.kafka_port = None
        shutil.rmtree(self.kafka_dir / "data", ignore_errors=True)

    def delete_topic(self, topic: str) -> None:
        subprocess.run([str(KAFKA_SCRIPT), "topics", "--bootstrap-server",
                        f"127.0.0.1:{self.kafka_port}", "--delete", "--topic", topic],
                       capture_output=True, timeout=120, check=False)

    def kafka_version(self) -> str | None:
        for jar in sorted((ROOT / ".deps" / "kafka" / "libs").glob("kafka_2.13-*.jar")):
            return jar.name[len("kafka_2.13-"):-len(".jar")]
        return None


def run_all(r: Runner) -> None:
    a = r.args
    secs, paced_secs = a.seconds, a.paced_seconds
    scenarios = set(a.scenarios.split(","))
    paced = ["--rate", str(a.rate)]
    # Embedded runs append a fixed number of records (a bounded number of bytes, so the memory
    # warm-up before them covers the page cache they will fill), at most for 60 s.
    fixed = ["--records", str(a.records)]
    cap = 60.0

    def emb_group(rep: int) -> None:
        res = r.embedded("embedded_group", rep, ["--fsync", "group", "--compress", "0", *fixed],
                         cap, warm=True)
        if res and "dd" in a.peers:
            r.dd("dd_fdatasync", rep, res["log_bytes"], 1 << 20, "conv=fdatasync")

    def emb_zstd(rep: int) -> None:
        r.embedded("embedded_group_zstd", rep, ["--fsync", "group", "--compress", "1", *fixed],
                   cap, warm=True)

    def emb_always(rep: int) -> None:
        res = r.embedded("embedded_always", rep, ["--fsync", "always", "--compress", "0", *fixed],
                         cap, warm=True)
        if res and "dd" in a.peers and res.get("avg_batch_bytes"):
            r.dd("dd_dsync", rep, res["log_bytes"], res["avg_batch_bytes"], "oflag=dsync")

    def kafka(rep: int) -> None:
        if "kafka" in a.peers:
            r.kafka("kafka", rep, [], secs, warm=True)

    def latency(rep: int) -> None:
        r.embedded("paced_embedded_group", rep, ["--fsync", "group", "--compress", "0", *paced],
                   paced_secs)
        r.embedded("paced_embedded_always", rep,
                   ["--fsync", "always", "--compress", "0", *paced], paced_secs)
        if "kafka" in a.peers:
            r.kafka("paced_kafka", rep, paced, paced_secs)

    steps = [("throughput", emb_group), ("throughput", emb_zstd), ("throughput", emb_always),
             ("throughput", kafka), ("latency", latency)]
    steps = [s for s in steps if s[0] in scenarios]
    for rep in range(a.reps):
        # Rotate the order so no backend always runs first (after the other one's writeback).
        k = rep % len(steps) if steps else 0
        for _, step in steps[k:] + steps[:k]:
            step(rep)
        log(f"rep {rep + 1}/{a.reps} done")


def report(r: Runner, elapsed_s: float) -> list[dict]:
    a = r.args
    med = {name: median_of(runs) for name, runs in r.results.items()}
    common = {"bench": "log", "reps": a.reps, "records": a.records, "kafka_seconds": a.seconds,
              "value_bytes": 200, "partitions": 8, "threads": a.threads,
              "prewarm_mb": a.prewarm_mb}

    def block(name: str) -> dict:
        m = dict(med.get(name, {}))
        if r.failures.get(name):
            m["runs_failed"] = len(r.failures[name])
            m["errors"] = r.failures[name][:3]
        for k in ("bench", "backend", "value_bytes", "key_bytes", "partitions", "devices",
                  "threads", "max_pending", "lat_sample", "first_error"):
            m.pop(k, None)
        return m

    lines = []
    dd_sync, dd_dsync = block("dd_fdatasync"), block("dd_dsync")
    kafka = block("kafka")
    if dd_sync or dd_dsync:
        lines.append({**common, "scenario": "disk", "dd_fdatasync": dd_sync, "dd_dsync": dd_dsync,
                      "note": "dd writes as many bytes as the embedded run wrote: bs=1M with one "
                              "fdatasync at the end (the disk's best case), and bs=<tern's "
                              "average batch> with oflag=dsync (a sync per batch, like fsync "
                              "always)"})
    for name, dd_peer in (("embedded_group", dd_sync), ("embedded_group_zstd", dd_sync),
                          ("embedded_always", dd_dsync)):
        t = block(name)
        if not t:
            continue
        dd_mb = dd_peer.get("mb_per_s")
        rat = {
            "write_vs_dd": ratio(t.get("write_mb_per_s"), dd_mb),
            "payload_vs_dd": ratio(t.get("mb_per_s"), dd_mb),
            "records_vs_kafka": ratio(t.get("records_per_s"), kafka.get("records_per_s")),
            "consume_vs_kafka": ratio(t.get("consume_records_per_s"),
                                      kafka.get("consume_records_per_s")),
        }
        if name == "embedded_always":
            rat["write_vs_dd_fdatasync"] = ratio(t.get("write_mb_per_s"), dd_sync.get("mb_per_s"))
        goals = {}
        # The disk goal compares the bytes the log wrote per second with dd's; with zstd the log
        # writes ~4x fewer bytes than it takes in, so there the payload rate is what counts.
        if name == "embedded_group_zstd" and rat["payload_vs_dd"] is not None:
            goals["payload_ge_70pct_of_dd"] = rat["payload_vs_dd"] >= 0.7
        elif rat["write_vs_dd"] is not None:
            goals["ge_70pct_of_dd"] = rat["write_vs_dd"] >= 0.7
        if rat["records_vs_kafka"] is not None:
            goals["ge_kafka_produce"] = rat["records_vs_kafka"] >= 1.0
        peers = {"dd": {"mb_per_s": dd_mb, "flag": dd_peer.get("flag"), "bs": dd_peer.get("bs")},
                 "kafka": {k: kafka.get(k) for k in (
                     "records_per_s", "mb_per_s", "lat_p99_us", "consume_records_per_s",
                     "consume_mb_per_s")}}
        lines.append({**common, "scenario": name, "tern": t, **peers, "ratio": rat,
                      "goals": goals})
    if kafka:
        kafka_cpu = (kafka.get("cpu_user_s", 0) + kafka.get("cpu_sys_s", 0)
                     + kafka.get("broker_cpu_s", 0))
        lines.append({**common, "scenario": "kafka", "kafka_version": r.kafka_version(),
                      "kafka": kafka, "client_plus_broker_cpu_s": round(kafka_cpu, 2),
                      "durability": KAFKA_DURABILITY})
    pg, pa, pk = (block("paced_embedded_group"), block("paced_embedded_always"),
                  block("paced_kafka"))
    if pg or pa or pk:
        keys = ("records_per_s", "lat_p50_us", "lat_p99_us", "lat_p999_us", "lat_max_us",
                "cpu_user_s", "cpu_sys_s", "errors", "runs_ok", "runs_failed")
        lines.append({**common, "scenario": "latency_paced", "rate": a.rate,
                      "seconds": a.paced_seconds,
                      "tern_group": {k: pg.get(k) for k in keys if k in pg},
                      "tern_always": {k: pa.get(k) for k in keys if k in pa},
                      "kafka": {k: pk.get(k) for k in keys if k in pk},
                      "ratio": {"p99_group_vs_kafka": ratio(pg.get("lat_p99_us"),
                                                            pk.get("lat_p99_us")),
                                "p99_always_vs_kafka": ratio(pa.get("lat_p99_us"),
                                                             pk.get("lat_p99_us")),
                                "p50_group_vs_kafka": ratio(pg.get("lat_p50_us"),
                                                            pk.get("lat_p50_us"))},
                      "durability": "tern: after fdatasync; " + KAFKA_DURABILITY})
    for line in lines:
        line["elapsed_s"] = round(elapsed_s, 1)
        line["loadavg_1m"] = {"start": r.load_start, "end": round(os.getloadavg()[0], 2)}
    return lines


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 rep, 3 s runs (~1 min)")
    p.add_argument("--reps", type=int, help="repetitions of every scenario (3; --quick: 1)")
    p.add_argument("--records", type=int,
                   help="records per embedded throughput run (15,000,000; quick: 4,000,000)")
    p.add_argument("--seconds", type=float, help="append time of a Kafka run (8; quick: 3)")
    p.add_argument("--prewarm-mb", type=int,
                   help="MiB written and deleted before each write-heavy run (default: 1.15x the "
                        "bytes of an embedded run; 0: none)")
    p.add_argument("--paced-seconds", type=float, help="append time of a paced run (5; quick: 2)")
    p.add_argument("--rate", type=int, default=100000, help="records/s of the paced runs")
    p.add_argument("--threads", type=int, default=1, choices=(1, 2), help="producer threads")
    p.add_argument("--scenarios", default="throughput,latency",
                   help="comma list of: throughput, latency")
    p.add_argument("--peers", default="dd,kafka", help="comma list of: dd, kafka")
    p.add_argument("--bin", type=pathlib.Path, default=None,
                   help="log_bench binary (build/h-logbench/bin, then build/bin)")
    p.add_argument("--workdir", type=pathlib.Path, help="where data and raw.jsonl go")
    a = p.parse_args()
    a.reps = a.reps or (1 if a.quick else 3)
    a.seconds = a.seconds or (3.0 if a.quick else 8.0)
    a.records = a.records or (4_000_000 if a.quick else 15_000_000)
    if a.prewarm_mb is None:
        a.prewarm_mb = math.ceil(a.records * 217 * 1.15 / (1 << 20))
    a.paced_seconds = a.paced_seconds or (2.0 if a.quick else 5.0)
    a.peers = set(a.peers.split(","))
    if a.bin is None:
        for cand in (ROOT / "build" / "h-logbench" / "bin" / "log_bench",
                     ROOT / "build" / "bin" / "log_bench"):
            if cand.exists():
                a.bin = cand
                break
    if a.bin is None or not a.bin.exists():
        print("log_bench.py: no log_bench binary: build it (bench/README.md) or pass --bin",
              file=sys.stderr)
        return 2
    workdir = a.workdir or pathlib.Path(tempfile.mkdtemp(prefix="tern-logbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    workdir = workdir.resolve()
    log(f"work directory {workdir}; binary {a.bin}")
    r = Runner(a, workdir)
    t0 = time.monotonic()
    try:
        if "kafka" in a.peers:
            r.kafka_start()
            # The JVM deserves a warm-up: one short unmeasured run (JIT, topic metadata paths).
            r.log_bench(["--backend", "kafka", "--brokers", f"127.0.0.1:{r.kafka_port}",
                         "--topic", f"warmup-{uuid.uuid4().hex[:8]}", "--no-consume"],
                        1.0 if a.quick else 3.0)
        run_all(r)
    finally:
        r.kafka_stop()
    for line in report(r, time.monotonic() - t0):
        print(json.dumps(line), flush=True)
    failed = sum(len(v) for v in r.failures.values())
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""tsdb_api_bench.py: tern's C API write path against Prometheus's head appends, same run.

Runs bench/tsdb_api_bench (release build) for each thread count and WAL mode, and
`promtool tsdb bench write` on the same series (the label sets tsdb_api_bench --series-json
writes: devices x 20 EV metrics) with as many scrapes as tern's time steps, so both write the
same number of points. Each is run --runs times (default 3; the machine is shared and noisy) and
the median is reported. Prints ONE JSON line: tern's points/s per configuration, promtool's
samples/s, and the ratios (tern / promtool).

    python3 bench/tsdb_api_bench.py [--bin build/perfeng-rel/bin/tsdb_api_bench]
        [--promtool /usr/bin/promtool] [--devices 10000] [--minutes 36] [--threads 1,2]
        [--wal off,on] [--runs 3] [--block-minutes 0] [--work /tmp/tsdb_api_bench_work]

Python 3 standard library only. promtool missing or failing: its figure is null.
"""
import argparse
import json
import pathlib
import re
import shutil
import statistics
import subprocess
import sys


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_tern(args, threads: int, wal: str, work: pathlib.Path) -> dict:
    cmd = [args.bin, "--devices", str(args.devices), "--minutes", str(args.minutes),
           "--threads", str(threads), "--wal", wal, "--dir", str(work / "tern")]
    if args.block_minutes:
        cmd += ["--block-minutes", str(args.block_minutes)]
    log("run " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_promtool(args, series: int, scrapes: int, series_json: pathlib.Path,
                 work: pathlib.Path) -> float:
    out = work / "prom"
    cmd = [args.promtool, "tsdb", "bench", "write", f"--out={out}", f"--metrics={series}",
           f"--scrapes={scrapes}", str(series_json)]
    log("run " + " ".join(cmd))
    r = subprocess.run(cmd, capture_output=True, text=True)
    shutil.rmtree(out, ignore_errors=True)
    m = re.search(r"samples/sec:\s*([0-9.e+]+)", r.stdout + r.stderr)
    if r.returncode != 0 or not m:
        raise RuntimeError(f"promtool failed: {(r.stdout + r.stderr)[-1000:]}")
    return float(m.group(1))


def main() -> int:
    here = pathlib.Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=str(here / "build/bin/tsdb_api_bench"))
    ap.add_argument("--promtool", default="/usr/bin/promtool")
    ap.add_argument("--devices", type=int, default=10000)
    ap.add_argument("--minutes", type=int, default=36)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--wal", default="off,on")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--block-minutes", type=int, default=0,
                    help="tern's block length (default: the store's, 30 minutes)")
    ap.add_argument("--work", default="/tmp/tsdb_api_bench_work")
    args = ap.parse_args()
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    series_json = work / "series.json"
    subprocess.run([args.bin, "--devices", str(args.devices), "--series-json", str(series_json)],
                   check=True)
    series = sum(1 for _ in open(series_json))
    scrapes = args.minutes * 60 // 10
    out: dict = {"bench": "tsdb_api_write_vs_promtool", "devices": args.devices,
                 "block_minutes": args.block_minutes or "default",
                 "series": series, "steps": scrapes, "points": series * scrapes,
                 "runs": args.runs, "statistic": "median", "tern": {}, "runs_raw": {}}
    prom_runs: list = []
    errors = []
    # interleave tern and promtool runs so that load from others hits both alike
    for i in range(args.runs):
        for t in [int(x) for x in args.threads.split(",")]:
            for wal in args.wal.split(","):
                key = f"threads{t}_wal_{wal}"
                res = run_tern(args, t, wal, work)
                if res["points"] != series * scrapes:
                    raise RuntimeError(f"tern wrote {res['points']} points")
                out["runs_raw"].setdefault(key, []).append(res["points_per_s"])
        try:
            prom_runs.append(run_promtool(args, series, scrapes, series_json, work))
        except (RuntimeError, OSError) as e:
            errors.append(str(e))
    out["runs_raw"]["promtool"] = prom_runs
    prom = statistics.median(prom_runs) if prom_runs else None
    out["promtool_samples_per_s"] = prom
    for key, vals in out["runs_raw"].items():
        if key == "promtool":
            continue
        med = statistics.median(vals)
        out["tern"][key] = {"points_per_s": med,
                            "ratio_vs_promtool": round(med / prom, 3) if prom else None}
    if errors:
        out["errors"] = errors
    shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

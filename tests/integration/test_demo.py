"""test_demo: `scripts/demo` (what `make demo` runs) against this build's programs.

The demo runs with TERN_BIN_DIR pointing at this build, a data directory and free ports of the
test's own, and stops by itself (TERN_DEMO_SECONDS) or on a Ctrl-C. Checked:
- the answers it prints hold stored points: the raw series of one simulated car, the fleet-wide
  count, an InfluxDB line-protocol write read back;
- the simulator's summary it prints: the fleet was connected and acknowledged samples;
- after it stops, the `tern query` lines it printed work as printed and find the points;
- no process of the demo outlives it (a Ctrl-C, sent to its process group as a terminal does,
  included).
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import tern_harness as th

DEMO = th.SOURCE_DIR / "scripts" / "demo"


def demo_env(data: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.update({"TERN_BIN_DIR": str(th.BIN_DIR), "TERN_DEMO_DATA": str(data),
                "TERN_DEMO_PORT": str(th.free_port()), "TERN_DEMO_HTTP_PORT": str(th.free_port())})
    env.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
    env.update(extra)
    return env


def answers(out: str) -> dict[str, str]:
    """Each command the demo printed and ran ('  curl ...' then '  -> ANSWER'), by its URL."""
    lines = out.splitlines()
    found = {}
    for i, line in enumerate(lines[:-1]):
        m = re.match(r"\s+curl .*'(http://[^']+)'", line)
        if m and lines[i + 1].lstrip().startswith("-> "):
            found[m.group(1)] = lines[i + 1].split("-> ", 1)[1]
    return found


def demo_processes(data: Path, env: dict) -> list[str]:
    """Command lines of live processes that belong to this demo run."""
    marks = (str(data), f"127.0.0.1:{env['TERN_DEMO_PORT']}")
    left = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if any(m in cmd for m in marks) and "pytest" not in cmd:
            left.append(f"{pid}: {cmd}")
    return left


def check_stopped_cleanly(out: str, data: Path, env: dict):
    summary = re.search(r"tern-sim's summary:\n\s+(\{.*\})", out)
    assert summary, out[-3000:]
    s = json.loads(summary.group(1))
    assert s["acked"] > 0 and s["acked"] <= s["published"] and s["conn_errors"] == 0
    assert s["interrupted"] is True  # stopped by the demo, not by its own end
    assert "tern serve has closed the store" in out, (data / "tern-serve.log").read_text()[-3000:]
    assert demo_processes(data, env) == []


def test_demo_runs_the_fleet_and_answers(tmp_path):
    data = tmp_path / "demo-data"
    env = demo_env(data, TERN_DEMO_SECONDS="10")  # 5 s to warm up, 5 s more
    p = subprocess.run([str(DEMO)], env=env, cwd=th.SOURCE_DIR, capture_output=True,
                       timeout=120)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, out[-4000:]
    assert "tern-sim" in out and "connected" in out  # the live progress line
    found = answers(out)
    api = f"http://127.0.0.1:{env['TERN_DEMO_HTTP_PORT']}"

    raw = json.loads(found[f"{api}/api/v1/query?device=car000042&metric=soc&start=now-5m"
                           "&end=now&format=series"])
    (series,) = raw["series"]
    assert series["device"] == "car000042" and series["metric"] == "soc"
    assert len(series["values"]) >= 1 and all(len(v) == 2 for v in series["values"])

    fleet = json.loads(found[f"{api}/api/v1/query?metric=speed&start=now-5m&end=now"
                             "&agg=count,avg,max&group_by=*"])
    (row,) = fleet["rows"]
    # 1,000 cars spread over 10 s: about half have reported after 5 s, each sample once
    assert 100 <= row["count"] <= 1000 and row["max"] >= row["avg"]

    last = json.loads(found[f"{api}/api/v1/last?device=car9999"])
    assert [(r["metric"], r["value"]) for r in last["rows"]] == [("ev_soc", 12.5)]

    check_stopped_cleanly(out, data, env)
    # the CLI lines work as printed now that tern serve has closed the store
    cli = [ln.strip() for ln in out.splitlines()
           if ln.strip().startswith(str(th.BIN_DIR / "tern") + " query")]
    assert len(cli) == 3, out[-3000:]
    for line in cli:
        q = subprocess.run(line, shell=True, cwd=th.SOURCE_DIR, capture_output=True, timeout=60)
        assert q.returncode == 0, (line, q.stderr.decode())
        rows = [json.loads(r) for r in q.stdout.decode().splitlines()]
        assert rows, line
    # the 20 metrics of the EV profile, newest of each, as the demo's own CLI run showed
    q = subprocess.run(cli[0], shell=True, cwd=th.SOURCE_DIR, capture_output=True, timeout=60)
    assert len(q.stdout.decode().splitlines()) == 20


def test_demo_ctrl_c_stops_everything(tmp_path):
    data = tmp_path / "demo-data"
    env = demo_env(data, TERN_DEMO_DEVICES="200")
    log = tmp_path / "demo.out"
    with open(log, "wb") as f:
        # a terminal's Ctrl-C: SIGINT to the whole foreground process group
        p = subprocess.Popen([str(DEMO)], env=env, cwd=th.SOURCE_DIR, stdout=f,
                             stderr=subprocess.STDOUT, start_new_session=True,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        deadline = time.monotonic() + 60
        while b"press Ctrl-C" not in log.read_bytes():
            assert p.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        os.killpg(p.pid, signal.SIGINT)
        status = p.wait(timeout=60)
    out = log.read_text()
    assert status == 130, out[-3000:]
    check_stopped_cleanly(out, data, env)
    assert re.search(r'-> \{"device":"car000042","metric":"\w+"', out), out[-3000:]

"""test_sim: `tern-sim` against a real `tern broker` (and `tern serve` for --verify).

A paho subscriber on fleet/+/telemetry (QoS 1, subscribed before the simulator starts) sees
what the broker accepted; the simulator's ack log (docs/sim.md) says what the broker
acknowledged. Each test checks one promise of the simulator:
- summary counts are consistent (generated = acked = ack log totals, points = samples x metrics);
- every acknowledged (device, seq) reaches the subscriber, decodes (JSON or binary) with the
  right device id, ts = the schedule's ts, and first deliveries in seq order per device;
- tunnels: reconnects > 0 and still every acknowledged seq arrives;
- duplicates: the subscriber sees the duplicated (device, seq) pairs more than once;
- clock drift: payload ts and ack-log ts are the drifted stamps; --verify asks for that range;
- out-of-order: late re-sends arrive twice, backfill arrives shuffled, the store keeps one;
- rush hour: X times the samples during the rush, ts on the rush-hour schedule;
- storm: every device drops and reconnects at once (jittered backoff), nothing is lost;
- power loss: every generated sample is acked, lost or left over; lost samples never sent
  never arrive, acknowledged ones all do (and, against `tern serve`, are stored once);
- --verify: against a fake query API (a tiny HTTP server answering counts from what the
  subscriber saw, honestly or with a fault injected) and against `tern serve` when it exists;
- SIGINT ends the run cleanly with a summary;
- end-to-end latency (--api): against `tern serve`, probed samples become queryable and their
  publish -> queryable percentiles are numbers, with and without --verify, merged over
  --processes; null without --api.
"""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest

import tern_harness as th
from broker_fixture import Paho, make_broker  # noqa: F401

EV_METRICS = 20


def sim_argv(broker_port: int, *extra: str) -> list[str]:
    return [th.tern_bin("tern-sim"), "--broker", f"127.0.0.1:{broker_port}", "--quiet", *extra]


def run_sim(broker_port: int, *extra: str, timeout_s: float = 50.0):
    p = th.run(sim_argv(broker_port, *extra), timeout_s=timeout_s)
    lines = [ln for ln in p.stdout.decode().splitlines() if ln.strip()]
    assert lines, f"no summary (status {p.returncode}):\n{p.stderr.decode()[-3000:]}"
    return p, [json.loads(ln) for ln in lines]


def true_ts(header: dict, idx: int, seq: int) -> int:
    """The schedule's event time of sample seq of device idx (docs/sim.md), rush hours too."""
    start, iv, n = header["start_ms"], header["interval_ms"], header["devices"]
    x, every, rush_for = header["rush_x"], header["rush_every_ms"], header["rush_for_ms"]
    if x > 1:
        n_rush = rush_for // iv * x
        k, r = divmod(seq - 1, n_rush + (every - rush_for) // iv)
        base = start + k * every
        if r < n_rush:
            return base + (idx - 1) * iv // (x * n) + r * iv // x
        return base + rush_for + (idx - 1) * iv // n + (r - n_rush) * iv
    return start + (idx - 1) * iv // n + (seq - 1) * iv


def stamp(header: dict, idx: int, seq: int) -> int:
    """The ts device idx writes into sample seq (docs/sim.md: schedule ts plus clock drift)."""
    start = header["start_ms"]
    ts = true_ts(header, idx, seq)
    rate = header["drift"].get(f"dev{idx:06d}", 0.0)
    x = rate * (ts - start) / 3600000.0
    return ts + int(x + 0.5 if x >= 0 else x - 0.5)


def read_ack_log(path):
    lines = [json.loads(ln) for ln in path.read_text().splitlines()]
    header, devices = lines[0], lines[1:]
    assert header["tern_sim_ack_log"] == 1
    header["drift"] = {d["device"]: d["drift_ms_per_hour"] for d in devices}
    acked = {}
    for d in devices:
        seqs = set()
        idx = int(d["device"][3:])
        assert abs(d["drift_ms_per_hour"]) <= header["clock_drift"]
        for lo, hi, ts_lo, ts_hi in d["acked_ranges"]:
            assert lo <= hi and ts_lo <= ts_hi
            assert abs(ts_lo - stamp(header, idx, lo)) <= 1
            assert abs(ts_hi - stamp(header, idx, hi)) <= 1
            if header["clock_drift"] == 0 and header["rush_x"] == 1:
                assert ts_hi - ts_lo == (hi - lo) * header["interval_ms"]
            seqs.update(range(lo, hi + 1))
        assert len(seqs) == d["acked"]
        acked[d["device"]] = seqs
    return header, devices, acked


def varint(b: bytes, i: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def decode(payload: bytes) -> tuple[int, int, int]:
    """(ts, seq, n_metrics) of a JSON or binary sample."""
    if payload[0] == 0xB1:
        assert payload[1] == 0  # one sample, no raw values needed for profile values
        _, i = varint(payload, 2)  # schema id
        z, i = varint(payload, i)
        ts = (z >> 1) ^ -(z & 1)
        seq, i = varint(payload, i)
        return ts, seq, -1
    obj = json.loads(payload)
    return obj["ts"], obj["seq"], len(obj["m"])


class Collector:
    """Subscribes to fleet/+/telemetry and decodes what arrives."""

    def __init__(self, port: int):
        self.c = Paho(port, client_id="sim-test-sub")
        self.c.subscribe("fleet/+/telemetry", qos=1)
        self.seen: dict[str, list[tuple[int, int, int]]] = {}

    def drain(self, want: dict[str, set[int]] | None = None, timeout_s: float = 20.0):
        deadline = time.monotonic() + timeout_s
        while True:
            for m in self.c.take():
                parts = m.topic.split("/")
                assert parts[0] == "fleet" and parts[2] == "telemetry", m.topic
                self.seen.setdefault(parts[1], []).append(decode(m.payload))
            if want is None or all(want[d] <= {s for _, s, _ in self.seen.get(d, [])}
                                   for d in want):
                return
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)

    def seqs(self, dev: str) -> set[int]:
        return {s for _, s, _ in self.seen.get(dev, [])}

    def close(self):
        self.c.close()


def check_delivery(col: Collector, header: dict, acked: dict[str, set[int]],
                   ordered: bool = True):
    """Every acked seq arrived, with the schedule's ts; first deliveries in seq order (unless
    the run shuffled them: ordered=False)."""
    n = header["devices"]
    for idx in range(1, n + 1):
        dev = f"dev{idx:06d}"
        assert dev in acked
        missing = acked[dev] - col.seqs(dev)
        assert not missing, f"{dev}: acknowledged but never delivered: {sorted(missing)[:10]}"
        first: list[int] = []
        seen: set[int] = set()
        for ts, seq, n_metrics in col.seen[dev]:
            assert abs(ts - stamp(header, idx, seq)) <= 1, (dev, seq, ts)
            assert n_metrics in (-1, EV_METRICS)
            if seq not in seen:
                seen.add(seq)
                first.append(seq)
        if ordered:
            assert first == sorted(first), f"{dev}: seqs out of order: {first[:40]}"


def test_qos1_counts_and_delivery(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    p, (summary,) = run_sim(broker.port, "--devices", "50", "--duration", "4s", "--accel", "60",
                            "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert summary["devices"] == 50 and summary["metrics"] == EV_METRICS
    # 4 s at accel 60 is 240 s of fleet time: 24 or 25 samples a device
    assert 50 * 24 <= summary["generated"] <= 50 * 25
    assert summary["acked"] == summary["generated"] == summary["published"]
    assert summary["acked_points"] == summary["acked"] * EV_METRICS
    assert summary["unacked"] == 0 and summary["reconnects"] == 0
    assert 0 < summary["ack_p50_ms"] <= summary["ack_p99_ms"]
    # no --api: nothing to measure end to end
    assert summary["e2e_samples"] == 0
    assert summary["e2e_p50_ms"] is None and summary["e2e_p99_ms"] is None
    header, devices, acked = read_ack_log(ack_log)
    assert header["devices"] == 50 and len(header["metrics"]) == EV_METRICS
    assert sum(len(s) for s in acked.values()) == summary["acked"]
    col.drain(acked)
    check_delivery(col, header, acked)
    col.close()


def test_binary_format_accepted(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    p, (summary,) = run_sim(broker.port, "--devices", "20", "--duration", "2s", "--accel", "60",
                            "--format", "binary", "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert summary["acked"] == summary["generated"] > 0
    header, _, acked = read_ack_log(ack_log)
    col.drain(acked)
    check_delivery(col, header, acked)
    assert all(n == -1 for v in col.seen.values() for _, _, n in v)  # every payload was binary
    col.close()


def test_tunnels_reconnect_and_backfill(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    p, (summary,) = run_sim(broker.port, "--devices", "50", "--duration", "5s", "--accel", "60",
                            "--tunnel-rate", "0.05", "--tunnel-min", "10s", "--tunnel-max", "60s",
                            "--backoff-base", "20ms", "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert summary["tunnels"] > 0 and summary["reconnects"] > 0
    # everything generated was buffered while offline and backfilled: nothing left, nothing lost
    assert summary["dropped_offline"] == 0 and summary["unacked"] == 0
    assert summary["acked"] == summary["generated"]
    header, _, acked = read_ack_log(ack_log)
    col.drain(acked)
    check_delivery(col, header, acked)
    col.close()


def test_duplicates_are_resent(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    p, (summary,) = run_sim(broker.port, "--devices", "30", "--duration", "3s", "--accel", "60",
                            "--duplicates", "0.2", "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert summary["duplicates"] > 0
    assert summary["published"] == summary["acked"] + summary["duplicates"]
    header, devices, acked = read_ack_log(ack_log)
    dups = {(d["device"], s) for d in devices for lo, hi, _, _ in d["duplicated_ranges"]
            for s in range(lo, hi + 1)}
    assert dups and len(dups) <= summary["duplicates"]
    col.drain(acked)
    time.sleep(0.5)
    col.drain()
    check_delivery(col, header, acked)
    for dev, seq in dups:
        assert seq in acked[dev]
        n = sum(1 for _, s, _ in col.seen[dev] if s == seq)
        assert n >= 2, f"{dev} seq {seq}: duplicate sent but delivered {n} time(s)"
    col.close()


def ranges(d: dict, key: str) -> set[int]:
    return {s for lo, hi, _, _ in d[key] for s in range(lo, hi + 1)}


def test_power_loss_loses_buffer_and_inflight(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    # tunnels fill offline buffers, so a power loss has unsent samples to lose
    p, (summary,) = run_sim(broker.port, "--devices", "40", "--duration", "4s", "--accel", "60",
                            "--power-loss", "0.05", "--power-off", "20s",
                            "--tunnel-rate", "0.05", "--tunnel-min", "30s", "--tunnel-max", "60s",
                            "--backoff-base", "20ms", "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert summary["power_losses"] > 0 and summary["lost_power"] > 0
    assert summary["unacked"] == 0
    # every generated sample is acknowledged, lost to a power loss, or dropped from a full buffer
    assert (summary["acked"] + summary["lost_power"] + summary["dropped_offline"]
            == summary["generated"])
    header, devices, acked = read_ack_log(ack_log)
    lost_total = 0
    never_sent: dict[str, set[int]] = {}
    for d in devices:
        lost = ranges(d, "lost_ranges")
        lost_total += len(lost)
        assert not lost & acked[d["device"]], d["device"]
        never_sent[d["device"]] = lost - ranges(d, "unacked_ranges")
    assert lost_total == summary["lost_power"]
    assert any(never_sent.values())
    col.drain(acked)
    time.sleep(0.5)
    col.drain()
    check_delivery(col, header, acked)
    for dev, seqs in never_sent.items():
        assert not seqs & col.seqs(dev), f"{dev}: lost before sending but delivered"
    col.close()


def test_clock_drift_stamps(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    # 36 s/hour at accel 60 for 4 s (240 s of fleet time): up to 2.4 s of drift
    p, (summary,) = run_sim(broker.port, "--devices", "20", "--duration", "4s", "--accel", "60",
                            "--clock-drift", "36000", "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert summary["acked"] == summary["generated"] > 0
    assert 0 < summary["max_drift_ms"] <= 2400
    header, devices, acked = read_ack_log(ack_log)
    assert header["clock_drift"] == 36000
    rates = [d["drift_ms_per_hour"] for d in devices]
    assert min(rates) < 0 < max(rates)  # random sign
    col.drain(acked)
    check_delivery(col, header, acked)  # payload ts = drifted stamp
    # the stamps really drift: some device is more than an interval's rounding off schedule
    off = max(abs(ts - true_ts(header, int(dev[3:]), seq))
              for dev, v in col.seen.items() for ts, seq, _ in v)
    assert off == summary["max_drift_ms"] or abs(off - summary["max_drift_ms"]) <= 1
    col.close()


def test_rush_hour_bursts(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    # 240 s of fleet time: 4 periods of 60 s, each 6 samples in its 20 s rush (3x) + 4 after
    p, (summary,) = run_sim(broker.port, "--devices", "20", "--duration", "4s", "--accel", "60",
                            "--rush-hour", "3", "--rush-every", "60s", "--rush-for", "20s",
                            "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert 20 * 40 <= summary["generated"] <= 20 * 41  # without the rush: 24 or 25 a device
    assert 20 * 24 <= summary["rush_generated"] <= 20 * 25
    assert summary["acked"] == summary["generated"] and summary["unacked"] == 0
    header, _, acked = read_ack_log(ack_log)
    assert (header["rush_x"], header["rush_every_ms"], header["rush_for_ms"]) == (3, 60000, 20000)
    col.drain(acked)
    check_delivery(col, header, acked)  # ts follow the rush-hour schedule
    ts1 = sorted(ts for ts, _, _ in col.seen["dev000001"])
    gaps = [b - a for a, b in zip(ts1, ts1[1:])]
    # per period: 6 rush samples 3333-3334 ms apart (the 6th to the first calm one too), then 4
    # calm ones 10 s apart (the 4th to the next rush too)
    assert set(gaps) <= {3333, 3334, 10000}
    assert sum(1 for g in gaps if g < 10000) == 4 * 6
    assert gaps.count(10000) in (4 * 4 - 1, 4 * 4)
    col.close()


def test_rush_hour_rejects_bad_period(make_broker):  # noqa: F811
    broker = make_broker()
    p = th.run(sim_argv(broker.port, "--devices", "2", "--duration", "1s", "--rush-hour", "3",
                        "--rush-every", "60s", "--rush-for", "15s"), timeout_s=20)
    assert p.returncode == 2 and not p.stdout.strip()


def test_storm_reconnects_everyone(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    p, (summary,) = run_sim(broker.port, "--devices", "60", "--duration", "4s", "--accel", "60",
                            "--storm-at", "2s", "--backoff-base", "300ms",
                            "--ack-log", str(ack_log))
    assert p.returncode == 0
    # every device was connected at 2 s: all dropped at once, all came back
    assert summary["storm_drops"] == 60
    assert summary["reconnects"] >= 60
    assert summary["acked"] == summary["generated"] and summary["unacked"] == 0
    header, _, acked = read_ack_log(ack_log)
    col.drain(acked)
    check_delivery(col, header, acked)
    col.close()


def test_storm_after_the_run_is_refused(make_broker):  # noqa: F811
    broker = make_broker()
    p = th.run(sim_argv(broker.port, "--devices", "2", "--duration", "1s", "--storm-at", "2s"),
               timeout_s=20)
    assert p.returncode == 2 and not p.stdout.strip()


def test_out_of_order_resends_and_shuffles(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    ack_log = tmp_path / "acks.jsonl"
    # tunnels build backlogs, which are backfilled in a shuffled order
    p, (summary,) = run_sim(broker.port, "--devices", "30", "--duration", "4s", "--accel", "60",
                            "--out-of-order", "0.3", "--tunnel-rate", "0.05",
                            "--tunnel-min", "30s", "--tunnel-max", "60s", "--backoff-base", "20ms",
                            "--ack-log", str(ack_log))
    assert p.returncode == 0
    assert summary["reordered"] > 0 and summary["late_resends"] > 0
    assert summary["unacked"] == 0 and summary["acked"] == summary["generated"]
    assert summary["late_resends"] <= summary["duplicates"]
    assert summary["published"] == summary["acked"] + summary["resent"] + summary["duplicates"]
    header, devices, acked = read_ack_log(ack_log)
    dups = {(d["device"], s) for d in devices for s in ranges(d, "duplicated_ranges")}
    col.drain(acked)
    time.sleep(0.5)
    col.drain()
    check_delivery(col, header, acked, ordered=False)
    shuffled = 0
    for dev, v in col.seen.items():
        first: list[int] = []
        for _, seq, _ in v:
            if seq not in first:
                first.append(seq)
        shuffled += first != sorted(first)
    assert shuffled > 0, "no device's samples arrived out of order"
    for dev, seq in dups:
        assert seq in acked[dev]
        assert sum(1 for _, s, _ in col.seen[dev] if s == seq) >= 2, (dev, seq)
    col.close()


def test_sigint_prints_summary(make_broker, tmp_path):  # noqa: F811
    broker = make_broker()
    proc = subprocess.Popen(sim_argv(broker.port, "--devices", "10", "--duration", "60s",
                                     "--accel", "60"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["interrupted"] is True
    assert 0 < summary["acked"] <= summary["generated"] < 10 * 60


# ---- --verify ------------------------------------------------------------------------------

class FakeApi:
    """Answers /api/v1/query?...&agg=count&format=series from what the subscriber stored.
    fault: None (honest), "dup" (one device's counts doubled), "lose" (one device half).
    Also answers the latency probe's /api/v1/last?device=D (404 until D has arrived), over
    HTTP/1.0 (a connection per request: the probe's non-keep-alive path)."""

    def __init__(self, col: Collector, metrics: list[str], fault: str | None = None):
        self.col, self.metrics, self.fault = col, metrics, fault
        self.queries = 0
        self.last_queries = 0
        self.lock = threading.Lock()  # the probe and the verifier ask at the same time
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                u = urlparse(self.path)
                q = {k: v[0] for k, v in parse_qs(u.query).items()}
                if u.path == "/api/v1/last" and "device" in q:
                    status, body = api.last(q["device"])
                    data = json.dumps(body).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                ok = (u.path == "/api/v1/query" and q.get("metric") == "*"
                      and q.get("agg") == "count" and q.get("format") == "series"
                      and q.get("tier") == "hot")
                if not ok:
                    self.send_response(400)
                    self.end_headers()
                    return
                with api.lock:
                    api.queries += 1
                    body = json.dumps(api.answer(q["device"], int(q["start"]), int(q["end"])))
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *a):
                pass

        self.srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def answer(self, dev: str, start: int, end: int) -> dict:
        self.col.drain()
        stored = {ts for ts, _, _ in self.col.seen.get(dev, []) if start <= ts < end}  # dedup
        n = len(stored)
        if self.fault == "dup" and dev == "dev000003":
            n *= 2
        if self.fault == "lose" and dev == "dev000003":
            n //= 2
        series = [{"device": dev, "metric": m, "columns": ["ts", "count"], "values": [[start, n]]}
                  for m in self.metrics] if n else []
        return {"series": series, "count": len(series), "tier": "hot"}

    def last(self, dev: str) -> tuple[int, dict]:
        with self.lock:
            self.last_queries += 1
            self.col.drain()
            seen = self.col.seen.get(dev)
            if not seen:
                return 404, {"error": f"no device '{dev}'"}
            ts = max(t for t, _, _ in seen)
            rows = [{"device": dev, "metric": m, "ts": ts, "value": 1} for m in self.metrics]
            return 200, {"rows": rows, "count": len(rows), "tier": "hot"}

    def close(self):
        self.srv.shutdown()


def test_verify_queries_drifted_range(make_broker):  # noqa: F811
    """With clock drift the store keys points by the drifted stamps: the verifier must ask for
    the drifted range (a device running fast stamps its last samples past the true schedule)."""
    broker = make_broker()
    col = Collector(broker.port)
    api = FakeApi(col, EV_NAMES)
    p, (summary, verdict) = run_sim(broker.port, "--devices", "10", "--duration", "3s",
                                    "--accel", "600", "--clock-drift", "360000", "--verify",
                                    "--api", f"127.0.0.1:{api.port}", "--verify-timeout", "3s")
    assert summary["max_drift_ms"] > 10000  # more than an interval
    assert p.returncode == 0, verdict
    assert verdict["verify"] == "ok" and verdict["stored"] == verdict["acked_points"] > 0
    api.close()
    col.close()


EV_NAMES = ["soc", "speed", "current", "power", "voltage", "cell_temp", "pack_temp", "motor_temp",
            "cabin_temp", "ambient_temp", "lat", "lon", "heading", "odometer", "tire_pressure",
            "throttle", "charge_power", "uptime_s", "trip_count", "msg_seq"]


@pytest.mark.parametrize("fault", [None, "dup", "lose"])
def test_verify_with_fake_api(make_broker, tmp_path, fault):  # noqa: F811
    broker = make_broker()
    col = Collector(broker.port)
    from_profile = ["soc", "speed", "current", "power", "voltage", "cell_temp", "pack_temp",
                    "motor_temp", "cabin_temp", "ambient_temp", "lat", "lon", "heading",
                    "odometer", "tire_pressure", "throttle", "charge_power", "uptime_s",
                    "trip_count", "msg_seq"]
    api = FakeApi(col, from_profile, fault)
    p, lines = run_sim(broker.port, "--devices", "10", "--duration", "2s", "--accel", "60",
                       "--duplicates", "0.2", "--verify", "--api", f"127.0.0.1:{api.port}",
                       "--verify-timeout", "3s")
    summary, verdict = lines
    assert api.queries >= 10
    assert verdict["acked"] == summary["acked"]
    # the probe measured against the fake API too (a new connection per request)
    assert api.last_queries > 0
    check_e2e(verdict)
    assert verdict["acked_points"] == summary["acked"] * EV_METRICS
    if fault is None:
        assert p.returncode == 0, verdict
        assert verdict["verify"] == "ok" and verdict["lost"] == 0 and verdict["duplicated"] == 0
        assert verdict["stored"] == verdict["acked_points"]
    else:
        assert p.returncode == 1, verdict
        assert verdict["verify"] == "failed"
        assert (verdict["duplicated"] if fault == "dup" else verdict["lost"]) > 0
    api.close()
    col.close()


def _has_serve() -> bool:
    try:
        out = th.run([th.tern_bin(), "help"], timeout_s=10)
    except FileNotFoundError:
        return False
    return b"serve" in out.stdout + out.stderr


@pytest.mark.skipif(not _has_serve(), reason="`tern serve` is not built")
def test_verify_against_tern_serve(start, tmp_path):
    http_port = th.free_port()
    data = tmp_path / "serve"
    data.mkdir()
    serve = start("tern-serve", lambda port: [
        th.tern_bin(), "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
        "--http", f"127.0.0.1:{http_port}", "--allow-anonymous"])
    th.wait_for_port(http_port)
    p, (summary, verdict) = run_sim(serve.port, "--devices", "50", "--duration", "4s",
                                    "--accel", "60", "--tunnel-rate", "0.03",
                                    "--duplicates", "0.1", "--out-of-order", "0.1",
                                    "--clock-drift", "3600", "--verify", "--api",
                                    f"127.0.0.1:{http_port}", "--verify-timeout", "20s")
    assert p.returncode == 0, (summary, verdict)
    assert summary["late_resends"] > 0 and summary["max_drift_ms"] > 0
    assert verdict["verify"] == "ok" and verdict["lost"] == 0 and verdict["duplicated"] == 0
    assert verdict["stored"] == summary["acked_points"] > 0


@pytest.mark.skipif(not _has_serve(), reason="`tern serve` is not built")
def test_verify_power_loss_against_tern_serve(start, tmp_path):
    """Acknowledged points survive the device's power loss: all stored, once."""
    http_port = th.free_port()
    data = tmp_path / "serve"
    data.mkdir()
    serve = start("tern-serve", lambda port: [
        th.tern_bin(), "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
        "--http", f"127.0.0.1:{http_port}", "--allow-anonymous"])
    th.wait_for_port(http_port)
    p, (summary, verdict) = run_sim(serve.port, "--devices", "40", "--duration", "4s",
                                    "--accel", "60", "--power-loss", "0.05",
                                    "--tunnel-rate", "0.03", "--verify", "--api",
                                    f"127.0.0.1:{http_port}", "--verify-timeout", "20s")
    assert summary["power_losses"] > 0 and summary["lost_power"] > 0
    assert p.returncode == 0, (summary, verdict)
    assert verdict["verify"] == "ok" and verdict["lost"] == 0 and verdict["duplicated"] == 0
    assert verdict["acked_points"] == summary["acked_points"] > 0
    assert verdict["stored"] <= verdict["acked_points"] + verdict["uncertain"]
    assert verdict["stored"] >= verdict["acked_points"]


@pytest.mark.skipif(not _has_serve(), reason="`tern serve` is not built")
def test_verify_rush_hour_and_storm_against_tern_serve(start, tmp_path):
    """3x rush-hour bursts and a reconnect storm of every device, through tern serve: every
    acknowledged point stored once with the value sent."""
    http_port = th.free_port()
    data = tmp_path / "serve"
    data.mkdir()
    serve = start("tern-serve", lambda port: [
        th.tern_bin(), "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
        "--http", f"127.0.0.1:{http_port}", "--allow-anonymous"])
    th.wait_for_port(http_port)
    p, (summary, verdict) = run_sim(serve.port, "--devices", "40", "--duration", "4s",
                                    "--accel", "60", "--rush-hour", "3", "--rush-every", "60s",
                                    "--rush-for", "20s", "--storm-at", "2s",
                                    "--backoff-base", "300ms", "--verify", "--api",
                                    f"127.0.0.1:{http_port}", "--verify-timeout", "20s")
    assert p.returncode == 0, (summary, verdict)
    assert summary["rush_generated"] > 0 and summary["storm_drops"] == 40
    assert verdict["verify"] == "ok" and verdict["lost"] == 0 and verdict["duplicated"] == 0
    assert verdict["stored"] == summary["acked_points"] > 0


def check_e2e(line: dict):
    """A run with --api: the probe saw samples arrive; percentiles are positive numbers."""
    assert line["e2e_samples"] > 0, line
    p50, p99 = line["e2e_p50_ms"], line["e2e_p99_ms"]
    assert isinstance(p50, (int, float)) and isinstance(p99, (int, float)), line
    assert 0 < p50 <= p99, line


@pytest.mark.skipif(not _has_serve(), reason="`tern serve` is not built")
def test_e2e_latency_against_tern_serve(start, tmp_path):
    """--api makes a probe poll /api/v1/last for sampled publishes until they are queryable:
    e2e_* are numbers in the summary and the verdict (the same), also without --verify; without
    --api they stay null."""
    http_port = th.free_port()
    data = tmp_path / "serve"
    data.mkdir()
    serve = start("tern-serve", lambda port: [
        th.tern_bin(), "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
        "--http", f"127.0.0.1:{http_port}", "--allow-anonymous"])
    th.wait_for_port(http_port)
    api = f"127.0.0.1:{http_port}"
    p, (summary, verdict) = run_sim(serve.port, "--devices", "30", "--duration", "3s",
                                    "--accel", "60", "--verify", "--api", api,
                                    "--verify-timeout", "20s")
    assert p.returncode == 0, (summary, verdict)
    assert verdict["verify"] == "ok"
    check_e2e(verdict)
    for k in ("e2e_samples", "e2e_timeouts", "e2e_p50_ms", "e2e_p99_ms"):
        assert summary[k] == verdict[k], k
    # a probe measures one sample at a time: never more than the samples published
    assert summary["e2e_samples"] + summary["e2e_timeouts"] <= summary["published"]
    # --api alone: the summary carries the latency, no verdict line
    p, lines = run_sim(serve.port, "--devices", "10", "--duration", "2s", "--accel", "60",
                       "--api", api, "--client-prefix", "lat")
    assert p.returncode == 0 and len(lines) == 1, lines
    check_e2e(lines[0])
    # no --api: null
    p, lines = run_sim(serve.port, "--devices", "10", "--duration", "1s", "--accel", "60",
                       "--client-prefix", "nolat")
    assert p.returncode == 0 and len(lines) == 1, lines
    assert lines[0]["e2e_samples"] == 0
    assert lines[0]["e2e_p50_ms"] is None and lines[0]["e2e_p99_ms"] is None


# ---- several processes ---------------------------------------------------------------------

def stored_counts(http_port: int, metric: str, start: int, end: int) -> dict[str, int]:
    """Points of one metric per device in [start, end), fleet-wide (one query, no device)."""
    url = (f"http://127.0.0.1:{http_port}/api/v1/query?metric={metric}&start={start}&end={end}"
           f"&agg=count&tier=hot")
    with urllib.request.urlopen(url, timeout=30) as r:
        rows = json.loads(r.read())["rows"]
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["device"]] = counts.get(row["device"], 0) + row["count"]
    return counts


@pytest.mark.skipif(not _has_serve(), reason="`tern serve` is not built")
def test_processes_verify_against_tern_serve(start, tmp_path):
    """--processes 2: two workers, disjoint slices of the same device ids, one summary and one
    verdict summed over both, one ack log in device order; the store holds every device's
    acknowledged points once, and no device twice or never."""
    http_port = th.free_port()
    data = tmp_path / "serve"
    data.mkdir()
    serve = start("tern-serve", lambda port: [
        th.tern_bin(), "serve", "--data", str(data), "--listen", f"127.0.0.1:{port}",
        "--http", f"127.0.0.1:{http_port}", "--allow-anonymous"])
    th.wait_for_port(http_port)
    ack_log = tmp_path / "acks.jsonl"
    n = 301  # odd: slices of 150 and 151
    p = th.run([th.tern_bin("tern-sim"), "--broker", f"127.0.0.1:{serve.port}", "--devices",
                str(n), "--duration", "3s", "--accel", "60", "--processes", "2",
                "--tunnel-rate", "0.02", "--backoff-base", "20ms", "--verify",
                "--api", f"127.0.0.1:{http_port}", "--verify-timeout", "20s",
                "--ack-log", str(ack_log)], timeout_s=90)
    out, err = p.stdout.decode(), p.stderr.decode()
    lines = [json.loads(ln) for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 2, (out, err[-3000:])
    summary, verdict = lines
    assert p.returncode == 0, (summary, verdict, err[-3000:])
    assert summary["processes"] == 2 and summary["failed_processes"] == 0
    assert summary["devices"] == n and summary["metrics"] == EV_METRICS
    # 3 s at accel 60 is 180 s of fleet time: 18 or 19 samples a device, all acknowledged
    assert n * 18 <= summary["generated"] <= n * 19
    assert summary["acked"] == summary["generated"] and summary["unacked"] == 0
    assert summary["tunnels"] > 0 and summary["reconnects"] > 0  # both workers misbehave
    assert 0 < summary["ack_p50_ms"] <= summary["ack_p99_ms"]
    # the verdict sums the workers' verdicts: the same accounting as one process
    assert verdict["verify"] == "ok" and verdict["query_errors"] == 0
    assert verdict["acked"] == summary["acked"] and verdict["sent"] == summary["published"]
    assert verdict["acked_points"] == summary["acked_points"] == summary["acked"] * EV_METRICS
    assert verdict["stored"] == verdict["acked_points"]
    assert verdict["lost"] == 0 and verdict["duplicated"] == 0
    # each worker probes its own devices; the parent merges their latency histograms
    check_e2e(summary)
    assert verdict["e2e_samples"] == summary["e2e_samples"]
    # one ack log, header of the whole fleet, every device once, in order
    header, devices, acked = read_ack_log(ack_log)
    assert header["devices"] == n
    assert [d["device"] for d in devices] == [f"dev{i:06d}" for i in range(1, n + 1)]
    assert sum(len(s) for s in acked.values()) == summary["acked"]
    # the device ids across workers are disjoint and complete: the store has each device's
    # acknowledged samples exactly once (a device simulated twice would be stored twice)
    lo = stamp(header, 1, 1)
    hi = max(d["acked_ranges"][-1][3] for d in devices) + 1
    counts = stored_counts(http_port, "soc", lo, hi)
    assert counts == {dev: len(seqs) for dev, seqs in acked.items()}
    # the progress line is one for the fleet: N devices, not a worker's share
    assert f"/{n}" in err and f"/{n // 2} " not in err


def worker_pids(pid: int) -> list[int]:
    path = f"/proc/{pid}/task/{pid}/children"
    try:
        return [int(x) for x in open(path).read().split()]
    except OSError:
        return []


def test_processes_worker_death_is_an_error(mosquitto):
    """A worker killed mid-run: the parent says which one, sums the others, exits 3."""
    proc = subprocess.Popen([th.tern_bin("tern-sim"), "--broker", f"127.0.0.1:{mosquitto.port}",
                             "--devices", "90", "--duration", "4s", "--accel", "60",
                             "--processes", "3", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while len(worker_pids(proc.pid)) < 3:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    victim = worker_pids(proc.pid)[1]
    time.sleep(1)
    os.kill(victim, signal.SIGKILL)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 3, err.decode()[-2000:]
    assert re.search(rf"worker 2 \(devices dev000031\.\.dev000060, pid {victim}\) was killed by "
                     r"signal 9", err.decode()), err.decode()
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["processes"] == 3 and summary["failed_processes"] == 1
    assert summary["devices"] == 60  # the two that reported
    assert summary["acked"] == summary["generated"] > 0
    assert worker_pids(proc.pid) == []


def test_processes_sigint_stops_every_worker(mosquitto):
    proc = subprocess.Popen([th.tern_bin("tern-sim"), "--broker", f"127.0.0.1:{mosquitto.port}",
                             "--devices", "40", "--duration", "60s", "--accel", "60",
                             "--processes", "2", "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 20
    while len(worker_pids(proc.pid)) < 2:
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    workers = worker_pids(proc.pid)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)  # to the parent only: it passes it on
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode()[-2000:]
    summary = json.loads(out.decode().splitlines()[-1])
    assert summary["interrupted"] is True and summary["failed_processes"] == 0
    assert summary["devices"] == 40 and 0 < summary["acked"] <= summary["generated"] < 40 * 60
    for w in workers:
        assert not os.path.exists(f"/proc/{w}") or "zombie" in open(f"/proc/{w}/status").read()


def test_processes_refused_beyond_the_file_limit(make_broker):  # noqa: F811
    broker = make_broker()
    # one process for more devices than its open-file limit allows
    p = th.run(sim_argv(broker.port, "--devices", "9000000", "--duration", "1s",
                        "--processes", "1"), timeout_s=20)
    assert p.returncode == 2 and b"open-file limit" in p.stderr and not p.stdout.strip()
    # more processes than devices
    p = th.run(sim_argv(broker.port, "--devices", "2", "--duration", "1s", "--processes", "3"),
               timeout_s=20)
    assert p.returncode == 2 and not p.stdout.strip()

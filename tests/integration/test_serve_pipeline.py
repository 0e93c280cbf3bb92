"""`tern serve` end to end: devices publish telemetry over MQTT (QoS 1, JSON samples and single
values), the broker appends it to the embedded log, the stream stores it in the time-series
store, and the HTTP API returns it. Checked: every acknowledged point stored exactly once (also
across kill -9 in the middle of the load, and with re-sent duplicates), bad payloads on the
dead-letter topic with their reason, points later than the watermark on the `late` topic."""
import json
import socket
import threading
import time
import urllib.request

import tern_harness as th
from broker_fixture import PUBACK, Closed, Raw, publish_packet

# recent event times: the store drops blocks older than its retention (7 days) as it cuts them
T0 = (int(time.time() * 1000) - 6 * 3600_000) // 60_000 * 60_000


def serve(start, data, http_port, partitions=4):
    return start("tern-serve", lambda p: [
        th.tern_bin(), "serve", "--data", str(data), "--listen", f"127.0.0.1:{p}",
        "--http", f"127.0.0.1:{http_port}", "--allow-anonymous",
        "--set", f"log.partitions={partitions}"])


def get_json(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
        return json.loads(r.read())


def stored_counts(http_port, devices, metrics):
    """(device, metric) -> number of stored points, from the raw tier."""
    out = {}
    for d in devices:
        body = get_json(http_port, f"/api/v1/query?device={d}&start=0&end={T0 + 10**9}"
                                   f"&agg=count&tier=hot&format=series")
        for s in body["series"]:
            out[(d, s["metric"])] = sum(v[1] for v in s["values"])
    for d in devices:
        for m in metrics:
            out.setdefault((d, m), 0)
    return out


def wait_until(pred, what, timeout_s=60):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        ok, last = pred()
        if ok:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def sample(seq, ts, soc, odo):
    return json.dumps({"ts": ts, "seq": seq, "m": {"soc": soc, "odo": odo}}).encode()


def publish_load(port, devices, n, acked, stop=None, duplicate_every=0, t0=T0):
    """Each device publishes n samples (QoS 1, 8 in flight), recording the acknowledged ones."""
    def run(name):
        got = acked.setdefault(name, [])
        try:
            r = Raw(port, 4)
            r.connect(name)
            pid = 0
            i = 0
            while i < n and not (stop and stop.is_set()):
                batch = []
                for _ in range(min(8, n - i)):
                    i += 1
                    pid = pid % 65535 + 1
                    ts = t0 + i * 10_000
                    r.send(publish_packet(f"fleet/{name}/telemetry",
                                          sample(i, ts, round(50 + i % 40 / 10, 1), 1000 + i),
                                          qos=1, packet_id=pid))
                    batch.append((pid, ts))
                    if duplicate_every and i % duplicate_every == 0:
                        pid = pid % 65535 + 1  # a re-send of the same sample
                        r.send(publish_packet(f"fleet/{name}/telemetry",
                                              sample(i, ts, round(50 + i % 40 / 10, 1), 1000 + i),
                                              qos=1, packet_id=pid))
                        batch.append((pid, None))
                for want, ts in batch:
                    p = r.expect(PUBACK, timeout=20)
                    assert p.packet_id == want
                    if ts is not None:
                        got.append(ts)
            r.close()
        except (Closed, ConnectionError, socket.timeout, TimeoutError, OSError):
            pass  # the server died under us (the kill -9 test)

    threads = [threading.Thread(target=run, args=(d,)) for d in devices]
    for t in threads:
        t.start()
    return threads


def test_every_acknowledged_point_is_stored_once(start, tmp_path):
    http = th.free_port()
    srv = serve(start, tmp_path / "data", http)
    devices = [f"car{i}" for i in range(5)]
    acked = {}
    for t in publish_load(srv.port, devices, 200, acked, duplicate_every=7):
        t.join(60)
    assert all(len(acked[d]) == 200 for d in devices)

    def done():
        c = stored_counts(http, devices, ["soc", "odo"])
        return all(c[(d, m)] == len(acked[d]) for d in devices for m in ("soc", "odo")), c
    counts = wait_until(done, "every acknowledged point stored")
    # exactly once, duplicates included: nothing beyond what was acknowledged
    assert all(counts[(d, m)] == 200 for d in devices for m in ("soc", "odo"))
    raw = get_json(http, f"/api/v1/query?device=car3&metric=odo&start=0&end={T0 + 10**9}"
                         f"&format=series")
    assert raw["series"][0]["values"][:3] == [[T0 + 10_000, 1001], [T0 + 20_000, 1002],
                                              [T0 + 30_000, 1003]]
    # the stream's counters are on /metrics (the duplicates were stored once more: idempotent).
    # Points are queryable as soon as the store holds them; the stream counts a batch only once
    # the store has returned, so the counter may trail the query by a batch for a moment.
    def counted():
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=30) as r:
            text = r.read().decode()
        stored = [float(line.split()[-1]) for line in text.splitlines()
                  if line.startswith("tern_stream_stored_points_total ")]
        return bool(stored) and stored[0] >= 2000, text[:2000]
    wait_until(counted, "the stream's stored-points counter")


def test_stream_windows_answer_the_warm_tier(start, tmp_path):
    """The stream's closed 1-minute windows reach the warm tier while the head still holds the
    raw points (no cut yet): warm answers equal the same aggregates from raw."""
    http = th.free_port()
    # one partition: the watermark moves with the data at once (partitions without data hold
    # it back until they count as idle, stream.idle_timeout = 60 s)
    srv = serve(start, tmp_path / "data", http, partitions=1)
    acked = {}
    # 33 minutes of event time from a block boundary: the head holds them all (no cut before
    # 45), so no window is recomputed from raw yet
    t30 = T0 // 1_800_000 * 1_800_000
    for t in publish_load(srv.port, ["car0", "car1"], 200, acked, t0=t30):
        t.join(60)
    assert all(len(acked[d]) == 200 for d in ("car0", "car1"))
    q = (f"/api/v1/query?device=car0&metric=*&start={t30}&end={t30 + 20 * 60_000}"
         f"&step=60s&agg=count,avg,min,max")

    def warm():
        body = get_json(http, q + "&tier=warm")
        return body["tier"] == "warm" and body["count"] == 40, body
    warm_body = wait_until(warm, "the stream's windows in the warm tier")
    assert not list((tmp_path / "data" / "tsdb" / "warm").glob("*.blk"))  # none from raw
    hot_body = get_json(http, q + "&tier=hot")
    assert hot_body["tier"] == "hot"
    key = lambda r: (r["metric"], r["ts"])
    w, h = sorted(warm_body["rows"], key=key), sorted(hot_body["rows"], key=key)
    assert [key(r) for r in w] == [key(r) for r in h]
    for a, b in zip(w, h):
        assert a["count"] == b["count"] and a["min"] == b["min"] and a["max"] == b["max"], (a, b)
        assert abs(a["avg"] - b["avg"]) <= 1e-9 * max(1.0, abs(b["avg"])), (a, b)


def test_late_points_end_in_warm_windows_equal_to_raw(start, tmp_path):
    """Points later than the watermark, into minutes the stream already closed (one still
    correctable by the stream, one past its retention, one in a range the store already cut and
    rolled up): they go to the late topic and into the hot tier, and the warm tier ends equal to
    the aggregates computed from raw for every minute."""
    http = th.free_port()
    srv = serve(start, tmp_path / "data", http, partitions=1)
    t30 = T0 // 1_800_000 * 1_800_000
    r = Raw(srv.port, 4)
    r.connect("car5")
    pid = 0

    def publish(seq, ts, soc):
        nonlocal pid
        pid = pid % 65535 + 1
        r.send(publish_packet("fleet/car5/telemetry", sample(seq, ts, soc, 1000 + seq), qos=1,
                              packet_id=pid))
        assert r.expect(PUBACK, timeout=10).packet_id == pid

    for i in range(1, 421):  # 70 minutes: the store cuts (and rolls up) the first half hour
        publish(i, t30 + i * 10_000, round(50 + i % 40 / 10, 1))
    late = [(10, 99.5), (40, 1.5), (68, 77.7)]  # minute, value: all behind the watermark
    for k, (minute, soc) in enumerate(late):
        publish(10_000 + k, t30 + minute * 60_000 + 5_000, soc)
    for i in range(421, 841):  # 70 minutes more: the late minutes are cut and rolled up again
        publish(i, t30 + i * 10_000, round(50 + i % 40 / 10, 1))
    r.close()

    q = (f"/api/v1/query?device=car5&metric=soc&start={t30}&end={t30 + 90 * 60_000}"
         f"&step=60s&agg=count,min,max,avg")

    def equal():
        w, h = get_json(http, q + "&tier=warm"), get_json(http, q + "&tier=hot")
        if w["tier"] != "warm" or w["count"] != 90 or h["count"] != 90:
            return False, (w.get("tier"), w.get("count"), h.get("count"))
        diff = [(a, b) for a, b in zip(w["rows"], h["rows"])
                if (a["ts"], a["count"], a["min"], a["max"]) != (b["ts"], b["count"], b["min"],
                                                                 b["max"])
                or abs(a["avg"] - b["avg"]) > 1e-9 * max(1.0, abs(b["avg"]))]
        return not diff, diff[:3]
    wait_until(equal, "warm windows equal to raw, late points included", timeout_s=90)
    hot = get_json(http, q + "&tier=hot")["rows"]
    for minute, soc in late:  # the late points are in them
        row = hot[minute]
        assert row["count"] == 7 and (row["min"] == soc or row["max"] == soc), row


def test_kill9_loses_nothing_acknowledged(start, tmp_path):
    data = tmp_path / "data"
    http = th.free_port()
    srv = serve(start, data, http)
    devices = [f"truck{i}" for i in range(6)]
    acked = {}
    stop = threading.Event()
    threads = publish_load(srv.port, devices, 100000, acked, stop=stop)
    deadline = time.monotonic() + 30
    while sum(len(v) for v in acked.values()) < 2000 and time.monotonic() < deadline:
        time.sleep(0.01)
    srv.kill9()  # mid-load: some points acknowledged, not yet stored by the stream
    stop.set()
    for t in threads:
        t.join(30)
    n_acked = sum(len(v) for v in acked.values())
    assert n_acked >= 2000

    http2 = th.free_port()
    serve(start, data, http2)  # the stream resumes from its last commit

    def done():
        c = stored_counts(http2, devices, ["soc", "odo"])
        return all(c[(d, m)] >= len(acked[d]) for d in devices for m in ("soc", "odo")), c
    counts = wait_until(done, "every acknowledged point stored after the crash")
    for d in devices:
        body = get_json(http2, f"/api/v1/query?device={d}&metric=odo&start=0"
                               f"&end={T0 + 10**9}&format=series")
        stored_ts = [v[0] for v in body["series"][0]["values"]]
        assert len(stored_ts) == len(set(stored_ts)), "a point stored twice"
        assert set(acked[d]) <= set(stored_ts), f"{d}: an acknowledged point is missing"
        # what is stored beyond the acknowledged: published, not acknowledged before the crash
        assert counts[(d, "odo")] <= len(acked[d]) + 8


def test_bad_payloads_dead_letter_and_late_points(start, tmp_path):
    data = tmp_path / "data"
    http = th.free_port()
    # one partition: a partition without data would hold the watermark back (for the stream's
    # idle timeout, 60 s) and no window would close within the test
    srv = serve(start, data, http, partitions=1)
    r = Raw(srv.port, 4)
    r.connect("van1")
    now = T0 + 3600_000
    msgs = [
        ("fleet/van1/telemetry", b"not json"),
        ("fleet/van1/telemetry", b'{"ts":1,"seq":1,"m":{"soc":"high"}}'),
        ("fleet/van1/m/temp", json.dumps({"ts": now, "seq": 1, "v": 21.5}).encode()),
        ("fleet/van1/telemetry", sample(2, now, 50.5, 10)),
        ("fleet/van1/telemetry", sample(3, now + 600_000, 50.7, 11)),  # moves the watermark
        ("fleet/van1/telemetry", sample(4, now - 600_000, 49.9, 9)),   # 10 min late
    ]
    for pid, (topic, payload) in enumerate(msgs, 1):
        r.send(publish_packet(topic, payload, qos=1, packet_id=pid))
        assert r.expect(PUBACK, timeout=10).packet_id == pid
    r.close()

    def stored():
        c = stored_counts(http, ["van1"], ["soc", "temp"])
        return c[("van1", "soc")] == 3 and c[("van1", "temp")] == 1, c
    wait_until(stored, "the good points stored (the late one too)")
    assert srv.stop() == 0  # SIGTERM: drains and closes, then the log can be read

    def tail(topic):
        out = th.run([th.tern_bin(), "log", "tail", "--data", str(data), "--topic", topic,
                      "--from", "earliest", "--count", "100"], timeout_s=30)
        text = out.stdout.decode() if isinstance(out.stdout, bytes) else out.stdout
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    dead = tail("telemetry-dead")
    reasons = sorted(m["headers"]["reason"] for m in dead)
    assert len(dead) == 2, dead
    assert any("string" in x for x in reasons), reasons
    assert all(m["headers"]["topic"] == "fleet/van1/telemetry" for m in dead)
    late = tail("late")
    assert len(late) >= 2  # soc and odo of the 10-minute-late sample
    assert {json.loads(m["value"])["ts"] for m in late} == {now - 600_000}


def test_edge_summaries_are_stored_as_aggregate_series(start, tmp_path):
    """fleet/{device}/summary: the edge's window aggregates land as {metric}:min, :max, :sum,
    :last and :count at the window's start; a malformed one is a dead letter."""
    http = th.free_port()
    srv = serve(start, tmp_path / "data", http)
    r = Raw(srv.port, 4)
    r.connect("meter7")
    w0 = T0 + 7200_000
    good = {"ts": w0, "end": w0 + 300_000, "seq": 1,
            "m": {"kwh": {"min": 1.25, "max": 3.5, "sum": 60.5, "count": 30, "last": 2.75}}}
    bad = {"ts": w0, "end": w0 + 300_000, "seq": 2,
           "m": {"kwh": {"min": 4.0, "max": 3.5, "sum": 1.0, "count": 1, "last": 3.5}}}
    for pid, payload in enumerate((good, bad), 1):
        r.send(publish_packet("fleet/meter7/summary", json.dumps(payload).encode(), qos=1,
                              packet_id=pid))
        assert r.expect(PUBACK, timeout=10).packet_id == pid
    r.close()

    def stored():
        body = get_json(http, f"/api/v1/query?device=meter7&start=0&end={T0 + 10**9}"
                              f"&format=series")
        return len(body["series"]) == 5, body
    body = wait_until(stored, "the summary's five series")
    got = {s["metric"]: s["values"] for s in body["series"]}
    assert got == {"kwh:min": [[w0, 1.25]], "kwh:max": [[w0, 3.5]], "kwh:sum": [[w0, 60.5]],
                   "kwh:last": [[w0, 2.75]], "kwh:count": [[w0, 30]]}

    def dead_lettered():  # the malformed one (counters are published after each batch)
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=30) as resp:
            text = resp.read().decode()
        dead = [float(line.split()[-1]) for line in text.splitlines()
                if line.startswith("tern_stream_dead_letters_total ")]
        return dead == [1.0], dead
    wait_until(dead_lettered, "the malformed summary dead-lettered")


def test_alert_fires_and_resolves_once(start, tmp_path):
    from broker_fixture import Paho
    rules = tmp_path / "rules.conf"
    rules.write_text("# a low battery held for 30 s of event time\n"
                     "low_soc = soc below 15 for 30s resolve_above 20\n")
    acl = tmp_path / "acl"
    acl.write_text("topic read alerts/#\npattern write fleet/%c/#\n")  # a dashboard reads alerts
    data = tmp_path / "data"
    http = th.free_port()
    srv = start("tern-serve", lambda p: [
        th.tern_bin(), "serve", "--data", str(data), "--listen", f"127.0.0.1:{p}",
        "--http", f"127.0.0.1:{http}", "--allow-anonymous", "--set", "log.partitions=1",
        "--set", f"stream.rules={rules}", "--set", f"broker.acl_file={acl}"])
    watcher = Paho(srv.port, "dashboard")
    watcher.connect()
    watcher.subscribe("alerts/#", qos=1)
    r = Raw(srv.port, 4)
    r.connect("ev9")
    socs = [50, 14, 12, 11, 10, 9, 18, 25, 26]  # one sample every 10 s of event time
    for i, soc in enumerate(socs, 1):
        r.send(publish_packet("fleet/ev9/telemetry", sample(i, T0 + i * 10_000, soc, i),
                              qos=1, packet_id=i))
        assert r.expect(PUBACK, timeout=10).packet_id == i
    r.close()
    msgs = watcher.wait_messages(2, timeout=60, topic="alerts/ev9/low_soc")
    states = [json.loads(m.payload)["state"] for m in msgs]
    assert states == ["firing", "resolved"], states
    fired = json.loads(msgs[0].payload)
    assert fired["ts"] == T0 + 5 * 10_000 and fired["value"] == 10  # 30 s after soc went below
    assert json.loads(msgs[1].payload)["ts"] == T0 + 8 * 10_000     # first soc above 20
    watcher.close()
    assert srv.stop() == 0
    out = th.run([th.tern_bin(), "log", "tail", "--data", str(data), "--topic", "alerts",
                  "--from", "earliest", "--count", "10"], timeout_s=30)
    text = out.stdout.decode() if isinstance(out.stdout, bytes) else out.stdout
    logged = [json.loads(json.loads(line)["value"])["state"] for line in text.splitlines() if line]
    assert logged == ["firing", "resolved"]


def test_last_will_fires_an_absence_alert(start, tmp_path):
    """A device that goes away without a DISCONNECT: the broker publishes its Last Will on
    fleet/{device}/event, the stream learns of it and an absence rule with on_will fires at once
    (not 10 minutes of event time later)."""
    from broker_fixture import Paho
    rules = tmp_path / "rules.conf"
    rules.write_text("gone = no data for 10m on_will\n")
    acl = tmp_path / "acl"
    acl.write_text("topic read alerts/#\npattern write fleet/%c/#\n")
    http = th.free_port()
    srv = start("tern-serve", lambda p: [
        th.tern_bin(), "serve", "--data", str(tmp_path / "data"), "--listen", f"127.0.0.1:{p}",
        "--http", f"127.0.0.1:{http}", "--allow-anonymous", "--set", "log.partitions=1",
        "--set", f"stream.rules={rules}", "--set", f"broker.acl_file={acl}"])
    watcher = Paho(srv.port, "ops")
    watcher.connect()
    watcher.subscribe("alerts/#", qos=1)
    r = Raw(srv.port, 4)
    r.connect("ev5", will=("fleet/ev5/event", b'{"ts":0,"seq":0,"m":{"offline":1}}', 1, False))
    r.send(publish_packet("fleet/ev5/telemetry", sample(1, T0 + 10_000, 55.5, 1), qos=1,
                          packet_id=1))
    assert r.expect(PUBACK, timeout=10).packet_id == 1
    r.close()  # no DISCONNECT: the broker publishes the will
    msgs = watcher.wait_messages(1, timeout=60, topic="alerts/ev5/gone")
    fired = json.loads(msgs[0].payload)
    assert fired["state"] == "firing" and fired["device"] == "ev5", fired
    watcher.close()


def test_event_loops_on_metrics(start, tmp_path):
    """Each loop of the broker (broker-0 runs the HTTP API too) and the front door report their
    statistics on /metrics, refreshed every second."""
    http = th.free_port()
    srv = serve(start, tmp_path / "data", http)
    r = Raw(srv.port, 4)
    r.connect("looped")

    def figures():
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=30) as resp:
            text = resp.read().decode()
        got = {}
        for line in text.splitlines():
            if line.startswith("tern_loop_"):
                name, value = line.rsplit(" ", 1)
                got[name] = float(value)
        return got

    def reported():
        got = figures()
        ok = (got.get('tern_loop_iterations_total{loop="broker-0"}', 0) > 0
              and got.get('tern_loop_iterations_total{loop="door"}', 0) > 0
              and got.get('tern_loop_io_watchers{loop="broker-0"}', 0) >= 1  # the client
              and 'tern_loop_background_deferred_total{loop="broker-0"}' in got)
        return ok, got
    wait_until(reported, "the loops' statistics on /metrics")
    r.close()
    text = urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=30).read().decode()
    assert "# TYPE tern_loop_iterations_total counter" in text
    assert "# TYPE tern_loop_io_watchers gauge" in text

"""Durability and corruption tests of `tern tsdb` (docs/tsdb.md, docs/formats/tsdb-block.md).

- kill -9 while clients are writing: after a restart on the same data dir, every point whose
  write was acknowledged (204) is there exactly once, and nothing present has a wrong value;
- kill -9 after hours of event time were cut into blocks (block_duration 1m) plus backfill
  into old ranges: reads span blocks, backfill and the replayed head;
- SIGTERM: exit 0, the blocks alone hold every point, a restart serves them;
- a flipped byte in a block's chunk region: queries touching it answer an error, never wrong
  data, and the server stays up; a flipped byte in its index (or a truncated block): `tern
  tsdb` and `tern query` refuse to open, naming the block.
"""
from __future__ import annotations

import math
import struct
import subprocess
import threading

import tern_harness as th
from tsdb_fixture import (HOUR_MS, bits, block_paths, flip_byte, read_block, read_blocks,  # noqa: F401
                          recent_base_ms, reference_aggs, run_tern, tsdb, wait_until)


def value_of(dev: int, metric: int, ts: int) -> float:
    """The value a point gets: a function of its key, so any present point can be checked."""
    return round(((ts // 1000) % 100_000) * 0.01 + dev * 1000 + metric * 0.5, 2)


def body_for(points) -> str:
    return "\n".join(f"ev,device_id=d{d},grp=g{d % 2} m{m}={value_of(d, m, ts)!r} {ts}"
                     for d, m, ts in points)


def read_all(srv, devices, start, end) -> dict:
    """{(dev, metric, ts): value} of every point of the devices; fails on a duplicate."""
    got = {}
    for d in devices:
        for r in srv.query_rows(device=f"d{d}", start=start, end=end):
            key = (d, int(r["metric"][len("ev_m"):]), r["ts"])
            assert key not in got, f"{key} returned twice"
            got[key] = r["value"]
    return got


def assert_exactly(got: dict, want_keys, label: str) -> None:
    missing = [k for k in want_keys if k not in got]
    assert not missing, f"{label}: {len(missing)} acknowledged points missing, e.g. {missing[:5]}"
    for (d, m, ts), v in got.items():
        assert bits(v) == bits(value_of(d, m, ts)), f"{label}: wrong value at {(d, m, ts)}: {v}"


def test_kill9_during_writes_keeps_every_acknowledged_point(tsdb, tmp_path):
    srv = tsdb(tmp_path / "data")
    base = recent_base_ms(3) + 437_017  # not on a block boundary
    acked: list[list] = []
    sent: list[list] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(wid: int):
        k = 0
        while not stop.is_set():
            ts0 = base + (k * 4 + wid) * 20 * 1000
            pts = [(wid * 2 + d, m, ts0 + j * 1000) for d in range(2) for m in range(3)
                   for j in range(20)]
            with lock:
                sent.append(pts)
            try:
                r = srv.write(body_for(pts))
            except Exception:  # noqa: BLE001 - reset, refused, bad status line
                return  # the server died under us: this batch is not acknowledged
            if r.status != 204:
                return
            with lock:
                acked.append(pts)
            k += 1

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    try:
        wait_until(lambda: len(acked) >= 40, "40 acknowledged batches", timeout_s=120)
        srv.kill9()  # while the writers are still sending
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert srv.svc.proc.returncode == -9
    acked_keys = {p for batch in acked for p in batch}
    srv2 = tsdb(tmp_path / "data")
    got = read_all(srv2, range(8), base - HOUR_MS, base + 6 * HOUR_MS)
    assert_exactly(got, acked_keys, "after kill -9")
    sent_keys = {p for batch in sent for p in batch}
    assert set(got) <= sent_keys, "points that were never written appeared"

    # the restarted store takes new writes, and a second crash keeps them too
    more = [(0, 9, base + i * 1000) for i in range(50)]
    srv2.write_ok(body_for(more))
    srv2.kill9()
    srv3 = tsdb(tmp_path / "data")
    got = read_all(srv3, range(8), base - HOUR_MS, base + 6 * HOUR_MS)
    assert_exactly(got, acked_keys | set(more), "after a second kill -9")
    assert srv3.stop() == 0


def _blocks_now(data_dir):
    """The blocks of a running store (one may vanish under compaction while being read)."""
    out = []
    for p in block_paths(data_dir):
        try:
            out.append(read_block(p))
        except (FileNotFoundError, AssertionError, IndexError, struct.error):
            continue
    return out


def test_kill9_after_blocks_were_cut_reads_blocks_backfill_and_head(tsdb, tmp_path):
    data_dir = tmp_path / "data"
    opts = ("--set", "tsdb.block_duration=1m")
    srv = tsdb(data_dir, *opts)
    base = recent_base_ms(6) + 17_003  # not on a block boundary
    devices = range(4)
    # 5 hours of event time, every 30 s, in time order, 2 metrics per device
    ts_list = [base + k * 30_000 for k in range(600)]
    written = []
    for i in range(0, len(ts_list), 60):
        pts = [(d, m, ts) for ts in ts_list[i:i + 60] for d in devices for m in range(2)]
        srv.write_ok(body_for(pts))
        written += pts
    # the background maintenance cuts the head into 1-minute blocks (and compacts them)
    wait_until(lambda: len(block_paths(data_dir)) >= 3, "blocks cut from the head", 120)
    # backfill: late points in the first hour (between the existing ones), and rewrites of
    # existing points (the same value: last write wins, stored once)
    late = [(d, m, base + k * 30_000 + 15_000) for k in range(0, 120, 3) for d in devices
            for m in range(2)]
    seq_before = max(b.seq for b in _blocks_now(data_dir))
    srv.write_ok(body_for(late))
    rewrite = [(1, 0, base + k * 30_000) for k in range(0, 600, 50)]
    srv.write_ok(body_for(rewrite))
    # the newest points stay in the head
    tail = [(d, m, base + 5 * HOUR_MS + k * 1000) for k in range(30) for d in devices
            for m in range(2)]
    srv.write_ok(body_for(tail))
    # the next cut moves the late points into backfill blocks of their own (old) ranges
    wait_until(lambda: any(b.seq > seq_before and b.min_ts < base + HOUR_MS
                           for b in _blocks_now(data_dir)), "a backfill block", 120)
    srv.kill9()

    want = set(written) | set(late) | set(tail)
    srv2 = tsdb(data_dir, *opts)
    got = read_all(srv2, devices, base - HOUR_MS, base + 7 * HOUR_MS)
    assert_exactly(got, want, "blocks + head after kill -9")
    assert len(got) == len(want)

    # narrow ranges inside blocks: 1-minute windows, each holding what was written there
    for w0 in [base + k * 60_000 + 5_000 for k in (0, 1, 7, 61, 150, 299)]:
        rows = srv2.query_rows(device="d3", metric="ev_m0", start=w0, end=w0 + 60_000)
        assert [r["ts"] for r in rows] == sorted(ts for d, m, ts in want
                                                 if (d, m) == (3, 0) and w0 <= ts < w0 + 60_000)
    # aggregates over blocks + head agree with the points
    rows = srv2.query_rows(metric="ev_m1", agg="count,min,max", group_by="grp", step="1h",
                           start=base, end=base + 6 * HOUR_MS)
    for r in rows:
        keys = [k for k in want if k[1] == 1 and f"g{k[0] % 2}" == r["group"]
                and r["ts"] <= k[2] < r["ts"] + HOUR_MS]
        vals = [value_of(*k) for k in keys]
        assert (r["count"], r["min"], r["max"]) == (len(vals), min(vals), max(vals)), r
    assert sum(r["count"] for r in rows) == len([k for k in want if k[1] == 1])

    # /last: the head's newest points
    last = {r["metric"]: r for r in srv2.last("d2").json()["rows"]}
    assert last["ev_m0"]["ts"] == base + 5 * HOUR_MS + 29_000
    assert bits(last["ev_m0"]["value"]) == bits(value_of(2, 0, base + 5 * HOUR_MS + 29_000))

    # a clean stop, then the blocks alone hold every point
    assert srv2.stop() == 0
    assert sum(b.n_points for b in read_blocks(data_dir)) >= len(want)
    srv3 = tsdb(data_dir, *opts)
    got = read_all(srv3, devices, base - HOUR_MS, base + 7 * HOUR_MS)
    assert_exactly(got, want, "after SIGTERM")
    assert len(got) == len(want)


def test_sigterm_flushes_into_blocks(tsdb, tmp_path):
    data_dir = tmp_path / "data"
    srv = tsdb(data_dir)
    base = recent_base_ms(5) + 1_234_567  # not on a block boundary
    pts = [(d, m, base + k * 60_000) for k in range(180) for d in range(3) for m in range(2)]
    for i in range(0, len(pts), 300):
        srv.write_ok(body_for(pts[i:i + 300]))
    assert srv.stop() == 0
    blocks = read_blocks(data_dir)
    assert blocks, "SIGTERM left no block"
    # every point is in a block (nothing depends on replaying the WAL), each exactly once
    assert sum(b.n_points for b in blocks) == len(pts)
    per_series = {}
    for b in blocks:
        for dev in b.devices:
            assert dev.tags == f"grp=g{int(dev.name[1:]) % 2}"
            for s in dev.series:
                per_series[(dev.name, s.metric)] = per_series.get((dev.name, s.metric), 0) + s.count
    assert per_series == {(f"d{d}", f"ev_m{m}"): 180 for d in range(3) for m in range(2)}
    srv2 = tsdb(data_dir)
    got = read_all(srv2, range(3), base, base + 4 * HOUR_MS)
    assert_exactly(got, set(pts), "after SIGTERM")
    assert len(got) == len(pts)
    # aggregates over the blocks: exact, p95 by nearest rank over the raw points
    for d, m in [(0, 0), (2, 1)]:
        series = sorted((ts, value_of(dd, mm, ts)) for dd, mm, ts in pts if (dd, mm) == (d, m))
        row = srv2.query_rows(device=f"d{d}", metric=f"ev_m{m}", agg="count,min,max,last,p95",
                              start=base - HOUR_MS, end=base + 4 * HOUR_MS)[0]
        ref = reference_aggs(series)
        assert {a: row[a] for a in ("count", "min", "max", "last", "p95")} == \
            {a: ref[a] for a in ("count", "min", "max", "last", "p95")}
    # narrow ranges: one point each, from every block
    for k in (0, 1, 59, 60, 61, 120, 179):
        ts = base + k * 60_000
        assert srv2.raw("d2", "ev_m1", ts, ts + 1) == [("ev_m1", ts, value_of(2, 1, ts))], k
    last = {r["metric"]: r for r in srv2.last("d1").json()["rows"]}
    assert set(last) == {"ev_m0", "ev_m1"}, f"/last after a restart: {last}"
    assert last["ev_m1"]["ts"] == base + 179 * 60_000
    # the series keep their kind across the restart: an int into a float series is refused
    r = srv2.write(f"ev,device_id=d1,grp=g1 m1=5i {base + 5}")
    assert r.status == 400 and "field type conflict" in r.json()["error"], r.text
    assert srv2.raw("d1", "ev_m1", base + 5, base + 6) == []
    # on disk: each series' range (stored relative to the block's min_ts) lies inside the block's range
    for b in blocks:
        for dev in b.devices:
            for s in dev.series:
                want_ts = sorted(ts for d, m, ts in pts if f"d{d}" == dev.name
                                 and f"ev_m{m}" == s.metric and b.min_ts <= ts <= b.max_ts)
                assert (s.min_ts, s.max_ts) == (want_ts[0], want_ts[-1]), \
                    f"{b.path.name} {dev.name}/{s.metric}: series range {s.min_ts - base}.." \
                    f"{s.max_ts - base}, points {want_ts[0] - base}..{want_ts[-1] - base}"


# ---- corruption -----------------------------------------------------------------------------

def _stopped_store(tsdb, data_dir, base):
    """A store of 3 devices x 2 metrics over 100 minutes, cleanly stopped (all in blocks)."""
    srv = tsdb(data_dir)
    pts = [(d, m, base + k * 20_000) for k in range(300) for d in range(3) for m in range(2)]
    srv.write_ok(body_for(pts))
    assert srv.stop() == 0
    return pts


def test_flipped_chunk_byte_fails_the_query_never_wrong_data(tsdb, tmp_path):
    data_dir = tmp_path / "data"
    base = recent_base_ms(4)
    pts = _stopped_store(tsdb, data_dir, base)
    blocks = read_blocks(data_dir)
    victim_block = blocks[0]
    dev = victim_block.devices[1]
    series = dev.series[0]
    flip_byte(victim_block.path, series.chunk_off + series.chunk_len // 2)
    victim = (int(dev.name[1:]), int(series.metric[len("ev_m"):]))

    srv = tsdb(data_dir)
    start, end = base - HOUR_MS, base + 3 * HOUR_MS
    n_errors = 0
    for d in range(3):
        for m in range(2):
            r = srv.query(device=f"d{d}", metric=f"ev_m{m}", start=start, end=end)
            if (d, m) == victim:
                assert r.status >= 400, f"a corrupt chunk was answered {r.status}: {r.text[:300]}"
                assert r.json()["error"], "the error names no reason"
                n_errors += 1
                continue
            if r.status != 200:  # other series of the block may be refused, never wrong
                assert r.status >= 400 and r.json()["error"]
                continue
            rows = r.json()["rows"]
            assert [(x["ts"], bits(x["value"])) for x in rows] == \
                [(ts, bits(value_of(d, m, ts))) for dd, mm, ts in pts if (dd, mm) == (d, m)]
    assert n_errors == 1
    # an aggregate over every device covers the chunk too: an error, or (if the store answers
    # from something other than the damaged chunk) exactly the right numbers
    vm = victim[1]
    r = srv.query(metric=f"ev_m{vm}", agg="count,sum", start=start, end=end)
    if r.status == 200:
        for row in r.json()["rows"]:
            d = int(row["device"][1:])
            vals = [value_of(d, vm, ts) for dd, mm, ts in pts if (dd, mm) == (d, vm)]
            assert row["count"] == len(vals), row
            assert abs(row["sum"] - sum(vals)) <= 1e-9 * abs(sum(vals)), row
        assert len(r.json()["rows"]) == 3
    else:
        assert r.status >= 400 and r.json()["error"], r.text[:300]
    r = srv.query(metric=f"ev_m{vm}", agg="count", group_by="*", start=start, end=end)
    if r.status == 200:
        assert [row["count"] for row in r.json()["rows"]] == [900], r.text[:300]
    else:
        assert r.status >= 400 and r.json()["error"], r.text[:300]
    r = srv.query(device=f"d{victim[0]}", metric=f"ev_m{vm}", agg="p95", start=start, end=end)
    if r.status == 200:  # p95 is exact over the raw points: only from the raw chunks
        vals = sorted(value_of(victim[0], vm, ts) for dd, mm, ts in pts if (dd, mm) == victim)
        assert r.json()["rows"][0]["p95"] == vals[math.ceil(0.95 * len(vals)) - 1], r.text
    else:
        assert r.status >= 400 and r.json()["error"], r.text[:300]
    # /last: right or an error, never a wrong value
    r = srv.last(f"d{victim[0]}")
    if r.status == 200:
        for row in r.json()["rows"]:
            m = int(row["metric"][len("ev_m"):])
            assert bits(row["value"]) == bits(value_of(victim[0], m, row["ts"]))
    else:
        assert r.status >= 400
    # the server is still up and still serves the healthy data
    assert srv.req("GET", "/ping").status == 204
    assert srv.svc.proc.poll() is None
    srv.write_ok(body_for([(2, 0, base + 3 * HOUR_MS)]))
    assert srv.raw("d2", "ev_m0", base + 3 * HOUR_MS, base + 3 * HOUR_MS + 1) == \
        [("ev_m0", base + 3 * HOUR_MS, value_of(2, 0, base + 3 * HOUR_MS))]


def _refuses_to_open(data_dir, block_name: str) -> None:
    port = th.free_port()
    proc = subprocess.Popen([th.tern_bin(), "tsdb", "--data", str(data_dir), "--http",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        raise AssertionError(f"tern tsdb started on a damaged block: {out.decode()[-2000:]}")
    text = out.decode(errors="replace")
    assert proc.returncode not in (0, None) and proc.returncode > 0, (proc.returncode, text)
    assert block_name in text, f"the message does not name {block_name}: {text[-2000:]}"
    r = run_tern("query", "--data", str(data_dir), "--device", "d0")
    assert r.returncode not in (0,) and r.returncode > 0
    assert block_name in r.stderr.decode(errors="replace"), r.stderr.decode()[-2000:]


def test_flipped_index_byte_refuses_to_start_naming_the_block(tsdb, tmp_path):
    data_dir = tmp_path / "data"
    base = recent_base_ms(4)
    _stopped_store(tsdb, data_dir, base)
    blocks = read_blocks(data_dir)
    b = blocks[-1]
    off, length = b.sections["series"]
    flip_byte(b.path, off + length // 2)
    _refuses_to_open(data_dir, b.path.name)


def test_flipped_device_entry_and_truncated_block_refuse_to_start(tsdb, tmp_path):
    data_dir = tmp_path / "data"
    base = recent_base_ms(4)
    pts = _stopped_store(tsdb, data_dir, base)
    b = read_blocks(data_dir)[0]
    off, _ = b.sections["devices"]
    flip_byte(b.path, off + 24)  # the first device's chunk_off
    _refuses_to_open(data_dir, b.path.name)
    flip_byte(b.path, off + 24)  # repaired: it opens again
    srv = tsdb(data_dir)
    assert srv.query_rows(device="d0", metric="ev_m0", agg="count", start=base,
                          end=base + 3 * HOUR_MS)[0]["count"] == 300
    # p95 over blocks is exact (nearest rank over the raw points, docs/tsdb.md)
    vals = sorted(value_of(1, 0, ts) for d, m, ts in pts if (d, m) == (1, 0))
    row = srv.query_rows(device="d1", metric="ev_m0", agg="p95", start=base - HOUR_MS,
                         end=base + 3 * HOUR_MS)[0]
    assert row["p95"] == vals[math.ceil(0.95 * len(vals)) - 1]
    assert srv.stop() == 0
    b = read_blocks(data_dir)[0]
    data = b.path.read_bytes()
    b.path.write_bytes(data[: len(data) // 2])
    _refuses_to_open(data_dir, b.path.name)

"""tsdb_fixture: shared helpers for the integration tests of tern's time-series store.

- `tsdb` fixture: a factory that starts `tern tsdb --data DIR --http 127.0.0.1:PORT` through the
  `start` fixture (conftest.py waits for the port) and returns a `TsdbServer` with small HTTP
  helpers (write, query, last, raw requests). The same data dir can be started again after a
  kill -9 or a SIGTERM.
- `parse_json`: JSON as tern writes it; "-0" (negative zero, tern's form of -0.0) stays a float.
- `bits`: a float's IEEE bits, to compare values bit for bit (-0.0 vs 0.0).
- `read_blocks`: the header, index and chunk region of every block file of a store
  (docs/formats/tsdb-block.md), for the on-disk checks and the corruption tests.
- `recent_base_ms`: an hour-aligned event time a few hours back, inside the default retention.
- `wait_until`: poll a condition (a deadline only against a hang, never an assertion on speed).
"""
from __future__ import annotations

import gzip
import http.client
import json
import math
import struct
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import tern_harness as th

HOUR_MS = 3600 * 1000


def parse_json(text: str | bytes):
    """json.loads keeping tern's "-0" as the float -0.0 (JSON's negative zero)."""
    if isinstance(text, bytes):
        text = text.decode()
    return json.loads(text, parse_int=lambda s: -0.0 if s == "-0" else int(s))


def bits(v) -> int:
    """The IEEE 754 bits of a float value (an int from JSON is converted first)."""
    return struct.unpack("<Q", struct.pack("<d", float(v)))[0]


def recent_base_ms(hours_back: int = 6) -> int:
    """An hour-aligned ms timestamp `hours_back` hours before now (inside the 7 d retention)."""
    now_ms = int(time.time() * 1000)
    return (now_ms // HOUR_MS - hours_back) * HOUR_MS


def wait_until(pred, what: str, timeout_s: float = 60.0, interval_s: float = 0.1):
    """Poll pred() until it is truthy; fail with `what` if it never becomes so."""
    deadline = time.monotonic() + timeout_s
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        time.sleep(interval_s)


@dataclass
class Response:
    status: int
    headers: dict
    body: bytes

    def json(self):
        return parse_json(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def request(port: int, method: str, path: str, params: dict | None = None,
            body: bytes | str | None = None, headers: dict | None = None,
            timeout_s: float = 60.0) -> Response:
    """One HTTP request on a fresh connection to 127.0.0.1:port."""
    if params:
        path = path + "?" + urllib.parse.urlencode(params)
    if isinstance(body, str):
        body = body.encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout_s)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        return Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
    finally:
        conn.close()


@dataclass
class TsdbServer:
    """A running `tern tsdb` and the data dir it serves."""
    svc: th.Service
    data_dir: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def req(self, method: str, path: str, params: dict | None = None, body=None,
            headers: dict | None = None) -> Response:
        return request(self.port, method, path, params, body, headers)

    def write(self, body: str | bytes, db: str = "telemetry", precision: str | None = "ms",
              gzip_body: bool = False) -> Response:
        params = {"db": db}
        if precision:
            params["precision"] = precision
        headers = {"Content-Type": "text/plain"}
        if isinstance(body, str):
            body = body.encode()
        if gzip_body:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return self.req("POST", "/write", params, body, headers)

    def write_ok(self, body: str | bytes, **kw) -> None:
        r = self.write(body, **kw)
        assert r.status == 204, f"write answered {r.status}: {r.text}"

    def query(self, **params) -> Response:
        return self.req("GET", "/api/v1/query", {k: str(v) for k, v in params.items()})

    def query_rows(self, **params) -> list[dict]:
        r = self.query(**params)
        assert r.status == 200, f"query {params} answered {r.status}: {r.text}"
        doc = r.json()
        assert doc["count"] == len(doc["rows"])
        return doc["rows"]

    def raw(self, device: str, metric: str | None, start: int, end: int) -> list[tuple]:
        """Raw points of a device (one metric or all) as (metric, ts, value) tuples."""
        params = {"device": device, "start": start, "end": end}
        if metric:
            params["metric"] = metric
        return [(r["metric"], r["ts"], r["value"]) for r in self.query_rows(**params)]

    def last(self, device: str) -> Response:
        return self.req("GET", "/api/v1/last", {"device": device})

    def metrics_text(self) -> str:
        r = self.req("GET", "/metrics")
        assert r.status == 200
        return r.text

    def kill9(self) -> None:
        self.svc.kill9()

    def stop(self) -> int | None:
        return self.svc.stop()


@pytest.fixture
def tsdb(start, tmp_path):
    """tsdb(data_dir=None, *extra_args) -> TsdbServer: `tern tsdb` on a free port."""
    counter = [0]

    def _start(data_dir: Path | None = None, *extra: str) -> TsdbServer:
        data_dir = Path(data_dir or tmp_path / "data")
        data_dir.mkdir(parents=True, exist_ok=True)
        counter[0] += 1
        holder = {}

        def argv(port):
            holder["port"] = port
            return [th.tern_bin(), "tsdb", "--data", str(data_dir), "--http",
                    f"127.0.0.1:{port}", *extra]
        svc = start(f"tern-tsdb-{counter[0]}", argv)
        return TsdbServer(svc, data_dir, holder["port"])

    return _start


# ---- block files (docs/formats/tsdb-block.md) ---------------------------------------------

BLOCK_MAGIC = 0x424E5254
HEADER_BYTES = 80
FOOTER_BYTES = 72


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, pos
        shift += 7


@dataclass
class BlockSeries:
    metric: str
    kind: int
    count: int
    min_ts: int
    max_ts: int
    chunk_off: int  # file offset of the chunk
    chunk_len: int


@dataclass
class BlockDevice:
    name: str
    tags: str
    chunk_off: int
    series: list[BlockSeries] = field(default_factory=list)


@dataclass
class BlockFile:
    path: Path
    n_devices: int
    n_series: int
    n_metrics: int
    min_ts: int
    max_ts: int
    n_points: int
    seq: int
    sections: dict  # name -> (offset, length): metrics, devices, series, strings
    devices: list[BlockDevice]

    @property
    def chunks(self) -> tuple[int, int]:
        """(offset, length) of the chunk region."""
        return HEADER_BYTES, self.sections["metrics"][0] - HEADER_BYTES


def read_block(path: Path) -> BlockFile:
    """Parse a block file's header, footer and index (not its chunks)."""
    data = Path(path).read_bytes()
    magic, version = struct.unpack_from("<IB", data, 0)
    assert magic == BLOCK_MAGIC and version == 1, f"{path}: not a version-1 block"
    n_devices, n_series, n_metrics = struct.unpack_from("<III", data, 8)
    min_ts, max_ts, n_points, seq, _src_seq, base_ts = struct.unpack_from("<qqQQQq", data, 24)
    foot = len(data) - FOOTER_BYTES
    offs = struct.unpack_from("<8Q", data, foot)
    names = ["metrics", "devices", "series", "strings"]
    sections = {n: (offs[2 * i], offs[2 * i + 1]) for i, n in enumerate(names)}
    (end_magic,) = struct.unpack_from("<I", data, len(data) - 4)
    assert end_magic == BLOCK_MAGIC
    # metric table
    pos, _ = sections["metrics"]
    metrics = []
    for _ in range(n_metrics):
        ln, pos = _varint(data, pos)
        metrics.append(data[pos:pos + ln].decode())
        pos += ln
    strings_off = sections["strings"][0]
    series_off = sections["series"][0]
    devices = []
    for i in range(n_devices):
        (name_off, name_len, _r, tags_off, tags_len, s_off, s_n,
         chunk_off) = struct.unpack_from("<IHHIIIIQ", data, sections["devices"][0] + 32 * i)
        name = data[strings_off + name_off:strings_off + name_off + name_len].decode()
        tags = data[strings_off + tags_off:strings_off + tags_off + tags_len].decode()
        dev = BlockDevice(name, tags, chunk_off)
        pos = series_off + s_off
        off = chunk_off
        for _ in range(s_n):
            m, pos = _varint(data, pos)
            kind = data[pos]
            pos += 1
            count, pos = _varint(data, pos)
            dmin, pos = _varint(data, pos)
            span, pos = _varint(data, pos)
            clen, pos = _varint(data, pos)
            pos += 4  # crc32c
            dev.series.append(BlockSeries(metrics[m], kind, count, base_ts + dmin,
                                          base_ts + dmin + span, off, clen))
            off += clen
        devices.append(dev)
    return BlockFile(Path(path), n_devices, n_series, n_metrics, min_ts, max_ts, n_points, seq,
                     sections, devices)


def block_paths(data_dir: Path) -> list[Path]:
    return sorted((Path(data_dir) / "tsdb" / "blocks").glob("*.blk"))


def read_blocks(data_dir: Path) -> list[BlockFile]:
    return [read_block(p) for p in block_paths(data_dir)]


def flip_byte(path: Path, offset: int) -> None:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))


# ---- reference aggregates, computed the way docs/tsdb.md defines them -----------------------

def reference_aggs(points: list[tuple[int, float]]) -> dict:
    """count, sum, min, max, avg, last (newest ts), p95 (nearest rank) of (ts, value) points
    given in the order the store folds them (time order)."""
    vals = [float(v) for _, v in points]
    s = 0.0
    for v in vals:
        s += v
    srt = sorted(vals)
    rank = max(1, math.ceil(0.95 * len(srt)))
    last_ts = max(ts for ts, _ in points)
    last = [float(v) for ts, v in points if ts == last_ts][-1]
    return {"count": len(vals), "sum": s, "min": min(vals), "max": max(vals),
            "avg": s / len(vals), "last": last, "p95": srt[rank - 1]}


def run_tern(*args: str, input: bytes | None = None, timeout_s: float = 120.0
             ) -> subprocess.CompletedProcess:
    """Run `tern ARGS...` to completion, capturing stdout and stderr (bytes)."""
    return th.run([th.tern_bin(), *args], timeout_s=timeout_s, input=input)

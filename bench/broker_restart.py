#!/usr/bin/env python3
"""Broker restart time with 10,000 stored sessions: tern vs Mosquitto, side by side.

For each broker: create N persistent sessions (MQTT 3.1.1, clean session = 0, client ids
dev0..devN-1), each subscribed at QoS 1 to fleet/devI/cmd/#, disconnect them, queue one QoS 1
command for every session, then stop the broker and start it again on the same data, and
measure the time from exec until it accepts connections, and its RSS then. tern is stopped with
kill -9 (its journal is durable); Mosquitto with SIGTERM, since it only saves its database on
exit or every autosave_interval (a kill -9 would lose the sessions, which is also measured and
reported as sessions_after_kill9). Finally a sample of sessions reconnects and must receive its
queued command. Prints one JSON line. Needs build/bin/tern (make) and /usr/sbin/mosquitto.
"""
import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TERN = ROOT / "build" / "bin" / "tern"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mqtt_str(s: bytes) -> bytes:
    return len(s).to_bytes(2, "big") + s


def vbi(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + vbi(len(body)) + body


def connect_pkt(client_id: str, clean: bool) -> bytes:
    flags = 0x02 if clean else 0x00
    return packet(0x10, mqtt_str(b"MQTT") + bytes([4, flags]) + (60).to_bytes(2, "big")
                  + mqtt_str(client_id.encode()))


def subscribe_pkt(topic: str, qos: int) -> bytes:
    return packet(0x82, (1).to_bytes(2, "big") + mqtt_str(topic.encode()) + bytes([qos]))


def publish_pkt(topic: str, payload: bytes, pid: int) -> bytes:
    return packet(0x32, mqtt_str(topic.encode()) + pid.to_bytes(2, "big") + payload)


DISCONNECT = bytes([0xE0, 0])


async def read_packet(reader):
    first = (await reader.readexactly(1))[0]
    mult, length = 1, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length += (b & 127) * mult
        mult *= 128
        if not b & 128:
            break
    return first, await reader.readexactly(length)


async def make_session(port, i, sem):
    async with sem:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(connect_pkt(f"dev{i}", clean=False))
        t, body = await read_packet(r)
        assert t == 0x20 and body[1] == 0, (t, body)
        w.write(subscribe_pkt(f"fleet/dev{i}/cmd/#", 1))
        t, body = await read_packet(r)
        assert t == 0x90 and body[-1] == 1, (t, body)
        w.write(DISCONNECT)
        await w.drain()
        w.close()


async def queue_commands(port, n):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(connect_pkt("bench-commander", clean=True))
    await read_packet(r)
    pid = 0
    pending = 0
    for i in range(n):
        pid = pid % 65535 + 1
        w.write(publish_pkt(f"fleet/dev{i}/cmd/lock", b'{"cmd":"lock"}', pid))
        pending += 1
        if pending >= 500:
            for _ in range(pending):
                t, _ = await read_packet(r)
                assert t == 0x40
            pending = 0
    for _ in range(pending):
        t, _ = await read_packet(r)
        assert t == 0x40
    w.write(DISCONNECT)
    await w.drain()
    w.close()


async def check_queued(port, ids):
    ok = 0
    for i in ids:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        w.write(connect_pkt(f"dev{i}", clean=False))
        t, body = await read_packet(r)
        if t == 0x20 and body[0] & 1:
            try:
                t, body = await asyncio.wait_for(read_packet(r), 5)
                if t & 0xF0 == 0x30 and body.endswith(b'{"cmd":"lock"}'):
                    ok += 1
                    pid = body[2 + int.from_bytes(body[:2], "big"):][:2]
                    w.write(bytes([0x40, 2]) + pid)
            except asyncio.TimeoutError:
                pass
        w.write(DISCONNECT)
        await w.drain()
        w.close()
    return ok


def wait_port(port, proc, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError("broker exited during start")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.002)
    raise TimeoutError("broker did not start")


def rss_kb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Broker:
    def __init__(self, kind, work: Path):
        self.kind, self.work, self.port = kind, work, free_port()
        self.proc = None
        if kind == "mosquitto":
            (work / "db").mkdir()
            self.conf = work / "mosquitto.conf"
            self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                                 f"persistence true\npersistence_location {work / 'db'}/\n"
                                 "autosave_interval 3600\nmax_queued_messages 1000\n"
                                 # started as root it would switch to the mosquitto user,
                                 # who cannot write the temporary folder
                                 "user root\n")
        else:
            (work / "acl").write_text("topic readwrite #\n")

    def start(self):
        if self.kind == "mosquitto":
            argv = ["mosquitto", "-c", str(self.conf)]
        else:
            argv = [str(TERN), "broker", "--listen", f"127.0.0.1:{self.port}", "--data",
                    str(self.work / "data"), "--allow-anonymous", "--set",
                    f"broker.acl_file={self.work / 'acl'}", "--set",
                    "broker.connect_rate=1000000", "--set", "broker.connect_burst=1000000"]
        t0 = time.monotonic()
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        return time.monotonic() - t0

    def stop(self, sig):
        self.proc.send_signal(sig)
        self.proc.wait(60)


async def run_one(kind, n, sample):
    with tempfile.TemporaryDirectory() as d:
        b = Broker(kind, Path(d))
        b.start()
        t0 = time.monotonic()
        sem = asyncio.Semaphore(200)
        await asyncio.gather(*(make_session(b.port, i, sem) for i in range(n)))
        await queue_commands(b.port, n)
        setup_s = time.monotonic() - t0
        rss_before = rss_kb(b.proc.pid)
        b.stop(signal.SIGKILL if kind == "tern" else signal.SIGTERM)
        restart_s = b.start()
        rss_after = rss_kb(b.proc.pid)
        step = max(1, n // sample)
        ok = await check_queued(b.port, list(range(0, n, step))[:sample])
        b.stop(signal.SIGTERM)
        result = {"restart_s": round(restart_s, 4), "rss_kb_after_restart": rss_after,
                  "rss_kb_before": rss_before, "setup_s": round(setup_s, 2),
                  "sample": min(sample, len(range(0, n, step))), "sample_with_queued_cmd": ok}
        if kind == "mosquitto":
            # What a crash costs Mosquitto: sessions created since the last autosave are gone.
            b.start()
            sem = asyncio.Semaphore(200)
            await asyncio.gather(*(make_session(b.port, i, sem) for i in range(n, n + 100)))
            b.stop(signal.SIGKILL)
            b.start()
            ok = await check_queued(b.port, [n + 1])
            b.stop(signal.SIGTERM)
            result["kill9_keeps_new_sessions"] = ok == 1 or None
        return result


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sample", type=int, default=50)
    args = ap.parse_args()
    res = {"tern": [], "mosquitto": []}
    for _ in range(args.runs):
        for kind in ("tern", "mosquitto"):
            res[kind].append(asyncio.run(run_one(kind, args.sessions, args.sample)))
    med = {k: {f: statistics.median(r[f] for r in v) for f in ("restart_s", "rss_kb_after_restart")}
           for k, v in res.items()}
    out = {"bench": "broker_restart", "sessions": args.sessions, "runs": args.runs,
           "tern": {**med["tern"], "sample_ok": res["tern"][-1]["sample_with_queued_cmd"],
                    "sample": res["tern"][-1]["sample"], "stop": "kill -9"},
           "mosquitto": {**med["mosquitto"],
                         "sample_ok": res["mosquitto"][-1]["sample_with_queued_cmd"],
                         "sample": res["mosquitto"][-1]["sample"], "stop": "SIGTERM (saves db)",
                         "kill9_keeps_new_sessions":
                             bool(res["mosquitto"][-1].get("kill9_keeps_new_sessions"))},
           "ratio": {"restart_s": round(med["tern"]["restart_s"] / med["mosquitto"]["restart_s"], 3)}}
    print(json.dumps(out))


if __name__ == "__main__":
    main()

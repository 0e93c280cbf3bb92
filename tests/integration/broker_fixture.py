"""broker_fixture: start `tern broker` for the broker's integration tests, and the clients that
drive it (paho-mqtt 3.1.1 / 5.0, a raw-socket client with hand-built packets, mosquitto_pub/sub).

Fixtures (import them into a test module: `from broker_fixture import broker, make_broker  # noqa`):
- `make_broker(*args, acl=ALLOW_ALL, anonymous=True)`: start `tern broker` on a free loopback
  port with extra command-line args (e.g. "--set", "broker.max_queued=5"); `acl` is the text of
  an ACL file (ALLOW_ALL by default; None: no file, tern's default device ACL). Returns the
  harness Service (`.port`). At teardown every broker is stopped with SIGTERM and must exit 0:
  a sanitizer report or a crash fails the test.
- `broker`: one broker with defaults and an ACL that allows everything.

Clients promise to wait on events with generous timeouts and never on elapsed time:
- `Paho`: a paho-mqtt client whose calls block until the broker answers (CONNACK, SUBACK,
  PUBACK/PUBCOMP, ...); received messages are collected for `wait_messages`. It never
  reconnects by itself.
- `Raw`: a TCP socket speaking MQTT bytes built here, for what paho will not send (malformed
  packets, DUP re-sends, withheld acknowledgements).
"""
from __future__ import annotations

import itertools
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass, field

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

import tern_harness as th

ALLOW_ALL = "# every client may publish and subscribe everywhere\ntopic readwrite #\n"
TIMEOUT = 10.0  # seconds to wait for anything the broker should do "now"

# ---- the broker ----------------------------------------------------------------------------


# TERN_BROKER_PEER=mosquitto runs these tests against Debian's Mosquitto instead, to check the
# tests themselves against the reference broker; settings it cannot mirror skip the test.
PEER = os.environ.get("TERN_BROKER_PEER", "tern")
_MOSQUITTO_KEYS = {"broker.max_queued": "max_queued_messages",
                   "broker.max_packet_size": "max_packet_size",
                   "broker.topic_alias_maximum": "max_topic_alias"}


def _mosquitto_conf(port: int, args: list[str], acl_path, anonymous: bool) -> str:
    lines = [f"listener {port} 127.0.0.1", f"allow_anonymous {'true' if anonymous else 'false'}",
             "persistence false", "user root"]
    if acl_path is None:
        pytest.skip("tern's default device ACL has no Mosquitto equivalent")
    lines.append(f"acl_file {acl_path}")
    for i, a in enumerate(args):
        if a != "--set":
            continue
        key, _, val = args[i + 1].partition("=")
        if key not in _MOSQUITTO_KEYS:
            pytest.skip(f"{key} has no Mosquitto equivalent")
        val = str(int(val[:-3]) * 1024) if val.endswith("KiB") else val
        lines.append(f"{_MOSQUITTO_KEYS[key]} {val}")
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_broker(start, tmp_path):
    started: list[th.Service] = []
    counter = itertools.count()

    def _make(*args: str, acl: str | None = ALLOW_ALL, anonymous: bool = True,
              name: str | None = None) -> th.Service:
        n = next(counter)
        extra = list(args)
        acl_path = None
        if acl is not None:
            acl_path = tmp_path / f"acl{n}.conf"
            acl_path.write_text(acl)
            extra += ["--set", f"broker.acl_file={acl_path}"]
        data = tmp_path / f"broker-data{n}"
        data.mkdir()

        def argv(port: int) -> list[str]:
            if PEER == "mosquitto":
                conf = tmp_path / f"mosquitto{n}.conf"
                conf.write_text(_mosquitto_conf(port, list(args), acl_path, anonymous))
                return ["mosquitto", "-c", str(conf)]
            a = [th.tern_bin(), "broker", "--listen", f"127.0.0.1:{port}", "--data", str(data)]
            if anonymous:
                a.append("--allow-anonymous")
            return a + extra

        svc = start(name or f"tern-broker{n}", argv)
        started.append(svc)
        return svc

    yield _make
    problems = []
    for svc in started:
        if getattr(svc, "stopped_by_test", False):
            continue
        alive = svc.proc.poll() is None
        rc = svc.stop()
        if not alive:
            problems.append(f"{svc.name} died during the test (status {rc}):\n{svc.log_tail()}")
        elif rc != 0:
            problems.append(f"{svc.name} exited with status {rc} on SIGTERM:\n{svc.log_tail()}")
    assert not problems, "\n".join(problems)


def stop_broker(svc: th.Service) -> int:
    """Stop a broker inside a test (SIGTERM); returns its exit status."""
    svc.stopped_by_test = True
    return svc.stop()


@pytest.fixture
def broker(make_broker):
    return make_broker()


class BrokerNode:
    """A tern broker on a fixed port and data folder that a test can stop, kill -9 and start
    again (on the same port and data): BrokerNode(start, tmp_path, *extra_args).start()."""

    def __init__(self, start, tmp_path, *extra_args: str, acl: str = ALLOW_ALL):
        self._start = start
        self.acl = tmp_path / "node.acl"
        self.acl.write_text(acl)
        self.data = tmp_path / "data"
        self.journal = self.data / "broker" / "journal"
        self.port = th.free_port()
        self.args = list(extra_args)
        self.svc: th.Service | None = None

    def start(self, name: str = "tern-broker") -> "BrokerNode":
        self.svc = self._start(name, lambda p: [
            th.tern_bin(), "broker", "--listen", f"127.0.0.1:{p}", "--data", str(self.data),
            "--allow-anonymous", "--set", f"broker.acl_file={self.acl}", *self.args],
            port=self.port)
        return self

    def kill9(self) -> None:
        self.svc.kill9()


# ---- paho ----------------------------------------------------------------------------------

V3 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
VERSIONS = [pytest.param(V3, id="v311"), pytest.param(V5, id="v5")]


def props(packet_type: int, **kw) -> Properties:
    """props(PacketTypes.PUBLISH, UserProperty=[("a", "b")], ...) -> paho Properties."""
    p = Properties(packet_type)
    for k, v in kw.items():
        setattr(p, k, v)
    return p


@dataclass
class Connack:
    reason: int  # 5.0 reason code (paho maps a 3.1.1 return code to its 5.0 equivalent)
    session_present: bool
    props: Properties | None


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    props: Properties | None = field(default=None, repr=False)


class Paho:
    """A paho-mqtt client with blocking calls. Use as a context manager or call close()."""

    def __init__(self, port: int, client_id: str = "", version: int = V5, clean: bool = True,
                 keepalive: int = 60, username: str | None = None, password: str | None = None,
                 will: tuple | None = None, connect_props: Properties | None = None,
                 connect: bool = True, expect_ok: bool = True):
        self.port = port
        self.version = version
        self.client_id = client_id
        self._cond = threading.Condition()
        self.messages: list[Msg] = []
        self.connack: Connack | None = None
        self.disconnect_reason: int | None = None
        self.disconnected = threading.Event()
        self._acks: dict[int, object] = {}
        kw = {}
        if version != V5:
            kw["clean_session"] = clean
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=version, reconnect_on_failure=False, **kw)
        self._clean = clean
        self._keepalive = keepalive
        self._connect_props = connect_props
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:  # (topic, payload, qos, retain[, Properties])
            self.c.will_set(*will)
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe
        self.c.on_unsubscribe = self._on_unsubscribe
        self.c.on_publish = self._on_publish
        self.c.on_disconnect = self._on_disconnect
        if connect:
            ack = self.connect()
            if expect_ok:
                assert ack.reason == 0, f"{client_id!r}: CONNACK refused: {ack.reason:#x}"

    # callbacks (paho's network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            self.connack = Connack(int(reason_code.value), bool(flags.session_present),
                                   properties if self.version == V5 else None)
            self._cond.notify_all()

    def _on_message(self, client, userdata, m):
        with self._cond:
            self.messages.append(Msg(m.topic, bytes(m.payload), m.qos, bool(m.retain),
                                     bool(m.dup), getattr(m, "properties", None)))
            self._cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self._acks[mid] = [int(rc.value) for rc in reason_codes]
            self._cond.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        with self._cond:
            self._acks[mid] = [int(rc.value) for rc in reason_codes] if reason_codes else []
            self._cond.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        with self._cond:
            self._acks[mid] = int(reason_code.value)
            self._cond.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._cond:
            self.disconnect_reason = int(reason_code.value)
            self.disconnected.set()
            self._cond.notify_all()

    def _wait(self, pred, timeout: float, what: str):
        with self._cond:
            if not self._cond.wait_for(pred, timeout):
                raise AssertionError(f"{self.client_id!r}: timed out waiting for {what}")

    # blocking API
    def connect(self, clean: bool | None = None,
                connect_props: Properties | None = None) -> Connack:
        kw = {}
        if clean is not None:
            self._clean = clean
        if self.version == V5:
            kw["clean_start"] = self._clean
            p = connect_props if connect_props is not None else self._connect_props
            if p is not None:
                kw["properties"] = p
        else:
            self.c._clean_session = self._clean  # paho fixes it at construction for 3.1.1
        with self._cond:
            self.connack = None
            self.disconnected.clear()
            self.disconnect_reason = None
        self.c.loop_stop()  # the thread of a previous connection, if any, has ended
        self.c.connect("127.0.0.1", self.port, keepalive=self._keepalive, **kw)
        self.c.loop_start()
        self._wait(lambda: self.connack is not None or self.disconnected.is_set(), TIMEOUT,
                   "CONNACK")
        if self.connack is None:
            raise AssertionError(f"{self.client_id!r}: connection closed without CONNACK")
        return self.connack

    @property
    def assigned_id(self) -> str | None:
        p = self.connack.props if self.connack else None
        return getattr(p, "AssignedClientIdentifier", None) if p else None

    def subscribe(self, *filters, qos: int = 1, options: mqtt.SubscribeOptions | None = None,
                  sub_props: Properties | None = None) -> list[int]:
        """subscribe("a/#", ...) or subscribe(("a/#", 1), ("b", 0)); returns the SUBACK codes."""
        items = []
        for f in filters:
            if isinstance(f, tuple):
                items.append(f)
            elif options is not None:
                items.append((f, options))
            else:
                items.append((f, qos))
        kw = {"properties": sub_props} if sub_props is not None else {}
        if self.version != V5:
            items = [(t, o if isinstance(o, int) else o.QoS) for t, o in items]
        rc, mid = self.c.subscribe(items, **kw)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe not sent: {rc}"
        self._wait(lambda: mid in self._acks, TIMEOUT, f"SUBACK for {filters}")
        return self._acks.pop(mid)

    def unsubscribe(self, *filters) -> list[int]:
        rc, mid = self.c.unsubscribe(list(filters))
        assert rc == mqtt.MQTT_ERR_SUCCESS
        self._wait(lambda: mid in self._acks, TIMEOUT, "UNSUBACK")
        return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                props_: Properties | None = None, wait: bool = True) -> int | None:
        """Publish; for QoS 1/2 wait for PUBACK / PUBCOMP and return its reason code (5.0)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props_)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish not sent: {info.rc}"
        if not wait:
            return None
        self._wait(lambda: info.mid in self._acks, TIMEOUT, f"completion of publish to {topic}")
        return self._acks.pop(info.mid)

    def wait_messages(self, n: int, timeout: float = TIMEOUT,
                      topic: str | None = None) -> list[Msg]:
        """Wait until at least n messages (on topic, if given) arrived; return them all."""
        def sel():
            return [m for m in self.messages if topic is None or m.topic == topic]
        self._wait(lambda: len(sel()) >= n, timeout, f"{n} message(s) on {topic or 'any topic'}")
        with self._cond:
            return sel()

    def wait_for(self, topic: str, payload: bytes, timeout: float = TIMEOUT) -> Msg:
        """Wait for a message with this topic and payload (a sentinel)."""
        def find():
            return next((m for m in self.messages if m.topic == topic and m.payload == payload),
                        None)
        self._wait(lambda: find() is not None, timeout, f"{payload!r} on {topic}")
        return find()

    def wait_disconnected(self, timeout: float = TIMEOUT) -> int | None:
        assert self.disconnected.wait(timeout), f"{self.client_id!r}: still connected"
        return self.disconnect_reason

    def take(self) -> list[Msg]:
        with self._cond:
            got, self.messages = self.messages, []
            return got

    def disconnect(self, reason: int | None = None, props_: Properties | None = None):
        if self.disconnected.is_set():
            return
        kw = {}
        if reason is not None:
            kw["reasoncode"] = ReasonCode(PacketTypes.DISCONNECT, identifier=reason)
        if props_ is not None:
            kw["properties"] = props_
        self.c.disconnect(**kw)
        self.disconnected.wait(TIMEOUT)
        self.c.loop_stop()

    def close(self):
        try:
            self.disconnect()
        finally:
            self.c.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def sentinel_round_trip(port: int, topic: str, watcher: Paho, payload: bytes = b"sentinel"):
    """Publish `payload` on topic from a fresh client and wait until watcher has it: everything
    the broker routed to watcher before this is then in watcher.messages."""
    with Paho(port, f"sentinel-{time.monotonic_ns()}", V5) as p:
        p.publish(topic, payload, qos=1)
    return watcher.wait_for(topic, payload)


def assert_broker_serves(port: int, tag: str = "alive"):
    """New 3.1.1 and 5.0 clients still connect and complete a QoS 1 round trip (on a topic that
    tern's default device ACL allows too)."""
    for v in (V5, V3):
        cid = f"{tag}-{v}"
        with Paho(port, cid, v) as c:
            topic = f"fleet/{cid}/config"
            assert c.subscribe(topic, qos=1) == [1]
            c.publish(topic, b"still here", qos=1)
            assert c.wait_for(topic, b"still here").qos == 1


# ---- raw MQTT bytes ------------------------------------------------------------------------

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT, AUTH = range(8, 16)

# property ids (MQTT 5.0 section 2.2.2.2) and their value types
PROP_TYPES = {
    0x01: "u8", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint",
    0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "u8", 0x18: "u32",
    0x19: "u8", 0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16", 0x22: "u16", 0x23: "u16",
    0x24: "u8", 0x25: "u8", 0x26: "pair", 0x27: "u32", 0x28: "u8", 0x29: "u8", 0x2A: "u8",
}


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def prop(pid: int, value) -> bytes:
    """One 5.0 property, typed by PROP_TYPES (pair: a (key, value) tuple)."""
    t = PROP_TYPES[pid]
    if t == "u8":
        v = bytes([value])
    elif t == "u16":
        v = struct.pack("!H", value)
    elif t == "u32":
        v = struct.pack("!I", value)
    elif t == "varint":
        v = varint(value)
    elif t in ("str", "bin"):
        v = mstr(value)
    else:
        v = mstr(value[0]) + mstr(value[1])
    return bytes([pid]) + v


def proplist(*ps: bytes) -> bytes:
    body = b"".join(ps)
    return varint(len(body)) + body


def packet(type_flags: int, body: bytes) -> bytes:
    return bytes([type_flags]) + varint(len(body)) + body


def connect_packet(client_id: str | bytes = "", version: int = 4, clean: bool = True,
                   keepalive: int = 60, will: tuple | None = None, username: str | None = None,
                   password: bytes | None = None, props_: bytes = b"", will_props: bytes = b"",
                   proto_name: bytes = b"MQTT", flags_extra: int = 0) -> bytes:
    """CONNECT (version 4 = 3.1.1, 5 = 5.0). will = (topic, payload, qos, retain)."""
    flags = flags_extra | (0x02 if clean else 0)
    payload = mstr(client_id)
    if will is not None:
        topic, wpayload, wqos, wretain = will
        flags |= 0x04 | (wqos << 3) | (0x20 if wretain else 0)
        if version == 5:
            payload += varint(len(will_props)) + will_props
        payload += mstr(topic) + mstr(wpayload)
    if username is not None:
        flags |= 0x80
        payload += mstr(username)
    if password is not None:
        flags |= 0x40
        payload += mstr(password)
    var = mstr(proto_name) + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == 5:
        var += varint(len(props_)) + props_
    return packet(0x10, var + payload)


def publish_packet(topic: str | bytes, payload: bytes = b"", qos: int = 0, packet_id: int = 0,
                   retain: bool = False, dup: bool = False, version: int = 4,
                   props_: bytes = b"") -> bytes:
    body = mstr(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == 5:
        body += varint(len(props_)) + props_
    return packet(0x30 | (0x08 if dup else 0) | (qos << 1) | (1 if retain else 0), body + payload)


def ack_packet(ptype: int, packet_id: int, reason: int | None = None) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP; reason only for 5.0 (None: omitted, meaning 0)."""
    body = struct.pack("!H", packet_id) + (bytes([reason]) if reason is not None else b"")
    return packet((ptype << 4) | (0x02 if ptype == PUBREL else 0), body)


def subscribe_packet(packet_id: int, filters: list[tuple], version: int = 4,
                     props_: bytes = b"") -> bytes:
    """filters: [(filter, options byte)]; for 3.1.1 the options byte is the requested QoS."""
    body = struct.pack("!H", packet_id)
    if version == 5:
        body += varint(len(props_)) + props_
    for f, opts in filters:
        body += mstr(f) + bytes([opts])
    return packet(0x82, body)


def disconnect_packet(reason: int | None = None, props_: bytes = b"") -> bytes:
    if reason is None:
        return b"\xe0\x00"
    return packet(0xE0, bytes([reason]) + varint(len(props_)) + props_)


PINGREQ_BYTES = b"\xc0\x00"


def read_varint(b: bytes, i: int) -> tuple[int, int]:
    n, mult = 0, 1
    while True:
        byte = b[i]
        i += 1
        n += (byte & 0x7F) * mult
        if not byte & 0x80:
            return n, i
        mult *= 128


def parse_props(b: bytes, i: int) -> tuple[dict, int]:
    """Parse a 5.0 property list at b[i:]; returns ({id: [values]}, index after it)."""
    length, i = read_varint(b, i)
    end = i + length
    out: dict[int, list] = {}
    while i < end:
        pid = b[i]
        i += 1
        t = PROP_TYPES[pid]
        if t == "u8":
            v, i = b[i], i + 1
        elif t == "u16":
            v, i = struct.unpack_from("!H", b, i)[0], i + 2
        elif t == "u32":
            v, i = struct.unpack_from("!I", b, i)[0], i + 4
        elif t == "varint":
            v, i = read_varint(b, i)
        elif t in ("str", "bin"):
            n = struct.unpack_from("!H", b, i)[0]
            v, i = b[i + 2:i + 2 + n], i + 2 + n
        else:
            n = struct.unpack_from("!H", b, i)[0]
            k = b[i + 2:i + 2 + n]
            i += 2 + n
            n = struct.unpack_from("!H", b, i)[0]
            v, i = (k, b[i + 2:i + 2 + n]), i + 2 + n
        out.setdefault(pid, []).append(v)
    return out, end


@dataclass
class Packet:
    type: int
    flags: int
    body: bytes
    version: int = 4

    def __repr__(self):
        return f"Packet(type={self.type}, flags={self.flags:#x}, body={self.body[:40]!r})"

    # CONNACK
    @property
    def session_present(self) -> bool:
        return bool(self.body[0] & 1)

    @property
    def reason(self) -> int:
        """CONNACK return/reason code; PUBACK..PUBCOMP / DISCONNECT 5.0 reason (0 if omitted)."""
        if self.type == CONNACK:
            return self.body[1]
        if self.type == DISCONNECT:
            return self.body[0] if self.body else 0
        if self.type in (PUBACK, PUBREC, PUBREL, PUBCOMP):
            return self.body[2] if len(self.body) > 2 else 0
        raise ValueError(f"no reason code in packet type {self.type}")

    @property
    def packet_id(self) -> int:
        if self.type == PUBLISH:
            n = struct.unpack_from("!H", self.body, 0)[0]
            return struct.unpack_from("!H", self.body, 2 + n)[0] if self.qos else 0
        return struct.unpack_from("!H", self.body, 0)[0]

    @property
    def props(self) -> dict:
        """5.0 properties of CONNACK, PUBLISH, SUBACK, DISCONNECT."""
        if self.type == CONNACK:
            return parse_props(self.body, 2)[0] if len(self.body) > 2 else {}
        if self.type == PUBLISH:
            return parse_props(self.body, self._publish_props_at())[0]
        if self.type == SUBACK:
            return parse_props(self.body, 2)[0]
        if self.type == DISCONNECT:
            return parse_props(self.body, 1)[0] if len(self.body) > 1 else {}
        return {}

    # PUBLISH
    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 8)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 1)

    @property
    def topic(self) -> bytes:
        n = struct.unpack_from("!H", self.body, 0)[0]
        return self.body[2:2 + n]

    def _publish_props_at(self) -> int:
        n = struct.unpack_from("!H", self.body, 0)[0]
        return 2 + n + (2 if self.qos else 0)

    @property
    def payload(self) -> bytes:
        i = self._publish_props_at()
        if self.version == 5:
            _, i = parse_props(self.body, i)
        return self.body[i:]

    # SUBACK / UNSUBACK
    @property
    def codes(self) -> list[int]:
        i = 2
        if self.version == 5:
            _, i = parse_props(self.body, i)
        return list(self.body[i:])


class Closed(Exception):
    """The broker closed the connection."""


class Raw:
    """A raw MQTT connection. version is 4 (3.1.1) or 5 (5.0), used to parse replies."""

    def __init__(self, port: int, version: int = 4):
        self.version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.eof = False

    def send(self, data: bytes):
        self.sock.sendall(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the broker")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data from the broker") from None
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def recv_frame(self, timeout: float = TIMEOUT) -> bytes:
        """The next whole packet exactly as it came on the wire (fixed header included);
        raises Closed at end of stream, TimeoutError if none comes."""
        deadline = time.monotonic() + timeout
        while True:
            if len(self.buf) >= 2:
                try:
                    length, i = read_varint(self.buf, 1)
                except IndexError:
                    length, i = None, 0
                if length is not None and len(self.buf) >= i + length:
                    frame, self.buf = self.buf[:i + length], self.buf[i + length:]
                    return frame
            if self.eof:
                raise Closed()
            self._fill(deadline)

    def recv(self, timeout: float = TIMEOUT) -> Packet:
        """The next packet; raises Closed at end of stream, TimeoutError if none comes."""
        frame = self.recv_frame(timeout)
        _, i = read_varint(frame, 1)
        return Packet(frame[0] >> 4, frame[0] & 0x0F, frame[i:], self.version)

    def expect(self, ptype: int, timeout: float = TIMEOUT) -> Packet:
        p = self.recv(timeout)
        assert p.type == ptype, f"expected packet type {ptype}, got {p}"
        return p

    def connect(self, client_id: str = "", **kw) -> Packet:
        kw.setdefault("version", self.version)
        self.send(connect_packet(client_id, **kw))
        return self.expect(CONNACK)

    def wait_closed(self, timeout: float = TIMEOUT) -> list[Packet]:
        """Read until the broker closes the connection; return the packets it sent first."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.recv(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(f"the broker did not close the connection in {timeout}s; "
                                     f"got {got}") from None

    def is_open(self, timeout: float = 2.0) -> bool:
        """PINGREQ -> PINGRESP proves the connection is open and served."""
        try:
            self.send(PINGREQ_BYTES)
            while True:
                p = self.recv(timeout)
                if p.type == PINGRESP:
                    return True
        except (Closed, BrokenPipeError, ConnectionResetError):
            return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def expect_disconnect(got: list[Packet], reason):
    """The packets a 5.0 connection got before the broker closed it: tern promises a DISCONNECT
    with this reason (or one of these reasons) first (MQTT 5.0 4.13.2: SHOULD); any DISCONNECT
    sent must carry it."""
    allowed = {reason} if isinstance(reason, int) else set(reason)
    assert all(p.type == DISCONNECT for p in got), got
    assert all(p.reason in allowed for p in got), \
        f"DISCONNECT reason {[hex(p.reason) for p in got]}, expected {sorted(map(hex, allowed))}"
    if PEER == "tern":
        assert len(got) == 1, \
            f"expected DISCONNECT {sorted(map(hex, allowed))} before the close, got {got}"


def raw_connect(port: int, client_id: str, version: int = 4, **kw) -> Raw:
    """A Raw connection whose CONNECT was accepted."""
    r = Raw(port, version)
    ack = r.connect(client_id, **kw)
    assert ack.reason == 0, f"CONNACK refused {ack.reason:#x}"
    r.connack = ack
    return r


# ---- mosquitto_pub / mosquitto_sub ---------------------------------------------------------

def mosquitto_pub(port: int, *args: str, version: str = "mqttv311"):
    out = th.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-V", version, *args],
                 timeout_s=30)
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return out

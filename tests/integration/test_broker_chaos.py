"""tern broker under random protocol sequences: many clients of both versions doing valid,
unusual and broken things in random order, against the sanitizer build.

What the clients do: connect with wills, persistent sessions and 5.0 limits, and take each other's
sessions over (a small pool of client ids); subscribe with wildcards, shared groups, identifiers
and options; publish at every QoS with retain, topic aliases (valid and not), expiry and other
properties; acknowledge what they receive right, wrong, late or never; send byte-flipped,
truncated or padded packets; disconnect with any reason, or just hang up.

What the broker must do: never crash (a sanitizer report fails the test), keep serving new
clients, shut down cleanly (or be killed with SIGKILL, every other seed), and replay its journal
(sessions, queues, retained messages, wills) after it. The inputs come from a seeded generator, so a failure names the seed that replays the
same inputs. What each client receives is not checked here: the feature tests do that.
"""
import os
import random
import select
import socket
import struct

import pytest

from broker_fixture import (DISCONNECT, PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, BrokerNode,
                            assert_broker_serves, connect_packet, disconnect_packet, mstr,
                            packet, prop, publish_packet, read_varint, subscribe_packet, varint)

ACL = "topic readwrite #\n"
LIMITS = ["--set", "broker.max_queued=8", "--set", "broker.max_inflight=3",
          "--set", "broker.receive_maximum=4", "--set", "broker.topic_alias_maximum=3",
          "--set", "broker.max_packet_size=4KiB", "--set", "broker.max_topic_levels=6"]
CLIENT_IDS = [f"chaos{i}" for i in range(6)]
TOPICS = ["c/a", "c/b", "c/a/x", "c/b/y", "fleet/d1/t", "fleet/d2/t", "$c/s", "c/a/x/y/z/w",
          "c/é", "c/\u00ffz"]
FILTERS = ["c/#", "c/+", "c/a/+", "+/+/t", "#", "$c/#", "c/a/x", "+", "c/+/y", "fleet/#",
           "$share/g1/c/#", "$share/g2/fleet/+/t", "$share/g1/#", "c/a/x/y/z/w/v"]
# TERN_CHAOS_SEEDS=N runs seeds 0..N-1 (a soak run); make test runs 6.
SEEDS = range(int(os.environ.get("TERN_CHAOS_SEEDS", "6")))
ACTIONS_PER_SEED = 1500
SETTLE_EVERY = 5  # steps between short waits for the broker's answers


class Client:
    """One raw connection; it reads whatever arrives without waiting and may answer it."""

    def __init__(self, port: int, version: int):
        self.version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.sock.setblocking(False)
        self.buf = b""
        self.alive = True
        self.next_id = 1
        self.received_ids: list[int] = []  # packet ids of QoS 1/2 PUBLISHes from the broker

    def send(self, data: bytes) -> None:
        if not self.alive:
            return
        try:
            self.sock.setblocking(True)
            self.sock.settimeout(5)
            self.sock.sendall(data)
        except OSError:  # closed by the broker (as it should for much of what is sent)
            self.close()
        finally:
            if self.alive:
                self.sock.setblocking(False)

    def pid(self) -> int:
        self.next_id = self.next_id % 65535 + 1
        return self.next_id

    def drain(self, rng: random.Random) -> None:
        """Read what has arrived; answer a PUBLISH, PUBREC or PUBREL properly most of the time."""
        while self.alive:
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self.close()
                return
            self.buf += chunk
        while len(self.buf) >= 2:
            try:
                length, i = read_varint(self.buf, 1)
            except IndexError:
                return
            if len(self.buf) < i + length:
                return
            first, body = self.buf[0], self.buf[i:i + length]
            self.buf = self.buf[i + length:]
            ptype, qos = first >> 4, (first >> 1) & 3
            if ptype == PUBLISH and qos:
                tlen = struct.unpack_from("!H", body, 0)[0]
                pid = struct.unpack_from("!H", body, 2 + tlen)[0]
                self.received_ids.append(pid)
                if rng.random() < 0.8:
                    self.send(packet((PUBACK if qos == 1 else PUBREC) << 4,
                                     struct.pack("!H", pid)))
            elif ptype == PUBREL and rng.random() < 0.9:
                self.send(packet(PUBCOMP << 4, body[:2]))
            elif ptype == PUBREC and rng.random() < 0.8:  # our QoS 2 publish: release it
                self.send(packet(PUBREL << 4 | 2, body[:2]))
            elif ptype == DISCONNECT:
                self.close()
                return

    def close(self) -> None:
        self.alive = False
        try:
            self.sock.close()
        except OSError:
            pass


class Chaos:
    def __init__(self, port: int, seed: int):
        self.port = port
        self.rng = random.Random(seed)
        self.clients: dict[str, Client] = {}

    # ---- packets --------------------------------------------------------------------------

    def props_connect(self) -> bytes:
        r, out = self.rng, b""
        if r.random() < 0.6:
            out += prop(0x11, r.choice([0, 5, 3600, 0xFFFFFFFF]))  # session expiry
        if r.random() < 0.5:
            out += prop(0x21, r.randint(1, 5))  # receive maximum
        if r.random() < 0.4:
            out += prop(0x27, r.choice([20, 64, 128, 4096, 1 << 20]))  # maximum packet size
        if r.random() < 0.5:
            out += prop(0x22, r.randint(0, 3))  # topic alias maximum
        if r.random() < 0.2:
            out += prop(0x17, r.randint(0, 1))  # request problem information
        return out

    def connect(self, version: int) -> bytes:
        r = self.rng
        will, will_props = None, b""
        if r.random() < 0.5:
            will = (r.choice(TOPICS), r.randbytes(r.randint(0, 40)), r.randint(0, 2),
                    r.random() < 0.3)
            if version == 5 and r.random() < 0.5:
                will_props = prop(0x18, r.choice([0, 1, 30]))  # will delay
        return connect_packet(r.choice(CLIENT_IDS), version=version, clean=r.random() < 0.4,
                              keepalive=r.choice([0, 30, 60]), will=will,
                              props_=self.props_connect() if version == 5 else b"",
                              will_props=will_props)

    def publish(self, c: Client) -> bytes:
        r = self.rng
        qos = r.randint(0, 2)
        topic = r.choice(TOPICS)
        payload = r.randbytes(r.choice([0, 1, 30, 30, 300, 300, 5000]))
        props_ = b""
        if c.version == 5:
            if r.random() < 0.3:
                props_ += prop(0x23, r.choice([0, 1, 2, 3, 9]))  # topic alias, some invalid
                if r.random() < 0.5:
                    topic = ""
            if r.random() < 0.3:
                props_ += prop(0x02, r.choice([0, 1, 60]))  # message expiry
            if r.random() < 0.2:
                props_ += prop(0x01, 1)  # payload format: UTF-8 (random bytes often are not)
            if r.random() < 0.2:
                props_ += prop(0x08, r.choice(["c/reply", "c/#"]))  # response topic
            if r.random() < 0.2:
                props_ += prop(0x26, ("k", "v" * r.randint(0, 50)))
            if r.random() < 0.05:
                props_ += prop(0x0B, 7)  # subscription identifier: not for clients
        return publish_packet(topic, payload, qos=qos, packet_id=c.pid() if qos else 0,
                              retain=r.random() < 0.25, dup=r.random() < 0.1, version=c.version,
                              props_=props_)

    def subscribe(self, c: Client) -> bytes:
        r = self.rng
        filters = []
        for f in r.sample(FILTERS, r.randint(1, 3)):
            opts = r.randint(0, 2)
            if c.version == 5:
                opts |= (r.random() < 0.2) << 2 | (r.random() < 0.3) << 3 | r.randint(0, 2) << 4
            filters.append((f, opts))
        props_ = prop(0x0B, r.randint(1, 300)) if c.version == 5 and r.random() < 0.5 else b""
        return subscribe_packet(c.pid(), filters, version=c.version, props_=props_)

    def unsubscribe(self, c: Client) -> bytes:
        body = struct.pack("!H", c.pid())
        if c.version == 5:
            body += varint(0)
        for f in self.rng.sample(FILTERS, self.rng.randint(1, 2)):
            body += mstr(f)
        return packet(0xA2, body)

    def ack(self, c: Client) -> bytes:
        r = self.rng
        ptype = r.choice([PUBACK, PUBREC, PUBREL, PUBCOMP])
        pid = r.choice(c.received_ids) if c.received_ids and r.random() < 0.7 \
            else r.randint(1, 65535)
        reason = r.choice([None, 0, 0x80, 0x92]) if c.version == 5 else None
        body = struct.pack("!H", pid) + (bytes([reason]) if reason is not None else b"")
        return packet(ptype << 4 | (2 if ptype == PUBREL else 0), body)

    def disconnect(self, c: Client) -> bytes:
        if c.version != 5:
            return disconnect_packet()
        r = self.rng
        props_ = prop(0x11, r.choice([0, 10])) if r.random() < 0.3 else b""
        return disconnect_packet(r.choice([0, 0x04, 0x80, 0x83]), props_)

    def mangle(self, data: bytes) -> bytes:
        r = self.rng
        b = bytearray(data)
        how = r.randint(0, 3)
        if how == 0 and b:
            b[r.randrange(len(b))] ^= 1 << r.randrange(8)
        elif how == 1 and len(b) > 1:
            del b[r.randrange(1, len(b)):]
        elif how == 2:
            b += r.randbytes(r.randint(1, 8))
        else:
            b[0:1] = bytes([r.randrange(256)])
        return bytes(b)

    # ---- one step -------------------------------------------------------------------------

    def step(self) -> None:
        r = self.rng
        cid = r.choice(CLIENT_IDS)
        c = self.clients.get(cid)
        if c is None or not c.alive or r.random() < 0.04:
            if c is not None:
                c.close()
            version = r.choice([4, 5])
            c = self.clients[cid] = Client(self.port, version)
            c.send(self.connect(version) if r.random() < 0.95 else self.mangle(
                self.connect(version)))
            c.drain(r)
            return
        action = r.choices(["publish", "subscribe", "unsubscribe", "ack", "ping", "disconnect",
                            "hangup", "mangle", "drain"],
                           weights=[40, 8, 3, 8, 2, 2, 2, 6, 10])[0]
        if action == "publish":
            c.send(self.publish(c))
        elif action == "subscribe":
            c.send(self.subscribe(c))
        elif action == "unsubscribe":
            c.send(self.unsubscribe(c))
        elif action == "ack":
            c.send(self.ack(c))
        elif action == "ping":
            c.send(b"\xc0\x00")
        elif action == "disconnect":
            c.send(self.disconnect(c))
        elif action == "hangup":
            c.close()
        elif action == "mangle":
            c.send(self.mangle(r.choice([self.publish, self.subscribe, self.ack,
                                         self.unsubscribe])(c)))
        c.drain(r)

    def settle(self) -> None:
        """Wait briefly for answers and deliveries, so that acknowledgements flow both ways."""
        live = [c for c in self.clients.values() if c.alive]
        if not live:
            return
        readable, _, _ = select.select([c.sock for c in live], [], [], 0.01)
        for c in live:
            if c.sock in readable:
                c.drain(self.rng)

    def close_all(self) -> None:
        for c in self.clients.values():
            c.close()


@pytest.fixture
def node(start, tmp_path):
    """A broker with small limits on a data folder that survives its restarts."""
    return BrokerNode(start, tmp_path, *LIMITS, acl=ACL)


@pytest.mark.parametrize("seed", SEEDS)
def test_random_protocol_sequences(node, seed):
    svc = node.start().svc
    chaos = Chaos(svc.port, seed)
    for n in range(ACTIONS_PER_SEED):
        chaos.step()
        if n % SETTLE_EVERY == 0:
            chaos.settle()
    assert svc.proc.poll() is None, f"the broker died (seed {seed}):\n{svc.log_tail()}"
    assert_broker_serves(svc.port, f"after-chaos{seed}")
    chaos.close_all()
    if seed % 2:  # a crash: the journal is all there is
        svc.kill9()
    else:
        assert svc.stop() == 0, f"unclean shutdown (seed {seed}):\n{svc.log_tail()}"
    # Everything the chaos left in the journal must replay.
    again = node.start("tern-broker-restarted").svc
    assert_broker_serves(again.port, f"after-restart{seed}")
    assert again.stop() == 0, f"unclean shutdown after replay (seed {seed}):\n{again.log_tail()}"

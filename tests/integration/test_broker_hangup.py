"""tern broker: many clients hanging up at once (a gateway in front of them restarts, a process
holding their connections exits, their keepalives run out together). tern stops watching such a
connection at once and closes a few per loop iteration (src/broker/conn.c, "Closing a few at a
time"), so established clients keep being served; whatever the pace, every connection that died
without DISCONNECT must have its will published exactly once, a 5.0 client timed out must still
be told why, and a client that reconnects at once must find its session."""
import time

from broker_fixture import (CONNACK, PUBLISH, SUBACK, V3, Paho, Raw, broker,  # noqa: F401
                            connect_packet, expect_disconnect, make_broker, subscribe_packet)

N_CLIENTS = 300


def test_mass_hangup_publishes_every_will_once(broker):
    with Paho(broker.port, "will-watcher", V3) as watcher, \
            Paho(broker.port, "steady", V3) as steady:
        assert watcher.subscribe("hangup/will", qos=1) == [1]
        assert steady.subscribe("hangup/steady", qos=1) == [1]
        clients = []
        for i in range(N_CLIENTS):
            r = Raw(broker.port, 4)
            r.send(connect_packet(f"gone-{i}", version=4,
                                  will=("hangup/will", f"gone-{i}".encode(), 1, False)))
            clients.append(r)
        for r in clients:
            assert r.expect(CONNACK).reason == 0
        for r in clients:  # all at once, no DISCONNECT
            r.close()
        # an established client is served while the hang-ups are worked through
        steady.publish("hangup/steady", b"still here", qos=1)
        assert steady.wait_for("hangup/steady", b"still here").payload == b"still here"
        wills = watcher.wait_messages(N_CLIENTS, topic="hangup/will")
        payloads = sorted(m.payload for m in wills)
        assert payloads == sorted(f"gone-{i}".encode() for i in range(N_CLIENTS))
        # no will twice: a sentinel behind them, then the count again
        steady.publish("hangup/will", b"sentinel", qos=1)
        watcher.wait_for("hangup/will", b"sentinel")
        assert len(watcher.wait_messages(N_CLIENTS + 1, topic="hangup/will")) == N_CLIENTS + 1


def test_hangup_then_reconnect_at_once(broker):
    """A device drops and comes straight back with its persistent session (3.1.1, clean 0):
    whichever the broker handles first, the hang-up or the new CONNECT, the will goes out once,
    the session is present, and its subscription delivers."""
    with Paho(broker.port, "will-watcher-2", V3) as watcher:
        assert watcher.subscribe("hangup/will2", qos=1) == [1]
        for round_ in range(20):
            cid = f"bouncer-{round_}"
            r = Raw(broker.port, 4)
            r.send(connect_packet(cid, version=4, clean=False,
                                  will=("hangup/will2", cid.encode(), 1, False)))
            assert r.expect(CONNACK).reason == 0
            r.send(subscribe_packet(1, [(f"hangup/cmd/{cid}", 1)], version=4))
            assert r.expect(SUBACK).codes == [1]
            r.close()
            again = Raw(broker.port, 4)
            again.send(connect_packet(cid, version=4, clean=False))
            ack = again.expect(CONNACK)
            assert ack.reason == 0 and ack.session_present
            watcher.wait_for("hangup/will2", cid.encode())
            watcher.publish(f"hangup/cmd/{cid}", b"cmd", qos=1)
            p = again.expect(PUBLISH)
            assert (p.topic, p.payload) == (f"hangup/cmd/{cid}".encode(), b"cmd")
            again.close()  # this one's will is not set: nothing more is published
        watcher.publish("hangup/will2", b"sentinel", qos=1)
        watcher.wait_for("hangup/will2", b"sentinel")
        got = [m.payload for m in watcher.wait_messages(21, topic="hangup/will2")]
        assert sorted(got) == sorted([f"bouncer-{i}".encode() for i in range(20)] + [b"sentinel"])


def test_connections_gauge_returns_after_a_mass_hangup(make_broker):
    """$SYS/broker/clients/connected counts the hung-up connections until they are closed, and
    comes back to what it was once they are."""
    b = make_broker("--set", "broker.sys_interval=1s", acl="topic readwrite #\ntopic read $SYS/#\n")
    clients = []
    for i in range(200):
        r = Raw(b.port, 4)
        r.send(connect_packet(f"brief-{i}", version=4))
        clients.append(r)
    for r in clients:
        assert r.expect(CONNACK).reason == 0
    for r in clients:
        r.close()
    with Raw(b.port, 4) as watcher:
        assert watcher.connect("sys-watcher").reason == 0
        watcher.send(subscribe_packet(1, [("$SYS/broker/clients/connected", 0)]))
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            p = watcher.recv(timeout=max(0.1, deadline - time.monotonic()))
            # a live refresh (not the retained copy, which may predate the hang-up) saying the
            # watcher is alone
            if p.type == PUBLISH and not p.flags & 0x01 and p.payload == b"1":
                return
        raise AssertionError("$SYS/broker/clients/connected never came back to 1")


def test_keepalives_running_out_together(broker):
    """Clients that connected together and then go silent (a cell goes dark) time out together:
    each 5.0 client still gets DISCONNECT 0x8D (Keep Alive timeout) before its socket closes, and
    every will is published once."""
    n = 100
    with Paho(broker.port, "will-watcher-3", V3) as watcher:
        assert watcher.subscribe("hangup/will3", qos=1) == [1]
        clients = []
        for i in range(n):
            version = 5 if i % 2 else 4
            r = Raw(broker.port, version)
            r.send(connect_packet(f"silent-{i}", version=version, keepalive=1,
                                  will=("hangup/will3", f"silent-{i}".encode(), 1, False)))
            clients.append(r)
        for r in clients:
            assert r.expect(CONNACK).reason == 0
        for r in clients:  # 1.5 x the keepalive later, all at once
            got = r.wait_closed(timeout=30)
            if r.version == 5:
                expect_disconnect(got, 0x8D)
            else:
                assert got == []
            r.close()
        wills = watcher.wait_messages(n, topic="hangup/will3")
        assert sorted(m.payload for m in wills) == sorted(f"silent-{i}".encode() for i in range(n))

"""tern broker on several event loops (broker.loops): connections are dealt round robin across
the loops, so two clients that connect one right after the other live on different loops (with
2 loops) and everything between them crosses threads: delivery at every QoS, order, session
takeover, wills, shared subscriptions, shutdown. Each test runs with 2 and with 3 loops; the
broker must exit 0 at the end (a sanitizer build turns any race it sees into a failure)."""
import threading
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from broker_fixture import (TIMEOUT, V3, V5, Paho, make_broker, props,  # noqa
                            sentinel_round_trip, stop_broker)

LOOPS = [pytest.param(2, id="2loops"), pytest.param(3, id="3loops")]


def start(make_broker, loops):
    return make_broker("--set", f"broker.loops={loops}")


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_messages_cross_loops_in_order(make_broker, loops, qos):
    """A subscriber and a publisher on different loops: every message arrives, in order, at the
    published QoS."""
    b = start(make_broker, loops)
    with Paho(b.port, f"sub{qos}", V5) as sub, Paho(b.port, f"pub{qos}", V5) as pub:
        assert sub.subscribe("loops/order", qos=2) == [2]
        n = 300
        for i in range(n):
            pub.publish("loops/order", str(i).encode(), qos=qos, wait=(qos > 0 or i == n - 1))
        got = sub.wait_messages(n, topic="loops/order")
        assert [int(m.payload) for m in got] == list(range(n))
        assert {m.qos for m in got} == {qos}


@pytest.mark.parametrize("loops", LOOPS)
def test_fan_in_from_every_loop_into_a_shared_subscription(make_broker, loops):
    """Publishers spread over every loop, a shared subscription of 2 members on different loops:
    each QoS 1 message reaches exactly one member, none is lost."""
    b = start(make_broker, loops)
    members = [Paho(b.port, f"member{i}", V5) for i in range(2)]
    for m in members:
        assert m.subscribe("$share/g/loops/fan/+", qos=1) == [1]
    pubs = [Paho(b.port, f"fanpub{i}", V5) for i in range(2 * loops)]
    per = 100

    def run(i, p):
        for k in range(per):
            p.publish(f"loops/fan/{i}", f"{i}:{k}".encode(), qos=1)

    threads = [threading.Thread(target=run, args=(i, p)) for i, p in enumerate(pubs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    total = per * len(pubs)
    # Two clients share the total: wait on the sum (an event, polled; bounded by TIMEOUT).
    deadline = time.monotonic() + 3 * TIMEOUT
    while sum(len(m.messages) for m in members) < total and time.monotonic() < deadline:
        time.sleep(0.02)
    got = sorted(m.payload for mem in members for m in mem.messages)
    want = sorted(f"{i}:{k}".encode() for i in range(len(pubs)) for k in range(per))
    assert got == want, f"{len(got)} of {total} delivered"
    assert all(m.messages for m in members), "both members of the group got a share"
    for c in pubs + members:
        c.close()


@pytest.mark.parametrize("loops", LOOPS)
@pytest.mark.parametrize("version", [pytest.param(V3, id="v311"), pytest.param(V5, id="v5")])
def test_takeover_from_another_loop(make_broker, loops, version):
    """The same client id connects again from the next loop: the old connection is closed
    (5.0: DISCONNECT 0x8E), its will is published, and the new one resumes the session with
    what was queued for it."""
    b = start(make_broker, loops)
    watcher = Paho(b.port, "tk-watch", V5)
    assert watcher.subscribe("loops/will/#", qos=1) == [1]

    def connect(client_id):
        kw = {"clean": False, "will": ("loops/will/tk", b"gone", 1, False)}
        if version == V5:
            kw["connect_props"] = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
        return Paho(b.port, client_id, version, **kw)

    old = connect("tk")
    assert old.subscribe("loops/tk", qos=1) == [1]
    with Paho(b.port, "tk-pub", V5) as p:
        p.publish("loops/tk", b"before", qos=1)
    old.wait_for("loops/tk", b"before")
    new = connect("tk")  # the next connection: another loop
    assert new.connack.session_present is True
    reason = old.wait_disconnected()
    if version == V5:
        assert reason == 0x8E
    watcher.wait_for("loops/will/tk", b"gone")
    with Paho(b.port, "tk-pub2", V5) as p:
        p.publish("loops/tk", b"after", qos=1)
    new.wait_for("loops/tk", b"after")
    for c in (old, new, watcher):
        c.close()


@pytest.mark.parametrize("loops", LOOPS)
def test_offline_queue_resumed_on_another_loop(make_broker, loops):
    """A persistent session queued on one loop is resumed by a connection on the next one."""
    b = start(make_broker, loops)
    kw = {"clean": False,
          "connect_props": props(PacketTypes.CONNECT, SessionExpiryInterval=300)}
    s = Paho(b.port, "resume", V5, **kw)
    assert s.subscribe("loops/q", qos=1) == [1]
    s.disconnect()
    with Paho(b.port, "resume-pub", V5) as p:
        for i in range(50):
            p.publish("loops/q", str(i).encode(), qos=1)
    again = Paho(b.port, "resume", V5, **kw)
    assert again.connack.session_present is True
    got = again.wait_messages(50, topic="loops/q")
    assert [int(m.payload) for m in got[:50]] == list(range(50))
    again.close()


@pytest.mark.parametrize("loops", LOOPS)
def test_shutdown_tells_clients_on_every_loop(make_broker, loops):
    """SIGTERM: 5.0 clients on every loop get DISCONNECT 0x8B, and the broker exits 0."""
    b = start(make_broker, loops)
    clients = [Paho(b.port, f"down{i}", V5) for i in range(2 * loops)]
    assert clients[0].subscribe("loops/x", qos=1) == [1]
    sentinel_round_trip(b.port, "loops/x", clients[0])
    assert stop_broker(b) == 0
    for c in clients:
        assert c.wait_disconnected() == 0x8B
        c.close()

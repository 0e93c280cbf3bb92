"""Persistence of the broker across kill -9: persistent sessions with their subscriptions,
queued and in-flight QoS 1/2 messages, incoming QoS 2 state and retained messages are in the
journal (docs/formats/broker-store.md) before anything that depends on them is acknowledged.
A torn journal tail is dropped; a file that is not a journal stops the broker with a clear
error instead of being overwritten."""
import subprocess

import pytest

import tern_harness as th
from broker_fixture import (PUBACK, PUBCOMP, PUBLISH, PUBREC, SUBACK, BrokerNode, Raw, ack_packet,
                            prop, publish_packet, subscribe_packet)

ACL = "topic readwrite #\n"


@pytest.fixture
def node(start, tmp_path):
    return BrokerNode(start, tmp_path, acl=ACL).start()


def persistent_subscriber(port, client_id, topic, qos=1):
    r = Raw(port, 4)
    ack = r.connect(client_id, clean=False)
    r.send(subscribe_packet(1, [(topic, qos)]))
    assert r.expect(SUBACK).codes == [qos]
    return r, ack


def publish_acked(port, topic, payloads, qos=1):
    r = Raw(port, 4)
    r.connect("pub-" + topic.replace("/", "-"), clean=True)
    for i, p in enumerate(payloads, start=1):
        r.send(publish_packet(topic, p, qos=qos, packet_id=i))
        r.expect(PUBACK if qos == 1 else PUBREC)
        if qos == 2:
            r.send(ack_packet(6, i))  # PUBREL
            r.expect(PUBCOMP)
    r.close()


def drain(r, n):
    got = []
    while len(got) < n:
        p = r.recv()
        if p.type == PUBLISH:
            got.append(p)
            if p.qos == 1:
                r.send(ack_packet(PUBACK, p.packet_id))
            elif p.qos == 2:
                r.send(ack_packet(PUBREC, p.packet_id))
    return got


def test_queued_messages_survive_kill9(node):
    sub, ack = persistent_subscriber(node.port, "car42", "fleet/car42/cmd/#")
    assert not ack.session_present
    sub.close()
    payloads = [f"cmd-{i}".encode() for i in range(50)]
    publish_acked(node.port, "fleet/car42/cmd/lock", payloads)
    node.kill9()
    node.start()
    r = Raw(node.port, 4)
    assert r.connect("car42", clean=False).session_present
    got = drain(r, 50)
    assert [p.payload for p in got] == payloads
    # Nothing more, and the subscription itself survived: a new publish still arrives.
    publish_acked(node.port, "fleet/car42/cmd/horn", [b"after"])
    assert drain(r, 1)[0].payload == b"after"


def test_every_subscription_identifier_kept_across_kill9(node):
    """MQTT 5.0 3.3.4 ([MQTT-3.3.4-4]): one copy of a message that matches several overlapping
    subscriptions carries every one of their Subscription Identifiers: sent at once to an online
    client, and queued for an offline one, journaled, and sent after a kill -9 and restart."""
    filters = ["sid/a/b", "sid/+/b", "sid/a/+", "sid/#", "sid/a/#", "+/a/b", "+/+/+"]
    ids = [1, 7, 300, 16384, 2097151, 268435455, 42]
    r = Raw(node.port, 5)
    assert r.connect("sids", clean=False, props_=prop(0x11, 3600)).reason == 0
    for n, (f, i) in enumerate(zip(filters, ids), start=1):
        r.send(subscribe_packet(n, [(f, 1)], version=5, props_=prop(0x0B, i)))
        assert r.expect(SUBACK).codes == [1]
    publish_acked(node.port, "sid/a/b", [b"online"])
    m = r.expect(PUBLISH)
    assert (m.payload, sorted(m.props.get(0x0B))) == (b"online", sorted(ids))
    r.send(ack_packet(PUBACK, m.packet_id))
    r.close()
    publish_acked(node.port, "sid/a/b", [b"queued"])
    node.kill9()
    node.start()
    r = Raw(node.port, 5)
    assert r.connect("sids", clean=False, props_=prop(0x11, 3600)).session_present
    m = r.expect(PUBLISH)
    assert (m.payload, sorted(m.props.get(0x0B))) == (b"queued", sorted(ids))
    r.send(ack_packet(PUBACK, m.packet_id))
    r.close()


def test_unacknowledged_inflight_is_redelivered_with_dup(node):
    sub, _ = persistent_subscriber(node.port, "car7", "fleet/car7/cmd/#")
    publish_acked(node.port, "fleet/car7/cmd/x", [b"one", b"two"])
    first = [sub.expect(PUBLISH), sub.expect(PUBLISH)]
    assert [p.payload for p in first] == [b"one", b"two"]
    # Never PUBACKed: after a crash they come again, flagged DUP, with the same packet ids.
    node.kill9()
    sub.close()
    node.start()
    r = Raw(node.port, 4)
    assert r.connect("car7", clean=False).session_present
    again = [r.expect(PUBLISH), r.expect(PUBLISH)]
    assert [p.payload for p in again] == [b"one", b"two"]
    assert all(p.dup for p in again)
    assert [p.packet_id for p in again] == [p.packet_id for p in first]


def test_qos2_publish_is_delivered_once_across_a_crash(node):
    sub, _ = persistent_subscriber(node.port, "watcher", "fleet/+/event", qos=2)
    sub.close()
    pub = Raw(node.port, 4)
    pub.connect("car9", clean=False)
    pub.send(publish_packet("fleet/car9/event", b"overheat", qos=2, packet_id=77))
    pub.expect(PUBREC)
    node.kill9()  # before PUBREL
    pub.close()
    node.start()
    pub = Raw(node.port, 4)
    assert pub.connect("car9", clean=False).session_present
    pub.send(publish_packet("fleet/car9/event", b"overheat", qos=2, packet_id=77, dup=True))
    pub.expect(PUBREC)
    pub.send(ack_packet(6, 77))
    assert pub.expect(PUBCOMP).packet_id == 77
    r = Raw(node.port, 4)
    assert r.connect("watcher", clean=False).session_present
    got = drain(r, 1)
    assert got[0].payload == b"overheat"
    # Exactly once: a sentinel published after it is the very next message.
    publish_acked(node.port, "fleet/sentinel/event", [b"sentinel"])
    assert drain(r, 1)[0].payload == b"sentinel"


def test_retained_messages_survive_and_clear_is_durable(node):
    r = Raw(node.port, 4)
    r.connect("cfg", clean=True)
    r.send(publish_packet("fleet/car1/config", b"v1", qos=1, packet_id=1, retain=True))
    r.expect(PUBACK)
    r.send(publish_packet("fleet/car2/config", b"v2", qos=1, packet_id=2, retain=True))
    r.expect(PUBACK)
    r.send(publish_packet("fleet/car2/config", b"", qos=1, packet_id=3, retain=True))  # clear
    r.expect(PUBACK)
    node.kill9()
    node.start()
    s = Raw(node.port, 4)
    s.connect("reader", clean=True)
    s.send(subscribe_packet(1, [("fleet/+/config", 1)]))
    s.expect(SUBACK)
    got = drain(s, 1)
    assert (got[0].topic, got[0].payload, got[0].retain) == (b"fleet/car1/config", b"v1", True)
    publish_acked(node.port, "fleet/sentinel/config", [b"s"])
    assert drain(s, 1)[0].payload == b"s"  # car2's cleared message did not come back


def test_torn_journal_tail_is_dropped(node):
    sub, _ = persistent_subscriber(node.port, "car5", "fleet/car5/cmd/#")
    sub.close()
    publish_acked(node.port, "fleet/car5/cmd/a", [b"kept"])
    node.kill9()
    with open(node.journal, "ab") as f:  # a record cut short by the crash
        f.write(b"\x40\x00\x00\x00\x12\x34")
    node.start()
    assert "torn or corrupt tail" in node.svc.log_tail()
    r = Raw(node.port, 4)
    assert r.connect("car5", clean=False).session_present
    assert drain(r, 1)[0].payload == b"kept"


def test_a_file_that_is_not_a_journal_stops_the_broker(tmp_path):
    data = tmp_path / "data"
    (data / "broker").mkdir(parents=True)
    (data / "broker" / "journal").write_bytes(b"this is not a journal at all\n")
    out = subprocess.run([th.tern_bin(), "broker", "--listen", f"127.0.0.1:{th.free_port()}",
                          "--data", str(data), "--allow-anonymous"], capture_output=True,
                         timeout=30)
    assert out.returncode != 0
    assert b"is not a tern broker journal" in out.stderr
    assert (data / "broker" / "journal").read_bytes() == b"this is not a journal at all\n"

"""tern broker: PUBLISH at QoS 0/1/2 end to end (MQTT 3.1.1 sections 3.3-3.7 and 4.3-4.6,
MQTT 5.0 sections 3.3-3.7 and 4.3-4.6): delivery, per-topic ordering, overlapping subscriptions,
QoS downgrade, exactly-once for a QoS 2 PUBLISH re-sent with DUP, and redelivery of unacknowledged
messages on session resume."""
import pytest

from broker_fixture import (PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, V3, V5,  # noqa
                            VERSIONS, Paho, ack_packet, broker, make_broker, prop, publish_packet,
                            raw_connect, sentinel_round_trip, subscribe_packet)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_publish_end_to_end(broker, version, qos):
    """A message published at QoS q reaches a QoS 2 subscriber once, at QoS q, unchanged."""
    with Paho(broker.port, "sub", version) as s, Paho(broker.port, "pub", version) as p:
        assert s.subscribe("e2e/t", qos=2) == [2]
        payload = bytes(range(256)) * 4
        rc = p.publish("e2e/t", payload, qos=qos)
        if qos:
            assert rc == 0  # PUBACK / PUBCOMP success
        got = s.wait_messages(1)
        assert [(m.topic, m.payload, m.qos, m.retain) for m in got] == \
            [("e2e/t", payload, qos, False)]
        sentinel_round_trip(broker.port, "e2e/t", s)
        assert len(s.messages) == 2  # the message once, then the sentinel


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_ordering_per_topic(broker, version, qos):
    """[MQTT-4.6.0-5/6]: messages from one client on one topic arrive in the order sent."""
    n = 300
    with Paho(broker.port, "osub", version) as s, Paho(broker.port, "opub", version) as p:
        assert s.subscribe("order/t", qos=qos) == [qos]
        for i in range(n):
            p.publish("order/t", str(i).encode(), qos=qos, wait=False)
        got = s.wait_messages(n, timeout=30)
        assert [int(m.payload) for m in got] == list(range(n))
        assert {m.qos for m in got} == {qos}


@pytest.mark.parametrize("version", VERSIONS)
def test_overlapping_subscriptions_deliver_once_at_highest_qos(broker, version):
    """[MQTT-3.3.5-1] (5.0 [MQTT-3.3.4-2]): a message matching several subscriptions of one
    client is delivered respecting the maximum QoS of them; tern delivers one copy."""
    with Paho(broker.port, "ovsub", version) as s, Paho(broker.port, "ovpub", V5) as p:
        assert s.subscribe("ov/#", qos=0) == [0]
        assert s.subscribe("ov/+/b", qos=2) == [2]
        assert s.subscribe("ov/a/b", qos=1) == [1]
        p.publish("ov/a/b", b"once", qos=2)
        sentinel_round_trip(broker.port, "ov/a/b", s)
        got = [m for m in s.messages if m.payload == b"once"]
        assert [m.qos for m in got] == [2]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("granted,published,expected", [
    (0, 2, 0), (1, 2, 1), (0, 1, 0), (2, 0, 0), (2, 1, 1), (1, 0, 0)])
def test_qos_is_min_of_published_and_granted(broker, version, granted, published, expected):
    """[MQTT-3.8.4-6] / 5.0 3.8.4: delivered QoS = min(published QoS, granted QoS)."""
    with Paho(broker.port, "dsub", version) as s, Paho(broker.port, "dpub", version) as p:
        assert s.subscribe("down/t", qos=granted) == [granted]
        p.publish("down/t", b"m", qos=published)
        assert s.wait_messages(1)[0].qos == expected


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_qos2_exactly_once_when_publish_resent_with_dup(broker, version):
    """4.3.3 / [MQTT-4.3.3-2]: a publisher that lost the PUBREC re-sends the PUBLISH with DUP
    when it resumes its session ([MQTT-4.4.0-1]); the broker answers PUBREC again and must not
    deliver the message onwards twice. After PUBREL/PUBCOMP the packet id is free again."""
    expiry = prop(0x11, 300) if version == 5 else b""
    with Paho(broker.port, "q2sub", V5) as s:
        assert s.subscribe("q2/t", qos=2) == [2]
        r = raw_connect(broker.port, "q2pub", version, clean=False, props_=expiry)
        r.send(publish_packet("q2/t", b"first", qos=2, packet_id=7, version=version))
        rec = r.expect(PUBREC)
        assert rec.packet_id == 7 and rec.reason == 0
        if version == 4:  # 3.1.1 also allows a retransmission on the same connection
            r.send(publish_packet("q2/t", b"first", qos=2, packet_id=7, dup=True))
            assert r.expect(PUBREC).packet_id == 7
        r.close()  # as if the PUBREC was lost
        r = raw_connect(broker.port, "q2pub", version, clean=False, props_=expiry)
        assert r.connack.session_present
        r.send(publish_packet("q2/t", b"first", qos=2, packet_id=7, dup=True, version=version))
        rec = r.expect(PUBREC)
        assert rec.packet_id == 7 and rec.reason == 0
        r.send(ack_packet(PUBREL, 7))
        comp = r.expect(PUBCOMP)
        assert comp.packet_id == 7 and comp.reason == 0
        # id 7 again, after PUBCOMP: a new message
        r.send(publish_packet("q2/t", b"second", qos=2, packet_id=7, version=version))
        assert r.expect(PUBREC).packet_id == 7
        r.send(ack_packet(PUBREL, 7))
        assert r.expect(PUBCOMP).packet_id == 7
        r.close()
        sentinel_round_trip(broker.port, "q2/t", s)
        assert [m.payload for m in s.messages] == [b"first", b"second", b"sentinel"]


def test_pubrel_for_unknown_packet_id_v5(broker):
    """MQTT 5.0 3.7.2.1: PUBREL for an id with no QoS 2 state -> PUBCOMP 0x92 (Packet Identifier
    not found), and the connection stays up."""
    with raw_connect(broker.port, "rel5", 5) as r:
        r.send(ack_packet(PUBREL, 99))
        comp = r.expect(PUBCOMP)
        assert comp.packet_id == 99 and comp.reason == 0x92
        assert r.is_open()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_unacknowledged_qos1_redelivered_with_dup_on_resume(broker, version):
    """[MQTT-4.4.0-1]: on a resumed session (clean 0) the server re-sends unacknowledged QoS 1
    PUBLISH packets with their original packet ids and DUP set."""
    r = raw_connect(broker.port, "redeliver", version, clean=False,
                    props_=(prop(0x11, 300) if version == 5 else b""))
    r.send(subscribe_packet(1, [("rd/t", 1)], version=version))
    r.expect(SUBACK)  # SUBACK
    with Paho(broker.port, "rdpub", V5) as p:
        p.publish("rd/t", b"ack me", qos=1)
    first = r.expect(PUBLISH)
    assert first.payload == b"ack me" and first.qos == 1 and not first.dup
    r.close()  # no PUBACK
    r = raw_connect(broker.port, "redeliver", version, clean=False,
                    props_=(prop(0x11, 300) if version == 5 else b""))
    again = r.expect(PUBLISH)
    assert (again.payload, again.qos, again.dup, again.packet_id) == \
        (b"ack me", 1, True, first.packet_id)
    r.send(ack_packet(PUBACK, again.packet_id))
    assert r.is_open()
    r.close()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_qos2_pubrel_resent_on_resume(broker, version):
    """[MQTT-4.4.0-1]: a QoS 2 message that got PUBREC but no PUBCOMP is continued on resume by
    re-sending PUBREL (not the PUBLISH)."""
    expiry = prop(0x11, 300) if version == 5 else b""
    r = raw_connect(broker.port, "relresume", version, clean=False, props_=expiry)
    r.send(subscribe_packet(1, [("rr/t", 2)], version=version))
    r.expect(SUBACK)
    with Paho(broker.port, "rrpub", V5) as p:
        p.publish("rr/t", b"two", qos=2)
    pub = r.expect(PUBLISH)
    assert pub.qos == 2
    r.send(ack_packet(PUBREC, pub.packet_id))
    rel = r.expect(PUBREL)
    assert rel.packet_id == pub.packet_id
    r.close()  # no PUBCOMP
    r = raw_connect(broker.port, "relresume", version, clean=False, props_=expiry)
    rel = r.expect(PUBREL)
    assert rel.packet_id == pub.packet_id
    r.send(ack_packet(PUBCOMP, pub.packet_id))
    assert r.is_open()
    r.close()


def test_many_subscribers_each_get_every_message(broker):
    """Fan-out: every subscriber of a topic receives every message, in order."""
    subs = [Paho(broker.port, f"fan{i}", V3 if i % 2 else V5) for i in range(5)]
    try:
        for s in subs:
            assert s.subscribe("fan/+", qos=1) == [1]
        with Paho(broker.port, "fanpub", V5) as p:
            for i in range(50):
                p.publish("fan/x", str(i).encode(), qos=1, wait=False)
            for s in subs:
                assert [int(m.payload) for m in s.wait_messages(50)] == list(range(50))
    finally:
        for s in subs:
            s.close()


@pytest.mark.parametrize("loops", [1, 2])
def test_full_subscriber_queue_pushes_back_instead_of_dropping(make_broker, loops):
    """A subscriber that acknowledges slowly fills its window (max_inflight 2) and queue
    (max_queued 5): the broker stops reading the QoS 1 publisher (no PUBACK, TCP back-pressure)
    instead of dropping messages it would acknowledge. Every one of the 40 messages arrives, in
    order, and the publisher gets all 40 PUBACKs."""
    b = make_broker("--set", "broker.max_queued=5", "--set", "broker.max_inflight=2",
                    "--set", f"broker.loops={loops}")
    sub = raw_connect(b.port, "slow-sub", 5)
    sub.send(subscribe_packet(1, [("pb/t", 1)], version=5))
    sub.expect(SUBACK)
    n = 40
    with Paho(b.port, "fast-pub", V5) as pub:
        for i in range(n):
            pub.publish("pb/t", str(i).encode(), qos=1, wait=False)
        got = []
        while len(got) < n:
            p = sub.expect(PUBLISH)
            got.append(int(p.payload))
            sub.send(ack_packet(PUBACK, p.packet_id))
        assert got == list(range(n))
        pub.publish("pb/t", b"last", qos=1)  # completes: every earlier PUBACK came first
        assert sub.expect(PUBLISH).payload == b"last"
    sub.close()

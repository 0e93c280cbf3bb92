"""tern broker: CONNECT / CONNACK, keep alive and session takeover (MQTT 3.1.1 section 3.1-3.2,
MQTT 5.0 section 3.1-3.2), driven with paho 3.1.1 / 5.0 clients and raw sockets."""
import time

import pytest

from broker_fixture import (CONNACK, DISCONNECT, PINGRESP, V3, V5, Paho, Raw,  # noqa
                            assert_broker_serves, broker, connect_packet, expect_disconnect,
                            make_broker, packet, props,
                            publish_packet, raw_connect, stop_broker)
from paho.mqtt.packettypes import PacketTypes


def test_session_present_v311(broker):
    """[MQTT-3.2.2-1..3]: clean session -> 0; a stored session resumed -> 1."""
    c = Paho(broker.port, "sp3", V3, clean=False)
    assert c.connack.session_present is False
    c.disconnect()
    assert c.connect().session_present is True
    c.disconnect()
    assert c.connect(clean=True).session_present is False  # always 0; the session is discarded
    c.disconnect()
    # the clean connection removed the old session
    assert c.connect(clean=False).session_present is False
    c.close()


def test_session_present_v5(broker):
    """MQTT 5.0 3.2.2.1.1: Clean Start 0 with a stored session -> Session Present 1."""
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=300)
    c = Paho(broker.port, "sp5", V5, clean=False, connect_props=expiry)
    assert c.connack.session_present is False
    c.disconnect()
    assert c.connect().session_present is True
    c.disconnect()
    assert c.connect(clean=True).session_present is False
    c.close()


def test_empty_client_id_v311_clean_session_accepted(broker):
    """[MQTT-3.1.3-6]: a zero-byte client id with clean session 1 gets an id from the server."""
    with Raw(broker.port, 4) as r:
        ack = r.connect("", clean=True)
        assert (ack.body[0], ack.reason) == (0, 0)
        assert r.is_open()
    with Paho(broker.port, "", V3) as c:  # and it can work normally
        assert c.subscribe("anon/t", qos=1) == [1]
        c.publish("anon/t", b"x", qos=1)
        assert c.wait_messages(1)[0].payload == b"x"


def test_empty_client_id_v311_persistent_refused(broker):
    """[MQTT-3.1.3-8]: zero-byte client id with clean session 0 -> CONNACK 0x02, then close."""
    with Raw(broker.port, 4) as r:
        r.send(connect_packet("", version=4, clean=False))
        got = r.wait_closed()
        assert len(got) == 1 and got[0].type == CONNACK, got
        assert got[0].reason == 0x02
        assert got[0].session_present is False
    assert_broker_serves(broker.port)


def test_empty_client_id_v5_gets_assigned_client_identifier(broker):
    """MQTT 5.0 3.2.2.3.7: the server assigns an id and returns it in CONNACK."""
    with Paho(broker.port, "", V5) as a, Paho(broker.port, "", V5) as b:
        assert a.assigned_id and b.assigned_id
        assert a.assigned_id != b.assigned_id
        assert a.subscribe("assigned/t", qos=1) == [1]
        b.publish("assigned/t", b"hello", qos=1)
        assert a.wait_messages(1)[0].payload == b"hello"


@pytest.mark.parametrize("name,level", [(b"MQTT", 6), (b"MQTT", 3), (b"MQTT", 255)])
def test_unsupported_protocol_level_refused_with_code_1(broker, name, level):
    """[MQTT-3.1.2-2]: unsupported protocol level -> CONNACK return code 0x01, then close."""
    with Raw(broker.port, 4) as r:
        r.send(connect_packet("badlevel", version=level, proto_name=name))
        got = r.wait_closed()
        assert len(got) == 1 and got[0].type == CONNACK, got
        assert got[0].reason == 0x01
    assert_broker_serves(broker.port)


def test_wrong_protocol_name_closed(broker):
    """[MQTT-3.1.2-1]: a protocol name other than "MQTT" -> the connection is closed (a CONNACK,
    if any, refuses it)."""
    with Raw(broker.port, 4) as r:
        r.send(connect_packet("badname", version=4, proto_name=b"MQTX"))
        got = r.wait_closed()
        assert all(p.type == CONNACK and p.reason != 0 for p in got), got
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_second_connect_is_a_protocol_error(broker, version):
    """[MQTT-3.1.0-2]: a second CONNECT on a connection -> protocol violation, close.
    5.0 (4.13.2): DISCONNECT 0x82 before closing."""
    with Paho(broker.port, "watch2", V5) as watcher:
        with raw_connect(broker.port, "twice", version) as r:
            r.send(connect_packet("twice", version=version))
            got = r.wait_closed()
            if version == 4:
                assert got == []
            else:
                expect_disconnect(got, 0x82)
        assert watcher.subscribe("w/t", qos=1) == [1]
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("first", [
    pytest.param(b"\xc0\x00", id="pingreq"),
    pytest.param(publish_packet("a/b", b"x"), id="publish"),
    pytest.param(packet(0x82, b"\x00\x01\x00\x01a\x00"), id="subscribe"),
])
def test_first_packet_not_connect_closes(broker, first):
    """[MQTT-3.1.0-1]: the first packet from a client must be CONNECT; otherwise close."""
    with Raw(broker.port, 4) as r:
        r.send(first)
        assert r.wait_closed() == []
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_keepalive_enforced_and_will_published(broker, version):
    """[MQTT-3.1.2-24]: no packet within 1.5 x keep alive -> the server closes the connection
    (as a network failure, so the will is published, [MQTT-3.1.2-8]). With keep alive 1 s the
    close must come well within 10 s."""
    with Paho(broker.port, "ka-watch", V5) as w:
        assert w.subscribe("ka/will", qos=1) == [1]
        with raw_connect(broker.port, f"ka{version}", version, keepalive=1,
                         will=("ka/will", b"gone", 1, False)) as r:
            got = r.wait_closed(timeout=10)
            assert all(p.type == DISCONNECT and p.reason == 0x8D for p in got), got
        m = w.wait_for("ka/will", b"gone")
        assert m.qos == 1


def test_keepalive_respected_while_pinging(broker):
    """A client that sends PINGREQ well within its keep alive stays connected."""
    with raw_connect(broker.port, "pinger", 4, keepalive=2) as r:
        for _ in range(6):  # 6 x 0.5 s: three times the keep alive
            r.send(b"\xc0\x00")
            assert r.expect(PINGRESP).type == PINGRESP
            time.sleep(0.5)
        assert r.is_open()


def test_session_takeover_v5_old_client_gets_disconnect_0x8e(broker):
    """MQTT 5.0 [MQTT-3.1.4-3]: a second connection with the same client id -> the existing one
    gets DISCONNECT 0x8E (Session taken over) and is closed. (The old client is a raw socket:
    paho 2.1 reads a DISCONNECT of remaining length 1, reason code only, as reason 0x00.)"""
    with raw_connect(broker.port, "dup", 5) as old:
        with Paho(broker.port, "dup", V5) as new:
            expect_disconnect(old.wait_closed(), 0x8E)
            assert new.subscribe("takeover/t", qos=1) == [1]
            new.publish("takeover/t", b"new works", qos=1)
            assert new.wait_messages(1)[0].payload == b"new works"


def test_session_takeover_v311_closes_old_connection(broker):
    """[MQTT-3.1.4-2]: the server disconnects the existing client with the same id."""
    with raw_connect(broker.port, "dup3", 4) as old:
        with Paho(broker.port, "dup3", V3) as new:
            assert old.wait_closed() == []
            assert new.subscribe("takeover3/t", qos=1) == [1]


def test_takeover_resumes_subscriptions(broker):
    """[MQTT-3.1.2-4]: a persistent session taken over keeps its subscriptions."""
    with Paho(broker.port, "pub-to", V5) as p:
        a = Paho(broker.port, "resume", V3, clean=False)
        assert a.subscribe("resume/t", qos=1) == [1]
        b = Paho(broker.port, "resume", V3, clean=False)
        assert b.connack.session_present is True
        a.wait_disconnected()
        p.publish("resume/t", b"after takeover", qos=1)
        assert b.wait_messages(1)[0].payload == b"after takeover"
        b.close()
        a.close()


def test_sigterm_sends_v5_clients_disconnect_0x8b(make_broker):
    """docs/broker.md: on SIGTERM v5 clients get DISCONNECT 0x8B (Server shutting down), 3.1.1
    clients a close; the broker exits 0."""
    b = make_broker()
    v5 = raw_connect(b.port, "shut5", 5)
    v3 = raw_connect(b.port, "shut3", 4)
    assert stop_broker(b) == 0, b.log_tail()
    expect_disconnect(v5.wait_closed(), 0x8B)
    assert v3.wait_closed() == []
    v5.close()
    v3.close()

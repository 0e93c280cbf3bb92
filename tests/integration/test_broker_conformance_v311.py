"""tern broker: MQTT 3.1.1 conformance audit, the server-side normative statements (Appendix B,
MQTT-1.x to MQTT-4.x) that no other test file covered. Every test drives 3.1.1 clients (protocol
level 4; "MQIsdp" level 3 where the protocol name or level is the point) and cites the
statements it checks. The matrix of every statement and its test is in the audit's v311.md.

In 3.1.1 the server has no DISCONNECT: a protocol violation is answered by closing the network
connection ([MQTT-4.8.0-1]), and a CONNECT that does not conform to section 3.1 is closed without
any CONNACK ([MQTT-3.1.4-1])."""
import struct

import pytest

import tern_harness as th

from broker_fixture import (ALLOW_ALL, CONNACK, PINGRESP, PUBACK, PUBCOMP, PUBLISH,  # noqa
                            PUBREC, PUBREL, SUBACK, UNSUBACK, V3, V5, Closed, Paho, Raw,
                            ack_packet, assert_broker_serves, broker, connect_packet, make_broker,
                            mstr, packet, publish_packet, raw_connect, sentinel_round_trip,
                            subscribe_packet)

PINGREQ = b"\xc0\x00"


def unsubscribe_packet(packet_id: int, filters: list, flags: int = 0xA2) -> bytes:
    """3.1.1 UNSUBSCRIBE; filters are str or raw bytes."""
    return packet(flags, struct.pack("!H", packet_id) + b"".join(mstr(f) for f in filters))


def connect_raw(client_id: bytes, flags: int, fields: bytes = b"", name: bytes = b"MQTT",
                level: int = 4, keepalive: int = 60, first: int = 0x10) -> bytes:
    """A 3.1.1 CONNECT built field by field: flags as given, fields appended after the client id
    as they are (to build CONNECTs whose flags and payload disagree)."""
    var = mstr(name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    return packet(first, var + mstr(client_id) + fields)


def closed_without_connack(port: int, data: bytes):
    """[MQTT-3.1.4-1]: a CONNECT that does not conform -> the connection is closed, no CONNACK."""
    with Raw(port, 4) as r:
        r.send(data)
        got = r.wait_closed()
        assert got == [], f"expected a close without CONNACK, got {got}"
    assert_broker_serves(port)


def closed_after_connect(port: int, data: bytes, client_id: str = "violator"):
    """A connected 3.1.1 client sends data: the broker closes the connection and sends nothing
    first (3.1.1 has no server DISCONNECT); the broker keeps serving others."""
    with raw_connect(port, client_id, 4) as r:
        r.send(data)
        got = r.wait_closed()
        assert got == [], f"expected a plain close, got {got}"
    assert_broker_serves(port)


def drain_publishes(r: Raw, n: int) -> list:
    got = []
    while len(got) < n:
        p = r.recv()
        if p.type == PUBLISH:
            got.append(p)
    return got


# ---- 1.5.3 UTF-8 strings, 2.2.2 flags, 2.3.1 packet identifiers --------------------------------

BAD_UTF8 = [pytest.param(b"\xff\xfe", id="invalid-byte"), pytest.param(b"\xed\xa0\x80",
                                                                       id="surrogate"),
            pytest.param(b"\xc0\xaf", id="overlong"), pytest.param(b"a\x00b", id="nul"),
            pytest.param(b"\xf4\x90\x80\x80", id="above-10ffff"),
            pytest.param(b"\xe2\x82", id="truncated")]


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize("where", ["client-id", "will-topic", "username"])
def test_connect_string_not_utf8(broker, where, bad):
    """[MQTT-1.5.3-1/2], [MQTT-3.1.3-4] (client id), [MQTT-3.1.3-10] (will topic),
    [MQTT-3.1.3-11] (user name): an ill-formed UTF-8 string or U+0000 in CONNECT -> close,
    without CONNACK ([MQTT-3.1.4-1])."""
    if where == "client-id":
        data = connect_raw(b"id" + bad, 0x02)
    elif where == "will-topic":
        data = connect_raw(b"willutf", 0x02 | 0x04, mstr(b"w/" + bad) + mstr(b"x"))
    else:
        data = connect_raw(b"userutf", 0x02 | 0x80, mstr(b"u" + bad))
    closed_without_connack(broker.port, data)


@pytest.mark.parametrize("bad", BAD_UTF8)
@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
def test_topic_filter_not_utf8(broker, kind, bad):
    """[MQTT-1.5.3-1/2], [MQTT-3.8.3-1], [MQTT-3.10.3-1], [MQTT-4.7.3-2]: a topic filter that is
    not well-formed UTF-8, or holds U+0000 -> close."""
    f = b"f/" + bad
    data = subscribe_packet(1, [(f, 1)]) if kind == "subscribe" else unsubscribe_packet(1, [f])
    closed_after_connect(broker.port, data)


@pytest.mark.parametrize("version", [V3, V5], ids=["v311-sub", "v5-sub"])
def test_bom_is_not_stripped(broker, version):
    """[MQTT-1.5.3-3]: 0xEF 0xBB 0xBF is U+FEFF wherever it appears and must not be skipped or
    stripped: a topic with it is a different topic from the one without, and is delivered with
    it intact."""
    bom = "\ufeff"
    with Paho(broker.port, "with-bom", version) as a, Paho(broker.port, "no-bom", version) as b:
        assert a.subscribe(f"bom/{bom}x", qos=1) == [1]
        assert b.subscribe("bom/x", qos=1) == [1]
        with raw_connect(broker.port, "bompub", 4) as r:
            r.send(publish_packet(f"bom/{bom}x".encode(), b"marked", qos=1, packet_id=1))
            assert r.expect(PUBACK).packet_id == 1
        m = a.wait_for(f"bom/{bom}x", b"marked")
        assert m.topic.encode() == b"bom/\xef\xbb\xbfx"
        sentinel_round_trip(broker.port, "bom/x", b)
        assert [m.payload for m in b.messages] == [b"sentinel"]


@pytest.mark.parametrize("data", [
    pytest.param(b"\x41\x02\x00\x01", id="puback-flags-1"),
    pytest.param(b"\x52\x02\x00\x01", id="pubrec-flags-2"),
    pytest.param(b"\x72\x02\x00\x01", id="pubcomp-flags-2"),
    pytest.param(b"\x64\x02\x00\x01", id="pubrel-flags-4"),
    pytest.param(packet(0x8A, b"\x00\x01" + mstr("a") + b"\x00"), id="subscribe-flags-a"),
    pytest.param(packet(0xA3, b"\x00\x01" + mstr("a")), id="unsubscribe-flags-3"),
])
def test_reserved_fixed_header_flags(broker, data):
    """[MQTT-2.2.2-1/2], [MQTT-3.6.1-1], [MQTT-3.8.1-1], [MQTT-3.10.1-1]: fixed header flags
    other than the reserved values (PUBACK/PUBREC/PUBCOMP 0000, PUBREL/SUBSCRIBE/UNSUBSCRIBE
    0010) -> malformed, close. (Complements test_broker_malformed's cases.)"""
    closed_after_connect(broker.port, data)


def test_connect_fixed_header_flags_nonzero(broker):
    """[MQTT-2.2.2-1/2]: CONNECT's fixed header flags are reserved 0000; anything else -> close
    without CONNACK."""
    closed_without_connack(broker.port, connect_raw(b"cflags", 0x02, first=0x11))


def test_disconnect_reserved_bits_closes_and_keeps_will(broker):
    """[MQTT-3.14.1-1]: DISCONNECT with reserved flag bits set is not a DISCONNECT: the server
    disconnects the client, and as no valid DISCONNECT arrived the will is published
    ([MQTT-3.1.2-8])."""
    with Paho(broker.port, "dwatch", V5) as w:
        assert w.subscribe("dflags/will", qos=1) == [1]
        with raw_connect(broker.port, "dflags", 4, will=("dflags/will", b"bad bye", 1, False)) \
                as r:
            r.send(b"\xe1\x00")
            assert r.wait_closed() == []
        w.wait_for("dflags/will", b"bad bye")
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
def test_subscribe_unsubscribe_packet_id_zero(broker, kind):
    """[MQTT-2.3.1-1]: SUBSCRIBE and UNSUBSCRIBE need a non-zero packet identifier; 0 is a
    protocol violation -> close ([MQTT-4.8.0-1])."""
    data = subscribe_packet(0, [("pid0/t", 1)]) if kind == "subscribe" else \
        unsubscribe_packet(0, ["pid0/t"])
    closed_after_connect(broker.port, data)


def test_ack_packet_ids_match_requests(broker):
    """[MQTT-2.3.1-6/7], [MQTT-3.8.4-1/2], [MQTT-3.10.4-4/5/6], [MQTT-3.3.4-1]: PUBACK, PUBREC,
    SUBACK and UNSUBACK carry the identifier of the packet they answer; an UNSUBSCRIBE with three
    filters (one subscribed, two never) gets exactly one UNSUBACK."""
    with raw_connect(broker.port, "ids", 4) as r:
        r.send(subscribe_packet(0x1234, [("ids/a", 1)]))
        ack = r.expect(SUBACK)
        assert (ack.packet_id, ack.codes) == (0x1234, [1])
        r.send(publish_packet("ids/other", b"1", qos=1, packet_id=0xFFFF))
        assert r.expect(PUBACK).packet_id == 0xFFFF
        r.send(publish_packet("ids/other", b"2", qos=2, packet_id=0x0100))
        assert r.expect(PUBREC).packet_id == 0x0100
        r.send(ack_packet(PUBREL, 0x0100))
        assert r.expect(PUBCOMP).packet_id == 0x0100
        r.send(unsubscribe_packet(0xBEEF, ["never/1", "ids/a", "never/2"]))
        un = r.expect(UNSUBACK)
        assert (un.packet_id, len(un.body)) == (0xBEEF, 2)
        r.send(unsubscribe_packet(0x0001, ["never/3"]))  # nothing to delete: UNSUBACK anyway
        assert r.expect(UNSUBACK).packet_id == 0x0001
        r.send(PINGREQ)
        assert r.expect(PINGRESP).type == PINGRESP  # no second UNSUBACK came before


def test_server_packet_ids_unique_and_resent_in_order(broker):
    """[MQTT-2.3.1-4], [MQTT-4.3.2-1]: the server gives each QoS 1 message in flight to a client
    its own non-zero packet identifier, and sends it first with DUP 0; [MQTT-4.4.0-1] /
    [MQTT-4.6.0-1] (via [MQTT-4.6.0-6]): on session resume the unacknowledged ones are re-sent
    with the same identifiers, DUP 1, in the original order."""
    r = raw_connect(broker.port, "inflight", 4, clean=False)
    r.send(subscribe_packet(1, [("inf/t", 1)]))
    r.expect(SUBACK)
    with Paho(broker.port, "infpub", V3) as p:
        for i in range(5):
            p.publish("inf/t", str(i).encode(), qos=1)
    first = drain_publishes(r, 5)
    assert [p.payload for p in first] == [str(i).encode() for i in range(5)]
    ids = [p.packet_id for p in first]
    assert 0 not in ids and len(set(ids)) == 5, ids
    assert not any(p.dup for p in first)
    r.close()  # nothing acknowledged
    r = raw_connect(broker.port, "inflight", 4, clean=False)
    again = drain_publishes(r, 5)
    assert [(p.payload, p.packet_id, p.dup, p.qos) for p in again] == \
        [(p.payload, p.packet_id, True, 1) for p in first]
    for p in again:
        r.send(ack_packet(PUBACK, p.packet_id))
    assert r.is_open()
    r.close()


def test_server_does_not_reuse_packet_ids_still_in_flight(broker):
    """[MQTT-2.3.1-4], [MQTT-4.3.2-1], [MQTT-4.3.3-1]: an identifier is free again only after
    PUBACK (QoS 1) or PUBCOMP (QoS 2): while one QoS 1 message waits for PUBACK and one QoS 2
    message waits for PUBCOMP (PUBREL sent), many further deliveries never use their ids."""
    with raw_connect(broker.port, "busy-ids", 4) as r:
        r.send(subscribe_packet(1, [("bi/1", 1), ("bi/2", 2), ("bi/more", 1)]))
        r.expect(SUBACK)
        with Paho(broker.port, "bipub", V3) as p:
            p.publish("bi/1", b"held 1", qos=1)
            p.publish("bi/2", b"held 2", qos=2)
            held = {m.topic: m.packet_id for m in drain_publishes(r, 2)}
            r.send(ack_packet(PUBREC, held[b"bi/2"]))
            assert r.expect(PUBREL).packet_id == held[b"bi/2"]
            seen = []
            for i in range(100):
                p.publish("bi/more", str(i).encode(), qos=1, wait=False)
            while len(seen) < 100:
                m = r.expect(PUBLISH)
                seen.append(m.packet_id)
                r.send(ack_packet(PUBACK, m.packet_id))
            assert not set(seen) & set(held.values()), (held, seen)
            r.send(ack_packet(PUBACK, held[b"bi/1"]) + ack_packet(PUBCOMP, held[b"bi/2"]))
            assert r.is_open()


def test_qos0_delivery_has_no_packet_id_and_no_dup(broker):
    """[MQTT-2.3.1-5], [MQTT-3.3.1-2], [MQTT-4.3.1-1]: a QoS 0 PUBLISH from the server has no
    packet identifier and DUP 0; [MQTT-3.3.1-3]: the DUP flag of the incoming PUBLISH is not
    passed on (a first QoS 1 delivery has DUP 0 even if the publisher set DUP)."""
    with raw_connect(broker.port, "sub0", 4) as s0, raw_connect(broker.port, "sub1", 4) as s1:
        s0.send(subscribe_packet(1, [("dup/t", 0)]))
        assert s0.expect(SUBACK).codes == [0]
        s1.send(subscribe_packet(1, [("dup/t", 1)]))
        assert s1.expect(SUBACK).codes == [1]
        with raw_connect(broker.port, "duppub", 4) as p:
            p.send(publish_packet("dup/t", b"dup set", qos=1, packet_id=3, dup=True))
            assert p.expect(PUBACK).packet_id == 3
        m0 = s0.expect(PUBLISH)
        assert (m0.qos, m0.dup, m0.retain) == (0, False, False)
        assert m0.body == mstr("dup/t") + b"dup set"  # topic, then the payload: no packet id
        m1 = s1.expect(PUBLISH)
        assert (m1.qos, m1.dup, m1.payload) == (1, False, b"dup set")
        s1.send(ack_packet(PUBACK, m1.packet_id))
        assert s1.is_open()


# ---- 3.1 CONNECT ------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    pytest.param(packet(0x10, mstr(b"MQTT") + b"\x04\x02\x00\x3c"), id="no-client-id"),
    pytest.param(connect_raw(b"will-missing", 0x02 | 0x04), id="will-flag-without-will"),
    pytest.param(connect_raw(b"will-half", 0x02 | 0x04, mstr(b"w/t")),
                 id="will-flag-without-will-message"),
    pytest.param(connect_raw(b"will-q1", 0x02 | 0x08), id="will-qos-1-without-will"),
    pytest.param(connect_raw(b"will-q2", 0x02 | 0x10), id="will-qos-2-without-will"),
    pytest.param(connect_raw(b"will-fields", 0x02, mstr(b"w/t") + mstr(b"x")),
                 id="will-fields-without-will-flag"),
    pytest.param(connect_raw(b"will-empty", 0x02 | 0x04, mstr(b"") + mstr(b"x")),
                 id="will-topic-empty"),
    pytest.param(connect_raw(b"will-wild", 0x02 | 0x04, mstr(b"w/+") + mstr(b"x")),
                 id="will-topic-wildcard"),
    pytest.param(connect_raw(b"user-missing", 0x02 | 0x80), id="username-flag-without-name"),
    pytest.param(connect_raw(b"user-extra", 0x02, mstr(b"someone")),
                 id="username-without-flag"),
    pytest.param(connect_raw(b"pw-missing", 0x02 | 0x80 | 0x40, mstr(b"u")),
                 id="password-flag-without-password"),
    pytest.param(connect_raw(b"pw-extra", 0x02 | 0x80, mstr(b"u") + mstr(b"pw")),
                 id="password-without-flag"),
])
def test_nonconforming_connect_closed_without_connack(broker, data):
    """[MQTT-3.1.4-1]: a CONNECT that breaks section 3.1 -> close without any CONNACK:
    [MQTT-3.1.3-3] client id missing, [MQTT-3.1.2-9] will flag without will topic / message,
    [MQTT-3.1.2-11/13] will QoS without will flag, [MQTT-3.1.2-11] will fields without the flag,
    [MQTT-4.7.3-1] / [MQTT-4.7.1-1] an empty or wildcard will topic, [MQTT-3.1.2-18..21] user
    name and password present exactly when their flags say so."""
    closed_without_connack(broker.port, data)


@pytest.mark.parametrize("data", [
    pytest.param(connect_packet("reserved", flags_extra=0x01), id="reserved-flag"),
    pytest.param(connect_packet("wq3", will=("w/t", b"x", 3, False)), id="will-qos-3"),
    pytest.param(connect_packet("pwonly", password=b"secret"), id="password-without-user"),
    pytest.param(connect_packet("wret", flags_extra=0x20), id="will-retain-without-will"),
])
def test_malformed_connect_has_no_connack(broker, data):
    """[MQTT-3.1.4-1] with [MQTT-3.1.2-3/14/15/22]: test_broker_malformed checks these CONNECTs
    are refused but allows a refusing CONNACK; 3.1.1 says no CONNACK at all."""
    closed_without_connack(broker.port, data)


def test_mqisdp_level_3(broker):
    """[MQTT-3.1.2-1/2]: "MQIsdp" level 3 is MQTT 3.1. A server that does not support it answers
    CONNACK 0x01 (unacceptable protocol level) and closes; one that does accepts it as 3.1."""
    with Raw(broker.port, 4) as r:
        r.send(connect_packet("old31", version=3, proto_name=b"MQIsdp"))
        ack = r.expect(CONNACK)
        assert ack.reason in (0x00, 0x01), ack
        assert ack.session_present is False
        if ack.reason == 0x01:
            assert r.wait_closed() == []
        else:
            assert r.is_open()
    assert_broker_serves(broker.port)


def test_mqisdp_name_with_level_4_not_processed_as_311(broker):
    """[MQTT-3.1.2-1]: protocol name "MQIsdp" with level 4 is not a 3.1.1 CONNECT: the server
    must not process it as one: close (a CONNACK, if any, refuses)."""
    with Raw(broker.port, 4) as r:
        r.send(connect_packet("mixed", version=4, proto_name=b"MQIsdp"))
        got = r.wait_closed()
        assert all(p.type == CONNACK and p.reason != 0 for p in got), got
    assert_broker_serves(broker.port)


def test_will_flag_0_nothing_published_on_close(broker):
    """[MQTT-3.1.2-12]: no will flag -> nothing is published when the connection drops."""
    with Paho(broker.port, "nowill-watch", V5) as w:
        assert w.subscribe("#", qos=1) == [1]
        r = raw_connect(broker.port, "nowill", 4)
        assert r.is_open()
        r.close()
        with raw_connect(broker.port, "nowill", 4, clean=True) as r2:  # the close was handled
            assert r2.is_open()
        sentinel_round_trip(broker.port, "nowill/sentinel", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


def test_will_retain_0_published_not_retained(broker):
    """[MQTT-3.1.2-16]: Will Retain 0 -> the will is published as a non-retained message: a
    subscriber that comes later gets nothing."""
    with Paho(broker.port, "wr0-watch", V5) as w:
        assert w.subscribe("wr0/will", qos=1) == [1]
        r = raw_connect(broker.port, "wr0", 4, will=("wr0/will", b"once", 1, False))
        r.close()
        w.wait_for("wr0/will", b"once")
    with Paho(broker.port, "wr0-late", V3) as late:
        assert late.subscribe("wr0/will", qos=1) == [1]
        sentinel_round_trip(broker.port, "wr0/will", late)
        assert [(m.payload, m.retain) for m in late.messages] == [(b"sentinel", False)]


def test_will_published_once(broker):
    """[MQTT-3.1.2-10]: once published the will is gone: the session resumed by a connection
    without a will and dropped again publishes nothing."""
    with Paho(broker.port, "once-watch", V5) as w:
        assert w.subscribe("once/will", qos=1) == [1]
        r = raw_connect(broker.port, "once", 4, clean=False, will=("once/will", b"1st", 1, False))
        r.close()
        w.wait_for("once/will", b"1st")
        r = raw_connect(broker.port, "once", 4, clean=False)
        assert r.connack.session_present
        r.close()
        with raw_connect(broker.port, "once", 4, clean=False) as r:  # the close was handled
            assert r.is_open()
        sentinel_round_trip(broker.port, "once/will", w)
        assert [m.payload for m in w.messages] == [b"1st", b"sentinel"]


def test_will_published_when_server_closes_for_a_protocol_violation(broker):
    """[MQTT-3.1.2-8] (3.1.2.5): a connection the server closes because of a protocol error
    ended without DISCONNECT, so its will is published."""
    with Paho(broker.port, "pv-watch", V5) as w:
        assert w.subscribe("pv/will", qos=1) == [1]
        with raw_connect(broker.port, "pv", 4, will=("pv/will", b"violated", 1, False)) as r:
            r.send(packet(0x36, mstr("pv/t") + b"\x00\x01x"))  # QoS 3
            assert r.wait_closed() == []
        w.wait_for("pv/will", b"violated")


def test_client_ids_of_1_to_23_allowed_characters_accepted(broker):
    """[MQTT-3.1.3-5]: the server must accept client ids of 1 to 23 bytes made of 0-9, a-z,
    A-Z."""
    chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    ids = ["a", "Z", "7", chars[:23], chars[23:46], chars[-23:], "0" * 23]
    for cid in ids:
        with Raw(broker.port, 4) as r:
            ack = r.connect(cid, clean=False)
            assert (ack.reason, ack.session_present) == (0, False), cid
            assert r.is_open()


def test_empty_client_ids_get_unique_ids(broker):
    """[MQTT-3.1.3-6]: each client with a zero-byte id gets its own unique id: two of them at
    once do not take each other over, and each gets only its own messages."""
    with Raw(broker.port, 4) as a, Raw(broker.port, 4) as b:
        assert a.connect("", clean=True).reason == 0
        assert b.connect("", clean=True).reason == 0
        assert a.is_open() and b.is_open()
        a.send(subscribe_packet(1, [("anon/a", 1)]))
        a.expect(SUBACK)
        b.send(subscribe_packet(1, [("anon/b", 1)]))
        b.expect(SUBACK)
        with Paho(broker.port, "anonpub", V3) as p:
            p.publish("anon/a", b"to a", qos=1)
            p.publish("anon/b", b"to b", qos=1)
        assert a.expect(PUBLISH).payload == b"to a"
        assert b.expect(PUBLISH).payload == b"to b"


@pytest.mark.parametrize("refusal", [
    pytest.param(lambda: connect_packet("", version=4, clean=False), id="empty-id-persistent"),
    pytest.param(lambda: connect_packet("refused", version=3), id="level-3"),
])
def test_data_after_refused_connect_not_processed(broker, refusal):
    """[MQTT-3.1.4-5]: after refusing a CONNECT the server must not process what the client sent
    after it: a retained PUBLISH in the same write is neither delivered nor stored;
    [MQTT-3.2.2-4/5]: the refusal has Session Present 0 and is followed by a close."""
    with Paho(broker.port, "refwatch", V5) as w:
        assert w.subscribe("refused/t", qos=1) == [1]
        with Raw(broker.port, 4) as r:
            r.send(refusal() + publish_packet("refused/t", b"smuggled", qos=1, packet_id=1,
                                              retain=True) + PINGREQ)
            got = r.wait_closed()
            assert [p.type for p in got] == [CONNACK], got
            assert got[0].reason != 0 and got[0].session_present is False
        sentinel_round_trip(broker.port, "refused/t", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]
    with Paho(broker.port, "reflate", V3) as late:
        assert late.subscribe("refused/t", qos=1) == [1]
        sentinel_round_trip(broker.port, "refused/t", late, b"sentinel2")
        assert [m.payload for m in late.messages] == [b"sentinel2"]


def test_refused_connect_for_stored_session_has_session_present_0(broker):
    """[MQTT-3.2.2-4/5]: a refusing CONNACK has Session Present 0 even when the client id has a
    stored session, and the connection is closed; the session itself is untouched."""
    s = Paho(broker.port, "stored", V3, clean=False)
    assert s.subscribe("stored/t", qos=1) == [1]
    s.close()
    with Raw(broker.port, 4) as r:
        r.send(connect_packet("stored", version=3, clean=False))
        got = r.wait_closed()
        assert [(p.type, p.reason, p.session_present) for p in got] == [(CONNACK, 1, False)]
    assert s.connect(clean=False).session_present is True
    s.close()


def test_connack_is_the_first_packet_from_the_server(broker):
    """[MQTT-3.2.0-1]: the first packet the server sends is CONNACK, even when the client
    pipelines packets behind its CONNECT and its resumed session has messages queued."""
    s = Paho(broker.port, "first", V3, clean=False)
    assert s.subscribe("first/t", qos=1) == [1]
    s.close()
    with Paho(broker.port, "firstpub", V3) as p:
        for i in range(3):
            p.publish("first/t", str(i).encode(), qos=1)
    with Raw(broker.port, 4) as r:
        r.send(connect_packet("first", version=4, clean=False) + PINGREQ
               + subscribe_packet(9, [("first/other", 0)]))
        ack = r.recv()
        assert ack.type == CONNACK, ack
        assert (ack.reason, ack.session_present) == (0, True)
        got = [r.recv() for _ in range(5)]
        assert sorted(p.type for p in got) == sorted([PUBLISH] * 3 + [PINGRESP, SUBACK]), got


# ---- 3.3 PUBLISH, retained messages -----------------------------------------------------------

def test_qos0_retained_replaces_previous_retained(broker):
    """[MQTT-3.3.1-7]: a QoS 0 retained PUBLISH discards the message retained before it (the new
    one SHOULD be kept but MAY be dropped later: never the old one)."""
    with Paho(broker.port, "r0pub", V3) as p:
        p.publish("r0/t", b"old", qos=1, retain=True)
        p.publish("r0/t", b"new", qos=0, retain=True)
        p.publish("r0/sync", b"s", qos=1)  # the QoS 0 one was handled before this PUBACK
    with Paho(broker.port, "r0sub", V3) as s:
        assert s.subscribe("r0/t", qos=1) == [1]
        sentinel_round_trip(broker.port, "r0/t", s)
        got = [(m.payload, m.qos, m.retain) for m in s.messages if m.payload != b"sentinel"]
        assert got in ([(b"new", 0, True)], []), got


def test_non_retained_publish_leaves_retained_alone(broker):
    """[MQTT-3.3.1-12]: RETAIN 0 -> the server neither stores the message nor removes or
    replaces the retained one (also with an empty payload)."""
    with Paho(broker.port, "nrpub", V3) as p:
        p.publish("nr/t", b"kept", qos=1, retain=True)
        p.publish("nr/t", b"live", qos=1, retain=False)
        p.publish("nr/t", b"", qos=1, retain=False)
        p.publish("nr/u", b"not stored", qos=1, retain=False)
    with Paho(broker.port, "nrsub", V3) as s:
        assert s.subscribe(("nr/t", 1), ("nr/u", 1)) == [1, 1]
        sentinel_round_trip(broker.port, "nr/t", s)
        assert [(m.topic, m.payload, m.retain) for m in s.messages] == \
            [("nr/t", b"kept", True), ("nr/t", b"sentinel", False)]


def test_empty_retained_publish_delivered_to_current_subscribers(broker):
    """[MQTT-3.3.1-10]: a retained PUBLISH with a zero-byte payload is processed as normal: the
    current subscribers get it (RETAIN 0, [MQTT-3.3.1-9]); [MQTT-3.3.1-11]: it is not
    stored."""
    with Paho(broker.port, "ersub", V3) as s, Paho(broker.port, "erpub", V3) as p:
        assert s.subscribe("er/t", qos=1) == [1]
        p.publish("er/t", b"value", qos=1, retain=True)
        p.publish("er/t", b"", qos=1, retain=True)
        got = s.wait_messages(2)
        assert [(m.payload, m.retain, m.qos) for m in got] == [(b"value", False, 1),
                                                              (b"", False, 1)]
    with Paho(broker.port, "erlate", V3) as late:
        assert late.subscribe("er/t", qos=1) == [1]
        sentinel_round_trip(broker.port, "er/t", late)
        assert [m.payload for m in late.messages] == [b"sentinel"]


def test_retained_publish_queued_for_offline_session_has_retain_0(broker):
    """[MQTT-3.3.1-9]: a retained PUBLISH that matches an established subscription is forwarded
    with RETAIN 0, also when it waited in the queue of an offline persistent session (it is not
    sent "as a result of a new subscription")."""
    s = Paho(broker.port, "offret", V3, clean=False)
    assert s.subscribe("offret/t", qos=1) == [1]
    s.disconnect()
    with Paho(broker.port, "offretpub", V3) as p:
        p.publish("offret/t", b"while away", qos=1, retain=True)
    assert s.connect(clean=False).session_present is True
    m = s.wait_for("offret/t", b"while away")
    assert (m.retain, m.qos) == (False, 1)
    s.close()


RETAINED_TOPICS = ["sport", "sport/", "sport/tennis", "sport/tennis/player1",
                   "sport/tennis/player1/ranking", "sport/tennis/player2", "/finance", "finance",
                   "/", "a//b", "a/b/c"]
RETAINED_MATCHES = {
    "sport/tennis/player1/#": {"sport/tennis/player1", "sport/tennis/player1/ranking"},
    "sport/#": {"sport", "sport/", "sport/tennis", "sport/tennis/player1",
                "sport/tennis/player1/ranking", "sport/tennis/player2"},
    "#": set(RETAINED_TOPICS),
    "sport/tennis/+": {"sport/tennis/player1", "sport/tennis/player2"},
    "sport/+": {"sport/", "sport/tennis"},
    "+": {"sport", "finance"},
    "+/+": {"sport/", "sport/tennis", "/finance", "/"},
    "/+": {"/finance", "/"},
    "/#": {"/finance", "/"},
    "+/+/+": {"sport/tennis/player1", "sport/tennis/player2", "a//b", "a/b/c"},
    "a/+/b": {"a//b"},
    "+/tennis/#": {"sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
                   "sport/tennis/player2"},
    "a/b/c": {"a/b/c"},
    "nothing/+": set(),
}


def test_retained_messages_sent_for_every_matching_topic(broker):
    """[MQTT-3.3.1-6], [MQTT-3.3.2-3], 4.7: a new subscription gets the last retained message of
    exactly the topics its filter matches (the retained store matches like live routing: '#'
    includes the parent level, '+' matches an empty level), each with RETAIN 1 and its topic."""
    with Paho(broker.port, "rmpub", V3) as p:
        for t in RETAINED_TOPICS:
            p.publish(t, b"old " + t.encode(), qos=1, retain=True)
            p.publish(t, t.encode(), qos=1, retain=True)
    for i, (f, want) in enumerate(RETAINED_MATCHES.items()):
        with Paho(broker.port, f"rm{i}", V3) as s:
            assert s.subscribe(f, qos=1) == [1], f
            assert s.subscribe("zz/sentinel", qos=1) == [1]
            sentinel_round_trip(broker.port, "zz/sentinel", s)
            got = [m for m in s.messages if m.topic != "zz/sentinel"]
            assert sorted(m.topic for m in got) == sorted(want), f"filter {f!r}"
            assert all(m.retain and m.payload == m.topic.encode() for m in got), f


def test_resubscribe_resends_retained(broker):
    """[MQTT-3.8.4-3]: subscribing again to an identical filter replaces the subscription and
    re-sends the matching retained messages (RETAIN 1, [MQTT-3.3.1-8])."""
    with Paho(broker.port, "rrpub", V3) as p:
        p.publish("rr/t", b"retained", qos=1, retain=True)
    with Paho(broker.port, "rrsub", V3) as s:
        for qos in (1, 0):
            assert s.subscribe("rr/t", qos=qos) == [qos]
            sentinel_round_trip(broker.port, "rr/t", s)
            got = s.take()
            assert [(m.payload, m.retain, m.qos) for m in got] == \
                [(b"retained", True, qos), (b"sentinel", False, qos)]


def test_same_packet_id_after_puback_is_a_new_message(broker):
    """[MQTT-4.3.2-2]: once the server sent PUBACK, a PUBLISH with the same packet id is a new
    message, whatever its DUP flag: both are delivered."""
    with Paho(broker.port, "pidsub", V3) as s:
        assert s.subscribe("pid/t", qos=1) == [1]
        with raw_connect(broker.port, "pidpub", 4) as r:
            r.send(publish_packet("pid/t", b"one", qos=1, packet_id=9))
            assert r.expect(PUBACK).packet_id == 9
            r.send(publish_packet("pid/t", b"two", qos=1, packet_id=9, dup=True))
            assert r.expect(PUBACK).packet_id == 9
        sentinel_round_trip(broker.port, "pid/t", s)
        assert [m.payload for m in s.messages] == [b"one", b"two", b"sentinel"]


def test_empty_topic_name_closes(broker):
    """[MQTT-4.7.3-1], [MQTT-3.3.2-1]: a topic name must be at least one character: an empty one
    is a protocol violation -> close."""
    closed_after_connect(broker.port, publish_packet("", b"x", qos=1, packet_id=1))


# ---- 3.8 - 3.11 SUBSCRIBE / UNSUBSCRIBE -------------------------------------------------------

@pytest.mark.parametrize("opts", [pytest.param(0x03, id="qos-3"),
                                  pytest.param(0x04, id="bit-2"),
                                  pytest.param(0x09, id="bit-3"),
                                  pytest.param(0x21, id="bit-5"),
                                  pytest.param(0x80, id="bit-7")])
def test_subscribe_requested_qos_reserved_bits(broker, opts):
    """[MQTT-3-8.3-4]: in 3.1.1 the upper 6 bits of the requested QoS byte are reserved (the 5.0
    subscription options do not exist): non-zero, or QoS 3 -> malformed, close."""
    closed_after_connect(broker.port, subscribe_packet(1, [("rb/t", opts)]))


def test_unsubscribe_without_filters_closes(broker):
    """[MQTT-3.10.3-2]: an UNSUBSCRIBE with no topic filter is a protocol violation -> close."""
    closed_after_connect(broker.port, packet(0xA2, b"\x00\x05"))


def test_empty_topic_filter(broker):
    """[MQTT-4.7.3-1]: a topic filter must be at least one character: the server refuses an
    empty one (SUBACK 0x80) or closes the connection; UNSUBSCRIBE of "" likewise never removes
    anything (UNSUBACK) or closes."""
    for data, reply in ((subscribe_packet(1, [("", 1)]), SUBACK),
                        (unsubscribe_packet(1, [""]), UNSUBACK)):
        with raw_connect(broker.port, "emptyf", 4) as r:
            r.send(data)
            try:
                ack = r.recv()
                assert ack.type == reply and ack.packet_id == 1, ack
                if reply == SUBACK:
                    assert ack.codes == [0x80], ack
            except Closed:
                pass
    assert_broker_serves(broker.port)


def test_suback_codes_are_0_1_2_or_0x80(make_broker):
    """[MQTT-3.9.3-2], [MQTT-3.8.4-4/5]: a SUBSCRIBE with several filters, one of them not
    authorized, is handled filter by filter; 3.1.1 SUBACK codes are only 0x00, 0x01, 0x02 and
    0x80."""
    b = make_broker(acl="topic readwrite ok/#\n")
    with raw_connect(b.port, "codes", 4) as r:
        r.send(subscribe_packet(7, [("ok/0", 0), ("ok/1", 1), ("ok/2", 2), ("denied/x", 2),
                                    ("ok/+", 1)]))
        ack = r.expect(SUBACK)
        assert ack.packet_id == 7
        assert ack.codes[:3] == [0, 1, 2] and ack.codes[4] == 1, ack.codes
        assert all(c in (0x00, 0x01, 0x02, 0x80) for c in ack.codes), ack.codes


def test_unsubscribe_compares_filters_byte_for_byte(broker):
    """[MQTT-3.10.4-1]: UNSUBSCRIBE removes only a subscription whose filter is byte-for-byte
    the same: "uf/#", "uf/a" or "UF/+" do not remove "uf/+"."""
    with Paho(broker.port, "ufsub", V3) as s:
        assert s.subscribe("uf/+", qos=1) == [1]
        s.unsubscribe("uf/#", "uf/a", "UF/+", "uf/+/")
        with Paho(broker.port, "ufpub", V3) as p:
            p.publish("uf/a", b"still", qos=1)
        assert s.wait_for("uf/a", b"still").qos == 1
        s.unsubscribe("uf/+")
        with Paho(broker.port, "ufpub2", V3) as p:
            p.publish("uf/a", b"gone", qos=1)
        assert s.subscribe("uf/b", qos=1) == [1]
        sentinel_round_trip(broker.port, "uf/b", s)
        assert [m.payload for m in s.messages] == [b"still", b"sentinel"]


def test_unsubscribe_completes_qos2_in_flight(broker):
    """[MQTT-3.10.4-3]: after UNSUBSCRIBE the server still completes a QoS 2 delivery it had
    started (PUBREC -> PUBREL), and a QoS 1 one it had sent is still redelivered on resume."""
    r = raw_connect(broker.port, "unsub-inflight", 4, clean=False)
    r.send(subscribe_packet(1, [("ui/2", 2), ("ui/1", 1)]))
    assert r.expect(SUBACK).codes == [2, 1]
    with Paho(broker.port, "uipub", V3) as p:
        p.publish("ui/2", b"two", qos=2)
        p.publish("ui/1", b"one", qos=1)
    got = {p.topic: p for p in drain_publishes(r, 2)}
    r.send(unsubscribe_packet(2, ["ui/2", "ui/1"]))
    while (p := r.recv()).type != UNSUBACK:
        assert p.type != PUBLISH, p
    r.send(ack_packet(PUBREC, got[b"ui/2"].packet_id))
    assert r.expect(PUBREL).packet_id == got[b"ui/2"].packet_id
    r.send(ack_packet(PUBCOMP, got[b"ui/2"].packet_id))
    r.close()  # the QoS 1 message is still unacknowledged
    r = raw_connect(broker.port, "unsub-inflight", 4, clean=False)
    again = r.expect(PUBLISH)
    assert (again.topic, again.payload, again.dup, again.packet_id) == \
        (b"ui/1", b"one", True, got[b"ui/1"].packet_id)
    r.send(ack_packet(PUBACK, again.packet_id))
    assert r.is_open()
    r.close()


def test_pubrel_sent_in_pubrec_order(broker):
    """[MQTT-4.6.0-4] via [MQTT-4.6.0-6]: the server, delivering QoS 2, sends PUBREL packets in
    the order the PUBRECs arrived."""
    with raw_connect(broker.port, "relorder", 4) as r:
        r.send(subscribe_packet(1, [("ro/t", 2)]))
        r.expect(SUBACK)
        with Paho(broker.port, "ropub", V3) as p:
            for i in range(4):
                p.publish("ro/t", str(i).encode(), qos=2)
        pubs = drain_publishes(r, 4)
        order = [pubs[i].packet_id for i in (2, 0, 3, 1)]
        r.send(b"".join(ack_packet(PUBREC, pid) for pid in order))
        rels = [r.expect(PUBREL).packet_id for _ in order]
        assert rels == order
        for pid in rels:
            r.send(ack_packet(PUBCOMP, pid))
        assert r.is_open()


# ---- 4.7 topic names and filters --------------------------------------------------------------

def test_dollar_topics_not_matched_by_leading_wildcards(make_broker):
    """[MQTT-4.7.2-1]: filters starting with '#' or '+' do not match topic names starting with
    '$'. The broker's own retained $SYS/broker/... topics exist ("$SYS/#" gets them; the ACL
    allows reading them) and never reach "#" or "+/broker/#"."""
    broker = make_broker(acl=ALLOW_ALL + "topic read $SYS/#\n")
    with Paho(broker.port, "sys", V3) as sys_sub:
        assert sys_sub.subscribe("$SYS/#", qos=0) == [0]
        sys_sub.wait_messages(1)
        assert all(m.topic.startswith("$SYS/") for m in sys_sub.messages)
    with Paho(broker.port, "hash", V3) as a, Paho(broker.port, "plus", V3) as b:
        assert a.subscribe("#", qos=1) == [1]
        assert b.subscribe(("+/broker/#", 1), ("+/+/+", 1)) == [1, 1]
        sentinel_round_trip(broker.port, "x/broker/y", a)
        sentinel_round_trip(broker.port, "x/broker/y", b, b"sentinel2")
        assert [m.topic for m in a.messages] == ["x/broker/y", "x/broker/y"]
        assert not any(m.topic.startswith("$") for m in b.messages), b.messages


def test_no_normalization_in_matching(broker):
    """[MQTT-4.7.3-4]: matching compares topics as they are: no Unicode normalization (é
    precomposed vs e + combining accent), no case folding, no trimming of empty levels."""
    with Paho(broker.port, "normsub", V3) as s:
        assert s.subscribe(("norm/\u00e9", 1), ("norm/Case", 1), ("norm/a", 1)) == [1, 1, 1]
        with Paho(broker.port, "normpub", V3) as p:
            for t in ("norm/e\u0301", "norm/case", "norm/a/", "norm//a", "norm/\u00c9"):
                p.publish(t, t.encode(), qos=1)
            for t in ("norm/\u00e9", "norm/Case", "norm/a"):
                p.publish(t, t.encode(), qos=1)
        s.wait_for("norm/a", b"norm/a")
        assert [m.topic for m in s.messages] == ["norm/\u00e9", "norm/Case", "norm/a"]
        assert all(m.payload == m.topic.encode() for m in s.messages)


# ---- with authentication (tern only: Mosquitto's password file is another format) -----------

@pytest.fixture
def auth_broker(make_broker, tmp_path):
    out = th.run([th.tern_bin(), "help"])
    if out.returncode != 0 or not any(line.split()[:1] == ["passwd"]
                                      for line in out.stdout.decode().splitlines()):
        pytest.skip("`tern passwd` does not exist")
    pw = tmp_path / "passwords"
    out = th.run([th.tern_bin(), "passwd", "-f", str(pw), "-c", "-I", "1000", "-b", "dev",
                  "right"])
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    return make_broker("--set", f"broker.password_file={pw}", anonymous=False,
                       acl="user dev\ntopic readwrite auth/#\n")


def test_data_after_connect_refused_by_authentication_not_processed(auth_broker):
    """[MQTT-3.1.4-5]: the server verifies the password before answering; a client that sent a
    retained PUBLISH right behind a CONNECT with a wrong password must not have it processed;
    [MQTT-3.2.2-4/5]: the refusal (return code 4) has Session Present 0 although the client id
    has a stored session, and the connection is closed."""
    port = auth_broker.port
    with Raw(port, 4) as r:
        assert r.connect("car1", clean=False, username="dev", password=b"right").reason == 0
        r.send(subscribe_packet(1, [("auth/t", 1)]))
        assert r.expect(SUBACK).codes == [1]
        r.send(b"\xe0\x00")
        r.wait_closed()
    with Raw(port, 4) as w:
        assert w.connect("watch", username="dev", password=b"right").reason == 0
        w.send(subscribe_packet(1, [("auth/t", 1)]))
        assert w.expect(SUBACK).codes == [1]
        with Raw(port, 4) as bad:
            bad.send(connect_packet("car1", clean=False, username="dev", password=b"wrong")
                     + publish_packet("auth/t", b"smuggled", qos=1, packet_id=1, retain=True))
            got = bad.wait_closed(timeout=30)
            assert [(p.type, p.reason, p.session_present) for p in got] == [(CONNACK, 4, False)]
        with Raw(port, 4) as good:  # a sentinel from an accepted client, pipelined the same way
            good.send(connect_packet("pub", username="dev", password=b"right")
                      + publish_packet("auth/t", b"sentinel", qos=1, packet_id=1))
            ack = good.expect(CONNACK, timeout=30)  # [MQTT-3.2.0-1]: CONNACK comes first
            assert ack.reason == 0
            assert good.expect(PUBACK).packet_id == 1
        m = w.expect(PUBLISH)
        assert m.payload == b"sentinel", m
        w.send(ack_packet(PUBACK, m.packet_id))
    with Raw(port, 4) as r:  # the stored session survived the refused attempt
        ack = r.connect("car1", clean=False, username="dev", password=b"right")
        assert (ack.reason, ack.session_present) == (0, True)
        r.send(subscribe_packet(2, [("auth/t", 1)]) + PINGREQ)
        got = []
        while (p := r.recv()).type != PINGRESP:
            got.append(p)
        # the queued sentinel and the SUBACK; no "smuggled", neither queued nor retained
        assert sorted((p.type, p.payload if p.type == PUBLISH else b"") for p in got) == \
            [(PUBLISH, b"sentinel"), (SUBACK, b"")], got

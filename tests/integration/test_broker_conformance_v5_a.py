"""tern broker: MQTT 5.0 conformance audit, chapters 1 and 2 and sections 3.1 (CONNECT), 3.2
(CONNACK) and 3.3 (PUBLISH): one test per server-side normative statement that no other test
file covered (statement IDs are MQTT 5.0 ones, cited in each docstring; statements that bind
only the client are tested through the server's reaction when a client breaks them). Driven
with protocol level 5 raw sockets (to see and send exact bytes) and paho 5.0 clients."""
import struct

import pytest

from broker_fixture import (CONNACK, DISCONNECT, PEER, PINGRESP, PUBACK, PUBCOMP, PUBLISH,  # noqa
                            PUBREC, PUBREL, SUBACK, TIMEOUT, UNSUBACK, V5, Closed, Paho, Raw,
                            ack_packet, assert_broker_serves, broker, connect_packet,
                            expect_disconnect, make_broker, mstr, packet, parse_props, prop,
                            publish_packet, raw_connect, read_varint, sentinel_round_trip,
                            subscribe_packet, varint)

# MQTT 5.0 3.2.2.2: the only reason codes a CONNACK may carry ([MQTT-3.2.2-8])
CONNACK_CODES = {0x00, 0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x8C,
                 0x90, 0x95, 0x97, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9F}
REASON_STRING, USER_PROPERTY = 0x1F, 0x26


# ---- helpers -------------------------------------------------------------------------------

def recv_frame(r: Raw, timeout: float = TIMEOUT) -> bytes:
    """The next whole packet exactly as it came on the wire (fixed header included)."""
    return r.recv_frame(timeout)


def vbi_is_minimal(b: bytes, i: int) -> bool:
    """Whether the variable byte integer at b[i:] uses the fewest bytes (1.5.5)."""
    start = i
    while b[i] & 0x80:
        i += 1
    return i == start or b[i] != 0


def refused_or_closed(port: int, data: bytes, v311_answer_ok: bool = False) -> list:
    """Send data (starting with a CONNECT) on a fresh connection; the broker must close it, and
    a CONNACK sent first must refuse with a CONNACK reason code ([MQTT-3.2.2-7/8]).
    v311_answer_ok: a CONNECT that is not a 5.0 one may get a 3.1.1 CONNACK (2 bytes, code 1)."""
    with Raw(port, 5) as r:
        r.send(data)
        got = r.wait_closed()
    assert all(p.type == CONNACK for p in got), got
    assert len(got) <= 1, got
    for p in got:
        if v311_answer_ok and len(p.body) == 2 and p.body == b"\x00\x01":
            continue
        assert p.reason >= 0x80 and p.reason in CONNACK_CODES, hex(p.reason)
        assert p.session_present is False  # [MQTT-3.2.2-6]
    return got


def ack_props(p) -> dict:
    """Properties of a 5.0 PUBACK / PUBREC / PUBREL / PUBCOMP (none if the packet is short)."""
    return parse_props(p.body, 3)[0] if len(p.body) > 3 else {}


def pings_clean(r: Raw) -> list:
    """PINGREQ, then every packet up to the PINGRESP: what the broker had sent meanwhile."""
    r.send(b"\xc0\x00")
    got = []
    while True:
        p = r.recv()
        if p.type == PINGRESP:
            return got
        got.append(p)


def unsubscribe_packet(packet_id: int, filters: list[str]) -> bytes:
    return packet(0xA2, struct.pack("!H", packet_id) + b"\x00" + b"".join(mstr(f) for f in filters))


# ---- chapter 1: data representation --------------------------------------------------------

def test_bom_in_topic_is_not_stripped(broker):
    """[MQTT-1.5.4-3]: 0xEF 0xBB 0xBF in a string is U+FEFF and must not be skipped or stripped:
    a topic holding it is routed to the filter with it, and forwarded with the same bytes."""
    topic = "bom/\ufeffx".encode()
    with raw_connect(broker.port, "bomsub", 5) as s:
        s.send(subscribe_packet(1, [(topic, 1), ("bom/x", 1)], version=5))
        assert s.expect(SUBACK).codes == [1, 1]
        with raw_connect(broker.port, "bompub", 5) as p:
            p.send(publish_packet(topic, b"with bom", qos=1, packet_id=1, version=5))
            assert p.expect(PUBACK).reason == 0
            p.send(publish_packet("bom/x", b"without", qos=1, packet_id=2, version=5))
            assert p.expect(PUBACK).reason == 0
        got = []
        for _ in range(2):
            m = s.expect(PUBLISH)
            got.append((m.topic, m.payload))
            s.send(ack_packet(PUBACK, m.packet_id))
        assert sorted(got) == sorted([(topic, b"with bom"), (b"bom/x", b"without")])


@pytest.mark.parametrize("target", [128, 16384])
@pytest.mark.parametrize("sid", [127, 128, 16384])
def test_server_variable_byte_integers_are_minimal(broker, target, sid):
    """[MQTT-1.5.5-1]: the variable byte integers the server sends (Remaining Length, Property
    Length, Subscription Identifier) use the fewest bytes, on both sides of the 1/2-byte and
    2/3-byte boundaries."""
    overhead = len(mstr("vbi/t")) + 1 + 1 + len(varint(sid))  # topic, prop length, 0x0B + id
    with raw_connect(broker.port, "vbisub", 5) as s:
        s.send(subscribe_packet(1, [("vbi/t", 0)], version=5, props_=prop(0x0B, sid)))
        assert s.expect(SUBACK).codes == [0]
        sizes = [target - overhead, target - 1 - overhead]
        with Paho(broker.port, "vbipub", V5) as p:
            for n in sizes:
                p.publish("vbi/t", b"p" * n, qos=1)
        for n, length in zip(sizes, (target, target - 1)):
            frame = recv_frame(s)
            assert frame[0] == PUBLISH << 4
            assert vbi_is_minimal(frame, 1), frame[:5].hex()
            got_length, i = read_varint(frame, 1)
            assert got_length == length == len(frame) - i
            j = i + len(mstr("vbi/t"))
            assert vbi_is_minimal(frame, j)  # the property length
            _, k = read_varint(frame, j)
            assert frame[k] == 0x0B and vbi_is_minimal(frame, k + 1), frame[j:j + 6].hex()
            assert read_varint(frame, k + 1)[0] == sid
            assert frame.endswith(b"p" * n)


@pytest.mark.parametrize("pair", [(b"k\xff", b"v"), (b"k", b"v\xed\xa0\x80"), (b"k\x00", b"v")],
                         ids=["bad-key", "surrogate-value", "nul-key"])
def test_user_property_with_invalid_utf8_in_publish(broker, pair):
    """[MQTT-1.5.7-1] (1.5.4): both strings of a UTF-8 string pair must be well-formed UTF-8
    without U+0000; a PUBLISH with such a User Property is malformed: DISCONNECT 0x81, not
    forwarded."""
    with Paho(broker.port, "upwatch", V5) as w:
        assert w.subscribe("up/t", qos=1) == [1]
        with raw_connect(broker.port, "upbad", 5) as r:
            r.send(publish_packet("up/t", b"bad pair", qos=1, packet_id=1, version=5,
                                  props_=bytes([USER_PROPERTY]) + mstr(pair[0]) + mstr(pair[1])))
            expect_disconnect(r.wait_closed(), 0x81)
        sentinel_round_trip(broker.port, "up/t", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


def test_user_property_with_invalid_utf8_in_connect(broker):
    """[MQTT-1.5.7-1]: the same in the CONNECT properties -> the connection is refused."""
    bad = bytes([USER_PROPERTY]) + mstr(b"k") + mstr(b"\xc0\xaf")
    refused_or_closed(broker.port, connect_packet("upconn", version=5, props_=bad))
    assert_broker_serves(broker.port)


# ---- chapter 2: control packet format ------------------------------------------------------

def test_server_packets_use_the_reserved_flag_values(broker):
    """[MQTT-2.1.3-1]: the server's own packets carry the fixed header flags of Table 2-2:
    CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PINGRESP 0; PUBREL 0b0010."""
    with Raw(broker.port, 5) as r:
        r.send(connect_packet("flags", version=5))
        frames = [recv_frame(r)]
        r.send(subscribe_packet(1, [("flags/t", 2)], version=5))
        frames.append(recv_frame(r))
        r.send(publish_packet("flags/p", b"1", qos=1, packet_id=2, version=5))
        frames.append(recv_frame(r))
        r.send(publish_packet("flags/p", b"2", qos=2, packet_id=3, version=5))
        frames.append(recv_frame(r))
        r.send(ack_packet(PUBREL, 3))
        frames.append(recv_frame(r))
        r.send(unsubscribe_packet(4, ["flags/t"]))
        frames.append(recv_frame(r))
        r.send(b"\xc0\x00")
        frames.append(recv_frame(r))
        assert [(f[0] >> 4, f[0] & 0x0F) for f in frames] == [
            (CONNACK, 0), (SUBACK, 0), (PUBACK, 0), (PUBREC, 0), (PUBCOMP, 0), (UNSUBACK, 0),
            (PINGRESP, 0)]
        r.send(subscribe_packet(5, [("flags/t", 2)], version=5))
        assert recv_frame(r)[0] == SUBACK << 4
        with Paho(broker.port, "flagspub", V5) as p:
            p.publish("flags/t", b"to you", qos=2)
            pub = r.expect(PUBLISH)
            r.send(ack_packet(PUBREC, pub.packet_id))
            rel = recv_frame(r)
            assert (rel[0] >> 4, rel[0] & 0x0F) == (PUBREL, 0x02)
            r.send(ack_packet(PUBCOMP, pub.packet_id))


def test_qos0_publish_from_server_has_no_packet_identifier(broker):
    """[MQTT-2.2.1-2]: a QoS 0 PUBLISH carries no Packet Identifier; [MQTT-2.2.2-1]: a packet
    without properties still has a Property Length of 0. The bytes are exactly topic, property
    length 0, payload."""
    with raw_connect(broker.port, "q0sub", 5) as s:
        s.send(subscribe_packet(1, [("q0/t", 0)], version=5))
        assert s.expect(SUBACK).codes == [0]
        with Paho(broker.port, "q0pub", V5) as p:
            p.publish("q0/t", b"\x00\x01zero", qos=1)
        frame = recv_frame(s)
        assert frame == packet(0x30, mstr("q0/t") + b"\x00" + b"\x00\x01zero"), frame


def test_server_packets_without_properties_have_property_length_zero(broker):
    """[MQTT-2.2.2-1]: CONNACK, SUBACK, UNSUBACK and PUBLISH always have a property length; when
    the server has no property to send it is 0, and the lengths add up exactly."""
    with raw_connect(broker.port, "plen", 5) as r:
        ack = r.connack
        plen, i = read_varint(ack.body, 2)
        assert i + plen == len(ack.body)
        r.send(subscribe_packet(7, [("plen/t", 1)], version=5))
        sub = r.expect(SUBACK)
        plen, i = read_varint(sub.body, 2)
        assert sub.body[i + plen:] == b"\x01"
        with Paho(broker.port, "plenpub", V5) as p:
            p.publish("plen/t", b"body", qos=1)
        pub = r.expect(PUBLISH)
        assert pub.body == mstr("plen/t") + struct.pack("!H", pub.packet_id) + b"\x00body"
        r.send(ack_packet(PUBACK, pub.packet_id))
        r.send(unsubscribe_packet(8, ["plen/t"]))
        un = r.expect(UNSUBACK)
        plen, i = read_varint(un.body, 2)
        assert un.body[i + plen:] == b"\x00"


def test_server_assigns_unused_nonzero_packet_identifiers(broker):
    """[MQTT-2.2.1-4]: every new QoS 1/2 PUBLISH the server sends has a non-zero Packet
    Identifier not in use by another unacknowledged one."""
    with raw_connect(broker.port, "pidsub", 5) as s:
        s.send(subscribe_packet(1, [("pid/t", 2)], version=5))
        assert s.expect(SUBACK).codes == [2]
        with Paho(broker.port, "pidpub", V5) as p:
            for i in range(20):
                p.publish("pid/t", str(i).encode(), qos=1 + i % 2)
        got = [s.expect(PUBLISH) for _ in range(20)]  # none acknowledged
        ids = [m.packet_id for m in got]
        assert 0 not in ids
        assert len(set(ids)) == 20, ids
        assert [m.payload for m in got] == [str(i).encode() for i in range(20)]


def test_acknowledgements_echo_the_packet_identifier(broker):
    """[MQTT-2.2.1-5]: PUBACK, PUBREC and PUBCOMP carry the PUBLISH's Packet Identifier, and the
    server's PUBREL the one of the PUBLISH it sent; [MQTT-2.2.1-6]: SUBACK and UNSUBACK carry
    the SUBSCRIBE's and UNSUBSCRIBE's."""
    with raw_connect(broker.port, "echo", 5) as r:
        r.send(subscribe_packet(0xABCD, [("echo/t", 2)], version=5))
        assert r.expect(SUBACK).packet_id == 0xABCD
        r.send(publish_packet("echo/p", b"1", qos=1, packet_id=0xFFFF, version=5))
        assert r.expect(PUBACK).packet_id == 0xFFFF
        r.send(publish_packet("echo/p", b"2", qos=2, packet_id=0x0100, version=5))
        assert r.expect(PUBREC).packet_id == 0x0100
        r.send(ack_packet(PUBREL, 0x0100))
        assert r.expect(PUBCOMP).packet_id == 0x0100
        with Paho(broker.port, "echopub", V5) as p:
            p.publish("echo/t", b"out", qos=2)
        pub = r.expect(PUBLISH)
        r.send(ack_packet(PUBREC, pub.packet_id))
        assert r.expect(PUBREL).packet_id == pub.packet_id
        r.send(ack_packet(PUBCOMP, pub.packet_id))
        r.send(unsubscribe_packet(0x7F01, ["echo/t"]))
        assert r.expect(UNSUBACK).packet_id == 0x7F01


# ---- 3.1 CONNECT ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", [b"MQTX", b"mqtt", b"MQIsdp"])
def test_v5_connect_with_wrong_protocol_name_closed(broker, name):
    """[MQTT-3.1.2-1]: the protocol name is "MQTT"; a server refusing the CONNECT may send
    CONNACK 0x84 and must close the connection."""
    # MQIsdp is MQTT 3.1's name: answering in 3.1's form (return code 1) is fair too
    refused_or_closed(broker.port, connect_packet("badname5", version=5, proto_name=name),
                      v311_answer_ok=name == b"MQIsdp")
    assert_broker_serves(broker.port)


def test_will_flag_without_will_fields_closed(broker):
    """[MQTT-3.1.2-9] / [MQTT-3.1.4-1]: Will Flag 1 requires Will Properties, Will Topic and Will
    Payload in the payload; a CONNECT without them is malformed."""
    refused_or_closed(broker.port, connect_packet("nowill", version=5, flags_extra=0x04))
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("flags", [0x08, 0x10, 0x18], ids=["qos1", "qos2", "qos3"])
def test_will_qos_without_will_flag_closed(broker, flags):
    """[MQTT-3.1.2-11]: with Will Flag 0 the Will QoS must be 0; otherwise malformed."""
    refused_or_closed(broker.port, connect_packet("wqos", version=5, flags_extra=flags))
    assert_broker_serves(broker.port)


def test_will_retain_without_will_flag_closed(broker):
    """[MQTT-3.1.2-13]: with Will Flag 0 the Will Retain must be 0; otherwise malformed."""
    refused_or_closed(broker.port, connect_packet("wret", version=5, flags_extra=0x20))
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("flags", [0x80, 0x40, 0xC0], ids=["user", "password", "both"])
def test_user_name_or_password_flag_without_the_field_closed(broker, flags):
    """[MQTT-3.1.2-17/19] / [MQTT-3.1.4-1]: a User Name / Password flag of 1 with the field
    missing from the payload -> malformed CONNECT, closed."""
    refused_or_closed(broker.port, connect_packet("noauth", version=5, flags_extra=flags))
    assert_broker_serves(broker.port)


def test_v5_connect_with_trailing_bytes_closed(broker):
    """[MQTT-3.1.2-16/18] / [MQTT-3.1.4-1]: bytes after the last field the flags announce (a
    User Name with User Name Flag 0) -> malformed CONNECT, closed."""
    data = connect_packet("trail5", version=5)
    data = packet(0x10, data[2:] + mstr("someone"))
    refused_or_closed(broker.port, data)
    assert_broker_serves(broker.port)


def test_discarded_oversized_message_counts_as_sent(broker):
    """[MQTT-3.1.2-25]: a message too large for the client's Maximum Packet Size is discarded
    and treated as if sent: with Receive Maximum 1 it does not hold the only in-flight slot (the
    next message arrives), and it is not sent when the session is resumed."""
    cprops = prop(0x27, 200) + prop(0x21, 1) + prop(0x11, 300)
    s = raw_connect(broker.port, "mpsdrop", 5, props_=cprops)
    s.send(subscribe_packet(1, [("mpsd/t", 1)], version=5))
    assert s.expect(SUBACK).codes == [1]
    with Paho(broker.port, "mpsdpub", V5) as p:
        p.publish("mpsd/t", b"L" * 1000, qos=1)
        p.publish("mpsd/t", b"small", qos=1)
    m = s.expect(PUBLISH)
    assert m.payload == b"small"
    s.close()  # without PUBACK
    s = raw_connect(broker.port, "mpsdrop", 5, clean=False, props_=cprops)
    assert s.connack.session_present
    m = s.expect(PUBLISH)
    assert (m.payload, m.dup) == (b"small", True)
    s.send(ack_packet(PUBACK, m.packet_id))
    assert pings_clean(s) == []
    s.send(b"\xe0\x00")
    s.close()


def test_topic_alias_maximum_of_client_respected(broker):
    """[MQTT-3.1.2-26] / [MQTT-3.3.2-11]: a server may use topic aliases towards a client that
    allows 2, but never one above 2 (nor 0, [MQTT-3.3.2-8]); every PUBLISH still resolves to the
    right topic."""
    with raw_connect(broker.port, "tamsub", 5, props_=prop(0x22, 2)) as s:
        s.send(subscribe_packet(1, [("tam/#", 0)], version=5))
        assert s.expect(SUBACK).codes == [0]
        sent = [f"tam/{i % 4}" for i in range(12)]
        with Paho(broker.port, "tampub", V5) as p:
            for i, t in enumerate(sent):
                p.publish(t, str(i).encode(), qos=1)
        aliases: dict[int, bytes] = {}
        got = []
        for _ in sent:
            m = s.expect(PUBLISH)
            alias = m.props.get(0x23)
            topic = m.topic
            if alias is not None:
                assert 1 <= alias[0] <= 2, alias
                if topic:
                    aliases[alias[0]] = topic
                else:
                    topic = aliases[alias[0]]
            got.append((topic.decode(), m.payload))
        assert got == [(t, str(i).encode()) for i, t in enumerate(sent)]


def test_request_problem_information_0_no_reason_string(make_broker):
    """[MQTT-3.1.2-29]: with Request Problem Information 0 the server sends no Reason String or
    User Property on packets other than PUBLISH, CONNACK and DISCONNECT: here a refused PUBLISH
    (PUBACK, PUBREC 0x87 on tern), a refused subscription (SUBACK 0x87 on tern), an unknown
    unsubscription (UNSUBACK 0x11) and an unknown PUBREL (PUBCOMP 0x92). (Mosquitto accepts the
    PUBLISH and the SUBSCRIBE the ACL denies: only tern is held to the error codes.)"""
    b = make_broker(acl="topic readwrite open/#\n")
    with raw_connect(b.port, "noproblem", 5, props_=prop(0x17, 0)) as r:
        r.send(publish_packet("closed/t", b"x", qos=1, packet_id=1, version=5))
        ack = r.expect(PUBACK)
        r.send(publish_packet("closed/t", b"x", qos=2, packet_id=2, version=5))
        rec = r.expect(PUBREC)
        if rec.reason < 0x80:
            r.send(ack_packet(PUBREL, 2))
            r.expect(PUBCOMP)
        r.send(subscribe_packet(3, [("closed/t", 1), ("open/t", 1)], version=5))
        sub = r.expect(SUBACK)
        r.send(unsubscribe_packet(4, ["never/subscribed"]))
        un = r.expect(UNSUBACK)
        r.send(ack_packet(PUBREL, 99))
        comp = r.expect(PUBCOMP)
        if PEER == "tern":
            assert (ack.reason, rec.reason, sub.codes, un.codes, comp.reason) == \
                (0x87, 0x87, [0x87, 1], [0x11], 0x92)
        for p in (ack, rec, comp):
            assert REASON_STRING not in ack_props(p) and USER_PROPERTY not in ack_props(p), p
        for p in (sub, un):
            got = parse_props(p.body, 2)[0]
            assert REASON_STRING not in got and USER_PROPERTY not in got, p


@pytest.mark.parametrize("client_id", [b"bad\xff", b"bad\xed\xa0\x80", b"bad\x00id",
                                       b"bad\xc0\xaf"],
                         ids=["invalid-byte", "surrogate", "nul", "overlong"])
def test_client_id_not_utf8_refused(broker, client_id):
    """[MQTT-3.1.3-4] (1.5.4-1/2): the Client Identifier is a UTF-8 Encoded String; ill-formed
    UTF-8 or U+0000 -> malformed CONNECT: refused (CONNACK 0x81 / 0x85 or none) and closed."""
    refused_or_closed(broker.port, connect_packet(client_id, version=5))
    assert_broker_serves(broker.port)


def test_23_character_alphanumeric_client_id_accepted(broker):
    """[MQTT-3.1.3-5]: the server must accept client ids of 1 to 23 bytes made of 0-9, a-z and
    A-Z."""
    for cid in ("Zz09aAbBcCdDeEfFgGhHiI9", "0", "Q"):
        with raw_connect(broker.port, cid, 5) as r:
            assert r.connack.reason == 0
            assert 0x12 not in r.connack.props  # kept, not replaced by an assigned one
            assert r.is_open()


def test_will_topic_not_utf8_refused(broker):
    """[MQTT-3.1.3-11]: the Will Topic is a UTF-8 Encoded String; ill-formed -> malformed
    CONNECT, closed, and no will is ever published."""
    with Paho(broker.port, "wtwatch", V5) as w:
        assert w.subscribe("#", qos=1) == [1]
        refused_or_closed(broker.port, connect_packet(
            "badwill", version=5, will=(b"wt/\xff", b"never", 1, False)))
        sentinel_round_trip(broker.port, "wt/ok", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


def test_user_name_not_utf8_refused(broker):
    """[MQTT-3.1.3-12]: the User Name is a UTF-8 Encoded String; ill-formed -> malformed
    CONNECT, closed."""
    refused_or_closed(broker.port, connect_packet("badname", version=5, username="x")
                      .replace(mstr("x"), mstr(b"u\xff")))
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("bad_prop", [prop(0x21, 0), prop(0x27, 0)],
                         ids=["receive-maximum-0", "maximum-packet-size-0"])
def test_data_after_a_refused_connect_is_not_processed(broker, bad_prop):
    """[MQTT-3.1.4-6]: once the server refuses a CONNECT (here a protocol error: Receive Maximum
    or Maximum Packet Size 0, 3.1.2.11) it must not act on anything sent after it: a retained
    PUBLISH and a SUBSCRIBE in the same write are ignored."""
    data = (connect_packet("refused", version=5, props_=bad_prop)
            + publish_packet("after/t", b"must not be kept", qos=0, retain=True, version=5)
            + subscribe_packet(1, [("after/#", 0)], version=5))
    refused_or_closed(broker.port, data)
    with Paho(broker.port, "afterwatch", V5) as w:
        assert w.subscribe("after/#", qos=1) == [1]
        sentinel_round_trip(broker.port, "after/z", w)
        assert [(m.topic, m.payload) for m in w.messages] == [("after/z", b"sentinel")]


# ---- 3.2 CONNACK ---------------------------------------------------------------------------

def test_connack_reserved_bits_are_zero(broker):
    """[MQTT-3.2.2-1]: bits 7-1 of the Connect Acknowledge Flags are 0, with or without a
    session present."""
    expiry = prop(0x11, 300)
    with raw_connect(broker.port, "ackflags", 5, clean=False, props_=expiry) as r:
        assert r.connack.body[0] == 0x00
        r.send(b"\xe0\x00")
    with raw_connect(broker.port, "ackflags", 5, clean=False, props_=expiry) as r:
        assert r.connack.body[0] == 0x01


def test_refused_connack_has_session_present_0(broker):
    """[MQTT-3.2.2-6]: a CONNACK with a non-zero reason code has Session Present 0, even for a
    client id whose session the server holds (and Clean Start 0)."""
    with raw_connect(broker.port, "keepsess", 5, clean=False, props_=prop(0x11, 300)) as r:
        r.send(b"\xe0\x00")
    refused_or_closed(broker.port, connect_packet(
        "keepsess", version=5, clean=False, props_=prop(0x11, 300) + prop(0x21, 0)))


def test_qos2_supported_when_maximum_qos_absent(broker):
    """[MQTT-3.2.2-9/10/12]: a server without Maximum QoS in CONNACK supports QoS 2: it grants
    QoS 2 subscriptions, takes QoS 2 PUBLISHes and QoS 2 wills."""
    with Paho(broker.port, "mq2sub", V5) as w:
        assert w.subscribe("mq2/#", qos=2) == [2]
        with raw_connect(broker.port, "mq2", 5, will=("mq2/will", b"w", 2, False)) as r:
            if 0x24 in r.connack.props:
                assert r.connack.props[0x24] in ([0], [1])
                pytest.skip("the server announces a Maximum QoS")
            r.send(publish_packet("mq2/t", b"two", qos=2, packet_id=1, version=5))
            assert r.expect(PUBREC).reason == 0
            r.send(ack_packet(PUBREL, 1))
            assert r.expect(PUBCOMP).reason == 0
        assert w.wait_for("mq2/t", b"two").qos == 2
        assert w.wait_for("mq2/will", b"w").qos == 2


def test_connack_fits_the_client_maximum_packet_size(broker):
    """[MQTT-3.1.2-24] with [MQTT-3.2.2-19/20]: the CONNACK too must not exceed the client's
    Maximum Packet Size. tern's accepting CONNACK (its Receive Maximum, Topic Alias Maximum and
    Maximum Packet Size) is 16 bytes: a client allowing 16 is accepted; one allowing 9 is refused
    with a bare CONNACK 0x95 (Packet too large, 5 bytes) rather than sent a CONNACK that breaks
    its limit or one that leaves out limits the server enforces."""
    for limit, accepted in ((16, True), (9, False)):
        with Raw(broker.port, 5) as r:
            r.send(connect_packet(f"tiny{limit}", version=5, props_=prop(0x27, limit)))
            frame = recv_frame(r)
            assert frame[0] == CONNACK << 4
            assert len(frame) <= limit, frame.hex()
            assert frame[3] == (0 if accepted else 0x95), frame.hex()
            if not accepted:
                assert r.wait_closed() == []


def test_refused_connack_fits_the_client_maximum_packet_size(make_broker):
    """[MQTT-3.2.2-19/20] ([MQTT-3.1.2-24]): a refusing CONNACK (here: no credentials on a broker
    without anonymous access) carries no Reason String or User Property that would make it
    larger than the client's Maximum Packet Size (10 bytes)."""
    b = make_broker(anonymous=False)
    with Raw(b.port, 5) as r:
        r.send(connect_packet("nocreds", version=5, props_=prop(0x27, 10)))
        frame = recv_frame(r)
        assert frame[0] == CONNACK << 4
        assert frame[3] >= 0x80 and frame[3] in CONNACK_CODES
        assert len(frame) <= 10, frame.hex()
        assert r.wait_closed() == []


def test_rate_refusal_fits_the_client_maximum_packet_size(make_broker):
    """[MQTT-3.2.2-19/20] ([MQTT-3.1.2-24]): the CONNACK 0x9F that refuses an over-rate client
    (answered by tern's front door, before any session) drops its Reason String to fit the
    client's Maximum Packet Size (6 bytes; a bare CONNACK is 5)."""
    b = make_broker("--set", "broker.connect_rate=1", "--set", "broker.connect_burst=1")
    with raw_connect(b.port, "ratefirst", 5):
        with Raw(b.port, 5) as r:
            r.send(connect_packet("ratesecond", version=5, props_=prop(0x27, 6)))
            frame = recv_frame(r)
            assert frame[0] == CONNACK << 4
            assert frame[3] == 0x9F, frame.hex()
            assert len(frame) <= 6, frame.hex()
            assert r.wait_closed() == []


def test_takeover_disconnect_fits_the_client_maximum_packet_size(broker):
    """[MQTT-3.1.2-24]: the DISCONNECT 0x8E a client gets when its session is taken over is no
    larger than its Maximum Packet Size (16 bytes, as large as tern's CONNACK): a Reason String
    that does not fit is left out."""
    with raw_connect(broker.port, "smalltake", 5, props_=prop(0x27, 16)) as old:
        with Paho(broker.port, "smalltake", V5):
            frames = []
            while True:
                try:
                    frames.append(recv_frame(old))
                except Closed:
                    break
    assert all(len(f) <= 16 for f in frames), [f.hex() for f in frames]
    assert [f[0] for f in frames] in ([], [DISCONNECT << 4])


# ---- 3.3 PUBLISH ---------------------------------------------------------------------------

def test_dup_flag_not_propagated(broker):
    """[MQTT-3.3.1-3]: the DUP flag of a forwarded PUBLISH depends only on whether that PUBLISH
    is a re-send: a first attempt from a publisher with DUP 1 reaches subscribers with DUP 0;
    [MQTT-3.3.1-2]: and a QoS 0 delivery always has DUP 0."""
    with raw_connect(broker.port, "dup2", 5) as s2, raw_connect(broker.port, "dup0", 5) as s0:
        s2.send(subscribe_packet(1, [("dupf/t", 2)], version=5))
        assert s2.expect(SUBACK).codes == [2]
        s0.send(subscribe_packet(1, [("dupf/t", 0)], version=5))
        assert s0.expect(SUBACK).codes == [0]
        with raw_connect(broker.port, "duppub", 5) as p:
            p.send(publish_packet("dupf/t", b"q1", qos=1, packet_id=1, dup=True, version=5))
            assert p.expect(PUBACK).packet_id == 1
            p.send(publish_packet("dupf/t", b"q2", qos=2, packet_id=2, dup=True, version=5))
            assert p.expect(PUBREC).packet_id == 2
            p.send(ack_packet(PUBREL, 2))
            assert p.expect(PUBCOMP).packet_id == 2
        for want in ((b"q1", 1), (b"q2", 2)):
            m = s2.expect(PUBLISH)
            assert (m.payload, m.qos, m.dup) == (*want, False)
            if m.qos == 1:
                s2.send(ack_packet(PUBACK, m.packet_id))
            else:
                s2.send(ack_packet(PUBREC, m.packet_id))
                assert s2.expect(PUBREL).packet_id == m.packet_id
                s2.send(ack_packet(PUBCOMP, m.packet_id))
        for want in (b"q1", b"q2"):
            m = s0.expect(PUBLISH)
            assert (m.payload, m.qos, m.dup) == (want, 0, False)


def test_non_retained_publish_leaves_the_retained_message(broker):
    """[MQTT-3.3.1-8]: a PUBLISH with RETAIN 0 is not stored as retained and does not remove or
    replace the retained message of its topic (not even with an empty payload)."""
    with Paho(broker.port, "nrpub", V5) as p:
        p.publish("nr/t", b"kept", qos=1, retain=True)
        p.publish("nr/t", b"passing", qos=1, retain=False)
        p.publish("nr/t", b"", qos=1, retain=False)
        p.publish("nr/u", b"never retained", qos=1, retain=False)
    with Paho(broker.port, "nrsub", V5) as s:
        assert s.subscribe("nr/#", qos=1) == [1]
        sentinel_round_trip(broker.port, "nr/z", s)
        got = [(m.topic, m.payload, m.retain) for m in s.messages if m.payload != b"sentinel"]
        assert got == [("nr/t", b"kept", True)]


def test_topic_alias_not_carried_to_a_new_connection(broker):
    """[MQTT-3.3.2-7]: topic alias mappings belong to one network connection: after a reconnect
    (even resuming the session) an empty topic with the old alias is a protocol error
    (DISCONNECT 0x82), and the message is not forwarded."""
    expiry = prop(0x11, 300)
    with Paho(broker.port, "tawatch", V5) as w:
        assert w.subscribe("ta/#", qos=1) == [1]
        with raw_connect(broker.port, "tacarry", 5, props_=expiry) as r:
            r.send(publish_packet("ta/one", b"1", qos=1, packet_id=1, version=5,
                                  props_=prop(0x23, 1)))
            assert r.expect(PUBACK).reason == 0
            r.send(b"\xe0\x00")
            r.wait_closed()
        with raw_connect(broker.port, "tacarry", 5, clean=False, props_=expiry) as r:
            assert r.connack.session_present
            r.send(publish_packet("", b"2", qos=1, packet_id=2, version=5,
                                  props_=prop(0x23, 1)))
            expect_disconnect(r.wait_closed(), 0x82)
        sentinel_round_trip(broker.port, "ta/z", w)
        assert [m.payload for m in w.messages] == [b"1", b"sentinel"]


@pytest.mark.parametrize("pid,value", [(0x08, b"reply/\xff"), (0x08, b"reply/\x00"),
                                       (0x03, b"text/\xed\xbf\xbf"), (0x03, b"\xc1\xbf")],
                         ids=["response-topic", "response-topic-nul", "content-type-surrogate",
                              "content-type-overlong"])
def test_publish_string_property_not_utf8(broker, pid, value):
    """[MQTT-3.3.2-13] Response Topic and [MQTT-3.3.2-19] Content Type are UTF-8 Encoded
    Strings: ill-formed -> malformed PUBLISH (DISCONNECT 0x81), not forwarded."""
    with Paho(broker.port, "spwatch", V5) as w:
        assert w.subscribe("sp/t", qos=1) == [1]
        with raw_connect(broker.port, "spbad", 5) as r:
            r.send(publish_packet("sp/t", b"x", qos=1, packet_id=1, version=5,
                                  props_=bytes([pid]) + mstr(value)))
            expect_disconnect(r.wait_closed(), 0x81)
        sentinel_round_trip(broker.port, "sp/t", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


@pytest.mark.parametrize("reply", ["reply/#", "reply/+/x", "+"])
def test_response_topic_with_wildcard_not_forwarded(broker, reply):
    """[MQTT-3.3.2-14]: a Response Topic must not contain wildcards. The server must not pass
    such a PUBLISH on as it is (it would send a forbidden Response Topic itself): it refuses it
    (PUBACK >= 0x80) or closes the connection (DISCONNECT 0x82 / 0x81 / 0x90)."""
    with Paho(broker.port, "rtwatch", V5) as w:
        assert w.subscribe("rt/t", qos=1) == [1]
        with raw_connect(broker.port, "rtbad", 5) as r:
            r.send(publish_packet("rt/t", b"wild reply", qos=1, packet_id=1, version=5,
                                  props_=prop(0x08, reply)))
            try:
                got = r.recv()
            except Closed:
                got = None
            if got is not None and got.type == PUBACK:
                assert got.reason >= 0x80, hex(got.reason)
            elif got is not None:
                assert got.type == DISCONNECT and got.reason in (0x81, 0x82, 0x90), got
        sentinel_round_trip(broker.port, "rt/t", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


def test_subscription_identifier_from_a_client_not_forwarded(broker):
    """[MQTT-3.3.4-6]: a client must not put a Subscription Identifier on a PUBLISH; the server
    treats it as a protocol error or ignores it, but never forwards it as if it were the
    subscriber's ([MQTT-3.3.4-3]: only identifiers of matching subscriptions are sent)."""
    with raw_connect(broker.port, "sidwatch", 5) as w:
        w.send(subscribe_packet(1, [("sidc/t", 1)], version=5))
        assert w.expect(SUBACK).codes == [1]
        with raw_connect(broker.port, "sidbad", 5) as r:
            r.send(publish_packet("sidc/t", b"with id", qos=1, packet_id=1, version=5,
                                  props_=prop(0x0B, 42)))
            try:
                got = r.recv()
            except Closed:
                got = None
            if got is not None and got.type == DISCONNECT:
                assert got.reason in (0x81, 0x82), got
        with Paho(broker.port, "sidsent", V5) as p:
            p.publish("sidc/t", b"sentinel", qos=1)
        while True:
            m = w.expect(PUBLISH)
            w.send(ack_packet(PUBACK, m.packet_id))
            assert 0x0B not in m.props, m.props
            if m.payload == b"sentinel":
                break


def _complete(s: Raw, m):
    """Acknowledge a PUBLISH the broker sent: PUBACK, or PUBREC / PUBREL / PUBCOMP. Between
    PUBREC and PUBCOMP nothing new may arrive: the QoS 2 message still counts."""
    if m.qos == 1:
        s.send(ack_packet(PUBACK, m.packet_id))
        return
    s.send(ack_packet(PUBREC, m.packet_id))
    assert s.expect(PUBREL).packet_id == m.packet_id
    assert pings_clean(s) == []
    s.send(ack_packet(PUBCOMP, m.packet_id))


def test_server_respects_client_receive_maximum(broker):
    """[MQTT-3.3.4-9]: the server never has more unacknowledged QoS 1/2 PUBLISHes towards a
    client than the client's Receive Maximum (2 here); a QoS 2 one stays counted until PUBCOMP.
    Each completed flow lets exactly one more through, in order."""
    n = 6
    with raw_connect(broker.port, "rmsub", 5, props_=prop(0x21, 2)) as s:
        s.send(subscribe_packet(1, [("rmc/t", 2)], version=5))
        assert s.expect(SUBACK).codes == [2]
        with Paho(broker.port, "rmpub", V5) as p:
            for i in range(n):
                p.publish("rmc/t", str(i).encode(), qos=2 if i in (0, 3) else 1)
        window = [s.expect(PUBLISH) for _ in range(2)]
        delivered = [m.payload for m in window]
        assert pings_clean(s) == []  # no third while two are unacknowledged
        while window:
            _complete(s, window.pop(0))
            if len(delivered) < n:
                m = s.expect(PUBLISH)
                delivered.append(m.payload)
                window.append(m)
            assert pings_clean(s) == []
        assert delivered == [str(i).encode() for i in range(n)]


def test_qos0_not_held_back_by_receive_maximum(broker):
    """[MQTT-3.3.4-10]: with the client's Receive Maximum used up by unacknowledged QoS 1
    messages, QoS 0 messages are still sent at once."""
    with raw_connect(broker.port, "rm0sub", 5, props_=prop(0x21, 1)) as s:
        s.send(subscribe_packet(1, [("rm0/q1", 1), ("rm0/q0", 0)], version=5))
        assert s.expect(SUBACK).codes == [1, 0]
        with Paho(broker.port, "rm0pub", V5) as p:
            p.publish("rm0/q1", b"holds the slot", qos=1)
            p.publish("rm0/q1", b"waits", qos=1)
            p.publish("rm0/q0", b"zero", qos=0)
            p.publish("rm0/q0", b"zero again", qos=1)  # downgraded to 0 for this subscription
        held = s.expect(PUBLISH)
        assert held.payload == b"holds the slot"
        got = [s.expect(PUBLISH) for _ in range(2)]
        assert [(m.payload, m.qos) for m in got] == [(b"zero", 0), (b"zero again", 0)]
        assert pings_clean(s) == []
        s.send(ack_packet(PUBACK, held.packet_id))
        assert s.expect(PUBLISH).payload == b"waits"

"""tern broker: MQTT 5.0 conformance audit, second slice: the normative statements of sections
3.4 to 3.15 (PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ,
PINGRESP, DISCONNECT, AUTH) and of chapter 4 (QoS flows, redelivery, topic names and filters,
shared subscriptions, flow control, enhanced authentication, error handling) that no other test
covers. Each test cites the statement IDs it checks; the matrix of the whole slice, with the
tests that already covered a statement elsewhere, is kept beside the audit (v5_b.md).
Every client here speaks protocol level 5 (raw sockets or paho-mqtt v5)."""
import struct
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from broker_fixture import (CONNACK, DISCONNECT, PEER, PINGREQ_BYTES, PINGRESP,  # noqa: F401
                            PUBACK, PUBCOMP, PUBLISH, PUBREC, PUBREL, SUBACK, UNSUBACK, V5, Closed,
                            Paho, Raw, ack_packet, assert_broker_serves, broker,
                            connect_packet, disconnect_packet, expect_disconnect, make_broker,
                            mstr, packet, prop, props, publish_packet, raw_connect,
                            sentinel_round_trip, subscribe_packet, varint)

# Reason codes each packet may carry (MQTT 5.0 tables 3-4 ... 3-11).
PUBACK_CODES = {0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99}
PUBREL_CODES = {0x00, 0x92}  # PUBREL and PUBCOMP
SUBACK_CODES = {0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1, 0xA2}
UNSUBACK_CODES = {0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91}
DISCONNECT_CODES = {0x00, 0x80, 0x81, 0x82, 0x83, 0x87, 0x89, 0x8B, 0x8D, 0x8E, 0x8F, 0x90,
                    0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9A, 0x9B, 0x9C, 0x9D, 0x9E,
                    0x9F, 0xA0, 0xA1, 0xA2}
SESSION = prop(0x11, 300)  # Session Expiry Interval: the session outlives the connection


def wire_size(p) -> int:
    """The size of a received packet on the wire (fixed header included)."""
    return 1 + len(varint(len(p.body))) + len(p.body)


def unsubscribe_packet(packet_id: int, filters: list, props_: bytes = b"") -> bytes:
    body = struct.pack("!H", packet_id) + varint(len(props_)) + props_
    for f in filters:
        body += mstr(f)
    return packet(0xA2, body)


def auth_packet(reason: int, props_: bytes = b"", flags: int = 0) -> bytes:
    return packet(0xF0 | flags, bytes([reason]) + varint(len(props_)) + props_)


def unsuback_codes(p) -> list[int]:
    return p.codes  # same layout as SUBACK: packet id, properties, one code per filter


def next_is_pingresp(r: Raw) -> bool:
    """PINGREQ, and the very next packet is the PINGRESP: nothing was sent to r before it."""
    r.send(PINGREQ_BYTES)
    p = r.recv()
    assert p.type == PINGRESP, f"expected nothing before PINGRESP, got {p}"
    return True


def sub(port: int, client_id: str, filters: list, **kw) -> Raw:
    """A raw 5.0 connection subscribed to filters [(filter, options)]."""
    r = raw_connect(port, client_id, 5, **kw)
    r.send(subscribe_packet(1, filters, version=5))
    ack = r.expect(SUBACK)
    assert all(c < 0x80 for c in ack.codes), ack.codes
    return r


def complete_qos2_redelivery(r: Raw, payload: bytes, packet_id: int) -> None:
    """The next PUBLISH is a DUP re-send of (payload, packet_id): take it through PUBCOMP."""
    again = r.expect(PUBLISH)
    assert (again.payload, again.packet_id, again.dup) == (payload, packet_id, True)
    r.send(ack_packet(PUBREC, again.packet_id))
    assert r.expect(PUBREL).packet_id == again.packet_id
    r.send(ack_packet(PUBCOMP, again.packet_id))


def closed_or_refused(r: Raw, kind: int) -> None:
    """After an invalid filter: either a SUBACK/UNSUBACK refusing it, or the connection closed
    (with a DISCONNECT naming the error, if any)."""
    try:
        p = r.recv()
    except Closed:
        return
    if p.type == kind:
        assert p.codes and p.codes[0] >= 0x80, p.codes
        return
    assert p.type == DISCONNECT and p.reason in (0x81, 0x82, 0x8F), p
    assert r.wait_closed() == []


# ---- 3.4 - 3.7: acknowledgements ------------------------------------------------------------

def test_acknowledgement_reason_codes(make_broker):
    """[MQTT-3.4.2-1], [MQTT-3.5.2-1], [MQTT-3.6.2-1], [MQTT-3.7.2-1]: every PUBACK, PUBREC,
    PUBREL and PUBCOMP the server sends carries one of the codes its table lists, for accepted
    and refused publishes alike; [MQTT-4.3.2-4], [MQTT-4.3.3-8], [MQTT-4.3.3-11]: with the
    packet identifier of the packet it answers."""
    b = make_broker(acl="topic readwrite ok/#\n")
    with raw_connect(b.port, "acks", 5) as r, sub(b.port, "acks-sub", [("ok/#", 2)]) as s:
        for pid, topic, qos in ((11, "ok/a", 1), (12, "no/a", 1), (13, "ok/b", 2),
                                (14, "no/b", 2)):
            r.send(publish_packet(topic, b"x", qos=qos, packet_id=pid, version=5))
            ack = r.expect(PUBACK if qos == 1 else PUBREC)
            assert ack.packet_id == pid
            assert ack.reason in PUBACK_CODES, hex(ack.reason)
        r.send(ack_packet(PUBREL, 13))
        comp = r.expect(PUBCOMP)
        assert (comp.packet_id, comp.reason) == (13, 0)
        r.send(ack_packet(PUBREL, 999))
        comp = r.expect(PUBCOMP)
        assert comp.packet_id == 999 and comp.reason in PUBREL_CODES
        # the server's own PUBREL, as the sender of a QoS 2 message
        got = [s.expect(PUBLISH), s.expect(PUBLISH)]
        q2 = next(p for p in got if p.qos == 2)
        s.send(ack_packet(PUBREC, q2.packet_id, 0))
        rel = s.expect(PUBREL)
        assert rel.packet_id == q2.packet_id and rel.reason in PUBREL_CODES
        s.send(ack_packet(PUBCOMP, q2.packet_id))
        assert s.is_open()


def test_acknowledgements_fit_client_maximum_packet_size(make_broker):
    """[MQTT-3.4.2-2/3], [MQTT-3.5.2-2/3], [MQTT-3.6.2-2/3], [MQTT-3.7.2-2/3], [MQTT-3.9.2-1/2],
    [MQTT-3.11.2-1/2]: a Reason String or User Property must not make a PUBACK, PUBREC, PUBREL,
    PUBCOMP, SUBACK or UNSUBACK larger than the client's Maximum Packet Size. With a 20-byte
    limit, refused publishes, an unknown PUBREL, a refused filter and an unknown UNSUBSCRIBE
    all get acknowledgements that fit."""
    limit = 20
    b = make_broker(acl="topic readwrite tiny/#\n")
    with raw_connect(b.port, "tiny", 5, props_=prop(0x27, limit)) as r:
        got = [r.connack]
        r.send(subscribe_packet(1, [("tiny/t", 2), ("other/t", 1)], version=5))
        got.append(r.expect(SUBACK))
        r.send(unsubscribe_packet(2, ["never/subscribed"]))
        got.append(r.expect(UNSUBACK))
        bad = b"\xff\xfe not utf-8"
        r.send(publish_packet("tiny/u", bad, qos=1, packet_id=3, version=5, props_=prop(0x01, 1)))
        got.append(r.expect(PUBACK))
        r.send(publish_packet("tiny/u", bad, qos=2, packet_id=4, version=5, props_=prop(0x01, 1)))
        got.append(r.expect(PUBREC))
        r.send(ack_packet(PUBREL, 77))
        got.append(r.expect(PUBCOMP))
        r.send(publish_packet("tiny/t", b"ok", qos=2, packet_id=5, version=5))
        # the message comes back to r when the server routes it: on PUBLISH or on PUBREL
        while not any(p.type == PUBREC for p in got):
            got.append(r.recv())
        r.send(ack_packet(PUBREL, 5))
        while not (any(p.type == PUBCOMP and p.packet_id == 5 for p in got)
                   and any(p.type == PUBLISH for p in got)):
            got.append(r.recv())
        msg = next(p for p in got if p.type == PUBLISH)
        r.send(ack_packet(PUBREC, msg.packet_id))
        got.append(r.expect(PUBREL))
        r.send(ack_packet(PUBCOMP, msg.packet_id))
        assert r.is_open()
        assert all(wire_size(p) <= limit for p in got), [(p, wire_size(p)) for p in got]


def test_disconnect_fits_client_maximum_packet_size(broker):
    """[MQTT-3.14.2-3/4]: the server must not add a Reason String or User Property that makes
    its DISCONNECT larger than the client's Maximum Packet Size (here 20 bytes; a protocol
    error, AUTH without an Authentication Method in CONNECT, makes the server disconnect)."""
    limit = 20
    with raw_connect(broker.port, "tinydisc", 5, props_=prop(0x27, limit)) as r:
        r.send(auth_packet(0x19))
        got = r.wait_closed()
        assert all(p.type == DISCONNECT for p in got), got
        assert all(wire_size(p) <= limit for p in got), \
            [(p, wire_size(p), p.props) for p in got]


# ---- 3.8 - 3.11: SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK -----------------------------------

@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe"])
@pytest.mark.parametrize("filt", [pytest.param(b"bad/\xff", id="invalid-byte"),
                                  pytest.param(b"bad/\xed\xa0\x80", id="surrogate"),
                                  pytest.param(b"bad/a\x00b", id="nul")])
def test_filter_not_utf8_is_malformed(broker, kind, filt):
    """[MQTT-3.8.3-1], [MQTT-3.10.3-1] (1.5.4, [MQTT-4.7.3-2]): a topic filter that is not
    well-formed UTF-8, or contains U+0000, makes the packet malformed: the server closes the
    connection ([MQTT-4.13.1-1]), after DISCONNECT 0x81."""
    with raw_connect(broker.port, f"utf8{kind}", 5) as r:
        if kind == "subscribe":
            r.send(subscribe_packet(1, [(filt, 1)], version=5))
        else:
            r.send(unsubscribe_packet(1, [filt]))
        expect_disconnect(r.wait_closed(), 0x81)
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("options", [pytest.param(0x41, id="bit6"),
                                     pytest.param(0x81, id="bit7")])
def test_subscription_options_reserved_bits_malformed(broker, options):
    """[MQTT-3.8.3-5]: non-zero reserved bits in the Subscription Options make the SUBSCRIBE
    malformed: DISCONNECT 0x81 and close ([MQTT-4.13.1-1])."""
    with raw_connect(broker.port, "optbits", 5) as r:
        r.send(subscribe_packet(1, [("opt/t", options)], version=5))
        expect_disconnect(r.wait_closed(), 0x81)
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("options", [pytest.param(0x03, id="qos3"),
                                     pytest.param(0x31, id="retain-handling-3")])
def test_subscription_options_invalid_values(broker, options):
    """3.8.3.1: Maximum QoS 3 and Retain Handling 3 are protocol errors: the server closes the
    connection ([MQTT-4.13.1-1]), after DISCONNECT 0x81 or 0x82."""
    with raw_connect(broker.port, "optvals", 5) as r:
        r.send(subscribe_packet(1, [("opt/t", options)], version=5))
        expect_disconnect(r.wait_closed(), (0x81, 0x82))
    assert_broker_serves(broker.port)


def test_subscribe_with_several_filters_is_a_sequence(make_broker):
    """[MQTT-3.8.4-1/2]: SUBACK with the SUBSCRIBE's packet identifier; [MQTT-3.8.4-5]: several
    filters are handled as a sequence of SUBSCRIBEs answered by one SUBACK (the same filter
    twice: the second replaces the first, [MQTT-3.8.4-3]); [MQTT-3.8.4-6/7], [MQTT-3.9.3-1/2]:
    one code per filter, in order, granted QoS or a failure code from table 3-8."""
    b = make_broker(acl="topic readwrite seq/#\n")
    with raw_connect(b.port, "seq", 5) as r:
        r.send(subscribe_packet(0xBEEF, [("seq/a", 0), ("other/x", 1), ("seq/a", 2),
                                         ("seq/b", 1)], version=5))
        ack = r.expect(SUBACK)
        assert ack.packet_id == 0xBEEF
        assert len(ack.codes) == 4 and all(c in SUBACK_CODES for c in ack.codes), ack.codes
        assert [ack.codes[0], ack.codes[2], ack.codes[3]] == [0, 2, 1]
        if PEER == "tern":  # Mosquitto checks read access only when it delivers
            assert ack.codes[1] == 0x87  # other/x is not readable under this ACL
        with Paho(b.port, "seqpub", V5) as p:
            p.publish("seq/a", b"a", qos=2)
            p.publish("seq/b", b"b", qos=2)
        m = r.expect(PUBLISH)
        assert (m.topic, m.payload, m.qos) == (b"seq/a", b"a", 2)  # one copy, at QoS 2
        r.send(ack_packet(PUBREC, m.packet_id))
        got = [r.recv(), r.recv()]  # PUBREL for seq/a and the seq/b message, either order
        m2 = next(p for p in got if p.type == PUBLISH)
        assert (m2.topic, m2.payload, m2.qos) == (b"seq/b", b"b", 1)
        assert any(p.type == PUBREL for p in got)


def test_unsubscribe_without_filters_is_a_protocol_error(broker):
    """[MQTT-3.10.3-2]: an UNSUBSCRIBE must name at least one filter; without any the server
    closes the connection ([MQTT-4.13.1-1]) after DISCONNECT 0x81 or 0x82."""
    with raw_connect(broker.port, "unsub-none", 5) as r:
        r.send(unsubscribe_packet(1, []))
        expect_disconnect(r.wait_closed(), (0x81, 0x82))
    assert_broker_serves(broker.port)


def test_unsubscribe_compares_filters_character_by_character(broker):
    """[MQTT-3.10.4-1]: UNSUBSCRIBE deletes only a subscription whose filter is the same string
    (a wildcard filter is not expanded); [MQTT-3.10.4-4/5/6]: one UNSUBACK with the packet
    identifier, even when nothing was deleted, handling the filters as a sequence;
    [MQTT-3.11.3-1/2]: one code per filter, in order, from table 3-9."""
    with sub(broker.port, "ux", [("ux/+", 1), ("ux/a", 1)]) as r:
        r.send(unsubscribe_packet(0x4242, ["ux/#", "ux/+", "ux/+", "UX/a"]))
        ack = r.expect(UNSUBACK)
        assert ack.packet_id == 0x4242
        codes = unsuback_codes(ack)
        assert len(codes) == 4 and all(c in UNSUBACK_CODES for c in codes), codes
        assert codes[1] == 0x00  # ux/+ existed
        assert codes[0] != 0x00 and codes[2] != 0x00 and codes[3] != 0x00  # nothing to delete
        r.send(unsubscribe_packet(0x4243, ["never/there"]))
        ack = r.expect(UNSUBACK)
        assert ack.packet_id == 0x4243 and len(unsuback_codes(ack)) == 1
        with Paho(broker.port, "uxpub", V5) as p:
            p.publish("ux/b", b"via ux/+ only", qos=1)
            p.publish("ux/a", b"via ux/a", qos=1)
        m = r.expect(PUBLISH)
        assert (m.topic, m.payload) == (b"ux/a", b"via ux/a")
        r.send(ack_packet(PUBACK, m.packet_id))
        assert next_is_pingresp(r)


def test_unsubscribe_completes_messages_in_flight(broker):
    """[MQTT-3.10.4-3]: after UNSUBSCRIBE the server completes the QoS 1 and QoS 2 deliveries it
    had started for that filter: the PUBREC still gets its PUBREL."""
    with sub(broker.port, "uflight", [("uf/t", 2)]) as r:
        with Paho(broker.port, "ufpub", V5) as p:
            p.publish("uf/t", b"two", qos=2)
            m = r.expect(PUBLISH)
            assert m.qos == 2
            r.send(unsubscribe_packet(2, ["uf/t"]))
            ack = r.expect(UNSUBACK)
            assert unsuback_codes(ack) == [0]
            r.send(ack_packet(PUBREC, m.packet_id))
            rel = r.expect(PUBREL)
            assert rel.packet_id == m.packet_id and rel.reason == 0
            r.send(ack_packet(PUBCOMP, m.packet_id))
            p.publish("uf/t", b"after", qos=2)  # no longer subscribed
        assert next_is_pingresp(r)


# ---- 3.12 - 3.15: PINGREQ, DISCONNECT, AUTH -------------------------------------------------

def test_pingreq_answered(broker):
    """[MQTT-3.12.4-1]: each PINGREQ gets a PINGRESP."""
    with raw_connect(broker.port, "pinger", 5) as r:
        for _ in range(3):
            assert next_is_pingresp(r)
        r.send(PINGREQ_BYTES * 3)
        assert [r.recv().type for _ in range(3)] == [PINGRESP] * 3


def test_no_disconnect_before_a_successful_connack(broker):
    """[MQTT-3.14.0-1]: the server sends DISCONNECT only after a CONNACK with a code below
    0x80: a refused CONNECT gets its CONNACK and a close, and a connection whose first packet is
    not CONNECT is closed without any packet; packets pipelined after a refused CONNECT are not
    answered ([MQTT-3.1.4-6])."""
    with Raw(broker.port, 5) as r:
        r.send(connect_packet("refused", version=5, props_=prop(0x15, "NO-SUCH-METHOD"))
               + subscribe_packet(1, [("pipe/t", 0)], version=5) + PINGREQ_BYTES)
        got = r.wait_closed()
        assert [p.type for p in got] == [CONNACK], got
        assert got[0].reason >= 0x80
    with Raw(broker.port, 5) as r:
        r.send(publish_packet("first/t", b"x", qos=0, version=5))
        assert r.wait_closed() == []
    assert_broker_serves(broker.port)


def test_disconnect_reserved_flags_malformed(broker):
    """[MQTT-3.14.1-1]: a DISCONNECT whose reserved flag bits are not 0 is malformed: the
    server closes the connection (DISCONNECT 0x81 first), and as no valid DISCONNECT 0x00 came
    the will is published ([MQTT-3.1.2-8])."""
    with Paho(broker.port, "dflags-watch", V5) as w:
        assert w.subscribe("dflags/will", qos=1) == [1]
        with raw_connect(broker.port, "dflags", 5,
                         will=("dflags/will", b"malformed goodbye", 1, False)) as r:
            r.send(b"\xe1\x00")
            expect_disconnect(r.wait_closed(), 0x81)
        w.wait_for("dflags/will", b"malformed goodbye")


def test_server_disconnect_is_last_and_has_no_session_expiry(broker):
    """[MQTT-3.14.2-1]: the server's DISCONNECT uses a code from table 3-10;
    [MQTT-3.14.2-2]: it never carries a Session Expiry Interval; [MQTT-3.14.4-1/2]: nothing
    follows it and the connection is closed. Checked for a takeover (0x8E) and a protocol
    error, both on a session with a non-zero expiry."""
    old = raw_connect(broker.port, "dx", 5, clean=False, props_=SESSION)
    new = raw_connect(broker.port, "dx", 5, clean=False, props_=SESSION)
    got = old.wait_closed()
    old.close()
    expect_disconnect(got, 0x8E)  # the DISCONNECT itself is a SHOULD ([MQTT-3.1.4-3])
    assert all(0x11 not in p.props for p in got)
    new.send(auth_packet(0x19))  # a protocol error (no Authentication Method in CONNECT)
    got = new.wait_closed()
    new.close()
    expect_disconnect(got, DISCONNECT_CODES - {0x00})
    assert all(0x11 not in p.props for p in got)


def test_disconnect_raising_a_zero_session_expiry_is_a_protocol_error(broker):
    """3.14.2.2.2: a DISCONNECT may not set a non-zero Session Expiry Interval when CONNECT had
    0: a protocol error, so the server closes the connection ([MQTT-4.13.1-1]), DISCONNECT 0x82
    first, and keeps no session."""
    with raw_connect(broker.port, "raise", 5) as r:
        r.send(disconnect_packet(0x00, prop(0x11, 600)))
        expect_disconnect(r.wait_closed(), 0x82)
    with raw_connect(broker.port, "raise", 5, clean=False) as r:
        assert not r.connack.session_present


def test_disconnect_with_error_code_publishes_will(broker):
    """[MQTT-3.1.2-8] and [MQTT-3.14.4-3]: only a DISCONNECT with reason 0x00 deletes the will;
    a client that disconnects with an error code (0x80 Unspecified error) has its will
    published."""
    with Paho(broker.port, "errwill-watch", V5) as w:
        assert w.subscribe("errwill/t", qos=1) == [1]
        with raw_connect(broker.port, "errwill", 5,
                         will=("errwill/t", b"went wrong", 1, False)) as r:
            r.send(disconnect_packet(0x80))
            assert r.wait_closed() == []
        w.wait_for("errwill/t", b"went wrong", timeout=5)


def test_auth_without_authentication_method(broker):
    """[MQTT-4.12.0-6]: a client that named no Authentication Method gets no Authentication
    Method in CONNACK and never an AUTH; an AUTH from it ([MQTT-4.12.0-7], a client MUST NOT)
    is a protocol error: the server closes the connection ([MQTT-4.13.1-1]), so a
    re-authentication it cannot honour ends the connection ([MQTT-4.12.1-2])."""
    for i, data in enumerate((auth_packet(0x19, prop(0x15, "SCRAM-SHA-1")),
                              auth_packet(0x18), auth_packet(0x00))):
        with raw_connect(broker.port, f"noauth{i}", 5) as r:
            assert 0x15 not in r.connack.props and 0x16 not in r.connack.props
            r.send(data)
            got = r.wait_closed()
            assert all(p.type != 15 for p in got), got
            expect_disconnect(got, (0x81, 0x82))
    assert_broker_serves(broker.port)


def test_auth_reserved_flags_malformed(broker):
    """[MQTT-3.15.1-1]: AUTH with non-zero reserved flag bits is malformed: close."""
    with raw_connect(broker.port, "authflags", 5) as r:
        r.send(auth_packet(0x18, flags=0x02))
        expect_disconnect(r.wait_closed(), (0x81, 0x82))
    assert_broker_serves(broker.port)


def test_unsupported_authentication_method_refused(broker):
    """[MQTT-4.12.0-1], [MQTT-4.12.0-4]: a server that does not support the client's
    Authentication Method refuses the CONNECT (CONNACK 0x8C or 0x87 allowed) and closes the
    connection; it sends no AUTH ([MQTT-4.12.0-2] concerns only methods it supports)."""
    with Raw(broker.port, 5) as r:
        r.send(connect_packet("scram", version=5, props_=prop(0x15, "SCRAM-SHA-1")
                              + prop(0x16, b"client-first")))
        got = r.wait_closed()
        assert [p.type for p in got] == [CONNACK], got
        assert got[0].reason >= 0x80
    assert_broker_serves(broker.port)


# ---- 4.1, 4.3, 4.4: sessions, QoS flows, redelivery ----------------------------------------

def test_session_kept_while_connected_beyond_its_expiry(broker):
    """[MQTT-4.1.0-1]: the session is not discarded while its connection is open, even when the
    connection outlives the Session Expiry Interval (1 s here; checked 2 s after)."""
    with raw_connect(broker.port, "longlived", 5, clean=False, props_=prop(0x11, 1)) as r:
        r.send(subscribe_packet(1, [("ll/t", 1)], version=5))
        r.expect(SUBACK)
        time.sleep(2)
        assert next_is_pingresp(r)
        with Paho(broker.port, "llpub", V5) as p:
            p.publish("ll/t", b"still subscribed", qos=1)
        assert r.expect(PUBLISH).payload == b"still subscribed"


def test_server_publish_flags_and_packet_identifiers(broker):
    """[MQTT-4.3.1-1]: a QoS 0 PUBLISH from the server has DUP 0 and no packet identifier;
    [MQTT-4.3.2-1/2], [MQTT-4.3.3-1/2]: each new QoS 1/2 PUBLISH has DUP 0 and a non-zero
    packet identifier not in use by another unacknowledged one; [MQTT-4.4.0-1]: nothing is
    re-sent on the same connection while the acknowledgements are withheld."""
    with sub(broker.port, "ids", [("ids/0", 0), ("ids/1", 1), ("ids/2", 2)]) as r:
        with Paho(broker.port, "idspub", V5) as p:
            for i in range(4):
                p.publish("ids/1", f"one{i}".encode(), qos=1)
                p.publish("ids/2", f"two{i}".encode(), qos=2)
            p.publish("ids/0", b"zero", qos=1)
        got = [r.expect(PUBLISH) for _ in range(9)]
        zero = [m for m in got if m.topic == b"ids/0"]
        assert len(zero) == 1 and zero[0].qos == 0 and not zero[0].dup
        assert zero[0].payload == b"zero"  # no packet identifier before the properties
        acked = [m for m in got if m.qos]
        assert all(not m.dup for m in acked)
        ids = [m.packet_id for m in acked]
        assert 0 not in ids and len(set(ids)) == len(ids) == 8, ids
        assert next_is_pingresp(r)  # withheld acknowledgements: no re-send


def test_qos1_packet_id_reused_after_puback_is_a_new_message(broker):
    """[MQTT-4.3.2-5]: once the server has sent PUBACK, a PUBLISH with the same packet
    identifier is a new message, DUP or not."""
    with Paho(broker.port, "reuse-watch", V5) as w:
        assert w.subscribe("reuse/t", qos=1) == [1]
        with raw_connect(broker.port, "reuse", 5) as r:
            for payload, dup in ((b"one", False), (b"two", True), (b"one", True)):
                r.send(publish_packet("reuse/t", payload, qos=1, packet_id=5, dup=dup,
                                      version=5))
                ack = r.expect(PUBACK)
                assert (ack.packet_id, ack.reason) == (5, 0)
        sentinel_round_trip(broker.port, "reuse/t", w)
        assert [m.payload for m in w.messages] == [b"one", b"two", b"one", b"sentinel"]


def test_qos2_publish_resent_until_pubrec_then_only_pubrel(broker):
    """[MQTT-4.3.3-3]: the server's QoS 2 PUBLISH stays unacknowledged until PUBREC, so a
    resumed session gets it again (DUP 1, same identifier, [MQTT-4.4.0-1]); [MQTT-4.3.3-6]:
    once the server has sent PUBREL it re-sends only the PUBREL, never the PUBLISH."""
    r = sub(broker.port, "q2resume", [("q2r/t", 2)], clean=False, props_=SESSION)
    with Paho(broker.port, "q2rpub", V5) as p:
        p.publish("q2r/t", b"exactly once", qos=2)
    first = r.expect(PUBLISH)
    assert first.qos == 2 and not first.dup
    r.close()  # no PUBREC
    r = raw_connect(broker.port, "q2resume", 5, clean=False, props_=SESSION)
    assert r.connack.session_present
    again = r.expect(PUBLISH)
    assert (again.payload, again.dup, again.packet_id) == (b"exactly once", True, first.packet_id)
    r.send(ack_packet(PUBREC, again.packet_id))
    assert r.expect(PUBREL).packet_id == first.packet_id
    r.close()  # no PUBCOMP
    r = raw_connect(broker.port, "q2resume", 5, clean=False, props_=SESSION)
    assert r.expect(PUBREL).packet_id == first.packet_id
    assert next_is_pingresp(r)  # and no PUBLISH
    r.send(ack_packet(PUBCOMP, first.packet_id))
    assert next_is_pingresp(r)
    r.close()


def test_message_expiry_does_not_interrupt_qos2_flows(broker):
    """[MQTT-4.3.3-7]: once the server has sent a QoS 2 PUBLISH it does not apply message
    expiry to it: a resumed session still gets it after its 1 s Message Expiry Interval passed;
    [MQTT-4.3.3-13]: as receiver, the server completes the QoS 2 acknowledgements of a message
    whose expiry passed (PUBREL after 2 s -> PUBCOMP 0x00)."""
    r = sub(broker.port, "q2exp", [("q2e/t", 2)], clean=False, props_=SESSION)
    with Paho(broker.port, "q2epub", V5) as p:
        p.publish("q2e/t", b"short-lived", qos=2,
                  props_=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    first = r.expect(PUBLISH)
    r.close()  # no PUBREC
    with raw_connect(broker.port, "q2exp-in", 5) as pub:
        pub.send(publish_packet("q2e/other", b"x", qos=2, packet_id=3, version=5,
                                props_=prop(0x02, 1)))
        assert pub.expect(PUBREC).reason == 0
        time.sleep(2)
        pub.send(ack_packet(PUBREL, 3))
        comp = pub.expect(PUBCOMP)
        assert (comp.packet_id, comp.reason) == (3, 0)
    r = raw_connect(broker.port, "q2exp", 5, clean=False, props_=SESSION)
    complete_qos2_redelivery(r, b"short-lived", first.packet_id)
    r.close()


def test_qos2_packet_id_free_after_refusing_pubrec(make_broker):
    """[MQTT-4.3.3-9]: after a PUBREC with a code >= 0x80 the packet identifier is free: a new
    PUBLISH with it is a new message, acknowledged and delivered."""
    b = make_broker(acl="topic readwrite ok/#\n")
    with Paho(b.port, "refrec-watch", V5) as w:
        assert w.subscribe("ok/#", qos=2) == [2]
        with raw_connect(b.port, "refrec", 5) as r:
            r.send(publish_packet("no/t", b"denied", qos=2, packet_id=9, version=5))
            assert r.expect(PUBREC).reason >= 0x80
            r.send(publish_packet("ok/t", b"allowed", qos=2, packet_id=9, version=5))
            rec = r.expect(PUBREC)
            assert (rec.packet_id, rec.reason) == (9, 0)
            r.send(ack_packet(PUBREL, 9))
            comp = r.expect(PUBCOMP)
            assert (comp.packet_id, comp.reason) == (9, 0)
        sentinel_round_trip(b.port, "ok/t", w)
        assert [m.payload for m in w.messages] == [b"allowed", b"sentinel"]


def test_refusing_acknowledgement_ends_the_delivery(broker):
    """[MQTT-4.4.0-2]: a PUBACK or PUBREC with a code >= 0x80 from the client acknowledges the
    PUBLISH: no PUBREL follows the refusing PUBREC, and a resumed session gets neither message
    again."""
    r = sub(broker.port, "refuser", [("rf/1", 1), ("rf/2", 2)], clean=False, props_=SESSION)
    with Paho(broker.port, "rfpub", V5) as p:
        p.publish("rf/1", b"one", qos=1)
        p.publish("rf/2", b"two", qos=2)
    got = [r.expect(PUBLISH), r.expect(PUBLISH)]
    for m in got:
        r.send(ack_packet(PUBACK if m.qos == 1 else PUBREC, m.packet_id, 0x80))
    assert next_is_pingresp(r)  # no PUBREL
    r.close()
    r = raw_connect(broker.port, "refuser", 5, clean=False, props_=SESSION)
    assert r.connack.session_present
    assert next_is_pingresp(r)  # nothing re-sent
    with Paho(broker.port, "rfpub2", V5) as p:
        p.publish("rf/1", b"next", qos=1)
    m = r.expect(PUBLISH)
    assert m.payload == b"next"
    r.send(ack_packet(PUBACK, m.packet_id))
    r.close()


# ---- 4.7: topic names and filters -----------------------------------------------------------

def test_dollar_topics_not_matched_by_leading_wildcards(make_broker):
    """[MQTT-4.7.2-1]: filters starting with '#' or '+' do not match topics starting with '$':
    tern's retained $SYS topics reach an explicit $SYS/... subscription but neither a '#' nor a
    '+/broker/#' one, live or retained."""
    b = make_broker("--set", "broker.sys_interval=1s", acl="topic readwrite #\ntopic read $SYS/#\n")
    with Paho(b.port, "sys-explicit", V5) as x, Paho(b.port, "sys-hash", V5) as h, \
            Paho(b.port, "sys-plus", V5) as pl:
        assert h.subscribe("#", qos=0) == [0]
        assert pl.subscribe("+/broker/#", qos=0) == [0]
        assert x.subscribe("$SYS/broker/#", qos=0) == [0]
        # a live refresh (RETAIN 0, so not a retained copy): published after every
        # subscription was in place
        x._wait(lambda: any(not m.retain for m in x.messages), 10, "a live $SYS refresh")
        with Paho(b.port, "sys-late", V5) as late:  # retained $SYS messages exist by now
            assert late.subscribe("#", qos=0) == [0]
            for c, topic in ((h, "sys/sentinel"), (pl, "sys/broker/sentinel"),
                             (late, "sys/sentinel")):
                sentinel_round_trip(b.port, topic, c)
                assert not [m.topic for m in c.messages if m.topic.startswith("$")]


def test_topic_matching_does_not_normalize(broker):
    """[MQTT-4.7.3-4]: matching compares topics as they are: no Unicode normalization, no case
    folding, no trimming of separators."""
    nfc = "norm/\u00e9"
    with Paho(broker.port, "norm", V5) as s, Paho(broker.port, "normpub", V5) as p:
        assert s.subscribe(nfc, qos=1) == [1]
        for t in ("norm/e\u0301", "Norm/\u00e9", "norm/\u00e9/", "norm//\u00e9", nfc):
            p.publish(t, t.encode(), qos=1)
        sentinel_round_trip(broker.port, nfc, s)
        assert [m.payload for m in s.messages] == [nfc.encode(), b"sentinel"]


def test_empty_topic_name_and_filter_refused(broker):
    """[MQTT-4.7.3-1]: topic names and filters are at least one character long. A PUBLISH with
    an empty topic and no Topic Alias is a protocol error (3.3.2.3.4: DISCONNECT 0x82, close);
    an empty filter is refused (SUBACK code >= 0x80) or the connection closed."""
    with Paho(broker.port, "empty-watch", V5) as w:
        assert w.subscribe("#", qos=1) == [1]
        with raw_connect(broker.port, "emptytopic", 5) as r:
            r.send(publish_packet("", b"nowhere", qos=1, packet_id=1, version=5))
            expect_disconnect(r.wait_closed(), 0x82)
        with raw_connect(broker.port, "emptyfilter", 5) as r:
            r.send(subscribe_packet(1, [("", 1)], version=5))
            closed_or_refused(r, SUBACK)
        sentinel_round_trip(broker.port, "empty/sentinel", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


# ---- 4.8.2: shared subscriptions ------------------------------------------------------------

@pytest.mark.parametrize("filt", ["$share//t", "$share/g", "$share/g/", "$share/g+/t",
                                  "$share/g#/t", "$share/+/t"])
def test_invalid_shared_subscription_filter(broker, filt):
    """[MQTT-4.8.2-1/2] bind the client: a shared filter is $share/, a ShareName of at least one
    character without '/', '+' or '#', then '/' and a topic filter. How strictly a server checks
    is its choice (4.13.1), so this accepts a refusing SUBACK, a granting one (the filter then
    taken some other way) or a close after DISCONNECT 0x81/0x82/0x8F; tern refuses (SUBACK
    0x8F or a close). Either way the broker keeps serving."""
    with raw_connect(broker.port, "badshare", 5) as r:
        r.send(subscribe_packet(1, [(filt, 1)], version=5))
        try:
            p = r.recv()
        except Closed:
            p = None
        if p is not None and p.type == SUBACK:
            assert len(p.codes) == 1 and p.codes[0] in SUBACK_CODES, p.codes
            if PEER == "tern":
                assert p.codes[0] >= 0x80, p.codes
        elif p is not None:
            assert p.type == DISCONNECT and p.reason in (0x81, 0x82, 0x8F), p
            assert r.wait_closed() == []
    assert_broker_serves(broker.port)


def test_shared_subscription_respects_granted_qos(broker):
    """[MQTT-4.8.2-3]: a message sent through a shared subscription is sent at no more than the
    QoS granted to that member."""
    with sub(broker.port, "sq0", [("$share/g0/sq/t", 0)]) as m0, \
            sub(broker.port, "sq1", [("$share/g1/sq/t", 1)]) as m1:
        with Paho(broker.port, "sqpub", V5) as p:
            p.publish("sq/t", b"q2", qos=2)
        a = m0.expect(PUBLISH)
        b = m1.expect(PUBLISH)
        assert (a.payload, a.qos) == (b"q2", 0)
        assert (b.payload, b.qos) == (b"q2", 1)
        m1.send(ack_packet(PUBACK, b.packet_id))


def test_shared_subscription_retain_as_published(broker):
    """4.8.2 gives shared subscriptions the options of any other ([MQTT-4.8.2-3] for QoS):
    [MQTT-3.3.1-13], Retain As Published 1 keeps the RETAIN flag a message was published with,
    on a shared subscription as on a plain one; [MQTT-3.3.1-12], with 0 it is cleared."""
    rap = 0x08 | 1
    with sub(broker.port, "rap-shared", [("$share/g/rap/t", rap)]) as shared, \
            sub(broker.port, "rap-plain", [("rap/t", rap)]) as plain, \
            sub(broker.port, "rap-off", [("$share/h/rap/t", 1)]) as off:
        with Paho(broker.port, "rap-pub", V5) as p:
            p.publish("rap/t", b"kept", qos=1, retain=True)
        got = {}
        for name, r in (("shared", shared), ("plain", plain), ("off", off)):
            m = r.expect(PUBLISH)
            r.send(ack_packet(PUBACK, m.packet_id))
            got[name] = (m.payload, m.retain)
        assert got == {"shared": (b"kept", True), "plain": (b"kept", True),
                       "off": (b"kept", False)}


def test_shared_qos2_completed_to_the_same_member(broker):
    """[MQTT-4.8.2-4]: a QoS 2 message a member got but did not acknowledge before its
    connection broke is completed with that member when it reconnects, not given to another
    member."""
    m1 = sub(broker.port, "sh-m1", [("$share/g/sh/t", 2)], clean=False, props_=SESSION)
    with Paho(broker.port, "sh-pub", V5) as p, Paho(broker.port, "sh-m2", V5) as m2:
        p.publish("sh/t", b"mine", qos=2)
        first = m1.expect(PUBLISH)
        assert first.payload == b"mine"
        assert m2.subscribe("$share/g/sh/t", qos=2) == [2]
        assert m2.subscribe("sh/sync", qos=1) == [1]
        m1.close()  # no PUBREC
        m1 = raw_connect(broker.port, "sh-m1", 5, clean=False, props_=SESSION)
        complete_qos2_redelivery(m1, b"mine", first.packet_id)
        assert next_is_pingresp(m1)
        sentinel_round_trip(broker.port, "sh/sync", m2)  # anything routed to m2 arrived first
        assert b"mine" not in [m.payload for m in m2.messages]
    m1.close()


def test_shared_qos2_not_given_to_another_member_when_the_session_ends(broker):
    """[MQTT-4.8.2-5]: if the session of the member holding an unacknowledged QoS 2 message
    ends before it reconnects, the message goes to no other member."""
    with Paho(broker.port, "she-watch", V5) as w, Paho(broker.port, "she-pub", V5) as p:
        assert w.subscribe("she/will", qos=1) == [1]
        m1 = sub(broker.port, "she-m1", [("$share/g/she/t", 2)],
                 will=("she/will", b"session over", 1, False))
        p.publish("she/t", b"lost with m1", qos=2)
        assert m1.expect(PUBLISH).payload == b"lost with m1"
        with Paho(broker.port, "she-m2", V5) as m2:
            assert m2.subscribe("$share/g/she/t", qos=2) == [2]
            m1.close()  # session expiry 0: the session ends with the connection
            w.wait_for("she/will", b"session over")
            for i in range(3):
                p.publish("she/t", f"s{i}".encode(), qos=2)
            m2.wait_for("she/t", b"s2")
            assert [m.payload for m in m2.messages] == [b"s0", b"s1", b"s2"]


def test_shared_refused_acknowledgement_not_redelivered(broker):
    """[MQTT-4.8.2-6]: a member that answers with a PUBACK code >= 0x80 ends that message: the
    server sends it to no other member (nor again to this one)."""
    m1 = sub(broker.port, "shr-m1", [("$share/g/shr/t", 1)])
    with Paho(broker.port, "shr-pub", V5) as p:
        p.publish("shr/t", b"refused", qos=1)
        x = m1.expect(PUBLISH)
        with Paho(broker.port, "shr-m2", V5) as m2:
            assert m2.subscribe("$share/g/shr/t", qos=1) == [1]
            m1.send(ack_packet(PUBACK, x.packet_id, 0x80))
            n = 6
            for i in range(n):
                p.publish("shr/t", f"s{i}".encode(), qos=1)
            at_m1 = []
            deadline = time.monotonic() + 10
            while len(at_m1) + len(m2.messages) < n and time.monotonic() < deadline:
                try:
                    m = m1.recv(timeout=0.2)
                except TimeoutError:
                    continue
                assert m.type == PUBLISH, m
                m1.send(ack_packet(PUBACK, m.packet_id))
                at_m1.append(m.payload)
            got = sorted(at_m1 + [m.payload for m in m2.messages])
            assert got == sorted(f"s{i}".encode() for i in range(n)), got
    m1.close()


# ---- 4.9: flow control ----------------------------------------------------------------------

def test_send_quota_follows_client_receive_maximum(broker):
    """[MQTT-4.9.0-1/2]: the server's send quota starts at the client's Receive Maximum (2) and
    no QoS > 0 PUBLISH is sent while it is zero; each PUBACK frees one. [MQTT-4.9.0-3]: other
    packets (PINGRESP, SUBACK) are still answered meanwhile. Nothing is lost or reordered."""
    with sub(broker.port, "quota", [("quota/t", 1)], props_=prop(0x21, 2)) as r:
        with Paho(broker.port, "quotapub", V5) as p:
            for i in range(6):
                p.publish("quota/t", str(i).encode(), qos=1)
        first = [r.expect(PUBLISH), r.expect(PUBLISH)]
        assert next_is_pingresp(r)  # the quota is used up: no third PUBLISH
        r.send(subscribe_packet(7, [("quota/other", 1)], version=5))
        assert r.expect(SUBACK).packet_id == 7
        got = [m.payload for m in first]
        r.send(ack_packet(PUBACK, first[0].packet_id))
        m = r.expect(PUBLISH)
        got.append(m.payload)
        assert next_is_pingresp(r)  # one PUBACK, one more PUBLISH
        pending = [first[1], m]
        while len(got) < 6:
            r.send(ack_packet(PUBACK, pending.pop(0).packet_id))
            m = r.expect(PUBLISH)
            got.append(m.payload)
            pending.append(m)
        assert got == [str(i).encode() for i in range(6)]

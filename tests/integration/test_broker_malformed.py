"""tern broker: malformed and protocol-violating input from raw sockets (MQTT 3.1.1 sections
1.5.3, 2.2, 3.1.2, 4.7.3, 4.8; MQTT 5.0 sections 1.5.4, 2.1.3, 2.2.2, 4.13). The broker must close
the offending connection (5.0: after a DISCONNECT with the reason code the specification names:
0x81 Malformed Packet, 0x82 Protocol Error, ...), and keep serving every other client: a
bystander connected before keeps working and new clients can connect."""
import itertools

import pytest

from broker_fixture import (CONNACK, V5, Paho, Raw, assert_broker_serves, broker,  # noqa
                            connect_packet, expect_disconnect, make_broker,
                            mstr, packet, prop, publish_packet, raw_connect, sentinel_round_trip)

RAW_VERSIONS = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]
_ids = itertools.count()


def assert_closed_and_others_served(broker, version, data: bytes, reasons, *, connect=True):
    """Connect a raw client (unless connect is False), send data, and check that the broker
    closes it (5.0 after connect: DISCONNECT with one of reasons), while a bystander connected
    before still gets messages and new clients still connect."""
    n = next(_ids)
    with Paho(broker.port, f"bystander{n}", V5) as w:
        assert w.subscribe("bystander/t", qos=1) == [1]
        with Raw(broker.port, version) as r:
            if connect:
                ack = r.connect(f"bad{n}")
                assert ack.reason == 0
            r.send(data)
            got = r.wait_closed()
        if connect and version == 5:
            expect_disconnect(got, reasons)
        elif connect:
            assert got == [], "3.1.1 has no DISCONNECT from the server: just a close"
        else:  # an error in CONNECT: the broker MAY answer with a refusing CONNACK first
            assert all(p.type == CONNACK and p.reason != 0 for p in got), got
            assert len(got) <= 1, got
        sentinel_round_trip(broker.port, "bystander/t", w)
    assert_broker_serves(broker.port, f"after{n}")


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_remaining_length_of_five_bytes(broker, version):
    """[MQTT-1.5.5] 2.2.3: the remaining length is at most 4 bytes; a 5th -> malformed."""
    assert_closed_and_others_served(broker, version, b"\x30\xff\xff\xff\xff\x7f", 0x81)


@pytest.mark.parametrize("first_byte", [
    pytest.param(0x80, id="subscribe-flags-0"), pytest.param(0x60, id="pubrel-flags-0"),
    pytest.param(0xA0, id="unsubscribe-flags-0"), pytest.param(0xC1, id="pingreq-flags-1"),
    pytest.param(0x48, id="puback-flags-8")])
@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_reserved_flag_bits_wrong(broker, version, first_byte):
    """[MQTT-2.2.2-1/2] (5.0 2.1.3): fixed header flags that are not the reserved values -> a
    malformed packet, the connection is closed."""
    body = {0x80: b"\x00\x01" + (b"\x00" if version == 5 else b"") + mstr("a/b") + b"\x01",
            0x60: b"\x00\x01", 0xA0: b"\x00\x01" + (b"\x00" if version == 5 else b"") + mstr("a"),
            0xC1: b"", 0x48: b"\x00\x01"}[first_byte]
    assert_closed_and_others_served(broker, version, packet(first_byte, body), 0x81)


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_publish_qos_3(broker, version):
    """[MQTT-3.3.1-4]: a PUBLISH with both QoS bits set -> malformed, close."""
    body = mstr("q3/t") + b"\x00\x01" + (b"\x00" if version == 5 else b"") + b"x"
    assert_closed_and_others_served(broker, version, packet(0x36, body), 0x81)


@pytest.mark.parametrize("topic", [
    pytest.param(b"bad/\xff\xfe", id="invalid-byte"),
    pytest.param(b"bad/\xed\xa0\x80", id="surrogate"),
    pytest.param(b"bad/\xc0\xaf", id="overlong"),
    pytest.param(b"bad/a\x00b", id="nul")])
@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_invalid_utf8_topic(broker, version, topic):
    """[MQTT-1.5.3-1/2] (5.0 1.5.4): ill-formed UTF-8 or U+0000 in a topic -> malformed."""
    data = publish_packet(topic, b"x", qos=1, packet_id=1, version=version)
    assert_closed_and_others_served(broker, version, data, 0x81)


@pytest.mark.parametrize("topic", ["wild/+", "wild/#", "+", "#", "a/+/b"])
@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_wildcard_in_publish_topic(broker, version, topic):
    """[MQTT-3.3.2-2]: a topic name must not contain wildcards; the broker closes the
    connection (5.0: DISCONNECT 0x90 Topic Name invalid, or 0x81/0x82)."""
    data = publish_packet(topic, b"x", qos=1, packet_id=1, version=version)
    assert_closed_and_others_served(broker, version, data, (0x81, 0x82, 0x90))


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_string_longer_than_packet(broker, version):
    """A topic length prefix that runs past the end of the packet -> malformed."""
    assert_closed_and_others_served(broker, version, packet(0x32, b"\x00\x0aab\x00\x01"), 0x81)


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_qos1_publish_with_packet_id_zero(broker, version):
    """[MQTT-2.3.1-1]: QoS > 0 packets need a non-zero packet identifier."""
    data = publish_packet("pid0/t", b"x", qos=1, packet_id=0, version=version)
    assert_closed_and_others_served(broker, version, data, (0x81, 0x82))


def test_v5_duplicate_property(broker):
    """MQTT 5.0 2.2.2.2: including a property other than User Property twice -> protocol
    error."""
    data = publish_packet("dup/t", b"x", qos=1, packet_id=1, version=5,
                          props_=prop(0x01, 0) + prop(0x01, 0))
    assert_closed_and_others_served(broker, 5, data, (0x81, 0x82))


def test_v5_unknown_property(broker):
    """MQTT 5.0 2.2.2.2: a property identifier that is not defined -> malformed."""
    body = mstr("unk/t") + b"\x00\x01" + b"\x02\x7f\x00" + b"x"
    assert_closed_and_others_served(broker, 5, packet(0x32, body), (0x81, 0x82))


def test_v5_property_length_past_packet_end(broker):
    body = mstr("plen/t") + b"\x00\x01" + b"\x40\x01\x00"
    assert_closed_and_others_served(broker, 5, packet(0x32, body), 0x81)


def test_v5_property_not_allowed_in_packet(broker):
    """MQTT 5.0 2.2.2.2: a property not valid for the packet type (Session Expiry on PUBLISH) ->
    malformed / protocol error."""
    data = publish_packet("np/t", b"x", qos=1, packet_id=1, version=5, props_=prop(0x11, 10))
    assert_closed_and_others_served(broker, 5, data, (0x81, 0x82))


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_reserved_packet_type(broker, version):
    """2.1.2: packet type 0 is reserved (and AUTH, type 15, does not exist in 3.1.1)."""
    assert_closed_and_others_served(broker, version, b"\x00\x00", (0x81, 0x82))
    if version == 4:
        assert_closed_and_others_served(broker, 4, b"\xf0\x00", ())


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_server_to_client_packet_types_from_client(broker, version):
    """A client sending CONNACK / SUBACK / PINGRESP violates the protocol: close."""
    for data in (b"\x20\x02\x00\x00", b"\x90\x03\x00\x01\x00", b"\xd0\x00"):
        assert_closed_and_others_served(broker, version, data, (0x81, 0x82))


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_truncated_packet_then_close(broker, version):
    """A client that sends half a packet and closes: the broker drops it cleanly; as the close
    came without DISCONNECT, the will is published ([MQTT-3.1.2-8])."""
    with Paho(broker.port, "trwatch", V5) as w:
        assert w.subscribe("trunc/#", qos=1) == [1]
        r = raw_connect(broker.port, f"trunc{version}", version,
                        will=("trunc/will", b"cut off", 1, False))
        data = publish_packet("trunc/t", b"y" * 100, qos=1, packet_id=1, version=version)
        r.send(data[:len(data) // 2])
        r.close()
        w.wait_for("trunc/will", b"cut off")
        sentinel_round_trip(broker.port, "trunc/t", w)
        assert [m.payload for m in w.messages] == [b"cut off", b"sentinel"]
    assert_broker_serves(broker.port)


def test_truncated_connect_then_close(broker):
    with Raw(broker.port) as r:
        r.send(connect_packet("halfway")[:7])
    with Raw(broker.port) as r:
        r.send(b"\x10")  # just a first byte
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_connect_reserved_flag_set(broker, version):
    """[MQTT-3.1.2-3]: the reserved CONNECT flag must be 0; otherwise disconnect."""
    assert_closed_and_others_served(broker, version, connect_packet(
        "reserved", version=version, flags_extra=0x01), (), connect=False)


@pytest.mark.parametrize("version", RAW_VERSIONS)
def test_connect_will_qos_3(broker, version):
    """[MQTT-3.1.2-14]: Will QoS 3 -> malformed CONNECT."""
    assert_closed_and_others_served(broker, version, connect_packet(
        "wq3", version=version, will=("w/t", b"x", 3, False)), (), connect=False)


def test_v311_connect_password_without_username(broker):
    """[MQTT-3.1.2-22]: 3.1.1 forbids a password without a user name."""
    assert_closed_and_others_served(broker, 4, connect_packet(
        "pwonly", version=4, password=b"secret"), (), connect=False)


def test_v311_connect_will_flags_without_will(broker):
    """[MQTT-3.1.2-13/15]: Will QoS / Will Retain must be 0 when the Will Flag is 0."""
    assert_closed_and_others_served(broker, 4, connect_packet(
        "wflags", version=4, flags_extra=0x20), (), connect=False)


def test_connect_with_trailing_garbage(broker):
    """A CONNECT whose remaining length covers more bytes than its fields -> malformed."""
    data = connect_packet("trail", version=4)
    data = bytes([0x10, data[1] + 3]) + data[2:] + b"abc"
    assert_closed_and_others_served(broker, 4, data, (), connect=False)


def test_connection_without_connect_is_closed(make_broker):
    """A connection that never sends CONNECT is closed after broker.connect_timeout (3.1.4: a
    server should close a connection that does not send CONNECT in a reasonable time)."""
    b = make_broker("--set", "broker.connect_timeout=1s")
    with Raw(b.port) as idle, Raw(b.port) as partial:
        partial.send(connect_packet("slow")[:5])
        assert idle.wait_closed(timeout=10) == []
        assert partial.wait_closed(timeout=10) == []
    assert_broker_serves(b.port)


def test_many_bad_clients_then_good_ones(broker):
    """A burst of mixed garbage connections does not disturb the broker."""
    garbage = [b"\xff" * 10, b"\x10\xff\xff\xff\xff\xff", b"\x30\x00", b"\x10\x02\x00\x04",
               connect_packet("x", version=4) + b"\x30\x05\x00\x09abc",
               connect_packet("y", version=5) + b"\x82\x00"]
    socks = []
    for g in garbage * 5:
        r = Raw(broker.port)
        r.send(g)
        socks.append(r)
    for r in socks:
        r.wait_closed()
        r.close()
    assert_broker_serves(broker.port)


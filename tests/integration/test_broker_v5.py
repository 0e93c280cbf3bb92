"""tern broker: MQTT 5.0 features: topic aliases (3.3.2.3.4), properties forwarded unchanged
(3.3.2.3), message expiry (3.3.2.3.3), subscription identifiers (3.8.2.1.2), No Local
(3.8.3.1), Receive Maximum (3.1.2.11.3, 4.9), Maximum Packet Size (3.1.2.11.4, 3.2.2.3.6) and
the payload format indicator (3.3.2.3.2)."""
import time

import pytest
from paho.mqtt.client import SubscribeOptions
from paho.mqtt.packettypes import PacketTypes

from broker_fixture import (DISCONNECT, PUBACK, PUBLISH, PUBREC, SUBACK, V3, V5, Paho,  # noqa
                            assert_broker_serves, broker, expect_disconnect, make_broker, prop,
                            props, publish_packet, raw_connect, sentinel_round_trip,
                            subscribe_packet)


def test_connack_advertises_limits(make_broker):
    """MQTT 5.0 3.2.2.3: CONNACK carries the server's Receive Maximum, Topic Alias Maximum and
    Maximum Packet Size."""
    b = make_broker("--set", "broker.topic_alias_maximum=4", "--set", "broker.receive_maximum=10",
                    "--set", "broker.max_packet_size=1KiB")
    with raw_connect(b.port, "limits", 5) as r:
        p = r.connack.props
        assert p.get(0x22) == [4]  # Topic Alias Maximum
        assert p.get(0x21) == [10]  # Receive Maximum
        assert p.get(0x27) == [1024]  # Maximum Packet Size


def test_topic_alias_from_client(make_broker):
    """MQTT 5.0 3.3.2.3.4: a PUBLISH with a topic and Topic Alias n sets the alias; a later
    PUBLISH with an empty topic and alias n goes to that topic; aliases can be re-mapped."""
    b = make_broker("--set", "broker.topic_alias_maximum=4")
    with Paho(b.port, "alsub", V5) as s:
        assert s.subscribe("alias/#", qos=1) == [1]
        with raw_connect(b.port, "alpub", 5) as r:
            r.send(publish_packet("alias/one", b"1", qos=1, packet_id=1, version=5,
                                  props_=prop(0x23, 1)))
            assert r.expect(PUBACK).reason == 0
            r.send(publish_packet("", b"2", qos=1, packet_id=2, version=5, props_=prop(0x23, 1)))
            assert r.expect(PUBACK).reason == 0
            r.send(publish_packet("alias/two", b"3", qos=1, packet_id=3, version=5,
                                  props_=prop(0x23, 4)))
            assert r.expect(PUBACK).reason == 0
            r.send(publish_packet("alias/three", b"4", qos=1, packet_id=4, version=5,
                                  props_=prop(0x23, 1)))  # re-map alias 1
            assert r.expect(PUBACK).reason == 0
            r.send(publish_packet("", b"5", qos=0, version=5, props_=prop(0x23, 1)))
            r.send(publish_packet("", b"6", qos=1, packet_id=5, version=5, props_=prop(0x23, 4)))
            assert r.expect(PUBACK).reason == 0
        got = s.wait_messages(6)
        assert [(m.topic, m.payload) for m in got] == [
            ("alias/one", b"1"), ("alias/one", b"2"), ("alias/two", b"3"),
            ("alias/three", b"4"), ("alias/three", b"5"), ("alias/two", b"6")]
        # the subscriber did not ask for aliases: every PUBLISH it got names its topic
        assert all(getattr(m.props, "TopicAlias", None) is None for m in got)


@pytest.mark.parametrize("alias,reason", [(0, (0x94, 0x82, 0x81)), (5, 0x94)])
def test_topic_alias_out_of_range_disconnects(make_broker, alias, reason):
    """[MQTT-3.3.2-9/10]: an alias greater than the server's Topic Alias Maximum -> DISCONNECT
    0x94 (Topic Alias invalid); alias 0 ([MQTT-3.3.2-8], not permitted) -> 0x94 or a protocol
    error."""
    b = make_broker("--set", "broker.topic_alias_maximum=4")
    with raw_connect(b.port, "badalias", 5) as r:
        r.send(publish_packet("a/t", b"x", qos=1, packet_id=1, version=5,
                              props_=prop(0x23, alias)))
        expect_disconnect(r.wait_closed(), reason)
    assert_broker_serves(b.port)


def test_unknown_topic_alias_is_a_protocol_error(broker):
    """3.3.2.3.4: an empty topic with an alias that was never set -> DISCONNECT 0x82."""
    with raw_connect(broker.port, "noalias", 5) as r:
        r.send(publish_packet("", b"x", qos=1, packet_id=1, version=5, props_=prop(0x23, 2)))
        expect_disconnect(r.wait_closed(), 0x82)
    assert_broker_serves(broker.port)


def test_properties_forwarded_unchanged(broker):
    """[MQTT-3.3.2-15..20], [MQTT-3.3.2-4]: user properties (order kept, repeats allowed),
    content type, response topic, correlation data and payload format indicator reach the
    subscriber as published."""
    with Paho(broker.port, "psub", V5) as s, Paho(broker.port, "ppub", V5) as p:
        assert s.subscribe("props/t", qos=1) == [1]
        pp = props(PacketTypes.PUBLISH, UserProperty=[("b", "2"), ("a", "1"), ("a", "0")],
                   ContentType="application/json", ResponseTopic="props/reply",
                   CorrelationData=b"\xde\xad\xbe\xef", PayloadFormatIndicator=1)
        assert p.publish("props/t", b'{"x":1}', qos=1, props_=pp) == 0
        m = s.wait_messages(1)[0]
        assert m.payload == b'{"x":1}'
        assert m.props.UserProperty == [("b", "2"), ("a", "1"), ("a", "0")]
        assert m.props.ContentType == "application/json"
        assert m.props.ResponseTopic == "props/reply"
        assert m.props.CorrelationData == b"\xde\xad\xbe\xef"
        assert m.props.PayloadFormatIndicator == 1


def test_v5_properties_not_sent_to_v311_subscriber_but_message_is(broker):
    with Paho(broker.port, "p3sub", V3) as s, Paho(broker.port, "p3pub", V5) as p:
        assert s.subscribe("props3/t", qos=1) == [1]
        p.publish("props3/t", b"plain", qos=1,
                  props_=props(PacketTypes.PUBLISH, UserProperty=[("k", "v")]))
        assert s.wait_messages(1)[0].payload == b"plain"


def test_message_expiry_drops_stale_queued_message(broker):
    """[MQTT-3.3.2-5]: a message whose expiry interval passed while queued for an offline
    session is not delivered; [MQTT-3.3.2-6]: one still valid is delivered with the remaining
    interval (not more than it was published with)."""
    s = Paho(broker.port, "expsub", V5, clean=False,
             connect_props=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    assert s.subscribe("mexp/t", qos=1) == [1]
    s.disconnect()
    with Paho(broker.port, "exppub", V5) as p:
        p.publish("mexp/t", b"stale", qos=1,
                  props_=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
        p.publish("mexp/t", b"fresh", qos=1,
                  props_=props(PacketTypes.PUBLISH, MessageExpiryInterval=600))
        p.publish("mexp/t", b"forever", qos=1)
    time.sleep(2.5)  # let the 1 s expiry pass
    assert s.connect().session_present is True
    sentinel_round_trip(broker.port, "mexp/t", s)
    got = [m for m in s.messages if m.payload != b"sentinel"]
    assert [m.payload for m in got] == [b"fresh", b"forever"]
    assert 0 < got[0].props.MessageExpiryInterval <= 600
    assert getattr(got[1].props, "MessageExpiryInterval", None) is None
    s.close()


def test_subscription_identifiers_delivered(broker):
    """[MQTT-3.3.4-3/4/5]: a PUBLISH carries the Subscription Identifiers of every matching
    subscription that had one."""
    with Paho(broker.port, "sidsub", V5) as s, Paho(broker.port, "sidpub", V5) as p:
        assert s.subscribe("sid/#", qos=1,
                           sub_props=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7)) == [1]
        big_id = props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=300000)
        assert s.subscribe("sid/+/x", qos=1, sub_props=big_id) == [1]
        assert s.subscribe("sid/none", qos=1) == [1]
        p.publish("sid/a/x", b"both", qos=1)
        p.publish("sid/b", b"one", qos=1)
        p.publish("sid/none", b"mixed", qos=1)
        sentinel_round_trip(broker.port, "sid/end", s)

        def ids(payload):
            copies = [m for m in s.messages if m.payload == payload]
            assert copies, payload
            out = set()
            for m in copies:
                v = getattr(m.props, "SubscriptionIdentifier", [])
                out |= set(v if isinstance(v, list) else [v])
            return out
        assert ids(b"both") == {7, 300000}
        assert ids(b"one") == {7}
        assert ids(b"mixed") == {7}  # sid/# has id 7; sid/none has none


def test_no_local(broker):
    """MQTT 5.0 3.8.3.1: No Local 1 -> the server does not forward a client's own publishes to
    that subscription; other publishers still reach it."""
    with Paho(broker.port, "nl", V5) as c, Paho(broker.port, "nlother", V5) as o:
        nl = SubscribeOptions(qos=1, noLocal=True)
        assert c.subscribe("nl/t", options=nl) == [1]
        c.publish("nl/t", b"mine", qos=1)
        o.publish("nl/t", b"theirs", qos=1)
        c.wait_for("nl/t", b"theirs")
        assert [m.payload for m in c.messages] == [b"theirs"]


def test_receive_maximum_exceeded_disconnects(make_broker):
    """MQTT 5.0 3.3.4 and 4.9 ([MQTT-3.3.4-7]): a client must not have more than the server's
    Receive Maximum QoS 1/2 PUBLISHes unacknowledged, and a QoS 2 PUBLISH stays unacknowledged
    until the server sends PUBCOMP. A server that receives more than Receive Maximum PUBLISHes
    it has not sent PUBACK/PUBCOMP for uses DISCONNECT 0x93 (Receive Maximum exceeded)."""
    b = make_broker("--set", "broker.receive_maximum=2")
    with raw_connect(b.port, "greedy", 5) as r:
        assert r.connack.props.get(0x21) == [2]
        for pid in (1, 2):
            r.send(publish_packet("rm/t", b"x", qos=2, packet_id=pid, version=5))
            assert r.expect(PUBREC).packet_id == pid  # no PUBREL: both stay unacknowledged
        r.send(publish_packet("rm/t", b"x", qos=2, packet_id=3, version=5))
        expect_disconnect(r.wait_closed(), 0x93)
    assert_broker_serves(b.port)


def test_receive_maximum_not_exceeded_by_completed_flows(make_broker):
    """Completed QoS 1/2 flows free the quota: many sequential publishes with Receive Maximum 2
    are fine."""
    b = make_broker("--set", "broker.receive_maximum=2")
    with Paho(b.port, "polite", V5) as c:
        assert c.subscribe("rmok/t", qos=2) == [2]
        for i in range(10):
            assert c.publish("rmok/t", str(i).encode(), qos=2) == 0
        assert len(c.wait_messages(10)) == 10


def test_packet_larger_than_maximum_packet_size_disconnects(make_broker):
    """[MQTT-3.2.2-15] / 4.13: a PUBLISH larger than the server's Maximum Packet Size ->
    DISCONNECT 0x95 (Packet too large); other clients are unaffected."""
    b = make_broker("--set", "broker.max_packet_size=1KiB")
    with Paho(b.port, "bigwatch", V5) as w:
        assert w.subscribe("big/t", qos=1) == [1]
        with raw_connect(b.port, "big", 5) as r:
            r.send(publish_packet("big/t", b"s" * 500, qos=1, packet_id=1, version=5))
            assert r.expect(PUBACK).reason == 0
            r.send(publish_packet("big/t", b"L" * 2000, qos=1, packet_id=2, version=5))
            expect_disconnect(r.wait_closed(), 0x95)
        with raw_connect(b.port, "big3", 4) as r:
            r.send(publish_packet("big/t", b"L" * 2000, qos=1, packet_id=2))
            assert r.wait_closed() == []
        sentinel_round_trip(b.port, "big/t", w)
        assert [m.payload for m in w.messages] == [b"s" * 500, b"sentinel"]


def test_client_maximum_packet_size_respected(broker):
    """[MQTT-3.1.2-24/25]: the server must not send a packet larger than the client's Maximum
    Packet Size; such a message is discarded for that client, smaller ones still arrive."""
    with Paho(broker.port, "smallclient", V5,
              connect_props=props(PacketTypes.CONNECT, MaximumPacketSize=200)) as s, \
            Paho(broker.port, "mpspub", V5) as p:
        assert s.subscribe("mps/t", qos=1) == [1]
        p.publish("mps/t", b"x" * 1000, qos=1)
        p.publish("mps/t", b"small", qos=1)
        assert [m.payload for m in s.wait_messages(1)] == [b"small"]
        sentinel_round_trip(broker.port, "mps/t", s)
        assert [m.payload for m in s.messages] == [b"small", b"sentinel"]


def test_invalid_utf8_with_payload_format_1_refused(broker):
    """[MQTT-3.3.2-4] 3.3.2.3.2: Payload Format Indicator 1 with a payload that is not UTF-8 ->
    PUBACK 0x99 (Payload format invalid) for QoS 1, and the message is not forwarded."""
    with Paho(broker.port, "pfiwatch", V5) as w:
        assert w.subscribe("pfi/t", qos=1) == [1]
        with raw_connect(broker.port, "pfi", 5) as r:
            r.send(publish_packet("pfi/t", b"\xff\xfe bad", qos=1, packet_id=1, version=5,
                                  props_=prop(0x01, 1)))
            ack = r.expect(PUBACK)
            assert (ack.packet_id, ack.reason) == (1, 0x99)
            r.send(publish_packet("pfi/t", "gültig".encode(), qos=1, packet_id=2, version=5,
                                  props_=prop(0x01, 1)))
            assert r.expect(PUBACK).reason == 0
            assert r.is_open()
        sentinel_round_trip(broker.port, "pfi/t", w)
        assert [m.payload for m in w.messages] == ["gültig".encode(), b"sentinel"]


def test_raw_subscription_identifier_on_the_wire(broker):
    """The Subscription Identifier travels as a variable byte integer property on PUBLISH."""
    with raw_connect(broker.port, "rawsid", 5) as r:
        r.send(subscribe_packet(1, [("rsid/t", 1)], version=5, props_=prop(0x0B, 16384)))
        assert r.expect(SUBACK).codes == [1]
        with Paho(broker.port, "rsidpub", V3) as p:
            p.publish("rsid/t", b"x", qos=1)
        m = r.expect(PUBLISH)
        assert m.props.get(0x0B) == [16384]
        assert m.payload == b"x"


def test_topic_with_too_many_levels_refused(make_broker):
    """docs/broker.md: topics over broker.max_topic_levels are refused with 0x90 (Topic Name
    invalid)."""
    b = make_broker("--set", "broker.max_topic_levels=4")
    with raw_connect(b.port, "deep", 5) as r:
        r.send(publish_packet("a/b/c/d", b"ok", qos=1, packet_id=1, version=5))
        assert r.expect(PUBACK).reason == 0
        r.send(publish_packet("a/b/c/d/e", b"deep", qos=1, packet_id=2, version=5))
        got = r.recv()
        assert got.type in (PUBACK, DISCONNECT) and got.reason == 0x90, got
        if got.type == DISCONNECT:
            assert r.wait_closed() == []
        else:
            assert r.is_open()
    assert_broker_serves(b.port)

"""tern broker: SUBSCRIBE / UNSUBSCRIBE and topic matching (MQTT 3.1.1 sections 3.8-3.11 and
4.7, MQTT 5.0 sections 3.8-3.11, 4.7 and 4.8.2 shared subscriptions)."""
import pytest

from broker_fixture import (DISCONNECT, SUBACK, V3, V5, VERSIONS, Closed, Paho, Raw,  # noqa
                            assert_broker_serves, broker, expect_disconnect, make_broker, packet,
                            raw_connect, sentinel_round_trip, subscribe_packet)

TOPICS = ["sport", "sport/", "sport/tennis", "sport/tennis/player1",
          "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon",
          "sport/tennis/player2", "sport/golf", "/finance", "finance", "a/b/c/d"]

# filter -> the TOPICS it matches (MQTT 3.1.1 4.7.1.2, 4.7.1.3 and their examples)
MATCHES = {
    "sport/tennis/player1/#": {"sport/tennis/player1", "sport/tennis/player1/ranking",
                               "sport/tennis/player1/score/wimbledon"},
    "sport/#": {"sport", "sport/", "sport/tennis", "sport/tennis/player1",
                "sport/tennis/player1/ranking", "sport/tennis/player1/score/wimbledon",
                "sport/tennis/player2", "sport/golf"},
    "#": set(TOPICS),
    "sport/tennis/+": {"sport/tennis/player1", "sport/tennis/player2"},
    "sport/+": {"sport/", "sport/tennis", "sport/golf"},
    "+": {"sport", "finance"},
    "+/+": {"sport/", "sport/tennis", "sport/golf", "/finance"},
    "/+": {"/finance"},
    "+/tennis/#": {"sport/tennis", "sport/tennis/player1", "sport/tennis/player1/ranking",
                   "sport/tennis/player1/score/wimbledon", "sport/tennis/player2"},
    "a/+/c/+": {"a/b/c/d"},
    "a/b/c/d": {"a/b/c/d"},
    "sport/tennis": {"sport/tennis"},
}


@pytest.mark.parametrize("version", VERSIONS)
def test_wildcard_matching(broker, version):
    """Each filter receives exactly the topics 4.7 says it matches."""
    subs = {}
    try:
        for i, f in enumerate(MATCHES):
            s = Paho(broker.port, f"wild{i}", version)
            assert s.subscribe(f, qos=1) == [1], f
            assert s.subscribe("end/marker", qos=1) == [1]
            subs[f] = s
        with Paho(broker.port, "wildpub", version) as p:
            for t in TOPICS:
                p.publish(t, t.encode(), qos=1)
            p.publish("end/marker", b"end/marker", qos=1)
            for f, s in subs.items():
                s.wait_for("end/marker", b"end/marker")
                got = [m.topic for m in s.messages if m.topic != "end/marker"]
                assert sorted(got) == sorted(MATCHES[f]), f"filter {f!r}"
                assert all(m.payload == m.topic.encode() for m in s.messages)
    finally:
        for s in subs.values():
            s.close()


@pytest.mark.parametrize("version", VERSIONS)
def test_unsubscribe_stops_delivery(broker, version):
    """[MQTT-3.10.4-1..5]: after UNSUBACK no new message for that filter is delivered; other
    subscriptions are unaffected."""
    with Paho(broker.port, "unsub", version) as s, Paho(broker.port, "unpub", V5) as p:
        assert s.subscribe("un/a/#", qos=1) == [1]
        assert s.subscribe("un/keep", qos=1) == [1]
        p.publish("un/a/1", b"before", qos=1)
        s.wait_for("un/a/1", b"before")
        codes = s.unsubscribe("un/a/#")
        if version == V5:
            assert codes == [0]
        p.publish("un/a/1", b"after", qos=1)
        sentinel_round_trip(broker.port, "un/keep", s)
        assert [m.payload for m in s.messages] == [b"before", b"sentinel"]


def test_unsubscribe_unknown_filter_v5(broker):
    """MQTT 5.0 3.11.3: UNSUBACK 0x11 (No subscription existed) for a filter not subscribed."""
    with Paho(broker.port, "unsub5", V5) as s:
        assert s.subscribe("known/t", qos=0) == [0]
        assert s.unsubscribe("known/t", "never/t") == [0x00, 0x11]


@pytest.mark.parametrize("version", VERSIONS)
def test_resubscribe_replaces_qos(broker, version):
    """[MQTT-3.8.4-3]: subscribing again to the same filter replaces the subscription (its QoS);
    the message is delivered once."""
    with Paho(broker.port, "resub", version) as s, Paho(broker.port, "resubpub", V5) as p:
        assert s.subscribe("re/t", qos=2) == [2]
        assert s.subscribe("re/t", qos=0) == [0]
        p.publish("re/t", b"m", qos=2)
        sentinel_round_trip(broker.port, "re/t", s)
        assert [(m.payload, m.qos) for m in s.messages] == [(b"m", 0), (b"sentinel", 0)]


@pytest.mark.parametrize("version", VERSIONS)
def test_multiple_filters_in_one_subscribe(broker, version):
    """[MQTT-3.9.3-1]: one SUBACK code per filter, in order."""
    with Paho(broker.port, "multi", version) as s:
        assert s.subscribe(("m/0", 0), ("m/1", 1), ("m/2", 2)) == [0, 1, 2]


def test_dollar_topics_not_publishable_and_not_matched_by_hash(broker):
    """4.7.2 ([MQTT-4.7.2-1]): '#' and '+/...' must not match topics starting with '$'.
    Clients cannot publish to '$' topics on tern (the broker refuses them: 5.0 PUBACK >= 0x80)
    and tern publishes no '$SYS' topics, so the matching rule itself cannot be observed end to
    end; this checks that a '$' publish is refused and reaches neither '#' nor '+/x'."""
    with Paho(broker.port, "dollar-all", V5) as a, Paho(broker.port, "dollar-plus", V3) as b, \
            Paho(broker.port, "dollar-pub", V5) as p:
        assert a.subscribe("#", qos=1) == [1]
        assert b.subscribe("+/x", qos=1) == [1]
        rc = p.publish("$x/x", b"not allowed", qos=1)
        assert rc is not None and rc >= 0x80
        p.publish("y/x", b"normal", qos=1)
        a.wait_for("y/x", b"normal")
        b.wait_for("y/x", b"normal")
        assert [m.topic for m in a.messages] == ["y/x"]
        assert [m.topic for m in b.messages] == ["y/x"]


@pytest.mark.parametrize("version", VERSIONS)
def test_shared_subscription_each_message_to_one_consumer(broker, version):
    """MQTT 5.0 4.8.2: a message matching a shared subscription goes to exactly one member of
    the group; a non-shared subscription to the same topics still gets every message."""
    n = 40
    with Paho(broker.port, "g1", version) as c1, Paho(broker.port, "g2", version) as c2, \
            Paho(broker.port, "plain", V5) as plain, Paho(broker.port, "sharepub", V5) as p:
        assert c1.subscribe("$share/g/fleet/+/telemetry", qos=1) == [1]
        assert c2.subscribe("$share/g/fleet/+/telemetry", qos=1) == [1]
        assert plain.subscribe("fleet/+/telemetry", qos=1) == [1]
        for i in range(n):
            p.publish(f"fleet/d{i % 7}/telemetry", str(i).encode(), qos=1)
        assert len(plain.wait_messages(n)) == n

        def total():
            return len(c1.messages) + len(c2.messages)
        c1._wait(lambda: total() >= n, 10, "all shared messages")
        got1 = [int(m.payload) for m in c1.messages]
        got2 = [int(m.payload) for m in c2.messages]
        assert sorted(got1 + got2) == list(range(n)), "each message to exactly one consumer"
        assert got1 and got2, "both consumers get some"
        assert all(m.topic.startswith("fleet/d") for m in c1.messages + c2.messages)


def test_shared_subscription_no_local_is_protocol_error(broker):
    """[MQTT-3.8.3-4]: No Local set on a shared subscription is a protocol error."""
    with raw_connect(broker.port, "sharenl", 5) as r:
        r.send(subscribe_packet(1, [("$share/g/x", 0x04 | 1)], version=5))
        expect_disconnect(r.wait_closed(), 0x82)
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("filt", ["a/#/b", "a#", "a/b+", "+a/b", "#/"])
@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_invalid_filter_refused(broker, version, filt):
    """[MQTT-4.7.1-2/3]: '#' only last and alone in its level, '+' alone in its level. The
    broker refuses the filter (SUBACK 0x80 / 5.0 0x8F or another failure code) or closes the
    connection; either way it never matches and other clients are unaffected."""
    with Raw(broker.port, version) as r:
        r.connect(f"badfilter{version}")
        r.send(subscribe_packet(1, [(filt, 1)], version=version))
        try:
            ack = r.recv()
        except Closed:  # closing the connection is the allowed alternative
            ack = None
        if ack is not None and ack.type == SUBACK:
            assert ack.codes[0] >= 0x80, ack.codes
        elif ack is not None:
            assert ack.type == DISCONNECT and ack.reason in (0x81, 0x82, 0x8F), ack
    assert_broker_serves(broker.port)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_subscribe_without_filters_is_a_protocol_error(broker, version):
    """[MQTT-3.8.3-3]: a SUBSCRIBE must contain at least one filter; otherwise close."""
    with raw_connect(broker.port, f"nofilter{version}", version) as r:
        body = b"\x00\x01" + (b"\x00" if version == 5 else b"")
        r.send(packet(0x82, body))
        got = r.wait_closed()
        if version == 5:
            expect_disconnect(got, (0x81, 0x82))
        else:
            assert got == []
    assert_broker_serves(broker.port)


def test_subscription_identifier_is_not_allowed_zero(broker):
    """MQTT 5.0 3.8.2.1.2: a Subscription Identifier of 0 is a protocol error."""
    with raw_connect(broker.port, "subid0", 5) as r:
        r.send(subscribe_packet(1, [("sid/t", 1)], version=5, props_=b"\x0b\x00"))
        expect_disconnect(r.wait_closed(), (0x81, 0x82))


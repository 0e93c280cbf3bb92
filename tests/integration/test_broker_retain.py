"""tern broker: retained messages (MQTT 3.1.1 3.3.1.3, MQTT 5.0 3.3.1.3 and 3.8.3.1 Retain
Handling / Retain As Published)."""
import pytest
from paho.mqtt.client import SubscribeOptions

from broker_fixture import V5, VERSIONS, Paho, broker, make_broker, sentinel_round_trip  # noqa


def opts(qos=1, rh=0, rap=False, no_local=False):
    return SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)


def subscribe_and_settle(broker, s: Paho, filt: str, sentinel_topic: str, **kw) -> list:
    """Subscribe, then publish a non-retained sentinel on sentinel_topic (which filt matches):
    retained messages for the new subscription are sent before it, so when the sentinel arrives
    everything retained that was going to be delivered is in s.messages. Returns those."""
    codes = s.subscribe(filt, **kw)
    assert codes[0] < 0x80, codes
    sentinel_round_trip(broker.port, sentinel_topic, s)
    got = [m for m in s.messages if m.payload != b"sentinel"]
    s.take()
    return got


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_delivered_on_subscribe_with_retain_flag(broker, version):
    """[MQTT-3.3.1-5/6/8]: the last retained message of a topic goes to new subscribers with
    RETAIN 1; a message forwarded to an existing subscription has RETAIN 0 ([MQTT-3.3.1-9])."""
    with Paho(broker.port, "live", version) as live, Paho(broker.port, "rpub", version) as p:
        assert live.subscribe("ret/a", qos=1) == [1]
        p.publish("ret/a", b"old", qos=1, retain=True)
        p.publish("ret/a", b"new", qos=1, retain=True)
        got = live.wait_messages(2)
        assert [(m.payload, m.retain) for m in got] == [(b"old", False), (b"new", False)]
        with Paho(broker.port, "late", version) as late:
            got = subscribe_and_settle(broker, late, "ret/a", "ret/a", qos=1)
            assert [(m.topic, m.payload, m.retain, m.qos) for m in got] == \
                [("ret/a", b"new", True, 1)]


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_qos_is_min_of_stored_and_granted(broker, version):
    with Paho(broker.port, "rq", version) as p:
        p.publish("retq/a", b"q2", qos=2, retain=True)
        p.publish("retq/b", b"q0", qos=0, retain=True)
    with Paho(broker.port, "rqsub", version) as s:
        got = subscribe_and_settle(broker, s, "retq/+", "retq/c", qos=1)
        assert sorted((m.topic, m.qos, m.retain) for m in got) == \
            [("retq/a", 1, True), ("retq/b", 0, True)]


@pytest.mark.parametrize("version", VERSIONS)
def test_empty_payload_clears_retained(broker, version):
    """[MQTT-3.3.1-10/11]: a retained PUBLISH with an empty payload removes the retained message
    (and is itself delivered to current subscribers, not stored)."""
    with Paho(broker.port, "clr", version) as p:
        p.publish("retc/a", b"keep me", qos=1, retain=True)
        p.publish("retc/b", b"stays", qos=1, retain=True)
        p.publish("retc/a", b"", qos=1, retain=True)
    with Paho(broker.port, "clrsub", version) as s:
        got = subscribe_and_settle(broker, s, "retc/#", "retc/z", qos=1)
        assert [(m.topic, m.payload) for m in got] == [("retc/b", b"stays")]


@pytest.mark.parametrize("version", VERSIONS)
def test_wildcard_subscription_gets_every_retained_match(broker, version):
    with Paho(broker.port, "many", version) as p:
        for i in range(10):
            p.publish(f"retw/{i}/v", str(i).encode(), qos=1, retain=True)
        p.publish("retw/other", b"no", qos=1, retain=True)
    with Paho(broker.port, "manysub", version) as s:
        got = subscribe_and_settle(broker, s, "retw/+/v", "retw/x/v", qos=1)
        assert sorted(m.payload for m in got) == sorted(str(i).encode() for i in range(10))
        assert all(m.retain for m in got)


def test_retain_handling_2_never_sends_retained(broker):
    """MQTT 5.0 3.8.3.1: Retain Handling 2 -> no retained messages at subscribe."""
    with Paho(broker.port, "rh2pub", V5) as p:
        p.publish("rh/t", b"retained", qos=1, retain=True)
    with Paho(broker.port, "rh2", V5) as s:
        assert subscribe_and_settle(broker, s, "rh/t", "rh/t", options=opts(rh=2)) == []


def test_retain_handling_1_only_for_a_new_subscription(broker):
    """MQTT 5.0 3.8.3.1: Retain Handling 1 -> retained messages only if the subscription did
    not exist; Retain Handling 0 -> on every subscribe."""
    with Paho(broker.port, "rh1pub", V5) as p:
        p.publish("rh1/t", b"retained", qos=1, retain=True)
    with Paho(broker.port, "rh1", V5) as s:
        got = subscribe_and_settle(broker, s, "rh1/t", "rh1/t", options=opts(rh=1))
        assert [(m.payload, m.retain) for m in got] == [(b"retained", True)]
        assert subscribe_and_settle(broker, s, "rh1/t", "rh1/t", options=opts(rh=1)) == []
        got = subscribe_and_settle(broker, s, "rh1/t", "rh1/t", options=opts(rh=0))
        assert [(m.payload, m.retain) for m in got] == [(b"retained", True)]


def test_retain_as_published(broker):
    """MQTT 5.0 3.8.3.1: Retain As Published 1 -> forwarded messages keep the RETAIN flag they
    were published with; 0 -> RETAIN is 0 on forwarded messages."""
    with Paho(broker.port, "rap1", V5) as a, Paho(broker.port, "rap0", V5) as b, \
            Paho(broker.port, "rappub", V5) as p:
        assert a.subscribe("rap/t", options=opts(rap=True)) == [1]
        assert b.subscribe("rap/t", options=opts(rap=False)) == [1]
        p.publish("rap/t", b"r", qos=1, retain=True)
        p.publish("rap/t", b"n", qos=1, retain=False)
        assert [(m.payload, m.retain) for m in a.wait_messages(2)] == [(b"r", True), (b"n", False)]
        assert [(m.payload, m.retain) for m in b.wait_messages(2)] == [(b"r", False), (b"n", False)]


@pytest.mark.parametrize("version", VERSIONS)
def test_retained_survives_publisher_disconnect(broker, version):
    with Paho(broker.port, "gone", version) as p:
        p.publish("rets/t", b"persisting", qos=0, retain=True)
    with Paho(broker.port, "after", version) as s:
        s.subscribe("rets/t", qos=0)
        m = s.wait_messages(1)[0]
        assert (m.payload, m.retain) == (b"persisting", True)

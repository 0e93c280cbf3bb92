"""tern broker: persistent sessions within one broker run (MQTT 3.1.1 3.1.2.4 and 4.1, MQTT 5.0
3.1.2.4 Clean Start, 3.1.2.11.2 Session Expiry Interval, 3.14.2.2.2): queued messages,
subscriptions kept, the max_queued bound, and expiry. Persistence across restarts is not
covered (it does not exist yet)."""
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from broker_fixture import (V3, V5, VERSIONS, Paho, broker, make_broker, props,  # noqa
                            sentinel_round_trip)


def persistent(port, client_id, version, expiry=300, connect=True):
    if version == V5:
        return Paho(port, client_id, V5, clean=False, connect=connect,
                    connect_props=props(PacketTypes.CONNECT, SessionExpiryInterval=expiry))
    return Paho(port, client_id, V3, clean=False, connect=connect)


@pytest.mark.parametrize("version", VERSIONS)
def test_offline_qos1_messages_delivered_on_reconnect(broker, version):
    """[MQTT-3.1.2-4/5]: a session resumed with clean 0 gets the QoS 1/2 messages that matched
    its subscriptions while it was disconnected, in order, and keeps its subscriptions."""
    s = persistent(broker.port, f"off{version}", version)
    assert s.subscribe("sess/t", qos=1) == [1]
    assert s.subscribe("sess/q2", qos=2) == [2]
    s.disconnect()
    with Paho(broker.port, "offpub", V5) as p:
        for i in range(10):
            p.publish("sess/t", f"m{i}".encode(), qos=1)
        p.publish("sess/q2", b"two", qos=2)
        p.publish("sess/t", b"qos0 may be dropped", qos=0)
        ack = s.connect()
        assert ack.session_present is True
        got = s.wait_messages(10, topic="sess/t")
        assert [m.payload for m in got][:10] == [f"m{i}".encode() for i in range(10)]
        assert all(m.qos == 1 for m in got[:10])
        assert [(m.payload, m.qos) for m in s.wait_messages(1, topic="sess/q2")] == [(b"two", 2)]
        # still subscribed without subscribing again
        p.publish("sess/t", b"live", qos=1)
        s.wait_for("sess/t", b"live")
    s.close()


def test_max_queued_bounds_the_offline_queue(make_broker):
    """broker.max_queued=5: a disconnected session keeps at most 5 messages; the rest are
    dropped (and counted), the session itself survives."""
    b = make_broker("--set", "broker.max_queued=5")
    s = persistent(b.port, "bounded", V3)
    assert s.subscribe("mq/t", qos=1) == [1]
    s.disconnect()
    with Paho(b.port, "mqpub", V5) as p:
        for i in range(20):
            p.publish("mq/t", str(i).encode(), qos=1)
    assert s.connect().session_present is True
    sentinel_round_trip(b.port, "mq/t", s)
    got = [m.payload for m in s.messages if m.payload != b"sentinel"]
    assert len(got) == 5, got
    ints = [int(x) for x in got]
    assert ints == sorted(ints), "queued messages keep their order"
    s.close()


def test_v5_session_expiry_zero_discards_session(broker):
    """MQTT 5.0 3.1.2.11.2: Session Expiry Interval 0 (the default) -> the session ends when the
    connection closes: nothing is queued, Session Present is 0 on return."""
    s = Paho(broker.port, "noexp", V5, clean=True)
    assert s.subscribe("exp0/t", qos=1) == [1]
    s.disconnect()
    with Paho(broker.port, "exp0pub", V5) as p:
        p.publish("exp0/t", b"lost", qos=1)
    assert s.connect(clean=False).session_present is False
    # queued messages would be sent right after CONNACK, before this SUBACK
    assert s.subscribe("exp0/t", qos=1) == [1]
    sentinel_round_trip(broker.port, "exp0/t", s)
    assert [m.payload for m in s.messages] == [b"sentinel"]
    s.close()


def test_v5_session_expiry_set_to_zero_at_disconnect(broker):
    """MQTT 5.0 3.14.2.2.2: a DISCONNECT may change a non-zero Session Expiry Interval to 0,
    which ends the session at once."""
    s = persistent(broker.port, "endnow", V5)
    assert s.subscribe("end/t", qos=1) == [1]
    s.disconnect(props_=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    assert s.connect(clean=False).session_present is False


def test_v5_session_expires_after_its_interval(broker):
    """MQTT 5.0 3.1.2.11.2: an offline session is discarded once its expiry interval passed
    (1 s here; checked after 3 s)."""
    s = persistent(broker.port, "short", V5, expiry=1)
    assert s.subscribe("short/t", qos=1) == [1]
    s.disconnect()
    time.sleep(3)
    assert s.connect(clean=False).session_present is False


def test_v5_clean_start_discards_existing_session(broker):
    """MQTT 5.0 [MQTT-3.1.2-4]: Clean Start 1 discards an existing session and its messages."""
    s = persistent(broker.port, "restart", V5)
    assert s.subscribe("cs/t", qos=1) == [1]
    s.disconnect()
    with Paho(broker.port, "cspub", V5) as p:
        p.publish("cs/t", b"old", qos=1)
    assert s.connect(clean=True).session_present is False
    assert s.subscribe("cs/t", qos=1) == [1]
    sentinel_round_trip(broker.port, "cs/t", s)
    assert [m.payload for m in s.messages] == [b"sentinel"]
    s.close()


def test_v311_clean_session_messages_not_kept(broker):
    """[MQTT-3.1.2-6]: with clean session 1 the session lasts as long as the connection."""
    s = Paho(broker.port, "clean3", V3, clean=True)
    assert s.subscribe("c3/t", qos=1) == [1]
    s.disconnect()
    with Paho(broker.port, "c3pub", V5) as p:
        p.publish("c3/t", b"gone", qos=1)
    assert s.connect(clean=False).session_present is False
    assert s.subscribe("c3/t", qos=1) == [1]
    sentinel_round_trip(broker.port, "c3/t", s)
    assert [m.payload for m in s.messages] == [b"sentinel"]
    s.close()

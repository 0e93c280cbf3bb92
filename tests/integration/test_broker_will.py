"""tern broker: Last Will and Testament (MQTT 3.1.1 3.1.2.5-3.1.2.7 and 3.14.4, MQTT 5.0
3.1.2.5, 3.1.3.2 Will Properties and Will Delay Interval, 3.14.2.1 reason 0x04)."""
import pytest

from broker_fixture import (V3, V5, Paho, broker, disconnect_packet, make_broker,  # noqa
                            prop, raw_connect, sentinel_round_trip)

VERSIONS_RAW = [pytest.param(4, id="v311"), pytest.param(5, id="v5")]


@pytest.mark.parametrize("version", VERSIONS_RAW)
@pytest.mark.parametrize("will_qos", [0, 1, 2])
def test_will_sent_when_socket_closes_without_disconnect(broker, version, will_qos):
    """[MQTT-3.1.2-8]: the will is published when the network connection closes without a
    DISCONNECT."""
    with Paho(broker.port, "wwatch", V5) as w:
        assert w.subscribe("will/t", qos=2) == [2]
        r = raw_connect(broker.port, f"dies{version}", version,
                        will=("will/t", b"it died", will_qos, False))
        assert r.is_open()
        r.close()
        m = w.wait_for("will/t", b"it died")
        assert (m.qos, m.retain) == (will_qos, False)
        sentinel_round_trip(broker.port, "will/t", w)
        assert [m.payload for m in w.messages] == [b"it died", b"sentinel"]  # exactly once


@pytest.mark.parametrize("version", VERSIONS_RAW)
def test_will_not_sent_after_normal_disconnect(broker, version):
    """[MQTT-3.1.2-10] / [MQTT-3.14.4-3]: DISCONNECT (5.0: reason 0x00) discards the will."""
    with Paho(broker.port, "nwatch", V5) as w:
        assert w.subscribe("will/n", qos=1) == [1]
        r = raw_connect(broker.port, f"polite{version}", version,
                        will=("will/n", b"should not appear", 1, False))
        r.send(disconnect_packet(0x00 if version == 5 else None))
        assert r.wait_closed() == []
        r.close()
        sentinel_round_trip(broker.port, "will/n", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


def test_paho_disconnect_discards_will(broker):
    with Paho(broker.port, "pwatch", V5) as w:
        assert w.subscribe("will/p", qos=1) == [1]
        for v in (V3, V5):
            c = Paho(broker.port, f"pw{v}", v, will=("will/p", b"no", 1, False))
            c.close()
        sentinel_round_trip(broker.port, "will/p", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


def test_v5_disconnect_with_will_message_reason_sends_will(broker):
    """MQTT 5.0 3.14.2.1: DISCONNECT reason 0x04 (Disconnect with Will Message) -> the server
    publishes the will."""
    with Paho(broker.port, "w4watch", V5) as w:
        assert w.subscribe("will/4", qos=1) == [1]
        r = raw_connect(broker.port, "withwill", 5, will=("will/4", b"on purpose", 1, False))
        r.send(disconnect_packet(0x04))
        assert r.wait_closed() == []
        r.close()
        m = w.wait_for("will/4", b"on purpose")
        assert m.qos == 1


@pytest.mark.parametrize("version", VERSIONS_RAW)
def test_will_retain(broker, version):
    """[MQTT-3.1.2-17]: Will Retain 1 -> the will is published as a retained message."""
    r = raw_connect(broker.port, f"wr{version}", version,
                    will=("will/ret", b"last words", 1, True))
    r.close()
    with Paho(broker.port, "wrwatch", V5) as w:
        # the will may be published a moment after the close: wait for the retained copy
        for _ in range(100):
            assert w.subscribe("will/ret", qos=1) == [1]
            sentinel_round_trip(broker.port, "will/ret", w)
            got = [m for m in w.take() if m.payload != b"sentinel"]
            if got:
                break
        assert [(m.payload, m.retain) for m in got] == [(b"last words", True)]


def test_v5_will_properties_forwarded(broker):
    """MQTT 5.0 3.1.3.2: will properties (content type, user properties, response topic,
    correlation data, payload format) are sent with the will message."""
    wprops = (prop(0x01, 1) + prop(0x03, "text/plain") + prop(0x08, "reply/here")
              + prop(0x09, b"\x00\x01corr") + prop(0x26, ("k", "v1")) + prop(0x26, ("k", "v2")))
    with Paho(broker.port, "wpwatch", V5) as w:
        assert w.subscribe("will/props", qos=1) == [1]
        r = raw_connect(broker.port, "wprops", 5, will=("will/props", b"bye", 1, False),
                        will_props=wprops)
        r.close()
        m = w.wait_for("will/props", b"bye")
        p = m.props
        assert p.PayloadFormatIndicator == 1
        assert p.ContentType == "text/plain"
        assert p.ResponseTopic == "reply/here"
        assert p.CorrelationData == b"\x00\x01corr"
        assert p.UserProperty == [("k", "v1"), ("k", "v2")]


def test_v5_will_delay_cancelled_by_reconnect(broker):
    """MQTT 5.0 3.1.3.2.2: with a Will Delay Interval the will waits; a client that resumes its
    session before the delay ends cancels it."""
    with Paho(broker.port, "wdwatch", V5) as w:
        assert w.subscribe("will/delay", qos=1) == [1]
        session = prop(0x11, 600)
        r = raw_connect(broker.port, "delayed", 5, clean=False, props_=session,
                        will=("will/delay", b"too early", 1, False), will_props=prop(0x18, 300))
        r.close()
        r = raw_connect(broker.port, "delayed", 5, clean=False, props_=session)
        assert r.connack.session_present
        r.send(disconnect_packet(0x00))
        r.wait_closed()
        r.close()
        sentinel_round_trip(broker.port, "will/delay", w)
        assert [m.payload for m in w.messages] == [b"sentinel"]


def test_v5_will_delay_ends_with_the_session(broker):
    """MQTT 5.0 3.1.3.2.2: the will is published when the delay passes or the session ends,
    whichever is first: with Session Expiry 0 the session ends at the close, so the will goes
    out at once despite a long delay."""
    with Paho(broker.port, "wewatch", V5) as w:
        assert w.subscribe("will/end", qos=1) == [1]
        r = raw_connect(broker.port, "ending", 5, will=("will/end", b"session over", 1, False),
                        will_props=prop(0x18, 3600))
        r.close()
        w.wait_for("will/end", b"session over")


def test_will_on_session_takeover_v311(broker):
    """3.1.4: a takeover closes the existing network connection without DISCONNECT, so the old
    connection's will is published (as for any close without DISCONNECT, [MQTT-3.1.2-8])."""
    with Paho(broker.port, "twatch", V5) as w:
        assert w.subscribe("will/take", qos=1) == [1]
        old = raw_connect(broker.port, "taken", 4, will=("will/take", b"taken over", 1, False))
        with Paho(broker.port, "taken", V3):
            old.wait_closed()
            w.wait_for("will/take", b"taken over")
        old.close()

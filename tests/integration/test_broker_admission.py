"""tern broker: admission control. Each CONNECT takes a token from a bucket refilled at
broker.connect_rate per second (docs/broker.md); without one the client is refused at once with
CONNACK 0x9F (Connection rate exceeded, MQTT 5.0 3.2.2.2) or return code 3 (Server unavailable,
3.1.1), while established connections keep working."""
import pytest

from broker_fixture import (CONNACK, V3, V5, Paho, Raw, broker, connect_packet,  # noqa
                            make_broker)


def burst(port: int, version: int, n: int, prefix: str) -> list[int]:
    """Open n connections at once, send CONNECT on each, return the CONNACK codes."""
    socks = [Raw(port, version) for _ in range(n)]
    try:
        for i, r in enumerate(socks):
            r.send(connect_packet(f"{prefix}{i}", version=version))
        return [r.expect(CONNACK).reason for r in socks]
    finally:
        for r in socks:
            r.close()


@pytest.mark.parametrize("version,refused", [(5, 0x9F), (4, 3)], ids=["v5", "v311"])
def test_connect_storm_is_rate_limited(make_broker, version, refused):
    b = make_broker("--set", "broker.connect_rate=5", "--set", "broker.connect_burst=5")
    with Paho(b.port, "established", V5) as old, Paho(b.port, "observer", V3) as obs:
        assert obs.subscribe("adm/t", qos=1) == [1]
        codes = burst(b.port, version, 20, f"storm{version}-")
        assert set(codes) <= {0, refused}, codes
        assert codes.count(refused) >= 1, codes
        # the connections that were already there are not disturbed
        assert old.publish("adm/t", b"still served", qos=1) == 0
        obs.wait_for("adm/t", b"still served")
        assert not old.disconnected.is_set() and not obs.disconnected.is_set()


def test_refused_connection_is_closed(make_broker):
    """After CONNACK 0x9F the server closes the connection ([MQTT-3.2.2-7])."""
    b = make_broker("--set", "broker.connect_rate=1", "--set", "broker.connect_burst=1")
    with Raw(b.port, 5) as first, Raw(b.port, 5) as second:
        first.send(connect_packet("first", version=5))
        second.send(connect_packet("second", version=5))
        a, z = first.expect(CONNACK), second.expect(CONNACK)
        codes = sorted([a.reason, z.reason])
        assert codes == [0, 0x9F], codes
        refused = first if a.reason == 0x9F else second
        assert refused.wait_closed() == []


def test_default_rate_admits_a_normal_fleet(broker):
    """With the defaults (2000/s, burst 2000) 50 quick connects are all accepted."""
    assert burst(broker.port, 5, 50, "fleet-") == [0] * 50


@pytest.mark.parametrize("version,refused", [(5, 0x89), (4, 3)], ids=["v5", "v311"])
def test_max_connections(make_broker, version, refused):
    """docs/broker.md: over broker.max_connections a CONNECT gets CONNACK 0x89 (Server busy) /
    3 (Server unavailable); after one leaves, a new client gets in."""
    b = make_broker("--set", "broker.max_connections=2")
    first = Paho(b.port, "mc1", V5)
    with Paho(b.port, "mc2", V3):
        with Raw(b.port, version) as r:
            r.send(connect_packet("mc3", version=version))
            got = r.wait_closed()
            assert [(p.type, p.reason) for p in got] == [(CONNACK, refused)], got
        first.close()
        with Paho(b.port, "mc4", V5) as again:
            assert again.connack.reason == 0

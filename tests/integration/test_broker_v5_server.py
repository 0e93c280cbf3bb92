"""MQTT 5 properties the server sends in CONNACK: Server Keep Alive (3.2.2.3.14) when the
broker lowers a client's keepalive, Response Information (3.2.2.3.15) only when requested,
Assigned Client Identifier, and the limits it announces (Receive Maximum, Topic Alias Maximum,
Maximum Packet Size); plus its $SYS figures."""
import time

from broker_fixture import PUBLISH, SUBACK, Raw, connect_packet, make_broker, prop  # noqa: F401
from broker_fixture import subscribe_packet


def connack_props(port, client_id="", keepalive=60, props_=b""):
    r = Raw(port, 5)
    r.send(connect_packet(client_id, version=5, keepalive=keepalive, props_=props_))
    ack = r.expect(2)
    # Packet.props maps each property id to the list of its values.
    return r, ack.reason, {k: v[0] for k, v in ack.props.items()}


def test_server_keepalive_lowers_long_and_disabled_keepalives(make_broker):
    b = make_broker("--set", "broker.max_keepalive=30")
    for asked, told in ((600, 30), (0, 30), (20, None)):
        r, reason, props = connack_props(b.port, f"ka{asked}", keepalive=asked)
        assert reason == 0
        assert props.get(0x13) == told
        r.close()


def test_response_information_only_when_requested(make_broker):
    b = make_broker("--set", "broker.response_information=fleet/responses")
    r, _, props = connack_props(b.port, "asks", props_=prop(0x19, 1))
    assert props.get(0x1A) == b"fleet/responses"
    r.close()
    r, _, props = connack_props(b.port, "silent")
    assert 0x1A not in props
    r.close()


def test_announced_limits_and_assigned_client_id(make_broker):
    b = make_broker("--set", "broker.receive_maximum=10", "--set", "broker.topic_alias_maximum=4",
                    "--set", "broker.max_packet_size=64KiB")
    r, reason, props = connack_props(b.port, "")
    assert reason == 0
    assert props[0x21] == 10 and props[0x22] == 4 and props[0x27] == 65536
    assert props[0x12]  # Assigned Client Identifier for an empty one
    r.close()


def test_sys_topics_report_connections(make_broker):
    b = make_broker("--set", "broker.sys_interval=1s", acl="topic readwrite #\ntopic read $SYS/#\n")
    r = Raw(b.port, 4)
    r.connect("sys-watcher")
    r.send(subscribe_packet(1, [("$SYS/broker/clients/connected", 0)]))
    r.expect(SUBACK)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        p = r.recv()
        if p.type == PUBLISH and p.topic == b"$SYS/broker/clients/connected" and p.payload == b"1":
            break
    else:
        raise AssertionError("no $SYS/broker/clients/connected = 1")

"""tern broker: authorization and authentication. The default device ACL (no acl_file: a client
may publish only under fleet/{its client id}/ and subscribe to fleet/{id}/cmd/# and
fleet/{id}/config), an ACL file in Mosquitto's format, client ids that would escape the ACL,
and password files written by `tern passwd` (MQTT 3.1.1 3.1.3.5, 3.2.2.3, 3.3.5, 3.9.3;
MQTT 5.0 3.2.2.2, 3.4.2.1, 3.9.3)."""
import pytest

import tern_harness as th
from broker_fixture import (CONNACK, PUBACK, V3, V5, VERSIONS, Closed, Paho, Raw,  # noqa
                            assert_broker_serves, broker, connect_packet, make_broker,
                            publish_packet, raw_connect)


@pytest.fixture
def device_broker(make_broker):
    """A broker with tern's default device ACL."""
    return make_broker(acl=None)


def test_default_acl_publish_own_prefix_only_v5(device_broker):
    """A device may publish under fleet/{its id}/ (PUBACK 0x00); elsewhere -> PUBACK 0x87 (Not
    authorized) and the message is not delivered."""
    port = device_broker.port
    with Paho(port, "c1", V5) as c1, Paho(port, "c2", V5) as c2:
        assert c1.subscribe("fleet/c1/config", qos=1) == [1]
        assert c2.subscribe("fleet/c2/config", qos=1) == [1]
        assert c1.publish("fleet/c1/telemetry", b"t", qos=1) == 0
        assert c1.publish("fleet/c1/config", b"own", qos=1) == 0
        c1.wait_for("fleet/c1/config", b"own")
        assert c1.publish("fleet/c2/telemetry", b"spoof", qos=1) == 0x87
        assert c1.publish("fleet/c2/config", b"spoof", qos=1) == 0x87
        assert c1.publish("other/topic", b"x", qos=1) == 0x87
        c1.publish("fleet/c2/config", b"spoof0", qos=0)
        # c2 publishing on its own config topic proves c1's attempts were never routed
        assert c2.publish("fleet/c2/config", b"genuine", qos=1) == 0
        c2.wait_for("fleet/c2/config", b"genuine")
        assert [m.payload for m in c2.messages] == [b"genuine"]


def test_default_acl_publish_denied_v311(device_broker):
    """[MQTT-3.3.5-2]: 3.1.1 cannot refuse a PUBLISH: the server acknowledges it normally or
    closes the connection; either way it is not delivered."""
    port = device_broker.port
    with Paho(port, "c2", V5) as c2:
        assert c2.subscribe("fleet/c2/config", qos=1) == [1]
        with raw_connect(port, "c1", 4) as r:
            r.send(publish_packet("fleet/c2/config", b"spoof", qos=1, packet_id=1))
            try:
                got = r.recv()
                assert got.type == PUBACK and got.packet_id == 1
            except Closed:  # closing is the allowed alternative
                pass
        assert c2.publish("fleet/c2/config", b"genuine", qos=1) == 0
        c2.wait_for("fleet/c2/config", b"genuine")
        assert [m.payload for m in c2.messages] == [b"genuine"]


@pytest.mark.parametrize("version", VERSIONS)
def test_default_acl_subscribe(device_broker, version):
    """[MQTT-3.9.3] / 5.0 3.9.3: each filter is authorized on its own: fleet/{id}/cmd/# and
    fleet/{id}/config granted; another device's or a wildcard device level refused (0x80 in
    3.1.1, 0x87 in 5.0)."""
    refused = 0x87 if version == V5 else 0x80
    with Paho(device_broker.port, "c1", version) as c1:
        codes = c1.subscribe(("fleet/c1/cmd/#", 1), ("fleet/+/cmd/#", 1), ("fleet/c1/config", 1),
                             ("fleet/c2/config", 1), ("#", 0))
        assert codes == [1, refused, 1, refused, refused]


@pytest.mark.parametrize("bad_id", ["dev+ice", "dev#ice", "+", "#"])
@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_client_id_with_wildcards_refused(device_broker, version, bad_id):
    """A client id that would act as a wildcard in fleet/{id}/ is refused: 5.0 CONNACK 0x85
    (Client Identifier not valid), 3.1.1 return code 2 (identifier rejected)."""
    with Raw(device_broker.port, version) as r:
        r.send(connect_packet(bad_id, version=version))
        got = r.wait_closed()
        assert [p.type for p in got] == [CONNACK], got
        assert got[0].reason == (0x85 if version == 5 else 0x02)
    assert_broker_serves(device_broker.port)


def test_default_acl_own_cmd_round_trip(device_broker):
    """Under the default ACL a device may both publish and subscribe to fleet/{id}/cmd/...:
    its own publish reaches its own cmd subscription."""
    with Paho(device_broker.port, "car7", V5) as car:
        assert car.subscribe("fleet/car7/cmd/#", qos=1) == [1]
        assert car.publish("fleet/car7/cmd/reboot", b"now", qos=1) == 0
        assert car.wait_for("fleet/car7/cmd/reboot", b"now").qos == 1


ACL_FILE = """\
# anonymous / every client
topic read public/#
topic write inbox/#
topic readwrite shared/#
pattern readwrite room/%c/#
"""


def test_acl_file_topic_and_pattern_rules(make_broker):
    """Mosquitto-style ACL: `topic read|write|readwrite FILTER` and `pattern ... %c` (%c: the
    client id). Read access is needed to subscribe, write access to publish."""
    b = make_broker(acl=ACL_FILE)
    with Paho(b.port, "alice", V5) as a, Paho(b.port, "bob", V5) as bob:
        codes = a.subscribe(("public/#", 1), ("inbox/#", 1), ("shared/#", 1), ("room/alice/#", 1),
                            ("room/bob/#", 1))
        assert [codes[0], codes[2], codes[3], codes[4]] == [1, 1, 1, 0x87], codes
        assert codes[1] in (1, 0x87), codes  # write-only: refused, or granted and never fed
        assert bob.subscribe(("room/bob/#", 1)) == [1]
        assert a.publish("public/news", b"x", qos=1) == 0x87  # read only
        assert a.publish("inbox/msg", b"x", qos=1) == 0  # write only
        assert a.publish("shared/t", b"s", qos=1) == 0
        a.wait_for("shared/t", b"s")
        assert a.publish("room/alice/x", b"mine", qos=1) == 0
        a.wait_for("room/alice/x", b"mine")
        assert [m.topic for m in a.messages] == ["shared/t", "room/alice/x"]
        assert a.publish("room/bob/x", b"intrude", qos=1) == 0x87
        assert bob.publish("room/bob/x", b"bob's", qos=1) == 0
        bob.wait_for("room/bob/x", b"bob's")
        assert [m.payload for m in bob.messages] == [b"bob's"]


# ---- password authentication ---------------------------------------------------------------

def _has_passwd() -> bool:
    out = th.run([th.tern_bin(), "help"])
    return out.returncode == 0 and any(line.split()[:1] == ["passwd"]
                                       for line in out.stdout.decode().splitlines())


@pytest.fixture
def auth_broker(make_broker, tmp_path):
    if not _has_passwd():
        pytest.skip("`tern passwd` does not exist yet")
    pw = tmp_path / "passwords"
    # -I 1000: the minimum PBKDF2 cost, to keep the test fast
    out = th.run([th.tern_bin(), "passwd", "-f", str(pw), "-c", "-I", "1000", "-b", "alice",
                  "s3cret!"])
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    out = th.run([th.tern_bin(), "passwd", "-f", str(pw), "-I", "1000", "-b", "bob", "hunter2"])
    assert out.returncode == 0, out.stderr.decode(errors="replace")
    text = pw.read_text()
    assert "alice:" in text and "bob:" in text and "s3cret!" not in text
    return make_broker("--set", f"broker.password_file={pw}", anonymous=False)


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
@pytest.mark.parametrize("user,password,v5_code,v3_code", [
    pytest.param("alice", b"s3cret!", 0x00, 0, id="good"),
    pytest.param("bob", b"hunter2", 0x00, 0, id="good-2nd-user"),
    pytest.param("alice", b"wrong", 0x86, 4, id="bad-password"),
    pytest.param("alice", b"", 0x86, 4, id="empty-password"),
    pytest.param("mallory", b"s3cret!", 0x86, 4, id="unknown-user"),
    pytest.param(None, None, 0x87, 5, id="no-credentials"),
])
def test_password_authentication(auth_broker, version, user, password, v5_code, v3_code):
    """3.1.1 3.2.2.3 / 5.0 3.2.2.2: wrong user or password -> 0x86 / return code 4; no
    credentials with anonymous access off -> 0x87 / return code 5; then the server closes."""
    with Raw(auth_broker.port, version) as r:
        r.send(connect_packet(f"dev-{user}", version=version, username=user, password=password))
        ack = r.expect(CONNACK, timeout=30)  # PBKDF2 is slow by design
        expected = v5_code if version == 5 else v3_code
        assert ack.reason == expected
        if expected == 0:
            assert r.is_open()
        else:
            assert r.wait_closed() == []


def test_password_auth_with_paho(auth_broker):
    with Paho(auth_broker.port, "pahoalice", V5, username="alice", password="s3cret!") as a:
        assert a.connack.reason == 0
    c = Paho(auth_broker.port, "pahobad", V3, username="alice", password="nope", expect_ok=False)
    assert c.connack.reason == 0x86  # paho maps 3.1.1 return code 4 to 0x86
    c.close()


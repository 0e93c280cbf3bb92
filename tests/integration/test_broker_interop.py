"""tern broker with Debian's mosquitto_pub / mosquitto_sub (2.0.x), both -V mqttv311 and
-V mqttv5: publish, subscribe, retained messages, persistent sessions and 5.0 properties."""
import queue
import subprocess
import threading

import pytest

import tern_harness as th
from broker_fixture import TIMEOUT, V5, Paho, broker, make_broker, mosquitto_pub  # noqa

MQTT_VERSIONS = ["mqttv311", "mqttv5"]


class Sub:
    """mosquitto_sub in the background (unbuffered through stdbuf); the constructor returns
    once its SUBACK arrived (-d debug output)."""

    def __init__(self, port, *args, version="mqttv311"):
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", "mosquitto_sub", "-h", "127.0.0.1", "-p", str(port), "-V", version,
             "-d", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen = []
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                self.kill()
                raise AssertionError(f"mosquitto_sub got no SUBACK: {self.seen}") from None
            if line is None:
                raise AssertionError(f"mosquitto_sub ended before SUBACK: {self.seen}")
            self.seen.append(line)
            if "received SUBACK" in line:
                return

    def _read(self):
        for raw in self.proc.stdout:
            self.lines.put(raw.decode(errors="replace").rstrip("\n"))
        self.lines.put(None)

    def output(self, timeout=30) -> list[str]:
        """Wait for it to exit (it was started with -C N) and return its non-debug lines."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        out = []
        while (line := self.lines.get(timeout=TIMEOUT)) is not None:
            out.append(line)
        assert self.proc.returncode == 0, self.seen + out
        return [x for x in out if not x.startswith("Client ") and not x.startswith("Subscribed")]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.mark.parametrize("pub_v", MQTT_VERSIONS)
@pytest.mark.parametrize("sub_v", MQTT_VERSIONS)
def test_pub_sub_all_qos(broker, pub_v, sub_v):
    s = Sub(broker.port, "-t", "interop/#", "-q", "2", "-C", "3", "-F", "%t %q %p",
            version=sub_v)
    try:
        for q in (0, 1, 2):
            mosquitto_pub(broker.port, "-t", f"interop/q{q}", "-q", str(q), "-m", f"hello{q}",
                          version=pub_v)
        assert s.output() == ["interop/q0 0 hello0", "interop/q1 1 hello1", "interop/q2 2 hello2"]
    finally:
        s.kill()


@pytest.mark.parametrize("version", MQTT_VERSIONS)
def test_retained(broker, version):
    mosquitto_pub(broker.port, "-t", "interop/ret", "-r", "-q", "1", "-m", "kept", version=version)
    out = th.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-V", version,
                  "-t", "interop/ret", "-C", "1", "-W", "20", "-F", "%r %t %p"], timeout_s=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["1 interop/ret kept"]


@pytest.mark.parametrize("version", MQTT_VERSIONS)
def test_persistent_session(broker, version):
    """mosquitto_sub -c: a persistent session gets what was published while it was away."""
    base = ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.port), "-V", version, "-c",
            "-i", f"persist-{version}", "-q", "1", "-t", "interop/persist"]
    if version == "mqttv5":
        base += ["-x", "300"]
    out = th.run(base + ["-E"], timeout_s=30)  # subscribe, then leave
    assert out.returncode == 0, out.stderr
    mosquitto_pub(broker.port, "-t", "interop/persist", "-q", "1", "-m", "while away",
                  version=version)
    out = th.run(base + ["-C", "1", "-W", "20"], timeout_s=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.decode().splitlines() == ["while away"]


def test_v5_properties_from_mosquitto_pub_reach_paho(broker):
    with Paho(broker.port, "props-sub", V5) as s:
        assert s.subscribe("interop/props", qos=1) == [1]
        mosquitto_pub(broker.port, "-t", "interop/props", "-q", "1", "-m", "{}",
                      "-D", "publish", "user-property", "k", "v",
                      "-D", "publish", "content-type", "application/json",
                      "-D", "publish", "response-topic", "interop/reply",
                      version="mqttv5")
        m = s.wait_messages(1)[0]
        assert m.payload == b"{}"
        assert m.props.UserProperty == [("k", "v")]
        assert m.props.ContentType == "application/json"
        assert m.props.ResponseTopic == "interop/reply"


def test_v5_properties_from_paho_reach_mosquitto_sub(broker):
    from paho.mqtt.packettypes import PacketTypes
    from broker_fixture import props
    s = Sub(broker.port, "-t", "interop/p2", "-q", "1", "-C", "1", "-F", "%P|%C|%R|%p",
            version="mqttv5")
    try:
        with Paho(broker.port, "props-pub", V5) as p:
            p.publish("interop/p2", b"body", qos=1, props_=props(
                PacketTypes.PUBLISH, UserProperty=[("a", "1")], ContentType="text/plain",
                ResponseTopic="interop/r"))
        assert s.output() == ["a:1|text/plain|interop/r|body"]
    finally:
        s.kill()


@pytest.mark.parametrize("version", MQTT_VERSIONS)
def test_many_messages_from_file(broker, version, tmp_path):
    """mosquitto_pub -l: one message per line, in order."""
    lines = [f"line {i}" for i in range(100)]
    s = Sub(broker.port, "-t", "interop/lines", "-q", "1", "-C", "100", version=version)
    try:
        out = th.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-V", version,
                      "-t", "interop/lines", "-q", "1", "-l"],
                     input="\n".join(lines).encode() + b"\n", timeout_s=30)
        assert out.returncode == 0, out.stderr
        assert s.output() == lines
    finally:
        s.kill()

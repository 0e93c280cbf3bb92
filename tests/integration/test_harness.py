"""The test harness itself works: it starts a real MQTT peer on a free port, real clients talk
to it, and the `tern` program answers on its command line."""
import threading

import paho.mqtt.client as mqtt
import pytest

import tern_harness as th


def test_tern_version_and_help():
    out = th.run([th.tern_bin(), "version"])
    assert out.returncode == 0
    assert out.stdout.decode().startswith("tern ")
    out = th.run([th.tern_bin(), "help"])
    assert out.returncode == 0
    assert "commands:" in out.stdout.decode()


def test_unknown_command_is_a_usage_error():
    out = th.run([th.tern_bin(), "no-such-command"])
    assert out.returncode == 2
    assert "unknown command 'no-such-command'" in out.stderr.decode()


def test_paho_round_trip_through_mosquitto(mosquitto):
    subscribed, received = threading.Event(), threading.Event()
    got = []

    def on_message(client, userdata, msg):
        got.append((msg.topic, msg.payload, msg.qos))
        received.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="harness-sub")
    sub.on_subscribe = lambda *args: subscribed.set()
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto.port)
    sub.loop_start()
    try:
        sub.subscribe("fleet/+/telemetry", qos=1)
        assert subscribed.wait(10), "no SUBACK"
        out = th.run(["mosquitto_pub", "-p", str(mosquitto.port), "-q", "1",
                      "-t", "fleet/car42/telemetry", "-m", '{"soc":81.5}'])
        assert out.returncode == 0, out.stderr
        assert received.wait(10), "message not delivered"
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert got == [("fleet/car42/telemetry", b'{"soc":81.5}', 1)]


def test_service_reports_a_program_that_never_listens(tmp_path):
    with pytest.raises(RuntimeError, match="did not become ready"):
        th.Service("false", ["false"], th.free_port(), tmp_path, ready_timeout_s=5)

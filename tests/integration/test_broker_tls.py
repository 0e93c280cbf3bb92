"""MQTT over TLS (1.2 and 1.3) with real clients: mosquitto_pub/sub and paho, a server
certificate from a test CA made with the openssl command, optional client certificates whose
CN becomes the device identity (ACL %u substitution)."""
import ssl
import subprocess
import threading

import paho.mqtt.client as mqtt
import pytest

import tern_harness as th


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=tern test CA",
            "-keyout", "ca.key", "-out", "ca.crt", cwd=d)
    for name, cn, ext in (("server", "localhost", "subjectAltName=IP:127.0.0.1,DNS:localhost"),
                          ("car42", "car42", None), ("car7", "car7", None)):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={cn}", "-keyout",
                f"{name}.key", "-out", f"{name}.csr", cwd=d)
        args = ["x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.crt"]
        if ext:
            (d / f"{name}.ext").write_text(ext + "\n")
            args += ["-extfile", f"{name}.ext"]
        openssl(*args, cwd=d)
    # A certificate from a CA the broker does not trust.
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=car42",
            "-keyout", "rogue.key", "-out", "rogue.crt", cwd=d)
    return d


def start_tls_broker(start, tmp_path, pki, *extra):
    def argv(port):
        return [th.tern_bin(), "broker", "--listen", "127.0.0.1:0", "--data", str(tmp_path / "data"),
                "--set", f"broker.tls_listen=127.0.0.1:{port}",
                "--set", f"broker.tls_cert_file={pki / 'server.crt'}",
                "--set", f"broker.tls_key_file={pki / 'server.key'}", *extra]
    return start("tern-tls", argv)


def test_tls_round_trip_with_mosquitto_clients(start, tmp_path, pki):
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\n")
    b = start_tls_broker(start, tmp_path, pki, "--allow-anonymous", "--set",
                         f"broker.acl_file={acl}")
    tls = ["--cafile", str(pki / "ca.crt")]
    for version in ("tlsv1.2", "tlsv1.3"):
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), *tls,
                                "--tls-version", version, "-t", "tls/#", "-C", "1", "-W", "20",
                                "-v"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Publish until the subscriber (whose SUBACK we cannot observe) has its message.
        for _ in range(100):
            out = th.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), *tls,
                          "--tls-version", version, "-q", "1", "-t", f"tls/{version}", "-m", "x"])
            assert out.returncode == 0, out.stderr
            try:
                stdout, stderr = sub.communicate(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                continue
        assert sub.returncode == 0, stderr
        assert stdout.decode().strip() == f"tls/{version} x"


def test_plain_tcp_client_on_tls_port_is_refused_and_broker_survives(start, tmp_path, pki):
    b = start_tls_broker(start, tmp_path, pki, "--allow-anonymous")
    out = th.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-t", "x", "-m", "y"],
                 timeout_s=30)
    assert out.returncode != 0
    out = th.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "--cafile",
                  str(pki / "ca.crt"), "-i", "car1", "-t", "fleet/car1/telemetry", "-m", "y"])
    assert out.returncode == 0, out.stderr


def test_client_certificate_identity_drives_the_acl(start, tmp_path, pki):
    acl = tmp_path / "acl"
    acl.write_text("pattern write fleet/%u/#\npattern read fleet/%u/cmd/#\n")
    b = start_tls_broker(start, tmp_path, pki, "--set", f"broker.tls_ca_file={pki / 'ca.crt'}",
                         "--set", "broker.tls_require_certificate=true",
                         "--set", "broker.tls_use_identity_as_username=true",
                         "--set", f"broker.acl_file={acl}")

    def client(name, cert=None, key=None):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"dev-{name}",
                        protocol=mqtt.MQTTv5)
        ctx = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        if cert:
            ctx.load_cert_chain(str(pki / cert), str(pki / key))
        c.tls_set_context(ctx)
        return c

    # car42's certificate: it may publish under fleet/car42/ and nowhere else.
    acks = {}
    done = threading.Event()

    def on_publish(c, u, mid, reason, props):
        acks[mid] = reason.value
        if len(acks) == 2:
            done.set()

    connected = threading.Event()
    c = client("car42", "car42.crt", "car42.key")
    c.on_connect = lambda *a: connected.set()
    c.on_publish = on_publish
    c.connect("127.0.0.1", b.port)
    c.loop_start()
    try:
        assert connected.wait(20)
        ok = c.publish("fleet/car42/telemetry", b"{}", qos=1).mid
        denied = c.publish("fleet/car7/telemetry", b"{}", qos=1).mid
        assert done.wait(20)
        assert acks[ok] == 0
        assert acks[denied] == 0x87
    finally:
        c.loop_stop()
        c.disconnect()

    # Without a certificate, or with one from an unknown CA, nothing gets through.
    base = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "--cafile",
            str(pki / "ca.crt"), "-q", "1", "-t", "fleet/car42/telemetry", "-m", "x"]
    assert th.run(base, timeout_s=30).returncode != 0
    assert th.run(base + ["--cert", str(pki / "rogue.crt"), "--key", str(pki / "rogue.key")],
                  timeout_s=30).returncode != 0
    out = th.run(base + ["--cert", str(pki / "car42.crt"), "--key", str(pki / "car42.key")],
                 timeout_s=30)
    assert out.returncode == 0, out.stderr

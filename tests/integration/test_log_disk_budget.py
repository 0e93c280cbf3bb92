"""When the log's disk budget is exhausted the broker degrades in order: QoS 0 is shed (the
connection stays up), QoS 1/2 from a 5.0 client is refused with PUBACK 0x97 (quota exceeded),
a 3.1.1 client (which cannot be told) is disconnected, and nothing refused is in the log."""
import json

import tern_harness as th
from broker_fixture import PUBACK, PUBLISH, Closed, Raw, publish_packet


def test_budget_exhausted_refuses_instead_of_acknowledging(start, tmp_path):
    data = tmp_path / "data"
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite #\n")
    b = start("tern-broker", lambda p: [
        th.tern_bin(), "broker", "--listen", f"127.0.0.1:{p}", "--data", str(data),
        "--allow-anonymous", "--set", f"broker.acl_file={acl}", "--set", "log.partitions=1",
        "--set", "log.disk_budget=64KiB", "--set", "log.compress=false"])
    r = Raw(b.port, 5)
    r.connect("car1")
    payload = b"x" * 1000
    accepted, refused = [], 0
    for i in range(1, 400):
        r.send(publish_packet("fleet/car1/telemetry", payload + str(i).encode(), qos=1,
                              packet_id=i, version=5))
        ack = r.expect(PUBACK)
        if ack.reason == 0:
            assert refused == 0, "a publish was accepted after the budget ran out"
            accepted.append(i)
        else:
            assert ack.reason == 0x97
            refused += 1
    assert accepted and refused, (len(accepted), refused)
    # QoS 0 is shed silently; the connection keeps working.
    for i in range(20):
        r.send(publish_packet("fleet/car1/telemetry", b"q0", qos=0, version=5))
    assert r.is_open()
    # A 3.1.1 client cannot be refused politely: it is disconnected, never acknowledged.
    v3 = Raw(b.port, 4)
    v3.connect("car2")
    v3.send(publish_packet("fleet/car2/telemetry", payload, qos=1, packet_id=1))
    try:
        got = v3.wait_closed()
    except Closed:
        got = []
    assert all(p.type != PUBACK for p in got)

    b.stop()
    out = th.run([th.tern_bin(), "log", "tail", "--data", str(data), "--topic", "telemetry"])
    assert out.returncode == 0, out.stderr
    values = [json.loads(line)["value"] for line in out.stdout.decode().splitlines()]
    # Exactly the acknowledged QoS 1 messages (a small QoS 0 one may still have fitted).
    assert [v for v in values if v != "q0"] == [(payload + str(i).encode()).decode()
                                                for i in accepted]

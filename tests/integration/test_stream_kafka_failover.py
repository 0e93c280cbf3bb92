"""Scale-out: `tern broker` appends to a real Apache Kafka topic; two `tern stream` instances in
one Kafka consumer group each store the points of the partitions they own in their own store
(a shard). One is killed with kill -9 in the middle; Kafka gives its partitions to the other,
which resumes from the last committed offsets. Every acknowledged point ends up stored in the
union of the two shards (the dead one's store is read back after the crash)."""
import json
import time

import tern_harness as th
from broker_fixture import PUBACK, Raw, publish_packet

# recent event times: the store drops blocks older than its retention (7 days) as it cuts them
T0 = (int(time.time() * 1000) - 6 * 3600_000) // 60_000 * 60_000


def publish(port, devices, first, n, acked):
    for d in devices:
        r = Raw(port, 4)
        r.connect(d)
        for i in range(first, first + n):
            ts = T0 + i * 10_000
            payload = json.dumps({"ts": ts, "seq": i, "m": {"soc": 50 + i % 40 / 10}}).encode()
            pid = (i - first) % 65535 + 1
            r.send(publish_packet(f"fleet/{d}/telemetry", payload, qos=1, packet_id=pid))
            assert r.expect(PUBACK, timeout=30).packet_id == pid
            acked.setdefault(d, set()).add(ts)
        r.close()


def shard_ts(http_port, device):
    """The soc timestamps a running `tern stream` holds for device."""
    import urllib.request
    url = (f"http://127.0.0.1:{http_port}/api/v1/query?device={device}&metric=soc&start=0"
           f"&end={T0 + 10**9}&format=series")
    with urllib.request.urlopen(url, timeout=30) as r:
        body = json.loads(r.read())
    return {v[0] for s in body["series"] for v in s["values"]}


def offline_ts(data, device):
    """The soc timestamps in a stopped instance's store (its WAL is replayed)."""
    out = th.run([th.tern_bin(), "query", "--data", str(data), "--device", device,
                  "--metric", "soc", "--from", "0", "--to", str(T0 + 10**9)], timeout_s=60)
    text = out.stdout.decode() if isinstance(out.stdout, bytes) else out.stdout
    return {json.loads(line)["ts"] for line in text.splitlines() if line.strip()}


def wait_until(pred, what, timeout_s=90):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        ok, last = pred()
        if ok:
            return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}: {last}")


def test_two_streams_one_killed(start, tmp_path, kafka):
    topic = kafka.unique_topic("telemetry")
    group = kafka.unique_topic("group")
    kafka_set = ["--set", "log.backend=kafka", "--set", f"log.kafka_brokers={kafka.bootstrap}",
                 "--set", "log.partitions=4"]
    broker = start("tern-broker", lambda p: [
        th.tern_bin(), "broker", "--listen", f"127.0.0.1:{p}", "--data", str(tmp_path / "b"),
        "--allow-anonymous", "--set", f"broker.ingest_topic={topic}", *kafka_set],
        ready_timeout_s=60)

    def stream(name):
        return start(name, lambda p: [
            th.tern_bin(), "stream", "--data", str(tmp_path / name), "--http", f"127.0.0.1:{p}",
            "--set", f"stream.topic={topic}", "--set", f"stream.group={group}",
            "--set", f"stream.dead_letter_topic={topic}-dead",
            "--set", f"stream.late_topic={topic}-late", *kafka_set], ready_timeout_s=60)
    a = stream("stream-a")
    b = stream("stream-b")
    devices = [f"car{i}" for i in range(8)]
    acked = {}
    # publish rounds until the group has settled with both members taking partitions (the
    # second one joins with a rebalance): a round's points are then all stored, some by a,
    # some by b (a device's partition, so its points, go to one member at a time)
    first = 1
    deadline = time.monotonic() + 90
    while True:
        publish(broker.port, devices, first, 10, acked)
        last_round = {d: {T0 + i * 10_000 for i in range(first, first + 10)} for d in devices}
        first += 10
        time.sleep(1)
        by_a = [d for d in devices if last_round[d] <= shard_ts(a.port, d)]
        by_b = [d for d in devices if last_round[d] <= shard_ts(b.port, d)]
        if by_a and by_b and len(by_a) + len(by_b) == len(devices):
            break
        assert time.monotonic() < deadline, ("the group never shared the partitions", by_a,
                                             by_b)

    def both_have_all():
        missing = {d: len(acked[d] - (shard_ts(a.port, d) | shard_ts(b.port, d)))
                   for d in devices}
        return all(v == 0 for v in missing.values()), missing
    wait_until(both_have_all, "both shards together hold every acknowledged point")
    held_a = by_a  # the devices whose partitions a owns now

    a.kill9()
    takeover_from = first
    publish(broker.port, devices, first, 30, acked)  # while Kafka moves a's partitions to b

    def union_has_all():
        missing = {}
        for d in devices:
            have = shard_ts(b.port, d)
            if acked[d] - have:
                have |= offline_ts(tmp_path / "stream-a", d)
            missing[d] = len(acked[d] - have)
        return all(v == 0 for v in missing.values()), missing
    wait_until(union_has_all, "every acknowledged point in the union of the shards")
    # after the takeover, b stores the new points of a's devices itself
    for d in held_a:
        assert {ts for ts in acked[d] if ts >= T0 + takeover_from * 10_000} <= shard_ts(b.port, d)

"""Scale-out wiring: `tern broker` with log.backend = kafka appends telemetry to a real Apache
Kafka topic through librdkafka; QoS 1 is acknowledged only after Kafka's delivery report, and
each device's records land, in order, on the partition Kafka's own partitioner gives its id."""
import json

import tern_harness as th
from broker_fixture import PUBACK, Raw, publish_packet
from kafka_service import default_partition


def test_broker_appends_to_kafka(start, tmp_path, kafka):
    topic = kafka.unique_topic("telemetry")
    acl = tmp_path / "acl"
    acl.write_text("pattern write fleet/%c/#\n")
    b = start("tern-broker", lambda p: [
        th.tern_bin(), "broker", "--listen", f"127.0.0.1:{p}", "--data", str(tmp_path / "d"),
        "--allow-anonymous", "--set", f"broker.acl_file={acl}", "--set", "log.backend=kafka",
        "--set", f"log.kafka_brokers={kafka.bootstrap}", "--set", "log.partitions=4",
        "--set", f"broker.ingest_topic={topic}"], ready_timeout_s=60)
    sent = {}
    for dev in ("car1", "car2", "car3"):
        r = Raw(b.port, 4)
        r.connect(dev)
        for i in range(1, 21):
            payload = json.dumps({"dev": dev, "seq": i}).encode()
            r.send(publish_packet(f"fleet/{dev}/telemetry", payload, qos=1, packet_id=i))
            assert r.expect(PUBACK, timeout=30).packet_id == i
            sent.setdefault(dev, []).append(payload.decode())
        r.close()
    got = {}
    for line in kafka.consume(topic, 60, fmt="%p\t%k\t%s\n"):
        part, key, value = line.split("\t", 2)
        got.setdefault(key, []).append((int(part), value))
    for dev, payloads in sent.items():
        assert [v for _, v in got[dev]] == payloads
        assert {p for p, _ in got[dev]} == {default_partition(dev.encode(), 4)}

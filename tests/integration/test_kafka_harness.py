"""test_kafka_harness: the Kafka broker that tern's tests run (scripts/kafka + kafka_service)
works with the clients tern uses, Debian's librdkafka through kcat.

It proves: keyed produce and in-order consume, auto-created topics with the configured default of
4 partitions, topics made with a chosen partition count, a consumer group that receives every
message and resumes from its committed offsets, and that librdkafka's murmur2 partitioner puts
each key where Kafka's Java default partitioner would (checked against an independent murmur2).
"""

from __future__ import annotations

import collections
import re
import subprocess

import pytest

# The `kafka` fixture comes from conftest.py (which imports it from kafka_service), so that every
# test module shares one broker per session.
from kafka_service import SOURCE_DIR, default_partition, murmur2


def parse(lines: list[str]) -> list[tuple[int, int, str, str]]:
    """Lines of kcat -f '%p %o %k %s\\n' as (partition, offset, key, value)."""
    out = []
    for line in lines:
        p, o, k, v = line.split(" ", 3)
        out.append((int(p), int(o), k, v))
    return out


def test_murmur2_matches_the_published_java_vectors():
    # Hashes of Kafka's Java Utils.murmur2, as published in librdkafka's unit test (rdmurmur2.c).
    vectors = {
        "kafka": 0xD067CF64,
        "giberish123456789": 0x8F552B0C,
        "1234": 0x9FC97B14,
        "234": 0xE7C009CA,
        "34": 0x873930DA,
        "4": 0x5A4B5CA1,
        "PreAmbleWillBeRemoved,ThePrePartThatIs": 0x78424F1C,
        "reAmbleWillBeRemoved,ThePrePartThatIs": 0x4A62B377,
        "eAmbleWillBeRemoved,ThePrePartThatIs": 0xE0E4E09E,
        "AmbleWillBeRemoved,ThePrePartThatIs": 0x62B8B43F,
        "": 0x106E08D9,
    }
    for key, want in vectors.items():
        assert murmur2(key.encode()) & 0xFFFFFFFF == want, key
    assert murmur2(b"kafka") < 0  # a Java int: the sign bit shows
    assert default_partition(b"kafka", 4) == (0xD067CF64 & 0x7FFFFFFF) % 4


def test_broker_is_reachable_and_runs_the_pinned_version(kafka):
    pom = (SOURCE_DIR / "scripts" / "kafka-pom.xml").read_text()
    pinned = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom).group(1)
    assert kafka.version == pinned  # a stale .deps/kafka would show here
    assert kafka.bootstrap == f"127.0.0.1:{kafka.port}"
    meta = kafka.kcat("-L", "-m", "10").stdout
    assert f"broker 1 at {kafka.bootstrap}" in meta


def test_keyed_messages_come_back_in_order_on_one_partition(kafka):
    topic = kafka.unique_topic("order")
    kafka.create_topic(topic, 1)
    records = [(f"dev{i % 7}", f"m{i:04d}") for i in range(300)]
    kafka.produce(topic, records)

    got = parse(kafka.consume(topic, len(records)))
    assert [(k, v) for _, _, k, v in got] == records
    assert [p for p, _, _, _ in got] == [0] * len(records)
    assert [o for _, o, _, _ in got] == list(range(len(records)))


def test_auto_created_topic_has_four_partitions_and_keeps_per_key_order(kafka):
    topic = kafka.unique_topic("auto")
    assert kafka.partitions(topic) == 0  # looking does not create it
    records = [(f"sensor-{i % 13}", f"{i}") for i in range(400)]
    kafka.produce(topic, records)
    assert kafka.partitions(topic) == 4

    got = parse(kafka.consume(topic, len(records)))
    assert sorted((k, v) for _, _, k, v in got) == sorted(records)
    by_key: dict[str, list[int]] = collections.defaultdict(list)
    partition_of: dict[str, set[int]] = collections.defaultdict(set)
    for p, _, k, v in got:
        by_key[k].append(int(v))
        partition_of[k].add(p)
    for key, values in by_key.items():
        assert values == sorted(values), f"{key} out of order"
        assert len(partition_of[key]) == 1, f"{key} spread over {partition_of[key]}"
    per_partition = collections.defaultdict(list)
    for p, o, _, _ in got:
        per_partition[p].append(o)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))


def test_create_topic_with_chosen_partitions_and_refuses_a_duplicate(kafka):
    topic = kafka.unique_topic("six")
    kafka.create_topic(topic, 6)
    assert kafka.partitions(topic) == 6
    with pytest.raises(RuntimeError, match="already exists"):
        kafka.create_topic(topic, 6)


def test_murmur2_partitioner_places_keys_where_java_would(kafka):
    topic = kafka.unique_topic("murmur")
    n_partitions = 6
    kafka.create_topic(topic, n_partitions)
    keys = [f"device-{i}" for i in range(60)] + ["kafka", "a", "ab", "abc", "abcd", "abcde"]
    records = [(k, f"v{i}") for i, k in enumerate(keys)]
    kafka.produce(topic, records)  # no -p: librdkafka's murmur2_random partitioner decides

    got = parse(kafka.consume(topic, len(records)))
    assert len(got) == len(records)
    used = set()
    for p, _, k, _ in got:
        assert p == default_partition(k.encode(), n_partitions), k
        used.add(p)
    assert used == set(range(n_partitions))  # the test would notice a constant partitioner


def run_group(kafka, group: str, topic: str) -> list[tuple[int, int, str, str]]:
    """One balanced consumer (kcat -G) of group that reads until every assigned partition is at
    its end, then leaves, committing its offsets. No -o: kcat would apply it over the commits;
    a partition without a commit starts at its beginning."""
    proc = kafka.kcat("-G", group, "-e", "-q", "-f", "%p %o %k %s\\n",
                      "-X", "auto.offset.reset=earliest", "-X", "session.timeout.ms=10000",
                      topic, timeout=90)
    return parse(proc.stdout.splitlines())


def test_consumer_group_receives_everything_and_resumes_from_its_commits(kafka):
    topic = kafka.unique_topic("group")
    group = kafka.unique_topic("g")
    first = [(f"k{i % 5}", f"a{i}") for i in range(120)]
    kafka.produce(topic, first)
    assert kafka.partitions(topic) == 4

    got = run_group(kafka, group, topic)
    assert sorted((k, v) for _, _, k, v in got) == sorted(first)
    assert {p for p, _, _, _ in got} == {default_partition(f"k{i}".encode(), 4) for i in range(5)}

    # The group committed its position when it left: a new member gets only what came later.
    second = [(f"k{i % 5}", f"b{i}") for i in range(40)]
    kafka.produce(topic, second)
    got = run_group(kafka, group, topic)
    assert sorted((k, v) for _, _, k, v in got) == sorted(second)

    # Another group starts from the beginning on its own.
    got = run_group(kafka, kafka.unique_topic("g"), topic)
    assert len(got) == len(first) + len(second)


def test_kcat_errors_surface(kafka):
    with pytest.raises(subprocess.CalledProcessError):
        kafka.kcat("-C", "-t", kafka.unique_topic("absent"), "-p", "99", "-c", "1", "-e",
                   timeout=30)

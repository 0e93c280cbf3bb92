"""test_log_conformance: the log API behaves the same on both backends.

It runs tests/conformance/log_conformance.c (built as $TERN_BUILD_DIR/tests/log_conformance) once
against the embedded log in a fresh directory and once against a real Apache Kafka broker (the
session's `kafka` fixture), and shows the program's output when a check fails. Against Kafka it
then reads what tern wrote with kcat, an independent librdkafka client, to prove the records are
ordinary Kafka records placed by Kafka's default partitioner.
"""

from __future__ import annotations

import collections
import os
import pathlib
import subprocess

import pytest

from kafka_service import SOURCE_DIR, default_partition


def conformance_binary() -> pathlib.Path:
    build = os.environ.get("TERN_BUILD_DIR")
    candidates = [pathlib.Path(build)] if build else sorted(SOURCE_DIR.glob("build/*"))
    for base in candidates:
        path = base / "tests" / "log_conformance"
        if path.exists():
            return path
    pytest.fail(f"log_conformance is not built (looked in {[str(c) for c in candidates]}): "
                "cmake --build <build dir> --target log_conformance", pytrace=False)
    raise AssertionError("unreachable")


def run_suite(args: list[str], timeout: float) -> str:
    """run_suite runs the conformance program and returns its output; any failed check (or a
    sanitizer report) fails the test with the whole output."""
    cmd = [str(conformance_binary()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{' '.join(cmd)} did not finish in {timeout} s:\n{exc.stdout or ''}"
                    f"{exc.stderr or ''}", pytrace=False)
    output = f"--- stdout\n{proc.stdout}--- stderr\n{proc.stderr}"
    if proc.returncode != 0 or "# all " not in proc.stdout:
        pytest.fail(f"{' '.join(cmd)} exited with {proc.returncode}:\n{output}", pytrace=False)
    assert "not ok" not in proc.stdout
    print(output)
    return proc.stdout


def test_embedded_backend_conforms(tmp_path):
    out = run_suite(["--backend", "embedded", "--dir", str(tmp_path / "log")], timeout=240)
    assert out.count("\nok ") >= 25


def test_kafka_backend_conforms(kafka):
    prefix = kafka.unique_topic("conf")
    out = run_suite(["--backend", "kafka", "--brokers", kafka.bootstrap, "--topic-prefix",
                     prefix], timeout=240)
    assert out.count("\nok ") >= 25

    # The suite's "pair" topic holds 60 records keyed sensor-0..19, all placed by the key:
    # kcat must see each where Kafka's Java default partitioner would put it, in append order.
    topic = f"{prefix}-pair"
    assert kafka.partitions(topic) == 4
    lines = kafka.consume(topic, 60, fmt="%p %o %k %h\\n")
    assert len(lines) == 60
    offsets = collections.defaultdict(list)
    for line in lines:
        partition, offset, key, headers = line.split(" ", 3)
        assert int(partition) == default_partition(key.encode(), 4), line
        assert "source=conformance" in headers, line
        offsets[int(partition)].append(int(offset))
    assert sorted(offsets) == [0, 1, 2, 3]
    for got in offsets.values():
        assert got == list(range(len(got)))

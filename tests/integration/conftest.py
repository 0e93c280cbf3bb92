"""Fixtures shared by tern's integration tests.

- `tmp_dir`: a fresh folder per test (data directories, config files, logs).
- `start`: start a program as a Service on a free port; it is stopped at teardown.
- `mosquitto`: Debian's Mosquitto on a free port, the peer tern is compared with.
- `kafka`: a real single-node Apache Kafka broker (KRaft) for the whole session
  (tests/integration/kafka_service.py).
When a test fails, the tail of the log of every service it started is printed.
"""
from __future__ import annotations

import pytest

import tern_harness as th

try:  # the Kafka fixture lives in its own module
    from kafka_service import kafka  # noqa: F401
except ImportError:  # pragma: no cover - only while the module is being written
    pass


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and th.RUNNING:
        for svc in list(th.RUNNING):
            report.sections.append((f"log of {svc.name} ({svc.log_path})", svc.log_tail()))


@pytest.fixture
def tmp_dir(tmp_path):
    return tmp_path


@pytest.fixture
def start(tmp_path):
    """start(name, argv_builder, ...) -> Service. argv_builder(port) returns the argv list."""
    services: list[th.Service] = []

    def _start(name, argv_for_port, env=None, ready_timeout_s=30.0, port=None):
        port = port or th.free_port()
        svc = th.Service(name, argv_for_port(port), port, tmp_path / "logs", env=env,
                         ready_timeout_s=ready_timeout_s)
        services.append(svc)
        return svc

    yield _start
    for svc in services:
        svc.stop()


@pytest.fixture
def mosquitto(start, tmp_path):
    """Debian's Mosquitto 2.x listening on a free loopback port, anonymous access allowed."""
    def argv(port):
        conf = tmp_path / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\n")
        return ["mosquitto", "-c", str(conf)]
    return start("mosquitto", argv)

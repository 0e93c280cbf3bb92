"""kafka_service: a real Apache Kafka broker for tern's integration tests, as a pytest fixture.

`kafka` (session scope) starts one single-node KRaft broker with `scripts/kafka start` on a free
loopback port in a temporary directory, yields a `KafkaBroker`, and stops it at teardown. It
promises:
  - the broker accepts librdkafka clients (kcat) when the fixture yields; topics are auto-created
    with 4 partitions, or made with any count by `create_topic`;
  - it fails the test loudly (never skips) when the jars are missing: run `scripts/kafka fetch`;
  - when startup fails, or any test of the session failed, the tail of the broker's log is printed;
  - the broker never outlives the test run (it is stopped at teardown, at interpreter exit, and by
    `scripts/kafka`'s watcher if this process is killed).

tests/integration/conftest.py imports `kafka` from here, so every test module shares one broker;
a test module must not import it again (that would define a second session broker).
The repository is found from $TERN_SOURCE_DIR, else relative to this file.
"""

from __future__ import annotations

import atexit
import itertools
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field

import pytest

SOURCE_DIR = pathlib.Path(
    os.environ.get("TERN_SOURCE_DIR") or pathlib.Path(__file__).resolve().parents[2]
)
SCRIPT = SOURCE_DIR / "scripts" / "kafka"
LIBS = SOURCE_DIR / ".deps" / "kafka" / "libs"

_topic_counter = itertools.count()


def free_port() -> int:
    """free_port returns a TCP port on 127.0.0.1 that the kernel had free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kafka_version() -> str | None:
    """kafka_version returns the version of the fetched broker jars, or None if there are none."""
    for jar in sorted(LIBS.glob("kafka_2.13-*.jar")):
        return jar.name[len("kafka_2.13-") : -len(".jar")]
    return None


def murmur2(data: bytes) -> int:
    """murmur2 returns Kafka's 32-bit murmur2 hash of data (Utils.murmur2, seed 0x9747b28c),
    as a signed Java int."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    n4 = length // 4
    for i in range(n4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = data[4 * n4 :]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def default_partition(key: bytes, n_partitions: int) -> int:
    """default_partition returns the partition Kafka's default partitioner (and librdkafka's
    murmur2 partitioners) picks for a non-empty key: toPositive(murmur2(key)) % n."""
    return (murmur2(key) & 0x7FFFFFFF) % n_partitions


@dataclass
class KafkaBroker:
    """A running broker: `bootstrap` is "127.0.0.1:PORT" for librdkafka's bootstrap.servers."""

    host: str
    port: int
    dir: pathlib.Path
    pid: int
    version: str
    startup_s: float
    _stopped: bool = field(default=False, repr=False)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def log_path(self) -> pathlib.Path:
        return self.dir / "logs" / "server.log"

    def log_tail(self, n_lines: int = 60) -> str:
        """log_tail returns the broker's first few ERROR/FATAL lines, then the last n_lines of
        its server.log (empty if there is no log)."""
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [line for line in lines if " ERROR " in line or " FATAL " in line][:5]
        head = ["first errors:", *errors, "last lines:"] if errors else []
        return "\n".join(head + lines[-n_lines:])

    def unique_topic(self, prefix: str = "t") -> str:
        """unique_topic returns a topic name no other caller in this process got."""
        return f"{prefix}-{os.getpid()}-{next(_topic_counter)}-{time.monotonic_ns() % 1_000_000}"

    def create_topic(self, name: str, partitions: int, replication: int = 1) -> None:
        """create_topic creates topic name with the given partition count through Kafka's own
        admin tool (TopicCommand, ~1 s of JVM), and waits until librdkafka sees every partition
        with a leader. Raises RuntimeError (with the tool's output) if Kafka refuses."""
        proc = subprocess.run(
            [str(SCRIPT), "topics", "--bootstrap-server", self.bootstrap, "--create",
             "--topic", name, "--partitions", str(partitions),
             "--replication-factor", str(replication)],
            capture_output=True, text=True, timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"creating topic {name} failed:\n{proc.stdout}{proc.stderr}")
        self.wait_for_topic(name, partitions)

    def partitions(self, topic: str) -> int:
        """partitions returns how many partitions of topic have a leader, as librdkafka's
        metadata shows them (0 if the topic is unknown). Does not create the topic."""
        proc = self.kcat("-L", "-t", topic, "-m", "5", check=False,
                         extra=["-X", "allow.auto.create.topics=false"])
        return sum(1 for line in proc.stdout.splitlines()
                   if line.strip().startswith("partition ") and "leader 1" in line)

    def wait_for_topic(self, topic: str, partitions: int, timeout_s: float = 30.0) -> None:
        """wait_for_topic returns once topic has `partitions` led partitions; raises
        TimeoutError otherwise."""
        deadline = time.monotonic() + timeout_s
        while True:
            seen = self.partitions(topic)
            if seen == partitions:
                return
            if time.monotonic() >= deadline:
                raise TimeoutError(f"topic {topic}: {seen} of {partitions} partitions have leaders")
            time.sleep(0.1)

    def kcat(self, *args: str, input: str | bytes | None = None, timeout: float = 60.0,
             check: bool = True, extra: list[str] | None = None) -> subprocess.CompletedProcess:
        """kcat runs `kcat -b BOOTSTRAP [extra] ARGS` (a librdkafka client) and returns the
        completed process with text output. Raises CalledProcessError when check and kcat fails."""
        cmd = ["kcat", "-b", self.bootstrap, *(extra or []), *args]
        text = not isinstance(input, bytes)
        proc = subprocess.run(cmd, input=input, capture_output=True, text=text, timeout=timeout)
        if check and proc.returncode != 0:
            raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def produce(self, topic: str, records: list[tuple[str, str]],
                extra: tuple[str, ...] = ()) -> None:
        """produce sends (key, value) records to topic with kcat, keyed (key and value must not
        contain ':' or newlines), partitioned by murmur2 as Java clients do, and waits for acks."""
        for key, value in records:
            if ":" in key or "\n" in key or "\n" in value:
                raise ValueError(f"record {key!r}:{value!r} cannot be sent as a kcat line")
        lines = "".join(f"{k}:{v}\n" for k, v in records)
        self.kcat("-P", "-t", topic, "-K", ":", "-X", "partitioner=murmur2_random",
                  "-X", "acks=all", *extra, input=lines)

    def consume(self, topic: str, count: int, fmt: str = "%p %o %k %s\\n",
                timeout: float = 60.0, extra: tuple[str, ...] = ()) -> list[str]:
        """consume reads exactly count messages of topic from the beginning (all partitions, no
        group) and returns one formatted line per message (kcat -f fmt)."""
        proc = self.kcat("-C", "-t", topic, "-o", "beginning", "-c", str(count), "-f", fmt,
                         "-q", *extra, timeout=timeout)
        return proc.stdout.splitlines()

    def stop(self) -> None:
        """stop stops the broker (idempotent); scripts/kafka stop SIGKILLs it after a bound."""
        if self._stopped:
            return
        self._stopped = True
        subprocess.run([str(SCRIPT), "stop", str(self.dir)], timeout=120, check=False)


def start_broker(base_dir: pathlib.Path) -> KafkaBroker:
    """start_broker starts a broker in base_dir (created if needed) on a free loopback port and
    returns it ready for clients. Calls pytest.fail, with the broker's log tail, on failure."""
    version = kafka_version()
    if version is None or not SCRIPT.exists():
        pytest.fail(f"Kafka jars are missing in {LIBS}: run scripts/kafka fetch (or scripts/setup)",
                    pytrace=False)
    if shutil.which("kcat") is None or shutil.which("java") is None:
        pytest.fail("kcat and java are needed for the Kafka tests: run scripts/setup", pytrace=False)
    env = dict(os.environ, KAFKA_WATCH_PID=str(os.getpid()))
    last_error = ""
    for _attempt in range(3):  # another process may take the free port before the broker binds
        port = free_port()
        t0 = time.monotonic()
        proc = subprocess.run([str(SCRIPT), "start", str(base_dir), str(port)], env=env,
                              capture_output=True, text=True, timeout=300)
        startup_s = time.monotonic() - t0
        if proc.returncode == 0:
            pid = int(proc.stdout.strip().splitlines()[-1])
            return KafkaBroker("127.0.0.1", port, base_dir, pid, version, startup_s)
        last_error = proc.stderr
        if "Address already in use" not in proc.stderr:
            break
    pytest.fail(f"the Kafka broker did not start (scripts/kafka start {base_dir}):\n{last_error}",
                pytrace=False)
    raise AssertionError("unreachable")


def _report(config: pytest.Config, text: str) -> None:
    """Write text to the terminal even while pytest captures output."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        print(text, file=sys.stderr)
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(text)


@pytest.fixture(scope="session")
def kafka(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """kafka: one Kafka broker for the whole test session (see the module's docstring)."""
    broker = start_broker(tmp_path_factory.mktemp("kafka"))
    atexit.register(broker.stop)
    _report(request.config, f"\nkafka: Kafka {broker.version} on {broker.bootstrap} "
                            f"(pid {broker.pid}) started in {broker.startup_s:.1f} s")
    try:
        yield broker
    finally:
        if request.session.testsfailed:
            _report(request.config, f"kafka: tail of {broker.log_path}:\n{broker.log_tail()}")
        broker.stop()

"""tern_harness: start real programs on free loopback ports for integration tests.

A `Service` runs one process (a tern role, or a peer such as mosquitto), with its output in a
log file, waits until it accepts TCP connections on its port, and stops it at teardown. When a
test fails, every service started in it prints the tail of its log, so a failure in CI shows what
the program said. Programs come from $TERN_BIN_DIR (set by ctest to the build's bin folder).
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SOURCE_DIR = Path(os.environ.get("TERN_SOURCE_DIR", Path(__file__).resolve().parents[2]))
BIN_DIR = Path(os.environ.get("TERN_BIN_DIR", SOURCE_DIR / "build" / "dev" / "bin"))

# Services started in the current test, so the failure hook can show their logs.
RUNNING: list["Service"] = []


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tern_bin(name: str = "tern") -> str:
    path = BIN_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} not built (TERN_BIN_DIR={BIN_DIR})")
    return str(path)


def wait_for_port(port: int, host: str = "127.0.0.1", timeout_s: float = 30.0,
                  proc: subprocess.Popen | None = None) -> None:
    """Block until host:port accepts a TCP connection; fail if proc exits or time runs out."""
    deadline = time.monotonic() + timeout_s
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} did not accept connections in {timeout_s}s")
            time.sleep(0.05)


class Service:
    """One running program. Use as a context manager or call stop()."""

    def __init__(self, name: str, argv: list[str], port: int | None, log_dir: Path,
                 env: dict | None = None, ready_timeout_s: float = 30.0):
        self.name = name
        self.argv = argv
        self.port = port
        self.log_path = Path(log_dir) / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        full_env = dict(os.environ)
        # Sanitizer reports must fail loudly and be readable in the log.
        full_env.setdefault("ASAN_OPTIONS", "abort_on_error=1:detect_leaks=1")
        full_env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        if env:
            full_env.update(env)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=full_env, start_new_session=True)
        RUNNING.append(self)
        if port is not None:
            try:
                wait_for_port(port, timeout_s=ready_timeout_s, proc=self.proc)
            except Exception:
                self.stop()
                raise RuntimeError(f"{name} did not become ready:\n{self.log_tail()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, n_lines: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-n_lines:])

    def kill9(self) -> None:
        """Simulate a crash: SIGKILL, no chance to flush anything."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time. Returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()
        if self in RUNNING:
            RUNNING.remove(self)
        return self.proc.returncode

    def __enter__(self) -> "Service":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run(argv: list[str], timeout_s: float = 120.0, input: bytes | None = None,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a short-lived command and capture its output (text)."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    return subprocess.run(argv, input=input, capture_output=True, timeout=timeout_s,
                          env=full_env)
